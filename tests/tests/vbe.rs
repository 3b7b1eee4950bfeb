//! VBE modes and mode 13h on Keel's standard VGA, seen on the machine's
//! display: the screenshot of the machine's display taken when the VM ends
//! must show what the guest drew, pixel by pixel at chosen points
//! (`keel_tests::screen`).
//!
//! - `vbe` (`crates/test-guests/src/bin/vbe.rs`): from long mode, without
//!   firmware, 1024x768x32 through the Bochs VBE DISPI ports, the VBE test
//!   pattern in the linear framebuffer at BAR0.
//! - `screendisk` (`crates/test-disks/src/bin/screendisk.rs`): SeaBIOS
//!   boots it from IDE and it goes through the VGA BIOS (Debian's
//!   `vgabios-stdvga` from the card's ROM BAR): the same mode found in the
//!   mode list and set with INT 10h AX=4F00h-4F03h, the same pattern at the
//!   PhysBasePtr the BIOS gave; and, from a copy whose parameter block
//!   says so, mode 13h set with INT 10h AH=00h, its DAC loaded with
//!   AX=1012h and a pattern drawn in the chain-4 window at 0xA0000.

use std::path::{Path, PathBuf};

use keel_tests::screen::{check_mode13h_pattern, check_vbe_pattern, Screenshot};
use keel_tests::{artifacts_dir, boot_with, check_guest_suite, test_options};
use xtask::iso::VmFile;
use xtask::runner::{self, Backend, Outcome};
use xtask::screen_disk::{self, Params, Step};
use xtask::workspace::Workspace;

/// The screenshot at `shot` shows what `check` wants; else the run's report.
fn check_shot(shot: &Path, o: &Outcome, check: fn(&Screenshot) -> Result<(), String>) {
    if let Err(e) = Screenshot::read(shot).and_then(|s| check(&s)) {
        panic!("{e}\n{}", o.report());
    }
}

#[test]
fn a_vbe_mode_drawn_by_a_guest_shows_pixel_for_pixel_under_svm() {
    let shot = artifacts_dir().join("vbe-screen.ppm");
    let _ = std::fs::remove_file(&shot);
    let (vm, o) = boot_with("vbe", Backend::Svm, None, None, |opts| {
        opts.display.screenshot = Some(shot.clone());
    });
    // The card found, BAR0 sized and placed, the DISPI read-back
    // (1024, 768, 32 bpp, enabled with the LFB, virtual width, 16 MiB),
    // the marker read back from the framebuffer.
    if let Err(e) = check_guest_suite(&o, &vm.config.name, 11) {
        panic!("{e}");
    }
    check_shot(&shot, &o, check_vbe_pattern);
}

/// The checks of the screendisk's VBE step: controller information
/// (signature, version, memory), the mode listed with its pitch and
/// PhysBasePtr, set, read back, and the marker read back.
const SCREENDISK_VBE_CHECKS: u32 = 9;

/// The screendisk's VBE step went through the VGA BIOS: the mode it found
/// is the one the BIOS logged setting (with the linear framebuffer bit,
/// 0x4000), and the framebuffer it drew in is the one the BIOS found at
/// the card's BAR0.
fn check_vbe_through_the_bios(o: &Outcome, name: &str) {
    if let Err(e) = check_guest_suite(o, name, SCREENDISK_VBE_CHECKS) {
        panic!("{e}");
    }
    let guest = format!("[{name}] screendisk: VBE mode ");
    let found = o
        .lines
        .iter()
        .find_map(|l| l.strip_prefix(&guest))
        .and_then(|r| r.split_once(", linear framebuffer at 0x"))
        .and_then(|(mode, lfb)| {
            Some((
                mode.parse::<u32>().ok()?,
                u32::from_str_radix(lfb.trim(), 16).ok()?,
            ))
        });
    let Some((mode, lfb)) = found else {
        panic!(
            "no '{guest}N, linear framebuffer at 0x...' line\n{}",
            o.report()
        );
    };
    let bios = format!("[{name}:bios] ");
    let logged = |text: &str| {
        o.lines
            .iter()
            .any(|l| l.starts_with(&bios) && l.contains(text))
    };
    let set = format!("VBE mode set: {:x}", mode | 0x4000);
    assert!(logged(&set), "no '{bios}{set}' line\n{}", o.report());
    let at = format!("VBE DISPI: lfb_addr={lfb:x},");
    assert!(logged(&at), "no '{bios}{at}' line\n{}", o.report());
}

#[test]
fn a_vbe_mode_set_through_int10h_shows_pixel_for_pixel_under_svm() {
    let shot = artifacts_dir().join("screendisk-vbe.ppm");
    let _ = std::fs::remove_file(&shot);
    let (vm, o) = boot_with("screendisk", Backend::Svm, None, None, |opts| {
        opts.display.screenshot = Some(shot.clone());
    });
    check_vbe_through_the_bios(&o, &vm.config.name);
    check_shot(&shot, &o, check_vbe_pattern);
}

/// The same under VMX (Bochs): the BIOS calls and the read-back; Bochs
/// has no screenshot.
#[test]
fn a_vbe_mode_set_through_int10h_under_vmx() {
    let (vm, o) = boot_with(
        "screendisk",
        Backend::Vmx,
        Some("corei7_skylake_x"),
        None,
        |_| {},
    );
    check_vbe_through_the_bios(&o, &vm.config.name);
}

/// A temporary directory removed when the test ends, pass or fail.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Mode 13h through INT 10h AH=00h, a pattern through its own DAC colours
/// in the chain-4 window: Keel's display shows it three times, centered.
/// The disk is a copy of screendisk whose parameter block says mode13h,
/// next to a VM config like tests/vms/screendisk.cfg; the ISO is built
/// here, around the Keel that `cargo xtask test` built.
#[test]
fn mode_13h_set_through_int10h_shows_scaled_three_times_under_svm() {
    let artifacts = artifacts_dir();
    let ws = Workspace::locate().unwrap_or_else(|e| panic!("{e}"));
    let dir = TempDir(std::env::temp_dir().join(format!("keel-mode13h-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0).unwrap();
    screen_disk::write_copy(
        &ws.bare_metal_dir().join(screen_disk::IMAGE),
        &dir.0.join("mode13h.img"),
        Params::step(Step::Mode13h),
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let cfg = dir.0.join("screendisk-13h.cfg");
    std::fs::write(
        &cfg,
        "name = \"screendisk-13h\"\nmemory = 64\nvcpus = 1\nfirmware = \"seabios\"\n\
         disk = [ 'mode13h.img,raw,hda,rw,volatile' ]\nstdvga = 1\n",
    )
    .unwrap();
    let vm = VmFile::load(&cfg).unwrap_or_else(|e| panic!("{e}"));
    let built = xtask::iso::build_iso(&vm, &ws.keel_elf(), &ws.bare_metal_dir(), &dir.0)
        .unwrap_or_else(|e| panic!("{e}"));
    let shot = artifacts.join("screendisk-13h.ppm");
    let _ = std::fs::remove_file(&shot);
    let mut opts = test_options(vm.config.memory_mib);
    opts.display.screenshot = Some(shot.clone());
    let o = runner::run_iso(&built.path, Backend::Svm, &opts).unwrap_or_else(|e| panic!("{e}"));
    // The mode read back with AH=0Fh, a DAC entry read back with
    // AX=1015h, the marker read back through the window.
    if let Err(e) = check_guest_suite(&o, &vm.config.name, 3) {
        panic!("{e}");
    }
    check_shot(&shot, &o, check_mode13h_pattern);
}
