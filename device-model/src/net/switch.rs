//! Keel's switch: a learning bridge between the NICs of VMs and a host
//! uplink (the machine's own NIC), as IEEE 802.1D describes one.
//!
//! Every port is a [`SwitchPort`] handle that implements [`NetBackend`]: an
//! emulated NIC sits on one, and Keel's host-NIC loop uses another as the
//! uplink (pushing frames received from the wire in with `send`, pulling the
//! frames for the wire out with `receive`). A frame sent into a port is
//! forwarded (802.1D 8.7) to the port its destination was learnt on, or
//! flooded to every other port when the destination is a group address or
//! not (or no longer) in the table; a frame whose destination sits on the
//! port it came from is filtered. Source addresses are learnt (8.7.6) into a
//! table of [`MAC_TABLE_ENTRIES`] that forgets an entry after
//! [`MAC_AGEING_NS`] (the default Ageing Time of 802.1D 7.9.2, 300 s) and,
//! when full, replaces the entry seen longest ago.
//!
//! Nothing here grows with traffic: each port's receive queue is
//! [`PORT_QUEUE_FRAMES`] slots of [`MAX_FRAME_LEN`] bytes allocated when the
//! port is added; a frame is copied into a slot, and out of it into the
//! NIC's buffer. A full queue drops the frame and counts it on the port that
//! would have received it; a frame shorter than an Ethernet header (14
//! bytes) or longer than [`MAX_FRAME_LEN`] is dropped and counted on the
//! port that sent it. One port's guest cannot make another's lose anything
//! but its own share of a flood.

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use spin::Mutex;

use super::{MacAddress, NetBackend, NetCounters, MAX_FRAME_LEN};
use crate::clock::ClockHandle;

/// Ports a switch has at most: VM NICs and the uplink.
pub const SWITCH_PORTS: usize = 8;
/// Frames each port's receive queue holds.
pub const PORT_QUEUE_FRAMES: usize = 128;
/// Addresses the switch remembers.
pub const MAC_TABLE_ENTRIES: usize = 256;
/// How long a learnt address is kept without being seen again: 802.1D
/// 7.9.2's recommended Ageing Time, 300 s.
pub const MAC_AGEING_NS: u64 = 300_000_000_000;
/// An Ethernet header: destination, source, EtherType (IEEE 802.3 3.1.1).
pub const HEADER_LEN: usize = 14;

/// Why a port could not be added.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SwitchFull;

impl core::fmt::Display for SwitchFull {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "the switch has all its {SWITCH_PORTS} ports in use")
    }
}

/// A switch; clones are handles to the same one.
#[derive(Clone)]
pub struct Switch {
    inner: Arc<Mutex<Inner>>,
}

impl Switch {
    /// An empty switch; `clock` ages its address table.
    pub fn new(clock: ClockHandle) -> Self {
        Switch {
            inner: Arc::new(Mutex::new(Inner {
                clock,
                ports: Vec::with_capacity(SWITCH_PORTS),
                table: vec![Entry::EMPTY; MAC_TABLE_ENTRIES].into_boxed_slice(),
            })),
        }
    }

    /// Adds a port with an empty queue (allocated here, once).
    pub fn add_port(&self) -> Result<SwitchPort, SwitchFull> {
        let mut inner = self.inner.lock();
        let id = match inner.ports.iter().position(|p| !p.attached) {
            Some(free) => {
                let port = &mut inner.ports[free];
                port.attached = true;
                port.queue.clear();
                port.counters = NetCounters::default();
                free
            }
            None if inner.ports.len() < SWITCH_PORTS => {
                inner.ports.push(PortState::new());
                inner.ports.len() - 1
            }
            None => return Err(SwitchFull),
        };
        Ok(SwitchPort {
            inner: self.inner.clone(),
            id,
        })
    }

    /// The port an address was last seen on, if the table still holds it.
    pub fn lookup(&self, mac: MacAddress) -> Option<usize> {
        let inner = self.inner.lock();
        let now = inner.clock.now_ns();
        inner
            .find(mac, now)
            .map(|i| usize::from(inner.table[i].port))
    }
}

/// One port of a [`Switch`]: what a NIC (or the uplink) sends goes into the
/// switch, and what the switch forwards to it waits in its queue.
pub struct SwitchPort {
    inner: Arc<Mutex<Inner>>,
    id: usize,
}

impl SwitchPort {
    /// The port's number on its switch.
    pub fn id(&self) -> usize {
        self.id
    }
}

impl NetBackend for SwitchPort {
    fn send(&mut self, frame: &[u8]) {
        self.inner.lock().forward(self.id, frame);
    }

    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        let mut inner = self.inner.lock();
        let port = &mut inner.ports[self.id];
        let len = port.queue.pop(buf)?;
        match len {
            Ok(len) => {
                port.counters.frames_received += 1;
                Some(len)
            }
            Err(()) => {
                port.counters.dropped += 1;
                None
            }
        }
    }

    fn frame_waiting(&mut self) -> bool {
        self.inner.lock().ports[self.id].queue.count != 0
    }

    fn counters(&self) -> NetCounters {
        self.inner.lock().ports[self.id].counters
    }
}

impl Drop for SwitchPort {
    /// The NIC is gone: its queue is emptied, its addresses forgotten and
    /// the slot is free for another port.
    fn drop(&mut self) {
        let mut inner = self.inner.lock();
        let id = self.id;
        inner.ports[id].attached = false;
        inner.ports[id].queue.clear();
        for e in inner
            .table
            .iter_mut()
            .filter(|e| e.valid && e.port as usize == id)
        {
            *e = Entry::EMPTY;
        }
    }
}

struct Inner {
    clock: ClockHandle,
    ports: Vec<PortState>,
    table: Box<[Entry]>,
}

#[derive(Clone, Copy)]
struct Entry {
    valid: bool,
    mac: MacAddress,
    port: u8,
    seen_ns: u64,
}

impl Entry {
    const EMPTY: Entry = Entry {
        valid: false,
        mac: MacAddress([0; 6]),
        port: 0,
        seen_ns: 0,
    };
}

impl Inner {
    /// The live table entry for `mac`.
    fn find(&self, mac: MacAddress, now: u64) -> Option<usize> {
        self.table
            .iter()
            .position(|e| e.valid && e.mac == mac && now.saturating_sub(e.seen_ns) < MAC_AGEING_NS)
    }

    /// 802.1D 8.7.6: the source address of a frame is on the port it came in by.
    fn learn(&mut self, mac: MacAddress, port: usize, now: u64) {
        let slot = self
            .table
            .iter()
            .position(|e| e.valid && e.mac == mac)
            .or_else(|| self.table.iter().position(|e| !e.valid))
            .unwrap_or_else(|| {
                // Full: replace the entry seen longest ago (an aged one first).
                let mut oldest = 0;
                for (i, e) in self.table.iter().enumerate() {
                    if e.seen_ns < self.table[oldest].seen_ns {
                        oldest = i;
                    }
                }
                oldest
            });
        self.table[slot] = Entry {
            valid: true,
            mac,
            port: port as u8,
            seen_ns: now,
        };
    }

    fn forward(&mut self, from: usize, frame: &[u8]) {
        if !(HEADER_LEN..=MAX_FRAME_LEN).contains(&frame.len()) {
            self.ports[from].counters.dropped += 1;
            return;
        }
        self.ports[from].counters.frames_sent += 1;
        let now = self.clock.now_ns();
        let (Some(dst), Some(src)) = (MacAddress::destination(frame), MacAddress::source(frame))
        else {
            return;
        };
        // A group address is never a source (IEEE 802 8.2): not learnt.
        if !src.is_multicast() {
            self.learn(src, from, now);
        }
        let known = if dst.is_multicast() {
            None
        } else {
            self.find(dst, now).map(|i| usize::from(self.table[i].port))
        };
        match known {
            Some(to) if to == from => {} // filtered: already on its segment
            Some(to) => self.deliver(to, frame),
            None => {
                for to in 0..self.ports.len() {
                    if to != from {
                        self.deliver(to, frame);
                    }
                }
            }
        }
    }

    fn deliver(&mut self, to: usize, frame: &[u8]) {
        let port = &mut self.ports[to];
        if port.attached && !port.queue.push(frame) {
            port.counters.dropped += 1;
        }
    }
}

struct PortState {
    attached: bool,
    queue: FrameQueue,
    counters: NetCounters,
}

impl PortState {
    fn new() -> Self {
        PortState {
            attached: true,
            queue: FrameQueue::new(),
            counters: NetCounters::default(),
        }
    }
}

/// A ring of [`PORT_QUEUE_FRAMES`] frame slots, each [`MAX_FRAME_LEN`] bytes.
struct FrameQueue {
    data: Box<[u8]>,
    lens: Box<[u16]>,
    head: usize,
    count: usize,
}

impl FrameQueue {
    fn new() -> Self {
        FrameQueue {
            data: vec![0; PORT_QUEUE_FRAMES * MAX_FRAME_LEN].into_boxed_slice(),
            lens: vec![0; PORT_QUEUE_FRAMES].into_boxed_slice(),
            head: 0,
            count: 0,
        }
    }

    fn clear(&mut self) {
        self.head = 0;
        self.count = 0;
    }

    /// Copies `frame` (at most MAX_FRAME_LEN bytes) into the next free slot;
    /// `false` when every slot is taken.
    fn push(&mut self, frame: &[u8]) -> bool {
        if self.count == PORT_QUEUE_FRAMES || frame.len() > MAX_FRAME_LEN {
            return false;
        }
        let slot = (self.head + self.count) % PORT_QUEUE_FRAMES;
        let at = slot * MAX_FRAME_LEN;
        self.data[at..at + frame.len()].copy_from_slice(frame);
        self.lens[slot] = frame.len() as u16;
        self.count += 1;
        true
    }

    /// Takes the oldest frame: its length once copied into `buf`, `Err`
    /// when it does not fit (the frame is gone either way), `None` when empty.
    fn pop(&mut self, buf: &mut [u8]) -> Option<Result<usize, ()>> {
        if self.count == 0 {
            return None;
        }
        let slot = self.head;
        self.head = (self.head + 1) % PORT_QUEUE_FRAMES;
        self.count -= 1;
        let len = usize::from(self.lens[slot]);
        let Some(dst) = buf.get_mut(..len) else {
            return Some(Err(()));
        };
        let at = slot * MAX_FRAME_LEN;
        dst.copy_from_slice(&self.data[at..at + len]);
        Some(Ok(len))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;

    const A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xa];
    const B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xb];
    const C: [u8; 6] = [0x02, 0, 0, 0, 0, 0xc];

    /// A frame from `src` to `dst` of `len` bytes, its payload bytes `tag`.
    fn frame(dst: [u8; 6], src: [u8; 6], len: usize, tag: u8) -> Vec<u8> {
        let mut f = vec![tag; len];
        f[..6].copy_from_slice(&dst);
        f[6..12].copy_from_slice(&src);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f
    }

    fn take(port: &mut SwitchPort) -> Option<Vec<u8>> {
        let mut buf = [0u8; MAX_FRAME_LEN];
        port.receive(&mut buf).map(|n| buf[..n].to_vec())
    }

    fn switch_with(n: usize) -> (Arc<FakeClock>, Switch, Vec<SwitchPort>) {
        let clock = FakeClock::new(1_000);
        let sw = Switch::new(clock.clone());
        let ports = (0..n).map(|_| sw.add_port().unwrap()).collect();
        (clock, sw, ports)
    }

    #[test]
    fn unknown_unicast_and_broadcast_flood_to_every_other_port() {
        let (_, _, mut p) = switch_with(3);
        let to_b = frame(B, A, 60, 1);
        p[0].send(&to_b);
        assert_eq!(take(&mut p[1]).as_deref(), Some(&to_b[..]));
        assert_eq!(take(&mut p[2]).as_deref(), Some(&to_b[..]));
        assert_eq!(take(&mut p[0]), None, "never back to the sender");
        let bcast = frame([0xff; 6], B, 64, 2);
        p[1].send(&bcast);
        assert_eq!(take(&mut p[0]).as_deref(), Some(&bcast[..]));
        assert_eq!(take(&mut p[2]).as_deref(), Some(&bcast[..]));
        assert_eq!(take(&mut p[1]), None);
        let mcast = frame([0x01, 0x00, 0x5e, 0, 0, 0xfb], C, 80, 3);
        p[2].send(&mcast);
        assert!(take(&mut p[0]).is_some() && take(&mut p[1]).is_some());
    }

    #[test]
    fn learnt_addresses_are_forwarded_to_their_port_only() {
        let (_, sw, mut p) = switch_with(3);
        p[1].send(&frame([0xff; 6], B, 60, 0)); // B is on port 1
        let _ = (take(&mut p[0]), take(&mut p[2]));
        assert_eq!(sw.lookup(MacAddress(B)), Some(1));
        let to_b = frame(B, A, 100, 7);
        p[0].send(&to_b);
        assert_eq!(take(&mut p[1]).as_deref(), Some(&to_b[..]));
        assert_eq!(take(&mut p[2]), None, "known unicast is not flooded");
        // A frame to an address on its own port is filtered.
        p[1].send(&frame(B, C, 60, 0));
        assert!(take(&mut p[0]).is_none() && take(&mut p[2]).is_none());
        // A station that moves is learnt on its new port.
        p[2].send(&frame(A, B, 60, 0));
        assert_eq!(sw.lookup(MacAddress(B)), Some(2));
        // Group source addresses are never learnt.
        p[0].send(&frame(A, [0x03, 0, 0, 0, 0, 1], 60, 0));
        assert_eq!(sw.lookup(MacAddress([0x03, 0, 0, 0, 0, 1])), None);
    }

    #[test]
    fn entries_age_out_after_the_ageing_time() {
        let (clock, sw, mut p) = switch_with(3);
        p[1].send(&frame([0xff; 6], B, 60, 0));
        let _ = (take(&mut p[0]), take(&mut p[2]));
        clock.advance(MAC_AGEING_NS - 1);
        assert_eq!(sw.lookup(MacAddress(B)), Some(1));
        clock.advance(1);
        assert_eq!(sw.lookup(MacAddress(B)), None);
        // Unknown again: flooded.
        p[0].send(&frame(B, A, 60, 0));
        assert!(take(&mut p[1]).is_some() && take(&mut p[2]).is_some());
    }

    #[test]
    fn a_full_table_replaces_the_entry_seen_longest_ago() {
        let (clock, sw, mut p) = switch_with(2);
        for i in 0..MAC_TABLE_ENTRIES as u32 + 1 {
            let mut src = [0x02, 0, 0, 0, 0, 0];
            src[2..6].copy_from_slice(&i.to_be_bytes());
            p[0].send(&frame(A, src, 60, 0));
            let _ = take(&mut p[1]);
            clock.advance(1);
        }
        assert_eq!(sw.lookup(MacAddress([0x02, 0, 0, 0, 0, 0])), None);
        assert_eq!(sw.lookup(MacAddress([0x02, 0, 0, 0, 0, 1])), Some(0));
        let last = MAC_TABLE_ENTRIES as u32;
        let mut src = [0x02, 0, 0, 0, 0, 0];
        src[2..6].copy_from_slice(&last.to_be_bytes());
        assert_eq!(sw.lookup(MacAddress(src)), Some(0));
    }

    #[test]
    fn a_full_queue_drops_and_counts_on_the_receiving_port() {
        let (_, _, mut p) = switch_with(2);
        for i in 0..PORT_QUEUE_FRAMES + 5 {
            p[0].send(&frame(B, A, 60, i as u8));
        }
        assert_eq!(p[0].counters().frames_sent, PORT_QUEUE_FRAMES as u64 + 5);
        assert_eq!(p[1].counters().dropped, 5);
        // The queue kept the oldest frames, in order.
        for i in 0..PORT_QUEUE_FRAMES {
            assert!(p[1].frame_waiting());
            assert_eq!(take(&mut p[1]).unwrap()[20], i as u8);
        }
        assert!(!p[1].frame_waiting());
        assert_eq!(p[1].counters().frames_received, PORT_QUEUE_FRAMES as u64);
    }

    #[test]
    fn runts_and_giants_are_dropped_and_counted_on_the_sender() {
        let (_, _, mut p) = switch_with(2);
        p[0].send(&frame(B, A, HEADER_LEN, 0));
        assert_eq!(take(&mut p[1]).map(|f| f.len()), Some(HEADER_LEN));
        p[0].send(&frame(B, A, HEADER_LEN, 0)[..HEADER_LEN - 1]);
        p[0].send(&[]);
        p[0].send(&frame(B, A, MAX_FRAME_LEN + 1, 0));
        assert_eq!(take(&mut p[1]), None);
        p[0].send(&frame(B, A, MAX_FRAME_LEN, 9));
        assert_eq!(take(&mut p[1]).map(|f| f.len()), Some(MAX_FRAME_LEN));
        let c = p[0].counters();
        assert_eq!((c.frames_sent, c.dropped), (2, 3));
    }

    #[test]
    fn a_frame_longer_than_the_nics_buffer_is_dropped_and_counted() {
        let (_, _, mut p) = switch_with(2);
        p[0].send(&frame(B, A, 200, 0));
        p[0].send(&frame(B, A, 60, 0));
        let mut small = [0u8; 100];
        assert_eq!(p[1].receive(&mut small), None);
        assert_eq!(p[1].receive(&mut small), Some(60));
        let c = p[1].counters();
        assert_eq!((c.frames_received, c.dropped), (1, 1));
    }

    #[test]
    fn ports_are_bounded_and_a_dropped_port_frees_its_slot_and_addresses() {
        let (_, sw, mut p) = switch_with(SWITCH_PORTS);
        assert_eq!(sw.add_port().err(), Some(SwitchFull));
        p[3].send(&frame([0xff; 6], C, 60, 0));
        assert_eq!(sw.lookup(MacAddress(C)), Some(3));
        let gone = p.remove(3);
        drop(gone);
        assert_eq!(sw.lookup(MacAddress(C)), None);
        let mut again = sw.add_port().unwrap();
        assert_eq!(again.id(), 3);
        assert!(!again.frame_waiting(), "a new port starts empty");
        p[0].send(&frame([0xff; 6], A, 60, 0));
        assert!(take(&mut again).is_some());
    }
}
