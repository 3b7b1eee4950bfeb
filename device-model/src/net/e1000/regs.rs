//! Register offsets in BAR0 and their bits, named as in the 8254x SDM
//! section 13 (register descriptions) and table 13-2 (register summary).

/// Device Control (13.4.1).
pub const CTRL: u64 = 0x0000;
/// Device Status (13.4.2), read only.
pub const STATUS: u64 = 0x0008;
/// EEPROM/Flash Control and Data (13.4.3).
pub const EECD: u64 = 0x0010;
/// EEPROM Read (13.4.4).
pub const EERD: u64 = 0x0014;
/// Extended Device Control (13.4.6).
pub const CTRL_EXT: u64 = 0x0018;
/// MDI Control (13.4.7).
pub const MDIC: u64 = 0x0020;
/// Flow control address low/high, type (13.4.8-13.4.9).
pub const FCAL: u64 = 0x0028;
pub const FCAH: u64 = 0x002C;
pub const FCT: u64 = 0x0030;
/// VLAN Ether Type (13.4.10).
pub const VET: u64 = 0x0038;
/// Interrupt Cause Read (13.4.17).
pub const ICR: u64 = 0x00C0;
/// Interrupt Throttling (13.4.18).
pub const ITR: u64 = 0x00C4;
/// Interrupt Cause Set (13.4.19).
pub const ICS: u64 = 0x00C8;
/// Interrupt Mask Set/Read (13.4.20).
pub const IMS: u64 = 0x00D0;
/// Interrupt Mask Clear (13.4.21).
pub const IMC: u64 = 0x00D8;
/// Receive Control (13.4.22).
pub const RCTL: u64 = 0x0100;
/// Flow Control Transmit Timer Value (13.4.13).
pub const FCTTV: u64 = 0x0170;
/// Transmit/Receive Configuration Word (13.4.14-15).
pub const TXCW: u64 = 0x0178;
pub const RXCW: u64 = 0x0180;
/// Transmit Control (13.4.33).
pub const TCTL: u64 = 0x0400;
/// Transmit IPG (13.4.34).
pub const TIPG: u64 = 0x0410;
/// Adaptive IFS Throttle (13.4.35).
pub const AIT: u64 = 0x0458;
/// LED Control (13.4.16).
pub const LEDCTL: u64 = 0x0E00;
/// Packet Buffer Allocation (13.4.25).
pub const PBA: u64 = 0x1000;
/// Flow control receive thresholds (13.4.11-12).
pub const FCRTL: u64 = 0x2160;
pub const FCRTH: u64 = 0x2168;
/// Receive descriptor ring (13.4.26-13.4.32).
pub const RDBAL: u64 = 0x2800;
pub const RDBAH: u64 = 0x2804;
pub const RDLEN: u64 = 0x2808;
pub const RDH: u64 = 0x2810;
pub const RDT: u64 = 0x2818;
/// Receive Delay Timer (13.4.30).
pub const RDTR: u64 = 0x2820;
/// Receive Descriptor Control (13.4.31).
pub const RXDCTL: u64 = 0x2828;
/// Receive Interrupt Absolute Delay Timer (13.4.32).
pub const RADV: u64 = 0x282C;
/// Receive Small Packet Detect Interrupt (13.4.33).
pub const RSRPD: u64 = 0x2C00;
/// Transmit descriptor ring (13.4.38-13.4.44).
pub const TDBAL: u64 = 0x3800;
pub const TDBAH: u64 = 0x3804;
pub const TDLEN: u64 = 0x3808;
pub const TDH: u64 = 0x3810;
pub const TDT: u64 = 0x3818;
/// Transmit Interrupt Delay Value (13.4.44).
pub const TIDV: u64 = 0x3820;
/// Transmit Descriptor Control (13.4.45).
pub const TXDCTL: u64 = 0x3828;
/// Transmit Absolute Interrupt Delay Value (13.4.46).
pub const TADV: u64 = 0x382C;
/// TCP Segmentation Pad and Minimum Threshold (13.4.47).
pub const TSPMT: u64 = 0x3830;
/// The statistics registers (13.7): CRCERRS at the start, TSCTFC last.
pub const STATS_START: u64 = 0x4000;
pub const STATS_END: u64 = 0x4100;
/// Receive Checksum Control (13.4.37).
pub const RXCSUM: u64 = 0x5000;
/// Multicast Table Array, 128 registers (13.5.1).
pub const MTA: u64 = 0x5200;
pub const MTA_LEN: u64 = 0x200;
/// Receive Address low/high, 16 pairs (13.5.2-13.5.3).
pub const RAL0: u64 = 0x5400;
pub const RA_LEN: u64 = 0x80;
/// VLAN Filter Table Array (13.5.4).
pub const VFTA: u64 = 0x5600;
pub const VFTA_LEN: u64 = 0x200;
/// Wake-up and management registers (13.6).
pub const WUC: u64 = 0x5800;
pub const WUFC: u64 = 0x5808;
pub const WUS: u64 = 0x5810;
pub const MANC: u64 = 0x5820;
pub const IPAV: u64 = 0x5838;
pub const IP4AT: u64 = 0x5840;
pub const IP6AT: u64 = 0x5880;
pub const WUPL: u64 = 0x5900;
pub const WUPM: u64 = 0x5A00;
pub const FFLT: u64 = 0x5F00;
pub const FFMT: u64 = 0x9000;
pub const FFVT: u64 = 0x9800;
/// Diagnostic FIFO registers the Linux driver's self test touches (13.4.48+).
pub const RDFH: u64 = 0x2410;
pub const RDFT: u64 = 0x2418;
pub const RDFHS: u64 = 0x2420;
pub const RDFTS: u64 = 0x2428;
pub const RDFPC: u64 = 0x2430;
pub const TDFH: u64 = 0x3410;
pub const TDFT: u64 = 0x3418;
pub const TDFHS: u64 = 0x3420;
pub const TDFTS: u64 = 0x3428;
pub const TDFPC: u64 = 0x3430;

/// The size of BAR0 (memory) and BAR1 (I/O), SDM 4.1 table 4-2.
pub const BAR0_LEN: u64 = 128 << 10;
pub const BAR1_LEN: u64 = 64;
/// The I/O BAR's two registers (SDM 13.2.2): the address of a BAR0
/// register, then its data.
pub const IOADDR: u64 = 0;
pub const IODATA: u64 = 4;

/// CTRL bits (13.4.1).
pub mod ctrl {
    pub const FD: u32 = 1 << 0;
    pub const LRST: u32 = 1 << 3;
    pub const ASDE: u32 = 1 << 5;
    pub const SLU: u32 = 1 << 6;
    pub const SPEED_1000: u32 = 2 << 8;
    pub const RST: u32 = 1 << 26;
    pub const PHY_RST: u32 = 1 << 31;
}

/// STATUS bits (13.4.2).
pub mod status {
    pub const FD: u32 = 1 << 0;
    pub const LU: u32 = 1 << 1;
    pub const SPEED_1000: u32 = 2 << 6;
    /// Auto-speed detection value: 1000 Mb/s.
    pub const ASDV_1000: u32 = 2 << 8;
}

/// EECD bits (13.4.3).
pub mod eecd {
    pub const SK: u32 = 1 << 0;
    pub const CS: u32 = 1 << 1;
    pub const DI: u32 = 1 << 2;
    pub const DO: u32 = 1 << 3;
    pub const FWE_MASK: u32 = 3 << 4;
    pub const EE_REQ: u32 = 1 << 6;
    pub const EE_GNT: u32 = 1 << 7;
    pub const EE_PRES: u32 = 1 << 8;
}

/// EERD fields of the 82540EM (13.4.4).
pub mod eerd {
    pub const START: u32 = 1 << 0;
    pub const DONE: u32 = 1 << 4;
    pub const ADDR_SHIFT: u32 = 8;
    pub const DATA_SHIFT: u32 = 16;
}

/// MDIC fields (13.4.7).
pub mod mdic {
    pub const DATA_MASK: u32 = 0xFFFF;
    pub const REGADD_SHIFT: u32 = 16;
    pub const PHYADD_SHIFT: u32 = 21;
    pub const OP_SHIFT: u32 = 26;
    pub const OP_WRITE: u32 = 1;
    pub const OP_READ: u32 = 2;
    pub const R: u32 = 1 << 28;
    pub const I: u32 = 1 << 29;
    pub const E: u32 = 1 << 30;
}

/// Interrupt cause bits of ICR/ICS/IMS/IMC (13.4.17).
pub mod icr {
    pub const TXDW: u32 = 1 << 0;
    pub const TXQE: u32 = 1 << 1;
    pub const LSC: u32 = 1 << 2;
    pub const RXSEQ: u32 = 1 << 3;
    pub const RXDMT0: u32 = 1 << 4;
    pub const RXO: u32 = 1 << 6;
    pub const RXT0: u32 = 1 << 7;
    pub const MDAC: u32 = 1 << 9;
    pub const RXCFG: u32 = 1 << 10;
    pub const GPI_SDP6: u32 = 1 << 13;
    pub const GPI_SDP7: u32 = 1 << 14;
    pub const TXD_LOW: u32 = 1 << 15;
    pub const SRPD: u32 = 1 << 16;
    /// The causes the 82540EM has (bits 16:0 less the reserved 5, 8, 11, 12).
    pub const VALID: u32 = 0x0001_E6DF;
}

/// RCTL bits (13.4.22).
pub mod rctl {
    pub const EN: u32 = 1 << 1;
    pub const SBP: u32 = 1 << 2;
    pub const UPE: u32 = 1 << 3;
    pub const MPE: u32 = 1 << 4;
    pub const LPE: u32 = 1 << 5;
    pub const RDMTS_SHIFT: u32 = 8;
    pub const MO_SHIFT: u32 = 12;
    pub const BAM: u32 = 1 << 15;
    pub const BSIZE_SHIFT: u32 = 16;
    pub const BSEX: u32 = 1 << 25;
    pub const SECRC: u32 = 1 << 26;
}

/// TCTL bits (13.4.33).
pub mod tctl {
    pub const EN: u32 = 1 << 1;
    pub const PSP: u32 = 1 << 3;
}

/// Receive Address High: Address Valid (13.5.3).
pub const RAH_AV: u32 = 1 << 31;
/// RDTR: Flush Partial Descriptor Block (13.4.30).
pub const RDTR_FPD: u32 = 1 << 31;
/// The unit of RDTR, RADV, TIDV and TADV: 1.024 us (13.4.30).
pub const DELAY_UNIT_NS: u64 = 1024;
/// The unit of ITR: 256 ns (13.4.18).
pub const ITR_UNIT_NS: u64 = 256;
/// Descriptor ring lengths are multiples of 128 bytes: bits 6:0 of
/// RDLEN/TDLEN read as 0, and the length field is bits 19:7 (13.4.28).
pub const RING_LEN_MASK: u32 = 0x000F_FF80;
/// Every descriptor is 16 bytes (3.2.3, 3.3.3).
pub const DESC_LEN: u64 = 16;
