//! blkback: a Xen virtual block device (vbd) backend over a
//! [`BlockBackend`], the same backends IDE and virtio-blk use
//! (public/io/blkif.h as facts).
//!
//! The frontend (xen-blkfront) grants one ring page and its data pages;
//! the backend copies sector data between the backend and granted pages
//! through [`GrantAccess`] (a bounce page allocated with the device), one
//! segment of at most 4 KiB at a time. Requests: READ, WRITE, FLUSH_DISKCACHE
//! and WRITE_BARRIER (both: the data, if any, then a flush), INDIRECT
//! (READ/WRITE with up to [`MAX_INDIRECT_SEGMENTS`] segments listed in
//! granted pages); DISCARD and anything else answer EOPNOTSUPP, since a
//! [`BlockBackend`] has no discard and `feature-discard` is not offered.
//!
//! Bounds: a request is checked whole before any data moves (segment
//! count, `first_sect` ≤ `last_sect` ≤ 7, the sector range inside the
//! disk, writes on a read-only disk); a failed check or grant is an ERROR
//! status for that request only. A pass over the ring moves at most
//! [`PASS_BUDGET`] bytes (a request counts at least 4 KiB), then leaves the
//! rest for [`BlkBack::service`]. Responses of a pass are pushed together
//! with at most one notification. A broken ring (an index jump or a revoked
//! ring page) stops the device with one log line.
//!
//! The xenbus side is [`BlkBack::publish`] and [`BlkBack::frontend_changed`]
//! (see [`super::xenbus`] for wiring).

pub mod wire;

use alloc::boxed::Box;
use alloc::format;
use alloc::vec;

use guest_log::RateLimitedLog;
use log::Level;

use super::ring::{BackRing, RingError, PAGE_SIZE};
use super::xenbus::{self, Step, XenbusKeys, XenbusState};
use super::{EventSender, EvtchnPort, GrantAccess};
use crate::storage::block::sector_range;
use crate::storage::{BlockBackend, SECTOR_SIZE};
use wire::{op, status, Segment};

/// Segments of an INDIRECT request offered (`feature-max-indirect-segments`):
/// 1 MiB a request, one indirect page.
pub const MAX_INDIRECT_SEGMENTS: usize = 256;
/// Bytes a pass over the ring moves at most (as virtio-blk).
pub const PASS_BUDGET: usize = 512 << 10;
/// What a request costs the budget at least.
pub const MIN_REQUEST_COST: usize = 4096;

/// What a VM's configuration decides about a vbd.
#[derive(Debug, Clone, Default)]
pub struct BlkBackConfig {
    /// Refuse writes and tell the frontend (`info` VDISK_READONLY).
    pub read_only: bool,
}

/// The frontend's ring and event channel, once connected.
struct Connection {
    ring: BackRing,
    port: EvtchnPort,
}

/// A vbd backend for one frontend device.
pub struct BlkBack {
    backend: Box<dyn BlockBackend>,
    read_only: bool,
    state: XenbusState,
    conn: Option<Connection>,
    /// A ring error stopped the device until the frontend reconnects.
    stopped: bool,
    /// A pass stopped at its budget with requests left.
    pending: bool,
    bounce: Box<[u8]>,
    segments: Box<[Segment]>,
    /// Bad requests (rate-limited) and ring errors (one line: the device stops).
    log: RateLimitedLog,
    ring_log: RateLimitedLog,
}

impl BlkBack {
    /// A vbd over `backend`, not yet published.
    pub fn new(config: BlkBackConfig, backend: Box<dyn BlockBackend>) -> BlkBack {
        BlkBack {
            read_only: config.read_only || backend.read_only(),
            backend,
            state: XenbusState::Initialising,
            conn: None,
            stopped: false,
            pending: false,
            bounce: vec![0u8; PAGE_SIZE].into_boxed_slice(),
            segments: vec![Segment::default(); MAX_INDIRECT_SEGMENTS].into_boxed_slice(),
            log: RateLimitedLog::new(),
            ring_log: RateLimitedLog::with_burst(1),
        }
    }

    /// A machine reset: no ring, not yet published (the guest's ports and
    /// grants are gone with it).
    pub fn reset(&mut self) {
        self.state = XenbusState::Initialising;
        self.conn = None;
        self.stopped = false;
        self.pending = false;
    }

    /// The backend's xenbus state.
    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// The frontend's event-channel port while connected: the port whose
    /// `EVTCHNOP_send` should reach [`BlkBack::handle_event`].
    pub fn event_channel(&self) -> Option<EvtchnPort> {
        self.conn.as_ref().map(|c| c.port)
    }

    /// Whether a ring error stopped the device.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    /// Whether requests are left for [`BlkBack::service`].
    pub fn needs_service(&self) -> bool {
        self.pending && self.conn.is_some() && !self.stopped
    }

    /// Publishes the backend's features and goes InitWait (blkif.h: the
    /// `feature-*` keys come before InitWait).
    pub fn publish(&mut self, keys: &mut dyn XenbusKeys) {
        keys.write_backend("feature-flush-cache", "1");
        keys.write_backend("feature-barrier", "1");
        keys.write_backend(
            "feature-max-indirect-segments",
            &format!("{MAX_INDIRECT_SEGMENTS}"),
        );
        self.set_state(keys, XenbusState::InitWait);
    }

    fn set_state(&mut self, keys: &mut dyn XenbusKeys, state: XenbusState) {
        self.state = state;
        keys.write_backend("state", state.value());
    }

    /// Follows the frontend's `state` key: call when a watch on it fires.
    pub fn frontend_changed(&mut self, keys: &mut dyn XenbusKeys) {
        let front = XenbusState::parse(keys.read_frontend("state").as_deref());
        match xenbus::step(self.state, front) {
            Step::Stay => {}
            Step::Connect => match self.connect(keys) {
                Ok(()) => self.set_state(keys, XenbusState::Connected),
                Err(why) => {
                    let name = self.backend.name();
                    self.log.log(
                        Level::Warn,
                        format_args!("xen-blkback '{name}': cannot connect: {why}"),
                    );
                    self.set_state(keys, XenbusState::Closed);
                }
            },
            Step::Disconnect(to) => {
                self.conn = None;
                self.pending = false;
                self.set_state(keys, to);
            }
            Step::Restart => {
                self.stopped = false;
                self.publish(keys);
            }
        }
    }

    /// Reads ring-ref, event-channel and protocol and publishes the disk's
    /// size (blkif.h: `sectors`, `info`, `sector-size` before Connected).
    fn connect(&mut self, keys: &mut dyn XenbusKeys) -> Result<(), &'static str> {
        let ring_ref = xenbus::read_u32(keys, "ring-ref").ok_or("no ring-ref")?;
        let port = xenbus::read_u32(keys, "event-channel")
            .filter(|&p| p != 0)
            .ok_or("no event-channel")?;
        // An absent protocol is the backend's native ABI (blkif.h).
        match keys.read_frontend("protocol") {
            None => {}
            Some(p) if p.trim_end_matches('\0') == "x86_64-abi" => {}
            Some(_) => return Err("protocol is not x86_64-abi"),
        }
        keys.write_backend("sectors", &format!("{}", self.backend.capacity()));
        let info = if self.read_only {
            wire::VDISK_READONLY
        } else {
            0
        };
        keys.write_backend("info", &format!("{info}"));
        keys.write_backend("sector-size", &format!("{SECTOR_SIZE}"));
        self.conn = Some(Connection {
            ring: BackRing::new(ring_ref, wire::REQUEST_LEN),
            port: EvtchnPort(port),
        });
        self.stopped = false;
        self.pending = false;
        Ok(())
    }

    /// The frontend notified its event channel: takes and answers requests
    /// within one pass's budget.
    pub fn handle_event(&mut self, grants: &mut dyn GrantAccess, events: &mut dyn EventSender) {
        self.run(grants, events);
    }

    /// Goes on with requests a pass left (see [`BlkBack::needs_service`]).
    pub fn service(&mut self, grants: &mut dyn GrantAccess, events: &mut dyn EventSender) {
        if self.pending {
            self.run(grants, events);
        }
    }

    fn run(&mut self, grants: &mut dyn GrantAccess, events: &mut dyn EventSender) {
        if self.stopped {
            return;
        }
        let Some(mut conn) = self.conn.take() else {
            return;
        };
        let r = self.pass(&mut conn.ring, grants);
        match r {
            Ok(notify) => {
                if notify {
                    events.notify(conn.port);
                }
                self.conn = Some(conn);
            }
            Err(e) => {
                let name = self.backend.name();
                self.ring_log.log(
                    Level::Error,
                    format_args!("xen-blkback '{name}': the device stops: {e}"),
                );
                self.stopped = true;
                self.pending = false;
                self.conn = Some(conn);
            }
        }
    }

    /// One pass: requests until the ring is empty (after the final check)
    /// or the budget is spent; returns whether to notify the frontend.
    fn pass(
        &mut self,
        ring: &mut BackRing,
        grants: &mut dyn GrantAccess,
    ) -> Result<bool, RingError> {
        let mut budget = PASS_BUDGET;
        let mut req = [0u8; wire::REQUEST_LEN];
        let mut notify = false;
        loop {
            if budget == 0 {
                self.pending = true;
                return Ok(notify | ring.push_responses(grants)?);
            }
            if !ring.next_request(grants, &mut req)? {
                notify |= ring.push_responses(grants)?;
                if ring.final_check_for_requests(grants)? {
                    continue;
                }
                self.pending = false;
                return Ok(notify);
            }
            let (operation, status, bytes) = self.execute(&req, grants);
            budget = budget.saturating_sub(bytes.max(MIN_REQUEST_COST));
            let id = wire::le64(&req, wire::ID);
            ring.put_response(grants, &wire::response(id, operation, status))?;
        }
    }

    fn refuse(&mut self, what: core::fmt::Arguments<'_>) {
        let name = self.backend.name();
        self.log
            .log(Level::Warn, format_args!("xen-blkback '{name}': {what}"));
    }

    /// Does one request; returns the operation to answer with, the status
    /// and the data bytes moved.
    fn execute(&mut self, req: &[u8], grants: &mut dyn GrantAccess) -> (u8, i16, usize) {
        let operation = req[wire::OPERATION];
        let sector = wire::le64(req, wire::SECTOR_NUMBER);
        match operation {
            op::READ | op::WRITE | op::WRITE_BARRIER | op::FLUSH_DISKCACHE => {
                let n = usize::from(req[wire::NR_SEGMENTS]);
                if n > wire::MAX_SEGMENTS_PER_REQUEST || (n == 0 && operation <= op::WRITE) {
                    self.refuse(format_args!("a request with {n} segments"));
                    return (operation, status::ERROR, 0);
                }
                for (i, s) in self.segments[..n].iter_mut().enumerate() {
                    *s = Segment::parse(&req[wire::SEG + i * wire::SEGMENT_LEN..]);
                }
                let write = operation != op::READ;
                let (st, bytes) = self.transfer(write, sector, n, grants);
                if st == status::OKAY && operation >= op::WRITE_BARRIER {
                    if let Err(e) = self.backend.flush() {
                        self.refuse(format_args!("{e}"));
                        return (operation, status::ERROR, bytes);
                    }
                }
                (operation, st, bytes)
            }
            op::INDIRECT => {
                // Linux's blkfront expects the indirect operation back.
                let inner = req[wire::INDIRECT_OP];
                if inner != op::READ && inner != op::WRITE {
                    return (inner, status::EOPNOTSUPP, 0);
                }
                let n = usize::from(wire::le16(req, wire::INDIRECT_NR_SEGMENTS));
                if n == 0 || n > MAX_INDIRECT_SEGMENTS {
                    self.refuse(format_args!("an indirect request with {n} segments"));
                    return (inner, status::ERROR, 0);
                }
                if let Err(e) = self.read_indirect_segments(req, n, grants) {
                    self.refuse(format_args!("an indirect segment page: {e:?}"));
                    return (inner, status::ERROR, 0);
                }
                let (st, bytes) = self.transfer(inner == op::WRITE, sector, n, grants);
                (inner, st, bytes)
            }
            _ => (operation, status::EOPNOTSUPP, 0),
        }
    }

    /// Copies `n` segments from the request's indirect pages.
    fn read_indirect_segments(
        &mut self,
        req: &[u8],
        n: usize,
        grants: &mut dyn GrantAccess,
    ) -> Result<(), super::GrantError> {
        for (page, chunk) in self.segments[..n]
            .chunks_mut(wire::SEGMENTS_PER_INDIRECT_PAGE)
            .enumerate()
        {
            let gref = wire::le32(req, wire::INDIRECT_GREFS + 4 * page);
            let bytes = &mut self.bounce[..chunk.len() * wire::SEGMENT_LEN];
            grants.read_granted(gref, 0, bytes)?;
            for (i, s) in chunk.iter_mut().enumerate() {
                *s = Segment::parse(&bytes[i * wire::SEGMENT_LEN..]);
            }
        }
        Ok(())
    }

    /// Moves the data of `self.segments[..n]`, sectors from `sector` on;
    /// checks the whole request first. Returns the status and bytes moved.
    fn transfer(
        &mut self,
        write: bool,
        sector: u64,
        n: usize,
        grants: &mut dyn GrantAccess,
    ) -> (i16, usize) {
        if n == 0 {
            return (status::OKAY, 0);
        }
        if write && self.read_only {
            return (status::ERROR, 0);
        }
        let mut sectors = 0u64;
        for s in &self.segments[..n] {
            if !s.valid() {
                let (f, l) = (s.first_sect, s.last_sect);
                self.refuse(format_args!(
                    "a segment of sectors {f}..={l} is not inside a 4 KiB page"
                ));
                return (status::ERROR, 0);
            }
            sectors += s.sectors();
        }
        let len = sectors as usize * SECTOR_SIZE;
        if let Err(e) = sector_range(self.backend.name(), self.backend.capacity(), sector, len) {
            self.refuse(format_args!("{e}"));
            return (status::ERROR, 0);
        }
        let mut lba = sector;
        for i in 0..n {
            let s = self.segments[i];
            let len = s.sectors() as usize * SECTOR_SIZE;
            let offset = usize::from(s.first_sect) * SECTOR_SIZE;
            let buf = &mut self.bounce[..len];
            let r = if write {
                grants
                    .read_granted(s.gref, offset, buf)
                    .map_err(Err)
                    .and_then(|()| self.backend.write_sectors(lba, buf).map_err(Ok))
            } else {
                self.backend
                    .read_sectors(lba, buf)
                    .map_err(Ok)
                    .and_then(|()| grants.write_granted(s.gref, offset, buf).map_err(Err))
            };
            match r {
                Ok(()) => {}
                Err(Ok(e)) => {
                    self.refuse(format_args!("{e}"));
                    return (status::ERROR, (lba - sector) as usize * SECTOR_SIZE);
                }
                Err(Err(e)) => {
                    let g = s.gref;
                    self.refuse(format_args!(
                        "the data page of grant {g} at sector {lba}: {e:?}"
                    ));
                    return (status::ERROR, (lba - sector) as usize * SECTOR_SIZE);
                }
            }
            lba += s.sectors();
        }
        (status::OKAY, len)
    }
}

#[cfg(test)]
mod tests;
