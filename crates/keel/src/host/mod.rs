//! Drivers for the machine's own devices (as opposed to the ones Keel
//! emulates for its guests).
//!
//! | file | what |
//! |---|---|
//! | `display.rs` | the machine's display adapter (QEMU's standard VGA), showing the focused VM's screen |
//! | `pci.rs` | configuration space through ports 0xCF8/0xCFC, for the `virtio-drivers` crate |
//! | `virtio.rs` | the one scan of PCI bus 0, the DMA pool and the crate's HAL the virtio drivers share |
//! | `virtio_blk.rs` | the machine's virtio-blk disks as [`device_model::storage::BlockBackend`]s |
//! | `virtio_net.rs` | the machine's virtio-net NICs, each the uplink of a Keel switch ([`Bridge`]) |

pub mod display;
pub mod pci;
pub mod virtio;
pub mod virtio_blk;
pub mod virtio_net;

pub use virtio::probe;
pub use virtio_blk::{HostDisks, HOST_DISK_READ_AHEAD_SECTORS};
pub use virtio_net::{Bridge, HostNics};
