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
//! The guest starts a request by writing the descriptor's address; the
//! device runs it inside that port write, through the guest-memory handle
//! it was given when it was created, and a request longer than
//! [`DMA_BUDGET`] goes on in the device's service hook
//! ([`crate::timer::TimerDevice`]), which the platform calls before each
//! entry into the guest.
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

/// Bytes one DMA request moves per call of the platform (per VM exit). The
/// guest chooses the length (up to 4 GiB); a longer request goes on at the
/// platform's next calls, and its control field stays non-zero until it is
/// done, which fw_cfg.rst tells the guest to poll for.
pub const DMA_BUDGET: u32 = 128 * 1024;

/// A transfer that failed; the guest sees the ERROR bit.
struct Failed;

/// A READ or WRITE request with bytes still to move.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct DmaJob {
    desc: Gpa,
    write: bool,
    address: Gpa,
    left: u32,
}

impl FwCfg {
    /// Moves the next [`DMA_BUDGET`] bytes of the request in progress, or
    /// starts the one the guest asked for by writing the descriptor
    /// address. Returns whether there was one.
    pub fn run_pending_dma(&mut self) -> bool {
        if let Some(job) = self.dma_job.take() {
            self.dma_step(job);
            return true;
        }
        match self.pending_dma.take() {
            Some(addr) => {
                self.dma(addr);
                true
            }
            None => false,
        }
    }

    /// Starts the descriptor at `desc_addr` and moves its first
    /// [`DMA_BUDGET`] bytes. Every check (buffer in RAM, a writable item the
    /// bytes fit in) is made for the whole length before a byte moves.
    pub fn dma(&mut self, desc_addr: Gpa) {
        let mem = &self.mem;
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
        let write = control & CTL_READ == 0 && control & CTL_WRITE != 0;
        if control & (CTL_READ | CTL_WRITE) == 0 {
            if control & CTL_SKIP != 0 {
                self.dma_skip(length);
            }
            let _ = self.mem.write(desc_addr, &0u32.to_be_bytes());
            return;
        }
        let checked = in_ram(&self.mem, address, length).and_then(|()| {
            if write {
                self.writable_span(length)
            } else {
                Ok(())
            }
        });
        if checked.is_err() {
            let _ = self.mem.write(desc_addr, &CTL_ERROR.to_be_bytes());
            return;
        }
        let job = DmaJob {
            desc: desc_addr,
            write,
            address,
            left: length,
        };
        self.dma_step(job);
    }

    /// Moves at most [`DMA_BUDGET`] bytes of `job`; writes the control field
    /// when the request ends, or keeps the job for the next call.
    fn dma_step(&mut self, mut job: DmaJob) {
        let n = job.left.min(DMA_BUDGET);
        let moved = if job.write {
            self.dma_write(job.address, n)
        } else {
            self.dma_read(job.address, n)
        };
        let status = match moved {
            Err(Failed) => CTL_ERROR,
            Ok(()) => {
                job.address += u64::from(n);
                job.left -= n;
                if job.left > 0 {
                    self.dma_job = Some(job);
                    return;
                }
                0
            }
        };
        let _ = self.mem.write(job.desc, &status.to_be_bytes());
    }

    /// Copies `length` bytes of the item from the current position to
    /// `address`; bytes past the item's end (or with no item) are zeros.
    fn dma_read(&mut self, address: Gpa, length: u32) -> Result<(), Failed> {
        let mem = &self.mem;
        in_ram(mem, address, length)?;
        let off = self.offset as usize;
        let data: &[u8] = self.selected().map_or(&[], |i| i.data.as_slice());
        let avail = data.get(off..).unwrap_or(&[]);
        let n = avail.len().min(length as usize);
        mem.write(address, &avail[..n]).map_err(|_| Failed)?;
        mem.fill(address + n as u64, length as usize - n, 0)
            .map_err(|_| Failed)?;
        self.offset = self.offset.saturating_add(n as u32);
        Ok(())
    }

    /// Copies `length` bytes from `address` into the item at the current
    /// position; refused unless the item is writable and the bytes fit.
    fn dma_write(&mut self, address: Gpa, length: u32) -> Result<(), Failed> {
        in_ram(&self.mem, address, length)?;
        self.writable_span(length)?;
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
        self.mem.read(address, dst).map_err(|_| Failed)?;
        self.offset = self.offset.saturating_add(length);
        Ok(())
    }

    /// Whether `length` bytes from the current position fit in the
    /// selected item and it is writable.
    fn writable_span(&self, length: u32) -> Result<(), Failed> {
        let key = self.selector & !super::key::WRITE_CHANNEL;
        let item = self.items.get(&key).filter(|i| i.writable).ok_or(Failed)?;
        let end = (self.offset as usize)
            .checked_add(length as usize)
            .ok_or(Failed)?;
        if end <= item.data.len() {
            Ok(())
        } else {
            Err(Failed)
        }
    }

    /// Moves the position `length` bytes on, stopping at the item's end.
    fn dma_skip(&mut self, length: u32) {
        let len = self.selected().map_or(0, |i| i.data.len()) as u64;
        self.offset = (u64::from(self.offset) + u64::from(length)).min(len) as u32;
    }
}

/// Whether `[address, address + length)` lies inside guest RAM.
fn in_ram(mem: &GuestMemory, address: Gpa, length: u32) -> Result<(), Failed> {
    match address.checked_add(u64::from(length)) {
        Some(end) if end <= mem.size() => Ok(()),
        _ => Err(Failed),
    }
}
