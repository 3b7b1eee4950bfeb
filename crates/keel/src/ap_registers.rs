//! The control registers an application processor takes from the BSP
//! (`arch::smp`): the same paging and long-mode setup, but not the BSP's
//! virtualization switches, which each CPU turns on itself once
//! (`cpu::enable_this_cpu`).

/// CR4.VMXE, bit 13 (SDM Vol 3A 2.5): set by VMX's enable, which refuses a
/// CPU where it is already set (SDM Vol 3C 24.7: another VMM may own it).
pub const CR4_VMXE: u64 = 1 << 13;
/// EFER.SVME, bit 12 (APM Vol 2, 3.1.7): set by SVM's enable together
/// with the CPU's own host-save area (VM_HSAVE_PA).
pub const EFER_SVME: u64 = 1 << 12;

/// The CR4 and EFER an AP loads from the BSP's `cr4` and `efer`: the BSP
/// read them after turning its own VMX or SVM on, so they carry CR4.VMXE or
/// EFER.SVME; an AP that took them would look like a CPU another hypervisor
/// already uses, and VMX would refuse it.
pub fn ap_cr4_efer(cr4: u64, efer: u64) -> (u64, u64) {
    (cr4 & !CR4_VMXE, efer & !EFER_SVME)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PAE, PGE, OSFXSR, OSXMMEXCPT, OSXSAVE and VMXE; LME, LMA, NXE, SVME.
    #[test]
    fn an_ap_takes_the_bsps_registers_without_its_virtualization() {
        let cr4 = (1 << 5) | (1 << 7) | (1 << 9) | (1 << 10) | (1 << 18);
        let efer = (1 << 8) | (1 << 10) | (1 << 11);
        assert_eq!(
            ap_cr4_efer(cr4 | CR4_VMXE, efer | EFER_SVME),
            (cr4, efer),
            "everything but VMXE and SVME kept"
        );
        assert_eq!(ap_cr4_efer(cr4, efer), (cr4, efer), "nothing to clear");
    }
}
