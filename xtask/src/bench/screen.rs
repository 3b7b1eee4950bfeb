//! The screen bench (`cargo xtask bench --only screen`): what a guest's
//! drawing costs under Keel next to plain QEMU. SeaBIOS boots copies of
//! the `screendisk` boot disk in its bench step (`crate::screen_disk`) on
//! QEMU's standard VGA with Debian's VGA BIOS; the disk scrolls the 80x25
//! text screen by a line M times through INT 10h AH=06h (the VGA BIOS
//! moves the text in the legacy window at 0xB8000, which exits to Keel on
//! every access) and fills the 1024x768x32 linear framebuffer N times with
//! `rep stosl` (RAM mapped into the guest: no exits), timing each with
//! RDTSC, and counts its TSC cycles over four BIOS timer ticks. Both sides
//! read the same host TSC (QEMU TCG's), so the ratio is of cycles; time is
//! cycles at the rate plain QEMU's guest counted.
//!
//! Under Keel three boots: one that scrolls, one that fills and one that
//! does neither, whose exit count is the baseline (Keel counts exits per
//! VM run); plain QEMU (`-device VGA`, `-drive if=ide`, its own SeaBIOS
//! and VGA BIOS) boots once and does both. Neither machine has a display
//! (Keel's: `-vga none`; plain QEMU's: `-display none`), so neither side
//! spends time showing the screen.

use std::path::Path;
use std::process::Command;

use super::{json_or_null, plain_qemu, row, ExitTable};
use crate::runner::Outcome;

/// Seconds of one BIOS timer tick: the PIT's 65536 counts at 1.193182 MHz.
pub const TICK_SECS: f64 = 65536.0 / 1_193_182.0;

/// Bytes of one fill: 1024x768 pixels of 4 bytes.
pub const FILL_BYTES: u64 = 1024 * 768 * 4;

/// What a `BENCH screen=...` line measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScreenOp {
    /// TSC cycles over `n` BIOS timer ticks.
    Tsc,
    /// `n` scrolls of the text screen.
    Scroll,
    /// `n` fills of the framebuffer.
    Fill,
}

impl ScreenOp {
    fn word(self) -> &'static str {
        match self {
            ScreenOp::Tsc => "tsc",
            ScreenOp::Scroll => "scroll",
            ScreenOp::Fill => "fill",
        }
    }
}

/// One line of the disk's bench step: `BENCH screen=tsc ticks=N
/// cycles=0x...`, `BENCH screen=scroll n=N cycles=0x...` or `BENCH
/// screen=fill n=N cycles=0x...` (cycles in hex, as the guest prints
/// them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ScreenLine {
    pub op: ScreenOp,
    pub n: u64,
    pub cycles: u64,
}

impl ScreenLine {
    /// The line a serial line reports, with or without Keel's `[vm] ` prefix.
    pub fn parse(line: &str) -> Option<ScreenLine> {
        let (_, rest) = line.split_once("BENCH screen=")?;
        let w: Vec<&str> = rest.split_whitespace().collect();
        let [op, n, cycles] = w[..] else {
            return None;
        };
        let (op, n) = match op {
            "tsc" => (ScreenOp::Tsc, n.strip_prefix("ticks=")?),
            "scroll" => (ScreenOp::Scroll, n.strip_prefix("n=")?),
            "fill" => (ScreenOp::Fill, n.strip_prefix("n=")?),
            _ => return None,
        };
        let cycles = cycles.strip_prefix("cycles=0x")?;
        if cycles.is_empty() || cycles.len() > 16 {
            return None;
        }
        Some(ScreenLine {
            op,
            n: n.parse().ok()?,
            cycles: u64::from_str_radix(cycles, 16).ok()?,
        })
    }

    /// Cycles per operation; `None` for none.
    pub fn per_op(&self) -> Option<f64> {
        (self.n > 0).then(|| self.cycles as f64 / self.n as f64)
    }
}

/// One boot of the bench step: its three lines.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ScreenRun {
    pub tsc: ScreenLine,
    pub scroll: ScreenLine,
    pub fill: ScreenLine,
}

impl ScreenRun {
    /// The run `o` (named `run` in errors), checked: no failed check, one
    /// line of each kind, `scrolls` scrolls and `fills` fills, a timer
    /// that advanced.
    pub fn parse(o: &Outcome, run: &str, scrolls: u64, fills: u64) -> Result<ScreenRun, String> {
        if let Some(l) = o
            .lines
            .iter()
            .find(|l| l.starts_with("FAIL ") || l.contains("] FAIL "))
        {
            return Err(format!(
                "{run}: the guest failed a check: {l}\n{}",
                o.report()
            ));
        }
        let lines: Vec<ScreenLine> = o
            .lines
            .iter()
            .filter_map(|l| ScreenLine::parse(l))
            .collect();
        let one = |op: ScreenOp, n: Option<u64>| -> Result<ScreenLine, String> {
            let l = lines.iter().find(|l| l.op == op).copied().ok_or_else(|| {
                format!(
                    "{run}: no 'BENCH screen={} ...' line\n{}",
                    op.word(),
                    o.report()
                )
            })?;
            match n {
                Some(n) if l.n != n => Err(format!("{run}: {} {} times, not {n}", op.word(), l.n)),
                _ => Ok(l),
            }
        };
        let r = ScreenRun {
            tsc: one(ScreenOp::Tsc, None)?,
            scroll: one(ScreenOp::Scroll, Some(scrolls))?,
            fill: one(ScreenOp::Fill, Some(fills))?,
        };
        if r.tsc.n == 0 || r.tsc.cycles == 0 {
            return Err(format!(
                "{run}: the TSC did not advance over the timer ticks"
            ));
        }
        Ok(r)
    }

    /// TSC cycles per second, as the guest counted them against its timer.
    pub fn tsc_hz(&self) -> f64 {
        self.tsc.cycles as f64 / (self.tsc.n as f64 * TICK_SECS)
    }
}

/// One Keel boot of the screen bench: the guest's lines, Keel's exit count
/// and exit statistics.
#[derive(Debug, Clone, PartialEq)]
pub struct KeelScreenRun {
    pub run: ScreenRun,
    pub exits: u64,
    pub exit_stats: Option<ExitTable>,
}

impl KeelScreenRun {
    /// Exits at the VGA (its rows under `io` and `npf`), if Keel printed
    /// its table.
    pub fn vga_exits(&self) -> Option<u64> {
        let t = self.exit_stats.as_ref()?;
        Some(
            t.rows
                .iter()
                .filter(|r| r.label.ends_with(": vga"))
                .map(|r| r.count)
                .sum(),
        )
    }
}

/// The screen bench's runs.
#[derive(Debug, Clone, PartialEq)]
pub struct ScreenBench {
    /// Keel's boot that neither scrolls nor fills (the exit baseline).
    pub idle: KeelScreenRun,
    pub scroll: KeelScreenRun,
    pub fill: KeelScreenRun,
    /// Plain QEMU's one boot, which scrolls and fills.
    pub qemu: ScreenRun,
}

impl ScreenBench {
    /// Seconds per operation of `line` (a line of either side): both sides
    /// count the same host TSC, turned into time at the rate plain QEMU's
    /// guest measured against QEMU's timer, which runs on the host's clock
    /// (Keel's guest measures against Keel's emulated timer, which a loaded
    /// host makes less steady; its rate is shown beside).
    pub fn secs_per_op(&self, line: &ScreenLine) -> Option<f64> {
        Some(line.per_op()? / self.qemu.tsc_hz())
    }

    /// Keel's cycles per scroll over plain QEMU's (the same host TSC on
    /// both sides).
    pub fn scroll_ratio(&self) -> Option<f64> {
        Some(self.scroll.run.scroll.per_op()? / self.qemu.scroll.per_op()?)
    }

    /// Keel's cycles per fill over plain QEMU's.
    pub fn fill_ratio(&self) -> Option<f64> {
        Some(self.fill.run.fill.per_op()? / self.qemu.fill.per_op()?)
    }

    /// VM exits per scroll, over the baseline.
    pub fn exits_per_scroll(&self) -> Option<f64> {
        per(self.scroll.exits, self.idle.exits, self.scroll.run.scroll.n)
    }

    /// VM exits per fill, over the baseline.
    pub fn exits_per_fill(&self) -> Option<f64> {
        per(self.fill.exits, self.idle.exits, self.fill.run.fill.n)
    }

    /// Of the exits per scroll, those at the VGA.
    pub fn vga_exits_per_scroll(&self) -> Option<f64> {
        per(
            self.scroll.vga_exits()?,
            self.idle.vga_exits()?,
            self.scroll.run.scroll.n,
        )
    }

    /// Its section of the table printed on stdout.
    pub fn rows(&self) -> String {
        let ms = |line: &ScreenLine| {
            self.secs_per_op(line)
                .map_or(String::new(), |s| format!("{:.3} ms", s * 1e3))
        };
        let mib_s = |line: &ScreenLine| {
            self.secs_per_op(line).map_or(String::new(), |s| {
                format!("{:.1} MiB/s", FILL_BYTES as f64 / f64::from(1u32 << 20) / s)
            })
        };
        let opt = |v: Option<f64>| v.map_or(String::new(), |v| format!("{v:.1}"));
        let mut t = String::from(
            "screen: SeaBIOS boots the screendisk from IDE, QEMU's standard VGA and its BIOS\n",
        );
        t.push_str(&row(
            &format!(
                "text scroll, 80x25 by a line ({}x)",
                self.scroll.run.scroll.n
            ),
            &ms(&self.scroll.run.scroll),
            &ms(&self.qemu.scroll),
            self.scroll_ratio(),
        ));
        t.push_str(&row(
            &format!("LFB fill, 1024x768x32 ({}x)", self.fill.run.fill.n),
            &ms(&self.fill.run.fill),
            &ms(&self.qemu.fill),
            self.fill_ratio(),
        ));
        t.push_str(&row(
            "LFB fill throughput",
            &mib_s(&self.fill.run.fill),
            &mib_s(&self.qemu.fill),
            None,
        ));
        t.push_str(&row(
            "VM exits per scroll",
            &opt(self.exits_per_scroll()),
            "",
            None,
        ));
        if let Some(v) = self.vga_exits_per_scroll() {
            t.push_str(&row("  of them at the VGA", &format!("{v:.1}"), "", None));
        }
        t.push_str(&row(
            "VM exits per fill",
            &opt(self.exits_per_fill()),
            "",
            None,
        ));
        t.push_str(&format!(
            "  per scroll / fill: the guest's RDTSC over all of them / the count, one host\n  \
             TSC on both sides, in time at the rate plain QEMU's guest counted over BIOS\n  \
             timer ticks ({:.0} MHz; under Keel its guest counted {:.0} MHz)\n  \
             scroll: INT 10h AH=06h (the VGA BIOS moves the text at 0xB8000); fill: rep stosl\n  \
             exits: (exits of the boot that scrolled, or filled - exits of a boot that did\n  \
             neither, {}) / the count\n",
            self.qemu.tsc_hz() / 1e6,
            self.scroll.run.tsc_hz() / 1e6,
            self.idle.exits,
        ));
        t
    }

    /// The JSON written to `target/bench/screen.json`.
    pub fn json(&self) -> String {
        let side = |tsc: &ScreenRun, scroll: &ScreenLine, fill: &ScreenLine| {
            format!(
                "{{\"guest_tsc_hz\": {:.0}, \"scrolls\": {}, \"scroll_cycles\": {}, \
                 \"scroll_s\": {}, \"fills\": {}, \"fill_cycles\": {}, \"fill_s\": {}}}",
                tsc.tsc_hz(),
                scroll.n,
                scroll.cycles,
                opt_json(self.secs_per_op(scroll), 9),
                fill.n,
                fill.cycles,
                opt_json(self.secs_per_op(fill), 9),
            )
        };
        format!(
            "{{\n  \"keel\": {},\n  \"qemu\": {},\n  \"scroll_ratio\": {},\n  \
             \"fill_ratio\": {},\n  \"keel_idle_exits\": {},\n  \"keel_scroll_exits\": {},\n  \
             \"keel_fill_exits\": {},\n  \"keel_exits_per_scroll\": {},\n  \
             \"keel_vga_exits_per_scroll\": {},\n  \"keel_exits_per_fill\": {},\n  \
             \"keel_scroll_exit_stats\": {},\n  \"keel_fill_exit_stats\": {}\n}}\n",
            side(
                &self.scroll.run,
                &self.scroll.run.scroll,
                &self.fill.run.fill
            ),
            side(&self.qemu, &self.qemu.scroll, &self.qemu.fill),
            opt_json(self.scroll_ratio(), 3),
            opt_json(self.fill_ratio(), 3),
            self.idle.exits,
            self.scroll.exits,
            self.fill.exits,
            opt_json(self.exits_per_scroll(), 3),
            opt_json(self.vga_exits_per_scroll(), 3),
            opt_json(self.exits_per_fill(), 3),
            json_or_null(self.scroll.exit_stats.as_ref()),
            json_or_null(self.fill.exit_stats.as_ref()),
        )
    }
}

/// (`exits` - `baseline`) / `n`; `None` for no operations.
fn per(exits: u64, baseline: u64, n: u64) -> Option<f64> {
    (n > 0).then(|| (exits as f64 - baseline as f64) / n as f64)
}

fn opt_json(v: Option<f64>, digits: usize) -> String {
    v.map_or("null".to_string(), |v| format!("{v:.digits$}"))
}

/// The VM config of one Keel run of the screen bench: like
/// tests/vms/screendisk.cfg, its disk the bench copy `image` (next to the
/// config, kept in Keel's RAM).
pub fn screen_bench_config(name: &str, image: &str, memory_mib: u32) -> String {
    format!(
        "# Generated by cargo xtask bench: SeaBIOS boots {image}, a copy of the screendisk\n\
         # in its bench step (text scrolls, framebuffer fills), which then ends.\n\
         name = \"{name}\"\n\
         memory = {memory_mib}\n\
         vcpus = 1\n\
         firmware = \"seabios\"\n\
         disk = [ '{image},raw,hda,rw,volatile' ]\n\
         stdvga = 1\n"
    )
}

/// Plain QEMU TCG booting the raw disk `image` from its IDE primary master
/// with its own SeaBIOS, QEMU's standard VGA (`-device VGA`, its VGA BIOS
/// from its ROM BAR) and the debug-exit port the disk ends with.
pub fn plain_qemu_screen(image: &Path, memory_mib: u32) -> Command {
    let mut qemu = plain_qemu(memory_mib);
    // QEMU option values double their commas.
    let image = image.to_string_lossy().replace(',', ",,");
    qemu.args(["-device", "VGA"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-drive")
        .arg(format!("file={image},format=raw,if=ide"));
    qemu
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::runner::End;
    use std::time::Duration;

    fn outcome(lines: &[&str]) -> Outcome {
        Outcome {
            end: End::NoFinalLine,
            lines: lines.iter().map(|l| l.to_string()).collect(),
            line_times: lines.iter().map(|_| Duration::ZERO).collect(),
            emulator_stderr: String::new(),
            emulator_status: None,
            elapsed: Duration::from_secs(1),
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn screen_lines_parse() {
        let l = ScreenLine::parse("[s] BENCH screen=fill n=32 cycles=0x00000001000000ff").unwrap();
        assert_eq!(
            l,
            ScreenLine {
                op: ScreenOp::Fill,
                n: 32,
                cycles: 0x1_0000_00ff
            }
        );
        let t = ScreenLine::parse("BENCH screen=tsc ticks=4 cycles=0x0000000012345678").unwrap();
        assert_eq!((t.op, t.n, t.cycles), (ScreenOp::Tsc, 4, 0x1234_5678));
        assert_eq!(
            ScreenLine::parse("BENCH screen=scroll n=0 cycles=0x0000000000000010")
                .unwrap()
                .per_op(),
            None
        );
        for bad in [
            "BENCH screen=fill n=32",
            "BENCH screen=fill n=32 cycles=123",
            "BENCH screen=fill n=32 cycles=0x",
            "BENCH screen=fill n=32 cycles=0x00000000000000001",
            "BENCH screen=fill n=x cycles=0x1",
            "BENCH screen=fill ticks=4 cycles=0x1",
            "BENCH screen=tsc n=4 cycles=0x1",
            "BENCH screen=blit n=4 cycles=0x1",
            "BENCH screen=fill n=1 cycles=0xzz",
            "BENCH screen=fill n=1 cycles=0x1 extra",
            "BENCH exit=cpuid n=2000 cycles=303679508",
        ] {
            assert_eq!(ScreenLine::parse(bad), None, "{bad}");
        }
        // The other benches' parsers leave these lines alone.
        assert_eq!(
            super::super::ExitBatch::parse("BENCH screen=fill n=32 cycles=0x1"),
            None
        );
    }

    fn run_lines(name: &str, scrolls: u64, fills: u64, scale: u64) -> Vec<String> {
        vec![
            format!("[{name}] PASS int10-4f02-set-mode-with-lfb"),
            format!(
                "[{name}] BENCH screen=tsc ticks=4 cycles=0x{:016x}",
                219_701_600u64
            ),
            format!(
                "[{name}] BENCH screen=scroll n={scrolls} cycles=0x{:016x}",
                scrolls * 1_000_000 * scale
            ),
            format!(
                "[{name}] BENCH screen=fill n={fills} cycles=0x{:016x}",
                fills * 10_000_000 * scale
            ),
        ]
    }

    fn keel(name: &str, scrolls: u64, fills: u64, exits: u64, vga: u64) -> KeelScreenRun {
        let mut lines = run_lines(name, scrolls, fills, 4);
        lines.push(format!("keel: VM '{name}': exit statistics at its end"));
        lines.push(format!(
            "keel: exits:   npf: vga  {vga}  5.0%  3000  8  1000  3"
        ));
        lines.push("keel: exits:   io: vga  100  1.0%  1000  8  1000  8".into());
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let o = outcome(&refs);
        KeelScreenRun {
            run: ScreenRun::parse(&o, name, scrolls, fills).unwrap(),
            exits,
            exit_stats: ExitTable::parse(&o, name),
        }
    }

    #[test]
    fn the_bench_compares_cycles_and_subtracts_the_baseline() {
        let q = run_lines("q", 200, 32, 1);
        let q: Vec<String> = q
            .iter()
            .map(|l| l.trim_start_matches("[q] ").to_string())
            .collect();
        let refs: Vec<&str> = q.iter().map(String::as_str).collect();
        let qemu = ScreenRun::parse(&outcome(&refs), "plain QEMU", 200, 32).unwrap();
        // 219,701,600 cycles over 4 ticks: 1 GHz.
        assert!((qemu.tsc_hz() - 1e9).abs() < 1e3, "{}", qemu.tsc_hz());
        let b = ScreenBench {
            idle: keel("i", 0, 0, 10_000, 1_000),
            scroll: keel("s", 200, 0, 10_000 + 200 * 30, 1_000 + 200 * 25),
            fill: keel("f", 0, 32, 10_000 + 32, 1_000),
            qemu,
        };
        assert!((b.secs_per_op(&b.qemu.scroll).unwrap() - 1e-3).abs() < 1e-9);
        assert_eq!(b.scroll_ratio(), Some(4.0));
        assert_eq!(b.fill_ratio(), Some(4.0));
        assert_eq!(b.exits_per_scroll(), Some(30.0));
        assert_eq!(b.vga_exits_per_scroll(), Some(25.0));
        assert_eq!(b.exits_per_fill(), Some(1.0));
        let rows = b.rows();
        assert!(
            rows.contains("text scroll, 80x25 by a line (200x)"),
            "{rows}"
        );
        assert!(
            rows.contains("4.000 ms") && rows.contains("1.000 ms"),
            "{rows}"
        );
        assert!(rows.contains("4.00x"), "{rows}");
        // 3 MiB in 10 ms on plain QEMU.
        assert!(rows.contains("300.0 MiB/s"), "{rows}");
        assert!(rows.contains("of them at the VGA"), "{rows}");
        let json = b.json();
        assert!(json.contains("\"keel_exits_per_scroll\": 30.000"), "{json}");
        assert!(json.contains("\"fill_ratio\": 4.000"), "{json}");
        assert!(json.contains("\"scroll_s\": 0.004000000"), "{json}");
        assert!(json.contains("\"keel_idle_exits\": 10000"), "{json}");
    }

    #[test]
    fn a_run_that_failed_or_miscounted_is_refused() {
        let lines = run_lines("s", 200, 32, 1);
        let refs: Vec<&str> = lines.iter().map(String::as_str).collect();
        let e = ScreenRun::parse(&outcome(&refs), "s", 100, 32).unwrap_err();
        assert!(e.contains("scroll 200 times, not 100"), "{e}");
        let mut failed = refs.clone();
        failed.push("[s] FAIL int10-4f02-set-mode-with-lfb");
        let e = ScreenRun::parse(&outcome(&failed), "s", 200, 32).unwrap_err();
        assert!(e.contains("failed a check"), "{e}");
        let e = ScreenRun::parse(&outcome(&refs[..3]), "s", 200, 32).unwrap_err();
        assert!(e.contains("no 'BENCH screen=fill ...' line"), "{e}");
        let mut stopped = refs.clone();
        stopped[1] = "[s] BENCH screen=tsc ticks=4 cycles=0x0000000000000000";
        assert!(ScreenRun::parse(&outcome(&stopped), "s", 200, 32).is_err());
    }

    #[test]
    fn the_configs_and_the_qemu_command_line() {
        let cfg = screen_bench_config("screen-bench-fill", "screen-bench-fill.img", 64);
        let vm = vm_config::parse_bytes(cfg.as_bytes()).unwrap().config;
        assert_eq!(vm.name, "screen-bench-fill");
        assert_eq!(vm.disks, ["screen-bench-fill.img,raw,hda,rw,volatile"]);
        assert!(cfg.contains("stdvga = 1\n"), "{cfg}");
        let q = plain_qemu_screen(Path::new("/b/q,1.img"), 64);
        let args: Vec<_> = q.get_args().map(|a| a.to_string_lossy()).collect();
        assert!(
            args.join(" ").ends_with(
                "-nodefaults -device VGA -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
                 -drive file=/b/q,,1.img,format=raw,if=ide"
            ),
            "{args:?}"
        );
    }
}
