//! Instruction fetch through the guest's own translation, and decoding with iced-x86.

use iced_x86::{Decoder, DecoderError, DecoderOptions, Instruction};

use crate::access::Ctx;
use crate::cpu::{Cpu, Mode, Sreg};
use crate::error::{Error, Exception};
use crate::memory::Memory;
use crate::paging::AccessKind;

/// Longest legal instruction (SDM Vol 2A 2.3.11).
pub const MAX_INSN_LEN: usize = 15;

/// Where the instruction bytes come from.
#[derive(Clone, Copy, Debug)]
pub enum Fetch<'a> {
    /// Fetch from CS:RIP through segmentation and the guest page tables.
    Guest,
    /// Bytes the hardware already supplied (SVM decode assists, `guest instruction
    /// bytes` in the VMCB). If they end before the instruction does, the rest is fetched.
    Bytes(&'a [u8]),
}

/// A decoded instruction and its bytes.
pub(crate) struct Decoded {
    pub insn: Instruction,
    pub bytes: [u8; MAX_INSN_LEN],
}

/// The instruction at `ip` in `bytes`: the short decoder's common forms
/// first ([`crate::fast_decode`], which agrees with iced-x86 bit for bit),
/// iced-x86 for the rest.
fn try_decode(
    bitness: u32,
    ip: u64,
    bytes: &[u8],
    options: u32,
) -> Result<Instruction, DecoderError> {
    if options == DecoderOptions::NONE {
        if let Some(insn) = crate::fast_decode::decode(bitness, ip, bytes) {
            return Ok(insn);
        }
    }
    let mut d = Decoder::with_ip(bitness, bytes, ip, options);
    let insn = d.decode();
    match d.last_error() {
        DecoderError::None => Ok(insn),
        e => Err(e),
    }
}

/// Fetch and decode the instruction at CS:RIP.
pub(crate) fn fetch_decode<C: Cpu, M: Memory>(
    ctx: &mut Ctx<'_, C, M>,
    fetch: Fetch<'_>,
) -> Result<Decoded, Error> {
    fetch_decode_with(ctx, fetch, DecoderOptions::NONE)
}

/// [`fetch_decode`] with iced-x86 decoder `options` (`DecoderOptions::AMD` for
/// encodings only AMD processors accept).
pub(crate) fn fetch_decode_with<C: Cpu, M: Memory>(
    ctx: &mut Ctx<'_, C, M>,
    fetch: Fetch<'_>,
    options: u32,
) -> Result<Decoded, Error> {
    let cs = ctx.cpu.segment(Sreg::Cs);
    let bitness = ctx.mode.code_bits(&cs);
    let rip = match bitness {
        64 => ctx.cpu.rip(),
        32 => ctx.cpu.rip() & 0xFFFF_FFFF,
        _ => ctx.cpu.rip() & 0xFFFF,
    };
    let mut bytes = [0u8; MAX_INSN_LEN];
    let mut have = 0;
    if let Fetch::Bytes(b) = fetch {
        have = b.len().min(MAX_INSN_LEN);
        bytes[..have].copy_from_slice(&b[..have]);
    }
    loop {
        if have > 0 {
            match try_decode(bitness, rip, &bytes[..have], options) {
                Ok(insn) => return Ok(Decoded { insn, bytes }),
                Err(DecoderError::NoMoreBytes) if have < MAX_INSN_LEN => {}
                Err(_) => return Err(Exception::InvalidOpcode.into()),
            }
        }
        // Fetch up to the end of this page (and at least one byte): a fetch fault on
        // the next page is raised only if the instruction really extends into it.
        let offset = rip.wrapping_add(have as u64);
        let offset = if bitness == 64 {
            offset
        } else {
            offset & 0xFFFF_FFFF
        };
        let linear = ctx.linearize(Sreg::Cs, offset, 1, AccessKind::Fetch)?;
        let to_page_end = 0x1000 - (linear & 0xFFF) as usize;
        let mut n = to_page_end.min(MAX_INSN_LEN - have);
        // Outside 64-bit mode, stop at the CS limit; the next round faults there.
        if ctx.mode != Mode::Long {
            let limit_left = u64::from(ctx.cpu.segment(Sreg::Cs).limit).saturating_sub(offset) + 1;
            n = n.min(limit_left as usize).max(1);
        }
        let p = ctx.translate(linear, n, AccessKind::Fetch, false)?;
        let mut chunk = [0u8; MAX_INSN_LEN];
        ctx.fetch_pieces(&p, &mut chunk[..n])?;
        bytes[have..have + n].copy_from_slice(&chunk[..n]);
        have += n;
    }
}
