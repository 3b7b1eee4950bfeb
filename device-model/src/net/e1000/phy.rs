//! The 82540EM's internal PHY (compatible with the Marvell 88E1011, SDM
//! 13.4.7 and 8254x SDM section 13.5 "PHY registers"), reached through
//! MDIC. It reports the link of the backend: when up, autonegotiation
//! completes at once at 1000 Mb/s full duplex with a partner that
//! advertises every speed.

use super::regs::mdic;

/// The PHY's MDIO address on the 82540EM (13.4.7: always 1).
pub const PHY_ADDRESS: u32 = 1;

/// PHY register numbers (13.5).
pub mod reg {
    pub const PCTRL: usize = 0;
    pub const PSTATUS: usize = 1;
    pub const PHY_ID1: usize = 2;
    pub const PHY_ID2: usize = 3;
    pub const ANAR: usize = 4;
    pub const ANLPAR: usize = 5;
    pub const ANER: usize = 6;
    pub const NPTX: usize = 7;
    pub const LPRNP: usize = 8;
    pub const GCON: usize = 9;
    pub const GSTATUS: usize = 10;
    pub const EPSTATUS: usize = 15;
    pub const PSCON: usize = 16;
    pub const PSSTAT: usize = 17;
    pub const PINTS: usize = 19;
    pub const PEXTCON: usize = 20;
    pub const PREC: usize = 21;
}

/// PCTRL bits: reset, autonegotiation enable and restart (13.5.1).
pub mod pctrl {
    pub const RESET: u16 = 1 << 15;
    pub const AN_ENABLE: u16 = 1 << 12;
    pub const RESTART_AN: u16 = 1 << 9;
    pub const FULL_DUPLEX: u16 = 1 << 8;
    pub const SPEED_1000: u16 = 1 << 6;
}

/// PSTATUS bits (13.5.2).
pub mod pstatus {
    /// 100BASE-TX/10BASE-T full and half duplex capable, extended status,
    /// preamble suppression, autonegotiation ability, extended capability.
    pub const CAPABILITIES: u16 = 0x7800 | 1 << 8 | 1 << 6 | 1 << 3 | 1 << 0;
    pub const AN_COMPLETE: u16 = 1 << 5;
    pub const LINK: u16 = 1 << 2;
}

/// The 88E1011's identifier: OUI-derived 0x0141, model/revision 0x0C2x (13.5.3-4).
pub const PHY_ID1_VALUE: u16 = 0x0141;
pub const PHY_ID2_VALUE: u16 = 0x0C20;

/// Power-on values of the writable registers (13.5).
const PCTRL_DEFAULT: u16 = pctrl::AN_ENABLE | pctrl::FULL_DUPLEX | pctrl::SPEED_1000;
/// Pause, asymmetric pause, 100/10 full/half, selector IEEE 802.3.
const ANAR_DEFAULT: u16 = 0x0DE1;
/// Advertise 1000BASE-T full and half duplex, multi-port device.
const GCON_DEFAULT: u16 = 0x0E00;
const NPTX_DEFAULT: u16 = 0x2001;
const PSCON_DEFAULT: u16 = 0x0068;
const PEXTCON_DEFAULT: u16 = 0x0C60;
/// A link partner that acknowledged and advertises 100/10 full/half and pause.
const ANLPAR_LINK: u16 = 0x45E1;
/// Local and remote receivers OK, partner 1000BASE-T full and half duplex.
const GSTATUS_LINK: u16 = 0x3C00;
/// 1000BASE-T full and half duplex capable.
const EPSTATUS_VALUE: u16 = 0x3000;
/// Speed 1000, full duplex, speed and duplex resolved, link up (88E1011 register 17).
const PSSTAT_LINK: u16 = 0x8000 | 0x2000 | 0x0800 | 0x0400;

/// The PHY's registers.
pub struct Phy {
    regs: [u16; 32],
}

impl Default for Phy {
    fn default() -> Self {
        Self::new()
    }
}

impl Phy {
    pub fn new() -> Phy {
        let mut p = Phy { regs: [0; 32] };
        p.reset();
        p
    }

    /// The PHY's power-on values.
    pub fn reset(&mut self) {
        self.regs = [0; 32];
        self.regs[reg::PCTRL] = PCTRL_DEFAULT;
        self.regs[reg::ANAR] = ANAR_DEFAULT;
        self.regs[reg::NPTX] = NPTX_DEFAULT;
        self.regs[reg::GCON] = GCON_DEFAULT;
        self.regs[reg::PSCON] = PSCON_DEFAULT;
        self.regs[reg::PEXTCON] = PEXTCON_DEFAULT;
    }

    /// Register `r` as read with the link `link_up`.
    pub fn read(&self, r: usize, link_up: bool) -> u16 {
        let an_done = link_up && self.regs[reg::PCTRL] & pctrl::AN_ENABLE != 0;
        match r {
            reg::PSTATUS => {
                let mut v = pstatus::CAPABILITIES;
                if link_up {
                    v |= pstatus::LINK;
                }
                if an_done {
                    v |= pstatus::AN_COMPLETE;
                }
                v
            }
            reg::PHY_ID1 => PHY_ID1_VALUE,
            reg::PHY_ID2 => PHY_ID2_VALUE,
            reg::ANLPAR => {
                if an_done {
                    ANLPAR_LINK
                } else {
                    0
                }
            }
            reg::ANER => u16::from(an_done),
            reg::GSTATUS => {
                if an_done {
                    GSTATUS_LINK
                } else {
                    0
                }
            }
            reg::EPSTATUS => EPSTATUS_VALUE,
            reg::PSSTAT => {
                if link_up {
                    PSSTAT_LINK
                } else {
                    0
                }
            }
            // Read-to-clear counters and status with nothing to report.
            reg::PINTS | reg::PREC | reg::LPRNP => 0,
            _ => self.regs.get(r).copied().unwrap_or(0),
        }
    }

    /// A write of register `r`. Reset and restart-autonegotiation are
    /// self-clearing: both complete at once.
    pub fn write(&mut self, r: usize, value: u16) {
        match r {
            reg::PCTRL => {
                if value & pctrl::RESET != 0 {
                    self.reset();
                    self.regs[reg::PCTRL] =
                        value & !(pctrl::RESET | pctrl::RESTART_AN) | pctrl::AN_ENABLE;
                } else {
                    self.regs[reg::PCTRL] = value & !pctrl::RESTART_AN;
                }
            }
            reg::PSTATUS
            | reg::PHY_ID1
            | reg::PHY_ID2
            | reg::ANLPAR
            | reg::ANER
            | reg::LPRNP
            | reg::GSTATUS
            | reg::EPSTATUS
            | reg::PSSTAT
            | reg::PINTS
            | reg::PREC => {}
            _ => {
                if let Some(slot) = self.regs.get_mut(r) {
                    *slot = value;
                }
            }
        }
    }

    /// An MDIC write of `value`: the operation completes at once (Ready
    /// set). Only PHY address 1 answers; another address, or an opcode
    /// that is neither read nor write, sets the Error bit (13.4.7).
    pub fn mdic(&mut self, value: u32, link_up: bool) -> u32 {
        let r = ((value >> mdic::REGADD_SHIFT) & 0x1F) as usize;
        let phy = (value >> mdic::PHYADD_SHIFT) & 0x1F;
        let op = (value >> mdic::OP_SHIFT) & 3;
        let keep = value & !(mdic::DATA_MASK | mdic::R | mdic::E);
        if phy != PHY_ADDRESS {
            return keep | mdic::R | mdic::E;
        }
        match op {
            mdic::OP_READ => keep | mdic::R | u32::from(self.read(r, link_up)),
            mdic::OP_WRITE => {
                self.write(r, value as u16);
                keep | mdic::R | (value & mdic::DATA_MASK)
            }
            _ => keep | mdic::R | mdic::E,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_op(r: u32) -> u32 {
        mdic::OP_READ << mdic::OP_SHIFT
            | PHY_ADDRESS << mdic::PHYADD_SHIFT
            | r << mdic::REGADD_SHIFT
    }

    #[test]
    fn the_phy_identifies_as_the_88e1011_and_reports_link_and_autoneg() {
        let mut p = Phy::new();
        let v = p.mdic(read_op(2), true);
        assert_ne!(v & mdic::R, 0, "ready");
        assert_eq!(v & 0xFFFF, 0x0141);
        assert_eq!(p.mdic(read_op(3), true) & 0xFFF0, 0x0C20);
        let s = p.mdic(read_op(1), true) as u16;
        assert_ne!(s & pstatus::LINK, 0, "link up");
        assert_ne!(s & pstatus::AN_COMPLETE, 0, "autonegotiation complete");
        let s = p.mdic(read_op(1), false) as u16;
        assert_eq!(s & (pstatus::LINK | pstatus::AN_COMPLETE), 0);
        assert_eq!(
            p.read(reg::GSTATUS, true) & 0x0800,
            0x0800,
            "partner 1000FD"
        );
    }

    #[test]
    fn writes_store_and_reset_restores_defaults() {
        let mut p = Phy::new();
        let w = mdic::OP_WRITE << mdic::OP_SHIFT
            | PHY_ADDRESS << mdic::PHYADD_SHIFT
            | (reg::ANAR as u32) << mdic::REGADD_SHIFT
            | 0x01E1;
        assert_ne!(p.mdic(w, true) & mdic::R, 0);
        assert_eq!(p.read(reg::ANAR, true), 0x01E1);
        p.write(
            reg::PCTRL,
            pctrl::RESET | pctrl::AN_ENABLE | pctrl::RESTART_AN,
        );
        assert_eq!(
            p.read(reg::PCTRL, true) & (pctrl::RESET | pctrl::RESTART_AN),
            0,
            "self-clearing"
        );
        assert_eq!(p.read(reg::ANAR, true), ANAR_DEFAULT);
        p.write(reg::PHY_ID1, 0);
        assert_eq!(p.read(reg::PHY_ID1, true), 0x0141, "read only");
    }

    #[test]
    fn another_phy_address_is_an_error() {
        let mut p = Phy::new();
        let v = p.mdic(
            mdic::OP_READ << mdic::OP_SHIFT | 2 << mdic::PHYADD_SHIFT,
            true,
        );
        assert_ne!(v & mdic::E, 0);
        assert_ne!(v & mdic::R, 0);
    }
}
