//! The default guest: checks the machine Keel promises (docs/ARCHITECTURE.md, "The
//! machine a guest sees") from real mode, 32-bit protected mode and long mode.
//!
//! One `PASS <name>` / `FAIL <name>: expected .. got ..` line per test, then
//! `N passed, M failed` and a debug-exit write of 0 (all passed) or 1.

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
/* No device on a PC (or on QEMU's pc machine, or in Keel) decodes these ports. */
.set UNCLAIMED_PORT, 0x2F0
/* An MSR index outside every vendor's range (Intel 0-0x1FFF, hypervisors
   0x40000000-0x4000FFFF, 0xC0000000-0xC0001FFF, AMD 0xC0010000-0xC001FFFF). */
.set UNKNOWN_MSR, 0x0BADC0DE
.set IA32_APIC_BASE, 0x1B
.set IA32_MTRR_DEF_TYPE, 0x2FF
.set IA32_EFER, 0xC0000080
.set KEEL_SIGNATURE, 0x6C65654B     /* "Keel" as CPUID returns it in a register */

MODE16
    .text
.global guest_main16
guest_main16:
    PRINTLN "selftest: real mode"

    /* The scratch register keeps what was written to it. */
    mov $COM1_SCR, %dx
    mov $0xA5, %al
    out %al, %dx
    in %dx, %al
    mov %al, %cl
    shl $8, %ecx
    mov $0x5A, %al
    out %al, %dx
    in %dx, %al
    mov %al, %cl
    movzwl %cx, %ecx
    CHECK_EQ "rm-uart-scratch", 0xA55A

    /* Once the transmitter drains, LSR is exactly THRE | TEMT. */
    mov $COM1_LSR, %dx
    mov $0x100000, %ecx
1:  in %dx, %al
    test $LSR_TEMT, %al
    jnz 2f
    dec %ecx
    jnz 1b
2:  in %dx, %al
    movzbl %al, %ecx
    CHECK_EQ "rm-uart-lsr-idle", (LSR_THRE | LSR_TEMT)

    /* Unclaimed ports read all-ones of the access width; IN of 8 and 16 bits
       leaves the rest of %eax alone. */
    mov $UNCLAIMED_PORT, %dx
    mov $0x12345600, %eax
    in %dx, %al
    mov %eax, %ecx
    CHECK_EQ "rm-unclaimed-in8", 0x123456FF
    mov $UNCLAIMED_PORT, %dx
    mov $0x12340000, %eax
    in %dx, %ax
    mov %eax, %ecx
    CHECK_EQ "rm-unclaimed-in16", 0x1234FFFF
    mov $UNCLAIMED_PORT, %dx
    xor %eax, %eax
    in %dx, %eax
    mov %eax, %ecx
    CHECK_EQ "rm-unclaimed-in32", 0xFFFFFFFF

    /* String I/O: rep outsb writes a whole line to COM1 (shorter than the
       16-byte FIFO, which is empty now) and leaves CX = 0, SI past the string.
       got = CX << 16 | bytes SI advanced. */
    .pushsection .rodata.guest_strings, "a"
rep_outsb_line:
    .ascii "rm: rep outsb\n"
rep_outsb_end:
    .popsection
    push %ds
    mov $IMAGE_SEGMENT, %ax
    mov %ax, %ds
    mov $(rep_outsb_line - IMAGE_BASE), %si
    mov $(rep_outsb_end - rep_outsb_line), %cx
    mov $COM1, %dx
    rep outsb
    pop %ds
    sub $(rep_outsb_line - IMAGE_BASE), %si
    shl $16, %ecx
    mov %si, %cx
    CHECK_EQ "rm-rep-outsb", (rep_outsb_end - rep_outsb_line)

    /* CPUID leaf 0: the maximum basic leaf is at least 1. */
    xor %eax, %eax
    cpuid
    mov %eax, %ecx
    CHECK_GE "rm-cpuid-max-leaf", 1

    GOTO_PROTECTED guest_main32

MODE32
guest_main32:
    PRINTLN "selftest: 32-bit protected mode"

    mov $1, %eax
    cpuid
    and $(1 << 31), %ecx
    CHECK_EQ "pm-cpuid-hypervisor", (1 << 31)

    mov $1, %eax
    cpuid
    and $(1 << 5), %ecx
    CHECK_EQ "pm-cpuid-no-vmx", 0

    mov $0x80000001, %eax
    cpuid
    and $(1 << 2), %ecx
    CHECK_EQ "pm-cpuid-no-svm", 0

    /* Leaf 0x40000000: "KeelKeelKeel" in EBX, ECX, EDX; got = the first
       register that differs. */
    mov $0x40000000, %eax
    cpuid
    cmp $KEEL_SIGNATURE, %ebx
    jne 1f
    cmp $KEEL_SIGNATURE, %ecx
    jne 2f
    mov %edx, %ebx
1:  mov %ebx, %ecx
2:  CHECK_EQ "pm-cpuid-keel-signature", KEEL_SIGNATURE

    mov $0x40000000, %eax
    cpuid
    mov %eax, %ecx
    CHECK_GE "pm-cpuid-keel-max-leaf", 0x40000001

    GOTO_LONG guest_main64

MODE64
guest_main64:
    PRINTLN "selftest: long mode"

    mov $IA32_EFER, %ecx
    rdmsr
    and $0x500, %eax                /* EFER.LMA | EFER.LME */
    mov %eax, %ecx
    CHECK_EQ "lm-efer-lma-lme", 0x500

    /* The exception path itself: ud2 raises #UD, no error code. */
    EXPECT_FAULT 2
    ud2
    FAULT_RESULT
    CHECK_EQ "lm-idt-ud2", (6 << 16)

    /* An MSR nobody implements: #GP(0). got = vector << 16 | error code. */
    EXPECT_FAULT 2
    mov $UNKNOWN_MSR, %ecx
    rdmsr
    FAULT_RESULT
    CHECK_EQ "lm-rdmsr-unknown-gp", (13 << 16)

    EXPECT_FAULT 2
    mov $UNKNOWN_MSR, %ecx
    xor %eax, %eax
    xor %edx, %edx
    wrmsr
    FAULT_RESULT
    CHECK_EQ "lm-wrmsr-unknown-gp", (13 << 16)

    /* IA32_MTRR_DEF_TYPE keeps what was written: E | FE | type WB. */
    mov $IA32_MTRR_DEF_TYPE, %ecx
    mov $0xC06, %eax
    xor %edx, %edx
    wrmsr
    xor %eax, %eax
    rdmsr
    mov %eax, %ecx
    CHECK_EQ "lm-mtrr-def-type", 0xC06

    mov $IA32_APIC_BASE, %ecx
    rdmsr
    and $0x100, %eax                /* BSP */
    mov %eax, %ecx
    CHECK_EQ "lm-apic-base-bsp", 0x100

    mov $1, %eax
    cpuid
    and $(1 << 5), %ecx
    CHECK_EQ "lm-cpuid-no-vmx", 0

    mov $0x80000001, %eax
    cpuid
    and $(1 << 2), %ecx
    CHECK_EQ "lm-cpuid-no-svm", 0

    mov $UNCLAIMED_PORT, %dx
    xor %eax, %eax
    in %dx, %eax
    mov %eax, %ecx
    CHECK_EQ "lm-unclaimed-in32", 0xFFFFFFFF

    jmp finish
"#,
    options(att_syntax)
);
