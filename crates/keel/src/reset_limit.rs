//! When a guest that resets the machine is stopped instead of restarted.
//!
//! A guest that triple-faults during boot resets, boots, faults and resets
//! again, forever; Keel stops it after [`MAX_RESETS_IN_A_ROW`] resets in a
//! row. A reset counts as "in a row" when the guest made no progress since
//! the previous one (or since power-on): fewer than [`PROGRESS_EXITS`] VM
//! exits (each port access run ahead counting as the exit it saved) and
//! less than [`PROGRESS_NS`] of host time. A reset after
//! progress starts the count again, so a guest that reboots now and then
//! (an OS that restarts after each test) runs for as long as it likes.

/// More resets in a row than this stop the VM (docs/ARCHITECTURE.md).
pub const MAX_RESETS_IN_A_ROW: u32 = 16;
/// A guest that took this many exits since the last reset made progress:
/// a reset loop takes a handful per boot (the reset-vector code and the
/// reset write); firmware or a boot loader takes thousands.
pub const PROGRESS_EXITS: u64 = 500;
/// A guest that ran this long since the last reset made progress (1 s).
pub const PROGRESS_NS: u64 = 1_000_000_000;

/// Counts resets in a row for one VM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ResetLimit {
    in_a_row: u32,
    since_exits: u64,
    since_ns: u64,
}

impl ResetLimit {
    /// A VM powered on after `exits` exits (0) at host time `now_ns`.
    pub fn new(exits: u64, now_ns: u64) -> Self {
        ResetLimit {
            in_a_row: 0,
            since_exits: exits,
            since_ns: now_ns,
        }
    }

    /// The guest reset the machine after `exits` exits in all, at host time
    /// `now_ns`. Returns how many resets in a row this makes, or `Err` with
    /// that count when the VM is to be stopped.
    pub fn on_reset(&mut self, exits: u64, now_ns: u64) -> Result<u32, u32> {
        let progressed = exits.saturating_sub(self.since_exits) >= PROGRESS_EXITS
            || now_ns.saturating_sub(self.since_ns) >= PROGRESS_NS;
        self.in_a_row = if progressed {
            1
        } else {
            self.in_a_row.saturating_add(1)
        };
        self.since_exits = exits;
        self.since_ns = now_ns;
        if self.in_a_row > MAX_RESETS_IN_A_ROW {
            Err(self.in_a_row)
        } else {
            Ok(self.in_a_row)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A boot loop: resets 100 exits and 1 ms apart. The 17th in a row stops it.
    #[test]
    fn a_reset_loop_is_stopped_after_16_in_a_row() {
        let mut r = ResetLimit::new(0, 0);
        for n in 1..=16u64 {
            assert_eq!(r.on_reset(n * 100, n * 1_000_000), Ok(n as u32));
        }
        assert_eq!(r.on_reset(1_700, 17_000_000), Err(17));
    }

    /// Finding #10: 17 reboots over a VM's life, each after a full boot,
    /// stopped the VM as "keeps resetting".
    #[test]
    fn resets_after_progress_start_the_count_again() {
        let mut r = ResetLimit::new(0, 0);
        for n in 1..=40u64 {
            assert_eq!(r.on_reset(n * PROGRESS_EXITS, n), Ok(1), "by exits");
        }
        let mut r = ResetLimit::new(0, 0);
        for n in 1..=40u64 {
            assert_eq!(r.on_reset(n, n * PROGRESS_NS), Ok(1), "by time");
        }
        // Fifteen quick ones, progress, then sixteen quick ones again.
        let mut r = ResetLimit::new(0, 0);
        for n in 1..=15 {
            assert_eq!(r.on_reset(n, n), Ok(n as u32));
        }
        let (exits, now) = (15 + PROGRESS_EXITS, 15);
        assert_eq!(r.on_reset(exits, now), Ok(1));
        for n in 1..=15 {
            assert_eq!(r.on_reset(exits + n, now + n), Ok(n as u32 + 1));
        }
        assert_eq!(r.on_reset(exits + 16, now + 16), Err(17));
    }
}
