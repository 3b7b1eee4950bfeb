//! The I/O and MSR bitmaps a VMX guest runs with (SDM Vol 3C 25.6.4, 25.6.9).

/// I/O bitmaps A (ports 0x0000-0x7FFF) and B (0x8000-0xFFFF), one bit per
/// port, set = exit. Two consecutive pages: A, then B.
pub type IoBitmaps = crate::port_bitmap::PortBitmap<{ 2 * 4096 }>;

/// Offset of I/O bitmap B from bitmap A.
pub const IO_BITMAP_B_OFFSET: u64 = 4096;

/// The MSR bitmap: read bitmaps for low (0-0x1FFF) and high (0xC0000000-0xC0001FFF)
/// MSRs, then write bitmaps for the same ranges; set = exit. MSRs outside both
/// ranges always exit.
#[repr(C, align(4096))]
pub struct MsrBitmap {
    bits: [u8; 4096],
}

const READ_LOW: usize = 0x000;
const READ_HIGH: usize = 0x400;
const WRITE_LOW: usize = 0x800;
const WRITE_HIGH: usize = 0xc00;

impl MsrBitmap {
    /// A bitmap that makes every RDMSR and WRMSR exit.
    pub fn intercept_all() -> Self {
        MsrBitmap { bits: [0xff; 4096] }
    }

    /// (read bitmap offset, write bitmap offset, bit index) for `msr`.
    fn position(msr: u32) -> Option<(usize, usize, usize)> {
        match msr {
            0..=0x1fff => Some((READ_LOW, WRITE_LOW, msr as usize)),
            0xc000_0000..=0xc000_1fff => {
                Some((READ_HIGH, WRITE_HIGH, (msr - 0xc000_0000) as usize))
            }
            _ => None,
        }
    }

    /// Lets the guest read and write `msr` without an exit; false for an MSR
    /// outside the bitmap's ranges (it keeps exiting).
    pub fn pass_through(&mut self, msr: u32) -> bool {
        self.pass(msr, true)
    }

    /// Lets the guest read `msr` without an exit; writes keep exiting.
    pub fn pass_through_reads(&mut self, msr: u32) -> bool {
        self.pass(msr, false)
    }

    fn pass(&mut self, msr: u32, writes: bool) -> bool {
        let Some((r, w, i)) = Self::position(msr) else {
            return false;
        };
        self.bits[r + i / 8] &= !(1 << (i % 8));
        if writes {
            self.bits[w + i / 8] &= !(1 << (i % 8));
        }
        true
    }

    /// (read exits, write exits) for `msr`.
    pub fn intercepts(&self, msr: u32) -> (bool, bool) {
        match Self::position(msr) {
            Some((r, w, i)) => (
                self.bits[r + i / 8] & (1 << (i % 8)) != 0,
                self.bits[w + i / 8] & (1 << (i % 8)) != 0,
            ),
            None => (true, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_bitmap_b_holds_the_high_ports() {
        let mut m = IoBitmaps::intercept_all();
        m.set_intercept(0x8000, false);
        assert_eq!(m.bits[4096], 0xfe, "port 0x8000 is bit 0 of bitmap B");
        assert!(m.intercepts(0x7fff) && m.intercepts(0xffff));
        m.set_intercept(0x3f9, false);
        assert_eq!(m.bits[0x7f], !(1 << 1));
    }

    #[test]
    fn msr_bitmap_positions_follow_the_sdm() {
        let mut m = MsrBitmap::intercept_all();
        assert!(m.pass_through(0x174)); // SYSENTER_CS: byte 0x2e, bit 4 of read-low and write-low
        assert_eq!(m.bits[0x2e], 0xef);
        assert_eq!(m.bits[0x800 + 0x2e], 0xef);
        assert!(m.pass_through(0xc000_0100)); // FS_BASE: byte 0x400 + 0x20, bit 0
        assert_eq!(m.bits[0x420], 0xfe);
        assert_eq!(m.bits[0xc20], 0xfe);
        assert!(m.pass_through_reads(0x10));
        assert_eq!(m.intercepts(0x10), (false, true));
        assert_eq!(m.intercepts(0xc000_0080), (true, true));
        assert!(!m.pass_through(0x4000_0000));
        assert_eq!(m.intercepts(0x4000_0000), (true, true));
    }
}
