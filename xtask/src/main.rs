//! `cargo xtask build | run | test | fuzz`: see `cargo xtask help`.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use xtask::deps;
use xtask::iso::{self, VmFile};
use xtask::progress::Step;
use xtask::runner::{self, Backend, RunOptions};
use xtask::workspace::{self, Workspace, ARTIFACTS_ENV, BARE_METAL_TARGET};

const USAGE: &str = "\
usage: cargo xtask <command>

commands:
  build [--vm FILE]...   build Keel and the test guests, then a GRUB ISO per VM config
                         (default: every tests/vms/*.cfg) as target/keel/<vm name>.iso
  run [--backend svm|vmx] [--cpu-model M] [--vm FILE]... [--cpus N] [--timeout SECS]
      [--log FILE] [--host-disk IMG]... [--display vnc] [--screenshot FILE.png]
      [--host-net] [--tftp DIR] [--bootfile NAME] [--guestfwd ADDR:PORT=HOSTPORT]...
      [--kernel-boot]
                         build and boot VM configs (default tests/vms/selftest.cfg;
                         several --vm: one boot, each vCPU on a CPU of its own, QEMU
                         -smp or Bochs cpu: count= one per vCPU unless --cpus N)
                         under QEMU (svm, the default) or Bochs (vmx, CPU model M,
                         default corei7_skylake_x), exit with Keel's status (124 on
                         timeout, default 60 s, none at a terminal, 180 s on vmx);
                         under QEMU the terminal is the VM's console (raw mode; the
                         guest's output unchanged, stdin typed into its COM1; Ctrl-]
                         opens Keel's prompt: list, switch, stats, end, quit), Keel's
                         log goes to --log FILE (default target/keel/<vm>.log) and
                         its keel: lines to stderr; under Bochs the log streams;
                         --display vnc gives the machine QEMU's standard VGA, on
                         which Keel shows the console's VM, served by VNC on
                         127.0.0.1 (the address is printed); --screenshot FILE saves
                         that display when the VM ends (PNG; PPM for .ppm; QEMU only);
                         each --host-disk attaches a raw image as the machine's next
                         virtio-blk disk (virtio0, virtio1, ...; QEMU only), and so,
                         after them, does each writable disk file the config names
                         ('disk.img,raw,hda,rw'; add 'volatile' for a RAM disk);
                         --kernel-boot has QEMU load Keel (a multiboot kernel) and
                         the ISO's modules itself (-kernel, -initrd) instead of GRUB
                         reading them from the CD, as cargo xtask bench does;
                         --host-net (implied by a vif in the config or by any of the
                         options after it) gives the machine a virtio-net NIC (virtio0)
                         on QEMU's user network with restrict=on: the guest reaches
                         QEMU's DHCP and TFTP servers and the guestfwd rules only;
                         the TFTP root is DIR (default target/keel/tftp, the netboot
                         test's iPXE script and kernel), NAME the boot file DHCP
                         offers (default boot.ipxe with the default root); each
                         --guestfwd takes the guest's TCP connections to ADDR:PORT
                         to 127.0.0.1:HOSTPORT; xtask's test HTTP server (the network
                         test's file) is always at 10.0.2.100:80 unless a --guestfwd
                         takes that address; QEMU only
  test                   host unit tests (with the fuzz harness's fixed-seed pass and
                         its regression seeds, in release mode), build, then the
                         integration tests (tests/)
  fuzz [--minutes N] [--target devices|exits|config|xenstore|xen] [--seed S]
                         the host fuzz harness (crates/fuzz) with random seeds for N
                         minutes (default 1), every target unless --target names one;
                         a failure prints its target, seed and case and saves the seed
                         in crates/fuzz/regressions/<target>.txt; --seed S replays one
  direct-boot [--vm FILE] [--timeout SECS]
                         boot the VM config's kernel/ramdisk/cmdline (default
                         tests/vms/linux.cfg) with the BIOS shim on plain QEMU, no Keel:
                         the shim as -bios, the fw_cfg files of firmware/README.md
                         (ACPI tables from acpi-gen); exits with the guest's status
  bench [--timeout SECS] [--only exits|ide|net|shim|screen|smp]
                         boot tests/vms/linux.cfg under Keel and the same kernel and
                         initramfs on plain QEMU TCG (-kernel); time a 2 KiB bzImage
                         (tests/vms/shimbench.cfg) from VM start to its first
                         instruction under Keel's shim, on plain QEMU with SeaBIOS and
                         linuxboot (-kernel) and with the shim as -bios; run the exitbench guest
                         (tests/vms/exitbench.cfg) under Keel, and the Debian IDE disk
                         image under Keel and on plain QEMU TCG (-drive if=ide), reading
                         its disk with DMA and PIO and reading and writing a virtio-blk
                         disk (QEMU: -drive if=virtio), and under Keel with
                         xen_platform_pci = 1 through xen-blkfront (no QEMU side);
                         print one table (times, ratios, cycles per exit and Keel's
                         share, MiB/s, VM exits per MiB), write
                         target/bench/boot.json, exits.json and ide.json;
                         then Debian's kernel with the network initramfs downloads
                         a file over HTTP under Keel through the e1000, virtio-net
                         and xen-netfront (32 MiB, and 1 MiB for the exit baseline)
                         and on plain QEMU TCG (-nic user,model=e1000,restrict=on):
                         MiB/s, ratios, VM exits per MiB (target/bench/net.json);
                         the screendisk boot disk scrolls the text screen through
                         INT 10h and fills the 1024x768x32 framebuffer under Keel
                         and on plain QEMU TCG (-device VGA): time per scroll and
                         fill, VM exits of each (target/bench/screen.json);
                         then Debian with 1, 2 and 4 vCPUs under Keel and on plain
                         QEMU TCG with the same -smp (to /init and power-off,
                         ratio), and one VM's boot alone against two VMs booting at
                         once on two CPUs (target/bench/smp.json);
                         --only exits runs only the exit bench, --only ide only
                         the disk bench, --only net only the network bench, --only
                         shim only the shim bench (target/bench/shim.json), --only
                         screen only the screen bench, --only smp only the SMP bench
  help                   this text";

/// The bench sections `cargo xtask bench --only` runs alone.
const ONLY_SECTIONS: &str = "'exits', 'ide', 'net', 'shim', 'screen' and 'smp'";

/// Exit code for a usage error.
const USAGE_EXIT: u8 = 2;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match dispatch(&args) {
        Ok(code) => ExitCode::from(code),
        Err(Failure::Usage(msg)) => {
            eprintln!("xtask: {msg}\n\n{USAGE}");
            ExitCode::from(USAGE_EXIT)
        }
        Err(Failure::Exit(code, msg)) => {
            eprintln!("xtask: error: {msg}");
            ExitCode::from(code)
        }
    }
}

enum Failure {
    Usage(String),
    Exit(u8, String),
}

impl From<String> for Failure {
    fn from(msg: String) -> Self {
        Failure::Exit(1, msg)
    }
}

fn dispatch(args: &[String]) -> Result<u8, Failure> {
    let Some((cmd, rest)) = args.split_first() else {
        return Err(Failure::Usage("no command given".into()));
    };
    match cmd.as_str() {
        "build" => build_cmd(rest),
        "run" => run_cmd(rest),
        "test" => test_cmd(rest),
        "direct-boot" => direct_boot_cmd(rest),
        "bench" => bench_cmd(rest),
        "fuzz" => fuzz_cmd(rest),
        "help" | "--help" | "-h" => {
            println!("{USAGE}");
            Ok(0)
        }
        other => Err(Failure::Usage(format!("unknown command '{other}'"))),
    }
}

/// `--flag VALUE` pairs; every flag must be in `known`.
fn flags<'a>(args: &'a [String], known: &[&str]) -> Result<Vec<(&'a str, &'a str)>, Failure> {
    let mut out = Vec::new();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        if !known.contains(&a.as_str()) {
            return Err(Failure::Usage(format!("unexpected argument '{a}'")));
        }
        let v = it
            .next()
            .ok_or_else(|| Failure::Usage(format!("{a} needs a value")))?;
        out.push((a.as_str(), v.as_str()));
    }
    Ok(out)
}

fn build_cmd(args: &[String]) -> Result<u8, Failure> {
    let ws = Workspace::locate()?;
    let mut vms: Vec<PathBuf> = flags(args, &["--vm"])?
        .into_iter()
        .map(|(_, v)| PathBuf::from(v))
        .collect();
    if vms.is_empty() {
        vms = test_vm_files(&ws)?;
    }
    build(&ws, &vms)?;
    Ok(0)
}

fn run_cmd(args: &[String]) -> Result<u8, Failure> {
    let started = std::time::Instant::now();
    // The flags without a value.
    let mut host_net = args.iter().any(|a| a == "--host-net");
    let kernel_boot = args.iter().any(|a| a == "--kernel-boot");
    let args: Vec<String> = args
        .iter()
        .filter(|a| *a != "--host-net" && *a != "--kernel-boot")
        .cloned()
        .collect();
    let mut tftp = None;
    let mut bootfile = None;
    let mut guestfwds: Vec<xtask::net::GuestFwd> = Vec::new();
    let mut backend = Backend::Svm;
    let mut vm_paths: Vec<PathBuf> = Vec::new();
    let mut cpus: Option<u32> = None;
    let mut timeout = None;
    let mut cpu_model = None;
    let mut host_disks = Vec::new();
    let mut log = None;
    let mut display = xtask::display::DisplayOptions::default();
    let known = [
        "--display",
        "--screenshot",
        "--log",
        "--backend",
        "--vm",
        "--cpus",
        "--timeout",
        "--cpu-model",
        "--host-disk",
        "--tftp",
        "--bootfile",
        "--guestfwd",
    ];
    for (flag, value) in flags(&args, &known)? {
        match flag {
            "--tftp" => {
                if !Path::new(value).is_dir() {
                    return Err(Failure::Usage(format!(
                        "--tftp {value}: there is no such directory"
                    )));
                }
                tftp = Some(PathBuf::from(value));
                host_net = true;
            }
            "--bootfile" => {
                bootfile = Some(value.to_string());
                host_net = true;
            }
            "--guestfwd" => {
                guestfwds.push(value.parse().map_err(Failure::Usage)?);
                host_net = true;
            }
            "--display" if value == "vnc" => {
                let n = xtask::display::free_vnc_display().ok_or_else(|| {
                    Failure::Usage("--display vnc: no free VNC port from 5900 to 5999".into())
                })?;
                display.vnc = Some(n);
            }
            "--display" => {
                return Err(Failure::Usage(format!(
                    "--display {value}: the one display is 'vnc'"
                )))
            }
            "--screenshot" => {
                let file = PathBuf::from(value);
                display.screenshot = Some(if file.is_absolute() {
                    file
                } else {
                    std::env::current_dir()
                        .map_err(|e| Failure::Usage(format!("--screenshot: {e}")))?
                        .join(file)
                });
            }
            "--backend" => backend = value.parse().map_err(Failure::Usage)?,
            "--log" => log = Some(PathBuf::from(value)),
            "--vm" => vm_paths.push(PathBuf::from(value)),
            "--cpus" => match value.parse::<u32>() {
                Ok(n) if (1..=64).contains(&n) => cpus = Some(n),
                _ => {
                    return Err(Failure::Usage(format!(
                        "--cpus {value}: expected a number of CPUs from 1 to 64"
                    )))
                }
            },
            "--cpu-model" => cpu_model = Some(value.to_string()),
            "--host-disk" => {
                let file = PathBuf::from(value);
                if !file.is_file() {
                    return Err(Failure::Usage(format!(
                        "--host-disk {value}: there is no such file (a raw disk image)"
                    )));
                }
                host_disks.push(file);
            }
            _ => match value.parse::<u64>() {
                Ok(s) if s > 0 => timeout = Some(Duration::from_secs(s)),
                _ => {
                    return Err(Failure::Usage(format!(
                        "--timeout {value}: expected a whole number of seconds above 0"
                    )))
                }
            },
        }
    }
    if cpu_model.is_some() && backend != Backend::Vmx {
        return Err(Failure::Usage(
            "--cpu-model chooses the Bochs CPU for --backend vmx".into(),
        ));
    }
    if kernel_boot && backend == Backend::Vmx {
        return Err(Failure::Usage(
            "--kernel-boot loads Keel with QEMU's -kernel: it works with --backend svm (QEMU) \
             only; Bochs boots the ISO"
                .into(),
        ));
    }
    if display.wanted() && backend == Backend::Vmx {
        return Err(Failure::Usage(
            "--display and --screenshot drive QEMU's VNC server and monitor: they work with \
             --backend svm (QEMU) only"
                .into(),
        ));
    }
    if let Some(n) = display.vnc {
        eprintln!(
            "xtask: the machine's display: connect a VNC viewer to 127.0.0.1:{} (display :{n})",
            5900 + u32::from(n)
        );
    }
    if !host_disks.is_empty() && backend == Backend::Vmx {
        return Err(Failure::Usage(
            "--host-disk attaches a virtio-blk disk, which Bochs does not have: host disks \
             work with --backend svm (QEMU) only"
                .into(),
        ));
    }
    // Bochs is an interpreter: BIOS, GRUB and Keel take seconds, not fractions.
    let check_net = |host_net: bool| {
        if host_net && backend == Backend::Vmx {
            return Err(Failure::Usage(
                "host networking gives the machine a virtio-net NIC, which Bochs does not \
                 have: --host-net, --tftp, --bootfile, --guestfwd and VM configs with a vif \
                 work with --backend svm (QEMU) only"
                    .into(),
            ));
        }
        Ok(())
    };
    check_net(host_net)?;
    // Keel's console (COM2 on a socket) needs QEMU; someone at a terminal
    // is not timed out unless they ask.
    let console = backend == Backend::Svm;
    let at_terminal = console && std::io::IsTerminal::is_terminal(&std::io::stdin());
    let timeout = timeout.unwrap_or(Duration::from_secs(match backend {
        Backend::Svm if at_terminal => 24 * 3600,
        Backend::Svm => 60,
        Backend::Vmx => 180,
    }));
    let ws = Workspace::locate()?;
    if vm_paths.is_empty() {
        vm_paths.push(ws.test_vms_dir().join("selftest.cfg"));
    }
    let vm = vm_paths[0].clone();
    // Writable disk files become the machine's next virtio-blk disks.
    let plan = iso::host_disk_plan(&VmFile::load(&vm)?)?;
    if let (Some(f), Backend::Vmx) = (plan.files.first(), backend) {
        return Err(Failure::Usage(format!(
            "{}: disk '{}' is a writable disk file, which xtask keeps by attaching it as a \
             virtio-blk disk; Bochs has none. Run it with --backend svm (QEMU), or add \
             '{}' to the entry to run it from Keel's RAM (the guest's writes are then lost)",
            vm.display(),
            f.entry,
            vm_config::VOLATILE_FLAG
        )));
    }
    let host_disks = plan.attach(&host_disks).map_err(Failure::Usage)?;
    let (all, iso) = if vm_paths.len() == 1 {
        let mut built = build(&ws, &[vm])?;
        let (vm, iso) = built.remove(0);
        (vec![vm], iso)
    } else {
        build_together(&ws, &vm_paths)?
    };
    let iso = &iso;
    let vm = &all[0];
    // One host CPU per vCPU (Keel runs each vCPU on a CPU of its own);
    // --cpus overrides.
    let cpus = cpus.unwrap_or_else(|| all.iter().map(|v| v.config.vcpus.max(1)).sum());
    let boot_name = iso::boot_name(&all);
    let memory: u32 = all.iter().map(|v| v.config.memory_mib).sum();
    let host_net = host_net || !vm.config.vifs.is_empty();
    check_net(host_net)?;
    // Kept alive for the run: the HTTP server stops when it is dropped.
    let network = if host_net {
        let t = xtask::net_assets::test_network(&ws.bare_metal_dir(), None)?;
        let mut net = t.net.clone();
        if let Some(dir) = tftp {
            net.tftp = Some(dir);
            net.bootfile = None;
        }
        if bootfile.is_some() {
            net.bootfile = bootfile;
        }
        let theirs: Vec<_> = guestfwds.iter().map(|f| f.guest).collect();
        net.guestfwds.retain(|f| !theirs.contains(&f.guest));
        net.guestfwds.extend(guestfwds);
        eprintln!(
            "xtask: host network: virtio-net on QEMU's user network ({}); test HTTP server \
             on 127.0.0.1:{}",
            net.user_options(),
            t.server.port()
        );
        Some((t, net))
    } else {
        None
    };
    let mut opts = RunOptions {
        timeout,
        live: true,
        memory_mib: runner::host_memory_mib(memory),
        host_disks,
        host_net: network.as_ref().map(|(_, net)| net.clone()),
        console,
        log: Some(log.unwrap_or_else(|| {
            ws.artifacts_dir()
                .join(format!("{}.log", workspace::file_stem_for(&boot_name)))
        })),
        cpus,
        display,
        multiboot: kernel_boot,
        ..RunOptions::default()
    };
    if let Some(m) = cpu_model {
        opts.cpu_model = m;
    }
    match backend {
        Backend::Svm => {
            deps::ensure(deps::QEMU)?;
            eprintln!(
                "xtask: booting {} (VM '{}') under QEMU, {:?}, {cpus} CPU{}; the log goes to {}; \
                 Ctrl-] opens Keel's prompt",
                iso.display(),
                boot_name,
                runner::detect_accel(backend),
                if cpus == 1 { "" } else { "s" },
                opts.log.as_deref().unwrap_or(Path::new("-")).display()
            );
        }
        Backend::Vmx => {
            deps::ensure(deps::BOCHS)?;
            eprintln!(
                "xtask: booting {} (VM '{}') under Bochs, cpu model {}, {cpus} CPU{}",
                iso.display(),
                boot_name,
                opts.cpu_model,
                if cpus == 1 { "" } else { "s" },
            );
        }
    }
    let before_emulator = started.elapsed();
    let outcome = runner::run_iso(iso, backend, &opts).map_err(|e| e.to_string())?;
    eprintln!(
        "{}",
        xtask::progress::first_output_line(&vm.config.name, before_emulator, &outcome)
    );
    if let Some((t, _)) = network {
        for (path, status, bytes) in t.server.stop().requests {
            eprintln!("xtask: the test HTTP server answered GET {path}: {status}, {bytes} bytes");
        }
    }
    if let Some(file) = &opts.display.screenshot {
        if !outcome
            .lines
            .iter()
            .any(|l| l.contains(xtask::display::LAST_FRAME_LINE))
        {
            eprintln!(
                "xtask: no screenshot in {}: Keel showed no last frame (no VM with \
                 stdvga = 1 had the console when it ended)",
                file.display()
            );
        }
    }
    if outcome.failed() {
        eprintln!("xtask: {}", outcome.report());
    } else {
        eprintln!("xtask: {}", outcome.summary());
    }
    Ok(u8::try_from(outcome.exit_code()).unwrap_or(1))
}

fn test_cmd(args: &[String]) -> Result<u8, Failure> {
    if let Some(a) = args.first() {
        return Err(Failure::Usage(format!("unexpected argument '{a}'")));
    }
    let ws = Workspace::locate()?;
    deps::ensure(deps::ISO_TOOLS)?;
    deps::ensure(deps::QEMU)?;
    deps::ensure(deps::BOCHS)?;

    step("format and lints: cargo fmt --check, cargo clippy -D warnings");
    cargo(&ws, &["fmt", "--all", "--", "--check"])?;
    cargo(
        &ws,
        &[
            "clippy",
            "--workspace",
            "--exclude",
            "test-guests",
            "--exclude",
            "test-disks",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ],
    )?;
    let mut clippy_bare = vec!["clippy"];
    clippy_bare.extend(bare_metal_packages());
    clippy_bare.extend(["--target", BARE_METAL_TARGET, "--", "-D", "warnings"]);
    cargo(&ws, &clippy_bare)?;

    step("host unit tests: cargo test (host crates and keel's host-testable library)");
    cargo(
        &ws,
        &[
            "test",
            "--no-fail-fast",
            "--workspace",
            "--exclude",
            "keel-tests",
            "--exclude",
            "test-guests",
            "--exclude",
            "test-disks",
            "--exclude",
            xtask::fuzz::PACKAGE,
        ],
    )?;
    // 100,000 cases per target take minutes unoptimised, seconds optimised.
    step("host fuzz harness: fixed seeds and regressions (cargo test --release -p keel-fuzz)");
    cargo(
        &ws,
        &[
            "test",
            "--release",
            "--no-fail-fast",
            "-p",
            xtask::fuzz::PACKAGE,
        ],
    )?;

    let vms = test_vm_files(&ws)?;
    build(&ws, &vms)?;

    step("integration tests: cargo test -p keel-tests");
    let status = Command::new(workspace::cargo())
        .args(["test", "--no-fail-fast", "-p", "keel-tests"])
        .env(ARTIFACTS_ENV, ws.artifacts_dir())
        .current_dir(&ws.root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("integration tests failed ({status})").into());
    }
    eprintln!("xtask: all tests passed");
    Ok(0)
}

/// `cargo xtask fuzz`: the harness's long run (see USAGE and xtask/src/fuzz.rs).
fn fuzz_cmd(args: &[String]) -> Result<u8, Failure> {
    let mut replay = false;
    for (flag, value) in flags(args, &["--minutes", "--target", "--seed"])? {
        match flag {
            "--minutes" if !value.parse::<u64>().is_ok_and(|m| m > 0) => {
                return Err(Failure::Usage(format!(
                    "--minutes {value}: expected a whole number of minutes above 0"
                )))
            }
            "--target" if !["devices", "exits", "config"].contains(&value) => {
                return Err(Failure::Usage(format!(
                    "--target {value}: expected devices, exits or config"
                )))
            }
            "--seed" => replay = true,
            _ => {}
        }
    }
    let ws = Workspace::locate()?;
    step("cargo run --release -p keel-fuzz");
    match xtask::fuzz::run(&ws, args)? {
        None => Ok(0),
        Some(f) if replay => Err(format!(
            "{} seed {} still fails at case {}",
            f.target, f.seed, f.case
        )
        .into()),
        Some(f) => {
            let file = xtask::fuzz::save_regression(&ws.root, &f)?;
            Err(format!(
                "{} seed {} fails at case {}; saved in {} (every run replays it; commit it \
                 with the fix)",
                f.target,
                f.seed,
                f.case,
                file.display()
            )
            .into())
        }
    }
}

/// The crates built for the bare-metal target: Keel itself, the test guests
/// (firmware images), the test disks and the BIOS shim (`firmware/`).
const BARE_METAL_CRATES: &[&str] = &["keel", "test-guests", "test-disks", "keel-shim"];

/// `-p CRATE` for each of [`BARE_METAL_CRATES`].
fn bare_metal_packages() -> Vec<&'static str> {
    BARE_METAL_CRATES.iter().flat_map(|c| ["-p", *c]).collect()
}

/// MiB the IDE bench reads with DMA (the 32 MiB disk eight times: enough
/// exits to stand out of the noise between boots) and with PIO.
const BENCH_DMA_MIB: u32 = 256;
const BENCH_PIO_MIB: u32 = 16;
/// MiB the IDE bench reads from and writes to the virtio-blk scratch disk
/// (32 times the 32 MiB disk): virtio-blk makes so few exits per MiB that
/// over 256 MiB the baselines' own difference (up to 900 exits, timer
/// ticks of boots that took longer) was 3.6 per MiB, as much as the figure.
const BENCH_VIRTIO_READ_MIB: u32 = 1024;
const BENCH_VIRTIO_WRITE_MIB: u32 = 1024;
/// MiB xen-blkfront reads from the booted disk and writes to the scratch
/// disk on the Xen boots (as DMA's).
const BENCH_XEN_READ_MIB: u32 = 256;
const BENCH_XEN_WRITE_MIB: u32 = 256;

/// `cargo xtask bench`: boot time under Keel next to plain QEMU, and the IDE
/// bench (see USAGE and xtask/src/bench.rs).
fn bench_cmd(args: &[String]) -> Result<u8, Failure> {
    let ws = Workspace::locate()?;
    let mut timeout = Duration::from_secs(300);
    let mut only_exits = false;
    let mut only_net = false;
    let mut only_ide = false;
    let mut only_shim = false;
    let mut only_screen = false;
    let mut only_smp = false;
    for (flag, value) in flags(args, &["--timeout", "--only"])? {
        match (flag, value.parse::<u64>()) {
            ("--only", _) if value == "exits" => only_exits = true,
            ("--only", _) if value == "net" => only_net = true,
            ("--only", _) if value == "ide" => only_ide = true,
            ("--only", _) if value == "shim" => only_shim = true,
            ("--only", _) if value == "screen" => only_screen = true,
            ("--only", _) if value == "smp" => only_smp = true,
            ("--only", _) => {
                return Err(Failure::Usage(format!(
                    "--only {value}: the sections that run alone are {ONLY_SECTIONS}"
                )))
            }
            (_, Ok(s)) if s > 0 => timeout = Duration::from_secs(s),
            _ => {
                return Err(Failure::Usage(format!(
                    "--timeout {value}: expected a whole number of seconds above 0"
                )))
            }
        }
    }
    deps::ensure(deps::QEMU)?;
    let bench_dir = ws.target_dir.join("bench");
    let exits_path = ws.test_vms_dir().join("exitbench.cfg");
    let shim_path = ws.test_vms_dir().join("shimbench.cfg");
    if only_shim {
        let mut built = build(&ws, &[shim_path])?.into_iter();
        let mut runs = Runs::new(3 * xtask::bench::BOOT_ROUNDS);
        let shim = run_shim_bench(&ws, built.next(), timeout, &mut runs)?;
        print!("{}", xtask::bench::table(&[shim.rows()]));
        write_bench_json(&bench_dir, &[("shim.json", shim.json())])?;
        return Ok(0);
    }
    if only_exits {
        let mut built = build(&ws, &[exits_path])?.into_iter();
        let exits = run_exit_bench(built.next(), timeout, &mut Runs::new(1))?;
        print!("{}", exits.rows());
        write_bench_json(&bench_dir, &[("exits.json", exits.json())])?;
        return Ok(0);
    }
    if only_ide {
        let ide = prepare_ide_bench(&ws, &bench_dir.join("ide"))?;
        let configs: Vec<PathBuf> = ide.keel.iter().map(|r| r.config.clone()).collect();
        let isos = build(&ws, &configs)?;
        let (vm, _) = isos
            .first()
            .ok_or_else(|| "the IDE bench's configs were not built".to_string())?;
        let kernel = iso::resolve_image(
            vm,
            "kernel",
            xtask::guest_assets::DEBIAN_LINUX,
            &ws.bare_metal_dir(),
        )?
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let mut runs = Runs::new(ide.keel.len() + IDE_QEMU_AFTER.len());
        let ide = run_ide_bench(&ide, isos, kernel, timeout, &mut runs)?;
        print!("{}", xtask::bench::table(&[ide.rows()]));
        write_bench_json(&bench_dir, &[("ide.json", ide.json())])?;
        return Ok(0);
    }
    if only_screen {
        let screen = prepare_screen_bench(&ws, &bench_dir.join("screen"))?;
        let configs: Vec<PathBuf> = screen.keel.iter().map(|r| r.config.clone()).collect();
        let isos = build(&ws, &configs)?;
        let mut runs = Runs::new(screen.keel.len() + 1);
        let screen = run_screen_bench(&screen, isos, timeout, &mut runs)?;
        print!("{}", xtask::bench::table(&[screen.rows()]));
        write_bench_json(&bench_dir, &[("screen.json", screen.json())])?;
        return Ok(0);
    }
    if only_smp {
        let files = prepare_smp_bench(&ws, &bench_dir.join("smp"))?;
        let isos = build_smp_bench(&ws, &files)?;
        let smp = run_smp_bench(&ws, &isos, timeout, &mut Runs::new(SMP_RUNS))?;
        print!("{}", xtask::bench::table(&[smp.rows()]));
        write_bench_json(&bench_dir, &[("smp.json", smp.json())])?;
        return Ok(0);
    }
    let net_runs = prepare_net_bench(&ws, &bench_dir.join("net"))?;
    if only_net {
        let configs: Vec<PathBuf> = net_runs.iter().map(|r| r.0.clone()).collect();
        let built = build(&ws, &configs)?;
        let mut runs = Runs::new(net_runs.len() + 2);
        let net = run_net_bench(&ws, &net_runs, built, timeout, &mut runs)?;
        print!("{}", xtask::bench::table(&[net.rows()]));
        write_bench_json(&bench_dir, &[("net.json", net.json())])?;
        return Ok(0);
    }
    let vm_path = ws.test_vms_dir().join("linux.cfg");
    let ide = prepare_ide_bench(&ws, &bench_dir.join("ide"))?;
    let screen = prepare_screen_bench(&ws, &bench_dir.join("screen"))?;
    let mut vm_paths = vec![vm_path, exits_path, shim_path];
    vm_paths.extend(ide.keel.iter().map(|r| r.config.clone()));
    vm_paths.extend(screen.keel.iter().map(|r| r.config.clone()));
    vm_paths.extend(net_runs.iter().map(|r| r.0.clone()));
    let mut built = build(&ws, &vm_paths)?.into_iter();
    let smp_files = prepare_smp_bench(&ws, &bench_dir.join("smp"))?;
    let smp_isos = build_smp_bench(&ws, &smp_files)?;
    let (vm, iso) = built
        .next()
        .ok_or_else(|| "nothing was built".to_string())?;
    let exits_vm = built.next();
    let shim_vm = built.next();
    let guest_dir = ws.bare_metal_dir();
    let kernel_name = vm
        .config
        .kernel
        .clone()
        .ok_or_else(|| "linux.cfg has no kernel".to_string())?;
    let kernel = iso::resolve_image(&vm, "kernel", &kernel_name, &guest_dir)?;
    let initrd = match &vm.config.ramdisk {
        Some(r) => Some(iso::resolve_image(&vm, "ramdisk", r, &guest_dir)?),
        None => None,
    };
    let cmdline = vm.config.cmdline.clone().unwrap_or_default();

    // Boots, the shim's three kinds, exitbench, the IDE runs and plain
    // QEMU's, the screen runs and plain QEMU's, the network runs and plain
    // QEMU's, the SMP runs.
    let mut runs = Runs::new(
        5 * xtask::bench::BOOT_ROUNDS
            + 1
            + ide.keel.len()
            + IDE_QEMU_AFTER.len()
            + screen.keel.len()
            + 1
            + net_runs.len()
            + 2
            + SMP_RUNS,
    );
    let load_before = xtask::bench::load_average();
    let (mut keel_times, mut qemu_times, mut last_keel) = (Vec::new(), Vec::new(), None);
    for round in 1..=xtask::bench::BOOT_ROUNDS {
        let of = xtask::bench::BOOT_ROUNDS;
        let run = runs.next(format!(
            "bench: boot under Keel (QEMU TCG, SVM), round {round} of {of}"
        ));
        let keel = xtask::bench::run_keel(&iso, vm.config.memory_mib, timeout)?;
        keel_times.push(xtask::bench::keel_times(&keel, &vm.config.name)?);
        run.done("");
        let run = runs.next(format!(
            "bench: the same kernel and initramfs on plain QEMU TCG (-kernel), round {round} of {of}"
        ));
        let qemu = xtask::bench::run_plain_qemu(
            &kernel,
            initrd.as_deref(),
            &cmdline,
            vm.config.memory_mib,
            timeout,
        )?;
        qemu_times.push(xtask::bench::qemu_times(&qemu)?);
        run.done("");
        last_keel = Some(keel);
    }
    let keel = last_keel.ok_or_else(|| "no boot ran".to_string())?;
    let shim = run_shim_bench(&ws, shim_vm, timeout, &mut runs)?;
    let kernel_file = kernel
        .file_name()
        .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
    let boot = xtask::bench::BootBench {
        kernel: kernel_file.clone(),
        keel: keel_times,
        qemu: qemu_times,
        keel_exits: xtask::bench::exits(&keel, &vm.config.name),
        keel_exit_stats: xtask::bench::ExitTable::parse(&keel, &vm.config.name),
        load: [load_before, xtask::bench::load_average()],
        shim: Some(shim),
    };

    let exits = run_exit_bench(exits_vm, timeout, &mut runs)?;
    let ide_isos: Vec<_> = built.by_ref().take(ide.keel.len()).collect();
    let ide = run_ide_bench(&ide, ide_isos, kernel_file, timeout, &mut runs)?;
    let screen_isos: Vec<_> = built.by_ref().take(screen.keel.len()).collect();
    let screen = run_screen_bench(&screen, screen_isos, timeout, &mut runs)?;
    let net = run_net_bench(&ws, &net_runs, built.collect(), timeout, &mut runs)?;
    let smp = run_smp_bench(&ws, &smp_isos, timeout, &mut runs)?;
    print!(
        "{}",
        xtask::bench::table(&[
            boot.rows(),
            ide.rows(),
            screen.rows(),
            net.rows(),
            smp.rows()
        ])
    );
    print!("{}", exits.rows());
    write_bench_json(
        &bench_dir,
        &[
            ("boot.json", boot.json()),
            ("exits.json", exits.json()),
            ("ide.json", ide.json()),
            ("screen.json", screen.json()),
            ("net.json", net.json()),
            ("smp.json", smp.json()),
        ],
    )?;
    Ok(0)
}

/// The bench's emulator runs, counted for their progress lines.
struct Runs {
    started: usize,
    total: usize,
}

impl Runs {
    fn new(total: usize) -> Self {
        Self { started: 0, total }
    }

    /// The next run's step; its line is printed when it is done.
    fn next(&mut self, what: String) -> Step {
        self.started += 1;
        Step::of(what, self.started, self.total)
    }
}

/// Writes each `(file, json)` under `dir`.
fn write_bench_json(dir: &Path, files: &[(&str, String)]) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    for (file, json) in files {
        let path = dir.join(file);
        std::fs::write(&path, json).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        eprintln!("xtask: wrote {}", path.display());
    }
    Ok(())
}

/// The shim bench (tests/vms/shimbench.cfg): per round, interleaved so a
/// change in the machine's load reaches each kind, `keel-bzbench` under
/// Keel (from its VM start line), on plain QEMU with `-kernel` (SeaBIOS and
/// the linuxboot ROM) and on plain QEMU with the shim as `-bios`, both from
/// the emulator's start.
fn run_shim_bench(
    ws: &Workspace,
    built: Option<(VmFile, PathBuf)>,
    timeout: Duration,
    runs: &mut Runs,
) -> Result<xtask::bench::ShimBench, String> {
    use xtask::bench::{bzbench_entered, keel_to_kernel, run_plain, BOOT_ROUNDS};
    let (vm, iso) = built.ok_or_else(|| "shimbench.cfg was not built".to_string())?;
    let guest_dir = ws.bare_metal_dir();
    let name = vm
        .config
        .kernel
        .clone()
        .ok_or_else(|| "shimbench.cfg has no kernel".to_string())?;
    let kernel = iso::resolve_image(&vm, "kernel", &name, &guest_dir)?;
    let shim = iso::resolve_image(&vm, "firmware", xtask::guest_assets::KEEL_SHIM, &guest_dir)?;
    let memory = vm.config.memory_mib;
    let acpi = xtask::guest_assets::acpi_container(vm.config.vcpus, u64::from(memory) << 20)?;
    let dir = ws.target_dir.join("bench").join("shim");
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let acpi_file = dir.join("shimbench.acpi");
    std::fs::write(&acpi_file, acpi)
        .map_err(|e| format!("cannot write {}: {e}", acpi_file.display()))?;
    let fw_cfg = xtask::guest_assets::shim_fw_cfg_args(&kernel, &name, &acpi_file, &[], None);
    let load_before = xtask::bench::load_average();
    let mut bench = xtask::bench::ShimBench {
        kernel: name.clone(),
        keel: Vec::new(),
        qemu: Vec::new(),
        qemu_shim: Vec::new(),
        load: [load_before, None],
    };
    for round in 1..=BOOT_ROUNDS {
        let of = BOOT_ROUNDS;
        let run = runs.next(format!(
            "bench: {name} under Keel's shim (QEMU TCG, SVM), round {round} of {of}"
        ));
        let o = xtask::bench::run_keel(&iso, memory, timeout)?;
        bench.keel.push(keel_to_kernel(&o, &vm.config.name)?);
        run.done("");
        let run = runs.next(format!(
            "bench: {name} on plain QEMU TCG (-kernel: SeaBIOS, linuxboot), round {round} of {of}"
        ));
        let o = run_plain(xtask::bench::plain_qemu_bzbench(&kernel, memory), timeout)?;
        bench
            .qemu
            .push(bzbench_entered(&o, "real mode", "plain QEMU -kernel")?);
        run.done("");
        let run = runs.next(format!(
            "bench: {name} on plain QEMU TCG with the shim as -bios, round {round} of {of}"
        ));
        let o = run_plain(
            xtask::bench::plain_qemu_shim(&shim, &fw_cfg, memory),
            timeout,
        )?;
        bench.qemu_shim.push(bzbench_entered(
            &o,
            "64-bit mode",
            "plain QEMU -bios keel-shim",
        )?);
        run.done("");
    }
    bench.load[1] = xtask::bench::load_average();
    Ok(bench)
}

/// One run of the exitbench guest under Keel (QEMU TCG, SVM): its batches
/// beside Keel's exit statistics.
fn run_exit_bench(
    built: Option<(VmFile, PathBuf)>,
    timeout: Duration,
    runs: &mut Runs,
) -> Result<xtask::bench::ExitBench, String> {
    let (vm, iso) = built.ok_or_else(|| "exitbench.cfg was not built".to_string())?;
    let run = runs.next("bench: the exitbench guest under Keel (QEMU TCG, SVM)".into());
    let load_before = xtask::bench::load_average();
    let o = xtask::bench::run_keel(&iso, vm.config.memory_mib, timeout)?;
    run.done("");
    let mut exits = xtask::bench::ExitBench::parse(&o, &vm.config.name)?;
    exits.load = [load_before, xtask::bench::load_average()];
    Ok(exits)
}

/// Bytes the network bench downloads: enough for the e1000's receive ring
/// to turn over thousands of times, and a small download whose boot is the
/// exit baseline.
const BENCH_NET_BYTES: usize = 32 << 20;
const BENCH_NET_SMALL_BYTES: usize = 1 << 20;

/// The network bench's Keel runs: (VM config, VM name, bytes, NIC as
/// `keel_nic=` names it), per NIC the small one first.
fn prepare_net_bench(
    ws: &Workspace,
    dir: &Path,
) -> Result<Vec<(PathBuf, String, usize, &'static str)>, String> {
    let template = VmFile::load(&ws.test_vms_dir().join("debian-net.cfg"))?;
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let mut runs = Vec::new();
    for (name, bytes, nic) in [
        ("net-bench-small", BENCH_NET_SMALL_BYTES, "e1000"),
        ("net-bench", BENCH_NET_BYTES, "e1000"),
        (
            "net-bench-virtio-small",
            BENCH_NET_SMALL_BYTES,
            "virtio-net",
        ),
        ("net-bench-virtio", BENCH_NET_BYTES, "virtio-net"),
        ("net-bench-xen-small", BENCH_NET_SMALL_BYTES, "xen"),
        ("net-bench-xen", BENCH_NET_BYTES, "xen"),
    ] {
        let config = dir.join(format!("{name}.cfg"));
        let text = xtask::bench::net_bench_config(name, template.config.memory_mib, bytes, nic);
        std::fs::write(&config, text)
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        runs.push((config, name.to_string(), bytes, nic));
    }
    Ok(runs)
}

/// Plain QEMU first (it checks the guest and the server without Keel), then
/// each Keel run of `runs` (`isos` in the same order), each with its own
/// HTTP server serving the bench file of its size.
fn run_net_bench(
    ws: &Workspace,
    runs: &[(PathBuf, String, usize, &'static str)],
    isos: Vec<(VmFile, PathBuf)>,
    timeout: Duration,
    progress: &mut Runs,
) -> Result<xtask::bench::NetBench, String> {
    use xtask::bench::{exits, net_read, ExitTable, NetRead};
    let guest_dir = ws.bare_metal_dir();
    let (vm, _) = isos
        .last()
        .ok_or_else(|| "the network bench's configs were not built".to_string())?;
    let kernel = iso::resolve_image(vm, "kernel", xtask::guest_assets::DEBIAN_LINUX, &guest_dir)?;
    let initrd = iso::resolve_image(
        vm,
        "ramdisk",
        xtask::net_assets::DEBIAN_NET_INITRAMFS,
        &guest_dir,
    )?;
    // QEMU's NIC model and the guest's `keel_nic=` word for it.
    let mut qemu = Vec::new();
    for (model, nic) in [("e1000", "e1000"), ("virtio-net-pci", "virtio-net")] {
        let run = progress.next(format!(
            "bench: download {BENCH_NET_BYTES} bytes on plain QEMU TCG (-nic user,model={model},restrict=on)"
        ));
        let t = xtask::net_assets::test_network(&guest_dir, Some(BENCH_NET_BYTES))?;
        let qemu_cmd = xtask::bench::plain_qemu_net(
            &kernel,
            &initrd,
            &xtask::net_assets::bench_cmdline(BENCH_NET_BYTES, nic),
            vm.config.memory_mib,
            model,
            &t.net,
        );
        let o = xtask::bench::run_plain(qemu_cmd, timeout)?;
        drop(t);
        qemu.push(net_read(
            &o,
            BENCH_NET_BYTES as u64,
            &format!("plain QEMU ({model})"),
        )?);
        run.done("");
    }
    let [qemu, qemu_virtio] = &qemu[..] else {
        return Err(format!("{} plain QEMU runs, expected 2", qemu.len()));
    };
    let mut keel = Vec::new();
    for ((_, name, bytes, nic), (vm, iso)) in runs.iter().zip(&isos) {
        let run = progress.next(format!(
            "bench: {name} under Keel: download {bytes} bytes through the {}",
            xtask::bench::nic_name(nic)
        ));
        let t = xtask::net_assets::test_network(&guest_dir, Some(*bytes))?;
        let o =
            xtask::bench::run_keel_net(iso, vm.config.memory_mib, timeout, Some(t.net.clone()))?;
        drop(t);
        let read = net_read(&o, *bytes as u64, name)?;
        let n = exits(&o, name)
            .ok_or_else(|| format!("{name}: no exit count from Keel\n{}", o.report()))?;
        keel.push((read, n, ExitTable::parse(&o, name)));
        run.done("");
    }
    let [(e_small, e_small_exits, _), (e_read, e_n, e_stats), (v_small, v_small_exits, _), (v_read, v_n, v_stats), (x_small, x_small_exits, _), (x_read, x_n, x_stats)] =
        &keel[..]
    else {
        return Err(format!("{} Keel runs, expected 6", keel.len()));
    };
    let nic = |model: &str,
               small: &NetRead,
               small_exits: u64,
               read: &NetRead,
               n: u64,
               stats: &Option<ExitTable>| {
        xtask::bench::NicRun {
            model: model.to_string(),
            keel: read.clone(),
            small: small.clone(),
            small_exits,
            exits: n,
            exit_stats: stats.clone(),
        }
    };
    Ok(xtask::bench::NetBench {
        kernel: kernel
            .file_name()
            .map_or(String::new(), |n| n.to_string_lossy().into_owned()),
        qemu: qemu.clone(),
        qemu_virtio: qemu_virtio.clone(),
        e1000: nic("e1000", e_small, *e_small_exits, e_read, *e_n, e_stats),
        virtio: nic("virtio-net", v_small, *v_small_exits, v_read, *v_n, v_stats),
        xen: nic(
            "xen-netfront",
            x_small,
            *x_small_exits,
            x_read,
            *x_n,
            x_stats,
        ),
    })
}

/// Text scrolls and framebuffer fills of the screen bench: each batch
/// takes a good part of a second under Keel on QEMU TCG.
const BENCH_SCREEN_SCROLLS: u16 = 200;
const BENCH_SCREEN_FILLS: u16 = 128;

/// One Keel run of the screen bench: its VM config, and what it does.
struct ScreenRunFiles {
    config: PathBuf,
    name: String,
    scrolls: u16,
    fills: u16,
}

/// The screen bench's files under `dir`: per Keel run a copy of the
/// screendisk image in its bench step and a VM config like
/// tests/vms/screendisk.cfg; the copy plain QEMU boots.
struct ScreenBenchFiles {
    /// The baseline that neither scrolls nor fills, the scrolls, the fills.
    keel: Vec<ScreenRunFiles>,
    qemu_image: PathBuf,
    memory_mib: u32,
}

fn prepare_screen_bench(ws: &Workspace, dir: &Path) -> Result<ScreenBenchFiles, String> {
    use xtask::screen_disk::{write_copy, Params, Step};
    let template = VmFile::load(&ws.test_vms_dir().join("screendisk.cfg"))?;
    let memory_mib = template.config.memory_mib;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    // The copies come from the built image.
    build_bare_metal(ws)?;
    step("bench: the screen bench's disk images");
    let built = ws.bare_metal_dir().join(xtask::screen_disk::IMAGE);
    let params = |scrolls, fills| Params {
        step: Step::Bench,
        fills,
        scrolls,
    };
    let mut keel = Vec::new();
    for (name, scrolls, fills) in [
        ("screen-bench-idle", 0, 0),
        ("screen-bench-scroll", BENCH_SCREEN_SCROLLS, 0),
        ("screen-bench-fill", 0, BENCH_SCREEN_FILLS),
    ] {
        let image = format!("{name}.img");
        write_copy(&built, &dir.join(&image), params(scrolls, fills))?;
        let config = dir.join(format!("{name}.cfg"));
        let text = xtask::bench::screen::screen_bench_config(name, &image, memory_mib);
        std::fs::write(&config, text)
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        keel.push(ScreenRunFiles {
            config,
            name: name.to_string(),
            scrolls,
            fills,
        });
    }
    let qemu_image = dir.join("qemu.img");
    write_copy(
        &built,
        &qemu_image,
        params(BENCH_SCREEN_SCROLLS, BENCH_SCREEN_FILLS),
    )?;
    Ok(ScreenBenchFiles {
        keel,
        qemu_image,
        memory_mib,
    })
}

/// Boots each Keel run (`isos` in the order of `files.keel`), then the
/// disk on plain QEMU.
fn run_screen_bench(
    files: &ScreenBenchFiles,
    isos: Vec<(VmFile, PathBuf)>,
    timeout: Duration,
    progress: &mut Runs,
) -> Result<xtask::bench::screen::ScreenBench, String> {
    use xtask::bench::screen::{plain_qemu_screen, KeelScreenRun, ScreenBench, ScreenRun};
    use xtask::bench::{exits, ExitTable};
    let mut keel = Vec::new();
    for (run, (vm, iso)) in files.keel.iter().zip(&isos) {
        let timer = progress.next(format!(
            "bench: {} under Keel: {} text scrolls, {} framebuffer fills",
            run.name, run.scrolls, run.fills
        ));
        let o = xtask::bench::run_keel(iso, vm.config.memory_mib, timeout)?;
        let parsed = ScreenRun::parse(&o, &run.name, run.scrolls.into(), run.fills.into())?;
        let n = exits(&o, &run.name)
            .ok_or_else(|| format!("{}: no exit count from Keel\n{}", run.name, o.report()))?;
        keel.push(KeelScreenRun {
            run: parsed,
            exits: n,
            exit_stats: ExitTable::parse(&o, &run.name),
        });
        timer.done("");
    }
    let timer = progress.next(
        "bench: the same disk on plain QEMU TCG (-device VGA, -drive if=ide, QEMU's SeaBIOS)"
            .into(),
    );
    let o = xtask::bench::run_plain(
        plain_qemu_screen(&files.qemu_image, files.memory_mib),
        timeout,
    )?;
    let qemu = ScreenRun::parse(
        &o,
        "plain QEMU",
        BENCH_SCREEN_SCROLLS.into(),
        BENCH_SCREEN_FILLS.into(),
    )?;
    timer.done("");
    let [idle, scroll, fill] = <[KeelScreenRun; 3]>::try_from(keel)
        .map_err(|k| format!("{} Keel runs of the screen bench, expected 3", k.len()))?;
    Ok(ScreenBench {
        idle,
        scroll,
        fill,
        qemu,
    })
}

/// The SMP bench's emulator runs: Keel and plain QEMU per vCPU count, then
/// one VM alone and two VMs together.
const SMP_RUNS: usize = 2 * xtask::bench::smp::SMP_VCPUS.len() + 2;

/// The SMP bench's VM configs, written under a directory: one per vCPU
/// count of [`xtask::bench::smp::SMP_VCPUS`], then the two VMs of the pair.
struct SmpBenchFiles {
    by_vcpus: Vec<PathBuf>,
    pair: [PathBuf; 2],
}

/// Writes the SMP bench's configs under `dir`, each like tests/vms/linux.cfg
/// (its kernel, initramfs, RAM and command line) with its own vCPU count.
fn prepare_smp_bench(ws: &Workspace, dir: &Path) -> Result<SmpBenchFiles, String> {
    use xtask::bench::smp::{smp_bench_config, smp_cmdline, smp_vm_name, PAIR, SMP_VCPUS};
    let template = VmFile::load(&ws.test_vms_dir().join("linux.cfg"))?;
    let memory = template.config.memory_mib;
    let cmdline = smp_cmdline(template.config.cmdline.as_deref().unwrap_or_default());
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let write = |name: &str, vcpus: u32| -> Result<PathBuf, String> {
        let path = dir.join(format!("{name}.cfg"));
        std::fs::write(&path, smp_bench_config(name, vcpus, memory, &cmdline))
            .map_err(|e| format!("cannot write {}: {e}", path.display()))?;
        Ok(path)
    };
    let by_vcpus = SMP_VCPUS
        .iter()
        .map(|&n| write(&smp_vm_name(n), n))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(SmpBenchFiles {
        by_vcpus,
        pair: [write(PAIR[0], 1)?, write(PAIR[1], 1)?],
    })
}

/// The SMP bench's ISOs: one per vCPU count, the pair's first VM alone,
/// and both VMs in one boot.
struct SmpBenchIsos {
    by_vcpus: Vec<(VmFile, PathBuf)>,
    alone: (VmFile, PathBuf),
    pair: PathBuf,
}

fn build_smp_bench(ws: &Workspace, files: &SmpBenchFiles) -> Result<SmpBenchIsos, String> {
    let mut configs = files.by_vcpus.clone();
    configs.push(files.pair[0].clone());
    let mut by_vcpus = build(ws, &configs)?;
    let alone = by_vcpus
        .pop()
        .ok_or_else(|| "the SMP bench's configs were not built".to_string())?;
    let (_, pair) = build_together(ws, &files.pair)?;
    Ok(SmpBenchIsos {
        by_vcpus,
        alone,
        pair,
    })
}

/// Per vCPU count, the boot under Keel (QEMU with one CPU per vCPU) and on
/// plain QEMU with the same `-smp`, each checked to have brought up that
/// many CPUs; then the pair's first VM alone on two CPUs, and both VMs.
fn run_smp_bench(
    ws: &Workspace,
    isos: &SmpBenchIsos,
    timeout: Duration,
    progress: &mut Runs,
) -> Result<xtask::bench::smp::SmpBench, String> {
    use xtask::bench::smp::{check_cpus, vm_start_to_init, PairBench, SmpBench, SmpRun, PAIR};
    use xtask::bench::{exits, keel_times, qemu_times, run_keel_smp, run_plain};
    let guest_dir = ws.bare_metal_dir();
    let load_before = xtask::bench::load_average();
    let mut runs = Vec::new();
    let mut kernel_file = String::new();
    for (vm, iso) in &isos.by_vcpus {
        let (name, vcpus) = (&vm.config.name, vm.config.vcpus);
        let kernel =
            iso::resolve_image(vm, "kernel", xtask::guest_assets::DEBIAN_LINUX, &guest_dir)?;
        let initrd = iso::resolve_image(
            vm,
            "ramdisk",
            xtask::guest_assets::DEBIAN_INITRAMFS,
            &guest_dir,
        )?;
        kernel_file = kernel
            .file_name()
            .map_or_else(String::new, |n| n.to_string_lossy().into_owned());
        let run = progress.next(format!(
            "bench: {name} under Keel: Debian with {vcpus} vCPU{} (QEMU -smp {vcpus})",
            if vcpus == 1 { "" } else { "s" }
        ));
        let keel = run_keel_smp(iso, vm.config.memory_mib, vcpus, timeout)?;
        check_cpus(&keel, vcpus, name)?;
        let keel_t = keel_times(&keel, name)?;
        run.done("");
        let run = progress.next(format!(
            "bench: the same kernel and initramfs on plain QEMU TCG (-kernel, -smp {vcpus})"
        ));
        let cmd = xtask::bench::plain_qemu_kernel(
            &kernel,
            Some(&initrd),
            vm.config.cmdline.as_deref().unwrap_or_default(),
            vm.config.memory_mib,
            vcpus,
        );
        let qemu = run_plain(cmd, timeout)?;
        check_cpus(&qemu, vcpus, "plain QEMU")?;
        let qemu_t = qemu_times(&qemu)?;
        run.done("");
        runs.push(SmpRun {
            vcpus,
            keel: keel_t,
            qemu: qemu_t,
            keel_exits: exits(&keel, name),
        });
    }
    let (vm, iso) = &isos.alone;
    let memory = vm.config.memory_mib;
    let run = progress.next(format!(
        "bench: {} alone under Keel on two CPUs (QEMU -smp 2)",
        PAIR[0]
    ));
    let alone = run_keel_smp(iso, memory, 2, timeout)?;
    let alone = vm_start_to_init(&alone, PAIR[0])?;
    run.done("");
    let run = progress.next(format!(
        "bench: {} and {} together under Keel on two CPUs (QEMU -smp 2)",
        PAIR[0], PAIR[1]
    ));
    let both = run_keel_smp(&isos.pair, 2 * memory, 2, timeout)?;
    let beside = [
        vm_start_to_init(&both, PAIR[0])?,
        vm_start_to_init(&both, PAIR[1])?,
    ];
    run.done("");
    Ok(SmpBench {
        kernel: kernel_file,
        runs,
        pair: PairBench { alone, beside },
        load: [load_before, xtask::bench::load_average()],
    })
}

/// One Keel run of the IDE bench: its VM config, and what it moves.
struct IdeRun {
    config: PathBuf,
    name: String,
    boot: xtask::ide_assets::BenchBoot,
}

/// The IDE bench's files under `dir`: per Keel run a copy of debian-disk
/// that boots the bench mode and a VM config like debian-ide's (without the
/// CD), the virtio-blk scratch disk every emulated run has, the Xen runs'
/// scratch disk, and the image plain QEMU boots.
struct IdeBenchFiles {
    /// Two baselines that move nothing, one DMA read, one PIO read, one
    /// virtio-blk read, one virtio-blk write; on Xen's machine two
    /// baselines, one xen-blkfront read, one xen-blkfront write.
    keel: Vec<IdeRun>,
    qemu_image: PathBuf,
    scratch: PathBuf,
    memory_mib: u32,
}

fn prepare_ide_bench(ws: &Workspace, dir: &Path) -> Result<IdeBenchFiles, String> {
    use xtask::ide_assets::{BenchBoot, BenchMib};
    let template = VmFile::load(&ws.test_vms_dir().join("debian-ide.cfg"))?;
    let memory_mib = template.config.memory_mib;
    if dir.exists() {
        std::fs::remove_dir_all(dir).map_err(|e| format!("cannot clear {}: {e}", dir.display()))?;
    }
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    step("bench: the IDE bench's disk images");
    let scratch_name = "virtio-scratch.img";
    let scratch = dir.join(scratch_name);
    xtask::ide_assets::bench_scratch_disk(&scratch)?;
    let xen_scratch_name = "xen-scratch.img";
    xtask::ide_assets::bench_scratch_disk(&dir.join(xen_scratch_name))?;
    let none = BenchMib::default();
    let emulated = BenchBoot::Emulated;
    let xen = |read, write| BenchBoot::Xen { read, write };
    let mut keel = Vec::new();
    for (name, boot) in [
        ("ide-bench-idle-1", emulated(none)),
        ("ide-bench-idle-2", emulated(none)),
        (
            "ide-bench-dma",
            emulated(BenchMib {
                dma: BENCH_DMA_MIB,
                ..none
            }),
        ),
        (
            "ide-bench-pio",
            emulated(BenchMib {
                pio: BENCH_PIO_MIB,
                ..none
            }),
        ),
        (
            "ide-bench-virtio-read",
            emulated(BenchMib {
                virtio_read: BENCH_VIRTIO_READ_MIB,
                ..none
            }),
        ),
        (
            "ide-bench-virtio-write",
            emulated(BenchMib {
                virtio_write: BENCH_VIRTIO_WRITE_MIB,
                ..none
            }),
        ),
        ("ide-bench-xen-idle-1", xen(0, 0)),
        ("ide-bench-xen-idle-2", xen(0, 0)),
        ("ide-bench-xen-read", xen(BENCH_XEN_READ_MIB, 0)),
        ("ide-bench-xen-write", xen(0, BENCH_XEN_WRITE_MIB)),
    ] {
        let image = format!("{name}.img");
        xtask::ide_assets::bench_disk(&dir.join(&image), boot)?;
        let config = dir.join(format!("{name}.cfg"));
        let scratch = match boot {
            BenchBoot::Emulated(_) => scratch_name,
            BenchBoot::Xen { .. } => xen_scratch_name,
        };
        let text = xtask::bench::ide_bench_config(name, &image, scratch, memory_mib, boot);
        std::fs::write(&config, text)
            .map_err(|e| format!("cannot write {}: {e}", config.display()))?;
        keel.push(IdeRun {
            config,
            name: name.to_string(),
            boot,
        });
    }
    let qemu_image = dir.join("qemu.img");
    xtask::ide_assets::bench_disk(
        &qemu_image,
        emulated(BenchMib {
            dma: BENCH_DMA_MIB,
            pio: BENCH_PIO_MIB,
            virtio_read: BENCH_VIRTIO_READ_MIB,
            virtio_write: BENCH_VIRTIO_WRITE_MIB,
        }),
    )?;
    Ok(IdeBenchFiles {
        keel,
        qemu_image,
        scratch,
        memory_mib,
    })
}

/// Boots each Keel run (`isos` in the order of `files.keel`), then the
/// image on plain QEMU.
/// After which of the IDE bench's Keel boots plain QEMU boots the same
/// image (after the first, the fourth and the last), so a change in the
/// machine's load reaches both sides' medians.
const IDE_QEMU_AFTER: [usize; 3] = [0, 3, 9];

fn run_ide_bench(
    files: &IdeBenchFiles,
    isos: Vec<(VmFile, PathBuf)>,
    kernel: String,
    timeout: Duration,
    progress: &mut Runs,
) -> Result<xtask::bench::IdeBench, String> {
    use xtask::bench::{
        exits, ide_read, ide_to_init, keel_vm_start, median_read, ExitTable, IdeBoot, Transfer,
        VirtioRun, XenBlkRun,
    };
    use xtask::ide_assets::BenchBoot;
    let mut qemu_runs = Vec::new();
    let mut outcomes = Vec::new();
    for (i, (run, (vm, iso))) in files.keel.iter().zip(&isos).enumerate() {
        let what = match run.boot {
            BenchBoot::Emulated(m) => format!(
                "boot from the IDE disk, read {} MiB with DMA, {} MiB with PIO, \
                 {} MiB from virtio-blk, write {} MiB to it",
                m.dma, m.pio, m.virtio_read, m.virtio_write
            ),
            BenchBoot::Xen { read, write } => format!(
                "boot from the IDE disk with xen_platform_pci = 1, read {read} MiB \
                 through xen-blkfront, write {write} MiB"
            ),
        };
        let timer = progress.next(format!("bench: {} under Keel: {what}", run.name));
        let o = xtask::bench::run_keel(iso, vm.config.memory_mib, timeout)?;
        // Every run went through every transfer of its machine, in the
        // modes they name.
        match run.boot {
            BenchBoot::Emulated(m) => {
                ide_read(&o, Transfer::Dma, m.dma, &run.name)?;
                ide_read(&o, Transfer::Pio, m.pio, &run.name)?;
                ide_read(&o, Transfer::VirtioRead, m.virtio_read, &run.name)?;
                ide_read(&o, Transfer::VirtioWrite, m.virtio_write, &run.name)?;
            }
            BenchBoot::Xen { read, write } => {
                ide_read(&o, Transfer::XenRead, read, &run.name)?;
                ide_read(&o, Transfer::XenWrite, write, &run.name)?;
            }
        }
        let n = exits(&o, &run.name)
            .ok_or_else(|| format!("{}: no exit count from Keel\n{}", run.name, o.report()))?;
        outcomes.push((o, n));
        timer.done("");
        if IDE_QEMU_AFTER.contains(&i) {
            let timer = progress.next(format!(
                "bench: the same disk image on plain QEMU TCG (-drive if=ide and if=virtio, \
                 QEMU's SeaBIOS), {} of {}",
                qemu_runs.len() + 1,
                IDE_QEMU_AFTER.len()
            ));
            qemu_runs.push(xtask::bench::run_plain_qemu_disk(
                &files.qemu_image,
                &files.scratch,
                files.memory_mib,
                timeout,
            )?);
            timer.done("");
        }
    }
    let [(_, idle_exits), (_, idle2_exits), (dma, dma_exits), (pio, pio_exits), (vr, vr_exits), (vw, vw_exits), (xen_idle, xen_idle_exits), (xen_idle2, xen_idle2_exits), (xr, xr_exits), (xw, xw_exits)] =
        &outcomes[..]
    else {
        return Err(format!("{} Keel runs, expected 10", outcomes.len()));
    };
    // Plain QEMU's figure of a transfer: its median run's.
    let qemu = |transfer, mib| -> Result<_, String> {
        let reads = qemu_runs
            .iter()
            .map(|o| ide_read(o, transfer, mib, "plain QEMU"))
            .collect::<Result<Vec<_>, _>>()?;
        median_read(&reads).ok_or_else(|| String::from("no plain QEMU run"))
    };
    // The six boots of the emulated machine boot alike up to /init.
    let keel_boots = outcomes[..6]
        .iter()
        .zip(&files.keel)
        .map(|((o, _), run)| {
            Ok(IdeBoot {
                vm_start: keel_vm_start(o, &run.name),
                to_init: ide_to_init(o, &run.name)?,
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    let qemu_to_init = qemu_runs
        .iter()
        .map(|o| ide_to_init(o, "plain QEMU"))
        .collect::<Result<Vec<_>, _>>()?;
    let virtio = |o, exits: u64, transfer, mib, i: usize| -> Result<VirtioRun, String> {
        let name = &files.keel[i].name;
        Ok(VirtioRun {
            keel: ide_read(o, transfer, mib, name)?,
            qemu: qemu(transfer, mib)?,
            exits,
            exit_stats: ExitTable::parse(o, name),
        })
    };
    let xen = |o, exits: u64, transfer, mib, i: usize| -> Result<XenBlkRun, String> {
        let name = &files.keel[i].name;
        Ok(XenBlkRun {
            keel: ide_read(o, transfer, mib, name)?,
            exits,
            exit_stats: ExitTable::parse(o, name),
        })
    };
    Ok(xtask::bench::IdeBench {
        kernel,
        keel_boots,
        qemu_to_init,
        keel_dma: ide_read(dma, Transfer::Dma, BENCH_DMA_MIB, "ide-bench-dma")?,
        keel_pio: ide_read(pio, Transfer::Pio, BENCH_PIO_MIB, "ide-bench-pio")?,
        qemu_dma: qemu(Transfer::Dma, BENCH_DMA_MIB)?,
        qemu_pio: qemu(Transfer::Pio, BENCH_PIO_MIB)?,
        baseline_exits: [*idle_exits, *idle2_exits],
        dma_exits: *dma_exits,
        pio_exits: *pio_exits,
        dma_exit_stats: ExitTable::parse(dma, &files.keel[2].name),
        pio_exit_stats: ExitTable::parse(pio, &files.keel[3].name),
        virtio_read: virtio(
            vr,
            *vr_exits,
            Transfer::VirtioRead,
            BENCH_VIRTIO_READ_MIB,
            4,
        )?,
        virtio_write: virtio(
            vw,
            *vw_exits,
            Transfer::VirtioWrite,
            BENCH_VIRTIO_WRITE_MIB,
            5,
        )?,
        xen: xtask::bench::XenBlk {
            baseline_exits: [*xen_idle_exits, *xen_idle2_exits],
            baseline_stats: [
                ExitTable::parse(xen_idle, &files.keel[6].name),
                ExitTable::parse(xen_idle2, &files.keel[7].name),
            ],
            read: xen(xr, *xr_exits, Transfer::XenRead, BENCH_XEN_READ_MIB, 8)?,
            write: xen(xw, *xw_exits, Transfer::XenWrite, BENCH_XEN_WRITE_MIB, 9)?,
        },
    })
}

/// `cargo xtask direct-boot`: the shim on plain QEMU (see USAGE).
fn direct_boot_cmd(args: &[String]) -> Result<u8, Failure> {
    let ws = Workspace::locate()?;
    let mut vm_path = ws.test_vms_dir().join("linux.cfg");
    let mut timeout = Duration::from_secs(120);
    for (flag, value) in flags(args, &["--vm", "--timeout"])? {
        match flag {
            "--vm" => vm_path = PathBuf::from(value),
            _ => match value.parse::<u64>() {
                Ok(s) if s > 0 => timeout = Duration::from_secs(s),
                _ => {
                    return Err(Failure::Usage(format!(
                        "--timeout {value}: expected a whole number of seconds above 0"
                    )))
                }
            },
        }
    }
    let vm = VmFile::load(&vm_path)?;
    let Some(kernel) = vm.config.kernel.clone() else {
        return Err(Failure::Usage(format!(
            "{} has no kernel = to boot",
            vm_path.display()
        )));
    };
    deps::ensure(deps::QEMU)?;
    ensure_bare_metal_target(&ws)?;
    step(&format!(
        "cargo build --release --target {BARE_METAL_TARGET} -p keel-shim"
    ));
    cargo(
        &ws,
        &[
            "build",
            "--release",
            "--target",
            BARE_METAL_TARGET,
            "-p",
            "keel-shim",
        ],
    )?;
    let guest_dir = ws.bare_metal_dir();
    let shim = guest_dir.join(xtask::guest_assets::KEEL_SHIM);
    let kernel_file = iso::resolve_image(&vm, "kernel", &kernel, &guest_dir)?;
    // The ramdisk and the modules, in order: the shim's initrd, module1, ...
    let mut modules = Vec::new();
    if let Some(r) = &vm.config.ramdisk {
        modules.push((
            r.clone(),
            iso::resolve_image(&vm, "ramdisk", r, &guest_dir)?,
        ));
    }
    for m in &vm.config.modules {
        let image = vm_config::module_image(m);
        modules.push((
            m.clone(),
            iso::resolve_image(&vm, "module", image, &guest_dir)?,
        ));
    }
    let ram_bytes = u64::from(vm.config.memory_mib) << 20;
    let acpi = xtask::guest_assets::acpi_container(vm.config.vcpus, ram_bytes)?;
    let dir = xtask::guest_assets::built_dir()?;
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let acpi_file = dir.join(format!(
        "{}.acpi",
        workspace::file_stem_for(&vm.config.name)
    ));
    std::fs::write(&acpi_file, acpi)
        .map_err(|e| format!("cannot write {}: {e}", acpi_file.display()))?;

    let mut qemu = Command::new("qemu-system-x86_64");
    qemu.args(["-machine", "pc", "-accel", "tcg", "-cpu", "qemu64"])
        .args(["-m", &vm.config.memory_mib.to_string()])
        .args(["-smp", &vm.config.vcpus.to_string()])
        .args(["-display", "none", "-serial", "stdio", "-no-reboot"])
        .args(["-device", "isa-debug-exit,iobase=0xf4,iosize=0x04"])
        .arg("-bios")
        .arg(&shim)
        .args(xtask::guest_assets::shim_fw_cfg_args(
            &kernel_file,
            &kernel,
            &acpi_file,
            &modules,
            vm.config.cmdline.as_deref(),
        ));
    eprintln!(
        "xtask: booting {} with keel-shim on plain QEMU (TCG), {} MiB, timeout {}s",
        kernel_file.display(),
        vm.config.memory_mib,
        timeout.as_secs()
    );
    let started = std::time::Instant::now();
    let mut child = qemu
        .spawn()
        .map_err(|e| format!("cannot run qemu-system-x86_64: {e}"))?;
    let status = loop {
        if let Some(s) = child
            .try_wait()
            .map_err(|e| format!("waiting for QEMU: {e}"))?
        {
            break Some(s);
        }
        if started.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    let secs = started.elapsed().as_secs_f64();
    let Some(status) = status else {
        eprintln!("xtask: timed out after {secs:.1}s");
        return Ok(124);
    };
    // isa-debug-exit makes QEMU exit with (v << 1) | 1; 0 is a power-off.
    match status.code() {
        Some(0) => {
            eprintln!("xtask: the guest powered off after {secs:.1}s");
            Ok(0)
        }
        Some(c) if c & 1 == 1 => {
            let v = c >> 1;
            eprintln!("xtask: the guest wrote {v} to the debug-exit port after {secs:.1}s");
            Ok(u8::try_from(v).unwrap_or(255))
        }
        _ => Err(format!("QEMU failed ({status}) after {secs:.1}s").into()),
    }
}

fn step(what: &str) {
    eprintln!("xtask: == {what}");
}

/// Every `*.cfg` in tests/vms, sorted.
fn test_vm_files(ws: &Workspace) -> Result<Vec<PathBuf>, String> {
    let dir = ws.test_vms_dir();
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .map_err(|e| format!("cannot list {}: {e}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "cfg"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!(
            "there are no VM configs (*.cfg) in {}",
            dir.display()
        ));
    }
    Ok(files)
}

/// Builds Keel and the test guests, then one ISO per VM config.
fn build(ws: &Workspace, vm_paths: &[PathBuf]) -> Result<Vec<(VmFile, PathBuf)>, String> {
    // Read every config first: a typo should not wait for a build.
    let mut vms = Vec::new();
    for p in vm_paths {
        let vm = VmFile::load(p)?;
        for w in vm.warning_lines() {
            eprintln!("xtask: {w}");
        }
        iso::host_disk_plan(&vm)?;
        iso::check_images(&vm)?;
        if let Some(other) = vms
            .iter()
            .find(|o: &&VmFile| o.config.name == vm.config.name)
        {
            return Err(format!(
                "{} and {} both name their VM '{}'; the ISO is named after the VM, so \
                 names must differ",
                other.path.display(),
                vm.path.display(),
                vm.config.name
            ));
        }
        vms.push(vm);
    }
    deps::ensure(deps::ISO_TOOLS)?;
    build_bare_metal(ws)?;

    let artifacts = ws.artifacts_dir();
    std::fs::create_dir_all(&artifacts)
        .map_err(|e| format!("cannot create {}: {e}", artifacts.display()))?;
    let keel = ship_keel(ws)?;
    let mut out = Vec::new();
    let count = vms.len();
    for (n, vm) in vms.into_iter().enumerate() {
        let step = Step::of(format!("ISO for {}", vm.path.display()), n + 1, count);
        let built = iso::build_iso(&vm, &keel, &ws.bare_metal_dir(), &artifacts)?;
        for n in &built.notes {
            eprintln!("xtask: {}: {n}", vm.path.display());
        }
        let mib = std::fs::metadata(&built.path).map_or(0, |m| m.len().div_ceil(1 << 20));
        step.done(&format!(
            "{} (VM '{}'), {mib} MiB",
            built.path.display(),
            vm.config.name
        ));
        out.push((vm, built.path));
    }
    Ok(out)
}

/// Builds Keel, the test guests, the test disks and the BIOS shim for the
/// bare-metal target.
fn build_bare_metal(ws: &Workspace) -> Result<(), String> {
    ensure_bare_metal_target(ws)?;
    let mut build_bare = vec!["build", "--release", "--target", BARE_METAL_TARGET];
    build_bare.extend(bare_metal_packages());
    step(&format!("cargo {}", build_bare.join(" ")));
    cargo(ws, &build_bare)
}

/// Writes [`Workspace::shipped_keel_elf`]: Keel's ELF as built, without
/// its debug sections (`objcopy --strip-debug`; symbols stay).
fn ship_keel(ws: &Workspace) -> Result<PathBuf, String> {
    let (from, to) = (ws.keel_elf(), ws.shipped_keel_elf());
    let out = Command::new("objcopy")
        .arg("--strip-debug")
        .arg(&from)
        .arg(&to)
        .output()
        .map_err(|e| format!("cannot run objcopy: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "objcopy --strip-debug {} failed ({}):\n{}",
            from.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    // What QEMU's -kernel loads (`cargo xtask bench`, `run --kernel-boot`).
    let elf = std::fs::read(&to).map_err(|e| format!("cannot read {}: {e}", to.display()))?;
    iso::check_multiboot_layout(&elf).map_err(|e| format!("{}: {e}", to.display()))?;
    Ok(to)
}

/// Builds Keel and one ISO that boots every VM of `vm_paths` at once.
fn build_together(ws: &Workspace, vm_paths: &[PathBuf]) -> Result<(Vec<VmFile>, PathBuf), String> {
    let mut vms = Vec::new();
    for p in vm_paths {
        let vm = VmFile::load(p)?;
        for w in vm.warning_lines() {
            eprintln!("xtask: {w}");
        }
        iso::check_images(&vm)?;
        vms.push(vm);
    }
    deps::ensure(deps::ISO_TOOLS)?;
    build_bare_metal(ws)?;
    let artifacts = ws.artifacts_dir();
    std::fs::create_dir_all(&artifacts)
        .map_err(|e| format!("cannot create {}: {e}", artifacts.display()))?;
    let keel = ship_keel(ws)?;
    let built = iso::build_iso_of(&vms, &keel, &ws.bare_metal_dir(), &artifacts)?;
    for n in &built.notes {
        eprintln!("xtask: {n}");
    }
    eprintln!(
        "xtask: {} boots {} VMs: {}",
        built.path.display(),
        vms.len(),
        iso::boot_name(&vms)
    );
    Ok((vms, built.path))
}

fn cargo(ws: &Workspace, args: &[&str]) -> Result<(), String> {
    let status = Command::new(workspace::cargo())
        .args(args)
        .current_dir(&ws.root)
        .status()
        .map_err(|e| format!("cannot run cargo: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo {} failed ({status})", args.join(" ")))
    }
}

/// rust-toolchain.toml lists the bare-metal target, but a toolchain installed
/// before that line existed lacks it: add it with rustup.
fn ensure_bare_metal_target(ws: &Workspace) -> Result<(), String> {
    let sysroot = Command::new("rustc")
        .args(["--print", "sysroot"])
        .current_dir(&ws.root)
        .output()
        .map_err(|e| format!("cannot run rustc: {e}"))?;
    let sysroot = String::from_utf8_lossy(&sysroot.stdout).trim().to_string();
    let lib = Path::new(&sysroot)
        .join("lib/rustlib")
        .join(BARE_METAL_TARGET);
    if lib.is_dir() {
        return Ok(());
    }
    eprintln!("xtask: adding the {BARE_METAL_TARGET} target with rustup");
    let ok = Command::new("rustup")
        .args(["target", "add", BARE_METAL_TARGET])
        .current_dir(&ws.root)
        .status()
        .is_ok_and(|s| s.success());
    if ok {
        Ok(())
    } else {
        Err(format!(
            "the Rust target {BARE_METAL_TARGET} is not installed and rustup could not add \
             it; run: rustup target add {BARE_METAL_TARGET}"
        ))
    }
}
