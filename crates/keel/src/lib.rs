//! Keel's host-testable logic. The hypervisor binary (`main.rs`) uses it:
//! physical memory bookkeeping, and the pure parts of the host disk driver.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod disk_requests;
pub mod dma_pool;
pub mod frames;
pub mod pci_config;
