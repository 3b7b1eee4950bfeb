//! Result and status flags of the integer arithmetic and logic instructions
//! (SDM Vol 1 3.4.3.1, Appendix A "EFLAGS Cross-Reference").
//!
//! Values are carried in a `u64`; `size` is the operand size in bytes (1, 2, 4, 8).

use crate::cpu::rflags::{AF, CF, OF, PF, SF, ZF};

/// All-ones of `size` bytes.
pub(crate) fn mask(size: usize) -> u64 {
    if size >= 8 {
        u64::MAX
    } else {
        (1u64 << (size * 8)) - 1
    }
}

fn sign_bit(size: usize) -> u64 {
    1u64 << (size * 8 - 1)
}

/// Sign-extend the low `size` bytes of `v` to 64 bits.
pub(crate) fn sign_extend(v: u64, size: usize) -> u64 {
    let shift = 64 - size as u32 * 8;
    (((v << shift) as i64) >> shift) as u64
}

/// ZF, SF and PF of a result (PF: even parity of the low byte).
fn szp(r: u64, size: usize) -> u64 {
    let mut f = 0;
    if r & mask(size) == 0 {
        f |= ZF;
    }
    if r & sign_bit(size) != 0 {
        f |= SF;
    }
    if (r as u8).count_ones().is_multiple_of(2) {
        f |= PF;
    }
    f
}

/// A result and the status flags it defines. Flags the SDM leaves undefined are 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AluResult {
    pub value: u64,
    pub flags: u64,
}

/// ADD / ADC: `a + b + carry`.
pub(crate) fn add(a: u64, b: u64, carry: bool, size: usize) -> AluResult {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let wide = a as u128 + b as u128 + carry as u128;
    let r = (wide as u64) & m;
    let mut f = szp(r, size);
    if wide > m as u128 {
        f |= CF;
    }
    if (a ^ b ^ r) & 0x10 != 0 {
        f |= AF;
    }
    if (a ^ r) & (b ^ r) & sign_bit(size) != 0 {
        f |= OF;
    }
    AluResult { value: r, flags: f }
}

/// SUB / SBB / CMP: `a - b - borrow`.
pub(crate) fn sub(a: u64, b: u64, borrow: bool, size: usize) -> AluResult {
    let m = mask(size);
    let (a, b) = (a & m, b & m);
    let r = a.wrapping_sub(b).wrapping_sub(borrow as u64) & m;
    let mut f = szp(r, size);
    if (a as u128) < b as u128 + borrow as u128 {
        f |= CF;
    }
    if (a ^ b ^ r) & 0x10 != 0 {
        f |= AF;
    }
    if (a ^ b) & (a ^ r) & sign_bit(size) != 0 {
        f |= OF;
    }
    AluResult { value: r, flags: f }
}

/// AND / OR / XOR / TEST: OF = CF = 0; AF undefined.
pub(crate) fn logic(r: u64, size: usize) -> AluResult {
    let r = r & mask(size);
    AluResult {
        value: r,
        flags: szp(r, size),
    }
}

/// NEG: `0 - a`, CF = (a != 0).
pub(crate) fn neg(a: u64, size: usize) -> AluResult {
    sub(0, a, false, size)
}

/// Replace the status flags in `mask_bits` of `rflags` with those of `flags`.
pub(crate) fn merge(rflags: u64, flags: u64, mask_bits: u64) -> u64 {
    (rflags & !mask_bits) | (flags & mask_bits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn add_sets_carry_overflow_and_adjust() {
        let r = add(0x7F, 1, false, 1);
        assert_eq!(r.value, 0x80);
        assert_eq!(r.flags, OF | SF | AF);
        let r = add(0xFF, 1, false, 1);
        assert_eq!(r.value, 0);
        assert_eq!(r.flags, CF | ZF | PF | AF);
        let r = add(u64::MAX, 0, true, 8);
        assert_eq!(r.value, 0);
        assert_eq!(r.flags & CF, CF);
    }

    #[test]
    fn sub_borrow_and_overflow() {
        let r = sub(0, 1, false, 2);
        assert_eq!(r.value, 0xFFFF);
        assert_eq!(r.flags, CF | SF | PF | AF);
        let r = sub(0x8000_0000, 1, false, 4);
        assert_eq!(r.flags & OF, OF);
        let r = sub(5, 5, true, 4);
        assert_eq!(r.value, 0xFFFF_FFFF);
        assert_eq!(r.flags & CF, CF);
    }

    #[test]
    fn neg_of_zero_clears_carry() {
        assert_eq!(neg(0, 4).flags & CF, 0);
        assert_eq!(neg(1, 4).flags & CF, CF);
        assert_eq!(neg(0x80, 1).flags & OF, OF);
    }

    #[test]
    fn sign_extend_each_size() {
        assert_eq!(sign_extend(0x80, 1), 0xFFFF_FFFF_FFFF_FF80);
        assert_eq!(sign_extend(0x7FFF, 2), 0x7FFF);
        assert_eq!(sign_extend(0x8000_0000, 4), 0xFFFF_FFFF_8000_0000);
        assert_eq!(sign_extend(5, 8), 5);
    }
}
