//! The block backend an emulated disk or CD-ROM reads and writes: a flat
//! array of 512-byte sectors.
//!
//! Errors are values that name the image and the sector, so a log line tells
//! a user which image is too small or read-only. The device models map them
//! to the error bits their command sets define (ATA8-ACS 6.2 error register,
//! SPC-4 4.5.6 sense keys); a backend never panics on an address a guest chose.

use alloc::string::String;
use core::fmt;

/// Bytes per sector of every [`BlockBackend`]. A CD-ROM's 2048-byte blocks
/// are four of them.
pub const SECTOR_SIZE: usize = 512;

/// Why a backend refused an access.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlockError {
    /// `[lba, lba + sectors)` does not fit in the image.
    PastEnd {
        image: String,
        lba: u64,
        sectors: u64,
        capacity: u64,
    },
    /// The buffer is not a whole number of sectors.
    Unaligned { image: String, len: usize },
    /// A write to an image that only allows reads.
    ReadOnly { image: String, lba: u64 },
    /// The image bytes cannot form a disk (not a whole number of sectors).
    BadImageSize { image: String, len: u64 },
    /// The device under the image failed an access (a host disk's I/O
    /// error): `op` is "read" or "write" of `sectors` at `lba`, or "flush"
    /// (no LBA).
    Io {
        image: String,
        op: &'static str,
        lba: Option<u64>,
        sectors: u64,
        cause: String,
    },
}

impl fmt::Display for BlockError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BlockError::PastEnd {
                image,
                lba,
                sectors,
                capacity,
            } => write!(
                f,
                "disk image '{image}' holds {capacity} sectors ({} KiB); a {sectors}-sector access at LBA {lba} is past its end",
                capacity / 2
            ),
            BlockError::Unaligned { image, len } => write!(
                f,
                "disk image '{image}': a transfer of {len} bytes is not a whole number of {SECTOR_SIZE}-byte sectors"
            ),
            BlockError::ReadOnly { image, lba } => write!(
                f,
                "disk image '{image}' is read-only; the write at LBA {lba} was refused"
            ),
            BlockError::BadImageSize { image, len } => write!(
                f,
                "disk image '{image}' is {len} bytes, not a whole number of {SECTOR_SIZE}-byte sectors; pad it to a multiple of {SECTOR_SIZE}"
            ),
            BlockError::Io {
                image,
                op,
                lba: Some(lba),
                sectors,
                cause,
            } => write!(
                f,
                "disk '{image}': the {op} of {sectors} sectors at LBA {lba} failed: {cause}"
            ),
            BlockError::Io {
                image,
                op,
                lba: None,
                cause,
                ..
            } => write!(f, "disk '{image}': the {op} failed: {cause}"),
        }
    }
}

/// A disk image: `capacity()` sectors of [`SECTOR_SIZE`] bytes.
pub trait BlockBackend: Send {
    /// The image's name, for error messages.
    fn name(&self) -> &str;
    /// Size in sectors.
    fn capacity(&self) -> u64;
    /// Always [`SECTOR_SIZE`].
    fn sector_size(&self) -> usize {
        SECTOR_SIZE
    }
    /// Whether writes are refused.
    fn read_only(&self) -> bool;
    /// Reads `buf.len() / 512` sectors starting at `lba`.
    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError>;
    /// The `len` bytes from sector `lba` in place, for a backend that holds
    /// its image in memory, so a DMA read copies them into the guest once
    /// instead of through a buffer. `None` (the default, and for a range
    /// past the end): use [`BlockBackend::read_sectors`].
    fn sectors(&self, _lba: u64, _len: usize) -> Option<&[u8]> {
        None
    }
    /// The `len` bytes from sector `lba` in place, to be overwritten, for a
    /// backend that holds its image in memory, so a DMA write copies the
    /// guest's data into them once instead of through a buffer. `None` (the
    /// default, for a range past the end, and for a backend that refuses
    /// writes): use [`BlockBackend::write_sectors`].
    fn sectors_mut(&mut self, _lba: u64, _len: usize) -> Option<&mut [u8]> {
        None
    }
    /// Writes `buf.len() / 512` sectors starting at `lba`.
    fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError>;
    /// Makes every completed write durable.
    fn flush(&mut self) -> Result<(), BlockError>;
}

/// A boxed backend is a backend, so wrappers such as
/// [`ReadOnly`](super::ReadOnly) take one whose type the configuration chose.
impl<B: BlockBackend + ?Sized> BlockBackend for alloc::boxed::Box<B> {
    fn name(&self) -> &str {
        (**self).name()
    }
    fn capacity(&self) -> u64 {
        (**self).capacity()
    }
    fn read_only(&self) -> bool {
        (**self).read_only()
    }
    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        (**self).read_sectors(lba, buf)
    }
    fn sectors(&self, lba: u64, len: usize) -> Option<&[u8]> {
        (**self).sectors(lba, len)
    }
    fn sectors_mut(&mut self, lba: u64, len: usize) -> Option<&mut [u8]> {
        (**self).sectors_mut(lba, len)
    }
    fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        (**self).write_sectors(lba, buf)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        (**self).flush()
    }
}

/// The byte range `[lba * 512, (lba + len/512) * 512)` of an image of
/// `capacity` sectors, or the error naming the image: the bounds check every
/// backend makes before it touches its medium.
pub fn sector_range(
    image: &str,
    capacity: u64,
    lba: u64,
    len: usize,
) -> Result<core::ops::Range<usize>, BlockError> {
    if !len.is_multiple_of(SECTOR_SIZE) {
        return Err(BlockError::Unaligned {
            image: image.into(),
            len,
        });
    }
    let sectors = (len / SECTOR_SIZE) as u64;
    let past_end = || BlockError::PastEnd {
        image: image.into(),
        lba,
        sectors,
        capacity,
    };
    let end = lba.checked_add(sectors).ok_or_else(past_end)?;
    if end > capacity {
        return Err(past_end());
    }
    let start = usize::try_from(lba * SECTOR_SIZE as u64).map_err(|_| past_end())?;
    Ok(start..start + len)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn device_errors_name_the_disk_the_operation_and_the_lba() {
        let read = BlockError::Io {
            image: "virtio0".into(),
            op: "read",
            lba: Some(4096),
            sectors: 8,
            cause: "I/O error".into(),
        };
        assert_eq!(
            read.to_string(),
            "disk 'virtio0': the read of 8 sectors at LBA 4096 failed: I/O error"
        );
        let flush = BlockError::Io {
            image: "virtio1".into(),
            op: "flush",
            lba: None,
            sectors: 0,
            cause: "Device not ready".into(),
        };
        assert_eq!(
            flush.to_string(),
            "disk 'virtio1': the flush failed: Device not ready"
        );
    }

    #[test]
    fn sector_ranges_are_checked_against_the_capacity() {
        assert_eq!(sector_range("d", 8, 2, 1024), Ok(1024..2048));
        assert_eq!(sector_range("d", 8, 8, 0), Ok(4096..4096));
        assert!(matches!(
            sector_range("d", 8, 7, 1024),
            Err(BlockError::PastEnd {
                lba: 7,
                sectors: 2,
                ..
            })
        ));
        assert!(matches!(
            sector_range("d", 8, 0, 100),
            Err(BlockError::Unaligned { len: 100, .. })
        ));
        assert!(sector_range("d", u64::MAX, u64::MAX, 512).is_err());
    }
}
