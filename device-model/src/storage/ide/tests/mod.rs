//! Tests of the PIIX3 IDE function, driven through its ports and config
//! space as a guest would, with guest RAM a [`GuestMemory`] the function
//! shares. (That no access reaches past RAM is the handle's bounds check,
//! tested in crates/guest-memory; the tests here check what stays inside.)

mod ata;
mod atapi;
mod dma;
mod regs;

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use spin::Mutex;

use guest_memory::GuestMemory;

use super::*;
use crate::bus::BusDevice;
use crate::irq::{IrqChip, IrqLine};
use crate::pci::PciFunction;
use crate::storage::{BlockBackend, BlockError, RamDisk, ReadOnly};

pub const DISK_SECTORS: u64 = 4096;
pub const CD_BLOCKS: u64 = 64;
/// Room for a transfer of more than one DMA budget (`bmdma::DMA_BUDGET`).
pub const RAM: usize = 2 * 1024 * 1024;
pub const BM: u16 = 0xC000;

pub const P: u16 = 0x1F0;
pub const P_CTL: u16 = 0x3F6;
pub const S: u16 = 0x170;
pub const S_CTL: u16 = 0x376;

/// Byte `i` of sector `lba` of the test disk.
pub fn pattern(lba: u64, i: usize) -> u8 {
    (lba as usize * 7 + i / 3) as u8 ^ (lba >> 8) as u8
}

pub fn disk_image() -> Vec<u8> {
    (0..DISK_SECTORS)
        .flat_map(|lba| (0..512).map(move |i| pattern(lba, i)))
        .collect()
}

/// Byte `i` of CD block `lba`.
pub fn cd_pattern(lba: u64, i: usize) -> u8 {
    (lba as u8).wrapping_mul(31) ^ (i as u8) ^ (i >> 8) as u8
}

pub fn cd_image() -> Vec<u8> {
    (0..CD_BLOCKS)
        .flat_map(|lba| (0..2048).map(move |i| cd_pattern(lba, i)))
        .collect()
}

/// A backend the test can still look into after handing it over.
#[derive(Clone)]
pub struct Shared(pub Arc<Mutex<RamDisk>>);

impl Shared {
    pub fn new(name: &str, bytes: Vec<u8>) -> Shared {
        Shared(Arc::new(Mutex::new(RamDisk::new(name, bytes).unwrap())))
    }
    pub fn bytes(&self) -> Vec<u8> {
        self.0.lock().as_bytes().to_vec()
    }
}

impl BlockBackend for Shared {
    fn name(&self) -> &str {
        "shared.img"
    }
    fn capacity(&self) -> u64 {
        self.0.lock().capacity()
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.0.lock().read_sectors(lba, buf)
    }
    fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.0.lock().write_sectors(lba, buf)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

#[derive(Default)]
pub struct Levels([bool; 16]);

impl IrqChip for Levels {
    fn set_irq(&mut self, gsi: u32, level: bool) {
        if let Some(l) = self.0.get_mut(gsi as usize) {
            *l = level;
        }
    }
}

pub struct Rig {
    pub ide: Piix3Ide,
    pub irqs: Arc<Mutex<Levels>>,
    /// Guest RAM, shared with the function.
    pub mem: GuestMemory,
    pub disk: Shared,
}

impl Rig {
    /// Primary master: a 4096-sector disk; secondary master: a CD with a
    /// 64-block image; both slaves absent. Decoding and bus mastering on,
    /// BAR4 at [`BM`].
    pub fn new() -> Rig {
        let disk = Shared::new("test.img", disk_image());
        let cd = ReadOnly(RamDisk::new("test.iso", cd_image()).unwrap());
        let mut rig = Rig::bare();
        rig.ide.attach(
            ChannelId::Primary,
            DrivePosition::Master,
            IdeDrive::disk(Box::new(disk.clone())),
        );
        rig.ide.attach(
            ChannelId::Secondary,
            DrivePosition::Master,
            IdeDrive::cdrom(Some(Box::new(cd))),
        );
        rig.disk = disk;
        rig
    }

    /// No drives at all, configured like [`Rig::new`].
    pub fn bare() -> Rig {
        let irqs = Arc::new(Mutex::new(Levels::default()));
        let chip: crate::irq::IrqChipHandle = irqs.clone();
        let mem = GuestMemory::new(RAM);
        let ide = Piix3Ide::new(
            mem.clone(),
            IrqLine::new(chip.clone(), 14),
            IrqLine::new(chip, 15),
        );
        let mut rig = Rig {
            ide,
            irqs,
            mem,
            disk: Shared::new("unused.img", vec![0; 512]),
        };
        rig.cfg32(0x20, u32::from(BM));
        rig.cfg32(0x40, 0x8000_8000);
        rig.cfg32(0x04, 0x5);
        rig
    }

    pub fn cfg32(&mut self, off: u8, v: u32) {
        let mut ch = Vec::new();
        self.ide.config_write(off, &v.to_le_bytes(), &mut ch);
    }

    pub fn outb(&mut self, port: u16, v: u8) {
        self.ide.write(u64::from(port), 0, &[v]);
    }
    pub fn inb(&mut self, port: u16) -> u8 {
        let mut b = [0xFF];
        self.ide.read(u64::from(port), 0, &mut b);
        b[0]
    }
    pub fn inw(&mut self, port: u16) -> u16 {
        let mut b = [0xFF; 2];
        self.ide.read(u64::from(port), 0, &mut b);
        u16::from_le_bytes(b)
    }
    pub fn inl(&mut self, port: u16) -> u32 {
        let mut b = [0xFF; 4];
        self.ide.read(u64::from(port), 0, &mut b);
        u32::from_le_bytes(b)
    }
    pub fn outl(&mut self, port: u16, v: u32) {
        self.ide.write(u64::from(port), 0, &v.to_le_bytes());
    }

    pub fn irq(&self, gsi: usize) -> bool {
        self.irqs.lock().0[gsi]
    }

    /// A copy of guest RAM as it is now.
    pub fn ram(&self) -> Vec<u8> {
        let mut all = vec![0u8; RAM];
        self.mem.read(0, &mut all).unwrap();
        all
    }

    /// Writes `bytes` into guest RAM at `at`.
    pub fn poke(&self, at: usize, bytes: &[u8]) {
        self.mem.write(at as u64, bytes).unwrap();
    }

    /// One pass of the VM loop's service hook: the next piece of a
    /// transfer longer than one budget. Returns whether one moved.
    pub fn run_dma(&mut self) -> bool {
        let pending = self.ide.dma_pending();
        crate::timer::TimerDevice::service(&mut self.ide);
        pending
    }

    /// Writes PRDs `(base, count, eot)` at `table` in guest RAM.
    pub fn prds(&mut self, table: usize, prds: &[(u32, u16, bool)]) {
        for (i, &(base, count, eot)) in prds.iter().enumerate() {
            let mut d = [0u8; 8];
            d[..4].copy_from_slice(&base.to_le_bytes());
            d[4..6].copy_from_slice(&count.to_le_bytes());
            d[7] = if eot { 0x80 } else { 0 };
            self.poke(table + 8 * i, &d);
        }
    }

    /// Points channel `bm`'s (0 or 8) table at `table` and starts it for a
    /// device-to-memory (`to_memory`) transfer.
    pub fn bm_start(&mut self, bm: u16, table: u32, to_memory: bool) {
        self.outl(BM + bm + 4, table);
        let dir = if to_memory { 0x08 } else { 0 };
        self.outb(BM + bm, dir);
        self.outb(BM + bm, dir | 1);
    }

    /// Sets up a 28-bit LBA command's registers on the primary channel.
    pub fn lba28(&mut self, lba: u32, count: u8) {
        self.outb(P + 2, count);
        self.outb(P + 3, lba as u8);
        self.outb(P + 4, (lba >> 8) as u8);
        self.outb(P + 5, (lba >> 16) as u8);
        self.outb(P + 6, 0xE0 | ((lba >> 24) as u8 & 0xF));
    }

    /// Sets up a 48-bit LBA command's registers (HOB bytes first).
    pub fn lba48(&mut self, lba: u64, count: u16) {
        let l = lba.to_le_bytes();
        let c = count.to_le_bytes();
        self.outb(P + 2, c[1]);
        self.outb(P + 3, l[3]);
        self.outb(P + 4, l[4]);
        self.outb(P + 5, l[5]);
        self.outb(P + 2, c[0]);
        self.outb(P + 3, l[0]);
        self.outb(P + 4, l[1]);
        self.outb(P + 5, l[2]);
        self.outb(P + 6, 0x40);
    }

    /// Reads `n` bytes from the primary Data register in one bulk call.
    pub fn pio_read(&mut self, port: u16, n: usize) -> Vec<u8> {
        let mut b = vec![0; n];
        let got = self.ide.read_data(port, &mut b);
        assert_eq!(got, n, "DRQ block shorter than expected");
        b
    }
}

/// The sectors `[lba, lba + n)` of the pristine test disk.
pub fn expected(lba: u64, n: u64) -> Vec<u8> {
    (lba..lba + n)
        .flat_map(|l| (0..512).map(move |i| pattern(l, i)))
        .collect()
}

/// The CD blocks `[lba, lba + n)`.
pub fn cd_expected(lba: u64, n: u64) -> Vec<u8> {
    (lba..lba + n)
        .flat_map(|l| (0..2048).map(move |i| cd_pattern(l, i)))
        .collect()
}
