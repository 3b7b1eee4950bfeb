//! A VBE mode on QEMU's standard VGA (`stdvga = 1`,
//! `device-model/src/display/vga/`) set and drawn the way a VBE driver does
//! it, from long mode and without firmware, so that the test can compare
//! the machine's display with what the guest drew (`tests/tests/vbe.rs`).
//!
//! - finds the card (1234:1111) on bus 0, sizes BAR0 (16 MiB prefetchable
//!   memory), places it and turns on decoding; the framebuffer is where
//!   BAR0 then says;
//! - through the Bochs VBE DISPI interface (index port 0x1CE, data port
//!   0x1CF): ID 0xB0C5, 1024x768 at 32 bpp, then ENABLE with the linear
//!   framebuffer bit; reads the registers back (resolution, depth, enable,
//!   virtual width, video memory in 64 KiB units);
//! - draws a known pattern in the linear framebuffer (0x00RRGGBB pixels):
//!   eight colour bars of 128 columns in rows 0-383; below them, pixel
//!   (x, y) = (x & 0xFF) << 16 | (y & 0xFF) << 8 | (x ^ y) & 0xFF; five
//!   marker pixels at the corners and the centre (`MARK_*`), and reads a
//!   marker back.
//!
//! A VGA BIOS's VBE calls (INT 10h AX=4F02h) end in these same DISPI
//! writes; a long-mode guest cannot make INT 10h calls (they are real-mode
//! BIOS services; it would have to go back to real mode and run SeaBIOS's
//! VGA ROM), so this guest programs the DISPI registers itself. The BIOS's
//! own path is covered by SeaBIOS + `vgabios-stdvga` in `bootdisk`.
//!
//! One `PASS <name>` / `FAIL <name>` line per check, then `N passed, M
//! failed` and a debug-exit write of 0 (all passed) or 1; the last frame
//! stays on the machine's display for the screenshot.

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
.set ID_PAIR,        0x11111234     /* device 0x1111, vendor 0x1234 */
.set CFG_COMMAND,    0x04
.set CFG_BAR0,       0x10
.set LFB_AT,         0xFD000000     /* in the PCI hole */

/* The Bochs VBE DISPI interface. */
.set DISPI_INDEX,    0x1CE
.set DISPI_DATA,     0x1CF
.set DISPI_ID,       0
.set DISPI_XRES,     1
.set DISPI_YRES,     2
.set DISPI_BPP,      3
.set DISPI_ENABLE,   4
.set DISPI_VIRT_WIDTH, 6
.set DISPI_VIDEO_MEMORY_64K, 0xA
.set DISPI_ID5,      0xB0C5
.set DISPI_ENABLED,  0x01
.set DISPI_LFB_ENABLED, 0x40

.set WIDTH,          1024
.set HEIGHT,         768
.set BAR_ROWS,       384

/* The marker pixels (tests/tests/vbe.rs has the same values). */
.set MARK_TOP_LEFT,     0x00123456
.set MARK_TOP_RIGHT,    0x00ABCDEF
.set MARK_BOTTOM_LEFT,  0x00FEDCBA
.set MARK_BOTTOM_RIGHT, 0x0013579B
.set MARK_CENTRE,       0x002468AC

.set CFG,            0x604          /* u32: configuration address of the card */

.macro CFG_READ reg
    mov CFG, %eax
    or $\reg, %eax
    call pci_read
.endm
.macro CFG_WRITE reg, value
    mov CFG, %eax
    or $\reg, %eax
    mov $\value, %ebx
    call pci_write
.endm
/* DISPI register \index = \value. Clobbers %eax, %edx. */
.macro DISPI_WRITE index, value
    mov $DISPI_INDEX, %dx
    mov $\index, %ax
    out %ax, %dx
    mov $DISPI_DATA, %dx
    mov $\value, %ax
    out %ax, %dx
.endm
/* %ecx = DISPI register \index. Clobbers %eax, %edx. */
.macro DISPI_READ index
    mov $DISPI_INDEX, %dx
    mov $\index, %ax
    out %ax, %dx
    mov $DISPI_DATA, %dx
    in %dx, %ax
    movzwl %ax, %ecx
.endm
/* Pixel (\x, \y) of the framebuffer at %r13 = \value. */
.macro PIXEL x, y, value
    movl $\value, ((\y * WIDTH + \x) * 4)(%r13)
.endm

MODE16
    .text
.global guest_main16
guest_main16:
    PRINTLN "vbe: real mode, entering long mode"
    GOTO_PROTECTED protected

MODE32
protected:
    GOTO_LONG long

MODE64
long:
    PRINTLN "vbe: long mode"

    /* Find the card: bus 0, devices 0-31, function 0. */
    mov $ID_PAIR, %ecx
    call pci_find
    mov %eax, %r12d
    mov %r12d, CFG
    xor %ecx, %ecx
    test %r12d, %r12d
    setnz %cl
    CHECK_EQ "vga-1234-1111-found-on-bus-0", 1
    test %r12d, %r12d
    jz finish

    /* BAR0: size, place, decode; the framebuffer is where it says. */
    CFG_WRITE CFG_BAR0, 0xFFFFFFFF
    CFG_READ CFG_BAR0
    mov %eax, %ecx
    CHECK_EQ "bar0-sizes-as-16m-prefetchable-mem32", 0xFF000008
    CFG_WRITE CFG_BAR0, LFB_AT
    CFG_WRITE CFG_COMMAND, 0x3      /* I/O and memory space */
    CFG_READ CFG_BAR0
    and $0xFFFFFFF0, %eax
    mov %eax, %r13d
    mov %eax, %ecx
    CHECK_EQ "bar0-holds-the-framebuffer-address", LFB_AT

    /* The mode: 1024x768x32 with the linear framebuffer. */
    DISPI_WRITE DISPI_ID, DISPI_ID5
    DISPI_READ DISPI_ID
    CHECK_EQ "dispi-id-reads-0xb0c5", DISPI_ID5
    DISPI_WRITE DISPI_ENABLE, 0
    DISPI_WRITE DISPI_XRES, WIDTH
    DISPI_WRITE DISPI_YRES, HEIGHT
    DISPI_WRITE DISPI_BPP, 32
    DISPI_WRITE DISPI_ENABLE, (DISPI_ENABLED | DISPI_LFB_ENABLED)
    DISPI_READ DISPI_XRES
    CHECK_EQ "dispi-xres-reads-1024", WIDTH
    DISPI_READ DISPI_YRES
    CHECK_EQ "dispi-yres-reads-768", HEIGHT
    DISPI_READ DISPI_BPP
    CHECK_EQ "dispi-bpp-reads-32", 32
    DISPI_READ DISPI_ENABLE
    CHECK_EQ "dispi-enable-reads-enabled-with-lfb", (DISPI_ENABLED | DISPI_LFB_ENABLED)
    DISPI_READ DISPI_VIRT_WIDTH
    CHECK_EQ "dispi-virtual-width-follows-xres", WIDTH
    DISPI_READ DISPI_VIDEO_MEMORY_64K
    CHECK_EQ "dispi-video-memory-is-16m", 256

    /* Rows 0-383: eight bars of 128 columns, colours from bar_colours. */
    mov %r13, %rdi
    xor %r9d, %r9d                  /* y */
1:  xor %r8d, %r8d                  /* x */
2:  mov %r8d, %eax
    shr $7, %eax
    mov bar_colours(,%rax,4), %eax
    mov %eax, (%rdi)
    add $4, %rdi
    inc %r8d
    cmp $WIDTH, %r8d
    jb 2b
    inc %r9d
    cmp $BAR_ROWS, %r9d
    jb 1b
    /* Rows 384-767: (x & 0xFF) << 16 | (y & 0xFF) << 8 | (x ^ y) & 0xFF. */
1:  xor %r8d, %r8d
2:  movzbl %r8b, %eax
    shl $16, %eax
    movzbl %r9b, %ecx
    shl $8, %ecx
    or %ecx, %eax
    mov %r8d, %ecx
    xor %r9d, %ecx
    movzbl %cl, %ecx
    or %ecx, %eax
    mov %eax, (%rdi)
    add $4, %rdi
    inc %r8d
    cmp $WIDTH, %r8d
    jb 2b
    inc %r9d
    cmp $HEIGHT, %r9d
    jb 1b

    PIXEL 0, 0, MARK_TOP_LEFT
    PIXEL 1023, 0, MARK_TOP_RIGHT
    PIXEL 0, 767, MARK_BOTTOM_LEFT
    PIXEL 1023, 767, MARK_BOTTOM_RIGHT
    PIXEL 512, 384, MARK_CENTRE
    mov ((767 * WIDTH + 1023) * 4)(%r13), %ecx
    CHECK_EQ "framebuffer-reads-back-the-marker", MARK_BOTTOM_RIGHT
    jmp finish

/* White, yellow, cyan, green, magenta, red, blue, black. */
    .balign 4
bar_colours:
    .long 0x00FFFFFF, 0x00FFFF00, 0x0000FFFF, 0x0000FF00
    .long 0x00FF00FF, 0x00FF0000, 0x000000FF, 0x00000000
"#,
    options(att_syntax)
);
