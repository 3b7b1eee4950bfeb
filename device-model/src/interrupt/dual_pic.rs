//! The PC's two cascaded 8259As and the PIIX Edge/Level Control Registers.
//!
//! Master at ports 20h-21h (ISA IRQ 0-7), slave at A0h-A1h (ISA IRQ 8-15), the
//! slave's INT wired to master IR2, as in the PIIX (Intel 82371AB PIIX4
//! datasheet, 3.6 "Interrupt Controller Registers"): the cascade is hardwired,
//! so ICW3 (which must be 04h / 02h there) does not change the wiring.
//!
//! ELCR1 (4D0h) and ELCR2 (4D1h) choose edge (0) or level (1) sensing per
//! IRQ. IRQ 0, 1, 2, 8 and 13 are edge only: their bits are reserved and read 0.

use super::pic::{Pic8259, PicRole};

/// The master input the slave's INT drives.
pub const CASCADE_IR: u8 = 2;

/// ELCR1 bits that exist: IRQ 0, 1, 2 cannot be level-triggered.
const ELCR1_MASK: u8 = 0xF8;
/// ELCR2 bits that exist: IRQ 8 and 13 cannot be level-triggered.
const ELCR2_MASK: u8 = 0xDE;

/// The PIIX interrupt controller: master, slave and ELCR.
#[derive(Debug, Clone)]
pub struct DualPic {
    master: Pic8259,
    slave: Pic8259,
}

impl Default for DualPic {
    fn default() -> Self {
        Self::new()
    }
}

impl DualPic {
    pub const MASTER_PORT: u16 = 0x20;
    pub const SLAVE_PORT: u16 = 0xA0;
    pub const ELCR_PORT: u16 = 0x4D0;

    /// The pair in its power-on state (ELCR all edge).
    pub fn new() -> Self {
        DualPic {
            master: Pic8259::new(PicRole::Master, ELCR1_MASK),
            slave: Pic8259::new(PicRole::Slave, ELCR2_MASK),
        }
    }

    /// RESET of both chips and both ELCRs; input levels survive.
    pub fn reset(&mut self) {
        self.master.reset();
        self.slave.reset();
        self.cascade();
    }

    pub fn master(&self) -> &Pic8259 {
        &self.master
    }

    pub fn slave(&self) -> &Pic8259 {
        &self.slave
    }

    /// Drives ISA IRQ `irq` (0-15). IRQ 2 is the cascade, not a pin: ignored.
    pub fn set_irq(&mut self, irq: u8, level: bool) {
        match irq {
            0..=7 if irq != CASCADE_IR => self.master.set_input(irq, level),
            8..=15 => self.slave.set_input(irq - 8, level),
            _ => return,
        }
        self.cascade();
    }

    /// The slave's INT output onto master IR2. Unlike device inputs (see
    /// [`Pic8259`]), this wire holds its level, so it gets the datasheet's
    /// edge rule in full: a request whose input falls before INTA is gone.
    fn cascade(&mut self) {
        let int = self.slave.int_output();
        self.master.set_input(CASCADE_IR, int);
        if !int {
            self.master.withdraw_request(CASCADE_IR);
        }
    }

    /// The INTR output to the CPU (the master's INT).
    pub fn intr(&self) -> bool {
        self.master.int_output()
    }

    /// The vector an INTA cycle would return now, without running it; `None`
    /// while INTR is low.
    pub fn pending_vector(&self) -> Option<u8> {
        let ir = self.master.highest_request()?;
        if ir == CASCADE_IR {
            let slave_ir = self.slave.highest_request().unwrap_or(7);
            Some(self.slave.vector(slave_ir))
        } else {
            Some(self.master.vector(ir))
        }
    }

    /// The vector an INTA cycle returns when nothing requests: the master's
    /// IR7 (spurious).
    pub fn spurious_vector(&self) -> u8 {
        self.master.vector(7)
    }

    /// The INTA cycle. The master resolves priority; for IR2 the slave
    /// supplies the vector. With no request left the chip asked returns its
    /// IR7 vector and sets no ISR bit (datasheet: "spurious" IR7). A slave
    /// with nothing to say when the master picked IR2 would answer IR15 the
    /// same way; since the cascade request falls with the slave's INT and
    /// every call here is atomic, that cannot happen in this model.
    pub fn acknowledge(&mut self) -> u8 {
        let vector = match self.master.acknowledge() {
            Some(CASCADE_IR) => {
                let ir = self.slave.acknowledge().unwrap_or(7);
                self.slave.vector(ir)
            }
            Some(ir) => self.master.vector(ir),
            None => self.master.vector(7),
        };
        self.cascade();
        vector
    }

    /// A one-byte read of `port` (20h, 21h, A0h, A1h, 4D0h, 4D1h); other
    /// ports read `0xFF`.
    pub fn read_port(&mut self, port: u16) -> u8 {
        let value = match port {
            0x20 | 0x21 => self.master.read(port & 1 != 0),
            0xA0 | 0xA1 => {
                // A slave poll acknowledges on the slave alone; the master
                // keeps whatever it had, as on the real cascade.
                self.slave.read(port & 1 != 0)
            }
            0x4D0 => return self.master.elcr(),
            0x4D1 => return self.slave.elcr(),
            _ => return 0xFF,
        };
        self.cascade();
        value
    }

    /// A one-byte write of `value` to `port`; other ports are ignored.
    pub fn write_port(&mut self, port: u16, value: u8) {
        match port {
            0x20 | 0x21 => self.master.write(port & 1 != 0, value),
            0xA0 | 0xA1 => self.slave.write(port & 1 != 0, value),
            0x4D0 => self.master.set_elcr(value),
            0x4D1 => self.slave.set_elcr(value),
            _ => return,
        }
        self.cascade();
    }
}

#[cfg(test)]
mod tests;
