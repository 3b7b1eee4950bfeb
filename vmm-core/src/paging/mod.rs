//! Nested paging: the guest-physical to host-physical tables (AMD NPT, Intel EPT).
//!
//! One builder, [`NestedPageTable`], writes 4-level tables for either hardware;
//! an [`EntryFormat`] says how a table pointer and a leaf look for that hardware.
//! The builder gets its table pages from a [`TableMemory`], so the hypervisor
//! hands it real frames and host tests hand it a map of fake ones.

mod ept;
mod guest_map;
mod npt;

pub use ept::{eptp, EptFormat};
pub use guest_map::{
    FlushTracker, GuestLayout, GuestPhysMap, RemapError, VmMemoryMap, MAX_DIRTY_LOGS,
    MAX_DIRTY_LOG_BYTES,
};
pub use npt::NptFormat;

use alloc::vec::Vec;
use core::ops::Range;

/// Size of a 4 KiB page.
pub const PAGE_SIZE: u64 = 0x1000;
/// Size of a 2 MiB large page.
pub const LARGE_PAGE_SIZE: u64 = 0x20_0000;
/// Size of a 1 GiB huge page.
pub const HUGE_PAGE_SIZE: u64 = 0x4000_0000;
/// Guest-physical addresses the 4-level tables can hold (48 bits).
const GPA_LIMIT: u64 = 1 << 48;

/// What the guest may do with a mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Permissions {
    pub write: bool,
    pub execute: bool,
}

impl Permissions {
    /// Read, write and execute: guest RAM.
    pub const RWX: Permissions = Permissions {
        write: true,
        execute: true,
    };
    /// Read and execute: firmware ROM.
    pub const RX: Permissions = Permissions {
        write: false,
        execute: true,
    };
}

/// How one kind of hardware encodes table entries.
pub trait EntryFormat {
    /// An entry pointing at the next-level table at `table_pa`.
    fn table(table_pa: u64) -> u64;
    /// A leaf mapping `hpa` at `level` (1 = 4 KiB, 2 = 2 MiB, 3 = 1 GiB).
    fn leaf(hpa: u64, level: u8, perms: Permissions) -> u64;
    fn is_present(entry: u64) -> bool;
    /// Whether a present entry at `level` (2 or 3) maps a large page rather than a table.
    fn is_large(entry: u64) -> bool;
    /// The physical address an entry points at.
    fn address(entry: u64) -> u64;
    /// The permissions of a present leaf.
    fn permissions(entry: u64) -> Permissions;
}

/// Where table pages come from.
pub trait TableMemory {
    /// A zeroed, 4 KiB-aligned page for a table; its host-physical address.
    fn alloc_table(&mut self) -> Option<u64>;
    /// The table page at `pa` (previously returned by `alloc_table`).
    fn table(&mut self, pa: u64) -> &mut [u64; 512];
}

/// Why a mapping was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MapError {
    /// GPA, HPA or length is not 4 KiB aligned, or the range wraps or leaves 48 bits.
    BadRange { gpa: u64, hpa: u64, len: u64 },
    /// The host range overlaps memory Keel reserved for itself.
    HostRangeReserved {
        hpa: u64,
        len: u64,
        reserved: Range<u64>,
    },
    /// Part of the guest range is mapped already.
    AlreadyMapped { gpa: u64 },
    /// No page for a table.
    OutOfMemory,
}

/// A 4-level nested page table for one guest.
pub struct NestedPageTable<F: EntryFormat> {
    root: u64,
    largest_level: u8,
    reserved: Vec<Range<u64>>,
    _format: core::marker::PhantomData<F>,
}

impl<F: EntryFormat> NestedPageTable<F> {
    /// An empty table. `largest_level` caps the page size (1 = 4 KiB only,
    /// 2 = up to 2 MiB, 3 = up to 1 GiB); `reserved` lists host-physical ranges
    /// (Keel's image, its tables, other guests) that no mapping may reach.
    pub fn new(
        mem: &mut impl TableMemory,
        largest_level: u8,
        reserved: Vec<Range<u64>>,
    ) -> Result<Self, MapError> {
        let root = mem.alloc_table().ok_or(MapError::OutOfMemory)?;
        Ok(Self {
            root,
            largest_level: largest_level.clamp(1, 3),
            reserved,
            _format: core::marker::PhantomData,
        })
    }

    /// Tables that map each `(gpa, hpa, len, permissions)` of `mappings`, as
    /// [`Self::map`] does; see [`Self::new`] for the other parameters.
    pub fn with_mappings(
        mem: &mut impl TableMemory,
        largest_level: u8,
        reserved: Vec<Range<u64>>,
        mappings: impl IntoIterator<Item = (u64, u64, u64, Permissions)>,
    ) -> Result<Self, MapError> {
        let mut table = Self::new(mem, largest_level, reserved)?;
        for (gpa, hpa, len, perms) in mappings {
            table.map(mem, gpa, hpa, len, perms)?;
        }
        Ok(table)
    }

    /// Host-physical address of the top-level table (for nCR3 / the EPTP).
    pub fn root(&self) -> u64 {
        self.root
    }

    /// Maps guest-physical `[gpa, gpa + len)` to host-physical `[hpa, hpa + len)`,
    /// using the largest pages that alignment allows.
    pub fn map(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: u64,
        hpa: u64,
        len: u64,
        perms: Permissions,
    ) -> Result<(), MapError> {
        let bad = MapError::BadRange { gpa, hpa, len };
        if (gpa | hpa | len) & (PAGE_SIZE - 1) != 0 || len == 0 {
            return Err(bad);
        }
        let gend = gpa.checked_add(len).ok_or(bad.clone())?;
        let hend = hpa.checked_add(len).ok_or(bad.clone())?;
        if gend > GPA_LIMIT || hend > GPA_LIMIT {
            return Err(bad);
        }
        if let Some(r) = self.reserved.iter().find(|r| hpa < r.end && r.start < hend) {
            return Err(MapError::HostRangeReserved {
                hpa,
                len,
                reserved: r.clone(),
            });
        }
        // Refuse before writing anything, so a failed call leaves the table unchanged.
        let mut probe = gpa;
        while probe < gend {
            if self.translate(mem, probe).is_some() {
                return Err(MapError::AlreadyMapped { gpa: probe });
            }
            probe += PAGE_SIZE;
        }
        let mut off = 0;
        while off < len {
            let (g, h, rest) = (gpa + off, hpa + off, len - off);
            // A large leaf only where no lower table is: one left behind by
            // an unmap of pages a split made small (a dirty-logged BAR that
            // moved) is reused, not refused.
            let level = (1..=self.largest_level)
                .rev()
                .find(|&l| {
                    let size = level_size(l);
                    (g | h) & (size - 1) == 0
                        && rest >= size
                        && (l == 1 || !self.has_table(mem, g, l))
                })
                .unwrap_or(1);
            self.map_one(mem, g, h, level, perms)?;
            off += level_size(level);
        }
        Ok(())
    }

    /// Whether the level-`level` entry for `gpa` points to a lower table.
    fn has_table(&self, mem: &mut impl TableMemory, gpa: u64, level: u8) -> bool {
        let mut table = self.root;
        for l in (level..=4).rev() {
            let entry = mem.table(table)[index(gpa, l)];
            if !F::is_present(entry) || (l <= 3 && F::is_large(entry)) {
                return false;
            }
            if l == level {
                return true;
            }
            table = F::address(entry);
        }
        false
    }

    fn map_one(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: u64,
        hpa: u64,
        level: u8,
        perms: Permissions,
    ) -> Result<(), MapError> {
        let mut table = self.root;
        for l in (level + 1..=4).rev() {
            let idx = index(gpa, l);
            let entry = mem.table(table)[idx];
            table = if F::is_present(entry) {
                if l <= 3 && F::is_large(entry) {
                    return Err(MapError::AlreadyMapped { gpa });
                }
                F::address(entry)
            } else {
                let next = mem.alloc_table().ok_or(MapError::OutOfMemory)?;
                if self.reserved.iter().any(|r| r.contains(&next)) {
                    return Err(MapError::OutOfMemory);
                }
                mem.table(table)[idx] = F::table(next);
                next
            };
        }
        let slot = &mut mem.table(table)[index(gpa, level)];
        if F::is_present(*slot) {
            return Err(MapError::AlreadyMapped { gpa });
        }
        *slot = F::leaf(hpa, level, perms);
        Ok(())
    }

    /// Removes every mapping in guest-physical `[gpa, gpa + len)`, splitting
    /// large pages that straddle its ends. Returns whether anything was
    /// mapped there (then the caller must invalidate the guest's cached
    /// translations before it runs again: NPT ASID flush / INVEPT).
    pub fn unmap(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: u64,
        len: u64,
    ) -> Result<bool, MapError> {
        self.update(mem, gpa, len, 3, |_, _| 0)
    }

    /// Gives every mapped page in `[gpa, gpa + len)` the permissions `perms`,
    /// splitting large pages that straddle its ends, or all of them down to
    /// `largest_level` (1 = 4 KiB, for a dirty log that tracks single pages).
    /// Unmapped pages stay unmapped. Returns whether an entry changed.
    pub fn protect(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: u64,
        len: u64,
        perms: Permissions,
        largest_level: u8,
    ) -> Result<bool, MapError> {
        self.update(mem, gpa, len, largest_level, |entry, level| {
            F::leaf(F::address(entry), level, perms)
        })
    }

    /// Sets or clears write permission of every mapped page in
    /// `[gpa, gpa + len)`, keeping execute; see [`Self::protect`].
    pub fn set_writable(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: u64,
        len: u64,
        write: bool,
        largest_level: u8,
    ) -> Result<bool, MapError> {
        self.update(mem, gpa, len, largest_level, |entry, level| {
            let perms = Permissions {
                write,
                ..F::permissions(entry)
            };
            F::leaf(F::address(entry), level, perms)
        })
    }

    /// Rewrites each present leaf over `[gpa, gpa + len)` with `f(entry, level)`.
    /// A leaf only partly inside the range, or larger than `largest_level`,
    /// is split first into leaves one level down with the same mapping.
    /// A split that runs out of table pages stops with an error; the entries
    /// rewritten so far stay (every split keeps the old mapping, so the
    /// table is consistent either way).
    fn update(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: u64,
        len: u64,
        largest_level: u8,
        f: impl Fn(u64, u8) -> u64,
    ) -> Result<bool, MapError> {
        let bad = MapError::BadRange { gpa, hpa: 0, len };
        if (gpa | len) & (PAGE_SIZE - 1) != 0 || len == 0 {
            return Err(bad);
        }
        let end = gpa.checked_add(len).ok_or(bad.clone())?;
        if end > GPA_LIMIT {
            return Err(bad);
        }
        let mut changed = false;
        let mut at = gpa;
        while at < end {
            // The largest leaf that may stay whole: aligned and inside the range.
            let keep = (1..=largest_level.min(3))
                .rev()
                .find(|&l| at & (level_size(l) - 1) == 0 && end - at >= level_size(l))
                .unwrap_or(1);
            let (table, idx, level) = self.leaf_slot(mem, at, keep)?;
            let size = level_size(level);
            let entry = mem.table(table)[idx];
            if F::is_present(entry) {
                let new = f(entry, level);
                if new != entry {
                    mem.table(table)[idx] = new;
                    changed = true;
                }
            }
            at = (at & !(size - 1)) + size;
        }
        Ok(changed)
    }

    /// The entry that maps `gpa`: a leaf of at most `keep` level (larger
    /// leaves on the way are split), or the non-present entry where the walk
    /// ends. Returns its table, index and level.
    fn leaf_slot(
        &mut self,
        mem: &mut impl TableMemory,
        gpa: u64,
        keep: u8,
    ) -> Result<(u64, usize, u8), MapError> {
        let mut table = self.root;
        for l in (2..=4).rev() {
            let idx = index(gpa, l);
            let entry = mem.table(table)[idx];
            if !F::is_present(entry) {
                return Ok((table, idx, l));
            }
            if l <= 3 && F::is_large(entry) {
                if l <= keep {
                    return Ok((table, idx, l));
                }
                // Split: a table one level down with the same mappings.
                let next = mem.alloc_table().ok_or(MapError::OutOfMemory)?;
                if self.reserved.iter().any(|r| r.contains(&next)) {
                    return Err(MapError::OutOfMemory);
                }
                let perms = F::permissions(entry);
                let base = F::address(entry);
                let sub = level_size(l - 1);
                for i in 0..512u64 {
                    mem.table(next)[i as usize] = F::leaf(base + i * sub, l - 1, perms);
                }
                mem.table(table)[idx] = F::table(next);
            }
            table = F::address(mem.table(table)[idx]);
        }
        Ok((table, index(gpa, 1), 1))
    }

    /// The host-physical address and permissions `gpa` maps to, if any.
    pub fn translate(&self, mem: &mut impl TableMemory, gpa: u64) -> Option<(u64, Permissions)> {
        if gpa >= GPA_LIMIT {
            return None;
        }
        let mut table = self.root;
        for l in (1..=4).rev() {
            let entry = mem.table(table)[index(gpa, l)];
            if !F::is_present(entry) {
                return None;
            }
            if l == 1 || (l <= 3 && F::is_large(entry)) {
                let size = level_size(l);
                return Some((
                    F::address(entry) + (gpa & (size - 1)),
                    F::permissions(entry),
                ));
            }
            table = F::address(entry);
        }
        None
    }
}

fn level_size(level: u8) -> u64 {
    match level {
        3 => HUGE_PAGE_SIZE,
        2 => LARGE_PAGE_SIZE,
        _ => PAGE_SIZE,
    }
}

fn index(gpa: u64, level: u8) -> usize {
    ((gpa >> (12 + 9 * (u32::from(level) - 1))) & 0x1ff) as usize
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::boxed::Box;
    use std::collections::BTreeMap;

    /// Table pages in a map, at fake host-physical addresses from 0x100_0000 up.
    #[derive(Default)]
    pub struct FakeTables {
        pub pages: BTreeMap<u64, Box<[u64; 512]>>,
        pub limit: Option<usize>,
    }

    impl TableMemory for FakeTables {
        fn alloc_table(&mut self) -> Option<u64> {
            if self.limit.is_some_and(|l| self.pages.len() >= l) {
                return None;
            }
            let pa = 0x100_0000 + self.pages.len() as u64 * PAGE_SIZE;
            self.pages.insert(pa, Box::new([0; 512]));
            Some(pa)
        }
        fn table(&mut self, pa: u64) -> &mut [u64; 512] {
            self.pages
                .get_mut(&pa)
                .expect("table handed out by alloc_table")
        }
    }

    type Npt = NestedPageTable<NptFormat>;

    #[test]
    fn uses_large_pages_where_aligned() {
        let mut m = FakeTables::default();
        let mut t = Npt::new(&mut m, 2, Vec::new()).unwrap();
        // 64 MiB at 2 MiB-aligned host memory: 32 large pages, 3 tables (PML4, PDPT, PD).
        t.map(&mut m, 0, 0x4000_0000, 64 << 20, Permissions::RWX)
            .unwrap();
        assert_eq!(m.pages.len(), 3);
        assert_eq!(
            t.translate(&mut m, 0x12_3456),
            Some((0x4012_3456, Permissions::RWX))
        );
        assert_eq!(
            t.translate(&mut m, (64 << 20) - 1),
            Some((0x4000_0000 + (64 << 20) - 1, Permissions::RWX))
        );
        assert_eq!(t.translate(&mut m, 64 << 20), None);
    }

    #[test]
    fn falls_back_to_small_pages_when_misaligned() {
        let mut m = FakeTables::default();
        let mut t = Npt::new(&mut m, 3, Vec::new()).unwrap();
        // Host side only 4 KiB aligned: every page is 4 KiB.
        t.map(&mut m, 0x20_0000, 0x5000_1000, 0x20_0000, Permissions::RX)
            .unwrap();
        assert_eq!(m.pages.len(), 4, "PML4, PDPT, PD, PT");
        assert_eq!(
            t.translate(&mut m, 0x20_0000),
            Some((0x5000_1000, Permissions::RX))
        );
        assert_eq!(
            t.translate(&mut m, 0x3f_ffff),
            Some((0x5020_0fff, Permissions::RX))
        );
        // 1 GiB pages when both sides allow it.
        t.map(&mut m, 1 << 30, 3 << 30, 1 << 30, Permissions::RWX)
            .unwrap();
        assert_eq!(
            t.translate(&mut m, (1 << 30) + 5),
            Some(((3 << 30) + 5, Permissions::RWX))
        );
    }

    #[test]
    fn with_mappings_maps_each_range() {
        let mut m = FakeTables::default();
        let maps = [
            (0, 0x4000_0000, 0x20_0000, Permissions::RWX),
            (0xfff0_0000, 0x4010_0000, 0x1000, Permissions::RX),
        ];
        let t = Npt::with_mappings(&mut m, 2, Vec::new(), maps).unwrap();
        assert_eq!(
            t.translate(&mut m, 0x1234),
            Some((0x4000_1234, Permissions::RWX))
        );
        assert_eq!(
            t.translate(&mut m, 0xfff0_0010),
            Some((0x4010_0010, Permissions::RX))
        );
        let overlapping = [
            (0, 0x4000_0000, 0x2000, Permissions::RWX),
            (0x1000, 0x5000_0000, 0x1000, Permissions::RWX),
        ];
        assert!(Npt::with_mappings(&mut m, 2, Vec::new(), overlapping).is_err());
    }

    #[test]
    fn a_range_split_small_and_unmapped_maps_again() {
        let mut m = FakeTables::default();
        let mut t = Npt::new(&mut m, 2, Vec::new()).unwrap();
        let (gpa, len) = (0xFD00_0000, 0x40_0000);
        t.map(&mut m, gpa, 0x8000_0000, len, Permissions::RWX)
            .unwrap();
        // A dirty log splits it to 4 KiB pages; the BAR then moves away.
        t.set_writable(&mut m, gpa, len, false, 1).unwrap();
        t.unmap(&mut m, gpa, len).unwrap();
        assert_eq!(t.translate(&mut m, gpa + 0x1000), None);
        // And comes back, here or over part of the old tables.
        t.map(&mut m, gpa, 0x9000_0000, len, Permissions::RWX)
            .unwrap();
        assert_eq!(
            t.translate(&mut m, gpa + 0x20_1234),
            Some((0x9020_1234, Permissions::RWX))
        );
        t.unmap(&mut m, gpa, len).unwrap();
        t.map(&mut m, gpa + 0x20_0000, 0xA000_0000, len, Permissions::RX)
            .unwrap();
        assert_eq!(
            t.translate(&mut m, gpa + 0x5F_F000),
            Some((0xA03F_F000, Permissions::RX))
        );
        assert_eq!(t.translate(&mut m, gpa), None);
    }

    #[test]
    fn permissions_are_encoded() {
        let mut m = FakeTables::default();
        let mut t = Npt::new(&mut m, 2, Vec::new()).unwrap();
        t.map(&mut m, 0xf_0000, 0x7_0000, 0x1_0000, Permissions::RX)
            .unwrap();
        let (_, p) = t.translate(&mut m, 0xf_fff0).unwrap();
        assert!(!p.write && p.execute);
    }

    #[test]
    fn refuses_overlaps_reserved_ranges_and_bad_ranges() {
        let mut m = FakeTables::default();
        let keel = 0x10_0000..0x40_0000;
        let mut t = Npt::new(&mut m, 2, std::vec![keel.clone()]).unwrap();
        assert_eq!(
            t.map(&mut m, 0, 0x3f_f000, 0x2000, Permissions::RWX),
            Err(MapError::HostRangeReserved {
                hpa: 0x3f_f000,
                len: 0x2000,
                reserved: keel
            })
        );
        t.map(&mut m, 0x1000, 0x80_1000, 0x1000, Permissions::RWX)
            .unwrap();
        assert_eq!(
            t.map(&mut m, 0, 0x90_0000, 0x4000, Permissions::RWX),
            Err(MapError::AlreadyMapped { gpa: 0x1000 })
        );
        assert_eq!(
            t.translate(&mut m, 0),
            None,
            "a refused map leaves nothing behind"
        );
        assert!(matches!(
            t.map(&mut m, 0x123, 0, 0x1000, Permissions::RWX),
            Err(MapError::BadRange { .. })
        ));
        assert!(matches!(
            t.map(&mut m, !0xfff, 0, 0x2000, Permissions::RWX),
            Err(MapError::BadRange { .. })
        ));
        assert!(matches!(
            t.map(&mut m, 0, 0, 0, Permissions::RWX),
            Err(MapError::BadRange { .. })
        ));
    }

    #[test]
    fn no_mapping_reaches_a_table_page() {
        let mut m = FakeTables::default();
        let mut t = Npt::new(&mut m, 2, Vec::new()).unwrap();
        t.map(&mut m, 0, 0x4000_0000, 8 << 20, Permissions::RWX)
            .unwrap();
        t.map(
            &mut m,
            0xfff0_0000,
            0x4000_0000 + (8 << 20) - 0x10_0000,
            0x10_0000,
            Permissions::RX,
        )
        .unwrap();
        let tables: Vec<u64> = m.pages.keys().copied().collect();
        for gpa in (0..(8u64 << 20))
            .step_by(0x1000)
            .chain((0xfff0_0000u64..0x1_0000_0000).step_by(0x1000))
        {
            let (hpa, _) = t.translate(&mut m, gpa).unwrap();
            assert!(
                !tables.contains(&(hpa & !0xfff)),
                "GPA {gpa:#x} reaches table page {hpa:#x}"
            );
        }
    }

    #[test]
    fn unmap_splits_large_pages() {
        let mut m = FakeTables::default();
        let mut t = Npt::new(&mut m, 2, Vec::new()).unwrap();
        t.map(&mut m, 0, 0x4000_0000, 0x40_0000, Permissions::RWX)
            .unwrap();
        assert_eq!(t.unmap(&mut m, 0x20_5000, 0x1000), Ok(true));
        assert_eq!(t.translate(&mut m, 0x20_5000), None);
        assert_eq!(
            t.translate(&mut m, 0x20_4fff),
            Some((0x4020_4fff, Permissions::RWX))
        );
        assert_eq!(
            t.translate(&mut m, 0x20_6000),
            Some((0x4020_6000, Permissions::RWX))
        );
        assert_eq!(
            t.translate(&mut m, 0x10_0000),
            Some((0x4010_0000, Permissions::RWX))
        );
        assert_eq!(t.unmap(&mut m, 0x20_5000, 0x1000), Ok(false));
    }

    #[test]
    fn out_of_table_memory_is_an_error() {
        let mut m = FakeTables {
            limit: Some(2),
            ..Default::default()
        };
        let mut t = Npt::new(&mut m, 2, Vec::new()).unwrap();
        assert_eq!(
            t.map(&mut m, 0, 0x4000_0000, 0x20_0000, Permissions::RWX),
            Err(MapError::OutOfMemory)
        );
    }
}
