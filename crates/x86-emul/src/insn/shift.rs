//! SHL/SAL, SHR and SAR by 1, an immediate or CL (SDM Vol 2B "SAL/SAR/SHL/SHR").

use iced_x86::{Mnemonic, OpKind};

use super::{int_size, unsupported, Step};
use crate::access::Ctx;
use crate::cpu::rflags::{CF, OF, STATUS};
use crate::cpu::{Cpu, Gpr};
use crate::decode::Decoded;
use crate::error::Outcome;
use crate::flags::{logic, mask, merge, sign_extend};
use crate::memory::Memory;
use crate::operand::op_size;

/// The value and RFLAGS after shifting `dst` (`size` bytes) by `count`
/// (already masked to 5 bits, 6 for 64-bit operands). A count of 0 changes
/// nothing. CF is the last bit shifted out; OF is defined for a count of 1
/// only and set the same way for larger counts; AF is undefined and left 0.
pub(crate) fn compute(m: Mnemonic, dst: u64, count: u32, size: usize, rflags: u64) -> (u64, u64) {
    let dst = dst & mask(size);
    if count == 0 {
        return (dst, rflags);
    }
    let bits = size as u32 * 8;
    let msb = |v: u64| (v >> (bits - 1)) & 1 != 0;
    let (value, cf, of) = match m {
        Mnemonic::Shr => {
            let value = dst.checked_shr(count).unwrap_or(0);
            let cf = dst.checked_shr(count - 1).unwrap_or(0) & 1 != 0;
            (value, cf, msb(dst))
        }
        Mnemonic::Sar => {
            let wide = sign_extend(dst, size) as i64;
            let value = (wide >> count.min(63)) as u64 & mask(size);
            let cf = (wide >> (count - 1).min(63)) & 1 != 0;
            (value, cf, false)
        }
        // SHL and SAL
        _ => {
            let value = dst.checked_shl(count).unwrap_or(0) & mask(size);
            let cf = count <= bits && (dst >> (bits - count)) & 1 != 0;
            (value, cf, msb(value) != cf)
        }
    };
    let mut flags = logic(value, size).flags;
    if cf {
        flags |= CF;
    }
    if of {
        flags |= OF;
    }
    (value, merge(rflags, flags, STATUS))
}

pub(crate) fn execute<C: Cpu, M: Memory>(ctx: &mut Ctx<'_, C, M>, d: &Decoded) -> Step {
    let insn = &d.insn;
    if insn.op_count() != 2 {
        return Err(unsupported(d, "shift form"));
    }
    let size = int_size(d, op_size(insn, 0))?;
    let count = match insn.op_kind(1) {
        OpKind::Immediate8 => u32::from(insn.immediate8()),
        OpKind::Register => ctx.cpu.gpr(Gpr::Rcx) as u32,
        _ => return Err(unsupported(d, "shift count")),
    };
    let count = count & if size == 8 { 0x3F } else { 0x1F };
    let dst_loc = ctx.loc(insn, 0)?;
    let (dest, dst) = ctx.read_dest(dst_loc, size)?;
    let (value, rflags) = compute(insn.mnemonic(), dst, count, size, ctx.cpu.rflags());
    ctx.write_dest(&dest, value)?;
    ctx.cpu.set_rflags(rflags);
    Ok(Outcome::Retired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::rflags::{PF, SF, ZF};
    use crate::testutil::*;

    #[test]
    fn shifts_set_carry_from_the_last_bit_out() {
        // shl $0x20,%rdx as Linux's rdtsc pair does.
        let (v, f) = compute(Mnemonic::Shl, 0x1234_5678, 32, 8, 0x2);
        assert_eq!(v, 0x1234_5678_0000_0000);
        assert_eq!(f & (CF | ZF | SF), 0);
        let (v, f) = compute(Mnemonic::Shl, 0x81, 1, 1, 0x2);
        assert_eq!((v, f & (CF | OF)), (0x02, CF | OF));
        let (v, f) = compute(Mnemonic::Shr, 0x81, 1, 1, 0x2);
        assert_eq!((v, f & (CF | OF)), (0x40, CF | OF));
        let (v, f) = compute(Mnemonic::Sar, 0x81, 1, 1, 0x2);
        assert_eq!((v, f & (CF | OF | SF)), (0xC0, CF | SF));
        // A byte shifted by more than its width: all out, zero result.
        let (v, f) = compute(Mnemonic::Shl, 0xFF, 9, 1, 0x2);
        assert_eq!((v, f & (CF | ZF | PF)), (0, ZF | PF));
        let (v, _) = compute(Mnemonic::Sar, 0x8000, 20, 2, 0x2);
        assert_eq!(v, 0xFFFF);
        // A count of 0 leaves the flags alone.
        assert_eq!(compute(Mnemonic::Shl, 5, 0, 4, 0x2 | CF), (5, 0x2 | CF));
    }

    #[test]
    fn shifts_of_registers_and_memory() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rdx, 0xDEAD_BEEF);
        // shl $0x20,%rdx
        m.run(&[0x48, 0xC1, 0xE2, 0x20]).unwrap();
        assert_eq!(m.cpu.get(Gpr::Rdx), 0xDEAD_BEEF_0000_0000);
        // shr %cl,%edx (count 4): a 32-bit result zero-extends.
        m.cpu.set(Gpr::Rcx, 0x24);
        m.run(&[0xD3, 0xEA]).unwrap();
        assert_eq!(m.cpu.get(Gpr::Rdx), 0);
        m.cpu.set(Gpr::Rdx, 0x80);
        // sar %dl (by 1)
        m.run(&[0xD0, 0xFA]).unwrap();
        assert_eq!(m.cpu.get(Gpr::Rdx), 0xC0);
        // shl $4, dword [rbx] in MMIO
        m.cpu.set(Gpr::Rbx, MMIO_BASE);
        m.mem.mmio_fill(MMIO_BASE, &[0x21, 0x43, 0x65, 0x07]);
        m.run(&[0xC1, 0x23, 0x04]).unwrap();
        assert_eq!(m.mem.mmio_get(MMIO_BASE, 4), 0x7654_3210);
    }
}
