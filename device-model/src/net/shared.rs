//! One network port behind two NICs: a VM with `xen_platform_pci = 1`
//! offers each e1000 vif also as a Xen vif served by netback, over the
//! same switch port (Xen's device model does the same; Xen's
//! docs/misc/hvm-emulated-unplug). Until the guest unplugs the emulated
//! NICs the e1000 holds the port; from then on netback does. The other
//! handle sees no frames and its transmissions are dropped and counted, so
//! one frame never reaches the guest twice.

use alloc::boxed::Box;
use alloc::sync::Arc;
use core::sync::atomic::{AtomicBool, Ordering};

use spin::Mutex;

use super::{NetBackend, NetCounters};

/// Which of the two NICs a handle is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PortHolder {
    /// The emulated NIC (the e1000), the holder at power-on.
    Emulated,
    /// The paravirtual NIC (netback), the holder after the unplug.
    Pv,
}

/// A handle on a port shared by an emulated and a paravirtual NIC.
#[derive(Clone)]
pub struct SharedNetBackend {
    holder: PortHolder,
    inner: Arc<Mutex<Box<dyn NetBackend>>>,
    /// Whether the paravirtual NIC holds the port.
    handed_over: Arc<AtomicBool>,
    /// Frames this handle sent while it did not hold the port.
    dropped: u64,
}

impl SharedNetBackend {
    /// The emulated NIC's and the paravirtual NIC's handles on `backend`.
    pub fn pair(backend: Box<dyn NetBackend>) -> (SharedNetBackend, SharedNetBackend) {
        let emulated = SharedNetBackend {
            holder: PortHolder::Emulated,
            inner: Arc::new(Mutex::new(backend)),
            handed_over: Arc::new(AtomicBool::new(false)),
            dropped: 0,
        };
        let pv = SharedNetBackend {
            holder: PortHolder::Pv,
            ..emulated.clone()
        };
        (emulated, pv)
    }

    /// The guest unplugged the emulated NICs: the paravirtual NIC holds the
    /// port from now on (the unplug lasts until the VM is destroyed, as on
    /// Xen).
    pub fn hand_over(&self) {
        self.handed_over.store(true, Ordering::Release);
    }

    /// Whether this handle holds the port now.
    pub fn holds(&self) -> bool {
        let pv = self.handed_over.load(Ordering::Acquire);
        (self.holder == PortHolder::Pv) == pv
    }
}

impl NetBackend for SharedNetBackend {
    fn send(&mut self, frame: &[u8]) {
        if self.holds() {
            self.inner.lock().send(frame);
        } else {
            self.dropped += 1;
        }
    }

    fn receive(&mut self, buf: &mut [u8]) -> Option<usize> {
        if !self.holds() {
            return None;
        }
        self.inner.lock().receive(buf)
    }

    fn frame_waiting(&mut self) -> bool {
        self.holds() && self.inner.lock().frame_waiting()
    }

    fn link_up(&self) -> bool {
        self.holds() && self.inner.lock().link_up()
    }

    fn counters(&self) -> NetCounters {
        let mut c = self.inner.lock().counters();
        c.dropped = c.dropped.saturating_add(self.dropped);
        c
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::Loopback;

    fn frame(tag: u8) -> [u8; 60] {
        let mut f = [0u8; 60];
        f[..6].fill(0xff);
        f[14] = tag;
        f
    }

    /// Before the unplug only the emulated NIC reaches the port; after it
    /// only the paravirtual one: a frame is delivered once, to the holder.
    #[test]
    fn the_port_moves_from_the_emulated_nic_to_the_pv_nic_at_the_unplug() {
        let (mut emu, mut pv) = SharedNetBackend::pair(Box::new(Loopback::new()));
        let mut buf = [0u8; 1518];
        assert!(emu.holds() && !pv.holds());
        emu.send(&frame(1));
        pv.send(&frame(2));
        assert!(!pv.frame_waiting());
        assert_eq!(pv.receive(&mut buf), None);
        assert!(emu.frame_waiting());
        assert_eq!(emu.receive(&mut buf), Some(60));
        assert_eq!(buf[14], 1);
        assert_eq!(emu.receive(&mut buf), None, "pv's frame was dropped");
        assert_eq!(pv.counters().dropped, 1);

        emu.send(&frame(3));
        pv.hand_over();
        assert!(!emu.holds() && pv.holds());
        assert!(!emu.link_up() && pv.link_up());
        assert_eq!(emu.receive(&mut buf), None);
        assert_eq!(
            pv.receive(&mut buf),
            Some(60),
            "the waiting frame goes to pv"
        );
        assert_eq!(buf[14], 3);
        emu.send(&frame(4));
        pv.send(&frame(5));
        assert_eq!(pv.receive(&mut buf), Some(60));
        assert_eq!(buf[14], 5);
        assert!(!pv.frame_waiting());
    }
}
