//! The ACPI power management timer (ACPI 6.5 4.8.2.1, "Power Management
//! Timer"; register PM_TMR, 4.8.3.3).
//!
//! A free-running up-counter clocked at 3.579545 MHz (the NTSC colour-burst
//! frequency, a quarter of the 14.31818 MHz PC crystal), 24 bits wide, or 32
//! bits when the FADT sets TMR_VAL_EXT. It is read-only, cannot be stopped
//! and has no reset value the guest can rely on; Keel starts it at 0 when the
//! device is created. Every time its most significant bit changes the
//! chipset sets TMR_STS in PM1_STS (and raises an SCI if TMR_EN is set);
//! that status lives in the PIIX4 PM function, which asks this device
//! through [`PmTimer::take_msb_toggles`] and [`TimerDevice::next_deadline_ns`].
//!
//! On the PIIX4 (as QEMU's `pc` machine) the timer is 24 bits and sits at
//! PM base + 8 ([`PmTimer::OFFSET`]); the PM function registers this device
//! at that port for [`PmTimer::LEN`] ports.
//!
//! ACPI requires 32-bit reads. A narrower read returns the addressed bytes of
//! the 32-bit value (bytes above the register read all-ones); writes are
//! ignored, as the register is read-only.

use super::{ns_to_ticks, ticks_to_ns, TimerDevice};
use crate::clock::ClockHandle;
use crate::BusDevice;

/// The timer's input clock in Hz.
pub const PM_TIMER_HZ: u64 = 3_579_545;

/// Counter width (FADT Flags.TMR_VAL_EXT).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PmTimerWidth {
    /// TMR_VAL_EXT = 0: bits 23:0 count, bits 31:24 read 0 (PIIX4).
    Bits24,
    /// TMR_VAL_EXT = 1: all 32 bits count.
    Bits32,
}

impl PmTimerWidth {
    fn bits(self) -> u32 {
        match self {
            PmTimerWidth::Bits24 => 24,
            PmTimerWidth::Bits32 => 32,
        }
    }
}

/// The PM timer.
pub struct PmTimer {
    clock: ClockHandle,
    width: PmTimerWidth,
    /// Clock time at which the counter read 0.
    origin_ns: u64,
    /// MSB toggles already reported by `take_msb_toggles`.
    toggles_seen: u64,
}

impl PmTimer {
    /// Offset of PM_TMR in the PIIX4 PM I/O block.
    pub const OFFSET: u16 = 8;
    /// Ports it answers.
    pub const LEN: u16 = 4;

    /// A timer of `width` bits, reading 0 now.
    pub fn new(clock: ClockHandle, width: PmTimerWidth) -> Self {
        let origin_ns = clock.now_ns();
        PmTimer {
            clock,
            width,
            origin_ns,
            toggles_seen: 0,
        }
    }

    fn ticks(&self) -> u64 {
        ns_to_ticks(
            self.clock.now_ns().saturating_sub(self.origin_ns),
            PM_TIMER_HZ,
        )
    }

    /// TMR_VAL: the counter now.
    pub fn value(&self) -> u32 {
        let mask = (1u64 << self.width.bits()) - 1;
        (self.ticks() & mask) as u32
    }

    /// Ticks between two changes of the most significant bit.
    fn half_period(&self) -> u64 {
        1u64 << (self.width.bits() - 1)
    }

    /// How many times the MSB changed since the last call (at least one
    /// means the PM function sets TMR_STS).
    pub fn take_msb_toggles(&mut self) -> u64 {
        let total = self.ticks() / self.half_period();
        let new = total.saturating_sub(self.toggles_seen);
        self.toggles_seen = total;
        new
    }

    /// The counter restarts from 0 (a VM reset; the hardware counter keeps
    /// running, but a guest cannot tell).
    pub fn reset(&mut self) {
        self.origin_ns = self.clock.now_ns();
        self.toggles_seen = 0;
    }
}

impl TimerDevice for PmTimer {
    /// The next change of the counter's most significant bit.
    fn next_deadline_ns(&mut self) -> Option<u64> {
        let next = (self.toggles_seen + 1).saturating_mul(self.half_period());
        Some(
            self.origin_ns
                .saturating_add(ticks_to_ns(next, PM_TIMER_HZ)),
        )
    }

    /// Nothing to raise here: TMR_STS and the SCI belong to the PM function,
    /// which calls [`PmTimer::take_msb_toggles`].
    fn service(&mut self) {}
}

impl BusDevice for PmTimer {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        let bytes = self.value().to_le_bytes();
        for (i, b) in data.iter_mut().enumerate() {
            *b = usize::try_from(offset)
                .ok()
                .and_then(|o| o.checked_add(i))
                .and_then(|o| bytes.get(o).copied())
                .unwrap_or(0xFF);
        }
    }

    fn write(&mut self, _base: u64, _offset: u64, _data: &[u8]) {}
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use alloc::sync::Arc;

    fn read32(t: &mut PmTimer) -> u32 {
        let mut b = [0u8; 4];
        t.read(0, 0, &mut b);
        u32::from_le_bytes(b)
    }

    fn timer(width: PmTimerWidth) -> (Arc<FakeClock>, PmTimer) {
        let clock = FakeClock::new(5_000_000);
        let t = PmTimer::new(clock.clone(), width);
        (clock, t)
    }

    #[test]
    fn counts_at_3_579545_mhz() {
        let (clock, mut t) = timer(PmTimerWidth::Bits24);
        assert_eq!(read32(&mut t), 0);
        clock.advance(1_000_000_000);
        assert_eq!(read32(&mut t), 3_579_545);
        clock.advance(1_000);
        assert_eq!(read32(&mut t), 3_579_545 + 3);
        clock.advance(279);
        assert_eq!(read32(&mut t), 3_579_545 + 4, "one tick is 279.37 ns");
    }

    #[test]
    fn a_24_bit_timer_wraps_and_reports_msb_changes() {
        let (clock, mut t) = timer(PmTimerWidth::Bits24);
        // Bit 23 first changes after 2^23 ticks = 2.343 s.
        let first = t.next_deadline_ns().unwrap();
        assert_eq!(first, 5_000_000 + ticks_to_ns(1 << 23, PM_TIMER_HZ));
        clock.set(first - 1);
        assert_eq!(t.take_msb_toggles(), 0);
        assert_eq!(read32(&mut t), (1 << 23) - 1);
        clock.set(first);
        assert_eq!(read32(&mut t), 1 << 23);
        assert_eq!(t.take_msb_toggles(), 1);
        assert_eq!(t.take_msb_toggles(), 0);
        // Wrap at 2^24: back to 0, bits 31:24 stay 0.
        clock.set(5_000_000 + ticks_to_ns(1 << 24, PM_TIMER_HZ));
        assert_eq!(read32(&mut t), 0);
        assert_eq!(t.take_msb_toggles(), 1);
        clock.advance(ticks_to_ns(5 << 23, PM_TIMER_HZ));
        assert_eq!(t.take_msb_toggles(), 5);
        assert!(read32(&mut t) < 1 << 24);
    }

    #[test]
    fn a_32_bit_timer_uses_all_bits() {
        let (clock, mut t) = timer(PmTimerWidth::Bits32);
        clock.advance(ticks_to_ns(1 << 31, PM_TIMER_HZ));
        assert_eq!(read32(&mut t), 1 << 31);
        assert_eq!(t.take_msb_toggles(), 1);
        clock.advance(ticks_to_ns(1 << 31, PM_TIMER_HZ));
        assert_eq!(read32(&mut t), 0);
        // 2^32 ticks is 1199.9 s.
        assert_eq!(ticks_to_ns(1 << 32, PM_TIMER_HZ) / 1_000_000_000, 1199);
    }

    #[test]
    fn narrow_reads_writes_and_reset() {
        let (clock, mut t) = timer(PmTimerWidth::Bits24);
        clock.advance(ticks_to_ns(0x12_3456, PM_TIMER_HZ));
        let mut b = [0u8; 2];
        t.read(0, 1, &mut b);
        assert_eq!(b, [0x34, 0x12]);
        let mut b = [0u8; 8];
        t.read(0, 2, &mut b);
        assert_eq!(b, [0x12, 0x00, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        t.read(0, u64::MAX, &mut b);
        assert_eq!(b, [0xFF; 8]);
        t.write(0, 0, &[0, 0, 0, 0]);
        assert_eq!(t.value(), 0x12_3456);
        t.reset();
        assert_eq!(t.value(), 0);
        t.service();
    }
}
