//! An ATAPI CD/DVD-ROM: the PACKET feature set (ATA8-ACS 4.21; PACKET
//! 7.18, IDENTIFY PACKET DEVICE 7.17, DEVICE RESET 7.7) carrying SCSI
//! commands (SPC-4, MMC-6) with 2048-byte blocks.
//!
//! PACKET (A0h) opens a 12-byte command block (interrupt reason CoD=1,
//! IO=0, no interrupt: IDENTIFY PACKET DEVICE word 0 says DRQ follows
//! within 50 us). Data goes to the host in DRQ blocks of at most the byte
//! count limit the host put in LBA Mid/High (a limit of 0 is taken as
//! FFFEh, an odd limit is rounded down, and above 2048 it is rounded down
//! to whole blocks for READ), each announced by the byte count in LBA
//! Mid/High, interrupt reason IO=1 CoD=0 and an interrupt (ATA8-APT 11.8).
//! With Features bit 0 (DMA) the data goes through the bus master instead.
//! Completion: interrupt reason IO=1 CoD=1, DRDY, and CHK with the sense key
//! in Error bits 7:4 when the command failed.
//!
//! Sense data belong to the last command: every command but REQUEST SENSE
//! replaces them (NO SENSE when it succeeded); REQUEST SENSE returns them
//! and clears them. A medium inserted by the platform raises a unit
//! attention (06h/28h/00h) that fails the next command other than INQUIRY,
//! REQUEST SENSE, GET CONFIGURATION and GET EVENT STATUS NOTIFICATION (SPC-4
//! 5.14; MMC-6 6.6, 6.7), and a NewMedia event for GET EVENT STATUS
//! NOTIFICATION.

use alloc::boxed::Box;
use alloc::vec::Vec;

use super::ata::Ata;
use super::bmdma::PrdWalker;
use super::device::{DeviceCore, Dir, DmaEnd};
use super::identify::{
    identify_packet_device, put_bytes, PacketIdentity, TransferMode, IDENTIFY_BYTES,
};
use super::mmc::{self, be16, be32, op, MediaEvent, Sense, BLOCK_SIZE};
use super::regs::{error, reason, status};
use crate::storage::block::{BlockBackend, BlockError, SECTOR_SIZE};
use guest_log::RateLimitedLog;
use log::Level;

/// Status of a ready PACKET device (SERV and DSC are left clear).
const READY: u8 = status::DRDY;
/// Largest chunk moved per DMA step.
const DMA_CHUNK: u64 = 64 * 1024;

/// Where the data of a command come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Source {
    /// A reply built in memory, consumed from `pos`.
    Buffer { data: Vec<u8>, pos: usize },
    /// The disc image, from byte `offset`.
    Image { offset: u64 },
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Op {
    None,
    Identify,
    /// Waiting for the 12-byte command packet.
    Packet {
        dma: bool,
        limit: u16,
    },
    /// Sending `left` bytes to the host.
    DataIn {
        src: Source,
        left: u64,
        dma: bool,
        limit: u16,
    },
}

/// What a command packet asks for.
enum Reply {
    Done,
    Data(Vec<u8>),
    Read { lba: u64, blocks: u64 },
    Check(Sense),
}

/// A read-only CD/DVD-ROM drive with a tray that may be empty.
pub struct AtapiCdrom {
    medium: Option<Box<dyn BlockBackend>>,
    serial: &'static str,
    mode: TransferMode,
    sense: Sense,
    unit_attention: bool,
    event: MediaEvent,
    locked: bool,
    op: Op,
    /// Backend failures, which a guest can repeat at will.
    io_errors: RateLimitedLog,
}

impl AtapiCdrom {
    pub const FIRMWARE: &'static str = "KEEL0.1";
    pub const MODEL: &'static str = "Keel ATAPI DVD-ROM";

    /// A drive holding `medium` (or an empty tray). A medium present at
    /// power-on raises no unit attention.
    pub fn new(medium: Option<Box<dyn BlockBackend>>) -> Self {
        AtapiCdrom {
            medium,
            serial: "KEEL-CDROM",
            mode: TransferMode::DEFAULT,
            sense: Sense::NO_SENSE,
            unit_attention: false,
            event: MediaEvent::NoChange,
            locked: false,
            op: Op::None,
            io_errors: RateLimitedLog::new(),
        }
    }

    /// Puts `medium` in the tray (replacing any): the guest sees a unit
    /// attention and a NewMedia event.
    pub fn insert_medium(&mut self, medium: Box<dyn BlockBackend>) {
        self.medium = Some(medium);
        self.unit_attention = true;
        self.event = MediaEvent::NewMedia;
    }

    /// Empties the tray, returning what was in it (even when the guest
    /// locked it: the platform's word is final).
    pub fn eject_medium(&mut self) -> Option<Box<dyn BlockBackend>> {
        let m = self.medium.take();
        if m.is_some() {
            self.event = MediaEvent::MediaRemoval;
        }
        m
    }

    pub fn has_medium(&self) -> bool {
        self.medium.is_some()
    }

    /// Whether the guest holds the tray locked (PREVENT ALLOW MEDIUM REMOVAL).
    pub fn locked(&self) -> bool {
        self.locked
    }

    /// The sense data of the last command.
    pub fn sense(&self) -> Sense {
        self.sense
    }

    /// Power-on state: no sense, unlocked, multiword DMA 2.
    pub fn reset(&mut self) {
        self.mode = TransferMode::DEFAULT;
        self.sense = Sense::NO_SENSE;
        self.locked = false;
        self.op = Op::None;
    }

    /// Drops the command in progress.
    pub fn cancel(&mut self) {
        self.op = Op::None;
    }

    pub fn identify(&self) -> [u16; 256] {
        identify_packet_device(&PacketIdentity {
            serial: self.serial,
            firmware: Self::FIRMWARE,
            model: Self::MODEL,
            mode: self.mode,
        })
    }

    /// The disc's size in 2048-byte blocks.
    fn blocks(&self) -> u64 {
        self.medium
            .as_ref()
            .map_or(0, |m| m.capacity() * SECTOR_SIZE as u64 / BLOCK_SIZE)
    }

    pub(crate) fn command(&mut self, code: u8, core: &mut DeviceCore) {
        self.op = Op::None;
        core.end_transfer();
        match Ata::from_code(code) {
            Some(Ata::Packet) => {
                let f = core.tf.features.cur;
                self.op = Op::Packet {
                    dma: f & 1 != 0,
                    limit: core.tf.byte_count(),
                };
                core.open_pio_out(12, READY);
                core.tf.count.cur = reason::COD;
            }
            Some(Ata::IdentifyPacketDevice) => {
                self.op = Op::Identify;
                put_bytes(&self.identify(), core.data(IDENTIFY_BYTES));
                core.open_pio_in(READY);
                core.intrq = true;
            }
            // ATA8-ACS 7.16 (and ATA-4 8.27.5.2 for READ SECTORS): a PACKET
            // device aborts these and leaves its signature, which is how a
            // host tells it from a disk.
            Some(Ata::IdentifyDevice | Ata::ReadSectors) => {
                core.abort(READY);
                core.tf.set_signature(true);
            }
            Some(
                Ata::CheckPowerMode
                | Ata::IdleImmediate
                | Ata::Idle
                | Ata::StandbyImmediate
                | Ata::Standby
                | Ata::FlushCache,
            ) => {
                core.complete(READY);
                if code == 0xE5 {
                    core.tf.count.cur = 0xFF;
                }
            }
            Some(Ata::SetFeatures) => {
                let mode = (core.tf.features.cur == 0x03)
                    .then(|| TransferMode::from_count(core.tf.count.cur))
                    .flatten();
                match mode {
                    Some(m) => {
                        self.mode = m;
                        core.complete(READY);
                    }
                    None => core.abort(READY),
                }
            }
            _ => core.abort(READY),
        }
    }

    pub(crate) fn pio_block_done(&mut self, core: &mut DeviceCore) {
        match core::mem::replace(&mut self.op, Op::None) {
            Op::Packet { dma, limit } => {
                let mut cdb = [0u8; 12];
                let n = core.buf.len().min(12);
                cdb[..n].copy_from_slice(&core.buf[..n]);
                self.packet(&cdb, dma, limit, core);
            }
            op @ Op::DataIn { .. } => {
                self.op = op;
                self.next_pio_block(core);
            }
            Op::Identify | Op::None => {
                core.end_transfer();
                core.tf.status = READY;
            }
        }
    }

    fn packet(&mut self, cdb: &[u8; 12], dma: bool, limit: u16, core: &mut DeviceCore) {
        let reply = self.execute(cdb);
        if cdb[0] != op::REQUEST_SENSE {
            self.sense = match reply {
                Reply::Check(s) => s,
                _ => Sense::NO_SENSE,
            };
        }
        match reply {
            Reply::Done => self.complete(core),
            Reply::Check(_) => self.check_condition(core),
            Reply::Data(data) if data.is_empty() => self.complete(core),
            Reply::Data(data) => {
                let left = data.len() as u64;
                self.start_data(Source::Buffer { data, pos: 0 }, left, dma, limit, core);
            }
            Reply::Read { blocks: 0, .. } => self.complete(core),
            Reply::Read { lba, blocks } => self.start_data(
                Source::Image {
                    offset: lba * BLOCK_SIZE,
                },
                blocks * BLOCK_SIZE,
                dma,
                limit,
                core,
            ),
        }
    }

    fn start_data(&mut self, src: Source, left: u64, dma: bool, limit: u16, core: &mut DeviceCore) {
        self.op = Op::DataIn {
            src,
            left,
            dma,
            limit,
        };
        if dma {
            core.request_dma(Dir::In, READY);
            core.tf.count.cur = reason::IO;
        } else {
            self.next_pio_block(core);
        }
    }

    /// Opens the next DRQ block of a data-in command, or completes it.
    fn next_pio_block(&mut self, core: &mut DeviceCore) {
        let AtapiCdrom { op, medium, .. } = self;
        let Op::DataIn {
            src, left, limit, ..
        } = op
        else {
            return;
        };
        if *left == 0 {
            self.complete(core);
            return;
        }
        let mut max = match *limit {
            0 => 0xFFFE,
            l => u64::from(l & !1).max(2),
        };
        if matches!(src, Source::Image { .. }) && max >= BLOCK_SIZE {
            max -= max % BLOCK_SIZE;
        }
        let n = (*left).min(max);
        *left -= n;
        match fill(medium, src, core.data(n as usize)) {
            Ok(()) => {
                core.open_pio_in(READY);
                core.tf.set_byte_count(n as u16);
                core.tf.count.cur = reason::IO;
                core.intrq = true;
            }
            Err(e) => {
                self.io_errors
                    .log(Level::Warn, format_args!("CD-ROM read failed: {e}"));
                self.sense = Sense::UNRECOVERED_READ_ERROR;
                self.check_condition(core);
            }
        }
    }

    pub(crate) fn dma(&mut self, core: &mut DeviceCore, walker: &mut PrdWalker<'_>) -> DmaEnd {
        let Op::DataIn {
            mut src,
            mut left,
            dma,
            limit,
        } = core::mem::replace(&mut self.op, Op::None)
        else {
            return DmaEnd::Finished;
        };
        while left > 0 {
            let n = left.min(DMA_CHUNK).min(walker.budget_left() as u64) as usize;
            if n == 0 {
                self.op = Op::DataIn {
                    src,
                    left,
                    dma,
                    limit,
                };
                return DmaEnd::Paused;
            }
            let chunk = core.data(n);
            if let Err(e) = fill(&mut self.medium, &mut src, chunk) {
                self.io_errors
                    .log(Level::Warn, format_args!("CD-ROM DMA read failed: {e}"));
                self.sense = Sense::UNRECOVERED_READ_ERROR;
                self.check_condition(core);
                return DmaEnd::Finished;
            }
            if let Err(f) = walker.to_guest(chunk) {
                return DmaEnd::Fault(f);
            }
            left -= n as u64;
        }
        self.complete(core);
        DmaEnd::Finished
    }

    pub(crate) fn dma_aborted(&mut self, core: &mut DeviceCore) {
        self.sense = Sense::ABORTED_COMMAND;
        self.check_condition(core);
    }

    /// Command completion: IO=1 CoD=1, DRDY, an interrupt.
    fn complete(&mut self, core: &mut DeviceCore) {
        self.op = Op::None;
        core.complete(READY);
        core.tf.count.cur = reason::IO | reason::COD;
    }

    /// CHECK CONDITION: CHK, the sense key in Error bits 7:4 (and ABRT for
    /// an illegal request, as ATA8-ACS 7.18 asks for a command the device
    /// does not support), IO=1 CoD=1, an interrupt.
    fn check_condition(&mut self, core: &mut DeviceCore) {
        self.op = Op::None;
        let abrt = if self.sense.key == Sense::INVALID_COMMAND_OPERATION_CODE.key {
            error::ABRT
        } else {
            0
        };
        core.fail(READY, self.sense.key << 4 | abrt);
        core.tf.count.cur = reason::IO | reason::COD;
    }

    fn execute(&mut self, cdb: &[u8; 12]) -> Reply {
        let exempt = matches!(
            cdb[0],
            op::INQUIRY
                | op::REQUEST_SENSE
                | op::GET_CONFIGURATION
                | op::GET_EVENT_STATUS_NOTIFICATION
        );
        if self.unit_attention && !exempt {
            self.unit_attention = false;
            return Reply::Check(Sense::MEDIUM_MAY_HAVE_CHANGED);
        }
        let present = self.medium.is_some();
        let need_medium = |r: Reply| {
            if present {
                r
            } else {
                Reply::Check(Sense::MEDIUM_NOT_PRESENT)
            }
        };
        let trunc = |mut v: Vec<u8>, alloc: usize| {
            v.truncate(alloc);
            Reply::Data(v)
        };
        match cdb[0] {
            op::TEST_UNIT_READY => need_medium(Reply::Done),
            op::REQUEST_SENSE => {
                let s = if self.unit_attention {
                    self.unit_attention = false;
                    Sense::MEDIUM_MAY_HAVE_CHANGED
                } else {
                    self.sense
                };
                self.sense = Sense::NO_SENSE;
                trunc(mmc::request_sense(s), usize::from(cdb[4]))
            }
            op::INQUIRY => {
                if cdb[1] & 1 != 0 || cdb[2] != 0 {
                    Reply::Check(Sense::INVALID_FIELD_IN_CDB)
                } else {
                    trunc(mmc::inquiry(), usize::from(be16(cdb, 3)))
                }
            }
            op::START_STOP_UNIT => {
                let (loej, start) = (cdb[4] & 2 != 0, cdb[4] & 1 != 0);
                if loej && !start {
                    if self.locked {
                        return Reply::Check(Sense::MEDIUM_REMOVAL_PREVENTED);
                    }
                    self.eject_medium();
                }
                Reply::Done
            }
            op::PREVENT_ALLOW_MEDIUM_REMOVAL => {
                self.locked = cdb[4] & 1 != 0;
                Reply::Done
            }
            op::READ_CAPACITY_10 => need_medium(Reply::Data(mmc::read_capacity(self.blocks()))),
            op::READ_10 => need_medium(self.read(u64::from(be32(cdb, 2)), u64::from(be16(cdb, 7)))),
            op::READ_12 => need_medium(self.read(u64::from(be32(cdb, 2)), u64::from(be32(cdb, 6)))),
            op::READ_TOC_PMA_ATIP => {
                let msf = cdb[1] & 2 != 0;
                // SFF-8020i put the format in bits 7:6 of byte 9.
                let format = match cdb[2] & 0x0F {
                    0 => cdb[9] >> 6,
                    f => f,
                };
                let toc = mmc::read_toc(self.blocks(), msf, format, cdb[6]);
                match toc {
                    Some(t) => need_medium(trunc(t, usize::from(be16(cdb, 7)))),
                    None => Reply::Check(Sense::INVALID_FIELD_IN_CDB),
                }
            }
            op::MODE_SENSE_10 => {
                let (pc, page) = (cdb[2] >> 6, cdb[2] & 0x3F);
                if pc == 3 {
                    return Reply::Check(Sense::SAVING_PARAMETERS_NOT_SUPPORTED);
                }
                match mmc::mode_sense(page, pc, self.locked) {
                    Some(m) => trunc(m, usize::from(be16(cdb, 7))),
                    None => Reply::Check(Sense::INVALID_FIELD_IN_CDB),
                }
            }
            op::GET_CONFIGURATION => {
                let profile = match (present, self.blocks() > mmc::CD_MAX_BLOCKS) {
                    (false, _) => 0,
                    (true, false) => mmc::PROFILE_CD_ROM,
                    (true, true) => mmc::PROFILE_DVD_ROM,
                };
                match mmc::get_configuration(cdb[1] & 3, be16(cdb, 2), profile) {
                    Some(c) => trunc(c, usize::from(be16(cdb, 7))),
                    None => Reply::Check(Sense::INVALID_FIELD_IN_CDB),
                }
            }
            op::GET_EVENT_STATUS_NOTIFICATION => {
                // Only polled operation (MMC-6 6.7.1: Polled = 0 asks for
                // asynchronous notification, which this drive lacks).
                if cdb[1] & 1 == 0 {
                    return Reply::Check(Sense::INVALID_FIELD_IN_CDB);
                }
                let event = if cdb[4] & 0x10 != 0 {
                    core::mem::replace(&mut self.event, MediaEvent::NoChange)
                } else {
                    MediaEvent::NoChange
                };
                trunc(
                    mmc::event_status(cdb[4], event, present),
                    usize::from(be16(cdb, 7)),
                )
            }
            _ => Reply::Check(Sense::INVALID_COMMAND_OPERATION_CODE),
        }
    }

    fn read(&self, lba: u64, blocks: u64) -> Reply {
        if lba.saturating_add(blocks) > self.blocks() {
            return Reply::Check(Sense::LBA_OUT_OF_RANGE);
        }
        Reply::Read { lba, blocks }
    }
}

/// Fills `out` from `src` and advances `src` past it.
fn fill(
    medium: &mut Option<Box<dyn BlockBackend>>,
    src: &mut Source,
    out: &mut [u8],
) -> Result<(), BlockError> {
    match src {
        Source::Buffer { data, pos } => {
            let end = (*pos + out.len()).min(data.len());
            out[..end - *pos].copy_from_slice(&data[*pos..end]);
            *pos = end;
        }
        Source::Image { offset } => {
            read_image(medium, *offset, out)?;
            *offset += out.len() as u64;
        }
    }
    Ok(())
}

/// Reads `out.len()` bytes of the disc at byte `offset`. A piece that does
/// not start and end on sector boundaries (a byte count limit below one
/// block) goes through one sector on the stack at a time.
fn read_image(
    medium: &mut Option<Box<dyn BlockBackend>>,
    offset: u64,
    out: &mut [u8],
) -> Result<(), BlockError> {
    let Some(m) = medium.as_mut() else {
        return Err(BlockError::PastEnd {
            image: "(no medium)".into(),
            lba: offset / SECTOR_SIZE as u64,
            sectors: 0,
            capacity: 0,
        });
    };
    let ss = SECTOR_SIZE as u64;
    if offset.is_multiple_of(ss) && out.len().is_multiple_of(SECTOR_SIZE) {
        return m.read_sectors(offset / ss, out);
    }
    let mut sector = [0u8; SECTOR_SIZE];
    let mut at = offset;
    let mut done = 0;
    while done < out.len() {
        let skip = (at % ss) as usize;
        let n = (SECTOR_SIZE - skip).min(out.len() - done);
        m.read_sectors(at / ss, &mut sector)?;
        out[done..done + n].copy_from_slice(&sector[skip..skip + n]);
        done += n;
        at += n as u64;
    }
    Ok(())
}
