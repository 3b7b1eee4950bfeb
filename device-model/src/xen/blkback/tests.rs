//! blkback against blkif.h: requests on a fake ring over a RAM disk.

use super::wire::*;
use super::*;
use crate::storage::RamDisk;
use crate::xen::ring::fake::{FakeEvents, FakeGrants, FakeKeys};
use crate::xen::ring::{HEADER_LEN, REQ_PROD, RSP_EVENT, RSP_PROD};
use alloc::vec::Vec;

const RING: u32 = 0;
const PORT: u32 = 9;
/// Grants 1..=16 are data pages, 17 an indirect page.
const INDIRECT_PAGE: u32 = 17;
const DISK_SECTORS: usize = 64;

struct Front {
    g: FakeGrants,
    ev: FakeEvents,
    keys: FakeKeys,
    blk: BlkBack,
    prod: u32,
    rsp_cons: u32,
}

/// Sector `i` of the disk is filled with byte `i`.
fn disk() -> Box<dyn BlockBackend> {
    let mut bytes = vec![0u8; DISK_SECTORS * SECTOR_SIZE];
    for (i, s) in bytes.chunks_mut(SECTOR_SIZE).enumerate() {
        s.fill(i as u8);
    }
    Box::new(RamDisk::new("xvda", bytes).unwrap())
}

fn connected(read_only: bool) -> Front {
    let mut f = Front {
        g: FakeGrants::new(18),
        ev: FakeEvents::default(),
        keys: FakeKeys::default(),
        blk: BlkBack::new(BlkBackConfig { read_only }, disk()),
        prod: 0,
        rsp_cons: 0,
    };
    f.set32(RSP_EVENT, 1);
    f.blk.publish(&mut f.keys);
    f.keys.front("ring-ref", "0");
    f.keys.front("event-channel", &PORT.to_string());
    f.keys.front("protocol", "x86_64-abi");
    f.keys.front("state", "3");
    f.blk.frontend_changed(&mut f.keys);
    assert_eq!(f.blk.state(), XenbusState::Connected);
    f
}

use alloc::string::ToString;

impl Front {
    fn set32(&mut self, at: usize, v: u32) {
        self.g.page(RING).data[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }

    /// Puts a request in the next slot and publishes it.
    fn submit(&mut self, req: &[u8; REQUEST_LEN]) {
        let at = HEADER_LEN + (self.prod % 32) as usize * REQUEST_LEN;
        self.g.page(RING).data[at..at + REQUEST_LEN].copy_from_slice(req);
        self.prod += 1;
        self.set32(REQ_PROD, self.prod);
    }

    fn kick(&mut self) {
        self.blk.handle_event(&mut self.g, &mut self.ev);
    }

    /// New responses as (id, operation, status); asks for the next notify.
    fn responses(&mut self) -> Vec<(u64, u8, i16)> {
        let page = &self.g.pages[RING as usize].data;
        let prod = u32::from_le_bytes(page[RSP_PROD..RSP_PROD + 4].try_into().unwrap());
        let mut out = Vec::new();
        while self.rsp_cons != prod {
            let at = HEADER_LEN + (self.rsp_cons % 32) as usize * REQUEST_LEN;
            let r = &page[at..at + RESPONSE_LEN];
            out.push((
                le64(r, RSP_ID),
                r[RSP_OPERATION],
                le16(r, RSP_STATUS) as i16,
            ));
            self.rsp_cons += 1;
        }
        let next = self.rsp_cons + 1;
        self.set32(RSP_EVENT, next);
        out
    }
}

/// A direct request: `segs` as (gref, first_sect, last_sect).
fn request(operation: u8, id: u64, sector: u64, segs: &[(u32, u8, u8)]) -> [u8; REQUEST_LEN] {
    let mut r = [0u8; REQUEST_LEN];
    r[OPERATION] = operation;
    r[NR_SEGMENTS] = segs.len() as u8;
    r[ID..ID + 8].copy_from_slice(&id.to_le_bytes());
    r[SECTOR_NUMBER..SECTOR_NUMBER + 8].copy_from_slice(&sector.to_le_bytes());
    for (i, &(gref, first, last)) in segs.iter().enumerate() {
        let at = SEG + i * SEGMENT_LEN;
        r[at..at + 4].copy_from_slice(&gref.to_le_bytes());
        r[at + 4] = first;
        r[at + 5] = last;
    }
    r
}

#[test]
fn publish_offers_flush_and_indirect_segments_then_waits() {
    let f = connected(false);
    assert_eq!(f.keys.back("feature-flush-cache"), Some("1"));
    assert_eq!(f.keys.back("feature-max-indirect-segments"), Some("256"));
    assert_eq!(
        f.keys.back("feature-discard"),
        None,
        "no discard in BlockBackend"
    );
    assert_eq!(
        f.keys.backend_states,
        ["2", "4"],
        "InitWait, then Connected"
    );
    assert_eq!(f.keys.back("sectors"), Some("64"));
    assert_eq!(f.keys.back("sector-size"), Some("512"));
    assert_eq!(f.keys.back("info"), Some("0"));
    assert_eq!(f.blk.event_channel(), Some(EvtchnPort(PORT)));
    let ro = connected(true);
    assert_eq!(ro.keys.back("info"), Some("4"), "VDISK_READONLY");
}

#[test]
fn a_read_fills_the_granted_sectors_of_the_page_and_notifies_once() {
    let mut f = connected(false);
    // Sectors 5..=7 of the disk into sectors 2..=3 of page 1 and 0 of page 2.
    f.submit(&request(op::READ, 0x1234, 5, &[(1, 2, 3), (2, 0, 0)]));
    f.kick();
    assert_eq!(f.responses(), [(0x1234, op::READ, status::OKAY)]);
    assert_eq!(f.ev.sent, [EvtchnPort(PORT)]);
    let p1 = &f.g.pages[1].data;
    assert!(p1[..1024].iter().all(|&b| b == 0), "sectors 0-1 untouched");
    assert!(p1[1024..1536].iter().all(|&b| b == 5));
    assert!(p1[1536..2048].iter().all(|&b| b == 6));
    assert!(p1[2048..].iter().all(|&b| b == 0));
    assert!(f.g.pages[2].data[..512].iter().all(|&b| b == 7));
}

#[test]
fn a_write_then_a_flush_then_a_read_back() {
    let mut f = connected(false);
    f.g.page(3).data.fill(0xab);
    f.submit(&request(op::WRITE, 1, 40, &[(3, 0, 7)]));
    f.submit(&request(op::FLUSH_DISKCACHE, 2, 0, &[]));
    f.submit(&request(op::READ, 3, 39, &[(4, 0, 2)]));
    f.kick();
    assert_eq!(
        f.responses(),
        [
            (1, op::WRITE, status::OKAY),
            (2, op::FLUSH_DISKCACHE, status::OKAY),
            (3, op::READ, status::OKAY)
        ]
    );
    assert_eq!(f.ev.sent.len(), 1, "one notify for the batch");
    let p4 = &f.g.pages[4].data;
    assert!(p4[..512].iter().all(|&b| b == 39));
    assert!(p4[512..1536].iter().all(|&b| b == 0xab));
}

#[test]
fn an_indirect_read_takes_its_segments_from_the_indirect_page() {
    let mut f = connected(false);
    // 16 full pages: sectors 0..128 would be past the 64-sector disk; use 8 pages.
    for i in 0..8u32 {
        let at = i as usize * SEGMENT_LEN;
        let page = &mut f.g.page(INDIRECT_PAGE).data;
        page[at..at + 4].copy_from_slice(&(i + 1).to_le_bytes());
        page[at + 4] = 0;
        page[at + 5] = 7;
    }
    let mut r = [0u8; REQUEST_LEN];
    r[OPERATION] = op::INDIRECT;
    r[INDIRECT_OP] = op::READ;
    r[INDIRECT_NR_SEGMENTS..INDIRECT_NR_SEGMENTS + 2].copy_from_slice(&8u16.to_le_bytes());
    r[ID] = 77;
    r[INDIRECT_GREFS..INDIRECT_GREFS + 4].copy_from_slice(&INDIRECT_PAGE.to_le_bytes());
    f.submit(&r);
    f.kick();
    // blkfront expects the indirect operation in the response.
    assert_eq!(f.responses(), [(77, op::READ, status::OKAY)]);
    for p in 1..=8usize {
        let data = &f.g.pages[p].data;
        for s in 0..8 {
            let want = ((p - 1) * 8 + s) as u8;
            assert!(data[s * 512..(s + 1) * 512].iter().all(|&b| b == want));
        }
    }
    // More segments than offered, or an indirect page that is not granted.
    r[INDIRECT_NR_SEGMENTS..INDIRECT_NR_SEGMENTS + 2].copy_from_slice(&257u16.to_le_bytes());
    f.submit(&r);
    r[INDIRECT_NR_SEGMENTS..INDIRECT_NR_SEGMENTS + 2].copy_from_slice(&1u16.to_le_bytes());
    r[INDIRECT_GREFS..INDIRECT_GREFS + 4].copy_from_slice(&99u32.to_le_bytes());
    f.submit(&r);
    f.kick();
    assert_eq!(
        f.responses(),
        [(77, op::READ, status::ERROR), (77, op::READ, status::ERROR)]
    );
}

#[test]
fn a_read_into_a_read_only_grant_fails_and_leaves_it_untouched() {
    let mut f = connected(false);
    f.g.page(1).readonly = true;
    f.submit(&request(op::READ, 1, 5, &[(1, 0, 0)]));
    f.kick();
    assert_eq!(f.responses(), [(1, op::READ, status::ERROR)]);
    assert!(f.g.pages[1].data.iter().all(|&b| b == 0));
}

#[test]
fn bad_grants_fail_only_their_request() {
    let mut f = connected(false);
    f.g.page(2).domid = 5;
    f.g.page(3).present = false;
    f.submit(&request(op::READ, 1, 0, &[(2, 0, 0)]));
    f.submit(&request(op::WRITE, 2, 0, &[(3, 0, 0)]));
    f.submit(&request(op::READ, 3, 0, &[(1000, 0, 0)]));
    f.submit(&request(op::READ, 4, 1, &[(1, 0, 0)]));
    f.kick();
    assert_eq!(
        f.responses(),
        [
            (1, op::READ, status::ERROR),
            (2, op::WRITE, status::ERROR),
            (3, op::READ, status::ERROR),
            (4, op::READ, status::OKAY)
        ]
    );
    assert!(f.g.pages[2].data.iter().all(|&b| b == 0));
}

#[test]
fn segment_bounds_sector_range_and_segment_count_are_checked_before_any_data_moves() {
    let mut f = connected(false);
    f.g.page(1).data.fill(0xee);
    // last_sect 8 is past the page; first > last; 12 segments; past the disk's end.
    f.submit(&request(op::WRITE, 1, 0, &[(1, 0, 0), (1, 0, 8)]));
    f.submit(&request(op::WRITE, 2, 0, &[(1, 3, 2)]));
    let mut twelve = request(op::READ, 3, 0, &[(1, 0, 0); 11]);
    twelve[NR_SEGMENTS] = 12;
    f.submit(&twelve);
    f.submit(&request(op::WRITE, 4, 63, &[(1, 0, 1)]));
    f.submit(&request(op::WRITE, 5, u64::MAX, &[(1, 0, 0)]));
    f.submit(&request(op::READ, 6, 0, &[]));
    f.kick();
    let st: Vec<i16> = f.responses().iter().map(|r| r.2).collect();
    assert_eq!(st, [status::ERROR; 6]);
    // Nothing was written: sector 0 and 63 hold what they held.
    f.submit(&request(op::READ, 7, 63, &[(2, 0, 0)]));
    f.submit(&request(op::READ, 8, 0, &[(2, 1, 1)]));
    f.kick();
    assert_eq!(f.responses().len(), 2);
    assert!(f.g.pages[2].data[..512].iter().all(|&b| b == 63));
    assert!(f.g.pages[2].data[512..1024].iter().all(|&b| b == 0));
}

#[test]
fn a_read_only_disk_refuses_writes_and_barriers_with_data() {
    let mut f = connected(true);
    f.submit(&request(op::WRITE, 1, 0, &[(1, 0, 0)]));
    f.submit(&request(op::WRITE_BARRIER, 2, 0, &[(1, 0, 0)]));
    f.submit(&request(op::READ, 3, 0, &[(1, 0, 0)]));
    f.kick();
    assert_eq!(
        f.responses(),
        [
            (1, op::WRITE, status::ERROR),
            (2, op::WRITE_BARRIER, status::ERROR),
            (3, op::READ, status::OKAY)
        ]
    );
}

#[test]
fn discard_and_unknown_operations_are_not_supported() {
    let mut f = connected(false);
    f.submit(&request(op::DISCARD, 1, 0, &[]));
    f.submit(&request(4, 2, 0, &[]));
    f.submit(&request(0xff, 3, 0, &[]));
    f.kick();
    assert_eq!(
        f.responses(),
        [
            (1, op::DISCARD, status::EOPNOTSUPP),
            (2, 4, status::EOPNOTSUPP),
            (3, 0xff, status::EOPNOTSUPP)
        ]
    );
}

#[test]
fn notifications_follow_rsp_event() {
    let mut f = connected(false);
    f.submit(&request(op::READ, 1, 0, &[(1, 0, 0)]));
    f.kick();
    assert_eq!(f.ev.sent.len(), 1);
    // The frontend does not ask (rsp_event stays 1): no notification.
    f.set32(RSP_EVENT, 1);
    f.submit(&request(op::READ, 2, 0, &[(1, 0, 0)]));
    f.kick();
    assert_eq!(f.ev.sent.len(), 1);
    // An event with nothing new: no notification either.
    f.kick();
    assert_eq!(f.ev.sent.len(), 1);
}

#[test]
fn a_req_prod_jump_stops_the_device_with_one_log_line() {
    log_capture::start();
    let mut f = connected(false);
    f.set32(REQ_PROD, 33);
    f.kick();
    f.kick();
    assert!(f.blk.stopped());
    assert!(f.responses().is_empty());
    assert_eq!(
        log_capture::count(log::Level::Error, "xen-blkback 'xvda': the device stops"),
        1
    );
    // A reconnect (Closed, then Initialising) starts it again.
    f.keys.front("state", "6");
    f.blk.frontend_changed(&mut f.keys);
    f.keys.front("state", "1");
    f.blk.frontend_changed(&mut f.keys);
    assert!(!f.blk.stopped());
    assert_eq!(f.blk.state(), XenbusState::InitWait);
}

#[test]
fn a_long_burst_is_bounded_per_pass_and_finished_in_service() {
    let mut f = connected(false);
    // 32 requests of 7 full pages (28 KiB each, 896 KiB): over the budget.
    let segs = [(1, 0, 7); 7];
    for i in 0..32 {
        f.submit(&request(op::READ, i, 0, &segs));
    }
    f.kick();
    let rsp = f.responses();
    assert!(rsp.iter().all(|r| r.2 == status::OKAY));
    let first = rsp.len();
    assert!(
        first > 0 && first < 32,
        "{first} requests in the first pass"
    );
    assert!(f.blk.needs_service());
    for _ in 0..4 {
        f.blk.service(&mut f.g, &mut f.ev);
    }
    assert_eq!(first + f.responses().len(), 32);
    assert!(!f.blk.needs_service());
}

#[test]
fn xenbus_refuses_a_foreign_protocol_and_missing_keys() {
    let mut f = Front {
        g: FakeGrants::new(1),
        ev: FakeEvents::default(),
        keys: FakeKeys::default(),
        blk: BlkBack::new(BlkBackConfig::default(), disk()),
        prod: 0,
        rsp_cons: 0,
    };
    f.blk.publish(&mut f.keys);
    f.keys.front("ring-ref", "0");
    f.keys.front("event-channel", "5");
    f.keys.front("protocol", "x86_32-abi");
    f.keys.front("state", "3");
    f.blk.frontend_changed(&mut f.keys);
    assert_eq!(f.blk.state(), XenbusState::Closed);
    assert_eq!(f.blk.event_channel(), None);
    // Restart without an event channel: Closed again.
    f.keys.front("state", "1");
    f.blk.frontend_changed(&mut f.keys);
    f.keys.frontend.remove("event-channel");
    f.keys.front("protocol", "x86_64-abi");
    f.keys.front("state", "3");
    f.blk.frontend_changed(&mut f.keys);
    assert_eq!(f.keys.backend_states, ["2", "6", "2", "6"]);
    // Events before a connection do nothing.
    f.kick();
    assert!(f.ev.sent.is_empty());
}

#[test]
fn xenbus_follows_the_frontend_through_closing_and_closed() {
    let mut f = connected(false);
    f.keys.front("state", "4");
    f.blk.frontend_changed(&mut f.keys);
    assert_eq!(f.blk.state(), XenbusState::Connected);
    f.keys.front("state", "5");
    f.blk.frontend_changed(&mut f.keys);
    assert_eq!(f.blk.state(), XenbusState::Closing);
    assert_eq!(f.blk.event_channel(), None);
    f.keys.front("state", "6");
    f.blk.frontend_changed(&mut f.keys);
    assert_eq!(f.keys.backend_states, ["2", "4", "5", "6"]);
}
