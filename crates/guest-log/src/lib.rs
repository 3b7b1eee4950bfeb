//! Rate-limited logging of guest-triggered events.
//!
//! A guest can repeat whatever makes Keel log (a bad EFER write, a BAR over
//! another device, an unsupported sleep type) millions of times a second,
//! and Keel's log goes out synchronously over a serial line: unlimited, one
//! guest would stall Keel and drown every other VM's lines. Every log line
//! at info level or above that a guest access can cause therefore goes
//! through a [`RateLimitedLog`] kept in the device or policy object that
//! owns the cause, so the limit is per VM and per cause.
//!
//! The first [`RateLimitedLog::BURST`] events are logged in full; after
//! that, one summary line each time the count of events doubles, saying how
//! many were not shown. A guest that repeats an event `n` times produces at
//! most `BURST + log2(n)` lines, and the state is three integers: nothing
//! allocates.
#![no_std]
#![forbid(unsafe_code)]

use core::fmt;

/// What to do with one event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Log it in full.
    Show,
    /// Log it with a note that `suppressed` events since the last line
    /// were not shown, `total` in all.
    Summary { suppressed: u64, total: u64 },
    /// Count it only.
    Quiet,
}

/// The rate limit of one cause of log lines in one VM.
#[derive(Debug, Clone)]
pub struct RateLimitedLog {
    burst: u64,
    events: u64,
    /// The event count at which the next summary line goes out.
    next_summary: u64,
    /// The event count at the last line logged.
    last_shown: u64,
}

impl Default for RateLimitedLog {
    fn default() -> Self {
        Self::new()
    }
}

impl RateLimitedLog {
    /// Events logged in full before the limit starts.
    pub const BURST: u32 = 4;

    pub const fn new() -> Self {
        Self::with_burst(Self::BURST)
    }

    /// A limiter that logs `burst` events (at least one) in full.
    pub const fn with_burst(burst: u32) -> Self {
        let burst = if burst == 0 { 1 } else { burst as u64 };
        RateLimitedLog {
            burst,
            events: 0,
            next_summary: 2 * burst,
            last_shown: 0,
        }
    }

    /// Counts one event and says whether and how to log it.
    pub fn event(&mut self) -> Verdict {
        self.events = self.events.saturating_add(1);
        if self.events <= self.burst {
            self.last_shown = self.events;
            Verdict::Show
        } else if self.events == self.next_summary {
            self.next_summary = self.next_summary.saturating_mul(2);
            let suppressed = self.events - self.last_shown - 1;
            self.last_shown = self.events;
            Verdict::Summary {
                suppressed,
                total: self.events,
            }
        } else {
            Verdict::Quiet
        }
    }

    /// Counts one event and logs `args` at `level` if the limit allows.
    pub fn log(&mut self, level: log::Level, args: fmt::Arguments<'_>) {
        match self.event() {
            Verdict::Show => log::log!(level, "{args}"),
            Verdict::Summary { suppressed, total } => log::log!(
                level,
                "{args} [{suppressed} more like this not shown; {total} in all]"
            ),
            Verdict::Quiet => {}
        }
    }

    /// Events counted so far, logged or not.
    pub fn events(&self) -> u64 {
        self.events
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_million_events_make_a_handful_of_lines() {
        let mut l = RateLimitedLog::new();
        let mut shown = 0;
        let mut summaries = 0;
        let mut reported = 0;
        for _ in 0..1_000_000 {
            match l.event() {
                Verdict::Show => {
                    shown += 1;
                    reported += 1;
                }
                Verdict::Summary { suppressed, total } => {
                    summaries += 1;
                    reported += suppressed + 1;
                    assert_eq!(reported, total, "every event accounted for");
                }
                Verdict::Quiet => {}
            }
        }
        assert_eq!(shown, RateLimitedLog::BURST);
        // 8, 16, ... 2^19 (524,288).
        assert_eq!(summaries, 17);
        assert_eq!(l.events(), 1_000_000);
    }

    #[test]
    fn the_first_events_are_shown_in_full() {
        let mut l = RateLimitedLog::with_burst(2);
        assert_eq!(l.event(), Verdict::Show);
        assert_eq!(l.event(), Verdict::Show);
        assert_eq!(l.event(), Verdict::Quiet);
        assert_eq!(
            l.event(),
            Verdict::Summary {
                suppressed: 1,
                total: 4
            }
        );
        assert_eq!(l.event(), Verdict::Quiet);
    }
}
