//! Network interface specifications in the xl vif syntax
//! (xl-network-configuration(5)): comma-separated `KEY=VALUE` pairs, such as
//! `'model=e1000,mac=00:16:3e:01:02:03,bridge=virtio0'`.
//!
//! | key | default | meaning |
//! |---|---|---|
//! | `model` | `e1000` | the NIC: `e1000` (an emulated Intel 82540EM) or `virtio-net` (a paravirtual virtio 1.2 network device; `virtio-net-pci` and `virtio`, QEMU's names that xl passes on, mean the same) |
//! | `mac` | generated | the NIC's station address, `xx:xx:xx:xx:xx:xx`, unicast |
//! | `bridge` | `virtio0` | the machine's N-th virtio-net NIC (PCI scan order) whose Keel switch the NIC joins |
//! | `type` | `ioemu` | xl's emulated-NIC type; only `ioemu` (an emulated card) is accepted |
//! | `ip`, `script`, `vifname` | - | xl's hotplug-script settings: accepted and ignored (Keel runs no scripts) |
//!
//! Without `mac`, the address is derived from the VM's name and the vif's
//! position ([`generated_mac`]): stable across boots, locally administered
//! (IEEE 802 8.2: the U/L bit, bit 1 of the first octet, set) and unicast,
//! so it never collides with a vendor's address.

use alloc::format;
use alloc::string::String;

/// The prefix of a host NIC's name: `virtio0` is the first virtio-net NIC.
pub use crate::disk::HOST_DISK_PREFIX as HOST_NIC_PREFIX;

/// The emulated network card of a vif.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NicModel {
    /// An Intel 82540EM gigabit controller (8086:100E).
    E1000,
    /// A virtio network device (virtio 1.2 5.1, 1AF4:1000 transitional).
    VirtioNet,
}

impl NicModel {
    /// The name the vif syntax uses for the model.
    pub fn name(self) -> &'static str {
        match self {
            NicModel::E1000 => "e1000",
            NicModel::VirtioNet => "virtio-net",
        }
    }
}

/// One `vif = [ ... ]` entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VifSpec {
    pub model: NicModel,
    /// The station address; unicast, never all zeros.
    pub mac: [u8; 6],
    /// The host NIC behind the switch this vif joins: `virtio{bridge}`.
    pub bridge: u32,
}

impl VifSpec {
    /// Parses entry number `index` (from 0) of the VM named `vm_name`; the
    /// name and index give the MAC when the entry has none. The error says
    /// what is wrong with the entry.
    pub fn parse(spec: &str, vm_name: &str, index: usize) -> Result<VifSpec, String> {
        let mut model = NicModel::E1000;
        let mut mac = None;
        let mut bridge = 0;
        for field in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let Some((key, value)) = field.split_once('=') else {
                return Err(format!(
                    "'{field}' is not KEY=VALUE (such as model=e1000, mac=00:16:3e:01:02:03, \
                     bridge=virtio0)"
                ));
            };
            match (key.trim(), value.trim()) {
                ("model", "e1000") => model = NicModel::E1000,
                // xl hands the model to QEMU as a device name: QEMU's names
                // for it are accepted too.
                ("model", "virtio-net" | "virtio-net-pci" | "virtio") => {
                    model = NicModel::VirtioNet
                }
                ("model", other) => {
                    return Err(format!(
                        "model '{other}': Keel has the e1000 and virtio-net NICs"
                    ))
                }
                ("mac", m) => mac = Some(parse_mac(m)?),
                ("bridge", b) => bridge = host_nic_index(b)?,
                ("type", "ioemu") => {}
                ("type", other) => {
                    return Err(format!(
                        "type '{other}': Keel emulates the NIC (type=ioemu); it has no PV vif"
                    ))
                }
                // xl's hotplug-script settings: nothing for Keel to do.
                ("ip" | "script" | "vifname", _) => {}
                (other, _) => {
                    return Err(format!(
                        "'{other}=' is not a vif setting Keel understands (model, mac, bridge; \
                         type, ip, script and vifname are accepted and ignored)"
                    ))
                }
            }
        }
        Ok(VifSpec {
            model,
            mac: mac.unwrap_or_else(|| generated_mac(vm_name, index)),
            bridge,
        })
    }

    /// The host NIC's name, as configurations and logs write it (`virtio0`).
    pub fn bridge_name(&self) -> String {
        format!("{HOST_NIC_PREFIX}{}", self.bridge)
    }
}

/// `xx:xx:xx:xx:xx:xx`: six octets of two hex digits each, unicast, not all zeros.
fn parse_mac(text: &str) -> Result<[u8; 6], String> {
    let bad =
        || format!("mac '{text}': write six octets of two hex digits, such as 00:16:3e:01:02:03");
    let mut mac = [0u8; 6];
    let mut octets = text.split(':');
    for byte in mac.iter_mut() {
        let octet = octets.next().ok_or_else(bad)?;
        if octet.len() != 2 || !octet.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(bad());
        }
        *byte = u8::from_str_radix(octet, 16).map_err(|_| bad())?;
    }
    if octets.next().is_some() {
        return Err(bad());
    }
    // IEEE 802 8.2: the I/G bit (bit 0 of the first octet) marks a group address.
    if mac[0] & 1 != 0 {
        return Err(format!(
            "mac '{text}' is a multicast address (bit 0 of the first octet set); a NIC needs \
             a unicast address"
        ));
    }
    if mac == [0; 6] {
        return Err(format!(
            "mac '{text}': the all-zeros address is not a station address"
        ));
    }
    Ok(mac)
}

/// N from a host NIC's name `virtioN`.
fn host_nic_index(name: &str) -> Result<u32, String> {
    name.strip_prefix(HOST_NIC_PREFIX)
        .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| {
            format!(
                "bridge '{name}': Keel bridges to the machine's virtio-net NICs, named \
                 virtio0, virtio1, ... in PCI scan order"
            )
        })
}

/// The address of vif `index` of VM `vm_name` when its entry names none:
/// `02:` followed by five octets of the 64-bit FNV-1a hash of the name, a
/// NUL and the index. `02` is a locally administered (U/L bit set) unicast
/// (I/G bit clear) first octet (IEEE 802 8.2), so it cannot be a vendor's
/// address; the same name and index always give the same address.
pub fn generated_mac(vm_name: &str, index: usize) -> [u8; 6] {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let bytes = vm_name
        .bytes()
        .chain([0])
        .chain((index as u64).to_le_bytes());
    let hash = bytes.fold(FNV_OFFSET, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(FNV_PRIME)
    });
    let h = hash.to_le_bytes();
    [0x02, h[0], h[1], h[2], h[3], h[4]]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_issue_example_and_defaults() {
        let v =
            VifSpec::parse("model=e1000,mac=00:16:3e:0a:bc:ff,bridge=virtio1", "vm", 0).unwrap();
        assert_eq!(
            v,
            VifSpec {
                model: NicModel::E1000,
                mac: [0x00, 0x16, 0x3e, 0x0a, 0xbc, 0xff],
                bridge: 1
            }
        );
        assert_eq!(v.bridge_name(), "virtio1");
        let d = VifSpec::parse("", "vm", 0).unwrap();
        assert_eq!((d.model, d.bridge), (NicModel::E1000, 0));
        assert_eq!(d.mac, generated_mac("vm", 0));
        // Upper-case hex, spaces around fields, and xl's harmless keys.
        let x = VifSpec::parse(
            " mac=02:AB:cd:00:00:01 , type=ioemu, ip=10.0.0.2, script=vif-bridge, vifname=v0",
            "vm",
            3,
        )
        .unwrap();
        assert_eq!(x.mac, [0x02, 0xab, 0xcd, 0, 0, 1]);
    }

    #[test]
    fn virtio_net_under_keels_and_qemus_names() {
        for m in ["virtio-net", "virtio-net-pci", "virtio"] {
            let v = VifSpec::parse(&format!("model={m},bridge=virtio0"), "vm", 0).unwrap();
            assert_eq!(v.model, NicModel::VirtioNet, "{m}");
            assert_eq!(v.model.name(), "virtio-net");
        }
    }

    #[test]
    fn generated_addresses_are_stable_local_unicast_and_distinct() {
        let a = generated_mac("debian", 0);
        assert_eq!(a, generated_mac("debian", 0));
        assert_eq!(a[0], 0x02, "U/L set, I/G clear");
        assert_ne!(a, generated_mac("debian", 1));
        assert_ne!(a, generated_mac("debian2", 0));
        assert_ne!(&a[1..], &[0; 5]);
    }

    #[test]
    fn bad_addresses_are_refused() {
        for bad in [
            "00:16:3e:01:02",
            "00:16:3e:01:02:03:04",
            "00-16-3e-01-02-03",
            "0:16:3e:01:02:03",
            "00:16:3e:01:02:0g",
            "00:16:3e:01:02:+3",
            "",
        ] {
            let e = VifSpec::parse(&format!("mac={bad}"), "vm", 0).unwrap_err();
            assert!(e.contains("six octets"), "{bad}: {e}");
        }
        let e = VifSpec::parse("mac=01:00:5e:00:00:01", "vm", 0).unwrap_err();
        assert!(e.contains("multicast"), "{e}");
        let e = VifSpec::parse("mac=ff:ff:ff:ff:ff:ff", "vm", 0).unwrap_err();
        assert!(e.contains("multicast"), "{e}");
        let e = VifSpec::parse("mac=00:00:00:00:00:00", "vm", 0).unwrap_err();
        assert!(e.contains("all-zeros"), "{e}");
    }

    #[test]
    fn mistakes_are_explained() {
        let e = VifSpec::parse("model=rtl8139", "vm", 0).unwrap_err();
        assert!(e.contains("e1000 and virtio-net"), "{e}");
        for bad in ["br0", "virtio", "virtio-1", "xenbr0", "virtio99999999999"] {
            let e = VifSpec::parse(&format!("bridge={bad}"), "vm", 0).unwrap_err();
            assert!(e.contains("virtio0, virtio1"), "{bad}: {e}");
        }
        let e = VifSpec::parse("rate=10Mb/s", "vm", 0).unwrap_err();
        assert!(e.contains("'rate='"), "{e}");
        let e = VifSpec::parse("type=vif", "vm", 0).unwrap_err();
        assert!(e.contains("type 'vif'"), "{e}");
        let e = VifSpec::parse("e1000", "vm", 0).unwrap_err();
        assert!(e.contains("KEY=VALUE"), "{e}");
    }
}
