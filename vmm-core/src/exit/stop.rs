//! Why a VM stopped, and the exit status Keel reports for it (docs/ARCHITECTURE.md).

use core::fmt;

/// The reason a VM stopped running.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopReason {
    /// The guest wrote `status` to the debug-exit port.
    DebugExit { status: u32 },
    /// The guest turned the machine off `via` one of its power-off
    /// interfaces: "ACPI S5" (the PM1 control register) or "Xen
    /// SCHEDOP_shutdown" (SHUTDOWN_poweroff).
    PoweredOff { via: &'static str },
    /// HLT with no interrupt that could ever wake the vCPU.
    HaltedForever { rip: u64, interrupts_enabled: bool },
    /// The guest triple-faulted (shutdown).
    TripleFault { rip: u64 },
    /// Delivering #DB or #AC raised the same exception again at the same
    /// RIP and RSP, `exit::MAX_EXCEPTION_LOOP` times in a row with no other
    /// exit between: the guest makes no progress. On hardware without the
    /// intercept this is the CPU hang of CVE-2015-8104 / CVE-2015-5307;
    /// Keel ends the VM as for a triple fault.
    ExceptionLoop { vector: u8, rip: u64 },
    /// The hardware refused to run the guest state.
    InvalidGuestState { rip: u64, detail: u64 },
    /// An interrupt or exception whose delivery touched guest-physical `gpa`,
    /// which is not RAM (an IDT, GDT or stack in MMIO or ROM).
    EventDeliveryThroughMmio { vector: u8, gpa: u64, rip: u64 },
    /// Nested page faults at `gpa` that the instruction at `rip` does not
    /// access, `exit::MAX_UNEXPLAINED_FAULTS` times in a row.
    Unexplained { gpa: u64, rip: u64 },
    /// An exit Keel cannot handle (yet), with enough context to find out why.
    Unhandled {
        what: &'static str,
        rip: u64,
        info: u64,
    },
    /// A device could not go on serving the guest within its fixed bounds
    /// (device-model's `PowerRequest::Stop`).
    DeviceStop { reason: &'static str },
    /// Someone ended the VM at Keel's console prompt (`end` or `quit`).
    EndedAtConsole,
    /// The guest reset the machine and its configuration says not to
    /// restart it (xl.cfg `on_reboot = "destroy"` or `"preserve"`).
    Rebooted,
}

impl StopReason {
    /// The status Keel reports for this stop; see the table in docs/ARCHITECTURE.md.
    pub fn exit_status(&self) -> u8 {
        match *self {
            StopReason::DebugExit { status } => status.min(255) as u8,
            StopReason::PoweredOff { .. } | StopReason::Rebooted => 0,
            StopReason::HaltedForever { .. } => 123,
            StopReason::TripleFault { .. } | StopReason::ExceptionLoop { .. } => 125,
            StopReason::InvalidGuestState { .. }
            | StopReason::EventDeliveryThroughMmio { .. }
            | StopReason::Unexplained { .. }
            | StopReason::Unhandled { .. }
            | StopReason::DeviceStop { .. } => 126,
            // As a shell reports a command its user interrupted (128 + SIGINT).
            StopReason::EndedAtConsole => 130,
        }
    }
}

impl fmt::Display for StopReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            StopReason::DebugExit { status } => write!(f, "guest debug-exit with status {status}"),
            StopReason::PoweredOff { via } => write!(f, "the guest powered the machine off ({via})"),
            StopReason::HaltedForever { rip, interrupts_enabled: false } => write!(
                f,
                "vCPU halted with interrupts disabled at RIP {rip:#x}; nothing can wake it"
            ),
            StopReason::HaltedForever { rip, interrupts_enabled: true } => write!(
                f,
                "vCPU halted at RIP {rip:#x} waiting for an interrupt, and no device of this VM can raise one"
            ),
            StopReason::TripleFault { rip } => {
                write!(f, "triple fault (shutdown) at RIP {rip:#x}")
            }
            StopReason::ExceptionLoop { vector, rip } => write!(
                f,
                "exception loop: delivering vector {vector} at RIP {rip:#x} raised it again, {} times in a row without progress (treated as a triple fault)",
                crate::exit::MAX_EXCEPTION_LOOP
            ),
            StopReason::InvalidGuestState { rip, detail } => write!(
                f,
                "the CPU refused to enter the guest (invalid guest state, detail {detail:#x}) at RIP {rip:#x}"
            ),
            StopReason::EventDeliveryThroughMmio { vector, gpa, rip } => write!(
                f,
                "event delivery through MMIO is not supported: delivering vector {vector} at RIP {rip:#x} accessed guest-physical {gpa:#x}, which is not RAM"
            ),
            StopReason::Unexplained { gpa, rip } => write!(
                f,
                "nested page faults at guest-physical {gpa:#x} that the instruction at RIP {rip:#x} does not make, {} in a row",
                crate::exit::MAX_UNEXPLAINED_FAULTS
            ),
            StopReason::Unhandled { what, rip, info } => {
                write!(f, "{what} at RIP {rip:#x} (info {info:#x}) is not supported")
            }
            StopReason::DeviceStop { reason } => write!(f, "a device stopped the VM: {reason}"),
            StopReason::EndedAtConsole => write!(f, "ended at Keel's console prompt"),
            StopReason::Rebooted => write!(f, "the guest reset the machine (on_reboot says not to restart)"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    /// A power-off names the interface the guest used (a Xen guest's
    /// SCHEDOP_shutdown was reported as ACPI S5); either way status 0.
    #[test]
    fn a_power_off_names_how() {
        for (via, line) in [
            ("ACPI S5", "the guest powered the machine off (ACPI S5)"),
            (
                "Xen SCHEDOP_shutdown",
                "the guest powered the machine off (Xen SCHEDOP_shutdown)",
            ),
        ] {
            let stop = StopReason::PoweredOff { via };
            assert_eq!(stop.to_string(), line);
            assert_eq!(stop.exit_status(), 0);
        }
    }

    /// Issue 11: a device's stop ends the VM with 126 and its reason.
    #[test]
    fn a_device_stop_reports_its_reason_with_status_126() {
        let stop = StopReason::DeviceStop {
            reason: "the PCI event queue overflowed",
        };
        assert_eq!(stop.exit_status(), 126);
        assert_eq!(
            stop.to_string(),
            "a device stopped the VM: the PCI event queue overflowed"
        );
    }
}
