//! A boot disk for the firmware path: SeaBIOS loads its boot sector from the
//! IDE disk, which then reads the disk's other sectors through INT 13h (the
//! extended LBA read, AH=42h, and the CHS read, AH=02h), checks what they
//! hold, writes a sector with the extended write (AH=43h) and reads it back,
//! sends the disk an ATA FLUSH CACHE through the primary channel's ports,
//! and reports on COM1:
//!
//! ```text
//! bootdisk: booted, drive 0x80
//! PASS int13-extensions
//! PASS int13-lba-read
//! PASS int13-chs-read
//! PASS int13-lba-write
//! PASS ata-flush-cache
//! 5 passed, 0 failed
//! ```
//!
//! then writes 0 (all passed) or 1 to the debug-exit port 0xF4.
//!
//! Disk layout (8 sectors, 4 KiB): sector 0 is the boot sector (0x55AA),
//! which loads LBA 1-5 behind itself at 0x7E00, where the rest of the code
//! lies; sectors 1-3 start with "KEEL SECTOR n"; sectors 6 and 7 are zero.
//! The write puts a pattern at LBA 6: byte `i` is `i mod 256`, except that
//! the sector starts with `KEEL WROTE LBA 6`. A test that gives the disk a
//! persistent backend finds it in the image afterwards. The flush assumes
//! the boot disk is the primary master (`hda`).

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
    /* The code does not fit in one sector: load LBA 1-5 right behind the
       boot sector, where the image is linked, and go on there. */
    mov $dap_load, %si
    mov $0x42, %ah
    int $0x13
    jnc main
    mov $1, %al
    mov $0xF4, %dx
    out %al, %dx
    cli
    hlt

    .balign 4
dap_load:
    .byte 16, 0
    .word 5                         /* sectors */
    .word 0x7E00, 0x0000            /* buffer offset, segment */
    .quad 1                         /* first LBA */
boot_drive: .byte 0

    .org 510
    .word 0xAA55
    .ascii "KEEL SECTOR 1"
    .org 1024
    .ascii "KEEL SECTOR 2"
    .org 1536
    .ascii "KEEL SECTOR 3"

main:
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
    /* AH=42h: read LBA 1-3 to 0x1000 through a disk address packet. */
    mov $dap, %si
    mov $0x42, %ah
    mov boot_drive, %dl
    int $0x13
    mov $name_lba, %si
    jc 3f
    mov $0x1000 + 2 * 512, %di      /* sector 3 */
    mov $sig3, %bx
    call check_sig
    jne 3f
    mov $0x1000, %di                 /* sector 1 */
    mov $sig1, %bx
    call check_sig
    jne 3f
    call pass
    jmp 4f
3:  call fail
4:
    /* AH=02h: read cylinder 0, head 0, sector 3 (LBA 2) to 0x2000. */
    mov $0x0201, %ax
    mov $0x0003, %cx
    xor %dh, %dh
    mov boot_drive, %dl
    mov $0x2000, %bx
    int $0x13
    mov $name_chs, %si
    jc 5f
    mov $0x2000, %di
    mov $sig2, %bx
    call check_sig
    jne 5f
    call pass
    jmp 6f
5:  call fail
6:
    /* AH=43h: write the pattern sector built at 0x3000 to LBA 6, read LBA 6
       back to 0x3200 with AH=42h, compare all 512 bytes. */
    mov $0x3000, %di
    mov $512, %cx
    xor %al, %al
    cld
12: stosb
    inc %al
    loop 12b
    mov $sig_w, %si
    mov $0x3000, %di
    mov $16, %cx
    rep movsb
    mov $dap_w, %si
    mov $0x4300, %ax
    mov boot_drive, %dl
    int $0x13
    mov $name_write, %si
    jc 13f
    mov $dap_r, %si
    mov $0x42, %ah
    mov boot_drive, %dl
    int $0x13
    mov $name_write, %si
    jc 13f
    mov $0x3000, %si
    mov $0x3200, %di
    mov $512, %cx
    cld
    repe cmpsb
    mov $name_write, %si
    jne 13f
    call pass
    jmp 14f
13: call fail
14:
    /* ATA FLUSH CACHE (E7h) to the primary master, with the device's
       interrupt off (nIEN): the guest's flush reaches the disk's backend. */
    mov $0x3F6, %dx
    mov $0x02, %al
    out %al, %dx
    call ata_wait
    mov $0x1F6, %dx
    mov $0xA0, %al
    out %al, %dx
    call ata_wait
    mov $0x1F7, %dx
    mov $0xE7, %al
    out %al, %dx
    call ata_wait
    mov $name_flush, %si
    test $0xA1, %al                 /* BSY, DF, ERR */
    jnz 15f
    call pass
    jmp 16f
15: call fail
16:
    jmp finish

/* Polls the primary channel's status until BSY clears (or 64K reads); AL = status. */
ata_wait:
    push %cx
    mov $0xFFFF, %cx
    mov $0x1F7, %dx
17: in %dx, %al
    test $0x80, %al
    loopnz 17b
    pop %cx
    ret

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

    .balign 4
dap:
    .byte 16, 0
    .word 3                         /* sectors */
    .word 0x1000, 0x0000            /* buffer offset, segment */
    .quad 1                         /* first LBA */
dap_w:
    .byte 16, 0
    .word 1
    .word 0x3000, 0x0000
    .quad 6
dap_r:
    .byte 16, 0
    .word 1
    .word 0x3200, 0x0000
    .quad 6

msg_booted: .asciz "bootdisk: booted, drive "
name_ext:   .asciz "int13-extensions"
name_lba:   .asciz "int13-lba-read"
name_chs:   .asciz "int13-chs-read"
name_write: .asciz "int13-lba-write"
name_flush: .asciz "ata-flush-cache"
sig_w:      .ascii "KEEL WROTE LBA 6"
sig1:       .ascii "KEEL SECTOR 1"
sig2:       .ascii "KEEL SECTOR 2"
sig3:       .ascii "KEEL SECTOR 3"
"#,
    test_disks::real_mode_routines!(),
    r#"
    .org 3072                       /* LBA 6, the written sector, and 7: zero */
    .org 4096
"#,
    options(att_syntax)
);
