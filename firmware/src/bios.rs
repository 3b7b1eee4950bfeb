//! What a PC BIOS leaves in low memory before it starts an OS, which some
//! kernels read even when a loader started them (Xen places its real-mode
//! trampoline from the EBDA pointer and the base memory size): the real-mode
//! interrupt vector table at 0 and the BIOS data area at 0x400 (IBM PC/AT
//! Technical Reference, "BIOS Data Area"; the values as SeaBIOS fills them),
//! and the small real-mode handlers the IVT points at.

use crate::le::{put16, put32};

/// The IVT (256 far pointers) and the BIOS data area: 0-0x4FF.
pub const LOW_LEN: usize = 0x500;
/// The extended BIOS data area: the 1 KiB under 640 KiB, which the e820
/// map reserves (`crate::e820::EBDA`).
pub const EBDA: u64 = crate::e820::EBDA;
/// Where the handlers go (F000:F000, in the BIOS area, shadow RAM).
pub const STUBS: u64 = 0xF_F000;

/// BDA offsets (from 0x400).
pub mod bda {
    /// COM1-COM4 I/O bases (words).
    pub const COM_PORTS: usize = 0x00;
    /// LPT1-LPT3 I/O bases (words).
    pub const LPT_PORTS: usize = 0x08;
    /// The EBDA's segment (word).
    pub const EBDA_SEGMENT: usize = 0x0E;
    /// The equipment word.
    pub const EQUIPMENT: usize = 0x10;
    /// Base memory below the EBDA, in KiB (word).
    pub const MEMORY_KIB: usize = 0x13;
    /// Timer ticks since midnight (dword, 18.2 Hz).
    pub const TICKS: usize = 0x6C;
    /// Fixed disks the BIOS found.
    pub const HARD_DISKS: usize = 0x75;
}

/// Equipment word bits (IBM PC/AT Technical Reference, INT 11h).
pub mod equipment {
    /// A math coprocessor (every x86-64 CPU has its x87).
    pub const FPU: u16 = 1 << 1;
    /// Bits 9-11: the number of serial ports.
    pub const SERIAL_SHIFT: u16 = 9;
    /// Bits 14-15: the number of parallel ports.
    pub const PARALLEL_SHIFT: u16 = 14;
}

/// The handlers, 16-bit code, at [`STUBS`]:
/// - `+0` IRET, for every vector without a device behind it;
/// - `+1` master PIC IRQ (9-15... 0x09-0x0F): a non-specific EOI to the
///   master 8259A (port 0x20) and IRET;
/// - `+8` slave PIC IRQ (0x70-0x77): EOI to the slave (0xA0) and master;
/// - `+17` the timer (int 08h): counts the BDA's tick dword, EOI, IRET.
pub const STUB_CODE: [u8; 35] = [
    0xCF, // +0: iret
    0x50, 0xB0, 0x20, 0xE6, 0x20, 0x58,
    0xCF, // +1: push ax; mov al,20h; out 20h,al; pop ax; iret
    0x50, 0xB0, 0x20, 0xE6, 0xA0, 0xE6, 0x20, 0x58,
    0xCF, // +8: ... out 0A0h,al; out 20h,al ...
    0x1E, 0x50, 0x31, 0xC0, 0x8E, 0xD8, // +17: push ds; push ax; xor ax,ax; mov ds,ax
    0x66, 0xFF, 0x06, 0x6C, 0x04, // inc dword [046Ch]
    0xB0, 0x20, 0xE6, 0x20, 0x58, 0x1F, 0xCF, // mov al,20h; out 20h,al; pop ax; pop ds; iret
];
const STUB_IRET: u16 = 0;
const STUB_MASTER: u16 = 1;
const STUB_SLAVE: u16 = 8;
const STUB_TIMER: u16 = 17;

/// What the shim found on the machine.
#[derive(Clone, Copy, Debug, Default)]
pub struct Machine<'a> {
    /// The serial ports that answer, in COM1..COM4 order.
    pub com_ports: &'a [u16],
    /// The parallel ports that answer.
    pub lpt_ports: &'a [u16],
    /// Timer ticks since midnight ([`ticks_since_midnight`]).
    pub ticks: u32,
}

/// Fills `low` (guest 0-0x4FF) with the IVT and BIOS data area.
pub fn build_low_memory(low: &mut [u8; LOW_LEN], m: &Machine) {
    low.fill(0);
    let seg = (STUBS >> 4) as u16 & 0xF000;
    let base = (STUBS - (u64::from(seg) << 4)) as u16;
    for v in 0..256usize {
        let off = match v {
            0x08 => STUB_TIMER,
            0x09..=0x0F => STUB_MASTER,
            0x70..=0x77 => STUB_SLAVE,
            _ => STUB_IRET,
        };
        put16(low, v * 4, base + off);
        put16(low, v * 4 + 2, seg);
    }
    let b = 0x400;
    for (i, p) in m.com_ports.iter().take(4).enumerate() {
        put16(low, b + bda::COM_PORTS + 2 * i, *p);
    }
    for (i, p) in m.lpt_ports.iter().take(3).enumerate() {
        put16(low, b + bda::LPT_PORTS + 2 * i, *p);
    }
    put16(low, b + bda::EBDA_SEGMENT, (EBDA >> 4) as u16);
    let eq = equipment::FPU
        | (m.com_ports.len().min(4) as u16) << equipment::SERIAL_SHIFT
        | (m.lpt_ports.len().min(3) as u16) << equipment::PARALLEL_SHIFT;
    put16(low, b + bda::EQUIPMENT, eq);
    put16(low, b + bda::MEMORY_KIB, (EBDA / 1024) as u16);
    put32(low, b + bda::TICKS, m.ticks);
}

/// The EBDA's first KiB: its size in KiB in byte 0, the rest zero.
pub fn build_ebda(ebda: &mut [u8; 1024]) {
    ebda.fill(0);
    ebda[0] = 1;
}

/// The PIT's 1193182 Hz over 65536: 18.2 ticks a second. Ticks since
/// midnight for an RTC time (hours, minutes, seconds, binary).
pub fn ticks_since_midnight(h: u8, m: u8, s: u8) -> u32 {
    let secs = u64::from(h.min(23)) * 3600 + u64::from(m.min(59)) * 60 + u64::from(s.min(59));
    (secs * 1_193_182 / 65_536) as u32
}

/// An RTC register value in BCD (status register B bit 2 clear) to binary.
pub fn from_bcd(v: u8) -> u8 {
    (v >> 4) * 10 + (v & 0xF)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::le::{u16_at, u32_at};

    #[test]
    fn bda_as_a_bios_leaves_it() {
        let mut low = [0xAAu8; LOW_LEN];
        let m = Machine {
            com_ports: &[0x3F8, 0x2F8],
            lpt_ports: &[],
            ticks: 1234,
        };
        build_low_memory(&mut low, &m);
        assert_eq!(u16_at(&low, 0x400), 0x3F8);
        assert_eq!(u16_at(&low, 0x402), 0x2F8);
        assert_eq!(u16_at(&low, 0x404), 0);
        assert_eq!(u16_at(&low, 0x408), 0);
        assert_eq!(u16_at(&low, 0x40E), 0x9FC0);
        // Two serial ports in bits 9-11, the FPU bit, no printer.
        assert_eq!(u16_at(&low, 0x410), 0x0402);
        assert_eq!(u16_at(&low, 0x413), 639);
        assert_eq!(u32_at(&low, 0x46C), 1234);
        assert_eq!(low[0x475], 0);
    }

    #[test]
    fn every_vector_points_at_a_handler_that_ends_in_iret() {
        let mut low = [0u8; LOW_LEN];
        build_low_memory(&mut low, &Machine::default());
        for v in 0..256 {
            let off = u16_at(&low, v * 4);
            let seg = u16_at(&low, v * 4 + 2);
            let lin = (u64::from(seg) << 4) + u64::from(off);
            assert!(lin >= STUBS && lin < STUBS + STUB_CODE.len() as u64, "{v}");
            let code = &STUB_CODE[(lin - STUBS) as usize..];
            assert!(code.contains(&0xCF), "vector {v}");
        }
        // The timer and the slave IRQs send EOIs; int 10h only returns.
        let at = |v: usize| (u16_at(&low, v * 4) - 0xF000) as usize;
        assert_eq!(STUB_CODE[at(0x10)], 0xCF);
        assert!(STUB_CODE[at(0x08)..].starts_with(&[0x1E, 0x50]));
        assert_eq!(
            &STUB_CODE[at(0x70) + 3..at(0x70) + 7],
            &[0xE6, 0xA0, 0xE6, 0x20]
        );
    }

    #[test]
    fn ticks_from_the_rtc() {
        assert_eq!(ticks_since_midnight(0, 0, 0), 0);
        // 0x1800B0 ticks make a day (the BDA's midnight rollover value).
        let day = ticks_since_midnight(23, 59, 59);
        assert!((0x17_FFF0..0x18_00B0).contains(&day), "{day:#x}");
        assert_eq!(from_bcd(0x59), 59);
    }

    #[test]
    fn ebda_says_one_kib() {
        let mut e = [9u8; 1024];
        build_ebda(&mut e);
        assert_eq!(e[0], 1);
        assert!(e[1..].iter().all(|&b| b == 0));
    }
}
