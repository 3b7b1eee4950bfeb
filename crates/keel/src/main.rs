//! Keel: a bare-metal, type-1 hypervisor (a multiboot2 kernel for GRUB, and a
//! multiboot one for QEMU's `-kernel`).
//!
//! Boot order: serial console, GDT/TSS, IDT, heap, boot information, frame
//! allocator, Keel's own page tables, clocks, the machine's virtio-blk disks,
//! CPU detection, then the VM from the configuration module, run to its end.
//! See docs/ARCHITECTURE.md.
#![no_std]
#![no_main]

extern crate alloc;

mod arch;
mod clock;
mod cpu;
mod host;
mod host_rtc;
mod hosting;
mod memory;
#[macro_use]
mod serial;
mod sched;
mod shutdown;
mod vm;

use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use keel::frames::FrameAllocator;
use multiboot2::{BootInformation, BootInformationHeader, MemoryAreaType};
use shutdown::{finish, NO_VIRTUALIZATION_STATUS};

/// The value GRUB leaves in EAX for a multiboot2 kernel (Multiboot2 spec 3.3).
const MULTIBOOT2_MAGIC: u32 = 0x36d7_6289;
/// The command line of the boot module that holds the VM configuration.
const CONFIG_MODULE: &str = "config";

extern "C" {
    static __keel_start: u8;
    static __keel_end: u8;
}

fn keel_image() -> Range<u64> {
    // Only the addresses of the linker-defined symbols are taken, never their contents.
    (core::ptr::addr_of!(__keel_start) as u64)..(core::ptr::addr_of!(__keel_end) as u64)
}

#[no_mangle]
extern "C" fn keel_main(magic: u32, mbi_addr: u64) -> ! {
    serial::init();
    memory::heap::init();
    arch::gdt::init();
    arch::idt::init();
    println!("keel: Keel {} starting", env!("CARGO_PKG_VERSION"));
    let boot = match magic {
        MULTIBOOT2_MAGIC => multiboot2_info(mbi_addr),
        keel::multiboot1::MAGIC => multiboot1_info(mbi_addr),
        _ => {
            log::error!(
                "not started by a multiboot2 or multiboot loader (EAX = {magic:#x}); boot Keel \
                 with GRUB's multiboot2 command or QEMU's -kernel"
            );
            finish(NO_VIRTUALIZATION_STATUS);
        }
    };
    let Boot {
        mut reserved,
        modules,
        available,
        rsdp,
    } = boot;
    reserved.insert(0, keel_image());
    let top = available.iter().map(|r| r.end).max().unwrap_or(0);
    let available_low = available.clone();
    let mut frames = FrameAllocator::new(available, &reserved);
    if memory::paging::init(&mut frames, top).is_none() {
        log::error!("no memory for Keel's page tables");
        finish(NO_VIRTUALIZATION_STATUS);
    }
    log::info!(
        "{} MiB of RAM free for guests, {} boot modules",
        frames.free_bytes() >> 20,
        modules.len()
    );
    match clock::calibrate() {
        Some(hz) => log::info!("TSC runs at {} MHz", hz / 1_000_000),
        None => {
            log::error!("the PIT never counted down: cannot measure time on this machine");
            finish(NO_VIRTUALIZATION_STATUS);
        }
    }
    match host_rtc::unix_time() {
        Some(t) => {
            clock::set_wall_clock(t);
            log::info!("the machine's RTC reads {t} s since 1970 (UTC)");
        }
        None => log::warn!("the machine's RTC is unreadable: guests' clocks start at 1970"),
    }
    match arch::lapic::init() {
        Some(hz) => log::info!(
            "local APIC timer runs at {} kHz; halted guests sleep on it",
            hz / 1000
        ),
        None => log::warn!("no usable local APIC timer: a halted guest will keep this CPU busy"),
    }

    let (host_disks, host_nics) = host::probe(&mut frames);

    let backend = match cpu::detect() {
        Ok(backend) => backend,
        Err(why) => {
            log::error!("cannot run guests: {why}");
            finish(NO_VIRTUALIZATION_STATUS);
        }
    };

    if let Err(e) = cpu::enable_this_cpu(backend) {
        log::error!("cannot run guests: {e}");
        finish(NO_VIRTUALIZATION_STATUS);
    }
    BACKEND.call_once(|| backend);

    // Every configuration module is a VM, in the order GRUB loaded them.
    let mut slots = Vec::new();
    for (i, (_, bytes)) in modules
        .iter()
        .filter(|(n, _)| n == CONFIG_MODULE)
        .enumerate()
    {
        let what = alloc::format!("VM configuration {}", i + 1);
        match vm_config::parse_bytes(bytes) {
            Ok(parsed) => {
                for w in &parsed.warnings {
                    log::warn!("{}", w.in_file(&what));
                }
                slots.push(hosting::Slot::new(
                    parsed.config.name.clone(),
                    Some(parsed.config),
                ));
            }
            Err(e) => {
                log::error!("{}; that VM does not start", e.in_file(&what));
                slots.push(hosting::Slot::new(what, None));
            }
        }
    }
    if slots.is_empty() {
        log::error!("no VM configuration: the boot loader must load one as a module named '{CONFIG_MODULE}' (GRUB: module2 /boot/config {CONFIG_MODULE}; QEMU: -initrd 'FILE {CONFIG_MODULE}')");
        finish(NO_VIRTUALIZATION_STATUS);
    }

    let apic_ids = arch::smp::processors(rsdp);
    let running = match (
        apic_ids,
        arch::smp::trampoline_page(&available_low, &reserved),
    ) {
        (Some(ids), Some(page)) if ids.len() > 1 => arch::smp::start_aps(&ids, page, ap_main),
        (Some(_), _) => Vec::from([0]),
        (None, _) => {
            log::warn!("no ACPI MADT from the firmware: Keel uses only the boot CPU");
            Vec::from([0])
        }
    };
    log::info!(
        "{} CPU{} running (local APIC IDs {:?})",
        running.len(),
        if running.len() == 1 { "" } else { "s" },
        running
    );

    let world = vm::World {
        images: vm::Images {
            modules: keel::boot_modules::BootModules::new(modules),
            host_disks,
            host_nics,
        },
        frames,
        reserved,
    };
    hosting::start(slots, world, backend, running.len())
}

/// What Keel takes from its boot loader, whichever protocol it spoke.
struct Boot {
    /// Memory Keel must never hand out besides its image: the boot
    /// information it goes on reading, the modules.
    reserved: Vec<Range<u64>>,
    /// Each module by name, its memory Keel's from now on.
    modules: Vec<(String, &'static mut [u8])>,
    /// RAM the loader's memory map calls available.
    available: Vec<Range<u64>>,
    /// The RSDP's address if the loader passed one.
    rsdp: Option<u64>,
}

/// A module's identity-mapped memory as Keel's.
///
/// # Safety
///
/// `range` is a module the boot loader placed in identity-mapped RAM, the
/// caller reserves it from the frame allocator, and no other reference to
/// it is ever made (modules do not overlap; each is made into bytes once).
unsafe fn module_bytes(range: &Range<u64>) -> &'static mut [u8] {
    // SAFETY: the caller's promise; a disk image module is the one thing
    // that writes to the bytes.
    unsafe {
        core::slice::from_raw_parts_mut(range.start as *mut u8, (range.end - range.start) as usize)
    }
}

/// The multiboot2 boot information GRUB left at `mbi_addr`.
fn multiboot2_info(mbi_addr: u64) -> Boot {
    // SAFETY: a multiboot2 loader left a valid boot information structure at
    // this address, identity-mapped by the boot page tables; nothing writes it.
    let boot_info = match unsafe { BootInformation::load(mbi_addr as *const BootInformationHeader) }
    {
        Ok(b) => b,
        Err(e) => {
            log::error!("the multiboot2 boot information is malformed: {e:?}");
            finish(NO_VIRTUALIZATION_STATUS);
        }
    };
    // The RSDP tag lies inside the information, which stays reserved.
    let mut reserved = Vec::new();
    reserved.push(boot_info.start_address() as u64..boot_info.end_address() as u64);
    let mut modules = Vec::new();
    for m in boot_info.module_tags() {
        let range = u64::from(m.start_address())..u64::from(m.end_address());
        reserved.push(range.clone());
        let name = String::from(m.cmdline().unwrap_or("").trim());
        // SAFETY: GRUB placed the module there; it is reserved just above,
        // and made into bytes here only.
        modules.push((name, unsafe { module_bytes(&range) }));
    }
    let available = match boot_info.memory_map_tag() {
        Some(map) => map
            .memory_areas()
            .iter()
            .filter(|a| a.typ() == MemoryAreaType::Available)
            .map(|a| a.start_address()..a.end_address())
            .collect(),
        None => {
            log::error!("the boot loader passed no memory map");
            finish(NO_VIRTUALIZATION_STATUS);
        }
    };
    let rsdp = boot_info
        .rsdp_v2_tag()
        .map(|t| t as *const _ as u64 + 8)
        .or_else(|| boot_info.rsdp_v1_tag().map(|t| t as *const _ as u64 + 8));
    Boot {
        reserved,
        modules,
        available,
        rsdp,
    }
}

/// The multiboot (version 1) boot information at `mbi_addr` (QEMU's
/// `-kernel`), copied out before anything is allocated, so none of it
/// needs reserving; the RSDP is searched for in the BIOS areas.
fn multiboot1_info(mbi_addr: u64) -> Boot {
    let mut read = |at: u64, buf: &mut [u8]| {
        let Some(end) = at.checked_add(buf.len() as u64) else {
            return false;
        };
        // Nothing lies above 4 GiB in a 32-bit structure; address 0 is no
        // place a pointer may name in Rust, whatever is mapped there.
        if end > 1 << 32 || at == 0 {
            return false;
        }
        // SAFETY: the boot page tables identity-map the first 4 GiB, and
        // reading memory has no side effects there except in MMIO ranges,
        // which a loader's structures never point into; nothing else runs
        // yet, so nothing writes it meanwhile.
        unsafe { core::ptr::copy_nonoverlapping(at as *const u8, buf.as_mut_ptr(), buf.len()) };
        true
    };
    let info = match keel::multiboot1::parse(&mut read, mbi_addr) {
        Ok(i) => i,
        Err(e) => {
            log::error!("the multiboot boot information is unusable: {e}");
            finish(NO_VIRTUALIZATION_STATUS);
        }
    };
    let reserved = info.modules.iter().map(|m| m.range.clone()).collect();
    let modules = info
        .modules
        .iter()
        // SAFETY: the loader placed the module there; `reserved` holds
        // every module's range, and each is made into bytes here only.
        .map(|m| (String::from(m.name()), unsafe { module_bytes(&m.range) }))
        .collect();
    Boot {
        reserved,
        modules,
        available: info.available,
        rsdp: None,
    }
}

/// The backend every CPU turns on (the BSP detects it).
static BACKEND: spin::Once<cpu::Backend> = spin::Once::new();

/// An application processor, started by `arch::smp` on its own structures:
/// virtualization on, then the VM it is given.
fn ap_main(cpu: usize) -> ! {
    if let Some(&backend) = BACKEND.get() {
        if let Err(e) = cpu::enable_this_cpu(backend) {
            log::error!("CPU {cpu}: {e}");
        }
    }
    hosting::cpu_main(cpu)
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    serial::break_lock_for_fatal_report();
    println!("keel: FATAL: panic: {info}");
    finish(shutdown::KEEL_FAULT_STATUS)
}
