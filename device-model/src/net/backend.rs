//! The one interface between an emulated NIC and the network behind it.
//!
//! A NIC hands whole Ethernet frames (destination MAC first, no preamble,
//! no frame check sequence; IEEE 802.3 clause 3.1.1) to [`NetBackend::send`]
//! and takes received frames with [`NetBackend::receive`] when it has room
//! for them. Frames are always copied: the NIC never holds a reference into
//! the backend's memory, nor the backend into guest memory. Both calls are
//! non-blocking and bounded; a backend that cannot take a frame drops it and
//! counts it, as a full switch port does.

use core::fmt;

/// The shortest frame on the wire without its FCS (64 bytes minus 4): a
/// NIC pads shorter transmissions up to it (IEEE 802.3 4.2.3.3).
pub const MIN_FRAME_LEN: usize = 60;
/// The longest frame a backend carries: 1500 bytes of payload, the 14-byte
/// header and one 802.1Q tag (IEEE 802.3 3.2.7, 802.1Q 9.3). Longer frames
/// are dropped and counted.
pub const MAX_FRAME_LEN: usize = 1518;

/// An IEEE 802 MAC address.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddress(pub [u8; 6]);

impl MacAddress {
    pub const BROADCAST: MacAddress = MacAddress([0xff; 6]);

    /// Group (multicast or broadcast) addresses have the I/G bit, bit 0 of
    /// the first octet, set (IEEE 802 8.2).
    pub fn is_multicast(&self) -> bool {
        self.0[0] & 1 != 0
    }

    /// The destination address of `frame`, if it is long enough to have one.
    pub fn destination(frame: &[u8]) -> Option<MacAddress> {
        frame
            .get(0..6)
            .map(|d| MacAddress(d.try_into().unwrap_or_default()))
    }

    /// The source address of `frame`, if it is long enough to have one.
    pub fn source(frame: &[u8]) -> Option<MacAddress> {
        frame
            .get(6..12)
            .map(|s| MacAddress(s.try_into().unwrap_or_default()))
    }
}

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let m = self.0;
        write!(
            f,
            "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
            m[0], m[1], m[2], m[3], m[4], m[5]
        )
    }
}

impl fmt::Debug for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What a backend counted, for logs and the exit statistics.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NetCounters {
    pub frames_sent: u64,
    pub frames_received: u64,
    /// Frames dropped: too long, too short, a full queue, no link.
    pub dropped: u64,
}

/// Where an emulated NIC's frames go and come from.
pub trait NetBackend: Send {
    /// Sends one frame. A frame the backend cannot carry (longer than
    /// [`MAX_FRAME_LEN`], shorter than a header, no room) is dropped and
    /// counted; the NIC reports it sent, as a NIC on a busy wire does.
    fn send(&mut self, frame: &[u8]);

    /// Copies the next frame waiting for this NIC into `buf` and returns
    /// its length, or `None` when none waits. A waiting frame longer than
    /// `buf` is dropped and counted, and `None` is returned for it.
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize>;

    /// Whether a frame is waiting, without taking it: a NIC with no free
    /// receive buffer uses it to count missed frames.
    fn frame_waiting(&mut self) -> bool;

    /// Whether the link behind this port is up (the NIC's link status).
    fn link_up(&self) -> bool {
        true
    }

    /// The backend's counts.
    fn counters(&self) -> NetCounters;
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::format;

    #[test]
    fn group_addresses_have_the_ig_bit() {
        assert!(MacAddress::BROADCAST.is_multicast());
        assert!(MacAddress([0x01, 0x00, 0x5e, 0, 0, 1]).is_multicast());
        assert!(!MacAddress([0x00, 0x16, 0x3e, 1, 2, 3]).is_multicast());
    }

    #[test]
    fn addresses_of_a_frame_and_of_a_runt() {
        let mut f = [0u8; 14];
        f[..6].copy_from_slice(&[1, 2, 3, 4, 5, 6]);
        f[6..12].copy_from_slice(&[7, 8, 9, 10, 11, 12]);
        assert_eq!(
            MacAddress::destination(&f),
            Some(MacAddress([1, 2, 3, 4, 5, 6]))
        );
        assert_eq!(
            MacAddress::source(&f),
            Some(MacAddress([7, 8, 9, 10, 11, 12]))
        );
        assert_eq!(MacAddress::source(&f[..8]), None);
        assert_eq!(
            format!("{}", MacAddress([0, 0x16, 0x3e, 0xa, 0xbc, 0xff])),
            "00:16:3e:0a:bc:ff"
        );
    }
}
