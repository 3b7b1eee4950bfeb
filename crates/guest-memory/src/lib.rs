//! The one accessor for guest-physical memory.
//!
//! Everything in Keel that reads or writes a guest's RAM on the guest's behalf
//! (string I/O, DMA, firmware tables, image loading) goes through
//! [`GuestMemory`]. Every access is bounds-checked against the guest's RAM: an
//! address outside it is an error value, never a panic and never a touch of
//! memory that belongs to Keel or another guest.
#![no_std]

use core::fmt;

/// A guest-physical address.
pub type Gpa = u64;

/// Why a guest-memory access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMemoryError {
    /// `[gpa, gpa + len)` is not entirely inside guest RAM.
    OutOfRange { gpa: Gpa, len: usize, ram_size: u64 },
}

impl fmt::Display for GuestMemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GuestMemoryError::OutOfRange { gpa, len, ram_size } => write!(
                f,
                "guest-physical range {gpa:#x}+{len:#x} is outside the guest's {} KiB of RAM",
                ram_size / 1024
            ),
        }
    }
}

/// Read and write access to a guest's physical address space (RAM only).
pub trait GuestMemory {
    /// Size of guest RAM in bytes; RAM spans `[0, size)` of guest-physical space.
    fn size(&self) -> u64;
    /// Copies `buf.len()` bytes starting at `gpa` into `buf`.
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), GuestMemoryError>;
    /// Copies `buf` into guest memory starting at `gpa`.
    fn write(&mut self, gpa: Gpa, buf: &[u8]) -> Result<(), GuestMemoryError>;

    /// Reads a little-endian value of `N` bytes.
    fn read_le<const N: usize>(&self, gpa: Gpa) -> Result<[u8; N], GuestMemoryError>
    where
        Self: Sized,
    {
        let mut b = [0u8; N];
        self.read(gpa, &mut b)?;
        Ok(b)
    }
}

/// Guest RAM as one contiguous byte slice (host memory that Keel gave this guest).
pub struct GuestRam<'a> {
    bytes: &'a mut [u8],
}

impl<'a> GuestRam<'a> {
    /// Wraps the bytes that back guest-physical `[0, bytes.len())`.
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Self { bytes }
    }

    fn range(&self, gpa: Gpa, len: usize) -> Result<core::ops::Range<usize>, GuestMemoryError> {
        let err = GuestMemoryError::OutOfRange {
            gpa,
            len,
            ram_size: self.bytes.len() as u64,
        };
        let start = usize::try_from(gpa).map_err(|_| err)?;
        let end = start.checked_add(len).ok_or(err)?;
        if end > self.bytes.len() {
            return Err(err);
        }
        Ok(start..end)
    }

    /// The whole of guest RAM, for loaders that fill it before the guest runs.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        self.bytes
    }
}

impl GuestMemory for GuestRam<'_> {
    fn size(&self) -> u64 {
        self.bytes.len() as u64
    }

    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let r = self.range(gpa, buf.len())?;
        buf.copy_from_slice(&self.bytes[r]);
        Ok(())
    }

    fn write(&mut self, gpa: Gpa, buf: &[u8]) -> Result<(), GuestMemoryError> {
        let r = self.range(gpa, buf.len())?;
        self.bytes[r].copy_from_slice(buf);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::vec;

    #[test]
    fn reads_and_writes_inside_ram() {
        let mut backing = vec![0u8; 0x2000];
        let mut ram = GuestRam::new(&mut backing);
        ram.write(0x1ffc, &[1, 2, 3, 4]).unwrap();
        assert_eq!(ram.read_le::<4>(0x1ffc).unwrap(), [1, 2, 3, 4]);
        assert_eq!(ram.size(), 0x2000);
    }

    #[test]
    fn refuses_accesses_that_leave_ram() {
        let mut backing = vec![0u8; 0x1000];
        let mut ram = GuestRam::new(&mut backing);
        let err = ram.write(0xffe, &[0; 4]).unwrap_err();
        assert_eq!(
            err,
            GuestMemoryError::OutOfRange {
                gpa: 0xffe,
                len: 4,
                ram_size: 0x1000
            }
        );
        assert!(ram.read(u64::MAX, &mut [0; 1]).is_err());
        assert!(ram.read(u64::MAX - 1, &mut [0; 4]).is_err());
        assert!(
            ram.read(0x1000, &mut []).is_ok(),
            "an empty access at the end is in range"
        );
        assert!(ram.read(0x1001, &mut []).is_err());
    }
}
