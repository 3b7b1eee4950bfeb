//! Differential tests: the emulator against the host CPU running the same instruction.
//!
//! The only unsafe code in the crate is here, in tests: inline assembly that loads
//! RFLAGS, runs one instruction and reads RFLAGS back.
#![allow(unsafe_code)]

use core::arch::asm;
use std::vec::Vec;

use crate::cpu::rflags::{DF, STATUS};
use crate::cpu::Gpr;
use crate::flags::mask;
use crate::insn::alu::{compute, AluOp};
use crate::testutil::*;
use crate::{Limits, Outcome};

/// Random pairs per ALU instruction and operand size.
const ALU_PAIRS: usize = 100_000;
/// Of those, how many also go through `emulate` with an MMIO destination.
const ALU_END_TO_END: usize = 5_000;
/// Random runs per string instruction family.
const STRING_RUNS: usize = 100_000;

macro_rules! host_binary {
    ($name:ident, $insn:literal) => {
        fn $name(size: usize, a: u64, b: u64, f: u64) -> (u64, u64) {
            let (mut a, mut f) = (a, f);
            // SAFETY: the asm only touches its operands and the stack, which it
            // leaves as it found it (push/pop pairs); RFLAGS is loaded with status
            // flags only (no TF, DF clear) and is the instruction's own output.
            unsafe {
                match size {
                    1 => asm!("push {f}", "popfq", concat!($insn, " {a:l}, {b:l}"), "pushfq", "pop {f}",
                              a = inout(reg) a, b = in(reg) b, f = inout(reg) f),
                    2 => asm!("push {f}", "popfq", concat!($insn, " {a:x}, {b:x}"), "pushfq", "pop {f}",
                              a = inout(reg) a, b = in(reg) b, f = inout(reg) f),
                    4 => asm!("push {f}", "popfq", concat!($insn, " {a:e}, {b:e}"), "pushfq", "pop {f}",
                              a = inout(reg) a, b = in(reg) b, f = inout(reg) f),
                    _ => asm!("push {f}", "popfq", concat!($insn, " {a:r}, {b:r}"), "pushfq", "pop {f}",
                              a = inout(reg) a, b = in(reg) b, f = inout(reg) f),
                }
            }
            (a, f)
        }
    };
}

macro_rules! host_unary {
    ($name:ident, $insn:literal) => {
        fn $name(size: usize, a: u64, _b: u64, f: u64) -> (u64, u64) {
            let (mut a, mut f) = (a, f);
            // SAFETY: as for the binary instructions above.
            unsafe {
                match size {
                    1 => asm!("push {f}", "popfq", concat!($insn, " {a:l}"), "pushfq", "pop {f}",
                              a = inout(reg) a, f = inout(reg) f),
                    2 => asm!("push {f}", "popfq", concat!($insn, " {a:x}"), "pushfq", "pop {f}",
                              a = inout(reg) a, f = inout(reg) f),
                    4 => asm!("push {f}", "popfq", concat!($insn, " {a:e}"), "pushfq", "pop {f}",
                              a = inout(reg) a, f = inout(reg) f),
                    _ => asm!("push {f}", "popfq", concat!($insn, " {a:r}"), "pushfq", "pop {f}",
                              a = inout(reg) a, f = inout(reg) f),
                }
            }
            (a, f)
        }
    };
}

host_binary!(h_add, "add");
host_binary!(h_or, "or");
host_binary!(h_adc, "adc");
host_binary!(h_sbb, "sbb");
host_binary!(h_and, "and");
host_binary!(h_sub, "sub");
host_binary!(h_xor, "xor");
host_binary!(h_cmp, "cmp");
host_binary!(h_test, "test");
host_unary!(h_inc, "inc");
host_unary!(h_dec, "dec");
host_unary!(h_neg, "neg");
host_unary!(h_not, "not");

type HostFn = fn(usize, u64, u64, u64) -> (u64, u64);

/// Each instruction: the host runner, and its `op [rbx], rcx` (or `op [rbx]`)
/// encoding as (opcode for 8-bit, opcode for wider, ModR/M).
const ALU: [(AluOp, HostFn, u8, u8, u8); 13] = [
    (AluOp::Add, h_add, 0x00, 0x01, 0x0B),
    (AluOp::Or, h_or, 0x08, 0x09, 0x0B),
    (AluOp::Adc, h_adc, 0x10, 0x11, 0x0B),
    (AluOp::Sbb, h_sbb, 0x18, 0x19, 0x0B),
    (AluOp::And, h_and, 0x20, 0x21, 0x0B),
    (AluOp::Sub, h_sub, 0x28, 0x29, 0x0B),
    (AluOp::Xor, h_xor, 0x30, 0x31, 0x0B),
    (AluOp::Cmp, h_cmp, 0x38, 0x39, 0x0B),
    (AluOp::Test, h_test, 0x84, 0x85, 0x0B),
    (AluOp::Inc, h_inc, 0xFE, 0xFF, 0x03),
    (AluOp::Dec, h_dec, 0xFE, 0xFF, 0x0B),
    (AluOp::Not, h_not, 0xF6, 0xF7, 0x13),
    (AluOp::Neg, h_neg, 0xF6, 0xF7, 0x1B),
];

/// Values at the carry and overflow boundaries of `size`.
fn edges(size: usize) -> Vec<u64> {
    let m = mask(size);
    let sign = 1u64 << (size * 8 - 1);
    vec![
        0,
        1,
        2,
        0x0F,
        0x10,
        0x7F,
        0x80,
        0xFF,
        sign - 1,
        sign,
        sign + 1,
        m - 1,
        m,
    ]
}

fn operand(rng: &mut Rng, size: usize) -> u64 {
    // Half uniform, half near the edges, so carries and overflows are common.
    let v = if rng.below(2) == 0 {
        rng.next()
    } else {
        let e = edges(size);
        e[rng.below(e.len() as u64) as usize]
            .wrapping_add(rng.below(5))
            .wrapping_sub(2)
    };
    v & mask(size)
}

fn check_alu(op: AluOp, host: HostFn, size: usize, a: u64, b: u64, fin: u64) {
    let (hv, hf) = host(size, a, b, fin);
    let (ev, ef) = compute(op, a, b, size, fin);
    let defined = op.defined_flags();
    if op.writes_result() {
        assert_eq!(
            ev,
            hv & mask(size),
            "{op:?}/{size}: {a:#x}, {b:#x}, flags {fin:#x}"
        );
    }
    assert_eq!(
        ef & defined,
        hf & defined,
        "{op:?}/{size}: {a:#x}, {b:#x}, flags in {fin:#x}"
    );
}

#[test]
fn alu_results_and_flags_match_the_host() {
    let mut rng = Rng(0x5EED_0001);
    let mut cases = 0usize;
    for (op, host, ..) in ALU {
        for size in [1, 2, 4, 8] {
            for &a in &edges(size) {
                for &b in &edges(size) {
                    for cf in [0, 1] {
                        check_alu(op, host, size, a, b, 0x2 | cf);
                    }
                }
            }
            for _ in 0..ALU_PAIRS {
                let (a, b) = (operand(&mut rng, size), operand(&mut rng, size));
                let fin = 0x2 | (rng.next() & STATUS);
                check_alu(op, host, size, a, b, fin);
                cases += 1;
            }
        }
    }
    assert!(cases >= 13 * 4 * ALU_PAIRS);
}

#[test]
fn alu_on_mmio_through_emulate_matches_the_host() {
    let mut rng = Rng(0x5EED_0002);
    let mut m = Machine::long_mode();
    m.mem.record_calls = false;
    for (op, host, op8, op_wide, modrm) in ALU {
        for size in [1, 2, 4, 8] {
            let mut code = Vec::new();
            match size {
                2 => code.push(0x66),
                8 => code.push(0x48),
                _ => {}
            }
            code.push(if size == 1 { op8 } else { op_wide });
            code.push(modrm);
            for _ in 0..ALU_END_TO_END {
                let (a, b) = (operand(&mut rng, size), operand(&mut rng, size));
                let fin = 0x2 | (rng.next() & STATUS);
                m.mem.mmio_fill(MMIO_BASE, &a.to_le_bytes());
                m.cpu.set(Gpr::Rbx, MMIO_BASE);
                m.cpu.set(Gpr::Rcx, b);
                m.cpu.rflags = fin;
                m.cpu.rip = 0x10000;
                m.mem.mmio_log.clear();
                assert_eq!(m.run(&code), Ok(Outcome::Retired), "{op:?}/{size}");
                let (hv, hf) = host(size, a, b, fin);
                let defined = op.defined_flags();
                let expect = if op.writes_result() { hv } else { a };
                assert_eq!(
                    m.mem.mmio_get(MMIO_BASE, size),
                    expect & mask(size),
                    "{op:?}/{size} {a:#x} {b:#x}"
                );
                assert_eq!(
                    m.cpu.rflags & defined,
                    hf & defined,
                    "{op:?}/{size} {a:#x} {b:#x}"
                );
                let writes = m.mem.mmio_log.iter().filter(|a| a.write).count();
                assert_eq!(writes, usize::from(op.writes_result()), "{op:?}/{size}");
            }
        }
    }
}

/// Host string instruction: (rsi, rdi, rcx, rax, rflags) in and out.
type StrFn = fn(u64, u64, u64, u64, u64) -> (u64, u64, u64, u64, u64);

macro_rules! host_string {
    ($name:ident, $insn:literal) => {
        fn $name(si: u64, di: u64, cx: u64, ax: u64, f: u64) -> (u64, u64, u64, u64, u64) {
            let (mut si, mut di, mut cx, mut ax, mut f) = (si, di, cx, ax, f);
            // SAFETY: rsi/rdi point into buffers the caller owns with room for rcx
            // elements in the DF direction; DF is cleared again before returning.
            unsafe {
                asm!("push {f}", "popfq", $insn, "pushfq", "pop {f}", "cld",
                     f = inout(reg) f, inout("rsi") si, inout("rdi") di, inout("rcx") cx, inout("rax") ax);
            }
            (si, di, cx, ax, f)
        }
    };
}

host_string!(s_movsb, "rep movsb");
host_string!(s_movsw, "rep movsw");
host_string!(s_movsd, "rep movsd");
host_string!(s_movsq, "rep movsq");
host_string!(s_stosb, "rep stosb");
host_string!(s_stosw, "rep stosw");
host_string!(s_stosd, "rep stosd");
host_string!(s_stosq, "rep stosq");
host_string!(s_lodsb, "rep lodsb");
host_string!(s_lodsw, "rep lodsw");
host_string!(s_lodsd, "rep lodsd");
host_string!(s_lodsq, "rep lodsq");
host_string!(s_cmpsb, "repe cmpsb");
host_string!(s_cmpsw, "repe cmpsw");
host_string!(s_cmpsd, "repe cmpsd");
host_string!(s_cmpsq, "repe cmpsq");
host_string!(s_scasb, "repne scasb");
host_string!(s_scasw, "repne scasw");
host_string!(s_scasd, "repne scasd");
host_string!(s_scasq, "repne scasq");
host_string!(n_movsw, "movsw");
host_string!(n_cmpsd, "cmpsd");
host_string!(n_scasb, "scasb");
host_string!(r_cmpsb, "repne cmpsb");
host_string!(r_scasq, "repe scasq");

/// (family, host runner, encoding, element size)
const STRINGS: [(&str, StrFn, &[u8], usize); 25] = [
    ("movs", s_movsb, &[0xF3, 0xA4], 1),
    ("movs", s_movsw, &[0xF3, 0x66, 0xA5], 2),
    ("movs", s_movsd, &[0xF3, 0xA5], 4),
    ("movs", s_movsq, &[0xF3, 0x48, 0xA5], 8),
    ("movs", n_movsw, &[0x66, 0xA5], 2),
    ("stos", s_stosb, &[0xF3, 0xAA], 1),
    ("stos", s_stosw, &[0xF3, 0x66, 0xAB], 2),
    ("stos", s_stosd, &[0xF3, 0xAB], 4),
    ("stos", s_stosq, &[0xF3, 0x48, 0xAB], 8),
    ("lods", s_lodsb, &[0xF3, 0xAC], 1),
    ("lods", s_lodsw, &[0xF3, 0x66, 0xAD], 2),
    ("lods", s_lodsd, &[0xF3, 0xAD], 4),
    ("lods", s_lodsq, &[0xF3, 0x48, 0xAD], 8),
    ("cmps", s_cmpsb, &[0xF3, 0xA6], 1),
    ("cmps", s_cmpsw, &[0xF3, 0x66, 0xA7], 2),
    ("cmps", s_cmpsd, &[0xF3, 0xA7], 4),
    ("cmps", s_cmpsq, &[0xF3, 0x48, 0xA7], 8),
    ("cmps", n_cmpsd, &[0xA7], 4),
    ("cmps", r_cmpsb, &[0xF2, 0xA6], 1),
    ("scas", s_scasb, &[0xF2, 0xAE], 1),
    ("scas", s_scasw, &[0xF2, 0x66, 0xAF], 2),
    ("scas", s_scasd, &[0xF2, 0xAF], 4),
    ("scas", s_scasq, &[0xF2, 0x48, 0xAF], 8),
    ("scas", n_scasb, &[0xAE], 1),
    ("scas", r_scasq, &[0xF3, 0x48, 0xAF], 8),
];

const BUF: usize = 1024;
const SRC_GPA: u64 = 0x20000;
const DST_GPA: u64 = 0x30000;

#[test]
fn string_pointer_count_and_flag_updates_match_the_host() {
    let mut rng = Rng(0x5EED_0003);
    let mut m = Machine::long_mode();
    m.mem.record_calls = false;
    m.limits = Limits {
        max_rep_iterations: 1 << 20,
        ..Limits::default()
    };
    let mut runs = std::collections::BTreeMap::<&str, usize>::new();
    let mut src = [0u8; BUF];
    let mut dst = [0u8; BUF];
    let family_size = |f: &str| STRINGS.iter().filter(|s| s.0 == f).count();
    let schedule = STRINGS
        .iter()
        .flat_map(|s| core::iter::repeat_n(*s, STRING_RUNS.div_ceil(family_size(s.0))));
    for (family, host, code, elem) in schedule {
        // A small alphabet, so REPE/REPNE stop at varying points.
        for b in src.iter_mut().chain(dst.iter_mut()) {
            *b = rng.below(3) as u8;
        }
        let df = rng.below(2) == 1;
        let count = rng.below(40);
        let start = (BUF / 2) as u64 + rng.below(8);
        let ax = rng.below(3) * 0x0101_0101_0101_0101;
        let fin = 0x2 | (rng.next() & STATUS) | if df { DF } else { 0 };

        m.mem.ram_fill(SRC_GPA, &src);
        m.mem.ram_fill(DST_GPA, &dst);
        m.cpu.rip = 0x10000;
        m.cpu.rflags = fin;
        m.cpu.set(Gpr::Rsi, SRC_GPA + start);
        m.cpu.set(Gpr::Rdi, DST_GPA + start);
        m.cpu.set(Gpr::Rcx, count);
        m.cpu.set(Gpr::Rax, ax);
        assert_eq!(m.run(code), Ok(Outcome::Retired));

        let hs = src.as_mut_ptr() as u64 + start;
        let hd = dst.as_mut_ptr() as u64 + start;
        let (si, di, cx, hax, hf) = host(hs, hd, count, ax, fin);

        let what = format!("{family}/{elem} {code:02x?} count {count} df {df}");
        assert_eq!(
            m.cpu.get(Gpr::Rsi).wrapping_sub(SRC_GPA + start),
            si.wrapping_sub(hs),
            "rsi {what}"
        );
        assert_eq!(
            m.cpu.get(Gpr::Rdi).wrapping_sub(DST_GPA + start),
            di.wrapping_sub(hd),
            "rdi {what}"
        );
        assert_eq!(m.cpu.get(Gpr::Rcx), cx, "rcx {what}");
        assert_eq!(m.cpu.get(Gpr::Rax), hax, "rax {what}");
        assert_eq!(
            m.cpu.rflags & (STATUS | DF),
            hf & (STATUS | DF),
            "rflags {what}"
        );
        assert_eq!(
            &m.mem.ram[DST_GPA as usize..DST_GPA as usize + BUF],
            &dst[..],
            "memory {what}"
        );
        *runs.entry(family).or_default() += 1;
    }
    for (family, n) in runs {
        assert!(n >= STRING_RUNS, "{family}: {n} runs");
    }
}
