//! The e1000 against the 8254x SDM: registers through BAR0 and BAR1, and
//! descriptor handling with a queue backend over test guest RAM.

use super::regs::*;
use super::stats::reg as stat;
use super::*;
use crate::clock::FakeClock;
use crate::net::NetCounters;
use alloc::collections::VecDeque;
use alloc::vec::Vec;
use std::sync::Mutex as StdMutex;

const MAC: MacAddress = MacAddress([0x00, 0x16, 0x3e, 0x01, 0x02, 0x03]);
const RAM: usize = 1 << 20;

#[derive(Default)]
struct Wire {
    incoming: VecDeque<Vec<u8>>,
    sent: Vec<Vec<u8>>,
    link_down: bool,
    dropped: u64,
}

/// A backend whose frames the test puts in and takes out.
struct Queue(Arc<StdMutex<Wire>>);

impl NetBackend for Queue {
    fn send(&mut self, frame: &[u8]) {
        self.0.lock().unwrap().sent.push(frame.to_vec());
    }
    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        let f = self.0.lock().unwrap().incoming.pop_front()?;
        buf.get_mut(..f.len())?.copy_from_slice(&f);
        Some(f.len())
    }
    fn frame_waiting(&mut self) -> bool {
        !self.0.lock().unwrap().incoming.is_empty()
    }
    fn link_up(&self) -> bool {
        !self.0.lock().unwrap().link_down
    }
    fn counters(&self) -> NetCounters {
        NetCounters {
            dropped: self.0.lock().unwrap().dropped,
            ..Default::default()
        }
    }
}

struct Nic {
    d: E1000,
    ram: GuestMemory,
    clock: Arc<FakeClock>,
    wire: Arc<StdMutex<Wire>>,
}

fn nic() -> Nic {
    let ram = GuestMemory::new(RAM);
    let clock = FakeClock::new(1_000_000);
    let wire = Arc::new(StdMutex::new(Wire::default()));
    let d = E1000::new(
        E1000Config {
            mac: MAC,
            rom: None,
        },
        ram.clone(),
        clock.clone(),
        Box::new(Queue(wire.clone())),
    );
    let mut n = Nic {
        d,
        ram,
        clock,
        wire,
    };
    // Memory and I/O decode, bus mastering.
    n.cfg_write(0x04, &[0x07, 0]);
    n
}

impl Nic {
    fn r32(&mut self, offset: u64) -> u32 {
        let mut b = [0u8; 4];
        self.d.bar_read(MMIO_BAR, offset, &mut b);
        u32::from_le_bytes(b)
    }
    fn w32(&mut self, offset: u64, v: u32) {
        self.d.bar_write(MMIO_BAR, offset, &v.to_le_bytes());
    }
    fn cfg_read(&mut self, offset: u8) -> u32 {
        let mut b = [0u8; 4];
        self.d.config_read(offset, &mut b);
        u32::from_le_bytes(b)
    }
    fn cfg_write(&mut self, offset: u8, data: &[u8]) {
        let mut changes = Vec::new();
        self.d.config_write(offset, data, &mut changes);
    }
    /// INTA# as the configuration status register shows it (PCI 3.0 6.2.3).
    fn intx(&mut self) -> bool {
        self.cfg_read(0x04) >> 16 & 0x8 != 0
    }
    fn incoming(&self, frame: &[u8]) {
        self.wire.lock().unwrap().incoming.push_back(frame.to_vec());
    }
    fn sent(&self) -> Vec<Vec<u8>> {
        core::mem::take(&mut self.wire.lock().unwrap().sent)
    }
    /// A receive ring of `count` descriptors at 0x10000, buffers at
    /// 0x20000 + 0x4000 * i, RDT = `count - 1` (all but one free).
    fn rx_ring(&mut self, count: u32, rctl: u32) {
        for i in 0..u64::from(count) {
            self.ram
                .write_obj(0x10000 + 16 * i, 0x20000 + 0x4000 * i)
                .unwrap();
            self.ram.write_obj(0x10000 + 16 * i + 8, 0u64).unwrap();
        }
        self.w32(RDBAL, 0x10000);
        self.w32(RDBAH, 0);
        self.w32(RDLEN, count * 16);
        self.w32(RDH, 0);
        self.w32(RDT, count - 1);
        self.w32(RCTL, rctl::EN | rctl);
    }
    fn rx_desc(&self, i: u64) -> (u16, u8, u8) {
        let mut d = [0u8; 16];
        self.ram.read(0x10000 + 16 * i, &mut d).unwrap();
        (u16::from_le_bytes([d[8], d[9]]), d[12], d[13])
    }
    /// A transmit ring of `count` descriptors at 0x80000.
    fn tx_ring(&mut self, count: u32) {
        self.w32(TDBAL, 0x80000);
        self.w32(TDBAH, 0);
        self.w32(TDLEN, count * 16);
        self.w32(TDH, 0);
        self.w32(TDT, 0);
        self.w32(TCTL, tctl::EN | tctl::PSP);
    }
    fn put_tx_desc(&self, i: u64, d: [u8; 16]) {
        self.ram.write(0x80000 + 16 * i, &d).unwrap();
    }
}

fn legacy(addr: u64, len: u16, cmd: u8, cso: u8, css: u8) -> [u8; 16] {
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&addr.to_le_bytes());
    d[8..10].copy_from_slice(&len.to_le_bytes());
    d[10] = cso;
    d[11] = cmd;
    d[13] = css;
    d
}

const EOP: u8 = 1 << 0;
const IFCS: u8 = 1 << 1;
const IC: u8 = 1 << 2;
const RS: u8 = 1 << 3;
const DEXT: u8 = 1 << 5;

fn frame(dest: [u8; 6], len: usize) -> Vec<u8> {
    let mut f: Vec<u8> = (0..len).map(|i| i as u8).collect();
    f[..6].copy_from_slice(&dest);
    f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 9]);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    f
}

/// The IEEE 802.3 CRC-32, bit by bit (an implementation apart from the device's table).
fn crc32(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c ^= u32::from(b);
        for _ in 0..8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0xEDB8_8320
            } else {
                c >> 1
            };
        }
    }
    !c
}

/// The one's complement sum of 16-bit big-endian words, folded (RFC 1071),
/// written apart from the device's.
fn ones_sum(parts: &[&[u8]]) -> u16 {
    let mut s: u64 = 0;
    for p in parts {
        for (i, b) in p.iter().enumerate() {
            s += if i % 2 == 0 {
                u64::from(*b) << 8
            } else {
                u64::from(*b)
            };
        }
    }
    while s > 0xFFFF {
        s = (s & 0xFFFF) + (s >> 16);
    }
    s as u16
}

#[test]
fn pci_identity_and_bars() {
    let mut n = nic();
    assert_eq!(n.cfg_read(0x00), 0x100E_8086, "8086:100E");
    assert_eq!(n.cfg_read(0x2C), 0x001E_8086, "subsystem 8086:001E");
    assert_eq!(n.cfg_read(0x08), 0x0200_0003, "class 02 00 00, revision 3");
    assert_eq!(n.cfg_read(0x3C) >> 8 & 0xFF, 1, "INTA#");
    n.cfg_write(0x10, &[0xFF; 4]);
    assert_eq!(n.cfg_read(0x10), 0xFFFE_0000, "BAR0: 128 KiB memory");
    n.cfg_write(0x14, &[0xFF; 4]);
    assert_eq!(
        n.cfg_read(0x14) & 0xFFFF_FFFD,
        0xFFFF_FFC1,
        "BAR1: 64 bytes I/O"
    );
    assert_eq!(n.cfg_read(0x30), 0, "no ROM without an image");
    assert!(n.d.rom_image().is_none());
}

#[test]
fn the_rom_bar_serves_the_configured_image() {
    let image: Arc<[u8]> = Arc::from(&[0x55u8, 0xAA, 0x80][..]);
    let d = E1000::new(
        E1000Config {
            mac: MAC,
            rom: Some(image.clone()),
        },
        GuestMemory::new(RAM),
        FakeClock::new(0),
        Box::new(Queue(Default::default())),
    );
    let mut d = d;
    let mut changes = Vec::new();
    d.config_write(0x30, &[0xFF; 4], &mut changes);
    let mut b = [0u8; 4];
    d.config_read(0x30, &mut b);
    assert_eq!(
        u32::from_le_bytes(b) & 0xFFFF_F800,
        0xFFFF_F800,
        "a 2 KiB ROM BAR"
    );
    assert_eq!(d.rom_image().as_deref(), Some(&image[..]));
}

#[test]
fn eeprom_through_eerd_and_the_mac_in_ral0() {
    let mut n = nic();
    let mut sum = 0u16;
    for w in 0..64u32 {
        n.w32(EERD, eerd::START | w << eerd::ADDR_SHIFT);
        let v = n.r32(EERD);
        assert_ne!(v & eerd::DONE, 0);
        let word = (v >> 16) as u16;
        sum = sum.wrapping_add(word);
        if w < 3 {
            let m = MAC.0;
            assert_eq!(
                word,
                u16::from_le_bytes([m[2 * w as usize], m[2 * w as usize + 1]])
            );
        }
    }
    assert_eq!(sum, 0xBABA, "SDM 5.6.13");
    assert_eq!(n.r32(RAL0), 0x013e_1600);
    assert_eq!(n.r32(RAL0 + 4), 0x8000_0302, "address and AV");
    assert_ne!(n.r32(EECD) & eecd::EE_PRES, 0);
}

#[test]
fn status_link_and_lsc() {
    let mut n = nic();
    let s = n.r32(STATUS);
    assert_eq!(s & (status::LU | status::FD), status::LU | status::FD);
    assert_eq!(s & (3 << 6), status::SPEED_1000);
    n.w32(IMS, icr::LSC);
    n.wire.lock().unwrap().link_down = true;
    n.d.service();
    assert_eq!(n.r32(STATUS) & status::LU, 0);
    assert!(n.intx(), "LSC asserts INTA#");
    assert_eq!(n.r32(ICR), icr::LSC);
    assert!(!n.intx(), "reading ICR clears it");
}

#[test]
fn interrupt_registers() {
    let mut n = nic();
    n.w32(ICS, icr::RXT0 | icr::TXDW);
    assert!(!n.intx(), "masked");
    n.w32(IMS, icr::RXT0);
    assert_eq!(n.r32(IMS), icr::RXT0);
    assert!(n.intx());
    n.w32(IMC, icr::RXT0);
    assert_eq!(n.r32(IMS), 0);
    assert!(!n.intx());
    assert_eq!(n.r32(ICR), icr::RXT0 | icr::TXDW);
    assert_eq!(n.r32(ICR), 0, "read to clear");
    n.w32(ICS, icr::TXDW);
    n.w32(ICR, icr::TXDW);
    assert_eq!(n.r32(ICR), 0, "write 1 to clear");
    // Interrupt Disable in the command register gates the pin, not ICR.
    n.w32(IMS, icr::TXDW);
    n.cfg_write(0x05, &[0x04]);
    n.w32(ICS, icr::TXDW);
    assert_eq!(n.r32(ICR), icr::TXDW);
}

#[test]
fn mdic_reaches_the_phy() {
    let mut n = nic();
    n.w32(MDIC, 2 << 26 | 1 << 21 | 1 << 16);
    let v = n.r32(MDIC);
    assert_ne!(v & regs::mdic::R, 0);
    assert_eq!(
        v & 0xFFFF,
        0x796D,
        "PSTATUS: link up, autonegotiation complete"
    );
    n.w32(MDIC, 2 << 26 | 1 << 21 | 2 << 16);
    assert_eq!(n.r32(MDIC) & 0xFFFF, 0x0141);
    n.w32(IMS, icr::MDAC);
    n.w32(MDIC, 2 << 26 | 1 << 21 | 3 << 16 | regs::mdic::I);
    assert_eq!(n.r32(MDIC) & 0xFFF0, 0x0C20);
    assert_eq!(n.r32(ICR), icr::MDAC);
}

#[test]
fn ctrl_rst_resets_registers_and_self_clears() {
    let mut n = nic();
    n.w32(IMS, icr::RXT0);
    n.w32(RCTL, rctl::EN);
    n.w32(MTA, 0xFFFF);
    let v = n.r32(CTRL) | ctrl::RST;
    n.w32(CTRL, v);
    assert_eq!(n.r32(CTRL) & ctrl::RST, 0);
    assert_eq!(n.r32(IMS), 0);
    assert_eq!(n.r32(RCTL), 0);
    assert_eq!(n.r32(MTA), 0);
    assert_eq!(
        n.r32(RAL0 + 4),
        0x8000_0302,
        "RAH0 reloaded from the EEPROM"
    );
    assert_eq!(n.cfg_read(0x04) & 7, 7, "PCI configuration is kept");
}

#[test]
fn the_io_bar_reaches_registers_indirectly() {
    let mut n = nic();
    n.d.bar_write(IO_BAR, IOADDR, &(IMS as u32).to_le_bytes());
    n.d.bar_write(IO_BAR, IODATA, &icr::LSC.to_le_bytes());
    assert_eq!(n.r32(IMS), icr::LSC);
    n.d.bar_write(IO_BAR, IOADDR, &(STATUS as u32).to_le_bytes());
    let mut b = [0u8; 4];
    n.d.bar_read(IO_BAR, IODATA, &mut b);
    assert_eq!(u32::from_le_bytes(b), n.r32(STATUS));
    n.d.bar_read(IO_BAR, IOADDR, &mut b);
    assert_eq!(u32::from_le_bytes(b), STATUS as u32);
}

#[test]
fn ring_length_low_bits_read_as_zero() {
    let mut n = nic();
    n.w32(RDLEN, 0x1000 | 0x7F);
    assert_eq!(n.r32(RDLEN), 0x1000);
    n.w32(TDLEN, 0xFFFF_FFFF);
    assert_eq!(n.r32(TDLEN), 0x000F_FF80);
}

#[test]
fn a_received_frame_lands_with_its_fcs_and_raises_rxt0() {
    let mut n = nic();
    n.rx_ring(8, rctl::BAM);
    n.w32(IMS, icr::RXT0);
    let f = frame(MAC.0, 100);
    n.incoming(&f);
    assert_eq!(n.d.next_deadline_ns(), Some(1_000_000), "due now");
    n.d.service();
    let (len, sta, err) = n.rx_desc(0);
    assert_eq!(len, 104, "the frame and its FCS");
    assert_eq!(sta & 0x3, 0x3, "DD and EOP");
    assert_eq!(err, 0);
    let mut got = [0u8; 104];
    n.ram.read(0x20000, &mut got).unwrap();
    assert_eq!(got[..100], f[..]);
    assert_eq!(
        u32::from_le_bytes(got[100..].try_into().unwrap()),
        crc32(&f)
    );
    assert_eq!(n.r32(RDH), 1);
    assert!(n.intx());
    assert_eq!(n.r32(ICR) & icr::RXT0, icr::RXT0);
    assert_eq!(n.r32(stat::GPRC), 1);
    assert_eq!(n.r32(stat::TPR), 1);
    assert_eq!(n.r32(stat::GORCL), 104);
    assert_eq!(n.r32(stat::GORCH), 0);
    // A short frame is padded to 60 bytes; SECRC strips the FCS.
    let v = n.r32(RCTL) | rctl::SECRC;
    n.w32(RCTL, v);
    n.incoming(&frame(MAC.0, 42));
    n.d.service();
    assert_eq!(n.rx_desc(1).0, 60);
}

#[test]
fn address_filtering() {
    let mut n = nic();
    n.rx_ring(16, 0);
    let other = [0x00, 0x16, 0x3e, 9, 9, 9];
    let mcast = [0x01, 0x00, 0x5e, 0x00, 0x00, 0x01];
    n.incoming(&frame(other, 64));
    n.incoming(&frame([0xFF; 6], 64));
    n.incoming(&frame(mcast, 64));
    n.d.service();
    assert_eq!(n.r32(RDH), 0, "no filter passes them");
    // BAM, then the multicast table bit for MO = 0: bits 47:36 = 0x010.
    let v = n.r32(RCTL) | rctl::BAM;
    n.w32(RCTL, v);
    n.w32(MTA, 1 << 0x10);
    n.incoming(&frame([0xFF; 6], 64));
    n.incoming(&frame(mcast, 64));
    n.incoming(&frame(other, 64));
    n.d.service();
    assert_eq!(n.r32(RDH), 2, "broadcast and the hashed multicast");
    assert_eq!(n.r32(stat::BPRC), 1);
    assert_eq!(n.r32(stat::MPRC), 1);
    // A second exact address in RAL1/RAH1 with AV; and promiscuous.
    n.w32(RAL0 + 8, u32::from_le_bytes([0x00, 0x16, 0x3e, 9]));
    n.w32(RAL0 + 12, u32::from_le_bytes([9, 9, 0, 0x80]));
    n.incoming(&frame(other, 64));
    n.d.service();
    assert_eq!(n.r32(RDH), 3);
    n.w32(RAL0 + 12, 0x0909);
    n.incoming(&frame(other, 64));
    n.d.service();
    assert_eq!(n.r32(RDH), 3, "without AV the address does not match");
    let v = n.r32(RCTL) | rctl::UPE;
    n.w32(RCTL, v);
    n.incoming(&frame(other, 64));
    n.d.service();
    assert_eq!(n.r32(RDH), 4, "unicast promiscuous");
}

#[test]
fn a_frame_longer_than_a_buffer_spans_descriptors() {
    let mut n = nic();
    // BSIZE 11b without BSEX: 256-byte buffers.
    n.rx_ring(16, 3 << rctl::BSIZE_SHIFT | rctl::SECRC);
    assert_eq!(n.d.rx_buffer_size(), 256);
    let f = frame(MAC.0, 700);
    n.incoming(&f);
    n.d.service();
    let mut got = Vec::new();
    for i in 0..3 {
        let (len, sta, _) = n.rx_desc(i);
        assert_eq!(len, [256, 256, 188][i as usize]);
        assert_eq!(sta & 2 != 0, i == 2, "EOP on the last only");
        assert_ne!(sta & 1, 0, "DD");
        let mut b = vec![0u8; len as usize];
        n.ram.read(0x20000 + 0x4000 * i, &mut b).unwrap();
        got.extend(b);
    }
    assert_eq!(got, f);
    assert_eq!(n.r32(RDH), 3);
}

#[test]
fn a_full_ring_keeps_frames_waiting_and_counts() {
    let mut n = nic();
    n.rx_ring(8, rctl::SECRC);
    n.w32(RDT, 0); // no free descriptor
    n.incoming(&frame(MAC.0, 64));
    n.d.service();
    assert_eq!(n.r32(RDH), 0);
    assert_eq!(n.r32(stat::RNBC), 1);
    assert!(
        n.wire.lock().unwrap().incoming.len() == 1,
        "the frame waits"
    );
    assert_eq!(
        n.d.next_deadline_ns(),
        None,
        "nothing to do until RDT moves"
    );
    n.wire.lock().unwrap().dropped = 3;
    n.d.service();
    assert_eq!(n.r32(stat::MPC), 3, "the backend's drops are missed frames");
    assert_eq!(n.r32(ICR) & icr::RXO, icr::RXO);
    n.w32(RDT, 7);
    n.d.service();
    assert_eq!(n.r32(RDH), 1);
}

#[test]
fn rxdmt0_when_free_descriptors_reach_half() {
    let mut n = nic();
    n.rx_ring(8, rctl::SECRC);
    n.w32(RDT, 5); // five free, threshold 8/2 = 4
    n.incoming(&frame(MAC.0, 64));
    n.d.service();
    assert_eq!(n.r32(ICR) & icr::RXDMT0, icr::RXDMT0);
}

#[test]
fn rdtr_delays_rxt0_through_the_registers() {
    let mut n = nic();
    n.rx_ring(8, rctl::SECRC);
    n.w32(RDTR, 100); // 102.4 us
    n.w32(IMS, icr::RXT0);
    n.incoming(&frame(MAC.0, 64));
    n.d.service();
    assert!(!n.intx());
    assert_eq!(n.d.next_deadline_ns(), Some(1_000_000 + 102_400));
    n.clock.advance(102_400);
    n.d.service();
    assert!(n.intx());
}

#[test]
fn legacy_transmit_with_rs_and_checksum_insertion() {
    let mut n = nic();
    n.tx_ring(8);
    n.w32(IMS, icr::TXDW);
    let f = frame([0xFF; 6], 80);
    n.ram.write(0x90000, &f).unwrap();
    n.put_tx_desc(0, legacy(0x90000, 80, EOP | IFCS | RS, 0, 0));
    // A second packet in two descriptors, with IC: CSS 14, CSO 20.
    let g = frame(MAC.0, 100);
    n.ram.write(0x91000, &g).unwrap();
    n.put_tx_desc(1, legacy(0x91000, 50, 0, 0, 0));
    n.put_tx_desc(2, legacy(0x91000 + 50, 50, EOP | IC | RS, 20, 14));
    n.w32(TDT, 3);
    let sent = n.sent();
    assert_eq!(sent.len(), 2);
    assert_eq!(sent[0], f);
    let mut expect = g.clone();
    expect[20..22].fill(0);
    // g[20..22] held 20, 21 when summed: the device sums what is there.
    let c = !ones_sum(&[&g[14..]]);
    expect[20..22].copy_from_slice(&c.to_be_bytes());
    assert_eq!(sent[1], expect);
    let mut d = [0u8; 16];
    n.ram.read(0x80000, &mut d).unwrap();
    assert_eq!(d[12] & 1, 1, "DD written back with RS");
    n.ram.read(0x80000 + 16, &mut d).unwrap();
    assert_eq!(d[12] & 1, 0, "no RS, no write-back");
    assert_eq!(n.r32(TDH), 3);
    assert!(n.intx());
    assert_eq!(n.r32(ICR) & (icr::TXDW | icr::TXQE), icr::TXDW | icr::TXQE);
    assert_eq!(n.r32(stat::GPTC), 2);
    assert_eq!(n.r32(stat::BPTC), 1);
    assert_eq!(n.r32(stat::TPT), 2, "total packets transmitted");
}

#[test]
fn short_frames_are_padded_with_psp() {
    let mut n = nic();
    n.tx_ring(8);
    n.ram.write(0x90000, &frame(MAC.0, 20)).unwrap();
    n.put_tx_desc(0, legacy(0x90000, 20, EOP, 0, 0));
    n.w32(TDT, 1);
    assert_eq!(n.sent()[0].len(), 60);
}

#[test]
fn a_chain_without_eop_past_the_maximum_is_dropped() {
    let mut n = nic();
    n.tx_ring(32);
    // 17 x 1000 bytes > 16288, EOP only on the last.
    for i in 0..17 {
        let cmd = if i == 16 { EOP | RS } else { 0 };
        n.put_tx_desc(i, legacy(0x90000, 1000, cmd, 0, 0));
    }
    n.w32(TDT, 17);
    assert!(n.sent().is_empty());
    assert_eq!(n.r32(TDH), 17, "the descriptors are consumed");
    let mut d = [0u8; 16];
    n.ram.read(0x80000 + 16 * 16, &mut d).unwrap();
    assert_eq!(d[12] & 1, 1, "and written back");
    // The next packet goes out.
    n.ram.write(0x90000, &frame(MAC.0, 64)).unwrap();
    n.put_tx_desc(17, legacy(0x90000, 64, EOP, 0, 0));
    n.w32(TDT, 18);
    assert_eq!(n.sent().len(), 1);
}

/// Builds Ethernet + IPv4 + TCP headers as a TSO driver does: IP total
/// length and checksum 0, the TCP checksum field holding the pseudo-header
/// sum without the length.
fn tso_header(flags: u8) -> Vec<u8> {
    let mut h = vec![0u8; 54];
    h[..6].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 1]);
    h[6..12].copy_from_slice(&MAC.0);
    h[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip = &mut h[14..34];
    ip[0] = 0x45;
    ip[4..6].copy_from_slice(&0x1234u16.to_be_bytes());
    ip[8] = 64;
    ip[9] = 6;
    ip[12..16].copy_from_slice(&[10, 0, 2, 15]);
    ip[16..20].copy_from_slice(&[10, 0, 2, 2]);
    let tcp = &mut h[34..54];
    tcp[0..2].copy_from_slice(&40000u16.to_be_bytes());
    tcp[2..4].copy_from_slice(&80u16.to_be_bytes());
    tcp[4..8].copy_from_slice(&1000u32.to_be_bytes());
    tcp[12] = 5 << 4;
    tcp[13] = flags;
    let pseudo = ones_sum(&[&[10, 0, 2, 15, 10, 0, 2, 2, 0, 6]]);
    h[50..52].copy_from_slice(&pseudo.to_be_bytes());
    h
}

#[test]
fn tso_segments_carry_correct_lengths_ids_sequence_numbers_and_checksums() {
    let mut n = nic();
    n.tx_ring(8);
    const PAYLOAD: usize = 4000;
    const MSS: usize = 1460;
    let header = tso_header(0x10 | 0x08 | 0x01); // ACK PSH FIN
    let payload: Vec<u8> = (0..PAYLOAD).map(|i| (i * 7 + 3) as u8).collect();
    let mut packet = header.clone();
    packet.extend(&payload);
    n.ram.write(0x90000, &packet).unwrap();
    // Context: IPCSS 14, IPCSO 24, IPCSE 33, TUCSS 34, TUCSO 50, TUCSE 0;
    // PAYLEN, DTYP 0, TUCMD DEXT|TSE|IP|TCP; HDRLEN 54, MSS.
    let mut c = [0u8; 16];
    c[0] = 14;
    c[1] = 24;
    c[2..4].copy_from_slice(&33u16.to_le_bytes());
    c[4] = 34;
    c[5] = 50;
    let tucmd = DEXT | 1 << 2 | 1 << 1 | 1 << 0;
    let dword2 = PAYLOAD as u32 | u32::from(tucmd) << 24;
    c[8..12].copy_from_slice(&dword2.to_le_bytes());
    c[13] = 54;
    c[14..16].copy_from_slice(&(MSS as u16).to_le_bytes());
    n.put_tx_desc(0, c);
    // Two data descriptors: DTYP 1, DCMD DEXT|TSE (|EOP|RS), POPTS IXSM|TXSM.
    let data = |addr: u64, len: u32, eop: bool| {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&addr.to_le_bytes());
        let dcmd = DEXT | 1 << 2 | IFCS | if eop { EOP | RS } else { 0 };
        let dw = len | 1 << 20 | u32::from(dcmd) << 24;
        d[8..12].copy_from_slice(&dw.to_le_bytes());
        d[13] = 0x3;
        d
    };
    n.put_tx_desc(1, data(0x90000, 1000, false));
    n.put_tx_desc(2, data(0x90000 + 1000, (packet.len() - 1000) as u32, true));
    n.w32(TDT, 3);
    let sent = n.sent();
    let sizes: Vec<usize> = sent.iter().map(|s| s.len() - 54).collect();
    assert_eq!(sizes, [1460, 1460, 1080]);
    for (k, s) in sent.iter().enumerate() {
        let ip = &s[14..34];
        let tcp = &s[34..];
        let last = k == sent.len() - 1;
        assert_eq!(
            u16::from_be_bytes([ip[2], ip[3]]) as usize,
            s.len() - 14,
            "IP total length"
        );
        assert_eq!(
            u16::from_be_bytes([ip[4], ip[5]]),
            0x1234 + k as u16,
            "IP id"
        );
        assert_eq!(ones_sum(&[ip]), 0xFFFF, "IP header checksum of segment {k}");
        let seq = u32::from_be_bytes(tcp[4..8].try_into().unwrap());
        assert_eq!(seq, 1000 + (k * MSS) as u32, "sequence number");
        assert_eq!(
            tcp[13] & 0x09 != 0,
            last,
            "FIN and PSH on the last segment only"
        );
        assert_eq!(tcp[13] & 0x10, 0x10, "ACK on every segment");
        let tcp_len = (tcp.len() as u16).to_be_bytes();
        let pseudo = [&ip[12..20], &[0, 6], &tcp_len[..]].concat();
        assert_eq!(
            ones_sum(&[&pseudo, tcp]),
            0xFFFF,
            "TCP checksum of segment {k}"
        );
        assert_eq!(&s[54..], &payload[k * MSS..k * MSS + sizes[k]]);
    }
    assert_eq!(n.r32(stat::TSCTC), 1);
}

#[test]
fn tso_with_offsets_past_the_header_is_dropped() {
    let mut n = nic();
    n.tx_ring(8);
    let mut c = [0u8; 16];
    c[4] = 200; // TUCSS past HDRLEN
    c[8..12].copy_from_slice(&(100u32 | u32::from(DEXT | 4 | 3) << 24).to_le_bytes());
    c[13] = 54;
    c[14..16].copy_from_slice(&1460u16.to_le_bytes());
    n.put_tx_desc(0, c);
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&0x90000u64.to_le_bytes());
    d[8..12].copy_from_slice(&(154u32 | 1 << 20 | u32::from(DEXT | 4 | EOP) << 24).to_le_bytes());
    n.put_tx_desc(1, d);
    n.w32(TDT, 2);
    assert!(n.sent().is_empty());
    assert_eq!(n.r32(stat::TSCTFC), 1);
    assert_eq!(n.r32(TDH), 2);
}

#[test]
fn hostile_rings_outside_ram_are_skipped() {
    let mut n = nic();
    // Transmit ring at the top of RAM: descriptor 0 fits, 1 does not.
    n.w32(TDBAL, RAM as u32 - 16);
    n.w32(TDLEN, 128);
    n.w32(TCTL, tctl::EN);
    n.ram.write_obj(RAM as u64 - 16, u64::MAX - 8).unwrap(); // buffer far outside
    n.ram
        .write_obj(RAM as u64 - 8, 64u64 | u64::from(EOP | RS) << 24)
        .unwrap();
    n.w32(TDT, 3);
    assert_eq!(n.r32(TDH), 3, "every descriptor consumed");
    assert!(n.sent().is_empty());
    // Beyond 4 GiB through TDBAH.
    n.w32(TDBAH, 0xFFFF_FFFF);
    n.w32(TDT, 7);
    assert_eq!(n.r32(TDH), 7);
    // A receive ring outside RAM: the frame cannot be stored.
    n.w32(RDBAL, 0xFFFF_FF00);
    n.w32(RDBAH, 0xFFFF_FFFF);
    n.w32(RDLEN, 128);
    n.w32(RDT, 4);
    n.w32(RCTL, rctl::EN | rctl::BAM);
    n.incoming(&frame([0xFF; 6], 64));
    n.d.service();
    // Head and tail beyond the ring.
    n.w32(RDH, 100);
    n.incoming(&frame([0xFF; 6], 64));
    n.d.service();
    assert_eq!(
        n.d.next_deadline_ns(),
        None,
        "an unusable ring is not polled"
    );
    n.w32(TDH, 500);
    n.w32(TDT, 600);
    n.d.service();
    assert_eq!(n.r32(TDH), 500);
    // RDLEN 0: no ring.
    n.w32(RDLEN, 0);
    n.w32(RDH, 0);
    n.w32(RDT, 0);
    n.d.service();
}

#[test]
fn a_64k_descriptor_ring_is_walked_in_bounded_passes() {
    let mut n = nic();
    n.w32(TDBAL, 0);
    n.w32(TDLEN, 0xFFF80); // 65528 descriptors: 1 MiB, all of RAM
    n.w32(TCTL, tctl::EN);
    n.w32(TDT, 65527);
    assert_eq!(
        n.r32(TDH),
        tx::DESCS_PER_PASS,
        "one doorbell, one bounded pass"
    );
    let mut passes = 1;
    while n.r32(TDH) != 65527 {
        let before = n.r32(TDH);
        assert_eq!(
            n.d.next_deadline_ns(),
            Some(1_000_000),
            "more work: due now"
        );
        n.d.service();
        assert!(n.r32(TDH) - before <= tx::DESCS_PER_PASS);
        passes += 1;
        assert!(passes < 1000);
    }
    assert_eq!(passes, 65527usize.div_ceil(tx::DESCS_PER_PASS as usize));
}

#[test]
fn statistics_registers_clear_on_read_and_ignore_writes() {
    let mut n = nic();
    n.tx_ring(8);
    n.ram.write(0x90000, &frame(MAC.0, 64)).unwrap();
    n.put_tx_desc(0, legacy(0x90000, 64, EOP, 0, 0));
    n.w32(TDT, 1);
    n.w32(stat::GPTC, 55);
    assert_eq!(n.r32(stat::GPTC), 1);
    assert_eq!(n.r32(stat::GPTC), 0);
    assert_eq!(n.r32(stat::GOTCL), 68);
    assert_eq!(n.r32(stat::GOTCH), 0);
    assert_eq!(n.r32(stat::GOTCL), 0);
}
