//! Keel's VMX backend on a machine of two CPUs (issue 18): Bochs with
//! `cpu: count=2` (`corei7_skylake_x`), whose BIOS lists both in its ACPI
//! MADT. One boot carries two VMs: the triple-fault guest and the self-test
//! with two vCPUs, so Keel turns VMX on on its second CPU, builds a vCPU's
//! VMCS there (the self-test's vCPU 1, waiting for a Start-Up IPI that never
//! comes), and places three vCPUs on two CPUs (one CPU holds two VMCSs).
//! The crash ends its VM only; the self-test passes every check.

use std::fs;

use keel_tests::{artifacts_dir, check_suite_report, test_options, vms_dir};
use xtask::iso::{self, VmFile};
use xtask::runner::{self, Backend, End, DEFAULT_BOCHS_MODEL};
use xtask::workspace::Workspace;

#[test]
fn vmx_two_cpus_run_a_crashing_vm_beside_a_two_vcpu_selftest() {
    let artifacts = artifacts_dir();
    let ws = Workspace::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = artifacts.join("smp-vmx.cfgs");
    fs::create_dir_all(&dir).unwrap();
    let smp = dir.join("selftest-smp.cfg");
    fs::write(
        &smp,
        "name = \"selftest-smp\"\nmemory = 64\nvcpus = 2\nfirmware = \"selftest\"\n",
    )
    .unwrap();
    let vms = vec![
        VmFile::load(&vms_dir().join("triple-fault.cfg")).unwrap(),
        VmFile::load(&smp).unwrap(),
    ];
    let built = iso::build_iso_of(&vms, &ws.keel_elf(), &ws.bare_metal_dir(), &artifacts)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut opts = test_options(128);
    opts.cpus = 2;
    opts.cpu_model = DEFAULT_BOCHS_MODEL.to_string();
    let o = runner::run_iso(&built.path, Backend::Vmx, &opts).unwrap_or_else(|e| panic!("{e}"));
    let report = o.report();
    let has = |text: &str| o.lines.iter().any(|l| l.contains(text));

    assert!(
        has("keel: 2 CPUs running"),
        "Keel did not start the second CPU\n{report}"
    );
    // Every CPU turned VMX on (an AP that inherited the BSP's CR4.VMXE
    // was refused as if another hypervisor used it).
    assert!(
        !o.lines.iter().any(|l| l.contains("turning VMX on")),
        "a CPU could not turn VMX on\n{report}"
    );
    assert!(
        has("keel: VM 'triple-fault' stopped: triple fault"),
        "no triple-fault stop\n{report}"
    );
    if let Err(e) = check_suite_report(&o, "selftest-smp", 10) {
        panic!("{e}");
    }
    assert!(
        has("keel: VM 'selftest-smp' stopped: guest debug-exit with status 0"),
        "the two-vCPU self-test did not finish\n{report}"
    );
    // The status table's row: CPU, 2 vCPUs, shut down.
    let row = o
        .lines
        .iter()
        .rev()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|c| c.len() == 8 && c[0] == "keel:" && c[1] == "selftest-smp")
        .unwrap_or_else(|| panic!("no status table row for 'selftest-smp'\n{report}"));
    assert_eq!((row[3], row[5]), ("2", "shutdown"), "{report}");
    // The first non-zero VM status in configuration order: the crash's 125.
    assert_eq!(o.end, End::Status(125), "{report}");
}
