//! MSR policy: the model-specific registers a guest may use, and #GP for the rest.
//!
//! MSRs that live in the backend's guest state (the SYSCALL and SYSENTER MSRs,
//! FS/GS bases, PAT, and TSC_AUX when CPUID offers RDTSCP or RDPID) are passed
//! through by the backend's MSR permission map and never reach this file; the
//! CPU itself checks what is written to them (a non-canonical LSTAR or FS_BASE
//! raises #GP in the guest without an exit). The local APIC's MSRs
//! (IA32_APIC_BASE, the x2APIC range, TSC_DEADLINE) belong to the platform's
//! interrupt controllers, which the exit handler asks first
//! (`Platform::msr_read` / `msr_write`). EFER is intercepted so the
//! virtualization-enable bit stays hidden; it is checked here and stored
//! through [`VcpuState::set_efer`].
//!
//! Every other MSR a guest may use is in the table below, which follows the
//! CPU the guest's CPUID describes ([`CpuFacts`]): its vendor, its family, and
//! the feature bits that imply MSRs. An MSR that is not listed, or whose
//! feature CPUID does not offer, raises #GP(0), as on a CPU that does not
//! implement it (SDM Vol 2B, RDMSR/WRMSR; APM Vol 3, RDMSR/WRMSR), and is
//! logged once. docs/MSRS.md is the same table with how Xen and KVM answer.
//!
//! Performance monitoring personality: no PMU. AMD's four legacy counters
//! (and the six core-extension counters when CPUID Fn8000_0001 ECX[23]
//! PerfCtrExtCore says so) exist on every AMD CPU, so they read 0 and writes
//! without reserved bits are dropped; Intel's architectural PMU MSRs exist
//! only as far as CPUID leaf 0AH describes them, and Keel's leaf 0AH is zero.
//!
//! | MSR | name | behaviour | source |
//! |---|---|---|---|
//! | 0x10 | TIME_STAMP_COUNTER | guest TSC; a write moves the TSC offset and TSC_ADJUST | SDM 3B 18.17 |
//! | 0x17 | PLATFORM_ID (Intel) | reads 0 | SDM 4 Table 2-2 |
//! | 0x3A | FEATURE_CONTROL (Intel) | reads 1 (locked, VMX off); writes #GP | SDM 3C 24.7 |
//! | 0x3B | TSC_ADJUST | when CPUID.7:EBX[1]; tied to the TSC offset | SDM 3B 18.17.3 |
//! | 0x79 | BIOS_UPDT_TRIG (Intel) | writes dropped | SDM 3A 10.11 |
//! | 0x8B | BIOS_SIGN_ID / PATCH_LEVEL | reads 0 (no microcode update); writes dropped | SDM 3A 10.11.7, APM 2 A |
//! | 0xC1.. | PMCi (Intel) | only the CPUID.0AH:EAX[15:8] counters: read 0, writes dropped | SDM 3B 20.2.1 |
//! | 0xCE | PLATFORM_INFO (Intel) | max non-turbo ratio (TSC / 100 MHz) in 15:8; writes #GP | SDM 4 Table 2-3 |
//! | 0xFE | MTRRCAP | 8 variable ranges, fixed ranges, WC | SDM 3A 12.11.2.1 |
//! | 0x179 | MCG_CAP | when CPUID.1:EDX.MCA: MCG_CTL_P, 4 banks | SDM 3B 16.3.1.1 |
//! | 0x17A | MCG_STATUS | when MCE: bits 2:0 writable, others #GP | SDM 3B 16.3.1.2 |
//! | 0x17B | MCG_CTL | when MCA: 0 or all ones; others #GP | SDM 3B 16.3.1.3 |
//! | 0x186.. | PERFEVTSELi (Intel) | as PMCi | SDM 3B 20.2.1 |
//! | 0x1A0 | MISC_ENABLE (Intel) | fast strings, BTS and PEBS unavailable; bits 0, 3, 23, 34 (clear only) writable | SDM 4 Table 2-2 |
//! | 0x1D9 | DEBUGCTL | reads 0, writes dropped | SDM 3B 18.4.1 |
//! | 0x200-0x26F, 0x2FF | MTRRs | stored | SDM 3A 12.11 |
//! | 0x400-0x40F | MCi_CTL/STATUS/ADDR/MISC | CTL 0 or all ones; STATUS, ADDR, MISC read 0, accept only 0 | SDM 3B 16.3.2 |
//! | 0xC0000080 | EFER | SCE, LME, NXE; LMA the CPU's | APM 2 3.1.7 |
//! | 0xC0010000-3 | PerfEvtSel0-3 (AMD) | read 0; writes dropped, reserved bits #GP | APM 2 13.2.1 |
//! | 0xC0010004-7 | PerfCtr0-3 (AMD) | read 0, writes dropped | APM 2 13.2.1 |
//! | 0xC0010010 | SYSCFG (AMD) | reads 0, writes dropped | APM 2 7.9.1 |
//! | 0xC0010015 | HWCR (AMD) | reads 0, writes dropped | APM 2 A.2 |
//! | 0xC001001F | NB_CFG (AMD fam 0Fh-16h) | reads 0, writes dropped | BKDG 0Fh, 10h: MSRC001_001F |
//! | 0xC0010055 | Interrupt Pending (AMD fam 0Fh-16h) | reads 0 (no C1E), writes dropped | BKDG 0Fh, 10h: MSRC001_0055 |
//! | 0xC0010114 | VM_CR (AMD) | reads LOCK and SVMDIS; bits 63:5 #GP, others ignored | APM 2 15.30.1 |
//! | 0xC0010140-1 | OSVW_ID_Length, OSVW status (AMD) | when CPUID Fn8000_0001 ECX[9]: read 0, writes dropped | APM 2 3.9 |
//! | 0xC0010200-B | PerfEvtSel/PerfCtr 0-5 (AMD) | when PerfCtrExtCore: as the legacy ones | APM 2 13.2.1 |
//! | 0xC0011029 | DE_CFG (AMD) | reads 0, writes dropped | APM 2 A.2 |

use guest_log::RateLimitedLog;
use log::Level;

use super::cpuid::CpuidPolicy;
use crate::vcpu::VcpuState;

/// The result of an emulated RDMSR or WRMSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrOutcome {
    /// The access completed (for a read, with this value).
    Done(u64),
    /// The access raises #GP(0) in the guest.
    GeneralProtection,
}

/// The vendor CPUID leaf 0 names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Vendor {
    Intel,
    /// AMD, and Hygon, which implements AMD's MSRs.
    Amd,
    Other,
}

/// What the MSR table depends on: the CPU as the guest's CPUID shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuFacts {
    pub vendor: Vendor,
    /// The display family (SDM Vol 2A, CPUID leaf 1: family + extended family).
    pub family: u32,
    /// CPUID.1:EDX[7] MCE and [14] MCA.
    pub mce: bool,
    pub mca: bool,
    /// CPUID.7.0:EBX[1]: IA32_TSC_ADJUST.
    pub tsc_adjust: bool,
    /// CPUID Fn8000_0001 ECX[9]: OS-visible workaround MSRs.
    pub osvw: bool,
    /// CPUID Fn8000_0001 ECX[23]: the six core performance counters at 0xC0010200.
    pub perf_ctr_ext_core: bool,
    /// CPUID.0AH:EAX[15:8]: general-purpose counters of the architectural PMU.
    pub arch_pmu_counters: u8,
    /// The TSC rate, for PLATFORM_INFO's ratio.
    pub tsc_hz: u64,
    /// RDTSCP (Fn8000_0001 EDX[27]) or RDPID (7.0:ECX[22]): IA32_TSC_AUX.
    pub tsc_aux: bool,
}

impl CpuFacts {
    /// Reads the facts from the VM's CPUID table; `tsc_hz` is the rate of the
    /// guest's TSC.
    pub fn from_cpuid(cpuid: &CpuidPolicy, tsc_hz: u64) -> Self {
        let l0 = cpuid.lookup(0, 0, 0, 0, 1);
        let vendor = match (l0.ebx, l0.edx, l0.ecx) {
            // "GenuineIntel", "AuthenticAMD", "HygonGenuine".
            (0x756e_6547, 0x4965_6e69, 0x6c65_746e) => Vendor::Intel,
            (0x6874_7541, 0x6974_6e65, 0x444d_4163) => Vendor::Amd,
            (0x6f67_7948, 0x6e65_476e, 0x656e_6975) => Vendor::Amd,
            _ => Vendor::Other,
        };
        let l1 = cpuid.lookup(1, 0, 0, 0, 1);
        let base = (l1.eax >> 8) & 0xf;
        let family = if base == 0xf {
            base + ((l1.eax >> 20) & 0xff)
        } else {
            base
        };
        let e1 = cpuid.lookup(0x8000_0001, 0, 0, 0, 1);
        CpuFacts {
            vendor,
            family,
            mce: l1.edx & (1 << 7) != 0,
            mca: l1.edx & (1 << 14) != 0,
            tsc_adjust: cpuid.lookup(7, 0, 0, 0, 1).ebx & (1 << 1) != 0,
            osvw: e1.ecx & (1 << 9) != 0,
            perf_ctr_ext_core: e1.ecx & (1 << 23) != 0,
            arch_pmu_counters: (cpuid.lookup(0xa, 0, 0, 0, 1).eax >> 8) as u8,
            tsc_hz,
            tsc_aux: cpuid.offers_tsc_aux(),
        }
    }
}

// Architectural MSR indices (SDM Vol 4, Table 2-2; APM Vol 2, Appendix A).
const IA32_TIME_STAMP_COUNTER: u32 = 0x10;
const IA32_PLATFORM_ID: u32 = 0x17;
const IA32_FEATURE_CONTROL: u32 = 0x3a;
const IA32_TSC_ADJUST: u32 = 0x3b;
/// IA32_TSC_AUX: 32 bits of software data that RDTSCP and RDPID return
/// (SDM Vol 4 Table 2-2: bits 63:32 reserved; APM Vol 2 13.2.4).
const IA32_TSC_AUX: u32 = 0xc000_0103;
const IA32_BIOS_UPDT_TRIG: u32 = 0x79;
const IA32_BIOS_SIGN_ID: u32 = 0x8b;
const IA32_PMC0: u32 = 0xc1;
const MSR_PLATFORM_INFO: u32 = 0xce;
const IA32_MTRRCAP: u32 = 0xfe;
const IA32_MCG_CAP: u32 = 0x179;
const IA32_MCG_STATUS: u32 = 0x17a;
const IA32_MCG_CTL: u32 = 0x17b;
const IA32_PERFEVTSEL0: u32 = 0x186;
const IA32_MISC_ENABLE: u32 = 0x1a0;
const IA32_DEBUGCTL: u32 = 0x1d9;
const IA32_MTRR_PHYSBASE0: u32 = 0x200;
const IA32_MTRR_FIX64K_00000: u32 = 0x250;
const IA32_MTRR_FIX16K_80000: u32 = 0x258;
const IA32_MTRR_FIX16K_A0000: u32 = 0x259;
const IA32_MTRR_FIX4K_C0000: u32 = 0x268;
const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;
const IA32_MC0_CTL: u32 = 0x400;
const IA32_EFER: u32 = 0xc000_0080;
const AMD_PERF_EVT_SEL0: u32 = 0xc001_0000;
const AMD_PERF_CTR3: u32 = 0xc001_0007;
const AMD_SYSCFG: u32 = 0xc001_0010;
const AMD_HWCR: u32 = 0xc001_0015;
const AMD_NB_CFG: u32 = 0xc001_001f;
const AMD_INT_PENDING: u32 = 0xc001_0055;
const AMD_VM_CR: u32 = 0xc001_0114;
const AMD_OSVW_ID_LENGTH: u32 = 0xc001_0140;
const AMD_OSVW_STATUS: u32 = 0xc001_0141;
const AMD_PERF_CTL_EXT0: u32 = 0xc001_0200;
const AMD_PERF_CTR_EXT5: u32 = 0xc001_020b;
const AMD_DE_CFG: u32 = 0xc001_1029;

/// Variable-range MTRR pairs Keel offers (MTRRcap.VCNT).
const MTRR_VAR_COUNT: usize = 8;
/// MTRRcap: VCNT = 8, fixed-range MTRRs supported (bit 8), write-combining (bit 10).
const MTRRCAP_VALUE: u64 = (1 << 10) | (1 << 8) | MTRR_VAR_COUNT as u64;
/// MTRRdefType writable bits: type (7:0), FE (10), E (11).
const MTRR_DEF_TYPE_MASK: u64 = 0xcff;

/// Machine-check banks offered (MCG_CAP.Count).
const MC_BANKS: u32 = 4;
/// MCG_CAP: MCG_CTL_P (bit 8, IA32_MCG_CTL present) and the bank count
/// (SDM Vol 3B 16.3.1.1); no CMCI, no extended state, no software recovery.
const MCG_CAP_VALUE: u64 = (1 << 8) | MC_BANKS as u64;
/// MCG_STATUS: RIPV, EIPV, MCIP (bits 2:0); the rest is reserved.
const MCG_STATUS_MASK: u64 = 0x7;

/// MISC_ENABLE (SDM Vol 4 Table 2-2): fast strings (0), BTS unavailable
/// (11) and PEBS unavailable (12); bit 7, performance monitoring available,
/// is clear as there is no PMU.
const MISC_ENABLE_RESET: u64 = (1 << 0) | (1 << 11) | (1 << 12);
/// Read-only bits: performance monitoring available (7), BTS and PEBS unavailable.
const MISC_ENABLE_RO: u64 = (1 << 7) | (1 << 11) | (1 << 12);
/// Bits a write may set: fast strings (0), automatic thermal control (3),
/// xTPR message disable (23). Limit-CPUID-maxval (22) and XD disable (34)
/// would change what CPUID shows, which Keel does not model: setting them
/// raises #GP (writing them clear is allowed).
const MISC_ENABLE_RW: u64 = (1 << 0) | (1 << 3) | (1 << 23);
const MISC_ENABLE_CLEAR_ONLY: u64 = (1 << 22) | (1 << 34);

/// AMD PerfEvtSel reserved bits (APM Vol 2 13.2.1, Figure 13-7): 19, 21 and
/// 63:36 (the Host/Guest-only bits 41:40 need SVM, which is hidden).
const AMD_PERF_EVT_SEL_RESERVED: u64 = 0xffff_fff0_0028_0000;
/// VM_CR (APM Vol 2 15.30.1): LOCK (3) and SVMDIS (4) set: no nested SVM.
const VM_CR_VALUE: u64 = (1 << 3) | (1 << 4);
const VM_CR_RESERVED: u64 = !0x1f;

// EFER bits (APM Vol 2, 3.1.7).
const EFER_SCE: u64 = 1 << 0;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const EFER_NXE: u64 = 1 << 11;
const CR0_PG: u64 = 1 << 31;

/// How many distinct unknown MSRs are logged before Keel stops logging them.
const LOG_ONCE_SLOTS: usize = 32;

/// Per-vCPU MSR state.
#[derive(Debug, Clone)]
pub struct MsrPolicy {
    cpu: CpuFacts,
    misc_enable: u64,
    mtrr_def_type: u64,
    mtrr_var: [u64; 2 * MTRR_VAR_COUNT],
    mtrr_fixed: [u64; 11],
    mcg_status: u64,
    mcg_ctl: u64,
    mc_ctl: [u64; MC_BANKS as usize],
    /// IA32_TSC_ADJUST (SDM Vol 3B 18.17.3).
    tsc_adjust: u64,
    logged: [u32; LOG_ONCE_SLOTS],
    logged_count: usize,
    /// Refused EFER writes, which a guest can repeat at will.
    efer_log: RateLimitedLog,
}

/// What a write does to a register of the table.
enum Write {
    Accept,
    Refuse,
}

impl MsrPolicy {
    /// Power-on MSR state of a vCPU of the CPU `cpu` describes.
    pub fn new(cpu: CpuFacts) -> Self {
        MsrPolicy {
            cpu,
            misc_enable: MISC_ENABLE_RESET,
            mtrr_def_type: 0,
            mtrr_var: [0; 2 * MTRR_VAR_COUNT],
            mtrr_fixed: [0; 11],
            mcg_status: 0,
            mcg_ctl: 0,
            mc_ctl: [0; MC_BANKS as usize],
            tsc_adjust: 0,
            logged: [0; LOG_ONCE_SLOTS],
            logged_count: 0,
            efer_log: RateLimitedLog::new(),
        }
    }

    /// The CPU this policy follows.
    pub fn cpu(&self) -> &CpuFacts {
        &self.cpu
    }

    fn intel(&self) -> bool {
        self.cpu.vendor == Vendor::Intel
    }

    fn amd(&self) -> bool {
        self.cpu.vendor == Vendor::Amd
    }

    /// AMD families whose BKDG defines NB_CFG and the Interrupt Pending
    /// register (0Fh through 16h; later families' PPRs do not).
    fn amd_k8_to_16h(&self) -> bool {
        self.amd() && (0xf..=0x16).contains(&self.cpu.family)
    }

    fn fixed_mtrr_index(msr: u32) -> Option<usize> {
        match msr {
            IA32_MTRR_FIX64K_00000 => Some(0),
            IA32_MTRR_FIX16K_80000 => Some(1),
            IA32_MTRR_FIX16K_A0000 => Some(2),
            IA32_MTRR_FIX4K_C0000..=0x26f => Some(3 + (msr - IA32_MTRR_FIX4K_C0000) as usize),
            _ => None,
        }
    }

    fn var_mtrr_index(msr: u32) -> Option<usize> {
        let i = msr.checked_sub(IA32_MTRR_PHYSBASE0)? as usize;
        (i < 2 * MTRR_VAR_COUNT).then_some(i)
    }

    /// The bank and register (0 CTL, 1 STATUS, 2 ADDR, 3 MISC) of an MCi MSR.
    fn mc_bank(&self, msr: u32) -> Option<(usize, u32)> {
        let i = msr.checked_sub(IA32_MC0_CTL)?;
        (self.cpu.mca && i < 4 * MC_BANKS).then_some(((i / 4) as usize, i % 4))
    }

    /// An AMD core performance counter MSR: `Some(true)` for a PerfEvtSel.
    fn amd_perf(&self, msr: u32) -> Option<bool> {
        if !self.amd() {
            return None;
        }
        match msr {
            AMD_PERF_EVT_SEL0..=AMD_PERF_CTR3 => Some(msr < AMD_PERF_EVT_SEL0 + 4),
            AMD_PERF_CTL_EXT0..=AMD_PERF_CTR_EXT5 if self.cpu.perf_ctr_ext_core => {
                Some((msr - AMD_PERF_CTL_EXT0).is_multiple_of(2))
            }
            _ => None,
        }
    }

    /// An Intel architectural counter or event select CPUID leaf 0AH offers.
    fn intel_arch_pmu(&self, msr: u32) -> bool {
        let n = u32::from(self.cpu.arch_pmu_counters);
        self.intel()
            && (msr.checked_sub(IA32_PMC0).is_some_and(|i| i < n)
                || msr.checked_sub(IA32_PERFEVTSEL0).is_some_and(|i| i < n))
    }

    /// RDPMC of counter `index` (ECX) at privilege level `cpl` with CR4.PCE
    /// `pce`: the counters of the no-PMU personality read 0.
    ///
    /// #GP(0) when CPL > 0 and CR4.PCE = 0 (real mode runs at CPL 0,
    /// virtual-8086 mode at CPL 3), or when `index` names no counter the CPU
    /// has (SDM Vol 2B RDPMC; APM Vol 3 RDPMC). AMD: ECX 0-3 select the
    /// legacy counters, 0-5 the core counters with PerfCtrExtCore (APM Vol 2
    /// 13.2.1); the northbridge and L2I counters (6-15) need CPUID bits Keel
    /// does not offer. Intel: ECX[30] = 0 selects the general-purpose
    /// counters CPUID.0AH:EAX[15:8] counts; ECX[30] = 1 the fixed counters,
    /// of which Keel offers none (SDM Vol 3B 20.2.1, 20.2.2).
    pub fn rdpmc(&self, index: u32, cpl: u8, pce: bool) -> MsrOutcome {
        if cpl != 0 && !pce {
            return MsrOutcome::GeneralProtection;
        }
        let counters = if self.amd() {
            if self.cpu.perf_ctr_ext_core {
                6
            } else {
                4
            }
        } else if self.intel() {
            u32::from(self.cpu.arch_pmu_counters)
        } else {
            0
        };
        if index < counters {
            MsrOutcome::Done(0)
        } else {
            MsrOutcome::GeneralProtection
        }
    }

    /// RDMSR `msr`; `guest_tsc` is the guest's current time-stamp counter.
    pub fn read(&mut self, msr: u32, vcpu: &impl VcpuState, guest_tsc: u64) -> MsrOutcome {
        let intel = self.intel();
        let amd = self.amd();
        let value = match msr {
            IA32_EFER => vcpu.efer(),
            IA32_TIME_STAMP_COUNTER => guest_tsc,
            IA32_TSC_ADJUST if self.cpu.tsc_adjust => self.tsc_adjust,
            IA32_TSC_AUX if self.cpu.tsc_aux => u64::from(vcpu.tsc_aux()),
            // Locked with VMX disabled: consistent with CPUID hiding VMX.
            IA32_FEATURE_CONTROL if intel => 1,
            IA32_PLATFORM_ID if intel => 0,
            MSR_PLATFORM_INFO if intel => (self.cpu.tsc_hz / 100_000_000).min(0xff) << 8,
            IA32_MISC_ENABLE if intel => self.misc_enable,
            IA32_BIOS_SIGN_ID => 0,
            IA32_MCG_CAP if self.cpu.mca => MCG_CAP_VALUE,
            IA32_MCG_STATUS if self.cpu.mce || self.cpu.mca => self.mcg_status,
            IA32_MCG_CTL if self.cpu.mca => self.mcg_ctl,
            IA32_DEBUGCTL => 0,
            AMD_SYSCFG | AMD_HWCR | AMD_DE_CFG if amd => 0,
            AMD_NB_CFG | AMD_INT_PENDING if self.amd_k8_to_16h() => 0,
            AMD_VM_CR if amd => VM_CR_VALUE,
            AMD_OSVW_ID_LENGTH | AMD_OSVW_STATUS if amd && self.cpu.osvw => 0,
            IA32_MTRRCAP => MTRRCAP_VALUE,
            IA32_MTRR_DEF_TYPE => self.mtrr_def_type,
            _ => {
                if let Some(i) = Self::var_mtrr_index(msr) {
                    self.mtrr_var[i]
                } else if let Some(i) = Self::fixed_mtrr_index(msr) {
                    self.mtrr_fixed[i]
                } else if let Some((bank, reg)) = self.mc_bank(msr) {
                    // No error is ever reported: STATUS, ADDR and MISC read 0.
                    if reg == 0 {
                        self.mc_ctl[bank]
                    } else {
                        0
                    }
                } else if self.amd_perf(msr).is_some() || self.intel_arch_pmu(msr) {
                    // No PMU: the counters never count.
                    0
                } else {
                    self.log_once(msr, "RDMSR of unknown MSR", 0);
                    return MsrOutcome::GeneralProtection;
                }
            }
        };
        MsrOutcome::Done(value)
    }

    /// WRMSR `msr` with `value`; `host_tsc` is the host's TSC now (the
    /// guest's is it plus the vCPU's TSC offset).
    pub fn write(
        &mut self,
        msr: u32,
        value: u64,
        vcpu: &mut impl VcpuState,
        host_tsc: u64,
    ) -> MsrOutcome {
        let intel = self.intel();
        let amd = self.amd();
        let known = match msr {
            IA32_EFER => return self.write_efer(value, vcpu),
            IA32_TIME_STAMP_COUNTER => {
                // SDM Vol 3B 18.17.3: a write to the TSC adds the change to
                // IA32_TSC_ADJUST; only the offset changes.
                let old = host_tsc.wrapping_add(vcpu.tsc_offset());
                self.tsc_adjust = self.tsc_adjust.wrapping_add(value.wrapping_sub(old));
                vcpu.set_tsc_offset(value.wrapping_sub(host_tsc));
                Some(Write::Accept)
            }
            IA32_TSC_ADJUST if self.cpu.tsc_adjust => {
                // A write to TSC_ADJUST adds the change to the TSC.
                let delta = value.wrapping_sub(self.tsc_adjust);
                self.tsc_adjust = value;
                vcpu.set_tsc_offset(vcpu.tsc_offset().wrapping_add(delta));
                Some(Write::Accept)
            }
            IA32_TSC_AUX if self.cpu.tsc_aux => Some(if value >> 32 == 0 {
                vcpu.set_tsc_aux(value as u32);
                Write::Accept
            } else {
                Write::Refuse
            }),
            // Writes that firmware and OSes issue and that have no effect
            // here: microcode loading, debug control, and AMD configuration
            // registers.
            IA32_BIOS_SIGN_ID | IA32_DEBUGCTL => Some(Write::Accept),
            IA32_BIOS_UPDT_TRIG if intel => Some(Write::Accept),
            AMD_HWCR | AMD_DE_CFG | AMD_SYSCFG if amd => Some(Write::Accept),
            AMD_NB_CFG | AMD_INT_PENDING if self.amd_k8_to_16h() => Some(Write::Accept),
            AMD_OSVW_ID_LENGTH | AMD_OSVW_STATUS if amd && self.cpu.osvw => Some(Write::Accept),
            // LOCK is set: SVMDIS and LOCK ignore writes (APM Vol 2 15.30.1).
            AMD_VM_CR if amd => Some(Self::refuse_if(value & VM_CR_RESERVED != 0)),
            IA32_MCG_STATUS if self.cpu.mce || self.cpu.mca => {
                Some(if value & !MCG_STATUS_MASK == 0 {
                    self.mcg_status = value;
                    Write::Accept
                } else {
                    Write::Refuse
                })
            }
            // SDM Vol 3B 16.3.1.3: all ones enables, all zeros disables.
            IA32_MCG_CTL if self.cpu.mca => Some(if value == 0 || value == u64::MAX {
                self.mcg_ctl = value;
                Write::Accept
            } else {
                Write::Refuse
            }),
            IA32_MISC_ENABLE if intel => Some(self.write_misc_enable(value)),
            IA32_MTRR_DEF_TYPE => Some(if value & !MTRR_DEF_TYPE_MASK == 0 {
                self.mtrr_def_type = value;
                Write::Accept
            } else {
                Write::Refuse
            }),
            _ => {
                if let Some(i) = Self::var_mtrr_index(msr) {
                    self.mtrr_var[i] = value;
                    Some(Write::Accept)
                } else if let Some(i) = Self::fixed_mtrr_index(msr) {
                    self.mtrr_fixed[i] = value;
                    Some(Write::Accept)
                } else if let Some((bank, reg)) = self.mc_bank(msr) {
                    Some(self.write_mc_bank(bank, reg, value))
                } else if let Some(evt_sel) = self.amd_perf(msr) {
                    Some(Self::refuse_if(
                        evt_sel && value & AMD_PERF_EVT_SEL_RESERVED != 0,
                    ))
                } else if self.intel_arch_pmu(msr) {
                    Some(Write::Accept)
                } else {
                    None
                }
            }
        };
        match known {
            Some(Write::Accept) => MsrOutcome::Done(0),
            Some(Write::Refuse) => {
                self.log_once(
                    msr,
                    "WRMSR with reserved bits or an unsupported value",
                    value,
                );
                MsrOutcome::GeneralProtection
            }
            None => {
                self.log_once(msr, "WRMSR of unknown MSR", value);
                MsrOutcome::GeneralProtection
            }
        }
    }

    fn refuse_if(bad: bool) -> Write {
        if bad {
            Write::Refuse
        } else {
            Write::Accept
        }
    }

    /// MISC_ENABLE (SDM Vol 4 Table 2-2): read-only bits ignore writes;
    /// bits Keel does not implement raise #GP when set.
    fn write_misc_enable(&mut self, value: u64) -> Write {
        if value & !(MISC_ENABLE_RW | MISC_ENABLE_RO | MISC_ENABLE_CLEAR_ONLY) != 0
            || value & MISC_ENABLE_CLEAR_ONLY != 0
        {
            return Write::Refuse;
        }
        self.misc_enable = (self.misc_enable & MISC_ENABLE_RO) | (value & MISC_ENABLE_RW);
        Write::Accept
    }

    /// The MCi registers (SDM Vol 3B 16.3.2): CTL takes all zeros or all
    /// ones; STATUS, ADDR and MISC hold what the hardware logged, which is
    /// never anything here, and only zeros may be written to them (writing
    /// ones raises #GP, 16.3.2.2).
    fn write_mc_bank(&mut self, bank: usize, reg: u32, value: u64) -> Write {
        match reg {
            0 if value == 0 || value == u64::MAX => {
                self.mc_ctl[bank] = value;
                Write::Accept
            }
            1..=3 if value == 0 => Write::Accept,
            _ => Write::Refuse,
        }
    }

    /// EFER loads: reserved bits and a change of LME while paging is on raise
    /// #GP; LMA is owned by the CPU (APM Vol 2, 14.6.1).
    fn write_efer(&mut self, value: u64, vcpu: &mut impl VcpuState) -> MsrOutcome {
        let old = vcpu.efer();
        let writable = EFER_SCE | EFER_LME | EFER_NXE;
        if value & !(writable | EFER_LMA) != 0 {
            self.efer_log.log(
                Level::Warn,
                format_args!("guest WRMSR EFER {value:#x} sets reserved or hidden bits: #GP"),
            );
            return MsrOutcome::GeneralProtection;
        }
        if vcpu.cr0() & CR0_PG != 0 && (value ^ old) & EFER_LME != 0 {
            return MsrOutcome::GeneralProtection;
        }
        vcpu.set_efer((value & writable) | (old & EFER_LMA));
        MsrOutcome::Done(0)
    }

    /// Logs a refused access of `msr` the first time only: the set of
    /// logged MSRs is bounded, so a guest sweeping the index space costs
    /// [`LOG_ONCE_SLOTS`] lines.
    fn log_once(&mut self, msr: u32, what: &str, value: u64) {
        if self.logged[..self.logged_count].contains(&msr) {
            return;
        }
        if self.logged_count < LOG_ONCE_SLOTS {
            self.logged[self.logged_count] = msr;
            self.logged_count += 1;
            log::warn!("guest {what} {msr:#x} (value {value:#x}): #GP(0) injected; further accesses not logged");
        }
    }

    /// MSRs whose accesses have been refused and logged (for tests and diagnostics).
    pub fn logged_unknown(&self) -> &[u32] {
        &self.logged[..self.logged_count]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::CpuidResult;
    use crate::vcpu::tests::FakeVcpu;

    /// QEMU's `qemu64`: AuthenticAMD, family 0Fh, MCE and MCA, nothing else.
    fn amd_k8() -> CpuFacts {
        CpuFacts {
            vendor: Vendor::Amd,
            family: 0xf,
            mce: true,
            mca: true,
            tsc_adjust: false,
            osvw: false,
            perf_ctr_ext_core: false,
            arch_pmu_counters: 0,
            tsc_hz: 2_800_000_000,
            tsc_aux: false,
        }
    }

    /// A Skylake-like Intel CPU with TSC_ADJUST and Keel's zero leaf 0AH.
    fn intel() -> CpuFacts {
        CpuFacts {
            vendor: Vendor::Intel,
            family: 6,
            tsc_adjust: true,
            ..amd_k8()
        }
    }

    fn rd(p: &mut MsrPolicy, msr: u32) -> MsrOutcome {
        p.read(msr, &FakeVcpu::default(), 0)
    }

    fn wr(p: &mut MsrPolicy, msr: u32, value: u64) -> MsrOutcome {
        p.write(msr, value, &mut FakeVcpu::default(), 0)
    }

    const GP: MsrOutcome = MsrOutcome::GeneralProtection;
    const OK: MsrOutcome = MsrOutcome::Done(0);

    #[test]
    fn facts_come_from_cpuid() {
        let host = |leaf: u32, sub: u32| match (leaf, sub) {
            (0, _) => CpuidResult {
                eax: 0xd,
                ebx: 0x6874_7541,
                edx: 0x6974_6e65,
                ecx: 0x444d_4163,
            },
            // qemu64: family 0Fh model 6Bh; MCE, MCA.
            (1, _) => CpuidResult {
                eax: 0x0006_0fb1,
                edx: (1 << 7) | (1 << 14),
                ..Default::default()
            },
            (7, 0) => CpuidResult {
                ebx: 1 << 1,
                ..Default::default()
            },
            (0xa, _) => CpuidResult {
                eax: 0x0000_0402,
                ..Default::default()
            },
            (0x8000_0000, _) => CpuidResult {
                eax: 0x8000_0001,
                ..Default::default()
            },
            (0x8000_0001, _) => CpuidResult {
                ecx: (1 << 9) | (1 << 23),
                ..Default::default()
            },
            _ => CpuidResult::default(),
        };
        let f = CpuFacts::from_cpuid(&CpuidPolicy::from_host(1, host), 1);
        assert_eq!(f.vendor, Vendor::Amd);
        assert_eq!(f.family, 0xf);
        assert!(f.mce && f.mca && f.tsc_adjust && f.osvw && f.perf_ctr_ext_core);
        assert_eq!(f.arch_pmu_counters, 0, "Keel's leaf 0AH is zero");
    }

    #[test]
    fn unknown_msrs_raise_gp_and_are_logged_once() {
        let mut p = MsrPolicy::new(amd_k8());
        assert_eq!(rd(&mut p, 0xdead_beef), GP);
        assert_eq!(rd(&mut p, 0xdead_beef), GP);
        assert_eq!(wr(&mut p, 0xdead_beef, 1), GP);
        assert_eq!(p.logged_unknown(), &[0xdead_beef]);
        // The SVM MSRs are hidden along with CPUID's SVM bit.
        assert_eq!(rd(&mut p, 0xc001_0117), GP);
        assert_eq!(wr(&mut p, 0xc001_0117, 0), GP);
        for msr in 0..100 {
            rd(&mut p, 0x1000 + msr);
        }
        assert_eq!(p.logged_unknown().len(), LOG_ONCE_SLOTS, "bounded");
    }

    #[test]
    fn a_refused_write_is_logged_once() {
        log_capture::start();
        let mut p = MsrPolicy::new(amd_k8());
        for _ in 0..1000 {
            assert_eq!(wr(&mut p, AMD_PERF_EVT_SEL0 + 1, 1 << 63), GP);
        }
        assert_eq!(log_capture::count(log::Level::Warn, "0xc0010001 (value"), 1);
    }

    #[test]
    fn vendor_msrs_follow_the_vendor() {
        let mut a = MsrPolicy::new(amd_k8());
        let mut i = MsrPolicy::new(intel());
        for msr in [
            IA32_FEATURE_CONTROL,
            IA32_PLATFORM_ID,
            MSR_PLATFORM_INFO,
            IA32_MISC_ENABLE,
        ] {
            assert_eq!(rd(&mut a, msr), GP, "{msr:#x} is Intel's");
            assert!(matches!(rd(&mut i, msr), MsrOutcome::Done(_)), "{msr:#x}");
        }
        for msr in [
            AMD_SYSCFG,
            AMD_HWCR,
            AMD_DE_CFG,
            AMD_VM_CR,
            AMD_PERF_EVT_SEL0,
            AMD_NB_CFG,
        ] {
            assert_eq!(rd(&mut i, msr), GP, "{msr:#x} is AMD's");
            assert!(matches!(rd(&mut a, msr), MsrOutcome::Done(_)), "{msr:#x}");
        }
        assert_eq!(wr(&mut a, IA32_BIOS_UPDT_TRIG, 0), GP);
        assert_eq!(wr(&mut i, IA32_BIOS_UPDT_TRIG, 0), OK);
    }

    #[test]
    fn feature_control_is_locked_and_platform_info_gives_the_tsc_ratio() {
        let mut p = MsrPolicy::new(intel());
        assert_eq!(rd(&mut p, IA32_FEATURE_CONTROL), MsrOutcome::Done(1));
        assert_eq!(wr(&mut p, IA32_FEATURE_CONTROL, 5), GP);
        assert_eq!(rd(&mut p, MSR_PLATFORM_INFO), MsrOutcome::Done(28 << 8));
        assert_eq!(wr(&mut p, MSR_PLATFORM_INFO, 0), GP, "read-only");
        assert_eq!(rd(&mut p, 0x1b), GP, "IA32_APIC_BASE is the platform's");
    }

    #[test]
    fn amd_legacy_counters_read_zero_and_drop_writes() {
        let mut p = MsrPolicy::new(amd_k8());
        for msr in AMD_PERF_EVT_SEL0..=AMD_PERF_CTR3 {
            assert_eq!(wr(&mut p, msr, 0x53_0076), OK, "{msr:#x}");
            assert_eq!(rd(&mut p, msr), MsrOutcome::Done(0), "{msr:#x}");
        }
        // Reserved PerfEvtSel bits (19, 21, 63:36): #GP; counters take any value.
        assert_eq!(wr(&mut p, AMD_PERF_EVT_SEL0, 1 << 19), GP);
        assert_eq!(wr(&mut p, AMD_PERF_EVT_SEL0 + 3, 1 << 40), GP);
        assert_eq!(wr(&mut p, AMD_PERF_EVT_SEL0 + 4, u64::MAX), OK);
        assert_eq!(rd(&mut p, AMD_PERF_CTR3 + 1), GP);
        // The core-extension counters exist only with PerfCtrExtCore.
        assert_eq!(rd(&mut p, AMD_PERF_CTL_EXT0), GP);
        let mut ext = MsrPolicy::new(CpuFacts {
            perf_ctr_ext_core: true,
            ..amd_k8()
        });
        for msr in AMD_PERF_CTL_EXT0..=AMD_PERF_CTR_EXT5 {
            assert_eq!(rd(&mut ext, msr), MsrOutcome::Done(0), "{msr:#x}");
        }
        assert_eq!(wr(&mut ext, AMD_PERF_CTL_EXT0 + 2, 1 << 21), GP);
        assert_eq!(wr(&mut ext, AMD_PERF_CTL_EXT0 + 3, 5), OK);
        assert_eq!(rd(&mut ext, AMD_PERF_CTR_EXT5 + 1), GP);
    }

    #[test]
    fn intel_arch_pmu_exists_only_as_leaf_0a_says() {
        let mut p = MsrPolicy::new(intel());
        for msr in [IA32_PMC0, IA32_PERFEVTSEL0, 0x309, 0x38d, 0x38f, 0x345] {
            assert_eq!(rd(&mut p, msr), GP, "{msr:#x}: no PMU");
            assert_eq!(wr(&mut p, msr, 0), GP, "{msr:#x}: no PMU");
        }
        let mut two = MsrPolicy::new(CpuFacts {
            arch_pmu_counters: 2,
            ..intel()
        });
        assert_eq!(rd(&mut two, IA32_PMC0 + 1), MsrOutcome::Done(0));
        assert_eq!(wr(&mut two, IA32_PERFEVTSEL0 + 1, 0x4300c0), OK);
        assert_eq!(rd(&mut two, IA32_PMC0 + 2), GP);
    }

    #[test]
    fn machine_check_registers() {
        let mut p = MsrPolicy::new(amd_k8());
        assert_eq!(rd(&mut p, IA32_MCG_CAP), MsrOutcome::Done(0x104));
        assert_eq!(wr(&mut p, IA32_MCG_CAP, 0), GP, "read-only");
        assert_eq!(wr(&mut p, IA32_MCG_CTL, u64::MAX), OK);
        assert_eq!(rd(&mut p, IA32_MCG_CTL), MsrOutcome::Done(u64::MAX));
        assert_eq!(wr(&mut p, IA32_MCG_CTL, 1), GP);
        assert_eq!(wr(&mut p, IA32_MCG_STATUS, 4), OK);
        assert_eq!(rd(&mut p, IA32_MCG_STATUS), MsrOutcome::Done(4));
        assert_eq!(wr(&mut p, IA32_MCG_STATUS, 8), GP, "reserved bit 3");
        // Four banks: 0x400..=0x40F.
        for bank in 0..MC_BANKS {
            let ctl = IA32_MC0_CTL + 4 * bank;
            assert_eq!(wr(&mut p, ctl, u64::MAX), OK);
            assert_eq!(rd(&mut p, ctl), MsrOutcome::Done(u64::MAX));
            assert_eq!(wr(&mut p, ctl, 0x10), GP);
            for reg in 1..4 {
                assert_eq!(wr(&mut p, ctl + reg, 0), OK);
                assert_eq!(wr(&mut p, ctl + reg, 1), GP, "only zeros");
                assert_eq!(rd(&mut p, ctl + reg), MsrOutcome::Done(0));
            }
        }
        assert_eq!(rd(&mut p, IA32_MC0_CTL + 4 * MC_BANKS), GP);
        // Without MCE/MCA in CPUID the registers do not exist.
        let mut none = MsrPolicy::new(CpuFacts {
            mce: false,
            mca: false,
            ..amd_k8()
        });
        for msr in [IA32_MCG_CAP, IA32_MCG_STATUS, IA32_MCG_CTL, IA32_MC0_CTL] {
            assert_eq!(rd(&mut none, msr), GP, "{msr:#x}");
        }
    }

    #[test]
    fn misc_enable_bits() {
        let mut p = MsrPolicy::new(intel());
        assert_eq!(rd(&mut p, IA32_MISC_ENABLE), MsrOutcome::Done(0x1801));
        // Read-only bits ignore writes; writable ones stick.
        assert_eq!(wr(&mut p, IA32_MISC_ENABLE, 0x8 | (1 << 7)), OK);
        assert_eq!(rd(&mut p, IA32_MISC_ENABLE), MsrOutcome::Done(0x1808));
        assert_eq!(wr(&mut p, IA32_MISC_ENABLE, 1 << 22), GP, "limit CPUID");
        assert_eq!(wr(&mut p, IA32_MISC_ENABLE, 1 << 34), GP, "XD disable");
        assert_eq!(wr(&mut p, IA32_MISC_ENABLE, 1 << 40), GP, "reserved");
    }

    #[test]
    fn amd_configuration_registers() {
        let mut p = MsrPolicy::new(amd_k8());
        assert_eq!(
            rd(&mut p, AMD_VM_CR),
            MsrOutcome::Done(0x18),
            "LOCK, SVMDIS"
        );
        assert_eq!(wr(&mut p, AMD_VM_CR, 0), OK, "locked: ignored");
        assert_eq!(rd(&mut p, AMD_VM_CR), MsrOutcome::Done(0x18));
        assert_eq!(wr(&mut p, AMD_VM_CR, 1 << 5), GP);
        assert_eq!(rd(&mut p, AMD_INT_PENDING), MsrOutcome::Done(0));
        assert_eq!(wr(&mut p, AMD_INT_PENDING, 1 << 27), OK);
        assert_eq!(rd(&mut p, AMD_NB_CFG), MsrOutcome::Done(0));
        assert_eq!(rd(&mut p, AMD_OSVW_ID_LENGTH), GP, "OSVW not offered");
        // Family 17h's PPR has no NB_CFG nor Interrupt Pending register.
        let mut zen = MsrPolicy::new(CpuFacts {
            family: 0x17,
            osvw: true,
            ..amd_k8()
        });
        assert_eq!(rd(&mut zen, AMD_INT_PENDING), GP);
        assert_eq!(rd(&mut zen, AMD_NB_CFG), GP);
        assert_eq!(rd(&mut zen, AMD_OSVW_ID_LENGTH), MsrOutcome::Done(0));
        assert_eq!(rd(&mut zen, AMD_OSVW_STATUS), MsrOutcome::Done(0));
    }

    /// SDM Vol 3B 18.17.3: a TSC write adds its change to TSC_ADJUST; a
    /// TSC_ADJUST write adds its change to the TSC.
    #[test]
    fn tsc_adjust_follows_the_tsc() {
        let mut p = MsrPolicy::new(intel());
        let mut v = FakeVcpu::default();
        let host = 1000;
        assert_eq!(p.read(IA32_TSC_ADJUST, &v, 0), MsrOutcome::Done(0));
        // TSC 1000 -> 5000: the adjust grows by 4000.
        assert_eq!(p.write(IA32_TIME_STAMP_COUNTER, 5000, &mut v, host), OK);
        assert_eq!(host.wrapping_add(v.tsc_offset), 5000);
        assert_eq!(p.read(IA32_TSC_ADJUST, &v, 0), MsrOutcome::Done(4000));
        // Adjust 4000 -> 3000: the TSC falls by 1000.
        assert_eq!(p.write(IA32_TSC_ADJUST, 3000, &mut v, host), OK);
        assert_eq!(host.wrapping_add(v.tsc_offset), 4000);
        assert_eq!(p.read(IA32_TSC_ADJUST, &v, 0), MsrOutcome::Done(3000));
        // Without CPUID.7:EBX[1] there is no TSC_ADJUST.
        let mut a = MsrPolicy::new(amd_k8());
        assert_eq!(a.read(IA32_TSC_ADJUST, &v, 0), GP);
        assert_eq!(
            a.read(IA32_TIME_STAMP_COUNTER, &v, 1234),
            MsrOutcome::Done(1234)
        );
    }

    #[test]
    fn mtrrs_round_trip_and_check_reserved_bits() {
        let mut p = MsrPolicy::new(amd_k8());
        assert_eq!(rd(&mut p, IA32_MTRRCAP), MsrOutcome::Done(0x508));
        assert_eq!(wr(&mut p, IA32_MTRR_DEF_TYPE, 0xc06), OK);
        assert_eq!(rd(&mut p, IA32_MTRR_DEF_TYPE), MsrOutcome::Done(0xc06));
        assert_eq!(wr(&mut p, IA32_MTRR_DEF_TYPE, 0x1000), GP);
        assert_eq!(wr(&mut p, 0x20f, 0x1234_5800), OK);
        assert_eq!(rd(&mut p, 0x20f), MsrOutcome::Done(0x1234_5800));
        assert_eq!(rd(&mut p, 0x210), GP, "only 8 variable pairs");
        assert_eq!(wr(&mut p, 0x26f, 0x0606_0606_0606_0606), OK);
        assert_eq!(rd(&mut p, 0x26f), MsrOutcome::Done(0x0606_0606_0606_0606));
    }

    /// Finding #12 of issue 11: a guest repeating a refused EFER write gets
    /// #GP each time but Keel logs only a few lines, not one per write.
    #[test]
    fn a_repeated_bad_efer_write_is_logged_a_bounded_number_of_times() {
        log_capture::start();
        let mut p = MsrPolicy::new(amd_k8());
        for _ in 0..100_000 {
            assert_eq!(wr(&mut p, IA32_EFER, 1 << 12), GP);
        }
        let lines = log_capture::count(log::Level::Warn, "EFER");
        assert!((1..=24).contains(&lines), "{lines} lines");
    }

    #[test]
    fn efer_rules() {
        let mut p = MsrPolicy::new(amd_k8());
        let mut v = FakeVcpu::default();
        assert_eq!(p.write(IA32_EFER, EFER_LME | EFER_SCE, &mut v, 0), OK);
        assert_eq!(v.efer, EFER_LME | EFER_SCE);
        assert_eq!(
            p.read(IA32_EFER, &v, 0),
            MsrOutcome::Done(EFER_LME | EFER_SCE)
        );
        // SVME (bit 12) is hidden along with SVM itself.
        assert_eq!(p.write(IA32_EFER, 1 << 12, &mut v, 0), GP);
        // LMA is the CPU's: a write cannot set it.
        assert_eq!(p.write(IA32_EFER, EFER_LME | EFER_LMA, &mut v, 0), OK);
        assert_eq!(v.efer & EFER_LMA, 0);
        // With paging on, LME cannot change, and LMA is preserved.
        v.cr0 |= CR0_PG;
        v.efer = EFER_LME | EFER_LMA;
        assert_eq!(p.write(IA32_EFER, 0, &mut v, 0), GP);
        assert_eq!(p.write(IA32_EFER, EFER_LME | EFER_NXE, &mut v, 0), OK);
        assert_eq!(v.efer, EFER_LME | EFER_LMA | EFER_NXE);
    }

    #[test]
    fn ignored_writes() {
        let mut p = MsrPolicy::new(amd_k8());
        assert_eq!(wr(&mut p, IA32_BIOS_SIGN_ID, 0), OK);
        assert_eq!(rd(&mut p, IA32_BIOS_SIGN_ID), MsrOutcome::Done(0));
        assert_eq!(wr(&mut p, IA32_DEBUGCTL, 1), OK);
        assert!(p.logged_unknown().is_empty());
    }
}
