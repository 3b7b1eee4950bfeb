//! Receive (8254x SDM 3.2): address filtering with RAL/RAH, the multicast
//! table and the promiscuous and broadcast modes of RCTL (13.4.22, 13.5),
//! and legacy receive descriptors (3.2.3): a frame longer than one buffer
//! fills as many descriptors as it needs, EOP on the last.

use super::regs::{icr, rctl, MTA, RAH_AV, RAL0};
use super::stats::{reg as stat, Cast};
use super::E1000;
use crate::net::{MAX_FRAME_LEN, MIN_FRAME_LEN};
use log::Level;

/// A frame with its FCS.
const FCS_LEN: usize = 4;
/// The receive buffer: the longest backend frame and its FCS.
pub const BUF_LEN: usize = MAX_FRAME_LEN + FCS_LEN;
/// Frames moved per service pass, at most.
const FRAMES_PER_PASS: u32 = 64;
/// How often a halted guest's receiver looks for frames.
pub const POLL_NS: u64 = 1_000_000;

/// Receive descriptor status bits (3.2.3.1).
mod sta {
    pub const DD: u8 = 1 << 0;
    pub const EOP: u8 = 1 << 1;
    /// Ignore checksum indication: no receive checksum offload is reported.
    pub const IXSM: u8 = 1 << 2;
}
/// Receive descriptor error bit RXE (3.2.3.2): the data is not valid.
const ERR_RXE: u8 = 1 << 7;

/// The CRC-32 of IEEE 802.3 (3.2.9), the frame check sequence.
const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}
static CRC_TABLE: [u32; 256] = crc_table();

pub fn fcs(frame: &[u8]) -> u32 {
    !frame.iter().fold(!0u32, |c, &b| {
        CRC_TABLE[((c ^ u32::from(b)) & 0xFF) as usize] ^ (c >> 8)
    })
}

/// The 12 bits of the destination address that index the multicast table
/// for RCTL.MO (13.4.22): bits 47:36, 46:35, 45:34 or 43:32.
pub fn mta_hash(dest: &[u8; 6], mo: u32) -> u32 {
    let (a, b) = (u32::from(dest[4]), u32::from(dest[5]));
    let h = match mo & 3 {
        0 => (a >> 4) | (b << 4),
        1 => (a >> 3) | (b << 5),
        2 => (a >> 2) | (b << 6),
        _ => a | (b << 8),
    };
    h & 0xFFF
}

impl E1000 {
    /// The receive buffer size RCTL selects (BSIZE with BSEX, 13.4.22).
    pub(super) fn rx_buffer_size(&self) -> usize {
        let bsize = (self.rctl >> rctl::BSIZE_SHIFT) & 3;
        if self.rctl & rctl::BSEX == 0 {
            2048 >> bsize
        } else {
            // BSEX with BSIZE 00 is reserved; read as 2048.
            match bsize {
                1 => 16384,
                2 => 8192,
                3 => 4096,
                _ => 2048,
            }
        }
    }

    /// Whether the filters accept a frame for `dest` (3.2.1).
    pub(super) fn accepts(&self, dest: &[u8; 6]) -> bool {
        let multicast = dest[0] & 1 != 0;
        let broadcast = dest == &[0xFF; 6];
        if broadcast && self.rctl & rctl::BAM != 0 {
            return true;
        }
        if multicast && self.rctl & rctl::MPE != 0 || !multicast && self.rctl & rctl::UPE != 0 {
            return true;
        }
        let low = u32::from_le_bytes([dest[0], dest[1], dest[2], dest[3]]);
        let high = u32::from_le_bytes([dest[4], dest[5], 0, 0]);
        let exact = (0..16u64).any(|i| {
            let rah = self.plain(RAL0 + 8 * i + 4);
            rah & RAH_AV != 0 && self.plain(RAL0 + 8 * i) == low && rah & 0xFFFF == high
        });
        if exact {
            return true;
        }
        if multicast {
            let h = mta_hash(dest, self.rctl >> rctl::MO_SHIFT);
            let word = self.plain(MTA + u64::from(h >> 5) * 4);
            return word & (1 << (h & 0x1F)) != 0;
        }
        false
    }

    fn rx_enabled(&self) -> bool {
        self.rctl & rctl::EN != 0 && self.bus_master()
    }

    /// Descriptors a frame of `len` bytes takes.
    fn descriptors_for(&self, len: usize) -> u32 {
        len.div_ceil(self.rx_buffer_size()).max(1) as u32
    }

    /// Whether a waiting frame can be stored now (service is due).
    pub(super) fn rx_ready(&mut self) -> bool {
        if self.rctl & rctl::EN == 0 {
            // A disabled receiver takes frames off the wire and drops them.
            return self.backend.frame_waiting();
        }
        self.rx_enabled()
            && self.rx.usable()
            && self.rx.owned() >= self.descriptors_for(BUF_LEN)
            && self.backend.frame_waiting()
    }

    /// Whether frames may arrive that the receiver could store: a halted
    /// guest is woken to look for them every [`POLL_NS`].
    pub(super) fn rx_polling(&self) -> bool {
        self.rx_enabled() && self.rx.usable() && self.rx.owned() > 0
    }

    /// Moves waiting frames into free receive descriptors, at most
    /// [`FRAMES_PER_PASS`].
    pub(super) fn receive(&mut self) {
        for _ in 0..FRAMES_PER_PASS {
            if !self.backend.frame_waiting() {
                break;
            }
            if self.rctl & rctl::EN == 0 {
                let _ = self.backend.receive(&mut self.rx_buf);
                continue;
            }
            if !self.rx_enabled() {
                break;
            }
            if !self.rx.usable() {
                self.logs.ring.log(
                    Level::Warn,
                    format_args!(
                        "e1000: receive ring unusable (RDLEN {:#x}, RDH {}, RDT {}): frames wait",
                        self.rx.len, self.rx.head, self.rx.tail
                    ),
                );
                break;
            }
            let needed = self.descriptors_for(BUF_LEN);
            if self.rx.owned() < needed {
                // No room: the frame waits in the packet buffer (the
                // backend's queue). Counted once per frame (13.7 RNBC).
                if !self.rnbc_counted {
                    self.rnbc_counted = true;
                    self.stats.add(stat::RNBC, 1);
                }
                break;
            }
            self.rnbc_counted = false;
            let Some(len) = self.backend.receive(&mut self.rx_buf[..MAX_FRAME_LEN]) else {
                continue;
            };
            self.store_frame(len);
        }
        self.count_missed();
    }

    /// Frames the backend dropped while this receiver had no room are the
    /// frames the hardware misses (13.7 MPC) and an overrun (RXO).
    fn count_missed(&mut self) {
        let dropped = self.backend.counters().dropped;
        let new = dropped.wrapping_sub(self.backend_dropped);
        self.backend_dropped = dropped;
        if new > 0 && self.rx_enabled() {
            self.stats
                .add(stat::MPC, u32::try_from(new).unwrap_or(u32::MAX));
            self.irq.raise(icr::RXO);
        }
    }

    /// Filters, pads and stores the frame of `len` bytes in `rx_buf`.
    fn store_frame(&mut self, mut len: usize) {
        let Some(dest) = self
            .rx_buf
            .get(..6)
            .and_then(|d| <[u8; 6]>::try_from(d).ok())
        else {
            return;
        };
        if len < 14 || !self.accepts(&dest) {
            return;
        }
        // Frames on the wire are at least 64 bytes with the FCS (IEEE 802.3 4.2.3.3).
        if len < MIN_FRAME_LEN {
            self.rx_buf[len..MIN_FRAME_LEN].fill(0);
            len = MIN_FRAME_LEN;
        }
        let wire_len = len + FCS_LEN;
        if self.rctl & rctl::SECRC == 0 {
            let crc = fcs(&self.rx_buf[..len]).to_le_bytes();
            self.rx_buf[len..wire_len].copy_from_slice(&crc);
            len = wire_len;
        }
        let free_before = self.rx.owned();
        let size = self.rx_buffer_size();
        let mut done = 0;
        let mut error = false;
        while done < len {
            let n = size.min(len - done);
            let last = done + n == len;
            let Some(desc) = self.rx.descriptor(self.rx.head) else {
                break;
            };
            let Ok(buffer) = self.memory.read_obj::<u64>(desc) else {
                self.logs.dma.log(
                    Level::Warn,
                    format_args!("e1000: receive descriptor at {desc:#x} is outside guest RAM"),
                );
                self.rx.advance();
                return;
            };
            if self
                .memory
                .write(buffer, &self.rx_buf[done..done + n])
                .is_err()
            {
                error = true;
                self.logs.dma.log(
                    Level::Warn,
                    format_args!("e1000: receive buffer at {buffer:#x} is outside guest RAM"),
                );
            }
            let mut wb = [0u8; 8];
            wb[..2].copy_from_slice(&(n as u16).to_le_bytes());
            wb[4] = sta::DD | sta::IXSM | if last { sta::EOP } else { 0 };
            wb[5] = if error && last { ERR_RXE } else { 0 };
            let _ = self.memory.write(desc + 8, &wb);
            self.rx.advance();
            done += n;
        }
        self.stats.received(wire_len, Cast::of(&dest));
        self.irq.frame_received(self.now());
        // RXDMT0 when the free descriptors fall to the threshold RDMTS
        // selects: 1/2, 1/4 or 1/8 of the ring (13.4.22).
        let shift = ((self.rctl >> rctl::RDMTS_SHIFT) & 3) + 1;
        let threshold = self.rx.count() >> shift.min(3);
        if free_before > threshold && self.rx.owned() <= threshold {
            self.irq.raise(icr::RXDMT0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fcs_is_the_ieee_crc32() {
        // The CRC-32 check value of "123456789".
        assert_eq!(fcs(b"123456789"), 0xCBF4_3926);
    }

    #[test]
    fn mta_hash_takes_the_bits_mo_selects() {
        // 01:00:5e:00:00:01 -> octets 4, 5 = 0x00, 0x01.
        let d = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
        assert_eq!(mta_hash(&d, 0), 0x010);
        assert_eq!(mta_hash(&d, 1), 0x020);
        assert_eq!(mta_hash(&d, 2), 0x040);
        assert_eq!(mta_hash(&d, 3), 0x100);
        let d = [0x01, 0, 0, 0, 0xAB, 0xCD];
        assert_eq!(mta_hash(&d, 0), 0xCDA, "bits 47:36");
    }
}
