//! The virtio PCI transport (virtio 1.2 4.1).
//!
//! | BAR | what |
//! |---|---|
//! | 0 | transitional only: the legacy I/O registers (4.1.4.8), then the device configuration |
//! | 1 | 4 KiB memory: the MSI-X table (0x000) and PBA (0x800), one entry per queue plus configuration changes |
//! | 4 | 16 KiB memory: common configuration (0x0000), ISR status (0x1000), device configuration (0x2000), notifications (0x3000, 4 bytes per queue) |
//!
//! The vendor-specific capabilities (4.1.4) point into BAR 4, and a
//! VIRTIO_PCI_CAP_PCI_CFG capability (4.1.4.9) reaches the BARs through
//! configuration space. A transitional device (ID 0x1000 + type - 1,
//! revision 0) offers both interfaces, for SeaBIOS and drivers older than
//! virtio 1.0; a modern one (ID 0x1040 + type, revision 1) only the
//! capabilities.
//!
//! Interrupts: with MSI-X enabled each queue signals the vector the driver
//! gave it (`queue_msix_vector`) and configuration changes
//! `config_msix_vector`; otherwise the ISR status bits (4.1.4.5) drive INTA#
//! through the PIRQ router until the driver reads ISR.

use alloc::vec;
use alloc::vec::Vec;

use guest_log::RateLimitedLog;
use guest_memory::GuestMemory;
use log::Level;

use super::queue::{Virtqueue, VIRTIO_MSI_NO_VECTOR};
use super::{feature, status, Queues, VirtioDevice};
use crate::clock::ClockHandle;
use crate::interrupt::router::IntxLine;
use crate::pci::config_space::{command, reg as cfg};
use crate::pci::msi::MsixCap;
use crate::pci::{BarKind, ConfigChange, ConfigSpace, PciDevice, PciFunction, PciWiring};
use crate::timer::TimerDevice;

/// Red Hat's PCI vendor ID, which virtio devices use (4.1.2).
pub const VENDOR_ID: u16 = 0x1AF4;

/// Which interfaces the function offers (4.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Device ID 0x1000 + type - 1, the legacy I/O BAR and the modern capabilities.
    Transitional,
    /// Device ID 0x1040 + type, the modern capabilities only.
    Modern,
}

/// BAR numbers and layout.
pub const LEGACY_BAR: u8 = 0;
pub const MSIX_BAR: u8 = 1;
pub const MODERN_BAR: u8 = 4;
const LEGACY_BAR_LEN: u64 = 256;
const MSIX_BAR_LEN: u64 = 4096;
const MSIX_PBA: u32 = 0x800;
const MODERN_BAR_LEN: u64 = 0x4000;
pub const COMMON_CFG: u64 = 0x0000;
const COMMON_CFG_LEN: u64 = 0x38;
pub const ISR_CFG: u64 = 0x1000;
pub const DEVICE_CFG: u64 = 0x2000;
const DEVICE_CFG_LEN: u64 = 0x1000;
pub const NOTIFY_CFG: u64 = 0x3000;
/// `notify_off_multiplier`: queue `n` is notified at `NOTIFY_CFG + 4 * n`.
pub const NOTIFY_OFF_MULTIPLIER: u32 = 4;

/// Vendor-specific capability types (4.1.4).
pub mod cap {
    pub const ID_VENDOR: u8 = 0x09;
    pub const COMMON_CFG: u8 = 1;
    pub const NOTIFY_CFG: u8 = 2;
    pub const ISR_CFG: u8 = 3;
    pub const DEVICE_CFG: u8 = 4;
    pub const PCI_CFG: u8 = 5;
}

/// Common configuration fields (4.1.4.3), by offset.
pub mod common {
    pub const DEVICE_FEATURE_SELECT: u64 = 0x00;
    pub const DEVICE_FEATURE: u64 = 0x04;
    pub const DRIVER_FEATURE_SELECT: u64 = 0x08;
    pub const DRIVER_FEATURE: u64 = 0x0C;
    pub const CONFIG_MSIX_VECTOR: u64 = 0x10;
    pub const NUM_QUEUES: u64 = 0x12;
    pub const DEVICE_STATUS: u64 = 0x14;
    pub const CONFIG_GENERATION: u64 = 0x15;
    pub const QUEUE_SELECT: u64 = 0x16;
    pub const QUEUE_SIZE: u64 = 0x18;
    pub const QUEUE_MSIX_VECTOR: u64 = 0x1A;
    pub const QUEUE_ENABLE: u64 = 0x1C;
    pub const QUEUE_NOTIFY_OFF: u64 = 0x1E;
    pub const QUEUE_DESC: u64 = 0x20;
    pub const QUEUE_DRIVER: u64 = 0x28;
    pub const QUEUE_DEVICE: u64 = 0x30;

    /// The field holding byte `offset`: (start, length).
    pub fn field(offset: u64) -> Option<(u64, u64)> {
        Some(match offset {
            0x00..=0x0F => (offset & !3, 4),
            0x10..=0x13 => (offset & !1, 2),
            0x14 | 0x15 => (offset, 1),
            0x16..=0x1F => (offset & !1, 2),
            0x20..=0x37 => (offset & !7, 8),
            _ => return None,
        })
    }
}

/// Legacy I/O registers (4.1.4.8), by offset.
pub mod legacy {
    pub const HOST_FEATURES: u64 = 0x00;
    pub const GUEST_FEATURES: u64 = 0x04;
    pub const QUEUE_ADDRESS: u64 = 0x08;
    pub const QUEUE_SIZE: u64 = 0x0C;
    pub const QUEUE_SELECT: u64 = 0x0E;
    pub const QUEUE_NOTIFY: u64 = 0x10;
    pub const DEVICE_STATUS: u64 = 0x12;
    pub const ISR_STATUS: u64 = 0x13;
    /// Present while MSI-X is enabled; the device configuration follows them.
    pub const CONFIG_MSIX_VECTOR: u64 = 0x14;
    pub const QUEUE_MSIX_VECTOR: u64 = 0x16;
    pub const DEVICE_CFG: u64 = 0x14;
    pub const DEVICE_CFG_MSIX: u64 = 0x18;

    /// The register holding byte `offset` below the device configuration
    /// at `cfg`: (start, length).
    pub fn field(offset: u64, cfg: u64) -> Option<(u64, u64)> {
        if offset >= cfg {
            return None;
        }
        Some(match offset {
            0x00..=0x0B => (offset & !3, 4),
            0x0C..=0x11 => (offset & !1, 2),
            0x12 | 0x13 => (offset, 1),
            0x14..=0x17 => (offset & !1, 2),
            _ => return None,
        })
    }
}

/// ISR status bits (4.1.4.5).
mod isr {
    pub const QUEUE: u8 = 1;
    pub const CONFIG: u8 = 2;
}

/// Rate-limited logs of what the driver got wrong.
#[derive(Default)]
struct Logs {
    /// Rings that break 2.7 (the queue stops, DEVICE_NEEDS_RESET).
    ring: RateLimitedLog,
    /// Negotiation and register misuse (features never offered, a queue
    /// notified that was never set up).
    driver: RateLimitedLog,
}

/// A virtio device of type `D` on PCI.
pub struct VirtioPci<D: VirtioDevice> {
    cs: ConfigSpace,
    msix: MsixCap,
    intx: Option<IntxLine>,
    memory: GuestMemory,
    clock: ClockHandle,
    device: D,
    queues: Vec<Virtqueue>,
    /// Queues with buffers found after the last pass: a service pass
    /// handles them as if notified.
    kicked: Vec<bool>,
    transport: Transport,
    pci_cfg_cap: u8,
    device_feature_select: u32,
    driver_feature_select: u32,
    driver_features: u64,
    status: u8,
    queue_select: u16,
    config_vector: u16,
    isr: u8,
    logs: Logs,
}

impl<D: VirtioDevice> VirtioPci<D> {
    /// `device` over the guest's RAM `memory`, timed by `clock`.
    pub fn new(device: D, transport: Transport, memory: GuestMemory, clock: ClockHandle) -> Self {
        let id = device.device_id();
        let (pci_id, revision, subsystem) = match transport {
            Transport::Transitional => (0x1000 + id.saturating_sub(1), 0, id),
            Transport::Modern => (0x1040 + id, 1, 0x40),
        };
        let mut cs = ConfigSpace::new(VENDOR_ID, pci_id, revision, device.class_code(), 0);
        cs.set_u16(cfg::SUBSYSTEM_VENDOR_ID, VENDOR_ID);
        cs.set_u16(cfg::SUBSYSTEM_ID, subsystem);
        cs.set_interrupt_pin(1);
        // Fixed, valid indexes and sizes: these cannot fail.
        if transport == Transport::Transitional {
            let _ = cs.add_bar(LEGACY_BAR, BarKind::Io, LEGACY_BAR_LEN);
        }
        let mem32 = BarKind::Mem32 {
            prefetchable: false,
        };
        let _ = cs.add_bar(MSIX_BAR, mem32, MSIX_BAR_LEN);
        let _ = cs.add_bar(MODERN_BAR, mem32, MODERN_BAR_LEN);
        let queues: Vec<Virtqueue> = device
            .queue_max_sizes()
            .iter()
            .map(|&m| Virtqueue::new(m))
            .collect();
        let vectors = (queues.len() + 1).min(MSIX_PBA as usize / 16) as u16;
        let msix = MsixCap::add(&mut cs, vectors, MSIX_BAR, 0, MSIX_BAR, MSIX_PBA)
            .unwrap_or_else(|_| unreachable!("the MSI-X table fits BAR 1"));
        let notify_len = (queues.len().max(1) as u64) * u64::from(NOTIFY_OFF_MULTIPLIER);
        let caps = [
            (cap::COMMON_CFG, COMMON_CFG, COMMON_CFG_LEN, 16),
            (cap::NOTIFY_CFG, NOTIFY_CFG, notify_len, 20),
            (cap::ISR_CFG, ISR_CFG, 1, 16),
            (cap::DEVICE_CFG, DEVICE_CFG, DEVICE_CFG_LEN, 16),
        ];
        for (kind, offset, len, cap_len) in caps {
            let at = vendor_cap(&mut cs, cap_len, kind);
            cs.set_u8(at + 4, MODERN_BAR);
            cs.set_u32(at + 8, offset as u32);
            cs.set_u32(at + 12, len as u32);
            if kind == cap::NOTIFY_CFG {
                cs.set_u32(at + 16, NOTIFY_OFF_MULTIPLIER);
            }
        }
        // 4.1.4.9: bar, offset, length and the data window are the driver's.
        let pci_cfg_cap = vendor_cap(&mut cs, 20, cap::PCI_CFG);
        cs.set_wmask_u8(pci_cfg_cap + 4, 0xFF);
        cs.set_wmask_u32(pci_cfg_cap + 8, 0xFFFF_FFFF);
        cs.set_wmask_u32(pci_cfg_cap + 12, 0xFFFF_FFFF);
        cs.set_wmask_u32(pci_cfg_cap + 16, 0xFFFF_FFFF);
        let n = queues.len();
        let mut d = VirtioPci {
            cs,
            msix,
            intx: None,
            memory,
            clock,
            device,
            queues,
            kicked: vec![false; n],
            transport,
            pci_cfg_cap,
            device_feature_select: 0,
            driver_feature_select: 0,
            driver_features: 0,
            status: 0,
            queue_select: 0,
            config_vector: VIRTIO_MSI_NO_VECTOR,
            isr: 0,
            logs: Logs::default(),
        };
        d.virtio_reset();
        d
    }

    /// The device type's part (host tests look at its state).
    pub fn device(&self) -> &D {
        &self.device
    }

    /// The device status register (2.1).
    pub fn status(&self) -> u8 {
        self.status
    }

    /// Everything the transport offers: the device's bits, indirect
    /// descriptors, EVENT_IDX, and VERSION_1.
    pub fn offered_features(&self) -> u64 {
        self.device.features()
            | feature::RING_INDIRECT_DESC
            | feature::RING_EVENT_IDX
            | feature::VERSION_1
    }

    fn negotiated(&self) -> u64 {
        self.driver_features & self.offered_features()
    }

    /// A device reset (2.4): status 0, no features, every queue back to
    /// its reset state, nothing pending. MSI-X stays as PCI left it.
    fn virtio_reset(&mut self) {
        self.device_feature_select = 0;
        self.driver_feature_select = 0;
        self.driver_features = 0;
        self.status = 0;
        self.queue_select = 0;
        self.config_vector = VIRTIO_MSI_NO_VECTOR;
        self.isr = 0;
        for q in &mut self.queues {
            q.reset();
        }
        self.kicked.fill(false);
        self.device.reset();
        self.update_intx();
    }

    fn update_intx(&mut self) {
        let asserted = self.isr != 0 && !self.msix.enabled();
        let level = self.cs.intx_level(asserted);
        if let Some(line) = &self.intx {
            line.set_level(level);
        }
    }

    fn signal_queue(&mut self, q: usize) {
        if self.msix.enabled() {
            let v = self.queues[q].msix_vector;
            if v != VIRTIO_MSI_NO_VECTOR {
                self.msix.notify(v);
            }
        } else {
            self.isr |= isr::QUEUE;
            self.update_intx();
        }
    }

    fn signal_config(&mut self) {
        if self.msix.enabled() {
            if self.config_vector != VIRTIO_MSI_NO_VECTOR {
                self.msix.notify(self.config_vector);
            }
        } else {
            self.isr |= isr::CONFIG;
            self.update_intx();
        }
    }

    /// Whether the device may use its queues: the driver set DRIVER_OK
    /// (3.1.1) and lets the function master the bus.
    fn live(&self) -> bool {
        self.status & status::DRIVER_OK != 0 && self.cs.command() & command::BUS_MASTER != 0
    }

    fn queues_view(&mut self) -> (&mut D, Queues<'_>) {
        let features = self.negotiated();
        let name = self.device.name();
        (
            &mut self.device,
            Queues {
                queues: &mut self.queues,
                memory: &self.memory,
                features,
                log: &mut self.logs.ring,
                name,
            },
        )
    }

    /// A queue notification (4.1.4.4 / the legacy QUEUE_NOTIFY register).
    fn notify(&mut self, queue: u16) {
        let q = usize::from(queue);
        if !self.queues.get(q).is_some_and(Virtqueue::usable) || !self.live() {
            let name = self.device.name();
            self.logs.driver.log(
                Level::Warn,
                format_args!(
                    "{name}: notification for queue {queue}, which is not set up and live; ignored"
                ),
            );
            return;
        }
        self.kicked[q] = false;
        let (device, mut queues) = self.queues_view();
        device.queue_notify(queue, &mut queues);
        self.end_pass();
    }

    /// After the device's work: a queue that broke puts the device in
    /// DEVICE_NEEDS_RESET (2.1.2) with a configuration interrupt; the used
    /// indexes are published in one write per queue and the driver is
    /// interrupted where it asked to be.
    fn end_pass(&mut self) {
        let event_idx = self.negotiated() & feature::RING_EVENT_IDX != 0;
        let mut config = false;
        for q in 0..self.queues.len() {
            if self.queues[q].broken() {
                if self.status & status::DEVICE_NEEDS_RESET == 0 {
                    self.status |= status::DEVICE_NEEDS_RESET;
                    config = true;
                }
                continue;
            }
            match self.queues[q].publish(&self.memory, event_idx) {
                Ok(true) => self.signal_queue(q),
                Ok(false) => {}
                Err(e) => {
                    self.queues[q].set_broken();
                    let name = self.device.name();
                    self.logs.ring.log(
                        Level::Warn,
                        format_args!("{name}: queue {q}: {e}; the device needs a reset"),
                    );
                    continue;
                }
            }
            // Buffers the driver added while this pass ran, after it read
            // avail_event: the next service pass takes them.
            if self.device.wants_buffers(q as u16) && self.queues[q].has_available(&self.memory) {
                self.kicked[q] = true;
            }
        }
        if config {
            self.status |= status::DEVICE_NEEDS_RESET;
            self.signal_config();
        }
    }

    fn write_status(&mut self, v: u8, modern: bool) {
        if v == 0 {
            self.virtio_reset();
            return;
        }
        let mut v = v & !status::DEVICE_NEEDS_RESET;
        if v & status::FEATURES_OK != 0 && self.status & status::FEATURES_OK == 0 {
            let unknown = self.driver_features & !self.offered_features();
            let no_v1 = modern && self.driver_features & feature::VERSION_1 == 0;
            if unknown != 0 || no_v1 {
                // 3.1.1: the device leaves FEATURES_OK clear to refuse.
                v &= !status::FEATURES_OK;
                let name = self.device.name();
                self.logs.driver.log(
                    Level::Warn,
                    format_args!(
                        "{name}: the driver accepted features {:#x}; not offered: {unknown:#x}{}; FEATURES_OK refused",
                        self.driver_features,
                        if no_v1 { ", without VERSION_1" } else { "" }
                    ),
                );
            }
        }
        let was_ok = self.status & status::DRIVER_OK != 0;
        self.status = v | self.status & status::DEVICE_NEEDS_RESET;
        if v & status::DRIVER_OK != 0 && !was_ok {
            let f = self.negotiated();
            self.device.activate(f);
            // Buffers made available before DRIVER_OK are taken now.
            for q in 0..self.queues.len() {
                if self.device.wants_buffers(q as u16) && self.queues[q].has_available(&self.memory)
                {
                    self.kicked[q] = true;
                }
            }
        }
    }

    fn selected(&mut self) -> Option<&mut Virtqueue> {
        self.queues.get_mut(usize::from(self.queue_select))
    }

    fn common_read(&self, start: u64) -> u64 {
        let q = self.queues.get(usize::from(self.queue_select));
        match start {
            common::DEVICE_FEATURE_SELECT => u64::from(self.device_feature_select),
            common::DEVICE_FEATURE => match self.device_feature_select {
                0 => self.offered_features() & 0xFFFF_FFFF,
                1 => self.offered_features() >> 32,
                _ => 0,
            },
            common::DRIVER_FEATURE_SELECT => u64::from(self.driver_feature_select),
            common::DRIVER_FEATURE => match self.driver_feature_select {
                0 => self.driver_features & 0xFFFF_FFFF,
                1 => self.driver_features >> 32,
                _ => 0,
            },
            common::CONFIG_MSIX_VECTOR => u64::from(self.config_vector),
            common::NUM_QUEUES => self.queues.len() as u64,
            common::DEVICE_STATUS => u64::from(self.status),
            common::CONFIG_GENERATION => 0,
            common::QUEUE_SELECT => u64::from(self.queue_select),
            // 4.1.4.3.2: 0 for a queue that does not exist.
            common::QUEUE_SIZE => q.map_or(0, |q| u64::from(q.size)),
            common::QUEUE_MSIX_VECTOR => q.map_or(u64::from(VIRTIO_MSI_NO_VECTOR), |q| {
                u64::from(q.msix_vector)
            }),
            common::QUEUE_ENABLE => q.map_or(0, |q| u64::from(q.ready)),
            common::QUEUE_NOTIFY_OFF => u64::from(self.queue_select),
            common::QUEUE_DESC => q.map_or(0, |q| q.desc),
            common::QUEUE_DRIVER => q.map_or(0, |q| q.avail),
            common::QUEUE_DEVICE => q.map_or(0, |q| q.used),
            _ => 0,
        }
    }

    /// A vector the MSI-X table has, or NO_VECTOR (4.1.5.1.2: reading back
    /// NO_VECTOR tells the driver the mapping failed).
    fn vector(&self, v: u64) -> u16 {
        let entries = self.queues.len() as u64 + 1;
        if v < entries {
            v as u16
        } else {
            VIRTIO_MSI_NO_VECTOR
        }
    }

    fn common_write(&mut self, start: u64, v: u64) {
        let features_locked = self.status & status::FEATURES_OK != 0;
        match start {
            common::DEVICE_FEATURE_SELECT => self.device_feature_select = v as u32,
            common::DRIVER_FEATURE_SELECT => self.driver_feature_select = v as u32,
            common::DRIVER_FEATURE if !features_locked => match self.driver_feature_select {
                0 => self.driver_features = self.driver_features & !0xFFFF_FFFF | v & 0xFFFF_FFFF,
                1 => {
                    self.driver_features =
                        self.driver_features & 0xFFFF_FFFF | (v & 0xFFFF_FFFF) << 32
                }
                _ => {}
            },
            common::CONFIG_MSIX_VECTOR => self.config_vector = self.vector(v),
            common::DEVICE_STATUS => self.write_status(v as u8, true),
            common::QUEUE_SELECT => self.queue_select = v as u16,
            common::QUEUE_MSIX_VECTOR => {
                let vector = self.vector(v);
                if let Some(q) = self.selected() {
                    q.msix_vector = vector;
                }
            }
            common::QUEUE_ENABLE if v == 1 => self.enable_queue(),
            common::QUEUE_SIZE
            | common::QUEUE_DESC
            | common::QUEUE_DRIVER
            | common::QUEUE_DEVICE => {
                // 4.1.4.3.2: not to be changed once the queue is enabled.
                if let Some(q) = self.selected().filter(|q| !q.ready) {
                    match start {
                        common::QUEUE_SIZE => q.size = v as u16,
                        common::QUEUE_DESC => q.desc = v,
                        common::QUEUE_DRIVER => q.avail = v,
                        _ => q.used = v,
                    }
                }
            }
            _ => {}
        }
    }

    /// `queue_enable = 1`: a queue whose size or rings break 2.7 is not
    /// enabled and the device needs a reset.
    fn enable_queue(&mut self) {
        let qi = usize::from(self.queue_select);
        let Some(q) = self.queues.get(qi) else { return };
        if q.ready {
            return;
        }
        match q.check(&self.memory) {
            Ok(()) => self.queues[qi].ready = true,
            Err(e) => self.ring_setup_failed(qi, e),
        }
    }

    fn ring_setup_failed(&mut self, qi: usize, e: super::QueueError) {
        let name = self.device.name();
        self.logs.ring.log(
            Level::Warn,
            format_args!("{name}: queue {qi}: {e}; the device needs a reset"),
        );
        self.queues[qi].set_broken();
        self.end_pass();
    }

    /// A read or write of the registers of `field(offset)` layout: each
    /// register covered is read once; a partial write merges with its value.
    fn modern_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match offset {
            COMMON_CFG..ISR_CFG => {
                for (i, b) in data.iter_mut().enumerate() {
                    let at = offset + i as u64;
                    if let Some((start, _)) = common::field(at) {
                        *b = (self.common_read(start) >> (8 * (at - start))) as u8;
                    }
                }
            }
            ISR_CFG => data[0] = self.take_isr(),
            DEVICE_CFG..NOTIFY_CFG => self.device.config_read(offset - DEVICE_CFG, data),
            _ => {}
        }
    }

    fn modern_write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            COMMON_CFG..ISR_CFG => {
                let mut i = 0;
                while i < data.len() {
                    let at = offset + i as u64;
                    let Some((start, len)) = common::field(at) else {
                        i += 1;
                        continue;
                    };
                    let mut v = self.common_read(start).to_le_bytes();
                    let first = (at - start) as usize;
                    let n = (len as usize - first).min(data.len() - i);
                    v[first..first + n].copy_from_slice(&data[i..i + n]);
                    self.common_write(start, u64::from_le_bytes(v));
                    i += n;
                }
            }
            DEVICE_CFG..NOTIFY_CFG => self.device.config_write(offset - DEVICE_CFG, data),
            o if o >= NOTIFY_CFG => {
                let index = (o - NOTIFY_CFG) / u64::from(NOTIFY_OFF_MULTIPLIER);
                self.notify(u16::try_from(index).unwrap_or(u16::MAX));
            }
            _ => {}
        }
    }

    fn take_isr(&mut self) -> u8 {
        let v = self.isr;
        self.isr = 0;
        self.update_intx();
        v
    }

    fn legacy_cfg(&self) -> u64 {
        if self.msix.enabled() {
            legacy::DEVICE_CFG_MSIX
        } else {
            legacy::DEVICE_CFG
        }
    }

    fn legacy_reg(&mut self, start: u64) -> u64 {
        let q = self.queues.get(usize::from(self.queue_select));
        match start {
            legacy::HOST_FEATURES => self.offered_features() & 0xFFFF_FFFF,
            legacy::GUEST_FEATURES => self.driver_features & 0xFFFF_FFFF,
            legacy::QUEUE_ADDRESS => q.map_or(0, |q| q.desc >> 12),
            legacy::QUEUE_SIZE => q.map_or(0, |q| u64::from(q.max_size)),
            legacy::QUEUE_SELECT => u64::from(self.queue_select),
            legacy::DEVICE_STATUS => u64::from(self.status),
            legacy::ISR_STATUS => u64::from(self.take_isr()),
            legacy::CONFIG_MSIX_VECTOR => u64::from(self.config_vector),
            legacy::QUEUE_MSIX_VECTOR => q.map_or(u64::from(VIRTIO_MSI_NO_VECTOR), |q| {
                u64::from(q.msix_vector)
            }),
            _ => 0,
        }
    }

    fn legacy_read(&mut self, offset: u64, data: &mut [u8]) {
        data.fill(0);
        let cfg = self.legacy_cfg();
        if offset >= cfg {
            self.device.config_read(offset - cfg, data);
            return;
        }
        let mut i = 0;
        while i < data.len() {
            let at = offset + i as u64;
            let Some((start, len)) = legacy::field(at, cfg) else {
                i += 1;
                continue;
            };
            let v = self.legacy_reg(start).to_le_bytes();
            let first = (at - start) as usize;
            let n = (len as usize - first).min(data.len() - i);
            data[i..i + n].copy_from_slice(&v[first..first + n]);
            i += n;
        }
    }

    fn legacy_write(&mut self, offset: u64, data: &[u8]) {
        let cfg = self.legacy_cfg();
        if offset >= cfg {
            self.device.config_write(offset - cfg, data);
            return;
        }
        let mut bytes = [0u8; 8];
        let n = data.len().min(8);
        bytes[..n].copy_from_slice(&data[..n]);
        let v = u64::from_le_bytes(bytes);
        match offset {
            legacy::GUEST_FEATURES if self.status & status::FEATURES_OK == 0 => {
                self.driver_features = v & 0xFFFF_FFFF;
            }
            legacy::QUEUE_ADDRESS => self.legacy_queue_address(v as u32),
            legacy::QUEUE_SELECT => self.queue_select = v as u16,
            legacy::QUEUE_NOTIFY => self.notify(v as u16),
            legacy::DEVICE_STATUS => self.write_status(v as u8, false),
            legacy::CONFIG_MSIX_VECTOR if self.msix.enabled() => {
                self.config_vector = self.vector(v & 0xFFFF);
            }
            legacy::QUEUE_MSIX_VECTOR if self.msix.enabled() => {
                let vector = self.vector(v & 0xFFFF);
                if let Some(q) = self.selected() {
                    q.msix_vector = vector;
                }
            }
            _ => {}
        }
    }

    /// The legacy queue address: a page frame number sets the queue up at
    /// its maximum size (the legacy interface has no size register), 0
    /// takes it down.
    fn legacy_queue_address(&mut self, pfn: u32) {
        let qi = usize::from(self.queue_select);
        let Some(q) = self.queues.get_mut(qi) else {
            return;
        };
        if pfn == 0 {
            q.reset();
            return;
        }
        q.size = q.max_size;
        q.set_legacy_pfn(pfn);
        match q.check(&self.memory) {
            Ok(()) => q.ready = true,
            Err(e) => self.ring_setup_failed(qi, e),
        }
    }

    /// The VIRTIO_PCI_CAP_PCI_CFG window (4.1.4.9): `pci_cfg_data` reaches
    /// `length` bytes at `offset` of BAR `bar`.
    fn pci_cfg_target(&self) -> Option<(u8, u64, usize)> {
        let at = self.pci_cfg_cap;
        let bar = self.cs.u8(at + 4);
        let offset = u64::from(self.cs.u32(at + 8));
        let len = self.cs.u32(at + 12) as usize;
        matches!(len, 1 | 2 | 4).then_some((bar, offset, len))
    }

    fn touches_pci_cfg_data(&self, offset: u8, len: usize) -> bool {
        let data = self.pci_cfg_cap + 16;
        usize::from(offset) < usize::from(data) + 4 && usize::from(offset) + len > usize::from(data)
    }
}

/// Appends a vendor-specific capability of `len` bytes of type `kind`.
fn vendor_cap(cs: &mut ConfigSpace, len: u8, kind: u8) -> u8 {
    let at = cs
        .add_capability(cap::ID_VENDOR, len)
        .unwrap_or_else(|_| unreachable!("five capabilities fit configuration space"));
    cs.set_u8(at + 2, len);
    cs.set_u8(at + 3, kind);
    at
}

impl<D: VirtioDevice> PciFunction for VirtioPci<D> {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        if self.touches_pci_cfg_data(offset, data.len()) {
            if let Some((bar, off, len)) = self.pci_cfg_target() {
                let mut v = [0xFFu8; 4];
                self.bar_read(bar, off, &mut v[..len]);
                self.cs
                    .poke_u32(self.pci_cfg_cap + 16, u32::from_le_bytes(v));
            }
        }
        self.cs.read(offset, data);
    }

    fn config_write(&mut self, offset: u8, data: &[u8], changes: &mut Vec<ConfigChange>) {
        self.cs.write(offset, data, changes);
        if self.touches_pci_cfg_data(offset, data.len()) {
            if let Some((bar, off, len)) = self.pci_cfg_target() {
                let v = self.cs.u32(self.pci_cfg_cap + 16).to_le_bytes();
                self.bar_write(bar, off, &v[..len]);
            }
        }
        // Interrupt Disable may have changed the pin; bus mastering may
        // have let the device start.
        self.update_intx();
    }

    fn reset(&mut self, changes: &mut Vec<ConfigChange>) {
        self.cs.reset(changes);
        self.virtio_reset();
    }
}

impl<D: VirtioDevice> PciDevice for VirtioPci<D> {
    fn name(&self) -> &'static str {
        self.device.name()
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        match bar {
            MODERN_BAR => self.modern_read(offset, data),
            LEGACY_BAR if self.transport == Transport::Transitional => {
                self.legacy_read(offset, data)
            }
            _ => data.fill(0),
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        match bar {
            MODERN_BAR => self.modern_write(offset, data),
            LEGACY_BAR if self.transport == Transport::Transitional => {
                self.legacy_write(offset, data)
            }
            _ => {}
        }
    }

    fn msix(&mut self) -> Option<(&mut MsixCap, &mut ConfigSpace)> {
        Some((&mut self.msix, &mut self.cs))
    }

    fn plugged(&mut self, wiring: PciWiring) {
        self.intx = wiring.intx;
    }
}

impl<D: VirtioDevice> TimerDevice for VirtioPci<D> {
    fn next_deadline_ns(&mut self) -> Option<u64> {
        if !self.live() {
            return None;
        }
        let now = self.clock.now_ns();
        if self.kicked.iter().any(|&k| k) {
            return Some(now);
        }
        self.device.next_deadline_ns(now)
    }

    fn service(&mut self) {
        if !self.live() {
            return;
        }
        for q in 0..self.queues.len() {
            if core::mem::take(&mut self.kicked[q]) {
                let (device, mut queues) = self.queues_view();
                device.queue_notify(q as u16, &mut queues);
            }
        }
        let now = self.clock.now_ns();
        if self.device.next_deadline_ns(now).is_some_and(|t| t <= now) {
            let (device, mut queues) = self.queues_view();
            device.service(&mut queues);
        }
        self.end_pass();
    }
}

#[cfg(test)]
mod tests;
