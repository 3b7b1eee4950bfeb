//! The Intel VMX backend: VT-x with EPT, VPID and unrestricted guest
//! (SDM Vol 3C, chapters 24-31).

mod bitmaps;
mod controls;
mod decode;
mod diagnose;
mod exit_reason;
pub mod hw;
mod instruction_error;
mod vcpu;
mod vmcs_field;

pub use bitmaps::{IoBitmaps, MsrBitmap};
pub use controls::{
    adjust, ControlError, ControlField, EntryControls, ExitControls, PinBased,
    PrimaryProcessorBased, SecondaryProcessorBased, VmxCapabilities, VmxControls,
};
pub use decode::{decode_exit, VmcsRead};
pub use diagnose::{entry_failure_detail, offending_field};
pub use exit_reason::ExitReason;
pub use instruction_error::{instruction_error_name, VmxInstructionError};
pub use vcpu::{HostState, Vmcs, VmxVcpu, VmxVcpuConfig};
pub use vmcs_field::{FieldType, FieldWidth, VmcsField};

impl crate::Vcpu for VmxVcpu<hw::HwVmcs> {
    fn run(&mut self) -> crate::exit::VmExit {
        if self.take_shutdown() {
            return crate::exit::VmExit::Shutdown;
        }
        // SAFETY: the contract of `VmxVcpu::new` (VMX on, VMCS current, EPT
        // and bitmaps confined to this guest); the bitmaps are owned by `self`.
        unsafe { hw::run(self) }
    }

    fn reset(&mut self) {
        VmxVcpu::reset(self)
    }

    /// INVEPT (single-context for this EPTP where the CPU has it) before the
    /// next VM entry.
    fn flush_tlb(&mut self) {
        self.flush_pending = true;
    }

    /// VMPTRLD of this vCPU's VMCS (`HwVmcs::make_current`).
    fn make_current(&mut self) -> bool {
        self.vmcs.make_current().is_ok()
    }
}
