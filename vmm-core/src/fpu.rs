//! The guest state that neither VMRUN nor VM entry switches: the x87, SSE
//! and AVX registers, XCR0 and IA32_TSC_AUX.
//!
//! VMRUN and VM entry load the guest's control registers and segment state
//! but leave the FPU/SSE/AVX registers, XCR0 and TSC_AUX as they are (APM
//! Vol 2 15.5.1 lists what VMRUN loads; SDM Vol 3C 27.3 what VM entry loads,
//! and VMX has no XCR0 field). Keel keeps each vCPU's copy here and swaps it
//! in around every guest run ([`hw::enter`], [`hw::leave`]), so a guest never
//! sees another guest's registers and no XCR0 value stays loaded on a CPU
//! after its guest stopped running. Keel's own code never uses them: it is
//! built for the soft-float `x86_64-unknown-none` target (no MMX/SSE code).
//!
//! Keel offers the x87, SSE and AVX components only ([`OFFERED_XCR0`]):
//! MPX, AVX-512, PKRU and AMX would each need their save area handled and
//! their CPUID bits shown, so they stay hidden (the CPUID policy clears
//! their feature bits and leaf 0DH sub-leaves).

use alloc::boxed::Box;

/// XCR0 state components (SDM Vol 1 13.1).
pub const XCR0_X87: u64 = 1 << 0;
pub const XCR0_SSE: u64 = 1 << 1;
pub const XCR0_AVX: u64 = 1 << 2;
/// The components a guest may enable, where the host CPU has them.
pub const OFFERED_XCR0: u64 = XCR0_X87 | XCR0_SSE | XCR0_AVX;

/// Size of the save area: the legacy region (512 bytes), the XSAVE header (64)
/// and the AVX component (256, at offset 576) need 832 bytes (SDM Vol 1
/// 13.4); a page leaves room and keeps the 64-byte alignment XSAVE needs.
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
    /// Registers saved at the last exit (standard XSAVE format).
    pub(crate) area: Box<XsaveArea>,
    /// The guest's XCR0, as its last accepted XSETBV (or RESET) left it.
    pub(crate) xcr0: u64,
    /// IA32_TSC_AUX (MSR C000_0103h), read by RDTSCP and RDPID.
    pub(crate) tsc_aux: u32,
}

impl Default for GuestFpu {
    fn default() -> Self {
        let mut f = GuestFpu {
            area: Box::new(XsaveArea([0; AREA_SIZE])),
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
        self.area.0.fill(0);
        self.area.0[0..2].copy_from_slice(&FCW_INIT.to_le_bytes());
        self.area.0[24..28].copy_from_slice(&MXCSR_INIT.to_le_bytes());
        self.xcr0 = XCR0_X87;
        self.tsc_aux = 0;
    }

    /// The guest's XCR0.
    pub fn xcr0(&self) -> u64 {
        self.xcr0
    }

    /// The MXCSR in the saved state (bytes 24-27 of the legacy region).
    pub fn saved_mxcsr(&self) -> u32 {
        let b = &self.area.0[24..28];
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

/// Saving and loading the state on the CPU. Only these few instructions
/// touch hardware; Keel's CPU setup ([`hw::enable`]) runs once per CPU.
pub mod hw {
    use super::{GuestFpu, OFFERED_XCR0, XCR0_X87};
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

    fn cpuid(leaf: u32, sub: u32) -> core::arch::x86_64::CpuidResult {
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
            xcr0 = ((u64::from(d.edx) << 32) | u64::from(d.eax)) & OFFERED_XCR0 | XCR0_X87;
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

    /// Loads `fpu` into the CPU before a guest run: its registers under
    /// Keel's XCR0, then its XCR0 and TSC_AUX.
    ///
    /// # Safety
    /// [`enable`] ran on this CPU; nothing runs on this CPU between this and
    /// the guest entry that uses x87/SSE/AVX state.
    pub unsafe fn enter(fpu: &GuestFpu) {
        let k = KEEL_XCR0.load(Ordering::Relaxed);
        let area = fpu.area.0.as_ptr();
        if k & HAS_XSAVE != 0 {
            let keel = k & !(HAS_TSC_AUX | HAS_XSAVE);
            // SAFETY: the area is 64-byte aligned and large enough; its header
            // comes from XSAVE or [`GuestFpu::reset`] (zeros), and the MXCSR
            // in it from the CPU or the reset value, so XRSTOR cannot fault.
            unsafe {
                core::arch::asm!("xrstor64 [{}]", in(reg) area, in("eax") keel as u32,
                    in("edx") (keel >> 32) as u32, options(nostack, readonly))
            };
            if fpu.xcr0 != keel {
                // SAFETY: the exit handler accepted this value (a subset of
                // the offered components, XSETBV's rules) or it is RESET's 1.
                unsafe { xsetbv(fpu.xcr0) };
            }
        } else {
            // SAFETY: 16-byte aligned 512-byte area from FXSAVE or reset.
            unsafe { core::arch::asm!("fxrstor64 [{}]", in(reg) area, options(nostack, readonly)) };
        }
        if k & HAS_TSC_AUX != 0 {
            // SAFETY: TSC_AUX exists (RDTSCP or RDPID); Keel does not read it.
            unsafe {
                core::arch::asm!("wrmsr", in("ecx") IA32_TSC_AUX, in("eax") fpu.tsc_aux,
                    in("edx") 0u32, options(nostack, nomem))
            };
        }
    }

    /// Saves the guest's registers into `fpu` after a guest run and puts
    /// Keel's XCR0 back.
    ///
    /// # Safety
    /// [`enter`] ran with this `fpu` before the guest run that just ended.
    pub unsafe fn leave(fpu: &mut GuestFpu) {
        let k = KEEL_XCR0.load(Ordering::Relaxed);
        let area = fpu.area.0.as_mut_ptr();
        if k & HAS_XSAVE != 0 {
            let keel = k & !(HAS_TSC_AUX | HAS_XSAVE);
            // What the guest left in XCR0: the value Keel loaded, unless an
            // XSETBV ran without the intercept Keel set (QEMU's SVM model
            // does not intercept XSETBV). Only components Keel switches are
            // kept, so nothing else is carried to the next run.
            let (lo, hi): (u32, u32);
            // SAFETY: CR4.OSXSAVE is set ([`enable`]); XGETBV(0) only reads.
            unsafe {
                core::arch::asm!("xgetbv", in("ecx") 0u32, out("eax") lo, out("edx") hi,
                    options(nostack, nomem))
            };
            let now = (u64::from(hi) << 32) | u64::from(lo);
            fpu.xcr0 = now & keel | XCR0_X87;
            if now != keel {
                // SAFETY: Keel's XCR0 was accepted by this CPU in [`enable`].
                unsafe { xsetbv(keel) };
            }
            // SAFETY: aligned area of [`super::AREA_SIZE`] bytes.
            unsafe {
                core::arch::asm!("xsave64 [{}]", in(reg) area, in("eax") keel as u32,
                    in("edx") (keel >> 32) as u32, options(nostack))
            };
        } else {
            // SAFETY: aligned area of at least 512 bytes.
            unsafe { core::arch::asm!("fxsave64 [{}]", in(reg) area, options(nostack)) };
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
        let mut f = GuestFpu {
            xcr0: 7,
            ..Default::default()
        };
        f.area.0[600] = 0xaa;
        f.area.0[512] = 4;
        f.reset();
        assert_eq!(f.xcr0(), 1);
        assert_eq!(f.saved_mxcsr(), 0x1f80);
        assert_eq!(&f.area.0[0..2], &[0x7f, 0x03]);
        assert!(f.area.0[512..].iter().all(|&b| b == 0));
        assert_eq!(f.area.0.as_ptr() as usize % 64, 0);
    }
}
