//! The one accessor for guest-physical memory.
//!
//! Everything in Keel that reads or writes a guest's RAM on the guest's behalf
//! (instruction emulation, string I/O, device DMA, firmware tables, image
//! loading) goes through a [`GuestMemory`] handle. It shows the
//! guest-physical memory the nested page tables give the guest: RAM, and
//! read-only aliases of parts of it (the firmware image at the top of 4 GiB,
//! [`RomAlias`]). Every access is bounds-checked: an address outside them is
//! an error value, never a panic and never a touch of memory that belongs to
//! Keel or another guest.
//!
//! # Sharing
//!
//! A handle is cheap to clone, `Send` and `Sync`, and every accessor takes
//! `&self`: each device that does DMA keeps its own clone from the moment it
//! is created, and several vCPUs (host threads) may use theirs at once. The
//! guest's own vCPUs write the same memory at any time through the nested
//! page tables, so Keel never holds a plain `&[u8]`/`&mut [u8]` to it, which
//! would promise Rust that nobody else changes it. RAM is a slice of
//! [`AtomicU64`] words instead, and every access is an atomic operation of
//! that one size (a part of a word is merged with a compare-exchange), so
//! there are no data races and no mixed-size atomic accesses by construction
//! (the rules of `core::sync::atomic`, "Memory model for atomic accesses").
//! Bulk copies move whole words wherever the range covers one.
//!
//! # Memory ordering
//!
//! Every access is `Relaxed`. Ordering between a device's memory writes and
//! the guest seeing them comes from elsewhere, as on hardware:
//! - a guest learns that DMA finished through a device register or an
//!   interrupt; both reach it through a VM exit and entry (VMRUN/VMRESUME
//!   are serializing, SDM Vol 3A 9.3 / APM Vol 2 15.5) or through the
//!   interrupt controller's lock, which orders everything written before it;
//! - between host threads, the lock around each device gives
//!   acquire/release at every register access, so a vCPU that starts DMA
//!   through a register sees the data the device saw;
//! - on x86 itself (Keel's only target) relaxed loads and stores are plain
//!   MOVs, ordered as SDM Vol 3A 9.2.2 describes (stores are not reordered
//!   with other stores, loads not with other loads), so the guest sees a
//!   device's writes in program order without a fence.
//!
//! A guest that reads a buffer while a transfer into it is in flight sees
//! some mix of old and new words, as with a real bus-master device.
//!
//! # Zeroing
//!
//! A VM's RAM reads as zero when the VM starts, but Keel does not zero it
//! then: each chunk of [`ZEROING_CHUNK`] bytes is zeroed when first touched,
//! through a handle or by the guest (the VMM maps a chunk into the nested
//! page tables only after [`GuestMemory::touch`]); see `first_touch.rs`.
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;

use alloc::sync::Arc;
use core::fmt;
use core::sync::atomic::{AtomicU64, Ordering::Relaxed};

mod first_touch;
mod map_change;
pub use first_touch::ZEROING_CHUNK;
pub use map_change::{Backing, HostRegionId, MemoryMapChange, Writes};

/// A guest-physical address.
pub type Gpa = u64;

/// Guest memory as a vCPU's code addresses it: linear addresses, translated
/// through the vCPU's own paging (the pointers in a Xen hypercall's
/// arguments are such addresses). The VMM implements it over
/// [`GuestMemory`]; each access is one copy, false when a page is not
/// mapped or not RAM (the hypercall then returns -EFAULT).
pub trait LinearMemory {
    fn read_linear(&mut self, la: u64, buf: &mut [u8]) -> bool;
    fn write_linear(&mut self, la: u64, data: &[u8]) -> bool;
}

/// Bytes in one word of guest memory, the size of every atomic access.
const WORD: usize = 8;

/// Why a guest-memory access (or a handle) was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GuestMemoryError {
    /// `[gpa, gpa + len)` is not entirely inside guest RAM (or, for a read,
    /// inside one read-only alias).
    OutOfRange { gpa: Gpa, len: usize, ram_size: u64 },
    /// A read-only alias that is not inside RAM, or that overlaps RAM or another alias.
    BadAlias(RomAlias),
    /// Host memory for guest RAM that is not 8-byte aligned or not a whole
    /// number of 8-byte words.
    BadRegion { base: u64, len: usize },
}

impl fmt::Display for GuestMemoryError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            GuestMemoryError::OutOfRange { gpa, len, ram_size } => write!(
                f,
                "guest-physical range {gpa:#x}+{len:#x} is outside the guest's {} KiB of RAM",
                ram_size / 1024
            ),
            GuestMemoryError::BadAlias(a) => write!(
                f,
                "read-only alias at {:#x} of RAM {:#x}+{:#x} must lie outside RAM and show RAM",
                a.gpa, a.ram, a.len
            ),
            GuestMemoryError::BadRegion { base, len } => write!(
                f,
                "host memory {base:#x}+{len:#x} for guest RAM must be 8-byte aligned and a multiple of 8 bytes long"
            ),
        }
    }
}

/// A read-only view of `[ram, ram + len)` of guest RAM at guest-physical
/// `[gpa, gpa + len)`, as a PC shows its firmware ROM below 4 GiB as well as
/// below 1 MiB. The nested page tables map the same host pages there, read and
/// execute only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RomAlias {
    pub gpa: Gpa,
    pub ram: Gpa,
    pub len: u64,
}

impl RomAlias {
    /// The RAM address behind `[gpa, gpa + len)`, if it lies inside this alias.
    fn ram_behind(&self, gpa: Gpa, len: usize) -> Option<Gpa> {
        let offset = gpa.checked_sub(self.gpa)?;
        let end = offset.checked_add(len as u64)?;
        (end <= self.len).then_some(self.ram + offset)
    }
}

/// How many read-only aliases a guest's memory can have.
const MAX_ALIASES: usize = 2;

/// Compare-exchange attempts to merge part of a word before falling back to
/// two read-modify-writes (see [`merge`]).
const MERGE_TRIES: usize = 16;

/// The words behind guest RAM.
#[derive(Clone)]
enum Words {
    /// Host memory given to the guest for good (Keel's physical RAM).
    Static(&'static [AtomicU64]),
    /// An allocation the handles own together (host tests, the fuzz harness).
    Owned(Arc<[AtomicU64]>),
}

/// A handle to a guest's physical memory: RAM `[0, size)` and its read-only
/// aliases. Clones share the same RAM; see the crate documentation for why
/// it is sound to use them from several threads at once.
#[derive(Clone)]
pub struct GuestMemory {
    words: Words,
    size: u64,
    aliases: [Option<RomAlias>; MAX_ALIASES],
    /// For RAM zeroed when first touched ([`GuestMemory::from_raw_region_unzeroed`]):
    /// which chunks are zeroed.
    first_touch: Option<Arc<first_touch::Chunks>>,
}

/// An integer read or written as little-endian bytes by
/// [`GuestMemory::read_obj`] and [`GuestMemory::write_obj`].
pub trait LeInt: Copy + sealed::Sealed {
    #[doc(hidden)]
    type Bytes: AsRef<[u8]> + AsMut<[u8]> + Default;
    #[doc(hidden)]
    fn from_le(b: Self::Bytes) -> Self;
    #[doc(hidden)]
    fn to_le(self) -> Self::Bytes;
}

mod sealed {
    pub trait Sealed {}
}

macro_rules! le_int {
    ($($t:ty),*) => {$(
        impl sealed::Sealed for $t {}
        impl LeInt for $t {
            type Bytes = [u8; core::mem::size_of::<$t>()];
            fn from_le(b: Self::Bytes) -> Self {
                <$t>::from_le_bytes(b)
            }
            fn to_le(self) -> Self::Bytes {
                self.to_le_bytes()
            }
        }
    )*};
}
le_int!(u8, u16, u32, u64);

impl GuestMemory {
    /// `size` bytes of zeroed RAM in an allocation the handles share: for
    /// host tests and the fuzz harness.
    pub fn new(size: usize) -> Self {
        let words: Arc<[AtomicU64]> = (0..size.div_ceil(WORD))
            .map(|_| AtomicU64::new(0))
            .collect();
        GuestMemory {
            words: Words::Owned(words),
            size: size as u64,
            aliases: [None; MAX_ALIASES],
            first_touch: None,
        }
    }

    /// `size` bytes of RAM, in an allocation the handles share, that
    /// behaves as [`GuestMemory::from_raw_region_unzeroed`] does: it starts
    /// out filled with `junk` (standing for old host memory) and reads as
    /// zero. For host tests and the fuzz harness.
    pub fn new_unzeroed(size: usize, junk: u8) -> Self {
        let mut ram = Self::new(size);
        // Filled before the chunks' state exists, so the fill zeroes nothing.
        let _ = ram.fill(0, size, junk);
        ram.first_touch = Some(Arc::new(first_touch::Chunks::new(size as u64)));
        ram
    }

    /// The host memory `[base, base + len)` as the guest's RAM at
    /// guest-physical `[0, len)`. `base` must be 8-byte aligned and `len` a
    /// multiple of 8.
    ///
    /// # Safety
    ///
    /// `[base, base + len)` must be mapped, readable and writable memory
    /// that belongs to this guest alone from now on and for the rest of
    /// Keel's run: nothing else in Keel may hold a reference to it, read or
    /// write it except through handles made here, or free it.
    #[allow(unsafe_code)]
    pub unsafe fn from_raw_region(base: *mut u8, len: usize) -> Result<Self, GuestMemoryError> {
        let err = GuestMemoryError::BadRegion {
            base: base as u64,
            len,
        };
        if base.is_null() || !(base as usize).is_multiple_of(WORD) || !len.is_multiple_of(WORD) {
            return Err(err);
        }
        // SAFETY: the caller gives this guest `[base, base + len)` for the
        // rest of Keel's run and no other reference to it exists, so a
        // `'static` shared slice over it aliases nothing. `AtomicU64` has the
        // size and bit validity of `u64` and an alignment of 8, which `base`
        // has (checked above); any bit pattern is a valid `u64`. From here
        // on every access is atomic, so the guest's own concurrent writes
        // (and other vCPUs') are never data races in Rust's model.
        let words = unsafe { core::slice::from_raw_parts(base as *const AtomicU64, len / WORD) };
        Ok(GuestMemory {
            words: Words::Static(words),
            size: len as u64,
            aliases: [None; MAX_ALIASES],
            first_touch: None,
        })
    }

    /// [`GuestMemory::from_raw_region`] for host memory that may hold
    /// anything: the guest's RAM reads as zero all the same, because each
    /// chunk of [`ZEROING_CHUNK`] bytes is zeroed when an access through a
    /// handle first reaches it, or when [`GuestMemory::touch`] asks (see
    /// the `first_touch` module for why).
    ///
    /// # Safety
    ///
    /// As for [`GuestMemory::from_raw_region`]. Besides, the nested page
    /// tables must map a chunk only after [`GuestMemory::touch`] returned
    /// for it.
    #[allow(unsafe_code)]
    pub unsafe fn from_raw_region_unzeroed(
        base: *mut u8,
        len: usize,
    ) -> Result<Self, GuestMemoryError> {
        // SAFETY: the caller's promise is the one `from_raw_region` needs.
        let mut ram = unsafe { Self::from_raw_region(base, len) }?;
        ram.first_touch = Some(Arc::new(first_touch::Chunks::new(len as u64)));
        Ok(ram)
    }

    /// Zeroes the chunks of RAM `[gpa, gpa + len)` lies in, unless they are
    /// already: for the VMM, before its nested page tables map them.
    pub fn touch(&self, gpa: Gpa, len: usize) -> Result<(), GuestMemoryError> {
        let off = self.ram_offset(gpa, len)?;
        self.zero_first(off, len);
        Ok(())
    }

    /// Whether the chunk of RAM at `gpa` is zeroed: always, for RAM that
    /// was not made with [`GuestMemory::from_raw_region_unzeroed`].
    pub fn is_zeroed(&self, gpa: Gpa) -> bool {
        self.first_touch
            .as_ref()
            .is_none_or(|c| c.is_zeroed((gpa / ZEROING_CHUNK) as usize))
    }

    /// Zeroes the chunks bytes `[off, off + len)` of RAM lie in, if this
    /// RAM is zeroed on first touch and they are not yet.
    fn zero_first(&self, off: usize, len: usize) {
        if let Some(chunks) = &self.first_touch {
            chunks.zero(self.words(), off / WORD, (off + len).div_ceil(WORD));
        }
    }

    fn words(&self) -> &[AtomicU64] {
        match &self.words {
            Words::Static(w) => w,
            Words::Owned(w) => w,
        }
    }

    /// Size of guest RAM in bytes; RAM spans `[0, size)` of guest-physical space.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Shows `alias.ram..+len` of RAM, read-only, at `alias.gpa` too. The alias
    /// must lie outside RAM and every other alias, and show only RAM. The
    /// alias belongs to this handle and the clones made from it afterwards:
    /// map aliases before handing clones out.
    pub fn map_rom_alias(&mut self, alias: RomAlias) -> Result<(), GuestMemoryError> {
        let bad = GuestMemoryError::BadAlias(alias);
        let len = usize::try_from(alias.len).map_err(|_| bad)?;
        let end = alias.gpa.checked_add(alias.len).ok_or(bad)?;
        let overlaps = |start: Gpa, other_end: Gpa| alias.gpa < other_end && start < end;
        if len == 0
            || self.ram_offset(alias.ram, len).is_err()
            || overlaps(0, self.size())
            || self
                .aliases
                .iter()
                .flatten()
                .any(|a| overlaps(a.gpa, a.gpa + a.len))
        {
            return Err(bad);
        }
        let slot = self.aliases.iter_mut().find(|a| a.is_none()).ok_or(bad)?;
        *slot = Some(alias);
        Ok(())
    }

    /// The RAM offset of `[gpa, gpa + len)`, if it lies inside RAM.
    fn ram_offset(&self, gpa: Gpa, len: usize) -> Result<usize, GuestMemoryError> {
        let err = GuestMemoryError::OutOfRange {
            gpa,
            len,
            ram_size: self.size,
        };
        let end = gpa.checked_add(len as u64).ok_or(err)?;
        if end > self.size {
            return Err(err);
        }
        usize::try_from(gpa).map_err(|_| err)
    }

    /// Copies `buf.len()` bytes starting at `gpa` into `buf`, from RAM or from
    /// one read-only alias, as the guest reads them.
    pub fn read(&self, gpa: Gpa, buf: &mut [u8]) -> Result<(), GuestMemoryError> {
        let mut off = self.ram_offset(gpa, buf.len()).or_else(|e| {
            let ram = self
                .aliases
                .iter()
                .flatten()
                .find_map(|a| a.ram_behind(gpa, buf.len()))
                .ok_or(e)?;
            self.ram_offset(ram, buf.len())
        })?;
        self.zero_first(off, buf.len());
        let words = self.words();
        // A partial first word, then whole words (one load each), then a partial last one.
        let head = ((WORD - off % WORD) % WORD).min(buf.len());
        let (first, rest) = buf.split_at_mut(head);
        if !first.is_empty() {
            let b = off % WORD;
            first.copy_from_slice(&words[off / WORD].load(Relaxed).to_le_bytes()[b..b + head]);
            off += head;
        }
        let w = off / WORD + rest.len() / WORD;
        let mut chunks = rest.chunks_exact_mut(WORD);
        for (chunk, word) in (&mut chunks).zip(&words[off / WORD..w]) {
            chunk.copy_from_slice(&word.load(Relaxed).to_le_bytes());
        }
        let tail = chunks.into_remainder();
        if !tail.is_empty() {
            let n = tail.len();
            tail.copy_from_slice(&words[w].load(Relaxed).to_le_bytes()[..n]);
        }
        Ok(())
    }

    /// Copies `buf` into guest RAM starting at `gpa` (never into an alias:
    /// writes to ROM do not reach it).
    pub fn write(&self, gpa: Gpa, buf: &[u8]) -> Result<(), GuestMemoryError> {
        let mut off = self.ram_offset(gpa, buf.len())?;
        self.zero_first(off, buf.len());
        let words = self.words();
        // A partial first word (merged), whole words (one store each), a partial last one.
        let head = ((WORD - off % WORD) % WORD).min(buf.len());
        let (first, rest) = buf.split_at(head);
        if !first.is_empty() {
            let b = off % WORD;
            let mut bytes = [0u8; WORD];
            bytes[b..b + head].copy_from_slice(first);
            merge(
                &words[off / WORD],
                byte_mask(b, head),
                u64::from_le_bytes(bytes),
            );
            off += head;
        }
        let w = off / WORD + rest.len() / WORD;
        let mut chunks = rest.chunks_exact(WORD);
        for (chunk, word) in (&mut chunks).zip(&words[off / WORD..w]) {
            let mut bytes = [0u8; WORD];
            bytes.copy_from_slice(chunk);
            word.store(u64::from_le_bytes(bytes), Relaxed);
        }
        let tail = chunks.remainder();
        if !tail.is_empty() {
            let mut bytes = [0u8; WORD];
            bytes[..tail.len()].copy_from_slice(tail);
            merge(
                &words[w],
                byte_mask(0, tail.len()),
                u64::from_le_bytes(bytes),
            );
        }
        Ok(())
    }

    /// Sets `len` bytes of guest RAM from `gpa` to `byte`.
    pub fn fill(&self, gpa: Gpa, len: usize, byte: u8) -> Result<(), GuestMemoryError> {
        let off = self.ram_offset(gpa, len)?;
        self.zero_first(off, len);
        let end = off + len;
        let words = self.words();
        let pattern = u64::from_le_bytes([byte; WORD]);
        // Partial words at either end are merged; the whole words between
        // are one store each (a VM's video memory is zeroed this way when it starts).
        let mut off = off;
        if off % WORD != 0 {
            let n = (WORD - off % WORD).min(end - off);
            let mask = byte_mask(off % WORD, n);
            merge(&words[off / WORD], mask, pattern & mask);
            off += n;
        }
        let body_end = off + (end - off) / WORD * WORD;
        for word in &words[off / WORD..body_end / WORD] {
            word.store(pattern, Relaxed);
        }
        if body_end < end {
            let mask = byte_mask(0, end - body_end);
            merge(&words[body_end / WORD], mask, pattern & mask);
        }
        Ok(())
    }

    /// Reads a little-endian `u8`, `u16`, `u32` or `u64` at `gpa`.
    pub fn read_obj<T: LeInt>(&self, gpa: Gpa) -> Result<T, GuestMemoryError> {
        let mut b = T::Bytes::default();
        self.read(gpa, b.as_mut())?;
        Ok(T::from_le(b))
    }

    /// Writes `value` little-endian at `gpa`.
    pub fn write_obj<T: LeInt>(&self, gpa: Gpa, value: T) -> Result<(), GuestMemoryError> {
        self.write(gpa, value.to_le().as_ref())
    }
}

/// The bits of bytes `[b, b + n)` of a little-endian word.
fn byte_mask(b: usize, n: usize) -> u64 {
    let ones = if n >= WORD {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    };
    ones << (8 * b)
}

/// Replaces the bits `mask` of `word` with those of `value` (which has no
/// bits outside `mask`) and leaves the others as they are, even while
/// another vCPU writes them. A compare-exchange does it in one step; if the
/// word keeps changing under it, two read-modify-writes do it in two (first
/// clearing the bits that must end up 0, then setting those that must be 1),
/// so the loop is bounded whatever the guest does.
fn merge(word: &AtomicU64, mask: u64, value: u64) {
    let mut current = word.load(Relaxed);
    for _ in 0..MERGE_TRIES {
        match word.compare_exchange_weak(current, (current & !mask) | value, Relaxed, Relaxed) {
            Ok(_) => return,
            Err(now) => current = now,
        }
    }
    word.fetch_and(!mask | value, Relaxed);
    word.fetch_or(value, Relaxed);
}

#[cfg(test)]
mod tests;
