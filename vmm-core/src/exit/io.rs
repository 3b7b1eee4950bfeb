//! Port I/O exits: IN and OUT here; INS and OUTS (with or without REP) go
//! through the instruction emulator, which translates DS:rSI / ES:rDI through
//! the guest's segmentation and paging and repeats up to its iteration limit
//! per exit, so a sector moved with one REP INSW costs one exit.

use super::emulate::{emulate_instruction, port_io_ahead};
use super::{ExitAction, IoDirection, IoExit, Platform, StopReason};
use crate::vcpu::{Gpr, VcpuState};

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
    // The miss table first: it is the cheapest test, and on most exits
    // of a loop that never runs ahead it is the only one.
    let rip = vcpu.rip();
    if !misses.worth_trying(rip)
        || !platform.may_run_ahead()
        || vcpu.dr7() & DR7_BREAKPOINT_ENABLES != 0
    {
        return;
    }
    let done = port_io_ahead(vcpu, platform);
    misses.record(rip, done.count > 0);
    if done.count > 0 {
        platform.ran_ahead(done.ports());
    }
}

/// Where a run ahead lately found nothing: a loop of exits that never
/// leads to another port access soon (`out; dec; jnz`, a driver's status
/// read followed by a return) would otherwise fetch and decode after every
/// exit for nothing. After [`RunAheadMisses::MISSES`] misses in a row at one
/// RIP, the next [`RunAheadMisses::SKIPS`] exits there do not try; one success
/// clears the count. It only ever skips the optimization, so a stale entry
/// (other code at that RIP now) costs nothing but a missed run ahead.
#[derive(Debug, Clone, Default)]
pub struct RunAheadMisses {
    /// By RIP's low bits: the RIP, its misses in a row, exits left to skip.
    slots: [(u64, u8, u8); 8],
}

impl RunAheadMisses {
    const MISSES: u8 = 2;
    const SKIPS: u8 = 64;

    fn slot(&mut self, rip: u64) -> &mut (u64, u8, u8) {
        let i = ((rip ^ (rip >> 7)) as usize) % self.slots.len();
        let slot = &mut self.slots[i];
        if slot.0 != rip {
            *slot = (rip, 0, 0);
        }
        slot
    }

    /// Whether to run ahead after the exit that left the guest at `rip`.
    fn worth_trying(&mut self, rip: u64) -> bool {
        let slot = self.slot(rip);
        if slot.2 > 0 {
            slot.2 -= 1;
            return false;
        }
        true
    }

    /// What the run ahead from `rip` found.
    fn record(&mut self, rip: u64, found: bool) {
        let slot = self.slot(rip);
        if found {
            slot.1 = 0;
        } else {
            slot.1 = slot.1.saturating_add(1);
            if slot.1 >= Self::MISSES {
                slot.2 = Self::SKIPS;
            }
        }
    }
}

/// DR7's L0-L3 and G0-G3 (SDM Vol 3A 18.2.4).
const DR7_BREAKPOINT_ENABLES: u64 = 0xFF;

#[cfg(test)]
mod tests {
    use super::RunAheadMisses;

    #[test]
    fn two_misses_in_a_row_skip_the_next_tries_at_that_rip_only() {
        let mut m = RunAheadMisses::default();
        for _ in 0..RunAheadMisses::MISSES {
            assert!(m.worth_trying(0x1000));
            m.record(0x1000, false);
        }
        let skipped = (0..100).take_while(|_| !m.worth_trying(0x1000)).count();
        assert_eq!(skipped, usize::from(RunAheadMisses::SKIPS));
        // Another RIP is tried meanwhile; a success clears the count.
        let mut m2 = RunAheadMisses::default();
        m2.record(0x2000, false);
        assert!(m2.worth_trying(0x2000));
        m2.record(0x2000, true);
        m2.record(0x2000, false);
        assert!(m2.worth_trying(0x2000), "one miss after a success");
        // A loop that ends once in a while (a branch taken at its end) keeps
        // running ahead: single misses never skip.
        for _ in 0..10 {
            assert!(m2.worth_trying(0x3000));
            m2.record(0x3000, true);
            assert!(m2.worth_trying(0x3000));
            m2.record(0x3000, false);
        }
    }
}
