//! Per-VM exit statistics: for every exit reason, and for port I/O and MMIO
//! for every device, how many exits there were and how many host TSC cycles
//! went to Keel (from the exit to the next entry) and to the guest (from the
//! entry to the exit).
//!
//! The counters are a fixed table, sized when the VM is built: one row per
//! [`ExitKind`] and, per address space, one per bus device index (the bus's
//! stable index of a range's name, `device_model::bus::Bus::device_at`) up to
//! [`MAX_DEVICES`], plus a row for accesses no device decodes and one for
//! indexes past the table. Recording an exit is a few additions: no search,
//! no allocation (docs/SECURITY.md, "Work per exit has a fixed budget").
//!
//! Each vCPU has its own table, written by its loop alone and read by any
//! CPU (the console's `stats`, the VM's end): the cells are atomics that the
//! one writer updates with a plain load and store (no locked instruction, no
//! lock), and [`ExitStats::sum`] merges the vCPUs' tables for printing.
//!
//! [`ExitStats::write_table`] prints the summary Keel shows when a VM ends
//! and on demand (in the spirit of `kvm_stat` and `xentrace` summaries);
//! [`ExitRow::parse`] and [`StatsCost::parse`] read it back, for
//! `cargo xtask bench` and the integration tests, so the format has one
//! definition.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU64, Ordering};

/// Why the guest stopped running: one kind per variant of the arch-neutral
/// `vmm_core::VmExit` (which maps itself with `VmExit::kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum ExitKind {
    /// IN, OUT, INS, OUTS (per device: the port's range on the bus).
    Io,
    /// A nested page fault: MMIO (per device: the address's range on the
    /// bus), or RAM (a dirty-logged page, a PAM segment).
    NestedPageFault,
    Cpuid,
    Rdmsr,
    Wrmsr,
    Hlt,
    CrAccess,
    Invd,
    Wbinvd,
    Xsetbv,
    Rdpmc,
    /// RDTSC and RDTSCP, intercepted only while Keel keeps a VM's timer
    /// calibration consistent (crates/keel `apparent_time`).
    Rdtsc,
    Hypercall,
    UndefinedInstruction,
    TaskSwitch,
    Shutdown,
    ExternalInterrupt,
    InterruptWindow,
    NmiWindow,
    Exception,
    InvalidGuestState,
    Unknown,
}

impl ExitKind {
    /// Every kind, in declaration order (the order of the counters).
    pub const ALL: [ExitKind; 22] = [
        ExitKind::Io,
        ExitKind::NestedPageFault,
        ExitKind::Cpuid,
        ExitKind::Rdmsr,
        ExitKind::Wrmsr,
        ExitKind::Hlt,
        ExitKind::CrAccess,
        ExitKind::Invd,
        ExitKind::Wbinvd,
        ExitKind::Xsetbv,
        ExitKind::Rdpmc,
        ExitKind::Rdtsc,
        ExitKind::Hypercall,
        ExitKind::UndefinedInstruction,
        ExitKind::TaskSwitch,
        ExitKind::Shutdown,
        ExitKind::ExternalInterrupt,
        ExitKind::InterruptWindow,
        ExitKind::NmiWindow,
        ExitKind::Exception,
        ExitKind::InvalidGuestState,
        ExitKind::Unknown,
    ];
    pub const COUNT: usize = Self::ALL.len();

    /// The row label: the instruction's name where one instruction exits,
    /// else a short name of the event.
    pub fn name(self) -> &'static str {
        match self {
            ExitKind::Io => "io",
            ExitKind::NestedPageFault => "npf",
            ExitKind::Cpuid => "cpuid",
            ExitKind::Rdmsr => "rdmsr",
            ExitKind::Wrmsr => "wrmsr",
            ExitKind::Hlt => "hlt",
            ExitKind::CrAccess => "cr_access",
            ExitKind::Invd => "invd",
            ExitKind::Wbinvd => "wbinvd",
            ExitKind::Xsetbv => "xsetbv",
            ExitKind::Rdpmc => "rdpmc",
            ExitKind::Rdtsc => "rdtsc",
            ExitKind::Hypercall => "hypercall",
            ExitKind::UndefinedInstruction => "undefined_insn",
            ExitKind::TaskSwitch => "task_switch",
            ExitKind::Shutdown => "shutdown",
            ExitKind::ExternalInterrupt => "external_irq",
            ExitKind::InterruptWindow => "irq_window",
            ExitKind::NmiWindow => "nmi_window",
            ExitKind::Exception => "exception",
            ExitKind::InvalidGuestState => "invalid_state",
            ExitKind::Unknown => "unknown",
        }
    }

    /// The address space whose devices this kind is counted by, if any.
    pub fn space(self) -> Option<Space> {
        match self {
            ExitKind::Io => Some(Space::Pio),
            ExitKind::NestedPageFault => Some(Space::Mmio),
            _ => None,
        }
    }
}

/// The two address spaces devices are counted in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Space {
    Pio,
    Mmio,
}

/// What one exit is counted as: its kind and, for port I/O and nested page
/// faults, the bus's index of the device the address belongs to (`None`:
/// no device decodes it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExitClass {
    pub kind: ExitKind,
    pub device: Option<u16>,
}

impl ExitClass {
    /// An exit counted by kind only.
    pub fn of(kind: ExitKind) -> Self {
        ExitClass { kind, device: None }
    }
}

/// Devices counted one by one per address space; a bus index at or past it
/// is counted in one shared row ("device 64+").
pub const MAX_DEVICES: usize = 64;
/// The row of accesses no device decodes.
const NO_DEVICE: usize = MAX_DEVICES;
/// The row of devices whose index is past the table.
const OTHER_DEVICE: usize = MAX_DEVICES + 1;
const DEVICE_ROWS: usize = MAX_DEVICES + 2;

/// The device row of a bus index (`None`: no device).
fn device_row(device: Option<u16>) -> usize {
    match device {
        None => NO_DEVICE,
        Some(i) if usize::from(i) < MAX_DEVICES => usize::from(i),
        Some(_) => OTHER_DEVICE,
    }
}

/// One row's counters: exits, and TSC cycles in Keel and in the guest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counter {
    pub count: u64,
    pub keel_cycles: u64,
    pub guest_cycles: u64,
}

impl Counter {
    fn add(&mut self, other: &Counter) {
        self.count = self.count.saturating_add(other.count);
        self.keel_cycles = self.keel_cycles.saturating_add(other.keel_cycles);
        self.guest_cycles = self.guest_cycles.saturating_add(other.guest_cycles);
    }
}

/// A counter cell with one writer: `add` is a load and a store, so another
/// CPU reading meanwhile sees the old or the new value, never a torn one.
#[derive(Debug, Default)]
struct Cell(AtomicU64);

impl Cell {
    fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }

    fn add(&self, n: u64) {
        self.0
            .store(self.get().saturating_add(n), Ordering::Relaxed);
    }
}

/// One row's cells.
#[derive(Debug, Default)]
struct Row {
    count: Cell,
    keel_cycles: Cell,
    guest_cycles: Cell,
}

impl Row {
    fn get(&self) -> Counter {
        Counter {
            count: self.count.get(),
            keel_cycles: self.keel_cycles.get(),
            guest_cycles: self.guest_cycles.get(),
        }
    }

    fn add(&self, c: &Counter) {
        self.count.add(c.count);
        self.keel_cycles.add(c.keel_cycles);
        self.guest_cycles.add(c.guest_cycles);
    }
}

/// One vCPU's exit statistics, or the sum of a VM's (about 3.6 KiB,
/// allocated with the VM). The recording methods take `&self` so that
/// other CPUs can read the table while its vCPU runs; they must have one
/// writer at a time (a second concurrent writer would lose counts, never
/// corrupt memory).
#[derive(Debug)]
pub struct ExitStats {
    kinds: [Row; ExitKind::COUNT],
    pio: [Row; DEVICE_ROWS],
    mmio: [Row; DEVICE_ROWS],
    /// Cycles the accounting itself took (measured by the caller).
    own_cycles: Cell,
}

impl Default for ExitStats {
    fn default() -> Self {
        Self::new()
    }
}

impl Clone for ExitStats {
    fn clone(&self) -> Self {
        Self::sum([self])
    }
}

impl ExitStats {
    pub fn new() -> Self {
        ExitStats {
            kinds: core::array::from_fn(|_| Row::default()),
            pio: core::array::from_fn(|_| Row::default()),
            mmio: core::array::from_fn(|_| Row::default()),
            own_cycles: Cell::default(),
        }
    }

    /// The tables of `parts` (a VM's vCPUs) added row by row: what the
    /// VM's table prints.
    pub fn sum<'a>(parts: impl IntoIterator<Item = &'a ExitStats>) -> ExitStats {
        let sum = ExitStats::new();
        for p in parts {
            let rows = p.kinds.iter().zip(&sum.kinds);
            let rows = rows.chain(p.pio.iter().zip(&sum.pio));
            for (from, to) in rows.chain(p.mmio.iter().zip(&sum.mmio)) {
                to.add(&from.get());
            }
            sum.own_cycles.add(p.own_cycles.get());
        }
        sum
    }

    /// The rows `class` adds to: its kind's, and its device's if the
    /// kind is counted per device.
    fn rows(&self, class: ExitClass) -> (&Row, Option<&Row>) {
        let kind = &self.kinds[class.kind as usize];
        let devices = match class.kind.space() {
            Some(Space::Pio) => &self.pio,
            Some(Space::Mmio) => &self.mmio,
            None => return (kind, None),
        };
        (kind, Some(&devices[device_row(class.device)]))
    }

    /// An exit of `class` after `guest_cycles` in the guest (entry to exit).
    pub fn exit(&self, class: ExitClass, guest_cycles: u64) {
        let add = Counter {
            count: 1,
            keel_cycles: 0,
            guest_cycles,
        };
        let (kind, device) = self.rows(class);
        kind.add(&add);
        if let Some(d) = device {
            d.add(&add);
        }
    }

    /// The cycles Keel spent on an exit of `class` (exit to next entry).
    pub fn keel(&self, class: ExitClass, keel_cycles: u64) {
        let add = Counter {
            count: 0,
            keel_cycles,
            guest_cycles: 0,
        };
        let (kind, device) = self.rows(class);
        kind.add(&add);
        if let Some(d) = device {
            d.add(&add);
        }
    }

    /// Cycles the accounting itself took (part of Keel's cycles too).
    pub fn own(&self, cycles: u64) {
        self.own_cycles.add(cycles);
    }

    /// The counters of `kind`.
    pub fn kind(&self, kind: ExitKind) -> Counter {
        self.kinds[kind as usize].get()
    }

    /// The counters of `device` (`None`: no device) in `space`.
    pub fn device(&self, space: Space, device: Option<u16>) -> Counter {
        let devices = match space {
            Space::Pio => &self.pio,
            Space::Mmio => &self.mmio,
        };
        devices[device_row(device)].get()
    }

    /// All exits together.
    pub fn total(&self) -> Counter {
        let mut t = Counter::default();
        for k in &self.kinds {
            t.add(&k.get());
        }
        t
    }

    /// What the accounting cost.
    pub fn cost(&self) -> StatsCost {
        let total = self.total();
        let all_cycles = total.keel_cycles.saturating_add(total.guest_cycles);
        let own = self.own_cycles.get();
        StatsCost {
            cycles_per_exit: own.checked_div(total.count).unwrap_or(0),
            basis_points: (u128::from(own) * 10_000)
                .checked_div(u128::from(all_cycles))
                .map_or(0, |b| b.min(u128::from(u64::MAX)) as u64),
        }
    }

    /// The table: a header, one row per exit kind that happened (most
    /// frequent first), under `io` and `npf` one row per device (named by
    /// `device_name`, the bus's name of an index), the total, and the
    /// accounting's cost. Each line ends with `\n`.
    pub fn write_table<'a>(
        &self,
        device_name: impl Fn(u16) -> Option<&'a str>,
        out: &mut impl Write,
    ) -> fmt::Result {
        let total = self.total();
        writeln!(
            out,
            "{:<LABEL$} {:>10} {:>7} {:>15} {:>10} {:>15} {:>10}",
            "exit reason",
            "count",
            "exits",
            "Keel cycles",
            "Keel mean",
            "guest cycles",
            "guest mean"
        )?;
        let mut kinds: Vec<ExitKind> = ExitKind::ALL
            .into_iter()
            .filter(|&k| self.kind(k).count > 0)
            .collect();
        kinds.sort_by_key(|&k| core::cmp::Reverse(self.kind(k).count));
        for kind in kinds {
            write_row(out, kind.name(), &self.kind(kind), total.count)?;
            let Some(space) = kind.space() else {
                continue;
            };
            let devices = match space {
                Space::Pio => &self.pio,
                Space::Mmio => &self.mmio,
            };
            let devices: Vec<Counter> = devices.iter().map(Row::get).collect();
            let mut rows: Vec<usize> = (0..DEVICE_ROWS).filter(|&i| devices[i].count > 0).collect();
            rows.sort_by_key(|&i| core::cmp::Reverse(devices[i].count));
            for i in rows {
                let mut label = String::new();
                let _ = match i {
                    NO_DEVICE => write!(label, "  {}: (no device)", kind.name()),
                    OTHER_DEVICE => write!(label, "  {}: (device {MAX_DEVICES}+)", kind.name()),
                    _ => match device_name(i as u16) {
                        Some(name) => write!(label, "  {}: {name}", kind.name()),
                        None => write!(label, "  {}: (device {i})", kind.name()),
                    },
                };
                write_row(out, &label, &devices[i], total.count)?;
            }
        }
        write_row(out, "total", &total, total.count)?;
        writeln!(out, "{}", self.cost())
    }
}

/// Width of the label column.
const LABEL: usize = 28;

fn write_row(out: &mut impl Write, label: &str, c: &Counter, all: u64) -> fmt::Result {
    let per_mille = (u128::from(c.count) * 1000)
        .checked_div(u128::from(all))
        .unwrap_or(0);
    let mean = |cycles: u64| cycles.checked_div(c.count).unwrap_or(0);
    writeln!(
        out,
        "{label:<LABEL$} {:>10} {:>6}% {:>15} {:>10} {:>15} {:>10}",
        c.count,
        alloc::format!("{}.{}", per_mille / 10, per_mille % 10),
        c.keel_cycles,
        mean(c.keel_cycles),
        c.guest_cycles,
        mean(c.guest_cycles),
    )
}

/// What the accounting cost: cycles per exit, and hundredths of a percent
/// of all the VM's cycles (Keel's and the guest's).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatsCost {
    pub cycles_per_exit: u64,
    pub basis_points: u64,
}

impl fmt::Display for StatsCost {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "statistics cost: {} cycles per exit, {}.{:02}% of the VM's cycles",
            self.cycles_per_exit,
            self.basis_points / 100,
            self.basis_points % 100
        )
    }
}

impl StatsCost {
    /// The cost line of a table (with anything before it, such as Keel's prefix).
    pub fn parse(line: &str) -> Option<StatsCost> {
        let (_, rest) = line.split_once("statistics cost: ")?;
        let (cycles, rest) = rest.split_once(" cycles per exit, ")?;
        let (pct, _) = rest.split_once("% ")?;
        let (whole, hundredths) = pct.split_once('.')?;
        Some(StatsCost {
            cycles_per_exit: cycles.parse().ok()?,
            basis_points: whole.parse::<u64>().ok()? * 100 + hundredths.parse::<u64>().ok()?,
        })
    }
}

/// One row of a table as [`ExitRow::parse`] reads it back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitRow {
    /// `cpuid`, `io`, `io: COM1`, `npf: (no device)`, `total`, ...
    pub label: String,
    pub count: u64,
    /// Tenths of a percent of all exits.
    pub per_mille: u64,
    pub keel_cycles: u64,
    pub keel_mean: u64,
    pub guest_cycles: u64,
    pub guest_mean: u64,
}

impl ExitRow {
    /// A table row from its line (leading text such as `keel: exits: ` is
    /// the caller's to strip); `None` for the header, the cost line and
    /// anything else.
    pub fn parse(line: &str) -> Option<ExitRow> {
        let mut rest = line.trim_end();
        let mut numbers = [0u64; 6];
        for (i, n) in numbers.iter_mut().enumerate().rev() {
            let at = rest.rfind(char::is_whitespace)?;
            let word = &rest[at + 1..];
            rest = rest[..at].trim_end();
            *n = if i == 1 {
                let (whole, tenth) = word.strip_suffix('%')?.split_once('.')?;
                whole.parse::<u64>().ok()? * 10 + tenth.parse::<u64>().ok()?
            } else {
                word.parse().ok()?
            };
        }
        let label = rest.trim();
        if label.is_empty() {
            return None;
        }
        let [count, per_mille, keel_cycles, keel_mean, guest_cycles, guest_mean] = numbers;
        Some(ExitRow {
            label: String::from(label),
            count,
            per_mille,
            keel_cycles,
            keel_mean,
            guest_cycles,
            guest_mean,
        })
    }
}

#[cfg(test)]
mod tests;
