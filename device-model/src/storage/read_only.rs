//! A read-only view of a backend, for CD images and disks the VM
//! configuration marks read-only: every write is refused with an error
//! naming the image and the LBA; reads pass through.

use super::block::{BlockBackend, BlockError};

/// Wraps a backend and refuses writes.
pub struct ReadOnly<B>(pub B);

impl<B: BlockBackend> BlockBackend for ReadOnly<B> {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn capacity(&self) -> u64 {
        self.0.capacity()
    }

    fn read_only(&self) -> bool {
        true
    }

    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        self.0.read_sectors(lba, buf)
    }

    fn sectors(&self, lba: u64, len: usize) -> Option<&[u8]> {
        self.0.sectors(lba, len)
    }

    /// Nothing to write in place: writes go to [`BlockBackend::write_sectors`],
    /// which refuses them.
    fn sectors_mut(&mut self, _lba: u64, _len: usize) -> Option<&mut [u8]> {
        None
    }

    fn write_sectors(&mut self, lba: u64, _buf: &[u8]) -> Result<(), BlockError> {
        Err(BlockError::ReadOnly {
            image: self.0.name().into(),
            lba,
        })
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::RamDisk;
    use alloc::vec;

    #[test]
    fn writes_are_refused_reads_pass() {
        let mut d = ReadOnly(RamDisk::new("cd.iso", vec![5; 2048]).unwrap());
        assert!(d.read_only());
        assert_eq!(
            d.write_sectors(1, &[0; 512]),
            Err(BlockError::ReadOnly {
                image: "cd.iso".into(),
                lba: 1
            })
        );
        assert!(
            d.sectors_mut(1, 512).is_none(),
            "no in-place bytes to write around the refusal"
        );
        let mut b = [0; 512];
        d.read_sectors(1, &mut b).unwrap();
        assert_eq!(b, [5; 512]);
        assert_eq!(d.sectors(1, 512), Some(&b[..]), "in-place reads pass");
    }
}
