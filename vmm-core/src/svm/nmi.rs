//! NMI blocking and the NMI window on SVM, which has neither in hardware
//! (without the vNMI extension): Keel follows them itself.
//!
//! SDM Vol 3A 6.7.1 / APM Vol 2 8.5: delivering an NMI blocks further NMIs
//! until the next IRET. The VMCB has no field that says whether the guest
//! blocks NMIs, nor an exit for "NMIs are unblocked now", so:
//! - injecting an NMI puts the guest in its handler ([`Phase::InHandler`])
//!   and turns the IRET intercept on (APM Vol 2 15.9; the intercept is
//!   taken before the IRET runs, with RIP at it);
//! - the intercepted IRET ([`Phase::AtIret`]) turns the intercept off; NMIs
//!   are unblocked once the guest is past that instruction: at the first
//!   exit whose RIP is elsewhere;
//! - when an NMI waits for the window, Keel sets RFLAGS.TF over the IRET
//!   (or over the one instruction of an interrupt shadow) so that the single-step #DB, which both backends
//!   intercept, ends the guest's run right after it ([`Step`]). That #DB is
//!   Keel's, not the guest's: it becomes [`crate::VmExit::NmiWindow`], and
//!   DR6 and TF are put back as they were.
//!
//! A guest that single-steps its own code at that point still gets its
//! #DB. What the guest sees of Keel's TF: the RFLAGS image an exception
//! raised by that one instruction pushes (a faulting IRET), as on KVM. No
//! step is armed while an event is being injected (the image its delivery
//! pushes would carry Keel's TF into the guest's handler, whose IRET would
//! then raise a #DB nobody armed): the NMI waits for the next exit.

/// RFLAGS.TF: a single-step #DB after the next instruction (SDM Vol 3A 17.3.1.4).
pub const RFLAGS_TF: u64 = 1 << 8;
/// DR6.BS: the #DB is a single step.
pub const DR6_BS: u64 = 1 << 14;
/// DR6 bits of other #DB causes: B0-B3 and BD.
const DR6_OTHER_CAUSES: u64 = 0xf | (1 << 13);

/// Where the guest is with NMIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Phase {
    /// NMIs may be injected.
    #[default]
    Unblocked,
    /// An NMI was injected and its handler has not reached an IRET: the
    /// IRET intercept is on.
    InHandler,
    /// The IRET at `rip` was intercepted before it ran; NMIs are unblocked
    /// once the guest is past it.
    AtIret { rip: u64 },
}

/// What the single step over one instruction was armed over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOver {
    /// The handler's IRET: it loads RFLAGS (TF included) from its frame.
    Iret,
    /// The one instruction of an interrupt shadow.
    Other,
}

/// A single step Keel armed: what to put back at the next exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub over: StepOver,
    /// RFLAGS.TF as the guest had it.
    pub guest_tf: bool,
    /// DR6 before the step (the #DB sets BS in it).
    pub dr6: u64,
}

/// The guest registers the tracker reads and puts back after an exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitState {
    pub rip: u64,
    pub rflags: u64,
    pub dr6: u64,
}

/// What the exit was, as far as NMIs go.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitSeen {
    /// The IRET intercept.
    Iret,
    /// An intercepted #DB.
    DebugException,
    /// Anything else.
    Other,
}

/// What the vCPU does with the exit after [`NmiTracker::after_exit`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitVerdict {
    /// Hand the decoded exit on.
    AsDecoded,
    /// The #DB was Keel's single step alone: it is the NMI window.
    NmiWindow,
}

/// NMI blocking and the single step of one SVM vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NmiTracker {
    phase: Phase,
    step: Option<Step>,
}

impl NmiTracker {
    /// RESET or INIT: nothing blocked, nothing armed.
    pub fn reset(&mut self) {
        *self = NmiTracker::default();
    }

    #[cfg(test)]
    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether the guest blocks NMIs.
    pub fn blocked(&self) -> bool {
        self.phase != Phase::Unblocked
    }

    /// Whether the IRET intercept must be on.
    pub fn wants_iret_intercept(&self) -> bool {
        self.phase == Phase::InHandler
    }

    /// An NMI is being injected (or injected again after an exit
    /// interrupted its delivery): its handler runs next.
    pub fn nmi_injected(&mut self) {
        self.phase = Phase::InHandler;
    }

    /// After an exit: puts back what a single step changed (returned as the
    /// guest's new state), unblocks NMIs once the guest is past the
    /// intercepted IRET, and says whether the exit was Keel's own #DB.
    pub fn after_exit(&mut self, exit: ExitSeen, s: ExitState) -> (ExitState, ExitVerdict) {
        let mut s = s;
        let mut verdict = ExitVerdict::AsDecoded;
        if let Some(step) = self.step.take() {
            let stepped = exit == ExitSeen::DebugException && s.dr6 & DR6_BS != 0;
            // After the IRET, TF is what its frame held; in every other case
            // it is still Keel's.
            if !(stepped && step.over == StepOver::Iret) {
                s.rflags = (s.rflags & !RFLAGS_TF) | if step.guest_tf { RFLAGS_TF } else { 0 };
            }
            if stepped {
                let other_causes = s.dr6 & DR6_OTHER_CAUSES & !step.dr6 != 0;
                if !step.guest_tf && !other_causes {
                    s.dr6 = step.dr6;
                    verdict = ExitVerdict::NmiWindow;
                } else if !step.guest_tf {
                    // A breakpoint of the guest's hit too: its #DB, without
                    // the single step that was Keel's.
                    s.dr6 = (s.dr6 & !DR6_BS) | (step.dr6 & DR6_BS);
                }
            }
        }
        if let Phase::AtIret { rip } = self.phase {
            if s.rip != rip {
                self.phase = Phase::Unblocked;
            }
        }
        if exit == ExitSeen::Iret {
            // Only intercepted in the handler; any IRET ends the blocking
            // (SDM Vol 3A 6.7.1), once it has run.
            self.phase = Phase::AtIret { rip: s.rip };
        }
        (s, verdict)
    }

    /// Before an entry, with an NMI waiting (`on`; never while an event is
    /// being injected) or not: arms a single step when one instruction
    /// stands between the guest and the window (the intercepted IRET, a
    /// shadow); in the handler the IRET intercept comes first. Returns the
    /// RFLAGS to enter with.
    pub fn window(&mut self, on: bool, s: ExitState) -> u64 {
        if !on {
            return self.disarm(s.rflags);
        }
        if self.step.is_some() {
            return s.rflags;
        }
        let over = match self.phase {
            Phase::InHandler => return s.rflags,
            Phase::AtIret { rip } if rip == s.rip => StepOver::Iret,
            // Past it already: unblocked at the next exit anyway.
            Phase::AtIret { .. } => return s.rflags,
            Phase::Unblocked => StepOver::Other,
        };
        self.step = Some(Step {
            over,
            guest_tf: s.rflags & RFLAGS_TF != 0,
            dr6: s.dr6,
        });
        s.rflags | RFLAGS_TF
    }

    /// Drops an armed step that has not run: the RFLAGS to keep.
    fn disarm(&mut self, rflags: u64) -> u64 {
        match self.step.take() {
            Some(step) => (rflags & !RFLAGS_TF) | if step.guest_tf { RFLAGS_TF } else { 0 },
            None => rflags,
        }
    }

    /// The step armed for the next entry, if any.
    #[cfg(test)]
    pub fn step(&self) -> Option<Step> {
        self.step
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IRET_RIP: u64 = 0x1000;
    const DR6_INIT: u64 = 0xffff_0ff0;

    fn at(rip: u64) -> ExitState {
        ExitState {
            rip,
            rflags: 0x2,
            dr6: DR6_INIT,
        }
    }

    /// An NMI, its handler, the intercepted IRET, the single step over it.
    #[test]
    fn the_window_opens_after_the_handlers_iret_has_run() {
        let mut t = NmiTracker::default();
        assert!(!t.blocked() && !t.wants_iret_intercept());
        t.nmi_injected();
        assert!(t.blocked() && t.wants_iret_intercept());
        // An NMI waits: in the handler the IRET intercept comes first.
        assert_eq!(t.window(true, at(0x2000)), 0x2);
        assert_eq!(t.step(), None);
        // Exits inside the handler leave it blocked.
        let (_, v) = t.after_exit(ExitSeen::Other, at(0x2004));
        assert_eq!(v, ExitVerdict::AsDecoded);
        assert!(t.blocked());
        // The IRET intercept: RIP at the IRET, which has not run.
        t.after_exit(ExitSeen::Iret, at(IRET_RIP));
        assert_eq!(t.phase(), Phase::AtIret { rip: IRET_RIP });
        assert!(t.blocked() && !t.wants_iret_intercept());
        // The NMI still waits: a single step over the IRET.
        let rflags = t.window(true, at(IRET_RIP));
        assert_eq!(rflags, 0x2 | RFLAGS_TF);
        // A host interrupt before the IRET ran: TF goes, still blocked.
        let (s, v) = t.after_exit(
            ExitSeen::Other,
            ExitState {
                rflags,
                ..at(IRET_RIP)
            },
        );
        assert_eq!((s.rflags, v), (0x2, ExitVerdict::AsDecoded));
        assert!(t.blocked());
        // Armed again; the IRET runs (its frame's RFLAGS has no TF) and
        // the #DB after it is Keel's: the window, DR6 as it was.
        let rflags = t.window(true, at(IRET_RIP));
        assert_eq!(rflags & RFLAGS_TF, RFLAGS_TF);
        let (s, v) = t.after_exit(
            ExitSeen::DebugException,
            ExitState {
                rip: 0x3000,
                rflags: 0x202,
                dr6: DR6_INIT | DR6_BS,
            },
        );
        assert_eq!(v, ExitVerdict::NmiWindow);
        assert_eq!((s.rflags, s.dr6), (0x202, DR6_INIT), "TF from the frame");
        assert!(!t.blocked());
    }

    #[test]
    fn without_an_nmi_waiting_the_next_exit_past_the_iret_unblocks() {
        let mut t = NmiTracker::default();
        t.nmi_injected();
        t.after_exit(ExitSeen::Iret, at(IRET_RIP));
        assert_eq!(t.window(false, at(IRET_RIP)), 0x2);
        let (_, v) = t.after_exit(ExitSeen::Other, at(IRET_RIP));
        assert_eq!(v, ExitVerdict::AsDecoded);
        assert!(t.blocked(), "the IRET has not run yet");
        t.after_exit(ExitSeen::Other, at(0x5000));
        assert!(!t.blocked());
        assert!(!t.wants_iret_intercept());
    }

    #[test]
    fn a_guest_single_stepping_itself_keeps_its_debug_exception_and_tf() {
        let mut t = NmiTracker::default();
        t.nmi_injected();
        t.after_exit(ExitSeen::Iret, at(IRET_RIP));
        let s = ExitState {
            rflags: 0x2 | RFLAGS_TF,
            ..at(IRET_RIP)
        };
        assert_eq!(t.window(true, s), 0x2 | RFLAGS_TF);
        let (s, v) = t.after_exit(
            ExitSeen::DebugException,
            ExitState {
                rip: 0x3000,
                rflags: 0x2 | RFLAGS_TF,
                dr6: DR6_INIT | DR6_BS,
            },
        );
        assert_eq!(v, ExitVerdict::AsDecoded, "the guest's #DB");
        assert_eq!(s.dr6, DR6_INIT | DR6_BS);
        assert!(!t.blocked());
    }

    #[test]
    fn a_guest_breakpoint_hit_with_the_step_is_the_guests_without_bs() {
        let mut t = NmiTracker::default();
        t.window(true, at(0x4000)); // a shadow: step over one instruction
        let (s, v) = t.after_exit(
            ExitSeen::DebugException,
            ExitState {
                rip: 0x4002,
                rflags: 0x2 | RFLAGS_TF,
                dr6: DR6_INIT | DR6_BS | 1,
            },
        );
        assert_eq!(v, ExitVerdict::AsDecoded);
        assert_eq!(s.dr6, DR6_INIT | 1);
        assert_eq!(s.rflags, 0x2, "Keel's TF is gone");
    }

    #[test]
    fn a_step_over_other_code_restores_tf_and_a_dropped_window_disarms() {
        let mut t = NmiTracker::default();
        let rflags = t.window(true, at(0x4000));
        assert_eq!(rflags, 0x2 | RFLAGS_TF);
        assert_eq!(t.window(true, at(0x4000)), 0x2, "armed once");
        // No NMI waits any more before the entry: disarmed.
        assert_eq!(
            t.window(
                false,
                ExitState {
                    rflags,
                    ..at(0x4000)
                }
            ),
            0x2
        );
        assert_eq!(t.step(), None);
        // Armed, then the instruction ran and stepped.
        let rflags = t.window(true, at(0x4000));
        let (s, v) = t.after_exit(
            ExitSeen::DebugException,
            ExitState {
                rip: 0x4001,
                rflags,
                dr6: DR6_INIT | DR6_BS,
            },
        );
        assert_eq!(
            (s.rflags, s.dr6, v),
            (0x2, DR6_INIT, ExitVerdict::NmiWindow)
        );
    }

    #[test]
    fn reset_unblocks() {
        let mut t = NmiTracker::default();
        t.nmi_injected();
        t.reset();
        assert!(!t.blocked() && t.step().is_none());
    }
}
