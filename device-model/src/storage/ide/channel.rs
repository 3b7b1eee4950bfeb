//! One IDE channel: two device positions sharing a command block, a
//! control register, an interrupt line and a bus-master engine (ATA8-APT 5
//! "Interface signal assignments", 6 "I/O registers", 9 "Reset").
//!
//! # Register access
//!
//! Every device latches every command block write (ATA8-APT 6.1); reads come
//! from the selected device. A write to any command block register clears
//! HOB. The Command register goes to the selected device only, except
//! EXECUTE DEVICE DIAGNOSTIC, which both devices run.
//!
//! # Absent devices
//!
//! - Device 1 absent, device 0 present: Status and Alternate Status read
//!   00h, as ATA/ATAPI-6 9.16.1 ("Device 0 only configurations") requires of
//!   device 0 answering for the missing device 1, and as QEMU's PIIX IDE
//!   does; the other registers read what was latched in them (Linux and
//!   SeaBIOS probe by writing and reading back Count and LBA Low, then look
//!   at the reset signature and IDENTIFY). Commands to it are ignored: no
//!   status change, no interrupt.
//! - Device 0 absent, device 1 present: the same, with the roles swapped.
//! - No device on the channel: every register reads FFh, like the undriven
//!   bus of an empty connector (the ISA default Keel's `Bus` uses too), which
//!   SeaBIOS and Linux take as "nothing here".
//!
//! # Interrupts
//!
//! INTRQ is the selected device's pending interrupt while nIEN is clear
//! (ATA8-APT 6.2.6). Reading Status clears the pending interrupt; reading
//! Alternate Status does not; writing the Command register clears it too.
//! The channel drives its [`IrqLine`] to that level and sets the bus
//! master's interrupt bit on every rising edge (PIIX datasheet BMISX bit 2).
//!
//! # PIO data
//!
//! [`IdeChannel::read_data`] and [`IdeChannel::write_data`] move as many
//! bytes as the open DRQ block still holds, so a `REP INSW` of a whole
//! sector can be served with one call of 512 bytes; a 16- or 32-bit access
//! of the Data register is the same call with 2 or 4 bytes. When the block
//! is used up the device moves on (next block, or completion) within the
//! call, raising the interrupts ATA8-APT 11 asks for.
//!
//! # Software reset
//!
//! SRST set: both devices are busy (BSY) and drop their commands. SRST
//! cleared: each present device shows its signature (Count 01h, LBA Low
//! 01h, LBA Mid/High 00h 00h for ATA, 14h EBh for ATAPI), Error 01h, Status
//! 50h (ATA) or 00h (ATAPI), and device 0 is selected. No interrupt.

use guest_memory::GuestMemory;

use super::bmdma::{self, BusMaster, PrdCursor, PrdWalker, DMA_BUDGET};
use super::device::{DeviceCore, Dir, DmaEnd, Drive};
use super::regs::{control, device, reg, status};
use super::{AtaDisk, AtapiCdrom, DrivePosition};
use crate::irq::IrqLine;

/// EXECUTE DEVICE DIAGNOSTIC (ATA8-ACS 7.9).
const EXECUTE_DEVICE_DIAGNOSTIC: u8 = 0x90;
/// DEVICE RESET (ATA8-ACS 7.7).
const DEVICE_RESET: u8 = 0x08;

struct Slot {
    core: DeviceCore,
    drive: Option<Drive>,
}

/// One IDE channel (primary or secondary).
pub struct IdeChannel {
    slots: [Slot; 2],
    /// Index of the selected device (Device register bit 4).
    selected: usize,
    /// Device Control as last written.
    control: u8,
    irq: IrqLine,
    irq_level: bool,
    pub(crate) bm: BusMaster,
}

impl IdeChannel {
    /// An empty channel interrupting on `irq`.
    pub fn new(irq: IrqLine) -> Self {
        let slot = || Slot {
            core: DeviceCore::default(),
            drive: None,
        };
        let mut ch = IdeChannel {
            slots: [slot(), slot()],
            selected: 0,
            control: 0,
            irq,
            irq_level: false,
            bm: BusMaster::default(),
        };
        ch.reset();
        ch
    }

    /// Plugs `drive` in at `pos`, replacing what was there; the device is
    /// in its power-on state.
    pub(crate) fn attach(&mut self, pos: DrivePosition, mut drive: Drive) {
        let slot = &mut self.slots[pos as usize];
        if slot.core.buf.capacity() == 0 {
            slot.core = DeviceCore::new();
        }
        slot.core.reset();
        drive.reset(&mut slot.core);
        slot.drive = Some(drive);
        self.update_dma_capable();
    }

    /// Takes the hard disk at `pos` out (an ATAPI CD-ROM stays): the slot
    /// then reads as no device, as after Xen's emulated-device unplug.
    /// Returns whether a disk was there.
    pub(crate) fn unplug_disk(&mut self, pos: DrivePosition) -> bool {
        let slot = &mut self.slots[pos as usize];
        if slot.drive.as_ref().is_some_and(|d| !d.is_packet()) {
            slot.drive = None;
            slot.core.reset();
            self.update_dma_capable();
            return true;
        }
        false
    }

    /// Power-on reset of the channel, its devices and its bus master.
    pub fn reset(&mut self) {
        self.control = 0;
        self.selected = 0;
        self.bm.reset();
        for slot in &mut self.slots {
            slot.core.reset();
            match &mut slot.drive {
                Some(d) => d.reset(&mut slot.core),
                None => slot.core.tf.set_signature(false),
            }
        }
        self.update_dma_capable();
        self.update_irq();
    }

    /// The DMA-capable bits of BMISX say which devices are present (the
    /// BIOS normally sets them; they start out so here).
    fn update_dma_capable(&mut self) {
        let mut bits = 0;
        if self.slots[0].drive.is_some() {
            bits |= bmdma::status::DRIVE0_DMA_CAPABLE;
        }
        if self.slots[1].drive.is_some() {
            bits |= bmdma::status::DRIVE1_DMA_CAPABLE;
        }
        self.bm.status = (self.bm.status & !bmdma::status::RW) | bits;
    }

    fn any_device(&self) -> bool {
        self.slots.iter().any(|s| s.drive.is_some())
    }

    /// Whether a device sits at `pos`.
    pub fn present(&self, pos: DrivePosition) -> bool {
        self.slots[pos as usize].drive.is_some()
    }

    /// The disk at `pos`, if that is what is plugged in there.
    pub fn disk(&self, pos: DrivePosition) -> Option<&AtaDisk> {
        match &self.slots[pos as usize].drive {
            Some(Drive::Ata(d)) => Some(d),
            _ => None,
        }
    }

    /// The CD-ROM at `pos`, to insert or eject media.
    pub fn cdrom_mut(&mut self, pos: DrivePosition) -> Option<&mut AtapiCdrom> {
        match &mut self.slots[pos as usize].drive {
            Some(Drive::Atapi(d)) => Some(d),
            _ => None,
        }
    }

    /// The level the channel drives its interrupt line to.
    pub fn irq_level(&self) -> bool {
        self.irq_level
    }

    /// Reads command block register `offset` (1..=7; 0 is the Data
    /// register, read through [`IdeChannel::read_data`]).
    pub fn read_register(&mut self, offset: u8) -> u8 {
        if !self.any_device() {
            return 0xFF;
        }
        let hob = self.control & control::HOB != 0;
        let sel = self.selected;
        let present = self.slots[sel].drive.is_some();
        let tf = &self.slots[sel].core.tf;
        match offset {
            reg::ERROR_FEATURES => tf.error,
            reg::COUNT => tf.count.read(hob),
            reg::LBA_LOW => tf.lba_low.read(hob),
            reg::LBA_MID => tf.lba_mid.read(hob),
            reg::LBA_HIGH => tf.lba_high.read(hob),
            reg::DEVICE => tf.device,
            reg::STATUS_COMMAND => {
                if !present {
                    return 0;
                }
                let st = tf.status;
                self.slots[sel].core.intrq = false;
                self.update_irq();
                st
            }
            _ => 0xFF,
        }
    }

    /// Reads Alternate Status: Status without clearing the interrupt.
    pub fn read_alt_status(&self) -> u8 {
        if !self.any_device() {
            return 0xFF;
        }
        let s = &self.slots[self.selected];
        if s.drive.is_some() {
            s.core.tf.status
        } else {
            0
        }
    }

    /// Writes command block register `offset` (1..=7).
    pub fn write_register(&mut self, offset: u8, v: u8) {
        if offset == reg::STATUS_COMMAND {
            self.command(v);
            return;
        }
        self.control &= !control::HOB;
        for slot in &mut self.slots {
            // ATA8-APT 6.1: a busy device ignores command block writes.
            if slot.core.tf.status & status::BSY != 0 {
                continue;
            }
            let tf = &mut slot.core.tf;
            match offset {
                reg::ERROR_FEATURES => tf.features.write(v),
                reg::COUNT => tf.count.write(v),
                reg::LBA_LOW => tf.lba_low.write(v),
                reg::LBA_MID => tf.lba_mid.write(v),
                reg::LBA_HIGH => tf.lba_high.write(v),
                reg::DEVICE => tf.device = v,
                _ => {}
            }
        }
        if offset == reg::DEVICE && self.slots[0].core.tf.status & status::BSY == 0 {
            self.selected = usize::from(v & device::DEV != 0);
            self.update_irq();
        }
    }

    /// Writes Device Control: nIEN, SRST (acted on at its edges), HOB.
    pub fn write_device_control(&mut self, v: u8) {
        let old = self.control;
        self.control = v;
        let srst = control::SRST;
        if v & srst != 0 && old & srst == 0 {
            for slot in &mut self.slots {
                if let Some(d) = &mut slot.drive {
                    d.signature_reset(&mut slot.core);
                    slot.core.tf.status = status::BSY;
                }
            }
        } else if v & srst == 0 && old & srst != 0 {
            for slot in &mut self.slots {
                match &mut slot.drive {
                    Some(d) => d.signature_reset(&mut slot.core),
                    None => slot.core.tf.set_signature(false),
                }
            }
            self.selected = 0;
        }
        self.update_irq();
    }

    fn command(&mut self, cmd: u8) {
        if !self.any_device() {
            return;
        }
        self.control &= !control::HOB;
        if cmd == EXECUTE_DEVICE_DIAGNOSTIC {
            self.diagnostic();
            return;
        }
        let slot = &mut self.slots[self.selected];
        let Some(drive) = &mut slot.drive else {
            return;
        };
        if slot.core.tf.status & status::BSY != 0 {
            return;
        }
        slot.core.intrq = false;
        if cmd == DEVICE_RESET && drive.is_packet() {
            // ATA8-ACS 7.7: the signature, no interrupt.
            drive.signature_reset(&mut slot.core);
        } else {
            drive.command(cmd, &mut slot.core);
        }
        self.update_irq();
    }

    /// EXECUTE DEVICE DIAGNOSTIC: both devices reset to their signatures;
    /// device 0 is selected and reports for both with an interrupt
    /// (ATA8-ACS 7.9; Error 01h: device 0 passed, device 1 passed or absent).
    fn diagnostic(&mut self) {
        for slot in &mut self.slots {
            if let Some(d) = &mut slot.drive {
                d.signature_reset(&mut slot.core);
            }
        }
        self.selected = 0;
        let reporter = if self.slots[0].drive.is_some() { 0 } else { 1 };
        self.slots[reporter].core.intrq = true;
        self.update_irq();
    }

    /// Moves up to `buf.len()` bytes of the open device-to-host DRQ block
    /// into `buf`; returns how many moved (0 when no such block is open,
    /// leaving `buf` alone).
    pub fn read_data(&mut self, buf: &mut [u8]) -> usize {
        let slot = &mut self.slots[self.selected];
        let Some(drive) = &mut slot.drive else {
            return 0;
        };
        let core = &mut slot.core;
        if core.pio != Some(Dir::In) {
            return 0;
        }
        let n = buf.len().min(core.block_left());
        buf[..n].copy_from_slice(&core.buf[core.pos..core.pos + n]);
        core.pos += n;
        if core.block_left() == 0 {
            drive.pio_block_done(core);
        }
        self.update_irq();
        n
    }

    /// The bytes left in the open DRQ block of direction `dir` (`Dir::In`:
    /// device to host), 0 when none is open that way.
    pub fn data_room(&self, dir: Dir) -> usize {
        let slot = &self.slots[self.selected];
        if slot.drive.is_none() || slot.core.pio != Some(dir) {
            return 0;
        }
        slot.core.block_left()
    }

    /// Moves up to `buf.len()` bytes into the open host-to-device DRQ
    /// block; returns how many were taken.
    pub fn write_data(&mut self, buf: &[u8]) -> usize {
        let slot = &mut self.slots[self.selected];
        let Some(drive) = &mut slot.drive else {
            return 0;
        };
        let core = &mut slot.core;
        if core.pio != Some(Dir::Out) {
            return 0;
        }
        let n = buf.len().min(core.block_left());
        let pos = core.pos;
        core.buf[pos..pos + n].copy_from_slice(&buf[..n]);
        core.pos += n;
        if core.block_left() == 0 {
            drive.pio_block_done(core);
        }
        self.update_irq();
        n
    }

    /// Whether a DMA command waits and the bus master is started.
    pub(crate) fn dma_ready(&self) -> bool {
        self.bm.active() && self.dma_slot().is_some()
    }

    fn dma_slot(&self) -> Option<usize> {
        self.slots
            .iter()
            .position(|s| s.drive.is_some() && s.core.dma.is_some())
    }

    /// Runs the waiting DMA command through the descriptor table (see
    /// `ide/mod.rs` for the ordering rules). Returns whether one ran.
    pub(crate) fn run_dma(&mut self, mem: &GuestMemory) -> bool {
        if !self.bm.active() {
            return false;
        }
        let Some(i) = self.dma_slot() else {
            return false;
        };
        let slot = &mut self.slots[i];
        let Some(drive) = &mut slot.drive else {
            return false;
        };
        let at = self
            .bm
            .cursor
            .take()
            .unwrap_or_else(|| PrdCursor::new(self.bm.prd_table));
        let mut walker = PrdWalker::new(mem, at, DMA_BUDGET);
        match drive.dma(&mut slot.core, &mut walker) {
            DmaEnd::Paused => self.bm.cursor = Some(walker.cursor()),
            DmaEnd::Finished => {
                if walker.exhausted() {
                    self.bm.status &= !bmdma::status::ACTIVE;
                }
            }
            DmaEnd::Fault(f) => {
                log::debug!("IDE bus master stopped: {f:?}");
                self.bm.status |= bmdma::status::ERROR;
                self.bm.status &= !bmdma::status::ACTIVE;
                drive.dma_aborted(&mut slot.core);
            }
        }
        self.update_irq();
        true
    }

    /// Whether a device still executes a command on its own (see
    /// [`Drive::executing`]).
    pub(crate) fn command_executing(&self) -> bool {
        self.slots
            .iter()
            .any(|s| s.drive.as_ref().is_some_and(Drive::executing))
    }

    /// Moves every executing command on by one call's budget. Returns
    /// whether any ran.
    pub(crate) fn continue_commands(&mut self) -> bool {
        let mut ran = false;
        for slot in &mut self.slots {
            if let Some(d) = slot.drive.as_mut().filter(|d| d.executing()) {
                d.continue_command(&mut slot.core);
                ran = true;
            }
        }
        self.update_irq();
        ran
    }

    fn update_irq(&mut self) {
        let s = &self.slots[self.selected];
        let level = s.drive.is_some() && s.core.intrq && self.control & control::NIEN == 0;
        if level != self.irq_level {
            self.irq_level = level;
            if level {
                self.bm.status |= bmdma::status::INTERRUPT;
            }
            self.irq.set_level(level);
        }
    }
}
