//! IA-PC HPET Description Table (IA-PC HPET specification 1.0a, 3.2.4).

use alloc::vec::Vec;

use super::{header, seal, Gas};
use crate::config::pc_layout;

/// Page protection/OEM attributes: none (the block is not alone in a 4 KiB page guarantee).
const NO_PAGE_PROTECTION: u8 = 0;

pub fn hpet() -> Vec<u8> {
    let mut t = header(b"HPET", 1);
    t.extend_from_slice(&pc_layout::HPET_EVENT_TIMER_BLOCK_ID.to_le_bytes());
    let base = Gas {
        space: Gas::SYSTEM_MEMORY,
        bit_width: 64,
        bit_offset: 0,
        access_size: 0,
        address: u64::from(pc_layout::HPET_ADDRESS),
    };
    t.extend_from_slice(&base.bytes());
    t.push(0); // HPET number
    t.extend_from_slice(&pc_layout::HPET_MIN_TICK.to_le_bytes());
    t.push(NO_PAGE_PROTECTION);
    seal(&mut t);
    t
}
