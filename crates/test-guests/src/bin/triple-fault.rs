//! Reaches long mode, loads an IDT with limit 0 and raises #BP: the #BP, the #GP
//! for its missing gate and the #DF that follows all find no gate, so the CPU
//! shuts down (SDM Vol 3A 6.15, "Interrupt 8"). Keel has to stop the VM (status
//! 125) and say so in its log.

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
    .pushsection .rodata.empty_idt, "a"
    .balign 8
empty_idt_desc:
    .word 0                         /* limit 0: not even gate 0 fits */
    .quad 0
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
    PRINTLN "triple-fault: in long mode, loading an empty IDT"
    lidt empty_idt_desc(%rip)
    int3
1:  cli
    hlt
    jmp 1b
"#,
    options(att_syntax)
);
