//! The Intel 82540EM gigabit Ethernet controller (8086:100E), as the PCI/PCI-X
//! Family of Gigabit Ethernet Controllers Software Developer's Manual
//! (8254x SDM) describes it: the NIC of QEMU's and Xen's `e1000` model that
//! Linux, Windows, iPXE and SeaBIOS drive without extra drivers.
//!
//! | file | what |
//! |---|---|
//! | `mod.rs` | the PCI function, BAR0 (128 KiB registers) and BAR1 (I/O window) dispatch, reset, the ROM BAR |
//! | `regs.rs` | register offsets and bits (SDM 13) |
//! | `eeprom.rs` | the Microwire EEPROM behind EECD and EERD (SDM 5) |
//! | `phy.rs` | the PHY behind MDIC |
//! | `interrupts.rs` | ICR/IMS, ITR, the delayed-interrupt timers |
//! | `ring.rs` | descriptor rings |
//! | `rx.rs` | receive: address filtering, legacy descriptors |
//! | `tx.rs` | transmit: legacy, context and data descriptors, checksum offload, TSO |
//! | `stats.rs` | the statistics counters |
//!
//! Work happens in the register write that starts it (a TDT write sends up
//! to `tx::DESCS_PER_PASS` descriptors) and in [`TimerDevice::service`]:
//! received frames move from the backend into free receive descriptors,
//! the rest of a long transmit ring is sent, the delay timers fire. Every
//! buffer is allocated when the device is created.

mod eeprom;
mod interrupts;
mod phy;
pub mod regs;
mod ring;
mod rx;
mod stats;
mod tx;

use alloc::boxed::Box;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;

use guest_log::RateLimitedLog;
use guest_memory::GuestMemory;

use crate::clock::ClockHandle;
use crate::interrupt::router::IntxLine;
use crate::net::{MacAddress, NetBackend};
use crate::pci::config_space::reg as cfg;
use crate::pci::{BarKind, ConfigChange, ConfigSpace, PciDevice, PciFunction, PciWiring};
use crate::timer::TimerDevice;

use eeprom::Eeprom;
use interrupts::Interrupts;
use phy::Phy;
use regs::*;
use ring::Ring;
use stats::Stats;
use tx::TxState;

pub use stats::reg as stats_reg;

/// What a VM's configuration decides about its e1000.
#[derive(Clone, Debug)]
pub struct E1000Config {
    /// The station address the EEPROM holds (8254x SDM 5.6.1).
    pub mac: MacAddress,
    /// The option ROM the ROM BAR serves (iPXE), if any.
    pub rom: Option<Arc<[u8]>>,
}

/// PCI identity (SDM 5.6 table 5-2, 4.1): Intel's 82540EM, on the Intel
/// PRO/1000 MT Desktop Adapter (subsystem 8086:001E).
pub const VENDOR_ID: u16 = 0x8086;
pub const DEVICE_ID: u16 = 0x100E;
pub const SUBSYSTEM_VENDOR_ID: u16 = 0x8086;
pub const SUBSYSTEM_ID: u16 = 0x001E;
pub const REVISION: u8 = 3;
/// Network controller, Ethernet.
pub const CLASS: u32 = 0x02_0000;

/// BAR numbers.
pub const MMIO_BAR: u8 = 0;
pub const IO_BAR: u8 = 1;

/// Why a device-visible action failed, for the rate-limited logs.
#[derive(Default)]
struct Logs {
    /// Descriptor rings the hardware cannot walk (length 0, head/tail beyond).
    ring: RateLimitedLog,
    /// Descriptors or buffers outside guest RAM.
    dma: RateLimitedLog,
    /// Transmit packets dropped: too long, bad context offsets.
    tx_drop: RateLimitedLog,
}

/// The 82540EM.
pub struct E1000 {
    cs: ConfigSpace,
    memory: GuestMemory,
    clock: ClockHandle,
    backend: Box<dyn NetBackend>,
    rom: Option<Arc<[u8]>>,
    intx: Option<IntxLine>,
    mac: MacAddress,
    ctrl: u32,
    link_up: bool,
    eeprom: Eeprom,
    eerd: u32,
    phy: Phy,
    mdic: u32,
    irq: Interrupts,
    stats: Stats,
    rctl: u32,
    tctl: u32,
    rx: Ring,
    tx: Ring,
    /// Registers with no behaviour of their own, by dword index (MTA, RA,
    /// VFTA, flow control, wake-up...): they hold what was written.
    plain: Box<[u32]>,
    /// The I/O BAR's address register.
    ioaddr: u32,
    tx_state: TxState,
    /// One received frame, with room for its FCS.
    rx_buf: Box<[u8]>,
    /// Whether the frame waiting now was already counted in RNBC.
    rnbc_counted: bool,
    /// The backend's drop count when last looked at.
    backend_dropped: u64,
    logs: Logs,
}

/// Registers that hold what is written, as (first offset, length in bytes).
const PLAIN: &[(u64, u64)] = &[
    (CTRL_EXT, 4),
    (FCAL, 4),
    (FCAH, 4),
    (FCT, 4),
    (VET, 4),
    (FCTTV, 4),
    (TXCW, 4),
    (RXCW, 4),
    (TIPG, 4),
    (AIT, 4),
    (LEDCTL, 4),
    (PBA, 4),
    (FCRTL, 4),
    (FCRTH, 4),
    (RDFH, 4),
    (RDFT, 4),
    (RDFHS, 4),
    (RDFTS, 4),
    (RDFPC, 4),
    (RXDCTL, 4),
    (RSRPD, 4),
    (TDFH, 4),
    (TDFT, 4),
    (TDFHS, 4),
    (TDFTS, 4),
    (TDFPC, 4),
    (TXDCTL, 4),
    (TSPMT, 4),
    (RXCSUM, 4),
    (MTA, MTA_LEN),
    (RAL0, RA_LEN),
    (VFTA, VFTA_LEN),
    (WUC, 4),
    (WUFC, 4),
    (WUS, 4),
    (MANC, 4),
    (IPAV, 4),
    (IP4AT, 0x20),
    (IP6AT, 0x10),
    (WUPL, 4),
    (WUPM, 0x80),
    (FFLT, 0x20),
    (FFMT, 0x400),
    (FFVT, 0x400),
];

fn is_plain(offset: u64) -> bool {
    PLAIN
        .iter()
        .any(|&(start, len)| offset.wrapping_sub(start) < len)
}

impl E1000 {
    /// The device over the guest's RAM `memory`, sending and receiving
    /// through `backend`, timed by `clock`.
    pub fn new(
        config: E1000Config,
        memory: GuestMemory,
        clock: ClockHandle,
        backend: Box<dyn NetBackend>,
    ) -> E1000 {
        let mut cs = ConfigSpace::new(VENDOR_ID, DEVICE_ID, REVISION, CLASS, 0);
        // Fixed, valid indexes and sizes: these cannot fail.
        let _ = cs.add_bar(
            MMIO_BAR,
            BarKind::Mem32 {
                prefetchable: false,
            },
            BAR0_LEN,
        );
        let _ = cs.add_bar(IO_BAR, BarKind::Io, BAR1_LEN);
        cs.set_u16(cfg::SUBSYSTEM_VENDOR_ID, SUBSYSTEM_VENDOR_ID);
        cs.set_u16(cfg::SUBSYSTEM_ID, SUBSYSTEM_ID);
        cs.set_interrupt_pin(1);
        let rom = config.rom.filter(|image| {
            let size = (image.len() as u64).max(2048).next_power_of_two();
            let ok = cs.set_rom(size).is_ok();
            if !ok {
                log::warn!(
                    "e1000: option ROM of {} bytes is larger than a ROM BAR can be; not served",
                    image.len()
                );
            }
            ok
        });
        let mut d = E1000 {
            cs,
            memory,
            clock,
            backend,
            rom,
            intx: None,
            mac: config.mac,
            ctrl: 0,
            link_up: false,
            eeprom: Eeprom::new(config.mac, DEVICE_ID, SUBSYSTEM_VENDOR_ID, SUBSYSTEM_ID),
            eerd: 0,
            phy: Phy::new(),
            mdic: 0,
            irq: Interrupts::default(),
            stats: Stats::default(),
            rctl: 0,
            tctl: 0,
            rx: Ring::default(),
            tx: Ring::default(),
            plain: vec![0u32; (BAR0_LEN / 4) as usize].into_boxed_slice(),
            ioaddr: 0,
            tx_state: TxState::new(),
            rx_buf: vec![0u8; rx::BUF_LEN].into_boxed_slice(),
            rnbc_counted: false,
            backend_dropped: 0,
            logs: Logs::default(),
        };
        d.device_reset();
        d
    }

    fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    /// The software reset (CTRL.RST, 13.4.1) and the power-on state: every
    /// register to its initial value, RAL0/RAH0 loaded from the EEPROM's
    /// address; PCI configuration is kept.
    fn device_reset(&mut self) {
        self.ctrl = ctrl::FD | ctrl::SLU | ctrl::SPEED_1000;
        self.link_up = self.backend.link_up();
        self.eeprom.reset();
        self.eerd = 0;
        self.phy.reset();
        self.mdic = 0;
        self.irq.reset();
        self.stats.reset();
        self.rctl = 0;
        self.tctl = 0;
        self.rx = Ring::default();
        self.tx = Ring::default();
        self.plain.fill(0);
        self.ioaddr = 0;
        self.tx_state.reset();
        self.rnbc_counted = false;
        self.backend_dropped = self.backend.counters().dropped;
        let m = self.mac.0;
        self.set_plain(RAL0, u32::from_le_bytes([m[0], m[1], m[2], m[3]]));
        self.set_plain(RAL0 + 4, u32::from_le_bytes([m[4], m[5], 0, 0]) | RAH_AV);
        self.set_plain(VET, 0x8100);
        // 48 KiB receive, 16 KiB transmit packet buffer (13.4.25).
        self.set_plain(PBA, 0x30);
        self.update_irq();
    }

    fn set_plain(&mut self, offset: u64, v: u32) {
        if let Some(r) = self.plain.get_mut((offset / 4) as usize) {
            *r = v;
        }
    }

    fn plain(&self, offset: u64) -> u32 {
        self.plain.get((offset / 4) as usize).copied().unwrap_or(0)
    }

    fn status(&self) -> u32 {
        let lu = if self.link_up { status::LU } else { 0 };
        status::FD | lu | status::SPEED_1000 | status::ASDV_1000
    }

    /// Drives INTA# from the interrupt state.
    fn update_irq(&mut self) {
        let now = self.now();
        let asserted = self.irq.level(now);
        let level = self.cs.intx_level(asserted);
        if let Some(line) = &self.intx {
            line.set_level(level);
        }
    }

    fn bus_master(&self) -> bool {
        self.cs.command() & crate::pci::config_space::command::BUS_MASTER != 0
    }

    /// A read of the dword register at `offset` (aligned); `side_effects`
    /// false for the merge of a partial write (no read-to-clear).
    fn read_reg(&mut self, offset: u64, side_effects: bool) -> u32 {
        match offset {
            CTRL => self.ctrl,
            STATUS => self.status(),
            EECD => self.eeprom.read_eecd(),
            EERD => self.eerd,
            MDIC => self.mdic,
            ICR => {
                if !side_effects {
                    return 0;
                }
                let v = self.irq.read_icr();
                self.update_irq();
                v
            }
            ITR => self.irq.itr,
            IMS => self.irq.ims,
            RCTL => self.rctl,
            TCTL => self.tctl,
            RDBAL => self.rx.bal,
            RDBAH => self.rx.bah,
            RDLEN => self.rx.len,
            RDH => self.rx.head,
            RDT => self.rx.tail,
            RDTR => self.irq.rdtr,
            RADV => self.irq.radv,
            TDBAL => self.tx.bal,
            TDBAH => self.tx.bah,
            TDLEN => self.tx.len,
            TDH => self.tx.head,
            TDT => self.tx.tail,
            TIDV => self.irq.tidv,
            TADV => self.irq.tadv,
            o if (STATS_START..STATS_END).contains(&o) && side_effects => self.stats.read(o),
            o if (STATS_START..STATS_END).contains(&o) => 0,
            o if is_plain(o) => self.plain(o),
            // Reserved and write-only registers (ICS, IMC) read as 0.
            _ => 0,
        }
    }

    fn write_reg(&mut self, offset: u64, v: u32) {
        match offset {
            CTRL => {
                if v & ctrl::RST != 0 {
                    self.device_reset();
                    return;
                }
                if v & ctrl::PHY_RST != 0 {
                    self.phy.reset();
                }
                self.ctrl = v & !(ctrl::RST | ctrl::PHY_RST);
            }
            EECD => self.eeprom.write_eecd(v),
            EERD => self.eerd = self.eeprom.eerd(v),
            MDIC => {
                self.mdic = self.phy.mdic(v, self.link_up);
                if v & regs::mdic::I != 0 {
                    self.irq.raise(icr::MDAC);
                    self.update_irq();
                }
            }
            ICR => {
                // Writing 1s clears those causes (13.4.17).
                self.irq.icr &= !v;
                self.update_irq();
            }
            ITR => self.irq.itr = v & 0xFFFF,
            ICS => {
                self.irq.raise(v);
                self.update_irq();
            }
            IMS => {
                self.irq.ims |= v & icr::VALID;
                self.update_irq();
            }
            IMC => {
                self.irq.ims &= !v;
                self.update_irq();
            }
            RCTL => self.rctl = v,
            TCTL => {
                self.tctl = v;
                self.transmit();
            }
            RDBAL => self.rx.bal = v,
            RDBAH => self.rx.bah = v,
            RDLEN => self.rx.write_len(v),
            RDH => self.rx.head = v & 0xFFFF,
            RDT => self.rx.tail = v & 0xFFFF,
            RDTR => {
                self.irq.write_rdtr(v);
                self.update_irq();
            }
            RADV => self.irq.radv = v & 0xFFFF,
            TDBAL => self.tx.bal = v,
            TDBAH => self.tx.bah = v,
            TDLEN => self.tx.write_len(v),
            TDH => self.tx.head = v & 0xFFFF,
            TDT => {
                self.tx.tail = v & 0xFFFF;
                self.transmit();
            }
            TIDV => self.irq.tidv = v & 0xFFFF,
            TADV => self.irq.tadv = v & 0xFFFF,
            o if is_plain(o) => self.set_plain(o, v),
            // Read-only (STATUS, statistics) and reserved registers.
            _ => {}
        }
    }

    /// A BAR0 read of any width: each dword register covered is read once.
    fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        let mut i = 0;
        while i < data.len() {
            let at = offset.saturating_add(i as u64);
            let dword = at & !3;
            let v = if dword < BAR0_LEN {
                self.read_reg(dword, true)
            } else {
                0
            };
            let bytes = v.to_le_bytes();
            let mut b = (at & 3) as usize;
            while b < 4 && i < data.len() {
                data[i] = bytes[b];
                b += 1;
                i += 1;
            }
        }
    }

    /// A BAR0 write of any width: a partial dword is merged with the
    /// register's value (registers are dword registers, 13.1).
    fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        let mut i = 0;
        while i < data.len() {
            let at = offset.saturating_add(i as u64);
            let dword = at & !3;
            let first = (at & 3) as usize;
            let n = (4 - first).min(data.len() - i);
            if dword >= BAR0_LEN {
                i += n;
                continue;
            }
            let mut bytes = if first == 0 && n == 4 {
                [0; 4]
            } else {
                self.read_reg(dword, false).to_le_bytes()
            };
            bytes[first..first + n].copy_from_slice(&data[i..i + n]);
            self.write_reg(dword, u32::from_le_bytes(bytes));
            i += n;
        }
    }

    /// BAR1: IOADDR selects a BAR0 register, IODATA reaches it (13.2.2).
    fn io_read(&mut self, offset: u64, data: &mut [u8]) {
        for (i, d) in data.iter_mut().enumerate() {
            let at = offset.saturating_add(i as u64);
            *d = match at & !3 {
                IOADDR => (self.ioaddr >> (8 * (at & 3))) as u8,
                _ => 0,
            };
        }
        if offset & !3 == IODATA {
            let reg = u64::from(self.ioaddr & 0x1_FFFC);
            let mut v = [0u8; 4];
            self.mmio_read(reg, &mut v);
            let first = (offset & 3) as usize;
            for (i, d) in data.iter_mut().enumerate() {
                *d = v.get(first + i).copied().unwrap_or(0);
            }
        }
    }

    fn io_write(&mut self, offset: u64, data: &[u8]) {
        let first = (offset & 3) as usize;
        match offset & !3 {
            IOADDR => {
                let mut bytes = self.ioaddr.to_le_bytes();
                for (i, &b) in data.iter().enumerate() {
                    if let Some(slot) = bytes.get_mut(first + i) {
                        *slot = b;
                    }
                }
                self.ioaddr = u32::from_le_bytes(bytes);
            }
            IODATA => {
                let reg = u64::from(self.ioaddr & 0x1_FFFC) + first as u64;
                let n = data.len().min(4 - first);
                self.mmio_write(reg, &data[..n]);
            }
            _ => {}
        }
    }

    /// Follows the backend's link: a change sets STATUS.LU and LSC (13.4.17).
    fn poll_link(&mut self) {
        let up = self.backend.link_up();
        if up != self.link_up {
            self.link_up = up;
            self.irq.raise(icr::LSC);
        }
    }
}

impl PciFunction for E1000 {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.cs.read(offset, data);
    }

    fn config_write(&mut self, offset: u8, data: &[u8], changes: &mut Vec<ConfigChange>) {
        self.cs.write(offset, data, changes);
        // Interrupt Disable may have changed the pin.
        self.update_irq();
    }

    fn reset(&mut self, changes: &mut Vec<ConfigChange>) {
        self.cs.reset(changes);
        self.device_reset();
    }
}

impl PciDevice for E1000 {
    fn name(&self) -> &'static str {
        "e1000"
    }

    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        data.fill(0);
        match bar {
            MMIO_BAR => self.mmio_read(offset, data),
            IO_BAR => self.io_read(offset, data),
            _ => {}
        }
    }

    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) {
        match bar {
            MMIO_BAR => self.mmio_write(offset, data),
            IO_BAR => self.io_write(offset, data),
            _ => {}
        }
    }

    fn rom_image(&self) -> Option<Arc<[u8]>> {
        self.rom.clone()
    }

    fn plugged(&mut self, wiring: PciWiring) {
        self.intx = wiring.intx;
    }
}

impl TimerDevice for E1000 {
    fn next_deadline_ns(&mut self) -> Option<u64> {
        let now = self.now();
        if self.tx_pending() || self.rx_ready() {
            return Some(now);
        }
        let poll = self.rx_polling().then(|| now.saturating_add(rx::POLL_NS));
        [self.irq.next_deadline_ns(), poll]
            .into_iter()
            .flatten()
            .min()
    }

    fn service(&mut self) {
        let now = self.now();
        self.poll_link();
        self.irq.run_timers(now);
        if self.tx_pending() {
            self.transmit();
        }
        self.receive();
        self.update_irq();
    }
}

#[cfg(test)]
mod tests;
