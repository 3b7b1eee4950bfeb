//! INS and OUTS with REP (SDM Vol 2A "INS", Vol 2B "OUTS"), and the I/O permission
//! check of SDM Vol 1 19.5 (IOPL, then the TSS I/O permission bitmap).

use iced_x86::Mnemonic;

use super::string::StringOp;
use super::{unsupported, Step};
use crate::access::Ctx;
use crate::cpu::rflags::IOPL;
use crate::cpu::{Cpu, Gpr, Mode, Sreg};
use crate::decode::Decoded;
use crate::error::{Error, Exception};
use crate::memory::Memory;
use crate::paging::AccessKind;
use crate::Limits;

/// Read 2 bytes of the TSS at `offset` as an implicit supervisor access.
fn tss_read_u16<C: Cpu, M: Memory>(ctx: &mut Ctx<'_, C, M>, offset: u64) -> Result<u64, Error> {
    let linear = ctx.linearize(Sreg::Tr, offset, 2, AccessKind::Read)?;
    let p = ctx.translate(linear, 2, AccessKind::Read, true)?;
    ctx.read_value(&p)
}

/// #GP(0) unless the current privilege may access `size` ports from `port`.
fn check_io_permission<C: Cpu, M: Memory>(
    ctx: &mut Ctx<'_, C, M>,
    port: u16,
    size: usize,
) -> Result<(), Error> {
    let iopl = ((ctx.cpu.rflags() & IOPL) >> 12) as u8;
    match ctx.mode {
        Mode::Real => return Ok(()),
        Mode::Virtual8086 => {}
        _ if ctx.cpl <= iopl => return Ok(()),
        _ => {}
    }
    let gp = Error::Exception(Exception::GeneralProtection(0));
    let tr = ctx.cpu.segment(Sreg::Tr);
    // Only a 32/64-bit TSS (available 9 or busy 0xB) has a bitmap.
    if !tr.present() || !matches!(tr.seg_type(), 0x9 | 0xB) || tr.limit < 0x67 {
        return Err(gp);
    }
    let map_base = tss_read_u16(ctx, 0x66)?;
    let at = map_base + u64::from(port / 8);
    if at + 1 > u64::from(tr.limit) {
        return Err(gp);
    }
    let bits = tss_read_u16(ctx, at).map_err(|_| gp)?;
    let wanted = ((1u64 << size) - 1) << (port & 7);
    if bits & wanted != 0 {
        return Err(gp);
    }
    Ok(())
}

pub(crate) fn execute<C: Cpu, M: Memory>(
    ctx: &mut Ctx<'_, C, M>,
    d: &Decoded,
    limits: &Limits,
) -> Step {
    let insn = &d.insn;
    let Some(op) = StringOp::of(insn, false) else {
        return Err(unsupported(d, "INS/OUTS form"));
    };
    let e = op.elem;
    let port = ctx.cpu.gpr(Gpr::Rdx) as u16;
    check_io_permission(ctx, port, e)?;
    let mut buf = [0u8; 4];
    match insn.mnemonic() {
        Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd => op.run(ctx, limits, |ctx| {
            // The destination is checked before the port is read.
            let dst = ctx.resolve(Sreg::Es, op.di(ctx), e, AccessKind::Write)?;
            ctx.may_commit(Some(&dst))?;
            ctx.mem
                .pio_read(port, &mut buf[..e])
                .map_err(|_| Error::Bus {
                    gpa: u64::from(port),
                })?;
            ctx.write_pieces(&dst, &buf[..e])?;
            op.advance(ctx, false, true);
            Ok(false)
        }),
        Mnemonic::Outsb | Mnemonic::Outsw | Mnemonic::Outsd => op.run(ctx, limits, |ctx| {
            let src = ctx.resolve(op.src_seg, op.si(ctx), e, AccessKind::Read)?;
            ctx.read_pieces(&src, &mut buf[..e])?;
            ctx.may_commit(None)?;
            ctx.mem.pio_write(port, &buf[..e]).map_err(|_| Error::Bus {
                gpa: u64::from(port),
            })?;
            op.advance(ctx, true, false);
            Ok(false)
        }),
        _ => Err(unsupported(d, "INS/OUTS")),
    }
}

#[cfg(test)]
mod tests {
    use crate::cpu::rflags::IOPL;
    use crate::cpu::Gpr;
    use crate::testutil::*;
    use crate::{Error, Exception, Limits, Outcome};

    #[test]
    fn rep_insw_and_outsb() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rdx, 0x1F0);
        m.cpu.set(Gpr::Rdi, 0x20000);
        m.cpu.set(Gpr::Rcx, 3);
        m.run(&[0xF3, 0x66, 0x6D]).unwrap(); // rep insw
        assert_eq!(m.mem.ram_get(0x20000, 6), 0x0605_0403_0201);
        assert_eq!(m.cpu.get(Gpr::Rdi), 0x20006);
        m.cpu.set(Gpr::Rsi, 0x20000);
        m.cpu.set(Gpr::Rcx, 2);
        m.cpu.set(Gpr::Rdx, 0x3F8);
        m.run(&[0xF3, 0x6E]).unwrap(); // rep outsb
        assert_eq!(
            m.mem.pio_log[3..],
            [(true, 0x3F8, vec![1]), (true, 0x3F8, vec![2])]
        );
    }

    #[test]
    fn rep_outsd_from_mmio_yields() {
        let mut m = Machine::long_mode();
        m.limits = Limits {
            max_rep_iterations: 2,
            ..Limits::default()
        };
        m.cpu.set(Gpr::Rsi, MMIO_BASE);
        m.cpu.set(Gpr::Rcx, 5);
        let (r, calls) = m.run_to_retire(&[0xF3, 0x6F]);
        assert_eq!((r, calls), (Ok(Outcome::Retired), 3));
        assert_eq!(m.mem.pio_log.len(), 5);
    }

    #[test]
    fn io_bitmap_is_consulted_when_cpl_above_iopl() {
        let mut m = Machine::long_mode();
        m.cpu.cpl = 3;
        // User-accessible identity mapping already (PML4E/PDPTE have U/S set).
        // TSS at 0x3000, limit covers a bitmap at +0x68 for ports 0..0x3FF.
        m.cpu.segs[crate::cpu::Sreg::Tr as usize].limit = 0x68 + 0x80;
        m.mem.ram_fill(0x3066, &[0x68, 0x00]);
        m.mem.ram_fill(0x3068 + 0x3F8 / 8, &[0x01]); // port 0x3F8 denied, 0x3F9.. allowed
        m.cpu.set(Gpr::Rsi, 0x20000);
        m.cpu.set(Gpr::Rdx, 0x3F8);
        assert_eq!(
            m.run(&[0x6E]),
            Err(Error::Exception(Exception::GeneralProtection(0)))
        );
        m.cpu.set(Gpr::Rdx, 0x3F9);
        assert_eq!(m.run(&[0x6E]), Ok(Outcome::Retired), "{:?}", m.mem.calls);
        // A word at 0x3F7 touches 0x3F8.
        m.cpu.set(Gpr::Rdx, 0x3F7);
        assert!(m.run(&[0x66, 0x6F]).is_err());
        // Beyond the TSS limit: denied.
        m.cpu.set(Gpr::Rdx, 0x800);
        assert!(m.run(&[0x6E]).is_err());
        // IOPL 3 allows everything.
        m.cpu.rflags |= IOPL;
        m.cpu.set(Gpr::Rdx, 0x3F8);
        assert_eq!(m.run(&[0x6E]), Ok(Outcome::Retired));
    }
}
