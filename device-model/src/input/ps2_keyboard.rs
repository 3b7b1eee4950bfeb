//! A PS/2 (MF2) keyboard as the host side of the i8042's keyboard port sees
//! it: the command set of the IBM PS/2 Hardware Interface Technical
//! Reference ("Keyboard and Auxiliary Device Controller", keyboard commands).
//!
//! No keys are pressed yet: the model answers commands so firmware and
//! kernels detect and configure it.

use crate::fifo::ByteFifo;

/// Outgoing bytes kept at most: the keyboard's buffer holds 16 bytes
/// (IBM PS/2 Hardware Interface Technical Reference, keyboard "Buffer");
/// bytes beyond it are lost.
const QUEUE: usize = 16;

/// Acknowledge.
pub const ACK: u8 = 0xFA;
/// Resend: the command was not understood.
pub const RESEND: u8 = 0xFE;
/// Basic assurance test passed.
pub const BAT_OK: u8 = 0xAA;

/// The keyboard.
#[derive(Debug, Clone)]
pub struct Ps2Keyboard {
    /// A command whose data byte is expected next.
    expecting: Option<u8>,
    scanning: bool,
    scan_set: u8,
    leds: u8,
    typematic: u8,
    /// Bytes for the controller, oldest first.
    out: ByteFifo<QUEUE>,
}

impl Default for Ps2Keyboard {
    fn default() -> Self {
        Self::new()
    }
}

impl Ps2Keyboard {
    pub fn new() -> Self {
        Ps2Keyboard {
            expecting: None,
            scanning: true,
            scan_set: 2,
            leds: 0,
            typematic: 0x2B,
            out: ByteFifo::new(),
        }
    }

    /// Power-on defaults (the state after a 0xFF reset, without its replies).
    pub fn reset(&mut self) {
        *self = Self::new();
    }

    fn push(&mut self, b: u8) {
        self.out.push(b);
    }

    fn defaults(&mut self) {
        self.scan_set = 2;
        self.typematic = 0x2B;
    }

    /// A byte from the host (the guest wrote it to port 0x60).
    pub fn write(&mut self, byte: u8) {
        if let Some(cmd) = self.expecting.take() {
            match cmd {
                // Set/reset LEDs: bits 2:0 caps, num, scroll lock.
                0xED => self.leds = byte & 7,
                0xF3 => self.typematic = byte & 0x7F,
                0xF0 => match byte {
                    0 => {
                        self.push(ACK);
                        let set = self.scan_set;
                        self.push(set);
                        return;
                    }
                    1..=3 => self.scan_set = byte,
                    _ => {
                        self.push(RESEND);
                        return;
                    }
                },
                _ => {}
            }
            self.push(ACK);
            return;
        }
        match byte {
            0xED | 0xF3 | 0xF0 => {
                self.expecting = Some(byte);
                self.push(ACK);
            }
            // Echo answers with itself, no ACK.
            0xEE => self.push(0xEE),
            // Identify: MF2 keyboard.
            0xF2 => {
                self.push(ACK);
                self.push(0xAB);
                self.push(0x83);
            }
            0xF4 => {
                self.scanning = true;
                self.push(ACK);
            }
            // Disable: stop scanning and restore defaults.
            0xF5 => {
                self.scanning = false;
                self.defaults();
                self.push(ACK);
            }
            0xF6 => {
                self.scanning = true;
                self.defaults();
                self.push(ACK);
            }
            // Set-3 key type commands: accepted, no effect.
            0xF7..=0xFD => self.push(ACK),
            0xFE => {
                // Resend the last byte: there is none worth repeating but ACK.
                self.push(ACK);
            }
            0xFF => {
                self.reset();
                self.push(ACK);
                self.push(BAT_OK);
            }
            _ => self.push(RESEND),
        }
    }

    /// The next byte for the controller.
    pub fn read(&mut self) -> Option<u8> {
        self.out.pop()
    }

    pub fn has_data(&self) -> bool {
        !self.out.is_empty()
    }

    /// Whether scanning is enabled (0xF4 / 0xF5).
    pub fn scanning(&self) -> bool {
        self.scanning
    }

    /// The LED state last set with 0xED (bit 0 scroll, 1 num, 2 caps lock).
    pub fn leds(&self) -> u8 {
        self.leds
    }

    /// The current scan code set (0xF0).
    pub fn scan_set(&self) -> u8 {
        self.scan_set
    }

    /// The typematic rate/delay byte last set with 0xF3.
    pub fn typematic(&self) -> u8 {
        self.typematic
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn send(k: &mut Ps2Keyboard, bytes: &[u8]) -> Vec<u8> {
        for &b in bytes {
            k.write(b);
        }
        core::iter::from_fn(|| k.read()).collect()
    }

    #[test]
    fn answers_the_command_set() {
        let mut k = Ps2Keyboard::new();
        assert_eq!(send(&mut k, &[0xFF]), [ACK, BAT_OK]);
        assert_eq!(send(&mut k, &[0xF2]), [ACK, 0xAB, 0x83]);
        assert_eq!(send(&mut k, &[0xF5]), [ACK]);
        assert!(!k.scanning());
        assert_eq!(send(&mut k, &[0xF4]), [ACK]);
        assert!(k.scanning());
        assert_eq!(send(&mut k, &[0xED, 0x07]), [ACK, ACK]);
        assert_eq!(k.leds(), 7);
        assert_eq!(send(&mut k, &[0xEE]), [0xEE]);
        assert_eq!(send(&mut k, &[0xF3, 0x20]), [ACK, ACK]);
        assert_eq!(k.typematic(), 0x20);
        assert_eq!(send(&mut k, &[0xF0, 0x01]), [ACK, ACK]);
        assert_eq!(send(&mut k, &[0xF0, 0x00]), [ACK, ACK, 0x01]);
        assert_eq!(send(&mut k, &[0xF0, 0x09]), [ACK, RESEND]);
        assert_eq!(send(&mut k, &[0x12]), [RESEND]);
        assert_eq!(send(&mut k, &[0xFF]), [ACK, BAT_OK]);
        assert_eq!(k.scan_set(), 2);
    }

    #[test]
    fn output_queue_is_bounded() {
        let mut k = Ps2Keyboard::new();
        for _ in 0..100 {
            k.write(0xF2);
        }
        assert_eq!(core::iter::from_fn(|| k.read()).count(), QUEUE);
    }
}
