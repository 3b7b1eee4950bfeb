//! The MSR side of a local APIC: IA32_APIC_BASE (1Bh) with its mode
//! transitions (SDM Vol 3A 11.12.5) and the x2APIC registers at MSRs
//! 800h-8FFh (SDM 11.12.1, Table 11-6).
//!
//! Nothing here raises an exception: a refused access returns an
//! [`ApicMsrError`] and the MSR policy turns it into #GP(0).

use core::fmt;

use super::{apic_base, reg, LocalApic, RegFault};

/// IA32_APIC_BASE.
pub const IA32_APIC_BASE: u32 = 0x1B;
/// IA32_TSC_DEADLINE.
pub const IA32_TSC_DEADLINE: u32 = 0x6E0;
/// The x2APIC register MSRs: 800h + (xAPIC offset >> 4).
pub const X2APIC_MSRS: core::ops::RangeInclusive<u32> = 0x800..=0x8FF;

/// Why an APIC MSR access raises #GP(0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApicMsrFault {
    /// An x2APIC MSR while the APIC is not in x2APIC mode.
    NotX2apicMode,
    /// An MSR in 800h-8FFh with no register behind it (or outside that range).
    Reserved,
    /// WRMSR to a read-only register.
    ReadOnly,
    /// RDMSR of a write-only register (EOI, SELF IPI).
    WriteOnly,
    /// WRMSR with reserved bits set (bits 63:32 of every register but the
    /// ICR; IA32_APIC_BASE bits 7:0, 9 and those at or above MAXPHYADDR).
    ReservedBits,
    /// WRMSR of a non-zero value to EOI or ESR.
    NonZero,
    /// IA32_APIC_BASE: x2APIC to xAPIC, disabled to x2APIC, or EXTD
    /// without EN.
    InvalidTransition,
    /// IA32_APIC_BASE.EXTD while CPUID does not offer x2APIC.
    X2apicUnsupported,
    /// The vCPU index names no local APIC (a VM loop error, not the guest's).
    NoSuchVcpu,
}

/// A refused APIC MSR access: the caller raises #GP(0).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ApicMsrError {
    pub msr: u32,
    /// The value of a WRMSR; `None` for RDMSR.
    pub written: Option<u64>,
    pub fault: ApicMsrFault,
}

impl fmt::Display for ApicMsrError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.written {
            Some(v) => write!(
                f,
                "WRMSR {:#x} ({}) with {v:#x}",
                self.msr,
                msr_name(self.msr)
            )?,
            None => write!(f, "RDMSR {:#x} ({})", self.msr, msr_name(self.msr))?,
        }
        let why = match self.fault {
            ApicMsrFault::NotX2apicMode => "the local APIC is not in x2APIC mode",
            ApicMsrFault::Reserved => "no x2APIC register is at this MSR",
            ApicMsrFault::ReadOnly => "the register is read-only",
            ApicMsrFault::WriteOnly => "the register is write-only",
            ApicMsrFault::ReservedBits => "reserved bits are set",
            ApicMsrFault::NonZero => "only 0 may be written to this register",
            ApicMsrFault::InvalidTransition => {
                "the APIC mode change is invalid (SDM 11.12.5: x2APIC to xAPIC, disabled to x2APIC, EXTD without EN)"
            }
            ApicMsrFault::X2apicUnsupported => "x2APIC mode is not offered to this VM",
            ApicMsrFault::NoSuchVcpu => "this vCPU has no local APIC",
        };
        write!(f, " raises #GP(0): {why}")
    }
}

/// The SDM's name for an APIC MSR, for messages.
pub fn msr_name(msr: u32) -> &'static str {
    match msr {
        IA32_APIC_BASE => "IA32_APIC_BASE",
        IA32_TSC_DEADLINE => "IA32_TSC_DEADLINE",
        0x802 => "x2APIC ID",
        0x803 => "x2APIC version",
        0x808 => "x2APIC TPR",
        0x80A => "x2APIC PPR",
        0x80B => "x2APIC EOI",
        0x80D => "x2APIC LDR",
        0x80F => "x2APIC SVR",
        0x810..=0x817 => "x2APIC ISR",
        0x818..=0x81F => "x2APIC TMR",
        0x820..=0x827 => "x2APIC IRR",
        0x828 => "x2APIC ESR",
        0x830 => "x2APIC ICR",
        0x832 => "x2APIC LVT timer",
        0x833 => "x2APIC LVT thermal",
        0x834 => "x2APIC LVT PMC",
        0x835 => "x2APIC LVT LINT0",
        0x836 => "x2APIC LVT LINT1",
        0x837 => "x2APIC LVT error",
        0x838 => "x2APIC timer initial count",
        0x839 => "x2APIC timer current count",
        0x83E => "x2APIC timer divide configuration",
        0x83F => "x2APIC SELF IPI",
        _ => "reserved x2APIC MSR",
    }
}

/// The APIC modes IA32_APIC_BASE EN and EXTD encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Disabled,
    XApic,
    X2Apic,
    Invalid,
}

fn mode_of(base: u64) -> Mode {
    match (base & apic_base::EN != 0, base & apic_base::EXTD != 0) {
        (false, false) => Mode::Disabled,
        (true, false) => Mode::XApic,
        (true, true) => Mode::X2Apic,
        (false, true) => Mode::Invalid,
    }
}

impl LocalApic {
    /// RDMSR IA32_APIC_BASE.
    pub fn apic_base(&self) -> u64 {
        self.apic_base
    }

    /// WRMSR IA32_APIC_BASE. The BSP flag is the platform's and ignores the
    /// write. Disabling the APIC resets its registers (SDM 11.4.3); entering
    /// x2APIC mode makes the ID the initial APIC ID and derives the LDR
    /// (11.12.5.1).
    pub fn set_apic_base(&mut self, value: u64) -> Result<(), ApicMsrError> {
        let err = |fault| ApicMsrError {
            msr: IA32_APIC_BASE,
            written: Some(value),
            fault,
        };
        let bits = u32::from(self.config.phys_addr_bits.clamp(12, 52));
        let address = ((1u64 << bits) - 1) & !0xFFF;
        let valid = address | apic_base::BSP | apic_base::EXTD | apic_base::EN;
        if value & !valid != 0 {
            return Err(err(ApicMsrFault::ReservedBits));
        }
        if value & apic_base::EXTD != 0 && !self.config.x2apic {
            return Err(err(ApicMsrFault::X2apicUnsupported));
        }
        let old = mode_of(self.apic_base);
        let new = mode_of(value);
        match (old, new) {
            (_, Mode::Invalid) | (Mode::X2Apic, Mode::XApic) | (Mode::Disabled, Mode::X2Apic) => {
                return Err(err(ApicMsrFault::InvalidTransition))
            }
            _ => {}
        }
        self.apic_base = (value & !apic_base::BSP) | (self.apic_base & apic_base::BSP);
        match (old, new) {
            (Mode::XApic | Mode::X2Apic, Mode::Disabled) => self.reset_registers(),
            (Mode::XApic, Mode::X2Apic) => {
                self.id = self.initial_id;
                self.ldr = Self::x2apic_ldr(self.initial_id);
            }
            _ => {}
        }
        Ok(())
    }

    /// RDMSR of an x2APIC register MSR (800h-8FFh).
    pub fn read_msr(&mut self, msr: u32) -> Result<u64, ApicMsrError> {
        let err = |fault| ApicMsrError {
            msr,
            written: None,
            fault,
        };
        let index = self.x2apic_index(msr).map_err(err)?;
        self.read_reg(index, true).map_err(|f| err(fault_of(f)))
    }

    /// WRMSR of an x2APIC register MSR (800h-8FFh). Bits 63:32 are reserved
    /// except in the ICR, whose high half is the 32-bit destination; SELF
    /// IPI's bits 31:8 are reserved too (SDM 11.12.11), and a reserved bit
    /// set raises #GP in x2APIC mode (11.12.1.3).
    pub fn write_msr(&mut self, msr: u32, value: u64) -> Result<(), ApicMsrError> {
        let err = |fault| ApicMsrError {
            msr,
            written: Some(value),
            fault,
        };
        let index = self.x2apic_index(msr).map_err(err)?;
        let reserved = match index {
            reg::ICR_LOW => 0,
            reg::SELF_IPI => !0xFF,
            _ => !0xFFFF_FFFF,
        };
        if value & reserved != 0 {
            return Err(err(ApicMsrFault::ReservedBits));
        }
        self.write_reg(index, value, true)
            .map_err(|f| err(fault_of(f)))
    }

    fn x2apic_index(&self, msr: u32) -> Result<u32, ApicMsrFault> {
        if !X2APIC_MSRS.contains(&msr) {
            return Err(ApicMsrFault::Reserved);
        }
        if !self.x2apic_mode() {
            return Err(ApicMsrFault::NotX2apicMode);
        }
        Ok(msr - 0x800)
    }
}

fn fault_of(f: RegFault) -> ApicMsrFault {
    match f {
        RegFault::Reserved => ApicMsrFault::Reserved,
        RegFault::ReadOnly => ApicMsrFault::ReadOnly,
        RegFault::WriteOnly => ApicMsrFault::WriteOnly,
        RegFault::NonZero => ApicMsrFault::NonZero,
    }
}
