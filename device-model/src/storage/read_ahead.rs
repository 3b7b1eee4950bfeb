//! Read-ahead over a backend whose every access is a device request of its
//! own (the machine's virtio-blk disks under `phy:virtioN`): a read shorter
//! than the window fetches the whole window from its first sector, and the
//! reads that follow it are copies.
//!
//! Why: an ATA PIO read hands the guest one DRQ block at a time (ATA8-APT
//! 11.4, usually one sector), and each block is a read of its own from the
//! backend. SeaBIOS loads a boot loader's files that way (INT 13h over PIO),
//! so a host disk took one device request per sector: SYSLINUX loading
//! Debian's kernel and initramfs made about 20,000 of them, two seconds of a
//! boot under QEMU. Reads of a window or more, and every write, go straight
//! to the backend; writes also update the window, so it never holds sectors
//! older than the disk's.

use alloc::vec;
use alloc::vec::Vec;

use super::block::{sector_range, BlockBackend, BlockError, SECTOR_SIZE};

/// A backend with one read-ahead window of a fixed number of sectors.
pub struct ReadAhead<B> {
    inner: B,
    /// The window's bytes: `window_sectors` sectors, of which `valid` from
    /// sector `at` hold the disk's contents.
    window: Vec<u8>,
    at: u64,
    valid: usize,
}

impl<B: BlockBackend> ReadAhead<B> {
    /// Reads shorter than `window_sectors` sectors (at least one) fill the
    /// window.
    pub fn new(inner: B, window_sectors: usize) -> Self {
        ReadAhead {
            inner,
            window: vec![0; window_sectors.max(1) * SECTOR_SIZE],
            at: 0,
            valid: 0,
        }
    }

    fn window_sectors(&self) -> usize {
        self.window.len() / SECTOR_SIZE
    }

    /// The bytes of the window that hold `sectors` sectors from `lba`, if
    /// it holds all of them.
    fn cached(&self, lba: u64, sectors: usize) -> Option<core::ops::Range<usize>> {
        let first = lba.checked_sub(self.at)?;
        let end = first.checked_add(sectors as u64)?;
        if end > self.valid as u64 {
            return None;
        }
        Some(first as usize * SECTOR_SIZE..end as usize * SECTOR_SIZE)
    }
}

impl<B: BlockBackend> BlockBackend for ReadAhead<B> {
    fn name(&self) -> &str {
        self.inner.name()
    }

    fn capacity(&self) -> u64 {
        self.inner.capacity()
    }

    fn read_only(&self) -> bool {
        self.inner.read_only()
    }

    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let capacity = self.capacity();
        sector_range(self.name(), capacity, lba, buf.len())?;
        if buf.is_empty() {
            return Ok(());
        }
        let sectors = buf.len() / SECTOR_SIZE;
        if let Some(bytes) = self.cached(lba, sectors) {
            buf.copy_from_slice(&self.window[bytes]);
            return Ok(());
        }
        if sectors >= self.window_sectors() {
            return self.inner.read_sectors(lba, buf);
        }
        // `lba + sectors <= capacity` (checked above), so the fill holds
        // at least the request and ends at the disk's end at the latest.
        let fill = (capacity - lba).min(self.window_sectors() as u64) as usize;
        self.valid = 0;
        match self
            .inner
            .read_sectors(lba, &mut self.window[..fill * SECTOR_SIZE])
        {
            Ok(()) => {
                self.at = lba;
                self.valid = fill;
                buf.copy_from_slice(&self.window[..buf.len()]);
                Ok(())
            }
            // A sector past the request may be the unreadable one: the
            // request alone decides what the guest sees.
            Err(_) => self.inner.read_sectors(lba, buf),
        }
    }

    fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        let result = self.inner.write_sectors(lba, buf);
        if result.is_err() {
            // Part of it may have reached the disk.
            self.valid = 0;
            return result;
        }
        let sectors = (buf.len() / SECTOR_SIZE) as u64;
        let window_end = self.at + self.valid as u64;
        let (from, to) = (
            lba.max(self.at),
            lba.saturating_add(sectors).min(window_end),
        );
        if from < to {
            let src = (from - lba) as usize * SECTOR_SIZE..(to - lba) as usize * SECTOR_SIZE;
            let dst = (from - self.at) as usize * SECTOR_SIZE;
            self.window[dst..dst + src.len()].copy_from_slice(&buf[src]);
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.inner.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::RamDisk;
    use alloc::string::String;

    /// A RAM disk that counts the reads it is asked for and can fail one
    /// sector, as a host disk with a bad block would.
    struct Counted {
        disk: RamDisk,
        reads: usize,
        bad: Option<u64>,
    }

    impl BlockBackend for Counted {
        fn name(&self) -> &str {
            self.disk.name()
        }
        fn capacity(&self) -> u64 {
            self.disk.capacity()
        }
        fn read_only(&self) -> bool {
            false
        }
        fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
            self.reads += 1;
            let sectors = (buf.len() / SECTOR_SIZE) as u64;
            if self.bad.is_some_and(|b| (lba..lba + sectors).contains(&b)) {
                return Err(BlockError::Io {
                    image: String::from("d"),
                    op: "read",
                    lba: Some(lba),
                    sectors,
                    cause: String::from("bad block"),
                });
            }
            self.disk.read_sectors(lba, buf)
        }
        fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
            self.disk.write_sectors(lba, buf)
        }
        fn flush(&mut self) -> Result<(), BlockError> {
            Ok(())
        }
    }

    /// A 64-sector disk whose every byte is its sector number.
    fn disk() -> ReadAhead<Counted> {
        let bytes = (0..64u8)
            .flat_map(|s| core::iter::repeat_n(s, SECTOR_SIZE))
            .collect();
        let disk = RamDisk::new("d", bytes).unwrap();
        ReadAhead::new(
            Counted {
                disk,
                reads: 0,
                bad: None,
            },
            16,
        )
    }

    fn read(d: &mut ReadAhead<Counted>, lba: u64, sectors: usize) -> Vec<u8> {
        let mut buf = vec![0xEE; sectors * SECTOR_SIZE];
        d.read_sectors(lba, &mut buf).unwrap();
        buf
    }

    fn sector_of(buf: &[u8], i: usize) -> u8 {
        buf[i * SECTOR_SIZE]
    }

    #[test]
    fn sector_by_sector_reads_cost_one_backend_read_a_window() {
        let mut d = disk();
        for lba in 3..35 {
            let b = read(&mut d, lba, 1);
            assert!(b.iter().all(|&x| x == lba as u8), "sector {lba}");
        }
        assert_eq!(d.inner.reads, 2, "sectors 3..35 are two 16-sector windows");
    }

    #[test]
    fn a_window_or_more_goes_straight_to_the_backend() {
        let mut d = disk();
        let b = read(&mut d, 10, 20);
        assert_eq!((sector_of(&b, 0), sector_of(&b, 19)), (10, 29));
        read(&mut d, 10, 1);
        assert_eq!(d.inner.reads, 2, "the long read did not fill the window");
    }

    #[test]
    fn the_window_stops_at_the_end_of_the_disk() {
        let mut d = disk();
        let b = read(&mut d, 60, 2);
        assert_eq!((sector_of(&b, 0), sector_of(&b, 1)), (60, 61));
        assert_eq!(read(&mut d, 63, 1)[0], 63);
        assert_eq!(d.inner.reads, 1);
        d.read_sectors(10, &mut []).unwrap();
        assert_eq!(d.inner.reads, 1, "an empty read reads nothing");
        let e = d.read_sectors(63, &mut [0; 1024]).unwrap_err();
        assert!(matches!(e, BlockError::PastEnd { .. }), "{e:?}");
    }

    #[test]
    fn writes_reach_the_disk_and_the_window() {
        let mut d = disk();
        read(&mut d, 8, 1); // window 8..24
        d.write_sectors(6, &[0xAB; 4 * SECTOR_SIZE]).unwrap(); // 6..10
        d.write_sectors(23, &[0xCD; 2 * SECTOR_SIZE]).unwrap(); // 23..25
        let mut on_disk = vec![0; 16 * SECTOR_SIZE];
        d.inner.disk.read_sectors(8, &mut on_disk).unwrap();
        for (i, want) in [(0, 0xAB), (1, 0xAB), (2, 10), (14, 22), (15, 0xCD)] {
            assert_eq!(sector_of(&on_disk, i), want, "disk sector {}", 8 + i);
            assert_eq!(
                read(&mut d, 8 + i as u64, 1)[0],
                want,
                "window sector {}",
                8 + i
            );
        }
        assert_eq!(d.inner.reads, 1, "all from the window");
        assert_eq!(read(&mut d, 24, 1)[0], 0xCD);
    }

    #[test]
    fn a_bad_block_past_the_request_does_not_fail_it() {
        let mut d = disk();
        d.inner.bad = Some(12);
        assert_eq!(read(&mut d, 10, 1)[0], 10);
        let e = d.read_sectors(12, &mut [0; SECTOR_SIZE]).unwrap_err();
        assert!(matches!(e, BlockError::Io { .. }), "{e:?}");
        d.inner.bad = None;
        assert_eq!(read(&mut d, 12, 1)[0], 12, "nothing stale was kept");
    }
}
