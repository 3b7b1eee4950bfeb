//! Debian from Keel's emulated IDE devices, under SeaBIOS, on the SVM backend:
//! SeaBIOS boots SYSLINUX from the IDE disk's MBR (or ISOLINUX from the ATAPI
//! CD-ROM through El Torito), which loads Debian's kernel and a busybox
//! initramfs; its /init drives the disk and the CD-ROM with ata_piix and
//! bus-master DMA (xtask/src/ide_assets.rs lists the checks) and powers off
//! through ACPI. On a RAM disk the guest checks its own writes (written,
//! caches dropped, read back); on the machine's virtio-blk disk the test also
//! finds them in the host's image file afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_tests::{artifacts_dir, boot, check_stop, check_suite_report, test_options, vms_dir};
use xtask::ide_assets::{self, CD_CHECKS, DISK_CHECKS};
use xtask::iso::VmFile;
use xtask::runner::{self, Backend, Outcome};
use xtask::workspace;

fn verdict(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

/// `needle` appears on a line of the VM's own console (`[vm] ...`) or of its
/// firmware console (`[vm:bios] ...`).
fn logged(o: &Outcome, prefix: &str, needle: &str) {
    assert!(
        o.lines
            .iter()
            .any(|l| l.starts_with(prefix) && l.contains(needle)),
        "no '{prefix}' line contains '{needle}'\n{}",
        o.report()
    );
}

fn no_kernel_trouble(o: &Outcome) {
    let bad: Vec<&String> = o
        .lines
        .iter()
        .filter(|l| {
            [
                "Kernel panic",
                "nobody cared",
                "I/O error",
                "exception Emask",
                "failed command",
            ]
            .iter()
            .any(|b| l.contains(b))
        })
        .collect();
    assert!(
        bad.is_empty(),
        "kernel log problems: {bad:?}\n{}",
        o.report()
    );
}

/// SeaBIOS -> MBR -> SYSLINUX -> Debian from the IDE disk: the disk and the
/// CD-ROM both run with bus-master DMA, data written through ata_piix reads
/// back, Linux (APIC mode) finds the ACPI PCI interrupt links LNKA-LNKD on
/// the IRQs SeaBIOS routed the PIRQs to (10 and 11) and takes the IDE IRQs
/// through the IOAPIC, and the VM powers off through ACPI S5.
#[test]
fn debian_boots_from_the_ide_disk_and_uses_disk_and_cdrom_with_dma() {
    let (vm, o) = boot("debian-ide");
    let name = &vm.config.name;
    logged(&o, &format!("[{name}:bios] "), "Booting from Hard Disk...");
    logged(&o, &format!("[{name}] "), "SYSLINUX");
    verdict(check_suite_report(&o, name, DISK_CHECKS));
    for check in [
        "disk-dma-mode",
        "disk-write-guest-pattern",
        "fat-read-back",
        "cd-file",
        "pci-interrupt-links",
        "interrupt-controller",
    ] {
        logged(&o, &format!("[{name}] "), &format!("PASS {check}"));
    }
    verdict(check_stop(&o, name, "powered the machine off (ACPI S5)", 0));
    no_kernel_trouble(&o);
}

/// SeaBIOS boots the El Torito ISO from the ATAPI CD-ROM alone (ISOLINUX,
/// then the same kernel and initramfs), which reads itself back with DMA;
/// this boot runs Linux with `noapic` (PIC mode): the PCI interrupt links
/// still come up on IRQs 10 and 11, and the CD-ROM's IRQ 15 goes through
/// the 8259A pair.
#[test]
fn debian_boots_from_the_atapi_cdrom_through_el_torito() {
    let (vm, o) = boot("debian-cd");
    let name = &vm.config.name;
    logged(&o, &format!("[{name}:bios] "), "Booting from DVD/CD...");
    logged(&o, &format!("[{name}] "), "ISOLINUX");
    verdict(check_suite_report(&o, name, CD_CHECKS));
    for check in [
        "cd-kernel-md5",
        "pci-interrupt-links",
        "interrupt-controller",
    ] {
        logged(&o, &format!("[{name}] "), &format!("PASS {check}"));
    }
    verdict(check_stop(&o, name, "powered the machine off (ACPI S5)", 0));
    no_kernel_trouble(&o);
}

/// A temporary file removed when the test ends, pass or fail.
struct TempImage(PathBuf);

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The FAT partition's `KEEL.TXT`, read with mtools' `mtype` at the
/// partition's offset in the image.
fn fat_file(image: &Path) -> String {
    let at = format!(
        "{}@@{}",
        image.display(),
        ide_assets::FAT_START * ide_assets::SECTOR
    );
    let out = Command::new("mtype")
        .args(["-i", &at, "::KEEL.TXT"])
        .env("MTOOLS_SKIP_CHECK", "1")
        .output()
        .unwrap_or_else(|e| panic!("cannot run mtype (package mtools): {e}"));
    assert!(
        out.status.success(),
        "mtype -i {at} ::KEEL.TXT failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The same boot with the disk on the machine's first virtio-blk disk, over
/// a copy of the debian-disk image: afterwards the copy holds the guest's
/// sector pattern after xtask's (unchanged) one, and its FAT file.
#[test]
fn debian_writes_through_ide_reach_the_host_virtio_disk() {
    let artifacts = artifacts_dir();
    let source = ide_assets::resolve(ide_assets::DEBIAN_DISK)
        .expect("debian-disk is an IDE image name")
        .unwrap_or_else(|e| panic!("{e}"));
    let disk = TempImage(
        std::env::temp_dir().join(format!("keel-debian-disk-{}.img", std::process::id())),
    );
    std::fs::copy(&source, &disk.0).unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
    let sector = ide_assets::SECTOR as usize;
    let data = ide_assets::DATA_START as usize * sector;
    let n = ide_assets::PATTERN_SECTORS;
    let half = n as usize * sector;
    let before = std::fs::read(&disk.0).unwrap();
    assert!(
        before[data + half..data + 2 * half].iter().all(|&b| b == 0),
        "the image must hold zeros where the guest writes its pattern"
    );

    let cfg = vms_dir().join("debian-ide-host.cfg");
    let vm = VmFile::load(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let iso = workspace::iso_path(&artifacts, &vm.config.name);
    let mut opts = test_options(vm.config.memory_mib);
    opts.host_disks = vec![disk.0.clone()];
    let o = runner::run_iso(&iso, Backend::Svm, &opts).unwrap_or_else(|e| panic!("{e}"));
    let name = &vm.config.name;
    logged(
        &o,
        "keel: ",
        "disk 'virtio0' (32768 KiB, read-write, persistent)",
    );
    verdict(check_suite_report(&o, name, DISK_CHECKS));
    verdict(check_stop(&o, name, "powered the machine off (ACPI S5)", 0));
    no_kernel_trouble(&o);

    let after = std::fs::read(&disk.0).unwrap();
    assert!(
        after[data..data + half] == ide_assets::pattern("host", n)[..],
        "xtask's pattern at the start of the data partition changed"
    );
    let guest = &after[data + half..data + 2 * half];
    let want = ide_assets::pattern("guest", n);
    if let Some(bad) = (0..n as usize)
        .find(|&i| guest[i * sector..(i + 1) * sector] != want[i * sector..(i + 1) * sector])
    {
        panic!(
            "the guest's pattern is not in the image file from sector {bad} of {n}: {:?}",
            String::from_utf8_lossy(&guest[bad * sector..bad * sector + 32])
        );
    }
    assert_eq!(fat_file(&disk.0).trim_end(), ide_assets::FAT_STRING);
}
