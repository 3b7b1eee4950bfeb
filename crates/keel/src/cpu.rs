//! Which hardware virtualization this CPU offers, and why not when it does not.

use core::fmt;
use raw_cpuid::native_cpuid::cpuid_count;

/// AMD VM_CR MSR; bit 4 (SVMDIS) set means firmware disabled SVM (APM Vol 2, 15.30.1).
const MSR_VM_CR: u32 = 0xc001_0114;
const VM_CR_SVMDIS: u64 = 1 << 4;
/// IA32_FEATURE_CONTROL: lock (bit 0) and VMX outside SMX (bit 2) (SDM Vol 3C 24.7).
const MSR_IA32_FEATURE_CONTROL: u32 = 0x3a;

/// What the SVM backend can use on this CPU (CPUID Fn8000_000A).
#[derive(Debug, Clone, Copy)]
pub struct SvmCaps {
    pub nrip_save: bool,
    pub huge_pages: bool,
}

/// Why no backend can run here.
#[derive(Debug, Clone, Copy)]
pub enum Unavailable {
    NoExtensions,
    SvmDisabledByFirmware,
    SvmWithoutNestedPaging,
    VmxNotYetSupported { locked_off: bool },
}

impl fmt::Display for Unavailable {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Unavailable::NoExtensions => write!(
                f,
                "this CPU has neither AMD SVM nor Intel VMX (CPUID); under QEMU use -cpu qemu64,+svm,+npt or -cpu max"
            ),
            Unavailable::SvmDisabledByFirmware => write!(
                f,
                "AMD SVM is present but disabled by firmware (VM_CR.SVMDIS); enable SVM / AMD-V in the firmware setup"
            ),
            Unavailable::SvmWithoutNestedPaging => write!(
                f,
                "AMD SVM is present but without nested paging (CPUID Fn8000_000A EDX[0]); Keel needs NPT (under QEMU add +npt)"
            ),
            Unavailable::VmxNotYetSupported { locked_off: true } => write!(
                f,
                "this is an Intel VMX CPU, and VMX is locked off by firmware in IA32_FEATURE_CONTROL; Keel's VMX backend is also not built yet"
            ),
            Unavailable::VmxNotYetSupported { locked_off: false } => {
                write!(f, "this is an Intel VMX CPU; Keel's VMX backend is not built yet, only SVM runs guests")
            }
        }
    }
}

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called for MSRs that CPUID said exist (VM_CR with SVM,
    // FEATURE_CONTROL with VMX).
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Detects SVM with nested paging.
pub fn detect() -> Result<SvmCaps, Unavailable> {
    let max_ext = cpuid_count(0x8000_0000, 0).eax;
    let svm = max_ext >= 0x8000_0001 && cpuid_count(0x8000_0001, 0).ecx & (1 << 2) != 0;
    if svm {
        if rdmsr(MSR_VM_CR) & VM_CR_SVMDIS != 0 {
            return Err(Unavailable::SvmDisabledByFirmware);
        }
        let features = if max_ext >= 0x8000_000a {
            cpuid_count(0x8000_000a, 0).edx
        } else {
            0
        };
        if features & 1 == 0 {
            return Err(Unavailable::SvmWithoutNestedPaging);
        }
        let huge_pages = cpuid_count(0x8000_0001, 0).edx & (1 << 26) != 0;
        return Ok(SvmCaps {
            nrip_save: features & (1 << 3) != 0,
            huge_pages,
        });
    }
    if cpuid_count(1, 0).ecx & (1 << 5) != 0 {
        let fc = rdmsr(MSR_IA32_FEATURE_CONTROL);
        let locked_off = fc & 1 != 0 && fc & (1 << 2) == 0;
        return Err(Unavailable::VmxNotYetSupported { locked_off });
    }
    Err(Unavailable::NoExtensions)
}

/// The host CPU's CPUID, for building a guest's CPUID policy.
pub fn host_cpuid(leaf: u32, subleaf: u32) -> vmm_core::exit::CpuidResult {
    let r = cpuid_count(leaf, subleaf);
    vmm_core::exit::CpuidResult {
        eax: r.eax,
        ebx: r.ebx,
        ecx: r.ecx,
        edx: r.edx,
    }
}
