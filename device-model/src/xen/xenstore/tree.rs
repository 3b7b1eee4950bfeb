//! The store: a tree of nodes, each with a value, permissions and a
//! generation, keyed by absolute path. Bounded so that a guest cannot
//! exhaust Keel's heap: quotas on the nodes and bytes the guest owns and on
//! the size of one value (Xen's xenstored has the same kinds of quota,
//! docs/misc/xenstore.txt; exceeding one gives ENOSPC).

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;

use super::path::{is_special, parent};
use super::perms::Perms;
use super::wire::{XsError, PAYLOAD_MAX};
use crate::xen::{DomId, BACKEND_DOMID};

/// The most nodes guests may own in the store (Xen's default per-domain
/// node quota is 1000).
pub const GUEST_NODES_MAX: usize = 1000;
/// The most bytes (paths, values and [`NODE_OVERHEAD`] each) of nodes guests
/// own.
pub const GUEST_BYTES_MAX: usize = 64 << 10;
/// The longest value one node may hold (Xen's default entry-size quota).
pub const VALUE_MAX: usize = 2048;
/// What one node costs beyond its path and value, for the byte quota.
pub const NODE_OVERHEAD: usize = 64;

/// One node.
#[derive(Debug, Clone)]
pub struct Node {
    pub value: Vec<u8>,
    pub perms: Perms,
    /// Changes each time the node's value, permissions or list of children
    /// changes; a transaction conflicts when a node it used changed.
    pub generation: u64,
}

/// The nodes and the quota counters.
#[derive(Debug, Clone)]
pub struct Tree {
    nodes: BTreeMap<String, Node>,
    /// Nodes and bytes whose owner is not [`BACKEND_DOMID`].
    guest_nodes: usize,
    guest_bytes: usize,
    next_generation: u64,
    /// In a transaction's copy: each node the transaction used, with the
    /// generation it had (`None`: absent) before the transaction changed it.
    touched: Option<BTreeMap<String, Option<u64>>>,
}

fn cost(path: &str, value: &[u8]) -> usize {
    path.len() + value.len() + NODE_OVERHEAD
}

impl Default for Tree {
    fn default() -> Self {
        Self::new()
    }
}

impl Tree {
    /// A store with the root and `/local/domain` (owned by domain 0, closed
    /// to guests) as xenstored starts.
    pub fn new() -> Tree {
        let mut t = Tree {
            nodes: BTreeMap::new(),
            guest_nodes: 0,
            guest_bytes: 0,
            next_generation: 1,
            touched: None,
        };
        for p in ["/", "/local", "/local/domain"] {
            t.nodes.insert(
                String::from(p),
                Node {
                    value: Vec::new(),
                    perms: Perms::private(BACKEND_DOMID),
                    generation: 0,
                },
            );
        }
        t
    }

    /// A copy for a transaction, recording what it touches.
    pub fn snapshot(&self) -> Tree {
        let mut t = self.clone();
        t.touched = Some(BTreeMap::new());
        t
    }

    /// Guest-owned nodes and bytes, for the quotas and for a transaction's
    /// commit check.
    pub fn guest_usage(&self) -> (usize, usize) {
        (self.guest_nodes, self.guest_bytes)
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn get(&self, path: &str) -> Option<&Node> {
        self.nodes.get(path)
    }

    /// The nodes a transaction used, with their generation before it changed them.
    pub fn touched(&self) -> impl Iterator<Item = (&str, Option<u64>)> {
        self.touched
            .iter()
            .flat_map(|m| m.iter().map(|(p, g)| (p.as_str(), *g)))
    }

    fn touch(&mut self, path: &str) {
        if let Some(t) = &mut self.touched {
            if !t.contains_key(path) {
                let g = self.nodes.get(path).map(|n| n.generation);
                t.insert(String::from(path), g);
            }
        }
    }

    fn bump(&mut self) -> u64 {
        self.next_generation += 1;
        self.next_generation
    }

    /// The permissions of the nearest node at or above `path` that exists
    /// (the root always does).
    fn nearest(&mut self, path: &str) -> Perms {
        let mut p = path;
        loop {
            self.touch(p);
            if self.nodes.contains_key(p) {
                break;
            }
            match parent(p) {
                Some(q) => p = q,
                None => break,
            }
        }
        // The root is never removed; were it gone, nothing but domain 0 could.
        self.nodes
            .get(p)
            .map_or(Perms::private(BACKEND_DOMID), |n| n.perms)
    }

    fn check_node(&mut self, who: DomId, path: &str) -> Result<(), XsError> {
        if is_special(path) {
            return Err(XsError::Einval);
        }
        self.touch(path);
        match self.nodes.get(path).map(|n| n.perms) {
            Some(p) if p.can_read(who) => Ok(()),
            Some(_) => Err(XsError::Eacces),
            // Whether a node exists is itself readable only through its
            // nearest existing ancestor.
            None if self.nearest(path).can_read(who) => Err(XsError::Enoent),
            None => Err(XsError::Eacces),
        }
    }

    /// XS_READ: the node's value.
    pub fn read(&mut self, who: DomId, path: &str) -> Result<&[u8], XsError> {
        self.check_node(who, path)?;
        Ok(self.nodes.get(path).map_or(&[][..], |n| &n.value))
    }

    /// XS_GET_PERMS: the node's permissions.
    pub fn perms(&mut self, who: DomId, path: &str) -> Result<Perms, XsError> {
        self.check_node(who, path)?;
        Ok(self.nodes.get(path).map_or(Perms::private(0), |n| n.perms))
    }

    /// XS_DIRECTORY: the names of the node's children, each followed by a
    /// NUL, appended to `out`; E2BIG if they would not fit one reply.
    pub fn directory(&mut self, who: DomId, path: &str, out: &mut Vec<u8>) -> Result<(), XsError> {
        self.check_node(who, path)?;
        let start = out.len();
        for name in self.children(path) {
            if out.len() - start + name.len() + 1 > PAYLOAD_MAX {
                out.truncate(start);
                return Err(XsError::E2big);
            }
            out.extend_from_slice(name.as_bytes());
            out.push(0);
        }
        Ok(())
    }

    /// The names of `path`'s children, in order.
    pub fn children<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        let prefix_len = if path == "/" { 1 } else { path.len() + 1 };
        self.descendants(path)
            .map(move |p| &p[prefix_len..])
            .filter(|rest| !rest.contains('/'))
    }

    /// Every path strictly below `path`.
    fn descendants<'a>(&'a self, path: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        // Keys below `path` sort between `path/` and `path0` ('0' follows '/').
        let (lo, hi) = if path == "/" {
            (String::from("/"), String::from("0"))
        } else {
            let mut lo = String::from(path);
            lo.push('/');
            let mut hi = String::from(path);
            hi.push('0');
            (lo, hi)
        };
        self.nodes
            .range(lo..hi)
            .map(|(k, _)| k.as_str())
            .filter(move |k| *k != path)
    }

    /// Creates `path` and any missing ancestors (empty values, the parent's
    /// permissions with the creator as owner, as xenstored does), checking
    /// the permission on the nearest existing ancestor and the quotas
    /// first. Returns whether anything was created.
    fn create(&mut self, who: DomId, path: &str, value: &[u8]) -> Result<bool, XsError> {
        if is_special(path) || !path.starts_with('/') {
            return Err(XsError::Einval);
        }
        if value.len() > VALUE_MAX {
            return Err(XsError::Enospc);
        }
        let inherited = self.nearest(path);
        if self.nodes.contains_key(path) {
            return Ok(false);
        }
        if !inherited.can_write(who) {
            return Err(XsError::Eacces);
        }
        let mut perms = inherited;
        if who != BACKEND_DOMID {
            perms.owner = who;
        }
        // Count what would be created before creating anything.
        let (mut nodes, mut bytes) = (0usize, 0usize);
        let mut p = path;
        while !self.nodes.contains_key(p) {
            nodes += 1;
            bytes += cost(p, if p == path { value } else { &[] });
            p = parent(p).unwrap_or("/");
        }
        if perms.owner != BACKEND_DOMID
            && (self.guest_nodes + nodes > GUEST_NODES_MAX
                || self.guest_bytes + bytes > GUEST_BYTES_MAX)
        {
            return Err(XsError::Enospc);
        }
        let mut p = path;
        while !self.nodes.contains_key(p) {
            let generation = self.bump();
            let v = if p == path {
                value.to_vec()
            } else {
                Vec::new()
            };
            self.nodes.insert(
                String::from(p),
                Node {
                    value: v,
                    perms,
                    generation,
                },
            );
            let up = parent(p).unwrap_or("/");
            self.touch(up);
            let generation = self.bump();
            if let Some(n) = self.nodes.get_mut(up) {
                n.generation = generation;
            }
            p = up;
        }
        if perms.owner != BACKEND_DOMID {
            self.guest_nodes += nodes;
            self.guest_bytes += bytes;
        }
        Ok(true)
    }

    /// XS_WRITE: sets the node's value, creating it and its ancestors.
    pub fn write(&mut self, who: DomId, path: &str, value: &[u8]) -> Result<(), XsError> {
        if self.create(who, path, value)? {
            return Ok(());
        }
        let generation = self.bump();
        let guest_bytes = self.guest_bytes;
        let node = self.nodes.get_mut(path).ok_or(XsError::Enoent)?;
        if !node.perms.can_write(who) {
            return Err(XsError::Eacces);
        }
        if node.perms.owner != BACKEND_DOMID {
            let grown = guest_bytes - node.value.len() + value.len();
            if grown > GUEST_BYTES_MAX {
                return Err(XsError::Enospc);
            }
            self.guest_bytes = grown;
        }
        node.value.clear();
        node.value.extend_from_slice(value);
        node.generation = generation;
        Ok(())
    }

    /// XS_MKDIR: creates the node (empty) and its ancestors; a node that
    /// exists is left as it is. Returns whether anything was created.
    pub fn mkdir(&mut self, who: DomId, path: &str) -> Result<bool, XsError> {
        self.create(who, path, &[])
    }

    /// XS_RM: removes the node and everything below it. Removing a node
    /// that does not exist succeeds when its parent exists (xenstored does
    /// the same) and gives ENOENT otherwise. Returns whether anything was
    /// removed.
    pub fn rm(&mut self, who: DomId, path: &str) -> Result<bool, XsError> {
        if is_special(path) || path == "/" {
            return Err(XsError::Einval);
        }
        self.touch(path);
        let Some(node) = self.nodes.get(path) else {
            let up = parent(path).unwrap_or("/");
            return match self.check_node(who, up) {
                Ok(()) => Ok(false),
                Err(e) => Err(e),
            };
        };
        if !node.perms.can_write(who) {
            return Err(XsError::Eacces);
        }
        let doomed: Vec<String> = core::iter::once(String::from(path))
            .chain(self.descendants(path).map(String::from))
            .collect();
        for p in &doomed {
            self.touch(p);
            if let Some(n) = self.nodes.remove(p.as_str()) {
                if n.perms.owner != BACKEND_DOMID {
                    self.guest_nodes -= 1;
                    self.guest_bytes -= cost(p, &n.value);
                }
            }
        }
        let up = parent(path).unwrap_or("/");
        self.touch(up);
        let generation = self.bump();
        if let Some(n) = self.nodes.get_mut(up) {
            n.generation = generation;
        }
        Ok(true)
    }

    /// Sets a node's permissions (the toolstack's and XS_SET_PERMS's
    /// operation): only the owner or domain 0 may; a guest may not give a
    /// node away. Guest-owned counts follow the new owner.
    pub fn set_perms(&mut self, who: DomId, path: &str, perms: Perms) -> Result<(), XsError> {
        self.check_node(who, path)?;
        let generation = self.bump();
        let node = self.nodes.get_mut(path).ok_or(XsError::Enoent)?;
        if who != BACKEND_DOMID && (node.perms.owner != who || perms.owner != who) {
            return Err(XsError::Eacces);
        }
        let c = cost(path, &node.value);
        let was_guest = node.perms.owner != BACKEND_DOMID;
        let is_guest = perms.owner != BACKEND_DOMID;
        if is_guest && !was_guest {
            if self.guest_nodes + 1 > GUEST_NODES_MAX || self.guest_bytes + c > GUEST_BYTES_MAX {
                return Err(XsError::Enospc);
            }
            self.guest_nodes += 1;
            self.guest_bytes += c;
        } else if was_guest && !is_guest {
            self.guest_nodes -= 1;
            self.guest_bytes -= c;
        }
        node.perms = perms;
        node.generation = generation;
        Ok(())
    }
}
