//! The interrupt controllers as [`BusDevice`]s. The router owns them, so each
//! adapter holds the shared router and locks it for one access (see the lock
//! order in the module documentation of [`crate::interrupt`]).

use alloc::sync::Arc;
use spin::Mutex;

use super::dual_pic::DualPic;
use super::ioapic::IoApic;
use super::lapic::DEFAULT_APIC_BASE;
use super::router::PcInterruptRouter;
use crate::bus::{Bus, BusDevice, BusError};

/// The router as devices' lines and the adapters share it.
pub type RouterHandle = Arc<Mutex<PcInterruptRouter>>;

/// The 8259A ports (20h-21h, A0h-A1h) and the ELCR (4D0h-4D1h). A wider
/// access is split into byte accesses to consecutive ports, as the ISA bus
/// does for 8-bit devices.
pub struct PicPorts {
    router: RouterHandle,
}

impl PicPorts {
    /// The port ranges it answers, each two ports long.
    pub const RANGES: [(u16, &'static str); 3] = [
        (DualPic::MASTER_PORT, "8259A master"),
        (DualPic::SLAVE_PORT, "8259A slave"),
        (DualPic::ELCR_PORT, "PIIX ELCR"),
    ];

    pub fn new(router: RouterHandle) -> Self {
        PicPorts { router }
    }
}

/// The port of byte `i` of an access at `base + offset`.
fn port(base: u64, offset: u64, i: usize) -> Option<u16> {
    u16::try_from(base.checked_add(offset)?.checked_add(i as u64)?).ok()
}

impl BusDevice for PicPorts {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        let mut router = self.router.lock();
        for (i, byte) in data.iter_mut().enumerate() {
            if let Some(p) = port(base, offset, i) {
                *byte = router.pic_read(p);
            }
        }
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let mut router = self.router.lock();
        for (i, &byte) in data.iter().enumerate() {
            if let Some(p) = port(base, offset, i) {
                router.pic_write(p, byte);
            }
        }
    }
}

/// The IOAPIC's MMIO page at FEC00000h.
pub struct IoApicMmio {
    router: RouterHandle,
}

impl IoApicMmio {
    pub fn new(router: RouterHandle) -> Self {
        IoApicMmio { router }
    }
}

impl BusDevice for IoApicMmio {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        self.router.lock().ioapic_mmio_read(offset, data);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        self.router.lock().ioapic_mmio_write(offset, data);
    }
}

/// One vCPU's local APIC page at FEE00000h. The bus carries no vCPU
/// identity, so a VM with several vCPUs needs one bus view per vCPU (or an
/// access context) to register one adapter each; with one vCPU this is it.
pub struct LapicMmio {
    router: RouterHandle,
    vcpu: u32,
}

impl LapicMmio {
    /// The page's size.
    pub const LEN: u64 = 0x1000;

    pub fn new(router: RouterHandle, vcpu: u32) -> Self {
        LapicMmio { router, vcpu }
    }
}

impl BusDevice for LapicMmio {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        self.router.lock().lapic_mmio_read(self.vcpu, offset, data);
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        self.router.lock().lapic_mmio_write(self.vcpu, offset, data);
    }
}

/// Registers the 8259A and ELCR ports, the IOAPIC page and vCPU 0's APIC
/// page on `bus`.
pub fn register_interrupt_controllers(
    bus: &mut Bus,
    router: &RouterHandle,
) -> Result<(), BusError> {
    let pic = Arc::new(Mutex::new(PicPorts::new(router.clone())));
    for (base, name) in PicPorts::RANGES {
        bus.register_pio(base, 2, name, pic.clone())?;
    }
    bus.register_mmio(
        IoApic::MMIO_BASE,
        IoApic::MMIO_LEN,
        "IOAPIC",
        Arc::new(Mutex::new(IoApicMmio::new(router.clone()))),
    )?;
    bus.register_mmio(
        DEFAULT_APIC_BASE,
        LapicMmio::LEN,
        "local APIC",
        Arc::new(Mutex::new(LapicMmio::new(router.clone(), 0))),
    )
}

#[cfg(test)]
mod tests;
