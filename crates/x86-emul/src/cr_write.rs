//! The instructions that write a control register, decoded for an exit that
//! does not name their operand: an SVM CR0 or CR4 write intercept without
//! decode assists reports only which register (APM Vol 2 15.9, 15.33.1).

use iced_x86::{DecoderOptions, Mnemonic, OpKind, Register};

use crate::access::Ctx;
use crate::cpu::{Cpu, Gpr};
use crate::decode::{fetch_decode_with, Fetch};
use crate::error::{Error, Exception};
use crate::insn::unsupported;
use crate::memory::Memory;
use crate::operand::reg_ref;

/// What an instruction writing a control register loads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CrWrite {
    /// MOV CRn, r32/r64 (0F 22 /r; SDM Vol 2B "MOV—Move to/from Control
    /// Registers"): `cr` as decoded, REX.R selecting CR8-CR15 and, on AMD,
    /// LOCK turning CR0 into CR8 (APM Vol 3 "MOV CRn").
    Mov { cr: u8, gpr: Gpr },
    /// CLTS (0F 06): clears CR0.TS.
    Clts,
    /// LMSW r/m16 (0F 01 /6): its 16-bit source, from a register or memory
    /// (read through segmentation and paging, so it may fault).
    Lmsw(u16),
}

/// Fetches and decodes the instruction at CS:RIP as [`crate::emulate`] does
/// (by AMD's rules, as the exits it serves are SVM's) and says what it writes
/// to a control register, with its length. Nothing is changed. An
/// instruction that writes no control register (the code changed under the
/// exit) is [`Error::Unsupported`].
pub fn decode_cr_write<C: Cpu, M: Memory>(
    cpu: &mut C,
    mem: &mut M,
) -> Result<(CrWrite, u8), Error> {
    let mut ctx = Ctx::new(cpu, mem);
    let d = fetch_decode_with(&mut ctx, Fetch::Guest, DecoderOptions::AMD)?;
    let insn = &d.insn;
    let write = match insn.mnemonic() {
        Mnemonic::Mov if insn.op_count() == 2 && insn.op_kind(0) == OpKind::Register => {
            let cr = insn.op_register(0);
            if !(Register::CR0..=Register::CR15).contains(&cr) {
                return Err(unsupported(&d, "not a control-register write"));
            }
            let src = reg_ref(insn.op_register(1)).ok_or(Exception::InvalidOpcode)?;
            CrWrite::Mov {
                cr: (cr as u32 - Register::CR0 as u32) as u8,
                gpr: src.gpr,
            }
        }
        Mnemonic::Clts => CrWrite::Clts,
        Mnemonic::Lmsw => {
            let loc = ctx.loc(insn, 0)?;
            CrWrite::Lmsw(ctx.read_loc(loc, 2)? as u16)
        }
        _ => return Err(unsupported(&d, "not a control-register write")),
    };
    Ok((write, insn.len() as u8))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::Sreg;
    use crate::testutil::Machine;

    fn decode(m: &mut Machine, code: &[u8]) -> Result<(CrWrite, u8), Error> {
        let at = (m.cpu.segs[Sreg::Cs as usize].base + m.cpu.rip) & 0xFFFF_FFFF;
        m.mem.ram_fill(at, code);
        let before = m.cpu.clone();
        let r = decode_cr_write(&mut m.cpu, &mut m.mem);
        assert_eq!(m.cpu.gprs, before.gprs, "nothing is changed");
        assert_eq!(m.cpu.rip, before.rip, "nothing is changed");
        r
    }

    #[test]
    fn mov_to_cr_names_the_register() {
        let mut m = Machine::long_mode();
        // mov cr0, rax
        assert_eq!(
            decode(&mut m, &[0x0f, 0x22, 0xc0]),
            Ok((
                CrWrite::Mov {
                    cr: 0,
                    gpr: Gpr::Rax
                },
                3
            ))
        );
        // mov cr4, r9 (REX.B)
        assert_eq!(
            decode(&mut m, &[0x41, 0x0f, 0x22, 0xe1]),
            Ok((
                CrWrite::Mov {
                    cr: 4,
                    gpr: Gpr::R9
                },
                4
            ))
        );
        // mov cr8, rbx (REX.R selects CR8)
        assert_eq!(
            decode(&mut m, &[0x44, 0x0f, 0x22, 0xc3]),
            Ok((
                CrWrite::Mov {
                    cr: 8,
                    gpr: Gpr::Rbx
                },
                4
            ))
        );
        // The mod field is ignored: 0F 22 /r with mod = 00 is still a register.
        assert_eq!(
            decode(&mut m, &[0x0f, 0x22, 0x22]),
            Ok((
                CrWrite::Mov {
                    cr: 4,
                    gpr: Gpr::Rdx
                },
                3
            ))
        );
        // Prefixes count in the length: 66 mov cr0, rax.
        assert_eq!(
            decode(&mut m, &[0x66, 0x0f, 0x22, 0xc0]).map(|r| r.1),
            Ok(4)
        );
    }

    #[test]
    fn lock_mov_cr0_is_cr8() {
        // APM Vol 3 "MOV CRn": LOCK MOV CR0 is the 32-bit way to reach CR8.
        let mut m = Machine::protected32();
        assert_eq!(
            decode(&mut m, &[0xf0, 0x0f, 0x22, 0xc1]),
            Ok((
                CrWrite::Mov {
                    cr: 8,
                    gpr: Gpr::Rcx
                },
                4
            ))
        );
    }

    #[test]
    fn mov_to_cr_in_real_mode() {
        let mut m = Machine::real_mode();
        assert_eq!(
            decode(&mut m, &[0x0f, 0x22, 0xc0]),
            Ok((
                CrWrite::Mov {
                    cr: 0,
                    gpr: Gpr::Rax
                },
                3
            ))
        );
    }

    #[test]
    fn clts() {
        let mut m = Machine::protected32();
        assert_eq!(decode(&mut m, &[0x0f, 0x06]), Ok((CrWrite::Clts, 2)));
    }

    #[test]
    fn lmsw_register_and_memory() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rsi, 0xdead_0000_1234_000f);
        // lmsw si
        assert_eq!(
            decode(&mut m, &[0x0f, 0x01, 0xf6]),
            Ok((CrWrite::Lmsw(0x000f), 3))
        );
        // lmsw [rbx+8]
        m.cpu.set(Gpr::Rbx, 0x8000);
        m.mem.ram_fill(0x8008, &[0x0b, 0xa5, 0xff]);
        assert_eq!(
            decode(&mut m, &[0x0f, 0x01, 0x73, 0x08]),
            Ok((CrWrite::Lmsw(0xa50b), 4))
        );
        // Real mode: lmsw [bx] through DS (base 0x10000).
        let mut m = Machine::real_mode();
        m.cpu.set(Gpr::Rbx, 0x20);
        m.mem.ram_fill(0x10020, &[0x01, 0x00]);
        assert_eq!(
            decode(&mut m, &[0x0f, 0x01, 0x37]),
            Ok((CrWrite::Lmsw(1), 3))
        );
    }

    #[test]
    fn lmsw_memory_operand_faults() {
        // Past the DS limit in real mode: #GP(0).
        let mut m = Machine::real_mode();
        m.cpu.set(Gpr::Rbx, 0xffff);
        assert_eq!(
            decode(&mut m, &[0x0f, 0x01, 0x37]),
            Err(Error::Exception(Exception::GeneralProtection(0)))
        );
    }

    #[test]
    fn other_instructions_are_refused() {
        let mut m = Machine::long_mode();
        for code in [
            &[0x0f, 0x20, 0xc0][..], // mov rax, cr0 (a read)
            &[0x0f, 0x23, 0xc0],     // mov dr0, rax
            &[0x48, 0x89, 0xc3],     // mov rbx, rax
            &[0x0f, 0x01, 0xe0],     // smsw eax
            &[0x90],                 // nop
        ] {
            assert!(
                matches!(decode(&mut m, code), Err(Error::Unsupported { .. })),
                "{code:02x?}"
            );
        }
        // 0F 22 with a register that does not exist: #UD from the decoder.
        assert_eq!(
            decode(&mut m, &[0x0f, 0x22, 0xc8]).map(|r| r.0),
            Err(Error::Exception(Exception::InvalidOpcode)),
            "mov cr1, rax"
        );
    }
}
