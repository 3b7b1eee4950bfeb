//! The VM loop's exit statistics (`crates/exit-stats`): the host TSC read at
//! each entry and exit, each exit counted by kind and device, the table
//! printed when the VM ends and on `stats` at Keel's console prompt.
//!
//! Each vCPU counts into its own table (its loop is the one writer, no lock
//! and no shared cache line on the exit path); the VM's table is their sum,
//! made when it is printed or read for the status table.
//!
//! Cycles "in the guest" run from just before the backend's entry to just
//! after its exit: the world switch and the backend's exit decoding count
//! there. Cycles "in Keel" run from that exit to the next entry: handling,
//! device service, interrupt delivery, and for HLT the time the vCPU slept.

use alloc::string::String;
use alloc::vec::Vec;

use device_model::bus::{AddressSpace, Bus};
use exit_stats::{Counter, ExitClass, ExitStats};
use vmm_core::VmExit;

use crate::clock::rdtsc;

/// The accounting measures its own cost on one exit in this many (two more
/// RDTSCs), and counts that exit's cost this many times.
const SAMPLE_EVERY: u32 = 64;

/// One vCPU's table, on cache lines of its own: no line is written by two
/// vCPUs' loops.
#[repr(align(64))]
struct VcpuTable(ExitStats);

/// One VM's statistics: a table per vCPU.
pub struct VmExitStats {
    vcpus: Vec<VcpuTable>,
    /// What two RDTSCs cost on this CPU (measured once), counted with each
    /// sampled exit for the stamps no stamp sees: the entry's, and the
    /// exit's, which the loop shares with the time dilation (so the
    /// figure errs high by one RDTSC).
    rdtsc_pair: u64,
}

impl VmExitStats {
    /// Counters for a new VM of `vcpus` vCPUs (allocated here, never per exit).
    pub fn new(vcpus: u32) -> Self {
        const SAMPLES: u64 = 64;
        // Twice: an emulator that translates code pays for it on the first pass.
        let mut rdtsc_pair = 0;
        for _ in 0..2 {
            let start = rdtsc();
            for _ in 0..SAMPLES {
                core::hint::black_box(rdtsc());
            }
            rdtsc_pair = rdtsc().wrapping_sub(start) * 2 / (SAMPLES + 1);
        }
        VmExitStats {
            vcpus: (0..vcpus.max(1))
                .map(|_| VcpuTable(ExitStats::new()))
                .collect(),
            rdtsc_pair,
        }
    }

    /// The clock of vCPU `vcpu`'s loop, counting into its table.
    pub fn clock(&self, vcpu: u32) -> ExitClock<'_> {
        let i = (vcpu as usize).min(self.vcpus.len() - 1);
        ExitClock {
            stats: &self.vcpus[i].0,
            pending: None,
            entered_at: rdtsc(),
            rdtsc_pair: self.rdtsc_pair,
            countdown: SAMPLE_EVERY,
            measured: None,
        }
    }

    /// Every vCPU's exits and cycles together.
    pub fn total(&self) -> Counter {
        ExitStats::sum(self.vcpus.iter().map(|s| &s.0)).total()
    }

    /// The VM's table (every vCPU's exits) on Keel's console, one
    /// `keel: exits: ` line per row; `when` says whether the VM ended.
    ///
    /// The heading and every row go out in one console write: another
    /// CPU's lines (a VM on it printing, or ending with a table of its own)
    /// land before or after the table, never inside it, so a reader takes
    /// the rows after the heading up to the first other line.
    /// `ran_ahead` port accesses were carried out after exits of their own
    /// (`Platform::ran_ahead`): a line after the table says how many.
    pub fn print(&self, vm: &str, bus: &Bus, ran_ahead: u64, when: &str) {
        use core::fmt::Write;
        let n = self.vcpus.len();
        let mut text = String::new();
        let _ = writeln!(
            text,
            "keel: VM '{vm}': exit statistics {when}, {n} vCPU{} (host TSC cycles at {} MHz; Keel: exit to next entry, guest: entry to exit; an RDTSC costs {} cycles)",
            if n == 1 { "" } else { "s" },
            crate::clock::tsc_hz() / 1_000_000,
            self.rdtsc_pair / 2
        );
        let sum = ExitStats::sum(self.vcpus.iter().map(|s| &s.0));
        let mut table = String::new();
        let _ = sum.write_table(|i| bus.device_name(i), &mut table);
        for line in table.lines() {
            let _ = writeln!(text, "keel: exits: {line}");
        }
        let _ = writeln!(
            text,
            "keel: exits: run ahead: {ran_ahead} port accesses carried out in the exit before them, without exits of their own"
        );
        crate::serial::write_fmt(format_args!("{text}"));
    }
}

/// One vCPU's TSC stamps of the exit being handled, and its table.
pub struct ExitClock<'a> {
    stats: &'a ExitStats,
    /// The exit Keel is handling: its class and when it happened.
    pending: Option<(ExitClass, u64)>,
    entered_at: u64,
    rdtsc_pair: u64,
    /// Exits until the next measured one.
    countdown: u32,
    /// The accounting's cycles after the measured exit, until its entry.
    measured: Option<u64>,
}

impl ExitClock<'_> {
    /// Just before the guest is entered: the last exit's time in Keel ends.
    #[inline]
    pub fn enter(&mut self) {
        let now = rdtsc();
        if let Some((class, at)) = self.pending.take() {
            self.stats.keel(class, now.wrapping_sub(at));
        }
        if let Some(exit_side) = self.measured.take() {
            let cycles = rdtsc()
                .wrapping_sub(now)
                .wrapping_add(exit_side)
                .wrapping_add(self.rdtsc_pair);
            self.stats.own(cycles.saturating_mul(SAMPLE_EVERY.into()));
        }
        self.entered_at = now;
    }

    /// Just after the guest exited: counts `exit`, which happened at TSC
    /// `now` (the loop's stamp, which the time dilation reads too: one
    /// RDTSC less per exit), by device where the bus decodes its port or
    /// address (an O(log n) lookup). Returns that device's bus index, for
    /// the exit's other uses of it.
    #[inline]
    pub fn exited(&mut self, exit: &VmExit, now: u64, bus: &Bus) -> Option<u16> {
        // The sampled exit times this call itself, from its start.
        let sampled = (self.countdown == 1).then(rdtsc);
        let device = match *exit {
            VmExit::Io(io) => bus.device_at(AddressSpace::Pio, io.port.into()),
            VmExit::NestedPageFault { gpa, .. } => bus.device_at(AddressSpace::Mmio, gpa),
            _ => None,
        };
        let class = ExitClass {
            kind: exit.kind(),
            device,
        };
        self.stats.exit(class, now.wrapping_sub(self.entered_at));
        self.pending = Some((class, now));
        self.countdown -= 1;
        if let Some(start) = sampled {
            self.countdown = SAMPLE_EVERY;
            self.measured = Some(rdtsc().wrapping_sub(start));
        }
        device
    }
}
