//! A VBE mode on Keel's standard VGA, seen on the machine's display: the
//! `vbe` test guest (`crates/test-guests/src/bin/vbe.rs`) sets 1024x768x32
//! through the Bochs VBE DISPI ports and draws a known pattern in the
//! linear framebuffer at BAR0; the screenshot of the machine's display
//! taken when the VM ends must show that pattern pixel for pixel.
//!
//! The guest programs the DISPI registers itself rather than calling INT
//! 10h AX=4F02h: it runs in long mode, where the VGA BIOS's real-mode
//! services cannot be called, and the BIOS's VBE calls end in these same
//! DISPI writes.

use keel_tests::{artifacts_dir, boot_with, check_guest_suite};
use xtask::runner::Backend;

/// The guest's marker pixels: (x, y, 0xRRGGBB).
const MARKERS: [(u32, u32, u32); 5] = [
    (0, 0, 0x12_34_56),
    (1023, 0, 0xAB_CD_EF),
    (0, 767, 0xFE_DC_BA),
    (1023, 767, 0x13_57_9B),
    (512, 384, 0x24_68_AC),
];

/// The guest's bars in rows 0-383, 128 columns each: white, yellow, cyan,
/// green, magenta, red, blue, black.
const BARS: [u32; 8] = [
    0xFF_FF_FF, 0xFF_FF_00, 0x00_FF_FF, 0x00_FF_00, 0xFF_00_FF, 0xFF_00_00, 0x00_00_FF, 0,
];

/// What the guest drew at (x, y), as 0xRRGGBB.
fn pattern(x: u32, y: u32) -> u32 {
    if let Some(&(_, _, v)) = MARKERS.iter().find(|m| (m.0, m.1) == (x, y)) {
        return v;
    }
    if y < 384 {
        BARS[(x / 128) as usize]
    } else {
        (x & 0xFF) << 16 | (y & 0xFF) << 8 | ((x ^ y) & 0xFF)
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
    let bytes = std::fs::read(&shot).unwrap_or_else(|e| {
        panic!(
            "no screenshot of the machine's display at {}: {e}\n{}",
            shot.display(),
            o.report()
        )
    });
    let (w, h, rgb) = xtask::display::parse_ppm(&bytes).expect("a binary PPM");
    assert_eq!((w, h), (1024, 768), "Keel's display mode");
    let px = |x: u32, y: u32| {
        let i = ((y * w + x) * 3) as usize;
        u32::from(rgb[i]) << 16 | u32::from(rgb[i + 1]) << 8 | u32::from(rgb[i + 2])
    };
    // The chosen points: every marker and its neighbours, each bar's
    // edges and middle in a few rows, the gradient on a grid.
    let mut points: Vec<(u32, u32)> = Vec::new();
    for &(x, y, _) in &MARKERS {
        for (dx, dy) in [(0i32, 0i32), (1, 0), (-1, 0), (0, 1), (0, -1)] {
            let (nx, ny) = (x as i32 + dx, y as i32 + dy);
            if (0..1024).contains(&nx) && (0..768).contains(&ny) {
                points.push((nx as u32, ny as u32));
            }
        }
    }
    for bar in 0..8u32 {
        for x in [bar * 128, bar * 128 + 64, bar * 128 + 127] {
            for y in [1, 100, 200, 383] {
                points.push((x, y));
            }
        }
    }
    for y in (384..768).step_by(37) {
        for x in (0..1024).step_by(53) {
            points.push((x, y));
        }
    }
    let wrong: Vec<String> = points
        .iter()
        .filter(|&&(x, y)| px(x, y) != pattern(x, y))
        .map(|&(x, y)| format!("({x}, {y}): {:06x}, drawn {:06x}", px(x, y), pattern(x, y)))
        .collect();
    assert!(
        wrong.is_empty(),
        "{} of {} points differ from what the guest drew: {wrong:?}",
        wrong.len(),
        points.len()
    );
}
