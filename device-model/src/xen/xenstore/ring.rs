//! The store page: the shared rings between the guest's xenbus driver and
//! Keel (public/io/xs_wire.h `struct xenstore_domain_interface`): request
//! bytes in `req`, replies and watch events in `rsp`, each a 1024-byte ring
//! with free-running u32 indexes; the producer of a ring writes its bytes,
//! then its index. Keel owns `req_cons` and `rsp_prod` and keeps its own
//! copies of them, so a guest that scribbles on them changes nothing.

use alloc::collections::VecDeque;
use alloc::vec::Vec;

use guest_memory::{Gpa, GuestMemory};

use super::wire::{Header, HEADER_LEN, PAYLOAD_MAX};

/// Bytes of each ring (`XENSTORE_RING_SIZE`).
pub const RING_SIZE: u32 = 1024;
/// Offsets in the store page.
pub const REQ: u64 = 0;
pub const RSP: u64 = 1024;
pub const REQ_CONS: u64 = 2048;
pub const REQ_PROD: u64 = 2052;
pub const RSP_CONS: u64 = 2056;
pub const RSP_PROD: u64 = 2060;
pub const SERVER_FEATURES: u64 = 2064;
pub const CONNECTION: u64 = 2068;
pub const ERROR: u64 = 2072;

/// `server_features` bits: the guest may ask for a reconnection, and the
/// server reports errors in the `error` field.
pub const FEATURE_RECONNECTION: u32 = 1;
pub const FEATURE_ERROR: u32 = 2;
/// `connection` values.
pub const CONNECTED: u32 = 0;
pub const RECONNECT: u32 = 1;
/// `error` values: none, a ring index out of range, a malformed message.
pub const ERROR_NONE: u32 = 0;
pub const ERROR_RINGIDX: u32 = 2;
pub const ERROR_PROTO: u32 = 3;

/// Bytes of replies and events waiting for room in `rsp`: four full-size
/// messages. A request is taken only when a full-size reply fits.
pub const OUT_CAPACITY: usize = 4 * (HEADER_LEN + PAYLOAD_MAX);

/// Why the ring stopped: the guest broke the protocol.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// `req_prod - req_cons` or `rsp_prod - rsp_cons` is past the ring size.
    Index { prod: u32, cons: u32 },
    /// A header with `len` past [`PAYLOAD_MAX`].
    TooLong(u32),
    /// The store page is not guest RAM.
    Memory(Gpa),
}

impl RingError {
    /// The value for the page's `error` field.
    pub fn code(self) -> u32 {
        match self {
            RingError::Index { .. } => ERROR_RINGIDX,
            RingError::TooLong(_) | RingError::Memory(_) => ERROR_PROTO,
        }
    }
}

/// Keel's side of the rings.
#[derive(Debug)]
pub struct Ring {
    pub gpa: Gpa,
    req_cons: u32,
    rsp_prod: u32,
    /// The header of the message being received, and how much of it came.
    header: [u8; HEADER_LEN],
    header_have: usize,
    /// The payload received so far (capacity [`PAYLOAD_MAX`], never grown).
    payload: Vec<u8>,
    out: VecDeque<u8>,
}

impl Ring {
    pub fn new(gpa: Gpa) -> Ring {
        Ring {
            gpa,
            req_cons: 0,
            rsp_prod: 0,
            header: [0; HEADER_LEN],
            header_have: 0,
            payload: Vec::with_capacity(PAYLOAD_MAX),
            out: VecDeque::with_capacity(OUT_CAPACITY),
        }
    }

    fn read_u32(&self, mem: &GuestMemory, off: u64) -> Result<u32, RingError> {
        mem.read_obj::<u32>(self.gpa + off)
            .map_err(|_| RingError::Memory(self.gpa))
    }

    fn write_u32(&self, mem: &GuestMemory, off: u64, v: u32) -> Result<(), RingError> {
        mem.write_obj::<u32>(self.gpa + off, v)
            .map_err(|_| RingError::Memory(self.gpa))
    }

    /// Sets up the page for a new connection: indexes zero, features
    /// offered, connected, no error; drops any partial message and every
    /// queued reply (xs_wire.h, "Reconnection": the server does this when
    /// the guest sets `connection` to RECONNECT).
    pub fn reset(&mut self, mem: &GuestMemory) -> Result<(), RingError> {
        self.req_cons = 0;
        self.rsp_prod = 0;
        self.header_have = 0;
        self.payload.clear();
        self.out.clear();
        for off in [REQ_CONS, REQ_PROD, RSP_CONS, RSP_PROD, ERROR] {
            self.write_u32(mem, off, 0)?;
        }
        self.write_u32(mem, SERVER_FEATURES, FEATURE_RECONNECTION | FEATURE_ERROR)?;
        self.write_u32(mem, CONNECTION, CONNECTED)
    }

    /// Whether the guest asked for a reconnection.
    pub fn reconnect_requested(&self, mem: &GuestMemory) -> Result<bool, RingError> {
        Ok(self.read_u32(mem, CONNECTION)? == RECONNECT)
    }

    /// Reports a protocol error in the page's `error` field.
    pub fn report(&self, mem: &GuestMemory, e: RingError) {
        let _ = self.write_u32(mem, ERROR, e.code());
    }

    /// Room left in the reply queue.
    pub fn out_room(&self) -> usize {
        OUT_CAPACITY - self.out.len()
    }

    /// Queues one message if it fits whole; `false` if it does not.
    pub fn queue(&mut self, header: Header, parts: &[&[u8]]) -> bool {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > PAYLOAD_MAX || HEADER_LEN + len > self.out_room() {
            return false;
        }
        let header = Header {
            len: len as u32,
            ..header
        };
        self.out.extend(header.to_bytes());
        for p in parts {
            self.out.extend(p.iter());
        }
        true
    }

    /// Bytes queued, not yet in `rsp`.
    pub fn queued(&self) -> usize {
        self.out.len()
    }

    /// Moves queued bytes into `rsp` as far as there is room; returns how
    /// many moved.
    pub fn flush(&mut self, mem: &GuestMemory) -> Result<usize, RingError> {
        let cons = self.read_u32(mem, RSP_CONS)?;
        let used = self.rsp_prod.wrapping_sub(cons);
        if used > RING_SIZE {
            return Err(RingError::Index {
                prod: self.rsp_prod,
                cons,
            });
        }
        let n = ((RING_SIZE - used) as usize).min(self.out.len());
        let mut done = 0;
        while done < n {
            let at = self.rsp_prod.wrapping_add(done as u32) % RING_SIZE;
            let chunk = (n - done).min((RING_SIZE - at) as usize);
            let (a, b) = self.out.as_slices();
            // Copy through a small stack buffer: the queue may be split.
            let mut buf = [0u8; 256];
            let chunk = chunk.min(buf.len());
            for (i, byte) in a.iter().chain(b.iter()).skip(done).take(chunk).enumerate() {
                buf[i] = *byte;
            }
            mem.write(self.gpa + RSP + at as u64, &buf[..chunk])
                .map_err(|_| RingError::Memory(self.gpa))?;
            done += chunk;
        }
        self.out.drain(..n);
        if n > 0 {
            self.rsp_prod = self.rsp_prod.wrapping_add(n as u32);
            self.write_u32(mem, RSP_PROD, self.rsp_prod)?;
        }
        Ok(n)
    }

    /// Takes request bytes from `req` until one message is whole. Returns
    /// its header and payload, or `None` when the ring ran dry first (the
    /// part received stays for the next call); `consumed` counts the bytes
    /// taken.
    pub fn receive(
        &mut self,
        mem: &GuestMemory,
        consumed: &mut usize,
    ) -> Result<Option<(Header, &[u8])>, RingError> {
        let prod = self.read_u32(mem, REQ_PROD)?;
        let avail = prod.wrapping_sub(self.req_cons);
        if avail > RING_SIZE {
            return Err(RingError::Index {
                prod,
                cons: self.req_cons,
            });
        }
        let mut avail = avail as usize;
        while self.header_have < HEADER_LEN && avail > 0 {
            let n = self.take(mem, avail, HEADER_LEN - self.header_have, false)?;
            avail -= n;
            *consumed += n;
        }
        if self.header_have < HEADER_LEN {
            return Ok(None);
        }
        let header = Header::from_bytes(&self.header);
        if header.len as usize > PAYLOAD_MAX {
            return Err(RingError::TooLong(header.len));
        }
        while self.payload.len() < header.len as usize && avail > 0 {
            let n = self.take(mem, avail, header.len as usize - self.payload.len(), true)?;
            avail -= n;
            *consumed += n;
        }
        if self.payload.len() < header.len as usize {
            return Ok(None);
        }
        self.header_have = 0;
        Ok(Some((header, &self.payload)))
    }

    /// Clears the payload of the message [`Ring::receive`] returned.
    pub fn done(&mut self) {
        self.payload.clear();
    }

    /// Copies up to `want` of `avail` bytes from `req` (one contiguous run,
    /// up to the ring's end) into the header or the payload, and advances
    /// `req_cons` in the page.
    fn take(
        &mut self,
        mem: &GuestMemory,
        avail: usize,
        want: usize,
        to_payload: bool,
    ) -> Result<usize, RingError> {
        let at = self.req_cons % RING_SIZE;
        let mut buf = [0u8; 256];
        let n = avail
            .min(want)
            .min((RING_SIZE - at) as usize)
            .min(buf.len());
        mem.read(self.gpa + REQ + at as u64, &mut buf[..n])
            .map_err(|_| RingError::Memory(self.gpa))?;
        if to_payload {
            self.payload.extend_from_slice(&buf[..n]);
        } else {
            self.header[self.header_have..self.header_have + n].copy_from_slice(&buf[..n]);
            self.header_have += n;
        }
        self.req_cons = self.req_cons.wrapping_add(n as u32);
        self.write_u32(mem, REQ_CONS, self.req_cons)?;
        Ok(n)
    }
}
