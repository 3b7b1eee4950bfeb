//! `sti; hlt` with an interrupt already waiting: the HLT is completed by
//! Keel, so the interrupt is delivered after it, never between the two.
//!
//! STI leaves maskable interrupts blocked until the instruction after it has
//! completed (SDM Vol 2B, STI; APM Vol 2 15.21.5, interrupt shadow), which is
//! what makes `sti; hlt` an atomic "enable and wait": an interrupt that is
//! already pending ends the HLT at once and is taken with the saved RIP
//! pointing after the HLT (SDM Vol 2A, HLT). A vCPU that exits inside that
//! shadow (an external interrupt ending its run between STI and HLT) leaves
//! the shadow in the VMCB / VMCS, and the run loop asks for an interrupt
//! window. Hardware opens the window after the shadowed instruction; an
//! emulator that does not restore the shadow on entry (QEMU 7.2's TCG SVM
//! does not) opens it before, and the interrupt lands between STI and HLT:
//! its handler returns to the HLT, which then waits for an interrupt that
//! was already taken, possibly forever.
//!
//! Completing the HLT here does exactly what the CPU would do (halt, and be
//! woken by the waiting interrupt at once), on every backend, and saves the
//! window exit besides.

use super::emulate::hlt_at_rip;
use super::Platform;
use crate::interrupts::InterruptSource;
use crate::vcpu::VcpuState;

/// Before an entry: if the vCPU is in an interrupt shadow with RFLAGS.IF
/// set, no event queued, an interrupt waiting, and the shadowed instruction
/// is HLT, moves RIP past the HLT (which ends the shadow) so the interrupt
/// can be delivered now. Returns whether it did.
pub fn complete_hlt_in_shadow(
    vcpu: &mut impl VcpuState,
    platform: &mut (impl Platform + InterruptSource),
) -> bool {
    if !vcpu.interrupt_shadow() || !vcpu.interrupts_enabled() || vcpu.event_pending() {
        return false;
    }
    if !platform.interrupt_pending() {
        return false;
    }
    match hlt_at_rip(vcpu, platform) {
        Some(len) => {
            vcpu.skip_instruction(len);
            true
        }
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::handler::tests::FakePlatform;
    use crate::interrupts::{deliver, Delivery};
    use crate::vcpu::tests::FakeVcpu;
    use crate::vcpu::Event;

    const CODE: u64 = 0x1000;
    const HLT: u8 = 0xF4;
    const NOP: u8 = 0x90;

    /// The fake platform with one interrupt, vector 0x40, waiting or not.
    struct Waiting {
        platform: FakePlatform,
        vector: Option<u8>,
    }

    impl Platform for Waiting {
        fn pio_read(&mut self, port: u16, size: u8) -> u32 {
            self.platform.pio_read(port, size)
        }
        fn pio_write(&mut self, port: u16, size: u8, value: u32) {
            self.platform.pio_write(port, size, value)
        }
        fn mmio_read(&mut self, gpa: u64, data: &mut [u8]) {
            self.platform.mmio_read(gpa, data)
        }
        fn mmio_write(&mut self, gpa: u64, data: &[u8]) {
            self.platform.mmio_write(gpa, data)
        }
        fn memory(&self) -> &guest_memory::GuestMemory {
            self.platform.memory()
        }
        fn host_tsc(&self) -> u64 {
            self.platform.host_tsc()
        }
    }

    impl InterruptSource for Waiting {
        fn interrupt_pending(&mut self) -> bool {
            self.vector.is_some()
        }
        fn acknowledge_interrupt(&mut self) -> Option<u8> {
            self.vector.take()
        }
        fn nmi_pending(&mut self) -> bool {
            false
        }
        fn acknowledge_nmi(&mut self) {}
    }

    /// A protected-mode vCPU just past `sti` at CODE, in its shadow, with
    /// `insn` at CODE and an interrupt waiting if `vector`.
    fn setup(insn: &[u8], vector: Option<u8>) -> (FakeVcpu, Waiting) {
        let mut v = FakeVcpu::protected_flat();
        v.rflags |= 1 << 9;
        v.rip = CODE;
        v.shadow = true;
        let platform = FakePlatform::new();
        platform.ram.write(CODE, insn).unwrap();
        (v, Waiting { platform, vector })
    }

    #[test]
    fn a_waiting_interrupt_is_delivered_after_the_shadowed_hlt() {
        let (mut v, mut p) = setup(&[HLT, NOP], Some(0x40));
        assert!(complete_hlt_in_shadow(&mut v, &mut p));
        assert_eq!(v.rip, CODE + 1, "the HLT completed");
        assert!(!v.shadow, "completing the HLT ends the shadow");
        // The interrupt now goes in with its return address after the HLT.
        assert_eq!(deliver(&mut v, &mut p), Delivery::Interrupt(0x40));
        assert_eq!(v.injected, [Event::ExternalInterrupt { vector: 0x40 }]);
    }

    #[test]
    fn a_prefixed_hlt_is_completed_whole() {
        // An operand-size prefix does nothing to HLT but counts in its length.
        let (mut v, mut p) = setup(&[0x66, HLT], Some(0x40));
        assert!(complete_hlt_in_shadow(&mut v, &mut p));
        assert_eq!(v.rip, CODE + 2);
    }

    #[test]
    fn anything_else_waits_for_the_window() {
        // Another instruction in the shadow: the hardware's window decides.
        let (mut v, mut p) = setup(&[NOP, HLT], Some(0x40));
        assert!(!complete_hlt_in_shadow(&mut v, &mut p));
        assert_eq!((v.rip, v.shadow), (CODE, true));
        assert_eq!(deliver(&mut v, &mut p), Delivery::WindowRequested);

        // No interrupt waiting: the HLT is the guest's to run (and exit on).
        let (mut v, mut p) = setup(&[HLT], None);
        assert!(!complete_hlt_in_shadow(&mut v, &mut p));
        assert_eq!((v.rip, v.shadow), (CODE, true));

        // No shadow: the interrupt can go in before the HLT, as on hardware.
        let (mut v, mut p) = setup(&[HLT], Some(0x40));
        v.shadow = false;
        assert!(!complete_hlt_in_shadow(&mut v, &mut p));
        assert_eq!(v.rip, CODE);

        // RFLAGS.IF clear (a MOV SS shadow with interrupts off): HLT with
        // IF = 0 waits for an NMI, nothing here.
        let (mut v, mut p) = setup(&[HLT], Some(0x40));
        v.rflags &= !(1 << 9);
        assert!(!complete_hlt_in_shadow(&mut v, &mut p));
        assert_eq!(v.rip, CODE);

        // An event already queued goes in first; the HLT stays.
        let (mut v, mut p) = setup(&[HLT], Some(0x40));
        v.injected.push(Event::Nmi);
        assert!(!complete_hlt_in_shadow(&mut v, &mut p));
        assert_eq!(v.rip, CODE);
    }

    #[test]
    fn an_unfetchable_rip_is_left_to_the_guest() {
        // RIP far beyond the 64 KiB of guest RAM: the fetch fails, the guest meets its own fault.
        let (mut v, mut p) = setup(&[HLT], Some(0x40));
        v.rip = 0x8000_0000;
        assert!(!complete_hlt_in_shadow(&mut v, &mut p));
        assert_eq!(v.rip, 0x8000_0000);
    }
}
