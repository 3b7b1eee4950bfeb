//! Naming the field behind a failed VM entry.
//!
//! VM-instruction errors 7 and 8 and exit reason 33 say only that some
//! control, host-state or guest-state field is wrong (SDM 26.2, 26.3). This
//! repeats the checks Keel's settings could plausibly break, in the SDM's
//! order, and names the first field that fails one. Pure: it reads the VMCS
//! through [`VmcsRead`].

use super::controls::{EntryControls, VmxCapabilities, VmxControls};
use super::decode::VmcsRead;
use super::vmcs_field::VmcsField as F;

const CR0_PE: u64 = 1 << 0;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LMA: u64 = 1 << 10;
const RFLAGS_IF: u64 = 1 << 9;
// VM-entry interruption information (SDM 25.8.3, Table 25-17).
const ENTRY_VALID: u64 = 1 << 31;
const ENTRY_ERROR_CODE: u64 = 1 << 11;
const ENTRY_RESERVED: u64 = 0x7fff_f000;

/// The first field that breaks a VM-entry check, with the check in words.
pub fn offending_field(vmcs: &impl VmcsRead, controls: &VmxControls) -> Option<(F, &'static str)> {
    let caps: &VmxCapabilities = &controls.caps;
    // Controls (SDM 26.2.1): allowed 0- and 1-settings.
    for (field, cap) in [
        (F::PinBasedVmExecutionControls, caps.true_pinbased),
        (
            F::PrimaryProcessorBasedVmExecutionControls,
            caps.true_procbased,
        ),
        (
            F::SecondaryProcessorBasedVmExecutionControls,
            caps.procbased2,
        ),
        (F::VmExitControls, caps.true_exit),
        (F::VmEntryControls, caps.true_entry),
    ] {
        let v = vmcs.read(field) as u32;
        if v & (cap as u32) != cap as u32 || v & !((cap >> 32) as u32) != 0 {
            return Some((field, "a bit differs from what the capability MSR allows"));
        }
    }
    if vmcs.read(F::EptPointer) & 0x3f != 0x1e {
        return Some((F::EptPointer, "not write-back with a 4-level walk"));
    }
    // Host state (SDM 26.2.2, 26.2.3).
    let fixed = |v: u64, f0: u64, f1: u64| v & f0 == f0 && v & !f1 & 0xffff_ffff == 0;
    if !fixed(vmcs.read(F::HostCr0), caps.cr0_fixed0, caps.cr0_fixed1) {
        return Some((F::HostCr0, "violates IA32_VMX_CR0_FIXED0/1"));
    }
    if !fixed(vmcs.read(F::HostCr4), caps.cr4_fixed0, caps.cr4_fixed1) {
        return Some((
            F::HostCr4,
            "violates IA32_VMX_CR4_FIXED0/1 (VMXE must be 1)",
        ));
    }
    if vmcs.read(F::HostTrSelector) == 0 {
        return Some((F::HostTrSelector, "is 0: the host needs a TSS"));
    }
    if vmcs.read(F::HostCsSelector) == 0 {
        return Some((F::HostCsSelector, "is 0"));
    }
    if let Some(found) = pre_entry_check(vmcs, controls) {
        return Some(found);
    }
    if vmcs.read(F::VmcsLinkPointer) != u64::MAX {
        return Some((F::VmcsLinkPointer, "is not all ones"));
    }
    if vmcs.read(F::GuestInterruptibilityState) & 1 != 0
        && vmcs.read(F::GuestRflags) & RFLAGS_IF == 0
    {
        return Some((
            F::GuestInterruptibilityState,
            "blocking by STI with RFLAGS.IF clear",
        ));
    }
    if vmcs.read(F::GuestActivityState) > 3 {
        return Some((F::GuestActivityState, "is not a defined activity state"));
    }
    None
}

/// The VM-entry checks that a guest can make fail through Keel's own exit
/// handling (MOV to CR0 / CR4, EFER writes, event injection): guest CR0 and
/// CR4 against the fixed bits (SDM 26.3.1.1), PG without PE, EFER.LMA
/// against the IA-32e mode guest control and the paging it needs, and the
/// VM-entry event-injection fields (SDM 26.2.1.3). Run before every entry,
/// so a state the CPU would refuse stops the VM with the field named
/// instead of a failed entry.
pub fn pre_entry_check(vmcs: &impl VmcsRead, controls: &VmxControls) -> Option<(F, &'static str)> {
    let cr0 = vmcs.read(F::GuestCr0);
    if cr0 & controls.guest_cr0_must_be_one != controls.guest_cr0_must_be_one
        || cr0 & controls.guest_cr0_must_be_zero != 0
        || cr0 >> 32 != 0
    {
        return Some((F::GuestCr0, "violates IA32_VMX_CR0_FIXED0/1 (NE must be 1)"));
    }
    if cr0 & CR0_PG != 0 && cr0 & CR0_PE == 0 {
        return Some((F::GuestCr0, "has PG set without PE"));
    }
    let cr4 = vmcs.read(F::GuestCr4);
    if cr4 & controls.guest_cr4_must_be_one != controls.guest_cr4_must_be_one
        || cr4 & controls.guest_cr4_must_be_zero != 0
        || cr4 >> 32 != 0
    {
        return Some((
            F::GuestCr4,
            "violates IA32_VMX_CR4_FIXED0/1 (VMXE must be 1)",
        ));
    }
    let ia32e =
        vmcs.read(F::VmEntryControls) & u64::from(EntryControls::IA32E_MODE_GUEST.bits()) != 0;
    if ia32e != (vmcs.read(F::GuestIa32Efer) & EFER_LMA != 0) {
        return Some((
            F::GuestIa32Efer,
            "LMA differs from the IA-32e mode guest entry control",
        ));
    }
    if ia32e && (cr0 & CR0_PG == 0 || cr4 & CR4_PAE == 0) {
        return Some((
            F::GuestCr4,
            "an IA-32e mode guest needs CR0.PG and CR4.PAE set",
        ));
    }
    let info = vmcs.read(F::VmEntryInterruptionInformation);
    if info & ENTRY_VALID != 0 {
        let (vector, kind) = (info & 0xff, (info >> 8) & 7);
        let with_code = info & ENTRY_ERROR_CODE != 0;
        let must_have_code =
            cr0 & CR0_PE != 0 && kind == 3 && crate::event::has_error_code(vector as u8);
        let len = vmcs.read(F::VmEntryInstructionLength);
        let why = if info & ENTRY_RESERVED != 0 {
            Some("has reserved bits 30:12 set")
        } else if kind == 1 || kind == 7 {
            Some("has an interruption type Keel never injects")
        } else if kind == 2 && vector != 2 {
            Some("is an NMI with a vector other than 2")
        } else if kind == 3 && vector > 31 {
            Some("is a hardware exception with a vector above 31")
        } else if with_code != must_have_code {
            Some("delivers an error code exactly when not allowed (CR0.PE, type, vector)")
        } else if (4..=6).contains(&kind) && !(1..=15).contains(&len) {
            Some("is a software event without a VM-entry instruction length of 1 to 15")
        } else {
            None
        };
        if let Some(why) = why {
            return Some((F::VmEntryInterruptionInformation, why));
        }
    }
    None
}

/// Words for a failed-entry exit reason and its qualification (SDM 26.8, 27.8).
pub fn entry_failure_detail(reason: u32, qualification: u64) -> &'static str {
    match (reason & 0xffff, qualification) {
        (33, 2) => "loading the PDPTEs failed",
        (33, 3) => "NMI injection with blocking by NMI",
        (33, 4) => "invalid VMCS link pointer",
        (33, _) => "a guest-state field failed a VM-entry check",
        (34, _) => "an entry of the VM-entry MSR-load area could not be loaded",
        (41, _) => "a machine-check event during VM entry",
        _ => "unknown VM-entry failure",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vmx::decode::tests::FakeVmcs;
    use crate::vmx::vcpu::tests::vcpu;

    #[test]
    fn a_fresh_vcpu_passes_every_check() {
        let v = vcpu();
        assert_eq!(offending_field(v.vmcs(), v.controls()), None);
    }

    #[test]
    fn each_broken_field_is_named() {
        let broken: [(F, u64, F); 6] = [
            (F::HostTrSelector, 0, F::HostTrSelector),
            (F::GuestCr0, 0x6000_0010, F::GuestCr0),
            (F::GuestCr0, 0x8000_0030, F::GuestCr0),
            (F::GuestCr4, 0, F::GuestCr4),
            (F::VmcsLinkPointer, 0, F::VmcsLinkPointer),
            (F::GuestIa32Efer, EFER_LMA, F::GuestIa32Efer),
        ];
        for (field, value, named) in broken {
            let v = vcpu();
            let mut m: FakeVmcs = v.vmcs().clone();
            m.set(field, value);
            let got = offending_field(&m, v.controls());
            assert_eq!(
                got.map(|g| g.0),
                Some(named),
                "{field:?} = {value:#x}: {got:?}"
            );
        }
        let v = vcpu();
        let mut m = v.vmcs().clone();
        m.set(F::PinBasedVmExecutionControls, 0);
        assert_eq!(
            offending_field(&m, v.controls()).map(|g| g.0),
            Some(F::PinBasedVmExecutionControls)
        );
    }

    /// The checks a guest can reach through Keel's handlers, before entry.
    #[test]
    fn pre_entry_check_names_what_a_guest_could_break() {
        let v = vcpu();
        assert_eq!(pre_entry_check(v.vmcs(), v.controls()), None);
        let ia32e = u64::from(EntryControls::IA32E_MODE_GUEST.bits());
        let entry = v.vmcs().read(F::VmEntryControls);
        let cases: [(&[(F, u64)], F); 9] = [
            (&[(F::GuestCr0, 0x8000_0030)], F::GuestCr0),
            (&[(F::GuestCr0, 0x1_0000_0031)], F::GuestCr0),
            (&[(F::GuestCr4, 0x1_0000_2000)], F::GuestCr4),
            (
                &[
                    (F::GuestIa32Efer, EFER_LMA | (1 << 8)),
                    (F::VmEntryControls, entry | ia32e),
                    (F::GuestCr0, 0x8000_0031),
                ],
                F::GuestCr4,
            ),
            // #GP with an error code in real mode (finding #2).
            (
                &[(F::VmEntryInterruptionInformation, 0x8000_0b0d)],
                F::VmEntryInterruptionInformation,
            ),
            // #UD with one in protected mode.
            (
                &[
                    (F::GuestCr0, 0x31),
                    (F::VmEntryInterruptionInformation, 0x8000_0b06),
                ],
                F::VmEntryInterruptionInformation,
            ),
            // ICEBP without an instruction length (finding #15).
            (
                &[(F::VmEntryInterruptionInformation, 0x8000_0501)],
                F::VmEntryInterruptionInformation,
            ),
            (
                &[(F::VmEntryInterruptionInformation, 0x8000_0203)],
                F::VmEntryInterruptionInformation,
            ),
            (
                &[(F::VmEntryInterruptionInformation, 0x8000_0320)],
                F::VmEntryInterruptionInformation,
            ),
        ];
        for (writes, named) in cases {
            let mut m: FakeVmcs = v.vmcs().clone();
            for &(f, value) in writes {
                m.set(f, value);
            }
            assert_eq!(
                pre_entry_check(&m, v.controls()).map(|g| g.0),
                Some(named),
                "{writes:x?}"
            );
        }
        let mut m: FakeVmcs = v.vmcs().clone();
        m.set(F::VmEntryInterruptionInformation, 0x8000_0480)
            .set(F::VmEntryInstructionLength, 2);
        assert_eq!(pre_entry_check(&m, v.controls()), None, "INT 0x80, 2 bytes");
    }

    #[test]
    fn entry_failure_words() {
        assert_eq!(
            entry_failure_detail(0x8000_0021, 4),
            "invalid VMCS link pointer"
        );
        assert_eq!(
            entry_failure_detail(0x8000_0021, 0),
            "a guest-state field failed a VM-entry check"
        );
        assert!(entry_failure_detail(0x8000_0022, 1).contains("MSR-load"));
    }
}
