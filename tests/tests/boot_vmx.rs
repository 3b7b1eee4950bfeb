//! Keel's VMX backend under Bochs: the same guests and verdicts as
//! tests/boot.rs (SVM under QEMU), on `corei7_skylake_x`, and the self-test
//! once more on an older model, `corei7_haswell_4770`.

use keel_tests::{
    boot_vmx, check_guest_suite, check_halted_at_guest_hlt, check_logged,
    check_selftest_exit_table, check_stop, check_xen_hypercall_guest,
};

const SKYLAKE_X: &str = "corei7_skylake_x";
const HASWELL: &str = "corei7_haswell_4770";

fn verdict(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

#[test]
fn vmx_selftest_guest_passes_every_check() {
    let (_, o) = boot_vmx("selftest", SKYLAKE_X);
    verdict(check_guest_suite(&o, "selftest", 10));
    verdict(check_selftest_exit_table(&o));
}

#[test]
fn vmx_mmio_guest_passes_every_check() {
    let (_, o) = boot_vmx("mmio", SKYLAKE_X);
    verdict(check_guest_suite(&o, "mmio", 13));
}

/// Keel's PCI test device end to end (issue 10), as under SVM.
#[test]
fn vmx_pci_testdev_guest_passes_every_check() {
    let (_, o) = boot_vmx("pci-testdev", SKYLAKE_X);
    verdict(check_guest_suite(&o, "pci-testdev", 19));
}

#[test]
fn vmx_irq_guest_passes_every_check() {
    let (_, o) = boot_vmx("irq", SKYLAKE_X);
    verdict(check_guest_suite(&o, "irq", 24));
}

#[test]
fn vmx_halt_guest_stops_with_123() {
    let (vm, o) = boot_vmx("halt", SKYLAKE_X);
    verdict(check_halted_at_guest_hlt(&o, &vm.config.name));
}

/// Issue 11, finding #3: a fault while delivering an event (the IDT in MMIO)
/// stops the VM instead of emulating the instruction at RIP.
#[test]
fn vmx_mmio_idt_guest_stops_with_126() {
    let (vm, o) = boot_vmx("mmio-idt", SKYLAKE_X);
    verdict(check_stop(
        &o,
        &vm.config.name,
        "event delivery through MMIO is not supported: delivering vector 13",
        126,
    ));
}

#[test]
fn vmx_triple_fault_guest_stops_with_125() {
    let (vm, o) = boot_vmx("triple-fault", SKYLAKE_X);
    verdict(check_stop(&o, &vm.config.name, "triple fault", 125));
}

#[test]
fn vmx_selftest_on_haswell() {
    let (_, o) = boot_vmx("selftest", HASWELL);
    verdict(check_guest_suite(&o, "selftest", 10));
}

/// The MSR table of docs/MSRS.md and RDPMC on Bochs' Skylake-X
/// (GenuineIntel, leaf 0AH zero: every PMU MSR and RDPMC index #GP; no
/// PKU in Bochs 2.7's model: CR4.PKE #GP and RDPKRU #UD; CR4.SMEP; the
/// model's invariant TSC, passed on in Fn8000_0007 EDX[8]); x2APIC mode as
/// on QEMU (168 checks).
#[test]
fn vmx_msr_guest_sees_the_table() {
    let (_, o) = boot_vmx("msr", SKYLAKE_X);
    verdict(check_guest_suite(&o, "msr", 168));
    verdict(check_logged(
        &o,
        &[("[msr] msr: invariant TSC", "the host's invariant TSC")],
    ));
}

/// The msr guest with `cpuid = "host,smep=0,pku=0,invtsc=0"` on Bochs'
/// Skylake-X, which has SMEP and an invariant TSC: the CPU would take
/// CR4.SMEP without an exit, so Keel keeps the bit in the CR4 guest/host
/// mask, and the write exits and raises #GP(0) as on a CPU without SMEP;
/// Fn8000_0007 EDX[8] reads 0.
#[test]
fn vmx_msr_guest_with_smep_pku_and_invtsc_hidden() {
    let (_, o) = boot_vmx("msr-hidden", SKYLAKE_X);
    verdict(check_guest_suite(&o, "msr-hidden", 168));
    verdict(check_logged(
        &o,
        &[
            ("[msr-hidden] PASS cr4-smep-absent-gp", "CR4.SMEP refused"),
            ("[msr-hidden] msr: no invariant TSC", "invtsc=0"),
        ],
    ));
}

/// Issue 19: the xen-hypercall guest on Bochs' Skylake-X (VMX, the page's
/// stubs use VMCALL), with the verdict of tests/boot.rs.
#[test]
fn vmx_xen_hypercall_guest_sees_xens_abi_and_powers_off_through_sched_op() {
    let (vm, o) = boot_vmx("xen-hypercall", SKYLAKE_X);
    verdict(check_xen_hypercall_guest(&o, &vm.config.name, "vmcall"));
}
