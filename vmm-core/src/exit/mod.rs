//! The arch-neutral VM exit and everything that handles one.
//!
//! Backends decode their hardware exit information into a [`VmExit`]; the
//! [`handle_exit`] function turns it into effects on the vCPU state and the
//! platform and tells the run loop what to do next with an [`ExitAction`].

mod cpuid;
mod cr;
mod emulate;
mod exception;
mod guest_ram;
mod handler;
mod hyperv;
mod io;
mod msr;
mod shadowed_hlt;
mod stop;
mod task_switch;
mod xen;

pub use cpuid::{CpuidBit, CpuidPolicy, CpuidReg, CpuidResult, KEEL_CPUID_SIGNATURE};
pub use emulate::{UnexplainedFaults, MAX_UNEXPLAINED_FAULTS};
/// The vectors both backends intercept.
pub mod exception_vectors {
    pub use super::exception::{AC, DB};
}
pub use exception::{dr6_after_debug_exception, ExceptionLoop, DR6_BD, DR7_GD, MAX_EXCEPTION_LOOP};
pub use handler::{handle_exit, Platform, VmPolicy};
pub use hyperv::{tsc_scale, HvFeatures, HyperV, TscPage};
pub use io::RunAheadMisses;
pub use msr::{CpuFacts, MsrOutcome, MsrPolicy, Vendor};
pub use shadowed_hlt::complete_hlt_in_shadow;
pub use stop::StopReason;
pub use xen::{XEN_CPUID_BASE, XEN_HYPERCALL_MSR};

/// The exit statistics' kinds (`crates/exit-stats`): [`VmExit::kind`] maps.
pub use exit_stats::ExitKind;

/// The `len` of an instruction exit whose length the hardware did not report
/// (SVM without NRIP save, APM Vol 2 15.7.1): the exit handler decodes the
/// instruction at CS:RIP for it, so prefixes count.
pub const UNKNOWN_LENGTH: u8 = 0;

/// Direction of a port I/O access.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IoDirection {
    /// IN / INS: device to CPU.
    In,
    /// OUT / OUTS: CPU to device.
    Out,
}

/// Extra facts of a string I/O instruction (INS / OUTS).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StringIo {
    /// A REP prefix is present: the count is in rCX.
    pub rep: bool,
    /// Address size in bytes (2, 4 or 8), when the hardware reported it.
    pub address_size: Option<u8>,
}

/// A port I/O exit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IoExit {
    pub port: u16,
    /// Access width in bytes: 1, 2 or 4.
    pub size: u8,
    pub direction: IoDirection,
    pub string: Option<StringIo>,
    /// Length of the I/O instruction.
    pub len: u8,
}

/// What a guest access that faulted in the nested page tables tried to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AccessKind {
    Read,
    Write,
    Execute,
}

/// A control-register access the backend intercepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrAccess {
    pub cr: u8,
    pub write: bool,
    pub operand: CrOperand,
    pub len: u8,
}

/// The instruction of a [`CrAccess`] and its operand, as far as the hardware
/// reported it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrOperand {
    /// MOV to or from CRn with this general-purpose register.
    Gpr(crate::Gpr),
    /// CLTS: clears CR0.TS (SDM Vol 2A CLTS).
    Clts,
    /// LMSW with this 16-bit source (SDM Vol 2A LMSW).
    Lmsw(u16),
    /// Not reported (SVM without decode assists, APM Vol 2 15.33.1; or CLTS
    /// and LMSW with them): the handler decodes the instruction at CS:RIP.
    Undecoded,
}

/// The event whose delivery through a task gate in the IDT started a task
/// switch (the VMX IDT-vectoring information, SDM Vol 3C 28.2.4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GateEvent {
    pub vector: u8,
    /// Pushed on the new task's stack once the switch is done (SDM Vol 3A 6.12.2).
    pub error_code: Option<u32>,
    /// A hardware exception (not INT n, INT3, INTO or INT1): a fault while
    /// delivering it may turn into #DF (SDM Vol 3A 6.15, Table 6-5).
    pub hardware_exception: bool,
    /// An instruction raised it (INT n, INT3, INTO, INT1): the old task resumes
    /// after that instruction, and faults of the switch have EXT clear.
    pub software: bool,
}

/// What started a task switch (SDM Vol 3A 7.3; SDM Vol 3C 28.2.1, Table 28-2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskSwitchSource {
    /// CALL to a TSS descriptor or a task gate: the new task links back.
    Call,
    /// IRET with EFLAGS.NT = 1: back to the task in the back link.
    Iret,
    /// JMP to a TSS descriptor or a task gate.
    Jmp,
    /// An interrupt or exception through a task gate in the IDT.
    IdtGate(GateEvent),
}

/// A task switch the guest attempted; VMX exits on every one (SDM Vol 3C
/// 25.4.2) after checking the gate and the new TSS descriptor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TaskSwitch {
    /// Selector of the new task's TSS.
    pub selector: u16,
    pub source: TaskSwitchSource,
    /// Length of the CALL, JMP, IRET or software-interrupt instruction (unused
    /// for hardware events, which leave RIP at the return address).
    pub len: u8,
}

/// Why the guest stopped running, in terms that do not depend on VMX or SVM.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmExit {
    /// IN, OUT, INS or OUTS to a port the I/O permission map intercepts.
    Io(IoExit),
    /// A guest-physical access with no (or not enough) nested-paging permission.
    NestedPageFault {
        gpa: u64,
        access: AccessKind,
        /// The GPA had a mapping (a permission fault, not a missing page).
        present: bool,
        /// The vector of the interrupt or exception whose delivery made the
        /// access (IDT, GDT or stack in MMIO), from SVM's EXITINTINFO (APM Vol 2
        /// 15.7.2) or VMX's IDT-vectoring information (SDM Vol 3C 28.2.4): the
        /// instruction at RIP did not.
        during_event: Option<u8>,
    },
    Cpuid {
        len: u8,
    },
    Rdmsr {
        len: u8,
    },
    Wrmsr {
        len: u8,
    },
    Hlt {
        len: u8,
    },
    CrAccess(CrAccess),
    Invd {
        len: u8,
    },
    Wbinvd {
        len: u8,
    },
    /// XSETBV (0F 01 D1): a write of EDX:EAX to the extended control register
    /// ECX. VMX exits on it unconditionally (SDM Vol 3C 26.1.2).
    Xsetbv {
        len: u8,
    },
    /// RDPMC (0F 33): a read of the performance counter ECX into EDX:EAX.
    /// Both backends intercept it (SVM's RDPMC intercept, VMX's "RDPMC
    /// exiting") so that the counters the guest's CPUID describes decide.
    Rdpmc {
        len: u8,
    },
    /// RDTSC (0F 31), intercepted only while the VM loop asks for it
    /// (`Vcpu::set_tsc_exiting`): the guest's time-stamp counter is then
    /// whatever the platform's clock says (SDM Vol 3C 26.1.3, APM Vol 2
    /// 15.9).
    Rdtsc {
        len: u8,
    },
    /// RDTSCP (0F 01 F9): intercepted with RDTSC, and on SVM while the
    /// guest's CPUID hides RDTSCP (then it raises #UD).
    Rdtscp {
        len: u8,
    },
    /// VMMCALL (SVM) or VMCALL (VMX).
    Hypercall {
        len: u8,
    },
    /// An instruction the guest's CPUID says does not exist (VMX/SVM
    /// instructions, MONITOR/MWAIT): the guest gets #UD.
    UndefinedInstruction {
        name: &'static str,
    },
    /// A hardware task switch (VMX only: SVM runs them without exiting).
    TaskSwitch(TaskSwitch),
    /// Shutdown: a triple fault, or a fault while delivering a double fault.
    Shutdown,
    /// A physical interrupt arrived for the host while the guest ran.
    ExternalInterrupt,
    /// The guest can now take an interrupt (the interrupt window Keel asked for is open).
    InterruptWindow,
    /// The guest can now take an NMI: its NMI handler's IRET unblocked NMIs
    /// (VMX NMI-window exiting, SDM Vol 3C 26.7.6; on SVM the IRET
    /// intercept and the single step after it, APM Vol 2 15.21.4), or the
    /// shadow that held one back ended.
    NmiWindow,
    /// An intercepted exception: Keel intercepts #DB and #AC (vectors 1 and
    /// 17) so that a guest whose delivery of one raises it again cannot keep
    /// the host CPU in microcode forever (CVE-2015-8104, CVE-2015-5307).
    Exception {
        vector: u8,
        error_code: Option<u32>,
        fault_address: Option<u64>,
        /// For #DB on VMX: the B0-B3 (3:0), BD (13) and BS (14) bits of the
        /// exit qualification, which the CPU reports instead of writing DR6
        /// (SDM Vol 3C 27.1, 28.2.1 Table 28-1). `None` on SVM, where the
        /// #DB intercept is taken after DR6 in the VMCB was written (APM Vol 2
        /// 15.12).
        debug_status: Option<u64>,
    },
    /// The hardware refused to enter the guest (SVM VMEXIT_INVALID, VMX failed entry).
    InvalidGuestState {
        detail: u64,
    },
    /// An exit Keel does not handle; `code` is the backend's raw exit code.
    Unknown {
        code: u64,
        info1: u64,
        info2: u64,
    },
}

impl VmExit {
    /// The row of the exit statistics this exit counts in.
    pub fn kind(&self) -> ExitKind {
        match self {
            VmExit::Io(_) => ExitKind::Io,
            VmExit::NestedPageFault { .. } => ExitKind::NestedPageFault,
            VmExit::Cpuid { .. } => ExitKind::Cpuid,
            VmExit::Rdmsr { .. } => ExitKind::Rdmsr,
            VmExit::Wrmsr { .. } => ExitKind::Wrmsr,
            VmExit::Hlt { .. } => ExitKind::Hlt,
            VmExit::CrAccess(_) => ExitKind::CrAccess,
            VmExit::Invd { .. } => ExitKind::Invd,
            VmExit::Wbinvd { .. } => ExitKind::Wbinvd,
            VmExit::Xsetbv { .. } => ExitKind::Xsetbv,
            VmExit::Rdpmc { .. } => ExitKind::Rdpmc,
            VmExit::Rdtsc { .. } | VmExit::Rdtscp { .. } => ExitKind::Rdtsc,
            VmExit::Hypercall { .. } => ExitKind::Hypercall,
            VmExit::UndefinedInstruction { .. } => ExitKind::UndefinedInstruction,
            VmExit::TaskSwitch(_) => ExitKind::TaskSwitch,
            VmExit::Shutdown => ExitKind::Shutdown,
            VmExit::ExternalInterrupt => ExitKind::ExternalInterrupt,
            VmExit::InterruptWindow => ExitKind::InterruptWindow,
            VmExit::NmiWindow => ExitKind::NmiWindow,
            VmExit::Exception { .. } => ExitKind::Exception,
            VmExit::InvalidGuestState { .. } => ExitKind::InvalidGuestState,
            VmExit::Unknown { .. } => ExitKind::Unknown,
        }
    }

    /// An exit for an instruction only CPL 0 may execute: RDMSR, WRMSR, HLT,
    /// INVD, WBINVD, XSETBV, MOV to or from a control register, CLTS, LMSW
    /// (SDM Vol 2, each page: "#GP(0) If the current privilege level is not
    /// 0"; in virtual-8086 mode, which runs at CPL 3, the same #GP(0)).
    fn needs_cpl0(&self) -> bool {
        matches!(
            self,
            VmExit::Rdmsr { .. }
                | VmExit::Wrmsr { .. }
                | VmExit::Hlt { .. }
                | VmExit::Invd { .. }
                | VmExit::Wbinvd { .. }
                | VmExit::Xsetbv { .. }
                | VmExit::CrAccess(_)
        )
    }

    /// The length field of an exit for an instruction the handler completes.
    fn instruction_len_mut(&mut self) -> Option<&mut u8> {
        match self {
            VmExit::Cpuid { len }
            | VmExit::Rdmsr { len }
            | VmExit::Wrmsr { len }
            | VmExit::Hlt { len }
            | VmExit::Invd { len }
            | VmExit::Wbinvd { len }
            | VmExit::Xsetbv { len }
            | VmExit::Rdpmc { len }
            | VmExit::Rdtsc { len }
            | VmExit::Rdtscp { len }
            | VmExit::Hypercall { len }
            | VmExit::CrAccess(CrAccess { len, .. })
            | VmExit::Io(IoExit { len, .. }) => Some(len),
            _ => None,
        }
    }
}

/// What the run loop does after an exit was handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExitAction {
    /// Enter the guest again.
    Resume,
    /// The vCPU executed HLT: resume once an interrupt is due.
    Halt,
    /// The VM cannot continue.
    Stop(StopReason),
}
