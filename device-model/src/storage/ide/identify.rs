//! IDENTIFY DEVICE and IDENTIFY PACKET DEVICE data (ATA8-ACS 7.16 table 22
//! and 7.17 table 26): 256 little-endian words, strings with the two
//! characters of each word swapped, word 255 the integrity word (signature
//! `A5h` in bits 7:0, and bits 15:8 chosen so the 512 bytes sum to 0 mod 256).

/// The transfer mode SET FEATURES (subcommand 03h) selected (ATA8-ACS 7.48.11).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TransferMode {
    /// PIO default or PIO mode n (0..=4).
    Pio(u8),
    /// Multiword DMA mode n (0..=2).
    Mwdma(u8),
    /// Ultra DMA mode n (0..=5).
    Udma(u8),
}

impl TransferMode {
    /// Decodes the Count field of SET FEATURES 03h; `None` for a mode this
    /// device does not support.
    pub fn from_count(count: u8) -> Option<TransferMode> {
        match count {
            0x00 | 0x01 => Some(TransferMode::Pio(0)),
            0x08..=0x0C => Some(TransferMode::Pio(count & 7)),
            0x20..=0x22 => Some(TransferMode::Mwdma(count & 7)),
            0x40..=0x45 => Some(TransferMode::Udma(count & 7)),
            _ => None,
        }
    }

    /// The power-on mode: multiword DMA 2, the fastest the PIIX3 runs.
    pub const DEFAULT: TransferMode = TransferMode::Mwdma(2);
}

/// Multiword DMA modes 0-2 supported (word 63 bits 2:0).
const MWDMA_SUPPORTED: u16 = 0x0007;
/// Ultra DMA modes 0-5 supported (word 88 bits 5:0).
const UDMA_SUPPORTED: u16 = 0x003F;
/// The most sectors per DRQ block of READ/WRITE MULTIPLE (word 47).
pub const MAX_MULTIPLE: u8 = 16;

/// What an ATA disk reports about itself.
pub struct DiskIdentity<'a> {
    pub serial: &'a str,
    pub firmware: &'a str,
    pub model: &'a str,
    pub capacity: u64,
    /// Default CHS translation (cylinders, heads, sectors per track).
    pub default_chs: (u16, u8, u8),
    /// Current CHS translation (INITIALIZE DEVICE PARAMETERS).
    pub current_chs: (u16, u8, u8),
    /// Sectors per block of READ/WRITE MULTIPLE; 0 = not set.
    pub multiple: u8,
    pub write_cache: bool,
    pub mode: TransferMode,
}

/// What an ATAPI device reports about itself.
pub struct PacketIdentity<'a> {
    pub serial: &'a str,
    pub firmware: &'a str,
    pub model: &'a str,
    pub mode: TransferMode,
}

/// IDENTIFY DEVICE (ECh) data for an ATA disk.
pub fn identify_device(id: &DiskIdentity<'_>) -> [u16; 256] {
    let mut w = [0u16; 256];
    // Word 0: bit 15 clear = ATA device, bit 6 = fixed (obsolete, as QEMU and real disks set).
    w[0] = 0x0040;
    let (cyl, heads, spt) = id.default_chs;
    w[1] = cyl;
    w[3] = u16::from(heads);
    w[6] = u16::from(spt);
    put_string(&mut w, 10, 10, id.serial);
    put_string(&mut w, 23, 4, id.firmware);
    put_string(&mut w, 27, 20, id.model);
    // Word 47: bits 15:8 80h, bits 7:0 the most sectors per READ/WRITE MULTIPLE block.
    w[47] = 0x8000 | u16::from(MAX_MULTIPLE);
    // Word 48: bit 14 shall be one; no trusted computing.
    w[48] = 0x4000;
    // Word 49: bit 11 IORDY supported, bit 9 LBA supported, bit 8 DMA supported.
    w[49] = 0x0B00;
    // Word 50: bit 14 shall be one.
    w[50] = 0x4000;
    // Words 51-52: obsolete PIO/DMA timing modes (PIO 2), still read by old drivers.
    w[51] = 0x0200;
    w[52] = 0x0200;
    // Word 53: words 54-58, 64-70 and 88 are valid.
    w[53] = 0x0007;
    let (ccyl, cheads, cspt) = id.current_chs;
    w[54] = ccyl;
    w[55] = u16::from(cheads);
    w[56] = u16::from(cspt);
    let chs_cap = u32::from(ccyl) * u32::from(cheads) * u32::from(cspt);
    w[57] = chs_cap as u16;
    w[58] = (chs_cap >> 16) as u16;
    // Word 59: bit 8 = the multiple setting in bits 7:0 is valid.
    if id.multiple != 0 {
        w[59] = 0x0100 | u16::from(id.multiple);
    }
    // Words 60-61: sectors addressable by 28-bit commands.
    let lba28 = id.capacity.min(0x0FFF_FFFF) as u32;
    w[60] = lba28 as u16;
    w[61] = (lba28 >> 16) as u16;
    w[63] = MWDMA_SUPPORTED | mode_bits(id.mode, true);
    // Word 64: PIO modes 3 and 4 supported.
    w[64] = 0x0003;
    // Words 65-68: cycle times in ns (mode 2 multiword DMA, mode 4 PIO).
    w[65] = 120;
    w[66] = 120;
    w[67] = 120;
    w[68] = 120;
    // Word 80: major versions ATA/ATAPI-4 .. ATA8-ACS (bits 4-8).
    w[80] = 0x01F0;
    // Word 82: bit 5 volatile write cache, bit 3 power management feature set.
    w[82] = 0x0028;
    // Word 83: bit 14 shall be one, bit 13 FLUSH CACHE EXT, bit 12 FLUSH
    // CACHE, bit 10 48-bit address feature set.
    w[83] = 0x7400;
    // Word 84: bit 14 shall be one.
    w[84] = 0x4000;
    // Words 85-87: what is enabled of words 82-84.
    w[85] = 0x0008 | if id.write_cache { 0x0020 } else { 0 };
    w[86] = 0x3400;
    w[87] = 0x4000;
    w[88] = UDMA_SUPPORTED | mode_bits(id.mode, false);
    // Words 100-103: sectors addressable by 48-bit commands.
    for (i, word) in w[100..104].iter_mut().enumerate() {
        *word = (id.capacity >> (16 * i)) as u16;
    }
    // Word 106: bit 14 shall be one; one 512-byte logical sector per physical sector.
    w[106] = 0x4000;
    seal(&mut w);
    w
}

/// IDENTIFY PACKET DEVICE (A1h) data for an ATAPI CD/DVD-ROM.
pub fn identify_packet_device(id: &PacketIdentity<'_>) -> [u16; 256] {
    let mut w = [0u16; 256];
    // Word 0: 10b ATAPI (15:14), 05h CD-ROM device type (12:8), removable
    // (7), DRQ within 50 us after PACKET (6:5 = 10b), 12-byte packets (1:0 = 00b).
    w[0] = 0x85C0;
    put_string(&mut w, 10, 10, id.serial);
    put_string(&mut w, 23, 4, id.firmware);
    put_string(&mut w, 27, 20, id.model);
    // Word 49: IORDY supported, LBA (shall be one), DMA supported.
    w[49] = 0x0B00;
    w[50] = 0x4000;
    // Word 53: words 64-70 and 88 are valid.
    w[53] = 0x0006;
    w[63] = MWDMA_SUPPORTED | mode_bits(id.mode, true);
    w[64] = 0x0003;
    w[65] = 120;
    w[66] = 120;
    w[67] = 120;
    w[68] = 120;
    w[80] = 0x01F0;
    // Word 82: bit 9 DEVICE RESET, bit 4 PACKET feature set, bit 3 power management.
    w[82] = 0x0218;
    w[83] = 0x4000;
    w[84] = 0x4000;
    w[85] = 0x0218;
    w[87] = 0x4000;
    w[88] = UDMA_SUPPORTED | mode_bits(id.mode, false);
    seal(&mut w);
    w
}

/// The "selected" bits (15:8) of word 63 (`mwdma`) or word 88.
fn mode_bits(mode: TransferMode, mwdma: bool) -> u16 {
    match (mode, mwdma) {
        (TransferMode::Mwdma(n), true) | (TransferMode::Udma(n), false) => 0x100 << n,
        _ => 0,
    }
}

/// `words` words at `start`, ASCII padded with spaces, two characters per
/// word with the first in bits 15:8 (ATA8-ACS 3.4.9).
fn put_string(w: &mut [u16; 256], start: usize, words: usize, s: &str) {
    let bytes = s.as_bytes();
    for i in 0..words {
        let ch = |j: usize| {
            bytes
                .get(j)
                .copied()
                .filter(|c| c.is_ascii_graphic() || *c == b' ')
                .unwrap_or(b' ')
        };
        w[start + i] = u16::from(ch(2 * i)) << 8 | u16::from(ch(2 * i + 1));
    }
}

/// Word 255: signature A5h and the checksum (ATA8-ACS 7.16.7.88).
fn seal(w: &mut [u16; 256]) {
    w[255] = 0x00A5;
    let sum = w[..255].iter().fold(0xA5u8, |s, &v| {
        s.wrapping_add(v as u8).wrapping_add((v >> 8) as u8)
    });
    w[255] |= u16::from(sum.wrapping_neg()) << 8;
}

/// Bytes of IDENTIFY (PACKET) DEVICE data.
pub const IDENTIFY_BYTES: usize = 512;

/// Writes the 512 bytes a host reads from the data register into `out`
/// (as many as fit).
pub fn put_bytes(w: &[u16; 256], out: &mut [u8]) {
    for (o, v) in out.chunks_exact_mut(2).zip(w) {
        o.copy_from_slice(&v.to_le_bytes());
    }
}
