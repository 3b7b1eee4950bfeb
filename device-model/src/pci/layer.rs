//! The PCI layer: what happens on the [`Bus`] when a guest sizes, moves,
//! enables or disables a BAR or ROM of a [`PciDevice`], the same for every
//! device.
//!
//! [`ConfigSpace`](super::ConfigSpace) decides where each region decodes
//! (sizing, the command register's I/O and memory enables, the ROM enable
//! bit, both halves of a 64-bit BAR) and reports each move as a
//! [`ConfigChange::Region`]. [`PciLayer::apply`] turns each report into a
//! bus registration:
//! - a BAR registers a window that hands accesses to the device with the
//!   offset inside the BAR ([`PciDevice::bar_read`]), except the MSI-X table
//!   and PBA, which the layer answers from the device's [`MsixCap`](super::MsixCap);
//! - the ROM BAR registers a read-only window over the device's option ROM
//!   image ([`PciDevice::rom_image`]). The ROM behaves as a ROM chip of the
//!   BAR's size holding the image and erased past it: reads past the image
//!   return `0xFF` bytes, writes are dropped.
//!
//! - a RAM BAR ([`PciDevice::ram_bar`]) registers the same window, and
//!   also asks for the device's host region to be mapped where it is
//!   decoded ([`MemoryMapQueue::ram_bar_moved`]), and unmapped when it stops.
//!
//! # Overlaps
//!
//! What real hardware does when two decoders claim one address is undefined
//! (PCI 3.0 6.2.5.1 leaves it to software not to program it). Keel's choice:
//! a region placed over guest RAM, over the chipset's fixed range
//! `0xFEC00000-0xFFFFFFFF` (IOAPIC, HPET, local APICs, the firmware) or over
//! any range already on the bus (another BAR, a legacy device) is not
//! decoded; the range that was there keeps working. The refusal is logged
//! (rate limited, `crates/guest-log`) and counted ([`PciLayer::refused`]).
//! The refused region stays wanted: once the conflict goes away (the other
//! BAR moves), it is decoded where the guest put it, as hardware would.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;

use guest_log::RateLimitedLog;
use log::Level;

use super::device::PciDeviceHandle;
use super::{Bdf, ConfigChange, PciEvent, RegionId};
use crate::bus::{AddressSpace, Bus, BusDevice, BusError, DeviceHandle};
use crate::memory_map::MemoryMapQueue;
use guest_memory::HostRegionId;

/// The start of the chipset's fixed range below 4 GiB (the IOAPIC), up to
/// the top of 32-bit space: no BAR may decode there.
pub const FIXED_RANGE_START: u64 = 0xFEC0_0000;
const FOUR_GIB: u64 = 1 << 32;
/// Regions per function: six BARs and the ROM.
const REGIONS: usize = 7;
const ROM_INDEX: usize = 6;

#[derive(Clone, Copy)]
struct Region {
    space: AddressSpace,
    len: u64,
    /// Where the guest programmed it to decode.
    wanted: Option<u64>,
    /// Whether it is on the bus at `wanted` (false: refused for an overlap).
    registered: bool,
}

struct Plugged {
    name: &'static str,
    dev: PciDeviceHandle,
    rom: Option<Arc<[u8]>>,
    /// The host region behind each RAM BAR.
    ram_bars: [Option<HostRegionId>; ROM_INDEX],
    regions: [Option<Region>; REGIONS],
}

impl Plugged {
    /// Where region `index` is on the bus, if it is.
    fn registered_at(&self, index: usize) -> Option<u64> {
        self.regions[index].and_then(|r| r.wanted.filter(|_| r.registered))
    }
}

/// The BARs and ROMs of the plugged devices and where they are on the bus.
pub struct PciLayer {
    devices: BTreeMap<Bdf, Plugged>,
    /// MMIO ranges `[base, last]` no region may cover, with what they are.
    reserved: Vec<(u64, u64, &'static str)>,
    log: RateLimitedLog,
    refused: u64,
    /// Where RAM BARs ask for their host region to be mapped.
    memory_map: MemoryMapQueue,
}

impl PciLayer {
    /// A layer for a VM whose RAM is `[0, ram_below_4g)` and
    /// `[4 GiB, 4 GiB + ram_above_4g)`; RAM BARs queue their map changes on
    /// `memory_map`.
    pub fn new(ram_below_4g: u64, ram_above_4g: u64, memory_map: MemoryMapQueue) -> Self {
        let mut reserved = Vec::new();
        if ram_below_4g > 0 {
            reserved.push((0, ram_below_4g - 1, "guest RAM"));
        }
        if ram_above_4g > 0 {
            reserved.push((
                FOUR_GIB,
                FOUR_GIB.saturating_add(ram_above_4g - 1),
                "guest RAM",
            ));
        }
        reserved.push((
            FIXED_RANGE_START,
            FOUR_GIB - 1,
            "the IOAPIC/HPET/local APIC/firmware range",
        ));
        PciLayer {
            devices: BTreeMap::new(),
            reserved,
            log: RateLimitedLog::new(),
            refused: 0,
            memory_map,
        }
    }

    /// Takes over the regions of `dev`, plugged in at `bdf`.
    pub fn insert(&mut self, bdf: Bdf, dev: PciDeviceHandle) {
        let (name, rom, ram_bars) = {
            let d = dev.lock();
            let mut ram_bars = [None; ROM_INDEX];
            for (bar, r) in ram_bars.iter_mut().enumerate() {
                *r = d.ram_bar(bar as u8);
            }
            (d.name(), d.rom_image(), ram_bars)
        };
        self.devices.insert(
            bdf,
            Plugged {
                name,
                dev,
                rom,
                ram_bars,
                regions: [None; REGIONS],
            },
        );
    }

    /// Takes the regions of the device at `bdf` off `bus` and forgets it
    /// (the device left the PCI bus). RAM BARs are unmapped.
    pub fn remove(&mut self, bus: &mut Bus, bdf: Bdf) {
        let Some(p) = self.devices.remove(&bdf) else {
            return;
        };
        for (index, r) in p.regions.iter().enumerate() {
            let Some(Region {
                space,
                len,
                wanted: Some(base),
                registered: true,
            }) = *r
            else {
                continue;
            };
            bus.unregister(space, base);
            if let Some(Some(id)) = p.ram_bars.get(index) {
                self.memory_map.ram_bar_moved(*id, len, Some(base), None);
            }
        }
    }

    /// How many placements were refused for an overlap since the VM started.
    pub fn refused(&self) -> u64 {
        self.refused
    }

    /// Applies `event` if it is a BAR or ROM of a device this layer holds;
    /// returns false for anything else (the platform's own functions).
    pub fn apply(&mut self, bus: &mut Bus, event: &PciEvent) -> bool {
        let ConfigChange::Region {
            id,
            space,
            len,
            new,
            ..
        } = event.change
        else {
            return false;
        };
        let index = match id {
            RegionId::Bar(n) if usize::from(n) < ROM_INDEX => usize::from(n),
            RegionId::Rom => ROM_INDEX,
            _ => return false,
        };
        let Some(p) = self.devices.get_mut(&event.bdf) else {
            return false;
        };
        let was = p.registered_at(index);
        if let Some(Region {
            space,
            wanted: Some(base),
            registered: true,
            ..
        }) = p.regions[index]
        {
            bus.unregister(space, base);
        }
        let mut region = Region {
            space,
            len,
            wanted: new,
            registered: false,
        };
        if let Some(base) = new {
            match place(&self.reserved, bus, p, index, space, base, len) {
                Ok(()) => region.registered = true,
                Err(what) => {
                    self.refused = self.refused.saturating_add(1);
                    self.log.log(
                        Level::Warn,
                        format_args!(
                            "PCI {} '{}': guest placed {} at {space} {base:#x}+{len:#x}, over {what}: not decoded while they overlap",
                            event.bdf,
                            p.name,
                            region_name(index),
                        ),
                    );
                }
            }
        }
        p.regions[index] = Some(region);
        let now = p.registered_at(index);
        if let Some(Some(id)) = p.ram_bars.get(index) {
            if was != now {
                self.memory_map.ram_bar_moved(*id, len, was, now);
            }
        }
        true
    }

    /// Tries again to decode every region refused earlier (another region
    /// may have moved out of its way). Call after applying a batch of events.
    pub fn retry_refused(&mut self, bus: &mut Bus) {
        for p in self.devices.values_mut() {
            for index in 0..REGIONS {
                let Some(r) = p.regions[index] else { continue };
                let (Some(base), false) = (r.wanted, r.registered) else {
                    continue;
                };
                if place(&self.reserved, bus, p, index, r.space, base, r.len).is_ok() {
                    if let Some(r) = &mut p.regions[index] {
                        r.registered = true;
                    }
                    if let Some(Some(id)) = p.ram_bars.get(index) {
                        self.memory_map.ram_bar_moved(*id, r.len, None, Some(base));
                    }
                }
            }
        }
    }
}

fn region_name(index: usize) -> &'static str {
    [
        "BAR0",
        "BAR1",
        "BAR2",
        "BAR3",
        "BAR4",
        "BAR5",
        "the ROM BAR",
    ][index.min(ROM_INDEX)]
}

/// Registers region `index` of `p` at `base`, or says what is in the way.
fn place(
    reserved: &[(u64, u64, &'static str)],
    bus: &mut Bus,
    p: &Plugged,
    index: usize,
    space: AddressSpace,
    base: u64,
    len: u64,
) -> Result<(), &'static str> {
    let last = base
        .checked_add(len.saturating_sub(1))
        .ok_or("the top of the address space")?;
    if space == AddressSpace::Mmio {
        if let Some(&(_, _, what)) = reserved.iter().find(|&&(b, l, _)| base <= l && last >= b) {
            return Err(what);
        }
    }
    let window: DeviceHandle = if index == ROM_INDEX {
        Arc::new(Mutex::new(RomWindow {
            image: p.rom.clone().unwrap_or_else(|| Arc::from(Vec::new())),
        }))
    } else {
        Arc::new(Mutex::new(BarWindow {
            dev: p.dev.clone(),
            bar: index as u8,
        }))
    };
    let result = match space {
        AddressSpace::Pio => {
            let (Ok(b), Ok(l)) = (u16::try_from(base), u16::try_from(len)) else {
                return Err("the top of the port space");
            };
            bus.register_pio(b, l, p.name, window)
        }
        AddressSpace::Mmio => bus.register_mmio(base, len, p.name, window),
    };
    result.map_err(|e| match e {
        BusError::Overlap { existing, .. } => existing,
        BusError::Empty { .. } | BusError::Wraps { .. } => "the end of the address space",
    })
}

/// A BAR on the bus: accesses go to the device with the offset in the BAR;
/// the MSI-X table and PBA are answered by the device's capability.
struct BarWindow {
    dev: PciDeviceHandle,
    bar: u8,
}

impl BusDevice for BarWindow {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let mut dev = self.dev.lock();
        if let Some((msix, _)) = dev.msix() {
            if msix.bar_read(self.bar, offset, data) {
                return;
            }
        }
        dev.bar_read(self.bar, offset, data);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let mut dev = self.dev.lock();
        if let Some((msix, _)) = dev.msix() {
            if msix.bar_write(self.bar, offset, data) {
                return;
            }
        }
        dev.bar_write(self.bar, offset, data);
    }
}

/// An enabled ROM BAR: the image, then erased bytes (`0xFF`) to the BAR's
/// end. Read-only: writes are dropped.
struct RomWindow {
    image: Arc<[u8]>,
}

impl BusDevice for RomWindow {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset.saturating_add(i as u64))
                .ok()
                .and_then(|o| self.image.get(o).copied())
                .unwrap_or(0xFF);
        }
    }

    fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests;
