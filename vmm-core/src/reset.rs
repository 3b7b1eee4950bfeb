//! The architectural RESET state of an x86 processor (SDM Vol 3A 9.1.1,
//! Table 9-1; APM Vol 2 14.1.3, Table 14-1), in one place for both backends:
//! real mode at F000:FFF0 with CS.base = FFFF0000, so the first instruction
//! is the last 16 bytes below 4 GiB.

use crate::vcpu::{GuestGprs, Segment};

/// CS: selector F000, base FFFF0000, limit FFFF, present execute/read accessed code.
pub const CODE_SEGMENT: Segment = Segment {
    selector: 0xf000,
    base: 0xffff_0000,
    limit: 0xffff,
    attr: 0x9b,
};
/// DS, ES, SS, FS, GS: base 0, limit FFFF, present read/write accessed data.
pub const DATA_SEGMENT: Segment = Segment {
    selector: 0,
    base: 0,
    limit: 0xffff,
    attr: 0x93,
};
/// LDTR: present LDT, base 0, limit FFFF.
pub const LDTR: Segment = Segment {
    selector: 0,
    base: 0,
    limit: 0xffff,
    attr: 0x82,
};
/// TR: a busy 32-bit TSS (the one type VM entry accepts), base 0, limit FFFF.
pub const TR: Segment = Segment {
    selector: 0,
    base: 0,
    limit: 0xffff,
    attr: 0x8b,
};
/// GDTR and IDTR: base 0, limit FFFF.
pub const DESCRIPTOR_TABLE: Segment = Segment {
    selector: 0,
    base: 0,
    limit: 0xffff,
    attr: 0,
};
pub const RIP: u64 = 0xfff0;
/// Only the reserved bit 1.
pub const RFLAGS: u64 = 2;
/// CD, NW and ET set.
pub const CR0: u64 = 0x6000_0010;
pub const DR6: u64 = 0xffff_0ff0;
pub const DR7: u64 = 0x400;
/// The PAT's power-up value (SDM Vol 3A 11.12.4).
pub const PAT: u64 = 0x0007_0406_0007_0406;

/// The GPRs: all zero but EDX, which holds the processor signature (CPUID 1 EAX).
pub fn gprs(cpu_signature: u32) -> GuestGprs {
    GuestGprs {
        rdx: u64::from(cpu_signature),
        ..Default::default()
    }
}
