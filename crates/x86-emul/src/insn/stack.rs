//! PUSH and POP, including the memory-operand forms (SDM Vol 2B "PUSH", "POP").

use iced_x86::{Mnemonic, OpKind};

use super::{unsupported, Step};
use crate::access::Ctx;
use crate::cpu::{Cpu, Gpr, Mode, Sreg};
use crate::decode::Decoded;
use crate::error::Outcome;
use crate::memory::Memory;
use crate::operand::sreg_of;

/// Stack-pointer width in bytes: RSP in 64-bit mode, else ESP or SP by SS.B.
fn stack_size<C: Cpu, M: Memory>(ctx: &Ctx<'_, C, M>) -> usize {
    if ctx.mode == Mode::Long {
        8
    } else if ctx.cpu.segment(Sreg::Ss).db() {
        4
    } else {
        2
    }
}

pub(crate) fn execute<C: Cpu, M: Memory>(ctx: &mut Ctx<'_, C, M>, d: &Decoded) -> Step {
    let insn = &d.insn;
    let size = insn.stack_pointer_increment().unsigned_abs() as usize;
    if insn.op_count() != 1 || !matches!(size, 2 | 4 | 8) {
        return Err(unsupported(d, "PUSH/POP form"));
    }
    let ss = stack_size(ctx);
    let sp = ctx.gpr_sized(Gpr::Rsp, ss);
    if insn.mnemonic() == Mnemonic::Push {
        // The source is evaluated with RSP before the push.
        let value = if insn.op_kind(0) == OpKind::Register {
            match sreg_of(insn.op_register(0)) {
                Some(s) => u64::from(ctx.cpu.segment(s).selector),
                None => {
                    let l = ctx.loc(insn, 0)?;
                    ctx.read_loc(l, size)?
                }
            }
        } else {
            let l = ctx.loc(insn, 0)?;
            ctx.read_loc(l, size)?
        };
        let new_sp = sp.wrapping_sub(size as u64) & crate::flags::mask(ss);
        ctx.write_mem(Sreg::Ss, new_sp, size, value)?;
        ctx.set_gpr_sized(Gpr::Rsp, ss, new_sp);
    } else {
        if insn.op_kind(0) == OpKind::Register && sreg_of(insn.op_register(0)).is_some() {
            return Err(unsupported(d, "POP to a segment register"));
        }
        let value = ctx.read_mem(Sreg::Ss, sp, size)?;
        let old_rsp = ctx.cpu.gpr(Gpr::Rsp);
        // A memory destination is computed with RSP after the pop.
        ctx.set_gpr_sized(Gpr::Rsp, ss, sp.wrapping_add(size as u64));
        let result = ctx.loc(insn, 0).and_then(|l| ctx.write_loc(l, size, value));
        if let Err(e) = result {
            ctx.cpu.set_gpr(Gpr::Rsp, old_rsp);
            return Err(e);
        }
    }
    Ok(Outcome::Retired)
}

#[cfg(test)]
mod tests {
    use crate::cpu::{Gpr, Sreg};
    use crate::testutil::*;
    use crate::{Error, Exception, Outcome};

    #[test]
    fn push_and_pop_memory_in_long_mode() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rsp, 0x8000);
        m.cpu.set(Gpr::Rbx, MMIO_BASE);
        m.mem
            .mmio_fill(MMIO_BASE, &0x1122_3344_5566_7788u64.to_le_bytes());
        m.run(&[0xFF, 0x33]).unwrap(); // push qword [rbx]
        assert_eq!(m.cpu.get(Gpr::Rsp), 0x7FF8);
        assert_eq!(m.mem.read_u64(0x7FF8), 0x1122_3344_5566_7788);
        m.run(&[0x8F, 0x43, 0x08]).unwrap(); // pop qword [rbx+8]
        assert_eq!(m.cpu.get(Gpr::Rsp), 0x8000);
        assert_eq!(m.mem.mmio_get(MMIO_BASE + 8, 8), 0x1122_3344_5566_7788);
        m.run(&[0x66, 0xFF, 0x33]).unwrap(); // push word [rbx]
        assert_eq!(m.cpu.get(Gpr::Rsp), 0x7FFE);
    }

    #[test]
    fn pop_uses_the_incremented_rsp_and_restores_it_on_fault() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rsp, 0x8000);
        m.mem.write_u64(0x8000, 0xAB);
        m.run(&[0x8F, 0x44, 0x24, 0x08]).unwrap(); // pop qword [rsp+8]
        assert_eq!(m.mem.read_u64(0x8010), 0xAB);
        // pop qword [rbx] with a non-canonical rbx: #GP, RSP unchanged.
        m.cpu.set(Gpr::Rbx, 0x8000_0000_0000_0000);
        assert_eq!(
            m.run(&[0x8F, 0x03]),
            Err(Error::Exception(Exception::GeneralProtection(0)))
        );
        assert_eq!(m.cpu.get(Gpr::Rsp), 0x8008);
    }

    #[test]
    fn sixteen_bit_stack_wraps_sp_only() {
        let mut m = Machine::real_mode();
        m.cpu.set(Gpr::Rsp, 0xABCD_0000);
        m.cpu.set(Gpr::Rbx, 0x10);
        m.mem.ram_fill(0x10010, &[0x34, 0x12]);
        assert_eq!(m.run(&[0xFF, 0x37]), Ok(Outcome::Retired)); // push word [bx]
        assert_eq!(m.cpu.get(Gpr::Rsp), 0xABCD_FFFE);
        assert_eq!(m.mem.ram_get(0x3FFFE, 2), 0x1234);
        m.cpu.segs[Sreg::Ss as usize].limit = 0xFFF0;
        m.cpu.set(Gpr::Rsp, 0xFFF8);
        assert_eq!(
            m.run(&[0xFF, 0x37]),
            Err(Error::Exception(Exception::StackSegmentFault(0)))
        );
    }
}
