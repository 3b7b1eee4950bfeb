//! MSR policy: the model-specific registers a guest may use, and #GP for the rest.
//!
//! MSRs that live in the backend's guest state (the SYSCALL and SYSENTER MSRs,
//! FS/GS bases, PAT) are passed through by the backend's MSR permission map and
//! never reach this file. The local APIC's MSRs (IA32_APIC_BASE, the x2APIC
//! range, TSC_DEADLINE) belong to the platform's interrupt controllers, which
//! the exit handler asks first (`Platform::msr_read` / `msr_write`). EFER is intercepted so the virtualization-enable bit
//! stays hidden; it is checked here and stored through [`VcpuState::set_efer`].
//! Every other MSR is listed below; an MSR that is not listed raises #GP(0), as
//! on a CPU that does not implement it (SDM Vol 2B, RDMSR/WRMSR), and is logged
//! once.

use guest_log::RateLimitedLog;
use log::Level;

use crate::vcpu::VcpuState;

/// The result of an emulated RDMSR or WRMSR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsrOutcome {
    /// The access completed (for a read, with this value).
    Done(u64),
    /// The access raises #GP(0) in the guest.
    GeneralProtection,
}

// Architectural MSR indices (SDM Vol 4, Table 2-2; APM Vol 2, Appendix A).
const IA32_TIME_STAMP_COUNTER: u32 = 0x10;
const IA32_PLATFORM_ID: u32 = 0x17;
const IA32_FEATURE_CONTROL: u32 = 0x3a;
const IA32_BIOS_UPDT_TRIG: u32 = 0x79;
const IA32_BIOS_SIGN_ID: u32 = 0x8b;
const IA32_MTRRCAP: u32 = 0xfe;
const IA32_MCG_CAP: u32 = 0x179;
const IA32_MCG_STATUS: u32 = 0x17a;
const IA32_MISC_ENABLE: u32 = 0x1a0;
const IA32_DEBUGCTL: u32 = 0x1d9;
const IA32_MTRR_PHYSBASE0: u32 = 0x200;
const IA32_MTRR_FIX64K_00000: u32 = 0x250;
const IA32_MTRR_FIX16K_80000: u32 = 0x258;
const IA32_MTRR_FIX16K_A0000: u32 = 0x259;
const IA32_MTRR_FIX4K_C0000: u32 = 0x268;
const IA32_MTRR_DEF_TYPE: u32 = 0x2ff;
const IA32_EFER: u32 = 0xc000_0080;
const AMD_SYSCFG: u32 = 0xc001_0010;
const AMD_HWCR: u32 = 0xc001_0015;
const AMD_DE_CFG: u32 = 0xc001_1029;

/// Variable-range MTRR pairs Keel offers (MTRRcap.VCNT).
const MTRR_VAR_COUNT: usize = 8;
/// MTRRcap: VCNT = 8, fixed-range MTRRs supported (bit 8), write-combining (bit 10).
const MTRRCAP_VALUE: u64 = (1 << 10) | (1 << 8) | MTRR_VAR_COUNT as u64;
/// MTRRdefType writable bits: type (7:0), FE (10), E (11).
const MTRR_DEF_TYPE_MASK: u64 = 0xcff;

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
    misc_enable: u64,
    mtrr_def_type: u64,
    mtrr_var: [u64; 2 * MTRR_VAR_COUNT],
    mtrr_fixed: [u64; 11],
    logged: [u32; LOG_ONCE_SLOTS],
    logged_count: usize,
    /// Refused EFER writes, which a guest can repeat at will.
    efer_log: RateLimitedLog,
}

impl Default for MsrPolicy {
    fn default() -> Self {
        Self::new()
    }
}

impl MsrPolicy {
    /// Power-on MSR state of a vCPU.
    pub fn new() -> Self {
        MsrPolicy {
            // Fast-strings enable (bit 0), as firmware leaves it.
            misc_enable: 1,
            mtrr_def_type: 0,
            mtrr_var: [0; 2 * MTRR_VAR_COUNT],
            mtrr_fixed: [0; 11],
            logged: [0; LOG_ONCE_SLOTS],
            logged_count: 0,
            efer_log: RateLimitedLog::new(),
        }
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

    /// RDMSR `msr`; `guest_tsc` is the guest's current time-stamp counter.
    pub fn read(&mut self, msr: u32, vcpu: &impl VcpuState, guest_tsc: u64) -> MsrOutcome {
        let value = match msr {
            IA32_EFER => vcpu.efer(),
            IA32_TIME_STAMP_COUNTER => guest_tsc,
            // Locked with VMX disabled: consistent with CPUID hiding VMX.
            IA32_FEATURE_CONTROL => 1,
            IA32_PLATFORM_ID | IA32_BIOS_SIGN_ID | IA32_MCG_CAP | IA32_MCG_STATUS => 0,
            IA32_DEBUGCTL | AMD_SYSCFG | AMD_HWCR | AMD_DE_CFG => 0,
            IA32_MISC_ENABLE => self.misc_enable,
            IA32_MTRRCAP => MTRRCAP_VALUE,
            IA32_MTRR_DEF_TYPE => self.mtrr_def_type,
            _ => {
                if let Some(i) = Self::var_mtrr_index(msr) {
                    self.mtrr_var[i]
                } else if let Some(i) = Self::fixed_mtrr_index(msr) {
                    self.mtrr_fixed[i]
                } else {
                    self.log_unknown(msr, "RDMSR", 0);
                    return MsrOutcome::GeneralProtection;
                }
            }
        };
        MsrOutcome::Done(value)
    }

    /// WRMSR `msr` with `value`.
    pub fn write(&mut self, msr: u32, value: u64, vcpu: &mut impl VcpuState) -> MsrOutcome {
        let ok = match msr {
            IA32_EFER => return self.write_efer(value, vcpu),
            // Writes that firmware and OSes issue and that have no effect here:
            // microcode loading, debug control, and AMD configuration
            // registers. (TSC writes set the vCPU's offset: the exit handler.)
            IA32_BIOS_SIGN_ID | IA32_BIOS_UPDT_TRIG => true,
            IA32_DEBUGCTL | AMD_HWCR | AMD_DE_CFG | AMD_SYSCFG => true,
            IA32_MCG_STATUS => value == 0,
            IA32_MISC_ENABLE => {
                self.misc_enable = value;
                true
            }
            IA32_MTRR_DEF_TYPE if value & !MTRR_DEF_TYPE_MASK == 0 => {
                self.mtrr_def_type = value;
                true
            }
            _ => {
                if let Some(i) = Self::var_mtrr_index(msr) {
                    self.mtrr_var[i] = value;
                    true
                } else if let Some(i) = Self::fixed_mtrr_index(msr) {
                    self.mtrr_fixed[i] = value;
                    true
                } else {
                    false
                }
            }
        };
        if ok {
            MsrOutcome::Done(0)
        } else {
            self.log_unknown(msr, "WRMSR", value);
            MsrOutcome::GeneralProtection
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

    fn log_unknown(&mut self, msr: u32, op: &str, value: u64) {
        if self.logged[..self.logged_count].contains(&msr) {
            return;
        }
        if self.logged_count < LOG_ONCE_SLOTS {
            self.logged[self.logged_count] = msr;
            self.logged_count += 1;
            log::warn!("guest {op} of unknown MSR {msr:#x} (value {value:#x}): #GP(0) injected; further accesses not logged");
        }
    }

    /// MSRs that have been logged as unknown (for tests and diagnostics).
    pub fn logged_unknown(&self) -> &[u32] {
        &self.logged[..self.logged_count]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::tests::FakeVcpu;

    #[test]
    fn unknown_msrs_raise_gp_and_are_logged_once() {
        let mut p = MsrPolicy::new();
        let mut v = FakeVcpu::default();
        assert_eq!(p.read(0xdead_beef, &v, 0), MsrOutcome::GeneralProtection);
        assert_eq!(p.read(0xdead_beef, &v, 0), MsrOutcome::GeneralProtection);
        assert_eq!(
            p.write(0xdead_beef, 1, &mut v),
            MsrOutcome::GeneralProtection
        );
        assert_eq!(p.logged_unknown(), &[0xdead_beef]);
        // The SVM MSRs are hidden along with CPUID's SVM bit.
        assert_eq!(p.read(0xc001_0117, &v, 0), MsrOutcome::GeneralProtection);
        assert_eq!(
            p.write(0xc001_0114, 0, &mut v),
            MsrOutcome::GeneralProtection
        );
        for msr in 0..100 {
            p.read(0x1000 + msr, &v, 0);
        }
        assert_eq!(
            p.logged_unknown().len(),
            LOG_ONCE_SLOTS,
            "the log set is bounded"
        );
    }

    #[test]
    fn feature_control_is_locked() {
        let mut p = MsrPolicy::new();
        let mut v = FakeVcpu::default();
        assert_eq!(p.read(IA32_FEATURE_CONTROL, &v, 0), MsrOutcome::Done(1));
        assert_eq!(
            p.write(IA32_FEATURE_CONTROL, 5, &mut v),
            MsrOutcome::GeneralProtection
        );
        assert_eq!(
            p.read(0x1b, &v, 0),
            MsrOutcome::GeneralProtection,
            "IA32_APIC_BASE is the platform's"
        );
    }

    #[test]
    fn mtrrs_round_trip_and_check_reserved_bits() {
        let mut p = MsrPolicy::new();
        let mut v = FakeVcpu::default();
        assert_eq!(p.read(IA32_MTRRCAP, &v, 0), MsrOutcome::Done(0x508));
        assert_eq!(
            p.write(IA32_MTRR_DEF_TYPE, 0xc06, &mut v),
            MsrOutcome::Done(0)
        );
        assert_eq!(p.read(IA32_MTRR_DEF_TYPE, &v, 0), MsrOutcome::Done(0xc06));
        assert_eq!(
            p.write(IA32_MTRR_DEF_TYPE, 0x1000, &mut v),
            MsrOutcome::GeneralProtection
        );
        assert_eq!(p.write(0x20f, 0x1234_5800, &mut v), MsrOutcome::Done(0));
        assert_eq!(p.read(0x20f, &v, 0), MsrOutcome::Done(0x1234_5800));
        assert_eq!(
            p.read(0x210, &v, 0),
            MsrOutcome::GeneralProtection,
            "only 8 variable pairs"
        );
        assert_eq!(
            p.write(0x26f, 0x0606_0606_0606_0606, &mut v),
            MsrOutcome::Done(0)
        );
        assert_eq!(
            p.read(0x26f, &v, 0),
            MsrOutcome::Done(0x0606_0606_0606_0606)
        );
    }

    /// Finding #12 of issue 11: a guest repeating a refused EFER write gets
    /// #GP each time but Keel logs only a few lines, not one per write.
    #[test]
    fn a_repeated_bad_efer_write_is_logged_a_bounded_number_of_times() {
        log_capture::start();
        let mut p = MsrPolicy::new();
        let mut v = FakeVcpu::default();
        for _ in 0..100_000 {
            assert_eq!(
                p.write(IA32_EFER, 1 << 12, &mut v),
                MsrOutcome::GeneralProtection
            );
        }
        let lines = log_capture::count(log::Level::Warn, "EFER");
        assert!((1..=24).contains(&lines), "{lines} lines");
    }

    #[test]
    fn efer_rules() {
        let mut p = MsrPolicy::new();
        let mut v = FakeVcpu::default();
        assert_eq!(
            p.write(IA32_EFER, EFER_LME | EFER_SCE, &mut v),
            MsrOutcome::Done(0)
        );
        assert_eq!(v.efer, EFER_LME | EFER_SCE);
        assert_eq!(
            p.read(IA32_EFER, &v, 0),
            MsrOutcome::Done(EFER_LME | EFER_SCE)
        );
        // SVME (bit 12) is hidden along with SVM itself.
        assert_eq!(
            p.write(IA32_EFER, 1 << 12, &mut v),
            MsrOutcome::GeneralProtection
        );
        // LMA is the CPU's: a write cannot set it.
        assert_eq!(
            p.write(IA32_EFER, EFER_LME | EFER_LMA, &mut v),
            MsrOutcome::Done(0)
        );
        assert_eq!(v.efer & EFER_LMA, 0);
        // With paging on, LME cannot change, and LMA is preserved.
        v.cr0 |= CR0_PG;
        v.efer = EFER_LME | EFER_LMA;
        assert_eq!(p.write(IA32_EFER, 0, &mut v), MsrOutcome::GeneralProtection);
        assert_eq!(
            p.write(IA32_EFER, EFER_LME | EFER_NXE, &mut v),
            MsrOutcome::Done(0)
        );
        assert_eq!(v.efer, EFER_LME | EFER_LMA | EFER_NXE);
    }

    #[test]
    fn tsc_and_ignored_writes() {
        let mut p = MsrPolicy::new();
        let mut v = FakeVcpu::default();
        assert_eq!(
            p.read(IA32_TIME_STAMP_COUNTER, &v, 1234),
            MsrOutcome::Done(1234)
        );
        assert_eq!(p.write(IA32_BIOS_SIGN_ID, 0, &mut v), MsrOutcome::Done(0));
        assert_eq!(
            p.write(IA32_MCG_STATUS, 1, &mut v),
            MsrOutcome::GeneralProtection
        );
        assert!(p.logged_unknown().is_empty() || p.logged_unknown() == [IA32_MCG_STATUS]);
    }
}
