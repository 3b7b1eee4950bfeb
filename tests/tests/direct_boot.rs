//! Direct kernel boot through Keel's BIOS shim (firmware/): Debian's kernel
//! with a busybox initramfs, and the multiboot test kernel.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use keel_tests::{
    boot, boot_vmx, check_guest_suite, check_logged, check_none_of, check_stop, check_suite_report,
};
use xtask::runner::Outcome;

fn verdict(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// How far the guest's clock may be from the host's: Linux reads the RTC
/// to the second at boot, then keeps time with a clocksource calibrated on
/// a loaded emulator.
const DATE_TOLERANCE: Duration = Duration::from_secs(10);

/// Boots `stem` and checks that the date its /init printed (`linux-init:
/// date-u SECONDS`) is the host's date plus `rtc_offset` seconds: no earlier
/// than the host clock at the boot's start plus the line's time, no later
/// than the host clock after the boot, within [`DATE_TOLERANCE`].
fn boot_and_check_date(stem: &str, rtc_offset: i64) -> (xtask::iso::VmFile, Outcome) {
    let secs = |t: SystemTime| t.duration_since(UNIX_EPOCH).unwrap().as_secs() as i64;
    let started = SystemTime::now();
    let (vm, o) = boot(stem);
    let ended = secs(SystemTime::now());
    let at = o
        .lines
        .iter()
        .position(|l| l.contains("linux-init: date-u "))
        .unwrap_or_else(|| panic!("no 'linux-init: date-u' line\n{}", o.report()));
    let guest: i64 = o.lines[at]
        .rsplit(' ')
        .next()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or_else(|| panic!("bad date line {:?}", o.lines[at]));
    let tol = DATE_TOLERANCE.as_secs() as i64;
    let earliest = secs(started + o.line_times[at]) + rtc_offset - tol;
    let latest = ended + rtc_offset + tol;
    assert!(
        (earliest..=latest).contains(&guest),
        "the guest's date {guest} is not the host's{} (between {earliest} and {latest}, \
         {tol} s either way)",
        if rtc_offset == 0 {
            String::new()
        } else {
            format!(" plus rtc_timeoffset {rtc_offset}")
        }
    );
    (vm, o)
}

/// Debian's kernel boots with ACPI, the LAPIC and the IOAPIC in use, its
/// /init reports 19 checks passed, its date is the host's (the RTC starts
/// from the machine's), and it powers the VM off through ACPI S5.
/// Its `x2apic-offered` check: CPUID offers x2APIC and Linux, with no
/// interrupt remapping and no hypervisor it knows, keeps xAPIC mode.
/// Its `smbios` check: the kernel found the shim's SMBIOS tables by its own
/// scan of 0xF0000-0xFFFFF (its `DMI:` line names the system acpi-gen's
/// type 1 describes). Its `tsc-pit-calibration` and `tsc-clocksource`
/// checks (keel.expect=tsc): the fast PIT calibration succeeded with no
/// calibration failure, and the kernel keeps time on the `tsc` clocksource,
/// with Keel's PIT, HPET and TSC agreeing (`keel::apparent_time`).
#[test]
fn debian_linux_boots_and_powers_off_through_acpi() {
    let (vm, o) = boot_and_check_date("linux", 0);
    // 19: the /init checks of xtask/src/guest_assets.rs, with no-unchecked-msr,
    // rtc-real-date, pku, no-invariant-tsc, smbios, pci-irqs, x2apic-offered
    // and the two TSC checks.
    verdict(check_suite_report(&o, &vm.config.name, 19));
    verdict(check_stop(
        &o,
        &vm.config.name,
        "powered the machine off (ACPI S5)",
        0,
    ));
    verdict(check_none_of(
        &o,
        &[
            "ACPI Error",
            "nobody cared",
            "Kernel panic",
            "of unknown MSR",
        ],
    ));
}

/// Debian's kernel with `viridian = 1` (tests/vms/linux-viridian.cfg): the
/// 17 checks of the plain boot without its two TSC checks (`x2apic-mode`
/// for `x2apic-offered`: Linux switched to physical x2APIC mode and EOIs
/// through HV_X64_MSR_EOI) and 5 more: Linux detected Microsoft Hyper-V,
/// took the TSC rate from HV_X64_MSR_TSC_FREQUENCY ("tsc: Detected ... MHz"
/// with no calibration failure) and the APIC timer's from
/// HV_X64_MSR_APIC_FREQUENCY, uses the APIC access MSRs, and keeps time on
/// the reference TSC page (`hyperv_clocksource_tsc_page`). Its config also
/// sets `rtc_timeoffset = "-86400"`: its date is the host's a day ago.
#[test]
fn debian_linux_uses_hyper_v_enlightenments_with_viridian() {
    let (vm, o) = boot_and_check_date("linux-viridian", -86_400);
    verdict(check_suite_report(&o, &vm.config.name, 22));
    verdict(check_stop(
        &o,
        &vm.config.name,
        "powered the machine off (ACPI S5)",
        0,
    ));
    verdict(check_logged(
        &o,
        &[
            ("Hypervisor detected: Microsoft Hyper-V", "Hyper-V detected"),
            (
                "Switched to clocksource hyperv_clocksource_tsc_page",
                "the reference TSC page as clocksource",
            ),
        ],
    ));
    verdict(check_none_of(
        &o,
        &[
            "TSC calibration failed",
            "Kernel panic",
            "of unknown MSR",
            "guest WRMSR",
        ],
    ));
}

/// Debian's kernel with `xen_platform_pci = 1` (tests/vms/linux-xen.cfg,
/// docs/XEN.md): the plain boot's checks but the LAPIC timer's (with
/// `x2apic-mode`: Linux runs in physical x2APIC mode) and 6 more:
/// Linux detected Xen HVM and its version, enabled the callback vector,
/// keeps time on the `xen` clocksource, ticks on Xen's vCPU timer
/// (VIRQ_TIMER) and talked to Keel's xenstore over the store event
/// channel; it unplugged the emulated disks and NICs through the platform
/// device's ports and powers off through ACPI S5.
#[test]
fn debian_linux_detects_xen_hvm_with_xen_platform_pci() {
    let (vm, o) = boot_and_check_date("linux-xen", 0);
    verdict(check_suite_report(&o, &vm.config.name, 22));
    verdict(check_stop(
        &o,
        &vm.config.name,
        "powered the machine off (ACPI S5)",
        0,
    ));
    verdict(check_logged(
        &o,
        &[
            ("Hypervisor detected: Xen HVM", "Xen detected"),
            ("Xen version 4.17", "Xen's version from xen_version"),
            (
                "Xen HVM callback vector for event delivery is enabled",
                "the callback vector",
            ),
            ("Switched to clocksource xen", "the Xen PV clock"),
            (
                "xen-platform-pci: the guest unplugged the emulated disks",
                "the disk unplug",
            ),
            (
                "xen-platform-pci: the guest unplugged the emulated NICs",
                "the NIC unplug",
            ),
        ],
    ));
    verdict(check_none_of(
        &o,
        &["Kernel panic", "BUG:", "of unknown MSR", "ACPI Error"],
    ));
}

/// The multiboot test kernel's checks with one module: 12 of the loader's
/// hand-over (command line, memory map, the module), 18 of the PC state
/// a BIOS leaves (BIOS data area, EBDA, IVT, RSDP, SMBIOS, low e820 map)
/// and 8 of PCI as SeaBIOS leaves it (BARs placed, aligned, disjoint,
/// decoded; interrupt lines, PIRQ routes, ELCR), with `keel_testdev = 1`.
const ONE_MODULE_CHECKS: u32 = 39;
/// With three modules (`multiboot-aout`): four more checks per module.
const THREE_MODULE_CHECKS: u32 = ONE_MODULE_CHECKS + 2 * 4;

/// The multiboot test kernel gets its command line, memory map and module,
/// and finds the BIOS data area, the IVT, the RSDP, SMBIOS, the e820 map
/// and the PCI BARs and interrupt routes a BIOS leaves.
#[test]
fn multiboot_kernel_gets_cmdline_mmap_and_module_under_svm() {
    let (vm, o) = boot("multiboot");
    verdict(check_guest_suite(&o, &vm.config.name, ONE_MODULE_CHECKS));
}

/// With QEMU's standard VGA (`multiboot-vga`), the kernel's header asks
/// for 1024x768x32: the info block's VBE and framebuffer fields (flags 11
/// and 12, type 1 RGB with 8-bit fields at 16, 8, 0, the framebuffer at the
/// VGA's BAR0, VESA mode 0x118, the VBE blocks behind them), the card in
/// that mode (DISPI read-back) and its framebuffer writable: 17 checks
/// in place of the one that, without a VGA, finds neither flag.
#[test]
fn multiboot_kernel_gets_vbe_and_framebuffer_fields_under_svm() {
    let (vm, o) = boot("multiboot-vga");
    verdict(check_guest_suite(
        &o,
        &vm.config.name,
        ONE_MODULE_CHECKS + 16,
    ));
    let vbe = format!("[{}] PASS vbe-mode-0x118", vm.config.name);
    assert!(
        o.lines.iter().any(|l| l.trim_end() == vbe),
        "no '{vbe}' line\n{}",
        o.report()
    );
}

#[test]
fn multiboot_kernel_gets_cmdline_mmap_and_module_under_vmx() {
    let (vm, o) = boot_vmx("multiboot", "corei7_skylake_x");
    verdict(check_guest_suite(&o, &vm.config.name, ONE_MODULE_CHECKS));
}

/// The shim's ELF64, gzip and below-1-MiB paths (a gzip-compressed ELF64
/// with a segment at 0x60000, xtask's `mbtest_elf64`) and its a.out kludge
/// path (`mbtest_aout`, with three modules each with its own string): the
/// test kernel passes the same checks, argv[0] included, each module's
/// size, bytes and string too, and the shim says which path it took.
#[test]
fn multiboot_elf64_gzip_low_segment_and_aout_kludge_under_svm() {
    for (vm_name, line, modules, checks) in [
        (
            "multiboot-elf64-gz",
            "multiboot kernel (ELF64, gzip), 2 segments from 0x60000",
            ", 1 modules",
            ONE_MODULE_CHECKS,
        ),
        (
            "multiboot-aout",
            "multiboot kernel (a.out kludge), 1 segments",
            ", 3 modules",
            THREE_MODULE_CHECKS,
        ),
    ] {
        let (vm, o) = boot(vm_name);
        verdict(check_guest_suite(&o, &vm.config.name, checks));
        assert!(
            o.lines
                .iter()
                .any(|l| l.contains(line) && l.ends_with(modules)),
            "{vm_name}: no '{line}' ending in '{modules}'\n{}",
            o.report()
        );
    }
}

/// A segment below the shim's end (`multiboot-low`: one at 0x7000 over the
/// info block's usual place, the shim's stack and, with its bss, the start
/// of the shim's image): the shim moves the info block below the EBDA and
/// copies the segment from its relocation stub; the kernel finds the
/// segment's bytes and zeroed bss, the info block, its command line,
/// modules and map outside the segment, argv[0], and the BIOS data area
/// intact: 4 checks more than with one module.
#[test]
fn multiboot_segment_below_the_shims_end_under_svm() {
    let (vm, o) = boot("multiboot-low");
    verdict(check_guest_suite(
        &o,
        &vm.config.name,
        ONE_MODULE_CHECKS + 4,
    ));
    verdict(check_logged(
        &o,
        &[
            (
                "multiboot kernel (ELF32), 2 segments from 0x7000",
                "the low segment loaded",
            ),
            (
                "info at 0x9b000, 1 modules",
                "the info block moved below the EBDA",
            ),
        ],
    ));
}

/// Bad input (firmware/README.md, "Errors"): an ELF file cut short inside
/// its segment stops with status 4, more module bytes than RAM with status
/// 5; each time the shim's error line names the file and the problem.
#[test]
fn bad_kernel_and_modules_too_big_stop_with_the_file_named() {
    for (vm_name, line, status) in [
        (
            "multiboot-bad-elf",
            "keel-shim: error: keel-mbtest-truncated: bad kernel: an ELF segment runs past the file",
            4,
        ),
        (
            "multiboot-modules-too-big",
            "keel-shim: error: keel-mbtest-module3: the multiboot modules",
            5,
        ),
    ] {
        let (vm, o) = boot(vm_name);
        verdict(check_stop(
            &o,
            &vm.config.name,
            &format!("guest debug-exit with status {status}"),
            status,
        ));
        assert!(
            o.lines
                .iter()
                .any(|l| l.contains(line) && (status != 5 || l.ends_with("too big for the VM's RAM"))),
            "{vm_name}: no '{line}'\n{}",
            o.report()
        );
        assert!(
            !o.lines.iter().any(|l| l.contains("passed")),
            "{vm_name}: the kernel ran\n{}",
            o.report()
        );
    }
}
