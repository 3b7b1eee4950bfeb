//! The VGA DAC (IBM VGA Technical Reference, "Video DAC"; FreeVGA "DAC
//! Operation"): 256 entries of three 6-bit components, written through the
//! write index (0x3C8) and read through the read index (0x3C7), three data
//! accesses (0x3C9, red, green, blue) per entry, after which the index
//! moves to the next entry (wrapping at 256). Port 0x3C6 is the pixel mask;
//! reading 0x3C7 gives the DAC state (3 after a read index was set, 0
//! after a write index).

/// The DAC.
#[derive(Clone)]
pub struct Dac {
    pub palette: [[u8; 3]; 256],
    pub pixel_mask: u8,
    write_index: u8,
    read_index: u8,
    /// Which component of the entry the next data access is.
    write_component: u8,
    read_component: u8,
    /// Components of the entry being written, stored once all three came.
    pending: [u8; 3],
    reading: bool,
    /// VBE's 8-bit DAC (DISPI ENABLE bit 5): components keep all 8 bits.
    pub eight_bit: bool,
}

impl Default for Dac {
    fn default() -> Self {
        Dac {
            palette: [[0; 3]; 256],
            pixel_mask: 0xFF,
            write_index: 0,
            read_index: 0,
            write_component: 0,
            read_component: 0,
            pending: [0; 3],
            reading: false,
            eight_bit: false,
        }
    }
}

impl Dac {
    pub fn read(&mut self, port: u16) -> u8 {
        match port {
            0x3C6 => self.pixel_mask,
            0x3C7 => {
                if self.reading {
                    3
                } else {
                    0
                }
            }
            0x3C8 => self.write_index,
            _ => {
                let v =
                    self.palette[usize::from(self.read_index)][usize::from(self.read_component)];
                self.read_component += 1;
                if self.read_component == 3 {
                    self.read_component = 0;
                    self.read_index = self.read_index.wrapping_add(1);
                }
                v
            }
        }
    }

    /// A write to a DAC port; true if it changed a color the screen
    /// shows (an entry, once its third component came, or the pixel mask).
    pub fn write(&mut self, port: u16, v: u8) -> bool {
        match port {
            0x3C6 => return core::mem::replace(&mut self.pixel_mask, v) != v,
            0x3C7 => {
                self.read_index = v;
                self.read_component = 0;
                self.reading = true;
            }
            0x3C8 => {
                self.write_index = v;
                self.write_component = 0;
                self.reading = false;
            }
            _ => {
                let v = if self.eight_bit { v } else { v & 0x3F };
                self.pending[usize::from(self.write_component)] = v;
                self.write_component += 1;
                if self.write_component == 3 {
                    self.write_component = 0;
                    let entry = &mut self.palette[usize::from(self.write_index)];
                    let old = core::mem::replace(entry, self.pending);
                    self.write_index = self.write_index.wrapping_add(1);
                    return old != self.pending;
                }
            }
        }
        false
    }

    /// Entry `i` as 8-bit red, green and blue.
    pub fn rgb(&self, i: u8) -> u32 {
        let [r, g, b] = self.palette[usize::from(i & self.pixel_mask)];
        let c = |v: u8| {
            if self.eight_bit {
                u32::from(v)
            } else {
                u32::from(v << 2 | v >> 4)
            }
        };
        c(r) << 16 | c(g) << 8 | c(b)
    }
}
