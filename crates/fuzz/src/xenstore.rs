//! The xenstore target: a guest's store page fed random requests (valid
//! headers with random types, transaction ids and paths from the tree a
//! guest sees, and raw bytes), index jumps, reconnections and replies read
//! or left unread, interleaved with Keel's backend writes and watches.

use device_model::xen::xenstore::ring::{
    CONNECTION, RECONNECT, REQ, REQ_PROD, RING_SIZE, RSP_CONS, RSP_PROD,
};
use device_model::xen::xenstore::wire::{Header, PAYLOAD_MAX};
use device_model::xen::xenstore::{DomainConfig, VbdConfig, VifConfig, XenStore};
use device_model::xen::{EventSender, EvtchnPort, GUEST_DOMID};
use guest_memory::GuestMemory;
use x86_emul::rng::Rng;

use crate::{interesting, set_case, HeapWatch, CASES_PER_SEED};

const STORE: u64 = 0x1000;
/// Steps of one case, at most.
const MAX_STEPS: u64 = 24;

/// Paths a frontend uses, and ones it may not, to reach deep into the tree.
const PATHS: &[&str] = &[
    "device",
    "device/vbd/51712",
    "device/vbd/51712/state",
    "device/vbd/51712/ring-ref",
    "device/vif/0/state",
    "control/shutdown",
    "data/a/b/c",
    "name",
    "/local/domain/0/backend/vbd/1/51712",
    "/local/domain/0/backend/vbd/1/51712/state",
    "/local/domain/1",
    "/",
    "@releaseDomain",
    "bad//path",
    "",
];

struct Events(u64);

impl EventSender for Events {
    fn notify(&mut self, _: EvtchnPort) {
        self.0 += 1;
    }
}

pub(crate) fn run(rng: &mut Rng) {
    let mem = GuestMemory::new(4 * 4096);
    let mut xs = XenStore::new(STORE, EvtchnPort(1));
    let vbds = [VbdConfig {
        virtual_device: 51712,
        dev: "xvda",
        read_only: false,
        cdrom: false,
    }];
    let vifs = [VifConfig {
        handle: 0,
        mac: [0, 0x16, 0x3e, 0, 0, 1],
    }];
    xs.populate_domain(&DomainConfig {
        domid: GUEST_DOMID,
        name: "fuzz",
        memory_kib: 1024,
        vbds: &vbds,
        vifs: &vifs,
    })
    .expect("the toolstack tree fits the store");
    xs.connect(&mem).expect("the store page is RAM");
    let watch = xs.watch("/local/domain/1/device").expect("a backend watch");
    let mut events = Events(0);
    let mut req_prod = 0u32;
    let mut tx_ids = [0u32; 4];
    for case in 0..CASES_PER_SEED {
        set_case(case);
        let heap = HeapWatch::start();
        for _ in 0..1 + rng.below(MAX_STEPS) {
            match rng.below(12) {
                0..=5 => {
                    let mut msg = Vec::with_capacity(64);
                    let payload = payload(rng);
                    let h = Header {
                        msg_type: match rng.below(4) {
                            0 => interesting(rng) as u32,
                            _ => rng.below(24) as u32,
                        },
                        req_id: rng.next() as u32,
                        tx_id: tx_ids[rng.below(4) as usize],
                        len: if rng.below(20) == 0 {
                            interesting(rng) as u32
                        } else {
                            payload.len() as u32
                        },
                    };
                    msg.extend_from_slice(&h.to_bytes());
                    msg.extend_from_slice(&payload);
                    // As much as fits, as a guest that does not wait.
                    for b in msg.iter().take(RING_SIZE as usize) {
                        let at = STORE + REQ + u64::from(req_prod % RING_SIZE);
                        mem.write(at, &[*b]).expect("in RAM");
                        req_prod = req_prod.wrapping_add(1);
                    }
                    mem.write_obj(STORE + REQ_PROD, req_prod).expect("in RAM");
                }
                6 => {
                    // Read every reply (tx ids seen in them are reused).
                    let prod: u32 = mem.read_obj(STORE + RSP_PROD).expect("in RAM");
                    mem.write_obj(STORE + RSP_CONS, prod).expect("in RAM");
                    tx_ids[rng.below(4) as usize] = 1 + rng.below(10) as u32;
                }
                7 => {
                    let off = [REQ_PROD, RSP_CONS][rng.below(2) as usize];
                    mem.write_obj(STORE + off, interesting(rng) as u32)
                        .expect("in RAM");
                }
                8 => {
                    mem.write_obj(STORE + CONNECTION, RECONNECT)
                        .expect("in RAM");
                    req_prod = 0;
                }
                9 => {
                    let p = PATHS[rng.below(PATHS.len() as u64) as usize];
                    let v = [b'x'; 64];
                    let _ = xs.write(p, &v[..rng.below(64) as usize]);
                    let _ = xs.take_fired(watch);
                }
                _ => {}
            }
            let s = xs.service(&mem, &mut events);
            assert!(s.messages <= device_model::xen::xenstore::MESSAGES_PER_SERVICE);
        }
        heap.check("xenstore");
    }
}

fn payload(rng: &mut Rng) -> Vec<u8> {
    let mut p = Vec::new();
    if rng.below(8) == 0 {
        let n = rng.below(PAYLOAD_MAX as u64 + 64) as usize;
        p.extend((0..n).map(|_| rng.next() as u8));
        return p;
    }
    for _ in 0..1 + rng.below(3) {
        p.extend_from_slice(PATHS[rng.below(PATHS.len() as u64) as usize].as_bytes());
        if rng.below(8) != 0 {
            p.push(0);
        }
    }
    p
}
