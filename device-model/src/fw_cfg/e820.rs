//! The guest's RAM map as `etc/e820`: what SeaBIOS starts its e820 table
//! (INT 15h E820h) from.
//!
//! Format (QEMU's `struct e820_entry`): per entry a little-endian u64
//! address, u64 length, u32 type; 20 bytes, no padding, no count (the file
//! size gives it). Like QEMU's `pc` machine, Keel lists only RAM: one entry
//! below 4 GiB from 0 (SeaBIOS reserves the legacy holes below 1 MiB
//! itself) and one from 4 GiB for the RAM above the PCI hole.

use alloc::vec::Vec;

/// 4 GiB: where RAM continues above the PCI hole.
pub const FOUR_GIB: u64 = 1 << 32;

/// Above this much RAM, QEMU's i440FX machine keeps only 3 GiB below 4 GiB
/// (the rest goes above), leaving 1 GiB for the PCI hole (gigabyte-aligned split).
pub const QEMU_PC_LOWMEM_LIMIT: u64 = 0xE000_0000;
/// RAM below 4 GiB once the limit above is reached.
pub const QEMU_PC_LOWMEM_SPLIT: u64 = 0xC000_0000;

/// An e820 region type (ACPI 6.5 15.1, table 15.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum E820Type {
    Ram = 1,
    Reserved = 2,
    Acpi = 3,
    Nvs = 4,
}

/// One entry of the map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct E820Entry {
    pub addr: u64,
    pub len: u64,
    pub kind: E820Type,
}

impl E820Entry {
    /// The 20-byte little-endian encoding.
    pub fn to_bytes(&self) -> [u8; 20] {
        let mut b = [0u8; 20];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.len.to_le_bytes());
        b[16..20].copy_from_slice(&(self.kind as u32).to_le_bytes());
        b
    }
}

/// Where a VM's RAM sits in guest-physical space: `[0, below_4g)` and
/// `[4 GiB, 4 GiB + above_4g)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RamLayout {
    pub below_4g: u64,
    pub above_4g: u64,
}

impl RamLayout {
    /// The split QEMU's `pc` machine makes for `ram` bytes: everything below
    /// 4 GiB while `ram` is under 3.5 GiB, else 3 GiB below and the rest above.
    pub fn qemu_pc(ram: u64) -> Self {
        let below = if ram >= QEMU_PC_LOWMEM_LIMIT {
            QEMU_PC_LOWMEM_SPLIT
        } else {
            ram
        };
        RamLayout {
            below_4g: below,
            above_4g: ram - below,
        }
    }

    /// Total RAM.
    pub fn total(&self) -> u64 {
        self.below_4g.saturating_add(self.above_4g)
    }

    /// The map's entries: RAM below 4 GiB, RAM above (each only if non-empty).
    pub fn entries(&self) -> Vec<E820Entry> {
        let mut v = Vec::with_capacity(2);
        if self.below_4g > 0 {
            v.push(E820Entry {
                addr: 0,
                len: self.below_4g,
                kind: E820Type::Ram,
            });
        }
        if self.above_4g > 0 {
            v.push(E820Entry {
                addr: FOUR_GIB,
                len: self.above_4g,
                kind: E820Type::Ram,
            });
        }
        v
    }
}

/// The contents of `etc/e820` for `layout`.
pub fn build(layout: &RamLayout) -> Vec<u8> {
    layout.entries().iter().flat_map(|e| e.to_bytes()).collect()
}
