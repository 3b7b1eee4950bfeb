//! Watches: a client's request to be told, with its token, when a node at
//! or below a path changes (docs/misc/xenstore.txt, WATCH). Bounded per
//! connection in number and bytes (Xen's default watch quota is 128; over
//! it, E2BIG).

use alloc::string::String;
use alloc::vec::Vec;

use super::path::is_within;
use super::wire::XsError;

/// The most watches one connection may hold.
pub const WATCHES_MAX: usize = 128;
/// The most bytes of paths and tokens one connection's watches may hold.
pub const WATCH_BYTES_MAX: usize = 32 << 10;

/// One registered watch.
#[derive(Debug, Clone)]
pub struct Watch {
    /// Absolute path, or a special `@...` name.
    pub path: String,
    pub token: Vec<u8>,
    /// Registered with a relative path: events name paths relative to the
    /// domain path.
    pub relative: bool,
}

/// The watches of one connection.
#[derive(Debug, Default)]
pub struct Watches {
    list: Vec<Watch>,
    bytes: usize,
}

impl Watches {
    pub fn new() -> Watches {
        Watches {
            list: Vec::with_capacity(WATCHES_MAX),
            bytes: 0,
        }
    }

    /// Adds a watch; EEXIST for the same path and token twice, E2BIG past
    /// the quota.
    pub fn add(&mut self, watch: Watch) -> Result<(), XsError> {
        if self
            .list
            .iter()
            .any(|w| w.path == watch.path && w.token == watch.token)
        {
            return Err(XsError::Eexist);
        }
        let b = watch.path.len() + watch.token.len();
        if self.list.len() >= WATCHES_MAX || self.bytes + b > WATCH_BYTES_MAX {
            return Err(XsError::E2big);
        }
        self.bytes += b;
        self.list.push(watch);
        Ok(())
    }

    /// Removes the watch with this path and token; ENOENT if there is none.
    pub fn remove(&mut self, path: &str, token: &[u8]) -> Result<(), XsError> {
        let i = self
            .list
            .iter()
            .position(|w| w.path == path && w.token == token)
            .ok_or(XsError::Enoent)?;
        let w = self.list.swap_remove(i);
        self.bytes -= w.path.len() + w.token.len();
        Ok(())
    }

    /// XS_RESET_WATCHES: removes them all.
    pub fn clear(&mut self) {
        self.list.clear();
        self.bytes = 0;
    }

    pub fn len(&self) -> usize {
        self.list.len()
    }

    pub fn is_empty(&self) -> bool {
        self.list.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = &Watch> {
        self.list.iter()
    }
}

/// The path a watch on `watched` reports when `changed` changes, or `None`
/// if the watch does not fire: a watch fires for its node and every node
/// below it; when a node is removed, watches below it fire too, each
/// reporting its own path (xenstored's rule for removal).
pub fn fires<'a>(watched: &'a str, changed: &'a str, removed: bool) -> Option<&'a str> {
    if watched.starts_with('@') {
        return None;
    }
    if is_within(changed, watched) {
        Some(changed)
    } else if removed && is_within(watched, changed) {
        Some(watched)
    } else {
        None
    }
}
