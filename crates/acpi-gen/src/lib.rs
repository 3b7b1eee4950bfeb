//! Firmware tables for Keel's guest platform (QEMU's i440FX/PIIX `-machine pc`):
//! ACPI (RSDP, XSDT, RSDT, FADT, FACS, DSDT, MADT, HPET, WAET) and SMBIOS 2.8,
//! for a [`MachineConfig`].
//!
//! Two ways to hand them to a guest:
//! - fw_cfg files for unmodified SeaBIOS: [`AcpiTables::fw_cfg`] (`etc/acpi/tables`,
//!   `etc/acpi/rsdp`, `etc/table-loader`) and [`SmbiosTables::fw_cfg`]
//!   (`etc/smbios/smbios-anchor`, `etc/smbios/smbios-tables`);
//! - direct placement by Keel's own BIOS shim: [`AcpiTables::place`] and
//!   [`SmbiosTables::place`].
//!
//! `no_std` + `alloc`; every configuration error is an [`Error`] value.

#![no_std]

extern crate alloc;

pub mod acpi;
pub mod aml;
pub mod config;
pub mod direct_boot;
mod error;
pub mod fw_cfg;
pub mod smbios;

pub use acpi::{AcpiTables, Blob};
pub use config::{pc_layout, MachineConfig, RamLayout, MAX_RAM, MAX_VCPUS, MIN_RAM};
pub use error::Error;
pub use fw_cfg::FwCfgAcpi;
pub use smbios::{FwCfgSmbios, SmbiosTables};
