//! An interrupt message between APICs: what an IOAPIC redirection entry
//! (82093AA 3.2.4) or a local APIC's ICR (SDM Vol 3A 11.6.1) sends, and what
//! the router hands to the local APICs it names.

/// The delivery mode field (three bits in both the ICR and a redirection entry).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliveryMode {
    /// 000: the vector to every destination.
    Fixed,
    /// 001: the vector to the destination with the lowest priority.
    LowestPriority,
    /// 010: SMI (Keel has no SMM; dropped with a log line).
    Smi,
    /// 100: NMI, vector ignored.
    Nmi,
    /// 101: INIT, vector ignored.
    Init,
    /// 110: Start-Up IPI (ICR only): the vector is the start page.
    StartUp,
    /// 111: ExtINT (IOAPIC and LVT only): the vector comes from the 8259A.
    ExtInt,
    /// 011, and the encodings a given source does not define.
    Reserved,
}

impl DeliveryMode {
    /// Decodes bits 10:8 of an ICR, LVT or redirection entry.
    pub fn from_bits(raw: u64) -> Self {
        match (raw >> 8) & 7 {
            0 => DeliveryMode::Fixed,
            1 => DeliveryMode::LowestPriority,
            2 => DeliveryMode::Smi,
            4 => DeliveryMode::Nmi,
            5 => DeliveryMode::Init,
            6 => DeliveryMode::StartUp,
            7 => DeliveryMode::ExtInt,
            _ => DeliveryMode::Reserved,
        }
    }
}

/// Bit 11 of the ICR or a redirection entry: how `destination` is read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DestinationMode {
    /// The destination is an APIC ID.
    Physical,
    /// The destination is matched against each LDR (flat or cluster in
    /// xAPIC mode, cluster in x2APIC mode).
    Logical,
}

/// Who receives a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Destination {
    /// The destination field, read according to the destination mode. The
    /// broadcast values are `0xFF` (xAPIC, IOAPIC) and `0xFFFF_FFFF` (x2APIC).
    Field(u32),
    /// ICR shorthand 01: the sender only.
    SelfOnly,
    /// ICR shorthand 10: every local APIC.
    AllIncludingSelf,
    /// ICR shorthand 11: every local APIC but the sender.
    AllExcludingSelf,
}

/// One interrupt message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApicMessage {
    pub vector: u8,
    pub delivery: DeliveryMode,
    pub dest_mode: DestinationMode,
    pub destination: Destination,
    /// Level-triggered: the receiver sets the vector's TMR bit and its EOI
    /// is broadcast back to the IOAPICs.
    pub level_triggered: bool,
}

/// Where a PCI function's MSI or MSI-X message goes: a memory write of
/// `data` (32 bits) to `address` that the platform turns into an
/// [`ApicMessage`] (SDM Vol 3A 11.11). The interrupt router implements it.
pub trait MsiTarget: Send {
    /// Delivers the message; an address outside `0xFEEx_xxxx` is dropped,
    /// counted and logged by the target.
    fn send_msi(&mut self, address: u64, data: u32);
}

/// A function's handle for sending MSI/MSI-X messages, handed over when the
/// function is plugged in ([`crate::pci::PciDevice`]).
#[derive(Clone)]
pub struct MsiSender {
    target: alloc::sync::Arc<spin::Mutex<dyn MsiTarget>>,
}

impl MsiSender {
    pub fn new(target: alloc::sync::Arc<spin::Mutex<dyn MsiTarget>>) -> Self {
        MsiSender { target }
    }

    /// Sends one message.
    pub fn send(&self, address: u64, data: u32) {
        self.target.lock().send_msi(address, data);
    }
}
