//! Message signalled interrupts: the MSI capability (ID 05h, PCI Local Bus
//! spec 3.0 6.8.1) and the MSI-X capability (ID 11h, spec 3.0 6.8.2, the
//! MSI-X ECN) with its table and pending bit array (PBA) in a memory BAR.
//!
//! A function embeds [`MsiCap`] and/or [`MsixCap`] next to its
//! [`ConfigSpace`], hands them to the PCI layer through
//! [`PciDevice::msi`](super::PciDevice::msi) / [`PciDevice::msix`](super::PciDevice::msix),
//! and calls `notify` when it has an interrupt to signal. The layer does the
//! rest for every device alike: it connects the [`MsiSender`] when the
//! function is plugged in, serves the MSI-X table and PBA inside the BAR, and
//! after each configuration or table write delivers the pending messages that
//! became unmasked. Messages go to the local APICs through the interrupt
//! router ([`MsiTarget`](crate::interrupt::message::MsiTarget)), which
//! decodes the address and data (SDM Vol 3A 11.11).
//!
//! Masked messages are not lost: a message signalled while masked sets its
//! pending bit, and is sent (and the bit cleared) when it is unmasked
//! (spec 6.8.1.7 / 6.8.2.9).

use alloc::vec;
use alloc::vec::Vec;

use super::config_space::{ConfigSpace, ConfigSpaceError};
use super::BarKind;
use crate::interrupt::message::MsiSender;

/// Capability IDs (spec 3.0 appendix H).
pub const CAP_ID_MSI: u8 = 0x05;
pub const CAP_ID_MSIX: u8 = 0x11;

/// MSI message control bits (spec 6.8.1.3).
mod msi_control {
    pub const ENABLE: u16 = 1 << 0;
    /// Multiple Message Capable, bits 3:1 (read-only).
    pub const MMC_SHIFT: u16 = 1;
    /// Multiple Message Enable, bits 6:4.
    pub const MME_SHIFT: u16 = 4;
    pub const MME_MASK: u16 = 0b111 << MME_SHIFT;
    pub const ADDR_64: u16 = 1 << 7;
    pub const PER_VECTOR_MASK: u16 = 1 << 8;
}

/// MSI-X message control bits (spec 6.8.2.3).
mod msix_control {
    pub const FUNCTION_MASK: u16 = 1 << 14;
    pub const ENABLE: u16 = 1 << 15;
}

/// Bytes per MSI-X table entry: address low, address high, data, vector control.
pub const MSIX_ENTRY_LEN: u64 = 16;
/// Vector control bit 0: the entry is masked (power-on value 1, spec 6.8.2.9).
const MSIX_ENTRY_MASKED: u32 = 1;
/// The most entries an MSI-X table may have (table size is 11 bits).
pub const MSIX_MAX_ENTRIES: u16 = 2048;

/// The MSI capability of a function.
#[derive(Clone)]
pub struct MsiCap {
    offset: u8,
    wide: bool,
    per_vector_mask: bool,
    /// log2 of the vectors the function can request (MMC).
    mmc: u8,
    sender: Option<MsiSender>,
}

impl MsiCap {
    /// Adds an MSI capability to `cs` for up to `vectors` (1, 2, 4 .. 32)
    /// messages, with a 64-bit address if `wide`, and per-vector mask and
    /// pending bits if `per_vector_mask`.
    pub fn add(
        cs: &mut ConfigSpace,
        vectors: u8,
        wide: bool,
        per_vector_mask: bool,
    ) -> Result<MsiCap, ConfigSpaceError> {
        if !vectors.is_power_of_two() || vectors > 32 {
            return Err(ConfigSpaceError::BadSize {
                what: "MSI vector count",
                size: u64::from(vectors),
            });
        }
        let len = match (wide, per_vector_mask) {
            (false, false) => 10,
            (true, false) => 14,
            (false, true) => 20,
            (true, true) => 24,
        };
        let offset = cs.add_capability(CAP_ID_MSI, len)?;
        let mmc = vectors.trailing_zeros() as u8;
        let mut control = u16::from(mmc) << msi_control::MMC_SHIFT;
        if wide {
            control |= msi_control::ADDR_64;
        }
        if per_vector_mask {
            control |= msi_control::PER_VECTOR_MASK;
        }
        cs.set_u16(offset + 2, control);
        cs.set_wmask_u16(offset + 2, msi_control::ENABLE | msi_control::MME_MASK);
        // Message address bits 1:0 are reserved (read 0).
        cs.set_wmask_u32(offset + 4, 0xFFFF_FFFC);
        let cap = MsiCap {
            offset,
            wide,
            per_vector_mask,
            mmc,
            sender: None,
        };
        if wide {
            cs.set_wmask_u32(offset + 8, 0xFFFF_FFFF);
        }
        cs.set_wmask_u16(cap.data_offset(), 0xFFFF);
        if per_vector_mask {
            let bits = if vectors == 32 {
                u32::MAX
            } else {
                (1u32 << vectors) - 1
            };
            cs.set_wmask_u32(cap.data_offset() + 4, bits);
        }
        Ok(cap)
    }

    /// Where the capability sits in configuration space.
    pub fn offset(&self) -> u8 {
        self.offset
    }

    /// Connects the capability to the interrupt path (the PCI layer does this).
    pub fn connect(&mut self, sender: MsiSender) {
        self.sender = Some(sender);
    }

    fn data_offset(&self) -> u8 {
        self.offset + if self.wide { 12 } else { 8 }
    }

    fn mask_offset(&self) -> Option<u8> {
        self.per_vector_mask.then(|| self.data_offset() + 4)
    }

    /// Whether software has enabled MSI (the function must not use INTx then).
    pub fn enabled(&self, cs: &ConfigSpace) -> bool {
        cs.u16(self.offset + 2) & msi_control::ENABLE != 0
    }

    /// The vectors software granted (MME, at most what the function asked for).
    fn granted(&self, cs: &ConfigSpace) -> u32 {
        let mme = (cs.u16(self.offset + 2) & msi_control::MME_MASK) >> msi_control::MME_SHIFT;
        1 << u32::from(mme).min(u32::from(self.mmc))
    }

    /// Signals `vector` (0-based, below the granted count); returns false if
    /// MSI is disabled or the vector was not granted. A masked vector sets
    /// its pending bit instead and is sent when unmasked.
    pub fn notify(&mut self, cs: &mut ConfigSpace, vector: u8) -> bool {
        if !self.enabled(cs) || u32::from(vector) >= self.granted(cs) {
            return false;
        }
        if let Some(mask) = self.mask_offset() {
            if cs.u32(mask) & (1 << vector) != 0 {
                let pending = cs.u32(mask + 4) | 1 << vector;
                cs.poke_u32(mask + 4, pending);
                return true;
            }
        }
        self.send(cs, vector);
        true
    }

    fn send(&self, cs: &ConfigSpace, vector: u8) {
        let Some(sender) = &self.sender else { return };
        let low = u64::from(cs.u32(self.offset + 4));
        let high = if self.wide {
            u64::from(cs.u32(self.offset + 8))
        } else {
            0
        };
        // Multiple messages: the function puts the vector number in the low
        // bits of the data that software granted (spec 6.8.1.6).
        let granted = self.granted(cs);
        let data = u32::from(cs.u16(self.data_offset()));
        let data = (data & !(granted - 1)) | u32::from(vector);
        sender.send(high << 32 | low, data);
    }

    /// After a configuration write: sends pending vectors that are now unmasked.
    pub fn config_written(&mut self, cs: &mut ConfigSpace) {
        let Some(mask) = self.mask_offset() else {
            return;
        };
        if !self.enabled(cs) {
            return;
        }
        let due = cs.u32(mask + 4) & !cs.u32(mask);
        if due == 0 {
            return;
        }
        cs.poke_u32(mask + 4, cs.u32(mask + 4) & !due);
        for v in 0..32u8 {
            if due & 1 << v != 0 && u32::from(v) < self.granted(cs) {
                self.send(cs, v);
            }
        }
    }
}

/// The MSI-X capability of a function, with its table and PBA.
#[derive(Clone)]
pub struct MsixCap {
    offset: u8,
    table_bar: u8,
    table_offset: u32,
    pba_bar: u8,
    pba_offset: u32,
    /// The table, 16 bytes per entry, little endian.
    table: Vec<u8>,
    /// One pending bit per entry, in 64-bit PBA words.
    pending: Vec<u64>,
    /// A copy of the message control word, kept by [`MsixCap::config_written`].
    control: u16,
    sender: Option<MsiSender>,
}

impl MsixCap {
    /// Adds an MSI-X capability with `entries` (1..=2048) table entries; the
    /// table at `table_offset` (8-byte aligned) in memory BAR `table_bar`,
    /// the PBA at `pba_offset` (8-byte aligned) in memory BAR `pba_bar`.
    /// The BARs must be declared first and be large enough.
    pub fn add(
        cs: &mut ConfigSpace,
        entries: u16,
        table_bar: u8,
        table_offset: u32,
        pba_bar: u8,
        pba_offset: u32,
    ) -> Result<MsixCap, ConfigSpaceError> {
        if entries == 0 || entries > MSIX_MAX_ENTRIES {
            return Err(ConfigSpaceError::BadSize {
                what: "MSI-X table",
                size: u64::from(entries),
            });
        }
        let table_len = u64::from(entries) * MSIX_ENTRY_LEN;
        let pba_len = u64::from(entries).div_ceil(64) * 8;
        for (bar, off, len) in [
            (table_bar, table_offset, table_len),
            (pba_bar, pba_offset, pba_len),
        ] {
            let fits = matches!(cs.bar_size(bar), Some((kind, size))
                if kind != BarKind::Io && off % 8 == 0 && u64::from(off) + len <= size);
            if !fits {
                return Err(ConfigSpaceError::MsixPlacement {
                    bar,
                    offset: off,
                    len,
                });
            }
        }
        let offset = cs.add_capability(CAP_ID_MSIX, 12)?;
        cs.set_u16(offset + 2, entries - 1);
        cs.set_wmask_u16(
            offset + 2,
            msix_control::ENABLE | msix_control::FUNCTION_MASK,
        );
        cs.set_u32(offset + 4, table_offset | u32::from(table_bar));
        cs.set_u32(offset + 8, pba_offset | u32::from(pba_bar));
        let mut table = vec![0u8; table_len as usize];
        for e in table.chunks_exact_mut(MSIX_ENTRY_LEN as usize) {
            e[12..16].copy_from_slice(&MSIX_ENTRY_MASKED.to_le_bytes());
        }
        Ok(MsixCap {
            offset,
            table_bar,
            table_offset,
            pba_bar,
            pba_offset,
            table,
            pending: vec![0; usize::from(entries).div_ceil(64)],
            control: 0,
            sender: None,
        })
    }

    /// Where the capability sits in configuration space.
    pub fn offset(&self) -> u8 {
        self.offset
    }

    /// Connects the capability to the interrupt path (the PCI layer does this).
    pub fn connect(&mut self, sender: MsiSender) {
        self.sender = Some(sender);
    }

    fn entries(&self) -> usize {
        self.table.len() / MSIX_ENTRY_LEN as usize
    }

    /// Whether software has enabled MSI-X.
    pub fn enabled(&self) -> bool {
        self.control & msix_control::ENABLE != 0
    }

    fn function_masked(&self) -> bool {
        self.control & msix_control::FUNCTION_MASK != 0
    }

    fn entry_u32(&self, entry: usize, field: usize) -> u32 {
        let at = entry * MSIX_ENTRY_LEN as usize + field;
        self.table
            .get(at..at + 4)
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn entry_masked(&self, entry: usize) -> bool {
        self.entry_u32(entry, 12) & MSIX_ENTRY_MASKED != 0
    }

    /// Whether entry `entry`'s pending bit is set.
    pub fn pending(&self, entry: u16) -> bool {
        let e = usize::from(entry);
        self.pending
            .get(e / 64)
            .is_some_and(|w| w & 1 << (e % 64) != 0)
    }

    fn set_pending(&mut self, entry: usize, on: bool) {
        if let Some(w) = self.pending.get_mut(entry / 64) {
            if on {
                *w |= 1 << (entry % 64);
            } else {
                *w &= !(1 << (entry % 64));
            }
        }
    }

    /// Signals table entry `entry`; returns false if MSI-X is disabled or
    /// the entry does not exist. A masked entry (or a masked function) sets
    /// the entry's pending bit instead; it is sent when unmasked.
    pub fn notify(&mut self, entry: u16) -> bool {
        let e = usize::from(entry);
        if !self.enabled() || e >= self.entries() {
            return false;
        }
        if self.function_masked() || self.entry_masked(e) {
            self.set_pending(e, true);
        } else {
            self.send(e);
        }
        true
    }

    fn send(&self, entry: usize) {
        let Some(sender) = &self.sender else { return };
        let address =
            u64::from(self.entry_u32(entry, 4)) << 32 | u64::from(self.entry_u32(entry, 0));
        sender.send(address, self.entry_u32(entry, 8));
    }

    /// Sends (and clears) every pending entry that is no longer masked.
    fn deliver_unmasked(&mut self) {
        if !self.enabled() || self.function_masked() {
            return;
        }
        for e in 0..self.entries() {
            if self.pending(e as u16) && !self.entry_masked(e) {
                self.set_pending(e, false);
                self.send(e);
            }
        }
    }

    /// After a configuration write: takes the new enable and function mask
    /// and sends what they unmasked.
    pub fn config_written(&mut self, cs: &ConfigSpace) {
        self.control = cs.u16(self.offset + 2);
        self.deliver_unmasked();
    }

    /// Back to power-on: disabled, every entry masked, nothing pending.
    pub fn reset(&mut self) {
        self.table.fill(0);
        for e in self.table.chunks_exact_mut(MSIX_ENTRY_LEN as usize) {
            e[12..16].copy_from_slice(&MSIX_ENTRY_MASKED.to_le_bytes());
        }
        self.pending.fill(0);
        self.control = 0;
    }

    /// Where `[offset, offset + len)` of BAR `bar` falls: `Some(true)` in
    /// the table, `Some(false)` in the PBA, `None` elsewhere.
    fn locate(&self, bar: u8, offset: u64, len: usize) -> Option<(bool, usize)> {
        let end = offset.checked_add(len as u64)?;
        let within = |b: u8, start: u32, size: usize| {
            let start = u64::from(start);
            (b == bar && offset >= start && end <= start + size as u64)
                .then(|| (offset - start) as usize)
        };
        if let Some(o) = within(self.table_bar, self.table_offset, self.table.len()) {
            return Some((true, o));
        }
        within(self.pba_bar, self.pba_offset, self.pending.len() * 8).map(|o| (false, o))
    }

    /// A read in BAR `bar`: answers it and returns true if it is inside
    /// the table or the PBA.
    pub fn bar_read(&self, bar: u8, offset: u64, data: &mut [u8]) -> bool {
        let Some((table, at)) = self.locate(bar, offset, data.len()) else {
            return false;
        };
        if table {
            data.copy_from_slice(&self.table[at..at + data.len()]);
        } else {
            for (i, b) in data.iter_mut().enumerate() {
                let byte = at + i;
                *b = (self.pending[byte / 8] >> (8 * (byte % 8))) as u8;
            }
        }
        true
    }

    /// A write in BAR `bar`: applies it and returns true if it is inside
    /// the table or the PBA (the PBA is read-only: writes are dropped).
    /// Address bits 1:0 and vector control bits 31:1 are read-only zero;
    /// an entry unmasked with its pending bit set is sent now.
    pub fn bar_write(&mut self, bar: u8, offset: u64, data: &[u8]) -> bool {
        let Some((table, at)) = self.locate(bar, offset, data.len()) else {
            return false;
        };
        if !table {
            return true;
        }
        for (i, &v) in data.iter().enumerate() {
            let byte = at + i;
            let mask = match byte % MSIX_ENTRY_LEN as usize {
                0 => 0xFC,
                12 => MSIX_ENTRY_MASKED as u8,
                13..=15 => 0,
                _ => 0xFF,
            };
            self.table[byte] = (self.table[byte] & !mask) | (v & mask);
        }
        self.deliver_unmasked();
        true
    }
}

#[cfg(test)]
mod tests;
