//! Xen's PV-on-HVM interfaces, as an unmodified Linux or Windows guest with
//! Xen drivers expects them (a VM asks for them with xl.cfg's
//! `xen_platform_pci = 1`): event channels,
//! grant tables, xenstore, the xen-platform-pci device and the block and
//! network backends.
//!
//! Keel plays domain 0 (the backend domain) for every guest; the guest is
//! always [`GUEST_DOMID`]. The pieces meet at two small traits, so that the
//! backends and xenstore can be tested on the host against fakes:
//! [`GrantAccess`] (the backend's side of the guest's grant table, Xen's
//! public/grant_table.h) and [`EventSender`] (the backend's end of an
//! interdomain event channel, public/event_channel.h).

/// A Xen domain id (public/xen.h `domid_t`).
pub type DomId = u16;

/// The domain Keel plays: the backend domain every frontend names in its
/// `backend-id` key.
pub const BACKEND_DOMID: DomId = 0;

/// The domain id every Keel guest has (Xen's first guest domain is 1).
pub const GUEST_DOMID: DomId = 1;

/// An event-channel port of the guest (2-level ABI: 0..4096 on x86-64,
/// port 0 is never valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EvtchnPort(pub u32);

/// Why a grant could not be used (each maps to Xen's GNTST_* status for the
/// frontend, public/grant_table.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// The reference is past the end of the guest's grant table
    /// (GNTST_bad_gntref).
    BadReference,
    /// The entry does not grant access to the backend domain: `permit_access`
    /// is clear, or the entry names another domain (GNTST_permission_denied).
    NotPermitted,
    /// A write through a read-only grant (GNTST_permission_denied).
    ReadOnly,
    /// The granted frame is not guest RAM (GNTST_bad_page).
    BadFrame,
    /// Offset and length run past the granted 4 KiB page (GNTST_bad_copy_arg).
    BadRange,
}

/// The backend's access to pages a guest granted to [`BACKEND_DOMID`]
/// (grant table v1: entries of {flags, domid, frame}). Implementations check
/// the entry on every use (a guest may revoke a grant at any time) and copy
/// through the one guest-memory accessor; nothing else of guest memory is
/// reachable through this trait.
pub trait GrantAccess {
    /// Copies `buf.len()` bytes from `offset` in the page granted by `gref`.
    fn read_granted(&mut self, gref: u32, offset: usize, buf: &mut [u8]) -> Result<(), GrantError>;
    /// Copies `data` to `offset` in the page granted by `gref`; a read-only
    /// grant gives [`GrantError::ReadOnly`].
    fn write_granted(&mut self, gref: u32, offset: usize, data: &[u8]) -> Result<(), GrantError>;
}

/// The backend's end of interdomain event channels: raising an event on a
/// guest port sets its pending bit and, unless masked, upcalls the guest
/// (2-level ABI, public/event_channel.h).
pub trait EventSender {
    /// Raises `port`; an unbound or closed port is ignored (a frontend may
    /// close its channel at any time).
    fn notify(&mut self, port: EvtchnPort);
}

pub mod blkback;
pub mod devices;
pub mod event_channel;
pub mod grant_table;
pub mod hypercall;
pub mod netback;
pub mod platform_pci;
pub mod ring;
pub mod shared_info;
pub mod xenbus;
pub mod xenstore;

use alloc::vec::Vec;
use core::ops::Range;

use guest_log::RateLimitedLog;
use guest_memory::{Backing, GuestMemory, MemoryMapChange, Writes};
use log::Level;

use crate::clock::ClockHandle;
use crate::memory_map::MemoryMapQueue;
use crate::power::PowerControl;
use event_channel::{Binding, EventChannels};
use grant_table::{GrantTable, MAX_GRANT_FRAMES};
use shared_info::{TscScale, LEGACY_MAX_VCPUS, PAGE_SIZE, VCPU_INFO_SIZE};

/// The guest RAM pages Keel takes for Xen's pages (E820-reserved, so the
/// guest never uses them as RAM): the shared-info page, the xenstore ring,
/// the PV console ring and the grant-table frames, in that order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct XenPages {
    /// Guest-physical (= RAM offset) address of the first page.
    pub base: u64,
}

impl XenPages {
    /// Pages taken.
    pub const COUNT: u64 = 3 + MAX_GRANT_FRAMES as u64;
    /// Bytes taken.
    pub const LEN: u64 = Self::COUNT * PAGE_SIZE;

    /// The pages at the top of the RAM below 4 GiB that ends at `ram_below_4g`.
    pub fn at_top_of(ram_below_4g: u64) -> Self {
        XenPages {
            base: (ram_below_4g & !(PAGE_SIZE - 1)) - Self::LEN,
        }
    }
    pub fn shared_info(&self) -> u64 {
        self.base
    }
    /// The xenstore ring (HVM_PARAM_STORE_PFN).
    pub fn store(&self) -> u64 {
        self.base + PAGE_SIZE
    }
    /// The PV console ring (HVM_PARAM_CONSOLE_PFN).
    pub fn console(&self) -> u64 {
        self.base + 2 * PAGE_SIZE
    }
    /// Grant-table frame `i`.
    pub fn grant_frame(&self, i: u32) -> u64 {
        self.base + (3 + u64::from(i)) * PAGE_SIZE
    }
    pub fn end(&self) -> u64 {
        self.base + Self::LEN
    }
}

/// Where add_to_physmap may show Keel's pages: whole pages below
/// `gpa_limit` (the guest-physical address width the nested page tables
/// map) that overlap none of `fixed` (ranges the VMM never remaps: the local
/// APIC and IOAPIC pages, the firmware ROM below 4 GiB). Xen refuses a frame
/// past its p2m's address width with -EINVAL; Keel refuses these the same
/// way, so a guest is never told 0 for a placement the VMM would not make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PhysmapLimits {
    pub gpa_limit: u64,
    pub fixed: Vec<Range<u64>>,
}

impl PhysmapLimits {
    /// Whether the page at `gpa` may show one of Keel's pages.
    pub fn allows(&self, gpa: u64) -> bool {
        let Some(end) = gpa.checked_add(PAGE_SIZE) else {
            return false;
        };
        end <= self.gpa_limit && !self.fixed.iter().any(|r| gpa < r.end && r.start < end)
    }
}

/// HVM_PARAM_CALLBACK_IRQ's type field (bits 63:56) for "vector"
/// (public/hvm/params.h HVM_PARAM_CALLBACK_TYPE_VECTOR).
pub const CALLBACK_TYPE_VECTOR: u64 = 2;

/// Xen's PV-on-HVM state of one VM: event channels, the shared-info and
/// grant-table placement, timers, and the HVM params the guest reads.
pub struct Xen {
    memory: GuestMemory,
    pages: XenPages,
    clock: ClockHandle,
    /// The clock's reading at system time 0.
    boot_ns: u64,
    unix_time: u64,
    scale: TscScale,
    vcpus: u32,
    pub(crate) events: EventChannels,
    /// HVM_PARAM_CALLBACK_IRQ as the guest set it.
    callback_via: u64,
    /// Where the guest placed shared info and each grant frame (gpa).
    shared_info_at: Option<u64>,
    grant_at: [Option<u64>; MAX_GRANT_FRAMES as usize],
    /// Per vCPU: the gpa of its `vcpu_info` (register_vcpu_info), or its
    /// slot in shared info.
    vcpu_info: Vec<Option<u64>>,
    /// Per vCPU: the single-shot deadline and the periodic timer
    /// (next, period), in clock ns.
    singleshot: Vec<Option<u64>>,
    periodic: Vec<Option<(u64, u64)>>,
    store_evtchn: u32,
    console_evtchn: u32,
    memory_map: MemoryMapQueue,
    limits: PhysmapLimits,
    power: PowerControl,
    log: RateLimitedLog,
}

impl Xen {
    /// The state of a new VM over `memory`, with Keel's pages at `pages`;
    /// `tsc_hz` is the guest TSC's rate, `unix_time` the wall clock now;
    /// add_to_physmap places pages through `memory_map` within `limits`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        memory: GuestMemory,
        pages: XenPages,
        vcpus: u32,
        clock: ClockHandle,
        tsc_hz: u64,
        unix_time: u64,
        memory_map: MemoryMapQueue,
        limits: PhysmapLimits,
        power: PowerControl,
    ) -> Self {
        let vcpus = vcpus.clamp(1, LEGACY_MAX_VCPUS);
        let boot_ns = clock.now_ns();
        let mut xen = Xen {
            memory,
            pages,
            clock,
            boot_ns,
            unix_time,
            scale: TscScale::for_hz(tsc_hz),
            vcpus,
            events: EventChannels::new(vcpus),
            callback_via: 0,
            shared_info_at: None,
            grant_at: [None; MAX_GRANT_FRAMES as usize],
            vcpu_info: alloc::vec![None; vcpus as usize],
            singleshot: alloc::vec![None; vcpus as usize],
            periodic: alloc::vec![None; vcpus as usize],
            store_evtchn: 0,
            console_evtchn: 0,
            memory_map,
            limits,
            power,
            log: RateLimitedLog::new(),
        };
        xen.power_on();
        xen
    }

    fn power_on(&mut self) {
        let _ = self.memory.fill(self.pages.base, XenPages::LEN as usize, 0);
        self.boot_ns = self.clock.now_ns();
        shared_info::write_wallclock(&self.memory, self.pages.shared_info(), self.unix_time);
        // Every port starts masked (Xen's domain creation), so a port the
        // guest has not set up cannot upcall.
        let mask = [0xffu8; 512];
        let _ = self
            .memory
            .write(self.pages.shared_info() + shared_info::EVTCHN_MASK, &mask);
        self.store_evtchn = self.events.alloc_interdomain().unwrap_or(0);
        self.console_evtchn = self.events.alloc_interdomain().unwrap_or(0);
    }

    /// A machine reset: every port closed, the pages Keel showed for the
    /// guest's placements back to what they were, the pages cleared.
    pub fn reset(&mut self) {
        if let Some(gpa) = self.shared_info_at.take() {
            self.restore(gpa);
        }
        for i in 0..MAX_GRANT_FRAMES as usize {
            if let Some(gpa) = self.grant_at[i].take() {
                self.restore(gpa);
            }
        }
        self.events.reset();
        self.callback_via = 0;
        self.vcpu_info.fill(None);
        self.singleshot.fill(None);
        self.periodic.fill(None);
        self.unix_time = self
            .unix_time
            .saturating_add(self.clock.now_ns().saturating_sub(self.boot_ns) / 1_000_000_000);
        self.power_on();
    }

    /// Shows guest RAM again at the page `gpa` (or the bus above RAM).
    fn restore(&self, gpa: u64) {
        if gpa < self.memory.size() {
            self.memory_map.push(MemoryMapChange::Map {
                gpa,
                len: PAGE_SIZE,
                backing: Backing::Ram { offset: gpa },
                writes: Writes::Allowed,
            });
        } else {
            self.memory_map.push(MemoryMapChange::Unmap {
                gpa,
                len: PAGE_SIZE,
            });
        }
    }

    /// Shows Keel's page `page` at guest-physical `gpa`.
    fn place(&self, gpa: u64, page: u64) {
        self.memory_map.push(MemoryMapChange::Map {
            gpa,
            len: PAGE_SIZE,
            backing: Backing::Ram { offset: page },
            writes: Writes::Allowed,
        });
    }

    /// Keel's reserved pages.
    pub fn pages(&self) -> XenPages {
        self.pages
    }

    /// The xenstore's seam: the store ring's guest frame number
    /// (HVM_PARAM_STORE_PFN) and its pre-bound port (HVM_PARAM_STORE_EVTCHN).
    pub fn store(&self) -> (u64, EvtchnPort) {
        (
            self.pages.store() / PAGE_SIZE,
            EvtchnPort(self.store_evtchn),
        )
    }

    /// The backends' view of the guest's grant table.
    pub fn grant_table(&self) -> GrantTable {
        GrantTable::new(
            self.memory.clone(),
            self.pages.grant_frame(0),
            self.memory.size(),
            (self.pages.base, self.pages.end()),
        )
    }

    /// A backend binds the guest's unbound `port` (from the frontend's
    /// `event-channel` key); false when the port is not unbound for Keel.
    pub fn bind_backend(&mut self, port: EvtchnPort) -> bool {
        self.events.bind_backend(port.0).is_ok()
    }

    /// Whether the guest notified Keel on `port` since the last call.
    pub fn take_kick(&mut self, port: EvtchnPort) -> bool {
        self.events.take_kick(port)
    }

    /// The system time (ns since the VM started) now.
    pub fn system_time(&self) -> u64 {
        self.clock.now_ns().saturating_sub(self.boot_ns)
    }

    fn vcpu_info_gpa(&self, vcpu: u32) -> u64 {
        self.vcpu_info
            .get(vcpu as usize)
            .copied()
            .flatten()
            .unwrap_or(self.pages.shared_info() + u64::from(vcpu) * VCPU_INFO_SIZE)
    }

    /// Raises guest port `port` on its vCPU (2-level delivery).
    pub fn raise(&mut self, port: u32) {
        let Some((binding, vcpu)) = self.events.binding(port) else {
            return;
        };
        if binding == Binding::Free {
            return;
        }
        event_channel::set_pending(
            &self.memory,
            self.pages.shared_info(),
            self.vcpu_info_gpa(vcpu),
            port,
        );
    }

    /// The vector to inject into `vcpu` now: the callback vector while the
    /// guest chose vector delivery and its `evtchn_upcall_pending` is set
    /// (level-like: Xen re-delivers until the guest clears the flag).
    pub fn upcall_vector(&self, vcpu: u32) -> Option<u8> {
        if self.callback_via >> 56 != CALLBACK_TYPE_VECTOR {
            return None;
        }
        let vector = self.callback_via as u8;
        (vector >= 0x10 && event_channel::upcall_pending(&self.memory, self.vcpu_info_gpa(vcpu)))
            .then_some(vector)
    }

    /// Fires due timers (VIRQ_TIMER).
    pub fn service(&mut self) {
        let now = self.clock.now_ns();
        for vcpu in 0..self.vcpus as usize {
            let mut fire = false;
            if self.singleshot[vcpu].is_some_and(|d| d <= now) {
                self.singleshot[vcpu] = None;
                fire = true;
            }
            if let Some((next, period)) = self.periodic[vcpu] {
                if next <= now {
                    // Missed periods collapse into one event.
                    let behind = (now - next) / period;
                    self.periodic[vcpu] = Some((next + (behind + 1) * period, period));
                    fire = true;
                }
            }
            if fire {
                if let Some((port, _)) = self.events.virq_port(event_channel::VIRQ_TIMER) {
                    self.raise(port);
                }
            }
        }
    }

    /// The next timer deadline, in clock ns.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        let a = self.singleshot.iter().flatten().copied();
        let b = self.periodic.iter().flatten().map(|&(n, _)| n);
        a.chain(b).min()
    }

    fn log(&mut self, args: core::fmt::Arguments<'_>) {
        self.log.log(Level::Warn, args);
    }
}

impl EventSender for Xen {
    fn notify(&mut self, port: EvtchnPort) {
        if matches!(self.events.binding(port.0), Some((Binding::Interdomain, _))) {
            self.raise(port.0);
        }
    }
}
