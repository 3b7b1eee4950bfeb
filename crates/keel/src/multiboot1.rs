//! The boot information of a multiboot (version 1) loader (Multiboot
//! Specification 0.6.96, 3.3): the memory map and the modules, read through
//! a function that copies physical memory, so the parsing runs on the host.
//!
//! Why a second boot protocol: QEMU's `-kernel` loads a multiboot kernel and
//! its modules (`-initrd "FILE NAME,..."`) into memory itself, the way plain
//! QEMU's `-kernel` loads Linux, where GRUB reads them from a CD through the
//! firmware (about 30 ms per MiB under TCG). Everything in the structure is
//! the loader's word: counts and lengths are bounded, and a structure that
//! does not fit the bounds is refused with what was wrong.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

/// What a multiboot loader leaves in EAX (Multiboot 0.6.96, 3.2).
pub const MAGIC: u32 = 0x2bad_b002;

/// Modules accepted at most.
const MAX_MODULES: u32 = 256;
/// Bytes of memory map accepted at most (entries are 24 bytes).
const MAX_MMAP_BYTES: u32 = 64 * 1024;
/// Bytes of a module's command line read at most.
const MAX_CMDLINE: usize = 4096;

/// The `flags` bits of the information structure Keel reads.
const FLAG_MODS: u32 = 1 << 3;
const FLAG_MMAP: u32 = 1 << 6;
/// A memory map entry of type 1 is RAM for the OS.
const MMAP_AVAILABLE: u32 = 1;

/// A module: where it lies and its command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Module {
    pub range: Range<u64>,
    pub cmdline: String,
}

impl Module {
    /// The name Keel knows the module by: its command line, less a first
    /// word that is the file's path. QEMU's `-initrd "FILE NAME"` and GRUB
    /// Legacy pass "FILE NAME"; a loader that passes only "NAME" gives it
    /// unchanged.
    pub fn name(&self) -> &str {
        let line = self.cmdline.trim();
        match line.split_once(' ') {
            Some((_, rest)) => rest.trim(),
            None => line,
        }
    }
}

/// The parts of the boot information Keel uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootInfo {
    pub modules: Vec<Module>,
    /// RAM the memory map calls available.
    pub available: Vec<Range<u64>>,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from(u32_at(b, at)) | u64::from(u32_at(b, at + 4)) << 32
}

/// Reads the information structure at `mbi` through `read(address, buf)`,
/// which fills `buf` from physical memory or answers `false` where it
/// cannot.
pub fn parse(read: &mut dyn FnMut(u64, &mut [u8]) -> bool, mbi: u64) -> Result<BootInfo, String> {
    let mut info = [0u8; 52];
    if !read(mbi, &mut info) {
        return Err(format!("the boot information at {mbi:#x} is unreadable"));
    }
    let flags = u32_at(&info, 0);
    if flags & FLAG_MMAP == 0 {
        return Err(String::from("the boot loader passed no memory map"));
    }
    let mut modules = Vec::new();
    if flags & FLAG_MODS != 0 {
        let (count, addr) = (u32_at(&info, 20), u32_at(&info, 24));
        if count > MAX_MODULES {
            return Err(format!(
                "the boot loader passed {count} modules; Keel takes at most {MAX_MODULES}"
            ));
        }
        for i in 0..u64::from(count) {
            let mut m = [0u8; 16];
            if !read(u64::from(addr) + 16 * i, &mut m) {
                return Err(format!("module {i}'s entry is unreadable"));
            }
            let (start, end) = (u64::from(u32_at(&m, 0)), u64::from(u32_at(&m, 4)));
            if end < start {
                return Err(format!(
                    "module {i} ends ({end:#x}) before it starts ({start:#x})"
                ));
            }
            let cmdline = match u32_at(&m, 8) {
                0 => String::new(),
                at => c_string(read, u64::from(at))
                    .ok_or_else(|| format!("module {i}'s command line is unreadable"))?,
            };
            modules.push(Module {
                range: start..end,
                cmdline,
            });
        }
    }
    let (length, addr) = (u32_at(&info, 44), u64::from(u32_at(&info, 48)));
    if length > MAX_MMAP_BYTES {
        return Err(format!(
            "the memory map is {length} bytes; Keel takes at most {MAX_MMAP_BYTES}"
        ));
    }
    let mut map = alloc::vec![0u8; length as usize];
    if !read(addr, &mut map) {
        return Err(String::from("the memory map is unreadable"));
    }
    // Each entry: its size (not counting the size field itself), base,
    // length, type (Multiboot 0.6.96, 3.3, "mmap_*").
    let mut available = Vec::new();
    let mut at = 0usize;
    while at + 4 <= map.len() {
        let size = u32_at(&map, at) as usize;
        if size < 20 || at + 4 + size > map.len() {
            return Err(format!("a memory map entry at offset {at} has size {size}"));
        }
        let (base, len, kind) = (
            u64_at(&map, at + 4),
            u64_at(&map, at + 12),
            u32_at(&map, at + 20),
        );
        if kind == MMAP_AVAILABLE && len > 0 {
            available.push(base..base.saturating_add(len));
        }
        at += 4 + size;
    }
    Ok(BootInfo { modules, available })
}

/// The NUL-terminated string at `at`, at most [`MAX_CMDLINE`] bytes.
fn c_string(read: &mut dyn FnMut(u64, &mut [u8]) -> bool, at: u64) -> Option<String> {
    let mut bytes = Vec::new();
    let mut b = [0u8; 1];
    while bytes.len() < MAX_CMDLINE {
        if !read(at + bytes.len() as u64, &mut b) {
            return None;
        }
        if b[0] == 0 {
            break;
        }
        bytes.push(b[0]);
    }
    Some(String::from_utf8_lossy(&bytes).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    /// Physical memory of 64 KiB for the tests.
    struct Phys(Vec<u8>);

    impl Phys {
        fn put(&mut self, at: usize, bytes: &[u8]) {
            self.0[at..at + bytes.len()].copy_from_slice(bytes);
        }
        fn put32(&mut self, at: usize, v: u32) {
            self.put(at, &v.to_le_bytes());
        }
        fn reader(&self) -> impl FnMut(u64, &mut [u8]) -> bool + '_ {
            move |a, buf| {
                let a = a as usize;
                match self.0.get(a..a + buf.len()) {
                    Some(src) => {
                        buf.copy_from_slice(src);
                        true
                    }
                    None => false,
                }
            }
        }
    }

    /// Information at 0x100 with two modules (QEMU's "FILE NAME" form and a
    /// bare name) and a memory map of RAM, a hole and RAM above 4 GiB.
    fn machine() -> Phys {
        let mut p = Phys(vec![0; 0x10000]);
        p.put32(0x100, FLAG_MODS | FLAG_MMAP | 1);
        p.put32(0x100 + 20, 2);
        p.put32(0x100 + 24, 0x200);
        p.put32(0x200, 0x40_0000);
        p.put32(0x204, 0x40_1000);
        p.put32(0x208, 0x300);
        p.put32(0x210, 0x50_0000);
        p.put32(0x214, 0x50_0200);
        p.put32(0x218, 0x340);
        p.put(0x300, b"/tmp/keel/boot/disk.img disk.img\0");
        p.put(0x340, b"config\0");
        let map_at = 0x400;
        let entries: [(u64, u64, u32); 3] = [
            (0, 0x9_fc00, 1),
            (0xf_0000, 0x1_0000, 2),
            (0x1_0000_0000, 0x4000_0000, 1),
        ];
        for (i, (base, len, kind)) in entries.iter().enumerate() {
            let e = map_at + 24 * i;
            p.put32(e, 20);
            p.put(e + 4, &base.to_le_bytes());
            p.put(e + 12, &len.to_le_bytes());
            p.put32(e + 20, *kind);
        }
        p.put32(0x100 + 44, 72);
        p.put32(0x100 + 48, map_at as u32);
        p
    }

    #[test]
    fn modules_names_and_available_memory() {
        let p = machine();
        let info = parse(&mut p.reader(), 0x100).unwrap();
        assert_eq!(info.modules.len(), 2);
        assert_eq!(info.modules[0].range, 0x40_0000..0x40_1000);
        assert_eq!(info.modules[0].name(), "disk.img");
        assert_eq!(info.modules[1].name(), "config");
        assert_eq!(info.available, [0..0x9_fc00, 0x1_0000_0000..0x1_4000_0000]);
    }

    #[test]
    fn bad_structures_are_refused_with_what_was_wrong() {
        let mut p = machine();
        p.put32(0x100 + 20, MAX_MODULES + 1);
        let e = parse(&mut p.reader(), 0x100).unwrap_err();
        assert!(e.contains("257 modules"), "{e}");

        let mut p = machine();
        p.put32(0x210, 0x60_0000);
        let e = parse(&mut p.reader(), 0x100).unwrap_err();
        assert!(e.contains("module 1 ends"), "{e}");

        let mut p = machine();
        p.put32(0x400 + 24, 4);
        let e = parse(&mut p.reader(), 0x100).unwrap_err();
        assert!(e.contains("has size 4"), "{e}");

        let mut p = machine();
        p.put32(0x100 + 48, 0xfff0);
        let e = parse(&mut p.reader(), 0x100).unwrap_err();
        assert!(e.contains("memory map is unreadable"), "{e}");

        let mut p = machine();
        p.put32(0x100, FLAG_MODS);
        assert!(parse(&mut p.reader(), 0x100)
            .unwrap_err()
            .contains("no memory map"));
        assert!(parse(&mut p.reader(), 0xfff0).is_err(), "info past memory");
    }

    #[test]
    fn an_unterminated_command_line_stops_at_the_bound() {
        let mut p = machine();
        let long = vec![b'x'; MAX_CMDLINE + 100];
        p.put(0x2000, &long);
        p.put32(0x208, 0x2000);
        let info = parse(&mut p.reader(), 0x100).unwrap();
        assert_eq!(info.modules[0].cmdline.len(), MAX_CMDLINE);
    }
}
