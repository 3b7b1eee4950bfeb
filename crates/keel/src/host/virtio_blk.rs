//! The machine's own virtio-blk disks (virtio 1.2, 5.2), driven with the
//! `virtio-drivers` crate over its PCI transport, each exposed as a
//! [`BlockBackend`] an emulated IDE drive can sit on: persistent storage for
//! guests (`disk = [ 'phy:virtio0,hda,w' ]`).
//!
//! Found at boot by a scan of PCI bus 0 (vendor 0x1AF4, device 0x1001
//! transitional or 0x1042 modern); `virtioN` is the N-th in scan order.
//! Requests are synchronous: Keel polls the used ring, which is fine for a
//! guest that waits on its own disk anyway. DMA memory is a pool of frames
//! taken from the frame allocator; Keel identity-maps all memory, so a
//! buffer's physical address is its address.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::NonNull;

use device_model::storage::block::sector_range;
use device_model::storage::{BlockBackend, BlockError};
use keel::dma_pool::DmaPool;
use keel::frames::{FrameAllocator, FRAME_SIZE};
use keel::pci_config::{is_virtio_blk, VIRTIO_BLK_TRANSITIONAL};
use virtio_drivers::device::blk::VirtIOBlk;
use virtio_drivers::transport::pci::bus::{BarInfo, Command, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use super::pci::PortCam;

/// The name prefix of host disks in VM configurations (`virtio0`).
use vm_config::HOST_DISK_PREFIX;

/// VIRTIO_BLK_F_FLUSH (virtio 1.2, 5.2.3): the device has a write cache and
/// takes VIRTIO_BLK_T_FLUSH requests.
const VIRTIO_BLK_F_FLUSH: u64 = 1 << 9;
/// Sectors per device request: 64 KiB, one data descriptor each.
const MAX_REQUEST_SECTORS: usize = 128;
/// DMA pages per disk: the crate's 16-entry virtqueue needs two or three.
const DMA_PAGES_PER_DISK: usize = 8;
/// Host disks Keel drives at most.
const MAX_DISKS: usize = 8;
/// Memory BARs must be identity-mapped by Keel's page tables, which always
/// cover the first 4 GiB (`memory::paging`).
const MAPPED_MMIO_END: u64 = 1 << 32;

/// The frames the [`KeelHal`] hands out, set once by [`HostDisks::probe`].
static DMA_POOL: spin::Mutex<Option<DmaPool>> = spin::Mutex::new(None);

/// The `virtio-drivers` hardware abstraction over Keel's memory: DMA pages
/// from [`DMA_POOL`], and identity mapping for everything else.
pub struct KeelHal;

// SAFETY: dma_alloc hands out zeroed, page-aligned pages of the pool, which
// the frame allocator gave to this module alone, each run to one owner until
// dma_dealloc returns it; every address is identity-mapped, so the pointer
// and the physical address are the same and both are valid.
unsafe impl Hal for KeelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        let Some(pa) = DMA_POOL.lock().as_mut().and_then(|p| p.alloc(pages)) else {
            // Physical address 0 tells the crate the allocation failed.
            return (0, NonNull::dangling());
        };
        let ptr = pa as *mut u8;
        // SAFETY: [pa, pa + pages * 4 KiB) is pool memory now owned by the
        // caller alone, identity-mapped and writable.
        unsafe { ptr.write_bytes(0, pages * FRAME_SIZE as usize) };
        match NonNull::new(ptr) {
            Some(p) => (pa, p),
            None => (0, NonNull::dangling()),
        }
    }

    unsafe fn dma_dealloc(paddr: PhysAddr, _vaddr: NonNull<u8>, pages: usize) -> i32 {
        let freed = DMA_POOL
            .lock()
            .as_mut()
            .is_some_and(|p| p.free(paddr, pages));
        if freed {
            0
        } else {
            -1
        }
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // HostDisks::probe checked every memory BAR of the device: non-zero
        // and below MAPPED_MMIO_END.
        debug_assert!(paddr != 0 && paddr + size as u64 <= MAPPED_MMIO_END);
        NonNull::new(paddr as *mut u8).unwrap_or(NonNull::dangling())
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        // Identity-mapped and cache-coherent: the device reads and writes
        // the buffer where it is.
        buffer.as_ptr() as *mut u8 as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}

type Device = VirtIOBlk<KeelHal, PciTransport>;

/// One of the machine's virtio-blk disks, as a guest's block backend.
pub struct VirtioDisk {
    name: String,
    device: Device,
    capacity: u64,
    read_only: bool,
    /// The device offered VIRTIO_BLK_F_FLUSH (and the crate negotiated it).
    flush: bool,
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
            .map_err(|e| self.io_error("flush", None, 0, e))
    }
}

impl Drop for VirtioDisk {
    /// The VM is gone: say what its disk did (the integration test reads it).
    fn drop(&mut self) {
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
    /// No host disks (a machine without virtio-blk).
    pub fn none() -> Self {
        HostDisks { slots: Vec::new() }
    }

    /// Scans PCI bus 0 for virtio-blk functions and starts each: DMA pages
    /// come from `frames`. Problems are logged and kept, to be reported when
    /// a VM configuration names the disk.
    pub fn probe(frames: &mut FrameAllocator) -> Self {
        let mut root = PciRoot::new(PortCam::new());
        let found: Vec<(DeviceFunction, u16)> = root
            .enumerate_bus(0)
            .filter(|(_, info)| is_virtio_blk(info.vendor_id, info.device_id))
            .map(|(f, info)| (f, info.device_id))
            .take(MAX_DISKS)
            .collect();
        if found.is_empty() {
            return Self::none();
        }
        let pages = DMA_PAGES_PER_DISK * found.len();
        match frames.alloc_contiguous(pages as u64 * FRAME_SIZE, FRAME_SIZE) {
            Some(base) => *DMA_POOL.lock() = Some(DmaPool::new(base, pages)),
            None => log::error!("no memory for the host disks' DMA ({pages} pages)"),
        }
        let mut slots = Vec::new();
        for (n, (function, device_id)) in found.into_iter().enumerate() {
            let name = format!("{HOST_DISK_PREFIX}{n}");
            let kind = if device_id == VIRTIO_BLK_TRANSITIONAL {
                "transitional"
            } else {
                "modern"
            };
            match start(&mut root, function, name.clone()) {
                Ok(disk) => {
                    log::info!(
                        "host disk {name}: virtio-blk at {function} ({kind}, 1af4:{device_id:04x}), \
                         {} sectors ({} MiB), {}, {}",
                        disk.capacity,
                        disk.capacity / 2048,
                        if disk.read_only { "read-only" } else { "writable" },
                        if disk.flush {
                            "write cache (flushes sent as VIRTIO_BLK_T_FLUSH)"
                        } else {
                            "no write cache"
                        }
                    );
                    slots.push(Slot::Ready(alloc::boxed::Box::new(disk)));
                }
                Err(why) => {
                    log::error!("host disk {name}: virtio-blk at {function} cannot be used: {why}");
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

/// Enables the function's memory decoding and bus mastering, checks its
/// memory BARs are mapped, and starts the crate's driver on it.
fn start(
    root: &mut PciRoot<PortCam>,
    function: DeviceFunction,
    name: String,
) -> Result<VirtioDisk, String> {
    let (_, command) = root.get_status_command(function);
    root.set_command(
        function,
        command | Command::IO_SPACE | Command::MEMORY_SPACE | Command::BUS_MASTER,
    );
    let bars = root
        .bars(function)
        .map_err(|e| format!("reading its BARs failed: {e}"))?;
    for (i, bar) in bars.iter().enumerate() {
        if let Some(BarInfo::Memory { address, size, .. }) = bar {
            if *address == 0 || address.saturating_add(*size) > MAPPED_MMIO_END {
                return Err(format!(
                    "BAR{i} is at {address:#x} (size {size:#x}); Keel needs the firmware to \
                     place it below 4 GiB"
                ));
            }
        }
    }
    let mut transport = PciTransport::new::<KeelHal, _>(root, function)
        .map_err(|e| format!("no virtio 1.x PCI transport: {e}"))?;
    // Reset, then read the offered features (virtio 1.2, 3.1.1 steps 1-4);
    // the crate's driver resets again and negotiates.
    transport.set_status(DeviceStatus::empty());
    transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
    let offered = transport.read_device_features();
    let device: Device =
        VirtIOBlk::new(transport).map_err(|e| format!("the device did not start: {e}"))?;
    Ok(VirtioDisk {
        name,
        capacity: device.capacity(),
        read_only: device.readonly(),
        flush: offered & VIRTIO_BLK_F_FLUSH != 0,
        device,
        stats: Stats::default(),
    })
}
