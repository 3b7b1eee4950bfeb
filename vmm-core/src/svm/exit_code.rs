//! SVM exit codes (AMD APM Vol 2, Appendix C, Table C-1).

/// The EXITCODE values Keel decodes by name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u64)]
pub enum SvmExitCode {
    /// First of the 16 CR-read codes (0x00-0x0F); CR-writes are 0x10-0x1F.
    CrRead0 = 0x00,
    CrWrite0 = 0x10,
    /// First of the 32 exception codes (0x40 + vector).
    Exception0 = 0x40,
    Intr = 0x60,
    Nmi = 0x61,
    Smi = 0x62,
    Init = 0x63,
    Vintr = 0x64,
    Rdtsc = 0x6e,
    Rdpmc = 0x6f,
    Cpuid = 0x72,
    Iret = 0x74,
    Invd = 0x76,
    Hlt = 0x78,
    Ioio = 0x7b,
    Msr = 0x7c,
    Shutdown = 0x7f,
    Vmrun = 0x80,
    Vmmcall = 0x81,
    Vmload = 0x82,
    Vmsave = 0x83,
    Stgi = 0x84,
    Clgi = 0x85,
    Skinit = 0x86,
    Rdtscp = 0x87,
    Wbinvd = 0x89,
    Monitor = 0x8a,
    Mwait = 0x8b,
    MwaitConditional = 0x8c,
    Xsetbv = 0x8d,
    Invlpga = 0x7a,
    Npf = 0x400,
    /// VMEXIT_INVALID (-1): the guest state failed VMRUN's consistency checks.
    Invalid = 0xffff_ffff_ffff_ffff,
}
