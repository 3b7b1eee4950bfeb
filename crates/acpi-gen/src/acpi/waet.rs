//! Windows ACPI Emulated Devices Table (Microsoft's WAET specification):
//! tells Windows which emulated-device workarounds it may skip.

use alloc::vec::Vec;

use super::{header, seal};

/// ACPI_PM_TIMER_GOOD: one read of the PM timer returns a correct value (Keel's
/// timer is computed from the clock, never torn). RTC_GOOD (bit 0) is not claimed.
const PM_TIMER_GOOD: u32 = 1 << 1;

pub fn waet() -> Vec<u8> {
    let mut t = header(b"WAET", 1);
    t.extend_from_slice(&PM_TIMER_GOOD.to_le_bytes());
    seal(&mut t);
    t
}
