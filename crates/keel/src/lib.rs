//! Keel's host-testable logic. The hypervisor binary (`main.rs`) uses it:
//! physical memory bookkeeping, the pure parts of the host disk driver, and
//! the VM loop's reset limit.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod ap_registers;
pub mod apparent_time;
pub mod boot_modules;
pub mod console;
pub mod disk_requests;
pub mod display;
pub mod dma_pool;
pub mod frames;
pub mod multiboot1;
pub mod pci_config;
pub mod placement;
pub mod reset_limit;
pub mod run_queue;
