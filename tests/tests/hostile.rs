//! The hostile-guest suite on the SVM backend (QEMU TCG): guests that attack
//! Keel through every path a guest controls (issue #11). Each test asserts
//! the guest's verdict, which is what the hardware manuals give, and that
//! Keel survived to print its final line with the VM's status.

use keel_tests::{boot, check_guest_suite, check_stop};

fn verdict(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Port and MMIO storms, the i8042 0xD2 flood, the PM block over the PIT,
/// then the devices still work.
#[test]
fn hostile_io_guest_leaves_devices_working() {
    let (_, o) = boot("hostile-io");
    verdict(check_guest_suite(&o, "hostile-io", 7));
}

/// CPUID/MSR/CR/XSETBV fuzz in real, protected and long mode.
#[test]
fn hostile_cpu_guest_gets_architectural_faults() {
    let (_, o) = boot("hostile-cpu");
    verdict(check_guest_suite(&o, "hostile-cpu", 50));
}

/// IDE bus-master and fw_cfg DMA outside guest RAM and without an end of
/// table.
#[test]
fn hostile_dma_guest_gets_dma_errors() {
    let (_, o) = boot("hostile-dma");
    verdict(check_guest_suite(&o, "hostile-dma", 5));
}

/// 20 resets with work between them: the VM keeps running.
#[test]
fn hostile_reset_guest_survives_20_resets() {
    let (_, o) = boot("hostile-reset");
    verdict(check_guest_suite(&o, "hostile-reset", 1));
}

/// Resets in a tight loop: stopped as a guest that keeps resetting.
#[test]
fn hostile_reset_loop_guest_is_stopped() {
    let (vm, o) = boot("hostile-reset-loop");
    verdict(check_stop(&o, &vm.config.name, "keeps resetting", 126));
}

/// NMI storms, INIT/SIPI to itself, `cli; hlt` woken by an NMI, string I/O
/// from the firmware alias, a far JMP to a TSS; last an interrupt whose IDT
/// is in MMIO, which Keel must stop (status 126) rather than run on.
#[test]
fn hostile_events_guest_is_handled_or_stopped() {
    let (vm, o) = boot("hostile-events");
    verdict(keel_tests::check_suite_report(&o, "hostile-events", 5));
    verdict(check_stop(&o, &vm.config.name, "", 126));
}
