//! The I/O-port bitmap both backends run guests with: one bit per port, set
//! means the access exits (SVM's IOPM, APM Vol 2 15.10.1; VMX's I/O bitmaps A
//! and B as two consecutive pages, SDM Vol 3C 25.6.4). Only the size differs:
//! SVM's map is 12 KiB so a multi-byte access at port 0xFFFF finds its bits.

/// A port bitmap of `BYTES` bytes, page-aligned for the CPU.
#[repr(C, align(4096))]
pub struct PortBitmap<const BYTES: usize> {
    pub(crate) bits: [u8; BYTES],
}

impl<const BYTES: usize> PortBitmap<BYTES> {
    /// A bitmap that makes every port access exit: all port I/O goes to the
    /// device model.
    pub fn intercept_all() -> Self {
        PortBitmap {
            bits: [0xff; BYTES],
        }
    }

    /// Whether an access to `port` exits.
    pub fn intercepts(&self, port: u16) -> bool {
        self.bits[usize::from(port / 8)] & (1 << (port % 8)) != 0
    }

    /// Lets the guest access `port` directly (`false`) or makes it exit (`true`).
    pub fn set_intercept(&mut self, port: u16, intercept: bool) {
        let (byte, bit) = (usize::from(port / 8), port % 8);
        if intercept {
            self.bits[byte] |= 1 << bit;
        } else {
            self.bits[byte] &= !(1 << bit);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_bit_per_port() {
        let mut m = PortBitmap::<{ 2 * 4096 }>::intercept_all();
        assert!(m.intercepts(0xffff) && m.intercepts(0));
        m.set_intercept(0x3f9, false);
        assert!(!m.intercepts(0x3f9));
        assert!(m.intercepts(0x3f8) && m.intercepts(0x3fa));
        assert_eq!(m.bits[0x3f9 / 8], !(1 << 1));
        m.set_intercept(0x3f9, true);
        assert!(m.intercepts(0x3f9));
        assert_eq!(core::mem::align_of::<PortBitmap<{ 3 * 4096 }>>(), 4096);
    }
}
