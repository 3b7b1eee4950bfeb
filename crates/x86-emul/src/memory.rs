//! The guest-physical side: RAM for the page walker, RAM or a device for data, and
//! ports for INS/OUTS.

/// Why a physical or port access did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PhysError {
    /// Some byte of the range is not guest RAM. From [`PhysMemory`] this sends a data
    /// access to [`Memory::mmio_read`] / [`Memory::mmio_write`]; for a page-table entry
    /// it stops emulation with [`crate::Error::PageTableNotRam`].
    NotRam,
    /// Nothing can complete the access; emulation stops with [`crate::Error::Bus`].
    /// A bus that answers unclaimed addresses itself (all-ones reads, dropped writes)
    /// never returns this.
    Unhandled,
}

/// Guest-physical RAM: the page walker reads and updates paging-structure entries
/// through it, and the emulator tries it first for every data access and fetch.
///
/// Calls never cross a 4 KiB boundary and are at most 16 bytes long, except
/// the bulk `REP INS`/`REP OUTS` path ([`Memory::pio_read_string`]), whose
/// calls stay inside one 4 KiB page and move at most [`crate::STRING_IO_CHUNK`] bytes,
/// and the code fetch of [`crate::port_io_ahead`], at most 64 bytes.
pub trait PhysMemory {
    /// Fill `data` from guest-physical `gpa`, or `Err(NotRam)` if any byte is not RAM.
    fn read_phys(&mut self, gpa: u64, data: &mut [u8]) -> Result<(), PhysError>;
    /// Store `data` at guest-physical `gpa`, or `Err(NotRam)` (nothing written) if any
    /// byte is not RAM (or is read-only, such as a ROM the bus wants to see writes to).
    fn write_phys(&mut self, gpa: u64, data: &[u8]) -> Result<(), PhysError>;
}

/// Everything an emulated instruction can touch besides the vCPU: RAM, devices on the
/// MMIO bus, and the port I/O bus.
pub trait Memory: PhysMemory {
    /// A device read at guest-physical `gpa` of `data.len()` (1..=8) bytes, called after
    /// [`PhysMemory::read_phys`] said `NotRam`. Returns how many leading bytes it
    /// completed (1..=len): fewer than `len` when the access runs past the end of the
    /// device's region, and the emulator continues with the rest at `gpa + n`.
    fn mmio_read(&mut self, gpa: u64, data: &mut [u8]) -> Result<usize, PhysError>;
    /// A device write; the same contract as [`Memory::mmio_read`].
    fn mmio_write(&mut self, gpa: u64, data: &[u8]) -> Result<usize, PhysError>;
    /// `IN` of `data.len()` (1, 2 or 4) bytes from `port`, for INS.
    fn pio_read(&mut self, port: u16, data: &mut [u8]) -> Result<(), PhysError>;
    /// `OUT` of `data.len()` (1, 2 or 4) bytes to `port`, for OUTS.
    fn pio_write(&mut self, port: u16, data: &[u8]) -> Result<(), PhysError>;
    /// How many bytes (a multiple of `elem`, 1, 2 or 4) `port` would give
    /// (`write` false) or take (`write` true) now through
    /// [`Memory::pio_read_string`] / [`Memory::pio_write_string`], exactly
    /// as that many `elem`-byte `IN`s or `OUT`s in a row would: 0 when the
    /// port has no bulk path or the device nothing to move this way now
    /// (the emulator then goes element by element).
    fn pio_string_room(&mut self, _port: u16, _elem: usize, _write: bool) -> usize {
        0
    }
    /// `REP INS` served in bulk: fills the front of `data` (at most what
    /// [`Memory::pio_string_room`] said) as that many `elem`-byte `IN`s from
    /// `port` in a row would, and returns how many bytes it filled, a
    /// multiple of `elem`.
    fn pio_read_string(&mut self, _port: u16, _elem: usize, _data: &mut [u8]) -> usize {
        0
    }
    /// `REP OUTS` served in bulk: takes the front of `data` (at most what
    /// [`Memory::pio_string_room`] said) as that many `elem`-byte `OUT`s to
    /// `port` would; returns how many bytes it took, a multiple of `elem`.
    fn pio_write_string(&mut self, _port: u16, _elem: usize, _data: &[u8]) -> usize {
        0
    }
}
