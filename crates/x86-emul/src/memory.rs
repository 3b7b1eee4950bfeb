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
/// Calls never cross a 4 KiB boundary and are at most 16 bytes long.
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
}
