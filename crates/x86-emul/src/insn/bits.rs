//! BT, BTS, BTR, BTC (SDM Vol 2A "BT—Bit Test").
//!
//! With a register bit offset and a memory operand the offset is a signed bit string
//! index: the operand accessed is the one at `EA + (offset >> log2(bits)) * bytes`.

use iced_x86::{Mnemonic, OpKind};

use super::{int_size, unsupported, Step};
use crate::access::Ctx;
use crate::cpu::rflags::CF;
use crate::cpu::Cpu;
use crate::decode::Decoded;
use crate::error::Outcome;
use crate::flags::{mask, sign_extend};
use crate::memory::Memory;
use crate::operand::{op_size, Loc};

pub(crate) fn execute<C: Cpu, M: Memory>(ctx: &mut Ctx<'_, C, M>, d: &Decoded) -> Step {
    let insn = &d.insn;
    if insn.op_count() != 2 {
        return Err(unsupported(d, "BT form"));
    }
    let size = int_size(d, op_size(insn, 0))?;
    let bits = size as u64 * 8;
    let offset_loc = ctx.loc(insn, 1)?;
    let raw = ctx.read_loc(offset_loc, size)?;
    let mut loc = ctx.loc(insn, 0)?;
    let bit = raw & (bits - 1);
    if let (Loc::Mem(m), OpKind::Register) = (&mut loc, insn.op_kind(1)) {
        let index = (sign_extend(raw, size) as i64) >> bits.trailing_zeros();
        let delta = (index as u64).wrapping_mul(size as u64);
        m.offset = m.offset.wrapping_add(delta) & mask(m.addr_size);
    }
    let modify = |v: u64| -> Option<u64> {
        match insn.mnemonic() {
            Mnemonic::Bts => Some(v | 1 << bit),
            Mnemonic::Btr => Some(v & !(1 << bit)),
            Mnemonic::Btc => Some(v ^ 1 << bit),
            _ => None,
        }
    };
    let old = if insn.mnemonic() == Mnemonic::Bt {
        ctx.read_loc(loc, size)?
    } else {
        let (dest, v) = ctx.read_dest(loc, size)?;
        if let Some(new) = modify(v) {
            ctx.write_dest(&dest, new)?;
        }
        v
    };
    let f = ctx.cpu.rflags();
    ctx.cpu.set_rflags(if (old >> bit) & 1 != 0 {
        f | CF
    } else {
        f & !CF
    });
    Ok(Outcome::Retired)
}

#[cfg(test)]
mod tests {
    use crate::cpu::rflags::CF;
    use crate::cpu::Gpr;
    use crate::testutil::*;

    #[test]
    fn bt_immediate_masks_the_offset() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, MMIO_BASE + 8);
        m.mem.mmio_fill(MMIO_BASE + 8, &[0, 0x80, 0, 0]);
        m.run(&[0x0F, 0xBA, 0x23, 0x2F]).unwrap(); // bt dword [rbx], 47 -> bit 15
        assert_eq!(m.cpu.rflags & CF, CF);
        m.run(&[0x0F, 0xBA, 0x33, 0x0F]).unwrap(); // btr dword [rbx], 15
        assert_eq!(m.mem.mmio_get(MMIO_BASE + 8, 4), 0);
        assert_eq!(m.cpu.rflags & CF, CF);
    }

    #[test]
    fn register_offset_addresses_the_bit_string() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, MMIO_BASE + 0x100);
        // bts [rbx], eax with eax = 35: dword at +4, bit 3
        m.cpu.set(Gpr::Rax, 35);
        m.run(&[0x0F, 0xAB, 0x03]).unwrap();
        assert_eq!(m.mem.mmio_get(MMIO_BASE + 0x104, 4), 8);
        assert_eq!(m.cpu.rflags & CF, 0);
        // btc [rbx], rax with rax = -1: qword at -8, bit 63
        m.cpu.set(Gpr::Rax, u64::MAX);
        m.run(&[0x48, 0x0F, 0xBB, 0x03]).unwrap();
        assert_eq!(m.mem.mmio_get(MMIO_BASE + 0xF8, 8), 1 << 63);
        // bt [rbx], ax with ax = -16: word at -2, bit 0
        m.mem.mmio_fill(MMIO_BASE + 0xFE, &[1, 0]);
        m.cpu.set(Gpr::Rax, 0xFFF0);
        m.run(&[0x66, 0x0F, 0xA3, 0x03]).unwrap();
        assert_eq!(m.cpu.rflags & CF, CF);
    }
}
