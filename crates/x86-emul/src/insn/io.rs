//! IN and OUT (SDM Vol 2A "IN", Vol 2B "OUT"), INS and OUTS with REP (Vol 2A
//! "INS", Vol 2B "OUTS"), and the I/O permission check of SDM Vol 1 19.5 (IOPL,
//! then the TSS I/O permission bitmap).

use iced_x86::{Mnemonic, OpKind, Register};

use super::string::StringOp;
use super::{unsupported, Step};
use crate::access::Ctx;
use crate::cpu::rflags::IOPL;
use crate::cpu::{Cpu, Gpr, Mode, Sreg};
use crate::decode::Decoded;
use crate::error::{Error, Exception};
use crate::flags::mask;
use crate::memory::Memory;
use crate::paging::AccessKind;
use crate::{Limits, Outcome, STRING_IO_CHUNK};

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

/// IN AL/AX/EAX from an immediate port or DX, OUT to one from AL/AX/EAX.
pub(crate) fn execute_in_out<C: Cpu, M: Memory>(ctx: &mut Ctx<'_, C, M>, d: &Decoded) -> Step {
    let insn = &d.insn;
    let inward = insn.mnemonic() == Mnemonic::In;
    let (port_op, data_op) = if inward { (1, 0) } else { (0, 1) };
    if insn.op_count() != 2 || insn.op_kind(data_op) != OpKind::Register {
        return Err(unsupported(d, "IN/OUT form"));
    }
    let size = insn.op_register(data_op).size();
    if !matches!(size, 1 | 2 | 4) {
        return Err(unsupported(d, "IN/OUT size"));
    }
    let port = match insn.op_kind(port_op) {
        OpKind::Immediate8 => u16::from(insn.immediate8()),
        OpKind::Register if insn.op_register(port_op) == Register::DX => {
            ctx.cpu.gpr(Gpr::Rdx) as u16
        }
        _ => return Err(unsupported(d, "IN/OUT port operand")),
    };
    check_io_permission(ctx, port, size)?;
    ctx.may_commit(None)?;
    let bus = Error::Bus {
        gpa: u64::from(port),
    };
    if inward {
        let mut buf = [0u8; 4];
        ctx.mem.pio_read(port, &mut buf[..size]).map_err(|_| bus)?;
        // IN EAX zero-extends into RAX; IN AL/AX keep the rest (SDM Vol 1 3.4.1.1).
        ctx.set_gpr_sized(Gpr::Rax, size, u64::from(u32::from_le_bytes(buf)));
    } else {
        let value = ctx.gpr_sized(Gpr::Rax, size).to_le_bytes();
        ctx.mem.pio_write(port, &value[..size]).map_err(|_| bus)?;
    }
    Ok(Outcome::Retired)
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
    let ins = match insn.mnemonic() {
        Mnemonic::Insb | Mnemonic::Insw | Mnemonic::Insd => true,
        Mnemonic::Outsb | Mnemonic::Outsw | Mnemonic::Outsd => false,
        _ => return Err(unsupported(d, "INS/OUTS")),
    };
    let budget = limits.max_rep_iterations.max(1);
    // Whole runs of elements in one device call each, as long as the device
    // takes them (a DRQ block) and they stay in one page of RAM each.
    let mut done = 0;
    while done < budget {
        let moved = if ins {
            bulk_ins(ctx, &op, port, budget - done)?
        } else {
            bulk_outs(ctx, &op, port, budget - done)?
        };
        if moved == 0 || ctx.gpr_sized(Gpr::Rcx, op.asz) == 0 {
            done += moved;
            break;
        }
        done += moved;
    }
    if done > 0 {
        if ctx.gpr_sized(Gpr::Rcx, op.asz) == 0 {
            return Ok(Outcome::Retired);
        }
        if done >= budget {
            return Ok(Outcome::Yielded);
        }
    }
    let limits = Limits {
        max_rep_iterations: budget - done,
        ..*limits
    };
    let mut buf = [0u8; 4];
    if ins {
        op.run(ctx, &limits, |ctx| {
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
        })
    } else {
        op.run(ctx, &limits, |ctx| {
            let src = ctx.resolve(op.src_seg, op.si(ctx), e, AccessKind::Read)?;
            ctx.read_pieces(&src, &mut buf[..e])?;
            ctx.may_commit(None)?;
            ctx.mem.pio_write(port, &buf[..e]).map_err(|_| Error::Bus {
                gpa: u64::from(port),
            })?;
            op.advance(ctx, true, false);
            Ok(false)
        })
    }
}

/// The elements of a `REP INS` whose destination lies in one page of RAM,
/// moved in one call to the device ([`Memory::pio_read_string`]), as the
/// element-by-element loop would move them: the destination translated and
/// checked first, rDI and rCX advanced by what moved. Returns how many
/// elements moved (0: none could go this way; the loop does them).
fn bulk_ins<C: Cpu, M: Memory>(
    ctx: &mut Ctx<'_, C, M>,
    op: &StringOp,
    port: u16,
    budget: u32,
) -> Result<u32, Error> {
    let e = op.elem;
    let di = op.di(ctx);
    let room = ctx.mem.pio_string_room(port, e, false).min(STRING_IO_CHUNK);
    let k = op.bulk_elements(ctx, Sreg::Es, di, budget, room);
    if k < 2 {
        return Ok(0);
    }
    // A segment limit or page fault inside the run: the loop finds it.
    let Ok(dst) = ctx.resolve(Sreg::Es, di, k * e, AccessKind::Write) else {
        return Ok(0);
    };
    let Some(gpa) = dst.single() else {
        return Ok(0);
    };
    // Only RAM: a device behind the destination sees element-sized writes.
    let mut probe = [0u8; 1];
    if ctx.mem.read_phys(gpa, &mut probe).is_err() {
        return Ok(0);
    }
    ctx.may_commit(Some(&dst))?;
    let mut buf = [0u8; STRING_IO_CHUNK];
    let n = ctx.mem.pio_read_string(port, e, &mut buf[..k * e]);
    let n = n.min(k * e) / e * e;
    if n == 0 {
        return Ok(0);
    }
    ctx.write_pieces(&dst.prefix(n), &buf[..n])?;
    advance_by(ctx, op, false, n);
    Ok((n / e) as u32)
}

/// `REP OUTS` from one page of RAM in one call to the device
/// ([`Memory::pio_write_string`]); see [`bulk_ins`].
fn bulk_outs<C: Cpu, M: Memory>(
    ctx: &mut Ctx<'_, C, M>,
    op: &StringOp,
    port: u16,
    budget: u32,
) -> Result<u32, Error> {
    let e = op.elem;
    let si = op.si(ctx);
    let room = ctx.mem.pio_string_room(port, e, true).min(STRING_IO_CHUNK);
    let k = op.bulk_elements(ctx, op.src_seg, si, budget, room);
    if k < 2 {
        return Ok(0);
    }
    let Ok(src) = ctx.resolve(op.src_seg, si, k * e, AccessKind::Read) else {
        return Ok(0);
    };
    let Some(gpa) = src.single() else {
        return Ok(0);
    };
    let mut buf = [0u8; STRING_IO_CHUNK];
    // Only RAM, which reads without side effects (a device source is read
    // element by element).
    if ctx.mem.read_phys(gpa, &mut buf[..k * e]).is_err() {
        return Ok(0);
    }
    ctx.may_commit(None)?;
    let n = ctx.mem.pio_write_string(port, e, &buf[..k * e]);
    let n = n.min(k * e) / e * e;
    advance_by(ctx, op, true, n);
    Ok((n / e) as u32)
}

/// rSI or rDI forward by `bytes`, rCX down by the elements they hold (DF
/// is clear on the bulk path).
fn advance_by<C: Cpu, M: Memory>(ctx: &mut Ctx<'_, C, M>, op: &StringOp, si: bool, bytes: usize) {
    let r = if si { Gpr::Rsi } else { Gpr::Rdi };
    let m = mask(op.asz);
    let v = ctx.gpr_sized(r, op.asz).wrapping_add(bytes as u64) & m;
    ctx.set_gpr_sized(r, op.asz, v);
    let count = ctx.gpr_sized(Gpr::Rcx, op.asz);
    ctx.set_gpr_sized(Gpr::Rcx, op.asz, count - (bytes / op.elem) as u64);
}

#[cfg(test)]
mod tests {
    use crate::cpu::rflags::IOPL;
    use crate::cpu::Gpr;
    use crate::testutil::*;
    use crate::{Error, Exception, Limits, Outcome};

    #[test]
    fn in_and_out_each_size_and_port_form() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rdx, 0x1F0);
        m.cpu.set(Gpr::Rax, 0xFFFF_FFFF_8765_4321);
        // in (%dx),%ax; out %eax,$0x80; out %al,(%dx)
        assert_eq!(m.run(&[0x66, 0xED]), Ok(Outcome::Retired));
        assert_eq!(m.cpu.get(Gpr::Rax), 0xFFFF_FFFF_8765_0201);
        assert_eq!(m.run(&[0xE7, 0x80]), Ok(Outcome::Retired));
        assert_eq!(m.run(&[0xEE]), Ok(Outcome::Retired));
        assert_eq!(
            m.mem.pio_log,
            [
                (false, 0x1F0, vec![1, 2]),
                (true, 0x80, vec![0x01, 0x02, 0x65, 0x87]),
                (true, 0x1F0, vec![0x01]),
            ]
        );
        assert_eq!(m.cpu.rip, 0x10000 + 5);
        // CPL 3 with IOPL 0 and a TSS whose bitmap starts past its limit:
        // #GP(0), no access.
        m.cpu.cpl = 3;
        m.mem.ram_fill(0x3066, &[0x68, 0]);
        m.mem.pio_log.clear();
        assert_eq!(
            m.run(&[0xE4, 0x42]),
            Err(Error::Exception(Exception::GeneralProtection(0)))
        );
        assert!(m.mem.pio_log.is_empty());
        m.cpu.rflags |= IOPL;
        assert_eq!(m.run(&[0xE4, 0x42]), Ok(Outcome::Retired));
    }

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
    fn rep_insw_in_bulk_fills_ram_as_element_reads_would() {
        // 300 words from 0x20F00: 128 fit before the page boundary (one
        // bulk call), the next 172 in the next page (another).
        let mut m = Machine::long_mode();
        m.mem.pio_bulk = Some(1 << 20);
        m.cpu.set(Gpr::Rdx, 0x1F0);
        m.cpu.set(Gpr::Rdi, 0x2_0F00);
        m.cpu.set(Gpr::Rcx, 300);
        let (r, _) = m.run_to_retire(&[0xF3, 0x66, 0x6D]); // rep insw
        assert_eq!(r, Ok(Outcome::Retired));
        assert_eq!(
            m.mem.pio_bulk_log,
            [(false, 0x1F0, 256), (false, 0x1F0, 344)]
        );
        assert!(m.mem.pio_log.is_empty());
        assert_eq!(m.cpu.get(Gpr::Rdi), 0x2_0F00 + 600);
        assert_eq!(m.cpu.get(Gpr::Rcx), 0);
        // The byte stream is continuous across the two calls.
        assert_eq!(m.mem.ram_get(0x2_0FFE, 4), 0x0201_00FF);
    }

    #[test]
    fn rep_insw_falls_back_to_elements_where_the_device_stops() {
        // The device gives 6 bytes in bulk (a DRQ block's end); the other
        // 2 words come from element reads, with the counts exact.
        let mut m = Machine::long_mode();
        m.mem.pio_bulk = Some(6);
        m.cpu.set(Gpr::Rdx, 0x1F0);
        m.cpu.set(Gpr::Rdi, 0x2_0000);
        m.cpu.set(Gpr::Rcx, 5);
        let (r, _) = m.run_to_retire(&[0xF3, 0x66, 0x6D]);
        assert_eq!(r, Ok(Outcome::Retired));
        assert_eq!(m.mem.pio_bulk_log, [(false, 0x1F0, 6)]);
        assert_eq!(m.mem.pio_log.len(), 2);
        assert_eq!(m.mem.ram_get(0x2_0000, 8), 0x0807_0605_0403_0201);
        assert_eq!(m.mem.ram_get(0x2_0008, 2), 0x0A09);
        assert_eq!(m.cpu.get(Gpr::Rdi), 0x2_000A);
    }

    #[test]
    fn rep_insw_in_bulk_keeps_the_iteration_budget() {
        let mut m = Machine::long_mode();
        m.mem.pio_bulk = Some(1 << 20);
        m.limits = Limits {
            max_rep_iterations: 100,
            ..Limits::default()
        };
        m.cpu.set(Gpr::Rdx, 0x1F0);
        m.cpu.set(Gpr::Rdi, 0x2_0000);
        m.cpu.set(Gpr::Rcx, 256);
        assert_eq!(m.run(&[0xF3, 0x66, 0x6D]), Ok(Outcome::Yielded));
        assert_eq!(m.cpu.get(Gpr::Rcx), 156);
        assert_eq!(m.mem.pio_bulk_log, [(false, 0x1F0, 200)]);
    }

    #[test]
    fn rep_insw_with_df_set_or_into_a_fault_goes_element_by_element() {
        let mut m = Machine::long_mode();
        m.mem.pio_bulk = Some(1 << 20);
        m.cpu.set(Gpr::Rdx, 0x1F0);
        m.cpu.set(Gpr::Rdi, 0x2_0010);
        m.cpu.set(Gpr::Rcx, 4);
        m.cpu.rflags |= crate::cpu::rflags::DF;
        let (r, _) = m.run_to_retire(&[0xF3, 0x66, 0x6D]);
        assert_eq!(r, Ok(Outcome::Retired));
        assert!(m.mem.pio_bulk_log.is_empty());
        assert_eq!(m.mem.pio_log.len(), 4);
        assert_eq!(m.cpu.get(Gpr::Rdi), 0x2_0008);
    }

    #[test]
    fn rep_outsw_in_bulk_sends_the_ram_bytes_in_order() {
        let mut m = Machine::long_mode();
        m.mem.pio_bulk = Some(1 << 20);
        m.mem.ram_fill(0x2_0000, &[1, 2, 3, 4, 5, 6]);
        m.cpu.set(Gpr::Rdx, 0x1F0);
        m.cpu.set(Gpr::Rsi, 0x2_0000);
        m.cpu.set(Gpr::Rcx, 3);
        let (r, _) = m.run_to_retire(&[0xF3, 0x66, 0x6F]); // rep outsw
        assert_eq!(r, Ok(Outcome::Retired));
        assert_eq!(m.mem.pio_bulk_log, [(true, 0x1F0, 6)]);
        assert_eq!(m.mem.pio_log, [(true, 0x1F0, vec![1, 2, 3, 4, 5, 6])]);
        assert_eq!(m.cpu.get(Gpr::Rsi), 0x2_0006);
        assert_eq!(m.cpu.get(Gpr::Rcx), 0);
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
