//! Debian from Keel's emulated IDE devices, under SeaBIOS, on the SVM backend:
//! SeaBIOS boots SYSLINUX from the IDE disk's MBR (or ISOLINUX from the ATAPI
//! CD-ROM through El Torito), which loads Debian's kernel and a busybox
//! initramfs; its /init drives the disk and the CD-ROM with ata_piix and
//! bus-master DMA (xtask/src/ide_assets.rs lists the checks) and powers off
//! through ACPI. The images are RAM disks inside Keel, so what the guest
//! writes is checked by the guest itself (written, caches dropped, read back).

use keel_tests::{boot, check_stop, check_suite_report};
use xtask::ide_assets::{CD_CHECKS, DISK_CHECKS};
use xtask::runner::Outcome;

fn verdict(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// `needle` appears on a line of the VM's own console (`[vm] ...`) or of its
/// firmware console (`[vm:bios] ...`).
fn logged(o: &Outcome, prefix: &str, needle: &str) {
    assert!(
        o.lines
            .iter()
            .any(|l| l.starts_with(prefix) && l.contains(needle)),
        "no '{prefix}' line contains '{needle}'\n{}",
        o.report()
    );
}

fn no_kernel_trouble(o: &Outcome) {
    let bad: Vec<&String> = o
        .lines
        .iter()
        .filter(|l| {
            [
                "Kernel panic",
                "nobody cared",
                "I/O error",
                "exception Emask",
                "failed command",
            ]
            .iter()
            .any(|b| l.contains(b))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "kernel log problems: {bad:?}\n{}",
        o.report()
    );
}

/// SeaBIOS -> MBR -> SYSLINUX -> Debian from the IDE disk: the disk and the
/// CD-ROM both run with bus-master DMA, data written through ata_piix reads
/// back, and the VM powers off through ACPI S5.
#[test]
fn debian_boots_from_the_ide_disk_and_uses_disk_and_cdrom_with_dma() {
    let (vm, o) = boot("debian-ide");
    let name = &vm.config.name;
    logged(&o, &format!("[{name}:bios] "), "Booting from Hard Disk...");
    logged(&o, &format!("[{name}] "), "SYSLINUX");
    verdict(check_suite_report(&o, name, DISK_CHECKS));
    for check in [
        "disk-dma-mode",
        "disk-write-guest-pattern",
        "fat-read-back",
        "cd-file",
    ] {
        logged(&o, &format!("[{name}] "), &format!("PASS {check}"));
    }
    verdict(check_stop(&o, name, "powered the machine off (ACPI S5)", 0));
    no_kernel_trouble(&o);
}

/// SeaBIOS boots the El Torito ISO from the ATAPI CD-ROM alone (ISOLINUX,
/// then the same kernel and initramfs), which reads itself back with DMA.
#[test]
fn debian_boots_from_the_atapi_cdrom_through_el_torito() {
    let (vm, o) = boot("debian-cd");
    let name = &vm.config.name;
    logged(&o, &format!("[{name}:bios] "), "Booting from DVD/CD...");
    logged(&o, &format!("[{name}] "), "ISOLINUX");
    verdict(check_suite_report(&o, name, CD_CHECKS));
    logged(&o, &format!("[{name}] "), "PASS cd-kernel-md5");
    verdict(check_stop(&o, name, "powered the machine off (ACPI S5)", 0));
    no_kernel_trouble(&o);
}
