//! virtio-net against virtio 1.2 5.1, through the PCI transport, with a
//! backend whose frames the test puts in and takes out. Checksums are
//! recomputed here, apart from the device's code.

use super::super::pci::{common, Transport, NOTIFY_CFG};
use super::super::queue::{VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE};
use super::super::test_driver::*;
use super::super::{feature as vfeature, status};
use super::*;
use crate::net::NetCounters;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::vec::Vec;
use std::sync::Mutex as StdMutex;

const MAC: MacAddress = MacAddress([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]);
const PEER: [u8; 6] = [0x52, 0x54, 0x00, 0, 0, 1];

#[derive(Default)]
struct Wire {
    incoming: VecDeque<Vec<u8>>,
    sent: Vec<Vec<u8>>,
}

/// A backend whose frames the test puts in and takes out.
#[derive(Clone, Default)]
struct TestWire(Arc<StdMutex<Wire>>);

impl NetBackend for TestWire {
    fn send(&mut self, frame: &[u8]) {
        self.0.lock().unwrap().sent.push(frame.to_vec());
    }
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        let f = self.0.lock().unwrap().incoming.pop_front()?;
        buf.get_mut(..f.len())?.copy_from_slice(&f);
        Some(f.len())
    }
    fn frame_waiting(&mut self) -> bool {
        !self.0.lock().unwrap().incoming.is_empty()
    }
    fn counters(&self) -> NetCounters {
        NetCounters::default()
    }
}

/// One queue's rings and the driver's place in them.
struct Ring {
    queue: u16,
    desc: u64,
    avail: u64,
    used: u64,
    avail_idx: u16,
    used_seen: u16,
}

const RX: (u64, u64, u64) = (0x10_0000, 0x11_0000, 0x12_0000);
const TX: (u64, u64, u64) = (0x13_0000, 0x14_0000, 0x15_0000);
/// Receive buffers, 4 KiB apart; transmit data.
const RX_BUFS: u64 = 0x40_0000;
const TX_BUFS: u64 = 0x80_0000;

struct Net {
    d: Driver,
    wire: TestWire,
    rx: Ring,
    tx: Ring,
}

fn net_with(features: u64) -> Net {
    let wire = TestWire::default();
    let dev = VirtioNet::new(VirtioNetConfig { mac: MAC }, Box::new(wire.clone()));
    let mut d = machine_with(dev, Transport::Modern);
    assert!(d.negotiate(vfeature::VERSION_1 | features));
    d.setup_queue_at(RX_QUEUE, QUEUE_SIZE, 0, RX);
    d.setup_queue_at(TX_QUEUE, QUEUE_SIZE, 0, TX);
    let s = d.status() | status::DRIVER_OK;
    d.common_write(common::DEVICE_STATUS, 1, u64::from(s));
    let ring = |queue, (desc, avail, used)| Ring {
        queue,
        desc,
        avail,
        used,
        avail_idx: 0,
        used_seen: 0,
    };
    Net {
        d,
        wire,
        rx: ring(RX_QUEUE, RX),
        tx: ring(TX_QUEUE, TX),
    }
}

fn net() -> Net {
    net_with(
        feature::MAC
            | feature::STATUS
            | feature::CSUM
            | feature::HOST_TSO4
            | feature::HOST_TSO6
            | feature::MRG_RXBUF,
    )
}

impl Net {
    /// Makes the chain of `bufs` (address, length, device-writable)
    /// starting at descriptor `head` available on `ring`.
    fn offer(&mut self, which: u16, head: u16, bufs: &[(u64, u32, bool)]) {
        let ring = if which == RX_QUEUE {
            &mut self.rx
        } else {
            &mut self.tx
        };
        for (i, &(addr, len, w)) in bufs.iter().enumerate() {
            let i = i as u16;
            let next = if usize::from(i) + 1 < bufs.len() {
                VIRTQ_DESC_F_NEXT
            } else {
                0
            };
            let flags = next | if w { VIRTQ_DESC_F_WRITE } else { 0 };
            self.d
                .desc(ring.desc, head + i, addr, len, flags, head + i + 1);
        }
        let slot = u64::from(ring.avail_idx % QUEUE_SIZE);
        self.d
            .ram
            .write_obj(ring.avail + 4 + 2 * slot, head)
            .unwrap();
        ring.avail_idx = ring.avail_idx.wrapping_add(1);
        self.d
            .ram
            .write_obj(ring.avail + 2, ring.avail_idx)
            .unwrap();
    }

    fn notify(&mut self, queue: u16) {
        self.d.write(
            MODERN + NOTIFY_CFG + 4 * u64::from(queue),
            2,
            u64::from(queue),
        );
    }

    fn used(&mut self, which: u16) -> Vec<(u32, u32)> {
        let ram = self.d.ram.clone();
        let ring = if which == RX_QUEUE {
            &mut self.rx
        } else {
            &mut self.tx
        };
        let idx: u16 = ram.read_obj(ring.used + 2).unwrap();
        let mut out = Vec::new();
        while ring.used_seen != idx {
            let at = ring.used + 4 + 8 * u64::from(ring.used_seen % QUEUE_SIZE);
            out.push((ram.read_obj(at).unwrap(), ram.read_obj(at + 4).unwrap()));
            ring.used_seen = ring.used_seen.wrapping_add(1);
        }
        let _ = ring.queue;
        out
    }

    /// Posts `n` receive buffers of `len` bytes, one descriptor each.
    fn post_rx(&mut self, first: u16, n: u16, len: u32) {
        for i in first..first + n {
            self.offer(RX_QUEUE, i, &[(RX_BUFS + 0x1000 * u64::from(i), len, true)]);
        }
    }

    fn incoming(&self, frame: &[u8]) {
        self.wire
            .0
            .lock()
            .unwrap()
            .incoming
            .push_back(frame.to_vec());
    }

    fn sent(&self) -> Vec<Vec<u8>> {
        core::mem::take(&mut self.wire.0.lock().unwrap().sent)
    }

    /// Sends `header` and `packet` as one chain of two buffers from
    /// descriptor `head`.
    fn transmit(&mut self, head: u16, header: &[u8], packet: &[u8]) -> Vec<(u32, u32)> {
        let at = TX_BUFS + 0x2_0000 * u64::from(head);
        self.d.ram.write(at, header).unwrap();
        self.d.ram.write(at + 0x100, packet).unwrap();
        self.offer(
            TX_QUEUE,
            head,
            &[
                (at, header.len() as u32, false),
                (at + 0x100, packet.len() as u32, false),
            ],
        );
        self.notify(TX_QUEUE);
        self.used(TX_QUEUE)
    }
}

/// A virtio_net_hdr of 12 bytes.
fn header(flags: u8, gso: u8, gso_size: u16, csum_start: u16, csum_offset: u16) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = flags;
    h[1] = gso;
    h[4..6].copy_from_slice(&gso_size.to_le_bytes());
    h[6..8].copy_from_slice(&csum_start.to_le_bytes());
    h[8..10].copy_from_slice(&csum_offset.to_le_bytes());
    h
}

fn frame(len: usize, seed: u8) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| (i as u8).wrapping_mul(seed)).collect();
    f[..6].copy_from_slice(&MAC.0);
    f[6..12].copy_from_slice(&PEER);
    f[12..14].copy_from_slice(&[0x88, 0xB5]);
    f
}

/// The one's complement sum of 16-bit big-endian words, folded (RFC 1071),
/// written apart from the device's.
fn ones_sum(parts: &[&[u8]]) -> u16 {
    let mut s: u64 = 0;
    for p in parts {
        for (i, b) in p.iter().enumerate() {
            s += if i % 2 == 0 {
                u64::from(*b) << 8
            } else {
                u64::from(*b)
            };
        }
    }
    while s > 0xFFFF {
        s = (s & 0xFFFF) + (s >> 16);
    }
    s as u16
}

/// An Ethernet + IPv4 + TCP packet with `payload` bytes; the TCP checksum
/// field holds what Linux leaves for CHECKSUM_PARTIAL: the pseudo-header
/// sum with the whole TCP length.
fn tcp4_packet(payload: usize, flags: u8) -> Vec<u8> {
    let mut p = vec![0u8; 54 + payload];
    p[..6].copy_from_slice(&PEER);
    p[6..12].copy_from_slice(&MAC.0);
    p[12..14].copy_from_slice(&[0x08, 0x00]);
    let total = (p.len() - 14) as u16;
    let ip = &mut p[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    ip[4..6].copy_from_slice(&0x4321u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[10, 0, 2, 15]);
    ip[16..20].copy_from_slice(&[10, 0, 2, 2]);
    let tcp_len = (payload + 20) as u16;
    let tcp = &mut p[34..54];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&7000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    let l = tcp_len.to_be_bytes();
    let pseudo = ones_sum(&[&[10, 0, 2, 15, 10, 0, 2, 2, 0, 6, l[0], l[1]]]);
    p[50..52].copy_from_slice(&pseudo.to_be_bytes());
    for (i, b) in p[54..].iter_mut().enumerate() {
        *b = (i * 13 + 1) as u8;
    }
    p
}

/// Whether the TCP checksum of an IPv4 segment verifies: the sum over the
/// pseudo-header and the TCP segment is all ones (RFC 793 3.1).
fn tcp4_checksum_ok(s: &[u8]) -> bool {
    let tcp = &s[34..];
    let l = (tcp.len() as u16).to_be_bytes();
    let mut pseudo = Vec::from(&s[26..34]);
    pseudo.extend([0, 6, l[0], l[1]]);
    ones_sum(&[&pseudo, tcp]) == 0xFFFF
}

#[test]
fn the_configuration_holds_the_mac_and_link_up_and_the_features_are_offered() {
    let wire = TestWire::default();
    let dev = VirtioNet::new(VirtioNetConfig { mac: MAC }, Box::new(wire));
    let mut d = machine_with(dev, Transport::Modern);
    // 4.1.2: a modern network device is 1AF4:1041, class network.
    assert_eq!(d.cfg_read(0x00, 4), 0x1041_1AF4);
    assert_eq!(d.cfg_read(0x08, 4) >> 8, 0x02_0000);
    for (i, b) in MAC.0.iter().enumerate() {
        assert_eq!(d.device_cfg(cfg::MAC as u64 + i as u64, 1), u64::from(*b));
    }
    assert_eq!(
        d.device_cfg(cfg::STATUS as u64, 2),
        1,
        "VIRTIO_NET_S_LINK_UP"
    );
    let f = d.device_features();
    for bit in [
        feature::MAC,
        feature::STATUS,
        feature::CSUM,
        feature::MRG_RXBUF,
        feature::HOST_TSO4,
        feature::HOST_TSO6,
    ] {
        assert_ne!(f & bit, 0, "{bit:#x} offered");
    }
    // 5.1.2: no control queue unless VIRTIO_NET_F_CTRL_VQ; two queues.
    assert_eq!(f & (feature::CTRL_VQ | feature::GUEST_CSUM), 0);
    assert_eq!(d.common_read(common::NUM_QUEUES, 2), 2);
}

#[test]
fn a_received_frame_lands_behind_a_header_with_num_buffers_1() {
    let mut n = net();
    n.post_rx(0, 4, 2048);
    n.notify(RX_QUEUE);
    let f = frame(1514, 3);
    n.incoming(&f);
    n.d.pc.service();
    let used = n.used(RX_QUEUE);
    assert_eq!(used, [(0, 12 + 1514)]);
    let mut got = vec![0u8; 12 + 1514];
    n.d.ram.read(RX_BUFS, &mut got).unwrap();
    assert_eq!(&got[..10], &[0; 10], "no flags, no GSO (5.1.6.4)");
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 1, "num_buffers");
    assert_eq!(&got[12..], &f[..]);
}

#[test]
fn a_frame_larger_than_one_buffer_spans_mergeable_buffers() {
    let mut n = net();
    n.post_rx(0, 4, 600);
    n.notify(RX_QUEUE);
    let f = frame(1400, 5);
    n.incoming(&f);
    n.d.pc.service();
    // 12 + 1400 = 1412 bytes: 600 + 600 + 212.
    assert_eq!(n.used(RX_QUEUE), [(0, 600), (1, 600), (2, 212)]);
    let mut got = Vec::new();
    for (i, len) in [(0u64, 600usize), (1, 600), (2, 212)] {
        let mut b = vec![0u8; len];
        n.d.ram.read(RX_BUFS + 0x1000 * i, &mut b).unwrap();
        got.extend(b);
    }
    assert_eq!(u16::from_le_bytes([got[10], got[11]]), 3, "num_buffers");
    assert_eq!(&got[12..], &f[..]);
}

#[test]
fn a_frame_waits_when_the_driver_posted_too_few_buffers_then_lands_whole() {
    let mut n = net();
    n.post_rx(0, 1, 600);
    n.notify(RX_QUEUE);
    let f = frame(1000, 7);
    n.incoming(&f);
    n.d.pc.service();
    assert_eq!(n.used(RX_QUEUE), [], "one 600-byte buffer cannot hold it");
    // The driver adds a buffer and notifies: the frame lands in both, the
    // first buffer taken again.
    n.post_rx(1, 1, 600);
    n.notify(RX_QUEUE);
    assert_eq!(n.used(RX_QUEUE), [(0, 600), (1, 412)]);
    let mut got = vec![0u8; 1012];
    n.d.ram.read(RX_BUFS, &mut got[..600]).unwrap();
    n.d.ram.read(RX_BUFS + 0x1000, &mut got[600..]).unwrap();
    assert_eq!(&got[12..], &f[..]);
}

#[test]
fn without_mrg_rxbuf_a_too_small_buffer_is_returned_empty_and_the_frame_dropped() {
    let mut n = net_with(feature::MAC);
    n.post_rx(0, 2, 100);
    n.notify(RX_QUEUE);
    n.incoming(&frame(200, 1));
    n.incoming(&frame(60, 2));
    n.d.pc.service();
    // 5.1.6.3: without MRG_RXBUF the header is still 12 bytes with VERSION_1.
    assert_eq!(n.used(RX_QUEUE), [(0, 0), (1, 72)]);
}

#[test]
fn receive_is_bounded_per_pass() {
    let mut n = net();
    n.post_rx(0, 255, 2048);
    n.notify(RX_QUEUE);
    for i in 0..200 {
        n.incoming(&frame(64, i as u8));
    }
    n.d.pc.service();
    assert_eq!(n.used(RX_QUEUE).len(), RX_PER_PASS as usize);
    n.d.pc.service();
    assert_eq!(n.used(RX_QUEUE).len(), 200 - RX_PER_PASS as usize);
}

#[test]
fn a_plain_frame_is_sent_as_it_is() {
    let mut n = net();
    let f = frame(100, 9);
    let used = n.transmit(0, &header(0, 0, 0, 0, 0), &f);
    assert_eq!(used, [(0, 0)], "5.1.6.2: nothing written");
    assert_eq!(n.sent(), [f]);
}

#[test]
fn needs_csum_completes_the_tcp_checksum_from_csum_start() {
    let mut n = net();
    let p = tcp4_packet(300, 0x18);
    let used = n.transmit(0, &header(hdr::F_NEEDS_CSUM, 0, 0, 34, 16), &p);
    assert_eq!(used.len(), 1);
    let sent = n.sent();
    assert_eq!(sent.len(), 1);
    assert!(tcp4_checksum_ok(&sent[0]), "checksum verifies");
    assert_eq!(&sent[0][..50], &p[..50]);
    assert_eq!(&sent[0][52..], &p[52..]);
}

#[test]
fn tso4_cuts_mss_segments_with_fixed_lengths_ids_sequence_numbers_and_checksums() {
    let mut n = net();
    const PAYLOAD: usize = 5000;
    const MSS: usize = 1448;
    let p = tcp4_packet(PAYLOAD, 0x10 | 0x08 | 0x01); // ACK PSH FIN
                                                      // hdr_len deliberately wrong: it is only a hint (5.1.6.2).
    let mut h = header(hdr::F_NEEDS_CSUM, hdr::GSO_TCPV4, MSS as u16, 34, 16);
    h[2..4].copy_from_slice(&1000u16.to_le_bytes());
    n.transmit(0, &h, &p);
    let sent = n.sent();
    let sizes: Vec<usize> = sent.iter().map(|s| s.len() - 54).collect();
    assert_eq!(sizes, [1448, 1448, 1448, 656]);
    for (k, s) in sent.iter().enumerate() {
        let ip = &s[14..34];
        let last = k == sent.len() - 1;
        assert_eq!(u16::from_be_bytes([ip[2], ip[3]]) as usize, s.len() - 14);
        assert_eq!(u16::from_be_bytes([ip[4], ip[5]]), 0x4321 + k as u16);
        assert_eq!(ones_sum(&[ip]), 0xFFFF, "IP header checksum, segment {k}");
        let seq = u32::from_be_bytes(s[38..42].try_into().unwrap());
        assert_eq!(seq, 7000 + (k * MSS) as u32);
        assert_eq!(s[47] & 0x09 != 0, last, "FIN, PSH on the last only");
        assert!(tcp4_checksum_ok(s), "TCP checksum of segment {k}");
        assert_eq!(&s[54..], &p[54 + k * MSS..54 + k * MSS + s.len() - 54]);
    }
}

#[test]
fn tso6_fixes_the_payload_length_and_the_checksum_over_the_ipv6_pseudo_header() {
    let mut n = net();
    const PAYLOAD: usize = 3000;
    const MSS: usize = 1400;
    let mut p = vec![0u8; 14 + 40 + 20 + PAYLOAD];
    p[..6].copy_from_slice(&PEER);
    p[6..12].copy_from_slice(&MAC.0);
    p[12..14].copy_from_slice(&[0x86, 0xDD]);
    p[14] = 0x60;
    p[18..20].copy_from_slice(&((20 + PAYLOAD) as u16).to_be_bytes());
    p[20] = 6;
    p[21] = 64;
    for i in 0..32 {
        p[22 + i] = (0xFE + i) as u8;
    }
    p[54 + 4..54 + 8].copy_from_slice(&1u32.to_be_bytes());
    p[54 + 12] = 5 << 4;
    p[54 + 13] = 0x10;
    for (i, b) in p[74..].iter_mut().enumerate() {
        *b = (i * 3) as u8;
    }
    n.transmit(
        0,
        &header(hdr::F_NEEDS_CSUM, hdr::GSO_TCPV6, MSS as u16, 54, 16),
        &p,
    );
    let sent = n.sent();
    assert_eq!(sent.len(), 3);
    for s in &sent {
        let tcp = &s[54..];
        assert_eq!(u16::from_be_bytes([s[18], s[19]]) as usize, tcp.len());
        // RFC 8200 8.1: source, destination, upper-layer length (32 bits),
        // zeros and next header.
        let l = (tcp.len() as u32).to_be_bytes();
        let mut pseudo = Vec::from(&s[22..54]);
        pseudo.extend(l);
        pseudo.extend([0, 0, 0, 6]);
        assert_eq!(ones_sum(&[&pseudo, tcp]), 0xFFFF);
    }
}

#[test]
fn bad_transmit_chains_are_returned_and_their_frames_dropped() {
    let mut n = net();
    // A header shorter than 12 bytes.
    let used = n.transmit(0, &[0u8; 6], &[]);
    assert_eq!(used, [(0, 0)]);
    // A frame shorter than an Ethernet header, one longer than the link.
    n.transmit(2, &header(0, 0, 0, 0, 0), &[1, 2, 3]);
    n.transmit(4, &header(0, 0, 0, 0, 0), &frame(MAX_FRAME_LEN + 1, 1));
    // csum_start past the frame.
    n.transmit(6, &header(hdr::F_NEEDS_CSUM, 0, 0, 200, 16), &frame(100, 1));
    // GSO without NEEDS_CSUM, UDP fragmentation (never offered), ECN.
    let p = tcp4_packet(3000, 0x10);
    n.transmit(8, &header(0, hdr::GSO_TCPV4, 1448, 34, 16), &p);
    n.transmit(10, &header(1, hdr::GSO_UDP, 1448, 34, 6), &p);
    n.transmit(
        12,
        &header(1, hdr::GSO_TCPV4 | hdr::GSO_ECN, 1448, 34, 16),
        &p,
    );
    // GSO claiming TCPv6 over an IPv4 packet, a zero MSS, an MSS past a frame.
    n.transmit(14, &header(1, hdr::GSO_TCPV6, 1448, 34, 16), &p);
    n.transmit(16, &header(1, hdr::GSO_TCPV4, 0, 34, 16), &p);
    n.transmit(18, &header(1, hdr::GSO_TCPV4, 1500, 34, 16), &p);
    // GSO larger than 64 KiB.
    let big = tcp4_packet(MAX_TSO_PACKET, 0x10);
    n.transmit(20, &header(1, hdr::GSO_TCPV4, 1448, 34, 16), &big);
    assert_eq!(n.sent(), Vec::<Vec<u8>>::new(), "nothing sent");
    assert_eq!(
        n.d.status() & status::DEVICE_NEEDS_RESET,
        0,
        "the rings are sound"
    );
    // The queue goes on.
    let f = frame(80, 2);
    n.transmit(22, &header(0, 0, 0, 0, 0), &f);
    assert_eq!(n.sent(), [f]);
}

#[test]
fn tso_without_the_feature_negotiated_is_dropped() {
    let mut n = net_with(feature::CSUM);
    let p = tcp4_packet(3000, 0x10);
    n.transmit(0, &header(1, hdr::GSO_TCPV4, 1448, 34, 16), &p);
    assert!(n.sent().is_empty());
}

#[test]
fn a_looping_transmit_chain_needs_a_reset_and_the_receive_queue_goes_on() {
    let mut n = net();
    n.post_rx(0, 2, 2048);
    n.notify(RX_QUEUE);
    n.d.desc(TX.0, 0, TX_BUFS, 100, VIRTQ_DESC_F_NEXT, 1);
    n.d.desc(TX.0, 1, TX_BUFS, 100, VIRTQ_DESC_F_NEXT, 0);
    n.d.ram.write_obj(TX.1 + 4, 0u16).unwrap();
    n.d.ram.write_obj(TX.1 + 2, 1u16).unwrap();
    n.notify(TX_QUEUE);
    assert_ne!(n.d.status() & status::DEVICE_NEEDS_RESET, 0);
    let f = frame(64, 4);
    n.incoming(&f);
    n.d.pc.service();
    assert_eq!(n.used(RX_QUEUE), [(0, 76)]);
}

#[test]
fn transmit_is_bounded_per_notification_and_the_rest_goes_in_service() {
    let mut n = net();
    let f = frame(60, 1);
    let hdr = header(0, 0, 0, 0, 0);
    n.d.ram.write(TX_BUFS, &hdr).unwrap();
    n.d.ram.write(TX_BUFS + 0x100, &f).unwrap();
    // 255 one-frame chains (descriptor pairs would need 510 entries: the
    // ring has 256, so each chain is one buffer holding both).
    let mut both = hdr.to_vec();
    both.extend(&f);
    n.d.ram.write(TX_BUFS, &both).unwrap();
    for i in 0..255u16 {
        n.offer(TX_QUEUE, i, &[(TX_BUFS, both.len() as u32, false)]);
    }
    n.notify(TX_QUEUE);
    assert_eq!(n.sent().len(), TX_PER_PASS as usize);
    n.d.pc.service();
    assert_eq!(n.sent().len(), 255 - TX_PER_PASS as usize);
    assert_eq!(n.used(TX_QUEUE).len(), 255);
}

#[test]
fn a_notification_for_a_queue_that_does_not_exist_is_ignored() {
    let mut n = net();
    n.notify(2);
    n.notify(7);
    assert_eq!(n.d.status() & status::DEVICE_NEEDS_RESET, 0);
    let _ = n.d.common_read(common::QUEUE_SELECT, 2);
}

#[test]
fn a_reset_forgets_a_waiting_frame() {
    let mut n = net();
    n.incoming(&frame(64, 1));
    n.d.pc.service();
    assert!(
        n.wire.0.lock().unwrap().incoming.is_empty(),
        "taken, waiting"
    );
    n.d.common_write(common::DEVICE_STATUS, 1, 0);
    assert_eq!(n.d.status(), 0);
    assert!(n.d.negotiate(vfeature::VERSION_1 | feature::MRG_RXBUF));
    for q in [RX_QUEUE, TX_QUEUE] {
        n.d.common_write(common::QUEUE_SELECT, 2, u64::from(q));
        n.d.common_write(common::QUEUE_ENABLE, 2, 0);
    }
    n.d.setup_queue_at(RX_QUEUE, QUEUE_SIZE, 0, (0x20_0000, 0x21_0000, 0x22_0000));
    let s = n.d.status() | status::DRIVER_OK;
    n.d.common_write(common::DEVICE_STATUS, 1, u64::from(s));
    n.rx = Ring {
        queue: RX_QUEUE,
        desc: 0x20_0000,
        avail: 0x21_0000,
        used: 0x22_0000,
        avail_idx: 0,
        used_seen: 0,
    };
    n.post_rx(0, 1, 2048);
    n.notify(RX_QUEUE);
    n.d.pc.service();
    assert_eq!(
        n.used(RX_QUEUE),
        [],
        "the frame from before the reset is gone"
    );
    let f = frame(70, 3);
    n.incoming(&f);
    n.d.pc.service();
    assert_eq!(n.used(RX_QUEUE), [(0, 82)]);
}
