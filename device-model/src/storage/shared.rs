//! One backend behind two front ends: a VM with `xen_platform_pci = 1`
//! offers each IDE disk both as an emulated IDE disk and as a Xen vbd
//! (Xen's device model does the same; docs/misc/hvm-emulated-unplug). The
//! guest's unplug takes the IDE disk off the bus, so only one front end
//! reaches the image at a time; this handle lets both hold it until then.

use alloc::string::String;
use alloc::sync::Arc;

use spin::Mutex;

use super::block::{BlockBackend, BlockError};

/// A backend shared by clones of this handle (each call locks it).
#[derive(Clone)]
pub struct SharedBackend {
    name: String,
    capacity: u64,
    read_only: bool,
    inner: Arc<Mutex<alloc::boxed::Box<dyn BlockBackend>>>,
}

impl SharedBackend {
    pub fn new(backend: alloc::boxed::Box<dyn BlockBackend>) -> SharedBackend {
        SharedBackend {
            name: String::from(backend.name()),
            capacity: backend.capacity(),
            read_only: backend.read_only(),
            inner: Arc::new(Mutex::new(backend)),
        }
    }
}

impl BlockBackend for SharedBackend {
    fn name(&self) -> &str {
        &self.name
    }

    fn capacity(&self) -> u64 {
        self.capacity
    }

    fn read_only(&self) -> bool {
        self.read_only
    }

    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.inner.lock().read_sectors(lba, buf)
    }

    fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.inner.lock().write_sectors(lba, buf)
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        self.inner.lock().flush()
    }
}
