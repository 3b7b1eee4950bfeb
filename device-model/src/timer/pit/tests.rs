use super::*;
use crate::clock::Clock;
use crate::clock::FakeClock;
use crate::timer::testutil::{line, Recorder};
use crate::timer::MAX_PENDING_EDGES;
use alloc::sync::Arc;
use spin::Mutex;

struct Rig {
    clock: Arc<FakeClock>,
    pit: Pit,
    rec: Arc<Mutex<Recorder>>,
}

fn rig() -> Rig {
    let clock = FakeClock::new(0);
    let (rec, irq0) = line(0);
    let pit = Pit::new(clock.clone(), irq0);
    Rig { clock, pit, rec }
}

impl Rig {
    fn outb(&mut self, port: u16, v: u8) {
        self.pit.write(0x40, u64::from(port - 0x40), &[v]);
    }
    fn inb(&mut self, port: u16) -> u8 {
        let mut b = [0xFF];
        self.pit.read(0x40, u64::from(port - 0x40), &mut b);
        b[0]
    }
    fn at_tick(&self, t: u64) {
        self.clock.set(ticks_to_ns(t, PIT_HZ));
    }
    /// Control word for `ch`: LSB/MSB access, `mode`, binary; then the count.
    fn program(&mut self, ch: u16, mode: u8, count: u16) {
        self.outb(0x43, (ch as u8) << 6 | 0x30 | mode << 1);
        let [lo, hi] = count.to_le_bytes();
        self.outb(0x40 + ch, lo);
        self.outb(0x40 + ch, hi);
    }
    /// Read-back of status and count of `ch`: (status, count).
    fn read_back(&mut self, ch: u16) -> (u8, u16) {
        self.outb(0x43, 0xC0 | 2 << ch);
        let status = self.inb(0x40 + ch);
        let lo = self.inb(0x40 + ch);
        let hi = self.inb(0x40 + ch);
        (status, u16::from_le_bytes([lo, hi]))
    }
    fn out(&mut self, ch: u16) -> bool {
        self.read_back(ch).0 & 0x80 != 0
    }
    fn count(&mut self, ch: u16) -> u16 {
        self.read_back(ch).1
    }
    fn edges(&self) -> u64 {
        self.rec.lock().rising(0)
    }
    /// Plays the VM loop: moves the clock `step_ns` at a time until
    /// `until_ns`, and after each step services the PIT while its deadline
    /// has passed. Returns the edges raised so far.
    fn run(&mut self, until_ns: u64, step_ns: u64) -> u64 {
        let mut t = self.clock.now_ns();
        loop {
            while self.pit.next_deadline_ns().is_some_and(|d| d <= t) {
                self.pit.service();
            }
            if t >= until_ns {
                return self.edges();
            }
            t = (t + step_ns).min(until_ns);
            self.clock.set(t);
        }
    }
}

/// Edges of a periodic channel programmed at tick 0 with count `n`, by tick `t`
/// (the count loads at tick 1; an edge ends each period).
fn periodic_edges(n: u64, t: u64) -> u64 {
    t.saturating_sub(1) / n
}

#[test]
fn mode2_rates_are_exact_at_several_divisors() {
    for (divisor, n) in [(11932u16, 11932u64), (1193, 1193), (0, 65536), (100, 100)] {
        let mut r = rig();
        r.program(0, 2, divisor);
        let one_s = 1_000_000_000;
        let edges = r.run(one_s, 1_000_000);
        assert_eq!(edges, periodic_edges(n, PIT_HZ), "divisor {divisor}");
        assert_eq!(r.pit.lost_irqs(), 0);
    }
}

#[test]
fn a_100hz_tick_gives_100_edges_by_the_100th_period() {
    // 1193182 / 11932 = 99.998 Hz: the 100th edge lands 17 us after 1 s.
    let mut r = rig();
    r.program(0, 2, 11932);
    let hundredth = ticks_to_ns(1 + 100 * 11932, PIT_HZ);
    assert_eq!(r.run(hundredth - 1, 10_000_000), 99);
    assert_eq!(r.run(hundredth, 10_000_000), 100);
    // Ten seconds: 999 whole periods.
    assert_eq!(r.run(10_000_000_000, 10_000_000), 999);
}

#[test]
fn late_service_still_delivers_every_edge() {
    let mut r = rig();
    r.program(0, 2, 11932);
    // The vCPU ran 250 ms between exits: 25 periods late each time, all
    // within the backlog, so all delivered once the loop gets to them.
    assert_eq!(r.run(1_000_017_000, 250_000_000), 100);
    assert_eq!(r.pit.lost_irqs(), 0);
}

#[test]
fn service_raises_one_edge_per_call() {
    let mut r = rig();
    r.program(0, 2, 1000);
    r.at_tick(1 + 3 * 1000);
    assert_eq!(r.pit.pending_irqs(), 3);
    r.pit.service();
    assert_eq!(r.edges(), 1);
    assert_eq!(r.pit.pending_irqs(), 2);
    assert_eq!(r.pit.next_deadline_ns(), Some(r.clock.now_ns()));
    r.pit.service();
    r.pit.service();
    r.pit.service();
    assert_eq!(r.edges(), 3);
}

#[test]
fn a_long_stall_coalesces_beyond_the_backlog() {
    let mut r = rig();
    r.program(0, 2, 11932);
    r.clock.set(10_000_000_000);
    assert_eq!(r.pit.pending_irqs(), MAX_PENDING_EDGES);
    assert_eq!(r.pit.lost_irqs(), 999 - MAX_PENDING_EDGES);
    // Counting goes on from the present: one more period, one more edge.
    let before = r.run(10_000_000_000, 1);
    assert_eq!(before, MAX_PENDING_EDGES);
    let next = ticks_to_ns(1 + 1000 * 11932, PIT_HZ);
    assert_eq!(r.run(next, 1_000_000), MAX_PENDING_EDGES + 1);
}

#[test]
fn deadline_is_the_next_edge() {
    let mut r = rig();
    r.program(0, 2, 1000);
    assert_eq!(r.pit.next_deadline_ns(), Some(ticks_to_ns(1001, PIT_HZ)));
    r.at_tick(1001);
    assert_eq!(r.pit.next_deadline_ns(), Some(ticks_to_ns(1001, PIT_HZ)));
    r.pit.service();
    assert_eq!(r.pit.next_deadline_ns(), Some(ticks_to_ns(2001, PIT_HZ)));
    r.program(0, 0, 10);
    r.at_tick(1020);
    r.pit.service();
    assert_eq!(r.pit.next_deadline_ns(), None, "mode 0 fires once");
}

#[test]
fn mode2_counts_down_and_pulses_out_low_for_one_clock() {
    let mut r = rig();
    r.program(0, 2, 5);
    let (status, count) = r.read_back(0);
    assert_eq!(count, 5);
    assert_eq!(status & 0x80, 0x80);
    // Load at tick 1: 5 4 3 2 1(OUT low) 5 ...
    for (t, c, out) in [
        (1, 5, true),
        (2, 4, true),
        (5, 1, false),
        (6, 5, true),
        (10, 1, false),
    ] {
        r.at_tick(t);
        assert_eq!(r.read_back(0), (u8::from(out) << 7 | 0x34, c), "tick {t}");
    }
}

#[test]
fn mode3_square_wave_even_and_odd() {
    let mut r = rig();
    r.program(2, 3, 4);
    r.pit.set_gate2(true);
    // Gate rising at tick 0 restarts the count at tick 1. Even N=4: high 2, low 2.
    let expect = [
        (1, 4, true),
        (2, 2, true),
        (3, 4, false),
        (4, 2, false),
        (5, 4, true),
    ];
    for (t, c, out) in expect {
        r.at_tick(t);
        assert_eq!((r.out(2), r.count(2)), (out, c), "even, tick {t}");
    }
    let mut r = rig();
    r.program(2, 3, 5);
    r.pit.set_gate2(true);
    // Odd N=5: loads 4, high for 3 clocks, low for 2.
    let expect = [
        (1, 4, true),
        (2, 2, true),
        (3, 0, true),
        (4, 4, false),
        (5, 2, false),
        (6, 4, true),
    ];
    for (t, c, out) in expect {
        r.at_tick(t);
        assert_eq!((r.out(2), r.count(2)), (out, c), "odd, tick {t}");
    }
}

#[test]
fn mode3_rates_match_mode2() {
    for divisor in [2u16, 3, 1193, 11932, 54321] {
        let mut r = rig();
        r.program(0, 3, divisor);
        assert_eq!(
            r.run(500_000_000, 1_000_000) + r.pit.lost_irqs(),
            periodic_edges(u64::from(divisor), ns_to_ticks(500_000_000, PIT_HZ)),
            "divisor {divisor}"
        );
    }
}

#[test]
fn mode0_interrupts_once_on_terminal_count() {
    let mut r = rig();
    r.outb(0x43, 0x30);
    assert!(!r.out(0), "control word sets OUT low in mode 0");
    r.outb(0x40, 10);
    r.outb(0x40, 0);
    r.at_tick(10);
    assert_eq!((r.out(0), r.count(0)), (false, 1));
    r.at_tick(11);
    assert_eq!(
        (r.out(0), r.count(0)),
        (true, 0),
        "OUT rises N+1 clocks after the write"
    );
    r.at_tick(12);
    assert_eq!(
        (r.out(0), r.count(0)),
        (true, 0xFFFF),
        "keeps counting, wraps"
    );
    assert_eq!(r.run(1_000_000_000, 1_000_000), 1);
}

#[test]
fn mode0_first_byte_stops_counting_and_drops_out() {
    let mut r = rig();
    r.program(0, 0, 3);
    r.at_tick(10);
    assert!(r.out(0));
    r.outb(0x40, 100);
    assert!(!r.out(0));
    r.at_tick(50);
    assert_eq!(r.count(0), 65530, "3 - 9 wrapped, frozen");
    r.outb(0x40, 0);
    r.at_tick(51);
    assert_eq!(r.count(0), 100);
}

#[test]
fn mode0_gate_low_suspends_counting() {
    let mut r = rig();
    r.pit.set_gate2(true);
    r.program(2, 0, 100);
    r.at_tick(11);
    assert_eq!(r.count(2), 90);
    r.pit.set_gate2(false);
    r.at_tick(500);
    assert_eq!(r.count(2), 90);
    r.pit.set_gate2(true);
    r.at_tick(510);
    assert_eq!(r.count(2), 80);
}

#[test]
fn mode1_is_a_retriggerable_one_shot() {
    let mut r = rig();
    r.program(2, 1, 10);
    r.at_tick(20);
    assert!(r.out(2), "no trigger yet");
    assert!(
        r.read_back(2).0 & 0x40 != 0,
        "null count until the trigger loads it"
    );
    r.pit.set_gate2(true);
    r.at_tick(21);
    assert!(!r.out(2));
    assert_eq!(r.count(2), 10);
    r.at_tick(25);
    r.pit.set_gate2(false);
    r.at_tick(26);
    r.pit.set_gate2(true); // retrigger: another full N
    r.at_tick(36);
    assert!(!r.out(2));
    r.at_tick(37);
    assert!(r.out(2));
    assert!(r.pit.out2());
}

#[test]
fn mode4_strobes_out_low_for_one_clock() {
    let mut r = rig();
    r.program(0, 4, 5);
    assert!(r.out(0));
    r.at_tick(5);
    assert!(r.out(0));
    r.at_tick(6);
    assert_eq!((r.out(0), r.count(0)), (false, 0));
    r.at_tick(7);
    assert!(r.out(0));
    assert_eq!(r.run(1_000_000_000, 1_000_000), 1);
}

#[test]
fn mode5_strobes_after_the_gate_trigger() {
    let mut r = rig();
    r.program(2, 5, 5);
    r.at_tick(100);
    assert!(r.out(2));
    r.pit.set_gate2(true);
    r.at_tick(106);
    assert!(!r.out(2));
    r.at_tick(107);
    assert!(r.out(2));
}

#[test]
fn mode2_gate_low_forces_out_high_and_rising_gate_reloads() {
    let mut r = rig();
    r.pit.set_gate2(true);
    r.program(2, 2, 10);
    r.at_tick(10);
    assert!(!r.out(2));
    r.pit.set_gate2(false);
    assert!(r.out(2));
    r.at_tick(40);
    r.pit.set_gate2(true);
    r.at_tick(41);
    assert_eq!(r.count(2), 10);
    r.at_tick(45);
    assert_eq!(r.count(2), 6);
}

#[test]
fn mode2_new_count_takes_effect_at_the_end_of_the_cycle() {
    let mut r = rig();
    r.program(0, 2, 100);
    r.at_tick(51);
    r.outb(0x40, 10);
    r.outb(0x40, 0);
    assert!(r.read_back(0).0 & 0x40 != 0, "null count until the reload");
    r.at_tick(60);
    assert_eq!(r.count(0), 41, "old cycle continues");
    r.at_tick(101);
    assert_eq!(r.count(0), 10);
    r.at_tick(111);
    assert_eq!(r.count(0), 10);
    assert_eq!(r.run(ticks_to_ns(111, PIT_HZ), 1), 2);
}

#[test]
fn counter_latch_freezes_the_read_value() {
    let mut r = rig();
    r.program(0, 2, 1000);
    r.at_tick(101);
    r.outb(0x43, 0x00); // latch counter 0
    r.at_tick(201);
    r.outb(0x43, 0x00); // ignored: previous latch not read yet
    assert_eq!(r.inb(0x40), (900u16 & 0xFF) as u8);
    assert_eq!(r.inb(0x40), (900u16 >> 8) as u8);
    // Unlatched: the live count.
    assert_eq!(u16::from_le_bytes([r.inb(0x40), r.inb(0x40)]), 800);
}

#[test]
fn read_back_latches_status_then_count() {
    let mut r = rig();
    r.outb(0x43, 0xB6); // ch2, LSB/MSB, mode 3, binary
    r.outb(0x43, 0xE8); // latch status only, ch2
    assert_eq!(
        r.inb(0x42),
        0x40 | 0x30 | 0x06 | 0x80,
        "OUT high, null count"
    );
    r.outb(0x42, 0x34);
    r.outb(0x42, 0x12);
    r.at_tick(1);
    // Latch count only, then status only: status is still read first.
    r.outb(0x43, 0xD8);
    r.outb(0x43, 0xE8);
    assert_eq!(r.inb(0x42), 0xB6, "gate low: OUT high, count loaded");
    assert_eq!(r.inb(0x42), 0x34);
    assert_eq!(r.inb(0x42), 0x12);
}

#[test]
fn read_back_can_select_several_counters() {
    let mut r = rig();
    r.program(0, 2, 300);
    r.program(1, 2, 400);
    r.at_tick(101);
    r.outb(0x43, 0xC6); // count and status of 0 and 1
    r.at_tick(151);
    let s0 = r.inb(0x40);
    let c0 = u16::from_le_bytes([r.inb(0x40), r.inb(0x40)]);
    let s1 = r.inb(0x41);
    let c1 = u16::from_le_bytes([r.inb(0x41), r.inb(0x41)]);
    assert_eq!((s0, c0, s1, c1), (0xB4, 200, 0x34 | 0x80, 300));
}

#[test]
fn lsb_only_and_msb_only_access() {
    let mut r = rig();
    r.outb(0x43, 0x14); // ch0, LSB only, mode 2
    r.outb(0x40, 0x80);
    assert_eq!(r.inb(0x40), 0x80);
    assert_eq!(r.inb(0x40), 0x80, "LSB only: no toggling");
    r.outb(0x43, 0x24); // ch0, MSB only, mode 2
    r.outb(0x40, 0x02);
    assert_eq!(r.inb(0x40), 0x02);
    r.at_tick(1 + 0x100);
    assert_eq!(r.inb(0x40), 0x01);
    let mut r2 = rig();
    r2.outb(0x43, 0x24);
    r2.outb(0x40, 0x02);
    assert_eq!(
        r2.run(1_000_000_000, 1_000_000),
        periodic_edges(0x200, PIT_HZ)
    );
}

#[test]
fn bcd_counting() {
    let mut r = rig();
    r.outb(0x43, 0x35); // ch0, LSB/MSB, mode 2, BCD
    r.outb(0x40, 0x00);
    r.outb(0x40, 0x01); // 0100 BCD = 100
    r.at_tick(2);
    assert_eq!(r.count(0), 0x0099);
    r.at_tick(12);
    assert_eq!(r.count(0), 0x0089);
    assert_eq!(r.run(1_000_000_000, 1_000_000), periodic_edges(100, PIT_HZ));
    // 0 in BCD is 10000.
    let mut r = rig();
    r.outb(0x43, 0x35);
    r.outb(0x40, 0);
    r.outb(0x40, 0);
    r.at_tick(2);
    assert_eq!(r.count(0), 0x9999);
    assert_eq!(
        r.run(1_000_000_000, 1_000_000),
        periodic_edges(10_000, PIT_HZ)
    );
}

#[test]
fn wide_and_odd_accesses_never_panic() {
    let mut r = rig();
    // A 16-bit OUT to 0x42 writes 0x42 then 0x43.
    r.pit.write(0x40, 2, &[0xAA, 0xB6]);
    let mut buf = [0u8; 8];
    r.pit.read(0x40, 0, &mut buf);
    assert_eq!(
        buf[3..],
        [0xFF; 5],
        "0x43 and past the device read all-ones"
    );
    r.pit.write(0x40, 3, &[0xFF; 8]);
    r.pit.write(0x40, u64::MAX, &[1, 2]);
    r.pit.read(0x40, u64::MAX, &mut buf);
    for cw in 0..=255u8 {
        r.outb(0x43, cw);
        r.outb(0x40, cw);
        r.outb(0x41, !cw);
        r.outb(0x42, cw);
        r.clock.advance(1_000);
        let _ = (r.inb(0x40), r.inb(0x41), r.inb(0x42));
        r.pit.service();
        let _ = r.pit.next_deadline_ns();
    }
}

#[test]
fn legacy_replacement_silences_irq0() {
    let mut r = rig();
    let legacy = LegacyReplacement::new();
    r.pit.set_legacy_replacement(legacy.clone());
    r.program(0, 2, 11932);
    legacy.set(true);
    assert_eq!(r.run(1_000_000_000, 1_000_000), 0);
    legacy.set(false);
    assert_eq!(r.run(2_000_000_000, 1_000_000), 100);
}

#[test]
fn reset_restores_the_power_on_state() {
    let mut r = rig();
    r.program(0, 0, 5);
    r.pit.set_gate2(true);
    r.at_tick(100);
    r.pit.reset();
    assert!(!r.pit.gate2());
    let (status, count) = r.read_back(0);
    assert_eq!(status & 0x3F, 0x36, "mode 3, LSB/MSB, binary");
    assert_eq!(count, 0);
    // Power-on channel 0 runs at 18.2 Hz.
    assert_eq!(r.run(ticks_to_ns(101 + 65536 * 3, PIT_HZ), 1_000_000), 3);
}
