//! Keel's IDT and the exception handlers (SDM Vol 3A 6.10-6.15).
//!
//! Keel runs with interrupts disabled, so only exceptions (and NMIs) arrive
//! here. Each one is a bug in Keel, never a guest's doing: the handler prints
//! the vector, error code and every register, then stops the machine with the
//! "Keel faulted" status.

use super::gdt::DOUBLE_FAULT_IST;
use spin::Once;

/// The register state the exception stubs push, lowest address first.
#[repr(C)]
#[derive(Debug)]
pub struct ExceptionFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

core::arch::global_asm!(
    r#"
    .section .text.keel_exceptions, "ax"
    .macro KEEL_ISR_NOERR n
keel_isr_\n:
    pushq $0
    pushq $\n
    jmp keel_isr_common
    .endm
    .macro KEEL_ISR_ERR n
keel_isr_\n:
    pushq $\n
    jmp keel_isr_common
    .endm
    .irp n, 0,1,2,3,4,5,6,7,9,15,16,18,19,20,22,23,24,25,26,27,28,31
    KEEL_ISR_NOERR \n
    .endr
    .irp n, 8,10,11,12,13,14,17,21,29,30
    KEEL_ISR_ERR \n
    .endr
    /* Host timer (arch::lapic) and kicks from other CPUs: signal EOI
       and return. */
    .global keel_isr_timer
keel_isr_timer:
    pushq %rax
    movq keel_lapic_eoi(%rip), %rax
    movl $0, (%rax)
    popq %rax
    iretq
    /* Spurious interrupts need no EOI (SDM Vol 3A 10.9). */
    .global keel_isr_spurious
keel_isr_spurious:
    iretq

keel_isr_common:
    pushq %rax
    pushq %rbx
    pushq %rcx
    pushq %rdx
    pushq %rsi
    pushq %rdi
    pushq %rbp
    pushq %r8
    pushq %r9
    pushq %r10
    pushq %r11
    pushq %r12
    pushq %r13
    pushq %r14
    pushq %r15
    movq %rsp, %rdi
    call keel_exception
1:  cli
    hlt
    jmp 1b

    .section .rodata.keel_exceptions, "a"
    .balign 8
    .global keel_isr_table
keel_isr_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .quad keel_isr_\n
    .endr
    .previous
"#,
    options(att_syntax)
);

extern "C" {
    static keel_isr_table: [u64; 32];
    fn keel_isr_timer();
    fn keel_isr_spurious();
}

/// One 16-byte IDT gate descriptor (SDM Vol 3A 6.14.1, Figure 6-8).
#[derive(Clone, Copy, Default)]
#[repr(C)]
struct Gate {
    offset_low: u16,
    selector: u16,
    ist: u8,
    type_attr: u8,
    offset_mid: u16,
    offset_high: u32,
    reserved: u32,
}

/// Present, DPL 0, 64-bit interrupt gate.
const INTERRUPT_GATE: u8 = 0x8e;

#[repr(C, align(16))]
struct Idt([Gate; 256]);

static IDT: Once<Idt> = Once::new();

fn gate(addr: u64, selector: u16, ist: u8) -> Gate {
    Gate {
        offset_low: addr as u16,
        selector,
        ist,
        type_attr: INTERRUPT_GATE,
        offset_mid: (addr >> 16) as u16,
        offset_high: (addr >> 32) as u32,
        reserved: 0,
    }
}

/// Builds and loads the IDT: the 32 exception vectors, the host timer and the
/// spurious vector (the others stay not-present: Keel never enables them).
pub fn init() {
    let cs = <x86_64::instructions::segmentation::CS as x86_64::instructions::segmentation::Segment>::get_reg().0;
    let idt = IDT.call_once(|| {
        let mut gates = [Gate::default(); 256];
        for (vector, g) in gates.iter_mut().take(32).enumerate() {
            // SAFETY: keel_isr_table is an immutable table of 32 code addresses
            // defined in the assembly above.
            let addr = unsafe { keel_isr_table[vector] };
            *g = gate(
                addr,
                cs,
                if vector == 8 {
                    DOUBLE_FAULT_IST as u8
                } else {
                    0
                },
            );
        }
        gates[usize::from(super::lapic::TIMER_VECTOR)] =
            gate(keel_isr_timer as *const () as u64, cs, 0);
        gates[usize::from(super::lapic::SPURIOUS_VECTOR)] =
            gate(keel_isr_spurious as *const () as u64, cs, 0);
        Idt(gates)
    });
    let ptr = x86_64::structures::DescriptorTablePointer {
        limit: (core::mem::size_of::<Idt>() - 1) as u16,
        base: x86_64::VirtAddr::new(idt as *const Idt as u64),
    };
    // SAFETY: the IDT is 'static and every gate points at a handler above.
    unsafe { x86_64::instructions::tables::lidt(&ptr) };
}

const NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack fault",
    "#GP general protection",
    "#PF page fault",
    "reserved (15)",
    "#MF x87 error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD exception",
    "#VE virtualization exception",
    "#CP control protection",
    "reserved (22)",
    "reserved (23)",
    "reserved (24)",
    "reserved (25)",
    "reserved (26)",
    "reserved (27)",
    "#HV hypervisor injection",
    "#VC VMM communication",
    "#SX security exception",
    "reserved (31)",
];

#[no_mangle]
extern "C" fn keel_exception(f: &ExceptionFrame) -> ! {
    crate::serial::break_lock_for_fatal_report();
    let name = NAMES.get(f.vector as usize).copied().unwrap_or("unknown");
    let cr2 = x86_64::registers::control::Cr2::read_raw();
    crate::println!(
        "keel: FATAL: CPU exception {} (vector {}) in Keel, error code {:#x}",
        name,
        f.vector,
        f.error_code
    );
    crate::println!(
        "keel:   rip {:#018x} cs {:#06x} rflags {:#010x} rsp {:#018x} ss {:#06x} cr2 {:#x}",
        f.rip,
        f.cs,
        f.rflags,
        f.rsp,
        f.ss,
        cr2
    );
    crate::println!(
        "keel:   rax {:#018x} rbx {:#018x} rcx {:#018x} rdx {:#018x}",
        f.rax,
        f.rbx,
        f.rcx,
        f.rdx
    );
    crate::println!(
        "keel:   rsi {:#018x} rdi {:#018x} rbp {:#018x} r8  {:#018x}",
        f.rsi,
        f.rdi,
        f.rbp,
        f.r8
    );
    crate::println!(
        "keel:   r9  {:#018x} r10 {:#018x} r11 {:#018x} r12 {:#018x}",
        f.r9,
        f.r10,
        f.r11,
        f.r12
    );
    crate::println!(
        "keel:   r13 {:#018x} r14 {:#018x} r15 {:#018x}",
        f.r13,
        f.r14,
        f.r15
    );
    crate::shutdown::finish(crate::shutdown::KEEL_FAULT_STATUS)
}
