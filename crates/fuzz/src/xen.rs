//! The xen target: Xen's blkback and netback with random ring pages, grant
//! flags and xenbus states, as a hostile frontend would post them.
//!
//! The grant table is eight pages (two rings each for the vbd and vif,
//! data pages); a case rewrites random bytes, flips grant flags, moves
//! `req_prod` (mostly near the consumer, sometimes anywhere), changes the
//! frontend's `state` and keys, and fires the event channels and service
//! passes. Checks: no panic, bounded heap (the harness's), and a stopped
//! device stays quiet: it sends no more notifications.

use device_model::net::Loopback;
use device_model::storage::RamDisk;
use device_model::xen::blkback::{BlkBack, BlkBackConfig};
use device_model::xen::netback::NetBack;
use device_model::xen::ring::fake::{FakeEvents, FakeGrants, FakeKeys};
use device_model::xen::ring::{PAGE_SIZE, REQ_PROD, RSP_EVENT};
use x86_emul::rng::Rng;

use crate::{interesting, set_case, HeapWatch, CASES_PER_SEED};

const PAGES: usize = 8;
/// The rings' grant references: vbd, vif TX, vif RX.
const BLK_RING: u32 = 0;
const TX_RING: u32 = 1;
const RX_RING: u32 = 2;
const STEPS: u64 = 24;

struct Machine {
    g: FakeGrants,
    ev: FakeEvents,
    blk_keys: FakeKeys,
    net_keys: FakeKeys,
    blk: BlkBack,
    net: NetBack,
}

pub(crate) fn run(rng: &mut Rng) {
    let disk = RamDisk::new("xvda", vec![0u8; 64 << 10]).expect("a whole number of sectors");
    let mut m = Machine {
        g: FakeGrants::new(PAGES),
        ev: FakeEvents::default(),
        blk_keys: FakeKeys::default(),
        net_keys: FakeKeys::default(),
        blk: BlkBack::new(
            BlkBackConfig {
                read_only: rng.below(4) == 0,
            },
            Box::new(disk),
        ),
        net: NetBack::new(Box::new(Loopback::new())),
    };
    for p in &mut m.g.pages {
        for b in p.data.iter_mut() {
            *b = rng.next() as u8;
        }
    }
    m.blk.publish(&mut m.blk_keys);
    m.net.publish(&mut m.net_keys);
    for (k, v) in [
        ("ring-ref", "0"),
        ("event-channel", "5"),
        ("protocol", "x86_64-abi"),
        ("state", "3"),
    ] {
        m.blk_keys.front(k, v);
    }
    for (k, v) in [
        ("tx-ring-ref", "1"),
        ("rx-ring-ref", "2"),
        ("event-channel", "6"),
        ("request-rx-copy", "1"),
        ("state", "4"),
    ] {
        m.net_keys.front(k, v);
    }
    m.blk.frontend_changed(&mut m.blk_keys);
    m.net.frontend_changed(&mut m.net_keys);
    for case in 0..CASES_PER_SEED {
        set_case(case);
        let heap = HeapWatch::start();
        for _ in 0..1 + rng.below(STEPS) {
            m.step(rng);
        }
        m.ev.sent.clear();
        m.blk_keys.backend_states.clear();
        m.net_keys.backend_states.clear();
        heap.check("xen");
    }
}

impl Machine {
    fn step(&mut self, rng: &mut Rng) {
        match rng.below(10) {
            0..=2 => {
                // Random bytes somewhere in a page (requests, indirect pages, data).
                let p = rng.below(PAGES as u64) as usize;
                let at = rng.below(PAGE_SIZE as u64) as usize;
                let n = (1 + rng.below(64) as usize).min(PAGE_SIZE - at);
                for b in &mut self.g.pages[p].data[at..at + n] {
                    *b = rng.next() as u8;
                }
            }
            3 => {
                // Grant flags: read-only, another domain, revoked.
                let p = &mut self.g.pages[rng.below(PAGES as u64) as usize];
                match rng.below(4) {
                    0 => p.readonly = !p.readonly,
                    1 => p.domid = if p.domid == 0 { 7 } else { 0 },
                    2 => p.present = !p.present,
                    _ => {}
                }
            }
            4..=5 => {
                // req_prod: a few ahead of what it was, or anything.
                let ring = [BLK_RING, TX_RING, RX_RING][rng.below(3) as usize] as usize;
                let d = &mut self.g.pages[ring].data;
                let old =
                    u32::from_le_bytes(d[REQ_PROD..REQ_PROD + 4].try_into().unwrap_or_default());
                let new = if rng.below(8) == 0 {
                    interesting(rng) as u32
                } else {
                    old.wrapping_add(rng.below(40) as u32)
                };
                d[REQ_PROD..REQ_PROD + 4].copy_from_slice(&new.to_le_bytes());
                let ev = interesting(rng) as u32;
                d[RSP_EVENT..RSP_EVENT + 4].copy_from_slice(&ev.to_le_bytes());
            }
            6 => {
                // The frontend's state and keys.
                let keys = if rng.below(2) == 0 {
                    &mut self.blk_keys
                } else {
                    &mut self.net_keys
                };
                let state = rng.below(9).to_string();
                keys.front("state", &state);
                if rng.below(4) == 0 {
                    keys.front(
                        "protocol",
                        ["x86_32-abi", "x86_64-abi", ""][rng.below(3) as usize],
                    );
                    keys.front("request-rx-copy", &rng.below(3).to_string());
                }
                self.blk.frontend_changed(&mut self.blk_keys);
                self.net.frontend_changed(&mut self.net_keys);
            }
            _ => {
                let stopped = (self.blk.stopped(), self.net.stopped());
                let before = self.ev.sent.len();
                self.blk.handle_event(&mut self.g, &mut self.ev);
                self.net.handle_event(&mut self.g, &mut self.ev);
                self.blk.service(&mut self.g, &mut self.ev);
                self.net.service(&mut self.g, &mut self.ev);
                if stopped == (true, true) {
                    assert_eq!(self.ev.sent.len(), before, "a stopped device notified");
                }
            }
        }
    }
}
