//! VM-execution, VM-exit and VM-entry controls, and fitting them to what a
//! processor allows (SDM Vol 3C 25.6-25.8, Appendix A.3-A.5).
//!
//! Pure: the capability MSR values come in as a [`VmxCapabilities`], so the
//! adjustment is tested with the values of real (and emulated) models.

use core::fmt;

bitflags::bitflags! {
    /// Pin-based VM-execution controls (SDM 25.6.1, Table 25-5).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PinBased: u32 {
        const EXTERNAL_INTERRUPT_EXITING = 1 << 0;
        const NMI_EXITING = 1 << 3;
        const VIRTUAL_NMIS = 1 << 5;
        const VMX_PREEMPTION_TIMER = 1 << 6;
        const PROCESS_POSTED_INTERRUPTS = 1 << 7;
    }
}

bitflags::bitflags! {
    /// Primary processor-based VM-execution controls (SDM 25.6.2, Table 25-6).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct PrimaryProcessorBased: u32 {
        const INTERRUPT_WINDOW_EXITING = 1 << 2;
        const USE_TSC_OFFSETTING = 1 << 3;
        const HLT_EXITING = 1 << 7;
        const INVLPG_EXITING = 1 << 9;
        const MWAIT_EXITING = 1 << 10;
        const RDPMC_EXITING = 1 << 11;
        const RDTSC_EXITING = 1 << 12;
        const CR3_LOAD_EXITING = 1 << 15;
        const CR3_STORE_EXITING = 1 << 16;
        const CR8_LOAD_EXITING = 1 << 19;
        const CR8_STORE_EXITING = 1 << 20;
        const USE_TPR_SHADOW = 1 << 21;
        const NMI_WINDOW_EXITING = 1 << 22;
        const MOV_DR_EXITING = 1 << 23;
        const UNCONDITIONAL_IO_EXITING = 1 << 24;
        const USE_IO_BITMAPS = 1 << 25;
        const MONITOR_TRAP_FLAG = 1 << 27;
        const USE_MSR_BITMAPS = 1 << 28;
        const MONITOR_EXITING = 1 << 29;
        const PAUSE_EXITING = 1 << 30;
        const ACTIVATE_SECONDARY_CONTROLS = 1 << 31;
    }
}

bitflags::bitflags! {
    /// Secondary processor-based VM-execution controls (SDM 25.6.2, Table 25-7).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct SecondaryProcessorBased: u32 {
        const VIRTUALIZE_APIC_ACCESSES = 1 << 0;
        const ENABLE_EPT = 1 << 1;
        const DESCRIPTOR_TABLE_EXITING = 1 << 2;
        const ENABLE_RDTSCP = 1 << 3;
        const VIRTUALIZE_X2APIC_MODE = 1 << 4;
        const ENABLE_VPID = 1 << 5;
        const WBINVD_EXITING = 1 << 6;
        const UNRESTRICTED_GUEST = 1 << 7;
        const APIC_REGISTER_VIRTUALIZATION = 1 << 8;
        const VIRTUAL_INTERRUPT_DELIVERY = 1 << 9;
        const PAUSE_LOOP_EXITING = 1 << 10;
        const RDRAND_EXITING = 1 << 11;
        const ENABLE_INVPCID = 1 << 12;
        const ENABLE_VM_FUNCTIONS = 1 << 13;
        const VMCS_SHADOWING = 1 << 14;
        const RDSEED_EXITING = 1 << 16;
        const ENABLE_PML = 1 << 17;
        const EPT_VIOLATION_VE = 1 << 18;
        const ENABLE_XSAVES_XRSTORS = 1 << 20;
        const USE_TSC_SCALING = 1 << 25;
    }
}

bitflags::bitflags! {
    /// Primary VM-exit controls (SDM 25.7.1, Table 25-13).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ExitControls: u32 {
        const SAVE_DEBUG_CONTROLS = 1 << 2;
        const HOST_ADDRESS_SPACE_SIZE = 1 << 9;
        const LOAD_IA32_PERF_GLOBAL_CTRL = 1 << 12;
        const ACKNOWLEDGE_INTERRUPT_ON_EXIT = 1 << 15;
        const SAVE_IA32_PAT = 1 << 18;
        const LOAD_IA32_PAT = 1 << 19;
        const SAVE_IA32_EFER = 1 << 20;
        const LOAD_IA32_EFER = 1 << 21;
        const SAVE_VMX_PREEMPTION_TIMER_VALUE = 1 << 22;
    }
}

bitflags::bitflags! {
    /// VM-entry controls (SDM 25.8.1, Table 25-15).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct EntryControls: u32 {
        const LOAD_DEBUG_CONTROLS = 1 << 2;
        const IA32E_MODE_GUEST = 1 << 9;
        const ENTRY_TO_SMM = 1 << 10;
        const DEACTIVATE_DUAL_MONITOR_TREATMENT = 1 << 11;
        const LOAD_IA32_PERF_GLOBAL_CTRL = 1 << 13;
        const LOAD_IA32_PAT = 1 << 14;
        const LOAD_IA32_EFER = 1 << 15;
    }
}

/// Capability MSR indices (SDM Vol 4, Table 2-2; Vol 3C Appendix A).
pub mod msr {
    pub const IA32_FEATURE_CONTROL: u32 = 0x3a;
    pub const IA32_VMX_BASIC: u32 = 0x480;
    pub const IA32_VMX_PINBASED_CTLS: u32 = 0x481;
    pub const IA32_VMX_PROCBASED_CTLS: u32 = 0x482;
    pub const IA32_VMX_EXIT_CTLS: u32 = 0x483;
    pub const IA32_VMX_ENTRY_CTLS: u32 = 0x484;
    pub const IA32_VMX_MISC: u32 = 0x485;
    pub const IA32_VMX_CR0_FIXED0: u32 = 0x486;
    pub const IA32_VMX_CR0_FIXED1: u32 = 0x487;
    pub const IA32_VMX_CR4_FIXED0: u32 = 0x488;
    pub const IA32_VMX_CR4_FIXED1: u32 = 0x489;
    pub const IA32_VMX_PROCBASED_CTLS2: u32 = 0x48b;
    pub const IA32_VMX_EPT_VPID_CAP: u32 = 0x48c;
    pub const IA32_VMX_TRUE_PINBASED_CTLS: u32 = 0x48d;
    pub const IA32_VMX_TRUE_PROCBASED_CTLS: u32 = 0x48e;
    pub const IA32_VMX_TRUE_EXIT_CTLS: u32 = 0x48f;
    pub const IA32_VMX_TRUE_ENTRY_CTLS: u32 = 0x490;
}

/// IA32_VMX_BASIC bit 55: the TRUE_* capability MSRs exist (SDM A.1).
pub const BASIC_TRUE_CONTROLS: u64 = 1 << 55;
/// IA32_VMX_BASIC bit 54: INS/OUTS exits report the instruction information.
pub const BASIC_INS_OUTS_INFO: u64 = 1 << 54;
/// IA32_VMX_BASIC bits 53:50: memory type 6 (write-back) for VMCS accesses.
const BASIC_MEMORY_TYPE_WB: u64 = 6;
// IA32_VMX_EPT_VPID_CAP bits (SDM A.10).
pub const EPT_CAP_WALK_LENGTH_4: u64 = 1 << 6;
pub const EPT_CAP_MEMORY_TYPE_WB: u64 = 1 << 14;
pub const EPT_CAP_2MB_PAGES: u64 = 1 << 16;
pub const EPT_CAP_1GB_PAGES: u64 = 1 << 17;
pub const EPT_CAP_INVEPT: u64 = 1 << 20;
pub const EPT_CAP_INVEPT_SINGLE_CONTEXT: u64 = 1 << 25;
pub const EPT_CAP_INVEPT_ALL_CONTEXT: u64 = 1 << 26;
pub const VPID_CAP_INVVPID: u64 = 1 << 32;
/// CR0.NE, CR0.PE, CR0.PG and CR4.VMXE.
const CR0_PE: u64 = 1 << 0;
const CR0_NE: u64 = 1 << 5;
const CR0_PG: u64 = 1 << 31;
pub const CR4_VMXE: u64 = 1 << 13;

/// The VMX capability MSRs of one processor, as read (or as a model lists them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct VmxCapabilities {
    pub basic: u64,
    pub pinbased: u64,
    pub procbased: u64,
    pub exit: u64,
    pub entry: u64,
    pub misc: u64,
    pub cr0_fixed0: u64,
    pub cr0_fixed1: u64,
    pub cr4_fixed0: u64,
    pub cr4_fixed1: u64,
    /// 0 when the primary controls cannot activate the secondary ones.
    pub procbased2: u64,
    /// 0 when neither EPT nor VPID can be enabled.
    pub ept_vpid: u64,
    /// The TRUE_* MSRs, or the plain ones when BASIC bit 55 is clear.
    pub true_pinbased: u64,
    pub true_procbased: u64,
    pub true_exit: u64,
    pub true_entry: u64,
}

impl VmxCapabilities {
    /// Reads every capability MSR through `rdmsr`, in the order the SDM
    /// allows (PROCBASED_CTLS2 only if the secondary controls can be
    /// activated, EPT_VPID_CAP only if EPT or VPID can be enabled, the TRUE_*
    /// MSRs only if BASIC bit 55 is set).
    pub fn read(mut rdmsr: impl FnMut(u32) -> u64) -> Self {
        let basic = rdmsr(msr::IA32_VMX_BASIC);
        let pinbased = rdmsr(msr::IA32_VMX_PINBASED_CTLS);
        let procbased = rdmsr(msr::IA32_VMX_PROCBASED_CTLS);
        let exit = rdmsr(msr::IA32_VMX_EXIT_CTLS);
        let entry = rdmsr(msr::IA32_VMX_ENTRY_CTLS);
        let has_true = basic & BASIC_TRUE_CONTROLS != 0;
        let pick =
            |r: &mut dyn FnMut(u32) -> u64, t: u32, plain: u64| if has_true { r(t) } else { plain };
        let true_pinbased = pick(&mut rdmsr, msr::IA32_VMX_TRUE_PINBASED_CTLS, pinbased);
        let true_procbased = pick(&mut rdmsr, msr::IA32_VMX_TRUE_PROCBASED_CTLS, procbased);
        let true_exit = pick(&mut rdmsr, msr::IA32_VMX_TRUE_EXIT_CTLS, exit);
        let true_entry = pick(&mut rdmsr, msr::IA32_VMX_TRUE_ENTRY_CTLS, entry);
        let secondary = (procbased >> 32)
            & u64::from(PrimaryProcessorBased::ACTIVATE_SECONDARY_CONTROLS.bits())
            != 0;
        let procbased2 = if secondary {
            rdmsr(msr::IA32_VMX_PROCBASED_CTLS2)
        } else {
            0
        };
        let ept_or_vpid = u64::from(
            (SecondaryProcessorBased::ENABLE_EPT | SecondaryProcessorBased::ENABLE_VPID).bits(),
        ) << 32;
        let ept_vpid = if procbased2 & ept_or_vpid != 0 {
            rdmsr(msr::IA32_VMX_EPT_VPID_CAP)
        } else {
            0
        };
        VmxCapabilities {
            basic,
            pinbased,
            procbased,
            exit,
            entry,
            misc: rdmsr(msr::IA32_VMX_MISC),
            cr0_fixed0: rdmsr(msr::IA32_VMX_CR0_FIXED0),
            cr0_fixed1: rdmsr(msr::IA32_VMX_CR0_FIXED1),
            cr4_fixed0: rdmsr(msr::IA32_VMX_CR4_FIXED0),
            cr4_fixed1: rdmsr(msr::IA32_VMX_CR4_FIXED1),
            procbased2,
            ept_vpid,
            true_pinbased,
            true_procbased,
            true_exit,
            true_entry,
        }
    }

    /// The VMCS revision identifier (BASIC bits 30:0).
    pub fn revision_id(&self) -> u32 {
        (self.basic & 0x7fff_ffff) as u32
    }

    /// Bytes the VMXON region and a VMCS take (BASIC bits 44:32).
    pub fn vmcs_size(&self) -> u32 {
        ((self.basic >> 32) & 0x1fff) as u32
    }

    /// Whether INS/OUTS exits report the address size in the instruction information.
    pub fn ins_outs_info(&self) -> bool {
        self.basic & BASIC_INS_OUTS_INFO != 0
    }

    /// Whether EPT may map 1 GiB pages.
    pub fn ept_1g_pages(&self) -> bool {
        self.ept_vpid & EPT_CAP_1GB_PAGES != 0
    }

    /// The INVEPT type to flush this guest's mappings: 1 (single context) or 2 (all contexts).
    pub fn invept_type(&self) -> Option<u64> {
        if self.ept_vpid & EPT_CAP_INVEPT == 0 {
            None
        } else if self.ept_vpid & EPT_CAP_INVEPT_SINGLE_CONTEXT != 0 {
            Some(1)
        } else if self.ept_vpid & EPT_CAP_INVEPT_ALL_CONTEXT != 0 {
            Some(2)
        } else {
            None
        }
    }
}

/// Which control field could not take the settings Keel needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlField {
    PinBased,
    PrimaryProcessorBased,
    SecondaryProcessorBased,
    Exit,
    Entry,
}

impl ControlField {
    fn name(self) -> &'static str {
        match self {
            ControlField::PinBased => "pin-based VM-execution controls",
            ControlField::PrimaryProcessorBased => "primary processor-based VM-execution controls",
            ControlField::SecondaryProcessorBased => {
                "secondary processor-based VM-execution controls"
            }
            ControlField::Exit => "VM-exit controls",
            ControlField::Entry => "VM-entry controls",
        }
    }
}

/// Why this processor's VMX cannot run Keel's guests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ControlError {
    /// Keel needs `missing` set in `field`, and the capability MSR says it must be 0.
    CannotSet {
        field: ControlField,
        missing: u32,
        what: &'static str,
    },
    /// Keel needs `bits` clear in `field`, and the capability MSR says they must be 1.
    CannotClear { field: ControlField, bits: u32 },
    /// The EPT capabilities lack something Keel needs.
    Ept(&'static str),
    /// The VMCS does not live in write-back memory, or needs more than 4 KiB.
    Basic(&'static str),
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ControlError::CannotSet {
                field,
                missing,
                what,
            } => write!(
                f,
                "VMX on this processor lacks {what}: {} bits {missing:#x} cannot be set",
                field.name()
            ),
            ControlError::CannotClear { field, bits } => write!(
                f,
                "VMX on this processor forces {} bits {bits:#x} on, which Keel must keep off",
                field.name()
            ),
            ControlError::Ept(what) => write!(f, "VMX on this processor lacks {what}"),
            ControlError::Basic(what) => write!(f, "IA32_VMX_BASIC: {what}"),
        }
    }
}

/// Fits `want` to a capability MSR (SDM A.3.1): bits 31:0 are the allowed
/// 0-settings (a 1 there means the control must be 1), bits 63:32 the
/// allowed 1-settings. `required` bits of `want` must survive; `forbidden`
/// bits must not be forced on.
pub fn adjust(
    field: ControlField,
    cap: u64,
    want: u32,
    required: u32,
    forbidden: u32,
    what: &'static str,
) -> Result<u32, ControlError> {
    let must_be_one = cap as u32;
    let may_be_one = (cap >> 32) as u32;
    let value = (want | must_be_one) & may_be_one;
    let missing = required & !value;
    if missing != 0 {
        return Err(ControlError::CannotSet {
            field,
            missing,
            what,
        });
    }
    if value & forbidden != 0 {
        return Err(ControlError::CannotClear {
            field,
            bits: value & forbidden,
        });
    }
    Ok(value)
}

/// The controls every Keel vCPU runs with, fitted to one processor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmxControls {
    pub pin: PinBased,
    pub primary: PrimaryProcessorBased,
    pub secondary: SecondaryProcessorBased,
    pub exit: ExitControls,
    /// Without IA32E_MODE_GUEST: the vCPU sets it from the guest's EFER.LMA.
    pub entry: EntryControls,
    /// CR0 bits that must be 1 in the guest (fixed0 without PE and PG, as
    /// unrestricted guest allows), and bits that must be 0 (not in fixed1).
    pub guest_cr0_must_be_one: u64,
    pub guest_cr0_must_be_zero: u64,
    pub guest_cr4_must_be_one: u64,
    pub guest_cr4_must_be_zero: u64,
    /// INS/OUTS exits report the address size.
    pub ins_outs_info: bool,
    /// INVEPT type for flushing after EPT changes.
    pub invept_type: Option<u64>,
    /// The capability MSRs the controls were fitted to (for diagnosing a failed entry).
    pub caps: VmxCapabilities,
}

impl VmxControls {
    /// Whether the CPU allows "enable RDTSCP" (SDM 25.6.2, A.3.3: bit 3 of
    /// the allowed-1 half of IA32_VMX_PROCBASED_CTLS2).
    pub fn rdtscp_allowed(&self) -> bool {
        (self.caps.procbased2 >> 32) & u64::from(SecondaryProcessorBased::ENABLE_RDTSCP.bits()) != 0
    }
}

impl VmxControls {
    /// The controls Keel needs, adjusted against `caps` (SDM 25.6-25.8, A.3-A.5):
    /// EPT with a 4-level walk and write-back tables, VPID, unrestricted guest,
    /// I/O and MSR bitmaps, HLT exiting, EFER load/save, a 64-bit host.
    pub fn new(caps: &VmxCapabilities) -> Result<Self, ControlError> {
        if caps.vmcs_size() > 4096 || caps.vmcs_size() == 0 {
            return Err(ControlError::Basic("the VMCS region is larger than 4 KiB"));
        }
        if (caps.basic >> 50) & 0xf != BASIC_MEMORY_TYPE_WB {
            return Err(ControlError::Basic(
                "the VMCS must be accessed as write-back memory",
            ));
        }
        // Physical interrupts and NMIs belong to the host: they end the guest's
        // run (as SVM's INTR and NMI intercepts do) and stay pending there.
        // Virtual NMIs: the guest's own NMI blocking, which its IRET ends,
        // in the interruptibility state, and the NMI-window exit that says
        // when it ended (SDM Vol 3C 25.3, 26.7.6; every CPU with EPT has them).
        let pin_required =
            PinBased::EXTERNAL_INTERRUPT_EXITING | PinBased::NMI_EXITING | PinBased::VIRTUAL_NMIS;
        let pin = adjust(
            ControlField::PinBased,
            caps.true_pinbased,
            pin_required.bits(),
            pin_required.bits(),
            PinBased::PROCESS_POSTED_INTERRUPTS.bits(),
            "external-interrupt and NMI exiting, virtual NMIs",
        )?;
        // CR8 is the local APIC's TPR, which Keel emulates: without the exits
        // (and without a TPR shadow) a guest MOV to CR8 would set the host's.
        // Without RDPMC exiting the guest would read the host's counters.
        let primary_required = PrimaryProcessorBased::HLT_EXITING
            | PrimaryProcessorBased::RDPMC_EXITING
            | PrimaryProcessorBased::CR8_LOAD_EXITING
            | PrimaryProcessorBased::CR8_STORE_EXITING
            | PrimaryProcessorBased::USE_IO_BITMAPS
            | PrimaryProcessorBased::USE_MSR_BITMAPS
            | PrimaryProcessorBased::ACTIVATE_SECONDARY_CONTROLS;
        let primary_want = primary_required
            | PrimaryProcessorBased::USE_TSC_OFFSETTING
            | PrimaryProcessorBased::MWAIT_EXITING
            | PrimaryProcessorBased::MONITOR_EXITING;
        // With EPT the guest owns CR3: loads and stores must not exit (they
        // would, with the TRUE controls unused, on older processors; then the
        // CR-access handler serves them).
        let primary = adjust(
            ControlField::PrimaryProcessorBased,
            caps.true_procbased,
            primary_want.bits(),
            primary_required.bits(),
            (PrimaryProcessorBased::USE_TPR_SHADOW | PrimaryProcessorBased::MONITOR_TRAP_FLAG)
                .bits(),
            "I/O bitmaps, MSR bitmaps, HLT or RDPMC exiting, or the secondary controls",
        )?;
        let ept = SecondaryProcessorBased::ENABLE_EPT;
        let ug = SecondaryProcessorBased::UNRESTRICTED_GUEST;
        let secondary_cap = caps.procbased2;
        adjust(
            ControlField::SecondaryProcessorBased,
            secondary_cap,
            ept.bits(),
            ept.bits(),
            0,
            "EPT (extended page tables)",
        )?;
        adjust(
            ControlField::SecondaryProcessorBased,
            secondary_cap,
            ug.bits(),
            ug.bits(),
            0,
            "unrestricted guest (needed to run real-mode code natively)",
        )?;
        let secondary_required = ept | ug;
        let secondary_want = secondary_required
            | SecondaryProcessorBased::ENABLE_VPID
            | SecondaryProcessorBased::WBINVD_EXITING
            | SecondaryProcessorBased::ENABLE_INVPCID
            | SecondaryProcessorBased::ENABLE_XSAVES_XRSTORS;
        let secondary = adjust(
            ControlField::SecondaryProcessorBased,
            secondary_cap,
            secondary_want.bits(),
            secondary_required.bits(),
            (SecondaryProcessorBased::VIRTUALIZE_APIC_ACCESSES
                | SecondaryProcessorBased::VMCS_SHADOWING
                | SecondaryProcessorBased::ENABLE_PML)
                .bits(),
            "EPT and unrestricted guest",
        )?;
        let exit_required = ExitControls::HOST_ADDRESS_SPACE_SIZE
            | ExitControls::SAVE_IA32_EFER
            | ExitControls::LOAD_IA32_EFER;
        let exit_want = exit_required | ExitControls::SAVE_IA32_PAT | ExitControls::LOAD_IA32_PAT;
        let exit = adjust(
            ControlField::Exit,
            caps.true_exit,
            exit_want.bits(),
            exit_required.bits(),
            ExitControls::ACKNOWLEDGE_INTERRUPT_ON_EXIT.bits(),
            "a 64-bit host or saving and loading EFER on VM exit",
        )?;
        let entry_required = EntryControls::LOAD_IA32_EFER;
        let entry_want = entry_required | EntryControls::LOAD_IA32_PAT;
        let entry = adjust(
            ControlField::Entry,
            caps.true_entry,
            entry_want.bits(),
            entry_required.bits(),
            (EntryControls::ENTRY_TO_SMM | EntryControls::DEACTIVATE_DUAL_MONITOR_TREATMENT).bits(),
            "loading EFER on VM entry",
        )?;
        let need = [
            (EPT_CAP_WALK_LENGTH_4, "a 4-level EPT page walk"),
            (EPT_CAP_MEMORY_TYPE_WB, "write-back EPT paging structures"),
            (EPT_CAP_2MB_PAGES, "2 MiB EPT pages"),
        ];
        for (bit, what) in need {
            if caps.ept_vpid & bit == 0 {
                return Err(ControlError::Ept(what));
            }
        }
        let mut secondary = SecondaryProcessorBased::from_bits_retain(secondary);
        if caps.ept_vpid & VPID_CAP_INVVPID == 0 {
            // VPIDs without INVVPID cannot be flushed: run without them.
            secondary.remove(SecondaryProcessorBased::ENABLE_VPID);
        }
        // Unrestricted guest relaxes CR0.PE and CR0.PG (SDM 26.3.1.1).
        let cr0_relaxed = CR0_PE | CR0_PG;
        Ok(VmxControls {
            pin: PinBased::from_bits_retain(pin),
            primary: PrimaryProcessorBased::from_bits_retain(primary),
            secondary,
            exit: ExitControls::from_bits_retain(exit),
            entry: EntryControls::from_bits_retain(entry) - EntryControls::IA32E_MODE_GUEST,
            guest_cr0_must_be_one: caps.cr0_fixed0 & !cr0_relaxed,
            guest_cr0_must_be_zero: !caps.cr0_fixed1 & 0xffff_ffff,
            guest_cr4_must_be_one: caps.cr4_fixed0,
            guest_cr4_must_be_zero: !caps.cr4_fixed1 & 0xffff_ffff,
            ins_outs_info: caps.ins_outs_info(),
            invept_type: caps.invept_type(),
            caps: *caps,
        })
    }

    /// CR0 bits the guest may not own: every fixed bit, plus NE (hidden: the
    /// guest sees its own value through the read shadow) (SDM 25.6.6).
    pub fn cr0_guest_host_mask(&self) -> u64 {
        self.guest_cr0_must_be_one | self.guest_cr0_must_be_zero | CR0_NE
    }

    /// CR4 bits the guest may not own: VMXE and every other fixed bit.
    pub fn cr4_guest_host_mask(&self) -> u64 {
        self.guest_cr4_must_be_one | self.guest_cr4_must_be_zero | CR4_VMXE
    }

    /// The CR4 bits this processor has that a VM whose CPUID offers the
    /// bits `allowed` ([`crate::exit::CpuidPolicy::cr4_allowed`]) must not
    /// set: a feature the configuration hides (`pku=0`, say). Owned by Keel
    /// ([`super::VmxVcpuConfig::cr4_hidden`]), a MOV to CR4 setting one
    /// exits (SDM Vol 3C 25.6.6) and raises #GP(0), as on hardware without
    /// the feature.
    pub fn cr4_hidden(&self, allowed: u64) -> u64 {
        let processor_has = !self.guest_cr4_must_be_zero & 0xffff_ffff;
        processor_has & !allowed & !self.guest_cr4_must_be_one
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Bochs 2.7 `corei7_skylake_x` (as Keel reads them under Bochs).
    pub fn skylake_x() -> VmxCapabilities {
        VmxCapabilities {
            basic: 0x00d8_1000_0000_002b,
            pinbased: 0x0000_007f_0000_0016,
            procbased: 0xf7f9_fffe_0401_e172,
            exit: 0x007f_ffff_0003_6dff,
            entry: 0x0000_ffff_0000_11ff,
            misc: 0x6004_01e0,
            cr0_fixed0: 0x8000_0021,
            cr0_fixed1: 0xffff_ffff,
            cr4_fixed0: 0x2000,
            cr4_fixed1: 0x0037_27ff,
            procbased2: 0x0217_7fff_0000_0000,
            ept_vpid: 0x0000_0f01_0633_4141,
            true_pinbased: 0x0000_007f_0000_0016,
            true_procbased: 0xf7f9_fffe_0400_6172,
            true_exit: 0x007f_ffff_0003_6dfb,
            true_entry: 0x0000_ffff_0000_11fb,
        }
    }

    #[test]
    fn skylake_x_gets_every_control_keel_needs() {
        let c = VmxControls::new(&skylake_x()).unwrap();
        // RDTSCP and RDPID would read the host's TSC_AUX: #UD (CPUID hides them).
        assert!(!c.secondary.contains(SecondaryProcessorBased::ENABLE_RDTSCP));
        assert!(c.secondary.contains(
            SecondaryProcessorBased::ENABLE_EPT
                | SecondaryProcessorBased::UNRESTRICTED_GUEST
                | SecondaryProcessorBased::ENABLE_VPID
        ));
        assert!(c.pin.contains(
            PinBased::EXTERNAL_INTERRUPT_EXITING | PinBased::NMI_EXITING | PinBased::VIRTUAL_NMIS
        ));
        assert!(c.primary.contains(
            PrimaryProcessorBased::HLT_EXITING
                | PrimaryProcessorBased::RDPMC_EXITING
                | PrimaryProcessorBased::USE_IO_BITMAPS
                | PrimaryProcessorBased::USE_MSR_BITMAPS
                | PrimaryProcessorBased::ACTIVATE_SECONDARY_CONTROLS
        ));
        // The TRUE controls let CR3 accesses run natively.
        assert!(!c.primary.intersects(
            PrimaryProcessorBased::CR3_LOAD_EXITING | PrimaryProcessorBased::CR3_STORE_EXITING
        ));
        assert!(c.exit.contains(
            ExitControls::HOST_ADDRESS_SPACE_SIZE
                | ExitControls::SAVE_IA32_EFER
                | ExitControls::LOAD_IA32_EFER
        ));
        assert!(c.entry.contains(EntryControls::LOAD_IA32_EFER));
        assert!(!c.entry.contains(EntryControls::IA32E_MODE_GUEST));
        // Bits the allowed-0 settings force on are kept (bit 1, 4-6, 8, 13-15, 26 of primary).
        assert_eq!(c.primary.bits() & 0x0400_6172, 0x0400_6172);
        assert_eq!(
            c.guest_cr0_must_be_one, 0x20,
            "only NE: unrestricted guest frees PE and PG"
        );
        assert_eq!(c.cr0_guest_host_mask() & 0x20, 0x20);
        assert_eq!(c.cr4_guest_host_mask() & CR4_VMXE, CR4_VMXE);
        // Skylake-X has SMEP (bit 20), not PKE (22): a VM without SMEP
        // owns it no more; PKE is fixed at 0 already.
        const SMEP: u64 = 1 << 20;
        const PKE: u64 = 1 << 22;
        assert_eq!(c.cr4_guest_host_mask() & (SMEP | PKE), PKE);
        assert_eq!(c.cr4_hidden(0x7f_ffff & !SMEP & !PKE), SMEP);
        assert_eq!(c.cr4_hidden(0x7f_ffff), 0);
        assert!(c.ins_outs_info);
        assert_eq!(c.invept_type, Some(1));
    }

    #[test]
    fn no_unrestricted_guest_is_refused_by_name() {
        let mut caps = skylake_x();
        caps.procbased2 &= !(u64::from(SecondaryProcessorBased::UNRESTRICTED_GUEST.bits()) << 32);
        let e = VmxControls::new(&caps).unwrap_err();
        assert_eq!(
            e,
            ControlError::CannotSet {
                field: ControlField::SecondaryProcessorBased,
                missing: SecondaryProcessorBased::UNRESTRICTED_GUEST.bits(),
                what: "unrestricted guest (needed to run real-mode code natively)",
            }
        );
        let text = alloc::format!("{e}");
        assert!(text.contains("unrestricted guest"), "{text}");
        assert!(text.contains("0x80"), "{text}");
    }

    #[test]
    fn no_virtual_nmis_is_refused_by_name() {
        let mut caps = skylake_x();
        caps.true_pinbased &= !(u64::from(PinBased::VIRTUAL_NMIS.bits()) << 32);
        assert_eq!(
            VmxControls::new(&caps),
            Err(ControlError::CannotSet {
                field: ControlField::PinBased,
                missing: PinBased::VIRTUAL_NMIS.bits(),
                what: "external-interrupt and NMI exiting, virtual NMIs",
            })
        );
    }

    #[test]
    fn no_ept_or_no_secondary_controls_is_refused() {
        let mut caps = skylake_x();
        caps.procbased2 &= !(u64::from(SecondaryProcessorBased::ENABLE_EPT.bits()) << 32);
        assert!(matches!(
            VmxControls::new(&caps),
            Err(ControlError::CannotSet {
                what: "EPT (extended page tables)",
                ..
            })
        ));
        let mut caps = skylake_x();
        caps.true_procbased &=
            !(u64::from(PrimaryProcessorBased::ACTIVATE_SECONDARY_CONTROLS.bits()) << 32);
        assert!(matches!(
            VmxControls::new(&caps),
            Err(ControlError::CannotSet {
                field: ControlField::PrimaryProcessorBased,
                ..
            })
        ));
        let mut caps = skylake_x();
        caps.ept_vpid &= !EPT_CAP_MEMORY_TYPE_WB;
        assert_eq!(
            VmxControls::new(&caps),
            Err(ControlError::Ept("write-back EPT paging structures"))
        );
    }

    #[test]
    fn adjustment_follows_allowed_settings() {
        // Allowed-0 forces bit 1; allowed-1 permits bits 0-3.
        let cap = 0x0000_000f_0000_0002;
        assert_eq!(
            adjust(ControlField::PinBased, cap, 0x1, 0x1, 0, ""),
            Ok(0x3)
        );
        // Bit 4 wanted but not required: dropped quietly.
        assert_eq!(
            adjust(ControlField::PinBased, cap, 0x11, 0x1, 0, ""),
            Ok(0x3)
        );
        assert_eq!(
            adjust(ControlField::PinBased, cap, 0x10, 0x10, 0, "x"),
            Err(ControlError::CannotSet {
                field: ControlField::PinBased,
                missing: 0x10,
                what: "x"
            })
        );
        assert_eq!(
            adjust(ControlField::Exit, cap, 0, 0, 0x2, ""),
            Err(ControlError::CannotClear {
                field: ControlField::Exit,
                bits: 0x2
            })
        );
    }

    #[test]
    fn capabilities_are_read_in_the_allowed_order() {
        let caps = skylake_x();
        let mut read = std::vec::Vec::new();
        let got = VmxCapabilities::read(|m| {
            read.push(m);
            match m {
                msr::IA32_VMX_BASIC => caps.basic,
                msr::IA32_VMX_PINBASED_CTLS => caps.pinbased,
                msr::IA32_VMX_PROCBASED_CTLS => caps.procbased,
                msr::IA32_VMX_EXIT_CTLS => caps.exit,
                msr::IA32_VMX_ENTRY_CTLS => caps.entry,
                msr::IA32_VMX_MISC => caps.misc,
                msr::IA32_VMX_CR0_FIXED0 => caps.cr0_fixed0,
                msr::IA32_VMX_CR0_FIXED1 => caps.cr0_fixed1,
                msr::IA32_VMX_CR4_FIXED0 => caps.cr4_fixed0,
                msr::IA32_VMX_CR4_FIXED1 => caps.cr4_fixed1,
                msr::IA32_VMX_PROCBASED_CTLS2 => caps.procbased2,
                msr::IA32_VMX_EPT_VPID_CAP => caps.ept_vpid,
                msr::IA32_VMX_TRUE_PINBASED_CTLS => caps.true_pinbased,
                msr::IA32_VMX_TRUE_PROCBASED_CTLS => caps.true_procbased,
                msr::IA32_VMX_TRUE_EXIT_CTLS => caps.true_exit,
                msr::IA32_VMX_TRUE_ENTRY_CTLS => caps.true_entry,
                _ => panic!("unexpected MSR {m:#x}"),
            }
        });
        assert_eq!(got, caps);
        // Without TRUE controls and without secondary controls, those MSRs are never read.
        let mut read = std::vec::Vec::new();
        let got = VmxCapabilities::read(|m| {
            read.push(m);
            match m {
                msr::IA32_VMX_BASIC => 0x0000_1000_0000_0001 | (6 << 50),
                msr::IA32_VMX_PROCBASED_CTLS => 0x7fff_ffff_0000_0000,
                _ => 0,
            }
        });
        assert!(!read.contains(&msr::IA32_VMX_TRUE_PROCBASED_CTLS));
        assert!(!read.contains(&msr::IA32_VMX_PROCBASED_CTLS2));
        assert!(!read.contains(&msr::IA32_VMX_EPT_VPID_CAP));
        assert_eq!(got.true_procbased, got.procbased);
        assert_eq!(got.revision_id(), 1);
        assert!(matches!(
            VmxControls::new(&got),
            Err(ControlError::CannotSet { .. })
        ));
    }
}
