//! Decoding a VMX exit (exit reason, qualification, instruction length and
//! information, interruption information) into a [`VmExit`].
//!
//! Pure: it reads the VMCS through [`VmcsRead`], which the vCPU implements
//! with VMREAD and the tests with a map of field encodings.

use super::exit_reason::{ExitReason as R, ENTRY_FAILURE};
use super::vmcs_field::VmcsField as F;
use crate::exit::{
    AccessKind, CrAccess, CrOperand, GateEvent, IoDirection, IoExit, StringIo, TaskSwitch,
    TaskSwitchSource, VmExit,
};
use crate::Gpr;

/// Read access to the current VMCS.
pub trait VmcsRead {
    /// The value of `field` (0 if it cannot be read).
    fn read(&self, field: F) -> u64;
}

// I/O exit qualification (SDM 28.2.1, Table 28-5).
const IO_SIZE_MASK: u64 = 0x7;
const IO_IN: u64 = 1 << 3;
const IO_STRING: u64 = 1 << 4;
const IO_REP: u64 = 1 << 5;
// EPT-violation exit qualification (SDM 28.2.1, Table 28-7).
const EPT_WRITE: u64 = 1 << 1;
const EPT_FETCH: u64 = 1 << 2;
const EPT_PERMISSIONS: u64 = 0x7 << 3;
// VM-exit interruption information (SDM 25.9.2, Table 25-19).
const INTR_INFO_VALID: u64 = 1 << 31;
const INTR_INFO_ERROR_CODE: u64 = 1 << 11;
const INTR_TYPE_NMI: u64 = 2;
/// #DB: its exit qualification holds what the CPU did not write to DR6.
const DEBUG: u8 = 1;
/// Exit qualification of a #DB (SDM Vol 3C 28.2.1, Table 28-1): B0-B3
/// (3:0), BD (13), BS (14), RTM (16).
const DEBUG_QUALIFICATION: u64 = 0xf | (1 << 13) | (1 << 14) | (1 << 16);
// IDT-vectoring information (SDM 25.9.3) has the same layout: bit 31 valid, vector in 7:0.
const PAGE_FAULT: u8 = 14;
// IDT-vectoring information types (SDM 25.9.3, Table 25-20).
const IDT_TYPE_HW_EXCEPTION: u64 = 3;
const IDT_TYPE_SOFTWARE_INTERRUPT: u64 = 4;
const IDT_TYPE_PRIVILEGED_SOFTWARE_EXCEPTION: u64 = 5;
const IDT_TYPE_SOFTWARE_EXCEPTION: u64 = 6;

/// The length the CPU reported for the instruction that exited, or `default`
/// when the field holds something no instruction can be.
fn instruction_length(vmcs: &impl VmcsRead, default: u8) -> u8 {
    match vmcs.read(F::VmExitInstructionLength) {
        n @ 1..=15 => n as u8,
        _ => default,
    }
}

/// Decodes the exit recorded in the current VMCS. `ins_outs_info` says
/// whether INS/OUTS exits fill the instruction-information field
/// (IA32_VMX_BASIC bit 54).
pub fn decode_exit(vmcs: &impl VmcsRead, ins_outs_info: bool) -> VmExit {
    let reason = vmcs.read(F::ExitReason) as u32;
    let qual = vmcs.read(F::ExitQualification);
    if reason & ENTRY_FAILURE != 0 {
        return VmExit::InvalidGuestState {
            detail: u64::from(reason) | (qual << 32),
        };
    }
    let basic = reason as u16;
    let len = |default| instruction_length(vmcs, default);
    let unknown = |info2| VmExit::Unknown {
        code: u64::from(basic),
        info1: qual,
        info2,
    };
    let Some(r) = R::from_basic(basic) else {
        return unknown(0);
    };
    match r {
        R::ExceptionOrNmi => {
            let info = vmcs.read(F::VmExitInterruptionInformation);
            if info & INTR_INFO_VALID == 0 {
                return unknown(info);
            }
            if (info >> 8) & 7 == INTR_TYPE_NMI {
                return VmExit::ExternalInterrupt;
            }
            let vector = info as u8;
            VmExit::Exception {
                vector,
                error_code: (info & INTR_INFO_ERROR_CODE != 0)
                    .then(|| vmcs.read(F::VmExitInterruptionErrorCode) as u32),
                fault_address: (vector == PAGE_FAULT).then_some(qual),
                debug_status: (vector == DEBUG).then_some(qual & DEBUG_QUALIFICATION),
            }
        }
        R::ExternalInterrupt | R::InitSignal | R::PreemptionTimer => VmExit::ExternalInterrupt,
        R::InterruptWindow => VmExit::InterruptWindow,
        R::NmiWindow => VmExit::NmiWindow,
        R::TripleFault => VmExit::Shutdown,
        R::Cpuid => VmExit::Cpuid { len: len(2) },
        R::Rdpmc => VmExit::Rdpmc { len: len(2) },
        R::Rdtsc => VmExit::Rdtsc { len: len(2) },
        R::Rdtscp => VmExit::Rdtscp { len: len(3) },
        R::Hlt => VmExit::Hlt { len: len(1) },
        R::Invd => VmExit::Invd { len: len(2) },
        R::Wbinvd => VmExit::Wbinvd { len: len(2) },
        R::Xsetbv => VmExit::Xsetbv { len: len(3) },
        R::Rdmsr => VmExit::Rdmsr { len: len(2) },
        R::Wrmsr => VmExit::Wrmsr { len: len(2) },
        R::Vmcall => VmExit::Hypercall { len: len(3) },
        R::IoInstruction => decode_io(vmcs, qual, ins_outs_info),
        R::ControlRegisterAccess => decode_cr(qual, len(3)),
        R::EptViolation => VmExit::NestedPageFault {
            gpa: vmcs.read(F::GuestPhysicalAddress),
            access: if qual & EPT_FETCH != 0 {
                AccessKind::Execute
            } else if qual & EPT_WRITE != 0 {
                AccessKind::Write
            } else {
                AccessKind::Read
            },
            present: qual & EPT_PERMISSIONS != 0,
            during_event: {
                let info = vmcs.read(F::IdtVectoringInformation);
                (info & INTR_INFO_VALID != 0).then_some(info as u8)
            },
        },
        R::TaskSwitch => decode_task_switch(vmcs, qual),
        R::EptMisconfiguration => unknown(vmcs.read(F::GuestPhysicalAddress)),
        r => match undefined_instruction(r) {
            Some(name) => VmExit::UndefinedInstruction { name },
            None => unknown(0),
        },
    }
}

/// VMX instructions and MONITOR/MWAIT, which Keel's CPUID says do not exist.
fn undefined_instruction(r: R) -> Option<&'static str> {
    Some(match r {
        R::Vmclear => "VMCLEAR",
        R::Vmlaunch => "VMLAUNCH",
        R::Vmptrld => "VMPTRLD",
        R::Vmptrst => "VMPTRST",
        R::Vmread => "VMREAD",
        R::Vmresume => "VMRESUME",
        R::Vmwrite => "VMWRITE",
        R::Vmxoff => "VMXOFF",
        R::Vmxon => "VMXON",
        R::Invept => "INVEPT",
        R::Invvpid => "INVVPID",
        R::Vmfunc => "VMFUNC",
        R::Getsec => "GETSEC",
        R::Monitor => "MONITOR",
        R::Mwait => "MWAIT",
        _ => return None,
    })
}

fn decode_io(vmcs: &impl VmcsRead, qual: u64, ins_outs_info: bool) -> VmExit {
    let string = qual & IO_STRING != 0;
    let address_size = if string && ins_outs_info {
        // VM-exit instruction information for INS/OUTS, bits 9:7 (SDM 28.2.5, Table 28-8).
        match (vmcs.read(F::VmExitInstructionInformation) >> 7) & 7 {
            0 => Some(2),
            1 => Some(4),
            2 => Some(8),
            _ => None,
        }
    } else {
        None
    };
    VmExit::Io(IoExit {
        port: (qual >> 16) as u16,
        // Bits 2:0 hold size - 1 (0, 1 or 3).
        size: ((qual & IO_SIZE_MASK) + 1) as u8,
        direction: if qual & IO_IN != 0 {
            IoDirection::In
        } else {
            IoDirection::Out
        },
        string: string.then_some(StringIo {
            rep: qual & IO_REP != 0,
            address_size,
        }),
        len: instruction_length(vmcs, 1),
    })
}

/// Task-switch qualification (SDM 28.2.1, Table 28-2): bits 15:0 the new
/// TSS selector, bits 31:30 the source (CALL, IRET, JMP, task gate in the
/// IDT). For a task gate the IDT-vectoring information says which event
/// (SDM 28.2.4); the instruction length is that of the instruction that
/// started the switch, if an instruction did (SDM 28.2.5).
fn decode_task_switch(vmcs: &impl VmcsRead, qual: u64) -> VmExit {
    let source = match (qual >> 30) & 3 {
        0 => TaskSwitchSource::Call,
        1 => TaskSwitchSource::Iret,
        2 => TaskSwitchSource::Jmp,
        _ => {
            let info = vmcs.read(F::IdtVectoringInformation);
            if info & INTR_INFO_VALID == 0 {
                return VmExit::Unknown {
                    code: R::TaskSwitch as u64,
                    info1: qual,
                    info2: info,
                };
            }
            let kind = (info >> 8) & 7;
            TaskSwitchSource::IdtGate(GateEvent {
                vector: info as u8,
                error_code: (info & INTR_INFO_ERROR_CODE != 0)
                    .then(|| vmcs.read(F::IdtVectoringErrorCode) as u32),
                hardware_exception: kind == IDT_TYPE_HW_EXCEPTION,
                software: matches!(
                    kind,
                    IDT_TYPE_SOFTWARE_INTERRUPT
                        | IDT_TYPE_PRIVILEGED_SOFTWARE_EXCEPTION
                        | IDT_TYPE_SOFTWARE_EXCEPTION
                ),
            })
        }
    };
    VmExit::TaskSwitch(TaskSwitch {
        selector: qual as u16,
        source,
        len: match vmcs.read(F::VmExitInstructionLength) {
            n @ 1..=15 => n as u8,
            _ => 0,
        },
    })
}

/// Control-register access qualification (SDM 28.2.1, Table 28-3): bits 3:0
/// the register, 5:4 the access type (MOV to CR, MOV from CR, CLTS, LMSW),
/// 11:8 the GPR of a MOV, 31:16 the LMSW source data.
fn decode_cr(qual: u64, len: u8) -> VmExit {
    let cr = (qual & 0xf) as u8;
    let gpr = CrOperand::Gpr(Gpr::from_index(((qual >> 8) & 0xf) as usize));
    let (write, operand) = match (qual >> 4) & 3 {
        0 => (true, gpr),
        1 => (false, gpr),
        2 => (true, CrOperand::Clts),
        _ => (true, CrOperand::Lmsw((qual >> 16) as u16)),
    };
    VmExit::CrAccess(CrAccess {
        cr,
        write,
        operand,
        len,
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::collections::BTreeMap;

    /// A VMCS that is a map of field encodings; unset fields read as 0.
    #[derive(Default, Debug, Clone)]
    pub struct FakeVmcs(pub BTreeMap<u32, u64>);

    impl VmcsRead for FakeVmcs {
        fn read(&self, field: F) -> u64 {
            self.0.get(&field.encoding()).copied().unwrap_or(0) & field.width().mask()
        }
    }

    impl FakeVmcs {
        pub fn set(&mut self, field: F, v: u64) -> &mut Self {
            self.0.insert(field.encoding(), v & field.width().mask());
            self
        }
    }

    fn exit(reason: u32, qual: u64, len: u64) -> FakeVmcs {
        let mut v = FakeVmcs::default();
        v.set(F::ExitReason, u64::from(reason))
            .set(F::ExitQualification, qual)
            .set(F::VmExitInstructionLength, len)
            .set(F::GuestRip, 0x7c00);
        v
    }

    #[test]
    fn io_exits() {
        // OUT DX, AL to 0x3F8.
        assert_eq!(
            decode_exit(&exit(30, 0x3f8 << 16, 1), true),
            VmExit::Io(IoExit {
                port: 0x3f8,
                size: 1,
                direction: IoDirection::Out,
                string: None,
                len: 1
            })
        );
        // IN EAX, 0xF4 (immediate operand, bit 6).
        assert_eq!(
            decode_exit(&exit(30, (0xf4 << 16) | (1 << 6) | IO_IN | 3, 2), true),
            VmExit::Io(IoExit {
                port: 0xf4,
                size: 4,
                direction: IoDirection::In,
                string: None,
                len: 2
            })
        );
        // REP INSW with 32-bit addressing (instruction information bits 9:7 = 1).
        let mut v = exit(30, (0x1f0 << 16) | IO_IN | IO_STRING | IO_REP | 1, 3);
        v.set(F::VmExitInstructionInformation, 1 << 7);
        let want = VmExit::Io(IoExit {
            port: 0x1f0,
            size: 2,
            direction: IoDirection::In,
            string: Some(StringIo {
                rep: true,
                address_size: Some(4),
            }),
            len: 3,
        });
        assert_eq!(decode_exit(&v, true), want);
        // Without INS/OUTS information the address size is unknown.
        assert!(matches!(
            decode_exit(&v, false),
            VmExit::Io(IoExit {
                string: Some(StringIo {
                    rep: true,
                    address_size: None
                }),
                ..
            })
        ));
        // OUTSB in 64-bit addressing.
        let mut v = exit(30, (0x3f8 << 16) | IO_STRING, 1);
        v.set(F::VmExitInstructionInformation, 2 << 7);
        assert!(matches!(
            decode_exit(&v, true),
            VmExit::Io(IoExit {
                string: Some(StringIo {
                    rep: false,
                    address_size: Some(8)
                }),
                ..
            })
        ));
        // A length no instruction has falls back to the shortest form.
        assert!(matches!(
            decode_exit(&exit(30, 0x80 << 16, 0), true),
            VmExit::Io(IoExit { len: 1, .. })
        ));
    }

    #[test]
    fn ept_violations() {
        let ept = |qual| {
            let mut v = exit(48, qual, 0);
            v.set(F::GuestPhysicalAddress, 0xfee0_0030);
            decode_exit(&v, true)
        };
        // Bochs reports 0x181 for a read and 0x182 for a write of an unmapped page.
        assert_eq!(
            ept(0x181),
            VmExit::NestedPageFault {
                gpa: 0xfee0_0030,
                access: AccessKind::Read,
                present: false,
                during_event: None
            }
        );
        assert_eq!(
            ept(0x182),
            VmExit::NestedPageFault {
                gpa: 0xfee0_0030,
                access: AccessKind::Write,
                present: false,
                during_event: None
            }
        );
        // A write to a read/execute mapping (ROM): present.
        assert_eq!(
            ept(0x182 | (5 << 3)),
            VmExit::NestedPageFault {
                gpa: 0xfee0_0030,
                access: AccessKind::Write,
                present: true,
                during_event: None
            }
        );
        assert_eq!(
            ept(0x184),
            VmExit::NestedPageFault {
                gpa: 0xfee0_0030,
                access: AccessKind::Execute,
                present: false,
                during_event: None
            }
        );
        // A write while delivering external interrupt 0x30 (IDT-vectoring
        // information valid, type 0): the stack or IDT is not RAM.
        let mut v = exit(48, 0x182, 0);
        v.set(F::GuestPhysicalAddress, 0xfeb0_0ff8)
            .set(F::IdtVectoringInformation, 0x8000_0030);
        assert!(matches!(
            decode_exit(&v, true),
            VmExit::NestedPageFault {
                gpa: 0xfeb0_0ff8,
                during_event: Some(0x30),
                ..
            }
        ));
        let mut v = exit(49, 0, 0);
        v.set(F::GuestPhysicalAddress, 0x1000);
        assert_eq!(
            decode_exit(&v, true),
            VmExit::Unknown {
                code: 49,
                info1: 0,
                info2: 0x1000
            }
        );
    }

    #[test]
    fn instruction_exits_use_the_reported_length() {
        assert_eq!(decode_exit(&exit(10, 0, 2), true), VmExit::Cpuid { len: 2 });
        assert_eq!(decode_exit(&exit(10, 0, 3), true), VmExit::Cpuid { len: 3 });
        assert_eq!(decode_exit(&exit(12, 0, 1), true), VmExit::Hlt { len: 1 });
        assert_eq!(decode_exit(&exit(13, 0, 2), true), VmExit::Invd { len: 2 });
        assert_eq!(
            decode_exit(&exit(55, 0, 3), true),
            VmExit::Xsetbv { len: 3 },
            "exit reason 55 is XSETBV"
        );
        assert_eq!(
            decode_exit(&exit(54, 0, 2), true),
            VmExit::Wbinvd { len: 2 }
        );
        assert_eq!(
            decode_exit(&exit(15, 0, 2), true),
            VmExit::Rdpmc { len: 2 },
            "exit reason 15 is RDPMC"
        );
        assert_eq!(
            decode_exit(&exit(16, 0, 2), true),
            VmExit::Rdtsc { len: 2 },
            "exit reason 16 is RDTSC"
        );
        assert_eq!(
            decode_exit(&exit(51, 0, 3), true),
            VmExit::Rdtscp { len: 3 },
            "exit reason 51 is RDTSCP"
        );
        assert_eq!(decode_exit(&exit(31, 0, 2), true), VmExit::Rdmsr { len: 2 });
        assert_eq!(decode_exit(&exit(32, 0, 2), true), VmExit::Wrmsr { len: 2 });
        assert_eq!(
            decode_exit(&exit(18, 0, 3), true),
            VmExit::Hypercall { len: 3 }
        );
        assert_eq!(
            decode_exit(&exit(12, 0, 0), true),
            VmExit::Hlt { len: 1 },
            "default length"
        );
        assert_eq!(
            decode_exit(&exit(10, 0, 16), true),
            VmExit::Cpuid { len: 2 },
            "default length"
        );
    }

    #[test]
    fn vmx_instructions_are_undefined_for_the_guest() {
        for (reason, name) in [
            (19, "VMCLEAR"),
            (20, "VMLAUNCH"),
            (21, "VMPTRLD"),
            (22, "VMPTRST"),
            (23, "VMREAD"),
            (24, "VMRESUME"),
            (25, "VMWRITE"),
            (26, "VMXOFF"),
            (27, "VMXON"),
            (50, "INVEPT"),
            (53, "INVVPID"),
            (59, "VMFUNC"),
            (36, "MWAIT"),
            (39, "MONITOR"),
        ] {
            assert_eq!(
                decode_exit(&exit(reason, 0, 3), true),
                VmExit::UndefinedInstruction { name }
            );
        }
    }

    /// Exit reason 9 (SDM 28.2.1, Table 28-2): selector in bits 15:0, source
    /// in bits 31:30; the IDT-vectoring information names a gate's event.
    #[test]
    fn task_switches() {
        let ts = |source| {
            VmExit::TaskSwitch(TaskSwitch {
                selector: 0x28,
                source,
                len: 7,
            })
        };
        assert_eq!(
            decode_exit(&exit(9, 0x28, 7), true),
            ts(TaskSwitchSource::Call)
        );
        assert_eq!(
            decode_exit(&exit(9, (1 << 30) | 0x28, 7), true),
            ts(TaskSwitchSource::Iret)
        );
        assert_eq!(
            decode_exit(&exit(9, (2 << 30) | 0x28, 7), true),
            ts(TaskSwitchSource::Jmp)
        );
        // #DF (hardware exception with error code) through a task gate.
        let mut v = exit(9, (3 << 30) | 0x28, 7);
        v.set(F::IdtVectoringInformation, 0x8000_0b08)
            .set(F::IdtVectoringErrorCode, 0);
        assert_eq!(
            decode_exit(&v, true),
            ts(TaskSwitchSource::IdtGate(GateEvent {
                vector: 8,
                error_code: Some(0),
                hardware_exception: true,
                software: false,
            }))
        );
        // INT 0x30 through a task gate.
        v.set(F::IdtVectoringInformation, 0x8000_0430);
        assert_eq!(
            decode_exit(&v, true),
            ts(TaskSwitchSource::IdtGate(GateEvent {
                vector: 0x30,
                error_code: None,
                hardware_exception: false,
                software: true,
            }))
        );
        // A gate without the event it delivered is not something to emulate.
        v.set(F::IdtVectoringInformation, 0);
        assert!(matches!(
            decode_exit(&v, true),
            VmExit::Unknown { code: 9, .. }
        ));
    }

    #[test]
    fn control_register_accesses() {
        // MOV CR0, RBX (type 0, GPR 3).
        assert_eq!(
            decode_exit(&exit(28, 3 << 8, 3), true),
            VmExit::CrAccess(CrAccess {
                cr: 0,
                write: true,
                operand: CrOperand::Gpr(Gpr::Rbx),
                len: 3
            })
        );
        // MOV R9, CR4 (type 1).
        assert_eq!(
            decode_exit(&exit(28, 4 | (1 << 4) | (9 << 8), 4), true),
            VmExit::CrAccess(CrAccess {
                cr: 4,
                write: false,
                operand: CrOperand::Gpr(Gpr::R9),
                len: 4
            })
        );
        // CLTS (type 2) and LMSW (type 3, source data in bits 31:16).
        assert_eq!(
            decode_exit(&exit(28, 2 << 4, 2), true),
            VmExit::CrAccess(CrAccess {
                cr: 0,
                write: true,
                operand: CrOperand::Clts,
                len: 2
            })
        );
        assert_eq!(
            decode_exit(&exit(28, (0x000b << 16) | (3 << 4), 3), true),
            VmExit::CrAccess(CrAccess {
                cr: 0,
                write: true,
                operand: CrOperand::Lmsw(0xb),
                len: 3
            })
        );
    }

    #[test]
    fn events() {
        assert_eq!(decode_exit(&exit(2, 0, 0), true), VmExit::Shutdown);
        assert_eq!(decode_exit(&exit(1, 0, 0), true), VmExit::ExternalInterrupt);
        assert_eq!(decode_exit(&exit(3, 0, 0), true), VmExit::ExternalInterrupt);
        assert_eq!(
            decode_exit(&exit(52, 0, 0), true),
            VmExit::ExternalInterrupt
        );
        assert_eq!(decode_exit(&exit(7, 0, 0), true), VmExit::InterruptWindow);
        assert_eq!(decode_exit(&exit(8, 0, 0), true), VmExit::NmiWindow);
        // #PF with error code 2 at 0xdeadb000.
        let mut v = exit(0, 0xdead_b000, 0);
        v.set(F::VmExitInterruptionInformation, 0x8000_0b0e)
            .set(F::VmExitInterruptionErrorCode, 2);
        assert_eq!(
            decode_exit(&v, true),
            VmExit::Exception {
                vector: 14,
                error_code: Some(2),
                fault_address: Some(0xdead_b000),
                debug_status: None
            }
        );
        // #UD: hardware exception without an error code.
        let mut v = exit(0, 0, 0);
        v.set(F::VmExitInterruptionInformation, 0x8000_0306);
        assert_eq!(
            decode_exit(&v, true),
            VmExit::Exception {
                vector: 6,
                error_code: None,
                fault_address: None,
                debug_status: None
            }
        );
        // #DB: the exit qualification holds what DR6 would (SDM Vol 3C
        // Table 28-1): B1 and BS here, with reserved bits dropped.
        let mut v = exit(0, 0x0fe0_4ff2, 0);
        v.set(F::VmExitInterruptionInformation, 0x8000_0301);
        assert_eq!(
            decode_exit(&v, true),
            VmExit::Exception {
                vector: 1,
                error_code: None,
                fault_address: None,
                debug_status: Some(0x4002)
            }
        );
        // NMI (type 2).
        let mut v = exit(0, 0, 0);
        v.set(F::VmExitInterruptionInformation, 0x8000_0202);
        assert_eq!(decode_exit(&v, true), VmExit::ExternalInterrupt);
        // Interruption information not valid: nothing to decode.
        assert_eq!(
            decode_exit(&exit(0, 0, 0), true),
            VmExit::Unknown {
                code: 0,
                info1: 0,
                info2: 0
            }
        );
    }

    #[test]
    fn entry_failures_and_unknown_reasons() {
        assert_eq!(
            decode_exit(&exit(ENTRY_FAILURE | 33, 0, 0), true),
            VmExit::InvalidGuestState {
                detail: 0x8000_0021
            }
        );
        assert_eq!(
            decode_exit(&exit(ENTRY_FAILURE | 33, 4, 0), true),
            VmExit::InvalidGuestState {
                detail: (4 << 32) | 0x8000_0021
            }
        );
        assert_eq!(
            decode_exit(&exit(ENTRY_FAILURE | 34, 2, 0), true),
            VmExit::InvalidGuestState {
                detail: (2 << 32) | 0x8000_0022
            }
        );
        assert_eq!(
            decode_exit(&exit(14, 5, 0), true),
            VmExit::Unknown {
                code: 14,
                info1: 5,
                info2: 0
            }
        );
        assert_eq!(
            decode_exit(&exit(35, 0, 0), true),
            VmExit::Unknown {
                code: 35,
                info1: 0,
                info2: 0
            }
        );
        assert_eq!(
            decode_exit(&exit(0xffff, 0, 0), true),
            VmExit::Unknown {
                code: 0xffff,
                info1: 0,
                info2: 0
            }
        );
    }
}
