//! netback against netif.h: packets on fake TX/RX rings over a loopback,
//! so every frame sent comes back on the receive side.

use super::wire::*;
use super::*;
use crate::net::offload::sum16;
use crate::net::Loopback;
use crate::xen::ring::fake::{FakeEvents, FakeGrants, FakeKeys};
use crate::xen::ring::{HEADER_LEN, REQ_PROD, RSP_EVENT, RSP_PROD};
use alloc::vec::Vec;

const TX: u32 = 0;
const RX: u32 = 1;
const PORT: u32 = 3;

struct Front {
    g: FakeGrants,
    ev: FakeEvents,
    keys: FakeKeys,
    nb: NetBack,
    tx_prod: u32,
    rx_prod: u32,
    tx_cons: u32,
    rx_cons: u32,
}

fn connected() -> Front {
    let mut f = Front {
        g: FakeGrants::new(16),
        ev: FakeEvents::default(),
        keys: FakeKeys::default(),
        nb: NetBack::new(Box::new(Loopback::new())),
        tx_prod: 0,
        rx_prod: 0,
        tx_cons: 0,
        rx_cons: 0,
    };
    for ring in [TX, RX] {
        f.g.page(ring).data[RSP_EVENT..RSP_EVENT + 4].copy_from_slice(&1u32.to_le_bytes());
    }
    f.nb.publish(&mut f.keys);
    for (k, v) in [
        ("tx-ring-ref", "0"),
        ("rx-ring-ref", "1"),
        ("event-channel", "3"),
        ("request-rx-copy", "1"),
        ("state", "4"),
    ] {
        f.keys.front(k, v);
    }
    f.nb.frontend_changed(&mut f.keys);
    assert_eq!(f.nb.state(), XenbusState::Connected);
    f
}

fn get32(p: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(p[at..at + 4].try_into().unwrap())
}

impl Front {
    fn tx_slot(&mut self, gref: u32, offset: u16, flags: u16, id: u16, size: u16) {
        let at = HEADER_LEN + (self.tx_prod % 256) as usize * TX_REQUEST_LEN;
        let p = &mut self.g.page(TX).data;
        p[at..at + 4].copy_from_slice(&gref.to_le_bytes());
        p[at + 4..at + 6].copy_from_slice(&offset.to_le_bytes());
        p[at + 6..at + 8].copy_from_slice(&flags.to_le_bytes());
        p[at + 8..at + 10].copy_from_slice(&id.to_le_bytes());
        p[at + 10..at + 12].copy_from_slice(&size.to_le_bytes());
        self.tx_prod += 1;
    }

    fn push_tx(&mut self) {
        let v = self.tx_prod;
        self.g.page(TX).data[REQ_PROD..REQ_PROD + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn post_rx(&mut self, id: u16, gref: u32) {
        let at = HEADER_LEN + (self.rx_prod % 256) as usize * RX_REQUEST_LEN;
        let p = &mut self.g.page(RX).data;
        p[at..at + 2].copy_from_slice(&id.to_le_bytes());
        p[at + 4..at + 8].copy_from_slice(&gref.to_le_bytes());
        self.rx_prod += 1;
        let v = self.rx_prod;
        p[REQ_PROD..REQ_PROD + 4].copy_from_slice(&v.to_le_bytes());
    }

    fn kick(&mut self) {
        self.nb.handle_event(&mut self.g, &mut self.ev);
    }

    /// New TX responses as (id, status).
    fn tx_responses(&mut self) -> Vec<(u16, i16)> {
        let p = &self.g.pages[TX as usize].data;
        let mut out = Vec::new();
        while self.tx_cons != get32(p, RSP_PROD) {
            let at = HEADER_LEN + (self.tx_cons % 256) as usize * TX_REQUEST_LEN;
            out.push((
                u16::from_le_bytes([p[at], p[at + 1]]),
                i16::from_le_bytes([p[at + 2], p[at + 3]]),
            ));
            self.tx_cons += 1;
        }
        out
    }

    /// New RX responses as (id, offset, flags, status).
    fn rx_responses(&mut self) -> Vec<(u16, u16, u16, i16)> {
        let p = &self.g.pages[RX as usize].data;
        let mut out = Vec::new();
        while self.rx_cons != get32(p, RSP_PROD) {
            let at = HEADER_LEN + (self.rx_cons % 256) as usize * RX_REQUEST_LEN;
            let h = |i: usize| u16::from_le_bytes([p[at + i], p[at + i + 1]]);
            out.push((h(0), h(2), h(4), h(6) as i16));
            self.rx_cons += 1;
        }
        out
    }
}

#[test]
fn publish_offers_rx_copy_and_sg_but_not_gso() {
    let f = connected();
    assert_eq!(f.keys.back("feature-rx-copy"), Some("1"));
    assert_eq!(f.keys.back("feature-sg"), Some("1"));
    assert_eq!(f.keys.back("feature-gso-tcpv4"), None);
    assert_eq!(f.keys.backend_states, ["2", "4"]);
    assert_eq!(f.nb.event_channel(), Some(EvtchnPort(PORT)));
}

#[test]
fn a_three_slot_packet_is_sent_whole_and_comes_back_into_a_posted_buffer() {
    let mut f = connected();
    // 100 bytes: 40 at offset 4000 of page 2, 50 at 0 of page 3, 10 at 8 of page 4.
    let frame: Vec<u8> = (0..100u8).collect();
    f.g.page(2).data[4000..4040].copy_from_slice(&frame[..40]);
    f.g.page(3).data[..50].copy_from_slice(&frame[40..90]);
    f.g.page(4).data[8..18].copy_from_slice(&frame[90..]);
    f.post_rx(7, 5);
    f.tx_slot(2, 4000, txf::MORE_DATA, 10, 100);
    f.tx_slot(3, 0, txf::MORE_DATA, 11, 50);
    f.tx_slot(4, 8, 0, 12, 10);
    f.push_tx();
    f.kick();
    assert_eq!(
        f.tx_responses(),
        [(10, status::OKAY), (11, status::OKAY), (12, status::OKAY)]
    );
    assert_eq!(f.rx_responses(), [(7, 0, 0, 100)]);
    assert_eq!(&f.g.pages[5].data[..100], &frame[..]);
    assert_eq!(f.ev.sent, [EvtchnPort(PORT)], "one notify for both rings");
    assert_eq!(f.nb.counters().tx_packets, 1);
    assert_eq!(f.nb.counters().rx_packets, 1);
}

#[test]
fn a_packet_half_posted_waits_for_its_last_slot() {
    let mut f = connected();
    f.post_rx(1, 5);
    f.tx_slot(2, 0, txf::MORE_DATA, 1, 60);
    f.push_tx();
    f.kick();
    assert!(f.tx_responses().is_empty());
    // The backend asked for an event at the next slot.
    assert_eq!(
        get32(&f.g.pages[TX as usize].data, crate::xen::ring::REQ_EVENT),
        2
    );
    f.tx_slot(3, 0, 0, 2, 30);
    f.push_tx();
    f.kick();
    assert_eq!(f.tx_responses(), [(1, status::OKAY), (2, status::OKAY)]);
    assert_eq!(f.rx_responses(), [(1, 0, 0, 60)]);
}

#[test]
fn a_blank_checksum_is_filled_before_the_frame_leaves() {
    let mut f = connected();
    let mut frame = super::checksum::tests::tcp_partial(b"payload");
    let len = frame.len();
    f.g.page(2).data[..len].copy_from_slice(&frame);
    f.post_rx(1, 5);
    f.tx_slot(2, 0, txf::CSUM_BLANK, 1, len as u16);
    f.push_tx();
    f.kick();
    assert_eq!(f.tx_responses(), [(1, status::OKAY)]);
    let got = f.g.pages[5].data[..len].to_vec();
    // RFC 1071: pseudo-header plus segment sum to all ones.
    let pseudo = sum16(&got[26..34], 6 + (len as u32 - 34));
    assert_eq!(sum16(&got[34..], pseudo), 0xffff);
    frame[50..52].copy_from_slice(&got[50..52]);
    assert_eq!(got, frame, "only the checksum changed");
}

#[test]
fn malformed_packets_get_error_responses_and_the_ring_goes_on() {
    let mut f = connected();
    f.g.page(6).readonly = true;
    f.g.page(7).domid = 9;
    // Too long; offset+size past the page; a foreign grant; later slots
    // longer than the packet; a GSO extra (not offered); a good one.
    f.tx_slot(2, 0, 0, 1, 2000);
    f.tx_slot(2, 4090, 0, 2, 60);
    f.tx_slot(7, 0, 0, 3, 60);
    f.tx_slot(2, 0, txf::MORE_DATA, 4, 60);
    f.tx_slot(3, 0, 0, 5, 61);
    f.tx_slot(2, 0, txf::EXTRA_INFO, 6, 60);
    f.tx_slot(0, 0, 0, 7, 0);
    f.g.page(TX).data[HEADER_LEN + 6 * TX_REQUEST_LEN] = EXTRA_TYPE_GSO;
    f.tx_slot(6, 0, 0, 8, 60);
    f.push_tx();
    f.kick();
    assert_eq!(
        f.tx_responses(),
        [
            (1, status::ERROR),
            (2, status::ERROR),
            (3, status::ERROR),
            (4, status::ERROR),
            (5, status::ERROR),
            (6, status::ERROR),
            (7, status::NULL),
            (8, status::OKAY),
        ],
        "a read-only grant is fine for transmit: the backend only reads it"
    );
    assert_eq!(f.nb.counters().tx_errors, 5);
    assert!(!f.nb.stopped());
}

#[test]
fn more_than_eighteen_data_slots_stop_the_device() {
    log_capture::start();
    let mut f = connected();
    for i in 0..19 {
        f.tx_slot(2, 0, txf::MORE_DATA, i, 60);
    }
    f.tx_slot(2, 0, 0, 19, 1);
    f.push_tx();
    f.kick();
    f.kick();
    assert!(f.nb.stopped());
    assert!(f.tx_responses().is_empty());
    assert_eq!(
        log_capture::count(log::Level::Error, "xen-netback: the device stops"),
        1
    );
}

#[test]
fn a_tx_index_jump_stops_the_device() {
    let mut f = connected();
    f.g.page(TX).data[REQ_PROD..REQ_PROD + 4].copy_from_slice(&300u32.to_le_bytes());
    f.kick();
    assert!(f.nb.stopped());
}

#[test]
fn frames_without_posted_buffers_are_dropped_and_counted() {
    let mut f = connected();
    f.g.page(2).data[..60].fill(0x55);
    for id in 0..3 {
        f.tx_slot(2, 0, 0, id, 60);
    }
    f.push_tx();
    f.kick();
    assert_eq!(f.tx_responses().len(), 3);
    assert!(f.rx_responses().is_empty());
    assert_eq!(f.nb.counters().rx_dropped_no_buffer, 3);
    // A buffer whose grant fails: an error response, counted.
    f.post_rx(4, 0x999);
    f.tx_slot(2, 0, 0, 9, 60);
    f.push_tx();
    f.kick();
    assert_eq!(f.rx_responses(), [(4, 0, 0, status::ERROR)]);
    assert_eq!(f.nb.counters().rx_errors, 1);
    assert!(!f.nb.needs_service());
}

#[test]
fn tx_notifications_follow_rsp_event() {
    let mut f = connected();
    f.tx_slot(2, 0, 0, 1, 60);
    f.push_tx();
    f.kick();
    assert_eq!(f.ev.sent.len(), 1);
    // rsp_event left at 1 on both rings: later responses are not announced.
    f.tx_slot(2, 0, 0, 2, 60);
    f.push_tx();
    f.kick();
    assert_eq!(f.ev.sent.len(), 1);
}

#[test]
fn xenbus_refuses_a_frontend_without_rx_copy_and_follows_it_to_closed() {
    let mut f = connected();
    f.keys.front("state", "5");
    f.nb.frontend_changed(&mut f.keys);
    f.keys.front("state", "6");
    f.nb.frontend_changed(&mut f.keys);
    f.keys.front("state", "1");
    f.nb.frontend_changed(&mut f.keys);
    f.keys.front("request-rx-copy", "0");
    f.keys.front("state", "4");
    f.nb.frontend_changed(&mut f.keys);
    assert_eq!(f.keys.backend_states, ["2", "4", "5", "6", "2", "6"]);
    assert_eq!(f.nb.event_channel(), None);
}
