//! Disk specifications in the xl disk syntax (xl-disk-configuration(5)):
//! positional `TARGET[,FORMAT[,VDEV[,ACCESS]]]`, where VDEV may carry the
//! device type as `hdc:cdrom`, and `devtype=cdrom` may appear as a key; the
//! older three-field form `[FORMAT:]TARGET,VDEV,ACCESS` (`file:disk.img,hda,w`)
//! is read too. Keel emulates IDE, so the virtual devices are `hda`-`hdd`;
//! with xl's `specification=virtio` the disk is a virtio-blk device instead,
//! named `xvda`, `xvdb`, ... or `vda`, `vdb`, ... (the letter orders the
//! virtio disks): `'disk.img,raw,xvda,rw,specification=virtio'`.
//!
//! A disk is backed by an image file (shipped as a boot module, a RAM disk
//! whose writes last until Keel stops) or, with xl's backend type `phy` (a
//! host block device), by one of the machine's own virtio-blk disks, named
//! `virtio0`, `virtio1`, ... in PCI scan order: `'phy:virtio0,hda,w'`, or
//! with keys `'target=virtio0,vdev=hda,access=rw,backendtype=phy'`. Writes to
//! such a disk persist.
//!
//! A writable image file is made persistent by the tool that builds the boot
//! ISO (`cargo xtask`): it attaches the file as one of the machine's virtio-blk
//! disks and rewrites the entry to `phy:virtioN` in the configuration it ships.
//! Keel's own flag `volatile` (a bare word, like xl's `cdrom`) keeps an image
//! in RAM instead: `'disk.img,raw,hda,rw,volatile'`.

use alloc::format;
use alloc::string::{String, ToString};

/// Where an IDE device sits: `hda` primary master ... `hdd` secondary slave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdeSlot {
    PrimaryMaster,
    PrimarySlave,
    SecondaryMaster,
    SecondarySlave,
}

impl IdeSlot {
    /// Every slot of the two IDE channels.
    pub const ALL: [IdeSlot; 4] = [
        IdeSlot::PrimaryMaster,
        IdeSlot::PrimarySlave,
        IdeSlot::SecondaryMaster,
        IdeSlot::SecondarySlave,
    ];

    /// The virtual device name of this slot in the xl disk syntax.
    pub fn vdev(self) -> &'static str {
        match self {
            IdeSlot::PrimaryMaster => "hda",
            IdeSlot::PrimarySlave => "hdb",
            IdeSlot::SecondaryMaster => "hdc",
            IdeSlot::SecondarySlave => "hdd",
        }
    }
}

/// The device a guest sees a disk as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskSlot {
    /// An IDE drive.
    Ide(IdeSlot),
    /// A virtio-blk device; `index` from the vdev's letter (`xvda` and
    /// `vda` are 0), `xvd` whether it was named `xvdX`.
    Virtio { index: u8, xvd: bool },
}

impl DiskSlot {
    /// The virtual device name in the xl disk syntax.
    pub fn vdev(self) -> String {
        match self {
            DiskSlot::Ide(s) => s.vdev().to_string(),
            DiskSlot::Virtio { index, xvd } => {
                format!(
                    "{}{}",
                    if xvd { "xvd" } else { "vd" },
                    char::from(b'a' + index)
                )
            }
        }
    }

    /// Whether two entries name the same device (`xvda` is `vda`).
    pub fn same_device(self, other: DiskSlot) -> bool {
        match (self, other) {
            (DiskSlot::Ide(a), DiskSlot::Ide(b)) => a == b,
            (DiskSlot::Virtio { index: a, .. }, DiskSlot::Virtio { index: b, .. }) => a == b,
            _ => false,
        }
    }
}

/// `xvdX` or `vdX` (X in a-z): the virtio disk's index and whether it is `xvd`.
fn virtio_vdev(vdev: &str) -> Option<(u8, bool)> {
    let (letter, xvd) = match vdev.strip_prefix("xvd") {
        Some(l) => (l, true),
        None => (vdev.strip_prefix("vd")?, false),
    };
    match letter.as_bytes() {
        [c @ b'a'..=b'z'] => Some((c - b'a', xvd)),
        _ => None,
    }
}

/// What holds a disk's sectors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DiskBackend {
    /// An image file next to the configuration, shipped as a boot module
    /// whose command line is the target: volatile.
    Module,
    /// The machine's N-th virtio-blk disk in PCI scan order (`phy:virtioN`):
    /// persistent.
    HostVirtio(u32),
}

/// The prefix of a host disk's name: `virtio0` is the first virtio-blk disk.
pub const HOST_DISK_PREFIX: &str = "virtio";

/// One `disk = [ ... ]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// The image (a file next to the configuration, shipped as a boot module
    /// whose command line is this string) or the host disk (`virtio0`).
    pub target: String,
    pub backend: DiskBackend,
    pub slot: DiskSlot,
    pub cdrom: bool,
    pub writable: bool,
    /// The `volatile` flag: the image stays a RAM disk even when writable,
    /// its writes lost when Keel stops.
    pub volatile: bool,
}

/// The bare flag that keeps a writable image file in RAM.
pub const VOLATILE_FLAG: &str = "volatile";

impl DiskSpec {
    /// Parses one entry; the error says what is wrong with it.
    pub fn parse(spec: &str) -> Result<DiskSpec, String> {
        // Slots TARGET, FORMAT, VDEV, ACCESS: a `key=` fills its own slot,
        // bare fields fill the remaining ones in order.
        let mut slots: [Option<&str>; 4] = [None; 4];
        let mut bare = alloc::vec::Vec::new();
        let mut cdrom = false;
        let mut backendtype = None;
        let mut volatile = false;
        let mut virtio = false;
        for field in spec.split(',').map(str::trim) {
            if field == VOLATILE_FLAG {
                volatile = true;
                continue;
            }
            match field.split_once('=') {
                Some(("devtype", "cdrom")) => cdrom = true,
                Some(("devtype", "disk")) => {}
                Some(("target", t)) => slots[0] = Some(t),
                Some(("format", f)) => slots[1] = Some(f),
                Some(("vdev", v)) => slots[2] = Some(v),
                Some(("access", a)) => slots[3] = Some(a),
                Some(("backendtype", b)) => backendtype = Some(b),
                Some(("specification", "virtio")) => virtio = true,
                Some(("specification", "xen")) => {}
                Some(("specification", other)) => {
                    return Err(format!(
                    "specification '{other}': Keel knows virtio (a virtio-blk disk) and xen (IDE)"
                ))
                }
                Some((k, _)) => {
                    return Err(format!("'{k}=' is not a disk setting Keel understands"))
                }
                None => bare.push(field),
            }
        }
        // The legacy form: [PREFIX:]TARGET,VDEV,ACCESS.
        let legacy =
            slots.iter().all(Option::is_none) && bare.len() == 3 && looks_like_vdev(bare[1]);
        if legacy {
            let (format, target) = match bare[0].split_once(':') {
                Some(("file" | "raw", t)) => ("raw", t),
                // xl's legacy `phy:` prefix is the backend type, not a format.
                Some(("phy", t)) => {
                    backendtype = Some("phy");
                    ("raw", t)
                }
                Some((f, t)) => (f, t),
                None => ("raw", bare[0]),
            };
            bare = alloc::vec![target, format, bare[1], bare[2]];
        }
        let mut bare = bare.into_iter();
        for slot in slots.iter_mut().filter(|s| s.is_none()) {
            *slot = bare.next();
        }
        if let Some(extra) = bare.next() {
            return Err(format!(
                "'{extra}': too many fields (TARGET,FORMAT,VDEV,ACCESS at most)"
            ));
        }
        let [target, format, vdev, access] = slots;
        let target = target
            .filter(|t| !t.is_empty())
            .ok_or("a disk needs a target (the image)")?;
        let backend = match backendtype {
            None => DiskBackend::Module,
            Some("phy") => DiskBackend::HostVirtio(host_disk_index(target)?),
            Some(other) => {
                return Err(format!(
                    "backendtype '{other}': Keel knows phy (a host disk such as virtio0) and \
                     image files (no backendtype)"
                ))
            }
        };
        let format = format.unwrap_or("raw");
        if !format.is_empty() && format != "raw" {
            return Err(format!("format '{format}': Keel reads raw images only"));
        }
        let vdev = vdev.ok_or("a disk needs a virtual device, such as hda or hdc:cdrom")?;
        let (vdev, kind) = match vdev.split_once(':') {
            Some((v, "cdrom")) => (v, true),
            Some((_, other)) => {
                return Err(format!("device type '{other}': only ':cdrom' is known"))
            }
            None => (vdev, false),
        };
        cdrom |= kind;
        let slot = if virtio {
            if cdrom {
                return Err("a virtio disk cannot be a CD-ROM".to_string());
            }
            let (index, xvd) = virtio_vdev(vdev).ok_or_else(|| {
                format!(
                    "virtual device '{vdev}': a virtio disk is xvda, xvdb, ... or vda, vdb, ..."
                )
            })?;
            DiskSlot::Virtio { index, xvd }
        } else {
            DiskSlot::Ide(
                IdeSlot::ALL
                    .into_iter()
                    .find(|s| s.vdev() == vdev)
                    .ok_or_else(|| {
                        format!(
                            "virtual device '{vdev}': Keel emulates IDE, use hda, hdb, hdc or hdd \
                     (or specification=virtio with xvda, vda, ...)"
                        )
                    })?,
            )
        };
        let access = access.unwrap_or(if cdrom { "r" } else { "rw" });
        let writable = match access {
            "rw" | "w" => true,
            "r" | "ro" => false,
            other => return Err(format!("access '{other}': use r or rw")),
        };
        if cdrom && writable {
            return Err("a CD-ROM is read-only: use access r".to_string());
        }
        if volatile && backend != DiskBackend::Module {
            return Err(format!(
                "'{VOLATILE_FLAG}' keeps an image file in RAM; a host disk ({target}) is \
                 always persistent"
            ));
        }
        Ok(DiskSpec {
            target: target.to_string(),
            backend,
            slot,
            cdrom,
            writable,
            volatile,
        })
    }

    /// The entry in xl's legacy form for the machine's `index`-th
    /// virtio-blk disk, keeping this entry's slot and access: what `cargo
    /// xtask` ships in place of a writable image file it attached there.
    pub fn on_host_disk(&self, index: u32) -> String {
        let spec = match self.slot {
            DiskSlot::Virtio { .. } => ",specification=virtio",
            DiskSlot::Ide(_) => "",
        };
        format!(
            "phy:{HOST_DISK_PREFIX}{index},{}{},{}{spec}",
            self.slot.vdev(),
            if self.cdrom { ":cdrom" } else { "" },
            if self.writable { "w" } else { "r" }
        )
    }
}

/// N from a host disk's name `virtioN`.
fn host_disk_index(target: &str) -> Result<u32, String> {
    target
        .strip_prefix(HOST_DISK_PREFIX)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            format!(
                "host disk '{target}': Keel's host disks are the machine's virtio-blk disks, \
                 named virtio0, virtio1, ... in PCI scan order"
            )
        })
}

fn looks_like_vdev(s: &str) -> bool {
    ["hd", "sd", "xvd", "vd"]
        .iter()
        .any(|p| s.split(':').next().is_some_and(|v| v.starts_with(p)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positional_specs() {
        assert_eq!(
            DiskSpec::parse("disk.img,raw,hda,rw").unwrap(),
            DiskSpec {
                target: "disk.img".into(),
                backend: DiskBackend::Module,
                slot: DiskSlot::Ide(IdeSlot::PrimaryMaster),
                cdrom: false,
                writable: true,
                volatile: false
            }
        );
        assert_eq!(
            DiskSpec::parse("debian.iso,raw,hdc:cdrom,r").unwrap(),
            DiskSpec {
                target: "debian.iso".into(),
                backend: DiskBackend::Module,
                slot: DiskSlot::Ide(IdeSlot::SecondaryMaster),
                cdrom: true,
                writable: false,
                volatile: false
            }
        );
        let d = DiskSpec::parse("boot.img, , hdb").unwrap();
        assert!(d.writable && d.slot == DiskSlot::Ide(IdeSlot::PrimarySlave));
        let c = DiskSpec::parse("x.iso,raw,hdd,devtype=cdrom").unwrap();
        assert!(c.cdrom && !c.writable);
        let l = DiskSpec::parse("file:disk.img,hda,w").unwrap();
        assert_eq!(
            (l.target.as_str(), l.slot, l.writable),
            ("disk.img", DiskSlot::Ide(IdeSlot::PrimaryMaster), true)
        );
        assert!(DiskSpec::parse("phy:/dev/vg/web,xvda,w")
            .unwrap_err()
            .contains("named virtio0, virtio1"));
    }

    #[test]
    fn host_virtio_disks() {
        let legacy = DiskSpec::parse("phy:virtio0,hda,w").unwrap();
        assert_eq!(
            legacy,
            DiskSpec {
                target: "virtio0".into(),
                backend: DiskBackend::HostVirtio(0),
                slot: DiskSlot::Ide(IdeSlot::PrimaryMaster),
                cdrom: false,
                writable: true,
                volatile: false
            }
        );
        let keyed = DiskSpec::parse("target=virtio0,vdev=hda,access=rw,backendtype=phy").unwrap();
        assert_eq!(keyed, legacy);
        let positional = DiskSpec::parse("virtio12,raw,hdb,r,backendtype=phy").unwrap();
        assert_eq!(positional.backend, DiskBackend::HostVirtio(12));
        assert_eq!(positional.slot, DiskSlot::Ide(IdeSlot::PrimarySlave));
        assert!(!positional.writable);
        let cd = DiskSpec::parse("phy:virtio1,hdc:cdrom,r").unwrap();
        assert!(cd.cdrom && cd.backend == DiskBackend::HostVirtio(1));
        // Without backendtype=phy, `virtio0` is just an image file's name.
        assert_eq!(
            DiskSpec::parse("virtio0,raw,hda,rw").unwrap().backend,
            DiskBackend::Module
        );
        for bad in ["phy:virtio,hda,w", "phy:virtio-1,hda,w", "phy:vda,hda,w"] {
            let e = DiskSpec::parse(bad).unwrap_err();
            assert!(e.contains("virtio0, virtio1"), "{bad}: {e}");
        }
        assert!(DiskSpec::parse("target=x.img,vdev=hda,backendtype=qdisk")
            .unwrap_err()
            .contains("backendtype 'qdisk'"));
        assert!(
            DiskSpec::parse("target=virtio0,format=qcow2,vdev=hda,backendtype=phy")
                .unwrap_err()
                .contains("raw images only")
        );
    }

    #[test]
    fn volatile_keeps_an_image_in_ram() {
        let v = DiskSpec::parse("disk.img,raw,hda,rw,volatile").unwrap();
        assert!(v.volatile && v.writable && v.backend == DiskBackend::Module);
        assert_eq!(v.slot, DiskSlot::Ide(IdeSlot::PrimaryMaster));
        // Anywhere in the entry, with keys or the legacy form.
        let keyed = DiskSpec::parse("volatile,target=disk.img,vdev=hdb,access=rw").unwrap();
        assert!(keyed.volatile && keyed.slot == DiskSlot::Ide(IdeSlot::PrimarySlave));
        let legacy = DiskSpec::parse("file:disk.img,hda,w,volatile").unwrap();
        assert!(legacy.volatile && legacy.target == "disk.img");
        assert!(!DiskSpec::parse("disk.img,raw,hda,rw").unwrap().volatile);
        assert!(DiskSpec::parse("phy:virtio0,hda,w,volatile")
            .unwrap_err()
            .contains("always persistent"));
    }

    #[test]
    fn an_image_moves_to_a_host_disk_with_its_slot_and_access() {
        let rw = DiskSpec::parse("disk.img,raw,hdb,rw").unwrap();
        assert_eq!(rw.on_host_disk(2), "phy:virtio2,hdb,w");
        let ro = DiskSpec::parse("target=x.iso,vdev=hdc,devtype=cdrom").unwrap();
        assert_eq!(ro.on_host_disk(0), "phy:virtio0,hdc:cdrom,r");
        // What it makes parses back to the same drive on that host disk.
        let back = DiskSpec::parse(&rw.on_host_disk(2)).unwrap();
        assert_eq!(
            (back.backend, back.slot, back.writable, back.cdrom),
            (DiskBackend::HostVirtio(2), rw.slot, true, false)
        );
    }

    #[test]
    fn mistakes_are_explained() {
        assert!(DiskSpec::parse("x.qcow2,qcow2,hda")
            .unwrap_err()
            .contains("raw images only"));
        assert!(DiskSpec::parse("x.img,raw,xvda")
            .unwrap_err()
            .contains("hda, hdb"));
        assert!(DiskSpec::parse("x.img,raw")
            .unwrap_err()
            .contains("virtual device"));
        assert!(DiskSpec::parse(",raw,hda").unwrap_err().contains("target"));
        assert!(DiskSpec::parse("x.iso,raw,hdc:cdrom,rw")
            .unwrap_err()
            .contains("read-only"));
        assert!(DiskSpec::parse("x.img,raw,hda,rwx")
            .unwrap_err()
            .contains("access"));
        assert!(DiskSpec::parse("x.img,raw,hda:floppy")
            .unwrap_err()
            .contains("device type"));
    }

    #[test]
    fn specification_virtio_makes_a_virtio_disk_named_xvd_or_vd() {
        let d = DiskSpec::parse("disk.img,raw,xvda,rw,specification=virtio").unwrap();
        assert_eq!(
            d.slot,
            DiskSlot::Virtio {
                index: 0,
                xvd: true
            }
        );
        assert!(d.writable && d.backend == DiskBackend::Module);
        let v = DiskSpec::parse(
            "target=virtio1,vdev=vdc,access=r,backendtype=phy,specification=virtio",
        )
        .unwrap();
        assert_eq!(
            v.slot,
            DiskSlot::Virtio {
                index: 2,
                xvd: false
            }
        );
        assert_eq!(v.backend, DiskBackend::HostVirtio(1));
        assert!(DiskSlot::Virtio {
            index: 0,
            xvd: true
        }
        .same_device(DiskSlot::Virtio {
            index: 0,
            xvd: false
        }));
        assert_eq!(v.slot.vdev(), "vdc");
        // The shipped form keeps the specification.
        let shipped = d.on_host_disk(3);
        assert_eq!(shipped, "phy:virtio3,xvda,w,specification=virtio");
        assert_eq!(DiskSpec::parse(&shipped).unwrap().slot, d.slot);
        for (bad, says) in [
            ("disk.img,raw,hda,rw,specification=virtio", "xvda"),
            ("disk.img,raw,xvdaa,rw,specification=virtio", "xvda"),
            ("cd.iso,raw,xvda:cdrom,r,specification=virtio", "CD-ROM"),
            ("disk.img,raw,xvda,rw", "specification=virtio"),
            ("disk.img,raw,xvda,rw,specification=scsi", "scsi"),
        ] {
            let e = DiskSpec::parse(bad).unwrap_err();
            assert!(e.contains(says), "{bad}: {e}");
        }
        assert!(DiskSpec::parse("disk.img,raw,hda,rw,specification=xen").is_ok());
    }
}
