//! The backend's end of a Xen shared I/O ring (public/io/ring.h, as facts):
//! one 4 KiB page the frontend grants, reached only through
//! [`GrantAccess`].
//!
//! The page starts with a 64-byte header of four little-endian `u32`
//! indexes, `req_prod` (0), `req_event` (4), `rsp_prod` (8) and `rsp_event`
//! (12), followed by the entries. A request and its response share one slot
//! (a union), so an entry is as large as the larger of the two, and the ring
//! holds the largest power of two of entries that fits in the page. Indexes
//! run freely and wrap at 2^32; the slot of index `i` is `i & (size - 1)`.
//!
//! The frontend produces requests at `req_prod`; the backend consumes them,
//! answers each with one response at `rsp_prod`, and notifies the frontend
//! when `rsp_event` lies in the responses just pushed (ring.h
//! `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`). Before going idle the backend
//! sets `req_event` to one past its consumer and looks once more
//! (`RING_FINAL_CHECK_FOR_REQUESTS`), so a request pushed meanwhile is not
//! missed.
//!
//! Hostile input: `req_prod` is read from guest memory and may be anything.
//! A frontend can have at most `size` requests outstanding (requests
//! without a response); a `req_prod` further ahead is a protocol error
//! ([`RingError::IndexJump`]), and the device using the ring stops. Every
//! request is copied out of the page before it is looked at, so the
//! frontend cannot change it under the backend.

use super::{GrantAccess, GrantError};

/// Bytes of a granted page.
pub const PAGE_SIZE: usize = 4096;
/// Bytes of the ring header before the first entry (ring.h `__pad` to 64).
pub const HEADER_LEN: usize = 64;
/// Header field offsets (ring.h `struct *_sring`).
pub const REQ_PROD: usize = 0;
pub const REQ_EVENT: usize = 4;
pub const RSP_PROD: usize = 8;
pub const RSP_EVENT: usize = 12;

/// Entries of a ring whose slot (the request/response union) is
/// `entry_len` bytes: the largest power of two that fits after the header
/// (ring.h `__CONST_RING_SIZE`). 0 for an entry larger than the page.
pub const fn ring_size(entry_len: usize) -> u32 {
    if entry_len == 0 || entry_len > PAGE_SIZE - HEADER_LEN {
        return 0;
    }
    let fit = ((PAGE_SIZE - HEADER_LEN) / entry_len) as u32;
    1 << (31 - fit.leading_zeros())
}

/// Why a ring cannot be used any more.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingError {
    /// The ring page's grant failed (revoked, read-only, another domain).
    Grant(GrantError),
    /// `req_prod` claims more outstanding requests than the ring holds.
    IndexJump {
        req_prod: u32,
        rsp_prod: u32,
        size: u32,
    },
    /// The requests break the device's protocol in a way that cannot be
    /// answered request by request (what, in a sentence).
    Protocol(&'static str),
}

impl From<GrantError> for RingError {
    fn from(e: GrantError) -> Self {
        RingError::Grant(e)
    }
}

impl core::fmt::Display for RingError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            RingError::Grant(e) => write!(f, "the ring page's grant failed ({e:?})"),
            RingError::IndexJump {
                req_prod,
                rsp_prod,
                size,
            } => write!(
                f,
                "req_prod {req_prod} is more than the ring's {size} entries past rsp_prod {rsp_prod}"
            ),
            RingError::Protocol(what) => f.write_str(what),
        }
    }
}

/// The backend's private indexes of one shared ring (ring.h
/// `struct *_back_ring`).
#[derive(Debug, Clone)]
pub struct BackRing {
    gref: u32,
    entry_len: usize,
    size: u32,
    /// The next request to consume.
    req_cons: u32,
    /// Responses produced, pushed or not.
    rsp_prod_pvt: u32,
    /// `rsp_prod` as last written to the page.
    rsp_prod_pushed: u32,
}

impl BackRing {
    /// The ring in the page granted by `gref` with `entry_len`-byte slots,
    /// freshly initialised by the frontend (all indexes 0, ring.h
    /// `SHARED_RING_INIT`/`BACK_RING_INIT`).
    pub fn new(gref: u32, entry_len: usize) -> BackRing {
        BackRing {
            gref,
            entry_len,
            size: ring_size(entry_len),
            req_cons: 0,
            rsp_prod_pvt: 0,
            rsp_prod_pushed: 0,
        }
    }

    /// Entries of the ring.
    pub fn size(&self) -> u32 {
        self.size
    }

    /// The grant reference of the ring page.
    pub fn gref(&self) -> u32 {
        self.gref
    }

    fn read_u32(&self, g: &mut dyn GrantAccess, at: usize) -> Result<u32, GrantError> {
        let mut b = [0u8; 4];
        g.read_granted(self.gref, at, &mut b)?;
        Ok(u32::from_le_bytes(b))
    }

    fn write_u32(&self, g: &mut dyn GrantAccess, at: usize, v: u32) -> Result<(), GrantError> {
        g.write_granted(self.gref, at, &v.to_le_bytes())
    }

    fn slot(&self, index: u32) -> usize {
        HEADER_LEN + (index & (self.size - 1)) as usize * self.entry_len
    }

    /// Requests the frontend has produced that the backend has not
    /// consumed, after checking `req_prod` against the ring's size.
    pub fn unconsumed(&self, g: &mut dyn GrantAccess) -> Result<u32, RingError> {
        let req_prod = self.read_u32(g, REQ_PROD)?;
        // Outstanding requests (produced, not yet answered) never exceed the
        // ring: the frontend reuses a slot only after its response.
        if req_prod.wrapping_sub(self.rsp_prod_pvt) > self.size
            || req_prod.wrapping_sub(self.req_cons) > self.size
        {
            return Err(RingError::IndexJump {
                req_prod,
                rsp_prod: self.rsp_prod_pvt,
                size: self.size,
            });
        }
        Ok(req_prod.wrapping_sub(self.req_cons))
    }

    /// Copies the request `ahead` places past the consumer into `buf` (the
    /// first `entry_len` bytes) without consuming it; the caller checked
    /// `ahead < unconsumed()`.
    pub fn peek_request(
        &self,
        g: &mut dyn GrantAccess,
        ahead: u32,
        buf: &mut [u8],
    ) -> Result<(), RingError> {
        let n = buf.len().min(self.entry_len);
        let at = self.slot(self.req_cons.wrapping_add(ahead));
        g.read_granted(self.gref, at, &mut buf[..n])?;
        Ok(())
    }

    /// Consumes `n` requests (peeked before).
    pub fn consume(&mut self, n: u32) {
        self.req_cons = self.req_cons.wrapping_add(n);
    }

    /// Copies the next request into `buf` and consumes it; `Ok(false)` when
    /// none is waiting.
    pub fn next_request(
        &mut self,
        g: &mut dyn GrantAccess,
        buf: &mut [u8],
    ) -> Result<bool, RingError> {
        if self.unconsumed(g)? == 0 {
            return Ok(false);
        }
        self.peek_request(g, 0, buf)?;
        self.consume(1);
        Ok(true)
    }

    /// Writes `rsp` into the next response slot; it becomes visible to the
    /// frontend with [`BackRing::push_responses`].
    pub fn put_response(&mut self, g: &mut dyn GrantAccess, rsp: &[u8]) -> Result<(), RingError> {
        let n = rsp.len().min(self.entry_len);
        g.write_granted(self.gref, self.slot(self.rsp_prod_pvt), &rsp[..n])?;
        self.rsp_prod_pvt = self.rsp_prod_pvt.wrapping_add(1);
        Ok(())
    }

    /// Publishes the responses put since the last push (`rsp_prod`) and
    /// says whether the frontend asked to be notified of them: its
    /// `rsp_event` is in `(old rsp_prod, new rsp_prod]` (ring.h
    /// `RING_PUSH_RESPONSES_AND_CHECK_NOTIFY`).
    pub fn push_responses(&mut self, g: &mut dyn GrantAccess) -> Result<bool, RingError> {
        let (old, new) = (self.rsp_prod_pushed, self.rsp_prod_pvt);
        if old == new {
            return Ok(false);
        }
        self.write_u32(g, RSP_PROD, new)?;
        self.rsp_prod_pushed = new;
        let event = self.read_u32(g, RSP_EVENT)?;
        Ok(new.wrapping_sub(event) < new.wrapping_sub(old))
    }

    /// Whether requests wait; if none do, asks the frontend to notify at
    /// the next one (`req_event = req_cons + 1`) and looks again, so a
    /// request produced in between is seen (ring.h
    /// `RING_FINAL_CHECK_FOR_REQUESTS`).
    pub fn final_check_for_requests(&mut self, g: &mut dyn GrantAccess) -> Result<bool, RingError> {
        if self.unconsumed(g)? > 0 {
            return Ok(true);
        }
        self.write_u32(g, REQ_EVENT, self.req_cons.wrapping_add(1))?;
        Ok(self.unconsumed(g)? > 0)
    }

    /// For a backend waiting on the rest of a multi-slot request: asks for
    /// an event when a request past the `seen` unconsumed ones arrives and
    /// says whether one already did.
    pub fn wait_for_more_than(
        &mut self,
        g: &mut dyn GrantAccess,
        seen: u32,
    ) -> Result<bool, RingError> {
        let next = self.req_cons.wrapping_add(seen).wrapping_add(1);
        self.write_u32(g, REQ_EVENT, next)?;
        Ok(self.unconsumed(g)? > seen)
    }
}

#[cfg(any(test, feature = "testutil"))]
pub mod fake;

#[cfg(test)]
mod tests;
