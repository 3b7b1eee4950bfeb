//! Intercept vectors 0, 3 and 4 of the VMCB control area (AMD APM Vol 2, Table B-1).

bitflags::bitflags! {
    /// Intercept vector 0 (VMCB offset 0x00): bits 15:0 intercept reads of
    /// CR0-CR15, bits 31:16 writes (APM Vol 2 15.9). A CR0 write intercept
    /// also catches CLTS and LMSW.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct InterceptCr: u32 {
        const CR0_WRITE = 1 << 16;
        const CR4_WRITE = 1 << 20;
    }
}

bitflags::bitflags! {
    /// Intercept vector 3 (VMCB offset 0x0C).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct InterceptMisc1: u32 {
        const INTR = 1 << 0;
        const NMI = 1 << 1;
        const SMI = 1 << 2;
        const INIT = 1 << 3;
        const VINTR = 1 << 4;
        const CR0_SEL_WRITE = 1 << 5;
        const RDTSC = 1 << 14;
        const RDPMC = 1 << 15;
        const CPUID = 1 << 18;
        const RSM = 1 << 19;
        const IRET = 1 << 20;
        const INVD = 1 << 22;
        const PAUSE = 1 << 23;
        const HLT = 1 << 24;
        const INVLPG = 1 << 25;
        const INVLPGA = 1 << 26;
        const IOIO_PROT = 1 << 27;
        const MSR_PROT = 1 << 28;
        const TASK_SWITCH = 1 << 29;
        const FERR_FREEZE = 1 << 30;
        const SHUTDOWN = 1 << 31;
    }
}

bitflags::bitflags! {
    /// Intercept vector 4 (VMCB offset 0x10).
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct InterceptMisc2: u32 {
        const VMRUN = 1 << 0;
        const VMMCALL = 1 << 1;
        const VMLOAD = 1 << 2;
        const VMSAVE = 1 << 3;
        const STGI = 1 << 4;
        const CLGI = 1 << 5;
        const SKINIT = 1 << 6;
        const RDTSCP = 1 << 7;
        const ICEBP = 1 << 8;
        const WBINVD = 1 << 9;
        const MONITOR = 1 << 10;
        const MWAIT = 1 << 11;
        const MWAIT_CONDITIONAL = 1 << 12;
        const XSETBV = 1 << 13;
    }
}
