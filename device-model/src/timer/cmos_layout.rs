//! The CMOS NVRAM bytes PC firmware reads at boot, filled from the VM's shape.
//!
//! The layout is the IBM PC/AT's (AT Technical Reference, "CMOS RAM address
//! map") with the extensions QEMU's `pc` machine writes and SeaBIOS reads
//! (QEMU `pc_cmos_init` and `set_boot_dev`; SeaBIOS `src/hw/rtc.h` and its
//! RAM sizing when fw_cfg gives no e820 map). Keel mirrors QEMU's values so
//! firmware built for QEMU sizes memory the same way here.

/// A device firmware may boot from (QEMU's codes in 0x3D/0x38).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BootDevice {
    Floppy = 1,
    HardDisk = 2,
    Cdrom = 3,
    Network = 4,
}

/// Splits `ram` bytes around the PCI hole as QEMU's i440FX machine does:
/// RAM of 3.5 GiB (0xE0000000) or more keeps 3 GiB below 4 GiB and puts the
/// rest above 4 GiB (the `gigabyte_align` rule); smaller RAM all sits below.
/// Returns `(below_4g, above_4g)` in bytes. The PCI host bridge must place
/// its hole at `below_4g` for firmware and this table to agree.
pub fn pc_memory_split(ram: u64) -> (u64, u64) {
    const LOWMEM_LIMIT: u64 = 0xE000_0000;
    const LOWMEM_ALIGNED: u64 = 0xC000_0000;
    if ram >= LOWMEM_LIMIT {
        (LOWMEM_ALIGNED, ram - LOWMEM_ALIGNED)
    } else {
        (ram, 0)
    }
}

/// CMOS addresses (AT map; QEMU extensions marked).
mod addr {
    /// Shutdown status: why the CPU was last reset (0 = power-on / soft reset).
    pub const SHUTDOWN_STATUS: usize = 0x0F;
    /// Diskette drive types, high nibble drive A, low nibble B (0 = none).
    pub const FLOPPY_TYPES: usize = 0x10;
    /// Equipment byte, same format as BIOS data area 0x410.
    pub const EQUIPMENT: usize = 0x14;
    /// Base memory in KiB, low/high.
    pub const BASE_MEM_LO: usize = 0x15;
    pub const BASE_MEM_HI: usize = 0x16;
    /// Extended memory above 1 MiB in KiB, low/high (capped at 65535).
    pub const EXT_MEM_LO: usize = 0x17;
    pub const EXT_MEM_HI: usize = 0x18;
    /// Checksum of 0x10-0x2D, high byte then low byte.
    pub const CHECKSUM_HI: usize = 0x2E;
    pub const CHECKSUM_LO: usize = 0x2F;
    /// Extended memory again, as found by the POST memory test.
    pub const ACTUAL_EXT_MEM_LO: usize = 0x30;
    pub const ACTUAL_EXT_MEM_HI: usize = 0x31;
    /// QEMU: memory above 16 MiB (below 4 GiB) in 64 KiB units, low/high.
    pub const MEM_ABOVE_16M_LO: usize = 0x34;
    pub const MEM_ABOVE_16M_HI: usize = 0x35;
    /// QEMU: third boot device (bits 7:4); bit 0 set = skip the floppy
    /// boot-signature check.
    pub const BOOT_FLAG_1: usize = 0x38;
    /// QEMU: first (bits 3:0) and second (bits 7:4) boot devices.
    pub const BOOT_FLAG_2: usize = 0x3D;
    /// QEMU: memory above 4 GiB in 64 KiB units, 24 bits little endian.
    pub const MEM_ABOVE_4G: usize = 0x5B;
    /// QEMU: number of CPUs minus one.
    pub const CPU_COUNT_MINUS_1: usize = 0x5F;
}

const KIB: u64 = 1024;
const MIB: u64 = 1024 * KIB;

/// The 128 CMOS bytes at power-on, before the clock registers are laid over
/// them by [`Rtc`](super::Rtc).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CmosLayout {
    bytes: [u8; 128],
}

impl CmosLayout {
    /// The bytes for a PC with `ram` bytes of memory, `cpus` CPUs, no
    /// floppy, and `boot_order` (at most three devices are recorded).
    pub fn pc(ram: u64, cpus: u32, boot_order: &[BootDevice]) -> Self {
        let mut b = [0u8; 128];
        let (below_4g, above_4g) = pc_memory_split(ram);

        b[addr::SHUTDOWN_STATUS] = 0;
        b[addr::FLOPPY_TYPES] = 0;
        // Bit 1: maths coprocessor present; bit 2: PS/2 mouse present;
        // bits 5:4 = 00: EGA/VGA display; bit 0 clear: no diskette drives.
        b[addr::EQUIPMENT] = 0x06;

        let base_kib: u16 = 640;
        [b[addr::BASE_MEM_LO], b[addr::BASE_MEM_HI]] = base_kib.to_le_bytes();

        let ext_kib = (below_4g / KIB).saturating_sub(1024).min(0xFFFF) as u16;
        [b[addr::EXT_MEM_LO], b[addr::EXT_MEM_HI]] = ext_kib.to_le_bytes();
        [b[addr::ACTUAL_EXT_MEM_LO], b[addr::ACTUAL_EXT_MEM_HI]] = ext_kib.to_le_bytes();

        let above_16m = (below_4g.saturating_sub(16 * MIB) / (64 * KIB)).min(0xFFFF) as u16;
        [b[addr::MEM_ABOVE_16M_LO], b[addr::MEM_ABOVE_16M_HI]] = above_16m.to_le_bytes();

        let above_4g_units = (above_4g / (64 * KIB)).min(0xFF_FFFF) as u32;
        b[addr::MEM_ABOVE_4G..addr::MEM_ABOVE_4G + 3]
            .copy_from_slice(&above_4g_units.to_le_bytes()[..3]);

        b[addr::CPU_COUNT_MINUS_1] = cpus.saturating_sub(1).min(0xFF) as u8;

        let dev = |i: usize| boot_order.get(i).map_or(0, |&d| d as u8);
        b[addr::BOOT_FLAG_2] = dev(0) | dev(1) << 4;
        b[addr::BOOT_FLAG_1] = dev(2) << 4;

        let sum: u16 = b[0x10..=0x2D].iter().map(|&x| u16::from(x)).sum();
        [b[addr::CHECKSUM_HI], b[addr::CHECKSUM_LO]] = sum.to_be_bytes();
        CmosLayout { bytes: b }
    }

    /// All 128 bytes.
    pub fn bytes(&self) -> &[u8; 128] {
        &self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1024 * MIB;

    fn u16_at(b: &[u8; 128], lo: usize) -> u16 {
        u16::from_le_bytes([b[lo], b[lo + 1]])
    }

    fn above_4g(b: &[u8; 128]) -> u32 {
        u32::from_le_bytes([b[0x5B], b[0x5C], b[0x5D], 0])
    }

    fn checksum_ok(b: &[u8; 128]) {
        let sum: u16 = b[0x10..=0x2D].iter().map(|&x| u16::from(x)).sum();
        assert_eq!(u16::from_be_bytes([b[0x2E], b[0x2F]]), sum);
    }

    #[test]
    fn memory_bytes_for_64_mib() {
        let l = CmosLayout::pc(64 * MIB, 1, &[BootDevice::HardDisk]);
        let b = l.bytes();
        assert_eq!(u16_at(b, 0x15), 640);
        assert_eq!(u16_at(b, 0x17), 63 * 1024);
        assert_eq!(u16_at(b, 0x30), 63 * 1024);
        assert_eq!(u16_at(b, 0x34), 768, "48 MiB above 16 MiB");
        assert_eq!(above_4g(b), 0);
        assert_eq!(b[0x5F], 0);
        checksum_ok(b);
    }

    #[test]
    fn memory_bytes_for_512_mib() {
        let b = *CmosLayout::pc(512 * MIB, 2, &[]).bytes();
        assert_eq!(u16_at(&b, 0x17), 0xFFFF, "capped");
        assert_eq!(u16_at(&b, 0x30), 0xFFFF);
        assert_eq!(u16_at(&b, 0x34), 496 * 16);
        assert_eq!(above_4g(&b), 0);
        assert_eq!(b[0x5F], 1);
        checksum_ok(&b);
    }

    #[test]
    fn memory_bytes_for_3_5_gib_split_at_3_gib() {
        assert_eq!(pc_memory_split(3 * GIB + 512 * MIB), (3 * GIB, 512 * MIB));
        let b = *CmosLayout::pc(3 * GIB + 512 * MIB, 4, &[]).bytes();
        assert_eq!(u16_at(&b, 0x17), 0xFFFF);
        assert_eq!(u16_at(&b, 0x34), (3 * 1024 - 16) * 16);
        assert_eq!(above_4g(&b), 512 * 16);
        assert_eq!([b[0x5B], b[0x5C], b[0x5D]], [0x00, 0x20, 0x00]);
        assert_eq!(b[0x5F], 3);
    }

    #[test]
    fn memory_bytes_for_6_gib() {
        let b = *CmosLayout::pc(6 * GIB, 8, &[]).bytes();
        assert_eq!(u16_at(&b, 0x34), 0xBF00);
        assert_eq!(above_4g(&b), 3 * 1024 * 16);
        assert_eq!([b[0x5B], b[0x5C], b[0x5D]], [0x00, 0xC0, 0x00]);
        assert_eq!(b[0x5F], 7);
    }

    #[test]
    fn just_under_3_5_gib_stays_below_4_gib() {
        assert_eq!(pc_memory_split(0xDFF0_0000), (0xDFF0_0000, 0));
        let b = *CmosLayout::pc(0xDFF0_0000, 1, &[]).bytes();
        assert_eq!(
            u16_at(&b, 0x34),
            ((0xDFF0_0000 - 16 * MIB) / (64 * KIB)) as u16
        );
    }

    #[test]
    fn fixed_bytes_and_boot_order() {
        let b = *CmosLayout::pc(
            64 * MIB,
            0,
            &[
                BootDevice::Cdrom,
                BootDevice::HardDisk,
                BootDevice::Network,
                BootDevice::Floppy,
            ],
        )
        .bytes();
        assert_eq!(b[0x0F], 0);
        assert_eq!(b[0x10], 0);
        assert_eq!(b[0x14], 0x06);
        assert_eq!(b[0x3D], 0x23);
        assert_eq!(b[0x38], 0x40);
        assert_eq!(b[0x5F], 0, "zero CPUs saturates");
        let tiny = *CmosLayout::pc(512 * KIB, 1, &[]).bytes();
        assert_eq!((u16_at(&tiny, 0x17), u16_at(&tiny, 0x34)), (0, 0));
    }
}
