//! Host physical memory: the frame allocator, Keel's page tables and its heap.

pub mod heap;
pub mod paging;

pub use keel::frames::FrameAllocator;
