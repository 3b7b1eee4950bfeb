//! The ATA command set of a hard disk (ATA8-ACS 7; protocols ATA8-APT 11).
//!
//! Each command reads its inputs from the register file and leaves its
//! outputs there (ATA8-ACS 6 "Normal and error outputs"). Addressing is
//! 28-bit LBA, 48-bit LBA (the EXT commands, HOB bytes first) or CHS
//! through the current translation (ATA/ATAPI-6 6.2, obsolete since ATA8 but
//! still used by old BIOSes). An address range past the end of the disk
//! fails with IDNF and the first LBA in the LBA registers; a backend read
//! error fails with UNC, a write or flush error with ABRT.
//!
//! Interrupts follow ATA8-APT 11: PIO data-in raises INTRQ as each DRQ
//! block becomes ready; PIO data-out opens the first block without one and
//! raises it after every later block and at completion; DMA and non-data
//! commands raise it at completion.

use alloc::boxed::Box;
use alloc::string::String;

use super::bmdma::{PrdWalker, DMA_BUDGET};
use super::device::{DeviceCore, Dir, DmaEnd};
use super::identify::{
    identify_device, put_bytes, DiskIdentity, TransferMode, IDENTIFY_BYTES, MAX_MULTIPLE,
};
use super::regs::{device, error, status};
use crate::storage::block::{BlockBackend, SECTOR_SIZE};
use guest_log::RateLimitedLog;
use log::Level;

/// ATA command codes (ATA8-ACS table B.2; obsolete ones from ATA/ATAPI-6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ata {
    DeviceReset,
    Recalibrate,
    ReadSectors,
    ReadSectorsExt,
    ReadDmaExt,
    ReadMultipleExt,
    WriteSectors,
    WriteSectorsExt,
    WriteDmaExt,
    WriteMultipleExt,
    ReadVerifySectors,
    ReadVerifySectorsExt,
    Seek,
    ExecuteDeviceDiagnostic,
    InitializeDeviceParameters,
    Packet,
    IdentifyPacketDevice,
    ReadMultiple,
    WriteMultiple,
    SetMultipleMode,
    ReadDma,
    WriteDma,
    StandbyImmediate,
    IdleImmediate,
    Standby,
    Idle,
    CheckPowerMode,
    FlushCache,
    FlushCacheExt,
    IdentifyDevice,
    SetFeatures,
}

impl Ata {
    /// Decodes a Command register value; `None` for a command Keel does not implement.
    pub fn from_code(code: u8) -> Option<Ata> {
        Some(match code {
            0x08 => Ata::DeviceReset,
            0x10..=0x1F => Ata::Recalibrate,
            0x20 | 0x21 => Ata::ReadSectors,
            0x24 => Ata::ReadSectorsExt,
            0x25 => Ata::ReadDmaExt,
            0x29 => Ata::ReadMultipleExt,
            0x30 | 0x31 => Ata::WriteSectors,
            0x34 => Ata::WriteSectorsExt,
            0x35 => Ata::WriteDmaExt,
            0x39 => Ata::WriteMultipleExt,
            0x40 | 0x41 => Ata::ReadVerifySectors,
            0x42 => Ata::ReadVerifySectorsExt,
            0x70..=0x7F => Ata::Seek,
            0x90 => Ata::ExecuteDeviceDiagnostic,
            0x91 => Ata::InitializeDeviceParameters,
            0xA0 => Ata::Packet,
            0xA1 => Ata::IdentifyPacketDevice,
            0xC4 => Ata::ReadMultiple,
            0xC5 => Ata::WriteMultiple,
            0xC6 => Ata::SetMultipleMode,
            0xC8 | 0xC9 => Ata::ReadDma,
            0xCA | 0xCB => Ata::WriteDma,
            0xE0 | 0x94 => Ata::StandbyImmediate,
            0xE1 | 0x95 => Ata::IdleImmediate,
            0xE2 | 0x96 => Ata::Standby,
            0xE3 | 0x97 => Ata::Idle,
            0xE5 | 0x98 => Ata::CheckPowerMode,
            0xE7 => Ata::FlushCache,
            0xEA => Ata::FlushCacheExt,
            0xEC => Ata::IdentifyDevice,
            0xEF => Ata::SetFeatures,
            _ => return None,
        })
    }
}

/// Status of an idle, ready disk.
const READY: u8 = status::DRDY | status::DSC;
/// Sectors per DMA chunk moved between the backend and the descriptor walk.
const DMA_CHUNK: u32 = 128;
/// Sectors READ VERIFY checks per call of the platform (per VM exit): the
/// bus master's byte budget, so a guest's choice of count (up to 65,536
/// sectors, 32 MiB) bounds nothing but the number of calls.
const VERIFY_BUDGET: u32 = (DMA_BUDGET / SECTOR_SIZE) as u32;

/// The command in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    None,
    Identify,
    Pio {
        dir: Dir,
        lba: u64,
        left: u32,
        per_block: u32,
        ext: bool,
    },
    Dma {
        dir: Dir,
        lba: u64,
        left: u32,
        ext: bool,
    },
    /// READ VERIFY SECTORS (EXT) with `left` sectors from `lba` still to
    /// check; the device is busy (BSY) until they are.
    Verify {
        lba: u64,
        left: u32,
        ext: bool,
    },
}

/// An ATA hard disk over a [`BlockBackend`].
pub struct AtaDisk {
    backend: Box<dyn BlockBackend>,
    serial: String,
    model: String,
    default_chs: (u16, u8, u8),
    chs: (u16, u8, u8),
    multiple: u8,
    write_cache: bool,
    mode: TransferMode,
    standby: bool,
    op: Op,
    /// Backend failures, which a guest can repeat at will.
    io_errors: RateLimitedLog,
}

impl AtaDisk {
    /// Firmware revision in IDENTIFY DEVICE.
    pub const FIRMWARE: &'static str = "KEEL0.1";
    pub const MODEL: &'static str = "Keel ATA disk";

    /// A disk over `backend`; its serial number is the image name (first 20 characters).
    pub fn new(backend: Box<dyn BlockBackend>) -> Self {
        let serial: String = backend.name().chars().take(20).collect();
        let default_chs = default_geometry(backend.capacity());
        let mut d = AtaDisk {
            backend,
            serial,
            model: Self::MODEL.into(),
            default_chs,
            chs: default_chs,
            multiple: 0,
            write_cache: true,
            mode: TransferMode::DEFAULT,
            standby: false,
            op: Op::None,
            io_errors: RateLimitedLog::new(),
        };
        d.reset();
        d
    }

    /// Capacity in sectors.
    pub fn capacity(&self) -> u64 {
        self.backend.capacity()
    }

    /// The backend, for the platform (and tests) to inspect.
    pub fn backend(&self) -> &dyn BlockBackend {
        &*self.backend
    }

    /// Sectors per READ/WRITE MULTIPLE block; 0 when not set.
    pub fn multiple(&self) -> u8 {
        self.multiple
    }

    /// Power-on defaults: multiple mode 16, write cache on, multiword DMA 2,
    /// the default CHS translation, active power mode.
    pub fn reset(&mut self) {
        self.chs = self.default_chs;
        self.multiple = MAX_MULTIPLE;
        self.write_cache = true;
        self.mode = TransferMode::DEFAULT;
        self.standby = false;
        self.op = Op::None;
    }

    /// Drops the command in progress (software reset).
    pub fn cancel(&mut self) {
        self.op = Op::None;
    }

    /// The IDENTIFY DEVICE words as they are now.
    pub fn identify(&self) -> [u16; 256] {
        identify_device(&DiskIdentity {
            serial: &self.serial,
            firmware: Self::FIRMWARE,
            model: &self.model,
            capacity: self.capacity(),
            default_chs: self.default_chs,
            current_chs: self.chs,
            multiple: self.multiple,
            write_cache: self.write_cache,
            mode: self.mode,
        })
    }

    pub(crate) fn command(&mut self, code: u8, core: &mut DeviceCore) {
        self.op = Op::None;
        core.end_transfer();
        let Some(cmd) = Ata::from_code(code) else {
            core.abort(READY);
            return;
        };
        let multiple = u32::from(self.multiple);
        match cmd {
            Ata::ReadSectors => self.start_pio(core, Dir::In, false, 1),
            Ata::ReadSectorsExt => self.start_pio(core, Dir::In, true, 1),
            Ata::WriteSectors => self.start_pio(core, Dir::Out, false, 1),
            Ata::WriteSectorsExt => self.start_pio(core, Dir::Out, true, 1),
            Ata::ReadMultiple
            | Ata::ReadMultipleExt
            | Ata::WriteMultiple
            | Ata::WriteMultipleExt
                if multiple == 0 =>
            {
                core.abort(READY)
            }
            Ata::ReadMultiple => self.start_pio(core, Dir::In, false, multiple),
            Ata::ReadMultipleExt => self.start_pio(core, Dir::In, true, multiple),
            Ata::WriteMultiple => self.start_pio(core, Dir::Out, false, multiple),
            Ata::WriteMultipleExt => self.start_pio(core, Dir::Out, true, multiple),
            Ata::ReadDma => self.start_dma(core, Dir::In, false),
            Ata::ReadDmaExt => self.start_dma(core, Dir::In, true),
            Ata::WriteDma => self.start_dma(core, Dir::Out, false),
            Ata::WriteDmaExt => self.start_dma(core, Dir::Out, true),
            Ata::ReadVerifySectors => self.verify(core, false),
            Ata::ReadVerifySectorsExt => self.verify(core, true),
            Ata::Seek => {
                if self.checked_range(core, false, 1).is_some() {
                    core.complete(READY);
                }
            }
            Ata::Recalibrate => core.complete(READY),
            Ata::InitializeDeviceParameters => self.initialize_device_parameters(core),
            Ata::SetMultipleMode => {
                let n = core.tf.count.cur;
                if n > MAX_MULTIPLE || !(n == 0 || n.is_power_of_two()) {
                    core.abort(READY);
                } else {
                    self.multiple = n;
                    core.complete(READY);
                }
            }
            Ata::SetFeatures => self.set_features(core),
            Ata::FlushCache | Ata::FlushCacheExt => match self.backend.flush() {
                Ok(()) => core.complete(READY),
                Err(e) => {
                    self.io_errors
                        .log(Level::Warn, format_args!("FLUSH CACHE failed: {e}"));
                    core.abort(READY);
                }
            },
            Ata::StandbyImmediate | Ata::Standby => {
                self.standby = true;
                core.complete(READY);
            }
            Ata::IdleImmediate | Ata::Idle => {
                self.standby = false;
                core.complete(READY);
            }
            Ata::CheckPowerMode => {
                core.complete(READY);
                core.tf.count.cur = if self.standby { 0x00 } else { 0xFF };
            }
            Ata::IdentifyDevice => {
                self.op = Op::Identify;
                put_bytes(&self.identify(), core.data(IDENTIFY_BYTES));
                core.open_pio_in(READY);
                core.intrq = true;
            }
            // DEVICE RESET and the PACKET commands are for PACKET devices
            // (ATA8-ACS 7.7, 7.17, 7.18); EXECUTE DEVICE DIAGNOSTIC is the
            // channel's (both devices run it).
            Ata::DeviceReset
            | Ata::Packet
            | Ata::IdentifyPacketDevice
            | Ata::ExecuteDeviceDiagnostic => core.abort(READY),
        }
    }

    /// The first LBA of the command and its sector count, if the whole
    /// range is on the disk; otherwise the command has failed with IDNF.
    fn checked_range(&self, core: &mut DeviceCore, ext: bool, count: u32) -> Option<u64> {
        let tf = &core.tf;
        let lba = if ext {
            Some(tf.lba48())
        } else if tf.device & device::LBA != 0 {
            Some(tf.lba28())
        } else {
            self.chs_to_lba(
                u16::from(tf.lba_high.cur) << 8 | u16::from(tf.lba_mid.cur),
                tf.device & 0x0F,
                tf.lba_low.cur,
            )
        };
        match lba {
            Some(lba)
                if lba
                    .checked_add(u64::from(count))
                    .is_some_and(|end| end <= self.capacity()) =>
            {
                Some(lba)
            }
            _ => {
                if let Some(lba) = lba {
                    core.tf.set_lba(lba, ext);
                }
                core.fail(READY, error::IDNF);
                None
            }
        }
    }

    /// CHS to LBA through the current translation; `None` if outside it.
    fn chs_to_lba(&self, cyl: u16, head: u8, sector: u8) -> Option<u64> {
        let (cyls, heads, spt) = self.chs;
        if sector == 0 || sector > spt || head >= heads || cyl >= cyls {
            return None;
        }
        Some(
            (u64::from(cyl) * u64::from(heads) + u64::from(head)) * u64::from(spt)
                + u64::from(sector - 1),
        )
    }

    fn count(core: &DeviceCore, ext: bool) -> u32 {
        if ext {
            core.tf.count48()
        } else {
            core.tf.count28()
        }
    }

    fn start_pio(&mut self, core: &mut DeviceCore, dir: Dir, ext: bool, per_block: u32) {
        let count = Self::count(core, ext);
        let Some(lba) = self.checked_range(core, ext, count) else {
            return;
        };
        if dir == Dir::Out && self.backend.read_only() {
            core.abort(READY);
            return;
        }
        self.standby = false;
        self.op = Op::Pio {
            dir,
            lba,
            left: count,
            per_block,
            ext,
        };
        match dir {
            Dir::In => self.load_read_block(core),
            // ATA8-APT 11.4 PIO data-out: no interrupt before the first block.
            Dir::Out => core.open_pio_out(block_bytes(count.min(per_block)), READY),
        }
    }

    fn load_read_block(&mut self, core: &mut DeviceCore) {
        let Op::Pio {
            lba,
            left,
            per_block,
            ext,
            ..
        } = self.op
        else {
            return;
        };
        let buf = core.data(block_bytes(left.min(per_block)));
        match self.backend.read_sectors(lba, buf) {
            Ok(()) => {
                core.open_pio_in(READY);
                core.intrq = true;
            }
            Err(e) => {
                self.io_errors
                    .log(Level::Warn, format_args!("ATA read failed: {e}"));
                self.op = Op::None;
                core.tf.set_lba(lba, ext);
                core.fail(READY, error::UNC);
            }
        }
    }

    pub(crate) fn pio_block_done(&mut self, core: &mut DeviceCore) {
        match self.op {
            Op::Pio {
                dir: Dir::In,
                lba,
                left,
                per_block,
                ext,
            } => {
                let n = left.min(per_block);
                if left == n {
                    self.finish_quietly(core);
                } else {
                    self.op = Op::Pio {
                        dir: Dir::In,
                        lba: lba + u64::from(n),
                        left: left - n,
                        per_block,
                        ext,
                    };
                    self.load_read_block(core);
                }
            }
            Op::Pio {
                dir: Dir::Out,
                lba,
                left,
                per_block,
                ext,
            } => {
                let n = left.min(per_block);
                if let Err(e) = self.store(lba, &core.buf) {
                    self.io_errors
                        .log(Level::Warn, format_args!("ATA write failed: {e}"));
                    self.op = Op::None;
                    core.tf.set_lba(lba, ext);
                    core.abort(READY);
                    return;
                }
                if left == n {
                    self.op = Op::None;
                    core.complete(READY);
                } else {
                    let left = left - n;
                    self.op = Op::Pio {
                        dir: Dir::Out,
                        lba: lba + u64::from(n),
                        left,
                        per_block,
                        ext,
                    };
                    core.open_pio_out(block_bytes(left.min(per_block)), READY);
                    core.intrq = true;
                }
            }
            // The last (only) block of IDENTIFY DEVICE: no interrupt after it.
            Op::Identify | Op::None | Op::Dma { .. } | Op::Verify { .. } => {
                self.finish_quietly(core)
            }
        }
    }

    /// End of a PIO data-in command: no interrupt after the last block.
    fn finish_quietly(&mut self, core: &mut DeviceCore) {
        self.op = Op::None;
        core.end_transfer();
        core.tf.status = READY;
    }

    fn store(&mut self, lba: u64, buf: &[u8]) -> Result<(), crate::storage::BlockError> {
        self.backend.write_sectors(lba, buf)?;
        if !self.write_cache {
            self.backend.flush()?;
        }
        Ok(())
    }

    fn start_dma(&mut self, core: &mut DeviceCore, dir: Dir, ext: bool) {
        let count = Self::count(core, ext);
        let Some(lba) = self.checked_range(core, ext, count) else {
            return;
        };
        if dir == Dir::Out && self.backend.read_only() {
            core.abort(READY);
            return;
        }
        self.standby = false;
        self.op = Op::Dma {
            dir,
            lba,
            left: count,
            ext,
        };
        core.request_dma(dir, READY);
    }

    pub(crate) fn dma(&mut self, core: &mut DeviceCore, walker: &mut PrdWalker<'_>) -> DmaEnd {
        let Op::Dma {
            dir,
            mut lba,
            mut left,
            ext,
        } = self.op
        else {
            return DmaEnd::Finished;
        };
        while left > 0 {
            let budget = (walker.budget_left() / SECTOR_SIZE) as u32;
            let n = left.min(DMA_CHUNK).min(budget);
            if n == 0 {
                self.op = Op::Dma {
                    dir,
                    lba,
                    left,
                    ext,
                };
                return DmaEnd::Paused;
            }
            let in_place = match dir {
                Dir::In => self.backend.sectors(lba, block_bytes(n)),
                Dir::Out => None,
            };
            let moved = match dir {
                // An image in memory goes straight into the guest's buffers.
                Dir::In if in_place.is_some() => in_place.map_or(Ok(()), |b| walker.to_guest(b)),
                Dir::In => match self.backend.read_sectors(lba, core.data(block_bytes(n))) {
                    Ok(()) => walker.to_guest(&core.buf),
                    Err(e) => {
                        self.io_errors
                            .log(Level::Warn, format_args!("ATA DMA read failed: {e}"));
                        self.op = Op::None;
                        core.tf.set_lba(lba, ext);
                        core.fail(READY, error::UNC);
                        return DmaEnd::Finished;
                    }
                },
                Dir::Out => {
                    let buf = core.data(block_bytes(n));
                    let r = walker.from_guest(buf);
                    if r.is_ok() {
                        if let Err(e) = self.store(lba, buf) {
                            self.io_errors
                                .log(Level::Warn, format_args!("ATA DMA write failed: {e}"));
                            self.op = Op::None;
                            core.tf.set_lba(lba, ext);
                            core.abort(READY);
                            return DmaEnd::Finished;
                        }
                    }
                    r
                }
            };
            if let Err(f) = moved {
                return DmaEnd::Fault(f);
            }
            lba += u64::from(n);
            left -= n;
        }
        self.op = Op::None;
        core.complete(READY);
        DmaEnd::Finished
    }

    pub(crate) fn dma_aborted(&mut self, core: &mut DeviceCore) {
        self.op = Op::None;
        core.abort(READY);
    }

    /// READ VERIFY SECTORS (EXT) (ATA8-ACS 7.34, 7.35): reads the sectors
    /// without moving data, failing with UNC at the first unreadable one.
    /// The device is busy (BSY, ATA8-APT 11.3 "Non-data command protocol")
    /// while it checks; the first [`VERIFY_BUDGET`] sectors are checked now
    /// and the rest on the platform's later calls of [`AtaDisk::continue_command`].
    fn verify(&mut self, core: &mut DeviceCore, ext: bool) {
        let count = Self::count(core, ext);
        let Some(lba) = self.checked_range(core, ext, count) else {
            return;
        };
        self.op = Op::Verify {
            lba,
            left: count,
            ext,
        };
        core.tf.status = status::BSY;
        self.continue_command(core);
    }

    /// Whether a command is still executing without the host's help (a
    /// READ VERIFY longer than one call's budget).
    pub(crate) fn executing(&self) -> bool {
        matches!(self.op, Op::Verify { .. })
    }

    /// Moves the executing command on by at most one call's budget, and
    /// completes it (with its interrupt) when it is done.
    pub(crate) fn continue_command(&mut self, core: &mut DeviceCore) {
        let Op::Verify {
            mut lba,
            mut left,
            ext,
        } = self.op
        else {
            return;
        };
        let mut budget = VERIFY_BUDGET;
        while left > 0 && budget > 0 {
            let n = left.min(DMA_CHUNK).min(budget);
            if self
                .backend
                .read_sectors(lba, core.data(block_bytes(n)))
                .is_err()
            {
                self.op = Op::None;
                core.tf.set_lba(lba, ext);
                core.fail(READY, error::UNC);
                return;
            }
            lba += u64::from(n);
            left -= n;
            budget -= n;
        }
        if left == 0 {
            self.op = Op::None;
            core.complete(READY);
        } else {
            self.op = Op::Verify { lba, left, ext };
        }
    }

    /// INITIALIZE DEVICE PARAMETERS (ATA/ATAPI-6 8.16): sectors per track
    /// from Count, heads from Device bits 3:0 plus one.
    fn initialize_device_parameters(&mut self, core: &mut DeviceCore) {
        let spt = core.tf.count.cur;
        let heads = (core.tf.device & 0x0F) + 1;
        if spt == 0 {
            core.abort(READY);
            return;
        }
        let cyls = (self.capacity() / (u64::from(heads) * u64::from(spt))).min(65535) as u16;
        self.chs = (cyls, heads, spt);
        core.complete(READY);
    }

    /// SET FEATURES (ATA8-ACS 7.48): transfer mode, write cache; the
    /// read look-ahead and revert-to-defaults switches are accepted and
    /// change nothing.
    fn set_features(&mut self, core: &mut DeviceCore) {
        match core.tf.features.cur {
            0x03 => match TransferMode::from_count(core.tf.count.cur) {
                Some(mode) => {
                    self.mode = mode;
                    core.complete(READY);
                }
                None => core.abort(READY),
            },
            0x02 => {
                self.write_cache = true;
                core.complete(READY);
            }
            0x82 => {
                self.write_cache = false;
                match self.backend.flush() {
                    Ok(()) => core.complete(READY),
                    Err(_) => core.abort(READY),
                }
            }
            0x55 | 0xAA | 0x66 | 0xCC => core.complete(READY),
            _ => core.abort(READY),
        }
    }
}

fn block_bytes(sectors: u32) -> usize {
    sectors as usize * SECTOR_SIZE
}

/// The default CHS translation: 16 heads, 63 sectors per track, the whole
/// cylinders the disk holds, at least one (a disk smaller than a cylinder is
/// still addressable by CHS: firmware refuses a drive with no cylinders) and
/// at most 16383 (ATA8-ACS annex: the value reported for disks over 8 GB).
fn default_geometry(capacity: u64) -> (u16, u8, u8) {
    let cyls = (capacity / (16 * 63)).clamp(1, 16383) as u16;
    (cyls, 16, 63)
}

#[cfg(test)]
#[test]
fn geometry_covers_small_and_large_disks() {
    assert_eq!(
        default_geometry(4),
        (1, 16, 63),
        "a 2 KiB disk still has a cylinder"
    );
    assert_eq!(default_geometry(16 * 63), (1, 16, 63));
    assert_eq!(default_geometry(2 * 16 * 63 + 1), (2, 16, 63));
    assert_eq!(default_geometry(1 << 40), (16383, 16, 63));
}
