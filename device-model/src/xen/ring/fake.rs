//! A guest's grant table, event channels and a device's xenstore
//! directories as the backends see them, for host tests and the fuzz
//! harness: pages indexed by grant reference, each with the checks a real
//! grant entry makes (granted to the backend domain or another one,
//! read-only, present).

use alloc::vec;
use alloc::vec::Vec;

use super::PAGE_SIZE;
use crate::xen::{DomId, EventSender, EvtchnPort, GrantAccess, GrantError, BACKEND_DOMID};

/// One granted page and its entry's flags.
#[derive(Clone)]
pub struct FakePage {
    pub data: Vec<u8>,
    /// `GTF_readonly`.
    pub readonly: bool,
    /// The domain the entry grants to.
    pub domid: DomId,
    /// `GTF_permit_access`; a revoked grant is absent.
    pub present: bool,
}

/// Grant references `0..pages.len()`; references past them are
/// [`GrantError::BadReference`].
#[derive(Clone, Default)]
pub struct FakeGrants {
    pub pages: Vec<FakePage>,
}

impl FakeGrants {
    /// `n` zeroed, writable pages granted to the backend.
    pub fn new(n: usize) -> FakeGrants {
        FakeGrants {
            pages: vec![
                FakePage {
                    data: vec![0; PAGE_SIZE],
                    readonly: false,
                    domid: BACKEND_DOMID,
                    present: true,
                };
                n
            ],
        }
    }

    /// The page of `gref` (panics past the table: tests only).
    pub fn page(&mut self, gref: u32) -> &mut FakePage {
        &mut self.pages[gref as usize]
    }

    fn check(&mut self, gref: u32, offset: usize, len: usize) -> Result<&mut FakePage, GrantError> {
        let p = self
            .pages
            .get_mut(gref as usize)
            .ok_or(GrantError::BadReference)?;
        if !p.present || p.domid != BACKEND_DOMID {
            return Err(GrantError::NotPermitted);
        }
        if offset.checked_add(len).is_none_or(|e| e > PAGE_SIZE) {
            return Err(GrantError::BadRange);
        }
        Ok(p)
    }
}

impl GrantAccess for FakeGrants {
    fn read_granted(&mut self, gref: u32, offset: usize, buf: &mut [u8]) -> Result<(), GrantError> {
        let p = self.check(gref, offset, buf.len())?;
        buf.copy_from_slice(&p.data[offset..offset + buf.len()]);
        Ok(())
    }

    fn write_granted(&mut self, gref: u32, offset: usize, data: &[u8]) -> Result<(), GrantError> {
        let p = self.check(gref, offset, data.len())?;
        if p.readonly {
            return Err(GrantError::ReadOnly);
        }
        p.data[offset..offset + data.len()].copy_from_slice(data);
        Ok(())
    }
}

/// Records every notification.
#[derive(Default)]
pub struct FakeEvents {
    pub sent: Vec<EvtchnPort>,
}

impl EventSender for FakeEvents {
    fn notify(&mut self, port: EvtchnPort) {
        self.sent.push(port);
    }
}

/// A device's frontend and backend directories in a store.
#[derive(Default, Clone)]
pub struct FakeKeys {
    pub frontend: alloc::collections::BTreeMap<alloc::string::String, alloc::string::String>,
    pub backend: alloc::collections::BTreeMap<alloc::string::String, alloc::string::String>,
    /// Every backend `state` written, in order.
    pub backend_states: Vec<alloc::string::String>,
}

impl FakeKeys {
    /// Sets a frontend key, as the frontend's driver does.
    pub fn front(&mut self, key: &str, value: &str) {
        self.frontend.insert(key.into(), value.into());
    }

    /// A backend key's value.
    pub fn back(&self, key: &str) -> Option<&str> {
        self.backend.get(key).map(|s| s.as_str())
    }
}

impl crate::xen::xenbus::XenbusKeys for FakeKeys {
    fn read_frontend(&self, key: &str) -> Option<alloc::string::String> {
        self.frontend.get(key).cloned()
    }

    fn write_backend(&mut self, key: &str, value: &str) {
        if key == "state" {
            self.backend_states.push(value.into());
        }
        self.backend.insert(key.into(), value.into());
    }
}
