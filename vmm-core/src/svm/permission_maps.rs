//! The I/O and MSR permission maps an SVM guest runs with (APM Vol 2, 15.10 and 15.11).

/// I/O permission map: one bit per port, set = intercept; 12 KiB so that a
/// multi-byte access at port 0xFFFF also finds its bits.
pub type IoPermissionMap = crate::port_bitmap::PortBitmap<{ 3 * 4096 }>;

/// MSR permission map: two bits per MSR (read, write), set = intercept, for
/// three ranges of 8192 MSRs (APM Vol 2, Table 15-5). MSRs outside the ranges
/// are always intercepted.
#[repr(C, align(4096))]
pub struct MsrPermissionMap {
    bits: [u8; 2 * 4096],
}

const MSR_RANGES: [(u32, usize); 3] = [
    (0x0000_0000, 0x000),
    (0xc000_0000, 0x800),
    (0xc001_0000, 0x1000),
];

impl MsrPermissionMap {
    /// A map that intercepts every MSR access.
    pub fn intercept_all() -> Self {
        MsrPermissionMap {
            bits: [0xff; 2 * 4096],
        }
    }

    fn position(msr: u32) -> Option<(usize, u8)> {
        MSR_RANGES.iter().find_map(|&(base, offset)| {
            let i = msr.checked_sub(base)? as usize;
            (i < 0x2000).then_some((offset + i / 4, ((i % 4) * 2) as u8))
        })
    }

    /// Lets the guest read and write `msr` without an exit. Returns false for an
    /// MSR outside the map's ranges (it stays intercepted).
    pub fn pass_through(&mut self, msr: u32) -> bool {
        match Self::position(msr) {
            Some((byte, bit)) => {
                self.bits[byte] &= !(0b11 << bit);
                true
            }
            None => false,
        }
    }

    /// Lets the guest read `msr` without an exit; writes stay intercepted.
    pub fn pass_through_reads(&mut self, msr: u32) -> bool {
        match Self::position(msr) {
            Some((byte, bit)) => {
                self.bits[byte] &= !(1 << bit);
                true
            }
            None => false,
        }
    }

    /// (read intercepted, write intercepted) for `msr`.
    pub fn intercepts(&self, msr: u32) -> (bool, bool) {
        match Self::position(msr) {
            Some((byte, bit)) => (
                self.bits[byte] & (1 << bit) != 0,
                self.bits[byte] & (2 << bit) != 0,
            ),
            None => (true, true),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msrpm_positions_follow_the_apm_table() {
        let mut m = MsrPermissionMap::intercept_all();
        assert!(m.pass_through(0xc000_0082)); // LSTAR: byte 0x800 + 0x82/4 = 0x820, bits 4-5
        assert_eq!(m.bits[0x820], 0xcf);
        assert!(m.pass_through(0x277)); // PAT: byte 0x9d, bits 6-7
        assert_eq!(m.bits[0x9d], 0x3f);
        assert!(m.pass_through_reads(0x10)); // TSC: byte 4, bit 0
        assert_eq!(m.intercepts(0x10), (false, true));
        assert!(m.pass_through(0xc001_0015));
        assert_eq!(m.intercepts(0xc001_0015), (false, false));
        assert!(!m.pass_through(0x4000_0000), "outside every range");
        assert_eq!(m.intercepts(0x4000_0000), (true, true));
        assert_eq!(m.intercepts(0xc000_0080), (true, true));
    }
}
