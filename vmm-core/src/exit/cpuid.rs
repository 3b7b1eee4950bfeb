//! CPUID policy: what a guest learns about its virtual CPU.
//!
//! The table is taken once from the host CPU when the VM is created and edited
//! here; a CPUID exit is then a lookup plus the few fields that depend on the
//! vCPU (APIC ID, OSXSAVE). Leaves the table does not hold read as zeros, as on
//! AMD processors for leaves above the maximum (APM Vol 3, CPUID).

use alloc::vec::Vec;

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
// Leaf 7 EDX: speculation-control MSRs Keel does not emulate.
const L7_EDX_SPEC_CTRL: u32 = (1 << 26) | (1 << 27) | (1 << 29) | (1 << 31);
// Leaf 7 ECX[22] RDPID and Fn8000_0001 EDX[27] RDTSCP: both read
// IA32_TSC_AUX, which neither backend switches between host and guest (it
// is in neither the VMCB nor the VMCS guest state), so a guest would read
// the host's value; hidden, and the backends make the instructions #UD.
const L7_ECX_RDPID: u32 = 1 << 22;
const E1_EDX_RDTSCP: u32 = 1 << 27;
// Leaf 0x8000_0001 ECX (APM Vol 3, CPUID Fn8000_0001).
const E1_ECX_SVM: u32 = 1 << 2;
const E1_ECX_MONITORX: u32 = 1 << 29;
// Leaf 0x8000_0008 EBX: AMD IBPB/IBRS/STIBP/SSBD/VIRT_SSBD.
const E8_EBX_SPEC_CTRL: u32 = (1 << 12) | (1 << 14) | (1 << 15) | (1 << 24) | (1 << 25);
const CR4_OSXSAVE: u64 = 1 << 18;

/// A VM's CPUID table.
#[derive(Debug, Clone)]
pub struct CpuidPolicy {
    entries: Vec<(u32, Option<u32>, CpuidResult)>,
    vcpus: u32,
}

impl CpuidPolicy {
    /// Builds the policy from the host's CPUID (`host(leaf, subleaf)`), for a VM of `vcpus` vCPUs.
    pub fn from_host(vcpus: u32, mut host: impl FnMut(u32, u32) -> CpuidResult) -> Self {
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
        let mut policy = CpuidPolicy {
            entries,
            vcpus: vcpus.max(1),
        };
        policy.apply_keel_edits();
        policy
    }

    fn apply_keel_edits(&mut self) {
        let vcpus = self.vcpus;
        for (leaf, _, r) in self.entries.iter_mut() {
            match *leaf {
                1 => {
                    r.ecx &= !(L1_ECX_MONITOR
                        | L1_ECX_VMX
                        | L1_ECX_EST
                        | L1_ECX_TM2
                        | L1_ECX_PDCM
                        | L1_ECX_X2APIC
                        | L1_ECX_TSC_DEADLINE);
                    r.ecx |= L1_ECX_HYPERVISOR;
                    r.edx &= !(L1_EDX_ACPI | L1_EDX_TM);
                    // EBX[23:16]: logical processors per package.
                    r.ebx = (r.ebx & !0x00ff_0000) | ((vcpus.min(255)) << 16);
                }
                // Thermal/power management and architectural performance monitoring are not emulated.
                0x6 | 0xa => *r = CpuidResult::default(),
                7 => {
                    r.edx &= !L7_EDX_SPEC_CTRL;
                    r.ecx &= !L7_ECX_RDPID;
                }
                0x8000_0001 => {
                    r.ecx &= !(E1_ECX_SVM | E1_ECX_MONITORX);
                    r.edx &= !E1_EDX_RDTSCP;
                }
                0x8000_0008 => r.ebx &= !E8_EBX_SPEC_CTRL,
                // SVM feature identification: SVM is hidden.
                0x8000_000a => *r = CpuidResult::default(),
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

    /// The answer to CPUID(`leaf`, `subleaf`) on vCPU `vcpu_id` whose CR4 is `cr4`.
    pub fn lookup(&self, leaf: u32, subleaf: u32, vcpu_id: u32, cr4: u64) -> CpuidResult {
        let mut r = self
            .entries
            .iter()
            .find(|(l, s, _)| *l == leaf && s.is_none_or(|s| s == subleaf))
            .map(|e| e.2)
            .unwrap_or_default();
        match leaf {
            1 => {
                r.ebx = (r.ebx & 0x00ff_ffff) | ((vcpu_id & 0xff) << 24);
                r.ecx &= !L1_ECX_OSXSAVE;
                if cr4 & CR4_OSXSAVE != 0 {
                    r.ecx |= L1_ECX_OSXSAVE;
                }
            }
            0xb | 0x1f => r.edx = vcpu_id,
            _ => {}
        }
        r
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
        let l1 = p.lookup(1, 0, 0, 0);
        assert_eq!(l1.ecx & L1_ECX_VMX, 0, "VMX must be hidden");
        assert_ne!(l1.ecx & L1_ECX_HYPERVISOR, 0, "hypervisor bit must be set");
        assert_eq!(l1.ecx & L1_ECX_MONITOR, 0);
        assert_eq!(
            l1.ecx & L1_ECX_OSXSAVE,
            0,
            "OSXSAVE follows the guest's CR4, which is 0"
        );
        let e1 = p.lookup(0x8000_0001, 0, 0, 0);
        assert_eq!(e1.ecx & E1_ECX_SVM, 0, "SVM must be hidden");
        assert_eq!(p.lookup(0x8000_000a, 0, 0, 0), CpuidResult::default());
        assert_eq!(p.lookup(0xa, 0, 0, 0), CpuidResult::default());
        assert_eq!(p.lookup(7, 0, 0, 0).edx & L7_EDX_SPEC_CTRL, 0);
        assert_eq!(p.lookup(7, 0, 0, 0).ecx & L7_ECX_RDPID, 0, "RDPID");
        assert_eq!(e1.edx & E1_EDX_RDTSCP, 0, "RDTSCP");
    }

    #[test]
    fn keel_signature_leaves() {
        let p = CpuidPolicy::from_host(1, all_ones_host);
        let r = p.lookup(0x4000_0000, 0, 0, 0);
        assert_eq!(r.eax, 0x4000_0001);
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&r.ebx.to_le_bytes());
        sig[4..8].copy_from_slice(&r.ecx.to_le_bytes());
        sig[8..].copy_from_slice(&r.edx.to_le_bytes());
        assert_eq!(&sig, b"KeelKeelKeel");
        assert_eq!(p.lookup(0x4000_0001, 0, 0, 0).eax, KEEL_VERSION);
        assert_eq!(p.lookup(0x4000_0002, 0, 0, 0), CpuidResult::default());
    }

    #[test]
    fn per_vcpu_fields_and_osxsave() {
        let p = CpuidPolicy::from_host(4, all_ones_host);
        let r = p.lookup(1, 0, 3, CR4_OSXSAVE);
        assert_eq!(r.ebx >> 24, 3, "initial APIC ID is the vCPU index");
        assert_eq!((r.ebx >> 16) & 0xff, 4, "logical processor count");
        assert_ne!(r.ecx & L1_ECX_OSXSAVE, 0);
        assert_eq!(p.lookup(0xb, 1, 2, 0).edx, 2);
    }

    #[test]
    fn subleaves_and_unknown_leaves() {
        let p = CpuidPolicy::from_host(1, all_ones_host);
        assert_eq!(
            p.lookup(0xd, 5, 0, 0).eax,
            0xd ^ 5,
            "indexed leaves keep their subleaf"
        );
        assert_eq!(
            p.lookup(2, 7, 0, 0).eax,
            2,
            "plain leaves ignore the subleaf"
        );
        assert_eq!(
            p.lookup(0xe, 0, 0, 0),
            CpuidResult::default(),
            "above the basic maximum"
        );
        assert_eq!(p.lookup(0x8000_0010, 0, 0, 0), CpuidResult::default());
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
