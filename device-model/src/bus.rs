//! The one bus for port I/O and MMIO.
//!
//! Each device registers the port or address ranges it answers; the exit path
//! hands every guest access to [`Bus`], which looks the range up and calls the
//! device. Nothing outside this file decides which device owns an address.
//!
//! Accesses that reach no device get one documented default (see [`Bus`]):
//! reads return all-ones of the access width, as a floating ISA data bus does,
//! and writes are dropped. Both are counted ([`UnclaimedStats`]), and the first
//! [`UNCLAIMED_LOG_LIMIT`] are logged at debug level.

use alloc::sync::Arc;
use alloc::vec::Vec;
use core::fmt;

/// A device on the bus: it answers accesses inside the ranges it registered.
pub trait BusDevice: Send {
    /// Reads `data.len()` bytes at `offset` within the range registered at `base`.
    ///
    /// `data` arrives filled with `0xFF`; bytes the device leaves alone read as
    /// all-ones, like undriven lines on an ISA bus.
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]);
    /// Writes `data` (little endian) at `offset` within the range registered at `base`.
    fn write(&mut self, base: u64, offset: u64, data: &[u8]);
    /// For `REP INS`/`REP OUTS` served in bulk: how many bytes (a multiple
    /// of `elem`) the port at `offset` gives (`write` false) or takes now in
    /// one [`BusDevice::read_string`] / [`BusDevice::write_string`] call,
    /// exactly as that many `elem`-byte accesses in a row would. 0 (the
    /// default): no bulk path, the accesses come one by one.
    fn string_room(&mut self, _base: u64, _offset: u64, _elem: usize, _write: bool) -> usize {
        0
    }
    /// Fills the front of `data` (at most [`BusDevice::string_room`] bytes)
    /// as `elem`-byte reads of the port would; returns the bytes filled.
    fn read_string(&mut self, _base: u64, _offset: u64, _elem: usize, _data: &mut [u8]) -> usize {
        0
    }
    /// Takes the front of `data` (at most [`BusDevice::string_room`] bytes)
    /// as `elem`-byte writes to the port would; returns the bytes taken.
    fn write_string(&mut self, _base: u64, _offset: u64, _elem: usize, _data: &[u8]) -> usize {
        0
    }
}

/// A shared device: the bus keeps one clone, the platform keeps another to
/// reach the device from the host side (input, interrupts).
pub type DeviceHandle = Arc<spin::Mutex<dyn BusDevice>>;

/// What one access reached ([`Bus::reached`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reached {
    Nothing,
    /// One device, by [`device_identity`].
    One(usize),
    /// Parts of an access that spans ranges.
    Several,
}

/// A device's identity: the address of the shared object behind its handle,
/// the same through every handle type (`Arc<Mutex<dyn BusDevice>>`,
/// `Arc<Mutex<dyn TimerDevice>>`) that shares it.
pub fn device_identity<T: ?Sized>(dev: &Arc<T>) -> usize {
    Arc::as_ptr(dev) as *const () as usize
}

/// How many unclaimed (or malformed) accesses are logged before they are only counted.
pub const UNCLAIMED_LOG_LIMIT: u64 = 16;

/// The highest I/O port: the x86 port space is 64 KiB (SDM Vol 1 18.3).
const PIO_LAST: u64 = 0xFFFF;

/// The two address spaces a guest can reach devices through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AddressSpace {
    /// x86 port I/O (IN/OUT and their string forms).
    Pio,
    /// Memory-mapped I/O (guest-physical addresses not backed by RAM).
    Mmio,
}

impl fmt::Display for AddressSpace {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            AddressSpace::Pio => "port",
            AddressSpace::Mmio => "MMIO",
        })
    }
}

/// Why a range could not be registered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BusError {
    /// The range has length zero, so it could never be reached.
    Empty {
        space: AddressSpace,
        name: &'static str,
        base: u64,
    },
    /// The range runs past the end of its address space.
    Wraps {
        space: AddressSpace,
        name: &'static str,
        base: u64,
        len: u64,
    },
    /// The range shares at least one address with a range already registered.
    Overlap {
        space: AddressSpace,
        name: &'static str,
        base: u64,
        len: u64,
        existing: &'static str,
        existing_base: u64,
        existing_len: u64,
    },
}

impl fmt::Display for BusError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            BusError::Empty { space, name, base } => write!(
                f,
                "device '{name}' asked for an empty {space} range at {base:#x}; give it a length of at least 1"
            ),
            BusError::Wraps {
                space,
                name,
                base,
                len,
            } => write!(
                f,
                "device '{name}' asked for the {space} range {base:#x}+{len:#x}, which runs past the end of the {space} space"
            ),
            BusError::Overlap {
                space,
                name,
                base,
                len,
                existing,
                existing_base,
                existing_len,
            } => write!(
                f,
                "device '{name}' asked for the {space} range {base:#x}+{len:#x}, which overlaps device '{existing}' at {existing_base:#x}+{existing_len:#x}"
            ),
        }
    }
}

/// Counts of accesses that reached no device, per address space and direction.
///
/// A straddling access is split into bytes; each byte that reaches no device
/// counts once. An access of an invalid size counts once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UnclaimedStats {
    pub pio_reads: u64,
    pub pio_writes: u64,
    pub mmio_reads: u64,
    pub mmio_writes: u64,
}

/// A registered range as [`Bus::ranges`] lists it: which device answers
/// `len` addresses from `base` in `space`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RangeInfo {
    pub space: AddressSpace,
    pub base: u64,
    pub len: u64,
    pub name: &'static str,
}

/// One registered range, `[base, last]` inclusive so a range may end at the
/// very top of its address space.
struct Range {
    base: u64,
    last: u64,
    name: &'static str,
    /// The bus's index of `name` ([`Bus::device_at`]).
    device: u16,
    dev: DeviceHandle,
}

/// The ranges of one address space, sorted by base and never overlapping.
struct Space {
    kind: AddressSpace,
    /// Highest address in this space.
    limit: u64,
    ranges: Vec<Range>,
}

impl Space {
    fn new(kind: AddressSpace, limit: u64) -> Self {
        Space {
            kind,
            limit,
            ranges: Vec::new(),
        }
    }

    fn register(
        &mut self,
        base: u64,
        len: u64,
        (name, device): (&'static str, u16),
        dev: DeviceHandle,
    ) -> Result<(), BusError> {
        let space = self.kind;
        if len == 0 {
            return Err(BusError::Empty { space, name, base });
        }
        let last = base
            .checked_add(len - 1)
            .filter(|&last| last <= self.limit)
            .ok_or(BusError::Wraps {
                space,
                name,
                base,
                len,
            })?;
        // The first range that ends at or after `base` is the only one that can
        // overlap, since ranges are sorted and disjoint.
        let idx = self.ranges.partition_point(|r| r.last < base);
        if let Some(r) = self.ranges.get(idx).filter(|r| r.base <= last) {
            return Err(BusError::Overlap {
                space,
                name,
                base,
                len,
                existing: r.name,
                existing_base: r.base,
                existing_len: r.last - r.base + 1,
            });
        }
        self.ranges.insert(
            idx,
            Range {
                base,
                last,
                name,
                device,
                dev,
            },
        );
        Ok(())
    }

    /// Removes the range that starts at `base`; returns its name, length and device.
    fn unregister(&mut self, base: u64) -> Option<(&'static str, u64, DeviceHandle)> {
        let idx = self.ranges.iter().position(|r| r.base == base)?;
        let r = self.ranges.remove(idx);
        Some((r.name, r.last - r.base + 1, r.dev))
    }

    /// The range containing `addr`.
    fn find(&self, addr: u64) -> Option<&Range> {
        let idx = self.ranges.partition_point(|r| r.last < addr);
        self.ranges.get(idx).filter(|r| r.base <= addr)
    }

    /// Whether any range shares an address with `[first, last]`.
    fn touches(&self, first: u64, last: u64) -> bool {
        let idx = self.ranges.partition_point(|r| r.last < first);
        self.ranges.get(idx).is_some_and(|r| r.base <= last)
    }

    /// How an access of `len` (>= 1) bytes at `addr` is routed.
    fn route(&self, addr: u64, len: usize) -> Route<'_> {
        let end = addr.checked_add(len as u64 - 1);
        if let (Some(last), Some(r)) = (end, self.find(addr)) {
            if last <= r.last {
                return Route::Whole(r);
            }
        }
        // An access running past the top of the space can only touch ranges
        // below the top, which all lie inside it.
        if self.touches(addr, end.unwrap_or(u64::MAX)) {
            Route::Split
        } else {
            Route::Nowhere
        }
    }

    fn read(&self, addr: u64, data: &mut [u8], log: &mut UnclaimedLog) {
        data.fill(0xFF);
        match self.route(addr, data.len()) {
            Route::Whole(r) => r.dev.lock().read(r.base, addr - r.base, data),
            Route::Nowhere => log.record(self.kind, Direction::Read, addr, data.len()),
            Route::Split => {
                for (i, byte) in data.iter_mut().enumerate() {
                    let a = addr.checked_add(i as u64).filter(|&a| a <= self.limit);
                    match a.and_then(|a| self.find(a).map(|r| (a, r))) {
                        Some((a, r)) => {
                            r.dev
                                .lock()
                                .read(r.base, a - r.base, core::slice::from_mut(byte))
                        }
                        None => {
                            log.record(self.kind, Direction::Read, addr.wrapping_add(i as u64), 1)
                        }
                    }
                }
            }
        }
    }

    fn write(&self, addr: u64, data: &[u8], log: &mut UnclaimedLog) {
        match self.route(addr, data.len()) {
            Route::Whole(r) => r.dev.lock().write(r.base, addr - r.base, data),
            Route::Nowhere => log.record(self.kind, Direction::Write, addr, data.len()),
            Route::Split => {
                for (i, byte) in data.iter().enumerate() {
                    let a = addr.checked_add(i as u64).filter(|&a| a <= self.limit);
                    match a.and_then(|a| self.find(a).map(|r| (a, r))) {
                        Some((a, r)) => {
                            r.dev
                                .lock()
                                .write(r.base, a - r.base, core::slice::from_ref(byte))
                        }
                        None => {
                            log.record(self.kind, Direction::Write, addr.wrapping_add(i as u64), 1)
                        }
                    }
                }
            }
        }
    }
}

enum Route<'a> {
    /// The access lies entirely inside this range: one call.
    Whole(&'a Range),
    /// The access straddles ranges or partly hits nothing: one call per byte.
    Split,
    /// No byte of the access reaches a device.
    Nowhere,
}

#[derive(Debug, Clone, Copy)]
enum Direction {
    Read,
    Write,
}

/// The unclaimed-access counters and the log budget they share.
#[derive(Default)]
struct UnclaimedLog {
    stats: UnclaimedStats,
    logged: u64,
}

impl UnclaimedLog {
    fn count(&mut self, space: AddressSpace, dir: Direction) {
        let counter = match (space, dir) {
            (AddressSpace::Pio, Direction::Read) => &mut self.stats.pio_reads,
            (AddressSpace::Pio, Direction::Write) => &mut self.stats.pio_writes,
            (AddressSpace::Mmio, Direction::Read) => &mut self.stats.mmio_reads,
            (AddressSpace::Mmio, Direction::Write) => &mut self.stats.mmio_writes,
        };
        *counter = counter.saturating_add(1);
    }

    /// Whether this access is still within the log budget (and spends it).
    fn may_log(&mut self) -> bool {
        if self.logged >= UNCLAIMED_LOG_LIMIT {
            return false;
        }
        self.logged += 1;
        true
    }

    fn suffix(&self) -> &'static str {
        if self.logged == UNCLAIMED_LOG_LIMIT {
            "; further unclaimed accesses are only counted"
        } else {
            ""
        }
    }

    fn record(&mut self, space: AddressSpace, dir: Direction, addr: u64, size: usize) {
        self.count(space, dir);
        if self.may_log() {
            let dir = match dir {
                Direction::Read => "read",
                Direction::Write => "write",
            };
            log::debug!(
                "unclaimed {space} {dir} at {addr:#x}, size {size}{}",
                self.suffix()
            );
        }
    }

    fn record_invalid(&mut self, space: AddressSpace, dir: Direction, addr: u64, size: usize) {
        self.count(space, dir);
        if self.may_log() {
            let dir = match dir {
                Direction::Read => "read",
                Direction::Write => "write",
            };
            log::debug!(
                "{space} {dir} at {addr:#x} has invalid size {size}; treated as unclaimed{}",
                self.suffix()
            );
        }
    }
}

/// The port I/O and MMIO bus of one VM.
///
/// Routing rules:
/// - an access that lies entirely inside one registered range is one call to
///   that device, with the range's base and the offset inside it;
/// - an access that straddles ranges, or partly hits nothing, is split into
///   byte accesses, each routed on its own, as the ISA bus does with a wide
///   access to 8-bit devices;
/// - an access no byte of which reaches a device is unclaimed: a read returns
///   all-ones of its width, a write is dropped;
/// - port accesses never wrap: bytes past port `0xFFFF` reach nothing;
/// - an invalid size (port: not 1, 2 or 4; MMIO: not 1..=8) is unclaimed.
///
/// Unclaimed accesses are counted ([`Bus::unclaimed`]) and the first
/// [`UNCLAIMED_LOG_LIMIT`] are logged with `log::debug!`.
pub struct Bus {
    pio: Space,
    mmio: Space,
    log: UnclaimedLog,
    /// Every device name ever registered, in order of first registration:
    /// a name's position is its stable index ([`Bus::device_at`]), which
    /// the exit statistics count by. Only names in Keel's binary can be
    /// registered, so a range the guest moves (a BAR) never grows this.
    names: Vec<&'static str>,
}

impl Default for Bus {
    fn default() -> Self {
        Self::new()
    }
}

impl Bus {
    /// An empty bus: every access is unclaimed.
    pub fn new() -> Self {
        Bus {
            pio: Space::new(AddressSpace::Pio, PIO_LAST),
            mmio: Space::new(AddressSpace::Mmio, u64::MAX),
            log: UnclaimedLog::default(),
            names: Vec::new(),
        }
    }

    /// The index of `name`, given it on first use.
    fn name_index(&mut self, name: &'static str) -> u16 {
        let i = match self.names.iter().position(|&n| n == name) {
            Some(i) => i,
            None => {
                self.names.push(name);
                self.names.len() - 1
            }
        };
        u16::try_from(i).unwrap_or(u16::MAX)
    }

    /// The index of the device whose range holds `addr` in `space`, found
    /// in O(log n): the same for every range registered under one name, and
    /// for as long as the bus lives (a range unregistered and registered
    /// again keeps it). `None` where no device decodes `addr`.
    pub fn device_at(&self, space: AddressSpace, addr: u64) -> Option<u16> {
        let s = match space {
            AddressSpace::Pio => &self.pio,
            AddressSpace::Mmio => &self.mmio,
        };
        s.find(addr).map(|r| r.device)
    }

    /// How many device indexes [`Bus::device_at`] can give so far (they
    /// are `0..device_count()`, each name keeping its index).
    pub fn device_count(&self) -> usize {
        self.names.len()
    }

    /// The name of the device index [`Bus::device_at`] gave.
    pub fn device_name(&self, index: u16) -> Option<&'static str> {
        self.names.get(usize::from(index)).copied()
    }

    /// Makes `dev` answer ports `[base, base + len)`.
    ///
    /// Refuses an empty range, one running past port `0xFFFF`, and one that
    /// overlaps a range already registered (the error names both devices).
    pub fn register_pio(
        &mut self,
        base: u16,
        len: u16,
        name: &'static str,
        dev: DeviceHandle,
    ) -> Result<(), BusError> {
        let device = self.name_index(name);
        self.pio
            .register(base.into(), len.into(), (name, device), dev)
    }

    /// Makes `dev` answer guest-physical addresses `[base, base + len)`.
    ///
    /// Refuses an empty range, one running past the top of the 64-bit address
    /// space, and one that overlaps a range already registered.
    pub fn register_mmio(
        &mut self,
        base: u64,
        len: u64,
        name: &'static str,
        dev: DeviceHandle,
    ) -> Result<(), BusError> {
        let device = self.name_index(name);
        self.mmio.register(base, len, (name, device), dev)
    }

    /// Removes the range that starts at `base` in `space` and returns its
    /// device; `None` if no range starts there.
    pub fn unregister(&mut self, space: AddressSpace, base: u64) -> Option<DeviceHandle> {
        self.space_mut(space)
            .unregister(base)
            .map(|(_, _, dev)| dev)
    }

    fn space_mut(&mut self, space: AddressSpace) -> &mut Space {
        match space {
            AddressSpace::Pio => &mut self.pio,
            AddressSpace::Mmio => &mut self.mmio,
        }
    }

    /// An IN of `size` (1, 2 or 4) bytes from `port`; the value is zero-extended.
    pub fn pio_read(&mut self, port: u16, size: u8) -> u32 {
        let mut data = [0xFFu8; 4];
        match size {
            1 | 2 | 4 => {
                let data = &mut data[..usize::from(size)];
                self.pio.read(port.into(), data, &mut self.log);
            }
            _ => {
                self.log.record_invalid(
                    AddressSpace::Pio,
                    Direction::Read,
                    port.into(),
                    size.into(),
                );
                return u32::MAX;
            }
        }
        let value = u32::from_le_bytes(data);
        match size {
            1 => value & 0xFF,
            2 => value & 0xFFFF,
            _ => value,
        }
    }

    /// An OUT of the low `size` (1, 2 or 4) bytes of `value` to `port`.
    pub fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        match size {
            1 | 2 | 4 => {
                let bytes = value.to_le_bytes();
                self.pio
                    .write(port.into(), &bytes[..usize::from(size)], &mut self.log);
            }
            _ => self.log.record_invalid(
                AddressSpace::Pio,
                Direction::Write,
                port.into(),
                size.into(),
            ),
        }
    }

    /// The device decoding all `elem` (1, 2 or 4) bytes at `port`, and
    /// where its range starts, for the bulk string I/O calls.
    fn string_port(&self, port: u16, elem: usize) -> Option<(&DeviceHandle, u64)> {
        if !matches!(elem, 1 | 2 | 4) {
            return None;
        }
        match self.pio.route(port.into(), elem) {
            Route::Whole(r) => Some((&r.dev, r.base)),
            _ => None,
        }
    }

    /// Bytes `port` gives (`write` false) or takes now in one bulk string
    /// I/O call ([`BusDevice::string_room`]); 0 where no device has a bulk path.
    pub fn pio_string_room(&mut self, port: u16, elem: usize, write: bool) -> usize {
        self.string_port(port, elem).map_or(0, |(dev, base)| {
            dev.lock()
                .string_room(base, u64::from(port) - base, elem, write)
                / elem
                * elem
        })
    }

    /// `REP INS` from `port` in bulk ([`BusDevice::read_string`]): the bytes filled.
    pub fn pio_read_string(&mut self, port: u16, elem: usize, data: &mut [u8]) -> usize {
        self.string_port(port, elem).map_or(0, |(dev, base)| {
            dev.lock()
                .read_string(base, u64::from(port) - base, elem, data)
                .min(data.len())
        })
    }

    /// `REP OUTS` to `port` in bulk ([`BusDevice::write_string`]): the bytes taken.
    pub fn pio_write_string(&mut self, port: u16, elem: usize, data: &[u8]) -> usize {
        self.string_port(port, elem).map_or(0, |(dev, base)| {
            dev.lock()
                .write_string(base, u64::from(port) - base, elem, data)
                .min(data.len())
        })
    }

    /// Which device an access of `len` bytes at `addr` reaches, as an
    /// identity to compare with [`device_identity`] (the platform's cache of
    /// timer deadlines forgets only what a read touched).
    pub fn reached(&self, space: AddressSpace, addr: u64, len: usize) -> Reached {
        let s = match space {
            AddressSpace::Pio => &self.pio,
            AddressSpace::Mmio => &self.mmio,
        };
        match s.route(addr, len.max(1)) {
            Route::Whole(r) => Reached::One(device_identity(&r.dev)),
            Route::Nowhere => Reached::Nothing,
            Route::Split => Reached::Several,
        }
    }

    /// A guest read of `data.len()` (1..=8) bytes at guest-physical `addr`.
    pub fn mmio_read(&mut self, addr: u64, data: &mut [u8]) {
        if (1..=8).contains(&data.len()) {
            self.mmio.read(addr, data, &mut self.log);
        } else {
            data.fill(0xFF);
            self.log
                .record_invalid(AddressSpace::Mmio, Direction::Read, addr, data.len());
        }
    }

    /// A guest write of `data` (1..=8 bytes, little endian) at guest-physical `addr`.
    pub fn mmio_write(&mut self, addr: u64, data: &[u8]) {
        if (1..=8).contains(&data.len()) {
            self.mmio.write(addr, data, &mut self.log);
        } else {
            self.log
                .record_invalid(AddressSpace::Mmio, Direction::Write, addr, data.len());
        }
    }

    /// Every registered range, port ranges first, each space in address
    /// order: what a guest can reach, for the host fuzz harness (crates/fuzz)
    /// and diagnostics. A device joins the list by registering.
    pub fn ranges(&self) -> impl Iterator<Item = RangeInfo> + '_ {
        [&self.pio, &self.mmio].into_iter().flat_map(|s| {
            s.ranges.iter().map(move |r| RangeInfo {
                space: s.kind,
                base: r.base,
                len: r.last - r.base + 1,
                name: r.name,
            })
        })
    }

    /// How many accesses reached no device so far.
    pub fn unclaimed(&self) -> UnclaimedStats {
        self.log.stats
    }
}

#[cfg(test)]
mod tests;
