//! Host tests' virtio driver: a PC with one virtio device (a virtio-blk
//! disk unless a test brings its own) at 00:02.0,
//! set up through PCI configuration space and the transport's registers the
//! way virtio 1.2 3.1 tells a driver to, and requests laid out in guest RAM.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use std::sync::Mutex as StdMutex;

use guest_memory::GuestMemory;

use super::pci::{common, legacy, COMMON_CFG, DEVICE_CFG, ISR_CFG, NOTIFY_CFG};
use super::queue::{VIRTQ_DESC_F_INDIRECT, VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use super::{feature, status, Transport, VirtioBlk, VirtioBlkConfig, VirtioDevice};
use crate::interrupt::lapic::LapicConfig;
use crate::storage::{BlockBackend, BlockError, RamDisk};
use crate::{FakeClock, Pc, PcConfig};

/// Where the test driver puts things.
pub const MODERN: u64 = 0xfe00_0000;
pub const MSIX: u64 = 0xfe01_0000;
pub const LEGACY: u16 = 0xc000;
pub const DESC: u64 = 0x10_0000;
pub const AVAIL: u64 = 0x11_0000;
pub const USED: u64 = 0x12_0000;
/// Headers, status bytes and data buffers.
pub const BUFS: u64 = 0x20_0000;
pub const RAM: usize = 32 << 20;
pub const QSIZE: u16 = 256;
pub const MSI_VECTOR_QUEUE: u8 = 0x51;
pub const MSI_VECTOR_CONFIG: u8 = 0x52;

/// A RAM disk the test can still look at while the device owns it.
#[derive(Clone)]
pub struct SharedDisk(pub Arc<StdMutex<RamDisk>>);

impl BlockBackend for SharedDisk {
    fn name(&self) -> &str {
        "shared"
    }
    fn capacity(&self) -> u64 {
        self.0.lock().unwrap().capacity()
    }
    fn read_only(&self) -> bool {
        self.0.lock().unwrap().read_only()
    }
    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.0.lock().unwrap().read_sectors(lba, buf)
    }
    fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.0.lock().unwrap().write_sectors(lba, buf)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

pub struct Driver {
    pub pc: Pc,
    pub ram: GuestMemory,
    pub disk: SharedDisk,
    /// The driver's next available index, and the used index it has seen.
    pub avail_idx: u16,
    pub used_seen: u16,
    pub qsize: u16,
}

/// A disk of `sectors`, each filled with its sector number's low byte.
pub fn machine(sectors: usize, read_only: bool, transport: Transport) -> Driver {
    let bytes: Vec<u8> = (0..sectors * 512).map(|i| (i / 512) as u8).collect();
    let disk = SharedDisk(Arc::new(StdMutex::new(
        RamDisk::new("shared", bytes).unwrap(),
    )));
    let blk = VirtioBlk::new(VirtioBlkConfig { read_only }, Box::new(disk.clone()));
    let mut d = machine_with(blk, transport);
    d.disk = disk;
    d
}

/// A PC with `device` at 00:02.0, its BARs placed, I/O, memory and bus
/// mastering on (the `disk` field is an unused one-sector disk).
pub fn machine_with<D: VirtioDevice + 'static>(device: D, transport: Transport) -> Driver {
    let config = PcConfig {
        name: "vm".into(),
        vcpus: 1,
        unix_time: 0,
        lapic: LapicConfig::default(),
        test_device: false,
        test_device_ram: None,
        vga: None,
    };
    let ram = GuestMemory::new(RAM);
    let clock = FakeClock::new(0);
    let mut pc = Pc::new(&config, clock, ram.clone(), |_: &str| {}).unwrap();
    let disk = SharedDisk(Arc::new(StdMutex::new(
        RamDisk::new("shared", vec![0; 512]).unwrap(),
    )));
    let bdf = pc.add_virtio(device, transport).unwrap();
    assert_eq!((bdf.device, bdf.function), (2, 0));
    let mut d = Driver {
        pc,
        ram,
        disk,
        avail_idx: 0,
        used_seen: 0,
        qsize: QSIZE,
    };
    if transport == Transport::Transitional {
        d.cfg_write(0x10, 4, u32::from(LEGACY));
    }
    d.cfg_write(0x14, 4, MSIX as u32);
    d.cfg_write(0x20, 4, MODERN as u32);
    // I/O, memory, bus master.
    d.cfg_write(0x04, 2, 0x7);
    d
}

impl Driver {
    pub fn cfg_write(&mut self, reg: u32, size: u8, value: u32) {
        self.pc.pio_write(0xcf8, 4, 0x8000_1000 | (reg & 0xfc));
        self.pc.pio_write(0xcfc + (reg & 3) as u16, size, value);
    }
    pub fn cfg_read(&mut self, reg: u32, size: u8) -> u32 {
        self.pc.pio_write(0xcf8, 4, 0x8000_1000 | (reg & 0xfc));
        self.pc.pio_read(0xcfc + (reg & 3) as u16, size)
    }
    pub fn read(&mut self, gpa: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        self.pc.mmio_read(gpa, &mut b[..len]);
        u64::from_le_bytes(b)
    }
    pub fn write(&mut self, gpa: u64, len: usize, v: u64) {
        self.pc.mmio_write(gpa, &v.to_le_bytes()[..len]);
    }
    pub fn common_read(&mut self, field: u64, len: usize) -> u64 {
        self.read(MODERN + COMMON_CFG + field, len)
    }
    pub fn common_write(&mut self, field: u64, len: usize, v: u64) {
        self.write(MODERN + COMMON_CFG + field, len, v)
    }
    pub fn status(&mut self) -> u8 {
        self.common_read(common::DEVICE_STATUS, 1) as u8
    }
    pub fn isr(&mut self) -> u8 {
        self.read(MODERN + ISR_CFG, 1) as u8
    }
    pub fn device_cfg(&mut self, offset: u64, len: usize) -> u64 {
        self.read(MODERN + DEVICE_CFG + offset, len)
    }
    pub fn device_features(&mut self) -> u64 {
        self.common_write(common::DEVICE_FEATURE_SELECT, 4, 0);
        let lo = self.common_read(common::DEVICE_FEATURE, 4);
        self.common_write(common::DEVICE_FEATURE_SELECT, 4, 1);
        let hi = self.common_read(common::DEVICE_FEATURE, 4);
        hi << 32 | lo
    }

    /// 3.1.1 steps 1-6: reset, ACKNOWLEDGE, DRIVER, features, FEATURES_OK;
    /// returns whether the device kept FEATURES_OK.
    pub fn negotiate(&mut self, features: u64) -> bool {
        self.common_write(common::DEVICE_STATUS, 1, 0);
        self.common_write(common::DEVICE_STATUS, 1, u64::from(status::ACKNOWLEDGE));
        let s = status::ACKNOWLEDGE | status::DRIVER;
        self.common_write(common::DEVICE_STATUS, 1, u64::from(s));
        self.common_write(common::DRIVER_FEATURE_SELECT, 4, 0);
        self.common_write(common::DRIVER_FEATURE, 4, features & 0xFFFF_FFFF);
        self.common_write(common::DRIVER_FEATURE_SELECT, 4, 1);
        self.common_write(common::DRIVER_FEATURE, 4, features >> 32);
        self.common_write(common::DEVICE_STATUS, 1, u64::from(s | status::FEATURES_OK));
        self.status() & status::FEATURES_OK != 0
    }

    /// Sets queue 0 up at DESC/AVAIL/USED with `size` entries and MSI-X
    /// `vector`, then DRIVER_OK.
    pub fn setup_queue(&mut self, size: u16, vector: u16) {
        self.qsize = size;
        self.setup_queue_at(0, size, vector, (DESC, AVAIL, USED));
        let s = self.status() | status::DRIVER_OK;
        self.common_write(common::DEVICE_STATUS, 1, u64::from(s));
    }

    /// Sets `queue` up with `size` entries, MSI-X `vector` and its rings
    /// at (descriptor table, available ring, used ring); enables it.
    pub fn setup_queue_at(&mut self, queue: u16, size: u16, vector: u16, rings: (u64, u64, u64)) {
        self.common_write(common::QUEUE_SELECT, 2, u64::from(queue));
        self.common_write(common::QUEUE_SIZE, 2, u64::from(size));
        self.common_write(common::QUEUE_MSIX_VECTOR, 2, u64::from(vector));
        self.common_write(common::QUEUE_DESC, 4, rings.0);
        self.common_write(common::QUEUE_DESC + 4, 4, 0);
        self.common_write(common::QUEUE_DRIVER, 8, rings.1);
        self.common_write(common::QUEUE_DEVICE, 8, rings.2);
        self.common_write(common::QUEUE_ENABLE, 2, 1);
    }

    /// A modern driver with `extra` features on top of VERSION_1.
    pub fn start(&mut self, extra: u64) {
        assert!(self.negotiate(feature::VERSION_1 | extra));
        self.setup_queue(QSIZE, 0);
    }

    /// The local APIC on, MSI-X entries 0 (queue) and 1 (config) to it, enabled.
    pub fn enable_msix(&mut self) {
        self.write(0xfee0_00f0, 4, 0x1ff);
        for (entry, vector) in [(0u64, MSI_VECTOR_QUEUE), (1, MSI_VECTOR_CONFIG)] {
            self.write(MSIX + 16 * entry, 4, 0xfee0_0000);
            self.write(MSIX + 16 * entry + 8, 4, u64::from(vector));
            self.write(MSIX + 16 * entry + 12, 4, 0);
        }
        let cap = self.msix_cap();
        self.cfg_write(cap + 2, 2, 0x8000);
    }

    pub fn msix_cap(&mut self) -> u32 {
        let mut at = self.cfg_read(0x34, 1);
        while at != 0 {
            if self.cfg_read(at, 1) == 0x11 {
                return at;
            }
            at = self.cfg_read(at + 1, 1);
        }
        panic!("no MSI-X capability");
    }

    /// The vector vCPU 0 takes now, handled (acknowledged, EOI).
    pub fn take_interrupt(&mut self) -> Option<u8> {
        let v = self.pc.router().lock().acknowledge(0)?;
        self.write(0xfee0_00b0, 4, 0);
        Some(v)
    }

    pub fn desc(&self, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
        let at = table + 16 * u64::from(i);
        self.ram.write_obj(at, addr).unwrap();
        self.ram.write_obj(at + 8, len).unwrap();
        self.ram.write_obj(at + 12, flags).unwrap();
        self.ram.write_obj(at + 14, next).unwrap();
    }

    /// Makes `head` available (the ring index is not yet published if `publish` is false).
    pub fn offer(&mut self, head: u16) {
        let slot = u64::from(self.avail_idx % self.qsize);
        self.ram.write_obj(AVAIL + 4 + 2 * slot, head).unwrap();
        self.avail_idx = self.avail_idx.wrapping_add(1);
        self.ram.write_obj(AVAIL + 2, self.avail_idx).unwrap();
    }

    pub fn notify(&mut self) {
        self.write(MODERN + NOTIFY_CFG, 2, 0);
    }

    pub fn legacy_notify(&mut self) {
        self.pc
            .pio_write(LEGACY + legacy::QUEUE_NOTIFY as u16, 2, 0);
    }

    /// Used elements not yet seen: (id, len).
    pub fn used(&mut self) -> Vec<(u32, u32)> {
        let idx: u16 = self.ram.read_obj(USED + 2).unwrap();
        let mut out = vec![];
        while self.used_seen != idx {
            let at = USED + 4 + 8 * u64::from(self.used_seen % self.qsize);
            out.push((
                self.ram.read_obj(at).unwrap(),
                self.ram.read_obj(at + 4).unwrap(),
            ));
            self.used_seen = self.used_seen.wrapping_add(1);
        }
        out
    }

    /// A block request in slot `slot` (descriptors 3*slot.. in the direct
    /// table, or an indirect table): header, `data` buffers of
    /// `seg_len` bytes each (device-writable for IN and GET_ID), status.
    /// Returns (head, data address, status address).
    pub fn request(
        &mut self,
        slot: u16,
        kind: u32,
        sector: u64,
        segs: u16,
        seg_len: u32,
        indirect: bool,
    ) -> (u16, u64, u64) {
        let base = BUFS + u64::from(slot) * 0x10_0000;
        let header = base;
        let data = base + 0x1000;
        let status_at = base + 0x800;
        self.ram.write_obj(header, kind).unwrap();
        self.ram.write_obj(header + 4, 0u32).unwrap();
        self.ram.write_obj(header + 8, sector).unwrap();
        self.ram.write_obj(status_at, 0xEEu8).unwrap();
        let writes = matches!(kind, 0 | 8);
        let data_flags = if writes { VIRTQ_DESC_F_WRITE } else { 0 };
        let mut entries: Vec<(u64, u32, u16)> = vec![(header, 16, 0)];
        for s in 0..segs {
            entries.push((
                data + u64::from(s) * u64::from(seg_len),
                seg_len,
                data_flags,
            ));
        }
        entries.push((status_at, 1, VIRTQ_DESC_F_WRITE));
        let (table, first) = if indirect {
            (base + 0x8_0000, 0u16)
        } else {
            (DESC, slot * (segs + 2))
        };
        let n = entries.len() as u16;
        for (i, (addr, len, flags)) in entries.into_iter().enumerate() {
            let i = i as u16;
            let next = if i + 1 < n { VIRTQ_DESC_F_NEXT } else { 0 };
            self.desc(table, first + i, addr, len, flags | next, first + i + 1);
        }
        let head = if indirect {
            self.desc(
                DESC,
                slot,
                table,
                16 * u32::from(n),
                VIRTQ_DESC_F_INDIRECT,
                0,
            );
            slot
        } else {
            first
        };
        (head, data, status_at)
    }

    /// The disk's bytes `[lba * 512, + len)`.
    pub fn disk_bytes(&self, lba: u64, len: usize) -> Vec<u8> {
        let mut buf = vec![0u8; len];
        self.disk
            .0
            .lock()
            .unwrap()
            .read_sectors(lba, &mut buf)
            .unwrap();
        buf
    }
}
