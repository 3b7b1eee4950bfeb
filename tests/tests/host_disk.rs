//! A guest's disk on the machine's own virtio-blk disk, end to end (SVM on
//! QEMU only: Bochs has no virtio). The test makes a 1 MiB raw image from the
//! `bootdisk` image, attaches it to QEMU as a virtio-blk disk, and boots
//! `tests/vms/hostdisk.cfg` (`disk = [ 'phy:virtio0,hda,w' ]`): SeaBIOS
//! boots the boot sector from Keel's IDE disk, whose sectors Keel reads and
//! writes on the virtio disk. The guest writes LBA 6 with INT 13h AH=43h,
//! reads it back and sends ATA FLUSH CACHE; afterwards the image file on
//! the host holds the written sector, and Keel's log shows the flush
//! reaching the device.

use std::path::PathBuf;

use keel_tests::{artifacts_dir, check_guest_suite, test_options, vms_dir};
use xtask::iso::VmFile;
use xtask::runner::{self, Backend};
use xtask::workspace::{self, Workspace};

/// The sector the `bootdisk` guest writes, and the text it starts with.
const WRITTEN_LBA: usize = 6;
const WRITTEN_SIGNATURE: &[u8] = b"KEEL WROTE LBA 6";
/// The host disk's size: more than the 4 KiB image, so the capacity Keel
/// reports comes from the device, not from the image.
const DISK_BYTES: u64 = 1 << 20;

/// A temporary file removed when the test ends, pass or fail.
struct TempImage(PathBuf);

impl Drop for TempImage {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[test]
fn a_guest_write_through_ide_persists_on_the_host_virtio_disk() {
    let artifacts = artifacts_dir();
    let ws = Workspace::locate().unwrap_or_else(|e| panic!("{e}"));
    let bootdisk = ws.bare_metal_dir().join("bootdisk");
    let image = std::fs::read(&bootdisk).unwrap_or_else(|e| {
        panic!(
            "cannot read {} ({e}): run `cargo xtask test`, which builds it",
            bootdisk.display()
        )
    });
    let sector = WRITTEN_LBA * 512..(WRITTEN_LBA + 1) * 512;
    assert!(
        image.len() >= sector.end && image[sector.clone()].iter().all(|&b| b == 0),
        "the bootdisk image must hold zeros where the guest writes"
    );
    let disk =
        TempImage(std::env::temp_dir().join(format!("keel-hostdisk-{}.img", std::process::id())));
    std::fs::write(&disk.0, &image).unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&disk.0)
        .and_then(|f| f.set_len(DISK_BYTES))
        .unwrap();

    let cfg = vms_dir().join("hostdisk.cfg");
    let vm = VmFile::load(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let iso = workspace::iso_path(&artifacts, &vm.config.name);
    let mut opts = test_options(vm.config.memory_mib);
    opts.host_disks = vec![disk.0.clone()];
    let o = runner::run_iso(&iso, Backend::Svm, &opts).unwrap_or_else(|e| panic!("{e}"));

    if let Err(e) = check_guest_suite(&o, &vm.config.name, 5) {
        panic!("{e}");
    }
    let has = |text: &str| o.lines.iter().any(|l| l.contains(text));
    let found = "host disk virtio0: virtio-blk at ";
    assert!(
        has(found) && has("2048 sectors (1 MiB), writable"),
        "Keel did not report the 1 MiB virtio disk\n{}",
        o.report()
    );
    assert!(
        has("disk 'virtio0' (1024 KiB, read-write, persistent) on IDE Primary Master"),
        "{}",
        o.report()
    );
    // One sector written (LBA 6), and the guest's FLUSH CACHE sent on.
    let stats = o
        .lines
        .iter()
        .find(|l| l.contains("host disk virtio0: ") && l.contains(" written, "))
        .unwrap_or_else(|| panic!("no statistics line for virtio0\n{}", o.report()));
    assert!(
        stats.contains(" 1 written, ") && stats.contains(" 1 flushes sent to the device"),
        "{stats}"
    );

    let after = std::fs::read(&disk.0).unwrap();
    assert_eq!(after.len() as u64, DISK_BYTES);
    let written = &after[sector];
    assert_eq!(
        &written[..WRITTEN_SIGNATURE.len()],
        WRITTEN_SIGNATURE,
        "the image file does not hold the guest's write at LBA {WRITTEN_LBA}"
    );
    for (i, &b) in written.iter().enumerate().skip(WRITTEN_SIGNATURE.len()) {
        assert_eq!(b, i as u8, "byte {i} of LBA {WRITTEN_LBA}");
    }
    assert_eq!(
        &after[..WRITTEN_LBA * 512],
        &image[..WRITTEN_LBA * 512],
        "sectors the guest never wrote changed"
    );
}

#[test]
fn a_missing_host_disk_is_reported_by_name() {
    let artifacts = artifacts_dir();
    let cfg = vms_dir().join("hostdisk.cfg");
    let vm = VmFile::load(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let iso = workspace::iso_path(&artifacts, &vm.config.name);
    let o = runner::run_iso(&iso, Backend::Svm, &test_options(vm.config.memory_mib))
        .unwrap_or_else(|e| panic!("{e}"));
    let want = "the VM config names virtio0, but this machine has no virtio-blk disk";
    assert!(
        o.lines.iter().any(|l| l.contains(want)),
        "no line says '{want}'\n{}",
        o.report()
    );
    assert_eq!(o.exit_code(), 122, "{}", o.report());
}
