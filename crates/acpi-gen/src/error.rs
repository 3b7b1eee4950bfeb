//! Errors as values: every configuration the builders cannot honour is
//! reported with a message a user can act on.

use core::fmt;

/// Why a table set could not be built or placed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Error {
    /// A VM needs at least one vCPU.
    NoVcpus,
    /// More vCPUs than xAPIC IDs (`0..=254`; 255 is the broadcast ID).
    TooManyVcpus { vcpus: u32, max: u32 },
    /// RAM below the minimum the platform layout needs.
    RamTooSmall { bytes: u64, min: u64 },
    /// RAM above what the tables describe (SMBIOS/guest physical-address limits).
    RamTooLarge { bytes: u64, max: u64 },
    /// RAM that is not a whole number of MiB (SMBIOS sizes are in MiB).
    RamNotMibAligned { bytes: u64 },
    /// The PM I/O block base is not a 64-byte-aligned, non-zero port that fits below 0x10000.
    BadPmBase { base: u16 },
    /// The RSDP must lie in `0xE0000..=0xFFFDB` (the BIOS read-only area OSes scan), 16-byte aligned.
    BadRsdpAddress { address: u64 },
    /// The tables must be 64-byte aligned (the FACS leads them) and end below 4 GiB
    /// (the RSDT and FADT hold 32-bit pointers), without overlapping the RSDP.
    BadTablesAddress { address: u64, len: u64 },
    /// The SMBIOS structure table must start below 4 GiB and fit the 2.1 entry point's 16-bit length.
    BadSmbiosAddress { address: u64, len: u64 },
    /// A generated table grew past a format limit (AML package length, SMBIOS 16-bit table length).
    TooLarge {
        what: &'static str,
        len: usize,
        max: usize,
    },
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Error::NoVcpus => write!(f, "a VM needs at least one vCPU; the configuration has 0"),
            Error::TooManyVcpus { vcpus, max } => write!(
                f,
                "{vcpus} vCPUs configured; the MADT's xAPIC entries allow at most {max}"
            ),
            Error::RamTooSmall { bytes, min } => write!(
                f,
                "{} KiB of RAM configured; the platform needs at least {} MiB",
                bytes / 1024,
                min >> 20
            ),
            Error::RamTooLarge { bytes, max } => write!(
                f,
                "{} MiB of RAM configured; the tables describe at most {} GiB",
                bytes >> 20,
                max >> 30
            ),
            Error::RamNotMibAligned { bytes } => write!(
                f,
                "RAM size {bytes} bytes is not a whole number of MiB; SMBIOS and the e820 layout use MiB"
            ),
            Error::BadPmBase { base } => write!(
                f,
                "PM I/O base {base:#06x} must be non-zero and 64-byte aligned (PIIX4 PMBA bits 15:6)"
            ),
            Error::BadRsdpAddress { address } => write!(
                f,
                "RSDP address {address:#x} must be 16-byte aligned inside 0xE0000-0xFFFFF, where OSes scan for it"
            ),
            Error::BadTablesAddress { address, len } => write!(
                f,
                "ACPI tables at {address:#x} ({len} bytes) must be 64-byte aligned, end below 4 GiB and not overlap the RSDP"
            ),
            Error::BadSmbiosAddress { address, len } => write!(
                f,
                "SMBIOS structure table at {address:#x} ({len} bytes) must end below 4 GiB"
            ),
            Error::TooLarge { what, len, max } => {
                write!(f, "{what} is {len} bytes; its format allows at most {max}")
            }
        }
    }
}
