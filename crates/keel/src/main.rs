//! Keel: a bare-metal, type-1 hypervisor (multiboot2 kernel).
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
    if magic != MULTIBOOT2_MAGIC {
        log::error!("not started by a multiboot2 loader (EAX = {magic:#x}); boot Keel with GRUB's multiboot2 command");
        finish(NO_VIRTUALIZATION_STATUS);
    }
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

    // Everything Keel must never hand out: its image, the boot information, the modules.
    let mut reserved: Vec<Range<u64>> = Vec::from([
        keel_image(),
        boot_info.start_address() as u64..boot_info.end_address() as u64,
    ]);
    let mut modules: Vec<(String, &'static mut [u8])> = Vec::new();
    for m in boot_info.module_tags() {
        let range = u64::from(m.start_address())..u64::from(m.end_address());
        reserved.push(range.clone());
        let name = String::from(m.cmdline().unwrap_or("").trim());
        // SAFETY: the loader placed the module at this identity-mapped range,
        // which is reserved above, so Keel never allocates it; this is the
        // only reference made to it (modules do not overlap), and a disk
        // image module is the one thing that writes to it.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(
                range.start as *mut u8,
                (range.end - range.start) as usize,
            )
        };
        modules.push((name, bytes));
    }
    let available: Vec<Range<u64>> = match boot_info.memory_map_tag() {
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
        log::error!("no VM configuration: GRUB must load one as a module named '{CONFIG_MODULE}' (module2 /boot/config {CONFIG_MODULE})");
        finish(NO_VIRTUALIZATION_STATUS);
    }

    let apic_ids = arch::smp::processors(
        boot_info
            .rsdp_v2_tag()
            .map(|t| t as *const _ as u64 + 8)
            .or_else(|| boot_info.rsdp_v1_tag().map(|t| t as *const _ as u64 + 8)),
    );
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
