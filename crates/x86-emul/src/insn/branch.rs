//! Jcc, short and near (SDM Vol 2A "Jcc"): the condition from RFLAGS, the
//! target checked as the processor checks it (canonical in 64-bit mode, within
//! CS's limit elsewhere) before RIP moves.

use iced_x86::{ConditionCode, OpKind};

use super::{unsupported, Step};
use crate::access::Ctx;
use crate::cpu::rflags::{CF, OF, PF, RF, SF, ZF};
use crate::cpu::{Cpu, Mode, Sreg};
use crate::decode::Decoded;
use crate::error::{Exception, Outcome};
use crate::memory::Memory;
use crate::segmentation::is_canonical;

/// Whether condition `cc` holds for `rflags`.
pub(crate) fn holds(cc: ConditionCode, rflags: u64) -> bool {
    let f = |bit: u64| rflags & bit != 0;
    match cc {
        ConditionCode::o => f(OF),
        ConditionCode::no => !f(OF),
        ConditionCode::b => f(CF),
        ConditionCode::ae => !f(CF),
        ConditionCode::e => f(ZF),
        ConditionCode::ne => !f(ZF),
        ConditionCode::be => f(CF) || f(ZF),
        ConditionCode::a => !f(CF) && !f(ZF),
        ConditionCode::s => f(SF),
        ConditionCode::ns => !f(SF),
        ConditionCode::p => f(PF),
        ConditionCode::np => !f(PF),
        ConditionCode::l => f(SF) != f(OF),
        ConditionCode::ge => f(SF) == f(OF),
        ConditionCode::le => f(ZF) || f(SF) != f(OF),
        ConditionCode::g => !f(ZF) && f(SF) == f(OF),
        ConditionCode::None => true,
    }
}

/// Carries out a Jcc: RIP moves to the target or past the instruction.
pub(crate) fn jcc<C: Cpu, M: Memory>(ctx: &mut Ctx<'_, C, M>, d: &Decoded) -> Step {
    let insn = &d.insn;
    let next = if holds(insn.condition_code(), ctx.cpu.rflags()) {
        let (target, width) = match insn.op0_kind() {
            OpKind::NearBranch64 => (insn.near_branch64(), 64),
            OpKind::NearBranch32 => (u64::from(insn.near_branch32()), 32),
            OpKind::NearBranch16 => (u64::from(insn.near_branch16()), 16),
            _ => return Err(unsupported(d, "Jcc form")),
        };
        let bad = if width == 64 {
            !is_canonical(target, ctx.cr.cr4 & (1 << 12) != 0)
        } else {
            ctx.mode != Mode::Real && target > u64::from(ctx.cpu.segment(Sreg::Cs).limit)
        };
        if bad {
            return Err(Exception::GeneralProtection(0).into());
        }
        target
    } else {
        let ip_mask = match insn.code_size() {
            iced_x86::CodeSize::Code16 => 0xFFFF,
            iced_x86::CodeSize::Code32 => 0xFFFF_FFFF,
            _ => u64::MAX,
        };
        insn.next_ip() & ip_mask
    };
    ctx.cpu.set_rip(next);
    let f = ctx.cpu.rflags();
    ctx.cpu.set_rflags(f & !RF);
    Ok(Outcome::Retired)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::Gpr;
    use crate::testutil::*;

    #[test]
    fn conditions_follow_the_sdm_table() {
        assert!(holds(ConditionCode::e, ZF));
        assert!(!holds(ConditionCode::ne, ZF));
        assert!(holds(ConditionCode::l, SF));
        assert!(!holds(ConditionCode::l, SF | OF));
        assert!(holds(ConditionCode::le, ZF | SF | OF));
        assert!(holds(ConditionCode::a, 0));
        assert!(!holds(ConditionCode::a, CF));
        assert!(holds(ConditionCode::g, SF | OF));
    }

    #[test]
    fn taken_and_not_taken_short_and_near() {
        let mut m = Machine::long_mode();
        m.cpu.rflags = 0x2 | ZF;
        // je +0x10: taken
        m.run(&[0x74, 0x10]).unwrap();
        assert_eq!(m.cpu.rip, 0x10012);
        // jne -0x20 (near): not taken
        m.run(&[0x0F, 0x85, 0xE0, 0xFF, 0xFF, 0xFF]).unwrap();
        assert_eq!(m.cpu.rip, 0x10018);
        // 32-bit code: a taken branch past CS's limit is #GP(0), RIP stays.
        let mut m = Machine::protected32();
        m.cpu.seg(Sreg::Cs).limit = 0x1_0010;
        m.cpu.rflags = 0x2 | ZF;
        assert_eq!(
            m.run(&[0x74, 0x10]),
            Err(Exception::GeneralProtection(0).into())
        );
        assert_eq!(m.cpu.rip, 0x10000);
        m.cpu.set(Gpr::Rax, 0);
        assert_eq!(m.run(&[0x74, 0x08]), Ok(Outcome::Retired));
        assert_eq!(m.cpu.rip, 0x1000A);
    }
}
