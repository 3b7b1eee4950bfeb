//! Transmit offloads the NICs share: the Internet checksum (RFC 1071)
//! inserted where a driver left it to the card, and TCP segmentation (the
//! 8254x SDM 3.5 "TCP Segmentation" and virtio 1.2 5.1.6.2's
//! VIRTIO_NET_HDR_GSO_TCPV4/6): one frame per MSS bytes of payload, each
//! with the packet's headers, the IPv4 total length, identification and
//! checksum or the IPv6 payload length, the TCP sequence number, flags and
//! checksum fixed up. The backend carries only whole, finished frames, so
//! a NIC does this before [`NetBackend::send`](super::NetBackend::send).

/// The 16-bit one's complement sum of `data` added to `sum` (RFC 1071).
pub fn sum16(data: &[u8], mut sum: u32) -> u32 {
    let mut chunks = data.chunks_exact(2);
    for c in &mut chunks {
        sum = sum.wrapping_add(u32::from(u16::from_be_bytes([c[0], c[1]])));
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    if let [last] = chunks.remainder() {
        sum = sum.wrapping_add(u32::from(*last) << 8);
    }
    fold(sum)
}

/// `sum` folded to 16 bits.
pub fn fold(mut sum: u32) -> u32 {
    while sum > 0xFFFF {
        sum = (sum & 0xFFFF) + (sum >> 16);
    }
    sum
}

/// Inserts the complement of the sum of `frame[start..=end]` (to the end
/// when `end` is 0 or past it) plus `extra` at `at`. Offsets outside the
/// frame insert nothing; returns whether it inserted.
pub fn insert_checksum(frame: &mut [u8], start: usize, at: usize, end: usize, extra: u32) -> bool {
    let last = if end == 0 || end >= frame.len() {
        frame.len()
    } else {
        end + 1
    };
    if start >= last || at.checked_add(2).is_none_or(|e| e > frame.len()) {
        return false;
    }
    let c = !(sum16(&frame[start..last], extra) as u16);
    frame[at..at + 2].copy_from_slice(&c.to_be_bytes());
    true
}

/// Stores big-endian `v` at `at` if it fits.
pub fn put16(b: &mut [u8], at: usize, v: u16) {
    if let Some(s) = b.get_mut(at..at + 2) {
        s.copy_from_slice(&v.to_be_bytes());
    }
}

/// The big-endian 16 bits at `at`, 0 past the end.
pub fn get16(b: &[u8], at: usize) -> u16 {
    b.get(at..at + 2)
        .map_or(0, |s| u16::from_be_bytes([s[0], s[1]]))
}

/// Where a packet's headers are and what segmentation does per segment:
/// the fields of the 8254x TCP/IP context descriptor (SDM 3.3.6), which a
/// virtio-net header translates to as well. `*css` is where a checksum's
/// range starts, `*cso` where it is stored, `*cse` its last byte (0: to the
/// end). The TCP/UDP checksum field holds, when segmentation starts, the
/// pseudo-header sum without the length (SDM 3.5.1.3); the length is added
/// per segment.
#[derive(Default, Clone, Copy, Debug)]
pub struct Tso {
    pub ipcss: usize,
    pub ipcso: usize,
    pub ipcse: usize,
    pub tucss: usize,
    pub tucso: usize,
    pub tucse: usize,
    /// TCP (else UDP), IPv4 (else IPv6).
    pub tcp: bool,
    pub ipv4: bool,
    /// Bytes of headers repeated in every segment, and payload per segment.
    pub hdrlen: usize,
    pub mss: usize,
    /// Insert the IPv4 header checksum, the TCP/UDP checksum, per segment.
    pub ip_csum: bool,
    pub l4_csum: bool,
}

/// Cuts one packet into segments, one [`Segmenter::next`] call each.
pub struct Segmenter {
    tso: Tso,
    payload: usize,
    ip_id: u16,
    seq: u32,
    off: usize,
    index: u16,
    done: bool,
}

impl Segmenter {
    /// Segments `packet` as `tso` says, or `None` when the header offsets
    /// are not inside the header, the MSS is 0, or a segment would be
    /// longer than `max_segment`.
    pub fn new(tso: Tso, packet: &[u8], max_segment: usize) -> Option<Segmenter> {
        let c = tso;
        let l4_min = if c.tcp { 20 } else { 8 };
        let ip_min = if c.ipv4 { 20 } else { 40 };
        let fits = c.hdrlen <= packet.len()
            && c.mss > 0
            && c.hdrlen + c.mss <= max_segment
            && c.ipcss + ip_min <= c.hdrlen
            && c.tucss + l4_min <= c.hdrlen
            && c.ipcso + 2 <= c.hdrlen
            && c.tucso + 2 <= c.hdrlen;
        if !fits {
            return None;
        }
        Some(Segmenter {
            tso,
            payload: packet.len() - c.hdrlen,
            ip_id: get16(packet, c.ipcss + 4),
            seq: packet[c.tucss + 4..c.tucss + 8]
                .try_into()
                .map_or(0, u32::from_be_bytes),
            off: 0,
            index: 0,
            done: false,
        })
    }

    /// Builds the next segment of `packet` (the same bytes [`Segmenter::new`]
    /// saw) in `out` and returns its length; `None` after the last one.
    /// `out` must hold `hdrlen + mss` bytes.
    pub fn next(&mut self, packet: &[u8], out: &mut [u8]) -> Option<usize> {
        let c = self.tso;
        if self.done {
            return None;
        }
        let n = c.mss.min(self.payload - self.off);
        let last = self.off + n == self.payload;
        let len = c.hdrlen + n;
        let start = c.hdrlen + self.off;
        let (src, f) = (packet.get(start..start + n)?, out.get_mut(..len)?);
        f[..c.hdrlen].copy_from_slice(&packet[..c.hdrlen]);
        f[c.hdrlen..].copy_from_slice(src);
        if c.ipv4 {
            put16(f, c.ipcss + 2, (len - c.ipcss) as u16);
            put16(f, c.ipcss + 4, self.ip_id.wrapping_add(self.index));
        } else {
            put16(f, c.ipcss + 4, (len - c.ipcss - 40) as u16);
        }
        let l4_len = (len - c.tucss) as u32;
        if c.tcp {
            let sq = self.seq.wrapping_add(self.off as u32).to_be_bytes();
            f[c.tucss + 4..c.tucss + 8].copy_from_slice(&sq);
            if !last {
                // FIN and PSH only on the last segment.
                f[c.tucss + 13] &= !(0x01 | 0x08);
            }
        } else {
            put16(f, c.tucss + 4, l4_len as u16);
        }
        if c.ip_csum && c.ipv4 {
            put16(f, c.ipcso, 0);
            insert_checksum(f, c.ipcss, c.ipcso, c.ipcse, 0);
        }
        if c.l4_csum {
            insert_checksum(f, c.tucss, c.tucso, c.tucse, l4_len);
        }
        self.off += n;
        self.index = self.index.wrapping_add(1);
        self.done = last;
        Some(len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_internet_checksum_of_rfc1071s_example() {
        // RFC 1071 4.1: 00 01 f2 03 f4 f5 f6 f7 sums to 0xddf2.
        assert_eq!(
            sum16(&[0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7], 0),
            0xddf2
        );
        assert_eq!(sum16(&[0xff], 0), 0xff00, "an odd byte is the high half");
    }

    #[test]
    fn checksum_offsets_outside_the_frame_insert_nothing() {
        let mut f = [1u8; 20];
        assert!(!insert_checksum(&mut f, 0, 19, 0, 0));
        assert!(!insert_checksum(&mut f, 30, 0, 0, 0));
        assert!(insert_checksum(&mut f, 0, 10, 0, 0));
    }

    #[test]
    fn a_segmenter_refuses_offsets_outside_the_header_and_a_zero_mss() {
        let p = [0u8; 200];
        let good = Tso {
            ipcss: 14,
            ipcso: 24,
            tucss: 34,
            tucso: 50,
            tcp: true,
            ipv4: true,
            hdrlen: 54,
            mss: 100,
            ..Tso::default()
        };
        assert!(Segmenter::new(good, &p, 1518).is_some());
        assert!(Segmenter::new(Tso { mss: 0, ..good }, &p, 1518).is_none());
        assert!(Segmenter::new(Tso { tucss: 40, ..good }, &p, 1518).is_none());
        assert!(Segmenter::new(Tso { mss: 1500, ..good }, &p, 1518).is_none());
        assert!(Segmenter::new(good, &p[..50], 1518).is_none());
    }
}
