//! Multiboot v1 (Multiboot Specification 0.6.96): the header in a kernel's
//! first 8 KiB, its loading (ELF32 program headers, or the header's a.out
//! kludge address fields), and the information block handed to it.

use crate::e820::{Entry, Map, RAM};
use crate::le::{put32, u16_at, u32_at, u8_at};
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
const SUPPORTED_REQUIREMENTS: u32 = PAGE_ALIGN | MEMORY_INFO;

/// Info flags.
pub mod info {
    pub const MEMORY: u32 = 1 << 0;
    pub const CMDLINE: u32 = 1 << 2;
    pub const MODS: u32 = 1 << 3;
    pub const MMAP: u32 = 1 << 6;
    pub const LOADER_NAME: u32 = 1 << 9;
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
    Some(Ok(Header {
        offset,
        flags,
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
const ELFDATA2LSB: u8 = 1;
const ET_EXEC: u16 = 2;
const EM_386: u16 = 3;
const PT_LOAD: u32 = 1;
const PHDR_LEN: usize = 32;

/// What to load from `image` (the whole kernel file) and where to enter it.
pub fn load_plan(image: &[u8], h: &Header) -> Result<LoadPlan, Error> {
    let mut plan = LoadPlan {
        segments: [Segment::default(); MAX_SEGMENTS],
        count: 0,
        entry: 0,
    };
    if let Some(a) = h.aout {
        if a.header_addr < a.load_addr || (a.header_addr - a.load_addr) as usize > h.offset {
            return Err(Error::BadKernel(
                "a.out kludge: header_addr below load_addr",
            ));
        }
        let file_offset = h.offset - (a.header_addr - a.load_addr) as usize;
        let filesz = if a.load_end_addr == 0 {
            (image.len() - file_offset) as u32
        } else {
            a.load_end_addr
                .checked_sub(a.load_addr)
                .ok_or(Error::BadKernel(
                    "a.out kludge: load_end_addr below load_addr",
                ))?
        };
        if file_offset + filesz as usize > image.len() {
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
        plan.segments[0] = Segment {
            file_offset: file_offset as u32,
            paddr: a.load_addr,
            filesz,
            memsz,
        };
        plan.count = 1;
        plan.entry = a.entry_addr;
        return Ok(plan);
    }
    if image.len() < 52 || image[0..4] != ELF_MAGIC {
        return Err(Error::BadKernel(
            "multiboot kernel is not ELF and has no a.out kludge",
        ));
    }
    if u8_at(image, 4) != ELFCLASS32 || u8_at(image, 5) != ELFDATA2LSB {
        return Err(Error::BadKernel(
            "multiboot kernel is not a 32-bit little-endian ELF",
        ));
    }
    if u16_at(image, 16) != ET_EXEC || u16_at(image, 18) != EM_386 {
        return Err(Error::BadKernel(
            "multiboot kernel is not an i386 executable ELF",
        ));
    }
    let entry = u32_at(image, 24);
    let phoff = u32_at(image, 28) as usize;
    let phentsize = usize::from(u16_at(image, 42));
    let phnum = usize::from(u16_at(image, 44));
    if phentsize < PHDR_LEN || phoff + phnum * phentsize > image.len() {
        return Err(Error::BadKernel("ELF program headers run past the file"));
    }
    plan.entry = entry;
    for i in 0..phnum {
        let p = phoff + i * phentsize;
        if u32_at(image, p) != PT_LOAD {
            continue;
        }
        let s = Segment {
            file_offset: u32_at(image, p + 4),
            paddr: u32_at(image, p + 12),
            filesz: u32_at(image, p + 16),
            memsz: u32_at(image, p + 20),
        };
        let vaddr = u32_at(image, p + 8);
        if s.memsz == 0 {
            continue;
        }
        if s.filesz > s.memsz || s.file_offset as usize + s.filesz as usize > image.len() {
            return Err(Error::BadKernel("an ELF segment runs past the file"));
        }
        if s.end() > 1 << 32 {
            return Err(Error::BadKernel("an ELF segment ends above 4 GiB"));
        }
        if plan.count == MAX_SEGMENTS {
            return Err(Error::BadKernel("more than 16 ELF load segments"));
        }
        // An entry given as a virtual address inside this segment: translate.
        if vaddr != s.paddr && entry >= vaddr && entry - vaddr < s.memsz {
            plan.entry = entry - vaddr + s.paddr;
        }
        plan.segments[plan.count] = s;
        plan.count += 1;
    }
    if plan.count == 0 {
        return Err(Error::BadKernel("the ELF has no load segments"));
    }
    Ok(plan)
}

/// Checks that every segment lands in RAM at or above 1 MiB and clear of
/// `avoid` (the staging copy of the file).
pub fn check_plan(plan: &LoadPlan, map: &Map, avoid: (u64, u64)) -> Result<(), Error> {
    for s in plan.segments() {
        let (start, end) = (u64::from(s.paddr), s.end());
        if start < crate::layout::LOAD_FLOOR || !map.is_ram(start, end) {
            return Err(Error::TooBig {
                what: "a multiboot kernel segment (outside RAM from 1 MiB)",
                len: u64::from(s.memsz),
            });
        }
        if start < avoid.1 && avoid.0 < end {
            return Err(Error::TooBig {
                what: "the multiboot kernel (its segments overlap its staging copy)",
                len: u64::from(s.memsz),
            });
        }
    }
    Ok(())
}

/// Where a module of `len` bytes goes: right after the kernel, page-aligned.
pub fn place_module(kernel_end: u64, len: u64, map: &Map) -> Result<u64, Error> {
    let at = kernel_end.next_multiple_of(4096);
    if at
        .checked_add(len)
        .is_some_and(|end| map.is_ram(at, end) && end <= 1 << 32)
    {
        Ok(at)
    } else {
        Err(Error::TooBig {
            what: "the multiboot module",
            len,
        })
    }
}

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
    pub cmdline: &'a [u8],
    pub module: Option<Module<'a>>,
    pub e820: &'a [Entry],
    pub loader_name: &'a [u8],
}

/// Layout of the info area (offsets from its base).
pub mod area {
    pub const INFO: usize = 0x000;
    pub const MODS: usize = 0x080;
    pub const LOADER_NAME: usize = 0x0C0;
    pub const MMAP: usize = 0x100;
    pub const CMDLINE: usize = 0x1000;
    pub const MODULE_STRING: usize = 0x1800;
    pub const END: usize = 0x2000;
    /// Longest string (without NUL) for each of the two string slots.
    pub const STRING_MAX: usize = 0x7FF;
}

/// Writes the info block and everything it points to into `buf`, which the
/// kernel will see at `base`; returns the info block's address.
pub fn build_info(buf: &mut [u8; area::END], base: u32, input: &InfoInput) -> Result<u32, Error> {
    buf.fill(0);
    let at = |o: usize| base + o as u32;
    let mut flags = info::MEMORY | info::CMDLINE | info::MODS | info::MMAP | info::LOADER_NAME;
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

    let string = |buf: &mut [u8; area::END], o: usize, s: &[u8], max: usize| {
        if s.len() > max {
            return Err(Error::CmdlineTooLong {
                len: s.len() as u64,
                max: max as u64,
            });
        }
        buf[o..o + s.len()].copy_from_slice(s);
        Ok(())
    };
    string(buf, area::CMDLINE, input.cmdline, area::STRING_MAX)?;
    put32(buf, area::INFO + 16, at(area::CMDLINE));

    match input.module {
        Some(m) => {
            put32(buf, area::MODS, m.start);
            put32(buf, area::MODS + 4, m.end);
            string(buf, area::MODULE_STRING, m.string, area::STRING_MAX)?;
            put32(buf, area::MODS + 8, at(area::MODULE_STRING));
            put32(buf, area::INFO + 20, 1);
        }
        None => put32(buf, area::INFO + 20, 0),
    }
    put32(buf, area::INFO + 24, at(area::MODS));

    let max_mmap = (area::CMDLINE - area::MMAP) / 24;
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

    let name_max = area::MMAP - area::LOADER_NAME - 1;
    if input.loader_name.len() <= name_max {
        string(buf, area::LOADER_NAME, input.loader_name, name_max)?;
        put32(buf, area::INFO + 64, at(area::LOADER_NAME));
    } else {
        flags &= !info::LOADER_NAME;
    }
    put32(buf, area::INFO, flags);
    Ok(at(area::INFO))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::e820::{guest_map, RESERVED};
    use crate::le::{put16, u64_at};
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
        let p = load_plan(&f, &h).unwrap();
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
        let p = load_plan(&f, &h).unwrap();
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
        f[16..28].copy_from_slice(&header(VIDEO_MODE, &[]));
        assert_eq!(
            find_header(&f).unwrap(),
            Err(Error::MultibootUnsupported { flags: VIDEO_MODE })
        );
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

    fn map256() -> Map {
        let fw = Entry {
            addr: 0,
            len: 256 << 20,
            kind: RAM,
        }
        .to_bytes();
        guest_map(&Map::from_fw_cfg(&fw).unwrap(), &[]).unwrap()
    }

    #[test]
    fn plans_and_modules_are_checked_against_ram() {
        let m = map256();
        let mut body = header(0, &[]);
        body.resize(64, 0);
        let f = elf(0x20_0000, &body, 0);
        let p = load_plan(&f, &find_header(&f).unwrap().unwrap()).unwrap();
        assert!(check_plan(&p, &m, (0xF00_0000, 0xF10_0000)).is_ok());
        assert!(check_plan(&p, &m, (0x20_0000, 0x20_1000)).is_err());
        let low = elf(0x9_0000, &body, 0);
        let p = load_plan(&low, &find_header(&low).unwrap().unwrap()).unwrap();
        assert!(check_plan(&p, &m, (0, 0)).is_err());
        assert_eq!(place_module(0x20_0040, 100, &m), Ok(0x20_1000));
        assert!(place_module(0x20_0040, 256 << 20, &m).is_err());
    }

    #[test]
    fn info_block() {
        let m = map256();
        let mut buf = [0xFFu8; area::END];
        let input = InfoInput {
            cmdline: b"mbtest ram=256",
            module: Some(Module {
                start: 0x20_1000,
                end: 0x21_1000,
                string: b"mbtest-module",
            }),
            e820: m.entries(),
            loader_name: b"keel-shim",
        };
        let base = 0x8000;
        let info = build_info(&mut buf, base, &input).unwrap();
        assert_eq!(info, 0x8000);
        let flags = u32_at(&buf, 0);
        assert_eq!(flags, 0x24D);
        assert_eq!(u32_at(&buf, 4), 639);
        assert_eq!(u32_at(&buf, 8), (255 << 20) / 1024);
        let cmd = u32_at(&buf, 16) as usize - 0x8000;
        assert_eq!(&buf[cmd..cmd + 15], b"mbtest ram=256\0");
        assert_eq!(u32_at(&buf, 20), 1);
        let mods = u32_at(&buf, 24) as usize - 0x8000;
        assert_eq!(u32_at(&buf, mods), 0x20_1000);
        assert_eq!(u32_at(&buf, mods + 4), 0x21_1000);
        let s = u32_at(&buf, mods + 8) as usize - 0x8000;
        assert_eq!(&buf[s..s + 14], b"mbtest-module\0");
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
        let long = [b'x'; 4000];
        let mut input = InfoInput {
            cmdline: &long,
            module: None,
            e820: m.entries(),
            loader_name: b"keel-shim",
        };
        assert!(matches!(
            build_info(&mut buf, 0x8000, &input),
            Err(Error::CmdlineTooLong { len: 4000, .. })
        ));
        input.cmdline = b"";
        build_info(&mut buf, 0x8000, &input).unwrap();
        assert_eq!(u32_at(&buf, 20), 0);
    }
}
