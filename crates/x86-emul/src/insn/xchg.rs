//! XCHG, CMPXCHG, XADD (SDM Vol 2B/2D). They are locked on hardware whether or not
//! the LOCK prefix is given; here they are a read followed by a write of the same
//! translated address, which is atomic for devices and for a single vCPU (see README).

use iced_x86::Mnemonic;

use super::{int_size, unsupported, Step};
use crate::access::Ctx;
use crate::cpu::rflags::STATUS;
use crate::cpu::{Cpu, Gpr};
use crate::decode::Decoded;
use crate::error::Outcome;
use crate::flags::{self, merge};
use crate::memory::Memory;
use crate::operand::{op_size, Dest, Loc};

pub(crate) fn execute<C: Cpu, M: Memory>(ctx: &mut Ctx<'_, C, M>, d: &Decoded) -> Step {
    let insn = &d.insn;
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
}
