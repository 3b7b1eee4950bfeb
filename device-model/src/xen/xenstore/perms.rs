//! Node permissions as xenstore keeps them (docs/misc/xenstore.txt,
//! "Permissions"): an owner, who may do anything to the node, a default
//! access for every other domain, and access for named domains. Domain 0
//! (Keel, [`BACKEND_DOMID`]) is privileged and passes every check.

use alloc::string::String;
use core::fmt::Write;

use crate::xen::{DomId, BACKEND_DOMID};

/// What a domain may do to a node: xenstore's `n`, `r`, `w`, `b` letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    None,
    Read,
    Write,
    Both,
}

impl Access {
    fn letter(self) -> char {
        match self {
            Access::None => 'n',
            Access::Read => 'r',
            Access::Write => 'w',
            Access::Both => 'b',
        }
    }
    fn can_read(self) -> bool {
        matches!(self, Access::Read | Access::Both)
    }
    fn can_write(self) -> bool {
        matches!(self, Access::Write | Access::Both)
    }
}

/// The most named-domain entries a node carries: Keel has two domains.
const ACL_MAX: usize = 2;

/// One node's permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Perms {
    pub owner: DomId,
    /// Access of every domain that is neither the owner nor in `acl`.
    pub default: Access,
    pub acl: [Option<(DomId, Access)>; ACL_MAX],
}

impl Perms {
    /// Owned by `owner`, nobody else may do anything (`n<owner>`).
    pub const fn private(owner: DomId) -> Perms {
        Perms {
            owner,
            default: Access::None,
            acl: [None; ACL_MAX],
        }
    }

    /// Owned by `owner`; `reader` may read (`n<owner>`, `r<reader>`), as
    /// the toolstack sets a backend directory for its frontend and a
    /// frontend directory for its backend.
    pub const fn shared_read(owner: DomId, reader: DomId) -> Perms {
        Perms {
            owner,
            default: Access::None,
            acl: [Some((reader, Access::Read)), None],
        }
    }

    fn access(&self, who: DomId) -> Access {
        if who == BACKEND_DOMID || who == self.owner {
            return Access::Both;
        }
        self.acl
            .iter()
            .flatten()
            .find(|(d, _)| *d == who)
            .map_or(self.default, |&(_, a)| a)
    }

    pub fn can_read(&self, who: DomId) -> bool {
        self.access(who).can_read()
    }

    pub fn can_write(&self, who: DomId) -> bool {
        self.access(who).can_write()
    }

    /// The XS_GET_PERMS reply: `<letter><domid>\0` for the owner (with the
    /// default access) then each named domain.
    pub fn wire(&self) -> String {
        let mut s = String::with_capacity(16);
        let _ = write!(s, "{}{}\0", self.default.letter(), self.owner);
        for (d, a) in self.acl.iter().flatten() {
            let _ = write!(s, "{}{}\0", a.letter(), d);
        }
        s
    }
}
