//! Xen's PV-on-HVM interfaces, as an unmodified Linux or Windows guest with
//! Xen drivers expects them (a VM asks for them with xl.cfg's
//! `xen_platform_pci = 1`): event channels,
//! grant tables, xenstore, the xen-platform-pci device and the block and
//! network backends.
//!
//! Keel plays domain 0 (the backend domain) for every guest; the guest is
//! always [`GUEST_DOMID`]. The pieces meet at two small traits, so that the
//! backends and xenstore can be tested on the host against fakes:
//! [`GrantAccess`] (the backend's side of the guest's grant table, Xen's
//! public/grant_table.h) and [`EventSender`] (the backend's end of an
//! interdomain event channel, public/event_channel.h).

/// A Xen domain id (public/xen.h `domid_t`).
pub type DomId = u16;

/// The domain Keel plays: the backend domain every frontend names in its
/// `backend-id` key.
pub const BACKEND_DOMID: DomId = 0;

/// The domain id every Keel guest has (Xen's first guest domain is 1).
pub const GUEST_DOMID: DomId = 1;

/// An event-channel port of the guest (2-level ABI: 0..4096 on x86-64,
/// port 0 is never valid).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct EvtchnPort(pub u32);

/// Why a grant could not be used (each maps to Xen's GNTST_* status for the
/// frontend, public/grant_table.h).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GrantError {
    /// The reference is past the end of the guest's grant table
    /// (GNTST_bad_gntref).
    BadReference,
    /// The entry does not grant access to the backend domain: `permit_access`
    /// is clear, or the entry names another domain (GNTST_permission_denied).
    NotPermitted,
    /// A write through a read-only grant (GNTST_permission_denied).
    ReadOnly,
    /// The granted frame is not guest RAM (GNTST_bad_page).
    BadFrame,
    /// Offset and length run past the granted 4 KiB page (GNTST_bad_copy_arg).
    BadRange,
}

/// The backend's access to pages a guest granted to [`BACKEND_DOMID`]
/// (grant table v1: entries of {flags, domid, frame}). Implementations check
/// the entry on every use (a guest may revoke a grant at any time) and copy
/// through the one guest-memory accessor; nothing else of guest memory is
/// reachable through this trait.
pub trait GrantAccess {
    /// Copies `buf.len()` bytes from `offset` in the page granted by `gref`.
    fn read_granted(&mut self, gref: u32, offset: usize, buf: &mut [u8]) -> Result<(), GrantError>;
    /// Copies `data` to `offset` in the page granted by `gref`; a read-only
    /// grant gives [`GrantError::ReadOnly`].
    fn write_granted(&mut self, gref: u32, offset: usize, data: &[u8]) -> Result<(), GrantError>;
}

/// The backend's end of interdomain event channels: raising an event on a
/// guest port sets its pending bit and, unless masked, upcalls the guest
/// (2-level ABI, public/event_channel.h).
pub trait EventSender {
    /// Raises `port`; an unbound or closed port is ignored (a frontend may
    /// close its channel at any time).
    fn notify(&mut self, port: EvtchnPort);
}

pub mod blkback;
pub mod netback;
pub mod ring;
pub mod xenbus;
pub mod xenstore;
