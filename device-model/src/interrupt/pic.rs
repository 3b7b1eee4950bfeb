//! One Intel 8259A programmable interrupt controller (Intel 8259A datasheet,
//! order 231468), as one of the two inside the PIIX south bridge.
//!
//! The chip has eight request inputs IR0-IR7, the Interrupt Request Register
//! (IRR), In-Service Register (ISR) and Interrupt Mask Register (IMR), and one
//! output, INT. The pair around it ([`super::DualPic`]) wires two chips as
//! master and slave and runs the INTA cycle that crosses both.
//!
//! Deviations from the datasheet, each because an emulated bus differs from a
//! wire:
//! - An edge is latched in IRR until it is acknowledged, even if the input
//!   drops first. The datasheet asks the input to stay high until the first
//!   INTA pulse; emulated devices pulse a line in one call
//!   ([`crate::IrqLine::pulse`]), long before any INTA.
//! - Edge or level sensing comes from the PIIX ELCR (see [`super::DualPic`]),
//!   not from ICW1 LTIM: the PIIX disables LTIM.
//! - Only 8086 mode (ICW4 uPM = 1) INTA is modelled: the second INTA returns
//!   the vector `T7-T3 | IR`. MCS-80/85 CALL sequences are not.
//! - ICW1 clears IRR and ISR as well as what the datasheet lists (IMR, special
//!   mask, read-register select, priority): a guest that reinitializes while
//!   an interrupt is in service would otherwise never see it again.

/// Where a chip sits in the PIIX pair; the cascade is hardwired on IR2.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PicRole {
    Master,
    Slave,
}

/// Which initialization command word the chip expects next on A0 = 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum InitStep {
    /// Initialized: A0 = 1 writes are OCW1.
    Ready,
    Icw2,
    Icw3,
    Icw4,
}

/// ICW1 bits.
mod icw1 {
    /// IC4: an ICW4 follows.
    pub const IC4: u8 = 1 << 0;
    /// SNGL: single chip, so no ICW3.
    pub const SNGL: u8 = 1 << 1;
    /// D4 set on an A0 = 0 write marks ICW1.
    pub const ICW1: u8 = 1 << 4;
}

/// ICW4 bits.
mod icw4 {
    /// AEOI: automatic end of interrupt.
    pub const AEOI: u8 = 1 << 1;
    /// SFNM: special fully nested mode.
    pub const SFNM: u8 = 1 << 4;
}

/// OCW3 bits.
mod ocw3 {
    /// D3 set (with D4 clear) on an A0 = 0 write marks OCW3.
    pub const OCW3: u8 = 1 << 3;
    /// RIS: read ISR (1) or IRR (0) on the next read, when RR is set.
    pub const RIS: u8 = 1 << 0;
    /// RR: act on RIS.
    pub const RR: u8 = 1 << 1;
    /// P: poll command.
    pub const P: u8 = 1 << 2;
    /// SMM: set (1) or reset (0) special mask mode, when ESMM is set.
    pub const SMM: u8 = 1 << 5;
    /// ESMM: act on SMM.
    pub const ESMM: u8 = 1 << 6;
}

/// One 8259A.
#[derive(Debug, Clone)]
pub struct Pic8259 {
    role: PicRole,
    /// T7-T3 from ICW2.
    vector_base: u8,
    /// ICW3 as written. The PIIX hardwires the cascade (master IR2 = slave
    /// ID 2), so it is kept for completeness only.
    icw3: u8,
    single: bool,
    needs_icw4: bool,
    init_step: InitStep,
    auto_eoi: bool,
    special_fully_nested: bool,
    /// Rotate in automatic EOI mode (OCW2 R = 1, SL = 0, EOI = 0).
    rotate_on_aeoi: bool,
    irr: u8,
    isr: u8,
    imr: u8,
    /// The current level of each IR input.
    levels: u8,
    /// Inputs that are level-sensitive (the ELCR of this chip).
    elcr: u8,
    /// ELCR bits this chip implements; the others read 0.
    elcr_mask: u8,
    /// The IR with the lowest priority; IR (lowest + 1) mod 8 has the highest.
    lowest: u8,
    read_isr: bool,
    special_mask: bool,
    poll: bool,
}

impl Pic8259 {
    /// A chip in its power-on state, with `elcr_mask` the ELCR bits its
    /// inputs may set.
    pub fn new(role: PicRole, elcr_mask: u8) -> Self {
        let mut pic = Pic8259 {
            role,
            vector_base: 0,
            icw3: 0,
            single: false,
            needs_icw4: false,
            init_step: InitStep::Ready,
            auto_eoi: false,
            special_fully_nested: false,
            rotate_on_aeoi: false,
            irr: 0,
            isr: 0,
            imr: 0,
            levels: 0,
            elcr: 0,
            elcr_mask,
            lowest: 7,
            read_isr: false,
            special_mask: false,
            poll: false,
        };
        pic.reset();
        pic
    }

    /// RESET: programming, registers and ELCR to their power-on values. The
    /// input levels are the wires' and survive; an input already high needs
    /// a new rising edge.
    pub fn reset(&mut self) {
        let levels = self.levels;
        *self = Pic8259 {
            role: self.role,
            vector_base: 0,
            icw3: 0,
            single: false,
            needs_icw4: false,
            init_step: InitStep::Ready,
            auto_eoi: false,
            special_fully_nested: false,
            rotate_on_aeoi: false,
            irr: 0,
            isr: 0,
            imr: 0,
            levels,
            elcr: 0,
            elcr_mask: self.elcr_mask,
            lowest: 7,
            read_isr: false,
            special_mask: false,
            poll: false,
        };
    }

    pub fn irr(&self) -> u8 {
        self.irr
    }

    pub fn isr(&self) -> u8 {
        self.isr
    }

    pub fn imr(&self) -> u8 {
        self.imr
    }

    pub fn elcr(&self) -> u8 {
        self.elcr
    }

    /// The vector the second INTA pulse returns for `ir` (8086 mode).
    pub fn vector(&self, ir: u8) -> u8 {
        self.vector_base | (ir & 7)
    }

    /// The ELCR (PIIX 4D0h/4D1h): bit n set makes IRn level-sensitive.
    /// Reserved bits stay 0. An input that becomes level-sensitive requests
    /// exactly while it is high.
    pub fn set_elcr(&mut self, value: u8) {
        self.elcr = value & self.elcr_mask;
        self.irr = (self.irr & !self.elcr) | (self.levels & self.elcr);
    }

    /// Drives input `ir` (0-7) to `level`. Edge inputs latch a request in
    /// IRR on a rising edge; level inputs request while high.
    pub fn set_input(&mut self, ir: u8, level: bool) {
        let bit = 1u8 << (ir & 7);
        let was = self.levels & bit != 0;
        if level {
            self.levels |= bit;
        } else {
            self.levels &= !bit;
        }
        if self.elcr & bit != 0 {
            if level {
                self.irr |= bit;
            } else {
                self.irr &= !bit;
            }
        } else if level && !was {
            self.irr |= bit;
        }
    }

    /// Drops an edge request from IRR: for an input whose level fell before
    /// INTA, where the wire (unlike an emulated device's pulse) holds it.
    pub fn withdraw_request(&mut self, ir: u8) {
        self.irr &= !(1 << (ir & 7));
    }

    /// Priority rank of `ir`: 0 is the highest.
    fn rank(&self, ir: u8) -> u8 {
        ir.wrapping_sub(self.lowest).wrapping_sub(1) & 7
    }

    /// The highest-priority IR set in `mask`.
    fn highest_in(&self, mask: u8) -> Option<u8> {
        (1..=8u8)
            .map(|i| (self.lowest + i) & 7)
            .find(|&ir| mask & (1 << ir) != 0)
    }

    /// The IR the chip would acknowledge now, if its INT output is high:
    /// the highest-priority unmasked request whose priority is above every
    /// in-service level that still blocks (datasheet "Priority Resolver";
    /// special mask mode unblocks masked in-service levels; special fully
    /// nested mode on the master lets the cascade input interrupt itself).
    pub fn highest_request(&self) -> Option<u8> {
        let ir = self.highest_in(self.irr & !self.imr)?;
        let mut blocking = self.isr;
        if self.special_mask {
            blocking &= !self.imr;
        }
        if self.special_fully_nested && self.role == PicRole::Master {
            blocking &= !(1 << super::dual_pic::CASCADE_IR);
        }
        match self.highest_in(blocking) {
            Some(s) if self.rank(s) <= self.rank(ir) => None,
            _ => Some(ir),
        }
    }

    /// The INT output.
    pub fn int_output(&self) -> bool {
        self.highest_request().is_some()
    }

    /// The chip's part of an INTA cycle: freezes the highest request, sets
    /// its ISR bit (or, with AEOI, does not, and rotates if asked), and
    /// clears an edge request from IRR. `None` when nothing requests any
    /// more: the caller returns the spurious IR7 vector and no ISR bit is set.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let ir = self.highest_request()?;
        let bit = 1u8 << ir;
        if self.elcr & bit == 0 {
            self.irr &= !bit;
        }
        if self.auto_eoi {
            if self.rotate_on_aeoi {
                self.lowest = ir;
            }
        } else {
            self.isr |= bit;
        }
        Some(ir)
    }

    /// A read of the chip's A0 = 0 (`a0 == false`) or A0 = 1 port. A pending
    /// poll command turns the read into an acknowledge and returns the poll
    /// word (`I` in D7, the level in D2-D0) on either address.
    pub fn read(&mut self, a0: bool) -> u8 {
        if self.poll {
            self.poll = false;
            return match self.acknowledge() {
                Some(ir) => 0x80 | ir,
                None => 0,
            };
        }
        match (a0, self.read_isr) {
            (true, _) => self.imr,
            (false, true) => self.isr,
            (false, false) => self.irr,
        }
    }

    /// A write of `value` to the chip's A0 = 0 or A0 = 1 port.
    pub fn write(&mut self, a0: bool, value: u8) {
        if !a0 {
            if value & icw1::ICW1 != 0 {
                self.icw1(value);
            } else if value & ocw3::OCW3 != 0 {
                self.ocw3(value);
            } else {
                self.ocw2(value);
            }
            return;
        }
        match self.init_step {
            InitStep::Ready => self.imr = value,
            InitStep::Icw2 => {
                self.vector_base = value & 0xF8;
                self.init_step = if !self.single {
                    InitStep::Icw3
                } else if self.needs_icw4 {
                    InitStep::Icw4
                } else {
                    InitStep::Ready
                };
            }
            InitStep::Icw3 => {
                self.icw3 = value;
                self.init_step = if self.needs_icw4 {
                    InitStep::Icw4
                } else {
                    InitStep::Ready
                };
            }
            InitStep::Icw4 => {
                self.auto_eoi = value & icw4::AEOI != 0;
                self.special_fully_nested = value & icw4::SFNM != 0;
                self.init_step = InitStep::Ready;
            }
        }
    }

    /// ICW1 starts the initialization sequence. Datasheet: the edge sense
    /// circuit is reset (an input already high needs a new rising edge),
    /// IMR is cleared, IR7 gets the lowest priority, special mask mode is
    /// cleared and status read is set to IRR; without IC4 every ICW4 function
    /// is zero.
    fn icw1(&mut self, value: u8) {
        self.single = value & icw1::SNGL != 0;
        self.needs_icw4 = value & icw1::IC4 != 0;
        self.init_step = InitStep::Icw2;
        self.imr = 0;
        self.isr = 0;
        self.irr = self.levels & self.elcr;
        self.lowest = 7;
        self.special_mask = false;
        self.read_isr = false;
        self.poll = false;
        self.rotate_on_aeoi = false;
        self.auto_eoi = false;
        self.special_fully_nested = false;
    }

    /// OCW2: EOI, rotation and priority commands (R, SL, EOI in D7-D5,
    /// the level L2-L0 in D2-D0).
    fn ocw2(&mut self, value: u8) {
        let level = value & 7;
        match value >> 5 {
            // Non-specific EOI, and rotate on non-specific EOI.
            0b001 | 0b101 => {
                let mut candidates = self.isr;
                if self.special_mask {
                    // Datasheet: in special mask mode a non-specific EOI
                    // does not clear an IS bit masked by IMR.
                    candidates &= !self.imr;
                }
                if let Some(ir) = self.highest_in(candidates) {
                    self.isr &= !(1 << ir);
                    if value >> 5 == 0b101 {
                        self.lowest = ir;
                    }
                }
            }
            // Specific EOI.
            0b011 => self.isr &= !(1 << level),
            // Rotate on specific EOI.
            0b111 => {
                self.isr &= !(1 << level);
                self.lowest = level;
            }
            // Set priority.
            0b110 => self.lowest = level,
            // Rotate in automatic EOI mode: set / clear.
            0b100 => self.rotate_on_aeoi = true,
            0b000 => self.rotate_on_aeoi = false,
            // 0b010: no operation.
            _ => {}
        }
    }

    fn ocw3(&mut self, value: u8) {
        if value & ocw3::ESMM != 0 {
            self.special_mask = value & ocw3::SMM != 0;
        }
        if value & ocw3::RR != 0 {
            self.read_isr = value & ocw3::RIS != 0;
        }
        if value & ocw3::P != 0 {
            self.poll = true;
        }
    }
}

#[cfg(test)]
mod tests;
