//! The guest's grant table, version 1 (public/grant_table.h): 8-byte
//! entries {u16 flags, domid_t domid, u32 frame} in frames Keel reserved in
//! guest RAM ([`super::XenPages`]) and shows where the guest's
//! XENMEM_add_to_physmap (XENMAPSPACE_grant_table) puts them. Keel, as the
//! backend domain, reaches granted pages only through [`GrantAccess`].

use guest_memory::GuestMemory;

use super::shared_info::PAGE_SIZE;
use super::{GrantAccess, GrantError, BACKEND_DOMID};

/// Grant frames a guest may have (GNTTABOP_query_size `max_nr_frames`).
pub const MAX_GRANT_FRAMES: u32 = 32;
/// Size of a v1 entry.
pub const ENTRY_SIZE: u64 = 8;
/// Entries per frame.
pub const ENTRIES_PER_FRAME: u32 = (PAGE_SIZE / ENTRY_SIZE) as u32;

/// GTF_* flags of a v1 entry.
pub const GTF_TYPE_MASK: u16 = 3;
pub const GTF_PERMIT_ACCESS: u16 = 1;
pub const GTF_READONLY: u16 = 1 << 2;

/// The backend's view of the guest's grant table.
#[derive(Clone)]
pub struct GrantTable {
    memory: GuestMemory,
    /// RAM offset of frame 0 (the frames follow each other).
    base: u64,
    /// The RAM that granted frames must lie in: `[0, ram_end)` minus the
    /// pages Keel reserved for Xen at `[reserved.0, reserved.1)`.
    ram_end: u64,
    reserved: (u64, u64),
}

impl GrantTable {
    /// The table whose frames start at RAM offset `base`; granted frames
    /// must be guest RAM below `ram_end` outside `reserved`.
    pub fn new(memory: GuestMemory, base: u64, ram_end: u64, reserved: (u64, u64)) -> Self {
        GrantTable {
            memory,
            base,
            ram_end,
            reserved,
        }
    }

    /// Checks entry `gref` for an access of `len` bytes at `offset` and
    /// returns the guest-physical address to copy at.
    fn check(&self, gref: u32, offset: usize, len: usize, write: bool) -> Result<u64, GrantError> {
        if gref >= MAX_GRANT_FRAMES * ENTRIES_PER_FRAME {
            return Err(GrantError::BadReference);
        }
        let mut e = [0u8; 8];
        self.memory
            .read(self.base + u64::from(gref) * ENTRY_SIZE, &mut e)
            .map_err(|_| GrantError::BadReference)?;
        let flags = u16::from_le_bytes([e[0], e[1]]);
        let domid = u16::from_le_bytes([e[2], e[3]]);
        let frame = u32::from_le_bytes([e[4], e[5], e[6], e[7]]);
        if flags & GTF_TYPE_MASK != GTF_PERMIT_ACCESS || domid != BACKEND_DOMID {
            return Err(GrantError::NotPermitted);
        }
        if write && flags & GTF_READONLY != 0 {
            return Err(GrantError::ReadOnly);
        }
        let gpa = u64::from(frame) * PAGE_SIZE;
        if gpa + PAGE_SIZE > self.ram_end
            || (gpa < self.reserved.1 && self.reserved.0 < gpa + PAGE_SIZE)
        {
            return Err(GrantError::BadFrame);
        }
        match offset.checked_add(len) {
            Some(end) if end as u64 <= PAGE_SIZE => Ok(gpa + offset as u64),
            _ => Err(GrantError::BadRange),
        }
    }
}

impl GrantAccess for GrantTable {
    fn read_granted(&mut self, gref: u32, offset: usize, buf: &mut [u8]) -> Result<(), GrantError> {
        let gpa = self.check(gref, offset, buf.len(), false)?;
        self.memory.read(gpa, buf).map_err(|_| GrantError::BadFrame)
    }

    fn write_granted(&mut self, gref: u32, offset: usize, data: &[u8]) -> Result<(), GrantError> {
        let gpa = self.check(gref, offset, data.len(), true)?;
        self.memory
            .write(gpa, data)
            .map_err(|_| GrantError::BadFrame)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x10_000;
    const RAM: u64 = 0x40_000;

    fn table() -> GrantTable {
        let m = GuestMemory::new(RAM as usize);
        GrantTable::new(
            m,
            BASE,
            RAM,
            (BASE, BASE + u64::from(MAX_GRANT_FRAMES) * PAGE_SIZE),
        )
    }

    fn grant(t: &GrantTable, gref: u32, flags: u16, domid: u16, frame: u32) {
        let mut e = [0u8; 8];
        e[0..2].copy_from_slice(&flags.to_le_bytes());
        e[2..4].copy_from_slice(&domid.to_le_bytes());
        e[4..8].copy_from_slice(&frame.to_le_bytes());
        t.memory.write(BASE + u64::from(gref) * 8, &e).unwrap();
    }

    #[test]
    fn permitted_grant_reads_and_writes_its_frame() {
        let mut t = table();
        grant(&t, 3, GTF_PERMIT_ACCESS, BACKEND_DOMID, 5);
        t.write_granted(3, 100, b"keel").unwrap();
        let mut b = [0u8; 4];
        t.memory.read(5 * 4096 + 100, &mut b).unwrap();
        assert_eq!(&b, b"keel");
        let mut c = [0u8; 4];
        t.read_granted(3, 100, &mut c).unwrap();
        assert_eq!(&c, b"keel");
        // The whole page, exactly.
        let mut page = [0u8; 4096];
        t.read_granted(3, 0, &mut page).unwrap();
    }

    #[test]
    fn bad_grants_are_refused_without_touching_memory() {
        let mut t = table();
        let mut b = [0u8; 8];
        assert_eq!(
            t.read_granted(MAX_GRANT_FRAMES * ENTRIES_PER_FRAME, 0, &mut b),
            Err(GrantError::BadReference)
        );
        assert_eq!(
            t.read_granted(u32::MAX, 0, &mut b),
            Err(GrantError::BadReference)
        );
        // Entry 1 never granted.
        assert_eq!(t.read_granted(1, 0, &mut b), Err(GrantError::NotPermitted));
        grant(&t, 2, GTF_PERMIT_ACCESS, 5, 5);
        assert_eq!(t.read_granted(2, 0, &mut b), Err(GrantError::NotPermitted));
        grant(&t, 4, GTF_PERMIT_ACCESS | GTF_READONLY, BACKEND_DOMID, 6);
        t.read_granted(4, 0, &mut b).unwrap();
        assert_eq!(t.write_granted(4, 0, b"x"), Err(GrantError::ReadOnly));
        let mut page = [0u8; 4096];
        t.memory.read(6 * 4096, &mut page).unwrap();
        assert!(page.iter().all(|&x| x == 0), "read-only frame untouched");
        grant(&t, 5, GTF_PERMIT_ACCESS, BACKEND_DOMID, (RAM / 4096) as u32);
        assert_eq!(t.write_granted(5, 0, b"x"), Err(GrantError::BadFrame));
        grant(&t, 6, GTF_PERMIT_ACCESS, BACKEND_DOMID, u32::MAX);
        assert_eq!(t.write_granted(6, 0, b"x"), Err(GrantError::BadFrame));
        // The grant table's own frames are not the guest's to grant.
        grant(
            &t,
            7,
            GTF_PERMIT_ACCESS,
            BACKEND_DOMID,
            (BASE / 4096) as u32,
        );
        assert_eq!(t.write_granted(7, 0, b"x"), Err(GrantError::BadFrame));
        grant(&t, 8, GTF_PERMIT_ACCESS, BACKEND_DOMID, 7);
        assert_eq!(t.write_granted(8, 4095, b"xy"), Err(GrantError::BadRange));
        assert_eq!(
            t.read_granted(8, usize::MAX, &mut b),
            Err(GrantError::BadRange)
        );
        // Transitive / accept_transfer entries are not access grants.
        grant(&t, 9, 3, BACKEND_DOMID, 7);
        assert_eq!(t.read_granted(9, 0, &mut b), Err(GrantError::NotPermitted));
    }
}
