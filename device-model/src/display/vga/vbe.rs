//! The Bochs VBE "DISPI" interface (Bochs's `vbe.h` and QEMU's stdvga
//! documentation; Linux's `bochs` DRM driver and SeaBIOS's `bochsvga.c`
//! program it): an index register (port 0x1CE) and a 16-bit data register
//! (port 0x1CF), or the same registers at 0x500 + 2 * index in the MMIO BAR.
//!
//! | index | register | |
//! |---|---|---|
//! | 0 | ID | 0xB0C0-0xB0C5; reads back the version last accepted |
//! | 1, 2 | XRES, YRES | at most [`MAX_XRES`] x [`MAX_YRES`]; XRES a multiple of 8 |
//! | 3 | BPP | 4, 8, 15, 16, 24 or 32 (0 means 8) |
//! | 4 | ENABLE | bit 0 enabled, 1 GETCAPS, 5 8-bit DAC, 6 LFB, 7 NOCLEARMEM |
//! | 5 | BANK | the 64 KiB bank at 0xA0000 |
//! | 6, 7 | VIRT_WIDTH, VIRT_HEIGHT | the virtual screen |
//! | 8, 9 | X_OFFSET, Y_OFFSET | where the display starts in it |
//! | 0xA | VIDEO_MEMORY_64K | read-only: video memory in 64 KiB units |
//!
//! Bounds (what Bochs's DISPI does): a mode whose visible screen does not
//! fit in video memory is not enabled; a bank or display offset past video
//! memory is refused (the register keeps its value); a virtual height is
//! cut to what fits. While GETCAPS is set, XRES, YRES and BPP read as the
//! maxima.

pub const ID: u16 = 0;
pub const XRES: u16 = 1;
pub const YRES: u16 = 2;
pub const BPP: u16 = 3;
pub const ENABLE: u16 = 4;
pub const BANK: u16 = 5;
pub const VIRT_WIDTH: u16 = 6;
pub const VIRT_HEIGHT: u16 = 7;
pub const X_OFFSET: u16 = 8;
pub const Y_OFFSET: u16 = 9;
pub const VIDEO_MEMORY_64K: u16 = 0xA;
/// Registers the interface has.
pub const COUNT: usize = 0xB;

pub const ID0: u16 = 0xB0C0;
pub const ID5: u16 = 0xB0C5;
pub const ENABLED: u16 = 1 << 0;
pub const GETCAPS: u16 = 1 << 1;
pub const DAC_8BIT: u16 = 1 << 5;
pub const LFB_ENABLED: u16 = 1 << 6;
pub const NOCLEARMEM: u16 = 1 << 7;
/// The largest mode QEMU's stdvga offers.
pub const MAX_XRES: u16 = 16000;
pub const MAX_YRES: u16 = 12000;
pub const MAX_BPP: u16 = 32;
/// The banked window's size and granularity.
pub const BANK_SIZE: u64 = 0x1_0000;

/// What a write asks the card to do besides storing the register.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Effect {
    None,
    /// The mode was enabled: clear `len` bytes of video memory (unless
    /// NOCLEARMEM) and set the VGA registers up for a linear mode.
    Enabled {
        clear: u64,
    },
    Disabled,
}

/// The DISPI registers.
#[derive(Clone)]
pub struct Dispi {
    pub index: u16,
    regs: [u16; COUNT],
    vram_size: u64,
}

/// Bytes per pixel of a depth (4 bpp: planar, counted as one byte per
/// eight pixels per plane, which the LFB does not show).
pub fn bytes_per_pixel(bpp: u16) -> u64 {
    match bpp {
        15 | 16 => 2,
        24 => 3,
        32 => 4,
        _ => 1,
    }
}

impl Dispi {
    pub fn new(vram_size: u64) -> Self {
        let mut regs = [0; COUNT];
        regs[usize::from(ID)] = ID5;
        regs[usize::from(BPP)] = 8;
        regs[usize::from(XRES)] = 640;
        regs[usize::from(YRES)] = 480;
        regs[usize::from(VIDEO_MEMORY_64K)] = (vram_size / BANK_SIZE).min(0xFFFF) as u16;
        Dispi {
            index: 0,
            regs,
            vram_size,
        }
    }

    pub fn reg(&self, i: u16) -> u16 {
        self.regs.get(usize::from(i)).copied().unwrap_or(0)
    }

    pub fn enabled(&self) -> bool {
        self.reg(ENABLE) & ENABLED != 0
    }

    /// Bytes from one line of the virtual screen to the next.
    pub fn line_bytes(&self) -> u64 {
        let w = u64::from(self.reg(VIRT_WIDTH));
        if self.reg(BPP) == 4 {
            w / 2
        } else {
            w * bytes_per_pixel(self.reg(BPP))
        }
    }

    /// Where the display starts in video memory.
    pub fn start(&self) -> u64 {
        self.offset_of(self.reg(X_OFFSET), self.reg(Y_OFFSET))
    }

    fn offset_of(&self, x: u16, y: u16) -> u64 {
        u64::from(y) * self.line_bytes() + u64::from(x) * bytes_per_pixel(self.reg(BPP))
    }

    /// The banked window's start in video memory.
    pub fn bank_offset(&self) -> u64 {
        u64::from(self.reg(BANK)) * BANK_SIZE
    }

    /// A read of register `index`.
    pub fn read(&self, index: u16) -> u16 {
        if self.reg(ENABLE) & GETCAPS != 0 {
            match index {
                XRES => return MAX_XRES,
                YRES => return MAX_YRES,
                BPP => return MAX_BPP,
                _ => {}
            }
        }
        self.reg(index)
    }

    /// A write of `v` to register `index`.
    pub fn write(&mut self, index: u16, v: u16) -> Effect {
        let i = usize::from(index);
        match index {
            ID if (ID0..=ID5).contains(&v) => self.regs[i] = v,
            XRES if v <= MAX_XRES && v.is_multiple_of(8) => self.regs[i] = v,
            YRES if v <= MAX_YRES => self.regs[i] = v,
            BPP => {
                let v = if v == 0 { 8 } else { v };
                if matches!(v, 4 | 8 | 15 | 16 | 24 | 32) {
                    self.regs[i] = v;
                }
            }
            ENABLE => return self.write_enable(v),
            BANK if u64::from(v) * BANK_SIZE < self.vram_size => self.regs[i] = v,
            VIRT_WIDTH => {
                let old = self.regs[i];
                self.regs[i] = v.max(self.reg(XRES));
                if !self.fits_virtual() {
                    self.regs[i] = old;
                } else {
                    self.fit_virtual_height();
                }
            }
            VIRT_HEIGHT => {
                self.regs[i] = v.max(self.reg(YRES));
                self.fit_virtual_height();
            }
            X_OFFSET | Y_OFFSET => {
                let (x, y) = if index == X_OFFSET {
                    (v, self.reg(Y_OFFSET))
                } else {
                    (self.reg(X_OFFSET), v)
                };
                if self.offset_of(x, y) < self.vram_size {
                    self.regs[i] = v;
                }
            }
            _ => {}
        }
        Effect::None
    }

    /// Whether one line of the virtual screen and the visible lines fit.
    fn fits_virtual(&self) -> bool {
        self.line_bytes() * u64::from(self.reg(YRES).max(1)) <= self.vram_size
    }

    /// Cuts the virtual height to the lines video memory holds.
    fn fit_virtual_height(&mut self) {
        let line = self.line_bytes().max(1);
        let most = (self.vram_size / line).min(u64::from(u16::MAX)) as u16;
        let h = &mut self.regs[usize::from(VIRT_HEIGHT)];
        *h = (*h).min(most);
    }

    fn write_enable(&mut self, v: u16) -> Effect {
        let was = self.enabled();
        let i = usize::from(ENABLE);
        if v & ENABLED == 0 {
            self.regs[i] = v;
            return if was { Effect::Disabled } else { Effect::None };
        }
        if was {
            // Already on: only the flags change.
            self.regs[i] = v;
            return Effect::None;
        }
        let (x, y) = (self.reg(XRES), self.reg(YRES));
        let bpp = self.reg(BPP);
        let visible = u64::from(x) * u64::from(y) * u64::from(bpp) / 8;
        if x == 0 || y == 0 || visible > self.vram_size {
            // Bochs refuses the mode; the card stays as it was.
            self.regs[i] = v & !ENABLED;
            return Effect::None;
        }
        self.regs[i] = v;
        self.regs[usize::from(VIRT_WIDTH)] = x;
        self.regs[usize::from(VIRT_HEIGHT)] = y;
        self.regs[usize::from(X_OFFSET)] = 0;
        self.regs[usize::from(Y_OFFSET)] = 0;
        self.regs[usize::from(BANK)] = 0;
        self.fit_virtual_height();
        let clear = if v & NOCLEARMEM != 0 {
            0
        } else {
            (self.line_bytes() * u64::from(y)).min(self.vram_size)
        };
        Effect::Enabled { clear }
    }
}
