//! Keel's clock: the TSC, calibrated once at boot against the PIT, serves as
//! the `Clock` every device model reads.
//!
//! Calibration (a common method on PCs): PIT channel 2 counts down a known
//! interval in mode 0 with its gate from port 0x61; its OUT pin (port 0x61
//! bit 5) goes high at terminal count (82C54 datasheet, mode 0). The TSC ticks
//! counted over that interval give its frequency.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

/// The PIT's input clock (82C54 on a PC), in Hz.
const PIT_HZ: u64 = 1_193_182;
/// Calibration interval: 10 ms worth of PIT ticks.
const PIT_TICKS: u16 = 11_932;
const PIT_CH2_DATA: u16 = 0x42;
const PIT_COMMAND: u16 = 0x43;
const SYSTEM_PORT_B: u16 = 0x61;
/// Port 0x61: bit 0 gates channel 2, bit 1 enables the speaker, bit 5 is OUT2.
const GATE2: u8 = 1 << 0;
const SPEAKER: u8 = 1 << 1;
const OUT2: u8 = 1 << 5;

static TSC_HZ: AtomicU64 = AtomicU64::new(0);
/// Nanoseconds per TSC tick as a 32.32 fixed-point number, so that
/// [`now_ns`], which every device reads several times per VM exit, is a
/// multiply and a shift rather than a 128-bit division.
static NS_PER_TICK_32: AtomicU64 = AtomicU64::new(0);
static TSC_START: AtomicU64 = AtomicU64::new(0);
/// The machine's RTC time (seconds since 1970-01-01) and Keel's clock
/// (`now_ns`) when it was read.
static WALL_SECS: AtomicU64 = AtomicU64::new(0);
static WALL_AT_NS: AtomicU64 = AtomicU64::new(0);

/// Records the machine's wall-clock time, read now.
pub fn set_wall_clock(unix_secs: u64) {
    WALL_AT_NS.store(now_ns(), Ordering::Relaxed);
    WALL_SECS.store(unix_secs, Ordering::Relaxed);
}

/// The wall-clock time now (seconds since 1970-01-01), or 0 if the machine's
/// RTC could not be read.
pub fn unix_time() -> u64 {
    let secs = WALL_SECS.load(Ordering::Relaxed);
    if secs == 0 {
        return 0;
    }
    let elapsed = now_ns().saturating_sub(WALL_AT_NS.load(Ordering::Relaxed));
    secs + elapsed / 1_000_000_000
}

/// The time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC has no preconditions (CR4.TSD is clear in Keel).
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Measures the TSC frequency: the median of [`CALIBRATION_RUNS`] clean
/// runs, so that one run stretched by the host does not set Keel's clock.
/// Under an emulator on a busy machine the vCPU can be descheduled in the
/// middle of a run (once measured at 1.4 and 10 times the real rate, which
/// then made every guest's clock run that much slow): a run is clean when
/// neither the gate's start nor the poll that saw the PIT's output rise
/// took longer than [`CLEAN_GAP_PER_MILLE`] of the interval, so the edge is
/// known to that precision. After [`CALIBRATION_ATTEMPTS`] runs with too
/// few clean ones, the fastest run counts (a stall only ever lengthens the
/// poll). Returns it in Hz, or `None` if the PIT never reached terminal
/// count (no PIT on this machine).
pub fn calibrate() -> Option<u64> {
    let mut clean = [0u64; CALIBRATION_RUNS];
    let mut n_clean = 0;
    let mut fastest = u64::MAX;
    let mut start = 0;
    for _ in 0..CALIBRATION_ATTEMPTS {
        let run = calibrate_once()?;
        start = run.start;
        fastest = fastest.min(run.hz);
        if run.clean {
            clean[n_clean] = run.hz;
            n_clean += 1;
            if n_clean == CALIBRATION_RUNS {
                break;
            }
        }
    }
    let hz = if n_clean == 0 {
        fastest
    } else {
        let clean = &mut clean[..n_clean];
        clean.sort_unstable();
        median(clean)
    };
    TSC_HZ.store(hz, Ordering::Relaxed);
    NS_PER_TICK_32.store(ns_per_tick_32(hz), Ordering::Relaxed);
    TSC_START.store(start, Ordering::Relaxed);
    Some(hz)
}

/// Clean calibration runs whose median is taken.
const CALIBRATION_RUNS: usize = 5;
/// Most calibration runs tried (about 10 ms each).
const CALIBRATION_ATTEMPTS: usize = 40;
/// The largest gap between two TSC reads around the PIT edge, in
/// thousandths of the interval, for a run to count as clean.
const CLEAN_GAP_PER_MILLE: u64 = 5;

/// The middle of sorted `values` (not empty).
fn median(values: &[u64]) -> u64 {
    values[values.len() / 2]
}

/// One calibration run.
struct CalibrationRun {
    /// The TSC rate over one PIT interval.
    hz: u64,
    /// The TSC at its start.
    start: u64,
    /// Whether the run's start and end are each known to within
    /// [`CLEAN_GAP_PER_MILLE`] of the interval.
    clean: bool,
}

/// One run: the TSC over one PIT interval.
fn calibrate_once() -> Option<CalibrationRun> {
    // SAFETY: ports 0x42, 0x43 and 0x61 are the PC's PIT channel 2 and system
    // control port B; Keel owns them and changes only the channel 2 gate,
    // leaving the speaker off.
    unsafe {
        let mut port_b = Port::<u8>::new(SYSTEM_PORT_B);
        let mut command = Port::<u8>::new(PIT_COMMAND);
        let mut data = Port::<u8>::new(PIT_CH2_DATA);
        let saved = port_b.read();
        port_b.write(saved & !(GATE2 | SPEAKER));
        // Channel 2, LSB then MSB, mode 0, binary.
        command.write(0b1011_0000);
        data.write(PIT_TICKS as u8);
        data.write((PIT_TICKS >> 8) as u8);
        let before_gate = rdtsc();
        port_b.write((saved & !SPEAKER) | GATE2);
        let start = rdtsc();
        // Bounded: about 100x the interval even at 100 GHz of TSC.
        let mut spins: u64 = 0;
        // The TSC before the last read that saw the output low: the edge
        // came between it and `end`.
        let mut last_poll = start;
        let end = loop {
            let polled = rdtsc();
            if port_b.read() & OUT2 != 0 {
                break rdtsc();
            }
            last_poll = polled;
            spins += 1;
            if spins > 100_000_000 {
                port_b.write(saved);
                return None;
            }
            core::hint::spin_loop();
        };
        port_b.write(saved);
        let ticks = end.saturating_sub(start).max(1);
        let gap = (start - before_gate).max(end.saturating_sub(last_poll));
        Some(CalibrationRun {
            hz: ticks * PIT_HZ / u64::from(PIT_TICKS),
            start,
            clean: gap.saturating_mul(1000) <= ticks.saturating_mul(CLEAN_GAP_PER_MILLE),
        })
    }
}

/// Nanoseconds since calibration.
pub fn now_ns() -> u64 {
    let ticks = rdtsc().saturating_sub(TSC_START.load(Ordering::Relaxed));
    ticks_to_ns(ticks, NS_PER_TICK_32.load(Ordering::Relaxed))
}

/// 10^9 / `hz` in 32.32 fixed point (`hz` at least 1; the error is under
/// one part in 2^32 / (10^9 / hz): 0.2 us an hour at 3 GHz).
fn ns_per_tick_32(hz: u64) -> u64 {
    ((1_000_000_000u128 << 32) / u128::from(hz.max(1))) as u64
}

/// `ticks` TSC ticks in nanoseconds at `ns_per_tick_32` ([`ns_per_tick_32`]).
fn ticks_to_ns(ticks: u64, ns_per_tick_32: u64) -> u64 {
    ((u128::from(ticks) * u128::from(ns_per_tick_32)) >> 32) as u64
}

/// The TSC frequency measured at boot.
pub fn tsc_hz() -> u64 {
    TSC_HZ.load(Ordering::Relaxed)
}

/// `ticks` TSC ticks as nanoseconds.
pub fn ticks_ns(ticks: u64) -> u64 {
    ticks_to_ns(ticks, NS_PER_TICK_32.load(Ordering::Relaxed))
}

/// A VM's clock as its devices see it: Keel's, less the time hidden from
/// the VM while it calibrated its TSC (`keel::apparent_time`), and
/// standing still while such an exit is handled.
pub struct VmClock(pub alloc::sync::Arc<keel::apparent_time::ApparentTime>);

impl device_model::Clock for VmClock {
    fn now_ns(&self) -> u64 {
        let ticks = self
            .0
            .vm_ticks(rdtsc())
            .saturating_sub(TSC_START.load(Ordering::Relaxed));
        ticks_ns(ticks)
    }
}

/// The host clock as device models see it (host-side devices: a NIC's
/// bridge).
pub struct HostClock;

impl device_model::Clock for HostClock {
    fn now_ns(&self) -> u64 {
        now_ns()
    }
}
