//! The virtio block device (virtio 1.2 5.2) over a [`BlockBackend`], the
//! same backends the IDE disks use (RAM disks from boot modules, the
//! machine's own virtio-blk disks).
//!
//! One request queue of [`QUEUE_SIZE`] entries. Each request is a chain
//! whose device-readable part starts with the 16-byte header (type,
//! reserved, sector) and whose last device-writable byte is the status
//! (5.2.6); the data in between may be split over any number of buffers
//! (no framing is assumed, 2.6.4). Requests are taken in order; a pass moves
//! at most [`PASS_BUDGET`] bytes (a request costs at least
//! [`MIN_REQUEST_COST`]), the rest goes on in the next service pass. Data
//! moves in one copy between the guest's buffers and a backend that holds
//! its image in memory (a RAM disk), and through a bounce buffer allocated
//! with the device for the others (the machine's own disks).

use alloc::boxed::Box;
use alloc::vec;

use guest_log::RateLimitedLog;
use guest_memory::GuestMemory;
use log::Level;

use super::queue::Chain;
use super::{device_id, Queues, VirtioDevice};
use crate::storage::{BlockBackend, BlockError, SECTOR_SIZE};

/// Feature bits (5.2.3).
pub mod feature {
    pub const SIZE_MAX: u64 = 1 << 1;
    pub const SEG_MAX: u64 = 1 << 2;
    pub const RO: u64 = 1 << 5;
    pub const BLK_SIZE: u64 = 1 << 6;
    pub const FLUSH: u64 = 1 << 9;
    pub const DISCARD: u64 = 1 << 13;
    pub const WRITE_ZEROES: u64 = 1 << 14;
}

/// Request types (5.2.6).
pub mod req {
    pub const IN: u32 = 0;
    pub const OUT: u32 = 1;
    pub const FLUSH: u32 = 4;
    pub const GET_ID: u32 = 8;
    pub const DISCARD: u32 = 11;
    pub const WRITE_ZEROES: u32 = 13;
}

/// Request status values (5.2.6).
pub mod blk_status {
    pub const OK: u8 = 0;
    pub const IOERR: u8 = 1;
    pub const UNSUPP: u8 = 2;
}

/// `struct virtio_blk_config` field offsets (5.2.4).
pub mod cfg {
    pub const CAPACITY: u64 = 0;
    pub const SIZE_MAX: u64 = 8;
    pub const SEG_MAX: u64 = 12;
    pub const BLK_SIZE: u64 = 20;
    pub const MAX_DISCARD_SECTORS: u64 = 36;
    pub const MAX_DISCARD_SEG: u64 = 40;
    pub const DISCARD_SECTOR_ALIGNMENT: u64 = 44;
    pub const MAX_WRITE_ZEROES_SECTORS: u64 = 48;
    pub const MAX_WRITE_ZEROES_SEG: u64 = 52;
    pub const WRITE_ZEROES_MAY_UNMAP: u64 = 56;
    /// Bytes of the structure this device fills.
    pub const LEN: usize = 60;
}

/// Entries of the request queue.
pub const QUEUE_SIZE: u16 = 256;
/// Data buffers per request (`seg_max`): the queue size less the header and status.
pub const SEG_MAX: u32 = QUEUE_SIZE as u32 - 2;
/// Largest data buffer (`size_max`).
pub const SIZE_MAX: u32 = 1 << 20;
/// Bytes a pass moves at most, so one exit's work is bounded. 1 MiB:
/// Linux's largest request here (`seg_max` pages, 1016 KiB) moves in the
/// exit of its notification; at 512 KiB the rest waited for a pass of its
/// own, which cost the guest an exit per request (virtio-blk reads: 4.2
/// exits per MiB at 512 KiB, 2.7 at 1 MiB).
pub const PASS_BUDGET: usize = 1 << 20;
/// What a request costs the budget at least (bounds requests per pass).
pub const MIN_REQUEST_COST: usize = 4096;
/// The bounce buffer between guest memory and the backend.
const BOUNCE_LEN: usize = 64 << 10;
/// `max_discard_sectors` and `max_write_zeroes_sectors`: 32 MiB.
const MAX_RANGE_SECTORS: u32 = 1 << 16;
/// Bytes of the request header and of a discard/write-zeroes segment.
const HEADER_LEN: u64 = 16;
const SEGMENT_LEN: u64 = 16;
/// Length of the GET_ID string (5.2.6).
const ID_LEN: usize = 20;

/// What a VM's configuration decides about a virtio disk.
#[derive(Debug, Clone)]
pub struct VirtioBlkConfig {
    /// Refuse writes and offer VIRTIO_BLK_F_RO.
    pub read_only: bool,
}

/// What moves sector data for the request in progress.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
    Zero,
}

/// The request in progress: the chain stays in [`VirtioBlk::chain`].
#[derive(Debug, Clone, Copy)]
struct Transfer {
    op: Op,
    sector: u64,
    /// Data bytes moved so far, and in all.
    done: u64,
    len: u64,
}

/// A virtio-blk disk.
pub struct VirtioBlk {
    backend: Box<dyn BlockBackend>,
    read_only: bool,
    chain: Chain,
    current: Option<Transfer>,
    bounce: Box<[u8]>,
    id: [u8; ID_LEN],
    /// A pass stopped at its budget with work left.
    pending: bool,
    log: RateLimitedLog,
}

impl VirtioBlk {
    /// A disk over `backend`.
    pub fn new(config: VirtioBlkConfig, backend: Box<dyn BlockBackend>) -> VirtioBlk {
        let mut id = [0u8; ID_LEN];
        let name = backend.name().as_bytes();
        let n = name.len().min(ID_LEN);
        id[..n].copy_from_slice(&name[..n]);
        VirtioBlk {
            read_only: config.read_only || backend.read_only(),
            backend,
            chain: Chain::new(QUEUE_SIZE),
            current: None,
            bounce: vec![0u8; BOUNCE_LEN].into_boxed_slice(),
            id,
            pending: false,
            log: RateLimitedLog::new(),
        }
    }

    /// Whether the disk refuses writes.
    pub fn read_only(&self) -> bool {
        self.read_only
    }

    fn config_bytes(&self) -> [u8; cfg::LEN] {
        let mut c = [0u8; cfg::LEN];
        let mut put = |at: u64, v: &[u8]| c[at as usize..at as usize + v.len()].copy_from_slice(v);
        put(cfg::CAPACITY, &self.backend.capacity().to_le_bytes());
        put(cfg::SIZE_MAX, &SIZE_MAX.to_le_bytes());
        put(cfg::SEG_MAX, &SEG_MAX.to_le_bytes());
        put(cfg::BLK_SIZE, &(SECTOR_SIZE as u32).to_le_bytes());
        put(cfg::MAX_DISCARD_SECTORS, &MAX_RANGE_SECTORS.to_le_bytes());
        put(cfg::MAX_DISCARD_SEG, &1u32.to_le_bytes());
        put(cfg::DISCARD_SECTOR_ALIGNMENT, &1u32.to_le_bytes());
        put(
            cfg::MAX_WRITE_ZEROES_SECTORS,
            &MAX_RANGE_SECTORS.to_le_bytes(),
        );
        put(cfg::MAX_WRITE_ZEROES_SEG, &1u32.to_le_bytes());
        put(cfg::WRITE_ZEROES_MAY_UNMAP, &[0]);
        c
    }

    /// Takes and completes requests until the queue is empty or the pass's
    /// budget is spent.
    fn run(&mut self, queues: &mut Queues<'_>) {
        let mut budget = PASS_BUDGET;
        loop {
            if self.current.is_none() {
                if !queues.pop(0, &mut self.chain) {
                    self.pending = false;
                    return;
                }
                budget = budget.saturating_sub(MIN_REQUEST_COST);
                match self.start(queues) {
                    Ok(Some(t)) => self.current = Some(t),
                    Ok(None) => {}
                    Err(status) => self.complete(queues, status, 0),
                }
            }
            if let Some(t) = self.current {
                match self.step(queues, t, &mut budget) {
                    Ok(t) if t.done < t.len => self.current = Some(t),
                    Ok(t) => {
                        self.current = None;
                        let written = if t.op == Op::Read { t.len } else { 0 };
                        self.complete(queues, blk_status::OK, written);
                    }
                    Err(()) => {
                        self.current = None;
                        self.complete(queues, blk_status::IOERR, 0);
                    }
                }
            }
            if budget == 0 {
                self.pending = true;
                return;
            }
        }
    }

    /// Writes the status byte after `written` data bytes and returns the
    /// chain (5.2.6: `len` counts the bytes written, status included).
    fn complete(&mut self, queues: &mut Queues<'_>, status: u8, written: u64) {
        let head = self.chain.head();
        let Some(at) = self.chain.writable_len().checked_sub(1) else {
            // No room for a status byte: nothing can be reported.
            queues.add_used(0, head, 0);
            return;
        };
        let ok = self.chain.write(queues.memory(), at, &[status]).is_ok();
        let len = if ok { written + 1 } else { 0 };
        queues.add_used(0, head, len as u32);
    }

    fn refuse(&mut self, what: core::fmt::Arguments<'_>) {
        let name = self.backend.name();
        let mut log = core::mem::take(&mut self.log);
        log.log(Level::Warn, format_args!("virtio-blk '{name}': {what}"));
        self.log = log;
    }

    /// Reads the header and does what needs no data transfer; returns the
    /// transfer for reads, writes and write-zeroes, `Ok(None)` when the
    /// request was completed, or the status to complete it with.
    fn start(&mut self, queues: &mut Queues<'_>) -> Result<Option<Transfer>, u8> {
        let mem = queues.memory();
        let mut header = [0u8; HEADER_LEN as usize];
        if self.chain.writable_len() == 0 || self.chain.read(mem, 0, &mut header).is_err() {
            self.refuse(format_args!(
                "a request without a readable header or a status byte"
            ));
            return Err(blk_status::IOERR);
        }
        let kind = u32::from_le_bytes([header[0], header[1], header[2], header[3]]);
        let mut sector = [0u8; 8];
        sector.copy_from_slice(&header[8..16]);
        let sector = u64::from_le_bytes(sector);
        let capacity = self.backend.capacity();
        let in_range =
            |sector: u64, sectors: u64| sector.checked_add(sectors).is_some_and(|e| e <= capacity);
        match kind {
            req::IN | req::OUT => {
                let (op, len) = if kind == req::IN {
                    (Op::Read, self.chain.writable_len() - 1)
                } else {
                    (Op::Write, self.chain.readable_len() - HEADER_LEN)
                };
                if op == Op::Write && self.read_only {
                    return Err(blk_status::IOERR);
                }
                if len % SECTOR_SIZE as u64 != 0 || !in_range(sector, len / SECTOR_SIZE as u64) {
                    self.refuse(format_args!(
                        "a {len}-byte transfer at sector {sector} is not whole sectors inside {capacity}"
                    ));
                    return Err(blk_status::IOERR);
                }
                Ok(Some(Transfer {
                    op,
                    sector,
                    done: 0,
                    len,
                }))
            }
            req::FLUSH => match self.backend.flush() {
                Ok(()) => Err(blk_status::OK),
                Err(e) => {
                    self.refuse(format_args!("{e}"));
                    Err(blk_status::IOERR)
                }
            },
            req::GET_ID => {
                let n = (self.chain.writable_len() - 1).min(ID_LEN as u64) as usize;
                let id = self.id;
                if self.chain.write(mem, 0, &id[..n]).is_err() {
                    return Err(blk_status::IOERR);
                }
                self.complete(queues, blk_status::OK, n as u64);
                Ok(None)
            }
            req::DISCARD | req::WRITE_ZEROES => {
                // One segment (max_discard_seg = max_write_zeroes_seg = 1).
                let mut seg = [0u8; SEGMENT_LEN as usize];
                if self.chain.readable_len() != HEADER_LEN + SEGMENT_LEN
                    || self.chain.read(mem, HEADER_LEN, &mut seg).is_err()
                {
                    return Err(blk_status::UNSUPP);
                }
                let mut s = [0u8; 8];
                s.copy_from_slice(&seg[..8]);
                let sector = u64::from_le_bytes(s);
                let sectors = u32::from_le_bytes([seg[8], seg[9], seg[10], seg[11]]);
                let flags = u32::from_le_bytes([seg[12], seg[13], seg[14], seg[15]]);
                // 5.2.6.2: unmap is only for write-zeroes; other flag bits are reserved.
                let allowed = if kind == req::WRITE_ZEROES { 1 } else { 0 };
                if flags & !allowed != 0 {
                    return Err(blk_status::UNSUPP);
                }
                if self.read_only
                    || sectors > MAX_RANGE_SECTORS
                    || !in_range(sector, u64::from(sectors))
                {
                    return Err(blk_status::IOERR);
                }
                if kind == req::DISCARD {
                    // A hint: the sectors keep what they hold.
                    return Err(blk_status::OK);
                }
                Ok(Some(Transfer {
                    op: Op::Zero,
                    sector,
                    done: 0,
                    len: u64::from(sectors) * SECTOR_SIZE as u64,
                }))
            }
            _ => Err(blk_status::UNSUPP),
        }
    }

    /// Moves the next pieces of `t`, within `budget`: straight between the
    /// guest's buffers and the backend's bytes where the backend holds its
    /// image in memory ([`BlockBackend::sectors`], [`BlockBackend::sectors_mut`]),
    /// otherwise through the bounce buffer. A write whose buffers leave guest
    /// RAM fails with part of its sectors written, as a failed write on a
    /// disk may leave them.
    fn step(
        &mut self,
        queues: &mut Queues<'_>,
        mut t: Transfer,
        budget: &mut usize,
    ) -> Result<Transfer, ()> {
        let mem = queues.memory();
        while t.done < t.len && *budget > 0 {
            let n = ((t.len - t.done) as usize).min((*budget).max(SECTOR_SIZE));
            let n = n - n % SECTOR_SIZE;
            let lba = t.sector + t.done / SECTOR_SIZE as u64;
            let in_place = match t.op {
                Op::Read => self
                    .backend
                    .sectors(lba, n)
                    .map(|bytes| self.chain.write(mem, t.done, bytes)),
                Op::Write => self
                    .backend
                    .sectors_mut(lba, n)
                    .map(|bytes| self.chain.read(mem, HEADER_LEN + t.done, bytes)),
                Op::Zero => self.backend.sectors_mut(lba, n).map(|bytes| {
                    bytes.fill(0);
                    Ok(())
                }),
            };
            let (n, r) = match in_place {
                Some(r) => (n, r.map_err(|_| None)),
                None => {
                    let n = n.min(BOUNCE_LEN);
                    (n, self.bounce_step(mem, t, lba, n))
                }
            };
            if let Err(e) = r {
                match e {
                    Some(e) => self.refuse(format_args!("{e}")),
                    None => self.refuse(format_args!(
                        "a data buffer of the request at sector {} is outside guest RAM",
                        t.sector
                    )),
                }
                return Err(());
            }
            t.done += n as u64;
            *budget = budget.saturating_sub(n);
        }
        Ok(t)
    }

    /// Moves `n` bytes of `t` from sector `lba` through the bounce buffer
    /// (`n` at most [`BOUNCE_LEN`]): the error is the backend's, or `None`
    /// for a guest buffer outside RAM.
    fn bounce_step(
        &mut self,
        mem: &GuestMemory,
        t: Transfer,
        lba: u64,
        n: usize,
    ) -> Result<(), Option<BlockError>> {
        let buf = &mut self.bounce[..n];
        match t.op {
            Op::Read => self
                .backend
                .read_sectors(lba, buf)
                .map_err(Some)
                .and_then(|()| self.chain.write(mem, t.done, buf).map_err(|_| None)),
            Op::Write => self
                .chain
                .read(mem, HEADER_LEN + t.done, buf)
                .map_err(|_| None)
                .and_then(|()| self.backend.write_sectors(lba, buf).map_err(Some)),
            Op::Zero => {
                buf.fill(0);
                self.backend.write_sectors(lba, buf).map_err(Some)
            }
        }
    }
}

impl VirtioDevice for VirtioBlk {
    fn name(&self) -> &'static str {
        "virtio-blk"
    }

    fn device_id(&self) -> u16 {
        device_id::BLOCK
    }

    fn class_code(&self) -> u32 {
        // Mass storage controller, other.
        0x01_8000
    }

    fn features(&self) -> u64 {
        let ro = if self.read_only { feature::RO } else { 0 };
        feature::SIZE_MAX
            | feature::SEG_MAX
            | feature::BLK_SIZE
            | feature::FLUSH
            | feature::DISCARD
            | feature::WRITE_ZEROES
            | ro
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE]
    }

    fn config_read(&mut self, offset: u64, data: &mut [u8]) {
        let c = self.config_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset + i as u64)
                .ok()
                .and_then(|at| c.get(at).copied())
                .unwrap_or(0);
        }
    }

    fn reset(&mut self) {
        self.current = None;
        self.pending = false;
    }

    fn queue_notify(&mut self, queue: u16, queues: &mut Queues<'_>) {
        if queue == 0 {
            self.run(queues);
        }
    }

    fn service(&mut self, queues: &mut Queues<'_>) {
        if self.pending {
            self.run(queues);
        }
    }

    fn next_deadline_ns(&mut self, now: u64) -> Option<u64> {
        self.pending.then_some(now)
    }
}

#[cfg(test)]
mod tests;
