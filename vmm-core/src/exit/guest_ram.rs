//! Guest RAM as the page walker reads it, for the exit handlers that walk
//! the guest's page tables themselves (a task switch's implicit accesses,
//! a hypercall's argument pointers): the one guest-memory accessor behind
//! the walker's [`PhysMemory`]. Anything that is not RAM (MMIO, holes) is
//! [`PhysError::NotRam`]: page tables and the structures these handlers
//! touch must be in RAM.

use guest_memory::GuestMemory;
use x86_emul::{PhysError, PhysMemory};

/// Guest RAM for the page walker.
pub(crate) struct GuestRam<'a>(pub &'a GuestMemory);

impl PhysMemory for GuestRam<'_> {
    fn read_phys(&mut self, gpa: u64, data: &mut [u8]) -> Result<(), PhysError> {
        self.0.read(gpa, data).map_err(|_| PhysError::NotRam)
    }
    fn write_phys(&mut self, gpa: u64, data: &[u8]) -> Result<(), PhysError> {
        self.0.write(gpa, data).map_err(|_| PhysError::NotRam)
    }
}
