//! The A20 gate: whether address line 20 reaches memory.

use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

/// The chipset's A20 gate, fed by two inputs: the keyboard controller's
/// output port bit 1 and port 0x92's ALT_A20_GATE bit. A20 is enabled while
/// either is set (Intel PIIX4 datasheet, port 92h; ICH datasheets: "A20M#
/// is asserted when both A20GATE and ALT_A20_GATE are 0").
///
/// The [`I8042`](super::I8042) and [`Port92`](super::Port92) each hold a
/// clone; the VM loop asks [`A20Gate::enabled`] to decide whether guest
/// physical addresses wrap at 1 MiB. Clones share state.
#[derive(Debug, Clone)]
pub struct A20Gate {
    inner: Arc<Inputs>,
}

#[derive(Debug)]
struct Inputs {
    kbc: AtomicBool,
    fast: AtomicBool,
}

impl Default for A20Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl A20Gate {
    /// Power-on: the controller's input enabled (QEMU's `pc` starts with
    /// A20 on, and firmware written for it expects that), port 0x92's off.
    pub fn new() -> Self {
        A20Gate {
            inner: Arc::new(Inputs {
                kbc: AtomicBool::new(true),
                fast: AtomicBool::new(false),
            }),
        }
    }

    /// Whether A20 is enabled (addresses do not wrap at 1 MiB).
    pub fn enabled(&self) -> bool {
        self.inner.kbc.load(Ordering::SeqCst) || self.inner.fast.load(Ordering::SeqCst)
    }

    pub(crate) fn kbc(&self) -> bool {
        self.inner.kbc.load(Ordering::SeqCst)
    }

    pub(crate) fn set_kbc(&self, on: bool) {
        self.inner.kbc.store(on, Ordering::SeqCst);
    }

    pub(crate) fn fast(&self) -> bool {
        self.inner.fast.load(Ordering::SeqCst)
    }

    pub(crate) fn set_fast(&self, on: bool) {
        self.inner.fast.store(on, Ordering::SeqCst);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn either_input_enables_a20() {
        let g = A20Gate::new();
        let other = g.clone();
        assert!(g.enabled());
        g.set_kbc(false);
        assert!(!other.enabled());
        other.set_fast(true);
        assert!(g.enabled() && g.fast() && !g.kbc());
    }
}
