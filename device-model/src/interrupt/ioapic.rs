//! The I/O APIC (Intel 82093AA datasheet, order 290566): 24 input pins, each
//! turned by its redirection table entry into an interrupt message.
//!
//! Registers are reached indirectly: the guest writes a register index to
//! IOREGSEL (MMIO base + 00h) and reads or writes the 32-bit register through
//! IOWIN (base + 10h). Version 11h, as the 82093AA and QEMU's `ioapic`.
//!
//! Modelling choices:
//! - Pin levels are logical (asserted / deasserted). The polarity bit is
//!   stored and read back but not applied: Keel's ACPI tables describe each
//!   pin's polarity and a guest that follows them programs the matching bit,
//!   so applying it could only turn a correct setup into a stuck line.
//! - A message is delivered at once, so Delivery Status always reads 0.
//! - Remote IRR is set when a level-triggered message is sent, whether or not
//!   a local APIC accepts it, as on the APIC bus once the message is out.
//! - Writing an entry with trigger mode edge clears Remote IRR: operating
//!   systems use this to recover a stuck level entry on IOAPICs (like this
//!   one) that have no EOI register.
//! - Offsets other than IOREGSEL and IOWIN read 0 and ignore writes. IOREGSEL
//!   takes its low byte from any write that covers offset 00h; IOWIN takes
//!   only a 4-byte write at 10h, so no entry is ever half-written. Reads of
//!   any width return the bytes of the two registers at their offsets.

use alloc::vec::Vec;

use super::message::{ApicMessage, DeliveryMode, Destination, DestinationMode};

/// Number of redirection entries (and input pins).
pub const IOAPIC_PINS: usize = 24;

/// Register indices behind IOWIN (82093AA 3.2).
mod reg {
    pub const IOAPICID: u8 = 0x00;
    pub const IOAPICVER: u8 = 0x01;
    pub const IOAPICARB: u8 = 0x02;
    pub const IOREDTBL: u8 = 0x10;
}

/// Redirection entry bits (82093AA 3.2.4).
mod redir {
    pub const VECTOR: u64 = 0xFF;
    pub const DEST_MODE_LOGICAL: u64 = 1 << 11;
    pub const REMOTE_IRR: u64 = 1 << 14;
    pub const TRIGGER_LEVEL: u64 = 1 << 15;
    pub const MASKED: u64 = 1 << 16;
    /// Bits software can write in the low dword: vector, delivery mode,
    /// destination mode, polarity, trigger mode and mask (not Delivery
    /// Status, bit 12, nor Remote IRR, bit 14).
    pub const LOW_WRITABLE: u64 = 0x0001_AFFF;
    /// The destination field, bits 63:56.
    pub const DEST_SHIFT: u32 = 56;
}

/// The IOAPIC register file and pin state.
#[derive(Debug, Clone)]
pub struct IoApic {
    id: u8,
    arb_id: u8,
    select: u8,
    redirection: [u64; IOAPIC_PINS],
    /// Bit n: pin n is asserted.
    levels: u32,
}

impl Default for IoApic {
    fn default() -> Self {
        Self::new()
    }
}

impl IoApic {
    /// Where a PC has it (the MADT's IOAPIC address).
    pub const MMIO_BASE: u64 = 0xFEC0_0000;
    /// The window it answers: one 4 KiB page.
    pub const MMIO_LEN: u64 = 0x1000;
    /// IOREGSEL's offset.
    pub const IOREGSEL: u64 = 0x00;
    /// IOWIN's offset.
    pub const IOWIN: u64 = 0x10;
    /// The version register: maximum redirection entry 17h, version 11h.
    pub const VERSION: u32 = ((IOAPIC_PINS as u32 - 1) << 16) | 0x11;

    /// An IOAPIC in its reset state: every entry masked, ID 0.
    pub fn new() -> Self {
        IoApic {
            id: 0,
            arb_id: 0,
            select: 0,
            redirection: [redir::MASKED; IOAPIC_PINS],
            levels: 0,
        }
    }

    /// RESET: registers to power-on values; pin levels are the wires' and
    /// survive.
    pub fn reset(&mut self) {
        *self = IoApic {
            levels: self.levels,
            ..IoApic::new()
        };
    }

    /// Redirection entry `pin` (for tests and diagnostics).
    pub fn entry(&self, pin: usize) -> Option<u64> {
        self.redirection.get(pin).copied()
    }

    /// Drives input `pin`; a message to deliver goes into `out`.
    pub fn set_irq(&mut self, pin: usize, level: bool, out: &mut Vec<ApicMessage>) {
        if pin >= IOAPIC_PINS {
            return;
        }
        let bit = 1u32 << pin;
        let was = self.levels & bit != 0;
        if level {
            self.levels |= bit;
        } else {
            self.levels &= !bit;
        }
        let entry = self.redirection[pin];
        if entry & redir::TRIGGER_LEVEL != 0 {
            self.service_level(pin, out);
        } else if level && !was && entry & redir::MASKED == 0 {
            // 82093AA: an edge on a masked pin is ignored, not held pending.
            out.push(Self::message(entry));
        }
    }

    /// A level entry sends while its pin is asserted, it is unmasked and no
    /// earlier message awaits its EOI (Remote IRR clear).
    fn service_level(&mut self, pin: usize, out: &mut Vec<ApicMessage>) {
        let entry = self.redirection[pin];
        let asserted = self.levels & (1 << pin) != 0;
        if asserted
            && entry & redir::TRIGGER_LEVEL != 0
            && entry & (redir::MASKED | redir::REMOTE_IRR) == 0
        {
            self.redirection[pin] |= redir::REMOTE_IRR;
            out.push(Self::message(entry));
        }
    }

    fn message(entry: u64) -> ApicMessage {
        let delivery = match DeliveryMode::from_bits(entry) {
            // 110 is reserved in a redirection entry.
            DeliveryMode::StartUp => DeliveryMode::Reserved,
            mode => mode,
        };
        let dest_mode = if entry & redir::DEST_MODE_LOGICAL != 0 {
            DestinationMode::Logical
        } else {
            DestinationMode::Physical
        };
        ApicMessage {
            vector: (entry & redir::VECTOR) as u8,
            delivery,
            dest_mode,
            destination: Destination::Field((entry >> redir::DEST_SHIFT) as u32),
            level_triggered: entry & redir::TRIGGER_LEVEL != 0,
        }
    }

    /// The EOI broadcast of the local APICs for `vector`: clears Remote IRR
    /// of every level entry with that vector, and sends again for a pin that
    /// is still asserted.
    pub fn end_of_interrupt(&mut self, vector: u8, out: &mut Vec<ApicMessage>) {
        for pin in 0..IOAPIC_PINS {
            let entry = self.redirection[pin];
            if entry & redir::REMOTE_IRR != 0 && (entry & redir::VECTOR) as u8 == vector {
                self.redirection[pin] &= !redir::REMOTE_IRR;
                self.service_level(pin, out);
            }
        }
    }

    /// Reads the register IOREGSEL selects.
    pub fn read_register(&self, index: u8) -> u32 {
        match index {
            reg::IOAPICID => u32::from(self.id) << 24,
            reg::IOAPICVER => Self::VERSION,
            reg::IOAPICARB => u32::from(self.arb_id) << 24,
            _ => match Self::entry_index(index) {
                Some((pin, high)) => {
                    let entry = self.redirection[pin];
                    if high {
                        (entry >> 32) as u32
                    } else {
                        entry as u32
                    }
                }
                None => 0,
            },
        }
    }

    /// Writes the register `index`; an entry change that makes a pin
    /// deliverable sends into `out`.
    pub fn write_register(&mut self, index: u8, value: u32, out: &mut Vec<ApicMessage>) {
        match index {
            reg::IOAPICID => {
                // The arbitration ID is loaded from the ID on every ID write.
                self.id = ((value >> 24) & 0xF) as u8;
                self.arb_id = self.id;
            }
            reg::IOAPICVER | reg::IOAPICARB => {}
            _ => {
                let Some((pin, high)) = Self::entry_index(index) else {
                    return;
                };
                let old = self.redirection[pin];
                let new = if high {
                    (old & 0xFFFF_FFFF) | (u64::from(value & 0xFF00_0000) << 32)
                } else {
                    let mut low = (old & !redir::LOW_WRITABLE & 0xFFFF_FFFF)
                        | (u64::from(value) & redir::LOW_WRITABLE);
                    if low & redir::TRIGGER_LEVEL == 0 {
                        low &= !redir::REMOTE_IRR;
                    }
                    (old & !0xFFFF_FFFF) | low
                };
                self.redirection[pin] = new;
                self.service_level(pin, out);
            }
        }
    }

    /// The pin and half (high dword?) of redirection register `index`.
    fn entry_index(index: u8) -> Option<(usize, bool)> {
        let n = usize::from(index.checked_sub(reg::IOREDTBL)?);
        (n < 2 * IOAPIC_PINS).then_some((n / 2, n % 2 == 1))
    }

    /// A guest MMIO read of `data.len()` bytes at `offset` in the page.
    pub fn mmio_read(&self, offset: u64, data: &mut [u8]) {
        let regsel = u32::from(self.select);
        let window = self.read_register(self.select);
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset.wrapping_add(i as u64);
            *byte = match at {
                0x00..=0x03 => (regsel >> (8 * at)) as u8,
                0x10..=0x13 => (window >> (8 * (at - 0x10))) as u8,
                _ => 0,
            };
        }
    }

    /// A guest MMIO write of `data` at `offset` in the page.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8], out: &mut Vec<ApicMessage>) {
        match (offset, data) {
            (Self::IOREGSEL, [sel, ..]) => self.select = *sel,
            (Self::IOWIN, &[a, b, c, d]) => {
                let value = u32::from_le_bytes([a, b, c, d]);
                self.write_register(self.select, value, out);
            }
            _ => log::debug!(
                "ioapic: {}-byte write at offset {offset:#x} ignored",
                data.len()
            ),
        }
    }
}

#[cfg(test)]
mod tests;
