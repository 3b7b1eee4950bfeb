//! Keel's own CPU structures: boot entry, GDT/TSS, IDT and exception reports.

mod boot;
pub mod gdt;
pub mod idt;
pub mod lapic;
pub mod smp;
pub mod switch;
