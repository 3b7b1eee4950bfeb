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
//! | `dirty.rs` | what changed on the screen since the display last looked |
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
//! # What changed, for the display
//!
//! The card keeps a record of what changed on its screen ([`dirty`]),
//! which Keel's display takes to redraw only the rows that changed
//! ([`Vga::take_changes`]). Writes through the legacy window and
//! framebuffer writes that exit are seen here; writes straight into the
//! mapped framebuffer are not, so while a VBE mode is on and BAR0
//! decodes, the card asks the VMM (through the memory-map queue,
//! [`Vga::set_memory_map`]) for a dirty log over the part of the BAR its
//! mode shows, moves it when the BAR or the displayed part moves and
//! stops it when the mode ends; the VMM hands the logged pages back
//! through [`Vga::lfb_written`].
//!
//! Nothing the guest writes reaches outside video memory: window and BAR
//! offsets are bounded by it, register indexes by the register files.

mod dac;
pub mod dirty;
pub mod planar;
pub mod regs;
mod screen;
pub mod vbe;

#[cfg(test)]
mod tests;

use alloc::sync::Arc;
use alloc::vec::Vec;

use guest_memory::{GuestMemory, HostRegionId, MemoryMapChange};

use crate::bus::BusDevice;
use crate::memory_map::MemoryMapQueue;
use crate::pci::{BarKind, ConfigChange, ConfigSpace, PciDevice, PciFunction};
use crate::test_device::DeviceRam;

pub use screen::{Screen, MAX_TEXT_COLS, MAX_TEXT_ROWS};

use dirty::Dirty;
use planar::{Planar, PLANE_SIZE};
use regs::{gc, seq, Shown, VgaRegs};
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

/// Pages of the framebuffer BAR (the dirty log's unit).
const PAGE: u64 = 0x1000;

/// The dirty log the card asked for over its framebuffer BAR: guest
/// pages `[gpa, gpa + len)`, video memory from `offset` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LfbLog {
    pub gpa: u64,
    pub len: u64,
    pub offset: u64,
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
    /// What changed on the screen since the display last took it.
    dirty: Dirty,
    /// Where the card asks for its framebuffer's dirty log (with a mapped BAR).
    memory_map: Option<MemoryMapQueue>,
    /// The dirty log asked for, if any.
    lfb_log: Option<LfbLog>,
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
            dirty: Dirty::new(vram.size()),
            vram,
            region: config.vram.region,
            rom,
            memory_map: None,
            lfb_log: None,
        }
    }

    /// Where the card queues the dirty log of its mapped framebuffer
    /// (the PC's memory-map queue); without it, or without a host region
    /// behind BAR0, no log is asked for.
    pub fn set_memory_map(&mut self, queue: MemoryMapQueue) {
        self.memory_map = Some(queue);
        self.sync_lfb_log();
    }

    /// The framebuffer's dirty log the card asked for, if any: the VMM
    /// takes its pages and hands them to [`Vga::lfb_written`].
    pub fn lfb_log(&self) -> Option<LfbLog> {
        self.lfb_log
    }

    /// The pages of the framebuffer's dirty log `log` written since the
    /// last call (bit `i`: page `log.gpa + i * 4 KiB`), or `None` if they
    /// could not be read (the log not in place yet): then all its pages
    /// count as written. A log other than the current one is ignored.
    pub fn lfb_written(&mut self, log: LfbLog, pages: Option<&[u64]>) {
        if self.lfb_log != Some(log) {
            return;
        }
        let Some(pages) = pages else {
            self.dirty.mark(log.offset, log.len);
            return;
        };
        let count = log.len / PAGE;
        for (w, &word) in pages.iter().enumerate().take(count.div_ceil(64) as usize) {
            let mut bits = word;
            while bits != 0 {
                let page = w as u64 * 64 + u64::from(bits.trailing_zeros());
                bits &= bits - 1;
                if page < count {
                    self.dirty.mark(log.offset + page * PAGE, PAGE);
                }
            }
        }
    }

    /// The dirty log the screen needs now: over the pages of BAR0 that
    /// the VBE mode shows, while it is on, BAR0 decodes and is mapped.
    fn wanted_lfb_log(&self) -> Option<LfbLog> {
        self.memory_map.as_ref()?;
        self.region?;
        if !self.dispi.enabled() {
            return None;
        }
        let bar = self.cs.bar_address(LFB_BAR)?;
        let size = self.vram.size().min(VRAM_SIZE);
        let d = &self.dispi;
        let rows = u64::from(d.reg(vbe::YRES).max(1));
        let last = u64::from(d.reg(vbe::XRES)) * vbe::bytes_per_pixel(d.reg(vbe::BPP));
        let start = d.start();
        let end = start
            .saturating_add((rows - 1).saturating_mul(d.line_bytes()))
            .saturating_add(last)
            .min(size);
        let first = start - start % PAGE;
        if first >= end {
            return None;
        }
        let len = end.div_ceil(PAGE) * PAGE - first;
        Some(LfbLog {
            gpa: bar + first,
            len,
            offset: first,
        })
    }

    /// Moves the framebuffer's dirty log to where the screen needs it
    /// (stopping the old one first: logs may not overlap). What the old
    /// log did not hand in yet is lost, so everything counts as changed.
    fn sync_lfb_log(&mut self) {
        let want = self.wanted_lfb_log();
        if want == self.lfb_log {
            return;
        }
        if let Some(queue) = &self.memory_map {
            if let Some(old) = self.lfb_log {
                queue.push(MemoryMapChange::DirtyLog {
                    gpa: old.gpa,
                    len: old.len,
                    on: false,
                });
            }
            if let Some(new) = want {
                queue.push(MemoryMapChange::DirtyLog {
                    gpa: new.gpa,
                    len: new.len,
                    on: true,
                });
            }
        }
        self.lfb_log = want;
        self.dirty.mark_all();
    }

    /// What changed on the screen since the last call, which is forgotten:
    /// true if the whole picture may have (a register, the palette, the
    /// mode, the font); else `row` gets each scan line of the current
    /// screen ([`Vga::screen`]) that shows written video memory.
    pub fn take_changes(&mut self, mut row: impl FnMut(u32)) -> bool {
        let screen = self.screen();
        let all = self.dirty.all(matches!(screen, Screen::Text { .. }));
        if !all && !self.dirty.is_clean() {
            let (_, height) = self.screen_size(screen);
            for y in 0..height {
                let touched = self
                    .row_bytes(screen, y)
                    .iter()
                    .any(|&(at, len)| self.dirty.touches(at, len));
                if touched {
                    row(y);
                }
            }
        }
        self.dirty.clear();
        all
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
        let cursor = self.cursor_cell();
        match self.regs.write(port, v) {
            Shown::Same => {}
            Shown::Picture => self.dirty.mark_all(),
            Shown::Cursor => {
                // The cells it leaves and comes to: their planes 0 and 1.
                for cell in [cursor, self.cursor_cell()].into_iter().flatten() {
                    self.dirty.mark((cell % PLANE_SIZE) * 4, 2);
                }
            }
        }
    }

    /// A read of DISPI register `index`.
    pub fn dispi_read(&self, index: u16) -> u16 {
        self.dispi.read(index)
    }

    /// A write of `v` to DISPI register `index`, with what it starts.
    pub fn dispi_write(&mut self, index: u16, v: u16) {
        let shown = |d: &Dispi| {
            [
                vbe::XRES,
                vbe::YRES,
                vbe::BPP,
                vbe::ENABLE,
                vbe::VIRT_WIDTH,
                vbe::X_OFFSET,
                vbe::Y_OFFSET,
            ]
            .map(|i| d.reg(i))
        };
        let before = shown(&self.dispi);
        let effect = self.dispi.write(index, v);
        if shown(&self.dispi) != before {
            self.dirty.mark_all();
        }
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
        self.sync_lfb_log();
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
            if let Some((at, len)) = self.planar.write(&self.regs, &self.vram, a, linear, v) {
                self.dirty.mark(at, len);
            }
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
        self.dirty.mark_all();
        self.sync_lfb_log();
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
        // BAR0 may have moved, or stopped or started decoding.
        self.sync_lfb_log();
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
            LFB_BAR if self.vram.write(offset, data).is_ok() => {
                self.dirty.mark(offset, data.len() as u64);
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
