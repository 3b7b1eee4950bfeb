//! Debian's SeaBIOS, unmodified, on Keel's emulated PC on both backends: it
//! POSTs to "No bootable device" through the same stages as on plain QEMU, and
//! boots a boot sector from the emulated IDE disk.

use keel_tests::{boot_on, check_guest_suite, check_seabios_post};
use xtask::runner::Backend;

const UNTIL: &str = "No bootable device.";

#[test]
fn seabios_posts_under_svm() {
    let (vm, o) = boot_on("seabios", Backend::Svm, None, Some(UNTIL));
    if let Err(e) = check_seabios_post(&o, &vm.config.name) {
        panic!("{e}");
    }
}

#[test]
fn seabios_posts_under_vmx() {
    let (vm, o) = boot_on(
        "seabios",
        Backend::Vmx,
        Some("corei7_skylake_x"),
        Some(UNTIL),
    );
    if let Err(e) = check_seabios_post(&o, &vm.config.name) {
        panic!("{e}");
    }
}

/// SeaBIOS boots the `bootdisk` image's boot sector from the IDE disk; it
/// reads the disk's other sectors through INT 13h, writes one and reads it
/// back, flushes the disk, and reports PASS lines.
fn bootdisk(backend: Backend, cpu_model: Option<&str>) {
    let (vm, o) = boot_on("bootdisk", backend, cpu_model, None);
    if let Err(e) = check_guest_suite(&o, &vm.config.name, 5) {
        panic!("{e}");
    }
}

#[test]
fn seabios_boots_a_boot_sector_from_ide_under_svm() {
    bootdisk(Backend::Svm, None);
}

#[test]
fn seabios_boots_a_boot_sector_from_ide_under_vmx() {
    bootdisk(Backend::Vmx, Some("corei7_skylake_x"));
}
