//! SMP guests (#18): a VM with several vCPUs, each on a host CPU of its
//! own, under multi-threaded QEMU TCG (`-smp` = the vCPUs, so the host
//! CPUs really run in parallel).

use keel_tests::{boot, check_logged, check_none_of, check_stop, check_suite_report};

fn verdict(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// Debian on `stem` with `cpus` vCPUs: the 17 checks of the plain boot
/// without its two TSC checks (`x2apic-mode` instead of `x2apic-offered`
/// with `viridian`, and then the 5 Hyper-V checks of the viridian boot too)
/// and 7 more from its /init: `nproc` and /proc/cpuinfo count `cpus` CPUs (the
/// MADT's processors; each AP started by Linux's INIT/SIPI/SIPI through its
/// local APIC), each CPU takes local timer interrupts and IPIs (its
/// rescheduling, function-call and TLB-shootdown counts in
/// /proc/interrupts), TLB shootdowns reached other CPUs, one process pinned
/// per CPU with `taskset` finishes the same checksum, and CPUID's topology
/// agrees with the MADT (one package of `cpus` cores, APIC IDs 0 to
/// `cpus` - 1 in /proc/cpuinfo, no "APIC id mismatch" in the kernel log).
/// Then it powers off through ACPI S5, which ends the VM on every CPU.
/// `checks`: how many /init reports passed.
fn debian_runs_on(stem: &str, cpus: u32, checks: u32) {
    let (vm, o) = boot(stem);
    assert_eq!(vm.config.vcpus, cpus, "{stem}.cfg");
    verdict(check_suite_report(&o, &vm.config.name, checks));
    verdict(check_stop(
        &o,
        &vm.config.name,
        "powered the machine off (ACPI S5)",
        0,
    ));
    let count = format!("linux-init: nproc {cpus} cpuinfo {cpus}");
    verdict(check_logged(
        &o,
        &[(&count, "the guest did not report its CPUs")],
    ));
    verdict(check_none_of(
        &o,
        &[
            "Kernel panic",
            "soft lockup",
            "hard LOCKUP",
            "APIC id mismatch",
        ],
    ));
}

/// Debian with `vcpus = 2` and `viridian = 1` (tests/vms/linux-smp.cfg):
/// Linux runs both local APICs in x2APIC mode, so the APs' INIT/SIPI and
/// every IPI go through the x2APIC ICR with 32-bit destinations; 29 checks.
#[test]
fn debian_linux_with_two_vcpus_runs_a_parallel_workload() {
    debian_runs_on("linux-smp", 2, 29);
}

/// Debian with `vcpus = 4` (tests/vms/linux-smp4.cfg): a machine of four
/// CPUs under QEMU, one per vCPU, so three APs come up and every pair of
/// CPUs can exchange IPIs.
#[test]
fn debian_linux_with_four_vcpus_runs_a_parallel_workload() {
    debian_runs_on("linux-smp4", 4, 24);
}
