//! The scheduler (issue 18, item 4): the irq guest and a hostile guest
//! spinning with interrupts off, both pinned to CPU 0 of a two-CPU machine.
//! The spinner never exits by itself, so only the host timer at its slice's
//! end gives the CPU back; the irq guest's timer checks (PIT, RTC, local
//! APIC timer, HLT wake-up) must all still pass. One boot.

use std::fs;

use keel_tests::{artifacts_dir, check_suite_report, test_options, vms_dir};
use xtask::iso::{self, VmFile};
use xtask::runner::{self, Backend};
use xtask::workspace::Workspace;

#[test]
fn a_vm_spinning_with_interrupts_off_cannot_starve_its_cpu_neighbour() {
    let artifacts = artifacts_dir();
    let ws = Workspace::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = artifacts.join("scheduler.cfgs");
    fs::create_dir_all(&dir).unwrap();
    let irq = fs::read_to_string(vms_dir().join("irq.cfg")).unwrap();
    let pinned = dir.join("irq.cfg");
    fs::write(&pinned, format!("{irq}\ncpus = \"0\"\n")).unwrap();
    let vms = vec![
        VmFile::load(&vms_dir().join("hostile-spin.cfg")).unwrap(),
        VmFile::load(&pinned).unwrap(),
    ];
    let built = iso::build_iso_of(&vms, &ws.keel_elf(), &ws.bare_metal_dir(), &artifacts)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut opts = test_options(128);
    opts.cpus = 2;
    let o = runner::run_iso(&built.path, Backend::Svm, &opts).unwrap_or_else(|e| panic!("{e}"));
    let report = o.report();
    let has = |text: &str| o.lines.iter().any(|l| l.contains(text));
    if let Err(e) = check_suite_report(&o, "irq", 5) {
        panic!("{e}");
    }
    assert!(
        has("keel: VM 'irq' stopped: guest debug-exit with status 0"),
        "the irq guest did not finish\n{report}"
    );
    assert!(
        has("keel: VM 'hostile-spin' stopped: guest debug-exit with status 0"),
        "the spinner did not end\n{report}"
    );
    // Both on CPU 0 (the status table's CPU column).
    for name in ["irq", "hostile-spin"] {
        assert!(
            o.lines.iter().any(|l| {
                let c: Vec<&str> = l.split_whitespace().collect();
                c.len() == 8 && c[0] == "keel:" && c[1] == name && c[2] == "0"
            }),
            "'{name}' not listed on CPU 0\n{report}"
        );
    }
}
