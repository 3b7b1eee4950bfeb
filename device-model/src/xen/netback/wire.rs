//! The netif rings' requests and responses (public/io/netif.h, as facts).

/// `struct netif_tx_request`: gref u32, offset u16, flags u16, id u16, size u16.
pub const TX_REQUEST_LEN: usize = 12;
pub const TX_GREF: usize = 0;
pub const TX_OFFSET: usize = 4;
pub const TX_FLAGS: usize = 6;
pub const TX_ID: usize = 8;
pub const TX_SIZE: usize = 10;
/// `struct netif_tx_response`: id u16, status i16.
pub const TX_RESPONSE_LEN: usize = 4;

/// `struct netif_rx_request`: id u16, pad, gref u32.
pub const RX_REQUEST_LEN: usize = 8;
pub const RX_ID: usize = 0;
pub const RX_GREF: usize = 4;
/// `struct netif_rx_response`: id u16, offset u16, flags u16, status i16
/// (bytes received, or a negative error).
pub const RX_RESPONSE_LEN: usize = 8;

/// `XEN_NETTXF_*`.
pub mod txf {
    pub const CSUM_BLANK: u16 = 1 << 0;
    pub const DATA_VALIDATED: u16 = 1 << 1;
    pub const MORE_DATA: u16 = 1 << 2;
    pub const EXTRA_INFO: u16 = 1 << 3;
}

/// `struct netif_extra_info`: type u8 @0, flags u8 @1 (a slot of its own).
pub const EXTRA_TYPE: usize = 0;
pub const EXTRA_FLAGS: usize = 1;
/// `XEN_NETIF_EXTRA_FLAG_MORE`: another extra slot follows.
pub const EXTRA_FLAG_MORE: u8 = 1;
/// `XEN_NETIF_EXTRA_TYPE_GSO`.
pub const EXTRA_TYPE_GSO: u8 = 1;

/// `XEN_NETIF_RSP_*`.
pub mod status {
    pub const OKAY: i16 = 0;
    pub const ERROR: i16 = -1;
    pub const DROPPED: i16 = -2;
    /// The response of an extra-info slot.
    pub const NULL: i16 = 1;
}

/// Data slots a packet may use (`XEN_NETIF_NR_SLOTS_MIN`).
pub const NR_SLOTS_MIN: usize = 18;

/// A transmit request, copied out of the ring.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct TxRequest {
    pub gref: u32,
    pub offset: u16,
    pub flags: u16,
    pub id: u16,
    /// The first slot: the packet's length; later slots: this slot's bytes.
    pub size: u16,
}

impl TxRequest {
    pub fn parse(b: &[u8; TX_REQUEST_LEN]) -> TxRequest {
        let u16_at = |at: usize| u16::from_le_bytes([b[at], b[at + 1]]);
        TxRequest {
            gref: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
            offset: u16_at(TX_OFFSET),
            flags: u16_at(TX_FLAGS),
            id: u16_at(TX_ID),
            size: u16_at(TX_SIZE),
        }
    }
}

pub fn tx_response(id: u16, status: i16) -> [u8; TX_RESPONSE_LEN] {
    let [a, b] = id.to_le_bytes();
    let [c, d] = status.to_le_bytes();
    [a, b, c, d]
}

pub fn rx_response(id: u16, offset: u16, flags: u16, status: i16) -> [u8; RX_RESPONSE_LEN] {
    let mut r = [0u8; RX_RESPONSE_LEN];
    r[0..2].copy_from_slice(&id.to_le_bytes());
    r[2..4].copy_from_slice(&offset.to_le_bytes());
    r[4..6].copy_from_slice(&flags.to_le_bytes());
    r[6..8].copy_from_slice(&status.to_le_bytes());
    r
}
