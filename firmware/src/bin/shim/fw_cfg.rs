//! The fw_cfg driver: PIO for small reads, DMA (when the ID key offers it)
//! for everything loaded into guest memory.

use core::sync::atomic::{fence, Ordering};

use keel_shim::fw_cfg::{self as spec, dma, key, FileEntry, DIR_ENTRY_LEN};
use keel_shim::layout::DMA_DESCRIPTOR;
use keel_shim::multiboot::MAX_MODULES;
use keel_shim::report::Error;

use crate::hw::{inb, outl, outw, phys};

pub struct FwCfg {
    dma: bool,
}

/// The directory entries the shim looks for.
#[derive(Default)]
pub struct Files {
    pub kernel: Option<FileEntry>,
    pub initrd: Option<FileEntry>,
    pub initrd_cmdline: Option<FileEntry>,
    pub cmdline: Option<FileEntry>,
    pub acpi: Option<FileEntry>,
    pub e820: Option<FileEntry>,
    pub kernel_name: Option<FileEntry>,
    /// `opt/keel/moduleN` and its `-cmdline` at index N (0 is the initrd's).
    pub modules: [Option<FileEntry>; MAX_MODULES],
    pub module_cmdlines: [Option<FileEntry>; MAX_MODULES],
}

impl FwCfg {
    /// Checks the signature and asks for DMA.
    pub fn probe() -> Result<Self, Error> {
        let mut sig = [0u8; 4];
        select(key::SIGNATURE);
        read_pio(&mut sig);
        if sig != spec::SIGNATURE {
            return Err(Error::NoFwCfg);
        }
        let mut id = [0u8; 4];
        select(key::ID);
        read_pio(&mut id);
        Ok(FwCfg {
            dma: u32::from_le_bytes(id) & spec::ID_DMA != 0,
        })
    }

    pub fn has_dma(&self) -> bool {
        self.dma
    }

    /// Walks the file directory (key 0x19).
    pub fn files(&self) -> Files {
        let mut f = Files::default();
        select(key::FILE_DIR);
        let mut count = [0u8; 4];
        read_pio(&mut count);
        for _ in 0..u32::from_be_bytes(count).min(4096) {
            let mut raw = [0u8; DIR_ENTRY_LEN];
            read_pio(&mut raw);
            let e = FileEntry::parse(&raw);
            let slot = match e.name() {
                n if n == spec::files::KERNEL.as_bytes() => &mut f.kernel,
                n if n == spec::files::INITRD.as_bytes() => &mut f.initrd,
                n if n == spec::files::INITRD_CMDLINE.as_bytes() => &mut f.initrd_cmdline,
                n if n == spec::files::CMDLINE.as_bytes() => &mut f.cmdline,
                n if n == spec::files::ACPI.as_bytes() => &mut f.acpi,
                n if n == spec::files::E820.as_bytes() => &mut f.e820,
                n if n == spec::files::KERNEL_NAME.as_bytes() => &mut f.kernel_name,
                n => match spec::module_file(n, MAX_MODULES) {
                    Some((i, false)) => &mut f.modules[i],
                    Some((i, true)) => &mut f.module_cmdlines[i],
                    None => continue,
                },
            };
            *slot = Some(e);
        }
        f
    }

    /// Selects `file`; reads continue from its start.
    pub fn open(&self, file: &FileEntry) {
        select(file.select);
    }

    /// Reads the next `buf.len()` bytes of the selected item.
    pub fn read(&self, buf: &mut [u8]) {
        if self.dma && buf.len() >= 64 {
            self.dma_read(buf.as_mut_ptr() as u64, buf.len() as u64);
        } else {
            read_pio(buf);
        }
    }

    /// Reads the next `len` bytes of the selected item to guest-physical `addr`.
    ///
    /// # Safety
    /// `[addr, addr + len)` must be RAM nothing else uses.
    pub unsafe fn read_to(&self, addr: u64, len: u64) {
        if self.dma {
            self.dma_read(addr, len);
        } else {
            let mut done = 0;
            while done < len {
                let n = (len - done).min(1 << 20);
                // SAFETY: the caller's promise.
                read_pio(unsafe { phys(addr + done, n as usize) });
                done += n;
            }
        }
    }

    fn dma_read(&self, addr: u64, len: u64) {
        let mut done = 0;
        while done < len {
            let n = (len - done).min(1 << 30) as u32;
            let d = spec::dma_descriptor(dma::READ, n, addr + done);
            // SAFETY: the descriptor page is reserved for this (layout.rs).
            let slot = unsafe { phys(DMA_DESCRIPTOR, 16) };
            slot.copy_from_slice(&d);
            fence(Ordering::SeqCst);
            let a = DMA_DESCRIPTOR;
            outl(spec::DMA_PORT, ((a >> 32) as u32).swap_bytes());
            outl(spec::DMA_PORT + 4, (a as u32).swap_bytes());
            loop {
                fence(Ordering::SeqCst);
                // SAFETY: as above; the device writes the control word back.
                let c = unsafe { core::ptr::read_volatile(DMA_DESCRIPTOR as *const u32) };
                let c = u32::from_be(c);
                if c & !dma::ERROR == 0 {
                    assert!(c & dma::ERROR == 0, "fw_cfg DMA transfer failed");
                    break;
                }
                core::hint::spin_loop();
            }
            done += u64::from(n);
        }
    }
}

fn select(key: u16) {
    outw(spec::SELECTOR_PORT, key);
}

fn read_pio(buf: &mut [u8]) {
    for b in buf {
        *b = inb(spec::DATA_PORT);
    }
}
