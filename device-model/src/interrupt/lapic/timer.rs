//! The local APIC timer (SDM Vol 3A 11.5.4): a 32-bit down-counter clocked by
//! the APIC bus clock through the divide configuration register, in one-shot
//! or periodic mode, or the TSC-deadline comparator (11.5.4.1).
//!
//! Lazy, like every Keel timer: nothing ticks. The count is computed from the
//! [`Clock`](crate::Clock) when read, expiries are found by [`ApicTimer::poll`]
//! and [`ApicTimer::next_deadline_ns`] says when the next one is due.
//!
//! Periodic mode counts `initial, initial - 1, ..., 1` and expires on the
//! tick that would reach 0, reloading at once: the period is `initial` ticks.

const NS_PER_S: u128 = 1_000_000_000;

/// LVT timer mode, bits 18:17.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimerMode {
    OneShot,
    Periodic,
    TscDeadline,
}

impl TimerMode {
    /// Decodes the LVT timer register. The reserved encoding 11b counts as
    /// one-shot (the SDM leaves it undefined).
    pub fn from_lvt(lvt: u32) -> Self {
        match (lvt >> 17) & 3 {
            1 => TimerMode::Periodic,
            2 => TimerMode::TscDeadline,
            _ => TimerMode::OneShot,
        }
    }
}

/// The counter's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Countdown {
    /// Not counting; the current count reads 0.
    Stopped,
    /// Counting down from `start_count` since `start_ns`; `expiries` have
    /// been reported by `poll`.
    Running {
        start_ns: u64,
        start_count: u32,
        expiries: u64,
    },
}

/// The timer registers and counting state of one local APIC.
#[derive(Debug, Clone)]
pub struct ApicTimer {
    bus_hz: u64,
    tsc_hz: u64,
    /// Guest TSC = now_ns * tsc_hz / 1e9 + tsc_offset.
    tsc_offset: u64,
    divide_config: u32,
    initial: u32,
    countdown: Countdown,
    /// IA32_TSC_DEADLINE; 0 is disarmed.
    deadline: u64,
}

impl ApicTimer {
    /// A timer in its reset state, counting at `bus_hz` before the divider;
    /// the guest TSC runs at `tsc_hz`.
    pub fn new(bus_hz: u64, tsc_hz: u64) -> Self {
        ApicTimer {
            bus_hz: bus_hz.max(1),
            tsc_hz: tsc_hz.max(1),
            tsc_offset: 0,
            divide_config: 0,
            initial: 0,
            countdown: Countdown::Stopped,
            deadline: 0,
        }
    }

    /// Registers to their reset values; the TSC mapping is kept.
    pub fn reset(&mut self) {
        *self = ApicTimer {
            tsc_offset: self.tsc_offset,
            ..ApicTimer::new(self.bus_hz, self.tsc_hz)
        };
    }

    /// Sets how the guest's TSC relates to the clock: `tsc = now_ns *
    /// tsc_hz / 1e9 + offset` (the VM loop keeps this equal to what the
    /// guest's RDTSC returns).
    pub fn set_tsc_offset(&mut self, offset: u64) {
        self.tsc_offset = offset;
    }

    /// The guest TSC at `now_ns`.
    pub fn guest_tsc(&self, now_ns: u64) -> u64 {
        let tsc = u128::from(now_ns) * u128::from(self.tsc_hz) / NS_PER_S;
        (tsc as u64).wrapping_add(self.tsc_offset)
    }

    /// The divisor chosen by DCR bits 3, 1:0 (SDM Figure 11-10).
    pub fn divisor(&self) -> u32 {
        let code = (self.divide_config & 3) | ((self.divide_config >> 1) & 4);
        1 << ((code + 1) & 7)
    }

    pub fn divide_config(&self) -> u32 {
        self.divide_config
    }

    pub fn initial_count(&self) -> u32 {
        self.initial
    }

    /// Whole counter ticks in `ns`.
    fn ticks(&self, ns: u64) -> u128 {
        u128::from(ns) * u128::from(self.bus_hz) / (NS_PER_S * u128::from(self.divisor()))
    }

    /// The first time at which `ticks` whole ticks have passed since `start_ns`.
    fn time_of_tick(&self, start_ns: u64, ticks: u128) -> u64 {
        let num = ticks * NS_PER_S * u128::from(self.divisor());
        let ns = num.div_ceil(u128::from(self.bus_hz));
        u64::try_from(u128::from(start_ns) + ns).unwrap_or(u64::MAX)
    }

    /// (current count, expiries so far) at `now_ns`.
    fn state_at(&self, mode: TimerMode, now_ns: u64) -> (u32, u64) {
        let Countdown::Running {
            start_ns,
            start_count,
            ..
        } = self.countdown
        else {
            return (0, 0);
        };
        let ticks = self.ticks(now_ns.saturating_sub(start_ns));
        let start = u128::from(start_count);
        if ticks < start {
            return ((start - ticks) as u32, 0);
        }
        match mode {
            TimerMode::Periodic if self.initial != 0 => {
                let rest = ticks - start;
                let period = u128::from(self.initial);
                let expiries = 1 + rest / period;
                let count = period - rest % period;
                (count as u32, u64::try_from(expiries).unwrap_or(u64::MAX))
            }
            _ => (0, 1),
        }
    }

    /// The current count register (0 in TSC-deadline mode).
    pub fn current_count(&self, mode: TimerMode, now_ns: u64) -> u32 {
        if mode == TimerMode::TscDeadline {
            return 0;
        }
        self.state_at(mode, now_ns).0
    }

    /// Whether the timer expired since the last poll (several periodic
    /// expiries count as one interrupt: they would merge in IRR anyway).
    pub fn poll(&mut self, mode: TimerMode, now_ns: u64) -> bool {
        if mode == TimerMode::TscDeadline {
            if self.deadline != 0 && self.guest_tsc(now_ns) >= self.deadline {
                self.deadline = 0;
                return true;
            }
            return false;
        }
        let (_, expiries) = self.state_at(mode, now_ns);
        let Countdown::Running {
            expiries: ref mut seen,
            ..
        } = self.countdown
        else {
            return false;
        };
        if expiries <= *seen {
            return false;
        }
        *seen = expiries;
        if mode != TimerMode::Periodic {
            self.countdown = Countdown::Stopped;
        }
        true
    }

    /// When the next expiry is due, if one is armed.
    pub fn next_deadline_ns(&self, mode: TimerMode) -> Option<u64> {
        if mode == TimerMode::TscDeadline {
            if self.deadline == 0 {
                return None;
            }
            let tsc = u128::from(self.deadline.wrapping_sub(self.tsc_offset));
            if self.deadline < self.tsc_offset {
                return Some(0);
            }
            let ns = (tsc * NS_PER_S).div_ceil(u128::from(self.tsc_hz));
            return Some(u64::try_from(ns).unwrap_or(u64::MAX));
        }
        let Countdown::Running {
            start_ns,
            start_count,
            expiries,
        } = self.countdown
        else {
            return None;
        };
        let ticks = match (mode, expiries) {
            (_, 0) => u128::from(start_count),
            (TimerMode::Periodic, n) => {
                u128::from(start_count) + u128::from(n) * u128::from(self.initial)
            }
            _ => return None,
        };
        Some(self.time_of_tick(start_ns, ticks))
    }

    /// A write of the initial count register: starts counting from `value`
    /// (0 stops the timer). Ignored in TSC-deadline mode.
    pub fn write_initial(&mut self, mode: TimerMode, value: u32, now_ns: u64) {
        if mode == TimerMode::TscDeadline {
            return;
        }
        self.initial = value;
        self.countdown = if value == 0 {
            Countdown::Stopped
        } else {
            Countdown::Running {
                start_ns: now_ns,
                start_count: value,
                expiries: 0,
            }
        };
    }

    /// A write of the divide configuration register: the count goes on from
    /// where it is, at the new rate. The caller polls first.
    pub fn write_divide_config(&mut self, mode: TimerMode, value: u32, now_ns: u64) {
        let (count, _) = self.state_at(mode, now_ns);
        self.divide_config = value & 0xB;
        if let Countdown::Running { .. } = self.countdown {
            self.countdown = if count == 0 {
                Countdown::Stopped
            } else {
                Countdown::Running {
                    start_ns: now_ns,
                    start_count: count,
                    expiries: 0,
                }
            };
        }
    }

    /// The LVT timer mode changed from `old` to `new`: a transition into or
    /// out of TSC-deadline mode disarms the timer (SDM 11.5.4.1). Between
    /// one-shot and periodic the count goes on. The caller polls first.
    pub fn mode_changed(&mut self, old: TimerMode, new: TimerMode, now_ns: u64) {
        if old == new {
            return;
        }
        if old == TimerMode::TscDeadline || new == TimerMode::TscDeadline {
            self.countdown = Countdown::Stopped;
            self.deadline = 0;
            return;
        }
        // Rebase so that expiries already reported in the old mode are not
        // counted again in the new one.
        let (count, _) = self.state_at(old, now_ns);
        if let Countdown::Running { .. } = self.countdown {
            self.countdown = if count == 0 {
                Countdown::Stopped
            } else {
                Countdown::Running {
                    start_ns: now_ns,
                    start_count: count,
                    expiries: 0,
                }
            };
        }
    }

    /// IA32_TSC_DEADLINE as RDMSR returns it: 0 outside TSC-deadline mode.
    pub fn tsc_deadline(&self, mode: TimerMode) -> u64 {
        if mode == TimerMode::TscDeadline {
            self.deadline
        } else {
            0
        }
    }

    /// WRMSR IA32_TSC_DEADLINE: arms (non-zero) or disarms (0) the deadline;
    /// ignored outside TSC-deadline mode.
    pub fn set_tsc_deadline(&mut self, mode: TimerMode, value: u64) {
        if mode == TimerMode::TscDeadline {
            self.deadline = value;
        }
    }
}
