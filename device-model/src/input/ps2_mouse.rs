//! A PS/2 mouse on the i8042's auxiliary port (IBM PS/2 Hardware Interface
//! Technical Reference, auxiliary device commands). No movement is
//! reported yet: it answers commands so firmware and kernels detect it.

use super::ps2_keyboard::{ACK, BAT_OK, RESEND};
use crate::fifo::ByteFifo;

/// Outgoing bytes kept at most (the longest reply is four bytes; the bound
/// matches the keyboard's 16-byte buffer). Bytes beyond it are lost.
const QUEUE: usize = 16;

/// The mouse.
#[derive(Debug, Clone)]
pub struct Ps2Mouse {
    expecting: Option<u8>,
    reporting: bool,
    sample_rate: u8,
    resolution: u8,
    scaling_2to1: bool,
    remote: bool,
    out: ByteFifo<QUEUE>,
}

impl Default for Ps2Mouse {
    fn default() -> Self {
        Self::new()
    }
}

impl Ps2Mouse {
    pub fn new() -> Self {
        Ps2Mouse {
            expecting: None,
            reporting: false,
            sample_rate: 100,
            resolution: 2,
            scaling_2to1: false,
            remote: false,
            out: ByteFifo::new(),
        }
    }

    pub fn reset(&mut self) {
        *self = Self::new();
    }

    fn push(&mut self, b: u8) {
        self.out.push(b);
    }

    /// Status byte of 0xE9: bit 6 remote mode, 5 reporting, 4 scaling 2:1.
    fn status(&self) -> u8 {
        u8::from(self.remote) << 6
            | u8::from(self.reporting) << 5
            | u8::from(self.scaling_2to1) << 4
    }

    /// A byte from the host (written through controller command 0xD4).
    pub fn write(&mut self, byte: u8) {
        if let Some(cmd) = self.expecting.take() {
            match cmd {
                0xE8 => self.resolution = byte & 3,
                _ => self.sample_rate = byte,
            }
            self.push(ACK);
            return;
        }
        match byte {
            0xE6 | 0xE7 => {
                self.scaling_2to1 = byte == 0xE7;
                self.push(ACK);
            }
            0xE8 | 0xF3 => {
                self.expecting = Some(byte);
                self.push(ACK);
            }
            0xE9 => {
                self.push(ACK);
                let (s, r, rate) = (self.status(), self.resolution, self.sample_rate);
                self.push(s);
                self.push(r);
                self.push(rate);
            }
            0xEA => {
                self.remote = false;
                self.push(ACK);
            }
            0xF0 => {
                self.remote = true;
                self.push(ACK);
            }
            // Read data: one empty movement packet (bit 3 is always 1).
            0xEB => {
                self.push(ACK);
                self.push(0x08);
                self.push(0);
                self.push(0);
            }
            // Identify: standard PS/2 mouse, ID 0.
            0xF2 => {
                self.push(ACK);
                self.push(0x00);
            }
            0xF4 => {
                self.reporting = true;
                self.push(ACK);
            }
            0xF5 => {
                self.reporting = false;
                self.push(ACK);
            }
            0xF6 => {
                let out = core::mem::take(&mut self.out);
                self.reset();
                self.out = out;
                self.push(ACK);
            }
            0xFF => {
                self.reset();
                self.push(ACK);
                self.push(BAT_OK);
                self.push(0x00);
            }
            _ => self.push(RESEND),
        }
    }

    pub fn read(&mut self) -> Option<u8> {
        self.out.pop()
    }

    pub fn has_data(&self) -> bool {
        !self.out.is_empty()
    }

    /// Whether data reporting is enabled (0xF4).
    pub fn reporting(&self) -> bool {
        self.reporting
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    fn send(m: &mut Ps2Mouse, bytes: &[u8]) -> Vec<u8> {
        for &b in bytes {
            m.write(b);
        }
        core::iter::from_fn(|| m.read()).collect()
    }

    #[test]
    fn answers_the_command_set() {
        let mut m = Ps2Mouse::new();
        assert_eq!(send(&mut m, &[0xFF]), [ACK, BAT_OK, 0x00]);
        assert_eq!(send(&mut m, &[0xF2]), [ACK, 0x00]);
        assert_eq!(send(&mut m, &[0xF4]), [ACK]);
        assert!(m.reporting());
        assert_eq!(
            send(&mut m, &[0xF3, 200, 0xE8, 3, 0xE7]),
            [ACK, ACK, ACK, ACK, ACK]
        );
        assert_eq!(send(&mut m, &[0xE9]), [ACK, 0x30, 3, 200]);
        assert_eq!(send(&mut m, &[0xF5, 0xF6]), [ACK, ACK]);
        assert_eq!(send(&mut m, &[0xE9]), [ACK, 0x00, 2, 100]);
        assert_eq!(send(&mut m, &[0xEB]), [ACK, 0x08, 0, 0]);
        assert_eq!(send(&mut m, &[0x01]), [RESEND]);
    }
}
