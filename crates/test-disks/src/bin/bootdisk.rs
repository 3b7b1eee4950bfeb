//! A boot disk for the firmware path: SeaBIOS loads its boot sector from the
//! IDE disk, which then reads the disk's other sectors through INT 13h (the
//! extended LBA read, AH=42h, and the CHS read, AH=02h), checks what they
//! hold, and reports on COM1:
//!
//! ```text
//! bootdisk: booted, drive 0x80
//! PASS int13-extensions
//! PASS int13-lba-read
//! PASS int13-chs-read
//! 3 passed, 0 failed
//! ```
//!
//! then writes 0 (all passed) or 1 to the debug-exit port 0xF4.
//!
//! Disk layout: sector 0 is this code with the 0x55AA signature; sectors 1-3
//! start with "KEEL SECTOR n".

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_disks as _;

global_asm!(
    r#"
    .code16
    .section .disk, "ax"
    .global boot_sector
boot_sector:
    cli
    xor %ax, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov $0x7C00, %sp
    sti
    mov %dl, boot_drive
    movb $0, passed
    movb $0, failed

    mov $msg_booted, %si
    call puts
    mov boot_drive, %al
    call puthex8
    call newline

    /* INT 13h AH=41h: are the EDD extensions there? CF clear, BX = 0xAA55. */
    mov $0x41, %ah
    mov $0x55AA, %bx
    mov boot_drive, %dl
    int $0x13
    mov $name_ext, %si
    jc 1f
    cmp $0xAA55, %bx
    jne 1f
    call pass
    jmp 2f
1:  call fail
2:
    /* AH=42h: read LBA 1-3 to 0x8000 through a disk address packet. */
    mov $dap, %si
    mov $0x42, %ah
    mov boot_drive, %dl
    int $0x13
    mov $name_lba, %si
    jc 3f
    mov $0x8000 + 2 * 512, %di      /* sector 3 */
    mov $sig3, %bx
    call check_sig
    jne 3f
    mov $0x8000, %di                 /* sector 1 */
    mov $sig1, %bx
    call check_sig
    jne 3f
    call pass
    jmp 4f
3:  call fail
4:
    /* AH=02h: read cylinder 0, head 0, sector 3 (LBA 2) to 0x9000. */
    mov $0x0201, %ax
    mov $0x0003, %cx
    xor %dh, %dh
    mov boot_drive, %dl
    mov $0x9000, %bx
    int $0x13
    mov $name_chs, %si
    jc 5f
    mov $0x9000, %di
    mov $sig2, %bx
    call check_sig
    jne 5f
    call pass
    jmp 6f
5:  call fail
6:
    mov passed, %al
    call putdec8
    mov $msg_passed, %si
    call puts
    mov failed, %al
    call putdec8
    mov $msg_failed, %si
    call puts
    call newline
    xor %eax, %eax
    cmpb $0, failed
    je 7f
    mov $1, %eax
7:  mov $0xF4, %dx
    out %eax, %dx
8:  cli
    hlt
    jmp 8b

/* ZF set if the 13 bytes at %di equal those at %bx. */
check_sig:
    push %cx
    push %si
    mov %bx, %si
    mov $13, %cx
    cld
    repe cmpsb
    pop %si
    pop %cx
    ret

pass:
    incb passed
    push %si
    mov $msg_pass, %si
    call puts
    pop %si
    call puts
    jmp newline
fail:
    incb failed
    push %si
    mov $msg_fail, %si
    call puts
    pop %si
    call puts
    jmp newline

/* COM1, polled: wait for THR empty (LSR bit 5), then write. */
putc:
    push %dx
    push %ax
    mov $0x3FD, %dx
9:  in %dx, %al
    test $0x20, %al
    jz 9b
    pop %ax
    mov $0x3F8, %dx
    out %al, %dx
    pop %dx
    ret
puts:
    lodsb
    test %al, %al
    jz 10f
    call putc
    jmp puts
10: ret
newline:
    mov $'\n', %al
    jmp putc
puthex8:
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
    and $0x0F, %al
hexdigit:
    add $'0', %al
    cmp $'9', %al
    jbe putc
    add $('a' - '9' - 1), %al
    jmp putc
putdec8:                            /* 0-99 is all this disk ever counts */
    xor %ah, %ah
    mov $10, %bl
    div %bl
    test %al, %al
    jz 11f
    push %ax
    add $'0', %al
    call putc
    pop %ax
11: mov %ah, %al
    add $'0', %al
    jmp putc

    .balign 4
dap:
    .byte 16, 0
    .word 3                         /* sectors */
    .word 0x8000, 0x0000            /* buffer offset, segment */
    .quad 1                         /* first LBA */

msg_booted: .asciz "bootdisk: booted, drive "
msg_pass:   .asciz "PASS "
msg_fail:   .asciz "FAIL "
msg_passed: .asciz " passed, "
msg_failed: .asciz " failed"
name_ext:   .asciz "int13-extensions"
name_lba:   .asciz "int13-lba-read"
name_chs:   .asciz "int13-chs-read"
sig1:       .ascii "KEEL SECTOR 1"
sig2:       .ascii "KEEL SECTOR 2"
sig3:       .ascii "KEEL SECTOR 3"
boot_drive: .byte 0
passed:     .byte 0
failed:     .byte 0

    .org 510
    .word 0xAA55
    .ascii "KEEL SECTOR 1"
    .org 1024
    .ascii "KEEL SECTOR 2"
    .org 1536
    .ascii "KEEL SECTOR 3"
    .org 2048
"#,
    options(att_syntax)
);
