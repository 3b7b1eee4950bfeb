//! Drivers for the machine's own devices (as opposed to the ones Keel
//! emulates for its guests).
//!
//! | file | what |
//! |---|---|
//! | `pci.rs` | configuration space through ports 0xCF8/0xCFC, for the `virtio-drivers` crate |
//! | `virtio_blk.rs` | the machine's virtio-blk disks as [`device_model::storage::BlockBackend`]s |

pub mod pci;
pub mod virtio_blk;

pub use virtio_blk::HostDisks;
