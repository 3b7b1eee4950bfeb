//! Logical to linear address translation with the segment checks of SDM Vol 3A 5.3
//! (limit), 5.5 (type), and 3.3.7.1 (canonical form in 64-bit mode).

use crate::cpu::{Mode, Segment, Sreg};
use crate::error::Exception;
use crate::paging::AccessKind;

/// The fault a segment check raises: #SS(0) for stack-segment references, #GP(0) for
/// the others.
fn fault(sreg: Sreg) -> Exception {
    if sreg == Sreg::Ss {
        Exception::StackSegmentFault(0)
    } else {
        Exception::GeneralProtection(0)
    }
}

/// Whether `linear` is canonical for 48-bit (or with LA57, 57-bit) linear addresses.
pub(crate) fn is_canonical(linear: u64, la57: bool) -> bool {
    let bits = if la57 { 57 } else { 48 };
    let shift = 64 - bits;
    (((linear << shift) as i64) >> shift) as u64 == linear
}

/// Linear address of the `size`-byte access at `offset` (already truncated to the
/// address size) through segment `sreg`.
pub(crate) fn linearize(
    mode: Mode,
    la57: bool,
    sreg: Sreg,
    seg: &Segment,
    offset: u64,
    size: usize,
    kind: AccessKind,
) -> Result<u64, Exception> {
    let last = offset.wrapping_add(size as u64 - 1);
    if mode == Mode::Long {
        let base = if matches!(sreg, Sreg::Fs | Sreg::Gs | Sreg::Tr) {
            seg.base
        } else {
            0
        };
        let linear = base.wrapping_add(offset);
        if !is_canonical(linear, la57) || !is_canonical(linear.wrapping_add(size as u64 - 1), la57)
        {
            return Err(fault(sreg));
        }
        return Ok(linear);
    }
    if matches!(mode, Mode::Protected | Mode::Compatibility) {
        if !seg.present() {
            return Err(fault(sreg));
        }
        let t = seg.seg_type();
        let code = t & 0x8 != 0;
        let type_ok = match kind {
            AccessKind::Fetch => true,
            // Code segments are never writable; data segments need W (type bit 1).
            AccessKind::Write => !code && t & 0x2 != 0,
            // Code segments need R (type bit 1) to be read.
            AccessKind::Read => !code || t & 0x2 != 0,
        };
        if !type_ok || (!seg.s() && sreg != Sreg::Tr) {
            return Err(fault(sreg));
        }
    }
    let expand_down =
        matches!(mode, Mode::Protected | Mode::Compatibility) && seg.seg_type() & 0xC == 0x4;
    let limit = u64::from(seg.limit);
    let within = if expand_down {
        let upper = if seg.db() { 0xFFFF_FFFF } else { 0xFFFF };
        offset > limit && last <= upper && last >= offset
    } else {
        last <= limit && last >= offset
    };
    if !within {
        return Err(fault(sreg));
    }
    Ok(seg.base.wrapping_add(offset) & 0xFFFF_FFFF)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seg(base: u64, limit: u32, attr: u16) -> Segment {
        Segment {
            selector: 0x10,
            base,
            limit,
            attr,
        }
    }
    const DATA_RW: u16 = 0x93 | 1 << 10;
    const DATA_RO: u16 = 0x91 | 1 << 10;
    const CODE_XO: u16 = 0x99 | 1 << 10;
    const CODE_XR: u16 = 0x9B | 1 << 10;

    #[test]
    fn real_mode_limit_and_wrap() {
        let s = seg(0xF_0000, 0xFFFF, 0x93);
        assert_eq!(
            linearize(Mode::Real, false, Sreg::Ds, &s, 0xFFFE, 2, AccessKind::Read),
            Ok(0xF_FFFE)
        );
        assert_eq!(
            linearize(Mode::Real, false, Sreg::Ds, &s, 0xFFFF, 2, AccessKind::Read),
            Err(Exception::GeneralProtection(0))
        );
        assert_eq!(
            linearize(Mode::Real, false, Sreg::Ss, &s, 0xFFFF, 2, AccessKind::Read),
            Err(Exception::StackSegmentFault(0))
        );
    }

    #[test]
    fn protected_types() {
        let p = Mode::Protected;
        let ro = seg(0, 0xFFFF_FFFF, DATA_RO);
        assert!(linearize(p, false, Sreg::Ds, &ro, 0, 4, AccessKind::Read).is_ok());
        assert_eq!(
            linearize(p, false, Sreg::Ds, &ro, 0, 4, AccessKind::Write),
            Err(Exception::GeneralProtection(0))
        );
        let xo = seg(0, 0xFFFF_FFFF, CODE_XO);
        assert!(linearize(p, false, Sreg::Cs, &xo, 0, 4, AccessKind::Read).is_err());
        let xr = seg(0, 0xFFFF_FFFF, CODE_XR);
        assert!(linearize(p, false, Sreg::Cs, &xr, 0, 4, AccessKind::Read).is_ok());
        assert!(linearize(p, false, Sreg::Cs, &xr, 0, 4, AccessKind::Write).is_err());
        let null = seg(0, 0xFFFF_FFFF, 0);
        assert!(linearize(p, false, Sreg::Es, &null, 0, 1, AccessKind::Read).is_err());
    }

    #[test]
    fn protected_limits_and_base_wrap() {
        let p = Mode::Protected;
        let s = seg(0x1000, 0xFFF, DATA_RW);
        assert_eq!(
            linearize(p, false, Sreg::Ds, &s, 0xFFC, 4, AccessKind::Read),
            Ok(0x1FFC)
        );
        assert!(linearize(p, false, Sreg::Ds, &s, 0xFFD, 4, AccessKind::Read).is_err());
        let flat = seg(0, 0xFFFF_FFFF, DATA_RW);
        assert!(linearize(p, false, Sreg::Ds, &flat, 0xFFFF_FFFE, 4, AccessKind::Read).is_err());
        let high = seg(0xFFFF_F000, 0xFFFF_FFFF, DATA_RW);
        assert_eq!(
            linearize(p, false, Sreg::Ds, &high, 0x2000, 4, AccessKind::Read),
            Ok(0x1000)
        );
        // Expand-down, 16-bit: valid offsets are (limit, 0xFFFF].
        let down = seg(0, 0x0FFF, 0x97);
        assert!(linearize(p, false, Sreg::Ss, &down, 0xFFF, 1, AccessKind::Read).is_err());
        assert!(linearize(p, false, Sreg::Ss, &down, 0x1000, 2, AccessKind::Write).is_ok());
        assert!(linearize(p, false, Sreg::Ss, &down, 0xFFFF, 2, AccessKind::Write).is_err());
    }

    #[test]
    fn long_mode_canonical() {
        let fs = seg(0x7FFF_FFFF_F000, 0, 0);
        assert_eq!(
            linearize(Mode::Long, false, Sreg::Fs, &fs, 0xFF8, 8, AccessKind::Read),
            Ok(0x7FFF_FFFF_FFF8)
        );
        assert_eq!(
            linearize(Mode::Long, false, Sreg::Fs, &fs, 0xFFC, 8, AccessKind::Read),
            Err(Exception::GeneralProtection(0))
        );
        assert_eq!(
            linearize(
                Mode::Long,
                false,
                Sreg::Ss,
                &fs,
                0x8000_0000_0000,
                8,
                AccessKind::Read
            ),
            Err(Exception::StackSegmentFault(0))
        );
        assert!(linearize(
            Mode::Long,
            true,
            Sreg::Ds,
            &fs,
            0x8000_0000_0000,
            8,
            AccessKind::Read
        )
        .is_ok());
        // DS base is ignored in 64-bit mode.
        assert_eq!(
            linearize(Mode::Long, false, Sreg::Ds, &fs, 0x10, 1, AccessKind::Write),
            Ok(0x10)
        );
    }
}
