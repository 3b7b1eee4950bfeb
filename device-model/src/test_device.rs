//! Keel's PCI test device (`keel_testdev = 1`): one function that shows
//! everything the PCI layer does for a device, and the guests that check it
//! end to end (`mmio`, `hostile-io`, `hostile-events`, `pci-testdev`, and
//! SeaBIOS running its option ROM). It is also the worked example of "How a
//! PCI device is added" in docs/ARCHITECTURE.md: this file and one
//! `pc.add_pci(...)` line in `Pc::new`.
//!
//! # Regions
//!
//! - **BAR0**, 8 KiB of 32-bit memory. The first page holds the scratch area
//!   and the registers below; the second the MSI-X table (one entry, at
//!   0x1000) and its PBA (0x1800), answered by the PCI layer.
//!   Offsets 0x000-0xEFF read back what was written, at any width.
//! - **BAR2**, 64 KiB of 32-bit memory backed by host memory Keel allocates
//!   for the device when it creates the VM (a "RAM BAR", like a framebuffer):
//!   while it decodes, the guest reaches it with no exit; the device sees the
//!   same bytes through its own [`GuestMemory`] view of the region.
//! - **Expansion ROM**, 2 KiB, serving [`OPTION_ROM`]: SeaBIOS runs it and it
//!   prints one line on the firmware debug console.
//!
//! # Power-on placement
//!
//! Guests that boot without a BIOS (`mmio`, `hostile-*`) find the scratch
//! page at `0xFEB00000`: BAR0's power-on value is that address with memory
//! decode on in the command register (and again after a reset). Firmware or
//! a guest that programs PCI moves it like any other BAR.
//!
//! # Registers (BAR0, little endian, any width inside one register)
//!
//! | offset | name | |
//! |---|---|---|
//! | 0xF00 | `ACCESS_COUNT` | RO: accesses to the scratch area and to BAR2 that reached the device (exited) |
//! | 0xF04 | `LAST_ACCESS` | RO: size in bytes of the last scratch access (7:0), 1 << 8 if a write |
//! | 0xF08 | `ID` | RO: `"KEEL"` |
//! | 0xF10 | `DMA_SRC` | RW, 64-bit guest-physical source |
//! | 0xF18 | `DMA_DST` | RW, 64-bit guest-physical destination |
//! | 0xF20 | `DMA_LEN` | RW, bytes, at most [`MAX_DMA_LEN`] |
//! | 0xF24 | `DOORBELL` | WO: any write copies `DMA_LEN` bytes from `DMA_SRC` to `DMA_DST` |
//! | 0xF28 | `STATUS` | bit 0 done, bit 1 error; write 1 to clear |
//! | 0xF2C | `DMA_COUNT` | RO: transfers completed |
//! | 0xF30 | `RAM_SUM` | RO: wrapping sum of BAR2's 32-bit words, as the device sees them |
//!
//! Other offsets of the page read as zero, writes to them are ignored.
//!
//! A doorbell copies guest RAM to guest RAM through the device's
//! [`GuestMemory`] handle, within the write (at most [`MAX_DMA_LEN`] bytes,
//! docs/SECURITY.md). Bus mastering off, a length over the limit or a range
//! outside RAM sets the error bit and moves nothing. Either way the device
//! then signals MSI-X entry 0, or, while MSI-X is disabled, asserts INTA#
//! until software clears `STATUS`.

use alloc::sync::Arc;
use alloc::vec::Vec;

use guest_log::RateLimitedLog;
use guest_memory::{GuestMemory, HostRegionId};
use log::Level;

use crate::interrupt::router::IntxLine;
use crate::pci::config_space::{command, reg};
use crate::pci::{BarKind, ConfigChange, ConfigSpace, MsixCap, PciDevice, PciFunction, PciWiring};

/// The device's IDs: not assigned by the PCI-SIG, only for Keel's test VMs
/// (ASCII "KE" and "TD").
pub const TEST_VENDOR_ID: u16 = 0x4B45;
pub const TEST_DEVICE_ID: u16 = 0x5444;
/// Class 0xFF ("device does not fit any defined class", PCI 3.0 appendix D).
const CLASS_OTHER: u32 = 0xFF_0000;

/// Where BAR0 decodes at power-on: a page in the PCI hole nothing else uses.
pub const TEST_DEVICE_BASE: u64 = 0xfeb0_0000;
/// BAR0's size: the register page and the MSI-X page.
pub const BAR0_LEN: u64 = 0x2000;
/// The RAM BAR (BAR2) and its size.
pub const RAM_BAR: u8 = 2;
pub const RAM_BAR_LEN: u64 = 0x1_0000;
/// The expansion ROM BAR's size.
const ROM_BAR_LEN: u64 = 0x800;
/// The MSI-X table and PBA in BAR0.
pub const MSIX_TABLE: u32 = 0x1000;
pub const MSIX_PBA: u32 = 0x1800;

const SCRATCH_LEN: usize = 0xf00;
pub const ACCESS_COUNT: u64 = 0xf00;
pub const LAST_ACCESS: u64 = 0xf04;
pub const ID: u64 = 0xf08;
pub const DMA_SRC: u64 = 0xf10;
pub const DMA_DST: u64 = 0xf18;
pub const DMA_LEN: u64 = 0xf20;
pub const DOORBELL: u64 = 0xf24;
pub const STATUS: u64 = 0xf28;
pub const DMA_COUNT: u64 = 0xf2c;
pub const RAM_SUM: u64 = 0xf30;
/// `ID`'s value: "KEEL" in memory order.
pub const ID_VALUE: u32 = u32::from_le_bytes(*b"KEEL");
pub const STATUS_DONE: u32 = 1 << 0;
pub const STATUS_ERROR: u32 = 1 << 1;
/// The most one doorbell moves: all of it within the write that rang it.
pub const MAX_DMA_LEN: u32 = 0x1000;
/// Bytes the copy moves per step, through a buffer on the stack.
const DMA_CHUNK: usize = 256;

/// The line the option ROM prints on the firmware debug console (port 0x402).
pub const OPTION_ROM_LINE: &str = "keel-testdev: option ROM ran";

/// The host memory behind the RAM BAR: the id the VMM registered it under
/// (`None`: not mapped into the guest, every access exits to the device, as
/// in host tests and the fuzz harness) and the device's own view of it.
#[derive(Clone)]
pub struct DeviceRam {
    pub region: Option<HostRegionId>,
    pub memory: GuestMemory,
}

impl DeviceRam {
    /// Memory of the device's own (host tests, fuzzing): nothing maps it.
    pub fn unmapped() -> Self {
        DeviceRam {
            region: None,
            memory: GuestMemory::new(RAM_BAR_LEN as usize),
        }
    }
}

/// The test device.
pub struct TestDevice {
    cs: ConfigSpace,
    msix: MsixCap,
    memory: GuestMemory,
    ram: DeviceRam,
    scratch: [u8; SCRATCH_LEN],
    count: u32,
    last: u32,
    dma_src: u64,
    dma_dst: u64,
    dma_len: u32,
    status: u32,
    dma_count: u32,
    intx: Option<IntxLine>,
    refused: RateLimitedLog,
}

impl TestDevice {
    /// The device over the guest's RAM `memory` (where it does DMA), with
    /// `ram` behind its RAM BAR.
    pub fn new(memory: GuestMemory, ram: DeviceRam) -> Self {
        let mut cs = ConfigSpace::new(TEST_VENDOR_ID, TEST_DEVICE_ID, 1, CLASS_OTHER, 0);
        // Sizes and indexes are fixed and valid; the results cannot fail.
        let _ = cs.add_bar(
            0,
            BarKind::Mem32 {
                prefetchable: false,
            },
            BAR0_LEN,
        );
        let _ = cs.add_bar(RAM_BAR, BarKind::Mem32 { prefetchable: true }, RAM_BAR_LEN);
        let _ = cs.set_rom(ROM_BAR_LEN);
        cs.set_interrupt_pin(1);
        let msix = MsixCap::add(&mut cs, 1, 0, MSIX_TABLE, 0, MSIX_PBA);
        let msix = msix.unwrap_or_else(|_| unreachable!("the MSI-X table fits BAR0"));
        cs.set_u32(reg::BAR0, TEST_DEVICE_BASE as u32);
        cs.set_u16(reg::COMMAND, command::MEMORY_SPACE);
        TestDevice {
            cs,
            msix,
            memory,
            ram,
            scratch: [0; SCRATCH_LEN],
            count: 0,
            last: 0,
            dma_src: 0,
            dma_dst: 0,
            dma_len: 0,
            status: 0,
            dma_count: 0,
            intx: None,
            refused: RateLimitedLog::new(),
        }
    }

    fn record(&mut self, len: usize, write: bool) {
        self.count = self.count.wrapping_add(1);
        self.last = (len as u32 & 0xff) | if write { 1 << 8 } else { 0 };
    }

    /// The 32-bit register at `offset` (dword aligned), if there is one.
    fn register(&self, offset: u64) -> Option<u32> {
        Some(match offset {
            ACCESS_COUNT => self.count,
            LAST_ACCESS => self.last,
            ID => ID_VALUE,
            DMA_SRC => self.dma_src as u32,
            o if o == DMA_SRC + 4 => (self.dma_src >> 32) as u32,
            DMA_DST => self.dma_dst as u32,
            o if o == DMA_DST + 4 => (self.dma_dst >> 32) as u32,
            DMA_LEN => self.dma_len,
            STATUS => self.status,
            DMA_COUNT => self.dma_count,
            RAM_SUM => self.ram_sum(),
            _ => return None,
        })
    }

    /// Byte `byte` of register `offset` (dword aligned) written as `v`.
    fn write_register_byte(&mut self, offset: u64, byte: u32, v: u8) {
        let shift = 8 * byte;
        let set32 = |r: &mut u32| *r = (*r & !(0xff << shift)) | u32::from(v) << shift;
        let set64 = |r: &mut u64, shift: u32| {
            *r = (*r & !(0xff << shift)) | u64::from(v) << shift;
        };
        match offset {
            DMA_SRC => set64(&mut self.dma_src, shift),
            o if o == DMA_SRC + 4 => set64(&mut self.dma_src, 32 + shift),
            DMA_DST => set64(&mut self.dma_dst, shift),
            o if o == DMA_DST + 4 => set64(&mut self.dma_dst, 32 + shift),
            DMA_LEN => set32(&mut self.dma_len),
            STATUS => self.status &= !(u32::from(v) << shift),
            _ => {}
        }
    }

    fn ram_sum(&self) -> u32 {
        (0..RAM_BAR_LEN / 4).fold(0u32, |sum, i| {
            sum.wrapping_add(self.ram.memory.read_obj::<u32>(i * 4).unwrap_or(0))
        })
    }

    /// The doorbell: the copy, then the interrupt.
    fn ring(&mut self) {
        let ok = match self.copy() {
            Ok(()) => true,
            Err(why) => {
                self.refused.log(
                    Level::Warn,
                    format_args!(
                        "Keel test device: DMA of {:#x} bytes {:#x} -> {:#x} refused: {why}",
                        self.dma_len, self.dma_src, self.dma_dst
                    ),
                );
                false
            }
        };
        if ok {
            self.dma_count = self.dma_count.wrapping_add(1);
        }
        self.status |= if ok { STATUS_DONE } else { STATUS_ERROR };
        if !self.msix.notify(0) {
            self.update_intx();
        }
    }

    fn copy(&self) -> Result<(), &'static str> {
        if self.cs.command() & command::BUS_MASTER == 0 {
            return Err("bus mastering is off");
        }
        if self.dma_len > MAX_DMA_LEN {
            return Err("longer than the device's 4 KiB limit");
        }
        let len = u64::from(self.dma_len);
        let size = self.memory.size();
        let inside = |gpa: u64| gpa.checked_add(len).is_some_and(|end| end <= size);
        if !inside(self.dma_src) || !inside(self.dma_dst) {
            return Err("outside guest RAM");
        }
        let mut buf = [0u8; DMA_CHUNK];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(DMA_CHUNK as u64) as usize;
            let chunk = &mut buf[..n];
            self.memory
                .read(self.dma_src + done, chunk)
                .map_err(|_| "outside guest RAM")?;
            self.memory
                .write(self.dma_dst + done, chunk)
                .map_err(|_| "outside guest RAM")?;
            done += n as u64;
        }
        Ok(())
    }

    /// INTA# follows `STATUS` while MSI-X is off (PCI 3.0 6.8.3.2: with
    /// MSI-X enabled the function does not use INTx).
    fn update_intx(&mut self) {
        let asserted = self.status != 0 && !self.msix.enabled();
        let level = self.cs.intx_level(asserted);
        if let Some(line) = &self.intx {
            line.set_level(level);
        }
    }

    fn bar0_read(&mut self, offset: u64, data: &mut [u8]) {
        let start = offset as usize;
        if let Some(src) = self.scratch.get(start..start.saturating_add(data.len())) {
            data.copy_from_slice(src);
            self.record(data.len(), false);
            return;
        }
        for (i, d) in data.iter_mut().enumerate() {
            let o = offset.saturating_add(i as u64);
            *d = self
                .register(o & !3)
                .map_or(0, |r| (r >> (8 * (o & 3))) as u8);
        }
    }

    fn bar0_write(&mut self, offset: u64, data: &[u8]) {
        let start = offset as usize;
        if let Some(dst) = self
            .scratch
            .get_mut(start..start.saturating_add(data.len()))
        {
            dst.copy_from_slice(data);
            self.record(data.len(), true);
            return;
        }
        let mut doorbell = false;
        let status_before = self.status;
        for (i, &v) in data.iter().enumerate() {
            let o = offset.saturating_add(i as u64);
            doorbell |= o & !3 == DOORBELL;
            self.write_register_byte(o & !3, (o & 3) as u32, v);
        }
        if self.status != status_before {
            self.update_intx();
        }
        if doorbell {
            self.ring();
        }
    }
}

impl PciFunction for TestDevice {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.cs.read(offset, data);
    }

    fn config_write(&mut self, offset: u8, data: &[u8], changes: &mut Vec<ConfigChange>) {
        self.cs.write(offset, data, changes);
        // Interrupt Disable or the MSI-X enable may have changed the pin.
        self.update_intx();
    }

    fn reset(&mut self, changes: &mut Vec<ConfigChange>) {
        self.cs.reset(changes);
        self.scratch.fill(0);
        (
            self.count,
            self.last,
            self.dma_len,
            self.status,
            self.dma_count,
        ) = (0, 0, 0, 0, 0);
        (self.dma_src, self.dma_dst) = (0, 0);
        let _ = self.ram.memory.fill(0, RAM_BAR_LEN as usize, 0);
        if let Some(line) = &self.intx {
            line.set_level(false);
        }
    }
}

impl PciDevice for TestDevice {
    fn name(&self) -> &'static str {
        "Keel test device"
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        match bar {
            0 => self.bar0_read(offset, data),
            RAM_BAR => {
                if self.ram.memory.read(offset, data).is_err() {
                    data.fill(0xff);
                }
                self.count = self.count.wrapping_add(1);
            }
            _ => {}
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        match bar {
            0 => self.bar0_write(offset, data),
            RAM_BAR => {
                let _ = self.ram.memory.write(offset, data);
                self.count = self.count.wrapping_add(1);
            }
            _ => {}
        }
    }

    fn rom_image(&self) -> Option<Arc<[u8]>> {
        Some(Arc::from(&OPTION_ROM[..]))
    }

    fn ram_bar(&self, bar: u8) -> Option<HostRegionId> {
        (bar == RAM_BAR).then_some(self.ram.region).flatten()
    }

    fn msix(&mut self) -> Option<(&mut MsixCap, &mut ConfigSpace)> {
        Some((&mut self.msix, &mut self.cs))
    }

    fn plugged(&mut self, wiring: PciWiring) {
        self.intx = wiring.intx;
    }
}

/// The option ROM, built when Keel is compiled ([`option_rom`]).
pub static OPTION_ROM: [u8; 512] = option_rom();

/// A PCI expansion ROM image of one 512-byte x86 image (PCI Firmware
/// Specification 3.0, 5.1): the `0x55 0xAA` header with its length in
/// 512-byte units, the initialization entry at offset 3, the pointer to the
/// PCI data structure at 0x18 and to a PnP expansion header at 0x1A; the
/// "PCIR" structure naming this device; the last byte makes every byte of
/// the image sum to zero.
///
/// The PnP header (Plug and Play BIOS Specification 1.0A, option ROM
/// expansion header) has no boot vectors: with it, firmware runs the init
/// entry while it scans the ROMs (SeaBIOS registers ROMs without one as
/// boot devices and calls them only when it tries to boot).
///
/// The init code (16-bit real mode, called far with CS at the image) prints
/// [`OPTION_ROM_LINE`] and a newline on port 0x402, then returns with RETF.
const fn option_rom() -> [u8; 512] {
    const PCIR: usize = 0x20;
    const CODE: usize = 0x40;
    const PNP: usize = 0x60;
    const MANUFACTURER: usize = 0x80;
    const PRODUCT: usize = 0x88;
    const MESSAGE: usize = 0xA0;
    let mut r = [0u8; 512];
    r[0] = 0x55;
    r[1] = 0xAA;
    r[2] = 1; // 512 bytes
              // Offset 3: JMP SHORT to the code (rel8 from the next instruction, 5).
    r[3] = 0xEB;
    r[4] = (CODE - 5) as u8;
    r[0x18] = PCIR as u8;
    r[0x1A] = PNP as u8;
    // PCI data structure.
    let pcir = *b"PCIR";
    let mut i = 0;
    while i < 4 {
        r[PCIR + i] = pcir[i];
        i += 1;
    }
    let v = TEST_VENDOR_ID.to_le_bytes();
    let d = TEST_DEVICE_ID.to_le_bytes();
    r[PCIR + 4] = v[0];
    r[PCIR + 5] = v[1];
    r[PCIR + 6] = d[0];
    r[PCIR + 7] = d[1];
    r[PCIR + 0xA] = 0x1C; // structure length
    r[PCIR + 0xC] = 3; // structure revision (PCI 3.0)
    let class = CLASS_OTHER.to_le_bytes();
    r[PCIR + 0xD] = class[0];
    r[PCIR + 0xE] = class[1];
    r[PCIR + 0xF] = class[2];
    r[PCIR + 0x10] = 1; // image length, 512-byte units
    r[PCIR + 0x12] = 1; // revision level of the code
    r[PCIR + 0x14] = 0; // code type: x86 (PC-AT compatible)
    r[PCIR + 0x15] = 0x80; // last image
    r[PCIR + 0x16] = 1; // maximum run-time image length
                        // Init code: CLD; PUSH AX; PUSH DX; PUSH SI; MOV DX, 0x402;
                        // MOV SI, MESSAGE; 1: CS LODSB; TEST AL, AL; JZ 2f; OUT DX, AL;
                        // JMP 1b; 2: POP SI; POP DX; POP AX; RETF.
    let code = [
        0xFC,
        0x50,
        0x52,
        0x56,
        0xBA,
        0x02,
        0x04,
        0xBE,
        MESSAGE as u8,
        0x00,
        0x2E,
        0xAC,
        0x84,
        0xC0,
        0x74,
        0x03,
        0xEE,
        0xEB,
        0xF7,
        0x5E,
        0x5A,
        0x58,
        0xCB,
    ];
    i = 0;
    while i < code.len() {
        r[CODE + i] = code[i];
        i += 1;
    }
    // PnP expansion header: "$PnP", revision 1, length 2 (x 16 bytes),
    // the manufacturer and product strings, no boot vectors.
    let pnp = *b"$PnP";
    i = 0;
    while i < 4 {
        r[PNP + i] = pnp[i];
        i += 1;
    }
    r[PNP + 4] = 1;
    r[PNP + 5] = 2;
    r[PNP + 0xE] = MANUFACTURER as u8;
    r[PNP + 0x10] = PRODUCT as u8;
    r[PNP + 0x12] = class[2];
    let mut sum = 0u8;
    i = 0;
    while i < 32 {
        sum = sum.wrapping_add(r[PNP + i]);
        i += 1;
    }
    r[PNP + 9] = 0u8.wrapping_sub(sum);
    let strings: [(usize, &[u8]); 3] = [
        (MANUFACTURER, b"Keel"),
        (PRODUCT, b"Keel test device"),
        (MESSAGE, OPTION_ROM_LINE.as_bytes()),
    ];
    let mut s = 0;
    while s < strings.len() {
        let (at, text) = strings[s];
        i = 0;
        while i < text.len() {
            r[at + i] = text[i];
            i += 1;
        }
        s += 1;
    }
    r[MESSAGE + OPTION_ROM_LINE.len()] = b'\n';
    // The checksum byte: the whole image sums to 0 (mod 256).
    sum = 0;
    i = 0;
    while i < 511 {
        sum = sum.wrapping_add(r[i]);
        i += 1;
    }
    r[511] = 0u8.wrapping_sub(sum);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::interrupt::lapic::LapicConfig;
    use crate::{Pc, PcConfig};
    use alloc::string::{String, ToString};
    use guest_memory::MemoryMapChange;
    use std::sync::Mutex as StdMutex;

    const B: u64 = TEST_DEVICE_BASE;

    fn device() -> TestDevice {
        TestDevice::new(GuestMemory::new(0x10000), DeviceRam::unmapped())
    }

    fn read32(d: &mut TestDevice, offset: u64) -> u32 {
        let mut r = [0u8; 4];
        d.bar_read(0, offset, &mut r);
        u32::from_le_bytes(r)
    }

    #[test]
    fn scratch_reads_back_and_counts() {
        let mut d = device();
        d.bar_write(0, 0x10, &0x1122_3344_5566_7788u64.to_le_bytes());
        let mut b = [0u8; 2];
        d.bar_read(0, 0x12, &mut b);
        assert_eq!(b, [0x66, 0x55]);
        assert_eq!(read32(&mut d, ACCESS_COUNT), 2);
        assert_eq!(read32(&mut d, LAST_ACCESS), 2, "a 2-byte read");
        d.bar_write(0, 0, &[1]);
        assert_eq!(read32(&mut d, LAST_ACCESS), 0x101, "a 1-byte write");
        let mut one = [0u8; 1];
        d.bar_read(0, ACCESS_COUNT + 1, &mut one);
        assert_eq!(one, [0], "byte 1 of the count (3)");
        assert_eq!(read32(&mut d, ID), ID_VALUE);
    }

    #[test]
    fn registers_are_read_only_and_the_rest_reads_zero() {
        let mut d = device();
        d.bar_write(0, ACCESS_COUNT, &[9, 9, 9, 9]);
        d.bar_write(0, 0xeff, &[1, 2]); // straddles the end of scratch: ignored
        assert_eq!(read32(&mut d, ACCESS_COUNT), 0);
        let mut r = [0xffu8; 8];
        d.bar_read(0, 0xff8, &mut r);
        assert_eq!(r, [0; 8]);
        d.bar_read(0, u64::MAX, &mut r[..1]);
        assert_eq!(r[0], 0);
    }

    #[test]
    fn the_option_rom_is_a_valid_pci_expansion_rom() {
        let r = &OPTION_ROM;
        assert_eq!(r[..3], [0x55, 0xAA, 1], "signature, 1 x 512 bytes");
        assert_eq!(r.iter().fold(0u8, |s, &b| s.wrapping_add(b)), 0, "checksum");
        let pcir = usize::from(u16::from_le_bytes([r[0x18], r[0x19]]));
        assert_eq!(&r[pcir..pcir + 4], b"PCIR");
        assert_eq!(
            u16::from_le_bytes([r[pcir + 4], r[pcir + 5]]),
            TEST_VENDOR_ID
        );
        assert_eq!(
            u16::from_le_bytes([r[pcir + 6], r[pcir + 7]]),
            TEST_DEVICE_ID
        );
        assert_eq!(
            (r[pcir + 0x14], r[pcir + 0x15]),
            (0, 0x80),
            "x86, last image"
        );
        let pnp = usize::from(u16::from_le_bytes([r[0x1A], r[0x1B]]));
        assert_eq!(&r[pnp..pnp + 4], b"$PnP");
        let pnp_sum = r[pnp..pnp + 32].iter().fold(0u8, |s, &b| s.wrapping_add(b));
        assert_eq!(pnp_sum, 0, "PnP header checksum");
        // Offset 3: a short jump to the code, which ends in RETF.
        assert_eq!(r[3], 0xEB);
        let code = 5 + usize::from(r[4]);
        assert_eq!(r[code], 0xFC, "CLD");
        assert!(r[code..code + 32].contains(&0xCB), "RETF");
        let message = OPTION_ROM_LINE.as_bytes();
        assert!(r.windows(message.len()).any(|w| w == message));
    }

    struct Machine {
        pc: Pc,
        ram: GuestMemory,
        lines: Arc<StdMutex<Vec<String>>>,
    }

    fn machine(region: Option<HostRegionId>) -> Machine {
        let lines = Arc::new(StdMutex::new(Vec::new()));
        let sink = lines.clone();
        let config = PcConfig {
            name: "vm".into(),
            vcpus: 1,
            unix_time: 0,
            lapic: LapicConfig::default(),
            test_device: true,
            test_device_ram: Some(DeviceRam {
                region,
                memory: GuestMemory::new(RAM_BAR_LEN as usize),
            }),
            vga: None,
        };
        let ram = GuestMemory::new(32 << 20);
        let pc = Pc::new(&config, FakeClock::new(0), ram.clone(), move |l: &str| {
            sink.lock().unwrap().push(l.to_string())
        })
        .unwrap();
        Machine { pc, ram, lines }
    }

    impl Machine {
        /// Config register `reg` of 00:02.0, where `Pc::new` plugs the device.
        fn cfg_write(&mut self, reg: u32, size: u8, value: u32) {
            self.pc.pio_write(0xcf8, 4, 0x8000_1000 | (reg & 0xfc));
            self.pc.pio_write(0xcfc + (reg & 3) as u16, size, value);
        }
        fn cfg_read(&mut self, reg: u32) -> u32 {
            self.pc.pio_write(0xcf8, 4, 0x8000_1000 | (reg & 0xfc));
            self.pc.pio_read(0xcfc, 4)
        }
        fn r32(&mut self, gpa: u64) -> u32 {
            let mut b = [0u8; 4];
            self.pc.mmio_read(gpa, &mut b);
            u32::from_le_bytes(b)
        }
        fn w32(&mut self, gpa: u64, v: u32) {
            self.pc.mmio_write(gpa, &v.to_le_bytes());
        }
        fn w64(&mut self, gpa: u64, v: u64) {
            self.pc.mmio_write(gpa, &v.to_le_bytes());
        }
        fn dma(&mut self, base: u64, src: u64, dst: u64, len: u32) {
            self.w64(base + DMA_SRC, src);
            self.w64(base + DMA_DST, dst);
            self.w32(base + DMA_LEN, len);
            self.w32(base + DOORBELL, 1);
        }
        /// The vector vCPU 0 takes now, handled (acknowledged, EOI).
        fn take_interrupt(&mut self) -> Option<u8> {
            let v = self.pc.router().lock().acknowledge(0)?;
            self.w32(0xfee0_00b0, 0);
            Some(v)
        }
    }

    #[test]
    fn bar0_decodes_at_its_power_on_address_until_moved_and_again_after_reset() {
        let mut m = machine(None);
        assert_eq!(m.cfg_read(0) & 0xffff, u32::from(TEST_VENDOR_ID));
        assert_eq!(m.r32(B + ID), ID_VALUE);
        m.cfg_write(0x10, 4, 0xfea0_0000);
        assert_eq!(m.r32(B + ID), 0xffff_ffff, "the old place is empty");
        assert_eq!(m.r32(0xfea0_0000 + ID), ID_VALUE);
        m.pc.reset();
        assert_eq!(m.r32(B + ID), ID_VALUE);
        assert_eq!(m.r32(0xfea0_0000 + ID), 0xffff_ffff);
    }

    #[test]
    fn a_doorbell_copies_guest_ram_and_signals_msix_entry_0() {
        let mut m = machine(None);
        m.w32(0xfee0_00f0, 0x1ff); // local APIC software-enabled
        m.cfg_write(
            0x04,
            2,
            u32::from(command::MEMORY_SPACE | command::BUS_MASTER),
        );
        let pattern: Vec<u8> = (0..=255u8).collect();
        m.ram.write(0x2_0000, &pattern).unwrap();
        // MSI-X entry 0: the local APIC, vector 0x40, unmasked; then enable.
        let table = B + u64::from(MSIX_TABLE);
        m.w32(table, 0xfee0_0000);
        m.w32(table + 8, 0x40);
        m.w32(table + 12, 0);
        let cap = m.cfg_read(0x34) & 0xff;
        m.cfg_write(cap + 2, 2, 0x8000);
        m.dma(B, 0x2_0000, 0x3_0000, 256);
        let mut got = [0u8; 256];
        m.ram.read(0x3_0000, &mut got).unwrap();
        assert_eq!(got[..], pattern[..]);
        assert_eq!(m.r32(B + STATUS), STATUS_DONE);
        assert_eq!(m.r32(B + DMA_COUNT), 1);
        assert_eq!(m.take_interrupt(), Some(0x40));
        // Masked: pending in the PBA, sent on unmask.
        m.w32(table + 12, 1);
        m.dma(B, 0x2_0000, 0x4_0000, 16);
        assert_eq!(m.take_interrupt(), None);
        assert_eq!(m.r32(B + u64::from(MSIX_PBA)), 1);
        m.w32(table + 12, 0);
        assert_eq!(m.r32(B + u64::from(MSIX_PBA)), 0);
        assert_eq!(m.take_interrupt(), Some(0x40));
    }

    #[test]
    fn hostile_dma_moves_nothing_and_reports_an_error() {
        let mut m = machine(None);
        m.ram.fill(0x3_0000, 0x2000, 0xEE).unwrap();
        // Bus mastering off.
        m.dma(B, 0x2_0000, 0x3_0000, 16);
        assert_eq!(m.r32(B + STATUS), STATUS_ERROR);
        m.w32(B + STATUS, STATUS_ERROR);
        assert_eq!(m.r32(B + STATUS), 0, "write 1 to clear");
        m.cfg_write(
            0x04,
            2,
            u32::from(command::MEMORY_SPACE | command::BUS_MASTER),
        );
        for (src, dst, len) in [
            (0x2_0000, 0x3_0000, MAX_DMA_LEN + 1),
            (u64::MAX - 8, 0x3_0000, 16),
            (0x2_0000, (32 << 20) - 8, 16),
            (0x2_0000, u64::MAX, 16),
        ] {
            m.dma(B, src, dst, len);
            assert_eq!(
                m.r32(B + STATUS),
                STATUS_ERROR,
                "{src:#x} {dst:#x} {len:#x}"
            );
            m.w32(B + STATUS, STATUS_ERROR);
        }
        let mut got = [0u8; 0x2000];
        m.ram.read(0x3_0000, &mut got).unwrap();
        assert!(got.iter().all(|&b| b == 0xEE), "nothing was written");
        assert_eq!(m.r32(B + DMA_COUNT), 0);
    }

    #[test]
    fn without_msix_completion_asserts_inta_until_status_is_cleared() {
        let mut m = machine(None);
        m.cfg_write(
            0x04,
            2,
            u32::from(command::MEMORY_SPACE | command::BUS_MASTER),
        );
        m.dma(B, 0x2_0000, 0x3_0000, 4);
        assert_ne!(m.cfg_read(0x04) >> 16 & 0x8, 0, "status: interrupt status");
        m.w32(B + STATUS, STATUS_DONE);
        assert_eq!(m.cfg_read(0x04) >> 16 & 0x8, 0, "deasserted");
    }

    #[test]
    fn the_ram_bar_is_mapped_where_it_decodes_and_shares_the_device_view() {
        let region = HostRegionId(3);
        let mut m = machine(Some(region));
        let _ = m.pc.take_memory_map_changes();
        m.cfg_write(0x18, 4, 0xfe90_0000);
        assert_eq!(
            m.pc.take_memory_map_changes(),
            [MemoryMapChange::Map {
                gpa: 0xfe90_0000,
                len: RAM_BAR_LEN,
                backing: guest_memory::Backing::Region {
                    id: region,
                    offset: 0
                },
                writes: guest_memory::Writes::Allowed,
            }]
        );
        // An access that exits anyway (the emulator) reaches the same bytes,
        // and is counted.
        m.w32(0xfe90_0010, 0x1234_5678);
        assert_eq!(m.r32(B + RAM_SUM), 0x1234_5678);
        assert_eq!(m.r32(B + ACCESS_COUNT), 1);
        m.cfg_write(0x04, 2, 0);
        assert_eq!(
            m.pc.take_memory_map_changes(),
            [MemoryMapChange::Unmap {
                gpa: 0xfe90_0000,
                len: RAM_BAR_LEN
            }]
        );
        // Over RAM: refused, nothing mapped.
        m.cfg_write(0x18, 4, 0x0100_0000);
        m.cfg_write(0x04, 2, u32::from(command::MEMORY_SPACE));
        let changes = m.pc.take_memory_map_changes();
        assert!(
            !changes
                .iter()
                .any(|c| matches!(c, MemoryMapChange::Map { .. })),
            "{changes:?}"
        );
    }

    #[test]
    fn the_rom_bar_serves_the_option_rom() {
        let mut m = machine(None);
        m.cfg_write(0x30, 4, 0xfe88_0001);
        assert_eq!(
            m.r32(0xfe88_0000),
            u32::from_le_bytes([0x55, 0xAA, 1, 0xEB])
        );
        assert!(m.lines.lock().unwrap().is_empty());
    }
}
