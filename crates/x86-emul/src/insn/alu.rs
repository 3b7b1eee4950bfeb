//! ADD, ADC, SUB, SBB, CMP, AND, OR, XOR, TEST, INC, DEC, NEG, NOT (SDM Vol 2A/2B).

use iced_x86::Mnemonic;

use super::{int_size, unsupported, Step};
use crate::access::Ctx;
use crate::cpu::rflags::{CF, STATUS};
use crate::cpu::Cpu;
use crate::decode::Decoded;
use crate::error::Outcome;
use crate::flags::{self, mask, merge};
use crate::memory::Memory;
use crate::operand::op_size;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum AluOp {
    Add,
    Or,
    Adc,
    Sbb,
    And,
    Sub,
    Xor,
    Cmp,
    Test,
    Inc,
    Dec,
    Neg,
    Not,
}

impl AluOp {
    fn of(m: Mnemonic) -> Option<AluOp> {
        Some(match m {
            Mnemonic::Add => AluOp::Add,
            Mnemonic::Or => AluOp::Or,
            Mnemonic::Adc => AluOp::Adc,
            Mnemonic::Sbb => AluOp::Sbb,
            Mnemonic::And => AluOp::And,
            Mnemonic::Sub => AluOp::Sub,
            Mnemonic::Xor => AluOp::Xor,
            Mnemonic::Cmp => AluOp::Cmp,
            Mnemonic::Test => AluOp::Test,
            Mnemonic::Inc => AluOp::Inc,
            Mnemonic::Dec => AluOp::Dec,
            Mnemonic::Neg => AluOp::Neg,
            Mnemonic::Not => AluOp::Not,
            _ => return None,
        })
    }

    /// CMP and TEST only set flags.
    pub fn writes_result(self) -> bool {
        !matches!(self, AluOp::Cmp | AluOp::Test)
    }

    pub fn unary(self) -> bool {
        matches!(self, AluOp::Inc | AluOp::Dec | AluOp::Neg | AluOp::Not)
    }

    /// The status flags the SDM defines after the instruction (AF is undefined after
    /// the logic instructions; the others are written, or like CF for INC/DEC and all
    /// of them for NOT, left unchanged).
    #[cfg(test)]
    pub fn defined_flags(self) -> u64 {
        use crate::cpu::rflags::AF;
        match self {
            AluOp::And | AluOp::Or | AluOp::Xor | AluOp::Test => STATUS & !AF,
            _ => STATUS,
        }
    }
}

/// `dst op src` at `size` bytes: the result and the new RFLAGS.
pub(crate) fn compute(op: AluOp, dst: u64, src: u64, size: usize, rflags: u64) -> (u64, u64) {
    let cf = rflags & CF != 0;
    let r = match op {
        AluOp::Add => flags::add(dst, src, false, size),
        AluOp::Adc => flags::add(dst, src, cf, size),
        AluOp::Sub | AluOp::Cmp => flags::sub(dst, src, false, size),
        AluOp::Sbb => flags::sub(dst, src, cf, size),
        AluOp::And | AluOp::Test => flags::logic(dst & src, size),
        AluOp::Or => flags::logic(dst | src, size),
        AluOp::Xor => flags::logic(dst ^ src, size),
        AluOp::Inc => flags::add(dst, 1, false, size),
        AluOp::Dec => flags::sub(dst, 1, false, size),
        AluOp::Neg => flags::neg(dst, size),
        AluOp::Not => return (!dst & mask(size), rflags),
    };
    let written = match op {
        AluOp::Inc | AluOp::Dec => STATUS & !CF,
        _ => STATUS,
    };
    (r.value, merge(rflags, r.flags, written))
}

pub(crate) fn execute<C: Cpu, M: Memory>(ctx: &mut Ctx<'_, C, M>, d: &Decoded) -> Step {
    let insn = &d.insn;
    let Some(op) = AluOp::of(insn.mnemonic()) else {
        return Err(unsupported(d, "ALU form"));
    };
    if insn.op_count() != if op.unary() { 1 } else { 2 } {
        return Err(unsupported(d, "ALU form"));
    }
    let size = int_size(d, op_size(insn, 0))?;
    let src = if op.unary() {
        0
    } else {
        let s = ctx.loc(insn, 1)?;
        ctx.read_loc(s, size)?
    };
    let dst_loc = ctx.loc(insn, 0)?;
    let rflags = ctx.cpu.rflags();
    if op.writes_result() {
        let (dest, dst) = ctx.read_dest(dst_loc, size)?;
        let (value, new_flags) = compute(op, dst, src, size, rflags);
        ctx.write_dest(&dest, value)?;
        ctx.cpu.set_rflags(new_flags);
    } else {
        let dst = ctx.read_loc(dst_loc, size)?;
        let (_, new_flags) = compute(op, dst, src, size, rflags);
        ctx.cpu.set_rflags(new_flags);
    }
    Ok(Outcome::Retired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::rflags::*;
    use crate::cpu::Gpr;
    use crate::testutil::*;
    use crate::{Error, Exception};

    #[test]
    fn add_to_mmio_is_read_modify_write() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, MMIO_BASE);
        m.mem.mmio_fill(MMIO_BASE, &[0xFF, 0xFF, 0xFF, 0xFF]);
        m.run(&[0xF0, 0x83, 0x03, 0x01]).unwrap(); // lock add dword [rbx], 1
        assert_eq!(m.mem.mmio_get(MMIO_BASE, 4), 0);
        assert_eq!(m.cpu.rflags & STATUS, CF | ZF | PF | AF);
        assert_eq!(
            m.mem.mmio_log,
            vec![
                MmioAccess::read(MMIO_BASE, &[0xFF; 4]),
                MmioAccess::write(MMIO_BASE, &[0; 4])
            ]
        );
    }

    #[test]
    fn cmp_and_test_only_read() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, MMIO_BASE);
        m.mem.mmio_fill(MMIO_BASE, &[5]);
        m.run(&[0x80, 0x3B, 0x06]).unwrap(); // cmp byte [rbx], 6
        assert_eq!(m.cpu.rflags & (CF | SF | ZF), CF | SF);
        m.run(&[0xF6, 0x03, 0x04]).unwrap(); // test byte [rbx], 4
        assert_eq!(m.cpu.rflags & (CF | ZF), 0);
        assert!(m.mem.mmio_log.iter().all(|a| !a.write));
    }

    #[test]
    fn unary_ops_and_register_source() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, MMIO_BASE);
        m.cpu.rflags |= CF;
        m.mem.mmio_fill(MMIO_BASE, &[0xFF, 0xFF]);
        m.run(&[0x66, 0xFF, 0x03]).unwrap(); // inc word [rbx]
        assert_eq!(m.mem.mmio_get(MMIO_BASE, 2), 0);
        assert_eq!(m.cpu.rflags & (CF | ZF), CF | ZF, "INC keeps CF");
        m.run(&[0x66, 0xF7, 0x1B]).unwrap(); // neg word [rbx]
        assert_eq!(m.cpu.rflags & CF, 0);
        m.run(&[0x66, 0xF7, 0x13]).unwrap(); // not word [rbx]
        assert_eq!(m.mem.mmio_get(MMIO_BASE, 2), 0xFFFF);
        m.cpu.set(Gpr::Rcx, 0x0F0F);
        m.run(&[0x66, 0x21, 0x0B]).unwrap(); // and [rbx], cx
        assert_eq!(m.mem.mmio_get(MMIO_BASE, 2), 0x0F0F);
        m.run(&[0x66, 0x0B, 0x0B]).unwrap(); // or cx, [rbx]
        m.run(&[0x48, 0x2B, 0x0B]).unwrap(); // sub rcx, [rbx]
        assert_eq!(m.cpu.get(Gpr::Rcx), 0);
        assert_eq!(m.cpu.rflags & ZF, ZF);
    }

    #[test]
    fn lock_on_register_destination_is_ud() {
        let mut m = Machine::long_mode();
        assert_eq!(
            m.run(&[0xF0, 0x01, 0xC0]),
            Err(Error::Exception(Exception::InvalidOpcode))
        );
        assert_eq!(m.cpu.rip, 0x10000);
    }
}
