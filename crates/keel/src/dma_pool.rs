//! A fixed pool of physically contiguous pages for device DMA: the rings of
//! the host disk's virtqueues. It is carved once from the frame allocator
//! when a device needs it; pages are handed out first-fit and can be given
//! back (the frame allocator itself never takes memory back).

use alloc::vec;
use alloc::vec::Vec;

use crate::frames::FRAME_SIZE;

/// `used.len()` pages starting at host-physical `base`.
#[derive(Debug, Clone)]
pub struct DmaPool {
    base: u64,
    used: Vec<bool>,
}

impl DmaPool {
    /// A pool over `pages` pages at `base` (frame-aligned).
    pub fn new(base: u64, pages: usize) -> Self {
        DmaPool {
            base,
            used: vec![false; pages],
        }
    }

    /// `pages` contiguous pages, or `None` when no free run is that long.
    pub fn alloc(&mut self, pages: usize) -> Option<u64> {
        if pages == 0 || pages > self.used.len() {
            return None;
        }
        let first =
            (0..=self.used.len() - pages).find(|&i| self.used[i..i + pages].iter().all(|u| !u))?;
        self.used[first..first + pages].fill(true);
        Some(self.base + first as u64 * FRAME_SIZE)
    }

    /// Gives back `pages` pages at `addr`; `false` (and nothing changes) when
    /// they are not an allocated run of this pool.
    pub fn free(&mut self, addr: u64, pages: usize) -> bool {
        let Some(offset) = addr.checked_sub(self.base) else {
            return false;
        };
        if offset % FRAME_SIZE != 0 || pages == 0 {
            return false;
        }
        let first = (offset / FRAME_SIZE) as usize;
        match self.used.get_mut(first..first.saturating_add(pages)) {
            Some(run) if run.iter().all(|&u| u) => {
                run.fill(false);
                true
            }
            _ => false,
        }
    }

    /// Pages not handed out.
    pub fn free_pages(&self) -> usize {
        self.used.iter().filter(|u| !**u).count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x20_0000;

    #[test]
    fn first_fit_contiguous_runs() {
        let mut p = DmaPool::new(BASE, 8);
        assert_eq!(p.alloc(3), Some(BASE));
        assert_eq!(p.alloc(2), Some(BASE + 3 * FRAME_SIZE));
        assert_eq!(p.alloc(4), None, "only 3 pages are left");
        assert_eq!(p.alloc(3), Some(BASE + 5 * FRAME_SIZE));
        assert_eq!(p.free_pages(), 0);
        assert_eq!(p.alloc(1), None);
        assert_eq!(p.alloc(0), None);
    }

    #[test]
    fn freed_runs_are_reused_and_bad_frees_refused() {
        let mut p = DmaPool::new(BASE, 4);
        let a = p.alloc(2).unwrap();
        let b = p.alloc(2).unwrap();
        assert!(p.free(a, 2));
        assert!(!p.free(a, 2), "already free");
        assert!(!p.free(BASE - FRAME_SIZE, 1), "below the pool");
        assert!(!p.free(b + 1, 1), "not page-aligned");
        assert!(!p.free(b, 3), "past the pool's end");
        assert_eq!(p.free_pages(), 2);
        assert_eq!(p.alloc(2), Some(a));
        assert_eq!(DmaPool::new(BASE, 2).alloc(3), None);
    }
}
