//! A boot disk for the screen through the VGA BIOS: SeaBIOS boots its boot
//! sector from the IDE disk of a VM with QEMU's standard VGA, and the disk
//! draws through INT 10h, the way DOS programs, boot loaders and installers
//! do. What it does is the step in its parameter block (below):
//!
//! - **vbe** (step 0, the image as built): VBE through INT 10h (VESA BIOS
//!   Extension Core Functions 3.0, section 4): AX=4F00h (controller
//!   information, asked for with the "VBE2" signature: "VESA", version 2.0
//!   or later, 16 MiB of video memory) gives the mode list; AX=4F01h on
//!   each mode finds the one of 1024x768, 32 bits a pixel, direct colour,
//!   with a linear framebuffer (mode attributes bits 0 and 7), and its
//!   PhysBasePtr and BytesPerScanLine; AX=4F02h sets it with the linear
//!   framebuffer bit (BX bit 14); AX=4F03h reads it back. Then, in real
//!   mode with 4 GiB data segments ("unreal" mode, interrupts off), the
//!   disk draws the VBE test pattern (`test-guests/src/vbe_pattern.s`,
//!   the `vbe` guest's) at PhysBasePtr and reads a marker back.
//! - **mode13h** (step 1): INT 10h AH=00h AL=13h (320x200, 256 colours,
//!   chain-4), AH=0Fh reads the mode back; AX=1012h loads DAC entries
//!   64-127 with a ramp (entry 64 + i = red i, green 63 - i, blue 4i mod
//!   64, 6 bits each) and 200-203 with the markers' colours (red, green,
//!   blue, white), AX=1015h reads one back; pixel (x, y) at A000:y*320+x
//!   gets colour 64 + ((x + 3y) mod 64), the four corners the markers
//!   200-203 (top left, top right, bottom left, bottom right); a marker
//!   is read back through the window.
//! - **bench** (step 2): `cargo xtask bench --only screen`. The TSC
//!   cycles of four BIOS timer ticks (the PIT's 65536 counts at 1.193182
//!   MHz, IRQ 0 counting at 0040:006C), then in text mode 3 (INT 10h
//!   AX=0003h, the screen filled with text) `scrolls` scrolls of the
//!   whole 80x25 screen by one line through INT 10h AH=06h, then the same
//!   VBE mode set as step 0 and `fills` fills of the whole 1024x768x32
//!   framebuffer with `rep stosl` (3 MiB each, a colour each); each timed
//!   with RDTSC, as `BENCH screen=tsc ticks=4 cycles=0x...`, `BENCH
//!   screen=scroll n=M cycles=0x...` and `BENCH screen=fill n=N
//!   cycles=0x...` (64-bit hex).
//!
//! Every step reports one `PASS <name>` / `FAIL <name>` line per check on
//! COM1, then `N passed, M failed`, and writes 0 (all passed) or 1 to the
//! debug-exit port 0xF4; the last frame stays on the screen.
//!
//! Disk layout (16 sectors, 8 KiB): sector 0 is the boot sector, which
//! loads LBA 1-15 behind itself at 0x7E00. The parameter block opens
//! sector 1 (byte 512): the magic `KEELSCRN`, then little-endian u16s:
//! the step, `fills`, `scrolls` (`xtask::screen_disk` writes copies with
//! other values).

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_disks as _;

global_asm!(
    include_str!("../../../test-guests/src/vbe_pattern.s"),
    r#"
.set STEP_VBE,       0
.set STEP_MODE13H,   1
.set STEP_BENCH,     2

/* Buffers in RAM below the image (0x7C00). */
.set VBE_INFO,       0x1000         /* 512 bytes: VbeInfoBlock */
.set MODE_INFO,      0x1200         /* 256 bytes: ModeInfoBlock */
.set DAC_TABLE,      0x1400         /* 64 entries of 3 bytes */
.set ROW_BUFFER,     0x1600         /* one mode 13h row, 320 bytes */

/* VbeInfoBlock and ModeInfoBlock fields (VBE 3.0, 4.4 and 4.5). */
.set VBE_SIGNATURE,  0
.set VBE_VERSION,    4
.set VBE_MODE_PTR,   14
.set VBE_TOTAL_MEMORY, 18
.set MI_ATTRIBUTES,  0
.set MI_PITCH,       16
.set MI_XRES,        18
.set MI_YRES,        20
.set MI_BPP,         25
.set MI_MEMORY_MODEL, 27
.set MI_PHYS_BASE,   40
.set SIG_VBE2,       0x32454256     /* "VBE2" */
.set SIG_VESA,       0x41534556     /* "VESA" */
.set VBE_OK,         0x004F
.set ATTR_SUPPORTED_LFB, 0x81       /* supported, linear framebuffer */
.set MODEL_DIRECT,   6
.set SET_MODE_LFB,   0x4000
.set MODE_LIST_MAX,  256            /* entries looked at */

.set BIOS_TICKS,     0x46C          /* 0040:006C as seen from DS = 0 */
.set CAL_TICKS,      4

/* Mode 13h: the window, the ramp and the markers (tests/src/screen.rs). */
.set MODE13H,        0x13
.set WINDOW_A000,    0xA000
.set M13_WIDTH,      320
.set M13_HEIGHT,     200
.set RAMP_FIRST,     64
.set RAMP_LEN,       64
.set MARK_FIRST,     200
.set M13_TOP_LEFT,     0
.set M13_TOP_RIGHT,    M13_WIDTH - 1
.set M13_BOTTOM_LEFT,  (M13_HEIGHT - 1) * M13_WIDTH
.set M13_BOTTOM_RIGHT, M13_HEIGHT * M13_WIDTH - 1

/* An %si-named check: PASS if ZF is set, else FAIL. */
.macro VERDICT name
    mov $\name, %si
    jne 91f
    call pass
    jmp 92f
91: call fail
92:
.endm

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
    .word 15                        /* sectors */
    .word 0x7E00, 0x0000            /* buffer offset, segment */
    .quad 1                         /* first LBA */
boot_drive: .byte 0

    .org 510
    .word 0xAA55

/* The parameter block (xtask::screen_disk). */
params:
    .ascii "KEELSCRN"
param_step:    .word STEP_VBE
param_fills:   .word 0
param_scrolls: .word 0

main:
    mov $msg_booted, %si
    call puts
    mov param_step, %ax
    call putdec16
    call newline
    mov param_step, %ax
    cmp $STEP_VBE, %ax
    je step_vbe
    cmp $STEP_MODE13H, %ax
    je step_mode13h
    cmp $STEP_BENCH, %ax
    je step_bench
    mov $name_step, %si
    call fail
    jmp finish

/* Step 0: the VBE mode through INT 10h, the pattern in its framebuffer. */
step_vbe:
    call vbe_set_mode
    jc finish
    call enter_unreal
    mov lfb_addr, %esi
    VBE_PATTERN
    mov ((767 * VBE_WIDTH + 1023) * 4)(%esi), %eax
    sti
    cmp $VBE_MARK_BOTTOM_RIGHT, %eax
    VERDICT name_lfb_readback
    jmp finish

/* Finds 1024x768x32 with a linear framebuffer in the VBE mode list and sets
   it (one check per call, named). CF set if the mode could not be set. */
vbe_set_mode:
    mov $VBE_INFO, %di
    movl $SIG_VBE2, VBE_SIGNATURE(%di)
    mov $0x4F00, %ax
    int $0x10
    cmp $VBE_OK, %ax
    jne 1f
    cmpl $SIG_VESA, VBE_INFO + VBE_SIGNATURE
1:  VERDICT name_info
    cmpw $0x0200, VBE_INFO + VBE_VERSION
    setae %al
    cmp $1, %al
    VERDICT name_version
    cmpw $256, VBE_INFO + VBE_TOTAL_MEMORY
    VERDICT name_memory

    /* The mode list: 16-bit mode numbers at a far pointer, up to 0xFFFF. */
    movw $0xFFFF, vbe_mode
    mov VBE_INFO + VBE_MODE_PTR, %si
    mov VBE_INFO + VBE_MODE_PTR + 2, %bx
    mov $MODE_LIST_MAX, %bp
2:  mov %bx, %es
    mov %es:(%si), %cx
    xor %ax, %ax
    mov %ax, %es
    cmp $0xFFFF, %cx
    je 4f
    pusha
    mov $MODE_INFO, %di
    mov $0x4F01, %ax
    int $0x10
    cmp $VBE_OK, %ax
    popa
    jne 3f
    cmpw $1024, MODE_INFO + MI_XRES
    jne 3f
    cmpw $768, MODE_INFO + MI_YRES
    jne 3f
    cmpb $32, MODE_INFO + MI_BPP
    jne 3f
    cmpb $MODEL_DIRECT, MODE_INFO + MI_MEMORY_MODEL
    jne 3f
    mov MODE_INFO + MI_ATTRIBUTES, %ax
    and $ATTR_SUPPORTED_LFB, %ax
    cmp $ATTR_SUPPORTED_LFB, %ax
    jne 3f
    mov %cx, vbe_mode
    mov MODE_INFO + MI_PHYS_BASE, %eax
    mov %eax, lfb_addr
    mov MODE_INFO + MI_PITCH, %ax
    mov %ax, lfb_pitch
    jmp 4f
3:  add $2, %si
    dec %bp
    jnz 2b
4:  cmpw $0xFFFF, vbe_mode
    je 5f
    mov $msg_mode, %si
    call puts
    mov vbe_mode, %ax
    call putdec16
    mov $msg_lfb, %si
    call puts
    mov lfb_addr, %eax
    call puthex32
    call newline
5:  cmpw $0xFFFF, vbe_mode
    setne %al
    cmp $1, %al
    VERDICT name_listed
    cmpw $0xFFFF, vbe_mode
    je 9f
    cmpw $(VBE_WIDTH * 4), lfb_pitch
    VERDICT name_pitch
    cmpl $0, lfb_addr
    setne %al
    cmp $1, %al
    VERDICT name_lfb

    mov vbe_mode, %bx
    or $SET_MODE_LFB, %bx
    mov $0x4F02, %ax
    int $0x10
    cmp $VBE_OK, %ax
    VERDICT name_set
    cmp $VBE_OK, %ax
    jne 9f
    mov $0x4F03, %ax
    int $0x10
    cmp $VBE_OK, %ax
    jne 6f
    and $0x01FF, %bx
    cmp vbe_mode, %bx
6:  VERDICT name_current
    clc
    ret
9:  stc
    ret

/* Real mode with DS and ES limits of 4 GiB (base 0): 32-bit offsets reach
   the linear framebuffer. Interrupts stay off (a BIOS interrupt handler
   may reload the segments from protected mode); the caller turns them
   back on when it is done with high addresses. */
enter_unreal:
    cli
    lgdtl gdt_pointer
    mov %cr0, %eax
    or $1, %al
    mov %eax, %cr0
    jmp 1f
1:  mov $GDT_FLAT_DATA, %bx
    mov %bx, %ds
    mov %bx, %es
    and $0xFE, %al
    mov %eax, %cr0
    jmp 2f
2:  xor %bx, %bx
    mov %bx, %ds
    mov %bx, %es
    ret

/* Step 1: mode 13h through INT 10h, the pattern in the chain-4 window. */
step_mode13h:
    mov $MODE13H, %ax               /* AH = 00h: set mode */
    int $0x10
    mov $0x0F, %ah                  /* current video mode in AL */
    int $0x10
    cmp $MODE13H, %al
    VERDICT name_13h

    /* DAC entries RAMP_FIRST.. : (i, 63 - i, 4i mod 64). */
    mov $DAC_TABLE, %di
    xor %cx, %cx
1:  mov %cl, %al
    stosb
    mov $63, %al
    sub %cl, %al
    stosb
    mov %cl, %al
    shl $2, %al
    and $63, %al
    stosb
    inc %cx
    cmp $RAMP_LEN, %cx
    jb 1b
    mov $0x1012, %ax                /* set a block of DAC registers */
    mov $RAMP_FIRST, %bx
    mov $RAMP_LEN, %cx
    mov $DAC_TABLE, %dx
    int $0x10
    mov $0x1012, %ax
    mov $MARK_FIRST, %bx
    mov $4, %cx
    mov $dac_markers, %dx
    int $0x10
    mov $0x1015, %ax                /* read DAC register BX: DH, CH, CL */
    mov $(RAMP_FIRST + 10), %bx
    int $0x10
    cmp $10, %dh
    jne 2f
    cmp $53, %ch
    jne 2f
    cmp $40, %cl
2:  VERDICT name_dac

    /* Row y: colour RAMP_FIRST + ((x + 3y) mod 64), built in RAM and
       copied to A000:y*320 with one rep movsb. */
    xor %dx, %dx                    /* y */
3:  mov $ROW_BUFFER, %di
    mov %dx, %ax
    mov $3, %bl
    mul %bl                         /* AX = 3y (< 600) */
    xor %cx, %cx                    /* x */
4:  mov %ax, %bx
    add %cx, %bx
    and $(RAMP_LEN - 1), %bl
    add $RAMP_FIRST, %bl
    mov %bl, (%di)
    inc %di
    inc %cx
    cmp $M13_WIDTH, %cx
    jb 4b
    mov %dx, %ax
    mov $M13_WIDTH, %bx
    push %dx
    mul %bx
    pop %dx
    mov %ax, %di
    mov $WINDOW_A000, %ax
    mov %ax, %es
    mov $ROW_BUFFER, %si
    mov $M13_WIDTH, %cx
    cld
    rep movsb
    xor %ax, %ax
    mov %ax, %es
    inc %dx
    cmp $M13_HEIGHT, %dx
    jb 3b

    mov $WINDOW_A000, %ax
    mov %ax, %es
    movb $MARK_FIRST, %es:M13_TOP_LEFT
    movb $(MARK_FIRST + 1), %es:M13_TOP_RIGHT
    movb $(MARK_FIRST + 2), %es:M13_BOTTOM_LEFT
    movb $(MARK_FIRST + 3), %es:M13_BOTTOM_RIGHT
    mov %es:M13_BOTTOM_RIGHT, %al
    xor %bx, %bx
    mov %bx, %es
    cmp $(MARK_FIRST + 3), %al
    VERDICT name_window
    jmp finish

/* Step 2: the bench. */
step_bench:
    /* TSC cycles over CAL_TICKS ticks of the BIOS timer, from a tick's edge. */
    sti
    mov BIOS_TICKS, %bx
1:  hlt
    cmp BIOS_TICKS, %bx
    je 1b
    rdtsc
    mov %eax, t_start
    mov %edx, t_start + 4
    mov BIOS_TICKS, %bx
    add $CAL_TICKS, %bx
2:  hlt
    mov BIOS_TICKS, %ax
    sub %bx, %ax
    js 2b
    call elapsed
    mov $msg_bench_tsc, %si
    call puts
    call put_cycles

    /* Text mode 3, every cell written, then the scrolls. */
    mov $0x0003, %ax
    int $0x10
    mov $0xB800, %ax
    mov %ax, %es
    xor %di, %di
    mov $0x0741, %ax                /* 'A', grey on black */
    mov $(80 * 25), %cx
    cld
    rep stosw
    xor %ax, %ax
    mov %ax, %es
    rdtsc
    mov %eax, t_start
    mov %edx, t_start + 4
    mov param_scrolls, %bp
    test %bp, %bp
    jz 4f
3:  mov $0x0601, %ax                /* scroll up one line */
    mov $0x07, %bh                  /* attribute of the new line */
    xor %cx, %cx                    /* from row 0, column 0 */
    mov $0x184F, %dx                /* to row 24, column 79 */
    int $0x10
    dec %bp
    jnz 3b
4:  call elapsed
    mov $msg_bench_scroll, %si
    call puts
    mov param_scrolls, %ax
    call putdec16
    call put_cycles

    /* The VBE mode, then the fills. */
    call vbe_set_mode
    jc finish
    call enter_unreal
    rdtsc
    mov %eax, t_start
    mov %edx, t_start + 4
    mov param_fills, %bp
    test %bp, %bp
    jz 6f
5:  mov lfb_addr, %edi
    mov $(VBE_WIDTH * VBE_HEIGHT), %ecx
    movzwl %bp, %eax
    imul $0x010203, %eax, %eax      /* a colour per fill */
    cld
    rep stosl %eax, %es:(%edi)     /* 32-bit address size: ECX, EDI */
    dec %bp
    jnz 5b
6:  call elapsed
    sti
    mov $msg_bench_fill, %si
    call puts
    mov param_fills, %ax
    call putdec16
    call put_cycles
    jmp finish

/* t_end - t_start in EDX:EAX, from a fresh RDTSC. */
elapsed:
    rdtsc
    sub t_start, %eax
    sbb t_start + 4, %edx
    ret

/* " cycles=0x" and EDX:EAX in hex, then a newline. */
put_cycles:
    mov $msg_cycles, %si
    call puts
    push %eax
    mov %edx, %eax
    call puthex32
    pop %eax
    call puthex32
    jmp newline

    .balign 8
gdt:
    .quad 0
    .quad 0x00CF92000000FFFF        /* flat data: base 0, 4 GiB, writable */
.set GDT_FLAT_DATA, 0x08
gdt_pointer:
    .word 15
    .long gdt
    .balign 4
lfb_addr:   .long 0
t_start:    .quad 0
vbe_mode:   .word 0xFFFF
lfb_pitch:  .word 0
dac_markers:
    .byte 63, 0, 0,  0, 63, 0,  0, 0, 63,  63, 63, 63

msg_booted:       .asciz "screendisk: booted, step "
msg_mode:         .asciz "screendisk: VBE mode "
msg_lfb:          .asciz ", linear framebuffer at 0x"
msg_bench_tsc:    .asciz "BENCH screen=tsc ticks=4"
msg_bench_scroll: .asciz "BENCH screen=scroll n="
msg_bench_fill:   .asciz "BENCH screen=fill n="
msg_cycles:       .asciz " cycles=0x"
name_step:        .asciz "params-step-known"
name_info:        .asciz "int10-4f00-controller-info-vesa"
name_version:     .asciz "int10-4f00-vbe-2-or-later"
name_memory:      .asciz "int10-4f00-video-memory-16m"
name_listed:      .asciz "int10-4f01-1024x768x32-lfb-listed"
name_pitch:       .asciz "int10-4f01-pitch-4096"
name_lfb:         .asciz "int10-4f01-physbaseptr"
name_set:         .asciz "int10-4f02-set-mode-with-lfb"
name_current:     .asciz "int10-4f03-current-mode"
name_lfb_readback: .asciz "lfb-reads-back-the-marker"
name_13h:         .asciz "int10-00-mode-13h-set"
name_dac:         .asciz "int10-1012-dac-block-set"
name_window:      .asciz "a0000-window-reads-back-the-marker"
"#,
    test_disks::real_mode_routines!(),
    r#"
    .org 8192
"#,
    options(att_syntax)
);
