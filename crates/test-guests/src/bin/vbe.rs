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
//! - draws the VBE test pattern (`src/vbe_pattern.s`: colour bars, a
//!   gradient and marker pixels, 0x00RRGGBB) in the linear framebuffer and
//!   reads a marker back.
//!
//! A VGA BIOS's VBE calls (INT 10h AX=4F02h) end in these same DISPI
//! writes; a long-mode guest cannot make INT 10h calls (they are real-mode
//! BIOS services), so this guest programs the DISPI registers itself. The
//! BIOS's own path, the same mode set through INT 10h and the same pattern,
//! is the `screendisk` boot disk's (`crates/test-disks`).
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
    include_str!("../vbe_pattern.s"),
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

.set WIDTH,          VBE_WIDTH
.set HEIGHT,         VBE_HEIGHT

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

    /* The pattern (vbe_pattern.s) at BAR0. */
    mov %r13d, %esi
    VBE_PATTERN
    mov ((767 * WIDTH + 1023) * 4)(%r13), %ecx
    CHECK_EQ "framebuffer-reads-back-the-marker", VBE_MARK_BOTTOM_RIGHT
    jmp finish
"#,
    options(att_syntax)
);
