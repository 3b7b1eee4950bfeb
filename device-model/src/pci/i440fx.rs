//! The Intel 82441FX PCI and memory controller (PMC) of the i440FX chipset,
//! the host bridge at 00:00.0 of QEMU's `-machine pc`: `8086:1237` rev 02.
//!
//! SeaBIOS identifies the machine by this ID, then drives two registers:
//! - PAM0-PAM6 (`0x59-0x5F`, datasheet 3.2.18): for each segment of
//!   `0xC0000-0xFFFFF`, whether reads and writes go to DRAM or to the PCI
//!   bus (where the BIOS ROM answers). SeaBIOS makes the segments
//!   read/write to copy itself into RAM ("shadowing"), then read-only.
//! - SMRAM (`0x72`, datasheet 3.2.24): whether `0xA0000-0xBFFFF` shows RAM
//!   or the PCI bus (legacy VGA) to non-SMM accesses.
//!
//! Keel applies both in the guest's physical address space: the device only
//! keeps the register state, answers [`I440fx::pam_segments`] and
//! [`I440fx::smram_open`], and reports each change as a [`ConfigChange`].

use alloc::vec::Vec;

use super::config_space::ConfigSpace;
use super::{ConfigChange, PciFunction};

/// PAM0, the first Programmable Attribute Map register.
pub const PAM0: u8 = 0x59;
/// The SMRAM control register.
pub const SMRAM: u8 = 0x72;

/// SMRAM bits (datasheet 3.2.24).
const SMRAM_D_OPEN: u8 = 1 << 6;
const SMRAM_D_CLS: u8 = 1 << 5;
const SMRAM_D_LCK: u8 = 1 << 4;
const SMRAM_G_SMRAME: u8 = 1 << 3;
/// C_BASE_SEG: hardwired to 010, "SMRAM at 0xA0000".
const SMRAM_C_BASE_SEG: u8 = 0b010;

/// Where one PAM segment's reads and writes go (datasheet 3.2.18, RE/WE bits).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PamMode {
    /// RE=0 WE=0: reads and writes go to the PCI bus (the ROM; writes are lost).
    Disabled,
    /// RE=1 WE=0: reads from DRAM, writes to the PCI bus (lost): shadowed ROM.
    ReadOnly,
    /// RE=0 WE=1: reads from the PCI bus (the ROM), writes to DRAM: used to copy ROM to RAM.
    WriteOnly,
    /// RE=1 WE=1: ordinary RAM.
    ReadWrite,
}

impl PamMode {
    fn from_bits(bits: u8) -> Self {
        match bits & 3 {
            0 => PamMode::Disabled,
            1 => PamMode::ReadOnly,
            2 => PamMode::WriteOnly,
            _ => PamMode::ReadWrite,
        }
    }

    /// Whether reads come from DRAM (else from the ROM / PCI bus).
    pub fn reads_ram(self) -> bool {
        matches!(self, PamMode::ReadOnly | PamMode::ReadWrite)
    }

    /// Whether writes go to DRAM (else they are dropped).
    pub fn writes_ram(self) -> bool {
        matches!(self, PamMode::WriteOnly | PamMode::ReadWrite)
    }
}

/// One PAM segment: `[base, base + len)` and its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PamSegment {
    pub base: u32,
    pub len: u32,
    pub mode: PamMode,
}

/// The 13 PAM segments: PAM0 bits 5:4 cover `0xF0000-0xFFFFF` (64 KiB);
/// PAM1-PAM6 cover `0xC0000-0xEFFFF` in 16 KiB halves (bits 1:0 the lower, 5:4 the upper).
pub const PAM_SEGMENTS: usize = 13;

/// The i440FX host bridge function.
pub struct I440fx {
    cs: ConfigSpace,
}

impl Default for I440fx {
    fn default() -> Self {
        Self::new()
    }
}

impl I440fx {
    pub const VENDOR_ID: u16 = 0x8086;
    pub const DEVICE_ID: u16 = 0x1237;

    /// The host bridge at power-on: every PAM segment disabled (the BIOS ROM
    /// answers), SMRAM closed.
    pub fn new() -> Self {
        let mut cs = ConfigSpace::new(Self::VENDOR_ID, Self::DEVICE_ID, 0x02, 0x06_00_00, 0);
        // Status: fast back-to-back capable, DEVSEL medium (datasheet 3.2.4).
        cs.set_u16(0x06, 0x0280);
        cs.set_wmask_u8(PAM0, 0x30);
        for i in 1..7 {
            cs.set_wmask_u8(PAM0 + i, 0x33);
        }
        // SMRAM is written through `write_smram`, which knows D_LCK.
        cs.set_u8(SMRAM, SMRAM_C_BASE_SEG);
        I440fx { cs }
    }

    /// The current mode of every PAM segment, in address order.
    pub fn pam_segments(&self) -> [PamSegment; PAM_SEGMENTS] {
        core::array::from_fn(|i| {
            if i == 12 {
                return PamSegment {
                    base: 0xF0000,
                    len: 0x10000,
                    mode: PamMode::from_bits(self.cs.u8(PAM0) >> 4),
                };
            }
            // Segment i (16 KiB) is half i % 2 of PAM(1 + i / 2).
            let reg = self.cs.u8(PAM0 + 1 + (i / 2) as u8);
            let bits = if i % 2 == 0 { reg } else { reg >> 4 };
            PamSegment {
                base: 0xC0000 + i as u32 * 0x4000,
                len: 0x4000,
                mode: PamMode::from_bits(bits),
            }
        })
    }

    /// Whether non-SMM accesses to `0xA0000-0xBFFFF` see SMRAM (RAM):
    /// SMRAM enabled (`G_SMRAME`) and opened (`D_OPEN`). Otherwise they go
    /// to the PCI bus (legacy VGA).
    pub fn smram_open(&self) -> bool {
        let v = self.cs.u8(SMRAM);
        v & SMRAM_G_SMRAME != 0 && v & SMRAM_D_OPEN != 0
    }

    /// Datasheet 3.2.24: once D_LCK is set, D_OPEN reads 0 and only D_CLS
    /// stays writable until the next reset.
    fn write_smram(&mut self, v: u8) {
        let old = self.cs.u8(SMRAM);
        let new = if old & SMRAM_D_LCK != 0 {
            (old & !SMRAM_D_CLS) | (v & SMRAM_D_CLS)
        } else {
            let mut n = v & (SMRAM_D_OPEN | SMRAM_D_CLS | SMRAM_D_LCK | SMRAM_G_SMRAME);
            if n & SMRAM_D_LCK != 0 {
                n &= !SMRAM_D_OPEN;
            }
            n | SMRAM_C_BASE_SEG
        };
        self.cs.poke_u8(SMRAM, new);
    }

    fn report(
        &self,
        before: &[PamSegment; PAM_SEGMENTS],
        smram_before: bool,
        changes: &mut Vec<ConfigChange>,
    ) {
        for (old, new) in before.iter().zip(self.pam_segments()) {
            if *old != new {
                changes.push(ConfigChange::Pam(new));
            }
        }
        let open = self.smram_open();
        if open != smram_before {
            changes.push(ConfigChange::Smram { open });
        }
    }
}

impl PciFunction for I440fx {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.cs.read(offset, data);
    }

    fn config_write(&mut self, offset: u8, data: &[u8], changes: &mut Vec<ConfigChange>) {
        let (pam, smram) = (self.pam_segments(), self.smram_open());
        self.cs.write(offset, data, changes);
        if let Some(i) = SMRAM.checked_sub(offset).map(usize::from) {
            if let Some(&v) = data.get(i) {
                self.write_smram(v);
            }
        }
        self.report(&pam, smram, changes);
    }

    fn reset(&mut self, changes: &mut Vec<ConfigChange>) {
        let (pam, smram) = (self.pam_segments(), self.smram_open());
        self.cs.reset(changes);
        self.report(&pam, smram, changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn write(d: &mut I440fx, off: u8, data: &[u8]) -> Vec<ConfigChange> {
        let mut ch = Vec::new();
        d.config_write(off, data, &mut ch);
        ch
    }

    fn read32(d: &mut I440fx, off: u8) -> u32 {
        let mut b = [0u8; 4];
        d.config_read(off, &mut b);
        u32::from_le_bytes(b)
    }

    #[test]
    fn identity_matches_qemu_pc() {
        let mut d = I440fx::new();
        assert_eq!(read32(&mut d, 0), 0x1237_8086);
        assert_eq!(read32(&mut d, 8), 0x0600_0002);
        assert_eq!(
            read32(&mut d, 0x0C) >> 16 & 0xFF,
            0,
            "single-function header"
        );
    }

    #[test]
    fn pam_segments_at_power_on_are_all_disabled() {
        let d = I440fx::new();
        let segs = d.pam_segments();
        assert!(segs.iter().all(|s| s.mode == PamMode::Disabled));
        assert_eq!(segs[0].base, 0xC0000);
        assert_eq!(segs[11].base, 0xEC000);
        assert_eq!((segs[12].base, segs[12].len), (0xF0000, 0x10000));
        let total: u32 = segs.iter().map(|s| s.len).sum();
        assert_eq!(total, 0x40000);
    }

    #[test]
    fn pam_register_bits_decode_to_ranges() {
        let mut d = I440fx::new();
        // PAM0 (0x59) = 0x30; PAM1 = 0x13: 0xC0000 RW, 0xC4000 RO.
        write(&mut d, 0x58, &[0xAA, 0x30, 0x13, 0x00]);
        // PAM6 = 0x21: 0xE8000 RO, 0xEC000 write-only.
        write(&mut d, 0x5F, &[0x21]);
        let segs = d.pam_segments();
        assert_eq!(
            segs[0],
            PamSegment {
                base: 0xC0000,
                len: 0x4000,
                mode: PamMode::ReadWrite
            }
        );
        assert_eq!(
            segs[1],
            PamSegment {
                base: 0xC4000,
                len: 0x4000,
                mode: PamMode::ReadOnly
            }
        );
        assert_eq!(segs[2].mode, PamMode::Disabled);
        assert_eq!(
            segs[10],
            PamSegment {
                base: 0xE8000,
                len: 0x4000,
                mode: PamMode::ReadOnly
            }
        );
        assert_eq!(
            segs[11],
            PamSegment {
                base: 0xEC000,
                len: 0x4000,
                mode: PamMode::WriteOnly
            }
        );
        assert_eq!(
            segs[12],
            PamSegment {
                base: 0xF0000,
                len: 0x10000,
                mode: PamMode::ReadWrite
            }
        );
        assert!(PamMode::WriteOnly.writes_ram() && !PamMode::WriteOnly.reads_ram());
        assert!(PamMode::ReadOnly.reads_ram() && !PamMode::ReadOnly.writes_ram());
    }

    #[test]
    fn pam_changes_are_reported_per_segment() {
        let mut d = I440fx::new();
        let ch = write(&mut d, 0x5C, &0x3300_3311u32.to_le_bytes());
        // 0x5C = PAM3 (0xD0000/0xD4000 RO), 0x5D = PAM4 and 0x5F = PAM6 (all RW), 0x5E = PAM5 unchanged.
        assert_eq!(
            ch,
            vec![
                ConfigChange::Pam(PamSegment {
                    base: 0xD0000,
                    len: 0x4000,
                    mode: PamMode::ReadOnly
                }),
                ConfigChange::Pam(PamSegment {
                    base: 0xD4000,
                    len: 0x4000,
                    mode: PamMode::ReadOnly
                }),
                ConfigChange::Pam(PamSegment {
                    base: 0xD8000,
                    len: 0x4000,
                    mode: PamMode::ReadWrite
                }),
                ConfigChange::Pam(PamSegment {
                    base: 0xDC000,
                    len: 0x4000,
                    mode: PamMode::ReadWrite
                }),
                ConfigChange::Pam(PamSegment {
                    base: 0xE8000,
                    len: 0x4000,
                    mode: PamMode::ReadWrite
                }),
                ConfigChange::Pam(PamSegment {
                    base: 0xEC000,
                    len: 0x4000,
                    mode: PamMode::ReadWrite
                }),
            ]
        );
        assert!(write(&mut d, 0x5C, &0x3300_3311u32.to_le_bytes()).is_empty());
    }

    #[test]
    fn pam_reserved_bits_read_zero() {
        let mut d = I440fx::new();
        write(&mut d, 0x58, &[0xFF; 4]);
        write(&mut d, 0x5C, &[0xFF; 4]);
        assert_eq!(read32(&mut d, 0x58), 0x3333_3000);
        assert_eq!(read32(&mut d, 0x5C), 0x3333_3333);
    }

    #[test]
    fn smram_open_lock_and_reset() {
        let mut d = I440fx::new();
        let mut b = [0u8];
        d.config_read(SMRAM, &mut b);
        assert_eq!(b[0], 0x02);
        // SeaBIOS's "open the window": D_OPEN | G_SMRAME.
        let ch = write(&mut d, SMRAM, &[0x4A]);
        assert_eq!(ch, vec![ConfigChange::Smram { open: true }]);
        assert!(d.smram_open());
        // Lock: D_OPEN drops and can no longer be set.
        let ch = write(&mut d, 0x70, &0x005A_0000u32.to_le_bytes());
        assert_eq!(ch, vec![ConfigChange::Smram { open: false }]);
        write(&mut d, SMRAM, &[0x48]);
        d.config_read(SMRAM, &mut b);
        assert_eq!(b[0], 0x1A);
        write(&mut d, SMRAM, &[0x3A]);
        d.config_read(SMRAM, &mut b);
        assert_eq!(b[0], 0x3A, "only D_CLS is writable once locked");
        let mut ch = Vec::new();
        d.reset(&mut ch);
        d.config_read(SMRAM, &mut b);
        assert_eq!(b[0], 0x02);
        assert!(ch.is_empty(), "SMRAM was closed already, PAM unchanged");
    }

    #[test]
    fn reset_returns_pam_segments_to_rom() {
        let mut d = I440fx::new();
        write(&mut d, 0x59, &[0x30]);
        let mut ch = Vec::new();
        d.reset(&mut ch);
        assert_eq!(
            ch,
            vec![ConfigChange::Pam(PamSegment {
                base: 0xF0000,
                len: 0x10000,
                mode: PamMode::Disabled
            })]
        );
    }
}
