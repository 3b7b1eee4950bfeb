//! Edges of a periodic interrupt that came due but are not delivered yet.

/// The most edges an [`EdgeBacklog`] keeps; older ones are coalesced.
///
/// 50 periods is half a second of a 100 Hz tick, 2.7 s of the BIOS's 18.2 Hz
/// tick. A vCPU that was not run for longer than that (the host was busy,
/// the VM was paused) loses the excess: the guest sees one long tick instead
/// of a burst of hundreds. Tickless kernels (Linux since 2.6.21, Windows
/// since Vista) keep time from a clocksource (TSC, PM timer, HPET) and only
/// use the tick to schedule, so they tolerate lost ticks; a tick-counting
/// guest (DOS, an RTOS) runs slow by the number lost, which
/// [`EdgeBacklog::lost`] counts.
pub const MAX_PENDING_EDGES: u64 = 50;

/// Edges due but not yet raised, and how many were dropped.
///
/// A timer adds the edges that came due since it was last looked at; the VM
/// loop's service call takes one per call. Raising several edges in one call
/// would be pointless: an edge-triggered controller latches only one until
/// the guest acknowledges it, so the rest would be lost anyway.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct EdgeBacklog {
    pending: u64,
    lost: u64,
}

impl EdgeBacklog {
    /// Records `n` more edges that came due, coalescing beyond [`MAX_PENDING_EDGES`].
    pub fn add(&mut self, n: u64) {
        let total = self.pending.saturating_add(n);
        if total > MAX_PENDING_EDGES {
            self.lost = self.lost.saturating_add(total - MAX_PENDING_EDGES);
            self.pending = MAX_PENDING_EDGES;
        } else {
            self.pending = total;
        }
    }

    /// Takes one pending edge, if any.
    pub fn take(&mut self) -> bool {
        if self.pending == 0 {
            return false;
        }
        self.pending -= 1;
        true
    }

    /// Edges due and not yet raised.
    pub fn pending(&self) -> u64 {
        self.pending
    }

    /// Edges dropped because more than [`MAX_PENDING_EDGES`] were pending.
    pub fn lost(&self) -> u64 {
        self.lost
    }

    /// Forgets pending edges (reprogramming, reset); `lost` is kept.
    pub fn clear(&mut self) {
        self.pending = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edges_are_taken_one_at_a_time() {
        let mut b = EdgeBacklog::default();
        assert!(!b.take());
        b.add(3);
        assert_eq!(b.pending(), 3);
        assert!(b.take() && b.take() && b.take());
        assert!(!b.take());
        assert_eq!(b.lost(), 0);
    }

    #[test]
    fn excess_edges_are_coalesced_and_counted() {
        let mut b = EdgeBacklog::default();
        b.add(MAX_PENDING_EDGES - 1);
        b.add(5);
        assert_eq!(b.pending(), MAX_PENDING_EDGES);
        assert_eq!(b.lost(), 4);
        b.add(u64::MAX);
        assert_eq!(b.pending(), MAX_PENDING_EDGES);
        b.clear();
        assert_eq!(b.pending(), 0);
        assert!(b.lost() > 4);
    }
}
