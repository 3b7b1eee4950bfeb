//! The machine's own virtio-blk disks (virtio 1.2, 5.2), driven with the
//! `virtio-drivers` crate over its PCI transport, each exposed as a
//! [`BlockBackend`] an emulated IDE drive can sit on: persistent storage for
//! guests (`disk = [ 'phy:virtio0,hda,w' ]`).
//!
//! Found at boot by the scan of PCI bus 0 in `host::virtio` (vendor 0x1AF4,
//! device 0x1001 transitional or 0x1042 modern); `virtioN` is the N-th disk
//! in scan order. Requests are synchronous: Keel polls the used ring, which
//! is fine for a guest that waits on its own disk anyway. DMA pages and the
//! crate's HAL are `host::virtio`'s.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use device_model::storage::block::sector_range;
use device_model::storage::{BlockBackend, BlockError};
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::transport::pci::bus::PciRoot;
use virtio_drivers::transport::pci::PciTransport;

use super::pci::PortCam;
use super::virtio::{Found, KeelHal};

/// The name prefix of host disks in VM configurations (`virtio0`).
use vm_config::HOST_DISK_PREFIX;

/// VIRTIO_BLK_F_FLUSH (virtio 1.2, 5.2.3): the device has a write cache and
/// takes VIRTIO_BLK_T_FLUSH requests.
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// Sectors per device request: 64 KiB, one data descriptor each.
const MAX_REQUEST_SECTORS: usize = 128;
/// The read-ahead window a VM's drive keeps over a host disk
/// (`device_model::storage::ReadAhead`): one device request.
pub const HOST_DISK_READ_AHEAD_SECTORS: usize = MAX_REQUEST_SECTORS;
/// DMA pages per disk: the crate's 16-entry virtqueue needs two or three.
pub(super) const DMA_PAGES_PER_DISK: usize = 8;
/// Host disks Keel drives at most.
pub(super) const MAX_DISKS: usize = 8;

type Device = VirtIOBlk<KeelHal, PciTransport>;

/// One of the machine's virtio-blk disks, as a guest's block backend.
pub struct VirtioDisk {
    name: String,
    device: Device,
    capacity: u64,
    read_only: bool,
    /// The device offered VIRTIO_BLK_F_FLUSH (and the crate negotiated it).
    flush: bool,
    /// Sectors were written since the last flush: the VM's end sends one
    /// (without a write cache, a completed write is durable already).
    unflushed: bool,
    stats: Stats,
}

/// What a disk did for its VM, logged when the VM is torn down.
#[derive(Debug, Default, Clone, Copy)]
struct Stats {
    read_sectors: u64,
    written_sectors: u64,
    requests: u64,
    flushes: u64,
}

impl VirtioDisk {
    fn io_error(
        &self,
        op: &'static str,
        lba: Option<u64>,
        sectors: usize,
        e: virtio_drivers::Error,
    ) -> BlockError {
        BlockError::Io {
            image: self.name.clone(),
            op,
            lba,
            sectors: sectors as u64,
            cause: format!("{e}"),
        }
    }
}

impl BlockBackend for VirtioDisk {
    fn name(&self) -> &str {
        &self.name
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        sector_range(&self.name, self.capacity, lba, buf.len())?;
        for (at, bytes) in keel::disk_requests::split(lba, buf.len(), MAX_REQUEST_SECTORS) {
            let sectors = bytes.len() / 512;
            self.stats.requests += 1;
            if let Err(e) = self.device.read_blocks(at as usize, &mut buf[bytes]) {
                return Err(self.io_error("read", Some(at), sectors, e));
            }
            self.stats.read_sectors += sectors as u64;
        }
        Ok(())
    }

    fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        sector_range(&self.name, self.capacity, lba, buf.len())?;
        if self.read_only {
            return Err(BlockError::ReadOnly {
                image: self.name.clone(),
                lba,
            });
        }
        for (at, bytes) in keel::disk_requests::split(lba, buf.len(), MAX_REQUEST_SECTORS) {
            let sectors = bytes.len() / 512;
            self.stats.requests += 1;
            if let Err(e) = self.device.write_blocks(at as usize, &buf[bytes]) {
                return Err(self.io_error("write", Some(at), sectors, e));
            }
            self.stats.written_sectors += sectors as u64;
            self.unflushed = true;
        }
        Ok(())
    }

    /// VIRTIO_BLK_T_FLUSH when the device has a write cache; without
    /// VIRTIO_BLK_F_FLUSH a completed write is already durable.
    fn flush(&mut self) -> Result<(), BlockError> {
        if !self.flush {
            return Ok(());
        }
        self.stats.flushes += 1;
        self.device
            .flush()
            .map_err(|e| self.io_error("flush", None, 0, e))?;
        self.unflushed = false;
        Ok(())
    }
}

impl Drop for VirtioDisk {
    /// The VM is gone, however it ended (power-off, triple fault, debug
    /// exit, a stop Keel asked for: each returns from `vm::run`, which drops
    /// the machine and its drives): flush what the guest wrote since its
    /// last flush, so the disk holds it, then say what the disk did (the
    /// integration tests read both lines).
    fn drop(&mut self) {
        if self.unflushed && self.flush {
            match BlockBackend::flush(self) {
                Ok(()) => log::info!(
                    "host disk {}: writes since the guest's last flush flushed at the VM's end",
                    self.name
                ),
                Err(e) => log::error!("host disk {}: flush at the VM's end failed: {e}", self.name),
            }
        }
        let s = self.stats;
        log::info!(
            "host disk {}: {} sectors read, {} written, {} requests, {} flushes sent to the device",
            self.name,
            s.read_sectors,
            s.written_sectors,
            s.requests,
            s.flushes
        );
    }
}

/// A virtio-blk function found on the bus: started, or why it could not be.
enum Slot {
    Ready(alloc::boxed::Box<VirtioDisk>),
    Failed(String),
    Taken,
}

/// The machine's virtio-blk disks, `virtio0` first.
pub struct HostDisks {
    slots: Vec<Slot>,
}

impl HostDisks {
    /// Starts the virtio-blk functions the scan found (`host::virtio::probe`),
    /// in order. Problems are logged and kept, to be reported when a VM
    /// configuration names the disk.
    pub(super) fn start(root: &mut PciRoot<PortCam>, found: &[Found]) -> Self {
        let mut slots = Vec::new();
        for (n, f) in found.iter().enumerate() {
            let name = format!("{HOST_DISK_PREFIX}{n}");
            match start(root, f, name.clone()) {
                Ok(disk) => {
                    log::info!(
                        "host disk {name}: virtio-blk at {}, {} sectors ({} MiB), {}, {}",
                        f.describe(),
                        disk.capacity,
                        disk.capacity / 2048,
                        if disk.read_only {
                            "read-only"
                        } else {
                            "writable"
                        },
                        if disk.flush {
                            "write cache (flushes sent as VIRTIO_BLK_T_FLUSH)"
                        } else {
                            "no write cache"
                        }
                    );
                    slots.push(Slot::Ready(alloc::boxed::Box::new(disk)));
                }
                Err(why) => {
                    log::error!(
                        "host disk {name}: virtio-blk at {} cannot be used: {why}",
                        f.function
                    );
                    slots.push(Slot::Failed(why));
                }
            }
        }
        HostDisks { slots }
    }

    /// Hands over `virtio{index}` for good, or says why it cannot be had.
    pub fn take(&mut self, index: u32) -> Result<VirtioDisk, String> {
        let name = format!("{HOST_DISK_PREFIX}{index}");
        let count = self.slots.len();
        let Some(slot) = self.slots.get_mut(index as usize) else {
            return Err(match count {
                0 => format!("the VM config names {name}, but this machine has no virtio-blk disk"),
                1 => format!(
                    "the VM config names {name}, but this machine has one virtio-blk disk (virtio0)"
                ),
                n => format!(
                    "the VM config names {name}, but this machine has {n} virtio-blk disks \
                     (virtio0 to virtio{})",
                    n - 1
                ),
            });
        };
        match core::mem::replace(slot, Slot::Taken) {
            Slot::Ready(disk) => Ok(*disk),
            Slot::Failed(why) => {
                *slot = Slot::Failed(why.clone());
                Err(format!("host disk {name} could not be started: {why}"))
            }
            Slot::Taken => Err(format!(
                "{name} is named by two disk entries; a host disk backs one drive"
            )),
        }
    }
}

/// Starts the crate's driver on the function.
fn start(root: &mut PciRoot<PortCam>, found: &Found, name: String) -> Result<VirtioDisk, String> {
    let (transport, offered) = super::virtio::transport(root, found.function)?;
    let device: Device =
        VirtIOBlk::new(transport).map_err(|e| format!("the device did not start: {e}"))?;
    Ok(VirtioDisk {
        name,
        capacity: device.capacity(),
        read_only: device.readonly(),
        flush: offered & VIRTIO_BLK_F_FLUSH != 0,
        unflushed: false,
        device,
        stats: Stats::default(),
    })
}
