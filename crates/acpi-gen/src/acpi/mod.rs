//! The ACPI table set (ACPI 6.5 chapter 5): built once per VM as one blob of
//! every table but the RSDP, with a list of the pointers between tables and of
//! the checksums to fix once the blob's address is known. Two consumers place
//! it: SeaBIOS, through the fw_cfg linker/loader script ([`crate::fw_cfg`]), and
//! Keel's own BIOS shim, through [`AcpiTables::place`]. Both apply the same two
//! steps: add the blob's base to every pointer, then fix every checksum.
//!
//! Blob order: FACS (first, so 64-byte alignment of the blob aligns it), DSDT,
//! FADT, MADT, HPET (if present), WAET, RSDT, XSDT.

mod dsdt;
mod facs;
mod fadt;
mod hpet;
mod madt;
mod rsdp;
mod waet;

use alloc::vec::Vec;

use crate::{Error, MachineConfig};

pub use fadt::{flags as fadt_flags, IAPC_8042, IAPC_LEGACY_DEVICES};
pub use madt::{INTI_ACTIVE_HIGH_LEVEL, INTI_CONFORMING, PCAT_COMPAT};

/// OEM identification in every table header and the RSDP.
pub const OEM_ID: [u8; 6] = *b"KEEL  ";
pub const OEM_TABLE_ID: [u8; 8] = *b"KEELVM  ";
pub const CREATOR_ID: [u8; 4] = *b"KEEL";
const OEM_REVISION: u32 = 1;
const CREATOR_REVISION: u32 = 1;

/// System description table header length (5.2.6).
pub const HEADER_LEN: usize = 36;
/// Offset of the checksum byte in a table header.
pub const CHECKSUM_OFFSET: usize = 9;
/// Alignment of the blob: the FACS must be 64-byte aligned (5.2.10).
pub const TABLES_ALIGN: u32 = 64;
/// Alignment of the RSDP (5.2.5.1: on a 16-byte boundary).
pub const RSDP_ALIGN: u32 = 16;
/// Where OSes scan for the RSDP on a legacy BIOS system (5.2.5.1).
const RSDP_WINDOW: core::ops::RangeInclusive<u64> = 0xE_0000..=0xF_FFFF;

/// A table header with `signature` and `revision`; length and checksum are
/// filled in by [`seal`].
pub(crate) fn header(signature: &[u8; 4], revision: u8) -> Vec<u8> {
    let mut t = Vec::with_capacity(256);
    t.extend_from_slice(signature);
    t.extend_from_slice(&[0; 4]);
    t.push(revision);
    t.push(0);
    t.extend_from_slice(&OEM_ID);
    t.extend_from_slice(&OEM_TABLE_ID);
    t.extend_from_slice(&OEM_REVISION.to_le_bytes());
    t.extend_from_slice(&CREATOR_ID);
    t.extend_from_slice(&CREATOR_REVISION.to_le_bytes());
    t
}

/// Writes the table's length and checksum.
pub(crate) fn seal(table: &mut [u8]) {
    let len = table.len() as u32;
    table[4..8].copy_from_slice(&len.to_le_bytes());
    fix_checksum(table, CHECKSUM_OFFSET);
}

/// Sets `bytes[at]` so that `bytes` sums to zero (mod 256).
pub(crate) fn fix_checksum(bytes: &mut [u8], at: usize) {
    bytes[at] = 0;
    let sum = bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b));
    bytes[at] = sum.wrapping_neg();
}

/// A Generic Address Structure (5.2.3.2).
#[derive(Clone, Copy)]
pub(crate) struct Gas {
    pub space: u8,
    pub bit_width: u8,
    pub bit_offset: u8,
    pub access_size: u8,
    pub address: u64,
}

impl Gas {
    pub const SYSTEM_MEMORY: u8 = 0;
    pub const SYSTEM_IO: u8 = 1;
    pub const ACCESS_BYTE: u8 = 1;
    pub const ACCESS_WORD: u8 = 2;
    pub const ACCESS_DWORD: u8 = 3;

    pub fn io(port: u16, bit_width: u8, access_size: u8) -> Self {
        Gas {
            space: Self::SYSTEM_IO,
            bit_width,
            bit_offset: 0,
            access_size,
            address: u64::from(port),
        }
    }

    pub fn bytes(&self) -> [u8; 12] {
        let mut b = [0; 12];
        b[0] = self.space;
        b[1] = self.bit_width;
        b[2] = self.bit_offset;
        b[3] = self.access_size;
        b[4..].copy_from_slice(&self.address.to_le_bytes());
        b
    }
}

/// A pointer inside the blob: `size` bytes at `at` hold the offset of another
/// table in the blob; placing the blob adds its base address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pointer {
    pub at: usize,
    pub size: u8,
}

/// A checksummed table in the blob: the byte at `start + 9` makes
/// `[start, start + len)` sum to zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Checksummed {
    pub start: usize,
    pub len: usize,
}

/// One placed piece of guest memory.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Blob {
    pub address: u64,
    pub bytes: Vec<u8>,
}

/// Every table of one VM, unplaced.
#[derive(Clone, Debug)]
pub struct AcpiTables {
    blob: Vec<u8>,
    pointers: Vec<Pointer>,
    checksummed: Vec<Checksummed>,
    rsdp: [u8; rsdp::RSDP_LEN],
}

/// Where each table landed in the blob, while building.
struct Builder {
    blob: Vec<u8>,
    pointers: Vec<Pointer>,
    checksummed: Vec<Checksummed>,
}

impl Builder {
    /// Appends a table (8-byte aligned), returning its offset.
    fn push(&mut self, table: &[u8], checksummed: bool) -> usize {
        while !self.blob.len().is_multiple_of(8) {
            self.blob.push(0);
        }
        let start = self.blob.len();
        self.blob.extend_from_slice(table);
        if checksummed {
            self.checksummed.push(Checksummed {
                start,
                len: table.len(),
            });
        }
        start
    }

    /// Records a pointer at `at` (an absolute blob offset) to the table at `target`.
    fn point(&mut self, at: usize, size: u8, target: usize) {
        let bytes = (target as u64).to_le_bytes();
        self.blob[at..at + usize::from(size)].copy_from_slice(&bytes[..usize::from(size)]);
        self.pointers.push(Pointer { at, size });
    }
}

impl AcpiTables {
    /// Builds the tables for `cfg` (validated first).
    pub fn build(cfg: &MachineConfig) -> Result<Self, Error> {
        cfg.validate()?;
        let mut b = Builder {
            blob: Vec::new(),
            pointers: Vec::new(),
            checksummed: Vec::new(),
        };
        let facs = b.push(&facs::facs(), false);
        let dsdt = b.push(&dsdt::dsdt(cfg)?, true);
        let fadt = b.push(&fadt::fadt(cfg), true);
        b.point(fadt + fadt::FIRMWARE_CTRL, 4, facs);
        b.point(fadt + fadt::DSDT, 4, dsdt);
        b.point(fadt + fadt::X_DSDT, 8, dsdt);
        let mut entries = Vec::new();
        entries.push(fadt);
        entries.push(b.push(&madt::madt(cfg), true));
        if cfg.hpet {
            entries.push(b.push(&hpet::hpet(), true));
        }
        entries.push(b.push(&waet::waet(), true));

        let mut rsdt_table = header(b"RSDT", 1);
        rsdt_table.resize(HEADER_LEN + 4 * entries.len(), 0);
        seal(&mut rsdt_table);
        let rsdt = b.push(&rsdt_table, true);
        let mut xsdt_table = header(b"XSDT", 1);
        xsdt_table.resize(HEADER_LEN + 8 * entries.len(), 0);
        seal(&mut xsdt_table);
        let xsdt = b.push(&xsdt_table, true);
        for (i, &e) in entries.iter().enumerate() {
            b.point(rsdt + HEADER_LEN + 4 * i, 4, e);
            b.point(xsdt + HEADER_LEN + 8 * i, 8, e);
        }
        let mut tables = AcpiTables {
            rsdp: rsdp::rsdp(rsdt as u32, xsdt as u64),
            blob: b.blob,
            pointers: b.pointers,
            checksummed: b.checksummed,
        };
        // The unplaced blob is consistent as if placed at 0.
        tables.fix_checksums_in_place();
        Ok(tables)
    }

    fn fix_checksums_in_place(&mut self) {
        for c in &self.checksummed {
            fix_checksum(&mut self.blob[c.start..c.start + c.len], CHECKSUM_OFFSET);
        }
        rsdp::fix_checksums(&mut self.rsdp);
    }

    /// Every table but the RSDP, concatenated, with pointers as offsets into it
    /// (QEMU's `etc/acpi/tables`).
    pub fn blob(&self) -> &[u8] {
        &self.blob
    }

    /// The RSDP with its RSDT/XSDT addresses as offsets into [`AcpiTables::blob`].
    pub fn rsdp(&self) -> &[u8] {
        &self.rsdp
    }

    /// The pointers in the blob that need its base address added.
    pub fn pointers(&self) -> &[Pointer] {
        &self.pointers
    }

    /// The checksummed tables in the blob (all but the FACS).
    pub fn checksummed(&self) -> &[Checksummed] {
        &self.checksummed
    }

    /// The RSDP's pointers into the blob: (offset in the RSDP, size).
    pub fn rsdp_pointers(&self) -> [Pointer; 2] {
        [
            Pointer {
                at: rsdp::RSDT_ADDRESS,
                size: 4,
            },
            Pointer {
                at: rsdp::XSDT_ADDRESS,
                size: 8,
            },
        ]
    }

    /// Bytes the blob needs in guest memory.
    pub fn tables_len(&self) -> usize {
        self.blob.len()
    }

    /// Lays the tables out for direct placement: the blob at `tables_address`
    /// (64-byte aligned, ending below 4 GiB) and the RSDP at `rsdp_address`
    /// (16-byte aligned, in `0xE0000..=0xFFFFF`), with every pointer resolved and
    /// every checksum fixed. Returns `[rsdp, tables]`.
    pub fn place(&self, tables_address: u64, rsdp_address: u64) -> Result<[Blob; 2], Error> {
        let rsdp_len = rsdp::RSDP_LEN as u64;
        if !rsdp_address.is_multiple_of(u64::from(RSDP_ALIGN))
            || !RSDP_WINDOW.contains(&rsdp_address)
            || !RSDP_WINDOW.contains(&(rsdp_address + rsdp_len - 1))
        {
            return Err(Error::BadRsdpAddress {
                address: rsdp_address,
            });
        }
        let len = self.blob.len() as u64;
        let end = tables_address.checked_add(len);
        let overlaps =
            tables_address < rsdp_address + rsdp_len && end.is_some_and(|e| rsdp_address < e);
        if !tables_address.is_multiple_of(u64::from(TABLES_ALIGN))
            || end.is_none_or(|e| e > 1 << 32)
            || overlaps
        {
            return Err(Error::BadTablesAddress {
                address: tables_address,
                len,
            });
        }
        let mut blob = self.blob.clone();
        for p in &self.pointers {
            add_to_pointer(&mut blob, *p, tables_address);
        }
        for c in &self.checksummed {
            fix_checksum(&mut blob[c.start..c.start + c.len], CHECKSUM_OFFSET);
        }
        let mut rsdp = self.rsdp;
        for p in self.rsdp_pointers() {
            add_to_pointer(&mut rsdp, p, tables_address);
        }
        rsdp::fix_checksums(&mut rsdp);
        Ok([
            Blob {
                address: rsdp_address,
                bytes: rsdp.to_vec(),
            },
            Blob {
                address: tables_address,
                bytes: blob,
            },
        ])
    }
}

/// Adds `base` to the little-endian value of `p.size` bytes at `p.at` (the
/// linker/loader's ADD_POINTER).
fn add_to_pointer(bytes: &mut [u8], p: Pointer, base: u64) {
    let n = usize::from(p.size).min(8);
    let mut v = [0u8; 8];
    v[..n].copy_from_slice(&bytes[p.at..p.at + n]);
    let sum = u64::from_le_bytes(v).wrapping_add(base).to_le_bytes();
    bytes[p.at..p.at + n].copy_from_slice(&sum[..n]);
}
