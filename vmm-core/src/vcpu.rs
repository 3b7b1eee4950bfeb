//! The arch-neutral view of a vCPU's state that exit handlers work on.
//!
//! Each backend (SVM today) implements [`VcpuState`] over its own storage
//! (VMCB save area plus saved GPRs); tests implement it over a plain struct.

/// General-purpose registers, segment registers and segment descriptors are
/// the instruction emulator's types: one definition for the exit layer and the
/// emulator (SDM Vol 2, 2.1.5; Vol 3A 3.4). `Segment::attr` uses the SVM VMCB
/// attribute layout (APM Vol 2, 15.5.1): type (3:0), S (4), DPL (6:5), P (7),
/// AVL (8), L (9), D/B (10), G (11); the VMX backend converts.
pub use x86_emul::{Gpr, Segment, Sreg};

/// The guest GPRs a backend keeps in memory while the guest runs: all but
/// RSP, which both backends keep in their control structure (and RAX on SVM,
/// where the VMCB holds it and this slot is unused). The layout is fixed: the
/// entry stubs of both backends (`svm::hw`, `vmx::hw`) load and store these
/// offsets (RAX 0, RBX 8, RCX 16, RDX 24, RSI 32, RDI 40, RBP 48, R8-R15 56-112).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GuestGprs {
    pub rax: u64,
    pub rbx: u64,
    pub rcx: u64,
    pub rdx: u64,
    pub rsi: u64,
    pub rdi: u64,
    pub rbp: u64,
    pub r8: u64,
    pub r9: u64,
    pub r10: u64,
    pub r11: u64,
    pub r12: u64,
    pub r13: u64,
    pub r14: u64,
    pub r15: u64,
}

impl GuestGprs {
    /// The slot of `reg`; `None` for RSP, which lives in the backend's state.
    fn slot(&mut self, reg: Gpr) -> Option<&mut u64> {
        Some(match reg {
            Gpr::Rax => &mut self.rax,
            Gpr::Rsp => return None,
            Gpr::Rbx => &mut self.rbx,
            Gpr::Rcx => &mut self.rcx,
            Gpr::Rdx => &mut self.rdx,
            Gpr::Rsi => &mut self.rsi,
            Gpr::Rdi => &mut self.rdi,
            Gpr::Rbp => &mut self.rbp,
            Gpr::R8 => &mut self.r8,
            Gpr::R9 => &mut self.r9,
            Gpr::R10 => &mut self.r10,
            Gpr::R11 => &mut self.r11,
            Gpr::R12 => &mut self.r12,
            Gpr::R13 => &mut self.r13,
            Gpr::R14 => &mut self.r14,
            Gpr::R15 => &mut self.r15,
        })
    }

    /// `reg`'s value; `None` for RSP.
    pub fn get(&self, reg: Gpr) -> Option<u64> {
        let mut copy = *self;
        copy.slot(reg).map(|v| *v)
    }

    /// Sets `reg`; returns false for RSP, which is not kept here.
    pub fn set(&mut self, reg: Gpr, value: u64) -> bool {
        match self.slot(reg) {
            Some(v) => {
                *v = value;
                true
            }
            None => false,
        }
    }
}

/// An event to deliver to the guest on the next entry (SDM Vol 3C 27.6 / APM 15.20).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A hardware exception with its vector and, where the vector has one, error code.
    Exception { vector: u8, error_code: Option<u32> },
    /// An external (maskable) interrupt.
    ExternalInterrupt { vector: u8 },
    /// A non-maskable interrupt.
    Nmi,
    /// INT n: a software interrupt raised by an instruction of `len` bytes,
    /// put back after an exit interrupted its delivery (VMX type 4).
    SoftwareInterrupt { vector: u8, len: u8 },
    /// INT3 or INTO: #BP or #OF raised by an instruction of `len` bytes (VMX type 6).
    SoftwareException { vector: u8, len: u8 },
    /// INT1 / ICEBP (F1): #DB raised by the one-byte instruction (VMX type 5,
    /// privileged software exception).
    PrivilegedSoftwareException { len: u8 },
}

impl Event {
    /// #UD, invalid opcode.
    pub const UD: Event = Event::Exception {
        vector: 6,
        error_code: None,
    };
    /// #GP(0), general protection with a zero error code.
    pub const GP0: Event = Event::Exception {
        vector: 13,
        error_code: Some(0),
    };
}

/// A vCPU that a backend can run: the state handlers work on, plus entry.
pub trait Vcpu: VcpuState {
    /// Enters the guest and runs it until the next VM exit, decoded.
    fn run(&mut self) -> crate::exit::VmExit;
    /// Puts the vCPU in the architectural RESET state (the machine was reset).
    fn reset(&mut self);
    /// Invalidates the guest-physical translations this vCPU may have cached
    /// before its next entry, after the nested page table changed (SVM:
    /// TLB_CONTROL, APM Vol 2 15.16.1; VMX: INVEPT for its EPTP, SDM Vol 3C
    /// 29.4.3.1). The VM loop calls it when the map's generation moved
    /// (`paging::FlushTracker`).
    fn flush_tlb(&mut self);
    /// Makes this vCPU's control structure the one the CPU's instructions
    /// reach again, after another vCPU ran on the same host CPU (VMX: the
    /// current VMCS, SDM Vol 3C 25.11.1; SVM names its VMCB in each VMRUN,
    /// so nothing to do). Returns false if the CPU refused.
    fn make_current(&mut self) -> bool {
        true
    }
}

/// The processor mode the guest is in, derived from CR0, EFER and CS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuMode {
    Real,
    /// Protected mode (or compatibility mode) with 16- or 32-bit code.
    Protected {
        cs32: bool,
    },
    Long64,
}

/// State of one vCPU as the exit handlers see it.
pub trait VcpuState {
    /// Index of this vCPU within its VM (0 is the bootstrap processor).
    fn vcpu_id(&self) -> u32;
    fn gpr(&self, reg: Gpr) -> u64;
    fn set_gpr(&mut self, reg: Gpr, value: u64);
    fn rip(&self) -> u64;
    fn set_rip(&mut self, rip: u64);
    fn rflags(&self) -> u64;
    fn set_rflags(&mut self, rflags: u64);
    fn cr0(&self) -> u64;
    fn cr3(&self) -> u64;
    fn cr4(&self) -> u64;
    /// Sets a control register as a MOV to CRn would (only called for intercepted accesses).
    fn set_cr(&mut self, cr: u8, value: u64);
    /// EFER as the guest sees it (virtualization-enable bits hidden).
    fn efer(&self) -> u64;
    /// Loads EFER from a guest WRMSR that the policy accepted.
    fn set_efer(&mut self, efer: u64);
    /// A segment register, including TR (the emulator checks the TSS I/O bitmap).
    fn segment(&self, seg: Sreg) -> Segment;
    /// Current privilege level.
    fn cpl(&self) -> u8;
    /// Queues `event` for delivery on the next VM entry. If an event is
    /// already queued, `event` arose while delivering it: the two combine
    /// by the double-fault rules ([`crate::event::combine`]), which may shut
    /// the vCPU down (the next run returns [`crate::VmExit::Shutdown`]).
    fn inject(&mut self, event: Event);
    /// Clears any STI / MOV SS interrupt shadow (after an instruction is skipped).
    fn clear_interrupt_shadow(&mut self);
    /// Whether the guest is in an STI / MOV SS interrupt shadow: no maskable
    /// interrupt may be delivered before the next instruction completes.
    fn interrupt_shadow(&self) -> bool;
    /// Whether an event is already queued for the next entry (by [`Self::inject`],
    /// or re-queued by the backend because an exit interrupted its delivery).
    fn event_pending(&self) -> bool;
    /// Asks for (or stops asking for) an exit as soon as the guest can take a
    /// maskable interrupt: SVM's virtual-interrupt intercept, VMX's
    /// interrupt-window exiting. The exit is [`crate::VmExit::InterruptWindow`].
    fn set_interrupt_window_exiting(&mut self, on: bool);
    /// Whether the guest blocks NMIs: it took an NMI and has not yet
    /// executed the IRET that ends its handler (SDM Vol 3A 6.7.1; "blocking
    /// by NMI", SDM Vol 3C 25.4.2). No NMI may be injected meanwhile; one
    /// that arrives stays latched until then ([`crate::interrupts`]). VMX
    /// keeps it in the interruptibility state (virtual-NMI blocking); SVM
    /// has no such field, so the backend tracks it from the NMIs it injects
    /// and the IRETs it intercepts (APM Vol 2 15.21.4).
    fn nmi_blocked(&self) -> bool;
    /// Asks for (or stops asking for) an exit as soon as the guest can take
    /// an NMI: VMX's NMI-window exiting (SDM Vol 3C 25.6.2, 26.7.6); on SVM,
    /// the IRET intercept and a single step over the IRET (or over the
    /// interrupt shadow). The exit is [`crate::VmExit::NmiWindow`].
    fn set_nmi_window_exiting(&mut self, on: bool);
    /// Whether the STI / MOV SS shadow holds back an NMI as well (SDM Vol 2B
    /// STI: NMIs may be inhibited after STI), as the backend's entry rules
    /// require: the whole shadow, except (VMX) right after an NMI-window
    /// exit, which a CPU takes inside an STI shadow only where it can take
    /// the NMI there (SDM Vol 3C 26.3.1.5, 26.7.6).
    fn nmi_shadow(&self) -> bool {
        self.interrupt_shadow()
    }

    /// The CPU mode implied by CR0.PE, EFER.LMA and CS.L / CS.D.
    fn mode(&self) -> CpuMode {
        const CR0_PE: u64 = 1;
        const EFER_LMA: u64 = 1 << 10;
        let cs = self.segment(Sreg::Cs);
        if self.cr0() & CR0_PE == 0 {
            CpuMode::Real
        } else if self.efer() & EFER_LMA != 0 && cs.l() {
            CpuMode::Long64
        } else {
            CpuMode::Protected { cs32: cs.db() }
        }
    }

    /// What the hardware adds to the host's TSC for the guest's RDTSC, RDTSCP
    /// and RDMSR of the TSC (SVM TSC_OFFSET, VMX TSC offsetting).
    fn tsc_offset(&self) -> u64;
    /// Sets the TSC offset (a WRMSR of the TSC, or the reset that starts it at 0).
    fn set_tsc_offset(&mut self, offset: u64);

    /// The backend's own copy of the task priority that guest CR8 accesses
    /// use without exiting (SVM's V_TPR, APM Vol 2 15.21.2), if it has one;
    /// the VM loop keeps it and the local APIC's TPR in step.
    fn virtual_tpr(&self) -> Option<u8> {
        None
    }
    /// Sets the backend's copy of the task priority (CR8 value, 0-15).
    fn set_virtual_tpr(&mut self, _tpr: u8) {}

    /// Keeps the guest's XCR0 after an XSETBV the exit handler accepted;
    /// the backend loads it only while the guest runs ([`crate::fpu`]).
    fn set_xcr0(&mut self, _xcr0: u64) {}
    /// The guest's XCR0 (1 after RESET, SDM Vol 3A Table 9-1).
    fn xcr0(&self) -> u64 {
        1
    }
    /// The guest's IA32_TSC_AUX (MSR C000_0103h), which RDTSCP and RDPID read.
    fn tsc_aux(&self) -> u32 {
        0
    }
    /// Sets the guest's IA32_TSC_AUX; the backend loads it before each run.
    fn set_tsc_aux(&mut self, _value: u32) {}
    /// Lets RDTSCP (and RDPID) run when the guest's CPUID offers them;
    /// otherwise they raise #UD, as on a CPU without them.
    fn offer_rdtscp(&mut self, _offered: bool) {}
    /// Makes RDTSC and RDTSCP exit (`on`) or read the hardware's TSC plus
    /// the offset (SVM's RDTSC/RDTSCP intercepts, APM Vol 2 15.9; VMX's
    /// "RDTSC exiting", SDM Vol 3C 25.6.2): the VM loop asks for it while
    /// a guest's timer calibration runs (crates/keel `apparent_time`).
    fn set_tsc_exiting(&mut self, _on: bool) {}

    /// The guest is about to be given a #DB Keel intercepted: DR6 gets the
    /// bits the CPU reported instead of writing them (`status`, VMX's exit
    /// qualification, see [`crate::exit::dr6_after_debug_exception`]; `None`
    /// where DR6 already holds them, SVM), and a general-detect #DB (DR6.BD)
    /// clears DR7.GD as delivering it does (SDM Vol 3A 17.2.4).
    fn debug_exception(&mut self, _status: Option<u64>) {}

    /// The guest's DR7 (SDM Vol 3A 18.2.4). A backend that cannot read it
    /// reports every breakpoint enabled, which keeps Keel from running the
    /// guest's instructions past an exit (`exit::io`).
    fn dr7(&self) -> u64 {
        0xFF
    }

    /// Whether RFLAGS.IF is set: the guest accepts maskable interrupts.
    fn interrupts_enabled(&self) -> bool {
        self.rflags() & (1 << 9) != 0
    }

    /// Moves RIP past an instruction of `len` bytes, as the CPU would on completing it.
    fn skip_instruction(&mut self, len: u8) {
        let rip = self.rip().wrapping_add(u64::from(len));
        let rip = match self.mode() {
            CpuMode::Long64 => rip,
            CpuMode::Protected { cs32: true } => rip & 0xffff_ffff,
            CpuMode::Real | CpuMode::Protected { cs32: false } => rip & 0xffff,
        };
        self.set_rip(rip);
        self.clear_interrupt_shadow();
    }

    /// Loads a segment register, TR included, with a selector and the
    /// descriptor it names (what a task switch does, SDM Vol 3A 7.3). On a
    /// backend that keeps the CPL apart (SVM), loading SS sets CPL = SS.DPL.
    fn set_segment(&mut self, seg: Sreg, s: Segment);
    /// LDTR: the selector and descriptor of the current LDT (SDM Vol 3A 2.4.2).
    fn ldtr(&self) -> Segment;
    /// Loads LDTR; a null selector is loaded with `attr` 0 (unusable).
    fn set_ldtr(&mut self, s: Segment);
    /// GDTR in `base` and `limit` (selector and `attr` are 0) (SDM Vol 3A 2.4.1).
    fn gdtr(&self) -> Segment;
    /// Drops the event queued for the next entry, including one the backend
    /// re-queued because the exit interrupted its delivery: a task switch
    /// through a task gate in the IDT is that delivery, done by the handler.
    fn cancel_event(&mut self);
    /// Loads CR3 as a task switch does (SDM Vol 3A 7.3, 4.10.4.1): the guest's
    /// non-global TLB entries go, and under PAE paging the four PDPTEs read
    /// from the new CR3 are loaded too (VMX with EPT enters with the VMCS
    /// copies, SDM Vol 3C 26.3.2.4).
    fn load_cr3(&mut self, cr3: u64, pae_pdptes: Option<[u64; 4]>);
}

/// A vCPU that is plain data, for exit-handler tests and the host fuzz
/// harness (crates/fuzz, through the `testutil` feature).
#[cfg(any(test, feature = "testutil"))]
pub mod fake {
    use super::*;
    use alloc::vec::Vec;

    /// A vCPU that is plain data: every register a field, every injected
    /// event kept in order.
    #[derive(Debug, Clone, Default)]
    pub struct FakeVcpu {
        pub gprs: [u64; 16],
        pub rip: u64,
        pub rflags: u64,
        pub cr: [u64; 16],
        pub cr0: u64,
        pub efer: u64,
        pub segs: [Segment; 7],
        pub injected: Vec<Event>,
        pub shadow_cleared: bool,
        pub shadow: bool,
        pub window: bool,
        /// Blocking by NMI: set by injecting an NMI, as delivering one sets
        /// it on hardware; a test clears it for the guest's IRET.
        pub nmi_blocked: bool,
        pub nmi_window: bool,
        pub tsc_offset: u64,
        pub xcr0: u64,
        pub tsc_aux: u32,
        pub ldtr: Segment,
        pub gdtr: Segment,
        pub pdptes: Option<[u64; 4]>,
        /// What [`VcpuState::cpl`] returns (0 unless a test sets it).
        pub cpl: u8,
        /// The `status` of each [`VcpuState::debug_exception`], in order.
        pub debug: Vec<Option<u64>>,
        /// What [`VcpuState::dr7`] returns.
        pub dr7: u64,
    }

    impl FakeVcpu {
        /// Real mode at 0000:1000, as after reset with CS reloaded.
        pub fn real_mode() -> Self {
            let mut v = FakeVcpu {
                rip: 0x1000,
                rflags: 2,
                ..Default::default()
            };
            for s in v.segs.iter_mut() {
                *s = Segment {
                    selector: 0,
                    base: 0,
                    limit: 0xffff,
                    attr: 0x93,
                };
            }
            v
        }
        /// 64-bit mode with paging on.
        pub fn long_mode() -> Self {
            let mut v = Self::real_mode();
            v.cr0 = 0x8000_0011;
            v.efer = (1 << 8) | (1 << 10);
            v.segs[1] = Segment {
                selector: 8,
                base: 0,
                limit: 0xffff_ffff,
                attr: 0xa9b,
            };
            v
        }
        /// 32-bit protected mode, paging off.
        pub fn protected_flat() -> Self {
            let mut v = Self::real_mode();
            v.cr0 = 0x11;
            v.segs[1] = Segment {
                selector: 8,
                base: 0,
                limit: 0xffff_ffff,
                attr: 0xc9b,
            };
            v
        }
    }

    fn seg_index(s: Sreg) -> usize {
        match s {
            Sreg::Es => 0,
            Sreg::Cs => 1,
            Sreg::Ss => 2,
            Sreg::Ds => 3,
            Sreg::Fs => 4,
            Sreg::Gs => 5,
            Sreg::Tr => 6,
        }
    }

    impl VcpuState for FakeVcpu {
        fn dr7(&self) -> u64 {
            self.dr7
        }
        fn vcpu_id(&self) -> u32 {
            0
        }
        fn gpr(&self, reg: Gpr) -> u64 {
            self.gprs[reg as usize]
        }
        fn set_gpr(&mut self, reg: Gpr, value: u64) {
            self.gprs[reg as usize] = value;
        }
        fn rip(&self) -> u64 {
            self.rip
        }
        fn set_rip(&mut self, rip: u64) {
            self.rip = rip;
        }
        fn rflags(&self) -> u64 {
            self.rflags
        }
        fn set_rflags(&mut self, rflags: u64) {
            self.rflags = rflags;
        }
        fn cr0(&self) -> u64 {
            self.cr0
        }
        fn cr3(&self) -> u64 {
            self.cr[3]
        }
        fn cr4(&self) -> u64 {
            self.cr[4]
        }
        fn set_cr(&mut self, cr: u8, value: u64) {
            if cr == 0 {
                self.cr0 = value;
            } else {
                self.cr[usize::from(cr & 15)] = value;
            }
        }
        fn efer(&self) -> u64 {
            self.efer
        }
        fn set_efer(&mut self, efer: u64) {
            self.efer = efer;
        }
        fn segment(&self, seg: Sreg) -> Segment {
            self.segs[seg_index(seg)]
        }
        fn cpl(&self) -> u8 {
            self.cpl
        }
        fn inject(&mut self, event: Event) {
            if event == Event::Nmi {
                self.nmi_blocked = true;
            }
            self.injected.push(event);
        }
        fn clear_interrupt_shadow(&mut self) {
            self.shadow_cleared = true;
            self.shadow = false;
        }
        fn interrupt_shadow(&self) -> bool {
            self.shadow
        }
        fn event_pending(&self) -> bool {
            !self.injected.is_empty()
        }
        fn set_interrupt_window_exiting(&mut self, on: bool) {
            self.window = on;
        }
        fn nmi_blocked(&self) -> bool {
            self.nmi_blocked
        }
        fn set_nmi_window_exiting(&mut self, on: bool) {
            self.nmi_window = on;
        }
        fn tsc_offset(&self) -> u64 {
            self.tsc_offset
        }
        fn set_tsc_offset(&mut self, offset: u64) {
            self.tsc_offset = offset;
        }
        fn set_xcr0(&mut self, xcr0: u64) {
            self.xcr0 = xcr0;
        }
        fn xcr0(&self) -> u64 {
            self.xcr0
        }
        fn tsc_aux(&self) -> u32 {
            self.tsc_aux
        }
        fn set_tsc_aux(&mut self, value: u32) {
            self.tsc_aux = value;
        }
        fn set_segment(&mut self, seg: Sreg, s: Segment) {
            self.segs[seg_index(seg)] = s;
        }
        fn ldtr(&self) -> Segment {
            self.ldtr
        }
        fn set_ldtr(&mut self, s: Segment) {
            self.ldtr = s;
        }
        fn gdtr(&self) -> Segment {
            self.gdtr
        }
        fn cancel_event(&mut self) {
            self.injected.clear();
        }
        fn debug_exception(&mut self, status: Option<u64>) {
            self.debug.push(status);
        }
        fn load_cr3(&mut self, cr3: u64, pae_pdptes: Option<[u64; 4]>) {
            self.cr[3] = cr3;
            self.pdptes = pae_pdptes;
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    pub use super::fake::FakeVcpu;
    use super::*;

    #[test]
    fn gpr_file_layout_and_access() {
        let mut g = GuestGprs::default();
        for i in 0..16 {
            assert_eq!(
                g.set(Gpr::from_index(i), 0x100 + i as u64),
                i != 4,
                "RSP is not kept here"
            );
        }
        assert_eq!(g.get(Gpr::Rsp), None);
        assert_eq!(g.get(Gpr::R15), Some(0x10f));
        assert_eq!((g.rax, g.rbx, g.rcx, g.rdx), (0x100, 0x103, 0x101, 0x102));
        assert_eq!(core::mem::offset_of!(GuestGprs, rbx), 8);
        assert_eq!(core::mem::offset_of!(GuestGprs, rbp), 48);
        assert_eq!(core::mem::offset_of!(GuestGprs, r15), 112);
    }

    #[test]
    fn mode_and_skip_wraps_like_the_cpu() {
        let mut v = FakeVcpu::real_mode();
        assert_eq!(v.mode(), CpuMode::Real);
        v.rip = 0xffff;
        v.skip_instruction(2);
        assert_eq!(v.rip, 1, "IP wraps at 64 KiB in real mode");
        assert!(v.shadow_cleared);
        let mut v = FakeVcpu::protected_flat();
        assert_eq!(v.mode(), CpuMode::Protected { cs32: true });
        v.rip = 0xffff_ffff;
        v.skip_instruction(1);
        assert_eq!(v.rip, 0);
        let mut v = FakeVcpu::long_mode();
        assert_eq!(v.mode(), CpuMode::Long64);
        v.rip = 0xffff_ffff;
        v.skip_instruction(1);
        assert_eq!(v.rip, 0x1_0000_0000);
    }
}
