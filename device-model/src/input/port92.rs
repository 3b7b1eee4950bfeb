//! System control port A, 0x92 ("fast A20 and init"; Intel PIIX4 datasheet,
//! Port 92h register).
//!
//! Bit 1 (ALT_A20_GATE) is the second input of the [`A20Gate`]; bit 0
//! (INIT_NOW / fast reset) resets the system when written from 0 to 1. The
//! other bits read back as 0 (bit 3, the password lock, is not modelled).

use super::A20Gate;
use crate::power::{PowerControl, PowerRequest};
use crate::BusDevice;

/// Port 0x92.
pub struct Port92 {
    a20: A20Gate,
    power: PowerControl,
    reset_bit: bool,
}

impl Port92 {
    pub const PORT: u16 = 0x92;
    pub const LEN: u16 = 1;

    pub fn new(a20: A20Gate, power: PowerControl) -> Self {
        Port92 {
            a20,
            power,
            reset_bit: false,
        }
    }

    /// Power-on: both bits 0 (fast A20 off).
    pub fn reset(&mut self) {
        self.reset_bit = false;
        self.a20.set_fast(false);
    }
}

impl BusDevice for Port92 {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0xFF);
        if offset == 0 {
            if let Some(b) = data.first_mut() {
                *b = u8::from(self.a20.fast()) << 1 | u8::from(self.reset_bit);
            }
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let (0, Some(&v)) = (offset, data.first()) else {
            return;
        };
        self.a20.set_fast(v & 0x02 != 0);
        let reset = v & 0x01 != 0;
        if reset && !self.reset_bit {
            self.power.request(PowerRequest::Reset);
        }
        self.reset_bit = reset;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inb(p: &mut Port92) -> u8 {
        let mut b = [0];
        p.read(0x92, 0, &mut b);
        b[0]
    }

    #[test]
    fn bit1_is_fast_a20() {
        let a20 = A20Gate::new();
        a20.set_kbc(false);
        let mut p = Port92::new(a20.clone(), PowerControl::new());
        assert_eq!(inb(&mut p), 0);
        p.write(0x92, 0, &[0x02]);
        assert!(a20.enabled());
        assert_eq!(inb(&mut p), 0x02);
        p.write(0x92, 0, &[0x00]);
        assert!(!a20.enabled());
    }

    #[test]
    fn bit0_rising_requests_a_reset() {
        let power = PowerControl::new();
        let mut p = Port92::new(A20Gate::new(), power.clone());
        p.write(0x92, 0, &[0x03]);
        assert_eq!(power.take(), Some(PowerRequest::Reset));
        p.write(0x92, 0, &[0x03]);
        assert_eq!(power.take(), None, "only a 0 -> 1 transition resets");
        p.write(0x92, 0, &[0x02]);
        p.write(0x92, 0, &[0x01]);
        assert_eq!(power.take(), Some(PowerRequest::Reset));
        p.reset();
        assert_eq!(inb(&mut p), 0);
        let mut wide = [0u8; 2];
        p.read(0x92, 0, &mut wide);
        assert_eq!(wide[1], 0xFF);
        p.write(0x92, 3, &[0xFF]);
        p.write(0x92, 0, &[]);
        assert_eq!(power.take(), None);
    }
}
