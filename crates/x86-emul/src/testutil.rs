//! Test doubles: a vCPU as a plain struct, and guest memory that records every call
//! the emulator makes and checks it against the contract of [`crate::memory`].

use std::vec::Vec;

use crate::cpu::bits::*;
use crate::cpu::{ControlRegs, Cpu, Gpr, Segment, Sreg};
use crate::memory::{Memory, PhysError, PhysMemory};
use crate::{emulate, Error, Fetch, Limits, Outcome};

/// The device window the fake bus answers in.
pub const MMIO_BASE: u64 = 0xC000_0000;
pub const MMIO_SIZE: u64 = 0x3000;

#[derive(Clone, Debug)]
pub struct FakeCpu {
    pub gprs: [u64; 16],
    pub rip: u64,
    pub rflags: u64,
    pub segs: [Segment; 7],
    pub cr: ControlRegs,
    pub cpl: u8,
    pub maxphy: u8,
}

impl FakeCpu {
    pub fn get(&self, r: Gpr) -> u64 {
        self.gprs[r as usize]
    }
    pub fn set(&mut self, r: Gpr, v: u64) {
        self.gprs[r as usize] = v;
    }
    pub fn seg(&mut self, s: Sreg) -> &mut Segment {
        &mut self.segs[s as usize]
    }
}

impl Cpu for FakeCpu {
    fn gpr(&self, reg: Gpr) -> u64 {
        self.gprs[reg as usize]
    }
    fn set_gpr(&mut self, reg: Gpr, value: u64) {
        self.gprs[reg as usize] = value;
    }
    fn rip(&self) -> u64 {
        self.rip
    }
    fn set_rip(&mut self, value: u64) {
        self.rip = value;
    }
    fn rflags(&self) -> u64 {
        self.rflags
    }
    fn set_rflags(&mut self, value: u64) {
        self.rflags = value;
    }
    fn segment(&self, reg: Sreg) -> Segment {
        self.segs[reg as usize]
    }
    fn control_regs(&self) -> ControlRegs {
        self.cr
    }
    fn cpl(&self) -> u8 {
        self.cpl
    }
    fn max_phys_addr_bits(&self) -> u8 {
        self.maxphy
    }
}

/// One call into the fake bus.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Call {
    ReadPhys { gpa: u64, len: usize, ok: bool },
    WritePhys { gpa: u64, len: usize, ok: bool },
    MmioRead { gpa: u64, len: usize, ok: bool },
    MmioWrite { gpa: u64, len: usize, ok: bool },
    PioRead { port: u16, len: usize },
    PioWrite { port: u16, len: usize },
}

/// An access a device saw.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MmioAccess {
    pub write: bool,
    pub gpa: u64,
    pub data: Vec<u8>,
}

impl MmioAccess {
    pub fn write(gpa: u64, data: &[u8]) -> Self {
        MmioAccess {
            write: true,
            gpa,
            data: data.to_vec(),
        }
    }
    pub fn read(gpa: u64, data: &[u8]) -> Self {
        MmioAccess {
            write: false,
            gpa,
            data: data.to_vec(),
        }
    }
}

/// RAM at `[0, ram.len())`, devices in `[MMIO_BASE, MMIO_BASE + MMIO_SIZE)` split
/// into regions at `region_ends`, ports echo a counter.
pub struct FakeMemory {
    pub ram: Vec<u8>,
    pub mmio: Vec<u8>,
    pub region_ends: Vec<u64>,
    pub mmio_log: Vec<MmioAccess>,
    pub pio_log: Vec<(bool, u16, Vec<u8>)>,
    pub calls: Vec<Call>,
    pub record_calls: bool,
    pub pio_counter: u8,
    /// The bytes the bulk string I/O path still takes or gives (a DRQ
    /// block's rest); `None`: no bulk path, as for a device without one.
    pub pio_bulk: Option<usize>,
    /// Each bulk call: (write, port, bytes moved).
    pub pio_bulk_log: Vec<(bool, u16, usize)>,
}

impl FakeMemory {
    pub fn new(ram_size: usize) -> Self {
        FakeMemory {
            ram: vec![0; ram_size],
            mmio: vec![0; MMIO_SIZE as usize],
            region_ends: vec![MMIO_BASE + MMIO_SIZE],
            mmio_log: Vec::new(),
            pio_log: Vec::new(),
            calls: Vec::new(),
            record_calls: true,
            pio_counter: 0,
            pio_bulk: None,
            pio_bulk_log: Vec::new(),
        }
    }
    pub fn write_u64(&mut self, gpa: u64, v: u64) {
        self.ram[gpa as usize..gpa as usize + 8].copy_from_slice(&v.to_le_bytes());
    }
    pub fn write_u32(&mut self, gpa: u64, v: u32) {
        self.ram[gpa as usize..gpa as usize + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub fn read_u64(&self, gpa: u64) -> u64 {
        self.ram_get(gpa, 8)
    }
    pub fn read_u32(&self, gpa: u64) -> u32 {
        self.ram_get(gpa, 4) as u32
    }
    pub fn ram_get(&self, gpa: u64, len: usize) -> u64 {
        let mut b = [0u8; 8];
        b[..len].copy_from_slice(&self.ram[gpa as usize..gpa as usize + len]);
        u64::from_le_bytes(b)
    }
    pub fn ram_fill(&mut self, gpa: u64, data: &[u8]) {
        self.ram[gpa as usize..gpa as usize + data.len()].copy_from_slice(data);
    }
    pub fn mmio_fill(&mut self, gpa: u64, data: &[u8]) {
        let o = (gpa - MMIO_BASE) as usize;
        self.mmio[o..o + data.len()].copy_from_slice(data);
    }
    pub fn mmio_get(&self, gpa: u64, len: usize) -> u64 {
        let o = (gpa - MMIO_BASE) as usize;
        let mut b = [0u8; 8];
        b[..len].copy_from_slice(&self.mmio[o..o + len]);
        u64::from_le_bytes(b)
    }

    fn in_ram(&self, gpa: u64, len: usize) -> bool {
        gpa.checked_add(len as u64)
            .is_some_and(|end| end <= self.ram.len() as u64)
    }

    /// Bytes of the device region that contains `gpa`, from `gpa` to its end.
    fn region_left(&self, gpa: u64) -> Option<usize> {
        if !(MMIO_BASE..MMIO_BASE + MMIO_SIZE).contains(&gpa) {
            return None;
        }
        let end = self
            .region_ends
            .iter()
            .copied()
            .filter(|&e| e > gpa)
            .min()?;
        Some((end - gpa) as usize)
    }

    /// The contract every call must keep: 1..=16 bytes (64 for the run ahead's
    /// code window), within one 4 KiB page.
    fn check(&self, gpa: u64, len: usize, max: usize) {
        assert!(
            (1..=max).contains(&len),
            "access of {len} bytes at {gpa:#x}"
        );
        assert_eq!(
            gpa >> 12,
            (gpa + len as u64 - 1) >> 12,
            "access of {len} bytes at {gpa:#x} crosses a page"
        );
    }

    fn record(&mut self, c: Call) {
        if self.record_calls {
            self.calls.push(c);
        }
    }

    /// Every device call must follow a RAM call at the same address that said NotRam.
    /// The longest RAM call the contract allows: 16 bytes, or a page's
    /// worth where bulk string I/O is on.
    fn max_phys_len(&self) -> usize {
        if self.pio_bulk.is_some() {
            crate::STRING_IO_CHUNK
        } else {
            // An instruction fetch, or the run ahead's code window.
            crate::run_ahead::CODE_WINDOW
        }
    }

    pub fn assert_protocol(&self) {
        for (i, c) in self.calls.iter().enumerate() {
            if let Call::MmioRead { gpa, .. } | Call::MmioWrite { gpa, .. } = c {
                let prev = i.checked_sub(1).map(|p| &self.calls[p]);
                let ok = matches!(prev, Some(Call::ReadPhys { gpa: g, ok: false, .. }) | Some(Call::WritePhys { gpa: g, ok: false, .. }) if g == gpa);
                assert!(
                    ok,
                    "device call {c:?} without a failed RAM call before it: {prev:?}"
                );
            }
        }
    }
}

impl PhysMemory for FakeMemory {
    fn read_phys(&mut self, gpa: u64, data: &mut [u8]) -> Result<(), PhysError> {
        self.check(gpa, data.len(), self.max_phys_len());
        let ok = self.in_ram(gpa, data.len());
        self.record(Call::ReadPhys {
            gpa,
            len: data.len(),
            ok,
        });
        if !ok {
            return Err(PhysError::NotRam);
        }
        data.copy_from_slice(&self.ram[gpa as usize..gpa as usize + data.len()]);
        Ok(())
    }
    fn write_phys(&mut self, gpa: u64, data: &[u8]) -> Result<(), PhysError> {
        self.check(gpa, data.len(), self.max_phys_len());
        let ok = self.in_ram(gpa, data.len());
        self.record(Call::WritePhys {
            gpa,
            len: data.len(),
            ok,
        });
        if !ok {
            return Err(PhysError::NotRam);
        }
        self.ram[gpa as usize..gpa as usize + data.len()].copy_from_slice(data);
        Ok(())
    }
}

impl Memory for FakeMemory {
    fn mmio_read(&mut self, gpa: u64, data: &mut [u8]) -> Result<usize, PhysError> {
        self.check(gpa, data.len(), 8);
        let Some(left) = self.region_left(gpa) else {
            self.record(Call::MmioRead {
                gpa,
                len: data.len(),
                ok: false,
            });
            return Err(PhysError::Unhandled);
        };
        let n = data.len().min(left);
        self.record(Call::MmioRead {
            gpa,
            len: n,
            ok: true,
        });
        let o = (gpa - MMIO_BASE) as usize;
        data[..n].copy_from_slice(&self.mmio[o..o + n]);
        self.mmio_log.push(MmioAccess::read(gpa, &data[..n]));
        Ok(n)
    }
    fn mmio_write(&mut self, gpa: u64, data: &[u8]) -> Result<usize, PhysError> {
        self.check(gpa, data.len(), 8);
        let Some(left) = self.region_left(gpa) else {
            self.record(Call::MmioWrite {
                gpa,
                len: data.len(),
                ok: false,
            });
            return Err(PhysError::Unhandled);
        };
        let n = data.len().min(left);
        self.record(Call::MmioWrite {
            gpa,
            len: n,
            ok: true,
        });
        let o = (gpa - MMIO_BASE) as usize;
        self.mmio[o..o + n].copy_from_slice(&data[..n]);
        self.mmio_log.push(MmioAccess::write(gpa, &data[..n]));
        Ok(n)
    }
    fn pio_read(&mut self, port: u16, data: &mut [u8]) -> Result<(), PhysError> {
        assert!(matches!(data.len(), 1 | 2 | 4));
        self.record(Call::PioRead {
            port,
            len: data.len(),
        });
        for b in data.iter_mut() {
            self.pio_counter = self.pio_counter.wrapping_add(1);
            *b = self.pio_counter;
        }
        self.pio_log.push((false, port, data.to_vec()));
        Ok(())
    }
    fn pio_write(&mut self, port: u16, data: &[u8]) -> Result<(), PhysError> {
        assert!(matches!(data.len(), 1 | 2 | 4));
        self.record(Call::PioWrite {
            port,
            len: data.len(),
        });
        self.pio_log.push((true, port, data.to_vec()));
        Ok(())
    }
    fn pio_string_room(&mut self, _port: u16, elem: usize, _write: bool) -> usize {
        self.pio_bulk.unwrap_or(0) / elem * elem
    }
    fn pio_read_string(&mut self, port: u16, elem: usize, data: &mut [u8]) -> usize {
        let n = self
            .pio_string_room(port, elem, false)
            .min(data.len() / elem * elem);
        self.pio_bulk = self.pio_bulk.map(|b| b - n);
        for b in &mut data[..n] {
            self.pio_counter = self.pio_counter.wrapping_add(1);
            *b = self.pio_counter;
        }
        if n > 0 {
            self.pio_bulk_log.push((false, port, n));
        }
        n
    }
    fn pio_write_string(&mut self, port: u16, elem: usize, data: &[u8]) -> usize {
        let n = self
            .pio_string_room(port, elem, true)
            .min(data.len() / elem * elem);
        self.pio_bulk = self.pio_bulk.map(|b| b - n);
        if n > 0 {
            self.pio_bulk_log.push((true, port, n));
            self.pio_log.push((true, port, data[..n].to_vec()));
        }
        n
    }
}

/// Segment attributes in VMCB layout.
pub const ATTR_DATA: u16 = 0x93 | 1 << 10 | 1 << 11;
pub const ATTR_CODE32: u16 = 0x9B | 1 << 10 | 1 << 11;
pub const ATTR_CODE64: u16 = 0x9B | 1 << 9 | 1 << 11;
pub const ATTR_REAL: u16 = 0x93;

pub fn flat(attr: u16) -> Segment {
    Segment {
        selector: 0x10,
        base: 0,
        limit: 0xFFFF_FFFF,
        attr,
    }
}

/// A vCPU and its memory, with code placed at RIP before each run.
pub struct Machine {
    pub cpu: FakeCpu,
    pub mem: FakeMemory,
    pub limits: Limits,
}

impl Machine {
    /// 64-bit mode, CPL 0, 4-level paging identity-mapping the low 4 GiB with 1 GiB
    /// pages (PML4 at 0x1000, PDPT at 0x2000), 4 MiB of RAM, RIP = 0x10000.
    pub fn long_mode() -> Self {
        Machine::long_mode_with_ram(4 << 20)
    }

    /// As [`Machine::long_mode`], with `ram` bytes of RAM (at least 64 KiB).
    pub fn long_mode_with_ram(ram: usize) -> Self {
        let mut mem = FakeMemory::new(ram);
        mem.write_u64(0x1000, 0x2000 | 0x7);
        for i in 0..4 {
            mem.write_u64(0x2000 + i * 8, (i << 30) | 0x87);
        }
        let mut segs = [flat(ATTR_DATA); 7];
        segs[Sreg::Cs as usize] = flat(ATTR_CODE64);
        segs[Sreg::Tr as usize] = Segment {
            selector: 0x28,
            base: 0x3000,
            limit: 0x67,
            attr: 0x8B,
        };
        let cpu = FakeCpu {
            gprs: [0; 16],
            rip: 0x10000,
            rflags: 0x2,
            segs,
            cr: ControlRegs {
                cr0: CR0_PE | CR0_PG | CR0_WP,
                cr3: 0x1000,
                cr4: CR4_PAE,
                efer: EFER_LMA | EFER_NXE | (1 << 8),
            },
            cpl: 0,
            maxphy: 40,
        };
        Machine {
            cpu,
            mem,
            limits: Limits::default(),
        }
    }

    /// Map the first GiB with 2 MiB pages (PD at 0x4000) instead, leaving entry
    /// `hole` not present.
    pub fn map_low_2m_pages_except(&mut self, hole: u64) {
        for i in 0..512u64 {
            let e = if i == hole { 0 } else { (i << 21) | 0x87 };
            self.mem.write_u64(0x4000 + i * 8, e);
        }
        self.mem.write_u64(0x2000, 0x4000 | 0x7);
    }

    /// Flat 32-bit protected mode, paging off.
    pub fn protected32() -> Self {
        let mut m = Machine::long_mode();
        m.cpu.cr = ControlRegs {
            cr0: CR0_PE,
            cr3: 0,
            cr4: 0,
            efer: 0,
        };
        m.cpu.segs[Sreg::Cs as usize] = flat(ATTR_CODE32);
        m
    }

    /// Real mode with CS = 0, DS = 0x1000, ES = 0x2000, SS = 0x3000, RIP = 0x7C00.
    pub fn real_mode() -> Self {
        let mut m = Machine::long_mode();
        m.cpu.cr = ControlRegs::default();
        let real = |sel: u16| Segment {
            selector: sel,
            base: u64::from(sel) << 4,
            limit: 0xFFFF,
            attr: ATTR_REAL,
        };
        m.cpu.segs[Sreg::Cs as usize] = real(0);
        m.cpu.segs[Sreg::Ds as usize] = real(0x1000);
        m.cpu.segs[Sreg::Es as usize] = real(0x2000);
        m.cpu.segs[Sreg::Ss as usize] = real(0x3000);
        m.cpu.segs[Sreg::Fs as usize] = real(0);
        m.cpu.segs[Sreg::Gs as usize] = real(0);
        m.cpu.rip = 0x7C00;
        m
    }

    /// Place `code` at CS:RIP (paging must identity-map it) and emulate one step.
    pub fn run(&mut self, code: &[u8]) -> Result<Outcome, Error> {
        let at = (self.cpu.segs[Sreg::Cs as usize].base + self.cpu.rip) & 0xFFFF_FFFF;
        self.mem.ram_fill(at, code);
        self.step()
    }

    /// Emulate one step at the current RIP.
    pub fn step(&mut self) -> Result<Outcome, Error> {
        let r = emulate(&mut self.cpu, &mut self.mem, Fetch::Guest, &self.limits);
        self.mem.assert_protocol();
        r
    }

    /// Run until the instruction retires, counting the calls.
    pub fn run_to_retire(&mut self, code: &[u8]) -> (Result<Outcome, Error>, usize) {
        let mut r = self.run(code);
        let mut n = 1;
        while r == Ok(Outcome::Yielded) {
            r = self.step();
            n += 1;
        }
        (r, n)
    }
}

pub use crate::rng::Rng;
