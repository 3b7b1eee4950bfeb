//! A VM's apparent time: the host's TSC less the time Keel hid from the VM
//! while it answered the guest's timer calibration.
//!
//! Why. An OS measures its TSC's rate by reading a timer of known rate (the
//! PIT's channel 2 through ports 42h and 61h, the HPET's main counter, the
//! ACPI PM timer) and the TSC alternately, and it throws the result away
//! when one read takes more than a few microseconds: Linux's fast PIT
//! calibration wants the uncertainty of two reads under 1/2048 of the
//! interval, its slow one 1000 reads of port 61h in 10 ms, its HPET
//! reference a read under 1/32 ms (arch/x86/kernel/tsc.c). On hardware such
//! a read costs about a microsecond (an ISA bus cycle). Here each one exits,
//! and the world switch plus Keel's handling cost tens to hundreds of
//! microseconds, most of all nested in an emulator; Linux then finds no
//! TSC rate, marks the TSC unstable and keeps time with the HPET, one MMIO
//! exit per clock read.
//!
//! What Keel does. While the guest alternates timer and TSC reads, those
//! exits cost the guest the time a chipset takes, not Keel's: the VM's
//! clocks (every timer device reads [`ApparentTime`] through the VM's
//! clock, and the guest TSC through its offset) stop from the exit to the
//! next entry and then move on by [`TIMER_READ_NS`] (a timer read) or
//! [`TSC_READ_TICKS`] (an RDTSC); the guest's runs between such exits
//! (world switches and a few instructions) are hidden too, up to a few
//! times the shortest entry-to-exit interval seen. To see the TSC at the exits only, RDTSC and RDTSCP exit
//! while such a run goes on (the window) and no longer once two exits in a
//! row were neither timer nor TSC reads.
//!
//! What it costs the VM: its clocks run behind the host's by the time
//! hidden (a Linux boot hides about a second), and its timers fire that
//! much later, all of them by the same amount, so the guest sees one
//! consistent time. A guest that only polls a timer (a BIOS delay loop)
//! is not slowed: after a few timer accesses with no TSC read between them
//! the window closes, and opens again only after another kind of exit. Only a VM whose other vCPUs all wait for a Start-Up IPI
//! dilates (one vCPU observes time, so hiding cannot make two vCPUs'
//! TSCs disagree); a VM with a paravirtual clock (Xen, Hyper-V), which is
//! told the TSC's rate, never does.

use core::sync::atomic::{AtomicU64, Ordering};

/// What a timer read costs the guest: an ISA bus cycle or an HPET read
/// takes about a microsecond on hardware.
pub const TIMER_READ_NS: u64 = 1_000;
/// What an RDTSC costs the guest in TSC ticks (a few dozen cycles on
/// hardware, SDM Vol 2B RDTSC).
pub const TSC_READ_TICKS: u64 = 40;
/// How many timer accesses the window hides without a TSC read between
/// them: Linux's fast PIT calibration programs channel 2 and reads it back
/// in nine before its first RDTSC. A guest that polls a timer for a delay
/// without reading the TSC closes the window after this many.
const TIMER_ACCESSES_PER_TSC_READ: u32 = 12;
/// The window closes after this many exits in a row that read neither a
/// timer nor the TSC (a halt, a port write, an MSR): the calibration
/// ended.
const WINDOW_CLOSES_AFTER_IDLE: u32 = 2;
/// The window closes after this many TSC reads with no timer access between
/// them: a TSC delay loop, not a calibration.
const WINDOW_CLOSES_AFTER_TSC_READS: u32 = 3;
/// The longest guest run inside the window that is hidden, in
/// milliseconds. A calibration loop's runs are a world switch and a few
/// instructions, but the emulator running Keel is descheduled for
/// milliseconds at a time on a loaded host, and that must not show as a
/// read that took milliseconds.
const RUN_HIDDEN_MAX_MS: u64 = 200;
/// Host interrupts in a row hidden inside the window: a descheduled
/// emulator, or two VMs' CPUs kicking each other, may take several; a guest
/// computing with the window open takes them one after the other and
/// closes it. The damage such a guest can do is bounded by the budget.
const HIDDEN_HOST_INTERRUPTS: u32 = 16;
/// The most a VM hides from its clocks between resets, in seconds: Linux's
/// fast PIT calibration hides one to a few (about 12,000 exits); a guest
/// that keeps calibrating (or falls back to the slow calibration, 10 ms of
/// PIT time a try, three tries) runs on the machine's time after this.
const HIDDEN_BUDGET_S: u64 = 4;
/// No hidden time yet: `frozen_at` holds no tick.
const NOT_FROZEN: u64 = u64::MAX;

/// What an exit was, for the dilation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitTiming {
    /// A read or write of a timer of known rate: the PIT (40h-43h), port
    /// 61h (channel 2's gate and output), the HPET, the PM timer.
    Timer,
    /// RDTSC or RDTSCP (they exit only while the window is open).
    TscRead,
    /// A physical interrupt for the host: not the guest's doing, it
    /// neither opens nor closes the window; hidden inside it.
    HostInterrupt,
    /// Anything else the guest did.
    Other,
}

/// The VM's share: the ticks hidden so far and, during a hidden exit, the
/// host tick the VM's clocks stand still at. Read by every vCPU and by
/// the VM's clock; written only by the one vCPU that dilates.
#[derive(Debug)]
pub struct ApparentTime {
    hidden: AtomicU64,
    frozen_at: AtomicU64,
}

impl Default for ApparentTime {
    fn default() -> Self {
        Self::new()
    }
}

impl ApparentTime {
    pub const fn new() -> Self {
        ApparentTime {
            hidden: AtomicU64::new(0),
            frozen_at: AtomicU64::new(NOT_FROZEN),
        }
    }

    /// TSC ticks hidden from the VM so far (never decreases).
    pub fn hidden(&self) -> u64 {
        self.hidden.load(Ordering::SeqCst)
    }

    /// The host TSC tick the VM's clocks read now, given the host's
    /// `rdtsc`: the exit's tick while a hidden exit is handled. Subtract
    /// [`ApparentTime::hidden`] for the VM's own ticks.
    pub fn host_tick(&self, rdtsc: u64) -> u64 {
        match self.frozen_at.load(Ordering::SeqCst) {
            NOT_FROZEN => rdtsc,
            at => at,
        }
    }

    /// Lets the VM's clocks run again (a dilating vCPU replaced while an
    /// exit was held).
    pub fn thaw(&self) {
        self.frozen_at.store(NOT_FROZEN, Ordering::SeqCst);
    }

    /// The VM's ticks since the host's tick 0: `host_tick - hidden`.
    pub fn vm_ticks(&self, rdtsc: u64) -> u64 {
        self.host_tick(rdtsc).saturating_sub(self.hidden())
    }
}

/// The dilating vCPU's state: the window, the runs of timer reads, the
/// shortest world switch seen, the exit being handled.
#[derive(Debug)]
pub struct Dilation {
    timer_read_ticks: u64,
    run_hidden_max: u64,
    /// The VM's hidden ticks when this vCPU started (or the machine was
    /// reset), and the most it may hide from there.
    hidden_base: u64,
    budget: u64,
    entered_at: u64,
    /// RDTSC exited during the guest's last run.
    tsc_exiting: bool,
    window: bool,
    /// Timer accesses since the last TSC read (or the window's opening).
    since_tsc: u32,
    /// The window closed on a run of timer accesses with no TSC read: it
    /// stays closed until an exit of another kind.
    polling: bool,
    /// Exits in a row that read neither a timer nor the TSC.
    idle: u32,
    /// TSC reads since the last timer access.
    tsc_reads: u32,
    /// Host interrupts in a row.
    host_interrupts: u32,
    /// The hidden exit being handled: its host tick and what the guest is
    /// charged for it.
    pending: Option<(u64, u64)>,
}

impl Dilation {
    /// For a vCPU of a VM whose TSC runs at `tsc_hz`, entered first at
    /// `now`, when the VM has hidden `hidden` ticks so far.
    pub fn new(tsc_hz: u64, now: u64, hidden: u64) -> Self {
        Dilation {
            timer_read_ticks: tsc_hz / (1_000_000_000 / TIMER_READ_NS),
            run_hidden_max: tsc_hz / 1_000 * RUN_HIDDEN_MAX_MS,
            hidden_base: hidden,
            budget: tsc_hz.saturating_mul(HIDDEN_BUDGET_S),
            entered_at: now,
            tsc_exiting: false,
            window: false,
            since_tsc: 0,
            polling: false,
            idle: 0,
            tsc_reads: 0,
            host_interrupts: 0,
            pending: None,
        }
    }

    /// The guest exited at host tick `at` with an exit of kind `timing`;
    /// `enabled` says whether the VM may dilate now. A hidden exit stops
    /// the VM's clocks at `at`, less the run before it if the guest could
    /// not read the TSC itself during that run.
    pub fn exited(&mut self, time: &ApparentTime, at: u64, timing: ExitTiming, enabled: bool) {
        let ran = at.saturating_sub(self.entered_at);
        if timing != ExitTiming::HostInterrupt {
            self.host_interrupts = 0;
        }
        if !enabled || time.hidden().saturating_sub(self.hidden_base) >= self.budget {
            self.window = false;
            return;
        }
        let hide = match timing {
            ExitTiming::Timer if self.polling => false,
            ExitTiming::Timer => {
                if !self.window {
                    self.window = true;
                    self.since_tsc = 0;
                }
                self.idle = 0;
                self.tsc_reads = 0;
                self.since_tsc += 1;
                if self.since_tsc > TIMER_ACCESSES_PER_TSC_READ {
                    self.window = false;
                    self.polling = true;
                }
                self.window
            }
            ExitTiming::TscRead => {
                self.since_tsc = 0;
                self.idle = 0;
                self.tsc_reads = self.tsc_reads.saturating_add(1);
                self.tsc_exiting
            }
            // Keel's own business: right after a timer or TSC read (inside
            // a calibration loop) it is hidden like the guest's runs (the
            // emulator descheduled, another VM's turn would show as a read
            // that took milliseconds); else the guest sees it.
            ExitTiming::HostInterrupt => {
                self.host_interrupts = self.host_interrupts.saturating_add(1);
                if self.host_interrupts > HIDDEN_HOST_INTERRUPTS {
                    self.window = false;
                }
                self.tsc_exiting && self.idle == 0 && self.window
            }
            ExitTiming::Other => {
                self.polling = false;
                self.idle = self.idle.saturating_add(1);
                false
            }
        };
        if self.idle >= WINDOW_CLOSES_AFTER_IDLE || self.tsc_reads >= WINDOW_CLOSES_AFTER_TSC_READS
        {
            self.window = false;
        }
        if !hide {
            return;
        }
        // With RDTSC exiting the guest saw no time since its entry but at
        // exits, so that whole run may be hidden: the world switches, which
        // vary several-fold in an emulator, and the few instructions of a
        // calibration loop, up to [`RUN_HIDDEN_MAX_MS`].
        if self.tsc_exiting {
            time.hidden
                .fetch_add(ran.min(self.run_hidden_max), Ordering::SeqCst);
        }
        time.frozen_at.store(at, Ordering::SeqCst);
        let charge = match timing {
            ExitTiming::Timer => self.timer_read_ticks,
            _ => TSC_READ_TICKS,
        };
        self.pending = Some((at, charge));
    }

    /// `n` timer reads that the exit just handled carried out after its own
    /// instruction, without exits of their own (Keel ran the guest ahead to
    /// them: `vmm_core::exit::Platform::ran_ahead`): counted as timer exits
    /// are, and, when the exit is hidden, charged as they would have been.
    /// Linux's PIT calibration loop then costs its RDTSC's exit alone.
    pub fn timer_reads_ran_ahead(&mut self, n: u32) {
        if n == 0 || !self.window {
            return;
        }
        self.idle = 0;
        self.tsc_reads = 0;
        self.since_tsc = self.since_tsc.saturating_add(n);
        if self.since_tsc > TIMER_ACCESSES_PER_TSC_READ {
            self.window = false;
            self.polling = true;
        }
        if let Some((at, charge)) = self.pending {
            let more = u64::from(n).saturating_mul(self.timer_read_ticks);
            self.pending = Some((at, charge.saturating_add(more)));
        }
    }

    /// The guest is entered at host tick `at`: the clocks move on from
    /// where they stopped by the exit's charge (the hiding is dropped if
    /// the VM may no longer dilate). Returns whether RDTSC must exit.
    pub fn entering(&mut self, time: &ApparentTime, at: u64, enabled: bool) -> bool {
        if let Some((exit_at, charge)) = self.pending.take() {
            if enabled {
                let hidden = time.hidden();
                let stopped = exit_at.saturating_sub(hidden);
                let want = at.saturating_sub(stopped.saturating_add(charge));
                if want > hidden {
                    time.hidden.store(want, Ordering::SeqCst);
                }
            }
            time.frozen_at.store(NOT_FROZEN, Ordering::SeqCst);
        }
        self.entered_at = at;
        self.tsc_exiting = enabled && self.window;
        self.tsc_exiting
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HZ: u64 = 1_000_000_000; // one tick a nanosecond
    const SWITCH: u64 = 20_000; // 20 us each way... as one run's floor
    const KEEL: u64 = 80_000; // Keel's handling of an exit

    /// A guest loop driven against a model: each exit costs `SWITCH` of
    /// world switch plus `KEEL` of handling on the host; the guest's own
    /// instructions take `guest` ticks. Returns what the guest's TSC reads
    /// and the VM clock at each timer read.
    struct Model {
        host: u64,
        time: ApparentTime,
        d: Dilation,
    }

    impl Model {
        fn new() -> Self {
            Model {
                host: 1_000_000,
                time: ApparentTime::new(),
                d: Dilation::new(HZ, 1_000_000, 0),
            }
        }
        /// One exit of `timing` after `guest` ticks of guest work;
        /// returns the VM time the handler saw.
        fn exit(&mut self, guest: u64, timing: ExitTiming) -> u64 {
            self.host += guest + SWITCH;
            self.d.exited(&self.time, self.host, timing, true);
            let seen = self.time.vm_ticks(self.host + KEEL / 2);
            self.host += KEEL;
            self.d.entering(&self.time, self.host, true);
            seen
        }
        /// As [`Model::exit`], with `ran_ahead` timer reads carried out in
        /// the same exit after its instruction.
        fn exit_running_ahead(&mut self, guest: u64, timing: ExitTiming, ran_ahead: u32) -> u64 {
            self.host += guest + SWITCH;
            self.d.exited(&self.time, self.host, timing, true);
            let seen = self.time.vm_ticks(self.host + KEEL / 2);
            self.d.timer_reads_ran_ahead(ran_ahead);
            self.host += KEEL;
            self.d.entering(&self.time, self.host, true);
            seen
        }
        /// The guest's TSC now (hardware, no exit).
        fn guest_tsc(&self) -> u64 {
            self.host - self.time.hidden()
        }
    }

    /// Linux's slow PIT loop (inb 61h, rdtsc, repeat): once the window
    /// is open each pass costs the guest a timer read, an RDTSC and its
    /// own instructions, not the 200 us the host spends.
    #[test]
    fn a_calibration_loop_sees_chipset_costs() {
        let mut m = Model::new();
        m.exit(100, ExitTiming::Timer);
        let mut last = m.exit(100, ExitTiming::TscRead);
        for _ in 0..1000 {
            m.exit(100, ExitTiming::Timer);
            let now = m.exit(100, ExitTiming::TscRead);
            let pass = now - last;
            assert!(
                pass < 2 * (TIMER_READ_NS + 200),
                "a pass cost the guest {pass} ticks"
            );
            assert!(pass >= TIMER_READ_NS, "time still moves: {pass}");
            last = now;
        }
        assert!(m.d.tsc_exiting, "RDTSC exits while the window is open");
    }

    /// HPET reference reads (rdtsc; read HPET; rdtsc) from a closed
    /// window: the first TSC read is the hardware's, so only Keel's
    /// handling is hidden, not the switch after it.
    #[test]
    fn a_reference_read_from_a_closed_window_hides_only_the_handling() {
        let mut m = Model::new();
        m.host += 5_000;
        let t1 = m.guest_tsc();
        let at_read = m.exit(0, ExitTiming::Timer);
        assert!(
            at_read >= t1,
            "the timer read comes after the TSC the guest read"
        );
        let t2 = m.exit(50, ExitTiming::TscRead);
        let cost = t2 - t1;
        assert!(
            cost < SWITCH + TIMER_READ_NS + 1_000,
            "a reference read cost {cost} ticks"
        );
    }

    /// Time never goes backwards, and never moves more than the host's.
    #[test]
    fn the_vm_clock_is_monotonic_and_never_ahead() {
        let mut m = Model::new();
        let kinds = [
            ExitTiming::Timer,
            ExitTiming::Timer,
            ExitTiming::TscRead,
            ExitTiming::Other,
            ExitTiming::TscRead,
            ExitTiming::HostInterrupt,
            ExitTiming::Timer,
            ExitTiming::Other,
            ExitTiming::Other,
        ];
        let mut last = 0;
        for (i, k) in kinds.iter().cycle().take(500).enumerate() {
            let before = m.guest_tsc();
            assert!(
                before >= last,
                "pass {i}: the TSC went back from {last} to {before}"
            );
            let seen = m.exit((i as u64 * 7919) % 3000, *k);
            assert!(
                seen >= before,
                "pass {i}: {k:?} saw {seen} before the guest's {before}"
            );
            last = m.guest_tsc();
            assert!(last <= m.host, "the VM is never ahead of the host");
        }
    }

    /// A guest polling a timer for a delay (a BIOS's loop on the PM timer)
    /// is not slowed: past the first few reads its time is the host's,
    /// until an exit of another kind.
    #[test]
    fn polling_a_timer_is_not_dilated() {
        let mut m = Model::new();
        for _ in 0..=TIMER_ACCESSES_PER_TSC_READ {
            m.exit(100, ExitTiming::Timer);
        }
        let hidden = m.time.hidden();
        for _ in 0..100 {
            m.exit(100, ExitTiming::Timer);
        }
        assert_eq!(
            m.time.hidden(),
            hidden,
            "a run of timer reads hides only its start"
        );
        assert!(!m.d.tsc_exiting, "the window closed");
        m.exit(100, ExitTiming::Other);
        m.exit(100, ExitTiming::Timer);
        assert!(m.time.hidden() > hidden, "another exit ends the polling");
    }

    /// Linux's fast PIT calibration: nine PIT accesses (gate, mode, count,
    /// a read back, the first MSB read) before its first RDTSC, then two
    /// reads and an RDTSC a pass, all hidden.
    #[test]
    fn the_fast_pit_calibration_is_hidden_from_its_start() {
        let mut m = Model::new();
        for _ in 0..9 {
            m.exit(100, ExitTiming::Timer);
        }
        let mut last = m.exit(100, ExitTiming::TscRead);
        for _ in 0..100 {
            m.exit(100, ExitTiming::Timer);
            m.exit(100, ExitTiming::Timer);
            let now = m.exit(100, ExitTiming::TscRead);
            assert!(
                now - last < 3 * (TIMER_READ_NS + 200),
                "a pass cost {}",
                now - last
            );
            last = now;
        }
    }

    /// The fast PIT loop with its two PIT reads run ahead after each
    /// RDTSC's exit (one exit a pass): the window stays open, RDTSC keeps
    /// exiting, and each pass costs the guest its two timer reads.
    #[test]
    fn timer_reads_run_ahead_keep_the_window_and_are_charged() {
        let mut m = Model::new();
        m.exit_running_ahead(100, ExitTiming::Timer, 1);
        let mut last = m.exit_running_ahead(100, ExitTiming::TscRead, 2);
        for _ in 0..1000 {
            let now = m.exit_running_ahead(100, ExitTiming::TscRead, 2);
            let pass = now - last;
            assert!(
                (2 * TIMER_READ_NS..3 * (TIMER_READ_NS + 200)).contains(&pass),
                "a pass cost the guest {pass} ticks"
            );
            last = now;
        }
        assert!(m.d.tsc_exiting, "RDTSC exits while the window is open");
        // Without the reads reported, three RDTSCs in a row close it.
        for _ in 0..3 {
            m.exit_running_ahead(100, ExitTiming::TscRead, 0);
        }
        assert!(!m.d.tsc_exiting);
        // Reported from a closed window, they change nothing.
        let hidden = m.time.hidden();
        m.exit_running_ahead(100, ExitTiming::Other, 2);
        assert!(!m.d.tsc_exiting);
        assert_eq!(m.time.hidden(), hidden);
    }

    /// A TSC delay loop after a timer read closes the window after three
    /// TSC reads; two exits in a row that read neither (a host interrupt,
    /// a port write) close it too, and RDTSC stops exiting.
    #[test]
    fn the_window_closes_when_the_guest_stops_reading_timers() {
        let mut m = Model::new();
        m.exit(100, ExitTiming::Timer);
        assert!(m.d.tsc_exiting);
        m.exit(100, ExitTiming::TscRead);
        m.exit(100, ExitTiming::HostInterrupt);
        assert!(
            m.d.tsc_exiting,
            "one host interrupt inside a calibration loop"
        );
        m.exit(100, ExitTiming::TscRead);
        assert!(m.d.tsc_exiting);
        m.exit(100, ExitTiming::TscRead);
        assert!(!m.d.tsc_exiting, "three TSC reads without a timer access");
        m.exit(100, ExitTiming::Timer);
        assert!(m.d.tsc_exiting, "a timer access opens it again");
        m.exit(100, ExitTiming::Other);
        m.exit(100, ExitTiming::Other);
        assert!(!m.d.tsc_exiting, "two idle exits close it");
    }

    /// A guest computing with the window open: the runs up to a few host
    /// interrupts in a row are hidden (an emulator descheduled inside a
    /// calibration loop), then the window closes and the guest's work is
    /// its own; after an exit of its own, a host interrupt hides nothing.
    #[test]
    fn host_interrupts_hide_only_inside_a_calibration_loop() {
        let mut m = Model::new();
        m.exit(100, ExitTiming::Timer);
        let before = m.time.hidden();
        m.exit(1_000_000, ExitTiming::HostInterrupt);
        assert!(
            m.time.hidden() - before >= 1_000_000,
            "a stall in the loop is hidden"
        );
        for _ in 0..HIDDEN_HOST_INTERRUPTS {
            m.exit(1_000_000, ExitTiming::HostInterrupt);
        }
        assert!(!m.d.tsc_exiting, "the window closed");
        let hidden = m.time.hidden();
        m.exit(1_000_000, ExitTiming::HostInterrupt);
        assert_eq!(
            m.time.hidden(),
            hidden,
            "the guest's own work is not hidden"
        );
        m.exit(100, ExitTiming::Timer);
        m.exit(100, ExitTiming::Other);
        let hidden = m.time.hidden();
        m.exit(1_000_000, ExitTiming::HostInterrupt);
        assert_eq!(m.time.hidden(), hidden, "nor after an exit of its own");
    }

    /// A guest that keeps calibrating stops being dilated once the budget
    /// is spent; a vCPU started later (after a reset) gets a new one.
    #[test]
    fn the_hidden_time_has_a_budget() {
        let mut m = Model::new();
        let budget = HZ * HIDDEN_BUDGET_S;
        while m.time.hidden() < budget {
            m.exit(100, ExitTiming::Timer);
            m.exit(100, ExitTiming::TscRead);
        }
        let spent = m.time.hidden();
        assert!(
            spent < budget + 2 * (SWITCH + KEEL),
            "stops right at the budget"
        );
        for _ in 0..100 {
            m.exit(100, ExitTiming::Timer);
            m.exit(100, ExitTiming::TscRead);
        }
        assert_eq!(m.time.hidden(), spent, "nothing more is hidden");
        m.d = Dilation::new(HZ, m.host, spent);
        m.exit(100, ExitTiming::Timer);
        assert!(m.time.hidden() > spent, "a new budget after a reset");
    }

    /// A VM that may not dilate (an AP runs, or a paravirtual clock)
    /// hides nothing, and a pending hiding is dropped.
    #[test]
    fn a_vm_that_may_not_dilate_hides_nothing() {
        let time = ApparentTime::new();
        let mut d = Dilation::new(HZ, 0, 0);
        d.exited(&time, 1_000, ExitTiming::Timer, false);
        assert_eq!(time.host_tick(5_000), 5_000, "not frozen");
        assert!(!d.entering(&time, 9_000, false));
        d.exited(&time, 10_000, ExitTiming::Timer, true);
        assert_eq!(time.host_tick(12_000), 10_000, "frozen at the exit");
        assert!(!d.entering(&time, 90_000, false));
        assert_eq!(time.hidden(), 0);
        assert_eq!(time.host_tick(95_000), 95_000);
    }
}
