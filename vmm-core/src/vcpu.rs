//! The arch-neutral view of a vCPU's state that exit handlers work on.
//!
//! Each backend (SVM today) implements [`VcpuState`] over its own storage
//! (VMCB save area plus saved GPRs); tests implement it over a plain struct.

/// General-purpose registers in the encoding order of the SDM (Vol 2, 2.1.5, Table 2-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Gpr {
    Rax = 0,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Gpr {
    /// The register with the 4-bit encoding `n` (as the REX.B/ModRM encodings number them).
    pub fn from_index(n: u8) -> Option<Gpr> {
        use Gpr::*;
        const ALL: [Gpr; 16] = [
            Rax, Rcx, Rdx, Rbx, Rsp, Rbp, Rsi, Rdi, R8, R9, R10, R11, R12, R13, R14, R15,
        ];
        ALL.get(usize::from(n)).copied()
    }
}

/// Segment registers (SDM Vol 3A 3.4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SegReg {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
}

/// A segment register's visible selector and hidden descriptor cache.
///
/// `attrs` uses the descriptor's access-rights layout as in bits 8..=15 and
/// 20..=23 of the high descriptor dword, packed into 12 bits: type (3:0), S (4),
/// DPL (6:5), P (7), AVL (8), L (9), D/B (10), G (11). This is the SVM VMCB
/// layout (APM Vol 2, 15.5.1); the VMX backend converts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    pub limit: u32,
    pub attrs: u16,
}

impl Segment {
    /// D/B: default operation size is 32 bits.
    pub fn db(&self) -> bool {
        self.attrs & (1 << 10) != 0
    }
    /// L: 64-bit code segment.
    pub fn long(&self) -> bool {
        self.attrs & (1 << 9) != 0
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
    fn segment(&self, seg: SegReg) -> Segment;
    /// Current privilege level.
    fn cpl(&self) -> u8;
    /// Queues `event` for delivery on the next VM entry.
    fn inject(&mut self, event: Event);
    /// Clears any STI / MOV SS interrupt shadow (after an instruction is skipped).
    fn clear_interrupt_shadow(&mut self);

    /// The CPU mode implied by CR0.PE, EFER.LMA and CS.L / CS.D.
    fn mode(&self) -> CpuMode {
        const CR0_PE: u64 = 1;
        const EFER_LMA: u64 = 1 << 10;
        let cs = self.segment(SegReg::Cs);
        if self.cr0() & CR0_PE == 0 {
            CpuMode::Real
        } else if self.efer() & EFER_LMA != 0 && cs.long() {
            CpuMode::Long64
        } else {
            CpuMode::Protected { cs32: cs.db() }
        }
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
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use std::vec::Vec;

    /// A vCPU that is plain data, for handler tests.
    #[derive(Debug, Clone, Default)]
    pub struct FakeVcpu {
        pub gprs: [u64; 16],
        pub rip: u64,
        pub rflags: u64,
        pub cr: [u64; 16],
        pub cr0: u64,
        pub efer: u64,
        pub segs: [Segment; 6],
        pub injected: Vec<Event>,
        pub shadow_cleared: bool,
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
                    attrs: 0x93,
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
                attrs: 0xa9b,
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
                attrs: 0xc9b,
            };
            v
        }
    }

    fn seg_index(s: SegReg) -> usize {
        match s {
            SegReg::Es => 0,
            SegReg::Cs => 1,
            SegReg::Ss => 2,
            SegReg::Ds => 3,
            SegReg::Fs => 4,
            SegReg::Gs => 5,
        }
    }

    impl VcpuState for FakeVcpu {
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
        fn segment(&self, seg: SegReg) -> Segment {
            self.segs[seg_index(seg)]
        }
        fn cpl(&self) -> u8 {
            0
        }
        fn inject(&mut self, event: Event) {
            self.injected.push(event);
        }
        fn clear_interrupt_shadow(&mut self) {
            self.shadow_cleared = true;
        }
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
        assert_eq!(Gpr::from_index(15), Some(Gpr::R15));
        assert_eq!(Gpr::from_index(16), None);
    }
}
