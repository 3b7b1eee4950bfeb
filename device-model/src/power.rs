//! Requests, from any device, that the VM stop.
//!
//! A device that wants the VM to end (a debug-exit write, an ACPI power-off,
//! a guest reset) records a [`PowerRequest`] through its [`PowerControl`]
//! clone. The VM loop checks after each exit and acts on it. The first request
//! wins: a second one before the loop has taken the first is ignored, so the
//! reason reported is the one the guest raised first.

use alloc::sync::Arc;
use core::fmt;
use spin::Mutex;

/// Why a device asks the VM to stop.
///
/// Exhaustive on purpose: when `Reset` or `AcpiPowerOff` join, every place
/// that acts on a request must decide what they mean.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PowerRequest {
    /// The guest wrote `status` to the debug-exit port (see [`crate::DebugExit`]).
    DebugExit { status: u32 },
    /// The guest entered ACPI S5 (soft off): it set `SLP_EN` in `PM1a_CNT`
    /// with the S5 sleep type (ACPI 6.5 4.8.3.2.1; see [`crate::pci::Piix4Pm`]).
    AcpiPowerOff,
    /// The guest powered off through a hypervisor interface (Xen's
    /// SCHEDOP_shutdown with SHUTDOWN_poweroff, public/sched.h).
    GuestPowerOff,
    /// The guest asked for a system reset: the keyboard controller's reset
    /// line (output port bit 0 written low, or a pulse command such as 0xFE),
    /// or a 0 -> 1 write of port 0x92 bit 0 (fast reset). The VM loop resets
    /// the devices and the vCPU and starts again at the reset vector.
    Reset,
    /// A device cannot go on serving the guest within its fixed bounds
    /// (issue 11: a queue or buffer is full where dropping would show the
    /// guest something no hardware does). The VM stops with `reason` in the
    /// log line; Keel and the other VMs go on.
    Stop { reason: &'static str },
}

impl fmt::Display for PowerRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PowerRequest::DebugExit { status } => {
                write!(f, "guest debug-exit with status {status}")
            }
            PowerRequest::Reset => f.write_str("guest requested a system reset"),
            PowerRequest::AcpiPowerOff => f.write_str("guest ACPI power-off (S5)"),
            PowerRequest::GuestPowerOff => f.write_str("guest power-off (Xen SCHEDOP_shutdown)"),
            PowerRequest::Stop { reason } => write!(f, "a device stopped the VM: {reason}"),
        }
    }
}

/// A shared slot for one pending [`PowerRequest`]; clones share the slot.
#[derive(Debug, Clone, Default)]
pub struct PowerControl {
    pending: Arc<Mutex<Option<PowerRequest>>>,
}

impl PowerControl {
    /// A control with no request pending.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `request` unless one is already pending. Returns whether it
    /// was recorded.
    pub fn request(&self, request: PowerRequest) -> bool {
        let mut pending = self.pending.lock();
        if pending.is_some() {
            return false;
        }
        *pending = Some(request);
        true
    }

    /// Removes and returns the pending request; later requests are recorded again.
    pub fn take(&self) -> Option<PowerRequest> {
        self.pending.lock().take()
    }

    /// The pending request, left in place.
    pub fn peek(&self) -> Option<PowerRequest> {
        *self.pending.lock()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn nothing_pending_at_first() {
        let p = PowerControl::new();
        assert_eq!(p.peek(), None);
        assert_eq!(p.take(), None);
    }

    #[test]
    fn first_request_wins_until_taken() {
        let p = PowerControl::new();
        assert!(p.request(PowerRequest::DebugExit { status: 1 }));
        assert!(!p.request(PowerRequest::DebugExit { status: 2 }));
        assert_eq!(p.peek(), Some(PowerRequest::DebugExit { status: 1 }));
        assert_eq!(p.peek(), Some(PowerRequest::DebugExit { status: 1 }));
        assert_eq!(p.take(), Some(PowerRequest::DebugExit { status: 1 }));
        assert_eq!(p.take(), None);
        assert!(p.request(PowerRequest::DebugExit { status: 3 }));
        assert_eq!(p.take(), Some(PowerRequest::DebugExit { status: 3 }));
    }

    #[test]
    fn clones_share_the_slot() {
        let device_side = PowerControl::new();
        let loop_side = device_side.clone();
        device_side.request(PowerRequest::DebugExit { status: 7 });
        assert!(!loop_side.request(PowerRequest::DebugExit { status: 8 }));
        assert_eq!(
            loop_side.take(),
            Some(PowerRequest::DebugExit { status: 7 })
        );
        assert_eq!(device_side.peek(), None);
    }

    #[test]
    fn display_names_the_reason() {
        assert_eq!(
            PowerRequest::DebugExit { status: 0 }.to_string(),
            "guest debug-exit with status 0"
        );
        assert_eq!(
            PowerRequest::AcpiPowerOff.to_string(),
            "guest ACPI power-off (S5)"
        );
        assert_eq!(
            PowerRequest::Reset.to_string(),
            "guest requested a system reset"
        );
    }

    #[test]
    fn a_reset_request_is_kept_like_any_other() {
        let p = PowerControl::new();
        assert!(p.request(PowerRequest::Reset));
        assert!(!p.request(PowerRequest::DebugExit { status: 1 }));
        assert_eq!(p.take(), Some(PowerRequest::Reset));
    }
}
