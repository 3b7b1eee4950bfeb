//! The machine's own CMOS real-time clock, read once at Keel's start so a
//! guest's RTC starts at the real date and time (`PcConfig::unix_time`).
//!
//! MC146818A-compatible RTC at ports 0x70 (index) and 0x71 (data): the time
//! registers may be read safely while register A's UIP bit (7) is clear for
//! at least 244 us (datasheet, "update cycle"); reading them twice and
//! comparing catches an update that started between the UIP check and the
//! reads.

use x86_64::instructions::port::Port;

const CMOS_INDEX: u16 = 0x70;
const CMOS_DATA: u16 = 0x71;
/// Keeps NMIs enabled (bit 7 of the index port clear) as firmware left them.
const REG_A: u8 = 0x0a;
const REG_B: u8 = 0x0b;
const REG_A_UIP: u8 = 0x80;
const CENTURY: u8 = 0x32;
const TIME_REGS: [u8; 6] = [0x00, 0x02, 0x04, 0x07, 0x08, 0x09];

fn read(reg: u8) -> u8 {
    // SAFETY: ports 0x70/0x71 are the PC's CMOS RTC, which Keel owns and no
    // guest reaches (guests see the device model's RTC); selecting a
    // register and reading it has no other effect.
    unsafe {
        Port::<u8>::new(CMOS_INDEX).write(reg & 0x7f);
        Port::<u8>::new(CMOS_DATA).read()
    }
}

fn snapshot() -> Option<[u8; 6]> {
    // Bounded wait for the end of an update cycle (under 2 ms on hardware).
    let mut spins = 0u32;
    while read(REG_A) & REG_A_UIP != 0 {
        spins += 1;
        if spins > 1_000_000 {
            return None;
        }
        core::hint::spin_loop();
    }
    Some(TIME_REGS.map(read))
}

/// The host's RTC time in seconds since 1970-01-01 (taken as UTC), or `None`
/// if the machine has no readable RTC.
pub fn unix_time() -> Option<u64> {
    for _ in 0..5 {
        let a = snapshot()?;
        let b = snapshot()?;
        if a == b {
            return device_model::cmos_unix_time(a, read(CENTURY), read(REG_B));
        }
    }
    None
}
