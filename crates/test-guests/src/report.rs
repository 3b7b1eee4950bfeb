//! Test bookkeeping: one `PASS <name>` or `FAIL <name> ...` line per check, the
//! counters at `PASS_COUNT`/`FAIL_COUNT`, and the final summary and debug exit.
//! A guest that ends some other way (a hypercall that powers the VM off)
//! prints the summary itself with `print_totals`.

use core::arch::global_asm;

global_asm!(
    crate::asm_prelude!(),
    r#"
    STRING str_pass, "PASS "
    STRING str_fail, "FAIL "
    STRING str_expected_eq, ": expected "
    STRING str_expected_ge, ": expected >= "
    STRING str_got, " got "

/* check_eq / check_ge, written once and assembled per mode (see serial.rs).
   In: %esi = test name (as IMAGE_PTR gives it), %ebx = expected, %ecx = got.
   Clobbers %eax, %esi, %edi. */
.macro CHECK_ROUTINES m
    .text
.global check_eq_\m
check_eq_\m:
    IMAGE_PTR str_expected_eq, %edi
    cmp %ebx, %ecx
    je 3f
    jmp 4f
.global check_ge_\m
check_ge_\m:
    IMAGE_PTR str_expected_ge, %edi
    cmp %ebx, %ecx
    jae 3f
4:  incl FAIL_COUNT
    mov %esi, %eax
    IMAGE_PTR str_fail
    call puts_\m
    mov %eax, %esi
    call puts_\m
    mov %edi, %esi
    call puts_\m
    mov %ebx, %eax
    call puthex_\m
    IMAGE_PTR str_got
    call puts_\m
    mov %ecx, %eax
    call puthex_\m
    mov $10, %al
    call putc_\m
    ret
3:  incl PASS_COUNT
    mov %esi, %eax
    IMAGE_PTR str_pass
    call puts_\m
    mov %eax, %esi
    call putsln_\m
    ret
.endm

MODE16
    CHECK_ROUTINES rm
MODE32
    CHECK_ROUTINES pm
MODE64
    CHECK_ROUTINES lm

/* check_eq64: long mode only. In: %esi = test name, %rbx = expected, %rcx =
   got, all 64 bits (a hypercall's result in RAX). Clobbers %eax, %esi. */
MODE64
.global check_eq64_lm
check_eq64_lm:
    mov %esi, %eax
    cmp %rbx, %rcx
    jne 1f
    incl PASS_COUNT
    IMAGE_PTR str_pass
    call puts_lm
    mov %eax, %esi
    call putsln_lm
    ret
1:  incl FAIL_COUNT
    IMAGE_PTR str_fail
    call puts_lm
    mov %eax, %esi
    call puts_lm
    IMAGE_PTR str_expected_eq
    call puts_lm
    mov %rbx, %rax
    call puthex64_lm
    IMAGE_PTR str_got
    call puts_lm
    mov %rcx, %rax
    call puthex64_lm
    mov $10, %al
    call putc_lm
    ret

/* print_totals: "N passed, M failed" on COM1. Long mode. Clobbers %eax, %esi. */
.global print_totals
print_totals:
    mov PASS_COUNT, %eax
    call putdec_lm
    PUTS " passed, "
    mov FAIL_COUNT, %eax
    call putdec_lm
    PRINTLN " failed"
    ret

/* finish: print the totals, write 0 (all passed) or 1 to the debug-exit
   port with a 32-bit OUT, then stop with cli; hlt. Long mode only. */
.global finish
finish:
    call print_totals
    xor %eax, %eax
    cmpl $0, FAIL_COUNT
    setne %al
    out %eax, $DEBUG_EXIT
1:  cli
    hlt
    jmp 1b
"#,
    options(att_syntax)
);
