use super::*;
use alloc::format;
use alloc::string::ToString;
use alloc::vec;
use spin::Mutex;

/// What a device saw: (is_write, base, offset, bytes).
type Access = (bool, u64, u64, Vec<u8>);

/// A device that records every access and reads back `fill + offset` per byte.
struct Recorder {
    fill: u8,
    log: Vec<Access>,
}

impl Recorder {
    fn new(fill: u8) -> Arc<Mutex<Recorder>> {
        Arc::new(Mutex::new(Recorder {
            fill,
            log: Vec::new(),
        }))
    }
}

impl BusDevice for Recorder {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self.fill.wrapping_add(offset as u8).wrapping_add(i as u8);
        }
        self.log.push((false, base, offset, vec![0; data.len()]));
    }
    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        self.log.push((true, base, offset, data.to_vec()));
    }
}

/// A device that never touches the read buffer.
struct Silent;
impl BusDevice for Silent {
    fn read(&mut self, _: u64, _: u64, _: &mut [u8]) {}
    fn write(&mut self, _: u64, _: u64, _: &[u8]) {}
}

fn taken(dev: &Arc<Mutex<Recorder>>) -> Vec<Access> {
    core::mem::take(&mut dev.lock().log)
}

#[test]
fn pio_dispatch_goes_to_the_owner_with_base_and_offset() {
    let mut bus = Bus::new();
    let a = Recorder::new(0x10);
    let b = Recorder::new(0x40);
    bus.register_pio(0x3F8, 8, "com1", a.clone()).unwrap();
    bus.register_pio(0x2F8, 8, "com2", b.clone()).unwrap();

    assert_eq!(bus.pio_read(0x3FA, 1), 0x12);
    assert_eq!(taken(&a), vec![(false, 0x3F8, 2, vec![0])]);
    assert!(taken(&b).is_empty());

    bus.pio_write(0x2FF, 1, 0xAB);
    assert_eq!(taken(&b), vec![(true, 0x2F8, 7, vec![0xAB])]);
    assert!(taken(&a).is_empty());
    assert_eq!(bus.unclaimed(), UnclaimedStats::default());
}

#[test]
fn access_inside_one_range_is_one_call_of_full_width() {
    let mut bus = Bus::new();
    let a = Recorder::new(0x20);
    bus.register_pio(0xCF8, 8, "pci", a.clone()).unwrap();

    assert_eq!(bus.pio_read(0xCF8, 4), 0x2322_2120);
    assert_eq!(taken(&a), vec![(false, 0xCF8, 0, vec![0; 4])]);
    assert_eq!(bus.pio_read(0xCFC, 2), 0x2524);
    assert_eq!(taken(&a), vec![(false, 0xCF8, 4, vec![0; 2])]);

    bus.pio_write(0xCF8, 4, 0x8000_1234);
    bus.pio_write(0xCFE, 2, 0xBEEF);
    assert_eq!(
        taken(&a),
        vec![
            (true, 0xCF8, 0, vec![0x34, 0x12, 0x00, 0x80]),
            (true, 0xCF8, 6, vec![0xEF, 0xBE]),
        ]
    );
}

#[test]
fn pio_write_passes_only_the_low_bytes_of_the_value() {
    let mut bus = Bus::new();
    let a = Recorder::new(0);
    bus.register_pio(0x80, 4, "post", a.clone()).unwrap();
    bus.pio_write(0x80, 1, 0xDDCC_BBAA);
    bus.pio_write(0x80, 2, 0xDDCC_BBAA);
    assert_eq!(
        taken(&a),
        vec![
            (true, 0x80, 0, vec![0xAA]),
            (true, 0x80, 0, vec![0xAA, 0xBB])
        ]
    );
}

#[test]
fn a_device_that_leaves_the_buffer_alone_reads_all_ones() {
    let mut bus = Bus::new();
    bus.register_pio(0x60, 1, "silent", Arc::new(Mutex::new(Silent)))
        .unwrap();
    assert_eq!(bus.pio_read(0x60, 1), 0xFF);
    // Claimed: not counted as unclaimed.
    assert_eq!(bus.unclaimed(), UnclaimedStats::default());
}

#[test]
fn unclaimed_pio_reads_are_all_ones_of_each_width_and_counted() {
    let mut bus = Bus::new();
    assert_eq!(bus.pio_read(0x80, 1), 0xFF);
    assert_eq!(bus.pio_read(0x80, 2), 0xFFFF);
    assert_eq!(bus.pio_read(0x80, 4), 0xFFFF_FFFF);
    bus.pio_write(0x80, 1, 0);
    bus.pio_write(0x80, 4, 0);
    assert_eq!(
        bus.unclaimed(),
        UnclaimedStats {
            pio_reads: 3,
            pio_writes: 2,
            mmio_reads: 0,
            mmio_writes: 0,
        }
    );
}

#[test]
fn unclaimed_mmio_reads_are_all_ones_and_counted() {
    let mut bus = Bus::new();
    for len in 1..=8 {
        let mut data = vec![0u8; len];
        bus.mmio_read(0xFEE0_0000, &mut data);
        assert_eq!(data, vec![0xFF; len], "width {len}");
    }
    bus.mmio_write(0xFEE0_0000, &[1, 2, 3, 4]);
    assert_eq!(
        bus.unclaimed(),
        UnclaimedStats {
            pio_reads: 0,
            pio_writes: 0,
            mmio_reads: 8,
            mmio_writes: 1,
        }
    );
}

#[test]
fn more_than_the_log_limit_of_unclaimed_accesses_keep_being_counted() {
    let mut bus = Bus::new();
    for _ in 0..(UNCLAIMED_LOG_LIMIT + 10) {
        assert_eq!(bus.pio_read(0x80, 1), 0xFF);
    }
    assert_eq!(bus.unclaimed().pio_reads, UNCLAIMED_LOG_LIMIT + 10);
}

#[test]
fn invalid_pio_sizes_are_unclaimed_and_do_not_reach_the_device() {
    let mut bus = Bus::new();
    let a = Recorder::new(0);
    bus.register_pio(0x3F8, 8, "com1", a.clone()).unwrap();
    for size in [0u8, 3, 5, 8, 255] {
        assert_eq!(bus.pio_read(0x3F8, size), 0xFFFF_FFFF, "size {size}");
        bus.pio_write(0x3F8, size, 0x41);
    }
    assert!(taken(&a).is_empty());
    assert_eq!(bus.unclaimed().pio_reads, 5);
    assert_eq!(bus.unclaimed().pio_writes, 5);
}

#[test]
fn invalid_mmio_sizes_are_unclaimed_and_do_not_reach_the_device() {
    let mut bus = Bus::new();
    let a = Recorder::new(0);
    bus.register_mmio(0x1000, 0x1000, "dev", a.clone()).unwrap();
    let mut empty: [u8; 0] = [];
    bus.mmio_read(0x1000, &mut empty);
    let mut wide = [0u8; 9];
    bus.mmio_read(0x1000, &mut wide);
    assert_eq!(wide, [0xFF; 9]);
    bus.mmio_write(0x1000, &[]);
    bus.mmio_write(0x1000, &[0; 16]);
    assert!(taken(&a).is_empty());
    assert_eq!(bus.unclaimed().mmio_reads, 2);
    assert_eq!(bus.unclaimed().mmio_writes, 2);
}

#[test]
fn straddling_two_devices_is_split_into_bytes() {
    let mut bus = Bus::new();
    let a = Recorder::new(0x10);
    let b = Recorder::new(0x80);
    bus.register_pio(0x100, 2, "a", a.clone()).unwrap();
    bus.register_pio(0x102, 2, "b", b.clone()).unwrap();

    // Bytes 0x101 (a, offset 1), 0x102 (b, 0), 0x103 (b, 1), 0x104 (nothing).
    assert_eq!(bus.pio_read(0x101, 4), 0xFF81_8011);
    assert_eq!(taken(&a), vec![(false, 0x100, 1, vec![0])]);
    assert_eq!(
        taken(&b),
        vec![(false, 0x102, 0, vec![0]), (false, 0x102, 1, vec![0])]
    );
    assert_eq!(bus.unclaimed().pio_reads, 1);

    bus.pio_write(0x101, 2, 0xBBAA);
    assert_eq!(taken(&a), vec![(true, 0x100, 1, vec![0xAA])]);
    assert_eq!(taken(&b), vec![(true, 0x102, 0, vec![0xBB])]);
    assert_eq!(bus.unclaimed().pio_writes, 0);
}

#[test]
fn access_starting_in_a_hole_and_ending_in_a_device_is_split() {
    let mut bus = Bus::new();
    let a = Recorder::new(0x30);
    bus.register_pio(0x71, 1, "a", a.clone()).unwrap();
    assert_eq!(bus.pio_read(0x70, 2), 0x30FF);
    assert_eq!(taken(&a), vec![(false, 0x71, 0, vec![0])]);
    assert_eq!(bus.unclaimed().pio_reads, 1);
}

#[test]
fn access_next_to_a_device_but_not_touching_it_is_one_unclaimed_access() {
    let mut bus = Bus::new();
    let a = Recorder::new(0);
    bus.register_pio(0x70, 2, "rtc", a.clone()).unwrap();
    assert_eq!(bus.pio_read(0x72, 4), 0xFFFF_FFFF);
    assert_eq!(bus.pio_read(0x6C, 4), 0xFFFF_FFFF);
    assert!(taken(&a).is_empty());
    assert_eq!(bus.unclaimed().pio_reads, 2);
}

#[test]
fn mmio_straddling_is_split_and_whole_access_is_one_call() {
    let mut bus = Bus::new();
    let a = Recorder::new(0x00);
    let b = Recorder::new(0x50);
    bus.register_mmio(0xFED0_0000, 0x400, "hpet", a.clone())
        .unwrap();
    bus.register_mmio(0xFED0_0400, 0x400, "other", b.clone())
        .unwrap();

    let mut data = [0u8; 8];
    bus.mmio_read(0xFED0_0010, &mut data);
    assert_eq!(data, [0x10, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17]);
    assert_eq!(taken(&a), vec![(false, 0xFED0_0000, 0x10, vec![0; 8])]);

    bus.mmio_write(0xFED0_03FE, &[1, 2, 3, 4]);
    assert_eq!(
        taken(&a),
        vec![
            (true, 0xFED0_0000, 0x3FE, vec![1]),
            (true, 0xFED0_0000, 0x3FF, vec![2]),
        ]
    );
    assert_eq!(
        taken(&b),
        vec![
            (true, 0xFED0_0400, 0, vec![3]),
            (true, 0xFED0_0400, 1, vec![4]),
        ]
    );
}

#[test]
fn port_ffff_does_not_wrap() {
    let mut bus = Bus::new();
    let low = Recorder::new(0x00);
    let top = Recorder::new(0x77);
    bus.register_pio(0, 4, "low", low.clone()).unwrap();
    // No device at 0xFFFF: one unclaimed access, all-ones.
    assert_eq!(bus.pio_read(0xFFFF, 4), 0xFFFF_FFFF);
    bus.pio_write(0xFFFF, 4, 0x1234_5678);
    assert!(taken(&low).is_empty());
    assert_eq!(bus.unclaimed().pio_reads, 1);
    assert_eq!(bus.unclaimed().pio_writes, 1);

    // A device at 0xFFFF gets its byte; the rest reach nothing.
    bus.register_pio(0xFFFF, 1, "top", top.clone()).unwrap();
    assert_eq!(bus.pio_read(0xFFFF, 4), 0xFFFF_FF77);
    bus.pio_write(0xFFFE, 4, 0x1234_5678);
    assert_eq!(
        taken(&top),
        vec![(false, 0xFFFF, 0, vec![0]), (true, 0xFFFF, 0, vec![0x56])]
    );
    assert!(taken(&low).is_empty());
    assert_eq!(bus.unclaimed().pio_reads, 1 + 3);
    assert_eq!(bus.unclaimed().pio_writes, 1 + 3);
}

#[test]
fn mmio_at_the_top_of_the_address_space_does_not_wrap() {
    let mut bus = Bus::new();
    let low = Recorder::new(0);
    let top = Recorder::new(0x40);
    bus.register_mmio(0, 0x10, "low", low.clone()).unwrap();
    bus.register_mmio(u64::MAX - 1, 2, "top", top.clone())
        .unwrap();
    let mut data = [0u8; 4];
    bus.mmio_read(u64::MAX - 1, &mut data);
    assert_eq!(data, [0x40, 0x41, 0xFF, 0xFF]);
    assert!(taken(&low).is_empty());
    let mut data = [0u8; 2];
    bus.mmio_read(u64::MAX - 1, &mut data);
    assert_eq!(data, [0x40, 0x41]);
}

#[test]
fn overlapping_registration_is_refused_naming_both_devices() {
    let mut bus = Bus::new();
    bus.register_pio(0x3F8, 8, "com1", Recorder::new(0))
        .unwrap();
    for (base, len) in [
        (0x3F8, 8),
        (0x3F0, 9),
        (0x3FF, 1),
        (0x3FA, 2),
        (0x300, 0x200),
    ] {
        let err = bus
            .register_pio(base, len, "intruder", Recorder::new(0))
            .unwrap_err();
        assert_eq!(
            err,
            BusError::Overlap {
                space: AddressSpace::Pio,
                name: "intruder",
                base: base.into(),
                len: len.into(),
                existing: "com1",
                existing_base: 0x3F8,
                existing_len: 8,
            }
        );
        let msg = err.to_string();
        assert!(
            msg.contains("'intruder'") && msg.contains("'com1'"),
            "{msg}"
        );
    }
    // Adjacent ranges on either side are fine.
    bus.register_pio(0x3F0, 8, "below", Recorder::new(0))
        .unwrap();
    bus.register_pio(0x400, 1, "above", Recorder::new(0))
        .unwrap();
}

#[test]
fn overlap_is_found_whatever_the_registration_order() {
    let mut bus = Bus::new();
    bus.register_mmio(0x3000, 0x1000, "c", Recorder::new(0))
        .unwrap();
    bus.register_mmio(0x1000, 0x1000, "a", Recorder::new(0))
        .unwrap();
    bus.register_mmio(0x2000, 0x1000, "b", Recorder::new(0))
        .unwrap();
    let err = bus
        .register_mmio(0x2FFF, 2, "x", Recorder::new(0))
        .unwrap_err();
    assert!(matches!(err, BusError::Overlap { existing: "b", .. }));
    let err = bus
        .register_mmio(0x0, 0x1001, "y", Recorder::new(0))
        .unwrap_err();
    assert!(matches!(err, BusError::Overlap { existing: "a", .. }));
}

#[test]
fn dispatch_finds_each_of_many_ranges() {
    let mut bus = Bus::new();
    let devs: Vec<_> = (0..32u16).map(|i| Recorder::new(i as u8 * 4)).collect();
    // Register out of order.
    for i in (0..32u16).rev().step_by(2).chain((0..32u16).step_by(2)) {
        bus.register_pio(0x1000 + i * 0x10, 4, "many", devs[usize::from(i)].clone())
            .unwrap();
    }
    for i in 0..32u16 {
        assert_eq!(
            bus.pio_read(0x1000 + i * 0x10 + 3, 1),
            u32::from(i as u8 * 4 + 3)
        );
        assert_eq!(bus.pio_read(0x1000 + i * 0x10 + 4, 1), 0xFF);
    }
    assert_eq!(bus.unclaimed().pio_reads, 32);
}

#[test]
fn empty_and_wrapping_ranges_are_refused() {
    let mut bus = Bus::new();
    assert_eq!(
        bus.register_pio(0x80, 0, "nothing", Recorder::new(0)),
        Err(BusError::Empty {
            space: AddressSpace::Pio,
            name: "nothing",
            base: 0x80,
        })
    );
    assert!(matches!(
        bus.register_pio(0xFFF0, 0x11, "wraps", Recorder::new(0)),
        Err(BusError::Wraps { name: "wraps", .. })
    ));
    assert!(matches!(
        bus.register_mmio(u64::MAX, 2, "wraps", Recorder::new(0)),
        Err(BusError::Wraps { .. })
    ));
    assert!(matches!(
        bus.register_mmio(0x1000, 0, "nothing", Recorder::new(0)),
        Err(BusError::Empty { .. })
    ));
    // Exactly reaching the end is fine.
    bus.register_pio(0xFFF0, 0x10, "top", Recorder::new(0))
        .unwrap();
    bus.register_mmio(u64::MAX, 1, "top", Recorder::new(0))
        .unwrap();
    let msg = format!(
        "{}",
        bus.register_pio(0xFFFF, 2, "x", Recorder::new(0))
            .unwrap_err()
    );
    assert!(msg.contains("'x'") && msg.contains("0xffff"), "{msg}");
}

#[test]
fn pio_and_mmio_are_separate_spaces() {
    let mut bus = Bus::new();
    let p = Recorder::new(0x11);
    let m = Recorder::new(0x22);
    bus.register_pio(0x80, 1, "p", p.clone()).unwrap();
    bus.register_mmio(0x80, 1, "m", m.clone()).unwrap();
    assert_eq!(bus.pio_read(0x80, 1), 0x11);
    let mut data = [0u8; 1];
    bus.mmio_read(0x80, &mut data);
    assert_eq!(data, [0x22]);
    assert_eq!(taken(&p).len(), 1);
    assert_eq!(taken(&m).len(), 1);
}

#[test]
fn every_port_and_size_is_safe_on_a_populated_bus() {
    let mut bus = Bus::new();
    bus.register_pio(0x0, 1, "a", Recorder::new(0)).unwrap();
    bus.register_pio(0x3F8, 8, "b", Recorder::new(0)).unwrap();
    bus.register_pio(0xFFFD, 2, "c", Recorder::new(0)).unwrap();
    for port in (0..=0xFFFFu16).step_by(7).chain(0xFFF8..=0xFFFF) {
        for size in 0..=9u8 {
            let v = bus.pio_read(port, size);
            if size == 1 {
                assert!(v <= 0xFF);
            } else if size == 2 {
                assert!(v <= 0xFFFF);
            }
            bus.pio_write(port, size, 0xFFFF_FFFF);
        }
    }
}

use log_capture as capture;

#[test]
fn the_first_sixteen_unclaimed_accesses_are_logged_then_only_counted() {
    capture::start();
    let mut bus = Bus::new();
    assert_eq!(bus.pio_read(0x80, 2), 0xFFFF);
    bus.pio_write(0x81, 4, 0);
    let mut data = [0u8; 8];
    bus.mmio_read(0xFEC0_0000, &mut data);
    assert_eq!(bus.pio_read(0x3F8, 3), 0xFFFF_FFFF);
    for _ in 0..20 {
        bus.pio_read(0x80, 1);
    }
    let records = capture::records();
    assert_eq!(records.len(), 16, "{records:?}");
    assert!(records.iter().all(|(level, _)| *level == log::Level::Debug));
    assert_eq!(records[0].1, "unclaimed port read at 0x80, size 2");
    assert_eq!(records[1].1, "unclaimed port write at 0x81, size 4");
    assert_eq!(records[2].1, "unclaimed MMIO read at 0xfec00000, size 8");
    assert_eq!(
        records[3].1,
        "port read at 0x3f8 has invalid size 3; treated as unclaimed"
    );
    assert!(records[15]
        .1
        .ends_with("further unclaimed accesses are only counted"));
    assert_eq!(bus.unclaimed().pio_reads, 22);
}

#[test]
fn unregister_removes_only_that_range() {
    let mut bus = Bus::new();
    let a = Recorder::new(0x10);
    bus.register_pio(0x60, 1, "kbd-data", a.clone()).unwrap();
    bus.register_pio(0x64, 1, "kbd-status", a.clone()).unwrap();
    assert!(bus.unregister(AddressSpace::Pio, 0x60).is_some());
    assert!(bus.unregister(AddressSpace::Pio, 0x60).is_none());
    assert_eq!(bus.pio_read(0x60, 1), 0xff);
    assert_eq!(bus.pio_read(0x64, 1), 0x10);
}

#[test]
fn ranges_lists_every_registration_in_order() {
    let mut bus = Bus::new();
    assert_eq!(bus.ranges().count(), 0);
    bus.register_mmio(
        u64::MAX - 0xFFF,
        0x1000,
        "top",
        Arc::new(Mutex::new(Silent)),
    )
    .unwrap();
    bus.register_pio(0x3F8, 8, "com1", Recorder::new(0))
        .unwrap();
    bus.register_pio(0x20, 2, "pic", Recorder::new(0)).unwrap();
    let mmio = |base, len, name| RangeInfo {
        space: AddressSpace::Mmio,
        base,
        len,
        name,
    };
    let pio = |base, len, name| RangeInfo {
        space: AddressSpace::Pio,
        base,
        len,
        name,
    };
    assert_eq!(
        bus.ranges().collect::<Vec<_>>(),
        vec![
            pio(0x20, 2, "pic"),
            pio(0x3F8, 8, "com1"),
            mmio(u64::MAX - 0xFFF, 0x1000, "top")
        ]
    );
    let pic = bus.unregister(AddressSpace::Pio, 0x20).unwrap();
    bus.register_pio(0x4000, 2, "pic", pic).unwrap();
    bus.unregister(AddressSpace::Pio, 0x3F8);
    assert_eq!(
        bus.ranges().collect::<Vec<_>>(),
        vec![pio(0x4000, 2, "pic"), mmio(u64::MAX - 0xFFF, 0x1000, "top")]
    );
}

#[test]
fn device_indexes_are_per_name_and_survive_a_move() {
    let mut bus = Bus::new();
    let a = Recorder::new(0);
    let b = Recorder::new(0);
    bus.register_pio(0x60, 1, "i8042 data", a.clone()).unwrap();
    bus.register_pio(0x64, 1, "i8042 command", a.clone())
        .unwrap();
    bus.register_mmio(0xFED0_0000, 0x400, "HPET", b.clone())
        .unwrap();
    bus.register_pio(0xC000, 16, "bar", b.clone()).unwrap();

    let data = bus.device_at(AddressSpace::Pio, 0x60).unwrap();
    let command = bus.device_at(AddressSpace::Pio, 0x64).unwrap();
    let hpet = bus.device_at(AddressSpace::Mmio, 0xFED0_03FF).unwrap();
    assert_ne!(data, command);
    assert_eq!(bus.device_name(data), Some("i8042 data"));
    assert_eq!(bus.device_name(command), Some("i8042 command"));
    assert_eq!(bus.device_name(hpet), Some("HPET"));
    assert_eq!(bus.device_at(AddressSpace::Pio, 0x61), None);
    assert_eq!(bus.device_at(AddressSpace::Mmio, 0xFED0_0400), None);

    // A BAR the guest moves, again and again: the same index, no new name.
    let bar = bus.device_at(AddressSpace::Pio, 0xC00F).unwrap();
    for i in 0..100u16 {
        let old = 0xC000 + (i % 2) * 0x100;
        let dev = bus.unregister(AddressSpace::Pio, old.into()).unwrap();
        bus.register_pio(old ^ 0x100, 16, "bar", dev).unwrap();
    }
    // An even number of moves: back at 0xC000.
    assert_eq!(bus.device_at(AddressSpace::Pio, 0xC100), None);
    assert_eq!(bus.device_at(AddressSpace::Pio, 0xC000), Some(bar));
    assert_eq!(bus.names.len(), 4);
    assert_eq!(bus.device_name(4), None);
}
