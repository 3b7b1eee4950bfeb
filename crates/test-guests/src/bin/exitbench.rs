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
//! APIC's EOI register, FEE000B0h) and `hlt_timer` (`sti; hlt` woken by
//! the PIT's channel 0 in mode 0, about 50 us, through the 8259A as IRQ 0;
//! each round also programs the PIT and the handler writes the 8259A's EOI,
//! so its figure is a whole wake-up, not one exit). The wake-up's timer and
//! EOI are ports, not the local APIC's registers, so Keel's local APIC row
//! holds the EOI batch alone (and the set-up's few writes). `cargo xtask
//! bench` puts each batch's cycles per exit beside Keel's own mean from its
//! exit statistics. Ends with debug-exit 0. RAM: IDT at `0x2000` (vectors
//! 0-31 copied from the library's, 0x20 the PIT's IRQ 0).

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
.set N,              2000       /* exits per batch */
.set N_HLT,          200        /* timer wake-ups */
.set PIC1_CMD,       0x20
.set PIC1_DATA,      0x21
.set PIT_CH0,        0x40
.set PIT_MODE,       0x43
.set PIT_CH0_MODE0,  0x30       /* channel 0, LSB then MSB, mode 0, binary */
.set PIT_COUNT,      60         /* 1.193182 MHz / 60: 50 us */
.set VEC_PIT,        0x20       /* IRQ 0 at the master's base */
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
.set LAPIC_LVT_LINT0, 0x350
.set LVT_EXTINT,     0x700      /* delivery mode ExtINT, not masked */
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
    /* The 8259A pair initialized, IRQ 0 at VEC_PIT, all masked until the
       HLT batch. */
    PIC_INIT_MASKED VEC_PIT
    /* Local APIC on, the 8259A's output reaching it as ExtINT on LINT0
       (the virtual-wire mode of the MultiProcessor Specification 3.6.2.2). */
    mov $LAPIC, %r15d
    movl $(0x100 | 0xFF), LAPIC_SVR(%r15)
    movl $0, LAPIC_TPR(%r15)
    movl $LVT_EXTINT, LAPIC_LVT_LINT0(%r15)
    PRINTLN "exitbench: long mode, N exits of each kind"

    /* The port batches count with LOOP, which Keel's run ahead never
       carries out (x86_emul::port_io_ahead), so each access is an exit of
       its own and the figure a round trip. */
    xor %eax, %eax
    mov $N, %ecx
    TSC_START
1:  out %al, $UNCLAIMED_PORT
    loop 1b
    TSC_REPORT out_unclaimed, N

    mov $PM_TMR, %dx
    mov $N, %ecx
    TSC_START
    mov $PM_TMR, %dx
1:  in %dx, %eax
    loop 1b
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

    /* HLT woken by the PIT's one-shot count (mode 0: the output rises at
       terminal count, IRQ 0's edge), armed with interrupts off, so an
       early expiry stays pending and ends the HLT at once (STI's shadow
       covers the HLT). */
    mov $0xFE, %al
    out %al, $PIC1_DATA
    mov $N_HLT, %r8d
    TSC_START
1:  cli
    mov $PIT_CH0_MODE0, %al
    out %al, $PIT_MODE
    mov $(PIT_COUNT & 0xFF), %al
    out %al, $PIT_CH0
    mov $(PIT_COUNT >> 8), %al
    out %al, $PIT_CH0
    sti
    hlt
    dec %r8d
    jnz 1b
    cli
    TSC_REPORT hlt_timer, N_HLT
    mov $0xFF, %al
    out %al, $PIC1_DATA

    PRINTLN "exitbench: done"
    xor %eax, %eax
    out %eax, $DEBUG_EXIT
2:  cli
    hlt
    jmp 2b

/* The PIT's handler: the 8259A's non-specific EOI (OCW2), return. */
timer_handler:
    push %rax
    mov $0x20, %al
    out %al, $PIC1_CMD
    pop %rax
    iretq

/* IDT_BENCH: the library's 32 exception gates, then a 64-bit interrupt gate
   for VEC_PIT; loaded. */
setup_idt:
    mov $IDT64, %esi
    mov $IDT_BENCH, %edi
    mov $(32 * 16 / 8), %ecx
    rep movsq
    xor %eax, %eax
    mov $((VEC_PIT + 1 - 32) * 16 / 8), %ecx
    rep stosq
    mov $(IDT_BENCH + VEC_PIT * 16), %edi
    mov $timer_handler, %eax
    IDT_GATE
    lidt idt_bench_desc(%rip)
    ret

    .pushsection .rodata.idt_bench, "a"
    .balign 8
idt_bench_desc:
    .word (VEC_PIT + 1) * 16 - 1
    .quad IDT_BENCH
    .popsection
"#,
    options(att_syntax)
);
