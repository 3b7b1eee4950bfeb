extern crate std;
use super::*;
use std::thread;
use std::vec;
use std::vec::Vec;

#[test]
fn reads_and_writes_inside_ram() {
    let ram = GuestMemory::new(0x2000);
    ram.write(0x1ffc, &[1, 2, 3, 4]).unwrap();
    assert_eq!(ram.read_obj::<u32>(0x1ffc).unwrap(), 0x0403_0201);
    assert_eq!(ram.size(), 0x2000);
    ram.write_obj(0x11, 0x1122_3344_5566_7788u64).unwrap();
    assert_eq!(ram.read_obj::<u64>(0x11).unwrap(), 0x1122_3344_5566_7788);
    assert_eq!(ram.read_obj::<u16>(0x12).unwrap(), 0x6677);
    assert_eq!(ram.read_obj::<u8>(0x18).unwrap(), 0x11);
    assert_eq!(ram.read_obj::<u8>(0x10).unwrap(), 0, "neighbour untouched");
    assert_eq!(ram.read_obj::<u8>(0x19).unwrap(), 0, "neighbour untouched");
}

/// Bulk copies at every alignment and length across word boundaries read
/// back what was written and leave the bytes around them alone.
#[test]
fn unaligned_bulk_copies_and_fills_touch_exactly_their_bytes() {
    let ram = GuestMemory::new(0x100);
    let data: Vec<u8> = (1..=40).collect();
    for start in 0..9u64 {
        for len in 0..data.len() {
            ram.fill(0, 0x100, 0xEE).unwrap();
            ram.write(0x40 + start, &data[..len]).unwrap();
            let mut all = vec![0u8; 0x100];
            ram.read(0, &mut all).unwrap();
            let at = 0x40 + start as usize;
            assert_eq!(&all[at..at + len], &data[..len]);
            assert!(all[..at].iter().all(|&b| b == 0xEE));
            assert!(all[at + len..].iter().all(|&b| b == 0xEE));
            let mut back = vec![0u8; len];
            ram.read(0x40 + start, &mut back).unwrap();
            assert_eq!(back, &data[..len]);
            ram.fill(0x40 + start, len, 0x11).unwrap();
            ram.read(0, &mut all).unwrap();
            assert!(all[at..at + len].iter().all(|&b| b == 0x11));
            assert!(all[..at].iter().all(|&b| b == 0xEE));
            assert!(all[at + len..].iter().all(|&b| b == 0xEE));
        }
    }
}

#[test]
fn refuses_accesses_that_leave_ram() {
    let ram = GuestMemory::new(0x1000);
    let err = ram.write(0xffe, &[0; 4]).unwrap_err();
    assert_eq!(
        err,
        GuestMemoryError::OutOfRange {
            gpa: 0xffe,
            len: 4,
            ram_size: 0x1000
        }
    );
    assert!(ram.read(u64::MAX, &mut [0; 1]).is_err());
    assert!(ram.read(u64::MAX - 1, &mut [0; 4]).is_err());
    assert!(ram.read_obj::<u64>(0xff9).is_err());
    assert!(ram.write_obj(0xfff, 0u16).is_err());
    assert!(ram.fill(0x800, 0x801, 0).is_err());
    assert!(ram.fill(u64::MAX, 2, 0).is_err());
    assert!(
        ram.read(0x1000, &mut []).is_ok(),
        "an empty access at the end is in range"
    );
    assert!(ram.read(0x1001, &mut []).is_err());
    // RAM whose size is not a whole number of words ends at its size.
    let odd = GuestMemory::new(0x1003);
    assert!(odd.write(0x1000, &[1, 2, 3]).is_ok());
    assert!(odd.write(0x1001, &[1, 2, 3]).is_err());
}

/// The firmware's alias below 4 GiB reads as the RAM behind it, and is
/// read-only; an access that leaves it is refused like one that leaves RAM.
#[test]
fn rom_alias_reads_the_ram_behind_it() {
    let mut ram = GuestMemory::new(0x4000);
    ram.write(0x3ff0, b"reset vector 16b").unwrap();
    let rom = RomAlias {
        gpa: 0xffff_e000,
        ram: 0x2000,
        len: 0x2000,
    };
    ram.map_rom_alias(rom).unwrap();
    let mut b = [0u8; 16];
    ram.read(0xffff_fff0, &mut b).unwrap();
    assert_eq!(&b, b"reset vector 16b");
    assert!(ram.write(0xffff_fff0, &[0; 4]).is_err(), "read-only");
    assert_eq!(
        ram.clone().read_obj::<u32>(0xffff_fff0).unwrap(),
        u32::from_le_bytes(*b"rese"),
        "clones made after the mapping see the alias"
    );
    assert!(ram.read(0xffff_dfff, &mut [0; 2]).is_err(), "starts below");
    assert!(
        ram.read(0xffff_ffff, &mut [0; 2]).is_err(),
        "runs past 4 GiB"
    );
    assert!(ram.read(u64::MAX, &mut [0; 1]).is_err());
    // Aliases of RAM that is not there, over RAM, or over each other.
    let bad = [
        RomAlias {
            gpa: 0x10_0000,
            ram: 0x3000,
            len: 0x2000,
        },
        RomAlias {
            gpa: 0x3000,
            ram: 0,
            len: 0x1000,
        },
        RomAlias {
            gpa: 0xffff_f000,
            ram: 0,
            len: 0x1000,
        },
        RomAlias {
            gpa: u64::MAX,
            ram: 0,
            len: 0x1000,
        },
        RomAlias {
            gpa: 0x10_0000,
            ram: 0,
            len: 0,
        },
    ];
    for a in bad {
        assert_eq!(ram.map_rom_alias(a), Err(GuestMemoryError::BadAlias(a)));
    }
}

fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}

/// Two threads share one RAM through clones of a handle and write the
/// bytes of the same words at once: one the even bytes, the other the odd
/// ones, each byte on its own. Every write is a merge into a shared word,
/// so none may lose the other thread's bytes; reads race with the writes
/// and always see whole, in-range data. (The handle is `Send + Sync` only
/// because every access is atomic: a data race cannot be written with it.)
#[test]
fn two_threads_share_ram_without_losing_each_others_bytes() {
    assert_send_sync::<GuestMemory>();
    const LEN: usize = 64;
    const ROUNDS: u32 = 20_000;
    let ram = GuestMemory::new(LEN);
    let workers: Vec<_> = (0..2usize)
        .map(|parity| {
            let mine = ram.clone();
            thread::spawn(move || {
                for round in 1..=ROUNDS {
                    let value = round as u8 ^ parity as u8;
                    for i in (parity..LEN).step_by(2) {
                        mine.write(i as u64, &[value]).unwrap();
                    }
                    // Only this thread writes these bytes: the other's
                    // writes must not have put an old value back.
                    let mut snapshot = [0u8; LEN];
                    mine.read(0, &mut snapshot).unwrap();
                    for i in (parity..LEN).step_by(2) {
                        assert_eq!(snapshot[i], value, "byte {i} in round {round}");
                    }
                    assert!(mine.read(LEN as u64 - 1, &mut [0; 2]).is_err());
                    assert!(mine.write(LEN as u64, &[value]).is_err());
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let mut all = [0u8; LEN];
    ram.read(0, &mut all).unwrap();
    for (i, &b) in all.iter().enumerate() {
        assert_eq!(b, ROUNDS as u8 ^ (i % 2) as u8, "byte {i}");
    }
}

/// Partial-word merges still land when the word keeps changing under them:
/// a thread hammering the low half of each word never undoes the high half.
#[test]
fn merges_survive_a_word_that_keeps_changing() {
    let ram = GuestMemory::new(64);
    let hammer = ram.clone();
    let stop = Arc::new(core::sync::atomic::AtomicBool::new(false));
    let stop2 = stop.clone();
    let t = thread::spawn(move || {
        let mut v = 0u32;
        while !stop2.load(Relaxed) {
            for w in 0..8u64 {
                hammer.write_obj(w * 8, v).unwrap();
            }
            v = v.wrapping_add(1);
        }
    });
    for round in 0..2000u32 {
        for w in 0..8u64 {
            ram.write_obj(w * 8 + 4, round).unwrap();
        }
    }
    stop.store(true, Relaxed);
    t.join().unwrap();
    for w in 0..8u64 {
        assert_eq!(ram.read_obj::<u32>(w * 8 + 4).unwrap(), 1999);
    }
}

/// Keel's constructor refuses host memory it cannot treat as words; the
/// memory here is a live, exclusively owned buffer, as the contract asks.
#[test]
#[allow(unsafe_code)]
fn raw_regions_must_be_whole_aligned_words() {
    let backing: &'static mut [u64] = Vec::leak(vec![0u64; 4]);
    let base = backing.as_mut_ptr().cast::<u8>();
    // SAFETY: `backing` is leaked (lives forever) and used only through the handle.
    let ram = unsafe { GuestMemory::from_raw_region(base, 32) }.unwrap();
    ram.write(30, &[7, 8]).unwrap();
    assert!(ram.write(31, &[7, 8]).is_err());
    assert_eq!(ram.read_obj::<u16>(30).unwrap(), 0x0807);
    // SAFETY: refused before any reference is made.
    let odd = unsafe { GuestMemory::from_raw_region(base.wrapping_add(1), 8) };
    assert!(matches!(odd, Err(GuestMemoryError::BadRegion { .. })));
    // SAFETY: as above.
    let short = unsafe { GuestMemory::from_raw_region(base, 12) };
    assert!(matches!(short, Err(GuestMemoryError::BadRegion { .. })));
}

/// RAM zeroed on first touch never shows the old host memory: not to a
/// read, not around a write, not through an alias, not after a fill of
/// part of a chunk; and a chunk once zeroed is not zeroed again.
#[test]
fn unzeroed_ram_reads_as_zero_wherever_it_is_first_touched() {
    const C: usize = ZEROING_CHUNK as usize;
    // Three chunks and a short fourth.
    let size = 3 * C + 0x3000;
    let junk = 0xA5;
    let mut ram = GuestMemory::new_unzeroed(size, junk);
    ram.map_rom_alias(RomAlias {
        gpa: 0x1_0000_0000,
        ram: (3 * C) as u64,
        len: 0x1000,
    })
    .unwrap();
    assert!((0..4).all(|c| !ram.is_zeroed((c * C) as u64)));
    // A write that straddles chunks 0 and 1 zeroes both first.
    ram.write((C - 2) as u64, &[1, 2, 3, 4]).unwrap();
    assert!(ram.is_zeroed(0) && ram.is_zeroed(C as u64) && !ram.is_zeroed(2 * C as u64));
    let mut all = vec![0u8; 2 * C];
    ram.read(0, &mut all).unwrap();
    assert_eq!(&all[C - 2..C + 2], &[1, 2, 3, 4]);
    assert_eq!(
        all.iter().filter(|&&b| b != 0).count(),
        4,
        "no junk around the write"
    );
    // The read-only alias shows the short last chunk, zeroed by that read.
    assert_eq!(ram.read_obj::<u64>(0x1_0000_0000).unwrap(), 0);
    assert!(ram.is_zeroed((3 * C) as u64));
    // A fill of a few bytes zeroes the rest of its chunk.
    ram.fill((2 * C + 8) as u64, 3, 0x77).unwrap();
    let mut chunk = vec![0u8; C];
    ram.read((2 * C) as u64, &mut chunk).unwrap();
    assert_eq!(&chunk[8..11], &[0x77; 3]);
    assert_eq!(chunk.iter().filter(|&&b| b != 0).count(), 3);
    // Zeroed once only: what was written stays through further touches.
    ram.touch(0, size).unwrap();
    assert_eq!(ram.read_obj::<u32>((C - 2) as u64).unwrap(), 0x0403_0201);
    // Out of range stays an error, and zeroes nothing.
    let fresh = GuestMemory::new_unzeroed(C, junk);
    assert!(fresh.touch(C as u64 - 4, 8).is_err());
    assert!(!fresh.is_zeroed(0));
    // Plain RAM counts as zeroed throughout.
    assert!(GuestMemory::new(0x1000).is_zeroed(0));
}

/// Threads that touch one chunk at once: one zeroes it, and none of the
/// words the others write is lost to that zeroing.
#[test]
fn a_chunk_touched_by_several_threads_is_zeroed_once() {
    const THREADS: u64 = 8;
    for round in 0..20u64 {
        let ram = GuestMemory::new_unzeroed(ZEROING_CHUNK as usize, 0xFF);
        let handles: Vec<_> = (0..THREADS)
            .map(|t| {
                let ram = ram.clone();
                thread::spawn(move || {
                    let at = (t * 0x4_0000 + round * 8) % ZEROING_CHUNK;
                    ram.write_obj(at, 0x1000 + t).unwrap();
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        for t in 0..THREADS {
            let at = (t * 0x4_0000 + round * 8) % ZEROING_CHUNK;
            assert_eq!(
                ram.read_obj::<u64>(at).unwrap(),
                0x1000 + t,
                "round {round}"
            );
        }
        let mut all = vec![0u8; ZEROING_CHUNK as usize];
        ram.read(0, &mut all).unwrap();
        assert_eq!(all.iter().filter(|&&b| b == 0xFF).count(), 0);
    }
}
