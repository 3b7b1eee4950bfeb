//! The blkif ring's requests and responses on x86-64 (public/io/blkif.h,
//! as facts): byte offsets, operations and status values.

/// `struct blkif_request` is 112 bytes: the ring's slot, 32 a page.
pub const REQUEST_LEN: usize = 112;
/// `struct blkif_response`: id u64, operation u8, status i16 (16 bytes).
pub const RESPONSE_LEN: usize = 16;

/// Request fields (`struct blkif_request`).
pub const OPERATION: usize = 0;
pub const NR_SEGMENTS: usize = 1;
pub const ID: usize = 8;
pub const SECTOR_NUMBER: usize = 16;
pub const SEG: usize = 24;
/// `struct blkif_request_indirect`: indirect_op u8 @1, nr_segments u16 @2,
/// id @8, sector_number @16, handle @24, indirect_grefs[8] @28.
pub const INDIRECT_OP: usize = 1;
pub const INDIRECT_NR_SEGMENTS: usize = 2;
pub const INDIRECT_GREFS: usize = 28;

/// Response fields (`struct blkif_response`).
pub const RSP_ID: usize = 0;
pub const RSP_OPERATION: usize = 8;
pub const RSP_STATUS: usize = 10;

/// `BLKIF_OP_*`.
pub mod op {
    pub const READ: u8 = 0;
    pub const WRITE: u8 = 1;
    pub const WRITE_BARRIER: u8 = 2;
    pub const FLUSH_DISKCACHE: u8 = 3;
    pub const DISCARD: u8 = 5;
    pub const INDIRECT: u8 = 6;
}

/// `BLKIF_RSP_*`.
pub mod status {
    pub const OKAY: i16 = 0;
    pub const ERROR: i16 = -1;
    pub const EOPNOTSUPP: i16 = -2;
}

/// Segments in a direct request (`BLKIF_MAX_SEGMENTS_PER_REQUEST`).
pub const MAX_SEGMENTS_PER_REQUEST: usize = 11;
/// `struct blkif_request_segment`: gref u32, first_sect u8, last_sect u8, pad.
pub const SEGMENT_LEN: usize = 8;
/// Segments an indirect page holds (4096 / 8).
pub const SEGMENTS_PER_INDIRECT_PAGE: usize = 512;
/// `BLKIF_MAX_INDIRECT_PAGES_PER_REQUEST`.
pub const MAX_INDIRECT_PAGES: usize = 8;
/// The last sector of a 4 KiB page in 512-byte sectors: `last_sect` ≤ 7.
pub const LAST_SECTOR_IN_PAGE: u8 = 7;
/// `info` bit of a read-only disk (`VDISK_READONLY`).
pub const VDISK_READONLY: u32 = 4;

/// One data page of a request: sectors `first_sect..=last_sect` of the
/// granted page, contiguous on the disk with the request's other segments.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Segment {
    pub gref: u32,
    pub first_sect: u8,
    pub last_sect: u8,
}

impl Segment {
    /// The segment in the 8 bytes at `b`.
    pub fn parse(b: &[u8]) -> Segment {
        Segment {
            gref: le32(b, 0),
            first_sect: b.get(4).copied().unwrap_or(0),
            last_sect: b.get(5).copied().unwrap_or(0),
        }
    }

    /// Whether the sector range lies in one page (blkif.h).
    pub fn valid(&self) -> bool {
        self.first_sect <= self.last_sect && self.last_sect <= LAST_SECTOR_IN_PAGE
    }

    /// 512-byte sectors the segment moves.
    pub fn sectors(&self) -> u64 {
        u64::from(self.last_sect - self.first_sect) + 1
    }
}

/// Little-endian fields of a copied request; 0 past its end.
pub fn le16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_le_bytes([s[0], s[1]]))
}

pub fn le32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .map_or(0, |s| u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

pub fn le64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_le_bytes)
}

/// The response to the request with `id`.
pub fn response(id: u64, operation: u8, status: i16) -> [u8; RESPONSE_LEN] {
    let mut r = [0u8; RESPONSE_LEN];
    r[RSP_ID..RSP_ID + 8].copy_from_slice(&id.to_le_bytes());
    r[RSP_OPERATION] = operation;
    r[RSP_STATUS..RSP_STATUS + 2].copy_from_slice(&status.to_le_bytes());
    r
}
