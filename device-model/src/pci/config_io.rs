//! PCI configuration mechanism #1 (PCI Local Bus spec 3.0, 3.2.2.3.2) at
//! ports `0xCF8-0xCFF`, and the PIIX3 reset control register that shares them.
//!
//! - `CONFIG_ADDRESS` (`0xCF8`) is a 32-bit register, reached only by dword
//!   accesses: bit 31 enable, bits 23:16 bus, 15:11 device, 10:8 function,
//!   7:2 register (dword); bits 30:24 and 1:0 read as 0.
//! - `CONFIG_DATA` (`0xCFC-0xCFF`) reaches the addressed dword while bit 31
//!   is set: a byte, word or dword access at `0xCFC + n` reaches byte `n` of
//!   it. While bit 31 is clear, data reads return all-ones and writes are dropped.
//! - Byte and word accesses to `0xCF8-0xCFB` are not configuration accesses
//!   (spec: they pass through as ordinary I/O). The one register there is the
//!   82371SB Reset Control Register at `0xCF9` (datasheet 4.1.13 RC); the
//!   other ports read all-ones.

use super::{Bdf, PciBus};
use crate::bus::BusDevice;

/// The reset a guest asked for through the Reset Control Register (`0xCF9`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResetControl {
    /// `SRST` (bit 1) clear: reset the CPU only.
    Soft,
    /// `SRST` set: full system reset.
    Hard,
}

/// RC bit 1: system reset (hard) rather than CPU-only (soft).
const RC_SRST: u8 = 1 << 1;
/// RC bit 2: writing 1 starts the reset.
const RC_RST_CPU: u8 = 1 << 2;

/// The config mechanism: `CONFIG_ADDRESS`, `CONFIG_DATA` and bus 0 behind them.
pub struct PciConfigIo {
    address: u32,
    bus: PciBus,
    /// The Reset Control Register's `SRST` bit as last written.
    rc: u8,
    reset_request: Option<ResetControl>,
}

impl PciConfigIo {
    /// The first port; the platform registers [`PciConfigIo::LEN`] ports from it.
    pub const PORT: u16 = 0xCF8;
    pub const LEN: u16 = 8;

    /// The mechanism in front of `bus`.
    pub fn new(bus: PciBus) -> Self {
        PciConfigIo {
            address: 0,
            bus,
            rc: 0,
            reset_request: None,
        }
    }

    /// The bus behind the mechanism, for the platform to drain events from
    /// ([`PciBus::take_events`]).
    pub fn bus_mut(&mut self) -> &mut PciBus {
        &mut self.bus
    }

    pub fn bus(&self) -> &PciBus {
        &self.bus
    }

    /// The reset the guest asked for through port `0xCF9`, if any (taken
    /// once). The platform turns it into a VM reset.
    pub fn take_reset_request(&mut self) -> Option<ResetControl> {
        self.reset_request.take()
    }

    /// Power-on state: `CONFIG_ADDRESS` and the RC register cleared, and
    /// every function on the bus reset (their events are queued on the bus).
    pub fn reset(&mut self) {
        self.address = 0;
        self.rc = 0;
        self.reset_request = None;
        self.bus.reset();
    }

    /// The function and register `CONFIG_ADDRESS` selects, if enabled.
    fn target(&self) -> Option<(Bdf, u8)> {
        let a = self.address;
        if a & 1 << 31 == 0 {
            return None;
        }
        let bdf = Bdf {
            bus: (a >> 16) as u8,
            device: (a >> 11) as u8 & 31,
            function: (a >> 8) as u8 & 7,
        };
        Some((bdf, a as u8 & 0xFC))
    }
}

impl BusDevice for PciConfigIo {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0xFF);
        let len = data.len() as u64;
        match (offset, len) {
            (0, 4) => data.copy_from_slice(&self.address.to_le_bytes()),
            (1, 1) => data[0] = self.rc,
            (4..=7, _) if offset + len <= 8 => {
                if let Some((bdf, reg)) = self.target() {
                    self.bus.config_read(bdf, reg + (offset - 4) as u8, data);
                }
            }
            _ => {}
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let len = data.len() as u64;
        match (offset, len) {
            (0, 4) => {
                let mut b = [0u8; 4];
                b.copy_from_slice(data);
                self.address = u32::from_le_bytes(b) & 0x80FF_FFFC;
            }
            (1, 1) => {
                let v = data[0];
                if v & RC_RST_CPU != 0 {
                    self.reset_request = Some(if v & RC_SRST != 0 {
                        ResetControl::Hard
                    } else {
                        ResetControl::Soft
                    });
                }
                self.rc = v & RC_SRST;
            }
            (4..=7, _) if offset + len <= 8 => {
                if let Some((bdf, reg)) = self.target() {
                    self.bus.config_write(bdf, reg + (offset - 4) as u8, data);
                }
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Bus;
    use crate::pci::{ConfigChange, ConfigSpace, PciFunction};
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use spin::Mutex;

    struct Dev(ConfigSpace);
    impl PciFunction for Dev {
        fn config_read(&mut self, offset: u8, data: &mut [u8]) {
            self.0.read(offset, data)
        }
        fn config_write(&mut self, offset: u8, data: &[u8], changes: &mut Vec<ConfigChange>) {
            self.0.write(offset, data, changes)
        }
        fn reset(&mut self, changes: &mut Vec<ConfigChange>) {
            self.0.reset(changes)
        }
    }

    fn platform() -> (Bus, Arc<Mutex<PciConfigIo>>) {
        let mut pci = PciBus::new();
        let cs = ConfigSpace::new(0x8086, 0x1237, 2, 0x06_00_00, 0);
        pci.add(
            Bdf::new(0, 0, 0).unwrap(),
            "host",
            Arc::new(Mutex::new(Dev(cs))),
        )
        .unwrap();
        let cs = ConfigSpace::new(0x1AF4, 0x1000, 0, 0x02_00_00, 0);
        pci.add(
            Bdf::new(0, 5, 2).unwrap(),
            "dev",
            Arc::new(Mutex::new(Dev(cs))),
        )
        .unwrap();
        let io = Arc::new(Mutex::new(PciConfigIo::new(pci)));
        let mut bus = Bus::new();
        bus.register_pio(
            PciConfigIo::PORT,
            PciConfigIo::LEN,
            "pci-config",
            io.clone(),
        )
        .unwrap();
        (bus, io)
    }

    fn addr(dev: u32, func: u32, reg: u32) -> u32 {
        1 << 31 | dev << 11 | func << 8 | reg
    }

    #[test]
    fn dword_byte_and_word_data_accesses() {
        let (mut bus, _) = platform();
        bus.pio_write(0xCF8, 4, addr(0, 0, 0));
        assert_eq!(bus.pio_read(0xCFC, 4), 0x1237_8086);
        assert_eq!(bus.pio_read(0xCFC, 1), 0x86);
        assert_eq!(bus.pio_read(0xCFD, 1), 0x80);
        assert_eq!(bus.pio_read(0xCFE, 2), 0x1237);
        assert_eq!(bus.pio_read(0xCFF, 1), 0x12);
        bus.pio_write(0xCF8, 4, addr(0, 0, 8));
        assert_eq!(bus.pio_read(0xCFE, 2), 0x0600);
        assert_eq!(bus.pio_read(0xCFC, 4), 0x0600_0002);
        bus.pio_write(0xCF8, 4, addr(5, 2, 0));
        assert_eq!(bus.pio_read(0xCFE, 2), 0x1000);
    }

    #[test]
    fn data_writes_reach_the_register_at_their_byte_offset() {
        let (mut bus, _) = platform();
        bus.pio_write(0xCF8, 4, addr(0, 0, 0x3C));
        bus.pio_write(0xCFC, 1, 0x0B);
        assert_eq!(bus.pio_read(0xCFC, 4) & 0xFF, 0x0B);
        bus.pio_write(0xCF8, 4, addr(0, 0, 0x0C));
        bus.pio_write(0xCFD, 1, 0x40);
        assert_eq!(bus.pio_read(0xCFC, 4), 0x0000_4000);
        bus.pio_write(0xCFC, 2, 0x2010);
        assert_eq!(bus.pio_read(0xCFC, 4), 0x0000_2010);
    }

    #[test]
    fn disabled_config_address_reads_all_ones_and_drops_writes() {
        let (mut bus, _) = platform();
        bus.pio_write(0xCF8, 4, 0x3C);
        assert_eq!(bus.pio_read(0xCFC, 4), 0xFFFF_FFFF);
        assert_eq!(bus.pio_read(0xCFE, 1), 0xFF);
        bus.pio_write(0xCFC, 1, 0x0B);
        bus.pio_write(0xCF8, 4, addr(0, 0, 0x3C));
        assert_eq!(bus.pio_read(0xCFC, 1), 0, "the disabled write was dropped");
    }

    #[test]
    fn config_address_is_dword_only_with_reserved_bits_zero() {
        let (mut bus, _) = platform();
        bus.pio_write(0xCF8, 4, 0xFFFF_FFFF);
        assert_eq!(bus.pio_read(0xCF8, 4), 0x80FF_FFFC);
        bus.pio_write(0xCF8, 2, 0);
        bus.pio_write(0xCFA, 1, 0);
        assert_eq!(
            bus.pio_read(0xCF8, 4),
            0x80FF_FFFC,
            "narrow writes do not reach it"
        );
        assert_eq!(bus.pio_read(0xCF8, 2), 0xFFFF);
        assert_eq!(bus.pio_read(0xCFA, 1), 0xFF);
    }

    #[test]
    fn absent_devices_and_other_buses_read_all_ones() {
        let (mut bus, _) = platform();
        for a in [
            addr(1, 0, 0),
            addr(5, 0, 0),
            addr(31, 7, 0),
            addr(0, 0, 0) | 1 << 16,
        ] {
            bus.pio_write(0xCF8, 4, a);
            assert_eq!(bus.pio_read(0xCFC, 4), 0xFFFF_FFFF, "{a:#x}");
            assert_eq!(bus.pio_read(0xCFE, 2), 0xFFFF);
        }
    }

    #[test]
    fn reset_control_register() {
        let (mut bus, io) = platform();
        bus.pio_write(0xCF9, 1, 0x02);
        assert_eq!(bus.pio_read(0xCF9, 1), 0x02);
        assert_eq!(io.lock().take_reset_request(), None);
        bus.pio_write(0xCF9, 1, 0x06);
        assert_eq!(io.lock().take_reset_request(), Some(ResetControl::Hard));
        bus.pio_write(0xCF9, 1, 0x04);
        assert_eq!(io.lock().take_reset_request(), Some(ResetControl::Soft));
        assert_eq!(io.lock().take_reset_request(), None);
    }

    #[test]
    fn reset_clears_config_address() {
        let (mut bus, io) = platform();
        bus.pio_write(0xCF8, 4, addr(0, 0, 0));
        io.lock().reset();
        assert_eq!(bus.pio_read(0xCF8, 4), 0);
        assert_eq!(bus.pio_read(0xCFC, 4), 0xFFFF_FFFF);
    }
}
