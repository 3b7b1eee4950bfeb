//! The one emulator runner: command line, live serial streaming, timeout, the
//! final `keel: exit status N` line, and the tail of the log on failure.
//!
//! `cargo xtask run` and the integration tests in `tests/` both go through
//! [`run_iso`]: QEMU TCG for SVM, Bochs for VMX. [`run_command`] is the same
//! loop over any command, so it can be tested with a stand-in for the
//! emulator; QEMU's serial is its stdout, Bochs' serial is a file that the
//! same loop follows ([`Serial::File`]).

use std::fmt::Write as _;
use std::io::{self, BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use crate::net::HostNet;

/// Exit code of a run that timed out (as `timeout(1)`).
pub const TIMEOUT_EXIT: i32 = 124;
/// Exit code of a run whose emulator ended without Keel's final line.
pub const NO_FINAL_LINE_EXIT: i32 = 1;
/// Lines of serial log shown when a run fails.
pub const TAIL_LINES: usize = 40;
/// Prefix of Keel's last line (docs/ARCHITECTURE.md, "How a VM ends").
pub const FINAL_LINE_PREFIX: &str = "keel: exit status ";
/// Prefix of the line Keel prints for each stopped VM.
pub const STOP_LINE_PREFIX: &str = "keel: VM '";

/// Which hardware virtualization Keel uses, and so which emulator tests it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// AMD SVM + NPT, on QEMU TCG (or nested KVM on an AMD workstation).
    Svm,
    /// Intel VMX + EPT + unrestricted guest, on Bochs (QEMU TCG does not emulate VMX).
    Vmx,
}

impl std::str::FromStr for Backend {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "svm" => Ok(Backend::Svm),
            "vmx" => Ok(Backend::Vmx),
            _ => Err(format!("unknown backend '{s}': expected svm or vmx")),
        }
    }
}

/// How QEMU executes the guest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Accel {
    /// QEMU's emulator; emulates SVM + NPT. Works everywhere.
    Tcg,
    /// Hardware KVM with nested virtualization: the real SVM, much faster.
    Kvm,
}

/// Picks KVM only when the host's `kvm_amd` module (for SVM) reports nested
/// virtualization and `/dev/kvm` opens; TCG otherwise. `KEEL_ACCEL=tcg|kvm`
/// overrides the choice.
pub fn detect_accel(backend: Backend) -> Accel {
    match std::env::var("KEEL_ACCEL").as_deref() {
        Ok("tcg") => return Accel::Tcg,
        Ok("kvm") => return Accel::Kvm,
        _ => {}
    }
    let module = match backend {
        Backend::Svm => "kvm_amd",
        Backend::Vmx => "kvm_intel",
    };
    let nested = std::fs::read_to_string(format!("/sys/module/{module}/parameters/nested"))
        .map(|s| matches!(s.trim(), "1" | "Y" | "y"))
        .unwrap_or(false);
    let kvm_opens = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/kvm")
        .is_ok();
    if nested && kvm_opens {
        Accel::Kvm
    } else {
        Accel::Tcg
    }
}

/// The QEMU command line that boots `iso` with Keel's serial on stdout,
/// each of `host_disks` as a virtio-blk disk of the machine (`virtio0`,
/// `virtio1`, ... in that order, which is their PCI order), and with
/// `host_net` a virtio-net NIC on QEMU's restricted user network after
/// them. The ISO is the boot device, so a bootable host disk does not take
/// its place.
pub fn qemu_command(
    iso: &Path,
    accel: Accel,
    memory_mib: u32,
    host_disks: &[PathBuf],
    host_net: Option<&HostNet>,
) -> Command {
    qemu_command_smp(iso, accel, memory_mib, 1, host_disks, host_net)
}

/// [`qemu_command`] for a machine with `cpus` CPUs (`-smp`); with more than
/// one, TCG runs one host thread per CPU (`thread=multi`), so Keel's CPUs
/// really run at the same time.
pub fn qemu_command_smp(
    iso: &Path,
    accel: Accel,
    memory_mib: u32,
    cpus: u32,
    host_disks: &[PathBuf],
    host_net: Option<&HostNet>,
) -> Command {
    qemu_command_for(
        Medium::Iso(iso),
        accel,
        memory_mib,
        cpus,
        host_disks,
        host_net,
    )
}

/// What QEMU boots Keel from.
pub enum Medium<'a> {
    /// The ISO, with GRUB.
    Iso(&'a Path),
    /// Keel and its modules through `-kernel` and `-initrd`
    /// (`RunOptions::multiboot`).
    Multiboot(&'a crate::iso::Multiboot),
}

/// [`qemu_command_smp`] for either [`Medium`].
pub fn qemu_command_for(
    medium: Medium<'_>,
    accel: Accel,
    memory_mib: u32,
    cpus: u32,
    host_disks: &[PathBuf],
    host_net: Option<&HostNet>,
) -> Command {
    let mut cmd = qemu_accel(accel, cpus);
    qemu_machine(&mut cmd, cpus, memory_mib);
    match medium {
        Medium::Iso(iso) => {
            // The ISO is a CD on an AHCI controller (ICH9), not on the
            // machine's IDE: SeaBIOS reads an AHCI CD by DMA, a whole INT 13h
            // request per command, where the IDE CD costs GRUB about 1 s of
            // PIO for Keel and its boot modules under TCG (0.5 s through
            // AHCI). Keel has no AHCI driver, so the controller is the
            // firmware's alone.
            cmd.arg("-drive").arg(format!(
                "file={},if=none,id=keel-cd,media=cdrom,readonly=on",
                iso.to_string_lossy().replace(',', ",,")
            ));
            cmd.args([
                "-device",
                "ahci,id=ahci",
                "-device",
                "ide-cd,drive=keel-cd,bus=ahci.0,bootindex=0",
            ]);
        }
        Medium::Multiboot(boot) => {
            cmd.args(boot.qemu_args());
        }
    }
    qemu_devices(&mut cmd, host_disks, host_net);
    cmd
}

/// `qemu-system-x86_64 -machine pc` with its accelerator and CPU model.
fn qemu_accel(accel: Accel, cpus: u32) -> Command {
    let mut cmd = Command::new("qemu-system-x86_64");
    cmd.args(["-machine", "pc"]);
    match (accel, cpus > 1) {
        (Accel::Tcg, false) => cmd.args(["-accel", "tcg", "-cpu", "max"]),
        (Accel::Tcg, true) => cmd.args(["-accel", "tcg,thread=multi", "-cpu", "max"]),
        (Accel::Kvm, _) => cmd.args(["-accel", "kvm", "-cpu", "host"]),
    };
    cmd
}

/// The machine every run has: CPUs, RAM, no display, COM1 on stdout, the
/// debug-exit port.
fn qemu_machine(cmd: &mut Command, cpus: u32, memory_mib: u32) {
    if cpus > 1 {
        cmd.arg("-smp").arg(cpus.to_string());
    }
    cmd.arg("-m").arg(memory_mib.to_string());
    cmd.args([
        "-display",
        "none",
        // No display adapter unless one is wanted (`display::DisplayOptions`):
        // Keel draws only on a display it finds.
        "-vga",
        "none",
        "-serial",
        "stdio",
        "-no-reboot",
        "-device",
        "isa-debug-exit,iobase=0xf4,iosize=0x04",
    ]);
}

/// The machine's virtio-blk disks and NIC.
fn qemu_devices(cmd: &mut Command, host_disks: &[PathBuf], host_net: Option<&HostNet>) {
    for disk in host_disks {
        // QEMU option values double their commas.
        let file = disk.to_string_lossy().replace(',', ",,");
        cmd.arg("-drive")
            .arg(format!("if=virtio,file={file},format=raw"));
    }
    if let Some(net) = host_net {
        cmd.args(net.qemu_args());
    }
}

/// How to run.
#[derive(Debug, Clone)]
pub struct RunOptions {
    /// Kill the emulator when Keel has not printed its final line by then.
    pub timeout: Duration,
    /// How long the emulator may take to end by itself after the final line.
    pub grace: Duration,
    /// Copy each serial line to stdout as it arrives.
    pub live: bool,
    /// Host RAM given to the emulated machine, in MiB.
    pub memory_mib: u32,
    /// The Bochs CPU model for the VMX backend (`cpu: model=...`).
    pub cpu_model: String,
    /// End the run as soon as a serial line contains this text: for guests
    /// that never stop by themselves (firmware waiting for a boot device).
    pub stop_at: Option<String>,
    /// Raw image files attached as the machine's virtio-blk disks (QEMU
    /// only; a VM config names them `phy:virtio0`, ...).
    pub host_disks: Vec<PathBuf>,
    /// The machine's virtio-net NIC on QEMU's restricted user network
    /// (QEMU only; a VM's `vif` bridges to it as `virtio0`).
    pub host_net: Option<HostNet>,
    /// Keel's interactive console on the machine's COM2 ([`crate::console`];
    /// QEMU only): the focused VM's output raw on stdout, stdin typed into
    /// it. With `live`, only Keel's own `keel:` lines of the log are shown
    /// (on stderr); the whole log goes to `log`.
    pub console: bool,
    /// Every serial (log) line also goes to this file as it arrives.
    pub log: Option<PathBuf>,
    /// CPUs of the emulated machine (QEMU `-smp`; Bochs `cpu: count=`).
    pub cpus: u32,
    /// The machine's display: VNC, a screenshot when a VM ends (QEMU only).
    pub display: crate::display::DisplayOptions,
    /// Boot Keel with QEMU's `-kernel` and its modules with `-initrd` (a
    /// multiboot boot from the ISO's staged files, [`crate::iso::Multiboot`])
    /// instead of GRUB from the ISO: QEMU loads them itself, where GRUB
    /// reads them through the firmware at about 30 ms a MiB under TCG.
    /// QEMU only.
    pub multiboot: bool,
}

/// Host RAM for the emulated machine: room for the guest's RAM and Keel.
pub fn host_memory_mib(guest_mib: u32) -> u32 {
    guest_mib.saturating_add(128).max(512)
}

/// The Bochs CPU model VMX runs use unless told otherwise.
pub const DEFAULT_BOCHS_MODEL: &str = "corei7_skylake_x";

impl Default for RunOptions {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(60),
            grace: Duration::from_secs(2),
            live: false,
            memory_mib: 512,
            cpu_model: DEFAULT_BOCHS_MODEL.to_string(),
            stop_at: None,
            host_disks: Vec::new(),
            host_net: None,
            console: false,
            log: None,
            cpus: 1,
            display: crate::display::DisplayOptions::default(),
            multiboot: false,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// Keel printed `keel: exit status N`.
    Status(u8),
    /// The emulator ended without Keel's final line.
    NoFinalLine,
    /// The timeout passed first; the emulator was killed.
    TimedOut,
    /// A line contained [`RunOptions::stop_at`]; the emulator was killed.
    Reached,
}

/// What a run produced.
#[derive(Debug, Clone)]
pub struct Outcome {
    pub end: End,
    /// Every serial line, without line terminators.
    pub lines: Vec<String>,
    /// When each line of `lines` arrived, counted from the emulator's start.
    pub line_times: Vec<Duration>,
    /// What the emulator wrote to stderr.
    pub emulator_stderr: String,
    /// The emulator's own exit status (killed runs included).
    pub emulator_status: Option<ExitStatus>,
    pub elapsed: Duration,
    pub timeout: Duration,
}

impl Outcome {
    /// The exit code `cargo xtask run` ends with: N, [`NO_FINAL_LINE_EXIT`] or
    /// [`TIMEOUT_EXIT`].
    pub fn exit_code(&self) -> i32 {
        match self.end {
            End::Status(n) => i32::from(n),
            End::NoFinalLine => NO_FINAL_LINE_EXIT,
            End::TimedOut => TIMEOUT_EXIT,
            End::Reached => 0,
        }
    }

    /// The `keel: VM '...' stopped: ...` lines.
    pub fn stop_lines(&self) -> impl Iterator<Item = &str> {
        self.lines
            .iter()
            .map(|l| l.trim_end())
            .filter(|l| l.starts_with(STOP_LINE_PREFIX) && l.contains("' stopped: "))
    }

    /// When the first line containing `text` arrived, from the emulator's start.
    pub fn time_of(&self, text: &str) -> Option<Duration> {
        let i = self.lines.iter().position(|l| l.contains(text))?;
        self.line_times.get(i).copied()
    }

    /// The last `n` serial lines.
    pub fn tail(&self, n: usize) -> &[String] {
        &self.lines[self.lines.len().saturating_sub(n)..]
    }

    /// Whether the run counts as a failure to report (anything but a final line).
    pub fn failed(&self) -> bool {
        !matches!(self.end, End::Status(_) | End::Reached)
    }

    /// One sentence on how the run ended.
    pub fn summary(&self) -> String {
        let secs = self.elapsed.as_secs_f64();
        match self.end {
            End::Status(n) => format!("Keel exited with status {n} after {secs:.1} s"),
            End::NoFinalLine => format!(
                "the emulator ended ({}) after {secs:.1} s without Keel's final line \
                 '{FINAL_LINE_PREFIX}N'",
                self.emulator_status
                    .map_or("status unknown".to_string(), |s| s.to_string())
            ),
            End::TimedOut => format!(
                "timed out after {} s without Keel's final line '{FINAL_LINE_PREFIX}N'; \
                 the emulator was killed",
                self.timeout.as_secs()
            ),
            End::Reached => {
                format!("reached the awaited line after {secs:.1} s; the emulator was stopped")
            }
        }
    }

    /// The summary, the last [`TAIL_LINES`] serial lines and the emulator's
    /// stderr: what a person needs to see when a run failed.
    pub fn report(&self) -> String {
        let mut r = self.summary();
        let tail = self.tail(TAIL_LINES);
        if tail.is_empty() {
            r.push_str("\nno serial output at all");
        } else {
            let _ = write!(
                r,
                "\nlast {} of {} serial lines:",
                tail.len(),
                self.lines.len()
            );
            for l in tail {
                let _ = write!(r, "\n  | {}", l.trim_end());
            }
        }
        let stderr = self.emulator_stderr.trim();
        if !stderr.is_empty() {
            let _ = write!(r, "\nemulator stderr:\n{stderr}");
        }
        r
    }
}

/// `Some(N)` when `line` is Keel's final line `keel: exit status N`.
pub fn final_status(line: &str) -> Option<u8> {
    line.trim_end()
        .strip_prefix(FINAL_LINE_PREFIX)?
        .parse::<u8>()
        .ok()
}

/// A serial line as text: ANSI escape sequences (GRUB's screen handling on
/// the same port) and control characters other than tab removed.
pub fn clean_line(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        match c {
            '\u{1b}' => match chars.next() {
                // CSI: parameters and intermediates up to a final byte @..~.
                Some('[') => {
                    for f in chars.by_ref() {
                        if ('@'..='~').contains(&f) {
                            break;
                        }
                    }
                }
                // Character set designation: ESC ( B and the like.
                Some('(' | ')' | '*' | '+') => {
                    chars.next();
                }
                _ => {}
            },
            '\t' => out.push(c),
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out
}

/// Why a run could not start.
#[derive(Debug)]
pub enum RunError {
    /// The backend has no emulator wired up yet.
    Unsupported(String),
    /// The emulator could not be started.
    Spawn(String),
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RunError::Unsupported(m) | RunError::Spawn(m) => f.write_str(m),
        }
    }
}

/// Boots `iso` on the emulator for `backend` and waits for Keel's final line.
pub fn run_iso(iso: &Path, backend: Backend, opts: &RunOptions) -> Result<Outcome, RunError> {
    match backend {
        Backend::Svm => {
            let accel = detect_accel(backend);
            let boot = opts
                .multiboot
                .then(|| crate::iso::Multiboot::of_iso(iso))
                .transpose()
                .map_err(RunError::Spawn)?;
            let medium = boot.as_ref().map_or(Medium::Iso(iso), Medium::Multiboot);
            let mut cmd = qemu_command_for(
                medium,
                accel,
                opts.memory_mib,
                opts.cpus,
                &opts.host_disks,
                opts.host_net.as_ref(),
            );
            let qmp = opts
                .display
                .screenshot
                .is_some()
                .then(crate::display::qmp_socket_path);
            cmd.args(opts.display.qemu_args(qmp.as_deref()));
            let socket = opts.console.then(crate::console::socket_path);
            if let Some(socket) = &socket {
                cmd.args(crate::console::qemu_args(socket));
            }
            let outcome =
                run_emulator(cmd, opts, Serial::Stdout, socket.as_deref(), qmp.as_deref());
            if let Some(qmp) = &qmp {
                let _ = std::fs::remove_file(qmp);
            }
            outcome
        }
        Backend::Vmx if opts.multiboot => Err(RunError::Unsupported(
            "a -kernel boot needs the svm backend (QEMU): Bochs boots from the ISO".into(),
        )),
        Backend::Vmx if !opts.host_disks.is_empty() => Err(RunError::Unsupported(
            "host disks need the svm backend (QEMU): Bochs has no virtio-blk device".into(),
        )),
        Backend::Vmx if opts.host_net.is_some() => Err(RunError::Unsupported(
            "host networking needs the svm backend (QEMU): Bochs has no virtio-net device".into(),
        )),
        Backend::Vmx => run_bochs(iso, opts),
    }
}

/// Where a run's serial output comes from.
#[derive(Debug, Clone)]
pub enum Serial {
    /// The emulator's stdout (QEMU `-serial stdio`).
    Stdout,
    /// A file the emulator appends to (Bochs `com1: mode=file`), followed as it grows.
    File(PathBuf),
}

/// The bochsrc for a headless, unattended run of `iso` (Bochs 2.7 as Debian
/// builds it, with SMP support): `cpus` processors of `cpu_model` (`cpu:
/// count=`; Bochs' BIOS lists them in its ACPI MADT and MP table, where Keel
/// finds them); no GUI but the VNC server, which does not wait for a client;
/// sound off (its mixer thread aborts without an audio device); COM1 to
/// `serial`; the log to `log`; a triple fault ends the simulation instead of
/// resetting.
pub fn bochsrc(
    iso: &Path,
    cpu_model: &str,
    cpus: u32,
    memory_mib: u32,
    serial: &Path,
    log: &Path,
) -> String {
    let cpus = cpus.max(1);
    format!(
        "megs: {memory_mib}\n\
         cpu: model={cpu_model}, count={cpus}, ips=100000000, reset_on_triple_fault=0\n\
         romimage: file=/usr/share/bochs/BIOS-bochs-latest\n\
         vgaromimage: file=/usr/share/bochs/VGABIOS-lgpl-latest\n\
         ata0-master: type=cdrom, path=\"{}\", status=inserted\n\
         boot: cdrom\n\
         com1: enabled=1, mode=file, dev=\"{}\"\n\
         display_library: rfb, options=\"timeout=0\"\n\
         sound: driver=dummy\n\
         speaker: enabled=0\n\
         log: \"{}\"\n\
         panic: action=fatal\n\
         error: action=report\n\
         info: action=report\n\
         debug: action=ignore\n\
         clock: sync=none, time0=local\n",
        iso.display(),
        serial.display(),
        log.display()
    )
}

/// The Bochs command line for a run whose files live in `dir` (bochsrc,
/// debugger script, serial file, log), and the serial file.
pub fn bochs_command(dir: &Path) -> Command {
    let mut cmd = Command::new("bochs");
    // Debian's Bochs has the internal debugger: the script continues, then quits.
    cmd.arg("-q")
        .arg("-f")
        .arg(dir.join("bochsrc"))
        .arg("-rc")
        .arg(dir.join("debugger.rc"))
        .current_dir(dir);
    cmd
}

static BOCHS_RUNS: AtomicU32 = AtomicU32::new(0);

/// Runs `iso` under Bochs with the VMX CPU model of `opts`. The files of the
/// run go to a fresh directory under the system temp dir, which is removed
/// afterwards; the tail of Bochs' log is kept in the outcome's stderr.
pub fn run_bochs(iso: &Path, opts: &RunOptions) -> Result<Outcome, RunError> {
    let mut attempt = 1;
    loop {
        let outcome = run_bochs_once(iso, opts)?;
        if attempt == BOCHS_START_ATTEMPTS || !bochs_failed_to_start(&outcome) {
            return Ok(outcome);
        }
        eprintln!("xtask: Bochs could not open its display port; starting it again");
        attempt += 1;
    }
}

/// How often a Bochs run that ended before its CPU ran is started again.
const BOCHS_START_ATTEMPTS: u32 = 3;

/// Bochs ended at start-up because its VNC display (rfb) found no free
/// port, which happens when several runs start at once on a busy
/// machine: nothing of Keel ran, so the run is not a verdict.
fn bochs_failed_to_start(o: &Outcome) -> bool {
    o.lines.is_empty() && o.emulator_stderr.contains("RFB could not bind any port")
}

fn run_bochs_once(iso: &Path, opts: &RunOptions) -> Result<Outcome, RunError> {
    let iso = iso
        .canonicalize()
        .map_err(|e| RunError::Spawn(format!("cannot find {}: {e}", iso.display())))?;
    let dir = std::env::temp_dir().join(format!(
        "keel-bochs-{}-{}",
        std::process::id(),
        BOCHS_RUNS.fetch_add(1, Ordering::SeqCst)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)
        .map_err(|e| RunError::Spawn(format!("cannot create {}: {e}", dir.display())))?;
    let serial = dir.join("serial.txt");
    let log = dir.join("bochs.log");
    let files = [
        (
            "bochsrc",
            bochsrc(
                &iso,
                &opts.cpu_model,
                opts.cpus,
                opts.memory_mib,
                &serial,
                &log,
            ),
        ),
        ("debugger.rc", "c\nquit\n".to_string()),
        ("serial.txt", String::new()),
    ];
    for (name, text) in files {
        std::fs::write(dir.join(name), text).map_err(|e| {
            RunError::Spawn(format!("cannot write {}: {e}", dir.join(name).display()))
        })?;
    }
    let result = run_command_with(bochs_command(&dir), opts, Serial::File(serial));
    let result = result.map(|mut o| {
        let log_tail = log_tail(&log, 15);
        if !log_tail.is_empty() {
            o.emulator_stderr = format!(
                "{}\nlast lines of the Bochs log:\n{log_tail}",
                o.emulator_stderr.trim()
            );
        }
        o
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// The last `n` lines of a text file ("" if it cannot be read).
fn log_tail(path: &Path, n: usize) -> String {
    let text = std::fs::read(path)
        .map(|b| String::from_utf8_lossy(&b).into_owned())
        .unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Runs `cmd` as the emulator: its stdout is the serial port.
pub fn run_command(cmd: Command, opts: &RunOptions) -> Result<Outcome, RunError> {
    run_command_with(cmd, opts, Serial::Stdout)
}

/// Sends each line of `source` (ANSI escapes and control characters removed)
/// until it ends or the receiver is gone.
fn forward_lines(source: impl Read, tx: &mpsc::Sender<String>) {
    let mut r = BufReader::new(source);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match r.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                if tx.send(clean_line(&String::from_utf8_lossy(&buf))).is_err() {
                    return;
                }
            }
        }
    }
}

/// Follows `path` as it grows: sends each complete line, and once `done` is
/// set, whatever is left (a last line without its newline included).
fn follow_file(path: &Path, tx: &mpsc::Sender<String>, done: &AtomicBool) {
    let Ok(mut file) = std::fs::File::open(path) else {
        return;
    };
    let mut pending: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let finished = done.load(Ordering::SeqCst);
        let n = file.read(&mut chunk).unwrap_or(0);
        pending.extend_from_slice(&chunk[..n]);
        while let Some(i) = pending.iter().position(|&b| b == b'\n') {
            let line: Vec<u8> = pending.drain(..=i).collect();
            let text = String::from_utf8_lossy(&line);
            if tx
                .send(clean_line(text.trim_end_matches(['\n', '\r'])))
                .is_err()
            {
                return;
            }
        }
        if n == 0 {
            if finished {
                if !pending.is_empty() {
                    let _ = tx.send(clean_line(&String::from_utf8_lossy(&pending)));
                }
                return;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Runs `cmd` as the emulator with its serial output in `serial`.
pub fn run_command_with(
    cmd: Command,
    opts: &RunOptions,
    serial: Serial,
) -> Result<Outcome, RunError> {
    run_emulator(cmd, opts, serial, None, None)
}

/// Runs `cmd` as the emulator with its serial log in `serial` and, with
/// `console`, Keel's console on the socket the emulator serves there.
fn run_emulator(
    mut cmd: Command,
    opts: &RunOptions,
    serial: Serial,
    console: Option<&Path>,
    qmp: Option<&Path>,
) -> Result<Outcome, RunError> {
    let program = cmd.get_program().to_string_lossy().into_owned();
    let start = Instant::now();
    let mut log = match &opts.log {
        Some(path) => Some(std::fs::File::create(path).map_err(|e| {
            RunError::Spawn(format!("cannot create the log {}: {e}", path.display()))
        })?),
        None => None,
    };
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| RunError::Spawn(format!("cannot start {program}: {e}")))?;
    let attached = match console {
        None => None,
        Some(path) => match crate::console::Attached::connect(path, &mut child) {
            Ok(a) => Some(a),
            Err(e) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(RunError::Spawn(e));
            }
        },
    };
    let raw = attached.as_ref().is_some_and(|a| a.raw());

    let stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let (tx, rx) = mpsc::channel::<String>();
    let exited = Arc::new(AtomicBool::new(false));
    let reader = match serial {
        Serial::Stdout => thread::spawn(move || forward_lines(stdout, &tx)),
        Serial::File(path) => {
            // Bochs' own stdout (debugger prompts) is not the serial port.
            thread::spawn(move || {
                io::copy(&mut BufReader::new(stdout), &mut io::sink())
                    .map(drop)
                    .unwrap_or(())
            });
            let exited = Arc::clone(&exited);
            thread::spawn(move || follow_file(&path, &tx, &exited))
        }
    };
    let err_reader = thread::spawn(move || {
        let mut s = Vec::new();
        let _ = stderr.read_to_end(&mut s);
        String::from_utf8_lossy(&s).into_owned()
    });

    let deadline = start + opts.timeout;
    let mut status = None;
    let mut until = deadline;
    let mut lines = Vec::new();
    let mut line_times = Vec::new();
    let mut eof = false;
    let mut reached = false;
    let out = io::stdout();
    loop {
        let now = Instant::now();
        if now >= until {
            break;
        }
        // Wake up now and then to notice an emulator that ended: a file
        // reader only stops once it knows no more output can come.
        match rx.recv_timeout((until - now).min(Duration::from_millis(100))) {
            Ok(line) => {
                if let Some(f) = log.as_mut() {
                    let _ = writeln!(f, "{line}");
                }
                if opts.live && attached.is_none() {
                    let mut o = out.lock();
                    let _ = writeln!(o, "{line}");
                    let _ = o.flush();
                } else if opts.live && line.starts_with("keel: ") {
                    // Keel's own lines beside the console: its state and
                    // the prompt's statistics.
                    let end = if raw { "\r\n" } else { "\n" };
                    eprint!("{line}{end}");
                }
                if status.is_none() {
                    if let Some(n) = final_status(&line) {
                        status = Some(n);
                        until = now + opts.grace;
                    }
                }
                let hit = opts.stop_at.as_deref().is_some_and(|s| line.contains(s));
                if let (Some(qmp), Some(file)) = (qmp, &opts.display.screenshot) {
                    if line.contains(crate::display::LAST_FRAME_LINE) {
                        let end = if raw { "\r\n" } else { "\n" };
                        match crate::display::screendump(qmp, file) {
                            Ok(()) => eprint!(
                                "xtask: screenshot of the machine's display: {}{end}",
                                file.display()
                            ),
                            Err(e) => eprint!("xtask: no screenshot: {e}{end}"),
                        }
                    }
                }
                lines.push(line);
                line_times.push(start.elapsed());
                if hit && status.is_none() {
                    reached = true;
                    break;
                }
            }
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if matches!(child.try_wait(), Ok(Some(_))) {
                    exited.store(true, Ordering::SeqCst);
                }
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                eof = true;
                break;
            }
        }
    }
    if !eof {
        // Still running: past the timeout, or past the grace after the final line.
        let _ = child.kill();
    }
    let emulator_status = child.wait().ok();
    exited.store(true, Ordering::SeqCst);
    if !eof {
        // A file reader ends once it has sent what the emulator wrote last.
        while let Ok(line) = rx.recv_timeout(Duration::from_secs(2)) {
            if status.is_none() {
                status = final_status(&line);
            }
            if let Some(f) = log.as_mut() {
                let _ = writeln!(f, "{line}");
            }
            lines.push(line);
            line_times.push(start.elapsed());
        }
    }
    drop(rx);
    let _ = reader.join();
    if let Some(a) = attached {
        a.finish();
    }
    let emulator_stderr = err_reader.join().unwrap_or_default();

    let end = match status {
        Some(n) => End::Status(n),
        None if reached => End::Reached,
        None if eof => End::NoFinalLine,
        None => End::TimedOut,
    };
    Ok(Outcome {
        end,
        lines,
        line_times,
        emulator_stderr,
        emulator_status,
        elapsed: start.elapsed(),
        timeout: opts.timeout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sh(script: &str) -> Command {
        let mut c = Command::new("sh");
        c.arg("-c").arg(script);
        c
    }

    fn opts(timeout_ms: u64) -> RunOptions {
        RunOptions {
            timeout: Duration::from_millis(timeout_ms),
            grace: Duration::from_millis(300),
            ..RunOptions::default()
        }
    }

    /// Only a start-up failure of Bochs' display, before any serial line,
    /// is started again; anything Keel printed makes the run a verdict.
    #[test]
    fn only_a_bochs_display_start_failure_is_retried() {
        let outcome = |lines: &[&str], stderr: &str| Outcome {
            end: End::NoFinalLine,
            lines: lines.iter().map(|l| l.to_string()).collect(),
            line_times: lines.iter().map(|_| Duration::ZERO).collect(),
            emulator_stderr: stderr.into(),
            emulator_status: None,
            elapsed: Duration::from_millis(200),
            timeout: Duration::from_secs(1),
        };
        let rfb = "[RFB   ] RFB could not bind any port between 5900 and 5949";
        assert!(bochs_failed_to_start(&outcome(&[], rfb)));
        assert!(!bochs_failed_to_start(&outcome(&["keel: starting"], rfb)));
        assert!(!bochs_failed_to_start(&outcome(
            &[],
            "panic: something else"
        )));
    }

    #[test]
    fn final_line_parsing() {
        assert_eq!(final_status("keel: exit status 0"), Some(0));
        assert_eq!(final_status("keel: exit status 125\r"), Some(125));
        assert_eq!(final_status("keel: exit status 255"), Some(255));
        assert_eq!(final_status("keel: exit status 256"), None);
        assert_eq!(final_status("keel: exit status "), None);
        assert_eq!(final_status("[vm] keel: exit status 3"), None);
        assert_eq!(final_status("keel: exit status 3 and more"), None);
    }

    #[test]
    fn grub_escapes_and_carriage_returns_are_cleaned() {
        assert_eq!(
            clean_line("\u{1b}[H\u{1b}[J\u{1b}[1;1H  Booting `Keel'"),
            "  Booting `Keel'"
        );
        assert_eq!(clean_line("\rkeel: exit status 0\r"), "keel: exit status 0");
        assert_eq!(clean_line("a\tb\u{1b}"), "a\tb");
        assert_eq!(clean_line("caf\u{e9} \u{1b}(B ok"), "caf\u{e9}  ok");
    }

    #[test]
    fn recorded_log_ends_with_the_final_status() {
        // A run as docs/ARCHITECTURE.md describes it; the emulator exits by
        // itself after the final line (Keel wrote to isa-debug-exit).
        let log = "GRUB junk\r\nkeel: booting\r\n[selftest] PASS cpuid\r\n\
                   keel: VM 'selftest' stopped: guest debug-exit with status 0\r\n\
                   keel: exit status 0\r\n";
        let mut cmd = sh("printf '%s' \"$LOG\"; exit 1");
        cmd.env("LOG", log);
        let o = run_command(cmd, &opts(10_000)).unwrap();
        assert_eq!(o.end, End::Status(0));
        assert_eq!(o.exit_code(), 0);
        assert_eq!(o.lines.len(), 5);
        assert_eq!(o.lines[2], "[selftest] PASS cpuid");
        assert_eq!(
            o.stop_lines().collect::<Vec<_>>(),
            ["keel: VM 'selftest' stopped: guest debug-exit with status 0"]
        );
        assert!(o.elapsed < Duration::from_secs(5));
    }

    #[test]
    fn an_emulator_that_lingers_after_the_final_line_is_killed_after_the_grace() {
        let o = run_command(
            sh("echo 'keel: exit status 125'; echo after; exec sleep 30"),
            &opts(20_000),
        )
        .unwrap();
        assert_eq!(o.end, End::Status(125));
        assert_eq!(o.exit_code(), 125);
        assert_eq!(o.lines, ["keel: exit status 125", "after"]);
        assert!(o.elapsed < Duration::from_secs(5), "{:?}", o.elapsed);
        assert!(!o.emulator_status.unwrap().success());
    }

    #[test]
    fn an_emulator_that_ends_without_the_final_line_fails() {
        let o = run_command(
            sh("echo 'keel: booting'; echo oops >&2; exit 3"),
            &opts(10_000),
        )
        .unwrap();
        assert_eq!(o.end, End::NoFinalLine);
        assert_ne!(o.exit_code(), 0);
        let r = o.report();
        assert!(r.contains("without Keel's final line"), "{r}");
        assert!(r.contains("  | keel: booting"), "{r}");
        assert!(r.contains("oops"), "{r}");
    }

    #[test]
    fn a_hung_emulator_times_out_with_the_tail_of_its_log() {
        let o = run_command(
            sh("i=0; while [ $i -lt 50 ]; do echo line $i; i=$((i+1)); done; exec sleep 30"),
            &opts(700),
        )
        .unwrap();
        assert_eq!(o.end, End::TimedOut);
        assert_eq!(o.exit_code(), TIMEOUT_EXIT);
        assert!(o.elapsed < Duration::from_secs(5));
        let tail = o.tail(TAIL_LINES);
        assert_eq!(tail.len(), 40);
        assert_eq!(tail[0], "line 10");
        assert_eq!(tail[39], "line 49");
        assert!(o.report().contains("timed out after 0 s"));
    }

    #[test]
    fn host_disks_and_host_net_are_refused_under_bochs() {
        let o = RunOptions {
            host_disks: vec![PathBuf::from("disk.img")],
            ..RunOptions::default()
        };
        let e = run_iso(Path::new("k.iso"), Backend::Vmx, &o).unwrap_err();
        assert!(e.to_string().contains("Bochs has no virtio-blk"), "{e}");
        let o = RunOptions {
            host_net: Some(HostNet::default()),
            ..RunOptions::default()
        };
        let e = run_iso(Path::new("k.iso"), Backend::Vmx, &o).unwrap_err();
        assert!(e.to_string().contains("Bochs has no virtio-net"), "{e}");
    }

    #[test]
    fn a_missing_emulator_is_a_spawn_error() {
        let e = run_command(Command::new("/nonexistent/qemu"), &opts(1000)).unwrap_err();
        assert!(e.to_string().contains("cannot start /nonexistent/qemu"));
    }

    #[test]
    fn a_serial_file_is_followed_to_its_last_partial_line() {
        let dir = std::env::temp_dir().join(format!("keel-runner-follow-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let serial = dir.join("serial.txt");
        std::fs::write(&serial, "").unwrap();
        // Like Bochs: the serial goes to a file, stdout is noise, and the last
        // line loses its newline when the emulator ends.
        let mut cmd = sh(
            "echo '<bochs:1>'; printf 'keel: booting\\r\\n' >> \"$F\"; sleep 0.3; \
                          printf 'keel: exit status 125' >> \"$F\"; exit 1",
        );
        cmd.env("F", &serial);
        let o = run_command_with(cmd, &opts(10_000), Serial::File(serial)).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(o.end, End::Status(125), "{}", o.report());
        assert_eq!(o.lines, ["keel: booting", "keel: exit status 125"]);
        assert!(
            o.elapsed < Duration::from_secs(3),
            "no grace wait once it ended: {:?}",
            o.elapsed
        );
    }

    #[test]
    fn a_hung_bochs_style_run_times_out_with_its_tail() {
        let dir = std::env::temp_dir().join(format!("keel-runner-hang-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let serial = dir.join("serial.txt");
        std::fs::write(&serial, "").unwrap();
        let mut cmd = sh("printf 'keel: VMLAUNCH failed\\n' >> \"$F\"; exec sleep 30");
        cmd.env("F", &serial);
        let o = run_command_with(cmd, &opts(700), Serial::File(serial)).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        assert_eq!(o.end, End::TimedOut);
        assert!(
            o.report().contains("  | keel: VMLAUNCH failed"),
            "{}",
            o.report()
        );
    }

    #[test]
    fn a_run_ends_when_the_awaited_line_appears() {
        let o = run_command(
            sh("printf '[vm:bios] POST\\n[vm:bios] No bootable device.\\n'; exec sleep 30"),
            &RunOptions {
                stop_at: Some("No bootable device".into()),
                ..opts(20_000)
            },
        )
        .unwrap();
        assert_eq!(o.end, End::Reached, "{}", o.report());
        assert!(
            o.elapsed < Duration::from_secs(10),
            "killed at once, not at the timeout"
        );
        assert_eq!(
            o.lines.last().map(String::as_str),
            Some("[vm:bios] No bootable device.")
        );
        assert!(!o.failed());
        assert_eq!(o.exit_code(), 0);
    }

    #[test]
    fn bochsrc_is_headless_and_unattended() {
        let rc = bochsrc(
            Path::new("/t/k.iso"),
            "corei7_haswell_4770",
            1,
            512,
            Path::new("/d/serial.txt"),
            Path::new("/d/bochs.log"),
        );
        for want in [
            "megs: 512\n",
            "cpu: model=corei7_haswell_4770, count=1, ips=100000000, reset_on_triple_fault=0\n",
            "ata0-master: type=cdrom, path=\"/t/k.iso\", status=inserted\n",
            "boot: cdrom\n",
            "com1: enabled=1, mode=file, dev=\"/d/serial.txt\"\n",
            "display_library: rfb, options=\"timeout=0\"\n",
            "sound: driver=dummy\n",
        ] {
            assert!(rc.contains(want), "{want} missing from\n{rc}");
        }
        // A machine of several CPUs: Bochs' SMP `count`; none is one.
        for (cpus, count) in [(2, "count=2,"), (4, "count=4,"), (0, "count=1,")] {
            let rc = bochsrc(
                Path::new("k.iso"),
                "corei7_skylake_x",
                cpus,
                512,
                Path::new("s"),
                Path::new("l"),
            );
            assert!(rc.contains(count), "{count} missing from\n{rc}");
        }
        let c = bochs_command(Path::new("/d"));
        let args: Vec<_> = c.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(args.join(" "), "-q -f /d/bochsrc -rc /d/debugger.rc");
    }

    #[test]
    fn qemu_command_line() {
        let c = qemu_command(Path::new("/t/k.iso"), Accel::Tcg, 512, &[], None);
        let args: Vec<_> = c.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            args.join(" "),
            "-machine pc -accel tcg -cpu max -m 512 -display none -vga none -serial stdio \
             -no-reboot -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -drive file=/t/k.iso,if=none,id=keel-cd,media=cdrom,readonly=on \
             -device ahci,id=ahci -device ide-cd,drive=keel-cd,bus=ahci.0,bootindex=0"
        );
        let d = qemu_command(
            Path::new("k.iso"),
            Accel::Tcg,
            512,
            &[PathBuf::from("/d/a.img"), PathBuf::from("/d/b,c.img")],
            None,
        );
        let args: Vec<_> = d.get_args().map(|a| a.to_string_lossy()).collect();
        assert!(args.join(" ").ends_with(
            "bootindex=0 -drive if=virtio,file=/d/a.img,format=raw \
             -drive if=virtio,file=/d/b,,c.img,format=raw"
        ));
        let m = qemu_command_smp(Path::new("k.iso"), Accel::Tcg, 512, 2, &[], None);
        let args: Vec<_> = m.get_args().map(|a| a.to_string_lossy()).collect();
        assert!(args
            .join(" ")
            .starts_with("-machine pc -accel tcg,thread=multi -cpu max -smp 2 -m 512 "));
        let k = qemu_command(Path::new("k.iso"), Accel::Kvm, 1024, &[], None);
        let args: Vec<_> = k.get_args().map(|a| a.to_string_lossy()).collect();
        assert!(args.join(" ").contains("-accel kvm -cpu host -m 1024"));
        let net = HostNet {
            guestfwds: vec!["10.0.2.100:80=4000".parse().unwrap()],
            ..HostNet::default()
        };
        let n = qemu_command(
            Path::new("k.iso"),
            Accel::Tcg,
            512,
            &[PathBuf::from("a.img")],
            Some(&net),
        );
        let args: Vec<_> = n.get_args().map(|a| a.to_string_lossy()).collect();
        assert!(args.join(" ").ends_with(
            "-drive if=virtio,file=a.img,format=raw -netdev user,id=hostnet0,restrict=on,\
             guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:4000 -device virtio-net-pci,netdev=hostnet0"
        ));
    }
}
