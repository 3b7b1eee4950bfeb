//! Time for device models: every timer (PIT, RTC, PM timer, HPET, LAPIC timer)
//! reads the same [`Clock`], so tests drive them all with one [`FakeClock`].
//!
//! Timers are lazy: they compute their state from the clock when accessed, and
//! report when they next need attention through `next_deadline_ns`, which the
//! VM loop uses to decide how long a halted vCPU may sleep.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicU64, Ordering};

/// A monotonic clock in nanoseconds since an arbitrary start.
pub trait Clock: Send + Sync {
    fn now_ns(&self) -> u64;
}

/// A shared clock handle, as devices hold it.
pub type ClockHandle = Arc<dyn Clock>;

/// A clock that only moves when told to: for tests, and for replaying timer behaviour.
#[derive(Debug, Default)]
pub struct FakeClock {
    now: AtomicU64,
}

impl FakeClock {
    pub fn new(start_ns: u64) -> Arc<Self> {
        Arc::new(FakeClock {
            now: AtomicU64::new(start_ns),
        })
    }

    /// Moves time forward by `ns`.
    pub fn advance(&self, ns: u64) {
        self.now.fetch_add(ns, Ordering::SeqCst);
    }

    /// Sets the time (never backwards in a well-behaved test).
    pub fn set(&self, ns: u64) {
        self.now.store(ns, Ordering::SeqCst);
    }
}

impl Clock for FakeClock {
    fn now_ns(&self) -> u64 {
        self.now.load(Ordering::SeqCst)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_only_when_told() {
        let c = FakeClock::new(5);
        let h: ClockHandle = c.clone();
        assert_eq!(h.now_ns(), 5);
        c.advance(10);
        assert_eq!(h.now_ns(), 15);
        c.set(100);
        assert_eq!(h.now_ns(), 100);
    }
}
