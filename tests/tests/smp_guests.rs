//! SMP guests (#18): a VM with several vCPUs, each on a host CPU of its
//! own, under multi-threaded QEMU TCG (`-smp` = the vCPUs, so the host
//! CPUs really run in parallel).

use keel_tests::{boot, check_stop, check_suite_report};

fn verdict(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Debian with `vcpus = 2` (tests/vms/linux-smp.cfg): the 14 checks of
/// the plain boot and 6 more from its /init: `nproc` and /proc/cpuinfo
/// count 2 CPUs (the MADT's processors; the AP started by Linux's
/// INIT/SIPI/SIPI through its local APIC), each CPU takes local timer
/// interrupts, two processes pinned one per CPU with `taskset` finish the
/// same checksum, and the CPUs sent each other IPIs (rescheduling,
/// function-call, TLB-shootdown counts in /proc/interrupts), and CPUID's
/// topology agrees with the MADT (one package of 2 cores, APIC IDs 0 and 1
/// in /proc/cpuinfo, no "APIC id mismatch" in the kernel log). Then it powers
/// off through ACPI S5, which ends the VM on both CPUs.
#[test]
fn debian_linux_with_two_vcpus_runs_a_parallel_workload() {
    let (vm, o) = boot("linux-smp");
    verdict(check_suite_report(&o, &vm.config.name, 20));
    verdict(check_stop(
        &o,
        &vm.config.name,
        "powered the machine off (ACPI S5)",
        0,
    ));
    assert!(
        o.lines
            .iter()
            .any(|l| l.contains("linux-init: nproc 2 cpuinfo 2")),
        "the guest did not report 2 CPUs\n{}",
        o.report()
    );
    let bad: Vec<&String> = o
        .lines
        .iter()
        .filter(|l| {
            l.contains("Kernel panic")
                || l.contains("soft lockup")
                || l.contains("hard LOCKUP")
                || l.contains("APIC id mismatch")
        })
        .collect();
    assert!(
        bad.is_empty(),
        "kernel log problems: {bad:?}\n{}",
        o.report()
    );
}
