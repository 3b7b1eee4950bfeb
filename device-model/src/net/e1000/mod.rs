//! The Intel 82540EM gigabit Ethernet controller (8086:100E), as the PCI/PCI-X
//! Family of Gigabit Ethernet Controllers Software Developer's Manual
//! (8254x SDM) describes it.

use alloc::sync::Arc;

use crate::net::MacAddress;

/// What a VM's configuration decides about its e1000.
#[derive(Clone, Debug)]
pub struct E1000Config {
    /// The station address the EEPROM holds (8254x SDM 5.6.1).
    pub mac: MacAddress,
    /// The option ROM the ROM BAR serves (iPXE), if any.
    pub rom: Option<Arc<[u8]>>,
}
