//! `opt/keel/acpi`: ACPI tables already placed at their guest-physical
//! addresses (acpi-gen's `AcpiTables::place`), for the shim to copy.
//!
//! Format, all little-endian:
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `KEELACPI` |
//! | 8 | 2 | version, 1 |
//! | 10 | 2 | PM base: the I/O base the FADT's PM1a blocks use; the shim programs the PIIX4's PMBA with it (0: leave PMBA alone) |
//! | 12 | 4 | number of blobs |
//! | 16 | ... | the blobs |
//!
//! Each blob: u64 guest-physical address, u64 length, the bytes, then zeros
//! up to a multiple of 8. A blob must lie in RAM (per `etc/e820`) or in the
//! BIOS area 0xE0000-0xFFFFF; the RSDP is the blob that starts with
//! `RSD PTR `.

use crate::le::{u16_at, u32_at, u64_at};
use crate::report::Error;

pub const MAGIC: [u8; 8] = *b"KEELACPI";
pub const VERSION: u16 = 1;
pub const HEADER_LEN: usize = 16;
pub const BLOB_HEADER_LEN: usize = 16;
/// The RSDP signature (ACPI 6.5 5.2.5.3).
pub const RSDP_SIGNATURE: [u8; 8] = *b"RSD PTR ";
/// Most blobs a container may hold.
pub const MAX_BLOBS: u32 = 16;

/// The container header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub pm_base: u16,
    pub count: u32,
}

pub fn parse_header(b: &[u8; HEADER_LEN]) -> Result<Header, Error> {
    if b[0..8] != MAGIC {
        return Err(Error::BadAcpi("no KEELACPI magic"));
    }
    if u16_at(b, 8) != VERSION {
        return Err(Error::BadAcpi("unknown version (the shim reads version 1)"));
    }
    let count = u32_at(b, 12);
    if count > MAX_BLOBS {
        return Err(Error::BadAcpi("more than 16 blobs"));
    }
    Ok(Header {
        pm_base: u16_at(b, 10),
        count,
    })
}

/// One blob's header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Blob {
    pub address: u64,
    pub len: u64,
}

impl Blob {
    /// The bytes that follow the header: the length padded to 8.
    pub fn stored_len(&self) -> u64 {
        self.len.div_ceil(8) * 8
    }

    pub fn end(&self) -> u64 {
        self.address + self.len
    }
}

/// Parses a blob header that `remaining` bytes of the file follow.
pub fn parse_blob(b: &[u8; BLOB_HEADER_LEN], remaining: u64) -> Result<Blob, Error> {
    let blob = Blob {
        address: u64_at(b, 0),
        len: u64_at(b, 8),
    };
    if blob.len == 0 || blob.len > remaining || blob.address.checked_add(blob.len).is_none() {
        return Err(Error::BadAcpi(
            "a blob's length runs past the end of the file",
        ));
    }
    Ok(blob)
}

/// The container holding `blobs` (address, bytes), with `pm_base`.
/// Bytes [`encode`] writes for these blobs.
pub fn encoded_len(blobs: &[(u64, &[u8])]) -> usize {
    HEADER_LEN
        + blobs
            .iter()
            .map(|(_, b)| BLOB_HEADER_LEN + b.len().div_ceil(8) * 8)
            .sum::<usize>()
}

/// Writes the container for `blobs` into `out`, which must be
/// [`encoded_len`] bytes long (hosts that build the opt/keel/acpi file:
/// Keel and xtask). Allocation-free, so the shim itself needs no allocator.
pub fn encode(pm_base: u16, blobs: &[(u64, &[u8])], out: &mut [u8]) -> Result<(), Error> {
    if out.len() != encoded_len(blobs) || blobs.len() > MAX_BLOBS as usize {
        return Err(Error::BadAcpi("the output does not fit the blobs"));
    }
    out.fill(0);
    out[0..8].copy_from_slice(&MAGIC);
    out[8..10].copy_from_slice(&VERSION.to_le_bytes());
    out[10..12].copy_from_slice(&pm_base.to_le_bytes());
    out[12..16].copy_from_slice(&(blobs.len() as u32).to_le_bytes());
    let mut at = HEADER_LEN;
    for (address, bytes) in blobs {
        out[at..at + 8].copy_from_slice(&address.to_le_bytes());
        out[at + 8..at + 16].copy_from_slice(&(bytes.len() as u64).to_le_bytes());
        at += BLOB_HEADER_LEN;
        out[at..at + bytes.len()].copy_from_slice(bytes);
        at += bytes.len().div_ceil(8) * 8;
    }
    Ok(())
}

#[cfg(test)]
fn encode_vec(pm_base: u16, blobs: &[(u64, &[u8])]) -> alloc::vec::Vec<u8> {
    let mut out = alloc::vec![0; encoded_len(blobs)];
    encode(pm_base, blobs, &mut out).unwrap();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encoded_containers_parse_back() {
        let rsdp = *b"RSD PTR 0123456789abcdefghijklmnopqr";
        let tables = [7u8; 13];
        let file = encode_vec(0xB000, &[(0xE0000, &rsdp), (0xFFF0000, &tables)]);
        let h = parse_header(file[..16].try_into().unwrap()).unwrap();
        assert_eq!(
            h,
            Header {
                pm_base: 0xB000,
                count: 2
            }
        );
        let mut at = HEADER_LEN;
        let mut seen = alloc::vec::Vec::new();
        for _ in 0..h.count {
            let rest = (file.len() - at - BLOB_HEADER_LEN) as u64;
            let b = parse_blob(file[at..at + 16].try_into().unwrap(), rest).unwrap();
            at += BLOB_HEADER_LEN;
            seen.push((b.address, file[at..at + b.len as usize].to_vec()));
            at += b.stored_len() as usize;
        }
        assert_eq!(at, file.len());
        assert_eq!(seen[0], (0xE0000, rsdp.to_vec()));
        assert_eq!(seen[1], (0xFFF0000, tables.to_vec()));
        assert_eq!(file.len() % 8, 0);
    }

    #[test]
    fn malformed_containers_are_refused() {
        let mut file = encode_vec(0, &[(0x1000, &[1, 2, 3])]);
        assert!(encode(0, &[(0x1000, &[1, 2, 3])], &mut [0u8; 8]).is_err());
        let blob: [u8; 16] = file[16..32].try_into().unwrap();
        assert!(parse_blob(&blob, 2).is_err());
        assert!(parse_blob(&blob, 8).is_ok());
        file[8] = 2;
        assert!(parse_header(file[..16].try_into().unwrap()).is_err());
        file[0] = b'X';
        assert_eq!(
            parse_header(file[..16].try_into().unwrap()),
            Err(Error::BadAcpi("no KEELACPI magic"))
        );
    }
}
