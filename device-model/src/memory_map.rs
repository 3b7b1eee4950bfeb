//! The device model's requests to change the guest-physical map
//! ([`MemoryMapChange`], defined in `guest-memory` so the VMM applies the
//! same type): the i440FX PAM segments and SMRAM window, the A20 gate, and
//! RAM-backed PCI BARs. Devices queue them on a [`MemoryMapQueue`]; the VM
//! loop takes them ([`crate::Pc::take_memory_map_changes`]) and applies them
//! to the nested page tables before any vCPU enters the guest again.

use alloc::sync::Arc;
use alloc::vec::Vec;

use guest_log::RateLimitedLog;
use guest_memory::{Backing, HostRegionId, MemoryMapChange, Writes};
use log::Level;
use spin::Mutex;

use crate::pci::{PamMode, PamSegment};

/// Changes a queue holds between two drains. The chipset makes at most 14
/// per config write (13 PAM segments and SMRAM), and the loop drains before
/// every entry, so only a device bug reaches this; the change is then dropped
/// and logged.
pub const MAX_QUEUED_CHANGES: usize = 256;

/// The legacy video / SMRAM window (i440FX datasheet 3.2.24: C_BASE_SEG = 010).
pub const SMRAM_WINDOW: (u64, u64) = (0xA_0000, 0x2_0000);
/// The high memory area: what real-mode code reaches above 1 MiB
/// (`FFFF:0010`-`FFFF:FFFF`), which wraps to 0 while A20 is off.
pub const HMA: (u64, u64) = (0x10_0000, 0x1_0000);

#[derive(Default)]
struct Queue {
    changes: Vec<MemoryMapChange>,
    overflow: RateLimitedLog,
}

/// Where devices queue [`MemoryMapChange`]s; clones share the queue.
#[derive(Clone, Default)]
pub struct MemoryMapQueue {
    inner: Arc<Mutex<Queue>>,
}

impl MemoryMapQueue {
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `change`; beyond [`MAX_QUEUED_CHANGES`] it is dropped and logged.
    pub fn push(&self, change: MemoryMapChange) {
        let mut q = self.inner.lock();
        if q.changes.len() >= MAX_QUEUED_CHANGES {
            q.overflow.log(
                Level::Warn,
                format_args!("guest-physical map change {change:?} dropped: {MAX_QUEUED_CHANGES} already queued"),
            );
            return;
        }
        q.changes.push(change);
    }

    /// Everything queued, oldest first.
    pub fn take(&self) -> Vec<MemoryMapChange> {
        core::mem::take(&mut self.inner.lock().changes)
    }

    /// For the PCI layer: a memory BAR backed by the device's host region
    /// `region` (a framebuffer that Keel allocated when it created the
    /// device) moved from `old` to `new` (`None`: not decoded, because the
    /// BAR is unassigned or memory decode is off). The old place goes back
    /// to the bus and the new one shows the region directly, so guest
    /// accesses to it never exit. `len` is the BAR size (a multiple of 4 KiB).
    /// Call it on every [`ConfigChange::Region`](crate::pci::ConfigChange)
    /// of such a BAR.
    pub fn ram_bar_moved(
        &self,
        region: HostRegionId,
        len: u64,
        old: Option<u64>,
        new: Option<u64>,
    ) {
        if let Some(gpa) = old {
            self.push(MemoryMapChange::Unmap { gpa, len });
        }
        if let Some(gpa) = new {
            self.push(MemoryMapChange::Map {
                gpa,
                len,
                backing: Backing::Region {
                    id: region,
                    offset: 0,
                },
                writes: Writes::Allowed,
            });
        }
    }
}

/// What one PAM segment shows (82441FX datasheet 3.2.18, RE/WE):
/// - RE=1 WE=1: DRAM;
/// - RE=1 WE=0: DRAM read-only, writes go to the PCI bus (dropped, counted);
/// - RE=0 WE=1: reads from the ROM on the bus, writes to DRAM;
/// - RE=0 WE=0: the ROM on the bus both ways (writes dropped).
///
/// Where the firmware image does not reach, "the ROM on the bus" is
/// nothing: those pages go to the bus (MMIO, reading all-ones).
pub fn pam_change(segment: PamSegment) -> MemoryMapChange {
    let (gpa, len) = (u64::from(segment.base), u64::from(segment.len));
    let (backing, writes) = match segment.mode {
        PamMode::ReadWrite => (Backing::Ram { offset: gpa }, Writes::Allowed),
        PamMode::ReadOnly => (Backing::Ram { offset: gpa }, Writes::Dropped),
        PamMode::WriteOnly => (Backing::BiosRom, Writes::ToRam),
        PamMode::Disabled => (Backing::BiosRom, Writes::Dropped),
    };
    MemoryMapChange::Map {
        gpa,
        len,
        backing,
        writes,
    }
}

/// The SMRAM window (datasheet 3.2.24): DRAM while open (G_SMRAME and
/// D_OPEN), otherwise the legacy video window on the PCI bus (MMIO).
pub fn smram_change(open: bool) -> MemoryMapChange {
    let (gpa, len) = SMRAM_WINDOW;
    if open {
        MemoryMapChange::Map {
            gpa,
            len,
            backing: Backing::Ram { offset: gpa },
            writes: Writes::Allowed,
        }
    } else {
        MemoryMapChange::Unmap { gpa, len }
    }
}

/// The high memory area with the A20 gate `enabled` (RAM above 1 MiB) or
/// not (the first 64 KiB again: address bit 20 forced to 0).
pub fn a20_change(enabled: bool) -> MemoryMapChange {
    let (gpa, len) = HMA;
    MemoryMapChange::Map {
        gpa,
        len,
        backing: Backing::Ram {
            offset: if enabled { gpa } else { gpa & !(1 << 20) },
        },
        writes: Writes::Allowed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pam_modes_become_map_changes() {
        let seg = |mode| PamSegment {
            base: 0xF0000,
            len: 0x10000,
            mode,
        };
        let map = |backing, writes| MemoryMapChange::Map {
            gpa: 0xF0000,
            len: 0x10000,
            backing,
            writes,
        };
        let ram = Backing::Ram { offset: 0xF0000 };
        assert_eq!(
            pam_change(seg(PamMode::ReadWrite)),
            map(ram, Writes::Allowed)
        );
        assert_eq!(
            pam_change(seg(PamMode::ReadOnly)),
            map(ram, Writes::Dropped)
        );
        assert_eq!(
            pam_change(seg(PamMode::WriteOnly)),
            map(Backing::BiosRom, Writes::ToRam)
        );
        assert_eq!(
            pam_change(seg(PamMode::Disabled)),
            map(Backing::BiosRom, Writes::Dropped)
        );
    }

    #[test]
    fn smram_and_a20() {
        assert_eq!(
            smram_change(false),
            MemoryMapChange::Unmap {
                gpa: 0xA0000,
                len: 0x20000
            }
        );
        assert!(matches!(
            smram_change(true),
            MemoryMapChange::Map {
                backing: Backing::Ram { offset: 0xA0000 },
                writes: Writes::Allowed,
                ..
            }
        ));
        assert!(matches!(
            a20_change(false),
            MemoryMapChange::Map {
                gpa: 0x10_0000,
                len: 0x1_0000,
                backing: Backing::Ram { offset: 0 },
                ..
            }
        ));
        assert!(matches!(
            a20_change(true),
            MemoryMapChange::Map {
                backing: Backing::Ram { offset: 0x10_0000 },
                ..
            }
        ));
    }

    #[test]
    fn a_ram_bar_moves_and_the_queue_is_bounded() {
        let q = MemoryMapQueue::new();
        let fb = HostRegionId(0);
        q.ram_bar_moved(fb, 0x10_0000, None, Some(0xE000_0000));
        q.ram_bar_moved(fb, 0x10_0000, Some(0xE000_0000), Some(0xF000_0000));
        q.ram_bar_moved(fb, 0x10_0000, Some(0xF000_0000), None);
        let region = Backing::Region { id: fb, offset: 0 };
        let at = |gpa| MemoryMapChange::Map {
            gpa,
            len: 0x10_0000,
            backing: region,
            writes: Writes::Allowed,
        };
        let gone = |gpa| MemoryMapChange::Unmap {
            gpa,
            len: 0x10_0000,
        };
        assert_eq!(
            q.take(),
            [
                at(0xE000_0000),
                gone(0xE000_0000),
                at(0xF000_0000),
                gone(0xF000_0000)
            ]
        );
        assert!(q.take().is_empty());
        for _ in 0..MAX_QUEUED_CHANGES + 10 {
            q.push(gone(0));
        }
        assert_eq!(q.take().len(), MAX_QUEUED_CHANGES);
    }
}
