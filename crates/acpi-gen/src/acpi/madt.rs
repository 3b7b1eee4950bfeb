//! Multiple APIC Description Table (ACPI 6.5 5.2.12), as QEMU's `pc` publishes it.

use alloc::vec::Vec;

use super::{header, seal};
use crate::config::pc_layout;
use crate::MachineConfig;

/// MADT revision (ACPI 6.2-6.4 layout; Keel uses no newer structure).
const REVISION: u8 = 5;
/// Flags: PCAT_COMPAT, a dual 8259 is present (5.2.12, table 5.20).
pub const PCAT_COMPAT: u32 = 1;
/// Interrupt controller structure types (table 5.21).
pub const TYPE_LOCAL_APIC: u8 = 0;
pub const TYPE_IO_APIC: u8 = 1;
pub const TYPE_INTERRUPT_SOURCE_OVERRIDE: u8 = 2;
pub const TYPE_LOCAL_APIC_NMI: u8 = 4;
/// Local APIC flags: Enabled.
const LAPIC_ENABLED: u32 = 1;
/// MPS INTI flags (table 5.26): polarity bits 1:0, trigger mode bits 3:2.
pub const INTI_CONFORMING: u16 = 0;
pub const INTI_ACTIVE_HIGH_LEVEL: u16 = 0b01 | 0b11 << 2;
/// Processor UID meaning "all processors" in a Local APIC NMI structure.
const ALL_PROCESSORS: u8 = 0xFF;
/// The LAPIC pin NMI is wired to on a PC.
const NMI_LINT: u8 = 1;

pub fn madt(cfg: &MachineConfig) -> Vec<u8> {
    let mut t = header(b"APIC", REVISION);
    t.extend_from_slice(&pc_layout::LAPIC_ADDRESS.to_le_bytes());
    t.extend_from_slice(&PCAT_COMPAT.to_le_bytes());
    for cpu in 0..cfg.vcpus.min(crate::MAX_VCPUS) as u8 {
        // ACPI processor UID = APIC ID = vCPU index (the DSDT's Processor IDs).
        t.extend_from_slice(&[TYPE_LOCAL_APIC, 8, cpu, cpu]);
        t.extend_from_slice(&LAPIC_ENABLED.to_le_bytes());
    }
    t.extend_from_slice(&[TYPE_IO_APIC, 12, pc_layout::IOAPIC_ID, 0]);
    t.extend_from_slice(&pc_layout::IOAPIC_ADDRESS.to_le_bytes());
    t.extend_from_slice(&0u32.to_le_bytes());
    // The PIT's IRQ 0 is wired to I/O APIC pin 2.
    iso(&mut t, 0, 2, INTI_CONFORMING);
    // The SCI and the PCI IRQs are level-triggered, active-high on this board (QEMU's).
    for irq in pc_layout::PCI_LEVEL_IRQS {
        iso(&mut t, irq, u32::from(irq), INTI_ACTIVE_HIGH_LEVEL);
    }
    t.extend_from_slice(&[TYPE_LOCAL_APIC_NMI, 6, ALL_PROCESSORS]);
    t.extend_from_slice(&INTI_CONFORMING.to_le_bytes());
    t.push(NMI_LINT);
    seal(&mut t);
    t
}

/// An Interrupt Source Override (5.2.12.5) on the ISA bus.
fn iso(t: &mut Vec<u8>, irq: u8, gsi: u32, flags: u16) {
    t.extend_from_slice(&[TYPE_INTERRUPT_SOURCE_OVERRIDE, 10, 0, irq]);
    t.extend_from_slice(&gsi.to_le_bytes());
    t.extend_from_slice(&flags.to_le_bytes());
}
