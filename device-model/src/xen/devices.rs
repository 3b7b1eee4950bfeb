//! The VM's split devices as Xen's toolstack and backend domain would run
//! them: Keel's xenstore over the store page and port of [`Xen::store`],
//! the per-domain tree (`populate_domain`), one [`BlkBack`] per disk and
//! one [`NetBack`] per NIC, each reaching the store through a
//! [`XenbusKeys`] adapter.
//!
//! [`XenDevices::service`] runs from the machine's one device service pass
//! ([`crate::pc::Pc::service`]), before each guest entry: the store answers
//! when the guest kicked the store port (or a pass left work), backends
//! follow their frontends' `state` when their watch fired, and a device's
//! rings are processed when the frontend kicked its port or a pass left
//! work (requests, or frames waiting for a vif). Each step is bounded by
//! its own component (the store's [`super::xenstore::MESSAGES_PER_SERVICE`],
//! blkback's [`super::blkback::PASS_BUDGET`], netback's
//! [`super::netback::TX_PER_PASS`] and [`super::netback::RX_PER_PASS`]).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use guest_log::RateLimitedLog;
use guest_memory::GuestMemory;
use log::Level;

use super::blkback::{BlkBack, BlkBackConfig};
use super::grant_table::GrantTable;
use super::netback::NetBack;
use super::xenbus::XenbusKeys;
#[cfg(test)]
use super::xenbus::XenbusState;
use super::xenstore::toolstack::{backend_dir, frontend_dir, DomainConfig, VbdConfig, VifConfig};
use super::xenstore::{BackendWatchId, XenStore};
use super::{EventSender, EvtchnPort, GrantAccess, Xen, GUEST_DOMID};
use crate::net::SharedNetBackend;
use crate::storage::BlockBackend;

/// One disk offered as a vbd.
pub struct XenDisk {
    /// The xenbus device id (`virtual-device`, docs/misc/vbd-interface.txt:
    /// 51712 + 16 n is xvd<a+n>, 768 is hda).
    pub virtual_device: u32,
    /// The backend's `dev` key.
    pub dev: &'static str,
    pub backend: Box<dyn BlockBackend>,
}

/// One NIC offered as a vif: the paravirtual handle on the port the
/// emulated NIC holds until the guest unplugs it.
pub struct XenNic {
    /// The device id and `handle` (0 for the VM's first NIC).
    pub handle: u32,
    pub mac: [u8; 6],
    pub backend: SharedNetBackend,
}

/// What [`XenDevices`] asks of blkback and netback alike.
trait SplitBackend: Send {
    fn reset(&mut self);
    fn publish(&mut self, keys: &mut dyn XenbusKeys);
    fn frontend_changed(&mut self, keys: &mut dyn XenbusKeys);
    fn event_channel(&self) -> Option<EvtchnPort>;
    fn handle_event(&mut self, grants: &mut dyn GrantAccess, events: &mut dyn EventSender);
    fn service(&mut self, grants: &mut dyn GrantAccess, events: &mut dyn EventSender);
    fn needs_service(&mut self) -> bool;
    #[cfg(test)]
    fn state(&self) -> XenbusState;
    /// The log's name of the driver (`xen-blkback`).
    fn driver(&self) -> &'static str;
}

macro_rules! split_backend {
    ($t:ty, $name:literal) => {
        impl SplitBackend for $t {
            fn reset(&mut self) {
                <$t>::reset(self)
            }
            fn publish(&mut self, keys: &mut dyn XenbusKeys) {
                <$t>::publish(self, keys)
            }
            fn frontend_changed(&mut self, keys: &mut dyn XenbusKeys) {
                <$t>::frontend_changed(self, keys)
            }
            fn event_channel(&self) -> Option<EvtchnPort> {
                <$t>::event_channel(self)
            }
            fn handle_event(&mut self, g: &mut dyn GrantAccess, e: &mut dyn EventSender) {
                <$t>::handle_event(self, g, e)
            }
            fn service(&mut self, g: &mut dyn GrantAccess, e: &mut dyn EventSender) {
                <$t>::service(self, g, e)
            }
            fn needs_service(&mut self) -> bool {
                <$t>::needs_service(self)
            }
            #[cfg(test)]
            fn state(&self) -> XenbusState {
                <$t>::state(self)
            }
            fn driver(&self) -> &'static str {
                $name
            }
        }
    };
}
split_backend!(BlkBack, "xen-blkback");
split_backend!(NetBack, "xen-netback");

/// A device's backend, its store directories and its watch.
struct Split {
    back: Box<dyn SplitBackend>,
    front: String,
    backend: String,
    watch: Option<BackendWatchId>,
    /// The frontend's port Keel bound for this backend.
    bound: Option<EvtchnPort>,
}

/// The store and the backends of one VM.
pub struct XenDevices {
    memory: GuestMemory,
    store: XenStore,
    store_port: EvtchnPort,
    /// The store left work in its last pass.
    store_more: bool,
    grants: GrantTable,
    /// The vbds, then the vifs.
    devices: Vec<Split>,
    vbd_configs: Vec<VbdConfig>,
    vif_configs: Vec<VifConfig>,
    /// The paravirtual handles of the vifs' ports, handed over at the unplug.
    nic_ports: Vec<SharedNetBackend>,
    name: String,
    memory_kib: u64,
    /// A frontend named a port Keel cannot bind (guest-caused).
    log: RateLimitedLog,
}

/// [`XenbusKeys`] over the store for one device's two directories.
struct Keys<'a> {
    store: &'a mut XenStore,
    front: &'a str,
    backend: &'a str,
}

fn join(dir: &str, key: &str) -> String {
    let mut p = String::with_capacity(dir.len() + 1 + key.len());
    p.push_str(dir);
    p.push('/');
    p.push_str(key);
    p
}

impl XenbusKeys for Keys<'_> {
    fn read_frontend(&self, key: &str) -> Option<String> {
        let v = self.store.read(&join(self.front, key))?;
        core::str::from_utf8(v)
            .ok()
            .map(|s| String::from(s.trim_end_matches('\0')))
    }

    fn write_backend(&mut self, key: &str, value: &str) {
        // Paths and values are Keel's own and short: a failure is a Keel bug.
        if let Err(e) = self.store.write(&join(self.backend, key), value.as_bytes()) {
            log::warn!("xenstore: cannot write {}/{key}: {e:?}", self.backend);
        }
    }
}

impl XenDevices {
    /// The store of the VM `name` with `memory_kib` of RAM over `xen`'s
    /// store page and port, the domain's tree with `disks` as vbds and
    /// `nics` as vifs, each backend published (InitWait).
    pub fn new(
        xen: &Xen,
        memory: GuestMemory,
        name: &str,
        memory_kib: u64,
        disks: Vec<XenDisk>,
        nics: Vec<XenNic>,
    ) -> XenDevices {
        let (gfn, store_port) = xen.store();
        let mut vbd_configs = Vec::with_capacity(disks.len());
        let mut vif_configs = Vec::with_capacity(nics.len());
        let mut nic_ports = Vec::with_capacity(nics.len());
        let mut devices = Vec::with_capacity(disks.len() + nics.len());
        for d in disks {
            vbd_configs.push(VbdConfig {
                virtual_device: d.virtual_device,
                dev: d.dev,
                read_only: d.backend.read_only(),
                cdrom: false,
            });
            devices.push(Split {
                back: Box::new(BlkBack::new(BlkBackConfig::default(), d.backend)),
                front: frontend_dir(GUEST_DOMID, "vbd", d.virtual_device),
                backend: backend_dir(GUEST_DOMID, "vbd", d.virtual_device),
                watch: None,
                bound: None,
            });
        }
        for n in nics {
            vif_configs.push(VifConfig {
                handle: n.handle,
                mac: n.mac,
            });
            nic_ports.push(n.backend.clone());
            devices.push(Split {
                back: Box::new(NetBack::new(Box::new(n.backend))),
                front: frontend_dir(GUEST_DOMID, "vif", n.handle),
                backend: backend_dir(GUEST_DOMID, "vif", n.handle),
                watch: None,
                bound: None,
            });
        }
        let mut devices = XenDevices {
            store: XenStore::new(gfn * 4096, store_port),
            store_port,
            store_more: false,
            grants: xen.grant_table(),
            memory,
            devices,
            vbd_configs,
            vif_configs,
            nic_ports,
            name: String::from(name),
            memory_kib,
            log: RateLimitedLog::new(),
        };
        devices.power_on();
        devices
    }

    /// The store as the toolstack leaves it before the guest runs; every
    /// backend published and watching its frontend's directory.
    fn power_on(&mut self) {
        self.store = XenStore::new(self.store.store_gpa(), self.store_port);
        let config = DomainConfig {
            domid: GUEST_DOMID,
            name: &self.name,
            memory_kib: self.memory_kib,
            vbds: &self.vbd_configs,
            vifs: &self.vif_configs,
        };
        if let Err(e) = self.store.populate_domain(&config) {
            log::warn!("xenstore: cannot populate the domain: {e:?}");
        }
        if let Err(e) = self.store.connect(&self.memory) {
            log::warn!("xenstore: the store page is not guest RAM: {e:?}");
        }
        self.store_more = false;
        for v in &mut self.devices {
            let mut keys = Keys {
                store: &mut self.store,
                front: &v.front,
                backend: &v.backend,
            };
            v.back.reset();
            v.back.publish(&mut keys);
            v.watch = self.store.watch(&v.front).ok();
            v.bound = None;
        }
    }

    /// A machine reset, after [`Xen::reset`] closed the guest's ports and
    /// allocated the store's again: the store and every backend as at
    /// power-on.
    pub fn reset(&mut self, xen: &Xen) {
        let (gfn, port) = xen.store();
        self.store = XenStore::new(gfn * 4096, port);
        self.store_port = port;
        self.power_on();
    }

    /// One bounded pass (see the module documentation).
    pub fn service(&mut self, xen: &mut Xen) {
        let kicked = xen.take_kick(self.store_port);
        if kicked || self.store_more {
            let s = self.store.service(&self.memory, xen);
            self.store_more = s.more;
            if s.backend_watches_fired {
                self.frontends_changed(xen);
            }
        }
        for v in &mut self.devices {
            // A vif not yet connected still drops the frames that reach its
            // port (no link), so its pass runs unbound too.
            if v.bound.is_some_and(|p| xen.take_kick(p)) {
                v.back.handle_event(&mut self.grants, xen);
            } else if v.back.needs_service() {
                v.back.service(&mut self.grants, xen);
            }
        }
    }

    /// Whether a pass left work (the store, a ring, a frame for a vif).
    pub fn needs_service(&mut self) -> bool {
        self.store_more || self.devices.iter_mut().any(|v| v.back.needs_service())
    }

    /// The guest unplugged the emulated NICs (Xen's
    /// docs/misc/hvm-emulated-unplug): the vifs hold their ports from now on.
    pub fn nics_unplugged(&mut self) {
        for p in &self.nic_ports {
            p.hand_over();
        }
    }

    /// Backends whose frontend directory changed follow it; their own key
    /// writes are delivered to the guest's watches in the next store pass.
    fn frontends_changed(&mut self, xen: &mut Xen) {
        for v in &mut self.devices {
            let Some(watch) = v.watch else { continue };
            if !self.store.take_fired(watch) {
                continue;
            }
            let mut keys = Keys {
                store: &mut self.store,
                front: &v.front,
                backend: &v.backend,
            };
            v.back.frontend_changed(&mut keys);
            let port = v.back.event_channel();
            if port != v.bound {
                v.bound = port.filter(|&p| xen.bind_backend(p));
                if let (Some(p), None) = (port, v.bound) {
                    self.log.log(
                        Level::Warn,
                        format_args!(
                            "{} {}: the frontend's event channel {} is not unbound for Keel: the device is not served",
                            v.back.driver(), v.front, p.0
                        ),
                    );
                }
            }
            self.store_more = true;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::clock::FakeClock;
    use crate::memory_map::MemoryMapQueue;
    use crate::power::PowerControl;
    use crate::storage::RamDisk;
    use crate::xen::XenPages;

    const RAM: u64 = 0x100_0000;

    fn setup() -> (Xen, XenDevices) {
        let m = GuestMemory::new(RAM as usize);
        let xen = Xen::new(
            m.clone(),
            XenPages::at_top_of(RAM),
            1,
            FakeClock::new(1_000),
            2_000_000_000,
            1_700_000_000,
            MemoryMapQueue::new(),
            crate::xen::PhysmapLimits {
                gpa_limit: 1 << 36,
                fixed: alloc::vec::Vec::new(),
            },
            PowerControl::new(),
        );
        let disk = RamDisk::new("d", alloc::vec![0; 8 * 512]).unwrap();
        let (_, pv) = SharedNetBackend::pair(Box::new(crate::net::Loopback::new()));
        let devices = XenDevices::new(
            &xen,
            m,
            "vm",
            RAM / 1024,
            alloc::vec![XenDisk {
                virtual_device: 768,
                dev: "hda",
                backend: Box::new(disk),
            }],
            alloc::vec![XenNic {
                handle: 0,
                mac: [0x00, 0x16, 0x3e, 1, 2, 3],
                backend: pv,
            }],
        );
        (xen, devices)
    }

    /// blkif.h and xenbus.h: before the guest runs, the toolstack's
    /// frontend directory (device-type "disk", the backend's path) and the
    /// backend in InitWait with its features; a reset leaves the same.
    #[test]
    fn the_store_holds_each_disk_as_a_vbd_in_init_wait() {
        let (xen, mut d) = setup();
        for _ in 0..2 {
            let fe = "/local/domain/1/device/vbd/768";
            let be = "/local/domain/0/backend/vbd/1/768";
            assert_eq!(d.store.read(&join(fe, "device-type")), Some(&b"disk"[..]));
            assert_eq!(d.store.read(&join(fe, "backend")), Some(be.as_bytes()));
            assert_eq!(d.store.read_state(fe), Some(XenbusState::Initialising));
            assert_eq!(d.store.read_state(be), Some(XenbusState::InitWait));
            assert_eq!(
                d.store.read(&join(be, "feature-flush-cache")),
                Some(&b"1"[..])
            );
            assert!(d.devices[0].bound.is_none());
            d.reset(&xen);
        }
    }

    /// netif.h and xenbus.h: a vif's frontend directory (its `mac` and
    /// `handle`, the backend's path) and its backend in InitWait offering
    /// rx-copy, as netfront requires; a reset leaves the same.
    #[test]
    fn the_store_holds_each_nic_as_a_vif_in_init_wait() {
        let (xen, mut d) = setup();
        for _ in 0..2 {
            let fe = "/local/domain/1/device/vif/0";
            let be = "/local/domain/0/backend/vif/1/0";
            assert_eq!(d.store.read(&join(fe, "backend")), Some(be.as_bytes()));
            assert_eq!(
                d.store.read(&join(fe, "mac")),
                Some(&b"00:16:3e:01:02:03"[..])
            );
            assert_eq!(d.store.read(&join(fe, "handle")), Some(&b"0"[..]));
            assert_eq!(d.store.read_state(fe), Some(XenbusState::Initialising));
            assert_eq!(d.store.read_state(be), Some(XenbusState::InitWait));
            assert_eq!(d.devices[1].back.state(), XenbusState::InitWait);
            assert_eq!(d.store.read(&join(be, "feature-rx-copy")), Some(&b"1"[..]));
            d.reset(&xen);
        }
    }

    /// The vif's port is the emulated NIC's until the unplug.
    #[test]
    fn the_unplug_hands_the_ports_to_the_vifs() {
        let (_, mut d) = setup();
        assert!(!d.nic_ports[0].holds());
        d.nics_unplugged();
        assert!(d.nic_ports[0].holds());
    }

    /// Nothing is served until the guest kicks: no store pass, no ring.
    #[test]
    fn an_idle_guest_costs_no_pass() {
        let (mut xen, mut d) = setup();
        d.service(&mut xen);
        assert!(!d.needs_service());
    }
}
