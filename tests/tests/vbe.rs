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
//! - Debian's kernel with its unmodified `bochs` DRM driver
//!   (tests/vms/debian-vga.cfg, xtask/src/vga_assets.rs): fbcon draws a
//!   line of text, the guest reads its pixels back from `/dev/fb0`, and
//!   the screenshot must show the same pixels.

use std::path::{Path, PathBuf};

use keel_tests::screen::{check_mode13h_pattern, check_vbe_pattern, Screenshot};
use keel_tests::{
    artifacts_dir, boot_with, check_guest_suite, check_none_of, check_stop, check_suite_report,
    test_options,
};
use xtask::iso::VmFile;
use xtask::runner::{self, Backend, Outcome};
use xtask::screen_disk::{self, Params, Step};
use xtask::vga_assets::{self, MODE, TEXT, VGA_CHECKS};
use xtask::workspace::Workspace;

/// A check's verdict (its error carries the run's report).
fn verdict(r: Result<(), String>) {
    if let Err(e) = r {
        panic!("{e}");
    }
}

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

/// Debian's unmodified `bochs` DRM driver (with `drm`, `drm_kms_helper`,
/// `ttm`, `drm_ttm_helper` and `drm_vram_helper`) binds to Keel's standard
/// VGA through its register BAR (DISPI at 0x500, QEMU's extended registers
/// at 0x600), sets 1024x768x32 (`video=1024x768`: the machine's display
/// mode, so Keel shows it pixel for pixel) and fbcon takes the console.
/// The guest checks that from inside (driver, connector, fb0's mode, tty1's
/// 128x48 cells, no DRM error in its log), writes a line of text on tty1 in
/// bright yellow on blue, reads back from `/dev/fb0` the text's pixels, its
/// background and the black around it, and prints them; the screenshot of
/// the machine's display must show every one. A screen that stayed black,
/// lost the text or shows it elsewhere fails, since the text's pixels are
/// yellow and blue.
#[test]
fn debian_on_the_bochs_drm_driver_shows_its_console_text_on_the_machines_display() {
    let shot = artifacts_dir().join("debian-vga-screen.ppm");
    let _ = std::fs::remove_file(&shot);
    let (vm, o) = boot_with("debian-vga", Backend::Svm, None, None, |opts| {
        opts.display.screenshot = Some(shot.clone());
    });
    let name = &vm.config.name;
    assert!(
        vm.config
            .cmdline
            .as_deref()
            .is_some_and(|c| c.contains(&format!("video={}x{}", MODE.0, MODE.1))),
        "the config asks for the mode the test expects"
    );
    verdict(check_suite_report(&o, name, VGA_CHECKS));
    verdict(check_stop(&o, name, "powered the machine off (ACPI S5)", 0));
    // The kernel log reaches COM1 at loglevel 4: DRM errors and warnings
    // would show there too.
    verdict(check_none_of(
        &o,
        &[
            "*ERROR*",
            "[drm] Cannot",
            "mismatch",
            "WARNING:",
            "Kernel panic",
            "rcu: INFO",
        ],
    ));
    let prefix = format!("[{name}] ");
    let guest: Vec<&str> = o
        .lines
        .iter()
        .filter_map(|l| l.trim_end().strip_prefix(&prefix))
        .collect();
    let mut points = Vec::new();
    for l in guest.iter().filter(|l| l.starts_with("vga-px")) {
        points.extend(
            vga_assets::parse_pixels(l).unwrap_or_else(|| panic!("a malformed pixel line: {l}")),
        );
    }
    let count = guest
        .iter()
        .find_map(|l| l.strip_prefix("vga-pixels "))
        .and_then(|l| l.split_whitespace().next()?.parse::<usize>().ok());
    assert_eq!(
        count,
        Some(points.len()),
        "the guest's count of the pixels it printed\n{}",
        o.report()
    );
    // What fbcon drew: the VT palette's bright yellow and blue in the
    // text's cells, black around them, at the text's place.
    let colour = |c: u32| points.iter().filter(|p| p.2 == c).count();
    let (yellow, blue, black) = (colour(0xFF_FF55), colour(0x00_00AA), colour(0));
    assert!(
        yellow >= TEXT.len() * 4
            && blue >= 100
            && black >= 100
            && yellow + blue + black == points.len(),
        "the guest's pixels: {yellow} yellow, {blue} blue, {black} black of {}",
        points.len()
    );
    let (fw, fh) = (MODE.0 / 128, MODE.1 / 48);
    let text_x =
        (vga_assets::TEXT_COL - 1) * fw..(vga_assets::TEXT_COL - 1 + TEXT.len() as u32) * fw;
    let text_y = (vga_assets::TEXT_ROW - 1) * fh..vga_assets::TEXT_ROW * fh;
    assert!(
        points
            .iter()
            .filter(|p| p.2 != 0)
            .all(|p| text_x.contains(&p.0) && text_y.contains(&p.1)),
        "coloured pixels outside the text's cells"
    );
    let screen = Screenshot::read(&shot).unwrap_or_else(|e| panic!("{e}\n{}", o.report()));
    assert_eq!((screen.w, screen.h), MODE, "Keel's display mode");
    let wrong: Vec<String> = points
        .iter()
        .filter(|&&(x, y, want)| screen.px(x, y) != want)
        .map(|&(x, y, want)| format!("({x}, {y}): {:06x}, expected {want:06x}", screen.px(x, y)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} points differ from what the guest read from /dev/fb0: {wrong:?}",
        wrong.len(),
        points.len()
    );
}
