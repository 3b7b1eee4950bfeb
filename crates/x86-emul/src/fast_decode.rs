//! A short decoder for the instruction forms that most exits meet: `MOV`
//! between a register or an immediate and memory (`88`, `89`, `8A`, `8B`,
//! `C6 /0`, `C7 /0`: a driver's MMIO register access), and `CPUID`, `RDMSR`,
//! `WRMSR` and `HLT` without prefixes (the length of an exit's instruction
//! on a CPU that does not report it); and for a run ahead after an exit
//! (`crate::port_io_ahead`), `MOV` between registers, `MOV r, imm`, `IN`,
//! `OUT` and `Jcc rel8`.
//!
//! It builds the same [`Instruction`] iced-x86 decodes from those bytes, bit
//! for bit (a host test compares the two over every ModRM and SIB byte), and
//! answers `None` for anything else, which then goes to iced-x86. The point
//! is the exit path's cost: iced-x86's decoder reaches large tables and much
//! code for every instruction, which under an emulator that flushes its TLB
//! on each world switch costs far more than these few branches.

use iced_x86::{Code, CodeSize, Instruction, OpKind, Register};

/// Operand size of a decoded form.
#[derive(Clone, Copy, PartialEq)]
enum Size {
    B8,
    B16,
    B32,
    B64,
}

/// The instruction at `ip` in `bytes` if it is one of the forms above in
/// 32- or 64-bit code (`bitness`); `None` otherwise, or if `bytes` ends
/// before the instruction does.
pub(crate) fn decode(bitness: u32, ip: u64, bytes: &[u8]) -> Option<Instruction> {
    let code_size = match bitness {
        64 => CodeSize::Code64,
        32 => CodeSize::Code32,
        _ => return None,
    };
    let mut at = 0;
    let opsize16 = bytes.first() == Some(&0x66);
    if opsize16 {
        at += 1;
    }
    let mut rex = 0u8;
    if bitness == 64 && bytes.get(at)? & 0xF0 == 0x40 {
        rex = bytes[at];
        at += 1;
    }
    let prefixed = at != 0;
    let opcode = *bytes.get(at)?;
    at += 1;
    let mut insn = Instruction::default();
    insn.set_code_size(code_size);
    let plain = |code: Code, len: usize| {
        let mut i = insn;
        i.set_code(code);
        i.set_len(len);
        i.set_next_ip(ip.wrapping_add(len as u64));
        i
    };
    // Register and port forms (run ahead after an exit: `x86_emul::port_io_ahead`).
    if let Some(insn) = register_form(insn, ip, bytes, at, opsize16, rex, opcode) {
        return insn;
    }
    match opcode {
        0xF4 if !prefixed => return Some(plain(Code::Hlt, 1)),
        0x0F if !prefixed => {
            let code = match *bytes.get(1)? {
                0xA2 => Code::Cpuid,
                0x32 => Code::Rdmsr,
                0x30 => Code::Wrmsr,
                _ => return None,
            };
            return Some(plain(code, 2));
        }
        0x88 | 0x89 | 0x8A | 0x8B | 0xC6 | 0xC7 => {}
        _ => return None,
    }
    let w = rex & 8 != 0;
    let size = match opcode {
        0x88 | 0x8A | 0xC6 => Size::B8,
        _ if w => Size::B64,
        _ if opsize16 => Size::B16,
        _ => Size::B32,
    };
    let modrm = *bytes.get(at)?;
    at += 1;
    let (mode, reg, rm) = (modrm >> 6, (modrm >> 3) & 7, modrm & 7);
    if matches!(opcode, 0xC6 | 0xC7) && (mode == 3 || reg != 0) {
        return None;
    }
    let reg = reg | ((rex & 4) << 1);
    let long = bitness == 64;
    let sized = |n: u8| -> Register {
        match size {
            Size::B8 if rex == 0 && (4..8).contains(&n) => Register::AH + u32::from(n - 4),
            Size::B8 if n < 4 => Register::AL + u32::from(n),
            Size::B8 if n < 8 => Register::SPL + u32::from(n - 4),
            Size::B8 => Register::R8L + u32::from(n - 8),
            Size::B16 => Register::AX + u32::from(n),
            Size::B32 => Register::EAX + u32::from(n),
            Size::B64 => Register::RAX + u32::from(n),
        }
    };
    // Register to register (ModRM mod 11): MOV between two registers, as a
    // run ahead after an exit meets it (`x86_emul::port_io_ahead`).
    if mode == 3 {
        let rm = rm | ((rex & 1) << 3);
        let code = mov_code(opcode, size);
        let (first, second) = if matches!(opcode, 0x88 | 0x89) {
            (rm, reg)
        } else {
            (reg, rm)
        };
        insn.set_code(code);
        insn.set_len(at);
        insn.set_next_ip(ip.wrapping_add(at as u64));
        insn.set_op_kind(0, OpKind::Register);
        insn.set_op_register(0, sized(first));
        insn.set_op_kind(1, OpKind::Register);
        insn.set_op_register(1, sized(second));
        return Some(insn);
    }
    let gpr = |n: u8| -> Register {
        let base = if long { Register::RAX } else { Register::EAX };
        base + u32::from(n)
    };
    let mut base = Register::None;
    let mut index = Register::None;
    let mut scale = 1;
    let mut rip_relative = false;
    // Displacement bytes: 0, 1 or 4.
    let displ_len;
    if rm == 4 {
        let sib = *bytes.get(at)?;
        at += 1;
        scale = 1 << (sib >> 6);
        let i = ((sib >> 3) & 7) | ((rex & 2) << 2);
        if i != 4 {
            index = gpr(i);
        }
        let b = sib & 7;
        if b == 5 && mode == 0 {
            displ_len = 4;
        } else {
            base = gpr(b | ((rex & 1) << 3));
            displ_len = [0, 1, 4][usize::from(mode)];
        }
    } else if rm == 5 && mode == 0 {
        rip_relative = long;
        if long {
            base = Register::RIP;
        }
        displ_len = 4;
    } else {
        base = gpr(rm | ((rex & 1) << 3));
        displ_len = [0, 1, 4][usize::from(mode)];
    }
    let displ: u64 = match displ_len {
        0 => 0,
        1 => *bytes.get(at)? as i8 as i64 as u64,
        _ => {
            let d = bytes.get(at..at + 4)?;
            i32::from_le_bytes([d[0], d[1], d[2], d[3]]) as i64 as u64
        }
    };
    at += displ_len;
    let imm_len = match (opcode, size) {
        (0xC6, _) => 1,
        (0xC7, Size::B16) => 2,
        (0xC7, _) => 4,
        _ => 0,
    };
    let imm = bytes.get(at..at + imm_len)?;
    at += imm_len;
    let len = at;
    let next_ip = ip.wrapping_add(len as u64);
    let register = sized(reg);
    let code = mov_code(opcode, size);
    insn.set_code(code);
    insn.set_len(len);
    insn.set_next_ip(next_ip);
    insn.set_memory_base(base);
    insn.set_memory_index(index);
    insn.set_memory_index_scale(scale);
    let (displacement, displ_size) = match (displ_len, long) {
        (0, _) => (0, 0),
        (1, true) => (displ, 1),
        (1, false) => (displ & 0xFFFF_FFFF, 1),
        (_, true) if rip_relative => (next_ip.wrapping_add(displ), 8),
        (_, true) => (displ, 8),
        (_, false) => (displ & 0xFFFF_FFFF, 4),
    };
    insn.set_memory_displacement64(displacement);
    insn.set_memory_displ_size(displ_size);
    let memory_first = matches!(opcode, 0x88 | 0x89 | 0xC6 | 0xC7);
    let (mem_op, other_op) = if memory_first { (0, 1) } else { (1, 0) };
    insn.set_op_kind(mem_op, OpKind::Memory);
    match imm_len {
        0 => {
            insn.set_op_kind(other_op, OpKind::Register);
            insn.set_op_register(other_op, register);
        }
        1 => {
            insn.set_op_kind(other_op, OpKind::Immediate8);
            insn.set_immediate8(imm[0]);
        }
        2 => {
            insn.set_op_kind(other_op, OpKind::Immediate16);
            insn.set_immediate16(u16::from_le_bytes([imm[0], imm[1]]));
        }
        _ => {
            let v = u32::from_le_bytes([imm[0], imm[1], imm[2], imm[3]]);
            if size == Size::B64 {
                insn.set_op_kind(other_op, OpKind::Immediate32to64);
                insn.set_immediate32to64(v as i32 as i64);
            } else {
                insn.set_op_kind(other_op, OpKind::Immediate32);
                insn.set_immediate32(v);
            }
        }
    }
    Some(insn)
}

/// The MOV form of `opcode` (`88`, `89`, `8A`, `8B`, `C6`, `C7`) at `size`.
fn mov_code(opcode: u8, size: Size) -> Code {
    match (opcode, size) {
        (0x88, _) => Code::Mov_rm8_r8,
        (0x89, Size::B16) => Code::Mov_rm16_r16,
        (0x89, Size::B32) => Code::Mov_rm32_r32,
        (0x89, _) => Code::Mov_rm64_r64,
        (0x8A, _) => Code::Mov_r8_rm8,
        (0x8B, Size::B16) => Code::Mov_r16_rm16,
        (0x8B, Size::B32) => Code::Mov_r32_rm32,
        (0x8B, _) => Code::Mov_r64_rm64,
        (0xC6, _) => Code::Mov_rm8_imm8,
        (0xC7, Size::B16) => Code::Mov_rm16_imm16,
        (0xC7, Size::B32) => Code::Mov_rm32_imm32,
        _ => Code::Mov_rm64_imm32,
    }
}

/// `IN`/`OUT` with an immediate port or DX (`E4`-`E7`, `EC`-`EF`, with an
/// operand-size prefix, no REX), `MOV r, imm` (`B0`-`BF`, with REX and the
/// operand-size prefix) and `Jcc rel8` (`70`-`7F`, no prefix), the opcode
/// at `bytes[at - 1]`. `None`: not one of these, go on; `Some(None)`: one
/// of these but `bytes` ends early.
fn register_form(
    mut insn: Instruction,
    ip: u64,
    bytes: &[u8],
    at: usize,
    opsize16: bool,
    rex: u8,
    opcode: u8,
) -> Option<Option<Instruction>> {
    let long = insn.code_size() == CodeSize::Code64;
    let finish = |mut insn: Instruction, len: usize| {
        insn.set_len(len);
        insn.set_next_ip(ip.wrapping_add(len as u64));
        Some(insn)
    };
    match opcode {
        0xE4..=0xE7 | 0xEC..=0xEF if rex == 0 => {
            let wide = opcode & 1 != 0;
            let data = match (wide, opsize16) {
                (false, _) => Register::AL,
                (true, true) => Register::AX,
                (true, false) => Register::EAX,
            };
            let out = opcode & 2 != 0;
            let code = match (out, opcode & 8 != 0, data) {
                (false, false, Register::AL) => Code::In_AL_imm8,
                (false, false, Register::AX) => Code::In_AX_imm8,
                (false, false, _) => Code::In_EAX_imm8,
                (false, true, Register::AL) => Code::In_AL_DX,
                (false, true, Register::AX) => Code::In_AX_DX,
                (false, true, _) => Code::In_EAX_DX,
                (true, false, Register::AL) => Code::Out_imm8_AL,
                (true, false, Register::AX) => Code::Out_imm8_AX,
                (true, false, _) => Code::Out_imm8_EAX,
                (true, true, Register::AL) => Code::Out_DX_AL,
                (true, true, Register::AX) => Code::Out_DX_AX,
                (true, true, _) => Code::Out_DX_EAX,
            };
            insn.set_code(code);
            let (data_op, port_op) = if out { (1, 0) } else { (0, 1) };
            insn.set_op_kind(data_op, OpKind::Register);
            insn.set_op_register(data_op, data);
            if opcode & 8 != 0 {
                insn.set_op_kind(port_op, OpKind::Register);
                insn.set_op_register(port_op, Register::DX);
                Some(finish(insn, at))
            } else {
                let Some(&port) = bytes.get(at) else {
                    return Some(None);
                };
                insn.set_op_kind(port_op, OpKind::Immediate8);
                insn.set_immediate8(port);
                Some(finish(insn, at + 1))
            }
        }
        0xB0..=0xBF => {
            let n = (opcode & 7) | ((rex & 1) << 3);
            let (code, reg, imm_len) = if opcode < 0xB8 {
                let reg = match n {
                    _ if rex == 0 && n >= 4 => Register::AH + u32::from(n - 4),
                    0..=3 => Register::AL + u32::from(n),
                    4..=7 => Register::SPL + u32::from(n - 4),
                    _ => Register::R8L + u32::from(n - 8),
                };
                (Code::Mov_r8_imm8, reg, 1)
            } else if rex & 8 != 0 {
                (Code::Mov_r64_imm64, Register::RAX + u32::from(n), 8)
            } else if opsize16 {
                (Code::Mov_r16_imm16, Register::AX + u32::from(n), 2)
            } else {
                (Code::Mov_r32_imm32, Register::EAX + u32::from(n), 4)
            };
            let Some(imm) = bytes.get(at..at + imm_len) else {
                return Some(None);
            };
            insn.set_code(code);
            insn.set_op_kind(0, OpKind::Register);
            insn.set_op_register(0, reg);
            let mut v = [0u8; 8];
            v[..imm_len].copy_from_slice(imm);
            let v = u64::from_le_bytes(v);
            match imm_len {
                1 => {
                    insn.set_op_kind(1, OpKind::Immediate8);
                    insn.set_immediate8(v as u8);
                }
                2 => {
                    insn.set_op_kind(1, OpKind::Immediate16);
                    insn.set_immediate16(v as u16);
                }
                4 => {
                    insn.set_op_kind(1, OpKind::Immediate32);
                    insn.set_immediate32(v as u32);
                }
                _ => {
                    insn.set_op_kind(1, OpKind::Immediate64);
                    insn.set_immediate64(v);
                }
            }
            Some(finish(insn, at + imm_len))
        }
        0x70..=0x7F if at == 1 => {
            let Some(&rel) = bytes.get(1) else {
                return Some(None);
            };
            const JCC64: [Code; 16] = [
                Code::Jo_rel8_64,
                Code::Jno_rel8_64,
                Code::Jb_rel8_64,
                Code::Jae_rel8_64,
                Code::Je_rel8_64,
                Code::Jne_rel8_64,
                Code::Jbe_rel8_64,
                Code::Ja_rel8_64,
                Code::Js_rel8_64,
                Code::Jns_rel8_64,
                Code::Jp_rel8_64,
                Code::Jnp_rel8_64,
                Code::Jl_rel8_64,
                Code::Jge_rel8_64,
                Code::Jle_rel8_64,
                Code::Jg_rel8_64,
            ];
            const JCC32: [Code; 16] = [
                Code::Jo_rel8_32,
                Code::Jno_rel8_32,
                Code::Jb_rel8_32,
                Code::Jae_rel8_32,
                Code::Je_rel8_32,
                Code::Jne_rel8_32,
                Code::Jbe_rel8_32,
                Code::Ja_rel8_32,
                Code::Js_rel8_32,
                Code::Jns_rel8_32,
                Code::Jp_rel8_32,
                Code::Jnp_rel8_32,
                Code::Jl_rel8_32,
                Code::Jge_rel8_32,
                Code::Jle_rel8_32,
                Code::Jg_rel8_32,
            ];
            let cc = usize::from(opcode - 0x70);
            let next = ip.wrapping_add(2);
            let target = next.wrapping_add(rel as i8 as i64 as u64);
            if long {
                insn.set_code(JCC64[cc]);
                insn.set_op_kind(0, OpKind::NearBranch64);
                insn.set_near_branch64(target);
            } else {
                insn.set_code(JCC32[cc]);
                insn.set_op_kind(0, OpKind::NearBranch32);
                insn.set_near_branch32(target as u32);
            }
            Some(finish(insn, 2))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::decode;
    use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction};
    use std::vec::Vec;

    const IP: u64 = 0xFFFF_FFFF_FFFF_FFF0;

    fn iced(bitness: u32, ip: u64, bytes: &[u8]) -> Option<Instruction> {
        let mut d = Decoder::with_ip(bitness, bytes, ip, DecoderOptions::NONE);
        let insn = d.decode();
        (d.last_error() == DecoderError::None).then_some(insn)
    }

    /// Compares the short decoder with iced-x86 on `bytes` and on each of
    /// its truncations; returns whether the short decoder took it.
    fn agree(bitness: u32, bytes: &[u8]) -> bool {
        let ip = if bitness == 64 { IP } else { 0xFFFF_FFF0 };
        for cut in 0..bytes.len() {
            if let Some(fast) = decode(bitness, ip, &bytes[..cut]) {
                let full = iced(bitness, ip, &bytes[..cut]).expect("iced decodes it too");
                assert!(
                    fast.eq_all_bits(&full),
                    "{bitness}-bit {:02x?}:\n fast {fast:?}\n iced {full:?}",
                    &bytes[..cut]
                );
            }
        }
        let Some(fast) = decode(bitness, ip, bytes) else {
            return false;
        };
        let full = iced(bitness, ip, bytes).expect("iced decodes it too");
        assert!(
            fast.eq_all_bits(&full),
            "{bitness}-bit {bytes:02x?}:\n fast {fast:?}\n iced {full:?}"
        );
        true
    }

    #[test]
    fn agrees_with_iced_on_every_modrm_and_sib() {
        let mut taken = 0;
        let mut rng = crate::rng::Rng(0x5EED_1234_ABCD_0007);
        for bitness in [32, 64] {
            let mut prefixes: Vec<Vec<u8>> = vec![vec![], vec![0x66]];
            if bitness == 64 {
                for rex in 0x40..=0x4F {
                    prefixes.push(vec![rex]);
                    prefixes.push(vec![0x66, rex]);
                }
            }
            for prefix in &prefixes {
                let register_forms = (0xE4..=0xE7).chain(0xEC..=0xEF).chain(0xB0..=0xBF);
                let jcc = 0x70..=0x7F;
                let opcodes = [0x88u8, 0x89, 0x8A, 0x8B, 0xC6, 0xC7, 0x8C, 0xC8]
                    .into_iter()
                    .chain(register_forms)
                    .chain(jcc);
                for opcode in opcodes {
                    for modrm in 0..=255u8 {
                        let sibs: Vec<u8> = if modrm & 7 == 4 && modrm >> 6 != 3 {
                            (0..=255).collect()
                        } else {
                            vec![0]
                        };
                        for sib in sibs {
                            let mut b = prefix.clone();
                            b.extend([opcode, modrm]);
                            if modrm & 7 == 4 {
                                b.push(sib);
                            }
                            for _ in 0..8 {
                                b.push(rng.next() as u8);
                            }
                            if agree(bitness, &b) {
                                taken += 1;
                            }
                        }
                    }
                }
            }
            for bytes in [
                &[0xF4][..],
                &[0x0F, 0xA2],
                &[0x0F, 0x32],
                &[0x0F, 0x30],
                &[0x66, 0xF4],
                &[0x48, 0x0F, 0xA2],
                &[0x0F, 0x31],
                &[0xF0, 0x89, 0x03],
                &[0x67, 0x89, 0x03],
                &[0x2E, 0x89, 0x03],
            ] {
                agree(bitness, bytes);
            }
        }
        assert!(taken > 100_000, "the short decoder took {taken} forms");
    }

    #[test]
    fn leaves_other_forms_to_iced() {
        for bytes in [
            &[0xF0, 0x89, 0x03][..], // LOCK
            &[0x67, 0x89, 0x03],     // address size
            &[0x2E, 0x89, 0x03],     // segment override
            &[0xC7, 0xC8, 0, 0, 0, 0],
            &[0x66, 0xF4],
            &[0x0F, 0x31], // RDTSC
        ] {
            assert!(decode(64, 0, bytes).is_none(), "{bytes:02x?}");
        }
        assert!(decode(16, 0, &[0x89, 0x07]).is_none());
    }
}
