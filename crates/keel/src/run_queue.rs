//! The scheduling decisions of one host CPU's run queue, as pure logic
//! (host-tested); `sched` in the hypervisor keeps the tasks and switches
//! stacks.
//!
//! Each host CPU runs the vCPU loops placed on it round-robin, each for a
//! slice of at most [`SLICE_NS`] while another one is ready. A vCPU that
//! halts leaves the queue (blocked) until its next deadline or a kick; a
//! blocked vCPU that becomes ready is picked before the runnable ones and
//! ends the running vCPU's slice early, but only after that one ran
//! [`MIN_RUN_NS`], so a vCPU that halts and wakes at a high rate cannot
//! take the CPU from the others.

/// The longest a vCPU runs while another on its CPU is ready.
pub const SLICE_NS: u64 = 10_000_000;
/// The shortest a vCPU runs before a woken one may take its CPU.
pub const MIN_RUN_NS: u64 = 1_000_000;

/// A task (a vCPU loop) as the scheduler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Wants the CPU (running or preempted).
    Runnable,
    /// Halted until `wake_at` (ns) or a kick (`woken`).
    Blocked { wake_at: u64, woken: bool },
    /// Its loop ended.
    Done,
}

impl State {
    /// A blocked task whose deadline came or that was kicked.
    fn woke(self, now: u64) -> bool {
        matches!(self, State::Blocked { wake_at, woken } if woken || wake_at <= now)
    }

    fn ready(self, now: u64) -> bool {
        self == State::Runnable || self.woke(now)
    }
}

/// The running task's slice: when it was picked, when its slice ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Slice {
    pub start: u64,
    pub end: u64,
}

impl Slice {
    pub fn new(now: u64) -> Self {
        Slice {
            start: now,
            end: now.saturating_add(SLICE_NS),
        }
    }
}

/// Whether the running task gives its CPU up now: its slice is over and
/// another task is ready, or it ran [`MIN_RUN_NS`] and another woke.
/// `others` are the other tasks of this CPU.
pub fn should_yield(slice: Slice, now: u64, others: impl Iterator<Item = State> + Clone) -> bool {
    let woke = others.clone().any(|s| s.woke(now));
    let ready = woke || others.clone().any(|s| s == State::Runnable);
    (ready && now >= slice.end) || (woke && now >= slice.start.saturating_add(MIN_RUN_NS))
}

/// When the host timer must end the running task's guest run so that
/// [`should_yield`] is asked in time (the guest may never exit by itself,
/// e.g. spinning with interrupts off): the slice's end if another task is
/// runnable, the earliest deadline of a blocked one (not before
/// [`MIN_RUN_NS`] into the slice); `None` when this task is alone.
pub fn preempt_at(slice: Slice, now: u64, others: impl Iterator<Item = State>) -> Option<u64> {
    let min_run = slice.start.saturating_add(MIN_RUN_NS);
    let mut at: Option<u64> = None;
    for s in others {
        let t = match s {
            State::Runnable => slice.end,
            State::Blocked { woken: true, .. } => min_run.max(now),
            State::Blocked { wake_at, .. } => wake_at.max(min_run).min(slice.end.max(wake_at)),
            State::Done => continue,
        };
        at = Some(at.map_or(t, |a| a.min(t)));
    }
    at
}

/// The task to run next on a CPU whose tasks are `0..n` (`state(i)` is
/// `None` for a task of another CPU), after `last`: a woken blocked task
/// first, else a runnable one, each in round-robin order.
pub fn pick(
    n: usize,
    last: usize,
    now: u64,
    state: impl Fn(usize) -> Option<State>,
) -> Option<usize> {
    let order = || (1..=n).map(move |k| (last + k) % n);
    order()
        .find(|&i| state(i).is_some_and(|s| s.woke(now)))
        .or_else(|| order().find(|&i| state(i).is_some_and(|s| s.ready(now))))
}

/// When a CPU with no ready task must look again: the earliest deadline
/// of its blocked tasks (a kick wakes it earlier); `None` if none has one.
pub fn idle_until(tasks: impl Iterator<Item = State>) -> Option<u64> {
    tasks
        .filter_map(|s| match s {
            State::Blocked { wake_at, .. } => Some(wake_at),
            _ => None,
        })
        .min()
}

/// Whether any task is not done yet.
pub fn any_alive(mut tasks: impl Iterator<Item = State>) -> bool {
    tasks.any(|s| s != State::Done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    const MS: u64 = 1_000_000;

    fn blocked(wake_at: u64) -> State {
        State::Blocked {
            wake_at,
            woken: false,
        }
    }

    #[test]
    fn a_spinning_task_yields_at_its_slice_end_when_another_is_ready() {
        let s = Slice::new(100 * MS);
        let other = [State::Runnable];
        assert!(!should_yield(s, 105 * MS, other.iter().copied()));
        assert!(should_yield(s, 110 * MS, other.iter().copied()));
        // The timer ends the guest's run at the slice's end.
        assert_eq!(
            preempt_at(s, 100 * MS, other.iter().copied()),
            Some(110 * MS)
        );
        // Alone, or with only done tasks: never preempted, no timer.
        assert!(!should_yield(s, 500 * MS, [State::Done].into_iter()));
        assert_eq!(preempt_at(s, 100 * MS, [State::Done].into_iter()), None);
        // Others all halted with later deadlines: no yield at the slice end.
        assert!(!should_yield(s, 111 * MS, [blocked(200 * MS)].into_iter()));
    }

    #[test]
    fn a_woken_task_preempts_after_the_minimum_run() {
        let s = Slice::new(100 * MS);
        let due = [blocked(100 * MS + 300_000)];
        // The deadline falls before MIN_RUN: the timer waits for MIN_RUN.
        assert_eq!(preempt_at(s, 100 * MS, due.iter().copied()), Some(101 * MS));
        assert!(!should_yield(s, 100 * MS + 500_000, due.iter().copied()));
        assert!(should_yield(s, 101 * MS, due.iter().copied()));
        // A later deadline inside the slice is the timer's deadline.
        let later = [blocked(104 * MS)];
        assert_eq!(
            preempt_at(s, 100 * MS, later.iter().copied()),
            Some(104 * MS)
        );
        assert!(!should_yield(s, 103 * MS, later.iter().copied()));
        assert!(should_yield(s, 104 * MS, later.iter().copied()));
        // A kick counts as woken whatever the deadline.
        let kicked = [State::Blocked {
            wake_at: u64::MAX,
            woken: true,
        }];
        assert!(should_yield(s, 101 * MS, kicked.iter().copied()));
        assert_eq!(
            preempt_at(s, 102 * MS, kicked.iter().copied()),
            Some(102 * MS)
        );
    }

    #[test]
    fn pick_prefers_woken_then_round_robin_and_skips_other_cpus() {
        // Tasks 0..5: 1 is on another CPU, 2 halted until later, 3 woke.
        let states = [
            Some(State::Runnable),
            None,
            Some(blocked(50)),
            Some(blocked(10)),
            Some(State::Runnable),
        ];
        let at = |i: usize| states[i];
        assert_eq!(pick(5, 0, 20, at), Some(3));
        // Nobody woke: the runnable after `last`, wrapping around.
        let states2 = [
            Some(State::Runnable),
            None,
            Some(blocked(50)),
            Some(State::Done),
            Some(State::Runnable),
        ];
        assert_eq!(pick(5, 0, 20, |i| states2[i]), Some(4));
        assert_eq!(pick(5, 4, 20, |i| states2[i]), Some(0));
        // Nothing ready: idle until the earliest deadline.
        let idle = [Some(blocked(50)), Some(blocked(30)), Some(State::Done)];
        assert_eq!(pick(3, 0, 20, |i| idle[i]), None);
        assert_eq!(idle_until(idle.iter().flatten().copied()), Some(30));
        assert!(any_alive(idle.iter().flatten().copied()));
        assert!(!any_alive(vec![State::Done].into_iter()));
    }

    #[test]
    fn two_spinning_tasks_share_the_cpu_evenly() {
        // Simulate: both always runnable; each runs until should_yield.
        let mut states = [State::Runnable, State::Runnable];
        let mut ran = [0u64; 2];
        let (mut now, mut last) = (0u64, 1usize);
        while now < 1000 * MS {
            let i = pick(2, last, now, |i| Some(states[i])).unwrap();
            let s = Slice::new(now);
            let other = [states[1 - i]];
            let end = preempt_at(s, now, other.iter().copied()).unwrap();
            assert!(should_yield(s, end, other.iter().copied()));
            ran[i] += end - now;
            now = end;
            last = i;
            states[i] = State::Runnable;
        }
        assert_eq!(ran[0], 500 * MS);
        assert_eq!(ran[1], 500 * MS);
    }
}
