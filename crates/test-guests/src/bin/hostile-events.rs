//! Hostile guest, events: what a guest does with interrupts, NMIs, tasks and
//! its own code placement that Keel must either handle as the hardware does
//! or stop cleanly.
//!
//! 1. 32-bit protected mode: a far JMP to a 32-bit TSS and back (SDM Vol 3A
//!    8.3, task switching; Keel finding #5 stopped VMX guests with 126).
//! 2. Long mode: 1000 self-NMIs through the ICR, each taken once (an NMI
//!    sent after the previous one returned is never merged).
//! 3. INIT and SIPI with the "self" shorthand (invalid combinations, SDM Vol
//!    3A 11.6.1 table "Valid Combinations for the Local xAPIC ICR": not
//!    delivered), SIPI to its own ID (a processor not in wait-for-SIPI
//!    ignores it, SDM Vol 3A 9.4.4) and an INIT level de-assert to all
//!    (not acted on since the Pentium 4): the guest runs on.
//! 4. `rep outsb` and an MMIO read run from the firmware alias below 4 GiB
//!    (finding #4: Keel read instruction bytes from RAM only).
//! 5. `cli; hlt` with the PIT routed as NMI through IOAPIC pin 2: the NMI
//!    ends the halt (SDM Vol 3A 8.10.2 / HLT: NMI resumes it; finding #14:
//!    Keel stopped the VM with 123).
//! 6. The summary line, then an interrupt whose IDT is in MMIO (Keel's test
//!    device, `keel_testdev = 1`, holding valid gates): hardware delivers it
//!    through the device (the handler ends with debug-exit 0); Keel may
//!    instead stop the VM with 126 and a log line. Running on past the
//!    trigger (finding #3: the instruction at RIP was emulated instead)
//!    prints FAIL and ends with debug-exit 1.

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
.set NMI_COUNT,      0x600
.set MARK,           0x604
.set TASK_FLAG,      0x608
.set GDT_RAM,        0x2000     /* the shared GDT's 4 entries, then 2 TSS descriptors */
.set SEL_TSS1,       0x20
.set SEL_TSS2,       0x28
.set TSS1,           0x2100
.set TSS2,           0x2200
.set TASK2_STACK,    0x6000
.set TESTDEV,        0xFEB00000
.set LAPIC,          0xFEE00000
.set IOAPIC,         0xFEC00000
.set ALIAS_DELTA,    0xFFFF0000 - IMAGE_BASE  /* image at 0xF0000 and at 0xFFFF0000 */
.set VEC_MMIO_IDT,   0x30

MODE16
    .text
.global guest_main16
guest_main16:
    PRINTLN "hostile-events: real mode"
    GOTO_PROTECTED main32

MODE32
main32:
    /* GDT in RAM: the shared four entries, TSS1 (this task), TSS2. */
    sgdt gdtr_save
    mov gdtr_save + 2, %esi
    mov $GDT_RAM, %edi
    mov $8, %ecx
    rep movsl
    mov $TSS1, %edi
    xor %eax, %eax
    mov $(0x200 / 4), %ecx
    rep stosl
    mov $TSS1, %eax
    mov $SEL_TSS1, %ebx
    call tss_descriptor
    mov $TSS2, %eax
    mov $SEL_TSS2, %ebx
    call tss_descriptor
    /* TSS2: EIP, EFLAGS, ESP, segments (SDM Vol 3A 8.2.1 layout). */
    movl $task2, (TSS2 + 0x20)
    movl $0x2, (TSS2 + 0x24)
    movl $TASK2_STACK, (TSS2 + 0x38)
    movl $SEL_DATA, (TSS2 + 0x48)    /* ES */
    movl $SEL_CODE32, (TSS2 + 0x4C)  /* CS */
    movl $SEL_DATA, (TSS2 + 0x50)    /* SS */
    movl $SEL_DATA, (TSS2 + 0x54)    /* DS */
    movl $SEL_DATA, (TSS2 + 0x58)    /* FS */
    movl $SEL_DATA, (TSS2 + 0x5C)    /* GS */
    movw $(GDT_RAM_END - GDT_RAM - 1), gdtr_ram
    movl $GDT_RAM, gdtr_ram + 2
    lgdt gdtr_ram
    mov $SEL_TSS1, %ax
    ltr %ax
    movl $0, TASK_FLAG
    ljmp $SEL_TSS2, $0
    /* Back from task 2. */
    mov TASK_FLAG, %ecx
    CHECK_EQ "far-jmp-to-tss-and-back", 0x7A5C
    GOTO_LONG main64

task2:
    movl $0x7A5C, TASK_FLAG
    ljmp $SEL_TSS1, $0

/* GDT_RAM entry %ebx = 32-bit available TSS at %eax, limit 0x67. */
tss_descriptor:
    lea GDT_RAM(%ebx), %edi
    movw $0x67, (%edi)
    mov %ax, 2(%edi)
    shr $16, %eax
    mov %al, 4(%edi)
    movb $0x89, 5(%edi)             /* present, DPL 0, type 9 */
    movb $0, 6(%edi)
    mov %ah, 7(%edi)
    ret
.set GDT_RAM_END, GDT_RAM + 0x30

/* RAM for the descriptors sgdt/lgdt use. */
.set gdtr_save, 0x610
.set gdtr_ram,  0x618

MODE64
main64:
    PRINTLN "hostile-events: long mode"
    /* NMI gate -> nmi_handler. */
    mov $nmi_handler, %eax
    mov %ax, (IDT64 + 2 * 16)
    shr $16, %eax
    mov %ax, (IDT64 + 2 * 16 + 6)
    mov $LAPIC, %r15d
    movl $0x1FF, 0xF0(%r15)         /* SVR: APIC on, spurious 0xFF */

    /* 2. NMI storm: 1000 NMIs to its own APIC ID, each awaited. */
    movl $0, NMI_COUNT
    mov 0x20(%r15), %eax
    and $0xFF000000, %eax
    mov %eax, 0x310(%r15)
    mov $1000, %r12d
1:  mov NMI_COUNT, %r13d
    movl $0x4400, 0x300(%r15)       /* NMI, assert, physical */
    mov $100000, %ecx
2:  cmp NMI_COUNT, %r13d
    jne 3f
    pause
    dec %ecx
    jnz 2b
3:  dec %r12d
    jnz 1b
    mov NMI_COUNT, %ecx
    CHECK_EQ "nmi-storm-1000-taken-once-each", 1000

    /* 3. INIT/SIPI the architecture does not deliver or ignores. */
    movl $0, MARK
    movl $0x44500, 0x300(%r15)      /* INIT, assert, shorthand self: invalid */
    call icr_idle
    movl $0x44610, 0x300(%r15)      /* SIPI 0x10, shorthand self: invalid */
    call icr_idle
    mov 0x20(%r15), %eax
    and $0xFF000000, %eax
    mov %eax, 0x310(%r15)
    movl $0x4610, 0x300(%r15)       /* SIPI to its own ID, not waiting for one */
    call icr_idle
    movl $0x88500, 0x300(%r15)      /* INIT level de-assert, all incl. self */
    call icr_idle
    movl $1, MARK
    mov MARK, %ecx
    CHECK_EQ "init-sipi-to-self-ignored", 1

    /* 4. String I/O and MMIO from the firmware alias at the top of 4 GiB. */
    mov $TESTDEV, %edi
    movl $0x600DF00D, (%rdi)
    mov $alias_string, %esi
    mov $(alias_string_end - alias_string), %ecx
    mov $(alias_code + ALIAS_DELTA), %eax
    call *%rax
    shl $16, %ecx                   /* got = RCX left << 16 | (scratch == 0x600DF00D) */
    xor %edx, %edx
    cmp $0x600DF00D, %eax
    sete %dl
    or %edx, %ecx
    CHECK_EQ "rep-outsb-and-mmio-from-firmware-alias", 1

    /* 5. cli; hlt woken by an NMI: PIT (1 kHz) -> IOAPIC pin 2, NMI. */
    mov $IOAPIC, %edi
    movl $0x15, (%rdi)              /* pin 2 high: destination APIC 0 */
    movl $0, 0x10(%rdi)
    movl $0x14, (%rdi)
    movl $0x400, 0x10(%rdi)         /* NMI, edge, unmasked */
    mov $0x34, %al
    out %al, $0x43
    mov $(1193 & 0xFF), %al
    out %al, $0x40
    mov $(1193 >> 8), %al
    out %al, $0x40
    mov NMI_COUNT, %r13d
    cli
    hlt
    mov NMI_COUNT, %ecx
    sub %r13d, %ecx
    movl $0x14, (%rdi)
    movl $0x10400, 0x10(%rdi)       /* masked again */
    CHECK_GE "cli-hlt-woken-by-nmi", 1

    /* 6. Summary, then the interrupt through an IDT in MMIO. */
    mov PASS_COUNT, %eax
    call putdec_lm
    PUTS " passed, "
    mov FAIL_COUNT, %eax
    call putdec_lm
    PRINTLN " failed"
    cmpl $0, FAIL_COUNT
    jne fail_exit
    PRINTLN "hostile-events: IDT in MMIO, then a self-IPI"
    /* Gates 0-63 of the device's scratch: all to mmio_idt_handler. */
    mov $TESTDEV, %edi
    mov $64, %ecx
1:  mov $mmio_idt_handler, %eax
    IDT_GATE
    add $16, %rdi
    dec %ecx
    jnz 1b
    lidt mmio_idt_desc(%rip)
    mov $LAPIC, %r15d
    movl $0, 0x310(%r15)
    sti
    movl $(0x44000 | VEC_MMIO_IDT), 0x300(%r15)  /* fixed, self */
    incl MARK
    incl MARK
    cli
    PRINTLN "FAIL idt-in-mmio: the guest ran on past the interrupt"
fail_exit:
    mov $1, %eax
    out %eax, $DEBUG_EXIT
1:  cli
    hlt
    jmp 1b

mmio_idt_handler:
    PRINTLN "PASS idt-in-mmio-delivered-through-the-device"
    xor %eax, %eax
    out %eax, $DEBUG_EXIT
1:  cli
    hlt
    jmp 1b

    .pushsection .rodata.events, "a"
    .balign 8
mmio_idt_desc:
    .word 64 * 16 - 1
    .quad TESTDEV
alias_string:
    .ascii "hostile-events: rep outsb from the firmware alias\n"
alias_string_end:
    .popsection

/* Runs from the alias: RCX bytes at RSI to COM1, then EAX = the test
   device's first dword. Position-independent. */
alias_code:
    mov $COM1, %dx
    rep outsb
    mov $TESTDEV, %edi
    mov (%rdi), %eax
    ret

nmi_handler:
    incl NMI_COUNT
    iretq

/* Wait until the ICR's delivery status (bit 12) is idle, bounded. */
icr_idle:
    mov $100000, %ecx
1:  testl $0x1000, 0x300(%r15)
    jz 2f
    pause
    dec %ecx
    jnz 1b
2:  ret
"#,
    options(att_syntax)
);
