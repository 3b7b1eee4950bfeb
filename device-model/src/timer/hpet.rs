//! The High Precision Event Timer (IA-PC HPET Specification 1.0a, Intel,
//! October 2004), one block at MMIO 0xFED00000, 1 KiB.
//!
//! A 64-bit up-counter at 100 MHz (period 10 ns = 10,000,000 fs) and three
//! comparators, each able to run one-shot or periodic, 32- or 64-bit, edge or
//! level triggered, routed to a GSI from its route capability or, in
//! LegacyReplacement mode, timer 0 to ISA IRQ 0 and timer 1 to ISA IRQ 8
//! (2.3.9.2.2). Vendor 0x8086, revision 1, like the PIIX/ICH HPETs firmware
//! expects.
//!
//! The counter is lazy: it is `counter_base + elapsed clock ticks` while
//! ENABLE_CNF is set and frozen while it is clear. Comparator matches
//! between two looks at the clock are all counted (a periodic comparator
//! advances by its period for each, 2.3.9.2.1); for edge-triggered timers
//! they go through an [`EdgeBacklog`] and [`TimerDevice::service`] raises
//! one per call, for level-triggered ones the status bit is set and the line
//! held until the guest clears the bit.
//!
//! Access sizes (2.3.2 "Register Accesses"): the registers are 64 bits and the
//! spec defines aligned 32- and 64-bit accesses. Keel also serves 1- and
//! 2-byte accesses inside one register as byte lanes of it (a write merges
//! those bytes into the register). An access that crosses a 64-bit register
//! boundary is undefined in the spec; Keel reads it as all-ones and drops it.
//! Reserved registers read 0 and ignore writes.
//!
//! Not modelled: FSB (MSI) delivery (Tn_FSB_INT_DEL_CAP = 0), and the extra
//! interrupt a 32-bit one-shot timer gives on counter wrap.

use alloc::vec::Vec;

use super::{ns_to_ticks, ticks_to_ns, EdgeBacklog, LegacyReplacement, TimerDevice};
use crate::clock::ClockHandle;
use crate::irq::IrqLine;
use crate::BusDevice;

/// Counter frequency in Hz.
pub const HPET_HZ: u64 = 100_000_000;
/// COUNTER_CLK_PERIOD: 10 ns in femtoseconds.
pub const HPET_PERIOD_FS: u64 = 10_000_000;
/// Number of comparators.
pub const HPET_TIMERS: usize = 3;

/// Register offsets (spec Table 3, memory-mapped register space).
mod reg {
    pub const GCAP_ID: u64 = 0x000;
    pub const GEN_CONF: u64 = 0x010;
    pub const GINTR_STA: u64 = 0x020;
    pub const MAIN_CNT: u64 = 0x0F0;
    /// Timer n's registers start at `TIMER0 + n * TIMER_STRIDE`.
    pub const TIMER0: u64 = 0x100;
    pub const TIMER_STRIDE: u64 = 0x20;
    /// Within a timer's block.
    pub const TN_CONF_CAP: u64 = 0x0;
    pub const TN_COMPARATOR: u64 = 0x8;
    pub const TN_FSB_ROUTE: u64 = 0x10;
}

/// GCAP_ID fields (2.3.4).
mod cap {
    pub const REV_ID: u64 = 0x01;
    pub const COUNT_SIZE_CAP: u64 = 1 << 13;
    pub const LEG_RT_CAP: u64 = 1 << 15;
    pub const VENDOR_ID: u64 = 0x8086 << 16;
}

/// GEN_CONF bits (2.3.5).
mod gen {
    pub const ENABLE_CNF: u64 = 1 << 0;
    pub const LEG_RT_CNF: u64 = 1 << 1;
}

/// Tn_CONF_CAP bits (2.3.8).
mod tn {
    pub const INT_TYPE_CNF: u64 = 1 << 1;
    pub const INT_ENB_CNF: u64 = 1 << 2;
    pub const TYPE_CNF: u64 = 1 << 3;
    pub const PER_INT_CAP: u64 = 1 << 4;
    pub const SIZE_CAP: u64 = 1 << 5;
    pub const VAL_SET_CNF: u64 = 1 << 6;
    pub const MODE32_CNF: u64 = 1 << 8;
    pub const INT_ROUTE_SHIFT: u32 = 9;
    pub const INT_ROUTE_CNF: u64 = 0x1F << INT_ROUTE_SHIFT;
    /// Bits software can write (FSB_EN_CNF stays 0: no FSB capability).
    pub const WRITABLE: u64 =
        INT_TYPE_CNF | INT_ENB_CNF | TYPE_CNF | VAL_SET_CNF | MODE32_CNF | INT_ROUTE_CNF;
}

/// Where the HPET's interrupts go.
pub struct HpetIrqs {
    /// LegacyReplacement timer 0: the line of ISA IRQ 0 (the same line the
    /// PIT drives; on the IOAPIC it arrives at input 2).
    pub legacy_irq0: IrqLine,
    /// LegacyReplacement timer 1: the line of ISA IRQ 8 (the RTC's).
    pub legacy_irq8: IrqLine,
    /// The lines a timer may be routed to with Tn_INT_ROUTE_CNF. Each line's
    /// GSI (below 32) becomes a bit of every timer's Tn_INT_ROUTE_CAP.
    /// QEMU's `pc` machine offers GSI 2 only.
    pub routes: Vec<IrqLine>,
}

#[derive(Debug, Clone, Default)]
struct Comparator {
    /// Writable Tn_CONF_CAP bits.
    config: u64,
    cmp: u64,
    period: u64,
    backlog: EdgeBacklog,
}

impl Comparator {
    fn new() -> Self {
        // Comparators reset to all ones (2.3.9.1: "default ... FFFFFFFF_FFFFFFFF").
        Comparator {
            cmp: u64::MAX,
            ..Default::default()
        }
    }

    fn mode32(&self) -> bool {
        self.config & tn::MODE32_CNF != 0
    }

    fn periodic(&self) -> bool {
        self.config & tn::TYPE_CNF != 0
    }

    fn level(&self) -> bool {
        self.config & tn::INT_TYPE_CNF != 0
    }

    fn int_enabled(&self) -> bool {
        self.config & tn::INT_ENB_CNF != 0
    }

    fn route(&self) -> u32 {
        ((self.config & tn::INT_ROUTE_CNF) >> tn::INT_ROUTE_SHIFT) as u32
    }

    /// The first counter value after `from` at which this comparator matches.
    fn next_match(&self, from: u64) -> Option<u64> {
        if self.mode32() {
            let d = (self.cmp as u32).wrapping_sub(from.wrapping_add(1) as u32);
            from.checked_add(1)?.checked_add(u64::from(d))
        } else {
            (self.cmp > from).then_some(self.cmp)
        }
    }

    /// Matches in counter values `(from, to]`; advances a periodic comparator
    /// past `to` (2.3.9.2.1: each match adds the period).
    fn matches(&mut self, from: u64, to: u64) -> u64 {
        let Some(v) = self.next_match(from).filter(|&v| v <= to) else {
            return 0;
        };
        let period = if self.mode32() {
            self.period & 0xFFFF_FFFF
        } else {
            self.period
        };
        if !self.periodic() || period == 0 {
            return 1;
        }
        let k = 1 + (to - v) / period;
        self.cmp = self.cmp.wrapping_add(k.wrapping_mul(period));
        if self.mode32() {
            self.cmp &= 0xFFFF_FFFF;
        }
        k
    }
}

/// The HPET block.
pub struct Hpet {
    clock: ClockHandle,
    irqs: HpetIrqs,
    legacy: LegacyReplacement,
    route_cap: u32,
    config: u64,
    isr: u64,
    /// Counter value at `base_ns` (while enabled) or the frozen value.
    counter_base: u64,
    base_ns: u64,
    /// Counter value up to which matches have been counted.
    checked: u64,
    timers: [Comparator; HPET_TIMERS],
    /// Level last driven on legacy IRQ 0, legacy IRQ 8, then each route line.
    driven: Vec<bool>,
}

impl Hpet {
    /// Where firmware and ACPI tables put it on a PC.
    pub const BASE: u64 = 0xFED0_0000;
    /// The register block's size.
    pub const LEN: u64 = 0x400;

    /// An HPET with its counter halted at 0; `legacy` is set while
    /// LegacyReplacement routing is in force (see [`LegacyReplacement`]).
    pub fn new(clock: ClockHandle, irqs: HpetIrqs, legacy: LegacyReplacement) -> Self {
        let route_cap = irqs
            .routes
            .iter()
            .filter(|l| l.gsi() < 32)
            .fold(0u32, |cap, l| cap | 1 << l.gsi());
        let driven = alloc::vec![false; 2 + irqs.routes.len()];
        let base_ns = clock.now_ns();
        Hpet {
            clock,
            irqs,
            legacy,
            route_cap,
            config: 0,
            isr: 0,
            counter_base: 0,
            base_ns,
            checked: 0,
            timers: [Comparator::new(), Comparator::new(), Comparator::new()],
            driven,
        }
    }

    /// The power-on state: halted at 0, every timer disabled, lines low.
    pub fn reset(&mut self) {
        self.config = 0;
        self.isr = 0;
        self.counter_base = 0;
        self.base_ns = self.clock.now_ns();
        self.checked = 0;
        self.timers = [Comparator::new(), Comparator::new(), Comparator::new()];
        self.legacy.set(false);
        self.update_levels();
    }

    fn enabled(&self) -> bool {
        self.config & gen::ENABLE_CNF != 0
    }

    fn legacy_routing(&self) -> bool {
        self.config & gen::LEG_RT_CNF != 0
    }

    fn counter_at(&self, now_ns: u64) -> u64 {
        if self.enabled() {
            let ticks = ns_to_ticks(now_ns.saturating_sub(self.base_ns), HPET_HZ);
            self.counter_base.wrapping_add(ticks)
        } else {
            self.counter_base
        }
    }

    /// Counts comparator matches up to now; returns the counter.
    fn sync(&mut self) -> u64 {
        let now = self.counter_at(self.clock.now_ns());
        if self.enabled() && now > self.checked {
            for (n, t) in self.timers.iter_mut().enumerate() {
                let k = t.matches(self.checked, now);
                if k == 0 || !t.int_enabled() {
                    continue;
                }
                if t.level() {
                    self.isr |= 1 << n;
                } else {
                    t.backlog.add(k);
                }
            }
            self.update_levels();
        }
        self.checked = now;
        now
    }

    /// The output index (0: legacy IRQ 0, 1: legacy IRQ 8, 2..: routes) of timer `n`.
    fn output(&self, n: usize) -> Option<usize> {
        if self.legacy_routing() && n < 2 {
            return Some(n);
        }
        let route = self.timers[n].route();
        if self.route_cap & (1 << route) == 0 {
            return None;
        }
        self.irqs
            .routes
            .iter()
            .position(|l| l.gsi() == route)
            .map(|i| i + 2)
    }

    fn line(&self, out: usize) -> &IrqLine {
        match out {
            0 => &self.irqs.legacy_irq0,
            1 => &self.irqs.legacy_irq8,
            i => &self.irqs.routes[i - 2],
        }
    }

    /// Drives every level-triggered output to the OR of its active timers.
    /// Runs on every service pass: it works on the fixed outputs in place
    /// and allocates nothing.
    fn update_levels(&mut self) {
        for o in 0..self.driven.len() {
            let level = self.enabled()
                && (0..HPET_TIMERS).any(|n| {
                    let t = &self.timers[n];
                    t.level()
                        && t.int_enabled()
                        && self.isr & (1 << n) != 0
                        && self.output(n) == Some(o)
                });
            if self.driven[o] != level {
                self.driven[o] = level;
                self.line(o).set_level(level);
            }
        }
    }

    fn read_reg(&mut self, offset: u64) -> u64 {
        match offset {
            reg::GCAP_ID => {
                HPET_PERIOD_FS << 32
                    | cap::VENDOR_ID
                    | cap::LEG_RT_CAP
                    | cap::COUNT_SIZE_CAP
                    | ((HPET_TIMERS as u64 - 1) << 8)
                    | cap::REV_ID
            }
            reg::GEN_CONF => self.config,
            reg::GINTR_STA => self.isr,
            reg::MAIN_CNT => self.sync(),
            o if o >= reg::TIMER0 => {
                let n = ((o - reg::TIMER0) / reg::TIMER_STRIDE) as usize;
                let Some(t) = self.timers.get(n) else {
                    return 0;
                };
                match (o - reg::TIMER0) % reg::TIMER_STRIDE {
                    reg::TN_CONF_CAP => {
                        u64::from(self.route_cap) << 32 | tn::PER_INT_CAP | tn::SIZE_CAP | t.config
                    }
                    reg::TN_COMPARATOR if t.mode32() => t.cmp & 0xFFFF_FFFF,
                    reg::TN_COMPARATOR => t.cmp,
                    reg::TN_FSB_ROUTE => 0,
                    _ => 0,
                }
            }
            _ => 0,
        }
    }

    /// A write of the bits in `mask` of `value` to the register at `offset`.
    fn write_reg(&mut self, offset: u64, value: u64, mask: u64) {
        let merge = |old: u64| (old & !mask) | (value & mask);
        match offset {
            reg::GEN_CONF => {
                let now = self.sync();
                let was_enabled = self.enabled();
                self.config = merge(self.config) & (gen::ENABLE_CNF | gen::LEG_RT_CNF);
                match (was_enabled, self.enabled()) {
                    (false, true) => self.base_ns = self.clock.now_ns(),
                    (true, false) => self.counter_base = now,
                    _ => {}
                }
                self.legacy.set(self.enabled() && self.legacy_routing());
                self.update_levels();
            }
            reg::GINTR_STA => {
                self.sync();
                // Write 1 to clear; only level-triggered status is ever set.
                self.isr &= !(value & mask);
                self.update_levels();
            }
            reg::MAIN_CNT => {
                // The spec asks software to write it only while halted; a
                // write while running restarts counting from the value.
                let now = self.sync();
                self.counter_base = merge(now);
                self.base_ns = self.clock.now_ns();
                self.checked = self.counter_base;
            }
            o if o >= reg::TIMER0 => {
                let n = ((o - reg::TIMER0) / reg::TIMER_STRIDE) as usize;
                if n >= HPET_TIMERS {
                    return;
                }
                self.sync();
                let t = &mut self.timers[n];
                match (o - reg::TIMER0) % reg::TIMER_STRIDE {
                    reg::TN_CONF_CAP => {
                        t.config = merge(t.config) & tn::WRITABLE;
                        if t.mode32() {
                            t.cmp &= 0xFFFF_FFFF;
                            t.period &= 0xFFFF_FFFF;
                        }
                        if !t.level() {
                            self.isr &= !(1 << n);
                        }
                        self.update_levels();
                    }
                    reg::TN_COMPARATOR => {
                        let width = if t.mode32() { 0xFFFF_FFFF } else { u64::MAX };
                        let mask = mask & width;
                        let dep = |old: u64| (old & !mask) | (value & mask);
                        // Periodic: a write sets the period, and the
                        // accumulator too when Tn_VAL_SET_CNF was set first.
                        if !t.periodic() || t.config & tn::VAL_SET_CNF != 0 {
                            t.cmp = dep(t.cmp);
                        }
                        if t.periodic() {
                            t.period = dep(t.period);
                        }
                        t.config &= !tn::VAL_SET_CNF;
                    }
                    _ => {}
                }
            }
            _ => {}
        }
    }

    /// Matches of timer `n` not yet raised (edge-triggered).
    pub fn pending_irqs(&mut self, n: usize) -> u64 {
        self.sync();
        self.timers.get(n).map_or(0, |t| t.backlog.pending())
    }

    /// Whether LegacyReplacement routing is in force.
    pub fn legacy_replacement(&self) -> bool {
        self.enabled() && self.legacy_routing()
    }
}

impl TimerDevice for Hpet {
    /// The earliest comparator match of an enabled timer, or now while edges
    /// are pending. `None` while the counter is halted.
    fn next_deadline_ns(&mut self) -> Option<u64> {
        let now = self.sync();
        if !self.enabled() {
            return None;
        }
        if self.timers.iter().any(|t| t.backlog.pending() > 0) {
            return Some(self.clock.now_ns());
        }
        self.timers
            .iter()
            .filter(|t| t.int_enabled())
            .filter_map(|t| t.next_match(now))
            .min()
            .map(|v| {
                let ticks = v.wrapping_sub(self.counter_base);
                self.base_ns.saturating_add(ticks_to_ns(ticks, HPET_HZ))
            })
    }

    /// Raises one pending edge per edge-triggered timer.
    fn service(&mut self) {
        self.sync();
        for n in 0..HPET_TIMERS {
            if !self.timers[n].backlog.take() {
                continue;
            }
            if let Some(o) = self.output(n) {
                self.line(o).pulse();
            }
        }
    }
}

impl BusDevice for Hpet {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0xFF);
        let lane = (offset & 7) as usize;
        if offset >= Self::LEN || lane + data.len() > 8 {
            return;
        }
        let bytes = self.read_reg(offset & !7).to_le_bytes();
        data.copy_from_slice(&bytes[lane..lane + data.len()]);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let lane = (offset & 7) as usize;
        if offset >= Self::LEN || data.is_empty() || lane + data.len() > 8 {
            return;
        }
        let mut bytes = [0u8; 8];
        let mut mask = [0u8; 8];
        bytes[lane..lane + data.len()].copy_from_slice(data);
        mask[lane..lane + data.len()].fill(0xFF);
        self.write_reg(
            offset & !7,
            u64::from_le_bytes(bytes),
            u64::from_le_bytes(mask),
        );
    }
}

#[cfg(test)]
mod tests;
