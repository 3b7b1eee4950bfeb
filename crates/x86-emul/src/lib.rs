//! x86 instruction emulator and guest page walker.
//!
//! When a guest touches MMIO (a nested page fault on an address that is not RAM) or
//! runs a string I/O instruction, the hypervisor calls [`emulate`]: it fetches the
//! instruction at CS:RIP through the guest's own segmentation and page tables (there
//! are no decode assists under QEMU TCG's SVM), decodes it (the common MOV forms with a
//! short decoder that agrees with iced-x86, the rest with iced-x86), and carries
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
mod cr_write;
mod decode;
mod error;
mod fast_decode;
mod flags;
mod insn;
pub mod memory;
mod operand;
pub mod paging;
pub mod rng;
mod run_ahead;
mod segmentation;

#[cfg(test)]
mod fuzz;
#[cfg(all(test, target_arch = "x86_64"))]
mod host_diff;
#[cfg(test)]
mod testutil;

pub use cpu::{ControlRegs, Cpu, Gpr, Mode, Segment, Sreg};
pub use cr_write::{decode_cr_write, CrWrite};
pub use decode::{Fetch, MAX_INSN_LEN};
pub use error::{Error, Exception, Outcome};
pub use memory::{Memory, PhysError, PhysMemory};
pub use run_ahead::{port_io_ahead, PortAccesses, RunAheadMisses, MAX_PORT_ACCESSES, MAX_SET_UP};

/// The most bytes a bulk `REP INS`/`REP OUTS` pass moves between a port
/// and RAM at once: one 4 KiB page, which is as far as one translation reaches.
pub const STRING_IO_CHUNK: usize = 4096;

/// Bounds on one call to [`emulate`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Iterations of a REP string instruction before [`Outcome::Yielded`], so a guest
    /// `rep movsb` over megabytes cannot hold the physical CPU (and pending interrupts)
    /// for long.
    pub max_rep_iterations: u32,
    /// The guest-physical address of the nested page fault the instruction is emulated
    /// for (`None` for string port I/O, whose exit names the instruction). Only an
    /// instruction that explains the fault is carried out: one that accesses this
    /// address before any write, device read or port access. Any other (a stale fault,
    /// or one the processor took while delivering an event) ends in
    /// [`Error::Unexplained`] with the vCPU unchanged.
    pub fault_gpa: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_rep_iterations: 1024,
            fault_gpa: None,
        }
    }
}

/// The registers an emulated instruction can change, saved so an instruction that
/// turns out not to explain the fault leaves the vCPU as it was.
struct Registers {
    gprs: [u64; 16],
    rip: u64,
    rflags: u64,
}

impl Registers {
    fn save<C: Cpu>(cpu: &C) -> Self {
        Registers {
            gprs: core::array::from_fn(|i| cpu.gpr(Gpr::from_index(i))),
            rip: cpu.rip(),
            rflags: cpu.rflags(),
        }
    }

    fn restore<C: Cpu>(&self, cpu: &mut C) {
        for (i, &v) in self.gprs.iter().enumerate() {
            cpu.set_gpr(Gpr::from_index(i), v);
        }
        cpu.set_rip(self.rip);
        cpu.set_rflags(self.rflags);
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
    let saved = limits.fault_gpa.map(|_| Registers::save(cpu));
    let mut ctx = access::Ctx::new(cpu, mem);
    ctx.fault_gpa = limits.fault_gpa;
    let result =
        decode::fetch_decode(&mut ctx, fetch).and_then(|d| insn::execute(&mut ctx, &d, limits));
    // An instruction that ended (retired, yielded or faulted) without touching the
    // faulting address did not cause the fault: undo its register effects (its only
    // effects, as `Ctx::may_commit` refused every other).
    match (ctx.fault_gpa, saved, result) {
        (Some(gpa), Some(saved), Ok(_) | Err(Error::Exception(_))) => {
            saved.restore(cpu);
            Err(Error::Unexplained { gpa })
        }
        (_, _, result) => result,
    }
}

/// The length of the instruction at CS:RIP if it is HLT (prefixes
/// included), `None` for any other, fetched as [`emulate`] fetches it.
/// Nothing is changed.
pub fn hlt_length<C: Cpu, M: Memory>(cpu: &mut C, mem: &mut M) -> Result<Option<u8>, Error> {
    let mut ctx = access::Ctx::new(cpu, mem);
    let d = decode::fetch_decode(&mut ctx, Fetch::Guest)?;
    Ok((d.insn.mnemonic() == iced_x86::Mnemonic::Hlt).then_some(d.insn.len() as u8))
}

/// The length in bytes of the instruction at CS:RIP, fetched as [`emulate`] fetches
/// it (for an exit whose length the hardware did not report). Nothing is changed.
pub fn instruction_length<C: Cpu, M: Memory>(cpu: &mut C, mem: &mut M) -> Result<u8, Error> {
    let mut ctx = access::Ctx::new(cpu, mem);
    let d = decode::fetch_decode(&mut ctx, Fetch::Guest)?;
    Ok(d.insn.len() as u8)
}
