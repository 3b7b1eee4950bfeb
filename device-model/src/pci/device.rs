//! [`PciDevice`]: a PCI function with BARs, an optional option ROM, MSI or
//! MSI-X, and an INTx pin, as the PCI layer ([`super::layer::PciLayer`])
//! plugs it in with [`Pc::add_pci`](crate::Pc::add_pci).
//!
//! The device declares its BARs and ROM in its [`ConfigSpace`]
//! ([`ConfigSpace::add_bar`], [`ConfigSpace::set_rom`]), its capabilities
//! with [`ConfigSpace::add_capability`], [`MsiCap::add`], [`MsixCap::add`],
//! its pin with [`ConfigSpace::set_interrupt_pin`]. Everything a guest then
//! does to those registers is the layer's job, the same for every device:
//! BAR sizing and moves, decode enable, overlap refusal, the ROM window,
//! the MSI-X table and PBA, unmask delivery, PIRQ routing of the pin.
//!
//! [`ConfigSpace`]: super::ConfigSpace
//! [`ConfigSpace::add_bar`]: super::ConfigSpace::add_bar
//! [`ConfigSpace::set_rom`]: super::ConfigSpace::set_rom
//! [`ConfigSpace::add_capability`]: super::ConfigSpace::add_capability
//! [`ConfigSpace::set_interrupt_pin`]: super::ConfigSpace::set_interrupt_pin

use alloc::sync::Arc;
use alloc::vec::Vec;
use spin::Mutex;

use guest_memory::HostRegionId;

use super::msi::{MsiCap, MsixCap};
use super::{Bdf, ConfigChange, ConfigSpace, PciFunction};
use crate::interrupt::router::IntxLine;

/// What a device receives when it is plugged in.
pub struct PciWiring {
    /// Where it was placed.
    pub bdf: Bdf,
    /// Its INTx pin's line, through the PIIX3 PIRQ router (`None` when the
    /// header's interrupt pin is 0). Level-triggered and shared: drive it
    /// with the function's interrupt status, gated by
    /// [`ConfigSpace::intx_level`](super::ConfigSpace::intx_level).
    pub intx: Option<IntxLine>,
}

/// A PCI function the layer can plug in. Config-space accesses come through
/// [`PciFunction`]; BAR accesses through `bar_read`/`bar_write` with the
/// offset inside the BAR (never the absolute address), and only while the
/// BAR decodes.
pub trait PciDevice: PciFunction {
    /// A name for logs and the bus's range list.
    fn name(&self) -> &'static str;

    /// A read of `data.len()` bytes at `offset` inside BAR `bar` (`data`
    /// arrives all-ones). Not called for the MSI-X table or PBA.
    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]);

    /// A write at `offset` inside BAR `bar`. Not called for the MSI-X table or PBA.
    fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]);

    /// The option ROM image the ROM BAR serves (declared with
    /// [`ConfigSpace::set_rom`](super::ConfigSpace::set_rom) of at least its size).
    fn rom_image(&self) -> Option<Arc<[u8]>> {
        None
    }

    /// The host region behind memory BAR `bar`, if it is a RAM BAR: Keel
    /// allocated the memory when it created the VM (`GuestPhysMap::add_region`)
    /// and the layer maps it wherever the BAR decodes
    /// ([`MemoryMapQueue::ram_bar_moved`](crate::MemoryMapQueue::ram_bar_moved)),
    /// so guest accesses reach it without an exit. Accesses that still exit
    /// (the emulator's) come to `bar_read`/`bar_write` as for any BAR.
    fn ram_bar(&self, bar: u8) -> Option<HostRegionId> {
        let _ = bar;
        None
    }

    /// The device's MSI capability and its configuration space.
    fn msi(&mut self) -> Option<(&mut MsiCap, &mut ConfigSpace)> {
        None
    }

    /// The device's MSI-X capability and its configuration space.
    fn msix(&mut self) -> Option<(&mut MsixCap, &mut ConfigSpace)> {
        None
    }

    /// Called once when the device is plugged in.
    fn plugged(&mut self, wiring: PciWiring) {
        let _ = wiring;
    }
}

/// A shared device: the layer keeps clones for the config bus and its BAR windows.
pub type PciDeviceHandle = Arc<Mutex<dyn PciDevice>>;

/// The device as the config bus sees it: after each configuration write
/// the MSI and MSI-X capabilities look at what changed (enable, masks) and
/// send what became unmasked; a reset also resets the MSI-X table.
pub(crate) struct ConfigPort(pub(crate) PciDeviceHandle);

impl PciFunction for ConfigPort {
    fn config_read(&mut self, offset: u8, data: &mut [u8]) {
        self.0.lock().config_read(offset, data);
    }

    fn config_write(&mut self, offset: u8, data: &[u8], changes: &mut Vec<ConfigChange>) {
        let mut dev = self.0.lock();
        dev.config_write(offset, data, changes);
        if let Some((msi, cs)) = dev.msi() {
            msi.config_written(cs);
        }
        if let Some((msix, cs)) = dev.msix() {
            msix.config_written(cs);
        }
    }

    fn reset(&mut self, changes: &mut Vec<ConfigChange>) {
        let mut dev = self.0.lock();
        dev.reset(changes);
        if let Some((msix, _)) = dev.msix() {
            msix.reset();
        }
    }
}
