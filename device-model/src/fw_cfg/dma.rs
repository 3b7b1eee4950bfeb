//! fw_cfg DMA (fw_cfg.rst "DMA interface").
//!
//! The guest writes the guest-physical address of a 16-byte descriptor,
//! all fields big-endian: control (u32), length (u32), address (u64).
//! Control bits: ERROR 0x01, READ 0x02, SKIP 0x04, SELECT 0x08 (key in bits
//! 31:16), WRITE 0x10. The device selects (if asked), then does one of
//! read, write or skip (in that priority) on the selected item from the
//! current position, and writes the control field back: 0 when done, ERROR
//! if the transfer failed.
//!
//! Every guest-memory access goes through [`GuestMemory`]. A buffer that
//! is not entirely inside guest RAM fails before any byte moves. A
//! descriptor that cannot be read fails too; its control field gets the
//! ERROR bit if that field itself is inside RAM, and nothing else is touched.

use guest_memory::{Gpa, GuestMemory};

use super::FwCfg;

pub const CTL_ERROR: u32 = 0x01;
pub const CTL_READ: u32 = 0x02;
pub const CTL_SKIP: u32 = 0x04;
pub const CTL_SELECT: u32 = 0x08;
pub const CTL_WRITE: u32 = 0x10;

/// Zeroes written at a time when a read runs past the end of the item.
const ZERO_CHUNK: usize = 512;

/// A transfer that failed; the guest sees the ERROR bit.
struct Failed;

impl FwCfg {
    /// Serves the DMA request the guest started by writing the descriptor
    /// address, if any. Returns whether there was one.
    pub fn run_pending_dma(&mut self, mem: &mut dyn GuestMemory) -> bool {
        match self.pending_dma.take() {
            Some(addr) => {
                self.dma(mem, addr);
                true
            }
            None => false,
        }
    }

    /// Runs the descriptor at `desc_addr`.
    pub fn dma(&mut self, mem: &mut dyn GuestMemory, desc_addr: Gpa) {
        let mut desc = [0u8; 16];
        if mem.read(desc_addr, &mut desc).is_err() {
            // The control field may still be inside RAM; nothing else is written.
            let _ = mem.write(desc_addr, &CTL_ERROR.to_be_bytes());
            return;
        }
        let be32 = |i: usize| u32::from_be_bytes([desc[i], desc[i + 1], desc[i + 2], desc[i + 3]]);
        let control = be32(0);
        let length = be32(4);
        let mut a = [0u8; 8];
        a.copy_from_slice(&desc[8..16]);
        let address = u64::from_be_bytes(a);

        if control & CTL_SELECT != 0 {
            self.select((control >> 16) as u16);
        }
        let result = if control & CTL_READ != 0 {
            self.dma_read(mem, address, length)
        } else if control & CTL_WRITE != 0 {
            self.dma_write(mem, address, length)
        } else if control & CTL_SKIP != 0 {
            self.dma_skip(length);
            Ok(())
        } else {
            Ok(())
        };
        let status = match result {
            Ok(()) => 0,
            Err(Failed) => CTL_ERROR,
        };
        let _ = mem.write(desc_addr, &status.to_be_bytes());
    }

    /// Copies `length` bytes of the item from the current position to
    /// `address`; bytes past the item's end (or with no item) are zeros.
    fn dma_read(
        &mut self,
        mem: &mut dyn GuestMemory,
        address: Gpa,
        length: u32,
    ) -> Result<(), Failed> {
        in_ram(mem, address, length)?;
        let off = self.offset as usize;
        let data: &[u8] = self.selected().map_or(&[], |i| i.data.as_slice());
        let avail = data.get(off..).unwrap_or(&[]);
        let n = avail.len().min(length as usize);
        mem.write(address, &avail[..n]).map_err(|_| Failed)?;
        let zeros = [0u8; ZERO_CHUNK];
        let mut done = n;
        while done < length as usize {
            let k = (length as usize - done).min(ZERO_CHUNK);
            mem.write(address + done as u64, &zeros[..k])
                .map_err(|_| Failed)?;
            done += k;
        }
        self.offset = self.offset.saturating_add(n as u32);
        Ok(())
    }

    /// Copies `length` bytes from `address` into the item at the current
    /// position; refused unless the item is writable and the bytes fit.
    fn dma_write(
        &mut self,
        mem: &mut dyn GuestMemory,
        address: Gpa,
        length: u32,
    ) -> Result<(), Failed> {
        in_ram(mem, address, length)?;
        let off = self.offset as usize;
        let key = self.selector & !super::key::WRITE_CHANNEL;
        let item = self
            .items
            .get_mut(&key)
            .filter(|i| i.writable)
            .ok_or(Failed)?;
        let end = off.checked_add(length as usize).ok_or(Failed)?;
        let dst = item
            .data
            .as_mut_slice()
            .and_then(|d| d.get_mut(off..end))
            .ok_or(Failed)?;
        mem.read(address, dst).map_err(|_| Failed)?;
        self.offset = self.offset.saturating_add(length);
        Ok(())
    }

    /// Moves the position `length` bytes on, stopping at the item's end.
    fn dma_skip(&mut self, length: u32) {
        let len = self.selected().map_or(0, |i| i.data.len()) as u64;
        self.offset = (u64::from(self.offset) + u64::from(length)).min(len) as u32;
    }
}

/// Whether `[address, address + length)` lies inside guest RAM.
fn in_ram(mem: &dyn GuestMemory, address: Gpa, length: u32) -> Result<(), Failed> {
    match address.checked_add(u64::from(length)) {
        Some(end) if end <= mem.size() => Ok(()),
        _ => Err(Failed),
    }
}
