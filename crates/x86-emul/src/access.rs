//! The path every data access and fetch takes: logical address -> segmentation ->
//! linear address -> page walker -> guest-physical address -> RAM or a device.
//!
//! An access is split at 4 KiB boundaries; all of its pages are translated (and any
//! fault raised) before the first byte is read or written, so a faulting access has no
//! side effect on a device.

use crate::cpu::bits::CR4_LA57;
use crate::cpu::{rflags, ControlRegs, Cpu, Mode, Sreg};
use crate::error::{Error, Exception};
use crate::memory::{Memory, PhysError};
use crate::paging::{self, Access, AccessKind, WalkError};
use crate::segmentation;

/// The state one emulation step works on: the vCPU, the bus, and what is fixed for the
/// duration of the instruction.
pub(crate) struct Ctx<'a, C: Cpu, M: Memory> {
    pub cpu: &'a mut C,
    pub mem: &'a mut M,
    pub mode: Mode,
    pub cr: ControlRegs,
    pub cpl: u8,
    pub maxphy: u8,
    /// The guest-physical address the instruction must access before its first side
    /// effect ([`crate::Limits::fault_gpa`]); `None` once it has (or if there is none).
    pub fault_gpa: Option<u64>,
}

/// The guest-physical pieces of one access: at most two, split at a page boundary.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Pieces {
    parts: [(u64, usize); 2],
    n: usize,
}

impl Pieces {
    pub fn len(&self) -> usize {
        self.parts[..self.n].iter().map(|p| p.1).sum()
    }

    /// The guest-physical start of an access that lies in one page.
    pub fn single(&self) -> Option<u64> {
        (self.n == 1).then_some(self.parts[0].0)
    }

    /// The first `len` bytes of a one-page access.
    pub fn prefix(&self, len: usize) -> Pieces {
        let mut p = *self;
        p.n = 1;
        p.parts[0].1 = len.min(self.parts[0].1);
        p
    }

    /// Whether guest-physical `gpa` is one of the bytes of the access.
    fn covers(&self, gpa: u64) -> bool {
        self.parts[..self.n]
            .iter()
            .any(|&(start, len)| gpa.wrapping_sub(start) < len as u64)
    }
}

impl<'a, C: Cpu, M: Memory> Ctx<'a, C, M> {
    pub fn new(cpu: &'a mut C, mem: &'a mut M) -> Self {
        let mode = Mode::of(cpu);
        let cr = cpu.control_regs();
        let cpl = match mode {
            Mode::Real => 0,
            Mode::Virtual8086 => 3,
            _ => cpu.cpl() & 3,
        };
        let maxphy = cpu.max_phys_addr_bits();
        Ctx {
            cpu,
            mem,
            mode,
            cr,
            cpl,
            maxphy,
            fault_gpa: None,
        }
    }

    /// Called before an access with a side effect (a write, a device read, a port
    /// access), with the guest-physical pieces of the access if it has any. Once the
    /// instruction has accessed the faulting address (`p` covers it, or an earlier
    /// access did) everything is allowed; before, the instruction does not explain the
    /// nested page fault and is refused with [`Error::Unexplained`].
    pub fn may_commit(&mut self, p: Option<&Pieces>) -> Result<(), Error> {
        match self.fault_gpa {
            None => Ok(()),
            Some(gpa) if p.is_some_and(|p| p.covers(gpa)) => {
                self.fault_gpa = None;
                Ok(())
            }
            Some(gpa) => Err(Error::Unexplained { gpa }),
        }
    }

    fn la57(&self) -> bool {
        self.cr.cr4 & CR4_LA57 != 0
    }

    /// Linear addresses wrap at 4 GiB outside 64-bit mode.
    fn linear_mask(&self) -> u64 {
        if self.mode == Mode::Long {
            u64::MAX
        } else {
            0xFFFF_FFFF
        }
    }

    /// Segment checks for `size` bytes at `offset` through `sreg`.
    pub fn linearize(
        &self,
        sreg: Sreg,
        offset: u64,
        size: usize,
        kind: AccessKind,
    ) -> Result<u64, Exception> {
        let seg = self.cpu.segment(sreg);
        segmentation::linearize(self.mode, self.la57(), sreg, &seg, offset, size, kind)
    }

    /// Page-walk every page of `size` bytes at `linear`.
    pub fn translate(
        &mut self,
        linear: u64,
        size: usize,
        kind: AccessKind,
        implicit: bool,
    ) -> Result<Pieces, Error> {
        let access = Access {
            kind,
            cpl: self.cpl,
            implicit_supervisor: implicit,
            rflags_ac: self.cpu.rflags() & rflags::AC != 0,
        };
        let mut pieces = Pieces::default();
        let mut lin = linear;
        let mut left = size;
        while left > 0 && pieces.n < 2 {
            let in_page = (0x1000 - (lin & 0xFFF) as usize).min(left);
            let gpa = paging::translate(self.mem, &self.cr, self.maxphy, lin, access).map_err(
                |e| match e {
                    WalkError::PageFault { error_code } => Error::Exception(Exception::PageFault {
                        error_code,
                        linear: lin,
                    }),
                    WalkError::TableNotRam { gpa } => Error::PageTableNotRam { gpa },
                },
            )?;
            pieces.parts[pieces.n] = (gpa, in_page);
            pieces.n += 1;
            lin = lin.wrapping_add(in_page as u64) & self.linear_mask();
            left -= in_page;
        }
        Ok(pieces)
    }

    /// Segmentation and paging for a data access.
    pub fn resolve(
        &mut self,
        sreg: Sreg,
        offset: u64,
        size: usize,
        kind: AccessKind,
    ) -> Result<Pieces, Error> {
        let linear = self.linearize(sreg, offset, size, kind)?;
        self.translate(linear, size, kind, false)
    }

    /// A data read. Before the instruction has explained the nested page fault
    /// ([`Ctx::may_commit`]) it may read RAM, which has no side effect, but no device.
    pub fn read_pieces(&mut self, p: &Pieces, buf: &mut [u8]) -> Result<(), Error> {
        let ram_only = self.may_commit(Some(p)).is_err();
        let mut at = 0;
        for &(gpa, len) in &p.parts[..p.n] {
            let piece = &mut buf[at..at + len];
            if ram_only {
                if self.mem.read_phys(gpa, piece).is_err() {
                    return self.may_commit(None);
                }
            } else {
                read_phys_or_mmio(self.mem, gpa, piece)?;
            }
            at += len;
        }
        Ok(())
    }

    /// An instruction fetch: RAM (and ROM) only, never a device, as the nested page
    /// tables map no device executable.
    pub fn fetch_pieces(&mut self, p: &Pieces, buf: &mut [u8]) -> Result<(), Error> {
        let mut at = 0;
        for &(gpa, len) in &p.parts[..p.n] {
            self.mem
                .read_phys(gpa, &mut buf[at..at + len])
                .map_err(|_| Error::FetchNotRam { gpa })?;
            at += len;
        }
        Ok(())
    }

    pub fn write_pieces(&mut self, p: &Pieces, buf: &[u8]) -> Result<(), Error> {
        self.may_commit(Some(p))?;
        let mut at = 0;
        for &(gpa, len) in &p.parts[..p.n] {
            write_phys_or_mmio(self.mem, gpa, &buf[at..at + len])?;
            at += len;
        }
        Ok(())
    }

    /// Read a little-endian value of `p.len()` (at most 8) bytes.
    pub fn read_value(&mut self, p: &Pieces) -> Result<u64, Error> {
        let mut b = [0u8; 8];
        let n = p.len();
        self.read_pieces(p, &mut b[..n])?;
        Ok(u64::from_le_bytes(b))
    }

    pub fn write_value(&mut self, p: &Pieces, value: u64) -> Result<(), Error> {
        let b = value.to_le_bytes();
        let n = p.len();
        self.write_pieces(p, &b[..n])
    }

    /// Read `size` bytes at `sreg:offset`.
    pub fn read_mem(&mut self, sreg: Sreg, offset: u64, size: usize) -> Result<u64, Error> {
        let p = self.resolve(sreg, offset, size, AccessKind::Read)?;
        self.read_value(&p)
    }

    /// Write `size` bytes at `sreg:offset`.
    pub fn write_mem(
        &mut self,
        sreg: Sreg,
        offset: u64,
        size: usize,
        value: u64,
    ) -> Result<(), Error> {
        let p = self.resolve(sreg, offset, size, AccessKind::Write)?;
        self.write_value(&p, value)
    }
}

/// RAM first; what is not RAM goes to the device bus, piece by piece as devices
/// report how much of the access their region covers.
fn read_phys_or_mmio<M: Memory>(mem: &mut M, gpa: u64, buf: &mut [u8]) -> Result<(), Error> {
    let mut done = 0;
    while done < buf.len() {
        let at = gpa + done as u64;
        match mem.read_phys(at, &mut buf[done..]) {
            Ok(()) => return Ok(()),
            Err(PhysError::NotRam) => {}
            Err(PhysError::Unhandled) => return Err(Error::Bus { gpa: at }),
        }
        let want = (buf.len() - done).min(8);
        match mem.mmio_read(at, &mut buf[done..done + want]) {
            Ok(n) if n >= 1 => done += n.min(want),
            _ => return Err(Error::Bus { gpa: at }),
        }
    }
    Ok(())
}

fn write_phys_or_mmio<M: Memory>(mem: &mut M, gpa: u64, buf: &[u8]) -> Result<(), Error> {
    let mut done = 0;
    while done < buf.len() {
        let at = gpa + done as u64;
        match mem.write_phys(at, &buf[done..]) {
            Ok(()) => return Ok(()),
            Err(PhysError::NotRam) => {}
            Err(PhysError::Unhandled) => return Err(Error::Bus { gpa: at }),
        }
        let want = (buf.len() - done).min(8);
        match mem.mmio_write(at, &buf[done..done + want]) {
            Ok(n) if n >= 1 => done += n.min(want),
            _ => return Err(Error::Bus { gpa: at }),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use crate::cpu::Gpr;
    use crate::testutil::*;
    use crate::{Error, Exception, Fetch, Outcome};

    #[test]
    fn access_crossing_a_page_is_split_and_fully_translated_first() {
        let mut m = Machine::long_mode();
        m.map_low_2m_pages_except(1);
        // mov [rbx], rax across 0x1F_FFFC..0x20_0004: the second page faults, nothing is written.
        m.cpu.set(Gpr::Rbx, 0x1F_FFFC);
        m.cpu.set(Gpr::Rax, u64::MAX);
        assert_eq!(
            m.run(&[0x48, 0x89, 0x03]),
            Err(Error::Exception(Exception::PageFault {
                error_code: 2,
                linear: 0x20_0000
            }))
        );
        assert_eq!(m.mem.ram_get(0x1F_FFFC, 4), 0);
        // Within RAM the two halves land in their pages.
        m.cpu.set(Gpr::Rbx, 0x2_0FFD);
        m.run(&[0x48, 0x89, 0x03]).unwrap();
        assert_eq!(m.mem.read_u64(0x2_0FFD), u64::MAX);
    }

    #[test]
    fn access_crossing_the_end_of_a_device_region() {
        let mut m = Machine::long_mode();
        // Two devices: [BASE, BASE+6) and [BASE+6, END).
        m.mem.region_ends = vec![MMIO_BASE + 6, MMIO_BASE + MMIO_SIZE];
        m.cpu.set(Gpr::Rbx, MMIO_BASE + 4);
        m.cpu.set(Gpr::Rax, 0x4433_2211);
        m.run(&[0x89, 0x03]).unwrap();
        assert_eq!(
            m.mem.mmio_log,
            vec![
                MmioAccess::write(MMIO_BASE + 4, &[0x11, 0x22]),
                MmioAccess::write(MMIO_BASE + 6, &[0x33, 0x44])
            ]
        );
        // An access that runs from a device page into a page with nothing behind it.
        m.cpu.set(Gpr::Rbx, MMIO_BASE + MMIO_SIZE - 2);
        assert_eq!(
            m.run(&[0x89, 0x03]),
            Err(Error::Bus {
                gpa: MMIO_BASE + MMIO_SIZE
            })
        );
    }

    #[test]
    fn fetch_across_a_page_faults_only_when_needed() {
        let mut m = Machine::long_mode();
        m.map_low_2m_pages_except(1);
        m.cpu.rip = 0x1F_FFFE;
        m.cpu.set(Gpr::Rbx, 0x2_0000);
        // mov [rbx], eax: two bytes, fits.
        assert_eq!(m.run(&[0x89, 0x03]), Ok(Outcome::Retired));
        // mov [rbx+4], eax: three bytes, the last on the unmapped page.
        m.cpu.rip = 0x1F_FFFE;
        assert_eq!(
            m.run(&[0x89, 0x43]),
            Err(Error::Exception(Exception::PageFault {
                error_code: 0x10,
                linear: 0x20_0000
            }))
        );
    }

    #[test]
    fn supplied_bytes_are_used_and_completed_from_memory() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, MMIO_BASE);
        m.cpu.set(Gpr::Rax, 7);
        // Memory at RIP holds something else; the supplied bytes win.
        m.mem.ram_fill(0x10000, &[0x90, 0x90, 0x90]);
        let r = crate::emulate(
            &mut m.cpu,
            &mut m.mem,
            Fetch::Bytes(&[0x88, 0x03]),
            &m.limits,
        );
        assert_eq!(r, Ok(Outcome::Retired));
        assert_eq!(m.mem.mmio_get(MMIO_BASE, 1), 7);
        m.mem.ram_fill(0x10002, &[0x43, 0x01]);
        m.cpu.rip = 0x10001;
        let r = crate::emulate(&mut m.cpu, &mut m.mem, Fetch::Bytes(&[0x88]), &m.limits);
        assert_eq!(r, Ok(Outcome::Retired));
        assert_eq!(m.mem.mmio_get(MMIO_BASE + 1, 1), 7);
    }

    #[test]
    fn cs_limit_stops_fetch() {
        let mut m = Machine::protected32();
        m.cpu.segs[crate::cpu::Sreg::Cs as usize].limit = 0x10001;
        m.cpu.set(Gpr::Rbx, 0x2_0000);
        assert_eq!(m.run(&[0x89, 0x03]), Ok(Outcome::Retired));
        m.cpu.rip = 0x10000;
        assert_eq!(
            m.run(&[0x89, 0x43, 0x04]),
            Err(Error::Exception(Exception::GeneralProtection(0)))
        );
    }

    #[test]
    fn user_access_to_supervisor_page_and_fetch_from_nx_page() {
        let mut m = Machine::long_mode();
        m.map_low_2m_pages_except(99);
        m.cpu.cpl = 3;
        // The 2 MiB page at 0x20_0000 becomes supervisor-only.
        m.mem.write_u64(0x4000 + 8, 0x20_0000 | 0x83);
        m.cpu.set(Gpr::Rbx, 0x20_0010);
        assert_eq!(
            m.run(&[0x8B, 0x03]),
            Err(Error::Exception(Exception::PageFault {
                error_code: 0b101,
                linear: 0x20_0010
            }))
        );
        // Code on a no-execute page.
        m.mem.write_u64(0x4000, 0x87 | 1 << 63);
        assert_eq!(
            m.run(&[0x90]),
            Err(Error::Exception(Exception::PageFault {
                error_code: 0b10101,
                linear: 0x10000
            }))
        );
    }

    #[test]
    fn compatibility_mode_wraps_linear_addresses_at_4g() {
        let mut m = Machine::long_mode();
        m.cpu.segs[crate::cpu::Sreg::Cs as usize] = flat(ATTR_CODE32);
        m.cpu.segs[crate::cpu::Sreg::Ds as usize].base = 0xFFFF_0000;
        m.cpu.segs[crate::cpu::Sreg::Ds as usize].limit = 0xFFFF_FFFF;
        m.cpu.set(Gpr::Rbx, 0x0002_0000);
        m.cpu.set(Gpr::Rax, 0x55);
        m.run(&[0x88, 0x03]).unwrap(); // mov [ebx], al -> linear 0x1_0000
        assert_eq!(m.mem.ram_get(0x1_0000, 1), 0x55);
    }

    #[test]
    fn thirty_two_bit_paging_splits_a_store_over_two_device_pages() {
        let mut m = Machine::protected32();
        m.cpu.cr.cr0 |= crate::cpu::bits::CR0_PG;
        m.cpu.cr.cr4 = crate::cpu::bits::CR4_PSE;
        m.cpu.cr.cr3 = 0x5000;
        // A 4 MiB identity page for the code; linear 0x0040_1000 -> device page 1,
        // 0x0040_2000 -> device page 0, 0x0040_3000 not present.
        m.mem.write_u32(0x5000, 0x87);
        m.mem.write_u32(0x5004, 0x6007);
        m.mem
            .write_u32(0x6000 + 4, (MMIO_BASE as u32 + 0x1000) | 0x7);
        m.mem.write_u32(0x6000 + 8, MMIO_BASE as u32 | 0x7);
        m.cpu.set(Gpr::Rbx, 0x0040_1FFE);
        m.cpu.set(Gpr::Rax, 0xAABB_CCDD);
        m.run(&[0x89, 0x03]).unwrap();
        assert_eq!(
            m.mem.mmio_log,
            vec![
                MmioAccess::write(MMIO_BASE + 0x1FFE, &[0xDD, 0xCC]),
                MmioAccess::write(MMIO_BASE, &[0xBB, 0xAA])
            ]
        );
        m.mem.mmio_log.clear();
        m.cpu.set(Gpr::Rbx, 0x0040_2FFE);
        assert_eq!(
            m.run(&[0x89, 0x03]),
            Err(Error::Exception(Exception::PageFault {
                error_code: 0b010,
                linear: 0x0040_3000
            }))
        );
        assert!(m.mem.mmio_log.is_empty());
    }

    /// `Limits::fault_gpa`: only an instruction that accesses the faulting address
    /// before any side effect is carried out; any other changes nothing.
    #[test]
    fn only_an_instruction_that_touches_the_faulting_address_runs() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, MMIO_BASE + 0x10);
        m.cpu.set(Gpr::Rax, 0x1234_5678);
        // mov [rbx], eax explains a fault at any of its four bytes.
        m.limits.fault_gpa = Some(MMIO_BASE + 0x13);
        assert_eq!(m.run(&[0x89, 0x03]), Ok(Outcome::Retired));
        assert_eq!(m.mem.mmio_get(MMIO_BASE + 0x10, 4), 0x1234_5678);
        // ... but not one at the next byte: no device sees anything, RIP stays.
        m.cpu.rip = 0x10000;
        m.mem.mmio_log.clear();
        m.limits.fault_gpa = Some(MMIO_BASE + 0x14);
        assert_eq!(
            m.run(&[0x89, 0x03]),
            Err(Error::Unexplained {
                gpa: MMIO_BASE + 0x14
            })
        );
        assert!(m.mem.mmio_log.is_empty());
        assert_eq!(m.cpu.rip, 0x10000);
        // A load from RAM completes its read, but its register write is undone.
        let before = m.cpu.clone();
        m.cpu.set(Gpr::Rbx, 0x2_0000);
        m.mem.write_u32(0x2_0000, 0xAAAA_AAAA);
        let before_rbx = m.cpu.get(Gpr::Rbx);
        assert!(matches!(
            m.run(&[0x8B, 0x03]),
            Err(Error::Unexplained { .. })
        ));
        assert_eq!(m.cpu.get(Gpr::Rax), before.get(Gpr::Rax));
        assert_eq!(m.cpu.get(Gpr::Rbx), before_rbx);
        assert_eq!((m.cpu.rip, m.cpu.rflags), (before.rip, before.rflags));
        // A store to RAM is refused before it happens.
        m.cpu.set(Gpr::Rax, 0x5555);
        assert!(matches!(
            m.run(&[0x89, 0x03]),
            Err(Error::Unexplained { .. })
        ));
        assert_eq!(m.mem.read_u64(0x2_0000) as u32, 0xAAAA_AAAA);
        // REP MOVSB with RCX = 0 touches nothing: it cannot have faulted.
        m.cpu.set(Gpr::Rcx, 0);
        assert!(matches!(
            m.run(&[0xF3, 0xA4]),
            Err(Error::Unexplained { .. })
        ));
        assert_eq!(m.cpu.rip, 0x10000);
        // An exception before the faulting address is reached is not the guest's
        // either: the processor did not raise it.
        assert!(matches!(
            m.run(&[0xF0, 0x89, 0x03]), // LOCK MOV: #UD
            Err(Error::Unexplained { .. })
        ));
    }

    /// PUSH of a device register with the stack in another device's registers (a
    /// fault while delivering an event, say, at the stack): the device register is
    /// not read, nothing is pushed.
    #[test]
    fn a_device_read_before_the_faulting_address_is_refused() {
        let mut m = Machine::long_mode();
        m.cpu.set(Gpr::Rbx, MMIO_BASE);
        m.cpu.set(Gpr::Rsp, MMIO_BASE + 0x1000);
        m.limits.fault_gpa = Some(MMIO_BASE + 0xFF8);
        let rsp = m.cpu.get(Gpr::Rsp);
        assert!(matches!(
            m.run(&[0xFF, 0x33]), // push qword [rbx]
            Err(Error::Unexplained { .. })
        ));
        assert!(m.mem.mmio_log.is_empty());
        assert_eq!(m.cpu.get(Gpr::Rsp), rsp);
        // With the fault at the source, the same instruction runs.
        m.limits.fault_gpa = Some(MMIO_BASE + 4);
        assert_eq!(m.run(&[0xFF, 0x33]), Ok(Outcome::Retired));
        assert_eq!(m.cpu.get(Gpr::Rsp), rsp - 8);
    }

    #[test]
    fn code_is_never_fetched_from_a_device() {
        let mut m = Machine::long_mode();
        m.cpu.rip = MMIO_BASE;
        m.mem.mmio_fill(MMIO_BASE, &[0x90]);
        assert_eq!(m.step(), Err(Error::FetchNotRam { gpa: MMIO_BASE }));
        assert!(m.mem.mmio_log.is_empty());
    }

    /// The length of a prefixed instruction, for exits without a reported length.
    #[test]
    fn instruction_length_counts_prefixes() {
        let mut m = Machine::long_mode();
        for (code, len) in [
            (&[0x0F, 0xA2][..], 2),             // cpuid
            (&[0x66, 0x0F, 0xA2][..], 3),       // o16 cpuid
            (&[0xF3, 0x2E, 0x0F, 0x32][..], 4), // rep cs rdmsr
            (&[0x44, 0x0F, 0x22, 0xC0][..], 4), // mov cr8, rax
            (&[0x2E, 0xF4][..], 2),             // cs hlt
        ] {
            m.mem.ram_fill(0x10000, code);
            assert_eq!(
                crate::instruction_length(&mut m.cpu, &mut m.mem),
                Ok(len),
                "{code:02x?}"
            );
        }
        assert_eq!(m.cpu.rip, 0x10000, "nothing is changed");
    }
}
