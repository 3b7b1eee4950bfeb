//! Debian's SeaBIOS, unmodified, on Keel's emulated PC on both backends: it
//! POSTs to "No bootable device" through the same stages as on plain QEMU, and
//! boots a boot sector from the emulated IDE disk.

use keel_tests::screen::Screenshot;
use keel_tests::{
    artifacts_dir, boot_on, boot_with, check_guest_suite, check_seabios_post, check_seabios_stages,
    SEABIOS_POST_STAGES,
};
use xtask::runner::Backend;

const UNTIL: &str = "No bootable device.";

#[test]
fn seabios_posts_under_svm() {
    let (vm, o) = boot_on("seabios", Backend::Svm, None, Some(UNTIL));
    if let Err(e) = check_seabios_post(&o, &vm.config.name) {
        panic!("{e}");
    }
}

#[test]
fn seabios_posts_under_vmx() {
    let (vm, o) = boot_on(
        "seabios",
        Backend::Vmx,
        Some("corei7_skylake_x"),
        Some(UNTIL),
    );
    if let Err(e) = check_seabios_post(&o, &vm.config.name) {
        panic!("{e}");
    }
}

/// SeaBIOS boots the `bootdisk` image's boot sector from the IDE disk; it
/// reads the disk's other sectors through INT 13h, writes one and reads it
/// back, flushes the disk, and reports PASS lines.
///
/// The VM has QEMU's standard VGA (issue 16): SeaBIOS finds the card, runs
/// Debian's VGA BIOS from its ROM BAR, which finds the VBE DISPI interface
/// and its 16 MiB framebuffer, and prints its banner and boot messages on
/// the text screen that `keel_screen_dump` writes to the log at the end.
///
/// Under QEMU, the machine also has its display (`--screenshot`): Keel
/// shows the VM's screen there, and the screenshot taken when the VM ends
/// must show that same text ([`check_screenshot_shows_text`]).
fn bootdisk(backend: Backend, cpu_model: Option<&str>) {
    let shot = artifacts_dir().join("bootdisk-screen.ppm");
    let _ = std::fs::remove_file(&shot);
    let (vm, o) = boot_with("bootdisk", backend, cpu_model, None, |opts| {
        if backend == Backend::Svm {
            opts.display.screenshot = Some(shot.clone());
        }
    });
    if let Err(e) = check_guest_suite(&o, &vm.config.name, 5) {
        panic!("{e}");
    }
    let name = &vm.config.name;
    let bios = format!("[{name}:bios] ");
    for line in [
        "Running option rom at c000:0003",
        "Start SeaVGABIOS (version",
        "VBE DISPI: lfb_addr=",
        "set VGA mode 3",
    ] {
        assert!(
            o.lines
                .iter()
                .any(|l| l.starts_with(&bios) && l.contains(line)),
            "no '{bios}{line}' line\n{}",
            o.report()
        );
    }
    assert!(
        o.lines
            .iter()
            .any(|l| l.starts_with(&bios) && l.contains("size 16 MB")),
        "the VGA BIOS did not see a 16 MiB framebuffer\n{}",
        o.report()
    );
    let prefix = format!("[{name}:screen] ");
    let screen: Vec<&str> = o
        .lines
        .iter()
        .filter_map(|l| {
            l.strip_prefix(&prefix)
                .or(l.strip_prefix(prefix.trim_end()).map(|_| ""))
        })
        .collect();
    assert_eq!(screen.len(), 25, "an 80x25 text screen\n{}", o.report());
    assert!(
        screen[0].starts_with("SeaBIOS (version ") && screen[0].contains("debian"),
        "the SeaBIOS banner on the first row: {screen:?}"
    );
    assert!(
        screen.contains(&"Booting from Hard Disk..."),
        "the boot message on the screen: {screen:?}"
    );
    if backend == Backend::Svm {
        check_screenshot_shows_text(&shot, &screen);
    }
}

/// The machine's display (1024x768) shows the VM's 80x25 text screen of
/// 8x16 cells (640x400) once, centered at (192, 184) (`keel::display::Fit`):
/// every cell whose character the text dump shows is drawn (some pixel
/// differs from the black background: the glyph came from the font the
/// VGA BIOS loaded into plane 2), every blank cell is black except at most
/// one, the cursor's, and everything around the text screen is black.
fn check_screenshot_shows_text(shot: &std::path::Path, screen: &[&str]) {
    let shot = Screenshot::read(shot).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((shot.w, shot.h), (1024, 768), "Keel's display mode");
    let lit = |x0: u32, y0: u32, cw: u32, ch: u32| {
        (y0..y0 + ch).any(|y| (x0..x0 + cw).any(|x| shot.px(x, y) != 0))
    };
    let (left, top) = (192, 184);
    let mut blank_but_lit = Vec::new();
    let mut drawn = 0;
    for (row, text) in screen.iter().enumerate() {
        let text = text.as_bytes();
        for col in 0..80u32 {
            let c = text.get(col as usize).copied().unwrap_or(b' ');
            let on = lit(left + col * 8, top + row as u32 * 16, 8, 16);
            if c != b' ' {
                assert!(on, "cell ({row}, {col}) '{}' is not drawn", c as char);
                drawn += 1;
            } else if on {
                blank_but_lit.push((row, col));
            }
        }
    }
    assert!(drawn > 40, "the banner and boot message: {drawn} cells");
    assert!(
        blank_but_lit.len() <= 1,
        "blank cells drawn (only the cursor may be): {blank_but_lit:?}"
    );
    assert!(!lit(0, 0, 1024, top), "above the text screen: black");
    assert!(!lit(0, top, left, 400), "left of the text screen: black");
    assert!(
        !lit(left + 640, top, 1024 - left - 640, 400),
        "right of it: black"
    );
}

#[test]
fn seabios_boots_a_boot_sector_from_ide_under_svm() {
    bootdisk(Backend::Svm, None);
}

#[test]
fn seabios_boots_a_boot_sector_from_ide_under_vmx() {
    bootdisk(Backend::Vmx, Some("corei7_skylake_x"));
}

/// Issue 10: SeaBIOS finds Keel's PCI test device, maps its ROM BAR and runs
/// the option ROM it serves (`device-model/src/test_device.rs`), whose
/// init entry prints one line on the debug console; the POST then goes on
/// as without the device.
fn option_rom(backend: Backend, cpu_model: Option<&str>) {
    let (vm, o) = boot_on("seabios-testdev", backend, cpu_model, Some(UNTIL));
    // The stages of a plain POST, with the device found, initialised and
    // its ROM run (the line is test_device::OPTION_ROM_LINE).
    let mut stages = Vec::new();
    for &stage in SEABIOS_POST_STAGES {
        match stage {
            "Found 4 PCI devices" => stages.push("Found 5 PCI devices"),
            "All threads complete." => stages.extend([
                stage,
                "Running option rom at",
                "keel-testdev: option ROM ran",
            ]),
            "Using pmtimer, ioport 0x608" => {
                stages.extend([stage, "PCI: init bdf=00:02.0 id=4b45:5444"])
            }
            _ => stages.push(stage),
        }
    }
    if let Err(e) = check_seabios_stages(&o, &vm.config.name, &stages) {
        panic!("{e}");
    }
}

#[test]
fn seabios_runs_the_test_device_option_rom_under_svm() {
    option_rom(Backend::Svm, None);
}

#[test]
fn seabios_runs_the_test_device_option_rom_under_vmx() {
    option_rom(Backend::Vmx, Some("corei7_skylake_x"));
}
