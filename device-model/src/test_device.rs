//! Keel's MMIO test device: a page of scratch memory behind the bus, for the
//! guest that checks the instruction emulator (enabled with `keel_testdev = 1`).
//!
//! Offsets 0x000-0xEFF read back what was written, at any width. Two read-only
//! registers let the guest see how its instructions reached the device:
//! `ACCESS_COUNT` (0xF00, 32-bit) counts accesses to the scratch area, and
//! `LAST_ACCESS` (0xF04, 32-bit) holds the last one's size in bytes (bits 7:0)
//! and whether it was a write (bit 8). Other offsets read as zero, writes to
//! them are ignored.

use crate::bus::BusDevice;

/// Where Keel places the device: a page in the PCI hole that nothing else uses.
pub const TEST_DEVICE_BASE: u64 = 0xfeb0_0000;
/// One page.
pub const TEST_DEVICE_LEN: u64 = 0x1000;
const SCRATCH_LEN: usize = 0xf00;
const ACCESS_COUNT: u64 = 0xf00;
const LAST_ACCESS: u64 = 0xf04;

/// The scratch MMIO device.
pub struct ScratchMmio {
    scratch: [u8; SCRATCH_LEN],
    count: u32,
    last: u32,
}

impl Default for ScratchMmio {
    fn default() -> Self {
        ScratchMmio {
            scratch: [0; SCRATCH_LEN],
            count: 0,
            last: 0,
        }
    }
}

impl ScratchMmio {
    fn record(&mut self, len: usize, write: bool) {
        self.count = self.count.wrapping_add(1);
        self.last = (len as u32 & 0xff) | if write { 1 << 8 } else { 0 };
    }

    fn register(&self, offset: u64) -> Option<[u8; 4]> {
        match offset {
            ACCESS_COUNT => Some(self.count.to_le_bytes()),
            LAST_ACCESS => Some(self.last.to_le_bytes()),
            _ => None,
        }
    }
}

impl BusDevice for ScratchMmio {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let start = offset as usize;
        if let Some(src) = self.scratch.get(start..start.saturating_add(data.len())) {
            data.copy_from_slice(src);
            self.record(data.len(), false);
            return;
        }
        data.fill(0);
        // Registers: bytes of the 32-bit register the access starts in.
        let reg_base = offset & !3;
        if let Some(bytes) = self.register(reg_base) {
            let skip = (offset - reg_base) as usize;
            for (d, s) in data.iter_mut().zip(bytes.iter().skip(skip)) {
                *d = *s;
            }
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let start = offset as usize;
        if let Some(dst) = self
            .scratch
            .get_mut(start..start.saturating_add(data.len()))
        {
            dst.copy_from_slice(data);
            self.record(data.len(), true);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scratch_reads_back_and_counts() {
        let mut d = ScratchMmio::default();
        d.write(
            TEST_DEVICE_BASE,
            0x10,
            &0x1122_3344_5566_7788u64.to_le_bytes(),
        );
        let mut b = [0u8; 2];
        d.read(TEST_DEVICE_BASE, 0x12, &mut b);
        assert_eq!(b, [0x66, 0x55]);
        let mut r = [0u8; 4];
        d.read(TEST_DEVICE_BASE, ACCESS_COUNT, &mut r);
        assert_eq!(u32::from_le_bytes(r), 2);
        d.read(TEST_DEVICE_BASE, LAST_ACCESS, &mut r);
        assert_eq!(u32::from_le_bytes(r), 2, "a 2-byte read");
        d.write(TEST_DEVICE_BASE, 0, &[1]);
        d.read(TEST_DEVICE_BASE, LAST_ACCESS, &mut r);
        assert_eq!(u32::from_le_bytes(r), 0x101, "a 1-byte write");
        let mut one = [0u8; 1];
        d.read(TEST_DEVICE_BASE, ACCESS_COUNT + 1, &mut one);
        assert_eq!(one, [0], "byte 1 of the count (3)");
    }

    #[test]
    fn registers_are_read_only_and_the_rest_reads_zero() {
        let mut d = ScratchMmio::default();
        d.write(TEST_DEVICE_BASE, ACCESS_COUNT, &[9, 9, 9, 9]);
        d.write(TEST_DEVICE_BASE, 0xeff, &[1, 2]); // straddles the end of scratch: ignored
        let mut r = [0xffu8; 8];
        d.read(TEST_DEVICE_BASE, ACCESS_COUNT, &mut r[..4]);
        assert_eq!(r[..4], [0, 0, 0, 0]);
        d.read(TEST_DEVICE_BASE, 0xff8, &mut r);
        assert_eq!(r, [0; 8]);
        d.read(TEST_DEVICE_BASE, u64::MAX, &mut r[..1]);
        assert_eq!(r[0], 0);
    }
}
