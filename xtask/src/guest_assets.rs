//! Guest images for direct boot (`kernel =`, run by the BIOS shim in
//! `firmware/`), made by xtask and cached under the target directory; none
//! of them is committed:
//!
//! - `debian-linux`: Debian's kernel (the versioned package
//!   `linux-image-amd64` depends on), fetched with `apt-get download` and
//!   unpacked with `dpkg-deb -x` into `target/debian/`;
//! - `debian-initramfs`: a gzipped newc cpio with Debian's `busybox-static`
//!   and an `/init` that checks ACPI, the LAPIC and the IOAPIC and powers off
//!   (`target/debian/initramfs.cpio.gz`);
//! - `keel-mbtest`: the multiboot test kernel (`firmware/src/bin/mbtest.rs`)
//!   wrapped into an ELF32 file, and `keel-mbtest-module`, the module it
//!   checks (`target/keel/direct-boot/`);
//! - `keel-shim`: the shim itself, usable as `firmware = "keel-shim"`;
//! - `keel-bzbench`: the shim bench's 2 KiB bzImage
//!   (`firmware/src/bin/bzbench.rs`);
//! - `debian-disk` and `debian-cd`: the IDE disk and CD images
//!   (`crate::ide_assets`);
//! - `debian-net-initramfs` and `pxe-e1000`: the network test's initramfs
//!   and Debian's iPXE ROM for the e1000 (`crate::net_assets`);
//! - `debian-vga-initramfs`: the display test's initramfs with Debian's
//!   `bochs` DRM driver (`crate::vga_assets`).
//!
//! [`acpi_container`] makes the `opt/keel/acpi` file the shim reads (the
//! hypervisor makes its own the same way) for booting the shim on plain QEMU.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use crate::cpio;
use crate::deps::{self, Tool};

pub const KEEL_SHIM: &str = "keel-shim";
/// The shim bench's bzImage (`firmware/src/bin/bzbench.rs`), the flat
/// build output as it is.
pub const KEEL_BZBENCH: &str = "keel-bzbench";
pub const DEBIAN_LINUX: &str = "debian-linux";
pub const DEBIAN_INITRAMFS: &str = "debian-initramfs";
pub const MBTEST_KERNEL: &str = "keel-mbtest";
pub const MBTEST_MODULE: &str = "keel-mbtest-module";
/// The second and third modules of `tests/vms/multiboot-aout.cfg`
/// ([`mbtest_module`] 1 and 2).
pub const MBTEST_MODULE2: &str = "keel-mbtest-module2";
pub const MBTEST_MODULE3: &str = "keel-mbtest-module3";
/// The test kernel as a gzip-compressed ELF64 with a second segment below
/// 1 MiB ([`mbtest_elf64`]), and behind an a.out kludge header ([`mbtest_aout`]).
pub const MBTEST_ELF64_GZ: &str = "keel-mbtest-elf64-gz";
pub const MBTEST_AOUT: &str = "keel-mbtest-aout";
/// The test kernel's ELF32 file cut short inside its segment
/// ([`mbtest_truncated`]): bad input the shim must refuse by name.
pub const MBTEST_TRUNCATED: &str = "keel-mbtest-truncated";
/// The test kernel's ELF32 file with a second segment below the shim's
/// end ([`mbtest_low`]).
pub const MBTEST_LOW: &str = "keel-mbtest-low";
/// Where the ELF64 variant's low segment goes, and its bytes.
pub const MBTEST_LOW_SEGMENT: u32 = 0x6_0000;
/// [`mbtest_low`]'s second segment (firmware/src/bin/mbtest.rs, `LOW_AT`,
/// `LOW_FILESZ`, `LOW_END`): its address, file bytes and memory size. It
/// covers the multiboot info block's usual place (0x8000), the shim's
/// stack and, with its bss, the start of the shim's running image.
pub const MBTEST_LOW_AT: u32 = 0x7000;
pub const MBTEST_LOW_FILESZ: u32 = 0x1_A000;
pub const MBTEST_LOW_MEMSZ: u32 = 0x2_1000;

/// Every name [`resolve`] knows.
pub const NAMES: &[&str] = &[
    KEEL_SHIM,
    KEEL_BZBENCH,
    DEBIAN_LINUX,
    DEBIAN_INITRAMFS,
    MBTEST_KERNEL,
    MBTEST_MODULE,
    MBTEST_MODULE2,
    MBTEST_MODULE3,
    MBTEST_ELF64_GZ,
    MBTEST_AOUT,
    MBTEST_TRUNCATED,
    MBTEST_LOW,
    crate::ide_assets::DEBIAN_DISK,
    crate::ide_assets::DEBIAN_CD,
    crate::ide_assets::DEBIAN_VDISK,
    crate::net_assets::DEBIAN_NET_INITRAMFS,
    crate::net_assets::PXE_E1000,
    crate::vga_assets::DEBIAN_VGA_INITRAMFS,
];

/// Names that are built by `cargo xtask build` (not fetched).
pub const BUILT: &[&str] = &[
    KEEL_SHIM,
    KEEL_BZBENCH,
    MBTEST_KERNEL,
    MBTEST_MODULE,
    MBTEST_MODULE2,
    MBTEST_MODULE3,
    MBTEST_ELF64_GZ,
    MBTEST_AOUT,
    MBTEST_TRUNCATED,
    MBTEST_LOW,
];

/// The multiboot test kernel's load address and entry (firmware/mbtest.ld).
pub const MBTEST_LOAD: u32 = 0x20_0000;
pub const MBTEST_ENTRY: u32 = 0x20_0030;
/// The modules the test kernel checks (its table in
/// firmware/src/bin/mbtest.rs): module `k` has `MBTEST_MODULE_LENS[k]`
/// bytes, byte `i` being `((i * 0x9E3779B1) >> 24) ^ (k * 0x55)` (32-bit
/// multiply).
pub const MBTEST_MODULE_LENS: [usize; 3] = [65659, 4097, 123457];
pub const MBTEST_MODULE_LEN: usize = MBTEST_MODULE_LENS[0];

/// What the Debian tools need.
const DEBIAN_TOOLS: &[Tool] = &[
    Tool {
        needs: "apt-get",
        package: "apt",
    },
    Tool {
        needs: "apt-cache",
        package: "apt",
    },
    Tool {
        needs: "dpkg-deb",
        package: "dpkg",
    },
    Tool {
        needs: "gzip",
        package: "gzip",
    },
];

/// The Debian packages: the kernel's meta package and busybox.
pub const KERNEL_META_PACKAGE: &str = "linux-image-amd64";
pub const BUSYBOX_PACKAGE: &str = "busybox-static";

/// The target directory (cargo metadata, asked once).
fn target_dir() -> Result<PathBuf, String> {
    static DIR: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    DIR.get_or_init(|| crate::workspace::Workspace::locate().map(|w| w.target_dir))
        .clone()
}

/// `target/debian`: the Debian cache.
pub fn debian_dir() -> Result<PathBuf, String> {
    Ok(target_dir()?.join("debian"))
}

/// `target/keel/direct-boot`: built direct-boot images.
pub fn built_dir() -> Result<PathBuf, String> {
    Ok(target_dir()?.join("keel").join("direct-boot"))
}

/// The file for a direct-boot image name, fetching or building it when
/// needed; `None` if `name` is not one of [`NAMES`]. `guest_dir` is where
/// the bare-metal build put `keel-shim` and `keel-mbtest`.
pub fn resolve(name: &str, guest_dir: &Path) -> Option<Result<PathBuf, String>> {
    Some(match name {
        KEEL_SHIM => built(guest_dir, KEEL_SHIM),
        KEEL_BZBENCH => built(guest_dir, KEEL_BZBENCH),
        DEBIAN_LINUX => debian().map(|d| d.kernel),
        DEBIAN_INITRAMFS => debian().and_then(|d| initramfs(&d)),
        MBTEST_KERNEL => built(guest_dir, MBTEST_KERNEL).and_then(|flat| mbtest_elf_file(&flat)),
        MBTEST_MODULE => mbtest_module_file(0),
        MBTEST_MODULE2 => mbtest_module_file(1),
        MBTEST_MODULE3 => mbtest_module_file(2),
        MBTEST_ELF64_GZ => built(guest_dir, MBTEST_KERNEL).and_then(|flat| {
            let elf = mbtest_elf64(&read(&flat)?);
            write_built("keel-mbtest-elf64.gz", &gzip(&elf)?)
        }),
        MBTEST_TRUNCATED => built(guest_dir, MBTEST_KERNEL).and_then(|flat| {
            write_built(
                "keel-mbtest-truncated.elf",
                &mbtest_truncated(&read(&flat)?),
            )
        }),
        MBTEST_AOUT => built(guest_dir, MBTEST_KERNEL)
            .and_then(|flat| write_built("keel-mbtest-aout.bin", &mbtest_aout(&read(&flat)?))),
        MBTEST_LOW => built(guest_dir, MBTEST_KERNEL)
            .and_then(|flat| write_built("keel-mbtest-low.elf", &mbtest_low(&read(&flat)?))),
        other => {
            return crate::ide_assets::resolve(other)
                .or_else(|| crate::net_assets::resolve(other))
                .or_else(|| crate::vga_assets::resolve(other))
        }
    })
}

fn built(guest_dir: &Path, name: &str) -> Result<PathBuf, String> {
    let p = guest_dir.join(name);
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "{} does not exist; build it with cargo xtask build",
            p.display()
        ))
    }
}

fn io(what: &str, p: &Path, e: std::io::Error) -> String {
    format!("{what} {}: {e}", p.display())
}

/// The unpacked Debian packages.
#[derive(Debug, Clone)]
pub struct Debian {
    /// `target/debian/root`: the packages' files.
    pub root: PathBuf,
    /// The kernel (`root/boot/vmlinuz-*`).
    pub kernel: PathBuf,
    /// Its version (`6.1.0-56-amd64`).
    pub version: String,
}

fn find_kernel(root: &Path) -> Option<(PathBuf, String)> {
    let mut found: Vec<(PathBuf, String)> = fs::read_dir(root.join("boot"))
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let n = e.file_name().to_string_lossy().to_string();
            n.strip_prefix("vmlinuz-")
                .map(|v| (e.path(), v.to_string()))
        })
        .collect();
    found.sort();
    found.pop()
}

/// Debian's kernel and busybox, unpacked under `target/debian/root`;
/// fetched on first use.
pub fn debian() -> Result<Debian, String> {
    static DONE: OnceLock<Result<Debian, String>> = OnceLock::new();
    DONE.get_or_init(fetch_debian).clone()
}

fn fetch_debian() -> Result<Debian, String> {
    let dir = debian_dir()?;
    let root = dir.join("root");
    if let Some((kernel, version)) = find_kernel(&root) {
        if root.join("bin/busybox").is_file() {
            return Ok(Debian {
                root,
                kernel,
                version,
            });
        }
    }
    deps::ensure(DEBIAN_TOOLS)?;
    let kernel_package = match kernel_package() {
        Ok(p) => p,
        Err(first) => {
            // The package lists may be missing (a fresh container): update once.
            if !deps::is_root() {
                return Err(format!(
                    "{first}; the package lists need an update, which needs root: run \
                     `sudo apt-get update` (or run cargo xtask as root), then retry"
                ));
            }
            deps::apt_update()?;
            kernel_package()?
        }
    };
    download_and_unpack(&[&kernel_package, BUSYBOX_PACKAGE], &dir)?;
    let (kernel, version) = find_kernel(&root).ok_or_else(|| {
        format!(
            "{kernel_package} unpacked into {} but holds no boot/vmlinuz-*",
            root.display()
        )
    })?;
    if !root.join("bin/busybox").is_file() {
        return Err(format!(
            "{BUSYBOX_PACKAGE} unpacked into {} but holds no bin/busybox",
            root.display()
        ));
    }
    eprintln!("xtask: Debian kernel {version} in {}", kernel.display());
    Ok(Debian {
        root,
        kernel,
        version,
    })
}

/// Fetches `packages` with `apt-get download` into `dir/debs` and unpacks
/// them with `dpkg-deb -x` into `dir/root` (both emptied first); the one
/// way xtask takes files from Debian packages.
pub fn download_and_unpack(packages: &[&str], dir: &Path) -> Result<PathBuf, String> {
    deps::ensure(DEBIAN_TOOLS)?;
    let root = dir.join("root");
    let debs = dir.join("debs");
    if debs.exists() {
        fs::remove_dir_all(&debs).map_err(|e| io("cannot clear", &debs, e))?;
    }
    fs::create_dir_all(&debs).map_err(|e| io("cannot create", &debs, e))?;
    let list = packages.join(" ");
    let step = crate::progress::Step::new(format!("apt-get download {list}"));
    crate::progress::run_quiet(
        Command::new("apt-get")
            .arg("download")
            .args(packages)
            .current_dir(&debs),
        "if the package lists are stale, run `sudo apt-get update` and retry",
    )?;
    if root.exists() {
        fs::remove_dir_all(&root).map_err(|e| io("cannot clear", &root, e))?;
    }
    fs::create_dir_all(&root).map_err(|e| io("cannot create", &root, e))?;
    let mut bytes = 0;
    for deb in fs::read_dir(&debs).map_err(|e| io("cannot list", &debs, e))? {
        let deb = deb.map_err(|e| io("cannot list", &debs, e))?.path();
        bytes += fs::metadata(&deb).map_or(0, |m| m.len());
        crate::progress::run_quiet(Command::new("dpkg-deb").arg("-x").arg(&deb).arg(&root), "")?;
    }
    step.done(&format!(
        "{} packages, {} MiB, unpacked",
        packages.len(),
        bytes.div_ceil(1 << 20)
    ));
    Ok(root)
}

/// The versioned kernel package the meta package depends on
/// (`apt-cache depends linux-image-amd64`).
fn kernel_package() -> Result<String, String> {
    let out = Command::new("apt-cache")
        .args(["depends", KERNEL_META_PACKAGE])
        .stderr(Stdio::null())
        .output()
        .map_err(|e| format!("cannot run apt-cache: {e}"))?;
    parse_kernel_dependency(&String::from_utf8_lossy(&out.stdout)).ok_or_else(|| {
        format!("apt-cache does not know {KERNEL_META_PACKAGE} or what kernel it depends on")
    })
}

/// `linux-image-<version>-amd64` from `apt-cache depends` output.
pub fn parse_kernel_dependency(text: &str) -> Option<String> {
    text.lines().find_map(|l| {
        let dep = l.trim().strip_prefix("Depends:")?.trim();
        let dep = dep.trim_start_matches('<').trim_end_matches('>');
        (dep.starts_with("linux-image-") && dep.ends_with("-amd64") && dep != KERNEL_META_PACKAGE)
            .then(|| dep.to_string())
    })
}

/// Busybox applets the initramfs links, as (directory, applet).
const APPLETS: &[(&str, &str)] = &[
    ("bin", "sh"),
    ("bin", "mount"),
    ("bin", "grep"),
    ("bin", "cat"),
    ("bin", "echo"),
    ("bin", "dmesg"),
    ("bin", "uname"),
    ("bin", "test"),
    ("bin", "["),
    ("bin", "ls"),
    ("bin", "sleep"),
    ("bin", "mkdir"),
    ("bin", "sync"),
    ("bin", "umount"),
    ("bin", "awk"),
    ("bin", "dd"),
    ("bin", "cmp"),
    ("bin", "md5sum"),
    ("bin", "wc"),
    ("bin", "usleep"),
    ("bin", "readlink"),
    ("bin", "cut"),
    ("bin", "tail"),
    ("bin", "head"),
    ("bin", "nproc"),
    ("bin", "taskset"),
    ("bin", "sort"),
    ("bin", "sed"),
    ("sbin", "insmod"),
    ("sbin", "poweroff"),
];

/// The shell the Debian test `/init` scripts share, put where a script has
/// the line `SHELL_CHECKS`: the counters the summary line prints, `check
/// NAME COMMAND...` (runs the command quietly, prints `PASS NAME` or `FAIL
/// NAME` and counts), and `load_modules` (insmods the kernel modules listed
/// in `/etc/keel/modules`, in order, stopping at the first that fails).
pub const SHELL_CHECKS: &str = r#"passed=1
failed=0
check() {
    name=$1
    shift
    if "$@" >/dev/null 2>&1; then
        echo "PASS $name"
        passed=$((passed + 1))
    else
        echo "FAIL $name"
        failed=$((failed + 1))
    fi
}
load_modules() {
    for m in $(cat /etc/keel/modules); do
        insmod "/lib/modules/$m" || return 1
    done
}
"#;

/// `script` with its `SHELL_CHECKS` line replaced by [`SHELL_CHECKS`].
pub fn with_shell_checks(script: &str) -> String {
    script.replacen("SHELL_CHECKS\n", SHELL_CHECKS, 1)
}

/// The initramfs's `/init`: mounts, checks, a summary, ACPI power-off; with
/// `keel.console=shell` on the kernel command line, a shell on the console
/// instead (Keel's console test).
pub const INIT_SCRIPT: &str = r#"#!/bin/sh
# Generated by cargo xtask (xtask/src/guest_assets.rs): Keel's Linux smoke test.
export PATH=/bin:/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
if grep -q "keel.console=shell" /proc/cmdline; then
    # Keel's console test (tests/vms/console.cfg): a shell on ttyS0.
    echo "keel-console: shell on ttyS0"
    # setsid and cttyhack give the shell ttyS0 as its controlling terminal
    # (job control, Ctrl-C), when this busybox has them.
    if busybox --list | grep -qx cttyhack && busybox --list | grep -qx setsid; then
        exec busybox setsid busybox cttyhack sh -i
    fi
    exec sh -i
fi
echo "PASS linux-init"
echo "linux-init: kernel $(uname -r)"
# The CPUs the kernel brought up, on every boot: the SMP checks below and
# `cargo xtask bench` (its SMP rows) read this line.
echo "linux-init: nproc $(nproc) cpuinfo $(grep -c ^processor /proc/cpuinfo)"
SHELL_CHECKS
check acpi-tables test -e /sys/firmware/acpi/tables/DSDT
check acpi-madt test -e /sys/firmware/acpi/tables/APIC
check acpi-interpreter sh -c 'dmesg | grep -q "ACPI: Interpreter enabled"'
check acpi-ioapic-routing sh -c 'dmesg | grep -q "Using IOAPIC for interrupt routing"'
check acpi-sci grep -q "IO-APIC.*acpi" /proc/interrupts
check ioapic grep -q "IO-APIC" /proc/interrupts
# Under Xen (keel.expect=xen) Linux ticks on Xen's vCPU timer instead
# (the xen-timer check below), as on Xen itself.
if ! grep -q "keel.expect=xen" /proc/cmdline; then
    check lapic-timer grep -Eq "LOC: +[1-9]" /proc/interrupts
fi
check no-acpi-error sh -c '! dmesg | grep -q "ACPI Error"'
check no-nobody-cared sh -c '! dmesg | grep -q "nobody cared"'
# The MSRs Linux reads without asking CPUID (docs/MSRS.md) answer as on hardware.
check no-unchecked-msr sh -c '! dmesg | grep -q "unchecked MSR access"'
# The RTC starts at the machine's date (read from its own RTC), not 1970;
# the host test compares the seconds with its own clock.
check rtc-real-date sh -c '[ "$(date -u +%Y)" -ge 2025 ]'
echo "linux-init: date-u $(date -u +%s)"
# Protection keys (CPUID.07H:ECX[3] PKU, offered where the host CPU has
# them, as QEMU's -cpu max does): the kernel turned them on (pku, and ospke
# for its CR4.PKE) and keeps PKRU in its XSAVE state (component 9).
check pku sh -c 'grep -qw pku /proc/cpuinfo && grep -qw ospke /proc/cpuinfo && dmesg | grep -q "x86/fpu: Supporting XSAVE feature 0x200"'
# The invariant TSC (CPUID 8000_0007H:EDX[8]) is offered exactly when the
# host CPU has it; Linux derives constant_tsc and nonstop_tsc from it.
# keel.expect=invtsc says the machine's CPU has it; QEMU 7.2's TCG CPUs
# cannot (docs/MSRS.md), and there Linux must not find a TSC that runs on
# in deep C-states.
echo "linux-init: tsc-flags $(awk '/^flags/ { for (i = 3; i <= NF; i++) if ($i == "constant_tsc" || $i == "nonstop_tsc") printf "%s ", $i; exit }' /proc/cpuinfo)"
if grep -q "keel.expect=invtsc" /proc/cmdline; then
    check invariant-tsc sh -c 'grep -qw constant_tsc /proc/cpuinfo && grep -qw nonstop_tsc /proc/cpuinfo'
else
    check no-invariant-tsc sh -c '! grep -qw nonstop_tsc /proc/cpuinfo'
fi
# The firmware tables a direct boot carries: SMBIOS, found by the kernel.
check smbios sh -c 'dmesg | grep -q "DMI: Keel Keel Virtual Machine"'
# PCI as the firmware leaves it (firmware/src/pci.rs): every function with
# an interrupt pin (config 0x3D; the PIIX4 PM function has one) has an IRQ.
check pci-irqs sh -c 'n=0; for d in /sys/bus/pci/devices/*; do pin=$(od -An -tu1 -j61 -N1 $d/config | tr -d " "); [ "$pin" = 0 ] && continue; n=$((n + 1)); [ "$(cat $d/irq)" != 0 ] || exit 1; done; [ $n -ge 1 ]'
# x2APIC (CPUID.01H:ECX[21]) is offered to every VM. Without interrupt
# remapping Linux enables it only under a hypervisor it knows: with
# keel.expect=viridian or keel.expect=xen the kernel switched its local
# APICs to x2APIC mode (EOIs, IPIs and, on SMP, INIT/SIPI through the x2APIC
# MSRs); otherwise it saw the CPUID bit and kept xAPIC mode, saying why.
if grep -q -E "keel.expect=(viridian|xen)" /proc/cmdline; then
    check x2apic-mode sh -c 'grep -qw x2apic /proc/cpuinfo && dmesg | grep -q "x2apic enabled" && dmesg | grep -q "Switched APIC routing to physical x2apic"'
else
    check x2apic-offered sh -c 'grep -qw x2apic /proc/cpuinfo && dmesg | grep -q "x2apic: IRQ remapping doesn.t support X2APIC mode"'
fi
# With keel.expect=tsc (tests/vms/linux.cfg): the kernel calibrated its TSC
# against the PIT at once (Keel keeps the calibration's exits out of the
# VM's time, crates/keel/src/apparent_time.rs) and keeps time with the TSC.
# The switch from tsc-early to tsc follows the refined calibration, a
# second after boot in the guest's time: waited for, at most 60 s.
if grep -q "keel.expect=tsc" /proc/cmdline; then
    dmesg | grep -E "tsc:|clocksource:" | head -20
    check tsc-pit-calibration sh -c 'dmesg | grep -q "tsc: Fast TSC calibration using PIT" && ! dmesg | grep -q -E "calibration failed|Unable to calibrate|Marking TSC unstable"'
    check tsc-clocksource sh -c 'for i in $(seq 60); do grep -qx tsc /sys/devices/system/clocksource/clocksource0/current_clocksource && exit 0; sleep 1; done; exit 1'
fi
# With keel.expect=viridian (tests/vms/linux-viridian.cfg): the kernel found
# Hyper-V's enlightenments, took the TSC and APIC timer rates from the
# frequency MSRs instead of calibrating, and keeps time with the reference
# TSC page.
if grep -q "keel.expect=viridian" /proc/cmdline; then
    dmesg | grep -i -E "hyper-v|hypervisor|tsc|clocksource" | head -30
    check hyperv-detected sh -c 'dmesg | grep -q "Hypervisor detected: Microsoft Hyper-V"'
    check hyperv-tsc-frequency sh -c 'dmesg | grep -q "tsc: Detected .* MHz" && ! dmesg | grep -q -E "TSC calibration failed|could not calculate TSC khz"'
    check hyperv-lapic-frequency sh -c 'dmesg | grep -q "Hyper-V: LAPIC Timer Frequency"'
    check hyperv-apic-msrs sh -c 'dmesg | grep -q "Hyper-V: Using enlightened APIC"'
    check hyperv-tsc-page grep -qx hyperv_clocksource_tsc_page /sys/devices/system/clocksource/clocksource0/current_clocksource
fi
# With keel.expect=smpN (tests/vms/linux-smp.cfg): the kernel brought up
# N CPUs (the MADT's processors, each AP started by INIT/SIPI through the
# local APIC), each takes its own timer interrupts and IPIs, TLB
# shootdowns reach other CPUs, and N processes pinned one per CPU finish a
# checksum workload in parallel.
smp=$(sed -n 's/.*keel\.expect=smp\([0-9]*\).*/\1/p' /proc/cmdline)
if [ -n "$smp" ]; then
    check smp-nproc sh -c "[ \"\$(nproc)\" = $smp ]"
    check smp-cpuinfo sh -c "[ \"\$(grep -c ^processor /proc/cpuinfo)\" = $smp ]"
    check smp-timer-per-cpu sh -c "grep LOC: /proc/interrupts | awk '{ for (i = 2; i <= $smp + 1; i++) if (\$i == 0) exit 1 }'"
    check smp-parallel-workload sh -c '
        n=$(nproc); i=0
        while [ $i -lt $n ]; do
            (taskset -c $i sh -c "dd if=/dev/zero bs=64k count=64 2>/dev/null | md5sum > /tmp/sum.$i") &
            i=$((i + 1))
        done
        wait
        [ "$(cat /tmp/sum.* | sort -u | wc -l)" = 1 ] && [ "$(ls /tmp/sum.* | wc -l)" = "$n" ] &&
            grep -q ^b5cfa9d6c8febd618f91ac2843d50a1c /tmp/sum.0'
    # CPUID's topology (leaves 1, 4, 0BH/1FH; Fn8000_0008/001E on AMD)
    # agrees with the MADT: one package of N cores, APIC IDs 0..N-1, and
    # the kernel found no APIC ID that differs from the firmware's.
    grep -E "^(physical id|siblings|core id|cpu cores|apicid)" /proc/cpuinfo
    smp_topology() {
        ! dmesg | grep -q "APIC id mismatch" &&
            awk -F': *' -v n="$smp" '
                /^physical id/ { if ($2 != 0) bad = 1 }
                /^cpu cores/ { if ($2 != n) bad = 1 }
                /^siblings/ { if ($2 != n) bad = 1 }
                /^apicid/ { if ($2 < 0 || $2 >= n || seen[$2]++) bad = 1; ids++ }
                END { exit bad || ids != n }' /proc/cpuinfo
    }
    check smp-topology smp_topology
    # Every CPU took IPIs (rescheduling, function-call or TLB-shootdown
    # interrupts in its column), and TLB shootdowns reached other CPUs.
    smp_ipis() {
        grep -E '^ *(CAL|TLB|RES):' /proc/interrupts | awk -v n="$smp" '
            { for (i = 2; i <= n + 1; i++) s[i] += $i }
            END { for (i = 2; i <= n + 1; i++) if (s[i] == 0) exit 1 }'
    }
    check smp-ipis-per-cpu smp_ipis
    check smp-tlb-shootdowns sh -c "grep -E '^ *TLB:' /proc/interrupts | awk '{ for (i = 2; i <= $smp + 1; i++) s += \$i } END { exit s == 0 }'"
    grep -E "^ *(LOC|CAL|TLB|RES):" /proc/interrupts
fi
# With keel.expect=xen (tests/vms/linux-xen.cfg, docs/XEN.md): the kernel
# found Xen's CPUID leaves, takes events through the callback vector and
# keeps time on the Xen PV clock.
if grep -q "keel.expect=xen" /proc/cmdline; then
    dmesg | grep -i -E "xen|clocksource" | head -40
    check xen-detected sh -c 'dmesg | grep -q "Hypervisor detected: Xen HVM"'
    check xen-version sh -c 'dmesg | grep -q "Xen version"'
    check xen-callback-vector sh -c 'dmesg | grep -q "Xen HVM callback vector for event delivery is enabled"'
    check xen-clocksource grep -qx xen /sys/devices/system/clocksource/clocksource0/current_clocksource
    # The tick comes from VCPUOP_set_singleshot_timer's VIRQ_TIMER, and
    # xenbus talked to Keel's xenstore over the store event channel.
    check xen-timer grep -Eq "^ *[0-9]+: +[1-9][0-9]* +xen-percpu +-virq +timer0" /proc/interrupts
    check xenbus-store grep -Eq "^ *[0-9]+: +[1-9][0-9]* +xen-dyn +-event +xenbus" /proc/interrupts
fi
echo "$passed passed, $failed failed"
if [ "$failed" != 0 ]; then
    grep -v " 0 " /proc/interrupts
    dmesg | grep -i -E "acpi|apic|irq" | head -40
fi
sync
poweroff -f
"#;

/// The initramfs (`target/debian/initramfs.cpio.gz`), rebuilt when missing
/// or older than busybox.
pub fn initramfs(d: &Debian) -> Result<PathBuf, String> {
    let out = debian_dir()?.join("initramfs.cpio.gz");
    let busybox_path = d.root.join("bin/busybox");
    let fresh = |p: &Path| {
        let (Ok(a), Ok(b)) = (fs::metadata(p), fs::metadata(&busybox_path)) else {
            return false;
        };
        matches!((a.modified(), b.modified()), (Ok(x), Ok(y)) if x >= y)
    };
    let script_file = debian_dir()?.join("init.last");
    let script = init_script();
    let same_script = fs::read_to_string(&script_file).is_ok_and(|s| s == script);
    if fresh(&out) && same_script {
        return Ok(out);
    }
    let step = crate::progress::Step::new(format!("Debian initramfs ({DEBIAN_INITRAMFS})"));
    let busybox = fs::read(&busybox_path).map_err(|e| io("cannot read", &busybox_path, e))?;
    let gz = gzip(&initramfs_cpio(&busybox))?;
    fs::write(&out, &gz).map_err(|e| io("cannot write", &out, e))?;
    fs::write(&script_file, &script).map_err(|e| io("cannot write", &script_file, e))?;
    step.done(&format!("built {} ({} bytes)", out.display(), gz.len()));
    Ok(out)
}

/// `bytes` compressed with `gzip -9 -n` (no name, no time stamp).
pub fn gzip(bytes: &[u8]) -> Result<Vec<u8>, String> {
    let data = bytes.to_vec();
    let mut gz = Command::new("gzip")
        .args(["-9", "-n", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run gzip: {e}"))?;
    let mut stdin = gz.stdin.take().expect("piped");
    let writer = std::thread::spawn(move || {
        use std::io::Write;
        stdin.write_all(&data)
    });
    let output = gz
        .wait_with_output()
        .map_err(|e| format!("gzip failed: {e}"))?;
    writer
        .join()
        .map_err(|_| "the gzip writer thread panicked".to_string())?
        .map_err(|e| format!("cannot feed gzip: {e}"))?;
    if !output.status.success() {
        return Err(format!("gzip failed ({})", output.status));
    }
    Ok(output.stdout)
}

/// The uncompressed initramfs: directories, busybox and its links, device
/// nodes the kernel opens before devtmpfs exists, `/init`.
pub fn initramfs_cpio(busybox: &[u8]) -> Vec<u8> {
    initramfs_cpio_with(busybox, &init_script(), &[])
}

/// [`INIT_SCRIPT`] with the shared shell helpers in place.
pub fn init_script() -> String {
    with_shell_checks(INIT_SCRIPT)
}

/// An initramfs like [`initramfs_cpio`] with another `/init` and `extra`
/// files (path, contents; directories are made as needed).
pub fn initramfs_cpio_with(busybox: &[u8], init: &str, extra: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut w = cpio::Writer::new();
    let mut dirs: Vec<String> = ["bin", "sbin", "dev", "proc", "sys", "etc", "tmp", "root"]
        .iter()
        .map(|d| d.to_string())
        .collect();
    for (path, _) in extra {
        let mut at = 0;
        while let Some(i) = path[at..].find('/') {
            let d = &path[..at + i];
            if !dirs.iter().any(|x| x == d) {
                dirs.push(d.to_string());
            }
            at += i + 1;
        }
    }
    for d in &dirs {
        w.dir(d);
    }
    w.char_dev("dev/console", 0o600, 5, 1);
    w.char_dev("dev/null", 0o666, 1, 3);
    w.file("bin/busybox", 0o755, busybox);
    for (dir, applet) in APPLETS {
        let target = if *dir == "bin" {
            "busybox"
        } else {
            "../bin/busybox"
        };
        w.symlink(&format!("{dir}/{applet}"), target);
    }
    for (path, data) in extra {
        w.file(path, 0o644, data);
    }
    w.file("init", 0o755, init.as_bytes());
    w.finish()
}

/// A module list file's contents (`etc/keel/modules`): one module path
/// (under the kernel's module directory) a line, in load order.
pub fn module_list(modules: &[String]) -> Vec<u8> {
    let mut l = modules.join("\n");
    l.push('\n');
    l.into_bytes()
}

/// A Debian test guest's gzipped initramfs: [`initramfs_cpio_with`] of
/// Debian's busybox, `init` and `extra`, with each of `modules` (paths
/// under the kernel's module directory) at `lib/modules/<path>`.
pub fn modules_initramfs(
    d: &Debian,
    init: &str,
    mut extra: Vec<(String, Vec<u8>)>,
    modules: &[String],
) -> Result<Vec<u8>, String> {
    let modules_dir = d.root.join("lib/modules").join(&d.version);
    for m in modules {
        let p = modules_dir.join(m);
        let bytes = fs::read(&p).map_err(|e| io("cannot read", &p, e))?;
        extra.push((format!("lib/modules/{m}"), bytes));
    }
    let busybox_path = d.root.join("bin/busybox");
    let busybox = fs::read(&busybox_path).map_err(|e| io("cannot read", &busybox_path, e))?;
    gzip(&initramfs_cpio_with(&busybox, init, &extra))
}

/// [`mbtest_elf`] cut 64 bytes into its segment: the multiboot header is
/// there, the segment's `p_filesz` runs past the end of the file.
pub fn mbtest_truncated(flat: &[u8]) -> Vec<u8> {
    let mut f = mbtest_elf(flat);
    f.truncate(52 + 32 + 64);
    f
}

/// The flat test kernel (linked at [`MBTEST_LOAD`]) as an ELF32 executable
/// with one PT_LOAD segment (ELF spec, System V ABI i386 supplement).
pub fn mbtest_elf(flat: &[u8]) -> Vec<u8> {
    mbtest_elf32(flat, None)
}

/// [`mbtest_elf`] with a second PT_LOAD of [`MBTEST_LOW_FILESZ`] bytes at
/// [`MBTEST_LOW_AT`], below the shim's end, with bss up to
/// [`MBTEST_LOW_MEMSZ`]: the bytes follow [`mbtest_module`]'s pattern
/// with an XOR of 0xFF (its `k` = 3).
pub fn mbtest_low(flat: &[u8]) -> Vec<u8> {
    let bytes = pattern(MBTEST_LOW_FILESZ as usize, 0xFF);
    mbtest_elf32(flat, Some((MBTEST_LOW_AT, &bytes, MBTEST_LOW_MEMSZ)))
}

/// The flat test kernel as an ELF32 executable, and `low` (address,
/// bytes, memory size) as a second PT_LOAD after it.
fn mbtest_elf32(flat: &[u8], low: Option<(u32, &[u8], u32)>) -> Vec<u8> {
    const EHDR: usize = 52;
    const PHDR: usize = 32;
    let phnum = 1 + usize::from(low.is_some());
    let mut f = Vec::with_capacity(EHDR + phnum * PHDR + flat.len());
    f.extend_from_slice(b"\x7fELF");
    f.extend_from_slice(&[1, 1, 1, 0]); // 32-bit, little-endian, version 1, System V
    f.extend_from_slice(&[0; 8]);
    let h16 = |f: &mut Vec<u8>, v: u16| f.extend_from_slice(&v.to_le_bytes());
    let h32 = |f: &mut Vec<u8>, v: u32| f.extend_from_slice(&v.to_le_bytes());
    h16(&mut f, 2); // ET_EXEC
    h16(&mut f, 3); // EM_386
    h32(&mut f, 1); // EV_CURRENT
    h32(&mut f, MBTEST_ENTRY);
    h32(&mut f, EHDR as u32); // e_phoff
    h32(&mut f, 0); // e_shoff
    h32(&mut f, 0); // e_flags
    h16(&mut f, EHDR as u16);
    h16(&mut f, PHDR as u16);
    h16(&mut f, phnum as u16); // e_phnum
    h16(&mut f, 40); // e_shentsize
    h16(&mut f, 0); // e_shnum
    h16(&mut f, 0); // e_shstrndx
    let kernel_at = (EHDR + phnum * PHDR) as u32;
    let mut segments = vec![(
        kernel_at,
        MBTEST_LOAD,
        flat.len() as u32,
        flat.len() as u32 + 0x1000, // a page of bss
    )];
    if let Some((at, bytes, memsz)) = low {
        segments.push((kernel_at + flat.len() as u32, at, bytes.len() as u32, memsz));
    }
    for (offset, paddr, filesz, memsz) in segments {
        h32(&mut f, 1); // PT_LOAD
        h32(&mut f, offset); // p_offset
        h32(&mut f, paddr); // p_vaddr
        h32(&mut f, paddr); // p_paddr
        h32(&mut f, filesz);
        h32(&mut f, memsz);
        h32(&mut f, 7); // RWX
        h32(&mut f, 0x1000); // p_align
    }
    f.extend_from_slice(flat);
    if let Some((_, bytes, _)) = low {
        f.extend_from_slice(bytes);
    }
    f
}

fn read(p: &Path) -> Result<Vec<u8>, String> {
    fs::read(p).map_err(|e| io("cannot read", p, e))
}

fn write_built(name: &str, bytes: &[u8]) -> Result<PathBuf, String> {
    let dir = built_dir()?;
    fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
    let out = dir.join(name);
    fs::write(&out, bytes).map_err(|e| io("cannot write", &out, e))?;
    Ok(out)
}

/// The flat test kernel as an x86-64 ELF64 executable (gABI "ELF Header",
/// "Program Header"): the kernel's PT_LOAD at [`MBTEST_LOAD`] with virtual
/// addresses in the top 2 GiB (the entry too, which the loader must turn
/// into a physical one), and a second 4 KiB PT_LOAD of `0x5A` bytes at
/// [`MBTEST_LOW_SEGMENT`], below 1 MiB.
pub fn mbtest_elf64(flat: &[u8]) -> Vec<u8> {
    const EHDR: usize = 64;
    const PHDR: usize = 56;
    const VIRT: u64 = 0xFFFF_FFFF_8000_0000;
    let low = vec![0x5Au8; 0x1000];
    let mut f = Vec::new();
    f.extend_from_slice(b"\x7fELF");
    f.extend_from_slice(&[2, 1, 1, 0]); // 64-bit, little-endian, version 1
    f.extend_from_slice(&[0; 8]);
    let h16 = |f: &mut Vec<u8>, v: u16| f.extend_from_slice(&v.to_le_bytes());
    let h32 = |f: &mut Vec<u8>, v: u32| f.extend_from_slice(&v.to_le_bytes());
    let h64 = |f: &mut Vec<u8>, v: u64| f.extend_from_slice(&v.to_le_bytes());
    h16(&mut f, 2); // ET_EXEC
    h16(&mut f, 62); // EM_X86_64
    h32(&mut f, 1);
    h64(&mut f, VIRT + u64::from(MBTEST_ENTRY));
    h64(&mut f, EHDR as u64); // e_phoff
    h64(&mut f, 0);
    h32(&mut f, 0);
    h16(&mut f, EHDR as u16);
    h16(&mut f, PHDR as u16);
    h16(&mut f, 2);
    h16(&mut f, 64);
    h16(&mut f, 0);
    h16(&mut f, 0);
    let kernel_at = (EHDR + 2 * PHDR) as u64;
    let low_at = kernel_at + flat.len() as u64;
    for (off, paddr, len, mem) in [
        (
            kernel_at,
            u64::from(MBTEST_LOAD),
            flat.len(),
            flat.len() + 0x1000,
        ),
        (low_at, u64::from(MBTEST_LOW_SEGMENT), low.len(), low.len()),
    ] {
        h32(&mut f, 1); // PT_LOAD
        h32(&mut f, 7);
        h64(&mut f, off);
        h64(
            &mut f,
            if paddr == u64::from(MBTEST_LOAD) {
                VIRT + paddr
            } else {
                paddr
            },
        );
        h64(&mut f, paddr);
        h64(&mut f, len as u64);
        h64(&mut f, mem as u64);
        h64(&mut f, 0x1000);
    }
    f.extend_from_slice(flat);
    f.extend_from_slice(&low);
    f
}

/// The flat test kernel behind a page whose multiboot header has the a.out
/// kludge (flag 16, Multiboot Specification 3.1.3): the file loads whole
/// at [`MBTEST_LOAD`] - 4 KiB, so the kernel lands where it is linked, with
/// a page of bss after it, entered at [`MBTEST_ENTRY`].
pub fn mbtest_aout(flat: &[u8]) -> Vec<u8> {
    let load = MBTEST_LOAD - 0x1000;
    let flags: u32 = 0x1_0003;
    let magic: u32 = 0x1BAD_B002;
    let end = load + 0x1000 + flat.len() as u32;
    let mut f = Vec::new();
    for w in [
        magic,
        flags,
        0u32.wrapping_sub(magic.wrapping_add(flags)),
        load, // header_addr: the header is the file's first bytes
        load, // load_addr
        0,    // load_end_addr: the whole file
        end + 0x1000,
        MBTEST_ENTRY,
    ] {
        f.extend_from_slice(&w.to_le_bytes());
    }
    f.resize(0x1000, 0);
    f.extend_from_slice(flat);
    f
}

fn mbtest_elf_file(flat: &Path) -> Result<PathBuf, String> {
    let bytes = fs::read(flat).map_err(|e| io("cannot read", flat, e))?;
    let dir = built_dir()?;
    fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
    let out = dir.join("keel-mbtest.elf");
    fs::write(&out, mbtest_elf(&bytes)).map_err(|e| io("cannot write", &out, e))?;
    Ok(out)
}

/// Module `k` of the test kernel ([`MBTEST_MODULE_LENS`]).
pub fn mbtest_module(k: usize) -> Vec<u8> {
    pattern(MBTEST_MODULE_LENS[k], (k as u8).wrapping_mul(0x55))
}

/// `len` bytes, byte `i` being `((i * 0x9E3779B1) >> 24) ^ x` (32-bit
/// multiply), which the test kernel recomputes to check them.
fn pattern(len: usize, x: u8) -> Vec<u8> {
    (0..len as u32)
        .map(|i| (i.wrapping_mul(0x9E37_79B1) >> 24) as u8 ^ x)
        .collect()
}

fn mbtest_module_file(k: usize) -> Result<PathBuf, String> {
    let dir = built_dir()?;
    fs::create_dir_all(&dir).map_err(|e| io("cannot create", &dir, e))?;
    let name = match k {
        0 => "keel-mbtest-module.bin".to_string(),
        k => format!("keel-mbtest-module{}.bin", k + 1),
    };
    let out = dir.join(name);
    fs::write(&out, mbtest_module(k)).map_err(|e| io("cannot write", &out, e))?;
    Ok(out)
}

/// QEMU's `-fw_cfg` arguments for the shim's files (firmware/README.md,
/// "The fw_cfg contract"): the kernel and its name, the ACPI container,
/// each module (`(string, file)`: the initrd, then `opt/keel/module1`, ...)
/// with its string, and the command line.
pub fn shim_fw_cfg_args(
    kernel: &Path,
    kernel_name: &str,
    acpi: &Path,
    modules: &[(String, PathBuf)],
    cmdline: Option<&str>,
) -> Vec<std::ffi::OsString> {
    // QEMU option values double their commas.
    let q = |s: &str| s.replace(',', ",,");
    let file = |name: &str, p: &Path| format!("name={name},file={}", q(&p.to_string_lossy()));
    let mut args = vec![
        file("opt/keel/kernel", kernel),
        file("opt/keel/acpi", acpi),
        format!("name=opt/keel/kernel-name,string={}", q(kernel_name)),
    ];
    for (i, (string, path)) in modules.iter().enumerate() {
        let f = if i == 0 {
            "opt/keel/initrd".to_string()
        } else {
            format!("opt/keel/module{i}")
        };
        args.push(file(&f, path));
        args.push(format!("name={f}-cmdline,string={}", q(string)));
    }
    if let Some(c) = cmdline {
        args.push(format!("name=opt/keel/cmdline,string={}", q(c)));
    }
    args.into_iter()
        .flat_map(|a| ["-fw_cfg".into(), a.into()])
        .collect()
}

/// The `opt/keel/acpi` file for a VM: acpi-gen's tables for `vcpus` and
/// `ram_bytes`, placed for direct boot (`acpi_gen::direct_boot`), in the
/// shim's container; Keel makes the same file the same way.
pub fn acpi_container(vcpus: u32, ram_bytes: u64) -> Result<Vec<u8>, String> {
    let (pm_base, placed) = acpi_gen::direct_boot::placed_tables(vcpus, ram_bytes)
        .map_err(|e| format!("acpi-gen: {e:?}"))?;
    let blobs: Vec<(u64, &[u8])> = placed
        .iter()
        .map(|b| (b.address, b.bytes.as_slice()))
        .collect();
    let mut out = vec![0; keel_shim::acpi_blobs::encoded_len(&blobs)];
    keel_shim::acpi_blobs::encode(pm_base, &blobs, &mut out)
        .map_err(|e| format!("ACPI container: {e:?}"))?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_dependency_from_apt_cache() {
        let text = "linux-image-amd64\n  Depends: linux-image-6.1.0-56-amd64\n";
        assert_eq!(
            parse_kernel_dependency(text).as_deref(),
            Some("linux-image-6.1.0-56-amd64")
        );
        assert_eq!(parse_kernel_dependency("linux-image-amd64\n"), None);
        assert_eq!(
            parse_kernel_dependency("x\n  Depends: <linux-image-6.1.0-9-amd64>\n").as_deref(),
            Some("linux-image-6.1.0-9-amd64")
        );
    }

    #[test]
    fn initramfs_has_init_busybox_and_console() {
        let a = initramfs_cpio(b"BUSYBOX");
        let has = |name: &str| {
            let mut n = name.as_bytes().to_vec();
            n.push(0);
            a.windows(n.len()).any(|w| w == n)
        };
        for n in [
            "init",
            "bin/busybox",
            "bin/sh",
            "sbin/poweroff",
            "dev/console",
        ] {
            assert!(has(n), "{n}");
        }
        assert!(a.windows(7).any(|w| w == b"BUSYBOX"));
        assert!(INIT_SCRIPT.contains("PASS linux-init"));
        assert!(INIT_SCRIPT.contains("poweroff -f"));
    }

    #[test]
    fn every_init_script_gets_the_shared_checks_once() {
        for (what, script) in [
            ("linux", init_script()),
            ("ide", crate::ide_assets::init_script()),
            ("net", crate::net_assets::init_script()),
            ("vga", crate::vga_assets::init_script()),
        ] {
            assert!(!script.contains("SHELL_CHECKS"), "{what}: placeholder left");
            assert_eq!(script.matches("\ncheck() {").count(), 1, "{what}");
            assert_eq!(script.matches("\nload_modules() {").count(), 1, "{what}");
            // Defined before their first use.
            let def = script.find("\ncheck() {").unwrap();
            let first_use = script.find("\ncheck ").unwrap();
            assert!(def < first_use, "{what}: check used before it is defined");
        }
    }

    #[test]
    fn mbtest_elf_is_what_the_shim_loads() {
        let mut flat = vec![0u8; 0x40];
        let magic: u32 = 0x1BAD_B002;
        flat[0..4].copy_from_slice(&magic.to_le_bytes());
        flat[4..8].copy_from_slice(&3u32.to_le_bytes());
        flat[8..12].copy_from_slice(&0u32.wrapping_sub(magic + 3).to_le_bytes());
        let elf = mbtest_elf(&flat);
        let h = keel_shim::multiboot::find_header(&elf).unwrap().unwrap();
        let (plan, _) = keel_shim::multiboot::load_plan(&elf, &h).unwrap();
        assert_eq!(plan.entry, MBTEST_ENTRY);
        assert_eq!(plan.segments()[0].paddr, MBTEST_LOAD);
        assert_eq!(plan.segments()[0].filesz, 0x40);
        assert_eq!(&elf[84..88], &magic.to_le_bytes());
    }

    #[test]
    fn mbtest_variants_load_where_the_kernel_is_linked() {
        let mut flat = vec![0u8; 0x40];
        let magic: u32 = 0x1BAD_B002;
        flat[0..4].copy_from_slice(&magic.to_le_bytes());
        flat[4..8].copy_from_slice(&3u32.to_le_bytes());
        flat[8..12].copy_from_slice(&0u32.wrapping_sub(magic + 3).to_le_bytes());
        use keel_shim::multiboot::{find_header, load_plan, Format};
        let e = mbtest_elf64(&flat);
        let (p, f) = load_plan(&e, &find_header(&e).unwrap().unwrap()).unwrap();
        assert_eq!(f, Format::Elf64);
        assert_eq!(p.entry, MBTEST_ENTRY);
        assert_eq!(p.segments()[1].paddr, MBTEST_LOW_SEGMENT);
        let a = mbtest_aout(&flat);
        let (p, f) = load_plan(&a, &find_header(&a).unwrap().unwrap()).unwrap();
        assert_eq!(f, Format::AoutKludge);
        assert_eq!(p.entry, MBTEST_ENTRY);
        let s = p.segments()[0];
        assert_eq!(s.paddr + 0x1000, MBTEST_LOAD);
        assert_eq!(
            &a[s.file_offset as usize + 0x1000..][..4],
            &magic.to_le_bytes()
        );
    }

    /// The low variant: the kernel's segment at 2 MiB and one at 0x7000
    /// with the pattern's bytes and bss, which the shim's plan accepts.
    #[test]
    fn mbtest_low_has_a_segment_below_the_shims_end() {
        let mut flat = vec![0u8; 0x40];
        let magic: u32 = 0x1BAD_B002;
        flat[0..4].copy_from_slice(&magic.to_le_bytes());
        flat[4..8].copy_from_slice(&3u32.to_le_bytes());
        flat[8..12].copy_from_slice(&0u32.wrapping_sub(magic + 3).to_le_bytes());
        let e = mbtest_low(&flat);
        use keel_shim::multiboot::{find_header, load_plan, Format};
        let (p, f) = load_plan(&e, &find_header(&e).unwrap().unwrap()).unwrap();
        assert_eq!(f, Format::Elf32);
        assert_eq!(p.entry, MBTEST_ENTRY);
        let [k, low] = p.segments() else {
            panic!("{:?}", p.segments())
        };
        assert_eq!((k.paddr, k.filesz), (MBTEST_LOAD, 0x40));
        assert_eq!(&e[k.file_offset as usize..][..4], &magic.to_le_bytes());
        assert_eq!(
            (low.paddr, low.filesz, low.memsz),
            (MBTEST_LOW_AT, MBTEST_LOW_FILESZ, MBTEST_LOW_MEMSZ)
        );
        let bytes = &e[low.file_offset as usize..][..low.filesz as usize];
        assert_eq!(bytes[..2], [0xFF, 0x9E ^ 0xFF]);
        assert_eq!(e.len(), low.file_offset as usize + low.filesz as usize);
        assert!(low.paddr < keel_shim::layout::SHIM_END as u32);
    }

    #[test]
    fn mbtest_module_pattern() {
        let m = mbtest_module(0);
        assert_eq!(m.len(), MBTEST_MODULE_LEN);
        assert_eq!(m[0], 0);
        assert_eq!(m[1], 0x9E);
        let m = mbtest_module(2);
        assert_eq!(m.len(), 123457);
        assert_eq!(m[0], 0xAA);
        assert_eq!(m[1], 0x9E ^ 0xAA);
    }

    #[test]
    fn shim_fw_cfg_args_name_every_file() {
        let args = shim_fw_cfg_args(
            Path::new("/k,1"),
            "kern",
            Path::new("/a"),
            &[
                ("initrd".into(), PathBuf::from("/i")),
                ("m1 x=1".into(), PathBuf::from("/m")),
            ],
            Some("ram=256"),
        );
        let args: Vec<String> = args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            args,
            [
                "-fw_cfg",
                "name=opt/keel/kernel,file=/k,,1",
                "-fw_cfg",
                "name=opt/keel/acpi,file=/a",
                "-fw_cfg",
                "name=opt/keel/kernel-name,string=kern",
                "-fw_cfg",
                "name=opt/keel/initrd,file=/i",
                "-fw_cfg",
                "name=opt/keel/initrd-cmdline,string=initrd",
                "-fw_cfg",
                "name=opt/keel/module1,file=/m",
                "-fw_cfg",
                "name=opt/keel/module1-cmdline,string=m1 x=1",
                "-fw_cfg",
                "name=opt/keel/cmdline,string=ram=256",
            ]
        );
    }

    #[test]
    fn acpi_container_holds_rsdp_and_tables() {
        let c = acpi_container(1, 256 << 20).unwrap();
        let h = keel_shim::acpi_blobs::parse_header(c[..16].try_into().unwrap()).unwrap();
        // RSDP, ACPI tables, SMBIOS entry point and structure table.
        assert_eq!(h.count, 4);
        assert_eq!(h.pm_base, 0xB000);
        let b = keel_shim::acpi_blobs::parse_blob(c[16..32].try_into().unwrap(), 1 << 20).unwrap();
        assert_eq!(b.address, acpi_gen::direct_boot::RSDP_ADDRESS);
        assert_eq!(&c[32..40], b"RSD PTR ");
    }
}
