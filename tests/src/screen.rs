//! The machine's display as a test sees it: a screenshot (`--screenshot
//! FILE.ppm`, taken when the VM on the display ends) and the patterns the
//! screen test guests draw, with the points compared pixel by pixel.
//!
//! - The VBE test pattern, 1024x768x32 (`crates/test-guests/src/vbe_pattern.s`,
//!   drawn by the `vbe` guest after its DISPI writes and by the
//!   `screendisk` boot disk after INT 10h AX=4F02h): Keel's display mode
//!   is the same size, so it shows pixel for pixel.
//! - The `screendisk` disk's mode 13h pattern (320x200, 256 colours through
//!   a DAC it loads with INT 10h AX=1012h): Keel scales mode 13h three
//!   times, centered (`keel::display::Fit`: 960x600 at (32, 84)).

use std::path::Path;

/// A screenshot of the machine's display.
pub struct Screenshot {
    pub w: u32,
    pub h: u32,
    rgb: Vec<u8>,
}

impl Screenshot {
    /// Reads the binary PPM at `path`.
    pub fn read(path: &Path) -> Result<Screenshot, String> {
        let bytes = std::fs::read(path).map_err(|e| {
            format!(
                "no screenshot of the machine's display at {}: {e}",
                path.display()
            )
        })?;
        let (w, h, rgb) = xtask::display::parse_ppm(&bytes)
            .ok_or_else(|| format!("{} is not a binary PPM", path.display()))?;
        Ok(Screenshot {
            w,
            h,
            rgb: rgb.to_vec(),
        })
    }

    /// The pixel at (x, y) as 0xRRGGBB; black outside the picture.
    pub fn px(&self, x: u32, y: u32) -> u32 {
        if x >= self.w || y >= self.h {
            return 0;
        }
        let i = ((y * self.w + x) * 3) as usize;
        u32::from(self.rgb[i]) << 16 | u32::from(self.rgb[i + 1]) << 8 | u32::from(self.rgb[i + 2])
    }

    /// Keel's display mode: 1024x768.
    fn check_size(&self) -> Result<(), String> {
        if (self.w, self.h) != (1024, 768) {
            return Err(format!(
                "the display is {}x{}, not Keel's 1024x768",
                self.w, self.h
            ));
        }
        Ok(())
    }

    /// Every point of `points` shows `want(x, y)`, else the ones that do not.
    fn check_points(
        &self,
        points: &[(u32, u32)],
        want: impl Fn(u32, u32) -> u32,
    ) -> Result<(), String> {
        let wrong: Vec<String> = points
            .iter()
            .filter(|&&(x, y)| self.px(x, y) != want(x, y))
            .map(|&(x, y)| {
                format!(
                    "({x}, {y}): {:06x}, drawn {:06x}",
                    self.px(x, y),
                    want(x, y)
                )
            })
            .collect();
        if wrong.is_empty() {
            Ok(())
        } else {
            Err(format!(
                "{} of {} points differ from what the guest drew: {wrong:?}",
                wrong.len(),
                points.len()
            ))
        }
    }
}

/// The VBE pattern's marker pixels: (x, y, 0xRRGGBB) (`VBE_MARK_*`).
pub const VBE_MARKERS: [(u32, u32, u32); 5] = [
    (0, 0, 0x12_34_56),
    (1023, 0, 0xAB_CD_EF),
    (0, 767, 0xFE_DC_BA),
    (1023, 767, 0x13_57_9B),
    (512, 384, 0x24_68_AC),
];

/// The VBE pattern's bars in rows 0-383, 128 columns each: white, yellow,
/// cyan, green, magenta, red, blue, black.
pub const VBE_BARS: [u32; 8] = [
    0xFF_FF_FF, 0xFF_FF_00, 0x00_FF_FF, 0x00_FF_00, 0xFF_00_FF, 0xFF_00_00, 0x00_00_FF, 0,
];

/// What the VBE pattern has at (x, y), as 0xRRGGBB.
pub fn vbe_pattern(x: u32, y: u32) -> u32 {
    if let Some(&(_, _, v)) = VBE_MARKERS.iter().find(|m| (m.0, m.1) == (x, y)) {
        return v;
    }
    if y < 384 {
        VBE_BARS[(x / 128) as usize]
    } else {
        (x & 0xFF) << 16 | (y & 0xFF) << 8 | ((x ^ y) & 0xFF)
    }
}

/// The screenshot shows the VBE pattern at the chosen points: every
/// marker and its neighbours, each bar's edges and middle in a few rows,
/// the gradient on a grid.
pub fn check_vbe_pattern(shot: &Screenshot) -> Result<(), String> {
    shot.check_size()?;
    let mut points: Vec<(u32, u32)> = Vec::new();
    for &(x, y, _) in &VBE_MARKERS {
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
    shot.check_points(&points, vbe_pattern)
}

/// Mode 13h's size, and where Keel's display shows it: three times,
/// centered.
pub const MODE13H_SIZE: (u32, u32) = (320, 200);
pub const MODE13H_ORIGIN: (u32, u32) = (32, 84);
pub const MODE13H_SCALE: u32 = 3;

/// The DAC entries the mode 13h step loads: a ramp of 64 from 64 (entry
/// 64 + i: red i, green 63 - i, blue 4i mod 64) and four markers from 200
/// (red, green, blue, white), 6 bits a component.
const RAMP_FIRST: u32 = 64;
const MARK_FIRST: u32 = 200;
const MARKER_DAC: [[u32; 3]; 4] = [[63, 0, 0], [0, 63, 0], [0, 0, 63], [63, 63, 63]];

/// The colour index the mode 13h step puts at (x, y).
pub fn mode13h_index(x: u32, y: u32) -> u32 {
    let (w, h) = MODE13H_SIZE;
    match (x, y) {
        (0, 0) => MARK_FIRST,
        (x, 0) if x == w - 1 => MARK_FIRST + 1,
        (0, y) if y == h - 1 => MARK_FIRST + 2,
        (x, y) if x == w - 1 && y == h - 1 => MARK_FIRST + 3,
        _ => RAMP_FIRST + ((x + 3 * y) & 63),
    }
}

/// The 0xRRGGBB the mode 13h step's DAC gives colour index `i` (one it
/// loaded), its 6-bit components widened to 8 as the card's DAC does.
pub fn mode13h_rgb(i: u32) -> u32 {
    let dac = match i {
        i if (RAMP_FIRST..RAMP_FIRST + 64).contains(&i) => {
            let k = i - RAMP_FIRST;
            [k, 63 - k, (4 * k) & 63]
        }
        i if (MARK_FIRST..MARK_FIRST + 4).contains(&i) => MARKER_DAC[(i - MARK_FIRST) as usize],
        _ => return 0,
    };
    let c = |v: u32| v << 2 | v >> 4;
    c(dac[0]) << 16 | c(dac[1]) << 8 | c(dac[2])
}

/// The screenshot shows the mode 13h pattern three times, centered: at
/// source points on a grid and every marker, the corners of each one's
/// 3x3 block on the display; black just outside the picture.
pub fn check_mode13h_pattern(shot: &Screenshot) -> Result<(), String> {
    shot.check_size()?;
    let (w, h) = MODE13H_SIZE;
    let (x0, y0) = MODE13H_ORIGIN;
    let s = MODE13H_SCALE;
    let mut sources: Vec<(u32, u32)> = vec![(0, 0), (w - 1, 0), (0, h - 1), (w - 1, h - 1)];
    for y in (0..h).step_by(11) {
        for x in (0..w).step_by(7) {
            sources.push((x, y));
        }
    }
    let mut points = Vec::new();
    for &(x, y) in &sources {
        for (dx, dy) in [(0, 0), (s - 1, 0), (0, s - 1), (s - 1, s - 1)] {
            points.push((x0 + x * s + dx, y0 + y * s + dy));
        }
    }
    let (right, bottom) = (x0 + w * s, y0 + h * s);
    let outside = [
        (x0 - 1, y0),
        (right, y0),
        (x0, y0 - 1),
        (x0, bottom),
        (right, bottom),
        (0, 0),
        (1023, 767),
    ];
    points.extend(outside);
    shot.check_points(&points, |dx, dy| {
        if !(x0..right).contains(&dx) || !(y0..bottom).contains(&dy) {
            return 0;
        }
        mode13h_rgb(mode13h_index((dx - x0) / s, (dy - y0) / s))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patterns_hold_what_the_guests_draw() {
        assert_eq!(vbe_pattern(0, 0), 0x12_34_56);
        assert_eq!(vbe_pattern(130, 10), 0xFF_FF_00);
        assert_eq!(vbe_pattern(0x105, 0x190), 0x05_90_95);
        assert_eq!(mode13h_index(0, 0), 200);
        assert_eq!(mode13h_index(319, 199), 203);
        assert_eq!(mode13h_index(10, 1), 64 + 13);
        assert_eq!(mode13h_index(63, 1), 64 + 2);
        // Entry 74: (10, 53, 40) in 6 bits.
        assert_eq!(mode13h_rgb(74), 0x28_d7_a2);
        assert_eq!(mode13h_rgb(203), 0xFF_FF_FF);
        assert_eq!(mode13h_rgb(5), 0);
    }

    #[test]
    fn a_screenshot_of_the_wrong_thing_fails() {
        let black = Screenshot {
            w: 1024,
            h: 768,
            rgb: vec![0; 1024 * 768 * 3],
        };
        assert!(check_vbe_pattern(&black).is_err());
        assert!(check_mode13h_pattern(&black).is_err());
        let small = Screenshot {
            w: 640,
            h: 480,
            rgb: vec![0; 640 * 480 * 3],
        };
        assert!(check_vbe_pattern(&small).unwrap_err().contains("640x480"));
        let mut drawn = black;
        for y in 0..768 {
            for x in 0..1024 {
                let v = vbe_pattern(x, y);
                let i = ((y * 1024 + x) * 3) as usize;
                drawn.rgb[i..i + 3].copy_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
            }
        }
        assert_eq!(check_vbe_pattern(&drawn), Ok(()));
        let mut scaled = Screenshot {
            w: 1024,
            h: 768,
            rgb: vec![0; 1024 * 768 * 3],
        };
        let (x0, y0) = MODE13H_ORIGIN;
        for y in y0..y0 + 600 {
            for x in x0..x0 + 960 {
                let v = mode13h_rgb(mode13h_index((x - x0) / 3, (y - y0) / 3));
                let i = ((y * 1024 + x) * 3) as usize;
                scaled.rgb[i..i + 3].copy_from_slice(&[(v >> 16) as u8, (v >> 8) as u8, v as u8]);
            }
        }
        assert_eq!(check_mode13h_pattern(&scaled), Ok(()));
        // Shifted by one display pixel: the block corners catch it.
        scaled.rgb.rotate_right(3);
        assert!(check_mode13h_pattern(&scaled).is_err());
    }
}
