//! Which hardware virtualization this CPU offers, and why not when it does not.

use core::fmt;
use raw_cpuid::native_cpuid::cpuid_count;
use vmm_core::vmx::{self, ControlError, VmxControls};

/// AMD VM_CR MSR; bit 4 (SVMDIS) set means firmware disabled SVM (APM Vol 2, 15.30.1).
const MSR_VM_CR: u32 = 0xc001_0114;
const VM_CR_SVMDIS: u64 = 1 << 4;
/// IA32_FEATURE_CONTROL: lock (bit 0) and VMX outside SMX (bit 2) (SDM Vol 3C 24.7).
const MSR_IA32_FEATURE_CONTROL: u32 = 0x3a;

/// What the SVM backend can use on this CPU (CPUID Fn8000_000A).
#[derive(Debug, Clone, Copy)]
pub struct SvmCaps {
    pub nrip_save: bool,
    pub decode_assists: bool,
    pub huge_pages: bool,
    /// TLB_CONTROL may flush one ASID (CPUID Fn8000_000A EDX[6] FlushByAsid).
    pub flush_by_asid: bool,
}

/// The backend this CPU runs guests with.
#[derive(Debug, Clone, Copy)]
pub enum Backend {
    /// AMD SVM with nested paging.
    Svm(SvmCaps),
    /// Intel VMX with EPT and unrestricted guest, with the controls fitted to this CPU.
    Vmx(VmxControls),
}

/// Why no backend can run here.
#[derive(Debug, Clone, Copy)]
pub enum Unavailable {
    NoExtensions,
    SvmDisabledByFirmware,
    SvmWithoutNestedPaging,
    /// IA32_FEATURE_CONTROL is locked with VMX outside SMX off.
    VmxLockedOff,
    /// CR4.VMXE is already set: something else is using VMX.
    VmxInUse,
    /// VMX lacks a feature Keel needs (EPT, unrestricted guest, ...).
    VmxMissing(ControlError),
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
            Unavailable::VmxLockedOff => write!(
                f,
                "Intel VMX is present but locked off by firmware in IA32_FEATURE_CONTROL (lock set, VMX outside SMX clear); enable Intel VT-x in the firmware setup"
            ),
            Unavailable::VmxInUse => write!(
                f,
                "Intel VMX is already in use on this CPU (CR4.VMXE is set): Keel must be the only hypervisor; under a nested hypervisor, give the VM VT-x and do not start another one inside"
            ),
            Unavailable::VmxMissing(e) => write!(
                f,
                "{e}; Keel needs VMX with EPT and unrestricted guest (Intel Westmere or later; under Bochs use cpu: model=corei7_skylake_x)"
            ),
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

/// Detects SVM with nested paging, or VMX with EPT and unrestricted guest.
pub fn detect() -> Result<Backend, Unavailable> {
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
        return Ok(Backend::Svm(SvmCaps {
            nrip_save: features & (1 << 3) != 0,
            decode_assists: features & (1 << 7) != 0,
            huge_pages,
            flush_by_asid: features & (1 << 6) != 0,
        }));
    }
    if cpuid_count(1, 0).ecx & (1 << 5) != 0 {
        let fc = rdmsr(MSR_IA32_FEATURE_CONTROL);
        if fc & 1 != 0 && fc & (1 << 2) == 0 {
            return Err(Unavailable::VmxLockedOff);
        }
        if vmx::hw::vmxe_in_use() {
            return Err(Unavailable::VmxInUse);
        }
        let caps = vmx::hw::capabilities();
        log::info!(
            "VMX capabilities: basic {:#x} pin {:#x}/{:#x} proc {:#x}/{:#x} proc2 {:#x} exit {:#x}/{:#x} entry {:#x}/{:#x} misc {:#x} cr0 {:#x}/{:#x} cr4 {:#x}/{:#x} ept/vpid {:#x}",
            caps.basic, caps.pinbased, caps.true_pinbased, caps.procbased, caps.true_procbased,
            caps.procbased2, caps.exit, caps.true_exit, caps.entry, caps.true_entry, caps.misc,
            caps.cr0_fixed0, caps.cr0_fixed1, caps.cr4_fixed0, caps.cr4_fixed1, caps.ept_vpid
        );
        return VmxControls::new(&caps)
            .map(Backend::Vmx)
            .map_err(Unavailable::VmxMissing);
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

/// Turns the virtualization extensions on, on the CPU this runs on: the
/// SVM host-save area (APM Vol 2, 15.30.4, VM_HSAVE_PA) or the VMXON
/// region (SDM Vol 3C 24.11.5), one per CPU, set up once for the rest of
/// Keel's run; every VM this CPU runs later uses it.
pub fn enable_this_cpu(backend: Backend) -> Result<(), alloc::string::String> {
    match backend {
        Backend::Svm(_) => {
            let hsave: &'static vmm_core::svm::Vmcb =
                alloc::boxed::Box::leak(alloc::boxed::Box::default());
            // SAFETY: SVM was detected with SVMDIS clear (`detect`, the same
            // on every CPU of the machine), and the host save page is
            // leaked, so nothing else will ever use it; each CPU gets its own.
            unsafe { vmm_core::svm::hw::enable(hsave as *const vmm_core::svm::Vmcb as u64) };
            Ok(())
        }
        Backend::Vmx(controls) => {
            let vmxon: &'static vmx::hw::VmxRegion =
                alloc::boxed::Box::leak(vmx::hw::VmxRegion::new(&controls.caps));
            // SAFETY: CPUID reported VMX (`detect`), and the VMXON region is
            // leaked, so nothing else will ever use it; each CPU gets its own.
            unsafe { vmx::hw::enable(&controls.caps, vmxon, |va| va as u64) }
                .map_err(|e| alloc::format!("turning VMX on: {e}"))
        }
    }
}

/// The next address-space tag: ASIDs (SVM, APM Vol 2 15.16) and VPIDs (VMX,
/// SDM Vol 3C 28.1) are handed out once per vCPU and never reused while
/// Keel runs, so no vCPU can find another's translations tagged with its
/// own tag (a new vCPU's first entry flushes its tag anyway). 0 is the host's.
static NEXT_TAG: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(1);

/// A fresh ASID or VPID for a new vCPU, below `limit` (SVM: CPUID
/// Fn8000_000A EBX, the number of ASIDs; VMX: 2^16 VPIDs), or `None` when
/// Keel has handed them all out.
pub fn allocate_tag(limit: u32) -> Option<u32> {
    use core::sync::atomic::Ordering;
    let tag = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
    (tag < limit).then_some(tag)
}

/// The number of SVM ASIDs this CPU has (CPUID Fn8000_000A EBX).
pub fn svm_asid_count() -> u32 {
    cpuid_count(0x8000_000a, 0).ebx
}
