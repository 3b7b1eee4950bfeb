//! SMBIOS 2.8 (DMTF DSP0134 2.8.0): the structure table and the 2.1-style
//! 32-bit entry point (`_SM_` with `_DMI_`), in the two fw_cfg files SeaBIOS
//! reads, `etc/smbios/smbios-anchor` and `etc/smbios/smbios-tables`.
//!
//! SeaBIOS takes the anchor only if it is exactly the 31-byte 2.1 entry point
//! and its structure table length equals the tables file's size; it then
//! copies the tables into its own memory, writes their address into the
//! anchor and fixes both checksums. It keeps a type 0 it is given. Keel's own
//! shim places both with [`SmbiosTables::place`].
//!
//! Handles follow QEMU's scheme, `type << 8 | instance`, so they are unique
//! and stable: 0x0000 (type 0), 0x0100 (1), 0x0300 (3), 0x0400+n (4),
//! 0x1000 (16), 0x1100+n (17), 0x1300+n (19), 0x2000 (32), 0x7F00 (127).
//!
//! Memory is described as QEMU does: 16 GiB memory devices (the last one
//! smaller) and one mapped range per RAM region (below and above 4 GiB).

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::{Error, MachineConfig};

pub const ANCHOR_FILE: &str = "etc/smbios/smbios-anchor";
pub const TABLES_FILE: &str = "etc/smbios/smbios-tables";
/// Length of the 2.1 entry point structure (DSP0134 5.2.1).
pub const ENTRY_POINT_LEN: usize = 0x1F;
/// Intermediate anchor offset and the fields the checksums cover.
const INTERMEDIATE: usize = 0x10;
const INTERMEDIATE_CHECKSUM: usize = 0x15;
const TABLE_LENGTH: usize = 0x16;
const TABLE_ADDRESS: usize = 0x18;
const CHECKSUM: usize = 0x04;

const VENDOR: &str = "Keel";
const PRODUCT: &str = "Keel Virtual Machine";
const VERSION: &str = env!("CARGO_PKG_VERSION");
/// BIOS release date of these tables (mm/dd/yyyy, DSP0134 7.1).
const RELEASE_DATE: &str = "01/01/2025";
const DIMM_MAX: u64 = 16 << 30;
const FOUR_GIB_KIB: u64 = 1 << 22;

/// One structure: its formatted area and its string set.
struct Structure {
    formatted: Vec<u8>,
    strings: Vec<String>,
}

impl Structure {
    fn new(kind: u8, len: u8, handle: u16) -> Self {
        let mut formatted = alloc::vec![0u8; usize::from(len)];
        formatted[0] = kind;
        formatted[1] = len;
        formatted[2..4].copy_from_slice(&handle.to_le_bytes());
        Structure {
            formatted,
            strings: Vec::new(),
        }
    }

    fn u8(&mut self, at: usize, v: u8) -> &mut Self {
        self.formatted[at] = v;
        self
    }

    fn u16(&mut self, at: usize, v: u16) -> &mut Self {
        self.formatted[at..at + 2].copy_from_slice(&v.to_le_bytes());
        self
    }

    fn u32(&mut self, at: usize, v: u32) -> &mut Self {
        self.formatted[at..at + 4].copy_from_slice(&v.to_le_bytes());
        self
    }

    fn u64(&mut self, at: usize, v: u64) -> &mut Self {
        self.formatted[at..at + 8].copy_from_slice(&v.to_le_bytes());
        self
    }

    /// Adds `s` to the string set and stores its 1-based number at `at`.
    fn string(&mut self, at: usize, s: &str) -> &mut Self {
        self.strings.push(s.into());
        self.formatted[at] = self.strings.len() as u8;
        self
    }

    /// Formatted area, each string NUL-terminated, then a final NUL (two NULs if there are none).
    fn encode(&self) -> Vec<u8> {
        let mut out = self.formatted.clone();
        for s in &self.strings {
            out.extend(s.bytes().filter(|&b| b != 0));
            out.push(0);
        }
        if self.strings.is_empty() {
            out.push(0);
        }
        out.push(0);
        out
    }
}

/// The SMBIOS structure table of one VM.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SmbiosTables {
    tables: Vec<u8>,
    count: u16,
    max_structure: u16,
}

/// The two fw_cfg files.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FwCfgSmbios {
    /// `etc/smbios/smbios-anchor`: the entry point with a zero table address.
    pub anchor: Vec<u8>,
    /// `etc/smbios/smbios-tables`.
    pub tables: Vec<u8>,
}

impl SmbiosTables {
    pub fn build(cfg: &MachineConfig) -> Result<Self, Error> {
        cfg.validate()?;
        let mut list = Vec::new();

        // Type 0, BIOS Information (7.1), 2.4+ length.
        let mut t = Structure::new(0, 0x18, 0x0000);
        t.string(0x04, VENDOR)
            .string(0x05, VERSION)
            .u16(0x06, 0xE800)
            .string(0x08, RELEASE_DATE)
            // Characteristics: bit 3, "BIOS characteristics not supported".
            .u64(0x0A, 1 << 3)
            // Extension byte 2: bit 2 targeted content distribution, bit 4 virtual machine.
            .u8(0x13, 1 << 2 | 1 << 4)
            .u8(0x16, 0xFF)
            .u8(0x17, 0xFF);
        list.push(t);

        // Type 1, System Information (7.2).
        let mut t = Structure::new(1, 0x1B, 0x0100);
        t.string(0x04, VENDOR)
            .string(0x05, PRODUCT)
            .string(0x06, VERSION);
        t.formatted[0x08..0x18].copy_from_slice(&smbios_uuid(&cfg.uuid));
        t.u8(0x18, 0x06) // wake-up type: power switch
            .string(0x1A, "Virtual Machine");
        list.push(t);

        // Type 3, System Enclosure (7.4), 2.7+ with no contained elements.
        let mut t = Structure::new(3, 0x16, 0x0300);
        t.string(0x04, VENDOR)
            .u8(0x05, 0x01) // other
            .u8(0x09, 0x03) // boot-up state: safe
            .u8(0x0A, 0x03) // power supply state: safe
            .u8(0x0B, 0x03) // thermal state: safe
            .u8(0x0C, 0x02) // security: unknown
            .u8(0x14, 0x03); // contained element record length
        list.push(t);

        // Type 4, Processor Information (7.5), 2.6+ length; one socket per vCPU.
        for cpu in 0..cfg.vcpus.min(crate::MAX_VCPUS) as u16 {
            let mut t = Structure::new(4, 0x2A, 0x0400 + cpu);
            t.string(0x04, &format!("CPU {cpu}"))
                .u8(0x05, 0x03) // central processor
                .u8(0x06, 0xFE) // family: see family 2
                .string(0x07, VENDOR)
                .string(0x10, "Keel virtual CPU")
                .u16(0x14, 2000) // max speed, MHz (nominal, as QEMU)
                .u16(0x16, 2000) // current speed
                .u8(0x18, 0x41) // socket populated, CPU enabled
                .u8(0x19, 0x01) // upgrade: other
                .u16(0x1A, 0xFFFF) // no cache information
                .u16(0x1C, 0xFFFF)
                .u16(0x1E, 0xFFFF)
                .u8(0x23, 1) // cores
                .u8(0x24, 1) // cores enabled
                .u8(0x25, 1) // threads
                .u16(0x26, 1 << 2) // 64-bit capable
                .u16(0x28, 0x0001); // family 2: other
            list.push(t);
        }

        let ram = cfg.ram_layout();
        let ram_kib = cfg.ram_bytes >> 10;
        let dimms = cfg.ram_bytes.div_ceil(DIMM_MAX) as u16;

        // Type 16, Physical Memory Array (7.17), 2.7+ length.
        let mut t = Structure::new(16, 0x17, 0x1000);
        t.u8(0x04, 0x03) // location: system board
            .u8(0x05, 0x03) // use: system memory
            .u8(0x06, 0x03) // error correction: none
            .u32(0x07, ram_kib.min(0x7FFF_FFFF) as u32)
            .u16(0x0B, 0xFFFE) // no error information structure
            .u16(0x0D, dimms);
        if ram_kib >= 0x8000_0000 {
            t.u32(0x07, 0x8000_0000).u64(0x0F, cfg.ram_bytes);
        }
        list.push(t);

        // Type 17, Memory Device (7.18), 2.8 length.
        let mut left = cfg.ram_bytes;
        for i in 0..dimms {
            let size_mib = left.min(DIMM_MAX) >> 20;
            left -= left.min(DIMM_MAX);
            let mut t = Structure::new(17, 0x28, 0x1100 + i);
            t.u16(0x04, 0x1000)
                .u16(0x06, 0xFFFE)
                .u16(0x08, 64) // total width
                .u16(0x0A, 64) // data width
                .u8(0x0E, 0x09) // form factor: DIMM
                .string(0x10, &format!("DIMM {i}"))
                .u8(0x12, 0x07) // type: RAM
                .u16(0x13, 1 << 1) // type detail: other
                .string(0x17, VENDOR);
            if size_mib < 0x7FFF {
                t.u16(0x0C, size_mib as u16);
            } else {
                t.u16(0x0C, 0x7FFF).u32(0x1C, size_mib as u32);
            }
            list.push(t);
        }

        // Type 19, Memory Array Mapped Address (7.20), 2.7+ length: one per RAM region.
        let mut regions = Vec::new();
        regions.push((0u64, ram.below_4g >> 10));
        if ram.above_4g != 0 {
            regions.push((FOUR_GIB_KIB, FOUR_GIB_KIB + (ram.above_4g >> 10)));
        }
        for (i, &(start_kib, end_kib)) in regions.iter().enumerate() {
            let mut t = Structure::new(19, 0x1F, 0x1300 + i as u16);
            // Ending address is inclusive; MAX_RAM keeps both inside the 32-bit KiB fields.
            t.u32(0x04, start_kib as u32)
                .u32(0x08, (end_kib - 1) as u32)
                .u16(0x0C, 0x1000)
                .u8(0x0E, dimms.min(0xFF) as u8);
            list.push(t);
        }

        // Type 32, System Boot Information (7.33): no errors.
        list.push(Structure::new(32, 0x0B, 0x2000));
        // Type 127, End-of-Table (7.45).
        list.push(Structure::new(127, 0x04, 0x7F00));

        let mut tables = Vec::new();
        let mut max_structure = 0usize;
        for s in &list {
            let e = s.encode();
            max_structure = max_structure.max(e.len());
            tables.extend(e);
        }
        if tables.len() > usize::from(u16::MAX) {
            return Err(Error::TooLarge {
                what: "the SMBIOS structure table",
                len: tables.len(),
                max: usize::from(u16::MAX),
            });
        }
        Ok(SmbiosTables {
            tables,
            count: list.len() as u16,
            max_structure: max_structure as u16,
        })
    }

    /// The structure table.
    pub fn tables(&self) -> &[u8] {
        &self.tables
    }

    /// Number of structures, type 127 included.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// The 2.1 entry point for a structure table at `table_address`, both checksums set.
    pub fn entry_point(&self, table_address: u32) -> [u8; ENTRY_POINT_LEN] {
        let mut e = [0u8; ENTRY_POINT_LEN];
        e[0..4].copy_from_slice(b"_SM_");
        e[0x05] = ENTRY_POINT_LEN as u8;
        e[0x06] = 2;
        e[0x07] = 8;
        e[0x08..0x0A].copy_from_slice(&self.max_structure.to_le_bytes());
        // Entry point revision 0 and the formatted area stay 0.
        e[INTERMEDIATE..INTERMEDIATE + 5].copy_from_slice(b"_DMI_");
        e[TABLE_LENGTH..TABLE_LENGTH + 2]
            .copy_from_slice(&(self.tables.len() as u16).to_le_bytes());
        e[TABLE_ADDRESS..TABLE_ADDRESS + 4].copy_from_slice(&table_address.to_le_bytes());
        e[0x1C..0x1E].copy_from_slice(&self.count.to_le_bytes());
        e[0x1E] = 0x28; // BCD revision 2.8
        let sum = |b: &[u8]| b.iter().fold(0u8, |s, &x| s.wrapping_add(x));
        e[INTERMEDIATE_CHECKSUM] = sum(&e[INTERMEDIATE..]).wrapping_neg();
        e[CHECKSUM] = sum(&e[..INTERMEDIATE]).wrapping_neg();
        e
    }

    /// The fw_cfg files; SeaBIOS fills in the table address.
    pub fn fw_cfg(&self) -> FwCfgSmbios {
        FwCfgSmbios {
            anchor: self.entry_point(0).to_vec(),
            tables: self.tables.clone(),
        }
    }

    /// The entry point for the structure table placed at `table_address`
    /// (the caller copies [`SmbiosTables::tables`] there and the entry point to
    /// a 16-byte boundary in `0xF0000..=0xFFFFF`, where OSes scan for `_SM_`).
    pub fn place(&self, table_address: u64) -> Result<[u8; ENTRY_POINT_LEN], Error> {
        let len = self.tables.len() as u64;
        match u32::try_from(table_address) {
            Ok(a) if table_address + len <= 1 << 32 => Ok(self.entry_point(a)),
            _ => Err(Error::BadSmbiosAddress {
                address: table_address,
                len,
            }),
        }
    }
}

/// The UUID as SMBIOS 2.6+ stores it (7.2.1): the first three fields
/// (time_low, time_mid, time_hi_and_version) little-endian, the rest as written.
fn smbios_uuid(uuid: &[u8; 16]) -> [u8; 16] {
    let mut u = *uuid;
    u[0..4].reverse();
    u[4..6].reverse();
    u[6..8].reverse();
    u
}
