//! `keel-bzbench`: the smallest Linux bzImage that says when it was entered,
//! for the shim bench of `cargo xtask bench` (xtask/src/bench.rs): time from
//! a VM's start to a kernel's first instruction, under Keel's shim and under
//! SeaBIOS with QEMU's linuxboot option ROM.
//!
//! A bzImage by Documentation/arch/x86/boot.rst, boot protocol 2.12: a boot
//! sector and one setup sector (`setup_sects` = 1) holding the setup header,
//! then a 1 KiB protected-mode kernel, loaded at 1 MiB (`LOADED_HIGH`, not
//! relocatable). It has the two entries the two loaders use:
//! - the real-mode entry, the jump at offset 0x200 of the setup (CS = the
//!   setup's segment + 0x20), which QEMU's linuxboot ROM jumps to after
//!   SeaBIOS ran it;
//! - the 64-bit entry at the protected-mode kernel + 0x200
//!   (`XLF_KERNEL_64`), which Keel's shim uses.
//!
//! Each writes one line to COM1 (0x3F8), `keel-bzbench: entered in real
//! mode` or `... in 64-bit mode`, polling the line status register's THRE
//! bit before each byte, then writes 0 to the debug-exit port 0xF4, which
//! stops the VM under Keel and ends QEMU with `-device isa-debug-exit`. The
//! 32-bit entry (`code32_start`, the protected-mode kernel's first byte),
//! which neither loader takes, halts.
//!
//! Flat, linked at 0 by `bzbench.ld`: the file is the bzImage.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("keel-bzbench is a Linux bzImage: build it for x86_64-unknown-none");
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
.set SETUP_SECTS,  1
.set PM_START,     (SETUP_SECTS + 1) * 512 /* the protected-mode kernel in the file */
.set PM_LEN,       0x400
.set COM1,         0x3F8
.set LSR_THRE,     0x20
.set DEBUG_EXIT,   0xF4

    .pushsection .bzimage, "ax"
    .code16
bz_start:
    .org 0x1F1
    .byte SETUP_SECTS                   /* setup_sects */
    .word 0                             /* root_flags */
    .long PM_LEN / 16                   /* syssize */
    .word 0                             /* ram_size */
    .word 0xFFFF                        /* vid_mode: normal */
    .word 0                             /* root_dev */
    .word 0xAA55                        /* boot_flag */
    /* 0x200: the real-mode entry; a short jump over the header. */
    jmp rm_entry
    .ascii "HdrS"                       /* header */
    .word 0x020C                        /* version 2.12 */
    .long 0                             /* realmode_swtch */
    .word 0                             /* start_sys_seg */
    .word 0                             /* kernel_version */
    .byte 0                             /* type_of_loader */
    .byte 0x01                          /* loadflags: LOADED_HIGH */
    .word 0                             /* setup_move_size */
    .long 0x100000                      /* code32_start */
    .long 0                             /* ramdisk_image */
    .long 0                             /* ramdisk_size */
    .long 0                             /* bootsect_kludge */
    .word 0                             /* heap_end_ptr */
    .byte 0                             /* ext_loader_ver */
    .byte 0                             /* ext_loader_type */
    .long 0                             /* cmd_line_ptr */
    .long 0x7FFFFFFF                    /* initrd_addr_max */
    .long 0x200000                      /* kernel_alignment */
    .byte 0                             /* relocatable_kernel: no */
    .byte 0                             /* min_alignment */
    .word 0x0001                        /* xloadflags: XLF_KERNEL_64 */
    .long 2047                          /* cmdline_size */
    .long 0                             /* hardware_subarch */
    .quad 0                             /* hardware_subarch_data */
    .long 0                             /* payload_offset */
    .long 0                             /* payload_length */
    .quad 0                             /* setup_data */
    .quad 0x100000                      /* pref_address */
    .long 0x1000                        /* init_size */
    .long 0                             /* handover_offset: no EFI handover */

/* CS:0 is the setup's offset 0x200; the message is addressed from there. */
rm_entry:
    cli
    cld
    mov %cs, %ax
    mov %ax, %ds
    mov $(rm_msg - bz_start - 0x200), %si
1:  lodsb
    test %al, %al
    jz 3f
    mov %al, %bl
    mov $(COM1 + 5), %dx
2:  in %dx, %al
    test $LSR_THRE, %al
    jz 2b
    mov $COM1, %dx
    mov %bl, %al
    out %al, %dx
    jmp 1b
3:  xor %al, %al
    out %al, $DEBUG_EXIT
4:  hlt
    jmp 4b
rm_msg:
    .asciz "keel-bzbench: entered in real mode\n"

    .org PM_START
    .code32
pm_start:                               /* code32_start: not taken */
    cli
5:  hlt
    jmp 5b

    .org PM_START + 0x200
    .code64
entry64:
    cli
    cld
    lea lm_msg(%rip), %rsi
1:  lodsb
    test %al, %al
    jz 3f
    mov %al, %bl
    mov $(COM1 + 5), %dx
2:  in %dx, %al
    test $LSR_THRE, %al
    jz 2b
    mov $COM1, %dx
    mov %bl, %al
    out %al, %dx
    jmp 1b
3:  xor %eax, %eax
    out %al, $DEBUG_EXIT
4:  hlt
    jmp 4b
lm_msg:
    .asciz "keel-bzbench: entered in 64-bit mode\n"

    .org PM_START + PM_LEN
    .popsection
"#,
    options(att_syntax)
);
