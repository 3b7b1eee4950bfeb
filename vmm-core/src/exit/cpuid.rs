//! CPUID policy: what a guest learns about its virtual CPU.
//!
//! The table is taken once from the host CPU when the VM is created and edited
//! here; a CPUID exit is then a lookup plus the few fields that depend on the
//! vCPU (APIC ID, OSXSAVE). Leaves the table does not hold read as zeros, as on
//! AMD processors for leaves above the maximum (APM Vol 3, CPUID).

use alloc::vec::Vec;

use crate::fpu;

/// The four output registers of CPUID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CpuidResult {
    pub eax: u32,
    pub ebx: u32,
    pub ecx: u32,
    pub edx: u32,
}

/// The hypervisor vendor signature returned in EBX, ECX, EDX of leaf 0x4000_0000.
pub const KEEL_CPUID_SIGNATURE: &[u8; 12] = b"KeelKeelKeel";
/// First hypervisor leaf (the range 0x4000_0000..=0x4000_00FF is reserved for hypervisors).
const HV_BASE: u32 = 0x4000_0000;
/// Keel's version reported in leaf 0x4000_0001 EAX (`major << 16 | minor`).
const KEEL_VERSION: u32 = 0x0001;

/// Leaves whose output depends on the subleaf in ECX, with how many subleaves Keel copies.
const INDEXED_LEAVES: &[(u32, u32)] = &[
    (0x4, 8),
    (0x7, 2),
    (0xb, 4),
    (0xd, 64),
    (0x1f, 6),
    (0x8000_001d, 8),
];

// Leaf 1 ECX (SDM Vol 2A, CPUID Table 3-10).
const L1_ECX_MONITOR: u32 = 1 << 3;
const L1_ECX_VMX: u32 = 1 << 5;
const L1_ECX_EST: u32 = 1 << 7;
const L1_ECX_TM2: u32 = 1 << 8;
const L1_ECX_PDCM: u32 = 1 << 15;
const L1_ECX_X2APIC: u32 = 1 << 21;
const L1_ECX_TSC_DEADLINE: u32 = 1 << 24;
const L1_ECX_OSXSAVE: u32 = 1 << 27;
const L1_ECX_HYPERVISOR: u32 = 1 << 31;
// Leaf 1 EDX.
const L1_EDX_ACPI: u32 = 1 << 22;
const L1_EDX_TM: u32 = 1 << 29;
const L1_ECX_FMA: u32 = 1 << 12;
const L1_ECX_XSAVE: u32 = 1 << 26;
const L1_ECX_AVX: u32 = 1 << 28;
const L1_ECX_F16C: u32 = 1 << 29;
// Leaf 7 sub-leaf 0 (SDM Vol 2A Table 3-8): features whose state Keel does
// not switch (MPX, AVX-512, CET, AMX: XCR0/XSS components outside
// [`crate::fpu::OFFERED_XCR0`]) stay hidden, so no instruction is offered
// whose registers could leak between guests.
const L7_EBX_AVX2: u32 = 1 << 5;
const L7_EBX_MPX: u32 = 1 << 14;
const L7_EBX_AVX512: u32 =
    (1 << 16) | (1 << 17) | (1 << 21) | (1 << 26) | (1 << 27) | (1 << 28) | (1 << 30) | (1 << 31);
const L7_ECX_AVX512: u32 = (1 << 1) | (1 << 6) | (1 << 11) | (1 << 12) | (1 << 14);
/// ECX[3] PKU: protection keys for user-mode pages (SDM Vol 3A 4.6.2),
/// offered with the PKRU state component Keel switches ([`crate::fpu`]).
const L7_ECX_PKU: u32 = 1 << 3;
/// ECX[4] OSPKE: CR4.PKE as the software running now set it, the guest's.
const L7_ECX_OSPKE: u32 = 1 << 4;
const L7_ECX_CET_SS: u32 = 1 << 7;
/// ECX[16] LA57: 5-level paging (SDM Vol 3A 4.5), not offered. A guest's
/// RAM is far below the 256 TiB 4-level paging reaches, and its walks stay
/// one level shorter: under nested paging a TLB miss reads at most 24
/// entries instead of 29. Keel's own paging is 4-level, so a guest's CR4
/// paging bits can equal Keel's (`memory::paging` in the keel crate), which
/// QEMU's software SVM rewards: it flushes its TLB and jump cache at every
/// VMRUN and #VMEXIT where they differ.
const L7_ECX_LA57: u32 = 1 << 16;
/// ECX[31] PKS: protection keys for supervisor pages, whose IA32_PKRS
/// (MSR 6E1h, SDM Vol 3A 4.6.2) Keel neither emulates nor switches.
const L7_ECX_PKS: u32 = 1 << 31;
const L7_ECX_VAES_VPCLMUL: u32 = (1 << 9) | (1 << 10);
const L7_EDX_AVX512: u32 = (1 << 2) | (1 << 3) | (1 << 8) | (1 << 23);
const L7_EDX_CET_IBT: u32 = 1 << 20;
const L7_EDX_AMX: u32 = (1 << 22) | (1 << 24) | (1 << 25);
// Leaf 7 sub-leaf 1 EAX: AVX-VNNI (4), AVX512_BF16 (5).
const L7S1_EAX_AVX_VNNI: u32 = 1 << 4;
const L7S1_EAX_AVX512_BF16: u32 = 1 << 5;
// Leaf 0DH sub-leaf 1 EAX[3]: XSAVES/XRSTORS and IA32_XSS, not offered.
const LD1_EAX_XSAVES: u32 = 1 << 3;
// Fn8000_0001 ECX: XOP (11) and FMA4 (16) use the AVX registers.
const E1_ECX_XOP_FMA4: u32 = (1 << 11) | (1 << 16);
// Leaf 7 EDX: speculation-control MSRs Keel does not emulate.
const L7_EDX_SPEC_CTRL: u32 = (1 << 26) | (1 << 27) | (1 << 29) | (1 << 31);
// Leaf 7 ECX[22] RDPID and Fn8000_0001 EDX[27] RDTSCP read IA32_TSC_AUX,
// which Keel loads per vCPU around each run ([`crate::fpu`]): offered where
// the host has them. RDPID needs VMX's "enable RDTSCP" too (SDM Vol 2B
// RDPID), so it goes when RDTSCP is hidden.
pub const L7_ECX_RDPID: u32 = 1 << 22;
pub const E1_EDX_RDTSCP: u32 = 1 << 27;
// Leaf 0x8000_0001 ECX (APM Vol 3, CPUID Fn8000_0001).
const E1_ECX_SVM: u32 = 1 << 2;
const E1_ECX_MONITORX: u32 = 1 << 29;
// Leaf 0x8000_0008 EBX: AMD IBPB/IBRS/STIBP/SSBD/VIRT_SSBD.
const E8_EBX_SPEC_CTRL: u32 = (1 << 12) | (1 << 14) | (1 << 15) | (1 << 24) | (1 << 25);
// Leaf 0x8000_0008 ECX (APM Vol 3, CPUID Fn8000_0008_ECX): NC, the number of
// cores minus one (7:0), and ApicIdSize, the APIC ID bits that number the
// cores (15:12).
const E8_ECX_NC: u32 = 0xff;
const E8_ECX_APIC_ID_SIZE: u32 = 0xf << 12;
// Leaf 1 EDX[28] HTT: EBX[23:16] (logical processors per package) is valid.
const L1_EDX_HTT: u32 = 1 << 28;
// Leaf 4 and Fn8000_001D EAX (SDM Vol 2A CPUID leaf 04H; APM Vol 3 Fn8000_001D):
// cache type (4:0, 0 = no more caches), level (7:5), logical processors
// sharing the cache minus one (25:14); leaf 4 only: core IDs per package
// minus one (31:26).
const CACHE_EAX_TYPE: u32 = 0x1f;
const CACHE_EAX_SHARING: u32 = 0xfff << 14;
const L4_EAX_CORES: u32 = 0x3f << 26;
// Leaf 0BH / 1FH ECX[15:8] level types (SDM Vol 2A CPUID leaf 0BH).
const TOPO_LEVEL_SMT: u32 = 1;
const TOPO_LEVEL_CORE: u32 = 2;
/// AMD's extended topology leaf (Zen 4 and later): Keel describes its
/// topology with Fn8000_0008, Fn8000_001E and leaf 0BH instead, so it reads
/// zeros (no levels), which makes a guest fall back to those.
const AMD_EXT_TOPOLOGY: u32 = 0x8000_0026;
// Fn8000_0007 EDX[8] TscInvariant (APM Vol 3 CPUID Fn8000_0007; SDM Vol
// 2A CPUID 80000007H, Vol 3B 18.17.1): the TSC runs at a constant rate in
// every P-, C- and T-state. True of the guest's TSC where it is true of the
// host's: Keel gives the guest the host's TSC plus an offset (VMCS TSC
// offset, VMCB TSC_OFFSET), never scaled or stopped. The leaf's other bits
// (power management, boost, the effective-frequency and RAS interfaces)
// describe MSRs Keel does not emulate and read as 0.
const E7_EDX_INVARIANT_TSC: u32 = 1 << 8;
const CR4_OSXSAVE: u64 = 1 << 18;
/// CR4.PKE (SDM Vol 3A 2.5), shown in CPUID.07H:ECX[4] OSPKE.
const CR4_PKE: u64 = 1 << 22;

/// One of CPUID's four output registers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CpuidReg {
    Eax,
    Ebx,
    Ecx,
    Edx,
}

/// A feature bit a VM's configuration hides (xl.cfg `cpuid = "host,name=0"`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuidBit {
    pub leaf: u32,
    pub subleaf: u32,
    pub reg: CpuidReg,
    pub bit: u8,
}

impl CpuidResult {
    fn reg_mut(&mut self, reg: CpuidReg) -> &mut u32 {
        match reg {
            CpuidReg::Eax => &mut self.eax,
            CpuidReg::Ebx => &mut self.ebx,
            CpuidReg::Ecx => &mut self.ecx,
            CpuidReg::Edx => &mut self.edx,
        }
    }
}

/// Size of the standard-format XSAVE area for the components in `xcr0`,
/// from the offset and size leaf 0DH gives each component (SDM Vol 1
/// 13.4.3): the legacy region and header (576 bytes) at least.
fn xsave_size(xcr0: u64, component: impl Fn(u32) -> CpuidResult) -> u32 {
    (2..63)
        .filter(|i| xcr0 & (1 << i) != 0)
        .map(|i| {
            let c = component(i);
            c.ebx.saturating_add(c.eax)
        })
        .fold(576, u32::max)
}

/// Bits of the APIC ID that number the cores of the one package a VM's
/// `vcpus` vCPUs form: the smallest `b` with `2^b >= vcpus` (SDM Vol 3A
/// 10.4.2 / 9.9.1: each level's field is a power-of-two wide).
fn core_id_bits(vcpus: u32) -> u32 {
    vcpus.max(1).next_power_of_two().trailing_zeros()
}

/// A VM's CPUID table.
#[derive(Debug, Clone)]
pub struct CpuidPolicy {
    entries: Vec<(u32, Option<u32>, CpuidResult)>,
    vcpus: u32,
}

impl CpuidPolicy {
    /// Builds the policy from the host's CPUID (`host(leaf, subleaf)`), for a VM of `vcpus` vCPUs.
    pub fn from_host(vcpus: u32, host: impl FnMut(u32, u32) -> CpuidResult) -> Self {
        Self::from_host_hiding(vcpus, host, &[])
    }

    /// [`Self::from_host`] with the feature bits `hidden` cleared first, so
    /// that what depends on them goes too (AVX2 with AVX, AVX with XSAVE).
    pub fn from_host_hiding(
        vcpus: u32,
        mut host: impl FnMut(u32, u32) -> CpuidResult,
        hidden: &[CpuidBit],
    ) -> Self {
        let mut entries = Vec::new();
        for range in [0u32, 0x8000_0000] {
            let max = host(range, 0).eax;
            // A bogus maximum (real CPUs report a few dozen) must not make us loop for ever.
            let max = max.clamp(range, range + 0x40);
            for leaf in range..=max {
                match INDEXED_LEAVES.iter().find(|(l, _)| *l == leaf) {
                    Some(&(_, n)) => {
                        for sub in 0..n {
                            entries.push((leaf, Some(sub), host(leaf, sub)));
                        }
                    }
                    None => entries.push((leaf, None, host(leaf, 0))),
                }
            }
        }
        let hide = |entries: &mut Vec<(u32, Option<u32>, CpuidResult)>| {
            for h in hidden {
                for (leaf, sub, r) in entries.iter_mut() {
                    if *leaf == h.leaf && sub.is_none_or(|s| s == h.subleaf) {
                        *r.reg_mut(h.reg) &= !(1u32 << (h.bit & 31));
                    }
                }
            }
        };
        hide(&mut entries);
        let mut policy = CpuidPolicy {
            entries,
            vcpus: vcpus.max(1),
        };
        policy.apply_keel_edits();
        // Keel's edits set what Keel offers whatever the host has (x2APIC):
        // a bit the configuration hides stays hidden.
        hide(&mut policy.entries);
        policy
    }

    /// Whether the guest is offered x2APIC (CPUID.01H:ECX[21]), which the
    /// local APIC model must then accept in IA32_APIC_BASE.
    pub fn offers_x2apic(&self) -> bool {
        self.entries
            .iter()
            .any(|(leaf, _, r)| *leaf == 1 && r.ecx & L1_ECX_X2APIC != 0)
    }

    /// The CR4 bits the guest may set: those whose features this table
    /// offers (`exit::cr::cr4_allowed`; CR4.PKE with PKU, say). A MOV to
    /// CR4 setting another raises #GP(0); on VMX such a write exits even
    /// where the CPU has the bit ([`crate::vmx::VmxControls::cr4_hidden`]).
    pub fn cr4_allowed(&self) -> u64 {
        super::cr::cr4_allowed(self.reg(1, 0), self.reg(7, 0), self.reg(7, 1))
    }

    /// Whether the table holds `leaf` (at or below the host's maximum of its range).
    fn has_leaf(&self, leaf: u32) -> bool {
        self.entries.iter().any(|e| e.0 == leaf)
    }

    fn reg(&self, leaf: u32, sub: u32) -> CpuidResult {
        self.entries
            .iter()
            .find(|(l, s, _)| *l == leaf && s.is_none_or(|s| s == sub))
            .map(|e| e.2)
            .unwrap_or_default()
    }

    /// The XCR0 components offered: what the host's leaf 0DH reports, within
    /// what Keel switches ([`fpu::switched_xcr0`]), and none without XSAVE;
    /// AVX and PKRU only with their CPUID bits (a hidden AVX or PKU hides
    /// its state too).
    fn offered_xcr0(&self) -> u64 {
        let l1 = self.reg(1, 0);
        if l1.ecx & L1_ECX_XSAVE == 0 {
            return 0;
        }
        let d = self.reg(0xd, 0);
        let host = (u64::from(d.edx) << 32) | u64::from(d.eax);
        let mut x = fpu::switched_xcr0(host, |i| {
            let c = self.reg(0xd, i);
            (c.ebx, c.eax)
        });
        if l1.ecx & L1_ECX_AVX == 0 || x & fpu::XCR0_SSE == 0 {
            x &= !fpu::XCR0_AVX;
        }
        if self.reg(7, 0).ecx & L7_ECX_PKU == 0 {
            x &= !fpu::XCR0_PKRU;
        }
        x
    }

    fn apply_keel_edits(&mut self) {
        let vcpus = self.vcpus;
        let core_bits = core_id_bits(vcpus);
        let core_ids = 1u32 << core_bits;
        let xcr0 = self.offered_xcr0();
        let avx = xcr0 & fpu::XCR0_AVX != 0;
        let pku = xcr0 & fpu::XCR0_PKRU != 0;
        let rdtscp = self.reg(0x8000_0001, 0).edx & E1_EDX_RDTSCP != 0;
        // Component sizes, for leaf 0DH sub-leaf 0 ECX.
        let comps: Vec<(u32, CpuidResult)> = (2..63u32)
            .filter(|i| xcr0 & (1 << i) != 0)
            .map(|i| (i, self.reg(0xd, i)))
            .collect();
        let max_size = xsave_size(xcr0, |i| {
            comps
                .iter()
                .find(|c| c.0 == i)
                .map(|c| c.1)
                .unwrap_or_default()
        });
        for (leaf, sub, r) in self.entries.iter_mut() {
            match (*leaf, sub.unwrap_or(0)) {
                (1, _) => {
                    r.ecx &= !(L1_ECX_MONITOR
                        | L1_ECX_VMX
                        | L1_ECX_EST
                        | L1_ECX_TM2
                        | L1_ECX_PDCM
                        | L1_ECX_TSC_DEADLINE);
                    // x2APIC whatever the host has: the local APIC model
                    // has the x2APIC MSR interface (device-model
                    // lapic::x2apic) and accepts IA32_APIC_BASE.EXTD
                    // exactly when this bit is offered (`offers_x2apic`).
                    r.ecx |= L1_ECX_HYPERVISOR | L1_ECX_X2APIC;
                    if xcr0 == 0 {
                        r.ecx &= !L1_ECX_XSAVE;
                    }
                    if !avx {
                        r.ecx &= !(L1_ECX_AVX | L1_ECX_FMA | L1_ECX_F16C);
                    }
                    r.edx &= !(L1_EDX_ACPI | L1_EDX_TM);
                    // EBX[23:16]: addressable logical processor IDs per
                    // package, valid with HTT: the one package's cores.
                    r.ebx = (r.ebx & !0x00ff_0000) | (core_ids.min(255) << 16);
                    r.edx &= !L1_EDX_HTT;
                    if vcpus > 1 {
                        r.edx |= L1_EDX_HTT;
                    }
                }
                // Caches: L1 and L2 belong to one core (one thread each),
                // L3 and beyond to the package; leaf 4 also counts the
                // package's core IDs.
                (4 | 0x8000_001d, _) if r.eax & CACHE_EAX_TYPE != 0 => {
                    let sharing = if (r.eax >> 5) & 7 >= 3 {
                        core_ids - 1
                    } else {
                        0
                    };
                    r.eax = (r.eax & !CACHE_EAX_SHARING) | ((sharing << 14) & CACHE_EAX_SHARING);
                    if *leaf == 4 {
                        r.eax = (r.eax & !L4_EAX_CORES) | ((core_ids - 1).min(63) << 26);
                    }
                }
                // Thermal/power management and architectural performance monitoring are not emulated.
                (0x6 | 0xa, _) => *r = CpuidResult::default(),
                // Leaf 15H (SDM Vol 2A CPUID, "Time Stamp Counter and
                // Nominal Core Crystal Clock Information Leaf") is not
                // enumerated (EBX 0): a guest takes its crystal for the
                // local APIC timer's clock (SDM Vol 3A 11.5.4) and its
                // ratio for the TSC's rate, and calibrates neither; the
                // host's describe neither the device model's APIC timer nor,
                // under an emulator, the TSC (Bochs says 3.5 GHz of a TSC
                // that runs at 100 MHz). Without it guests calibrate both
                // against the PIT, HPET or ACPI timer, which run on Keel's clock.
                (0x15, _) => *r = CpuidResult::default(),
                (7, 0) => {
                    r.ebx &= !(L7_EBX_MPX | L7_EBX_AVX512);
                    // OSPKE is the guest's CR4.PKE, filled in by `lookup`.
                    r.ecx &=
                        !(L7_ECX_AVX512 | L7_ECX_OSPKE | L7_ECX_CET_SS | L7_ECX_LA57 | L7_ECX_PKS);
                    if !pku {
                        r.ecx &= !L7_ECX_PKU;
                    }
                    r.edx &= !(L7_EDX_SPEC_CTRL | L7_EDX_AVX512 | L7_EDX_CET_IBT | L7_EDX_AMX);
                    if !avx {
                        r.ebx &= !L7_EBX_AVX2;
                        r.ecx &= !L7_ECX_VAES_VPCLMUL;
                    }
                    if !rdtscp {
                        r.ecx &= !L7_ECX_RDPID;
                    }
                }
                (7, 1) => {
                    r.eax &= !L7S1_EAX_AVX512_BF16;
                    if !avx {
                        r.eax &= !L7S1_EAX_AVX_VNNI;
                    }
                }
                // Leaf 0DH (SDM Vol 2A CPUID, Table 3-8): exactly the
                // offered components; sub-leaf 0 EBX follows the vCPU's
                // XCR0 and is filled in by `lookup`.
                (0xd, 0) if xcr0 != 0 => {
                    *r = CpuidResult {
                        eax: xcr0 as u32,
                        ebx: max_size,
                        ecx: max_size,
                        edx: (xcr0 >> 32) as u32,
                    }
                }
                (0xd, 1) if xcr0 != 0 => {
                    r.eax &= !LD1_EAX_XSAVES;
                    // EBX: the XSAVES size for XCR0 | XSS, meaningless
                    // without XSAVES; ECX:EDX, the XSS components, none.
                    (r.ebx, r.ecx, r.edx) = (0, 0, 0);
                }
                (0xd, i) if (2..63).contains(&i) && xcr0 & (1 << i) != 0 => {}
                (0xd, _) => *r = CpuidResult::default(),
                (0x8000_0001, _) => {
                    r.ecx &= !(E1_ECX_SVM | E1_ECX_MONITORX);
                    if !avx {
                        r.ecx &= !E1_ECX_XOP_FMA4;
                    }
                }
                (0x8000_0008, _) => {
                    r.ebx &= !E8_EBX_SPEC_CTRL;
                    r.ecx = (r.ecx & !(E8_ECX_NC | E8_ECX_APIC_ID_SIZE))
                        | ((vcpus - 1) & E8_ECX_NC)
                        | (core_bits << 12);
                }
                (0x8000_0007, _) => {
                    *r = CpuidResult {
                        edx: r.edx & E7_EDX_INVARIANT_TSC,
                        ..Default::default()
                    }
                }
                (AMD_EXT_TOPOLOGY, _) => *r = CpuidResult::default(),
                // SVM feature identification: SVM is hidden.
                (0x8000_000a, _) => *r = CpuidResult::default(),
                _ => {}
            }
        }
        let sig = KEEL_CPUID_SIGNATURE;
        let word = |i: usize| u32::from_le_bytes([sig[i], sig[i + 1], sig[i + 2], sig[i + 3]]);
        self.entries.push((
            HV_BASE,
            None,
            CpuidResult {
                eax: HV_BASE + 1,
                ebx: word(0),
                ecx: word(4),
                edx: word(8),
            },
        ));
        self.entries.push((
            HV_BASE + 1,
            None,
            CpuidResult {
                eax: KEEL_VERSION,
                ..Default::default()
            },
        ));
    }

    /// Leaf 16H (SDM Vol 2A CPUID, "Processor Frequency Information
    /// Leaf"), where the host has it: base and maximum frequency the rate
    /// of the guest's TSC, `tsc_hz` (the host's TSC plus an offset, as Keel
    /// measured it), in MHz, and the bus frequency not enumerated (0). A
    /// guest takes the base frequency for the TSC's before it calibrates.
    pub fn describe_tsc(&mut self, tsc_hz: u64) {
        let mhz = u32::try_from(tsc_hz / 1_000_000).unwrap_or(u32::MAX) & 0xffff;
        for (leaf, _, r) in self.entries.iter_mut() {
            if *leaf == 0x16 {
                *r = CpuidResult {
                    eax: mhz,
                    ebx: mhz,
                    ecx: 0,
                    edx: 0,
                };
            }
        }
    }

    /// Puts Hyper-V's leaves (`leaves`, from 0x4000_0000) in place of
    /// Keel's, which move to 0x4000_0100 with their maximum leaf adjusted
    /// (as Xen moves its own leaves when viridian is on).
    pub fn offer_hyperv(&mut self, leaves: &[(u32, CpuidResult)]) {
        let moved = super::hyperv::KEEL_LEAVES_WITH_HYPERV - HV_BASE;
        for (leaf, _, r) in self.entries.iter_mut() {
            if (HV_BASE..HV_BASE + 0x100).contains(leaf) {
                if *leaf == HV_BASE {
                    r.eax += moved;
                }
                *leaf += moved;
            }
        }
        self.entries
            .extend(leaves.iter().map(|&(leaf, r)| (leaf, None, r)));
    }

    /// The answer to CPUID(`leaf`, `subleaf`) on vCPU `vcpu_id` whose CR4 is
    /// `cr4` and XCR0 `xcr0`.
    pub fn lookup(
        &self,
        leaf: u32,
        subleaf: u32,
        vcpu_id: u32,
        cr4: u64,
        xcr0: u64,
    ) -> CpuidResult {
        let mut r = self.reg(leaf, subleaf);
        match leaf {
            1 => {
                r.ebx = (r.ebx & 0x00ff_ffff) | ((vcpu_id & 0xff) << 24);
                r.ecx &= !L1_ECX_OSXSAVE;
                if cr4 & CR4_OSXSAVE != 0 {
                    r.ecx |= L1_ECX_OSXSAVE;
                }
            }
            7 if subleaf == 0 && r.ecx & L7_ECX_PKU != 0 && cr4 & CR4_PKE != 0 => {
                r.ecx |= L7_ECX_OSPKE;
            }
            // Extended topology (SDM Vol 2A CPUID leaf 0BH, 1FH): one
            // thread per core (SMT level: shift 0, 1 processor), the
            // package's cores (core level: shift to the package ID, the
            // vCPU count), then no more levels; EDX the vCPU's x2APIC ID,
            // the same as the MADT's (crates/acpi-gen: vCPU n, APIC ID n).
            0xb | 0x1f if self.has_leaf(leaf) => {
                let (shift, count, level) = match subleaf {
                    0 => (0, 1, TOPO_LEVEL_SMT),
                    1 => (core_id_bits(self.vcpus), self.vcpus, TOPO_LEVEL_CORE),
                    _ => (0, 0, 0),
                };
                r = CpuidResult {
                    eax: shift,
                    ebx: count,
                    ecx: (level << 8) | (subleaf & 0xff),
                    edx: vcpu_id,
                };
            }
            // AMD's extended APIC ID and its core (APM Vol 3, CPUID
            // Fn8000_001E): EAX the APIC ID, EBX the core (compute unit) ID
            // with one thread per core, ECX node 0 of one node.
            0x8000_001e if self.has_leaf(leaf) => {
                r = CpuidResult {
                    eax: vcpu_id,
                    ebx: vcpu_id & 0xff,
                    ecx: 0,
                    edx: 0,
                };
            }
            // EBX: the XSAVE area size for the components the vCPU's XCR0
            // enables now (SDM Vol 2A CPUID leaf 0DH).
            0xd if subleaf == 0 && r.eax != 0 => {
                r.ebx = xsave_size(xcr0, |i| self.reg(0xd, i));
            }
            _ => {}
        }
        r
    }

    /// The XCR0 components a guest may enable (leaf 0DH sub-leaf 0 EDX:EAX).
    pub fn supported_xcr0(&self) -> u64 {
        let d = self.reg(0xd, 0);
        (u64::from(d.edx) << 32) | u64::from(d.eax)
    }

    /// Whether RDTSCP is offered (Fn8000_0001 EDX[27]).
    pub fn offers_rdtscp(&self) -> bool {
        self.reg(0x8000_0001, 0).edx & E1_EDX_RDTSCP != 0
    }

    /// Whether IA32_TSC_AUX exists for the guest: RDTSCP or RDPID offered.
    pub fn offers_tsc_aux(&self) -> bool {
        self.offers_rdtscp() || self.reg(7, 0).ecx & L7_ECX_RDPID != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A host that reports every feature bit set, so the test sees what Keel clears.
    fn all_ones_host(leaf: u32, sub: u32) -> CpuidResult {
        match leaf {
            0 => CpuidResult {
                eax: 0xd,
                ebx: 0x6874_7541,
                ecx: 0x444d_4163,
                edx: 0x6974_6e65,
            },
            0x8000_0000 => CpuidResult {
                eax: 0x8000_000a,
                ..Default::default()
            },
            _ => CpuidResult {
                eax: leaf ^ sub,
                ebx: !0,
                ecx: !0,
                edx: !0,
            },
        }
    }

    #[test]
    fn hides_virtualization_and_sets_hypervisor_bit() {
        let p = CpuidPolicy::from_host(1, all_ones_host);
        let l1 = p.lookup(1, 0, 0, 0, 1);
        assert_eq!(l1.ecx & L1_ECX_VMX, 0, "VMX must be hidden");
        assert_ne!(l1.ecx & L1_ECX_HYPERVISOR, 0, "hypervisor bit must be set");
        assert_eq!(l1.ecx & L1_ECX_MONITOR, 0);
        assert_eq!(
            l1.ecx & L1_ECX_OSXSAVE,
            0,
            "OSXSAVE follows the guest's CR4, which is 0"
        );
        let e1 = p.lookup(0x8000_0001, 0, 0, 0, 1);
        assert_eq!(e1.ecx & E1_ECX_SVM, 0, "SVM must be hidden");
        assert_eq!(p.lookup(0x8000_000a, 0, 0, 0, 1), CpuidResult::default());
        assert_eq!(p.lookup(0xa, 0, 0, 0, 1), CpuidResult::default());
        assert_eq!(p.lookup(7, 0, 0, 0, 1).edx & L7_EDX_SPEC_CTRL, 0);
        // Keel loads each vCPU's TSC_AUX: offered where the host has them.
        assert_ne!(p.lookup(7, 0, 0, 0, 1).ecx & L7_ECX_RDPID, 0, "RDPID");
        assert_ne!(e1.edx & E1_EDX_RDTSCP, 0, "RDTSCP");
        assert!(p.offers_tsc_aux());
    }

    #[test]
    fn the_clock_leaves_describe_keels_clocks_not_the_hosts() {
        // A host that reports a 3.5 GHz TSC from a 25 MHz crystal, and 3500
        // MHz base frequency (Bochs' Skylake-X, whose TSC runs at 100 MHz).
        let host = |leaf: u32, sub: u32| match leaf {
            0 => CpuidResult {
                eax: 0x16,
                ..all_ones_host(0, 0)
            },
            0x15 => CpuidResult {
                eax: 5,
                ebx: 700,
                ecx: 25_000_000,
                edx: 0,
            },
            0x16 => CpuidResult {
                eax: 3500,
                ebx: 3500,
                ecx: 100,
                edx: 0,
            },
            _ => all_ones_host(leaf, sub),
        };
        let mut p = CpuidPolicy::from_host(2, host);
        assert_eq!(p.lookup(0x15, 0, 0, 0, 1), CpuidResult::default());
        p.describe_tsc(100_000_000);
        let l16 = p.lookup(0x16, 0, 1, 0, 1);
        assert_eq!((l16.eax, l16.ebx, l16.ecx), (100, 100, 0));
        // A host without leaf 16H gets none.
        let mut p = CpuidPolicy::from_host(1, all_ones_host);
        p.describe_tsc(2_800_000_000);
        assert_eq!(p.lookup(0x16, 0, 0, 0, 1), CpuidResult::default());
    }

    #[test]
    fn keel_signature_leaves() {
        let p = CpuidPolicy::from_host(1, all_ones_host);
        let r = p.lookup(0x4000_0000, 0, 0, 0, 1);
        assert_eq!(r.eax, 0x4000_0001);
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&r.ebx.to_le_bytes());
        sig[4..8].copy_from_slice(&r.ecx.to_le_bytes());
        sig[8..].copy_from_slice(&r.edx.to_le_bytes());
        assert_eq!(&sig, b"KeelKeelKeel");
        assert_eq!(p.lookup(0x4000_0001, 0, 0, 0, 1).eax, KEEL_VERSION);
        assert_eq!(p.lookup(0x4000_0002, 0, 0, 0, 1), CpuidResult::default());
    }

    #[test]
    fn per_vcpu_fields_and_osxsave() {
        let p = CpuidPolicy::from_host(4, all_ones_host);
        let r = p.lookup(1, 0, 3, CR4_OSXSAVE, 1);
        assert_eq!(r.ebx >> 24, 3, "initial APIC ID is the vCPU index");
        assert_eq!((r.ebx >> 16) & 0xff, 4, "logical processor count");
        assert_ne!(r.ecx & L1_ECX_OSXSAVE, 0);
        assert_eq!(p.lookup(0xb, 1, 2, 0, 1).edx, 2);
    }

    #[test]
    fn subleaves_and_unknown_leaves() {
        let p = CpuidPolicy::from_host(1, all_ones_host);
        assert_eq!(
            p.lookup(0x4, 5, 0, 0, 1).eax,
            0x4 ^ 5,
            "indexed leaves keep their subleaf"
        );
        assert_eq!(
            p.lookup(2, 7, 0, 0, 1).eax,
            2,
            "plain leaves ignore the subleaf"
        );
        assert_eq!(
            p.lookup(0xe, 0, 0, 0, 1),
            CpuidResult::default(),
            "above the basic maximum"
        );
        assert_eq!(p.lookup(0x8000_0010, 0, 0, 0, 1), CpuidResult::default());
    }

    /// A Skylake-like host with x87, SSE, AVX, MPX, AVX-512 and PKRU state,
    /// with the component offsets and sizes of SDM Vol 1 Table 13-1 era CPUs.
    fn avx512_host(leaf: u32, sub: u32) -> CpuidResult {
        let r = |eax, ebx, ecx, edx| CpuidResult { eax, ebx, ecx, edx };
        match (leaf, sub) {
            (0, _) => r(0xd, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
            (1, _) => r(
                0x50654,
                0,
                L1_ECX_XSAVE | L1_ECX_AVX | L1_ECX_FMA | L1_ECX_X2APIC,
                0,
            ),
            (7, 0) => r(
                0,
                L7_EBX_AVX2 | L7_EBX_MPX | L7_EBX_AVX512 | (1 << 7) | (1 << 20),
                L7_ECX_PKU | L7_ECX_OSPKE,
                0,
            ),
            // x87 SSE AVX BNDREGS BNDCSR opmask ZMM_Hi256 Hi16_ZMM PKRU.
            (0xd, 0) => r(0x2ff, 0x440, 0xa88, 0),
            (0xd, 1) => r(0xf, 0x9c0, 0x100, 0),
            (0xd, 2) => r(256, 576, 0, 0),
            (0xd, 3) => r(64, 960, 0, 0),
            (0xd, 4) => r(64, 1024, 0, 0),
            (0xd, 5) => r(64, 1088, 0, 0),
            (0xd, 6) => r(512, 1152, 0, 0),
            (0xd, 7) => r(1024, 1664, 0, 0),
            (0xd, 9) => r(8, 2688, 0, 0),
            (0x8000_0000, _) => r(0x8000_0001, 0, 0, 0),
            (0x8000_0001, _) => r(0, 0, 0, E1_EDX_RDTSCP),
            _ => CpuidResult::default(),
        }
    }

    /// Leaf 0DH offers exactly x87, SSE, AVX and PKRU (SDM Vol 2A CPUID
    /// 0DH): EDX:EAX the mask, ECX the size for all of them (PKRU ends at
    /// 2688 + 8), EBX the size for the XCR0 the vCPU has now; sub-leaves of
    /// other components and XSAVES are gone, as are the features using
    /// their state.
    #[test]
    fn leaf_0d_matches_the_offered_xcr0() {
        let p = CpuidPolicy::from_host(1, avx512_host);
        let d0 = p.lookup(0xd, 0, 0, 0, 1);
        assert_eq!((d0.eax, d0.edx, d0.ecx), (0x207, 0, 2696));
        assert_eq!(d0.ebx, 576, "XCR0 = x87: legacy region and header only");
        assert_eq!(p.lookup(0xd, 0, 0, 0, 0x7).ebx, 832, "XCR0 = x87|SSE|AVX");
        assert_eq!(p.lookup(0xd, 0, 0, 0, 0x3).ebx, 576);
        assert_eq!(p.lookup(0xd, 0, 0, 0, 0x207).ebx, 2696, "with PKRU");
        assert_eq!(p.supported_xcr0(), 0x207);
        assert_eq!(p.lookup(0xd, 1, 0, 0, 1).eax & LD1_EAX_XSAVES, 0);
        assert_eq!(p.lookup(0xd, 1, 0, 0, 1).ecx, 0, "no XSS components");
        assert_eq!(
            p.lookup(0xd, 2, 0, 0, 1),
            CpuidResult {
                eax: 256,
                ebx: 576,
                ecx: 0,
                edx: 0
            }
        );
        assert_eq!(
            (p.lookup(0xd, 9, 0, 0, 1).eax, p.lookup(0xd, 9, 0, 0, 1).ebx),
            (8, 2688)
        );
        for i in [3, 5, 7] {
            assert_eq!(
                p.lookup(0xd, i, 0, 0, 1),
                CpuidResult::default(),
                "component {i}"
            );
        }
        let l7 = p.lookup(7, 0, 0, 0, 1);
        assert_eq!(l7.ebx & (L7_EBX_MPX | L7_EBX_AVX512), 0);
        assert_eq!(
            l7.ebx & (L7_EBX_AVX2 | (1 << 7) | (1 << 20)),
            L7_EBX_AVX2 | (1 << 7) | (1 << 20),
            "AVX2, SMEP, SMAP stay"
        );
        let l1 = p.lookup(1, 0, 0, 0, 1);
        assert_eq!(
            l1.ecx & (L1_ECX_XSAVE | L1_ECX_AVX),
            L1_ECX_XSAVE | L1_ECX_AVX
        );
        assert_ne!(l1.ecx & L1_ECX_X2APIC, 0, "x2APIC mode is offered");
    }

    /// PKU is offered with its state (SDM Vol 3A 4.6.2, Vol 1 13.5.7):
    /// OSPKE is the vCPU's CR4.PKE, not the host's; CR4.PKE may be set
    /// (`cr4_allowed`). Hidden by the configuration (`pku=0`), by a host
    /// without PKRU in leaf 0DH, or with XSAVE, it takes component 9 and
    /// CR4.PKE with it.
    #[test]
    fn pku_follows_the_host_its_state_and_the_guests_cr4() {
        let cr4_pke_allowed = |p: &CpuidPolicy| p.cr4_allowed() & CR4_PKE != 0;
        let p = CpuidPolicy::from_host(1, avx512_host);
        assert_eq!(
            p.lookup(7, 0, 0, 0, 1).ecx & (L7_ECX_PKU | L7_ECX_OSPKE),
            L7_ECX_PKU,
            "CR4.PKE clear"
        );
        assert_eq!(
            p.lookup(7, 0, 0, CR4_PKE, 1).ecx & (L7_ECX_PKU | L7_ECX_OSPKE),
            L7_ECX_PKU | L7_ECX_OSPKE
        );
        assert_eq!(
            p.lookup(7, 1, 0, CR4_PKE, 1).ecx & L7_ECX_OSPKE,
            0,
            "sub-leaf 0 only"
        );
        assert!(cr4_pke_allowed(&p));
        let all = CpuidPolicy::from_host(1, all_ones_host).lookup(7, 0, 0, 0, 1);
        assert_eq!(all.ecx & L7_ECX_PKS, 0, "PKS: IA32_PKRS is not switched");
        assert_eq!(all.ecx & L7_ECX_LA57, 0, "5-level paging is not offered");
        assert_eq!(
            CpuidPolicy::from_host(1, all_ones_host).cr4_allowed() & (1 << 12),
            0,
            "nor CR4.LA57"
        );
        let pku = CpuidBit {
            leaf: 7,
            subleaf: 0,
            reg: CpuidReg::Ecx,
            bit: 3,
        };
        let xsave = CpuidBit {
            leaf: 1,
            subleaf: 0,
            reg: CpuidReg::Ecx,
            bit: 26,
        };
        let no_pkru_state = |leaf, sub| match (leaf, sub) {
            (0xd, 0) => CpuidResult {
                eax: 0xff,
                ..avx512_host(leaf, sub)
            },
            _ => avx512_host(leaf, sub),
        };
        for p in [
            CpuidPolicy::from_host_hiding(1, avx512_host, &[pku]),
            CpuidPolicy::from_host_hiding(1, avx512_host, &[xsave]),
            CpuidPolicy::from_host(1, no_pkru_state),
        ] {
            assert_eq!(
                p.lookup(7, 0, 0, CR4_PKE, 1).ecx & (L7_ECX_PKU | L7_ECX_OSPKE),
                0
            );
            assert_eq!(p.supported_xcr0() & fpu::XCR0_PKRU, 0);
            assert_eq!(p.lookup(0xd, 9, 0, 0, 1), CpuidResult::default());
            assert!(!cr4_pke_allowed(&p));
        }
        let p = CpuidPolicy::from_host_hiding(1, avx512_host, &[pku]);
        assert_eq!(p.lookup(0xd, 0, 0, 0, 1).ecx, 832, "sizes without PKRU");
    }

    /// Fn8000_0007 EDX[8] TscInvariant is the host's (Keel only offsets the
    /// TSC) unless the configuration hides it (`invtsc=0`); the leaf's other
    /// bits read 0.
    #[test]
    fn invariant_tsc_follows_the_host_and_the_configuration() {
        let p = CpuidPolicy::from_host(1, all_ones_host);
        assert_eq!(
            p.lookup(0x8000_0007, 0, 0, 0, 1),
            CpuidResult {
                edx: E7_EDX_INVARIANT_TSC,
                ..Default::default()
            }
        );
        let without = |leaf, sub| match leaf {
            0x8000_0007 => CpuidResult {
                edx: !E7_EDX_INVARIANT_TSC,
                ..all_ones_host(leaf, sub)
            },
            _ => all_ones_host(leaf, sub),
        };
        assert_eq!(
            CpuidPolicy::from_host(1, without).lookup(0x8000_0007, 0, 0, 0, 1),
            CpuidResult::default()
        );
        let invtsc = CpuidBit {
            leaf: 0x8000_0007,
            subleaf: 0,
            reg: CpuidReg::Edx,
            bit: 8,
        };
        let p = CpuidPolicy::from_host_hiding(1, all_ones_host, &[invtsc]);
        assert_eq!(p.lookup(0x8000_0007, 0, 0, 0, 1), CpuidResult::default());
    }

    /// Hiding AVX takes AVX2, FMA and the AVX state with it; hiding XSAVE
    /// takes leaf 0DH and every XSAVE feature.
    #[test]
    fn hidden_features_take_their_dependents() {
        let bit = |leaf, reg, bit| CpuidBit {
            leaf,
            subleaf: 0,
            reg,
            bit,
        };
        let p = CpuidPolicy::from_host_hiding(1, avx512_host, &[bit(1, CpuidReg::Ecx, 28)]);
        let l1 = p.lookup(1, 0, 0, 0, 1);
        assert_eq!(l1.ecx & (L1_ECX_AVX | L1_ECX_FMA), 0);
        assert_ne!(l1.ecx & L1_ECX_XSAVE, 0);
        assert_eq!(p.lookup(7, 0, 0, 0, 1).ebx & L7_EBX_AVX2, 0);
        assert_eq!(p.supported_xcr0(), 0x203, "PKRU does not need AVX");
        assert_eq!(p.lookup(0xd, 0, 0, 0, 1).ecx, 2696);
        assert_eq!(p.lookup(0xd, 2, 0, 0, 1), CpuidResult::default());
        let p = CpuidPolicy::from_host_hiding(1, avx512_host, &[bit(1, CpuidReg::Ecx, 26)]);
        assert_eq!(
            p.lookup(1, 0, 0, CR4_OSXSAVE, 1).ecx & (L1_ECX_XSAVE | L1_ECX_AVX),
            0
        );
        assert_eq!(p.lookup(0xd, 0, 0, 0, 1), CpuidResult::default());
        assert_eq!(p.supported_xcr0(), 0);
        let p =
            CpuidPolicy::from_host_hiding(1, avx512_host, &[bit(0x8000_0001, CpuidReg::Edx, 27)]);
        assert!(
            !p.offers_rdtscp() && !p.offers_tsc_aux(),
            "RDPID goes with RDTSCP"
        );
        // x2APIC is offered, and the APIC model accepts x2APIC mode, unless
        // the configuration hides it.
        assert!(CpuidPolicy::from_host_hiding(1, avx512_host, &[]).offers_x2apic());
        assert!(
            CpuidPolicy::from_host_hiding(2, intel_smt_host, &[]).offers_x2apic(),
            "offered on a host without it too"
        );
        let p = CpuidPolicy::from_host_hiding(1, avx512_host, &[bit(1, CpuidReg::Ecx, 21)]);
        assert!(!p.offers_x2apic());
        assert_eq!(p.lookup(1, 0, 0, 0, 1).ecx & L1_ECX_X2APIC, 0);
    }

    /// An Intel host with 2 threads per core and 8 cores: leaf 4 with an L1
    /// data cache shared by the 2 threads and an L3 by 16, leaves 0BH and 1FH
    /// describing that (SMT shift 1, core shift 4).
    fn intel_smt_host(leaf: u32, sub: u32) -> CpuidResult {
        let r = |eax, ebx, ecx, edx| CpuidResult { eax, ebx, ecx, edx };
        let cache =
            |ty: u32, level: u32, sharing: u32| (7 << 26) | (sharing << 14) | (level << 5) | ty;
        match (leaf, sub) {
            (0, _) => r(0x1f, 0x756e_6547, 0x6c65_746e, 0x4965_6e69),
            (1, _) => r(0x906ea, 0x0510_0800, 0, L1_EDX_HTT),
            (4, 0) => r(cache(1, 1, 1), 0, 0, 0),
            (4, 1) => r(cache(3, 2, 1), 0, 0, 0),
            (4, 2) => r(cache(3, 3, 15), 0, 0, 0),
            (0xb | 0x1f, 0) => r(1, 2, 0x100, 5),
            (0xb | 0x1f, 1) => r(4, 16, 0x201, 5),
            (0xb | 0x1f, s) => r(0, 0, s, 5),
            (0x8000_0000, _) => r(0x8000_0008, 0, 0, 0),
            (0x8000_0008, _) => r(0x3027, 0, 0, 0),
            _ => CpuidResult::default(),
        }
    }

    /// Intel, 3 vCPUs: one package of 3 cores (2 core-ID bits), one thread
    /// each, so every leaf agrees with the MADT's APIC IDs 0..3 (SDM Vol 2A
    /// CPUID leaves 01H, 04H, 0BH, 1FH; Vol 3A 9.9 topology enumeration).
    #[test]
    fn intel_topology_is_one_package_of_vcpus_cores() {
        let p = CpuidPolicy::from_host(3, intel_smt_host);
        for id in 0..3 {
            let l1 = p.lookup(1, 0, id, 0, 1);
            assert_eq!(l1.ebx >> 24, id, "initial APIC ID");
            assert_eq!((l1.ebx >> 16) & 0xff, 4, "IDs per package: 2 bits");
            assert_ne!(l1.edx & L1_EDX_HTT, 0);
            for leaf in [0xb, 0x1f] {
                let smt = p.lookup(leaf, 0, id, 0, 1);
                assert_eq!(
                    (smt.eax & 0x1f, smt.ebx & 0xffff),
                    (0, 1),
                    "one thread per core"
                );
                assert_eq!(smt.ecx, 0x100, "level 0 is SMT");
                assert_eq!(smt.edx, id, "x2APIC ID is the vCPU's");
                let core = p.lookup(leaf, 1, id, 0, 1);
                assert_eq!(
                    (core.eax & 0x1f, core.ebx & 0xffff),
                    (2, 3),
                    "3 cores, shift 2"
                );
                assert_eq!(core.ecx, 0x201, "level 1 is Core");
                assert_eq!(core.edx, id);
                let end = p.lookup(leaf, 2, id, 0, 1);
                assert_eq!(
                    (end.eax, end.ebx, end.ecx, end.edx),
                    (0, 0, 2, id),
                    "no more levels"
                );
                assert_eq!(
                    p.lookup(leaf, 9, id, 0, 1).ecx,
                    9,
                    "ECX[7:0] echoes the sub-leaf"
                );
            }
            // The package ID (APIC ID >> core shift) is 0 for every vCPU.
            assert_eq!(id >> p.lookup(0xb, 1, id, 0, 1).eax, 0);
        }
        let cores_and_sharing = |sub| {
            let eax = p.lookup(4, sub, 1, 0, 1).eax;
            (eax >> 26, (eax >> 14) & 0xfff)
        };
        assert_eq!(cores_and_sharing(0), (3, 0), "L1D: one thread, 4 core IDs");
        assert_eq!(cores_and_sharing(1), (3, 0), "L2: one thread");
        assert_eq!(cores_and_sharing(2), (3, 3), "L3: the package");
        assert_eq!(
            p.lookup(4, 0, 1, 0, 1).eax & 0x3ff,
            (1 << 5) | 1,
            "type and level kept"
        );
        assert_eq!(
            p.lookup(4, 3, 1, 0, 1),
            CpuidResult::default(),
            "no 4th cache"
        );
        // One vCPU: no HTT, one ID, leaf 0BH one core.
        let p = CpuidPolicy::from_host(1, intel_smt_host);
        let l1 = p.lookup(1, 0, 0, 0, 1);
        assert_eq!((l1.edx & L1_EDX_HTT, (l1.ebx >> 16) & 0xff), (0, 1));
        assert_eq!(p.lookup(0xb, 1, 0, 0, 1).ebx, 1);
        assert_eq!(
            p.lookup(4, 2, 0, 0, 1).eax >> 14,
            0,
            "L3 shared by none, 1 core"
        );
    }

    /// A host whose basic leaves stop before 0BH has no extended topology
    /// to describe: those leaves read zeros, as above the maximum.
    #[test]
    fn topology_leaves_above_the_maximum_stay_zero() {
        let p = CpuidPolicy::from_host(2, |leaf, sub| match leaf {
            0 => CpuidResult {
                eax: 7,
                ..Default::default()
            },
            _ => intel_smt_host(leaf, sub),
        });
        assert_eq!(p.lookup(0xb, 0, 1, 0, 1), CpuidResult::default());
        assert_eq!(p.lookup(0x1f, 1, 1, 0, 1), CpuidResult::default());
        assert_eq!(p.lookup(0x8000_001e, 0, 1, 0, 1), CpuidResult::default());
    }

    /// An AMD Zen host (8 cores, 2 threads each, topology extensions): its
    /// Fn8000_0008 ECX, Fn8000_001D caches, Fn8000_001E IDs and Fn8000_0026.
    fn amd_host(leaf: u32, sub: u32) -> CpuidResult {
        let r = |eax, ebx, ecx, edx| CpuidResult { eax, ebx, ecx, edx };
        let cache = |ty: u32, level: u32, sharing: u32| (sharing << 14) | (level << 5) | ty;
        match (leaf, sub) {
            (0, _) => r(0x10, 0x6874_7541, 0x444d_4163, 0x6974_6e65),
            (1, _) => r(0xa20f12, 0x0b10_0800, 0, L1_EDX_HTT),
            (0xb, 0) => r(1, 2, 0x100, 11),
            (0xb, 1) => r(7, 16, 0x201, 11),
            (0x8000_0000, _) => r(0x8000_0026, 0, 0, 0),
            (0x8000_0008, _) => r(0x3030, 0, 0x0001_700f, 0),
            (0x8000_001d, 0) => r(cache(1, 1, 1), 0, 0, 0),
            (0x8000_001d, 1) => r(cache(3, 2, 1), 0, 0, 0),
            (0x8000_001d, 2) => r(cache(3, 3, 15), 0, 0, 0),
            (0x8000_001e, _) => r(11, 0x105, 0x300, 0),
            (0x8000_0026, s) => r(1, 2, 0x100 | s, 11),
            _ => CpuidResult::default(),
        }
    }

    /// AMD, 4 vCPUs: Fn8000_0008 ECX says 4 cores (NC 3, ApicIdSize 2),
    /// Fn8000_001E gives each vCPU its APIC ID and core ID with one thread
    /// per core on node 0 (APM Vol 3 Appendix E.4, CPUID Fn8000_0008,
    /// Fn8000_001D, Fn8000_001E), L3 shared by the package.
    #[test]
    fn amd_topology_is_one_package_of_vcpus_cores() {
        let p = CpuidPolicy::from_host(4, amd_host);
        let e8 = p.lookup(0x8000_0008, 0, 0, 0, 1);
        assert_eq!(e8.ecx & 0xff, 3, "NC: 4 cores");
        assert_eq!((e8.ecx >> 12) & 0xf, 2, "ApicIdSize: 2 bits");
        assert_eq!(e8.ecx >> 16, 1, "PerfTscSize kept");
        for id in 0..4 {
            assert_eq!(p.lookup(1, 0, id, 0, 1).ebx >> 24, id);
            assert_eq!((p.lookup(1, 0, id, 0, 1).ebx >> 16) & 0xff, 4);
            let e = p.lookup(0x8000_001e, 0, id, 0, 1);
            assert_eq!(e.eax, id, "extended APIC ID");
            assert_eq!(e.ebx, id, "core ID, ThreadsPerCore - 1 = 0");
            assert_eq!(e.ecx, 0, "node 0 of 1");
            assert_eq!(p.lookup(0xb, 0, id, 0, 1).edx, id);
            assert_eq!(p.lookup(0xb, 1, id, 0, 1).ebx, 4);
        }
        let sharing = |sub| (p.lookup(0x8000_001d, sub, 2, 0, 1).eax >> 14) & 0xfff;
        assert_eq!((sharing(0), sharing(1), sharing(2)), (0, 0, 3));
        assert_eq!(
            p.lookup(0x8000_0026, 0, 2, 0, 1),
            CpuidResult::default(),
            "Fn8000_0026 gone: its host levels would disagree"
        );
    }

    #[test]
    fn bogus_host_maximum_is_bounded() {
        let p = CpuidPolicy::from_host(1, |leaf, _| CpuidResult {
            eax: if leaf == 0 { u32::MAX } else { 0 },
            ..Default::default()
        });
        assert!(p.entries.len() < 1000);
    }
}
