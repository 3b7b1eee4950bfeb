//! Display adapters: QEMU's standard VGA with the Bochs VBE extensions
//! ([`vga`]).

pub mod vga;
