//! The 82540EM's serial EEPROM: a 64-word Microwire part (8254x SDM 5.3),
//! read by software bit by bit through EECD or a word at a time through
//! EERD, with the contents of SDM 5.6 table 5-2.

use super::regs::{eecd, eerd};
use crate::net::MacAddress;

/// Words in the EEPROM (a 1 Kbit part with 6 address bits; EECD.EE_SIZE = 0).
pub const WORDS: usize = 64;
/// The word holding the checksum: the sum of words 0x00-0x3F is 0xBABA (5.6.13).
pub const CHECKSUM_WORD: usize = 0x3F;
pub const CHECKSUM_SUM: u16 = 0xBABA;

/// Word addresses of table 5-2.
pub mod word {
    pub const INIT_CONTROL_1: usize = 0x0A;
    pub const SUBSYSTEM_ID: usize = 0x0B;
    pub const SUBSYSTEM_VENDOR_ID: usize = 0x0C;
    pub const DEVICE_ID: usize = 0x0D;
    pub const VENDOR_ID: usize = 0x0E;
    pub const INIT_CONTROL_2: usize = 0x0F;
}

/// The Microwire READ opcode after its start bit: `1 10` (5.3.1).
const READ_COMMAND: u16 = 0b110;
/// Start bit, opcode and address bits clocked in before data comes out.
const COMMAND_BITS: u32 = 3 + 6;

/// The EEPROM and its Microwire shift state.
pub struct Eeprom {
    words: [u16; WORDS],
    /// Bits clocked in since chip select, once a start bit was seen.
    shift: u16,
    bits_in: u32,
    /// While reading: the word being shifted out and the next bit (0 = MSB).
    reading: Option<(usize, u32)>,
    /// The value of EECD the guest last wrote (SK, CS, DI, FWE, EE_REQ).
    eecd: u32,
    /// The DO pin.
    data_out: bool,
}

impl Eeprom {
    /// The image of a card with station address `mac`, IDs `device`,
    /// `subsystem_vendor`:`subsystem` of vendor 8086.
    pub fn new(mac: MacAddress, device: u16, subsystem_vendor: u16, subsystem: u16) -> Eeprom {
        let mut words = [0u16; WORDS];
        for (i, w) in words.iter_mut().take(3).enumerate() {
            // Word n holds octets 2n (low byte) and 2n+1 (5.6.1).
            *w = u16::from_le_bytes([mac.0[2 * i], mac.0[2 * i + 1]]);
        }
        // Signature 01b in bits 15:14 ("valid image"), load the subsystem
        // and device IDs from the EEPROM (bits 0-1) (5.6.6).
        words[word::INIT_CONTROL_1] = 0x4000 | 0x3;
        words[word::SUBSYSTEM_ID] = subsystem;
        words[word::SUBSYSTEM_VENDOR_ID] = subsystem_vendor;
        words[word::DEVICE_ID] = device;
        words[word::VENDOR_ID] = 0x8086;
        // PAUSE and ASM_DIR advertised (bits 13:12), as on Intel's cards (5.6.8).
        words[word::INIT_CONTROL_2] = 0x3000;
        let sum = words[..CHECKSUM_WORD]
            .iter()
            .fold(0u16, |s, &w| s.wrapping_add(w));
        words[CHECKSUM_WORD] = CHECKSUM_SUM.wrapping_sub(sum);
        Eeprom {
            words,
            shift: 0,
            bits_in: 0,
            reading: None,
            eecd: 0,
            data_out: false,
        }
    }

    /// Word `index` (0 past the end, as the EERD of a missing word).
    pub fn word(&self, index: usize) -> u16 {
        self.words.get(index).copied().unwrap_or(0)
    }

    /// Back to the state after power-on: the pins low, no transfer.
    pub fn reset(&mut self) {
        self.eecd = 0;
        self.end_transfer();
    }

    fn end_transfer(&mut self) {
        self.shift = 0;
        self.bits_in = 0;
        self.reading = None;
        self.data_out = false;
    }

    /// EECD as read: the pins software drives, DO, EEPROM present, and the
    /// grant following the request (no other agent ever holds the EEPROM).
    pub fn read_eecd(&self) -> u32 {
        let mut v = self.eecd & (eecd::SK | eecd::CS | eecd::DI | eecd::FWE_MASK | eecd::EE_REQ);
        if self.data_out {
            v |= eecd::DO;
        }
        if v & eecd::EE_REQ != 0 {
            v |= eecd::EE_GNT;
        }
        v | eecd::EE_PRES
    }

    /// A write of EECD: a rising SK edge with CS high clocks a bit in or out
    /// (5.3.1); CS low ends the transfer.
    pub fn write_eecd(&mut self, value: u32) {
        let old = self.eecd;
        self.eecd = value;
        if value & eecd::CS == 0 {
            self.end_transfer();
            return;
        }
        let rising = old & eecd::SK == 0 && value & eecd::SK != 0;
        if !rising {
            return;
        }
        if let Some((index, bit)) = self.reading {
            // Data out, MSB first; past bit 15 the next word follows
            // (sequential read).
            let w = self.words[index];
            self.data_out = (w >> (15 - bit)) & 1 != 0;
            self.reading = Some(if bit == 15 {
                ((index + 1) % WORDS, 0)
            } else {
                (index, bit + 1)
            });
            return;
        }
        let di = value & eecd::DI != 0;
        if self.bits_in == 0 && !di {
            // Zeros before the start bit are ignored.
            return;
        }
        self.shift = (self.shift << 1) | u16::from(di);
        self.bits_in += 1;
        if self.bits_in == COMMAND_BITS {
            if self.shift >> 6 == READ_COMMAND {
                self.reading = Some((usize::from(self.shift & 0x3F), 0));
                // The dummy bit before the data is 0.
                self.data_out = false;
            } else {
                // Writes, erases and their enables: the image is read only
                // here (write protected); the command is ignored.
                self.shift = 0;
                self.bits_in = 0;
            }
        }
    }

    /// EERD after a write of `value`: with START, the read is done at once
    /// (DONE set, the word in DATA) (13.4.4).
    pub fn eerd(&self, value: u32) -> u32 {
        if value & eerd::START == 0 {
            return value & !eerd::DONE;
        }
        let addr = (value >> eerd::ADDR_SHIFT) & 0xFF;
        let data = u32::from(self.word(addr as usize));
        (addr << eerd::ADDR_SHIFT) | eerd::DONE | (data << eerd::DATA_SHIFT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: MacAddress = MacAddress([0x00, 0x16, 0x3e, 0x12, 0x34, 0x56]);

    fn eeprom() -> Eeprom {
        Eeprom::new(MAC, 0x100E, 0x8086, 0x001E)
    }

    /// One word read the way a driver bit-bangs Microwire: CS up, start bit,
    /// opcode 10b, 6 address bits, then 16 clocks reading DO (5.3.1).
    fn microwire_read(e: &mut Eeprom, addr: u16) -> u16 {
        let clock = |e: &mut Eeprom, di: bool| {
            let d = if di { eecd::DI } else { 0 };
            e.write_eecd(eecd::CS | d);
            e.write_eecd(eecd::CS | d | eecd::SK);
            let out = e.read_eecd() & eecd::DO != 0;
            e.write_eecd(eecd::CS | d);
            out
        };
        e.write_eecd(eecd::EE_REQ);
        assert_ne!(
            e.read_eecd() & eecd::EE_GNT,
            0,
            "the grant follows the request"
        );
        let command = (READ_COMMAND << 6) | addr;
        for bit in (0..9).rev() {
            clock(e, (command >> bit) & 1 != 0);
        }
        let mut w = 0u16;
        for _ in 0..16 {
            w = (w << 1) | u16::from(clock(e, false));
        }
        e.write_eecd(0);
        w
    }

    #[test]
    fn the_image_holds_the_mac_ids_and_a_valid_checksum() {
        let e = eeprom();
        assert_eq!(e.word(0), 0x1600);
        assert_eq!(e.word(1), 0x123e);
        assert_eq!(e.word(2), 0x5634);
        assert_eq!(e.word(word::DEVICE_ID), 0x100E);
        assert_eq!(e.word(word::VENDOR_ID), 0x8086);
        assert_eq!(e.word(word::SUBSYSTEM_ID), 0x001E);
        assert_eq!(e.word(word::SUBSYSTEM_VENDOR_ID), 0x8086);
        let sum = (0..WORDS).fold(0u16, |s, i| s.wrapping_add(e.word(i)));
        assert_eq!(sum, 0xBABA, "5.6.13");
    }

    #[test]
    fn microwire_reads_every_word() {
        let mut e = eeprom();
        for addr in 0..WORDS as u16 {
            assert_eq!(
                microwire_read(&mut e, addr),
                e.word(addr.into()),
                "word {addr}"
            );
        }
        assert_ne!(e.read_eecd() & eecd::EE_PRES, 0);
    }

    #[test]
    fn eerd_reads_a_word_at_once() {
        let e = eeprom();
        let v = e.eerd(eerd::START | (2 << eerd::ADDR_SHIFT));
        assert_ne!(v & eerd::DONE, 0);
        assert_eq!(v >> eerd::DATA_SHIFT, 0x5634);
        assert_eq!(e.eerd(0) & eerd::DONE, 0);
        assert_eq!(e.eerd(eerd::START | (0xFF << eerd::ADDR_SHIFT)) >> 16, 0);
    }
}
