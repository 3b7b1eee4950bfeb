//! Changes to a guest's physical address map while it runs.
//!
//! The device model decides what a guest-physical range shows (the i440FX
//! PAM and SMRAM registers, a RAM-backed PCI BAR, a dirty log of a
//! framebuffer); the VMM owns the nested page tables that make it so. A
//! [`MemoryMapChange`] is the request between the two: the device model
//! queues it, the VM loop applies it to the nested tables before the vCPUs
//! run again (`vmm_core::paging::GuestPhysMap`). A request names memory by
//! [`Backing`], never by host address, so a device cannot point the guest at
//! memory that is not the VM's.

/// A host memory region a device owns (a framebuffer), allocated by the VMM
/// when the device is created; see `vmm_core::paging::GuestPhysMap::add_region`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HostRegionId(pub u32);

/// What memory a mapping shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backing {
    /// Guest RAM from RAM address `offset` on: the same address for the
    /// DRAM under the i440FX PAM segments and the SMRAM window; 1 MiB lower
    /// for the high memory area while the A20 gate is off.
    Ram { offset: u64 },
    /// The system BIOS ROM as the bus decodes it below 1 MiB: the firmware
    /// image ends at 1 MiB. Pages of the range the image does not cover go
    /// to the bus (MMIO), as on a PC where nothing answers there.
    BiosRom,
    /// `offset` bytes into a device's host region.
    Region { id: HostRegionId, offset: u64 },
}

/// What happens to a guest write into a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Writes {
    /// Writes reach the backing directly (no exit).
    Allowed,
    /// The mapping is read-only: a write exits and goes to the bus, where
    /// nothing claims it (dropped and counted as unclaimed).
    Dropped,
    /// The mapping is read-only: a write exits and is stored into guest RAM
    /// at the same address (i440FX PAM "read ROM, write DRAM").
    ToRam,
}

/// One change to the guest-physical map. Addresses and lengths are 4 KiB
/// aligned; a request that is not, or that names a range outside the VM's
/// guest-physical space, its RAM or the region, or the local APIC / IOAPIC
/// pages, is refused and logged by the VMM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemoryMapChange {
    /// `[gpa, gpa + len)` shows `backing` (replacing what was there).
    Map {
        gpa: u64,
        len: u64,
        backing: Backing,
        writes: Writes,
    },
    /// `[gpa, gpa + len)` goes to the bus: every access exits to the device model.
    Unmap { gpa: u64, len: u64 },
    /// Starts (`on`) or stops logging writes to the RAM in `[gpa, gpa + len)`.
    /// While on, the first write to each page exits once, marks the page
    /// dirty and makes it writable again; reading the log (`take_dirty`)
    /// write-protects the dirty pages again.
    DirtyLog { gpa: u64, len: u64, on: bool },
}
