extern crate std;

use super::*;
use alloc::string::ToString;

fn table(stats: &ExitStats, names: &[&'static str]) -> String {
    let mut s = String::new();
    stats
        .write_table(|i| names.get(usize::from(i)).copied(), &mut s)
        .unwrap();
    s
}

fn rows(table: &str) -> Vec<ExitRow> {
    table.lines().filter_map(ExitRow::parse).collect()
}

fn row<'a>(rows: &'a [ExitRow], label: &str) -> &'a ExitRow {
    rows.iter()
        .find(|r| r.label == label)
        .unwrap_or_else(|| panic!("no row '{label}' in {rows:?}"))
}

#[test]
fn exits_add_to_their_kind_and_device() {
    let s = ExitStats::new();
    let com1 = ExitClass {
        kind: ExitKind::Io,
        device: Some(3),
    };
    s.exit(com1, 100);
    s.keel(com1, 40);
    s.exit(com1, 300);
    s.keel(com1, 60);
    let unclaimed = ExitClass {
        kind: ExitKind::Io,
        device: None,
    };
    s.exit(unclaimed, 10);
    s.keel(unclaimed, 5);
    s.exit(ExitClass::of(ExitKind::Cpuid), 7);
    s.keel(ExitClass::of(ExitKind::Cpuid), 3);

    assert_eq!(
        s.kind(ExitKind::Io),
        Counter {
            count: 3,
            keel_cycles: 105,
            guest_cycles: 410
        }
    );
    assert_eq!(
        s.device(Space::Pio, Some(3)),
        Counter {
            count: 2,
            keel_cycles: 100,
            guest_cycles: 400
        }
    );
    assert_eq!(s.device(Space::Pio, None).count, 1);
    assert_eq!(s.device(Space::Mmio, Some(3)), Counter::default());
    assert_eq!(s.kind(ExitKind::Cpuid).count, 1);
    assert_eq!(
        s.total(),
        Counter {
            count: 4,
            keel_cycles: 108,
            guest_cycles: 417
        }
    );
}

#[test]
fn device_indexes_past_the_table_share_one_row() {
    let s = ExitStats::new();
    let far = |i| ExitClass {
        kind: ExitKind::NestedPageFault,
        device: Some(i),
    };
    s.exit(far(MAX_DEVICES as u16), 1);
    s.exit(far(u16::MAX), 1);
    s.exit(far(MAX_DEVICES as u16 - 1), 1);
    assert_eq!(s.device(Space::Mmio, Some(u16::MAX)).count, 2);
    assert_eq!(s.device(Space::Mmio, Some(MAX_DEVICES as u16 - 1)).count, 1);
    let t = table(&s, &[]);
    let r = rows(&t);
    assert_eq!(row(&r, "npf: (device 64+)").count, 2, "{t}");
    assert_eq!(row(&r, "npf: (device 63)").count, 1, "{t}");
}

#[test]
fn the_table_reads_back_with_counts_shares_and_means() {
    let s = ExitStats::new();
    for _ in 0..3 {
        let c = ExitClass {
            kind: ExitKind::Io,
            device: Some(1),
        };
        s.exit(c, 1000);
        s.keel(c, 200);
    }
    let hpet = ExitClass {
        kind: ExitKind::NestedPageFault,
        device: Some(0),
    };
    s.exit(hpet, 500);
    s.keel(hpet, 100);
    let t = table(&s, &["HPET", "i8042 data"]);
    assert!(t.starts_with("exit reason "), "{t}");
    assert!(t.ends_with('\n'));
    let r = rows(&t);
    // Kinds most frequent first, each followed by its devices, then the total.
    let labels: Vec<&str> = r.iter().map(|r| r.label.as_str()).collect();
    assert_eq!(
        labels,
        ["io", "io: i8042 data", "npf", "npf: HPET", "total"]
    );
    let io = row(&r, "io");
    assert_eq!(
        (io.count, io.per_mille, io.keel_cycles, io.keel_mean),
        (3, 750, 600, 200)
    );
    assert_eq!((io.guest_cycles, io.guest_mean), (3000, 1000));
    assert_eq!(row(&r, "npf: HPET").per_mille, 250);
    let total = row(&r, "total");
    assert_eq!((total.count, total.per_mille), (4, 1000));
    assert_eq!((total.keel_cycles, total.guest_cycles), (700, 3500));
    // Kinds that never happened have no row.
    assert!(!t.contains("cpuid"), "{t}");
}

#[test]
fn the_cost_line_says_cycles_per_exit_and_share() {
    let s = ExitStats::new();
    for _ in 0..4 {
        s.exit(ExitClass::of(ExitKind::Cpuid), 9_000);
        s.keel(ExitClass::of(ExitKind::Cpuid), 1_000);
        s.own(50);
    }
    let cost = s.cost();
    assert_eq!(cost.cycles_per_exit, 50);
    // 200 of 40,000 cycles: 0.50%.
    assert_eq!(cost.basis_points, 50);
    let t = table(&s, &[]);
    let line = t.lines().last().unwrap();
    assert_eq!(
        line,
        "statistics cost: 50 cycles per exit, 0.50% of the VM's cycles"
    );
    assert_eq!(
        StatsCost::parse(&alloc::format!("keel: exits: {line}")),
        Some(cost)
    );
}

#[test]
fn an_empty_vm_prints_a_zero_total() {
    let s = ExitStats::new();
    let t = table(&s, &[]);
    let r = rows(&t);
    assert_eq!(r.len(), 1, "{t}");
    assert_eq!(r[0].label, "total");
    assert_eq!(r[0].count, 0);
    assert_eq!(
        s.cost().to_string(),
        "statistics cost: 0 cycles per exit, 0.00% of the VM's cycles"
    );
}

#[test]
fn other_lines_are_not_rows() {
    for line in [
        "",
        "keel: VM 'x': 12 exits; unclaimed port reads 0, writes 0",
        "exit reason      count   exits   Keel cycles  Keel mean  guest cycles  guest mean",
        "statistics cost: 5 cycles per exit, 0.01% of the VM's cycles",
        "1 2 3% 4 5 6",
        "io 1 2 3 4 5 6",
    ] {
        assert_eq!(ExitRow::parse(line), None, "{line}");
    }
    let r = ExitRow::parse("  io: port 0x61    5   1.0%   10  2  20  4").unwrap();
    assert_eq!(r.label, "io: port 0x61");
    assert_eq!(r.per_mille, 10);
}

#[test]
fn every_kind_has_its_own_counter_and_name() {
    for (i, k) in ExitKind::ALL.into_iter().enumerate() {
        assert_eq!(k as usize, i, "{k:?}");
        let s = ExitStats::new();
        s.exit(ExitClass::of(k), 1);
        assert_eq!(s.kind(k).count, 1);
        assert_eq!(s.total().count, 1);
        let names = ExitKind::ALL
            .iter()
            .filter(|o| o.name() == k.name())
            .count();
        assert_eq!(names, 1, "{k:?}");
        assert!(!k.name().contains(' '), "{k:?}");
    }
}

#[test]
fn the_vms_table_sums_every_vcpus_rows() {
    let com1 = ExitClass {
        kind: ExitKind::Io,
        device: Some(2),
    };
    let bsp = ExitStats::new();
    bsp.exit(com1, 100);
    bsp.keel(com1, 10);
    bsp.own(7);
    let ap = ExitStats::new();
    ap.exit(com1, 300);
    ap.keel(com1, 30);
    ap.exit(ExitClass::of(ExitKind::Hlt), 5);
    ap.own(3);
    let vm = ExitStats::sum([&bsp, &ap]);
    assert_eq!(
        vm.device(Space::Pio, Some(2)),
        Counter {
            count: 2,
            keel_cycles: 40,
            guest_cycles: 400
        }
    );
    assert_eq!(vm.kind(ExitKind::Hlt).count, 1);
    assert_eq!(vm.total().count, 3);
    // 10 cycles of accounting over 3 exits.
    assert_eq!(vm.cost().cycles_per_exit, 3);
    // The parts are left as they were.
    assert_eq!(bsp.total().count, 1);
    assert_eq!(ap.total().count, 2);
}

#[test]
fn a_reader_on_another_thread_sees_a_running_writers_counts() {
    let s = std::sync::Arc::new(ExitStats::new());
    let writer = {
        let s = s.clone();
        std::thread::spawn(move || {
            for _ in 0..10_000 {
                s.exit(ExitClass::of(ExitKind::Cpuid), 1);
            }
        })
    };
    let mut last = 0;
    while !writer.is_finished() {
        let now = s.total().count;
        assert!(now >= last, "{now} after {last}");
        last = now;
    }
    writer.join().unwrap();
    assert_eq!(s.total().count, 10_000);
}
