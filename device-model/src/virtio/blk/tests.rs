//! virtio-blk requests against virtio 1.2 5.2, through the PCI transport.

use super::super::pci::Transport;
use super::super::test_driver::*;
use super::*;
use crate::storage::{BlockError, RamDisk};
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering::Relaxed};

fn started(sectors: usize, read_only: bool) -> Driver {
    let mut d = machine(sectors, read_only, Transport::Modern);
    d.start(super::super::feature::RING_INDIRECT_DESC);
    d
}

/// A RAM disk that offers its bytes in place and counts the sectors that
/// went through [`BlockBackend::read_sectors`] / `write_sectors` instead.
struct InPlaceDisk {
    disk: RamDisk,
    bounced: Arc<AtomicUsize>,
}

impl BlockBackend for InPlaceDisk {
    fn name(&self) -> &str {
        self.disk.name()
    }
    fn capacity(&self) -> u64 {
        self.disk.capacity()
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.bounced.fetch_add(buf.len() / 512, Relaxed);
        self.disk.read_sectors(lba, buf)
    }
    fn sectors(&self, lba: u64, len: usize) -> Option<&[u8]> {
        self.disk.sectors(lba, len)
    }
    fn sectors_mut(&mut self, lba: u64, len: usize) -> Option<&mut [u8]> {
        self.disk.sectors_mut(lba, len)
    }
    fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.bounced.fetch_add(buf.len() / 512, Relaxed);
        self.disk.write_sectors(lba, buf)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

/// A started driver over an [`InPlaceDisk`] of `sectors`, each filled with
/// its sector number's low byte, and its count of bounced sectors.
fn started_in_place(sectors: usize, read_only: bool) -> (Driver, Arc<AtomicUsize>) {
    let bytes: Vec<u8> = (0..sectors * 512).map(|i| (i / 512) as u8).collect();
    let bounced = Arc::new(AtomicUsize::new(0));
    let disk = InPlaceDisk {
        disk: RamDisk::new("in-place", bytes).unwrap(),
        bounced: bounced.clone(),
    };
    let blk = VirtioBlk::new(VirtioBlkConfig { read_only }, Box::new(disk));
    let mut d = machine_with(blk, Transport::Modern);
    d.start(super::super::feature::RING_INDIRECT_DESC);
    (d, bounced)
}

/// A discard or write-zeroes request through slot `slot` for `sectors`
/// from `lba` with segment flags `flags` (one 16-byte segment, 5.2.6);
/// its status.
fn range_request(d: &mut Driver, slot: u16, kind: u32, lba: u64, sectors: u32, flags: u32) -> u8 {
    let (head, seg, st) = d.request(slot, kind, 0, 1, 16, true);
    d.ram.write_obj(seg, lba).unwrap();
    d.ram.write_obj(seg + 8, sectors).unwrap();
    d.ram.write_obj(seg + 12, flags).unwrap();
    d.offer(head);
    d.notify();
    d.ram.read_obj::<u8>(st).unwrap()
}

/// Reads `sectors` from `lba` through request slot `slot`; the bytes, or
/// the status when it is not OK.
fn read_back(d: &mut Driver, slot: u16, lba: u64, sectors: u16) -> Result<Vec<u8>, u8> {
    let (head, data, st) = d.request(slot, req::IN, lba, sectors, 512, true);
    d.offer(head);
    d.notify();
    match d.ram.read_obj::<u8>(st).unwrap() {
        blk_status::OK => {
            let mut got = vec![0u8; usize::from(sectors) * 512];
            d.ram.read(data, &mut got).unwrap();
            Ok(got)
        }
        status => Err(status),
    }
}

#[test]
fn the_configuration_holds_capacity_limits_and_features() {
    let mut d = machine(4096, false, Transport::Modern);
    assert_eq!(d.device_cfg(cfg::CAPACITY, 8), 4096);
    assert_eq!(d.device_cfg(cfg::SEG_MAX, 4), u64::from(SEG_MAX));
    assert_eq!(d.device_cfg(cfg::SIZE_MAX, 4), u64::from(SIZE_MAX));
    assert_eq!(d.device_cfg(cfg::BLK_SIZE, 4), 512);
    assert_eq!(d.device_cfg(cfg::MAX_DISCARD_SEG, 4), 1);
    let f = d.device_features();
    for bit in [
        feature::SEG_MAX,
        feature::SIZE_MAX,
        feature::FLUSH,
        feature::DISCARD,
        feature::WRITE_ZEROES,
    ] {
        assert_ne!(f & bit, 0, "{bit:#x}");
    }
    assert_eq!(f & feature::RO, 0);
    let mut r = machine(8, true, Transport::Modern);
    assert_ne!(r.device_features() & feature::RO, 0);
}

#[test]
fn a_multi_segment_write_reaches_the_disk_and_reads_back_through_an_indirect_table() {
    let mut d = started(4096, false);
    let (head, data, st) = d.request(0, req::OUT, 100, 8, 4096, true);
    let pattern: Vec<u8> = (0..8 * 4096).map(|i| (i * 7 + 3) as u8).collect();
    d.ram.write(data, &pattern).unwrap();
    d.offer(head);
    d.notify();
    assert_eq!(
        d.used(),
        [(u32::from(head), 1)],
        "only the status byte written"
    );
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::OK);
    assert_eq!(d.disk_bytes(100, pattern.len()), pattern);
    // Read it back into other buffers, direct descriptors this time.
    let (head, data, st) = d.request(1, req::IN, 100, 8, 4096, false);
    d.offer(head);
    d.notify();
    assert_eq!(d.used(), [(u32::from(head), 8 * 4096 + 1)]);
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::OK);
    let mut got = vec![0u8; pattern.len()];
    d.ram.read(data, &mut got).unwrap();
    assert_eq!(got, pattern);
}

#[test]
fn a_long_request_moves_a_bounded_amount_per_pass_and_completes_in_service() {
    a_long_request_is_bounded(started(8192, false));
    let (d, bounced) = started_in_place(8192, false);
    a_long_request_is_bounded(d);
    assert_eq!(bounced.load(Relaxed), 0);
}

fn a_long_request_is_bounded(mut d: Driver) {
    // 254 segments of 16 KiB: 4 MiB, eight passes' worth.
    let (head, data, st) = d.request(0, req::IN, 0, 254, 16 << 10, true);
    d.offer(head);
    d.notify();
    assert!(
        d.used().is_empty(),
        "not done within the notification's pass"
    );
    let mut passes = 1;
    while d.pc.next_deadline_ns() == Some(0) && passes < 100 {
        d.pc.service();
        passes += 1;
        if !d.used().is_empty() {
            break;
        }
    }
    let total: usize = 254 * (16 << 10);
    assert_eq!(
        passes,
        total.div_ceil(PASS_BUDGET),
        "{PASS_BUDGET} bytes per pass"
    );
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::OK);
    let last = data + total as u64 - 1;
    assert_eq!(
        d.ram.read_obj::<u8>(last).unwrap(),
        ((total - 1) / 512) as u8
    );
}

#[test]
fn several_requests_complete_in_one_batch_with_one_interrupt() {
    let mut d = started(4096, false);
    d.enable_msix();
    for slot in 0..4 {
        let (head, _, _) = d.request(slot, req::IN, u64::from(slot), 1, 512, true);
        d.offer(head);
    }
    d.notify();
    assert_eq!(d.used().len(), 4);
    assert_eq!(d.take_interrupt(), Some(MSI_VECTOR_QUEUE));
    assert_eq!(d.take_interrupt(), None, "one interrupt for the batch");
}

#[test]
fn a_read_only_disk_refuses_writes_discards_and_write_zeroes() {
    let mut d = started(64, true);
    for (slot, kind) in [(0u16, req::OUT), (1, req::DISCARD), (2, req::WRITE_ZEROES)] {
        let (head, data, st) = d.request(
            slot,
            kind,
            1,
            1,
            if kind == req::OUT { 512 } else { 16 },
            true,
        );
        if kind != req::OUT {
            d.ram.write_obj(data, 1u64).unwrap();
            d.ram.write_obj(data + 8, 1u32).unwrap();
        }
        d.offer(head);
        d.notify();
        assert_eq!(
            d.ram.read_obj::<u8>(st).unwrap(),
            blk_status::IOERR,
            "type {kind}"
        );
    }
    assert_eq!(d.disk_bytes(1, 512), vec![1u8; 512], "unchanged");
    let (head, _, st) = d.request(3, req::IN, 1, 1, 512, true);
    d.offer(head);
    d.notify();
    assert_eq!(
        d.ram.read_obj::<u8>(st).unwrap(),
        blk_status::OK,
        "reads work"
    );
}

#[test]
fn write_zeroes_discard_flush_and_get_id() {
    let mut d = started(64, false);
    // Write zeroes to sectors 4..6 (one 16-byte segment).
    assert_eq!(
        range_request(&mut d, 0, req::WRITE_ZEROES, 4, 2, 0),
        blk_status::OK
    );
    assert_eq!(d.disk_bytes(4, 1024), vec![0u8; 1024]);
    assert_eq!(d.disk_bytes(6, 512), vec![6u8; 512]);
    // Discard with the unmap flag: reserved for discard (5.2.6.2).
    let (head, seg, st) = d.request(1, req::DISCARD, 0, 1, 16, true);
    d.ram.write_obj(seg, 8u64).unwrap();
    d.ram.write_obj(seg + 8, 2u32).unwrap();
    d.ram.write_obj(seg + 12, 1u32).unwrap();
    d.offer(head);
    d.notify();
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::UNSUPP);
    d.ram.write_obj(seg + 12, 0u32).unwrap();
    d.offer(head);
    d.notify();
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::OK);
    // A discard past the end.
    d.ram.write_obj(seg, 63u64).unwrap();
    d.offer(head);
    d.notify();
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::IOERR);
    // Flush: header and status only.
    let (head, _, st) = d.request(2, req::FLUSH, 0, 0, 0, true);
    d.offer(head);
    d.notify();
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::OK);
    // GET_ID: 20 bytes, the backend's name zero-padded.
    let (head, data, st) = d.request(3, req::GET_ID, 0, 1, 20, true);
    d.offer(head);
    d.notify();
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::OK);
    let mut id = [0u8; 20];
    d.ram.read(data, &mut id).unwrap();
    assert_eq!(&id[..7], b"shared\0");
    let used = d.used();
    assert_eq!(used.last(), Some(&(u32::from(head), 21)));
    // An unknown type.
    let (head, _, st) = d.request(4, 99, 0, 0, 0, true);
    d.offer(head);
    d.notify();
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::UNSUPP);
}

#[test]
fn hostile_requests_get_ioerr_and_the_queue_goes_on() {
    hostile_requests(started(64, false));
    hostile_requests(started_in_place(64, false).0);
}

fn hostile_requests(mut d: Driver) {
    // Past the end of the disk.
    let (head, _, st) = d.request(0, req::IN, 63, 2, 512, true);
    d.offer(head);
    d.notify();
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::IOERR);
    // Not whole sectors.
    let (head, _, st) = d.request(1, req::IN, 0, 1, 100, true);
    d.offer(head);
    d.notify();
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::IOERR);
    // A sector number that overflows.
    let (head, _, st) = d.request(2, req::OUT, u64::MAX, 1, 512, true);
    d.offer(head);
    d.notify();
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::IOERR);
    // A data buffer outside guest RAM.
    let (head, _, st) = d.request(3, req::IN, 0, 1, 512, true);
    let table = BUFS + 3 * 0x10_0000 + 0x8_0000;
    d.ram.write_obj(table + 16, (RAM as u64) - 256).unwrap();
    d.offer(head);
    d.notify();
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::IOERR);
    // A write whose second buffer runs past the end of guest RAM.
    let (head, _, st) = d.request(4, req::OUT, 8, 2, 512, true);
    let table = BUFS + 4 * 0x10_0000 + 0x8_0000;
    d.ram.write_obj(table + 32, (RAM as u64) - 256).unwrap();
    d.offer(head);
    d.notify();
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::IOERR);
    assert_eq!(d.used().len(), 5);
    assert_eq!(d.status() & super::super::status::DEVICE_NEEDS_RESET, 0);
    // And a good one after them.
    let (head, _, st) = d.request(5, req::IN, 5, 1, 512, true);
    d.offer(head);
    d.notify();
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::OK);
}

#[test]
fn a_flood_of_tiny_requests_is_bounded_per_pass() {
    let mut d = started(64, false);
    // 256 flushes available at once, all the same chain.
    let (head, _, _) = d.request(0, req::FLUSH, 0, 0, 0, true);
    for _ in 0..QSIZE {
        d.offer(head);
    }
    d.notify();
    let first = d.used().len();
    assert_eq!(first, PASS_BUDGET / MIN_REQUEST_COST);
    while d.pc.next_deadline_ns() == Some(0) {
        d.pc.service();
    }
    assert_eq!(first + d.used().len(), usize::from(QSIZE));
}

#[test]
fn an_in_memory_disk_moves_data_in_place_not_through_the_bounce_buffer() {
    let (mut d, bounced) = started_in_place(4096, false);
    let (head, data, st) = d.request(0, req::OUT, 100, 8, 4096, true);
    let pattern: Vec<u8> = (0..8 * 4096).map(|i| (i * 7 + 3) as u8).collect();
    d.ram.write(data, &pattern).unwrap();
    d.offer(head);
    d.notify();
    assert_eq!(d.used(), [(u32::from(head), 1)]);
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::OK);
    // Zeroes over sectors 104..106, inside what was just written.
    assert_eq!(
        range_request(&mut d, 1, req::WRITE_ZEROES, 104, 2, 0),
        blk_status::OK
    );
    // Sectors 99..165 back: the one before, the write with the zeroes in
    // it, the one after.
    let mut want = vec![99u8; 512];
    want.extend_from_slice(&pattern);
    want[5 * 512..7 * 512].fill(0);
    want.extend_from_slice(&[164u8; 512]);
    assert_eq!(read_back(&mut d, 2, 99, 66), Ok(want));
    assert_eq!(
        bounced.load(Relaxed),
        0,
        "no sector went through the bounce buffer"
    );
}

#[test]
fn a_read_only_in_memory_disk_is_not_written_in_place() {
    let (mut d, _) = started_in_place(64, true);
    let (head, data, st) = d.request(0, req::OUT, 1, 1, 512, true);
    d.ram.write(data, &[0xAB; 512]).unwrap();
    d.offer(head);
    d.notify();
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::IOERR);
    assert_eq!(read_back(&mut d, 1, 1, 1), Ok(vec![1u8; 512]), "unchanged");
}
