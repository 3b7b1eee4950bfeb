//! The legacy window's view of video memory (IBM VGA Technical Reference,
//! "Graphics Controller" and "Sequencer"; FreeVGA "VGA Memory
//! Organization", "Graphics Controller Write/Read Modes").
//!
//! Video memory is four planes interleaved byte by byte: byte `o` of plane
//! `p` is byte `4 * o + p` of the card's memory. So chain-4 (mode 13h), in
//! which address bits 1:0 select the plane, is the memory seen linearly,
//! the same bytes the linear framebuffer and VBE's banks show.
//!
//! A CPU access at window offset `a` is, by the sequencer's memory mode
//! (SR04) and the graphics controller's mode (GR05):
//! - chain-4: plane `a & 3`, written if the map mask (SR02) enables it;
//! - odd/even (text modes): plane `a & 1` (reads: GR04 bit 1 too), at
//!   plane offset `a & !1`;
//! - planar: all four planes at offset `a`; a read loads the four latches
//!   and returns, in read mode 0, the plane GR04 selects, in read mode 1
//!   the color compare (GR02, GR07) of the latches; a write goes through
//!   write modes 0-3 (rotate and logical operation GR03, set/reset GR00
//!   and GR01, bit mask GR08, latches) to the planes SR02 enables.

use guest_memory::GuestMemory;

use super::regs::{gc, seq, VgaRegs};

/// Bytes of one plane the planar and odd/even layouts address (256 KiB
/// of VGA memory in four planes); plane offsets wrap there.
pub const PLANE_SIZE: u64 = 0x1_0000;

/// A byte's bits all set or all clear, as bit 0 of `v` says.
fn expand(v: u8) -> u8 {
    if v & 1 != 0 {
        0xFF
    } else {
        0
    }
}

/// The latches and the memory logic around them.
#[derive(Clone, Copy, Default)]
pub struct Planar {
    pub latches: [u8; 4],
}

fn plane_byte(vram: &GuestMemory, offset: u64, plane: usize) -> u8 {
    let at = (offset % PLANE_SIZE) * 4 + plane as u64;
    vram.read_obj::<u8>(at).unwrap_or(0xFF)
}

fn set_plane_byte(vram: &GuestMemory, offset: u64, plane: usize, v: u8) {
    let at = (offset % PLANE_SIZE) * 4 + plane as u64;
    let _ = vram.write_obj::<u8>(at, v);
}

impl Planar {
    /// A CPU read at offset `a` inside the window; `linear` is the bank
    /// offset of VBE's banked view (chain-4 bytes then come from there).
    pub fn read(&mut self, regs: &VgaRegs, vram: &GuestMemory, a: u64, linear: u64) -> u8 {
        let sr4 = regs.seq[seq::MEMORY_MODE];
        let gr5 = regs.gc[gc::MODE];
        if sr4 & seq::MM_CHAIN4 != 0 {
            return vram.read_obj::<u8>(linear + a).unwrap_or(0xFF);
        }
        if gr5 & gc::MODE_ODD_EVEN != 0 {
            let plane = usize::from(regs.gc[gc::READ_MAP_SELECT] & 2) | (a & 1) as usize;
            return plane_byte(vram, a & !1, plane);
        }
        for (p, latch) in self.latches.iter_mut().enumerate() {
            *latch = plane_byte(vram, a, p);
        }
        if gr5 & (1 << 3) == 0 {
            return self.latches[usize::from(regs.gc[gc::READ_MAP_SELECT] & 3)];
        }
        // Read mode 1: a bit is 1 where every plane GR07 cares about has
        // the color GR02 names.
        let compare = regs.gc[gc::COLOR_COMPARE];
        let care = regs.gc[gc::COLOR_DONT_CARE];
        let mut differ = 0u8;
        for (p, &latch) in self.latches.iter().enumerate() {
            differ |= (latch ^ expand(compare >> p)) & expand(care >> p);
        }
        !differ
    }

    /// A CPU write of `v` at offset `a` inside the window. Returns the
    /// bytes of video memory it reached, as an offset and a length (the
    /// smallest range holding the planes the map mask enables), for the
    /// display's dirty record; `None` if the map mask let nothing through.
    pub fn write(
        &mut self,
        regs: &VgaRegs,
        vram: &GuestMemory,
        a: u64,
        linear: u64,
        v: u8,
    ) -> Option<(u64, u64)> {
        let sr4 = regs.seq[seq::MEMORY_MODE];
        let map_mask = regs.seq[seq::MAP_MASK] & 0x0F;
        if sr4 & seq::MM_CHAIN4 != 0 {
            let at = linear + a;
            if map_mask >> (at & 3) & 1 == 0 {
                return None;
            }
            let _ = vram.write_obj::<u8>(at, v);
            return Some((at, 1));
        }
        if sr4 & seq::MM_ODD_EVEN_DISABLE == 0 {
            let plane = (a & 1) as usize;
            if map_mask >> plane & 1 == 0 {
                return None;
            }
            set_plane_byte(vram, a & !1, plane, v);
            return Some((((a & !1) % PLANE_SIZE) * 4 + plane as u64, 1));
        }
        if map_mask == 0 {
            return None;
        }
        let planes = self.planar_data(regs, v);
        for (p, &b) in planes.iter().enumerate() {
            if map_mask >> p & 1 != 0 {
                set_plane_byte(vram, a, p, b);
            }
        }
        let (lo, hi) = (map_mask.trailing_zeros(), 7 - map_mask.leading_zeros());
        Some(((a % PLANE_SIZE) * 4 + u64::from(lo), u64::from(hi - lo + 1)))
    }

    /// The four bytes a planar write of `v` stores, by the write mode (GR05 bits 1:0).
    pub fn planar_data(&self, regs: &VgaRegs, v: u8) -> [u8; 4] {
        let g = &regs.gc;
        let rotated = v.rotate_right(u32::from(g[gc::DATA_ROTATE] & 7));
        let set_reset = g[gc::SET_RESET];
        let mut bit_mask = g[gc::BIT_MASK];
        let mut data = [0u8; 4];
        match g[gc::MODE] & 3 {
            0 => {
                let enable = g[gc::ENABLE_SET_RESET];
                for (p, d) in data.iter_mut().enumerate() {
                    *d = if enable >> p & 1 != 0 {
                        expand(set_reset >> p)
                    } else {
                        rotated
                    };
                }
            }
            // Write mode 1: the latches, as they are.
            1 => return self.latches,
            2 => {
                for (p, d) in data.iter_mut().enumerate() {
                    *d = expand(v >> p);
                }
            }
            _ => {
                // Write mode 3: the rotated data masks the bit mask; the
                // color comes from set/reset.
                bit_mask &= rotated;
                for (p, d) in data.iter_mut().enumerate() {
                    *d = expand(set_reset >> p);
                }
            }
        }
        for (p, d) in data.iter_mut().enumerate() {
            let latch = self.latches[p];
            let alu = match (g[gc::DATA_ROTATE] >> 3) & 3 {
                0 => *d,
                1 => *d & latch,
                2 => *d | latch,
                _ => *d ^ latch,
            };
            *d = (alu & bit_mask) | (latch & !bit_mask);
        }
        data
    }
}
