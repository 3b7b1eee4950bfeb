//! The split virtqueue against virtio 1.2 2.7, driven the way a driver
//! lays out its rings.

use super::*;

const DESC: u64 = 0x1000;
const AVAIL: u64 = 0x2000;
const USED: u64 = 0x3000;
const SIZE: u16 = 8;

fn setup() -> (GuestMemory, Virtqueue) {
    let mem = GuestMemory::new(1 << 20);
    let mut q = Virtqueue::new(SIZE);
    q.desc = DESC;
    q.avail = AVAIL;
    q.used = USED;
    q.check(&mem).unwrap();
    q.ready = true;
    (mem, q)
}

fn desc(mem: &GuestMemory, table: u64, i: u16, addr: u64, len: u32, flags: u16, next: u16) {
    let at = table + 16 * u64::from(i);
    mem.write_obj(at, addr).unwrap();
    mem.write_obj(at + 8, len).unwrap();
    mem.write_obj(at + 12, flags).unwrap();
    mem.write_obj(at + 14, next).unwrap();
}

/// Makes `head` available in slot `idx % SIZE` and sets avail.idx to `idx + 1`.
fn offer(mem: &GuestMemory, idx: u16, head: u16) {
    mem.write_obj(AVAIL + 4 + 2 * u64::from(idx % SIZE), head)
        .unwrap();
    mem.write_obj(AVAIL + 2, idx.wrapping_add(1)).unwrap();
}

#[test]
fn a_chain_is_taken_readable_first_and_returned_in_the_used_ring() {
    let (mem, mut q) = setup();
    desc(&mem, DESC, 3, 0x8000, 16, VIRTQ_DESC_F_NEXT, 5);
    desc(
        &mem,
        DESC,
        5,
        0x9000,
        512,
        VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
        1,
    );
    desc(&mem, DESC, 1, 0xA000, 1, VIRTQ_DESC_F_WRITE, 0);
    offer(&mem, 0, 3);
    let mut c = Chain::new(SIZE);
    assert!(q.pop(&mem, false, &mut c).unwrap());
    assert_eq!(c.head(), 3);
    assert_eq!(c.readable_len(), 16);
    assert_eq!(c.writable_len(), 513);
    assert_eq!(c.descs().len(), 3);
    // The writable stream crosses from the 512-byte buffer into the 1-byte one.
    c.write(&mem, 510, &[1, 2, 3]).unwrap();
    assert_eq!(mem.read_obj::<u16>(0x9000 + 510).unwrap(), 0x0201);
    assert_eq!(mem.read_obj::<u8>(0xA000).unwrap(), 3);
    assert!(c.write(&mem, 512, &[0, 0]).is_err(), "past the stream");
    assert!(
        !q.pop(&mem, false, &mut c).unwrap(),
        "nothing more available"
    );
    q.add_used(&mem, 3, 513).unwrap();
    assert_eq!(
        mem.read_obj::<u16>(USED + 2).unwrap(),
        0,
        "not yet published"
    );
    assert!(q.publish(&mem, false).unwrap(), "interrupts not suppressed");
    assert_eq!(mem.read_obj::<u16>(USED + 2).unwrap(), 1);
    assert_eq!(mem.read_obj::<u32>(USED + 4).unwrap(), 3);
    assert_eq!(mem.read_obj::<u32>(USED + 8).unwrap(), 513);
}

#[test]
fn completions_are_published_in_one_batch_and_no_interrupt_is_honoured() {
    let (mem, mut q) = setup();
    for i in 0..3 {
        desc(&mem, DESC, i, 0x8000, 1, VIRTQ_DESC_F_WRITE, 0);
        offer(&mem, i, i);
    }
    mem.write_obj(AVAIL, VIRTQ_AVAIL_F_NO_INTERRUPT).unwrap();
    let mut c = Chain::new(SIZE);
    while q.pop(&mem, false, &mut c).unwrap() {
        q.add_used(&mem, c.head(), 1).unwrap();
    }
    assert!(
        !q.publish(&mem, false).unwrap(),
        "the driver asked for no interrupt"
    );
    assert_eq!(mem.read_obj::<u16>(USED + 2).unwrap(), 3);
}

#[test]
fn indices_wrap_around_at_65536() {
    let (mem, mut q) = setup();
    q.last_avail = 0xFFFE;
    q.used_idx = 0xFFFE;
    q.published = 0xFFFE;
    desc(&mem, DESC, 0, 0x8000, 4, 0, 0);
    offer(&mem, 0xFFFE, 0);
    offer(&mem, 0xFFFF, 0);
    offer(&mem, 0x0000, 0);
    assert_eq!(mem.read_obj::<u16>(AVAIL + 2).unwrap(), 1);
    let mut c = Chain::new(SIZE);
    for _ in 0..3 {
        assert!(q.pop(&mem, false, &mut c).unwrap());
        q.add_used(&mem, 0, 0).unwrap();
    }
    assert!(!q.pop(&mem, false, &mut c).unwrap());
    q.publish(&mem, false).unwrap();
    assert_eq!(mem.read_obj::<u16>(USED + 2).unwrap(), 1);
    // 0xFFFE % 8 = 6, 0xFFFF % 8 = 7, 0 % 8 = 0: the used ring wrapped too.
    assert_eq!(mem.read_obj::<u32>(USED + 4).unwrap(), 0);
}

#[test]
fn event_idx_interrupts_only_when_used_event_is_passed_and_sets_avail_event() {
    let (mem, mut q) = setup();
    desc(&mem, DESC, 0, 0x8000, 4, 0, 0);
    let used_event = AVAIL + 4 + 2 * u64::from(SIZE);
    let avail_event = USED + 4 + 8 * u64::from(SIZE);
    // The driver wants an interrupt once entry 2 (index 2 -> 3) is used.
    mem.write_obj(used_event, 2u16).unwrap();
    let mut c = Chain::new(SIZE);
    let mut interrupts = 0;
    for i in 0..4u16 {
        offer(&mem, i, 0);
        assert!(q.pop(&mem, false, &mut c).unwrap());
        q.add_used(&mem, 0, 0).unwrap();
        if q.publish(&mem, true).unwrap() {
            interrupts += 1;
            assert_eq!(i, 2, "used.idx moved from 2 to 3");
        }
        assert_eq!(mem.read_obj::<u16>(avail_event).unwrap(), i + 1);
    }
    assert_eq!(interrupts, 1);
    // A batch that passes used_event in its middle interrupts once.
    mem.write_obj(used_event, 5u16).unwrap();
    for i in 4..8u16 {
        offer(&mem, i, 0);
        assert!(q.pop(&mem, false, &mut c).unwrap());
        q.add_used(&mem, 0, 0).unwrap();
    }
    assert!(q.publish(&mem, true).unwrap());
    assert!(need_event(0xFFFF, 0, 0xFFFE), "across the wrap");
    assert!(!need_event(10, 10, 9));
}

#[test]
fn indirect_tables_are_followed_and_never_nested() {
    let (mem, mut q) = setup();
    let table = 0x5000;
    desc(&mem, table, 0, 0x8000, 16, VIRTQ_DESC_F_NEXT, 1);
    desc(
        &mem,
        table,
        1,
        0x9000,
        4096,
        VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
        2,
    );
    desc(&mem, table, 2, 0xA000, 1, VIRTQ_DESC_F_WRITE, 0);
    desc(&mem, DESC, 4, table, 48, VIRTQ_DESC_F_INDIRECT, 0);
    offer(&mem, 0, 4);
    let mut c = Chain::new(SIZE);
    assert_eq!(
        q.pop(&mem, false, &mut c),
        Err(QueueError::IndirectNotNegotiated { head: 4 })
    );
    assert!(q.broken());
    let (mem, mut q) = setup();
    desc(&mem, table, 0, 0x8000, 16, VIRTQ_DESC_F_NEXT, 1);
    desc(
        &mem,
        table,
        1,
        0x9000,
        4096,
        VIRTQ_DESC_F_NEXT | VIRTQ_DESC_F_WRITE,
        2,
    );
    desc(&mem, table, 2, 0xA000, 1, VIRTQ_DESC_F_WRITE, 0);
    desc(&mem, DESC, 4, table, 48, VIRTQ_DESC_F_INDIRECT, 0);
    offer(&mem, 0, 4);
    assert!(q.pop(&mem, true, &mut c).unwrap());
    assert_eq!(c.head(), 4);
    assert_eq!((c.readable_len(), c.writable_len()), (16, 4097));
    // An indirect descriptor inside the table.
    desc(&mem, table, 2, 0x6000, 16, VIRTQ_DESC_F_INDIRECT, 0);
    offer(&mem, 1, 4);
    assert_eq!(
        q.pop(&mem, true, &mut c),
        Err(QueueError::NestedIndirect { head: 4 })
    );
    assert!(
        !q.pop(&mem, true, &mut c).unwrap(),
        "a broken queue is not used"
    );
}

#[test]
fn malformed_chains_break_the_queue() {
    const TABLE: u64 = 0x5000;
    type Setup = fn(&GuestMemory);
    type Expect = fn(QueueError) -> bool;
    let cases: &[(&str, Setup, Expect)] = &[
        (
            "a next loop",
            |m| {
                desc(m, DESC, 0, 0x8000, 1, VIRTQ_DESC_F_NEXT, 1);
                desc(m, DESC, 1, 0x8000, 1, VIRTQ_DESC_F_NEXT, 0);
            },
            |e| matches!(e, QueueError::Loop { .. }),
        ),
        (
            "a loop inside an indirect table",
            |m| {
                desc(m, TABLE, 0, 0x8000, 1, VIRTQ_DESC_F_NEXT, 0);
                desc(m, DESC, 0, TABLE, 16, VIRTQ_DESC_F_INDIRECT, 0);
            },
            |e| matches!(e, QueueError::Loop { .. }),
        ),
        (
            "next past the table",
            |m| desc(m, DESC, 0, 0x8000, 1, VIRTQ_DESC_F_NEXT, SIZE),
            |e| matches!(e, QueueError::DescIndex { index: 8, .. }),
        ),
        (
            "an indirect table outside RAM",
            |m| desc(m, DESC, 0, (1 << 20) - 16, 32, VIRTQ_DESC_F_INDIRECT, 0),
            |e| matches!(e, QueueError::OutsideRam { .. }),
        ),
        (
            "an indirect table of 0 bytes",
            |m| desc(m, DESC, 0, TABLE, 0, VIRTQ_DESC_F_INDIRECT, 0),
            |e| matches!(e, QueueError::BadIndirectLen { len: 0, .. }),
        ),
        (
            "an indirect table of 20 bytes",
            |m| desc(m, DESC, 0, TABLE, 20, VIRTQ_DESC_F_INDIRECT, 0),
            |e| matches!(e, QueueError::BadIndirectLen { len: 20, .. }),
        ),
        (
            "an indirect table longer than the chain may be",
            |m| {
                for i in 0..=SIZE {
                    desc(m, TABLE, i, 0x8000, 1, VIRTQ_DESC_F_NEXT, i + 1);
                }
                desc(
                    m,
                    DESC,
                    0,
                    TABLE,
                    16 * (u32::from(SIZE) + 2),
                    VIRTQ_DESC_F_INDIRECT,
                    0,
                );
            },
            |e| matches!(e, QueueError::TooLong { .. }),
        ),
        (
            "a readable buffer after a writable one",
            |m| {
                desc(
                    m,
                    DESC,
                    0,
                    0x8000,
                    1,
                    VIRTQ_DESC_F_WRITE | VIRTQ_DESC_F_NEXT,
                    1,
                );
                desc(m, DESC, 1, 0x8000, 1, 0, 0);
            },
            |e| matches!(e, QueueError::ReadableAfterWritable { .. }),
        ),
        (
            "lengths adding up past 4 GiB",
            |m| {
                desc(m, DESC, 0, 0x8000, u32::MAX, VIRTQ_DESC_F_NEXT, 1);
                desc(m, DESC, 1, 0x8000, 2, 0, 0);
            },
            |e| matches!(e, QueueError::Oversized { .. }),
        ),
    ];
    for (what, make, expect) in cases {
        let (mem, mut q) = setup();
        make(&mem);
        offer(&mem, 0, 0);
        let mut c = Chain::new(SIZE);
        let r = q.pop(&mem, true, &mut c);
        assert!(matches!(r, Err(e) if expect(e)), "{what}: {r:?}");
        assert!(q.broken(), "{what}");
    }
}

#[test]
fn an_avail_index_past_the_queue_size_and_a_head_past_the_table_break_the_queue() {
    let (mem, mut q) = setup();
    mem.write_obj(AVAIL + 2, SIZE + 1).unwrap();
    let mut c = Chain::new(SIZE);
    assert_eq!(
        q.pop(&mem, false, &mut c),
        Err(QueueError::AvailIdxJump { last: 0, idx: 9 })
    );
    let (mem, mut q) = setup();
    offer(&mem, 0, 200);
    assert!(matches!(
        q.pop(&mem, false, &mut c),
        Err(QueueError::DescIndex { index: 200, .. })
    ));
}

#[test]
fn zero_length_and_out_of_ram_buffers_are_taken_and_fail_only_when_accessed() {
    let (mem, mut q) = setup();
    desc(&mem, DESC, 0, 0x8000, 0, VIRTQ_DESC_F_NEXT, 1);
    desc(&mem, DESC, 1, u64::MAX - 4, 512, VIRTQ_DESC_F_WRITE, 0);
    offer(&mem, 0, 0);
    let mut c = Chain::new(SIZE);
    assert!(q.pop(&mem, false, &mut c).unwrap());
    assert_eq!(c.readable_len(), 0);
    assert!(
        c.write(&mem, 0, &[1]).is_err(),
        "outside RAM: an error value"
    );
    assert!(!q.broken());
}

#[test]
fn queue_sizes_and_ring_places_are_checked_when_enabled() {
    let mem = GuestMemory::new(1 << 20);
    let mut q = Virtqueue::new(256);
    q.desc = DESC;
    q.avail = AVAIL;
    q.used = USED;
    for bad in [0, 3, 100, 512] {
        q.size = bad;
        assert!(
            matches!(q.check(&mem), Err(QueueError::BadSize { .. })),
            "{bad}"
        );
    }
    q.size = 128;
    assert_eq!(q.check(&mem), Ok(()));
    q.desc = DESC + 8;
    assert!(matches!(q.check(&mem), Err(QueueError::Misaligned { .. })));
    q.desc = DESC;
    q.used = USED + 2;
    assert!(matches!(q.check(&mem), Err(QueueError::Misaligned { .. })));
    q.used = (1 << 20) - 16;
    assert!(matches!(q.check(&mem), Err(QueueError::OutsideRam { .. })));
    // The legacy layout: used ring at the 4096-byte boundary after the avail ring.
    q.size = 256;
    q.set_legacy_pfn(0x10);
    assert_eq!((q.desc, q.avail, q.used), (0x10000, 0x11000, 0x12000));
}
