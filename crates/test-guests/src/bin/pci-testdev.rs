//! Keel's PCI test device (`device-model/src/test_device.rs`, VM config
//! `keel_testdev = 1`) driven the way an OS drives a PCI device, from long
//! mode and without firmware: nothing has programmed PCI before it.
//!
//! - finds the device by vendor/device ID on bus 0, sizes BAR0 (all-ones,
//!   read back), places it, turns on memory decode and bus mastering, reads
//!   its ID register; moves the BAR: the old place reads all-ones, the new
//!   one answers;
//! - finds the MSI-X capability, points table entry 0 at the local APIC
//!   (vector 0x40, its own IDT gate), enables MSI-X, rings the doorbell for
//!   a 256-byte DMA copy in RAM: one interrupt, the bytes copied, status done;
//!   masks the entry and rings again: no interrupt, the PBA bit set;
//!   unmasks: the interrupt arrives and the PBA bit clears;
//! - sizes and places the 64 KiB RAM BAR, writes 1000 dwords and reads them
//!   back: the device's access counter does not move (no exits), and the
//!   device's own sum of the region matches the guest's;
//! - enables the ROM BAR and reads the option ROM's 0xAA55 signature.
//!
//! One `PASS <name>` / `FAIL <name>` line per check, then `N passed, M
//! failed` and a debug-exit write of 0 (all passed) or 1.

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
/* PCI configuration mechanism #1. */
.set PCI_ADDR,       0xCF8
.set PCI_DATA,       0xCFC
.set ID_PAIR,        0x54444B45     /* device 0x5444, vendor 0x4B45 */
.set CFG_COMMAND,    0x04
.set CFG_BAR0,       0x10
.set CFG_BAR2,       0x18
.set CFG_ROM,        0x30
.set CFG_CAP_PTR,    0x34
.set CAP_MSIX,       0x11

/* Where the guest puts the regions (the PCI hole, below the IOAPIC). */
.set BAR_A,          0xFEA00000
.set BAR_B,          0xFE800000
.set ROM_AT,         0xFE880000
.set RAM_BAR_AT,     0xFE900000

/* BAR0 registers (test_device.rs). */
.set ACCESS_COUNT,   0xF00
.set DEV_ID,         0xF08
.set ID_VALUE,       0x4C45454B     /* "KEEL" */
.set DMA_SRC,        0xF10
.set DMA_DST,        0xF18
.set DMA_LEN,        0xF20
.set DOORBELL,       0xF24
.set STATUS,         0xF28
.set RAM_SUM,        0xF30
.set MSIX_TABLE,     0x1000
.set MSIX_PBA,       0x1800

/* Local APIC (through a register: disp32 above 2 GiB sign-extends). */
.set LAPIC,          0xFEE00000
.set LAPIC_EOI,      0xB0
.set LAPIC_SVR,      0xF0
.set VEC,            0x40

/* RAM of this guest. */
.set IRQ_COUNT,      0x600          /* u32: MSI-X interrupts taken */
.set CFG,            0x604          /* u32: configuration address of the device */
.set IDT_DESC,       0x610          /* 10 bytes: IDT64 with 256 gates */
.set SRC,            0x20000
.set DST,            0x30000
.set DST2,           0x31000

/* %eax = configuration dword \reg of the device. */
.macro CFG_READ reg
    mov CFG, %eax
    or $\reg, %eax
    call pci_read
.endm
/* Configuration dword \reg of the device = \value. */
.macro CFG_WRITE reg, value
    mov CFG, %eax
    or $\reg, %eax
    mov $\value, %ebx
    call pci_write
.endm
/* A DMA copy of \len bytes from \src to \dst, through BAR0 at %r13. */
.macro RING src, dst, len
    movq $\src, DMA_SRC(%r13)
    movq $\dst, DMA_DST(%r13)
    movl $\len, DMA_LEN(%r13)
    movl $1, DOORBELL(%r13)
.endm
/* Spin until IRQ_COUNT >= \n or 2000000 rounds pass; %ecx = IRQ_COUNT. */
.macro WAIT_IRQ n
    mov $2000000, %edx
1:  cmpl $\n, IRQ_COUNT
    jae 2f
    pause
    dec %edx
    jnz 1b
2:  mov IRQ_COUNT, %ecx
.endm

MODE16
    .text
.global guest_main16
guest_main16:
    PRINTLN "pci-testdev: real mode, entering long mode"
    GOTO_PROTECTED protected

MODE32
protected:
    GOTO_LONG long

MODE64
long:
    PRINTLN "pci-testdev: long mode"

    /* Find the device: bus 0, devices 0-31, function 0. */
    mov $ID_PAIR, %ecx
    call pci_find
    mov %eax, %r12d
    mov %r12d, CFG
    xor %ecx, %ecx
    test %r12d, %r12d
    setnz %cl
    CHECK_EQ "pci-device-found-on-bus-0", 1
    test %r12d, %r12d
    jz finish

    /* BAR0: size, place, decode, move. */
    CFG_WRITE CFG_BAR0, 0xFFFFFFFF
    CFG_READ CFG_BAR0
    mov %eax, %ecx
    CHECK_EQ "bar0-sizes-as-8k-mem32", 0xFFFFE000
    CFG_WRITE CFG_BAR0, BAR_A
    CFG_WRITE CFG_COMMAND, 0x6      /* memory space, bus master */
    mov $BAR_A, %r13d
    mov DEV_ID(%r13), %ecx
    CHECK_EQ "bar0-answers-where-placed", ID_VALUE
    CFG_WRITE CFG_BAR0, BAR_B
    mov DEV_ID(%r13), %ecx
    CHECK_EQ "bar0-old-place-reads-all-ones", 0xFFFFFFFF
    mov $BAR_B, %r13d
    mov DEV_ID(%r13), %ecx
    CHECK_EQ "bar0-answers-after-move", ID_VALUE

    /* The MSI-X capability: walk the list (at most 48 entries). */
    CFG_READ CFG_CAP_PTR
    movzbl %al, %r14d
    mov $48, %r15d
1:  test %r14d, %r14d
    jz 2f
    mov CFG, %eax
    or %r14d, %eax
    call pci_read
    cmp $CAP_MSIX, %al
    je 2f
    shr $8, %eax                    /* the next pointer */
    movzbl %al, %r14d
    dec %r15d
    jnz 1b
    xor %r14d, %r14d
2:  mov %r14d, %ecx
    CHECK_GE "msix-capability-found", 0x40
    test %r14d, %r14d
    jz finish
    mov CFG, %eax
    lea 4(%rax,%r14), %eax
    call pci_read
    mov %eax, %ecx
    CHECK_EQ "msix-table-in-bar0-at-0x1000", MSIX_TABLE

    /* The vector's gate, an IDT of 256 gates, the local APIC on. */
    mov $(IDT64 + 16 * VEC), %edi
    mov $msi_handler, %eax
    IDT_GATE
    movw $(256 * 16 - 1), IDT_DESC
    movq $IDT64, IDT_DESC + 2
    lidt IDT_DESC
    mov $LAPIC, %eax
    movl $0x1FF, LAPIC_SVR(%rax)
    /* Mask both 8259As: their power-on vector base is 0, and the BSP's
       LINT0 takes them in as ExtINT; only the MSI may arrive. */
    mov $0xFF, %al
    out %al, $0x21
    out %al, $0xA1

    /* MSI-X entry 0 -> the local APIC, vector VEC, unmasked; enable. */
    movl $LAPIC, MSIX_TABLE(%r13)
    movl $0, MSIX_TABLE + 4(%r13)
    movl $VEC, MSIX_TABLE + 8(%r13)
    movl $0, MSIX_TABLE + 12(%r13)
    mov CFG, %eax
    or %r14d, %eax
    mov $0x80000000, %ebx           /* message control: MSI-X enable */
    call pci_write

    /* 256 bytes of pattern at SRC, zeros at DST; ring. */
    xor %ecx, %ecx
1:  imul $7, %ecx, %eax
    add $3, %eax
    mov %al, SRC(%rcx)
    movb $0, DST(%rcx)
    inc %ecx
    cmp $256, %ecx
    jb 1b
    movl $0, IRQ_COUNT
    sti
    RING SRC, DST, 256
    WAIT_IRQ 1
    CHECK_EQ "msix-interrupt-after-doorbell", 1
    mov $SRC, %esi
    mov $DST, %edi
    mov $256, %ecx
    cld
    repe cmpsb
    setne %cl
    movzbl %cl, %ecx
    CHECK_EQ "dma-copied-256-bytes", 0
    mov STATUS(%r13), %ecx
    CHECK_EQ "dma-status-done", 1
    movl $3, STATUS(%r13)

    /* Masked: nothing sent, the PBA bit set; unmasked: sent. */
    movl $1, MSIX_TABLE + 12(%r13)
    RING SRC, DST2, 64
    mov $200000, %ecx
1:  pause
    dec %ecx
    jnz 1b
    mov IRQ_COUNT, %ecx
    CHECK_EQ "msix-masked-entry-sends-nothing", 1
    mov MSIX_PBA(%r13), %ecx
    and $1, %ecx
    CHECK_EQ "msix-pba-pending-while-masked", 1
    movl $0, MSIX_TABLE + 12(%r13)
    WAIT_IRQ 2
    CHECK_EQ "msix-unmask-sends-the-pending-message", 2
    mov MSIX_PBA(%r13), %ecx
    CHECK_EQ "msix-pba-clear-after-unmask", 0
    cli

    /* The RAM BAR: 1000 writes and 1000 reads, none reaching the device. */
    CFG_WRITE CFG_BAR2, 0xFFFFFFFF
    CFG_READ CFG_BAR2
    mov %eax, %ecx
    CHECK_EQ "ram-bar-sizes-as-64k-prefetchable", 0xFFFF0008
    CFG_WRITE CFG_BAR2, RAM_BAR_AT
    mov ACCESS_COUNT(%r13), %r14d
    mov $RAM_BAR_AT, %edi
    xor %r15d, %r15d                /* the guest's sum */
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $16, %eax
    or %ecx, %eax
    xor $0x5A5A5A5A, %eax
    mov %eax, (%rdi,%rcx,4)
    add %eax, %r15d
    inc %ecx
    cmp $1000, %ecx
    jb 1b
    xor %edx, %edx                  /* words that read back wrong */
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $16, %eax
    or %ecx, %eax
    xor $0x5A5A5A5A, %eax
    cmp %eax, (%rdi,%rcx,4)
    je 2f
    inc %edx
2:  inc %ecx
    cmp $1000, %ecx
    jb 1b
    mov ACCESS_COUNT(%r13), %ecx
    sub %r14d, %ecx
    mov %edx, %r14d
    CHECK_EQ "ram-bar-2000-accesses-without-exits", 0
    mov %r14d, %ecx
    CHECK_EQ "ram-bar-reads-back", 0
    mov RAM_SUM(%r13), %ecx
    sub %r15d, %ecx
    CHECK_EQ "ram-bar-device-sees-the-guest-writes", 0

    /* The ROM BAR: the option ROM's signature. */
    CFG_WRITE CFG_ROM, (ROM_AT | 1)
    mov $ROM_AT, %edx
    movzwl (%rdx), %ecx
    CHECK_EQ "rom-bar-shows-the-option-rom", 0xAA55

    jmp finish

/* The MSI-X vector: count, EOI. */
msi_handler:
    incl IRQ_COUNT
    push %rax
    mov $LAPIC, %eax
    movl $0, LAPIC_EOI(%rax)
    pop %rax
    iretq

"#,
    options(att_syntax)
);
