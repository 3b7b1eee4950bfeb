//! Instructions Keel carries out for the guest: MMIO accesses (nested page
//! faults on addresses that are not RAM) and string port I/O.
//!
//! The instruction is fetched at CS:RIP and executed by `crates/x86-emul`
//! through the guest's segmentation and page tables; its fetches and data
//! accesses reach guest RAM and the firmware's read-only alias through the one
//! guest-memory accessor (the view the nested page tables give the guest), and
//! devices through the platform's bus. For a nested page fault only an
//! instruction that accesses the faulting address is carried out. What the emulator returns decides what the guest gets: an
//! exception is injected, an instruction it does not implement stops the VM
//! with the instruction bytes in the log (see crates/x86-emul/README.md).

use super::{ExitAction, Platform, StopReason};
use crate::vcpu::{Event, Gpr, Segment, Sreg, VcpuState};
use x86_emul::{ControlRegs, CrWrite, Error, Exception, Fetch, Limits, Outcome, PhysError};

/// Physical-address width the guest's page tables are checked against
/// (reserved bits above it raise #PF with RSVD). Keel's guests see at most
/// 48 bits, the width its nested tables map.
const GUEST_MAXPHYADDR: u8 = 48;

/// The vCPU, as the emulator sees it.
struct EmulatedCpu<'a, V: VcpuState>(&'a mut V);

impl<V: VcpuState> x86_emul::Cpu for EmulatedCpu<'_, V> {
    fn gpr(&self, reg: Gpr) -> u64 {
        self.0.gpr(reg)
    }
    fn set_gpr(&mut self, reg: Gpr, value: u64) {
        self.0.set_gpr(reg, value)
    }
    fn rip(&self) -> u64 {
        self.0.rip()
    }
    fn set_rip(&mut self, value: u64) {
        self.0.set_rip(value)
    }
    fn rflags(&self) -> u64 {
        self.0.rflags()
    }
    fn set_rflags(&mut self, value: u64) {
        self.0.set_rflags(value)
    }
    fn segment(&self, reg: Sreg) -> Segment {
        self.0.segment(reg)
    }
    fn control_regs(&self) -> ControlRegs {
        ControlRegs {
            cr0: self.0.cr0(),
            cr3: self.0.cr3(),
            cr4: self.0.cr4(),
            efer: self.0.efer(),
        }
    }
    fn cpl(&self) -> u8 {
        self.0.cpl()
    }
    fn max_phys_addr_bits(&self) -> u8 {
        GUEST_MAXPHYADDR
    }
}

/// Guest RAM, devices and ports, as the emulator sees them.
struct EmulatedMemory<'a, P: Platform>(&'a mut P);

impl<P: Platform> x86_emul::PhysMemory for EmulatedMemory<'_, P> {
    fn read_phys(&mut self, gpa: u64, data: &mut [u8]) -> Result<(), PhysError> {
        if !self.0.ram_access(gpa, false) {
            return Err(PhysError::NotRam);
        }
        self.0
            .memory()
            .read(gpa, data)
            .map_err(|_| PhysError::NotRam)
    }
    fn write_phys(&mut self, gpa: u64, data: &[u8]) -> Result<(), PhysError> {
        if !self.0.ram_access(gpa, true) {
            return Err(PhysError::NotRam);
        }
        self.0
            .memory()
            .write(gpa, data)
            .map_err(|_| PhysError::NotRam)
    }
}

impl<P: Platform> x86_emul::Memory for EmulatedMemory<'_, P> {
    // The bus answers every address (unclaimed reads are all-ones, writes are
    // dropped), so a device access always completes in full.
    fn mmio_read(&mut self, gpa: u64, data: &mut [u8]) -> Result<usize, PhysError> {
        self.0.mmio_read(gpa, data);
        Ok(data.len())
    }
    fn mmio_write(&mut self, gpa: u64, data: &[u8]) -> Result<usize, PhysError> {
        self.0.mmio_write(gpa, data);
        Ok(data.len())
    }
    fn pio_read(&mut self, port: u16, data: &mut [u8]) -> Result<(), PhysError> {
        let v = self.0.pio_read(port, data.len() as u8).to_le_bytes();
        let n = data.len().min(4);
        data[..n].copy_from_slice(&v[..n]);
        Ok(())
    }
    fn pio_string_room(&mut self, port: u16, elem: usize, write: bool) -> usize {
        self.0.pio_string_room(port, elem, write)
    }
    fn pio_read_string(&mut self, port: u16, elem: usize, data: &mut [u8]) -> usize {
        self.0.pio_read_string(port, elem, data)
    }
    fn pio_write_string(&mut self, port: u16, elem: usize, data: &[u8]) -> usize {
        self.0.pio_write_string(port, elem, data)
    }
    fn pio_write(&mut self, port: u16, data: &[u8]) -> Result<(), PhysError> {
        let mut v = [0u8; 4];
        let n = data.len().min(4);
        v[..n].copy_from_slice(&data[..n]);
        self.0.pio_write(port, n as u8, u32::from_le_bytes(v));
        Ok(())
    }
}

/// Nested page faults in a row at one RIP that the instruction there does not
/// explain before Keel stops the VM. A fault can be stale once (the guest's
/// page tables changed under a TLB entry, say), so the guest is simply entered
/// again; one that keeps coming back is a guest Keel cannot run.
pub const MAX_UNEXPLAINED_FAULTS: u32 = 16;

/// The count behind [`MAX_UNEXPLAINED_FAULTS`], kept across exits.
#[derive(Debug, Clone, Default)]
pub struct UnexplainedFaults {
    rip: u64,
    count: u32,
}

impl UnexplainedFaults {
    /// Counts one unexplained fault at `rip`; true when the limit is reached.
    fn count(&mut self, rip: u64) -> bool {
        if self.count == 0 || self.rip != rip {
            self.rip = rip;
            self.count = 0;
        }
        self.count += 1;
        self.count >= MAX_UNEXPLAINED_FAULTS
    }
}

/// Emulates the instruction at the guest's CS:RIP for string port I/O.
pub(super) fn emulate_instruction(
    what: &'static str,
    vcpu: &mut impl VcpuState,
    platform: &mut impl Platform,
) -> ExitAction {
    run(what, vcpu, platform, &Limits::default())
}

/// Emulates the instruction at CS:RIP for a nested page fault at `gpa`, if
/// that instruction accesses `gpa` (see `Limits::fault_gpa`); if it does not,
/// the guest is entered again unchanged, [`MAX_UNEXPLAINED_FAULTS`] times in a
/// row at most.
pub(super) fn emulate_mmio(
    gpa: u64,
    vcpu: &mut impl VcpuState,
    platform: &mut impl Platform,
    faults: &mut UnexplainedFaults,
) -> ExitAction {
    let limits = Limits {
        fault_gpa: Some(gpa),
        ..Limits::default()
    };
    let rip = vcpu.rip();
    match run("MMIO access", vcpu, platform, &limits) {
        ExitAction::Stop(StopReason::Unexplained { .. }) if !faults.count(rip) => {
            log::debug!(
                "nested page fault at guest-physical {gpa:#x} not made by the instruction at RIP {rip:#x}: entering the guest again"
            );
            ExitAction::Resume
        }
        ExitAction::Stop(StopReason::Unexplained { .. }) => {
            ExitAction::Stop(StopReason::Unexplained { gpa, rip })
        }
        action => {
            *faults = UnexplainedFaults::default();
            action
        }
    }
}

/// The length of the instruction at CS:RIP, for an exit whose length the
/// hardware did not report ([`super::UNKNOWN_LENGTH`]). `Err` is what the
/// handler does instead of completing the exit.
pub(super) fn instruction_length(
    vcpu: &mut impl VcpuState,
    platform: &mut impl Platform,
) -> Result<u8, ExitAction> {
    let rip = vcpu.rip();
    match x86_emul::instruction_length(&mut EmulatedCpu(vcpu), &mut EmulatedMemory(platform)) {
        Ok(len) => Ok(len),
        Err(e) => Err(outcome(Err(e), "an instruction exit", rip, vcpu)),
    }
}

/// The length of the HLT at CS:RIP, or `None` when the instruction there is
/// another one or cannot be fetched (then nothing is done about it here:
/// the guest meets any fault when it runs the instruction itself).
pub(super) fn hlt_at_rip(vcpu: &mut impl VcpuState, platform: &mut impl Platform) -> Option<u8> {
    x86_emul::hlt_length(&mut EmulatedCpu(vcpu), &mut EmulatedMemory(platform))
        .ok()
        .flatten()
}

/// What the instruction at CS:RIP writes to a control register, and its
/// length, for a CR write exit that did not name its operand
/// ([`super::CrOperand::Undecoded`]). `Err` is what the handler does instead
/// (an exception reading LMSW's memory operand, or a stop).
pub(super) fn cr_write_at_rip(
    vcpu: &mut impl VcpuState,
    platform: &mut impl Platform,
) -> Result<(CrWrite, u8), ExitAction> {
    let rip = vcpu.rip();
    x86_emul::decode_cr_write(&mut EmulatedCpu(vcpu), &mut EmulatedMemory(platform))
        .map_err(|e| outcome(Err(e), "a control-register write exit", rip, vcpu))
}

/// After an exit whose instruction completed: the register-only set-up and
/// port accesses that follow, carried out now (`x86_emul::port_io_ahead`,
/// which leaves the vCPU as it was for anything else).
pub(super) fn port_io_ahead(
    vcpu: &mut impl VcpuState,
    platform: &mut impl Platform,
    misses: &mut x86_emul::RunAheadMisses,
) -> x86_emul::PortAccesses {
    let done = x86_emul::port_io_ahead(
        &mut EmulatedCpu(vcpu),
        &mut EmulatedMemory(platform),
        misses,
    );
    if done.count > 0 {
        vcpu.clear_interrupt_shadow();
    }
    done
}

fn run(
    what: &'static str,
    vcpu: &mut impl VcpuState,
    platform: &mut impl Platform,
    limits: &Limits,
) -> ExitAction {
    let rip = vcpu.rip();
    let result = x86_emul::emulate(
        &mut EmulatedCpu(vcpu),
        &mut EmulatedMemory(platform),
        Fetch::Guest,
        limits,
    );
    outcome(result, what, rip, vcpu)
}

/// What the guest gets for what the emulator returned; `what` names why it
/// ran (for a stop message).
fn outcome(
    result: Result<Outcome, Error>,
    what: &'static str,
    rip: u64,
    vcpu: &mut impl VcpuState,
) -> ExitAction {
    match result {
        Ok(Outcome::Retired) => {
            vcpu.clear_interrupt_shadow();
            ExitAction::Resume
        }
        Ok(Outcome::Yielded) => ExitAction::Resume,
        Err(Error::Exception(e)) => {
            if let Exception::PageFault { linear, .. } = e {
                vcpu.set_cr(2, linear);
            }
            vcpu.inject(Event::Exception {
                vector: e.vector(),
                error_code: e.error_code(),
            });
            ExitAction::Resume
        }
        Err(Error::Unsupported {
            bytes,
            len,
            what: insn,
        }) => {
            let b = &bytes[..usize::from(len).min(bytes.len())];
            log::error!(
                "{what}: the instruction at RIP {rip:#x} ({insn}, bytes {b:02x?}) is not emulated"
            );
            ExitAction::Stop(StopReason::Unhandled {
                what: "an instruction Keel cannot emulate",
                rip,
                info: u64::from(b.first().copied().unwrap_or(0)),
            })
        }
        Err(Error::PageTableNotRam { gpa }) => ExitAction::Stop(StopReason::Unhandled {
            what: "guest page tables that point outside RAM",
            rip,
            info: gpa,
        }),
        Err(Error::Bus { gpa }) => ExitAction::Stop(StopReason::Unhandled {
            what: "a device access the bus could not complete",
            rip,
            info: gpa,
        }),
        Err(Error::FetchNotRam { gpa }) => ExitAction::Stop(StopReason::Unhandled {
            what: "instruction fetch from a guest-physical address that is not RAM",
            rip,
            info: gpa,
        }),
        Err(Error::Unexplained { gpa }) => ExitAction::Stop(StopReason::Unexplained { gpa, rip }),
    }
}
