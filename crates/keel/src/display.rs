//! How a VM's screen lies on the machine's display: the pure part of
//! Keel's display (the hardware side is `host::display` in the binary).
//!
//! A guest screen that fits is scaled up by the largest whole factor that
//! still fits (mode 13h's 320x200 three times on 1024x768), one that does
//! not is scaled down keeping its aspect ratio; either way it is centered,
//! and the rest of the display is black. Scaling picks the nearest source
//! pixel (no filtering), so a guest mode of the display's own size shows
//! pixel for pixel.

use core::ops::Range;

/// The picture of a `src` sized guest screen on a `dst` sized display.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fit {
    src: (u32, u32),
    /// Display pixels per `den` source pixels.
    num: u32,
    den: u32,
    /// The picture's top-left corner and size on the display.
    pub x0: u32,
    pub y0: u32,
    pub w: u32,
    pub h: u32,
}

impl Fit {
    /// Where a `src` screen goes on a `dst` display; an empty picture for
    /// an empty screen or display.
    pub fn new(src: (u32, u32), dst: (u32, u32)) -> Fit {
        let (sw, sh) = (src.0.max(1), src.1.max(1));
        let (num, den) = if sw <= dst.0 && sh <= dst.1 {
            ((dst.0 / sw).min(dst.1 / sh), 1)
        } else if u64::from(dst.0) * u64::from(sh) <= u64::from(dst.1) * u64::from(sw) {
            // Width limits: dst.0 / sw is the smaller ratio.
            (dst.0, sw)
        } else {
            (dst.1, sh)
        };
        let scaled = |s: u32, d: u32| {
            u32::try_from(u64::from(s) * u64::from(num) / u64::from(den))
                .unwrap_or(d)
                .min(d)
        };
        let (w, h) = if src.0 == 0 || src.1 == 0 {
            (0, 0)
        } else {
            (scaled(sw, dst.0), scaled(sh, dst.1))
        };
        Fit {
            src,
            num,
            den,
            x0: (dst.0 - w) / 2,
            y0: (dst.1 - h) / 2,
            w,
            h,
        }
    }

    /// The display columns the picture covers.
    pub fn columns(&self) -> Range<u32> {
        self.x0..self.x0 + self.w
    }

    /// The source column shown at picture column `i` (0 is the picture's
    /// left edge): always inside the source.
    pub fn src_x(&self, i: u32) -> u32 {
        self.map(i, self.src.0)
    }

    /// The source row shown at display row `y`, `None` above or below the picture.
    pub fn src_y(&self, y: u32) -> Option<u32> {
        let i = y.checked_sub(self.y0).filter(|&i| i < self.h)?;
        Some(self.map(i, self.src.1))
    }

    fn map(&self, i: u32, len: u32) -> u32 {
        let s = u64::from(i) * u64::from(self.den) / u64::from(self.num.max(1));
        (s as u32).min(len.saturating_sub(1))
    }
}

/// Which display rows a refresh draws: `rows_per_tick` at a time, round
/// the display, so each refresh's work is bounded and the whole display
/// is redrawn every `ceil(height / rows_per_tick)` ticks.
#[derive(Debug, Clone, Default)]
pub struct RowCursor {
    next: u32,
}

impl RowCursor {
    /// The rows to draw now out of `height`.
    pub fn take(&mut self, rows_per_tick: u32, height: u32) -> Range<u32> {
        if self.next >= height {
            self.next = 0;
        }
        let start = self.next;
        let end = start.saturating_add(rows_per_tick.max(1)).min(height);
        self.next = end;
        start..end
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_screen_of_the_displays_size_shows_pixel_for_pixel() {
        let f = Fit::new((1024, 768), (1024, 768));
        assert_eq!((f.x0, f.y0, f.w, f.h), (0, 0, 1024, 768));
        assert_eq!(f.src_x(517), 517);
        assert_eq!(f.src_y(767), Some(767));
        assert_eq!(f.src_y(768), None);
    }

    #[test]
    fn small_screens_scale_up_by_whole_factors_and_center() {
        // Mode 13h: three times, 960x600, centered on 1024x768.
        let f = Fit::new((320, 200), (1024, 768));
        assert_eq!((f.x0, f.y0, f.w, f.h), (32, 84, 960, 600));
        assert_eq!(
            (f.src_x(0), f.src_x(2), f.src_x(3), f.src_x(959)),
            (0, 0, 1, 319)
        );
        assert_eq!(f.src_y(83), None, "above the picture: black");
        assert_eq!(f.src_y(84), Some(0));
        assert_eq!(f.src_y(84 + 599), Some(199));
        // An 80x25 text screen (640x400): once, centered.
        let t = Fit::new((640, 400), (1024, 768));
        assert_eq!((t.x0, t.y0, t.w, t.h), (192, 184, 640, 400));
    }

    #[test]
    fn large_screens_scale_down_keeping_the_aspect_ratio() {
        // 2048x1536 on 1024x768: every other pixel.
        let f = Fit::new((2048, 1536), (1024, 768));
        assert_eq!((f.x0, f.y0, f.w, f.h), (0, 0, 1024, 768));
        assert_eq!((f.src_x(1), f.src_x(1023)), (2, 2046));
        // A wide screen: the width limits, black bands above and below.
        let w = Fit::new((2000, 500), (1000, 800));
        assert_eq!((w.x0, w.y0, w.w, w.h), (0, 275, 1000, 250));
        assert_eq!(w.src_y(275 + 249), Some(498));
        // A tall one: the height limits.
        let t = Fit::new((800, 1600), (1024, 768));
        assert_eq!((t.w, t.h), (384, 768));
        assert!(t.src_x(383) < 800 && t.src_y(767).unwrap() < 1600);
    }

    #[test]
    fn empty_or_extreme_sizes_stay_inside_both_sides() {
        assert_eq!(Fit::new((0, 768), (1024, 768)).w, 0);
        let f = Fit::new((16000, 12000), (1024, 768));
        assert!(f.w <= 1024 && f.h <= 768);
        assert!(f.src_x(f.w - 1) < 16000 && f.src_y(f.h - 1).unwrap() < 12000);
        let g = Fit::new((8, 1), (1024, 768));
        assert_eq!((g.w, g.h), (1024, 128));
        assert_eq!(g.src_x(1023), 7);
    }

    #[test]
    fn refreshes_go_round_the_display_in_bounded_steps() {
        let mut c = RowCursor::default();
        assert_eq!(c.take(256, 768), 0..256);
        assert_eq!(c.take(256, 768), 256..512);
        assert_eq!(c.take(256, 768), 512..768);
        assert_eq!(c.take(256, 768), 0..256, "round again");
        assert_eq!(c.take(500, 300), 256..300, "a smaller display: to its end");
        assert_eq!(c.take(500, 300), 0..300);
    }
}
