//! Property fuzzing: random instruction bytes on random vCPU and memory state.
//!
//! Properties: `emulate` never panics; every call it makes into the bus keeps the
//! contract of [`crate::memory`] (1..=16 bytes, one page, device calls only after RAM
//! said `NotRam`, which `FakeMemory` asserts); the bus never completes an access outside
//! the RAM and device window it hands out; RIP moves only when the instruction retired;
//! a refused instruction (`Unsupported`, #UD) changes no register and touches no device.
//!
//! The short run is part of `cargo test`; the long one is
//! `X86_EMUL_FUZZ_ITERS=10000000 cargo test -p x86-emul --release -- --ignored fuzz_long`.

use std::vec::Vec;

use crate::cpu::bits::*;
use crate::cpu::rflags;
use crate::cpu::{ControlRegs, Segment};
use crate::testutil::*;
use crate::{emulate, Error, Exception, Fetch, Limits, Outcome};

const RAM: usize = 64 * 1024;

/// Opcodes the emulator implements, to make random instructions hit them often.
const OPCODES: &[&[u8]] = &[
    &[0x88],
    &[0x89],
    &[0x8A],
    &[0x8B],
    &[0x8C],
    &[0x8E],
    &[0xC6],
    &[0xC7],
    &[0xA0],
    &[0xA1],
    &[0xA2],
    &[0xA3],
    &[0x0F, 0xB6],
    &[0x0F, 0xB7],
    &[0x0F, 0xBE],
    &[0x0F, 0xBF],
    &[0x63],
    &[0x0F, 0xC3],
    &[0x0F, 0x38, 0xF0],
    &[0x0F, 0x38, 0xF1],
    &[0x00],
    &[0x01],
    &[0x02],
    &[0x03],
    &[0x08],
    &[0x09],
    &[0x10],
    &[0x11],
    &[0x18],
    &[0x19],
    &[0x20],
    &[0x21],
    &[0x28],
    &[0x29],
    &[0x30],
    &[0x31],
    &[0x38],
    &[0x39],
    &[0x3A],
    &[0x3B],
    &[0x84],
    &[0x85],
    &[0x80],
    &[0x81],
    &[0x83],
    &[0xF6],
    &[0xF7],
    &[0xFE],
    &[0xFF],
    &[0x86],
    &[0x87],
    &[0x0F, 0xB0],
    &[0x0F, 0xB1],
    &[0x0F, 0xC0],
    &[0x0F, 0xC1],
    &[0x0F, 0xC7],
    &[0x0F, 0xA3],
    &[0x0F, 0xAB],
    &[0x0F, 0xB3],
    &[0x0F, 0xBB],
    &[0x0F, 0xBA],
    &[0x8F],
    &[0xA4],
    &[0xA5],
    &[0xA6],
    &[0xA7],
    &[0xAA],
    &[0xAB],
    &[0xAC],
    &[0xAD],
    &[0xAE],
    &[0xAF],
    &[0x6C],
    &[0x6D],
    &[0x6E],
    &[0x6F],
    &[0x50],
    &[0x58],
    &[0x6A],
    &[0x68],
    &[0x0F, 0xA0],
    &[0x0F, 0xA1],
];
const PREFIXES: &[u8] = &[
    0x66, 0x67, 0xF0, 0xF2, 0xF3, 0x26, 0x2E, 0x36, 0x3E, 0x64, 0x65,
];

fn random_segment(rng: &mut Rng) -> Segment {
    match rng.below(3) {
        0 => flat(ATTR_DATA),
        1 => Segment {
            selector: rng.next() as u16,
            base: rng.below(RAM as u64),
            limit: rng.below(0x2_0000) as u32,
            attr: 0x93 | (rng.next() as u16 & 0xF6F),
        },
        _ => Segment {
            selector: rng.next() as u16,
            base: rng.next(),
            limit: rng.next() as u32,
            attr: rng.next() as u16,
        },
    }
}

/// A value likely to be an interesting address or count.
fn random_gpr(rng: &mut Rng) -> u64 {
    match rng.below(5) {
        0 => rng.next(),
        1 => MMIO_BASE + rng.below(MMIO_SIZE + 16) - 8,
        2 => rng.below(RAM as u64 + 16),
        3 => rng.below(64),
        _ => 0xFFF - rng.below(16),
    }
}

fn random_machine(rng: &mut Rng) -> Machine {
    let mut m = Machine::long_mode_with_ram(RAM);
    for chunk in m.mem.ram.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes()[..chunk.len()]);
    }
    // Page tables: the long-mode identity map, or whatever random RAM says.
    if rng.below(2) == 0 {
        m.mem.write_u64(0x1000, 0x2000 | 0x7);
        for i in 0..4 {
            m.mem.write_u64(0x2000 + i * 8, (i << 30) | 0x87);
        }
    }
    m.mem.region_ends = vec![MMIO_BASE + rng.below(MMIO_SIZE), MMIO_BASE + MMIO_SIZE];
    let paging = [
        (0, 0, 0),
        (CR0_PG, 0, 0),
        (CR0_PG, CR4_PSE, 0),
        (CR0_PG, CR4_PAE, 0),
        (CR0_PG, CR4_PAE, EFER_LMA),
        (CR0_PG, CR4_PAE | CR4_LA57, EFER_LMA),
    ][rng.below(6) as usize];
    let pe = if rng.below(4) == 0 { 0 } else { CR0_PE };
    let extra_cr4 = rng.next() & (CR4_SMEP | CR4_SMAP);
    let cr3 = if rng.below(2) == 0 {
        0x1000
    } else {
        rng.next()
    };
    m.cpu.cr = ControlRegs {
        cr0: pe | paging.0 | (rng.next() & CR0_WP),
        cr3,
        cr4: paging.1 | extra_cr4,
        efer: paging.2 | (rng.next() & EFER_NXE),
    };
    for s in m.cpu.segs.iter_mut() {
        *s = random_segment(rng);
    }
    m.cpu.segs[1].attr = [ATTR_CODE64, ATTR_CODE32, 0x9B, rng.next() as u16][rng.below(4) as usize];
    for g in m.cpu.gprs.iter_mut() {
        *g = random_gpr(rng);
    }
    m.cpu.rflags = 0x2
        | (rng.next()
            & (rflags::STATUS | rflags::DF | rflags::AC | rflags::IOPL | rflags::VM | rflags::RF));
    m.cpu.rip = rng.below(RAM as u64 + 32);
    m.cpu.cpl = rng.below(4) as u8;
    m.cpu.maxphy = 32 + rng.below(21) as u8;
    // Half the cases have a port with a bulk string I/O path holding a
    // random number of bytes (a DRQ block's rest).
    m.mem.pio_bulk = (rng.below(2) == 0).then(|| rng.below(8192) as usize);
    m.limits = Limits {
        max_rep_iterations: 1 + rng.below(64) as u32,
        // Some cases are emulated for a nested page fault at a random device address.
        fault_gpa: (rng.below(4) == 0).then(|| MMIO_BASE + rng.below(MMIO_SIZE)),
    };
    m
}

fn random_insn(rng: &mut Rng) -> Vec<u8> {
    let mut b = Vec::new();
    if rng.below(4) == 0 {
        for _ in 0..15 {
            b.push(rng.next() as u8);
        }
        return b;
    }
    for _ in 0..rng.below(3) {
        b.push(PREFIXES[rng.below(PREFIXES.len() as u64) as usize]);
    }
    if rng.below(3) == 0 {
        b.push(0x40 | rng.below(16) as u8);
    }
    b.extend_from_slice(OPCODES[rng.below(OPCODES.len() as u64) as usize]);
    while b.len() < 15 {
        b.push(rng.next() as u8);
    }
    b
}

fn one_case(rng: &mut Rng) -> Result<Outcome, Error> {
    let mut m = random_machine(rng);
    let code = random_insn(rng);
    let from_guest = rng.below(2) == 0;
    if from_guest {
        let at = (m.cpu.rip as usize).min(RAM - code.len());
        m.mem.ram_fill(at as u64, &code);
    }
    let before = m.cpu.clone();
    let fetch = if from_guest {
        Fetch::Guest
    } else {
        Fetch::Bytes(&code[..1 + rng.below(15) as usize])
    };
    let r = emulate(&mut m.cpu, &mut m.mem, fetch, &m.limits);
    m.mem.assert_protocol();
    for c in &m.mem.calls {
        match *c {
            Call::ReadPhys { gpa, len, ok: true } | Call::WritePhys { gpa, len, ok: true } => {
                assert!(gpa + len as u64 <= RAM as u64, "{c:?}")
            }
            Call::MmioRead { gpa, len, ok: true } | Call::MmioWrite { gpa, len, ok: true } => {
                assert!(
                    gpa >= MMIO_BASE && gpa + len as u64 <= MMIO_BASE + MMIO_SIZE,
                    "{c:?}"
                )
            }
            _ => {}
        }
    }
    match r {
        Ok(Outcome::Retired) => {}
        Ok(Outcome::Yielded) | Err(_) => assert_eq!(m.cpu.rip, before.rip, "{r:?} {code:02x?}"),
    }
    if matches!(
        r,
        Err(Error::Unsupported { .. }) | Err(Error::Exception(Exception::InvalidOpcode))
    ) {
        assert_eq!(m.cpu.gprs, before.gprs, "{r:?} {code:02x?}");
        assert_eq!(m.cpu.rflags, before.rflags, "{r:?} {code:02x?}");
        assert!(m.mem.mmio_log.iter().all(|a| !a.write), "{r:?} {code:02x?}");
        assert!(m.mem.pio_log.is_empty(), "{r:?} {code:02x?}");
    }
    if matches!(r, Err(Error::Unexplained { .. })) {
        assert!(m.limits.fault_gpa.is_some(), "{code:02x?}");
        assert_eq!(m.cpu.gprs, before.gprs, "{r:?} {code:02x?}");
        assert_eq!(m.cpu.rflags, before.rflags, "{r:?} {code:02x?}");
        assert!(m.mem.mmio_log.is_empty(), "{r:?} {code:02x?}");
        assert!(m.mem.pio_log.is_empty(), "{r:?} {code:02x?}");
    }
    if let Some(gpa) = m.limits.fault_gpa {
        if r.is_ok() {
            assert!(
                m.mem
                    .mmio_log
                    .first()
                    .is_some_and(|a| gpa.wrapping_sub(a.gpa) < a.data.len() as u64),
                "the first device access explains the fault: {code:02x?} {:?}",
                m.mem.mmio_log
            );
        }
    }
    r
}

fn run(iterations: u64, seed: u64) {
    let mut rng = Rng(seed);
    let (mut retired, mut yielded, mut faults, mut refused, mut other) = (0, 0, 0, 0, 0);
    for _ in 0..iterations {
        match one_case(&mut rng) {
            Ok(Outcome::Retired) => retired += 1,
            Ok(Outcome::Yielded) => yielded += 1,
            Err(Error::Exception(_)) => faults += 1,
            Err(Error::Unsupported { .. }) => refused += 1,
            Err(_) => other += 1,
        }
    }
    std::println!("fuzz: {iterations} cases: {retired} retired, {yielded} yielded, {faults} exceptions, {refused} unsupported, {other} bus/page-table errors");
    // The generator must reach the interesting outcomes, or it tests little.
    assert!(
        retired > iterations / 50 && faults > iterations / 50,
        "generator too weak"
    );
}

#[test]
fn fuzz_short() {
    run(50_000, 0xF022_0001);
}

#[test]
#[ignore = "long run: X86_EMUL_FUZZ_ITERS=<n> cargo test -p x86-emul --release -- --ignored fuzz_long"]
fn fuzz_long() {
    let n = std::env::var("X86_EMUL_FUZZ_ITERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let seed = std::env::var("X86_EMUL_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0xF022_0002);
    run(n, seed);
}
