//! Instruction dispatch: one file per family.

pub(crate) mod alu;
mod bits;
mod branch;
mod io;
mod lea;
mod mov;
mod shift;
mod stack;
mod string;
mod xchg;

use iced_x86::{Mnemonic, OpKind};

use crate::access::Ctx;
use crate::cpu::{rflags, Cpu};
use crate::decode::Decoded;
use crate::error::{Error, Exception, Outcome};
use crate::memory::Memory;
use crate::Limits;

/// Whether the instruction has an explicit or string memory operand.
fn has_memory_operand(insn: &iced_x86::Instruction) -> bool {
    (0..insn.op_count())
        .any(|i| !matches!(insn.op_kind(i), OpKind::Register) && !is_immediate(insn.op_kind(i)))
}

pub(crate) fn is_immediate(k: OpKind) -> bool {
    matches!(
        k,
        OpKind::Immediate8
            | OpKind::Immediate8_2nd
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64
    )
}

/// What the family handlers return: the instruction completed, or a REP budget ran out.
pub(crate) type Step = Result<Outcome, Error>;

/// Unsupported instruction with a reason for the log.
pub(crate) fn unsupported(d: &Decoded, what: &'static str) -> Error {
    Error::Unsupported {
        bytes: d.bytes,
        len: d.insn.len() as u8,
        what,
    }
}

/// `size` if it is an integer operand size (1, 2, 4 or 8 bytes).
pub(crate) fn int_size(d: &Decoded, size: usize) -> Result<usize, Error> {
    if matches!(size, 1 | 2 | 4 | 8) {
        Ok(size)
    } else {
        Err(unsupported(d, "operand size"))
    }
}

/// Execute a decoded instruction and, if it retired, move RIP past it.
pub(crate) fn execute<C: Cpu, M: Memory>(
    ctx: &mut Ctx<'_, C, M>,
    d: &Decoded,
    limits: &Limits,
) -> Step {
    let insn = &d.insn;
    // LOCK is legal only on a read-modify-write of memory (SDM Vol 2A "LOCK"); iced-x86
    // already rejects it on other instructions.
    if insn.has_lock_prefix() && !has_memory_operand(insn) {
        return Err(Exception::InvalidOpcode.into());
    }
    // A Jcc moves RIP itself, to its target or past it.
    if insn.is_jcc_short_or_near() {
        return branch::jcc(ctx, d);
    }
    use Mnemonic::*;
    let outcome = match insn.mnemonic() {
        Mov | Movzx | Movsx | Movsxd | Movnti | Movbe if !string::is_string(insn) => {
            mov::execute(ctx, d)?
        }
        Add | Or | Adc | Sbb | And | Sub | Xor | Cmp | Test | Inc | Dec | Neg | Not => {
            alu::execute(ctx, d)?
        }
        Bt | Bts | Btr | Btc => bits::execute(ctx, d)?,
        Xchg | Cmpxchg | Xadd | Cmpxchg8b | Cmpxchg16b => xchg::execute(ctx, d)?,
        Push | Pop => stack::execute(ctx, d)?,
        Insb | Insw | Insd | Outsb | Outsw | Outsd => io::execute(ctx, d, limits)?,
        In | Out => io::execute_in_out(ctx, d)?,
        Lea => lea::execute(ctx, d)?,
        Shl | Sal | Shr | Sar => shift::execute(ctx, d)?,
        _ if string::is_string(insn) => string::execute(ctx, d, limits)?,
        _ => return Err(unsupported(d, "instruction not emulated")),
    };
    if outcome == Outcome::Retired {
        let ip_mask = match insn.code_size() {
            iced_x86::CodeSize::Code16 => 0xFFFF,
            iced_x86::CodeSize::Code32 => 0xFFFF_FFFF,
            _ => u64::MAX,
        };
        ctx.cpu.set_rip(insn.next_ip() & ip_mask);
        // RF is cleared once an instruction completes (SDM Vol 3A 17.3.1.1).
        let f = ctx.cpu.rflags();
        ctx.cpu.set_rflags(f & !rflags::RF);
    }
    Ok(outcome)
}
