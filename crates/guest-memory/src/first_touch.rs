//! Guest RAM zeroed a chunk at a time, when something first touches it,
//! instead of all of it when the VM is created.
//!
//! Why: the host memory Keel gives a guest holds whatever was there before
//! (on a real machine, anything since power-on), so the guest must never
//! see it unzeroed; but zeroing all of a VM's RAM up front writes every
//! byte before the guest runs, and a guest touches a fraction of it at
//! boot (Debian's kernel, up to its /init with 256 MiB: 51 of the 128
//! chunks of 2 MiB). Under an emulator each of those writes is emulated; on
//! hardware a large VM waits seconds for its first instruction.
//!
//! The rule that keeps old host memory from the guest: a chunk is zeroed
//! before any [`GuestMemory`](crate::GuestMemory) access reaches it, and the
//! VMM maps a chunk into the guest's nested page tables only after
//! [`GuestMemory::touch`](crate::GuestMemory::touch) said it is zeroed.
//! Several threads may touch one chunk at once: one zeroes it, the others
//! wait for that (a bounded wait: 2 MiB of stores, whatever the guest does).

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU64, AtomicU8, Ordering};

/// The unit of zeroing: a large page of the nested page tables, so that
/// one mapping covers one chunk.
pub const ZEROING_CHUNK: u64 = 0x20_0000;

const NOT_ZEROED: u8 = 0;
const ZEROING: u8 = 1;
const ZEROED: u8 = 2;

/// The state of each chunk of one guest's RAM; the handles of that guest share it.
pub(crate) struct Chunks {
    state: Box<[AtomicU8]>,
}

impl Chunks {
    /// Every chunk of `size` bytes of RAM not zeroed yet (the last one may be short).
    pub(crate) fn new(size: u64) -> Self {
        Chunks {
            state: (0..size.div_ceil(ZEROING_CHUNK))
                .map(|_| AtomicU8::new(NOT_ZEROED))
                .collect(),
        }
    }

    /// Whether chunk `i` is zeroed (or was never part of RAM).
    pub(crate) fn is_zeroed(&self, i: usize) -> bool {
        self.state
            .get(i)
            .is_none_or(|s| s.load(Ordering::Acquire) == ZEROED)
    }

    /// Zeroes every chunk that `words[first..end)` (word indexes) lies in,
    /// unless done already; returns once all of them are zeroed. The
    /// Acquire/Release pair makes the zeroes visible to a thread that sees
    /// the chunk as zeroed before it reads or writes it.
    pub(crate) fn zero(&self, words: &[AtomicU64], first: usize, end: usize) {
        if end <= first {
            return;
        }
        let per_chunk = (ZEROING_CHUNK / 8) as usize;
        for i in first / per_chunk..=(end - 1) / per_chunk {
            let Some(state) = self.state.get(i) else {
                return;
            };
            loop {
                match state.compare_exchange(
                    NOT_ZEROED,
                    ZEROING,
                    Ordering::Acquire,
                    Ordering::Acquire,
                ) {
                    Ok(_) => {
                        let chunk = i * per_chunk..((i + 1) * per_chunk).min(words.len());
                        for word in &words[chunk] {
                            word.store(0, Ordering::Relaxed);
                        }
                        state.store(ZEROED, Ordering::Release);
                        break;
                    }
                    Err(ZEROED) => break,
                    // Another thread zeroes it now: 2 MiB of stores at most.
                    Err(_) => core::hint::spin_loop(),
                }
            }
        }
    }
}
