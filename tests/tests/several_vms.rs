//! Several VMs in one boot (issue 18), on a machine with two CPUs under
//! multi-threaded QEMU TCG: one VM triple-faults at once while another
//! runs its whole self-test on the other CPU; the bad configurations of the
//! same boot are refused with the VM and the key named, and do not keep
//! the good ones from starting; a third good VM shares a CPU (the
//! scheduler) and finishes too. One boot serves every check. Then two
//! Debian VMs that boot one kernel at once.

use std::fs;
use std::path::Path;

use keel_tests::{artifacts_dir, check_suite_report, test_options, vms_dir};
use xtask::iso::{self, VmFile};
use xtask::runner::{self, Backend, End};
use xtask::workspace::Workspace;

fn config(dir: &Path, file: &str, text: &str) -> VmFile {
    let path = dir.join(file);
    fs::write(&path, text).unwrap();
    VmFile::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn two_vms_at_once_one_crashes_the_other_finishes_and_bad_ones_are_refused() {
    let artifacts = artifacts_dir();
    let ws = Workspace::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = artifacts.join("several-vms.cfgs");
    fs::create_dir_all(&dir).unwrap();
    let load = |stem: &str| VmFile::load(&vms_dir().join(format!("{stem}.cfg"))).unwrap();
    let vms = vec![
        load("triple-fault"),
        load("selftest"),
        // The same name again.
        config(
            &dir,
            "dup.cfg",
            "name = \"selftest\"\nmemory = 32\nfirmware = \"selftest\"\n",
        ),
        // More vCPUs than the machine's two CPUs.
        config(
            &dir,
            "big.cfg",
            "name = \"big\"\nvcpus = 4\nfirmware = \"selftest\"\n",
        ),
        // A CPU the machine does not have.
        config(
            &dir,
            "pinned.cfg",
            "name = \"pinned\"\ncpus = \"5\"\nfirmware = \"selftest\"\n",
        ),
        // More RAM than the machine has.
        config(
            &dir,
            "fat.cfg",
            "name = \"fat\"\nmemory = 65536\nfirmware = \"selftest\"\n",
        ),
        // Good: a third VM on two CPUs shares one (the scheduler).
        config(
            &dir,
            "extra.cfg",
            "name = \"extra\"\nmemory = 32\nfirmware = \"selftest\"\n",
        ),
    ];
    let built = iso::build_iso_of(&vms, &ws.keel_elf(), &ws.bare_metal_dir(), &artifacts)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut opts = test_options(128);
    opts.cpus = 2;
    let o = runner::run_iso(&built.path, Backend::Svm, &opts).unwrap_or_else(|e| panic!("{e}"));
    let report = o.report();
    let has = |text: &str| o.lines.iter().any(|l| l.contains(text));

    assert!(
        has("keel: 2 CPUs running"),
        "Keel did not start the second CPU\n{report}"
    );
    // The crash ends that VM only; the self-test runs its checks to the end.
    assert!(
        has("keel: VM 'triple-fault' stopped: triple fault"),
        "no triple-fault stop\n{report}"
    );
    if let Err(e) = check_suite_report(&o, "selftest", 10) {
        panic!("{e}");
    }
    assert!(
        has("keel: VM 'selftest' stopped: guest debug-exit with status 0"),
        "the self-test did not finish\n{report}"
    );
    // Both ran on CPUs of their own (the table's CPU column).
    // The last table's row of `name`: the VM that started, when two share it.
    let row = |name: &str| -> Vec<String> {
        o.lines
            .iter()
            .rev()
            .find_map(|l| {
                let cols: Vec<String> = l.split_whitespace().map(str::to_string).collect();
                let started = cols.get(2).is_some_and(|c| c != "-") || name == "big";
                (cols.len() == 8 && cols[0] == "keel:" && cols[1] == name && started)
                    .then_some(cols)
            })
            .unwrap_or_else(|| panic!("no status table row for '{name}'\n{report}"))
    };
    let tf = row("triple-fault");
    let st = row("selftest");
    assert_ne!(tf[2], st[2], "both VMs on one CPU\n{report}");
    assert_eq!(tf[5], "crashed", "{report}");
    assert_eq!(st[5], "shutdown", "{report}");
    assert_eq!(row("big")[5], "refused", "{report}");
    // More VMs than CPUs: the third good VM time-shares a CPU with one of
    // the others and still runs every self-test check.
    assert_eq!(row("extra")[5], "shutdown", "{report}");
    if let Err(e) = check_suite_report(&o, "extra", 10) {
        panic!("{e}");
    }
    // Bad input: each refusal names the VM and the key.
    for text in [
        "VM 'selftest' (configuration 3): name = \"selftest\" is already the name of configuration 2",
        "VM 'big': vcpus = 4, but this machine has 2 CPUs",
        "VM 'pinned': cpus names CPU 5, but this machine has CPUs 0 to 1",
        "VM 'fat': memory = 65536, but this machine has",
    ] {
        assert!(has(text), "no line says: {text}\n{report}");
    }
    // Keel's status: the first non-zero VM status in configuration order
    // (docs/ARCHITECTURE.md "Exit status"): the triple fault's 125.
    assert_eq!(o.end, End::Status(125), "{report}");
}

/// Two Debian VMs in one boot on a machine with two CPUs: both boot the
/// same kernel and initramfs (one boot module each, shared read-only),
/// each on a CPU of its own, the second on CPU 1 from its first
/// instruction (its firmware polls a long fw_cfg DMA without exiting, so
/// only that CPU's host timer gets it going), and both finish the 19
/// checks of tests/vms/linux.cfg and power off.
#[test]
fn two_debian_vms_boot_one_kernel_at_once() {
    let artifacts = artifacts_dir();
    let ws = Workspace::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = artifacts.join("two-debian.cfgs");
    fs::create_dir_all(&dir).unwrap();
    let linux = fs::read_to_string(vms_dir().join("linux.cfg")).unwrap();
    let second = linux.replace("name = \"linux\"", "name = \"linux-b\"");
    assert_ne!(linux, second, "linux.cfg names its VM 'linux'");
    let vms = vec![
        VmFile::load(&vms_dir().join("linux.cfg")).unwrap(),
        config(&dir, "linux-b.cfg", &second),
    ];
    let built = iso::build_iso_of(&vms, &ws.keel_elf(), &ws.bare_metal_dir(), &artifacts)
        .unwrap_or_else(|e| panic!("{e}"));
    let memory = vms.iter().map(|v| v.config.memory_mib).sum();
    let mut opts = test_options(memory);
    opts.cpus = 2;
    let o = runner::run_iso(&built.path, Backend::Svm, &opts).unwrap_or_else(|e| panic!("{e}"));
    let report = o.report();
    let mut cpus = Vec::new();
    for name in ["linux", "linux-b"] {
        if let Err(e) = check_suite_report(&o, name, 19) {
            panic!("{e}");
        }
        let stop = format!("keel: VM '{name}' stopped: the guest powered the machine off");
        assert!(
            o.lines.iter().any(|l| l.starts_with(&stop)),
            "'{name}' did not power off\n{report}"
        );
        let row = o
            .lines
            .iter()
            .rev()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|c| c.len() == 8 && c[0] == "keel:" && c[1] == name)
            .unwrap_or_else(|| panic!("no status table row for '{name}'\n{report}"));
        cpus.push(row[2].to_string());
    }
    assert_ne!(cpus[0], cpus[1], "both VMs on one CPU\n{report}");
    assert_eq!(o.end, End::Status(0), "{report}");
}
