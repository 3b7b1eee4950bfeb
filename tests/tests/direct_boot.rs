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
