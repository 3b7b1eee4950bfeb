//! The one accessor for guest-physical memory.
//!
//! Everything in Keel that reads or writes a guest's RAM on the guest's behalf
//! (instruction emulation, string I/O, DMA, firmware tables, image loading)
//! goes through [`GuestMemory`]. It shows the guest-physical memory the nested
//! page tables give the guest: RAM, and read-only aliases of parts of it (the
//! firmware image at the top of 4 GiB, [`RomAlias`]). Every access is
//! bounds-checked: an address outside them is an error value, never a panic
//! and never a touch of memory that belongs to Keel or another guest.
#![no_std]

use core::fmt;

mod map_change;
pub use map_change::{Backing, HostRegionId, MemoryMapChange, Writes};

/// A guest-physical address.
pub type Gpa = u64;

/// Why a guest-memory access was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMemoryError {
    /// `[gpa, gpa + len)` is not entirely inside guest RAM (or, for a read,
    /// inside one read-only alias).
    OutOfRange { gpa: Gpa, len: usize, ram_size: u64 },
    /// A read-only alias that is not inside RAM, or that overlaps RAM or another alias.
    BadAlias(RomAlias),
}

impl fmt::Display for GuestMemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GuestMemoryError::OutOfRange { gpa, len, ram_size } => write!(
                f,
                "guest-physical range {gpa:#x}+{len:#x} is outside the guest's {} KiB of RAM",
                ram_size / 1024
            ),
            GuestMemoryError::BadAlias(a) => write!(
                f,
                "read-only alias at {:#x} of RAM {:#x}+{:#x} must lie outside RAM and show RAM",
                a.gpa, a.ram, a.len
            ),
        }
    }
}

/// Read and write access to a guest's physical address space: RAM, and the
/// read-only aliases of it the guest sees.
pub trait GuestMemory {
    /// Size of guest RAM in bytes; RAM spans `[0, size)` of guest-physical space.
    fn size(&self) -> u64;
    /// Copies `buf.len()` bytes starting at `gpa` into `buf`, from RAM or from
    /// one read-only alias, as the guest reads them.
    fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), GuestMemoryError>;
    /// Copies `buf` into guest RAM starting at `gpa` (never into an alias:
    /// writes to ROM do not reach it).
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

/// A read-only view of `[ram, ram + len)` of guest RAM at guest-physical
/// `[gpa, gpa + len)`, as a PC shows its firmware ROM below 4 GiB as well as
/// below 1 MiB. The nested page tables map the same host pages there, read and
/// execute only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RomAlias {
    pub gpa: Gpa,
    pub ram: Gpa,
    pub len: u64,
}

impl RomAlias {
    /// The RAM address behind `[gpa, gpa + len)`, if it lies inside this alias.
    fn ram_behind(&self, gpa: Gpa, len: usize) -> Option<Gpa> {
        let offset = gpa.checked_sub(self.gpa)?;
        let end = offset.checked_add(len as u64)?;
        (end <= self.len).then_some(self.ram + offset)
    }
}

/// How many read-only aliases a guest's memory can have.
const MAX_ALIASES: usize = 2;

/// Guest RAM as one contiguous byte slice (host memory that Keel gave this
/// guest), with its read-only aliases.
pub struct GuestRam<'a> {
    bytes: &'a mut [u8],
    aliases: [Option<RomAlias>; MAX_ALIASES],
}

impl<'a> GuestRam<'a> {
    /// Wraps the bytes that back guest-physical `[0, bytes.len())`.
    pub fn new(bytes: &'a mut [u8]) -> Self {
        Self {
            bytes,
            aliases: [None; MAX_ALIASES],
        }
    }

    /// Shows `alias.ram..+len` of RAM, read-only, at `alias.gpa` too. The alias
    /// must lie outside RAM and every other alias, and show only RAM.
    pub fn map_rom_alias(&mut self, alias: RomAlias) -> Result<(), GuestMemoryError> {
        let bad = GuestMemoryError::BadAlias(alias);
        let len = usize::try_from(alias.len).map_err(|_| bad)?;
        let end = alias.gpa.checked_add(alias.len).ok_or(bad)?;
        let overlaps = |start: Gpa, other_end: Gpa| alias.gpa < other_end && start < end;
        if len == 0
            || self.range(alias.ram, len).is_err()
            || overlaps(0, self.size())
            || self
                .aliases
                .iter()
                .flatten()
                .any(|a| overlaps(a.gpa, a.gpa + a.len))
        {
            return Err(bad);
        }
        let slot = self.aliases.iter_mut().find(|a| a.is_none()).ok_or(bad)?;
        *slot = Some(alias);
        Ok(())
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
        let r = self.range(gpa, buf.len()).or_else(|e| {
            let ram = self
                .aliases
                .iter()
                .flatten()
                .find_map(|a| a.ram_behind(gpa, buf.len()))
                .ok_or(e)?;
            self.range(ram, buf.len())
        })?;
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

    /// The firmware's alias below 4 GiB reads as the RAM behind it, and is
    /// read-only; an access that leaves it is refused like one that leaves RAM.
    #[test]
    fn rom_alias_reads_the_ram_behind_it() {
        let mut backing = vec![0u8; 0x4000];
        let mut ram = GuestRam::new(&mut backing);
        ram.write(0x3ff0, b"reset vector 16b").unwrap();
        let rom = RomAlias {
            gpa: 0xffff_e000,
            ram: 0x2000,
            len: 0x2000,
        };
        ram.map_rom_alias(rom).unwrap();
        let mut b = [0u8; 16];
        ram.read(0xffff_fff0, &mut b).unwrap();
        assert_eq!(&b, b"reset vector 16b");
        assert!(ram.write(0xffff_fff0, &[0; 4]).is_err(), "read-only");
        assert_eq!(
            ram.read_le::<16>(0xffff_fff0).unwrap(),
            *b"reset vector 16b"
        );
        assert!(ram.read(0xffff_dfff, &mut [0; 2]).is_err(), "starts below");
        assert!(
            ram.read(0xffff_ffff, &mut [0; 2]).is_err(),
            "runs past 4 GiB"
        );
        assert!(ram.read(u64::MAX, &mut [0; 1]).is_err());
        // Aliases of RAM that is not there, over RAM, or over each other.
        let bad = [
            RomAlias {
                gpa: 0x10_0000,
                ram: 0x3000,
                len: 0x2000,
            },
            RomAlias {
                gpa: 0x3000,
                ram: 0,
                len: 0x1000,
            },
            RomAlias {
                gpa: 0xffff_f000,
                ram: 0,
                len: 0x1000,
            },
            RomAlias {
                gpa: u64::MAX,
                ram: 0,
                len: 0x1000,
            },
            RomAlias {
                gpa: 0x10_0000,
                ram: 0,
                len: 0,
            },
        ];
        for a in bad {
            assert_eq!(ram.map_rom_alias(a), Err(GuestMemoryError::BadAlias(a)));
        }
    }
}
