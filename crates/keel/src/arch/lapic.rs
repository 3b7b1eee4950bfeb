//! The host's local APIC, used for one thing: waking the CPU from HLT at a
//! deadline, so a halted guest does not keep the host CPU spinning (SDM Vol 3A
//! 10.5.4, APIC timer in one-shot mode).
//!
//! Keel otherwise runs with interrupts disabled; the timer interrupt is only
//! accepted inside [`sleep_until`], between STI and CLI around HLT.

use core::sync::atomic::{AtomicU64, Ordering};

/// Vector of the host timer interrupt; its handler only signals EOI.
pub const TIMER_VECTOR: u8 = 0x40;
/// Spurious-interrupt vector (low nibble all ones, as older APICs require).
pub const SPURIOUS_VECTOR: u8 = 0xff;

const IA32_APIC_BASE: u32 = 0x1b;
const APIC_GLOBAL_ENABLE: u64 = 1 << 11;
// Register offsets (SDM Vol 3A, Table 10-1).
const ID: u64 = 0x20;
const EOI: u64 = 0xb0;
const ICR_LOW: u64 = 0x300;
const ICR_HIGH: u64 = 0x310;
const SVR: u64 = 0xf0;
const LVT_TIMER: u64 = 0x320;
const TIMER_INITIAL_COUNT: u64 = 0x380;
const TIMER_CURRENT_COUNT: u64 = 0x390;
const TIMER_DIVIDE: u64 = 0x3e0;
const SVR_ENABLE: u32 = 1 << 8;
const LVT_MASKED: u32 = 1 << 16;
/// Divide configuration value for "divide by 16".
const DIVIDE_BY_16: u32 = 0b0011;

static BASE: AtomicU64 = AtomicU64::new(0);
static TIMER_HZ: AtomicU64 = AtomicU64::new(0);
/// Per CPU (by local APIC ID), the deadline its one-shot timer was last
/// armed for ([`NOT_ARMED`]: none or unknown), so an unchanged deadline is
/// not programmed again on every exit (an APIC register write, an MMIO
/// access the emulator or hardware serves slowly). Each CPU has its own
/// timer, so each has its own entry; whether the count already ended is
/// read from the timer itself.
static ARMED: [AtomicU64; 256] = [const { AtomicU64::new(NOT_ARMED) }; 256];
const NOT_ARMED: u64 = u64::MAX;
/// No deadline: the timer is stopped.
const DISARMED: u64 = u64::MAX - 1;

/// Address the timer interrupt stub writes to for EOI (read by the stub in arch::idt).
#[no_mangle]
#[allow(non_upper_case_globals)] // the name the assembly uses
static keel_lapic_eoi: AtomicU64 = AtomicU64::new(0);

fn write(reg: u64, value: u32) {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: `base` is the local APIC's MMIO page, identity-mapped uncached by
    // memory::paging; `reg` is one of the 32-bit registers listed above.
    unsafe { core::ptr::write_volatile((base + reg) as *mut u32, value) };
}

fn read(reg: u64) -> u32 {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: as in `write`.
    unsafe { core::ptr::read_volatile((base + reg) as *const u32) }
}

/// The host's 8259A interrupt controllers: firmware leaves them delivering
/// the legacy IRQs at vectors 0x08-0x0F, which would look like CPU exceptions
/// to Keel. Keel takes no device interrupts, so both are fully masked (OCW1).
fn mask_legacy_pic() {
    // SAFETY: ports 0x21 and 0xA1 are the 8259A interrupt mask registers;
    // masking every line has no effect but silencing them.
    unsafe {
        x86_64::instructions::port::Port::<u8>::new(0x21).write(0xff);
        x86_64::instructions::port::Port::<u8>::new(0xa1).write(0xff);
    }
}

/// Masks the legacy PIC, enables the local APIC and measures its timer
/// against the TSC. Returns the timer frequency (after the divider) in Hz, or
/// `None` if it does not count.
pub fn init() -> Option<u64> {
    mask_legacy_pic();
    let (lo, hi): (u32, u32);
    // SAFETY: IA32_APIC_BASE exists on every x86_64 CPU.
    unsafe {
        core::arch::asm!("rdmsr", in("ecx") IA32_APIC_BASE, out("eax") lo, out("edx") hi, options(nomem, nostack))
    };
    let apic_base = (u64::from(hi) << 32) | u64::from(lo);
    if apic_base & APIC_GLOBAL_ENABLE == 0 {
        return None;
    }
    let base = apic_base & 0x000f_ffff_ffff_f000;
    BASE.store(base, Ordering::Relaxed);
    keel_lapic_eoi.store(base + EOI, Ordering::Relaxed);
    write(SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
    write(TIMER_DIVIDE, DIVIDE_BY_16);
    write(LVT_TIMER, LVT_MASKED | u32::from(TIMER_VECTOR));
    // Count down from the maximum for 10 ms of TSC time.
    let tsc_hz = crate::clock::tsc_hz();
    if tsc_hz == 0 {
        return None;
    }
    write(TIMER_INITIAL_COUNT, u32::MAX);
    let start = crate::clock::rdtsc();
    while crate::clock::rdtsc() - start < tsc_hz / 100 {
        core::hint::spin_loop();
    }
    let elapsed = u32::MAX - read(TIMER_CURRENT_COUNT);
    write(TIMER_INITIAL_COUNT, 0);
    // Stopped (count 0), unmasked from now on: `arm` only writes the count.
    write(LVT_TIMER, u32::from(TIMER_VECTOR));
    let hz = u64::from(elapsed) * 100;
    TIMER_HZ.store(hz, Ordering::Relaxed);
    (hz > 0).then_some(hz)
}

/// Enables this CPU's local APIC like the BSP's (an AP, after [`init`]
/// measured the timer, which runs at the same rate on every CPU): the
/// timer stopped and unmasked, as [`init`] leaves the BSP's, since [`arm`]
/// only writes the count. (Left masked, an AP's first guest that never
/// exits by itself, such as firmware polling a long fw_cfg DMA, would
/// never be interrupted.)
pub fn init_this_cpu() {
    if BASE.load(Ordering::Relaxed) == 0 {
        return;
    }
    write(SVR, SVR_ENABLE | u32::from(SPURIOUS_VECTOR));
    write(TIMER_DIVIDE, DIVIDE_BY_16);
    write(TIMER_INITIAL_COUNT, 0);
    write(LVT_TIMER, u32::from(TIMER_VECTOR));
}

/// This CPU's local APIC ID (xAPIC ID register bits 31:24, SDM Vol 3A
/// 10.4.6), or `None` before [`init`] found the APIC.
pub fn id() -> Option<u32> {
    (BASE.load(Ordering::Relaxed) != 0).then(|| read(ID) >> 24)
}

// ICR fields (SDM Vol 3A 10.6.1, Figure 10-12).
const ICR_INIT: u32 = 0b101 << 8;
const ICR_STARTUP: u32 = 0b110 << 8;
const ICR_LEVEL_ASSERT: u32 = 1 << 14;
const ICR_DELIVERY_PENDING: u32 = 1 << 12;

/// Sends an IPI with `command` (the ICR's low half) to the CPU whose APIC
/// ID is `apic_id`, and waits (bounded) until the APIC has sent it.
fn send_ipi(apic_id: u32, command: u32) {
    write(ICR_HIGH, apic_id << 24);
    write(ICR_LOW, command);
    for _ in 0..1_000_000 {
        if read(ICR_LOW) & ICR_DELIVERY_PENDING == 0 {
            return;
        }
        core::hint::spin_loop();
    }
}

/// A fixed IPI with `vector` to `apic_id` (edge, physical destination).
pub fn send_fixed(apic_id: u32, vector: u8) {
    send_ipi(apic_id, u32::from(vector));
}

/// INIT IPI (level assert) to `apic_id`: the CPU enters its wait-for-SIPI
/// state (SDM Vol 3A 8.4.4.1).
pub fn send_init(apic_id: u32) {
    send_ipi(apic_id, ICR_INIT | ICR_LEVEL_ASSERT);
}

/// Start-up IPI to `apic_id`: it starts in real mode at `page << 12`.
pub fn send_startup(apic_id: u32, page: u8) {
    send_ipi(apic_id, ICR_STARTUP | ICR_LEVEL_ASSERT | u32::from(page));
}

/// Arms the timer to interrupt at `deadline_ns`, or disarms it (`None`): the
/// interrupt ends a running guest's time slice so Keel can deliver device
/// interrupts that come due while the guest never exits by itself.
pub fn arm(deadline_ns: Option<u64>) {
    let hz = u128::from(TIMER_HZ.load(Ordering::Relaxed));
    if hz == 0 {
        return;
    }
    let slot = &ARMED[this_cpu()];
    let armed = slot.load(Ordering::Relaxed);
    let Some(deadline) = deadline_ns else {
        if armed != DISARMED {
            write(TIMER_INITIAL_COUNT, 0);
            slot.store(DISARMED, Ordering::Relaxed);
        }
        return;
    };
    // Still counting towards the same deadline: nothing to change.
    if armed == deadline && read(TIMER_CURRENT_COUNT) != 0 {
        return;
    }
    let now = crate::clock::now_ns();
    let ticks = (u128::from(deadline.saturating_sub(now)) * hz / 1_000_000_000)
        .clamp(1, u128::from(u32::MAX)) as u32;
    write(TIMER_INITIAL_COUNT, ticks);
    slot.store(deadline.min(DISARMED - 1), Ordering::Relaxed);
}

/// This CPU's local APIC ID (CPUID leaf 1 EBX bits 31:24, SDM Vol 2A
/// CPUID), the index of its [`ARMED`] entry.
pub fn this_cpu() -> usize {
    (raw_cpuid::native_cpuid::cpuid_count(1, 0).ebx >> 24) as usize
}

/// Lets a host interrupt that ended the guest's run be taken (its handler
/// only signals EOI), with interrupts off again right after.
pub fn take_pending_interrupts() {
    // SAFETY: the IDT has gates for every vector the local APIC can deliver
    // (the timer and spurious vectors; the legacy PIC is masked), and their
    // handlers only signal EOI. The NOP covers STI's interrupt shadow.
    unsafe { core::arch::asm!("sti", "nop", "cli", options(nomem, nostack)) };
}

/// Halts the CPU until `deadline_ns` (on the clock of [`crate::clock`]) or
/// until another CPU kicks it (`smp::kick`), whichever comes first; the
/// caller looks again either way. Without a working APIC timer it waits
/// actively instead.
pub fn sleep_until(deadline_ns: u64) {
    let hz = u128::from(TIMER_HZ.load(Ordering::Relaxed));
    let now = crate::clock::now_ns();
    if now >= deadline_ns {
        return;
    }
    if hz == 0 {
        core::hint::spin_loop();
        return;
    }
    let ticks =
        (u128::from(deadline_ns - now) * hz / 1_000_000_000).clamp(1, u128::from(u32::MAX)) as u32;
    write(LVT_TIMER, u32::from(TIMER_VECTOR));
    write(TIMER_INITIAL_COUNT, ticks);
    ARMED[this_cpu()].store(deadline_ns.min(DISARMED - 1), Ordering::Relaxed);
    // STI's interrupt shadow covers HLT, so a timer interrupt or kick that
    // is already pending wakes the HLT instead of being taken before it.
    // SAFETY: the IDT has a gate for TIMER_VECTOR and SPURIOUS_VECTOR
    // whose handlers only signal EOI; interrupts are off again right after.
    unsafe { core::arch::asm!("sti", "hlt", "cli", options(nomem, nostack)) };
}
