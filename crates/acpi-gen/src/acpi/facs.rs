//! Firmware ACPI Control Structure (ACPI 6.5 5.2.10): 64 bytes, no checksum.
//! Keel offers no sleep state to wake from, so the waking vectors stay 0.

/// FACS length.
pub const FACS_LEN: usize = 64;
/// Version of the FACS layout (5.2.10, table 5.14).
const VERSION: u8 = 2;

pub fn facs() -> [u8; FACS_LEN] {
    let mut t = [0u8; FACS_LEN];
    t[0..4].copy_from_slice(b"FACS");
    t[4..8].copy_from_slice(&(FACS_LEN as u32).to_le_bytes());
    // Hardware signature (8), firmware waking vector (12), global lock (16), flags (20),
    // X firmware waking vector (24): all 0.
    t[32] = VERSION;
    t
}
