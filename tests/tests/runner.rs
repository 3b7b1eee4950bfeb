//! The whole pipeline without the hypervisor: a stand-in kernel on a real GRUB
//! ISO under real QEMU, through the same ISO builder and runner as Keel.

use std::fs;
use std::path::PathBuf;
use std::time::Duration;

use keel_tests::{fake_keel, test_options};
use xtask::iso::{self, VmFile};
use xtask::runner::{self, Backend, End, Outcome};

/// A scratch directory that is removed when the test ends well.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        let d = std::env::temp_dir().join(format!("keel-tests-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        fs::create_dir_all(&d).unwrap();
        Self(d)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if !std::thread::panicking() {
            let _ = fs::remove_dir_all(&self.0);
        }
    }
}

/// Boots the stand-in (printing `serial`, then debug-exit `status`) with a
/// config that names a local firmware file, so GRUB must load a module too.
fn boot_fake(scratch: &Scratch, serial: &str, status: u8, timeout: Duration) -> Outcome {
    let d = &scratch.0;
    fs::write(d.join("keel"), fake_keel::image(serial, status)).unwrap();
    fs::write(d.join("fw.bin"), vec![0xF4u8; 4096]).unwrap();
    fs::write(
        d.join("fake.cfg"),
        "name = 'fake'\nmemory = 16\nfirmware = 'fw.bin'\n",
    )
    .unwrap();
    let vm = VmFile::load(&d.join("fake.cfg")).unwrap();
    let built = iso::build_iso(&vm, &d.join("keel"), &d.join("no-guests"), d)
        .unwrap_or_else(|e| panic!("{e}"));
    assert!(built.notes.is_empty(), "{:?}", built.notes);
    let grub_cfg = fs::read_to_string(d.join("fake.d/boot/grub/grub.cfg")).unwrap();
    assert!(
        grub_cfg.contains("module2 --nounzip /boot/fw.bin fw.bin\n"),
        "{grub_cfg}"
    );
    let mut opts = test_options(16);
    opts.timeout = timeout;
    runner::run_iso(&built.path, Backend::Svm, &opts).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn final_line_gives_the_exit_status() {
    let s = Scratch::new("final");
    let o = boot_fake(
        &s,
        "keel: VM 'fake' stopped: guest debug-exit with status 7\r\nkeel: exit status 7\r\n",
        7,
        Duration::from_secs(120),
    );
    assert_eq!(o.end, End::Status(7), "{}", o.report());
    // GRUB talks on the same serial port first; its escape sequences are gone.
    assert_eq!(o.lines[0], "  Booting `Keel: fake'", "{:?}", o.lines);
    assert_eq!(
        o.stop_lines().collect::<Vec<_>>(),
        ["keel: VM 'fake' stopped: guest debug-exit with status 7"]
    );
    // QEMU's isa-debug-exit turns the status into (7 << 1) | 1: it ended by
    // itself, within the grace, and was not killed.
    assert_eq!(
        o.emulator_status.and_then(|s| s.code()),
        Some(15),
        "{}",
        o.report()
    );
}

#[test]
fn an_emulator_that_ends_without_the_final_line_is_a_failure() {
    let s = Scratch::new("nofinal");
    let o = boot_fake(
        &s,
        "keel: panicked somewhere\n",
        1,
        Duration::from_secs(120),
    );
    assert_eq!(o.end, End::NoFinalLine, "{}", o.report());
    assert_ne!(o.exit_code(), 0);
    assert!(o.lines.iter().any(|l| l == "keel: panicked somewhere"));
}
