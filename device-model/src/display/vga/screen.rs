//! What the card's screen shows, read from video memory as the CRT
//! controller would scan it (IBM VGA Technical Reference, "CRT
//! Controller"; FreeVGA "CRTC Registers"):
//!
//! - [`Vga::text_screen`]: in an alphanumeric mode, the characters of each
//!   row as text (for Keel's log and tests);
//! - [`Vga::render`]: the screen as 0x00RRGGBB pixels: text modes drawn
//!   with the font the guest loaded into plane 2, 16-color planar modes,
//!   256-color chain-4 modes and VBE's packed-pixel modes.
//!
//! [`Vga::render_row`] draws one scan line at the columns a scaler picks,
//! so Keel's display (`keel::display`) reads only the pixels it shows
//! and bounds its work per refresh by rows.

use super::planar::PLANE_SIZE;
use super::regs::{ar, crtc, gc};
use super::vbe;
use super::Vga;

/// The most columns and rows a text dump or render shows.
pub const MAX_TEXT_COLS: usize = 256;
pub const MAX_TEXT_ROWS: usize = 128;

/// The display mode the registers select.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Screen {
    /// An alphanumeric mode of `cols` x `rows` characters.
    Text { cols: u32, rows: u32 },
    /// A VGA graphics mode: 16 colors in four planes.
    Planar { width: u32, height: u32 },
    /// A VGA graphics mode: 256 colors, chain-4.
    Chain4 { width: u32, height: u32 },
    /// A VBE mode.
    Vbe { width: u32, height: u32, bpp: u16 },
}

impl Vga {
    /// The mode the registers select now.
    pub fn screen(&self) -> Screen {
        if self.dispi.enabled() {
            return Screen::Vbe {
                width: u32::from(self.dispi.reg(vbe::XRES)),
                height: u32::from(self.dispi.reg(vbe::YRES)),
                bpp: self.dispi.reg(vbe::BPP),
            };
        }
        let r = &self.regs;
        let doubled = if r.crtc[crtc::MAX_SCAN_LINE] & 0x80 != 0 {
            2
        } else {
            1
        };
        if !r.graphics() {
            return Screen::Text {
                cols: r.display_chars().min(MAX_TEXT_COLS as u32),
                rows: (r.display_lines() / r.char_height()).min(MAX_TEXT_ROWS as u32),
            };
        }
        let height = r.display_lines() / r.char_height() / doubled;
        if r.gc[gc::MODE] & gc::MODE_SHIFT256 != 0 {
            Screen::Chain4 {
                width: r.display_chars() * 4,
                height,
            }
        } else {
            Screen::Planar {
                width: r.display_chars() * 8,
                height,
            }
        }
    }

    /// Plane `p`'s byte at `offset` (wrapping in the plane).
    fn plane(&self, p: u64, offset: u64) -> u8 {
        self.vram
            .read_obj::<u8>((offset % PLANE_SIZE) * 4 + p)
            .unwrap_or(0)
    }

    /// Where text cell (`row`, `col`) is in planes 0 and 1: the CRTC scans
    /// in word mode, so the start address and each row's offset (CR13,
    /// in units of two words) count twice.
    fn cell_offset(&self, row: u32, col: u32) -> u64 {
        let r = &self.regs;
        u64::from(r.start_address()) * 2
            + u64::from(row) * u64::from(r.crtc[crtc::OFFSET]) * 4
            + u64::from(col) * 2
    }

    /// In an alphanumeric mode, calls `line` with each row's characters
    /// (printable ASCII as is, NUL as a space, other bytes as `.`), right
    /// trimmed, and returns the number of rows; `None` in a graphics mode.
    /// Nothing is allocated: a row is built in a buffer on the stack.
    pub fn text_screen(&self, mut line: impl FnMut(&str)) -> Option<u32> {
        let Screen::Text { cols, rows } = self.screen() else {
            return None;
        };
        let mut buf = [b' '; MAX_TEXT_COLS];
        for row in 0..rows {
            for col in 0..cols {
                let c = self.plane(0, self.cell_offset(row, col));
                buf[col as usize] = match c {
                    0 => b' ',
                    0x20..=0x7E => c,
                    _ => b'.',
                };
            }
            let text = &buf[..cols as usize];
            let end = text.iter().rposition(|&c| c != b' ').map_or(0, |e| e + 1);
            line(core::str::from_utf8(&text[..end]).unwrap_or(""));
        }
        Some(rows)
    }

    /// The size in pixels of what `screen` shows: text modes are 8 dots
    /// per character (the 9th dot of 9-dot modes is left out).
    pub fn screen_size(&self, screen: Screen) -> (u32, u32) {
        match screen {
            Screen::Text { cols, rows } => (cols * 8, rows * self.regs.char_height()),
            Screen::Planar { width, height } | Screen::Chain4 { width, height } => (width, height),
            Screen::Vbe { width, height, .. } => (width, height),
        }
    }

    /// Draws the screen into `out` as 0x00RRGGBB pixels, row after row,
    /// and returns its width and height; `None` if `out` is too small or
    /// the mode has no packed-pixel form here (VBE's 4 bpp).
    pub fn render(&self, out: &mut [u32]) -> Option<(u32, u32)> {
        let screen = self.screen();
        let (w, h) = self.screen_size(screen);
        let pixels = (w as usize).checked_mul(h as usize)?;
        let out = out.get_mut(..pixels)?;
        for y in 0..h {
            let row = &mut out[(y * w) as usize..((y + 1) * w) as usize];
            self.render_row(screen, y, row, |x| x)?;
        }
        Some((w, h))
    }

    /// Draws scan line `y` of `screen` (from [`Vga::screen`]) into `out`:
    /// `out[i]` gets the pixel at column `x_of(i)`, so a display that
    /// scales reads only the pixels it shows. Pixels outside video memory
    /// are black. `None` for VBE's 4 bpp (no packed-pixel form here).
    ///
    /// Text: the character and attribute bytes of the cell in planes 0
    /// and 1, the dot from the glyph's line in plane 2 (32 bytes a glyph),
    /// the attribute's foreground or background color through the
    /// attribute controller's palette and the DAC; with AR10's blink bit,
    /// attribute bit 7 blinks rather than brightening the background
    /// (shown as not blinking). The cursor (CR0A/CR0B scan lines at the
    /// CR0E:CR0F cell) is drawn in the cell's foreground, steadily (IBM
    /// VGA Technical Reference, "Attribute Controller", "CRT Controller").
    pub fn render_row(
        &self,
        screen: Screen,
        y: u32,
        out: &mut [u32],
        x_of: impl Fn(u32) -> u32,
    ) -> Option<()> {
        let dac = &self.regs.dac;
        let r = &self.regs;
        let offset = u64::from(r.crtc[crtc::OFFSET]);
        let xs = out
            .iter_mut()
            .enumerate()
            .map(|(i, px)| (x_of(i as u32), px));
        match screen {
            Screen::Text { .. } => {
                let ch = r.char_height();
                let (cell_row, line) = (y / ch, y % ch);
                let blink = r.ar[ar::MODE] & ar::MODE_BLINK != 0;
                let cursor = self.cursor_cell().filter(|_| {
                    let start = u32::from(r.crtc[crtc::CURSOR_START] & 0x1F);
                    let end = u32::from(r.crtc[crtc::CURSOR_END] & 0x1F);
                    (start..=end).contains(&line)
                });
                for (x, px) in xs {
                    let cell = self.cell_offset(cell_row, x / 8);
                    let c = self.plane(0, cell);
                    let attr = self.plane(1, cell);
                    let glyph = self.plane(2, u64::from(c) * 32 + u64::from(line));
                    let on = glyph >> (7 - x % 8) & 1 != 0 || cursor == Some(cell % PLANE_SIZE);
                    let background = if blink { attr >> 4 & 7 } else { attr >> 4 };
                    let color = if on { attr & 0x0F } else { background };
                    *px = dac.rgb(r.palette(color));
                }
            }
            Screen::Planar { .. } => {
                let line = u64::from(r.start_address()) + u64::from(y) * offset * 2;
                for (x, px) in xs {
                    let at = line + u64::from(x / 8);
                    let bit = 7 - x % 8;
                    let color = (0..4).fold(0u8, |c, p| c | (self.plane(p, at) >> bit & 1) << p);
                    *px = dac.rgb(r.palette(color));
                }
            }
            Screen::Chain4 { .. } => {
                let line = u64::from(r.start_address()) * 4 + u64::from(y) * offset * 8;
                for (x, px) in xs {
                    let c = self.vram.read_obj::<u8>(line + u64::from(x)).unwrap_or(0);
                    *px = dac.rgb(c);
                }
            }
            Screen::Vbe { bpp, .. } => {
                if bpp == 4 {
                    return None;
                }
                let bytes = vbe::bytes_per_pixel(bpp);
                let line = self.dispi.start() + u64::from(y) * self.dispi.line_bytes();
                for (x, px) in xs {
                    let at = line + u64::from(x) * bytes;
                    let mut b = [0u8; 4];
                    let _ = self.vram.read(at, &mut b[..bytes as usize]);
                    let v = u32::from_le_bytes(b);
                    *px = match bpp {
                        8 => dac.rgb(b[0]),
                        15 => {
                            let c = |s: u32| (v >> s & 0x1F) * 255 / 31;
                            c(10) << 16 | c(5) << 8 | c(0)
                        }
                        16 => {
                            let (r5, g6, b5) = (v >> 11 & 0x1F, v >> 5 & 0x3F, v & 0x1F);
                            (r5 * 255 / 31) << 16 | (g6 * 255 / 63) << 8 | (b5 * 255 / 31)
                        }
                        _ => v & 0x00FF_FFFF,
                    };
                }
            }
        }
        Some(())
    }

    /// The bytes of video memory scan line `y` of `screen` is drawn from
    /// (besides the font), as `(offset, length)` ranges: two where the
    /// line wraps round the end of the planes, the second empty otherwise.
    /// The same addressing as [`Vga::render_row`], for the display's dirty
    /// record: a line whose bytes were not written shows what it showed.
    pub(super) fn row_bytes(&self, screen: Screen, y: u32) -> [(u64, u64); 2] {
        let r = &self.regs;
        let offset = u64::from(r.crtc[crtc::OFFSET]);
        // `len` bytes of each plane from plane offset `at`, wrapping in the plane.
        let planes = |at: u64, len: u64| {
            let at = at % PLANE_SIZE;
            let len = len.min(PLANE_SIZE);
            let first = len.min(PLANE_SIZE - at);
            [(at * 4, first * 4), (0, (len - first) * 4)]
        };
        let (width, _) = self.screen_size(screen);
        match screen {
            Screen::Text { cols, .. } => {
                let cell_row = y / r.char_height();
                planes(self.cell_offset(cell_row, 0), u64::from(cols) * 2)
            }
            Screen::Planar { .. } => planes(
                u64::from(r.start_address()) + u64::from(y) * offset * 2,
                u64::from(width).div_ceil(8),
            ),
            Screen::Chain4 { .. } => [
                (
                    u64::from(r.start_address()) * 4 + u64::from(y) * offset * 8,
                    u64::from(width),
                ),
                (0, 0),
            ],
            Screen::Vbe { bpp, .. } => [
                (
                    self.dispi.start() + u64::from(y) * self.dispi.line_bytes(),
                    u64::from(width) * vbe::bytes_per_pixel(bpp),
                ),
                (0, 0),
            ],
        }
    }

    /// The cursor's cell as an offset in planes 0 and 1 (word mode, like
    /// [`Self::cell_offset`]); `None` while CR0A turns it off.
    pub(super) fn cursor_cell(&self) -> Option<u64> {
        let r = &self.regs;
        if r.crtc[crtc::CURSOR_START] & crtc::CURSOR_OFF != 0 {
            return None;
        }
        let at = u16::from_be_bytes([r.crtc[crtc::CURSOR_HIGH], r.crtc[crtc::CURSOR_LOW]]);
        Some(u64::from(at) * 2 % PLANE_SIZE)
    }
}
