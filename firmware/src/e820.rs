//! The guest's memory map: `etc/e820` (QEMU's `struct e820_entry`: u64
//! address, u64 length, u32 type, little-endian, 20 bytes each, RAM only)
//! turned into the map a kernel gets, with the PC's holes and the ACPI
//! tables marked.

use crate::layout::BIOS_AREA;
use crate::report::Error;

pub const RAM: u32 = 1;
pub const RESERVED: u32 = 2;
pub const ACPI: u32 = 3;
pub const NVS: u32 = 4;

/// The most entries a map holds (the zero page's `e820_table` size).
pub const MAX_ENTRIES: usize = 128;
/// Size of one `etc/e820` (and zero page) entry.
pub const ENTRY_LEN: usize = 20;
/// Where the EBDA of a PC would start: RAM below it, reserved above.
pub const EBDA: u64 = 0x9_FC00;
/// The legacy VGA/ROM hole.
pub const LEGACY_HOLE: core::ops::Range<u64> = 0xA_0000..0x10_0000;
/// The firmware ROM below 4 GiB that a PC BIOS reserves (256 KiB).
pub const HIGH_BIOS: core::ops::Range<u64> = 0xFFFC_0000..0x1_0000_0000;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Entry {
    pub addr: u64,
    pub len: u64,
    pub kind: u32,
}

impl Entry {
    pub fn end(&self) -> u64 {
        self.addr.saturating_add(self.len)
    }

    pub fn to_bytes(&self) -> [u8; ENTRY_LEN] {
        let mut b = [0; ENTRY_LEN];
        b[0..8].copy_from_slice(&self.addr.to_le_bytes());
        b[8..16].copy_from_slice(&self.len.to_le_bytes());
        b[16..20].copy_from_slice(&self.kind.to_le_bytes());
        b
    }

    pub fn from_bytes(b: &[u8; ENTRY_LEN]) -> Self {
        Entry {
            addr: crate::le::u64_at(b, 0),
            len: crate::le::u64_at(b, 8),
            kind: crate::le::u32_at(b, 16),
        }
    }
}

/// A sorted map of non-overlapping ranges, adjacent ranges of one type merged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Map {
    entries: [Entry; MAX_ENTRIES],
    len: usize,
}

impl Default for Map {
    fn default() -> Self {
        Self::new()
    }
}

impl Map {
    pub const fn new() -> Self {
        Map {
            entries: [Entry {
                addr: 0,
                len: 0,
                kind: 0,
            }; MAX_ENTRIES],
            len: 0,
        }
    }

    pub fn entries(&self) -> &[Entry] {
        &self.entries[..self.len]
    }

    /// The map `etc/e820` describes. Overlaps are resolved in favour of the
    /// non-RAM type.
    pub fn from_fw_cfg(bytes: &[u8]) -> Result<Map, Error> {
        if bytes.is_empty() || !bytes.len().is_multiple_of(ENTRY_LEN) {
            return Err(Error::BadE820);
        }
        let mut map = Map::new();
        for pass_ram in [true, false] {
            for chunk in bytes.chunks_exact(ENTRY_LEN) {
                let e = Entry::from_bytes(chunk.try_into().expect("chunk of ENTRY_LEN"));
                if (e.kind == RAM) == pass_ram && e.len != 0 {
                    map.set(e.addr, e.end(), e.kind)?;
                }
            }
        }
        if !map.entries().iter().any(|e| e.kind == RAM) {
            return Err(Error::BadE820);
        }
        Ok(map)
    }

    /// Gives `[start, end)` the type `kind`, whatever was there.
    pub fn set(&mut self, start: u64, end: u64, kind: u32) -> Result<(), Error> {
        self.replace(start, end, Some(kind))
    }

    /// Takes `[start, end)` out of the map.
    pub fn remove(&mut self, start: u64, end: u64) -> Result<(), Error> {
        self.replace(start, end, None)
    }

    /// Gives `[start, end)` the type `kind` where the map has RAM there.
    pub fn set_within_ram(&mut self, start: u64, end: u64, kind: u32) -> Result<(), Error> {
        let mut parts = [(0u64, 0u64); MAX_ENTRIES];
        let mut n = 0;
        for e in self.entries() {
            let (s, t) = (e.addr.max(start), e.end().min(end));
            if e.kind == RAM && s < t {
                parts[n] = (s, t);
                n += 1;
            }
        }
        for &(s, t) in &parts[..n] {
            self.set(s, t, kind)?;
        }
        Ok(())
    }

    fn replace(&mut self, start: u64, end: u64, kind: Option<u32>) -> Result<(), Error> {
        if start >= end {
            return Ok(());
        }
        let mut out = Map::new();
        for e in self.entries() {
            if e.end() <= start || e.addr >= end {
                out.push(*e)?;
                continue;
            }
            if e.addr < start {
                out.push(Entry {
                    addr: e.addr,
                    len: start - e.addr,
                    kind: e.kind,
                })?;
            }
            if e.end() > end {
                out.push(Entry {
                    addr: end,
                    len: e.end() - end,
                    kind: e.kind,
                })?;
            }
        }
        if let Some(kind) = kind {
            out.push(Entry {
                addr: start,
                len: end - start,
                kind,
            })?;
        }
        out.normalize();
        *self = out;
        Ok(())
    }

    fn push(&mut self, e: Entry) -> Result<(), Error> {
        if self.len == MAX_ENTRIES {
            return Err(Error::TooManyE820);
        }
        self.entries[self.len] = e;
        self.len += 1;
        Ok(())
    }

    /// Sorts by address and merges touching entries of one type.
    fn normalize(&mut self) {
        let v = &mut self.entries[..self.len];
        v.sort_unstable_by_key(|e| e.addr);
        let mut w = 0;
        for r in 0..self.len {
            let e = self.entries[r];
            if w > 0 {
                let last = &mut self.entries[w - 1];
                if last.kind == e.kind && last.end() == e.addr {
                    last.len += e.len;
                    continue;
                }
            }
            self.entries[w] = e;
            w += 1;
        }
        self.len = w;
    }

    /// Whether `[start, end)` is entirely RAM.
    pub fn is_ram(&self, start: u64, end: u64) -> bool {
        self.entries()
            .iter()
            .any(|e| e.kind == RAM && e.addr <= start && end <= e.end())
    }

    /// The RAM entry containing `addr`.
    pub fn ram_at(&self, addr: u64) -> Option<Entry> {
        self.entries()
            .iter()
            .copied()
            .find(|e| e.kind == RAM && e.addr <= addr && addr < e.end())
    }

    /// The highest `size`-byte RAM range, aligned to `align` (a power of two),
    /// that lies in `[floor, limit)` and avoids every range in `avoid`.
    pub fn highest_fit(
        &self,
        size: u64,
        align: u64,
        floor: u64,
        limit: u64,
        avoid: &[(u64, u64)],
    ) -> Option<u64> {
        let mut best: Option<u64> = None;
        for e in self.entries().iter().filter(|e| e.kind == RAM) {
            let lo = e.addr.max(floor);
            let mut hi = e.end().min(limit);
            // Walk down past the ranges to avoid.
            'place: loop {
                if hi < lo || hi - lo < size {
                    break;
                }
                let at = (hi - size) & !(align - 1);
                if at < lo {
                    break;
                }
                for &(s, t) in avoid {
                    if at < t && s < at + size {
                        hi = s;
                        continue 'place;
                    }
                }
                if best.is_none_or(|b| at > b) {
                    best = Some(at);
                }
                break;
            }
        }
        best
    }
}

/// The map a kernel gets: `fw` (from `etc/e820`) with RAM from `EBDA` to
/// 1 MiB taken out (`EBDA..0xA0000` and the BIOS area reserved), each ACPI
/// blob outside the BIOS area typed ACPI, and the top 256 KiB below 4 GiB
/// (where the firmware ROM is) reserved.
pub fn guest_map(fw: &Map, acpi_blobs: &[(u64, u64)]) -> Result<Map, Error> {
    let mut m = fw.clone();
    m.remove(LEGACY_HOLE.start, LEGACY_HOLE.end)?;
    m.set_within_ram(EBDA, LEGACY_HOLE.start, RESERVED)?;
    m.set(BIOS_AREA.start, BIOS_AREA.end, RESERVED)?;
    for &(start, end) in acpi_blobs {
        if end <= BIOS_AREA.start || start >= BIOS_AREA.end {
            m.set(start, end, ACPI)?;
        }
    }
    m.set(HIGH_BIOS.start, HIGH_BIOS.end, RESERVED)?;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec::Vec;

    const MIB: u64 = 1 << 20;

    fn fw(entries: &[(u64, u64, u32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|&(addr, len, kind)| Entry { addr, len, kind }.to_bytes())
            .collect()
    }

    fn list(m: &Map) -> Vec<(u64, u64, u32)> {
        m.entries()
            .iter()
            .map(|e| (e.addr, e.end(), e.kind))
            .collect()
    }

    #[test]
    fn qemu_style_ram_becomes_a_pc_map() {
        let map = Map::from_fw_cfg(&fw(&[(0, 256 * MIB, RAM)])).unwrap();
        let tables = (256 * MIB - 0x10000, 256 * MIB - 0x10000 + 0x2345);
        let g = guest_map(&map, &[(0xE0000, 0xE0024), tables]).unwrap();
        assert_eq!(
            list(&g),
            [
                (0, EBDA, RAM),
                (EBDA, 0xA0000, RESERVED),
                (0xE0000, 0x100000, RESERVED),
                (0x100000, tables.0, RAM),
                (tables.0, tables.1, ACPI),
                (tables.1, 256 * MIB, RAM),
                (0xFFFC0000, 1 << 32, RESERVED),
            ]
        );
    }

    #[test]
    fn ram_above_4g_and_reserved_entries_survive() {
        let map = Map::from_fw_cfg(&fw(&[
            (0, 3 << 30, RAM),
            (1 << 32, 1 << 30, RAM),
            (0xFEFFC000, 0x4000, RESERVED),
        ]))
        .unwrap();
        let g = guest_map(&map, &[]).unwrap();
        let l = list(&g);
        assert!(l.contains(&(0x100000, 3 << 30, RAM)));
        assert!(l.contains(&(0xFEFFC000, 0xFF000000, RESERVED)));
        assert!(l.contains(&(1 << 32, (1 << 32) + (1 << 30), RAM)));
        assert_eq!(g.ram_at(0x200000).unwrap().end(), 3 << 30);
    }

    #[test]
    fn overlaps_resolve_to_the_non_ram_type() {
        let map =
            Map::from_fw_cfg(&fw(&[(0x100000, 0x1000, RESERVED), (0, 16 * MIB, RAM)])).unwrap();
        assert_eq!(
            list(&map),
            [
                (0, 0x100000, RAM),
                (0x100000, 0x101000, RESERVED),
                (0x101000, 16 * MIB, RAM)
            ]
        );
    }

    #[test]
    fn bad_files_are_refused() {
        assert_eq!(Map::from_fw_cfg(&[0; 19]), Err(Error::BadE820));
        assert_eq!(Map::from_fw_cfg(&[]), Err(Error::BadE820));
        assert_eq!(
            Map::from_fw_cfg(&fw(&[(0, MIB, RESERVED)])),
            Err(Error::BadE820)
        );
    }

    #[test]
    fn too_many_entries_is_an_error_not_a_panic() {
        let mut m = Map::new();
        let mut r = Ok(());
        for i in 0..200u64 {
            r = r.and(m.set(i * 0x2000, i * 0x2000 + 0x1000, RAM));
        }
        assert_eq!(r, Err(Error::TooManyE820));
    }

    #[test]
    fn highest_fit_avoids_ranges() {
        let map = Map::from_fw_cfg(&fw(&[(0, 64 * MIB, RAM)])).unwrap();
        let g = guest_map(&map, &[(64 * MIB - 0x10000, 64 * MIB)]).unwrap();
        let at = g.highest_fit(0x3000, 0x1000, MIB, u64::MAX, &[]).unwrap();
        assert_eq!(at, 64 * MIB - 0x10000 - 0x3000);
        let at = g
            .highest_fit(0x3000, 0x1000, MIB, u64::MAX, &[(at, at + 1)])
            .unwrap();
        assert_eq!(at, 64 * MIB - 0x10000 - 0x6000);
        assert_eq!(g.highest_fit(64 * MIB, 0x1000, MIB, u64::MAX, &[]), None);
        assert_eq!(
            g.highest_fit(0x1000, 0x1000, MIB, 2 * MIB, &[]),
            Some(2 * MIB - 0x1000)
        );
    }
}
