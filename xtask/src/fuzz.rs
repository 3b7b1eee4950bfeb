//! `cargo xtask fuzz`: the host fuzz harness's long run (crates/fuzz) with
//! random seeds; a failing seed is saved as a regression case, which every
//! later run (and `cargo xtask test`) replays.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::workspace::{self, Workspace};

/// The harness's package name.
pub const PACKAGE: &str = "keel-fuzz";

/// A failure the harness reported: `keel-fuzz: FAILED target=T seed=S case=N`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub target: String,
    pub seed: String,
    pub case: String,
}

impl Failure {
    /// The failure a line of the harness's output reports, if any.
    pub fn parse(line: &str) -> Option<Failure> {
        let rest = line.trim().strip_prefix("keel-fuzz: FAILED ")?;
        let field = |key: &str| {
            rest.split_whitespace()
                .find_map(|w| w.strip_prefix(key))
                .filter(|v| !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric()))
                .map(str::to_string)
        };
        Some(Failure {
            target: field("target=")?,
            seed: field("seed=")?,
            case: field("case=")?,
        })
    }
}

/// The regression file of `target`.
pub fn regression_file(root: &Path, target: &str) -> PathBuf {
    root.join("crates/fuzz/regressions")
        .join(format!("{target}.txt"))
}

/// Appends the failure's seed to its target's regression file (once).
pub fn save_regression(root: &Path, f: &Failure) -> Result<PathBuf, String> {
    let path = regression_file(root, &f.target);
    let text = std::fs::read_to_string(&path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let known = text
        .lines()
        .any(|l| l.split('#').next().unwrap_or("").trim() == f.seed);
    if !known {
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .map_err(|e| format!("cannot open {}: {e}", path.display()))?;
        writeln!(
            file,
            "{} # case {}, found by cargo xtask fuzz",
            f.seed, f.case
        )
        .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
    }
    Ok(path)
}

/// Runs the harness in release mode with `args` (its own flags), streaming
/// its output. Returns the failure it reported, if it failed with one.
pub fn run(ws: &Workspace, args: &[String]) -> Result<Option<Failure>, String> {
    let mut child = Command::new(workspace::cargo())
        .args(["run", "--release", "-q", "-p", PACKAGE, "--"])
        .args(args)
        .current_dir(&ws.root)
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    let mut failure = None;
    if let Some(stderr) = child.stderr.take() {
        for line in BufReader::new(stderr).lines() {
            let line = line.map_err(|e| format!("reading {PACKAGE}'s output: {e}"))?;
            eprintln!("{line}");
            failure = failure.or_else(|| Failure::parse(&line));
        }
    }
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {PACKAGE}: {e}"))?;
    match (status.success(), failure) {
        (true, _) => Ok(None),
        (false, Some(f)) => Ok(Some(f)),
        (false, None) => Err(format!("{PACKAGE} failed ({status})")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn failure_lines() {
        assert_eq!(
            Failure::parse("keel-fuzz: FAILED target=devices seed=0x1b4 case=14"),
            Some(Failure {
                target: "devices".into(),
                seed: "0x1b4".into(),
                case: "14".into()
            })
        );
        assert_eq!(Failure::parse("keel-fuzz: passed"), None);
        assert_eq!(
            Failure::parse("keel-fuzz: FAILED target=../x seed=1 case=2"),
            None
        );
    }

    #[test]
    fn a_seed_is_saved_once() {
        let dir = std::env::temp_dir().join(format!("xtask-fuzz-{}", std::process::id()));
        let file = regression_file(&dir, "exits");
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, "# comment\n").unwrap();
        let f = Failure {
            target: "exits".into(),
            seed: "0x2a".into(),
            case: "3".into(),
        };
        save_regression(&dir, &f).unwrap();
        save_regression(&dir, &f).unwrap();
        assert_eq!(
            std::fs::read_to_string(&file).unwrap(),
            "# comment\n0x2a # case 3, found by cargo xtask fuzz\n"
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
