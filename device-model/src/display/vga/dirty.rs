//! What changed in the card's picture since the display last looked, so
//! that Keel's display redraws only the rows that show something new.
//!
//! Two things are kept:
//! - the blocks of video memory written ([`BLOCK`] bytes each), whatever
//!   wrote them: the legacy window (text, planar, chain-4 and VBE's banks,
//!   every write of which reaches the card), framebuffer writes that
//!   exit, and the pages of the linear framebuffer the dirty log of the
//!   nested page tables saw written (handed in by the VMM);
//! - whether the whole picture may have changed: a register the picture
//!   depends on (the mode, the CRTC start address and offset, the
//!   attribute palette, the DAC), a reset, or a write to the font in
//!   plane 2 (which every text row draws with).
//!
//! [`Vga::take_changes`](super::Vga::take_changes) turns them into the
//! scan lines of the current screen to redraw, and forgets them.

use alloc::vec;
use alloc::vec::Vec;

/// Video memory is followed in blocks of this many bytes: 32 bytes of
/// each plane, 16 text cells, so that a character written marks its own
/// row of an 80-column screen (160 bytes of planes 0 and 1, 5 blocks).
pub const BLOCK: u64 = 128;
/// Bytes of plane 2 the text render reads glyphs from (256 glyphs of 32
/// bytes), and the video memory they lie in (planes interleaved).
const FONT_PLANE_BYTES: u64 = 256 * 32;
const FONT_VRAM_END: u64 = FONT_PLANE_BYTES * 4;

/// The record of what changed.
#[derive(Clone)]
pub struct Dirty {
    /// Bit `i`: block `i` of video memory was written.
    blocks: Vec<u64>,
    /// Some block is marked.
    any: bool,
    /// The whole picture may have changed.
    all: bool,
    /// Plane 2's glyph area was written (matters in text modes only).
    font: bool,
    size: u64,
}

impl Dirty {
    /// Nothing written yet, the whole picture to draw.
    pub fn new(vram_size: u64) -> Self {
        Dirty {
            blocks: vec![0; vram_size.div_ceil(BLOCK).div_ceil(64) as usize],
            any: false,
            all: true,
            font: false,
            size: vram_size,
        }
    }

    /// Bytes `[offset, offset + len)` of video memory were written (the
    /// part inside video memory counts).
    pub fn mark(&mut self, offset: u64, len: u64) {
        let end = offset.saturating_add(len).min(self.size);
        if offset >= end {
            return;
        }
        // Plane 2's byte of plane offset o is at 4 * o + 2.
        let font_end = end.min(FONT_VRAM_END);
        if offset < font_end && (font_end - offset >= 4 || (offset..font_end).any(|b| b % 4 == 2)) {
            self.font = true;
        }
        for block in offset / BLOCK..end.div_ceil(BLOCK) {
            if let Some(w) = self.blocks.get_mut((block / 64) as usize) {
                *w |= 1 << (block % 64);
            }
        }
        self.any = true;
    }

    /// The whole picture may have changed.
    pub fn mark_all(&mut self) {
        self.all = true;
    }

    /// Whether the whole picture may have changed (in a text mode, the
    /// font counts too).
    pub fn all(&self, text: bool) -> bool {
        self.all || (text && self.font)
    }

    /// Whether some block in `[offset, offset + len)` was written.
    pub fn touches(&self, offset: u64, len: u64) -> bool {
        let end = offset.saturating_add(len).min(self.size);
        if !self.any || offset >= end {
            return false;
        }
        let (first, last) = (offset / BLOCK, (end - 1) / BLOCK);
        for w in first / 64..=last / 64 {
            let lo = if w == first / 64 { first % 64 } else { 0 };
            let hi = if w == last / 64 { last % 64 } else { 63 };
            let mask = (u64::MAX >> (63 - hi)) & (u64::MAX << lo);
            if self.blocks.get(w as usize).is_some_and(|b| b & mask != 0) {
                return true;
            }
        }
        false
    }

    /// Whether nothing at all was marked.
    pub fn is_clean(&self) -> bool {
        !self.any && !self.all && !self.font
    }

    /// Forgets everything marked.
    pub fn clear(&mut self) {
        if self.any {
            self.blocks.fill(0);
        }
        self.any = false;
        self.all = false;
        self.font = false;
    }
}
