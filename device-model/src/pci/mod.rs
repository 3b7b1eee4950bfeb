//! PCI: the configuration mechanism, the bus of functions behind it, and the
//! i440FX/PIIX functions of QEMU's `-machine pc` that SeaBIOS expects.
//!
//! | file | what |
//! |---|---|
//! | `config_io.rs` | configuration mechanism #1 at ports `0xCF8-0xCFF` ([`PciConfigIo`]) |
//! | `root.rs` | bus 0: the functions by device/function number ([`PciBus`]) |
//! | `config_space.rs` | the standard type-0 header, BAR and ROM sizing ([`ConfigSpace`]) |
//! | `i440fx.rs` | 82441FX host bridge, 00:00.0: PAM and SMRAM ([`I440fx`]) |
//! | `piix3.rs` | 82371SB PCI-ISA bridge, 00:01.0: PIRQ routing ([`Piix3`]) |
//! | `piix4_pm.rs` | 82371AB power management, 00:01.3: PM1, GPE0, APM, SCI ([`Piix4Pm`]) |
//! | `device.rs` | [`PciDevice`]: a function with BARs, ROM, MSI/MSI-X, INTx, as `Pc::add_pci` plugs it |
//! | `layer.rs` | [`PciLayer`]: BAR/ROM windows on the bus, overlap refusal, for every device |
//! | `msi.rs` | the MSI and MSI-X capabilities ([`MsiCap`], [`MsixCap`]) |
//!
//! # How decoded ranges move: [`ConfigChange`] and [`PciEvent`]
//!
//! A config-space write can move what a function decodes: a BAR, the
//! expansion ROM, the PIIX4 PM I/O block (PMBA), the i440FX PAM segments, the
//! SMRAM window. The write arrives while the [`Bus`](crate::Bus) is busy
//! dispatching it, so a function cannot re-register its ranges there and then.
//! Instead, each [`PciFunction::config_write`] (and `reset`) appends a
//! [`ConfigChange`] per change it caused; [`PciBus`] tags them with the
//! function's [`Bdf`] and queues them as [`PciEvent`]s. The platform drains
//! the queue ([`PciBus::take_events`]) after every port write that reached
//! `0xCF8-0xCFF`, before the vCPU runs again, and applies each event: it
//! moves the device's range on the `Bus` ([`ConfigChange::Region`]), or
//! queues a change of the guest's physical address map
//! ([`ConfigChange::Pam`], [`ConfigChange::Smram`]; see
//! [`crate::memory_map`]), which the VM loop applies to the nested page
//! tables before the next entry. Events are in the order the changes happened; a
//! range is reported only when its decoded address actually changes. BARs
//! and ROMs of devices plugged in with `Pc::add_pci` are placed by
//! [`PciLayer`], the same for every device; PIRQ route changes
//! ([`ConfigChange::PirqRoute`]) go to the interrupt router.

pub mod config_io;
pub mod config_space;
pub mod device;
pub mod i440fx;
pub mod layer;
pub mod msi;
pub mod piix3;
pub mod piix4_pm;
pub mod root;

use alloc::vec::Vec;
use core::fmt;

use crate::bus::AddressSpace;

pub use config_io::{PciConfigIo, ResetControl};
pub use config_space::{BarKind, ConfigSpace, ConfigSpaceError};
pub use device::{PciDevice, PciDeviceHandle, PciWiring};
pub use i440fx::{I440fx, PamMode, PamSegment};
pub use layer::PciLayer;
pub use msi::{MsiCap, MsixCap};
pub use piix3::{IntxPin, Piix3, Pirq};
pub use piix4_pm::Piix4Pm;
pub use root::{PciBus, PciBusError, PciFunctionHandle};

/// A function's address on the (single) PCI segment: bus, device, function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    pub bus: u8,
    /// 0..=31
    pub device: u8,
    /// 0..=7
    pub function: u8,
}

impl Bdf {
    /// `bus:device.function`; `None` if the device or function number is out of range.
    pub const fn new(bus: u8, device: u8, function: u8) -> Option<Bdf> {
        if device > 31 || function > 7 {
            return None;
        }
        Some(Bdf {
            bus,
            device,
            function,
        })
    }
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

/// Which decoded range of a function a [`ConfigChange::Region`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionId {
    /// Base address register `n` (0..=5; a 64-bit BAR is named by its lower half).
    Bar(u8),
    /// The expansion ROM BAR (offset `0x30`).
    Rom,
    /// The PIIX4 power-management I/O block at PMBA (see [`Piix4Pm`]).
    PmIo,
}

/// One change a config-space write (or reset) made to what a function decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigChange {
    /// A range appeared (`old == None`), moved, or disappeared (`new == None`).
    /// `len` bytes in `space`; the platform moves the owner's registration.
    Region {
        id: RegionId,
        space: AddressSpace,
        len: u64,
        old: Option<u64>,
        new: Option<u64>,
    },
    /// A PAM segment of `0xC0000-0xFFFFF` changed mode (see [`I440fx`]).
    Pam(PamSegment),
    /// Whether `0xA0000-0xBFFFF` shows SMRAM (RAM) to non-SMM accesses
    /// (`open`) or goes to the PCI bus (legacy VGA), per the i440FX SMRAM register.
    Smram { open: bool },
    /// A PIIX3 PIRQ route changed: `irq` is the ISA IRQ, `None` when disabled.
    PirqRoute { pirq: Pirq, irq: Option<u8> },
}

/// A [`ConfigChange`] tagged with the function that made it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciEvent {
    pub bdf: Bdf,
    pub change: ConfigChange,
}

/// One PCI function's configuration space, as the bus sees it.
///
/// The config mechanism guarantees `offset + len <= 256` and that an access
/// never crosses a dword boundary; `len` is 1, 2 or 4.
pub trait PciFunction: Send {
    /// Reads `data.len()` bytes of configuration space at `offset` (little endian).
    fn config_read(&mut self, offset: u8, data: &mut [u8]);
    /// Writes `data` at `offset`, appending a [`ConfigChange`] per change of
    /// what the function decodes.
    fn config_write(&mut self, offset: u8, data: &[u8], changes: &mut Vec<ConfigChange>);
    /// Returns to the power-on state, appending the changes that causes
    /// (ranges that stop being decoded, PAM segments that go back to ROM...).
    fn reset(&mut self, changes: &mut Vec<ConfigChange>);
}
