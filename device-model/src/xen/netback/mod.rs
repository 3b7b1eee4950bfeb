//! netback: a Xen virtual network interface (vif) backend over a
//! [`NetBackend`], the same backends e1000 and virtio-net use
//! (public/io/netif.h as facts).
//!
//! Transmit: the frontend (xen-netfront) posts packets on the TX ring, one
//! slot per granted piece; the first slot's `size` is the packet's length,
//! `XEN_NETTXF_more_data` chains the next slot, `XEN_NETTXF_extra_info`
//! puts extra-info slots after the first one. The backend copies the
//! pieces into a frame buffer, completes a blank checksum
//! (`XEN_NETTXF_csum_blank`, [`checksum`]), hands the frame to the backend
//! and answers every slot (extra-info slots with `XEN_NETIF_RSP_NULL`).
//! GSO is not offered (`feature-gso-tcpv4` absent), so a GSO extra or a
//! packet longer than [`MAX_FRAME_LEN`] is dropped with ERROR responses.
//!
//! Receive is rx-copy only (`feature-rx-copy` = 1): the frontend posts
//! granted buffers on the RX ring, the backend copies each frame whole into
//! one buffer at offset 0 and answers with its length. With no buffer
//! posted the frame is dropped and counted, as a NIC without receive
//! descriptors does.
//!
//! Bounds: a packet has at most [`wire::NR_SLOTS_MIN`] data slots and
//! [`MAX_EXTRAS`] extra slots (more is a protocol error that stops the
//! device, as a ring index jump does, with one log line); a packet not yet
//! wholly posted waits for the next event; at most [`TX_PER_PASS`] packets
//! and [`RX_PER_PASS`] frames a pass. Buffers are allocated with the device.
//!
//! The xenbus side is [`NetBack::publish`] and [`NetBack::frontend_changed`]
//! (see [`super::xenbus`] for wiring).

pub mod checksum;
pub mod wire;

use alloc::boxed::Box;
use alloc::vec;

use guest_log::RateLimitedLog;
use log::Level;

use super::ring::{BackRing, RingError, PAGE_SIZE};
use super::xenbus::{self, Step, XenbusKeys, XenbusState};
use super::{EventSender, EvtchnPort, GrantAccess};
use crate::net::{NetBackend, MAX_FRAME_LEN};
use wire::{status, txf, TxRequest, NR_SLOTS_MIN};

/// Packets a pass takes from the TX ring at most.
pub const TX_PER_PASS: usize = 128;
/// Frames a pass delivers (or drops) at most.
pub const RX_PER_PASS: usize = 64;
/// Extra-info slots a packet may carry (netif.h defines four types).
pub const MAX_EXTRAS: usize = 4;
/// Slots of one packet at most.
const MAX_PACKET_SLOTS: usize = NR_SLOTS_MIN + MAX_EXTRAS;

/// What the backend counted, beside the network backend's own counts.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NetBackCounters {
    pub tx_packets: u64,
    /// Malformed packets (bad grant, size, offsets, GSO) answered ERROR.
    pub tx_errors: u64,
    pub rx_packets: u64,
    /// Frames that found no posted buffer, or came while not connected.
    pub rx_dropped_no_buffer: u64,
    /// Frames whose buffer's grant failed.
    pub rx_errors: u64,
}

/// The frontend's rings and event channel, once connected.
struct Connection {
    tx: BackRing,
    rx: BackRing,
    port: EvtchnPort,
}

/// One slot of the packet being taken.
#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    req: TxRequest,
    extra: bool,
}

/// A vif backend for one frontend device.
pub struct NetBack {
    backend: Box<dyn NetBackend>,
    state: XenbusState,
    conn: Option<Connection>,
    stopped: bool,
    /// A TX pass stopped at its bound with packets left.
    tx_pending: bool,
    slots: [Slot; MAX_PACKET_SLOTS],
    frame: Box<[u8]>,
    counters: NetBackCounters,
    log: RateLimitedLog,
    ring_log: RateLimitedLog,
}

/// Why a packet cannot be taken now.
enum Take {
    /// `n` slots taken; the packet is sent (`true`) or dropped.
    Done(usize, bool),
    /// Its last slot is not posted yet.
    Incomplete,
}

impl NetBack {
    /// A vif over `backend`, not yet published.
    pub fn new(backend: Box<dyn NetBackend>) -> NetBack {
        NetBack {
            backend,
            state: XenbusState::Initialising,
            conn: None,
            stopped: false,
            tx_pending: false,
            slots: [Slot::default(); MAX_PACKET_SLOTS],
            frame: vec![0u8; MAX_FRAME_LEN].into_boxed_slice(),
            counters: NetBackCounters::default(),
            log: RateLimitedLog::new(),
            ring_log: RateLimitedLog::with_burst(1),
        }
    }

    /// A machine reset: not connected, not published (the store is
    /// rebuilt), the counters kept.
    pub fn reset(&mut self) {
        self.state = XenbusState::Initialising;
        self.conn = None;
        self.stopped = false;
        self.tx_pending = false;
    }

    pub fn state(&self) -> XenbusState {
        self.state
    }

    /// The frontend's event-channel port while connected: the port whose
    /// `EVTCHNOP_send` should reach [`NetBack::handle_event`].
    pub fn event_channel(&self) -> Option<EvtchnPort> {
        self.conn.as_ref().map(|c| c.port)
    }

    /// Whether a ring error stopped the device.
    pub fn stopped(&self) -> bool {
        self.stopped
    }

    pub fn counters(&self) -> NetBackCounters {
        self.counters
    }

    /// Whether [`NetBack::service`] has work: packets left by a bounded
    /// pass, or a frame waiting in the network backend.
    pub fn needs_service(&mut self) -> bool {
        self.tx_pending || self.backend.frame_waiting()
    }

    /// Publishes the backend's features and goes InitWait (netif.h:
    /// netfront refuses a backend without `feature-rx-copy`).
    pub fn publish(&mut self, keys: &mut dyn XenbusKeys) {
        keys.write_backend("feature-rx-copy", "1");
        keys.write_backend("feature-rx-flip", "0");
        keys.write_backend("feature-sg", "1");
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
            Step::Connect => match Self::connect(keys) {
                Ok(conn) => {
                    self.conn = Some(conn);
                    self.stopped = false;
                    self.tx_pending = false;
                    self.set_state(keys, XenbusState::Connected);
                }
                Err(why) => {
                    self.log.log(
                        Level::Warn,
                        format_args!("xen-netback: cannot connect: {why}"),
                    );
                    self.set_state(keys, XenbusState::Closed);
                }
            },
            Step::Disconnect(to) => {
                self.conn = None;
                self.tx_pending = false;
                self.set_state(keys, to);
            }
            Step::Restart => {
                self.stopped = false;
                self.publish(keys);
            }
        }
    }

    /// Reads tx-ring-ref, rx-ring-ref, event-channel and request-rx-copy.
    fn connect(keys: &dyn XenbusKeys) -> Result<Connection, &'static str> {
        let tx = xenbus::read_u32(keys, "tx-ring-ref").ok_or("no tx-ring-ref")?;
        let rx = xenbus::read_u32(keys, "rx-ring-ref").ok_or("no rx-ring-ref")?;
        // Split channels (event-channel-tx/-rx) are not offered.
        let port = xenbus::read_u32(keys, "event-channel")
            .filter(|&p| p != 0)
            .ok_or("no event-channel")?;
        if xenbus::read_u32(keys, "request-rx-copy") != Some(1) {
            return Err("request-rx-copy is not 1 (only rx-copy is offered)");
        }
        Ok(Connection {
            tx: BackRing::new(tx, wire::TX_REQUEST_LEN),
            rx: BackRing::new(rx, wire::RX_REQUEST_LEN),
            port: EvtchnPort(port),
        })
    }

    /// The frontend notified its event channel: takes posted packets and
    /// fills newly posted receive buffers.
    pub fn handle_event(&mut self, grants: &mut dyn GrantAccess, events: &mut dyn EventSender) {
        self.run(grants, events);
    }

    /// Delivers frames waiting in the network backend and goes on with
    /// packets a pass left: call on the VM's service passes while
    /// [`NetBack::needs_service`].
    pub fn service(&mut self, grants: &mut dyn GrantAccess, events: &mut dyn EventSender) {
        self.run(grants, events);
    }

    fn run(&mut self, grants: &mut dyn GrantAccess, events: &mut dyn EventSender) {
        let Some(mut conn) = self.conn.take().filter(|_| !self.stopped) else {
            self.drop_waiting_frames();
            return;
        };
        let r = self
            .tx_pass(&mut conn.tx, grants)
            .and_then(|tx| Ok(tx | self.rx_pass(&mut conn.rx, grants)?));
        match r {
            Ok(notify) => {
                if notify {
                    events.notify(conn.port);
                }
            }
            Err(e) => {
                self.ring_log.log(
                    Level::Error,
                    format_args!("xen-netback: the device stops: {e}"),
                );
                self.stopped = true;
                self.tx_pending = false;
            }
        }
        self.conn = Some(conn);
    }

    /// Frames for a vif that is not connected are dropped (no link).
    fn drop_waiting_frames(&mut self) {
        for _ in 0..RX_PER_PASS {
            if self.backend.receive(&mut self.frame).is_none() {
                return;
            }
            self.counters.rx_dropped_no_buffer += 1;
        }
    }

    fn tx_pass(&mut self, ring: &mut BackRing, g: &mut dyn GrantAccess) -> Result<bool, RingError> {
        let mut notify = false;
        let mut packets = 0;
        self.tx_pending = false;
        loop {
            if packets == TX_PER_PASS {
                self.tx_pending = true;
                return Ok(notify | ring.push_responses(g)?);
            }
            let avail = ring.unconsumed(g)? as usize;
            let taken = if avail == 0 {
                Take::Incomplete
            } else {
                self.take_packet(ring, g, avail)?
            };
            match taken {
                Take::Done(n, sent) => {
                    packets += 1;
                    ring.consume(n as u32);
                    for s in &self.slots[..n] {
                        let st = match (s.extra, sent) {
                            (true, _) => status::NULL,
                            (false, true) => status::OKAY,
                            (false, false) => status::ERROR,
                        };
                        ring.put_response(g, &wire::tx_response(s.req.id, st))?;
                    }
                }
                Take::Incomplete => {
                    notify |= ring.push_responses(g)?;
                    // Ask for an event at the next request (past the slots of
                    // a packet half posted) and look once more.
                    if ring.wait_for_more_than(g, avail as u32)? {
                        continue;
                    }
                    return Ok(notify);
                }
            }
        }
    }

    /// Peeks the slots of the packet at the consumer (`avail` posted),
    /// copies it and sends it if it is well formed.
    fn take_packet(
        &mut self,
        ring: &mut BackRing,
        g: &mut dyn GrantAccess,
        avail: usize,
    ) -> Result<Take, RingError> {
        let mut raw = [0u8; wire::TX_REQUEST_LEN];
        let mut n = 0;
        let (mut extras, mut data) = (0, 0);
        let mut gso = false;
        let mut more_extra = false;
        loop {
            if n == avail {
                return Ok(Take::Incomplete);
            }
            ring.peek_request(g, n as u32, &mut raw)?;
            let req = TxRequest::parse(&raw);
            let extra = more_extra;
            if extra {
                extras += 1;
                gso |= raw[wire::EXTRA_TYPE] == wire::EXTRA_TYPE_GSO;
                more_extra = raw[wire::EXTRA_FLAGS] & wire::EXTRA_FLAG_MORE != 0;
            } else {
                data += 1;
                more_extra = n == 0 && req.flags & txf::EXTRA_INFO != 0;
            }
            if data > NR_SLOTS_MIN || extras > MAX_EXTRAS {
                return Err(RingError::Protocol(
                    "a packet uses more than 18 data slots or 4 extra-info slots",
                ));
            }
            self.slots[n] = Slot { req, extra };
            n += 1;
            let more_data = self.slots[..n]
                .iter()
                .rev()
                .find(|s| !s.extra)
                .is_some_and(|s| s.req.flags & txf::MORE_DATA != 0);
            if !more_extra && !more_data {
                break;
            }
        }
        let sent = !gso && self.send_packet(n, g);
        if sent {
            self.counters.tx_packets += 1;
        } else {
            self.counters.tx_errors += 1;
            if gso {
                self.log.log(
                    Level::Warn,
                    format_args!("xen-netback: a GSO packet, but GSO is not offered"),
                );
            }
        }
        Ok(Take::Done(n, sent))
    }

    /// Copies the data slots of `self.slots[..n]` into the frame and sends
    /// it; `false` when it is malformed.
    fn send_packet(&mut self, n: usize, g: &mut dyn GrantAccess) -> bool {
        let first = self.slots[0].req;
        let total = usize::from(first.size);
        let rest: usize = self.slots[1..n]
            .iter()
            .filter(|s| !s.extra)
            .map(|s| usize::from(s.req.size))
            .sum();
        if !(14..=MAX_FRAME_LEN).contains(&total) || rest > total {
            self.log.log(
                Level::Warn,
                format_args!("xen-netback: a {total}-byte packet ({rest} bytes after its first slot) is not a frame"),
            );
            return false;
        }
        let mut at = 0;
        for (i, s) in self.slots[..n].iter().filter(|s| !s.extra).enumerate() {
            let len = if i == 0 {
                total - rest
            } else {
                usize::from(s.req.size)
            };
            let off = usize::from(s.req.offset);
            let r = if off + len > PAGE_SIZE {
                Err(super::GrantError::BadRange)
            } else {
                g.read_granted(s.req.gref, off, &mut self.frame[at..at + len])
            };
            if let Err(e) = r {
                let gref = s.req.gref;
                self.log.log(
                    Level::Warn,
                    format_args!(
                        "xen-netback: a transmit slot of grant {gref}, {len} bytes at {off}: {e:?}"
                    ),
                );
                return false;
            }
            at += len;
        }
        let frame = &mut self.frame[..total];
        if first.flags & txf::CSUM_BLANK != 0 && !checksum::complete(frame) {
            self.log.log(
                Level::Warn,
                format_args!(
                    "xen-netback: a blank checksum in a frame that is not IP/TCP or IP/UDP"
                ),
            );
            return false;
        }
        self.backend.send(frame);
        true
    }

    /// Delivers up to [`RX_PER_PASS`] waiting frames into posted buffers.
    fn rx_pass(&mut self, ring: &mut BackRing, g: &mut dyn GrantAccess) -> Result<bool, RingError> {
        for _ in 0..RX_PER_PASS {
            if !self.backend.frame_waiting() {
                break;
            }
            if ring.unconsumed(g)? == 0 {
                // No buffer posted: the frame is lost, as on a NIC with no
                // receive descriptors.
                if self.backend.receive(&mut self.frame).is_some() {
                    self.counters.rx_dropped_no_buffer += 1;
                }
                continue;
            }
            let Some(len) = self.backend.receive(&mut self.frame) else {
                continue;
            };
            let mut req = [0u8; wire::RX_REQUEST_LEN];
            ring.next_request(g, &mut req)?;
            let id = u16::from_le_bytes([req[wire::RX_ID], req[wire::RX_ID + 1]]);
            let gref = u32::from_le_bytes([req[4], req[5], req[6], req[7]]);
            let st = match g.write_granted(gref, 0, &self.frame[..len]) {
                Ok(()) => {
                    self.counters.rx_packets += 1;
                    len as i16
                }
                Err(e) => {
                    self.counters.rx_errors += 1;
                    self.log.log(
                        Level::Warn,
                        format_args!("xen-netback: the receive buffer of grant {gref}: {e:?}"),
                    );
                    status::ERROR
                }
            };
            ring.put_response(g, &wire::rx_response(id, 0, 0, st))?;
        }
        let notify = ring.push_responses(g)?;
        // Ask for an event when the frontend posts its next buffer.
        ring.final_check_for_requests(g)?;
        Ok(notify)
    }
}

#[cfg(test)]
mod tests;
