//! The pure part of Keel's BIOS shim (`firmware/README.md`): everything that
//! turns bytes into decisions, with no port I/O, so it runs under `cargo test`
//! on the host.
//!
//! - [`fw_cfg`]: the fw_cfg file directory and DMA descriptor formats.
//! - [`acpi_blobs`]: the `opt/keel/acpi` container of placed ACPI blobs.
//! - [`e820`]: the guest's memory map, from `etc/e820` to what a kernel sees.
//! - [`linux`]: the x86 Linux boot protocol (setup header, placement, zero page).
//! - [`multiboot`]: multiboot v1 (header, ELF32 / ELF64 / a.out kludge loading, info block).
//! - [`gzip`]: gzip-compressed kernels.
//! - [`bios`]: the real-mode IVT and BIOS data area a PC BIOS leaves.
//! - [`pci`]: PCI BARs, interrupt lines and PIRQ routes as a PC BIOS assigns them.
//! - [`report`]: error messages, written to any [`report::Sink`].

#![no_std]

#[cfg(test)]
extern crate alloc;

pub mod acpi_blobs;
pub mod bios;
pub mod e820;
pub mod fw_cfg;
pub mod gzip;
pub mod layout;
pub mod linux;
pub mod multiboot;
pub mod pci;
pub mod report;

/// Little-endian field readers that never panic: out-of-range reads give 0.
pub(crate) mod le {
    pub fn u8_at(b: &[u8], at: usize) -> u8 {
        b.get(at).copied().unwrap_or(0)
    }
    pub fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes([u8_at(b, at), u8_at(b, at + 1)])
    }
    pub fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from(u16_at(b, at)) | u32::from(u16_at(b, at + 2)) << 16
    }
    pub fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from(u32_at(b, at)) | u64::from(u32_at(b, at + 4)) << 32
    }
    pub fn put16(b: &mut [u8], at: usize, v: u16) {
        b[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub fn put32(b: &mut [u8], at: usize, v: u32) {
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub fn put64(b: &mut [u8], at: usize, v: u64) {
        b[at..at + 8].copy_from_slice(&v.to_le_bytes());
    }
}
