use super::fake::FakeGrants;
use super::*;

const RING: u32 = 0;

fn put32(g: &mut FakeGrants, at: usize, v: u32) {
    g.page(RING).data[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

fn get32(g: &mut FakeGrants, at: usize) -> u32 {
    u32::from_le_bytes(g.page(RING).data[at..at + 4].try_into().unwrap())
}

/// A frontend's request `i` of 8 bytes: its index in the first byte.
fn produce(g: &mut FakeGrants, from: u32, n: u32) {
    for i in from..from + n {
        let at = HEADER_LEN + (i % 256) as usize * 8;
        g.page(RING).data[at] = i as u8;
    }
    put32(g, REQ_PROD, from + n);
}

#[test]
fn entries_are_the_largest_power_of_two_that_fits_after_the_header() {
    // blkif: 112-byte requests, 32 a page (checklist B "Rings and grants").
    assert_eq!(ring_size(112), 32);
    // netif TX (12-byte requests) and RX (8-byte entries): 256.
    assert_eq!(ring_size(12), 256);
    assert_eq!(ring_size(8), 256);
    assert_eq!(ring_size(4032), 1);
    assert_eq!(ring_size(4033), 0);
}

#[test]
fn requests_are_consumed_in_order_up_to_req_prod() {
    let mut g = FakeGrants::new(1);
    let mut r = BackRing::new(RING, 8);
    produce(&mut g, 0, 3);
    let mut b = [0u8; 8];
    for i in 0..3 {
        assert!(r.next_request(&mut g, &mut b).unwrap());
        assert_eq!(b[0], i);
        r.put_response(&mut g, &[0xaa; 8]).unwrap();
    }
    assert!(!r.next_request(&mut g, &mut b).unwrap());
}

#[test]
fn a_req_prod_past_the_ring_size_is_a_protocol_error() {
    let mut g = FakeGrants::new(1);
    let mut r = BackRing::new(RING, 8);
    put32(&mut g, REQ_PROD, 257);
    let mut b = [0u8; 8];
    assert_eq!(
        r.next_request(&mut g, &mut b),
        Err(RingError::IndexJump {
            req_prod: 257,
            rsp_prod: 0,
            size: 256
        })
    );
    // Exactly a full ring is allowed; a req_prod behind the consumer
    // (wrapping to ~4 billion outstanding) is not.
    put32(&mut g, REQ_PROD, 256);
    assert_eq!(r.unconsumed(&mut g), Ok(256));
    put32(&mut g, REQ_PROD, u32::MAX);
    assert!(r.unconsumed(&mut g).is_err());
}

#[test]
fn outstanding_requests_without_responses_bound_req_prod() {
    let mut g = FakeGrants::new(1);
    let mut r = BackRing::new(RING, 8);
    produce(&mut g, 0, 200);
    r.consume(200);
    // 200 consumed but unanswered: only 56 more may be produced.
    put32(&mut g, REQ_PROD, 256);
    assert_eq!(r.unconsumed(&mut g), Ok(56));
    put32(&mut g, REQ_PROD, 257);
    assert!(matches!(
        r.unconsumed(&mut g),
        Err(RingError::IndexJump { .. })
    ));
}

#[test]
fn indexes_wrap_at_two_to_the_32() {
    let mut g = FakeGrants::new(1);
    let mut r = BackRing::new(RING, 8);
    r.req_cons = u32::MAX - 1;
    r.rsp_prod_pvt = u32::MAX - 1;
    r.rsp_prod_pushed = u32::MAX - 1;
    put32(&mut g, REQ_PROD, 2);
    assert_eq!(r.unconsumed(&mut g), Ok(4));
}

#[test]
fn the_frontend_is_notified_only_when_rsp_event_is_in_the_pushed_range() {
    let mut g = FakeGrants::new(1);
    let mut r = BackRing::new(RING, 8);
    produce(&mut g, 0, 4);
    let mut b = [0u8; 8];
    // rsp_event = 1 (SHARED_RING_INIT): the first response notifies.
    put32(&mut g, RSP_EVENT, 1);
    r.next_request(&mut g, &mut b).unwrap();
    r.put_response(&mut g, &[1; 8]).unwrap();
    assert_eq!(r.push_responses(&mut g), Ok(true));
    assert_eq!(get32(&mut g, RSP_PROD), 1);
    // The frontend has not asked again (rsp_event still 1): suppressed.
    r.next_request(&mut g, &mut b).unwrap();
    r.put_response(&mut g, &[2; 8]).unwrap();
    assert_eq!(r.push_responses(&mut g), Ok(false));
    // rsp_event = 4, two responses pushed (2, 4]: notify.
    put32(&mut g, RSP_EVENT, 4);
    for _ in 0..2 {
        r.next_request(&mut g, &mut b).unwrap();
        r.put_response(&mut g, &[3; 8]).unwrap();
    }
    assert_eq!(r.push_responses(&mut g), Ok(true));
    assert_eq!(get32(&mut g, RSP_PROD), 4);
    // Nothing new: no push, no notify.
    assert_eq!(r.push_responses(&mut g), Ok(false));
}

#[test]
fn the_final_check_asks_for_the_next_request_and_sees_one_pushed_meanwhile() {
    let mut g = FakeGrants::new(1);
    let mut r = BackRing::new(RING, 8);
    produce(&mut g, 0, 1);
    let mut b = [0u8; 8];
    r.next_request(&mut g, &mut b).unwrap();
    assert_eq!(r.final_check_for_requests(&mut g), Ok(false));
    assert_eq!(get32(&mut g, REQ_EVENT), 2, "req_event = req_cons + 1");
    produce(&mut g, 1, 1);
    assert_eq!(r.final_check_for_requests(&mut g), Ok(true));
}

#[test]
fn a_revoked_ring_page_is_an_error_not_a_panic() {
    let mut g = FakeGrants::new(1);
    let mut r = BackRing::new(RING, 8);
    g.page(RING).present = false;
    let mut b = [0u8; 8];
    assert_eq!(
        r.next_request(&mut g, &mut b),
        Err(RingError::Grant(GrantError::NotPermitted))
    );
    let mut r = BackRing::new(7, 8);
    assert_eq!(
        r.final_check_for_requests(&mut g),
        Err(RingError::Grant(GrantError::BadReference))
    );
}
