//! IDE: the PIIX3 IDE function with ATA disks and an ATAPI CD-ROM.
//!
//! | file | what | spec |
//! |---|---|---|
//! | `regs.rs` | the ATA register file, status/error/control bits, HOB | ATA8-APT 6 |
//! | `device.rs` | per-device state: DRQ block, INTRQ, DMA request; [`Drive`](device::Drive) dispatch | ATA8-APT 11 |
//! | `channel.rs` | [`IdeChannel`]: register decode, selection, SRST, interrupts, PIO data | ATA8-APT 6, 9 |
//! | `ata.rs` | [`AtaDisk`]: the ATA command set | ATA8-ACS 7 |
//! | `identify.rs` | IDENTIFY (PACKET) DEVICE data | ATA8-ACS 7.16, 7.17 |
//! | `atapi.rs` | [`AtapiCdrom`]: PACKET, sense, unit attention | ATA8-ACS 7.18, SPC-4, MMC-6 |
//! | `mmc.rs` | SCSI reply layouts: INQUIRY, TOC, mode pages, configuration, events | SPC-4, MMC-6 |
//! | `bmdma.rs` | bus-master registers and the PRD walk | 82371SB 2.7, SFF-8038i |
//! | `piix3_ide.rs` | [`Piix3Ide`]: the PCI function, legacy ports, BAR4 | 82371SB 2.3 |
//!
//! # Wiring (the platform's side)
//!
//! ```text
//! let ide = Arc::new(Mutex::new(Piix3Ide::new(guest_memory.clone(),
//!                                             IrqLine::new(chip.clone(), 14),
//!                                             IrqLine::new(chip.clone(), 15))));
//! ide.lock().attach(ChannelId::Primary, DrivePosition::Master, IdeDrive::disk(Box::new(disk)));
//! ide.lock().attach(ChannelId::Secondary, DrivePosition::Master, IdeDrive::cdrom(Some(Box::new(ReadOnly(iso)))));
//! pci_bus.add(Piix3Ide::BDF, "piix3-ide", ide.clone())?;
//! for (base, len, name) in Piix3Ide::LEGACY_RANGES { bus.register_pio(base, len, name, ide.clone())?; }
//! // ConfigChange::Region { id: RegionId::Bar(4), .. } from 00:01.1 moves the 16-byte bus-master block.
//! // The device runs DMA itself; a transfer longer than one budget goes on
//! // through its TimerDevice hook, which the platform services before every entry.
//! ```
//!
//! # DMA ordering
//!
//! A DMA transfer needs three things: a DMA command (READ/WRITE DMA (EXT),
//! or PACKET with the DMA feature bit and a data phase) waiting in a device,
//! the bus master started (BMICX START 0 -> 1, which sets BMISX ACTIVE), and
//! PCI bus mastering enabled (PCICMD bit 2). Guests issue the first two in
//! either order (Linux: command, then START; some BIOSes: START, then
//! command); whichever write completes the set (a port
//! write or a configuration write) makes [`Piix3Ide::dma_pending`] true,
//! and the device moves the transfer inside that write, through the
//! guest-memory handle it was created with, at most [`bmdma::DMA_BUDGET`]
//! bytes per channel. A longer transfer goes on in the device's service
//! hook ([`crate::timer::TimerDevice`]: the platform calls it before every
//! entry into the guest, at once while a transfer is in progress), with ACTIVE set and the device busy in the meantime, as a
//! transfer in progress looks on the hardware; the guest sees the outcome
//! when it completes.
//!
//! The outcome, in BMISX (SFF-8038i table 2) and in the device:
//! - the transfer fit the table exactly: ACTIVE clear, INTERRUPT set; the
//!   device completes with an interrupt;
//! - the table was larger than the transfer: ACTIVE stays set (the guest
//!   clears START), INTERRUPT set, as SFF-8038i describes for that valid case;
//! - a descriptor, the table itself, or a region lies outside guest RAM:
//!   the bytes before it have moved, nothing outside RAM was touched,
//!   ERROR set, ACTIVE clear, and the device ends the command aborted (ATA:
//!   ERR + ABRT; ATAPI: CHECK CONDITION, ABORTED COMMAND) with an interrupt,
//!   so INTERRUPT is set too;
//! - the table ended (EOT used up) before the transfer did: treated like
//!   the case above (ERROR, ABRT, interrupt). A real PIIX would stop with
//!   ACTIVE and INTERRUPT both clear and leave the drive waiting with DRQ
//!   set until the driver times out and resets it (SFF-8038i: "PRD table
//!   smaller than the transfer"); Keel ends the command at once instead,
//!   which every driver handles as the same failed transfer, minus the
//!   timeout.
//!
//! READ VERIFY SECTORS (EXT) moves no data but reads up to 65,536 sectors;
//! it too checks at most the bus master's budget per call
//! ([`Piix3Ide::run_pending_work`]), with BSY set until the last sector.
//!
//! The direction bit (RWCON) does not steer the transfer: the device's
//! command decides which way the data go, as QEMU does too.

pub mod ata;
pub mod atapi;
pub mod bmdma;
pub mod channel;
pub mod device;
pub mod identify;
pub mod mmc;
pub mod piix3_ide;
pub mod regs;

use alloc::boxed::Box;

pub use ata::AtaDisk;
pub use atapi::AtapiCdrom;
pub use channel::IdeChannel;
pub use piix3_ide::Piix3Ide;

use crate::storage::block::BlockBackend;

/// The two channels of the controller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelId {
    /// Ports 0x1F0-0x1F7 and 0x3F6, IRQ 14.
    Primary = 0,
    /// Ports 0x170-0x177 and 0x376, IRQ 15.
    Secondary = 1,
}

/// The two device positions on a channel (device 0 and device 1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DrivePosition {
    Master = 0,
    Slave = 1,
}

/// A device to plug into a channel.
pub struct IdeDrive(device::Drive);

impl IdeDrive {
    /// An ATA hard disk over `backend`.
    pub fn disk(backend: Box<dyn BlockBackend>) -> IdeDrive {
        IdeDrive(device::Drive::Ata(AtaDisk::new(backend)))
    }

    /// An ATAPI CD/DVD-ROM, with `medium` in the tray or empty.
    pub fn cdrom(medium: Option<Box<dyn BlockBackend>>) -> IdeDrive {
        IdeDrive(device::Drive::Atapi(AtapiCdrom::new(medium)))
    }
}

#[cfg(test)]
mod tests;
