//! What Xen's toolstack (libxl) writes for a domain before it runs, as far
//! as an unmodified Linux guest reads it: the domain's own directory, and a
//! frontend and a backend directory for each disk (public/io/blkif.h) and
//! NIC (public/io/netif.h), with the ownership xenbus expects: the guest
//! owns its frontend directories and may read its backends'; domain 0
//! owns the backend directories and the domain directory itself.

use alloc::string::String;
use core::fmt::Write;

use super::perms::Perms;
use super::wire::{XenbusState, XsError};
use super::XenStore;
use crate::xen::{DomId, BACKEND_DOMID};

/// One disk: a `vbd` device.
#[derive(Debug, Clone)]
pub struct VbdConfig {
    /// The xenbus device id, the `virtual-device` number Linux decodes
    /// into the disk's name (51712 = xvda, docs/misc/vbd-interface.txt).
    pub virtual_device: u32,
    /// The name shown in the backend's `dev` key (`xvda`).
    pub dev: &'static str,
    pub read_only: bool,
    /// A CD-ROM instead of a disk.
    pub cdrom: bool,
}

/// One NIC: a `vif` device.
#[derive(Debug, Clone)]
pub struct VifConfig {
    /// The device id and `handle` (0 for the first NIC).
    pub handle: u32,
    pub mac: [u8; 6],
}

/// The domain as the toolstack describes it.
#[derive(Debug, Clone)]
pub struct DomainConfig<'a> {
    pub domid: DomId,
    pub name: &'a str,
    /// The balloon target, KiB (`memory/target`).
    pub memory_kib: u64,
    pub vbds: &'a [VbdConfig],
    pub vifs: &'a [VifConfig],
}

/// `/local/domain/<domid>/device/<kind>/<id>`: where a frontend lives.
pub fn frontend_dir(domid: DomId, kind: &str, id: u32) -> String {
    let mut s = String::with_capacity(48);
    let _ = write!(s, "/local/domain/{domid}/device/{kind}/{id}");
    s
}

/// `/local/domain/0/backend/<kind>/<domid>/<id>`: where its backend lives.
pub fn backend_dir(domid: DomId, kind: &str, id: u32) -> String {
    let mut s = String::with_capacity(48);
    let _ = write!(
        s,
        "/local/domain/{BACKEND_DOMID}/backend/{kind}/{domid}/{id}"
    );
    s
}

fn key(dir: &str, k: &str) -> String {
    let mut s = String::with_capacity(dir.len() + k.len() + 1);
    s.push_str(dir);
    s.push('/');
    s.push_str(k);
    s
}

fn num(v: impl core::fmt::Display) -> String {
    let mut s = String::new();
    let _ = write!(s, "{v}");
    s
}

impl XenStore {
    /// Writes the tree the toolstack makes for `d`. Subdirectories a guest
    /// writes in (`device`, `control`, `data`, `drivers`, `feature`,
    /// `attr`, `error`) are the guest's; the rest of its directory is
    /// readable but not writable by it.
    pub fn populate_domain(&mut self, d: &DomainConfig) -> Result<(), XsError> {
        let guest = d.domid;
        let home = super::path::domain_path(guest);
        let read_only = Perms::shared_read(BACKEND_DOMID, guest);
        let own = Perms::shared_read(guest, BACKEND_DOMID);
        self.mkdir_with(&home, read_only)?;
        self.write(&key(&home, "name"), d.name.as_bytes())?;
        self.write(&key(&home, "domid"), num(guest).as_bytes())?;
        self.write(&key(&home, "memory/target"), num(d.memory_kib).as_bytes())?;
        self.write(
            &key(&home, "memory/static-max"),
            num(d.memory_kib).as_bytes(),
        )?;
        for sub in [
            "device", "control", "data", "drivers", "feature", "attr", "error",
        ] {
            self.mkdir_with(&key(&home, sub), own)?;
        }
        self.mkdir_with(&key(&home, "device/vbd"), own)?;
        self.mkdir_with(&key(&home, "device/vif"), own)?;
        // Linux announces these only where the toolstack made the key.
        for k in ["control/shutdown", "control/sysrq"] {
            self.mkdir_with(&key(&home, k), own)?;
        }

        for v in d.vbds {
            let fe = frontend_dir(guest, "vbd", v.virtual_device);
            let be = backend_dir(guest, "vbd", v.virtual_device);
            self.device_pair(guest, &fe, &be)?;
            let device_type: &[u8] = if v.cdrom { b"cdrom" } else { b"disk" };
            self.write(
                &key(&fe, "virtual-device"),
                num(v.virtual_device).as_bytes(),
            )?;
            self.write(&key(&fe, "device-type"), device_type)?;
            self.write(&key(&be, "device-type"), device_type)?;
            self.write(&key(&be, "dev"), v.dev.as_bytes())?;
            self.write(&key(&be, "type"), b"phy")?;
            self.write(&key(&be, "mode"), if v.read_only { b"r" } else { b"w" })?;
            self.write(&key(&be, "removable"), if v.cdrom { b"1" } else { b"0" })?;
            self.write(&key(&be, "bootable"), b"1")?;
        }
        for n in d.vifs {
            let fe = frontend_dir(guest, "vif", n.handle);
            let be = backend_dir(guest, "vif", n.handle);
            self.device_pair(guest, &fe, &be)?;
            let mut mac = String::with_capacity(17);
            for (i, b) in n.mac.iter().enumerate() {
                let _ = write!(mac, "{}{b:02x}", if i == 0 { "" } else { ":" });
            }
            for dir in [&fe, &be] {
                self.write(&key(dir, "handle"), num(n.handle).as_bytes())?;
                self.write(&key(dir, "mac"), mac.as_bytes())?;
            }
        }
        Ok(())
    }

    /// The keys both ends of any xenbus device start with: each names the
    /// other, both `state` Initialising (public/io/xenbus.h).
    fn device_pair(&mut self, guest: DomId, fe: &str, be: &str) -> Result<(), XsError> {
        self.mkdir_with(fe, Perms::shared_read(guest, BACKEND_DOMID))?;
        self.mkdir_with(be, Perms::shared_read(BACKEND_DOMID, guest))?;
        self.write(&key(fe, "backend"), be.as_bytes())?;
        self.write(&key(fe, "backend-id"), num(BACKEND_DOMID).as_bytes())?;
        self.write_state(fe, XenbusState::Initialising)?;
        self.write(&key(be, "frontend"), fe.as_bytes())?;
        self.write(&key(be, "frontend-id"), num(guest).as_bytes())?;
        self.write(&key(be, "online"), b"1")?;
        self.write_state(be, XenbusState::Initialising)?;
        Ok(())
    }
}
