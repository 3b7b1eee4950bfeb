//! Direct kernel boot through Keel's BIOS shim (firmware/): Debian's kernel
//! with a busybox initramfs, and the multiboot test kernel.

use keel_tests::{boot, boot_vmx, check_guest_suite, check_stop, check_suite_report};

fn verdict(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Debian's kernel boots with ACPI, the LAPIC and the IOAPIC in use, its
/// /init reports 10 checks passed, and it powers the VM off through ACPI S5.
#[test]
fn debian_linux_boots_and_powers_off_through_acpi() {
    let (vm, o) = boot("linux");
    // 12: the /init checks of xtask/src/guest_assets.rs, with no-unchecked-msr
    // and rtc-real-date.
    verdict(check_suite_report(&o, &vm.config.name, 12));
    verdict(check_stop(
        &o,
        &vm.config.name,
        "powered the machine off (ACPI S5)",
        0,
    ));
    let bad: Vec<&String> = o
        .lines
        .iter()
        .filter(|l| {
            l.contains("ACPI Error")
                || l.contains("nobody cared")
                || l.contains("Kernel panic")
                || l.contains("of unknown MSR")
        })
        .collect();
    assert!(
        bad.is_empty(),
        "kernel log problems: {bad:?}\n{}",
        o.report()
    );
}

/// The multiboot test kernel gets its command line, memory map and module.
#[test]
fn multiboot_kernel_gets_cmdline_mmap_and_module_under_svm() {
    let (vm, o) = boot("multiboot");
    verdict(check_guest_suite(&o, &vm.config.name, 12));
}

#[test]
fn multiboot_kernel_gets_cmdline_mmap_and_module_under_vmx() {
    let (vm, o) = boot_vmx("multiboot", "corei7_skylake_x");
    verdict(check_guest_suite(&o, &vm.config.name, 12));
}

/// The shim's ELF64, gzip and below-1-MiB paths (a gzip-compressed ELF64
/// with a segment at 0x60000, xtask's `mbtest_elf64`) and its a.out kludge
/// path (`mbtest_aout`): the test kernel passes the same 12 checks,
/// argv[0] included, and the shim says which path it took.
#[test]
fn multiboot_elf64_gzip_low_segment_and_aout_kludge_under_svm() {
    for (vm_name, line) in [
        (
            "multiboot-elf64-gz",
            "multiboot kernel (ELF64, gzip), 2 segments from 0x60000",
        ),
        (
            "multiboot-aout",
            "multiboot kernel (a.out kludge), 1 segments",
        ),
    ] {
        let (vm, o) = boot(vm_name);
        verdict(check_guest_suite(&o, &vm.config.name, 12));
        assert!(
            o.lines.iter().any(|l| l.contains(line)),
            "{vm_name}: no '{line}'\n{}",
            o.report()
        );
    }
}
