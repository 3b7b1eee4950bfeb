//! The VMX instructions: the only code in the VMX backend that touches the CPU.
//!
//! VMXON, VMCLEAR, VMPTRLD, VMREAD, VMWRITE, INVEPT, VMLAUNCH and VMRESUME,
//! each reporting VMfailInvalid / VMfailValid as a [`VmxInstructionError`]
//! (SDM Vol 3C 31.2). Keel runs with RFLAGS.IF clear, so nothing is taken
//! between the entry stub's host-state writes and the VM entry.

use core::cell::Cell;

use alloc::boxed::Box;

use super::controls::{msr, VmxCapabilities, CR4_VMXE};
use super::decode::VmcsRead;
use super::diagnose::{entry_failure_detail, offending_field, pre_entry_check};
use super::instruction_error::VmxInstructionError;
use super::vcpu::{HostState, Vmcs, VmxVcpu};
use super::vmcs_field::VmcsField as F;
use crate::exit::VmExit;
use crate::vcpu::GuestGprs;

/// `VmExit::InvalidGuestState` detail bit: a VMX instruction failed (the low
/// 32 bits hold the VM-instruction error number, 0 for VMfailInvalid).
pub const DETAIL_INSTRUCTION_FAILED: u64 = 1 << 63;
/// `VmExit::InvalidGuestState` detail: Keel's own check found a guest state
/// the CPU would refuse ([`pre_entry_check`]); the guest was not entered.
pub const DETAIL_PRE_ENTRY_CHECK: u64 = 1 << 62;

/// IA32_FEATURE_CONTROL: lock (bit 0), VMX outside SMX (bit 2) (SDM 24.7).
const FEATURE_CONTROL_LOCK: u64 = 1 << 0;
const FEATURE_CONTROL_VMX_OUTSIDE_SMX: u64 = 1 << 2;
const MSR_IA32_PAT: u32 = 0x277;
const MSR_EFER: u32 = 0xc000_0080;
const MSR_FS_BASE: u32 = 0xc000_0100;
const MSR_GS_BASE: u32 = 0xc000_0101;

/// A 4 KiB VMXON region or VMCS (SDM 25.2, 25.11.5): the revision
/// identifier, then data only the processor interprets.
#[repr(C, align(4096))]
pub struct VmxRegion {
    bytes: [u8; 4096],
}

impl VmxRegion {
    /// A zeroed region with the VMCS revision identifier of `caps`.
    pub fn new(caps: &VmxCapabilities) -> Box<Self> {
        let mut r = Box::new(VmxRegion { bytes: [0; 4096] });
        r.bytes[..4].copy_from_slice(&caps.revision_id().to_le_bytes());
        r
    }
}

fn status(cf: u8, zf: u8) -> Result<(), VmxInstructionError> {
    if cf != 0 {
        Err(VmxInstructionError::FailInvalid)
    } else if zf != 0 {
        // SAFETY: VMfailValid means there is a current VMCS, so VMREAD of the
        // VM-instruction error field is defined.
        let n = unsafe { vmread(F::VmInstructionError.encoding()) }.unwrap_or(0);
        Err(VmxInstructionError::FailValid(n as u32))
    } else {
        Ok(())
    }
}

fn rdmsr(m: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called for architectural MSRs that exist on every VMX
    // processor (capability MSRs, FEATURE_CONTROL, EFER, PAT, FS/GS base).
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") m, out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Reads the VMX capability MSRs. Call only when CPUID.1:ECX.VMX is set.
pub fn capabilities() -> VmxCapabilities {
    VmxCapabilities::read(rdmsr)
}

/// IA32_FEATURE_CONTROL. Call only when CPUID.1:ECX.VMX is set.
pub fn feature_control() -> u64 {
    rdmsr(msr::IA32_FEATURE_CONTROL)
}

fn read_cr0() -> u64 {
    let v: u64;
    // SAFETY: reading a control register has no side effects.
    unsafe { core::arch::asm!("mov {}, cr0", out(reg) v, options(nomem, nostack)) };
    v
}

fn read_cr4() -> u64 {
    let v: u64;
    // SAFETY: reading a control register has no side effects.
    unsafe { core::arch::asm!("mov {}, cr4", out(reg) v, options(nomem, nostack)) };
    v
}

/// Whether CR4.VMXE is already set: someone else (a hypervisor below Keel,
/// or an earlier Keel) is using VMX on this CPU.
pub fn vmxe_in_use() -> bool {
    read_cr4() & CR4_VMXE != 0
}

/// Why VMX could not be turned on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EnableError {
    /// IA32_FEATURE_CONTROL is locked with VMX outside SMX disabled.
    LockedOff,
    /// CR4.VMXE was already set.
    AlreadyInUse,
    /// VMXON failed.
    Vmxon(VmxInstructionError),
}

impl core::fmt::Display for EnableError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            EnableError::LockedOff => write!(f, "VMX is locked off in IA32_FEATURE_CONTROL; enable Intel VT-x in the firmware setup"),
            EnableError::AlreadyInUse => write!(f, "CR4.VMXE is already set: another hypervisor is using VMX on this CPU"),
            EnableError::Vmxon(e) => write!(f, "VMXON failed: {e}"),
        }
    }
}

/// Turns VMX on: IA32_FEATURE_CONTROL (locked with VMX enabled if the
/// firmware left it unlocked), the CR0/CR4 fixed bits with CR4.VMXE, VMXON
/// (SDM 24.7, 24.8).
///
/// # Safety
/// The CPU must support VMX (CPUID) and `vmxon` must be a region that nothing
/// else uses for as long as VMX is on.
pub unsafe fn enable(
    caps: &VmxCapabilities,
    vmxon: &VmxRegion,
    phys: impl Fn(usize) -> u64,
) -> Result<(), EnableError> {
    if vmxe_in_use() {
        return Err(EnableError::AlreadyInUse);
    }
    let fc = feature_control();
    if fc & FEATURE_CONTROL_LOCK == 0 {
        // SAFETY: an unlocked FEATURE_CONTROL may be written once; setting the
        // lock with VMX enabled is what firmware would have done.
        unsafe {
            wrmsr(
                msr::IA32_FEATURE_CONTROL,
                fc | FEATURE_CONTROL_LOCK | FEATURE_CONTROL_VMX_OUTSIDE_SMX,
            )
        };
    } else if fc & FEATURE_CONTROL_VMX_OUTSIDE_SMX == 0 {
        return Err(EnableError::LockedOff);
    }
    let cr0 = (read_cr0() | caps.cr0_fixed0) & caps.cr0_fixed1;
    let cr4 = (read_cr4() | caps.cr4_fixed0 | CR4_VMXE) & caps.cr4_fixed1;
    // SAFETY: the fixed-0 bits of CR0 (PE, NE, PG) are already set in Keel's
    // long mode, and CR4.VMXE only enables VMX instructions.
    unsafe {
        core::arch::asm!("mov cr0, {}", in(reg) cr0, options(nostack));
        core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nostack));
        // CR4.OSFXSR/OSXSAVE and Keel's XCR0, for switching guests' state.
        crate::fpu::hw::enable();
    }
    let pa: u64 = phys(vmxon as *const VmxRegion as usize);
    let (cf, zf): (u8, u8);
    // SAFETY: VMXON with a page-aligned region carrying the revision
    // identifier; the caller keeps the region for as long as VMX is on.
    unsafe {
        core::arch::asm!("vmxon [{}]", "setc {}", "setz {}", in(reg) &pa, out(reg_byte) cf, out(reg_byte) zf, options(nostack));
    }
    status(cf, zf).map_err(EnableError::Vmxon)
}

/// # Safety
/// `value` must be valid for `m`.
unsafe fn wrmsr(m: u32, value: u64) {
    // SAFETY: guaranteed by the caller.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") m, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack))
    };
}

/// VMREAD of `encoding` from the current VMCS.
///
/// # Safety
/// VMX must be on (VMREAD outside VMX operation raises #UD).
pub unsafe fn vmread(encoding: u32) -> Result<u64, VmxInstructionError> {
    let (v, cf, zf): (u64, u8, u8);
    // SAFETY: the caller guarantees VMX operation; VMREAD only reads the current VMCS.
    unsafe {
        core::arch::asm!("vmread {}, {}", "setc {}", "setz {}", out(reg) v, in(reg) u64::from(encoding), out(reg_byte) cf, out(reg_byte) zf, options(nostack));
    }
    if cf != 0 {
        Err(VmxInstructionError::FailInvalid)
    } else if zf != 0 {
        Err(VmxInstructionError::FailValid(0))
    } else {
        Ok(v)
    }
}

/// VMWRITE of `value` to `encoding` in the current VMCS.
///
/// # Safety
/// VMX must be on, and the value must not make the VMCS point at memory the
/// guest may not reach (bitmap and EPT addresses).
pub unsafe fn vmwrite(encoding: u32, value: u64) -> Result<(), VmxInstructionError> {
    let (cf, zf): (u8, u8);
    // SAFETY: the caller guarantees VMX operation and a harmless value.
    unsafe {
        core::arch::asm!("vmwrite {}, {}", "setc {}", "setz {}", in(reg) u64::from(encoding), in(reg) value, out(reg_byte) cf, out(reg_byte) zf, options(nostack));
    }
    status(cf, zf)
}

/// INVEPT of type `kind` (1 single-context, 2 all-context) for `eptp`.
///
/// # Safety
/// VMX must be on and the type supported (IA32_VMX_EPT_VPID_CAP).
pub unsafe fn invept(kind: u64, eptp: u64) -> Result<(), VmxInstructionError> {
    let desc: [u64; 2] = [eptp, 0];
    let (cf, zf): (u8, u8);
    // SAFETY: the caller guarantees VMX operation and a supported type; the
    // descriptor is a 16-byte local.
    unsafe {
        core::arch::asm!("invept {}, [{}]", "setc {}", "setz {}", in(reg) kind, in(reg) &desc, out(reg_byte) cf, out(reg_byte) zf, options(nostack));
    }
    status(cf, zf)
}

/// Keel's host state, read from the CPU: control registers, selectors,
/// descriptor-table bases, the TSS base from its GDT descriptor, FS/GS base,
/// EFER and PAT.
pub fn host_state() -> HostState {
    let (cr3, cs, ss, ds, es, fs, gs, tr): (u64, u16, u16, u16, u16, u16, u16, u16);
    let mut gdtr = [0u8; 10];
    let mut idtr = [0u8; 10];
    // SAFETY: reads registers and stores the descriptor-table registers into
    // the two 10-byte locals; no side effects.
    unsafe {
        core::arch::asm!(
            "mov {cr3}, cr3",
            "mov {cs:x}, cs", "mov {ss:x}, ss", "mov {ds:x}, ds", "mov {es:x}, es",
            "mov {fs:x}, fs", "mov {gs:x}, gs", "str {tr:x}",
            "sgdt [{g}]", "sidt [{i}]",
            cr3 = out(reg) cr3, cs = out(reg) cs, ss = out(reg) ss, ds = out(reg) ds, es = out(reg) es,
            fs = out(reg) fs, gs = out(reg) gs, tr = out(reg) tr,
            g = in(reg) gdtr.as_mut_ptr(), i = in(reg) idtr.as_mut_ptr(),
            options(nostack),
        );
    }
    let gdtr_base = u64::from_le_bytes(gdtr[2..10].try_into().unwrap_or([0; 8]));
    let idtr_base = u64::from_le_bytes(idtr[2..10].try_into().unwrap_or([0; 8]));
    let gdt_limit = u64::from(u16::from_le_bytes([gdtr[0], gdtr[1]]));
    let index = u64::from(tr & !7);
    let tr_base = if tr != 0 && index + 15 <= gdt_limit {
        // SAFETY: the 16-byte TSS descriptor lies within the loaded GDT (checked
        // against its limit), which Keel keeps mapped for its whole run.
        let d = unsafe { core::ptr::read_unaligned((gdtr_base + index) as *const [u8; 16]) };
        u64::from(d[2])
            | u64::from(d[3]) << 8
            | u64::from(d[4]) << 16
            | u64::from(d[7]) << 24
            | u64::from(u32::from_le_bytes([d[8], d[9], d[10], d[11]])) << 32
    } else {
        0
    };
    HostState {
        cr0: read_cr0(),
        cr3,
        cr4: read_cr4(),
        cs,
        ss,
        ds,
        es,
        fs,
        gs,
        tr,
        fs_base: rdmsr(MSR_FS_BASE),
        gs_base: rdmsr(MSR_GS_BASE),
        tr_base,
        gdtr_base,
        idtr_base,
        efer: rdmsr(MSR_EFER),
        pat: rdmsr(MSR_IA32_PAT),
    }
}

/// The current VMCS, reached with VMREAD and VMWRITE. Owns its region.
pub struct HwVmcs {
    _region: Box<VmxRegion>,
    /// The region's physical address, for VMPTRLD in [`HwVmcs::make_current`].
    pa: u64,
    error: Cell<Option<(F, VmxInstructionError)>>,
}

impl HwVmcs {
    /// VMCLEARs `region` and makes it the current VMCS (SDM 25.11.3).
    ///
    /// # Safety
    /// VMX must be on, and `region` must carry the revision identifier.
    pub unsafe fn load(
        region: Box<VmxRegion>,
        phys: impl Fn(usize) -> u64,
    ) -> Result<Self, VmxInstructionError> {
        let pa = phys(&*region as *const VmxRegion as usize);
        let (cf, zf): (u8, u8);
        // SAFETY: VMX is on (caller); the region is page-aligned, owned here and
        // never used for anything else.
        unsafe {
            core::arch::asm!("vmclear [{}]", "setc {}", "setz {}", in(reg) &pa, out(reg_byte) cf, out(reg_byte) zf, options(nostack));
        }
        status(cf, zf)?;
        let (cf, zf): (u8, u8);
        // SAFETY: as above; the region was just cleared.
        unsafe {
            core::arch::asm!("vmptrld [{}]", "setc {}", "setz {}", in(reg) &pa, out(reg_byte) cf, out(reg_byte) zf, options(nostack));
        }
        status(cf, zf)?;
        Ok(HwVmcs {
            _region: region,
            pa,
            error: Cell::new(None),
        })
    }

    /// Makes this VMCS the current one again (VMPTRLD, SDM Vol 3C 25.11.1,
    /// 31.3), after another vCPU's VMCS was made current on this CPU (the
    /// scheduler ran another vCPU here). Its launch state is kept, so the
    /// next entry is still a VMRESUME. A VMCS stays on the CPU it was loaded
    /// on: it is never VMCLEARed for another CPU (Keel does not migrate vCPUs).
    pub fn make_current(&self) -> Result<(), VmxInstructionError> {
        let (cf, zf): (u8, u8);
        // SAFETY: VMX is on (an HwVmcs exists only then) and the region was
        // loaded on this CPU by `load` and is owned by `self`.
        unsafe {
            core::arch::asm!("vmptrld [{}]", "setc {}", "setz {}", in(reg) &self.pa, out(reg_byte) cf, out(reg_byte) zf, options(nostack));
        }
        status(cf, zf)
    }

    fn record(&self, field: F, e: VmxInstructionError) {
        if self.error.get().is_none() {
            self.error.set(Some((field, e)));
        }
    }
}

impl VmcsRead for HwVmcs {
    fn read(&self, field: F) -> u64 {
        // SAFETY: an HwVmcs exists only while VMX is on and it is current.
        match unsafe { vmread(field.encoding()) } {
            Ok(v) => v,
            Err(e) => {
                self.record(field, e);
                0
            }
        }
    }
}

impl Vmcs for HwVmcs {
    fn write(&mut self, field: F, value: u64) {
        // SAFETY: VMX is on and this VMCS is current; every address Keel writes
        // (bitmaps, EPTP) is checked by VmxVcpu::new's contract.
        if let Err(e) = unsafe { vmwrite(field.encoding(), value) } {
            self.record(field, e);
        }
    }

    fn take_error(&mut self) -> Option<(F, VmxInstructionError)> {
        self.error.take()
    }
}

core::arch::global_asm!(
    ".pushsection .text.keel_vmx_run, \"ax\"",
    ".global keel_vmx_run",
    "keel_vmx_run:",
    // rdi = *mut GuestGprs, rsi = 0 for VMLAUNCH, 1 for VMRESUME.
    // Returns 0 after a VM exit, 1 on VMfailValid, 2 on VMfailInvalid.
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdi",
    "mov rax, 0x6c14", // HOST_RSP: the stack as it is now
    "vmwrite rax, rsp",
    "jbe 5f",
    "lea rdx, [rip + 3f]",
    "mov rax, 0x6c16", // HOST_RIP
    "vmwrite rax, rdx",
    "jbe 5f",
    "cmp rsi, 0",
    "mov rax, [rdi + 0]",
    "mov rbx, [rdi + 8]",
    "mov rcx, [rdi + 16]",
    "mov rdx, [rdi + 24]",
    "mov rsi, [rdi + 32]",
    "mov rbp, [rdi + 48]",
    "mov r8, [rdi + 56]",
    "mov r9, [rdi + 64]",
    "mov r10, [rdi + 72]",
    "mov r11, [rdi + 80]",
    "mov r12, [rdi + 88]",
    "mov r13, [rdi + 96]",
    "mov r14, [rdi + 104]",
    "mov r15, [rdi + 112]",
    "mov rdi, [rdi + 40]",
    "jne 4f",
    "vmlaunch",
    "jmp 5f",
    "4:",
    "vmresume",
    // VMLAUNCH / VMRESUME / VMWRITE fell through: CF=1 VMfailInvalid, ZF=1 VMfailValid.
    "5:",
    "mov eax, 1",
    "jnc 6f",
    "mov eax, 2",
    "6:",
    "pop rdi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    // VM exit: RSP is HOST_RSP, with the GuestGprs pointer on top.
    "3:",
    "xchg rdi, [rsp]",
    "mov [rdi + 0], rax",
    "mov [rdi + 8], rbx",
    "mov [rdi + 16], rcx",
    "mov [rdi + 24], rdx",
    "mov [rdi + 32], rsi",
    "mov [rdi + 48], rbp",
    "mov [rdi + 56], r8",
    "mov [rdi + 64], r9",
    "mov [rdi + 72], r10",
    "mov [rdi + 80], r11",
    "mov [rdi + 88], r12",
    "mov [rdi + 96], r13",
    "mov [rdi + 104], r14",
    "mov [rdi + 112], r15",
    "pop rax",
    "mov [rdi + 40], rax",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "xor eax, eax",
    "ret",
    ".popsection",
);

extern "C" {
    fn keel_vmx_run(gprs: *mut GuestGprs, resume: u64) -> u64;
}

/// Logs a failed VM entry or VMX instruction in words, with the field the
/// VM-entry checks point at where one is found, and returns the stop.
fn entry_failed(vcpu: &VmxVcpu<HwVmcs>, what: &str, e: VmxInstructionError) -> VmExit {
    log::error!("{what} failed: {e}");
    if let Some((field, why)) = offending_field(vcpu.vmcs(), vcpu.controls()) {
        log::error!(
            "the VMCS field {} ({:#06x}) {why}",
            field.name(),
            field.encoding()
        );
    }
    let n = match e {
        VmxInstructionError::FailInvalid => 0,
        VmxInstructionError::FailValid(n) => u64::from(n),
    };
    VmExit::InvalidGuestState {
        detail: DETAIL_INSTRUCTION_FAILED | n,
    }
}

/// Enters the guest and runs it until the next VM exit, decoded. A failed
/// VMWRITE, INVEPT, VMLAUNCH or VMRESUME, or a failed VM entry, is logged in
/// words and returned as `VmExit::InvalidGuestState`, which stops the VM.
///
/// # Safety
/// The contract of [`VmxVcpu::new`]: VMX on, this VMCS current, EPT and
/// bitmaps valid and confined to this guest.
pub unsafe fn run(vcpu: &mut VmxVcpu<HwVmcs>) -> VmExit {
    vcpu.sync_entry_controls();
    // A guest state the CPU would refuse stops the VM here, with the field
    // named, rather than as a failed entry.
    if let Some((field, why)) = pre_entry_check(vcpu.vmcs(), vcpu.controls()) {
        log::error!(
            "not entering the guest: the VMCS field {} ({:#06x}) {why}",
            field.name(),
            field.encoding()
        );
        return VmExit::InvalidGuestState {
            detail: DETAIL_PRE_ENTRY_CHECK,
        };
    }
    if let Some((field, e)) = vcpu.vmcs.take_error() {
        return entry_failed(
            vcpu,
            &alloc::format!(
                "VMREAD/VMWRITE of {} ({:#06x})",
                field.name(),
                field.encoding()
            ),
            e,
        );
    }
    if vcpu.flush_pending {
        if let Some(kind) = vcpu.controls().invept_type {
            // SAFETY: VMX is on and the type is one the CPU reports.
            if let Err(e) = unsafe { invept(kind, vcpu.vmcs.read(F::EptPointer)) } {
                return entry_failed(vcpu, "INVEPT", e);
            }
        }
        vcpu.flush_pending = false;
    }
    if let Some(status) = vcpu.pending_debug_status.take() {
        let old: u64;
        // SAFETY: VMX does not switch DR6 and Keel uses no debug registers:
        // the register holds the guest's DR6, which the #DB it is about to
        // be given updates as the CPU would have (SDM Vol 3A 17.2.3).
        unsafe {
            core::arch::asm!("mov {}, dr6", out(reg) old, options(nostack, nomem));
            let new = crate::exit::dr6_after_debug_exception(old, status);
            core::arch::asm!("mov dr6, {}", in(reg) new, options(nostack, nomem));
        }
    }
    if let Some(cr2) = vcpu.pending_cr2.take() {
        // SAFETY: VMX does not switch CR2; Keel itself never reads it except
        // when reporting its own page fault.
        unsafe { core::arch::asm!("mov cr2, {}", in(reg) cr2, options(nostack, nomem)) };
    }
    let what = if vcpu.launched {
        "VMRESUME"
    } else {
        "VMLAUNCH"
    };
    // SAFETY: the caller's contract; the GPR block is owned by `vcpu`.
    // The registers VM entry does not switch: the guest's in, Keel's back
    // after the exit (`crate::fpu`); Keel uses none of them in between.
    let r = unsafe {
        crate::fpu::hw::enter(&vcpu.fpu);
        let r = keel_vmx_run(&mut vcpu.gprs, u64::from(vcpu.launched));
        crate::fpu::hw::leave(&mut vcpu.fpu);
        r
    };
    match r {
        0 => {}
        1 => {
            // SAFETY: VMfailValid: the VMCS is current.
            let n = unsafe { vmread(F::VmInstructionError.encoding()) }.unwrap_or(0) as u32;
            return entry_failed(vcpu, what, VmxInstructionError::FailValid(n));
        }
        _ => return entry_failed(vcpu, what, VmxInstructionError::FailInvalid),
    }
    vcpu.launched = true;
    vcpu.after_exit();
    let exit = vcpu.exit();
    if let VmExit::InvalidGuestState { detail } = exit {
        let reason = detail as u32;
        let basic = super::exit_reason::ExitReason::from_basic(reason as u16);
        log::error!(
            "VM entry failed: exit reason {} ({}): {}",
            reason & 0xffff,
            basic.map_or("unknown", |b| b.description()),
            entry_failure_detail(reason, detail >> 32)
        );
        if let Some((field, why)) = offending_field(vcpu.vmcs(), vcpu.controls()) {
            log::error!(
                "the VMCS field {} ({:#06x}) {why}",
                field.name(),
                field.encoding()
            );
        }
    }
    exit
}
