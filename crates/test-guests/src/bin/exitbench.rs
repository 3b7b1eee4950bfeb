//! The exit micro-benchmark (issue #12): from long mode, for each common
//! exit kind, N exits back to back timed with RDTSC, one line per kind:
//!
//! `BENCH exit=<kind> n=<N> cycles=<TSC cycles of the whole batch>`
//!
//! Kinds: `out_unclaimed` (OUT to port 0x80, which no device of Keel's PC
//! decodes), `in_pm_timer` (IN from the ACPI PM timer, PMBA set to 0x600 at
//! PCI 00:01.3 first), `cpuid` (leaf 0), `rdmsr` (IA32_MTRRCAP, FEh, which
//! Keel answers itself), `mmio_hpet_read` (32-bit read of the HPET main
//! counter, FED000F0h), `mmio_lapic_eoi` (32-bit write of 0 to the local
//! APIC's EOI register, FEE000B0h) and `hlt_timer` (`sti; hlt` woken by a
//! one-shot local APIC timer of about 50 us; each round also writes the
//! timer's initial count and the handler writes EOI, so its figure is a
//! whole wake-up, not one exit). `cargo xtask bench` puts each batch's
//! cycles per exit beside Keel's own mean from its exit statistics. Ends
//! with debug-exit 0. RAM: IDT at `0x2000` (vectors 0-31 copied from the
//! library's, 0x40 the timer).

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
.set N,              2000       /* exits per batch */
.set N_HLT,          200        /* timer wake-ups */
.set UNCLAIMED_PORT, 0x80
.set PCI_ADDR,       0xCF8
.set PCI_DATA,       0xCFC
.set PIIX4_PM_CFG,   0x80000B00 /* enable | bus 0 | dev 1 | fn 3 */
.set PMBA_VALUE,     0x600
.set PM_TMR,         PMBA_VALUE + 8
.set IA32_MTRRCAP,   0xFE
.set HPET_COUNTER,   0xFED000F0
.set LAPIC,          0xFEE00000
.set LAPIC_TPR,      0x80
.set LAPIC_EOI,      0xB0
.set LAPIC_SVR,      0xF0
.set LAPIC_LVT_TMR,  0x320
.set LAPIC_TMR_INIT, 0x380
.set LAPIC_TMR_DIV,  0x3E0
.set LVT_MASKED,     0x10000
.set VEC_TIMER,      0x40
.set TIMER_COUNT,    3125       /* 1 GHz / 16 / 3125: 50 us */
.set IDT_BENCH,      0x2000

/* %r14 = the TSC now. Clobbers %eax, %edx. */
.macro TSC_START
    lfence
    rdtsc
    shl $32, %rdx
    or %rdx, %rax
    mov %rax, %r14
.endm

/* Print `BENCH exit=\kind n=\n cycles=<TSC now - %r14>`. */
.macro TSC_REPORT kind, n
    rdtsc
    lfence
    shl $32, %rdx
    or %rdx, %rax
    sub %r14, %rax
    mov %rax, %r13
    PUTS "BENCH exit=\kind n="
    mov $\n, %eax
    call putdec64_lm
    PUTS " cycles="
    mov %r13, %rax
    call putdec64_lm
    PRINTLN ""
.endm

MODE16
    .text
.global guest_main16
guest_main16:
    PRINTLN "exitbench: real mode, entering long mode"
    GOTO_PROTECTED protected

MODE32
protected:
    GOTO_LONG long

MODE64
long:
    cli
    call setup_idt
    /* PMBA = 0x600, PM I/O space enabled (PMREGMISC). */
    mov $PCI_ADDR, %dx
    mov $(PIIX4_PM_CFG | 0x40), %eax
    out %eax, %dx
    mov $PCI_DATA, %dx
    mov $(PMBA_VALUE | 1), %eax
    out %eax, %dx
    mov $PCI_ADDR, %dx
    mov $(PIIX4_PM_CFG | 0x80), %eax
    out %eax, %dx
    mov $PCI_DATA, %dx
    mov $1, %al
    out %al, %dx
    /* Both 8259As masked: the PIT's IRQ 0 through an unprogrammed 8259A
       would arrive on vector 0 during the HLT batch. */
    mov $0xFF, %al
    out %al, $0x21
    out %al, $0xA1
    /* Local APIC on, timer masked, divide by 16. */
    mov $LAPIC, %r15d
    movl $(0x100 | 0xFF), LAPIC_SVR(%r15)
    movl $0, LAPIC_TPR(%r15)
    movl $(LVT_MASKED | VEC_TIMER), LAPIC_LVT_TMR(%r15)
    movl $0x3, LAPIC_TMR_DIV(%r15)
    PRINTLN "exitbench: long mode, N exits of each kind"

    xor %eax, %eax
    mov $N, %ecx
    TSC_START
1:  out %al, $UNCLAIMED_PORT
    dec %ecx
    jnz 1b
    TSC_REPORT out_unclaimed, N

    mov $PM_TMR, %dx
    mov $N, %ecx
    TSC_START
    mov $PM_TMR, %dx
1:  in %dx, %eax
    dec %ecx
    jnz 1b
    TSC_REPORT in_pm_timer, N

    mov $N, %r8d
    TSC_START
1:  xor %eax, %eax
    xor %ecx, %ecx
    cpuid
    dec %r8d
    jnz 1b
    TSC_REPORT cpuid, N

    mov $N, %r8d
    TSC_START
1:  mov $IA32_MTRRCAP, %ecx
    rdmsr
    dec %r8d
    jnz 1b
    TSC_REPORT rdmsr, N

    mov $HPET_COUNTER, %esi
    mov $N, %ecx
    TSC_START
1:  mov (%rsi), %eax
    dec %ecx
    jnz 1b
    TSC_REPORT mmio_hpet_read, N

    mov $(LAPIC + LAPIC_EOI), %esi
    mov $N, %ecx
    TSC_START
1:  movl $0, (%rsi)
    dec %ecx
    jnz 1b
    TSC_REPORT mmio_lapic_eoi, N

    /* HLT woken by the one-shot timer: armed with interrupts off, so an
       early expiry stays pending and ends the HLT at once (STI's shadow
       covers the HLT). */
    mov $LAPIC, %r15d
    movl $VEC_TIMER, LAPIC_LVT_TMR(%r15)
    mov $N_HLT, %r8d
    TSC_START
1:  cli
    movl $TIMER_COUNT, LAPIC_TMR_INIT(%r15)
    sti
    hlt
    dec %r8d
    jnz 1b
    cli
    TSC_REPORT hlt_timer, N_HLT
    movl $(LVT_MASKED | VEC_TIMER), LAPIC_LVT_TMR(%r15)

    PRINTLN "exitbench: done"
    xor %eax, %eax
    out %eax, $DEBUG_EXIT
2:  cli
    hlt
    jmp 2b

/* The timer's handler: EOI, return. */
timer_handler:
    push %rax
    mov $LAPIC, %eax
    movl $0, LAPIC_EOI(%rax)
    pop %rax
    iretq

/* IDT_BENCH: the library's 32 exception gates, then a 64-bit interrupt gate
   for VEC_TIMER; loaded. */
setup_idt:
    mov $IDT64, %esi
    mov $IDT_BENCH, %edi
    mov $(32 * 16 / 8), %ecx
    rep movsq
    xor %eax, %eax
    mov $((VEC_TIMER + 1 - 32) * 16 / 8), %ecx
    rep stosq
    mov $(IDT_BENCH + VEC_TIMER * 16), %edi
    mov $timer_handler, %eax
    IDT_GATE
    lidt idt_bench_desc(%rip)
    ret

    .pushsection .rodata.idt_bench, "a"
    .balign 8
idt_bench_desc:
    .word (VEC_TIMER + 1) * 16 - 1
    .quad IDT_BENCH
    .popsection
"#,
    options(att_syntax)
);
