//! COM1 output, polled: wait for LSR.THRE, then write THR (16550A data sheet,
//! "Line Status Register").
//!
//! The routines are written once, in a macro, and assembled for each CPU mode
//! (suffix `_rm`, `_pm`, `_lm`). They only use 32-bit registers, which real mode
//! reaches with operand-size prefixes; `w` is the register prefix for push/pop
//! (`e` in 16/32-bit code, `r` in 64-bit code). Strings are read through %cs, so
//! the same code reads the image at `CS = 0xF000` in real mode and flat elsewhere.

use core::arch::global_asm;

global_asm!(
    crate::asm_prelude!(),
    r#"
.macro SERIAL_ROUTINES m, w
    .text

/* putc: write %al to COM1. Preserves all registers. */
.global putc_\m
putc_\m:
    push %\w\()dx
    push %\w\()ax
    mov $COM1_LSR, %dx
1:  in %dx, %al
    test $LSR_THRE, %al
    jz 1b
    pop %\w\()ax
    mov $COM1, %dx
    out %al, %dx
    pop %\w\()dx
    ret

/* puts: write the NUL-terminated string at %cs:(%esi). Preserves all registers. */
.global puts_\m
puts_\m:
    push %\w\()si
    push %\w\()ax
1:  mov %cs:(%esi), %al
    test %al, %al
    jz 2f
    call putc_\m
    inc %esi
    jmp 1b
2:  pop %\w\()ax
    pop %\w\()si
    ret

/* putsln: puts, then a newline. */
.global putsln_\m
putsln_\m:
    call puts_\m
    push %\w\()ax
    mov $10, %al
    call putc_\m
    pop %\w\()ax
    ret

/* puthex: write %eax as 0x and eight hex digits. Preserves all registers. */
.global puthex_\m
puthex_\m:
    push %\w\()ax
    push %\w\()cx
    push %\w\()dx
    mov %eax, %edx
    mov $'0', %al
    call putc_\m
    mov $'x', %al
    call putc_\m
    mov $8, %ecx
1:  rol $4, %edx
    mov %dl, %al
    and $0xF, %al
    add $'0', %al
    cmp $'9', %al
    jbe 2f
    add $('a' - '9' - 1), %al
2:  call putc_\m
    dec %ecx
    jnz 1b
    pop %\w\()dx
    pop %\w\()cx
    pop %\w\()ax
    ret
.endm

MODE16
    SERIAL_ROUTINES rm, e
MODE32
    SERIAL_ROUTINES pm, e
MODE64
    SERIAL_ROUTINES lm, r

/* puthex64: write %rax as 0x and sixteen hex digits. Preserves all registers. */
.global puthex64_lm
puthex64_lm:
    push %rax
    push %rcx
    push %rdx
    mov %rax, %rdx
    mov $'0', %al
    call putc_lm
    mov $'x', %al
    call putc_lm
    mov $16, %ecx
1:  rol $4, %rdx
    mov %dl, %al
    and $0xF, %al
    add $'0', %al
    cmp $'9', %al
    jbe 2f
    add $('a' - '9' - 1), %al
2:  call putc_lm
    dec %ecx
    jnz 1b
    pop %rdx
    pop %rcx
    pop %rax
    ret

/* putdec: write %eax in decimal. Preserves all registers. */
.global putdec_lm
putdec_lm:
    push %rax
    mov %eax, %eax
    call putdec64_lm
    pop %rax
    ret

/* putdec64: write %rax in decimal (all 64 bits). Preserves all registers. */
.global putdec64_lm
putdec64_lm:
    push %rax
    push %rcx
    push %rdx
    push %rdi
    mov $10, %ecx
    xor %edi, %edi
1:  xor %edx, %edx
    div %rcx
    push %rdx
    inc %edi
    test %rax, %rax
    jnz 1b
2:  pop %rax
    add $'0', %al
    call putc_lm
    dec %edi
    jnz 2b
    pop %rdi
    pop %rdx
    pop %rcx
    pop %rax
    ret
"#,
    options(att_syntax)
);
