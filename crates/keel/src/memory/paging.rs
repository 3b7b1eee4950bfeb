//! Keel's own page tables: an identity map of all physical memory with 2 MiB
//! pages, replacing the 4 GiB boot map once the memory map is known.

use super::FrameAllocator;
use x86_64::registers::control::{Cr3, Cr3Flags};
use x86_64::structures::paging::PhysFrame;
use x86_64::PhysAddr;

const PRESENT: u64 = 1 << 0;
const WRITABLE: u64 = 1 << 1;
const HUGE: u64 = 1 << 7;
/// Page-level write-through and cache disable: uncached (PAT entry 3).
const UNCACHED: u64 = (1 << 3) | (1 << 4);
/// The top 32 MiB below 4 GiB hold the local APIC, IOAPIC, HPET and firmware
/// flash on a PC: device memory, mapped uncached.
const DEVICE_WINDOW: core::ops::Range<u64> = 0xfe00_0000..0x1_0000_0000;
const GIB: u64 = 1 << 30;

fn zeroed_table(frames: &mut FrameAllocator) -> Option<&'static mut [u64; 512]> {
    let pa = frames.alloc_frame()?;
    // SAFETY: the frame is identity-mapped (below the mapped limit, since it
    // came from RAM the boot map or the new map covers) and now owned here.
    let table = unsafe { &mut *(pa as *mut [u64; 512]) };
    table.fill(0);
    Some(table)
}

/// Builds and loads an identity map of `[0, limit)` (rounded up to 1 GiB,
/// at least 4 GiB so the local APIC and other MMIO below 4 GiB stay reachable).
pub fn init(frames: &mut FrameAllocator, limit: u64) -> Option<()> {
    let limit = limit
        .max(4 * GIB)
        .checked_next_multiple_of(GIB)?
        .min(512 * GIB);
    let pml4 = zeroed_table(frames)?;
    let pdpt = zeroed_table(frames)?;
    pml4[0] = (pdpt as *mut _ as u64) | PRESENT | WRITABLE;
    for gib in 0..limit / GIB {
        let pd = zeroed_table(frames)?;
        for (i, entry) in pd.iter_mut().enumerate() {
            let addr = gib * GIB + (i as u64) * (2 << 20);
            let caching = if DEVICE_WINDOW.contains(&addr) {
                UNCACHED
            } else {
                0
            };
            *entry = addr | PRESENT | WRITABLE | HUGE | caching;
        }
        pdpt[gib as usize] = (pd as *mut _ as u64) | PRESENT | WRITABLE;
    }
    let frame = PhysFrame::from_start_address(PhysAddr::new(pml4 as *mut _ as u64)).ok()?;
    // SAFETY: the new tables identity-map everything the boot tables mapped
    // (and more), so every address Keel uses stays valid across the switch.
    unsafe { Cr3::write(frame, Cr3Flags::empty()) };
    Some(())
}
