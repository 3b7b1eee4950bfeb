//! Networking through Keel's emulated e1000 (82540EM) on the SVM backend,
//! bridged to the machine's virtio-net NIC on QEMU's restricted user network
//! (xtask/src/net.rs): guest traffic reaches only QEMU's DHCP and TFTP
//! servers and the HTTP server these tests run on 127.0.0.1.
//!
//! - Debian's kernel, direct boot, with its unmodified `e1000` module: a
//!   DHCP lease, then a download of a file of several MiB over HTTP whose
//!   size and SHA-256 it checks (xtask/src/net_assets.rs lists the checks).
//! - The same with Keel's virtio-net and Debian's unmodified `virtio_net`.
//! - SeaBIOS runs Debian's iPXE ROM from the e1000's ROM BAR; iPXE gets a
//!   lease and a boot file from QEMU's DHCP server and boots the multiboot
//!   test kernel and its module over TFTP, which check what they got.
//!
//! The `reference_*` tests boot the same guests on plain QEMU with QEMU's
//! own e1000: they check the assets themselves (the guest script, the ROM,
//! the TFTP root), not Keel, so they are ignored by default; run them with
//! `cargo test -p keel-tests --test net -- --ignored reference`.

use std::time::Duration;

use keel_tests::{boot_on_with, check_stop, check_suite_report, test_options};
use xtask::bench;
use xtask::guest_assets;
use xtask::net::{HostNet, TEST_FILE, TEST_FILE_LEN};
use xtask::net_assets::{self, TestNetwork, NET_CHECKS};
use xtask::runner::{Backend, Outcome};
use xtask::workspace::Workspace;

fn verdict(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

fn network() -> TestNetwork {
    let ws = Workspace::locate().unwrap_or_else(|e| panic!("{e}"));
    net_assets::test_network(&ws.bare_metal_dir(), None).unwrap_or_else(|e| panic!("{e}"))
}

/// The server answered exactly one request, for the test file, in full.
fn served_the_test_file(t: TestNetwork, o: &Outcome) {
    let log = t.server.stop();
    assert_eq!(
        log.requests,
        [(format!("/{TEST_FILE}"), 200, TEST_FILE_LEN as u64)],
        "what the HTTP server served\n{}",
        o.report()
    );
}

/// `needle` appears on a serial line starting with `prefix`.
fn logged(o: &Outcome, prefix: &str, needle: &str) {
    assert!(
        o.lines
            .iter()
            .any(|l| l.starts_with(prefix) && l.contains(needle)),
        "no '{prefix}' line contains '{needle}'\n{}",
        o.report()
    );
}

/// Debian's unmodified e1000 driver binds to Keel's 82540EM (8086:100E),
/// sees the link up, gets QEMU's first lease (10.0.2.15, default route via
/// 10.0.2.2) through the in-Keel bridge to virtio0, downloads the test file
/// over HTTP with its SHA-256 intact, takes the NIC's interrupts, and the
/// VM powers off through ACPI.
#[test]
fn debian_gets_a_dhcp_lease_and_downloads_a_file_through_the_e1000() {
    let t = network();
    let (vm, o) = boot_on_with("debian-net", Backend::Svm, None, None, Some(t.net.clone()));
    let name = &vm.config.name;
    verdict(check_suite_report(&o, name, NET_CHECKS));
    for check in [
        "nic-pci-id",
        "nic-driver",
        "dhcp-lease",
        "leased-address",
        "download-sha256",
        "nic-interrupts",
    ] {
        logged(&o, &format!("[{name}] "), &format!("PASS {check}"));
    }
    verdict(check_stop(&o, name, "powered the machine off (ACPI S5)", 0));
    served_the_test_file(t, &o);
}

/// Debian's unmodified virtio_net (over virtio_pci) binds to Keel's
/// virtio-net device (1AF4:1000 on PCI, the transitional ID of virtio 1.2
/// 4.1.2), gets the same lease through the same switch and uplink, downloads
/// the test file with its SHA-256 intact (its TCP segments cut by the
/// device's TSO, its checksums completed by the device), its receive queue
/// interrupts through MSI-X, and the VM powers off. The same initramfs as
/// the e1000's boot; `keel_nic=virtio-net` picks its checks.
#[test]
fn debian_gets_a_dhcp_lease_and_downloads_a_file_through_virtio_net() {
    let t = network();
    let (vm, o) = boot_on_with(
        "debian-virtio-net",
        Backend::Svm,
        None,
        None,
        Some(t.net.clone()),
    );
    let name = &vm.config.name;
    verdict(check_suite_report(&o, name, NET_CHECKS));
    logged(&o, &format!("[{name}] "), "nic virtio-net");
    for check in [
        "nic-pci-id",
        "nic-driver",
        "dhcp-lease",
        "leased-address",
        "download-sha256",
        "nic-interrupts",
    ] {
        logged(&o, &format!("[{name}] "), &format!("PASS {check}"));
    }
    logged(&o, "", "vif 0: virtio-net MAC");
    verdict(check_stop(&o, name, "powered the machine off (ACPI S5)", 0));
    served_the_test_file(t, &o);
}

/// Xen's PV network path (xl.cfg `xen_platform_pci = 1`, docs/XEN.md):
/// Debian's kernel detects Xen, unplugs the emulated NICs (the e1000 leaves
/// the PCI bus: no 8086:100E function is left), and its unmodified
/// xen-netfront binds vif-0 from Keel's xenstore; Keel's netback serves it
/// over the e1000's switch port, so the guest gets the same lease and
/// downloads the test file with its SHA-256 intact through grant copies,
/// with netfront's event channel firing, and the VM powers off.
#[test]
fn debian_gets_a_dhcp_lease_and_downloads_a_file_through_xen_netfront() {
    let t = network();
    let (vm, o) = boot_on_with(
        "debian-xen-net",
        Backend::Svm,
        None,
        None,
        Some(t.net.clone()),
    );
    let name = &vm.config.name;
    verdict(check_suite_report(&o, name, NET_CHECKS));
    logged(&o, &format!("[{name}] "), "nic xen");
    for check in [
        "nic-modules",
        "nic-pci-id",
        "nic-driver",
        "dhcp-lease",
        "leased-address",
        "download-sha256",
        "nic-interrupts",
    ] {
        logged(&o, &format!("[{name}] "), &format!("PASS {check}"));
    }
    logged(&o, "", "xenstore with 0 vbds and 1 vifs");
    logged(
        &o,
        "",
        "the guest unplugged the emulated NICs (1 e1000s removed)",
    );
    verdict(check_stop(&o, name, "powered the machine off (ACPI S5)", 0));
    served_the_test_file(t, &o);
}

/// Checks of the multiboot test kernel (firmware/src/bin/mbtest.rs) that
/// must be among its passes when iPXE boots it with `ram=256 resident`: the
/// hand-over, the command line, SeaBIOS's memory map, the module (which came
/// over TFTP) byte by byte, and the firmware tables SeaBIOS placed.
const MBTEST_PASSES: &[&str] = &[
    "multiboot-magic",
    "info-flags",
    "cmdline",
    "mem-lower",
    "mmap-ram-at-least-255MiB",
    "mmap-ram-at-most-256MiB",
    "mmap-covers-1MiB",
    "mods-count",
    "module0-size",
    "module0-page-aligned",
    "module0-string",
    "module0-bytes",
    "bda-com1",
    "rsdp-found",
    "smbios-entry-found",
];

/// The netbooted kernel's report, its lines starting with `prefix`: the
/// checks above passed, none failed, and its summary says so.
fn netbooted_mbtest(o: &Outcome, prefix: &str) {
    for check in MBTEST_PASSES {
        logged(o, prefix, &format!("PASS {check}"));
    }
    let fails: Vec<&String> = o
        .lines
        .iter()
        .filter(|l| {
            l.strip_prefix(prefix)
                .is_some_and(|l| l.starts_with("FAIL "))
        })
        .collect();
    assert!(
        fails.is_empty(),
        "the kernel's failures: {fails:?}\n{}",
        o.report()
    );
    let passes = o
        .lines
        .iter()
        .filter(|l| {
            l.strip_prefix(prefix)
                .is_some_and(|l| l.starts_with("PASS "))
        })
        .count();
    logged(o, prefix, &format!("{passes} passed, 0 failed"));
}

/// SeaBIOS finds the e1000 (8086:100E), runs Debian's iPXE ROM from its
/// ROM BAR (`pxe-e1000`) and boots from it, there being no disk; iPXE gets
/// a lease and the boot file from QEMU's DHCP server, fetches its script,
/// the multiboot test kernel and its module over TFTP, and boots the
/// kernel, which checks the module byte by byte and the memory map and
/// ends the VM through the debug-exit port with status 0. iPXE hands over
/// each image's URI first (`tftp://10.0.2.2/keel-mbtest.elf ram=256 resident`), as
/// GRUB hands over its path: the kernel checks the arguments after it and
/// the module's last path component.
#[test]
fn seabios_and_ipxe_boot_a_kernel_over_tftp_through_the_e1000() {
    let t = network();
    let (vm, o) = boot_on_with("ipxe", Backend::Svm, None, None, Some(t.net.clone()));
    let name = &vm.config.name;
    let bios = format!("[{name}:bios] ");
    let stages = [
        "id=8086:100e",
        "Running option rom at",
        "Booting from ROM...",
    ];
    let mut at = 0;
    for stage in stages {
        match o.lines[at..]
            .iter()
            .position(|l| l.starts_with(&bios) && l.contains(stage))
        {
            Some(i) => at += i + 1,
            None => panic!(
                "SeaBIOS never logged '{stage}' (after the earlier stages)\n{}",
                o.report()
            ),
        }
    }
    netbooted_mbtest(&o, &format!("[{name}] "));
    verdict(check_stop(&o, name, "guest debug-exit with status 0", 0));
    drop(t);
}

/// A vif naming a host NIC the machine lacks (`bridge=virtio1` on a
/// machine with one virtio-net NIC): Keel refuses to create the VM, says
/// which NIC is missing and how many there are, and ends with 122, the
/// status docs/ARCHITECTURE.md gives a VM that could not be created; the
/// guest never runs.
#[test]
fn a_vif_on_a_missing_host_nic_is_refused_by_name() {
    let (vm, o) = boot_on_with(
        "vif-missing-nic",
        Backend::Svm,
        None,
        None,
        Some(HostNet::default()),
    );
    let want = "vif 0: bridge=virtio1, but this machine has one virtio-net NIC (virtio0)";
    assert!(
        o.lines
            .iter()
            .any(|l| l.starts_with("keel: ") && l.contains(want)),
        "no line says '{want}'\n{}",
        o.report()
    );
    let guest = format!("[{}] ", vm.config.name);
    assert!(
        !o.lines.iter().any(|l| l.starts_with(&guest)),
        "the guest ran\n{}",
        o.report()
    );
    assert_eq!(o.exit_code(), 122, "{}", o.report());
}

/// The plain-QEMU verdict of the net initramfs: `N passed, 0 failed`.
fn plain_suite(o: &Outcome, want: u32) {
    let fails: Vec<&String> = o.lines.iter().filter(|l| l.starts_with("FAIL ")).collect();
    assert!(fails.is_empty(), "failures: {fails:?}\n{}", o.report());
    let want = format!("{want} passed, 0 failed");
    assert!(
        o.lines.iter().any(|l| l.trim_end() == want),
        "no '{want}' line\n{}",
        o.report()
    );
}

#[test]
#[ignore = "checks the assets on plain QEMU, not Keel"]
fn reference_debian_net_initramfs_passes_on_plain_qemu() {
    let t = network();
    let debian = guest_assets::debian().unwrap_or_else(|e| panic!("{e}"));
    let initrd = net_assets::resolve(net_assets::DEBIAN_NET_INITRAMFS)
        .expect("an image name")
        .unwrap_or_else(|e| panic!("{e}"));
    let qemu = bench::plain_qemu_net(
        &debian.kernel,
        &initrd,
        "console=ttyS0 panic=-1 loglevel=4",
        256,
        "e1000",
        &t.net,
    );
    let o = bench::run_plain(qemu, test_options(256).timeout).unwrap_or_else(|e| panic!("{e}"));
    plain_suite(&o, NET_CHECKS);
    served_the_test_file(t, &o);
}

#[test]
#[ignore = "checks the assets on plain QEMU, not Keel"]
fn reference_ipxe_netboots_the_test_kernel_on_plain_qemu() {
    let t = network();
    let rom = net_assets::pxe_e1000().unwrap_or_else(|e| panic!("{e}"));
    let qemu = bench::plain_qemu_netboot(&rom, 256, &t.net);
    let o = bench::run_plain(qemu, Duration::from_secs(120)).unwrap_or_else(|e| panic!("{e}"));
    netbooted_mbtest(&o, "");
}
