//! Bootable test disk images for Keel's IDE controller and the firmware's
//! disk and video services. Each bin links into a flat disk image (see
//! `disk.ld`).
#![no_std]

/// Real-mode routines the boot disks report with, as `global_asm!` text
/// (AT&T syntax, `.code16`): polled output on COM1, the PASS/FAIL
/// bookkeeping of a check, and the end of a run. An image includes them
/// once, in its `.disk` section after its own code. They assume DS = 0 (the
/// image lies below 64 KiB) and keep every register but the flags.
///
/// - `putc`: the byte in AL to COM1, once the transmitter holding register
///   is empty (16550 LSR bit 5);
/// - `puts`: the NUL-terminated string at SI; `newline`;
/// - `puthex8`: AL as `0xNN`; `puthex32`: EAX as eight hex digits;
///   `putdec16`: AX in decimal;
/// - `pass` / `fail`: a `PASS <name>` / `FAIL <name>` line for the
///   NUL-terminated name at SI, counted;
/// - `finish`: the line `N passed, M failed`, then the debug-exit port
///   0xF4 gets 0 (all passed) or 1; never returns.
#[macro_export]
macro_rules! real_mode_routines {
    () => {
        r#"
putc:
    pushal
    mov %al, %ah
    mov $0x3FD, %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    mov %ah, %al
    mov $0x3F8, %dx
    out %al, %dx
    popal
    ret

puts:
    pushal
    cld
1:  lodsb
    test %al, %al
    jz 2f
    call putc
    jmp 1b
2:  popal
    ret

newline:
    push %ax
    mov $'\n', %al
    call putc
    pop %ax
    ret

puthex8:
    push %ax
    push %ax
    mov $'0', %al
    call putc
    mov $'x', %al
    call putc
    pop %ax
    push %ax
    shr $4, %al
    call hexdigit
    pop %ax
    call hexdigit
    pop %ax
    ret

/* The low nibble of AL as a hex digit. */
hexdigit:
    push %ax
    and $0x0F, %al
    add $'0', %al
    cmp $'9', %al
    jbe 1f
    add $('a' - '9' - 1), %al
1:  call putc
    pop %ax
    ret

puthex32:
    pushal
    mov %eax, %ebx
    mov $8, %cx
1:  rol $4, %ebx
    mov %bl, %al
    call hexdigit
    loop 1b
    popal
    ret

putdec16:
    pushal
    xor %cx, %cx
    mov $10, %bx
1:  xor %dx, %dx
    div %bx
    push %dx
    inc %cx
    test %ax, %ax
    jnz 1b
2:  pop %ax
    add $'0', %al
    call putc
    loop 2b
    popal
    ret

pass:
    incw passed
    push %si
    mov $msg_pass, %si
    call puts
    pop %si
    call puts
    jmp newline

fail:
    incw failed
    push %si
    mov $msg_fail, %si
    call puts
    pop %si
    call puts
    jmp newline

finish:
    mov passed, %ax
    call putdec16
    mov $msg_passed, %si
    call puts
    mov failed, %ax
    call putdec16
    mov $msg_failed, %si
    call puts
    call newline
    xor %eax, %eax
    cmpw $0, failed
    je 1f
    mov $1, %eax
1:  mov $0xF4, %dx
    out %eax, %dx
2:  cli
    hlt
    jmp 2b

msg_pass:   .asciz "PASS "
msg_fail:   .asciz "FAIL "
msg_passed: .asciz " passed, "
msg_failed: .asciz " failed"
    .balign 2
passed:     .word 0
failed:     .word 0
"#
    };
}

/// The images never run Rust code that could panic; this only satisfies `no_std`.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
