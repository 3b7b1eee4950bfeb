//! Port I/O exits: IN and OUT here; INS and OUTS (with or without REP) go
//! through the instruction emulator, which translates DS:rSI / ES:rDI through
//! the guest's segmentation and paging and repeats up to its iteration limit
//! per exit, so a sector moved with one REP INSW costs one exit.

use super::emulate::{emulate_instruction, port_io_ahead};
use super::{ExitAction, IoDirection, IoExit, Platform, StopReason};
use crate::vcpu::{Gpr, VcpuState};
pub use x86_emul::RunAheadMisses;

fn size_mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// Handles a port I/O exit.
pub(super) fn handle_io(
    io: &IoExit,
    vcpu: &mut impl VcpuState,
    platform: &mut impl Platform,
    misses: &mut RunAheadMisses,
) -> ExitAction {
    let size = match io.size {
        1 | 2 | 4 => io.size,
        // The hardware only reports 1, 2 or 4; anything else is a decoding bug, not guest input.
        _ => {
            return ExitAction::Stop(StopReason::Unhandled {
                what: "port I/O of unknown size",
                rip: vcpu.rip(),
                info: u64::from(io.size),
            })
        }
    };
    if io.string.is_some() {
        let rip = vcpu.rip();
        let action = emulate_instruction("string port I/O", vcpu, platform);
        // Only once the instruction completed (a REP that yields stays at
        // its RIP): SeaBIOS reads the alternate status after each sector's
        // REP INSW, a few stack-frame instructions on.
        if action == ExitAction::Resume && vcpu.rip() != rip {
            run_ahead(vcpu, platform, misses);
        }
        return action;
    }
    match io.direction {
        IoDirection::In => {
            let value = u64::from(platform.pio_read(io.port, size));
            let rax = vcpu.gpr(Gpr::Rax);
            // IN AL/AX keep the rest of RAX; IN EAX zero-extends into RAX (SDM Vol 1 3.4.1.1).
            let rax = if size == 4 {
                value & 0xffff_ffff
            } else {
                (rax & !size_mask(size)) | (value & size_mask(size))
            };
            vcpu.set_gpr(Gpr::Rax, rax);
        }
        IoDirection::Out => {
            let value = vcpu.gpr(Gpr::Rax) & size_mask(size);
            platform.pio_write(io.port, size, value as u32);
        }
    }
    vcpu.skip_instruction(io.len);
    run_ahead(vcpu, platform, misses);
    ExitAction::Resume
}

/// After an exit whose instruction completed (IN, OUT, INS, OUTS, RDTSC):
/// the next port accesses, if a little set-up away, in this exit too (PCI
/// configuration's CF8h/CFCh pair, the PIT read twice, a calibration loop's
/// reads after its RDTSC, SeaBIOS's status read after a sector). Not with
/// a hardware breakpoint set: it would have to trap on the way.
pub(super) fn run_ahead(
    vcpu: &mut impl VcpuState,
    platform: &mut impl Platform,
    misses: &mut RunAheadMisses,
) {
    if !platform.may_run_ahead() || vcpu.dr7() & DR7_BREAKPOINT_ENABLES != 0 {
        return;
    }
    let done = port_io_ahead(vcpu, platform, misses);
    if done.count > 0 {
        platform.ran_ahead(done.ports());
    }
}

/// DR7's L0-L3 and G0-G3 (SDM Vol 3A 18.2.4).
const DR7_BREAKPOINT_ENABLES: u64 = 0xFF;
