//! PCI resources a PC BIOS assigns before it boots an OS, for bus 0 of an
//! i440FX/PIIX machine: each function's BARs sized and placed, decode
//! enabled, the PIIX PIRQ routes and ELCR programmed and each function's
//! interrupt line written. Placed as SeaBIOS places them on QEMU's `pc`
//! machine (the facts of its `pciinit`), so that a kernel booted by the shim
//! finds the addresses it would find under SeaBIOS.
//!
//! - Sizing (PCI Local Bus 3.0, 6.2.5.1): decode off, all ones written to
//!   the BAR, the size is the lowest set bit of the address bits read back,
//!   the old value restored. The expansion ROM BAR is sized with its address
//!   mask (enable bit 0) and placed with the memory BARs, never enabled.
//!   Memory BARs smaller than 4 KiB take 4 KiB.
//! - Placement: one list per kind (I/O, memory, prefetchable memory), each
//!   sorted by size, largest first (natural alignment, so that one after the
//!   other stays aligned), ties in bus order. I/O from `0xC000` (from
//!   `0x1000` when 16 KiB are not enough, up to 64 KiB). The two memory lists stack down
//!   from the IO-APIC at `0xFEC00000`, the one with the larger alignment on
//!   top, each base aligned down to its largest BAR; the hole's floor is
//!   2 GiB (RAM below 4 GiB up to 2 GiB), 3 GiB (up to 3 GiB) or the end of
//!   RAM. 64-bit BARs go there too; SeaBIOS's move of 64-bit BARs above
//!   4 GiB when the hole is full is not done: the boot stops instead.
//! - Afterwards, for every function: the interrupt line (config `0x3C`)
//!   from its pin through the board's swizzle, PIRQ `(slot - 1 + pin - 1)
//!   mod 4` (INTA# = pin 1; the DSDT's `_PRT`, crates/acpi-gen), whose IRQ
//!   is [`PIRQ_IRQS`]; the PIIX4 PM function gets the SCI's IRQ 9; command
//!   register I/O, memory and SERR# enable (bus mastering stays off: drivers
//!   turn it on, as under SeaBIOS). The PIIX3/PIIX4 ISA bridge gets
//!   PIRQRC[A:D] (`0x60-0x63`, 82371AB datasheet 3.2.11) = [`PIRQ_IRQS`] and
//!   the shim sets those IRQs level-triggered in the ELCR ([`ELCR`]); the
//!   PIIX IDE function gets IDETIM's decode enable on both channels.
//!
//! Only header type 0 functions get BARs; a bridge (none on Keel's PC) keeps
//! its windows closed.

use crate::report::Error;

/// Configuration space access to bus 0 (mechanism #1 in the shim, a model in
/// the tests). Dword-aligned registers only.
pub trait ConfigAccess {
    fn read32(&mut self, dev: u8, func: u8, reg: u8) -> u32;
    fn write32(&mut self, dev: u8, func: u8, reg: u8, v: u32);
}

/// The ISA IRQ of PIRQA-PIRQD, the routes SeaBIOS programs on QEMU's `pc`.
pub const PIRQ_IRQS: [u8; 4] = [10, 10, 11, 11];
/// ELCR1 (port `0x4D0`) and ELCR2 (`0x4D1`): the [`PIRQ_IRQS`] level-triggered.
pub const ELCR: [u8; 2] = elcr();
/// Where I/O BARs start, and the start when they need 16 KiB or more.
pub const IO_BASE: u64 = 0xC000;
pub const IO_BASE_LARGE: u64 = 0x1000;
/// The top of the 32-bit PCI hole: the IO-APIC.
pub const MEM_END: u64 = 0xFEC0_0000;
/// The IRQ of the PIIX4 PM function (the SCI, hard-wired).
pub const SCI_IRQ: u8 = 9;
/// The most BARs (ROM BARs included) the shim places.
pub const MAX_BARS: usize = 96;

const fn elcr() -> [u8; 2] {
    let mut e = [0u8; 2];
    let mut i = 0;
    while i < 4 {
        let irq = PIRQ_IRQS[i];
        e[(irq >> 3) as usize] |= 1 << (irq & 7);
        i += 1;
    }
    e
}

const VENDOR_INTEL: u16 = 0x8086;
const PIIX3_ISA: u16 = 0x7000;
const PIIX4_ISA: u16 = 0x7110;
const PIIX3_IDE: u16 = 0x7010;
const PIIX4_IDE: u16 = 0x7111;
const PIIX4_PM: u16 = 0x7113;

const REG_ID: u8 = 0x00;
const REG_COMMAND: u8 = 0x04;
const REG_CLASS: u8 = 0x08;
const REG_HEADER: u8 = 0x0C;
const REG_BAR0: u8 = 0x10;
const REG_ROM: u8 = 0x30;
const REG_INTERRUPT: u8 = 0x3C;
const PIIX_PIRQRC: u8 = 0x60;
const PIIX_IDETIM: u8 = 0x40;

const COMMAND_IO: u32 = 1 << 0;
const COMMAND_MEMORY: u32 = 1 << 1;
const COMMAND_SERR: u32 = 1 << 8;
/// IDETIM.IDE (bit 15) for the primary (0x40) and secondary (0x42) channel.
const IDETIM_DECODE_BOTH: u32 = 0x8000_8000;
const ROM_ADDRESS_MASK: u32 = 0xFFFF_F800;
const MEM_MIN: u64 = 0x1000;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Io,
    Mem,
    Prefetch,
}

#[derive(Clone, Copy, Debug)]
struct Bar {
    dev: u8,
    func: u8,
    reg: u8,
    kind: Kind,
    is64: bool,
    size: u64,
}

const NO_BAR: Bar = Bar {
    dev: 0,
    func: 0,
    reg: 0,
    kind: Kind::Io,
    is64: false,
    size: 0,
};

/// What [`setup`] did, for the shim's log line.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Summary {
    pub functions: u32,
    pub bars: u32,
    /// A PIIX ISA bridge was found and its PIRQ routes set: write [`ELCR`].
    pub isa_bridge: bool,
}

/// Sizes, places and enables every function's BARs on bus 0 and sets the
/// interrupt routing (module doc). `ram_below_4g` is the end of RAM under
/// 4 GiB, which bounds the memory hole from below.
pub fn setup(c: &mut impl ConfigAccess, ram_below_4g: u64) -> Result<Summary, Error> {
    let mut bars = [NO_BAR; MAX_BARS];
    let mut n = 0;
    let mut s = Summary::default();
    for_each_function(c, |c, dev, func| {
        s.functions += 1;
        if c.read32(dev, func, REG_HEADER) >> 16 & 0x7F != 0 {
            return Ok(());
        }
        let cmd = c.read32(dev, func, REG_COMMAND) & 0xFFFF;
        c.write32(dev, func, REG_COMMAND, cmd & !(COMMAND_IO | COMMAND_MEMORY));
        let mut i = 0;
        while i < 7 {
            let reg = if i == 6 { REG_ROM } else { REG_BAR0 + 4 * i };
            let bar = size_bar(c, dev, func, reg);
            i += if bar.is64 { 2 } else { 1 };
            if bar.size == 0 {
                continue;
            }
            if n == MAX_BARS {
                return Err(Error::TooBig {
                    what: "the PCI BAR list",
                    len: MAX_BARS as u64 + 1,
                });
            }
            bars[n] = bar;
            n += 1;
        }
        Ok(())
    })?;
    let bars = &mut bars[..n];
    // Largest first, bus order among equals (an insertion sort: stable,
    // and no allocator in the shim).
    for i in 1..bars.len() {
        let mut j = i;
        while j > 0 && bars[j - 1].size < bars[j].size {
            bars.swap(j - 1, j);
            j -= 1;
        }
    }
    s.bars = n as u32;

    let io_sum = sum(bars, Kind::Io);
    let io_base = if io_sum < 0x4000 {
        IO_BASE
    } else {
        IO_BASE_LARGE
    };
    // I/O BARs are at most 256 bytes (6.2.5.1), which both bases suit; a
    // larger one still gets its natural alignment.
    let io_base = io_base.next_multiple_of(align(bars, Kind::Io));
    if io_base + io_sum > 0x1_0000 {
        return Err(Error::TooBig {
            what: "the PCI I/O BARs",
            len: io_sum,
        });
    }
    let floor = if ram_below_4g <= 0x8000_0000 {
        0x8000_0000
    } else if ram_below_4g <= 0xC000_0000 {
        0xC000_0000
    } else {
        ram_below_4g
    };
    let (top, bottom) = if align(bars, Kind::Mem) < align(bars, Kind::Prefetch) {
        (Kind::Mem, Kind::Prefetch)
    } else {
        (Kind::Prefetch, Kind::Mem)
    };
    let top_base = MEM_END
        .checked_sub(sum(bars, top))
        .map(|b| b & !(align(bars, top) - 1));
    let bottom_base = top_base
        .and_then(|t| t.checked_sub(sum(bars, bottom)))
        .map(|b| b & !(align(bars, bottom) - 1));
    let (Some(top_base), Some(bottom_base)) = (top_base, bottom_base) else {
        return Err(mem_too_big(bars));
    };
    if bottom_base < floor {
        return Err(mem_too_big(bars));
    }

    let mut next = [(Kind::Io, io_base), (top, top_base), (bottom, bottom_base)];
    for b in bars.iter() {
        let Some(slot) = next.iter_mut().find(|(k, _)| *k == b.kind) else {
            continue;
        };
        let addr = slot.1;
        slot.1 += b.size;
        c.write32(b.dev, b.func, b.reg, addr as u32);
        if b.is64 {
            c.write32(b.dev, b.func, b.reg + 4, (addr >> 32) as u32);
        }
    }

    for_each_function(c, |c, dev, func| {
        let id = c.read32(dev, func, REG_ID);
        let (vendor, device) = (id as u16, (id >> 16) as u16);
        let irq = c.read32(dev, func, REG_INTERRUPT);
        let pin = (irq >> 8) as u8;
        if pin != 0 {
            let line = if vendor == VENDOR_INTEL && device == PIIX4_PM {
                SCI_IRQ
            } else {
                interrupt_line(dev, pin)
            };
            c.write32(dev, func, REG_INTERRUPT, irq & !0xFF | u32::from(line));
        }
        if vendor == VENDOR_INTEL && matches!(device, PIIX3_ISA | PIIX4_ISA) {
            c.write32(dev, func, PIIX_PIRQRC, u32::from_le_bytes(PIRQ_IRQS));
            s.isa_bridge = true;
        }
        let ide_class = c.read32(dev, func, REG_CLASS) >> 16 == 0x0101;
        if vendor == VENDOR_INTEL && matches!(device, PIIX3_IDE | PIIX4_IDE) && ide_class {
            c.write32(dev, func, PIIX_IDETIM, IDETIM_DECODE_BOTH);
        }
        let cmd = c.read32(dev, func, REG_COMMAND) & 0xFFFF;
        c.write32(
            dev,
            func,
            REG_COMMAND,
            cmd | COMMAND_IO | COMMAND_MEMORY | COMMAND_SERR,
        );
        Ok(())
    })?;
    Ok(s)
}

/// The IRQ a function in slot `dev` raises on interrupt pin `pin` (1 =
/// INTA#): PIRQ `(dev - 1 + pin - 1) mod 4`, through [`PIRQ_IRQS`].
pub fn interrupt_line(dev: u8, pin: u8) -> u8 {
    PIRQ_IRQS[usize::from(dev.wrapping_add(pin).wrapping_add(2) & 3)]
}

fn mem_too_big(bars: &[Bar]) -> Error {
    Error::TooBig {
        what: "the PCI memory BARs (below the IO-APIC)",
        len: sum(bars, Kind::Mem).saturating_add(sum(bars, Kind::Prefetch)),
    }
}

fn sum(bars: &[Bar], kind: Kind) -> u64 {
    bars.iter()
        .filter(|b| b.kind == kind)
        .fold(0u64, |s, b| s.saturating_add(b.size))
}

/// The largest BAR of a kind (the list is sorted), 1 for none.
fn align(bars: &[Bar], kind: Kind) -> u64 {
    bars.iter().find(|b| b.kind == kind).map_or(1, |b| b.size)
}

/// Every function present on bus 0, functions 1-7 only of multi-function
/// devices (header type bit 7 of function 0).
fn for_each_function<C: ConfigAccess>(
    c: &mut C,
    mut f: impl FnMut(&mut C, u8, u8) -> Result<(), Error>,
) -> Result<(), Error> {
    for dev in 0..32u8 {
        if c.read32(dev, 0, REG_ID) as u16 == 0xFFFF {
            continue;
        }
        let multi = c.read32(dev, 0, REG_HEADER) >> 16 & 0x80 != 0;
        for func in 0..if multi { 8 } else { 1 } {
            if c.read32(dev, func, REG_ID) as u16 != 0xFFFF {
                f(c, dev, func)?;
            }
        }
    }
    Ok(())
}

/// Sizes the BAR at `reg` (the ROM BAR at 0x30), restoring its value.
fn size_bar(c: &mut impl ConfigAccess, dev: u8, func: u8, reg: u8) -> Bar {
    let old = c.read32(dev, func, reg);
    let mut bar = Bar {
        dev,
        func,
        reg,
        kind: Kind::Mem,
        is64: false,
        size: 0,
    };
    let mask: u32 = if reg == REG_ROM {
        ROM_ADDRESS_MASK
    } else if old & 1 != 0 {
        bar.kind = Kind::Io;
        !0x3
    } else {
        if old & 0x8 != 0 {
            bar.kind = Kind::Prefetch;
        }
        bar.is64 = old >> 1 & 3 == 2 && reg < REG_BAR0 + 20;
        !0xF
    };
    c.write32(dev, func, reg, if reg == REG_ROM { mask } else { !0 });
    let mut bits = u64::from(c.read32(dev, func, reg) & mask);
    c.write32(dev, func, reg, old);
    if bar.is64 {
        let old_hi = c.read32(dev, func, reg + 4);
        c.write32(dev, func, reg + 4, !0);
        bits |= u64::from(c.read32(dev, func, reg + 4)) << 32;
        c.write32(dev, func, reg + 4, old_hi);
    }
    // The lowest writable address bit is the size (6.2.5.1).
    let size = bits & bits.wrapping_neg();
    bar.size = if bar.kind == Kind::Io {
        size
    } else if size != 0 {
        size.max(MEM_MIN)
    } else {
        0
    };
    bar
}

#[cfg(test)]
mod tests;
