//! The scheduler: each host CPU runs the vCPU loops placed on it
//! (`hosting`), each on its own stack (`arch::switch`), with the
//! decisions of `keel::run_queue`: round-robin slices of at most 10 ms
//! while another loop on the CPU is ready, a halted vCPU off the queue
//! until its deadline or a kick. A loop gives the CPU up only at its yield
//! points ([`yield_if_due`], [`sleep_until`]), never while it holds a lock;
//! a guest that never exits by itself (spinning with IF=0) is ended by the
//! host APIC timer armed at [`preempt_deadline`] (external interrupts
//! always exit, on SVM and VMX alike). vCPUs never move between CPUs.

use alloc::vec::Vec;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, AtomicUsize, Ordering};

use keel::run_queue::{self, Slice, State};
use spin::{Mutex, Once};

use crate::arch::{lapic, smp, switch};

const MAX_CPUS: usize = 64;
const NONE: usize = usize::MAX;
/// Stack of each vCPU loop (building a VM runs on it too).
const STACK_SIZE: usize = 128 * 1024;

const RUNNABLE: u8 = 0;
const BLOCKED: u8 = 1;
const DONE: u8 = 2;

/// A loop to run on a CPU: `entry(arg)`.
pub struct Spawn {
    pub cpu: usize,
    pub entry: fn(usize),
    pub arg: usize,
}

struct Task {
    cpu: usize,
    entry: fn(usize),
    arg: usize,
    rsp: AtomicU64,
    state: AtomicU8,
    wake_at: AtomicU64,
    /// Set by [`wake`] (any CPU); cleared when the task is picked.
    woken: AtomicBool,
    stack: Mutex<Option<Vec<u8>>>,
    /// Host CPU time the task has had ([`cpu_time_ns`]): the stretches
    /// that ended, and when the current one began (0: not running).
    ran_ns: AtomicU64,
    since_ns: AtomicU64,
}

impl Task {
    fn state(&self) -> State {
        match self.state.load(Ordering::SeqCst) {
            RUNNABLE => State::Runnable,
            BLOCKED => State::Blocked {
                wake_at: self.wake_at.load(Ordering::SeqCst),
                woken: self.woken.load(Ordering::SeqCst),
            },
            _ => State::Done,
        }
    }

    /// A stretch on the CPU begins (picked, or back from halting).
    fn runs(&self) {
        self.since_ns
            .store(crate::clock::now_ns().max(1), Ordering::SeqCst);
    }

    /// The stretch ends (switched out, or about to halt the CPU).
    fn stops(&self) {
        let since = self.since_ns.swap(0, Ordering::SeqCst);
        if since != 0 {
            let ran = crate::clock::now_ns().saturating_sub(since);
            self.ran_ns.fetch_add(ran, Ordering::SeqCst);
        }
    }
}

/// The host CPU time task `task` has had so far, ns: the time it held its
/// CPU, less the time its CPU halted for it (`sleep_until` alone on the
/// CPU). A vCPU loop's CPU time is its vCPU's: the guest's run and Keel's
/// work for it (the status table's Time column, like `xl list`'s).
pub fn cpu_time_ns(task: usize) -> u64 {
    let Some(t) = TASKS.get().and_then(|ts| ts.get(task)) else {
        return 0;
    };
    let ran = t.ran_ns.load(Ordering::SeqCst);
    match t.since_ns.load(Ordering::SeqCst) {
        0 => ran,
        since => ran.saturating_add(crate::clock::now_ns().saturating_sub(since)),
    }
}

struct PerCpu {
    current: AtomicUsize,
    /// The scheduler's own context (on the CPU's boot stack).
    sched_rsp: AtomicU64,
    last: AtomicUsize,
    slice_start: AtomicU64,
    slice_end: AtomicU64,
}

static TASKS: Once<Vec<Task>> = Once::new();
static CPUS: [PerCpu; MAX_CPUS] = [const {
    PerCpu {
        current: AtomicUsize::new(NONE),
        sched_rsp: AtomicU64::new(0),
        last: AtomicUsize::new(0),
        slice_start: AtomicU64::new(0),
        slice_end: AtomicU64::new(0),
    }
}; MAX_CPUS];
/// Keel CPU number by local APIC ID.
static CPU_OF_APIC: [AtomicUsize; 256] = [const { AtomicUsize::new(NONE) }; 256];

/// Creates the loops (once, before any CPU runs [`run_cpu`]); task `i` is
/// `spawns[i]`, the id [`wake`] takes.
pub fn create(spawns: &[Spawn]) {
    TASKS.call_once(|| {
        spawns
            .iter()
            .map(|s| {
                let (stack, rsp) = switch::new_context(STACK_SIZE, task_start);
                Task {
                    cpu: s.cpu.min(MAX_CPUS - 1),
                    entry: s.entry,
                    arg: s.arg,
                    rsp: AtomicU64::new(rsp),
                    state: AtomicU8::new(RUNNABLE),
                    wake_at: AtomicU64::new(0),
                    woken: AtomicBool::new(false),
                    stack: Mutex::new(Some(stack)),
                    ran_ns: AtomicU64::new(0),
                    since_ns: AtomicU64::new(0),
                }
            })
            .collect()
    });
}

/// Runs this CPU's loops until every one of them ended.
pub fn run_cpu(cpu: usize) {
    let Some(tasks) = TASKS.get() else { return };
    let cpu = cpu.min(MAX_CPUS - 1);
    CPU_OF_APIC[lapic::this_cpu() & 0xff].store(cpu, Ordering::SeqCst);
    let me = &CPUS[cpu];
    let mine = || tasks.iter().filter(move |t| t.cpu == cpu).map(Task::state);
    while run_queue::any_alive(mine()) {
        let now = crate::clock::now_ns();
        let state = |i: usize| tasks.get(i).filter(|t| t.cpu == cpu).map(Task::state);
        let Some(i) = run_queue::pick(tasks.len(), me.last.load(Ordering::SeqCst), now, state)
        else {
            let until = run_queue::idle_until(mine()).unwrap_or(now.saturating_add(1_000_000_000));
            lapic::sleep_until(until);
            continue;
        };
        let t = &tasks[i];
        t.woken.store(false, Ordering::SeqCst);
        t.state.store(RUNNABLE, Ordering::SeqCst);
        let slice = Slice::new(now);
        me.slice_start.store(slice.start, Ordering::SeqCst);
        me.slice_end.store(slice.end, Ordering::SeqCst);
        me.last.store(i, Ordering::SeqCst);
        me.current.store(i, Ordering::SeqCst);
        t.runs();
        switch::switch(&me.sched_rsp, t.rsp.load(Ordering::SeqCst));
        t.stops();
        me.current.store(NONE, Ordering::SeqCst);
        if t.state.load(Ordering::SeqCst) == DONE {
            // It switched away for good: its stack is free.
            drop(t.stack.lock().take());
        }
    }
}

/// Every loop's first code, on its own stack.
extern "C" fn task_start() -> ! {
    if let Some((cpu, t)) = current() {
        (t.entry)(t.arg);
        t.state.store(DONE, Ordering::SeqCst);
        switch::switch(&t.rsp, CPUS[cpu].sched_rsp.load(Ordering::SeqCst));
    }
    loop {
        x86_64::instructions::hlt();
    }
}

/// This CPU's number and running loop.
fn current() -> Option<(usize, &'static Task)> {
    let cpu = CPU_OF_APIC[lapic::this_cpu() & 0xff].load(Ordering::SeqCst);
    let i = CPUS.get(cpu)?.current.load(Ordering::SeqCst);
    Some((cpu, TASKS.get()?.get(i)?))
}

/// The other loops of the running loop's CPU.
fn others(cpu: usize, me: &'static Task) -> impl Iterator<Item = State> + Clone {
    TASKS
        .get()
        .into_iter()
        .flatten()
        .filter(move |t| t.cpu == cpu && !core::ptr::eq(*t, me))
        .map(Task::state)
}

fn slice(cpu: usize) -> Slice {
    Slice {
        start: CPUS[cpu].slice_start.load(Ordering::SeqCst),
        end: CPUS[cpu].slice_end.load(Ordering::SeqCst),
    }
}

/// Gives the CPU to the scheduler; returns when this loop is picked again.
fn switch_out(cpu: usize, t: &'static Task) {
    switch::switch(&t.rsp, CPUS[cpu].sched_rsp.load(Ordering::SeqCst));
}

/// When the host timer must end the guest's run for the scheduler
/// (`run_queue::preempt_at`); `None` when this loop has its CPU alone.
pub fn preempt_deadline() -> Option<u64> {
    let (cpu, t) = current()?;
    run_queue::preempt_at(slice(cpu), crate::clock::now_ns(), others(cpu, t))
}

/// A yield point between two guest runs: gives the CPU to another loop if
/// this one's slice is over (`run_queue::should_yield`). Returns whether
/// another loop may have run meanwhile.
pub fn yield_if_due() -> bool {
    let Some((cpu, t)) = current() else {
        return false;
    };
    if !run_queue::should_yield(slice(cpu), crate::clock::now_ns(), others(cpu, t)) {
        return false;
    }
    switch_out(cpu, t);
    true
}

/// Like [`yield_if_due`], whatever the slice (waiting for another loop).
pub fn yield_now() -> bool {
    let Some((cpu, t)) = current() else {
        core::hint::spin_loop();
        return false;
    };
    switch_out(cpu, t);
    true
}

/// The loop sleeps until `deadline_ns` or a [`wake`]: alone on its CPU,
/// the CPU halts (`lapic::sleep_until`); otherwise the loop leaves the run
/// queue and the CPU runs the others. Returns whether another loop may
/// have run meanwhile.
pub fn sleep_until(deadline_ns: u64) -> bool {
    let Some((cpu, t)) = current() else {
        lapic::sleep_until(deadline_ns);
        return false;
    };
    if !run_queue::any_alive(others(cpu, t)) {
        t.stops();
        lapic::sleep_until(deadline_ns);
        t.runs();
        return false;
    }
    t.wake_at.store(deadline_ns, Ordering::SeqCst);
    t.state.store(BLOCKED, Ordering::SeqCst);
    switch_out(cpu, t);
    true
}

/// Makes loop `task` look at its vCPU at once: marks it woken and, on
/// another CPU, kicks that CPU (a host IPI that ends its guest's run or
/// wakes its HLT). A loop already marked and not yet looking (see
/// [`looking`]) is not kicked again: a guest flooding another vCPU with
/// IPIs costs that vCPU's CPU one host interrupt per look, not one per
/// IPI, so the VMs sharing that CPU keep it.
pub fn wake(task: usize) {
    let Some(t) = TASKS.get().and_then(|ts| ts.get(task)) else {
        return;
    };
    if t.woken.swap(true, Ordering::SeqCst) {
        return;
    }
    let here = current().map(|(cpu, _)| cpu);
    if here != Some(t.cpu) {
        smp::kick(t.cpu);
    }
}

/// The running loop is about to look at everything posted for it: its
/// woken mark goes, so the next [`wake`] kicks again.
pub fn looking() {
    if let Some((_, t)) = current() {
        t.woken.store(false, Ordering::SeqCst);
    }
}
