//! Keel's host-testable logic. The hypervisor binary (`main.rs`) uses it.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod frames;
