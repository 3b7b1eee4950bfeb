//! The VGA register file behind ports 0x3B0-0x3DF (IBM VGA Technical
//! Reference, "Registers"; FreeVGA's register pages): the miscellaneous
//! output register, the sequencer, the CRT controller with its write
//! protect bit, the graphics controller, the attribute controller with its
//! address/data flip-flop, input status 1 and the video subsystem enable.
//! The DAC has its own file ([`super::dac`]).
//!
//! Index registers keep the bits the hardware has; a data access at an
//! index with no register reads 0 and a write to it is dropped.

use super::dac::Dac;

/// Sequencer registers SR00-SR04.
pub const SEQ_COUNT: usize = 5;
/// CRT controller registers CR00-CR18.
pub const CRTC_COUNT: usize = 0x19;
/// Graphics controller registers GR00-GR08.
pub const GC_COUNT: usize = 9;
/// Attribute controller registers AR00-AR14.
pub const AR_COUNT: usize = 0x15;

/// Sequencer register indexes.
pub mod seq {
    /// SR02 Map Mask: which planes a CPU write reaches.
    pub const MAP_MASK: usize = 2;
    /// SR04 Memory Mode.
    pub const MEMORY_MODE: usize = 4;
    /// SR04 bit 2: Odd/Even Host Memory Write Addressing Disable.
    pub const MM_ODD_EVEN_DISABLE: u8 = 1 << 2;
    /// SR04 bit 3: Chain 4.
    pub const MM_CHAIN4: u8 = 1 << 3;
}

/// CRT controller register indexes.
pub mod crtc {
    /// CR01 End Horizontal Display.
    pub const H_DISPLAY_END: usize = 0x01;
    /// CR07 Overflow (bits 1 and 6: vertical display end bits 8 and 9;
    /// bit 4: line compare bit 8, writable under the protect bit).
    pub const OVERFLOW: usize = 0x07;
    /// CR09 Maximum Scan Line (bits 4:0; bit 7: scan doubling).
    pub const MAX_SCAN_LINE: usize = 0x09;
    /// CR0A Cursor Start (bits 4:0: its first scan line; bit 5: cursor off).
    pub const CURSOR_START: usize = 0x0A;
    pub const CURSOR_OFF: u8 = 1 << 5;
    /// CR0B Cursor End (bits 4:0: its last scan line).
    pub const CURSOR_END: usize = 0x0B;
    /// CR0C/CR0D Start Address High/Low.
    pub const START_HIGH: usize = 0x0C;
    pub const START_LOW: usize = 0x0D;
    /// CR0E/CR0F Cursor Location High/Low (in the start address's units).
    pub const CURSOR_HIGH: usize = 0x0E;
    pub const CURSOR_LOW: usize = 0x0F;
    /// CR11 Vertical Retrace End; bit 7 protects CR00-CR07.
    pub const V_RETRACE_END: usize = 0x11;
    pub const PROTECT: u8 = 1 << 7;
    /// CR12 Vertical Display End (bits 7:0).
    pub const V_DISPLAY_END: usize = 0x12;
    /// CR13 Offset: the distance between two character rows / scan lines.
    pub const OFFSET: usize = 0x13;
}

/// Graphics controller register indexes.
pub mod gc {
    pub const SET_RESET: usize = 0;
    pub const ENABLE_SET_RESET: usize = 1;
    pub const COLOR_COMPARE: usize = 2;
    /// GR03: rotate count (2:0) and logical operation (4:3).
    pub const DATA_ROTATE: usize = 3;
    pub const READ_MAP_SELECT: usize = 4;
    /// GR05: write mode (1:0), read mode (3), host odd/even (4), shift 256 (6).
    pub const MODE: usize = 5;
    /// GR06: alphanumeric disable (0), chain odd/even (1), memory map (3:2).
    pub const MISC: usize = 6;
    pub const COLOR_DONT_CARE: usize = 7;
    pub const BIT_MASK: usize = 8;
    /// GR05 bit 4: host odd/even read addressing.
    pub const MODE_ODD_EVEN: u8 = 1 << 4;
    /// GR05 bit 6: 256-color shift mode.
    pub const MODE_SHIFT256: u8 = 1 << 6;
    /// GR06 bit 0: graphics (not alphanumeric) mode.
    pub const MISC_GRAPHICS: u8 = 1 << 0;
}

/// Attribute controller register indexes.
pub mod ar {
    /// AR10 Attribute Mode Control.
    pub const MODE: usize = 0x10;
    /// AR10 bit 3: attribute bit 7 blinks the character rather than
    /// selecting a bright background.
    pub const MODE_BLINK: u8 = 1 << 3;
    /// AR14 Color Select.
    pub const COLOR_SELECT: usize = 0x14;
    /// The address register's Palette Address Source bit.
    pub const PAS: u8 = 1 << 5;
}

/// Miscellaneous output bit 0: I/O address select (1: CRTC at 0x3D4, input
/// status 1 at 0x3DA; 0: at 0x3B4 and 0x3BA).
pub const MISC_IO_COLOR: u8 = 1 << 0;

/// Input status 1: bit 0 display disabled (in blanking), bit 3 vertical retrace.
pub const ST1_DISPLAY_DISABLED: u8 = 1 << 0;
pub const ST1_V_RETRACE: u8 = 1 << 3;

/// What a register write did to the picture (for the display's dirty
/// record, `dirty.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Shown {
    /// Nothing the screen shows: an index, a CPU access setting (map
    /// mask, write mode, bit mask, ...), the same value again.
    Same,
    /// The text cursor's location or scan lines.
    Cursor,
    /// Something every row may show: the mode, the CRTC timing, start
    /// address or offset, the attribute palette, the DAC.
    Picture,
}

/// The register file.
#[derive(Clone)]
pub struct VgaRegs {
    pub misc: u8,
    pub seq_index: u8,
    pub seq: [u8; SEQ_COUNT],
    pub crtc_index: u8,
    pub crtc: [u8; CRTC_COUNT],
    pub gc_index: u8,
    pub gc: [u8; GC_COUNT],
    /// The attribute address register (index in 4:0, PAS in bit 5).
    pub ar_index: u8,
    /// The flip-flop: the next write to 0x3C0 is data (not an index).
    pub ar_data_next: bool,
    pub ar: [u8; AR_COUNT],
    pub feature: u8,
    /// Port 0x3C3, video subsystem enable (bit 0).
    pub enable: u8,
    /// Input status 1 as last read; retrace and blanking toggle on each read.
    pub st1: u8,
    pub dac: Dac,
}

impl Default for VgaRegs {
    fn default() -> Self {
        VgaRegs {
            misc: 0,
            seq_index: 0,
            seq: [0; SEQ_COUNT],
            crtc_index: 0,
            crtc: [0; CRTC_COUNT],
            gc_index: 0,
            gc: [0; GC_COUNT],
            ar_index: 0,
            ar_data_next: false,
            ar: [0; AR_COUNT],
            feature: 0,
            enable: 1,
            st1: 0,
            dac: Dac::default(),
        }
    }
}

impl VgaRegs {
    /// Whether `port` is one of the two CRTC / input status 1 port sets
    /// the misc output register does not select (those do not decode).
    fn other_io_set(&self, port: u16) -> bool {
        let mono = matches!(port, 0x3B4 | 0x3B5 | 0x3BA);
        let color = matches!(port, 0x3D4 | 0x3D5 | 0x3DA);
        if self.misc & MISC_IO_COLOR != 0 {
            mono
        } else {
            color
        }
    }

    /// A byte read from `port` (0x3B0-0x3DF); 0xFF where nothing decodes.
    pub fn read(&mut self, port: u16) -> u8 {
        if self.other_io_set(port) {
            return 0xFF;
        }
        match port {
            0x3C0 => self.ar_index,
            0x3C1 => self
                .ar
                .get(usize::from(self.ar_index & 0x1F))
                .copied()
                .unwrap_or(0),
            // Input status 0: no switch sense, no pending vertical interrupt.
            0x3C2 => 0,
            0x3C3 => self.enable,
            0x3C4 => self.seq_index,
            0x3C5 => self
                .seq
                .get(usize::from(self.seq_index))
                .copied()
                .unwrap_or(0),
            0x3C6..=0x3C9 => self.dac.read(port),
            0x3CA => self.feature,
            0x3CC => self.misc,
            0x3CE => self.gc_index,
            0x3CF => self
                .gc
                .get(usize::from(self.gc_index))
                .copied()
                .unwrap_or(0),
            0x3B4 | 0x3D4 => self.crtc_index,
            0x3B5 | 0x3D5 => self
                .crtc
                .get(usize::from(self.crtc_index))
                .copied()
                .unwrap_or(0),
            0x3BA | 0x3DA => {
                // Reading input status 1 resets the attribute flip-flop
                // to "index next"; retrace is seen to come and go.
                self.ar_data_next = false;
                self.st1 ^= ST1_V_RETRACE | ST1_DISPLAY_DISABLED;
                self.st1
            }
            _ => 0xFF,
        }
    }

    /// A byte written to `port` (0x3B0-0x3DF), and what it changed on
    /// the screen. Of the graphics controller only GR05's 256-color shift
    /// and GR06's graphics bit are seen by the screen (`screen.rs`); the
    /// rest of it, and the map mask, steer CPU accesses only.
    pub fn write(&mut self, port: u16, v: u8) -> Shown {
        if self.other_io_set(port) {
            return Shown::Same;
        }
        let changed = |old: u8, new: u8, mask: u8| {
            if (old ^ new) & mask != 0 {
                Shown::Picture
            } else {
                Shown::Same
            }
        };
        match port {
            0x3C0 => {
                let data = self.ar_data_next;
                self.ar_data_next = !data;
                if !data {
                    self.ar_index = v & (0x1F | ar::PAS);
                    return Shown::Same;
                }
                match self.ar.get_mut(usize::from(self.ar_index & 0x1F)) {
                    Some(r) => changed(core::mem::replace(r, v), v, 0xFF),
                    None => Shown::Same,
                }
            }
            0x3C2 => changed(core::mem::replace(&mut self.misc, v), v, 0xFF),
            0x3C3 => changed(core::mem::replace(&mut self.enable, v & 1), v & 1, 1),
            0x3C4 => {
                self.seq_index = v & 0x07;
                Shown::Same
            }
            0x3C5 => {
                let i = usize::from(self.seq_index);
                match self.seq.get_mut(i) {
                    Some(r) => {
                        let old = core::mem::replace(r, v);
                        changed(old, v, if i == seq::MAP_MASK { 0 } else { 0xFF })
                    }
                    None => Shown::Same,
                }
            }
            0x3C6..=0x3C9 => {
                if self.dac.write(port, v) {
                    Shown::Picture
                } else {
                    Shown::Same
                }
            }
            0x3CE => {
                self.gc_index = v & 0x0F;
                Shown::Same
            }
            0x3CF => {
                let i = usize::from(self.gc_index);
                let seen = match i {
                    gc::MODE => gc::MODE_SHIFT256,
                    gc::MISC => gc::MISC_GRAPHICS,
                    _ => 0,
                };
                match self.gc.get_mut(i) {
                    Some(r) => changed(core::mem::replace(r, v), v, seen),
                    None => Shown::Same,
                }
            }
            0x3B4 | 0x3D4 => {
                self.crtc_index = v & 0x3F;
                Shown::Same
            }
            0x3B5 | 0x3D5 => {
                let i = usize::from(self.crtc_index);
                let old = self.crtc.get(i).copied();
                self.write_crtc(v);
                if old == self.crtc.get(i).copied() {
                    Shown::Same
                } else if matches!(
                    i,
                    crtc::CURSOR_START | crtc::CURSOR_END | crtc::CURSOR_HIGH | crtc::CURSOR_LOW
                ) {
                    Shown::Cursor
                } else {
                    Shown::Picture
                }
            }
            0x3BA | 0x3DA => {
                self.feature = v;
                Shown::Same
            }
            _ => Shown::Same,
        }
    }

    /// CR11 bit 7 write-protects CR00-CR07, except CR07 bit 4 (line
    /// compare bit 8) (IBM VGA Technical Reference, CRT Controller,
    /// Vertical Retrace End register).
    fn write_crtc(&mut self, v: u8) {
        let i = usize::from(self.crtc_index);
        let protected = self.crtc[crtc::V_RETRACE_END] & crtc::PROTECT != 0;
        match i {
            0..=6 if protected => {}
            crtc::OVERFLOW if protected => {
                self.crtc[i] = (self.crtc[i] & !0x10) | (v & 0x10);
            }
            _ => {
                if let Some(r) = self.crtc.get_mut(i) {
                    *r = v;
                }
            }
        }
    }

    /// The legacy window's memory map select (GR06 bits 3:2): the window's
    /// start and length within 0xA0000-0xBFFFF, as an offset from 0xA0000.
    pub fn window(&self) -> (u64, u64) {
        match (self.gc[gc::MISC] >> 2) & 3 {
            0 => (0, 0x2_0000),
            1 => (0, 0x1_0000),
            2 => (0x1_0000, 0x8000),
            _ => (0x1_8000, 0x8000),
        }
    }

    /// Whether the display is in a graphics mode (GR06 bit 0).
    pub fn graphics(&self) -> bool {
        self.gc[gc::MISC] & gc::MISC_GRAPHICS != 0
    }

    /// The CRTC start address (CR0C:CR0D).
    pub fn start_address(&self) -> u16 {
        u16::from_be_bytes([self.crtc[crtc::START_HIGH], self.crtc[crtc::START_LOW]])
    }

    /// Displayed scan lines: CR12 with CR07 bits 1 and 6 as bits 8 and 9, plus one.
    pub fn display_lines(&self) -> u32 {
        let o = self.crtc[crtc::OVERFLOW];
        (u32::from(self.crtc[crtc::V_DISPLAY_END])
            | u32::from(o >> 1 & 1) << 8
            | u32::from(o >> 6 & 1) << 9)
            + 1
    }

    /// Character clocks per displayed line (CR01 + 1).
    pub fn display_chars(&self) -> u32 {
        u32::from(self.crtc[crtc::H_DISPLAY_END]) + 1
    }

    /// Scan lines per character row (CR09 bits 4:0, plus one).
    pub fn char_height(&self) -> u32 {
        u32::from(self.crtc[crtc::MAX_SCAN_LINE] & 0x1F) + 1
    }

    /// The DAC entry a 4-bit attribute color shows through the attribute
    /// controller's palette (AR00-AR0F) and color select (AR14 bits 3:2 as
    /// bits 7:6 of the DAC index).
    pub fn palette(&self, color: u8) -> u8 {
        (self.ar[usize::from(color & 0x0F)] & 0x3F) | (self.ar[ar::COLOR_SELECT] & 0x0C) << 4
    }
}
