//! QEMU's standard VGA ("stdvga", PCI 1234:1111, class 0x030000): a VGA
//! with the Bochs VBE extensions, as firmware (SeaBIOS's `vgabios-stdvga`),
//! bootloaders and operating systems (Linux's `bochs` DRM driver) know it.
//!
//! | file | what |
//! |---|---|
//! | `regs.rs` | the VGA register file behind ports 0x3B0-0x3DF |
//! | `dac.rs` | the DAC (palette) |
//! | `planar.rs` | the legacy window's text, planar and chain-4 layouts, latches, write and read modes |
//! | `vbe.rs` | the Bochs VBE DISPI registers (ports 0x1CE/0x1CF) |
//! | `screen.rs` | what the screen shows: the text dump and the RGB render |
//!
//! # Regions
//!
//! - **Legacy VGA**: ports 0x3B0-0x3DF, the DISPI ports 0x1CE-0x1CF, and the
//!   window 0xA0000-0xBFFFF (MMIO: every access exits, as the planar logic
//!   needs). They decode whatever the command register says, as on QEMU.
//! - **BAR0**, 16 MiB of prefetchable memory: the linear framebuffer, a
//!   RAM BAR: Keel allocates the card's video memory when it creates the
//!   VM and maps it wherever BAR0 decodes, so drawing costs no exits. The
//!   legacy window and VBE's banked window are other views of the same
//!   bytes (`planar.rs` says how the planes lie in it).
//! - **BAR2**, 4 KiB of memory: the VGA ports 0x3C0-0x3DF at 0x400, the
//!   DISPI registers at 0x500 + 2 * index, and QEMU's extended registers
//!   at 0x600 (size 8, framebuffer endianness: little), as Linux's
//!   `bochs` driver uses them.
//! - **Expansion ROM**: the VGA BIOS given in [`VgaConfig::rom`]; SeaBIOS
//!   runs it during POST, and INT 10h works from then on.
//!
//! Nothing the guest writes reaches outside video memory: window and BAR
//! offsets are bounded by it, register indexes by the register files.

mod dac;
pub mod planar;
pub mod regs;
mod screen;
pub mod vbe;

#[cfg(test)]
mod tests;

use alloc::sync::Arc;
use alloc::vec::Vec;

use guest_memory::{GuestMemory, HostRegionId};

use crate::bus::BusDevice;
use crate::pci::{BarKind, ConfigChange, ConfigSpace, PciDevice, PciFunction};
use crate::test_device::DeviceRam;

pub use screen::{Screen, MAX_TEXT_COLS, MAX_TEXT_ROWS};

use planar::Planar;
use regs::{gc, seq, VgaRegs};
use vbe::{Dispi, Effect};

/// QEMU's standard VGA.
pub const VENDOR_ID: u16 = 0x1234;
pub const DEVICE_ID: u16 = 0x1111;
/// Revision 2: the MMIO BAR has QEMU's extended registers at 0x600.
pub const REVISION: u8 = 2;
/// Display controller, VGA compatible (PCI 3.0 appendix D).
pub const CLASS: u32 = 0x03_0000;
/// QEMU's subsystem IDs for its display devices.
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x1AF4;
pub const SUBSYSTEM_ID: u16 = 0x1100;

/// Video memory, and the linear framebuffer BAR's size.
pub const VRAM_SIZE: u64 = 16 << 20;
/// The framebuffer BAR and the register BAR.
pub const LFB_BAR: u8 = 0;
pub const MMIO_BAR: u8 = 2;
pub const MMIO_BAR_LEN: u64 = 0x1000;
/// Where in the register BAR the VGA ports, the DISPI registers and QEMU's
/// extended registers are.
pub const MMIO_VGA: u64 = 0x400;
pub const MMIO_DISPI: u64 = 0x500;
pub const MMIO_QEXT: u64 = 0x600;
/// The extended registers' size register value, and the little-endian
/// framebuffer marker the endianness register reads.
const QEXT_SIZE: u32 = 8;
const QEXT_LITTLE_ENDIAN: u32 = 0x1e1e_1e1e;

/// The legacy ranges the card claims on the bus.
pub const VGA_PORTS: (u16, u16) = (0x3B0, 0x30);
/// The DISPI index port 0x1CE and data port 0x1CF; 0x1D0 is the data
/// port of older Bochs versions, and the high byte of a 16-bit access to 0x1CF.
pub const DISPI_PORTS: (u16, u16) = (0x1CE, 3);
pub const LEGACY_WINDOW: (u64, u64) = (0xA_0000, 0x2_0000);

/// How the card is built: its video memory and its BIOS.
#[derive(Clone)]
pub struct VgaConfig {
    /// Video memory ([`VRAM_SIZE`] bytes); with a region, mapped into the
    /// guest at BAR0 (see [`DeviceRam`]).
    pub vram: DeviceRam,
    /// The VGA BIOS the ROM BAR serves.
    pub rom: Option<Arc<[u8]>>,
}

impl VgaConfig {
    /// Video memory of the card's own, every access exiting (host tests, fuzzing).
    pub fn unmapped(rom: Option<Arc<[u8]>>) -> Self {
        VgaConfig {
            vram: DeviceRam {
                region: None,
                memory: GuestMemory::new(VRAM_SIZE as usize),
            },
            rom,
        }
    }
}

/// The card.
pub struct Vga {
    cs: ConfigSpace,
    pub(crate) regs: VgaRegs,
    planar: Planar,
    pub(crate) dispi: Dispi,
    vram: GuestMemory,
    region: Option<HostRegionId>,
    rom: Option<Arc<[u8]>>,
}

impl Vga {
    pub fn new(config: VgaConfig) -> Self {
        let mut cs = ConfigSpace::new(VENDOR_ID, DEVICE_ID, REVISION, CLASS, 0);
        // Fixed, valid sizes and indexes: these cannot fail.
        let _ = cs.add_bar(LFB_BAR, BarKind::Mem32 { prefetchable: true }, VRAM_SIZE);
        let _ = cs.add_bar(
            MMIO_BAR,
            BarKind::Mem32 {
                prefetchable: false,
            },
            MMIO_BAR_LEN,
        );
        cs.set_u16(
            crate::pci::config_space::reg::SUBSYSTEM_VENDOR_ID,
            SUBSYSTEM_VENDOR_ID,
        );
        cs.set_u16(crate::pci::config_space::reg::SUBSYSTEM_ID, SUBSYSTEM_ID);
        let rom = config.rom.filter(|image| {
            let size = (image.len() as u64).next_power_of_two().max(2048);
            cs.set_rom(size).is_ok()
        });
        let vram = config.vram.memory;
        Vga {
            cs,
            regs: VgaRegs::default(),
            planar: Planar::default(),
            dispi: Dispi::new(vram.size().min(VRAM_SIZE)),
            vram,
            region: config.vram.region,
            rom,
        }
    }

    /// Video memory, as the screen functions read it.
    pub fn vram(&self) -> &GuestMemory {
        &self.vram
    }

    /// A byte read from a VGA port (0x3B0-0x3DF).
    pub fn port_read(&mut self, port: u16) -> u8 {
        self.regs.read(port)
    }

    /// A byte written to a VGA port (0x3B0-0x3DF).
    pub fn port_write(&mut self, port: u16, v: u8) {
        self.regs.write(port, v);
    }

    /// A read of DISPI register `index`.
    pub fn dispi_read(&self, index: u16) -> u16 {
        self.dispi.read(index)
    }

    /// A write of `v` to DISPI register `index`, with what it starts.
    pub fn dispi_write(&mut self, index: u16, v: u16) {
        let effect = self.dispi.write(index, v);
        self.regs.dac.eight_bit = self.dispi.reg(vbe::ENABLE) & vbe::DAC_8BIT != 0;
        match effect {
            Effect::None | Effect::Disabled => {}
            Effect::Enabled { clear } => {
                // Bounded by the video memory's size (vbe.rs).
                let _ = self.vram.fill(0, clear as usize, 0);
                // The VGA side of a VBE mode: graphics, the 64 KiB window at
                // 0xA0000 (the bank), chain-4 for packed pixels.
                let g = &mut self.regs.gc;
                g[gc::MISC] = (g[gc::MISC] & !0x0C) | 0x04 | gc::MISC_GRAPHICS;
                g[gc::MODE] |= gc::MODE_SHIFT256;
                self.regs.seq[seq::MAP_MASK] = 0x0F;
                if self.dispi.reg(vbe::BPP) != 4 {
                    self.regs.seq[seq::MEMORY_MODE] |= seq::MM_CHAIN4;
                }
            }
        }
    }

    /// Where the legacy window at offset `offset` from 0xA0000 reaches:
    /// the offset inside the mapped window, and the bank's start in video
    /// memory; `None` outside the window GR06 selects.
    fn window(&self, offset: u64) -> Option<(u64, u64)> {
        let (start, len) = self.regs.window();
        let a = offset.checked_sub(start).filter(|&a| a < len)?;
        let linear = if self.dispi.enabled() {
            self.dispi.bank_offset()
        } else {
            0
        };
        Some((a, linear))
    }

    /// A byte read at `offset` from 0xA0000.
    pub fn window_read(&mut self, offset: u64) -> u8 {
        match self.window(offset) {
            Some((a, linear)) => self.planar.read(&self.regs, &self.vram, a, linear),
            None => 0xFF,
        }
    }

    /// A byte written at `offset` from 0xA0000.
    pub fn window_write(&mut self, offset: u64, v: u8) {
        if let Some((a, linear)) = self.window(offset) {
            self.planar.write(&self.regs, &self.vram, a, linear, v);
        }
    }

    /// A 16-bit access to the DISPI ports: 0x1CE the index, 0x1CF (and 0x1D0) the data.
    fn dispi_port_read(&self, offset: u64) -> u16 {
        if offset == 0 {
            self.dispi.index
        } else {
            self.dispi_read(self.dispi.index)
        }
    }

    fn dispi_port_write(&mut self, offset: u64, v: u16) {
        if offset == 0 {
            self.dispi.index = v;
        } else {
            self.dispi_write(self.dispi.index, v);
        }
    }

    /// Returns the card to its power-on state; video memory keeps its bytes.
    fn reset_state(&mut self) {
        self.regs = VgaRegs::default();
        self.planar = Planar::default();
        self.dispi = Dispi::new(self.vram.size().min(VRAM_SIZE));
    }

    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        match offset {
            o if (MMIO_VGA..MMIO_VGA + 0x20).contains(&o) => {
                for (i, b) in data.iter_mut().enumerate() {
                    let port = 0x3C0 + (o - MMIO_VGA + i as u64);
                    *b = if port <= 0x3DF {
                        self.port_read(port as u16)
                    } else {
                        0xFF
                    };
                }
            }
            o if (MMIO_DISPI..MMIO_DISPI + 2 * vbe::COUNT as u64).contains(&o) => {
                let v = self.dispi_read(((o - MMIO_DISPI) / 2) as u16).to_le_bytes();
                let shift = ((o - MMIO_DISPI) % 2) as usize;
                for (i, b) in data.iter_mut().enumerate() {
                    *b = v.get(shift + i).copied().unwrap_or(0);
                }
            }
            o if (MMIO_QEXT..MMIO_QEXT + 8).contains(&o) => {
                let v = (u64::from(QEXT_LITTLE_ENDIAN) << 32 | u64::from(QEXT_SIZE)).to_le_bytes();
                let at = (o - MMIO_QEXT) as usize;
                for (i, b) in data.iter_mut().enumerate() {
                    *b = v.get(at + i).copied().unwrap_or(0);
                }
            }
            _ => data.fill(0),
        }
    }

    fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        match offset {
            o if (MMIO_VGA..MMIO_VGA + 0x20).contains(&o) => {
                for (i, &b) in data.iter().enumerate() {
                    let port = 0x3C0 + (o - MMIO_VGA + i as u64);
                    if port <= 0x3DF {
                        self.port_write(port as u16, b);
                    }
                }
            }
            o if (MMIO_DISPI..MMIO_DISPI + 2 * vbe::COUNT as u64).contains(&o)
                && o % 2 == 0
                && data.len() >= 2 =>
            {
                let v = u16::from_le_bytes([data[0], data[1]]);
                self.dispi_write(((o - MMIO_DISPI) / 2) as u16, v);
            }
            // Byte writes to DISPI registers, the read-only extended
            // registers (the framebuffer stays little endian), the rest: dropped.
            _ => {}
        }
    }
}

/// The legacy ranges: the VGA ports, the DISPI ports and the window.
impl BusDevice for Vga {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        match base {
            b if b == u64::from(VGA_PORTS.0) => {
                for (i, d) in data.iter_mut().enumerate() {
                    *d = self.port_read(VGA_PORTS.0 + (offset as u16) + i as u16);
                }
            }
            b if b == u64::from(DISPI_PORTS.0) => {
                let v = self.dispi_port_read(offset).to_le_bytes();
                for (d, v) in data.iter_mut().zip(v) {
                    *d = v;
                }
            }
            _ => {
                for (i, d) in data.iter_mut().enumerate() {
                    *d = self.window_read(offset + i as u64);
                }
            }
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        match base {
            b if b == u64::from(VGA_PORTS.0) => {
                for (i, &d) in data.iter().enumerate() {
                    self.port_write(VGA_PORTS.0 + (offset as u16) + i as u16, d);
                }
            }
            b if b == u64::from(DISPI_PORTS.0) => {
                let lo = data.first().copied().unwrap_or(0);
                let hi = data.get(1).copied().unwrap_or(0);
                self.dispi_port_write(offset, u16::from_le_bytes([lo, hi]));
            }
            _ => {
                for (i, &d) in data.iter().enumerate() {
                    self.window_write(offset + i as u64, d);
                }
            }
        }
    }
}

impl PciFunction for Vga {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.cs.read(offset, data);
    }

    fn config_write(&mut self, offset: u8, data: &[u8], changes: &mut Vec<ConfigChange>) {
        self.cs.write(offset, data, changes);
    }

    fn reset(&mut self, changes: &mut Vec<ConfigChange>) {
        self.cs.reset(changes);
        self.reset_state();
    }
}

impl PciDevice for Vga {
    fn name(&self) -> &'static str {
        "vga"
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        match bar {
            // The framebuffer, for accesses that exit (the emulator's).
            LFB_BAR if self.vram.read(offset, data).is_err() => data.fill(0xFF),
            MMIO_BAR => self.mmio_read(offset, data),
            _ => {}
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        match bar {
            LFB_BAR => {
                let _ = self.vram.write(offset, data);
            }
            MMIO_BAR => self.mmio_write(offset, data),
            _ => {}
        }
    }

    fn rom_image(&self) -> Option<Arc<[u8]>> {
        self.rom.clone()
    }

    fn ram_bar(&self, bar: u8) -> Option<HostRegionId> {
        (bar == LFB_BAR).then_some(self.region).flatten()
    }
}
