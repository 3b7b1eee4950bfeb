//! #DB goes through Keel's intercept (CVE-2015-8104) and still reaches the
//! guest as the CPU gives it: a write breakpoint (DR0, 4 bytes) on a
//! variable runs the guest's #DB handler once, after the write, with DR6.B0
//! set (SDM Vol 3A 17.2.3, 17.3.1.2: data breakpoints are traps).
//!
//! The delivery loop itself (DR0 on the SS slot of a #DB frame on IST1, so
//! every delivery raises #DB again) is not run here: QEMU TCG aborts on a
//! watchpoint hit during event delivery in an SVM guest (an assertion on its
//! I/O-thread lock), so the loop bound is covered by the host tests of
//! `vmm-core::exit::exception`.

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
.set DB_COUNT,   0x600          /* u32: #DB handler runs */
.set DB_DR6,     0x608          /* u64: DR6 the handler read */
.set WATCHED,    0x700          /* u32: the variable of step 1 */
/* DR7: L0 (bit 0), R/W0 = 01 write (17:16), LEN0 = 11 four bytes (19:18). */
.set DR7_W4_L0,  0xD0001

MODE16
    .text
.global guest_main16
guest_main16:
    GOTO_PROTECTED protected

MODE32
protected:
    GOTO_LONG long

MODE64
long:
    PRINTLN "hostile-debug: in long mode"
    /* Gate 1 -> db_handler (offset words 0, 6; DPL 0 interrupt gate). */
    lea db_handler(%rip), %rax
    mov %ax, (IDT64 + 16)
    shr $16, %rax
    mov %ax, (IDT64 + 16 + 6)

    /* Step 1: one write under a data breakpoint. */
    movl $0, DB_COUNT
    mov $WATCHED, %rax
    mov %rax, %dr0
    mov $DR7_W4_L0, %rax
    mov %rax, %dr7
    movl $1, WATCHED
    nop
    xor %eax, %eax
    mov %rax, %dr7
    mov DB_COUNT, %ecx
    CHECK_EQ "db-data-breakpoint-taken-once", 1
    mov DB_DR6, %rcx
    and $0xF, %ecx
    CHECK_EQ "db-dr6-b0", 1

    jmp finish

/* #DB: count, keep DR6, clear it (the CPU never clears it, SDM Vol 3A 17.2.3). */
db_handler:
    push %rax
    incl DB_COUNT
    mov %dr6, %rax
    mov %rax, DB_DR6
    xor %eax, %eax
    mov %rax, %dr6
    pop %rax
    iretq
"#,
    options(att_syntax)
);
