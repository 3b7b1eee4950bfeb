//! LEA (SDM Vol 2A "LEA"): the effective address of the memory operand, which is
//! never accessed, truncated or zero-extended to the operand size.

use super::{int_size, unsupported, Step};
use crate::access::Ctx;
use crate::cpu::Cpu;
use crate::decode::Decoded;
use crate::error::Outcome;
use crate::flags::mask;
use crate::memory::Memory;
use crate::operand::op_size;

pub(crate) fn execute<C: Cpu, M: Memory>(ctx: &mut Ctx<'_, C, M>, d: &Decoded) -> Step {
    let insn = &d.insn;
    if insn.op_count() != 2 || insn.op_kind(1) != iced_x86::OpKind::Memory {
        return Err(unsupported(d, "LEA form"));
    }
    let size = int_size(d, op_size(insn, 0))?;
    // The offset is computed at the address size; the operand size then
    // keeps its low bits (the table under "LEA" in the SDM).
    let offset = ctx.mem_ref(insn)?.offset;
    let dst = ctx.loc(insn, 0)?;
    ctx.write_loc(dst, size, offset & mask(size))?;
    Ok(Outcome::Retired)
}

#[cfg(test)]
mod tests {
    use crate::cpu::Gpr;
    use crate::testutil::*;
    use crate::Outcome;

    #[test]
    fn lea_computes_without_accessing_memory() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rcx, 2);
        m.cpu.set(Gpr::Rdx, 0xFFFF_FFFF_0000_0000);
        // lea 0xcfc(%rcx),%edx: 32-bit destination, zero-extended.
        assert_eq!(
            m.run(&[0x8D, 0x91, 0xFC, 0x0C, 0x00, 0x00]),
            Ok(Outcome::Retired)
        );
        assert_eq!(m.cpu.get(Gpr::Rdx), 0xCFE);
        assert_eq!(m.cpu.rip, 0x10006);
        // lea -8(%rax,%rbx,4),%rsi: 64-bit.
        m.cpu.set(Gpr::Rax, 0x1000);
        m.cpu.set(Gpr::Rbx, 0x10);
        assert_eq!(m.run(&[0x48, 0x8D, 0x74, 0x98, 0xF8]), Ok(Outcome::Retired));
        assert_eq!(m.cpu.get(Gpr::Rsi), 0x1038);
        // lea (%rax),%si: 16-bit destination keeps the rest of RSI.
        m.cpu.set(Gpr::Rax, 0x1_2345);
        m.cpu.set(Gpr::Rsi, 0xAAAA_0000);
        assert_eq!(m.run(&[0x66, 0x8D, 0x30]), Ok(Outcome::Retired));
        assert_eq!(m.cpu.get(Gpr::Rsi), 0xAAAA_2345);
        assert!(m.mem.mmio_log.is_empty());
    }
}
