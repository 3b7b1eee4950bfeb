//! Storage: block backends and the disk controllers that put them in front
//! of a guest.
//!
//! | file | what |
//! |---|---|
//! | `block.rs` | [`BlockBackend`], 512-byte sectors, [`BlockError`] |
//! | `ram_disk.rs` | [`RamDisk`], a volatile image in host memory |
//! | `read_only.rs` | [`ReadOnly`], refuses writes (CD images) |
//! | `read_ahead.rs` | [`ReadAhead`], one read-ahead window over a host disk |
//! | `shared.rs` | [`SharedBackend`], one image behind IDE and a Xen vbd |
//! | `ide/` | the PIIX3 IDE function: ATA disks, an ATAPI CD-ROM, bus-master DMA |

pub mod block;
pub mod ide;
pub mod ram_disk;
pub mod read_ahead;
pub mod read_only;
pub mod shared;

pub use block::{BlockBackend, BlockError, SECTOR_SIZE};
pub use ide::{ChannelId, DrivePosition, IdeChannel, IdeDrive, Piix3Ide};
pub use ram_disk::RamDisk;
pub use read_ahead::ReadAhead;
pub use read_only::ReadOnly;
pub use shared::SharedBackend;
