//! PCI bus 0: the functions behind the host bridge, by device and function number.
//!
//! Keel's PC has one PCI bus and no PCI-to-PCI bridges, so configuration
//! cycles for any other bus number, and for device/function numbers where
//! nothing is plugged in, read all-ones (spec 3.2.2.3.2: a master abort on a
//! configuration read returns `0xFFFFFFFF`, which software takes as vendor ID
//! `0xFFFF`, "no device") and writes to them are dropped.

use alloc::collections::BTreeMap;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;
use spin::Mutex;

use super::{Bdf, ConfigChange, PciEvent, PciFunction};

/// A shared function: the bus keeps one clone, the platform keeps a typed
/// one (to ask the i440FX for its PAM map, or press the power button).
pub type PciFunctionHandle = Arc<Mutex<dyn PciFunction>>;

/// Why a function could not be plugged in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PciBusError {
    /// Something already answers at this address.
    Occupied { bdf: Bdf, existing: &'static str },
    /// Only bus 0 exists.
    NoSuchBus { bdf: Bdf },
    /// Every slot of bus 0 has a device.
    NoFreeSlot,
}

impl fmt::Display for PciBusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PciBusError::Occupied { bdf, existing } => {
                write!(f, "PCI address {bdf} is already taken by '{existing}'")
            }
            PciBusError::NoSuchBus { bdf } => {
                write!(
                    f,
                    "PCI address {bdf} is not on bus 0, the only bus Keel's PC has"
                )
            }
            PciBusError::NoFreeSlot => write!(f, "every slot of PCI bus 0 is taken"),
        }
    }
}

struct Slot {
    name: &'static str,
    function: PciFunctionHandle,
}

/// Events one configuration write can raise at most: a dword write
/// changes one BAR, four PAM bytes (eight segments), SMRAM, or four PIRQ
/// routes.
pub const MAX_EVENTS_PER_WRITE: usize = 16;

/// Events the bus holds between two looks of the platform: the platform
/// drains them after every write that reached the configuration ports; a
/// reset queues at most a few per function.
pub const EVENT_CAPACITY: usize = 64;

/// Bus 0 and the events its functions raised since the platform last looked.
pub struct PciBus {
    /// Keyed by `device << 3 | function`.
    slots: BTreeMap<u8, Slot>,
    /// Queued events; its [`EVENT_CAPACITY`] is allocated with the bus.
    events: Vec<PciEvent>,
    /// The changes of the function being written, reused for every write.
    changes: Vec<ConfigChange>,
    /// Events dropped because the queue was full since the last look.
    dropped: u64,
}

impl Default for PciBus {
    fn default() -> Self {
        Self::new()
    }
}

impl PciBus {
    /// A bus with nothing plugged in.
    pub fn new() -> Self {
        PciBus {
            slots: BTreeMap::new(),
            events: Vec::with_capacity(EVENT_CAPACITY),
            changes: Vec::with_capacity(MAX_EVENTS_PER_WRITE),
            dropped: 0,
        }
    }

    /// Plugs `function` in at `bdf` (bus 0).
    pub fn add(
        &mut self,
        bdf: Bdf,
        name: &'static str,
        function: PciFunctionHandle,
    ) -> Result<(), PciBusError> {
        if bdf.bus != 0 {
            return Err(PciBusError::NoSuchBus { bdf });
        }
        let key = devfn(bdf);
        if let Some(s) = self.slots.get(&key) {
            return Err(PciBusError::Occupied {
                bdf,
                existing: s.name,
            });
        }
        self.slots.insert(key, Slot { name, function });
        Ok(())
    }

    /// Takes the function at `bdf` off the bus: its configuration space
    /// reads all-ones from now on, as an empty slot does (PCI Local Bus
    /// 3.0, 6.1). Returns whether one was there.
    pub fn remove(&mut self, bdf: Bdf) -> bool {
        bdf.bus == 0 && self.slots.remove(&devfn(bdf)).is_some()
    }

    /// Function 0 of the first device number, from `first` up, with no
    /// function plugged in.
    pub fn free_slot(&self, first: u8) -> Option<Bdf> {
        (first..32)
            .find(|&d| !self.slots.keys().any(|&k| k >> 3 == d))
            .and_then(|d| Bdf::new(0, d, 0))
    }

    /// Reads configuration space of `bdf` at `offset`; all-ones where
    /// nothing answers. `offset + data.len()` must stay inside one dword
    /// (the config mechanism guarantees it); other reads are all-ones.
    pub fn config_read(&self, bdf: Bdf, offset: u8, data: &mut [u8]) {
        data.fill(0xFF);
        if !in_one_dword(offset, data.len()) {
            return;
        }
        if let Some(s) = self.lookup(bdf) {
            s.function.lock().config_read(offset, data);
        }
    }

    /// Writes configuration space of `bdf` at `offset` and queues the
    /// events it caused; dropped where nothing answers.
    pub fn config_write(&mut self, bdf: Bdf, offset: u8, data: &[u8]) {
        if !in_one_dword(offset, data.len()) {
            return;
        }
        let Some(function) = self.lookup(bdf).map(|s| s.function.clone()) else {
            return;
        };
        let mut changes = core::mem::take(&mut self.changes);
        changes.clear();
        function.lock().config_write(offset, data, &mut changes);
        self.queue(bdf, &changes);
        self.changes = changes;
    }

    /// Moves the events raised since the last call into `out` (emptied
    /// first), oldest first. The bus keeps its queue's storage; an `out`
    /// allocated at [`EVENT_CAPACITY`] once never grows either.
    pub fn take_events_into(&mut self, out: &mut Vec<PciEvent>) {
        out.clear();
        out.extend_from_slice(&self.events);
        self.events.clear();
    }

    /// Events dropped since the last call because the queue was full; the
    /// platform stops the VM when there are any (a dropped BAR move would
    /// leave a device where the guest did not put it).
    pub fn take_dropped(&mut self) -> u64 {
        core::mem::take(&mut self.dropped)
    }

    /// The events raised since the last call, oldest first.
    pub fn take_events(&mut self) -> Vec<PciEvent> {
        let mut out = Vec::with_capacity(EVENT_CAPACITY);
        self.take_events_into(&mut out);
        out
    }

    /// Resets every function (in address order) and queues what that changed.
    pub fn reset(&mut self) {
        for key in 0..=u8::MAX {
            let Some(s) = self.slots.get(&key) else {
                continue;
            };
            let mut changes = core::mem::take(&mut self.changes);
            changes.clear();
            s.function.lock().reset(&mut changes);
            self.queue(bdf_of(key), &changes);
            self.changes = changes;
        }
    }

    fn lookup(&self, bdf: Bdf) -> Option<&Slot> {
        if bdf.bus != 0 {
            return None;
        }
        self.slots.get(&devfn(bdf))
    }

    /// Queues `changes` within the queue's capacity: a guest access never
    /// grows it. An event that does not fit is dropped and counted
    /// ([`PciBus::take_dropped`]; the platform drains after every write, so
    /// only a platform bug gets there).
    fn queue(&mut self, bdf: Bdf, changes: &[ConfigChange]) {
        for &change in changes {
            if self.events.len() < self.events.capacity() {
                self.events.push(PciEvent { bdf, change });
            } else {
                self.dropped += 1;
                log::debug!("PCI {bdf}: event queue full, {change:?} dropped");
            }
        }
    }
}

fn devfn(bdf: Bdf) -> u8 {
    (bdf.device & 31) << 3 | (bdf.function & 7)
}

fn bdf_of(devfn: u8) -> Bdf {
    Bdf {
        bus: 0,
        device: devfn >> 3,
        function: devfn & 7,
    }
}

fn in_one_dword(offset: u8, len: usize) -> bool {
    matches!(len, 1 | 2 | 4) && usize::from(offset & 3) + len <= 4
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::AddressSpace;
    use crate::pci::{BarKind, ConfigSpace, RegionId};
    use alloc::string::ToString;
    use alloc::vec;

    struct Dev(ConfigSpace);
    impl PciFunction for Dev {
        fn config_read(&mut self, offset: u8, data: &mut [u8]) {
            self.0.read(offset, data)
        }
        fn config_write(&mut self, offset: u8, data: &[u8], changes: &mut Vec<ConfigChange>) {
            self.0.write(offset, data, changes)
        }
        fn reset(&mut self, changes: &mut Vec<ConfigChange>) {
            self.0.reset(changes)
        }
    }

    fn dev() -> PciFunctionHandle {
        let mut cs = ConfigSpace::new(0x8086, 0x100E, 3, 0x02_00_00, 0);
        cs.add_bar(1, BarKind::Io, 64).unwrap();
        Arc::new(Mutex::new(Dev(cs)))
    }

    fn bdf(d: u8, f: u8) -> Bdf {
        Bdf::new(0, d, f).unwrap()
    }

    #[test]
    fn absent_functions_read_all_ones() {
        let mut bus = PciBus::new();
        bus.add(bdf(3, 0), "nic", dev()).unwrap();
        let mut b = [0u8; 4];
        bus.config_read(bdf(3, 0), 0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x100E_8086);
        for other in [
            bdf(3, 1),
            bdf(4, 0),
            Bdf {
                bus: 1,
                device: 3,
                function: 0,
            },
        ] {
            bus.config_read(other, 0, &mut b);
            assert_eq!(b, [0xFF; 4], "{other}");
            bus.config_write(other, 0x14, &[0x01, 0xC0, 0, 0]);
        }
        assert!(bus.take_events().is_empty());
    }

    #[test]
    fn writes_queue_events_tagged_with_the_function() {
        let mut bus = PciBus::new();
        bus.add(bdf(3, 0), "nic", dev()).unwrap();
        bus.config_write(bdf(3, 0), 0x14, &0xC000u32.to_le_bytes());
        bus.config_write(bdf(3, 0), 0x04, &[1]);
        let change = ConfigChange::Region {
            id: RegionId::Bar(1),
            space: AddressSpace::Pio,
            len: 64,
            old: None,
            new: Some(0xC000),
        };
        assert_eq!(
            bus.take_events(),
            vec![PciEvent {
                bdf: bdf(3, 0),
                change
            }]
        );
        assert!(bus.take_events().is_empty());
        bus.reset();
        assert_eq!(bus.take_events().len(), 1);
    }

    /// Issue 11: the queue never grows past the capacity it was made with;
    /// what does not fit is counted for the platform to stop the VM.
    #[test]
    fn a_full_event_queue_drops_and_counts_instead_of_growing() {
        let mut bus = PciBus::new();
        bus.add(bdf(3, 0), "nic", dev()).unwrap();
        bus.config_write(bdf(3, 0), 0x14, &0xC000u32.to_le_bytes());
        // I/O decode on and off: one event each.
        for i in 0..EVENT_CAPACITY + 10 {
            bus.config_write(bdf(3, 0), 0x04, &[(i & 1 == 0) as u8]);
        }
        assert_eq!(bus.take_dropped(), 10);
        assert_eq!(bus.take_dropped(), 0);
        let mut out = Vec::new();
        bus.take_events_into(&mut out);
        assert_eq!(out.len(), EVENT_CAPACITY);
        assert!(
            bus.events.capacity() == EVENT_CAPACITY,
            "the queue did not grow"
        );
    }

    #[test]
    fn accesses_crossing_a_dword_are_refused() {
        let mut bus = PciBus::new();
        bus.add(bdf(3, 0), "nic", dev()).unwrap();
        let mut b = [0u8; 2];
        bus.config_read(bdf(3, 0), 3, &mut b);
        assert_eq!(b, [0xFF; 2]);
        let mut b = [0u8; 3];
        bus.config_read(bdf(3, 0), 0, &mut b);
        assert_eq!(b, [0xFF; 3]);
    }

    #[test]
    fn double_plugging_is_an_error() {
        let mut bus = PciBus::new();
        bus.add(bdf(3, 0), "nic", dev()).unwrap();
        assert_eq!(
            bus.add(bdf(3, 0), "other", dev()),
            Err(PciBusError::Occupied {
                bdf: bdf(3, 0),
                existing: "nic"
            })
        );
        let b1 = Bdf {
            bus: 1,
            device: 0,
            function: 0,
        };
        assert_eq!(
            bus.add(b1, "x", dev()),
            Err(PciBusError::NoSuchBus { bdf: b1 })
        );
        assert!(Bdf::new(0, 32, 0).is_none());
        assert!(Bdf::new(0, 0, 8).is_none());
        assert_eq!(bdf(1, 3).to_string(), "00:01.3");
    }
}
