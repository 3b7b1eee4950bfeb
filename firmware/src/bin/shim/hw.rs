//! Port I/O, COM1, PCI configuration space and guest-physical memory.

use core::arch::asm;

use keel_shim::report::Sink;

pub fn outb(port: u16, v: u8) {
    // SAFETY: port I/O has no memory effects the compiler must know of.
    unsafe { asm!("out dx, al", in("dx") port, in("al") v, options(nostack, preserves_flags)) }
}

pub fn outw(port: u16, v: u16) {
    // SAFETY: as outb.
    unsafe { asm!("out dx, ax", in("dx") port, in("ax") v, options(nostack, preserves_flags)) }
}

pub fn outl(port: u16, v: u32) {
    // SAFETY: as outb.
    unsafe { asm!("out dx, eax", in("dx") port, in("eax") v, options(nostack, preserves_flags)) }
}

pub fn inb(port: u16) -> u8 {
    let v: u8;
    // SAFETY: as outb.
    unsafe { asm!("in al, dx", out("al") v, in("dx") port, options(nostack, preserves_flags)) }
    v
}

pub fn inw(port: u16) -> u16 {
    let v: u16;
    // SAFETY: as outb.
    unsafe { asm!("in ax, dx", out("ax") v, in("dx") port, options(nostack, preserves_flags)) }
    v
}

pub fn inl(port: u16) -> u32 {
    let v: u32;
    // SAFETY: as outb.
    unsafe { asm!("in eax, dx", out("eax") v, in("dx") port, options(nostack, preserves_flags)) }
    v
}

const COM1: u16 = 0x3F8;
const DEBUG_EXIT: u16 = 0xF4;

/// 115200 baud 8N1, FIFOs on, interrupts off (16550A data sheet).
pub fn serial_init() {
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x80);
    outb(COM1, 0x01);
    outb(COM1 + 1, 0x00);
    outb(COM1 + 3, 0x03);
    outb(COM1 + 2, 0x07);
    outb(COM1 + 4, 0x03);
}

/// COM1, polled.
pub struct Com1;

impl Sink for Com1 {
    fn str(&mut self, s: &str) {
        for &b in s.as_bytes() {
            if b == b'\n' {
                putc(b'\r');
            }
            putc(b);
        }
    }
}

impl Com1 {
    /// Bytes from a file (a name): printable ASCII as is, others as `?`.
    pub fn bytes(&mut self, b: &[u8]) {
        for &c in b {
            putc(if (0x20..0x7F).contains(&c) { c } else { b'?' });
        }
    }
}

fn putc(b: u8) {
    let mut spins = 0u32;
    while inb(COM1 + 5) & 0x20 == 0 && spins < 100_000 {
        spins += 1;
    }
    outb(COM1, b);
}

/// Writes `status` to the debug-exit port, then stops.
pub fn exit(status: u32) -> ! {
    outl(DEBUG_EXIT, status);
    loop {
        // SAFETY: stopping the CPU with interrupts off is all that is left.
        unsafe { asm!("cli; hlt", options(nomem, nostack)) }
    }
}

fn pci_address(dev: u8, func: u8, reg: u8) -> u32 {
    0x8000_0000 | u32::from(dev) << 11 | u32::from(func) << 8 | u32::from(reg & 0xFC)
}

/// Configuration mechanism #1, bus 0.
pub fn pci_read32(dev: u8, func: u8, reg: u8) -> u32 {
    outl(0xCF8, pci_address(dev, func, reg));
    inl(0xCFC)
}

pub fn pci_write32(dev: u8, func: u8, reg: u8, v: u32) {
    outl(0xCF8, pci_address(dev, func, reg));
    outl(0xCFC, v);
}

/// Bus 0 through mechanism #1, for `keel_shim::pci`.
pub struct PciMech1;

impl keel_shim::pci::ConfigAccess for PciMech1 {
    fn read32(&mut self, dev: u8, func: u8, reg: u8) -> u32 {
        pci_read32(dev, func, reg)
    }
    fn write32(&mut self, dev: u8, func: u8, reg: u8, v: u32) {
        pci_write32(dev, func, reg, v)
    }
}

pub fn pci_write8(dev: u8, func: u8, reg: u8, v: u8) {
    outl(0xCF8, pci_address(dev, func, reg));
    outb(0xCFC + u16::from(reg & 3), v);
}

/// Guest-physical memory (identity-mapped) as a byte slice.
///
/// # Safety
/// `[addr, addr + len)` must be RAM the shim owns at this point, not
/// aliased by any live reference.
pub unsafe fn phys(addr: u64, len: usize) -> &'static mut [u8] {
    // SAFETY: the caller's promise; the low 4 GiB are identity-mapped.
    unsafe { core::slice::from_raw_parts_mut(addr as *mut u8, len) }
}

/// Copies `bytes` to guest-physical `addr`, which may be 0 (the IVT), where
/// no Rust reference may point.
///
/// # Safety
/// `[addr, addr + bytes.len())` must be RAM nothing else uses.
pub unsafe fn copy_to_phys(addr: u64, bytes: &[u8]) {
    // SAFETY: the caller's promise; the low 4 GiB are identity-mapped, DF
    // is clear (the entry code's cld, and Rust keeps it so).
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rdi") addr => _,
            inout("rsi") bytes.as_ptr() => _,
            inout("rcx") bytes.len() => _,
            options(nostack, preserves_flags)
        );
    }
}
