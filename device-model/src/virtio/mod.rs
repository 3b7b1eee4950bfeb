//! Virtio devices over PCI, as the OASIS Virtual I/O Device (VIRTIO) 1.2
//! specification describes them: the front-end drivers of unmodified Linux,
//! Windows (virtio-win) and SeaBIOS drive them through rings in guest memory
//! instead of emulated registers.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | feature and status bits (2.1, 2.2, 6), the [`VirtioDevice`] trait a device type implements |
//! | `queue.rs` | split virtqueues (2.7): chains, indirect tables, EVENT_IDX, the used ring |
//! | `pci.rs` | the PCI transport (4.1): modern capabilities and the legacy I/O BAR, MSI-X and INTx, reset, feature negotiation |
//! | `blk.rs` | the block device (5.2) over a [`BlockBackend`](crate::storage::BlockBackend) |
//! | `net.rs` | the network device (5.1) over a [`NetBackend`](crate::net::NetBackend), the e1000's switch port |
//!
//! A device type (block, network) implements [`VirtioDevice`]: its
//! features, its configuration space and what it does with its queues. The
//! transport ([`VirtioPci`]) does the rest the same for every type: PCI
//! identity, the registers of 4.1.4, negotiation, queue setup, interrupts
//! and their suppression, and DEVICE_NEEDS_RESET when a ring breaks the
//! rules. Work happens in the queue notification's register write (one exit
//! per notification) and in [`TimerDevice::service`](crate::timer::TimerDevice)
//! passes for what a bounded pass left over.

pub mod blk;
pub mod net;
pub mod pci;
pub mod queue;
#[cfg(test)]
mod test_driver;

pub use blk::{VirtioBlk, VirtioBlkConfig};
pub use net::{VirtioNet, VirtioNetConfig};
pub use pci::{Transport, VirtioPci};
pub use queue::{Chain, Desc, QueueError, Virtqueue};

use guest_memory::GuestMemory;

/// Reserved feature bits the transport offers for every device (6).
pub mod feature {
    /// Descriptors may point to indirect tables (2.7.5.3).
    pub const RING_INDIRECT_DESC: u64 = 1 << 28;
    /// `used_event` / `avail_event` suppression (2.7.7, 2.7.10).
    pub const RING_EVENT_IDX: u64 = 1 << 29;
    /// The device follows virtio 1.x, not the legacy interface.
    pub const VERSION_1: u64 = 1 << 32;
}

/// Device status bits (2.1).
pub mod status {
    pub const ACKNOWLEDGE: u8 = 1;
    pub const DRIVER: u8 = 2;
    pub const DRIVER_OK: u8 = 4;
    pub const FEATURES_OK: u8 = 8;
    pub const DEVICE_NEEDS_RESET: u8 = 64;
    pub const FAILED: u8 = 128;
}

/// Device IDs (5 "Device Types").
pub mod device_id {
    pub const NET: u16 = 1;
    pub const BLOCK: u16 = 2;
}

/// A device type's part of a virtio device: the transport calls it with the
/// queues it set up.
pub trait VirtioDevice: Send {
    /// A name for logs and the bus.
    fn name(&self) -> &'static str;
    /// The virtio device ID (5).
    fn device_id(&self) -> u16;
    /// The PCI class code (base, sub-class, interface).
    fn class_code(&self) -> u32;
    /// The device-type feature bits offered (the transport adds its own).
    fn features(&self) -> u64;
    /// The maximum size of each queue; the count is the number of queues.
    fn queue_max_sizes(&self) -> &[u16];
    /// Reads the device-specific configuration at `offset` (all-zero past its end).
    fn config_read(&mut self, offset: u64, data: &mut [u8]);
    /// Writes the device-specific configuration at `offset`.
    fn config_write(&mut self, offset: u64, data: &[u8]) {
        let _ = (offset, data);
    }
    /// The driver set DRIVER_OK with these features negotiated.
    fn activate(&mut self, features: u64) {
        let _ = features;
    }
    /// A device reset (2.4): back to the initial state, nothing in flight.
    fn reset(&mut self);
    /// The driver notified `queue` (4.1.4.4): take and complete buffers,
    /// within a bounded amount of work.
    fn queue_notify(&mut self, queue: u16, queues: &mut Queues<'_>);
    /// Whether buffers the driver made available on `queue` are work to do
    /// now. A receive queue's buffers wait for frames: the device says
    /// false for it unless it ran out of them with a frame waiting.
    fn wants_buffers(&self, queue: u16) -> bool {
        let _ = queue;
        true
    }
    /// A service pass: go on with work a bounded pass left over.
    fn service(&mut self, queues: &mut Queues<'_>);
    /// When the device next needs [`VirtioDevice::service`] (`now` or before: at once).
    fn next_deadline_ns(&mut self, now: u64) -> Option<u64>;
}

/// The device's view of its queues during one call: take chains, return them.
pub struct Queues<'a> {
    pub(crate) queues: &'a mut [Virtqueue],
    pub(crate) memory: &'a GuestMemory,
    pub(crate) features: u64,
    pub(crate) log: &'a mut guest_log::RateLimitedLog,
    pub(crate) name: &'static str,
}

impl Queues<'_> {
    /// The guest's memory, for the buffers of a chain.
    pub fn memory(&self) -> &GuestMemory {
        self.memory
    }

    /// The negotiated features.
    pub fn features(&self) -> u64 {
        self.features
    }

    /// Takes the next chain of `queue` into `chain`; false if the queue is
    /// empty, not enabled, or broken. A ring error breaks the queue (logged,
    /// the transport then sets DEVICE_NEEDS_RESET); other queues go on.
    pub fn pop(&mut self, queue: u16, chain: &mut Chain) -> bool {
        let indirect = self.features & feature::RING_INDIRECT_DESC != 0;
        let Some(q) = self.queues.get_mut(usize::from(queue)) else {
            return false;
        };
        match q.pop(self.memory, indirect, chain) {
            Ok(got) => got,
            Err(e) => {
                self.log.log(
                    log::Level::Warn,
                    format_args!(
                        "{}: queue {queue}: {e}; the device needs a reset",
                        self.name
                    ),
                );
                false
            }
        }
    }

    /// Gives the last `n` chains taken from `queue` back, untouched: they
    /// are taken again, in order, by the next [`Queues::pop`] (a frame that
    /// needs more receive buffers than the driver has posted waits).
    pub fn unpop(&mut self, queue: u16, n: u16) {
        if let Some(q) = self.queues.get_mut(usize::from(queue)) {
            q.unpop(n);
        }
    }

    /// Returns chain `head` of `queue` with `len` bytes written to it; the
    /// driver sees it when the pass ends.
    pub fn add_used(&mut self, queue: u16, head: u16, len: u32) {
        let Some(q) = self.queues.get_mut(usize::from(queue)) else {
            return;
        };
        if let Err(e) = q.add_used(self.memory, head, len) {
            q.set_broken();
            self.log.log(
                log::Level::Warn,
                format_args!(
                    "{}: queue {queue}: {e}; the device needs a reset",
                    self.name
                ),
            );
        }
    }
}
