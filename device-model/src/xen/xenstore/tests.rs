//! The xenstore against a fake guest: requests written into the store page
//! of a small GuestMemory as xenbus writes them, replies read back from it.
//! Expected values are the wire facts of xs_wire.h and xenstore.txt.

use std::format;
use std::string::String;
use std::vec;
use std::vec::Vec;

use super::ring::*;
use super::wire::{Header, MsgType, HEADER_LEN};
use super::*;
use crate::xen::{EventSender, EvtchnPort};

const STORE: Gpa = 0x2000;
const PORT: EvtchnPort = EvtchnPort(3);

#[derive(Default)]
struct Events(Vec<EvtchnPort>);

impl EventSender for Events {
    fn notify(&mut self, port: EvtchnPort) {
        self.0.push(port);
    }
}

/// The guest's side: its copies of req_prod and rsp_cons.
struct Guest {
    mem: GuestMemory,
    xs: XenStore,
    events: Events,
    req_prod: u32,
    rsp_cons: u32,
    /// Reply bytes read but not yet a whole message.
    partial: Vec<u8>,
}

fn domain() -> DomainConfig<'static> {
    static VBDS: [VbdConfig; 1] = [VbdConfig {
        virtual_device: 51712,
        dev: "xvda",
        read_only: false,
        cdrom: false,
    }];
    static VIFS: [VifConfig; 1] = [VifConfig {
        handle: 0,
        mac: [0x00, 0x16, 0x3e, 0x01, 0x02, 0x03],
    }];
    DomainConfig {
        domid: GUEST_DOMID,
        name: "guest",
        memory_kib: 262144,
        vbds: &VBDS,
        vifs: &VIFS,
    }
}

impl Guest {
    fn new() -> Guest {
        let mem = GuestMemory::new(4 * 4096);
        let mut xs = XenStore::new(STORE, PORT);
        xs.populate_domain(&domain()).unwrap();
        xs.connect(&mem).unwrap();
        Guest {
            mem,
            xs,
            events: Events::default(),
            req_prod: 0,
            rsp_cons: 0,
            partial: Vec::new(),
        }
    }

    /// Writes into `req` as xenbus does: when the ring is full, it waits
    /// (here: serves) until Keel consumed some.
    fn put_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            let cons = self.mem.read_obj::<u32>(STORE + REQ_CONS).unwrap();
            if self.req_prod.wrapping_sub(cons) == RING_SIZE {
                self.mem
                    .write_obj::<u32>(STORE + REQ_PROD, self.req_prod)
                    .unwrap();
                self.service();
                let now = self.mem.read_obj::<u32>(STORE + REQ_CONS).unwrap();
                assert_ne!(now, cons, "Keel does not consume a full ring");
            }
            let at = STORE + REQ + (self.req_prod % RING_SIZE) as u64;
            self.mem.write(at, &[b]).unwrap();
            self.req_prod = self.req_prod.wrapping_add(1);
        }
        self.mem
            .write_obj::<u32>(STORE + REQ_PROD, self.req_prod)
            .unwrap();
    }

    fn send_raw(&mut self, t: u32, tx: u32, payload: &[u8]) {
        let h = Header {
            msg_type: t,
            req_id: 7,
            tx_id: tx,
            len: payload.len() as u32,
        };
        self.put_bytes(&h.to_bytes());
        self.put_bytes(payload);
    }

    fn service(&mut self) -> Serviced {
        self.xs.service(&self.mem, &mut self.events)
    }

    /// Every message in `rsp`, consumed.
    fn replies(&mut self) -> Vec<(u32, Vec<u8>)> {
        let prod = self.mem.read_obj::<u32>(STORE + RSP_PROD).unwrap();
        let mut bytes = core::mem::take(&mut self.partial);
        while self.rsp_cons != prod {
            let mut b = [0u8];
            let at = STORE + RSP + (self.rsp_cons % RING_SIZE) as u64;
            self.mem.read(at, &mut b).unwrap();
            bytes.push(b[0]);
            self.rsp_cons = self.rsp_cons.wrapping_add(1);
        }
        self.mem
            .write_obj::<u32>(STORE + RSP_CONS, self.rsp_cons)
            .unwrap();
        let mut out = Vec::new();
        let mut i = 0;
        while i + HEADER_LEN <= bytes.len() {
            let h = Header::from_bytes(bytes[i..i + HEADER_LEN].try_into().unwrap());
            let end = i + HEADER_LEN + h.len as usize;
            if end > bytes.len() {
                break;
            }
            out.push((h.msg_type, bytes[i + HEADER_LEN..end].to_vec()));
            i = end;
        }
        self.partial = bytes[i..].to_vec();
        out
    }

    /// Sends one request and returns every message that came back.
    fn call(&mut self, t: MsgType, tx: u32, payload: &[u8]) -> Vec<(u32, Vec<u8>)> {
        self.send_raw(t as u32, tx, payload);
        self.service();
        self.replies()
    }

    /// Sends one request and returns its single reply.
    fn one(&mut self, t: MsgType, tx: u32, payload: &[u8]) -> (u32, Vec<u8>) {
        let mut r = self.call(t, tx, payload);
        assert_eq!(r.len(), 1, "{r:?}");
        r.remove(0)
    }

    fn ok(&mut self, t: MsgType, tx: u32, payload: &[u8]) -> Vec<u8> {
        let (ty, p) = self.one(t, tx, payload);
        assert_eq!(ty, t as u32, "{:?}", String::from_utf8_lossy(&p));
        p
    }

    fn err(&mut self, t: MsgType, tx: u32, payload: &[u8]) -> String {
        let (ty, p) = self.one(t, tx, payload);
        assert_eq!(
            ty,
            MsgType::Error as u32,
            "{:?}",
            String::from_utf8_lossy(&p)
        );
        assert_eq!(p.last(), Some(&0), "error names are NUL-terminated");
        String::from_utf8(p[..p.len() - 1].to_vec()).unwrap()
    }
}

fn event(path: &str, token: &str) -> (u32, Vec<u8>) {
    let mut p = Vec::new();
    p.extend_from_slice(path.as_bytes());
    p.push(0);
    p.extend_from_slice(token.as_bytes());
    p.push(0);
    (MsgType::WatchEvent as u32, p)
}

#[test]
fn read_has_no_nul_and_relative_paths_are_under_the_domain() {
    let mut g = Guest::new();
    assert_eq!(g.ok(MsgType::Read, 0, b"name\0"), b"guest");
    assert_eq!(g.ok(MsgType::Read, 0, b"/local/domain/1/domid\0"), b"1");
    assert_eq!(g.ok(MsgType::Read, 0, b"memory/target\0"), b"262144");
    assert_eq!(g.err(MsgType::Read, 0, b"device/nothing\0"), "ENOENT");
    assert!(g.events.0.iter().all(|&p| p == PORT) && !g.events.0.is_empty());
}

#[test]
fn write_mkdir_directory_rm() {
    let mut g = Guest::new();
    assert_eq!(g.ok(MsgType::Write, 0, b"data/a/b\0hello"), b"OK\0");
    assert_eq!(g.ok(MsgType::Read, 0, b"data/a/b\0"), b"hello");
    // The missing parent was created, empty.
    assert_eq!(g.ok(MsgType::Read, 0, b"data/a\0"), b"");
    assert_eq!(g.ok(MsgType::Mkdir, 0, b"data/a/c\0"), b"OK\0");
    assert_eq!(g.ok(MsgType::Directory, 0, b"data/a\0"), b"b\0c\0");
    assert_eq!(g.ok(MsgType::Rm, 0, b"data/a\0"), b"OK\0");
    assert_eq!(g.err(MsgType::Read, 0, b"data/a/b\0"), "ENOENT");
    assert_eq!(g.err(MsgType::Directory, 0, b"data/a\0"), "ENOENT");
    // Removing what is gone, under a parent that exists, is not an error.
    assert_eq!(g.ok(MsgType::Rm, 0, b"data/a\0"), b"OK\0");
    assert_eq!(g.err(MsgType::Rm, 0, b"data/x/y\0"), "ENOENT");
    assert_eq!(g.ok(MsgType::Directory, 0, b"device\0"), b"vbd\0vif\0");
    assert_eq!(
        g.ok(MsgType::GetDomainPath, 0, b"1\0"),
        b"/local/domain/1\0"
    );
    assert_eq!(
        g.ok(MsgType::GetPerms, 0, b"device/vbd/51712\0"),
        b"n1\0r0\0"
    );
}

#[test]
fn error_names_for_bad_requests() {
    let mut g = Guest::new();
    assert_eq!(g.err(MsgType::Read, 0, b"bad path!\0"), "EINVAL");
    assert_eq!(g.err(MsgType::Read, 0, b"data//x\0"), "EINVAL");
    assert_eq!(g.err(MsgType::Read, 0, b"data/\0"), "EINVAL");
    assert_eq!(g.err(MsgType::Read, 0, b"\0"), "EINVAL");
    assert_eq!(g.err(MsgType::GetDomainPath, 0, b"x\0"), "EINVAL");
    assert_eq!(g.err(MsgType::Introduce, 0, b"1\0"), "EACCES");
    assert_eq!(g.err(MsgType::DirectoryPart, 0, b"data\0"), "ENOSYS");
    assert_eq!(g.err(MsgType::Read, 99, b"name\0"), "ENOENT");
    // Type 20 (removed XS_RESTRICT) and numbers past the list: EINVAL.
    g.send_raw(20, 0, b"");
    g.send_raw(0x1234, 0, b"");
    g.service();
    let r = g.replies();
    assert_eq!(r.len(), 2);
    for (t, p) in r {
        assert_eq!((t, p.as_slice()), (MsgType::Error as u32, &b"EINVAL\0"[..]));
    }
    // A path one past Xen's absolute limit.
    let mut long = vec![b'/'];
    long.extend(std::iter::repeat_n(b'a', wire::ABS_PATH_MAX));
    long.push(0);
    assert_eq!(g.err(MsgType::Read, 0, &long), "EINVAL");
}

#[test]
fn guest_writes_only_where_it_may() {
    let mut g = Guest::new();
    // Its own device directories, data and control: yes.
    assert_eq!(
        g.ok(MsgType::Write, 0, b"device/vbd/51712/ring-ref\x008"),
        b"OK\0"
    );
    assert_eq!(
        g.ok(MsgType::Write, 0, b"control/feature-poweroff\x001"),
        b"OK\0"
    );
    // Its domain directory's own keys, another domain, the backend: no.
    assert_eq!(g.err(MsgType::Write, 0, b"name\0evil"), "EACCES");
    assert_eq!(g.err(MsgType::Write, 0, b"newkey\0x"), "EACCES");
    assert_eq!(g.err(MsgType::Write, 0, b"/local/domain/0/x\0x"), "EACCES");
    assert_eq!(
        g.err(
            MsgType::Write,
            0,
            b"/local/domain/0/backend/vbd/1/51712/state\x004"
        ),
        "EACCES"
    );
    assert_eq!(g.err(MsgType::Rm, 0, b"/local/domain/1\0"), "EACCES");
    assert_eq!(g.err(MsgType::Directory, 0, b"/\0"), "EACCES");
    assert_eq!(g.err(MsgType::Read, 0, b"/local/domain/0/name\0"), "EACCES");
    // It may read its backend's keys.
    assert_eq!(
        g.ok(
            MsgType::Read,
            0,
            b"/local/domain/0/backend/vbd/1/51712/state\0"
        ),
        b"1"
    );
    // A node it creates is its own.
    assert_eq!(
        g.ok(MsgType::GetPerms, 0, b"control/feature-poweroff\0"),
        b"n1\0r0\0"
    );
    // It may not give a node away.
    assert_eq!(
        g.err(MsgType::SetPerms, 0, b"control/feature-poweroff\0n0\0"),
        "EACCES"
    );
    assert_eq!(
        g.ok(MsgType::SetPerms, 0, b"control/feature-poweroff\0r1\0"),
        b"OK\0"
    );
}

#[test]
fn transaction_sees_its_writes_and_commits() {
    let mut g = Guest::new();
    let id = g.ok(MsgType::TransactionStart, 0, b"\0");
    assert_eq!(id.last(), Some(&0));
    let tx: u32 = std::str::from_utf8(&id[..id.len() - 1])
        .unwrap()
        .parse()
        .unwrap();
    assert_ne!(tx, 0);
    assert_eq!(g.ok(MsgType::Write, tx, b"data/k\0v"), b"OK\0");
    assert_eq!(g.ok(MsgType::Read, tx, b"data/k\0"), b"v");
    assert_eq!(g.err(MsgType::Read, 0, b"data/k\0"), "ENOENT");
    assert_eq!(g.ok(MsgType::TransactionEnd, tx, b"T\0"), b"OK\0");
    assert_eq!(g.ok(MsgType::Read, 0, b"data/k\0"), b"v");
    assert_eq!(g.err(MsgType::TransactionEnd, tx, b"T\0"), "ENOENT");
}

#[test]
fn transaction_conflict_is_eagain_and_abort_discards() {
    let mut g = Guest::new();
    let start = |g: &mut Guest| -> u32 {
        let id = g.ok(MsgType::TransactionStart, 0, b"\0");
        std::str::from_utf8(&id[..id.len() - 1])
            .unwrap()
            .parse()
            .unwrap()
    };
    let tx = start(&mut g);
    assert_eq!(g.ok(MsgType::Read, tx, b"device/vbd/51712/state\0"), b"1");
    g.xs.write("/local/domain/1/device/vbd/51712/state", b"3")
        .unwrap();
    g.ok(MsgType::Write, tx, b"device/vbd/51712/ring-ref\x008");
    assert_eq!(g.err(MsgType::TransactionEnd, tx, b"T\0"), "EAGAIN");
    assert_eq!(
        g.err(MsgType::Read, 0, b"device/vbd/51712/ring-ref\0"),
        "ENOENT"
    );
    // A change elsewhere does not conflict.
    let tx = start(&mut g);
    g.ok(MsgType::Write, tx, b"device/vbd/51712/ring-ref\x008");
    g.xs.write("/local/domain/0/backend/vbd/1/51712/sectors", b"8")
        .unwrap();
    assert_eq!(g.ok(MsgType::TransactionEnd, tx, b"T\0"), b"OK\0");
    // Abort.
    let tx = start(&mut g);
    g.ok(MsgType::Write, tx, b"data/gone\0x");
    assert_eq!(g.ok(MsgType::TransactionEnd, tx, b"F\0"), b"OK\0");
    assert_eq!(g.err(MsgType::Read, 0, b"data/gone\0"), "ENOENT");
    assert_eq!(g.err(MsgType::TransactionEnd, 0, b"X\0"), "EINVAL");
    // Quota of open transactions.
    for _ in 0..transaction::TRANSACTIONS_MAX {
        start(&mut g);
    }
    assert_eq!(g.err(MsgType::TransactionStart, 0, b"\0"), "ENOSPC");
}

#[test]
fn watches_fire_at_once_for_descendants_and_stop_on_unwatch_and_reset() {
    let mut g = Guest::new();
    let r = g.call(MsgType::Watch, 0, b"device\0tok\0");
    assert_eq!(
        r,
        vec![
            (MsgType::Watch as u32, b"OK\0".to_vec()),
            event("device", "tok")
        ]
    );
    // A change below it: the relative watch reports a relative path.
    let r = g.call(MsgType::Write, 0, b"device/vif/0/state\x004");
    assert!(r.contains(&event("device/vif/0/state", "tok")), "{r:?}");
    assert!(r.contains(&(MsgType::Write as u32, b"OK\0".to_vec())));
    // Backend writes fire guest watches too (absolute watch, absolute path).
    g.call(
        MsgType::Watch,
        0,
        b"/local/domain/0/backend/vbd/1/51712/state\0be\0",
    );
    g.xs.write("/local/domain/0/backend/vbd/1/51712/state", b"2")
        .unwrap();
    g.service();
    assert_eq!(
        g.replies(),
        vec![event("/local/domain/0/backend/vbd/1/51712/state", "be")]
    );
    // Removing an ancestor fires watches below it with their own path.
    g.xs.rm("/local/domain/0/backend/vbd/1").unwrap();
    g.service();
    assert_eq!(
        g.replies(),
        vec![event("/local/domain/0/backend/vbd/1/51712/state", "be")]
    );
    assert_eq!(g.err(MsgType::Watch, 0, b"device\0tok\0"), "EEXIST");
    assert_eq!(g.ok(MsgType::Unwatch, 0, b"device\0tok\0"), b"OK\0");
    assert_eq!(g.err(MsgType::Unwatch, 0, b"device\0tok\0"), "ENOENT");
    assert_eq!(
        g.call(MsgType::Write, 0, b"device/vif/0/state\x005").len(),
        1
    );
    g.call(MsgType::Watch, 0, b"data\0d\0");
    assert_eq!(g.ok(MsgType::ResetWatches, 0, b""), b"OK\0");
    assert_eq!(g.xs.guest_watch_count(), 0);
    assert_eq!(g.call(MsgType::Write, 0, b"data/x\x001").len(), 1);
    // Transactions fire at commit, not before.
    g.call(MsgType::Watch, 0, b"data\0d\0");
    let id = g.ok(MsgType::TransactionStart, 0, b"\0");
    let tx: u32 = std::str::from_utf8(&id[..id.len() - 1])
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(g.call(MsgType::Write, tx, b"data/y\x001").len(), 1);
    let r = g.call(MsgType::TransactionEnd, tx, b"T\0");
    assert!(r.contains(&event("data/y", "d")), "{r:?}");
}

#[test]
fn watch_quota_is_e2big() {
    let mut g = Guest::new();
    for i in 0..watch::WATCHES_MAX {
        let p = format!("data\0t{i}\0");
        assert_eq!(g.call(MsgType::Watch, 0, p.as_bytes())[0].1, b"OK\0");
    }
    assert_eq!(g.err(MsgType::Watch, 0, b"data\0last\0"), "E2BIG");
}

#[test]
fn store_quota_is_enospc() {
    let mut g = Guest::new();
    let big = vec![b'x'; tree::VALUE_MAX + 1];
    let mut p = b"data/big\0".to_vec();
    p.extend_from_slice(&big);
    assert_eq!(g.err(MsgType::Write, 0, &p), "ENOSPC");
    let mut full = false;
    for i in 0..tree::GUEST_NODES_MAX + 1 {
        let p = format!("data/n{i}\0v");
        let (t, _) = g.one(MsgType::Write, 0, p.as_bytes());
        if t == MsgType::Error as u32 {
            full = true;
            break;
        }
    }
    assert!(full, "the guest filled the store without hitting a quota");
    // Keel's own writes still work.
    g.xs.write("/local/domain/0/backend/vbd/1/51712/sectors", b"1")
        .unwrap();
}

#[test]
fn payload_over_4096_breaks_the_connection_until_reconnect() {
    let mut g = Guest::new();
    let h = Header {
        msg_type: MsgType::Read as u32,
        req_id: 1,
        tx_id: 0,
        len: 4097,
    };
    g.put_bytes(&h.to_bytes());
    let s = g.service();
    assert!(s.broken);
    assert_eq!(g.mem.read_obj::<u32>(STORE + ERROR).unwrap(), ERROR_PROTO);
    // Nothing more is served.
    g.send_raw(MsgType::Read as u32, 0, b"name\0");
    assert!(g.service().broken);
    assert!(g.replies().is_empty());
    // The guest asks for a reconnection; the page is reset and it works again.
    g.mem
        .write_obj::<u32>(STORE + CONNECTION, RECONNECT)
        .unwrap();
    let s = g.service();
    assert!(!s.broken);
    assert_eq!(
        g.mem.read_obj::<u32>(STORE + CONNECTION).unwrap(),
        CONNECTED
    );
    assert_eq!(g.mem.read_obj::<u32>(STORE + ERROR).unwrap(), ERROR_NONE);
    g.req_prod = 0;
    g.rsp_cons = 0;
    assert_eq!(g.ok(MsgType::Read, 0, b"name\0"), b"guest");
}

#[test]
fn jumping_indexes_are_a_ring_error_logged_once() {
    let mut g = Guest::new();
    g.mem
        .write_obj::<u32>(STORE + REQ_PROD, RING_SIZE + 1)
        .unwrap();
    log_capture::start();
    assert!(g.service().broken);
    assert!(g.service().broken);
    assert_eq!(g.mem.read_obj::<u32>(STORE + ERROR).unwrap(), ERROR_RINGIDX);
    assert_eq!(log_capture::count(log::Level::Warn, "xenstore"), 1);
    // A jumping rsp_cons too.
    let mut g = Guest::new();
    g.mem
        .write_obj::<u32>(STORE + RSP_CONS, 0x8000_0000)
        .unwrap();
    g.send_raw(MsgType::Read as u32, 0, b"name\0");
    assert!(g.service().broken);
}

#[test]
fn messages_split_across_the_ring_end() {
    let mut g = Guest::new();
    // Move both rings near their ends with requests and replies.
    // Requests are 61 bytes and replies 48, neither divides 1024: going
    // round each ring twice splits messages across its end in both.
    let path = b"/local/domain/0/backend/vbd/1/51712/frontend\0";
    while g.req_prod < 2 * RING_SIZE || g.rsp_cons < 2 * RING_SIZE {
        assert_eq!(
            g.ok(MsgType::Read, 0, path),
            b"/local/domain/1/device/vbd/51712"
        );
    }
    // A message given one byte at a time, served after each.
    let h = Header {
        msg_type: MsgType::Read as u32,
        req_id: 9,
        tx_id: 0,
        len: 5,
    };
    let mut all = h.to_bytes().to_vec();
    all.extend_from_slice(b"name\0");
    for b in &all {
        g.put_bytes(&[*b]);
        g.service();
    }
    assert_eq!(g.replies(), vec![(MsgType::Read as u32, b"guest".to_vec())]);
}

#[test]
fn replies_wait_for_room_in_rsp() {
    let mut g = Guest::new();
    // Requests whose replies (32 + 16 bytes each) overfill rsp; the guest
    // does not read.
    for _ in 0..40 {
        g.send_raw(
            MsgType::Read as u32,
            0,
            b"/local/domain/0/backend/vbd/1/51712/frontend\0",
        );
        g.service();
    }
    assert!(g.xs.queued() > 0);
    let mut got = g.replies();
    while got.len() < 40 {
        g.service();
        let more = g.replies();
        assert!(!more.is_empty());
        got.extend(more);
    }
    assert!(got
        .iter()
        .all(|(t, p)| *t == MsgType::Read as u32 && p.len() == 32));
}

#[test]
fn backend_api_drives_xenbus_states() {
    let mut g = Guest::new();
    let fe = toolstack::frontend_dir(GUEST_DOMID, "vbd", 51712);
    let be = toolstack::backend_dir(GUEST_DOMID, "vbd", 51712);
    assert_eq!(g.xs.read(&format!("{fe}/backend")), Some(be.as_bytes()));
    assert_eq!(g.xs.read(&format!("{fe}/backend-id")), Some(&b"0"[..]));
    assert_eq!(g.xs.read(&format!("{fe}/device-type")), Some(&b"disk"[..]));
    assert_eq!(g.xs.read(&format!("{be}/frontend-id")), Some(&b"1"[..]));
    assert_eq!(
        g.xs.read("/local/domain/1/device/vif/0/mac"),
        Some(&b"00:16:3e:01:02:03"[..])
    );
    let w = g.xs.watch(&fe).unwrap();
    assert!(g.xs.take_fired(w), "a new watch fires once");
    assert!(!g.xs.take_fired(w));
    g.xs.write(&format!("{be}/feature-flush-cache"), b"1")
        .unwrap();
    g.xs.write_state(&be, XenbusState::InitWait).unwrap();
    // The frontend connects in a transaction, as xen-blkfront does.
    let id = g.ok(MsgType::TransactionStart, 0, b"\0");
    let tx: u32 = std::str::from_utf8(&id[..id.len() - 1])
        .unwrap()
        .parse()
        .unwrap();
    g.ok(MsgType::Write, tx, b"device/vbd/51712/ring-ref\x008");
    g.ok(MsgType::Write, tx, b"device/vbd/51712/event-channel\x005");
    g.ok(MsgType::Write, tx, b"device/vbd/51712/protocol\0x86_64-abi");
    assert!(!g.xs.take_fired(w));
    g.send_raw(MsgType::TransactionEnd as u32, tx, b"T\0");
    let s = g.service();
    assert!(s.backend_watches_fired);
    g.replies();
    g.ok(MsgType::Write, 0, b"device/vbd/51712/state\x003");
    assert!(g.xs.take_fired(w));
    assert_eq!(g.xs.read_state(&fe), Some(XenbusState::Initialised));
    assert_eq!(g.xs.read_u64(&format!("{fe}/ring-ref")), Some(8));
    assert_eq!(g.xs.read_u64(&format!("{fe}/event-channel")), Some(5));
    g.xs.write_state(&be, XenbusState::Connected).unwrap();
    assert_eq!(
        g.ok(MsgType::Read, 0, format!("{be}/state\0").as_bytes()),
        b"4"
    );
}
