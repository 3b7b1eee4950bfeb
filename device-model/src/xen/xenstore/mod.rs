//! Xenstore in Keel: the store a PV-on-HVM guest's xenbus driver talks to
//! over the store page and store event channel (HVM params STORE_PFN and
//! STORE_EVTCHN), and Keel's in-hypervisor backends read and write
//! directly. Keel is domain 0; the guest is [`GUEST_DOMID`]. Facts from
//! Xen's public/io/xs_wire.h and docs/misc/xenstore.txt.
//!
//! One concern per file: [`wire`] (message types, header, error names),
//! [`path`] (which strings are paths), [`perms`], [`tree`] (the nodes and
//! their quotas), [`transaction`], [`watch`], [`ring`] (the store page),
//! [`toolstack`] (the per-domain tree Linux expects).
//!
//! # Wiring (for the hypercall core and the backends)
//!
//! 1. Create it with [`XenStore::new`] (store page GPA, the guest's store
//!    port), then [`XenStore::populate_domain`] with the VM's disks and
//!    NICs, before the guest runs. Hand the page's frame number and the
//!    port to the guest as HVM params STORE_PFN and STORE_EVTCHN; call
//!    [`XenStore::connect`] once (it writes the page's initial state).
//! 2. Whenever the guest sends on the store port, call
//!    [`XenStore::service`]. It reads requests, answers them, writes
//!    replies and watch events as the ring has room and raises the store
//!    port through the [`EventSender`] when it produced or consumed
//!    anything. If it returns `more: true`, call it again soon (its work
//!    per call is bounded); also call it after backends wrote keys, so
//!    their watch events reach the guest.
//! 3. Backends: [`XenStore::read`], [`XenStore::write`], [`XenStore::rm`]
//!    (absolute paths, as domain 0: no permission checks, guest watches
//!    fire). To learn that frontend keys changed, register
//!    [`XenStore::watch`] on the frontend directory (e.g.
//!    `/local/domain/1/device/vbd/51712`) and poll
//!    [`XenStore::take_fired`] after each `service` whose result says
//!    `backend_watches_fired`. Watches coalesce: a fired flag, then read
//!    the keys (the `state` key holds a [`XenbusState`]).

pub mod path;
pub mod perms;
pub mod ring;
pub mod toolstack;
pub mod transaction;
pub mod tree;
pub mod watch;
pub mod wire;

#[cfg(test)]
mod tests;

use alloc::string::String;
use alloc::vec::Vec;

use guest_log::RateLimitedLog;
use guest_memory::{Gpa, GuestMemory};

use super::{DomId, EventSender, EvtchnPort, BACKEND_DOMID, GUEST_DOMID};
pub use perms::{Access, Perms};
use ring::{Ring, RingError};
pub use toolstack::{DomainConfig, VbdConfig, VifConfig};
use transaction::{Op, Transaction, TRANSACTIONS_MAX};
use tree::Tree;
use watch::{fires, Watch, Watches};
use wire::{Header, MsgType, HEADER_LEN, PAYLOAD_MAX};
pub use wire::{XenbusState, XsError};

/// Messages one [`XenStore::service`] call answers at most.
pub const MESSAGES_PER_SERVICE: usize = 64;
/// Watches Keel's backends may hold.
pub const BACKEND_WATCHES_MAX: usize = 64;

/// A backend's watch, as [`XenStore::watch`] returned it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackendWatchId(usize);

#[derive(Debug)]
struct BackendWatch {
    path: String,
    fired: bool,
}

/// What one [`XenStore::service`] call did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Serviced {
    /// Requests answered.
    pub messages: usize,
    /// Work is left (the per-call bound was reached): call again.
    pub more: bool,
    /// A backend watch fired: poll [`XenStore::take_fired`].
    pub backend_watches_fired: bool,
    /// The guest broke the ring protocol; the connection is stopped until
    /// the guest asks for a reconnection (logged once per cause).
    pub broken: bool,
}

/// The guest's connection: its watches and transactions.
#[derive(Debug)]
struct Connection {
    domid: DomId,
    domain_path: String,
    watches: Watches,
    transactions: Vec<Transaction>,
    next_tx: u32,
}

/// Rate limits of the guest-caused log lines.
#[derive(Debug, Default)]
struct Logs {
    ring: RateLimitedLog,
    dropped: RateLimitedLog,
}

/// The store, the guest's connection and Keel's backend watches.
#[derive(Debug)]
pub struct XenStore {
    tree: Tree,
    conn: Connection,
    ring: Ring,
    port: EvtchnPort,
    backend_watches: Vec<BackendWatch>,
    backend_fired: bool,
    broken: bool,
    /// The message being answered, moved out of the ring (capacity
    /// [`PAYLOAD_MAX`]).
    msg: Vec<u8>,
    /// Reply payloads are built here (capacity [`PAYLOAD_MAX`]).
    scratch: Vec<u8>,
    logs: Logs,
}

impl XenStore {
    /// A store with the root and `/local/domain`, for a guest whose store
    /// page is at `store_gpa` and whose store event channel is `port`.
    pub fn new(store_gpa: Gpa, port: EvtchnPort) -> XenStore {
        XenStore {
            tree: Tree::new(),
            conn: Connection {
                domid: GUEST_DOMID,
                domain_path: path::domain_path(GUEST_DOMID),
                watches: Watches::new(),
                transactions: Vec::with_capacity(TRANSACTIONS_MAX),
                next_tx: 1,
            },
            ring: Ring::new(store_gpa),
            port,
            backend_watches: Vec::with_capacity(BACKEND_WATCHES_MAX),
            backend_fired: false,
            broken: false,
            msg: Vec::with_capacity(PAYLOAD_MAX),
            scratch: Vec::with_capacity(PAYLOAD_MAX),
            logs: Logs::default(),
        }
    }

    /// Writes the store page's initial state (indexes 0, features,
    /// connected). Errors if the page is not guest RAM.
    pub fn connect(&mut self, memory: &GuestMemory) -> Result<(), RingError> {
        self.reset_connection();
        self.ring.reset(memory)
    }

    fn reset_connection(&mut self) {
        self.conn.watches.clear();
        self.conn.transactions.clear();
        self.broken = false;
    }

    /// Serves the guest's store ring: call when the guest sends on the
    /// store port. Bounded work: at most [`MESSAGES_PER_SERVICE`] requests.
    pub fn service(&mut self, memory: &GuestMemory, events: &mut dyn EventSender) -> Serviced {
        let mut out = Serviced::default();
        let mut notify = false;
        match self.ring.reconnect_requested(memory) {
            Ok(true) => {
                self.reset_connection();
                if let Err(e) = self.ring.reset(memory) {
                    self.fail(memory, e);
                }
                notify = true;
            }
            Ok(false) => {}
            Err(e) => self.fail(memory, e),
        }
        if !self.broken {
            if let Err(e) = self.pump(memory, &mut out, &mut notify) {
                self.fail(memory, e);
            }
        }
        if notify {
            events.notify(self.port);
        }
        out.broken = self.broken;
        out.backend_watches_fired = core::mem::take(&mut self.backend_fired);
        out
    }

    fn pump(
        &mut self,
        memory: &GuestMemory,
        out: &mut Serviced,
        notify: &mut bool,
    ) -> Result<(), RingError> {
        loop {
            *notify |= self.ring.flush(memory)? > 0;
            if self.ring.out_room() < HEADER_LEN + PAYLOAD_MAX {
                // Replies wait for the guest to read; it kicks us then.
                return Ok(());
            }
            if out.messages == MESSAGES_PER_SERVICE {
                out.more = true;
                return Ok(());
            }
            let mut consumed = 0;
            let got = self.ring.receive(memory, &mut consumed)?;
            *notify |= consumed > 0;
            let Some((header, payload)) = got else {
                return Ok(());
            };
            self.msg.clear();
            self.msg.extend_from_slice(payload);
            self.ring.done();
            let msg = core::mem::take(&mut self.msg);
            self.request(header, &msg);
            self.msg = msg;
            out.messages += 1;
        }
    }

    fn fail(&mut self, memory: &GuestMemory, e: RingError) {
        if self.broken {
            return;
        }
        self.broken = true;
        self.ring.report(memory, e);
        self.logs.ring.log(
            log::Level::Warn,
            format_args!("xenstore: the guest broke the store ring protocol ({e:?}); the connection stops until the guest reconnects"),
        );
    }

    /// Answers one request; the reply goes to the ring's queue (there is
    /// room: [`XenStore::pump`] checked).
    fn request(&mut self, h: Header, payload: &[u8]) {
        self.scratch.clear();
        let r = self.dispatch(h, payload);
        let reply = Header { len: 0, ..h };
        let ok = match r {
            Ok(()) => self.ring.queue(reply, &[&self.scratch]),
            Err(e) => self.ring.queue(
                Header {
                    msg_type: MsgType::Error as u32,
                    ..reply
                },
                &[e.name().as_bytes(), b"\0"],
            ),
        };
        if !ok {
            self.logs.dropped.log(
                log::Level::Warn,
                format_args!(
                    "xenstore: reply to request {} dropped: queue full",
                    h.req_id
                ),
            );
        }
        if h.msg_type == MsgType::Watch as u32 && r.is_ok() {
            self.fire_new_watch(payload);
        }
    }

    fn dispatch(&mut self, h: Header, payload: &[u8]) -> Result<(), XsError> {
        let who = self.conn.domid;
        let Some(t) = MsgType::from_u32(h.msg_type) else {
            return Err(XsError::Einval);
        };
        let mut args = payload.split(|&b| b == 0);
        let first = args.next().unwrap_or(&[]);
        match t {
            MsgType::Read | MsgType::Directory | MsgType::GetPerms => {
                let p = path::canonicalize(first, who)?;
                let tree = Self::tree_for(&mut self.tree, &mut self.conn, h.tx_id)?;
                match t {
                    MsgType::Read => {
                        let v = tree.read(who, &p)?;
                        self.scratch.extend_from_slice(v);
                    }
                    MsgType::Directory => tree.directory(who, &p, &mut self.scratch)?,
                    _ => {
                        let perms = tree.perms(who, &p)?;
                        self.scratch.extend_from_slice(perms.wire().as_bytes());
                    }
                }
                return Ok(());
            }
            MsgType::Write | MsgType::Mkdir | MsgType::Rm | MsgType::SetPerms => {
                let p = path::canonicalize(first, who)?;
                let op = match t {
                    MsgType::Write => {
                        // The value is everything after the path's NUL.
                        let at = payload
                            .iter()
                            .position(|&b| b == 0)
                            .ok_or(XsError::Einval)?;
                        Op::Write(p, payload[at + 1..].to_vec())
                    }
                    MsgType::Mkdir => Op::Mkdir(p),
                    MsgType::Rm => Op::Rm(p),
                    _ => Op::SetPerms(p, parse_perms(args)?),
                };
                self.change(h.tx_id, op)?;
            }
            MsgType::Watch | MsgType::Unwatch => {
                let p = path::canonicalize(first, who)?;
                let token = args.next().ok_or(XsError::Einval)?;
                if t == MsgType::Watch {
                    let relative = !first.starts_with(b"/") && !first.starts_with(b"@");
                    self.conn.watches.add(Watch {
                        path: p,
                        token: token.to_vec(),
                        relative,
                    })?;
                } else {
                    self.conn.watches.remove(&p, token)?;
                }
            }
            MsgType::TransactionStart => {
                if h.tx_id != 0 {
                    return Err(XsError::Einval);
                }
                if self.conn.transactions.len() >= TRANSACTIONS_MAX {
                    return Err(XsError::Enospc);
                }
                let id = self.conn.next_tx;
                self.conn.next_tx = self.conn.next_tx.checked_add(1).unwrap_or(1);
                self.conn
                    .transactions
                    .push(Transaction::start(id, &self.tree));
                let mut buf = itoa(id);
                self.scratch.extend_from_slice(buf.as_bytes());
                self.scratch.push(0);
                buf.clear();
                return Ok(());
            }
            MsgType::TransactionEnd => {
                let commit = match first {
                    b"T" => true,
                    b"F" => false,
                    _ => return Err(XsError::Einval),
                };
                let i = self
                    .conn
                    .transactions
                    .iter()
                    .position(|tx| tx.id == h.tx_id && h.tx_id != 0)
                    .ok_or(XsError::Enoent)?;
                let tx = self.conn.transactions.swap_remove(i);
                if commit {
                    let ops = tx.commit(&mut self.tree, who)?;
                    for op in &ops {
                        let (p, removed) = op.changed();
                        self.fire(p, removed);
                    }
                }
            }
            MsgType::ResetWatches => self.conn.watches.clear(),
            MsgType::GetDomainPath => {
                let s = core::str::from_utf8(first).map_err(|_| XsError::Einval)?;
                let d: DomId = s.parse().map_err(|_| XsError::Einval)?;
                self.scratch
                    .extend_from_slice(path::domain_path(d).as_bytes());
                self.scratch.push(0);
                return Ok(());
            }
            MsgType::Introduce
            | MsgType::Release
            | MsgType::Resume
            | MsgType::SetTarget
            | MsgType::IsDomainIntroduced
            | MsgType::Control => return Err(XsError::Eacces),
            MsgType::DirectoryPart => return Err(XsError::Enosys),
            MsgType::WatchEvent | MsgType::Error => return Err(XsError::Einval),
        }
        self.scratch.extend_from_slice(b"OK\0");
        Ok(())
    }

    fn tree_for<'a>(
        tree: &'a mut Tree,
        conn: &'a mut Connection,
        tx_id: u32,
    ) -> Result<&'a mut Tree, XsError> {
        if tx_id == 0 {
            return Ok(tree);
        }
        conn.transactions
            .iter_mut()
            .find(|tx| tx.id == tx_id)
            .map(|tx| &mut tx.tree)
            .ok_or(XsError::Enoent)
    }

    /// A guest change, in a transaction or on the store (then watches fire).
    fn change(&mut self, tx_id: u32, op: Op) -> Result<(), XsError> {
        let who = self.conn.domid;
        if tx_id != 0 {
            let tx = self
                .conn
                .transactions
                .iter_mut()
                .find(|tx| tx.id == tx_id)
                .ok_or(XsError::Enoent)?;
            return tx.apply(op, who);
        }
        if op.apply(&mut self.tree, who)? {
            let (p, removed) = op.changed();
            self.fire(p, removed);
        }
        Ok(())
    }

    /// A new watch fires once at once (xenstore.txt, WATCH).
    fn fire_new_watch(&mut self, payload: &[u8]) {
        let mut args = payload.split(|&b| b == 0);
        let (Some(p), Some(token)) = (args.next(), args.next()) else {
            return;
        };
        let hdr = Header {
            msg_type: MsgType::WatchEvent as u32,
            req_id: 0,
            tx_id: 0,
            len: 0,
        };
        if !self.ring.queue(hdr, &[p, b"\0", token, b"\0"]) {
            self.logs.dropped.log(
                log::Level::Warn,
                format_args!("xenstore: watch event dropped: the guest does not read its replies"),
            );
        }
    }

    /// Queues watch events for a change of `changed` and flags backend
    /// watches.
    fn fire(&mut self, changed: &str, removed: bool) {
        let guest = self.conn.domid;
        let readable = self
            .tree
            .get(changed)
            .is_none_or(|n| n.perms.can_read(guest));
        for w in self.conn.watches.iter() {
            let Some(p) = fires(&w.path, changed, removed) else {
                continue;
            };
            if !readable {
                continue;
            }
            let seen = path::as_seen(p, w.relative, &self.conn.domain_path);
            let hdr = Header {
                msg_type: MsgType::WatchEvent as u32,
                req_id: 0,
                tx_id: 0,
                len: 0,
            };
            if !self
                .ring
                .queue(hdr, &[seen.as_bytes(), b"\0", &w.token, b"\0"])
            {
                self.logs.dropped.log(
                    log::Level::Warn,
                    format_args!(
                        "xenstore: watch event dropped: the guest does not read its replies"
                    ),
                );
            }
        }
        for w in &mut self.backend_watches {
            if fires(&w.path, changed, removed).is_some() {
                w.fired = true;
                self.backend_fired = true;
            }
        }
    }

    // ---- The backends' and toolstack's side (domain 0) ----

    /// The value of the node at absolute `path`, if it exists.
    pub fn read(&self, path: &str) -> Option<&[u8]> {
        self.tree.get(path).map(|n| &n.value[..])
    }

    /// The value of `path` parsed as a decimal number (grant references,
    /// event channels, states).
    pub fn read_u64(&self, path: &str) -> Option<u64> {
        core::str::from_utf8(self.read(path)?)
            .ok()?
            .trim_end_matches('\0')
            .parse()
            .ok()
    }

    /// The `state` key under `dir`.
    pub fn read_state(&self, dir: &str) -> Option<XenbusState> {
        let mut p = String::with_capacity(dir.len() + 6);
        p.push_str(dir);
        p.push_str("/state");
        XenbusState::from_value(self.read(&p)?)
    }

    /// Writes `value` at absolute `path` as domain 0 (creating it and its
    /// ancestors, which inherit the nearest existing node's permissions);
    /// guest watches on it fire. Errors: EINVAL for a bad path, ENOSPC for a
    /// value past [`tree::VALUE_MAX`].
    pub fn write(&mut self, path: &str, value: &[u8]) -> Result<(), XsError> {
        let p = path::canonicalize(path.as_bytes(), BACKEND_DOMID)?;
        self.tree.write(BACKEND_DOMID, &p, value)?;
        self.fire(&p, false);
        Ok(())
    }

    /// Writes a xenbus `state` key under `dir`.
    pub fn write_state(&mut self, dir: &str, state: XenbusState) -> Result<(), XsError> {
        let mut p = String::with_capacity(dir.len() + 6);
        p.push_str(dir);
        p.push_str("/state");
        self.write(&p, state.value().as_bytes())
    }

    /// Creates the node at `path` (and ancestors) as domain 0 with `perms`.
    pub fn mkdir_with(&mut self, path: &str, perms: Perms) -> Result<(), XsError> {
        let p = path::canonicalize(path.as_bytes(), BACKEND_DOMID)?;
        self.tree.mkdir(BACKEND_DOMID, &p)?;
        self.tree.set_perms(BACKEND_DOMID, &p, perms)?;
        self.fire(&p, false);
        Ok(())
    }

    /// Removes `path` and everything below it, as domain 0.
    pub fn rm(&mut self, path: &str) -> Result<(), XsError> {
        let p = path::canonicalize(path.as_bytes(), BACKEND_DOMID)?;
        if self.tree.rm(BACKEND_DOMID, &p)? {
            self.fire(&p, true);
        }
        Ok(())
    }

    /// Registers a backend watch on absolute `path` (fires for it and every
    /// node below it). It starts fired, as a guest watch fires once at once.
    /// E2BIG past [`BACKEND_WATCHES_MAX`], EINVAL for a bad path.
    pub fn watch(&mut self, path: &str) -> Result<BackendWatchId, XsError> {
        let p = path::canonicalize(path.as_bytes(), BACKEND_DOMID)?;
        if self.backend_watches.len() >= BACKEND_WATCHES_MAX {
            return Err(XsError::E2big);
        }
        self.backend_watches.push(BackendWatch {
            path: p,
            fired: true,
        });
        self.backend_fired = true;
        Ok(BackendWatchId(self.backend_watches.len() - 1))
    }

    /// Whether the watch fired since the last call (clears the flag).
    pub fn take_fired(&mut self, id: BackendWatchId) -> bool {
        self.backend_watches
            .get_mut(id.0)
            .is_some_and(|w| core::mem::take(&mut w.fired))
    }

    /// The guest's watches (for tests and diagnostics).
    pub fn guest_watch_count(&self) -> usize {
        self.conn.watches.len()
    }

    /// The store page's guest-physical address.
    pub fn store_gpa(&self) -> Gpa {
        self.ring.gpa
    }

    /// Bytes of replies and events waiting for room in the guest's ring.
    pub fn queued(&self) -> usize {
        self.ring.queued()
    }
}

/// A transaction id in decimal.
fn itoa(v: u32) -> String {
    use core::fmt::Write;
    let mut s = String::with_capacity(10);
    let _ = write!(s, "{v}");
    s
}

/// XS_SET_PERMS arguments: `<letter><domid>` each, the first the owner with
/// the default access, at most two more.
fn parse_perms<'a>(args: impl Iterator<Item = &'a [u8]>) -> Result<Perms, XsError> {
    let mut perms: Option<Perms> = None;
    let mut n = 0;
    for a in args.filter(|a| !a.is_empty()) {
        let (&letter, num) = a.split_first().ok_or(XsError::Einval)?;
        let access = match letter {
            b'n' => Access::None,
            b'r' => Access::Read,
            b'w' => Access::Write,
            b'b' => Access::Both,
            _ => return Err(XsError::Einval),
        };
        let d: DomId = core::str::from_utf8(num)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(XsError::Einval)?;
        match &mut perms {
            None => {
                perms = Some(Perms {
                    owner: d,
                    default: access,
                    acl: [None; 2],
                })
            }
            Some(p) => {
                *p.acl.get_mut(n).ok_or(XsError::Einval)? = Some((d, access));
                n += 1;
            }
        }
    }
    perms.ok_or(XsError::Einval)
}
