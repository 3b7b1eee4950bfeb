//! The 8254 programmable interval timer (Intel 82C54 datasheet, order
//! 231244), the PC's system timer at ports 0x40-0x43.
//!
//! Three 16-bit down counters clocked at 1.193182 MHz (the PC's 14.31818 MHz
//! crystal divided by 12). On a PC channel 0's OUT drives ISA IRQ 0, channel
//! 1 (DRAM refresh on the original AT) is unused, and channel 2 drives the
//! speaker, with its gate and OUT exposed at port 0x61 ([`super::Port61`]).
//! Gates of channels 0 and 1 are tied high.
//!
//! The model is lazy: a counter is described by its mode, its initial count
//! and the clock tick its current cycle started at, and the count and OUT
//! level are computed from the shared clock when read. Time is counted in
//! whole input clocks ("ticks") since the clock's zero, so rates are exact.
//!
//! Datasheet timing, as modelled:
//! - a count written at tick `t` is loaded into the counting element at the
//!   next CLK pulse, `t + 1`, and decremented by each later pulse (so mode 0's
//!   OUT rises N + 1 pulses after the write, as the datasheet says);
//! - mode 2 and 3 restart on the gate's rising edge in the same way;
//! - modes 1 and 5 start on the gate's rising edge ("trigger").
//!
//! Simplifications, none of which a PC guest can tell apart in practice:
//! - a new count written in mode 3 takes effect at the end of the current
//!   period rather than of the current half-period;
//! - OUT going high because of a new control word or a falling gate is not
//!   an interrupt edge (on a PC the PIC would see one).
//!
//! IRQ 0: rising edges of channel 0's OUT are counted exactly and delivered
//! through an [`EdgeBacklog`] by [`Pit::service`] (see
//! [`super::TimerDevice`] for the loop's contract and
//! [`super::MAX_PENDING_EDGES`] for the catch-up policy).
//!
//! Ports are one byte wide. A wider access is split into byte accesses to
//! consecutive ports, as the ISA bus splits a 16- or 32-bit cycle to an 8-bit
//! device; bytes past port 0x43 read all-ones and are dropped on write.

use super::{ns_to_ticks, ticks_to_ns, EdgeBacklog, LegacyReplacement, TimerDevice};
use crate::clock::ClockHandle;
use crate::irq::IrqLine;
use crate::BusDevice;

/// The input clock of every channel, in Hz.
pub const PIT_HZ: u64 = 1_193_182;

/// Read/write access mode of a counter (control word bits 5:4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// 01: least significant byte only.
    Lsb = 1,
    /// 10: most significant byte only.
    Msb = 2,
    /// 11: least significant byte first, then most significant byte.
    LsbMsb = 3,
}

impl Access {
    fn from_bits(rw: u8) -> Self {
        match rw & 3 {
            1 => Access::Lsb,
            2 => Access::Msb,
            _ => Access::LsbMsb,
        }
    }
}

/// Whether the counting element is counting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    /// No count loaded since the last control word (or mode 1/5 waiting for
    /// its trigger): the counting element holds `count`.
    Stopped { count: u64 },
    /// Counting: elapsed clocks are `tick - start` (the load pulse is `start`).
    Running { start: u64 },
    /// Counting suspended by a low gate after `elapsed` clocks (modes 0 and 4),
    /// or loaded and waiting for the gate (modes 2 and 3).
    Paused { elapsed: u64 },
}

/// One of the three counters.
#[derive(Debug, Clone)]
struct Channel {
    mode: u8,
    bcd: bool,
    access: Access,
    /// The count register as last written (raw, BCD or binary).
    cr: u16,
    /// A count has been written since the last control word.
    has_count: bool,
    /// LSB/MSB writes: the LSB is written and the MSB is next.
    write_msb_next: bool,
    write_lsb: u8,
    /// LSB/MSB reads of the live count: the MSB is next.
    read_msb_next: bool,
    /// A latched count and, for LSB/MSB, whether its LSB has been read.
    count_latch: Option<(u16, bool)>,
    /// A latched status byte (read-back command).
    status_latch: Option<u8>,
    gate: bool,
    /// The initial count of the current cycle, 1..=65536 (binary) or 1..=10000 (BCD).
    n: u64,
    run: Run,
    /// Modes 2 and 3: a new count written while counting, loaded at `.0`.
    pending: Option<(u64, u64)>,
    /// NULL COUNT reads 1 until this tick (the CR -> CE transfer).
    null_until: u64,
    /// OUT while `Stopped`.
    out_idle: bool,
    /// The tick up to which OUT edges have been counted.
    synced: u64,
}

impl Channel {
    /// The power-on state Keel gives every channel: mode 3, count 0 (65536)
    /// loaded and counting, the gate as the board wires it. (The datasheet
    /// leaves power-on state undefined; QEMU's `pc` machine starts this way,
    /// so firmware written for it sees the same thing.)
    fn new(gate: bool, tick: u64) -> Self {
        let mut c = Channel {
            mode: 3,
            bcd: false,
            access: Access::LsbMsb,
            cr: 0,
            has_count: false,
            write_msb_next: false,
            write_lsb: 0,
            read_msb_next: false,
            count_latch: None,
            status_latch: None,
            gate,
            n: 65536,
            run: Run::Stopped { count: 0 },
            pending: None,
            null_until: 0,
            out_idle: true,
            synced: tick,
        };
        c.load(0, tick);
        c
    }

    fn modulus(&self) -> u64 {
        if self.bcd {
            10_000
        } else {
            65_536
        }
    }

    /// The initial count a count-register value stands for; 0 is the largest.
    fn initial_count(&self, cr: u16) -> u64 {
        let v = if self.bcd {
            // Four decimal digits; an invalid digit (A-F) counts at face value.
            (0..4).fold(0u64, |acc, i| {
                acc * 10 + u64::from((cr >> (12 - 4 * i)) & 0xF)
            })
        } else {
            u64::from(cr)
        };
        if v == 0 {
            self.modulus()
        } else {
            v
        }
    }

    fn elapsed(&self, tick: u64) -> Option<u64> {
        match self.run {
            Run::Stopped { .. } => None,
            Run::Running { start } => Some(tick.saturating_sub(start)),
            Run::Paused { elapsed } => Some(elapsed),
        }
    }

    /// The counting element after `e` clocks of the current cycle.
    fn count_after(&self, e: u64) -> u64 {
        let n = self.n;
        let m = self.modulus();
        let c = match self.mode {
            // One-shot modes keep counting down (and wrap) after terminal count.
            0 | 1 | 4 | 5 => (n + m - e % m) % m,
            2 => n - e % n,
            _ => {
                // Mode 3 counts down by two; an odd count loads N - 1 and
                // spends one more clock in the high half (datasheet, mode 3).
                let p = e % n;
                let high = n.div_ceil(2);
                let even = n & !1;
                if p < high {
                    even.saturating_sub(2 * p)
                } else {
                    even.saturating_sub(2 * (p - high))
                }
            }
        };
        c % m
    }

    /// OUT after `e` clocks of the current cycle.
    fn out_after(&self, e: u64) -> bool {
        let n = self.n;
        match self.mode {
            0 | 1 => e >= n,
            2 => n == 1 || e % n != n - 1,
            3 => e % n < n.div_ceil(2),
            _ => e != n,
        }
    }

    fn count(&self, tick: u64) -> u64 {
        match self.run {
            Run::Stopped { count } => count,
            _ => self.count_after(self.elapsed(tick).unwrap_or(0)),
        }
    }

    fn out(&self, tick: u64) -> bool {
        match self.run {
            Run::Stopped { .. } => self.out_idle,
            Run::Paused { .. } if matches!(self.mode, 2 | 3) => true,
            _ => self.out_after(self.elapsed(tick).unwrap_or(0)),
        }
    }

    /// Rising OUT edges between elapsed clocks `e1` (exclusive) and `e2`.
    fn edges_between_elapsed(&self, e1: u64, e2: u64) -> u64 {
        let n = self.n;
        match self.mode {
            0 | 1 => u64::from(e1 < n && n <= e2),
            2 | 3 => e2 / n - e1 / n,
            _ => u64::from(e1 <= n && n < e2),
        }
    }

    /// Rising OUT edges in ticks `(t1, t2]`.
    fn edges_between(&self, t1: u64, t2: u64) -> u64 {
        match self.run {
            Run::Running { start } => {
                self.edges_between_elapsed(t1.saturating_sub(start), t2.saturating_sub(start))
            }
            _ => 0,
        }
    }

    /// Brings the channel to `tick`: applies a due reload and returns the
    /// rising OUT edges since the last sync.
    fn sync(&mut self, tick: u64) -> u64 {
        if tick <= self.synced {
            return 0;
        }
        let mut edges = 0;
        if let Some((at, n)) = self.pending {
            if at <= tick {
                edges += self.edges_between(self.synced, at);
                self.n = n;
                self.run = Run::Running { start: at };
                self.pending = None;
                self.synced = at;
            }
        }
        edges += self.edges_between(self.synced, tick);
        self.synced = tick;
        edges
    }

    /// The tick of the next rising OUT edge after the last sync.
    fn next_edge(&self) -> Option<u64> {
        let Run::Running { start } = self.run else {
            return None;
        };
        let e = self.synced.saturating_sub(start);
        let n = self.n;
        let next = match self.mode {
            0 | 1 => (e < n).then_some(n)?,
            2 | 3 => (e / n + 1) * n,
            _ => (e <= n).then_some(n + 1)?,
        };
        Some(start + next)
    }

    fn control_word(&mut self, cw: u8, tick: u64) {
        let count = self.count(tick);
        self.access = Access::from_bits(cw >> 4);
        self.mode = match (cw >> 1) & 7 {
            6 => 2,
            7 => 3,
            m => m,
        };
        self.bcd = cw & 1 != 0;
        self.run = Run::Stopped { count };
        self.out_idle = self.mode != 0;
        self.has_count = false;
        self.pending = None;
        self.null_until = u64::MAX;
        self.write_msb_next = false;
        self.read_msb_next = false;
    }

    /// A complete count was written at `tick`.
    fn load(&mut self, cr: u16, tick: u64) {
        self.cr = cr;
        self.has_count = true;
        self.null_until = tick + 1;
        let n = self.initial_count(cr);
        match self.mode {
            0 | 4 => {
                self.n = n;
                self.pending = None;
                self.run = if self.gate {
                    Run::Running { start: tick + 1 }
                } else {
                    Run::Paused { elapsed: 0 }
                };
                self.out_idle = self.mode != 0;
            }
            // Loaded by the next trigger.
            1 | 5 => self.null_until = u64::MAX,
            _ => match self.run {
                Run::Running { start } if self.gate => {
                    let e = tick.saturating_sub(start);
                    let at = start + (e / self.n + 1) * self.n;
                    self.pending = Some((at, n));
                    self.null_until = at;
                }
                _ => {
                    self.n = n;
                    self.run = if self.gate {
                        Run::Running { start: tick + 1 }
                    } else {
                        Run::Paused { elapsed: 0 }
                    };
                }
            },
        }
    }

    fn write(&mut self, byte: u8, tick: u64) {
        match self.access {
            Access::Lsb => self.load(u16::from(byte), tick),
            Access::Msb => self.load(u16::from(byte) << 8, tick),
            Access::LsbMsb if !self.write_msb_next => {
                self.write_lsb = byte;
                self.write_msb_next = true;
                // Mode 0: "writing the first byte disables counting; OUT is
                // set low immediately".
                if self.mode == 0 {
                    self.run = Run::Stopped {
                        count: self.count(tick),
                    };
                    self.out_idle = false;
                }
            }
            Access::LsbMsb => {
                self.write_msb_next = false;
                self.load(u16::from_le_bytes([self.write_lsb, byte]), tick);
            }
        }
    }

    /// The counting element as the guest reads it (BCD-encoded in BCD mode).
    fn count_register(&self, tick: u64) -> u16 {
        let c = self.count(tick);
        if self.bcd {
            let c = c % 10_000;
            (((c / 1000) << 12) | ((c / 100 % 10) << 8) | ((c / 10 % 10) << 4) | (c % 10)) as u16
        } else {
            c as u16
        }
    }

    fn latch_count(&mut self, tick: u64) {
        // A second latch before the first is read is ignored.
        if self.count_latch.is_none() {
            self.count_latch = Some((self.count_register(tick), false));
        }
    }

    fn status(&self, tick: u64) -> u8 {
        u8::from(self.out(tick)) << 7
            | u8::from(tick < self.null_until) << 6
            | (self.access as u8) << 4
            | self.mode << 1
            | u8::from(self.bcd)
    }

    fn latch_status(&mut self, tick: u64) {
        if self.status_latch.is_none() {
            self.status_latch = Some(self.status(tick));
        }
    }

    fn read(&mut self, tick: u64) -> u8 {
        if let Some(s) = self.status_latch.take() {
            return s;
        }
        if let Some((value, lsb_read)) = self.count_latch {
            let [lo, hi] = value.to_le_bytes();
            return match self.access {
                Access::Lsb => {
                    self.count_latch = None;
                    lo
                }
                Access::Msb => {
                    self.count_latch = None;
                    hi
                }
                Access::LsbMsb if !lsb_read => {
                    self.count_latch = Some((value, true));
                    lo
                }
                Access::LsbMsb => {
                    self.count_latch = None;
                    hi
                }
            };
        }
        let [lo, hi] = self.count_register(tick).to_le_bytes();
        match self.access {
            Access::Lsb => lo,
            Access::Msb => hi,
            Access::LsbMsb => {
                self.read_msb_next = !self.read_msb_next;
                if self.read_msb_next {
                    lo
                } else {
                    hi
                }
            }
        }
    }

    fn set_gate(&mut self, level: bool, tick: u64) {
        if level == self.gate {
            return;
        }
        self.gate = level;
        match (self.mode, level) {
            (0 | 4, false) => {
                if let Run::Running { start } = self.run {
                    self.run = Run::Paused {
                        elapsed: tick.saturating_sub(start),
                    };
                }
            }
            (0 | 4, true) => {
                // A count loaded while the gate was low starts with the
                // next CLK pulse; a suspended one resumes where it stopped.
                if let Run::Paused { elapsed } = self.run {
                    let start = if elapsed == 0 {
                        tick + 1
                    } else {
                        tick.saturating_sub(elapsed)
                    };
                    self.run = Run::Running { start };
                }
            }
            (1 | 5, true) => {
                if self.has_count {
                    self.n = self.initial_count(self.cr);
                    self.run = Run::Running { start: tick + 1 };
                    self.null_until = tick + 1;
                }
            }
            (1 | 5, false) => {}
            (_, false) => {
                if let Run::Running { start } = self.run {
                    self.run = Run::Paused {
                        elapsed: tick.saturating_sub(start),
                    };
                }
                if let Some((_, n)) = self.pending.take() {
                    self.n = n;
                }
            }
            (_, true) => {
                if self.has_count || !matches!(self.run, Run::Stopped { .. }) {
                    self.n = self.initial_count(self.cr);
                    self.run = Run::Running { start: tick + 1 };
                    self.pending = None;
                    self.null_until = self.null_until.min(tick + 1);
                }
            }
        }
    }
}

/// The 8254 PIT.
pub struct Pit {
    clock: ClockHandle,
    irq0: IrqLine,
    legacy: Option<LegacyReplacement>,
    channels: [Channel; 3],
    backlog: EdgeBacklog,
}

impl Pit {
    /// First port: counter 0 at 0x40, 1 at 0x41, 2 at 0x42, control word at 0x43.
    pub const PORT: u16 = 0x40;
    /// Ports it answers.
    pub const LEN: u16 = 4;

    /// A PIT whose channel 0 drives `irq0` (ISA IRQ 0).
    pub fn new(clock: ClockHandle, irq0: IrqLine) -> Self {
        let tick = ns_to_ticks(clock.now_ns(), PIT_HZ);
        Pit {
            clock,
            irq0,
            legacy: None,
            channels: [
                Channel::new(true, tick),
                Channel::new(true, tick),
                Channel::new(false, tick),
            ],
            backlog: EdgeBacklog::default(),
        }
    }

    /// Silences IRQ 0 while the HPET's LegacyReplacement route is active.
    pub fn set_legacy_replacement(&mut self, legacy: LegacyReplacement) {
        self.legacy = Some(legacy);
    }

    /// Back to the power-on state (see [`Channel::new`]); edges not yet
    /// delivered are dropped.
    pub fn reset(&mut self) {
        let tick = self.tick();
        self.channels = [
            Channel::new(true, tick),
            Channel::new(true, tick),
            Channel::new(false, tick),
        ];
        self.backlog.clear();
    }

    fn tick(&self) -> u64 {
        ns_to_ticks(self.clock.now_ns(), PIT_HZ)
    }

    /// Brings every channel to now; returns now's tick.
    fn sync(&mut self) -> u64 {
        let tick = self.tick();
        let edges = self.channels[0].sync(tick);
        self.channels[1].sync(tick);
        self.channels[2].sync(tick);
        if self.legacy.as_ref().is_some_and(|l| l.active()) {
            self.backlog.clear();
        } else {
            self.backlog.add(edges);
        }
        tick
    }

    /// Drives channel 2's gate (port 0x61 bit 0).
    pub fn set_gate2(&mut self, level: bool) {
        let tick = self.sync();
        self.channels[2].set_gate(level, tick);
    }

    /// Channel 2's gate input.
    pub fn gate2(&self) -> bool {
        self.channels[2].gate
    }

    /// Channel 2's OUT (port 0x61 bit 5).
    pub fn out2(&mut self) -> bool {
        let tick = self.sync();
        self.channels[2].out(tick)
    }

    /// IRQ 0 edges that came due and are not raised yet.
    pub fn pending_irqs(&mut self) -> u64 {
        self.sync();
        self.backlog.pending()
    }

    /// IRQ 0 edges dropped by the catch-up policy since power-on.
    pub fn lost_irqs(&self) -> u64 {
        self.backlog.lost()
    }

    fn read_port(&mut self, offset: u64, tick: u64) -> u8 {
        match offset {
            0..=2 => self.channels[offset as usize].read(tick),
            // The control word register cannot be read (datasheet Table 1:
            // "no-operation, 3-state").
            _ => 0xFF,
        }
    }

    fn write_port(&mut self, offset: u64, byte: u8, tick: u64) {
        match offset {
            0..=2 => self.channels[offset as usize].write(byte, tick),
            _ => self.control(byte, tick),
        }
    }

    fn control(&mut self, cw: u8, tick: u64) {
        let sc = cw >> 6;
        if sc == 3 {
            // Read-back command: D5 = 0 latches counts, D4 = 0 latches
            // status, D3..D1 select counters 2..0.
            for (i, ch) in self.channels.iter_mut().enumerate() {
                if cw & (2 << i) == 0 {
                    continue;
                }
                if cw & 0x20 == 0 {
                    ch.latch_count(tick);
                }
                if cw & 0x10 == 0 {
                    ch.latch_status(tick);
                }
            }
            return;
        }
        let ch = &mut self.channels[usize::from(sc)];
        if (cw >> 4) & 3 == 0 {
            ch.latch_count(tick);
        } else {
            ch.control_word(cw, tick);
        }
    }
}

impl TimerDevice for Pit {
    /// The next rising edge of channel 0's OUT, or now while edges are pending.
    fn next_deadline_ns(&mut self) -> Option<u64> {
        self.sync();
        if self.backlog.pending() > 0 {
            return Some(self.clock.now_ns());
        }
        self.channels[0].next_edge().map(|t| ticks_to_ns(t, PIT_HZ))
    }

    /// Raises one IRQ 0 edge if any is due.
    fn service(&mut self) {
        self.sync();
        if self.backlog.take() {
            self.irq0.pulse();
        }
    }
}

impl BusDevice for Pit {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let tick = self.sync();
        for (i, byte) in data.iter_mut().enumerate() {
            let port = offset.saturating_add(i as u64);
            *byte = if port < u64::from(Self::LEN) {
                self.read_port(port, tick)
            } else {
                0xFF
            };
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let tick = self.sync();
        for (i, &byte) in data.iter().enumerate() {
            let port = offset.saturating_add(i as u64);
            if port < u64::from(Self::LEN) {
                self.write_port(port, byte, tick);
            }
        }
    }
}

#[cfg(test)]
mod tests;
