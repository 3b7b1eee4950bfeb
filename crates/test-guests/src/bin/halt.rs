//! Announces itself on COM1 and halts with interrupts off, from which nothing can
//! wake the vCPU: Keel has to stop the VM (status 123) and say so in its log.

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
    PRINTLN "halt: about to cli;hlt"
1:  cli
    hlt
    jmp 1b
"#,
    options(att_syntax)
);
