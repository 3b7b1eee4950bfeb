//! A multiboot v1 test kernel for the shim (and any multiboot loader): it
//! checks what the loader hands over and reports on COM1, one `PASS name` or
//! `FAIL name` line per check, then `N passed, M failed`, and writes 0 (all
//! passed) or 1 to the debug-exit port 0xF4.
//!
//! What it expects, fixed here and in xtask (`xtask/src/guest_assets.rs`):
//! - EAX = 0x2BADB002, info flags with memory, cmdline, mods and mmap;
//! - a command line whose arguments after the first word (the kernel's
//!   name: GRUB puts the kernel's path there, iPXE its URL) are `ram=256`;
//! - a memory map whose available RAM adds up to between 255 and 256 MiB
//!   (a 256 MiB VM less the holes below 1 MiB), with an entry covering 1 MiB;
//! - one page-aligned module of 65659 bytes, byte `i` being
//!   `(i * 0x9E3779B1) >> 24`, with a string whose last path component is
//!   `keel-mbtest-module` (a path or URL ending in that name).
//!
//! 32-bit code in an x86_64-unknown-none crate (`.code32`), linked flat at
//! 2 MiB by `mbtest.ld`; xtask wraps it into an ELF32 file.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("keel-mbtest is a multiboot kernel: build it for x86_64-unknown-none");
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(target_os = "none")]
core::arch::global_asm!(
    r#"
.set MB_MAGIC,     0x1BADB002
.set MB_FLAGS,     0x00000003          /* page-aligned modules, memory info */
.set PASS_COUNT,   0x500
.set FAIL_COUNT,   0x504
.set INFO,         0x508
.set STACK_TOP,    0x7000
.set COM1,         0x3F8
.set MODULE_LEN,   65659
.set MIB,          0x100000

    .pushsection .multiboot, "a"
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .popsection

.macro STR label, text
    .pushsection .rodata.mbtest, "a"
\label: .asciz "\text"
    .popsection
.endm

/* Record check `name`: PASS if %ecx == \expected (EQ) / %ecx >= (GE). */
.macro CHECK kind, name, expected
    STR .Lname\@, "\name"
    mov $.Lname\@, %esi
    mov $(\expected), %ebx
    call check_\kind
.endm

    .pushsection .mbentry, "ax"
    .code32
.global mbtest_entry
mbtest_entry:
    cli
    mov $STACK_TOP, %esp
    mov %ebx, INFO
    movl $0, PASS_COUNT
    movl $0, FAIL_COUNT
    mov %eax, %ecx
    push %ecx
    call uart_init
    STR .Lhello, "mbtest: multiboot test kernel running"
    mov $.Lhello, %esi
    call putsln
    pop %ecx
    CHECK eq, "multiboot-magic", 0x2BADB002
    jmp main
    .popsection

    .text
    .code32
main:
    mov INFO, %edi
    mov (%edi), %ecx
    and $0x4D, %ecx                     /* memory, cmdline, mods, mmap */
    CHECK eq, "info-flags", 0x4D

    /* Command line: the arguments after the kernel's name. */
    mov INFO, %edi
    mov 16(%edi), %edi
    call skip_word
    STR .Lcmd, "ram=256"
    mov $.Lcmd, %esi
    call strcmp
    CHECK eq, "cmdline", 0

    mov INFO, %edi
    mov 4(%edi), %ecx
    CHECK ge, "mem-lower", 600

    /* Memory map: sum type-1 lengths (low dwords; a 256 MiB VM fits), and
       find an available entry with base <= 1 MiB < base + length. */
    mov INFO, %edi
    mov 44(%edi), %edx                  /* mmap_length */
    mov 48(%edi), %edi                  /* mmap_addr */
    add %edi, %edx                      /* end */
    xor %ecx, %ecx                      /* sum */
    xor %ebp, %ebp                      /* covers 1 MiB */
1:  cmp %edx, %edi
    jae 3f
    cmpl $1, 20(%edi)                   /* type */
    jne 2f
    cmpl $0, 8(%edi)                    /* base high */
    jne 2f
    add 12(%edi), %ecx                  /* length low */
    mov 4(%edi), %eax
    cmp $MIB, %eax
    ja 2f
    add 12(%edi), %eax
    cmp $MIB, %eax
    jbe 2f
    mov $1, %ebp
2:  add (%edi), %edi                    /* size field excludes itself */
    add $4, %edi
    jmp 1b
3:  push %ecx
    CHECK ge, "mmap-ram-at-least-255MiB", 255 * MIB
    pop %eax
    mov $(256 * MIB), %ecx
    sub %eax, %ecx                      /* 256 MiB - sum: must not wrap */
    CHECK ge, "mmap-ram-at-most-256MiB", 0
    cmp $(256 * MIB), %eax
    jbe 4f
    STR .Lover, "FAIL mmap: more available RAM than the VM has"
    mov $.Lover, %esi
    call putsln
    incl FAIL_COUNT
4:  mov %ebp, %ecx
    CHECK eq, "mmap-covers-1MiB", 1

    /* The module. */
    mov INFO, %edi
    mov 20(%edi), %ecx
    CHECK eq, "mods-count", 1
    mov INFO, %edi
    cmpl $1, 20(%edi)
    jne finish
    mov 24(%edi), %edi                  /* mods_addr */
    mov 4(%edi), %ecx
    sub (%edi), %ecx
    CHECK eq, "module-size", MODULE_LEN
    mov INFO, %edi
    mov 24(%edi), %edi
    mov (%edi), %ecx
    and $0xFFF, %ecx
    CHECK eq, "module-page-aligned", 0
    mov INFO, %edi
    mov 24(%edi), %edi
    mov 8(%edi), %edi
    call last_component
    STR .Lmod, "keel-mbtest-module"
    mov $.Lmod, %esi
    call strcmp
    CHECK eq, "module-string", 0
    /* Bytes: count mismatches. */
    mov INFO, %edi
    mov 24(%edi), %edi
    mov (%edi), %esi                    /* mod_start */
    xor %ecx, %ecx                      /* i */
    xor %ebp, %ebp                      /* mismatches */
5:  cmp $MODULE_LEN, %ecx
    jae 6f
    imul $0x9E3779B1, %ecx, %eax
    shr $24, %eax
    cmp (%esi,%ecx), %al
    je 7f
    inc %ebp
7:  inc %ecx
    jmp 5b
6:  mov %ebp, %ecx
    CHECK eq, "module-bytes", 0

finish:
    mov PASS_COUNT, %eax
    call putdec
    STR .Lp, " passed, "
    mov $.Lp, %esi
    call puts
    mov FAIL_COUNT, %eax
    call putdec
    STR .Lf, " failed"
    mov $.Lf, %esi
    call putsln
    xor %eax, %eax
    cmpl $0, FAIL_COUNT
    setne %al
    out %eax, $0xF4
8:  cli
    hlt
    jmp 8b

/* strcmp(%esi, %edi) -> %ecx = 0 if equal, 1 if not. */
/* skip_word: %edi past the first word of a string and the spaces after
   it (at its NUL if it has one word). */
skip_word:
1:  mov (%edi), %al
    test %al, %al
    jz 3f
    cmp $' ', %al
    je 2f
    inc %edi
    jmp 1b
2:  cmpb $' ', (%edi)
    jne 3f
    inc %edi
    jmp 2b
3:  ret

/* last_component: %edi to the character after the last '/' of a string
   (unchanged if it has none). */
last_component:
    mov %edi, %edx
1:  mov (%edx), %al
    test %al, %al
    jz 3f
    inc %edx
    cmp $'/', %al
    jne 1b
    mov %edx, %edi
    jmp 1b
3:  ret

strcmp:
    push %esi
    push %edi
1:  mov (%esi), %al
    cmp (%edi), %al
    jne 2f
    test %al, %al
    jz 3f
    inc %esi
    inc %edi
    jmp 1b
2:  mov $1, %ecx
    jmp 4f
3:  xor %ecx, %ecx
4:  pop %edi
    pop %esi
    ret

/* check_eq / check_ge: name %esi, value %ecx, expected %ebx. */
check_eq:
    cmp %ebx, %ecx
    je check_pass
    jmp check_fail
check_ge:
    cmp %ebx, %ecx
    jae check_pass
check_fail:
    incl FAIL_COUNT
    push %esi
    STR .Lfail, "FAIL "
    mov $.Lfail, %esi
    call puts
    pop %esi
    call puts
    STR .Lgot, ": got "
    mov $.Lgot, %esi
    call puts
    mov %ecx, %eax
    call puthex
    STR .Lexp, ", expected "
    mov $.Lexp, %esi
    call puts
    mov %ebx, %eax
    call puthex
    STR .Lnl, ""
    mov $.Lnl, %esi
    call putsln
    ret
check_pass:
    incl PASS_COUNT
    push %esi
    STR .Lpass, "PASS "
    mov $.Lpass, %esi
    call puts
    pop %esi
    call putsln
    ret

uart_init:
    mov $(COM1 + 1), %dx
    xor %al, %al
    out %al, %dx
    mov $(COM1 + 3), %dx
    mov $0x80, %al
    out %al, %dx
    mov $COM1, %dx
    mov $1, %al
    out %al, %dx
    mov $(COM1 + 1), %dx
    xor %al, %al
    out %al, %dx
    mov $(COM1 + 3), %dx
    mov $3, %al
    out %al, %dx
    mov $(COM1 + 2), %dx
    mov $7, %al
    out %al, %dx
    ret

/* putc %al; preserves registers. */
putc:
    push %edx
    push %eax
    mov $(COM1 + 5), %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    pop %eax
    mov $COM1, %dx
    out %al, %dx
    pop %edx
    ret

/* puts: NUL-terminated string at %esi. */
puts:
    push %esi
    push %eax
1:  mov (%esi), %al
    test %al, %al
    jz 2f
    call putc
    inc %esi
    jmp 1b
2:  pop %eax
    pop %esi
    ret

putsln:
    call puts
    push %eax
    mov $10, %al
    call putc
    pop %eax
    ret

/* puthex: %eax as 0x and 8 digits. */
puthex:
    push %eax
    push %ecx
    push %edx
    mov %eax, %edx
    mov $'0', %al
    call putc
    mov $'x', %al
    call putc
    mov $8, %ecx
1:  rol $4, %edx
    mov %dl, %al
    and $0xF, %al
    add $'0', %al
    cmp $'9', %al
    jbe 2f
    add $('a' - '9' - 1), %al
2:  call putc
    dec %ecx
    jnz 1b
    pop %edx
    pop %ecx
    pop %eax
    ret

/* putdec: %eax in decimal. */
putdec:
    push %eax
    push %ecx
    push %edx
    push %ebx
    mov $10, %ebx
    xor %ecx, %ecx
1:  xor %edx, %edx
    div %ebx
    push %edx
    inc %ecx
    test %eax, %eax
    jnz 1b
2:  pop %eax
    add $'0', %al
    call putc
    dec %ecx
    jnz 2b
    pop %ebx
    pop %edx
    pop %ecx
    pop %eax
    ret
"#,
    options(att_syntax)
);
