use super::*;
use crate::clock::{Clock, FakeClock};
use crate::timer::testutil::{lines, Recorder};
use alloc::sync::Arc;
use spin::Mutex;

const GSI_IRQ0: u32 = 0;
const GSI_IRQ8: u32 = 8;

struct Rig {
    clock: Arc<FakeClock>,
    hpet: Hpet,
    rec: Arc<Mutex<Recorder>>,
    legacy: LegacyReplacement,
}

fn rig() -> Rig {
    let clock = FakeClock::new(1_000);
    let (rec, mut l) = lines(&[GSI_IRQ0, GSI_IRQ8, 2, 20]);
    let routes = l.split_off(2);
    let irq8 = l.pop().unwrap();
    let irq0 = l.pop().unwrap();
    let legacy = LegacyReplacement::new();
    let hpet = Hpet::new(
        clock.clone(),
        HpetIrqs {
            legacy_irq0: irq0,
            legacy_irq8: irq8,
            routes,
        },
        legacy.clone(),
    );
    Rig {
        clock,
        hpet,
        rec,
        legacy,
    }
}

fn timer_reg(n: u64, r: u64) -> u64 {
    0x100 + 0x20 * n + r
}

impl Rig {
    fn r64(&mut self, off: u64) -> u64 {
        let mut b = [0u8; 8];
        self.hpet.read(Hpet::BASE, off, &mut b);
        u64::from_le_bytes(b)
    }
    fn r32(&mut self, off: u64) -> u32 {
        let mut b = [0u8; 4];
        self.hpet.read(Hpet::BASE, off, &mut b);
        u32::from_le_bytes(b)
    }
    fn w64(&mut self, off: u64, v: u64) {
        self.hpet.write(Hpet::BASE, off, &v.to_le_bytes());
    }
    fn w32(&mut self, off: u64, v: u32) {
        self.hpet.write(Hpet::BASE, off, &v.to_le_bytes());
    }
    fn enable(&mut self) {
        self.w64(0x10, 1);
    }
    /// The VM loop: service while the deadline has passed, step by step.
    fn run(&mut self, until_ns: u64, step_ns: u64) {
        let mut t = self.clock.now_ns();
        loop {
            while self.hpet.next_deadline_ns().is_some_and(|d| d <= t) {
                self.hpet.service();
            }
            if t >= until_ns {
                return;
            }
            t = (t + step_ns).min(until_ns);
            self.clock.set(t);
        }
    }
    fn edges(&self, gsi: u32) -> u64 {
        self.rec.lock().rising(gsi)
    }
}

#[test]
fn capabilities_describe_a_100mhz_three_timer_64bit_hpet() {
    let mut r = rig();
    let cap = r.r64(0);
    assert_eq!(cap >> 32, 10_000_000, "period 10 ns in fs");
    assert_eq!((cap >> 16) & 0xFFFF, 0x8086);
    assert_ne!(cap & (1 << 15), 0, "LegacyReplacement capable");
    assert_ne!(cap & (1 << 13), 0, "64-bit counter");
    assert_eq!((cap >> 8) & 0x1F, 2, "three timers");
    assert_eq!(cap & 0xFF, 1);
    assert_eq!(r.r32(4), 10_000_000);
    for n in 0..3 {
        let c = r.r64(timer_reg(n, 0));
        assert_eq!(
            c >> 32,
            (1 << 2) | (1 << 20),
            "route capability from the lines"
        );
        assert_eq!(c & 0x30, 0x30, "periodic and 64-bit capable");
        assert_eq!(c & 0xFFFF_FFCF, 0, "everything disabled at power-on");
        assert_eq!(r.r64(timer_reg(n, 8)), u64::MAX);
    }
}

#[test]
fn counter_runs_at_100mhz_only_while_enabled() {
    let mut r = rig();
    r.clock.advance(1_000_000);
    assert_eq!(r.r64(0xF0), 0, "halted");
    r.enable();
    r.clock.advance(1_000_000_000);
    assert_eq!(r.r64(0xF0), 100_000_000);
    r.clock.advance(25);
    assert_eq!(r.r64(0xF0), 100_000_002);
    r.w64(0x10, 0);
    r.clock.advance(1_000_000);
    assert_eq!(r.r64(0xF0), 100_000_002);
    // Writable while halted, 32 bits at a time.
    r.w32(0xF4, 0x1);
    r.w32(0xF0, 0x10);
    assert_eq!(r.r64(0xF0), 0x1_0000_0010);
    r.enable();
    r.clock.advance(100);
    assert_eq!(r.r32(0xF0), 0x1A);
    assert_eq!(r.r32(0xF4), 1);
}

#[test]
fn one_shot_fires_once_at_the_comparator() {
    let mut r = rig();
    r.w64(timer_reg(0, 0), 0x4 | (2 << 9)); // enabled, edge, route GSI 2
    r.w64(timer_reg(0, 8), 1000); // 10 us
    r.enable();
    assert_eq!(r.hpet.next_deadline_ns(), Some(1_000 + 10_000));
    r.run(1_000 + 9_999, 1);
    assert_eq!(r.edges(2), 0);
    r.run(1_000 + 10_000, 1);
    assert_eq!(r.edges(2), 1);
    r.run(1_000_000_000, 1_000_000);
    assert_eq!(r.edges(2), 1, "64-bit one-shot does not fire again");
    assert_eq!(r.hpet.next_deadline_ns(), None);
}

#[test]
fn periodic_timer_fires_at_its_rate_and_accumulates() {
    for (period, hz) in [(100_000u64, 1000u64), (1_000_000, 100), (250_000, 400)] {
        let mut r = rig();
        // Linux's sequence: periodic + VAL_SET, comparator = first expiry,
        // then comparator = period.
        r.w64(timer_reg(0, 0), 0x4 | 0x8 | 0x40 | (20 << 9));
        r.w64(timer_reg(0, 8), period);
        r.w64(timer_reg(0, 8), period);
        r.enable();
        r.run(1_000 + 1_000_000_000, 3_000_000);
        assert_eq!(r.edges(20), hz, "period {period}");
        assert_eq!(
            r.r64(timer_reg(0, 8)),
            period * (hz + 1),
            "comparator accumulated"
        );
    }
}

#[test]
fn periodic_without_val_set_keeps_the_accumulator() {
    let mut r = rig();
    r.w64(timer_reg(1, 0), 0x4 | 0x8 | (2 << 9));
    r.w64(timer_reg(1, 8), 500); // period only; comparator stays all-ones
    assert_eq!(r.r64(timer_reg(1, 8)), u64::MAX);
    r.w64(timer_reg(1, 0), 0x4 | 0x8 | 0x40 | (2 << 9));
    r.w64(timer_reg(1, 8), 200); // accumulator and period 200
    assert_eq!(r.r64(timer_reg(1, 0)) & 0x40, 0, "VAL_SET clears itself");
    r.w64(timer_reg(1, 8), 500); // period only
    assert_eq!(r.r64(timer_reg(1, 8)), 200);
    r.enable();
    r.run(1_000 + 17_000, 100); // matches at 200, 700, 1200, 1700
    assert_eq!(r.edges(2), 4);
}

#[test]
fn level_triggered_status_is_write_one_to_clear() {
    let mut r = rig();
    r.w64(timer_reg(2, 0), 0x2 | 0x4 | (20 << 9)); // level, enabled
    r.w64(timer_reg(2, 8), 50);
    r.enable();
    r.clock.advance(500);
    r.hpet.service();
    assert_eq!(r.r64(0x20), 1 << 2);
    assert!(r.rec.lock().level(20));
    r.w64(0x20, 1 << 1); // other bit: no effect
    assert!(r.rec.lock().level(20));
    r.w32(0x20, 1 << 2);
    assert_eq!(r.r64(0x20), 0);
    assert!(!r.rec.lock().level(20));
}

#[test]
fn disabled_interrupts_do_not_set_status() {
    let mut r = rig();
    r.w64(timer_reg(0, 0), 0x2 | (2 << 9)); // level, not enabled
    r.w64(timer_reg(0, 8), 10);
    r.enable();
    r.clock.advance(1000);
    r.hpet.service();
    assert_eq!(r.r64(0x20), 0);
    assert_eq!(r.edges(2), 0);
}

#[test]
fn legacy_replacement_routes_timers_0_and_1_to_irq0_and_irq8() {
    let mut r = rig();
    r.w64(timer_reg(0, 0), 0x4 | 0x8 | 0x40);
    r.w64(timer_reg(0, 8), 1_000_000);
    r.w64(timer_reg(0, 8), 1_000_000);
    r.w64(timer_reg(1, 0), 0x4);
    r.w64(timer_reg(1, 8), 500_000);
    r.w64(0x10, 0x3);
    assert!(r.legacy.active() && r.hpet.legacy_replacement());
    r.run(1_000 + 100_000_000, 1_000_000);
    assert_eq!(r.edges(GSI_IRQ0), 10);
    assert_eq!(r.edges(GSI_IRQ8), 1);
    assert_eq!(r.edges(2), 0);
    r.w64(0x10, 0x1);
    assert!(!r.legacy.active());
    r.w64(0x10, 0x2);
    assert!(!r.legacy.active(), "only while the counter is enabled");
}

#[test]
fn mode32_truncates_and_matches_the_low_half() {
    let mut r = rig();
    r.w64(0xF0, 0xFFFF_FFF0); // halted: writable
    r.w64(timer_reg(0, 0), 0x4 | 0x100 | (2 << 9));
    r.w64(timer_reg(0, 8), 0xAAAA_0000_0000_0010);
    assert_eq!(r.r64(timer_reg(0, 8)), 0x10);
    r.enable();
    // Matches when the counter's low half wraps to 0x10: 0x20 ticks later.
    assert_eq!(r.hpet.next_deadline_ns(), Some(1_000 + 0x20 * 10));
    r.run(1_000 + 0x20 * 10, 10);
    assert_eq!(r.edges(2), 1);
}

#[test]
fn periodic_32bit_timer_wraps_its_comparator() {
    let mut r = rig();
    r.w64(0xF0, 0xFFFF_FF00);
    r.w64(timer_reg(0, 0), 0x4 | 0x8 | 0x40 | 0x100 | (2 << 9));
    r.w32(timer_reg(0, 8), 0xFFFF_FF80);
    r.w32(timer_reg(0, 8), 0x100);
    r.enable();
    r.run(1_000 + 0x380 * 10, 10); // counter 0x1_0000_0280: matches at ..FF80, ..080, ..180, ..280
    assert_eq!(r.edges(2), 4);
    assert_eq!(r.r64(timer_reg(0, 8)), 0x380);
}

#[test]
fn late_service_delivers_every_period_up_to_the_backlog() {
    let mut r = rig();
    r.w64(timer_reg(0, 0), 0x4 | 0x8 | 0x40 | (2 << 9));
    r.w64(timer_reg(0, 8), 1_000_000);
    r.w64(timer_reg(0, 8), 1_000_000);
    r.enable();
    r.clock.advance(200_000_000); // 20 periods unserviced
    assert_eq!(r.hpet.pending_irqs(0), 20);
    r.run(r.clock.now_ns(), 1);
    assert_eq!(r.edges(2), 20);
}

#[test]
fn unrouted_and_reserved_accesses_are_harmless() {
    let mut r = rig();
    // Route to GSI 5, which is not in the capability: nothing is driven.
    r.w64(timer_reg(0, 0), 0x4 | (5 << 9));
    r.w64(timer_reg(0, 8), 1);
    r.enable();
    r.run(1_000_000, 1000);
    assert!(r.rec.lock().events.is_empty());
    // Reserved registers read 0; timers past the third read 0.
    assert_eq!(r.r64(0x30), 0);
    assert_eq!(r.r64(timer_reg(3, 0)), 0);
    r.w64(timer_reg(5, 0), u64::MAX);
    r.w64(0x0, 0);
    assert_eq!(r.r64(0) >> 32, 10_000_000, "capabilities are read-only");
    // Straddling a register, or past the block: all-ones, dropped.
    let mut b = [0u8; 8];
    r.hpet.read(Hpet::BASE, 0x14, &mut b);
    assert_eq!(b, [0xFF; 8]);
    r.hpet.write(Hpet::BASE, 0x0C, &[0xFF; 8]);
    assert_eq!(r.r64(0x10), 1);
    r.hpet.read(Hpet::BASE, 0x400, &mut b[..4]);
    r.hpet.read(Hpet::BASE, u64::MAX, &mut b[..1]);
    r.hpet.write(Hpet::BASE, u64::MAX - 2, &[1, 2, 3, 4]);
    r.hpet.write(Hpet::BASE, 0x10, &[]);
    // Byte lanes inside one register.
    let mut one = [0u8; 1];
    r.hpet.read(Hpet::BASE, 0x2, &mut one);
    assert_eq!(one[0], 0x86);
    r.hpet.write(Hpet::BASE, 0x11, &[0xFF]);
    assert_eq!(r.r64(0x10), 1, "bits 15:8 of GEN_CONF are reserved");
}

#[test]
fn fuzzed_registers_never_panic() {
    let mut r = rig();
    let mut x: u64 = 0x1234_5678_9ABC_DEF1;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let off = x % 0x410;
        let len = 1 + (x >> 20) as usize % 8;
        let bytes = x.rotate_left(7).to_le_bytes();
        if x & (1 << 40) != 0 {
            r.hpet.write(Hpet::BASE, off, &bytes[..len]);
        } else {
            let mut b = [0u8; 8];
            r.hpet.read(Hpet::BASE, off, &mut b[..len]);
        }
        r.clock.advance(x % 100_000);
        r.hpet.service();
        let _ = r.hpet.next_deadline_ns();
    }
}

#[test]
fn reset_halts_and_clears() {
    let mut r = rig();
    r.w64(timer_reg(0, 0), 0x2 | 0x4 | (2 << 9));
    r.w64(timer_reg(0, 8), 5);
    r.w64(0x10, 3);
    r.clock.advance(1000);
    r.hpet.service();
    assert!(r.rec.lock().level(GSI_IRQ0), "legacy route, level");
    r.hpet.reset();
    assert!(!r.rec.lock().level(GSI_IRQ0));
    assert!(!r.legacy.active());
    assert_eq!((r.r64(0x10), r.r64(0x20), r.r64(0xF0)), (0, 0, 0));
    assert_eq!(r.r64(timer_reg(0, 8)), u64::MAX);
}
