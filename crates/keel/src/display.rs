//! How a VM's screen lies on the machine's display: the pure part of
//! Keel's display (the hardware side is `host::display` in the binary).
//!
//! A guest screen that fits is scaled up by the largest whole factor that
//! still fits (mode 13h's 320x200 three times on 1024x768), one that does
//! not is scaled down keeping its aspect ratio; either way it is centered,
//! and the rest of the display is black. Scaling picks the nearest source
//! pixel (no filtering), so a guest mode of the display's own size shows
//! pixel for pixel.
//!
//! [`Refresh`] decides which display rows each refresh draws: the ones
//! showing source rows the card saw change, all of them when the picture
//! moves or another VM is shown, a bounded number per refresh.

use alloc::vec;
use alloc::vec::Vec;
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

    /// The display rows that show source row `sy` (empty when scaling
    /// down skips it): the inverse of [`Fit::src_y`].
    pub fn display_rows(&self, sy: u32) -> Range<u32> {
        if sy >= self.src.1 || self.h == 0 {
            return self.y0..self.y0;
        }
        // The first picture row i with i * den / num >= s.
        let first = |s: u32| {
            let i = (u64::from(s) * u64::from(self.num.max(1))).div_ceil(u64::from(self.den));
            i.min(u64::from(self.h)) as u32
        };
        let start = first(sy);
        // The last source row also shows on the rows the clamp in `map` keeps on it.
        let end = if sy + 1 >= self.src.1 {
            self.h
        } else {
            first(sy + 1)
        };
        self.y0 + start..self.y0 + end.max(start)
    }
}

/// Which display rows a refresh draws. Rows wait to be drawn when the
/// source rows they show changed (the card's dirty record), and all of
/// them when the picture's place changed, when another VM's screen is
/// shown, when the card says everything may have changed, and every
/// [`Refresh::SAFETY_NET`] refreshes; each refresh draws at most a given
/// number of them, going round the display from where the last stopped,
/// so its work is bounded whatever the guest does.
#[derive(Debug, Clone)]
pub struct Refresh {
    /// Bit `y`: display row `y` waits.
    pending: Vec<u64>,
    height: u32,
    next: u32,
    fit: Option<Fit>,
    owner: Option<usize>,
    ticks: u32,
}

impl Refresh {
    /// Refreshes between two redraws of the whole display, whatever the
    /// dirty record says: a safety net, not the way changes are found.
    pub const SAFETY_NET: u32 = 200;

    /// A `height` rows display, every row waiting.
    pub fn new(height: u32) -> Self {
        let mut r = Refresh {
            pending: vec![0; height.div_ceil(64) as usize],
            height,
            next: 0,
            fit: None,
            owner: None,
            ticks: 0,
        };
        r.mark_all();
        r
    }

    /// Starts a refresh of `owner`'s screen, placed by `fit`: every row
    /// waits if either differs from the last refresh's or the safety net
    /// is due.
    pub fn begin(&mut self, owner: usize, fit: Fit) {
        self.ticks += 1;
        if self.owner != Some(owner) || self.fit != Some(fit) || self.ticks >= Self::SAFETY_NET {
            self.owner = Some(owner);
            self.fit = Some(fit);
            self.mark_all();
        }
    }

    /// Every row waits.
    pub fn mark_all(&mut self) {
        self.ticks = 0;
        for (i, w) in self.pending.iter_mut().enumerate() {
            let left = self.height - (i as u32 * 64);
            *w = if left >= 64 {
                u64::MAX
            } else {
                (1 << left) - 1
            };
        }
    }

    /// Source row `sy` of the picture changed: the rows showing it wait.
    pub fn source_row_changed(&mut self, sy: u32) {
        let Some(fit) = self.fit else {
            return;
        };
        for y in fit.display_rows(sy) {
            if let Some(w) = self.pending.get_mut((y / 64) as usize) {
                *w |= 1 << (y % 64);
            }
        }
    }

    /// The next waiting row from where the last one was taken, round the
    /// display; it no longer waits.
    pub fn next_row(&mut self) -> Option<u32> {
        let words = self.pending.len() as u32;
        let start = self.next.min(self.height);
        // The words from `start` on, then round to `start`'s word again.
        for k in 0..=words {
            let w = (start / 64 + k) % words.max(1);
            let mut bits = *self.pending.get(w as usize)?;
            if k == 0 {
                bits &= u64::MAX << (start % 64);
            }
            if bits != 0 {
                let y = w * 64 + bits.trailing_zeros();
                self.pending[w as usize] &= !(1 << (y % 64));
                self.next = y + 1;
                return Some(y);
            }
        }
        None
    }

    /// How many rows wait.
    pub fn waiting(&self) -> u32 {
        self.pending.iter().map(|w| w.count_ones()).sum()
    }
}

/// When the next refresh is due: a period after the last one *ended*.
/// Counting from its start instead, a refresh that takes longer than the
/// period (a slow machine; an emulator on a loaded host, where drawing a
/// 1024x768 screen took 60-130 ms against a 50 ms period) would be due
/// again at once, at every exit, and the guest would hardly run: Linux saw
/// RCU stalls of 24 s. This way the guest keeps at least one period in
/// every refresh and a period.
#[derive(Debug, Clone, Copy, Default)]
pub struct FramePacer {
    next: u64,
}

impl FramePacer {
    /// Whether a refresh is due at time `now`.
    pub fn due(&self, now: u64) -> bool {
        now >= self.next
    }

    /// A refresh ended at `end`; the next is due `period` later.
    pub fn done(&mut self, end: u64, period: u64) {
        self.next = end.saturating_add(period);
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
    fn display_rows_are_the_rows_src_y_maps_to_the_source_row() {
        for (src, dst) in [
            ((1024, 768), (1024, 768)),
            ((320, 200), (1024, 768)),
            ((640, 400), (1024, 768)),
            ((720, 400), (1024, 768)),
            ((2048, 1536), (1024, 768)),
            ((1280, 1024), (1024, 768)),
            ((800, 1600), (1024, 768)),
            ((8, 1), (1024, 768)),
            ((16000, 12000), (1024, 768)),
        ] {
            let f = Fit::new(src, dst);
            for y in 0..dst.1 {
                if let Some(sy) = f.src_y(y) {
                    assert!(
                        f.display_rows(sy).contains(&y),
                        "{src:?}: row {y} shows {sy}"
                    );
                }
            }
            for sy in 0..src.1 {
                for y in f.display_rows(sy) {
                    assert_eq!(f.src_y(y), Some(sy), "{src:?}: source row {sy}");
                }
            }
            assert!(f.display_rows(src.1).is_empty(), "past the source");
        }
        // Three times: source row 1 of mode 13h on display rows 87-89.
        assert_eq!(Fit::new((320, 200), (1024, 768)).display_rows(1), 87..90);
    }

    fn drain(r: &mut Refresh, most: u32) -> Vec<u32> {
        core::iter::from_fn(|| r.next_row())
            .take(most as usize)
            .collect()
    }

    #[test]
    fn only_rows_showing_changed_source_rows_are_drawn() {
        let fit = Fit::new((320, 200), (1024, 768));
        let mut r = Refresh::new(768);
        r.begin(0, fit);
        assert_eq!(r.waiting(), 768, "the first refresh draws everything");
        drain(&mut r, 768);
        r.begin(0, fit);
        assert_eq!(r.next_row(), None, "nothing changed: nothing drawn");
        r.source_row_changed(1);
        r.source_row_changed(199);
        assert_eq!(drain(&mut r, 768), [87, 88, 89, 681, 682, 683]);
        r.source_row_changed(500);
        assert_eq!(r.next_row(), None, "past the source: nothing");
    }

    #[test]
    fn everything_is_drawn_again_for_another_vm_another_place_or_the_safety_net() {
        let text = Fit::new((640, 400), (1024, 768));
        let mut r = Refresh::new(768);
        r.begin(0, text);
        drain(&mut r, 768);
        r.begin(1, text);
        assert_eq!(r.waiting(), 768, "another VM's screen");
        drain(&mut r, 768);
        r.begin(1, Fit::new((1024, 768), (1024, 768)));
        assert_eq!(r.waiting(), 768, "another mode");
        drain(&mut r, 768);
        for _ in 1..Refresh::SAFETY_NET {
            r.begin(1, Fit::new((1024, 768), (1024, 768)));
            assert_eq!(r.waiting(), 0);
        }
        r.begin(1, Fit::new((1024, 768), (1024, 768)));
        assert_eq!(r.waiting(), 768, "the safety net");
    }

    #[test]
    fn refreshes_draw_bounded_steps_round_the_display() {
        let mut r = Refresh::new(300);
        r.begin(0, Fit::new((300, 300), (300, 300)));
        assert_eq!(drain(&mut r, 256), (0..256).collect::<Vec<_>>());
        assert_eq!(r.waiting(), 44, "the rest waits for the next refresh");
        r.source_row_changed(3);
        r.source_row_changed(260);
        // On from where the last refresh stopped, then round.
        assert_eq!(
            drain(&mut r, 256),
            (256..300).chain([3]).collect::<Vec<_>>()
        );
        assert_eq!(r.next_row(), None);
    }

    #[test]
    fn a_refresh_longer_than_its_period_still_leaves_the_guest_a_period() {
        let mut p = FramePacer::default();
        assert!(p.due(0), "the first refresh is due at once");
        // Started at 1000, took three periods of 50.
        p.done(1150, 50);
        assert!(
            !p.due(1150) && !p.due(1199),
            "the guest runs a whole period"
        );
        assert!(p.due(1200));
        p.done(u64::MAX - 10, 50);
        assert!(!p.due(u64::MAX - 1), "no wrap to an early refresh");
    }
}
