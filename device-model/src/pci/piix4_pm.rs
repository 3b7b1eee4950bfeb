//! The power-management function of the Intel 82371AB (PIIX4), 00:01.3 on
//! QEMU's `-machine pc`: `8086:7113` rev 03. It is the ACPI hardware a
//! guest's OS talks to (fixed registers, SCI, sleep/soft-off).
//!
//! One struct answers three things:
//! - configuration space (datasheet 3.4.2): PMBA (`0x40`, the I/O base of
//!   the 64-byte PM register block, decoded while PMREGMISC (`0x80`) bit 0 is
//!   set), DEVACTB (`0x58`), SMBBA (`0x90`) and SMBHSTCFG (`0xD2`), which
//!   SeaBIOS programs;
//! - the PM I/O block at PMBA (datasheet 3.4.3): PM1a_STS (`+0x00`),
//!   PM1a_EN (`+0x02`), PM1a_CNT (`+0x04`). The PM timer at `+0x08` is a
//!   separate device ([`Piix4Pm::PM_TMR_OFFSET`]); the platform registers
//!   this device around it ([`Piix4Pm::pm_io_ranges`]). Other PIIX4-specific
//!   registers in the block read 0 and ignore writes;
//! - the GPE0 block at [`Piix4Pm::GPE0_PORT`] and the APM control/status
//!   ports at [`Piix4Pm::APM_PORT`], both where QEMU puts them.
//!
//! When PMBA or PMREGMISC moves the block, a [`ConfigChange::Region`] with
//! [`RegionId::PmIo`] reports it; the platform moves the ranges on the Bus.
//!
//! The SCI is ISA IRQ 9 (the platform passes an [`IrqLine`] for it). It is
//! asserted while `SCI_EN` is set and some enabled status bit is set, in
//! PM1 (`PM1_STS & PM1_EN`) or GPE0 (`GPE0_STS & GPE0_EN`).
//!
//! # Sleep types and Keel's DSDT
//!
//! A write to PM1a_CNT with `SLP_EN` set enters the state named by
//! `SLP_TYP`, whose values come from the DSDT's `\_Sx` packages. Keel's DSDT
//! follows QEMU's PIIX4 convention, `\_S5 = 0` ([`Piix4Pm::S5_SLP_TYP`]),
//! and offers no other sleep state; the value is a constructor parameter so
//! the DSDT and the device can only change together. Entering S5 files
//! [`PowerRequest::AcpiPowerOff`]; any other sleep type is logged and ignored.
//!
//! Keel has no SMM: as QEMU does without SMM, DEVACTB's `APMC_EN` reads as
//! set (so SeaBIOS skips its SMM set-up, which would wait for an SMI
//! forever) and `SCI_EN` is set at reset (the OS finds the machine in ACPI mode).

use alloc::vec::Vec;

use super::config_space::ConfigSpace;
use super::{ConfigChange, PciFunction, RegionId};
use crate::bus::{AddressSpace, BusDevice};
use crate::irq::IrqLine;
use crate::power::{PowerControl, PowerRequest};
use guest_log::RateLimitedLog;
use log::Level;

/// Configuration registers (datasheet 3.4.2).
pub const PMBA: u8 = 0x40;
pub const DEVACTB: u8 = 0x58;
pub const PMREGMISC: u8 = 0x80;
pub const SMBBA: u8 = 0x90;
pub const SMBHSTCFG: u8 = 0xD2;

/// DEVACTB bit 25: SMI on writes to the APM control port.
const DEVACTB_APMC_EN: u32 = 1 << 25;
/// PMREGMISC bit 0: PMIOSE, the PM I/O block is decoded.
const PMREGMISC_PMIOSE: u8 = 1;

/// PM1 status/enable bits (ACPI 6.5 4.8.3.1; datasheet 3.4.3.1).
pub mod pm1 {
    pub const TMR: u16 = 1 << 0;
    pub const BM: u16 = 1 << 4;
    pub const GBL: u16 = 1 << 5;
    pub const PWRBTN: u16 = 1 << 8;
    pub const SLPBTN: u16 = 1 << 9;
    pub const RTC: u16 = 1 << 10;
    pub const WAK: u16 = 1 << 15;
    /// Status bits that exist (and are cleared by writing 1).
    pub const STS_BITS: u16 = TMR | BM | GBL | PWRBTN | SLPBTN | RTC | WAK;
    /// Enable bits the PIIX4 implements.
    pub const EN_BITS: u16 = TMR | GBL | PWRBTN | RTC;
    /// PM1_CNT: SCI_EN.
    pub const SCI_EN: u16 = 1 << 0;
    pub const BM_RLD: u16 = 1 << 1;
    /// PM1_CNT: SLP_TYP, bits 12:10.
    pub const SLP_TYP_SHIFT: u16 = 10;
    pub const SLP_TYP: u16 = 7 << SLP_TYP_SHIFT;
    /// PM1_CNT: SLP_EN, write-only.
    pub const SLP_EN: u16 = 1 << 13;
}

/// PM I/O block offsets.
const PM1_STS: u16 = 0x00;
const PM1_EN: u16 = 0x02;
const PM1_CNT: u16 = 0x04;

/// APM control-port commands Keel's FADT names (`ACPI_ENABLE`/`ACPI_DISABLE`, as QEMU's).
pub const APM_ACPI_ENABLE: u8 = 0xF1;
pub const APM_ACPI_DISABLE: u8 = 0xF0;

/// The PIIX4 power-management function.
pub struct Piix4Pm {
    cs: ConfigSpace,
    sci: IrqLine,
    power: PowerControl,
    s5_slp_typ: u8,
    pm1_sts: u16,
    pm1_en: u16,
    pm1_cnt: u16,
    gpe0_sts: u16,
    gpe0_en: u16,
    apm_cnt: u8,
    apm_sts: u8,
    /// Where the PM block decodes, as last reported.
    io_base: Option<u16>,
    sci_level: bool,
    /// Sleep types Keel does not offer, which a guest can repeat at will.
    sleep_log: RateLimitedLog,
}

impl Piix4Pm {
    pub const VENDOR_ID: u16 = 0x8086;
    pub const DEVICE_ID: u16 = 0x7113;
    /// Size of the PM I/O block PMBA points at.
    pub const PM_IO_LEN: u16 = 64;
    /// The PM timer's offset in the block; it is another device's.
    pub const PM_TMR_OFFSET: u16 = 0x08;
    pub const PM_TMR_LEN: u16 = 4;
    /// GPE0 block (GPE0_STS, GPE0_EN: two 16-bit registers), at QEMU's address.
    pub const GPE0_PORT: u16 = 0xAFE0;
    pub const GPE0_LEN: u16 = 4;
    /// APM control (`0xB2`, the FADT's SMI_CMD) and status (`0xB3`).
    pub const APM_PORT: u16 = 0xB2;
    pub const APM_LEN: u16 = 2;
    /// The ISA IRQ the SCI is wired to on this board (SeaBIOS writes it to the interrupt line).
    pub const SCI_IRQ: u32 = 9;
    /// `\_S5`'s SLP_TYP in QEMU's PIIX4 DSDT, and in Keel's.
    pub const S5_SLP_TYP: u8 = 0;
    /// Where SeaBIOS puts PMBA on QEMU's `pc` (its `acpi_pm_base`).
    pub const SEABIOS_PMBA: u16 = 0x600;

    /// The function at power-on, raising its SCI on `sci`, filing S5 with
    /// `power`; `s5_slp_typ` is the DSDT's `\_S5` value (Keel: [`Piix4Pm::S5_SLP_TYP`]).
    pub fn new(sci: IrqLine, power: PowerControl, s5_slp_typ: u8) -> Self {
        let mut cs = ConfigSpace::new(Self::VENDOR_ID, Self::DEVICE_ID, 0x03, 0x06_80_00, 0);
        cs.set_u16(0x06, 0x0280);
        cs.set_interrupt_pin(1);
        // PMBA: bit 0 hardwired 1 (I/O space), bits 15:6 the base.
        cs.set_u32(PMBA, 1);
        cs.set_wmask_u32(PMBA, 0x0000_FFC0);
        // CNTA, CNTB, GPICTL, DEVRESD..DEVRESJ and DEVACTA/B: kept as written.
        for off in 0x44..0x70u8 {
            cs.set_wmask_u8(off, 0xFF);
        }
        cs.set_u32(DEVACTB, DEVACTB_APMC_EN);
        cs.set_wmask_u8(PMREGMISC, PMREGMISC_PMIOSE);
        // SMBBA: bit 0 hardwired 1, bits 15:4 the base (no SMBus controller behind it).
        cs.set_u32(SMBBA, 1);
        cs.set_wmask_u32(SMBBA, 0x0000_FFF0);
        cs.set_wmask_u8(SMBHSTCFG, 0x0F);
        let mut pm = Piix4Pm {
            cs,
            sci,
            power,
            s5_slp_typ: s5_slp_typ & 7,
            pm1_sts: 0,
            pm1_en: 0,
            pm1_cnt: pm1::SCI_EN,
            gpe0_sts: 0,
            gpe0_en: 0,
            apm_cnt: 0,
            apm_sts: 0,
            io_base: None,
            sci_level: false,
            sleep_log: RateLimitedLog::new(),
        };
        pm.update_sci();
        pm
    }

    /// The port ranges `(base, len)` this device answers for a PM block at
    /// `base`: the whole block except the PM timer's four ports.
    pub fn pm_io_ranges(base: u16) -> [(u16, u16); 2] {
        let tmr_end = Self::PM_TMR_OFFSET + Self::PM_TMR_LEN;
        [
            (base, Self::PM_TMR_OFFSET),
            (base.wrapping_add(tmr_end), Self::PM_IO_LEN - tmr_end),
        ]
    }

    /// Where the PM block decodes now (PMIOSE set and a non-zero PMBA).
    pub fn pm_io_base(&self) -> Option<u16> {
        self.io_base
    }

    /// The power button: sets PWRBTN_STS (raising the SCI if the guest
    /// enabled it). Returns whether the guest is listening (PWRBTN_EN and
    /// SCI_EN set); if not, the platform may power off the hard way.
    pub fn press_power_button(&mut self) -> bool {
        self.pm1_sts |= pm1::PWRBTN;
        self.update_sci();
        self.pm1_en & pm1::PWRBTN != 0 && self.pm1_cnt & pm1::SCI_EN != 0
    }

    /// The PM timer's carry out of bit 23 (or 31): sets TMR_STS. The PM
    /// timer device calls this when its counter's top bit toggles.
    pub fn pm_timer_carry(&mut self) {
        self.pm1_sts |= pm1::TMR;
        self.update_sci();
    }

    /// Sets GPE0_STS bit `bit` (0..=15; others ignored), for hot-plug and similar events.
    pub fn raise_gpe(&mut self, bit: u8) {
        if let Some(b) = 1u16.checked_shl(u32::from(bit)) {
            self.gpe0_sts |= b;
            self.update_sci();
        }
    }

    /// Whether the SCI is asserted.
    pub fn sci_level(&self) -> bool {
        self.sci_level
    }

    fn update_sci(&mut self) {
        let pending =
            self.pm1_sts & self.pm1_en & pm1::EN_BITS != 0 || self.gpe0_sts & self.gpe0_en != 0;
        let level = pending && self.pm1_cnt & pm1::SCI_EN != 0;
        if level != self.sci_level {
            self.sci_level = level;
            self.sci.set_level(level);
        }
    }

    fn decode_io_base(&self) -> Option<u16> {
        let base = (self.cs.u32(PMBA) & 0xFFC0) as u16;
        (self.cs.u8(PMREGMISC) & PMREGMISC_PMIOSE != 0 && base != 0).then_some(base)
    }

    fn update_io_base(&mut self, changes: &mut Vec<ConfigChange>) {
        let new = self.decode_io_base();
        if new != self.io_base {
            changes.push(ConfigChange::Region {
                id: RegionId::PmIo,
                space: AddressSpace::Pio,
                len: u64::from(Self::PM_IO_LEN),
                old: self.io_base.map(u64::from),
                new: new.map(u64::from),
            });
            self.io_base = new;
        }
    }

    fn read_byte(&self, port: u16) -> Option<u8> {
        let byte = |v: u16, hi: bool| if hi { (v >> 8) as u8 } else { v as u8 };
        if let Some(off) = self.block_offset(port) {
            let v = match off & !1 {
                PM1_STS => self.pm1_sts,
                PM1_EN => self.pm1_en,
                PM1_CNT => self.pm1_cnt,
                o if (Self::PM_TMR_OFFSET..Self::PM_TMR_OFFSET + Self::PM_TMR_LEN).contains(&o) => {
                    return None
                }
                _ => 0,
            };
            return Some(byte(v, off & 1 != 0));
        }
        match port.wrapping_sub(Self::GPE0_PORT) {
            o @ 0..=1 => return Some(byte(self.gpe0_sts, o == 1)),
            o @ 2..=3 => return Some(byte(self.gpe0_en, o == 3)),
            _ => {}
        }
        match port.wrapping_sub(Self::APM_PORT) {
            0 => Some(self.apm_cnt),
            1 => Some(self.apm_sts),
            _ => None,
        }
    }

    /// Applies one byte written; returns the sleep type if SLP_EN was set.
    fn write_byte(&mut self, port: u16, v: u8) -> Option<u8> {
        let set = |reg: &mut u16, hi: bool, mask: u16| {
            let (shift, keep) = if hi { (8, 0x00FF) } else { (0, 0xFF00) };
            *reg =
                (*reg & keep) | ((u16::from(v) << shift) & !keep & mask) | (*reg & !keep & !mask);
        };
        let w1c = |reg: &mut u16, hi: bool, mask: u16| {
            let shift = if hi { 8 } else { 0 };
            *reg &= !((u16::from(v) << shift) & mask);
        };
        if let Some(off) = self.block_offset(port) {
            let hi = off & 1 != 0;
            match off & !1 {
                PM1_STS => w1c(&mut self.pm1_sts, hi, pm1::STS_BITS),
                PM1_EN => set(&mut self.pm1_en, hi, pm1::EN_BITS),
                PM1_CNT => {
                    set(
                        &mut self.pm1_cnt,
                        hi,
                        pm1::SCI_EN | pm1::BM_RLD | pm1::SLP_TYP,
                    );
                    if hi && u16::from(v) << 8 & pm1::SLP_EN != 0 {
                        return Some(((self.pm1_cnt & pm1::SLP_TYP) >> pm1::SLP_TYP_SHIFT) as u8);
                    }
                }
                _ => {}
            }
            return None;
        }
        match port.wrapping_sub(Self::GPE0_PORT) {
            o @ 0..=1 => w1c(&mut self.gpe0_sts, o == 1, 0xFFFF),
            o @ 2..=3 => set(&mut self.gpe0_en, o == 3, 0xFFFF),
            _ => match port.wrapping_sub(Self::APM_PORT) {
                0 => {
                    self.apm_cnt = v;
                    match v {
                        APM_ACPI_ENABLE => self.pm1_cnt |= pm1::SCI_EN,
                        APM_ACPI_DISABLE => self.pm1_cnt &= !pm1::SCI_EN,
                        _ => {}
                    }
                }
                1 => self.apm_sts = v,
                _ => {}
            },
        }
        None
    }

    fn block_offset(&self, port: u16) -> Option<u16> {
        let base = self.io_base?;
        let off = port.wrapping_sub(base);
        (off < Self::PM_IO_LEN).then_some(off)
    }

    fn sleep(&mut self, slp_typ: u8) {
        if slp_typ == self.s5_slp_typ {
            self.power.request(PowerRequest::AcpiPowerOff);
        } else {
            self.sleep_log.log(
                Level::Warn,
                format_args!(
                    "guest asked for ACPI sleep type {slp_typ}; Keel only offers S5 (SLP_TYP {}), ignored",
                    self.s5_slp_typ
                ),
            );
        }
    }
}

impl PciFunction for Piix4Pm {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.cs.read(offset, data);
    }

    fn config_write(&mut self, offset: u8, data: &[u8], changes: &mut Vec<ConfigChange>) {
        self.cs.write(offset, data, changes);
        self.update_io_base(changes);
    }

    fn reset(&mut self, changes: &mut Vec<ConfigChange>) {
        self.cs.reset(changes);
        self.update_io_base(changes);
        self.pm1_sts = 0;
        self.pm1_en = 0;
        self.pm1_cnt = pm1::SCI_EN;
        self.gpe0_sts = 0;
        self.gpe0_en = 0;
        self.apm_cnt = 0;
        self.apm_sts = 0;
        self.update_sci();
    }
}

impl BusDevice for Piix4Pm {
    /// Ports of the PM block, GPE0 and APM, by absolute port number (the
    /// device answers several ranges). Ports it does not (or no longer)
    /// decode read all-ones.
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            let port = base.wrapping_add(offset).wrapping_add(i as u64);
            *b = u16::try_from(port)
                .ok()
                .and_then(|p| self.read_byte(p))
                .unwrap_or(0xFF);
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let mut sleep = None;
        for (i, &v) in data.iter().enumerate() {
            let port = base.wrapping_add(offset).wrapping_add(i as u64);
            if let Ok(p) = u16::try_from(port) {
                sleep = self.write_byte(p, v).or(sleep);
            }
        }
        self.update_sci();
        if let Some(t) = sleep {
            self.sleep(t);
        }
    }
}

#[cfg(test)]
mod tests;
