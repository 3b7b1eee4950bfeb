//! Port I/O run ahead: after a port I/O exit (or an RDTSC's), the instructions
//! that follow are carried out in the same exit when they are a little register-only set-up
//! ending in another IN or OUT, so a pair of port accesses costs one exit.
//!
//! Why: an OS reaches many devices through pairs of port accesses a few
//! instructions apart. Linux reads PCI configuration space through ports
//! CF8h and CFCh (`outl` the address, `mov $0xcfc,%edx`, `inl`; PCI Local Bus
//! 3.0 3.2.2.3.2), half of a Debian boot's exits, and reads the PIT's channel 2
//! as two `inb $0x42` in a row during its TSC calibration (8254 datasheet,
//! "Read Operations"). Each exit costs a world switch and, under an emulator,
//! a flushed TLB; the instructions in between cost the emulator less.
//!
//! What is run: only what touches no memory (MOV, LEA, AND, OR, ADD, SUB, XOR,
//! CMP, TEST, SHL, SHR and SAR whose operands are general-purpose registers or
//! immediates, and Jcc, which a non-canonical target makes fault), at most
//! [`MAX_SET_UP`] of them, and only when the next IN or OUT (not INS or OUTS)
//! follows within them. With Jcc, a polling loop (`in; test; jz`) and Linux's
//! PIT calibration loop (`rdtsc`, seven register instructions and a branch,
//! `in $0x42` twice) fold too. In 64-bit mode only, at a privilege that IOPL
//! allows port access (so no TSS bitmap is read), and never while RFLAGS.TF
//! single-steps; the caller also keeps out guests with debug breakpoints (DR7)
//! and a platform with something for its VM loop to do first. A guest that
//! could tell the difference would have to time the instructions.
//!
//! Anything else (an instruction outside that list, one that cannot be
//! fetched, a page fault on the fetch) leaves the vCPU as it was at the
//! attempt's start: the guest runs those instructions itself.

use iced_x86::{Mnemonic, OpKind};

use crate::access::Ctx;
use crate::cpu::{rflags, Cpu, Mode, Sreg};
use crate::decode::{fetch_decode, Decoded, Fetch};
use crate::memory::Memory;
use crate::paging::AccessKind;
use crate::{insn, Limits, Registers};

/// Register-only instructions run before a port access at most: PCI
/// configuration's `and $3,%ecx; mov %r8d,%eax; lea 0xcfc(%rcx),%edx` is
/// three, Linux's PIT calibration loop from its RDTSC to its next `in` seven.
pub const MAX_SET_UP: usize = 8;
/// Port accesses one call carries out at most (so a guest's run of port
/// accesses still exits every few, and a call's work is bounded).
pub const MAX_PORT_ACCESSES: u32 = 4;

/// The port accesses one call made, in order.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortAccesses {
    pub count: u32,
    pub ports: [u16; MAX_PORT_ACCESSES as usize],
}

impl PortAccesses {
    /// The ports accessed, in order.
    pub fn ports(&self) -> &[u16] {
        &self.ports[..self.count as usize]
    }
}

/// Carries out, at CS:RIP, register-only set-up instructions and the IN or
/// OUT they lead to, up to [`MAX_PORT_ACCESSES`] times. Returns the port
/// accesses made; none leaves the vCPU unchanged.
pub fn port_io_ahead<C: Cpu, M: Memory>(cpu: &mut C, mem: &mut M) -> PortAccesses {
    let mut done = PortAccesses::default();
    let mut code = CodeWindow::new();
    while done.count < MAX_PORT_ACCESSES {
        let saved = Registers::save(cpu);
        let Some(port) = to_next_port_access(cpu, mem, &mut code) else {
            saved.restore(cpu);
            break;
        };
        done.ports[done.count as usize] = port;
        done.count += 1;
    }
    done
}

/// One attempt: the port once an IN or OUT has been carried out (its
/// effects stand, and so do those of the set-up before it); `None` when
/// the vCPU is to be restored.
fn to_next_port_access<C: Cpu, M: Memory>(
    cpu: &mut C,
    mem: &mut M,
    code: &mut CodeWindow,
) -> Option<u16> {
    let mut ctx = Ctx::new(cpu, mem);
    let iopl = ((ctx.cpu.rflags() & rflags::IOPL) >> 12) as u8;
    if ctx.mode != Mode::Long || ctx.cpu.rflags() & rflags::TF != 0 || ctx.cpl > iopl {
        return None;
    }
    let limits = Limits::default();
    for _ in 0..=MAX_SET_UP {
        let d = code.fetch_decode(&mut ctx)?;
        let insn = &d.insn;
        match insn.mnemonic() {
            Mnemonic::In | Mnemonic::Out => {
                // The port before the access: IN/OUT with DX reads it first.
                let port = match insn.op_kind(if insn.mnemonic() == Mnemonic::In {
                    1
                } else {
                    0
                }) {
                    OpKind::Immediate8 => u16::from(insn.immediate8()),
                    _ => ctx.cpu.gpr(crate::cpu::Gpr::Rdx) as u16,
                };
                return insn::execute(&mut ctx, &d, &limits).ok().map(|_| port);
            }
            _ if insn.is_jcc_short_or_near() && insn.op0_kind() == OpKind::NearBranch64 => {
                insn::execute(&mut ctx, &d, &limits).ok()?;
            }
            Mnemonic::Mov
            | Mnemonic::Lea
            | Mnemonic::And
            | Mnemonic::Or
            | Mnemonic::Add
            | Mnemonic::Sub
            | Mnemonic::Xor
            | Mnemonic::Cmp
            | Mnemonic::Test
            | Mnemonic::Shl
            | Mnemonic::Sal
            | Mnemonic::Shr
            | Mnemonic::Sar
                if register_only(insn) =>
            {
                insn::execute(&mut ctx, &d, &limits).ok()?;
            }
            _ => return None,
        }
    }
    None
}

/// Code bytes fetched once for a call: up to [`CodeWindow::SIZE`] bytes
/// from where the first instruction starts, within its page, translated
/// and checked as an instruction fetch. Instructions inside it decode from
/// these bytes (one page walk for the run, not one each); one that runs
/// past its end fetches the rest as usual, and one outside it fills it anew.
/// Nothing the run carries out writes memory, so the bytes stay current.
struct CodeWindow {
    /// The linear address of `bytes[0]`, and how many bytes are valid.
    start: u64,
    len: usize,
    bytes: [u8; CodeWindow::SIZE],
}

/// The bytes a [`CodeWindow`] holds.
pub(crate) const CODE_WINDOW: usize = 64;

impl CodeWindow {
    const SIZE: usize = CODE_WINDOW;

    fn new() -> Self {
        CodeWindow {
            start: 0,
            len: 0,
            bytes: [0; Self::SIZE],
        }
    }

    fn fetch_decode<C: Cpu, M: Memory>(&mut self, ctx: &mut Ctx<'_, C, M>) -> Option<Decoded> {
        // 64-bit mode only (see `to_next_port_access`): CS's base is 0.
        let rip = ctx.cpu.rip();
        let mut at = rip.wrapping_sub(self.start) as usize;
        if self.len == 0 || at >= self.len {
            let linear = ctx.linearize(Sreg::Cs, rip, 1, AccessKind::Fetch).ok()?;
            let n = (0x1000 - (linear & 0xFFF) as usize).min(Self::SIZE);
            let p = ctx.translate(linear, n, AccessKind::Fetch, false).ok()?;
            ctx.fetch_pieces(&p, &mut self.bytes[..n]).ok()?;
            self.start = linear;
            self.len = n;
            at = 0;
        }
        fetch_decode(ctx, Fetch::Bytes(&self.bytes[at..self.len])).ok()
    }
}

/// Operands that are general-purpose registers or immediates only, LEA's
/// address (never accessed) aside, and no LOCK prefix.
fn register_only(insn: &iced_x86::Instruction) -> bool {
    !insn.has_lock_prefix()
        && (0..insn.op_count()).all(|i| match insn.op_kind(i) {
            OpKind::Register => insn.op_register(i).is_gpr(),
            OpKind::Memory => insn.mnemonic() == Mnemonic::Lea && i == 1,
            kind => insn::is_immediate(kind),
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cpu::Gpr;
    use crate::testutil::*;
    use std::vec::Vec;

    /// Places `code` at RIP and runs ahead; the port accesses made and the log.
    fn ahead(m: &mut Machine, code: &[u8]) -> u32 {
        m.mem.ram_fill(m.cpu.rip, code);
        let done = port_io_ahead(&mut m.cpu, &mut m.mem);
        m.mem.assert_protocol();
        let logged: Vec<u16> = m.mem.pio_log.iter().map(|a| a.1).collect();
        assert_eq!(
            done.ports(),
            &logged[..],
            "the ports reported are those accessed"
        );
        done.count
    }

    fn ports(m: &Machine) -> Vec<(bool, u16, Vec<u8>)> {
        m.mem.pio_log.clone()
    }

    #[test]
    fn a_pci_configuration_read_after_its_address_write() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rax, 0x8000_0008);
        m.cpu.set(Gpr::Rdx, 0xCF8);
        // mov $0xcfc,%edx; in (%dx),%eax; jmp .
        let n = ahead(&mut m, &[0xBA, 0xFC, 0x0C, 0, 0, 0xED, 0xEB, 0xFE]);
        assert_eq!(n, 1);
        assert_eq!(ports(&m), [(false, 0xCFC, std::vec![1, 2, 3, 4])]);
        assert_eq!(m.cpu.get(Gpr::Rax), 0x0403_0201, "IN EAX zero-extends");
        assert_eq!(m.cpu.get(Gpr::Rdx), 0xCFC);
        assert_eq!(m.cpu.rip, 0x10006, "stops before the JMP");
    }

    #[test]
    fn set_up_of_three_then_a_byte_write() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rcx, 0x1_0007);
        m.cpu.set(Gpr::R8, 0xAB);
        m.cpu.set(Gpr::Rax, 0xFFFF_FFFF_FFFF_FF00);
        // and $3,%ecx; mov %r8d,%eax; lea 0xcfc(%rcx),%edx; out %al,(%dx); ret
        let code = [
            0x83, 0xE1, 0x03, 0x44, 0x89, 0xC0, 0x8D, 0x91, 0xFC, 0x0C, 0, 0, 0xEE, 0xC3,
        ];
        assert_eq!(ahead(&mut m, &code), 1);
        assert_eq!(ports(&m), [(true, 0xCFF, std::vec![0xAB])]);
        assert_eq!(m.cpu.get(Gpr::Rcx), 3);
        assert_eq!(m.cpu.rip, 0x10000 + 13);
        // AND's flags: 3 is not zero, has even parity.
        assert_eq!(m.cpu.rflags & (rflags::ZF | rflags::PF), rflags::PF);
    }

    #[test]
    fn the_pit_read_twice_and_at_most_four_accesses_a_call() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rax, 0x1234_5678_0000_0000);
        // in $0x42,%al six times
        let code = [0xE4, 0x42].repeat(6);
        assert_eq!(ahead(&mut m, &code), MAX_PORT_ACCESSES);
        assert_eq!(m.mem.pio_log.len(), 4);
        assert_eq!(m.cpu.rip, 0x10008);
        assert_eq!(
            m.cpu.get(Gpr::Rax),
            0x1234_5678_0000_0004,
            "IN AL keeps the rest of RAX"
        );
    }

    #[test]
    fn set_up_that_leads_nowhere_is_undone() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rcx, 7);
        m.cpu.rflags = 0x2 | rflags::CF;
        let before = m.cpu.clone();
        // and $3,%ecx; add $1,%ecx seven times; mov %ecx,%edx; in (%dx),%al:
        // nine set-up instructions, one too many.
        let mut code = std::vec![0x83, 0xE1, 0x03];
        for _ in 0..7 {
            code.extend_from_slice(&[0x83, 0xC1, 0x01]);
        }
        code.extend_from_slice(&[0x89, 0xCA, 0xEC]);
        assert_eq!(ahead(&mut m, &code), 0);
        assert_eq!(m.cpu.gprs, before.gprs);
        assert_eq!((m.cpu.rip, m.cpu.rflags), (before.rip, before.rflags));
        assert!(m.mem.pio_log.is_empty());
        // After one pair the second attempt is undone and the first stands.
        let mut m = Machine::long_mode();
        // in $0x42,%al; mov $1,%ecx; ret
        let code = [0xE4, 0x42, 0xB9, 1, 0, 0, 0, 0xC3];
        assert_eq!(ahead(&mut m, &code), 1);
        assert_eq!((m.cpu.rip, m.cpu.get(Gpr::Rcx)), (0x10002, 0));
    }

    /// Linux's `pit_expect_msb` loop after its RDTSC (which exits while the
    /// calibration's exits are hidden): seven register instructions and a
    /// branch not taken, `in $0x42` twice, then a branch back to the RDTSC,
    /// which is left to the guest.
    #[test]
    fn the_pit_calibration_loop_after_its_rdtsc() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rdx, 0x1234);
        m.cpu.set(Gpr::Rax, 0x5678);
        m.cpu.set(Gpr::Rcx, 7);
        let code = [
            0x48, 0xC1, 0xE2, 0x20, // shl $0x20,%rdx
            0x48, 0x89, 0xFE, // mov %rdi,%rsi
            0x83, 0xC1, 0x01, // add $1,%ecx
            0x48, 0x89, 0xD7, // mov %rdx,%rdi
            0x48, 0x09, 0xC7, // or %rax,%rdi
            0x81, 0xF9, 0x50, 0xC3, 0, 0, // cmp $0xc350,%ecx
            0x74, 0x08, // je +8 (not taken)
            0xE4, 0x42, // in $0x42,%al
            0xE4, 0x42, // in $0x42,%al
            0x3C, 0xFF, // cmp $0xff,%al
            0x74, 0xDE, // je back to the start (taken: AL is not 0xFF, so not)
            0x0F, 0x31, // rdtsc
        ];
        assert_eq!(ahead(&mut m, &code), 2);
        assert_eq!(m.cpu.get(Gpr::Rdi), 0x1234_0000_5678);
        assert_eq!(m.cpu.get(Gpr::Rcx), 8);
        assert_eq!(
            m.cpu.rip,
            0x10000 + 28,
            "back at the CMP after the second IN"
        );
    }

    #[test]
    fn a_polling_loop_folds_four_reads() {
        let mut m = Machine::long_mode();
        // 1: in $0x64,%al; test $0x80,%al; jz 1b; ret (the fake bus counts up)
        let code = [0xE4, 0x64, 0xA8, 0x80, 0x74, 0xFA, 0xC3];
        assert_eq!(ahead(&mut m, &code), MAX_PORT_ACCESSES);
        assert_eq!(m.cpu.rip, 0x10002);
    }

    #[test]
    fn memory_operands_string_io_and_locked_forms_are_left_to_the_guest() {
        for code in [
            // mov (%rbx),%edx; in (%dx),%al
            &[0x8B, 0x13, 0xEC][..],
            // insb
            &[0x6C][..],
            // rep outsb
            &[0xF3, 0x6E][..],
            // lock add $1,%ecx (#UD); in $0x42,%al
            &[0xF0, 0x83, 0xC1, 0x01, 0xE4, 0x42][..],
            // mov %ds,%eax; in $0x42,%al
            &[0x8C, 0xD8, 0xE4, 0x42][..],
            // push %rax; in $0x42,%al
            &[0x50, 0xE4, 0x42][..],
        ] {
            let mut m = Machine::long_mode();
            m.cpu.set(Gpr::Rbx, 0x8000);
            let before = m.cpu.clone();
            assert_eq!(ahead(&mut m, code), 0, "{code:02x?}");
            assert_eq!(m.cpu.gprs, before.gprs, "{code:02x?}");
            assert_eq!(m.cpu.rip, before.rip, "{code:02x?}");
            assert!(m.mem.pio_log.is_empty(), "{code:02x?}");
            assert!(m.mem.mmio_log.is_empty(), "{code:02x?}");
        }
    }

    #[test]
    fn only_in_64_bit_mode_without_single_step_at_a_privilege_iopl_allows() {
        let code = [0xE4, 0x42];
        let mut m = Machine::protected32();
        assert_eq!(ahead(&mut m, &code), 0, "32-bit protected mode");
        let mut m = Machine::real_mode();
        assert_eq!(ahead(&mut m, &code), 0, "real mode");
        let mut m = Machine::long_mode();
        m.cpu.rflags |= rflags::TF;
        assert_eq!(ahead(&mut m, &code), 0, "TF set");
        let mut m = Machine::long_mode();
        m.cpu.cpl = 3;
        assert_eq!(ahead(&mut m, &code), 0, "CPL 3, IOPL 0");
        let mut m = Machine::long_mode();
        m.cpu.cpl = 3;
        m.cpu.rflags |= rflags::IOPL;
        assert_eq!(ahead(&mut m, &code), 1, "CPL 3, IOPL 3");
    }

    #[test]
    fn a_fetch_that_faults_changes_nothing() {
        let mut m = Machine::long_mode();
        m.map_low_2m_pages_except(0);
        m.cpu.set(Gpr::Rax, 5);
        let before = m.cpu.clone();
        // RIP 0x10000 lies in the 2 MiB page left unmapped.
        assert_eq!(port_io_ahead(&mut m.cpu, &mut m.mem).count, 0);
        assert_eq!(m.cpu.gprs, before.gprs);
        assert_eq!(m.cpu.rip, before.rip);
    }
}
