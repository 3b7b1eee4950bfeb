//! Root System Description Pointer (ACPI 6.5 5.2.5.3), revision 2: the
//! ACPI 1.0 checksum covers bytes 0..20, the extended checksum all 36.

use super::OEM_ID;

pub const RSDP_LEN: usize = 36;
const V1_LEN: usize = 20;
pub const CHECKSUM: usize = 8;
pub const RSDT_ADDRESS: usize = 16;
pub const XSDT_ADDRESS: usize = 24;
pub const EXTENDED_CHECKSUM: usize = 32;

pub fn rsdp(rsdt: u32, xsdt: u64) -> [u8; RSDP_LEN] {
    let mut r = [0u8; RSDP_LEN];
    r[0..8].copy_from_slice(b"RSD PTR ");
    r[9..15].copy_from_slice(&OEM_ID);
    r[15] = 2;
    r[RSDT_ADDRESS..RSDT_ADDRESS + 4].copy_from_slice(&rsdt.to_le_bytes());
    r[20..24].copy_from_slice(&(RSDP_LEN as u32).to_le_bytes());
    r[XSDT_ADDRESS..XSDT_ADDRESS + 8].copy_from_slice(&xsdt.to_le_bytes());
    fix_checksums(&mut r);
    r
}

/// The 1.0 checksum first: the extended one covers it.
pub fn fix_checksums(r: &mut [u8; RSDP_LEN]) {
    super::fix_checksum(&mut r[..V1_LEN], CHECKSUM);
    super::fix_checksum(&mut r[..], EXTENDED_CHECKSUM);
}
