//! Multiboot v1 (Multiboot Specification 0.6.96): the header in a kernel's
//! first 8 KiB, its loading (ELF32 program headers, or the header's a.out
//! kludge address fields), and the information block handed to it.

use crate::e820::{Entry, Map, RAM};
use crate::le::{put16, put32, put64, u16_at, u32_at, u8_at};
use crate::report::Error;

/// The header's magic.
pub const HEADER_MAGIC: u32 = 0x1BAD_B002;
/// What the loader puts in EAX.
pub const BOOTLOADER_MAGIC: u32 = 0x2BAD_B002;
/// The header must lie, 4-aligned, in this many first bytes.
pub const SEARCH_LEN: usize = 8192;

/// Header flags.
pub const PAGE_ALIGN: u32 = 1 << 0;
pub const MEMORY_INFO: u32 = 1 << 1;
pub const VIDEO_MODE: u32 = 1 << 2;
pub const AOUT_KLUDGE: u32 = 1 << 16;
/// Requirement bits (0-15) the shim honours.
const SUPPORTED_REQUIREMENTS: u32 = PAGE_ALIGN | MEMORY_INFO | VIDEO_MODE;

/// Info flags.
pub mod info {
    pub const MEMORY: u32 = 1 << 0;
    pub const BOOT_DEVICE: u32 = 1 << 1;
    pub const CMDLINE: u32 = 1 << 2;
    pub const MODS: u32 = 1 << 3;
    pub const MMAP: u32 = 1 << 6;
    pub const LOADER_NAME: u32 = 1 << 9;
    pub const VBE: u32 = 1 << 11;
    pub const FRAMEBUFFER: u32 = 1 << 12;
}

/// The video mode a header asks for (header flag 2, offsets 32-47):
/// `mode_type` 0 a linear graphics mode, 1 EGA text; 0 in width, height
/// or depth means no preference.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoRequest {
    pub mode_type: u32,
    pub width: u32,
    pub height: u32,
    pub depth: u32,
}

/// The mode the shim sets for a [`VideoRequest`] on the Bochs VBE
/// interface of QEMU's standard VGA.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoMode {
    /// The VGA's 80x25 text mode at 0xB8000 (framebuffer type 2).
    EgaText,
    /// A direct-colour linear framebuffer mode (framebuffer type 1).
    Linear { width: u16, height: u16, bpp: u8 },
}

/// The VESA mode numbers (VBE 3.0, "Mode Numbers", the VESA-defined
/// table) of the resolutions the shim offers, for 8/15/16/24-bit colour;
/// a 32 bpp mode shares the 24-bit ("16.8M colors") number.
const VESA_MODES: [(u16, u16, [u16; 4]); 4] = [
    (640, 480, [0x101, 0x110, 0x111, 0x112]),
    (800, 600, [0x103, 0x113, 0x114, 0x115]),
    (1024, 768, [0x105, 0x116, 0x117, 0x118]),
    (1280, 1024, [0x107, 0x119, 0x11A, 0x11B]),
];

impl VideoRequest {
    /// The mode the shim sets: EGA text for `mode_type` 1; otherwise the
    /// requested resolution when it is one of [`VESA_MODES`] (else
    /// 1024x768) at the requested depth when it is 15, 16, 24 or 32 (else
    /// 32). 8 bpp (an indexed mode with a palette) is not offered: the
    /// specification lets a loader set another mode than the one asked for.
    pub fn mode(&self) -> VideoMode {
        if self.mode_type == 1 {
            return VideoMode::EgaText;
        }
        let (width, height) = VESA_MODES
            .iter()
            .find(|m| u32::from(m.0) == self.width && u32::from(m.1) == self.height)
            .map_or((1024, 768), |m| (m.0, m.1));
        let bpp = match self.depth {
            15 | 16 | 24 | 32 => self.depth as u8,
            _ => 32,
        };
        VideoMode::Linear { width, height, bpp }
    }
}

impl VideoMode {
    /// The VESA mode number (EGA text: mode 3).
    pub fn vesa_number(&self) -> u16 {
        match *self {
            VideoMode::EgaText => 3,
            VideoMode::Linear { width, height, bpp } => {
                let col = match bpp {
                    15 => 1,
                    16 => 2,
                    _ => 3,
                };
                VESA_MODES
                    .iter()
                    .find(|m| (m.0, m.1) == (width, height))
                    .map_or(0x118, |m| m.2[col])
            }
        }
    }

    /// Bytes per scan line.
    pub fn pitch(&self) -> u32 {
        match *self {
            VideoMode::EgaText => 160,
            VideoMode::Linear { width, bpp, .. } => u32::from(width) * u32::from(bpp).div_ceil(8),
        }
    }

    /// The red, green and blue (field position, mask size) of a direct
    /// colour pixel (VBE 3.0 ModeInfoBlock, Direct Color fields).
    pub fn rgb_fields(&self) -> [(u8, u8); 3] {
        match *self {
            VideoMode::Linear { bpp: 15, .. } => [(10, 5), (5, 5), (0, 5)],
            VideoMode::Linear { bpp: 16, .. } => [(11, 5), (5, 6), (0, 5)],
            _ => [(16, 8), (8, 8), (0, 8)],
        }
    }
}

/// The a.out kludge fields (header offsets 12-31).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AoutKludge {
    pub header_addr: u32,
    pub load_addr: u32,
    pub load_end_addr: u32,
    pub bss_end_addr: u32,
    pub entry_addr: u32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// File offset of the header.
    pub offset: usize,
    pub flags: u32,
    pub aout: Option<AoutKludge>,
    /// The video mode asked for (header flag 2).
    pub video: Option<VideoRequest>,
}

/// Finds the header in the first 8 KiB of `image`: `None` if there is no
/// magic with a valid checksum, an error if it asks for what the shim lacks.
pub fn find_header(image: &[u8]) -> Option<Result<Header, Error>> {
    let end = image.len().min(SEARCH_LEN);
    let offset = (0..end.saturating_sub(11)).step_by(4).find(|&o| {
        let (m, f, c) = (u32_at(image, o), u32_at(image, o + 4), u32_at(image, o + 8));
        m == HEADER_MAGIC && m.wrapping_add(f).wrapping_add(c) == 0
    })?;
    let flags = u32_at(image, offset + 4);
    if flags & 0xFFFF & !SUPPORTED_REQUIREMENTS != 0 {
        return Some(Err(Error::MultibootUnsupported { flags }));
    }
    let aout = if flags & AOUT_KLUDGE != 0 {
        if offset + 32 > image.len() {
            return Some(Err(Error::BadKernel("the multiboot header is cut short")));
        }
        Some(AoutKludge {
            header_addr: u32_at(image, offset + 12),
            load_addr: u32_at(image, offset + 16),
            load_end_addr: u32_at(image, offset + 20),
            bss_end_addr: u32_at(image, offset + 24),
            entry_addr: u32_at(image, offset + 28),
        })
    } else {
        None
    };
    let video = if flags & VIDEO_MODE != 0 {
        if offset + 48 > image.len() {
            return Some(Err(Error::BadKernel("the multiboot header is cut short")));
        }
        Some(VideoRequest {
            mode_type: u32_at(image, offset + 32),
            width: u32_at(image, offset + 36),
            height: u32_at(image, offset + 40),
            depth: u32_at(image, offset + 44),
        })
    } else {
        None
    };
    Some(Ok(Header {
        offset,
        flags,
        video,
        aout,
    }))
}

/// One piece to load: `filesz` bytes from the file, then zeros up to `memsz`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Segment {
    pub file_offset: u32,
    pub paddr: u32,
    pub filesz: u32,
    pub memsz: u32,
}

impl Segment {
    pub fn end(&self) -> u64 {
        u64::from(self.paddr) + u64::from(self.memsz)
    }
}

pub const MAX_SEGMENTS: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LoadPlan {
    pub segments: [Segment; MAX_SEGMENTS],
    pub count: usize,
    pub entry: u32,
}

impl LoadPlan {
    pub fn segments(&self) -> &[Segment] {
        &self.segments[..self.count]
    }

    /// The end of the highest segment.
    pub fn end(&self) -> u64 {
        self.segments().iter().map(Segment::end).max().unwrap_or(0)
    }
}

const ELF_MAGIC: [u8; 4] = *b"\x7fELF";
const ELFCLASS32: u8 = 1;
const ELFCLASS64: u8 = 2;
const ELFDATA2LSB: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_386: u16 = 3;
const EM_X86_64: u16 = 62;
const PT_LOAD: u32 = 1;

/// The fields of an ELF class (System V gABI, "ELF Header" and "Program
/// Header"): offsets of e_entry, e_phoff, e_phentsize, e_phnum and of each
/// program header's p_offset, p_vaddr, p_paddr, p_filesz, p_memsz.
struct ElfClass {
    ehdr_len: usize,
    machine: u16,
    word: usize,
    entry: usize,
    phoff: usize,
    phentsize: usize,
    phnum: usize,
    phdr_len: usize,
    p_offset: usize,
    p_vaddr: usize,
    p_paddr: usize,
    p_filesz: usize,
    p_memsz: usize,
}

const ELF32: ElfClass = ElfClass {
    ehdr_len: 52,
    machine: EM_386,
    word: 4,
    entry: 24,
    phoff: 28,
    phentsize: 42,
    phnum: 44,
    phdr_len: 32,
    p_offset: 4,
    p_vaddr: 8,
    p_paddr: 12,
    p_filesz: 16,
    p_memsz: 20,
};

const ELF64: ElfClass = ElfClass {
    ehdr_len: 64,
    machine: EM_X86_64,
    word: 8,
    entry: 24,
    phoff: 32,
    phentsize: 54,
    phnum: 56,
    phdr_len: 56,
    p_offset: 8,
    p_vaddr: 16,
    p_paddr: 24,
    p_filesz: 32,
    p_memsz: 40,
};

impl ElfClass {
    fn word(&self, b: &[u8], at: usize) -> u64 {
        if self.word == 8 {
            crate::le::u64_at(b, at)
        } else {
            u64::from(u32_at(b, at))
        }
    }
}

/// Which loader path a kernel takes (for the shim's log line).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Elf32,
    Elf64,
    AoutKludge,
}

impl Format {
    pub fn name(self) -> &'static str {
        match self {
            Format::Elf32 => "ELF32",
            Format::Elf64 => "ELF64",
            Format::AoutKludge => "a.out kludge",
        }
    }
}

/// What to load from `image` (the whole kernel file) and where to enter it.
///
/// As GRUB does (Multiboot Specification 0.6.96, 3.1.3 and 3.2): with flag
/// bit 16 the header's address fields decide, whatever the file format;
/// otherwise the file must be an ELF executable, 32-bit (i386) or 64-bit
/// (x86-64) whose segments and entry lie below 4 GiB, loaded at the
/// segments' physical addresses.
pub fn load_plan(image: &[u8], h: &Header) -> Result<(LoadPlan, Format), Error> {
    let mut plan = LoadPlan {
        segments: [Segment::default(); MAX_SEGMENTS],
        count: 0,
        entry: 0,
    };
    if let Some(a) = h.aout {
        if a.header_addr < a.load_addr || (a.header_addr - a.load_addr) as usize > h.offset {
            return Err(Error::BadKernel(
                "a.out kludge: header_addr below load_addr or before the file",
            ));
        }
        let file_offset = h.offset - (a.header_addr - a.load_addr) as usize;
        let filesz = if a.load_end_addr == 0 {
            u32::try_from(image.len() - file_offset)
                .map_err(|_| Error::BadKernel("a.out kludge: the file is over 4 GiB"))?
        } else {
            a.load_end_addr
                .checked_sub(a.load_addr)
                .ok_or(Error::BadKernel(
                    "a.out kludge: load_end_addr below load_addr",
                ))?
        };
        if file_offset as u64 + u64::from(filesz) > image.len() as u64 {
            return Err(Error::BadKernel(
                "a.out kludge: load_end_addr past the file",
            ));
        }
        let memsz = if a.bss_end_addr == 0 {
            filesz
        } else {
            a.bss_end_addr
                .checked_sub(a.load_addr)
                .filter(|&m| m >= filesz)
                .ok_or(Error::BadKernel(
                    "a.out kludge: bss_end_addr below load_end_addr",
                ))?
        };
        let s = Segment {
            file_offset: file_offset as u32,
            paddr: a.load_addr,
            filesz,
            memsz,
        };
        if s.end() > 1 << 32 {
            return Err(Error::BadKernel("a.out kludge: bss_end_addr above 4 GiB"));
        }
        plan.segments[0] = s;
        plan.count = 1;
        plan.entry = a.entry_addr;
        return Ok((plan, Format::AoutKludge));
    }
    if image.len() < 16 || image[0..4] != ELF_MAGIC {
        return Err(Error::BadKernel(
            "multiboot kernel is not ELF and has no a.out kludge (flag 16)",
        ));
    }
    let (c, format) = match u8_at(image, 4) {
        ELFCLASS32 => (&ELF32, Format::Elf32),
        ELFCLASS64 => (&ELF64, Format::Elf64),
        _ => return Err(Error::BadKernel("the ELF class is neither 32- nor 64-bit")),
    };
    if image.len() < c.ehdr_len {
        return Err(Error::BadKernel("the ELF header is cut short"));
    }
    if u8_at(image, 5) != ELFDATA2LSB {
        return Err(Error::BadKernel("the ELF is not little-endian"));
    }
    if u16_at(image, 16) != ET_EXEC || u16_at(image, 18) != c.machine {
        return Err(Error::BadKernel(
            "the ELF is not an i386 (ELF32) or x86-64 (ELF64) executable",
        ));
    }
    let entry = c.word(image, c.entry);
    let phoff = c.word(image, c.phoff);
    let phentsize = u64::from(u16_at(image, c.phentsize));
    let phnum = u64::from(u16_at(image, c.phnum));
    if phentsize < c.phdr_len as u64
        || phoff
            .checked_add(phnum * phentsize)
            .is_none_or(|e| e > image.len() as u64)
    {
        return Err(Error::BadKernel("ELF program headers run past the file"));
    }
    let mut entry_seen = false;
    for i in 0..phnum {
        let p = (phoff + i * phentsize) as usize;
        if u32_at(image, p) != PT_LOAD {
            continue;
        }
        let offset = c.word(image, p + c.p_offset);
        let vaddr = c.word(image, p + c.p_vaddr);
        let paddr = c.word(image, p + c.p_paddr);
        let filesz = c.word(image, p + c.p_filesz);
        let memsz = c.word(image, p + c.p_memsz);
        if memsz == 0 {
            continue;
        }
        if filesz > memsz
            || offset
                .checked_add(filesz)
                .is_none_or(|e| e > image.len() as u64)
        {
            return Err(Error::BadKernel("an ELF segment runs past the file"));
        }
        if paddr.checked_add(memsz).is_none_or(|e| e > 1 << 32) {
            return Err(Error::BadKernel("an ELF segment ends above 4 GiB"));
        }
        if plan.count == MAX_SEGMENTS {
            return Err(Error::BadKernel("more than 16 ELF load segments"));
        }
        let s = Segment {
            file_offset: offset as u32,
            paddr: paddr as u32,
            filesz: filesz as u32,
            memsz: memsz as u32,
        };
        if plan
            .segments()
            .iter()
            .any(|o| u64::from(o.paddr) < s.end() && u64::from(s.paddr) < o.end())
        {
            return Err(Error::BadKernel("two ELF load segments overlap"));
        }
        // An entry given as a virtual address inside this segment: translate
        // to the physical one (the kernel runs with paging off).
        if !entry_seen && entry >= vaddr && entry - vaddr < memsz {
            plan.entry = (entry - vaddr + paddr) as u32;
            entry_seen = true;
        }
        plan.segments[plan.count] = s;
        plan.count += 1;
    }
    if plan.count == 0 {
        return Err(Error::BadKernel("the ELF has no load segments"));
    }
    if !entry_seen {
        if entry >= 1 << 32 {
            return Err(Error::BadKernel("the ELF entry point is above 4 GiB"));
        }
        plan.entry = entry as u32;
    }
    Ok((plan, format))
}

/// Checks that every segment lands in RAM (the guest map's type 1 ranges).
///
/// Multiboot 0.6.96, 3.1: an OS image is linked clear of the PC's I/O
/// region and other reserved areas, which are the map's holes and non-RAM
/// entries (the EBDA, the VGA hole, the BIOS area, the ACPI tables); the
/// specification asks a loader to keep nothing else. So
/// a segment may cover any RAM, the IVT and BIOS data area at 0-0x4FF and
/// the shim's own memory below [`crate::layout::SHIM_END`] included: the
/// shim stages the bytes elsewhere and copies them last ([`place_relocation`]).
pub fn check_plan(plan: &LoadPlan, map: &Map) -> Result<(), Error> {
    for s in plan.segments() {
        let (start, end) = (u64::from(s.paddr), s.end());
        if !map.is_ram(start, end) {
            return Err(Error::Overlap {
                what: "a multiboot kernel segment",
                address: start,
                len: u64::from(s.memsz),
                with: "memory that is not RAM (beyond the VM's RAM or in a hole)",
            });
        }
    }
    Ok(())
}

/// Where the pieces that must outlive the shim lie when it hands over.
///
/// The shim copies no segment while it runs: segments may cover its own
/// memory (page tables, stack, image, buffers). It leaves the segments'
/// bytes in the staged kernel image and, as its very last step, runs a
/// small relocation stub that copies them to their addresses, zeroes their
/// bss and enters the kernel. The image, the info area (which holds the
/// stub and its copy table too) and the modules must therefore be clear of
/// every segment, and of each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Placement {
    /// The kernel image the segments are copied from: where the shim staged
    /// it, or where it moves it when a segment or module needs that memory.
    pub image: u64,
    /// The info area: the info block and everything it points to, the copy
    /// table and the relocation stub ([`area`]).
    pub info: u64,
}

/// The info area's size.
pub const AREA_LEN: u64 = area::END as u64;

/// Decides [`Placement`] for the segments of `plan`, the staged kernel
/// `image` (`[start, end)`) and the `modules` (placed by [`place_module`]):
/// - the image stays where it is unless a segment or module overlaps it;
///   then it moves to the highest free RAM from 1 MiB below 4 GiB clear of
///   all of them;
/// - the info area goes at [`crate::layout::MULTIBOOT_INFO`] (0x8000) when
///   no segment covers it; else at the highest 4 KiB-aligned RAM below
///   1 MiB above the shim's own memory ([`crate::layout::SHIM_END`] to the
///   EBDA) that no segment covers; else at the highest RAM from 1 MiB below
///   4 GiB clear of the segments, the modules and the image.
pub fn place_relocation(
    plan: &LoadPlan,
    map: &Map,
    image: (u64, u64),
    modules: &[(u64, u64)],
) -> Result<Placement, Error> {
    use crate::layout::{LOAD_FLOOR, MULTIBOOT_INFO, SHIM_END};
    const FOUR_GIB: u64 = 1 << 32;
    let mut taken = [(0u64, 0u64); MAX_SEGMENTS + MAX_MODULES + 1];
    let mut n = 0;
    for s in plan.segments() {
        taken[n] = (u64::from(s.paddr), s.end());
        n += 1;
    }
    let segments = n;
    for &m in modules.iter().take(MAX_MODULES) {
        taken[n] = m;
        n += 1;
    }
    let overlaps = |r: (u64, u64), with: &[(u64, u64)]| with.iter().any(|t| r.0 < t.1 && t.0 < r.1);

    let len = image.1.saturating_sub(image.0);
    let image_at = if overlaps(image, &taken[..n]) {
        map.highest_fit(len, 0x1000, LOAD_FLOOR, FOUR_GIB, &taken[..n])
            .ok_or(Error::Overlap {
                what: "the staged kernel file",
                address: image.0,
                len,
                with: "the kernel's segments or modules, and no free RAM is left to move it to",
            })?
    } else {
        image.0
    };
    taken[n] = (image_at, image_at + len);
    n += 1;

    let fits = |at: u64| {
        map.is_ram(at, at + AREA_LEN) && !overlaps((at, at + AREA_LEN), &taken[..segments])
    };
    let info = if fits(MULTIBOOT_INFO) {
        MULTIBOOT_INFO
    } else if let Some(at) =
        map.highest_fit(AREA_LEN, 0x1000, SHIM_END, LOAD_FLOOR, &taken[..segments])
    {
        at
    } else {
        map.highest_fit(AREA_LEN, 0x1000, LOAD_FLOOR, FOUR_GIB, &taken[..n])
            .ok_or(Error::Overlap {
                what: "the multiboot information area",
                address: MULTIBOOT_INFO,
                len: AREA_LEN,
                with: "the kernel's segments, and no free RAM is left to move it to",
            })?
    };
    Ok(Placement {
        image: image_at,
        info,
    })
}

/// Where the next module of `len` bytes goes: page-aligned at or after
/// `after`, and never below 1 MiB (the shim's memory and the BIOS areas).
pub fn place_module(after: u64, len: u64, map: &Map) -> Result<u64, Error> {
    let at = after
        .max(crate::layout::LOAD_FLOOR)
        .checked_next_multiple_of(4096);
    match at.and_then(|a| a.checked_add(len).map(|e| (a, e))) {
        Some((at, end)) if map.is_ram(at, end) && end <= 1 << 32 => Ok(at),
        _ => Err(Error::TooBig {
            what: "the multiboot modules (they go after the kernel, contiguous)",
            len,
        }),
    }
}

/// Most modules the shim passes (the initrd and `opt/keel/module1` to `15`).
pub const MAX_MODULES: usize = 16;

/// One module for the info block.
#[derive(Clone, Copy, Debug)]
pub struct Module<'a> {
    pub start: u32,
    pub end: u32,
    pub string: &'a [u8],
}

/// What goes into the info block.
#[derive(Clone, Copy, Debug)]
pub struct InfoInput<'a> {
    /// The kernel's name: the command line's first word, as GRUB and QEMU
    /// pass the kernel's path there.
    pub kernel_name: &'a [u8],
    /// The arguments after it.
    pub cmdline: &'a [u8],
    pub modules: &'a [Module<'a>],
    pub e820: &'a [Entry],
    pub loader_name: &'a [u8],
    /// The video mode set and, for a linear mode, the framebuffer's
    /// address (BAR0 of the VGA); `None` without a VGA or a request.
    pub video: Option<(VideoMode, u64)>,
}

/// `boot_device` (spec 3.3): BIOS drive 0x80 (the first hard disk), no
/// partition (0xFF in part1-part3), what a loader that read the kernel from
/// a whole disk says; a direct boot has no disk, and kernels that look at
/// the field expect a hard disk number there.
pub const BOOT_DEVICE: u32 = 0x80FF_FFFF;

/// Layout of the info area (offsets from its base).
pub mod area {
    pub const INFO: usize = 0x000;
    pub const LOADER_NAME: usize = 0x0C0;
    pub const MODS: usize = 0x100;
    pub const MMAP: usize = 0x200;
    /// VBE 3.0 VbeInfoBlock (512 bytes), ModeInfoBlock (256), and the
    /// OEM string and mode list the first points to.
    pub const VBE_CONTROL: usize = 0xA00;
    pub const VBE_MODE: usize = 0xC00;
    pub const VBE_OEM: usize = 0xD00;
    pub const VBE_MODE_LIST: usize = 0xD20;
    /// The relocation stub's copy table ([`super::build_relocation`]):
    /// the segment count, the entry, the info block's address, then per
    /// segment its source, destination, file size and memory size (u32s).
    pub const RELOC_TABLE: usize = 0xE00;
    pub const RELOC_TABLE_LEN: usize = 12 + 16 * super::MAX_SEGMENTS;
    /// The relocation stub's code, at most `RELOC_STUB_MAX` bytes.
    pub const RELOC_STUB: usize = 0xF20;
    pub const RELOC_STUB_MAX: usize = CMDLINE - RELOC_STUB;
    // The table and the stub lie between the VBE blocks and the command line.
    const _: () = assert!(VBE_MODE_LIST + 4 <= RELOC_TABLE);
    const _: () = assert!(RELOC_TABLE + RELOC_TABLE_LEN <= RELOC_STUB);
    pub const CMDLINE: usize = 0x1000;
    pub const MODULE_STRINGS: usize = 0x2000;
    pub const END: usize = 0x4000;
    /// Longest command line (the kernel's name, a space, the arguments;
    /// without the NUL).
    pub const CMDLINE_MAX: usize = MODULE_STRINGS - CMDLINE - 1;
    /// Room for all module strings with their NULs.
    pub const MODULE_STRINGS_MAX: usize = END - MODULE_STRINGS;
}

/// Writes the info block and everything it points to into `buf`, which the
/// kernel will see at `base`; returns the info block's address.
pub fn build_info(buf: &mut [u8; area::END], base: u32, input: &InfoInput) -> Result<u32, Error> {
    buf.fill(0);
    let at = |o: usize| base + o as u32;
    let mut flags = info::MEMORY
        | info::BOOT_DEVICE
        | info::CMDLINE
        | info::MODS
        | info::MMAP
        | info::LOADER_NAME;
    // mem_lower: KiB of RAM from 0 (at most 640); mem_upper: KiB from 1 MiB
    // up to the first hole.
    let lower = input
        .e820
        .iter()
        .find(|e| e.kind == RAM && e.addr == 0)
        .map_or(0, |e| e.end().min(0xA_0000) / 1024);
    let upper = input
        .e820
        .iter()
        .find(|e| e.kind == RAM && e.addr <= 0x10_0000 && 0x10_0000 < e.end())
        .map_or(0, |e| (e.end().min(1 << 32) - 0x10_0000) / 1024);
    put32(buf, area::INFO + 4, lower as u32);
    put32(buf, area::INFO + 8, upper as u32);
    put32(buf, area::INFO + 12, BOOT_DEVICE);

    let name_len = input.kernel_name.len();
    let args = input.cmdline;
    let cmd_len = name_len + if args.is_empty() { 0 } else { 1 + args.len() };
    if cmd_len > area::CMDLINE_MAX {
        return Err(Error::CmdlineTooLong {
            len: cmd_len as u64,
            max: area::CMDLINE_MAX as u64,
        });
    }
    let c = area::CMDLINE;
    buf[c..c + name_len].copy_from_slice(input.kernel_name);
    if !args.is_empty() {
        buf[c + name_len] = b' ';
        buf[c + name_len + 1..c + cmd_len].copy_from_slice(args);
    }
    put32(buf, area::INFO + 16, at(area::CMDLINE));

    if input.modules.len() > MAX_MODULES {
        return Err(Error::TooManyModules {
            count: input.modules.len() as u32,
        });
    }
    let mut s = area::MODULE_STRINGS;
    for (i, m) in input.modules.iter().enumerate() {
        if s + m.string.len() + 1 > area::END {
            return Err(Error::CmdlineTooLong {
                len: (s + m.string.len() + 1 - area::MODULE_STRINGS) as u64,
                max: area::MODULE_STRINGS_MAX as u64,
            });
        }
        buf[s..s + m.string.len()].copy_from_slice(m.string);
        let o = area::MODS + i * 16;
        put32(buf, o, m.start);
        put32(buf, o + 4, m.end);
        put32(buf, o + 8, at(s));
        s += m.string.len() + 1;
    }
    put32(buf, area::INFO + 20, input.modules.len() as u32);
    put32(buf, area::INFO + 24, at(area::MODS));

    let max_mmap = (area::VBE_CONTROL - area::MMAP) / 24;
    if input.e820.len() > max_mmap {
        return Err(Error::TooManyE820);
    }
    for (i, e) in input.e820.iter().enumerate() {
        let o = area::MMAP + i * 24;
        put32(buf, o, 20);
        buf[o + 4..o + 24].copy_from_slice(&e.to_bytes());
    }
    put32(buf, area::INFO + 44, (input.e820.len() * 24) as u32);
    put32(buf, area::INFO + 48, at(area::MMAP));

    let name_max = area::MODS - area::LOADER_NAME - 1;
    if input.loader_name.len() <= name_max {
        let o = area::LOADER_NAME;
        buf[o..o + input.loader_name.len()].copy_from_slice(input.loader_name);
        put32(buf, area::INFO + 64, at(area::LOADER_NAME));
    } else {
        flags &= !info::LOADER_NAME;
    }
    if let Some((mode, lfb)) = input.video {
        flags |= video_info(buf, base, mode, lfb);
    }
    put32(buf, area::INFO, flags);
    Ok(at(area::INFO))
}

/// A real-mode far pointer (segment:offset) to `addr`; 0 (null) for an
/// address at or above 1 MiB, which only an info area placed high (when a
/// kernel's segments leave no room below 1 MiB) has.
fn far_ptr(addr: u32) -> u32 {
    if addr >= 0x10_0000 {
        return 0;
    }
    (addr >> 4) << 16 | (addr & 0xF)
}

/// Writes the relocation stub's copy table and the stub's code (`stub`,
/// 32-bit position-independent code) into the info area `buf`, which lies
/// at `base`, after [`build_info`] filled it; returns the stub's and the
/// table's addresses. Each segment is copied from the kernel image at
/// `image` (its bytes at `image + file_offset`) and its bss zeroed; then
/// the stub enters the kernel at `plan.entry` with EAX = the bootloader
/// magic and EBX = `info` (Multiboot 0.6.96, 3.2).
pub fn build_relocation(
    buf: &mut [u8; area::END],
    base: u32,
    plan: &LoadPlan,
    image: u64,
    info: u32,
    stub: &[u8],
) -> Result<(u32, u32), Error> {
    if stub.len() > area::RELOC_STUB_MAX {
        return Err(Error::TooBig {
            what: "the relocation stub",
            len: stub.len() as u64,
        });
    }
    let t = area::RELOC_TABLE;
    put32(buf, t, plan.count as u32);
    put32(buf, t + 4, plan.entry);
    put32(buf, t + 8, info);
    for (i, s) in plan.segments().iter().enumerate() {
        let from = image + u64::from(s.file_offset);
        if from + u64::from(s.filesz) > 1 << 32 {
            return Err(Error::Overlap {
                what: "the staged kernel file",
                address: image,
                len: u64::from(s.file_offset) + u64::from(s.filesz),
                with: "memory above 4 GiB, which the relocation stub cannot reach",
            });
        }
        let o = t + 12 + i * 16;
        put32(buf, o, from as u32);
        put32(buf, o + 4, s.paddr);
        put32(buf, o + 8, s.filesz);
        put32(buf, o + 12, s.memsz);
    }
    buf[area::RELOC_STUB..area::RELOC_STUB + stub.len()].copy_from_slice(stub);
    Ok((base + area::RELOC_STUB as u32, base + t as u32))
}

/// Fills the VBE (info flag 11) and framebuffer (flag 12) fields and the
/// VBE blocks they point to, as a loader that set `mode` through VBE
/// does (Multiboot 0.6.96, 3.3; VBE 3.0, functions 00h and 01h); returns
/// the info flags to add. The protected-mode interface fields stay 0: the
/// card has none (VBE function 0Ah is not offered).
fn video_info(buf: &mut [u8; area::END], base: u32, mode: VideoMode, lfb: u64) -> u32 {
    let at = |o: usize| base + o as u32;
    let number = mode.vesa_number();
    // VbeInfoBlock: "VESA", version 3.0, the OEM string, capabilities 0
    // (a 6-bit DAC), the mode list, total memory in 64 KiB units.
    let c = area::VBE_CONTROL;
    buf[c..c + 4].copy_from_slice(b"VESA");
    put16(buf, c + 4, 0x0300);
    put32(buf, c + 6, far_ptr(at(area::VBE_OEM)));
    put32(buf, c + 14, far_ptr(at(area::VBE_MODE_LIST)));
    put16(buf, c + 18, 256);
    let oem = b"keel-shim";
    buf[area::VBE_OEM..area::VBE_OEM + oem.len()].copy_from_slice(oem);
    put16(buf, area::VBE_MODE_LIST, number);
    put16(buf, area::VBE_MODE_LIST + 2, 0xFFFF);
    put32(buf, area::INFO + 72, at(c));
    put32(buf, area::INFO + 76, at(area::VBE_MODE));
    put16(buf, area::INFO + 80, number);

    let (addr, width, height, bpp, kind) = match mode {
        VideoMode::EgaText => (0xB_8000, 80, 25, 16, 2u8),
        VideoMode::Linear { width, height, bpp } => {
            (lfb, u32::from(width), u32::from(height), bpp, 1)
        }
    };
    // ModeInfoBlock: supported, colour, (graphics, linear framebuffer).
    let m = area::VBE_MODE;
    let attributes: u16 = if kind == 1 { 0x9B } else { 0x0F };
    put16(buf, m, attributes);
    put16(buf, m + 16, mode.pitch() as u16);
    put16(buf, m + 18, width as u16);
    put16(buf, m + 20, height as u16);
    buf[m + 22] = 8;
    buf[m + 23] = 16;
    buf[m + 24] = 1;
    buf[m + 25] = bpp;
    buf[m + 26] = 1;
    if kind == 1 {
        buf[m + 27] = 6; // direct colour
        let [r, g, b] = mode.rgb_fields();
        buf[m + 31..m + 37].copy_from_slice(&[r.1, r.0, g.1, g.0, b.1, b.0]);
        put32(buf, m + 40, addr as u32);
        put16(buf, m + 50, mode.pitch() as u16);
    }

    put64(buf, area::INFO + 88, addr);
    put32(buf, area::INFO + 96, mode.pitch());
    put32(buf, area::INFO + 100, width);
    put32(buf, area::INFO + 104, height);
    buf[area::INFO + 108] = bpp;
    buf[area::INFO + 109] = kind;
    if kind == 1 {
        let [r, g, b] = mode.rgb_fields();
        let o = area::INFO + 110;
        buf[o..o + 6].copy_from_slice(&[r.0, r.1, g.0, g.1, b.0, b.1]);
    }
    info::VBE | info::FRAMEBUFFER
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::{guest_map, RESERVED};
    use crate::le::{put16, put64, u64_at};
    use alloc::vec;
    use alloc::vec::Vec;

    fn header(flags: u32, extra: &[u32]) -> Vec<u8> {
        let mut h = Vec::new();
        for w in [
            HEADER_MAGIC,
            flags,
            0u32.wrapping_sub(HEADER_MAGIC.wrapping_add(flags)),
        ]
        .iter()
        .chain(extra)
        {
            h.extend_from_slice(&w.to_le_bytes());
        }
        h
    }

    /// An ELF32 like the one xtask wraps the test kernel in: one PT_LOAD.
    fn elf(paddr: u32, body: &[u8], bss: u32) -> Vec<u8> {
        let mut f = vec![0u8; 84];
        f[0..4].copy_from_slice(&ELF_MAGIC);
        f[4] = 1;
        f[5] = 1;
        f[6] = 1;
        put16(&mut f, 16, 2);
        put16(&mut f, 18, 3);
        put32(&mut f, 20, 1);
        put32(&mut f, 24, paddr + 16);
        put32(&mut f, 28, 52);
        put16(&mut f, 40, 52);
        put16(&mut f, 42, 32);
        put16(&mut f, 44, 1);
        put32(&mut f, 52, PT_LOAD);
        put32(&mut f, 56, 84);
        put32(&mut f, 60, paddr);
        put32(&mut f, 64, paddr);
        put32(&mut f, 68, body.len() as u32);
        put32(&mut f, 72, body.len() as u32 + bss);
        put32(&mut f, 76, 5);
        f.extend_from_slice(body);
        f
    }

    #[test]
    fn header_found_in_an_elf_and_segments_planned() {
        let mut body = header(PAGE_ALIGN | MEMORY_INFO, &[]);
        body.resize(0x100, 0x90);
        let f = elf(0x20_0000, &body, 0x1000);
        let h = find_header(&f).unwrap().unwrap();
        assert_eq!(h.offset, 84);
        assert_eq!(h.aout, None);
        let (p, format) = load_plan(&f, &h).unwrap();
        assert_eq!(format, Format::Elf32);
        assert_eq!(p.entry, 0x20_0010);
        assert_eq!(
            p.segments(),
            [Segment {
                file_offset: 84,
                paddr: 0x20_0000,
                filesz: 0x100,
                memsz: 0x1100
            }]
        );
        assert_eq!(p.end(), 0x20_1100);
    }

    #[test]
    fn aout_kludge_needs_no_elf() {
        let mut f = vec![0u8; 32];
        f.extend(header(
            AOUT_KLUDGE | PAGE_ALIGN,
            &[0x10_0020, 0x10_0000, 0x10_0200, 0x10_1000, 0x10_0040],
        ));
        f.resize(0x300, 1);
        let h = find_header(&f).unwrap().unwrap();
        assert_eq!(h.offset, 32);
        let (p, format) = load_plan(&f, &h).unwrap();
        assert_eq!(format, Format::AoutKludge);
        assert_eq!(p.entry, 0x10_0040);
        assert_eq!(
            p.segments(),
            [Segment {
                file_offset: 0,
                paddr: 0x10_0000,
                filesz: 0x200,
                memsz: 0x1000
            }]
        );
    }

    #[test]
    fn video_requests_become_modes_the_vga_has() {
        let req = |mode_type, width, height, depth| VideoRequest {
            mode_type,
            width,
            height,
            depth,
        };
        let m = req(0, 1024, 768, 32).mode();
        assert_eq!(
            m,
            VideoMode::Linear {
                width: 1024,
                height: 768,
                bpp: 32
            }
        );
        assert_eq!((m.vesa_number(), m.pitch()), (0x118, 4096));
        assert_eq!(m.rgb_fields(), [(16, 8), (8, 8), (0, 8)]);
        let m = req(0, 800, 600, 16).mode();
        assert_eq!((m.vesa_number(), m.pitch()), (0x114, 1600));
        assert_eq!(m.rgb_fields(), [(11, 5), (5, 6), (0, 5)]);
        // No preference, or what the card does not offer: 1024x768x32.
        assert_eq!(req(0, 0, 0, 0).mode(), req(0, 1024, 768, 32).mode());
        assert_eq!(req(0, 999, 1, 8).mode(), req(0, 1024, 768, 32).mode());
        assert_eq!(req(1, 80, 25, 0).mode(), VideoMode::EgaText);
    }

    /// Multiboot 0.6.96, 3.3: flags 11 and 12, the VBE fields at 72-87,
    /// the framebuffer fields at 88-115; VBE 3.0 blocks behind them.
    #[test]
    fn info_block_with_a_linear_mode_and_with_text() {
        let map = map256();
        let mut buf = [0u8; area::END];
        let mode = VideoMode::Linear {
            width: 1024,
            height: 768,
            bpp: 32,
        };
        let input = InfoInput {
            kernel_name: b"k",
            cmdline: b"",
            modules: &[],
            e820: map.entries(),
            loader_name: b"keel-shim",
            video: Some((mode, 0xFD00_0000)),
        };
        let base = 0x9_0000;
        build_info(&mut buf, base, &input).unwrap();
        let flags = u32_at(&buf, 0);
        assert_eq!(flags & (info::VBE | info::FRAMEBUFFER), 0x1800);
        let control = u32_at(&buf, 72) - base;
        assert_eq!(&buf[control as usize..control as usize + 4], b"VESA");
        let mi = (u32_at(&buf, 76) - base) as usize;
        assert_eq!(u16_at(&buf, 80), 0x118);
        assert_eq!(u64_at(&buf, 88), 0xFD00_0000);
        assert_eq!(
            [u32_at(&buf, 96), u32_at(&buf, 100), u32_at(&buf, 104)],
            [4096, 1024, 768]
        );
        assert_eq!(&buf[108..116], &[32, 1, 16, 8, 8, 8, 0, 8]);
        assert_eq!(u16_at(&buf, mi + 18), 1024);
        assert_eq!(u8_at(&buf, mi + 25), 32);
        assert_eq!(u32_at(&buf, mi + 40), 0xFD00_0000);
        // The mode list (a real-mode far pointer) holds the mode, then 0xFFFF.
        let list = u32_at(&buf, control as usize + 14);
        let list = ((list >> 16) << 4) + (list & 0xFFFF) - base;
        assert_eq!(u16_at(&buf, list as usize), 0x118);
        assert_eq!(u16_at(&buf, list as usize + 2), 0xFFFF);

        let text = InfoInput {
            video: Some((VideoMode::EgaText, 0xFD00_0000)),
            ..input
        };
        build_info(&mut buf, base, &text).unwrap();
        assert_eq!(u64_at(&buf, 88), 0xB_8000);
        assert_eq!(
            [u32_at(&buf, 96), u32_at(&buf, 100), u32_at(&buf, 104)],
            [160, 80, 25]
        );
        assert_eq!(&buf[108..110], &[16, 2]);
        let none = InfoInput {
            video: None,
            ..input
        };
        build_info(&mut buf, base, &none).unwrap();
        assert_eq!(u32_at(&buf, 0) & 0x1800, 0);
    }

    #[test]
    fn bad_headers() {
        let mut f = vec![0u8; 8192 + 64];
        assert!(find_header(&f).is_none());
        // A valid header just past 8 KiB is not found; a bad checksum neither.
        f[8192..8204].copy_from_slice(&header(0, &[]));
        assert!(find_header(&f).is_none());
        let mut bad = header(0, &[]);
        bad[8] ^= 1;
        f[16..28].copy_from_slice(&bad);
        assert!(find_header(&f).is_none());
        // A requirement bit the shim lacks (bit 3, undefined).
        f[16..28].copy_from_slice(&header(1 << 3, &[]));
        assert_eq!(
            find_header(&f).unwrap(),
            Err(Error::MultibootUnsupported { flags: 1 << 3 })
        );
        // A video request is read from offsets 32-47; one cut short is an error.
        let v = header(VIDEO_MODE, &[0, 0, 0, 0, 0, 0, 1024, 768, 32]);
        f[16..16 + v.len()].copy_from_slice(&v);
        let h = find_header(&f).unwrap().unwrap();
        let want = VideoRequest {
            mode_type: 0,
            width: 1024,
            height: 768,
            depth: 32,
        };
        assert_eq!(h.video, Some(want));
        let short = &f[..16 + 40];
        assert!(find_header(short).unwrap().is_err());
        f[16..16 + v.len()].fill(0);
        // Not ELF and no kludge.
        f[16..28].copy_from_slice(&header(0, &[]));
        let h = find_header(&f).unwrap().unwrap();
        assert!(load_plan(&f, &h).is_err());
        // An ELF whose segment runs past the file.
        let mut e = elf(0x20_0000, &header(0, &[]), 0);
        put32(&mut e, 68, 0x10000);
        let h = find_header(&e).unwrap().unwrap();
        assert!(load_plan(&e, &h).is_err());
    }

    /// An ELF64 (x86-64) with the given (paddr, vaddr, bytes, bss) segments,
    /// entry `entry`.
    pub fn elf64(entry: u64, segs: &[(u64, u64, &[u8], u64)]) -> Vec<u8> {
        let phoff = 64usize;
        let data_at = phoff + 56 * segs.len();
        let mut f = vec![0u8; data_at];
        f[0..4].copy_from_slice(&ELF_MAGIC);
        f[4] = 2;
        f[5] = 1;
        f[6] = 1;
        put16(&mut f, 16, 2);
        put16(&mut f, 18, 62);
        put32(&mut f, 20, 1);
        put64(&mut f, 24, entry);
        put64(&mut f, 32, phoff as u64);
        put16(&mut f, 52, 64);
        put16(&mut f, 54, 56);
        put16(&mut f, 56, segs.len() as u16);
        for (i, (paddr, vaddr, bytes, bss)) in segs.iter().enumerate() {
            let p = phoff + 56 * i;
            let off = f.len() as u64;
            put32(&mut f, p, PT_LOAD);
            put64(&mut f, p + 8, off);
            put64(&mut f, p + 16, *vaddr);
            put64(&mut f, p + 24, *paddr);
            put64(&mut f, p + 32, bytes.len() as u64);
            put64(&mut f, p + 40, bytes.len() as u64 + bss);
            f.extend_from_slice(bytes);
        }
        f
    }

    #[test]
    fn elf64_segments_and_a_virtual_entry() {
        let mut body = header(MEMORY_INFO, &[]);
        body.resize(0x40, 0);
        let low = [7u8; 0x20];
        let f = elf64(
            0xFFFF_FFFF_8020_0010,
            &[
                (0x20_0000, 0xFFFF_FFFF_8020_0000, &body, 0x1000),
                (0x6_0000, 0x6_0000, &low, 0x10),
            ],
        );
        let h = find_header(&f).unwrap().unwrap();
        let (p, format) = load_plan(&f, &h).unwrap();
        assert_eq!(format, Format::Elf64);
        assert_eq!(p.entry, 0x20_0010);
        assert_eq!(p.count, 2);
        assert_eq!(p.segments()[1].paddr, 0x6_0000);
        assert_eq!(p.segments()[1].memsz, 0x30);
        assert_eq!(&f[p.segments()[1].file_offset as usize..][..0x20], &low);
        assert!(check_plan(&p, &map256()).is_ok());
    }

    #[test]
    fn bad_elves_are_errors_not_panics() {
        let mut body = header(0, &[]);
        body.resize(0x40, 0);
        let good = elf64(0x20_0000, &[(0x20_0000, 0x20_0000, &body, 0)]);
        let plan = |f: &[u8]| {
            let h = find_header(f).ok_or(Error::UnknownKernel)??;
            load_plan(f, &h).map(|p| p.0)
        };
        assert!(plan(&good).is_ok());
        // Truncated in the ELF header, in the program headers.
        for cut in [20, 60, 64 + 28] {
            let mut t = good[..cut].to_vec();
            t.extend_from_slice(&header(0, &[]));
            assert!(matches!(plan(&t), Err(Error::BadKernel(_))), "cut {cut}");
        }
        // Program headers far past the end, or a phoff that overflows.
        for phoff in [0x10_0000u64, u64::MAX - 8] {
            let mut t = good.clone();
            put64(&mut t, 32, phoff);
            assert!(matches!(plan(&t), Err(Error::BadKernel(_))));
        }
        // A segment past the file, above 4 GiB, wrapping around.
        for (field, v) in [
            (64 + 8, 0xFFFF_FFFF_FFFF_FFF0u64),
            (64 + 24, 0xFFFF_FFF0),
            (64 + 40, u64::MAX),
        ] {
            let mut t = good.clone();
            put64(&mut t, field, v);
            assert!(matches!(plan(&t), Err(Error::BadKernel(_))), "{field}");
        }
        // Overlapping segments.
        let two = elf64(
            0x20_0000,
            &[
                (0x20_0000, 0x20_0000, &body, 0x1000),
                (0x20_0800, 0x20_0800, &body, 0),
            ],
        );
        assert_eq!(
            plan(&two),
            Err(Error::BadKernel("two ELF load segments overlap"))
        );
        // A wrong machine for the class.
        let mut m = good.clone();
        put16(&mut m, 18, 3);
        assert!(plan(&m).is_err());
        // An entry outside every segment and above 4 GiB.
        let mut e = good.clone();
        put64(&mut e, 24, 1 << 40);
        assert!(plan(&e).is_err());
        // Beyond RAM.
        let big = elf64(0x20_0000, &[(0x20_0000, 0x20_0000, &body, 0x1000_0000)]);
        let (p, _) = load_plan(&big, &find_header(&big).unwrap().unwrap()).unwrap();
        assert!(matches!(
            check_plan(&p, &map256()),
            Err(Error::Overlap { .. })
        ));
    }

    fn map256() -> Map {
        let fw = Entry {
            addr: 0,
            len: 256 << 20,
            kind: RAM,
        }
        .to_bytes();
        guest_map(&Map::from_fw_cfg(&fw).unwrap(), &[]).unwrap()
    }

    /// The plan of an ELF32 with one segment at `paddr`.
    fn plan_at(paddr: u32, bss: u32) -> LoadPlan {
        let mut body = header(0, &[]);
        body.resize(64, 0);
        let f = elf(paddr, &body, bss);
        load_plan(&f, &find_header(&f).unwrap().unwrap()).unwrap().0
    }

    #[test]
    fn plans_and_modules_are_checked_against_ram() {
        let m = map256();
        assert!(check_plan(&plan_at(0x20_0000, 0), &m).is_ok());
        // Below 1 MiB: any RAM, the IVT, the BIOS data area and the shim's
        // own memory included; not the EBDA, the VGA hole or past RAM.
        for good in [0, 0x7000, 0x1_0000, 0x5_0000, 0x9_FB00] {
            assert!(check_plan(&plan_at(good, 0), &m).is_ok(), "{good:#x}");
        }
        for bad in [0x9_FBF0, 0xA_0000, 0xF_0000, 0xFFF_FFF0] {
            assert!(
                matches!(check_plan(&plan_at(bad, 0), &m), Err(Error::Overlap { .. })),
                "{bad:#x}"
            );
        }
        // Modules never go below 1 MiB, even after a low kernel.
        assert_eq!(place_module(0x20_0040, 100, &m), Ok(0x20_1000));
        assert_eq!(place_module(0x6_1000, 100, &m), Ok(0x10_0000));
        assert!(place_module(0x20_0040, 256 << 20, &m).is_err());
        assert!(place_module(u64::MAX - 10, 100, &m).is_err());
    }

    /// The image, the info area and the modules end up clear of every
    /// segment and of each other, wherever the segments are.
    #[test]
    fn relocation_places_image_and_info_clear_of_the_segments() {
        let m = map256();
        let top = 256 << 20;
        let image = (top - 0x8000, top);
        let module = [(0x20_1000, 0x21_1000)];
        // A kernel above 1 MiB: nothing moves, the info area at 0x8000.
        let p = place_relocation(&plan_at(0x20_0000, 0), &m, image, &module).unwrap();
        assert_eq!(
            p,
            Placement {
                image: image.0,
                info: 0x8000
            }
        );
        // A segment at 0x10000 (over the shim's stack and image): the same.
        let p = place_relocation(&plan_at(0x1_0000, 0x2_0000), &m, image, &[]).unwrap();
        assert_eq!(
            p,
            Placement {
                image: image.0,
                info: 0x8000
            }
        );
        // A segment over 0x8000: the info area below the EBDA instead.
        let p = place_relocation(&plan_at(0x7000, 0x2_0000), &m, image, &[]).unwrap();
        assert_eq!(p.info, 0x9_B000);
        // A segment over all of the low RAM: the info area high, clear of
        // the module and the image.
        let low = plan_at(0, 0x9_FB00 - 0x40);
        assert_eq!(low.end(), 0x9_FB00);
        let p = place_relocation(&low, &m, image, &module).unwrap();
        assert_eq!(p.info, image.0 - AREA_LEN);
        // A segment on the staged image: the image moves below it.
        let on_image = plan_at((top - 0x6000) as u32, 0);
        let p = place_relocation(&on_image, &m, image, &[]).unwrap();
        assert_eq!(p.image, top - 0xE000);
        assert_eq!(p.info, 0x8000);
        // A module on it too: the image moves below both.
        let p = place_relocation(&on_image, &m, image, &[(top - 0x2_0000, top - 0xD000)]).unwrap();
        assert_eq!(p.image, top - 0x2_8000);
        // No room to move the image: an error naming it, not a panic.
        let small = {
            let fw = Entry {
                addr: 0,
                len: 2 << 20,
                kind: RAM,
            }
            .to_bytes();
            guest_map(&Map::from_fw_cfg(&fw).unwrap(), &[]).unwrap()
        };
        let all = plan_at(0x10_0000, 0x10_0000 - 0x40);
        assert!(matches!(
            place_relocation(&all, &small, (0x1F_0000, 0x1F_8000), &[]),
            Err(Error::Overlap {
                what: "the staged kernel file",
                ..
            })
        ));
        // Every placement is clear of every segment, module and the other.
        for plan in [plan_at(0x7000, 0x2_0000), low, on_image] {
            let p = place_relocation(&plan, &m, image, &module).unwrap();
            let info = (p.info, p.info + AREA_LEN);
            let img = (p.image, p.image + (image.1 - image.0));
            for s in plan.segments() {
                let seg = (u64::from(s.paddr), s.end());
                assert!(seg.1 <= info.0 || info.1 <= seg.0);
                assert!(seg.1 <= img.0 || img.1 <= seg.0);
            }
            assert!(info.1 <= img.0 || img.1 <= info.0);
            assert!(m.is_ram(info.0, info.1) && m.is_ram(img.0, img.1));
        }
    }

    /// The copy table holds each segment's source in the image, its
    /// destination and sizes, the entry and the info block; the stub's code
    /// follows it.
    #[test]
    fn relocation_table_and_stub() {
        let mut body = header(0, &[]);
        body.resize(0x40, 0);
        let f = elf64(
            0x20_0010,
            &[
                (0x20_0000, 0x20_0000, &body, 0x1000),
                (0x7000, 0x7000, &[7u8; 0x20], 0x10),
            ],
        );
        let (plan, _) = load_plan(&f, &find_header(&f).unwrap().unwrap()).unwrap();
        let mut buf = [0u8; area::END];
        let base = 0x9_B000;
        let stub = [0x90u8, 0xF4];
        let (at, table) = build_relocation(&mut buf, base, &plan, 0xF00_0000, base, &stub).unwrap();
        assert_eq!(at, base + area::RELOC_STUB as u32);
        assert_eq!(table, base + area::RELOC_TABLE as u32);
        let t = area::RELOC_TABLE;
        assert_eq!(
            [u32_at(&buf, t), u32_at(&buf, t + 4), u32_at(&buf, t + 8)],
            [2, 0x20_0010, base]
        );
        let seg = |i: usize| {
            let o = t + 12 + 16 * i;
            [
                u32_at(&buf, o),
                u32_at(&buf, o + 4),
                u32_at(&buf, o + 8),
                u32_at(&buf, o + 12),
            ]
        };
        let low = plan.segments()[1];
        assert_eq!(seg(1), [0xF00_0000 + low.file_offset, 0x7000, 0x20, 0x30]);
        assert_eq!(&f[low.file_offset as usize..][..0x20], &[7u8; 0x20]);
        assert_eq!(seg(0)[1..], [0x20_0000, 0x40, 0x1040]);
        assert_eq!(&buf[area::RELOC_STUB..area::RELOC_STUB + 2], &stub);
        // A stub too long, an image whose bytes would lie above 4 GiB.
        let long = [0u8; area::RELOC_STUB_MAX + 1];
        assert!(build_relocation(&mut buf, base, &plan, 0xF00_0000, base, &long).is_err());
        assert!(build_relocation(&mut buf, base, &plan, 0xFFFF_FF80, base, &stub).is_err());
    }

    #[test]
    fn info_block() {
        let m = map256();
        let mut buf = [0xFFu8; area::END];
        let mods = [
            Module {
                start: 0x20_1000,
                end: 0x21_1000,
                string: b"mbtest-module",
            },
            Module {
                start: 0x21_1000,
                end: 0x21_1001,
                string: b"second a=1 b",
            },
        ];
        let input = InfoInput {
            kernel_name: b"/boot/mbtest",
            cmdline: b"ram=256",
            modules: &mods,
            e820: m.entries(),
            loader_name: b"keel-shim",
            video: None,
        };
        let base = 0x8000;
        let info = build_info(&mut buf, base, &input).unwrap();
        assert_eq!(info, 0x8000);
        let flags = u32_at(&buf, 0);
        // mem, boot_device, cmdline, mods, mmap, boot_loader_name (spec 3.3).
        assert_eq!(flags, 0x24F);
        assert_eq!(u32_at(&buf, 4), 639);
        assert_eq!(u32_at(&buf, 8), (255 << 20) / 1024);
        assert_eq!(u32_at(&buf, 12), 0x80FF_FFFF);
        let cmd = u32_at(&buf, 16) as usize - 0x8000;
        assert_eq!(&buf[cmd..cmd + 21], b"/boot/mbtest ram=256\0");
        assert_eq!(u32_at(&buf, 20), 2);
        let mods = u32_at(&buf, 24) as usize - 0x8000;
        assert_eq!(u32_at(&buf, mods), 0x20_1000);
        assert_eq!(u32_at(&buf, mods + 4), 0x21_1000);
        let s = u32_at(&buf, mods + 8) as usize - 0x8000;
        assert_eq!(&buf[s..s + 14], b"mbtest-module\0");
        assert_eq!(u32_at(&buf, mods + 16), 0x21_1000);
        assert_eq!(u32_at(&buf, mods + 20), 0x21_1001);
        let s = u32_at(&buf, mods + 24) as usize - 0x8000;
        assert_eq!(&buf[s..s + 13], b"second a=1 b\0");
        let len = u32_at(&buf, 44) as usize;
        let mmap = u32_at(&buf, 48) as usize - 0x8000;
        assert_eq!(len, m.entries().len() * 24);
        // Walk the map the way the spec says: size, then size bytes.
        let mut o = mmap;
        let mut ram = 0;
        let mut seen = 0;
        while o < mmap + len {
            let size = u32_at(&buf, o) as usize;
            let kind = u32_at(&buf, o + 20);
            if kind == RAM {
                ram += u64_at(&buf, o + 12);
            } else {
                assert!(kind == RESERVED);
            }
            o += size + 4;
            seen += 1;
        }
        assert_eq!(seen, m.entries().len());
        assert_eq!(ram, (256 << 20) - 0x60400);
        let name = u32_at(&buf, 64) as usize - 0x8000;
        assert_eq!(&buf[name..name + 10], b"keel-shim\0");
    }

    #[test]
    fn info_block_without_module_and_with_a_huge_cmdline() {
        let m = map256();
        let mut buf = [0u8; area::END];
        let long = [b'x'; 4090];
        let mut input = InfoInput {
            kernel_name: b"kernel",
            cmdline: &long,
            modules: &[],
            e820: m.entries(),
            loader_name: b"keel-shim",
            video: None,
        };
        // "kernel" + " " + 4090 bytes: 4097, one over the 4095 that fit.
        assert_eq!(
            build_info(&mut buf, 0x8000, &input),
            Err(Error::CmdlineTooLong {
                len: 4097,
                max: 4095
            })
        );
        input.cmdline = &long[..4088];
        build_info(&mut buf, 0x8000, &input).unwrap();
        input.cmdline = b"";
        build_info(&mut buf, 0x8000, &input).unwrap();
        assert_eq!(u32_at(&buf, 20), 0);
        assert_eq!(&buf[0x1000..0x1007], b"kernel\0");
        // Too many modules, and strings that overflow their room.
        let one = Module {
            start: 0x20_0000,
            end: 0x20_0001,
            string: &long[..2000],
        };
        let many = [one; MAX_MODULES + 1];
        input.modules = &many;
        assert_eq!(
            build_info(&mut buf, 0x8000, &input),
            Err(Error::TooManyModules { count: 17 })
        );
        input.modules = &many[..5];
        assert!(matches!(
            build_info(&mut buf, 0x8000, &input),
            Err(Error::CmdlineTooLong { .. })
        ));
        input.modules = &many[..4];
        build_info(&mut buf, 0x8000, &input).unwrap();
        assert_eq!(u32_at(&buf, 20), 4);
    }
}
