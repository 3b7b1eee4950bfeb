//! A hostile SMP guest beside a well-behaved one (issue 18): the
//! `hostile-smp` guest's two vCPUs flood IPIs (to absent APIC IDs too),
//! NMIs, INIT and Start-Up IPIs, storm their own AP with INIT/SIPI and spin
//! with interrupts off, on both CPUs of a two-CPU machine; the `irq` guest
//! is pinned to CPU 1, beside the hostile AP, and must keep its timer rates
//! (PIT, RTC, local APIC timer, HLT wake-ups; the rate windows allow for
//! the time the scheduler gives the neighbour) and its NMI checks. Keel must
//! not fault, and must log what the hostile guest did wrong a few times,
//! not once per IPI. Keel's exit table and status table at the hostile
//! VM's end must count both its vCPUs' exits (the AP's 500 CPUIDs).
//! One boot under QEMU (SVM); the hostile guest alone on a two-CPU Bochs
//! (VMX) in a second test.

use std::fs;

use keel_tests::{
    artifacts_dir, check_guest_suite, check_logged, check_none_of, exit_table, test_options,
    vms_dir,
};
use xtask::iso::{self, VmFile};
use xtask::runner::{self, Backend, End, Outcome, DEFAULT_BOCHS_MODEL};
use xtask::workspace::Workspace;

fn verdict(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

#[test]
fn a_vm_flooding_ipis_and_spinning_with_if_0_leaves_its_neighbour_its_timer_rate() {
    let artifacts = artifacts_dir();
    let ws = Workspace::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = artifacts.join("hostile-smp.cfgs");
    fs::create_dir_all(&dir).unwrap();
    let irq = fs::read_to_string(vms_dir().join("irq.cfg")).unwrap();
    let pinned = dir.join("irq.cfg");
    fs::write(&pinned, format!("{irq}\ncpus = \"1\"\n")).unwrap();
    let vms = vec![
        VmFile::load(&vms_dir().join("hostile-smp.cfg")).unwrap(),
        VmFile::load(&pinned).unwrap(),
    ];
    let built = iso::build_iso_of(&vms, &ws.keel_elf(), &ws.bare_metal_dir(), &artifacts)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut opts = test_options(128);
    opts.cpus = 2;
    // The whole log, for a failure's post-mortem (the report shows its tail).
    opts.log = Some(dir.join("keel.log"));
    let o = runner::run_iso(&built.path, Backend::Svm, &opts).unwrap_or_else(|e| panic!("{e}"));
    let report = o.report();

    // The neighbour: every timer rate, HLT wake-up and NMI check passes,
    // the nesting check included, and it ends after its two resets.
    verdict(check_guest_suite(&o, "irq", 24));
    for rate in [
        "pic-pit-rate-1khz",
        "pic-rtc-rate-256hz",
        "lapic-timer-periodic-rate-1khz",
        "ioapic-pit-pin2-rate-1khz",
        "ioapic-rtc-pin8-rate-256hz",
        "nmi-handler-never-nested",
        "nmi-two-sent-in-handler-one-latched",
    ] {
        let line = o
            .lines
            .iter()
            .find(|l| l.starts_with(&format!("[irq] PASS {rate}")))
            .unwrap_or_else(|| panic!("no PASS line for {rate}\n{report}"));
        eprintln!("{line}");
    }
    // Both shared CPU 1 (the status table's CPU column: a VM's first vCPU).
    assert!(
        o.lines.iter().any(|l| {
            let c: Vec<&str> = l.split_whitespace().collect();
            c.len() == 8 && c[0] == "keel:" && c[1] == "irq" && c[2] == "1"
        }),
        "'irq' not listed on CPU 1\n{report}"
    );

    check_hostile_vm(&o);
    assert_eq!(o.end, End::Status(0), "{report}");
}

/// The hostile guest alone on Keel's VMX backend: Bochs with two CPUs (as
/// tests/tests/smp_vmx.rs), one vCPU on each. The same floods, storms and
/// spins through the VMCS's interrupt and NMI injection, the same checks.
#[test]
fn vmx_two_cpus_survive_a_vm_flooding_ipis_and_spinning_with_if_0() {
    let artifacts = artifacts_dir();
    let ws = Workspace::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = artifacts.join("hostile-smp-vmx.cfgs");
    fs::create_dir_all(&dir).unwrap();
    let vms = vec![VmFile::load(&vms_dir().join("hostile-smp.cfg")).unwrap()];
    let built = iso::build_iso_of(&vms, &ws.keel_elf(), &ws.bare_metal_dir(), &artifacts)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut opts = test_options(128);
    opts.cpus = 2;
    opts.cpu_model = DEFAULT_BOCHS_MODEL.to_string();
    opts.log = Some(dir.join("keel.log"));
    let o = runner::run_iso(&built.path, Backend::Vmx, &opts).unwrap_or_else(|e| panic!("{e}"));
    let report = o.report();
    assert!(
        o.lines.iter().any(|l| l.contains("keel: 2 CPUs running")),
        "Keel did not start the second CPU\n{report}"
    );
    check_hostile_vm(&o);
    assert_eq!(o.end, End::Status(0), "{report}");
}

/// What every run of the hostile guest must show: its own checks, the BSP
/// never reset, Keel's log rate-limited, both vCPUs' exits counted.
fn check_hostile_vm(o: &Outcome) {
    let report = o.report();
    // The hostile guest's own checks: the AP started, IPIs and NMIs
    // reached it, it came back after the storms, ran its CPUIDs, both
    // spun with IF=0.
    verdict(check_guest_suite(o, "hostile-smp", 10));
    // No INIT ever reached the BSP: the AP's ICR writes, cut in two by the
    // BSP's INITs (ICR high, INIT, ICR low), must not send from an APIC the
    // INIT already reset (its ICR high 0: the BSP).
    let boots = o
        .lines
        .iter()
        .filter(|l| l.contains("[hostile-smp] hostile-smp: BSP in real mode"))
        .count();
    assert_eq!(boots, 1, "the BSP started over\n{report}");
    // Issue 12's tables count every vCPU: the AP's 500 CPUIDs are in the
    // VM's exit table (the BSP runs none), and the status table's exits
    // at the VM's end are the exit table's total.
    let table = exit_table(o, "hostile-smp").unwrap_or_else(|e| panic!("{e}"));
    let cpuid = table.row("cpuid").map_or(0, |r| r.count);
    assert!(
        cpuid >= 500,
        "the exit table has {cpuid} cpuid exits, not the AP's 500\n{report}"
    );
    assert!(
        o.lines
            .iter()
            .any(|l| l.starts_with("keel: VM 'hostile-smp': exit statistics at its end, 2 vCPUs")),
        "the exit table does not say it sums 2 vCPUs\n{report}"
    );
    let total = table.row("total").map(|r| r.count);
    let listed = o
        .lines
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|c| c.len() == 8 && c[0] == "keel:" && c[1] == "hostile-smp" && c[5] != "running")
        .and_then(|c| c[6].parse::<u64>().ok());
    assert_eq!(
        listed, total,
        "the status table's exits at the VM's end are not its exit table's total\n{report}"
    );

    // Keel's log: the bad messages of the hostile VM named, a few lines in
    // full and then summaries (guest_log's RateLimitedLog), never one per IPI.
    verdict(check_logged(
        o,
        &[
            (
                "VM 'hostile-smp': vCPU ",
                "an IPI to an absent APIC ID named with its VM",
            ),
            (
                "reaches no local APIC: dropped",
                "IPIs to absent APIC IDs logged",
            ),
            (
                "which sends nothing: only fixed delivery takes the self and all-including-self shorthands",
                "an NMI with a shorthand refused and logged",
            ),
            (
                "which sends nothing: vectors 0-15 are illegal",
                "a fixed IPI with vector 3 refused and logged",
            ),
            ("more like this not shown", "summary lines"),
        ],
    ));
    let unrouted = o
        .lines
        .iter()
        .filter(|l| l.contains("reaches no local APIC"))
        .count();
    let refused = o
        .lines
        .iter()
        .filter(|l| l.contains("which sends nothing"))
        .count();
    eprintln!("Keel's log: {unrouted} lines for unrouted IPIs, {refused} for refused ICR writes");
    // 4 in full and one per doubling: 40 lines stand for 2^36 IPIs.
    assert!(
        unrouted <= 40,
        "{unrouted} lines about unrouted IPIs\n{report}"
    );
    assert!(
        refused <= 40,
        "{refused} lines about refused ICR writes\n{report}"
    );
    verdict(check_none_of(
        o,
        &["keel: FATAL", "exception loop", "stopped: a guest state"],
    ));
}
