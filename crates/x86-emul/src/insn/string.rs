//! MOVS, STOS, LODS, CMPS, SCAS with REP/REPE/REPNE and DF (SDM Vol 2B "REP/REPE/REPZ/
//! REPNE/REPNZ"), and the iteration loop INS/OUTS share.
//!
//! A REP instruction runs at most `Limits::max_rep_iterations` iterations per call.
//! Each iteration updates rSI/rDI/rCX only once it has completed, so a fault or a yield
//! leaves the registers describing exactly the iterations done, with RIP unchanged:
//! re-executing the instruction resumes it (SDM Vol 3A 6.8, "interrupted" string ops).

use iced_x86::{Instruction, Mnemonic, OpKind};

use super::{unsupported, Step};
use crate::access::Ctx;
use crate::cpu::rflags::{DF, STATUS, ZF};
use crate::cpu::{Cpu, Gpr, Sreg};
use crate::decode::Decoded;
use crate::error::{Error, Outcome};
use crate::flags::{self, mask, merge};
use crate::memory::Memory;
use crate::operand::sreg_of;
use crate::paging::AccessKind;
use crate::Limits;

/// Whether `insn` is one of the string instructions (it has an rSI or rDI operand).
pub(crate) fn is_string(insn: &Instruction) -> bool {
    (0..insn.op_count()).any(|i| string_addr_size(insn.op_kind(i)).is_some())
}

fn string_addr_size(k: OpKind) -> Option<usize> {
    Some(match k {
        OpKind::MemorySegSI | OpKind::MemorySegDI | OpKind::MemoryESDI => 2,
        OpKind::MemorySegESI | OpKind::MemorySegEDI | OpKind::MemoryESEDI => 4,
        OpKind::MemorySegRSI | OpKind::MemorySegRDI | OpKind::MemoryESRDI => 8,
        _ => return None,
    })
}

/// Repeat prefix as it applies to this instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rep {
    None,
    /// REP, or REPE/REPNE on an instruction that does not test ZF.
    Always,
    WhileEqual,
    WhileNotEqual,
}

/// The shape of one string instruction.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StringOp {
    /// Element size in bytes.
    pub elem: usize,
    /// Address size in bytes: rSI, rDI and rCX are used at this width.
    pub asz: usize,
    pub rep: Rep,
    /// The segment of the rSI operand (DS unless overridden).
    pub src_seg: Sreg,
}

impl StringOp {
    pub fn of(insn: &Instruction, tests_zf: bool) -> Option<StringOp> {
        let asz = (0..insn.op_count()).find_map(|i| string_addr_size(insn.op_kind(i)))?;
        let elem = insn.memory_size().size();
        if !matches!(elem, 1 | 2 | 4 | 8) {
            return None;
        }
        let rep = match (insn.has_repe_prefix(), insn.has_repne_prefix(), tests_zf) {
            (false, false, _) => Rep::None,
            (_, _, false) => Rep::Always,
            (true, _, true) => Rep::WhileEqual,
            (false, true, true) => Rep::WhileNotEqual,
        };
        let src_seg = sreg_of(insn.memory_segment()).unwrap_or(Sreg::Ds);
        Some(StringOp {
            elem,
            asz,
            rep,
            src_seg,
        })
    }

    fn step<C: Cpu, M: Memory>(&self, ctx: &Ctx<'_, C, M>) -> u64 {
        if ctx.cpu.rflags() & DF != 0 {
            (self.elem as u64).wrapping_neg()
        } else {
            self.elem as u64
        }
    }

    pub fn si<C: Cpu, M: Memory>(&self, ctx: &Ctx<'_, C, M>) -> u64 {
        ctx.gpr_sized(Gpr::Rsi, self.asz)
    }

    pub fn di<C: Cpu, M: Memory>(&self, ctx: &Ctx<'_, C, M>) -> u64 {
        ctx.gpr_sized(Gpr::Rdi, self.asz)
    }

    /// Move rSI and/or rDI past the element just done.
    pub fn advance<C: Cpu, M: Memory>(&self, ctx: &mut Ctx<'_, C, M>, si: bool, di: bool) {
        let step = self.step(ctx);
        for (yes, r) in [(si, Gpr::Rsi), (di, Gpr::Rdi)] {
            if yes {
                let v = ctx.gpr_sized(r, self.asz).wrapping_add(step) & mask(self.asz);
                ctx.set_gpr_sized(r, self.asz, v);
            }
        }
    }

    /// How many elements from `seg:offset` a bulk pass may move in one go:
    /// under REP with DF clear, at most `rCX`, `budget`, `max_bytes`, the
    /// elements before the pointer wraps at the address size, and those
    /// that lie wholly in the 4 KiB page of the first (0 if that element
    /// cannot be linearized; the element-by-element path then raises the
    /// fault at the right iteration).
    pub fn bulk_elements<C: Cpu, M: Memory>(
        &self,
        ctx: &Ctx<'_, C, M>,
        seg: Sreg,
        offset: u64,
        budget: u32,
        max_bytes: usize,
    ) -> usize {
        if self.rep != Rep::Always || ctx.cpu.rflags() & DF != 0 {
            return 0;
        }
        let Ok(linear) = ctx.linearize(seg, offset, self.elem, AccessKind::Read) else {
            return 0;
        };
        let in_page = (0x1000 - (linear & 0xFFF)) / self.elem as u64;
        let before_wrap = (mask(self.asz) - offset) / self.elem as u64 + 1;
        let count = ctx.gpr_sized(Gpr::Rcx, self.asz);
        let k = count
            .min(u64::from(budget))
            .min(in_page)
            .min(before_wrap)
            .min((max_bytes / self.elem) as u64);
        k as usize
    }

    /// Run `body` once, or under a repeat prefix until rCX is 0, the ZF condition
    /// ends it, or the iteration budget is spent. `body` does one element, advances
    /// the pointers it uses and returns the ZF it produced (for REPE/REPNE).
    pub fn run<C: Cpu, M: Memory>(
        &self,
        ctx: &mut Ctx<'_, C, M>,
        limits: &Limits,
        mut body: impl FnMut(&mut Ctx<'_, C, M>) -> Result<bool, Error>,
    ) -> Step {
        if self.rep == Rep::None {
            body(ctx)?;
            return Ok(Outcome::Retired);
        }
        let budget = limits.max_rep_iterations.max(1);
        let mut done = 0;
        loop {
            let count = ctx.gpr_sized(Gpr::Rcx, self.asz);
            if count == 0 {
                return Ok(Outcome::Retired);
            }
            if done == budget {
                return Ok(Outcome::Yielded);
            }
            let zf = body(ctx)?;
            ctx.set_gpr_sized(Gpr::Rcx, self.asz, count - 1);
            done += 1;
            let stop = match self.rep {
                Rep::WhileEqual => !zf,
                Rep::WhileNotEqual => zf,
                _ => false,
            };
            if stop {
                return Ok(Outcome::Retired);
            }
        }
    }
}

/// Read one element at `seg:offset`.
fn load<C: Cpu, M: Memory>(
    ctx: &mut Ctx<'_, C, M>,
    seg: Sreg,
    offset: u64,
    size: usize,
) -> Result<u64, Error> {
    ctx.read_mem(seg, offset, size)
}

pub(crate) fn execute<C: Cpu, M: Memory>(
    ctx: &mut Ctx<'_, C, M>,
    d: &Decoded,
    limits: &Limits,
) -> Step {
    let insn = &d.insn;
    let m = insn.mnemonic();
    let tests_zf = matches!(
        m,
        Mnemonic::Cmpsb | Mnemonic::Cmpsw | Mnemonic::Cmpsd | Mnemonic::Cmpsq
    ) || matches!(
        m,
        Mnemonic::Scasb | Mnemonic::Scasw | Mnemonic::Scasd | Mnemonic::Scasq
    );
    let Some(op) = StringOp::of(insn, tests_zf) else {
        return Err(unsupported(d, "string instruction form"));
    };
    let e = op.elem;
    let acc = Gpr::Rax;
    match m {
        Mnemonic::Movsb | Mnemonic::Movsw | Mnemonic::Movsd | Mnemonic::Movsq => {
            op.run(ctx, limits, |ctx| {
                let (si, di) = (op.si(ctx), op.di(ctx));
                // Both ends are translated before either is touched.
                let src = ctx.resolve(op.src_seg, si, e, AccessKind::Read)?;
                let dst = ctx.resolve(Sreg::Es, di, e, AccessKind::Write)?;
                let v = ctx.read_value(&src)?;
                ctx.write_value(&dst, v)?;
                op.advance(ctx, true, true);
                Ok(false)
            })
        }
        Mnemonic::Stosb | Mnemonic::Stosw | Mnemonic::Stosd | Mnemonic::Stosq => {
            op.run(ctx, limits, |ctx| {
                let v = ctx.gpr_sized(acc, e);
                ctx.write_mem(Sreg::Es, op.di(ctx), e, v)?;
                op.advance(ctx, false, true);
                Ok(false)
            })
        }
        Mnemonic::Lodsb | Mnemonic::Lodsw | Mnemonic::Lodsd | Mnemonic::Lodsq => {
            op.run(ctx, limits, |ctx| {
                let v = load(ctx, op.src_seg, op.si(ctx), e)?;
                ctx.set_gpr_sized(acc, e, v);
                op.advance(ctx, true, false);
                Ok(false)
            })
        }
        Mnemonic::Cmpsb | Mnemonic::Cmpsw | Mnemonic::Cmpsd | Mnemonic::Cmpsq => {
            op.run(ctx, limits, |ctx| {
                let (si, di) = (op.si(ctx), op.di(ctx));
                let src = ctx.resolve(op.src_seg, si, e, AccessKind::Read)?;
                let dst = ctx.resolve(Sreg::Es, di, e, AccessKind::Read)?;
                let a = ctx.read_value(&src)?;
                let b = ctx.read_value(&dst)?;
                let r = flags::sub(a, b, false, e);
                let f = ctx.cpu.rflags();
                ctx.cpu.set_rflags(merge(f, r.flags, STATUS));
                op.advance(ctx, true, true);
                Ok(r.flags & ZF != 0)
            })
        }
        Mnemonic::Scasb | Mnemonic::Scasw | Mnemonic::Scasd | Mnemonic::Scasq => {
            op.run(ctx, limits, |ctx| {
                let b = load(ctx, Sreg::Es, op.di(ctx), e)?;
                let r = flags::sub(ctx.gpr_sized(acc, e), b, false, e);
                let f = ctx.cpu.rflags();
                ctx.cpu.set_rflags(merge(f, r.flags, STATUS));
                op.advance(ctx, false, true);
                Ok(r.flags & ZF != 0)
            })
        }
        _ => Err(unsupported(d, "string instruction")),
    }
}

#[cfg(test)]
mod tests {
    use crate::cpu::rflags::{DF, ZF};
    use crate::cpu::{Gpr, Sreg};
    use crate::testutil::*;
    use crate::{Error, Exception, Limits, Outcome};

    #[test]
    fn rep_movsb_ram_to_mmio_and_back() {
        let mut m = Machine::long_mode();
        m.mem.ram_fill(0x20000, b"hello, device");
        m.cpu.set(Gpr::Rsi, 0x20000);
        m.cpu.set(Gpr::Rdi, MMIO_BASE);
        m.cpu.set(Gpr::Rcx, 13);
        assert_eq!(m.run(&[0xF3, 0xA4]), Ok(Outcome::Retired));
        assert_eq!(&m.mem.mmio[..13], b"hello, device");
        assert_eq!(
            (
                m.cpu.get(Gpr::Rsi),
                m.cpu.get(Gpr::Rdi),
                m.cpu.get(Gpr::Rcx)
            ),
            (0x2000D, MMIO_BASE + 13, 0)
        );
        assert_eq!(m.cpu.rip, 0x10002);
    }

    #[test]
    fn rep_with_zero_count_does_nothing() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rdi, MMIO_BASE);
        assert_eq!(m.run(&[0xF3, 0x48, 0xAB]), Ok(Outcome::Retired)); // rep stosq
        assert!(m.mem.mmio_log.is_empty());
        assert_eq!(m.cpu.get(Gpr::Rdi), MMIO_BASE);
    }

    #[test]
    fn rep_stosd_backwards_across_pages_yields_and_resumes() {
        let mut m = Machine::long_mode();
        m.limits = Limits {
            max_rep_iterations: 100,
            ..Limits::default()
        };
        m.cpu.rflags |= DF;
        m.cpu.set(Gpr::Rax, 0xA5A5_A5A5);
        m.cpu.set(Gpr::Rdi, 0x2FFFC);
        m.cpu.set(Gpr::Rcx, 3000); // 12000 bytes down from 0x30000: three pages
        let (r, calls) = m.run_to_retire(&[0xF3, 0xAB]);
        assert_eq!(r, Ok(Outcome::Retired));
        assert_eq!(calls, 30);
        assert_eq!(m.cpu.get(Gpr::Rcx), 0);
        assert_eq!(m.cpu.get(Gpr::Rdi), 0x2FFFC - 12000);
        assert_eq!(m.mem.ram_get(0x2FFFC - 11996, 4), 0xA5A5_A5A5);
        assert_eq!(m.mem.ram_get(0x2FFFC - 12000, 4), 0);
        assert_eq!(m.cpu.rip, 0x10002);
    }

    #[test]
    fn rep_yield_leaves_rip_and_updates_registers() {
        let mut m = Machine::long_mode();
        m.limits = Limits {
            max_rep_iterations: 4,
            ..Limits::default()
        };
        m.cpu.set(Gpr::Rsi, MMIO_BASE);
        m.cpu.set(Gpr::Rdi, 0x20000);
        m.cpu.set(Gpr::Rcx, 10);
        assert_eq!(m.run(&[0xF3, 0x66, 0xA5]), Ok(Outcome::Yielded)); // rep movsw
        assert_eq!(
            (m.cpu.get(Gpr::Rcx), m.cpu.get(Gpr::Rsi), m.cpu.rip),
            (6, MMIO_BASE + 8, 0x10000)
        );
    }

    #[test]
    fn fault_mid_rep_keeps_completed_iterations() {
        let mut m = Machine::long_mode();
        m.map_low_2m_pages_except(1); // 0x20_0000..0x40_0000 not present
        m.cpu.set(Gpr::Rdi, 0x1F_FFFE);
        m.cpu.set(Gpr::Rcx, 4);
        let r = m.run(&[0xF3, 0xAA]); // rep stosb
        assert_eq!(
            r,
            Err(Error::Exception(Exception::PageFault {
                error_code: 2,
                linear: 0x20_0000
            }))
        );
        assert_eq!(
            (m.cpu.get(Gpr::Rcx), m.cpu.get(Gpr::Rdi), m.cpu.rip),
            (2, 0x20_0000, 0x10000)
        );
    }

    #[test]
    fn repe_cmpsb_stops_at_difference_and_repne_scasb_at_match() {
        let mut m = Machine::long_mode();
        m.mem.ram_fill(0x20000, b"abcdef");
        m.mem.ram_fill(0x21000, b"abcxef");
        m.cpu.set(Gpr::Rsi, 0x20000);
        m.cpu.set(Gpr::Rdi, 0x21000);
        m.cpu.set(Gpr::Rcx, 6);
        m.run(&[0xF3, 0xA6]).unwrap();
        assert_eq!((m.cpu.get(Gpr::Rcx), m.cpu.get(Gpr::Rsi)), (2, 0x20004));
        assert_eq!(m.cpu.rflags & ZF, 0);
        m.cpu.set(Gpr::Rax, u64::from(b'e'));
        m.cpu.set(Gpr::Rdi, 0x21000);
        m.cpu.set(Gpr::Rcx, 100);
        m.run(&[0xF2, 0xAE]).unwrap();
        assert_eq!((m.cpu.get(Gpr::Rcx), m.cpu.get(Gpr::Rdi)), (95, 0x21005));
        assert_eq!(m.cpu.rflags & ZF, ZF);
    }

    #[test]
    fn sixteen_bit_address_size_wraps_si_di_and_uses_cx() {
        let mut m = Machine::real_mode();
        m.cpu.set(Gpr::Rsi, 0xFFFF_FFFF);
        m.cpu.set(Gpr::Rdi, 0x1_0000);
        m.cpu.set(Gpr::Rcx, 0x1_0002);
        m.mem.ram_fill(0x1FFFF, &[0x11]);
        m.mem.ram_fill(0x10000, &[0x22]);
        m.run(&[0xF3, 0xA4]).unwrap(); // rep movsb, ds:si -> es:di
        assert_eq!(m.mem.ram_get(0x20000, 2), 0x2211);
        assert_eq!(
            (
                m.cpu.get(Gpr::Rsi),
                m.cpu.get(Gpr::Rdi),
                m.cpu.get(Gpr::Rcx)
            ),
            (0xFFFF_0001, 0x1_0002, 0x1_0000)
        );
    }

    #[test]
    fn lods_with_segment_override_and_stos_ignores_it() {
        let mut m = Machine::protected32();
        m.cpu.seg(Sreg::Fs).base = 0x5000;
        m.mem.ram_fill(0x5010, &[0x78, 0x56, 0x34, 0x12]);
        m.cpu.set(Gpr::Rsi, 0x10);
        m.run(&[0x64, 0xAD]).unwrap(); // lodsd fs:[esi]
        assert_eq!(m.cpu.get(Gpr::Rax), 0x1234_5678);
        assert_eq!(m.cpu.get(Gpr::Rsi), 0x14);
    }
}
