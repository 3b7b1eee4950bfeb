//! `cargo xtask bench`: numbers a reader can compare across commits, printed
//! as a table and written as JSON under `target/bench/`. Nothing here is
//! asserted: benchmarks measure, tests judge.
//!
//! Boot time: the same Debian kernel and busybox initramfs (tests/vms/linux.cfg)
//! booted by Keel (its BIOS shim, direct boot) and by plain QEMU TCG with
//! `-kernel`/`-initrd`, both under the same QEMU TCG on the same machine, in one
//! run, so the ratio is what Keel costs on top of the emulator.
//!
//! Shim: the time from a VM's start to a kernel's first instruction,
//! Keel's BIOS shim against SeaBIOS and QEMU's linuxboot option ROM, with
//! `keel-bzbench` (firmware/src/bin/bzbench.rs), a bzImage whose entries
//! print one line and end the VM: under Keel from its VM start line to that
//! line; on plain QEMU `-kernel` from the emulator's start (QEMU's own
//! start-up, SeaBIOS, the option ROM); and, firmware against firmware, the
//! shim as plain QEMU's `-bios` from the emulator's start.
//!
//! IDE: the `debian-disk` image (SeaBIOS, SYSLINUX, the same kernel, an
//! initramfs with ata_piix) booted under Keel from its emulated IDE disk and
//! on plain QEMU TCG from QEMU's own IDE disk (`-drive if=ide`, QEMU's
//! SeaBIOS), with `keel_test=bench keel_bench=D,P` on the command line: the
//! guest's /init reads D MiB of /dev/sda with O_DIRECT and bus-master DMA,
//! then P MiB with PIO (libata reloaded with `dma=0`), timing each read with
//! its own clock (`BENCH ...` lines). Keel prints one exit count per VM run,
//! so exits per MiB come from boots that differ only in what they read:
//! (exits reading N MiB - exits reading nothing) / N, the baseline being the
//! mean of two boots whose difference shows the noise. The same image also
//! boots on a VM with `xen_platform_pci = 1` (`keel_bench_xen=R,W`): Linux
//! unplugs the IDE disks and xen-blkfront reads R MiB of the booted disk
//! and writes W MiB to a scratch disk, against two Xen boots of their own
//! that move nothing. Plain QEMU has no Xen PV devices: no QEMU side there.
//!
//! Screen: the `screendisk` boot disk's text scrolls and framebuffer fills
//! through the VGA BIOS, under Keel and on plain QEMU ([`screen`]).

pub mod screen;

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::ide_assets::{BenchBoot, BenchMib};
use crate::net::HostNet;
use crate::runner::{self, Backend, Outcome, RunOptions};
pub use exit_stats::{ExitRow, StatsCost};

pub mod smp;

/// The exit statistics Keel printed when VM `vm` ended (crates/exit-stats:
/// one row per exit reason, and per device under `io` and `npf`).
#[derive(Debug, Clone, PartialEq)]
pub struct ExitTable {
    pub rows: Vec<ExitRow>,
    pub cost: Option<StatsCost>,
}

impl ExitTable {
    /// The table after Keel's `VM '<vm>': exit statistics at its end` line.
    pub fn parse(o: &Outcome, vm: &str) -> Option<ExitTable> {
        let header = format!("keel: VM '{vm}': exit statistics at its end");
        let start = o.lines.iter().rposition(|l| l.starts_with(&header))?;
        let mut table = ExitTable {
            rows: Vec::new(),
            cost: None,
        };
        for line in o.lines[start + 1..]
            .iter()
            .map_while(|l| l.strip_prefix("keel: exits: "))
        {
            if let Some(row) = ExitRow::parse(line) {
                table.rows.push(row);
            } else if let Some(cost) = StatsCost::parse(line) {
                table.cost = Some(cost);
            }
        }
        Some(table)
    }

    /// The row labelled `label` (`cpuid`, `io: COM1`, `total`).
    pub fn row(&self, label: &str) -> Option<&ExitRow> {
        self.rows.iter().find(|r| r.label == label)
    }

    /// The table as a JSON value: its rows, and what the statistics cost.
    pub fn json(&self) -> String {
        let rows: Vec<String> = self
            .rows
            .iter()
            .map(|r| {
                format!(
                    "{{\"reason\": \"{}\", \"count\": {}, \"keel_cycles\": {}, \"keel_mean\": {}, \
                     \"guest_cycles\": {}, \"guest_mean\": {}}}",
                    r.label.escape_default(),
                    r.count,
                    r.keel_cycles,
                    r.keel_mean,
                    r.guest_cycles,
                    r.guest_mean
                )
            })
            .collect();
        let cost = self.cost.map_or("null".to_string(), |c| {
            format!(
                "{{\"cycles_per_exit\": {}, \"percent\": {:.2}}}",
                c.cycles_per_exit,
                c.basis_points as f64 / 100.0
            )
        });
        format!(
            "{{\"rows\": [\n    {}\n  ], \"cost\": {cost}}}",
            rows.join(",\n    ")
        )
    }
}

/// A per-MiB figure as JSON, or `null`.
fn per_mib_json(v: Option<f64>) -> String {
    v.map_or("null".to_string(), |v| format!("{v:.3}"))
}

/// A JSON value or `null`.
fn json_or_null(table: Option<&ExitTable>) -> String {
    table.map_or("null".to_string(), ExitTable::json)
}

/// The line the initramfs's /init prints first.
pub const INIT_LINE: &str = "PASS linux-init";

/// One boot's timings, from the emulator's start.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BootTimes {
    /// Until /init's first line.
    pub to_init: Duration,
    /// Until the guest powered off (the emulator ended, or Keel's stop line).
    pub to_power_off: Duration,
    /// Until Keel started the VM (GRUB, loading the ISO, Keel's own start);
    /// `None` on plain QEMU, whose firmware is part of its boot as Keel's
    /// shim is part of the VM's.
    pub vm_start: Option<Duration>,
}

/// How many times the boot bench boots each side, alternating Keel and
/// plain QEMU so that a change in the machine's load reaches both.
pub const BOOT_ROUNDS: usize = 3;

/// The median, minimum and maximum of a side's runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    pub median: Duration,
    pub min: Duration,
    pub max: Duration,
}

impl Spread {
    /// The spread of `runs` (the lower median of an even count); zero for none.
    pub fn of(runs: &[Duration]) -> Spread {
        let mut v = runs.to_vec();
        v.sort();
        let at = |i: usize| v.get(i).copied().unwrap_or_default();
        Spread {
            median: at(v.len().saturating_sub(1) / 2),
            min: at(0),
            max: at(v.len().saturating_sub(1)),
        }
    }
}

/// A Keel run's time to /init from its VM start line, if it logged one.
fn from_vm_start(to_init: Duration, vm_start: Option<Duration>) -> Option<Duration> {
    Some(to_init.saturating_sub(vm_start?))
}

/// The spread of Keel's runs from their VM start, if every run logged its
/// VM start.
fn vm_start_spread(runs: impl Iterator<Item = Option<Duration>>) -> Option<Spread> {
    let runs: Option<Vec<Duration>> = runs.collect();
    runs.filter(|r| !r.is_empty()).map(|r| Spread::of(&r))
}

/// The host's load average (`/proc/loadavg`: 1, 5 and 15 minutes), if
/// the host has one.
pub fn load_average() -> Option<[f64; 3]> {
    parse_load_average(&std::fs::read_to_string("/proc/loadavg").ok()?)
}

fn parse_load_average(text: &str) -> Option<[f64; 3]> {
    let mut w = text.split_whitespace().map(|w| w.parse::<f64>().ok());
    Some([w.next()??, w.next()??, w.next()??])
}

/// Boot times under Keel and on plain QEMU, one per round, and Keel's exit
/// count and statistics of its last run.
#[derive(Debug, Clone, PartialEq)]
pub struct BootBench {
    pub kernel: String,
    pub keel: Vec<BootTimes>,
    pub qemu: Vec<BootTimes>,
    pub keel_exits: Option<u64>,
    pub keel_exit_stats: Option<ExitTable>,
    /// The host's load average before the first run and after the last.
    pub load: [Option<[f64; 3]>; 2],
    /// The shim bench, when it ran with the boot bench.
    pub shim: Option<ShimBench>,
}

impl BootBench {
    fn spread(runs: &[BootTimes], f: impl Fn(&BootTimes) -> Duration) -> Spread {
        Spread::of(&runs.iter().map(f).collect::<Vec<_>>())
    }

    pub fn keel_to_init(&self) -> Spread {
        Self::spread(&self.keel, |t| t.to_init)
    }
    /// From Keel's VM start to /init, if every run logged its VM start.
    pub fn keel_guest_to_init(&self) -> Option<Spread> {
        vm_start_spread(
            self.keel
                .iter()
                .map(|t| from_vm_start(t.to_init, t.vm_start)),
        )
    }
    pub fn qemu_to_init(&self) -> Spread {
        Self::spread(&self.qemu, |t| t.to_init)
    }
    pub fn keel_to_power_off(&self) -> Spread {
        Self::spread(&self.keel, |t| t.to_power_off)
    }
    pub fn qemu_to_power_off(&self) -> Spread {
        Self::spread(&self.qemu, |t| t.to_power_off)
    }

    /// Keel's median time to init over plain QEMU's.
    pub fn init_ratio(&self) -> f64 {
        self.keel_to_init().median.as_secs_f64() / self.qemu_to_init().median.as_secs_f64()
    }

    /// Keel's median time to power-off over plain QEMU's.
    pub fn power_off_ratio(&self) -> f64 {
        self.keel_to_power_off().median.as_secs_f64()
            / self.qemu_to_power_off().median.as_secs_f64()
    }

    /// Its section of the table printed on stdout.
    pub fn rows(&self) -> String {
        let mut t = format!(
            "boot of {} (direct kernel boot, -kernel), median of {} and {} runs\n",
            self.kernel,
            self.keel.len(),
            self.qemu.len()
        );
        let guest = self.keel_guest_to_init().map(|g| {
            (
                "to /init from Keel's VM start",
                g,
                self.qemu_to_init(),
                g.median.as_secs_f64() / self.qemu_to_init().median.as_secs_f64(),
            )
        });
        for (label, keel, qemu, ratio) in [
            Some((
                "to /init",
                self.keel_to_init(),
                self.qemu_to_init(),
                self.init_ratio(),
            )),
            guest,
            Some((
                "to ACPI power-off",
                self.keel_to_power_off(),
                self.qemu_to_power_off(),
                self.power_off_ratio(),
            )),
        ]
        .into_iter()
        .flatten()
        {
            t.push_str(&row(
                label,
                &secs(keel.median),
                &secs(qemu.median),
                Some(ratio),
            ));
            t.push_str(&format!(
                "    min-max: Keel {:.2}-{:.2} s, plain QEMU {:.2}-{:.2} s\n",
                keel.min.as_secs_f64(),
                keel.max.as_secs_f64(),
                qemu.min.as_secs_f64(),
                qemu.max.as_secs_f64()
            ));
        }
        let load = |l: Option<[f64; 3]>| {
            l.map_or("unknown".to_string(), |[a, b, c]| {
                format!("{a:.2} {b:.2} {c:.2}")
            })
        };
        t.push_str(&format!(
            "  host load average (1, 5, 15 min): {} before, {} after\n",
            load(self.load[0]),
            load(self.load[1])
        ));
        if let Some(n) = self.keel_exits {
            t.push_str(&row("VM exits", &n.to_string(), "", None));
        }
        if let Some(shim) = &self.shim {
            t.push_str(&shim.rows());
        }
        t
    }

    /// The JSON written to `target/bench/boot.json`: medians, and every run.
    pub fn json(&self) -> String {
        let runs = |v: &[BootTimes], f: fn(&BootTimes) -> Duration| runs_json(v.iter().map(f));
        let load = |l: Option<[f64; 3]>| {
            l.map_or("null".to_string(), |[a, b, c]| {
                format!("[{a:.2}, {b:.2}, {c:.2}]")
            })
        };
        format!(
            "{{\n  \"kernel\": \"{}\",\n  \"keel_to_init_s\": {:.3},\n  \"keel_guest_to_init_s\": {},\n  \
             \"qemu_to_init_s\": {:.3},\n  \
             \"init_ratio\": {:.3},\n  \"keel_to_power_off_s\": {:.3},\n  \"qemu_to_power_off_s\": {:.3},\n  \
             \"power_off_ratio\": {:.3},\n  \"keel_to_init_runs_s\": {},\n  \"keel_guest_to_init_runs_s\": {},\n  \
             \"qemu_to_init_runs_s\": {},\n  \
             \"keel_to_power_off_runs_s\": {},\n  \"qemu_to_power_off_runs_s\": {},\n  \
             \"load_average_before\": {},\n  \"load_average_after\": {},\n  \
             \"keel_exits\": {},\n  \"keel_exit_stats\": {},\n  \"shim\": {}\n}}\n",
            self.kernel.escape_default(),
            self.keel_to_init().median.as_secs_f64(),
            self.keel_guest_to_init()
                .map_or("null".to_string(), |g| format!("{:.3}", g.median.as_secs_f64())),
            self.qemu_to_init().median.as_secs_f64(),
            self.init_ratio(),
            self.keel_to_power_off().median.as_secs_f64(),
            self.qemu_to_power_off().median.as_secs_f64(),
            self.power_off_ratio(),
            runs(&self.keel, |t| t.to_init),
            runs_json(
                self.keel
                    .iter()
                    .filter_map(|t| from_vm_start(t.to_init, t.vm_start))
            ),
            runs(&self.qemu, |t| t.to_init),
            runs(&self.keel, |t| t.to_power_off),
            runs(&self.qemu, |t| t.to_power_off),
            load(self.load[0]),
            load(self.load[1]),
            self.keel_exits.map_or("null".to_string(), |n| n.to_string()),
            json_or_null(self.keel_exit_stats.as_ref()),
            self.shim.as_ref().map_or("null".to_string(), ShimBench::json),
        )
    }
}

/// The start of the line `keel-bzbench` prints from either entry
/// (firmware/src/bin/bzbench.rs): `... in real mode` from the real-mode
/// entry QEMU's linuxboot ROM takes, `... in 64-bit mode` from the 64-bit
/// entry Keel's shim takes.
pub const BZBENCH_LINE: &str = "keel-bzbench: entered in ";

/// When `keel-bzbench` said it was entered in `mode` (`real mode`,
/// `64-bit mode`), counted from the emulator's start.
pub fn bzbench_entered(o: &Outcome, mode: &str, run: &str) -> Result<Duration, String> {
    let i = o
        .lines
        .iter()
        .position(|l| l.contains(BZBENCH_LINE))
        .ok_or_else(|| format!("{run}: no '{BZBENCH_LINE}' line\n{}", o.report()))?;
    let line = &o.lines[i];
    if !line.trim_end().ends_with(&format!("{BZBENCH_LINE}{mode}")) {
        return Err(format!(
            "{run}: the kernel was not entered in {mode}: {line:?}\n{}",
            o.report()
        ));
    }
    o.line_times
        .get(i)
        .copied()
        .ok_or_else(|| format!("{run}: no time for line {i}"))
}

/// Under Keel: from Keel's VM start line to the kernel's 64-bit entry
/// (Keel's start of the VM, the shim, the first instructions).
pub fn keel_to_kernel(o: &Outcome, vm: &str) -> Result<Duration, String> {
    let start = keel_vm_start(o, vm)
        .ok_or_else(|| format!("{vm}: no VM start line from Keel\n{}", o.report()))?;
    let entered = bzbench_entered(o, "64-bit mode", vm)?;
    entered
        .checked_sub(start)
        .ok_or_else(|| format!("{vm}: the kernel's line came before Keel started the VM"))
}

/// The shim bench: per round, Keel's time from its VM start to the
/// kernel, plain QEMU's from its start to the kernel through SeaBIOS and
/// the linuxboot ROM (`-kernel`), and through the shim (`-bios`).
#[derive(Debug, Clone, PartialEq)]
pub struct ShimBench {
    pub kernel: String,
    pub keel: Vec<Duration>,
    pub qemu: Vec<Duration>,
    pub qemu_shim: Vec<Duration>,
    /// The host's load average before the first run and after the last.
    pub load: [Option<[f64; 3]>; 2],
}

impl ShimBench {
    /// Keel's median over plain QEMU's (SeaBIOS and linuxboot).
    pub fn ratio(&self) -> f64 {
        Spread::of(&self.keel).median.as_secs_f64() / Spread::of(&self.qemu).median.as_secs_f64()
    }

    /// Its rows of the table printed on stdout.
    pub fn rows(&self) -> String {
        let (keel, qemu, shim) = (
            Spread::of(&self.keel),
            Spread::of(&self.qemu),
            Spread::of(&self.qemu_shim),
        );
        let mut t = format!(
            "shim: {} from VM start to its first instruction, median of {} rounds\n",
            self.kernel,
            self.keel.len()
        );
        t.push_str(&row(
            "shim vs SeaBIOS + linuxboot",
            &ms(keel.median),
            &ms(qemu.median),
            Some(self.ratio()),
        ));
        t.push_str(&format!(
            "    min-max: Keel {}-{}, plain QEMU {}-{}\n",
            ms(keel.min),
            ms(keel.max),
            ms(qemu.min),
            ms(qemu.max)
        ));
        t.push_str(&row(
            "the shim as plain QEMU's -bios",
            "",
            &ms(shim.median),
            None,
        ));
        t.push_str(&format!("    min-max: {}-{}\n", ms(shim.min), ms(shim.max)));
        t.push_str(
            "    Keel: from its VM start line; plain QEMU: from the emulator's start, its own start-up included\n",
        );
        t
    }

    /// The JSON: medians and every run, in seconds.
    pub fn json(&self) -> String {
        let runs = |v: &[Duration]| {
            let s: Vec<String> = v
                .iter()
                .map(|d| format!("{:.3}", d.as_secs_f64()))
                .collect();
            format!("[{}]", s.join(", "))
        };
        let load = |l: Option<[f64; 3]>| {
            l.map_or("null".to_string(), |[a, b, c]| {
                format!("[{a:.2}, {b:.2}, {c:.2}]")
            })
        };
        let median = |v: &[Duration]| Spread::of(v).median.as_secs_f64();
        format!(
            "{{\"kernel\": \"{}\", \"keel_vm_start_to_kernel_s\": {:.3}, \
             \"qemu_start_to_kernel_s\": {:.3}, \"ratio\": {:.3}, \
             \"qemu_shim_start_to_kernel_s\": {:.3}, \"keel_runs_s\": {}, \"qemu_runs_s\": {}, \
             \"qemu_shim_runs_s\": {}, \"load_average_before\": {}, \"load_average_after\": {}}}",
            self.kernel.escape_default(),
            median(&self.keel),
            median(&self.qemu),
            self.ratio(),
            median(&self.qemu_shim),
            runs(&self.keel),
            runs(&self.qemu),
            runs(&self.qemu_shim),
            load(self.load[0]),
            load(self.load[1]),
        )
    }
}

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1000.0)
}

/// Width of a table's first column.
const LABEL: usize = 36;

/// One table row: a label, Keel's value, plain QEMU's, and Keel's time over
/// QEMU's.
fn row(label: &str, keel: &str, qemu: &str, ratio: Option<f64>) -> String {
    let ratio = ratio.map_or(String::new(), |r| format!("{r:.2}x"));
    format!("  {label:<LABEL$} {keel:>12} {qemu:>12} {ratio:>9}")
        .trim_end()
        .to_string()
        + "\n"
}

fn secs(d: Duration) -> String {
    format!("{:.2} s", d.as_secs_f64())
}

/// Every run's time, in seconds, as a JSON array.
fn runs_json(runs: impl Iterator<Item = Duration>) -> String {
    let s: Vec<String> = runs.map(|d| format!("{:.3}", d.as_secs_f64())).collect();
    format!("[{}]", s.join(", "))
}

/// The table on stdout: a header, then each section's rows.
pub fn table(sections: &[String]) -> String {
    let mut t = format!(
        "{:<w$} {:>12} {:>12} {:>9}\n",
        "QEMU TCG",
        "under Keel",
        "plain QEMU",
        "ratio",
        w = LABEL + 2
    );
    for s in sections {
        t.push_str(s);
    }
    t.push_str("ratio: Keel's time over plain QEMU's (for reads: time per MiB)\n");
    t.push_str(
        "Keel's runs: QEMU's -kernel loads Keel (a multiboot kernel) and -initrd its boot\n\
         modules (no GRUB), as plain QEMU's direct boots load Linux\n",
    );
    t
}

/// The line the IDE image's /init prints first.
pub const IDE_INIT_LINE: &str = "PASS ide-init";

/// How the guest's IDE driver moved the data.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transfer {
    /// Bus-master DMA (ata_piix's default).
    Dma,
    /// PIO: libata loaded with `dma=0`.
    Pio,
    /// Reads of the virtio-blk scratch disk through `virtio_blk`.
    VirtioRead,
    /// Writes to it.
    VirtioWrite,
    /// On Xen's machine: xen-blkfront's reads of the booted disk (`/dev/xvda`).
    XenRead,
    /// xen-blkfront's writes to the scratch disk (`/dev/xvdb`).
    XenWrite,
}

impl Transfer {
    /// The word of the `BENCH` line.
    pub fn word(self) -> &'static str {
        match self {
            Transfer::Dma => "dma",
            Transfer::Pio => "pio",
            Transfer::VirtioRead => "virtio-read",
            Transfer::VirtioWrite => "virtio-write",
            Transfer::XenRead => "xen-read",
            Transfer::XenWrite => "xen-write",
        }
    }

    /// Whether libata's `xfer_mode` of the disk (`XFER_MW_DMA_2`,
    /// `XFER_PIO_4`, ...), `virtio_blk` for the virtio disk, or
    /// `xen-blkfront` for a Xen vbd (its driver is xenbus's `vbd`), is a
    /// mode of this kind.
    pub fn matches(self, xfer_mode: &str) -> bool {
        match self {
            Transfer::Dma => xfer_mode.contains("DMA_"),
            Transfer::Pio => xfer_mode.starts_with("XFER_PIO_"),
            Transfer::VirtioRead | Transfer::VirtioWrite => xfer_mode == "virtio_blk",
            Transfer::XenRead | Transfer::XenWrite => xfer_mode == "xen-blkfront",
        }
    }

    /// The row label's name of the transfer.
    fn label(self) -> &'static str {
        match self {
            Transfer::Dma => "DMA read",
            Transfer::Pio => "PIO read",
            Transfer::VirtioRead => "virtio-blk read",
            Transfer::VirtioWrite => "virtio-blk write",
            Transfer::XenRead => "xen-blkfront read",
            Transfer::XenWrite => "xen-blkfront write",
        }
    }
}

/// One transfer of the IDE image's bench mode, from its line
/// `BENCH dma|pio|virtio-read|virtio-write|xen-read|xen-write N MiB T us
/// MODE` (T measured by the guest).
#[derive(Debug, Clone, PartialEq)]
pub struct IdeRead {
    pub transfer: Transfer,
    pub mib: u32,
    pub elapsed: Duration,
    pub xfer_mode: String,
}

impl IdeRead {
    /// The read a serial line reports, with or without Keel's `[vm] ` prefix.
    pub fn parse(line: &str) -> Option<IdeRead> {
        let (_, rest) = line.split_once("BENCH ")?;
        let w: Vec<&str> = rest.split_whitespace().collect();
        let [kind, mib, "MiB", us, "us", xfer] = w[..] else {
            return None;
        };
        let transfer = match kind {
            "dma" => Transfer::Dma,
            "pio" => Transfer::Pio,
            "virtio-read" => Transfer::VirtioRead,
            "virtio-write" => Transfer::VirtioWrite,
            "xen-read" => Transfer::XenRead,
            "xen-write" => Transfer::XenWrite,
            _ => return None,
        };
        Some(IdeRead {
            transfer,
            mib: mib.parse().ok()?,
            elapsed: Duration::from_micros(us.parse().ok()?),
            xfer_mode: xfer.to_string(),
        })
    }

    /// MiB per second.
    pub fn mib_per_s(&self) -> f64 {
        f64::from(self.mib) / self.elapsed.as_secs_f64()
    }
}

/// The `transfer` read of a run, checked: it read `mib` MiB, in a mode of
/// that kind. `run` names the run in errors.
pub fn ide_read(o: &Outcome, transfer: Transfer, mib: u32, run: &str) -> Result<IdeRead, String> {
    if let Some(l) = o.lines.iter().find(|l| l.contains("BENCH-FAIL")) {
        return Err(format!(
            "{run}: the guest's bench failed: {l}\n{}",
            o.report()
        ));
    }
    let r = o
        .lines
        .iter()
        .filter_map(|l| IdeRead::parse(l))
        .find(|r| r.transfer == transfer)
        .ok_or_else(|| {
            format!(
                "{run}: no 'BENCH {} ...' line\n{}",
                transfer.word(),
                o.report()
            )
        })?;
    if r.mib != mib {
        return Err(format!("{run}: read {} MiB, not {mib}", r.mib));
    }
    if !transfer.matches(&r.xfer_mode) {
        return Err(format!(
            "{run}: the {} read ran in {}",
            transfer.word(),
            r.xfer_mode
        ));
    }
    Ok(r)
}

/// Time until Keel started the VM `vm` (its `MiB of RAM at host` line):
/// GRUB, loading the ISO's modules, Keel's own start.
pub fn keel_vm_start(o: &Outcome, vm: &str) -> Option<Duration> {
    let prefix = format!("keel: VM '{vm}': ");
    let i = o
        .lines
        .iter()
        .position(|l| l.starts_with(&prefix) && l.contains(" MiB of RAM at host "))?;
    o.line_times.get(i).copied()
}

/// When the IDE image's /init printed its first line.
pub fn ide_to_init(o: &Outcome, run: &str) -> Result<Duration, String> {
    o.time_of(IDE_INIT_LINE)
        .ok_or_else(|| format!("{run}: no '{IDE_INIT_LINE}' line\n{}", o.report()))
}

/// One of Keel's boots from the IDE disk: from the emulator's start until
/// Keel started the VM, and until /init.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdeBoot {
    pub vm_start: Option<Duration>,
    pub to_init: Duration,
}

/// The plain QEMU run of three whose figure for `transfer` is the median
/// (by time), or `None` without runs.
pub fn median_read(reads: &[IdeRead]) -> Option<IdeRead> {
    let mut v = reads.to_vec();
    v.sort_by_key(|r| r.elapsed);
    v.get(v.len().saturating_sub(1) / 2).cloned()
}

/// The IDE bench: boot to /init from the disk, reads, exits per MiB.
#[derive(Debug, Clone, PartialEq)]
pub struct IdeBench {
    pub kernel: String,
    /// Keel's boots of the emulated machine (all of them boot alike up to
    /// /init; the transfers come after it).
    pub keel_boots: Vec<IdeBoot>,
    /// Plain QEMU's boots, interleaved with Keel's.
    pub qemu_to_init: Vec<Duration>,
    /// Keel's DMA and PIO reads (from the boots that read one way each).
    pub keel_dma: IdeRead,
    pub keel_pio: IdeRead,
    /// Plain QEMU's (each boot reads both ways; the median run's).
    pub qemu_dma: IdeRead,
    pub qemu_pio: IdeRead,
    /// Exits of two boots that read nothing.
    pub baseline_exits: [u64; 2],
    /// Exits of the boot that read `keel_dma.mib` with DMA, and of the one
    /// that read `keel_pio.mib` with PIO.
    pub dma_exits: u64,
    pub pio_exits: u64,
    /// Keel's exit statistics of the DMA and the PIO boot.
    pub dma_exit_stats: Option<ExitTable>,
    pub pio_exit_stats: Option<ExitTable>,
    /// The virtio-blk scratch disk's reads and writes.
    pub virtio_read: VirtioRun,
    pub virtio_write: VirtioRun,
    /// xen-blkfront's boots, on the VM with `xen_platform_pci = 1`.
    pub xen: XenBlk,
}

/// The mean of two baseline boots' exits.
fn baseline_mean(b: [u64; 2]) -> f64 {
    (b[0] as f64 + b[1] as f64) / 2.0
}

/// What two baseline boots differ by, per MiB of a transfer of `mib`: a
/// lower bound on the noise of exits per MiB, not a confidence interval.
fn baseline_spread_per_mib(b: [u64; 2], mib: u32) -> f64 {
    b[0].abs_diff(b[1]) as f64 / f64::from(mib)
}

/// One xen-blkfront transfer of the IDE bench: Keel's boot on the VM with
/// `xen_platform_pci = 1` that made it alone. Plain QEMU has no Xen PV
/// devices, so it has no QEMU side.
#[derive(Debug, Clone, PartialEq)]
pub struct XenBlkRun {
    pub keel: IdeRead,
    /// Exits of the boot, and its exit statistics.
    pub exits: u64,
    pub exit_stats: Option<ExitTable>,
}

/// xen-blkfront's boots of the IDE bench: two that move nothing (the Xen
/// machine boots differently from the emulated one: the PV clock and
/// timers, event channels, the xenstore, the unplug), the read of the
/// booted disk and the write to the scratch disk.
#[derive(Debug, Clone, PartialEq)]
pub struct XenBlk {
    pub baseline_exits: [u64; 2],
    /// The baselines' exit statistics.
    pub baseline_stats: [Option<ExitTable>; 2],
    pub read: XenBlkRun,
    pub write: XenBlkRun,
}

impl XenBlk {
    /// Exits per MiB of a transfer: (its boot's exits - the mean of the
    /// Xen baselines) / MiB.
    pub fn exits_per_mib(&self, run: &XenBlkRun) -> f64 {
        (run.exits as f64 - baseline_mean(self.baseline_exits)) / f64::from(run.keel.mib)
    }

    /// What the Xen baselines differ by, per MiB of a transfer of `mib`.
    pub fn noise_per_mib(&self, mib: u32) -> f64 {
        baseline_spread_per_mib(self.baseline_exits, mib)
    }

    /// The hypercall exits per MiB of a transfer, against the mean of the
    /// baselines' (their `hypercall` rows): xen-blkfront's notifications
    /// (EVTCHNOP_send) and the timers the transfer's time takes. The I/O
    /// rows of a Xen boot hardly vary, so this is the part of exits per MiB
    /// the vbd's ring drives, apart from its interrupts. `None` without the
    /// three tables.
    pub fn hypercalls_per_mib(&self, run: &XenBlkRun) -> Option<f64> {
        let count = |t: &Option<ExitTable>| {
            t.as_ref()
                .map(|t| t.row("hypercall").map_or(0, |r| r.count))
        };
        let [a, b] = &self.baseline_stats;
        let baseline = baseline_mean([count(a)?, count(b)?]);
        Some((count(&run.exit_stats)? as f64 - baseline) / f64::from(run.keel.mib))
    }
}

/// One virtio-blk transfer of the IDE bench: Keel's boot that made it
/// alone, and plain QEMU's (`-drive if=virtio`).
#[derive(Debug, Clone, PartialEq)]
pub struct VirtioRun {
    pub keel: IdeRead,
    pub qemu: IdeRead,
    /// Exits of Keel's boot, and its exit statistics.
    pub exits: u64,
    pub exit_stats: Option<ExitTable>,
}

impl VirtioRun {
    /// The exits that reached the virtio-blk function itself (its rows under
    /// `io` and `npf`: notifications and register accesses) per MiB: unlike
    /// the difference to the baselines, not lost in their noise, but
    /// without the interrupts' exits (EOIs, wake-ups).
    pub fn device_exits_per_mib(&self) -> Option<f64> {
        let t = self.exit_stats.as_ref()?;
        let n: u64 = t
            .rows
            .iter()
            .filter(|r| r.label.ends_with(": virtio-blk"))
            .map(|r| r.count)
            .sum();
        Some(n as f64 / f64::from(self.keel.mib))
    }
}

impl IdeBench {
    /// The mean of the baseline boots' exits.
    pub fn baseline(&self) -> f64 {
        baseline_mean(self.baseline_exits)
    }

    /// What the two baseline boots differ by, per MiB of a read of `mib`.
    pub fn noise_per_mib(&self, mib: u32) -> f64 {
        baseline_spread_per_mib(self.baseline_exits, mib)
    }

    /// Exits per MiB read with DMA.
    pub fn dma_exits_per_mib(&self) -> f64 {
        (self.dma_exits as f64 - self.baseline()) / f64::from(self.keel_dma.mib)
    }

    /// Exits per MiB read with PIO.
    pub fn pio_exits_per_mib(&self) -> f64 {
        (self.pio_exits as f64 - self.baseline()) / f64::from(self.keel_pio.mib)
    }

    /// Exits per MiB of a virtio-blk transfer.
    pub fn virtio_exits_per_mib(&self, run: &VirtioRun) -> f64 {
        (run.exits as f64 - self.baseline()) / f64::from(run.keel.mib)
    }

    /// Keel's virtio-blk read throughput over its IDE DMA and PIO reads'.
    pub fn virtio_over_dma(&self) -> f64 {
        self.virtio_read.keel.mib_per_s() / self.keel_dma.mib_per_s()
    }
    pub fn virtio_over_pio(&self) -> f64 {
        self.virtio_read.keel.mib_per_s() / self.keel_pio.mib_per_s()
    }

    /// Keel's xen-blkfront read throughput over its IDE DMA read's and its
    /// virtio-blk read's; its write throughput over virtio-blk's write.
    pub fn xen_read_over_dma(&self) -> f64 {
        self.xen.read.keel.mib_per_s() / self.keel_dma.mib_per_s()
    }
    pub fn xen_read_over_virtio(&self) -> f64 {
        self.xen.read.keel.mib_per_s() / self.virtio_read.keel.mib_per_s()
    }
    pub fn xen_write_over_virtio(&self) -> f64 {
        self.xen.write.keel.mib_per_s() / self.virtio_write.keel.mib_per_s()
    }

    pub fn keel_to_init(&self) -> Spread {
        Spread::of(
            &self
                .keel_boots
                .iter()
                .map(|b| b.to_init)
                .collect::<Vec<_>>(),
        )
    }

    /// From Keel's VM start to /init, if every boot logged its VM start.
    pub fn keel_guest_to_init(&self) -> Option<Spread> {
        vm_start_spread(
            self.keel_boots
                .iter()
                .map(|b| from_vm_start(b.to_init, b.vm_start)),
        )
    }

    pub fn qemu_to_init(&self) -> Spread {
        Spread::of(&self.qemu_to_init)
    }

    pub fn init_ratio(&self) -> f64 {
        self.keel_to_init().median.as_secs_f64() / self.qemu_to_init().median.as_secs_f64()
    }

    /// Keel's time per MiB over plain QEMU's.
    fn read_ratio(keel: &IdeRead, qemu: &IdeRead) -> f64 {
        qemu.mib_per_s() / keel.mib_per_s()
    }

    /// Its section of the table printed on stdout.
    pub fn rows(&self) -> String {
        let mut t = format!(
            "boot of {} from the IDE disk (SeaBIOS, SYSLINUX), median of {} and {} runs\n",
            self.kernel,
            self.keel_boots.len(),
            self.qemu_to_init.len()
        );
        let (keel, qemu) = (self.keel_to_init(), self.qemu_to_init());
        let spread = |label: &str, k: Spread| {
            format!(
                "    min-max: {label} {:.2}-{:.2} s, plain QEMU {:.2}-{:.2} s\n",
                k.min.as_secs_f64(),
                k.max.as_secs_f64(),
                qemu.min.as_secs_f64(),
                qemu.max.as_secs_f64()
            )
        };
        t.push_str(&row(
            "to /init",
            &secs(keel.median),
            &secs(qemu.median),
            Some(self.init_ratio()),
        ));
        t.push_str(&spread("Keel", keel));
        if let Some(guest) = self.keel_guest_to_init() {
            t.push_str(&row(
                "to /init from Keel's VM start",
                &secs(guest.median),
                &secs(qemu.median),
                Some(guest.median.as_secs_f64() / qemu.median.as_secs_f64()),
            ));
            t.push_str(&spread("Keel from VM start", guest));
        }
        for (keel, qemu) in [
            (&self.keel_dma, &self.qemu_dma),
            (&self.keel_pio, &self.qemu_pio),
            (&self.virtio_read.keel, &self.virtio_read.qemu),
            (&self.virtio_write.keel, &self.virtio_write.qemu),
        ] {
            let mode = keel
                .xfer_mode
                .strip_prefix("XFER_")
                .unwrap_or(&keel.xfer_mode);
            t.push_str(&row(
                &format!("{}, {} MiB ({mode})", keel.transfer.label(), keel.mib),
                &format!("{:.1} MiB/s", keel.mib_per_s()),
                &format!("{:.1} MiB/s", qemu.mib_per_s()),
                Some(Self::read_ratio(keel, qemu)),
            ));
        }
        for keel in [&self.xen.read.keel, &self.xen.write.keel] {
            t.push_str(&row(
                &format!("{}, {} MiB", keel.transfer.label(), keel.mib),
                &format!("{:.1} MiB/s", keel.mib_per_s()),
                "n/a",
                None,
            ));
        }
        t.push_str(&row(
            "virtio-blk read over IDE DMA, PIO (Keel)",
            &format!(
                "{:.1}x, {:.1}x",
                self.virtio_over_dma(),
                self.virtio_over_pio()
            ),
            "",
            None,
        ));
        t.push_str(&row(
            "xen-blkfront read over DMA, virtio-blk",
            &format!(
                "{:.2}x, {:.2}x",
                self.xen_read_over_dma(),
                self.xen_read_over_virtio()
            ),
            "",
            None,
        ));
        t.push_str(&row(
            "xen-blkfront write over virtio-blk",
            &format!("{:.2}x", self.xen_write_over_virtio()),
            "",
            None,
        ));
        for (what, per_mib, mib) in [
            ("DMA", self.dma_exits_per_mib(), self.keel_dma.mib),
            ("PIO", self.pio_exits_per_mib(), self.keel_pio.mib),
            (
                "virtio-blk read",
                self.virtio_exits_per_mib(&self.virtio_read),
                self.virtio_read.keel.mib,
            ),
            (
                "virtio-blk write",
                self.virtio_exits_per_mib(&self.virtio_write),
                self.virtio_write.keel.mib,
            ),
        ] {
            t.push_str(&row(
                &format!("VM exits per MiB, {what}"),
                &format!("{per_mib:.1}"),
                "",
                None,
            ));
            t.push_str(&format!(
                "    (the baselines differ by {:.1} per MiB of this read: a lower bound\n     \
                 on the noise; runs differ more)\n",
                self.noise_per_mib(mib),
            ));
        }
        for (what, run) in [("read", &self.virtio_read), ("write", &self.virtio_write)] {
            if let Some(n) = run.device_exits_per_mib() {
                t.push_str(&row(
                    &format!("  of them at virtio-blk itself, {what}"),
                    &format!("{n:.1}"),
                    "",
                    None,
                ));
            }
        }
        for run in [&self.xen.read, &self.xen.write] {
            t.push_str(&row(
                &format!("VM exits per MiB, {}", run.keel.transfer.label()),
                &format!("{:.1}", self.xen.exits_per_mib(run)),
                "",
                None,
            ));
            t.push_str(&format!(
                "    (the Xen baselines differ by {:.1} per MiB of this transfer)\n",
                self.xen.noise_per_mib(run.keel.mib),
            ));
            if let Some(n) = self.xen.hypercalls_per_mib(run) {
                t.push_str(&row("  of them hypercalls", &format!("{n:.1}"), "", None));
            }
        }
        t.push_str(&format!(
            "  exits per MiB: (exits of a boot that read N MiB - the mean of two boots\n  \
             that read nothing, {} and {}) / N\n  \
             transfers: 1 MiB O_DIRECT reads of /dev/sda and reads and writes of\n  \
             the virtio-blk disk /dev/vda, timed by the guest's clock\n  \
             xen-blkfront: the same image on a VM with xen_platform_pci = 1; Linux\n  \
             unplugs the IDE disks and reads /dev/xvda (the booted disk) and writes\n  \
             /dev/xvdb (a scratch disk on the IDE primary slave) the same way; its\n  \
             baselines are two such boots that move nothing, {} and {}; plain QEMU\n  \
             has no Xen PV devices (n/a)\n",
            self.baseline_exits[0],
            self.baseline_exits[1],
            self.xen.baseline_exits[0],
            self.xen.baseline_exits[1],
        ));
        t
    }

    /// The JSON written to `target/bench/ide.json`.
    pub fn json(&self) -> String {
        let read = |k: &IdeRead,
                    q: Option<&IdeRead>,
                    exits: u64,
                    per_mib: f64,
                    spread_per_mib: f64,
                    stats: &Option<ExitTable>| {
            let qemu = |v: Option<f64>, digits: usize| {
                v.map_or("null".to_string(), |v| format!("{v:.digits$}"))
            };
            format!(
                "{{\n    \"mib\": {},\n    \"xfer_mode\": \"{}\",\n    \"keel_s\": {:.6},\n    \
                 \"keel_mib_per_s\": {:.3},\n    \"qemu_s\": {},\n    \"qemu_mib_per_s\": {},\n    \
                 \"time_ratio\": {},\n    \"keel_exits\": {exits},\n    \
                 \"keel_exits_per_mib\": {per_mib:.3},\n    \
                 \"keel_baseline_spread_per_mib\": {spread_per_mib:.3},\n    \
                 \"keel_exit_stats\": {}\n  }}",
                k.mib,
                k.xfer_mode.escape_default(),
                k.elapsed.as_secs_f64(),
                k.mib_per_s(),
                qemu(q.map(|q| q.elapsed.as_secs_f64()), 6),
                qemu(q.map(IdeRead::mib_per_s), 3),
                qemu(q.map(|q| Self::read_ratio(k, q)), 3),
                json_or_null(stats.as_ref()),
            )
        };
        let xen = |run: &XenBlkRun| {
            read(
                &run.keel,
                None,
                run.exits,
                self.xen.exits_per_mib(run),
                self.xen.noise_per_mib(run.keel.mib),
                &run.exit_stats,
            )
        };
        let [xen_base_1, xen_base_2] = &self.xen.baseline_stats;
        format!(
            "{{\n  \"kernel\": \"{}\",\n  \"keel_guest_to_init_s\": {},\n  \"keel_to_init_s\": {:.3},\n  \
             \"qemu_to_init_s\": {:.3},\n  \"init_ratio\": {:.3},\n  \
             \"keel_to_init_runs_s\": {},\n  \"keel_guest_to_init_runs_s\": {},\n  \
             \"qemu_to_init_runs_s\": {},\n  \
             \"keel_baseline_exits\": [{}, {}],\n  \"dma\": {},\n  \"pio\": {},\n  \
             \"virtio_read\": {},\n  \"virtio_write\": {},\n  \
             \"virtio_read_over_dma\": {:.3},\n  \"virtio_read_over_pio\": {:.3},\n  \
             \"virtio_read_device_exits_per_mib\": {},\n  \
             \"virtio_write_device_exits_per_mib\": {},\n  \
             \"xen_baseline_exits\": [{}, {}],\n  \"xen_baseline_exit_stats\": [{}, {}],\n  \
             \"xen_read\": {},\n  \"xen_write\": {},\n  \
             \"xen_read_over_dma\": {:.3},\n  \"xen_read_over_virtio\": {:.3},\n  \
             \"xen_write_over_virtio\": {:.3},\n  \
             \"xen_read_hypercalls_per_mib\": {},\n  \"xen_write_hypercalls_per_mib\": {}\n}}\n",
            self.kernel.escape_default(),
            self.keel_guest_to_init()
                .map_or("null".to_string(), |s| format!("{:.3}", s.median.as_secs_f64())),
            self.keel_to_init().median.as_secs_f64(),
            self.qemu_to_init().median.as_secs_f64(),
            self.init_ratio(),
            runs_json(self.keel_boots.iter().map(|b| b.to_init)),
            runs_json(
                self.keel_boots
                    .iter()
                    .filter_map(|b| from_vm_start(b.to_init, b.vm_start))
            ),
            runs_json(self.qemu_to_init.iter().copied()),
            self.baseline_exits[0],
            self.baseline_exits[1],
            read(
                &self.keel_dma,
                Some(&self.qemu_dma),
                self.dma_exits,
                self.dma_exits_per_mib(),
                self.noise_per_mib(self.keel_dma.mib),
                &self.dma_exit_stats
            ),
            read(
                &self.keel_pio,
                Some(&self.qemu_pio),
                self.pio_exits,
                self.pio_exits_per_mib(),
                self.noise_per_mib(self.keel_pio.mib),
                &self.pio_exit_stats
            ),
            read(
                &self.virtio_read.keel,
                Some(&self.virtio_read.qemu),
                self.virtio_read.exits,
                self.virtio_exits_per_mib(&self.virtio_read),
                self.noise_per_mib(self.virtio_read.keel.mib),
                &self.virtio_read.exit_stats
            ),
            read(
                &self.virtio_write.keel,
                Some(&self.virtio_write.qemu),
                self.virtio_write.exits,
                self.virtio_exits_per_mib(&self.virtio_write),
                self.noise_per_mib(self.virtio_write.keel.mib),
                &self.virtio_write.exit_stats
            ),
            self.virtio_over_dma(),
            self.virtio_over_pio(),
            per_mib_json(self.virtio_read.device_exits_per_mib()),
            per_mib_json(self.virtio_write.device_exits_per_mib()),
            self.xen.baseline_exits[0],
            self.xen.baseline_exits[1],
            json_or_null(xen_base_1.as_ref()),
            json_or_null(xen_base_2.as_ref()),
            xen(&self.xen.read),
            xen(&self.xen.write),
            self.xen_read_over_dma(),
            self.xen_read_over_virtio(),
            self.xen_write_over_virtio(),
            per_mib_json(self.xen.hypercalls_per_mib(&self.xen.read)),
            per_mib_json(self.xen.hypercalls_per_mib(&self.xen.write)),
        )
    }
}

/// One download of the network bench, from its line
/// `BENCH net N bytes T us` (T measured by the guest around busybox `wget`).
#[derive(Debug, Clone, PartialEq)]
pub struct NetRead {
    pub bytes: u64,
    pub elapsed: Duration,
}

impl NetRead {
    /// The download a serial line reports, with or without Keel's `[vm] ` prefix.
    pub fn parse(line: &str) -> Option<NetRead> {
        let (_, rest) = line.split_once("BENCH net ")?;
        let w: Vec<&str> = rest.split_whitespace().collect();
        let [bytes, "bytes", us, "us"] = w[..] else {
            return None;
        };
        Some(NetRead {
            bytes: bytes.parse().ok()?,
            elapsed: Duration::from_micros(us.parse().ok()?),
        })
    }

    pub fn mib(&self) -> f64 {
        self.bytes as f64 / f64::from(1u32 << 20)
    }

    /// MiB per second.
    pub fn mib_per_s(&self) -> f64 {
        self.mib() / self.elapsed.as_secs_f64()
    }
}

/// The download of a run of the network bench, checked: `bytes` in all.
/// `run` names the run in errors.
pub fn net_read(o: &Outcome, bytes: u64, run: &str) -> Result<NetRead, String> {
    if let Some(l) = o.lines.iter().find(|l| l.contains("BENCH-FAIL")) {
        return Err(format!(
            "{run}: the guest's bench failed: {l}\n{}",
            o.report()
        ));
    }
    let r = o
        .lines
        .iter()
        .find_map(|l| NetRead::parse(l))
        .ok_or_else(|| format!("{run}: no 'BENCH net ...' line\n{}", o.report()))?;
    if r.bytes != bytes {
        return Err(format!("{run}: downloaded {} bytes, not {bytes}", r.bytes));
    }
    Ok(r)
}

/// One NIC model's two Keel runs of the network bench: the download that
/// is timed, and a small one whose exits are the baseline.
#[derive(Debug, Clone, PartialEq)]
pub struct NicRun {
    /// `e1000`, `virtio-net` or `xen-netfront`.
    pub model: String,
    pub keel: NetRead,
    pub small: NetRead,
    pub small_exits: u64,
    pub exits: u64,
    pub exit_stats: Option<ExitTable>,
}

impl NicRun {
    /// VM exits per MiB: the two Keel boots differ only in what they download.
    pub fn exits_per_mib(&self) -> f64 {
        (self.exits as f64 - self.small_exits as f64) / (self.keel.mib() - self.small.mib())
    }

    fn json(&self) -> String {
        format!(
            "{{ \"model\": \"{}\", \"bytes\": {}, \"keel_s\": {:.6}, \"keel_mib_per_s\": {:.3}, \
             \"small_bytes\": {}, \"keel_small_exits\": {}, \"keel_exits\": {}, \
             \"keel_exits_per_mib\": {:.3}, \"keel_exit_stats\": {} }}",
            self.model,
            self.keel.bytes,
            self.keel.elapsed.as_secs_f64(),
            self.keel.mib_per_s(),
            self.small.bytes,
            self.small_exits,
            self.exits,
            self.exits_per_mib(),
            json_or_null(self.exit_stats.as_ref()),
        )
    }
}

/// The network bench: a TCP download over HTTP (Debian's drivers, busybox
/// `wget`) under Keel through the e1000, through virtio-net and through
/// xen-netfront (a VM with `xen_platform_pci = 1`: Linux unplugs the e1000
/// and netback serves its switch port), and on plain QEMU with QEMU's
/// e1000 and with QEMU's virtio-net, all on QEMU's restricted user network
/// from the same loopback server. Plain QEMU has no Xen PV devices: no
/// QEMU side for xen-netfront.
#[derive(Debug, Clone, PartialEq)]
pub struct NetBench {
    pub kernel: String,
    /// Plain QEMU's e1000 (`-nic user,model=e1000`).
    pub qemu: NetRead,
    /// Plain QEMU's virtio-net (`-nic user,model=virtio-net-pci`).
    pub qemu_virtio: NetRead,
    pub e1000: NicRun,
    pub virtio: NicRun,
    pub xen: NicRun,
}

impl NetBench {
    /// Keel's e1000 time per MiB over plain QEMU's.
    pub fn ratio(&self) -> f64 {
        self.qemu.mib_per_s() / self.e1000.keel.mib_per_s()
    }

    /// Keel's virtio-net time per MiB over plain QEMU's virtio-net.
    pub fn virtio_ratio(&self) -> f64 {
        self.qemu_virtio.mib_per_s() / self.virtio.keel.mib_per_s()
    }

    /// virtio-net's throughput over the e1000's, both under Keel.
    pub fn virtio_speedup(&self) -> f64 {
        self.virtio.keel.mib_per_s() / self.e1000.keel.mib_per_s()
    }

    /// xen-netfront's throughput over the e1000's, both under Keel.
    pub fn xen_speedup(&self) -> f64 {
        self.xen.keel.mib_per_s() / self.e1000.keel.mib_per_s()
    }

    /// Its section of the table printed on stdout.
    pub fn rows(&self) -> String {
        let mut t = format!(
            "network: HTTP download through the e1000, virtio-net and xen-netfront\n  \
             ({}, busybox wget)\n",
            self.kernel
        );
        t.push_str(&row(
            &format!("TCP download, {:.0} MiB, e1000", self.e1000.keel.mib()),
            &format!("{:.1} MiB/s", self.e1000.keel.mib_per_s()),
            &format!("{:.1} MiB/s", self.qemu.mib_per_s()),
            Some(self.ratio()),
        ));
        t.push_str(&row(
            &format!(
                "TCP download, {:.0} MiB, virtio-net",
                self.virtio.keel.mib()
            ),
            &format!("{:.1} MiB/s", self.virtio.keel.mib_per_s()),
            &format!("{:.1} MiB/s", self.qemu_virtio.mib_per_s()),
            Some(self.virtio_ratio()),
        ));
        t.push_str(&row(
            &format!("TCP download, {:.0} MiB, xen-netfront", self.xen.keel.mib()),
            &format!("{:.1} MiB/s", self.xen.keel.mib_per_s()),
            "n/a",
            None,
        ));
        for r in [&self.e1000, &self.virtio, &self.xen] {
            t.push_str(&row(
                &format!("VM exits per MiB received, {}", r.model),
                &format!("{:.1}", r.exits_per_mib()),
                "",
                None,
            ));
        }
        t.push_str(&format!(
            "  virtio-net / e1000 throughput under Keel: {:.2}x\n  \
             xen-netfront / e1000 throughput under Keel: {:.2}x\n  \
             exits per MiB: (exits of the boot that downloaded {:.0} MiB - exits of one\n  \
             that downloaded {:.0} MiB: e1000 {} and {}, virtio-net {} and {},\n  \
             xen-netfront {} and {}) / the difference\n  \
             downloads: timed by the guest's clock around wget; QEMU's user network, restrict=on;\n  \
             plain QEMU's e1000 and virtio-net-pci for the e1000 and virtio-net rows\n  \
             xen-netfront: a VM with xen_platform_pci = 1 whose e1000 Linux unplugs;\n  \
             plain QEMU has no Xen PV devices (n/a)\n",
            self.virtio_speedup(),
            self.xen_speedup(),
            self.e1000.keel.mib(),
            self.e1000.small.mib(),
            self.e1000.exits,
            self.e1000.small_exits,
            self.virtio.exits,
            self.virtio.small_exits,
            self.xen.exits,
            self.xen.small_exits,
        ));
        t
    }

    /// The JSON written to `target/bench/net.json`.
    pub fn json(&self) -> String {
        format!(
            "{{\n  \"kernel\": \"{}\",\n  \"qemu_e1000_s\": {:.6},\n  \"qemu_e1000_mib_per_s\": {:.3},\n  \
             \"e1000_time_ratio\": {:.3},\n  \"qemu_virtio_net_s\": {:.6},\n  \
             \"qemu_virtio_net_mib_per_s\": {:.3},\n  \"virtio_net_time_ratio\": {:.3},\n  \
             \"virtio_over_e1000\": {:.3},\n  \
             \"xen_over_e1000\": {:.3},\n  \
             \"e1000\": {},\n  \"virtio_net\": {},\n  \"xen_netfront\": {}\n}}\n",
            self.kernel.escape_default(),
            self.qemu.elapsed.as_secs_f64(),
            self.qemu.mib_per_s(),
            self.ratio(),
            self.qemu_virtio.elapsed.as_secs_f64(),
            self.qemu_virtio.mib_per_s(),
            self.virtio_ratio(),
            self.virtio_speedup(),
            self.xen_speedup(),
            self.e1000.json(),
            self.virtio.json(),
            self.xen.json(),
        )
    }
}

/// The guest's NIC of a `keel_nic=` word (`e1000`, `virtio-net`, `xen`),
/// as the bench's rows name it.
pub fn nic_name(nic: &str) -> &str {
    if nic == "xen" {
        "xen-netfront"
    } else {
        nic
    }
}

/// The VM config of one Keel run of the network bench: like
/// tests/vms/debian-net.cfg with a vif of model `nic`, its command line the
/// bench mode downloading `bytes` bytes through it. `nic` is `keel_nic=`'s
/// word; for `xen` the VM is tests/vms/debian-xen-net.cfg's: an e1000 vif
/// and `xen_platform_pci = 1`, so Linux unplugs the e1000 and xen-netfront
/// takes its switch port.
pub fn net_bench_config(name: &str, memory_mib: u32, bytes: usize, nic: &str) -> String {
    let (model, xen) = if nic == "xen" {
        ("e1000", "xen_platform_pci = 1\n")
    } else {
        (nic, "")
    };
    format!(
        "# Generated by cargo xtask bench: Debian downloads {bytes} bytes over HTTP\n\
         # through the {}, times it, then powers off.\n\
         name = \"{name}\"\n\
         memory = {memory_mib}\n\
         vcpus = 1\n\
         kernel = \"{}\"\n\
         ramdisk = \"{}\"\n\
         cmdline = \"{}\"\n\
         {xen}\
         vif = [ 'model={model},bridge=virtio0' ]\n",
        nic_name(nic),
        crate::guest_assets::DEBIAN_LINUX,
        crate::net_assets::DEBIAN_NET_INITRAMFS,
        crate::net_assets::bench_cmdline(bytes, nic)
    )
}

/// One batch of the exitbench guest (crates/test-guests/src/bin/exitbench.rs),
/// from its line `BENCH exit=<kind> n=<N> cycles=<C>`: N exits of one kind
/// back to back, C guest TSC cycles for all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExitBatch {
    pub kind: String,
    pub n: u64,
    pub cycles: u64,
}

impl ExitBatch {
    /// The batch a serial line reports, with or without Keel's `[vm] ` prefix.
    pub fn parse(line: &str) -> Option<ExitBatch> {
        let (_, rest) = line.split_once("BENCH ")?;
        let w: Vec<&str> = rest.split_whitespace().collect();
        let [kind, n, cycles] = w[..] else {
            return None;
        };
        let kind = kind.strip_prefix("exit=").filter(|k| !k.is_empty())?;
        Some(ExitBatch {
            kind: kind.to_string(),
            n: n.strip_prefix("n=")?.parse().ok()?,
            cycles: cycles.strip_prefix("cycles=")?.parse().ok()?,
        })
    }

    /// Cycles per exit, the whole round trip as the guest sees it; `None`
    /// for an empty batch.
    pub fn per_exit(&self) -> Option<f64> {
        (self.n > 0).then(|| self.cycles as f64 / self.n as f64)
    }
}

/// The exitbench guest's kinds, in its order, each with the row of Keel's
/// exit statistics that holds Keel's side of it. Those rows count every
/// exit of the reason or device, not only the batch's (the guest's set-up
/// writes to the local APIC; the HLT batch's timer is the PIT, its EOI the
/// 8259A's), so compare the batch's count with the row's.
pub const EXIT_KINDS: &[(&str, &str)] = &[
    ("out_unclaimed", "io: (no device)"),
    ("in_pm_timer", "io: ACPI PM timer"),
    ("cpuid", "cpuid"),
    ("rdmsr", "rdmsr"),
    ("mmio_hpet_read", "npf: HPET"),
    ("mmio_lapic_eoi", "npf: local APIC"),
    ("hlt_timer", "hlt"),
];

/// Keel's share of a round trip: its mean cycles per exit (exit to next
/// entry) over the guest-measured cycles per exit. Both are TSC cycles at
/// the same rate (SVM and VMX only offset the guest's TSC). `None` without
/// a round trip.
pub fn keel_share(round_trip: f64, keel_mean: u64) -> Option<f64> {
    (round_trip > 0.0).then(|| keel_mean as f64 / round_trip)
}

/// One kind of the exit bench: the guest's batch and Keel's row for it.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitKindCost {
    pub batch: ExitBatch,
    /// The label of Keel's row ([`EXIT_KINDS`]).
    pub row: &'static str,
    pub keel: Option<ExitRow>,
}

impl ExitKindCost {
    pub fn share(&self) -> Option<f64> {
        keel_share(self.batch.per_exit()?, self.keel.as_ref()?.keel_mean)
    }
}

/// The exit bench: one run of the exitbench guest under Keel.
#[derive(Debug, Clone, PartialEq)]
pub struct ExitBench {
    pub kinds: Vec<ExitKindCost>,
    pub table: Option<ExitTable>,
    /// The host's load average before and after the run.
    pub load: [Option<[f64; 3]>; 2],
}

impl ExitBench {
    /// The bench of Keel's run `o` of VM `vm`: every kind of [`EXIT_KINDS`]
    /// must have its batch, of at least one exit.
    pub fn parse(o: &Outcome, vm: &str) -> Result<ExitBench, String> {
        let batches: Vec<ExitBatch> = o.lines.iter().filter_map(|l| ExitBatch::parse(l)).collect();
        let table = ExitTable::parse(o, vm);
        let mut kinds = Vec::new();
        for &(kind, row) in EXIT_KINDS {
            let batch = batches
                .iter()
                .find(|b| b.kind == kind && b.n > 0)
                .ok_or_else(|| {
                    format!("exitbench: no 'BENCH exit={kind} ...' line\n{}", o.report())
                })?;
            kinds.push(ExitKindCost {
                batch: batch.clone(),
                row,
                keel: table.as_ref().and_then(|t| t.row(row)).cloned(),
            });
        }
        Ok(ExitBench {
            kinds,
            table,
            load: [None, None],
        })
    }

    /// Its section of the table printed on stdout (its own columns).
    pub fn rows(&self) -> String {
        let mut t =
            String::from("exit round trips (exitbench guest under Keel; TSC cycles per exit)\n");
        t.push_str(&format!(
            "  {:<16} {:>6} {:>12} {:<18} {:>8} {:>10} {:>7}\n",
            "kind", "n", "round trip", "Keel's row", "count", "Keel mean", "share"
        ));
        for k in &self.kinds {
            let trip = k
                .batch
                .per_exit()
                .map_or(String::new(), |c| format!("{c:.0}"));
            let (count, mean) = k.keel.as_ref().map_or((String::new(), String::new()), |r| {
                (r.count.to_string(), r.keel_mean.to_string())
            });
            let share = k
                .share()
                .map_or(String::new(), |s| format!("{:.0}%", s * 100.0));
            t.push_str(
                format!(
                    "  {:<16} {:>6} {:>12} {:<18} {:>8} {:>10} {:>7}",
                    k.batch.kind, k.batch.n, trip, k.row, count, mean, share
                )
                .trim_end(),
            );
            t.push('\n');
        }
        t.push_str(&format!(
            "  round trip: the guest's RDTSC over the batch / n; Keel mean: exit to next\n  \
             entry from Keel's statistics (every exit of that row); share: Keel mean over\n  \
             round trip; hlt_timer is a whole wake-up (PIT programming, sleep, interrupt, EOI)\n  \
             host load average (1, 5, 15 min): {} before, {} after\n",
            load_text(self.load[0]),
            load_text(self.load[1])
        ));
        t
    }

    /// The JSON written to `target/bench/exits.json`.
    pub fn json(&self) -> String {
        let kinds: Vec<String> = self
            .kinds
            .iter()
            .map(|k| {
                let opt = |v: Option<f64>, digits: usize| {
                    v.map_or("null".to_string(), |v| format!("{v:.digits$}"))
                };
                format!(
                    "{{\"kind\": \"{}\", \"n\": {}, \"guest_cycles\": {}, \
                     \"round_trip_cycles\": {}, \"keel_row\": \"{}\", \"keel_count\": {}, \
                     \"keel_mean_cycles\": {}, \"keel_share\": {}}}",
                    k.batch.kind.escape_default(),
                    k.batch.n,
                    k.batch.cycles,
                    opt(k.batch.per_exit(), 1),
                    k.row.escape_default(),
                    k.keel
                        .as_ref()
                        .map_or("null".to_string(), |r| r.count.to_string()),
                    k.keel
                        .as_ref()
                        .map_or("null".to_string(), |r| r.keel_mean.to_string()),
                    opt(k.share(), 4),
                )
            })
            .collect();
        format!(
            "{{\n  \"kinds\": [\n    {}\n  ],\n  \"load_average_before\": {},\n  \
             \"load_average_after\": {},\n  \"keel_exit_stats\": {}\n}}\n",
            kinds.join(",\n    "),
            load_json(self.load[0]),
            load_json(self.load[1]),
            json_or_null(self.table.as_ref()),
        )
    }
}

fn load_text(l: Option<[f64; 3]>) -> String {
    l.map_or("unknown".to_string(), |[a, b, c]| {
        format!("{a:.2} {b:.2} {c:.2}")
    })
}

fn load_json(l: Option<[f64; 3]>) -> String {
    l.map_or("null".to_string(), |[a, b, c]| {
        format!("[{a:.2}, {b:.2}, {c:.2}]")
    })
}

/// The VM config of one Keel run of the IDE bench: like
/// tests/vms/debian-ide.cfg, its disk the bench copy `image` (next to the
/// config), no CD-ROM, and the scratch disk `scratch`: on the emulated
/// machine a virtio-blk disk (every emulated run has it, so the baselines
/// boot the same machine), on Xen's (`xen_platform_pci = 1`) the IDE
/// primary slave, which Linux reaches as the vbd `/dev/xvdb`.
pub fn ide_bench_config(
    name: &str,
    image: &str,
    scratch: &str,
    memory_mib: u32,
    boot: BenchBoot,
) -> String {
    let (what, machine) = match boot {
        BenchBoot::Emulated(BenchMib {
            dma,
            pio,
            virtio_read,
            virtio_write,
        }) => (
            format!(
                "# /init reads {dma} MiB with DMA and {pio} MiB with PIO, reads {virtio_read} MiB\n\
                 # from the virtio-blk disk and writes {virtio_write} MiB to it, then powers off.\n"
            ),
            format!(
                "disk = [ '{image},raw,hda,rw,volatile',\n         \
                          '{scratch},raw,xvda,rw,specification=virtio,volatile' ]\n"
            ),
        ),
        BenchBoot::Xen { read, write } => (
            format!(
                "# Linux unplugs the IDE disks; /init reads {read} MiB of the booted disk and\n\
                 # writes {write} MiB to the scratch disk through xen-blkfront, then powers off.\n"
            ),
            format!(
                "xen_platform_pci = 1\n\
                 disk = [ '{image},raw,hda,rw,volatile',\n         \
                          '{scratch},raw,hdb,rw,volatile' ]\n"
            ),
        ),
    };
    format!(
        "# Generated by cargo xtask bench: SeaBIOS boots Debian from the IDE disk;\n\
         {what}\
         # The disks stay in Keel's RAM (volatile), as in the tests' debian-ide.\n\
         name = \"{name}\"\n\
         memory = {memory_mib}\n\
         vcpus = 1\n\
         firmware = \"seabios\"\n\
         {machine}"
    )
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
        vm_start: keel_vm_start(o, vm),
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
        vm_start: None,
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
    run_plain(
        plain_qemu_kernel(kernel, initrd, cmdline, memory_mib, 1),
        timeout,
    )
}

/// The plain QEMU command line booting `kernel` with `initrd` and
/// `cmdline` (`-kernel`) on a machine of `cpus` CPUs.
pub fn plain_qemu_kernel(
    kernel: &Path,
    initrd: Option<&Path>,
    cmdline: &str,
    memory_mib: u32,
    cpus: u32,
) -> Command {
    let mut qemu = plain_qemu_smp(memory_mib, cpus);
    qemu.arg("-kernel").arg(kernel).args(["-append", cmdline]);
    if let Some(i) = initrd {
        qemu.arg("-initrd").arg(i);
    }
    qemu
}

/// Boots `kernel` on plain QEMU TCG (`-kernel`: SeaBIOS runs QEMU's
/// linuxboot ROM, which enters the kernel's real-mode entry) with the
/// debug-exit port, for the shim bench.
pub fn plain_qemu_bzbench(kernel: &Path, memory_mib: u32) -> Command {
    let mut qemu = plain_qemu(memory_mib);
    qemu.arg("-kernel")
        .arg(kernel)
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    qemu
}

/// Plain QEMU TCG with Keel's shim as its firmware (`-bios`), `fw_cfg`
/// the shim's files ([`crate::guest_assets::shim_fw_cfg_args`]), and the
/// debug-exit port, for the shim bench.
pub fn plain_qemu_shim(shim: &Path, fw_cfg: &[std::ffi::OsString], memory_mib: u32) -> Command {
    let mut qemu = plain_qemu(memory_mib);
    qemu.arg("-bios")
        .arg(shim)
        .args(fw_cfg)
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"]);
    qemu
}

/// Boots the raw disk `image` on plain QEMU TCG as its IDE primary master,
/// with QEMU's own SeaBIOS, and `scratch` as QEMU's own virtio-blk disk.
pub fn run_plain_qemu_disk(
    image: &Path,
    scratch: &Path,
    memory_mib: u32,
    timeout: Duration,
) -> Result<Outcome, String> {
    run_plain(plain_qemu_disk(image, scratch, memory_mib), timeout)
}

/// The plain QEMU command line for [`run_plain_qemu_disk`].
pub fn plain_qemu_disk(image: &Path, scratch: &Path, memory_mib: u32) -> Command {
    let mut qemu = plain_qemu(memory_mib);
    // QEMU option values double their commas.
    let q = |p: &Path| p.to_string_lossy().replace(',', ",,");
    qemu.arg("-drive")
        .arg(format!("file={},format=raw,if=ide", q(image)))
        .arg("-drive")
        .arg(format!("file={},format=raw,if=virtio", q(scratch)));
    qemu
}

/// Boots `kernel` with `initrd` and `cmdline` on plain QEMU TCG with QEMU's
/// own NIC `model` (`e1000`, `virtio-net-pci`) on the restricted user
/// network `net` (`-nic user,model=MODEL`).
pub fn plain_qemu_net(
    kernel: &Path,
    initrd: &Path,
    cmdline: &str,
    memory_mib: u32,
    model: &str,
    net: &HostNet,
) -> Command {
    let mut qemu = plain_qemu(memory_mib);
    qemu.arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args(["-append", cmdline])
        .arg("-nic")
        .arg(format!("user,model={model},{}", net.user_options()));
    qemu
}

/// Plain QEMU TCG booting from the network with its SeaBIOS and an e1000
/// whose option ROM is `rom` (`-device e1000,romfile=`), on `net`, with the
/// debug-exit port the test kernels report on.
pub fn plain_qemu_netboot(rom: &Path, memory_mib: u32, net: &HostNet) -> Command {
    let mut qemu = plain_qemu(memory_mib);
    // QEMU option values double their commas.
    let rom = rom.to_string_lossy().replace(',', ",,");
    qemu.args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-netdev")
        .arg(format!("user,id=n0,{}", net.user_options()))
        .arg("-device")
        .arg(format!("e1000,netdev=n0,romfile={rom}"))
        .args(["-boot", "n"]);
    qemu
}

/// QEMU's pc machine under TCG, without default devices, COM1 on stdout.
fn plain_qemu(memory_mib: u32) -> Command {
    plain_qemu_smp(memory_mib, 1)
}

/// [`plain_qemu`] with `cpus` CPUs: `-smp` and, with more than one,
/// multi-threaded TCG, as Keel's runs get ([`runner::qemu_command_smp`]).
/// The CPU is `-cpu max`, the model of the machine Keel runs on, whose
/// features Keel's guests see. On `qemu64` the same kernel takes other
/// paths: without ERMS it clears and copies memory with other string
/// instructions, and hiding ERMS alone from Keel's guest (`cpuid =
/// "host,erms=0"`) doubled its virtio-blk write figure under TCG. With
/// different models the two sides would not run the same guest.
fn plain_qemu_smp(memory_mib: u32, cpus: u32) -> Command {
    let mut qemu = Command::new("qemu-system-x86_64");
    let accel = if cpus > 1 { "tcg,thread=multi" } else { "tcg" };
    qemu.args(["-machine", "pc", "-accel", accel, "-cpu", "max"]);
    if cpus > 1 {
        qemu.arg("-smp").arg(cpus.to_string());
    }
    qemu.args(["-m", &memory_mib.to_string()]).args([
        "-display",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-nodefaults",
    ]);
    qemu
}

/// Runs a plain QEMU command line until it ends or `timeout` passes.
pub fn run_plain(qemu: Command, timeout: Duration) -> Result<Outcome, String> {
    let opts = RunOptions {
        timeout,
        ..RunOptions::default()
    };
    runner::run_command(qemu, &opts).map_err(|e| e.to_string())
}

/// Boots the Keel ISO of the Linux VM under QEMU TCG (SVM): Keel and its
/// modules from the ISO's staged files through QEMU's `-kernel` and
/// `-initrd` (`RunOptions::multiboot`), as plain QEMU's `-kernel` boots
/// load Linux, so neither side's time holds a boot loader reading a CD
/// through the firmware (GRUB takes about 30 ms a MiB of modules).
pub fn run_keel(iso: &Path, memory_mib: u32, timeout: Duration) -> Result<Outcome, String> {
    run_keel_net(iso, memory_mib, timeout, None)
}

/// As [`run_keel`], with the machine's virtio-net NIC on `host_net`.
pub fn run_keel_net(
    iso: &Path,
    memory_mib: u32,
    timeout: Duration,
    host_net: Option<HostNet>,
) -> Result<Outcome, String> {
    let opts = RunOptions {
        timeout,
        memory_mib: runner::host_memory_mib(memory_mib),
        host_net,
        multiboot: true,
        ..RunOptions::default()
    };
    runner::run_iso(iso, Backend::Svm, &opts).map_err(|e| e.to_string())
}

/// As [`run_keel`], on a machine of `cpus` CPUs (QEMU `-smp`, multi-threaded
/// TCG) with `memory_mib` MiB for the guests.
pub fn run_keel_smp(
    iso: &Path,
    memory_mib: u32,
    cpus: u32,
    timeout: Duration,
) -> Result<Outcome, String> {
    let opts = RunOptions {
        timeout,
        memory_mib: runner::host_memory_mib(memory_mib),
        cpus,
        multiboot: true,
        ..RunOptions::default()
    };
    runner::run_iso(iso, Backend::Svm, &opts).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::End;

    #[test]
    fn net_bench_lines_and_exits_per_mib() {
        let r = NetRead::parse("[net-bench] BENCH net 33554432 bytes 8000000 us").unwrap();
        assert_eq!(r.bytes, 32 << 20);
        assert_eq!(r.elapsed, Duration::from_secs(8));
        assert!((r.mib_per_s() - 4.0).abs() < 1e-9);
        assert_eq!(NetRead::parse("BENCH net 5 bytes x us"), None);
        assert_eq!(NetRead::parse("BENCH dma 5 MiB 3 us XFER_MW_DMA_2"), None);
        let run = |model: &str, secs: u64, per_mib: u64| NicRun {
            model: model.into(),
            keel: NetRead {
                bytes: 32 << 20,
                elapsed: Duration::from_secs(secs),
            },
            small: NetRead {
                bytes: 1 << 20,
                elapsed: Duration::from_secs(1),
            },
            small_exits: 1000,
            exits: 1000 + 31 * per_mib,
            exit_stats: None,
        };
        let _ = r;
        let b = NetBench {
            kernel: "6.1".into(),
            qemu: NetRead {
                bytes: 32 << 20,
                elapsed: Duration::from_secs(2),
            },
            qemu_virtio: NetRead {
                bytes: 32 << 20,
                elapsed: Duration::from_secs(1),
            },
            e1000: run("e1000", 8, 500),
            virtio: run("virtio-net", 2, 20),
            xen: run("xen-netfront", 5, 60),
        };
        assert!((b.e1000.exits_per_mib() - 500.0).abs() < 1e-9);
        assert!((b.virtio.exits_per_mib() - 20.0).abs() < 1e-9);
        assert!((b.xen.exits_per_mib() - 60.0).abs() < 1e-9);
        assert!((b.ratio() - 4.0).abs() < 1e-9);
        assert!((b.virtio_speedup() - 4.0).abs() < 1e-9);
        // QEMU's virtio-net: 32 MiB/s against Keel's 16.
        assert!((b.virtio_ratio() - 2.0).abs() < 1e-9);
        // 6.4 MiB/s against the e1000's 4.
        assert!((b.xen_speedup() - 1.6).abs() < 1e-9);
        let rows = b.rows();
        assert!(rows.contains("TCP download, 32 MiB, virtio-net"), "{rows}");
        // xen-netfront's row: its throughput, no QEMU side.
        let xen_row = rows
            .lines()
            .find(|l| l.contains("TCP download, 32 MiB, xen-netfront"))
            .unwrap_or_else(|| panic!("{rows}"));
        assert!(
            xen_row.contains("6.4 MiB/s") && xen_row.ends_with("n/a"),
            "{rows}"
        );
        assert!(
            rows.contains("VM exits per MiB received, xen-netfront") && rows.contains("60.0"),
            "{rows}"
        );
        assert!(
            rows.contains("xen-netfront / e1000 throughput under Keel: 1.60x"),
            "{rows}"
        );
        let virtio_row = rows
            .lines()
            .find(|l| l.contains("TCP download, 32 MiB, virtio-net"))
            .unwrap_or_else(|| panic!("{rows}"));
        assert!(
            virtio_row.contains("16.0 MiB/s")
                && virtio_row.contains("32.0 MiB/s")
                && virtio_row.ends_with("2.00x"),
            "{rows}"
        );
        let json = b.json();
        assert!(json.contains("\"qemu_virtio_net_s\": 1.000000"), "{json}");
        assert!(
            json.contains("\"qemu_virtio_net_mib_per_s\": 32.000"),
            "{json}"
        );
        assert!(json.contains("\"virtio_net_time_ratio\": 2.000"), "{json}");
        assert!(json.contains("\"keel_exits_per_mib\": 500.000"), "{json}");
        assert!(json.contains("\"virtio_over_e1000\": 4.000"), "{json}");
        assert!(json.contains("\"xen_over_e1000\": 1.600"), "{json}");
        assert!(
            json.contains(
                "\"xen_netfront\": { \"model\": \"xen-netfront\", \"bytes\": 33554432, \
                 \"keel_s\": 5.000000, \"keel_mib_per_s\": 6.400"
            ),
            "{json}"
        );
        assert!(json.contains("\"keel_exits_per_mib\": 60.000"), "{json}");
        let cfg = net_bench_config("net-bench", 256, 5, "virtio-net");
        let parsed = vm_config::parse_bytes(cfg.as_bytes()).unwrap().config;
        assert_eq!(parsed.vifs, ["model=virtio-net,bridge=virtio0"]);
        assert!(!parsed.xen_platform_pci);
        assert!(parsed.cmdline.unwrap().ends_with("keel_bench_bytes=5"));
        // xen-netfront: debian-xen-net.cfg's machine, an e1000 Linux unplugs.
        let cfg = net_bench_config("net-bench-xen", 256, 5, "xen");
        let parsed = vm_config::parse_bytes(cfg.as_bytes()).unwrap().config;
        assert!(parsed.xen_platform_pci, "{cfg}");
        assert_eq!(parsed.vifs, ["model=e1000,bridge=virtio0"]);
        assert!(parsed
            .cmdline
            .unwrap()
            .contains("keel_nic=xen keel_test=bench"));
        assert!(cfg.contains("through the xen-netfront"), "{cfg}");
        assert_eq!(nic_name("e1000"), "e1000");
    }

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
                (
                    "keel: VM 'linux': 256 MiB of RAM at host 0x1e00000, firmware 'keel-shim'",
                    1_000,
                ),
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
        assert_eq!(t.vm_start, Some(Duration::from_millis(1_000)));
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
        let slower = |t: BootTimes, by: u64| BootTimes {
            to_init: t.to_init + Duration::from_millis(by),
            to_power_off: t.to_power_off + Duration::from_millis(by),
            vm_start: t.vm_start,
        };
        // Medians: Keel 9 s, QEMU 6 s, whatever the outliers.
        let b = BootBench {
            kernel: "6.1".into(),
            keel: vec![slower(t, 5_000), t, slower(t, 100)],
            qemu: vec![q, slower(q, 9_000), slower(q, 0)],
            keel_exits: Some(41_681),
            keel_exit_stats: None,
            load: [Some([3.5, 4.0, 4.25]), None],
            shim: None,
        };
        assert_eq!(b.keel_to_init().median, Duration::from_millis(9_100));
        assert_eq!(
            b.keel_guest_to_init().map(|g| g.median),
            Some(Duration::from_millis(8_100))
        );
        assert_eq!(b.qemu_to_init().min, Duration::from_millis(6_000));
        assert_eq!(b.qemu_to_init().max, Duration::from_millis(15_000));
        let rows = b.rows();
        assert!(rows.contains("1.52x"), "{rows}");
        // From Keel's VM start: 8.1 s over QEMU's 6 s.
        assert!(rows.contains("to /init from Keel's VM start"), "{rows}");
        assert!(rows.contains("1.35x"), "{rows}");
        assert!(rows.contains("median of 3 and 3 runs"), "{rows}");
        assert!(
            rows.contains("min-max: Keel 9.00-14.00 s, plain QEMU 6.00-15.00 s"),
            "{rows}"
        );
        assert!(
            rows.contains("3.50 4.00 4.25 before, unknown after"),
            "{rows}"
        );
        assert!(table(&[b.rows()]).starts_with("QEMU TCG"));
        let json = b.json();
        assert!(json.contains("\"init_ratio\": 1.517"), "{json}");
        assert!(json.contains("\"keel_guest_to_init_s\": 8.100"), "{json}");
        assert!(
            json.contains("\"keel_guest_to_init_runs_s\": [13.000, 8.000, 8.100]"),
            "{json}"
        );
        assert!(json.contains("\"shim\": null"), "{json}");
        let with_shim = BootBench {
            shim: Some(ShimBench {
                kernel: "keel-bzbench".into(),
                keel: vec![Duration::from_millis(300)],
                qemu: vec![Duration::from_millis(200)],
                qemu_shim: vec![Duration::from_millis(100)],
                load: [None, None],
            }),
            ..b.clone()
        };
        assert!(with_shim.rows().contains("shim vs SeaBIOS + linuxboot"));
        assert!(with_shim.json().contains(
            "\"shim\": {\"kernel\": \"keel-bzbench\", \"keel_vm_start_to_kernel_s\": 0.300"
        ));
        assert!(
            json.contains("\"keel_to_init_runs_s\": [14.000, 9.000, 9.100]"),
            "{json}"
        );
        assert!(
            json.contains("\"load_average_before\": [3.50, 4.00, 4.25]"),
            "{json}"
        );
        assert_eq!(
            parse_load_average("0.52 0.58 0.59 1/467 12345\n"),
            Some([0.52, 0.58, 0.59])
        );
        assert_eq!(parse_load_average("x"), None);
        assert_eq!(Spread::of(&[]).median, Duration::ZERO);
        assert!(keel_times(&outcome(&[], 1), "linux").is_err());
        assert!(
            qemu_times(&outcome(&[("PASS linux-init", 1)], 2)).is_err(),
            "no power-off"
        );
    }

    /// The shim bench's intervals: Keel from its VM start line to the
    /// kernel's 64-bit line, plain QEMU from its start to the real-mode
    /// line; a line from the wrong entry, a missing start line or a kernel
    /// line before the VM start are errors.
    #[test]
    fn shim_bench_intervals_and_table() {
        let keel = outcome(
            &[
                (
                    "keel: VM 'shimbench': 256 MiB of RAM at host 0x8000000",
                    4_000,
                ),
                ("[shimbench] keel-shim: starting", 4_010),
                ("[shimbench] keel-bzbench: entered in 64-bit mode", 4_060),
                (
                    "keel: VM 'shimbench' stopped: guest debug-exit with status 0",
                    4_070,
                ),
            ],
            4_500,
        );
        assert_eq!(
            keel_to_kernel(&keel, "shimbench"),
            Ok(Duration::from_millis(60))
        );
        assert!(keel_to_kernel(&keel, "other").is_err());
        let qemu = outcome(&[("keel-bzbench: entered in real mode", 450)], 460);
        assert_eq!(
            bzbench_entered(&qemu, "real mode", "qemu"),
            Ok(Duration::from_millis(450))
        );
        assert!(bzbench_entered(&qemu, "64-bit mode", "qemu").is_err());
        assert!(bzbench_entered(&outcome(&[], 1), "real mode", "qemu").is_err());
        let early = outcome(
            &[
                ("keel-bzbench: entered in 64-bit mode", 10),
                ("keel: VM 'shimbench': 256 MiB of RAM at host 0x8000000", 20),
            ],
            30,
        );
        assert!(keel_to_kernel(&early, "shimbench").is_err());

        let d = Duration::from_millis;
        let shim = ShimBench {
            kernel: "keel-bzbench".into(),
            keel: vec![d(60), d(900), d(70)],
            qemu: vec![d(450), d(400), d(2000)],
            qemu_shim: vec![d(200), d(210), d(190)],
            load: [Some([1.0, 1.5, 2.0]), None],
        };
        assert!((shim.ratio() - 0.7 / 4.5).abs() < 1e-9);
        let rows = shim.rows();
        assert!(rows.contains("70 ms"), "{rows}");
        assert!(rows.contains("450 ms"), "{rows}");
        assert!(rows.contains("0.16x"), "{rows}");
        assert!(rows.contains("min-max: Keel 60 ms-900 ms"), "{rows}");
        assert!(rows.contains("the shim as plain QEMU's -bios"), "{rows}");
        let json = shim.json();
        assert!(
            json.contains("\"keel_vm_start_to_kernel_s\": 0.070"),
            "{json}"
        );
        assert!(
            json.contains("\"qemu_runs_s\": [0.450, 0.400, 2.000]"),
            "{json}"
        );
        assert!(
            json.contains("\"qemu_shim_start_to_kernel_s\": 0.200"),
            "{json}"
        );
    }

    #[test]
    fn the_exit_table_at_the_vms_end_is_read_into_the_json() {
        let stats = exit_stats::ExitStats::new();
        let cpuid = exit_stats::ExitClass::of(exit_stats::ExitKind::Cpuid);
        stats.exit(cpuid, 900);
        stats.keel(cpuid, 100);
        stats.own(10);
        let mut text = String::new();
        stats.write_table(|_| None, &mut text).unwrap();
        let mut lines = vec![
            (
                "keel: VM 'l': exit statistics so far (host TSC cycles at 1 MHz)",
                1,
            ),
            ("keel: exits: total  0  0.0%  0  0  0  0", 1),
            (
                "keel: VM 'l': exit statistics at its end (host TSC cycles at 1 MHz)",
                2,
            ),
        ];
        let table: Vec<String> = text.lines().map(|l| format!("keel: exits: {l}")).collect();
        lines.extend(table.iter().map(|l| (l.as_str(), 2)));
        lines.push(("keel: VM 'l' stopped: guest debug-exit with status 0", 3));
        let t = ExitTable::parse(&outcome(&lines, 4), "l").unwrap();
        assert_eq!(t.rows.len(), 2, "{t:?}");
        let row = t.row("cpuid").unwrap();
        assert_eq!(
            (row.count, row.keel_cycles, row.guest_cycles),
            (1, 100, 900)
        );
        assert_eq!(t.row("total").unwrap().count, 1);
        assert_eq!(t.cost.unwrap().cycles_per_exit, 10);
        let json = t.json();
        assert!(json.contains("{\"reason\": \"cpuid\", \"count\": 1, \"keel_cycles\": 100, \"keel_mean\": 100, \"guest_cycles\": 900, \"guest_mean\": 900}"), "{json}");
        assert!(
            json.contains("\"cost\": {\"cycles_per_exit\": 10, \"percent\": 1.00}"),
            "{json}"
        );
        assert_eq!(ExitTable::parse(&outcome(&lines, 4), "other"), None);
    }

    #[test]
    fn exit_bench_lines_parse() {
        let b = ExitBatch::parse("[exitbench] BENCH exit=cpuid n=2000 cycles=303679508").unwrap();
        assert_eq!(
            b,
            ExitBatch {
                kind: "cpuid".into(),
                n: 2000,
                cycles: 303_679_508
            }
        );
        assert!((b.per_exit().unwrap() - 151_839.754).abs() < 1e-9);
        let empty = ExitBatch::parse("BENCH exit=hlt_timer n=0 cycles=0").unwrap();
        assert_eq!(empty.per_exit(), None);
        for bad in [
            "BENCH exit=cpuid n=2000",
            "BENCH exit= n=1 cycles=1",
            "BENCH kind=cpuid n=1 cycles=1",
            "BENCH exit=cpuid n=x cycles=1",
            "BENCH exit=cpuid n=1 cycles=-1",
            "BENCH exit=cpuid n=1 cycles=1 extra",
            "BENCH dma 16 MiB 1 us XFER_MW_DMA_2",
        ] {
            assert_eq!(ExitBatch::parse(bad), None, "{bad}");
        }
        // The IDE parser leaves the exit lines alone.
        assert_eq!(IdeRead::parse("BENCH exit=cpuid n=1 cycles=1"), None);
    }

    #[test]
    fn keels_share_is_its_mean_over_the_round_trip() {
        assert_eq!(keel_share(100_000.0, 60_000), Some(0.6));
        assert_eq!(keel_share(0.0, 60_000), None);
        let stats = exit_stats::ExitStats::new();
        let cpuid = exit_stats::ExitClass::of(exit_stats::ExitKind::Cpuid);
        for _ in 0..4 {
            stats.exit(cpuid, 500);
            stats.keel(cpuid, 250);
        }
        let mut text = String::new();
        stats.write_table(|_| None, &mut text).unwrap();
        let mut lines = vec![(
            "keel: VM 'exitbench': exit statistics at its end (host TSC cycles at 1 MHz)"
                .to_string(),
            1,
        )];
        lines.extend(text.lines().map(|l| (format!("keel: exits: {l}"), 1)));
        for (kind, _) in EXIT_KINDS {
            lines.push((format!("[exitbench] BENCH exit={kind} n=4 cycles=4000"), 0));
        }
        let refs: Vec<(&str, u64)> = lines.iter().map(|(l, t)| (l.as_str(), *t)).collect();
        let o = outcome(&refs, 2);
        let b = ExitBench::parse(&o, "exitbench").unwrap();
        assert_eq!(b.kinds.len(), EXIT_KINDS.len());
        let c = b.kinds.iter().find(|k| k.batch.kind == "cpuid").unwrap();
        assert_eq!(c.keel.as_ref().unwrap().keel_mean, 250);
        assert_eq!(c.share(), Some(0.25));
        // No row for the HPET in this table: no share, still a row.
        let h = b
            .kinds
            .iter()
            .find(|k| k.batch.kind == "mmio_hpet_read")
            .unwrap();
        assert_eq!(h.share(), None);
        let rows = b.rows();
        assert!(rows.contains("cpuid"), "{rows}");
        assert!(rows.contains("25%"), "{rows}");
        let json = b.json();
        assert!(
            json.contains(
                "{\"kind\": \"cpuid\", \"n\": 4, \"guest_cycles\": 4000, \"round_trip_cycles\": 1000.0, \
                 \"keel_row\": \"cpuid\", \"keel_count\": 4, \"keel_mean_cycles\": 250, \"keel_share\": 0.2500}"
            ),
            "{json}"
        );
        assert!(json.contains("\"keel_share\": null"), "{json}");
        // A kind without its line fails the bench.
        let missing: Vec<(&str, u64)> = refs
            .iter()
            .copied()
            .filter(|(l, _)| !l.contains("exit=rdmsr"))
            .collect();
        let e = ExitBench::parse(&outcome(&missing, 2), "exitbench").unwrap_err();
        assert!(e.contains("exit=rdmsr"), "{e}");
    }

    #[test]
    fn bench_lines_parse() {
        let r =
            IdeRead::parse("[ide-bench-dma] BENCH dma 256 MiB 1500000 us XFER_MW_DMA_2").unwrap();
        assert_eq!(r.transfer, Transfer::Dma);
        assert_eq!(r.mib, 256);
        assert_eq!(r.elapsed, Duration::from_millis(1500));
        assert_eq!(r.xfer_mode, "XFER_MW_DMA_2");
        assert!((r.mib_per_s() - 256.0 / 1.5).abs() < 1e-9);
        let p = IdeRead::parse("BENCH pio 16 MiB 8000000 us XFER_PIO_4").unwrap();
        assert_eq!(p.transfer, Transfer::Pio);
        assert!((p.mib_per_s() - 2.0).abs() < 1e-9);
        for bad in [
            "BENCH done",
            "BENCH-FAIL DMA read",
            "BENCH udma 16 MiB 1 us XFER_UDMA_5",
            "BENCH dma 16 MiB 1 ms XFER_MW_DMA_2",
            "BENCH dma x MiB 1 us XFER_MW_DMA_2",
            "BENCH dma 16 MiB 1 us",
        ] {
            assert_eq!(IdeRead::parse(bad), None, "{bad}");
        }
        assert!(Transfer::Dma.matches("XFER_UDMA_5"));
        assert!(!Transfer::Dma.matches("XFER_PIO_4"));
        assert!(Transfer::Pio.matches("XFER_PIO_4"));
        assert!(!Transfer::Pio.matches("XFER_MW_DMA_2"));
        let x =
            IdeRead::parse("[ide-bench-xen-read] BENCH xen-read 256 MiB 2000000 us xen-blkfront")
                .unwrap();
        assert_eq!(x.transfer, Transfer::XenRead);
        assert!((x.mib_per_s() - 128.0).abs() < 1e-9);
        let w = IdeRead::parse("BENCH xen-write 0 MiB 10 us xen-blkfront").unwrap();
        assert_eq!((w.transfer, w.mib), (Transfer::XenWrite, 0));
        assert_eq!(
            IdeRead::parse("BENCH xen-blk 1 MiB 1 us xen-blkfront"),
            None
        );
        assert!(Transfer::XenRead.matches("xen-blkfront"));
        assert!(Transfer::XenWrite.matches("xen-blkfront"));
        // A vbd another driver (or none) served is not xen-blkfront's.
        assert!(!Transfer::XenRead.matches("none"));
        assert!(!Transfer::XenWrite.matches("virtio_blk"));
        assert!(!Transfer::VirtioRead.matches("xen-blkfront"));
        assert!(!Transfer::Dma.matches("xen-blkfront"));
    }

    #[test]
    fn ide_reads_are_checked() {
        let o = outcome(
            &[
                ("[b] PASS ide-init", 20_000),
                ("[b] BENCH dma 0 MiB 13000 us XFER_MW_DMA_2", 21_000),
                ("[b] BENCH pio 16 MiB 9000000 us XFER_MW_DMA_2", 30_000),
            ],
            31_000,
        );
        assert_eq!(ide_to_init(&o, "b").unwrap(), Duration::from_secs(20));
        assert_eq!(ide_read(&o, Transfer::Dma, 0, "b").unwrap().mib, 0);
        let e = ide_read(&o, Transfer::Pio, 16, "b").unwrap_err();
        assert!(e.contains("the pio read ran in XFER_MW_DMA_2"), "{e}");
        assert!(ide_read(&o, Transfer::Dma, 16, "b")
            .unwrap_err()
            .contains("not 16"));
        let xen = outcome(&[("[x] BENCH xen-read 256 MiB 10 us none", 1)], 2);
        let e = ide_read(&xen, Transfer::XenRead, 256, "x").unwrap_err();
        assert!(e.contains("the xen-read read ran in none"), "{e}");
        assert!(ide_read(&xen, Transfer::XenWrite, 0, "x")
            .unwrap_err()
            .contains("no 'BENCH xen-write ...' line"));
        let failed = outcome(&[("[b] BENCH-FAIL no /dev/sda", 1)], 2);
        assert!(ide_read(&failed, Transfer::Dma, 0, "b")
            .unwrap_err()
            .contains("no /dev/sda"));
        assert!(ide_to_init(&failed, "b").is_err());
    }

    #[test]
    fn exits_per_mib_subtract_the_mean_baseline() {
        let keel = outcome(
            &[
                (
                    "keel: VM 'i': 256 MiB of RAM at host 0x3800000, firmware 'seabios'",
                    4_000,
                ),
                ("[i] PASS ide-init", 24_000),
            ],
            30_000,
        );
        let start = keel_vm_start(&keel, "i");
        assert_eq!(start, Some(Duration::from_secs(4)));
        let read = |t, mib, s: f64, x: &str| IdeRead {
            transfer: t,
            mib,
            elapsed: Duration::from_secs_f64(s),
            xfer_mode: x.into(),
        };
        let b = IdeBench {
            kernel: "vmlinuz-6.1".into(),
            // Medians: 24 s to /init, 20 s from the VM's start.
            keel_boots: vec![
                IdeBoot {
                    vm_start: start,
                    to_init: ide_to_init(&keel, "i").unwrap(),
                },
                IdeBoot {
                    vm_start: Some(Duration::from_secs(3)),
                    to_init: Duration::from_secs(20),
                },
                IdeBoot {
                    vm_start: Some(Duration::from_secs(5)),
                    to_init: Duration::from_secs(30),
                },
            ],
            qemu_to_init: vec![
                Duration::from_secs(9),
                Duration::from_secs(8),
                Duration::from_secs(7),
            ],
            keel_dma: read(Transfer::Dma, 256, 2.0, "XFER_MW_DMA_2"),
            keel_pio: read(Transfer::Pio, 16, 8.0, "XFER_PIO_4"),
            qemu_dma: read(Transfer::Dma, 256, 0.5, "XFER_MW_DMA_2"),
            qemu_pio: read(Transfer::Pio, 16, 0.4, "XFER_PIO_4"),
            baseline_exits: [129_000, 129_200],
            dma_exits: 129_100 + 256 * 70,
            pio_exits: 129_100 + 16 * 3_300,
            dma_exit_stats: None,
            pio_exit_stats: None,
            virtio_read: VirtioRun {
                keel: read(Transfer::VirtioRead, 256, 0.5, "virtio_blk"),
                qemu: read(Transfer::VirtioRead, 256, 0.25, "virtio_blk"),
                exits: 129_100 + 256 * 3,
                exit_stats: None,
            },
            virtio_write: VirtioRun {
                keel: read(Transfer::VirtioWrite, 128, 1.0, "virtio_blk"),
                qemu: read(Transfer::VirtioWrite, 128, 0.5, "virtio_blk"),
                exits: 129_100 + 128 * 5,
                exit_stats: None,
            },
            // Xen's machine boots with exits of its own: its baselines.
            xen: XenBlk {
                baseline_exits: [150_000, 150_512],
                baseline_stats: [None, None],
                read: XenBlkRun {
                    keel: read(Transfer::XenRead, 256, 1.0, "xen-blkfront"),
                    exits: 150_256 + 256 * 12,
                    exit_stats: None,
                },
                write: XenBlkRun {
                    keel: read(Transfer::XenWrite, 128, 2.0, "xen-blkfront"),
                    exits: 150_256 + 128 * 20,
                    exit_stats: None,
                },
            },
        };
        assert!((b.baseline() - 129_100.0).abs() < 1e-9);
        assert!((b.virtio_exits_per_mib(&b.virtio_read) - 3.0).abs() < 1e-9);
        assert!((b.virtio_exits_per_mib(&b.virtio_write) - 5.0).abs() < 1e-9);
        // virtio-blk 512 MiB/s against DMA's 128 and PIO's 2.
        assert!((b.virtio_over_dma() - 4.0).abs() < 1e-9);
        assert!((b.virtio_over_pio() - 256.0).abs() < 1e-9);
        assert_eq!(b.virtio_read.device_exits_per_mib(), None);
        let mut with_stats = b.virtio_read.clone();
        let table = outcome(
            &[
                ("keel: VM 'v': exit statistics at its end", 1),
                (
                    "keel: exits: npf: virtio-blk  384  5.0%  3000  8  1000  3",
                    1,
                ),
                (
                    "keel: exits: io: virtio-blk  128  1.0%  1000  8  1000  8",
                    1,
                ),
                (
                    "keel: exits: npf: local APIC  4000  9.0%  4000  1  1000  1",
                    1,
                ),
            ],
            2,
        );
        with_stats.exit_stats = ExitTable::parse(&table, "v");
        assert!(with_stats
            .exit_stats
            .as_ref()
            .is_some_and(|t| t.rows.len() == 3));
        assert_eq!(with_stats.device_exits_per_mib(), Some(2.0));
        assert!((b.dma_exits_per_mib() - 70.0).abs() < 1e-9);
        assert!((b.pio_exits_per_mib() - 3_300.0).abs() < 1e-9);
        assert!((b.noise_per_mib(16) - 12.5).abs() < 1e-9);
        assert!((b.init_ratio() - 3.0).abs() < 1e-9);
        // xen-blkfront against its own baselines, not the emulated ones.
        assert!((b.xen.exits_per_mib(&b.xen.read) - 12.0).abs() < 1e-9);
        assert!((b.xen.exits_per_mib(&b.xen.write) - 20.0).abs() < 1e-9);
        assert!((b.xen.noise_per_mib(256) - 2.0).abs() < 1e-9);
        // Read 256 MiB/s against DMA's 128 and virtio-blk's 512; write 64
        // against virtio-blk's 128.
        assert!((b.xen_read_over_dma() - 2.0).abs() < 1e-9);
        assert!((b.xen_read_over_virtio() - 0.5).abs() < 1e-9);
        assert!((b.xen_write_over_virtio() - 0.5).abs() < 1e-9);
        let rows = b.rows();
        let line = |what: &str| {
            rows.lines()
                .find(|l| l.contains(what))
                .unwrap_or_else(|| panic!("no '{what}' in {rows}"))
                .to_string()
        };
        let xen_read = line("xen-blkfront read, 256 MiB");
        assert!(
            xen_read.contains("256.0 MiB/s") && xen_read.ends_with("n/a"),
            "{rows}"
        );
        assert!(line("xen-blkfront write, 128 MiB").contains("64.0 MiB/s"));
        assert!(line("xen-blkfront read over DMA, virtio-blk").contains("2.00x, 0.50x"));
        assert!(line("xen-blkfront write over virtio-blk").contains("0.50x"));
        assert!(line("VM exits per MiB, xen-blkfront read").contains("12.0"));
        assert!(line("VM exits per MiB, xen-blkfront write").contains("20.0"));
        assert!(
            rows.contains("the Xen baselines differ by 4.0 per MiB"),
            "{rows}"
        );
        assert!(rows.contains("150000 and 150512"), "{rows}");
        assert!(!rows.contains("of them hypercalls"), "{rows}");
        assert!(
            b.json().contains("\"xen_read_hypercalls_per_mib\": null"),
            "{}",
            b.json()
        );
        // With the tables: hypercalls against the baselines' mean, 1000
        // (a table without the row has none).
        let hypercalls = |vm: &str, n: Option<u64>| {
            let header = format!("keel: VM '{vm}': exit statistics at its end");
            let row = n.map(|n| format!("keel: exits: hypercall  {n}  5.0%  3000  8  1000  3"));
            let mut lines = vec![(header.as_str(), 1)];
            if let Some(r) = &row {
                lines.push((r.as_str(), 1));
            }
            ExitTable::parse(&outcome(&lines, 2), vm)
        };
        let mut with_stats = b.clone();
        with_stats.xen.baseline_stats = [hypercalls("a", Some(900)), hypercalls("b", Some(1_100))];
        with_stats.xen.read.exit_stats = hypercalls("r", Some(1_000 + 256 * 4));
        assert_eq!(with_stats.xen.hypercalls_per_mib(&b.xen.read), None);
        assert_eq!(
            with_stats.xen.hypercalls_per_mib(&with_stats.xen.read),
            Some(4.0)
        );
        with_stats.xen.write.exit_stats = hypercalls("w", None);
        assert_eq!(
            with_stats.xen.hypercalls_per_mib(&with_stats.xen.write),
            Some(-1_000.0 / 128.0)
        );
        let rows = with_stats.rows();
        assert!(rows.contains("of them hypercalls"), "{rows}");
        assert!(
            with_stats
                .json()
                .contains("\"xen_read_hypercalls_per_mib\": 4.000"),
            "{}",
            with_stats.json()
        );
        assert!(rows.contains("3.00x"), "{rows}");
        // From the VM's start: 20 s against 8 s.
        assert!(rows.contains("2.50x"), "{rows}");
        assert!(rows.contains("median of 3 and 3 runs"), "{rows}");
        assert!(
            rows.contains("min-max: Keel 20.00-30.00 s, plain QEMU 7.00-9.00 s"),
            "{rows}"
        );
        assert!(
            rows.contains("min-max: Keel from VM start 17.00-25.00 s"),
            "{rows}"
        );
        // DMA: 128 MiB/s against 512 MiB/s; PIO: 2 against 40.
        assert!(
            rows.contains("128.0 MiB/s") && rows.contains("4.00x"),
            "{rows}"
        );
        assert!(rows.contains("20.00x"), "{rows}");
        assert!(rows.contains("DMA read, 256 MiB (MW_DMA_2)"), "{rows}");
        assert!(
            rows.contains("virtio-blk write, 128 MiB (virtio_blk)"),
            "{rows}"
        );
        assert!(rows.contains("4.0x, 256.0x"), "{rows}");
        let json = b.json();
        assert!(
            json.contains("\"keel_guest_to_init_runs_s\": [20.000, 17.000, 25.000]"),
            "{json}"
        );
        assert!(json.contains("\"keel_guest_to_init_s\": 20.000"), "{json}");
        let dma = |s: f64| read(Transfer::Dma, 256, s, "XFER_MW_DMA_2");
        assert_eq!(median_read(&[dma(2.0), dma(1.0), dma(3.0)]), Some(dma(2.0)));
        assert_eq!(median_read(&[]), None);
        assert!(
            json.contains("\"qemu_to_init_runs_s\": [9.000, 8.000, 7.000]"),
            "{json}"
        );
        assert!(json.contains("\"virtio_read_over_dma\": 4.000"), "{json}");
        assert!(json.contains("\"keel_exits_per_mib\": 5.000"), "{json}");
        assert!(json.contains("\"init_ratio\": 3.000"), "{json}");
        assert!(json.contains("\"keel_exits_per_mib\": 3300.000"), "{json}");
        assert!(
            json.contains("\"keel_baseline_exits\": [129000, 129200]"),
            "{json}"
        );
        // PIO's spread from the emulated baselines: 200 / 16.
        assert!(
            json.contains("\"keel_baseline_spread_per_mib\": 12.500"),
            "{json}"
        );
        assert!(
            json.contains("\"xen_baseline_exits\": [150000, 150512]"),
            "{json}"
        );
        assert!(
            json.contains(
                "\"xen_read\": {\n    \"mib\": 256,\n    \"xfer_mode\": \"xen-blkfront\",\n    \
                 \"keel_s\": 1.000000,\n    \"keel_mib_per_s\": 256.000,\n    \"qemu_s\": null,\n    \
                 \"qemu_mib_per_s\": null,\n    \"time_ratio\": null,\n    \
                 \"keel_exits\": 153328,\n    \"keel_exits_per_mib\": 12.000,\n    \
                 \"keel_baseline_spread_per_mib\": 2.000,"
            ),
            "{json}"
        );
        assert!(json.contains("\"keel_exits_per_mib\": 20.000"), "{json}");
        assert!(json.contains("\"xen_read_over_dma\": 2.000"), "{json}");
        assert!(json.contains("\"xen_read_over_virtio\": 0.500"), "{json}");
        assert!(json.contains("\"xen_write_over_virtio\": 0.500"), "{json}");
        let mib = BenchMib {
            dma: 256,
            ..BenchMib::default()
        };
        let cfg = ide_bench_config(
            "ide-bench-dma",
            "ide-bench-dma.img",
            "v.img",
            256,
            BenchBoot::Emulated(mib),
        );
        assert!(cfg.contains("name = \"ide-bench-dma\"\n"), "{cfg}");
        let vm = vm_config::parse_bytes(cfg.as_bytes()).unwrap().config;
        assert_eq!(vm.disks.len(), 2, "{cfg}");
        assert!(
            cfg.contains(
                "disk = [ 'ide-bench-dma.img,raw,hda,rw,volatile',\n         \
                 'v.img,raw,xvda,rw,specification=virtio,volatile' ]\n"
            ),
            "{cfg}"
        );
        assert!(!vm.xen_platform_pci);
        // Xen's boots: the platform device, the scratch disk on the IDE
        // primary slave (Linux's /dev/xvdb), no virtio-blk disk.
        let cfg = ide_bench_config(
            "ide-bench-xen-read",
            "ide-bench-xen-read.img",
            "x.img",
            256,
            BenchBoot::Xen {
                read: 256,
                write: 0,
            },
        );
        let vm = vm_config::parse_bytes(cfg.as_bytes()).unwrap().config;
        assert!(vm.xen_platform_pci, "{cfg}");
        let disks = vm.disk_specs().unwrap();
        let slots: Vec<_> = disks.iter().map(|d| (d.target.as_str(), d.slot)).collect();
        assert_eq!(
            slots,
            [
                (
                    "ide-bench-xen-read.img",
                    vm_config::DiskSlot::Ide(vm_config::IdeSlot::PrimaryMaster)
                ),
                (
                    "x.img",
                    vm_config::DiskSlot::Ide(vm_config::IdeSlot::PrimarySlave)
                ),
            ],
            "{cfg}"
        );
        assert!(disks.iter().all(|d| d.writable && d.volatile && !d.cdrom));
        assert!(cfg.contains("reads 256 MiB of the booted disk"), "{cfg}");
        let q = plain_qemu_disk(Path::new("/b/q,1.img"), Path::new("/b/v.img"), 256);
        let args: Vec<_> = q.get_args().map(|a| a.to_string_lossy()).collect();
        assert!(args.join(" ").ends_with(
            "-nodefaults -drive file=/b/q,,1.img,format=raw,if=ide \
             -drive file=/b/v.img,format=raw,if=virtio"
        ));
    }
}
