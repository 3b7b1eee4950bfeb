//! What an emulation step ends in.

/// An exception the instruction raised; the caller injects it into the guest
/// (for `PageFault`, after loading `linear` into CR2). No architectural state other
/// than what the SDM lets a faulting instruction change has been changed (completed
/// REP iterations, accessed/dirty bits).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exception {
    /// #UD, vector 6.
    InvalidOpcode,
    /// #SS(error code), vector 12.
    StackSegmentFault(u16),
    /// #GP(error code), vector 13.
    GeneralProtection(u16),
    /// #PF, vector 14, with the error code of SDM Vol 3A 4.7 and the faulting linear
    /// address for CR2.
    PageFault { error_code: u32, linear: u64 },
}

impl Exception {
    pub fn vector(&self) -> u8 {
        match self {
            Exception::InvalidOpcode => 6,
            Exception::StackSegmentFault(_) => 12,
            Exception::GeneralProtection(_) => 13,
            Exception::PageFault { .. } => 14,
        }
    }

    /// The error code pushed on delivery, if the vector has one.
    pub fn error_code(&self) -> Option<u32> {
        match *self {
            Exception::InvalidOpcode => None,
            Exception::StackSegmentFault(e) | Exception::GeneralProtection(e) => Some(e.into()),
            Exception::PageFault { error_code, .. } => Some(error_code),
        }
    }
}

/// Why [`crate::emulate`] did not complete the instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// The guest gets this exception; RIP still points at the instruction.
    Exception(Exception),
    /// A valid instruction this emulator does not implement (see the README). Nothing
    /// was changed. `bytes[..len]` is the instruction, for the log.
    Unsupported {
        bytes: [u8; 15],
        len: u8,
        what: &'static str,
    },
    /// A paging-structure entry lies outside guest RAM.
    PageTableNotRam { gpa: u64 },
    /// The bus could not complete an access to guest-physical `gpa` (or port `gpa`).
    Bus { gpa: u64 },
    /// Instruction bytes at guest-physical `gpa` are neither RAM nor ROM (code in a
    /// device's registers); nothing was changed.
    FetchNotRam { gpa: u64 },
    /// The instruction at CS:RIP does not access guest-physical `gpa`, the address of
    /// the nested page fault it was emulated for ([`crate::Limits::fault_gpa`]), before
    /// any side effect: it did not cause the fault. Nothing was changed (the page walker
    /// may have set accessed flags, as the processor may).
    Unexplained { gpa: u64 },
}

impl From<Exception> for Error {
    fn from(e: Exception) -> Error {
        Error::Exception(e)
    }
}

/// How a call to [`crate::emulate`] that did not fail ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// The instruction completed and RIP points past it.
    Retired,
    /// A REP string instruction ran the iteration budget; RCX/RSI/RDI reflect the
    /// iterations done and RIP still points at it. Resume the guest (it re-executes
    /// the instruction, which exits again) or call `emulate` again.
    Yielded,
}
