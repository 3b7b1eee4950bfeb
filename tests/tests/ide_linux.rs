//! Debian from Keel's emulated IDE devices, under SeaBIOS, on the SVM backend:
//! SeaBIOS boots SYSLINUX from the IDE disk's MBR (or ISOLINUX from the ATAPI
//! CD-ROM through El Torito), which loads Debian's kernel and a busybox
//! initramfs; its /init drives the disk and the CD-ROM with ata_piix and
//! bus-master DMA (xtask/src/ide_assets.rs lists the checks) and powers off
//! through ACPI. On a RAM disk the guest checks its own writes (written,
//! caches dropped, read back); from a disk file next to the config, which
//! xtask attaches as the machine's virtio-blk disk, the test also finds them
//! in the file afterwards.

use std::path::{Path, PathBuf};
use std::process::Command;

use keel_tests::{artifacts_dir, boot, check_stop, check_suite_report, test_options};
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
    verdict(keel_tests::check_none_of(
        o,
        &[
            "Kernel panic",
            "nobody cared",
            "I/O error",
            "exception Emask",
            "failed command",
        ],
    ));
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
        "virtio-msix",
        "virtio-write-random",
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

/// The random bytes Debian's virtio_blk wrote after xtask's pattern on the
/// virtio disk are in the image file: their md5 (printed by the guest as
/// `virtio-random-md5 HASH`) is that of the file's second half, and the
/// first half is still xtask's pattern.
fn virtio_random_is_in_the_file(o: &Outcome, vdisk: &Path, dir: &Path) {
    let want = o
        .lines
        .iter()
        .find_map(|l| l.split("virtio-random-md5 ").nth(1))
        .unwrap_or_else(|| panic!("no virtio-random-md5 line\n{}", o.report()))
        .trim()
        .to_string();
    let bytes = std::fs::read(vdisk).unwrap();
    let half = (ide_assets::PATTERN_SECTORS * ide_assets::SECTOR) as usize;
    assert_eq!(bytes.len(), 2 * half, "the virtio disk file changed size");
    assert!(
        bytes[..half] == ide_assets::pattern("host", ide_assets::PATTERN_SECTORS)[..],
        "xtask's pattern on the virtio disk changed"
    );
    let second = dir.join("vdisk-second-half");
    std::fs::write(&second, &bytes[half..]).unwrap();
    let out = Command::new("md5sum").arg(&second).output().unwrap();
    let got = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        got.split_whitespace().next(),
        Some(want.as_str()),
        "the guest's random bytes are not in the virtio disk file"
    );
}

/// A temporary directory removed when the test ends, pass or fail.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The same boot from disk files next to a VM config, as a user writes it
/// (`disk = [ 'disk.img,raw,hda,rw', 'cd.iso,raw,hdc:cdrom,r' ]`): xtask
/// attaches `disk.img`, a copy of the debian-disk image, as the machine's
/// virtio-blk disk `virtio0` and ships the entry as `phy:virtio0,hda,w`;
/// afterwards the file holds the guest's sector pattern after xtask's
/// (unchanged) one, and its FAT file. `cd.iso`, a copy of debian-cd that
/// is read-only on the host, stays a boot module and is byte for byte what
/// it was.
#[test]
fn debian_writes_to_a_disk_file_are_in_the_file_after_the_vm_ends() {
    // The ISO is built here, around the Keel that `cargo xtask test` built.
    artifacts_dir();
    let ws = workspace::Workspace::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = TempDir(std::env::temp_dir().join(format!("keel-disk-file-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let copy = |name: &str, to: &str| {
        let source = ide_assets::resolve(name)
            .expect("an IDE image name")
            .unwrap_or_else(|e| panic!("{e}"));
        let file = dir.0.join(to);
        std::fs::copy(&source, &file).unwrap_or_else(|e| panic!("copy {}: {e}", source.display()));
        file
    };
    let disk = copy(ide_assets::DEBIAN_DISK, "disk.img");
    let cd = copy(ide_assets::DEBIAN_CD, "cd.iso");
    let vdisk = copy(ide_assets::DEBIAN_VDISK, "vdisk.img");
    let mut perms = std::fs::metadata(&cd).unwrap().permissions();
    perms.set_readonly(true);
    std::fs::set_permissions(&cd, perms).unwrap();
    let cd_before = std::fs::read(&cd).unwrap();

    let sector = ide_assets::SECTOR as usize;
    let data = ide_assets::DATA_START as usize * sector;
    let n = ide_assets::PATTERN_SECTORS;
    let half = n as usize * sector;
    let before = std::fs::read(&disk).unwrap();
    assert!(
        before[data + half..data + 2 * half].iter().all(|&b| b == 0),
        "the image must hold zeros where the guest writes its pattern"
    );

    let cfg = dir.0.join("debian-ide-file.cfg");
    std::fs::write(
        &cfg,
        "name = \"debian-ide-file\"\nmemory = 256\nvcpus = 1\nfirmware = \"seabios\"\n\
         disk = [ 'disk.img,raw,hda,rw', 'cd.iso,raw,hdc:cdrom,r',\
         'vdisk.img,raw,xvda,rw,specification=virtio' ]\n",
    )
    .unwrap();
    let vm = VmFile::load(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let built = xtask::iso::build_iso(&vm, &ws.keel_elf(), &ws.bare_metal_dir(), &dir.0)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut opts = test_options(vm.config.memory_mib);
    opts.host_disks = built
        .host_disks
        .attach(&[])
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(opts.host_disks, [disk.clone(), vdisk.clone()]);
    let o = runner::run_iso(&built.path, Backend::Svm, &opts).unwrap_or_else(|e| panic!("{e}"));
    let name = &vm.config.name;
    logged(
        &o,
        "keel: ",
        "disk 'virtio0' (32768 KiB, read-write, persistent) on IDE Primary Master",
    );
    logged(&o, "keel: ", "CD-ROM 'cd.iso' (");
    logged(
        &o,
        "keel: ",
        "disk 'virtio1' (2048 KiB, read-write, persistent) as virtio-blk xvda",
    );
    logged(&o, "keel: ", "read-only) on IDE Secondary Master");
    verdict(check_suite_report(&o, name, DISK_CHECKS));
    logged(&o, &format!("[{name}] "), "PASS cd-file");
    verdict(check_stop(&o, name, "powered the machine off (ACPI S5)", 0));
    no_kernel_trouble(&o);

    let after = std::fs::read(&disk).unwrap();
    assert_eq!(after.len(), before.len(), "the disk file changed size");
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
            "the guest's pattern is not in the disk file from sector {bad} of {n}: {:?}",
            String::from_utf8_lossy(&guest[bad * sector..bad * sector + 32])
        );
    }
    assert_eq!(fat_file(&disk).trim_end(), ide_assets::FAT_STRING);
    virtio_random_is_in_the_file(&o, &vdisk, &dir.0);
    assert!(
        std::fs::read(&cd).unwrap() == cd_before,
        "the read-only image cd.iso changed"
    );
}

/// SeaBIOS boots Debian from a virtio-blk disk alone (virtio 1.x, #17):
/// its virtio-blk driver reads the MBR and SYSLINUX reads the kernel and
/// initramfs through INT 13h; Linux then finds the same disk through
/// `virtio_blk` (partitions, size, xtask's pattern, the kernel on the FAT
/// partition) and no IDE disk. The disk is a read-only file, so it stays a
/// boot module behind a read-only virtio-blk device.
#[test]
fn seabios_boots_debian_from_a_virtio_blk_disk() {
    artifacts_dir();
    let ws = workspace::Workspace::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir =
        TempDir(std::env::temp_dir().join(format!("keel-virtio-boot-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let disk = dir.0.join("boot.img");
    ide_assets::disk_with_mode(&disk, ide_assets::VIRTIO_MODE).unwrap_or_else(|e| panic!("{e}"));
    let cfg = dir.0.join("debian-virtio-boot.cfg");
    std::fs::write(
        &cfg,
        "name = \"debian-virtio-boot\"\nmemory = 256\nvcpus = 1\nfirmware = \"seabios\"\n\
         disk = [ 'boot.img,raw,xvda,r,specification=virtio' ]\n",
    )
    .unwrap();
    let vm = VmFile::load(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let built = xtask::iso::build_iso(&vm, &ws.keel_elf(), &ws.bare_metal_dir(), &dir.0)
        .unwrap_or_else(|e| panic!("{e}"));
    let opts = test_options(vm.config.memory_mib);
    let o = runner::run_iso(&built.path, Backend::Svm, &opts).unwrap_or_else(|e| panic!("{e}"));
    let name = &vm.config.name;
    logged(&o, "keel: ", "KiB, read-only) as virtio-blk xvda");
    logged(&o, &format!("[{name}:bios] "), "Booting from Hard Disk...");
    logged(&o, &format!("[{name}] "), "SYSLINUX");
    verdict(check_suite_report(&o, name, ide_assets::VIRTIO_CHECKS));
    for check in ["virtio-boot-partitions", "fat-kernel-md5", "no-ide-disk"] {
        logged(&o, &format!("[{name}] "), &format!("PASS {check}"));
    }
    verdict(check_stop(&o, name, "powered the machine off (ACPI S5)", 0));
    no_kernel_trouble(&o);
}

/// Xen PV-on-HVM's disk path (docs/XEN.md): SeaBIOS boots Debian from the
/// IDE disk of a VM with `xen_platform_pci = 1`; Linux unplugs the emulated
/// disks through the platform device's ports, Keel takes the IDE disk off
/// the bus, and xen-blkfront finds the same image as `/dev/xvda` through
/// Keel's xenstore and blkback: partitions, size, xtask's pattern, the
/// kernel on the FAT partition, a written pattern and random bytes written
/// with O_DIRECT read back; the CD-ROM stays on IDE (only disks unplug).
#[test]
fn debian_moves_from_ide_to_xen_blkfront_with_xen_platform_pci() {
    artifacts_dir();
    let ws = workspace::Workspace::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = TempDir(std::env::temp_dir().join(format!("keel-xen-boot-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    let disk = dir.0.join("boot.img");
    ide_assets::disk_with_mode(&disk, ide_assets::XEN_MODE).unwrap_or_else(|e| panic!("{e}"));
    let cd = ide_assets::resolve(ide_assets::DEBIAN_CD)
        .unwrap()
        .unwrap_or_else(|e| panic!("{e}"));
    std::fs::copy(&cd, dir.0.join("cd.iso")).unwrap();
    let cfg = dir.0.join("debian-xen-boot.cfg");
    std::fs::write(
        &cfg,
        "name = \"debian-xen-boot\"\nmemory = 256\nvcpus = 1\nfirmware = \"seabios\"\n\
         xen_platform_pci = 1\n\
         disk = [ 'boot.img,raw,hda,rw', 'cd.iso,raw,hdc:cdrom,r' ]\n",
    )
    .unwrap();
    let vm = VmFile::load(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let built = xtask::iso::build_iso(&vm, &ws.keel_elf(), &ws.bare_metal_dir(), &dir.0)
        .unwrap_or_else(|e| panic!("{e}"));
    let mut opts = test_options(vm.config.memory_mib);
    opts.host_disks = built
        .host_disks
        .attach(&[])
        .unwrap_or_else(|e| panic!("{e}"));
    let o = runner::run_iso(&built.path, Backend::Svm, &opts).unwrap_or_else(|e| panic!("{e}"));
    let name = &vm.config.name;
    logged(&o, "keel: ", "xenstore with 1 vbds");
    logged(&o, &format!("[{name}:bios] "), "Booting from Hard Disk...");
    logged(
        &o,
        "keel: ",
        "xen-platform-pci: the guest unplugged the emulated disks (1 IDE disks removed)",
    );
    verdict(check_suite_report(&o, name, ide_assets::XEN_CHECKS));
    for check in [
        "xen-blkfront",
        "xen-read-host-pattern",
        "xen-write-guest-pattern",
        "xen-write-random",
        "no-ide-disk",
        "cd-file",
    ] {
        logged(&o, &format!("[{name}] "), &format!("PASS {check}"));
    }
    verdict(check_stop(&o, name, "powered the machine off (ACPI S5)", 0));
    no_kernel_trouble(&o);
    // The random bytes went through blkback into the host's file: their
    // md5 (printed by the guest) is that of the guest's half of the data
    // partition in the file after the VM ended.
    let md5 = o
        .lines
        .iter()
        .find_map(|l| l.split("ide-init: xen-random-md5 ").nth(1))
        .unwrap_or_else(|| panic!("no xen-random-md5 line\n{}", o.report()))
        .trim()
        .to_string();
    let sector = ide_assets::SECTOR as usize;
    let data = ide_assets::DATA_START as usize * sector;
    let half = ide_assets::PATTERN_SECTORS as usize * sector;
    let after = std::fs::read(&disk).unwrap();
    let region = dir.0.join("region.bin");
    std::fs::write(&region, &after[data + half..data + 2 * half]).unwrap();
    let out = Command::new("md5sum").arg(&region).output().unwrap();
    let host_md5 = String::from_utf8_lossy(&out.stdout);
    assert!(
        host_md5.starts_with(&md5),
        "the disk file's guest half has md5 {host_md5}, the guest wrote {md5}"
    );
}
