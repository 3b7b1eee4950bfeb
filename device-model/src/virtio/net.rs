//! The virtio network device (virtio 1.2 5.1) over a [`NetBackend`], the
//! same switch port the e1000 sits on.
//!
//! One receive queue (0) and one transmit queue (1), no control queue
//! (5.1.2: it exists only with VIRTIO_NET_F_CTRL_VQ, which is not offered;
//! without VIRTIO_NET_F_CTRL_RX the device receives every frame the switch
//! forwards to it). Offered: the station address (MAC), the link status
//! (STATUS), mergeable receive buffers (MRG_RXBUF), checksum offload
//! (CSUM) and TCP segmentation offload (HOST_TSO4, HOST_TSO6).
//!
//! Every frame starts with a `struct virtio_net_hdr` (5.1.6): 12 bytes with
//! VERSION_1 or MRG_RXBUF, 10 for a legacy driver without MRG_RXBUF.
//!
//! Transmit (5.1.6.2) runs in the transmit queue's notification, at most
//! [`TX_PER_PASS`] chains a pass (the transport's service pass takes the
//! rest). Each chain's header and frame are copied out of guest memory;
//! a partial checksum (NEEDS_CSUM) is completed and a TSO packet cut into
//! segments by `net::offload`, the e1000's code, because the switch
//! carries only whole frames of at most [`MAX_FRAME_LEN`] bytes. A chain
//! the device cannot send (header short, frame shorter than an Ethernet
//! header or longer than the backend carries, offsets outside the frame, a
//! GSO type not negotiated) is returned and its frame dropped, logged.
//!
//! Receive (5.1.6.3-5.1.6.4) runs in service passes while the backend has
//! frames, at most [`RX_PER_PASS`] frames a pass: each frame, behind a
//! header with no offload flags, fills one receive chain or, with
//! MRG_RXBUF, as many as it needs (at most [`RX_BUFFERS_PER_FRAME`];
//! `num_buffers` says how many). When the driver has not posted enough the
//! chains taken are given back and the frame waits, taken from the backend
//! already, until the driver's next notification of the receive queue.
//! Every buffer is allocated with the device.

use alloc::boxed::Box;
use alloc::vec;

use guest_log::RateLimitedLog;
use log::Level;

use super::queue::Chain;
use super::{device_id, Queues, VirtioDevice};
use crate::net::offload::{fold, insert_checksum, put16, sum16, Segmenter, Tso};
use crate::net::{MacAddress, NetBackend, MAX_FRAME_LEN};

/// Feature bits (5.1.3).
pub mod feature {
    pub const CSUM: u64 = 1 << 0;
    pub const GUEST_CSUM: u64 = 1 << 1;
    pub const MAC: u64 = 1 << 5;
    pub const HOST_TSO4: u64 = 1 << 11;
    pub const HOST_TSO6: u64 = 1 << 12;
    pub const HOST_ECN: u64 = 1 << 13;
    pub const MRG_RXBUF: u64 = 1 << 15;
    pub const STATUS: u64 = 1 << 16;
    pub const CTRL_VQ: u64 = 1 << 17;
}

/// `struct virtio_net_hdr` (5.1.6): flags, gso_type and their values.
pub mod hdr {
    pub const F_NEEDS_CSUM: u8 = 1;
    pub const GSO_NONE: u8 = 0;
    pub const GSO_TCPV4: u8 = 1;
    pub const GSO_UDP: u8 = 3;
    pub const GSO_TCPV6: u8 = 4;
    pub const GSO_ECN: u8 = 0x80;
    /// Field offsets.
    pub const FLAGS: usize = 0;
    pub const GSO_TYPE: usize = 1;
    pub const HDR_LEN: usize = 2;
    pub const GSO_SIZE: usize = 4;
    pub const CSUM_START: usize = 6;
    pub const CSUM_OFFSET: usize = 8;
    pub const NUM_BUFFERS: usize = 10;
    /// The header with `num_buffers` (VERSION_1 or MRG_RXBUF), and without.
    pub const LEN: usize = 12;
    pub const LEGACY_LEN: usize = 10;
}

/// `struct virtio_net_config` (5.1.4): `mac` at 0, `status` at 6.
pub mod cfg {
    pub const MAC: usize = 0;
    pub const STATUS: usize = 6;
    pub const LEN: usize = 8;
    /// `status`: VIRTIO_NET_S_LINK_UP.
    pub const S_LINK_UP: u16 = 1;
}

/// The queues: receiveq1 and transmitq1 (5.1.2).
pub const RX_QUEUE: u16 = 0;
pub const TX_QUEUE: u16 = 1;
/// Entries of each queue.
pub const QUEUE_SIZE: u16 = 256;
/// Transmit chains taken per notification or service pass.
pub const TX_PER_PASS: u32 = 128;
/// Frames received per service pass.
pub const RX_PER_PASS: u32 = 128;
/// Receive chains one frame may fill with MRG_RXBUF.
pub const RX_BUFFERS_PER_FRAME: usize = 64;
/// The largest packet a TSO header may describe: 64 KiB (the IPv4 total
/// length's range) and an Ethernet header with an 802.1Q tag.
pub const MAX_TSO_PACKET: usize = 0x1_0000 + 18;
/// How often a halted guest's receiver looks for frames.
pub const POLL_NS: u64 = 1_000_000;

/// EtherTypes (IEEE 802.3 3.2.6, 802.1Q 9.5) and IP protocol numbers.
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86DD;
const ETHERTYPE_VLAN: u16 = 0x8100;
const IPPROTO_TCP: u32 = 6;

/// What a VM's configuration decides about a virtio-net NIC.
#[derive(Debug, Clone)]
pub struct VirtioNetConfig {
    /// The station address the configuration space holds (5.1.4).
    pub mac: MacAddress,
}

/// Why a transmit chain's frame was not sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TxDrop {
    ShortHeader(u64),
    Length(u64),
    Fault,
    GsoNotNegotiated(u8),
    GsoWithoutCsum,
    BadGso,
    CsumOffsets,
}

impl core::fmt::Display for TxDrop {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            TxDrop::ShortHeader(n) => write!(f, "a {n}-byte chain is shorter than its header"),
            TxDrop::Length(n) => write!(
                f,
                "a {n}-byte frame is shorter than an Ethernet header or longer than the link carries"
            ),
            TxDrop::Fault => write!(f, "a transmit buffer is outside guest RAM"),
            TxDrop::GsoNotNegotiated(t) => {
                write!(f, "gso_type {t:#x} uses a feature not negotiated")
            }
            TxDrop::GsoWithoutCsum => write!(f, "a GSO packet without NEEDS_CSUM"),
            TxDrop::BadGso => write!(
                f,
                "a GSO packet whose headers are not Ethernet, IP and TCP as its gso_type says"
            ),
            TxDrop::CsumOffsets => write!(f, "csum_start/csum_offset outside the frame"),
        }
    }
}

/// A virtio-net NIC.
pub struct VirtioNet {
    backend: Box<dyn NetBackend>,
    mac: MacAddress,
    /// Negotiated features, from DRIVER_OK on.
    features: u64,
    active: bool,
    /// One chain for transmit; two for receive (the one holding the header
    /// and the one being filled).
    tx_chain: Chain,
    rx_first: Chain,
    rx_more: Chain,
    /// The packet of a transmit chain, and one frame or segment of it.
    tx_packet: Box<[u8]>,
    tx_frame: Box<[u8]>,
    /// A received frame: its header and bytes; `rx_held` while it waits
    /// for receive buffers.
    rx_frame: Box<[u8]>,
    rx_held: Option<usize>,
    /// The receive queue ran out with a frame waiting: buffers the driver
    /// adds are work.
    rx_starved: bool,
    /// Chains filled by the frame being received: (head, bytes).
    rx_used: [(u16, u32); RX_BUFFERS_PER_FRAME],
    logs: Logs,
}

/// What the driver got wrong, rate-limited.
#[derive(Default)]
struct Logs {
    tx: RateLimitedLog,
    rx: RateLimitedLog,
}

impl VirtioNet {
    /// A NIC with the station address of `config` on `backend`.
    pub fn new(config: VirtioNetConfig, backend: Box<dyn NetBackend>) -> VirtioNet {
        VirtioNet {
            backend,
            mac: config.mac,
            features: 0,
            active: false,
            tx_chain: Chain::new(QUEUE_SIZE),
            rx_first: Chain::new(QUEUE_SIZE),
            rx_more: Chain::new(QUEUE_SIZE),
            tx_packet: vec![0u8; MAX_TSO_PACKET].into_boxed_slice(),
            tx_frame: vec![0u8; MAX_FRAME_LEN].into_boxed_slice(),
            rx_frame: vec![0u8; hdr::LEN + MAX_FRAME_LEN].into_boxed_slice(),
            rx_held: None,
            rx_starved: false,
            rx_used: [(0, 0); RX_BUFFERS_PER_FRAME],
            logs: Logs::default(),
        }
    }

    /// The header's length for the negotiated features (5.1.6).
    fn hdr_len(&self) -> usize {
        if self.features & (super::feature::VERSION_1 | feature::MRG_RXBUF) != 0 {
            hdr::LEN
        } else {
            hdr::LEGACY_LEN
        }
    }

    fn config_bytes(&self) -> [u8; cfg::LEN] {
        let mut c = [0u8; cfg::LEN];
        c[cfg::MAC..cfg::MAC + 6].copy_from_slice(&self.mac.0);
        let status = if self.backend.link_up() {
            cfg::S_LINK_UP
        } else {
            0
        };
        c[cfg::STATUS..cfg::STATUS + 2].copy_from_slice(&status.to_le_bytes());
        c
    }

    /// Sends the transmit queue's chains, at most [`TX_PER_PASS`].
    fn transmit(&mut self, queues: &mut Queues<'_>) {
        for _ in 0..TX_PER_PASS {
            if !queues.pop(TX_QUEUE, &mut self.tx_chain) {
                return;
            }
            if let Err(why) = self.transmit_chain(queues) {
                self.logs.tx.log(
                    Level::Warn,
                    format_args!("virtio-net {}: transmit: {why}; dropped", self.mac),
                );
            }
            // 5.1.6.2: the device writes nothing into a transmit chain.
            queues.add_used(TX_QUEUE, self.tx_chain.head(), 0);
        }
    }

    /// Sends the frame of the chain in `tx_chain`.
    fn transmit_chain(&mut self, queues: &mut Queues<'_>) -> Result<(), TxDrop> {
        let mem = queues.memory();
        let chain = &self.tx_chain;
        let hlen = self.hdr_len();
        let total = chain.readable_len();
        let Some(len) = total.checked_sub(hlen as u64) else {
            return Err(TxDrop::ShortHeader(total));
        };
        let mut h = [0u8; hdr::LEN];
        chain
            .read(mem, 0, &mut h[..hlen])
            .map_err(|_| TxDrop::Fault)?;
        let gso = h[hdr::GSO_TYPE];
        let limit = if gso == hdr::GSO_NONE {
            MAX_FRAME_LEN
        } else {
            MAX_TSO_PACKET
        };
        if len < crate::net::switch::HEADER_LEN as u64 || len > limit as u64 {
            return Err(TxDrop::Length(len));
        }
        let len = len as usize;
        chain
            .read(mem, hlen as u64, &mut self.tx_packet[..len])
            .map_err(|_| TxDrop::Fault)?;
        let le16 = |at: usize| usize::from(u16::from_le_bytes([h[at], h[at + 1]]));
        let needs_csum = h[hdr::FLAGS] & hdr::F_NEEDS_CSUM != 0;
        let csum_start = le16(hdr::CSUM_START);
        let csum_at = csum_start + le16(hdr::CSUM_OFFSET);
        if gso == hdr::GSO_NONE {
            let packet = &mut self.tx_packet[..len];
            // 5.1.6.2: the device completes the checksum from csum_start to
            // the end and stores it at csum_start + csum_offset.
            if needs_csum
                && (self.features & feature::CSUM == 0
                    || !insert_checksum(packet, csum_start, csum_at, 0, 0))
            {
                return Err(TxDrop::CsumOffsets);
            }
            self.backend.send(packet);
            return Ok(());
        }
        let tso = self.tso(gso, &h, len)?;
        let packet = &self.tx_packet[..len];
        let mut segments = Segmenter::new(tso, packet, MAX_FRAME_LEN).ok_or(TxDrop::BadGso)?;
        while let Some(n) = segments.next(packet, &mut self.tx_frame) {
            self.backend.send(&self.tx_frame[..n]);
        }
        Ok(())
    }

    /// The segmentation of a GSO packet of `len` bytes in `tx_packet`
    /// (5.1.6.2): its headers found from the Ethernet header on rather than
    /// from `hdr_len` (a hint, 5.1.6.2), and the TCP checksum field set to
    /// the pseudo-header sum without the length, which the segmenter
    /// completes per segment.
    fn tso(&mut self, gso: u8, h: &[u8; hdr::LEN], len: usize) -> Result<Tso, TxDrop> {
        let wanted = match gso {
            hdr::GSO_TCPV4 => feature::HOST_TSO4,
            hdr::GSO_TCPV6 => feature::HOST_TSO6,
            // UDP fragmentation and ECN (HOST_UFO, HOST_ECN) are not offered.
            _ => return Err(TxDrop::GsoNotNegotiated(gso)),
        };
        if self.features & wanted == 0 {
            return Err(TxDrop::GsoNotNegotiated(gso));
        }
        if h[hdr::FLAGS] & hdr::F_NEEDS_CSUM == 0 {
            return Err(TxDrop::GsoWithoutCsum);
        }
        let le16 = |at: usize| usize::from(u16::from_le_bytes([h[at], h[at + 1]]));
        let p = &mut self.tx_packet[..len];
        let be16 =
            |p: &[u8], at: usize| p.get(at..at + 2).map(|b| u16::from_be_bytes([b[0], b[1]]));
        let mut l3 = 14;
        let mut ethertype = be16(p, 12).ok_or(TxDrop::BadGso)?;
        if ethertype == ETHERTYPE_VLAN {
            l3 = 18;
            ethertype = be16(p, 16).ok_or(TxDrop::BadGso)?;
        }
        let ipv4 = gso == hdr::GSO_TCPV4;
        let l4 = le16(hdr::CSUM_START);
        let (want_type, addrs) = if ipv4 {
            (ETHERTYPE_IPV4, (l3 + 12, 8))
        } else {
            (ETHERTYPE_IPV6, (l3 + 8, 32))
        };
        let ip_ok = if ipv4 {
            // Version 4, IHL words of header ending where TCP starts, TCP.
            p.get(l3)
                .is_some_and(|&b| b >> 4 == 4 && l3 + usize::from(b & 0xF) * 4 == l4)
                && p.get(l3 + 9) == Some(&(IPPROTO_TCP as u8))
        } else {
            // Version 6; extension headers may sit between it and TCP.
            p.get(l3).is_some_and(|&b| b >> 4 == 6) && l4 >= l3 + 40
        };
        let doff = p.get(l4 + 12).map_or(0, |&b| usize::from(b >> 4) * 4);
        if ethertype != want_type
            || !ip_ok
            || le16(hdr::CSUM_OFFSET) != 16
            || doff < 20
            || l4 + doff > len
        {
            return Err(TxDrop::BadGso);
        }
        let pseudo = fold(sum16(&p[addrs.0..addrs.0 + addrs.1], IPPROTO_TCP));
        put16(p, l4 + 16, pseudo as u16);
        Ok(Tso {
            ipcss: l3,
            ipcso: l3 + 10,
            ipcse: l4 - 1,
            tucss: l4,
            tucso: l4 + 16,
            tucse: 0,
            tcp: true,
            ipv4,
            hdrlen: l4 + doff,
            mss: le16(hdr::GSO_SIZE),
            ip_csum: true,
            l4_csum: true,
        })
    }

    /// Moves frames from the backend into receive chains, at most
    /// [`RX_PER_PASS`]; stops when the driver has no room.
    fn receive(&mut self, queues: &mut Queues<'_>) {
        let hlen = self.hdr_len();
        for _ in 0..RX_PER_PASS {
            let len = match self.rx_held.take() {
                Some(len) => len,
                None => match self
                    .backend
                    .receive(&mut self.rx_frame[hdr::LEN..hdr::LEN + MAX_FRAME_LEN])
                {
                    Some(len) => len,
                    None if self.backend.frame_waiting() => continue,
                    None => return,
                },
            };
            if !self.store(queues, hlen, len) {
                self.rx_held = Some(len);
                self.rx_starved = true;
                return;
            }
        }
    }

    /// Stores the frame of `len` bytes behind a header in receive chains;
    /// false, with nothing taken, when the driver has not posted enough.
    fn store(&mut self, queues: &mut Queues<'_>, hlen: usize, len: usize) -> bool {
        let mergeable = self.features & feature::MRG_RXBUF != 0;
        // The header: no flags, no GSO, one buffer until counted (5.1.6.4).
        let start = hdr::LEN - hlen;
        let packet_len = hlen + len;
        self.rx_frame[start..hdr::LEN].fill(0);
        if hlen == hdr::LEN {
            self.rx_frame[hdr::NUM_BUFFERS..hdr::LEN].copy_from_slice(&1u16.to_le_bytes());
        }
        if !queues.pop(RX_QUEUE, &mut self.rx_first) {
            return false;
        }
        let packet = &self.rx_frame[start..start + packet_len];
        let room = self.rx_first.writable_len();
        if room < hlen as u64 || (!mergeable && room < packet_len as u64) {
            // 5.1.6.3.1: buffers too small for the header (or, without
            // MRG_RXBUF, for the frame): the frame is dropped, the chain
            // returned empty.
            self.logs.rx.log(
                Level::Warn,
                format_args!(
                    "virtio-net {}: a {room}-byte receive chain cannot hold a {packet_len}-byte frame; dropped",
                    self.mac
                ),
            );
            queues.add_used(RX_QUEUE, self.rx_first.head(), 0);
            return true;
        }
        let n = (room as usize).min(packet_len);
        let mut fault = self
            .rx_first
            .write(queues.memory(), 0, &packet[..n])
            .is_err();
        self.rx_used[0] = (self.rx_first.head(), n as u32);
        let mut count = 1;
        let mut done = n;
        while done < packet_len {
            if count == RX_BUFFERS_PER_FRAME {
                // Buffers this small are the driver's to answer for: the
                // frame is lost and the chains come back empty.
                fault = true;
                break;
            }
            if !queues.pop(RX_QUEUE, &mut self.rx_more) {
                queues.unpop(RX_QUEUE, count as u16);
                return false;
            }
            let n = (self.rx_more.writable_len() as usize).min(packet_len - done);
            fault |= self
                .rx_more
                .write(queues.memory(), 0, &packet[done..done + n])
                .is_err();
            self.rx_used[count] = (self.rx_more.head(), n as u32);
            count += 1;
            done += n;
        }
        if hlen == hdr::LEN && !fault {
            let nb = (count as u16).to_le_bytes();
            fault = self
                .rx_first
                .write(queues.memory(), hdr::NUM_BUFFERS as u64, &nb)
                .is_err();
        }
        if fault {
            self.logs.rx.log(
                Level::Warn,
                format_args!(
                    "virtio-net {}: receive buffers outside guest RAM or too small; a frame dropped",
                    self.mac
                ),
            );
        }
        for &(head, n) in &self.rx_used[..count] {
            queues.add_used(RX_QUEUE, head, if fault { 0 } else { n });
        }
        true
    }
}

impl VirtioDevice for VirtioNet {
    fn name(&self) -> &'static str {
        "virtio-net"
    }

    fn device_id(&self) -> u16 {
        device_id::NET
    }

    fn class_code(&self) -> u32 {
        // Network controller, Ethernet.
        0x02_0000
    }

    fn features(&self) -> u64 {
        feature::CSUM
            | feature::MAC
            | feature::HOST_TSO4
            | feature::HOST_TSO6
            | feature::MRG_RXBUF
            | feature::STATUS
    }

    fn queue_max_sizes(&self) -> &[u16] {
        &[QUEUE_SIZE, QUEUE_SIZE]
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

    fn activate(&mut self, features: u64) {
        self.features = features;
        self.active = true;
    }

    fn reset(&mut self) {
        self.features = 0;
        self.active = false;
        self.rx_held = None;
        self.rx_starved = false;
    }

    fn wants_buffers(&self, queue: u16) -> bool {
        queue != RX_QUEUE || self.rx_starved
    }

    fn queue_notify(&mut self, queue: u16, queues: &mut Queues<'_>) {
        match queue {
            RX_QUEUE => {
                self.rx_starved = false;
                self.receive(queues);
            }
            TX_QUEUE => self.transmit(queues),
            _ => {}
        }
    }

    fn service(&mut self, queues: &mut Queues<'_>) {
        if !self.rx_starved {
            self.receive(queues);
        }
    }

    fn next_deadline_ns(&mut self, now: u64) -> Option<u64> {
        if !self.active {
            return None;
        }
        if !self.rx_starved && (self.rx_held.is_some() || self.backend.frame_waiting()) {
            return Some(now);
        }
        Some(now.saturating_add(POLL_NS))
    }
}

#[cfg(test)]
mod tests;
