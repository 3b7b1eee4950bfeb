//! Disk specifications in the xl disk syntax (xl-disk-configuration(5)):
//! positional `TARGET[,FORMAT[,VDEV[,ACCESS]]]`, where VDEV may carry the
//! device type as `hdc:cdrom`, and `devtype=cdrom` may appear as a key; the
//! older three-field form `[FORMAT:]TARGET,VDEV,ACCESS` (`file:disk.img,hda,w`)
//! is read too. Keel emulates IDE, so the virtual devices are `hda`-`hdd`.

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

/// One `disk = [ ... ]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiskSpec {
    /// The image: a file next to the configuration, shipped as a boot module
    /// whose command line is this string.
    pub target: String,
    pub slot: IdeSlot,
    pub cdrom: bool,
    pub writable: bool,
}

impl DiskSpec {
    /// Parses one entry; the error says what is wrong with it.
    pub fn parse(spec: &str) -> Result<DiskSpec, String> {
        let mut positional = alloc::vec::Vec::new();
        let mut cdrom = false;
        let mut access = None;
        for field in spec.split(',').map(str::trim) {
            match field.split_once('=') {
                Some(("devtype", "cdrom")) => cdrom = true,
                Some(("devtype", "disk")) => {}
                Some(("target", t)) => positional.insert(0, t),
                Some(("format", f)) => positional.push(f),
                Some(("vdev", v)) => positional.push(v),
                Some(("access", a)) => access = Some(a),
                Some((k, _)) => {
                    return Err(format!("'{k}=' is not a disk setting Keel understands"))
                }
                None => positional.push(field),
            }
        }
        // The legacy form: FORMAT:TARGET,VDEV,ACCESS.
        let legacy = positional.len() == 3 && looks_like_vdev(positional[1]);
        if legacy {
            let (format, target) = match positional[0].split_once(':') {
                Some(("file" | "raw", t)) => ("raw", t),
                Some((f, t)) => (f, t),
                None => ("raw", positional[0]),
            };
            let (vdev, acc) = (positional[1], positional[2]);
            positional = alloc::vec![target, format, vdev, acc];
        }
        let target = positional
            .first()
            .copied()
            .filter(|t| !t.is_empty())
            .ok_or("a disk needs a target (the image)")?;
        let format = positional.get(1).copied().unwrap_or("raw");
        if !format.is_empty() && format != "raw" {
            return Err(format!("format '{format}': Keel reads raw images only"));
        }
        let vdev = positional
            .get(2)
            .copied()
            .ok_or("a disk needs a virtual device, such as hda or hdc:cdrom")?;
        let (vdev, kind) = match vdev.split_once(':') {
            Some((v, "cdrom")) => (v, true),
            Some((_, other)) => {
                return Err(format!("device type '{other}': only ':cdrom' is known"))
            }
            None => (vdev, false),
        };
        cdrom |= kind;
        let slot = match vdev {
            "hda" => IdeSlot::PrimaryMaster,
            "hdb" => IdeSlot::PrimarySlave,
            "hdc" => IdeSlot::SecondaryMaster,
            "hdd" => IdeSlot::SecondarySlave,
            other => {
                return Err(format!(
                    "virtual device '{other}': Keel emulates IDE, use hda, hdb, hdc or hdd"
                ))
            }
        };
        let access =
            access
                .or(positional.get(3).copied())
                .unwrap_or(if cdrom { "r" } else { "rw" });
        let writable = match access {
            "rw" | "w" => true,
            "r" | "ro" => false,
            other => return Err(format!("access '{other}': use r or rw")),
        };
        if cdrom && writable {
            return Err("a CD-ROM is read-only: use access r".to_string());
        }
        Ok(DiskSpec {
            target: target.to_string(),
            slot,
            cdrom,
            writable,
        })
    }
}

fn looks_like_vdev(s: &str) -> bool {
    ["hd", "sd", "xvd"]
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
                slot: IdeSlot::PrimaryMaster,
                cdrom: false,
                writable: true
            }
        );
        assert_eq!(
            DiskSpec::parse("debian.iso,raw,hdc:cdrom,r").unwrap(),
            DiskSpec {
                target: "debian.iso".into(),
                slot: IdeSlot::SecondaryMaster,
                cdrom: true,
                writable: false
            }
        );
        let d = DiskSpec::parse("boot.img, , hdb").unwrap();
        assert!(d.writable && d.slot == IdeSlot::PrimarySlave);
        let c = DiskSpec::parse("x.iso,raw,hdd,devtype=cdrom").unwrap();
        assert!(c.cdrom && !c.writable);
        let l = DiskSpec::parse("file:disk.img,hda,w").unwrap();
        assert_eq!(
            (l.target.as_str(), l.slot, l.writable),
            ("disk.img", IdeSlot::PrimaryMaster, true)
        );
        assert!(DiskSpec::parse("phy:/dev/vg/web,xvda,w")
            .unwrap_err()
            .contains("raw images only"));
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
}
