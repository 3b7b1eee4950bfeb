//! The VMs of one boot on the machine's CPUs: each vCPU of a VM that
//! `keel::placement` accepts is a scheduler task (`sched`) on the host CPU
//! placement chose, vCPU 0's task builds the VM; a VM's end
//! stops that VM only; when the last one ends, Keel prints the status
//! table and ends with the first non-zero VM status (docs/ARCHITECTURE.md).

use alloc::string::String;
use alloc::sync::{Arc, Weak};
use alloc::vec::Vec;
use core::ops::Range;
use core::sync::atomic::{AtomicUsize, Ordering};

use keel::placement::{self, Row, NOT_STARTED_STATUS};
use spin::{Mutex, Once};
use vm_config::VmConfig;

use crate::cpu::Backend;
use crate::sched;
use crate::vm::{self, World};

/// One VM of this boot.
pub struct Slot {
    /// Its name (or `configuration N` when the file did not parse).
    pub name: String,
    pub config: Option<VmConfig>,
    /// The host CPU each vCPU runs on (vCPU n on the n-th), empty unless
    /// placement accepted it.
    pub cpus: Vec<usize>,
    /// The VM once vCPU 0's CPU built it, for the other vCPUs' CPUs
    /// (`None`: it could not be built). Weak: when the VM's loops have all
    /// left, the machine is dropped, and with it its drives, which flush
    /// what the guest wrote (a host virtio-blk disk's `Drop`).
    vm: Once<Option<Weak<vm::Shared>>>,
    /// Every vCPU's exit counters, made when vCPU 0's task starts the VM
    /// (here, not in the VM: the status table reads them from any CPU).
    exit_stats: Once<vm::VmExitStats>,
    state: Mutex<State>,
}

struct State {
    what: &'static str,
    status: Option<u8>,
}

impl Slot {
    /// A VM to place.
    pub fn new(name: String, config: Option<VmConfig>) -> Self {
        Slot {
            name,
            config,
            cpus: Vec::new(),
            vm: Once::new(),
            exit_stats: Once::new(),
            state: Mutex::new(State {
                what: "refused",
                status: None,
            }),
        }
    }
}

/// What to build VMs from (under its lock), and the backend.
static WORLD: Mutex<Option<World>> = Mutex::new(None);
static BACKEND: Once<Backend> = Once::new();
static SLOTS: Once<Vec<Slot>> = Once::new();
/// VMs still running.
static RUNNING: AtomicUsize = AtomicUsize::new(0);
/// Scheduler tasks' arguments: slot index * VCPU_ARG + vCPU number.
const VCPU_ARG: usize = 256;
/// Set once every CPU's assignment is written.
static GO: AtomicUsize = AtomicUsize::new(0);

/// Places the VMs on the `cpus` running CPUs (refusals are logged and count
/// as [`NOT_STARTED_STATUS`]), then runs CPU 0's VM here; returns only
/// through the end of Keel.
pub fn start(mut slots: Vec<Slot>, world: World, backend: Backend, cpus: usize) -> ! {
    let free_mib = world.frames.free_bytes() >> 20;
    let requests: Vec<placement::Request<'_>> = slots
        .iter()
        .filter_map(|s| s.config.as_ref())
        .map(|c| placement::Request {
            name: &c.name,
            vcpus: c.vcpus,
            memory_mib: c.memory_mib,
            cpus: c.cpus,
        })
        .collect();
    let placed = placement::place(&requests, cpus, free_mib);
    let mut placed = placed.into_iter();
    for slot in slots.iter_mut().filter(|s| s.config.is_some()) {
        match placed.next() {
            Some(Ok(cpus)) => slot.cpus = cpus,
            Some(Err(why)) => log::error!("{why}"),
            None => {}
        }
    }
    *WORLD.lock() = Some(world);
    BACKEND.call_once(|| backend);
    let slots = SLOTS.call_once(|| slots);
    let mut running = 0;
    let mut spawns = Vec::new();
    for (i, slot) in slots.iter().enumerate() {
        if !slot.cpus.is_empty() {
            slot.state.lock().what = "running";
            for (vcpu, &cpu) in slot.cpus.iter().enumerate() {
                spawns.push(sched::Spawn {
                    cpu,
                    entry: run_task,
                    arg: i * VCPU_ARG + vcpu,
                });
            }
            running += 1;
        } else {
            slot.state.lock().status = Some(NOT_STARTED_STATUS);
        }
    }
    log::info!(
        "{} VM{} of {} on {cpus} CPU{}",
        running,
        if running == 1 { "" } else { "s" },
        slots.len(),
        if cpus == 1 { "" } else { "s" }
    );
    sched::create(&spawns);
    RUNNING.store(running, Ordering::SeqCst);
    GO.store(1, Ordering::SeqCst);
    if running == 0 {
        finish_keel();
    }
    cpu_main(0)
}

/// Each CPU's life after start-up: wait for the assignments, run the vCPU
/// loops placed on it (`sched`), then idle.
pub fn cpu_main(cpu: usize) -> ! {
    while GO.load(Ordering::SeqCst) == 0 {
        core::hint::spin_loop();
    }
    sched::run_cpu(cpu);
    loop {
        // Nothing wakes an idle CPU: its interrupts stay off.
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

/// A scheduler task: vCPU `arg % VCPU_ARG` of VM `arg / VCPU_ARG`.
fn run_task(arg: usize) {
    let Some(slot) = SLOTS.get().and_then(|s| s.get(arg / VCPU_ARG)) else {
        return;
    };
    match arg % VCPU_ARG {
        0 => run_slot(slot, arg / VCPU_ARG),
        vcpu => run_vcpu(slot, vcpu as u32),
    }
}

/// vCPU `vcpu` (not 0) of `slot`'s VM, once vCPU 0's loop has built it
/// (that loop may share this CPU: the wait yields).
fn run_vcpu(slot: &Slot, vcpu: u32) {
    let (Some(config), Some(&backend)) = (&slot.config, BACKEND.get()) else {
        return;
    };
    let shared = loop {
        if let Some(shared) = slot.vm.get() {
            break shared;
        }
        sched::yield_now();
    };
    // Gone already: the VM ended before this vCPU's loop started.
    if let Some(shared) = shared.as_ref().and_then(Weak::upgrade) {
        let _ = vm::run_ap(&shared, config, backend, vcpu);
    }
}

/// The scheduler tasks of slot `index`'s vCPUs, in the order `start`
/// spawned them (vCPU n is the n-th).
fn tasks_of(slots: &[Slot], index: usize) -> Range<usize> {
    let first: usize = slots[..index.min(slots.len())]
        .iter()
        .map(|s| s.cpus.len())
        .sum();
    first..first + slots.get(index).map_or(0, |s| s.cpus.len())
}

fn run_slot(slot: &'static Slot, index: usize) {
    let (Some(config), Some(&backend)) = (&slot.config, BACKEND.get()) else {
        return;
    };
    let publish = |shared: Arc<vm::Shared>| {
        slot.vm.call_once(|| Some(Arc::downgrade(&shared)));
    };
    let tasks: Vec<usize> = SLOTS
        .get()
        .map_or(0..0, |slots| tasks_of(slots, index))
        .collect();
    let exit_stats = slot
        .exit_stats
        .call_once(|| vm::VmExitStats::new(config.vcpus));
    let result = vm::run(config, &WORLD, backend, exit_stats, &tasks, &publish);
    // A VM that could not be built releases its other CPUs.
    slot.vm.call_once(|| None);
    let (what, status) = match result {
        Ok(ended) => {
            crate::println!("keel: VM '{}' stopped: {}", config.name, ended.stop);
            let what = match (ended.preserved, ended.stop.exit_status()) {
                (true, _) => "preserved",
                (false, 0) => "shutdown",
                (false, _) => "crashed",
            };
            (what, ended.stop.exit_status())
        }
        Err(e) => {
            log::error!("VM '{}' could not start: {e}", config.name);
            ("refused", NOT_STARTED_STATUS)
        }
    };
    {
        let mut s = slot.state.lock();
        s.what = what;
        s.status = Some(status);
    }
    print_table(&alloc::format!("VM '{}' ended", config.name));
    if RUNNING.fetch_sub(1, Ordering::SeqCst) == 1 {
        finish_keel();
    }
}

/// The status table (`keel::placement::table`), one log line per row.
pub fn print_table(when: &str) {
    let Some(slots) = SLOTS.get() else {
        return;
    };
    let states: Vec<(&'static str, u64)> = slots
        .iter()
        .enumerate()
        .map(|(i, s)| {
            // Every vCPU's CPU time (`sched::cpu_time_ns`), like `xl list`.
            let ns: u64 = tasks_of(slots, i).map(sched::cpu_time_ns).sum();
            (s.state.lock().what, ns / 1_000_000)
        })
        .collect();
    let rows: Vec<Row<'_>> = slots
        .iter()
        .zip(&states)
        .map(|(s, &(state, cpu_ms))| Row {
            name: &s.name,
            cpu: s.cpus.first().copied(),
            vcpus: s.config.as_ref().map_or(0, |c| c.vcpus),
            memory_mib: s.config.as_ref().map_or(0, |c| c.memory_mib),
            state,
            exits: s.exit_stats.get().map_or(0, |e| e.total().count),
            cpu_ms,
        })
        .collect();
    let text = placement::table(&rows);
    let mut out = alloc::format!("keel: VMs ({when}):\n");
    for line in text.lines() {
        out.push_str("keel:   ");
        out.push_str(line);
        out.push('\n');
    }
    crate::serial::write_fmt(format_args!("{out}"));
}

/// Every VM has ended: the table, then Keel's status.
fn finish_keel() -> ! {
    print_table("Keel's end");
    let statuses: Vec<u8> = SLOTS
        .get()
        .map(|s| {
            s.iter()
                .map(|s| s.state.lock().status.unwrap_or(0))
                .collect()
        })
        .unwrap_or_default();
    crate::shutdown::finish(placement::final_status(&statuses))
}
