//! The checksum a frontend left blank (`XEN_NETTXF_csum_blank`): the
//! packet is Linux's CHECKSUM_PARTIAL, its TCP or UDP checksum field holds
//! the pseudo-header sum, and the backend completes it over the transport
//! header and payload. netif.h gives no offsets, so they come from the
//! headers: Ethernet II (an optional 802.1Q tag), IPv4 (RFC 791, IHL) or
//! IPv6 without extension headers (RFC 8200), then TCP (checksum at 16,
//! RFC 9293) or UDP (at 6, RFC 768).

use crate::net::offload::{get16, insert_checksum, put16};

const ETHERTYPE_VLAN: u16 = 0x8100;
const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Completes the TCP/UDP checksum of `frame`; `false` (nothing changed)
/// when the frame is not Ethernet/IP/TCP-or-UDP or its headers run past it.
pub fn complete(frame: &mut [u8]) -> bool {
    let mut l3 = 14;
    let mut ethertype = get16(frame, 12);
    if ethertype == ETHERTYPE_VLAN {
        ethertype = get16(frame, 16);
        l3 = 18;
    }
    let (proto, l4) = match ethertype {
        ETHERTYPE_IPV4 => {
            let Some(&vihl) = frame.get(l3) else {
                return false;
            };
            let ihl = usize::from(vihl & 0xf) * 4;
            // A fragment has no whole transport segment to sum.
            let fragment = get16(frame, l3 + 6) & 0x3fff != 0;
            if vihl >> 4 != 4 || ihl < 20 || fragment {
                return false;
            }
            (frame.get(l3 + 9).copied(), l3 + ihl)
        }
        ETHERTYPE_IPV6 => (frame.get(l3 + 6).copied(), l3 + 40),
        _ => return false,
    };
    let at = match proto {
        Some(PROTO_TCP) if l4 + 20 <= frame.len() => l4 + 16,
        Some(PROTO_UDP) if l4 + 8 <= frame.len() => l4 + 6,
        _ => return false,
    };
    if !insert_checksum(frame, l4, at, 0, 0) {
        return false;
    }
    // RFC 768: a computed UDP checksum of 0 is sent as all ones.
    if proto == Some(PROTO_UDP) && get16(frame, at) == 0 {
        put16(frame, at, 0xffff);
    }
    true
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::net::offload::sum16;

    /// An IPv4/TCP frame whose checksum field holds the pseudo-header sum.
    pub(crate) fn tcp_partial(payload: &[u8]) -> alloc::vec::Vec<u8> {
        let mut f = alloc::vec![0u8; 54 + payload.len()];
        f[12..14].copy_from_slice(&ETHERTYPE_IPV4.to_be_bytes());
        f[14] = 0x45;
        put16(&mut f, 16, (40 + payload.len()) as u16);
        f[23] = PROTO_TCP;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[46] = 5 << 4;
        f[54..].copy_from_slice(payload);
        let tcp_len = (20 + payload.len()) as u32;
        let pseudo = sum16(&f[26..34], u32::from(PROTO_TCP) + tcp_len);
        put16(&mut f, 50, pseudo as u16);
        f
    }

    /// RFC 1071: a segment with a right checksum sums, with the
    /// pseudo-header, to all ones.
    fn tcp_checksum_is_right(f: &[u8]) -> bool {
        let tcp_len = (f.len() - 34) as u32;
        let pseudo = sum16(&f[26..34], u32::from(PROTO_TCP) + tcp_len);
        sum16(&f[34..], pseudo) == 0xffff
    }

    #[test]
    fn a_blank_tcp_checksum_is_completed_over_the_pseudo_header_and_segment() {
        let mut f = tcp_partial(b"hello, xen");
        assert!(!tcp_checksum_is_right(&f));
        assert!(complete(&mut f));
        assert!(tcp_checksum_is_right(&f));
    }

    #[test]
    fn frames_that_are_not_ip_tcp_or_udp_are_left_alone() {
        let mut arp = alloc::vec![0u8; 60];
        arp[12..14].copy_from_slice(&0x0806u16.to_be_bytes());
        assert!(!complete(&mut arp));
        let mut short = tcp_partial(b"")[..40].to_vec();
        assert!(!complete(&mut short));
        let mut frag = tcp_partial(b"x");
        frag[20] = 0x20; // more fragments
        assert!(!complete(&mut frag));
    }
}
