/* The VBE test pattern, drawn by the `vbe` guest (long mode, after
 * programming the DISPI registers itself) and by the `screendisk` boot disk
 * (real mode with 4 GiB data segments, after INT 10h AX=4F02h); the
 * integration tests compare the machine's display with it
 * (tests/src/screen.rs holds the same pattern as `vbe_pattern`).
 *
 * 1024x768, 32 bits a pixel (0x00RRGGBB), rows back to back (4096 bytes a
 * row): eight colour bars of 128 columns in rows 0-383 (white, yellow,
 * cyan, green, magenta, red, blue, black); below them pixel (x, y) =
 * (x & 0xFF) << 16 | (y & 0xFF) << 8 | (x ^ y) & 0xFF; five marker pixels
 * at the corners and the centre (VBE_MARK_*).
 *
 * The macro uses only 32-bit registers and DS-relative addresses, so the
 * same text assembles for .code64, .code32 and .code16 (where the
 * assembler adds the operand and address size prefixes, and DS must
 * reach the framebuffer: a 4 GiB limit). Included once per image. */

.ifndef KEEL_VBE_PATTERN
.set KEEL_VBE_PATTERN, 1

.set VBE_WIDTH,              1024
.set VBE_HEIGHT,             768
.set VBE_BAR_ROWS,           384
.set VBE_MARK_TOP_LEFT,      0x00123456
.set VBE_MARK_TOP_RIGHT,     0x00ABCDEF
.set VBE_MARK_BOTTOM_LEFT,   0x00FEDCBA
.set VBE_MARK_BOTTOM_RIGHT,  0x0013579B
.set VBE_MARK_CENTRE,        0x002468AC

/* Draws the pattern into the framebuffer at %esi. Clobbers %eax, %ecx,
   %edx, %edi. */
.macro VBE_PATTERN
    jmp .Lvbe_draw\@
    .balign 4
.Lvbe_bars\@:
    .long 0x00FFFFFF, 0x00FFFF00, 0x0000FFFF, 0x0000FF00
    .long 0x00FF00FF, 0x00FF0000, 0x000000FF, 0x00000000
.Lvbe_draw\@:
    mov %esi, %edi
    xor %edx, %edx                  /* y */
.Lvbe_bar_row\@:
    xor %ecx, %ecx                  /* x */
.Lvbe_bar_px\@:
    mov %ecx, %eax
    shr $7, %eax
    mov .Lvbe_bars\@(,%eax,4), %eax
    mov %eax, (%edi)
    add $4, %edi
    inc %ecx
    cmp $VBE_WIDTH, %ecx
    jb .Lvbe_bar_px\@
    inc %edx
    cmp $VBE_BAR_ROWS, %edx
    jb .Lvbe_bar_row\@
.Lvbe_grad_row\@:
    xor %ecx, %ecx
.Lvbe_grad_px\@:
    movzbl %cl, %eax
    shl $8, %eax
    mov %dl, %al
    shl $8, %eax
    mov %cl, %al
    xor %dl, %al
    mov %eax, (%edi)
    add $4, %edi
    inc %ecx
    cmp $VBE_WIDTH, %ecx
    jb .Lvbe_grad_px\@
    inc %edx
    cmp $VBE_HEIGHT, %edx
    jb .Lvbe_grad_row\@
    movl $VBE_MARK_TOP_LEFT, (%esi)
    movl $VBE_MARK_TOP_RIGHT, (1023 * 4)(%esi)
    movl $VBE_MARK_BOTTOM_LEFT, ((767 * VBE_WIDTH) * 4)(%esi)
    movl $VBE_MARK_BOTTOM_RIGHT, ((767 * VBE_WIDTH + 1023) * 4)(%esi)
    movl $VBE_MARK_CENTRE, ((384 * VBE_WIDTH + 512) * 4)(%esi)
.endm

.endif
