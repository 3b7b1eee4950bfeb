//! Intercepted exceptions: #DB and #AC, handed back to the guest.
//!
//! Without the intercepts, a guest whose delivery of #DB raises #DB again (a
//! data breakpoint on the stack its #DB gate switches to, CVE-2015-8104) or
//! whose delivery of #AC raises #AC (a CPL-3 gate on a misaligned stack with
//! alignment checking on, CVE-2015-5307) keeps the host CPU inside event
//! delivery for ever: no instruction boundary, so no host interrupt is ever
//! taken. Intercepted, each delivery attempt is a VM exit, so the host keeps
//! its CPU; Keel reflects the exception as the CPU would have delivered it,
//! and a loop that makes no progress ends the VM as a triple fault would.

use super::{ExitAction, StopReason};
use crate::vcpu::{Event, Gpr, VcpuState};

/// #DB and #AC, the vectors both backends intercept.
pub const DB: u8 = 1;
pub const AC: u8 = 17;

/// How many times in a row the same vector may come back at the same RIP
/// and RSP, with no exit between but host interrupts and interrupt windows,
/// before Keel calls it a delivery loop. A guest that makes progress moves
/// RIP or RSP, or exits for something else (its handler's I/O, a HLT); the
/// bound is large so that single-stepping a tight loop is not mistaken.
pub const MAX_EXCEPTION_LOOP: u32 = 10_000;

/// DR6 bits a #DB reports (SDM Vol 3A 17.2.3): B0-B3 (3:0), BD (13), BS
/// (14), BT (15).
const DR6_STATUS: u64 = 0xf | (1 << 13) | (1 << 14) | (1 << 15);
/// DR6.RTM (16) is active low; the VMX exit qualification reports it set
/// when the #DB arose in an RTM region (SDM Vol 3C 28.2.1, Table 28-1).
const DR6_RTM: u64 = 1 << 16;
/// DR6 bits that read as 1 (SDM Vol 3A 17.2.3: 4-11 and 31-17), with RTM.
const DR6_FIXED_1: u64 = 0xffff_0ff0;
/// DR6.BD: the #DB is a general-detect fault (a MOV DR with DR7.GD set).
pub const DR6_BD: u64 = 1 << 13;
/// DR7.GD: general detect enable, cleared by the CPU when it delivers #DB
/// so that the handler can use the debug registers (SDM Vol 3A 17.2.4).
pub const DR7_GD: u64 = 1 << 13;

/// DR6 after a #DB with the exit-qualification bits `status`, from DR6
/// before it: B0-B3 are replaced (the CPU may clear the ones that did not
/// hit, SDM Vol 3A 17.2.3), BD, BS and BT are set when reported and never
/// cleared, reserved bits read as 1, RTM is cleared for an RTM #DB.
pub fn dr6_after_debug_exception(old: u64, status: u64) -> u64 {
    let mut dr6 = (old & !0xf & DR6_STATUS) | DR6_FIXED_1 | (status & DR6_STATUS);
    if status & DR6_RTM != 0 {
        dr6 &= !DR6_RTM;
    }
    dr6
}

/// The count behind [`MAX_EXCEPTION_LOOP`], kept across exits.
#[derive(Debug, Clone, Default)]
pub struct ExceptionLoop {
    vector: u8,
    rip: u64,
    rsp: u64,
    count: u32,
}

impl ExceptionLoop {
    /// Counts one intercepted `vector` at `rip` / `rsp`; true at the limit.
    fn count(&mut self, vector: u8, rip: u64, rsp: u64) -> bool {
        if self.count == 0 || (self.vector, self.rip, self.rsp) != (vector, rip, rsp) {
            *self = ExceptionLoop {
                vector,
                rip,
                rsp,
                count: 0,
            };
        }
        self.count += 1;
        self.count >= MAX_EXCEPTION_LOOP
    }

    /// The guest did something else: the count starts again.
    pub(super) fn progress(&mut self) {
        self.count = 0;
    }
}

/// Reflects an intercepted exception into the guest: CR2 for #PF, DR6 and
/// DR7.GD for #DB as delivering it would leave them, the vector with its
/// error code. A delivery loop ([`MAX_EXCEPTION_LOOP`]) stops the VM.
pub(super) fn reflect_exception(
    vector: u8,
    error_code: Option<u32>,
    fault_address: Option<u64>,
    debug_status: Option<u64>,
    vcpu: &mut impl VcpuState,
    loops: &mut ExceptionLoop,
) -> ExitAction {
    let rip = vcpu.rip();
    if loops.count(vector, rip, vcpu.gpr(Gpr::Rsp)) {
        return ExitAction::Stop(StopReason::ExceptionLoop { vector, rip });
    }
    if let Some(addr) = fault_address {
        vcpu.set_cr(2, addr);
    }
    if vector == DB {
        vcpu.debug_exception(debug_status);
    }
    vcpu.inject(Event::Exception { vector, error_code });
    ExitAction::Resume
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::fake::FakeVcpu;

    #[test]
    fn dr6_takes_the_reported_bits_as_sdm_17_2_3_says() {
        // After reset DR6 is FFFF0FF0 (SDM Vol 3A 9.1.1, Table 9-1).
        assert_eq!(dr6_after_debug_exception(0xffff_0ff0, 0b0001), 0xffff_0ff1);
        // B0-B3 are replaced, BS stays once set, BD is added.
        assert_eq!(
            dr6_after_debug_exception(0xffff_4ff2, DR6_BD),
            0xffff_0ff0 | (1 << 14) | DR6_BD
        );
        // An RTM #DB clears the active-low RTM bit.
        assert_eq!(
            dr6_after_debug_exception(0xffff_0ff0, DR6_RTM | 1),
            0xfffe_0ff1
        );
    }

    #[test]
    fn a_delivery_loop_ends_the_vm_and_progress_resets_the_count() {
        let mut v = FakeVcpu::long_mode();
        v.gprs[Gpr::Rsp as usize] = 0x6000;
        let mut loops = ExceptionLoop::default();
        for _ in 0..MAX_EXCEPTION_LOOP - 1 {
            let a = reflect_exception(AC, Some(0), None, None, &mut v, &mut loops);
            assert_eq!(a, ExitAction::Resume);
        }
        assert_eq!(v.injected.len() as u32, MAX_EXCEPTION_LOOP - 1);
        assert!(v.injected.iter().all(|e| *e
            == Event::Exception {
                vector: AC,
                error_code: Some(0)
            }));
        loops.progress();
        assert_eq!(
            reflect_exception(AC, Some(0), None, None, &mut v, &mut loops),
            ExitAction::Resume,
            "progress started the count again"
        );
        for _ in 0..MAX_EXCEPTION_LOOP - 2 {
            reflect_exception(AC, Some(0), None, None, &mut v, &mut loops);
        }
        assert_eq!(
            reflect_exception(AC, Some(0), None, None, &mut v, &mut loops),
            ExitAction::Stop(StopReason::ExceptionLoop {
                vector: AC,
                rip: 0x1000
            })
        );
        // A #DB that moves on (single-stepping) never stops.
        let mut loops = ExceptionLoop::default();
        for i in 0..2 * u64::from(MAX_EXCEPTION_LOOP) {
            v.rip = 0x2000 + i % 3;
            let a = reflect_exception(DB, None, None, Some(1 << 14), &mut v, &mut loops);
            assert_eq!(a, ExitAction::Resume);
        }
        assert_eq!(v.debug.last(), Some(&Some(1 << 14)));
    }
}
