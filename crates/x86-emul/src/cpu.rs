//! The vCPU state the emulator reads and writes, and the operating mode derived from it.

/// General-purpose registers, numbered as in the ModR/M `reg` field with REX.R
/// (SDM Vol 2A 2.1.5, Table 2-2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
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
    /// All sixteen, in encoding order.
    pub const ALL: [Gpr; 16] = [
        Gpr::Rax,
        Gpr::Rcx,
        Gpr::Rdx,
        Gpr::Rbx,
        Gpr::Rsp,
        Gpr::Rbp,
        Gpr::Rsi,
        Gpr::Rdi,
        Gpr::R8,
        Gpr::R9,
        Gpr::R10,
        Gpr::R11,
        Gpr::R12,
        Gpr::R13,
        Gpr::R14,
        Gpr::R15,
    ];

    /// The register with encoding `n` (0..=15); `n` is taken modulo 16.
    pub fn from_index(n: usize) -> Gpr {
        Gpr::ALL[n & 15]
    }
}

/// Segment registers, numbered as in the `sreg` field (SDM Vol 2A 3.1.1.3), plus the
/// task register, whose base and limit locate the I/O permission bitmap.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sreg {
    Es,
    Cs,
    Ss,
    Ds,
    Fs,
    Gs,
    Tr,
}

/// The hidden part of a segment register (SDM Vol 3A 3.4.3), in the layout of the VMCB
/// segment save area (APM Vol 2 15.5.1).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub selector: u16,
    pub base: u64,
    /// Byte-granular limit (already scaled by the G bit).
    pub limit: u32,
    /// Bits 3:0 type, 4 S, 6:5 DPL, 7 P, 8 AVL, 9 L, 10 D/B, 11 G. P = 0 marks a
    /// segment register that holds a null selector (unusable).
    pub attr: u16,
}

impl Segment {
    /// Type field (SDM Vol 3A 3.4.5.1).
    pub fn seg_type(&self) -> u8 {
        (self.attr & 0xF) as u8
    }
    /// S: code or data (not system).
    pub fn s(&self) -> bool {
        self.attr & (1 << 4) != 0
    }
    pub fn dpl(&self) -> u8 {
        ((self.attr >> 5) & 3) as u8
    }
    pub fn present(&self) -> bool {
        self.attr & (1 << 7) != 0
    }
    /// L: 64-bit code segment.
    pub fn l(&self) -> bool {
        self.attr & (1 << 9) != 0
    }
    /// D/B: default operand size of code, stack-pointer size of SS, upper bound of an
    /// expand-down data segment.
    pub fn db(&self) -> bool {
        self.attr & (1 << 10) != 0
    }
}

/// Control registers and EFER as the guest last wrote them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ControlRegs {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
}

/// CR0, CR4 and EFER bits the emulator looks at (SDM Vol 3A 2.5, 2.2.1).
pub mod bits {
    pub const CR0_PE: u64 = 1 << 0;
    pub const CR0_WP: u64 = 1 << 16;
    pub const CR0_PG: u64 = 1 << 31;
    pub const CR4_PSE: u64 = 1 << 4;
    pub const CR4_PAE: u64 = 1 << 5;
    pub const CR4_LA57: u64 = 1 << 12;
    pub const CR4_SMEP: u64 = 1 << 20;
    pub const CR4_SMAP: u64 = 1 << 21;
    pub const EFER_LMA: u64 = 1 << 10;
    pub const EFER_NXE: u64 = 1 << 11;
}

/// RFLAGS bits (SDM Vol 1 3.4.3).
pub mod rflags {
    pub const CF: u64 = 1 << 0;
    pub const PF: u64 = 1 << 2;
    pub const AF: u64 = 1 << 4;
    pub const ZF: u64 = 1 << 6;
    pub const SF: u64 = 1 << 7;
    pub const TF: u64 = 1 << 8;
    pub const IF: u64 = 1 << 9;
    pub const DF: u64 = 1 << 10;
    pub const OF: u64 = 1 << 11;
    pub const IOPL: u64 = 3 << 12;
    pub const RF: u64 = 1 << 16;
    pub const VM: u64 = 1 << 17;
    pub const AC: u64 = 1 << 18;
    /// The six status flags arithmetic instructions write.
    pub const STATUS: u64 = CF | PF | AF | ZF | SF | OF;
}

/// What the emulator needs of a vCPU. The hypervisor implements it over the VMCB/VMCS
/// and its saved GPRs; tests implement it over a plain struct.
pub trait Cpu {
    fn gpr(&self, reg: Gpr) -> u64;
    fn set_gpr(&mut self, reg: Gpr, value: u64);
    fn rip(&self) -> u64;
    fn set_rip(&mut self, value: u64);
    fn rflags(&self) -> u64;
    fn set_rflags(&mut self, value: u64);
    fn segment(&self, reg: Sreg) -> Segment;
    fn control_regs(&self) -> ControlRegs;
    /// Current privilege level (VMCB `CPL`, or SS.DPL).
    fn cpl(&self) -> u8;
    /// MAXPHYADDR the guest sees (CPUID 0x8000_0008 EAX[7:0]); paging-structure bits at
    /// and above it are reserved.
    fn max_phys_addr_bits(&self) -> u8;
}

/// Operating mode (SDM Vol 3A 2.2, APM Vol 2 1.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Real,
    Virtual8086,
    Protected,
    /// IA-32e mode with a code segment whose L bit is clear.
    Compatibility,
    /// IA-32e mode with CS.L = 1.
    Long,
}

impl Mode {
    pub fn of(cpu: &impl Cpu) -> Mode {
        let cr = cpu.control_regs();
        if cr.cr0 & bits::CR0_PE == 0 {
            Mode::Real
        } else if cr.efer & bits::EFER_LMA != 0 {
            if cpu.segment(Sreg::Cs).l() {
                Mode::Long
            } else {
                Mode::Compatibility
            }
        } else if cpu.rflags() & rflags::VM != 0 {
            Mode::Virtual8086
        } else {
            Mode::Protected
        }
    }

    /// Default operand and address size of code, in bits.
    pub fn code_bits(self, cs: &Segment) -> u32 {
        match self {
            Mode::Long => 64,
            Mode::Real | Mode::Virtual8086 => 16,
            Mode::Protected | Mode::Compatibility => {
                if cs.db() {
                    32
                } else {
                    16
                }
            }
        }
    }
}
