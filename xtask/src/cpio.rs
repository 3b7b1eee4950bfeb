//! A newc ("070701") cpio archive writer, the format the Linux kernel unpacks
//! as an initramfs (Documentation/driver-api/early-userspace/buffer-format.rst).
//!
//! Every header is the magic and thirteen 8-digit hex fields; the name
//! (with its NUL) is padded so the data starts on a multiple of 4, the data
//! is padded to a multiple of 4, and the archive ends with `TRAILER!!!`.

/// File type bits of `mode`.
pub const S_IFREG: u32 = 0o100000;
pub const S_IFDIR: u32 = 0o040000;
pub const S_IFLNK: u32 = 0o120000;
pub const S_IFCHR: u32 = 0o020000;

/// An archive being written.
#[derive(Debug, Default)]
pub struct Writer {
    out: Vec<u8>,
    next_ino: u32,
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            out: Vec::new(),
            next_ino: 1,
        }
    }

    fn entry(&mut self, name: &str, mode: u32, rdev: (u32, u32), data: &[u8]) {
        let ino = self.next_ino;
        self.next_ino += 1;
        let nlink = if mode & 0o170000 == S_IFDIR { 2 } else { 1 };
        let fields = [
            ino,
            mode,
            0, // uid
            0, // gid
            nlink,
            0, // mtime
            data.len() as u32,
            0, // dev major
            0, // dev minor
            rdev.0,
            rdev.1,
            name.len() as u32 + 1,
            0, // check
        ];
        self.out.extend_from_slice(b"070701");
        for f in fields {
            self.out.extend_from_slice(format!("{f:08X}").as_bytes());
        }
        self.out.extend_from_slice(name.as_bytes());
        self.out.push(0);
        self.pad();
        self.out.extend_from_slice(data);
        self.pad();
    }

    fn pad(&mut self) {
        while !self.out.len().is_multiple_of(4) {
            self.out.push(0);
        }
    }

    pub fn dir(&mut self, name: &str) {
        self.entry(name, S_IFDIR | 0o755, (0, 0), &[]);
    }

    pub fn file(&mut self, name: &str, perm: u32, data: &[u8]) {
        self.entry(name, S_IFREG | perm, (0, 0), data);
    }

    pub fn symlink(&mut self, name: &str, target: &str) {
        self.entry(name, S_IFLNK | 0o777, (0, 0), target.as_bytes());
    }

    pub fn char_dev(&mut self, name: &str, perm: u32, major: u32, minor: u32) {
        self.entry(name, S_IFCHR | perm, (major, minor), &[]);
    }

    /// The archive with its trailer.
    pub fn finish(mut self) -> Vec<u8> {
        self.next_ino = 0;
        self.entry("TRAILER!!!", 0, (0, 0), &[]);
        self.out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One entry read back: name, mode, data, rdev.
    type Entry = (String, u32, Vec<u8>, (u32, u32));

    /// Reads an archive back.
    fn parse(a: &[u8]) -> Vec<Entry> {
        let mut out = Vec::new();
        let mut at = 0;
        loop {
            assert_eq!(&a[at..at + 6], b"070701", "magic at {at}");
            let field = |i: usize| {
                let s = std::str::from_utf8(&a[at + 6 + 8 * i..at + 14 + 8 * i]).unwrap();
                u32::from_str_radix(s, 16).unwrap()
            };
            let (mode, size, rmaj, rmin, namesize) = (
                field(1),
                field(6) as usize,
                field(9),
                field(10),
                field(11) as usize,
            );
            let name_at = at + 110;
            let name = std::str::from_utf8(&a[name_at..name_at + namesize - 1]).unwrap();
            assert_eq!(a[name_at + namesize - 1], 0);
            let data_at = (name_at + namesize).next_multiple_of(4);
            let data = a[data_at..data_at + size].to_vec();
            at = (data_at + size).next_multiple_of(4);
            if name == "TRAILER!!!" {
                assert_eq!(at, a.len());
                return out;
            }
            out.push((name.to_string(), mode, data, (rmaj, rmin)));
        }
    }

    #[test]
    fn entries_read_back() {
        let mut w = Writer::new();
        w.dir("bin");
        w.file("bin/busybox", 0o755, b"\x7fELF...");
        w.symlink("bin/sh", "busybox");
        w.char_dev("dev/console", 0o600, 5, 1);
        w.file("init", 0o755, b"#!/bin/sh\n");
        let a = w.finish();
        assert_eq!(a.len() % 4, 0);
        let e = parse(&a);
        assert_eq!(e.len(), 5);
        assert_eq!(e[0].0, "bin");
        assert_eq!(e[0].1, S_IFDIR | 0o755);
        assert_eq!(
            e[1],
            (
                "bin/busybox".into(),
                S_IFREG | 0o755,
                b"\x7fELF...".to_vec(),
                (0, 0)
            )
        );
        assert_eq!(e[2].2, b"busybox");
        assert_eq!(e[2].1 & 0o170000, S_IFLNK);
        assert_eq!(e[3].3, (5, 1));
        assert_eq!(e[4].2, b"#!/bin/sh\n");
    }

    #[test]
    fn header_is_110_bytes_and_name_padding_aligns_data() {
        let mut w = Writer::new();
        w.file("ab", 0o644, b"x");
        let a = w.finish();
        // 110 + "ab\0" = 113 -> data at 116.
        assert_eq!(&a[110..113], b"ab\0");
        assert_eq!(a[116], b'x');
        assert_eq!(&a[0..6], b"070701");
        assert_eq!(&a[6 + 8 * 11..6 + 8 * 12], b"00000003");
    }
}
