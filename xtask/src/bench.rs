//! `cargo xtask bench`: numbers a reader can compare across commits, printed
//! as a table and written as JSON under `target/bench/`. Nothing here is
//! asserted: benchmarks measure, tests judge.
//!
//! Boot time: the same Debian kernel and busybox initramfs (tests/vms/linux.cfg)
//! booted by Keel (its BIOS shim, direct boot) and by plain QEMU TCG with
//! `-kernel`/`-initrd`, both under the same QEMU TCG on the same machine, in one
//! run, so the ratio is what Keel costs on top of the emulator.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::runner::{self, Backend, Outcome, RunOptions};

/// The line the initramfs's /init prints first.
pub const INIT_LINE: &str = "PASS linux-init";

/// One boot's timings, from the emulator's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootTimes {
    /// Until /init's first line.
    pub to_init: Duration,
    /// Until the guest powered off (the emulator ended, or Keel's stop line).
    pub to_power_off: Duration,
}

/// Boot times under Keel and on plain QEMU, and Keel's exit count.
#[derive(Debug, Clone, PartialEq)]
pub struct BootBench {
    pub kernel: String,
    pub keel: BootTimes,
    pub qemu: BootTimes,
    pub keel_exits: Option<u64>,
}

impl BootBench {
    /// Keel's time to init over plain QEMU's.
    pub fn init_ratio(&self) -> f64 {
        self.keel.to_init.as_secs_f64() / self.qemu.to_init.as_secs_f64()
    }

    /// Keel's time to power-off over plain QEMU's.
    pub fn power_off_ratio(&self) -> f64 {
        self.keel.to_power_off.as_secs_f64() / self.qemu.to_power_off.as_secs_f64()
    }

    /// The table printed on stdout.
    pub fn table(&self) -> String {
        let row = |what: &str, k: Duration, q: Duration, r: f64| {
            format!(
                "{what:<22} {:>10.2} s {:>10.2} s {:>8.2}x\n",
                k.as_secs_f64(),
                q.as_secs_f64(),
                r
            )
        };
        let mut t = format!("boot of {} (direct kernel boot, QEMU TCG)\n", self.kernel);
        t.push_str(&format!(
            "{:<22} {:>12} {:>12} {:>9}\n",
            "", "under Keel", "plain QEMU", "ratio"
        ));
        t.push_str(&row(
            "to /init",
            self.keel.to_init,
            self.qemu.to_init,
            self.init_ratio(),
        ));
        t.push_str(&row(
            "to ACPI power-off",
            self.keel.to_power_off,
            self.qemu.to_power_off,
            self.power_off_ratio(),
        ));
        if let Some(n) = self.keel_exits {
            t.push_str(&format!("{:<22} {n:>12}\n", "VM exits under Keel"));
        }
        t
    }

    /// The JSON written to `target/bench/boot.json`.
    pub fn json(&self) -> String {
        format!(
            "{{\n  \"kernel\": \"{}\",\n  \"keel_to_init_s\": {:.3},\n  \"qemu_to_init_s\": {:.3},\n  \
             \"init_ratio\": {:.3},\n  \"keel_to_power_off_s\": {:.3},\n  \"qemu_to_power_off_s\": {:.3},\n  \
             \"power_off_ratio\": {:.3},\n  \"keel_exits\": {}\n}}\n",
            self.kernel.escape_default(),
            self.keel.to_init.as_secs_f64(),
            self.qemu.to_init.as_secs_f64(),
            self.init_ratio(),
            self.keel.to_power_off.as_secs_f64(),
            self.qemu.to_power_off.as_secs_f64(),
            self.power_off_ratio(),
            self.keel_exits.map_or("null".to_string(), |n| n.to_string()),
        )
    }
}

/// The exits Keel counted for VM `vm`, from its `keel: VM '<vm>': N exits` line.
pub fn exits(o: &Outcome, vm: &str) -> Option<u64> {
    let prefix = format!("keel: VM '{vm}': ");
    o.lines.iter().find_map(|l| {
        l.strip_prefix(&prefix)?
            .split_once(" exits")?
            .0
            .parse()
            .ok()
    })
}

/// Timings of a Keel run of the Linux VM `vm`.
pub fn keel_times(o: &Outcome, vm: &str) -> Result<BootTimes, String> {
    let to_init = o
        .time_of(INIT_LINE)
        .ok_or_else(|| format!("no '{INIT_LINE}' line under Keel\n{}", o.report()))?;
    let stop = format!("keel: VM '{vm}' stopped: the guest powered the machine off");
    let to_power_off = o
        .time_of(&stop)
        .ok_or_else(|| format!("the VM did not power off under Keel\n{}", o.report()))?;
    Ok(BootTimes {
        to_init,
        to_power_off,
    })
}

/// Timings of a plain QEMU run (it ends when the guest powers off).
pub fn qemu_times(o: &Outcome) -> Result<BootTimes, String> {
    let to_init = o
        .time_of(INIT_LINE)
        .ok_or_else(|| format!("no '{INIT_LINE}' line on plain QEMU\n{}", o.report()))?;
    if !o.lines.iter().any(|l| l.contains("Power down")) {
        return Err(format!(
            "the guest did not power off on plain QEMU\n{}",
            o.report()
        ));
    }
    Ok(BootTimes {
        to_init,
        to_power_off: o.elapsed,
    })
}

/// Boots `kernel` with `initrd` and `cmdline` on plain QEMU TCG (`-kernel`).
pub fn run_plain_qemu(
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
    memory_mib: u32,
    timeout: Duration,
) -> Result<Outcome, String> {
    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-machine", "pc", "-accel", "tcg", "-cpu", "qemu64"])
        .args(["-m", &memory_mib.to_string()])
        .args([
            "-display",
            "none",
            "-serial",
            "stdio",
            "-no-reboot",
            "-nodefaults",
        ])
        .arg("-kernel")
        .arg(kernel)
        .args(["-append", cmdline]);
    if let Some(i) = initrd {
        qemu.arg("-initrd").arg(i);
    }
    let opts = RunOptions {
        timeout,
        ..RunOptions::default()
    };
    runner::run_command(qemu, &opts).map_err(|e| e.to_string())
}

/// Boots the Keel ISO of the Linux VM under QEMU TCG (SVM).
pub fn run_keel(iso: &Path, memory_mib: u32, timeout: Duration) -> Result<Outcome, String> {
    let opts = RunOptions {
        timeout,
        memory_mib: runner::host_memory_mib(memory_mib),
        ..RunOptions::default()
    };
    runner::run_iso(iso, Backend::Svm, &opts).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::End;

    fn outcome(lines: &[(&str, u64)], elapsed_ms: u64) -> Outcome {
        Outcome {
            end: End::NoFinalLine,
            lines: lines.iter().map(|l| l.0.to_string()).collect(),
            line_times: lines.iter().map(|l| Duration::from_millis(l.1)).collect(),
            emulator_stderr: String::new(),
            emulator_status: None,
            elapsed: Duration::from_millis(elapsed_ms),
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn times_come_from_the_lines() {
        let keel = outcome(
            &[
                ("[linux] PASS linux-init", 9_000),
                (
                    "keel: VM 'linux': 41681 exits; unclaimed port reads 0, writes 0",
                    10_000,
                ),
                (
                    "keel: VM 'linux' stopped: the guest powered the machine off (ACPI S5)",
                    10_001,
                ),
            ],
            10_500,
        );
        let t = keel_times(&keel, "linux").unwrap();
        assert_eq!(t.to_init, Duration::from_millis(9_000));
        assert_eq!(t.to_power_off, Duration::from_millis(10_001));
        assert_eq!(exits(&keel, "linux"), Some(41_681));
        let qemu = outcome(
            &[
                ("PASS linux-init", 6_000),
                ("[    3.2] reboot: Power down", 7_000),
            ],
            7_200,
        );
        let q = qemu_times(&qemu).unwrap();
        assert_eq!(q.to_power_off, Duration::from_millis(7_200));
        let b = BootBench {
            kernel: "6.1".into(),
            keel: t,
            qemu: q,
            keel_exits: Some(41_681),
        };
        assert!((b.init_ratio() - 1.5).abs() < 1e-9);
        assert!(b.table().contains("1.50x"));
        assert!(b.json().contains("\"init_ratio\": 1.500"));
        assert!(keel_times(&outcome(&[], 1), "linux").is_err());
        assert!(
            qemu_times(&outcome(&[("PASS linux-init", 1)], 2)).is_err(),
            "no power-off"
        );
    }
}
