//! QEMU's firmware configuration interface (fw_cfg), the channel SeaBIOS
//! reads the machine's description through: CPU count, the e820 map, ACPI
//! tables, boot order. Facts from QEMU's `docs/specs/fw_cfg.rst`.
//!
//! Ports (x86): selector `0x510` (16-bit write), data `0x511` (byte reads
//! stream the selected item; past its end they read 0), DMA address
//! `0x514` (high dword) and `0x518` (low dword; writing it starts the
//! transfer), both written big-endian. A dword read of `0x514`/`0x518`
//! returns the DMA signature "QEMU CFG".
//!
//! DMA reaches guest memory through the handle the device is created with:
//! the write to `0x518` runs the request, so one of up to
//! [`dma::DMA_BUDGET`] bytes is complete as soon as its OUT retires, as on
//! QEMU, and a longer one goes on in the device's service hook while
//! [`FwCfg::dma_pending`] (see `dma.rs`).
//!
//! Items keep their contents across [`FwCfg::reset`] (QEMU's do too); only
//! the selection, the read position and the DMA address are cleared.

pub mod dma;
pub mod e820;

use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;

use guest_memory::GuestMemory;

use crate::bus::BusDevice;
use crate::timer::TimerDevice;

pub use e820::{E820Entry, E820Type, RamLayout};

/// Well-known selector keys (fw_cfg.rst "Firmware Configuration Items", and
/// QEMU's x86 machine for the architecture-local ones).
pub mod key {
    pub const SIGNATURE: u16 = 0x0000;
    pub const ID: u16 = 0x0001;
    pub const UUID: u16 = 0x0002;
    pub const RAM_SIZE: u16 = 0x0003;
    pub const NOGRAPHIC: u16 = 0x0004;
    pub const NB_CPUS: u16 = 0x0005;
    pub const NUMA: u16 = 0x000D;
    pub const BOOT_MENU: u16 = 0x000E;
    pub const MAX_CPUS: u16 = 0x000F;
    pub const FILE_DIR: u16 = 0x0019;
    /// The first key given to a file.
    pub const FILE_FIRST: u16 = 0x0020;
    /// Bit 14 selects the (obsolete) write channel; it does not name another item.
    pub const WRITE_CHANNEL: u16 = 0x4000;
    /// Bit 15: architecture-specific items.
    pub const ARCH_LOCAL: u16 = 0x8000;
    /// x86: count (LE u16) of legacy ACPI tables; 0, Keel uses `etc/acpi/tables`.
    pub const ACPI_TABLES: u16 = 0x8000;
    /// x86: count (LE u16) of legacy SMBIOS entries; 0.
    pub const SMBIOS_ENTRIES: u16 = 0x8001;
    /// x86: LE u32 1 = the ISA IRQ 0 -> GSI 2 override exists.
    pub const IRQ0_OVERRIDE: u16 = 0x8002;
    /// x86: legacy e820 table (LE u32 count, 0); `etc/e820` supersedes it.
    pub const E820_TABLE: u16 = 0x8003;
}

/// The ID item's feature bits.
const ID_TRADITIONAL: u32 = 1 << 0;
const ID_DMA: u32 = 1 << 1;

/// Longest file name, including its terminating NUL (the directory's name field).
pub const FILE_NAME_LEN: usize = 56;

/// Files Keel's platform fills in (names as SeaBIOS looks them up).
pub mod file {
    pub const E820: &str = "etc/e820";
    pub const BOOTORDER: &str = "bootorder";
    pub const TABLE_LOADER: &str = "etc/table-loader";
    pub const ACPI_TABLES: &str = "etc/acpi/tables";
    pub const ACPI_RSDP: &str = "etc/acpi/rsdp";
}

/// Why a file could not be added or changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FwCfgError {
    /// The name is empty, has a NUL, or does not fit the directory's 56 bytes with its NUL.
    BadName { name: String },
    /// A file of this name exists already.
    Duplicate { name: String },
    /// No file of this name.
    NoSuchFile { name: String },
    /// Every file key is taken.
    Full,
    /// Items are at most 4 GiB - 1 (sizes are 32-bit).
    TooLarge { name: String, len: usize },
}

impl fmt::Display for FwCfgError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FwCfgError::BadName { name } => write!(
                f,
                "fw_cfg file name '{name}' is empty, contains a NUL, or is longer than {} bytes",
                FILE_NAME_LEN - 1
            ),
            FwCfgError::Duplicate { name } => write!(f, "fw_cfg already has a file '{name}'"),
            FwCfgError::NoSuchFile { name } => write!(f, "fw_cfg has no file '{name}'"),
            FwCfgError::Full => write!(
                f,
                "fw_cfg has no free file keys (0x{:04x}-0x3fff are taken)",
                key::FILE_FIRST
            ),
            FwCfgError::TooLarge { name, len } => write!(
                f,
                "fw_cfg file '{name}' is {len} bytes; items are limited to 4 GiB - 1"
            ),
        }
    }
}

/// An item's bytes: owned, or borrowed from memory that lives as long as
/// Keel (a boot module: a kernel or initrd handed over without a copy).
enum ItemData {
    Owned(Vec<u8>),
    Static(&'static [u8]),
}

impl ItemData {
    fn as_slice(&self) -> &[u8] {
        match self {
            ItemData::Owned(v) => v,
            ItemData::Static(s) => s,
        }
    }
    /// Writable items are always owned.
    fn as_mut_slice(&mut self) -> Option<&mut [u8]> {
        match self {
            ItemData::Owned(v) => Some(v),
            ItemData::Static(_) => None,
        }
    }
    fn len(&self) -> usize {
        self.as_slice().len()
    }
}

struct Item {
    data: ItemData,
    writable: bool,
    /// Set for files (keys from [`key::FILE_FIRST`]).
    name: Option<String>,
}

/// The fw_cfg device.
pub struct FwCfg {
    items: BTreeMap<u16, Item>,
    /// The selector as written; lookups ignore [`key::WRITE_CHANNEL`].
    selector: u16,
    /// Read/write position in the selected item.
    offset: u32,
    dma_high: u32,
    pending_dma: Option<u64>,
    /// A DMA request longer than one call's budget, in progress.
    dma_job: Option<dma::DmaJob>,
    /// The guest's memory, which DMA reads and writes.
    mem: GuestMemory,
}

impl FwCfg {
    /// The selector port; the platform registers [`FwCfg::LEN`] ports from it
    /// (selector/data at `+0..=1`, DMA address at `+4..=11`).
    pub const PORT: u16 = 0x510;
    pub const LEN: u16 = 12;

    /// A device with the signature, the ID (traditional + DMA), `nb_cpus`
    /// and `max_cpus`, the legacy RAM size (that of `mem`), no NUMA nodes,
    /// an empty file directory, and the x86 legacy items SeaBIOS probes (all
    /// empty). DMA reaches the guest through `mem`.
    pub fn new(nb_cpus: u16, max_cpus: u16, mem: GuestMemory) -> Self {
        let ram_size = mem.size();
        let mut fw = FwCfg {
            items: BTreeMap::new(),
            selector: 0,
            offset: 0,
            dma_high: 0,
            pending_dma: None,
            dma_job: None,
            mem,
        };
        fw.set_item(key::SIGNATURE, b"QEMU".to_vec());
        fw.set_item(key::ID, (ID_TRADITIONAL | ID_DMA).to_le_bytes().to_vec());
        fw.set_item(key::UUID, alloc::vec![0; 16]);
        fw.set_item(key::RAM_SIZE, ram_size.to_le_bytes().to_vec());
        fw.set_item(key::NOGRAPHIC, 0u16.to_le_bytes().to_vec());
        fw.set_item(key::NB_CPUS, nb_cpus.to_le_bytes().to_vec());
        fw.set_item(key::MAX_CPUS, max_cpus.to_le_bytes().to_vec());
        fw.set_item(key::BOOT_MENU, 0u16.to_le_bytes().to_vec());
        // NUMA: LE u64 node count (0), then a node per possible CPU (none).
        fw.set_item(key::NUMA, alloc::vec![0; 8 * (1 + usize::from(max_cpus))]);
        fw.set_item(key::ACPI_TABLES, 0u16.to_le_bytes().to_vec());
        fw.set_item(key::SMBIOS_ENTRIES, 0u16.to_le_bytes().to_vec());
        fw.set_item(key::IRQ0_OVERRIDE, 1u32.to_le_bytes().to_vec());
        fw.set_item(key::E820_TABLE, 0u32.to_le_bytes().to_vec());
        fw.rebuild_directory();
        fw
    }

    /// Sets a numbered (non-file) item, read-only to the guest.
    pub fn set_item(&mut self, key: u16, data: Vec<u8>) {
        self.items.insert(
            key & !key::WRITE_CHANNEL,
            Item {
                data: ItemData::Owned(data),
                writable: false,
                name: None,
            },
        );
    }

    /// Adds a file the guest may only read; returns its key.
    pub fn add_file(&mut self, name: &str, data: Vec<u8>) -> Result<u16, FwCfgError> {
        self.insert_file(name, ItemData::Owned(data), false)
    }

    /// Adds a read-only file over bytes that live as long as the hypervisor
    /// (a boot module), without copying them; returns its key.
    pub fn add_static_file(&mut self, name: &str, data: &'static [u8]) -> Result<u16, FwCfgError> {
        self.insert_file(name, ItemData::Static(data), false)
    }

    /// Adds a file the guest may also write by DMA (within its size); returns its key.
    pub fn add_writable_file(&mut self, name: &str, data: Vec<u8>) -> Result<u16, FwCfgError> {
        self.insert_file(name, ItemData::Owned(data), true)
    }

    /// Replaces the contents of an existing file, keeping its key: for
    /// slots added early and filled later (ACPI tables).
    pub fn set_file_data(&mut self, name: &str, data: Vec<u8>) -> Result<(), FwCfgError> {
        check_len(name, &data)?;
        let key = self.file_key(name).ok_or_else(|| FwCfgError::NoSuchFile {
            name: String::from(name),
        })?;
        if let Some(item) = self.items.get_mut(&key) {
            item.data = ItemData::Owned(data);
        }
        self.rebuild_directory();
        Ok(())
    }

    /// The key of file `name`.
    pub fn file_key(&self, name: &str) -> Option<u16> {
        self.items
            .range(key::FILE_FIRST..key::WRITE_CHANNEL)
            .find(|(_, i)| i.name.as_deref() == Some(name))
            .map(|(&k, _)| k)
    }

    /// The current contents of file `name` (after guest writes, for writable ones).
    pub fn file(&self, name: &str) -> Option<&[u8]> {
        let key = self.file_key(name)?;
        self.items.get(&key).map(|i| i.data.as_slice())
    }

    /// Adds `etc/e820` for `layout` (see [`e820::build`]).
    pub fn add_e820(&mut self, layout: &RamLayout) -> Result<u16, FwCfgError> {
        self.add_file(file::E820, e820::build(layout))
    }

    /// Adds `bootorder`: one OpenFirmware device path per line, in boot
    /// priority order, NUL-terminated (the format SeaBIOS parses).
    pub fn add_bootorder(&mut self, paths: &[&str]) -> Result<u16, FwCfgError> {
        let mut text = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            if i > 0 {
                text.push(b'\n');
            }
            text.extend_from_slice(p.as_bytes());
        }
        text.push(0);
        self.add_file(file::BOOTORDER, text)
    }

    /// Adds empty `etc/table-loader`, `etc/acpi/tables` and `etc/acpi/rsdp`,
    /// to be filled with [`FwCfg::set_file_data`] once the ACPI tables are built.
    pub fn add_acpi_slots(&mut self) -> Result<(), FwCfgError> {
        for name in [file::TABLE_LOADER, file::ACPI_TABLES, file::ACPI_RSDP] {
            self.add_file(name, Vec::new())?;
        }
        Ok(())
    }

    /// Whether a DMA request has bytes left to move (or, while one does,
    /// the guest wrote the address of another).
    pub fn dma_pending(&self) -> bool {
        self.pending_dma.is_some() || self.dma_job.is_some()
    }

    /// Power-on state of the interface: signature selected, position 0, no DMA pending.
    pub fn reset(&mut self) {
        self.selector = key::SIGNATURE;
        self.offset = 0;
        self.dma_high = 0;
        self.pending_dma = None;
        self.dma_job = None;
    }

    fn insert_file(
        &mut self,
        name: &str,
        data: ItemData,
        writable: bool,
    ) -> Result<u16, FwCfgError> {
        if name.is_empty() || name.len() >= FILE_NAME_LEN || name.contains('\0') {
            return Err(FwCfgError::BadName {
                name: String::from(name),
            });
        }
        check_len(name, data.as_slice())?;
        if self.file_key(name).is_some() {
            return Err(FwCfgError::Duplicate {
                name: String::from(name),
            });
        }
        let key = self
            .items
            .range(key::FILE_FIRST..key::WRITE_CHANNEL)
            .next_back()
            .map_or(Some(key::FILE_FIRST), |(&k, _)| k.checked_add(1))
            .filter(|&k| k < key::WRITE_CHANNEL)
            .ok_or(FwCfgError::Full)?;
        self.items.insert(
            key,
            Item {
                data,
                writable,
                name: Some(String::from(name)),
            },
        );
        self.rebuild_directory();
        Ok(key)
    }

    /// The file directory (fw_cfg.rst "File Directory"): BE u32 count, then
    /// per file BE u32 size, BE u16 key, u16 reserved, 56-byte NUL-padded name.
    fn rebuild_directory(&mut self) {
        let files: Vec<(u16, &Item)> = self
            .items
            .range(key::FILE_FIRST..key::WRITE_CHANNEL)
            .map(|(&k, i)| (k, i))
            .collect();
        let mut dir = Vec::with_capacity(4 + files.len() * 64);
        dir.extend_from_slice(&(files.len() as u32).to_be_bytes());
        for (k, item) in files {
            dir.extend_from_slice(&(item.data.len() as u32).to_be_bytes());
            dir.extend_from_slice(&k.to_be_bytes());
            dir.extend_from_slice(&[0, 0]);
            let mut name = [0u8; FILE_NAME_LEN];
            let n = item.name.as_deref().unwrap_or("").as_bytes();
            name[..n.len()].copy_from_slice(n);
            dir.extend_from_slice(&name);
        }
        self.set_item(key::FILE_DIR, dir);
    }

    fn select(&mut self, selector: u16) {
        self.selector = selector;
        self.offset = 0;
    }

    fn selected(&self) -> Option<&Item> {
        self.items.get(&(self.selector & !key::WRITE_CHANNEL))
    }

    /// The next byte of the selected item; 0 past its end or with nothing selected.
    fn read_data_byte(&mut self) -> u8 {
        let b = self
            .selected()
            .and_then(|i| i.data.as_slice().get(self.offset as usize).copied());
        if b.is_some() {
            self.offset += 1;
        }
        b.unwrap_or(0)
    }
}

fn check_len(name: &str, data: &[u8]) -> Result<(), FwCfgError> {
    if u32::try_from(data.len()).is_err() {
        return Err(FwCfgError::TooLarge {
            name: String::from(name),
            len: data.len(),
        });
    }
    Ok(())
}

/// The DMA interface signature, "QEMU CFG" as a big-endian number.
const DMA_SIGNATURE: u64 = 0x5145_4D55_2043_4647;

impl BusDevice for FwCfg {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        match (offset, data.len()) {
            // Data port (also the selector port, which reads as data on QEMU's x86).
            (0 | 1, n) if offset as usize + n <= 2 => {
                for b in data.iter_mut() {
                    *b = self.read_data_byte();
                }
            }
            (4, 4) => data.copy_from_slice(&((DMA_SIGNATURE >> 32) as u32).to_le_bytes()),
            (8, 4) => data.copy_from_slice(&(DMA_SIGNATURE as u32).to_le_bytes()),
            _ => data.fill(0xFF),
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        match (offset, data) {
            (0, &[lo, hi]) => self.select(u16::from_le_bytes([lo, hi])),
            (4, &[a, b, c, d]) => self.dma_high = u32::from_be_bytes([a, b, c, d]),
            (8, &[a, b, c, d]) => {
                let addr =
                    u64::from(self.dma_high) << 32 | u64::from(u32::from_be_bytes([a, b, c, d]));
                self.dma_high = 0;
                self.pending_dma = Some(addr);
                self.run_pending_dma();
            }
            (4, &[a, b, c, d, e, f, g, h]) => {
                self.dma_high = 0;
                self.pending_dma = Some(u64::from_be_bytes([a, b, c, d, e, f, g, h]));
                self.run_pending_dma();
            }
            // Data-port writes are obsolete (QEMU ignores them since 2.4); writable
            // items are written by DMA only.
            _ => {}
        }
    }
}

/// The rest of a DMA request longer than one exit's budget.
impl TimerDevice for FwCfg {
    fn next_deadline_ns(&mut self) -> Option<u64> {
        // Due now: a time at or before the clock's present.
        self.dma_pending().then_some(0)
    }

    fn service(&mut self) {
        self.run_pending_dma();
    }
}

#[cfg(test)]
mod tests;
