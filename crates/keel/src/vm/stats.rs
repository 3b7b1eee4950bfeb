//! The VM loop's exit statistics (`crates/exit-stats`): the host TSC read at
//! each entry and exit, each exit counted by kind and device, the table
//! printed when the VM ends and on `stats` at Keel's console prompt.
//!
//! Cycles "in the guest" run from just before the backend's entry to just
//! after its exit: the world switch and the backend's exit decoding count
//! there. Cycles "in Keel" run from that exit to the next entry: handling,
//! device service, interrupt delivery, and for HLT the time the vCPU slept.

use alloc::boxed::Box;
use alloc::string::String;

use device_model::bus::{AddressSpace, Bus};
use exit_stats::{ExitClass, ExitStats};
use vmm_core::VmExit;

use crate::clock::rdtsc;

/// The accounting measures its own cost on one exit in this many (two more
/// RDTSCs), and counts that exit's cost this many times.
const SAMPLE_EVERY: u32 = 64;

/// One VM's statistics and the TSC stamps of the exit being handled.
pub struct ExitClock {
    stats: Box<ExitStats>,
    /// The exit Keel is handling: its class and when it happened.
    pending: Option<(ExitClass, u64)>,
    entered_at: u64,
    /// What two RDTSCs cost on this CPU (measured once): the two stamps
    /// each exit takes for the statistics alone, which no stamp sees.
    rdtsc_pair: u64,
    /// Exits until the next measured one.
    countdown: u32,
    /// The accounting's cycles after the measured exit, until its entry.
    measured: Option<u64>,
}

impl ExitClock {
    /// Counters for a new VM (allocated here, never per exit).
    pub fn new() -> Self {
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
        ExitClock {
            stats: Box::new(ExitStats::new()),
            pending: None,
            entered_at: rdtsc(),
            rdtsc_pair,
            countdown: SAMPLE_EVERY,
            measured: None,
        }
    }

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

    /// Just after the guest exited: counts `exit`, by device where the bus
    /// decodes its port or address (an O(log n) lookup).
    #[inline]
    pub fn exited(&mut self, exit: &VmExit, bus: &Bus) {
        let now = rdtsc();
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
        if self.countdown == 0 {
            self.countdown = SAMPLE_EVERY;
            self.measured = Some(rdtsc().wrapping_sub(now));
        }
    }

    /// The table on Keel's console, one `keel: exits: ` line per row;
    /// `when` says whether the VM ended.
    pub fn print(&self, vm: &str, bus: &Bus, when: &str) {
        log::info!(
            "VM '{vm}': exit statistics {when} (host TSC cycles at {} MHz; Keel: exit to next entry, guest: entry to exit; an RDTSC costs {} cycles)",
            crate::clock::tsc_hz() / 1_000_000,
            self.rdtsc_pair / 2
        );
        let mut table = String::new();
        let _ = self.stats.write_table(|i| bus.device_name(i), &mut table);
        for line in table.lines() {
            log::info!("exits: {line}");
        }
    }
}
