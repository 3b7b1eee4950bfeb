//! Decoding an SVM #VMEXIT (the VMCB's EXITCODE, EXITINFO1/2) into a [`VmExit`].
//!
//! Pure: it reads a [`Vmcb`] and nothing else, so every exit type is tested
//! with fake VMCB contents. Without the NRIP-save feature (QEMU TCG has none)
//! the length of an intercepted instruction is [`UNKNOWN_LENGTH`] and the exit
//! handler decodes the instruction (its prefixes make it longer than its
//! opcode); IOIO exits always report the next RIP in EXITINFO2.

use super::exit_code::SvmExitCode as Code;
use super::vmcb::{control, save, Vmcb};
use crate::exit::{
    AccessKind, CrAccess, CrOperand, IoDirection, IoExit, StringIo, VmExit, UNKNOWN_LENGTH,
};
use crate::Gpr;

// IOIO EXITINFO1 (APM Vol 2, 15.10.2, Figure 15-2).
const IOIO_TYPE_IN: u64 = 1 << 0;
const IOIO_STR: u64 = 1 << 2;
const IOIO_REP: u64 = 1 << 3;
const IOIO_SZ8: u64 = 1 << 4;
const IOIO_SZ16: u64 = 1 << 5;
const IOIO_SZ32: u64 = 1 << 6;
const IOIO_A16: u64 = 1 << 7;
const IOIO_A32: u64 = 1 << 8;
const IOIO_A64: u64 = 1 << 9;
// Nested page fault EXITINFO1 (APM Vol 2, 15.25.6): a #PF-style error code.
const NPF_PRESENT: u64 = 1 << 0;
const NPF_WRITE: u64 = 1 << 1;
const NPF_FETCH: u64 = 1 << 4;
/// CR-access EXITINFO1 with decode assists (APM Vol 2 15.33.1): bit 63 set
/// for MOV CRn, with the GPR number in bits 3:0; clear for CLTS and LMSW.
const CR_DECODE_VALID: u64 = 1 << 63;
/// Exceptions that push an error code (SDM Vol 3A 6.15; APM Vol 2 8.2).
const ERROR_CODE_VECTORS: &[u8] = &[8, 10, 11, 12, 13, 14, 17, 21, 29, 30];
const PAGE_FAULT: u8 = 14;
/// EXITINTINFO (APM Vol 2 15.7.2, EVENTINJ layout): bit 31 valid, vector in 7:0.
const EXITINTINFO_VALID: u64 = 1 << 31;

/// The SVM features that change what an exit reports (CPUID Fn8000_000A EDX).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ExitFeatures {
    /// NRIP save (bit 3): NRIP holds the next RIP on instruction intercepts.
    pub nrip_save: bool,
    /// Decode assists (bit 7): EXITINFO1 names the GPR of a MOV CRn.
    pub decode_assists: bool,
}

/// Decodes the exit recorded in `vmcb` on a CPU with `features`.
pub fn decode_exit(vmcb: &Vmcb, features: ExitFeatures) -> VmExit {
    let code = vmcb.read_u64(control::EXITCODE);
    let info1 = vmcb.read_u64(control::EXITINFO1);
    let info2 = vmcb.read_u64(control::EXITINFO2);
    let rip = vmcb.read_u64(save::RIP);
    let len = || -> u8 {
        let nrip = vmcb.read_u64(control::NRIP);
        match nrip.wrapping_sub(rip) {
            n @ 1..=15 if features.nrip_save => n as u8,
            _ => UNKNOWN_LENGTH,
        }
    };
    // QEMU reports VMEXIT_INVALID as a 32-bit -1, Bochs as a 64-bit -1.
    if code as u32 == u32::MAX {
        return VmExit::InvalidGuestState { detail: info1 };
    }
    match code {
        0x00..=0x1f => VmExit::CrAccess(CrAccess {
            cr: (code & 0xf) as u8,
            write: code >= Code::CrWrite0 as u64,
            operand: if features.decode_assists && info1 & CR_DECODE_VALID != 0 {
                CrOperand::Gpr(Gpr::from_index((info1 & 0xf) as usize))
            } else {
                CrOperand::Undecoded
            },
            len: len(),
        }),
        0x40..=0x5f => {
            let vector = (code - Code::Exception0 as u64) as u8;
            VmExit::Exception {
                vector,
                error_code: ERROR_CODE_VECTORS.contains(&vector).then_some(info1 as u32),
                fault_address: (vector == PAGE_FAULT).then_some(info2),
                debug_status: None,
            }
        }
        c if c == Code::Intr as u64
            || c == Code::Nmi as u64
            || c == Code::Smi as u64
            || c == Code::Init as u64 =>
        {
            VmExit::ExternalInterrupt
        }
        c if c == Code::Vintr as u64 => VmExit::InterruptWindow,
        // Only intercepted in an NMI handler (`svm::nmi`): its IRET is
        // about to end the blocking; the vCPU follows it from here.
        c if c == Code::Iret as u64 => VmExit::NmiWindow,
        c if c == Code::Cpuid as u64 => VmExit::Cpuid { len: len() },
        c if c == Code::Rdpmc as u64 => VmExit::Rdpmc { len: len() },
        // RDTSC is 0F 31 and RDTSCP 0F 01 F9 (APM Vol 3).
        c if c == Code::Rdtsc as u64 => VmExit::Rdtsc { len: 2 },
        c if c == Code::Rdtscp as u64 => VmExit::Rdtscp { len: 3 },
        c if c == Code::Invd as u64 => VmExit::Invd { len: len() },
        c if c == Code::Wbinvd as u64 => VmExit::Wbinvd { len: len() },
        // XSETBV is 0F 01 D1, three bytes (APM Vol 3, XSETBV).
        c if c == Code::Xsetbv as u64 => VmExit::Xsetbv { len: 3 },
        c if c == Code::Hlt as u64 => VmExit::Hlt { len: len() },
        c if c == Code::Msr as u64 => {
            if info1 & 1 == 0 {
                VmExit::Rdmsr { len: len() }
            } else {
                VmExit::Wrmsr { len: len() }
            }
        }
        c if c == Code::Ioio as u64 => decode_ioio(info1, info2.wrapping_sub(rip)),
        c if c == Code::Shutdown as u64 => VmExit::Shutdown,
        c if c == Code::Vmmcall as u64 => VmExit::Hypercall { len: len() },
        c if c == Code::Npf as u64 => VmExit::NestedPageFault {
            gpa: info2,
            access: if info1 & NPF_FETCH != 0 {
                AccessKind::Execute
            } else if info1 & NPF_WRITE != 0 {
                AccessKind::Write
            } else {
                AccessKind::Read
            },
            present: info1 & NPF_PRESENT != 0,
            during_event: {
                let info = vmcb.read_u64(control::EXITINTINFO);
                (info & EXITINTINFO_VALID != 0).then_some(info as u8)
            },
        },
        c => match undefined_instruction(c) {
            Some(name) => VmExit::UndefinedInstruction { name },
            None => VmExit::Unknown { code, info1, info2 },
        },
    }
}

/// SVM instructions and MONITOR/MWAIT, which Keel's CPUID says do not exist.
fn undefined_instruction(code: u64) -> Option<&'static str> {
    Some(match code {
        c if c == Code::Vmrun as u64 => "VMRUN",
        c if c == Code::Vmload as u64 => "VMLOAD",
        c if c == Code::Vmsave as u64 => "VMSAVE",
        c if c == Code::Stgi as u64 => "STGI",
        c if c == Code::Clgi as u64 => "CLGI",
        c if c == Code::Skinit as u64 => "SKINIT",
        c if c == Code::Invlpga as u64 => "INVLPGA",
        c if c == Code::Monitor as u64 => "MONITOR",
        c if c == Code::Mwait as u64 || c == Code::MwaitConditional as u64 => "MWAIT",
        _ => return None,
    })
}

fn decode_ioio(info1: u64, len: u64) -> VmExit {
    let size = if info1 & IOIO_SZ32 != 0 {
        4
    } else if info1 & IOIO_SZ16 != 0 {
        2
    } else if info1 & IOIO_SZ8 != 0 {
        1
    } else {
        0
    };
    let address_size = if info1 & IOIO_A64 != 0 {
        Some(8)
    } else if info1 & IOIO_A32 != 0 {
        Some(4)
    } else if info1 & IOIO_A16 != 0 {
        Some(2)
    } else {
        None
    };
    VmExit::Io(IoExit {
        port: (info1 >> 16) as u16,
        size,
        direction: if info1 & IOIO_TYPE_IN != 0 {
            IoDirection::In
        } else {
            IoDirection::Out
        },
        string: (info1 & IOIO_STR != 0).then_some(StringIo {
            rep: info1 & IOIO_REP != 0,
            address_size,
        }),
        // EXITINFO2 holds the next RIP; an instruction is 1 to 15 bytes.
        len: len.clamp(1, 15) as u8,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONE: ExitFeatures = ExitFeatures {
        nrip_save: false,
        decode_assists: false,
    };
    const NRIP: ExitFeatures = ExitFeatures {
        nrip_save: true,
        decode_assists: false,
    };

    fn vmcb(code: u64, info1: u64, info2: u64) -> Vmcb {
        let mut v = Vmcb::default();
        v.write_u64(control::EXITCODE, code);
        v.write_u64(control::EXITINFO1, info1);
        v.write_u64(control::EXITINFO2, info2);
        v.write_u64(save::RIP, 0x7c00);
        v
    }

    #[test]
    fn ioio() {
        // OUT DX, AL to 0x3F8: EXITINFO2 is the next RIP.
        let e = decode_exit(&vmcb(0x7b, (0x3f8 << 16) | IOIO_SZ8, 0x7c01), NONE);
        assert_eq!(
            e,
            VmExit::Io(IoExit {
                port: 0x3f8,
                size: 1,
                direction: IoDirection::Out,
                string: None,
                len: 1
            })
        );
        // IN EAX, imm8 from 0xF4.
        let e = decode_exit(
            &vmcb(0x7b, (0xf4 << 16) | IOIO_SZ32 | IOIO_TYPE_IN, 0x7c02),
            NONE,
        );
        assert_eq!(
            e,
            VmExit::Io(IoExit {
                port: 0xf4,
                size: 4,
                direction: IoDirection::In,
                string: None,
                len: 2
            })
        );
        // REP INSW with 32-bit addressing.
        let e = decode_exit(
            &vmcb(
                0x7b,
                (0x1f0 << 16) | IOIO_SZ16 | IOIO_TYPE_IN | IOIO_STR | IOIO_REP | IOIO_A32,
                0x7c02,
            ),
            NONE,
        );
        assert_eq!(
            e,
            VmExit::Io(IoExit {
                port: 0x1f0,
                size: 2,
                direction: IoDirection::In,
                string: Some(StringIo {
                    rep: true,
                    address_size: Some(4)
                }),
                len: 2
            })
        );
        // OUTSB without address-size bits (as QEMU TCG may report).
        let e = decode_exit(
            &vmcb(0x7b, (0x3f8 << 16) | IOIO_SZ8 | IOIO_STR, 0x7c01),
            NONE,
        );
        assert!(matches!(
            e,
            VmExit::Io(IoExit {
                string: Some(StringIo {
                    rep: false,
                    address_size: None
                }),
                ..
            })
        ));
    }

    #[test]
    fn npf_access_kinds() {
        let npf = |info1| decode_exit(&vmcb(0x400, info1, 0xfee0_0030), NONE);
        assert_eq!(
            npf(1 << 32),
            VmExit::NestedPageFault {
                gpa: 0xfee0_0030,
                access: AccessKind::Read,
                present: false,
                during_event: None
            }
        );
        assert_eq!(
            npf((1 << 32) | 2),
            VmExit::NestedPageFault {
                gpa: 0xfee0_0030,
                access: AccessKind::Write,
                present: false,
                during_event: None
            }
        );
        assert_eq!(
            npf((1 << 32) | 0x11),
            VmExit::NestedPageFault {
                gpa: 0xfee0_0030,
                access: AccessKind::Execute,
                present: true,
                during_event: None
            }
        );
        // A fault while delivering #PF (EXITINTINFO valid, vector 14): the
        // processor touched the address, not the instruction at RIP.
        let mut v = vmcb(0x400, (1 << 32) | 2, 0xfeb0_0ff8);
        v.write_u64(control::EXITINTINFO, 0x0000_0002_8000_0b0e);
        assert!(matches!(
            decode_exit(&v, NONE),
            VmExit::NestedPageFault {
                gpa: 0xfeb0_0ff8,
                during_event: Some(14),
                ..
            }
        ));
    }

    #[test]
    fn instruction_exits_and_lengths() {
        // Without NRIP save the length is left to the handler, which decodes
        // the instruction (a prefixed CPUID is longer than 0F A2).
        for (code, info1, exit) in [
            (
                0x72,
                0,
                VmExit::Cpuid {
                    len: UNKNOWN_LENGTH,
                },
            ),
            (
                0x7c,
                0,
                VmExit::Rdmsr {
                    len: UNKNOWN_LENGTH,
                },
            ),
            (
                0x7c,
                1,
                VmExit::Wrmsr {
                    len: UNKNOWN_LENGTH,
                },
            ),
            (
                0x78,
                0,
                VmExit::Hlt {
                    len: UNKNOWN_LENGTH,
                },
            ),
            (
                0x76,
                0,
                VmExit::Invd {
                    len: UNKNOWN_LENGTH,
                },
            ),
            (
                0x89,
                0,
                VmExit::Wbinvd {
                    len: UNKNOWN_LENGTH,
                },
            ),
            (
                0x81,
                0,
                VmExit::Hypercall {
                    len: UNKNOWN_LENGTH,
                },
            ),
            // VMEXIT_RDPMC (APM Vol 2, Table C-1).
            (
                0x6f,
                0,
                VmExit::Rdpmc {
                    len: UNKNOWN_LENGTH,
                },
            ),
        ] {
            assert_eq!(decode_exit(&vmcb(code, info1, 0), NONE), exit);
        }
        // With NRIP save, the length comes from NRIP (a prefixed CPUID is 3 bytes).
        let mut v = vmcb(0x72, 0, 0);
        v.write_u64(control::NRIP, 0x7c03);
        assert_eq!(decode_exit(&v, NRIP), VmExit::Cpuid { len: 3 });
        assert_eq!(
            decode_exit(&v, NONE),
            VmExit::Cpuid {
                len: UNKNOWN_LENGTH
            },
            "NRIP ignored without the feature"
        );
        v.write_u64(control::NRIP, 0);
        assert_eq!(
            decode_exit(&v, NRIP),
            VmExit::Cpuid {
                len: UNKNOWN_LENGTH
            },
            "a zero NRIP is not trusted"
        );
    }

    /// Exit codes 0x10 (CR0 write) and 0x14 (CR4 write), APM Vol 2 Table C-1.
    #[test]
    fn cr_writes_with_and_without_decode_assists() {
        let assists = ExitFeatures {
            decode_assists: true,
            ..NONE
        };
        let cr = |cr, write, operand| {
            VmExit::CrAccess(CrAccess {
                cr,
                write,
                operand,
                len: UNKNOWN_LENGTH,
            })
        };
        // With decode assists, MOV CRn names its GPR.
        assert_eq!(
            decode_exit(&vmcb(0x14, CR_DECODE_VALID | 3, 0), assists),
            cr(4, true, CrOperand::Gpr(Gpr::Rbx))
        );
        assert_eq!(
            decode_exit(&vmcb(0x10, CR_DECODE_VALID | 12, 0), assists),
            cr(0, true, CrOperand::Gpr(Gpr::R12))
        );
        // CLTS or LMSW (bit 63 clear): the handler decodes the instruction.
        assert_eq!(
            decode_exit(&vmcb(0x10, 0, 0), assists),
            cr(0, true, CrOperand::Undecoded)
        );
        // Without decode assists EXITINFO1 is not looked at.
        assert_eq!(
            decode_exit(&vmcb(0x10, CR_DECODE_VALID | 3, 0), NONE),
            cr(0, true, CrOperand::Undecoded)
        );
        assert_eq!(
            decode_exit(&vmcb(0x14, 0, 0), NONE),
            cr(4, true, CrOperand::Undecoded)
        );
        assert_eq!(
            decode_exit(&vmcb(0x00, 0, 0), NONE),
            cr(0, false, CrOperand::Undecoded)
        );
        // With NRIP save the length comes from NRIP.
        let mut v = vmcb(0x14, 0, 0);
        v.write_u64(control::NRIP, 0x7c03);
        assert!(matches!(
            decode_exit(&v, NRIP),
            VmExit::CrAccess(CrAccess { cr: 4, len: 3, .. })
        ));
    }

    #[test]
    fn events_and_failures() {
        assert_eq!(decode_exit(&vmcb(0x7f, 0, 0), NONE), VmExit::Shutdown);
        assert_eq!(
            decode_exit(&vmcb(0x60, 0, 0), NONE),
            VmExit::ExternalInterrupt
        );
        assert_eq!(
            decode_exit(&vmcb(0x61, 0, 0), NONE),
            VmExit::ExternalInterrupt
        );
        assert_eq!(
            decode_exit(&vmcb(0x64, 0, 0), NONE),
            VmExit::InterruptWindow
        );
        assert_eq!(
            decode_exit(&vmcb(0xffff_ffff, 0, 0), NONE),
            VmExit::InvalidGuestState { detail: 0 }
        );
        assert_eq!(
            decode_exit(&vmcb(u64::MAX, 0, 0), NONE),
            VmExit::InvalidGuestState { detail: 0 }
        );
        assert_eq!(
            decode_exit(&vmcb(0x4e, 0x2, 0xdead_b000), NONE),
            VmExit::Exception {
                vector: 14,
                error_code: Some(2),
                fault_address: Some(0xdead_b000),
                debug_status: None
            }
        );
        assert_eq!(
            decode_exit(&vmcb(0x46, 0x1234, 0), NONE),
            VmExit::Exception {
                vector: 6,
                error_code: None,
                fault_address: None,
                debug_status: None
            }
        );
        assert_eq!(
            decode_exit(&vmcb(0x80, 0, 0), NONE),
            VmExit::UndefinedInstruction { name: "VMRUN" }
        );
        assert_eq!(
            decode_exit(&vmcb(0x8b, 0, 0), NONE),
            VmExit::UndefinedInstruction { name: "MWAIT" }
        );
        assert_eq!(
            decode_exit(&vmcb(0x87, 0, 0), NONE),
            VmExit::Rdtscp { len: 3 },
            "VMEXIT_RDTSCP (APM Vol 2, Table C-1)"
        );
        assert_eq!(
            decode_exit(&vmcb(0x6e, 0, 0), NONE),
            VmExit::Rdtsc { len: 2 },
            "VMEXIT_RDTSC"
        );
        assert_eq!(
            decode_exit(&vmcb(0x6d, 5, 6), NONE),
            VmExit::Unknown {
                code: 0x6d,
                info1: 5,
                info2: 6
            }
        );
    }
}
