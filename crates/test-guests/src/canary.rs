//! Canaries: a pattern the hostile guests put in RAM no test aims at, so that
//! any change to it afterwards is damage a device did. 64-bit code.

use core::arch::global_asm;

global_asm!(
    crate::asm_prelude!(),
    r#"
.set CANARY, 0x5A3CC3A5A5C33C5A

MODE64
    .text
/* canary_fill: fills the %rcx bytes (a multiple of 8) at %rdi with the
   canary. Clobbers %rax, %rcx, %rdi. */
.global canary_fill
canary_fill:
    movabs $CANARY, %rax
    shr $3, %rcx
    rep stosq
    ret

/* canary_count: %edx += the qwords of the %rcx bytes (a multiple of 8) at
   %rdi that are not the canary. Clobbers %rax, %rcx, %rdi. */
.global canary_count
canary_count:
    movabs $CANARY, %rax
    shr $3, %rcx
1:  cmp %rax, (%rdi)
    je 2f
    inc %edx
2:  add $8, %rdi
    dec %rcx
    jnz 1b
    ret
"#,
    options(att_syntax)
);
