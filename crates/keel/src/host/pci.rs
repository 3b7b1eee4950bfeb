//! PCI configuration space of the machine through mechanism #1 (ports 0xCF8
//! and 0xCFC; `keel::pci_config`), as the `virtio-drivers` crate's
//! [`ConfigurationAccess`]. QEMU's pc machine and most PCs without ECAM set
//! up by firmware answer here.

use keel::pci_config::{config_address, CONFIG_ADDRESS_PORT, CONFIG_DATA_PORT};
use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};
use x86_64::instructions::port::Port;

/// Port-I/O configuration access. Keel runs on one CPU and nothing else in
/// Keel uses these two ports (guests' accesses to 0xCF8 go to the emulated
/// PC), so an address write and the data access that follows cannot be
/// split by another user.
#[derive(Debug)]
pub struct PortCam(());

impl PortCam {
    /// The machine's configuration mechanism.
    pub fn new() -> Self {
        PortCam(())
    }
}

impl ConfigurationAccess for PortCam {
    fn read_word(&self, f: DeviceFunction, register_offset: u8) -> u32 {
        let address = config_address(f.bus, f.device, f.function, register_offset);
        // SAFETY: 0xCF8/0xCFC are the PCI configuration ports of a PC; a
        // dword access there reads configuration space and has no effect
        // on memory Keel owns.
        unsafe {
            Port::<u32>::new(CONFIG_ADDRESS_PORT).write(address);
            Port::<u32>::new(CONFIG_DATA_PORT).read()
        }
    }

    fn write_word(&mut self, f: DeviceFunction, register_offset: u8, data: u32) {
        let address = config_address(f.bus, f.device, f.function, register_offset);
        // SAFETY: as in read_word; the callers (the crate's PCI code and
        // host::virtio_blk) only write the command register and BARs of the
        // virtio-blk functions Keel drives.
        unsafe {
            Port::<u32>::new(CONFIG_ADDRESS_PORT).write(address);
            Port::<u32>::new(CONFIG_DATA_PORT).write(data);
        }
    }

    unsafe fn unsafe_clone(&self) -> Self {
        PortCam(())
    }
}
