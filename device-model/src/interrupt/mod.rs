//! The interrupt controllers of the emulated PC (QEMU's `-machine pc`, an
//! i440FX/PIIX board): the dual 8259A with the PIIX ELCR ([`DualPic`]), the
//! 82093AA IOAPIC ([`IoApic`]), one local APIC per vCPU ([`LocalApic`]), and
//! [`PcInterruptRouter`], which owns them all, is the [`IrqChip`](crate::IrqChip)
//! every [`IrqLine`](crate::IrqLine) drives, and answers the VM loop.
//!
//! # Lock order
//!
//! The VM shares the router as a [`RouterHandle`] (`Arc<spin::Mutex<_>>`):
//! devices' `IrqLine`s lock it (it coerces to an `IrqChipHandle`), and so do
//! the bus adapters ([`PicPorts`], [`IoApicMmio`], [`LapicMmio`]). Locks are
//! taken in this order only:
//!
//! 1. a bus device's mutex (taken by [`Bus`](crate::Bus) for one access;
//!    the adapters' mutexes are such device mutexes);
//! 2. the router's mutex (taken by an `IrqLine` inside a device's access, or
//!    by an adapter).
//!
//! The router never takes another lock while it holds its own: it owns its
//! controllers, reads time through the lock-free [`Clock`](crate::Clock), and
//! holds no device, line or bus. So a bus access that changes an IRQ cannot
//! deadlock. The rule for callers: never call into the bus or an `IrqLine`
//! while holding the router's guard (the VM loop drops it before
//! dispatching an exit).

pub mod bus_adapters;
pub mod dual_pic;
pub mod ioapic;
pub mod lapic;
pub mod message;
pub mod pic;
pub mod router;

pub use bus_adapters::{
    register_interrupt_controllers, IoApicMmio, LapicMmio, PicPorts, RouterHandle,
};
pub use dual_pic::DualPic;
pub use ioapic::IoApic;
pub use lapic::{ApicMsrError, ApicMsrFault, LapicConfig, LocalApic, Lvt};
pub use message::{ApicMessage, DeliveryMode, Destination, DestinationMode};
pub use pic::Pic8259;
pub use router::PcInterruptRouter;
