//! Splitting a sector transfer into device requests: a host disk request
//! carries at most a fixed number of sectors, so one guest transfer of any
//! length becomes a run of requests over consecutive LBAs.

use core::ops::Range;

/// The requests for `len` bytes (whole 512-byte sectors) starting at `lba`,
/// each at most `max_sectors` long: `(first LBA, byte range of the buffer)`.
pub fn split(
    lba: u64,
    len: usize,
    max_sectors: usize,
) -> impl Iterator<Item = (u64, Range<usize>)> {
    const SECTOR: usize = 512;
    let step = max_sectors.max(1) * SECTOR;
    (0..len).step_by(step).map(move |start| {
        let end = (start + step).min(len);
        (lba + (start / SECTOR) as u64, start..end)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    #[test]
    fn a_long_transfer_becomes_consecutive_requests() {
        let r: Vec<_> = split(100, 300 * 512, 128).collect();
        assert_eq!(
            r,
            [
                (100, 0..128 * 512),
                (228, 128 * 512..256 * 512),
                (356, 256 * 512..300 * 512)
            ]
        );
    }

    #[test]
    fn short_exact_and_empty_transfers() {
        assert_eq!(split(7, 512, 128).collect::<Vec<_>>(), [(7, 0..512)]);
        assert_eq!(
            split(0, 256 * 512, 128).count(),
            2,
            "two full requests, no empty third"
        );
        assert_eq!(split(0, 0, 128).count(), 0);
        assert_eq!(
            split(5, 1024, 0).collect::<Vec<_>>(),
            [(5, 0..512), (6, 512..1024)],
            "a zero limit still makes progress"
        );
    }
}
