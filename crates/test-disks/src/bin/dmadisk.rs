//! A data disk for the DMA tests (the `hostile-dma` guest): 8 MiB, large
//! enough that a transfer of the whole disk takes real hardware far longer
//! than one register access (multiword DMA mode 2 moves 16.7 MB/s: about
//! half a second), and every sector says which one it is, so a guest can
//! tell where each part of a transfer landed.
//!
//! Layout (16384 sectors of 512 bytes; as a CD, 4096 blocks of 2048):
//! sector 0 is a boot sector that only halts, with the signature 0x55AA at
//! offset 510; sector `n` >= 1 starts with the little-endian dwords `n` and
//! `!n`, the rest zero.

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
    hlt
    jmp boot_sector
    .org boot_sector + 510
    .byte 0x55, 0xAA

    .set lba, 1
    .rept 16383
    .long lba, ~lba
    .fill 504, 1, 0
    .set lba, lba + 1
    .endr
"#,
    options(att_syntax)
);
