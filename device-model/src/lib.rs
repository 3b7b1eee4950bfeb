//! The emulated PC platform a Keel guest sees: one bus for port I/O and MMIO,
//! and the devices on it.
//!
//! This crate knows nothing of VMX or SVM: the exit path hands it accesses
//! through [`Bus`], and devices reach the VM loop through [`PowerControl`].
//! See docs/ARCHITECTURE.md.
#![no_std]
#![forbid(unsafe_code)]

extern crate alloc;

#[cfg(test)]
extern crate std;

pub mod bus;
pub mod clock;
pub mod console;
pub mod debug_console;
pub mod debug_exit;
pub mod display;
pub mod fifo;
pub mod fw_cfg;
pub mod input;
pub mod interrupt;
pub mod irq;
pub mod memory_map;
pub mod net;
pub mod pc;
pub mod pci;
pub mod power;
pub mod serial;
pub mod storage;
pub mod test_device;
pub mod timer;
pub mod virtio;
pub mod xen;

pub use bus::{AddressSpace, Bus, BusDevice, BusError, DeviceHandle, RangeInfo, UnclaimedStats};
pub use clock::{Clock, ClockHandle, FakeClock};
pub use console::PrefixedConsole;
pub use debug_exit::DebugExit;
pub use input::{A20Gate, Port92, I8042};
pub use interrupt::{PcInterruptRouter, RouterHandle};
pub use irq::{IrqChip, IrqChipHandle, IrqLine};
pub use memory_map::MemoryMapQueue;
pub use pc::{Pc, PcConfig, PcError};
pub use power::{PowerControl, PowerRequest};
pub use serial::{CharSink, Uart16550};
pub use storage::{BlockBackend, BlockError, Piix3Ide, RamDisk};
pub use test_device::{DeviceRam, TestDevice};
pub use timer::{cmos_unix_time, Hpet, Pit, PmTimer, Port61, Rtc, TimerDevice};
