//! The platform a VM's exits reach: the device bus, guest RAM and the clock.
//!
//! Implements the exit layer's `Platform` trait on top of `device_model::Bus`,
//! so `vmm-core` never names a device and the devices never name a backend.

use alloc::boxed::Box;
use alloc::sync::Arc;
use device_model::test_device::{TEST_DEVICE_BASE, TEST_DEVICE_LEN};
use device_model::{
    Bus, BusError, DebugExit, DeviceHandle, PowerControl, PrefixedConsole, ScratchMmio, Uart16550,
};
use guest_memory::{GuestMemory, GuestRam};
use spin::Mutex;

/// COM1's I/O ports (8 registers).
const COM1_BASE: u16 = 0x3f8;
const COM1_LEN: u16 = 8;

/// One VM's emulated PC.
pub struct Machine {
    bus: Bus,
    /// Where devices ask for the VM to stop (debug exit, later reset and ACPI).
    pub power: PowerControl,
    ram: GuestRam<'static>,
}

impl Machine {
    /// The machine of VM `name` over its RAM: COM1 and the debug-exit port,
    /// and with `test_device` the MMIO scratch test device.
    pub fn new(name: &str, ram: GuestRam<'static>, test_device: bool) -> Result<Self, BusError> {
        let power = PowerControl::new();
        let mut bus = Bus::new();
        let console = PrefixedConsole::new(name, Box::new(|line: &str| crate::println!("{line}")));
        let com1: DeviceHandle = Arc::new(Mutex::new(Uart16550::new(Box::new(console))));
        bus.register_pio(COM1_BASE, COM1_LEN, "com1", com1)?;
        let debug_exit: DeviceHandle = Arc::new(Mutex::new(DebugExit::new(power.clone())));
        bus.register_pio(DebugExit::PORT, DebugExit::LEN, "debug-exit", debug_exit)?;
        if test_device {
            let scratch: DeviceHandle = Arc::new(Mutex::new(ScratchMmio::default()));
            bus.register_mmio(TEST_DEVICE_BASE, TEST_DEVICE_LEN, "keel-testdev", scratch)?;
        }
        Ok(Machine { bus, power, ram })
    }

    /// Accesses that reached no device, for the end-of-run summary.
    pub fn unclaimed(&self) -> device_model::UnclaimedStats {
        self.bus.unclaimed()
    }
}

impl vmm_core::exit::Platform for Machine {
    fn pio_read(&mut self, port: u16, size: u8) -> u32 {
        self.bus.pio_read(port, size)
    }

    fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        self.bus.pio_write(port, size, value)
    }

    fn mmio_read(&mut self, gpa: u64, data: &mut [u8]) {
        self.bus.mmio_read(gpa, data)
    }

    fn mmio_write(&mut self, gpa: u64, data: &[u8]) {
        self.bus.mmio_write(gpa, data)
    }

    fn memory(&mut self) -> &mut dyn GuestMemory {
        &mut self.ram
    }

    fn guest_tsc(&self) -> u64 {
        // The guest runs with a zero TSC offset: its TSC is the host's.
        // SAFETY: RDTSC has no preconditions on a CPU with SVM.
        unsafe { core::arch::x86_64::_rdtsc() }
    }
}
