//! Transmit (8254x SDM 3.3, 3.4): legacy descriptors with the IFCS, IC,
//! RS and EOP commands; the TCP/IP context descriptor and data descriptors
//! with IP and TCP/UDP checksum insertion (IXSM, TXSM) and TCP
//! segmentation (TSE, 3.5): the header is repeated for every MSS bytes of
//! payload, with the IPv4 total length, identification and checksum, the
//! TCP sequence number, flags and checksum fixed up per segment (the
//! checksums and segmenter of `net::offload`, which virtio-net shares).

use super::regs::{icr, tctl, VET};
use super::stats::{reg as stat, Cast};
use super::E1000;
use crate::net::offload::{insert_checksum, Segmenter, Tso};
use crate::net::MIN_FRAME_LEN;
use alloc::boxed::Box;
use alloc::vec;
use log::Level;

/// Descriptors processed per doorbell or service pass; the rest of the
/// ring waits for the next pass.
pub const DESCS_PER_PASS: u32 = 256;
/// The longest packet without TSO (3.3.3: 16288 bytes).
pub const MAX_PACKET: usize = 16288;
/// The most a TSO packet gathers: 64 KiB of payload and its header.
pub const MAX_TSO: usize = 0x1_0000 + 256;
/// The longest frame sent, with an inserted 802.1Q tag.
const MAX_SEGMENT: usize = MAX_PACKET + 4;

/// Descriptor command bits (3.3.3.1 legacy, 3.3.7.1 data, 3.3.6 TUCMD).
mod cmd {
    pub const EOP: u8 = 1 << 0;
    pub const IC: u8 = 1 << 2;
    pub const TSE: u8 = 1 << 2;
    pub const RS: u8 = 1 << 3;
    pub const DEXT: u8 = 1 << 5;
    pub const VLE: u8 = 1 << 6;
    pub const IDE: u8 = 1 << 7;
    /// TUCMD: TCP (else UDP), IPv4 (else IPv6).
    pub const TCP: u8 = 1 << 0;
    pub const IP: u8 = 1 << 1;
}
/// Descriptor Done in the status byte.
const STA_DD: u8 = 1 << 0;
/// POPTS: insert the IP checksum, the TCP/UDP checksum (3.3.7.2).
const POPTS_IXSM: u8 = 1 << 0;
const POPTS_TXSM: u8 = 1 << 1;
/// CTRL.VME: VLAN mode, enables tag insertion (13.4.1).
const CTRL_VME: u32 = 1 << 30;

/// The TCP/IP context (3.3.6).
#[derive(Default, Clone, Copy)]
pub struct Context {
    pub ipcss: usize,
    pub ipcso: usize,
    pub ipcse: usize,
    pub tucss: usize,
    pub tucso: usize,
    pub tucse: usize,
    pub tucmd: u8,
    pub hdrlen: usize,
    pub mss: usize,
}

/// The packet being gathered and the context it uses.
pub struct TxState {
    ctx: Context,
    /// The packet so far.
    buf: Box<[u8]>,
    len: usize,
    /// A segment or the frame being sent (with room for a VLAN tag).
    seg: Box<[u8]>,
    /// Options of the packet, from its first descriptor.
    started: bool,
    tse: bool,
    popts: u8,
    /// Legacy checksum insertion: offset to store at, offset to start at.
    legacy_ic: Option<(usize, usize)>,
    vlan: Option<u16>,
    /// The packet cannot be sent: too long, or a buffer outside RAM.
    overflow: bool,
    dma_error: bool,
}

impl TxState {
    pub fn new() -> TxState {
        TxState {
            ctx: Context::default(),
            buf: vec![0u8; MAX_TSO].into_boxed_slice(),
            len: 0,
            seg: vec![0u8; MAX_SEGMENT].into_boxed_slice(),
            started: false,
            tse: false,
            popts: 0,
            legacy_ic: None,
            vlan: None,
            overflow: false,
            dma_error: false,
        }
    }

    pub fn reset(&mut self) {
        self.ctx = Context::default();
        self.end_packet();
    }

    fn end_packet(&mut self) {
        self.len = 0;
        self.started = false;
        self.tse = false;
        self.popts = 0;
        self.legacy_ic = None;
        self.vlan = None;
        self.overflow = false;
        self.dma_error = false;
    }
}

impl E1000 {
    /// Whether transmit work remains that a service pass would do.
    pub(super) fn tx_pending(&self) -> bool {
        self.tctl & tctl::EN != 0
            && self.bus_master()
            && self.tx.usable()
            && self.tx.head != self.tx.tail
    }

    /// Processes up to [`DESCS_PER_PASS`] descriptors from TDH towards TDT.
    pub(super) fn transmit(&mut self) {
        if self.tctl & tctl::EN == 0 || !self.bus_master() || self.tx.head == self.tx.tail {
            return;
        }
        if !self.tx.usable() {
            self.logs.ring.log(
                Level::Warn,
                format_args!(
                    "e1000: transmit ring unusable (TDLEN {:#x}, TDH {}, TDT {}): nothing sent",
                    self.tx.len, self.tx.head, self.tx.tail
                ),
            );
            return;
        }
        let mut done = 0;
        while self.tx.head != self.tx.tail && done < DESCS_PER_PASS {
            self.transmit_one();
            self.tx.advance();
            done += 1;
        }
        if self.tx.head == self.tx.tail {
            self.irq.raise(icr::TXQE);
        }
        self.update_irq();
    }

    /// The descriptor at TDH.
    fn transmit_one(&mut self) {
        let mut d = [0u8; 16];
        let at = self.tx.descriptor(self.tx.head);
        let Some(at) = at.filter(|&a| self.memory.read(a, &mut d).is_ok()) else {
            // The hardware's read would master-abort: the descriptor is
            // skipped and the packet it belonged to dropped.
            self.logs.dma.log(
                Level::Warn,
                format_args!(
                    "e1000: transmit descriptor {} is outside guest RAM",
                    self.tx.head
                ),
            );
            self.tx_state.end_packet();
            return;
        };
        let addr = u64::from_le_bytes(d[0..8].try_into().unwrap_or_default());
        let dword2 = u32::from_le_bytes([d[8], d[9], d[10], d[11]]);
        let command = d[11];
        let dext = command & cmd::DEXT != 0;
        let dtyp = (dword2 >> 20) & 0xF;
        if dext && dtyp == 0 {
            // TCP/IP context descriptor (3.3.6).
            self.tx_state.ctx = Context {
                ipcss: usize::from(d[0]),
                ipcso: usize::from(d[1]),
                ipcse: usize::from(u16::from_le_bytes([d[2], d[3]])),
                tucss: usize::from(d[4]),
                tucso: usize::from(d[5]),
                tucse: usize::from(u16::from_le_bytes([d[6], d[7]])),
                tucmd: command,
                hdrlen: usize::from(d[13]),
                mss: usize::from(u16::from_le_bytes([d[14], d[15]])),
            };
        } else {
            let (len, eop) = if dext {
                // Data descriptor (3.3.7).
                if !self.tx_state.started {
                    self.tx_state.tse = command & cmd::TSE != 0;
                    self.tx_state.popts = d[13];
                }
                ((dword2 & 0xF_FFFF) as usize, command & cmd::EOP != 0)
            } else {
                // Legacy descriptor (3.3.3).
                if command & cmd::IC != 0 {
                    self.tx_state.legacy_ic = Some((usize::from(d[10]), usize::from(d[13])));
                }
                (
                    usize::from(u16::from_le_bytes([d[8], d[9]])),
                    command & cmd::EOP != 0,
                )
            };
            if !self.tx_state.started {
                self.tx_state.started = true;
            }
            if command & cmd::VLE != 0 {
                self.tx_state.vlan = Some(u16::from_le_bytes([d[14], d[15]]));
            }
            self.gather(addr, len);
            if eop {
                self.finish_packet();
            }
        }
        if command & cmd::RS != 0 {
            // Status byte: DD (3.3.3.2); the other fields stay as written.
            let _ = self.memory.write(at + 12, &[d[12] | STA_DD]);
            self.irq
                .descriptor_written_back(command & cmd::IDE != 0, self.now());
        }
    }

    /// Appends `len` bytes at `addr` to the packet being gathered.
    fn gather(&mut self, addr: u64, len: usize) {
        let s = &mut self.tx_state;
        let limit = if s.tse { MAX_TSO } else { MAX_PACKET };
        if s.overflow || s.dma_error {
            return;
        }
        let Some(end) = s.len.checked_add(len).filter(|&e| e <= limit) else {
            s.overflow = true;
            return;
        };
        if self.memory.read(addr, &mut s.buf[s.len..end]).is_err() {
            s.dma_error = true;
            self.logs.dma.log(
                Level::Warn,
                format_args!(
                    "e1000: transmit buffer at {addr:#x} (+{len:#x}) is outside guest RAM"
                ),
            );
            return;
        }
        s.len = end;
    }

    fn drop_packet(&mut self, why: &str) {
        self.logs.tx_drop.log(
            Level::Warn,
            format_args!("e1000: transmit packet dropped: {why}"),
        );
        if self.tx_state.tse {
            self.stats.add(stat::TSCTFC, 1);
        }
        self.tx_state.end_packet();
    }

    /// The packet is whole (EOP): offloads, segmentation, the send.
    ///
    /// IFCS asks for the FCS to be appended; the backend carries frames
    /// without one, so it is the same either way.
    fn finish_packet(&mut self) {
        if self.tx_state.overflow {
            return self.drop_packet("longer than the maximum packet");
        }
        if self.tx_state.dma_error {
            self.tx_state.end_packet();
            return;
        }
        if self.tx_state.tse {
            self.segment();
        } else {
            let len = self.tx_state.len;
            self.tx_state.seg[..len].copy_from_slice(&self.tx_state.buf[..len]);
            let s = &mut self.tx_state;
            let frame = &mut s.seg[..len];
            if let Some((cso, css)) = s.legacy_ic {
                insert_checksum(frame, css, cso, 0, 0);
            }
            let c = s.ctx;
            if s.popts & POPTS_IXSM != 0 {
                insert_checksum(frame, c.ipcss, c.ipcso, c.ipcse, 0);
            }
            if s.popts & POPTS_TXSM != 0 {
                insert_checksum(frame, c.tucss, c.tucso, c.tucse, 0);
            }
            self.send(len);
        }
        self.tx_state.end_packet();
    }

    /// TCP segmentation (3.5): one frame per MSS bytes of payload, cut by
    /// the segmenter the NICs share.
    fn segment(&mut self) {
        let c = self.tx_state.ctx;
        let popts = self.tx_state.popts;
        let tso = Tso {
            ipcss: c.ipcss,
            ipcso: c.ipcso,
            ipcse: c.ipcse,
            tucss: c.tucss,
            tucso: c.tucso,
            tucse: c.tucse,
            tcp: c.tucmd & cmd::TCP != 0,
            ipv4: c.tucmd & cmd::IP != 0,
            hdrlen: c.hdrlen,
            mss: c.mss,
            ip_csum: popts & POPTS_IXSM != 0,
            l4_csum: popts & POPTS_TXSM != 0,
        };
        let total = self.tx_state.len;
        let Some(mut segments) = Segmenter::new(tso, &self.tx_state.buf[..total], MAX_PACKET)
        else {
            return self.drop_packet("TSO context offsets outside the packet header");
        };
        self.stats.add(stat::TSCTC, 1);
        loop {
            let s = &mut self.tx_state;
            let Some(len) = segments.next(&s.buf[..total], &mut s.seg) else {
                break;
            };
            self.send(len);
        }
    }

    /// Sends `tx_state.seg[..len]`: short frames padded (TCTL.PSP), a VLAN
    /// tag inserted with VLE under CTRL.VME (3.3.3.1).
    fn send(&mut self, mut len: usize) {
        let vet = self.plain(VET) as u16;
        let vme = self.ctrl & CTRL_VME != 0;
        let s = &mut self.tx_state;
        if let Some(tag) = s.vlan.filter(|_| vme) {
            if len >= 12 && len + 4 <= s.seg.len() {
                s.seg.copy_within(12..len, 16);
                s.seg[12..14].copy_from_slice(&vet.to_be_bytes());
                s.seg[14..16].copy_from_slice(&tag.to_be_bytes());
                len += 4;
            }
        }
        if len < MIN_FRAME_LEN && self.tctl & tctl::PSP != 0 {
            s.seg[len..MIN_FRAME_LEN].fill(0);
            len = MIN_FRAME_LEN;
        }
        let frame = &s.seg[..len];
        self.backend.send(frame);
        self.stats.transmitted(len + 4, Cast::of(frame));
    }
}
