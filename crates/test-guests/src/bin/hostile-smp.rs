//! Hostile SMP guest (`vcpus = 2`): what a guest can do to Keel through its
//! local APICs (issue 18). The BSP starts the AP with INIT-SIPI-SIPI, checks
//! that a fixed IPI and an NMI reach it, then both CPUs flood for three
//! seconds: fixed IPIs to themselves, to each other and to APIC
//! IDs no vCPU has (physical, logical flat, the broadcast shorthands), NMIs
//! to absent IDs and to each other, INIT and Start-Up IPIs to absent IDs
//! (and Start-Ups to the BSP, which is not waiting for one), ICR values the
//! SDM calls invalid; in the second half the BSP storms its AP with INITs
//! and Start-Ups, resetting it again and again (and sends it no more NMIs,
//! which would reach it in real mode on its way up). Then the AP comes back
//! (it checks in after a last INIT-SIPI-SIPI), runs CPUID 500 times
//! (`AP_CPUIDS`; the BSP makes no such number of CPUID exits, so Keel's exit
//! table must count the AP's exits too), and both spin with interrupts off
//! for three seconds. Keel must not fall over, must bound what each
//! of those IPIs costs, log the bad ones rate-limited, and keep another VM
//! on the same CPUs running at its timer rate (tests/tests/hostile_smp.rs).
//!
//! Seconds are the machine's: the BSP first counts the TSC cycles of 10 ms
//! of the PIT (QEMU's TSC runs at the host's rate, Bochs' at 100 MHz of its
//! own time). Only the BSP prints. RAM: the AP's stack below `0x5000`, counters at
//! `0x600`, the 256-gate IDT at `0x2000`, per-CPU handler counts at `0x3000`
//! (64 bytes per APIC ID: NMI, vector 0x40, vector 0x41, spurious).

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
.set AP_STACK_TOP,   0x5000
.set AP_BOOTS,       0x600      /* u32: times the AP reached long mode */
.set AP_CMD,         0x604      /* u32: what the BSP tells the AP to do */
.set AP_FLOODS,      0x608      /* u32: flood rounds the AP finished */
.set AP_SPINNING,    0x60C      /* u32: the AP spins with IF = 0 */
.set ROUNDS,         0x610      /* u32: flood rounds the BSP finished */
.set STORMS,         0x614      /* u32: INIT/SIPI storms the BSP sent its AP */
.set STORMS_AT,      0x618      /* u64: TSC at which the INIT/SIPI storms start */
.set AP_CPUID_DONE,  0x620      /* u32: CPUIDs the AP ran before spinning */
.set AP_CPUIDS,      500        /* tests/tests/hostile_smp.rs counts on it */
.set TSC_PER_10MS,   0x628      /* u64: TSC cycles in 10 ms of the PIT */
.set FLOOD_HALF_CS,  150        /* each half of the flood, 10 ms units */
.set SPIN_CS,        300        /* the spin with IF = 0, 10 ms units */

.set PIT_CH2,        0x42
.set PIT_MODE,       0x43
.set PORT_B,         0x61       /* bit 0: channel 2 gate, bit 5: its OUT */
.set PIT_10MS,       11932      /* 1193182 Hz / 100 */
.set IDT_SMP,        0x2000     /* 256 gates of 16 bytes */
.set COUNTS,         0x3000     /* per APIC ID: 16 u32 slots */
.set SLOT_NMI,       0
.set SLOT_40,        4
.set SLOT_41,        8
.set SLOT_SPURIOUS,  12

.set CMD_FLOOD,      0
.set CMD_SPIN,       1

.set LAPIC,          0xFEE00000
.set LAPIC_ID,       0x20
.set LAPIC_EOI,      0xB0
.set LAPIC_LDR,      0xD0
.set LAPIC_DFR,      0xE0
.set LAPIC_SVR,      0xF0
.set LAPIC_LVT_LINT0, 0x350
.set LAPIC_LVT_LINT1, 0x360
.set LAPIC_ICR_LO,   0x300
.set LAPIC_ICR_HI,   0x310

/* ICR low words (SDM Vol 3A 11.6.1): delivery mode, level assert, shorthand. */
.set ICR_FIXED_40,   0x00004040
.set ICR_FIXED_41,   0x00004041
.set ICR_NMI,        0x00004400
.set ICR_INIT,       0x00004500
.set ICR_SIPI,       0x00004600
.set ICR_LOGICAL,    0x00000800
.set ICR_SELF,       0x00040000
.set ICR_ALL,        0x00080000
.set ICR_OTHERS,     0x000C0000

/* One IPI: destination \dest (APIC ID, or logical mask), ICR low \low. */
.macro IPI dest, low
    mov $((\dest) << 24), %edx
    mov $(\low), %eax
    call send_ipi
.endm

MODE16
    .text
.global guest_main16
guest_main16:
    PRINTLN "hostile-smp: BSP in real mode, entering long mode"
    GOTO_PROTECTED protected

MODE32
protected:
    GOTO_LONG bsp_long

/* ---------------------------------------------------------------------- */
/* The AP's Start-Up IPI vector names this page (vector = address >> 12). */
MODE16
    .balign 4096
ap_trampoline:
    cli
    ljmp $IMAGE_SEGMENT, $(ap_real - IMAGE_BASE)
ap_real:
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $AP_STACK_TOP, %sp
    GOTO_LONG_AP ap_long

MODE64
ap_long:
    mov $AP_STACK_TOP, %esp
    lidt idt_smp_desc(%rip)
    call lapic_on
    mov $LAPIC, %r15d
    movl $0x02000000, LAPIC_LDR(%r15)   /* logical flat ID bit 1 */
    lock incl AP_BOOTS
    sti
ap_flood:
    cmpl $CMD_SPIN, AP_CMD
    je ap_spin
    IPI 0, ICR_FIXED_41                 /* the BSP */
    IPI 0, ICR_NMI                      /* the BSP */
    IPI 1, ICR_FIXED_40                 /* itself, by ID */
    IPI 0, (ICR_FIXED_40 | ICR_SELF)
    IPI 7, ICR_FIXED_40                 /* absent */
    IPI 0x80, (ICR_FIXED_40 | ICR_LOGICAL)   /* no vCPU has logical bit 7 */
    IPI 9, ICR_NMI                      /* absent */
    IPI 0x33, ICR_INIT                  /* absent */
    IPI 0x44, (ICR_SIPI | 0x10)         /* absent */
    IPI 0, (ICR_SIPI | 0x10)            /* the BSP is not waiting for one */
    IPI 0, (ICR_NMI | ICR_SELF)         /* invalid: NMI with a shorthand */
    lock incl AP_FLOODS
    jmp ap_flood
ap_spin:
    cli
    /* CPUID exits on every backend (SDM Vol 3C 26.1.2, APM 15.9 with the
       intercept Keel sets): a known number of the AP's own exits. */
    movl $0, AP_CPUID_DONE
    mov $AP_CPUIDS, %r12d
2:  xor %eax, %eax
    xor %ecx, %ecx
    cpuid
    incl AP_CPUID_DONE
    dec %r12d
    jnz 2b
    lock incl AP_SPINNING
1:  pause
    jmp 1b

/* ---------------------------------------------------------------------- */
MODE64
bsp_long:
    PRINTLN "hostile-smp: BSP in long mode"
    call setup_idt
    call lapic_on
    mov $LAPIC, %r15d
    movl $0x01000000, LAPIC_LDR(%r15)   /* logical flat ID bit 0 */
    movl $CMD_FLOOD, AP_CMD
    call calibrate_tsc
    sti

    /* INIT-SIPI-SIPI to APIC ID 1 (SDM Vol 3A 8.4.4.1). */
    call start_ap
    mov $AP_BOOTS, %edi
    mov $1, %esi
    call wait_for
    mov AP_BOOTS, %ecx
    CHECK_EQ "smp-ap-started-by-init-sipi-sipi", 1

    IPI 1, ICR_FIXED_40
    mov $(COUNTS + 64 + SLOT_40), %edi
    mov $1, %esi
    call wait_for
    mov (COUNTS + 64 + SLOT_40), %ecx
    CHECK_GE "fixed-ipi-reaches-the-ap", 1
    IPI 1, ICR_NMI
    mov $(COUNTS + 64 + SLOT_NMI), %edi
    mov $1, %esi
    call wait_for
    mov (COUNTS + 64 + SLOT_NMI), %ecx
    CHECK_GE "nmi-ipi-reaches-the-ap", 1

    PRINTLN "hostile-smp: flooding IPIs, NMIs, INITs and Start-Ups"
    mov TSC_PER_10MS, %rax
    imul $FLOOD_HALF_CS, %rax
    mov %rax, %rcx
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    lea (%rdx, %rcx), %rax
    mov %rax, STORMS_AT                 /* half-way */
    lea (%rax, %rcx), %r14              /* the flood's end */
    xor %r13d, %r13d                    /* rotating absent APIC ID */
bsp_flood:
    IPI 0, ICR_FIXED_41                 /* itself, by ID */
    IPI 0, (ICR_FIXED_41 | ICR_ALL)     /* both */
    IPI 0, (ICR_FIXED_40 | ICR_OTHERS)  /* the AP */
    IPI 0x02, (ICR_FIXED_40 | ICR_LOGICAL)   /* the AP, logical */
    IPI 0xFC, (ICR_FIXED_40 | ICR_LOGICAL)   /* logical bits no vCPU has */
    /* NMIs to the AP only before the storms: an NMI reaching it in real
       mode, on its way up after a Start-Up, would take the guest down
       (the guest's own business, not what this guest tests). */
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    cmp STORMS_AT, %rdx
    jae 1f
    IPI 1, ICR_NMI                      /* the AP */
1:  IPI 0, ICR_NMI                      /* itself */
    IPI 0, 3                            /* invalid: fixed vector 3 */
    /* Absent physical IDs 2-254, one per round: fixed, NMI, INIT, SIPI. */
    inc %r13d
    cmp $253, %r13d
    jb 1f
    xor %r13d, %r13d
1:  lea 2(%r13), %edx
    shl $24, %edx
    mov %edx, %r12d
    mov $ICR_FIXED_40, %eax
    call send_ipi
    mov %r12d, %edx
    mov $ICR_NMI, %eax
    call send_ipi
    mov %r12d, %edx
    mov $ICR_INIT, %eax
    call send_ipi
    mov %r12d, %edx
    mov $(ICR_SIPI | 0x10), %eax
    call send_ipi
    /* In the second half, every 8th round, an INIT and Start-Up storm
       at the AP: eight of each, so it is reset, started, reset again ... */
    incl ROUNDS
    testl $7, ROUNDS
    jnz 3f
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    cmp STORMS_AT, %rdx
    jb 3f
    incl STORMS
    mov $8, %r12d
2:  IPI 1, ICR_INIT
    call sipi_ap
    dec %r12d
    jnz 2b
3:  rdtsc
    shl $32, %rdx
    or %rax, %rdx
    cmp %r14, %rdx
    jb bsp_flood

    /* After the storms the AP still answers: a last INIT-SIPI-SIPI, and
       it checks in again. */
    mov AP_BOOTS, %esi
    inc %esi
    call start_ap
    mov $AP_BOOTS, %edi
    call wait_for
    xor %ecx, %ecx
    cmp %esi, AP_BOOTS
    setae %cl
    CHECK_EQ "ap-comes-back-after-init-sipi-storms", 1
    mov STORMS, %ecx
    CHECK_GE "init-sipi-storms-at-the-ap", 1
    mov AP_FLOODS, %ecx
    CHECK_GE "ap-flood-rounds", 1
    mov (COUNTS + SLOT_41), %ecx
    CHECK_GE "bsp-took-fixed-ipis", 1
    mov (COUNTS + SLOT_NMI), %ecx
    CHECK_GE "bsp-took-nmis", 1

    /* Both CPUs spin with interrupts off: only the host's timer takes
       their CPUs back. */
    PRINTLN "hostile-smp: both CPUs spin with IF=0"
    movl $CMD_SPIN, AP_CMD
    mov $AP_SPINNING, %edi
    mov $1, %esi
    call wait_for
    cli
    mov TSC_PER_10MS, %rcx
    imul $SPIN_CS, %rcx
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    add %rdx, %rcx
1:  rdtsc
    shl $32, %rdx
    or %rax, %rdx
    cmp %rcx, %rdx
    jb 1b
    mov AP_SPINNING, %ecx
    CHECK_EQ "ap-spun-with-if-0", 1
    mov AP_CPUID_DONE, %ecx
    CHECK_EQ "ap-ran-cpuid-500-times", AP_CPUIDS
    jmp finish

/* ---------------------------------------------------------------------- */
/* ICR high = %edx, ICR low = %eax: one IPI from this CPU's local APIC (an
   exit each; no wait for the delivery status, Keel delivers at once).
   Clobbers %r15. */
send_ipi:
    mov $LAPIC, %r15d
    mov %edx, LAPIC_ICR_HI(%r15)
    mov %eax, LAPIC_ICR_LO(%r15)
    ret

/* INIT, then two Start-Ups, to APIC ID 1. Clobbers %eax, %edx, %r15. */
start_ap:
    IPI 1, ICR_INIT
    call sipi_ap
    call sipi_ap
    ret

/* A Start-Up IPI to APIC ID 1 with the trampoline's page as vector. */
sipi_ap:
    mov $ap_trampoline, %eax
    shr $12, %eax
    or $ICR_SIPI, %eax
    mov $(1 << 24), %edx
    jmp send_ipi

/* Wait until the u32 at %edi is at least %esi, or about 2^32 TSC cycles.
   Clobbers %eax, %ecx, %edx. */
wait_for:
    rdtsc
    mov %edx, %ecx
    add $1, %ecx
1:  cmp %esi, (%rdi)
    jae 2f
    pause
    rdtsc
    cmp %ecx, %edx
    jb 1b
2:  ret

/* TSC_PER_10MS: the TSC cycles of one 10 ms one-shot of the 8254's
   channel 2 (mode 0, gated by port 0x61 bit 0, its OUT read back in bit 5;
   the PC/AT wiring Linux's PIT calibration uses too). Clobbers %eax,
   %edx, %r8. */
calibrate_tsc:
    in $PORT_B, %al
    and $0xFC, %al                      /* speaker off */
    or $0x01, %al                       /* gate on */
    out %al, $PORT_B
    mov $0xB0, %al                      /* channel 2, lo/hi byte, mode 0 */
    out %al, $PIT_MODE
    mov $(PIT_10MS & 0xFF), %al
    out %al, $PIT_CH2
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    mov %rdx, %r8
    mov $(PIT_10MS >> 8), %al           /* the count starts here */
    out %al, $PIT_CH2
1:  in $PORT_B, %al
    test $0x20, %al
    jz 1b
    rdtsc
    shl $32, %rdx
    or %rax, %rdx
    sub %r8, %rdx
    mov %rdx, TSC_PER_10MS
    ret

/* Software-enable this CPU's local APIC (spurious vector 0xFF), flat model,
   LINT0 and LINT1 masked: the 8259A, never initialized here, stays out. */
lapic_on:
    mov $LAPIC, %r15d
    movl $0xFFFFFFFF, LAPIC_DFR(%r15)
    movl $0x1FF, LAPIC_SVR(%r15)
    movl $0x10000, LAPIC_LVT_LINT0(%r15)
    movl $0x10000, LAPIC_LVT_LINT1(%r15)
    ret

/* IDT_SMP: the exceptions of IDT64, then NMI, 0x40, 0x41 and spurious. */
setup_idt:
    mov $IDT64, %esi
    mov $IDT_SMP, %edi
    mov $(32 * 16 / 8), %ecx
    rep movsq
    mov $(COUNTS), %edi
    xor %eax, %eax
    mov $(16 * 16), %ecx
    rep stosl
    mov $2, %ecx
    mov $nmi_handler, %eax
    call set_gate
    mov $0x40, %ecx
    mov $ipi40_handler, %eax
    call set_gate
    mov $0x41, %ecx
    mov $ipi41_handler, %eax
    call set_gate
    mov $0xFF, %ecx
    mov $spurious_handler, %eax
    call set_gate
    lidt idt_smp_desc(%rip)
    ret

/* Gate %ecx -> %eax: 64-bit interrupt gate, DPL 0. */
set_gate:
    mov %ecx, %edi
    shl $4, %edi
    add $IDT_SMP, %edi
    IDT_GATE
    ret

    .pushsection .rodata.idt_smp, "a"
    .balign 8
idt_smp_desc:
    .word 256 * 16 - 1
    .quad IDT_SMP
    .popsection

/* Count in this CPU's slot (by APIC ID), EOI if \eoi. */
.macro HANDLER name, slot, eoi
\name:
    push %rax
    push %rdx
    mov $LAPIC, %edx
    mov LAPIC_ID(%rdx), %eax
    shr $24, %eax
    and $0xF, %eax
    shl $6, %eax
    lock incl (COUNTS + \slot)(%rax)
    .if \eoi
    movl $0, LAPIC_EOI(%rdx)
    .endif
    pop %rdx
    pop %rax
    iretq
.endm
    HANDLER nmi_handler, SLOT_NMI, 0
    HANDLER ipi40_handler, SLOT_40, 1
    HANDLER ipi41_handler, SLOT_41, 1
    HANDLER spurious_handler, SLOT_SPURIOUS, 0
"#,
    options(att_syntax)
);
