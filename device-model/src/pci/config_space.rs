//! The 256-byte configuration space of a PCI function with the standard
//! type-0 header (PCI Local Bus spec 3.0, 6.1-6.2.5), which every emulated
//! function embeds.
//!
//! Each byte has a write mask and a write-1-to-clear mask. BAR sizing falls
//! out of the masks: the address bits below the BAR's size are read-only
//! zero and the type bits are read-only, so writing all-ones and reading back
//! gives the size mask with the type bits (spec 6.2.5.1). After each write the
//! decoded BAR and ROM addresses are recomputed and every one that changed is
//! reported as a [`ConfigChange::Region`].

use alloc::vec::Vec;
use core::fmt;

use super::{ConfigChange, RegionId};
use crate::bus::AddressSpace;

/// Standard header offsets (spec 6.1, figure 6-1).
pub mod reg {
    pub const VENDOR_ID: u8 = 0x00;
    pub const DEVICE_ID: u8 = 0x02;
    pub const COMMAND: u8 = 0x04;
    pub const STATUS: u8 = 0x06;
    pub const REVISION_ID: u8 = 0x08;
    /// Programming interface, sub-class, base class (three bytes).
    pub const CLASS_CODE: u8 = 0x09;
    pub const CACHE_LINE_SIZE: u8 = 0x0C;
    pub const LATENCY_TIMER: u8 = 0x0D;
    pub const HEADER_TYPE: u8 = 0x0E;
    pub const BAR0: u8 = 0x10;
    pub const SUBSYSTEM_VENDOR_ID: u8 = 0x2C;
    pub const SUBSYSTEM_ID: u8 = 0x2E;
    pub const EXPANSION_ROM: u8 = 0x30;
    pub const CAPABILITIES_POINTER: u8 = 0x34;
    pub const INTERRUPT_LINE: u8 = 0x3C;
    pub const INTERRUPT_PIN: u8 = 0x3D;
}

/// Command register bits (spec 6.2.2).
pub mod command {
    pub const IO_SPACE: u16 = 1 << 0;
    pub const MEMORY_SPACE: u16 = 1 << 1;
    pub const BUS_MASTER: u16 = 1 << 2;
    pub const PARITY_ERROR_RESPONSE: u16 = 1 << 6;
    pub const SERR_ENABLE: u16 = 1 << 8;
    pub const INTX_DISABLE: u16 = 1 << 10;
}

/// Status register bits (spec 6.2.3).
pub mod status {
    pub const INTERRUPT_STATUS: u16 = 1 << 3;
    pub const CAPABILITIES_LIST: u16 = 1 << 4;
    /// The error bits software clears by writing 1: master data parity error,
    /// signaled/received target abort, received master abort, signaled system
    /// error, detected parity error.
    pub const ERROR_BITS: u16 = 1 << 8 | 0xF800;
}

/// Header type byte: bit 7 says the device has more than one function.
pub const HEADER_TYPE_MULTIFUNCTION: u8 = 0x80;

/// What a base address register decodes (spec 6.2.5.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// I/O space; at most 256 bytes.
    Io,
    /// Memory below 4 GiB.
    Mem32 { prefetchable: bool },
    /// Memory anywhere in 64-bit space; takes this BAR and the next.
    Mem64 { prefetchable: bool },
}

/// Why a BAR or ROM could not be declared (a programming error in a device model).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSpaceError {
    /// BAR index past 5 (or past 4 for a 64-bit BAR).
    BarIndex { index: u8 },
    /// The BAR slot (or the upper half a 64-bit BAR needs) is already taken.
    BarTaken { index: u8 },
    /// Not a power of two in the range the kind allows.
    BadSize { what: &'static str, size: u64 },
    /// A capability of `len` bytes does not fit in the space left after 0x40.
    NoCapabilitySpace { id: u8, len: u8 },
    /// An MSI-X table or PBA does not lie inside a memory BAR of the function.
    MsixPlacement { bar: u8, offset: u32, len: u64 },
}

impl fmt::Display for ConfigSpaceError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            ConfigSpaceError::BarIndex { index } => write!(
                f,
                "BAR {index} does not exist: a type-0 header has BARs 0-5, and a 64-bit BAR needs the next one too"
            ),
            ConfigSpaceError::BarTaken { index } => {
                write!(f, "BAR {index} (or the upper half it needs) is already declared")
            }
            ConfigSpaceError::BadSize { what, size } => write!(
                f,
                "a {what} of {size:#x} bytes cannot be decoded: the size must be a power of two in the range PCI allows for it"
            ),
            ConfigSpaceError::NoCapabilitySpace { id, len } => write!(
                f,
                "capability {id:#04x} of {len} bytes does not fit in configuration space 0x40-0xFF"
            ),
            ConfigSpaceError::MsixPlacement { bar, offset, len } => write!(
                f,
                "an MSI-X structure of {len:#x} bytes at offset {offset:#x} does not fit in memory BAR {bar}"
            ),
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Slot {
    Empty,
    Bar {
        kind: BarKind,
        size: u64,
    },
    /// The upper dword of the 64-bit BAR in the slot before.
    Upper,
}

/// The highest address a 64-bit BAR may decode at: x86-64 physical
/// addresses are at most 52 bits (SDM Vol 3A 4.1.4), so a BAR above that,
/// such as one half-way through being programmed with its upper dword still
/// all-ones, decodes nowhere.
const MAX_PHYS_ADDR: u64 = (1 << 52) - 1;

/// Index of the ROM in the decoded-address cache (after the six BARs).
const ROM_SLOT: usize = 6;

/// A function's configuration space: header, masks, BARs, expansion ROM.
#[derive(Clone)]
pub struct ConfigSpace {
    data: [u8; 256],
    /// The power-on contents, restored by [`ConfigSpace::reset`].
    initial: [u8; 256],
    /// Bits software may write.
    wmask: [u8; 256],
    /// Bits software clears by writing 1.
    w1c: [u8; 256],
    slots: [Slot; 6],
    rom_size: Option<u64>,
    /// Decoded address of each BAR and of the ROM, as last reported.
    decoded: [Option<u64>; 7],
    /// The last capability of the list (its next pointer is the one to link).
    last_capability: Option<u8>,
    /// The first free byte for the next capability.
    next_capability: u16,
}

/// Where the capability list may start: the first byte after the type-0
/// header (spec 6.7: capabilities live in the device-specific 0x40-0xFF).
pub const FIRST_CAPABILITY: u8 = 0x40;

/// A walk of the capability list stops after this many entries: 0x40-0xFF
/// holds at most 48 dword-aligned capabilities, so a longer chain loops.
pub const MAX_CAPABILITIES: usize = 48;

impl ConfigSpace {
    /// A type-0 header for `vendor:device`, `revision`, the 24-bit `class_code`
    /// (base class, sub-class, programming interface) and `header_type`
    /// (0, or [`HEADER_TYPE_MULTIFUNCTION`] on function 0 of a multi-function device).
    ///
    /// Writable: command (I/O, memory, bus master, parity, SERR#, INTx
    /// disable), the status error bits (write-1-to-clear), cache line size,
    /// latency timer, interrupt line. No BARs until [`ConfigSpace::add_bar`].
    pub fn new(vendor: u16, device: u16, revision: u8, class_code: u32, header_type: u8) -> Self {
        let mut cs = ConfigSpace {
            data: [0; 256],
            initial: [0; 256],
            wmask: [0; 256],
            w1c: [0; 256],
            slots: [Slot::Empty; 6],
            rom_size: None,
            decoded: [None; 7],
            last_capability: None,
            next_capability: u16::from(FIRST_CAPABILITY),
        };
        cs.set_u16(reg::VENDOR_ID, vendor);
        cs.set_u16(reg::DEVICE_ID, device);
        cs.set_u8(reg::REVISION_ID, revision);
        let class = class_code.to_le_bytes();
        cs.set_u8(reg::CLASS_CODE, class[0]);
        cs.set_u8(reg::CLASS_CODE + 1, class[1]);
        cs.set_u8(reg::CLASS_CODE + 2, class[2]);
        cs.set_u8(reg::HEADER_TYPE, header_type);
        cs.set_wmask_u16(
            reg::COMMAND,
            command::IO_SPACE
                | command::MEMORY_SPACE
                | command::BUS_MASTER
                | command::PARITY_ERROR_RESPONSE
                | command::SERR_ENABLE
                | command::INTX_DISABLE,
        );
        cs.set_w1c_u16(reg::STATUS, status::ERROR_BITS);
        cs.set_wmask_u8(reg::CACHE_LINE_SIZE, 0xFF);
        cs.set_wmask_u8(reg::LATENCY_TIMER, 0xFF);
        cs.set_wmask_u8(reg::INTERRUPT_LINE, 0xFF);
        cs
    }

    /// Declares BAR `index` of `kind` decoding `size` bytes (a power of two:
    /// I/O 4..=256, memory 16 and up, below 4 GiB for 32-bit).
    pub fn add_bar(&mut self, index: u8, kind: BarKind, size: u64) -> Result<(), ConfigSpaceError> {
        let i = usize::from(index);
        let wide = matches!(kind, BarKind::Mem64 { .. });
        if i >= 6 || (wide && i >= 5) {
            return Err(ConfigSpaceError::BarIndex { index });
        }
        if !matches!(self.slots[i], Slot::Empty)
            || (wide && !matches!(self.slots[i + 1], Slot::Empty))
        {
            return Err(ConfigSpaceError::BarTaken { index });
        }
        let (what, min, max) = match kind {
            BarKind::Io => ("I/O BAR", 4, 256),
            BarKind::Mem32 { .. } => ("32-bit memory BAR", 16, 1 << 31),
            BarKind::Mem64 { .. } => ("64-bit memory BAR", 16, 1 << 63),
        };
        if !size.is_power_of_two() || size < min || size > max {
            return Err(ConfigSpaceError::BadSize { what, size });
        }
        let off = reg::BAR0 + 4 * index;
        let mask = !(size - 1);
        let (flags, low_mask) = match kind {
            BarKind::Io => (0b01, mask as u32 & !0b11),
            BarKind::Mem32 { prefetchable } => (u32::from(prefetchable) << 3, mask as u32 & !0xF),
            BarKind::Mem64 { prefetchable } => {
                (0b100 | u32::from(prefetchable) << 3, mask as u32 & !0xF)
            }
        };
        self.set_u32(off, flags);
        self.set_wmask_u32(off, low_mask);
        if wide {
            self.set_wmask_u32(off + 4, (mask >> 32) as u32);
            self.slots[i + 1] = Slot::Upper;
        }
        self.slots[i] = Slot::Bar { kind, size };
        Ok(())
    }

    /// Declares an expansion ROM of `size` bytes (a power of two, 2 KiB..=16 MiB).
    pub fn set_rom(&mut self, size: u64) -> Result<(), ConfigSpaceError> {
        if !size.is_power_of_two() || !(2048..=16 << 20).contains(&size) {
            return Err(ConfigSpaceError::BadSize {
                what: "expansion ROM",
                size,
            });
        }
        // Bits 31:11 address (those at or above the size), bit 0 enable.
        self.set_wmask_u32(reg::EXPANSION_ROM, (!(size - 1) as u32 & 0xFFFF_F800) | 1);
        self.rom_size = Some(size);
        Ok(())
    }

    /// Sets the interrupt pin (1 = INTA# .. 4 = INTD#, 0 = none).
    pub fn set_interrupt_pin(&mut self, pin: u8) {
        self.set_u8(reg::INTERRUPT_PIN, pin);
    }

    /// Points the capabilities list at `offset` and sets the status bit
    /// saying there is one; the capabilities themselves are the function's.
    pub fn set_capabilities_pointer(&mut self, offset: u8) {
        self.set_u8(reg::CAPABILITIES_POINTER, offset);
        let st = self.u16(reg::STATUS) | status::CAPABILITIES_LIST;
        self.set_u16(reg::STATUS, st);
    }

    /// Appends a capability of `len` bytes (at least the two header bytes)
    /// with ID `id` to the capability list (spec 6.7): placed at the next
    /// free dword in 0x40-0xFF, linked from the previous capability's next
    /// pointer (or from the capabilities pointer at 0x34, setting status bit
    /// 4), next pointer 0. All its bytes start read-only zero; the caller
    /// sets power-on values with `set_*` and writable bits with `set_wmask_*`.
    /// Returns the capability's offset.
    pub fn add_capability(&mut self, id: u8, len: u8) -> Result<u8, ConfigSpaceError> {
        let at = (self.next_capability + 3) & !3;
        let end = at + u16::from(len.max(2));
        if end > 256 {
            return Err(ConfigSpaceError::NoCapabilitySpace { id, len });
        }
        let at = at as u8;
        self.set_u8(at, id);
        self.set_u8(at + 1, 0);
        match self.last_capability {
            Some(prev) => self.set_u8(prev + 1, at),
            None => self.set_capabilities_pointer(at),
        }
        self.last_capability = Some(at);
        self.next_capability = end;
        Ok(at)
    }

    /// The capability list as `(offset, id)`, walked from 0x34 the way
    /// software does (pointers masked to a dword, spec 6.7); at most
    /// [`MAX_CAPABILITIES`] entries, so a looping chain ends.
    pub fn capabilities(&self) -> Vec<(u8, u8)> {
        let mut out = Vec::new();
        if self.u16(reg::STATUS) & status::CAPABILITIES_LIST == 0 {
            return out;
        }
        let mut at = self.u8(reg::CAPABILITIES_POINTER) & !3;
        while at >= FIRST_CAPABILITY && out.len() < MAX_CAPABILITIES {
            out.push((at, self.u8(at)));
            at = self.u8(at + 1) & !3;
        }
        out
    }

    /// The size BAR `index` was declared with (the lower half of a 64-bit BAR).
    pub fn bar_size(&self, index: u8) -> Option<(BarKind, u64)> {
        match self.slots.get(usize::from(index))? {
            Slot::Bar { kind, size } => Some((*kind, *size)),
            _ => None,
        }
    }

    /// Sets a byte's power-on value (and its current value).
    pub fn set_u8(&mut self, offset: u8, value: u8) {
        self.data[usize::from(offset)] = value;
        self.initial[usize::from(offset)] = value;
    }

    /// Sets a little-endian word's power-on value; bytes past 255 are dropped.
    pub fn set_u16(&mut self, offset: u8, value: u16) {
        self.set_bytes(offset, &value.to_le_bytes());
    }

    /// Sets a little-endian dword's power-on value; bytes past 255 are dropped.
    pub fn set_u32(&mut self, offset: u8, value: u32) {
        self.set_bytes(offset, &value.to_le_bytes());
    }

    fn set_bytes(&mut self, offset: u8, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            if let Some(o) = offset.checked_add(i as u8) {
                self.set_u8(o, b);
            }
        }
    }

    /// Makes the bits of `mask` in the byte at `offset` writable.
    pub fn set_wmask_u8(&mut self, offset: u8, mask: u8) {
        self.wmask[usize::from(offset)] = mask;
    }

    pub fn set_wmask_u16(&mut self, offset: u8, mask: u16) {
        Self::set_mask(&mut self.wmask, offset, &mask.to_le_bytes());
    }

    pub fn set_wmask_u32(&mut self, offset: u8, mask: u32) {
        Self::set_mask(&mut self.wmask, offset, &mask.to_le_bytes());
    }

    /// Makes the bits of `mask` in the word at `offset` write-1-to-clear.
    pub fn set_w1c_u16(&mut self, offset: u8, mask: u16) {
        Self::set_mask(&mut self.w1c, offset, &mask.to_le_bytes());
    }

    fn set_mask(masks: &mut [u8; 256], offset: u8, bytes: &[u8]) {
        for (i, &b) in bytes.iter().enumerate() {
            if let Some(o) = offset.checked_add(i as u8) {
                masks[usize::from(o)] = b;
            }
        }
    }

    /// The current byte at `offset`.
    pub fn u8(&self, offset: u8) -> u8 {
        self.data[usize::from(offset)]
    }

    /// The current little-endian word at `offset` (bytes past 255 read 0).
    pub fn u16(&self, offset: u8) -> u16 {
        let mut b = [0u8; 2];
        self.copy_out(offset, &mut b);
        u16::from_le_bytes(b)
    }

    /// The current little-endian dword at `offset` (bytes past 255 read 0).
    pub fn u32(&self, offset: u8) -> u32 {
        let mut b = [0u8; 4];
        self.copy_out(offset, &mut b);
        u32::from_le_bytes(b)
    }

    fn copy_out(&self, offset: u8, out: &mut [u8]) {
        for (i, b) in out.iter_mut().enumerate() {
            *b = self.data.get(usize::from(offset) + i).copied().unwrap_or(0);
        }
    }

    /// Changes a byte from the device side (no masks, no change report):
    /// for status bits the function itself raises.
    pub fn poke_u8(&mut self, offset: u8, value: u8) {
        self.data[usize::from(offset)] = value;
    }

    /// Changes a word from the device side (no masks, no change report).
    pub fn poke_u16(&mut self, offset: u8, value: u16) {
        for (i, b) in value.to_le_bytes().into_iter().enumerate() {
            if let Some(o) = offset.checked_add(i as u8) {
                self.data[usize::from(o)] = b;
            }
        }
    }

    /// Changes a dword from the device side (no masks, no change report):
    /// for MSI pending bits.
    pub fn poke_u32(&mut self, offset: u8, value: u32) {
        for (i, b) in value.to_le_bytes().into_iter().enumerate() {
            if let Some(o) = offset.checked_add(i as u8) {
                self.data[usize::from(o)] = b;
            }
        }
    }

    /// Records whether the function asserts INTx (status bit 3, spec 6.2.3)
    /// and returns the level its pin drives: asserted unless software set
    /// Interrupt Disable in the command register (spec 6.2.2).
    pub fn intx_level(&mut self, asserted: bool) -> bool {
        let st = self.u16(reg::STATUS) & !status::INTERRUPT_STATUS;
        let st = st
            | if asserted {
                status::INTERRUPT_STATUS
            } else {
                0
            };
        self.poke_u16(reg::STATUS, st);
        asserted && self.command() & command::INTX_DISABLE == 0
    }

    /// The command register.
    pub fn command(&self) -> u16 {
        self.u16(reg::COMMAND)
    }

    /// Reads `data.len()` bytes at `offset`; bytes past 255 read all-ones.
    pub fn read(&self, offset: u8, data: &mut [u8]) {
        for (i, b) in data.iter_mut().enumerate() {
            *b = self
                .data
                .get(usize::from(offset) + i)
                .copied()
                .unwrap_or(0xFF);
        }
    }

    /// Writes `data` at `offset` through the masks, then reports every BAR
    /// or ROM whose decoded address changed. Bytes past 255 are dropped.
    pub fn write(&mut self, offset: u8, data: &[u8], changes: &mut Vec<ConfigChange>) {
        for (i, &v) in data.iter().enumerate() {
            let Some(o) = usize::from(offset).checked_add(i).filter(|&o| o < 256) else {
                break;
            };
            let (w, c) = (self.wmask[o], self.w1c[o]);
            self.data[o] = ((self.data[o] & !w) | (v & w)) & !(v & c);
        }
        self.update_decoding(changes);
    }

    /// Restores the power-on contents and reports the ranges that stop being decoded.
    pub fn reset(&mut self, changes: &mut Vec<ConfigChange>) {
        self.data = self.initial;
        self.update_decoding(changes);
    }

    /// The address BAR `index` currently decodes at, if it decodes at all.
    pub fn bar_address(&self, index: u8) -> Option<u64> {
        self.decoded.get(usize::from(index)).copied().flatten()
    }

    /// The address the expansion ROM currently decodes at, if enabled.
    pub fn rom_address(&self) -> Option<u64> {
        self.decoded[ROM_SLOT]
    }

    fn update_decoding(&mut self, changes: &mut Vec<ConfigChange>) {
        for slot in 0..7 {
            let Some((id, space, len)) = self.region_info(slot) else {
                continue;
            };
            let new = self.decode(slot);
            let old = self.decoded[slot];
            if new != old {
                self.decoded[slot] = new;
                changes.push(ConfigChange::Region {
                    id,
                    space,
                    len,
                    old,
                    new,
                });
            }
        }
    }

    fn region_info(&self, slot: usize) -> Option<(RegionId, AddressSpace, u64)> {
        if slot == ROM_SLOT {
            return self
                .rom_size
                .map(|s| (RegionId::Rom, AddressSpace::Mmio, s));
        }
        match self.slots[slot] {
            Slot::Bar { kind, size } => {
                let space = match kind {
                    BarKind::Io => AddressSpace::Pio,
                    _ => AddressSpace::Mmio,
                };
                Some((RegionId::Bar(slot as u8), space, size))
            }
            _ => None,
        }
    }

    /// Where a region decodes now. Not decoded: its space is disabled in
    /// the command register, its address is 0, or it would run past the top
    /// of its space (which is where the all-ones sizing pattern puts it;
    /// for a 64-bit BAR the top is [`MAX_PHYS_ADDR`]).
    fn decode(&self, slot: usize) -> Option<u64> {
        let cmd = self.command();
        let mem_on = cmd & command::MEMORY_SPACE != 0;
        if slot == ROM_SLOT {
            let size = self.rom_size?;
            let v = self.u32(reg::EXPANSION_ROM);
            if !mem_on || v & 1 == 0 {
                return None;
            }
            return place(u64::from(v & 0xFFFF_F800), size, 0xFFFF_FFFE);
        }
        let Slot::Bar { kind, size } = self.slots[slot] else {
            return None;
        };
        let off = reg::BAR0 + 4 * slot as u8;
        let low = self.u32(off);
        match kind {
            BarKind::Io if cmd & command::IO_SPACE != 0 => {
                place(u64::from(low & !0b11), size, 0xFFFF)
            }
            BarKind::Mem32 { .. } if mem_on => place(u64::from(low & !0xF), size, 0xFFFF_FFFE),
            BarKind::Mem64 { .. } if mem_on => {
                let addr = u64::from(self.u32(off + 4)) << 32 | u64::from(low & !0xF);
                place(addr, size, MAX_PHYS_ADDR)
            }
            _ => None,
        }
    }
}

/// `addr` if `[addr, addr + size)` is non-zero and ends at or below `last_ok`.
fn place(addr: u64, size: u64, last_ok: u64) -> Option<u64> {
    let last = addr.checked_add(size - 1)?;
    (addr != 0 && last <= last_ok).then_some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::vec;

    fn cs() -> ConfigSpace {
        ConfigSpace::new(0x1234, 0x5678, 0x02, 0x02_00_00, 0)
    }

    fn write32(cs: &mut ConfigSpace, off: u8, v: u32) -> Vec<ConfigChange> {
        let mut ch = Vec::new();
        cs.write(off, &v.to_le_bytes(), &mut ch);
        ch
    }

    fn region(
        id: RegionId,
        space: AddressSpace,
        len: u64,
        old: Option<u64>,
        new: Option<u64>,
    ) -> ConfigChange {
        ConfigChange::Region {
            id,
            space,
            len,
            old,
            new,
        }
    }

    #[test]
    fn header_identity_reads_back() {
        let c = cs();
        assert_eq!(c.u32(0), 0x5678_1234);
        assert_eq!(c.u32(8), 0x0200_0002);
        assert_eq!(c.u8(reg::HEADER_TYPE), 0);
    }

    #[test]
    fn identity_is_read_only() {
        let mut c = cs();
        write32(&mut c, 0, 0xFFFF_FFFF);
        write32(&mut c, 8, 0xFFFF_FFFF);
        assert_eq!(c.u32(0), 0x5678_1234);
        assert_eq!(c.u32(8), 0x0200_0002);
    }

    #[test]
    fn command_takes_only_its_defined_bits() {
        let mut c = cs();
        write32(&mut c, 4, 0x0000_FFFF);
        assert_eq!(c.command(), 0x0547);
    }

    #[test]
    fn status_error_bits_are_write_one_to_clear() {
        let mut c = cs();
        c.poke_u8(reg::STATUS + 1, 0xF9);
        c.poke_u8(reg::STATUS, 0x10);
        // Writing 0 leaves them, writing 1 clears only those bits.
        write32(&mut c, 4, 0);
        assert_eq!(c.u16(reg::STATUS), 0xF910);
        write32(&mut c, 4, 0x2100_0000);
        assert_eq!(c.u16(reg::STATUS), 0xD810);
    }

    #[test]
    fn io_bar_sizes_and_decodes() {
        let mut c = cs();
        c.add_bar(0, BarKind::Io, 32).unwrap();
        assert_eq!(c.u32(0x10), 0x1);
        assert!(
            write32(&mut c, 0x10, 0xFFFF_FFFF).is_empty(),
            "I/O decode is off"
        );
        assert_eq!(c.u32(0x10), 0xFFFF_FFE1);
        write32(&mut c, 0x10, 0xC040);
        assert_eq!(c.u32(0x10), 0xC041);
        let ch = write32(&mut c, 4, u32::from(command::IO_SPACE));
        assert_eq!(
            ch,
            vec![region(
                RegionId::Bar(0),
                AddressSpace::Pio,
                32,
                None,
                Some(0xC040)
            )]
        );
        assert_eq!(c.bar_address(0), Some(0xC040));
        // Sizing while decoding: the all-ones pattern is past port 0xFFFF.
        let ch = write32(&mut c, 0x10, 0xFFFF_FFFF);
        assert_eq!(
            ch,
            vec![region(
                RegionId::Bar(0),
                AddressSpace::Pio,
                32,
                Some(0xC040),
                None
            )]
        );
        let ch = write32(&mut c, 0x10, 0xC000);
        assert_eq!(
            ch,
            vec![region(
                RegionId::Bar(0),
                AddressSpace::Pio,
                32,
                None,
                Some(0xC000)
            )]
        );
    }

    #[test]
    fn mem32_bar_sizes_with_prefetch_bit() {
        let mut c = cs();
        c.add_bar(1, BarKind::Mem32 { prefetchable: true }, 0x1000)
            .unwrap();
        write32(&mut c, 0x14, 0xFFFF_FFFF);
        assert_eq!(c.u32(0x14), 0xFFFF_F008);
        let mut c = cs();
        c.add_bar(
            1,
            BarKind::Mem32 {
                prefetchable: false,
            },
            0x100_0000,
        )
        .unwrap();
        write32(&mut c, 0x14, 0xFFFF_FFFF);
        assert_eq!(c.u32(0x14), 0xFF00_0000);
        write32(&mut c, 4, u32::from(command::MEMORY_SPACE));
        assert_eq!(c.bar_address(1), None, "all-ones pattern does not decode");
        let ch = write32(&mut c, 0x14, 0xFD12_3456);
        assert_eq!(
            ch,
            vec![region(
                RegionId::Bar(1),
                AddressSpace::Mmio,
                0x100_0000,
                None,
                Some(0xFD00_0000)
            )]
        );
    }

    #[test]
    fn mem64_bar_sizes_across_both_dwords() {
        let mut c = cs();
        c.add_bar(2, BarKind::Mem64 { prefetchable: true }, 0x2_0000_0000)
            .unwrap();
        assert_eq!(c.u32(0x18), 0b1100);
        write32(&mut c, 0x18, 0xFFFF_FFFF);
        write32(&mut c, 0x1C, 0xFFFF_FFFF);
        assert_eq!(c.u32(0x18), 0x0000_000C);
        assert_eq!(c.u32(0x1C), 0xFFFF_FFFE);
        // A small 64-bit BAR: the upper dword is fully writable.
        let mut c = cs();
        c.add_bar(
            0,
            BarKind::Mem64 {
                prefetchable: false,
            },
            0x4000,
        )
        .unwrap();
        write32(&mut c, 0x10, 0xFFFF_FFFF);
        write32(&mut c, 0x14, 0xFFFF_FFFF);
        assert_eq!(c.u32(0x10), 0xFFFF_C004);
        assert_eq!(c.u32(0x14), 0xFFFF_FFFF);
        write32(&mut c, 4, u32::from(command::MEMORY_SPACE));
        assert_eq!(c.bar_address(0), None);
        write32(&mut c, 0x10, 0x8000_0000);
        let ch = write32(&mut c, 0x14, 0x1);
        assert_eq!(
            ch,
            vec![region(
                RegionId::Bar(0),
                AddressSpace::Mmio,
                0x4000,
                None,
                Some(0x1_8000_0000)
            )]
        );
        assert_eq!(
            c.add_bar(1, BarKind::Io, 4),
            Err(ConfigSpaceError::BarTaken { index: 1 })
        );
    }

    #[test]
    fn rom_bar_sizes_and_needs_enable_and_memory_space() {
        let mut c = cs();
        c.set_rom(0x1_0000).unwrap();
        write32(&mut c, 0x30, 0xFFFF_FFFE);
        assert_eq!(c.u32(0x30), 0xFFFF_0000);
        write32(&mut c, 4, u32::from(command::MEMORY_SPACE));
        write32(&mut c, 0x30, 0xFEB0_0000);
        assert_eq!(c.rom_address(), None, "enable bit clear");
        let ch = write32(&mut c, 0x30, 0xFEB0_0001);
        assert_eq!(
            ch,
            vec![region(
                RegionId::Rom,
                AddressSpace::Mmio,
                0x1_0000,
                None,
                Some(0xFEB0_0000)
            )]
        );
        let ch = write32(&mut c, 4, 0);
        assert_eq!(
            ch,
            vec![region(
                RegionId::Rom,
                AddressSpace::Mmio,
                0x1_0000,
                Some(0xFEB0_0000),
                None
            )]
        );
    }

    #[test]
    fn absent_bars_and_rom_read_zero_and_ignore_writes() {
        let mut c = cs();
        for off in (0x10..0x28).step_by(4).chain([0x30]) {
            assert!(write32(&mut c, off, 0xFFFF_FFFF).is_empty());
            assert_eq!(c.u32(off), 0);
        }
    }

    #[test]
    fn bad_bar_declarations_are_errors() {
        let mut c = cs();
        assert_eq!(
            c.add_bar(6, BarKind::Io, 4),
            Err(ConfigSpaceError::BarIndex { index: 6 })
        );
        assert_eq!(
            c.add_bar(
                5,
                BarKind::Mem64 {
                    prefetchable: false
                },
                16
            ),
            Err(ConfigSpaceError::BarIndex { index: 5 })
        );
        assert!(matches!(
            c.add_bar(0, BarKind::Io, 512),
            Err(ConfigSpaceError::BadSize { .. })
        ));
        assert!(matches!(
            c.add_bar(0, BarKind::Io, 24),
            Err(ConfigSpaceError::BadSize { .. })
        ));
        assert!(matches!(
            c.set_rom(1024),
            Err(ConfigSpaceError::BadSize { .. })
        ));
        c.add_bar(0, BarKind::Io, 4).unwrap();
        assert_eq!(
            c.add_bar(0, BarKind::Io, 4),
            Err(ConfigSpaceError::BarTaken { index: 0 })
        );
    }

    #[test]
    fn reset_restores_power_on_state_and_reports_unmapping() {
        let mut c = cs();
        c.add_bar(0, BarKind::Io, 16).unwrap();
        c.set_capabilities_pointer(0x40);
        write32(&mut c, 0x10, 0x1000);
        write32(&mut c, 4, 1);
        write32(&mut c, 0x3C, 0x0B);
        let mut ch = Vec::new();
        c.reset(&mut ch);
        assert_eq!(
            ch,
            vec![region(
                RegionId::Bar(0),
                AddressSpace::Pio,
                16,
                Some(0x1000),
                None
            )]
        );
        assert_eq!(c.u32(0x10), 1);
        assert_eq!(c.u8(reg::INTERRUPT_LINE), 0);
        assert_eq!(c.u8(reg::CAPABILITIES_POINTER), 0x40);
        assert_eq!(c.u16(reg::STATUS), status::CAPABILITIES_LIST);
    }

    #[test]
    fn byte_writes_build_up_a_bar() {
        let mut c = cs();
        c.add_bar(0, BarKind::Io, 256).unwrap();
        let mut ch = Vec::new();
        c.write(reg::COMMAND, &[1], &mut ch);
        c.write(0x11, &[0xC1], &mut ch);
        assert_eq!(
            ch,
            vec![region(
                RegionId::Bar(0),
                AddressSpace::Pio,
                256,
                None,
                Some(0xC100)
            )]
        );
        let mut b = [0u8; 2];
        c.read(0x10, &mut b);
        assert_eq!(b, [0x01, 0xC1]);
    }

    #[test]
    fn capabilities_chain_from_0x34_with_their_own_masks() {
        let mut c = cs();
        assert!(c.capabilities().is_empty());
        let a = c.add_capability(0x01, 8).unwrap();
        let b = c.add_capability(0x05, 10).unwrap();
        let d = c.add_capability(0x11, 12).unwrap();
        assert_eq!((a, b, d), (0x40, 0x48, 0x54));
        assert_eq!(c.u8(reg::CAPABILITIES_POINTER), 0x40);
        assert_ne!(c.u16(reg::STATUS) & status::CAPABILITIES_LIST, 0);
        assert_eq!(
            c.capabilities(),
            vec![(0x40, 0x01), (0x48, 0x05), (0x54, 0x11)]
        );
        // Headers are read-only; a capability's own bits are writable once masked.
        c.set_wmask_u16(b + 2, 0x0001);
        write32(&mut c, u32::from(b) as u8, 0xFFFF_FFFF);
        assert_eq!(c.u32(b), 0x0001_5405);
        assert!(matches!(
            c.add_capability(0x09, 0xB0),
            Err(ConfigSpaceError::NoCapabilitySpace { .. })
        ));
        // A looping chain (a device bug) ends the walk.
        c.set_u8(d + 1, a);
        assert_eq!(c.capabilities().len(), MAX_CAPABILITIES);
    }

    #[test]
    fn intx_level_sets_status_and_honours_interrupt_disable() {
        let mut c = cs();
        assert!(c.intx_level(true));
        assert_ne!(c.u16(reg::STATUS) & status::INTERRUPT_STATUS, 0);
        write32(&mut c, 4, u32::from(command::INTX_DISABLE));
        assert!(!c.intx_level(true));
        assert!(!c.intx_level(false));
        assert_eq!(c.u16(reg::STATUS) & status::INTERRUPT_STATUS, 0);
    }
}
