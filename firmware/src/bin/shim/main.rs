//! Keel's BIOS shim (`firmware/README.md`): from the reset vector to a Linux
//! kernel (64-bit boot protocol) or a multiboot kernel, with what fw_cfg
//! provides. On the host this bin is an empty stub; the logic it drives is
//! the `keel_shim` library, tested there.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(target_os = "none")]
mod boot;
#[cfg(target_os = "none")]
mod entry;
#[cfg(target_os = "none")]
mod fw_cfg;
#[cfg(target_os = "none")]
mod hw;

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!(
        "keel-shim is a firmware image: build it for x86_64-unknown-none (cargo xtask build)"
    );
}
