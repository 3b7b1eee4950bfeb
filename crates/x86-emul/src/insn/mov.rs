//! MOV (all general-purpose forms, including moffs and the segment-register store),
//! MOVZX, MOVSX, MOVSXD, MOVNTI, MOVBE (SDM Vol 2B).

use iced_x86::{Mnemonic, OpKind};

use super::{int_size, unsupported, Step};
use crate::access::Ctx;
use crate::cpu::Cpu;
use crate::decode::Decoded;
use crate::error::Outcome;
use crate::flags::{mask, sign_extend};
use crate::memory::Memory;
use crate::operand::{op_size, sreg_of};

pub(crate) fn execute<C: Cpu, M: Memory>(ctx: &mut Ctx<'_, C, M>, d: &Decoded) -> Step {
    let insn = &d.insn;
    if insn.op_count() != 2 {
        return Err(unsupported(d, "MOV form"));
    }
    // MOV r/m16, Sreg stores the selector; a 32/64-bit register destination gets it
    // zero-extended.
    if insn.op_kind(1) == OpKind::Register {
        if let Some(sreg) = sreg_of(insn.op_register(1)) {
            let sel = u64::from(ctx.cpu.segment(sreg).selector);
            let dst = ctx.loc(insn, 0)?;
            let size = if insn.op_kind(0) == OpKind::Register {
                op_size(insn, 0)
            } else {
                2
            };
            ctx.write_loc(dst, size, sel)?;
            return Ok(Outcome::Retired);
        }
    }
    let is_gpr_or_mem =
        |i: u32| insn.op_kind(i) != OpKind::Register || insn.op_register(i).is_gpr();
    if !is_gpr_or_mem(0) || !is_gpr_or_mem(1) {
        return Err(unsupported(
            d,
            "MOV to a segment, control or debug register",
        ));
    }
    let dst_size = int_size(d, op_size(insn, 0))?;
    let src_size = match insn.op_kind(1) {
        OpKind::Register | OpKind::Memory => int_size(d, op_size(insn, 1))?,
        _ => dst_size,
    };
    let src = ctx.loc(insn, 1)?;
    let value = ctx.read_loc(src, src_size)?;
    let value = match insn.mnemonic() {
        Mnemonic::Movsx | Mnemonic::Movsxd => sign_extend(value, src_size) & mask(dst_size),
        Mnemonic::Movbe => value.swap_bytes() >> (64 - 8 * dst_size as u32),
        _ => value,
    };
    let dst = ctx.loc(insn, 0)?;
    ctx.write_loc(dst, dst_size, value)?;
    Ok(Outcome::Retired)
}

#[cfg(test)]
mod tests {
    use crate::cpu::{Gpr, Sreg};
    use crate::testutil::*;
    use crate::{Error, Exception, Outcome};

    #[test]
    fn mov_to_and_from_mmio_each_size() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rax, 0x1122_3344_5566_7788);
        m.cpu.set(Gpr::Rbx, MMIO_BASE);
        // mov [rbx], al / ax / eax / rax
        for (code, size) in [
            (&[0x88, 0x03][..], 1),
            (&[0x66, 0x89, 0x03][..], 2),
            (&[0x89, 0x03][..], 4),
            (&[0x48, 0x89, 0x03][..], 8),
        ] {
            m.mem.mmio_log.clear();
            assert_eq!(m.run(code), Ok(Outcome::Retired));
            assert_eq!(
                m.mem.mmio_log,
                vec![MmioAccess::write(
                    MMIO_BASE,
                    &0x1122_3344_5566_7788u64.to_le_bytes()[..size]
                )]
            );
        }
        // mov ecx, [rbx+4]: a 32-bit load zero-extends.
        m.cpu.set(Gpr::Rcx, u64::MAX);
        m.mem.mmio_fill(MMIO_BASE + 4, &[0xAA, 0xBB, 0xCC, 0xDD]);
        assert_eq!(m.run(&[0x8B, 0x4B, 0x04]), Ok(Outcome::Retired));
        assert_eq!(m.cpu.get(Gpr::Rcx), 0xDDCC_BBAA);
        // mov ch, [rbx+4]
        m.cpu.set(Gpr::Rcx, 0);
        assert_eq!(m.run(&[0x8A, 0x6B, 0x04]), Ok(Outcome::Retired));
        assert_eq!(m.cpu.get(Gpr::Rcx), 0xAA00);
    }

    #[test]
    fn mov_immediate_moffs_and_rip_relative() {
        let mut m = Machine::long_mode();
        // mov dword [rbx], 0xdeadbeef
        m.cpu.set(Gpr::Rbx, MMIO_BASE + 8);
        m.run(&[0xC7, 0x03, 0xEF, 0xBE, 0xAD, 0xDE]).unwrap();
        assert_eq!(m.mem.mmio_get(MMIO_BASE + 8, 4), 0xDEAD_BEEF);
        // mov qword [rbx], -1 (imm32 sign-extended)
        m.run(&[0x48, 0xC7, 0x03, 0xFF, 0xFF, 0xFF, 0xFF]).unwrap();
        assert_eq!(m.mem.mmio_get(MMIO_BASE + 8, 8), u64::MAX);
        // movabs eax, [moffs64]
        let mut code = vec![0xA1];
        code.extend_from_slice(&(MMIO_BASE + 8).to_le_bytes());
        m.run(&code).unwrap();
        assert_eq!(m.cpu.get(Gpr::Rax), 0xFFFF_FFFF);
        // mov [rip+disp32], ax : target is next RIP + disp
        let rip = m.cpu.rip;
        let disp = 0x3_0000u64.wrapping_sub(rip + 7) as u32;
        let mut code = vec![0x66, 0x89, 0x05];
        code.extend_from_slice(&disp.to_le_bytes());
        m.run(&code).unwrap();
        assert_eq!(m.mem.ram_get(0x3_0000, 2), 0xFFFF);
        assert_eq!(m.cpu.rip, rip + 7);
    }

    #[test]
    fn movzx_movsx_movsxd_movbe_movnti() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, MMIO_BASE);
        m.mem.mmio_fill(MMIO_BASE, &[0x80, 0xFF, 0x00, 0x80]);
        m.run(&[0x0F, 0xB6, 0x03]).unwrap(); // movzx eax, byte [rbx]
        assert_eq!(m.cpu.get(Gpr::Rax), 0x80);
        m.run(&[0x48, 0x0F, 0xBE, 0x03]).unwrap(); // movsx rax, byte [rbx]
        assert_eq!(m.cpu.get(Gpr::Rax), 0xFFFF_FFFF_FFFF_FF80);
        m.run(&[0x0F, 0xBF, 0x03]).unwrap(); // movsx eax, word [rbx]
        assert_eq!(m.cpu.get(Gpr::Rax), 0xFFFF_FF80);
        m.run(&[0x48, 0x63, 0x03]).unwrap(); // movsxd rax, dword [rbx]
        assert_eq!(m.cpu.get(Gpr::Rax), 0xFFFF_FFFF_8000_FF80);
        m.run(&[0x0F, 0x38, 0xF0, 0x03]).unwrap(); // movbe eax, [rbx]
        assert_eq!(m.cpu.get(Gpr::Rax), 0x80FF_0080);
        m.cpu.set(Gpr::Rcx, 0x0102_0304);
        m.run(&[0x0F, 0xC3, 0x4B, 0x08]).unwrap(); // movnti [rbx+8], ecx
        assert_eq!(m.mem.mmio_get(MMIO_BASE + 8, 4), 0x0102_0304);
    }

    #[test]
    fn mov_sreg_store_and_load_refused() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, MMIO_BASE);
        m.cpu.segs[Sreg::Ds as usize].selector = 0x2B;
        m.run(&[0x8C, 0x1B]).unwrap(); // mov [rbx], ds
        assert_eq!(m.mem.mmio_get(MMIO_BASE, 2), 0x2B);
        assert!(matches!(
            m.run(&[0x8E, 0x1B]),
            Err(Error::Unsupported { .. })
        )); // mov ds, [rbx]
        assert_eq!(
            m.run(&[0xF0, 0x89, 0x03]),
            Err(Error::Exception(Exception::InvalidOpcode))
        );
    }

    #[test]
    fn sixteen_bit_addressing_in_real_mode() {
        let mut m = Machine::real_mode();
        // mov [bx+si+2], ax with DS = 0x1000: linear 0x10000 + 0x0102 + 2
        m.cpu.set(Gpr::Rax, 0xBEEF);
        m.cpu.set(Gpr::Rbx, 0x100);
        m.cpu.set(Gpr::Rsi, 2);
        m.run(&[0x89, 0x40, 0x02]).unwrap();
        assert_eq!(m.mem.ram_get(0x10104, 2), 0xBEEF);
        // The effective address wraps at 64 KiB: [bx-1] with bx = 0 -> DS:FFFF, then
        // a 2-byte access there exceeds the limit.
        m.cpu.set(Gpr::Rbx, 0);
        assert_eq!(
            m.run(&[0x89, 0x47, 0xFF]),
            Err(Error::Exception(Exception::GeneralProtection(0)))
        );
        m.run(&[0x88, 0x47, 0xFF]).unwrap();
        assert_eq!(m.mem.ram_get(0x1FFFF, 1), 0xEF);
    }

    #[test]
    fn address_size_override() {
        // 64-bit mode, addr32: [ebx] ignores the upper half of rbx.
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, 0xFFFF_FFFF_0002_0000);
        m.cpu.set(Gpr::Rax, 0x77);
        m.run(&[0x67, 0x88, 0x03]).unwrap();
        assert_eq!(m.mem.ram_get(0x2_0000, 1), 0x77);
        // 32-bit protected mode, addr16: [bx+di] wraps at 64 KiB.
        let mut m = Machine::protected32();
        m.cpu.set(Gpr::Rbx, 0x1_FFFF);
        m.cpu.set(Gpr::Rdi, 0x3);
        m.cpu.set(Gpr::Rax, 0x66);
        m.run(&[0x67, 0x88, 0x01]).unwrap();
        assert_eq!(m.mem.ram_get(0x2, 1), 0x66);
        // 32-bit mode with a GS override and a 16-bit operand.
        m.cpu.seg(Sreg::Gs).base = 0x3_0000;
        m.cpu.set(Gpr::Rbx, 0x10);
        m.run(&[0x65, 0x66, 0x89, 0x03]).unwrap();
        assert_eq!(m.mem.ram_get(0x3_0010, 2), 0x66);
    }
}
