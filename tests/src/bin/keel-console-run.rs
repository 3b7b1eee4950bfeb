//! `keel-console-run ISO LOG TIMEOUT_SECS`: boots ISO with Keel's
//! interactive console as `cargo xtask run` does (the same runner), for the
//! console test, which runs this under `script` in a pseudo-terminal. After
//! the run it prints `keel-console-run: terminal restored` if the terminal
//! settings (`stty -g`) are what they were before, and exits with Keel's
//! status.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::Duration;

use xtask::runner::{self, Backend, RunOptions};

fn stty_g() -> String {
    Command::new("stty")
        .arg("-g")
        .stdin(Stdio::inherit())
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default()
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [iso, log, secs] = &args[..] else {
        eprintln!("usage: keel-console-run ISO LOG TIMEOUT_SECS");
        std::process::exit(2);
    };
    let before = stty_g();
    let opts = RunOptions {
        timeout: Duration::from_secs(secs.parse().unwrap_or(300)),
        live: true,
        memory_mib: runner::host_memory_mib(256),
        console: true,
        log: Some(PathBuf::from(log)),
        ..RunOptions::default()
    };
    let code = match runner::run_iso(&PathBuf::from(iso), Backend::Svm, &opts) {
        Ok(o) => o.exit_code(),
        Err(e) => {
            eprintln!("keel-console-run: {e}");
            1
        }
    };
    let after = stty_g();
    if !before.is_empty() && before == after {
        println!("keel-console-run: terminal restored");
    } else {
        println!("keel-console-run: terminal NOT restored: {before:?} -> {after:?}");
    }
    std::process::exit(code);
}
