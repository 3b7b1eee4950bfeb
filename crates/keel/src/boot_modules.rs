//! The boot modules GRUB loaded, by the names VM configurations use for
//! them: read by every VM that names them (firmware, kernels, initrds), or
//! handed to one VM for good when it writes them (a volatile RAM disk).
//! One boot of several VMs carries each image once (`cargo xtask run --vm
//! a.cfg --vm b.cfg`), so two VMs booting the same kernel share its module.

use alloc::string::String;
use alloc::vec::Vec;

pub struct BootModules {
    /// Not yet lent to anyone: still writable by the one VM that takes it.
    owned: Vec<(String, &'static mut [u8])>,
    /// Lent read-only for the rest of Keel's run.
    shared: Vec<(String, &'static [u8])>,
}

impl BootModules {
    pub fn new(modules: Vec<(String, &'static mut [u8])>) -> Self {
        BootModules {
            owned: modules,
            shared: Vec::new(),
        }
    }

    /// The bytes of module `name`, to read now (a firmware image a VM copies).
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.owned
            .iter()
            .find(|(n, _)| n == name)
            .map(|m| &*m.1)
            .or_else(|| self.shared.iter().find(|(n, _)| n == name).map(|m| m.1))
    }

    /// Hands module `name` over for good to the one VM that writes it;
    /// `None` when no module has that name, or it was taken or lent already
    /// (a disk written by one VM cannot be another's kernel).
    pub fn take(&mut self, name: &str) -> Option<&'static mut [u8]> {
        let i = self.owned.iter().position(|(n, _)| n == name)?;
        Some(self.owned.swap_remove(i).1)
    }

    /// Module `name`, read-only from now on: every VM that names it gets the
    /// same bytes (direct boot's kernel and initrd, which fw_cfg only reads).
    pub fn share(&mut self, name: &str) -> Option<&'static [u8]> {
        if let Some((_, bytes)) = self.shared.iter().find(|(n, _)| n == name) {
            return Some(bytes);
        }
        let bytes: &'static [u8] = self.take(name)?;
        self.shared.push((String::from(name), bytes));
        Some(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn module(name: &str, bytes: &[u8]) -> (String, &'static mut [u8]) {
        (String::from(name), Vec::from(bytes).leak())
    }

    /// Two VMs that boot one kernel (one module in a boot of both) each get
    /// it; a module that one VM writes is no one else's.
    #[test]
    fn kernels_are_shared_and_written_disks_are_not() {
        let mut m = BootModules::new(Vec::from([
            module("debian-linux", b"kernel"),
            module("disk", b"sectors"),
        ]));
        let first = m.share("debian-linux").unwrap();
        let second = m.share("debian-linux").unwrap();
        assert_eq!(first, b"kernel");
        assert!(core::ptr::eq(first, second), "the same bytes, not a copy");
        assert_eq!(m.get("debian-linux"), Some(&b"kernel"[..]));
        assert_eq!(m.take("debian-linux"), None, "lent read-only for good");

        let disk = m.take("disk").unwrap();
        disk[0] = b'S';
        assert_eq!(m.take("disk"), None);
        assert_eq!(m.share("disk"), None);
        assert_eq!(m.get("disk"), None);
        assert_eq!(m.share("absent"), None);
    }
}
