//! A descriptor ring as the base, length, head and tail registers describe
//! it (8254x SDM 3.2.6 receive, 3.4 transmit): descriptors from head up to
//! (not including) tail belong to the hardware; both wrap at the ring's end.

use super::regs::{DESC_LEN, RING_LEN_MASK};

#[derive(Default, Clone, Copy)]
pub struct Ring {
    pub bal: u32,
    pub bah: u32,
    /// RDLEN/TDLEN as read: bits 19:7 (13.4.28, 13.4.40).
    pub len: u32,
    pub head: u32,
    pub tail: u32,
}

impl Ring {
    /// The length register as written: bits 6:0 are ignored.
    pub fn write_len(&mut self, v: u32) {
        self.len = v & RING_LEN_MASK;
    }

    /// The ring's base address: 16-byte aligned, bits 3:0 of the low
    /// register are ignored (13.4.26).
    pub fn base(&self) -> u64 {
        (u64::from(self.bah) << 32 | u64::from(self.bal)) & !0xF
    }

    /// Descriptors in the ring.
    pub fn count(&self) -> u32 {
        (u64::from(self.len) / DESC_LEN) as u32
    }

    /// Whether the registers describe a ring the hardware can walk: at
    /// least one descriptor, head and tail inside it.
    pub fn usable(&self) -> bool {
        let n = self.count();
        n > 0 && self.head < n && self.tail < n
    }

    /// Descriptors the hardware owns (usable rings only).
    pub fn owned(&self) -> u32 {
        let n = self.count().max(1);
        (self.tail + n - self.head) % n
    }

    /// Address of descriptor `index`.
    pub fn descriptor(&self, index: u32) -> Option<u64> {
        self.base().checked_add(u64::from(index) * DESC_LEN)
    }

    /// Moves head past one descriptor.
    pub fn advance(&mut self) {
        let n = self.count().max(1);
        self.head = (self.head + 1) % n;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_low_bits_are_ignored_and_head_tail_wrap() {
        let mut r = Ring::default();
        r.write_len(0x1000 | 0x7F);
        assert_eq!(r.len, 0x1000);
        assert_eq!(r.count(), 256);
        r.write_len(0x7F);
        assert_eq!(r.count(), 0);
        assert!(!r.usable(), "an empty ring");
        r.write_len(128);
        r.head = 6;
        r.tail = 2;
        assert!(r.usable());
        assert_eq!(r.owned(), 4);
        r.advance();
        r.advance();
        assert_eq!(r.head, 0, "wraps at the end");
        r.tail = 8;
        assert!(!r.usable(), "tail beyond the ring");
        r.bal = 0x1234_567F;
        r.bah = 1;
        assert_eq!(r.base(), 0x1_1234_5670);
    }
}
