//! Hostile guest, spinning with interrupts off: CLI, then a loop on RDTSC
//! (no exit) for about 2^34 TSC cycles (seconds), then a debug-exit write
//! of 0. While it spins, nothing but the host's own timer can take its CPU
//! back: another VM pinned to the same CPU must keep its timer checks
//! (docs/ARCHITECTURE.md "Scheduling"). Bounded, so the boot ends.

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
    cli
    rdtsc
    mov %edx, %esi
    add $4, %esi
1:  rdtsc
    cmp %esi, %edx
    jb 1b
    mov $DEBUG_EXIT, %dx
    xor %al, %al
    out %al, %dx
2:  cli
    hlt
    jmp 2b
"#,
    options(att_syntax)
);
