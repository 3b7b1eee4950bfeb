//! Event delivery through MMIO: reaches long mode, loads an IDT whose base is a
//! guest-physical page with nothing behind it, and makes an instruction that
//! stores to memory raise #GP (a non-canonical address). Delivering the #GP
//! reads its gate from the IDT, which faults in the nested page tables while
//! RIP still points at the store. Keel must not emulate the store: it stops
//! the VM (status 126) saying that event delivery through MMIO is not
//! supported, with the vector (13) and the address.

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
.set NO_DEVICE, 0xFE000000          /* nothing decodes this page */

    .pushsection .rodata.mmio_idt, "a"
    .balign 8
mmio_idt_desc:
    .word 0xFFF
    .quad NO_DEVICE
    .popsection

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
    PRINTLN "mmio-idt: in long mode, loading an IDT in MMIO"
    lidt mmio_idt_desc(%rip)
    movabs $0x8000000000000000, %rbx
    movl $1, (%rbx)                 /* #GP(0): non-canonical */
    PRINTLN "mmio-idt: FAIL: the store retired"
1:  cli
    hlt
    jmp 1b
"#,
    options(att_syntax)
);
