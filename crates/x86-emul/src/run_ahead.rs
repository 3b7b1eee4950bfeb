//! Port I/O run ahead: after a port I/O exit (or an RDTSC's), the instructions
//! that follow are carried out in the same exit when they are a little set-up
//! ending in another IN or OUT, so a pair of port accesses costs one exit.
//!
//! Why: an OS reaches many devices through pairs of port accesses a few
//! instructions apart. Linux reads PCI configuration space through ports
//! CF8h and CFCh (`outl` the address, `mov $0xcfc,%edx`, `inl`; PCI Local Bus
//! 3.0 3.2.2.3.2), half of a Debian boot's exits, and reads the PIT's channel 2
//! as two `inb $0x42` in a row during its TSC calibration (8254 datasheet,
//! "Read Operations"); SeaBIOS reads an IDE channel's alternate status after
//! each sector's REP INSW, four instructions on (its buffer pointer moves on
//! in its stack frame in between). Each exit costs a world switch and, under
//! an emulator, a flushed TLB; the instructions in between cost the
//! emulator less.
//!
//! What is run: MOV, MOVZX, MOVSX, MOVSXD, LEA, ADD, ADC, SUB, SBB, AND, OR,
//! XOR, CMP, TEST, INC, DEC, SHL, SHR and SAR on general-purpose registers,
//! immediates and memory, and Jcc (whose target is checked as the processor
//! checks it), at most [`MAX_SET_UP`] of them, and only when the next IN or
//! OUT (not INS or OUTS) follows within them. With Jcc, a polling loop (`in;
//! test; jz`) and Linux's PIT calibration loop (`rdtsc`, seven register
//! instructions and a branch, `in $0x42` twice) fold too. Memory is read
//! from RAM only (never a device); writes wait in a [`StoreBuffer`] and are
//! made, in order, just before the port access, or never if the attempt is
//! given up, so the guest's own run of those instructions writes once. In
//! any mode but virtual-8086, at a privilege that IOPL allows port access
//! (so no TSS bitmap is read), and never while RFLAGS.TF single-steps; the
//! caller also keeps out guests with debug breakpoints (DR7, which may
//! watch data too) and a platform with something for its VM loop to do
//! first. A guest that could tell the difference would have to time the
//! instructions.
//!
//! Anything else (an instruction outside that list, one that cannot be
//! fetched, a fault, a device or the code itself behind a memory operand)
//! leaves the vCPU and memory as they were at the attempt's start: the guest
//! runs those instructions itself.

use iced_x86::{Mnemonic, OpKind};

use crate::access::Ctx;
use crate::cpu::{rflags, Cpu, Mode, Sreg};
use crate::decode::{fetch_decode, Decoded, Fetch};
use crate::memory::{Memory, PhysError, PhysMemory};
use crate::paging::AccessKind;
use crate::{insn, Limits, Registers};

/// Set-up instructions run before a port access at most: PCI
/// configuration's `and $3,%ecx; mov %r8d,%eax; lea 0xcfc(%rcx),%edx` is
/// three, Linux's PIT calibration loop from its RDTSC to its next `in` seven.
pub const MAX_SET_UP: usize = 8;
/// Port accesses one call carries out at most (so a guest's run of port
/// accesses still exits every few, and a call's work is bounded).
pub const MAX_PORT_ACCESSES: u32 = 4;
/// Memory writes one attempt holds back at most ([`StoreBuffer`]).
const MAX_STORES: usize = 4;

/// Where an attempt lately found nothing: a loop of exits that never
/// leads to another port access soon (`out; dec; jnz`, a driver's status
/// read followed by a return) would otherwise fetch and decode after every
/// exit for nothing, and a run that folds one access and then fails to reach
/// the next would pay for the failure on every exit. Kept per attempt, by
/// the RIP it starts at (the exit's, or where the access before it left
/// off): after [`RunAheadMisses::MISSES`] misses in a row at one RIP, the next
/// [`RunAheadMisses::SKIPS`] attempts there are not made; one success clears
/// the count. It only ever skips the optimization, so a stale entry
/// (other code at that RIP now) costs nothing but a missed run ahead.
#[derive(Debug, Clone, Default)]
pub struct RunAheadMisses {
    /// By RIP's low bits: the RIP, its misses in a row, attempts left to skip.
    slots: [(u64, u8, u8); 8],
}

impl RunAheadMisses {
    const MISSES: u8 = 2;
    const SKIPS: u8 = 64;

    fn slot(&mut self, rip: u64) -> &mut (u64, u8, u8) {
        let i = ((rip ^ (rip >> 7)) as usize) % self.slots.len();
        let slot = &mut self.slots[i];
        if slot.0 != rip {
            *slot = (rip, 0, 0);
        }
        slot
    }

    /// Whether to make an attempt that starts at `rip`.
    pub fn worth_trying(&mut self, rip: u64) -> bool {
        let slot = self.slot(rip);
        if slot.2 > 0 {
            slot.2 -= 1;
            return false;
        }
        true
    }

    /// What the attempt that started at `rip` found.
    pub fn record(&mut self, rip: u64, found: bool) {
        let slot = self.slot(rip);
        if found {
            slot.1 = 0;
        } else {
            slot.1 = slot.1.saturating_add(1);
            if slot.1 >= Self::MISSES {
                slot.2 = Self::SKIPS;
            }
        }
    }
}

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

/// Carries out, at CS:RIP, set-up instructions and the IN or OUT they
/// lead to, up to [`MAX_PORT_ACCESSES`] times, each attempt unless `misses`
/// says its RIP lately led nowhere. Returns the port accesses made; none
/// leaves the vCPU and memory unchanged.
pub fn port_io_ahead<C: Cpu, M: Memory>(
    cpu: &mut C,
    mem: &mut M,
    misses: &mut RunAheadMisses,
) -> PortAccesses {
    let mut done = PortAccesses::default();
    let mut code = CodeWindow::new();
    while done.count < MAX_PORT_ACCESSES {
        let rip = cpu.rip();
        if !misses.worth_trying(rip) {
            break;
        }
        let saved = Registers::save(cpu);
        let result = to_next_port_access(cpu, mem, &mut code);
        misses.record(rip, result.is_ok());
        match result {
            Ok(port) => {
                done.ports[done.count as usize] = port;
                done.count += 1;
            }
            Err(Stop::Undo) => {
                saved.restore(cpu);
                break;
            }
            Err(Stop::AtThePortAccess) => break,
        }
    }
    done
}

/// Why an attempt ended without its port access.
enum Stop {
    /// Nothing was written: the vCPU goes back to the attempt's start.
    Undo,
    /// The set-up's writes were made but the port access was not (a bus
    /// that refused): the vCPU stays at the IN or OUT, so the guest runs
    /// that alone, not the set-up a second time.
    AtThePortAccess,
}

/// One attempt: the port once an IN or OUT has been carried out (its
/// effects stand, and so do those of the set-up before it, its memory
/// writes made just before the port access).
fn to_next_port_access<C: Cpu, M: Memory>(
    cpu: &mut C,
    mem: &mut M,
    code: &mut CodeWindow,
) -> Result<u16, Stop> {
    to_port_access(cpu, mem, code).ok_or(Stop::Undo)?
}

/// [`to_next_port_access`] up to its port access: `None` to undo, else
/// what the port access gave.
fn to_port_access<C: Cpu, M: Memory>(
    cpu: &mut C,
    mem: &mut M,
    code: &mut CodeWindow,
) -> Option<Result<u16, Stop>> {
    let mut stores = StoreBuffer::new(mem, code.physical());
    let mut ctx = Ctx::new(cpu, &mut stores);
    let iopl = ((ctx.cpu.rflags() & rflags::IOPL) >> 12) as u8;
    let allowed = match ctx.mode {
        Mode::Real => true,
        Mode::Virtual8086 => false,
        Mode::Protected | Mode::Compatibility | Mode::Long => ctx.cpl <= iopl,
    };
    if !allowed || ctx.cpu.rflags() & rflags::TF != 0 {
        return None;
    }
    let limits = Limits::default();
    for _ in 0..=MAX_SET_UP {
        let d = code.fetch_decode(&mut ctx)?;
        ctx.mem.code = code.physical();
        let insn = &d.insn;
        match insn.mnemonic() {
            Mnemonic::In | Mnemonic::Out if register_only(insn) => {
                // The port before the access: IN/OUT with DX reads it first.
                let port = match insn.op_kind(if insn.mnemonic() == Mnemonic::In {
                    1
                } else {
                    0
                }) {
                    OpKind::Immediate8 => u16::from(insn.immediate8()),
                    _ => ctx.cpu.gpr(crate::cpu::Gpr::Rdx) as u16,
                };
                // (`ctx`'s borrows end here.) The set-up's writes land
                // first, in order, as the guest would have made them
                // before its port access.
                if stores.commit().is_err() {
                    return Some(Err(Stop::AtThePortAccess));
                }
                let mut ctx = Ctx::new(cpu, mem);
                return Some(
                    insn::execute(&mut ctx, &d, &limits)
                        .map(|_| port)
                        .map_err(|_| Stop::AtThePortAccess),
                );
            }
            _ if insn.is_jcc_short_or_near() => {
                insn::execute(&mut ctx, &d, &limits).ok()?;
            }
            Mnemonic::Mov
            | Mnemonic::Movzx
            | Mnemonic::Movsx
            | Mnemonic::Movsxd
            | Mnemonic::Lea
            | Mnemonic::Add
            | Mnemonic::Adc
            | Mnemonic::Sub
            | Mnemonic::Sbb
            | Mnemonic::And
            | Mnemonic::Or
            | Mnemonic::Xor
            | Mnemonic::Cmp
            | Mnemonic::Test
            | Mnemonic::Inc
            | Mnemonic::Dec
            | Mnemonic::Shl
            | Mnemonic::Sal
            | Mnemonic::Shr
            | Mnemonic::Sar
                if plain_operands(insn) =>
            {
                insn::execute(&mut ctx, &d, &limits).ok()?;
            }
            _ => return None,
        }
    }
    None
}

/// The memory an attempt reaches: reads come from RAM (with the attempt's
/// own writes over them), writes wait here until the attempt reaches its
/// port access ([`StoreBuffer::commit`]), so an attempt given up leaves
/// memory as it was and the guest's own run of the same instructions
/// writes once, not twice. Nothing else is let through: a device read or
/// write, a port access (the attempt's own goes to the real memory after
/// the commit), a write to the code being run, or more than [`MAX_STORES`]
/// writes end the attempt.
struct StoreBuffer<'m, M: Memory> {
    mem: &'m mut M,
    stores: [(u64, usize, [u8; 16]); MAX_STORES],
    n: usize,
    /// The guest-physical bytes of the code window: a write there would
    /// leave the fetched instructions stale.
    code: (u64, u64),
}

impl<'m, M: Memory> StoreBuffer<'m, M> {
    fn new(mem: &'m mut M, code: (u64, u64)) -> Self {
        StoreBuffer {
            mem,
            stores: [(0, 0, [0; 16]); MAX_STORES],
            n: 0,
            code,
        }
    }

    /// Makes the held-back writes, in order: to RAM, or, where RAM refuses
    /// them (read-only RAM), to the bus as the emulator sends such writes.
    fn commit(self) -> Result<(), PhysError> {
        for &(gpa, len, bytes) in &self.stores[..self.n] {
            let data = &bytes[..len];
            if self.mem.write_phys(gpa, data) == Err(PhysError::NotRam) {
                let mut done = 0;
                while done < len {
                    let n = self.mem.mmio_write(gpa + done as u64, &data[done..])?;
                    done += n.clamp(1, len - done);
                }
            }
        }
        Ok(())
    }
}

impl<M: Memory> PhysMemory for StoreBuffer<'_, M> {
    fn read_phys(&mut self, gpa: u64, data: &mut [u8]) -> Result<(), PhysError> {
        self.mem.read_phys(gpa, data)?;
        let end = gpa + data.len() as u64;
        for &(at, len, bytes) in &self.stores[..self.n] {
            let from = at.max(gpa);
            let to = (at + len as u64).min(end);
            for a in from..to {
                data[(a - gpa) as usize] = bytes[(a - at) as usize];
            }
        }
        Ok(())
    }

    fn write_phys(&mut self, gpa: u64, data: &[u8]) -> Result<(), PhysError> {
        let end = gpa + data.len() as u64;
        let (code, code_end) = self.code;
        if self.n == MAX_STORES || data.len() > 16 || (gpa < code_end && code < end) {
            return Err(PhysError::Unhandled);
        }
        // Only RAM: a device behind the address would see the write late.
        let mut probe = [0u8; 16];
        self.mem
            .read_phys(gpa, &mut probe[..data.len()])
            .map_err(|_| PhysError::Unhandled)?;
        let mut bytes = [0u8; 16];
        bytes[..data.len()].copy_from_slice(data);
        self.stores[self.n] = (gpa, data.len(), bytes);
        self.n += 1;
        Ok(())
    }
}

impl<M: Memory> Memory for StoreBuffer<'_, M> {
    fn mmio_read(&mut self, _gpa: u64, _data: &mut [u8]) -> Result<usize, PhysError> {
        Err(PhysError::Unhandled)
    }
    fn mmio_write(&mut self, _gpa: u64, _data: &[u8]) -> Result<usize, PhysError> {
        Err(PhysError::Unhandled)
    }
    fn pio_read(&mut self, _port: u16, _data: &mut [u8]) -> Result<(), PhysError> {
        Err(PhysError::Unhandled)
    }
    fn pio_write(&mut self, _port: u16, _data: &[u8]) -> Result<(), PhysError> {
        Err(PhysError::Unhandled)
    }
}

/// Code bytes fetched once for a call: up to [`CodeWindow::SIZE`] bytes
/// from where the first instruction starts, within its page (and, outside
/// 64-bit mode, CS's limit), translated and checked as an instruction
/// fetch. Instructions inside it decode from these bytes (one page walk
/// for the run, not one each); one that runs past its end fetches the rest
/// as usual, and one outside it fills it anew. The run writes no memory
/// under it ([`StoreBuffer`]), so the bytes stay current.
struct CodeWindow {
    /// The linear and guest-physical addresses of `bytes[0]`, and how many
    /// bytes are valid.
    start: u64,
    gpa: u64,
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
            gpa: 0,
            len: 0,
            bytes: [0; Self::SIZE],
        }
    }

    /// The guest-physical range the window holds.
    fn physical(&self) -> (u64, u64) {
        (self.gpa, self.gpa + self.len as u64)
    }

    fn fetch_decode<C: Cpu, M: Memory>(&mut self, ctx: &mut Ctx<'_, C, M>) -> Option<Decoded> {
        let cs = ctx.cpu.segment(Sreg::Cs);
        let ip = match ctx.mode.code_bits(&cs) {
            64 => ctx.cpu.rip(),
            32 => ctx.cpu.rip() & 0xFFFF_FFFF,
            _ => ctx.cpu.rip() & 0xFFFF,
        };
        let linear = ctx.linearize(Sreg::Cs, ip, 1, AccessKind::Fetch).ok()?;
        let mut at = linear.wrapping_sub(self.start) as usize;
        if self.len == 0 || at >= self.len {
            let mut n = (0x1000 - (linear & 0xFFF) as usize).min(Self::SIZE);
            if ctx.mode != Mode::Long {
                let limit_left = u64::from(cs.limit).saturating_sub(ip) + 1;
                n = n.min(limit_left as usize).max(1);
            }
            let p = ctx.translate(linear, n, AccessKind::Fetch, false).ok()?;
            ctx.fetch_pieces(&p, &mut self.bytes[..n]).ok()?;
            self.start = linear;
            self.gpa = p.single()?;
            self.len = n;
            at = 0;
        }
        fetch_decode(ctx, Fetch::Bytes(&self.bytes[at..self.len])).ok()
    }
}

/// Operands that are general-purpose registers or immediates only, and no
/// LOCK prefix (IN and OUT).
fn register_only(insn: &iced_x86::Instruction) -> bool {
    !insn.has_lock_prefix()
        && (0..insn.op_count()).all(|i| match insn.op_kind(i) {
            OpKind::Register => insn.op_register(i).is_gpr(),
            kind => insn::is_immediate(kind),
        })
}

/// Operands that are general-purpose registers, immediates or one memory
/// operand (never a segment, control or debug register, never a string
/// operand), and no LOCK prefix: the set-up's instructions.
fn plain_operands(insn: &iced_x86::Instruction) -> bool {
    !insn.has_lock_prefix()
        && (0..insn.op_count()).all(|i| match insn.op_kind(i) {
            OpKind::Register => insn.op_register(i).is_gpr(),
            OpKind::Memory => true,
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
        let done = port_io_ahead(&mut m.cpu, &mut m.mem, &mut RunAheadMisses::default());
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
    fn two_misses_in_a_row_skip_the_next_tries_at_that_rip_only() {
        let mut m = RunAheadMisses::default();
        for _ in 0..RunAheadMisses::MISSES {
            assert!(m.worth_trying(0x1000));
            m.record(0x1000, false);
        }
        let skipped = (0..100).take_while(|_| !m.worth_trying(0x1000)).count();
        assert_eq!(skipped, usize::from(RunAheadMisses::SKIPS));
        // Another RIP is tried meanwhile; a success clears the count.
        let mut m2 = RunAheadMisses::default();
        m2.record(0x2000, false);
        assert!(m2.worth_trying(0x2000));
        m2.record(0x2000, true);
        m2.record(0x2000, false);
        assert!(m2.worth_trying(0x2000), "one miss after a success");
        // A loop that ends once in a while (a branch taken at its end) keeps
        // running ahead: single misses never skip.
        for _ in 0..10 {
            assert!(m2.worth_trying(0x3000));
            m2.record(0x3000, true);
            assert!(m2.worth_trying(0x3000));
            m2.record(0x3000, false);
        }
    }

    /// A fold whose next attempt leads nowhere (here a RET) learns that at
    /// the attempt's own RIP, not the exit's, which keeps succeeding.
    #[test]
    fn a_failing_next_attempt_is_learnt_where_it_starts() {
        let mut misses = RunAheadMisses::default();
        for _ in 0..RunAheadMisses::MISSES {
            let mut m = Machine::long_mode();
            // in $0x42,%al; ret
            m.mem.ram_fill(0x10000, &[0xE4, 0x42, 0xC3]);
            let done = port_io_ahead(&mut m.cpu, &mut m.mem, &mut misses);
            assert_eq!((done.count, m.cpu.rip), (1, 0x10002));
        }
        assert!(misses.worth_trying(0x10000), "the exit's RIP still folds");
        assert!(!misses.worth_trying(0x10002), "the RET is not tried again");
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
    fn string_io_locked_stack_and_segment_forms_are_left_to_the_guest() {
        for code in [
            // insb
            &[0x6C][..],
            // rep outsb
            &[0xF3, 0x6E][..],
            // lock addl $1,(%rbx); in $0x42,%al
            &[0xF0, 0x83, 0x03, 0x01, 0xE4, 0x42][..],
            // mov %ds,%eax; in $0x42,%al
            &[0x8C, 0xD8, 0xE4, 0x42][..],
            // push %rax; in $0x42,%al
            &[0x50, 0xE4, 0x42][..],
            // mov (%rbx),%edx; call .+5; in (%dx),%al
            &[0x8B, 0x13, 0xE8, 0, 0, 0, 0, 0xEC][..],
        ] {
            let mut m = Machine::long_mode();
            m.cpu.set(Gpr::Rbx, 0x8000);
            m.mem.write_u32(0x8000, 0x1234);
            let before = m.cpu.clone();
            assert_eq!(ahead(&mut m, code), 0, "{code:02x?}");
            assert_eq!(m.cpu.gprs, before.gprs, "{code:02x?}");
            assert_eq!(m.cpu.rip, before.rip, "{code:02x?}");
            assert_eq!(m.mem.read_u32(0x8000), 0x1234, "{code:02x?}");
            assert!(m.mem.pio_log.is_empty(), "{code:02x?}");
            assert!(m.mem.mmio_log.is_empty(), "{code:02x?}");
        }
    }

    #[test]
    fn a_port_read_whose_port_comes_from_memory() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, 0x8000);
        m.mem.write_u32(0x8010, 0x1F7);
        m.mem.write_u32(0x8014, 0xAB);
        // mov 0x10(%rbx),%edx; movzbl 0x14(%rbx),%ecx; in (%dx),%al
        let code = [0x8B, 0x53, 0x10, 0x0F, 0xB6, 0x4B, 0x14, 0xEC];
        assert_eq!(ahead(&mut m, &code), 1);
        assert_eq!(ports(&m)[0].1, 0x1F7);
        assert_eq!(m.cpu.get(Gpr::Rcx), 0xAB);
        assert_eq!(m.cpu.rip, 0x10000 + 8);
    }

    /// A write in the set-up lands once, before the port access; a run
    /// given up after one leaves memory as it was (the guest then makes
    /// that write itself).
    #[test]
    fn set_up_writes_land_once_before_the_port_access_or_not_at_all() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, 0x8000);
        m.cpu.set(Gpr::Rsi, 0x200);
        m.mem.write_u64(0x8000, 0x1000);
        m.mem.record_calls = true;
        // add %rsi,(%rbx); mov (%rbx),%edx; in $0x42,%al
        let code = [0x48, 0x01, 0x33, 0x8B, 0x13, 0xE4, 0x42];
        assert_eq!(ahead(&mut m, &code), 1);
        assert_eq!(m.mem.read_u64(0x8000), 0x1200, "the write landed once");
        assert_eq!(
            m.cpu.get(Gpr::Rdx),
            0x1200,
            "a read sees the held-back write"
        );
        let at = |want: &dyn Fn(&Call) -> bool| m.mem.calls.iter().position(want);
        let write = at(&|c| {
            matches!(
                c,
                Call::WritePhys {
                    gpa: 0x8000,
                    ok: true,
                    ..
                }
            )
        });
        let port = at(&|c| matches!(c, Call::PioRead { port: 0x42, .. }));
        assert!(
            write.is_some() && write < port,
            "memory first, then the port"
        );
        // The same write, then too much set-up: nothing is written.
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, 0x8000);
        m.cpu.set(Gpr::Rsi, 0x200);
        m.mem.write_u64(0x8000, 0x1000);
        let mut code = std::vec![0x48, 0x01, 0x33];
        for _ in 0..MAX_SET_UP {
            code.extend_from_slice(&[0x83, 0xC1, 0x01]); // add $1,%ecx
        }
        code.extend_from_slice(&[0xE4, 0x42]);
        assert_eq!(ahead(&mut m, &code), 0);
        assert_eq!(m.mem.read_u64(0x8000), 0x1000);
        assert_eq!(m.cpu.get(Gpr::Rcx), 0);
    }

    #[test]
    fn device_memory_code_writes_and_too_many_writes_end_the_run() {
        // mov (%rbx),%eax; in $0x42,%al with RBX in device memory: no
        // device read is made.
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, MMIO_BASE);
        assert_eq!(ahead(&mut m, &[0x8B, 0x03, 0xE4, 0x42]), 0);
        assert!(m.mem.mmio_log.is_empty());
        // movb $0x90,(%rbx) into the code about to run; in $0x42,%al.
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, 0x10003);
        let code = [0xC6, 0x03, 0x90, 0xE4, 0x42];
        assert_eq!(ahead(&mut m, &code), 0);
        assert_eq!(m.mem.ram_get(0x10003, 1), 0xE4, "the code is as it was");
        // One write more than MAX_STORES.
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, 0x8000);
        m.cpu.set(Gpr::Rax, 0x55);
        let mut code = std::vec::Vec::new();
        for i in 0..=MAX_STORES as u8 {
            code.extend_from_slice(&[0x89, 0x43, 8 * i]); // mov %eax,8i(%rbx)
        }
        code.extend_from_slice(&[0xE4, 0x42]);
        assert_eq!(ahead(&mut m, &code), 0);
        assert_eq!(m.mem.read_u64(0x8000), 0);
    }

    /// SeaBIOS after each sector's REP INSW (16-bit code, real mode): the
    /// buffer pointer moves on in its stack frame, then the alternate
    /// status is read.
    #[test]
    fn seabios_alternate_status_read_after_a_sector() {
        let mut m = Machine::real_mode();
        let ss = 0x3_0000;
        m.cpu.set(Gpr::Rsp, 0x100);
        m.mem.write_u32(ss + 0x100, 0x7000); // the buffer pointer
        m.mem.write_u32(ss + 0x10C, 0x200); // the block size
        m.mem.write_u32(ss + 0x112, 0x3F4); // iobase2
        let code = [
            0x67, 0x66, 0x8B, 0x74, 0x24, 0x0C, // mov 0xc(%esp),%esi
            0x67, 0x66, 0x01, 0x34, 0x24, // add %esi,(%esp)
            0x67, 0x8B, 0x44, 0x24, 0x12, // mov 0x12(%esp),%ax
            0x67, 0x66, 0x8D, 0x50, 0x02, // lea 0x2(%eax),%edx
            0xEC, // in (%dx),%al
        ];
        assert_eq!(ahead(&mut m, &code), 1);
        assert_eq!(ports(&m)[0].1, 0x3F6);
        assert_eq!(m.mem.read_u32(ss + 0x100), 0x7200);
        assert_eq!(m.cpu.rip, 0x7C00 + code.len() as u64);
    }

    #[test]
    fn not_in_virtual_8086_mode_nor_single_stepping_nor_where_iopl_forbids() {
        let code = [0xE4, 0x42];
        let mut m = Machine::protected32();
        assert_eq!(ahead(&mut m, &code), 1, "32-bit protected mode");
        let mut m = Machine::real_mode();
        assert_eq!(ahead(&mut m, &code), 1, "real mode");
        let mut m = Machine::protected32();
        m.cpu.rflags |= rflags::VM | rflags::IOPL;
        assert_eq!(ahead(&mut m, &code), 0, "virtual-8086 mode");
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
        assert_eq!(
            port_io_ahead(&mut m.cpu, &mut m.mem, &mut RunAheadMisses::default()).count,
            0
        );
        assert_eq!(m.cpu.gprs, before.gprs);
        assert_eq!(m.cpu.rip, before.rip);
    }
}
