//! `keel-fuzz`: the host fuzz harness's long run (`cargo xtask fuzz`).
//!
//! ```text
//! keel-fuzz [--target devices|exits|config|xenstore|xen] [--minutes N] [--seed S]
//! ```
//! Replays the regression seeds, then runs random seeds for N minutes
//! (default 1), every target in turn unless `--target` names one; `--seed`
//! runs that one seed instead. A failure prints
//! `keel-fuzz: FAILED target=T seed=S case=N` and ends the process.

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use keel_fuzz::{parse_seed, Target, CASES_PER_SEED};

const USAGE: &str =
    "usage: keel-fuzz [--target devices|exits|config|xenstore|xen] [--minutes N] [--seed S]";

fn main() -> ExitCode {
    match run(std::env::args().skip(1).collect()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("keel-fuzz: {e}\n{USAGE}");
            ExitCode::from(2)
        }
    }
}

fn run(args: Vec<String>) -> Result<(), String> {
    let mut targets = Target::ALL.to_vec();
    let mut minutes = 1u64;
    let mut seed = None;
    let mut it = args.iter();
    while let Some(flag) = it.next() {
        let value = it.next().ok_or(format!("{flag} needs a value"))?;
        match flag.as_str() {
            "--target" => {
                targets = vec![Target::from_name(value).ok_or(format!(
                    "--target {value}: devices, exits, config, xenstore or xen"
                ))?]
            }
            "--minutes" => {
                minutes = value
                    .parse()
                    .ok()
                    .filter(|&m| m > 0)
                    .ok_or(format!("--minutes {value}: a whole number above 0"))?
            }
            "--seed" => {
                seed = Some(parse_seed(value).ok_or(format!("--seed {value}: 0x... or decimal"))?)
            }
            other => return Err(format!("unexpected argument '{other}'")),
        }
    }
    if let Some(seed) = seed {
        for t in targets {
            eprintln!("keel-fuzz: {t}: seed {seed:#x}");
            t.run_seed(seed);
        }
        eprintln!("keel-fuzz: passed");
        return Ok(());
    }
    for t in &targets {
        let seeds = t.regressions();
        eprintln!("keel-fuzz: {t}: replaying {} regression seeds", seeds.len());
        for s in seeds {
            t.run_seed(s);
        }
    }
    let deadline = Instant::now() + Duration::from_secs(minutes * 60);
    let mut state = RandomState::new().build_hasher();
    let mut seeds = vec![0u64; targets.len()];
    let mut last_report = Instant::now();
    let mut i = 0;
    while Instant::now() < deadline {
        let t = targets[i % targets.len()];
        state.write_u64(i as u64);
        t.run_seed(state.finish());
        seeds[i % targets.len()] += 1;
        i += 1;
        if last_report.elapsed() > Duration::from_secs(30) {
            report(&targets, &seeds);
            last_report = Instant::now();
        }
    }
    report(&targets, &seeds);
    eprintln!("keel-fuzz: passed");
    Ok(())
}

fn report(targets: &[Target], seeds: &[u64]) {
    let parts: Vec<String> = targets
        .iter()
        .zip(seeds)
        .map(|(t, n)| format!("{t}: {} cases", n * CASES_PER_SEED))
        .collect();
    eprintln!("keel-fuzz: {}", parts.join(", "));
}
