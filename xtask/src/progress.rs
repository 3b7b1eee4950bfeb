//! One line per long step (a package install, a Debian asset, an ISO, a
//! bench run): what it was, how far along the whole it is, how long it
//! took. The tools' own output (apt-get, dpkg-deb, grub-mkrescue) is kept
//! and shown only when they fail.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::runner::Outcome;

/// Lines of a failed tool's output shown with its error.
pub const FAILURE_TAIL_LINES: usize = 40;

/// `xtask: [N/M] WHAT: DETAIL (T s)`; without a count `xtask: WHAT: DETAIL
/// (T s)`; an empty detail leaves out its colon.
pub fn line(what: &str, at: Option<(usize, usize)>, detail: &str, took: Duration) -> String {
    let mut s = String::from("xtask: ");
    if let Some((n, of)) = at {
        s.push_str(&format!("[{n}/{of}] "));
    }
    s.push_str(what);
    if !detail.is_empty() {
        s.push_str(": ");
        s.push_str(detail);
    }
    s.push_str(&format!(" ({})", seconds(took)));
    s
}

/// A duration as a person reads it: `0.4 s`, `12.3 s`, `2 min 05 s`.
pub fn seconds(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s < 60.0 {
        format!("{s:.1} s")
    } else {
        let whole = d.as_secs();
        format!("{} min {:02} s", whole / 60, whole % 60)
    }
}

/// A step under way; [`Step::done`] prints its line.
#[derive(Debug)]
pub struct Step {
    what: String,
    at: Option<(usize, usize)>,
    started: Instant,
}

impl Step {
    /// A step on its own.
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            at: None,
            started: Instant::now(),
        }
    }

    /// Step `n` of `of`.
    pub fn of(what: impl Into<String>, n: usize, of: usize) -> Self {
        Self {
            at: Some((n, of)),
            ..Self::new(what)
        }
    }

    /// Time since the step started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Prints the step's line with `detail` (what came of it).
    pub fn done(self, detail: &str) {
        eprintln!("{}", line(&self.what, self.at, detail, self.elapsed()));
    }
}

/// When VM `vm` first printed (its console `[vm] ...` or its firmware's
/// `[vm:bios] ...`), counted from the emulator's start.
pub fn first_guest_output(o: &Outcome, vm: &str) -> Option<Duration> {
    let own = format!("[{vm}] ");
    let firmware = format!("[{vm}:");
    o.lines
        .iter()
        .zip(&o.line_times)
        .find(|(l, _)| l.starts_with(&own) || l.starts_with(&firmware))
        .map(|(_, &t)| t)
}

/// The line `cargo xtask run` ends with: how long the guest took to say
/// anything, from the command's start (`before_emulator` of building and
/// checking, then the emulator's part).
pub fn first_output_line(vm: &str, before_emulator: Duration, o: &Outcome) -> String {
    match first_guest_output(o, vm) {
        Some(t) => format!(
            "xtask: VM '{vm}' printed its first line {} after `cargo xtask run` started \
             ({} building and checking, {} in the emulator: firmware, boot loader, Keel, the guest)",
            seconds(before_emulator + t),
            seconds(before_emulator),
            seconds(t)
        ),
        None => format!(
            "xtask: VM '{vm}' printed nothing in {} (`cargo xtask run` started {} earlier)",
            seconds(o.elapsed),
            seconds(before_emulator + o.elapsed)
        ),
    }
}

/// The last `n` lines of `text`.
pub fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    let from = lines.len().saturating_sub(n);
    let mut out = String::new();
    if from > 0 {
        out.push_str(&format!("[... {from} lines before]\n"));
    }
    out.push_str(&lines[from..].join("\n"));
    out
}

/// Runs `cmd` with its output kept; on failure the error holds the
/// command, its status and the last [`FAILURE_TAIL_LINES`] lines of its
/// output (stdout, then stderr), plus `hint` when not empty.
pub fn run_quiet(cmd: &mut Command, hint: &str) -> Result<Output, String> {
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if out.status.success() {
        return Ok(out);
    }
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut e = format!(
        "{shown} failed ({}); its output:\n{}",
        out.status,
        tail(text.trim_end(), FAILURE_TAIL_LINES)
    );
    if !hint.is_empty() {
        e.push('\n');
        e.push_str(hint);
    }
    Err(e)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_says_what_how_far_and_how_long() {
        assert_eq!(
            line(
                "ISO debian-ide.iso",
                Some((3, 12)),
                "4 images, 41 MiB",
                Duration::from_millis(2345)
            ),
            "xtask: [3/12] ISO debian-ide.iso: 4 images, 41 MiB (2.3 s)"
        );
        assert_eq!(
            line("apt-get update", None, "", Duration::from_millis(40)),
            "xtask: apt-get update (0.0 s)"
        );
        assert_eq!(seconds(Duration::from_secs(125)), "2 min 05 s");
        assert_eq!(seconds(Duration::from_millis(59_940)), "59.9 s");
    }

    fn outcome(lines: &[(&str, u64)]) -> Outcome {
        Outcome {
            end: crate::runner::End::Status(0),
            lines: lines.iter().map(|(l, _)| l.to_string()).collect(),
            line_times: lines
                .iter()
                .map(|&(_, ms)| Duration::from_millis(ms))
                .collect(),
            emulator_stderr: String::new(),
            emulator_status: None,
            elapsed: Duration::from_millis(9000),
            timeout: Duration::from_secs(60),
        }
    }

    #[test]
    fn the_first_guest_line_is_timed_not_keels_or_grubs() {
        let o = outcome(&[
            ("GRUB loading.", 500),
            ("keel: VM 'vm' starting", 2000),
            ("[vm2] not this VM", 2500),
            ("[vm:bios] SeaBIOS (version 1.16)", 3250),
            ("[vm] hello", 4000),
        ]);
        assert_eq!(
            first_guest_output(&o, "vm"),
            Some(Duration::from_millis(3250))
        );
        assert_eq!(
            first_output_line("vm", Duration::from_millis(1500), &o),
            "xtask: VM 'vm' printed its first line 4.8 s after `cargo xtask run` started \
             (1.5 s building and checking, 3.2 s in the emulator: firmware, boot loader, Keel, the guest)"
        );
        let quiet = outcome(&[("keel: VM 'vm' starting", 2000)]);
        assert_eq!(first_guest_output(&quiet, "vm"), None);
        assert_eq!(
            first_output_line("vm", Duration::from_secs(1), &quiet),
            "xtask: VM 'vm' printed nothing in 9.0 s (`cargo xtask run` started 10.0 s earlier)"
        );
    }

    #[test]
    fn a_failed_tool_shows_the_end_of_its_output() {
        let e = run_quiet(
            Command::new("sh").args([
                "-c",
                "i=0; while [ $i -lt 50 ]; do echo out$i; i=$((i+1)); done; echo bad >&2; exit 3",
            ]),
            "try again",
        )
        .unwrap_err();
        assert!(e.contains("failed (exit status: 3)"), "{e}");
        assert!(e.contains("[... 11 lines before]\nout11\n"), "{e}");
        assert!(e.contains("out49\nbad\ntry again"), "{e}");
        assert!(!e.contains("out10\n"), "{e}");
        let ok = run_quiet(Command::new("sh").args(["-c", "echo hi"]), "").unwrap();
        assert_eq!(ok.stdout, b"hi\n");
    }
}
