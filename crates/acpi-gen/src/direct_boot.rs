//! The tables of a VM that Keel's BIOS shim boots directly (no SeaBIOS to run
//! the table loader): the PM block at the legacy base the shim programs, the
//! ACPI tables in the last 128 KiB of RAM below 4 GiB, the RSDP at 0xE0000
//! where operating systems also scan for it, and the SMBIOS entry point and
//! structure table in the BIOS area's F segment, where SeaBIOS puts a table
//! as small as ours and where OSes scan for `_SM_` (DSP0134 5.2.1: a 16-byte
//! boundary in 0xF0000-0xFFFFF). The shim's fw_cfg contract
//! (firmware/README.md) carries the result.

use crate::{pc_layout, AcpiTables, Blob, Error, MachineConfig, SmbiosTables};

/// Where the RSDP goes.
pub const RSDP_ADDRESS: u64 = 0xE_0000;
/// How far below the top of low RAM the tables start.
pub const TABLES_BELOW_TOP: u64 = 128 * 1024;
/// Where the SMBIOS entry point goes; the structure table follows it.
pub const SMBIOS_ENTRY_ADDRESS: u64 = 0xF_0000;
/// Where the SMBIOS structure table goes (16-byte aligned, after the entry).
pub const SMBIOS_TABLE_ADDRESS: u64 = SMBIOS_ENTRY_ADDRESS + 0x20;
/// The end of the room for SMBIOS: the shim's real-mode handlers start
/// here (firmware/src/bios.rs, `STUBS`).
pub const SMBIOS_LIMIT: u64 = 0xF_F000;

/// The placed blobs `[rsdp, acpi tables, smbios entry point, smbios
/// structure table]` and the PM base they describe.
pub fn placed_tables(vcpus: u32, ram_bytes: u64) -> Result<(u16, [Blob; 4]), Error> {
    placed_tables_below(vcpus, ram_bytes, u64::MAX)
}

/// [`placed_tables`] with the ACPI tables below `top_limit` when that is
/// lower than the top of low RAM: a VM with Xen's pages keeps them in the
/// last pages below the top (E820-reserved), so its tables go under them.
pub fn placed_tables_below(
    vcpus: u32,
    ram_bytes: u64,
    top_limit: u64,
) -> Result<(u16, [Blob; 4]), Error> {
    let mut cfg = MachineConfig::new(vcpus, ram_bytes);
    cfg.pm_base = pc_layout::PM_BASE_LEGACY;
    let tables = AcpiTables::build(&cfg)?;
    let top = cfg.ram_layout().below_4g.min(top_limit);
    let [rsdp, acpi] = tables.place(top - TABLES_BELOW_TOP, RSDP_ADDRESS)?;
    let smbios = SmbiosTables::build(&cfg)?;
    let len = smbios.tables().len() as u64;
    if SMBIOS_TABLE_ADDRESS + len > SMBIOS_LIMIT {
        return Err(Error::BadSmbiosAddress {
            address: SMBIOS_TABLE_ADDRESS,
            len,
        });
    }
    let entry = smbios.place(SMBIOS_TABLE_ADDRESS)?;
    Ok((
        cfg.pm_base,
        [
            rsdp,
            acpi,
            Blob {
                address: SMBIOS_ENTRY_ADDRESS,
                bytes: entry.to_vec(),
            },
            Blob {
                address: SMBIOS_TABLE_ADDRESS,
                bytes: smbios.tables().to_vec(),
            },
        ],
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sum(b: &[u8]) -> u8 {
        b.iter().fold(0u8, |s, &x| s.wrapping_add(x))
    }

    #[test]
    fn rsdp_in_the_bios_area_and_tables_at_the_top_of_ram() {
        let (pm, [rsdp, tables, _, _]) = placed_tables(2, 256 << 20).unwrap();
        assert_eq!(pm, 0xB000);
        assert_eq!(rsdp.address, 0xE0000);
        assert_eq!(&rsdp.bytes[..8], b"RSD PTR ");
        assert_eq!(tables.address, (256 << 20) - TABLES_BELOW_TOP);
        assert!(tables.address + tables.bytes.len() as u64 <= 256 << 20);
        assert!(placed_tables(0, 256 << 20).is_err());
    }

    /// DSP0134 5.2.1: `_SM_` on a 16-byte boundary in 0xF0000-0xFFFFF, its
    /// checksum over the entry point length (byte 5) and the intermediate
    /// one over the 15 bytes from `_DMI_` zero, the table address (0x18) and
    /// length (0x16) those of the table, which starts with type 0.
    #[test]
    fn smbios_in_the_f_segment_below_the_shims_handlers() {
        let (_, [_, _, entry, table]) = placed_tables(4, 1 << 30).unwrap();
        let e = &entry.bytes;
        assert_eq!(entry.address % 16, 0);
        assert!((0xF_0000..0x10_0000).contains(&entry.address));
        assert_eq!(&e[..4], b"_SM_");
        assert_eq!(sum(&e[..usize::from(e[5])]), 0);
        assert_eq!(&e[0x10..0x15], b"_DMI_");
        assert_eq!(sum(&e[0x10..0x1F]), 0);
        let addr = u32::from_le_bytes(e[0x18..0x1C].try_into().unwrap());
        let len = u16::from_le_bytes(e[0x16..0x18].try_into().unwrap());
        assert_eq!(u64::from(addr), table.address);
        assert_eq!(usize::from(len), table.bytes.len());
        assert!(entry.address + e.len() as u64 <= table.address);
        assert!(table.address + table.bytes.len() as u64 <= 0xF_F000);
        assert_eq!(table.bytes[0], 0, "type 0 first");
    }
}
