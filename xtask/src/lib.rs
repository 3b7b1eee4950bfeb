//! `cargo xtask`: build Keel's boot ISOs, run them under an emulator, test.
//!
//! The binary (`src/main.rs`) is the command line; this library is what the
//! integration tests in `tests/` share with it, so that there is one emulator
//! runner ([`runner`]), one ISO layout ([`iso`]) and one idea of where the
//! artifacts are ([`workspace`]).

pub mod bench;
pub mod console;
pub mod cpio;
pub mod deps;
pub mod display;
pub mod fuzz;
pub mod guest_assets;
pub mod ide_assets;
pub mod iso;
pub mod net;
pub mod net_assets;
pub mod progress;
pub mod runner;
pub mod screen_disk;
pub mod vga_assets;
pub mod workspace;
