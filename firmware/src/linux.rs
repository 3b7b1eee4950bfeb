//! The x86 Linux boot protocol (Documentation/arch/x86/boot.rst): reading a
//! bzImage's setup header, choosing where kernel and initrd go, and filling
//! in the zero page (`struct boot_params`) for the 64-bit entry point.
//!
//! Left out on purpose:
//! - the EFI handover protocol (`XLF_EFI_HANDOVER_32/64`, `handover_offset`):
//!   it hands the kernel an EFI system table, and the shim is a BIOS with no
//!   EFI services; a kernel that has it also has the 64-bit entry, which the
//!   shim uses (the handover bits are ignored, not refused);
//! - the 32-bit entry (`code32_start`): every x86-64 bzImage since protocol
//!   2.12 has the 64-bit one (`XLF_KERNEL_64`), which needs no 32-bit GDT
//!   and paging set-up of the loader's; a kernel without it is refused;
//! - the real-mode entry (the setup code at 0x90000 with int 13h/15h calls):
//!   the shim has no BIOS services (`firmware/README.md`).

use crate::e820::{Entry, Map, ENTRY_LEN, MAX_ENTRIES};
use crate::layout::LOAD_FLOOR;
use crate::le::{put16, put32, put64, u16_at, u32_at, u64_at, u8_at};
use crate::report::Error;

/// Setup header field offsets (in the file and in the zero page alike).
pub mod off {
    pub const SETUP_SECTS: usize = 0x1F1;
    pub const BOOT_FLAG: usize = 0x1FE;
    pub const JUMP: usize = 0x200;
    pub const HEADER: usize = 0x202;
    pub const VERSION: usize = 0x206;
    pub const TYPE_OF_LOADER: usize = 0x210;
    pub const LOADFLAGS: usize = 0x211;
    pub const RAMDISK_IMAGE: usize = 0x218;
    pub const RAMDISK_SIZE: usize = 0x21C;
    pub const HEAP_END_PTR: usize = 0x224;
    pub const CMD_LINE_PTR: usize = 0x228;
    pub const INITRD_ADDR_MAX: usize = 0x22C;
    pub const KERNEL_ALIGNMENT: usize = 0x230;
    pub const RELOCATABLE_KERNEL: usize = 0x234;
    pub const XLOADFLAGS: usize = 0x236;
    pub const CMDLINE_SIZE: usize = 0x238;
    pub const PREF_ADDRESS: usize = 0x258;
    pub const INIT_SIZE: usize = 0x260;
    /// Zero page fields outside the setup header.
    pub const ACPI_RSDP_ADDR: usize = 0x070;
    pub const EXT_RAMDISK_IMAGE: usize = 0x0C0;
    pub const EXT_RAMDISK_SIZE: usize = 0x0C4;
    pub const EXT_CMD_LINE_PTR: usize = 0x0C8;
    pub const E820_ENTRIES: usize = 0x1E8;
    pub const E820_TABLE: usize = 0x2D0;
}

/// "HdrS".
pub const HEADER_MAGIC: u32 = 0x5372_6448;
pub const BOOT_FLAG: u16 = 0xAA55;
/// loadflags: the protected-mode code is loaded at 0x100000 (a bzImage).
pub const LOADED_HIGH: u8 = 1 << 0;
/// loadflags: heap_end_ptr is valid.
pub const CAN_USE_HEAP: u8 = 1 << 7;
/// xloadflags: the kernel has the 64-bit entry point at +0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// type_of_loader for a boot loader without an assigned ID.
pub const LOADER_UNDEFINED: u8 = 0xFF;
/// The 64-bit entry point, from the start of the protected-mode kernel.
pub const ENTRY_64_OFFSET: u64 = 0x200;
/// The zero page size.
pub const BOOT_PARAMS_LEN: usize = 4096;
/// Command line limit of kernels before protocol 2.06 had cmdline_size.
const OLD_CMDLINE_SIZE: u32 = 255;

/// What the loader needs from a setup header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SetupHeader {
    pub setup_sects: u8,
    pub version: u16,
    pub loadflags: u8,
    pub initrd_addr_max: u32,
    pub kernel_alignment: u32,
    pub relocatable: bool,
    pub xloadflags: u16,
    pub cmdline_size: u32,
    pub pref_address: u64,
    pub init_size: u32,
    /// End (file offset) of the setup header: 0x202 plus the jump's byte at 0x201.
    pub header_end: usize,
}

/// Whether `head` (the start of a file) looks like a Linux kernel at all.
pub fn is_linux(head: &[u8]) -> bool {
    u32_at(head, off::HEADER) == HEADER_MAGIC
}

impl SetupHeader {
    /// Reads and checks the header from the first `head.len()` bytes of a
    /// bzImage (at least up to the end of the setup header).
    pub fn parse(head: &[u8]) -> Result<Self, Error> {
        if !is_linux(head) {
            return Err(Error::UnknownKernel);
        }
        if u16_at(head, off::BOOT_FLAG) != BOOT_FLAG {
            return Err(Error::BadKernel("no 0xaa55 boot flag at 0x1fe"));
        }
        let version = u16_at(head, off::VERSION);
        if version < 0x206 {
            return Err(Error::OldBootProtocol { version });
        }
        let header_end = 0x202 + usize::from(u8_at(head, off::JUMP + 1));
        if head.len() < header_end || header_end < off::CMDLINE_SIZE + 4 {
            return Err(Error::BadKernel("the setup header is cut short"));
        }
        let field = |at: usize, len: usize| {
            if at + len <= header_end {
                Some(at)
            } else {
                None
            }
        };
        let h = SetupHeader {
            setup_sects: u8_at(head, off::SETUP_SECTS),
            version,
            loadflags: u8_at(head, off::LOADFLAGS),
            initrd_addr_max: u32_at(head, off::INITRD_ADDR_MAX),
            kernel_alignment: u32_at(head, off::KERNEL_ALIGNMENT),
            relocatable: u8_at(head, off::RELOCATABLE_KERNEL) != 0,
            xloadflags: if version >= 0x20C {
                u16_at(head, off::XLOADFLAGS)
            } else {
                0
            },
            cmdline_size: u32_at(head, off::CMDLINE_SIZE),
            pref_address: field(off::PREF_ADDRESS, 8).map_or(0, |a| u64_at(head, a)),
            init_size: field(off::INIT_SIZE, 4).map_or(0, |a| u32_at(head, a)),
            header_end,
        };
        if h.loadflags & LOADED_HIGH == 0 {
            return Err(Error::NotBzImage64);
        }
        if h.xloadflags & XLF_KERNEL_64 == 0 {
            return Err(Error::NotBzImage64);
        }
        Ok(h)
    }

    /// Bytes of real-mode setup (boot sector included) before the
    /// protected-mode kernel in the file.
    pub fn setup_len(&self) -> usize {
        let sects = if self.setup_sects == 0 {
            4
        } else {
            self.setup_sects
        };
        (usize::from(sects) + 1) * 512
    }

    /// The longest command line the kernel takes, without the NUL.
    pub fn max_cmdline(&self) -> u32 {
        if self.version >= 0x206 {
            self.cmdline_size
        } else {
            OLD_CMDLINE_SIZE
        }
    }

    /// The longest command line the shim passes: the kernel's
    /// `cmdline_size` (boot.rst: "the maximum size of the command line
    /// without the terminating zero"), and at most `buffer - 1` for a buffer
    /// of `buffer` bytes that holds the NUL too.
    pub fn cmdline_limit(&self, buffer: usize) -> usize {
        (self.max_cmdline() as usize).min(buffer.saturating_sub(1))
    }
}

/// Where things go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// Where the protected-mode kernel is loaded; the entry is `+ ENTRY_64_OFFSET`.
    pub kernel: u64,
    /// Bytes from `kernel` the kernel needs (the larger of init_size and its size).
    pub kernel_span: u64,
    /// The initrd's address (0 without one).
    pub initrd: u64,
}

/// Chooses the kernel's and the initrd's addresses in `map` (the guest map).
/// The kernel goes to pref_address when it is relocatable and that fits,
/// else to the lowest aligned address from 1 MiB; the initrd goes as high
/// as initrd_addr_max and RAM allow, above the kernel.
pub fn place(
    h: &SetupHeader,
    kernel_len: u64,
    initrd_len: u64,
    map: &Map,
    avoid: &[(u64, u64)],
) -> Result<Placement, Error> {
    let span = u64::from(h.init_size).max(kernel_len);
    let align = if h.relocatable && h.kernel_alignment.is_power_of_two() {
        u64::from(h.kernel_alignment)
    } else {
        1
    };
    let fits = |at: u64| {
        at.checked_add(span).is_some_and(|end| {
            map.is_ram(at, end) && avoid.iter().all(|&(s, t)| end <= s || t <= at)
        })
    };
    let mut candidates = [LOAD_FLOOR, 0];
    if h.relocatable {
        candidates = [h.pref_address, LOAD_FLOOR.next_multiple_of(align)];
    }
    let kernel = candidates
        .into_iter()
        .find(|&at| at >= LOAD_FLOOR && fits(at))
        .ok_or(Error::TooBig {
            what: "the kernel (with its init_size)",
            len: span,
        })?;
    let mut initrd = 0;
    if initrd_len > 0 {
        let limit = u64::from(h.initrd_addr_max) + 1;
        let mut avoid_all = [(0u64, 0u64); 9];
        avoid_all[0] = (kernel, kernel + span);
        let n = avoid.len().min(8);
        avoid_all[1..1 + n].copy_from_slice(&avoid[..n]);
        initrd = map
            .highest_fit(initrd_len, 0x1000, LOAD_FLOOR, limit, &avoid_all[..1 + n])
            .ok_or(Error::TooBig {
                what: "the initrd",
                len: initrd_len,
            })?;
    }
    Ok(Placement {
        kernel,
        kernel_span: span,
        initrd,
    })
}

/// What goes into the zero page besides the setup header.
#[derive(Clone, Copy, Debug)]
pub struct BootInfo<'a> {
    pub cmdline: u64,
    pub initrd: u64,
    pub initrd_len: u64,
    pub rsdp: Option<u64>,
    pub e820: &'a [Entry],
}

/// Fills `bp` (the zero page): zeros, the setup header copied from `head`,
/// then the loader's fields.
pub fn build_boot_params(
    bp: &mut [u8; BOOT_PARAMS_LEN],
    head: &[u8],
    h: &SetupHeader,
    info: &BootInfo,
) -> Result<(), Error> {
    bp.fill(0);
    bp[off::SETUP_SECTS..h.header_end].copy_from_slice(&head[off::SETUP_SECTS..h.header_end]);
    bp[off::TYPE_OF_LOADER] = LOADER_UNDEFINED;
    // No real-mode code runs, so there is no heap; say so.
    bp[off::LOADFLAGS] &= !CAN_USE_HEAP;
    put16(bp, off::HEAP_END_PTR, 0);
    put32(bp, off::CMD_LINE_PTR, info.cmdline as u32);
    put32(bp, off::EXT_CMD_LINE_PTR, (info.cmdline >> 32) as u32);
    put32(bp, off::RAMDISK_IMAGE, info.initrd as u32);
    put32(bp, off::EXT_RAMDISK_IMAGE, (info.initrd >> 32) as u32);
    put32(bp, off::RAMDISK_SIZE, info.initrd_len as u32);
    put32(bp, off::EXT_RAMDISK_SIZE, (info.initrd_len >> 32) as u32);
    put64(bp, off::ACPI_RSDP_ADDR, info.rsdp.unwrap_or(0));
    if info.e820.len() > MAX_ENTRIES {
        return Err(Error::TooManyE820);
    }
    bp[off::E820_ENTRIES] = info.e820.len() as u8;
    for (i, e) in info.e820.iter().enumerate() {
        let at = off::E820_TABLE + i * ENTRY_LEN;
        bp[at..at + ENTRY_LEN].copy_from_slice(&e.to_bytes());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::{guest_map, RAM};
    use crate::report::tests::text;
    use alloc::vec;
    use alloc::vec::Vec;

    const MIB: u64 = 1 << 20;

    /// The head of a bzImage like Debian's 6.1: protocol 2.15, relocatable,
    /// 64-bit, pref_address 16 MiB.
    fn bzimage_head() -> Vec<u8> {
        let mut f = vec![0u8; 0x4000];
        f[off::SETUP_SECTS] = 27;
        put16(&mut f, off::BOOT_FLAG, 0xAA55);
        f[off::JUMP] = 0xEB;
        f[off::JUMP + 1] = 0x6A; // header ends at 0x26C
        put32(&mut f, off::HEADER, HEADER_MAGIC);
        put16(&mut f, off::VERSION, 0x20F);
        f[off::LOADFLAGS] = LOADED_HIGH | CAN_USE_HEAP;
        put32(&mut f, off::INITRD_ADDR_MAX, 0x7FFF_FFFF);
        put32(&mut f, off::KERNEL_ALIGNMENT, 0x20_0000);
        f[off::RELOCATABLE_KERNEL] = 1;
        put16(&mut f, off::XLOADFLAGS, 0x7F);
        put32(&mut f, off::CMDLINE_SIZE, 2047);
        put64(&mut f, off::PREF_ADDRESS, 0x100_0000);
        put32(&mut f, off::INIT_SIZE, 0x2C0_0000);
        f[0x26C] = 0x99; // past the header: must not be copied
        f
    }

    fn map(mib: u64) -> Map {
        let fw: Vec<u8> = Entry {
            addr: 0,
            len: mib * MIB,
            kind: RAM,
        }
        .to_bytes()
        .to_vec();
        guest_map(&Map::from_fw_cfg(&fw).unwrap(), &[]).unwrap()
    }

    #[test]
    fn debian_like_header_parses() {
        let h = SetupHeader::parse(&bzimage_head()).unwrap();
        assert_eq!(h.version, 0x20F);
        assert_eq!(h.setup_len(), 28 * 512);
        assert_eq!(h.header_end, 0x26C);
        assert_eq!(h.pref_address, 0x100_0000);
        assert_eq!(h.init_size, 0x2C0_0000);
        assert_eq!(h.max_cmdline(), 2047);
        assert!(h.relocatable);
    }

    #[test]
    fn bad_headers_are_refused_with_reasons() {
        let mut f = bzimage_head();
        put16(&mut f, off::VERSION, 0x205);
        let e = SetupHeader::parse(&f).unwrap_err();
        assert_eq!(e, Error::OldBootProtocol { version: 0x205 });
        assert!(text(e).contains("2.05"));
        let mut f = bzimage_head();
        put16(&mut f, off::XLOADFLAGS, 0);
        assert_eq!(SetupHeader::parse(&f), Err(Error::NotBzImage64));
        let mut f = bzimage_head();
        f[off::LOADFLAGS] = 0;
        assert_eq!(SetupHeader::parse(&f), Err(Error::NotBzImage64));
        let mut f = bzimage_head();
        f[off::HEADER] = b'X';
        assert_eq!(SetupHeader::parse(&f), Err(Error::UnknownKernel));
        let f = bzimage_head();
        assert!(SetupHeader::parse(&f[..0x250]).is_err());
        let mut f = bzimage_head();
        f[off::SETUP_SECTS] = 0;
        assert_eq!(SetupHeader::parse(&f).unwrap().setup_len(), 5 * 512);
    }

    #[test]
    fn kernel_at_pref_address_and_initrd_on_top() {
        let h = SetupHeader::parse(&bzimage_head()).unwrap();
        let p = place(&h, 8 * MIB, 3 * MIB + 5, &map(256), &[]).unwrap();
        assert_eq!(p.kernel, 0x100_0000);
        assert_eq!(p.kernel_span, 0x2C0_0000);
        assert_eq!(p.initrd, (256 * MIB - 3 * MIB - 5) & !0xFFF);
        // Tables at the top of RAM push the initrd down.
        let p2 = place(&h, 8 * MIB, MIB, &map(256), &[(255 * MIB, 256 * MIB)]).unwrap();
        assert_eq!(p2.initrd, 254 * MIB);
    }

    #[test]
    fn small_ram_moves_the_kernel_down_or_refuses() {
        let h = SetupHeader::parse(&bzimage_head()).unwrap();
        // 48 MiB: 16 MiB + 44 MiB does not fit, 2 MiB + 44 MiB does.
        let p = place(&h, 8 * MIB, 0, &map(48), &[]).unwrap();
        assert_eq!(p.kernel, 2 * MIB);
        assert_eq!(p.initrd, 0);
        let e = place(&h, 8 * MIB, 0, &map(32), &[]).unwrap_err();
        assert!(matches!(e, Error::TooBig { .. }), "{e:?}");
        let e = place(&h, 8 * MIB, 8 * MIB, &map(52), &[]).unwrap_err();
        assert_eq!(
            e,
            Error::TooBig {
                what: "the initrd",
                len: 8 * MIB
            }
        );
    }

    #[test]
    fn initrd_respects_initrd_addr_max() {
        let mut f = bzimage_head();
        put32(&mut f, off::INITRD_ADDR_MAX, 0x37FF_FFFF);
        let h = SetupHeader::parse(&f).unwrap();
        let p = place(&h, 8 * MIB, MIB, &map(2048), &[]).unwrap();
        assert_eq!(p.initrd, 0x3800_0000 - MIB);
    }

    /// boot.rst, `kernel_alignment` / `relocatable_kernel`: a relocatable
    /// kernel whose pref_address does not fit goes to an address aligned to
    /// its kernel_alignment; a kernel that is not relocatable goes to 1 MiB,
    /// its pref_address (where it moves itself) notwithstanding.
    #[test]
    fn kernel_alignment_and_relocatable_kernels() {
        let mut f = bzimage_head();
        put32(&mut f, off::KERNEL_ALIGNMENT, 4 * MIB as u32);
        let h = SetupHeader::parse(&f).unwrap();
        // 16 MiB + 44 MiB does not fit in 56 MiB; 4 MiB + 44 MiB does.
        let p = place(&h, 8 * MIB, 0, &map(56), &[]).unwrap();
        assert_eq!(p.kernel, 4 * MIB);
        assert_eq!(p.kernel % u64::from(h.kernel_alignment), 0);
        // A pref_address that fits wins.
        assert_eq!(
            place(&h, 8 * MIB, 0, &map(256), &[]).unwrap().kernel,
            16 * MIB
        );
        // Not relocatable: 1 MiB, in any RAM size.
        let mut f = bzimage_head();
        f[off::RELOCATABLE_KERNEL] = 0;
        let h = SetupHeader::parse(&f).unwrap();
        assert!(!h.relocatable);
        for ram in [48, 256] {
            assert_eq!(place(&h, 8 * MIB, 0, &map(ram), &[]).unwrap().kernel, MIB);
        }
        // Not relocatable and init_size past RAM from 1 MiB: refused.
        assert!(matches!(
            place(&h, 8 * MIB, 0, &map(44), &[]),
            Err(Error::TooBig { .. })
        ));
    }

    /// boot.rst, `initrd_addr_max`: "the highest address that may be
    /// occupied by the initial ramdisk"; the initrd goes below it even when
    /// that puts it under the kernel, and never over the kernel's init_size.
    #[test]
    fn initrd_under_initrd_addr_max_below_the_kernel() {
        let mut f = bzimage_head();
        put32(&mut f, off::INITRD_ADDR_MAX, 16 * MIB as u32 - 1);
        let h = SetupHeader::parse(&f).unwrap();
        let p = place(&h, 8 * MIB, 3 * MIB + 1, &map(256), &[]).unwrap();
        assert_eq!(p.kernel, 16 * MIB);
        assert!(p.initrd + 3 * MIB < u64::from(h.initrd_addr_max) + 1);
        assert_eq!(p.initrd % 0x1000, 0);
        assert!(p.initrd >= LOAD_FLOOR);
        // Too big for the room under initrd_addr_max: refused, not placed
        // over the limit.
        let e = place(&h, 8 * MIB, 15 * MIB + 1, &map(256), &[]).unwrap_err();
        assert!(
            matches!(
                e,
                Error::TooBig {
                    what: "the initrd",
                    ..
                }
            ),
            "{e:?}"
        );
    }

    /// boot.rst, `cmdline_size` (2.06+): the command line without its NUL
    /// is at most this; the shim's 8 KiB buffer caps a larger one.
    #[test]
    fn command_line_limit_from_cmdline_size() {
        let h = SetupHeader::parse(&bzimage_head()).unwrap();
        assert_eq!(h.cmdline_limit(0x2000), 2047);
        let mut f = bzimage_head();
        put32(&mut f, off::CMDLINE_SIZE, 0x7FFF_FFFF);
        let h = SetupHeader::parse(&f).unwrap();
        assert_eq!(h.cmdline_limit(0x2000), 0x1FFF);
        put32(&mut f, off::CMDLINE_SIZE, 0);
        assert_eq!(SetupHeader::parse(&f).unwrap().cmdline_limit(0x2000), 0);
    }

    /// EFI handover is left out on purpose (the module's doc): a kernel
    /// that offers it (xloadflags bits 2-3, handover_offset) boots by its
    /// 64-bit entry; one with only the handover and no 64-bit entry is
    /// refused.
    #[test]
    fn efi_handover_is_ignored_and_the_64_bit_entry_used() {
        let mut f = bzimage_head();
        put16(&mut f, off::XLOADFLAGS, XLF_KERNEL_64 | 1 << 2 | 1 << 3);
        put32(&mut f, 0x264, 0x190); // handover_offset
        assert!(SetupHeader::parse(&f).is_ok());
        assert_eq!(ENTRY_64_OFFSET, 0x200);
        put16(&mut f, off::XLOADFLAGS, 1 << 2 | 1 << 3);
        assert_eq!(SetupHeader::parse(&f), Err(Error::NotBzImage64));
    }

    #[test]
    fn zero_page_has_header_and_loader_fields() {
        let head = bzimage_head();
        let h = SetupHeader::parse(&head).unwrap();
        let m = map(256);
        let mut bp = [0xAAu8; BOOT_PARAMS_LEN];
        let info = BootInfo {
            cmdline: 0x5A000,
            initrd: 0xFC00000,
            initrd_len: 0x123456,
            rsdp: Some(0xE0000),
            e820: m.entries(),
        };
        build_boot_params(&mut bp, &head, &h, &info).unwrap();
        assert_eq!(u32_at(&bp, off::HEADER), HEADER_MAGIC);
        assert_eq!(u16_at(&bp, off::VERSION), 0x20F);
        assert_eq!(bp[off::SETUP_SECTS], 27);
        assert_eq!(bp[off::TYPE_OF_LOADER], 0xFF);
        assert_eq!(bp[off::LOADFLAGS], LOADED_HIGH);
        assert_eq!(u32_at(&bp, off::CMD_LINE_PTR), 0x5A000);
        assert_eq!(u32_at(&bp, off::RAMDISK_IMAGE), 0xFC00000);
        assert_eq!(u32_at(&bp, off::RAMDISK_SIZE), 0x123456);
        assert_eq!(u64_at(&bp, off::ACPI_RSDP_ADDR), 0xE0000);
        assert_eq!(u64_at(&bp, off::PREF_ADDRESS), 0x100_0000);
        assert_eq!(bp[0x26C], 0, "bytes past the header stay zero");
        assert_eq!(usize::from(bp[off::E820_ENTRIES]), m.entries().len());
        let second = Entry::from_bytes(
            bp[off::E820_TABLE + 20..off::E820_TABLE + 40]
                .try_into()
                .unwrap(),
        );
        assert_eq!(second, m.entries()[1]);
        assert_eq!(bp[0x100], 0, "the rest of the zero page is zeroed");
    }
}
