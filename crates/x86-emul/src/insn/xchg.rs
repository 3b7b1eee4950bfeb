//! XCHG, CMPXCHG, XADD, CMPXCHG8B/16B (SDM Vol 2A/2B/2D). They are locked on hardware whether or not
//! the LOCK prefix is given; here they are a read followed by a write of the same
//! translated address, which is atomic for devices and for a single vCPU (see README).

use iced_x86::Mnemonic;

use super::{int_size, unsupported, Step};
use crate::access::Ctx;
use crate::cpu::rflags::{STATUS, ZF};
use crate::cpu::{Cpu, Gpr};
use crate::decode::Decoded;
use crate::error::{Exception, Outcome};
use crate::flags::{self, merge};
use crate::memory::Memory;
use crate::operand::{op_size, Dest, Loc};
use crate::paging::AccessKind;

pub(crate) fn execute<C: Cpu, M: Memory>(ctx: &mut Ctx<'_, C, M>, d: &Decoded) -> Step {
    let insn = &d.insn;
    if matches!(insn.mnemonic(), Mnemonic::Cmpxchg8b | Mnemonic::Cmpxchg16b) {
        return cmpxchg_double(ctx, d);
    }
    if insn.op_count() != 2 {
        return Err(unsupported(d, "XCHG form"));
    }
    let size = int_size(d, op_size(insn, 0))?;
    let mut a = ctx.loc(insn, 0)?;
    let mut b = ctx.loc(insn, 1)?;
    // Keep any memory operand in `a`: it is resolved (and may fault) before any change.
    if matches!(b, Loc::Mem(_)) {
        core::mem::swap(&mut a, &mut b);
    }
    let Loc::Reg(reg) = b else {
        return Err(unsupported(d, "XCHG form"));
    };
    let (dest, old) = ctx.read_dest(a, size)?;
    let src = ctx.get_reg(reg);
    match insn.mnemonic() {
        Mnemonic::Xchg => {
            ctx.write_dest(&dest, src)?;
            ctx.set_reg(reg, old);
        }
        Mnemonic::Xadd => {
            let r = flags::add(old, src, false, size);
            ctx.write_dest(&dest, r.value)?;
            ctx.set_reg(reg, old);
            let f = ctx.cpu.rflags();
            ctx.cpu.set_rflags(merge(f, r.flags, STATUS));
        }
        Mnemonic::Cmpxchg => {
            let acc = ctx.gpr_sized(Gpr::Rax, size);
            let r = flags::sub(acc, old, false, size);
            if acc == old {
                ctx.write_dest(&dest, src)?;
            } else {
                // A memory destination is written back with its own value.
                if let Dest::Mem(_) = dest {
                    ctx.write_dest(&dest, old)?;
                }
                ctx.set_gpr_sized(Gpr::Rax, size, old);
            }
            let f = ctx.cpu.rflags();
            ctx.cpu.set_rflags(merge(f, r.flags, STATUS));
        }
        _ => return Err(unsupported(d, "XCHG form")),
    }
    Ok(Outcome::Retired)
}

/// CMPXCHG8B m64 / CMPXCHG16B m128: compare rDX:rAX with the operand; if equal store
/// rCX:rBX, else load it into rDX:rAX (and write it back). Only ZF changes.
fn cmpxchg_double<C: Cpu, M: Memory>(ctx: &mut Ctx<'_, C, M>, d: &Decoded) -> Step {
    let insn = &d.insn;
    let half = insn.memory_size().size() / 2;
    let Ok(Loc::Mem(m)) = ctx.loc(insn, 0) else {
        return Err(Exception::InvalidOpcode.into());
    };
    if !matches!(half, 4 | 8) {
        return Err(unsupported(d, "CMPXCHG8B/16B form"));
    }
    // CMPXCHG16B needs a 16-byte aligned operand (SDM Vol 2A).
    if half == 8 && m.offset & 0xF != 0 {
        return Err(Exception::GeneralProtection(0).into());
    }
    let p = ctx.resolve(m.sreg, m.offset, 2 * half, AccessKind::Write)?;
    let mut buf = [0u8; 16];
    ctx.read_pieces(&p, &mut buf[..2 * half])?;
    let get = |b: &[u8]| {
        let mut v = [0u8; 8];
        v[..half].copy_from_slice(b);
        u64::from_le_bytes(v)
    };
    let (lo, hi) = (get(&buf[..half]), get(&buf[half..2 * half]));
    let (ax, dx) = (ctx.gpr_sized(Gpr::Rax, half), ctx.gpr_sized(Gpr::Rdx, half));
    let f = ctx.cpu.rflags();
    if (lo, hi) == (ax, dx) {
        let (bx, cx) = (ctx.gpr_sized(Gpr::Rbx, half), ctx.gpr_sized(Gpr::Rcx, half));
        buf[..half].copy_from_slice(&bx.to_le_bytes()[..half]);
        buf[half..2 * half].copy_from_slice(&cx.to_le_bytes()[..half]);
        ctx.write_pieces(&p, &buf[..2 * half])?;
        ctx.cpu.set_rflags(f | ZF);
    } else {
        ctx.write_pieces(&p, &buf[..2 * half])?;
        ctx.set_gpr_sized(Gpr::Rax, half, lo);
        ctx.set_gpr_sized(Gpr::Rdx, half, hi);
        ctx.cpu.set_rflags(f & !ZF);
    }
    Ok(Outcome::Retired)
}

#[cfg(test)]
mod tests {
    use crate::cpu::rflags::{CF, ZF};
    use crate::cpu::Gpr;
    use crate::testutil::*;

    #[test]
    fn xchg_memory_either_order() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, MMIO_BASE);
        m.mem.mmio_fill(MMIO_BASE, &[1, 2, 3, 4]);
        m.cpu.set(Gpr::Rax, 0xFFFF_FFFF_AABB_CCDD);
        m.run(&[0x87, 0x03]).unwrap(); // xchg [rbx], eax
        assert_eq!(m.cpu.get(Gpr::Rax), 0x0403_0201);
        assert_eq!(m.mem.mmio_get(MMIO_BASE, 4), 0xAABB_CCDD);
        m.run(&[0x86, 0x23]).unwrap(); // xchg [rbx], ah
        assert_eq!(m.cpu.get(Gpr::Rax), 0x0403_DD01);
    }

    #[test]
    fn cmpxchg_equal_and_not() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, MMIO_BASE);
        m.mem.mmio_fill(MMIO_BASE, &[7, 0, 0, 0]);
        m.cpu.set(Gpr::Rax, 7);
        m.cpu.set(Gpr::Rcx, 9);
        m.run(&[0xF0, 0x0F, 0xB1, 0x0B]).unwrap(); // lock cmpxchg [rbx], ecx
        assert_eq!(m.mem.mmio_get(MMIO_BASE, 4), 9);
        assert_eq!(m.cpu.rflags & ZF, ZF);
        m.mem.mmio_log.clear();
        m.run(&[0xF0, 0x0F, 0xB1, 0x0B]).unwrap();
        assert_eq!(m.cpu.rflags & (ZF | CF), CF);
        assert_eq!(m.cpu.get(Gpr::Rax), 9);
        assert_eq!(m.mem.mmio_log.len(), 2, "the failed compare still writes");
    }

    #[test]
    fn xadd_memory() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, MMIO_BASE);
        m.mem.mmio_fill(MMIO_BASE, &[0xFF]);
        m.cpu.set(Gpr::Rcx, 1);
        m.run(&[0x0F, 0xC0, 0x0B]).unwrap(); // xadd [rbx], cl
        assert_eq!(m.mem.mmio_get(MMIO_BASE, 1), 0);
        assert_eq!(m.cpu.get(Gpr::Rcx), 0xFF);
        assert_eq!(m.cpu.rflags & (ZF | CF), ZF | CF);
    }

    #[test]
    fn cmpxchg8b_and_16b() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rdi, MMIO_BASE + 0x10);
        m.mem
            .mmio_fill(MMIO_BASE + 0x10, &0x2222_2222_1111_1111u64.to_le_bytes());
        m.cpu.set(Gpr::Rax, 0x1111_1111);
        m.cpu.set(Gpr::Rdx, 0x2222_2222);
        m.cpu.set(Gpr::Rbx, 0x3333_3333);
        m.cpu.set(Gpr::Rcx, 0x4444_4444);
        m.run(&[0xF0, 0x0F, 0xC7, 0x0F]).unwrap(); // lock cmpxchg8b [rdi]
        assert_eq!(m.mem.mmio_get(MMIO_BASE + 0x10, 8), 0x4444_4444_3333_3333);
        assert_eq!(m.cpu.rflags & ZF, ZF);
        m.run(&[0xF0, 0x0F, 0xC7, 0x0F]).unwrap();
        assert_eq!(
            (m.cpu.get(Gpr::Rax), m.cpu.get(Gpr::Rdx)),
            (0x3333_3333, 0x4444_4444)
        );
        assert_eq!(m.cpu.rflags & ZF, 0);
        // cmpxchg16b [rdi+8]: misaligned -> #GP(0)
        assert_eq!(
            m.run(&[0x48, 0x0F, 0xC7, 0x4F, 0x08]),
            Err(crate::Error::Exception(
                crate::Exception::GeneralProtection(0)
            ))
        );
        m.cpu.set(Gpr::Rax, 0x4444_4444_3333_3333);
        m.cpu.set(Gpr::Rdx, 0);
        m.cpu.set(Gpr::Rbx, u64::MAX);
        m.cpu.set(Gpr::Rcx, 5);
        m.run(&[0x48, 0x0F, 0xC7, 0x0F]).unwrap(); // cmpxchg16b [rdi]
        assert_eq!(m.mem.mmio_get(MMIO_BASE + 0x10, 8), u64::MAX);
        assert_eq!(m.mem.mmio_get(MMIO_BASE + 0x18, 8), 5);
    }
}
