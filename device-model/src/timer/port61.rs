//! Port 0x61, "system control port B" (NMI status and control): the PC's
//! speaker gate and the PIT channel 2 wiring.
//!
//! Bit layout (IBM PC/AT Technical Reference, system board I/O port 61h;
//! the same in the Intel PIIX4 datasheet, NMI Status and Control register):
//!
//! | bit | read | write |
//! |---|---|---|
//! | 0 | PIT channel 2 gate | PIT channel 2 gate |
//! | 1 | speaker data enable | speaker data enable |
//! | 2 | parity check (SERR#) NMI disable | same |
//! | 3 | channel check (IOCHK#) NMI disable | same |
//! | 4 | refresh detect: toggles every 15.085 us | ignored |
//! | 5 | PIT channel 2 OUT | ignored |
//! | 6 | IOCHK# NMI source (always 0 here) | ignored |
//! | 7 | SERR# NMI source (always 0 here) | ignored |
//!
//! The refresh toggle comes from PIT channel 1 programmed for DRAM refresh
//! (count 18: 1.193182 MHz / 18 = one request every 15.085 us). BIOSes time
//! short delays by counting its toggles, so it is derived from the clock
//! rather than from channel 1, which guests may reprogram.

use alloc::sync::Arc;
use spin::Mutex;

use super::pit::{Pit, PIT_HZ};
use super::ticks_to_ns;
use crate::clock::ClockHandle;
use crate::BusDevice;

/// The DRAM refresh request period in PIT clocks.
const REFRESH_PIT_CLOCKS: u64 = 18;
/// Bits the guest can write.
const WRITABLE: u8 = 0x0F;

/// Port 0x61.
pub struct Port61 {
    clock: ClockHandle,
    pit: Arc<Mutex<Pit>>,
    /// Bits 3:1 as written; bit 0 lives in the PIT (its gate).
    value: u8,
}

impl Port61 {
    pub const PORT: u16 = 0x61;
    pub const LEN: u16 = 1;

    /// The port, wired to `pit`'s channel 2.
    pub fn new(clock: ClockHandle, pit: Arc<Mutex<Pit>>) -> Self {
        Port61 {
            clock,
            pit,
            value: 0,
        }
    }

    /// Whether the speaker is sounding channel 2's OUT (gate and data enable set).
    pub fn speaker_enabled(&self) -> bool {
        self.value & 0x02 != 0 && self.pit.lock().gate2()
    }

    /// Power-on state: all writable bits 0, so channel 2's gate is low.
    pub fn reset(&mut self) {
        self.value = 0;
        self.pit.lock().set_gate2(false);
    }

    fn refresh_toggle(&self) -> bool {
        let period_ns = ticks_to_ns(REFRESH_PIT_CLOCKS, PIT_HZ);
        (self.clock.now_ns() / period_ns) & 1 != 0
    }

    fn read_byte(&self) -> u8 {
        let mut pit = self.pit.lock();
        (self.value & 0x0E)
            | u8::from(pit.gate2())
            | u8::from(self.refresh_toggle()) << 4
            | u8::from(pit.out2()) << 5
    }
}

impl BusDevice for Port61 {
    /// One byte; a wider read returns the register in its first byte and
    /// all-ones above, as nothing answers at 0x62-0x64 on behalf of this port.
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0xFF);
        if offset == 0 {
            if let Some(b) = data.first_mut() {
                *b = self.read_byte();
            }
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if offset != 0 {
            return;
        }
        if let Some(&b) = data.first() {
            self.value = b & WRITABLE;
            self.pit.lock().set_gate2(b & 1 != 0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::timer::testutil::line;

    fn rig() -> (Arc<FakeClock>, Arc<Mutex<Pit>>, Port61) {
        let clock = FakeClock::new(0);
        let (_rec, irq) = line(0);
        let pit = Arc::new(Mutex::new(Pit::new(clock.clone(), irq)));
        let port = Port61::new(clock.clone(), pit.clone());
        (clock, pit, port)
    }

    fn inb(p: &mut Port61) -> u8 {
        let mut b = [0];
        p.read(0x61, 0, &mut b);
        b[0]
    }

    #[test]
    fn bit0_gates_channel2_and_bit5_shows_out2() {
        let (clock, pit, mut p) = rig();
        // Channel 2, mode 0, count 100 (the classic calibration loop).
        pit.lock().write(0x40, 3, &[0xB0]);
        pit.lock().write(0x40, 2, &[100]);
        pit.lock().write(0x40, 2, &[0]);
        p.write(0x61, 0, &[0x01]);
        assert!(pit.lock().gate2());
        assert_eq!(inb(&mut p) & 0x21, 0x01, "OUT2 low while counting");
        clock.set(ticks_to_ns(102, PIT_HZ));
        assert_eq!(inb(&mut p) & 0x21, 0x21, "OUT2 high at terminal count");
        p.write(0x61, 0, &[0x00]);
        assert!(!pit.lock().gate2());
    }

    #[test]
    fn writable_bits_read_back_and_read_only_bits_ignore_writes() {
        let (_clock, _pit, mut p) = rig();
        p.write(0x61, 0, &[0xFE]);
        assert_eq!(inb(&mut p) & 0xCF, 0x0E);
        assert!(!p.speaker_enabled());
        p.write(0x61, 0, &[0x03]);
        assert!(p.speaker_enabled());
    }

    #[test]
    fn refresh_bit_toggles_every_15_us() {
        let (clock, _pit, mut p) = rig();
        let period = ticks_to_ns(18, PIT_HZ);
        assert_eq!(period, 15_086);
        let mut toggles = 0;
        let mut last = inb(&mut p) & 0x10;
        for _ in 0..1000 {
            clock.advance(1000);
            let now = inb(&mut p) & 0x10;
            if now != last {
                toggles += 1;
            }
            last = now;
        }
        // 1 ms / 15.086 us.
        assert_eq!(toggles, 1_000_000 / period);
    }

    #[test]
    fn reset_drops_the_gate_and_odd_accesses_are_harmless() {
        let (_clock, pit, mut p) = rig();
        p.write(0x61, 0, &[0x03]);
        p.reset();
        assert!(!pit.lock().gate2());
        assert_eq!(inb(&mut p) & 0x0F, 0);
        let mut wide = [0u8; 4];
        p.read(0x61, 0, &mut wide);
        assert_eq!(wide[1..], [0xFF; 3]);
        p.write(0x61, 5, &[0xFF]);
        p.write(0x61, 0, &[]);
        p.read(0x61, 9, &mut wide);
        assert_eq!(wide, [0xFF; 4]);
    }
}
