//! x86 instruction emulator and guest page walker.
//!
//! When a guest touches MMIO (a nested page fault on an address that is not RAM) or
//! runs a string I/O instruction, the hypervisor calls [`emulate`]: it fetches the
//! instruction at CS:RIP through the guest's own segmentation and page tables (there
//! are no decode assists under QEMU TCG's SVM), decodes it with iced-x86, and carries
//! it out against the vCPU ([`Cpu`]) and the guest-physical bus ([`Memory`]), which
//! sends each access to RAM or to a device.
//!
//! Exceptions come back as values ([`Exception`]) for the caller to inject; nothing in
//! here panics on any instruction bytes or vCPU state.

#![no_std]
#![cfg_attr(not(test), forbid(unsafe_code))]
#![cfg_attr(test, deny(unsafe_code))]

#[cfg(test)]
#[macro_use]
extern crate std;

mod access;
pub mod cpu;
mod decode;
mod error;
mod flags;
mod insn;
pub mod memory;
mod operand;
pub mod paging;
pub mod rng;
mod segmentation;

#[cfg(test)]
mod fuzz;
#[cfg(all(test, target_arch = "x86_64"))]
mod host_diff;
#[cfg(test)]
mod testutil;

pub use cpu::{ControlRegs, Cpu, Gpr, Mode, Segment, Sreg};
pub use decode::{Fetch, MAX_INSN_LEN};
pub use error::{Error, Exception, Outcome};
pub use memory::{Memory, PhysError, PhysMemory};

/// Bounds on one call to [`emulate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Iterations of a REP string instruction before [`Outcome::Yielded`], so a guest
    /// `rep movsb` over megabytes cannot hold the physical CPU (and pending interrupts)
    /// for long.
    pub max_rep_iterations: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rep_iterations: 1024,
        }
    }
}

/// Emulate the instruction at CS:RIP.
///
/// On `Ok(Outcome::Retired)` the instruction's effects are done and RIP points past
/// it. On `Ok(Outcome::Yielded)` a REP string instruction did `limits.max_rep_iterations`
/// iterations and is to be run again. On `Err(Error::Exception(e))` inject `e`; RIP is
/// unchanged. See [`Error`] for the rest.
pub fn emulate<C: Cpu, M: Memory>(
    cpu: &mut C,
    mem: &mut M,
    fetch: Fetch<'_>,
    limits: &Limits,
) -> Result<Outcome, Error> {
    let mut ctx = access::Ctx::new(cpu, mem);
    let decoded = decode::fetch_decode(&mut ctx, fetch)?;
    insn::execute(&mut ctx, &decoded, limits)
}
