//! Announces itself on COM1 and halts with interrupts off, from which nothing can
//! wake the vCPU: Keel has to stop the VM (status 123) and say so in its log,
//! naming the RIP of the HLT, which the guest prints first (`halt: hlt at IP
//! 0x...`; real mode, so RIP is the offset in CS).

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
MODE16
    .text
.global guest_main16
guest_main16:
    PUTS "halt: hlt at IP "
    call 2f
2:  pop %ax
    movzwl %ax, %eax
    add $(1f - 2b), %eax
    KCALL puthex
    PRINTLN ""
    PRINTLN "halt: about to cli;hlt"
    cli
1:  hlt
    jmp 1b
"#,
    options(att_syntax)
);
