//! The physical frame allocator.
//!
//! Built once from the firmware memory map: only `Available` RAM is used, and
//! everything Keel must never hand out (its own image, the boot modules, the
//! multiboot information, the first MiB with the BIOS data and EBDA) is cut out
//! first. Allocations are first-fit over a sorted list of free ranges, with the
//! alignment the caller asks for (2 MiB for guest RAM, so nested paging can use
//! large pages).

use alloc::vec::Vec;
use core::ops::Range;

/// The 4 KiB frame size.
pub const FRAME_SIZE: u64 = 4096;
/// Memory below 1 MiB is never handed out: real-mode structures and firmware live there.
pub const LOW_MEMORY_END: u64 = 0x10_0000;

/// Free host-physical memory, as sorted, disjoint, frame-aligned ranges.
#[derive(Debug, Clone, Default)]
pub struct FrameAllocator {
    free: Vec<Range<u64>>,
}

impl FrameAllocator {
    /// The allocator for `available` RAM minus `reserved` ranges (both in any order,
    /// possibly overlapping).
    pub fn new(available: impl IntoIterator<Item = Range<u64>>, reserved: &[Range<u64>]) -> Self {
        let mut free: Vec<Range<u64>> = available
            .into_iter()
            .filter_map(|r| {
                // Shrink inward to whole frames.
                let start = r
                    .start
                    .max(LOW_MEMORY_END)
                    .checked_next_multiple_of(FRAME_SIZE)?;
                let end = r.end & !(FRAME_SIZE - 1);
                (start < end).then_some(start..end)
            })
            .collect();
        free.sort_by_key(|r| r.start);
        // Merge overlapping or touching ranges.
        let mut merged: Vec<Range<u64>> = Vec::new();
        for r in free {
            match merged.last_mut() {
                Some(last) if r.start <= last.end => last.end = last.end.max(r.end),
                _ => merged.push(r),
            }
        }
        let mut alloc = FrameAllocator { free: merged };
        for r in reserved {
            // Grow outward to whole frames.
            let start = r.start & !(FRAME_SIZE - 1);
            let end = r
                .end
                .checked_next_multiple_of(FRAME_SIZE)
                .unwrap_or(!(FRAME_SIZE - 1));
            alloc.remove(start..end);
        }
        alloc
    }

    /// Takes `cut` out of the free ranges.
    fn remove(&mut self, cut: Range<u64>) {
        if cut.start >= cut.end {
            return;
        }
        let mut out = Vec::with_capacity(self.free.len() + 1);
        for r in self.free.drain(..) {
            if r.end <= cut.start || cut.end <= r.start {
                out.push(r);
                continue;
            }
            if r.start < cut.start {
                out.push(r.start..cut.start);
            }
            if cut.end < r.end {
                out.push(cut.end..r.end);
            }
        }
        self.free = out;
    }

    /// `size` bytes of contiguous memory aligned to `align` (a power of two, at
    /// least a frame), or `None` if no free range can hold them.
    pub fn alloc_contiguous(&mut self, size: u64, align: u64) -> Option<u64> {
        if size == 0 || !align.is_power_of_two() {
            return None;
        }
        let align = align.max(FRAME_SIZE);
        let size = size.checked_next_multiple_of(FRAME_SIZE)?;
        let start = self.free.iter().find_map(|r| {
            let start = r.start.checked_next_multiple_of(align)?;
            let end = start.checked_add(size)?;
            (end <= r.end).then_some(start)
        })?;
        self.remove(start..start + size);
        Some(start)
    }

    /// One 4 KiB frame.
    pub fn alloc_frame(&mut self) -> Option<u64> {
        self.alloc_contiguous(FRAME_SIZE, FRAME_SIZE)
    }

    /// Bytes still free.
    pub fn free_bytes(&self) -> u64 {
        self.free.iter().map(|r| r.end - r.start).sum()
    }

    /// The free ranges, sorted by address.
    pub fn free_ranges(&self) -> &[Range<u64>] {
        &self.free
    }
}

#[cfg(test)]
// Memory maps of one range are the point of some of these tests.
#[allow(clippy::single_range_in_vec_init)]
mod tests {
    use super::*;

    const MIB: u64 = 1 << 20;

    #[test]
    fn excludes_low_memory_and_reserved_ranges() {
        let keel = 2 * MIB..2 * MIB + 0x5_3000;
        let module = 0x25_6123..0x26_0001;
        let mut a = FrameAllocator::new(
            [0..0x9_fc00, MIB..128 * MIB],
            &[keel.clone(), module.clone()],
        );
        assert_eq!(
            a.free_ranges(),
            &[MIB..2 * MIB, 0x25_3000..0x25_6000, 0x26_1000..128 * MIB]
        );
        let mut got = Vec::new();
        while let Some(f) = a.alloc_frame() {
            assert!(f >= LOW_MEMORY_END);
            assert!(!(keel.start..keel.end).contains(&f), "{f:#x} is Keel's");
            assert!(
                !(0x25_6000..0x26_1000).contains(&f),
                "{f:#x} is the module's"
            );
            got.push(f);
        }
        assert_eq!(
            got.len() as u64,
            (128 * MIB - MIB) / FRAME_SIZE - 0x53 - 0xb
        );
        assert_eq!(a.free_bytes(), 0);
    }

    #[test]
    fn contiguous_allocations_are_aligned_and_disjoint() {
        let mut a = FrameAllocator::new([MIB + 0x3000..64 * MIB], &[]);
        let ram = a.alloc_contiguous(16 * MIB, 2 * MIB).unwrap();
        assert_eq!(ram % (2 * MIB), 0);
        assert_eq!(ram, 2 * MIB);
        let f = a.alloc_frame().unwrap();
        assert_eq!(
            f,
            MIB + 0x3000,
            "the gap before the aligned block is still used"
        );
        let ram2 = a.alloc_contiguous(16 * MIB, 2 * MIB).unwrap();
        assert!(ram2 >= ram + 16 * MIB);
        assert_eq!(a.alloc_contiguous(64 * MIB, FRAME_SIZE), None, "too big");
        assert_eq!(a.alloc_contiguous(0, FRAME_SIZE), None);
        assert_eq!(
            a.alloc_contiguous(FRAME_SIZE, 3),
            None,
            "alignment must be a power of two"
        );
        assert_eq!(a.alloc_contiguous(u64::MAX, FRAME_SIZE), None);
    }

    #[test]
    fn overlapping_and_unsorted_map_entries() {
        let a = FrameAllocator::new(
            [
                10 * MIB..20 * MIB,
                2 * MIB..12 * MIB,
                20 * MIB..21 * MIB + 5,
            ],
            &[],
        );
        assert_eq!(a.free_ranges(), &[2 * MIB..21 * MIB]);
        let b = FrameAllocator::new([u64::MAX - 10..u64::MAX], &[0..u64::MAX]);
        assert_eq!(b.free_bytes(), 0);
    }
}
