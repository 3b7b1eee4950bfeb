//! What the shim says when it cannot boot: one line on COM1 and a status on
//! the debug-exit port (`firmware/README.md`, "Errors").

/// Where messages go: COM1 in the shim, a string in the tests.
pub trait Sink {
    fn str(&mut self, s: &str);
    /// `v` in decimal.
    fn dec(&mut self, v: u64) {
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut v = v;
        loop {
            i -= 1;
            buf[i] = b'0' + (v % 10) as u8;
            v /= 10;
            if v == 0 {
                break;
            }
        }
        self.str(core::str::from_utf8(&buf[i..]).unwrap_or("?"));
    }
    /// `v` as `0x` and hex digits, no leading zeros.
    fn hex(&mut self, v: u64) {
        let mut buf = [0u8; 18];
        let mut i = buf.len();
        let mut v = v;
        loop {
            i -= 1;
            let d = (v & 0xF) as u8;
            buf[i] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
            v >>= 4;
            if v == 0 {
                break;
            }
        }
        i -= 2;
        buf[i] = b'0';
        buf[i + 1] = b'x';
        self.str(core::str::from_utf8(&buf[i..]).unwrap_or("?"));
    }
}

/// Debug-exit status for each class of failure.
pub mod status {
    /// fw_cfg is missing or answers nonsense.
    pub const NO_FW_CFG: u32 = 2;
    /// There is no `opt/keel/kernel` (or `etc/e820`).
    pub const NO_KERNEL: u32 = 3;
    /// The kernel is neither a bzImage nor a multiboot kernel, or is malformed.
    pub const BAD_KERNEL: u32 = 4;
    /// The kernel, initrd or command line do not fit.
    pub const TOO_BIG: u32 = 5;
    /// `opt/keel/acpi` or `etc/e820` is malformed.
    pub const BAD_TABLES: u32 = 6;
    /// The shim itself failed (a Rust panic).
    pub const INTERNAL: u32 = 7;
}

/// Everything that stops a boot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Error {
    /// No fw_cfg signature at port 0x510.
    NoFwCfg,
    /// A file the shim needs is not in the fw_cfg directory.
    MissingFile(&'static str),
    /// `etc/e820` is not a whole number of 20-byte entries, or lists no RAM.
    BadE820,
    /// More e820 entries than the shim keeps.
    TooManyE820,
    /// `opt/keel/acpi` is malformed; the string says how.
    BadAcpi(&'static str),
    /// An ACPI blob would land outside RAM and the BIOS area.
    AcpiOutsideRam { address: u64, len: u64 },
    /// The kernel is neither a bzImage nor multiboot.
    UnknownKernel,
    /// A bzImage with a boot protocol older than 2.06 (`version` is the raw field).
    OldBootProtocol { version: u16 },
    /// A bzImage without a 64-bit entry point (XLF_KERNEL_64), or a zImage.
    NotBzImage64,
    /// A malformed bzImage or multiboot kernel; the string says how.
    BadKernel(&'static str),
    /// A multiboot header requirement bit the shim cannot honour.
    MultibootUnsupported { flags: u32 },
    /// Something of `len` bytes does not fit in RAM; the string names it.
    TooBig { what: &'static str, len: u64 },
    /// The command line is longer than the kernel or the shim accepts.
    CmdlineTooLong { len: u64, max: u64 },
    /// `what` at `address` (`len` bytes) would land on `with`.
    Overlap {
        what: &'static str,
        address: u64,
        len: u64,
        with: &'static str,
    },
    /// More modules than the shim passes, or modules given to a Linux kernel.
    TooManyModules { count: u32 },
    /// A gzip-compressed kernel that does not decompress; the string says why.
    BadGzip(&'static str),
}

impl Error {
    /// The debug-exit status for this error.
    pub fn status(&self) -> u32 {
        match self {
            Error::NoFwCfg => status::NO_FW_CFG,
            Error::MissingFile(_) => status::NO_KERNEL,
            Error::BadE820 | Error::TooManyE820 | Error::BadAcpi(_) => status::BAD_TABLES,
            Error::AcpiOutsideRam { .. } => status::BAD_TABLES,
            Error::UnknownKernel
            | Error::OldBootProtocol { .. }
            | Error::NotBzImage64
            | Error::BadKernel(_)
            | Error::MultibootUnsupported { .. }
            | Error::BadGzip(_) => status::BAD_KERNEL,
            Error::TooBig { .. }
            | Error::CmdlineTooLong { .. }
            | Error::Overlap { .. }
            | Error::TooManyModules { .. } => status::TOO_BIG,
        }
    }

    /// The message, without a trailing newline.
    pub fn describe(&self, out: &mut dyn Sink) {
        match *self {
            Error::NoFwCfg => out.str("no fw_cfg device at port 0x510 (signature is not \"QEMU\")"),
            Error::MissingFile(name) => {
                out.str("fw_cfg has no file ");
                out.str(name);
                if name == crate::fw_cfg::files::KERNEL {
                    out.str(": no kernel to boot");
                }
            }
            Error::BadE820 => out.str("etc/e820 is not a list of 20-byte entries with RAM in it"),
            Error::TooManyE820 => {
                out.str("the memory map has more than ");
                out.dec(crate::e820::MAX_ENTRIES as u64);
                out.str(" entries");
            }
            Error::BadAcpi(why) => {
                out.str("opt/keel/acpi: ");
                out.str(why);
            }
            Error::AcpiOutsideRam { address, len } => {
                out.str("opt/keel/acpi: a blob of ");
                out.dec(len);
                out.str(" bytes at ");
                out.hex(address);
                out.str(" is neither in RAM nor in 0xe0000-0xfffff");
            }
            Error::UnknownKernel => out.str(
                "bad magic: opt/keel/kernel is neither a Linux bzImage (no \"HdrS\" at 0x202) \
                 nor a multiboot kernel (no 0x1badb002 header in its first 8 KiB)",
            ),
            Error::OldBootProtocol { version } => {
                out.str("the bzImage speaks boot protocol ");
                out.dec(u64::from(version >> 8));
                out.str(if version & 0xFF < 10 { ".0" } else { "." });
                out.dec(u64::from(version & 0xFF));
                out.str("; the shim needs 2.06 or later");
            }
            Error::NotBzImage64 => out.str(
                "the Linux kernel has no 64-bit entry point (needs a bzImage with \
                 XLF_KERNEL_64, boot protocol 2.12+)",
            ),
            Error::BadKernel(why) => {
                out.str("bad kernel: ");
                out.str(why);
            }
            Error::MultibootUnsupported { flags } => {
                out.str("the multiboot header requires features the shim lacks (flags ");
                out.hex(u64::from(flags));
                out.str("; supported: page-aligned modules, memory info)");
            }
            Error::TooBig { what, len } => {
                out.str(what);
                out.str(" (");
                out.dec(len);
                out.str(" bytes) is too big for the VM's RAM");
            }
            Error::CmdlineTooLong { len, max } => {
                out.str("the command line is ");
                out.dec(len);
                out.str(" bytes; at most ");
                out.dec(max);
                out.str(" fit");
            }
            Error::Overlap {
                what,
                address,
                len,
                with,
            } => {
                out.str(what);
                out.str(" at ");
                out.hex(address);
                out.str(" (");
                out.dec(len);
                out.str(" bytes) overlaps ");
                out.str(with);
            }
            Error::TooManyModules { count } => {
                out.dec(u64::from(count));
                out.str(" modules: a multiboot kernel gets at most ");
                out.dec(crate::multiboot::MAX_MODULES as u64);
                out.str(", a Linux kernel one (its initrd)");
            }
            Error::BadGzip(why) => {
                out.str("the gzip-compressed kernel does not decompress: ");
                out.str(why);
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::string::String;

    impl Sink for String {
        fn str(&mut self, s: &str) {
            self.push_str(s);
        }
    }

    pub fn text(e: Error) -> String {
        let mut s = String::new();
        e.describe(&mut s);
        s
    }

    #[test]
    fn numbers_print() {
        let mut s = String::new();
        s.dec(0);
        s.str(" ");
        s.dec(18446744073709551615);
        s.str(" ");
        s.hex(0);
        s.str(" ");
        s.hex(0xE0000);
        s.str(" ");
        s.hex(u64::MAX);
        assert_eq!(s, "0 18446744073709551615 0x0 0xe0000 0xffffffffffffffff");
    }

    #[test]
    fn messages_name_the_problem() {
        assert_eq!(
            text(Error::MissingFile("opt/keel/kernel")),
            "fw_cfg has no file opt/keel/kernel: no kernel to boot"
        );
        assert_eq!(
            text(Error::OldBootProtocol { version: 0x205 }),
            "the bzImage speaks boot protocol 2.05; the shim needs 2.06 or later"
        );
        assert_eq!(
            text(Error::TooBig {
                what: "the initrd",
                len: 5
            }),
            "the initrd (5 bytes) is too big for the VM's RAM"
        );
        assert!(text(Error::UnknownKernel).starts_with("bad magic"));
        assert_eq!(Error::UnknownKernel.status(), status::BAD_KERNEL);
        assert_eq!(Error::MissingFile("x").status(), status::NO_KERNEL);
    }
}
