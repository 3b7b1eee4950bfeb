//! Bus-master IDE DMA of the PIIX3 (82371SB datasheet 2.7 "Bus master IDE
//! I/O registers" and 3.5 "Bus master function"; the register model is
//! SFF-8038i's): eight bytes per channel at BAR4 (primary at +0, secondary
//! at +8).
//!
//! | offset | register | bits |
//! |---|---|---|
//! | +0 | BMICX command | 0 SSBM start/stop, 3 RWCON (1 = the controller writes memory, i.e. a device-to-host read) |
//! | +2 | BMISX status | 0 active (RO), 1 error (R/WC), 2 interrupt (R/WC), 5-6 drive 0/1 DMA capable (R/W) |
//! | +4 | BMIDTPX | descriptor table pointer, bits 31:2 |
//!
//! A physical region descriptor (PRD) is 8 bytes: base address (bits 31:1),
//! byte count (bits 15:1 of the second dword; 0 means 64 KiB) and EOT (bit 31).
//! The table pointer advances by 8 inside its 64 KiB page (the datasheet
//! forbids a table that crosses one), so a table without EOT wraps there
//! rather than walking through the address space; every region moves at
//! least two bytes, so the walk ends when the device's transfer does.
//!
//! The bus master moves at most [`DMA_BUDGET`] bytes per call of the
//! platform (one VM exit): a longer transfer (a READ(12) of a whole disc)
//! keeps its place in the table in [`BusMaster::cursor`] and goes on at the
//! next call, while ACTIVE stays set, as a transfer in progress shows on
//! the hardware. A table without EOT wraps in its 64 KiB page and so is
//! walked again and again, each pass within the budget; the transfer ends
//! when the device's does.
//!
//! Every descriptor fetch and every data move goes through
//! [`GuestMemory`]; a descriptor or a region outside guest RAM stops the
//! walk with [`DmaFault::OutsideRam`] before a byte of that access moves.

use guest_memory::{Gpa, GuestMemory};

/// BMICX bits.
pub mod command {
    /// SSBM: start (1) / stop (0) bus master operation.
    pub const START: u8 = 0x01;
    /// RWCON: the bus master writes memory (device-to-host transfer).
    pub const WRITE_TO_MEMORY: u8 = 0x08;
    pub const WRITABLE: u8 = START | WRITE_TO_MEMORY;
}

/// BMISX bits.
pub mod status {
    /// The bus master is active (set by START, cleared when the last region
    /// with EOT was used up, or by a stop).
    pub const ACTIVE: u8 = 0x01;
    /// A transfer hit a memory error (PCI master/target abort; here: memory
    /// outside guest RAM, or a descriptor table that ended too early).
    pub const ERROR: u8 = 0x02;
    /// The channel's IDE interrupt line rose.
    pub const INTERRUPT: u8 = 0x04;
    pub const DRIVE0_DMA_CAPABLE: u8 = 0x20;
    pub const DRIVE1_DMA_CAPABLE: u8 = 0x40;
    /// Bits software clears by writing one.
    pub const W1C: u8 = ERROR | INTERRUPT;
    /// Bits software writes.
    pub const RW: u8 = DRIVE0_DMA_CAPABLE | DRIVE1_DMA_CAPABLE;
}

/// Bytes the bus master moves for one channel per call of the platform
/// (per VM exit): the work a guest can make Keel do between two entries is
/// bounded whatever transfer length it asks for. Linux's largest ATA
/// request through the PIIX (128 PRD entries of a 4 KiB page) moves in the
/// one exit that starts it, not in four.
pub const DMA_BUDGET: usize = 512 * 1024;

/// Register offsets within one channel's eight bytes.
const BMICX: u8 = 0;
const BMISX: u8 = 2;
const BMIDTP: u8 = 4;

/// One channel's bus-master registers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BusMaster {
    pub command: u8,
    pub status: u8,
    /// Descriptor table pointer (bits 1:0 read zero).
    pub prd_table: u32,
    /// Where a transfer in progress stands in the table; `None` before
    /// the first move after START, and after a stop (SFF-8038i: stopping
    /// the bus master loses its state; a restart reads the table afresh).
    pub cursor: Option<PrdCursor>,
}

impl BusMaster {
    /// Power-on values (datasheet: all zero).
    pub fn reset(&mut self) {
        *self = BusMaster::default();
    }

    pub fn active(&self) -> bool {
        self.status & status::ACTIVE != 0
    }

    /// Reads the byte at `offset` (0..8) of this channel's block.
    pub fn read(&self, offset: u8) -> u8 {
        match offset {
            BMICX => self.command,
            BMISX => self.status,
            o @ BMIDTP..=7 => (self.prd_table >> (8 * (o - BMIDTP))) as u8,
            _ => 0,
        }
    }

    /// Writes the byte at `offset`. START going 0 -> 1 sets ACTIVE; going
    /// 1 -> 0 clears it (the PIIX stops the engine; a transfer in flight is
    /// abandoned, which in Keel's synchronous model cannot be observed).
    pub fn write(&mut self, offset: u8, v: u8) {
        match offset {
            BMICX => {
                let was = self.command & command::START;
                self.command = v & command::WRITABLE;
                match (was, v & command::START) {
                    (0, command::START) => {
                        self.status |= status::ACTIVE;
                        self.cursor = None;
                    }
                    (command::START, 0) => {
                        self.status &= !status::ACTIVE;
                        self.cursor = None;
                    }
                    _ => {}
                }
            }
            BMISX => {
                self.status &= !(v & status::W1C);
                self.status = (self.status & !status::RW) | (v & status::RW);
            }
            o @ BMIDTP..=7 => {
                let shift = 8 * u32::from(o - BMIDTP);
                let mask = 0xFFu32 << shift;
                self.prd_table = ((self.prd_table & !mask) | (u32::from(v) << shift)) & !3;
            }
            _ => {}
        }
    }
}

/// Why a walk ended before the device's transfer did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaFault {
    /// A descriptor or a region lies (partly) outside guest RAM.
    OutsideRam,
    /// The region with EOT was used up while the device had data left.
    TableExhausted,
}

/// A place in a descriptor table: the next descriptor and what is left of
/// the current region.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PrdCursor {
    /// Address of the next descriptor.
    next: u32,
    addr: Gpa,
    left: u32,
    /// The current region is the table's last.
    eot: bool,
}

impl PrdCursor {
    /// The start of the table at `table`.
    pub fn new(table: u32) -> Self {
        PrdCursor {
            next: table & !3,
            ..PrdCursor::default()
        }
    }
}

/// Walks a descriptor table, moving data between the device and guest RAM,
/// at most `budget` bytes.
pub struct PrdWalker<'m> {
    mem: &'m GuestMemory,
    at: PrdCursor,
    budget: usize,
}

impl<'m> PrdWalker<'m> {
    /// A walk from `at` that may move `budget` bytes.
    pub fn new(mem: &'m GuestMemory, at: PrdCursor, budget: usize) -> Self {
        PrdWalker { mem, at, budget }
    }

    /// Where the walk stands, to go on from there later.
    pub fn cursor(&self) -> PrdCursor {
        self.at
    }

    /// Bytes this walk may still move. A device moves its data in pieces
    /// no larger than this and pauses when it reaches zero.
    pub fn budget_left(&self) -> usize {
        self.budget
    }

    /// Whether the region with EOT has been used up exactly.
    pub fn exhausted(&self) -> bool {
        self.at.eot && self.at.left == 0
    }

    fn next_region(&mut self) -> Result<(), DmaFault> {
        let c = &mut self.at;
        if c.eot {
            return Err(DmaFault::TableExhausted);
        }
        let mut d = [0u8; 8];
        self.mem
            .read(Gpa::from(c.next), &mut d)
            .map_err(|_| DmaFault::OutsideRam)?;
        let base = u32::from_le_bytes([d[0], d[1], d[2], d[3]]) & !1;
        let count = u32::from(u16::from_le_bytes([d[4], d[5]]) & !1);
        c.addr = Gpa::from(base);
        c.left = if count == 0 { 0x1_0000 } else { count };
        c.eot = d[7] & 0x80 != 0;
        c.next = (c.next & 0xFFFF_0000) | (c.next.wrapping_add(8) & 0xFFFF);
        Ok(())
    }

    /// Copies `data` into guest memory along the table.
    pub fn to_guest(&mut self, mut data: &[u8]) -> Result<(), DmaFault> {
        while !data.is_empty() {
            if self.at.left == 0 {
                self.next_region()?;
            }
            let n = data.len().min(self.at.left as usize);
            self.mem
                .write(self.at.addr, &data[..n])
                .map_err(|_| DmaFault::OutsideRam)?;
            self.advance(n);
            data = &data[n..];
        }
        Ok(())
    }

    /// Fills `data` from guest memory along the table.
    pub fn from_guest(&mut self, mut data: &mut [u8]) -> Result<(), DmaFault> {
        while !data.is_empty() {
            if self.at.left == 0 {
                self.next_region()?;
            }
            let n = data.len().min(self.at.left as usize);
            let (now, rest) = data.split_at_mut(n);
            self.mem
                .read(self.at.addr, now)
                .map_err(|_| DmaFault::OutsideRam)?;
            self.advance(n);
            data = rest;
        }
        Ok(())
    }

    fn advance(&mut self, n: usize) {
        self.at.addr += n as u64;
        self.at.left -= n as u32;
        self.budget = self.budget.saturating_sub(n);
    }
}
