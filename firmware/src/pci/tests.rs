//! A bus-0 model with Keel's PC functions (device-model/src/pc/mod.rs): the
//! BARs behave as PCI Local Bus 6.2.5.1 says (address bits below the size
//! read 0, the type bits are read-only), and the expected addresses are
//! where SeaBIOS puts the same devices on QEMU's `pc`.

use super::*;
use alloc::vec::Vec;

struct Func {
    dev: u8,
    func: u8,
    regs: [u32; 64],
    /// Per register: the bits a write changes.
    writable: [u32; 64],
}

impl Func {
    /// `class`: base class, subclass, programming interface (24 bits).
    fn new(dev: u8, func: u8, id: u32, class: u32, header: u8, pin: u8) -> Self {
        let mut f = Func {
            dev,
            func,
            regs: [0; 64],
            writable: [0; 64],
        };
        f.regs[0] = id;
        f.regs[2] = class << 8;
        f.regs[3] = u32::from(header) << 16;
        f.regs[15] = u32::from(pin) << 8;
        f.writable[1] = 0xFFFF;
        f.writable[15] = 0xFF;
        f
    }

    /// A BAR of `size` bytes; `low` its read-only type bits.
    fn bar(mut self, reg: u8, size: u64, low: u32) -> Self {
        let i = usize::from(reg / 4);
        self.regs[i] = low;
        self.writable[i] = !(size as u32).wrapping_sub(1) & !0xF;
        if low & 1 != 0 {
            self.writable[i] = !(size as u32 - 1) & !0x3;
        }
        if low & 0x6 == 0x4 {
            self.writable[i + 1] = !((size - 1) >> 32) as u32;
        }
        self
    }

    fn rom(mut self, size: u32) -> Self {
        self.writable[12] = !(size - 1) & 0xFFFF_F800 | 1;
        self
    }

    fn writable(mut self, reg: u8, mask: u32) -> Self {
        self.writable[usize::from(reg / 4)] = mask;
        self
    }

    fn set(mut self, reg: u8, v: u32) -> Self {
        self.regs[usize::from(reg / 4)] = v;
        self
    }
}

#[derive(Default)]
struct Bus {
    funcs: Vec<Func>,
    writes: u32,
}

impl Bus {
    fn get(&mut self, dev: u8, func: u8) -> Option<&mut Func> {
        self.funcs
            .iter_mut()
            .find(|f| f.dev == dev && f.func == func)
    }

    fn reg(&mut self, dev: u8, func: u8, reg: u8) -> u32 {
        self.get(dev, func).unwrap().regs[usize::from(reg / 4)]
    }
}

impl ConfigAccess for Bus {
    fn read32(&mut self, dev: u8, func: u8, reg: u8) -> u32 {
        self.get(dev, func)
            .map_or(!0, |f| f.regs[usize::from(reg / 4)])
    }

    fn write32(&mut self, dev: u8, func: u8, reg: u8, v: u32) {
        self.writes += 1;
        if let Some(f) = self.get(dev, func) {
            let i = usize::from(reg / 4);
            f.regs[i] = f.regs[i] & !f.writable[i] | v & f.writable[i];
        }
    }
}

const IO: u32 = 1;
const PREFETCH: u32 = 0x8;
const MEM64: u32 = 0x4;

/// Keel's PC with the test device at 00:02.0 and an e1000 at 00:03.0.
fn keel_pc() -> Bus {
    let mut b = keel_pc_e1000();
    b.funcs.push(
        Func::new(2, 0, 0x1234_1AF4, 0x00FF00, 0, 1)
            .bar(0x10, 0x2000, 0)
            .bar(0x18, 0x1_0000, PREFETCH)
            .rom(0x800)
            .set(0x10, 0xFEB0_0000)
            .set(0x04, 0x0002),
    );
    b
}

/// Keel's PC with an e1000 at 00:03.0.
fn keel_pc_e1000() -> Bus {
    let mut b = Bus::default();
    b.funcs.push(Func::new(0, 0, 0x1237_8086, 0x060000, 0, 0));
    b.funcs.push(
        Func::new(1, 0, 0x7000_8086, 0x060100, 0x80, 0)
            .writable(0x60, !0)
            .set(0x60, 0x8080_8080),
    );
    b.funcs.push(
        Func::new(1, 1, 0x7010_8086, 0x010180, 0, 0)
            .bar(0x20, 16, IO)
            .writable(0x40, !0),
    );
    b.funcs.push(Func::new(1, 3, 0x7113_8086, 0x068000, 0, 1));
    b.funcs.push(
        Func::new(3, 0, 0x100E_8086, 0x020000, 0, 1)
            .bar(0x10, 0x2_0000, 0)
            .bar(0x14, 0x40, IO)
            .rom(0x2_0000),
    );
    b
}

#[test]
fn bars_land_where_seabios_puts_them() {
    let mut b = keel_pc();
    let s = setup(&mut b, 256 << 20).unwrap();
    assert_eq!(
        s,
        Summary {
            functions: 6,
            bars: 7,
            isa_bridge: true
        }
    );
    // Memory: e1000 BAR0 128 KiB, its ROM 128 KiB, test device BAR0
    // 8 KiB, its ROM 4 KiB (2 KiB raised to a page), largest first;
    // prefetchable: 64 KiB. The prefetchable list sits on top (its
    // alignment is not larger than the memory list's): 0xFEBF0000; the
    // memory list below it, 0xFEBF0000 - 0x43000 = 0xFEBAD000 aligned down
    // to 128 KiB: 0xFEBA0000.
    assert_eq!(b.reg(3, 0, 0x10), 0xFEBA_0000);
    assert_eq!(b.reg(3, 0, 0x30), 0xFEBC_0000, "ROM placed, not enabled");
    assert_eq!(b.reg(2, 0, 0x10), 0xFEBE_0000);
    assert_eq!(b.reg(2, 0, 0x30), 0xFEBE_2000);
    assert_eq!(b.reg(2, 0, 0x18), 0xFEBF_0000 | PREFETCH);
    // I/O from 0xC000, largest first: e1000's 64 bytes, then the IDE's 16.
    assert_eq!(b.reg(3, 0, 0x14), 0xC000 | IO);
    assert_eq!(b.reg(1, 1, 0x20), 0xC040 | IO);
}

/// The e1000 alone: its BAR0 at 0xFEBC0000, where SeaBIOS put it on this
/// machine (the ROM above it, up to the IO-APIC).
#[test]
fn the_e1000_alone_gets_seabios_address() {
    let mut b = keel_pc_e1000();
    setup(&mut b, 256 << 20).unwrap();
    assert_eq!(b.reg(3, 0, 0x10), 0xFEBC_0000);
    assert_eq!(b.reg(3, 0, 0x30), 0xFEBE_0000);
}

#[test]
fn interrupts_are_routed_as_the_dsdt_says() {
    let mut b = keel_pc();
    setup(&mut b, 256 << 20).unwrap();
    assert_eq!(b.reg(1, 0, 0x60), 0x0B0B_0A0A, "PIRQA-D = 10, 10, 11, 11");
    assert_eq!(ELCR, [0x00, 0x0C], "IRQ 10 and 11 level-triggered");
    // Slot 2 INTA# -> PIRQB -> 10; slot 3 INTA# -> PIRQC -> 11.
    assert_eq!(b.reg(2, 0, 0x3C), 0x010A);
    assert_eq!(b.reg(3, 0, 0x3C), 0x010B);
    assert_eq!(b.reg(1, 3, 0x3C), 0x0109, "PM: the SCI");
    assert_eq!(b.reg(1, 1, 0x3C), 0, "no pin, no line");
    for (dev, pin, irq) in [(1, 1, 10), (1, 3, 11), (4, 1, 11), (4, 2, 10), (5, 1, 10)] {
        assert_eq!(interrupt_line(dev, pin), irq, "slot {dev} pin {pin}");
    }
}

#[test]
fn decode_and_ide_are_enabled() {
    let mut b = keel_pc();
    setup(&mut b, 256 << 20).unwrap();
    for (dev, func) in [(0, 0), (1, 1), (2, 0), (3, 0)] {
        assert_eq!(
            b.reg(dev, func, 4) & 0xFFFF,
            0x0103,
            "{dev}.{func}: IO, MEM, SERR#"
        );
    }
    assert_eq!(b.reg(1, 1, 0x40), 0x8000_8000);
}

#[test]
fn sixty_four_bit_bars_and_large_io() {
    let mut b = Bus::default();
    b.funcs.push(
        Func::new(4, 0, 0x1111_1AF4, 0, 0, 0)
            .bar(0x10, 0x100, IO)
            .bar(0x18, 0x4000, MEM64 | PREFETCH),
    );
    b.funcs
        .push(Func::new(5, 0, 0x2222_1AF4, 0, 0, 0).bar(0x10, 0x4000, IO));
    setup(&mut b, 256 << 20).unwrap();
    assert_eq!(b.reg(4, 0, 0x18), 0xFEBF_C000 | MEM64 | PREFETCH);
    assert_eq!(b.reg(4, 0, 0x1C), 0);
    // 0x4100 bytes of I/O do not fit above 0xC000: from 0x1000, aligned
    // up to the 16 KiB BAR.
    assert_eq!(b.reg(5, 0, 0x10), 0x4000 | IO);
    assert_eq!(b.reg(4, 0, 0x10), 0x8000 | IO);
}

#[test]
fn a_full_hole_stops_the_boot() {
    let mut b = Bus::default();
    b.funcs
        .push(Func::new(4, 0, 0x1111_1AF4, 0, 0, 0).bar(0x10, 0x4000_0000, 0));
    // 1 GiB fits above 2 GiB of RAM but not above 3.5 GiB.
    assert!(setup(&mut b, 2 << 30).is_ok());
    let e = setup(&mut b, 0xE000_0000).unwrap_err();
    assert_eq!(e.status(), crate::report::status::TOO_BIG);
    let mut b = Bus::default();
    b.funcs
        .push(Func::new(4, 0, 0x1111_1AF4, 0, 0, 0).bar(0x10, 0x10000, IO));
    assert!(setup(&mut b, 256 << 20).is_err(), "64 KiB of I/O");
}

#[test]
fn an_empty_bus_and_absent_functions_cost_only_reads() {
    let mut b = Bus::default();
    assert_eq!(setup(&mut b, 256 << 20).unwrap(), Summary::default());
    assert_eq!(b.writes, 0);
    // A single-function device's functions 1-7 are not visited even if
    // they answer (some devices alias function 0).
    let mut b = Bus::default();
    b.funcs.push(Func::new(6, 0, 0x3333_1AF4, 0, 0, 0));
    b.funcs.push(Func::new(6, 1, 0x3333_1AF4, 0, 0, 1));
    setup(&mut b, 256 << 20).unwrap();
    assert_eq!(b.reg(6, 1, 0x3C), 0x100);
}

#[test]
fn too_many_bars_is_an_error_not_a_panic() {
    let mut b = Bus::default();
    for dev in 0..20 {
        let mut f = Func::new(dev, 0, 0x4444_1AF4, 0, 0, 0);
        for reg in (0x10..0x28).step_by(4) {
            f = f.bar(reg, 0x100, IO);
        }
        b.funcs.push(f);
    }
    assert!(setup(&mut b, 256 << 20).is_err());
}
