//! The SVM instructions: the only code in vmm-core that touches the CPU.
//!
//! `run` brackets VMRUN with VMSAVE/VMLOAD (APM Vol 2, 15.5.2): VMRUN itself
//! switches only part of the state, so the host's FS/GS/TR/LDTR, KernelGsBase
//! and SYSCALL/SYSENTER MSRs are saved to a host save page and the guest's are
//! loaded from its VMCB, and the reverse after #VMEXIT. GIF is clear for the
//! whole sequence. VMRUN runs with the host's RFLAGS.IF set, so that a host
//! interrupt (Keel's timer, armed for the next device deadline) ends the
//! guest's run through the INTR intercept (V_INTR_MASKING: the host's IF
//! decides, APM Vol 2 15.21.1); one instruction separates STI from VMRUN,
//! since QEMU TCG would carry STI's interrupt shadow into the guest. IF is
//! cleared again before GIF is set, so the interrupt stays pending until the
//! VM loop takes it.
//!
//! Before VMRUN, Keel's CR4.PSE, PGE, SMEP and SMAP take the guest's values
//! ([`follow_guest_paging_bits`]).

use super::vcpu::{SvmVcpu, EFER_SVME};
use super::vmcb::save;
use crate::exit::VmExit;
use crate::vcpu::GuestGprs;
use core::sync::atomic::{AtomicU64, Ordering};

const MSR_EFER: u32 = 0xc000_0080;
/// VM_HSAVE_PA: where VMRUN saves host state (APM Vol 2, 15.30.4).
const MSR_VM_HSAVE_PA: u32 = 0xc001_0117;

core::arch::global_asm!(
    ".pushsection .text.keel_svm_run, \"ax\"",
    ".global keel_svm_run",
    "keel_svm_run:",
    // rdi = VMCB PA, rsi = host save page PA, rdx = *mut GuestGprs
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "push rdx",
    "push rsi",
    "push rdi",
    "clgi",
    "mov rax, rsi",
    "vmsave rax",
    "mov rax, [rsp]",
    "vmload rax",
    "mov rax, [rsp + 16]",
    "mov rbx, [rax + 8]",
    "mov rcx, [rax + 16]",
    "mov rdx, [rax + 24]",
    "mov rsi, [rax + 32]",
    "mov rdi, [rax + 40]",
    "mov rbp, [rax + 48]",
    "mov r8, [rax + 56]",
    "mov r9, [rax + 64]",
    "mov r10, [rax + 72]",
    "mov r11, [rax + 80]",
    "mov r12, [rax + 88]",
    "mov r13, [rax + 96]",
    "mov r14, [rax + 104]",
    "mov r15, [rax + 112]",
    "sti",
    "mov rax, [rsp]",
    "vmrun rax",
    // #VMEXIT: RSP and RAX are the host's again, GIF is clear.
    "cli",
    "mov rax, [rsp + 16]",
    "mov [rax + 8], rbx",
    "mov [rax + 16], rcx",
    "mov [rax + 24], rdx",
    "mov [rax + 32], rsi",
    "mov [rax + 40], rdi",
    "mov [rax + 48], rbp",
    "mov [rax + 56], r8",
    "mov [rax + 64], r9",
    "mov [rax + 72], r10",
    "mov [rax + 80], r11",
    "mov [rax + 88], r12",
    "mov [rax + 96], r13",
    "mov [rax + 104], r14",
    "mov [rax + 112], r15",
    "mov rax, [rsp]",
    "vmsave rax",
    "mov rax, [rsp + 8]",
    "vmload rax",
    "stgi",
    "add rsp, 24",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
    ".popsection",
);

extern "C" {
    fn keel_svm_run(vmcb_pa: u64, host_save_pa: u64, gprs: *mut GuestGprs);
}

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: reads an architectural MSR that exists on every CPU with SVM;
    // callers only run after SVM was detected.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// # Safety
/// `value` must be valid for `msr` and must not break the invariants Keel relies on.
unsafe fn wrmsr(msr: u32, value: u64) {
    // SAFETY: the caller guarantees the value is valid for this MSR.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") msr, in("eax") value as u32, in("edx") (value >> 32) as u32, options(nostack))
    };
}

const CR4_PSE: u64 = 1 << 4;
const CR4_PGE: u64 = 1 << 7;
const CR4_SMEP: u64 = 1 << 20;
const CR4_SMAP: u64 = 1 << 21;

/// The CR4 bits Keel's CR4 may copy from a guest's: PSE and PGE, and SMEP
/// and SMAP where the CPU has them (CPUID leaf 7 EBX[7], EBX[20]). Set by
/// [`enable`]; the same on every CPU.
static FOLLOWED_CR4: AtomicU64 = AtomicU64::new(0);

/// The bits of [`FOLLOWED_CR4`] on a CPU whose CPUID leaf 7 sub-leaf 0
/// EBX is `leaf7_ebx` (0 without the leaf).
fn followable_cr4(leaf7_ebx: u32) -> u64 {
    let mut bits = CR4_PSE | CR4_PGE;
    if leaf7_ebx & (1 << 7) != 0 {
        bits |= CR4_SMEP;
    }
    if leaf7_ebx & (1 << 20) != 0 {
        bits |= CR4_SMAP;
    }
    bits
}

/// This CPU's CPUID leaf 7 sub-leaf 0 EBX, or 0 without the leaf.
fn leaf7_ebx() -> u32 {
    use crate::fpu::hw::cpuid;
    if cpuid(0, 0).eax >= 7 {
        cpuid(7, 0).ebx
    } else {
        0
    }
}

/// Keel's CR4 `host` with the `followed` bits taken from the guest's CR4.
fn with_guest_paging_bits(host: u64, guest_cr4: u64, followed: u64) -> u64 {
    (host & !followed) | (guest_cr4 & followed)
}

/// Gives Keel's CR4 the guest's PSE, PGE, SMEP and SMAP, if they differ.
///
/// None of them changes what Keel's own code does: no entry of its page
/// tables is a user page (SMEP, SMAP; APM Vol 2 5.6) or global (PGE), and
/// PSE is ignored under PAE paging (APM Vol 2 5.2.3). But an SVM
/// implementation may drop its translations at VMRUN and #VMEXIT when the
/// host's and the guest's paging bits differ: QEMU's software SVM flushes its
/// whole TLB and translated-code jump cache at both, for every exit. The
/// guest's CR4 changes a few times per boot (Keel intercepts those writes),
/// so the write here is rare.
///
/// # Safety
/// Runs in ring 0 of Keel, whose page tables have no user or global pages.
unsafe fn follow_guest_paging_bits(guest_cr4: u64) {
    let followed = FOLLOWED_CR4.load(Ordering::Relaxed);
    let host: u64;
    // SAFETY: reading CR4 in ring 0.
    unsafe { core::arch::asm!("mov {}, cr4", out(reg) host, options(nomem, nostack)) };
    let wanted = with_guest_paging_bits(host, guest_cr4, followed);
    if wanted != host {
        // SAFETY: only bits this CPU has change, and (the caller's contract)
        // none of them changes a translation or a permission Keel uses.
        unsafe { core::arch::asm!("mov cr4, {}", in(reg) wanted, options(nomem, nostack)) };
    }
}

/// Turns SVM on for this CPU: EFER.SVME and the host save area.
///
/// # Safety
/// The CPU must support SVM with SVMDIS clear (checked by the caller), and
/// `hsave_pa` must be a 4 KiB page that nothing else uses for as long as SVM
/// is on.
pub unsafe fn enable(hsave_pa: u64) {
    // SAFETY: guaranteed by this function's contract.
    unsafe {
        wrmsr(MSR_EFER, rdmsr(MSR_EFER) | EFER_SVME);
        wrmsr(MSR_VM_HSAVE_PA, hsave_pa);
        crate::fpu::hw::enable();
    }
    FOLLOWED_CR4.store(followable_cr4(leaf7_ebx()), Ordering::Relaxed);
}

/// Runs the guest until the next #VMEXIT and decodes it.
///
/// # Safety
/// [`enable`] must have run on this CPU, and the VMCB's IOPM, MSRPM and
/// nested page table addresses must point at structures that stay alive and
/// map only memory that belongs to this guest; Keel's page tables must have
/// no user or global pages.
pub unsafe fn run(vcpu: &mut SvmVcpu) -> VmExit {
    // SAFETY: the VMCB and host save page are owned by `vcpu` and page-aligned
    // (Box<Vmcb>), their physical addresses were computed at construction, and
    // the caller guarantees the rest of this function's contract.
    unsafe {
        follow_guest_paging_bits(vcpu.vmcb.read_u64(save::CR4));
        // The registers VMRUN does not switch: the guest's in, Keel's back
        // after #VMEXIT (`crate::fpu`); Keel uses none of them in between.
        crate::fpu::hw::enter(&vcpu.fpu);
        keel_svm_run(vcpu.vmcb_pa, vcpu.host_save_pa, &mut vcpu.gprs);
        crate::fpu::hw::leave(&mut vcpu.fpu);
    };
    vcpu.after_exit();
    vcpu.exit()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CR4_PAE: u64 = 1 << 5;
    const CR4_OSXSAVE: u64 = 1 << 18;
    const CR4_LA57: u64 = 1 << 12;

    #[test]
    fn only_pse_pge_smep_and_smap_follow_the_guest_where_the_cpu_has_them() {
        let all = followable_cr4((1 << 7) | (1 << 20));
        assert_eq!(all, CR4_PSE | CR4_PGE | CR4_SMEP | CR4_SMAP);
        assert_eq!(followable_cr4(0), CR4_PSE | CR4_PGE, "no SMEP, no SMAP");
        // Keel's PAE and OSXSAVE stay whatever the guest has; LA57 never
        // follows (Keel's paging is 4-level).
        let host = CR4_PAE | CR4_OSXSAVE;
        let linux = CR4_PSE | CR4_PAE | CR4_PGE | CR4_SMEP | CR4_SMAP | CR4_LA57;
        assert_eq!(
            with_guest_paging_bits(host, linux, all),
            host | CR4_PSE | CR4_PGE | CR4_SMEP | CR4_SMAP
        );
        // A real-mode guest (CR4 0) takes them away again.
        assert_eq!(with_guest_paging_bits(host | all, 0, all), host);
        // Without SMAP on the CPU, a guest's SMAP bit is not copied.
        let no_smap = followable_cr4(1 << 7);
        assert_eq!(
            with_guest_paging_bits(host, linux, no_smap),
            host | CR4_PSE | CR4_PGE | CR4_SMEP
        );
    }
}
