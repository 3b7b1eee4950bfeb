//! From the reset vector to the guest's `guest_main16`.
//!
//! The vCPU leaves reset in real mode with `CS.base = 0xFFFF0000`, `IP = 0xFFF0`
//! (SDM Vol 3A 9.1.4), i.e. at the last 16 bytes of the image as mapped below
//! 4 GiB. A far jump reloads CS with `0xF000`, so the rest of the code runs from
//! the copy below 1 MiB, where it is linked.

use core::arch::global_asm;

global_asm!(
    crate::asm_prelude!(),
    r#"
MODE16
    .pushsection .reset, "ax"
.global reset_vector
reset_vector:
    ljmp $IMAGE_SEGMENT, $(rm_entry - IMAGE_BASE)
    .popsection

    .text
rm_entry:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $STACK_TOP, %sp
    /* RAM is zero-filled at start; clear the state anyway so the counters
       never depend on it. */
    xor %eax, %eax
    mov %eax, PASS_COUNT
    mov %eax, FAIL_COUNT
    mov %eax, FAULT_SKIP
    call uart_init
    jmp guest_main16

/* 115200 baud 8N1, FIFOs on and cleared, interrupts off, DTR and RTS on. */
uart_init:
    mov $COM1_IER, %dx
    mov $0x00, %al
    out %al, %dx
    mov $COM1_LCR, %dx
    mov $0x80, %al          /* DLAB: ports 0/1 are the divisor latch */
    out %al, %dx
    mov $COM1, %dx
    mov $0x01, %al          /* divisor 1 */
    out %al, %dx
    mov $COM1_IER, %dx
    mov $0x00, %al
    out %al, %dx
    mov $COM1_LCR, %dx
    mov $0x03, %al          /* 8 data bits, no parity, 1 stop bit, DLAB off */
    out %al, %dx
    mov $COM1_FCR, %dx
    mov $0x07, %al          /* enable and clear both FIFOs */
    out %al, %dx
    mov $COM1_MCR, %dx
    mov $0x03, %al
    out %al, %dx
    ret
"#,
    options(att_syntax)
);
