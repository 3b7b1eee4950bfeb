//! The tables of a VM that Keel's BIOS shim boots directly (no SeaBIOS to run
//! the table loader): the PM block at the legacy base the shim programs, the
//! tables in the last 128 KiB of RAM below 4 GiB, the RSDP at 0xE0000 where
//! operating systems also scan for it. The shim's fw_cfg contract
//! (firmware/README.md) carries the result.

use crate::{pc_layout, AcpiTables, Blob, Error, MachineConfig};

/// Where the RSDP goes.
pub const RSDP_ADDRESS: u64 = 0xE_0000;
/// How far below the top of low RAM the tables start.
pub const TABLES_BELOW_TOP: u64 = 128 * 1024;

/// The placed tables `[rsdp, tables]` and the PM base they describe.
pub fn placed_tables(vcpus: u32, ram_bytes: u64) -> Result<(u16, [Blob; 2]), Error> {
    let mut cfg = MachineConfig::new(vcpus, ram_bytes);
    cfg.pm_base = pc_layout::PM_BASE_LEGACY;
    let tables = AcpiTables::build(&cfg)?;
    let top = cfg.ram_layout().below_4g;
    let placed = tables.place(top - TABLES_BELOW_TOP, RSDP_ADDRESS)?;
    Ok((cfg.pm_base, placed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rsdp_in_the_bios_area_and_tables_at_the_top_of_ram() {
        let (pm, [rsdp, tables]) = placed_tables(2, 256 << 20).unwrap();
        assert_eq!(pm, 0xB000);
        assert_eq!(rsdp.address, 0xE0000);
        assert_eq!(&rsdp.bytes[..8], b"RSD PTR ");
        assert_eq!(tables.address, (256 << 20) - TABLES_BELOW_TOP);
        assert!(tables.address + tables.bytes.len() as u64 <= 256 << 20);
        assert!(placed_tables(0, 256 << 20).is_err());
    }
}
