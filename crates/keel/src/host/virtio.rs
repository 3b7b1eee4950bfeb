//! What the machine's virtio devices share: one scan of PCI bus 0 for the
//! functions Keel drives (virtio-blk disks, virtio-net NICs, and the display adapter), one pool of
//! DMA pages for their virtqueues, the `virtio-drivers` hardware
//! abstraction over Keel's memory ([`KeelHal`]), and the start of a
//! function's virtio 1.x PCI transport.
//!
//! Keel identity-maps all memory, so a buffer's physical address is its
//! address; DMA memory is a pool of frames taken from the frame allocator.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ptr::NonNull;

use keel::dma_pool::DmaPool;
use keel::frames::{FrameAllocator, FRAME_SIZE};
use keel::pci_config::{is_bochs_vga, is_transitional_virtio, is_virtio_blk, is_virtio_net};
use virtio_drivers::transport::pci::bus::{BarInfo, Command, DeviceFunction, PciRoot};
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::{DeviceStatus, Transport};
use virtio_drivers::{BufferDirection, Hal, PhysAddr};

use super::pci::PortCam;
use super::{HostDisks, HostNics};

/// Memory BARs must be identity-mapped by Keel's page tables, which always
/// cover the first 4 GiB (`memory::paging`).
const MAPPED_MMIO_END: u64 = 1 << 32;

/// The frames the [`KeelHal`] hands out, set once by [`probe`].
static DMA_POOL: spin::Mutex<Option<DmaPool>> = spin::Mutex::new(None);

/// A virtio function found on bus 0: where it is and its PCI device ID.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    pub function: DeviceFunction,
    pub device_id: u16,
}

impl Found {
    /// `transitional` or `modern`, and the IDs, for the boot log.
    pub fn describe(&self) -> String {
        let kind = if is_transitional_virtio(self.device_id) {
            "transitional"
        } else {
            "modern"
        };
        format!("{} ({kind}, 1af4:{:04x})", self.function, self.device_id)
    }
}

/// Scans PCI bus 0 once for the machine's virtio-blk disks, virtio-net
/// NICs and display adapter (`host::display`), in scan order (`virtio0` is the first of each kind), gives them one
/// DMA pool from `frames` and starts each. Problems are logged and kept, to
/// be reported when a VM configuration names the device.
pub fn probe(frames: &mut FrameAllocator) -> (HostDisks, HostNics) {
    let mut root = PciRoot::new(PortCam::new());
    let functions: Vec<(DeviceFunction, u16, u16)> = root
        .enumerate_bus(0)
        .map(|(f, info)| (f, info.vendor_id, info.device_id))
        .collect();
    let of_kind = |is: fn(u16, u16) -> bool, max: usize| -> Vec<Found> {
        functions
            .iter()
            .filter(|(_, vendor, device)| is(*vendor, *device))
            .map(|&(function, _, device_id)| Found {
                function,
                device_id,
            })
            .take(max)
            .collect()
    };
    let disks = of_kind(is_virtio_blk, super::virtio_blk::MAX_DISKS);
    let nics = of_kind(is_virtio_net, super::virtio_net::MAX_NICS);
    let pages = super::virtio_blk::DMA_PAGES_PER_DISK * disks.len()
        + super::virtio_net::DMA_PAGES_PER_NIC * nics.len();
    if pages != 0 {
        match frames.alloc_contiguous(pages as u64 * FRAME_SIZE, FRAME_SIZE) {
            Some(base) => *DMA_POOL.lock() = Some(DmaPool::new(base, pages)),
            None => log::error!("no memory for the host devices' DMA ({pages} pages)"),
        }
    }
    if let Some(&(display, _, _)) = functions.iter().find(|(_, v, d)| is_bochs_vga(*v, *d)) {
        super::display::start(&mut root, display);
    }
    (
        HostDisks::start(&mut root, &disks),
        HostNics::start(&mut root, &nics),
    )
}

/// Enables the function's memory decoding and bus mastering, checks its
/// memory BARs are mapped, and opens its virtio 1.x PCI transport, reset
/// and acknowledged (virtio 1.2, 3.1.1 steps 1-3). Returns the transport
/// and the features the device offers; the crate's driver resets the
/// device again and negotiates.
pub fn transport(
    root: &mut PciRoot<PortCam>,
    function: DeviceFunction,
) -> Result<(PciTransport, u64), String> {
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
    transport.set_status(DeviceStatus::empty());
    transport.set_status(DeviceStatus::ACKNOWLEDGE | DeviceStatus::DRIVER);
    let offered = transport.read_device_features();
    Ok((transport, offered))
}

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
        // transport() checked every memory BAR of the device: non-zero and
        // below MAPPED_MMIO_END.
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
