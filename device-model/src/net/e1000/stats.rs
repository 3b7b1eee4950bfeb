//! The statistics registers (8254x SDM 13.7), CRCERRS at 0x4000 through
//! TSCTFC at 0x40FC. Every register clears when read; a 64-bit counter
//! (GORC, GOTC, TOR, TOT) clears when its high half is read, which software
//! reads after the low half. Counters stop at their maximum instead of
//! wrapping.

use super::regs::{STATS_END, STATS_START};

/// Offsets of the counters this model counts (13.7).
pub mod reg {
    pub const CRCERRS: u64 = 0x4000;
    pub const MPC: u64 = 0x4010;
    pub const PRC64: u64 = 0x405C;
    pub const GPRC: u64 = 0x4074;
    pub const BPRC: u64 = 0x4078;
    pub const MPRC: u64 = 0x407C;
    pub const GPTC: u64 = 0x4080;
    pub const GORCL: u64 = 0x4088;
    pub const GORCH: u64 = 0x408C;
    pub const GOTCL: u64 = 0x4090;
    pub const GOTCH: u64 = 0x4094;
    pub const RNBC: u64 = 0x40A0;
    pub const RUC: u64 = 0x40A4;
    pub const ROC: u64 = 0x40AC;
    pub const TORL: u64 = 0x40C0;
    pub const TORH: u64 = 0x40C4;
    pub const TOTL: u64 = 0x40C8;
    pub const TOTH: u64 = 0x40CC;
    pub const TPR: u64 = 0x40D0;
    pub const TPT: u64 = 0x40D4;
    pub const PTC64: u64 = 0x40D8;
    pub const MPTC: u64 = 0x40F0;
    pub const BPTC: u64 = 0x40F4;
    pub const TSCTC: u64 = 0x40F8;
    pub const TSCTFC: u64 = 0x40FC;
}

const COUNT: usize = ((STATS_END - STATS_START) / 4) as usize;

/// The low halves of the 64-bit counters.
const WIDE: [u64; 4] = [reg::GORCL, reg::GOTCL, reg::TORL, reg::TOTL];

/// What a frame was, for the per-kind counters.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cast {
    Unicast,
    Multicast,
    Broadcast,
}

impl Cast {
    pub fn of(frame: &[u8]) -> Cast {
        match frame.get(..6) {
            Some([0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]) => Cast::Broadcast,
            Some(d) if d[0] & 1 != 0 => Cast::Multicast,
            _ => Cast::Unicast,
        }
    }
}

/// The counters.
pub struct Stats {
    regs: [u32; COUNT],
}

impl Default for Stats {
    fn default() -> Self {
        Stats { regs: [0; COUNT] }
    }
}

fn index(offset: u64) -> Option<usize> {
    (STATS_START..STATS_END)
        .contains(&offset)
        .then(|| ((offset - STATS_START) / 4) as usize)
}

impl Stats {
    pub fn reset(&mut self) {
        self.regs = [0; COUNT];
    }

    /// Adds `n` to the 32-bit counter at `offset`.
    pub fn add(&mut self, offset: u64, n: u32) {
        if let Some(i) = index(offset) {
            self.regs[i] = self.regs[i].saturating_add(n);
        }
    }

    /// Adds `n` to the 64-bit counter whose low half is at `low`.
    fn add_wide(&mut self, low: u64, n: u64) {
        if let (Some(l), Some(h)) = (index(low), index(low + 4)) {
            let v = (u64::from(self.regs[h]) << 32 | u64::from(self.regs[l])).saturating_add(n);
            self.regs[l] = v as u32;
            self.regs[h] = (v >> 32) as u32;
        }
    }

    /// A read of the register at `offset` (dword aligned), with its clear.
    pub fn read(&mut self, offset: u64) -> u32 {
        let Some(i) = index(offset) else { return 0 };
        let v = self.regs[i];
        if WIDE.contains(&offset) {
            return v;
        }
        self.regs[i] = 0;
        if WIDE.contains(&(offset - 4)) {
            self.regs[i - 1] = 0;
        }
        v
    }

    /// The size bucket of a frame `len` bytes long with its FCS: 64,
    /// 65-127, 128-255, 256-511, 512-1023, 1024-1522 (13.7).
    fn bucket(len: usize) -> u64 {
        let b = match len {
            0..=64 => 0,
            65..=127 => 1,
            128..=255 => 2,
            256..=511 => 3,
            512..=1023 => 4,
            _ => 5,
        };
        b * 4
    }

    /// A frame of `len` bytes (FCS included) stored in host memory.
    pub fn received(&mut self, len: usize, cast: Cast) {
        let n = len as u64;
        self.add(reg::TPR, 1);
        self.add_wide(reg::TORL, n);
        self.add(reg::GPRC, 1);
        self.add_wide(reg::GORCL, n);
        self.add(reg::PRC64 + Self::bucket(len), 1);
        match cast {
            Cast::Broadcast => self.add(reg::BPRC, 1),
            Cast::Multicast => self.add(reg::MPRC, 1),
            Cast::Unicast => {}
        }
    }

    /// A frame of `len` bytes (FCS included) sent.
    pub fn transmitted(&mut self, len: usize, cast: Cast) {
        let n = len as u64;
        self.add(reg::TPT, 1);
        self.add_wide(reg::TOTL, n);
        self.add(reg::GPTC, 1);
        self.add_wide(reg::GOTCL, n);
        self.add(reg::PTC64 + Self::bucket(len), 1);
        match cast {
            Cast::Broadcast => self.add(reg::BPTC, 1),
            Cast::Multicast => self.add(reg::MPTC, 1),
            Cast::Unicast => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_clear_on_read_and_wide_ones_on_the_high_half() {
        let mut s = Stats::default();
        s.received(64, Cast::Broadcast);
        s.received(1522, Cast::Unicast);
        assert_eq!(s.read(reg::GPRC), 2);
        assert_eq!(s.read(reg::GPRC), 0, "read to clear");
        assert_eq!(s.read(reg::BPRC), 1);
        assert_eq!(s.read(reg::PRC64), 1);
        assert_eq!(s.read(reg::PRC64 + 20), 1, "PRC1522");
        assert_eq!(s.read(reg::GORCL), 1586);
        assert_eq!(s.read(reg::GORCL), 1586, "the low half does not clear");
        assert_eq!(s.read(reg::GORCH), 0);
        assert_eq!(s.read(reg::GORCL), 0, "the high half cleared both");
        s.transmitted(100, Cast::Multicast);
        assert_eq!(s.read(reg::TPT), 1);
        assert_eq!(s.read(reg::MPTC), 1);
        assert_eq!(s.read(reg::PTC64 + 4), 1, "PTC127");
        assert_eq!(s.read(reg::TOTL), 100);
        s.add(reg::MPC, u32::MAX);
        s.add(reg::MPC, 5);
        assert_eq!(s.read(reg::MPC), u32::MAX, "stops at its maximum");
        assert_eq!(s.read(0x4100), 0);
    }
}
