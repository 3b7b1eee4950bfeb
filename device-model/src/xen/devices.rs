//! The VM's split devices as Xen's toolstack and backend domain would run
//! them: Keel's xenstore over the store page and port of [`Xen::store`],
//! the per-domain tree (`populate_domain`), and one [`BlkBack`] per disk,
//! each reaching the store through a [`XenbusKeys`] adapter.
//!
//! [`XenDevices::service`] runs from the machine's one device service pass
//! ([`crate::pc::Pc::service`]), before each guest entry: the store answers
//! when the guest kicked the store port (or a pass left work), backends
//! follow their frontends' `state` when their watch fired, and a vbd's ring
//! is processed when the frontend kicked its port or a pass left requests.
//! Each step is bounded by its own component (the store's
//! [`super::xenstore::MESSAGES_PER_SERVICE`], blkback's
//! [`super::blkback::PASS_BUDGET`]).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;

use guest_log::RateLimitedLog;
use guest_memory::GuestMemory;
use log::Level;

use super::blkback::{BlkBack, BlkBackConfig};
use super::grant_table::GrantTable;
use super::xenbus::XenbusKeys;
use super::xenstore::toolstack::{backend_dir, frontend_dir, DomainConfig, VbdConfig, VifConfig};
use super::xenstore::{BackendWatchId, XenStore};
use super::{EvtchnPort, Xen, GUEST_DOMID};
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

/// A vbd's backend, its store directories and its watch.
struct Vbd {
    back: BlkBack,
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
    vbds: Vec<Vbd>,
    vbd_configs: Vec<VbdConfig>,
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
    /// store page and port, the domain's tree with `disks` as vbds, each
    /// disk's backend published (InitWait).
    pub fn new(
        xen: &Xen,
        memory: GuestMemory,
        name: &str,
        memory_kib: u64,
        disks: Vec<XenDisk>,
    ) -> XenDevices {
        let (gfn, store_port) = xen.store();
        let mut vbd_configs = Vec::with_capacity(disks.len());
        let mut vbds = Vec::with_capacity(disks.len());
        for d in disks {
            vbd_configs.push(VbdConfig {
                virtual_device: d.virtual_device,
                dev: d.dev,
                read_only: d.backend.read_only(),
                cdrom: false,
            });
            vbds.push(Vbd {
                back: BlkBack::new(BlkBackConfig::default(), d.backend),
                front: frontend_dir(GUEST_DOMID, "vbd", d.virtual_device),
                backend: backend_dir(GUEST_DOMID, "vbd", d.virtual_device),
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
            vbds,
            vbd_configs,
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
            vifs: &[] as &[VifConfig],
        };
        if let Err(e) = self.store.populate_domain(&config) {
            log::warn!("xenstore: cannot populate the domain: {e:?}");
        }
        if let Err(e) = self.store.connect(&self.memory) {
            log::warn!("xenstore: the store page is not guest RAM: {e:?}");
        }
        self.store_more = false;
        for v in &mut self.vbds {
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
        for v in &mut self.vbds {
            let Some(port) = v.bound else { continue };
            if xen.take_kick(port) {
                v.back.handle_event(&mut self.grants, xen);
            } else if v.back.needs_service() {
                v.back.service(&mut self.grants, xen);
            }
        }
    }

    /// Whether a pass left work (the store or a ring).
    pub fn needs_service(&self) -> bool {
        self.store_more || self.vbds.iter().any(|v| v.back.needs_service())
    }

    /// Backends whose frontend directory changed follow it; their own key
    /// writes are delivered to the guest's watches in the next store pass.
    fn frontends_changed(&mut self, xen: &mut Xen) {
        for v in &mut self.vbds {
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
                            "xen-blkback {}: the frontend's event channel {} is not unbound for Keel: the vbd is not served",
                            v.front, p.0
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
    use crate::xen::xenstore::XenbusState;
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
            PowerControl::new(),
        );
        let disk = RamDisk::new("d", alloc::vec![0; 8 * 512]).unwrap();
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
            assert!(d.vbds[0].bound.is_none());
            d.reset(&xen);
        }
    }

    /// Nothing is served until the guest kicks: no store pass, no ring.
    #[test]
    fn an_idle_guest_costs_no_pass() {
        let (mut xen, mut d) = setup();
        d.service(&mut xen);
        assert!(!d.needs_service());
    }
}
