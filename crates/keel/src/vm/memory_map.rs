//! The pool of table pages a VM's kept nested page table grows into while it
//! runs (large pages split for PAM, SMRAM, A20, BARs and dirty logs; RAM
//! mapped on its first touch).
//!
//! Allocated with the VM and never grown: no guest action takes more host
//! memory than the pool holds; when it is empty the map refuses the change
//! (`vmm_core::paging::RemapError::Table`) and Keel logs it.

use alloc::vec::Vec;

use keel::frames::FrameAllocator;
use vmm_core::paging::TableMemory;

use super::VmError;

/// Table pages for run-time changes. 64 pages cover every split the chipset
/// can cause (the first 1 GiB and 2 MiB pages) and dirty logs of 120 MiB.
pub const RUNTIME_TABLE_PAGES: usize = 64;

/// Table pages the first touches of `ram_bytes` of RAM may need besides:
/// a chunk mapped where no other of its GiB is needs that GiB's table of
/// 2 MiB entries (and, past 512 GiB, a table of GiB entries).
pub fn first_touch_table_pages(ram_bytes: u64) -> usize {
    (ram_bytes.div_ceil(1 << 30) + ram_bytes.div_ceil(1 << 39)) as usize
}

/// Frames for tables, all taken from the allocator when the VM is created.
pub struct FramePool {
    free: Vec<u64>,
}

impl FramePool {
    pub fn new(frames: &mut FrameAllocator, pages: usize) -> Result<Self, VmError> {
        let mut free = Vec::with_capacity(pages);
        for _ in 0..pages {
            let left = frames.free_bytes();
            free.push(frames.alloc_frame().ok_or(VmError::OutOfMemory {
                what: "nested page tables",
                bytes: 4096,
                free: left,
            })?);
        }
        Ok(FramePool { free })
    }
}

/// The table page at `pa`.
pub(super) fn frame_table(pa: u64) -> &'static mut [u64; 512] {
    // SAFETY: every caller passes a frame the frame allocator handed to a
    // VM's nested page table: identity-mapped, page-aligned, used for
    // nothing else and never freed (Keel ends with the VM); the table has
    // one owner, which holds at most one of these references at a time.
    unsafe { &mut *(pa as *mut [u64; 512]) }
}

impl TableMemory for FramePool {
    fn alloc_table(&mut self) -> Option<u64> {
        let pa = self.free.pop()?;
        frame_table(pa).fill(0);
        Some(pa)
    }

    fn table(&mut self, pa: u64) -> &mut [u64; 512] {
        frame_table(pa)
    }
}
