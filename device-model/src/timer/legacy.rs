//! The HPET's LegacyReplacement switch, as the PIT and RTC see it.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

/// Whether the HPET has taken over ISA IRQ 0 and IRQ 8 (`LEG_RT_CNF` and
/// `ENABLE_CNF` both set; IA-PC HPET 1.0a 2.3.9.2.2: "the 8254 timer will not
/// cause any interrupts" and the RTC's IRQ 8 is likewise replaced).
///
/// The platform creates one, gives a clone to the [`Hpet`](super::Hpet) (which
/// sets it) and to the [`Pit`](super::Pit) and [`Rtc`](super::Rtc) (which stop
/// driving their lines while it is set). Clones share the flag.
#[derive(Debug, Clone, Default)]
pub struct LegacyReplacement(Arc<AtomicBool>);

impl LegacyReplacement {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether the HPET owns IRQ 0 and IRQ 8 now.
    pub fn active(&self) -> bool {
        self.0.load(Ordering::SeqCst)
    }

    pub(crate) fn set(&self, active: bool) {
        self.0.store(active, Ordering::SeqCst);
    }
}
