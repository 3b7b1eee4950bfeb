//! The fw_cfg hand-off QEMU uses and unmodified SeaBIOS consumes: the tables
//! as unplaced files plus a BIOS linker/loader script (QEMU's
//! `hw/acpi/bios-linker-loader.c` documents the format) that tells the
//! firmware where to allocate each file, which pointers to relocate and which
//! checksums to fix. SeaBIOS runs the script and then takes the RSDP from the
//! file it allocated in the F segment.
//!
//! A script entry is 128 bytes, little-endian: a `u32` command, then
//! - ALLOCATE (1): file name (56 bytes, NUL-padded), `u32` alignment, `u8` zone
//!   (1 = HIGH, anywhere in RAM; 2 = FSEG, the 0xE0000-0xFFFFF BIOS area);
//! - ADD_POINTER (2): destination file, source file, `u32` offset, `u8` size:
//!   add the source file's address to the `size`-byte value at `offset` in the
//!   destination;
//! - ADD_CHECKSUM (3): file, `u32` result offset, `u32` start, `u32` length:
//!   make `[start, start + length)` sum to zero by adjusting the byte at the
//!   result offset.
//!
//! Commands run in order, so the pointers come before the checksums over them.

use alloc::vec::Vec;

use crate::acpi::{AcpiTables, CHECKSUM_OFFSET, RSDP_ALIGN, TABLES_ALIGN};

/// fw_cfg file names.
pub const ACPI_TABLES_FILE: &str = "etc/acpi/tables";
pub const ACPI_RSDP_FILE: &str = "etc/acpi/rsdp";
pub const TABLE_LOADER_FILE: &str = "etc/table-loader";

/// Linker/loader commands and zones.
pub const COMMAND_ALLOCATE: u32 = 1;
pub const COMMAND_ADD_POINTER: u32 = 2;
pub const COMMAND_ADD_CHECKSUM: u32 = 3;
pub const ZONE_HIGH: u8 = 1;
pub const ZONE_FSEG: u8 = 2;
/// Size of one script entry and of a file name in it (fw_cfg's file name limit).
pub const ENTRY_LEN: usize = 128;
pub const FILE_NAME_LEN: usize = 56;

/// RSDP checksum fields (ACPI 6.5 5.2.5.3).
const RSDP_CHECKSUM: u32 = 8;
const RSDP_V1_LEN: u32 = 20;
const RSDP_EXTENDED_CHECKSUM: u32 = 32;

/// The three fw_cfg files for the ACPI tables.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwCfgAcpi {
    /// `etc/acpi/tables`: every table but the RSDP.
    pub tables: Vec<u8>,
    /// `etc/acpi/rsdp`.
    pub rsdp: Vec<u8>,
    /// `etc/table-loader`: the linker/loader script.
    pub table_loader: Vec<u8>,
}

impl FwCfgAcpi {
    /// The files as (fw_cfg name, contents), in the order to register them.
    pub fn files(&self) -> [(&'static str, &[u8]); 3] {
        [
            (ACPI_TABLES_FILE, &self.tables),
            (ACPI_RSDP_FILE, &self.rsdp),
            (TABLE_LOADER_FILE, &self.table_loader),
        ]
    }
}

fn entry(command: u32) -> [u8; ENTRY_LEN] {
    let mut e = [0u8; ENTRY_LEN];
    e[..4].copy_from_slice(&command.to_le_bytes());
    e
}

fn put_name(e: &mut [u8; ENTRY_LEN], at: usize, name: &str) {
    // Names here are constants shorter than 56 bytes; the last byte stays NUL.
    let n = name.len().min(FILE_NAME_LEN - 1);
    e[at..at + n].copy_from_slice(&name.as_bytes()[..n]);
}

fn allocate(file: &str, align: u32, zone: u8) -> [u8; ENTRY_LEN] {
    let mut e = entry(COMMAND_ALLOCATE);
    put_name(&mut e, 4, file);
    e[60..64].copy_from_slice(&align.to_le_bytes());
    e[64] = zone;
    e
}

fn add_pointer(dest: &str, src: &str, offset: u32, size: u8) -> [u8; ENTRY_LEN] {
    let mut e = entry(COMMAND_ADD_POINTER);
    put_name(&mut e, 4, dest);
    put_name(&mut e, 60, src);
    e[116..120].copy_from_slice(&offset.to_le_bytes());
    e[120] = size;
    e
}

fn add_checksum(file: &str, offset: u32, start: u32, len: u32) -> [u8; ENTRY_LEN] {
    let mut e = entry(COMMAND_ADD_CHECKSUM);
    put_name(&mut e, 4, file);
    e[60..64].copy_from_slice(&offset.to_le_bytes());
    e[64..68].copy_from_slice(&start.to_le_bytes());
    e[68..72].copy_from_slice(&len.to_le_bytes());
    e
}

impl AcpiTables {
    /// The fw_cfg files for SeaBIOS (or any firmware implementing QEMU's loader).
    /// The blob goes in HIGH memory, 64-byte aligned for the FACS; the RSDP in
    /// the F segment, 16-byte aligned, where OSes scan for it.
    pub fn fw_cfg(&self) -> FwCfgAcpi {
        let mut script: Vec<[u8; ENTRY_LEN]> = Vec::new();
        script.push(allocate(ACPI_TABLES_FILE, TABLES_ALIGN, ZONE_HIGH));
        script.push(allocate(ACPI_RSDP_FILE, RSDP_ALIGN, ZONE_FSEG));
        for p in self.pointers() {
            script.push(add_pointer(
                ACPI_TABLES_FILE,
                ACPI_TABLES_FILE,
                p.at as u32,
                p.size,
            ));
        }
        for p in self.rsdp_pointers() {
            script.push(add_pointer(
                ACPI_RSDP_FILE,
                ACPI_TABLES_FILE,
                p.at as u32,
                p.size,
            ));
        }
        for c in self.checksummed() {
            script.push(add_checksum(
                ACPI_TABLES_FILE,
                (c.start + CHECKSUM_OFFSET) as u32,
                c.start as u32,
                c.len as u32,
            ));
        }
        script.push(add_checksum(ACPI_RSDP_FILE, RSDP_CHECKSUM, 0, RSDP_V1_LEN));
        script.push(add_checksum(
            ACPI_RSDP_FILE,
            RSDP_EXTENDED_CHECKSUM,
            0,
            self.rsdp().len() as u32,
        ));
        FwCfgAcpi {
            tables: self.blob().to_vec(),
            rsdp: self.rsdp().to_vec(),
            table_loader: script.concat(),
        }
    }
}
