//! Keel's heap: a fixed region in Keel's own image, managed by `talc`
//! (a well-kept no_std allocator; no reason to write another).

use talc::{ErrOnOom, Talc, Talck};

const HEAP_SIZE: usize = 16 << 20;

#[repr(align(4096))]
#[allow(dead_code)] // only reached through a raw pointer
struct HeapArea([u8; HEAP_SIZE]);
static mut HEAP: HeapArea = HeapArea([0; HEAP_SIZE]);

#[global_allocator]
static ALLOCATOR: Talck<spin::Mutex<()>, ErrOnOom> = Talc::new(ErrOnOom).lock();

/// Gives the heap region to the allocator. Call once, before any allocation.
pub fn init() {
    let base = core::ptr::addr_of_mut!(HEAP) as *mut u8;
    // SAFETY: HEAP is a 'static region used by nothing but the allocator, and
    // this runs once at boot before anything allocates.
    unsafe {
        ALLOCATOR
            .lock()
            .claim(talc::Span::from_base_size(base, HEAP_SIZE))
            .expect("the heap region is large enough to claim");
    }
}
