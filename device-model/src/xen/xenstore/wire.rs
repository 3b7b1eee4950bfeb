//! The xenstore wire protocol: message types, the message header and the
//! error names (Xen's public/io/xs_wire.h; semantics in docs/misc/xenstore.txt).

/// Bytes of the message header `xsd_sockmsg` {type, req_id, tx_id, len}, each
/// a little-endian u32.
pub const HEADER_LEN: usize = 16;

/// The most payload one message may carry (xs_wire.h `XENSTORE_PAYLOAD_MAX`).
pub const PAYLOAD_MAX: usize = 4096;

/// The longest absolute path (xs_wire.h `XENSTORE_ABS_PATH_MAX`).
pub const ABS_PATH_MAX: usize = 3072;

/// The longest relative path (xs_wire.h `XENSTORE_REL_PATH_MAX`).
pub const REL_PATH_MAX: usize = 2048;

/// Message types (xs_wire.h `enum xsd_sockmsg_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum MsgType {
    Control = 0,
    Directory = 1,
    Read = 2,
    GetPerms = 3,
    Watch = 4,
    Unwatch = 5,
    TransactionStart = 6,
    TransactionEnd = 7,
    Introduce = 8,
    Release = 9,
    GetDomainPath = 10,
    Write = 11,
    Mkdir = 12,
    Rm = 13,
    SetPerms = 14,
    WatchEvent = 15,
    Error = 16,
    IsDomainIntroduced = 17,
    Resume = 18,
    SetTarget = 19,
    ResetWatches = 21,
    DirectoryPart = 22,
}

impl MsgType {
    /// The type a header names, or `None` for a number Xen does not define
    /// (20 was XS_RESTRICT, since removed).
    pub fn from_u32(t: u32) -> Option<MsgType> {
        use MsgType::*;
        Some(match t {
            0 => Control,
            1 => Directory,
            2 => Read,
            3 => GetPerms,
            4 => Watch,
            5 => Unwatch,
            6 => TransactionStart,
            7 => TransactionEnd,
            8 => Introduce,
            9 => Release,
            10 => GetDomainPath,
            11 => Write,
            12 => Mkdir,
            13 => Rm,
            14 => SetPerms,
            15 => WatchEvent,
            16 => Error,
            17 => IsDomainIntroduced,
            18 => Resume,
            19 => SetTarget,
            21 => ResetWatches,
            22 => DirectoryPart,
            _ => return None,
        })
    }
}

/// The header of every message on the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub msg_type: u32,
    /// Echoed in the reply so the client can match it.
    pub req_id: u32,
    /// The transaction, 0 for none.
    pub tx_id: u32,
    /// Payload bytes after the header.
    pub len: u32,
}

impl Header {
    pub fn from_bytes(b: &[u8; HEADER_LEN]) -> Header {
        let word = |i: usize| u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
        Header {
            msg_type: word(0),
            req_id: word(4),
            tx_id: word(8),
            len: word(12),
        }
    }

    pub fn to_bytes(self) -> [u8; HEADER_LEN] {
        let mut b = [0u8; HEADER_LEN];
        b[0..4].copy_from_slice(&self.msg_type.to_le_bytes());
        b[4..8].copy_from_slice(&self.req_id.to_le_bytes());
        b[8..12].copy_from_slice(&self.tx_id.to_le_bytes());
        b[12..16].copy_from_slice(&self.len.to_le_bytes());
        b
    }
}

/// An error reply: xenstore sends the errno's name, NUL-terminated, in an
/// XS_ERROR message (xs_wire.h `xsd_errors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum XsError {
    /// A malformed request: bad path, missing argument, unknown type.
    Einval,
    /// The requester may not read or write the node.
    Eacces,
    /// A watch with this path and token already exists.
    Eexist,
    /// No such node, transaction or watch.
    Enoent,
    /// A quota is exhausted: node count, store bytes, value size,
    /// transactions.
    Enospc,
    /// An operation Keel's xenstore does not offer.
    Enosys,
    /// A reply would be longer than the payload limit, or the watch quota is
    /// exhausted.
    E2big,
    /// The transaction conflicted with a change made after it started; the
    /// client retries it.
    Eagain,
}

impl XsError {
    /// The name sent on the wire, without the NUL.
    pub fn name(self) -> &'static str {
        match self {
            XsError::Einval => "EINVAL",
            XsError::Eacces => "EACCES",
            XsError::Eexist => "EEXIST",
            XsError::Enoent => "ENOENT",
            XsError::Enospc => "ENOSPC",
            XsError::Enosys => "ENOSYS",
            XsError::E2big => "E2BIG",
            XsError::Eagain => "EAGAIN",
        }
    }
}

pub use crate::xen::xenbus::XenbusState;
