//! Keel's virtualization core: hardware backends, nested paging and the
//! arch-neutral exit layer.
//!
//! The only code here that touches the CPU is `svm::hw` (VMRUN, VMLOAD/VMSAVE,
//! EFER.SVME) and `vmx::hw` (VMXON, VMREAD/VMWRITE, VMLAUNCH/VMRESUME, INVEPT).
//! Everything else works on plain data — a VMCB is a 4 KiB byte page, a VMCS
//! is reached through a trait that tests back with a map of field encodings, a
//! nested page table is a set of `[u64; 512]` tables — so exit decoding, exit
//! handling and the page-table builder run under `cargo test` on the host.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod event;
pub mod exit;
pub mod fpu;
pub mod interrupts;
pub mod paging;
pub mod port_bitmap;
pub mod reset;
pub mod svm;
pub mod vcpu;
pub mod vmx;

pub use exit::{ExitAction, StopReason, VmExit};
pub use vcpu::{Event, Gpr, GuestGprs, Segment, Sreg, Vcpu, VcpuState};
