//! The IDE function of the Intel 82371SB (PIIX3), 00:01.1 on QEMU's
//! `-machine pc`: `8086:7010`, class 01h/01h with programming interface 80h
//! (both channels in compatibility mode, bus master capable). Datasheet
//! sections 2.3 (configuration registers) and 2.7 (bus master registers).
//!
//! One struct answers:
//! - configuration space: PCICMD (I/O space and bus master enables), BMIBA
//!   at `0x20` (BAR4, 16 bytes of I/O: the bus-master registers), IDETIM
//!   primary/secondary at `0x40`/`0x42` (bit 15 IDE decode enable per
//!   channel) and SIDETIM at `0x44`. Other timing bits are kept as written;
//! - the legacy ports of both channels ([`Piix3Ide::LEGACY_RANGES`]), decoded
//!   while PCICMD.IOSE and the channel's IDETIM decode bit are set (SeaBIOS
//!   sets both; Linux's ata_piix checks the IDETIM bit before it probes);
//!   while not decoded they read FFh and ignore writes;
//! - the bus-master block at BAR4, which the PCI layer places on the bus
//!   wherever the guest puts it ([`PciDevice`]).
//!
//! DMA: the function reaches guest memory through the handle it is created
//! with, and moves a transfer inside the port or configuration write that
//! completes its start conditions (see `ide/mod.rs`, "DMA ordering"); the
//! rest of a long transfer moves in [`TimerDevice::service`].
//!
//! Interrupts: compatibility mode wires the primary channel to ISA IRQ 14
//! and the secondary to IRQ 15 (datasheet 3.5.1); the function has no PCI
//! interrupt pin.

use alloc::vec::Vec;

use guest_memory::GuestMemory;

use super::channel::IdeChannel;
use super::device::Dir;
use super::{ChannelId, DrivePosition, IdeDrive};
use crate::bus::BusDevice;
use crate::irq::IrqLine;
use crate::pci::config_space::{command, reg, BarKind, ConfigSpace, HEADER_TYPE_MULTIFUNCTION};
use crate::pci::{Bdf, ConfigChange, PciDevice, PciFunction};
use crate::timer::TimerDevice;

/// IDE timing registers (datasheet 2.3.11-12).
pub const IDETIM_PRIMARY: u8 = 0x40;
pub const IDETIM_SECONDARY: u8 = 0x42;
pub const SIDETIM: u8 = 0x44;
/// IDETIM bit 15: IDE decode enable.
pub const IDETIM_DECODE: u16 = 1 << 15;
/// BMIBA: bus master interface base address (BAR4).
pub const BMIBA_BAR: u8 = 4;

/// Compatibility-mode port blocks of one channel.
struct Legacy {
    command: u16,
    control: u16,
}

const LEGACY: [Legacy; 2] = [
    Legacy {
        command: 0x1F0,
        control: 0x3F6,
    },
    Legacy {
        command: 0x170,
        control: 0x376,
    },
];

/// The PIIX3 IDE function.
pub struct Piix3Ide {
    cs: ConfigSpace,
    channels: [IdeChannel; 2],
    /// Guest memory, which the bus masters read and write.
    mem: GuestMemory,
}

impl Piix3Ide {
    pub const VENDOR_ID: u16 = 0x8086;
    pub const DEVICE_ID: u16 = 0x7010;
    /// Where the function sits on QEMU's `pc` and Keel's.
    pub const BDF: Bdf = Bdf {
        bus: 0,
        device: 1,
        function: 1,
    };
    /// Class code: mass storage, IDE, programming interface 80h.
    pub const CLASS_CODE: u32 = 0x01_01_80;
    pub const PRIMARY_IRQ: u32 = 14;
    pub const SECONDARY_IRQ: u32 = 15;
    /// Size of the bus-master block BAR4 decodes.
    pub const BM_LEN: u16 = 16;
    /// The fixed port ranges `(base, len, name)` the platform registers on
    /// the Bus for this device: each channel's command block (8 ports) and
    /// its Device Control / Alternate Status port (1 port; the port after
    /// it belongs to the floppy controller).
    pub const LEGACY_RANGES: [(u16, u16, &'static str); 4] = [
        (0x1F0, 8, "ide-primary"),
        (0x3F6, 1, "ide-primary-control"),
        (0x170, 8, "ide-secondary"),
        (0x376, 1, "ide-secondary-control"),
    ];

    /// The function at power-on with empty channels; its bus masters reach
    /// the guest through `mem`; `primary_irq` and `secondary_irq` are the
    /// lines to ISA IRQ 14 and 15.
    pub fn new(mem: GuestMemory, primary_irq: IrqLine, secondary_irq: IrqLine) -> Self {
        let mut cs = ConfigSpace::new(
            Self::VENDOR_ID,
            Self::DEVICE_ID,
            0x00,
            Self::CLASS_CODE,
            HEADER_TYPE_MULTIFUNCTION,
        );
        // PCISTS: medium DEVSEL timing, fast back-to-back capable.
        cs.set_u16(reg::STATUS, 0x0280);
        if cs
            .add_bar(BMIBA_BAR, BarKind::Io, u64::from(Self::BM_LEN))
            .is_err()
        {
            unreachable_bar();
        }
        cs.set_wmask_u16(IDETIM_PRIMARY, 0xFFFF);
        cs.set_wmask_u16(IDETIM_SECONDARY, 0xFFFF);
        cs.set_wmask_u8(SIDETIM, 0xFF);
        Piix3Ide {
            cs,
            channels: [IdeChannel::new(primary_irq), IdeChannel::new(secondary_irq)],
            mem,
        }
    }

    /// Plugs `drive` in at `pos` of channel `ch` (replacing what was there).
    pub fn attach(&mut self, ch: ChannelId, pos: DrivePosition, drive: IdeDrive) {
        self.channels[ch as usize].attach(pos, drive.0);
    }

    /// Xen's emulated-disk unplug (hvm-emulated-unplug: mask bit 0 all IDE
    /// disks, bit 2 all but the primary master): the disks go away, CD-ROMs
    /// stay. Returns how many disks were taken out.
    pub fn unplug_disks(&mut self, keep_primary_master: bool) -> u32 {
        let mut n = 0;
        for (c, ch) in self.channels.iter_mut().enumerate() {
            for pos in [DrivePosition::Master, DrivePosition::Slave] {
                if keep_primary_master && c == 0 && pos == DrivePosition::Master {
                    continue;
                }
                n += u32::from(ch.unplug_disk(pos));
            }
        }
        n
    }

    pub fn channel(&self, ch: ChannelId) -> &IdeChannel {
        &self.channels[ch as usize]
    }

    pub fn channel_mut(&mut self, ch: ChannelId) -> &mut IdeChannel {
        &mut self.channels[ch as usize]
    }

    /// Where BAR4 decodes the bus-master block now.
    pub fn bus_master_base(&self) -> Option<u16> {
        self.cs.bar_address(BMIBA_BAR).map(|a| a as u16)
    }

    /// Whether a DMA transfer is ready to run (a DMA command waits and the
    /// guest started the bus master, with PCI bus mastering enabled).
    pub fn dma_pending(&self) -> bool {
        self.bus_master_enabled() && self.channels.iter().any(|c| c.dma_ready())
    }

    /// Moves the next piece (at most [`super::bmdma::DMA_BUDGET`] bytes per
    /// channel) of every ready DMA transfer. Runs after each port and
    /// configuration write and from the service hook. Returns whether any ran.
    pub fn run_pending_dma(&mut self) -> bool {
        if !self.bus_master_enabled() {
            return false;
        }
        let mut ran = false;
        for ch in &mut self.channels {
            ran |= ch.run_dma(&self.mem);
        }
        ran
    }

    /// Whether the platform has work to hand this function on its next
    /// call: a ready DMA transfer, or a command a device still executes on
    /// its own (a long READ VERIFY).
    pub fn work_pending(&self) -> bool {
        self.dma_pending() || self.channels.iter().any(IdeChannel::command_executing)
    }

    /// Runs every ready DMA transfer and moves every executing command on,
    /// each by at most one call's budget: the service hook, before each
    /// entry into the guest while [`Piix3Ide::work_pending`]. Returns
    /// whether anything ran.
    pub fn run_pending_work(&mut self) -> bool {
        let mut ran = self.run_pending_dma();
        for ch in &mut self.channels {
            ran |= ch.continue_commands();
        }
        ran
    }

    fn bus_master_enabled(&self) -> bool {
        self.cs.command() & command::BUS_MASTER != 0
    }

    /// The channel whose legacy Data register is `port`, if decoded.
    fn data_channel(&mut self, port: u16) -> Option<&mut IdeChannel> {
        let i = (0..2).find(|&i| LEGACY[i].command == port && self.legacy_decoded(i))?;
        Some(&mut self.channels[i])
    }

    /// Bulk `INS` from a Data port (0x1F0 or 0x170): moves as many bytes
    /// as the open DRQ block holds, up to `buf.len()`. For the string-I/O
    /// emulation to serve `REP INSW` in one call; returns the bytes moved
    /// (0 if the port is not a decoded Data port or no block is open).
    pub fn read_data(&mut self, port: u16, buf: &mut [u8]) -> usize {
        self.data_channel(port).map_or(0, |c| c.read_data(buf))
    }

    /// Bulk `OUTS` to a Data port; see [`Piix3Ide::read_data`].
    pub fn write_data(&mut self, port: u16, buf: &[u8]) -> usize {
        let n = self.data_channel(port).map_or(0, |c| c.write_data(buf));
        self.run_pending_dma();
        n
    }

    fn legacy_decoded(&self, ch: usize) -> bool {
        let idetim = if ch == 0 {
            IDETIM_PRIMARY
        } else {
            IDETIM_SECONDARY
        };
        self.cs.command() & command::IO_SPACE != 0 && self.cs.u16(idetim) & IDETIM_DECODE != 0
    }

    /// One byte of a port read, `None` where nothing is decoded.
    fn read_byte(&mut self, port: u16) -> Option<u8> {
        for (i, l) in LEGACY.iter().enumerate() {
            if !self.legacy_decoded(i) {
                continue;
            }
            if port == l.control {
                return Some(self.channels[i].read_alt_status());
            }
            match port.wrapping_sub(l.command) {
                0 => {
                    let mut b = [0xFF];
                    self.channels[i].read_data(&mut b);
                    return Some(b[0]);
                }
                o @ 1..=7 => return Some(self.channels[i].read_register(o as u8)),
                _ => {}
            }
        }
        let off = self.bm_offset(port)?;
        Some(self.channels[usize::from(off / 8)].bm.read(off % 8))
    }

    fn write_byte(&mut self, port: u16, v: u8) {
        for (i, l) in LEGACY.iter().enumerate() {
            if !self.legacy_decoded(i) {
                continue;
            }
            if port == l.control {
                self.channels[i].write_device_control(v);
                return;
            }
            match port.wrapping_sub(l.command) {
                0 => {
                    self.channels[i].write_data(&[v]);
                    return;
                }
                o @ 1..=7 => {
                    self.channels[i].write_register(o as u8, v);
                    return;
                }
                _ => {}
            }
        }
        if let Some(off) = self.bm_offset(port) {
            self.channels[usize::from(off / 8)].bm.write(off % 8, v);
        }
    }

    fn bm_offset(&self, port: u16) -> Option<u8> {
        let off = port.wrapping_sub(self.bus_master_base()?);
        (off < Self::BM_LEN).then_some(off as u8)
    }
}

/// BAR4 is a valid 16-byte I/O BAR; `add_bar` cannot refuse it.
fn unreachable_bar() {
    log::error!("PIIX3 IDE: BAR4 could not be declared");
}

impl PciFunction for Piix3Ide {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.cs.read(offset, data);
    }

    /// Enabling bus mastering (PCICMD bit 2) may be the last condition a
    /// waiting transfer needed.
    fn config_write(&mut self, offset: u8, data: &[u8], changes: &mut Vec<ConfigChange>) {
        self.cs.write(offset, data, changes);
        self.run_pending_dma();
    }

    /// Power-on reset: configuration space, both channels, their devices
    /// (settings back to defaults, media kept) and bus masters.
    fn reset(&mut self, changes: &mut Vec<ConfigChange>) {
        self.cs.reset(changes);
        for ch in &mut self.channels {
            ch.reset();
        }
    }
}

/// The bus-master block reaches the device through the PCI layer's BAR4
/// window; the legacy ports are registered at fixed places by the platform.
impl PciDevice for Piix3Ide {
    fn name(&self) -> &'static str {
        "PIIX3 IDE"
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        if let (BMIBA_BAR, Some(base)) = (bar, self.bus_master_base()) {
            BusDevice::read(self, u64::from(base), offset, data);
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        if let (BMIBA_BAR, Some(base)) = (bar, self.bus_master_base()) {
            BusDevice::write(self, u64::from(base), offset, data);
        }
    }
}

impl BusDevice for Piix3Ide {
    /// Ports by absolute number (the device answers several ranges). A 2-
    /// or 4-byte access to a Data port is one PIO data transfer of that
    /// width; any other access is split into byte registers.
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let Ok(port) = u16::try_from(base.wrapping_add(offset)) else {
            return;
        };
        if data.len() > 1 {
            if let Some(ch) = self.data_channel(port) {
                ch.read_data(data);
                return;
            }
        }
        for (i, b) in data.iter_mut().enumerate() {
            if let Some(v) = self.read_byte(port.wrapping_add(i as u16)) {
                *b = v;
            }
        }
    }

    /// `REP INSW`/`OUTSW` (or D/B) on a decoded Data port: the rest of the
    /// open DRQ block moves in one call (ATA8-APT 11: the host moves a
    /// block's words one after another; the device sees the same sequence).
    fn string_room(&mut self, base: u64, offset: u64, elem: usize, write: bool) -> usize {
        let Ok(port) = u16::try_from(base.wrapping_add(offset)) else {
            return 0;
        };
        let dir = if write { Dir::Out } else { Dir::In };
        self.data_channel(port)
            .map_or(0, |c| c.data_room(dir) / elem * elem)
    }

    fn read_string(&mut self, base: u64, offset: u64, elem: usize, data: &mut [u8]) -> usize {
        let room = self.string_room(base, offset, elem, false).min(data.len());
        let Ok(port) = u16::try_from(base.wrapping_add(offset)) else {
            return 0;
        };
        self.read_data(port, &mut data[..room])
    }

    fn write_string(&mut self, base: u64, offset: u64, elem: usize, data: &[u8]) -> usize {
        let room = self.string_room(base, offset, elem, true).min(data.len());
        let Ok(port) = u16::try_from(base.wrapping_add(offset)) else {
            return 0;
        };
        self.write_data(port, &data[..room])
    }

    /// A write that completes a transfer's start conditions (the command,
    /// or START) moves its first piece before it returns.
    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let Ok(port) = u16::try_from(base.wrapping_add(offset)) else {
            return;
        };
        match self.data_channel(port) {
            // The last bytes of an ATAPI packet can start a DMA command.
            Some(ch) if data.len() > 1 => {
                ch.write_data(data);
            }
            _ => {
                for (i, &v) in data.iter().enumerate() {
                    self.write_byte(port.wrapping_add(i as u16), v);
                }
            }
        }
        self.run_pending_dma();
    }
}

/// The rest of a bus-master transfer longer than one exit's budget.
impl TimerDevice for Piix3Ide {
    fn next_deadline_ns(&mut self) -> Option<u64> {
        // Due now: a time at or before the clock's present.
        self.work_pending().then_some(0)
    }

    fn service(&mut self) {
        self.run_pending_work();
    }
}
