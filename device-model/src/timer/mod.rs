//! The PC's timers: the 8254 PIT with port 0x61, the MC146818A RTC/CMOS, the
//! ACPI PM timer and the HPET.
//!
//! Every timer reads the shared [`Clock`](crate::Clock) and is lazy: its
//! registers are computed from the clock when the guest reads them, and
//! interrupts are raised when the VM loop services it. The loop's contract,
//! the same for every timer ([`TimerDevice`]):
//!
//! 1. before halting the vCPU, ask each timer for [`TimerDevice::next_deadline_ns`]
//!    and sleep at most until the earliest one;
//! 2. on every pass through the loop (after each exit, before resuming), call
//!    [`TimerDevice::service`], which raises the interrupts that came due.
//!
//! Periodic edge-triggered interrupts are counted, not just noticed: an edge
//! that came due while nobody serviced the timer is kept in an
//! [`EdgeBacklog`] and delivered on a later service call, one edge per call,
//! so a guest that counts ticks sees every period. See [`EdgeBacklog`] for the
//! catch-up policy.

pub mod hpet;
pub mod pit;
pub mod pm_timer;
pub mod port61;
pub mod rtc;

mod backlog;
mod cmos_layout;
mod legacy;
#[cfg(test)]
pub(crate) mod testutil;

pub use backlog::{EdgeBacklog, MAX_PENDING_EDGES};
pub use cmos_layout::{pc_memory_split, BootDevice, CmosLayout};
pub use hpet::{Hpet, HpetIrqs};
pub use legacy::LegacyReplacement;
pub use pit::Pit;
pub use pm_timer::{PmTimer, PmTimerWidth};
pub use port61::Port61;
pub use rtc::{cmos_unix_time, Rtc};

/// What the VM loop asks of every timer, and of every device with work
/// that goes on after the access that started it (a DMA engine moving the
/// rest of a transfer longer than one exit's budget): `Pc::service` runs it
/// for each such device, with no device-specific code.
pub trait TimerDevice {
    /// The clock time (ns, on the shared [`Clock`](crate::Clock)) at which
    /// this device next needs [`service`](Self::service), or `None` if nothing
    /// is scheduled. A time at or before now means "service now".
    fn next_deadline_ns(&mut self) -> Option<u64>;
    /// Does the work due at the clock's current time: raises the interrupts
    /// that came due, moves the next bounded piece of a transfer.
    fn service(&mut self);
}

/// `ns * hz / 1e9`, floored: how many ticks of an `hz` clock have started by
/// `ns` nanoseconds after the clock's first tick.
pub(crate) fn ns_to_ticks(ns: u64, hz: u64) -> u64 {
    let t = u128::from(ns) * u128::from(hz) / 1_000_000_000;
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// The first time in ns at which tick `ticks` of an `hz` clock has started:
/// the smallest `ns` with `ns_to_ticks(ns, hz) >= ticks`.
pub(crate) fn ticks_to_ns(ticks: u64, hz: u64) -> u64 {
    if hz == 0 {
        return u64::MAX;
    }
    let ns = (u128::from(ticks) * 1_000_000_000).div_ceil(u128::from(hz));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tick_conversions_round_trip() {
        for hz in [1_193_182, 3_579_545, 32_768, 100_000_000] {
            for t in [0u64, 1, 2, 1000, 1_193_182, 123_456_789] {
                let ns = ticks_to_ns(t, hz);
                assert_eq!(ns_to_ticks(ns, hz), t, "hz {hz} tick {t}");
                if ns > 0 {
                    assert_eq!(ns_to_ticks(ns - 1, hz), t - 1, "hz {hz} tick {t}");
                }
            }
        }
        assert_eq!(ns_to_ticks(1_000_000_000, 1_193_182), 1_193_182);
        assert_eq!(ns_to_ticks(u64::MAX, 100_000_000), u64::MAX / 10);
        assert_eq!(ticks_to_ns(u64::MAX, 1), u64::MAX);
    }
}
