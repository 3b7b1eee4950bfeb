//! Delivering interrupts to a vCPU before each entry, the same for every backend.
//!
//! The platform's interrupt controllers say what is pending; this decides
//! whether it can be delivered now (SDM Vol 3A 6.8.1, 6.8.3: RFLAGS.IF and the
//! STI / MOV SS shadow gate maskable interrupts) and either injects it or asks
//! the backend for an interrupt-window exit so it is delivered as soon as the
//! guest allows. An event that the backend re-queued after an exit
//! interrupted its delivery goes first.
//!
//! NMIs (SDM Vol 3A 6.7.1): RFLAGS.IF does not hold them back, but an NMI
//! handler that has not yet executed its IRET does ("blocking by NMI",
//! [`VcpuState::nmi_blocked`]). An NMI that arrives meanwhile stays latched
//! in the local APIC, which holds one: any more that arrive before it is
//! taken are the same NMI, as on hardware. It is injected at the NMI window
//! ([`VcpuState::set_nmi_window_exiting`]), so two NMIs sent back to back
//! reach the guest's handler one after the other, never nested.

use crate::vcpu::{Event, VcpuState};

/// The interrupt controllers as one vCPU sees them.
pub trait InterruptSource {
    /// Whether a maskable interrupt is ready for this vCPU (not yet acknowledged).
    fn interrupt_pending(&mut self) -> bool;
    /// The INTA cycle: the vector to deliver, now in service at its controller;
    /// `None` if nothing is pending any more (the controller may say spurious).
    fn acknowledge_interrupt(&mut self) -> Option<u8>;
    /// Whether an NMI is waiting for this vCPU.
    fn nmi_pending(&mut self) -> bool;
    /// The NMI was delivered.
    fn acknowledge_nmi(&mut self);
}

/// What [`deliver`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delivery {
    /// Nothing was pending, or an earlier event is still queued.
    Nothing,
    /// An NMI was injected.
    Nmi,
    /// This vector was injected as an external interrupt.
    Interrupt(u8),
    /// An interrupt is pending but the guest cannot take it yet; the backend
    /// will exit when it can.
    WindowRequested,
    /// An NMI is pending but the guest blocks NMIs (its handler runs, or an
    /// interrupt shadow); the backend will exit when it can take it.
    NmiWindowRequested,
}

const RFLAGS_IF: u64 = 1 << 9;

/// Injects the most urgent deliverable event, or requests the window
/// (interrupt, NMI) each pending one waits for.
pub fn deliver(vcpu: &mut impl VcpuState, source: &mut impl InterruptSource) -> Delivery {
    let nmi = source.nmi_pending();
    if vcpu.event_pending() {
        // One event per entry; what waits keeps its window open.
        let waiting = source.interrupt_pending();
        vcpu.set_interrupt_window_exiting(waiting);
        vcpu.set_nmi_window_exiting(nmi);
        return Delivery::Nothing;
    }
    // NMIs ignore RFLAGS.IF, not blocking by NMI or the shadow.
    let nmi_waits = nmi && (vcpu.nmi_blocked() || vcpu.nmi_shadow());
    vcpu.set_nmi_window_exiting(nmi_waits);
    if nmi && !nmi_waits {
        source.acknowledge_nmi();
        vcpu.inject(Event::Nmi);
        let waiting = source.interrupt_pending();
        vcpu.set_interrupt_window_exiting(waiting);
        return Delivery::Nmi;
    }
    let nothing = if nmi_waits {
        Delivery::NmiWindowRequested
    } else {
        Delivery::Nothing
    };
    if !source.interrupt_pending() {
        vcpu.set_interrupt_window_exiting(false);
        return nothing;
    }
    if vcpu.rflags() & RFLAGS_IF == 0 || vcpu.interrupt_shadow() {
        vcpu.set_interrupt_window_exiting(true);
        return Delivery::WindowRequested;
    }
    vcpu.set_interrupt_window_exiting(false);
    match source.acknowledge_interrupt() {
        Some(vector) => {
            vcpu.inject(Event::ExternalInterrupt { vector });
            Delivery::Interrupt(vector)
        }
        None => nothing,
    }
}

/// What the VM loop knows about a halted vCPU and the devices that could wake it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HaltState {
    /// RFLAGS.IF: maskable interrupts can wake the vCPU.
    pub interrupts_enabled: bool,
    /// A maskable interrupt is ready for the vCPU now.
    pub interrupt_pending: bool,
    /// An NMI is waiting for the vCPU now.
    pub nmi_pending: bool,
    /// The vCPU blocks NMIs (halted inside its NMI handler): a waiting or
    /// routed NMI cannot wake it ([`VcpuState::nmi_blocked`]).
    pub nmi_blocked: bool,
    /// A device interrupt can reach the vCPU as an NMI: an unmasked IOAPIC
    /// redirection entry or local APIC LINT entry with NMI delivery.
    pub nmi_route: bool,
    /// The guest asked for a reset, power-off or debug exit.
    pub power_request: bool,
    /// When the next device timer fires, if one is armed: with the vCPU
    /// halted, nothing else changes device state.
    pub next_deadline_ns: Option<u64>,
}

/// What the VM loop does with a halted vCPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HaltDecision {
    /// Something wakes it now: enter the guest again.
    Resume,
    /// Nothing is due yet, but a device timer may raise a waking interrupt
    /// or NMI: sleep until then and look again.
    SleepUntil(u64),
    /// Nothing can ever wake the vCPU (SDM Vol 3A 8.10.2: HLT ends on an
    /// unmasked interrupt, NMI, SMI, INIT or reset; Keel raises no SMI).
    Stop { interrupts_enabled: bool },
}

/// Decides, after HLT, whether the vCPU wakes, sleeps until the next device
/// timer, or can never run again. With RFLAGS.IF clear only an NMI wakes it,
/// so it is stopped only if no device routes one to it (or it blocks NMIs,
/// halted in its NMI handler); otherwise it waits, as the CPU would.
pub fn halt_decision(s: &HaltState) -> HaltDecision {
    let nmi_wakes = s.nmi_pending && !s.nmi_blocked;
    if nmi_wakes || s.power_request || (s.interrupts_enabled && s.interrupt_pending) {
        return HaltDecision::Resume;
    }
    if !s.interrupts_enabled && (!s.nmi_route || s.nmi_blocked) {
        return HaltDecision::Stop {
            interrupts_enabled: false,
        };
    }
    match s.next_deadline_ns {
        Some(deadline) => HaltDecision::SleepUntil(deadline),
        None => HaltDecision::Stop {
            interrupts_enabled: s.interrupts_enabled,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::tests::FakeVcpu;
    use std::vec::Vec;

    #[derive(Default)]
    struct Source {
        vectors: Vec<u8>,
        nmi: bool,
        acked: Vec<u8>,
    }

    impl InterruptSource for Source {
        fn interrupt_pending(&mut self) -> bool {
            !self.vectors.is_empty()
        }
        fn acknowledge_interrupt(&mut self) -> Option<u8> {
            let v = self.vectors.pop()?;
            self.acked.push(v);
            Some(v)
        }
        fn nmi_pending(&mut self) -> bool {
            self.nmi
        }
        fn acknowledge_nmi(&mut self) {
            self.nmi = false;
        }
    }

    fn enabled() -> FakeVcpu {
        let mut v = FakeVcpu::protected_flat();
        v.rflags |= RFLAGS_IF;
        v
    }

    #[test]
    fn injects_when_the_guest_accepts() {
        let (mut v, mut s) = (
            enabled(),
            Source {
                vectors: std::vec![0x30],
                ..Default::default()
            },
        );
        assert_eq!(deliver(&mut v, &mut s), Delivery::Interrupt(0x30));
        assert_eq!(v.injected, [Event::ExternalInterrupt { vector: 0x30 }]);
        assert_eq!(s.acked, [0x30]);
        assert!(!v.window);
    }

    #[test]
    fn waits_for_if_and_the_shadow() {
        let mut s = Source {
            vectors: std::vec![0x30],
            ..Default::default()
        };
        let mut v = FakeVcpu::protected_flat(); // IF = 0
        assert_eq!(deliver(&mut v, &mut s), Delivery::WindowRequested);
        assert!(
            v.window && v.injected.is_empty() && s.acked.is_empty(),
            "not acknowledged until it can be delivered"
        );
        let mut v = enabled();
        v.shadow = true;
        assert_eq!(deliver(&mut v, &mut s), Delivery::WindowRequested);
        v.shadow = false;
        assert_eq!(deliver(&mut v, &mut s), Delivery::Interrupt(0x30));
        assert!(!v.window);
    }

    #[test]
    fn a_queued_event_goes_first() {
        let mut v = enabled();
        v.inject(Event::GP0);
        let mut s = Source {
            vectors: std::vec![0x30],
            nmi: true,
            ..Default::default()
        };
        assert_eq!(deliver(&mut v, &mut s), Delivery::Nothing);
        assert_eq!(v.injected, [Event::GP0]);
        assert!(v.window, "the pending interrupt gets the next window");
        assert!(s.nmi && s.acked.is_empty());
    }

    #[test]
    fn nmi_ignores_if_but_not_the_shadow() {
        let mut v = FakeVcpu::protected_flat();
        let mut s = Source {
            nmi: true,
            ..Default::default()
        };
        v.shadow = true;
        assert_eq!(deliver(&mut v, &mut s), Delivery::NmiWindowRequested);
        assert!(
            v.nmi_window && s.nmi,
            "asked for the window, not acknowledged"
        );
        v.shadow = false;
        assert_eq!(deliver(&mut v, &mut s), Delivery::Nmi);
        assert_eq!(v.injected, [Event::Nmi]);
        assert!(!s.nmi && !v.nmi_window);
    }

    /// SDM Vol 3A 6.7.1: while the NMI handler runs (until its IRET) no NMI
    /// is delivered; one that arrives is latched (the local APIC's one
    /// pending NMI, here `Source::nmi`: two sends set it once) and goes in
    /// at the NMI window, so the handler runs twice, one after the other.
    #[test]
    fn nmis_sent_while_the_handler_runs_wait_for_its_iret_one_latched() {
        let mut v = FakeVcpu::protected_flat();
        let mut s = Source {
            nmi: true,
            ..Default::default()
        };
        assert_eq!(deliver(&mut v, &mut s), Delivery::Nmi);
        assert!(v.nmi_blocked, "delivering an NMI blocks NMIs");
        v.injected.clear(); // entered: the handler runs
                            // The handler sends itself two NMIs back to back: one latch.
        s.nmi = true;
        s.nmi = true;
        for _ in 0..3 {
            // Exits inside the handler (its ICR writes, a host timer).
            assert_eq!(deliver(&mut v, &mut s), Delivery::NmiWindowRequested);
            assert!(v.injected.is_empty(), "no nesting");
            assert!(v.nmi_window && s.nmi, "latched, waiting for the window");
        }
        // Its IRET unblocks NMIs: the NMI-window exit, then the latched NMI.
        v.nmi_blocked = false;
        assert_eq!(deliver(&mut v, &mut s), Delivery::Nmi);
        assert_eq!(v.injected, [Event::Nmi]);
        assert!(!v.nmi_window && !s.nmi);
        // The second handler's IRET: nothing more, the other send was the
        // same latched NMI.
        v.injected.clear();
        v.nmi_blocked = false;
        assert_eq!(deliver(&mut v, &mut s), Delivery::Nothing);
        assert!(v.injected.is_empty() && !v.nmi_window);
    }

    #[test]
    fn a_blocked_nmi_leaves_maskable_interrupts_alone() {
        let mut v = enabled();
        v.nmi_blocked = true;
        let mut s = Source {
            vectors: std::vec![0x30],
            nmi: true,
            ..Default::default()
        };
        assert_eq!(deliver(&mut v, &mut s), Delivery::Interrupt(0x30));
        assert!(v.nmi_window && s.nmi, "the NMI still waits for its window");
        // A queued event: both windows stay asked for.
        s.vectors.push(0x31);
        assert_eq!(deliver(&mut v, &mut s), Delivery::Nothing);
        assert!(v.window && v.nmi_window);
    }

    #[test]
    fn nothing_pending_closes_the_window() {
        let mut v = enabled();
        v.window = true;
        assert_eq!(deliver(&mut v, &mut Source::default()), Delivery::Nothing);
        assert!(!v.window);
    }

    /// Finding #14: `cli; hlt` with an NMI routed to the vCPU was stopped
    /// with 123 though the NMI can still wake it.
    #[test]
    fn a_halt_with_if_clear_waits_for_a_routed_nmi() {
        let cli_hlt = HaltState {
            interrupts_enabled: false,
            interrupt_pending: false,
            nmi_pending: false,
            nmi_blocked: false,
            nmi_route: true,
            power_request: false,
            next_deadline_ns: Some(5_000),
        };
        assert_eq!(halt_decision(&cli_hlt), HaltDecision::SleepUntil(5_000));
        let no_route = HaltState {
            nmi_route: false,
            ..cli_hlt
        };
        assert_eq!(
            halt_decision(&no_route),
            HaltDecision::Stop {
                interrupts_enabled: false
            }
        );
        // Halted in its NMI handler: NMIs are blocked, so neither a waiting
        // NMI nor a route wakes it (SDM Vol 3A 6.7.1).
        let in_handler = HaltState {
            nmi_blocked: true,
            ..cli_hlt
        };
        assert_eq!(
            halt_decision(&in_handler),
            HaltDecision::Stop {
                interrupts_enabled: false
            }
        );
        assert_eq!(
            halt_decision(&HaltState {
                nmi_pending: true,
                ..in_handler
            }),
            HaltDecision::Stop {
                interrupts_enabled: false
            }
        );
        let no_timer = HaltState {
            next_deadline_ns: None,
            ..cli_hlt
        };
        assert_eq!(
            halt_decision(&no_timer),
            HaltDecision::Stop {
                interrupts_enabled: false
            },
            "a route with no timer to drive it"
        );
        for woken in [
            HaltState {
                nmi_pending: true,
                ..no_route
            },
            HaltState {
                power_request: true,
                ..no_route
            },
        ] {
            assert_eq!(halt_decision(&woken), HaltDecision::Resume);
        }
        // A pending maskable interrupt wakes only with IF set.
        let masked = HaltState {
            interrupt_pending: true,
            ..cli_hlt
        };
        assert_eq!(halt_decision(&masked), HaltDecision::SleepUntil(5_000));
        let sti_hlt = HaltState {
            interrupts_enabled: true,
            nmi_route: false,
            ..masked
        };
        assert_eq!(halt_decision(&sti_hlt), HaltDecision::Resume);
        let idle = HaltState {
            interrupt_pending: false,
            next_deadline_ns: None,
            ..sti_hlt
        };
        assert_eq!(
            halt_decision(&idle),
            HaltDecision::Stop {
                interrupts_enabled: true
            }
        );
    }
}
