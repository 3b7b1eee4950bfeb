//! Transactions (docs/misc/xenstore.txt, TRANSACTION_START/END): a
//! transaction works on its own copy of the store, so it sees its own
//! writes and nobody else's after it started; at the end its operations are
//! applied to the store unless a node it read or changed was changed by
//! someone else meanwhile, which fails the end with EAGAIN (the client
//! retries the whole transaction). Ending with `F` abandons it.

use alloc::string::String;
use alloc::vec::Vec;

use super::perms::Perms;
use super::tree::{Tree, GUEST_BYTES_MAX, GUEST_NODES_MAX};
use super::wire::XsError;
use crate::xen::DomId;

/// The most transactions one connection may have open (Xen's default quota
/// is 10; over it, ENOSPC).
pub const TRANSACTIONS_MAX: usize = 8;
/// The most operations one transaction may record before ENOSPC.
pub const TX_OPS_MAX: usize = 256;
/// The most bytes of paths and values one transaction may record.
pub const TX_BYTES_MAX: usize = 64 << 10;

/// A change a transaction made, replayed on the store when it commits.
#[derive(Debug, Clone)]
pub enum Op {
    Write(String, Vec<u8>),
    Mkdir(String),
    Rm(String),
    SetPerms(String, Perms),
}

impl Op {
    fn bytes(&self) -> usize {
        match self {
            Op::Write(p, v) => p.len() + v.len(),
            Op::Mkdir(p) | Op::Rm(p) | Op::SetPerms(p, _) => p.len(),
        }
    }

    /// The path it changes and whether it removes it.
    pub fn changed(&self) -> (&str, bool) {
        match self {
            Op::Write(p, _) | Op::Mkdir(p) | Op::SetPerms(p, _) => (p, false),
            Op::Rm(p) => (p, true),
        }
    }

    /// Applies it to `tree` as `who`.
    pub fn apply(&self, tree: &mut Tree, who: DomId) -> Result<bool, XsError> {
        match self {
            Op::Write(p, v) => tree.write(who, p, v).map(|()| true),
            Op::Mkdir(p) => tree.mkdir(who, p),
            Op::Rm(p) => tree.rm(who, p),
            Op::SetPerms(p, perms) => tree.set_perms(who, p, *perms).map(|()| true),
        }
    }
}

/// One open transaction.
#[derive(Debug)]
pub struct Transaction {
    pub id: u32,
    /// The transaction's copy of the store.
    pub tree: Tree,
    start_usage: (usize, usize),
    ops: Vec<Op>,
    op_bytes: usize,
}

impl Transaction {
    pub fn start(id: u32, store: &Tree) -> Transaction {
        Transaction {
            id,
            tree: store.snapshot(),
            start_usage: store.guest_usage(),
            ops: Vec::new(),
            op_bytes: 0,
        }
    }

    /// Applies `op` to the transaction's copy and records it.
    pub fn apply(&mut self, op: Op, who: DomId) -> Result<(), XsError> {
        let b = op.bytes();
        if self.ops.len() >= TX_OPS_MAX || self.op_bytes + b > TX_BYTES_MAX {
            return Err(XsError::Enospc);
        }
        if op.apply(&mut self.tree, who)? {
            self.op_bytes += b;
            self.ops.push(op);
        }
        Ok(())
    }

    /// Commits to `store`: EAGAIN if a node the transaction used changed
    /// since it started, ENOSPC if the store no longer has room for what
    /// it adds; otherwise its operations, applied, for firing watches.
    pub fn commit(self, store: &mut Tree, who: DomId) -> Result<Vec<Op>, XsError> {
        for (path, generation) in self.tree.touched() {
            if store.get(path).map(|n| n.generation) != generation {
                return Err(XsError::Eagain);
            }
        }
        let (n0, b0) = self.start_usage;
        let (n1, b1) = self.tree.guest_usage();
        let (n, b) = store.guest_usage();
        if (n + n1).saturating_sub(n0) > GUEST_NODES_MAX
            || (b + b1).saturating_sub(b0) > GUEST_BYTES_MAX
        {
            return Err(XsError::Enospc);
        }
        // Every node the operations use is as the transaction saw it, so
        // they do on the store what they did on the copy.
        for op in &self.ops {
            let _ = op.apply(store, who);
        }
        Ok(self.ops)
    }
}
