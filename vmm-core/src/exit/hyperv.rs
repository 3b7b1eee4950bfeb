//! Hyper-V enlightenments (xl.cfg `viridian`), as the Hyper-V Top-Level
//! Functional Specification v6.0b (TLFS) defines them.
//!
//! Offered by group, as Xen names them:
//! - `base`: the "Microsoft Hv" CPUID leaves (TLFS 2.4), the guest OS ID
//!   and hypercall MSRs (TLFS 3.13, 3.14), the VP index (TLFS 7.8.1), the
//!   APIC access MSRs EOI, ICR and TPR and the VP assist page MSR (TLFS
//!   10.3.3-10.3.5, 7.8.7), and the relaxed-timing recommendation (TLFS
//!   2.4.5: the guest should not time out on watchdogs).
//! - `freq`: HV_X64_MSR_TSC_FREQUENCY and HV_X64_MSR_APIC_FREQUENCY (TLFS
//!   2.4.4 "AccessFrequencyRegs", Appendix A).
//! - `time_ref_count`: the partition reference counter, 100 ns units since
//!   the VM was created (TLFS 12.4).
//! - `reference_tsc`: the reference TSC page (TLFS 12.7): the guest turns
//!   its TSC into reference time as `((tsc * TscScale) >> 64) + TscOffset`
//!   without an exit. Keel rewrites the page when the guest enables it and
//!   whenever the vCPU's TSC offset changes (a WRMSR to the TSC or
//!   TSC_ADJUST), each time with a new TscSequence.
//!
//! No hypercall is offered: a guest that enabled the hypercall page gets
//! HV_STATUS_INVALID_HYPERCALL_CODE for every call code (TLFS 3.8), and
//! HV_STATUS_INVALID_HYPERCALL_INPUT when the input value has reserved
//! bits set. A VMCALL/VMMCALL before the page is enabled, at CPL > 0 or
//! in real mode raises #UD (virtual-8086 mode runs at CPL 3) (TLFS 3.2, 3.13). A GPA the guest
//! gives for the hypercall, VP assist or reference TSC page that is not
//! guest RAM raises #GP on the WRMSR and is logged (rate-limited).
//!
//! CPUID: with `viridian`, leaves 0x4000_0000-0x4000_0006 are Hyper-V's and
//! Keel's own identity moves to 0x4000_0100, as Xen moves its leaves with
//! viridian on, so a guest that looks for Keel scans in steps of 0x100.

use guest_log::RateLimitedLog;
use log::Level;

use super::cpuid::CpuidResult;
use super::handler::Platform;
use super::msr::MsrOutcome;
use crate::vcpu::{CpuMode, Event, Gpr, VcpuState};

/// Which groups of enlightenments a VM is offered (`vm_config::Viridian`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct HvFeatures {
    pub base: bool,
    pub freq: bool,
    pub time_ref_count: bool,
    pub reference_tsc: bool,
}

// Synthetic MSRs (TLFS Appendix A).
pub const HV_X64_MSR_GUEST_OS_ID: u32 = 0x4000_0000;
pub const HV_X64_MSR_HYPERCALL: u32 = 0x4000_0001;
pub const HV_X64_MSR_VP_INDEX: u32 = 0x4000_0002;
pub const HV_X64_MSR_TIME_REF_COUNT: u32 = 0x4000_0020;
pub const HV_X64_MSR_REFERENCE_TSC: u32 = 0x4000_0021;
pub const HV_X64_MSR_TSC_FREQUENCY: u32 = 0x4000_0022;
pub const HV_X64_MSR_APIC_FREQUENCY: u32 = 0x4000_0023;
pub const HV_X64_MSR_EOI: u32 = 0x4000_0070;
pub const HV_X64_MSR_ICR: u32 = 0x4000_0071;
pub const HV_X64_MSR_TPR: u32 = 0x4000_0072;
pub const HV_X64_MSR_VP_ASSIST_PAGE: u32 = 0x4000_0073;

/// The CPUID leaves (TLFS 2.4).
pub const HV_CPUID_VENDOR_AND_MAX_FUNCTIONS: u32 = 0x4000_0000;
const HV_CPUID_INTERFACE: u32 = 0x4000_0001;
const HV_CPUID_VERSION: u32 = 0x4000_0002;
const HV_CPUID_FEATURES: u32 = 0x4000_0003;
const HV_CPUID_ENLIGHTENMENT_INFO: u32 = 0x4000_0004;
const HV_CPUID_IMPLEMENT_LIMITS: u32 = 0x4000_0005;
const HV_CPUID_HARDWARE_FEATURES: u32 = 0x4000_0006;
/// Where Keel's own leaves go when Hyper-V's take 0x4000_0000.
pub const KEEL_LEAVES_WITH_HYPERV: u32 = 0x4000_0100;

// HV_PARTITION_PRIVILEGE_MASK, low half (CPUID 0x4000_0003 EAX, TLFS 2.4.4).
const ACCESS_PARTITION_REFERENCE_COUNTER: u32 = 1 << 1;
const ACCESS_INTR_CTRL_REGS: u32 = 1 << 4;
const ACCESS_HYPERCALL_MSRS: u32 = 1 << 5;
const ACCESS_VP_INDEX: u32 = 1 << 6;
const ACCESS_PARTITION_REFERENCE_TSC: u32 = 1 << 9;
const ACCESS_FREQUENCY_REGS: u32 = 1 << 11;
/// CPUID 0x4000_0003 EDX[8]: the frequency MSRs are available.
const FEATURE_FREQUENCY_MSRS: u32 = 1 << 8;
// Recommendations (CPUID 0x4000_0004 EAX, TLFS 2.4.5).
const RECOMMEND_APIC_MSRS: u32 = 1 << 3;
const RECOMMEND_RELAXED_TIMING: u32 = 1 << 5;
/// CPUID 0x4000_0004 EBX: spinlock retries before notifying; all ones: never.
const SPINLOCK_NEVER_NOTIFY: u32 = u32::MAX;
// Hardware features in use (CPUID 0x4000_0006 EAX, TLFS 2.4.7).
const HW_MSR_BITMAPS: u32 = 1 << 1;
const HW_SLAT: u32 = 1 << 3;

/// Enable bit of the hypercall, reference TSC and VP assist MSRs; bits
/// 63:12 are the page's GPA.
const PAGE_ENABLE: u64 = 1;
const HYPERCALL_LOCKED: u64 = 1 << 1;
const PAGE_MASK: u64 = !0xfff;

// Hypercall result codes (TLFS Appendix B).
pub const HV_STATUS_INVALID_HYPERCALL_CODE: u64 = 2;
pub const HV_STATUS_INVALID_HYPERCALL_INPUT: u64 = 3;
/// Hypercall input value bits that are RsvdZ (TLFS 3.7): 31:27, 47:44, 63:60.
const HYPERCALL_INPUT_RESERVED: u64 = (0x1f << 27) | (0xf << 44) | (0xf << 60);

/// The reference counter's unit: 100 ns, 10^7 per second.
const REFERENCE_HZ: u64 = 10_000_000;
/// TscSequence values the guest treats as "page not valid" (TLFS 12.7.2:
/// 0; Keel also skips all ones).
const SEQUENCE_INVALID: u32 = 0;

/// The reference TSC page's first bytes (TLFS 12.7.2,
/// HV_REFERENCE_TSC_PAGE): TscSequence, a reserved dword, TscScale, TscOffset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TscPage {
    pub sequence: u32,
    pub scale: u64,
    pub offset: i64,
}

impl TscPage {
    /// The page's 24 leading bytes.
    pub fn to_bytes(self) -> [u8; 24] {
        let mut b = [0u8; 24];
        b[..4].copy_from_slice(&self.sequence.to_le_bytes());
        b[8..16].copy_from_slice(&self.scale.to_le_bytes());
        b[16..].copy_from_slice(&self.offset.to_le_bytes());
        b
    }

    /// The reference time the guest computes from `tsc` (TLFS 12.7.3).
    pub fn reference_time(&self, tsc: u64) -> u64 {
        (((u128::from(tsc) * u128::from(self.scale)) >> 64) as u64).wrapping_add(self.offset as u64)
    }
}

/// TscScale for a TSC of `tsc_hz`: 2^64 * 10^7 / tsc_hz, or `None` when
/// the TSC is too slow for the scale to fit 64 bits (10 MHz or less).
pub fn tsc_scale(tsc_hz: u64) -> Option<u64> {
    if tsc_hz == 0 {
        return None;
    }
    u64::try_from((u128::from(REFERENCE_HZ) << 64) / u128::from(tsc_hz)).ok()
}

/// A vCPU's Hyper-V state: a few registers, fixed size.
#[derive(Debug, Clone)]
pub struct HyperV {
    features: HvFeatures,
    /// The backend's hypercall instruction: VMMCALL on AMD, VMCALL on Intel.
    amd: bool,
    vcpus: u32,
    tsc_hz: u64,
    apic_hz: u64,
    /// The host TSC when the VM was created: reference time 0. It stays
    /// across a guest reset, so reference time never goes back.
    ref_base_host_tsc: u64,
    guest_os_id: u64,
    hypercall: u64,
    reference_tsc: u64,
    vp_assist: u64,
    /// The TSC offset the reference TSC page was last written for.
    page_written_for: Option<u64>,
    sequence: u32,
    log: RateLimitedLog,
    /// Xen's personality instead of Hyper-V's (xl.cfg `xen_platform_pci`;
    /// the two never go together, vm-config refuses it): Xen's leaves,
    /// hypercall MSR and hypercalls (`super::xen`).
    xen: bool,
}

impl HyperV {
    /// The state of a VM offered `features`, whose guest TSC runs at
    /// `tsc_hz` and local APIC timer input at `apic_hz`; `host_tsc` is the
    /// host's TSC now (the VM's creation).
    pub fn new(
        features: HvFeatures,
        amd: bool,
        vcpus: u32,
        tsc_hz: u64,
        apic_hz: u64,
        host_tsc: u64,
    ) -> Self {
        HyperV {
            features: HvFeatures {
                base: features.base,
                freq: features.base && features.freq,
                time_ref_count: features.base && features.time_ref_count,
                reference_tsc: features.base && features.reference_tsc,
            },
            amd,
            vcpus: vcpus.max(1),
            tsc_hz,
            apic_hz,
            ref_base_host_tsc: host_tsc,
            guest_os_id: 0,
            hypercall: 0,
            reference_tsc: 0,
            vp_assist: 0,
            page_written_for: None,
            sequence: 0,
            log: RateLimitedLog::new(),
            xen: false,
        }
    }

    /// Xen's HVM personality on a CPU of vendor AMD (`amd`) or Intel.
    pub fn xen(amd: bool) -> Self {
        HyperV {
            xen: true,
            ..Self::new(HvFeatures::default(), amd, 1, 0, 0, 0)
        }
    }

    /// Whether this is Xen's personality.
    pub fn is_xen(&self) -> bool {
        self.xen
    }

    /// No enlightenment.
    pub fn off() -> Self {
        Self::new(HvFeatures::default(), false, 1, 0, 0, 0)
    }

    pub fn features(&self) -> HvFeatures {
        self.features
    }

    /// A system reset: the synthetic MSRs go back to 0 (TLFS 3.13, 12.7.1);
    /// reference time keeps counting.
    pub fn reset(&mut self) {
        self.guest_os_id = 0;
        self.hypercall = 0;
        self.reference_tsc = 0;
        self.vp_assist = 0;
        self.page_written_for = None;
    }

    /// The Hyper-V CPUID leaves 0x4000_0000-0x4000_0006 (TLFS 2.4), or
    /// none without `base`.
    pub fn cpuid_leaves(&self) -> Option<[(u32, CpuidResult); 7]> {
        let f = self.features;
        if !f.base {
            return None;
        }
        let word = |s: &[u8; 4]| u32::from_le_bytes(*s);
        let mut privileges = ACCESS_HYPERCALL_MSRS | ACCESS_VP_INDEX | ACCESS_INTR_CTRL_REGS;
        let mut misc = 0;
        if f.time_ref_count {
            privileges |= ACCESS_PARTITION_REFERENCE_COUNTER;
        }
        if f.reference_tsc {
            privileges |= ACCESS_PARTITION_REFERENCE_TSC;
        }
        if f.freq {
            privileges |= ACCESS_FREQUENCY_REGS;
            misc |= FEATURE_FREQUENCY_MSRS;
        }
        let r = |eax, ebx, ecx, edx| CpuidResult { eax, ebx, ecx, edx };
        Some([
            (
                HV_CPUID_VENDOR_AND_MAX_FUNCTIONS,
                r(
                    HV_CPUID_HARDWARE_FEATURES,
                    word(b"Micr"),
                    word(b"osof"),
                    word(b"t Hv"),
                ),
            ),
            (HV_CPUID_INTERFACE, r(word(b"Hv#1"), 0, 0, 0)),
            // Build 0, version: Keel's (major 0, minor 1).
            (HV_CPUID_VERSION, r(0, 0x0000_0001, 0, 0)),
            (HV_CPUID_FEATURES, r(privileges, 0, 0, misc)),
            (
                HV_CPUID_ENLIGHTENMENT_INFO,
                r(
                    RECOMMEND_APIC_MSRS | RECOMMEND_RELAXED_TIMING,
                    SPINLOCK_NEVER_NOTIFY,
                    0,
                    0,
                ),
            ),
            (HV_CPUID_IMPLEMENT_LIMITS, r(self.vcpus, self.vcpus, 0, 0)),
            (
                HV_CPUID_HARDWARE_FEATURES,
                r(HW_MSR_BITMAPS | HW_SLAT, 0, 0, 0),
            ),
        ])
    }

    /// Reference time now: 100 ns units since the VM was created.
    fn reference_time(&self, host_tsc: u64) -> u64 {
        if self.tsc_hz == 0 {
            return 0;
        }
        let ticks = host_tsc.wrapping_sub(self.ref_base_host_tsc);
        (u128::from(ticks) * u128::from(REFERENCE_HZ) / u128::from(self.tsc_hz)) as u64
    }

    /// The reference TSC page for a vCPU whose TSC offset is `tsc_offset`
    /// (guest TSC = host TSC + offset), with sequence `sequence`; an
    /// invalid page (sequence 0: use the MSR) when the TSC is too slow.
    pub fn tsc_page(&self, tsc_offset: u64, sequence: u32) -> TscPage {
        let Some(scale) = tsc_scale(self.tsc_hz) else {
            return TscPage {
                sequence: SEQUENCE_INVALID,
                scale: 0,
                offset: 0,
            };
        };
        // guest TSC - (host TSC - base) = offset + base; reference time is
        // ((guest TSC - that) * scale) >> 64.
        let k = tsc_offset.wrapping_add(self.ref_base_host_tsc) as i64;
        let offset = -(((i128::from(k)) * i128::from(scale)) >> 64) as i64;
        TscPage {
            sequence,
            scale,
            offset,
        }
    }

    fn next_sequence(&mut self) -> u32 {
        self.sequence = self.sequence.wrapping_add(1);
        if self.sequence == SEQUENCE_INVALID || self.sequence == u32::MAX {
            self.sequence = 1;
        }
        self.sequence
    }

    /// Writes the reference TSC page for `tsc_offset` if it is enabled
    /// and was written for another offset. Called after every WRMSR.
    pub fn sync_tsc_page(&mut self, tsc_offset: u64, platform: &impl Platform) {
        if self.reference_tsc & PAGE_ENABLE == 0 || self.page_written_for == Some(tsc_offset) {
            return;
        }
        let sequence = self.next_sequence();
        let page = self.tsc_page(tsc_offset, sequence);
        let gpa = self.reference_tsc & PAGE_MASK;
        // The WRMSR checked the page is RAM.
        if platform.memory().write(gpa, &page.to_bytes()).is_err() {
            self.log.log(
                Level::Warn,
                format_args!("reference TSC page at {gpa:#x} could not be written"),
            );
        }
        self.page_written_for = Some(tsc_offset);
    }

    /// Whether the page at `value`'s GPA is guest RAM.
    fn page_in_ram(value: u64, platform: &impl Platform) -> bool {
        let gpa = value & PAGE_MASK;
        gpa.checked_add(0x1000)
            .is_some_and(|end| end <= platform.memory().size())
    }

    fn refuse(&mut self, msr: u32, value: u64, why: &str) -> Option<MsrOutcome> {
        self.log.log(
            Level::Warn,
            format_args!("guest WRMSR {msr:#x} = {value:#x}: {why}: #GP"),
        );
        Some(MsrOutcome::GeneralProtection)
    }

    /// RDMSR of a synthetic MSR; `None` for an MSR the offered groups do
    /// not define (the MSR policy then raises #GP).
    pub fn read(
        &mut self,
        msr: u32,
        vcpu: &impl VcpuState,
        platform: &mut impl Platform,
    ) -> Option<MsrOutcome> {
        let f = self.features;
        let value = match msr {
            _ if !f.base => return None,
            HV_X64_MSR_GUEST_OS_ID => self.guest_os_id,
            HV_X64_MSR_HYPERCALL => self.hypercall,
            HV_X64_MSR_VP_INDEX => u64::from(vcpu.vcpu_id()),
            HV_X64_MSR_VP_ASSIST_PAGE => self.vp_assist,
            HV_X64_MSR_TIME_REF_COUNT if f.time_ref_count => {
                self.reference_time(platform.host_tsc())
            }
            HV_X64_MSR_REFERENCE_TSC if f.reference_tsc => self.reference_tsc,
            HV_X64_MSR_TSC_FREQUENCY if f.freq => self.tsc_hz,
            HV_X64_MSR_APIC_FREQUENCY if f.freq => self.apic_hz,
            HV_X64_MSR_EOI | HV_X64_MSR_TPR | HV_X64_MSR_ICR => {
                let v = platform.apic_register(vcpu.vcpu_id(), apic_offset(msr), None);
                return Some(v.map_or(MsrOutcome::GeneralProtection, MsrOutcome::Done));
            }
            _ => return None,
        };
        Some(MsrOutcome::Done(value))
    }

    /// WRMSR of a synthetic MSR; `None` as for [`HyperV::read`].
    pub fn write(
        &mut self,
        msr: u32,
        value: u64,
        vcpu: &impl VcpuState,
        platform: &mut impl Platform,
    ) -> Option<MsrOutcome> {
        let f = self.features;
        match msr {
            super::xen::XEN_HYPERCALL_MSR if self.xen => {
                return Some(
                    if super::xen::write_hypercall_msr(value, self.amd, platform.memory()) {
                        MsrOutcome::Done(0)
                    } else {
                        self.log.log(
                            Level::Warn,
                            format_args!(
                                "Xen hypercall page at {value:#x}: not a page of guest RAM: #GP"
                            ),
                        );
                        MsrOutcome::GeneralProtection
                    },
                );
            }
            _ if !f.base => return None,
            HV_X64_MSR_GUEST_OS_ID => {
                self.guest_os_id = value;
                // TLFS 3.13: with the guest OS ID cleared, hypercalls are off.
                if value == 0 {
                    self.hypercall &= !PAGE_ENABLE;
                }
            }
            HV_X64_MSR_HYPERCALL => {
                if self.hypercall & HYPERCALL_LOCKED != 0 {
                    // Locked until reset: writes are ignored.
                    return Some(MsrOutcome::Done(0));
                }
                // Reserved bits 11:2 are preserved; the page stays disabled
                // until the guest identified itself (TLFS 3.13).
                let mut value = (value & (PAGE_MASK | PAGE_ENABLE | HYPERCALL_LOCKED))
                    | (self.hypercall & 0xffc);
                if self.guest_os_id == 0 {
                    value &= !PAGE_ENABLE;
                }
                if value & PAGE_ENABLE != 0 {
                    if !Self::page_in_ram(value, platform) {
                        return self.refuse(msr, value, "hypercall page outside guest RAM");
                    }
                    // The hypercall page: the backend's hypercall
                    // instruction, then RET (TLFS 3.13).
                    let call = if self.amd { 0xd9 } else { 0xc1 };
                    let stub = [0x0f, 0x01, call, 0xc3];
                    if platform.memory().write(value & PAGE_MASK, &stub).is_err() {
                        return self.refuse(msr, value, "hypercall page not writable");
                    }
                }
                self.hypercall = value;
            }
            HV_X64_MSR_VP_ASSIST_PAGE => {
                if value & PAGE_ENABLE != 0 && !Self::page_in_ram(value, platform) {
                    return self.refuse(msr, value, "VP assist page outside guest RAM");
                }
                self.vp_assist = value;
            }
            HV_X64_MSR_REFERENCE_TSC if f.reference_tsc => {
                if value & PAGE_ENABLE != 0 && !Self::page_in_ram(value, platform) {
                    return self.refuse(msr, value, "reference TSC page outside guest RAM");
                }
                self.reference_tsc = value;
                self.page_written_for = None;
                self.sync_tsc_page(vcpu.tsc_offset(), platform);
            }
            // Read-only registers (TLFS Appendix A): #GP on write.
            HV_X64_MSR_VP_INDEX => return self.refuse(msr, value, "read-only"),
            HV_X64_MSR_TIME_REF_COUNT if f.time_ref_count => {
                return self.refuse(msr, value, "read-only")
            }
            HV_X64_MSR_TSC_FREQUENCY | HV_X64_MSR_APIC_FREQUENCY if f.freq => {
                return self.refuse(msr, value, "read-only")
            }
            HV_X64_MSR_EOI | HV_X64_MSR_TPR | HV_X64_MSR_ICR => {
                let done = platform.apic_register(vcpu.vcpu_id(), apic_offset(msr), Some(value));
                if done.is_none() {
                    return self.refuse(msr, value, "the local APIC refused the access");
                }
            }
            _ => return None,
        }
        Some(MsrOutcome::Done(0))
    }

    /// VMCALL/VMMCALL: a hypercall through the page (TLFS 3.2-3.8).
    pub fn hypercall(&mut self, vcpu: &mut impl VcpuState, platform: &mut impl Platform, len: u8) {
        if self.xen {
            super::xen::hypercall(vcpu, platform, len);
            return;
        }
        let mode = vcpu.mode();
        if !self.features.base
            || self.hypercall & PAGE_ENABLE == 0
            || vcpu.cpl() != 0
            || mode == CpuMode::Real
        {
            vcpu.inject(Event::UD);
            return;
        }
        let long = mode == CpuMode::Long64;
        // 64-bit: RCX holds the input value; 32-bit: EDX:EAX (TLFS 3.7).
        let input = if long {
            vcpu.gpr(Gpr::Rcx)
        } else {
            (vcpu.gpr(Gpr::Rdx) & 0xffff_ffff) << 32 | (vcpu.gpr(Gpr::Rax) & 0xffff_ffff)
        };
        let status = if input & HYPERCALL_INPUT_RESERVED != 0 {
            HV_STATUS_INVALID_HYPERCALL_INPUT
        } else {
            self.log.log(
                Level::Debug,
                format_args!("hypercall {:#x} is not offered", input & 0xffff),
            );
            HV_STATUS_INVALID_HYPERCALL_CODE
        };
        // The result value: status in 15:0, reps completed (0) in 43:32.
        if long {
            vcpu.set_gpr(Gpr::Rax, status);
        } else {
            vcpu.set_gpr(Gpr::Rax, status & 0xffff_ffff);
            vcpu.set_gpr(Gpr::Rdx, status >> 32);
        }
        vcpu.skip_instruction(len);
    }
}

/// The xAPIC offset of the register an APIC access MSR reaches (TLFS
/// 10.3.3-10.3.5; offsets of SDM Vol 3A Table 11-1).
fn apic_offset(msr: u32) -> u64 {
    match msr {
        HV_X64_MSR_EOI => 0xb0,
        HV_X64_MSR_TPR => 0x80,
        _ => 0x300,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::handler::tests::{policy, FakePlatform};
    use crate::exit::{handle_exit, VmExit, VmPolicy};
    use crate::vcpu::tests::FakeVcpu;

    const TSC_HZ: u64 = 2_500_000_000;
    const APIC_HZ: u64 = 1_000_000_000;
    /// FakePlatform's host TSC.
    const HOST_TSC: u64 = 42;
    /// The VM was created 3 s of host TSC before HOST_TSC.
    const BASE: u64 = HOST_TSC.wrapping_sub(3 * TSC_HZ);

    fn all() -> HvFeatures {
        HvFeatures {
            base: true,
            freq: true,
            time_ref_count: true,
            reference_tsc: true,
        }
    }

    fn viridian(features: HvFeatures, amd: bool) -> VmPolicy {
        policy().with_hyperv(HyperV::new(features, amd, 1, TSC_HZ, APIC_HZ, BASE))
    }

    fn rdmsr(v: &mut FakeVcpu, p: &mut FakePlatform, pol: &mut VmPolicy, msr: u32) -> Option<u64> {
        v.gprs[Gpr::Rcx as usize] = u64::from(msr);
        v.injected.clear();
        let rip = v.rip;
        handle_exit(&VmExit::Rdmsr { len: 2 }, v, p, pol);
        if v.injected.contains(&Event::GP0) {
            assert_eq!(v.rip, rip, "a faulting RDMSR does not retire");
            return None;
        }
        assert_eq!(v.rip, rip + 2);
        Some(v.gprs[Gpr::Rax as usize] | v.gprs[Gpr::Rdx as usize] << 32)
    }

    /// WRMSR: true if it completed, false on #GP.
    fn wrmsr(
        v: &mut FakeVcpu,
        p: &mut FakePlatform,
        pol: &mut VmPolicy,
        msr: u32,
        value: u64,
    ) -> bool {
        v.gprs[Gpr::Rcx as usize] = u64::from(msr);
        v.gprs[Gpr::Rax as usize] = value & 0xffff_ffff;
        v.gprs[Gpr::Rdx as usize] = value >> 32;
        v.injected.clear();
        handle_exit(&VmExit::Wrmsr { len: 2 }, v, p, pol);
        !v.injected.contains(&Event::GP0)
    }

    fn cpuid(pol: &VmPolicy, leaf: u32) -> CpuidResult {
        pol.cpuid.lookup(leaf, 0, 0, 0, 1)
    }

    fn signature(r: CpuidResult) -> [u8; 12] {
        let mut s = [0u8; 12];
        s[..4].copy_from_slice(&r.ebx.to_le_bytes());
        s[4..8].copy_from_slice(&r.ecx.to_le_bytes());
        s[8..].copy_from_slice(&r.edx.to_le_bytes());
        s
    }

    /// TLFS 2.4: the vendor leaf, the interface signature "Hv#1", the
    /// privileges of each offered group; Keel's own leaves at 0x4000_0100.
    #[test]
    fn cpuid_leaves_with_and_without_viridian() {
        let off = policy();
        assert_eq!(&signature(cpuid(&off, 0x4000_0000)), b"KeelKeelKeel");
        assert_eq!(cpuid(&off, 0x4000_0100), CpuidResult::default());

        let on = viridian(all(), true);
        let vendor = cpuid(&on, 0x4000_0000);
        assert_eq!(&signature(vendor), b"Microsoft Hv");
        // Linux accepts a maximum leaf from 0x4000_0005 on.
        assert_eq!(vendor.eax, 0x4000_0006);
        assert_eq!(cpuid(&on, 0x4000_0001).eax, 0x3123_7648, "'Hv#1'");
        let f = cpuid(&on, 0x4000_0003);
        // AccessPartitionReferenceCounter, AccessIntrCtrlRegs,
        // AccessHypercallMsrs, AccessVpIndex, AccessPartitionReferenceTsc,
        // AccessFrequencyRegs: bits 1, 4, 5, 6, 9, 11.
        assert_eq!(f.eax, 0b1010_0111_0010);
        assert_eq!(f.edx, 1 << 8, "frequency MSRs available");
        let rec = cpuid(&on, 0x4000_0004);
        assert_eq!(rec.eax, (1 << 3) | (1 << 5), "APIC MSRs, relaxed timing");
        assert_eq!(rec.ebx, u32::MAX, "never notify long spin waits");
        assert_eq!(cpuid(&on, 0x4000_0005).eax, 1, "one virtual processor");
        let keel = cpuid(&on, 0x4000_0100);
        assert_eq!(&signature(keel), b"KeelKeelKeel");
        assert_eq!(keel.eax, 0x4000_0101);
        assert_ne!(cpuid(&on, 0x4000_0101).eax, 0, "Keel's version moved too");
        assert_ne!(cpuid(&on, 1).ecx & (1 << 31), 0, "hypervisor bit");

        let base_only = viridian(
            HvFeatures {
                base: true,
                ..HvFeatures::default()
            },
            false,
        );
        let f = cpuid(&base_only, 0x4000_0003);
        assert_eq!(f.eax, (1 << 4) | (1 << 5) | (1 << 6));
        assert_eq!(f.edx, 0);
    }

    #[test]
    fn guest_os_id_vp_index_and_frequencies() {
        let (mut v, mut p, mut pol) = (
            FakeVcpu::long_mode(),
            FakePlatform::new(),
            viridian(all(), false),
        );
        assert_eq!(
            rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_GUEST_OS_ID),
            Some(0)
        );
        assert!(wrmsr(
            &mut v,
            &mut p,
            &mut pol,
            HV_X64_MSR_GUEST_OS_ID,
            0x8100_0006_0101_0000
        ));
        assert_eq!(
            rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_GUEST_OS_ID),
            Some(0x8100_0006_0101_0000)
        );
        assert_eq!(
            rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_VP_INDEX),
            Some(0)
        );
        assert!(
            !wrmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_VP_INDEX, 1),
            "read-only"
        );
        assert_eq!(
            rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_TSC_FREQUENCY),
            Some(TSC_HZ)
        );
        assert_eq!(
            rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_APIC_FREQUENCY),
            Some(APIC_HZ)
        );
        assert!(!wrmsr(
            &mut v,
            &mut p,
            &mut pol,
            HV_X64_MSR_TSC_FREQUENCY,
            1
        ));
        // 3 s since the VM was created: 3 * 10^7 units of 100 ns.
        assert_eq!(
            rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_TIME_REF_COUNT),
            Some(30_000_000)
        );
        assert!(!wrmsr(
            &mut v,
            &mut p,
            &mut pol,
            HV_X64_MSR_TIME_REF_COUNT,
            0
        ));
    }

    #[test]
    fn groups_not_offered_and_no_viridian_raise_gp() {
        let (mut v, mut p) = (FakeVcpu::long_mode(), FakePlatform::new());
        let mut off = policy();
        for msr in [
            HV_X64_MSR_GUEST_OS_ID,
            HV_X64_MSR_HYPERCALL,
            HV_X64_MSR_VP_INDEX,
            HV_X64_MSR_EOI,
        ] {
            assert_eq!(rdmsr(&mut v, &mut p, &mut off, msr), None, "{msr:#x}");
            assert!(!wrmsr(&mut v, &mut p, &mut off, msr, 0), "{msr:#x}");
        }
        let mut base = viridian(
            HvFeatures {
                base: true,
                ..HvFeatures::default()
            },
            false,
        );
        for msr in [
            HV_X64_MSR_TIME_REF_COUNT,
            HV_X64_MSR_REFERENCE_TSC,
            HV_X64_MSR_TSC_FREQUENCY,
            HV_X64_MSR_APIC_FREQUENCY,
            // Not implemented at all: the synthetic reset and VP runtime MSRs.
            0x4000_0003,
            0x4000_0010,
        ] {
            assert_eq!(rdmsr(&mut v, &mut p, &mut base, msr), None, "{msr:#x}");
        }
    }

    /// TLFS 3.13: the page holds the hypercall instruction of the
    /// processor's vendor; it stays disabled while the guest OS ID is 0; a
    /// page outside RAM is refused.
    #[test]
    fn hypercall_page() {
        for (amd, insn) in [(true, 0xd9u8), (false, 0xc1)] {
            let (mut v, mut p, mut pol) = (
                FakeVcpu::long_mode(),
                FakePlatform::new(),
                viridian(all(), amd),
            );
            assert!(wrmsr(
                &mut v,
                &mut p,
                &mut pol,
                HV_X64_MSR_HYPERCALL,
                0x3001
            ));
            assert_eq!(
                rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_HYPERCALL),
                Some(0x3000),
                "no guest OS ID yet: not enabled"
            );
            let mut page = [0u8; 4];
            p.ram.read(0x3000, &mut page).unwrap();
            assert_eq!(page, [0; 4]);
            assert!(wrmsr(
                &mut v,
                &mut p,
                &mut pol,
                HV_X64_MSR_GUEST_OS_ID,
                1 << 63
            ));
            assert!(wrmsr(
                &mut v,
                &mut p,
                &mut pol,
                HV_X64_MSR_HYPERCALL,
                0x3001
            ));
            assert_eq!(
                rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_HYPERCALL),
                Some(0x3001)
            );
            p.ram.read(0x3000, &mut page).unwrap();
            assert_eq!(page, [0x0f, 0x01, insn, 0xc3], "VMCALL/VMMCALL; RET");
            // FakePlatform has 64 KiB of RAM.
            assert!(!wrmsr(
                &mut v,
                &mut p,
                &mut pol,
                HV_X64_MSR_HYPERCALL,
                0x10001
            ));
            assert!(!wrmsr(
                &mut v,
                &mut p,
                &mut pol,
                HV_X64_MSR_HYPERCALL,
                !0xffe
            ));
            assert_eq!(
                rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_HYPERCALL),
                Some(0x3001)
            );
            // Clearing the guest OS ID disables hypercalls.
            assert!(wrmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_GUEST_OS_ID, 0));
            assert_eq!(
                rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_HYPERCALL),
                Some(0x3000)
            );
            // The VP assist page: stored, outside RAM refused.
            assert!(wrmsr(
                &mut v,
                &mut p,
                &mut pol,
                HV_X64_MSR_VP_ASSIST_PAGE,
                0x4001
            ));
            assert!(!wrmsr(
                &mut v,
                &mut p,
                &mut pol,
                HV_X64_MSR_VP_ASSIST_PAGE,
                0x1_0000_0001
            ));
            assert_eq!(
                rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_VP_ASSIST_PAGE),
                Some(0x4001)
            );
        }
    }

    fn enable_hypercalls(v: &mut FakeVcpu, p: &mut FakePlatform, pol: &mut VmPolicy) {
        assert!(wrmsr(v, p, pol, HV_X64_MSR_GUEST_OS_ID, 1 << 63));
        assert!(wrmsr(v, p, pol, HV_X64_MSR_HYPERCALL, 0x3001));
    }

    /// TLFS 3.7-3.8: the result value in RAX (64-bit) or EDX:EAX (32-bit);
    /// no call code is offered; #UD before the page, at CPL 3, in real mode.
    #[test]
    fn hypercalls() {
        let (mut v, mut p, mut pol) = (
            FakeVcpu::long_mode(),
            FakePlatform::new(),
            viridian(all(), true),
        );
        let call = |v: &mut FakeVcpu, p: &mut FakePlatform, pol: &mut VmPolicy| {
            v.injected.clear();
            let rip = v.rip;
            handle_exit(&VmExit::Hypercall { len: 3 }, v, p, pol);
            if v.injected.contains(&Event::UD) {
                assert_eq!(v.rip, rip);
                None
            } else {
                assert_eq!(v.rip, rip + 3);
                Some(v.gprs[Gpr::Rax as usize])
            }
        };
        v.gprs[Gpr::Rcx as usize] = 0x0008; // HvCallNotifyLongSpinWait
        assert_eq!(call(&mut v, &mut p, &mut pol), None, "page not enabled");
        enable_hypercalls(&mut v, &mut p, &mut pol);
        v.gprs[Gpr::Rcx as usize] = 0x0008;
        assert_eq!(
            call(&mut v, &mut p, &mut pol),
            Some(HV_STATUS_INVALID_HYPERCALL_CODE)
        );
        // Fast, with a rep count: still not offered.
        v.gprs[Gpr::Rcx as usize] = (5 << 32) | (1 << 16) | 0x0003;
        assert_eq!(
            call(&mut v, &mut p, &mut pol),
            Some(HV_STATUS_INVALID_HYPERCALL_CODE)
        );
        for reserved in [1u64 << 27, 1 << 31, 1 << 44, 1 << 63] {
            v.gprs[Gpr::Rcx as usize] = reserved | 0x0008;
            assert_eq!(
                call(&mut v, &mut p, &mut pol),
                Some(HV_STATUS_INVALID_HYPERCALL_INPUT)
            );
        }
        v.cpl = 3;
        assert_eq!(call(&mut v, &mut p, &mut pol), None, "CPL 3");

        // 32-bit: the input value in EDX:EAX, the result there too.
        let mut v32 = FakeVcpu::protected_flat();
        v32.gprs[Gpr::Rdx as usize] = 0xdead_0000_0000_0001; // bits 63:32 ignored
        v32.gprs[Gpr::Rax as usize] = 0x0008;
        v32.gprs[Gpr::Rcx as usize] = 1 << 27; // would be reserved in RCX
        assert_eq!(
            call(&mut v32, &mut p, &mut pol),
            Some(HV_STATUS_INVALID_HYPERCALL_CODE)
        );
        assert_eq!(v32.gprs[Gpr::Rdx as usize], 0);
        let mut real = FakeVcpu::real_mode();
        assert_eq!(call(&mut real, &mut p, &mut pol), None, "real mode");
    }

    /// TLFS 10.3: EOI, ICR (all 64 bits) and TPR reach the local APIC's
    /// registers in its current mode; with the APIC refusing (disabled)
    /// they #GP.
    #[test]
    fn apic_access_msrs() {
        let (mut v, mut p, mut pol) = (
            FakeVcpu::long_mode(),
            FakePlatform::new(),
            viridian(all(), true),
        );
        assert!(wrmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_EOI, 0));
        assert!(wrmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_TPR, 0x20));
        assert!(wrmsr(
            &mut v,
            &mut p,
            &mut pol,
            HV_X64_MSR_ICR,
            0x0200_0000_0000_40fd
        ));
        assert_eq!(
            p.apic,
            [
                (0xb0, Some(0)),
                (0x80, Some(0x20)),
                (0x300, Some(0x0200_0000_0000_40fd)),
            ]
        );
        assert_eq!(
            rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_TPR),
            Some(0xa000_0080)
        );
        assert_eq!(
            rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_ICR),
            Some(0xa000_0300)
        );
        p.apic_off = true;
        assert!(!wrmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_EOI, 0));
        assert_eq!(rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_TPR), None);
    }

    /// The scale against an exact rational computation: 2^64 * 10^7 / hz.
    #[test]
    fn tsc_scale_values() {
        // 2.5 GHz: 2^64 / 250, floor.
        assert_eq!(tsc_scale(2_500_000_000), Some(73_786_976_294_838_206));
        // 1 GHz: 2^64 / 100.
        assert_eq!(tsc_scale(1_000_000_000), Some(184_467_440_737_095_516));
        // 10 MHz and slower: the scale would be 2^64 or more.
        assert_eq!(tsc_scale(10_000_000), None);
        assert_eq!(tsc_scale(0), None);
        assert_eq!(tsc_scale(10_000_001), Some(18_446_742_229_035_328_712));
    }

    fn page(p: &FakePlatform, gpa: u64) -> TscPage {
        let mut b = [0u8; 24];
        p.ram.read(gpa, &mut b).unwrap();
        TscPage {
            sequence: u32::from_le_bytes(b[..4].try_into().unwrap()),
            scale: u64::from_le_bytes(b[8..16].try_into().unwrap()),
            offset: i64::from_le_bytes(b[16..].try_into().unwrap()),
        }
    }

    /// TLFS 12.7: the guest's (tsc * scale >> 64) + offset is the reference
    /// counter, checked against (host TSC - VM creation) * 10^7 / hz
    /// computed here; a TSC write rewrites the page with a new sequence and
    /// reference time goes on unchanged.
    #[test]
    fn reference_tsc_page() {
        let (mut v, mut p, mut pol) = (
            FakeVcpu::long_mode(),
            FakePlatform::new(),
            viridian(all(), true),
        );
        // Guest TSC = host TSC + offset; the guest's TSC started at 0 a
        // second after the VM was created.
        v.tsc_offset = 0u64.wrapping_sub(BASE.wrapping_add(TSC_HZ));
        assert!(
            !wrmsr(
                &mut v,
                &mut p,
                &mut pol,
                HV_X64_MSR_REFERENCE_TSC,
                0x1_0000_0001
            ),
            "outside RAM"
        );
        assert!(wrmsr(
            &mut v,
            &mut p,
            &mut pol,
            HV_X64_MSR_REFERENCE_TSC,
            0x5001
        ));
        assert_eq!(
            rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_REFERENCE_TSC),
            Some(0x5001)
        );
        let first = page(&p, 0x5000);
        assert_ne!(first.sequence, 0, "valid");
        assert_eq!(first.scale, 73_786_976_294_838_206);
        // Host TSC h (from the VM's creation): reference h / 250 (2.5 GHz,
        // 100 ns); the guest reads TSC h - TSC_HZ.
        for since_creation in [TSC_HZ, TSC_HZ + 1, 7 * TSC_HZ + 123_456, 1 << 50] {
            let guest_tsc = since_creation - TSC_HZ;
            let expect = since_creation / 250;
            let got = first.reference_time(guest_tsc);
            assert!(
                got.abs_diff(expect) <= 1,
                "{since_creation}: {got} vs {expect}"
            );
        }
        // The MSR agrees with the page at FakePlatform's host TSC.
        let msr = rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_TIME_REF_COUNT).unwrap();
        let guest_now = HOST_TSC.wrapping_add(v.tsc_offset);
        assert!(first.reference_time(guest_now).abs_diff(msr) <= 1);

        // The guest sets its TSC to 0 now: the page follows.
        assert!(wrmsr(&mut v, &mut p, &mut pol, 0x10, 0));
        let second = page(&p, 0x5000);
        assert_ne!(second.sequence, first.sequence);
        assert_ne!(second.sequence, 0);
        assert!(
            second.reference_time(0).abs_diff(msr) <= 1,
            "time did not jump"
        );

        // Disabled, then reset: nothing more is written.
        assert!(wrmsr(
            &mut v,
            &mut p,
            &mut pol,
            HV_X64_MSR_REFERENCE_TSC,
            0x5000
        ));
        assert!(wrmsr(&mut v, &mut p, &mut pol, 0x10, 12345));
        assert_eq!(page(&p, 0x5000), second);
        pol.hyperv.reset();
        assert_eq!(
            rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_REFERENCE_TSC),
            Some(0)
        );
        assert_eq!(
            rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_GUEST_OS_ID),
            Some(0)
        );
        assert_eq!(
            rdmsr(&mut v, &mut p, &mut pol, HV_X64_MSR_TIME_REF_COUNT),
            Some(msr),
            "reference time survives a reset"
        );
    }

    /// A TSC too slow for a 64-bit scale: the page says "invalid" (sequence
    /// 0), and the guest falls back to the reference counter MSR.
    #[test]
    fn slow_tsc_gives_an_invalid_page() {
        let mut pol = policy().with_hyperv(HyperV::new(all(), true, 1, 10_000_000, APIC_HZ, 0));
        let (mut v, mut p) = (FakeVcpu::long_mode(), FakePlatform::new());
        p.ram.write(0x5000, &[0xff; 24]).unwrap();
        assert!(wrmsr(
            &mut v,
            &mut p,
            &mut pol,
            HV_X64_MSR_REFERENCE_TSC,
            0x5001
        ));
        assert_eq!(page(&p, 0x5000).sequence, 0);
    }
}
