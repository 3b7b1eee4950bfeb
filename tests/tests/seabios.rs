//! Debian's SeaBIOS, unmodified, POSTs on Keel's emulated PC on both backends
//! and reaches "No bootable device" through the same stages as on plain QEMU.

use keel_tests::{boot_on, check_seabios_post};
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
