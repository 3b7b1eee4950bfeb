//! Basic exit reasons (SDM Vol 3C, Appendix C, Table C-1).

macro_rules! exit_reasons {
    ($($name:ident = $n:expr, $text:expr;)*) => {
        /// The basic exit reason: bits 15:0 of the exit-reason field.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[repr(u16)]
        pub enum ExitReason {
            $(#[doc = $text] $name = $n,)*
        }

        impl ExitReason {
            /// The reason with basic number `n`, if the SDM defines it.
            pub fn from_basic(n: u16) -> Option<ExitReason> {
                match n {
                    $($n => Some(ExitReason::$name),)*
                    _ => None,
                }
            }

            /// The SDM's description of the reason.
            pub fn description(self) -> &'static str {
                match self {
                    $(ExitReason::$name => $text,)*
                }
            }
        }
    };
}

exit_reasons! {
    ExceptionOrNmi = 0, "exception or non-maskable interrupt";
    ExternalInterrupt = 1, "external interrupt";
    TripleFault = 2, "triple fault";
    InitSignal = 3, "INIT signal";
    StartupIpi = 4, "start-up IPI";
    IoSmi = 5, "I/O system-management interrupt";
    OtherSmi = 6, "other SMI";
    InterruptWindow = 7, "interrupt window";
    NmiWindow = 8, "NMI window";
    TaskSwitch = 9, "task switch";
    Cpuid = 10, "CPUID";
    Getsec = 11, "GETSEC";
    Hlt = 12, "HLT";
    Invd = 13, "INVD";
    Invlpg = 14, "INVLPG";
    Rdpmc = 15, "RDPMC";
    Rdtsc = 16, "RDTSC";
    Rsm = 17, "RSM";
    Vmcall = 18, "VMCALL";
    Vmclear = 19, "VMCLEAR";
    Vmlaunch = 20, "VMLAUNCH";
    Vmptrld = 21, "VMPTRLD";
    Vmptrst = 22, "VMPTRST";
    Vmread = 23, "VMREAD";
    Vmresume = 24, "VMRESUME";
    Vmwrite = 25, "VMWRITE";
    Vmxoff = 26, "VMXOFF";
    Vmxon = 27, "VMXON";
    ControlRegisterAccess = 28, "control-register access";
    MovDr = 29, "MOV DR";
    IoInstruction = 30, "I/O instruction";
    Rdmsr = 31, "RDMSR";
    Wrmsr = 32, "WRMSR";
    EntryFailureGuestState = 33, "VM-entry failure due to invalid guest state";
    EntryFailureMsrLoading = 34, "VM-entry failure due to MSR loading";
    Mwait = 36, "MWAIT";
    MonitorTrapFlag = 37, "monitor trap flag";
    Monitor = 39, "MONITOR";
    Pause = 40, "PAUSE";
    EntryFailureMachineCheck = 41, "VM-entry failure due to machine-check event";
    TprBelowThreshold = 43, "TPR below threshold";
    ApicAccess = 44, "APIC access";
    VirtualizedEoi = 45, "virtualized EOI";
    GdtrIdtrAccess = 46, "access to GDTR or IDTR";
    LdtrTrAccess = 47, "access to LDTR or TR";
    EptViolation = 48, "EPT violation";
    EptMisconfiguration = 49, "EPT misconfiguration";
    Invept = 50, "INVEPT";
    Rdtscp = 51, "RDTSCP";
    PreemptionTimer = 52, "VMX-preemption timer expired";
    Invvpid = 53, "INVVPID";
    Wbinvd = 54, "WBINVD or WBNOINVD";
    Xsetbv = 55, "XSETBV";
    ApicWrite = 56, "APIC write";
    Rdrand = 57, "RDRAND";
    Invpcid = 58, "INVPCID";
    Vmfunc = 59, "VMFUNC";
    Encls = 60, "ENCLS";
    Rdseed = 61, "RDSEED";
    PageModificationLogFull = 62, "page-modification log full";
    Xsaves = 63, "XSAVES";
    Xrstors = 64, "XRSTORS";
}

/// Exit-reason bit 31: VM entry failed (SDM 25.9.1).
pub const ENTRY_FAILURE: u32 = 1 << 31;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_and_descriptions() {
        assert_eq!(ExitReason::from_basic(48), Some(ExitReason::EptViolation));
        assert_eq!(ExitReason::from_basic(30), Some(ExitReason::IoInstruction));
        assert_eq!(ExitReason::from_basic(35), None);
        assert_eq!(ExitReason::from_basic(65), None);
        assert_eq!(
            ExitReason::EntryFailureGuestState.description(),
            "VM-entry failure due to invalid guest state"
        );
        for n in 0..=64u16 {
            if let Some(r) = ExitReason::from_basic(n) {
                assert_eq!(r as u16, n);
            }
        }
    }
}
