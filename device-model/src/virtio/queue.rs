//! Split virtqueues (virtio 1.2 2.7): the descriptor table, the driver area
//! (available ring) and the device area (used ring) in guest memory, walked
//! through [`GuestMemory`] only.
//!
//! Every chain is bounded: a chain never holds more descriptors than its
//! [`Chain`] was made for (the queue's maximum size), a walk through one
//! table visits at most that table's entries (so a `next` loop ends in an
//! error), an indirect table inside an indirect table is refused (2.7.5.3.1),
//! and a chain's total length fits in 32 bits (2.7.5.2). A queue whose
//! rings break one of these rules is *broken*: it is not used again until
//! the driver resets the device, and the transport sets DEVICE_NEEDS_RESET
//! (2.1.2).

use alloc::vec::Vec;
use core::fmt;

use guest_memory::{GuestMemory, GuestMemoryError};

/// Descriptor flags (2.7.5).
pub const VIRTQ_DESC_F_NEXT: u16 = 1;
pub const VIRTQ_DESC_F_WRITE: u16 = 2;
pub const VIRTQ_DESC_F_INDIRECT: u16 = 4;
/// Available ring flag: the driver asks for no interrupts (2.7.7).
pub const VIRTQ_AVAIL_F_NO_INTERRUPT: u16 = 1;
/// The largest Queue Size of a split virtqueue (2.7).
pub const MAX_QUEUE_SIZE: u16 = 32768;
/// `queue_msix_vector` / `config_msix_vector` value meaning "no vector" (4.1.5.1.2).
pub const VIRTIO_MSI_NO_VECTOR: u16 = 0xFFFF;

/// Bytes of one descriptor: addr (le64), len (le32), flags (le16), next (le16).
const DESC_LEN: u64 = 16;

/// Why a queue cannot be used: the driver broke a rule of 2.7.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QueueError {
    /// Queue Size 0, above the device's maximum, or not a power of 2 (2.7).
    BadSize { size: u16, max: u16 },
    /// A ring not aligned as 2.7 table "Virtqueue Part Alignment" requires.
    Misaligned { part: &'static str, gpa: u64 },
    /// A ring, or an indirect table, not inside guest RAM.
    OutsideRam {
        part: &'static str,
        gpa: u64,
        len: u64,
    },
    /// The available index moved more than Queue Size past the last one seen.
    AvailIdxJump { last: u16, idx: u16 },
    /// A descriptor index at or past the end of its table.
    DescIndex { index: u16, table_len: u32 },
    /// A chain that visits more descriptors than its table holds: a loop.
    Loop { head: u16 },
    /// A chain longer than the queue size allows.
    TooLong { head: u16 },
    /// An indirect descriptor inside an indirect table, or with NEXT set.
    NestedIndirect { head: u16 },
    /// An indirect descriptor though VIRTIO_F_INDIRECT_DESC was not negotiated.
    IndirectNotNegotiated { head: u16 },
    /// An indirect table of 0 bytes, not a multiple of 16, or too long.
    BadIndirectLen { head: u16, len: u32 },
    /// A device-readable descriptor after a device-writable one (2.7.4.2).
    ReadableAfterWritable { head: u16 },
    /// A chain whose lengths add up past 2^32 - 1 (2.7.5.2).
    Oversized { head: u16 },
    /// A ring access failed (its address was checked; guest RAM cannot shrink).
    Memory(GuestMemoryError),
}

impl fmt::Display for QueueError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            QueueError::BadSize { size, max } => write!(
                f,
                "queue size {size} is not a power of 2 between 1 and {max}"
            ),
            QueueError::Misaligned { part, gpa } => {
                write!(f, "the {part} at {gpa:#x} is misaligned")
            }
            QueueError::OutsideRam { part, gpa, len } => {
                write!(f, "the {part} at {gpa:#x}+{len:#x} is outside guest RAM")
            }
            QueueError::AvailIdxJump { last, idx } => write!(
                f,
                "the available index jumped from {last} to {idx}, past the queue size"
            ),
            QueueError::DescIndex { index, table_len } => write!(
                f,
                "descriptor index {index} is past its table of {table_len}"
            ),
            QueueError::Loop { head } => write!(f, "the chain from descriptor {head} loops"),
            QueueError::TooLong { head } => write!(
                f,
                "the chain from descriptor {head} is longer than the queue size"
            ),
            QueueError::NestedIndirect { head } => write!(
                f,
                "the chain from descriptor {head} nests indirect tables or chains one"
            ),
            QueueError::IndirectNotNegotiated { head } => write!(
                f,
                "the chain from descriptor {head} uses an indirect table, a feature not negotiated"
            ),
            QueueError::BadIndirectLen { head, len } => write!(
                f,
                "the chain from descriptor {head} has an indirect table of {len} bytes"
            ),
            QueueError::ReadableAfterWritable { head } => write!(
                f,
                "the chain from descriptor {head} has a device-readable buffer after a writable one"
            ),
            QueueError::Oversized { head } => {
                write!(f, "the chain from descriptor {head} is longer than 4 GiB")
            }
            QueueError::Memory(e) => write!(f, "{e}"),
        }
    }
}

impl From<GuestMemoryError> for QueueError {
    fn from(e: GuestMemoryError) -> QueueError {
        QueueError::Memory(e)
    }
}

/// A chain's buffers are shorter than an access, or one is outside guest
/// RAM: the device reports an error for that request (the ring is sound).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BufferFault;

/// One buffer of a chain: `len` bytes at guest-physical `addr`, written by
/// the device if `writable`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Desc {
    pub addr: u64,
    pub len: u32,
    pub writable: bool,
}

/// A descriptor chain taken from the available ring: its head index and
/// its buffers, the device-readable ones first. Its room is allocated once
/// (the queue's maximum size); a walk never grows it.
pub struct Chain {
    head: u16,
    descs: Vec<Desc>,
    capacity: usize,
    readable: usize,
    readable_len: u64,
    writable_len: u64,
}

/// Where a byte offset of a chain's readable or writable stream falls.
fn locate(descs: &[Desc], mut offset: u64) -> Option<(usize, u64)> {
    for (i, d) in descs.iter().enumerate() {
        if offset < u64::from(d.len) {
            return Some((i, offset));
        }
        offset -= u64::from(d.len);
    }
    None
}

impl Chain {
    /// Room for chains of up to `capacity` descriptors.
    pub fn new(capacity: u16) -> Chain {
        Chain {
            head: 0,
            descs: Vec::with_capacity(usize::from(capacity)),
            capacity: usize::from(capacity),
            readable: 0,
            readable_len: 0,
            writable_len: 0,
        }
    }

    fn clear(&mut self, head: u16) {
        self.head = head;
        self.descs.clear();
        self.readable = 0;
        self.readable_len = 0;
        self.writable_len = 0;
    }

    fn push(&mut self, d: Desc) -> Result<(), QueueError> {
        let head = self.head;
        if self.descs.len() >= self.capacity {
            return Err(QueueError::TooLong { head });
        }
        if d.writable {
            self.writable_len += u64::from(d.len);
        } else {
            if self.readable != self.descs.len() {
                return Err(QueueError::ReadableAfterWritable { head });
            }
            self.readable += 1;
            self.readable_len += u64::from(d.len);
        }
        if self.readable_len + self.writable_len > u64::from(u32::MAX) {
            return Err(QueueError::Oversized { head });
        }
        self.descs.push(d);
        Ok(())
    }

    /// The head descriptor's index: what the used ring returns.
    pub fn head(&self) -> u16 {
        self.head
    }

    /// The buffers, readable first.
    pub fn descs(&self) -> &[Desc] {
        &self.descs
    }

    /// Bytes the device may read.
    pub fn readable_len(&self) -> u64 {
        self.readable_len
    }

    /// Bytes the device may write.
    pub fn writable_len(&self) -> u64 {
        self.writable_len
    }

    /// Reads `buf.len()` bytes of the readable buffers, taken as one stream,
    /// from byte `offset` on. Fails (having read part) if the stream is
    /// shorter or a buffer is outside guest RAM.
    pub fn read(&self, mem: &GuestMemory, offset: u64, buf: &mut [u8]) -> Result<(), BufferFault> {
        let descs = &self.descs[..self.readable];
        let Some((mut i, mut at)) = locate(descs, offset) else {
            return if buf.is_empty() {
                Ok(())
            } else {
                Err(BufferFault)
            };
        };
        let mut done = 0;
        while done < buf.len() {
            let d = descs.get(i).ok_or(BufferFault)?;
            let n = ((u64::from(d.len) - at) as usize).min(buf.len() - done);
            let gpa = d.addr.checked_add(at).ok_or(BufferFault)?;
            mem.read(gpa, &mut buf[done..done + n])
                .map_err(|_| BufferFault)?;
            done += n;
            i += 1;
            at = 0;
        }
        Ok(())
    }

    /// Writes `data` into the writable buffers, taken as one stream, from
    /// byte `offset` on. Fails (having written part) if the stream is
    /// shorter or a buffer is outside guest RAM.
    pub fn write(&self, mem: &GuestMemory, offset: u64, data: &[u8]) -> Result<(), BufferFault> {
        let descs = &self.descs[self.readable..];
        let Some((mut i, mut at)) = locate(descs, offset) else {
            return if data.is_empty() {
                Ok(())
            } else {
                Err(BufferFault)
            };
        };
        let mut done = 0;
        while done < data.len() {
            let d = descs.get(i).ok_or(BufferFault)?;
            let n = ((u64::from(d.len) - at) as usize).min(data.len() - done);
            let gpa = d.addr.checked_add(at).ok_or(BufferFault)?;
            mem.write(gpa, &data[done..done + n])
                .map_err(|_| BufferFault)?;
            done += n;
            i += 1;
            at = 0;
        }
        Ok(())
    }
}

/// `vring_need_event` (2.7.7.2 / 2.7.10): whether moving an index from `old`
/// to `new` passes the other side's `event` index.
pub fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// One split virtqueue's registers (4.1.4.3 common configuration) and the
/// device's place in its rings.
#[derive(Debug, Clone)]
pub struct Virtqueue {
    /// The largest size the device offers (`queue_size` at reset).
    pub max_size: u16,
    /// `queue_size`: what the driver chose.
    pub size: u16,
    /// `queue_enable`.
    pub ready: bool,
    /// `queue_desc`, `queue_driver`, `queue_device`.
    pub desc: u64,
    pub avail: u64,
    pub used: u64,
    /// `queue_msix_vector`.
    pub msix_vector: u16,
    last_avail: u16,
    /// The next used index to publish, and the one last published.
    used_idx: u16,
    published: u16,
    broken: bool,
}

fn region(
    part: &'static str,
    mem: &GuestMemory,
    gpa: u64,
    len: u64,
    align: u64,
) -> Result<(), QueueError> {
    if !gpa.is_multiple_of(align) {
        return Err(QueueError::Misaligned { part, gpa });
    }
    match gpa.checked_add(len) {
        Some(end) if end <= mem.size() => Ok(()),
        _ => Err(QueueError::OutsideRam { part, gpa, len }),
    }
}

impl Virtqueue {
    /// A queue of at most `max_size` entries, in its reset state.
    pub fn new(max_size: u16) -> Virtqueue {
        Virtqueue {
            max_size,
            size: max_size,
            ready: false,
            desc: 0,
            avail: 0,
            used: 0,
            msix_vector: VIRTIO_MSI_NO_VECTOR,
            last_avail: 0,
            used_idx: 0,
            published: 0,
            broken: false,
        }
    }

    /// Back to the reset state (a device reset, 2.4).
    pub fn reset(&mut self) {
        *self = Virtqueue::new(self.max_size);
    }

    /// Whether the queue is enabled and not broken.
    pub fn usable(&self) -> bool {
        self.ready && !self.broken
    }

    /// Whether a ring error stopped the queue.
    pub fn broken(&self) -> bool {
        self.broken
    }

    /// Stops the queue until the next reset.
    pub fn set_broken(&mut self) {
        self.broken = true;
    }

    /// The legacy interface's rings (4.1.4.8, 2.7.2 "Legacy Interfaces"):
    /// the descriptor table at `pfn * 4096`, the available ring right after
    /// it, the used ring at the next 4096-byte boundary.
    pub fn set_legacy_pfn(&mut self, pfn: u32) {
        let size = u64::from(self.size);
        self.desc = u64::from(pfn) << 12;
        self.avail = self.desc + DESC_LEN * size;
        self.used = (self.avail + 6 + 2 * size + 4095) & !4095;
    }

    /// Checks the size and the rings' alignment and place (2.7 tables) when
    /// the driver enables the queue.
    pub fn check(&self, mem: &GuestMemory) -> Result<(), QueueError> {
        let size = self.size;
        if size == 0 || size > self.max_size || !size.is_power_of_two() {
            return Err(QueueError::BadSize {
                size,
                max: self.max_size,
            });
        }
        let n = u64::from(size);
        region("descriptor table", mem, self.desc, DESC_LEN * n, 16)?;
        region("available ring", mem, self.avail, 6 + 2 * n, 2)?;
        region("used ring", mem, self.used, 6 + 8 * n, 4)
    }

    fn avail_idx(&self, mem: &GuestMemory) -> Result<u16, QueueError> {
        Ok(mem.read_obj::<u16>(self.avail + 2)?)
    }

    /// Whether the driver has made buffers available that were not taken.
    pub fn has_available(&self, mem: &GuestMemory) -> bool {
        self.usable() && self.avail_idx(mem).is_ok_and(|i| i != self.last_avail)
    }

    /// Takes the next available chain into `chain`: `Ok(false)` if there is
    /// none, an error if the rings break the rules (the queue is then broken).
    pub fn pop(
        &mut self,
        mem: &GuestMemory,
        indirect: bool,
        chain: &mut Chain,
    ) -> Result<bool, QueueError> {
        if !self.usable() {
            return Ok(false);
        }
        let r = self.pop_inner(mem, indirect, chain);
        if r.is_err() {
            self.broken = true;
        }
        r
    }

    fn pop_inner(
        &mut self,
        mem: &GuestMemory,
        indirect: bool,
        chain: &mut Chain,
    ) -> Result<bool, QueueError> {
        let idx = self.avail_idx(mem)?;
        let waiting = idx.wrapping_sub(self.last_avail);
        if waiting == 0 {
            return Ok(false);
        }
        if waiting > self.size {
            return Err(QueueError::AvailIdxJump {
                last: self.last_avail,
                idx,
            });
        }
        let slot = u64::from(self.last_avail % self.size);
        let head: u16 = mem.read_obj(self.avail + 4 + 2 * slot)?;
        self.walk(mem, head, indirect, chain)?;
        self.last_avail = self.last_avail.wrapping_add(1);
        Ok(true)
    }

    /// Gives back the last `n` chains taken (never more than were taken
    /// since the last publish of `avail_event`): the next pops take them again.
    pub fn unpop(&mut self, n: u16) {
        self.last_avail = self.last_avail.wrapping_sub(n);
    }

    /// Follows the chain from `head` (2.7.5, 2.7.5.3).
    fn walk(
        &self,
        mem: &GuestMemory,
        head: u16,
        indirect_ok: bool,
        chain: &mut Chain,
    ) -> Result<(), QueueError> {
        chain.clear(head);
        let mut table = self.desc;
        let mut table_len = u32::from(self.size);
        let mut in_indirect = false;
        let mut index = head;
        let mut visited = 0u32;
        loop {
            if u32::from(index) >= table_len {
                return Err(QueueError::DescIndex { index, table_len });
            }
            visited += 1;
            if visited > table_len {
                return Err(QueueError::Loop { head });
            }
            let at = table + DESC_LEN * u64::from(index);
            let addr: u64 = mem.read_obj(at)?;
            let len: u32 = mem.read_obj(at + 8)?;
            let flags: u16 = mem.read_obj(at + 12)?;
            let next: u16 = mem.read_obj(at + 14)?;
            if flags & VIRTQ_DESC_F_INDIRECT != 0 {
                if !indirect_ok {
                    return Err(QueueError::IndirectNotNegotiated { head });
                }
                if in_indirect || flags & VIRTQ_DESC_F_NEXT != 0 {
                    return Err(QueueError::NestedIndirect { head });
                }
                let entries = len / DESC_LEN as u32;
                if len == 0
                    || !len.is_multiple_of(DESC_LEN as u32)
                    || entries > u32::from(MAX_QUEUE_SIZE)
                {
                    return Err(QueueError::BadIndirectLen { head, len });
                }
                region("indirect table", mem, addr, u64::from(len), 1)?;
                table = addr;
                table_len = entries;
                in_indirect = true;
                index = 0;
                visited = 0;
                continue;
            }
            chain.push(Desc {
                addr,
                len,
                writable: flags & VIRTQ_DESC_F_WRITE != 0,
            })?;
            if flags & VIRTQ_DESC_F_NEXT == 0 {
                return Ok(());
            }
            index = next;
        }
    }

    /// Puts `(head, len)` in the next used element; the used index moves
    /// when [`Virtqueue::publish`] runs (completions in batches).
    pub fn add_used(&mut self, mem: &GuestMemory, head: u16, len: u32) -> Result<(), QueueError> {
        if self.size == 0 {
            return Ok(());
        }
        let at = self.used + 4 + 8 * u64::from(self.used_idx % self.size);
        mem.write_obj(at, u32::from(head))?;
        mem.write_obj(at + 4, len)?;
        self.used_idx = self.used_idx.wrapping_add(1);
        Ok(())
    }

    /// Writes the used index for the elements added since the last call and
    /// says whether the driver wants an interrupt for them: with EVENT_IDX
    /// when the index passed `used_event` (2.7.10), otherwise unless the
    /// driver set VIRTQ_AVAIL_F_NO_INTERRUPT (2.7.7). With EVENT_IDX it also
    /// asks for a notification as soon as the driver adds a buffer past the
    /// ones taken (`avail_event`, 2.7.10).
    pub fn publish(&mut self, mem: &GuestMemory, event_idx: bool) -> Result<bool, QueueError> {
        if !self.usable() {
            return Ok(false);
        }
        let n = u64::from(self.size);
        if event_idx {
            mem.write_obj(self.used + 4 + 8 * n, self.last_avail)?;
        }
        if self.used_idx == self.published {
            return Ok(false);
        }
        mem.write_obj(self.used + 2, self.used_idx)?;
        let old = self.published;
        self.published = self.used_idx;
        if event_idx {
            let used_event: u16 = mem.read_obj(self.avail + 4 + 2 * n)?;
            Ok(need_event(used_event, self.used_idx, old))
        } else {
            let flags: u16 = mem.read_obj(self.avail)?;
            Ok(flags & VIRTQ_AVAIL_F_NO_INTERRUPT == 0)
        }
    }
}

#[cfg(test)]
mod tests;
