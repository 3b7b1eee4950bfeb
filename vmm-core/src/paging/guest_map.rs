//! One VM's guest-physical map while it runs: the nested page table, kept,
//! and the changes the device model asks for ([`MemoryMapChange`]).
//!
//! Every change that removes or narrows a translation bumps the map's
//! *generation*; each vCPU remembers the generation it last flushed at
//! ([`FlushTracker`]) and invalidates its cached guest-physical translations
//! (SVM: TLB_CONTROL "flush this guest's ASID", APM Vol 2 15.16.1; VMX:
//! INVEPT single-context, SDM Vol 3C 29.4.3.1) before its next entry when
//! the generation moved. With one vCPU that is one flush; with several, each
//! flushes before it runs again.
//!
//! Table pages for splits come from the [`TableMemory`] the map owns (Keel:
//! a fixed pool allocated with the VM), so no guest action grows Keel's
//! memory; an exhausted pool refuses the change.

use alloc::vec::Vec;
use core::ops::Range;

use guest_memory::{Backing, HostRegionId, MemoryMapChange, Writes, ZEROING_CHUNK};

use super::{EntryFormat, MapError, NestedPageTable, Permissions, TableMemory, PAGE_SIZE};

/// The BIOS ROM below 1 MiB ends here (its image is top-aligned to 1 MiB).
const BIOS_ROM_END: u64 = 0x10_0000;
/// At most this many dirty logs at once, each at most [`MAX_DIRTY_LOG_BYTES`].
pub const MAX_DIRTY_LOGS: usize = 8;
pub const MAX_DIRTY_LOG_BYTES: u64 = 1 << 30;
/// At most this many ranges whose writes go to RAM (PAM write-only segments: 13).
pub const MAX_WRITE_TO_RAM_RANGES: usize = 32;
/// At most this many device host regions.
pub const MAX_REGIONS: usize = 16;

/// Why a change to the guest-physical map was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RemapError {
    /// Not 4 KiB aligned, empty, wrapping, or past the guest-physical space.
    OutsideGuest { gpa: u64, len: u64 },
    /// The range covers the local APIC, the IOAPIC or the firmware ROM alias.
    Refused {
        gpa: u64,
        len: u64,
        covers: Range<u64>,
    },
    /// The backing does not cover the range (RAM, the ROM, a region), or a
    /// device region would hide RAM.
    BadBacking {
        gpa: u64,
        len: u64,
        backing: Backing,
    },
    /// A bounded table is full (dirty logs, write-to-RAM ranges, regions),
    /// or a dirty log overlaps another / is not active.
    Limit(&'static str),
    /// The nested table refused (out of table pages).
    Table(MapError),
    /// The range covers RAM held back until its host memory is zeroed
    /// ([`GuestPhysMap::hold_ram`]): the caller zeroes and releases it first.
    Held { gpa: u64 },
}

impl From<MapError> for RemapError {
    fn from(e: MapError) -> Self {
        RemapError::Table(e)
    }
}

/// Host memory a backing stands for.
#[derive(Debug, Clone, Copy)]
struct HostRange {
    hpa: u64,
    len: u64,
}

struct DirtyLog {
    gpa: u64,
    pages: u64,
    /// Pages that were writable when logging started (the ones it tracks).
    tracked: Vec<u64>,
    dirty: Vec<u64>,
}

impl DirtyLog {
    fn pages(&self) -> u64 {
        self.pages
    }
    fn contains(&self, gpa: u64) -> bool {
        gpa >= self.gpa && (gpa - self.gpa) / PAGE_SIZE < self.pages()
    }
}

fn bit(map: &[u64], i: u64) -> bool {
    map.get((i / 64) as usize)
        .is_some_and(|w| w & (1 << (i % 64)) != 0)
}

fn set_bit(map: &mut [u64], i: u64, on: bool) {
    if let Some(w) = map.get_mut((i / 64) as usize) {
        if on {
            *w |= 1 << (i % 64);
        } else {
            *w &= !(1 << (i % 64));
        }
    }
}

/// Chunks of [`ZEROING_CHUNK`] bytes that lie wholly in the layout's RAM.
fn layout_chunks(layout: &GuestLayout) -> u64 {
    layout.ram_len / ZEROING_CHUNK
}

/// What the guest-physical layout of one VM is made of.
pub struct GuestLayout {
    /// Guest RAM: guest-physical `[0, ram_len)` at host `ram_hpa`.
    pub ram_hpa: u64,
    pub ram_len: u64,
    /// The firmware ROM image (a host copy the guest cannot write).
    pub rom_hpa: u64,
    pub rom_len: u64,
    /// Guest-physical addresses end here (the guest's physical address width).
    pub gpa_limit: u64,
    /// Guest-physical ranges no change may touch (LAPIC, IOAPIC, ROM alias).
    pub fixed: Vec<Range<u64>>,
}

/// A VM's kept nested page table and the state of its run-time changes.
pub struct GuestPhysMap<F: EntryFormat, M: TableMemory> {
    table: NestedPageTable<F>,
    mem: M,
    layout: GuestLayout,
    regions: Vec<HostRange>,
    writes_to_ram: Vec<Range<u64>>,
    logs: Vec<DirtyLog>,
    generation: u64,
    /// RAM chunks of [`ZEROING_CHUNK`] bytes left unmapped until their host
    /// memory is zeroed (bit `i`: guest-physical `i * ZEROING_CHUNK`, backed
    /// by the RAM at the same offset).
    held: Vec<u64>,
}

impl<F: EntryFormat, M: TableMemory> GuestPhysMap<F, M> {
    /// Keeps `table` (built at VM creation) for changes; `mem` gives it
    /// table pages from now on.
    pub fn new(table: NestedPageTable<F>, mem: M, layout: GuestLayout) -> Self {
        let held = alloc::vec![0; layout_chunks(&layout).div_ceil(64) as usize];
        Self {
            table,
            mem,
            layout,
            regions: Vec::new(),
            writes_to_ram: Vec::new(),
            logs: Vec::new(),
            generation: 0,
            held,
        }
    }

    /// Holds back the RAM chunk at `gpa` (a whole chunk inside RAM that the
    /// table does not map yet) until [`Self::release_ram`]: the VMM creates
    /// the table without the chunks whose host memory it has not zeroed
    /// (`guest_memory`'s first touch), so the guest's first access to one
    /// is a nested page fault.
    pub fn hold_ram(&mut self, gpa: u64) -> Result<(), RemapError> {
        let bad = RemapError::BadBacking {
            gpa,
            len: ZEROING_CHUNK,
            backing: Backing::Ram { offset: gpa },
        };
        let end = gpa.checked_add(ZEROING_CHUNK).ok_or(bad.clone())?;
        if !gpa.is_multiple_of(ZEROING_CHUNK) || end > self.layout.ram_len {
            return Err(bad);
        }
        let mut page = gpa;
        while page < end {
            if self.table.translate(&mut self.mem, page).is_some() {
                return Err(RemapError::Table(MapError::AlreadyMapped { gpa: page }));
            }
            page += PAGE_SIZE;
        }
        set_bit(&mut self.held, gpa / ZEROING_CHUNK, true);
        Ok(())
    }

    /// Whether the RAM chunk `gpa` lies in is held back.
    pub fn is_held(&self, gpa: u64) -> bool {
        gpa < self.layout.ram_len && bit(&self.held, gpa / ZEROING_CHUNK)
    }

    /// The first held chunk `change` reaches, by guest-physical address or
    /// as the RAM behind a RAM backing: the caller releases it before it
    /// applies the change.
    pub fn held_by(&self, change: &MemoryMapChange) -> Option<u64> {
        let (gpa, ram, len) = match *change {
            MemoryMapChange::Map {
                gpa,
                len,
                backing: Backing::Ram { offset },
                ..
            } => (gpa, Some(offset), len),
            MemoryMapChange::Map { gpa, len, .. }
            | MemoryMapChange::Unmap { gpa, len }
            | MemoryMapChange::DirtyLog { gpa, len, .. } => (gpa, None, len),
        };
        self.held_in(gpa, ram, len)
    }

    /// The first held chunk that guest-physical `[gpa, gpa + len)` or RAM
    /// `[ram, ram + len)` overlaps, as a guest-physical address.
    fn held_in(&self, gpa: u64, ram: Option<u64>, len: u64) -> Option<u64> {
        let first_in = |start: u64| {
            let end = start.saturating_add(len).min(self.layout.ram_len);
            let mut chunk = start - start % ZEROING_CHUNK;
            while chunk < end {
                if self.is_held(chunk) {
                    return Some(chunk);
                }
                chunk += ZEROING_CHUNK;
            }
            None
        };
        first_in(gpa).or_else(|| ram.and_then(first_in))
    }

    /// Maps the held RAM chunk `gpa` lies in, read, write and execute, as
    /// the table maps the rest of RAM; false when it was not held. The
    /// caller zeroed its host memory first. Mapping where nothing was
    /// needs no flush of cached translations (none are kept for an
    /// unmapped page); a table page may be taken from the pool.
    pub fn release_ram(&mut self, gpa: u64) -> Result<bool, RemapError> {
        if !self.is_held(gpa) {
            return Ok(false);
        }
        let chunk = gpa - gpa % ZEROING_CHUNK;
        self.table.map(
            &mut self.mem,
            chunk,
            self.layout.ram_hpa + chunk,
            ZEROING_CHUNK,
            Permissions::RWX,
        )?;
        set_bit(&mut self.held, chunk / ZEROING_CHUNK, false);
        self.protect_logged(chunk, chunk + ZEROING_CHUNK)?;
        Ok(true)
    }

    /// Host-physical address of the top-level table (nCR3 / the EPTP).
    pub fn root(&self) -> u64 {
        self.table.root()
    }

    /// The host-physical address and permissions `gpa` maps to, if any.
    pub fn translate(&mut self, gpa: u64) -> Option<(u64, Permissions)> {
        self.table.translate(&mut self.mem, gpa)
    }

    fn check_range(&self, gpa: u64, len: u64) -> Result<u64, RemapError> {
        let outside = RemapError::OutsideGuest { gpa, len };
        if (gpa | len) & (PAGE_SIZE - 1) != 0 || len == 0 {
            return Err(outside);
        }
        let end = gpa.checked_add(len).ok_or(outside.clone())?;
        if end > self.layout.gpa_limit {
            return Err(outside);
        }
        if let Some(r) = self
            .layout
            .fixed
            .iter()
            .find(|r| gpa < r.end && r.start < end)
        {
            return Err(RemapError::Refused {
                gpa,
                len,
                covers: r.clone(),
            });
        }
        Ok(end)
    }

    /// Applies one change. A refused change leaves the map as it was,
    /// except when the table runs out of pages mid-way (then the part done
    /// stays, consistent, and the generation moves anyway).
    pub fn apply(&mut self, change: &MemoryMapChange) -> Result<(), RemapError> {
        let before = self.generation;
        let result = self.apply_inner(change);
        if matches!(result, Err(RemapError::Table(_))) && self.generation == before {
            self.generation += 1;
        }
        result
    }

    fn apply_inner(&mut self, change: &MemoryMapChange) -> Result<(), RemapError> {
        if let Some(gpa) = self.held_by(change) {
            return Err(RemapError::Held { gpa });
        }
        match *change {
            MemoryMapChange::Map {
                gpa,
                len,
                backing,
                writes,
            } => self.map(gpa, len, backing, writes),
            MemoryMapChange::Unmap { gpa, len } => {
                let end = self.check_range(gpa, len)?;
                self.unmap(gpa, end)
            }
            MemoryMapChange::DirtyLog { gpa, len, on: true } => self.start_log(gpa, len),
            MemoryMapChange::DirtyLog {
                gpa,
                len,
                on: false,
            } => self.stop_log(gpa, len),
        }
    }

    fn unmap(&mut self, gpa: u64, end: u64) -> Result<(), RemapError> {
        if self.table.unmap(&mut self.mem, gpa, end - gpa)? {
            self.generation += 1;
        }
        self.forget_writes_to_ram(gpa, end);
        for log in self.logs.iter_mut() {
            let mut at = gpa.max(log.gpa);
            while at < end && log.contains(at) {
                set_bit(&mut log.tracked, (at - log.gpa) / PAGE_SIZE, false);
                at += PAGE_SIZE;
            }
        }
        Ok(())
    }

    fn forget_writes_to_ram(&mut self, gpa: u64, end: u64) {
        let mut kept = Vec::new();
        for r in self.writes_to_ram.drain(..) {
            if r.start < gpa {
                kept.push(r.start..r.end.min(gpa));
            }
            if r.end > end {
                kept.push(r.start.max(end)..r.end);
            }
        }
        self.writes_to_ram = kept;
    }

    /// The host pages `[gpa, gpa + len)` of `backing` are at, as runs of
    /// `(gpa, hpa, len)`; ROM pages past the image are left out (bus).
    fn resolve(
        &self,
        gpa: u64,
        len: u64,
        backing: Backing,
    ) -> Result<Option<(u64, u64, u64)>, RemapError> {
        let bad = RemapError::BadBacking { gpa, len, backing };
        let end = gpa + len;
        match backing {
            Backing::Ram { offset }
                if offset
                    .checked_add(len)
                    .is_some_and(|e| e <= self.layout.ram_len && offset % PAGE_SIZE == 0) =>
            {
                Ok(Some((gpa, self.layout.ram_hpa + offset, len)))
            }
            Backing::BiosRom if end <= BIOS_ROM_END => {
                let rom_start = BIOS_ROM_END - self.layout.rom_len;
                let start = gpa.max(rom_start);
                Ok((start < end).then(|| {
                    (
                        start,
                        self.layout.rom_hpa + (start - rom_start),
                        end - start,
                    )
                }))
            }
            Backing::Region { id, offset } => {
                let r = self.regions.get(id.0 as usize).ok_or(bad.clone())?;
                let fits = offset
                    .checked_add(len)
                    .is_some_and(|e| e <= r.len && offset & (PAGE_SIZE - 1) == 0);
                // A device's memory never hides RAM (a BAR moved onto RAM).
                if !fits || gpa < self.layout.ram_len {
                    return Err(bad);
                }
                Ok(Some((gpa, r.hpa + offset, len)))
            }
            _ => Err(bad),
        }
    }

    fn map(
        &mut self,
        gpa: u64,
        len: u64,
        backing: Backing,
        writes: Writes,
    ) -> Result<(), RemapError> {
        let end = self.check_range(gpa, len)?;
        let target = self.resolve(gpa, len, backing)?;
        if writes == Writes::ToRam {
            if end > self.layout.ram_len {
                return Err(RemapError::BadBacking { gpa, len, backing });
            }
            if self.writes_to_ram.len() >= MAX_WRITE_TO_RAM_RANGES {
                return Err(RemapError::Limit("ranges whose writes go to RAM"));
            }
        }
        self.unmap(gpa, end)?;
        let perms = Permissions {
            write: writes == Writes::Allowed,
            execute: true,
        };
        if let Some((g, h, l)) = target {
            self.table.map(&mut self.mem, g, h, l, perms)?;
        }
        if writes == Writes::ToRam {
            self.writes_to_ram.push(gpa..end);
        }
        // Pages of a dirty log that became writable are tracked and protected again.
        if writes == Writes::Allowed {
            if let Some((g, _, l)) = target {
                self.protect_logged(g, g + l)?;
            }
        }
        Ok(())
    }

    fn protect_logged(&mut self, gpa: u64, end: u64) -> Result<(), RemapError> {
        for i in 0..self.logs.len() {
            let log = &self.logs[i];
            let (from, to) = (gpa.max(log.gpa), end.min(log.gpa + log.pages() * PAGE_SIZE));
            if from >= to {
                continue;
            }
            self.table
                .set_writable(&mut self.mem, from, to - from, false, 1)?;
            let log = &mut self.logs[i];
            let mut at = from;
            while at < to {
                set_bit(&mut log.tracked, (at - log.gpa) / PAGE_SIZE, true);
                at += PAGE_SIZE;
            }
        }
        Ok(())
    }

    fn start_log(&mut self, gpa: u64, len: u64) -> Result<(), RemapError> {
        let end = self.check_range(gpa, len)?;
        if len > MAX_DIRTY_LOG_BYTES || self.logs.len() >= MAX_DIRTY_LOGS {
            return Err(RemapError::Limit("dirty logs"));
        }
        if self
            .logs
            .iter()
            .any(|l| gpa < l.gpa + l.pages() * PAGE_SIZE && l.gpa < end)
        {
            return Err(RemapError::Limit("dirty logs overlap"));
        }
        let pages = len / PAGE_SIZE;
        let words = pages.div_ceil(64) as usize;
        let mut tracked = alloc::vec![0u64; words];
        for i in 0..pages {
            let writable = self
                .table
                .translate(&mut self.mem, gpa + i * PAGE_SIZE)
                .is_some_and(|(_, p)| p.write);
            set_bit(&mut tracked, i, writable);
        }
        // 4 KiB pages throughout, so each page's write permission comes back alone.
        if self.table.set_writable(&mut self.mem, gpa, len, false, 1)? {
            self.generation += 1;
        }
        self.logs.push(DirtyLog {
            gpa,
            pages,
            tracked,
            dirty: alloc::vec![0u64; words],
        });
        Ok(())
    }

    fn stop_log(&mut self, gpa: u64, len: u64) -> Result<(), RemapError> {
        let i = self
            .logs
            .iter()
            .position(|l| l.gpa == gpa && l.pages * PAGE_SIZE == len)
            .ok_or(RemapError::Limit("no dirty log over that range"))?;
        let log = self.logs.swap_remove(i);
        for p in 0..log.pages() {
            if bit(&log.tracked, p) && !bit(&log.dirty, p) {
                self.table.set_writable(
                    &mut self.mem,
                    log.gpa + p * PAGE_SIZE,
                    PAGE_SIZE,
                    true,
                    1,
                )?;
            }
        }
        Ok(())
    }

    /// A write fault at `gpa`: if it is a page a dirty log write-protected,
    /// marks it dirty, makes it writable again and returns true (the guest
    /// resumes and repeats the write, which now succeeds; no emulation).
    pub fn write_fault(&mut self, gpa: u64) -> bool {
        let gpa = gpa & !(PAGE_SIZE - 1);
        let Some(log) = self.logs.iter_mut().find(|l| l.contains(gpa)) else {
            return false;
        };
        let page = (gpa - log.gpa) / PAGE_SIZE;
        if !bit(&log.tracked, page) {
            return false;
        }
        set_bit(&mut log.dirty, page, true);
        // A 4 KiB leaf exists (the log split to 4 KiB), so no page is allocated.
        match self
            .table
            .set_writable(&mut self.mem, gpa, PAGE_SIZE, true, 1)
        {
            Ok(_) => {
                self.generation += 1;
                true
            }
            Err(_) => false,
        }
    }

    /// The pages of the dirty log at `gpa` written since the last call (bit
    /// `i` = page `gpa + i * 4 KiB`), and write-protects them again.
    pub fn take_dirty(&mut self, gpa: u64) -> Result<Vec<u64>, RemapError> {
        let log = self
            .logs
            .iter_mut()
            .find(|l| l.gpa == gpa)
            .ok_or(RemapError::Limit("no dirty log at that address"))?;
        let dirty = core::mem::replace(&mut log.dirty, alloc::vec![0u64; log.tracked.len()]);
        let base = log.gpa;
        let mut changed = false;
        for (w, word) in dirty.iter().enumerate() {
            let mut bits = *word;
            while bits != 0 {
                let b = u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                let page = w as u64 * 64 + b;
                changed |= self.table.set_writable(
                    &mut self.mem,
                    base + page * PAGE_SIZE,
                    PAGE_SIZE,
                    false,
                    1,
                )?;
            }
        }
        if changed {
            self.generation += 1;
        }
        Ok(dirty)
    }

    /// Whether a write at `gpa` goes to guest RAM although the mapping is
    /// read-only ([`Writes::ToRam`]); the exit path then stores it there.
    pub fn writes_to_ram(&self, gpa: u64) -> bool {
        self.writes_to_ram.iter().any(|r| r.contains(&gpa))
    }

    /// Registers host memory `[hpa, hpa + len)` that Keel allocated for a
    /// device of this VM; [`Backing::Region`] names it by the returned id.
    pub fn add_region(&mut self, hpa: u64, len: u64) -> Result<HostRegionId, RemapError> {
        if self.regions.len() >= MAX_REGIONS {
            return Err(RemapError::Limit("device host regions"));
        }
        if (hpa | len) & (PAGE_SIZE - 1) != 0 || len == 0 {
            return Err(RemapError::Table(MapError::BadRange { gpa: 0, hpa, len }));
        }
        self.regions.push(HostRange { hpa, len });
        Ok(HostRegionId(self.regions.len() as u32 - 1))
    }

    /// Moves every time a change needs cached translations invalidated.
    pub fn generation(&self) -> u64 {
        self.generation
    }
}

/// One vCPU's view of the map generation it last invalidated at.
#[derive(Debug, Default, Clone, Copy)]
pub struct FlushTracker {
    seen: u64,
}

impl FlushTracker {
    /// Whether the vCPU must invalidate before its next entry; records that it will.
    pub fn needs_flush(&mut self, generation: u64) -> bool {
        let due = generation != self.seen;
        self.seen = generation;
        due
    }
}

/// The map as the VM loop and the exit path use it, whatever the table format.
pub trait VmMemoryMap: Send {
    fn apply(&mut self, change: &MemoryMapChange) -> Result<(), RemapError>;
    fn write_fault(&mut self, gpa: u64) -> bool;
    fn writes_to_ram(&self, gpa: u64) -> bool;
    fn take_dirty(&mut self, gpa: u64) -> Result<Vec<u64>, RemapError>;
    fn add_region(&mut self, hpa: u64, len: u64) -> Result<HostRegionId, RemapError>;
    fn generation(&self) -> u64;
    fn translate(&mut self, gpa: u64) -> Option<(u64, Permissions)>;
    fn hold_ram(&mut self, gpa: u64) -> Result<(), RemapError>;
    fn is_held(&self, gpa: u64) -> bool;
    fn held_by(&self, change: &MemoryMapChange) -> Option<u64>;
    fn release_ram(&mut self, gpa: u64) -> Result<bool, RemapError>;
}

impl<F: EntryFormat + Send, M: TableMemory + Send> VmMemoryMap for GuestPhysMap<F, M> {
    fn apply(&mut self, change: &MemoryMapChange) -> Result<(), RemapError> {
        GuestPhysMap::apply(self, change)
    }
    fn write_fault(&mut self, gpa: u64) -> bool {
        GuestPhysMap::write_fault(self, gpa)
    }
    fn writes_to_ram(&self, gpa: u64) -> bool {
        GuestPhysMap::writes_to_ram(self, gpa)
    }
    fn take_dirty(&mut self, gpa: u64) -> Result<Vec<u64>, RemapError> {
        GuestPhysMap::take_dirty(self, gpa)
    }
    fn add_region(&mut self, hpa: u64, len: u64) -> Result<HostRegionId, RemapError> {
        GuestPhysMap::add_region(self, hpa, len)
    }
    fn generation(&self) -> u64 {
        self.generation
    }
    fn translate(&mut self, gpa: u64) -> Option<(u64, Permissions)> {
        GuestPhysMap::translate(self, gpa)
    }
    fn hold_ram(&mut self, gpa: u64) -> Result<(), RemapError> {
        GuestPhysMap::hold_ram(self, gpa)
    }
    fn is_held(&self, gpa: u64) -> bool {
        GuestPhysMap::is_held(self, gpa)
    }
    fn held_by(&self, change: &MemoryMapChange) -> Option<u64> {
        GuestPhysMap::held_by(self, change)
    }
    fn release_ram(&mut self, gpa: u64) -> Result<bool, RemapError> {
        GuestPhysMap::release_ram(self, gpa)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::FakeTables;
    use super::super::{EptFormat, NptFormat, LARGE_PAGE_SIZE};
    use super::*;

    const RAM_HPA: u64 = 0x4000_0000;
    const RAM_LEN: u64 = 64 << 20;
    const ROM_HPA: u64 = 0x8000_0000;
    const ROM_LEN: u64 = 0x2_0000;
    const LAPIC: Range<u64> = 0xfee0_0000..0xfee0_1000;
    const IOAPIC: Range<u64> = 0xfec0_0000..0xfec0_1000;

    fn vm<F: EntryFormat>() -> GuestPhysMap<F, FakeTables> {
        vm_mapping(&[(0, RAM_HPA, RAM_LEN, Permissions::RWX)])
    }

    /// The test VM's map with its table made of `maps` alone.
    fn vm_mapping<F: EntryFormat>(
        maps: &[(u64, u64, u64, Permissions)],
    ) -> GuestPhysMap<F, FakeTables> {
        let mut mem = FakeTables::default();
        let table =
            NestedPageTable::<F>::with_mappings(&mut mem, 2, Vec::new(), maps.iter().copied())
                .unwrap();
        GuestPhysMap::new(
            table,
            mem,
            GuestLayout {
                ram_hpa: RAM_HPA,
                ram_len: RAM_LEN,
                rom_hpa: ROM_HPA,
                rom_len: ROM_LEN,
                gpa_limit: 1 << 36,
                fixed: alloc::vec![IOAPIC, LAPIC],
            },
        )
    }

    fn ram(gpa: u64, len: u64, writes: Writes) -> MemoryMapChange {
        MemoryMapChange::Map {
            gpa,
            len,
            backing: Backing::Ram { offset: gpa },
            writes,
        }
    }

    /// A VM whose RAM the table maps but for chunks 3 and 5 (held back).
    fn vm_holding<F: EntryFormat>() -> GuestPhysMap<F, FakeTables> {
        const C: u64 = ZEROING_CHUNK;
        let mut m = vm_mapping::<F>(&[
            (0, RAM_HPA, 3 * C, Permissions::RWX),
            (4 * C, RAM_HPA + 4 * C, C, Permissions::RWX),
            (6 * C, RAM_HPA + 6 * C, RAM_LEN - 6 * C, Permissions::RWX),
        ]);
        m.hold_ram(3 * C).unwrap();
        m.hold_ram(5 * C).unwrap();
        m
    }

    #[test]
    fn held_ram_stays_unmapped_until_released_and_no_change_reaches_it() {
        const C: u64 = ZEROING_CHUNK;
        fn check<F: EntryFormat>() {
            let mut m = vm_holding::<F>();
            assert!(m.is_held(3 * C + 0x1234) && m.is_held(5 * C) && !m.is_held(4 * C));
            assert_eq!(m.translate(3 * C + 0x1000), None);
            assert_eq!(m.held_in(2 * C, None, C + 1), Some(3 * C));
            assert_eq!(m.held_in(4 * C, None, C), None);
            // A RAM backing from a held chunk shown elsewhere is refused too.
            assert_eq!(m.held_in(4 * C, Some(5 * C), 0x1000), Some(5 * C));
            // Only whole unmapped chunks inside RAM can be held.
            assert!(m.hold_ram(4 * C).is_err(), "mapped");
            assert!(m.hold_ram(3 * C + 0x1000).is_err(), "not a chunk's start");
            assert!(m.hold_ram(RAM_LEN).is_err(), "past RAM");
            // Every kind of change over a held chunk waits for its release.
            for (change, held) in [
                (ram(3 * C, 0x1000, Writes::Dropped), 3 * C),
                (
                    MemoryMapChange::Unmap {
                        gpa: 5 * C + 0x1000,
                        len: 0x1000,
                    },
                    5 * C,
                ),
                (
                    MemoryMapChange::DirtyLog {
                        gpa: 2 * C,
                        len: 2 * C,
                        on: true,
                    },
                    3 * C,
                ),
                (
                    MemoryMapChange::Map {
                        gpa: 4 * C,
                        len: 0x1000,
                        backing: Backing::Ram { offset: 5 * C },
                        writes: Writes::Allowed,
                    },
                    5 * C,
                ),
            ] {
                assert_eq!(
                    m.apply(&change),
                    Err(RemapError::Held { gpa: held }),
                    "{change:?}"
                );
            }
            assert_eq!(
                m.translate(4 * C),
                Some((RAM_HPA + 4 * C, Permissions::RWX))
            );
            // Released: mapped as the rest of RAM, with no flush asked for.
            let g = m.generation();
            assert_eq!(m.release_ram(3 * C + 0x5678), Ok(true));
            assert!(!m.is_held(3 * C));
            assert_eq!(
                m.translate(3 * C),
                Some((RAM_HPA + 3 * C, Permissions::RWX))
            );
            assert_eq!(
                m.translate(4 * C - 0x1000),
                Some((RAM_HPA + 4 * C - 0x1000, Permissions::RWX))
            );
            assert_eq!(m.generation(), g);
            assert_eq!(m.release_ram(3 * C), Ok(false), "once");
            assert_eq!(m.release_ram(4 * C), Ok(false), "never held");
            m.apply(&ram(3 * C, 0x1000, Writes::Dropped)).unwrap();
        }
        check::<NptFormat>();
        check::<EptFormat>();
    }

    /// A chunk released inside a dirty log (one started while the chunk
    /// was unmapped, before it was held) is write-protected and tracked
    /// like the log's other pages.
    #[test]
    fn a_chunk_released_inside_a_dirty_log_is_logged() {
        const C: u64 = ZEROING_CHUNK;
        let mut m = vm_mapping::<NptFormat>(&[
            (0, RAM_HPA, 5 * C, Permissions::RWX),
            (6 * C, RAM_HPA + 6 * C, RAM_LEN - 6 * C, Permissions::RWX),
        ]);
        m.apply(&MemoryMapChange::DirtyLog {
            gpa: 4 * C,
            len: 3 * C,
            on: true,
        })
        .unwrap();
        m.hold_ram(5 * C).unwrap();
        assert_eq!(m.release_ram(5 * C), Ok(true));
        assert!(m.translate(5 * C + 0x3000).is_some_and(|(_, p)| !p.write));
        assert!(m.write_fault(5 * C + 0x3000), "tracked by the log");
        assert!(m.translate(5 * C + 0x3000).is_some_and(|(_, p)| p.write));
        assert!(
            m.translate(3 * C).is_some_and(|(_, p)| p.write),
            "outside the log"
        );
    }

    #[test]
    fn unmap_and_protect_split_large_pages_and_ask_for_a_flush() {
        let mut m = vm::<NptFormat>();
        let mut cpu0 = FlushTracker::default();
        let mut cpu1 = FlushTracker::default();
        assert!(!cpu0.needs_flush(m.generation()));
        let tables = m.mem.pages.len();
        m.apply(&MemoryMapChange::Unmap {
            gpa: 0xa_0000,
            len: 0x2_0000,
        })
        .unwrap();
        assert_eq!(
            m.mem.pages.len(),
            tables + 1,
            "the first 2 MiB page was split"
        );
        assert_eq!(m.translate(0xa_0000), None);
        assert_eq!(m.translate(0xb_ffff), None);
        assert_eq!(
            m.translate(0x9_f000),
            Some((RAM_HPA + 0x9_f000, Permissions::RWX))
        );
        assert_eq!(
            m.translate(0xc_0000),
            Some((RAM_HPA + 0xc_0000, Permissions::RWX))
        );
        // Every vCPU flushes once for the change, then not again.
        assert!(cpu0.needs_flush(m.generation()) && cpu1.needs_flush(m.generation()));
        assert!(!cpu0.needs_flush(m.generation()));
        // Read-only RAM (a shadowed ROM segment): a permission change, flushed too.
        let g = m.generation();
        m.apply(&ram(0xf_0000, 0x1_0000, Writes::Dropped)).unwrap();
        assert!(m.generation() > g);
        assert_eq!(
            m.translate(0xf_8000),
            Some((RAM_HPA + 0xf_8000, Permissions::RX))
        );
        // Mapping into an empty range needs no flush.
        let g = m.generation();
        m.apply(&ram(0xa_0000, 0x2_0000, Writes::Allowed)).unwrap();
        assert_eq!(m.generation(), g);
        assert_eq!(
            m.translate(0xa_0000),
            Some((RAM_HPA + 0xa_0000, Permissions::RWX))
        );
    }

    #[test]
    fn protect_splits_and_keeps_whole_pages_inside_the_range() {
        let mut mem = FakeTables::default();
        let mut t = NestedPageTable::<EptFormat>::new(&mut mem, 2, Vec::new()).unwrap();
        t.map(&mut mem, 0, RAM_HPA, 8 << 20, Permissions::RWX)
            .unwrap();
        let before = mem.pages.len();
        // 2 MiB-aligned whole pages stay large; the partial one at the end is split.
        assert_eq!(
            t.protect(
                &mut mem,
                0,
                2 * LARGE_PAGE_SIZE + 0x1000,
                Permissions::RX,
                3
            ),
            Ok(true)
        );
        assert_eq!(mem.pages.len(), before + 1);
        assert_eq!(
            t.translate(&mut mem, 0x3f_ffff),
            Some((RAM_HPA + 0x3f_ffff, Permissions::RX))
        );
        assert_eq!(
            t.translate(&mut mem, 0x40_0000),
            Some((RAM_HPA + 0x40_0000, Permissions::RX))
        );
        assert_eq!(
            t.translate(&mut mem, 0x40_1000),
            Some((RAM_HPA + 0x40_1000, Permissions::RWX))
        );
        assert_eq!(
            t.protect(&mut mem, 0, 0x1000, Permissions::RX, 3),
            Ok(false),
            "no change, no flush"
        );
    }

    #[test]
    fn bios_rom_backing_maps_the_image_and_leaves_the_rest_to_the_bus() {
        let mut m = vm::<EptFormat>();
        m.apply(&MemoryMapChange::Map {
            gpa: 0xc_0000,
            len: 0x4_0000,
            backing: Backing::BiosRom,
            writes: Writes::ToRam,
        })
        .unwrap();
        assert_eq!(
            m.translate(0xd_c000),
            None,
            "no ROM below the 128 KiB image"
        );
        assert_eq!(m.translate(0xe_0000), Some((ROM_HPA, Permissions::RX)));
        assert_eq!(
            m.translate(0xf_fff0),
            Some((ROM_HPA + 0x1_fff0, Permissions::RX))
        );
        assert!(m.writes_to_ram(0xc_0000) && m.writes_to_ram(0xf_ffff));
        m.apply(&ram(0xc_0000, 0x4_0000, Writes::Allowed)).unwrap();
        assert!(!m.writes_to_ram(0xe_0000));
        assert_eq!(
            m.translate(0xe_0000),
            Some((RAM_HPA + 0xe_0000, Permissions::RWX))
        );
    }

    #[test]
    fn requests_for_ranges_that_are_not_the_guests_are_refused() {
        let mut m = vm::<NptFormat>();
        let unaligned = MemoryMapChange::Unmap {
            gpa: 0x123,
            len: 0x1000,
        };
        assert!(matches!(
            m.apply(&unaligned),
            Err(RemapError::OutsideGuest { .. })
        ));
        let past = MemoryMapChange::Unmap {
            gpa: (1 << 36) - 0x1000,
            len: 0x2000,
        };
        assert!(matches!(
            m.apply(&past),
            Err(RemapError::OutsideGuest { .. })
        ));
        let wraps = MemoryMapChange::Unmap {
            gpa: !0xfff,
            len: 0x2000,
        };
        assert!(matches!(
            m.apply(&wraps),
            Err(RemapError::OutsideGuest { .. })
        ));
        let empty = MemoryMapChange::Unmap { gpa: 0, len: 0 };
        assert!(matches!(
            m.apply(&empty),
            Err(RemapError::OutsideGuest { .. })
        ));
        let region = m.add_region(0x9000_0000, 0x10_0000).unwrap();
        let over = |gpa| MemoryMapChange::Map {
            gpa,
            len: 0x10_0000,
            backing: Backing::Region {
                id: region,
                offset: 0,
            },
            writes: Writes::Allowed,
        };
        assert!(matches!(
            m.apply(&over(0xfee0_0000)),
            Err(RemapError::Refused { .. })
        ));
        assert!(matches!(
            m.apply(&over(0xfeb8_0000)),
            Err(RemapError::Refused { .. })
        ));
        assert!(
            matches!(
                m.apply(&over(0x10_0000)),
                Err(RemapError::BadBacking { .. })
            ),
            "over RAM"
        );
        let long = MemoryMapChange::Map {
            gpa: 0xe000_0000,
            len: 0x20_0000,
            backing: Backing::Region {
                id: region,
                offset: 0,
            },
            writes: Writes::Allowed,
        };
        assert!(matches!(m.apply(&long), Err(RemapError::BadBacking { .. })));
        let nobody = MemoryMapChange::Map {
            gpa: 0xe000_0000,
            len: 0x1000,
            backing: Backing::Region {
                id: HostRegionId(7),
                offset: 0,
            },
            writes: Writes::Allowed,
        };
        assert!(matches!(
            m.apply(&nobody),
            Err(RemapError::BadBacking { .. })
        ));
        assert!(matches!(
            m.apply(&ram(RAM_LEN - 0x1000, 0x2000, Writes::Allowed)),
            Err(RemapError::BadBacking { .. })
        ));
        assert!(
            matches!(
                m.apply(&MemoryMapChange::Map {
                    gpa: 0xf_0000,
                    len: 0x2_0000,
                    backing: Backing::BiosRom,
                    writes: Writes::Dropped
                }),
                Err(RemapError::BadBacking { .. })
            ),
            "the BIOS ROM ends at 1 MiB"
        );
        // Nothing changed: RAM is all there and nothing was flushed.
        assert_eq!(m.generation(), 0);
        assert_eq!(
            m.translate(RAM_LEN - 0x1000),
            Some((RAM_HPA + RAM_LEN - 0x1000, Permissions::RWX))
        );
        assert_eq!(m.translate(0xe000_0000), None);
    }

    #[test]
    fn a_ram_backed_bar_moves_and_goes() {
        let mut m = vm::<NptFormat>();
        let fb = m.add_region(0x9000_0000, 0x40_0000).unwrap();
        let at = |gpa| MemoryMapChange::Map {
            gpa,
            len: 0x40_0000,
            backing: Backing::Region { id: fb, offset: 0 },
            writes: Writes::Allowed,
        };
        m.apply(&at(0xe000_0000)).unwrap();
        assert_eq!(
            m.translate(0xe012_3456),
            Some((0x9012_3456, Permissions::RWX))
        );
        m.apply(&MemoryMapChange::Unmap {
            gpa: 0xe000_0000,
            len: 0x40_0000,
        })
        .unwrap();
        m.apply(&at(0xf000_0000)).unwrap();
        assert_eq!(m.translate(0xe012_3456), None);
        assert_eq!(
            m.translate(0xf000_0000),
            Some((0x9000_0000, Permissions::RWX))
        );
    }

    #[test]
    fn dirty_log_faults_once_per_page_until_taken() {
        let mut m = vm::<EptFormat>();
        let fb = 0x20_0000;
        let len = 0x10_0000;
        // A read-only page inside the range is not tracked.
        m.apply(&ram(fb + 0x5000, 0x1000, Writes::Dropped)).unwrap();
        m.apply(&MemoryMapChange::DirtyLog {
            gpa: fb,
            len,
            on: true,
        })
        .unwrap();
        let mut cpu = FlushTracker::default();
        assert!(cpu.needs_flush(m.generation()));
        assert_eq!(m.translate(fb + 0x3000).unwrap().1, Permissions::RX);
        assert_eq!(
            m.translate(fb + len).unwrap().1,
            Permissions::RWX,
            "outside the log"
        );
        assert!(m.write_fault(fb + 0x3008));
        assert!(
            cpu.needs_flush(m.generation()),
            "the restored page is invalidated"
        );
        assert_eq!(m.translate(fb + 0x3000).unwrap().1, Permissions::RWX);
        assert!(m.write_fault(fb + 0xf_f000));
        assert!(
            !m.write_fault(fb + 0x5000),
            "read-only before logging: the emulator's"
        );
        assert!(!m.write_fault(fb + len), "not logged");
        let dirty = m.take_dirty(fb).unwrap();
        assert_eq!(dirty.len(), 4);
        assert_eq!(dirty[0], 1 << 3);
        assert_eq!(dirty[3], 1 << 63);
        assert_eq!(
            m.translate(fb + 0x3000).unwrap().1,
            Permissions::RX,
            "protected again"
        );
        assert!(cpu.needs_flush(m.generation()));
        assert_eq!(m.take_dirty(fb).unwrap(), alloc::vec![0u64; 4]);
        assert!(
            !cpu.needs_flush(m.generation()),
            "nothing was dirty: no flush"
        );
        // Off: every tracked page writable again; the read-only one stays so.
        m.apply(&MemoryMapChange::DirtyLog {
            gpa: fb,
            len,
            on: false,
        })
        .unwrap();
        assert_eq!(m.translate(fb + 0x3000).unwrap().1, Permissions::RWX);
        assert_eq!(m.translate(fb + 0x5000).unwrap().1, Permissions::RX);
        assert!(!m.write_fault(fb + 0x3000));
        assert!(m.take_dirty(fb).is_err());
    }

    #[test]
    fn dirty_logs_are_bounded() {
        let mut m = vm::<NptFormat>();
        for i in 0..MAX_DIRTY_LOGS as u64 {
            m.apply(&MemoryMapChange::DirtyLog {
                gpa: i << 20,
                len: 0x1000,
                on: true,
            })
            .unwrap();
        }
        let one_more = MemoryMapChange::DirtyLog {
            gpa: 32 << 20,
            len: 0x1000,
            on: true,
        };
        assert!(matches!(m.apply(&one_more), Err(RemapError::Limit(_))));
        let overlap = MemoryMapChange::DirtyLog {
            gpa: 0,
            len: 0x1000,
            on: true,
        };
        m.apply(&MemoryMapChange::DirtyLog {
            gpa: 1 << 20,
            len: 0x1000,
            on: false,
        })
        .unwrap();
        assert!(matches!(m.apply(&overlap), Err(RemapError::Limit(_))));
        let huge = MemoryMapChange::DirtyLog {
            gpa: 0,
            len: 2 << 30,
            on: true,
        };
        assert!(m.apply(&huge).is_err());
    }

    #[test]
    fn out_of_table_pages_refuses_and_still_asks_for_a_flush() {
        let mut mem = FakeTables::default();
        let maps = [(0, RAM_HPA, RAM_LEN, Permissions::RWX)];
        let table =
            NestedPageTable::<NptFormat>::with_mappings(&mut mem, 2, Vec::new(), maps).unwrap();
        mem.limit = Some(mem.pages.len());
        let mut m = GuestPhysMap::new(
            table,
            mem,
            GuestLayout {
                ram_hpa: RAM_HPA,
                ram_len: RAM_LEN,
                rom_hpa: ROM_HPA,
                rom_len: ROM_LEN,
                gpa_limit: 1 << 36,
                fixed: Vec::new(),
            },
        );
        let r = m.apply(&MemoryMapChange::Unmap {
            gpa: 0xa_0000,
            len: 0x1000,
        });
        assert_eq!(r, Err(RemapError::Table(MapError::OutOfMemory)));
        assert_eq!(m.generation(), 1);
        assert!(m.translate(0xa_0000).is_some());
    }
}
