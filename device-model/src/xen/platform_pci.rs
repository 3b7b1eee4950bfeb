//! The xen-platform-pci device (PCI 5853:0001) and the emulated-device
//! unplug protocol on fixed ports 0x10-0x13 (Xen's
//! docs/misc/hvm-emulated-unplug.pandoc): Linux's PV-on-HVM drivers find
//! the device, take grant frames from its BAR1, and ask through the ports
//! for the emulated disks and NICs to go away, so the same disk is never
//! reachable two ways.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicU8, Ordering};

use guest_log::RateLimitedLog;
use log::Level;

use crate::bus::BusDevice;
use crate::pci::config_space::reg;
use crate::pci::{BarKind, ConfigChange, ConfigSpace, PciDevice, PciFunction};

/// XenSource's vendor id and the platform device's id.
pub const VENDOR_ID: u16 = 0x5853;
pub const DEVICE_ID: u16 = 0x0001;
/// Class 0xFF, subclass 0x80 ("other").
pub const CLASS: u32 = 0xFF_8000;
/// BAR0: 256 bytes of I/O; BAR1: 16 MiB of prefetchable memory, where the
/// guest places its grant frames.
pub const BAR0_LEN: u64 = 0x100;
pub const BAR1_LEN: u64 = 0x100_0000;

/// The fixed ports: 0x10 (magic, unplug mask), 0x12 (protocol, log byte).
pub const UNPLUG_PORT: u16 = 0x10;
pub const UNPLUG_LEN: u16 = 4;
/// What `inw 0x10` reads while the protocol is offered.
pub const UNPLUG_MAGIC: u16 = 0x49D2;
/// What `inb 0x12` reads: protocol version 1.
pub const UNPLUG_PROTOCOL: u8 = 1;
/// Unplug mask bits (`outw 0x10`).
pub const UNPLUG_ALL_DISKS: u8 = 1 << 0;
pub const UNPLUG_ALL_NICS: u8 = 1 << 1;
pub const UNPLUG_AUX_IDE_DISKS: u8 = 1 << 2;

/// The PCI function.
pub struct XenPlatformPci {
    cs: ConfigSpace,
}

impl XenPlatformPci {
    pub fn new() -> Self {
        let mut cs = ConfigSpace::new(VENDOR_ID, DEVICE_ID, 1, CLASS, 0);
        // Fixed, valid indexes and sizes.
        let _ = cs.add_bar(0, BarKind::Io, BAR0_LEN);
        let _ = cs.add_bar(1, BarKind::Mem32 { prefetchable: true }, BAR1_LEN);
        cs.set_u16(reg::SUBSYSTEM_VENDOR_ID, VENDOR_ID);
        cs.set_u16(reg::SUBSYSTEM_ID, DEVICE_ID);
        cs.set_interrupt_pin(1);
        XenPlatformPci { cs }
    }
}

impl Default for XenPlatformPci {
    fn default() -> Self {
        Self::new()
    }
}

impl PciFunction for XenPlatformPci {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.cs.read(offset, data);
    }
    fn config_write(&mut self, offset: u8, data: &[u8], changes: &mut Vec<ConfigChange>) {
        self.cs.write(offset, data, changes);
    }
    fn reset(&mut self, changes: &mut Vec<ConfigChange>) {
        self.cs.reset(changes);
    }
}

impl PciDevice for XenPlatformPci {
    fn name(&self) -> &'static str {
        "xen-platform-pci"
    }
    /// BAR0 has no registers Keel implements (reads all-ones); BAR1 pages
    /// the guest has not placed a grant frame at read as all-ones too.
    fn bar_read(&mut self, _bar: u8, _offset: u64, _data: &mut [u8]) {}
    fn bar_write(&mut self, _bar: u8, _offset: u64, _data: &[u8]) {}
}

/// The unplug requests the guest made, for the PC to act on.
#[derive(Clone, Default)]
pub struct UnplugRequests(Arc<AtomicU8>);

impl UnplugRequests {
    /// The mask bits asked for since the last call.
    pub fn take(&self) -> u8 {
        self.0.swap(0, Ordering::Relaxed)
    }
}

/// Ports 0x10-0x13.
pub struct UnplugPorts {
    requests: UnplugRequests,
    /// The guest's log bytes (`outb 0x12`), a line at a time.
    line: [u8; 120],
    len: usize,
    log: RateLimitedLog,
}

impl UnplugPorts {
    pub fn new(requests: UnplugRequests) -> Self {
        UnplugPorts {
            requests,
            line: [0; 120],
            len: 0,
            log: RateLimitedLog::new(),
        }
    }

    fn flush(&mut self) {
        let text = core::str::from_utf8(&self.line[..self.len]).unwrap_or("(not UTF-8)");
        self.log
            .log(Level::Info, format_args!("xen-platform-pci log: {text}"));
        self.len = 0;
    }
}

impl BusDevice for UnplugPorts {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0xff);
        match (offset, data.len()) {
            (0, 2) => data.copy_from_slice(&UNPLUG_MAGIC.to_le_bytes()),
            (2, 1) => data[0] = UNPLUG_PROTOCOL,
            _ => {}
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match (offset, data.len()) {
            (0, 2) => {
                let mask = data[0] & (UNPLUG_ALL_DISKS | UNPLUG_ALL_NICS | UNPLUG_AUX_IDE_DISKS);
                self.requests.0.fetch_or(mask, Ordering::Relaxed);
            }
            (2, 1) => {
                let b = data[0];
                if b == b'\n' || self.len == self.line.len() {
                    self.flush();
                }
                if b != b'\n' {
                    self.line[self.len] = b;
                    self.len += 1;
                }
            }
            // outl 0x10 (build number), outw 0x12 (product id): accepted.
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_give_magic_protocol_and_take_unplug_mask() {
        let req = UnplugRequests::default();
        let mut p = UnplugPorts::new(req.clone());
        let mut w = [0u8; 2];
        p.read(0x10, 0, &mut w);
        assert_eq!(u16::from_le_bytes(w), 0x49D2);
        let mut b = [0u8; 1];
        p.read(0x10, 2, &mut b);
        assert_eq!(b[0], 1);
        p.write(0x10, 2, &0x0003u16.to_le_bytes()); // product id: no unplug
        p.write(0x10, 0, &0x0000_0001u32.to_le_bytes()); // build number
        assert_eq!(req.take(), 0);
        p.write(0x10, 0, &0x0003u16.to_le_bytes());
        assert_eq!(req.take(), UNPLUG_ALL_DISKS | UNPLUG_ALL_NICS);
        assert_eq!(req.take(), 0, "taken once");
        for &c in b"hello\n" {
            p.write(0x10, 2, &[c]);
        }
        // 200 bytes without a newline: bounded, no panic.
        for _ in 0..200 {
            p.write(0x10, 2, b"x");
        }
        assert!(p.len <= p.line.len());
    }

    #[test]
    fn pci_identity() {
        let mut d = XenPlatformPci::new();
        let mut id = [0u8; 4];
        d.config_read(0, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x0001_5853);
        d.config_read(reg::SUBSYSTEM_VENDOR_ID, &mut id);
        assert_eq!(u32::from_le_bytes(id), 0x0001_5853);
        d.config_read(0x08, &mut id);
        assert_eq!(
            u32::from_le_bytes(id),
            0xFF80_0001,
            "class ff80, revision 1"
        );
        let mut pin = [0u8];
        d.config_read(0x3d, &mut pin);
        assert_eq!(pin[0], 1);
    }
}
