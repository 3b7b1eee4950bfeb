//! QEMU's fw_cfg interface as Keel and QEMU implement it (QEMU
//! docs/specs/fw_cfg.rst): selector port 0x510 (16-bit write), data port
//! 0x511 (8-bit reads), DMA descriptor address at 0x514 (high dword) and
//! 0x518 (low dword, which starts the transfer), both big-endian.

/// Selector port.
pub const SELECTOR_PORT: u16 = 0x510;
/// Data port.
pub const DATA_PORT: u16 = 0x511;
/// DMA address port (high dword; the low dword is at +4).
pub const DMA_PORT: u16 = 0x514;

/// Well-known keys.
pub mod key {
    pub const SIGNATURE: u16 = 0x0000;
    pub const ID: u16 = 0x0001;
    pub const FILE_DIR: u16 = 0x0019;
}

/// The signature key reads these four bytes.
pub const SIGNATURE: [u8; 4] = *b"QEMU";
/// ID key bit: the DMA interface exists.
pub const ID_DMA: u32 = 1 << 1;

/// DMA control bits (the descriptor's first big-endian dword).
pub mod dma {
    pub const ERROR: u32 = 1 << 0;
    pub const READ: u32 = 1 << 1;
    pub const SKIP: u32 = 1 << 2;
    pub const SELECT: u32 = 1 << 3;
}

/// The files of the shim's contract (`firmware/README.md`).
pub mod files {
    pub const KERNEL: &str = "opt/keel/kernel";
    pub const INITRD: &str = "opt/keel/initrd";
    pub const INITRD_CMDLINE: &str = "opt/keel/initrd-cmdline";
    pub const CMDLINE: &str = "opt/keel/cmdline";
    pub const ACPI: &str = "opt/keel/acpi";
    pub const E820: &str = "etc/e820";
    /// The kernel's name, the multiboot command line's first word.
    pub const KERNEL_NAME: &str = "opt/keel/kernel-name";
    /// Multiboot modules after the initrd: `opt/keel/module1` to
    /// `opt/keel/module15`, each with `opt/keel/moduleN-cmdline`.
    pub const MODULE_PREFIX: &str = "opt/keel/module";
    pub const CMDLINE_SUFFIX: &str = "-cmdline";
}

/// Which module file `name` is: `Some((n, false))` for `opt/keel/moduleN`,
/// `Some((n, true))` for its `-cmdline`, with `1 <= n < max`.
pub fn module_file(name: &[u8], max: usize) -> Option<(usize, bool)> {
    let rest = name.strip_prefix(files::MODULE_PREFIX.as_bytes())?;
    let (digits, cmdline) = match rest.strip_suffix(files::CMDLINE_SUFFIX.as_bytes()) {
        Some(d) => (d, true),
        None => (rest, false),
    };
    if digits.is_empty() || digits.len() > 2 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n = digits
        .iter()
        .fold(0usize, |a, d| a * 10 + usize::from(d - b'0'));
    (n >= 1 && n < max && digits[0] != b'0').then_some((n, cmdline))
}

/// Length of a file name in a directory entry (NUL-padded).
pub const NAME_LEN: usize = 56;
/// Size of one directory entry.
pub const DIR_ENTRY_LEN: usize = 64;

/// One entry of the file directory (key 0x19): be32 size, be16 select,
/// be16 reserved, 56 bytes of NUL-padded name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FileEntry {
    pub size: u32,
    pub select: u16,
    pub name: [u8; NAME_LEN],
}

impl FileEntry {
    pub fn parse(b: &[u8; DIR_ENTRY_LEN]) -> Self {
        let mut name = [0; NAME_LEN];
        name.copy_from_slice(&b[8..8 + NAME_LEN]);
        FileEntry {
            size: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            select: u16::from_be_bytes([b[4], b[5]]),
            name,
        }
    }

    /// The name up to its first NUL.
    pub fn name(&self) -> &[u8] {
        let n = self.name.iter().position(|&c| c == 0).unwrap_or(NAME_LEN);
        &self.name[..n]
    }

    pub fn is(&self, name: &str) -> bool {
        self.name() == name.as_bytes()
    }
}

/// A DMA descriptor: be32 control (select key in the high half), be32
/// length, be64 guest-physical address.
pub fn dma_descriptor(control: u32, len: u32, address: u64) -> [u8; 16] {
    let mut d = [0; 16];
    d[0..4].copy_from_slice(&control.to_be_bytes());
    d[4..8].copy_from_slice(&len.to_be_bytes());
    d[8..16].copy_from_slice(&address.to_be_bytes());
    d
}

/// The control word that selects `key` and reads.
pub fn select_and_read(key: u16) -> u32 {
    u32::from(key) << 16 | dma::SELECT | dma::READ
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_file_names() {
        assert_eq!(module_file(b"opt/keel/module1", 16), Some((1, false)));
        assert_eq!(
            module_file(b"opt/keel/module15-cmdline", 16),
            Some((15, true))
        );
        for bad in [
            &b"opt/keel/module0"[..],
            b"opt/keel/module16",
            b"opt/keel/module01",
            b"opt/keel/module",
            b"opt/keel/module-cmdline",
            b"opt/keel/modulex",
            b"opt/keel/module123",
        ] {
            assert_eq!(module_file(bad, 16), None, "{bad:?}");
        }
    }

    #[test]
    fn directory_entries_parse() {
        let mut b = [0u8; 64];
        b[0..4].copy_from_slice(&0x0012_3456u32.to_be_bytes());
        b[4..6].copy_from_slice(&0x0021u16.to_be_bytes());
        b[8..8 + 15].copy_from_slice(b"opt/keel/kernel");
        let e = FileEntry::parse(&b);
        assert_eq!(e.size, 0x12_3456);
        assert_eq!(e.select, 0x21);
        assert!(e.is(files::KERNEL));
        assert!(!e.is("opt/keel/kerne"));
        assert!(!e.is("opt/keel/kernel2"));
    }

    #[test]
    fn dma_descriptors_are_big_endian() {
        let d = dma_descriptor(select_and_read(0x20), 0x1000, 0x1234_5678);
        assert_eq!(&d[0..4], &[0x00, 0x20, 0x00, 0x0A]);
        assert_eq!(&d[4..8], &[0, 0, 0x10, 0]);
        assert_eq!(&d[8..16], &[0, 0, 0, 0, 0x12, 0x34, 0x56, 0x78]);
    }
}
