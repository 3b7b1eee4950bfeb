//! Keel's host fuzz harness (issue 11, must-have 4): what a hostile guest
//! controls, driven with random input on the host, where a panic is a test
//! failure instead of a machine going down.
//!
//! Five targets:
//! - [`Target::Devices`]: a whole [`device_model::Pc`] (IDE disk and CD, the
//!   test device, random guest RAM as DMA memory); every range registered on
//!   its bus gets random accesses of random sizes, offsets and values,
//!   interleaved with clock advances, `Pc::service`, `next_deadline_ns`,
//!   interrupt acknowledges and machine resets. A new device joins by being
//!   on the bus ([`device_model::Bus::ranges`]).
//! - [`Target::Exits`]: `vmm_core::exit::handle_exit` with random exits on a
//!   fake vCPU over random guest RAM and a platform that answers randomly; a
//!   quarter of the seeds with Xen's personality, whose hypercalls reach
//!   device-model's dispatch over a real `Xen` state.
//! - [`Target::Config`]: the VM configuration parser with random bytes,
//!   token soup and mutations of the configurations in tests/vms.
//! - [`Target::Xenstore`]: the xenstore's store page with random requests,
//!   jumping indexes, reconnections and backend writes.
//! - [`Target::Xen`]: Xen's blkback and netback with random ring pages,
//!   grant flags and xenbus states from a hostile frontend.
//!
//! Each checks: no panic; the heap this thread holds stays below
//! [`HEAP_LIMIT`] and no case grows it by more than [`CASE_GROWTH_LIMIT`].
//! Targets add their own checks (work per exit, error lines).
//!
//! A *seed* is the unit of replay: it builds a fresh machine (or vCPU, or
//! corpus pick) and runs [`CASES_PER_SEED`] cases on it, so that state
//! carries over between cases as it does in a running VM. A failure prints
//! `keel-fuzz: FAILED target=T seed=S case=N`; the seed alone replays it
//! (`cargo xtask fuzz --target T --seed S`), and seeds in
//! `regressions/<target>.txt` are replayed on every run.

mod config;
mod devices;
mod exits;
pub mod heap;
mod xen;
mod xenstore;

use std::cell::Cell;
use std::fmt;
use std::sync::Once;

use x86_emul::rng::Rng;

#[global_allocator]
static HEAP: heap::CountingAllocator = heap::CountingAllocator;

/// Cases one seed runs.
pub const CASES_PER_SEED: u64 = 100;
/// The most heap a target's thread may hold after any case, in bytes.
pub const HEAP_LIMIT: i64 = 64 << 20;
/// The most one case may grow the heap, in bytes.
pub const CASE_GROWTH_LIMIT: i64 = 1 << 20;

/// What the harness drives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    Devices,
    Exits,
    Config,
    Xenstore,
    Xen,
}

impl Target {
    pub const ALL: [Target; 5] = [
        Target::Devices,
        Target::Exits,
        Target::Config,
        Target::Xenstore,
        Target::Xen,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Target::Devices => "devices",
            Target::Exits => "exits",
            Target::Config => "config",
            Target::Xenstore => "xenstore",
            Target::Xen => "xen",
        }
    }

    pub fn from_name(name: &str) -> Option<Target> {
        Target::ALL.into_iter().find(|t| t.name() == name)
    }

    /// The seeds of crashes found before, replayed on every run.
    pub fn regressions(self) -> Vec<u64> {
        let text = match self {
            Target::Devices => include_str!("../regressions/devices.txt"),
            Target::Exits => include_str!("../regressions/exits.txt"),
            Target::Config => include_str!("../regressions/config.txt"),
            Target::Xenstore => include_str!("../regressions/xenstore.txt"),
            Target::Xen => include_str!("../regressions/xen.txt"),
        };
        parse_seed_list(text).unwrap_or_else(|e| panic!("regressions/{}.txt: {e}", self.name()))
    }

    /// Runs the [`CASES_PER_SEED`] cases of `seed`; panics (after printing
    /// the target, seed and case) on the first failure.
    pub fn run_seed(self, seed: u64) {
        install_panic_report();
        CURRENT.with(|c| c.set(Some((self, seed, 0))));
        let mut rng = Rng(splitmix64(seed) | 1);
        match self {
            Target::Devices => devices::run(&mut rng),
            Target::Exits => exits::run(&mut rng),
            Target::Config => config::run(&mut rng),
            Target::Xenstore => xenstore::run(&mut rng),
            Target::Xen => xen::run(&mut rng),
        }
        CURRENT.with(|c| c.set(None));
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// Seeds of the fixed pass `cargo xtask test` runs: enough for 100,000
/// cases per target, the same on every run.
pub fn fixed_seeds() -> impl Iterator<Item = u64> {
    const FIXED_BASE: u64 = 0x6b65_656c_0000_0000;
    (0..100_000u64.div_ceil(CASES_PER_SEED)).map(|i| FIXED_BASE + i)
}

/// One `0x...` or decimal seed per line; `#` starts a comment.
pub fn parse_seed_list(text: &str) -> Result<Vec<u64>, String> {
    text.lines()
        .enumerate()
        .filter_map(|(i, l)| {
            let l = l.split('#').next().unwrap_or("").trim();
            (!l.is_empty())
                .then(|| parse_seed(l).ok_or(format!("line {}: '{l}' is not a seed", i + 1)))
        })
        .collect()
}

/// A seed as printed (`0x...`) or in decimal.
pub fn parse_seed(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// SplitMix64's output function: spreads neighbouring seeds apart (and
/// xorshift needs a non-zero state).
fn splitmix64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

thread_local! {
    /// The target, seed and case this thread is running, for the failure report.
    static CURRENT: Cell<Option<(Target, u64, u64)>> = const { Cell::new(None) };
}

/// Records that case `case` of the current seed starts.
fn set_case(case: u64) {
    CURRENT.with(|c| c.set(c.get().map(|(t, s, _)| (t, s, case))));
}

/// Prints the target, seed and case before the default panic report, so a
/// failure (a panic in a device, or a harness assertion) can be replayed,
/// also under `panic = "abort"`.
fn install_panic_report() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some((t, seed, case)) = CURRENT.with(Cell::get) {
                eprintln!("keel-fuzz: FAILED target={t} seed={seed:#x} case={case}");
                eprintln!("keel-fuzz: replay with: cargo xtask fuzz --target {t} --seed {seed:#x}");
            }
            default(info);
        }));
    });
}

/// The heap checks every target makes after each case.
struct HeapWatch {
    before: i64,
}

impl HeapWatch {
    fn start() -> Self {
        HeapWatch {
            before: heap::live_bytes(),
        }
    }

    /// Asserts the bounds on the heap after a case that started at `self`.
    fn check(self, what: &str) {
        let now = heap::live_bytes();
        assert!(
            now < HEAP_LIMIT,
            "{what}: the heap holds {now} bytes, above the {HEAP_LIMIT}-byte bound"
        );
        let grew = now - self.before;
        assert!(
            grew <= CASE_GROWTH_LIMIT,
            "{what}: one case grew the heap by {grew} bytes, above the {CASE_GROWTH_LIMIT}-byte bound"
        );
    }
}

/// Random values the way a hostile guest chooses them: the edges more often
/// than a uniform draw would.
fn interesting(rng: &mut Rng) -> u64 {
    match rng.below(10) {
        0 => 0,
        1 => u64::MAX,
        2 => rng.below(16),
        3 => 1u64 << rng.below(64),
        4 => (1u64 << rng.below(64)).wrapping_sub(1),
        5 => rng.below(0x100),
        _ => rng.next(),
    }
}

#[cfg(test)]
mod tests;
