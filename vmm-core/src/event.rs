//! The architecture's rules for the events Keel injects, the same for both
//! backends: which events carry an error code in which mode, how an event is
//! written into VMX's VM-entry interruption-information field and SVM's
//! EVENTINJ, how an event whose delivery an exit interrupted is read back,
//! and how an exception raised while another event is being delivered
//! combines with it (double fault, shutdown).
//!
//! Pure functions of plain values; the backends read and write their fields.

use crate::vcpu::Event;

/// The interruption-information layout VMX (SDM Vol 3C 25.8.3, Table 25-17;
/// 25.9.3, IDT-vectoring information) and SVM (APM Vol 2 15.20, EVENTINJ;
/// 15.7.2, EXITINTINFO) share: vector in 7:0, type in 10:8, error code valid
/// in 11, valid in 31.
const VALID: u32 = 1 << 31;
const ERROR_CODE_VALID: u32 = 1 << 11;
const TYPE_SHIFT: u32 = 8;

/// VMX interruption types (SDM Vol 3C Table 25-17). SVM uses 0, 2, 3 and 4
/// with the same meaning (APM Vol 2 15.20) and reports #BP, #OF and ICEBP's
/// #DB as type 3.
const TYPE_EXTERNAL: u32 = 0;
const TYPE_NMI: u32 = 2;
const TYPE_HW_EXCEPTION: u32 = 3;
const TYPE_SW_INTERRUPT: u32 = 4;
const TYPE_PRIV_SW_EXCEPTION: u32 = 5;
const TYPE_SW_EXCEPTION: u32 = 6;

/// #DB, #DF, #BP and #OF: the vectors software events use.
const DB: u8 = 1;
const DF: u8 = 8;

/// Whether exception `vector` pushes an error code when delivered in
/// protected mode (SDM Vol 3A 6.13, Table 6-1): #DF, #TS, #NP, #SS, #GP, #PF,
/// #AC and #CP. In real-address mode no exception pushes one (SDM Vol 3A
/// 20.1.4), and VM entry refuses an error code there (SDM Vol 3C 26.2.1.3).
pub fn has_error_code(vector: u8) -> bool {
    matches!(vector, 8 | 10..=14 | 17 | 21)
}

/// The event as the hardware fields hold it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Encoded {
    /// Interruption information (VMX) or EVENTINJ bits 31:0 (SVM), valid bit set.
    pub info: u32,
    /// The error code to deliver, exactly when `info` has bit 11 set.
    pub error_code: Option<u32>,
    /// VMX VM-entry instruction length, for types 4, 5 and 6 only (SDM Vol
    /// 3C 26.2.1.3: 1 to 15, the length of the instruction that raised it).
    pub instruction_len: Option<u8>,
}

impl Encoded {
    /// EVENTINJ as one 64-bit value: the error code in bits 63:32 (APM Vol 2 15.20).
    pub fn eventinj(&self) -> u64 {
        u64::from(self.info) | (u64::from(self.error_code.unwrap_or(0)) << 32)
    }
}

fn pack(kind: u32, vector: u8, error_code: Option<u32>, len: Option<u8>) -> Encoded {
    let ev = if error_code.is_some() {
        ERROR_CODE_VALID
    } else {
        0
    };
    Encoded {
        info: VALID | ev | (kind << TYPE_SHIFT) | u32::from(vector),
        error_code,
        instruction_len: len,
    }
}

/// The error code a hardware exception delivers: the vector's own rule and
/// the mode decide, not the caller (`protected` is CR0.PE). A vector that
/// pushes one but was given none delivers 0.
fn exception_error_code(vector: u8, error_code: Option<u32>, protected: bool) -> Option<u32> {
    (protected && has_error_code(vector)).then(|| error_code.unwrap_or(0))
}

/// What to write in the VMX VM-entry interruption-information, exception
/// error-code and instruction-length fields to deliver `event` to a guest
/// whose CR0.PE is `protected` (SDM Vol 3C 26.2.1.3, 26.6.1.3; Keel always
/// runs with unrestricted guest, so CR0.PE may be 0). Vector 2 as an
/// exception is the NMI, which VMX only takes as type 2.
pub fn vmx_entry(event: Event, protected: bool) -> Encoded {
    match event {
        Event::Exception { vector: 2, .. } | Event::Nmi => pack(TYPE_NMI, 2, None, None),
        Event::Exception { vector, error_code } => pack(
            TYPE_HW_EXCEPTION,
            vector,
            exception_error_code(vector, error_code, protected),
            None,
        ),
        Event::ExternalInterrupt { vector } => pack(TYPE_EXTERNAL, vector, None, None),
        Event::SoftwareInterrupt { vector, len } => {
            pack(TYPE_SW_INTERRUPT, vector, None, Some(entry_len(len)))
        }
        Event::SoftwareException { vector, len } => {
            pack(TYPE_SW_EXCEPTION, vector, None, Some(entry_len(len)))
        }
        Event::PrivilegedSoftwareException { len } => {
            pack(TYPE_PRIV_SW_EXCEPTION, DB, None, Some(entry_len(len)))
        }
    }
}

/// VM entry takes an instruction length of 1 to 15 for types 4 to 6 (SDM
/// Vol 3C 26.2.1.3); an instruction is never longer than 15 bytes.
fn entry_len(len: u8) -> u8 {
    len.clamp(1, 15)
}

/// EVENTINJ for `event` (APM Vol 2 15.20). SVM has no instruction-length
/// field and no types 5 and 6: a software event is injected with the
/// return address already past its instruction (the backend moves RIP by
/// [`Encoded::instruction_len`]), INT3 / INTO / ICEBP as exceptions 3 / 4 / 1.
/// Vector 2 as an exception is refused by VMRUN, so it becomes the NMI.
pub fn svm_eventinj(event: Event, protected: bool) -> Encoded {
    match event {
        Event::SoftwareInterrupt { vector, len } => {
            pack(TYPE_SW_INTERRUPT, vector, None, Some(len))
        }
        Event::SoftwareException { vector, len } => {
            pack(TYPE_HW_EXCEPTION, vector, None, Some(len))
        }
        Event::PrivilegedSoftwareException { len } => pack(TYPE_HW_EXCEPTION, DB, None, Some(len)),
        other => vmx_entry(other, protected),
    }
}

/// The event VMX IDT-vectoring information (SDM Vol 3C 25.9.3) or a pending
/// VM-entry interruption-information field describes, with its error code
/// and, for types 4 to 6, the instruction length (VM-exit instruction
/// length after an exit during delivery, SDM Vol 3C 27.2.4). `None` if not
/// valid or of a type Keel never injects (7, other event; 1, reserved).
pub fn from_vmx(info: u32, error_code: u32, len: u8) -> Option<Event> {
    if info & VALID == 0 {
        return None;
    }
    let vector = info as u8;
    let code = (info & ERROR_CODE_VALID != 0).then_some(error_code);
    Some(match (info >> TYPE_SHIFT) & 7 {
        TYPE_EXTERNAL => Event::ExternalInterrupt { vector },
        TYPE_NMI => Event::Nmi,
        TYPE_HW_EXCEPTION => Event::Exception {
            vector,
            error_code: code,
        },
        TYPE_SW_INTERRUPT => Event::SoftwareInterrupt { vector, len },
        TYPE_PRIV_SW_EXCEPTION => Event::PrivilegedSoftwareException { len },
        TYPE_SW_EXCEPTION => Event::SoftwareException { vector, len },
        _ => return None,
    })
}

/// The event SVM EXITINTINFO or a pending EVENTINJ describes (APM Vol 2
/// 15.7.2): same layout, error code in bits 63:32. A type-4 software
/// interrupt and #BP / #OF (which the CPU raised for INT3 / INTO) come back
/// as their software events with length 0: SVM does not report it.
pub fn from_svm(raw: u64) -> Option<Event> {
    let info = raw as u32;
    let event = from_vmx(info, (raw >> 32) as u32, 0)?;
    Some(match event {
        Event::Exception {
            vector: vector @ (3 | 4),
            ..
        } => Event::SoftwareException { vector, len: 0 },
        other => other,
    })
}

/// The exception classes of SDM Vol 3A 6.15, Table 6-4 (APM Vol 2 8.2.9):
/// interrupts, NMIs, software events and the other exceptions are benign.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Class {
    Benign,
    Contributory,
    PageFault,
    DoubleFault,
}

fn class(event: Event) -> Class {
    match event {
        Event::Exception { vector, .. } => match vector {
            0 | 10..=13 => Class::Contributory,
            14 => Class::PageFault,
            DF => Class::DoubleFault,
            _ => Class::Benign,
        },
        _ => Class::Benign,
    }
}

/// What is delivered when `new` is raised while `queued` is being delivered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Combined {
    /// This event goes to the guest on the next entry.
    Deliver(Event),
    /// The processor shuts down: an exception while delivering #DF (a triple fault).
    Shutdown,
}

/// The double-fault rules (SDM Vol 3A 6.15, Table 6-5; APM Vol 2 8.2.9): an
/// exception raised while delivering a contributory exception, or a page
/// fault or contributory exception while delivering a page fault, becomes
/// #DF(0); any exception while delivering #DF shuts the processor down;
/// otherwise the two are handled serially, which for an exception raised
/// during a delivery means it is delivered instead (the first is redone when
/// the handler returns, or was an interrupt the guest has taken).
///
/// `queued` is the event already in the injection field: the backend put it
/// back after an exit interrupted its delivery, so an exception Keel raises
/// now arose while delivering it. An interrupt or NMI is never injected over
/// a queued event (`interrupts::deliver` waits), so a `new` that is not an
/// exception leaves `queued` in place.
pub fn combine(queued: Option<Event>, new: Event) -> Combined {
    let Some(queued) = queued else {
        return Combined::Deliver(new);
    };
    if !matches!(new, Event::Exception { .. }) {
        return Combined::Deliver(queued);
    }
    match (class(queued), class(new)) {
        (Class::DoubleFault, _) => Combined::Shutdown,
        (Class::Contributory, Class::Contributory)
        | (Class::PageFault, Class::Contributory | Class::PageFault) => {
            Combined::Deliver(Event::Exception {
                vector: DF,
                error_code: Some(0),
            })
        }
        _ => Combined::Deliver(new),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PF: Event = Event::Exception {
        vector: 14,
        error_code: Some(2),
    };
    const DF0: Event = Event::Exception {
        vector: 8,
        error_code: Some(0),
    };
    const NP: Event = Event::Exception {
        vector: 11,
        error_code: Some(0x18),
    };

    /// Finding #2: #GP in real mode carried an error code, which VM entry
    /// refuses with unrestricted guest and CR0.PE = 0 (SDM Vol 3C 26.2.1.3).
    #[test]
    fn real_mode_exceptions_have_no_error_code() {
        let e = vmx_entry(Event::GP0, false);
        assert_eq!((e.info, e.error_code), (0x8000_030d, None));
        let e = vmx_entry(Event::GP0, true);
        assert_eq!((e.info, e.error_code), (0x8000_0b0d, Some(0)));
        let e = svm_eventinj(PF, false);
        assert_eq!(e.eventinj(), 0x8000_030e);
        assert_eq!(svm_eventinj(PF, true).eventinj(), 0x0000_0002_8000_0b0e);
    }

    #[test]
    fn only_the_architectural_vectors_carry_an_error_code() {
        for vector in 0..32u8 {
            let given = vmx_entry(
                Event::Exception {
                    vector,
                    error_code: Some(5),
                },
                true,
            );
            let none = vmx_entry(
                Event::Exception {
                    vector,
                    error_code: None,
                },
                true,
            );
            let expect = [8, 10, 11, 12, 13, 14, 17, 21].contains(&vector);
            if vector == 2 {
                continue;
            }
            assert_eq!(given.error_code, expect.then_some(5), "vector {vector}");
            assert_eq!(none.error_code, expect.then_some(0), "vector {vector}");
            assert_eq!(given.info & ERROR_CODE_VALID != 0, expect);
            assert_eq!(given.instruction_len, None);
        }
    }

    #[test]
    fn nmi_interrupts_and_software_events() {
        assert_eq!(vmx_entry(Event::Nmi, true).info, 0x8000_0202);
        assert_eq!(
            vmx_entry(
                Event::Exception {
                    vector: 2,
                    error_code: Some(1)
                },
                true
            )
            .info,
            0x8000_0202,
            "vector 2 is the NMI"
        );
        assert_eq!(svm_eventinj(Event::Nmi, false).eventinj(), 0x8000_0202);
        assert_eq!(
            vmx_entry(Event::ExternalInterrupt { vector: 0x30 }, false).info,
            0x8000_0030
        );
        let int80 = Event::SoftwareInterrupt {
            vector: 0x80,
            len: 2,
        };
        let e = vmx_entry(int80, true);
        assert_eq!((e.info, e.instruction_len), (0x8000_0480, Some(2)));
        assert_eq!(svm_eventinj(int80, true).info, 0x8000_0480);
        let int3 = Event::SoftwareException { vector: 3, len: 1 };
        let e = vmx_entry(int3, true);
        assert_eq!((e.info, e.instruction_len), (0x8000_0603, Some(1)));
        assert_eq!(svm_eventinj(int3, true).info, 0x8000_0303);
        let icebp = Event::PrivilegedSoftwareException { len: 1 };
        let e = vmx_entry(icebp, false);
        assert_eq!((e.info, e.instruction_len), (0x8000_0501, Some(1)));
        assert_eq!(svm_eventinj(icebp, true).info, 0x8000_0301);
        // VM entry refuses a length of 0 for types 4 to 6.
        let e = vmx_entry(Event::PrivilegedSoftwareException { len: 0 }, true);
        assert_eq!(e.instruction_len, Some(1));
    }

    /// Finding #15: an interrupted ICEBP / INTn comes back with its type and length.
    #[test]
    fn interrupted_events_read_back() {
        assert_eq!(
            from_vmx(0x8000_0501, 0, 1),
            Some(Event::PrivilegedSoftwareException { len: 1 })
        );
        assert_eq!(
            from_vmx(0x8000_0480, 0, 2),
            Some(Event::SoftwareInterrupt {
                vector: 0x80,
                len: 2
            })
        );
        assert_eq!(from_vmx(0x8000_0b0e, 2, 0), Some(PF));
        assert_eq!(from_vmx(0x0000_0b0e, 2, 0), None, "not valid");
        assert_eq!(from_vmx(0x8000_0700, 0, 0), None, "other event");
        for e in [
            PF,
            NP,
            Event::Nmi,
            Event::ExternalInterrupt { vector: 0x41 },
        ] {
            let x = vmx_entry(e, true);
            assert_eq!(from_vmx(x.info, x.error_code.unwrap_or(0), 0), Some(e));
            assert_eq!(from_svm(svm_eventinj(e, true).eventinj()), Some(e));
        }
        assert_eq!(
            from_svm(0x8000_0303),
            Some(Event::SoftwareException { vector: 3, len: 0 })
        );
    }

    #[test]
    fn double_fault_rules() {
        let de = Event::Exception {
            vector: 0,
            error_code: None,
        };
        let ud = Event::UD;
        let irq = Event::ExternalInterrupt { vector: 0x20 };
        assert_eq!(combine(None, PF), Combined::Deliver(PF));
        // Contributory + contributory, #PF + #PF, #PF + contributory: #DF(0).
        for (first, second) in [
            (Event::GP0, NP),
            (de, Event::GP0),
            (PF, PF),
            (PF, Event::GP0),
        ] {
            assert_eq!(
                combine(Some(first), second),
                Combined::Deliver(DF0),
                "{first:?} then {second:?}"
            );
        }
        // Contributory + #PF, benign + anything: serially, the new one.
        for (first, second) in [
            (Event::GP0, PF),
            (irq, PF),
            (Event::Nmi, Event::GP0),
            (ud, Event::GP0),
            (
                Event::SoftwareInterrupt {
                    vector: 0x80,
                    len: 2,
                },
                NP,
            ),
            (PF, ud),
        ] {
            assert_eq!(combine(Some(first), second), Combined::Deliver(second));
        }
        // Anything while delivering #DF: shutdown.
        for second in [PF, Event::GP0, ud] {
            assert_eq!(combine(Some(DF0), second), Combined::Shutdown);
        }
        // An interrupt never displaces the queued event.
        assert_eq!(combine(Some(PF), irq), Combined::Deliver(PF));
    }
}
