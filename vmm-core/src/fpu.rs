//! The guest state that neither VMRUN nor VM entry switches: the x87, SSE
//! and AVX registers, PKRU, XCR0 and IA32_TSC_AUX.
//!
//! VMRUN and VM entry load the guest's control registers and segment state
//! but leave the FPU/SSE/AVX registers, PKRU, XCR0 and TSC_AUX as they are (APM
//! Vol 2 15.5.1 lists what VMRUN loads; SDM Vol 3C 27.3 what VM entry loads,
//! and VMX has no XCR0 or PKRU field). Keel keeps each vCPU's copy here.
//! Keel's own code never uses them (it is built for the soft-float
//! `x86_64-unknown-none` target: no MMX/SSE code, and it never reads
//! TSC_AUX), so a guest's registers stay loaded across its exits: each host
//! CPU has an owner slot ([`Slot`]) naming the vCPU whose state its registers
//! hold, and [`hw::enter`] saves that state into its owner's area and loads
//! the next vCPU's only when another vCPU takes the CPU. A guest therefore
//! never sees another guest's registers, and an exit that the same vCPU
//! resumes from costs one XGETBV ([`hw::leave`]) instead of XSAVE, XRSTOR,
//! two XSETBVs and a WRMSR.
//!
//! Keel offers the x87, SSE, AVX and PKRU components only
//! ([`OFFERED_XCR0`]): MPX, AVX-512 and AMX would each need their save area
//! handled and their CPUID bits shown, so they stay hidden (the CPUID
//! policy clears their feature bits and leaf 0DH sub-leaves).
//!
//! PKRU (protection keys for user pages, SDM Vol 3A 4.6.2; state component
//! 9, SDM Vol 1 13.5.7) moves with the rest in the same XSAVE/XRSTOR: it is
//! user state (XCR0, not IA32_XSS), and WRPKRU writes it whatever the
//! guest's XCR0, so it is saved and loaded under Keel's XCR0 like the
//! others. A guest's PKRU may stay loaded while Keel runs: it governs only
//! user-mode addresses with CR4.PKE set, and Keel's CR4 (loaded by VM exit
//! and #VMEXIT) has PKE clear.

use alloc::boxed::Box;
use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

/// XCR0 state components (SDM Vol 1 13.1).
pub const XCR0_X87: u64 = 1 << 0;
pub const XCR0_SSE: u64 = 1 << 1;
pub const XCR0_AVX: u64 = 1 << 2;
pub const XCR0_PKRU: u64 = 1 << 9;
/// The components a guest may enable, where the host CPU has them.
pub const OFFERED_XCR0: u64 = XCR0_X87 | XCR0_SSE | XCR0_AVX | XCR0_PKRU;

/// The components of `host` (the XCR0 bits CPUID leaf 0DH reports) that Keel
/// switches: those of [`OFFERED_XCR0`] whose standard-format place in the
/// save area, (offset, size) from `component(i)` (leaf 0DH sub-leaf i EBX
/// and EAX, SDM Vol 1 13.4.3), ends within [`AREA_SIZE`], and x87. The CPUID
/// policy offers these and [`hw::enable`] loads them in Keel's XCR0.
pub fn switched_xcr0(host: u64, component: impl Fn(u32) -> (u32, u32)) -> u64 {
    let fits = |i: u32| {
        let (offset, size) = component(i);
        offset as usize + size as usize <= AREA_SIZE
    };
    let legacy = XCR0_X87 | (host & XCR0_SSE);
    (2..64u32)
        .filter(|&i| host & OFFERED_XCR0 & (1 << i) != 0 && fits(i))
        .fold(legacy, |x, i| x | (1 << i))
}

/// Size of the save area: the legacy region (512 bytes), the XSAVE header (64)
/// and the AVX component (256, at offset 576) need 832 bytes (SDM Vol 1
/// 13.4); PKRU (8 bytes) sits where the CPU's leaf 0DH puts it, after the
/// components in between (2688 on Intel CPUs with AVX-512); a page leaves
/// room and keeps the 64-byte alignment XSAVE needs.
pub const AREA_SIZE: usize = 4096;
/// FCW after FNINIT and RESET (SDM Vol 1 8.1.5, Vol 3A Table 9-1).
const FCW_INIT: u16 = 0x037f;
/// MXCSR after RESET (SDM Vol 1 10.2.3).
pub const MXCSR_INIT: u32 = 0x1f80;

/// An XSAVE / FXSAVE area (SDM Vol 1 13.4: 64-byte aligned).
#[repr(C, align(64))]
pub struct XsaveArea(pub(crate) [u8; AREA_SIZE]);

/// One vCPU's switched state.
pub struct GuestFpu {
    /// Unique among all vCPUs Keel ever made (never 0 or [`BUSY`]): what an
    /// owner slot names.
    id: u64,
    /// The registers when a host CPU's slot does not name this vCPU
    /// (standard XSAVE format); while one does, that CPU's registers are
    /// newer and this is written when another vCPU takes the CPU.
    pub(crate) area: Box<UnsafeCell<XsaveArea>>,
    /// The guest's XCR0, as its last accepted XSETBV (or RESET) left it.
    pub(crate) xcr0: u64,
    /// IA32_TSC_AUX (MSR C000_0103h), read by RDTSCP and RDPID.
    pub(crate) tsc_aux: u32,
}

/// Where the next [`GuestFpu`] identity comes from.
static NEXT_ID: AtomicU64 = AtomicU64::new(1);
/// A slot's owner while the CPU saves its owner's registers.
const BUSY: u64 = u64::MAX;
/// Host CPUs with an owner slot: one per 8-bit initial APIC ID (CPUID leaf
/// 1 EBX[31:24], as `crates/keel/src/arch/lapic.rs` numbers CPUs).
pub const MAX_HOST_CPUS: usize = 256;

/// Which vCPU's x87/SSE/AVX registers, XCR0 and TSC_AUX one host CPU holds.
/// Only that CPU changes its slot, except [`GuestFpu`]'s drop and reset,
/// which take the slot away from their vCPU from any CPU.
pub struct Slot {
    /// The owning [`GuestFpu`]'s id; 0 when none, [`BUSY`] during a save.
    owner: AtomicU64,
    /// The owner's save area, written when another vCPU takes the CPU.
    area: AtomicPtr<XsaveArea>,
    /// The XCR0 in the CPU now (0 until [`hw::enable`] ran).
    xcr0: AtomicU64,
    /// The TSC_AUX in the CPU now.
    tsc_aux: AtomicU64,
}

impl Slot {
    pub const fn new() -> Self {
        Slot {
            owner: AtomicU64::new(0),
            area: AtomicPtr::new(core::ptr::null_mut()),
            xcr0: AtomicU64::new(0),
            tsc_aux: AtomicU64::new(0),
        }
    }
}

impl Default for Slot {
    fn default() -> Self {
        Self::new()
    }
}

/// Every host CPU's slot, by initial APIC ID.
pub static SLOTS: [Slot; MAX_HOST_CPUS] = [const { Slot::new() }; MAX_HOST_CPUS];

/// What [`enter_on`] and [`leave_on`] use of a CPU: the few instructions
/// that move the state (implemented by [`hw`], and by a model in the tests).
pub trait FpuRegs {
    /// The CPU has XSAVE (else FXSAVE/FXRSTOR move x87 and SSE).
    fn has_xsave(&self) -> bool;
    /// The CPU has IA32_TSC_AUX (RDTSCP or RDPID).
    fn has_tsc_aux(&self) -> bool;
    /// Keel's XCR0: every offered component the CPU has.
    fn keel_xcr0(&self) -> u64;
    fn xgetbv(&mut self) -> u64;
    fn xsetbv(&mut self, xcr0: u64);
    /// XSAVE (FXSAVE without XSAVE) of the components in `mask`.
    fn save(&mut self, area: *mut XsaveArea, mask: u64);
    /// XRSTOR (FXRSTOR without XSAVE) of the components in `mask`.
    fn restore(&mut self, area: *const XsaveArea, mask: u64);
    fn write_tsc_aux(&mut self, value: u32);
}

/// Makes `slot`'s CPU hold `fpu`'s state before its guest runs: nothing to
/// move when `fpu` already owns the CPU, else the owner's registers go to
/// its area (under Keel's XCR0, which covers every component a guest can
/// enable) and `fpu`'s come from its own; then XCR0 and TSC_AUX are made
/// `fpu`'s where the CPU's differ (an exit changed them: XSETBV, WRMSR, reset).
pub fn enter_on(slot: &Slot, fpu: &GuestFpu, regs: &mut impl FpuRegs) {
    let keel = regs.keel_xcr0();
    if slot.owner.load(Ordering::Acquire) != fpu.id {
        if regs.has_xsave() && slot.xcr0.load(Ordering::Relaxed) != keel {
            regs.xsetbv(keel);
            slot.xcr0.store(keel, Ordering::Relaxed);
        }
        let prev = slot.owner.swap(BUSY, Ordering::Acquire);
        if prev != 0 && prev != BUSY {
            // The owner's drop or reset waits while the slot is BUSY, so
            // its area is alive here.
            regs.save(slot.area.load(Ordering::Relaxed), keel);
        }
        regs.restore(fpu.area.get(), keel);
        slot.area.store(fpu.area.get(), Ordering::Relaxed);
        slot.owner.store(fpu.id, Ordering::Release);
    }
    if regs.has_xsave() && slot.xcr0.load(Ordering::Relaxed) != fpu.xcr0 {
        regs.xsetbv(fpu.xcr0);
        slot.xcr0.store(fpu.xcr0, Ordering::Relaxed);
    }
    if regs.has_tsc_aux() && slot.tsc_aux.load(Ordering::Relaxed) != u64::from(fpu.tsc_aux) {
        regs.write_tsc_aux(fpu.tsc_aux);
        slot.tsc_aux
            .store(u64::from(fpu.tsc_aux), Ordering::Relaxed);
    }
}

/// After `fpu`'s guest ran on `slot`'s CPU: its registers stay there; only
/// XCR0 is read back, for an XSETBV that ran without the intercept Keel
/// set (QEMU's SVM model does not intercept XSETBV). Only components Keel
/// switches are kept, so nothing else is carried to the next run.
pub fn leave_on(slot: &Slot, fpu: &mut GuestFpu, regs: &mut impl FpuRegs) {
    if !regs.has_xsave() {
        return;
    }
    let now = regs.xgetbv();
    if now != slot.xcr0.load(Ordering::Relaxed) {
        slot.xcr0.store(now, Ordering::Relaxed);
        fpu.xcr0 = now & regs.keel_xcr0() | XCR0_X87;
    }
}

impl GuestFpu {
    /// Takes every host CPU's slot away from this vCPU without saving: its
    /// registers there are discarded (drop) or replaced (reset), and the
    /// next [`enter_on`] loads its area. Waits while a CPU is saving into
    /// the area (a slot [`BUSY`]), so the area is never written after this.
    fn disown(&self) {
        for slot in SLOTS.iter() {
            while let Err(BUSY) =
                slot.owner
                    .compare_exchange(self.id, 0, Ordering::AcqRel, Ordering::Acquire)
            {
                core::hint::spin_loop();
            }
        }
    }
}

impl Drop for GuestFpu {
    fn drop(&mut self) {
        self.disown();
    }
}

impl Default for GuestFpu {
    fn default() -> Self {
        let mut f = GuestFpu {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            area: Box::new(UnsafeCell::new(XsaveArea([0; AREA_SIZE]))),
            xcr0: XCR0_X87,
            tsc_aux: 0,
        };
        f.reset();
        f
    }
}

impl GuestFpu {
    /// The RESET state (SDM Vol 3A Table 9-1): XCR0 = 1, x87 initialized
    /// (FCW 037Fh), MXCSR 1F80h, every other register zero; an XSAVE header
    /// with XSTATE_BV = 0 makes XRSTOR load every component's initial state.
    pub fn reset(&mut self) {
        self.disown();
        let a = &mut self.area.get_mut().0;
        a.fill(0);
        a[0..2].copy_from_slice(&FCW_INIT.to_le_bytes());
        a[24..28].copy_from_slice(&MXCSR_INIT.to_le_bytes());
        self.xcr0 = XCR0_X87;
        self.tsc_aux = 0;
    }

    /// The guest's XCR0.
    pub fn xcr0(&self) -> u64 {
        self.xcr0
    }

    /// The MXCSR in the saved state (bytes 24-27 of the legacy region).
    pub fn saved_mxcsr(&mut self) -> u32 {
        let b = &self.area.get_mut().0[24..28];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

/// Saving and loading the state on the CPU. Only these few instructions
/// touch hardware; Keel's CPU setup ([`hw::enable`]) runs once per CPU.
pub mod hw {
    use super::{
        switched_xcr0, FpuRegs, GuestFpu, Slot, XsaveArea, BUSY, MAX_HOST_CPUS, SLOTS, XCR0_X87,
    };
    use core::sync::atomic::{AtomicU64, Ordering};

    const CR4_OSFXSR: u64 = 1 << 9;
    const CR4_OSXMMEXCPT: u64 = 1 << 10;
    const CR4_OSXSAVE: u64 = 1 << 18;
    const IA32_TSC_AUX: u32 = 0xc000_0103;
    /// Bit 63 of [`KEEL_XCR0`]: the CPU has RDTSCP or RDPID (TSC_AUX exists).
    const HAS_TSC_AUX: u64 = 1 << 63;
    /// Bit 62: the CPU has XSAVE (else FXSAVE/FXRSTOR switch x87 and SSE).
    const HAS_XSAVE: u64 = 1 << 62;

    /// The XCR0 Keel keeps loaded while no guest runs: every offered
    /// component the CPU has, so that one XSAVE/XRSTOR covers whatever a
    /// guest may have enabled. 0 until [`enable`] ran; flag bits above.
    static KEEL_XCR0: AtomicU64 = AtomicU64::new(0);

    /// This CPU's CPUID `leaf`, sub-leaf `sub` (also the SVM backend's).
    pub(crate) fn cpuid(leaf: u32, sub: u32) -> core::arch::x86_64::CpuidResult {
        // SAFETY: CPUID has no side effects and exists on every x86_64 CPU.
        #[allow(unused_unsafe)]
        unsafe {
            core::arch::x86_64::__cpuid_count(leaf, sub)
        }
    }

    /// Sets CR4.OSFXSR/OSXMMEXCPT (and OSXSAVE with Keel's XCR0 where the
    /// CPU has XSAVE) on this CPU, so that [`enter`] and [`leave`] can save
    /// every register a guest may use.
    ///
    /// # Safety
    /// Runs in ring 0; Keel's code must not use x87/SSE state (it does not:
    /// the target has no SSE), since guests' registers pass through them.
    pub unsafe fn enable() {
        let xsave = cpuid(1, 0).ecx & (1 << 26) != 0;
        let max_ext = cpuid(0x8000_0000, 0).eax;
        let rdtscp = max_ext >= 0x8000_0001 && cpuid(0x8000_0001, 0).edx & (1 << 27) != 0;
        let rdpid = cpuid(0, 0).eax >= 7 && cpuid(7, 0).ecx & (1 << 22) != 0;
        let mut cr4: u64;
        // SAFETY: reading CR4 in ring 0.
        unsafe { core::arch::asm!("mov {}, cr4", out(reg) cr4, options(nomem, nostack)) };
        cr4 |= CR4_OSFXSR | CR4_OSXMMEXCPT;
        let mut xcr0 = XCR0_X87;
        if xsave {
            cr4 |= CR4_OSXSAVE;
            let d = cpuid(0xd, 0);
            xcr0 = switched_xcr0((u64::from(d.edx) << 32) | u64::from(d.eax), |i| {
                let c = cpuid(0xd, i);
                (c.ebx, c.eax)
            });
        }
        // SAFETY: the bits only enable instructions (SDM Vol 3A 2.5), and the
        // CPU has XSAVE when OSXSAVE is set.
        unsafe { core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nomem, nostack)) };
        if xsave {
            // SAFETY: CR4.OSXSAVE is set; the value has x87 and only
            // components leaf 0DH reports (AVX only with SSE: CPUs with AVX
            // have SSE).
            unsafe { xsetbv(xcr0) };
        }
        let flags =
            if xsave { HAS_XSAVE } else { 0 } | if rdtscp || rdpid { HAS_TSC_AUX } else { 0 };
        KEEL_XCR0.store(xcr0 | flags, Ordering::Relaxed);
        // The CPU's XCR0 is Keel's now; whatever vCPU owns its registers
        // keeps them (its XCR0 is loaded again before it runs).
        this_slot().xcr0.store(xcr0, Ordering::Relaxed);
    }

    /// Keel's XCR0 on this machine (every CPU the same).
    pub fn keel_xcr0() -> u64 {
        KEEL_XCR0.load(Ordering::Relaxed) & !(HAS_TSC_AUX | HAS_XSAVE)
    }

    unsafe fn xsetbv(v: u64) {
        // SAFETY: the caller's contract (CR4.OSXSAVE set, `v` valid).
        unsafe {
            core::arch::asm!("xsetbv", in("ecx") 0u32, in("eax") v as u32,
                in("edx") (v >> 32) as u32, options(nostack, nomem))
        };
    }

    /// This CPU's registers, for [`super::enter_on`] and [`super::leave_on`].
    struct Cpu(u64);

    impl super::FpuRegs for Cpu {
        fn has_xsave(&self) -> bool {
            self.0 & HAS_XSAVE != 0
        }
        fn has_tsc_aux(&self) -> bool {
            self.0 & HAS_TSC_AUX != 0
        }
        fn keel_xcr0(&self) -> u64 {
            self.0 & !(HAS_TSC_AUX | HAS_XSAVE)
        }
        fn xgetbv(&mut self) -> u64 {
            let (lo, hi): (u32, u32);
            // SAFETY: CR4.OSXSAVE is set ([`enable`]); XGETBV(0) only reads.
            unsafe {
                core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
                    options(nostack, nomem))
            };
            (u64::from(hi) << 32) | u64::from(lo)
        }
        fn xsetbv(&mut self, xcr0: u64) {
            // SAFETY: CR4.OSXSAVE is set; the value is Keel's (accepted in
            // [`enable`]), one the exit handler accepted (XSETBV's rules,
            // within the offered components), RESET's 1, or one this CPU
            // already held (read back by XGETBV).
            unsafe { xsetbv(xcr0) }
        }
        fn save(&mut self, area: *mut XsaveArea, mask: u64) {
            if self.has_xsave() {
                // SAFETY: a live, 64-byte aligned area of [`super::AREA_SIZE`]
                // bytes (the slot's owner's, kept alive by the slot protocol).
                unsafe {
                    core::arch::asm!("xsave64 [{}]", in(reg) area, in("eax") mask as u32,
                        in("edx") (mask >> 32) as u32, options(nostack))
                };
            } else {
                // SAFETY: as above; FXSAVE needs 512 bytes, 16-byte aligned.
                unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) area, options(nostack)) };
            }
        }
        fn restore(&mut self, area: *const XsaveArea, mask: u64) {
            if self.has_xsave() {
                // SAFETY: the area is 64-byte aligned and large enough; its
                // header comes from XSAVE or [`GuestFpu::reset`] (zeros), and
                // the MXCSR in it from the CPU or the reset value, so XRSTOR
                // cannot fault.
                unsafe {
                    core::arch::asm!("xrstor64 [{}]", in(reg) area, in("eax") mask as u32,
                        in("edx") (mask >> 32) as u32, options(nostack, readonly))
                };
            } else {
                // SAFETY: 16-byte aligned 512-byte area from FXSAVE or reset.
                unsafe {
                    core::arch::asm!("fxrstor64 [{}]", in(reg) area, options(nostack, readonly))
                };
            }
        }
        fn write_tsc_aux(&mut self, value: u32) {
            // SAFETY: TSC_AUX exists (RDTSCP or RDPID); Keel does not read it.
            unsafe {
                core::arch::asm!("wrmsr", in("ecx") IA32_TSC_AUX, in("eax") value,
                    in("edx") 0u32, options(nostack, nomem))
            };
        }
    }

    /// This CPU's owner slot, by its initial APIC ID (CPUID leaf 1
    /// EBX[31:24], SDM Vol 2A CPUID), as Keel numbers CPUs elsewhere.
    fn this_slot() -> &'static Slot {
        &SLOTS[(cpuid(1, 0).ebx >> 24) as usize % MAX_HOST_CPUS]
    }

    /// Makes this CPU hold `fpu`'s registers, XCR0 and TSC_AUX before its
    /// guest runs ([`super::enter_on`]).
    ///
    /// # Safety
    /// [`enable`] ran on this CPU; nothing runs on this CPU between this and
    /// the guest entry that uses x87/SSE/AVX state. `fpu`'s registers are
    /// in no other CPU: a vCPU that moves to another CPU was not loaded on
    /// the old one since its last [`release`] there (or was never loaded).
    pub unsafe fn enter(fpu: &GuestFpu) {
        super::enter_on(
            this_slot(),
            fpu,
            &mut Cpu(KEEL_XCR0.load(Ordering::Relaxed)),
        );
    }

    /// After `fpu`'s guest ran on this CPU ([`super::leave_on`]).
    ///
    /// # Safety
    /// [`enter`] ran with this `fpu` on this CPU before the guest run that
    /// just ended.
    pub unsafe fn leave(fpu: &mut GuestFpu) {
        super::leave_on(
            this_slot(),
            fpu,
            &mut Cpu(KEEL_XCR0.load(Ordering::Relaxed)),
        );
    }

    /// Saves `fpu`'s registers into its area if this CPU holds them, and
    /// frees the CPU: what a scheduler does before the vCPU runs on another
    /// CPU (the registers of one CPU cannot be read from another).
    ///
    /// # Safety
    /// [`enable`] ran on this CPU.
    pub unsafe fn release(fpu: &GuestFpu) {
        let slot = this_slot();
        let mut cpu = Cpu(KEEL_XCR0.load(Ordering::Relaxed));
        if slot
            .owner
            .compare_exchange(fpu.id, BUSY, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            let keel = cpu.keel_xcr0();
            if cpu.has_xsave() && slot.xcr0.load(Ordering::Relaxed) != keel {
                cpu.xsetbv(keel);
                slot.xcr0.store(keel, Ordering::Relaxed);
            }
            cpu.save(slot.area.load(Ordering::Relaxed), keel);
            slot.owner.store(0, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RESET leaves XCR0 = 1, FCW 037Fh and MXCSR 1F80h (SDM Vol 3A Table
    /// 9-1), and an XSAVE header of zeros (XSTATE_BV = 0: every component in
    /// its initial state, SDM Vol 1 13.8.1).
    #[test]
    fn reset_state() {
        let mut f = GuestFpu::default();
        f.xcr0 = 7;
        f.area.get_mut().0[600] = 0xaa;
        f.area.get_mut().0[512] = 4;
        f.reset();
        assert_eq!(f.xcr0(), 1);
        assert_eq!(f.saved_mxcsr(), 0x1f80);
        let a = &f.area.get_mut().0;
        assert_eq!(&a[0..2], &[0x7f, 0x03]);
        assert!(a[512..].iter().all(|&b| b == 0));
        assert_eq!(a.as_ptr() as usize % 64, 0);
    }

    /// Keel switches x87, SSE, AVX and PKRU where the CPU has them (PKRU at
    /// 2688 as on Intel CPUs with AVX-512, SDM Vol 1 Table 13-1), never
    /// MPX, AVX-512 or AMX, and drops a component its area cannot hold.
    #[test]
    fn switched_components() {
        let intel = |i: u32| match i {
            2 => (576, 256),
            9 => (2688, 8),
            _ => (1088, 64),
        };
        // x87 SSE AVX MPX AVX-512 PKRU AMX.
        assert_eq!(switched_xcr0(0x6_02ff, intel), 0x207);
        assert_eq!(switched_xcr0(0x3, intel), 0x3);
        assert_eq!(switched_xcr0(0, intel), XCR0_X87);
        let far = |i: u32| if i == 9 { (4090, 8) } else { intel(i) };
        assert_eq!(switched_xcr0(0x207, far), 0x7, "PKRU past the area");
    }

    /// A CPU with XSAVE, AVX and TSC_AUX: its "registers" are one byte
    /// (byte 600 of an area, inside the AVX component), XCR0 and TSC_AUX;
    /// each instruction is counted.
    #[derive(Default)]
    struct Model {
        reg: u8,
        xcr0: u64,
        tsc_aux: u32,
        saves: u32,
        restores: u32,
        xsetbvs: u32,
        wrmsrs: u32,
    }

    impl FpuRegs for Model {
        fn has_xsave(&self) -> bool {
            true
        }
        fn has_tsc_aux(&self) -> bool {
            true
        }
        fn keel_xcr0(&self) -> u64 {
            7
        }
        fn xgetbv(&mut self) -> u64 {
            self.xcr0
        }
        fn xsetbv(&mut self, xcr0: u64) {
            self.xcr0 = xcr0;
            self.xsetbvs += 1;
        }
        fn save(&mut self, area: *mut XsaveArea, mask: u64) {
            assert_eq!((mask, self.xcr0), (7, 7), "saved under Keel's XCR0");
            // SAFETY (test): the slot protocol keeps the owner's area alive.
            unsafe { (*area).0[600] = self.reg };
            self.saves += 1;
        }
        fn restore(&mut self, area: *const XsaveArea, mask: u64) {
            assert_eq!((mask, self.xcr0), (7, 7), "restored under Keel's XCR0");
            // SAFETY (test): the area of the vCPU being entered.
            self.reg = unsafe { (*area).0[600] };
            self.restores += 1;
        }
        fn write_tsc_aux(&mut self, value: u32) {
            self.tsc_aux = value;
            self.wrmsrs += 1;
        }
    }

    /// A slot as [`hw::enable`] leaves it: Keel's XCR0 in the CPU.
    fn enabled_slot() -> Slot {
        let slot = Slot::new();
        slot.xcr0.store(7, Ordering::Relaxed);
        slot
    }

    fn run(slot: &Slot, fpu: &mut GuestFpu, cpu: &mut Model, guest: impl FnOnce(&mut Model)) {
        enter_on(slot, fpu, cpu);
        assert_eq!(
            (cpu.xcr0, cpu.tsc_aux),
            (fpu.xcr0, fpu.tsc_aux),
            "the guest's own"
        );
        guest(cpu);
        leave_on(slot, fpu, cpu);
    }

    /// One vCPU running again and again on a CPU moves its state once; an
    /// XSETBV or WRMSR TSC_AUX handled by an exit reaches the CPU before
    /// the next entry, and only then.
    #[test]
    fn the_same_vcpu_keeps_its_registers_loaded() {
        let slot = enabled_slot();
        let mut cpu = Model {
            xcr0: 7,
            ..Default::default()
        };
        let mut a = GuestFpu::default();
        a.tsc_aux = 5;
        run(&slot, &mut a, &mut cpu, |c| c.reg = 1);
        let first = (cpu.saves, cpu.restores, cpu.xsetbvs, cpu.wrmsrs);
        assert_eq!(first, (0, 1, 1, 1), "restore, XCR0 1, TSC_AUX 5");
        for i in 2..10 {
            run(&slot, &mut a, &mut cpu, |c| {
                assert_eq!(c.reg, i - 1, "the guest's register survived the exit");
                c.reg = i;
            });
        }
        assert_eq!((cpu.saves, cpu.restores, cpu.xsetbvs, cpu.wrmsrs), first);
        a.xcr0 = 7; // an intercepted XSETBV
        a.tsc_aux = 9; // WRMSR TSC_AUX
        run(&slot, &mut a, &mut cpu, |_| {});
        assert_eq!((cpu.xsetbvs, cpu.wrmsrs), (2, 2));
        assert_eq!((cpu.xcr0, cpu.tsc_aux), (7, 9));
    }

    /// Two vCPUs on one CPU: each switch saves the owner's registers into
    /// its area under Keel's XCR0 and loads the other's, so neither sees the
    /// other's values.
    #[test]
    fn another_vcpu_taking_the_cpu_saves_the_owner() {
        let slot = enabled_slot();
        let mut cpu = Model {
            xcr0: 7,
            ..Default::default()
        };
        let (mut a, mut b) = (GuestFpu::default(), GuestFpu::default());
        b.tsc_aux = 2;
        run(&slot, &mut a, &mut cpu, |c| c.reg = 0xaa);
        run(&slot, &mut b, &mut cpu, |c| {
            assert_eq!(c.reg, 0, "B starts from its RESET state");
            c.reg = 0xbb;
        });
        assert_eq!(a.area.get_mut().0[600], 0xaa, "A saved when B came");
        run(&slot, &mut a, &mut cpu, |c| assert_eq!(c.reg, 0xaa));
        assert_eq!(b.area.get_mut().0[600], 0xbb);
        assert_eq!((cpu.saves, cpu.restores), (2, 3));
        assert_eq!(cpu.tsc_aux, 0, "A's TSC_AUX back");
    }

    /// An XSETBV that ran without an exit (QEMU's SVM model) is read back
    /// after the run, kept within the switched components.
    #[test]
    fn an_unintercepted_xsetbv_is_read_back() {
        let slot = enabled_slot();
        let mut cpu = Model {
            xcr0: 7,
            ..Default::default()
        };
        let mut a = GuestFpu::default();
        run(&slot, &mut a, &mut cpu, |c| c.xcr0 = 3);
        assert_eq!(a.xcr0, 3);
        let before = cpu.xsetbvs;
        run(&slot, &mut a, &mut cpu, |_| {});
        assert_eq!(cpu.xsetbvs, before, "already loaded");
        run(&slot, &mut a, &mut cpu, |c| c.xcr0 = 0x207);
        assert_eq!(a.xcr0, 7, "components Keel does not switch are dropped");
    }

    /// RESET replaces the loaded registers (the next entry loads the RESET
    /// state, saving nothing over it), and a dropped vCPU leaves no slot
    /// pointing at its freed area.
    #[test]
    fn reset_and_drop_give_up_the_cpu() {
        let slot = &SLOTS[MAX_HOST_CPUS - 1];
        slot.xcr0.store(7, Ordering::Relaxed);
        let mut cpu = Model {
            xcr0: 7,
            ..Default::default()
        };
        let mut a = GuestFpu::default();
        run(slot, &mut a, &mut cpu, |c| {
            c.reg = 0x55;
            c.xcr0 = 7;
        });
        a.reset();
        assert_eq!(slot.owner.load(Ordering::Relaxed), 0);
        run(slot, &mut a, &mut cpu, |c| {
            assert_eq!(c.reg, 0, "RESET state")
        });
        assert_eq!(cpu.saves, 0);
        assert_eq!(cpu.xcr0, 1, "RESET's XCR0 loaded");
        drop(a);
        assert_eq!(slot.owner.load(Ordering::Relaxed), 0);
        let mut b = GuestFpu::default();
        run(slot, &mut b, &mut cpu, |_| {});
        assert_eq!(cpu.saves, 0, "nothing saved for the dropped vCPU");
    }
}
