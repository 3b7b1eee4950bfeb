//! The real-time clock and CMOS RAM (Motorola MC146818A datasheet), ports
//! 0x70 (index; bit 7 disables NMI) and 0x71 (data), ISA IRQ 8.
//!
//! Registers 0x00-0x0D are the clock's (time, alarm, registers A-D); the
//! rest of the 128 bytes are battery-backed RAM, filled at creation from a
//! [`CmosLayout`]. Byte 0x32 holds the century and advances with the year,
//! as the ACPI FADT's CENTURY field promises the OS.
//!
//! Time is kept as calendar fields that advance by whole seconds at the
//! update cycles, which happen every second of the shared clock while the
//! divider runs (register A DV = 010) and SET is clear. Registers are
//! encoded on read in the current data mode (register B: DM binary/BCD,
//! 24/12-hour), so changing the mode re-encodes the time (the real chip
//! leaves the bytes as they were; nothing written for a PC depends on that).
//! Out-of-range values written by the guest read back as written and are
//! clamped (month 1-12, day 1-31, hour 0-23, minute and second 0-59) when the
//! next update advances them; a day past the month's end rolls into the next
//! month.
//!
//! Interrupts (datasheet, "Interrupts"): the periodic flag PF at the rate of
//! register A's RS, the alarm flag AF at an update whose time matches the
//! alarm bytes (0xC0-0xFF is "don't care"), the update-ended flag UF at every
//! update. IRQF = PF*PIE + AF*AIE + UF*UIE drives IRQ 8 high until the guest
//! reads register C, which clears the flags. The UIP bit reads 1 from 244 us
//! plus the 1984 us update cycle before each update, so a 0 guarantees at
//! least 244 us of stable registers.
//!
//! Not modelled: daylight saving (DSE is stored but has no effect), the
//! square-wave output (SQWE is stored; the pin is not connected on a PC),
//! and the second 128-byte bank behind ports 0x72/0x73.

use super::{ns_to_ticks, ticks_to_ns, CmosLayout, LegacyReplacement, TimerDevice};
use crate::clock::ClockHandle;
use crate::irq::IrqLine;
use crate::BusDevice;

/// The time base, a 32.768 kHz crystal.
pub const RTC_HZ: u64 = 32_768;
const NS_PER_S: u64 = 1_000_000_000;
/// UIP is set this long before each update (tBUC 244 us + tUC 1984 us).
const UIP_NS: u64 = 2_228_000;

/// Register indices.
mod idx {
    pub const SECONDS: u8 = 0x00;
    pub const SECONDS_ALARM: u8 = 0x01;
    pub const MINUTES: u8 = 0x02;
    pub const MINUTES_ALARM: u8 = 0x03;
    pub const HOURS: u8 = 0x04;
    pub const HOURS_ALARM: u8 = 0x05;
    pub const DAY_OF_WEEK: u8 = 0x06;
    pub const DAY_OF_MONTH: u8 = 0x07;
    pub const MONTH: u8 = 0x08;
    pub const YEAR: u8 = 0x09;
    pub const REG_A: u8 = 0x0A;
    pub const REG_B: u8 = 0x0B;
    pub const REG_C: u8 = 0x0C;
    pub const REG_D: u8 = 0x0D;
    /// Not an MC146818 register: the PC's century byte in CMOS RAM.
    pub const CENTURY: u8 = 0x32;
}

/// Register A bits.
mod a {
    pub const UIP: u8 = 0x80;
    pub const DV_MASK: u8 = 0x70;
    /// DV = 010: 32.768 kHz time base, divider running.
    pub const DV_32K: u8 = 0x20;
    /// DV = 11x: divider held in reset.
    pub const DV_RESET: u8 = 0x60;
    pub const RS_MASK: u8 = 0x0F;
}

/// Register B bits.
mod b {
    pub const SET: u8 = 0x80;
    pub const PIE: u8 = 0x40;
    pub const AIE: u8 = 0x20;
    pub const UIE: u8 = 0x10;
    pub const DM_BINARY: u8 = 0x04;
    pub const HOUR_24: u8 = 0x02;
}

/// Register C bits.
mod c {
    pub const IRQF: u8 = 0x80;
    pub const PF: u8 = 0x40;
    pub const AF: u8 = 0x20;
    pub const UF: u8 = 0x10;
}

/// Register D: VRT, valid RAM and time (the battery is never flat).
const REG_D_VRT: u8 = 0x80;

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`, public domain).
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = i64::from((m + 9) % 12);
    let doy = (153 * mp + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// The date of a day count since 1970-01-01 (`civil_from_days`).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d)
}

/// The time a PC's CMOS RTC holds, in seconds since 1970-01-01, from its
/// registers as read from the hardware: `time` is seconds, minutes, hours,
/// day of month, month, year (registers 0x00, 0x02, 0x04, 0x07, 0x08, 0x09),
/// `century` register 0x32 (the ACPI FADT's usual century index), `reg_b`
/// register B (bit 2 DM: binary, else BCD; bit 1 24/12: 24-hour, else
/// 12-hour with PM in bit 7 of the hours; MC146818A datasheet, Table 3 and
/// register B). `None` for fields out of range (no RTC, or a flat battery).
/// The RTC holds local time or UTC as the machine's owner set it; Keel
/// treats it as UTC, as Linux does unless told otherwise.
pub fn cmos_unix_time(time: [u8; 6], century: u8, reg_b: u8) -> Option<u64> {
    let binary = reg_b & 0x04 != 0;
    let decode = |v: u8| -> Option<u8> {
        if binary {
            Some(v)
        } else if v & 0xf <= 9 && v >> 4 <= 9 {
            Some((v >> 4) * 10 + (v & 0xf))
        } else {
            None
        }
    };
    let [sec, min, hour, day, month, year] = time;
    let pm = reg_b & 0x02 == 0 && hour & 0x80 != 0;
    let mut hour = decode(hour & if reg_b & 0x02 == 0 { 0x7f } else { 0xff })?;
    if reg_b & 0x02 == 0 {
        // 12-hour mode: 12 AM is 0, 12 PM is 12.
        hour = hour % 12 + if pm { 12 } else { 0 };
    }
    let (sec, min, day, month, year) = (
        decode(sec)?,
        decode(min)?,
        decode(day)?,
        decode(month)?,
        decode(year)?,
    );
    // A century register that does not hold 19-21 (not every board keeps
    // one) is ignored: years 00-69 are then 20xx.
    let century = match decode(century) {
        Some(c @ 19..=21) => c,
        _ if year < 70 => 20,
        _ => 19,
    };
    if sec > 59
        || min > 59
        || hour > 23
        || !(1..=31).contains(&day)
        || !(1..=12).contains(&month)
        || year > 99
    {
        return None;
    }
    let t = DateTime {
        century,
        year,
        month,
        day,
        hour,
        min,
        sec,
    }
    .to_unix();
    u64::try_from(t).ok()
}

/// The calendar fields, binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct DateTime {
    century: u8,
    year: u8,
    month: u8,
    day: u8,
    hour: u8,
    min: u8,
    sec: u8,
}

impl DateTime {
    fn from_unix(secs: i64) -> Self {
        let days = secs.div_euclid(86_400);
        let sod = secs.rem_euclid(86_400);
        let (y, m, d) = civil_from_days(days);
        let y = y.clamp(0, 25_599);
        DateTime {
            century: (y / 100) as u8,
            year: (y % 100) as u8,
            month: m as u8,
            day: d as u8,
            hour: (sod / 3600) as u8,
            min: (sod / 60 % 60) as u8,
            sec: (sod % 60) as u8,
        }
    }

    fn to_unix(self) -> i64 {
        let y = i64::from(self.century) * 100 + i64::from(self.year.min(99));
        let days = days_from_civil(
            y,
            u32::from(self.month.clamp(1, 12)),
            u32::from(self.day.clamp(1, 31)),
        );
        days * 86_400
            + i64::from(self.hour.min(23)) * 3600
            + i64::from(self.min.min(59)) * 60
            + i64::from(self.sec.min(59))
    }

    /// Seconds into the day, clamped.
    fn second_of_day(self) -> u32 {
        u32::from(self.hour.min(23)) * 3600
            + u32::from(self.min.min(59)) * 60
            + u32::from(self.sec.min(59))
    }

    /// 1 = Sunday ... 7 = Saturday.
    fn day_of_week(self) -> u8 {
        (self.to_unix().div_euclid(86_400) + 4).rem_euclid(7) as u8 + 1
    }
}

/// The alarm bytes, in register order (datasheet, "Time, calendar and
/// alarm locations": 0x01, 0x03, 0x05).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum AlarmField {
    Seconds = 0,
    Minutes = 1,
    Hours = 2,
}

/// Seconds from `now` (second of the day) to the next second of a day,
/// strictly later and at most 86,400 on, whose hour, minute and second all
/// satisfy `matches`; `None` if no time of day does.
///
/// The guest chooses the alarm bytes and this runs on every pass of the VM
/// loop while the alarm interrupt is on, so the cost is fixed whatever
/// they hold: each field is searched over its own range (24 or 60 values)
/// and the search moves field by field, not second by second.
fn next_alarm(now: u32, matches: impl Fn(AlarmField, u8) -> bool) -> Option<u64> {
    // The next value at or after `from` (below `end`) that matches.
    let next = |field, from: u32, end: u32| (from..end).find(|&v| matches(field, v as u8));
    if next(AlarmField::Hours, 0, 24).is_none()
        || next(AlarmField::Minutes, 0, 60).is_none()
        || next(AlarmField::Seconds, 0, 60).is_none()
    {
        return None;
    }
    let start = now % 86_400 + 1;
    let mut t = start;
    // Each pass either returns or moves `t` to the start of a matching hour,
    // of a matching minute, or past a non-matching minute, hour or day;
    // with every field able to match, a few passes always suffice.
    for _ in 0..8 {
        let s = t % 86_400;
        let (h, m, sec) = (s / 3600, s / 60 % 60, s % 60);
        let into_hour = m * 60 + sec;
        match next(AlarmField::Hours, h, 24) {
            Some(h2) if h2 == h => {}
            Some(h2) => {
                t += (h2 - h) * 3600 - into_hour;
                continue;
            }
            None => {
                t += (24 - h) * 3600 - into_hour;
                continue;
            }
        }
        match next(AlarmField::Minutes, m, 60) {
            Some(m2) if m2 == m => {}
            Some(m2) => {
                t += (m2 - m) * 60 - sec;
                continue;
            }
            None => {
                t += 3600 - into_hour;
                continue;
            }
        }
        match next(AlarmField::Seconds, sec, 60) {
            Some(s2) => return Some(u64::from(t + (s2 - sec) - start + 1)),
            None => t += 60 - sec,
        }
    }
    None
}

/// The MC146818A RTC with the PC's 128 bytes of CMOS RAM.
pub struct Rtc {
    clock: ClockHandle,
    irq8: IrqLine,
    legacy: Option<LegacyReplacement>,
    index: u8,
    nmi_disabled: bool,
    ram: [u8; 128],
    time: DateTime,
    /// Added to the computed day of week (a guest may set its own).
    dow_adjust: u8,
    alarm: [u8; 3],
    reg_a: u8,
    reg_b: u8,
    flags: u8,
    /// Clock time at which the divider chain started: updates happen at
    /// `origin_ns + k s`, periodic interrupts every RS period after it.
    origin_ns: u64,
    updates_done: u64,
    periodic_done: u64,
    irq_level: bool,
}

impl Rtc {
    /// Index port; the data port is `PORT + 1`.
    pub const PORT: u16 = 0x70;
    pub const LEN: u16 = 2;

    /// An RTC reading `unix_secs` (UTC, seconds since 1970-01-01) now, its
    /// RAM from `layout`, driving `irq8`. Register A starts as a PC BIOS
    /// leaves it (0x26: divider running, 1024 Hz periodic rate), register B
    /// 0x02 (24-hour, BCD, interrupts off).
    pub fn new(clock: ClockHandle, irq8: IrqLine, unix_secs: u64, layout: &CmosLayout) -> Self {
        let origin_ns = clock.now_ns();
        Rtc {
            clock,
            irq8,
            legacy: None,
            index: 0,
            nmi_disabled: false,
            ram: *layout.bytes(),
            time: DateTime::from_unix(i64::try_from(unix_secs).unwrap_or(i64::MAX / 2)),
            dow_adjust: 0,
            alarm: [0; 3],
            reg_a: a::DV_32K | 0x06,
            reg_b: b::HOUR_24,
            flags: 0,
            origin_ns,
            updates_done: 0,
            periodic_done: 0,
            irq_level: false,
        }
    }

    /// Silences IRQ 8 while the HPET's LegacyReplacement route is active.
    pub fn set_legacy_replacement(&mut self, legacy: LegacyReplacement) {
        self.legacy = Some(legacy);
    }

    /// Whether the guest has disabled NMIs (port 0x70 bit 7).
    pub fn nmi_disabled(&self) -> bool {
        self.nmi_disabled
    }

    /// The MC146818's RESET pin, as a PC asserts it at a system reset:
    /// clears PIE, AIE, UIE, SQWE and the flags of register C and lowers
    /// IRQ 8; time, alarm, register A and RAM keep their values.
    pub fn reset(&mut self) {
        self.sync();
        self.reg_b &= !(b::PIE | b::AIE | b::UIE | 0x08);
        self.flags = 0;
        self.index = 0;
        self.nmi_disabled = false;
        self.update_irq();
    }

    fn running(&self) -> bool {
        self.reg_a & a::DV_MASK == a::DV_32K
    }

    /// The periodic interrupt period in 32.768 kHz cycles, if enabled by RS.
    fn periodic_cycles(&self) -> Option<u64> {
        match self.reg_a & a::RS_MASK {
            0 => None,
            // RS 1 and 2 repeat RS 8 and 9 with a 32.768 kHz time base.
            1 => Some(1 << 7),
            2 => Some(1 << 8),
            rs => Some(1 << (rs - 1)),
        }
    }

    fn phase_ns(&self) -> u64 {
        self.clock.now_ns().saturating_sub(self.origin_ns)
    }

    /// Restarts the update and periodic baselines from now.
    fn rebase_counters(&mut self) {
        let p = self.phase_ns();
        self.updates_done = p / NS_PER_S;
        self.periodic_done = self
            .periodic_cycles()
            .map_or(0, |c| ns_to_ticks(p, RTC_HZ) / c);
    }

    fn bcd(&self) -> bool {
        self.reg_b & b::DM_BINARY == 0
    }

    fn encode(&self, v: u8) -> u8 {
        if self.bcd() {
            ((v / 10 % 10) << 4) | (v % 10)
        } else {
            v
        }
    }

    fn decode(&self, v: u8) -> u8 {
        if self.bcd() {
            (v >> 4) * 10 + (v & 0xF)
        } else {
            v
        }
    }

    fn encode_hour(&self, h: u8) -> u8 {
        if self.reg_b & b::HOUR_24 != 0 {
            self.encode(h)
        } else {
            let h12 = if h.is_multiple_of(12) { 12 } else { h % 12 };
            self.encode(h12) | if h >= 12 { 0x80 } else { 0 }
        }
    }

    fn decode_hour(&self, v: u8) -> u8 {
        if self.reg_b & b::HOUR_24 != 0 {
            self.decode(v)
        } else {
            self.decode(v & 0x7F) % 12 + if v & 0x80 != 0 { 12 } else { 0 }
        }
    }

    /// Whether an alarm byte matches a time byte ("don't care" is 11xxxxxx).
    fn alarm_matches(alarm: u8, value: u8) -> bool {
        alarm & 0xC0 == 0xC0 || alarm == value
    }

    /// Seconds from the current time to the next time matching the alarm
    /// (1..=86400), or `None` if no time of day matches.
    fn seconds_to_alarm(&self) -> Option<u64> {
        next_alarm(self.time.second_of_day(), |field, v| {
            let value = match field {
                AlarmField::Hours => self.encode_hour(v),
                AlarmField::Minutes | AlarmField::Seconds => self.encode(v),
            };
            Self::alarm_matches(self.alarm[field as usize], value)
        })
    }

    /// Runs the update cycles and periodic ticks that happened since the
    /// last look, setting flags and driving IRQ 8.
    fn sync(&mut self) {
        if !self.running() {
            return;
        }
        let p = self.phase_ns();
        let k = p / NS_PER_S;
        if k > self.updates_done {
            let delta = k - self.updates_done;
            self.updates_done = k;
            if self.reg_b & b::SET == 0 {
                if self.seconds_to_alarm().is_some_and(|s| s <= delta) {
                    self.flags |= c::AF;
                }
                let delta = i64::try_from(delta).unwrap_or(i64::MAX / 4);
                self.time = DateTime::from_unix(self.time.to_unix().saturating_add(delta));
                self.flags |= c::UF;
            }
        }
        if let Some(cycles) = self.periodic_cycles() {
            let n = ns_to_ticks(p, RTC_HZ) / cycles;
            if n > self.periodic_done {
                self.periodic_done = n;
                self.flags |= c::PF;
            }
        }
        self.update_irq();
    }

    fn irqf(&self) -> bool {
        self.flags & self.reg_b & (c::PF | c::AF | c::UF) != 0
    }

    fn update_irq(&mut self) {
        let silenced = self.legacy.as_ref().is_some_and(|l| l.active());
        let level = self.irqf() && !silenced;
        if level != self.irq_level {
            self.irq_level = level;
            self.irq8.set_level(level);
        }
    }

    fn uip(&self) -> bool {
        self.running()
            && self.reg_b & b::SET == 0
            && self.phase_ns() % NS_PER_S >= NS_PER_S - UIP_NS
    }

    fn read_register(&mut self, i: u8) -> u8 {
        self.sync();
        let t = self.time;
        match i {
            idx::SECONDS => self.encode(t.sec),
            idx::MINUTES => self.encode(t.min),
            idx::HOURS => self.encode_hour(t.hour),
            idx::SECONDS_ALARM => self.alarm[0],
            idx::MINUTES_ALARM => self.alarm[1],
            idx::HOURS_ALARM => self.alarm[2],
            idx::DAY_OF_WEEK => (t.day_of_week() - 1 + self.dow_adjust) % 7 + 1,
            idx::DAY_OF_MONTH => self.encode(t.day),
            idx::MONTH => self.encode(t.month),
            idx::YEAR => self.encode(t.year),
            idx::CENTURY => self.encode(t.century),
            idx::REG_A => self.reg_a | if self.uip() { a::UIP } else { 0 },
            idx::REG_B => self.reg_b,
            idx::REG_C => {
                let v = self.flags | if self.irqf() { c::IRQF } else { 0 };
                self.flags = 0;
                self.update_irq();
                v
            }
            idx::REG_D => REG_D_VRT,
            _ => self.ram[usize::from(i & 0x7F)],
        }
    }

    fn write_register(&mut self, i: u8, v: u8) {
        self.sync();
        match i {
            idx::SECONDS => self.time.sec = self.decode(v),
            idx::MINUTES => self.time.min = self.decode(v),
            idx::HOURS => self.time.hour = self.decode_hour(v),
            idx::SECONDS_ALARM => self.alarm[0] = v,
            idx::MINUTES_ALARM => self.alarm[1] = v,
            idx::HOURS_ALARM => self.alarm[2] = v,
            idx::DAY_OF_WEEK => {
                let want = (v.wrapping_sub(1)) % 7;
                let have = self.time.day_of_week() - 1;
                self.dow_adjust = (want + 7 - have) % 7;
            }
            idx::DAY_OF_MONTH => self.time.day = self.decode(v),
            idx::MONTH => self.time.month = self.decode(v),
            idx::YEAR => self.time.year = self.decode(v) % 100,
            idx::CENTURY => self.time.century = self.decode(v),
            idx::REG_A => {
                let was_running = self.running();
                let was_reset = self.reg_a & a::DV_RESET == a::DV_RESET;
                self.reg_a = v & !a::UIP;
                if self.running() && !was_running {
                    // Leaving divider reset, the first update comes 500 ms
                    // later (datasheet, "Divider stages").
                    let now = self.clock.now_ns();
                    self.origin_ns = if was_reset {
                        now.saturating_sub(NS_PER_S / 2)
                    } else {
                        now
                    };
                }
                self.rebase_counters();
            }
            idx::REG_B => {
                let mut v = v;
                // Setting SET clears UIE (datasheet, register B bit 7).
                if v & b::SET != 0 {
                    v &= !b::UIE;
                }
                self.reg_b = v;
                self.update_irq();
            }
            idx::REG_C | idx::REG_D => {}
            _ => self.ram[usize::from(i & 0x7F)] = v,
        }
    }
}

impl TimerDevice for Rtc {
    /// The next time a flag that would raise IRQ 8 is set; `None` while IRQ 8
    /// is already asserted (nothing new can happen until register C is read)
    /// or no interrupt is enabled.
    fn next_deadline_ns(&mut self) -> Option<u64> {
        self.sync();
        if !self.running() || self.irqf() {
            return None;
        }
        let mut best: Option<u64> = None;
        let mut consider = |t: u64| best = Some(best.map_or(t, |b| b.min(t)));
        let update_at = |k: u64| self.origin_ns.saturating_add(k.saturating_mul(NS_PER_S));
        if self.reg_b & b::SET == 0 {
            if self.reg_b & b::UIE != 0 {
                consider(update_at(self.updates_done + 1));
            }
            if self.reg_b & b::AIE != 0 {
                if let Some(s) = self.seconds_to_alarm() {
                    consider(update_at(self.updates_done + s));
                }
            }
        }
        if self.reg_b & b::PIE != 0 {
            if let Some(cycles) = self.periodic_cycles() {
                let t = (self.periodic_done + 1).saturating_mul(cycles);
                consider(self.origin_ns.saturating_add(ticks_to_ns(t, RTC_HZ)));
            }
        }
        best
    }

    fn service(&mut self) {
        self.sync();
    }
}

impl BusDevice for Rtc {
    /// Port 0x70 is write-only (reads float: all-ones); port 0x71 reads the
    /// indexed register. A wide access is split into bytes on consecutive
    /// ports, as the ISA bus does.
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        for (i, byte) in data.iter_mut().enumerate() {
            *byte = match offset.checked_add(i as u64) {
                Some(1) => self.read_register(self.index),
                _ => 0xFF,
            };
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        for (i, &byte) in data.iter().enumerate() {
            match offset.checked_add(i as u64) {
                Some(0) => {
                    self.nmi_disabled = byte & 0x80 != 0;
                    self.index = byte & 0x7F;
                }
                Some(1) => self.write_register(self.index, byte),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests;
