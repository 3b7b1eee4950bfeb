//! The machine's other CPUs: found in the firmware's ACPI MADT (ACPI 6.5,
//! 5.2.12 "Multiple APIC Description Table"), started with INIT-SIPI-SIPI
//! (SDM Vol 3A 8.4.4.1, "Typical BSP Initialization Sequence") through a
//! real-mode trampoline below 1 MiB (`arch::boot`), then given the same
//! control registers and page tables as the BSP and their own GDT, TSS and
//! IST stack.

use alloc::vec::Vec;
use core::ops::Range;
use core::ptr::NonNull;
use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};

/// Keel runs identity-mapped: a physical address is its own virtual one.
#[derive(Clone, Copy)]
struct Identity;

impl AcpiHandler for Identity {
    unsafe fn map_physical_region<T>(&self, pa: usize, size: usize) -> PhysicalMapping<Self, T> {
        let ptr =
            NonNull::new(pa as *mut T).expect("the firmware placed an ACPI table at address 0");
        // SAFETY: Keel's page tables identity-map all memory (memory::paging),
        // so the table is readable at its physical address; nothing unmaps it.
        unsafe { PhysicalMapping::new(pa, ptr, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// The local APIC IDs of the machine's usable processors, the BSP's among
/// them, in MADT order; `None` without a readable MADT. `rsdp` is the RSDP's
/// address if the boot loader passed one (a multiboot2 RSDP tag); otherwise
/// the BIOS areas are searched (ACPI 6.5, 5.2.5.1).
pub fn processors(rsdp: Option<u64>) -> Option<Vec<u32>> {
    // SAFETY: `rsdp` is the boot loader's copy of the RSDP inside the
    // identity-mapped boot information; the BIOS search reads only the EBDA
    // and the BIOS area below 1 MiB, identity-mapped too.
    let tables = unsafe {
        match rsdp {
            Some(a) => AcpiTables::from_rsdp(Identity, a as usize),
            None => AcpiTables::search_for_rsdp_bios(Identity),
        }
    }
    .ok()?;
    let madt = tables.find_table::<Madt>().ok()?;
    let mut ids = Vec::new();
    for entry in madt.get().entries() {
        // Flags bit 0 "Enabled", bit 1 "Online Capable" (ACPI 6.5, Table 5.23).
        let (id, flags) = match entry {
            MadtEntry::LocalApic(e) => (u32::from(e.apic_id), e.flags),
            MadtEntry::LocalX2Apic(e) => (e.x2apic_id, e.flags),
            _ => continue,
        };
        if flags & 0b11 != 0 && !ids.contains(&id) {
            ids.push(id);
        }
    }
    Some(ids)
}

/// A free 4 KiB page below 640 KiB for the trampoline (the SIPI vector
/// names a page below 1 MiB): in an available range, touching no reserved one.
pub fn trampoline_page(available: &[Range<u64>], reserved: &[Range<u64>]) -> Option<u64> {
    (1..0xa0u64).map(|p| p << 12).find(|&pa| {
        let page = pa..pa + 0x1000;
        available
            .iter()
            .any(|r| r.start <= page.start && page.end <= r.end)
            && !reserved
                .iter()
                .any(|r| r.start < page.end && page.start < r.end)
    })
}

extern "C" {
    static keel_ap_trampoline: u8;
    static keel_ap_trampoline_end: u8;
}

/// The stack the next AP starts on (read by `ap_long_mode` in arch::boot).
#[no_mangle]
#[allow(non_upper_case_globals)] // the name the assembly uses
static keel_ap_stack_top: AtomicU64 = AtomicU64::new(0);
/// The Keel CPU number the starting AP takes.
static STARTING_INDEX: AtomicUsize = AtomicUsize::new(0);
/// Set by the starting AP once it runs on its own structures.
static STARTED: AtomicBool = AtomicBool::new(false);
/// The BSP's CR0, CR3, CR4 and EFER, which every AP takes (CR4 and EFER
/// without their virtualization bits, `keel::ap_registers`).
static BSP_CR0: AtomicU64 = AtomicU64::new(0);
static BSP_CR3: AtomicU64 = AtomicU64::new(0);
static BSP_CR4: AtomicU64 = AtomicU64::new(0);
static BSP_EFER: AtomicU64 = AtomicU64::new(0);
/// The function every AP runs once started, with its Keel CPU number.
static AP_ENTRY: AtomicUsize = AtomicUsize::new(0);

const AP_STACK_SIZE: usize = 64 * 1024;
const EFER: u32 = 0xc000_0080;

fn rdmsr(msr: u32) -> u64 {
    let (lo, hi): (u32, u32);
    // SAFETY: only called for EFER, which every x86_64 CPU has.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") msr, out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    (u64::from(hi) << 32) | u64::from(lo)
}

/// Starts each processor of `apic_ids` other than this one, one at a time:
/// copies the trampoline to `page`, sends INIT, waits 10 ms, sends a
/// start-up IPI (a second one after 200 µs if the AP has not arrived) and
/// waits up to 100 ms for it. The n-th AP that arrives gets Keel CPU
/// number n (the BSP is 0) and runs `entry(n)`, which never returns.
/// Returns the APIC IDs of the CPUs now running, the BSP's first.
pub fn start_aps(apic_ids: &[u32], page: u64, entry: fn(usize) -> !) -> Vec<u32> {
    let Some(bsp) = super::lapic::id() else {
        return Vec::from([0]);
    };
    let mut running = Vec::from([bsp]);
    // Only the addresses of the linker-defined symbols are taken.
    let (start, end) = (
        core::ptr::addr_of!(keel_ap_trampoline) as usize,
        core::ptr::addr_of!(keel_ap_trampoline_end) as usize,
    );
    let len = end - start;
    if len > 0x1000 || page >= 0x10_0000 || !page.is_multiple_of(0x1000) {
        return running;
    }
    // SAFETY: `page` is a free RAM page below 1 MiB (`trampoline_page`),
    // which the frame allocator never hands out (frames::LOW_MEMORY_END);
    // the trampoline is `len` bytes of Keel's own code.
    unsafe { core::ptr::copy_nonoverlapping(start as *const u8, page as *mut u8, len) };
    BSP_CR0.store(
        x86_64::registers::control::Cr0::read_raw(),
        Ordering::Relaxed,
    );
    BSP_CR3.store(
        x86_64::registers::control::Cr3::read_raw()
            .0
            .start_address()
            .as_u64(),
        Ordering::Relaxed,
    );
    BSP_CR4.store(
        x86_64::registers::control::Cr4::read_raw(),
        Ordering::Relaxed,
    );
    BSP_EFER.store(rdmsr(EFER), Ordering::Relaxed);
    AP_ENTRY.store(entry as usize, Ordering::Relaxed);
    let vector = (page >> 12) as u8;
    for &id in apic_ids.iter().filter(|&&id| id != bsp) {
        if id > 0xff {
            log::warn!(
                "CPU with x2APIC ID {id} not started: Keel drives the local APIC in xAPIC mode"
            );
            continue;
        }
        let stack: &'static mut [u8] = alloc::vec![0u8; AP_STACK_SIZE].leak();
        let top = (stack.as_ptr() as u64 + AP_STACK_SIZE as u64) & !0xf;
        keel_ap_stack_top.store(top, Ordering::SeqCst);
        STARTING_INDEX.store(running.len(), Ordering::SeqCst);
        STARTED.store(false, Ordering::SeqCst);
        super::lapic::send_init(id);
        wait_ns(10_000_000, || false);
        super::lapic::send_startup(id, vector);
        if !wait_ns(200_000, || STARTED.load(Ordering::SeqCst)) {
            super::lapic::send_startup(id, vector);
        }
        if wait_ns(100_000_000, || STARTED.load(Ordering::SeqCst)) {
            running.push(id);
        } else {
            log::warn!(
                "the CPU with APIC ID {id} did not start (no answer to INIT-SIPI-SIPI in 100 ms)"
            );
        }
    }
    CPU_APIC_IDS.call_once(|| running.clone());
    running
}

/// The local APIC ID of each running Keel CPU, by CPU number.
static CPU_APIC_IDS: spin::Once<Vec<u32>> = spin::Once::new();

/// Makes Keel CPU `cpu` look at its vCPU now: a fixed IPI with the host
/// timer's vector, which ends a guest's run (an external-interrupt exit)
/// or wakes the CPU from HLT in `lapic::sleep_until`; its handler only
/// signals EOI and the VM loop then sees what another CPU posted.
pub fn kick(cpu: usize) {
    if let Some(&id) = CPU_APIC_IDS.get().and_then(|ids| ids.get(cpu)) {
        super::lapic::send_fixed(id, super::lapic::TIMER_VECTOR);
    }
}

/// Waits up to `ns` for `done`; returns whether it came true.
fn wait_ns(ns: u64, done: impl Fn() -> bool) -> bool {
    let end = crate::clock::now_ns().saturating_add(ns);
    while crate::clock::now_ns() < end {
        if done() {
            return true;
        }
        core::hint::spin_loop();
    }
    done()
}

/// An AP's first Rust code, on its own stack, still on the boot page
/// tables: takes the BSP's control registers and page tables, builds its
/// own GDT, TSS and IST stack, loads the IDT, enables its local APIC.
#[no_mangle]
extern "C" fn keel_ap_main() -> ! {
    let index = STARTING_INDEX.load(Ordering::SeqCst);
    // Not the BSP's CR4.VMXE or EFER.SVME: this CPU turns its own
    // virtualization on later (`cpu::enable_this_cpu`).
    let (cr4, efer) = keel::ap_registers::ap_cr4_efer(
        BSP_CR4.load(Ordering::Relaxed),
        BSP_EFER.load(Ordering::Relaxed),
    );
    // SAFETY: the BSP's EFER, CR4, CR0 and CR3 describe the same long-mode
    // setup this AP already runs in (the trampoline set PAE, LME, PE, PG),
    // plus the BSP's choices; Keel's page tables identity-map everything
    // the boot tables mapped, so this code and its stack stay reachable.
    unsafe {
        core::arch::asm!("wrmsr", in("ecx") EFER, in("eax") efer as u32, in("edx") (efer >> 32) as u32, options(nomem, nostack));
        core::arch::asm!("mov cr4, {}", in(reg) cr4, options(nomem, nostack));
        core::arch::asm!("mov cr0, {}", in(reg) BSP_CR0.load(Ordering::Relaxed), options(nomem, nostack));
        core::arch::asm!("mov cr3, {}", in(reg) BSP_CR3.load(Ordering::Relaxed), options(nostack));
    }
    super::gdt::init();
    super::idt::init();
    super::lapic::init_this_cpu();
    let entry = AP_ENTRY.load(Ordering::Relaxed);
    // SAFETY: AP_ENTRY holds the `fn(usize) -> !` given to `start_aps`,
    // stored before any AP was started.
    let entry: fn(usize) -> ! = unsafe { core::mem::transmute::<usize, fn(usize) -> !>(entry) };
    STARTED.store(true, Ordering::SeqCst);
    entry(index)
}
