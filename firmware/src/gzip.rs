//! gzip-compressed kernels (RFC 1952), which GRUB decompresses before it
//! looks for a multiboot header: the member header, the DEFLATE stream
//! (RFC 1951, decoded by `miniz_oxide`) and the trailer's CRC-32 and size.

use miniz_oxide::inflate::core::{decompress, inflate_flags, DecompressorOxide};
use miniz_oxide::inflate::TINFLStatus;

use crate::le::{u16_at, u32_at};
use crate::report::Error;

/// ID1, ID2 (RFC 1952, 2.3.1).
pub const MAGIC: [u8; 2] = [0x1F, 0x8B];
/// CM = 8: deflate, the only method defined.
const CM_DEFLATE: u8 = 8;
const FHCRC: u8 = 1 << 1;
const FEXTRA: u8 = 1 << 2;
const FNAME: u8 = 1 << 3;
const FCOMMENT: u8 = 1 << 4;
const FRESERVED: u8 = 0xE0;

/// Whether `b` starts like a gzip member.
pub fn is_gzip(b: &[u8]) -> bool {
    b.len() >= 2 && b[..2] == MAGIC
}

/// A parsed member: where its DEFLATE data lies in the file, and the
/// trailer's CRC-32 and ISIZE (the uncompressed size modulo 2^32).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Member {
    pub data: (usize, usize),
    pub crc32: u32,
    pub isize: u32,
}

/// Parses the header and trailer of a one-member gzip file.
pub fn parse(b: &[u8]) -> Result<Member, Error> {
    if b.len() < 18 || !is_gzip(b) {
        return Err(Error::BadGzip("shorter than a gzip header and trailer"));
    }
    if b[2] != CM_DEFLATE {
        return Err(Error::BadGzip("compression method is not deflate"));
    }
    let flg = b[3];
    if flg & FRESERVED != 0 {
        return Err(Error::BadGzip("reserved header flags set"));
    }
    let mut at = 10;
    if flg & FEXTRA != 0 {
        at += 2 + usize::from(u16_at(b, at));
    }
    for flag in [FNAME, FCOMMENT] {
        if flg & flag != 0 {
            let nul = b
                .get(at..)
                .and_then(|r| r.iter().position(|&c| c == 0))
                .ok_or(Error::BadGzip("the header's name or comment has no end"))?;
            at += nul + 1;
        }
    }
    if flg & FHCRC != 0 {
        at += 2;
    }
    let end = b.len() - 8;
    if at > end {
        return Err(Error::BadGzip("the header runs into the trailer"));
    }
    Ok(Member {
        data: (at, end),
        crc32: u32_at(b, end),
        isize: u32_at(b, end + 4),
    })
}

/// CRC-32 (ISO 3309, as RFC 1952 8. specifies it), bitwise with a table
/// made on the stack.
pub fn crc32(data: &[u8]) -> u32 {
    let mut table = [0u32; 256];
    for (i, t) in table.iter_mut().enumerate() {
        let mut c = i as u32;
        for _ in 0..8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
        }
        *t = c;
    }
    let mut c = !0u32;
    for &b in data {
        c = table[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// Decompresses member `m` of `file` into `out`, which must be exactly
/// `m.isize` bytes; checks that the stream ends there and the CRC-32.
pub fn inflate(
    file: &[u8],
    m: &Member,
    out: &mut [u8],
    state: &mut DecompressorOxide,
) -> Result<(), Error> {
    state.init();
    let input = file
        .get(m.data.0..m.data.1)
        .ok_or(Error::BadGzip("the header runs into the trailer"))?;
    let flags = inflate_flags::TINFL_FLAG_USING_NON_WRAPPING_OUTPUT_BUF;
    let (status, _, written) = decompress(state, input, out, 0, flags);
    match status {
        TINFLStatus::Done if written == out.len() => {}
        TINFLStatus::Done => {
            return Err(Error::BadGzip(
                "the data is shorter than the trailer's size",
            ))
        }
        TINFLStatus::HasMoreOutput => {
            return Err(Error::BadGzip("the data is longer than the trailer's size"))
        }
        _ => return Err(Error::BadGzip("the deflate data is corrupt or cut short")),
    }
    if crc32(out) != m.crc32 {
        return Err(Error::BadGzip("CRC-32 mismatch"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::boxed::Box;
    use alloc::vec;
    use alloc::vec::Vec;

    /// A gzip member with stored (uncompressed) deflate blocks, built by
    /// hand from RFC 1951 3.2.4 so the test does not trust the decoder's
    /// own encoder; `name` adds an FNAME field.
    pub fn stored_gzip(data: &[u8], name: Option<&[u8]>) -> Vec<u8> {
        let mut f = vec![0x1F, 0x8B, 8, if name.is_some() { FNAME } else { 0 }];
        f.extend_from_slice(&[0, 0, 0, 0, 0, 3]);
        if let Some(n) = name {
            f.extend_from_slice(n);
            f.push(0);
        }
        let chunks: Vec<&[u8]> = if data.is_empty() {
            vec![&[][..]]
        } else {
            data.chunks(65535).collect()
        };
        for (i, c) in chunks.iter().enumerate() {
            f.push(u8::from(i + 1 == chunks.len())); // BFINAL, BTYPE = 00
            let len = c.len() as u16;
            f.extend_from_slice(&len.to_le_bytes());
            f.extend_from_slice(&(!len).to_le_bytes());
            f.extend_from_slice(c);
        }
        f.extend_from_slice(&crc32(data).to_le_bytes());
        f.extend_from_slice(&(data.len() as u32).to_le_bytes());
        f
    }

    fn run(f: &[u8]) -> Result<Vec<u8>, Error> {
        let m = parse(f)?;
        let mut out = vec![0u8; m.isize as usize];
        let mut st = Box::new(DecompressorOxide::new());
        inflate(f, &m, &mut out, &mut st)?;
        Ok(out)
    }

    #[test]
    fn crc32_check_value() {
        // The CRC-32 check value of "123456789" (ISO 3309 / ITU-T V.42).
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn stored_blocks_round_trip() {
        let data: Vec<u8> = (0..200_000u32).map(|i| ((i * 7) >> 3) as u8).collect();
        let f = stored_gzip(&data, Some(b"kernel"));
        assert!(is_gzip(&f));
        assert_eq!(run(&f).unwrap(), data);
    }

    #[test]
    fn fixed_huffman_block() {
        // "a" in one fixed-Huffman block (RFC 1951 3.2.6), as gzip -n emits it.
        let f = [
            0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 3, 0x4b, 0x04, 0x00, 0x43, 0xbe, 0xb7, 0xe8, 1, 0, 0,
            0,
        ];
        assert_eq!(run(&f).unwrap(), b"a");
    }

    #[test]
    fn bad_gzip_is_an_error() {
        let data = b"multiboot kernel bytes".repeat(10);
        let good = stored_gzip(&data, None);
        let mut crc = good.clone();
        let n = crc.len();
        crc[n - 8] ^= 1;
        assert_eq!(run(&crc), Err(Error::BadGzip("CRC-32 mismatch")));
        let mut size = good.clone();
        size[n - 4] = size[n - 4].wrapping_sub(1);
        assert!(run(&size).is_err());
        size[n - 4] = size[n - 4].wrapping_add(2);
        assert!(run(&size).is_err());
        let mut cut = good[..good.len() - 20].to_vec();
        cut.extend_from_slice(&good[n - 8..]);
        assert!(run(&cut).is_err());
        assert!(parse(&good[..10]).is_err());
        let mut method = good.clone();
        method[2] = 7;
        assert!(parse(&method).is_err());
        let mut name = stored_gzip(&data, Some(b"x"));
        name[3] |= FNAME;
        let l = name.len();
        for b in &mut name[10..l - 8] {
            if *b == 0 {
                *b = 1;
            }
        }
        assert!(run(&name).is_err());
    }
}
