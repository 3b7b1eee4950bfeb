//! Checks the instruction emulator end to end: from long mode, with paging on,
//! instructions of several forms access Keel's MMIO scratch test device
//! (docs/ARCHITECTURE.md; the VM needs `keel_testdev = 1`). Every access
//! faults in the nested page tables and is carried out by Keel's emulator.
//!
//! One `PASS <name>` / `FAIL <name>` line per test, then `N passed, M failed`
//! and a debug-exit write of 0 (all passed) or 1.

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
.set MMIO, 0xFEB00000               /* Keel's scratch test device */
.set ACCESS_COUNT, 0xF00
.set LAST_ACCESS, 0xF04
.set NO_DEVICE, 0xFE000000          /* nothing decodes this page */

    .pushsection .rodata.mmio_source, "a"
    .balign 4
source_dwords:
    .long 0x11111111, 0x22222222, 0x33333333, 0x44444444
    .popsection

MODE16
    .text
.global guest_main16
guest_main16:
    PRINTLN "mmio: real mode, entering long mode"
    GOTO_PROTECTED protected

MODE32
protected:
    GOTO_LONG long

MODE64
long:
    PRINTLN "mmio: long mode"
    mov $MMIO, %r13d                /* CHECK_EQ clobbers %ebx: keep the base in %r13 */

    /* MOV imm -> MMIO, MMIO -> reg, at 32 bits. */
    movl $0x12345678, 0x00(%r13)
    mov 0x00(%r13), %ecx
    CHECK_EQ "lm-mmio-mov32", 0x12345678

    /* Byte store, MOVZX load. */
    movb $0xAB, 0x10(%r13)
    movzbl 0x10(%r13), %ecx
    CHECK_EQ "lm-mmio-mov8-movzx", 0xAB

    /* 16-bit store, MOVSX load. */
    movw $0x8001, 0x14(%r13)
    movswl 0x14(%r13), %ecx
    CHECK_EQ "lm-mmio-mov16-movsx", 0xFFFF8001

    /* A 64-bit store read back as its high half. */
    movabs $0x1122334455667788, %rax
    mov %rax, 0x20(%r13)
    mov 0x24(%r13), %ecx
    CHECK_EQ "lm-mmio-mov64", 0x11223344

    /* The access the device saw last: a 4-byte read. */
    mov LAST_ACCESS(%r13), %ecx
    CHECK_EQ "lm-mmio-last-access-read32", 4

    /* REP MOVSD from RAM to MMIO: four 4-byte writes. */
    mov ACCESS_COUNT(%r13), %r12d
    lea source_dwords(%rip), %rsi
    lea 0x40(%r13), %rdi
    mov $4, %ecx
    cld
    rep movsl
    mov ACCESS_COUNT(%r13), %ecx
    sub %r12d, %ecx
    CHECK_EQ "lm-mmio-rep-movsd-accesses", 4
    mov 0x4C(%r13), %ecx
    CHECK_EQ "lm-mmio-rep-movsd", 0x44444444

    /* REP MOVSB from MMIO back to RAM (0x3000, unused by the shared code), then compare in RAM. */
    lea 0x40(%r13), %rsi
    mov $0x3000, %edi
    mov $16, %ecx
    rep movsb
    mov 0x3008, %ecx
    CHECK_EQ "lm-mmio-rep-movsb-to-ram", 0x33333333

    /* OR and AND read-modify-write: one read and one write each. */
    movl $0xF0F0F0F0, 0x60(%r13)
    mov ACCESS_COUNT(%r13), %r12d
    orl $0x0F, 0x60(%r13)
    mov ACCESS_COUNT(%r13), %ecx
    sub %r12d, %ecx
    CHECK_EQ "lm-mmio-rmw-accesses", 2
    andl $0xFF00FFFF, 0x60(%r13)
    mov 0x60(%r13), %ecx
    CHECK_EQ "lm-mmio-or-and", 0xF000F0FF

    /* XCHG with memory: the old value comes back, the new one stays. */
    movl $0x11111111, 0x70(%r13)
    mov $0x22222222, %eax
    xchg %eax, 0x70(%r13)
    mov %eax, %ecx
    CHECK_EQ "lm-mmio-xchg-old", 0x11111111
    mov 0x70(%r13), %ecx
    CHECK_EQ "lm-mmio-xchg-new", 0x22222222

    /* Nothing at this address: reads are all-ones, writes vanish. */
    mov $NO_DEVICE, %edx
    movl $0, (%rdx)
    mov (%rdx), %ecx
    CHECK_EQ "lm-mmio-unclaimed-all-ones", 0xFFFFFFFF

    jmp finish
"#,
    options(att_syntax)
);
