//! Hostile guest, reset loop: resets the machine through port 0xCF9 the
//! moment it starts, forever, doing nothing in between. Keel must stop the
//! VM as "a guest that keeps resetting the machine" (docs/ARCHITECTURE.md
//! "Reset") instead of spinning.

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
    mov $0xCF9, %dx
    mov $0x06, %al
    out %al, %dx
1:  cli
    hlt
    jmp 1b
"#,
    options(att_syntax)
);
