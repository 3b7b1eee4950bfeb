//! A volatile disk held in host memory: the image module GRUB loaded, or a
//! buffer a test built. Writes change the buffer and are lost with it.

use alloc::string::String;
use alloc::vec::Vec;

use super::block::{sector_range, BlockBackend, BlockError, SECTOR_SIZE};

enum Bytes {
    Owned(Vec<u8>),
    Static(&'static mut [u8]),
}

impl Bytes {
    fn get(&self) -> &[u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Static(s) => s,
        }
    }

    fn get_mut(&mut self) -> &mut [u8] {
        match self {
            Bytes::Owned(v) => v,
            Bytes::Static(s) => s,
        }
    }
}

/// A RAM disk over a byte buffer whose length is a multiple of 512.
pub struct RamDisk {
    name: String,
    bytes: Bytes,
}

impl RamDisk {
    /// A disk named `name` over `bytes`.
    pub fn new(name: impl Into<String>, bytes: Vec<u8>) -> Result<Self, BlockError> {
        Self::build(name.into(), Bytes::Owned(bytes))
    }

    /// A disk named `name` over memory that lives as long as the hypervisor
    /// (a boot module), without copying it.
    pub fn from_static(
        name: impl Into<String>,
        bytes: &'static mut [u8],
    ) -> Result<Self, BlockError> {
        Self::build(name.into(), Bytes::Static(bytes))
    }

    fn build(name: String, bytes: Bytes) -> Result<Self, BlockError> {
        let len = bytes.get().len();
        if !len.is_multiple_of(SECTOR_SIZE) {
            return Err(BlockError::BadImageSize {
                image: name,
                len: len as u64,
            });
        }
        Ok(RamDisk { name, bytes })
    }

    /// The image's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        self.bytes.get()
    }
}

impl BlockBackend for RamDisk {
    fn name(&self) -> &str {
        &self.name
    }

    fn capacity(&self) -> u64 {
        (self.bytes.get().len() / SECTOR_SIZE) as u64
    }

    fn read_only(&self) -> bool {
        false
    }

    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        let r = sector_range(&self.name, self.capacity(), lba, buf.len())?;
        buf.copy_from_slice(&self.bytes.get()[r]);
        Ok(())
    }

    fn sectors(&self, lba: u64, len: usize) -> Option<&[u8]> {
        let r = sector_range(&self.name, self.capacity(), lba, len).ok()?;
        Some(&self.bytes.get()[r])
    }

    fn sectors_mut(&mut self, lba: u64, len: usize) -> Option<&mut [u8]> {
        let r = sector_range(&self.name, self.capacity(), lba, len).ok()?;
        Some(&mut self.bytes.get_mut()[r])
    }

    fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        let r = sector_range(&self.name, self.capacity(), lba, buf.len())?;
        self.bytes.get_mut()[r].copy_from_slice(buf);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::vec;
    use alloc::vec::Vec;

    #[test]
    fn sectors_in_place_are_the_bytes_read_sectors_gives() {
        let bytes: Vec<u8> = (0..4 * 512).map(|i| (i / 7) as u8).collect();
        let mut d = RamDisk::new("a.img", bytes).unwrap();
        let mut b = [0; 1024];
        d.read_sectors(1, &mut b).unwrap();
        assert_eq!(d.sectors(1, 1024), Some(&b[..]));
        assert_eq!(d.sectors(3, 1024), None, "past the end");
        assert_eq!(d.sectors(0, 100), None, "not whole sectors");
    }

    #[test]
    fn sectors_written_in_place_are_what_read_sectors_gives_back() {
        let mut d = RamDisk::new("a.img", vec![0; 4 * 512]).unwrap();
        d.sectors_mut(2, 1024).unwrap().fill(9);
        let mut b = [0; 1536];
        d.read_sectors(1, &mut b).unwrap();
        assert_eq!(&b[..512], &[0; 512][..]);
        assert_eq!(&b[512..], &[9; 1024][..]);
        assert!(d.sectors_mut(3, 1024).is_none(), "past the end");
        assert!(
            d.sectors_mut(u64::MAX, 512).is_none(),
            "an LBA that overflows"
        );
        assert!(d.sectors_mut(0, 100).is_none(), "not whole sectors");
    }

    #[test]
    fn reads_and_writes_whole_sectors() {
        let mut d = RamDisk::new("a.img", vec![0; 4 * 512]).unwrap();
        assert_eq!(d.capacity(), 4);
        d.write_sectors(3, &[7; 512]).unwrap();
        let mut b = [0; 1024];
        d.read_sectors(2, &mut b).unwrap();
        assert_eq!(&b[..512], &[0; 512][..]);
        assert_eq!(&b[512..], &[7; 512][..]);
    }

    #[test]
    fn past_the_end_is_an_error_naming_image_and_lba() {
        let mut d = RamDisk::new("win.img", vec![0; 4 * 512]).unwrap();
        let e = d.read_sectors(3, &mut [0; 1024]).unwrap_err();
        assert_eq!(
            e,
            BlockError::PastEnd {
                image: "win.img".into(),
                lba: 3,
                sectors: 2,
                capacity: 4
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("win.img") && msg.contains("LBA 3"), "{msg}");
        assert!(d.write_sectors(u64::MAX, &[0; 512]).is_err());
        assert!(matches!(
            d.read_sectors(0, &mut [0; 100]),
            Err(BlockError::Unaligned { .. })
        ));
    }

    #[test]
    fn image_size_must_be_whole_sectors() {
        assert!(matches!(
            RamDisk::new("odd.img", vec![0; 1000]),
            Err(BlockError::BadImageSize { len: 1000, .. })
        ));
    }
}
