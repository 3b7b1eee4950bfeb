//! Interrupt causes and their moderation: ICR/ICS/IMS/IMC (8254x SDM
//! 13.4.17-21), interrupt throttling with ITR (13.4.18, 3.7.3), and the
//! delayed receive and transmit interrupts RDTR/RADV (3.2.7) and TIDV/TADV
//! (3.4). The INTx pin is asserted while a cause is set and unmasked, no
//! sooner than ITR's interval after the last assertion began.

use super::regs::{icr, DELAY_UNIT_NS, ITR_UNIT_NS, RDTR_FPD};

/// The interrupt state.
#[derive(Default)]
pub struct Interrupts {
    pub icr: u32,
    pub ims: u32,
    /// ITR's interval, in 256 ns units (bits 15:0).
    pub itr: u32,
    pub rdtr: u32,
    pub radv: u32,
    pub tidv: u32,
    pub tadv: u32,
    /// Whether the pin is asserted now.
    asserted: bool,
    /// No new assertion before this time (ITR).
    throttle_until: u64,
    /// Pending delayed-interrupt timers, as deadlines.
    rx_delay: Option<u64>,
    rx_abs: Option<u64>,
    tx_delay: Option<u64>,
    tx_abs: Option<u64>,
}

fn units(v: u32) -> u64 {
    u64::from(v & 0xFFFF) * DELAY_UNIT_NS
}

impl Interrupts {
    pub fn reset(&mut self) {
        *self = Interrupts::default();
    }

    /// Sets interrupt causes (ICS writes and events).
    pub fn raise(&mut self, causes: u32) {
        self.icr |= causes & icr::VALID;
    }

    /// A read of ICR: every cause clears, and the pin drops (13.4.17).
    pub fn read_icr(&mut self) -> u32 {
        let v = self.icr;
        self.icr = 0;
        v
    }

    /// A frame was stored with EOP: RXT0 at once when RDTR is 0, else
    /// when RDTR's timer (restarted by each frame) or RADV's (started by
    /// the first frame since the last RXT0) runs out (3.2.7).
    pub fn frame_received(&mut self, now: u64) {
        if self.rdtr & 0xFFFF == 0 {
            self.fire_rx();
            return;
        }
        self.rx_delay = Some(now.saturating_add(units(self.rdtr)));
        if self.radv & 0xFFFF != 0 && self.rx_abs.is_none() {
            self.rx_abs = Some(now.saturating_add(units(self.radv)));
        }
    }

    /// A write of RDTR: FPD fires the pending receive interrupt now.
    pub fn write_rdtr(&mut self, value: u32) {
        self.rdtr = value & 0xFFFF;
        if value & RDTR_FPD != 0 && (self.rx_delay.is_some() || self.rx_abs.is_some()) {
            self.fire_rx();
        }
    }

    fn fire_rx(&mut self) {
        self.rx_delay = None;
        self.rx_abs = None;
        self.raise(icr::RXT0);
    }

    fn fire_tx(&mut self) {
        self.tx_delay = None;
        self.tx_abs = None;
        self.raise(icr::TXDW);
    }

    /// A descriptor with RS was written back: TXDW at once, or with IDE
    /// set after TIDV (restarted each time) or TADV (from the first), (3.4.1).
    pub fn descriptor_written_back(&mut self, ide: bool, now: u64) {
        if !ide || self.tidv & 0xFFFF == 0 {
            self.fire_tx();
            return;
        }
        self.tx_delay = Some(now.saturating_add(units(self.tidv)));
        if self.tadv & 0xFFFF != 0 && self.tx_abs.is_none() {
            self.tx_abs = Some(now.saturating_add(units(self.tadv)));
        }
    }

    /// Fires the delay timers that ran out by `now`.
    pub fn run_timers(&mut self, now: u64) {
        let due = |t: Option<u64>| t.is_some_and(|d| d <= now);
        if due(self.rx_delay) || due(self.rx_abs) {
            self.fire_rx();
        }
        if due(self.tx_delay) || due(self.tx_abs) {
            self.fire_tx();
        }
    }

    /// Whether the pin is asserted at `now`. A newly due assertion waits
    /// for ITR's interval since the last one began (3.7.3).
    pub fn level(&mut self, now: u64) -> bool {
        if self.icr & self.ims == 0 {
            self.asserted = false;
        } else if !self.asserted && now >= self.throttle_until {
            self.asserted = true;
            self.throttle_until = now.saturating_add(u64::from(self.itr & 0xFFFF) * ITR_UNIT_NS);
        }
        self.asserted
    }

    /// The next time the interrupt state changes by itself.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        let throttled = (self.icr & self.ims != 0 && !self.asserted).then_some(self.throttle_until);
        [
            self.rx_delay,
            self.rx_abs,
            self.tx_delay,
            self.tx_abs,
            throttled,
        ]
        .into_iter()
        .flatten()
        .min()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn icr_is_read_to_clear_and_masked_by_ims() {
        let mut i = Interrupts::default();
        i.raise(icr::LSC | icr::RXT0);
        assert!(!i.level(0), "masked");
        i.ims |= icr::LSC;
        assert!(i.level(0));
        assert_eq!(i.read_icr(), icr::LSC | icr::RXT0);
        assert!(!i.level(0));
        assert_eq!(i.read_icr(), 0);
        i.raise(1 << 5 | 1 << 31);
        assert_eq!(i.icr, 0, "reserved causes do not exist");
    }

    #[test]
    fn itr_spaces_assertions() {
        let mut i = Interrupts {
            ims: icr::RXT0,
            itr: 1000, // 256 us
            ..Default::default()
        };
        i.raise(icr::RXT0);
        assert!(i.level(0), "the first one at once");
        i.read_icr();
        assert!(!i.level(1));
        i.raise(icr::RXT0);
        assert!(!i.level(100_000), "within the interval");
        assert_eq!(i.next_deadline_ns(), Some(256_000));
        assert!(i.level(256_000));
    }

    #[test]
    fn rdtr_restarts_and_radv_bounds_the_delay() {
        let mut i = Interrupts {
            rdtr: 10, // 10.24 us
            radv: 20, // 20.48 us
            ..Default::default()
        };
        i.frame_received(0);
        i.run_timers(10_000);
        assert_eq!(i.icr, 0);
        i.frame_received(10_000); // RDTR restarts: 20_240
        i.run_timers(20_239);
        assert_eq!(i.icr, 0);
        i.frame_received(20_000); // RDTR now 30_240, RADV still 20_480
        i.run_timers(20_480);
        assert_eq!(i.icr, icr::RXT0, "the absolute timer");
        i.read_icr();
        i.rdtr = 0;
        i.frame_received(30_000);
        assert_eq!(i.icr, icr::RXT0, "RDTR 0: at once");
        i.read_icr();
        i.rdtr = 10;
        i.frame_received(40_000);
        i.write_rdtr(10 | RDTR_FPD);
        assert_eq!(i.icr, icr::RXT0, "flush partial descriptor block");
    }

    #[test]
    fn tidv_applies_only_with_ide() {
        let mut i = Interrupts {
            tidv: 8,
            tadv: 32,
            ..Default::default()
        };
        i.descriptor_written_back(false, 0);
        assert_eq!(i.read_icr(), icr::TXDW);
        i.descriptor_written_back(true, 0);
        assert_eq!(i.icr, 0);
        assert_eq!(i.next_deadline_ns(), Some(8 * 1024));
        i.run_timers(8 * 1024);
        assert_eq!(i.icr, icr::TXDW);
    }
}
