//! The Intel 82371SB (PIIX3) PCI-to-ISA bridge, function 0 of device 1
//! (00:01.0) on QEMU's `-machine pc`: `8086:7000`, a multi-function device.
//!
//! Its job here is the PIRQ router: PIRQRC[A:D] (`0x60-0x63`, datasheet
//! 2.2.10) steer each of the four PCI interrupt lines to an ISA IRQ, or
//! nowhere (bit 7, IRQROUTEEN#). The platform asks [`Piix3::route`] where a
//! function's INTx pin ends up, and hears about route changes as
//! [`ConfigChange::PirqRoute`]. The edge/level control (ELCR, ports
//! `0x4D0-0x4D1`) belongs to the interrupt controller, not to this file.
//! The Reset Control Register at port `0xCF9` lives with the config
//! mechanism that shares its ports ([`super::PciConfigIo`]).

use alloc::vec::Vec;

use super::config_space::{ConfigSpace, HEADER_TYPE_MULTIFUNCTION};
use super::{ConfigChange, PciFunction};

/// PIRQRC[A], the first route register.
pub const PIRQRC_A: u8 = 0x60;
/// IRQROUTEEN#: set = the PIRQ goes nowhere.
const PIRQ_DISABLE: u8 = 0x80;

/// The four PCI interrupt request lines of the PCI-ISA bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pirq {
    A,
    B,
    C,
    D,
}

impl Pirq {
    pub const ALL: [Pirq; 4] = [Pirq::A, Pirq::B, Pirq::C, Pirq::D];

    fn index(self) -> u8 {
        self as u8
    }
}

/// A PCI function's interrupt pin (the header's interrupt pin 1-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IntxPin {
    IntA,
    IntB,
    IntC,
    IntD,
}

impl IntxPin {
    /// From the header's interrupt pin register (1 = INTA# .. 4 = INTD#).
    pub fn from_register(pin: u8) -> Option<IntxPin> {
        match pin {
            1 => Some(IntxPin::IntA),
            2 => Some(IntxPin::IntB),
            3 => Some(IntxPin::IntC),
            4 => Some(IntxPin::IntD),
            _ => None,
        }
    }
}

/// The PIIX3 function 0.
pub struct Piix3 {
    cs: ConfigSpace,
}

impl Default for Piix3 {
    fn default() -> Self {
        Self::new()
    }
}

impl Piix3 {
    pub const VENDOR_ID: u16 = 0x8086;
    pub const DEVICE_ID: u16 = 0x7000;

    /// The bridge at power-on (datasheet 2.2 default values): every PIRQ disabled.
    pub fn new() -> Self {
        let mut cs = ConfigSpace::new(
            Self::VENDOR_ID,
            Self::DEVICE_ID,
            0x00,
            0x06_01_00,
            HEADER_TYPE_MULTIFUNCTION,
        );
        // I/O, memory and bus master always on; DEVSEL medium.
        cs.set_u16(0x04, 0x0007);
        cs.set_u16(0x06, 0x0200);
        // Bridge-specific registers 0x4C-0xAF keep what the BIOS writes.
        for off in 0x4C..0xB0u8 {
            cs.set_wmask_u8(off, 0xFF);
        }
        cs.set_u8(0x4C, 0x4D); // IORT
        cs.set_u8(0x4E, 0x03); // XBCS
        for p in Pirq::ALL {
            cs.set_u8(PIRQRC_A + p.index(), PIRQ_DISABLE);
            // Bits 6:4 are reserved.
            cs.set_wmask_u8(PIRQRC_A + p.index(), 0x8F);
        }
        cs.set_u8(0x69, 0x02); // TOM
        cs.set_u8(0x70, 0x80); // MBIRQ0
        cs.set_u8(0x71, 0x80); // MBIRQ1
        cs.set_u8(0x76, 0x0C); // MBDMA0
        cs.set_u8(0x77, 0x0C); // MBDMA1
        cs.set_u16(0x78, 0x0002); // PCSC
        cs.set_u8(0xA0, 0x08); // SMICNTL
        cs.set_u8(0xA8, 0x0F); // FTMR
        Piix3 { cs }
    }

    /// The ISA IRQ `pirq` is routed to; `None` when routing is disabled or
    /// the register names a reserved IRQ (0-2, 8, 13: datasheet 2.2.10).
    pub fn pirq_route(&self, pirq: Pirq) -> Option<u8> {
        let v = self.cs.u8(PIRQRC_A + pirq.index());
        let irq = v & 0x0F;
        (v & PIRQ_DISABLE == 0 && !matches!(irq, 0..=2 | 8 | 13)).then_some(irq)
    }

    /// Which PIRQ the INTx `pin` of a function in slot `device` drives on
    /// this board: the usual rotation, `PIRQ[(device + pin - 1) mod 4]`
    /// with INTA as pin 0, the wiring QEMU's `pc` machine and SeaBIOS's
    /// PIR/ACPI tables agree on.
    pub fn pirq_for(device: u8, pin: IntxPin) -> Pirq {
        Pirq::ALL[usize::from((device.wrapping_add(pin as u8).wrapping_add(3)) & 3)]
    }

    /// The ISA IRQ a function in slot `device` raises on `pin`, if routed.
    pub fn route(&self, device: u8, pin: IntxPin) -> Option<u8> {
        self.pirq_route(Self::pirq_for(device, pin))
    }

    fn routes(&self) -> [Option<u8>; 4] {
        Pirq::ALL.map(|p| self.pirq_route(p))
    }

    fn report(&self, before: [Option<u8>; 4], changes: &mut Vec<ConfigChange>) {
        for (p, (old, new)) in Pirq::ALL
            .into_iter()
            .zip(before.into_iter().zip(self.routes()))
        {
            if old != new {
                changes.push(ConfigChange::PirqRoute { pirq: p, irq: new });
            }
        }
    }
}

impl PciFunction for Piix3 {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.cs.read(offset, data);
    }

    fn config_write(&mut self, offset: u8, data: &[u8], changes: &mut Vec<ConfigChange>) {
        let before = self.routes();
        self.cs.write(offset, data, changes);
        self.report(before, changes);
    }

    fn reset(&mut self, changes: &mut Vec<ConfigChange>) {
        let before = self.routes();
        self.cs.reset(changes);
        self.report(before, changes);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    #[test]
    fn identity_and_multifunction_header() {
        let mut d = Piix3::new();
        let mut b = [0u8; 4];
        d.config_read(0, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x7000_8086);
        d.config_read(8, &mut b);
        assert_eq!(u32::from_le_bytes(b), 0x0601_0000);
        d.config_read(0x0C, &mut b);
        assert_eq!(b[2], 0x80);
    }

    #[test]
    fn pirqs_start_disabled() {
        let d = Piix3::new();
        for p in Pirq::ALL {
            assert_eq!(d.pirq_route(p), None);
        }
    }

    #[test]
    fn seabios_routing_is_applied_and_reported() {
        let mut d = Piix3::new();
        let mut ch = Vec::new();
        // SeaBIOS routes PIRQA-D to 10, 10, 11, 11 one byte at a time.
        for (i, irq) in [10u8, 10, 11, 11].into_iter().enumerate() {
            d.config_write(PIRQRC_A + i as u8, &[irq], &mut ch);
        }
        assert_eq!(
            ch,
            vec![
                ConfigChange::PirqRoute {
                    pirq: Pirq::A,
                    irq: Some(10)
                },
                ConfigChange::PirqRoute {
                    pirq: Pirq::B,
                    irq: Some(10)
                },
                ConfigChange::PirqRoute {
                    pirq: Pirq::C,
                    irq: Some(11)
                },
                ConfigChange::PirqRoute {
                    pirq: Pirq::D,
                    irq: Some(11)
                },
            ]
        );
        // Slot 3 INTA -> PIRQC, slot 1 INTA -> PIRQA, slot 4 INTD -> PIRQC.
        assert_eq!(d.route(3, IntxPin::IntA), Some(11));
        assert_eq!(d.route(1, IntxPin::IntA), Some(10));
        assert_eq!(Piix3::pirq_for(4, IntxPin::IntD), Pirq::C);
        assert_eq!(Piix3::pirq_for(2, IntxPin::IntA), Pirq::B);
        // Bit 7 disables; a dword write covers all four.
        ch.clear();
        d.config_write(0x60, &0x0B8A_850Au32.to_le_bytes(), &mut ch);
        assert_eq!(
            ch,
            vec![
                ConfigChange::PirqRoute {
                    pirq: Pirq::B,
                    irq: None
                },
                ConfigChange::PirqRoute {
                    pirq: Pirq::C,
                    irq: None
                },
            ]
        );
        assert_eq!(d.pirq_route(Pirq::D), Some(11));
    }

    #[test]
    fn reserved_irqs_do_not_route() {
        let mut d = Piix3::new();
        let mut ch = Vec::new();
        for irq in [0u8, 1, 2, 8, 13] {
            d.config_write(PIRQRC_A, &[irq], &mut ch);
            assert_eq!(d.pirq_route(Pirq::A), None, "IRQ {irq}");
        }
        for irq in [3u8, 4, 5, 6, 7, 9, 10, 11, 12, 14, 15] {
            d.config_write(PIRQRC_A, &[irq], &mut ch);
            assert_eq!(d.pirq_route(Pirq::A), Some(irq));
        }
        let mut b = [0u8];
        d.config_write(PIRQRC_A, &[0x7F], &mut ch);
        d.config_read(PIRQRC_A, &mut b);
        assert_eq!(b[0], 0x0F, "reserved bits 6:4 read 0");
    }

    #[test]
    fn reset_disables_routes() {
        let mut d = Piix3::new();
        let mut ch = Vec::new();
        d.config_write(PIRQRC_A + 3, &[9], &mut ch);
        ch.clear();
        d.reset(&mut ch);
        assert_eq!(
            ch,
            vec![ConfigChange::PirqRoute {
                pirq: Pirq::D,
                irq: None
            }]
        );
        assert_eq!(IntxPin::from_register(1), Some(IntxPin::IntA));
        assert_eq!(IntxPin::from_register(0), None);
    }

    /// The rotation the DSDT's `_PRT` publishes (crates/acpi-gen
    /// `dsdt::prt`, tested in its acpi_tables test with the same points).
    #[test]
    fn swizzle_matches_the_dsdt_prt() {
        for (slot, pin, pirq) in [
            (1, IntxPin::IntA, Pirq::A),
            (2, IntxPin::IntA, Pirq::B),
            (3, IntxPin::IntD, Pirq::B),
            (4, IntxPin::IntB, Pirq::A),
        ] {
            assert_eq!(Piix3::pirq_for(slot, pin), pirq, "slot {slot} {pin:?}");
        }
    }
}
