//! The one path an interrupt takes from a device: device line -> interrupt
//! controllers (PIC / IOAPIC) -> local APIC -> vCPU.
//!
//! A device holds an [`IrqLine`] for the global system interrupt (GSI) it is
//! wired to and drives its level; it never names a controller. The
//! controllers implement [`IrqChip`]; the VM loop asks them for the vector to
//! inject.

use alloc::sync::Arc;
use spin::Mutex;

/// Something that receives interrupt-line levels by GSI (on a PC: the PIC
/// pair for ISA IRQs 0-15, and the IOAPIC for GSIs 0-23).
pub trait IrqChip: Send {
    /// Sets the level of input `gsi` (true = asserted). Edge-triggered inputs
    /// see a rising edge when the level goes from false to true.
    fn set_irq(&mut self, gsi: u32, level: bool);
}

/// The shared handle to a VM's interrupt controllers.
pub type IrqChipHandle = Arc<Mutex<dyn IrqChip>>;

/// One device interrupt output, wired to one GSI.
#[derive(Clone)]
pub struct IrqLine {
    chip: IrqChipHandle,
    gsi: u32,
}

impl IrqLine {
    pub fn new(chip: IrqChipHandle, gsi: u32) -> Self {
        IrqLine { chip, gsi }
    }

    /// The GSI this line drives.
    pub fn gsi(&self) -> u32 {
        self.gsi
    }

    /// Drives the line to `level` (level-triggered devices hold it while they need service).
    pub fn set_level(&self, level: bool) {
        self.chip.lock().set_irq(self.gsi, level);
    }

    /// An edge: asserts and deasserts the line (edge-triggered ISA devices like the PIT).
    pub fn pulse(&self) {
        let mut chip = self.chip.lock();
        chip.set_irq(self.gsi, true);
        chip.set_irq(self.gsi, false);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec::Vec;

    #[derive(Default)]
    struct Recorder(Vec<(u32, bool)>);
    impl IrqChip for Recorder {
        fn set_irq(&mut self, gsi: u32, level: bool) {
            self.0.push((gsi, level));
        }
    }

    #[test]
    fn lines_drive_their_gsi() {
        let rec = Arc::new(Mutex::new(Recorder::default()));
        let chip: IrqChipHandle = rec.clone();
        let line = IrqLine::new(chip, 4);
        line.set_level(true);
        line.set_level(false);
        line.pulse();
        assert_eq!(line.gsi(), 4);
        assert_eq!(rec.lock().0, [(4, true), (4, false), (4, true), (4, false)]);
    }
}
