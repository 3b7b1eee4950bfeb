//! Hostile guest, DMA: bus-master IDE and fw_cfg DMA aimed outside guest
//! RAM, at the firmware ROM, across 4 GiB, and descriptor tables without an
//! end, on a disk and a CD holding the `dmadisk` image (8 MiB; sector `n`
//! starts with the dword `n`, sector 0 ends with 0x55AA).
//!
//! The guest boots without a BIOS, so it sets up the PIIX3 IDE function
//! (00:01.1) itself: BAR4 (BMIBA) at 0xC000, PCICMD I/O space and bus
//! master enables, IDETIM decode of both channels (82371SB datasheet 2.3).
//! Bus-master registers per channel (datasheet 2.7, SFF-8038i): BMICX
//! (+0: bit 0 start, bit 3 write to memory), BMISX (+2: bit 0 active, bit 1
//! error, bit 2 interrupt, bits 1-2 write-one-to-clear), BMIDTP (+4). A PRD
//! is a dword base address and a dword with the byte count in bits 15:0
//! (0 = 64 KiB) and EOT in bit 31: addresses are 32-bit, so "outside RAM"
//! here means above the VM's RAM, in the PCI hole, the ROM at 0xFFFF0000 and
//! a region running past 4 GiB.
//!
//! What the guest expects, from the datasheet and SFF-8038i's BMISX table:
//! - a region or the table outside memory (a master abort): ERROR set,
//!   ACTIVE clear; no byte lands anywhere in RAM (canaries below the top of
//!   RAM, around the PRD table page, around the data buffer and in the real-
//!   mode IVT, where a transfer wrapping at 4 GiB would land) and the ROM
//!   keeps its bytes (its alias at 0xFFFF0000 still equals the copy at
//!   0xF0000). The drive is then reset with SRST, as a driver does after a
//!   bus-master error;
//! - a table larger than the transfer (no EOT in a whole 64 KiB page of
//!   descriptors): the transfer completes, ACTIVE stays set and INTERRUPT
//!   is set; the data follow the descriptors;
//! - a transfer of the whole disk (8 MiB) and a READ(12) of the whole disc
//!   through such a table complete with the right data (Keel moves at most
//!   a fixed budget per exit and goes on before later entries: finding #13,
//!   host-tested in device-model, where the budget per call is asserted;
//!   how far a transfer got when the guest looks is timing, not
//!   architecture, so the guest does not assert it);
//! - a normal READ DMA of sector 0 and READ(12) of block 0 afterwards return
//!   the boot signature with INTERRUPT only.
//!
//! A table of 8192 two-byte regions that the transfer outruns (the
//! datasheet forbids a table that crosses its 64 KiB page, so what hardware
//! does there is undefined) is only survived: afterwards the controller
//! must work.
//!
//! fw_cfg DMA (QEMU's fw_cfg.rst, "DMA interface"): a descriptor of
//! big-endian control (bit 0 error, 1 read, 3 select with the key in bits
//! 31:16), length and 64-bit address; the guest writes its address to 0x514
//! (high dword) and 0x518 (low dword), big-endian. A target outside RAM (the
//! top of RAM, 4 GiB, the last 8 bytes of the 64-bit space) must come back
//! with the error bit and change no RAM; a descriptor outside RAM changes
//! nothing (the selection and read position of the data port stay); one
//! whose address field lies outside RAM gets the error bit; a good one
//! still works after all that.

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
/* Variables (RAM, below the stack). */
.set RAM_TOP,        0x600      /* u64: guest RAM size from fw_cfg */
.set CDB,            0x610      /* 12-byte ATAPI command packet */

/* Memory the DMA tests use. */
.set PRD_PAGE,       0x200000   /* a whole 64 KiB page of descriptors */
.set PRD_SHORT,      0x230000   /* one-entry tables */
.set FW_DESC,        0x240000
.set FW_BUF,         0x250000
.set BUF,            0x300000   /* 64 KiB data buffer */
.set CANARY_LEN,     0x10000
.set LOW_CANARY_LEN, 0x500      /* real-mode IVT and BDA, unused in long mode */

/* The dmadisk image. */
.set DISK_SECTORS,   16384
.set CD_BLOCKS,      4096

/* PCI configuration of the PIIX3 IDE function, 00:01.1. */
.set PCI_ADDR,       0xCF8
.set PCI_DATA,       0xCFC
.set IDE_CFG,        0x80000900
.set BM_BASE,        0xC000

/* Bus-master registers (offsets in a channel's block) and bits. */
.set BMICX,          0
.set BMISX,          2
.set BMIDTP,         4
.set BM_GO,          0x09       /* start, write to memory */
.set BMIS_ACTIVE,    0x01
.set BMIS_ERROR,     0x02
.set BMIS_INTR,      0x04

/* ATA registers (offsets from the command block) and status bits. */
.set R_FEATURES,     1
.set R_COUNT,        2
.set R_LBA_LOW,      3
.set R_LBA_MID,      4
.set R_LBA_HIGH,     5
.set R_DEVICE,       6
.set R_STATUS,       7
.set R_ALTSTATUS,    0x206      /* 0x3F6 - 0x1F0 = 0x376 - 0x170 */
.set ST_BSY,         0x80
.set ST_DRDY,        0x40
.set ST_DRQ,         0x08
.set ST_ERR,         0x01
.set ST_MASK,        0xC9       /* BSY, DRDY, DRQ, ERR */

.set POLL_LIMIT,     4000000

/* fw_cfg. */
.set FW_SELECTOR,    0x510
.set FW_DATA,        0x511
.set FW_DMA_HIGH,    0x514
.set FW_DMA_LOW,     0x518
.set FW_CTL_ERROR,   0x01
.set FW_CTL_READ,    0x02
.set FW_CTL_SELECT,  0x08
.set FW_KEY_SIGNATURE, 0x0000
.set FW_KEY_ID,      0x0001
.set FW_KEY_RAM_SIZE, 0x0003

/* Port r8 + off (IDE command block) / r9 + off (bus master). */
.macro CH_OUT off
    lea \off(%r8), %edx
    out %al, %dx
.endm
.macro CH_IN off
    lea \off(%r8), %edx
    in %dx, %al
.endm
.macro BM_OUT off
    lea \off(%r9), %edx
    out %al, %dx
.endm
.macro BM_IN off
    lea \off(%r9), %edx
    in %dx, %al
.endm

/* Record `name`: no canary changed, the ROM kept its bytes. */
.macro CHECK_INTACT name
    call mem_damage
    CHECK_EQ "\name", 0
.endm

/* The channels: %r8 = command block, %r9 = bus-master block. */
.macro DISK
    mov $0x1F0, %r8d
    mov $BM_BASE, %r9d
.endm
.macro CD
    mov $0x170, %r8d
    mov $(BM_BASE + 8), %r9d
.endm

MODE16
    .text
.global guest_main16
guest_main16:
    GOTO_PROTECTED main32
MODE32
main32:
    GOTO_LONG main64

MODE64
main64:
    PRINTLN "hostile-dma: long mode, interrupts off"
    call read_ram_size
    mov RAM_TOP, %rcx
    CHECK_GE "fw-cfg-ram-size-at-least-16-mib", 0x1000000
    call ide_setup
    call arm_canaries

    DISK
    call disk_tests
    CD
    call cd_tests
    call fw_cfg_tests
    jmp finish

/* ---------------------------------------------------------------------- */
/* RAM_TOP = fw_cfg RAM_SIZE (8 bytes, little-endian, through the data port). */
read_ram_size:
    mov $FW_KEY_RAM_SIZE, %ax
    mov $FW_SELECTOR, %dx
    out %ax, %dx
    mov $FW_DATA, %dx
    xor %ecx, %ecx
1:  in %dx, %al
    mov %al, RAM_TOP(%rcx)
    inc %ecx
    cmp $8, %ecx
    jb 1b
    ret

ide_setup:
    mov $(IDE_CFG | 0x20), %eax     /* BMIBA */
    mov $BM_BASE, %ebx
    call pci_write
    mov $(IDE_CFG | 0x40), %eax     /* IDETIM primary and secondary: decode */
    mov $0x80008000, %ebx
    call pci_write
    mov $(IDE_CFG | 0x04), %eax     /* PCICMD: I/O space, bus master */
    mov $0x0005, %ebx
    call pci_write
    mov $(IDE_CFG | 0x20), %eax
    call pci_read
    mov %eax, %ecx
    CHECK_EQ "ide-bar4-at-0xc000", (BM_BASE | 1)
    mov $(IDE_CFG | 0x04), %eax
    call pci_read
    and $0x5, %eax
    mov %eax, %ecx
    CHECK_EQ "ide-io-and-bus-master-enabled", 0x5
    ret

/* ---------------------------------------------------------------------- */
/* Canaries: canary_fill / canary_count (the library, canary.rs). */

/* %edx += qwords of the 4 KiB of ROM at %rsi that differ from its copy in
   RAM at %rdi (the image is at 0xF0000 and at 0xFFFF0000). */
rom_count:
    mov $512, %ecx
1:  mov (%rsi), %rax
    cmp %rax, (%rdi)
    je 2f
    inc %edx
2:  add $8, %rsi
    add $8, %rdi
    dec %ecx
    jnz 1b
    ret

/* The canaries: the 64 KiB below the top of RAM, the 64 KiB on each side of
   the PRD table page, the 64 KiB after the data buffer, and the real-mode
   IVT and BDA (where a transfer wrapping at 4 GiB or 2^64 would land). */
arm_canaries:
    mov RAM_TOP, %rdi
    sub $CANARY_LEN, %rdi
    mov $CANARY_LEN, %ecx
    call canary_fill
    mov $(PRD_PAGE - CANARY_LEN), %edi
    mov $CANARY_LEN, %ecx
    call canary_fill
    mov $(PRD_PAGE + 0x10000), %edi
    mov $CANARY_LEN, %ecx
    call canary_fill
    mov $(BUF + 0x10000), %edi
    mov $CANARY_LEN, %ecx
    call canary_fill
    xor %edi, %edi
    mov $LOW_CANARY_LEN, %ecx
    call canary_fill
    ret

/* %ecx = damaged qwords: canaries changed, ROM pages (the first and the
   last 4 KiB below 4 GiB, the ones the tests aim at) changed. */
mem_damage:
    xor %edx, %edx
    mov RAM_TOP, %rdi
    sub $CANARY_LEN, %rdi
    mov $CANARY_LEN, %ecx
    call canary_count
    mov $(PRD_PAGE - CANARY_LEN), %edi
    mov $CANARY_LEN, %ecx
    call canary_count
    mov $(PRD_PAGE + 0x10000), %edi
    mov $CANARY_LEN, %ecx
    call canary_count
    mov $(BUF + 0x10000), %edi
    mov $CANARY_LEN, %ecx
    call canary_count
    xor %edi, %edi
    mov $LOW_CANARY_LEN, %ecx
    call canary_count
    mov $0xFFFF0000, %esi
    mov $IMAGE_BASE, %edi
    call rom_count
    mov $0xFFFFF000, %esi
    mov $(IMAGE_BASE + 0xF000), %edi
    call rom_count
    mov %edx, %ecx
    ret

clear_buf:
    mov $BUF, %edi
    mov $(0x10000 / 8), %ecx
    xor %eax, %eax
    rep stosq
    ret

/* ---------------------------------------------------------------------- */
/* Descriptor tables. */

/* One region at %eax of %edx bytes (0 = 64 KiB) with EOT, at PRD_SHORT;
   %esi = the table. */
prd_one:
    mov $PRD_SHORT, %edi
    mov %eax, (%rdi)
    or $0x80000000, %edx
    mov %edx, 4(%rdi)
    mov $PRD_SHORT, %esi
    ret

/* 8192 descriptors filling the page at PRD_PAGE, none with EOT: region i
   at %eax + i * %r10d, %edx bytes each. %esi = the table. */
prd_page:
    mov $PRD_PAGE, %edi
    mov $8192, %ecx
1:  mov %eax, (%rdi)
    mov %edx, 4(%rdi)
    add %r10d, %eax
    add $8, %rdi
    dec %ecx
    jnz 1b
    mov $PRD_PAGE, %esi
    ret

/* ---------------------------------------------------------------------- */
/* Bus master of the channel at %r9. */

/* Stop, and clear ERROR and INTERRUPT (the DMA-capable bits kept). */
bm_stop:
    xor %al, %al
    BM_OUT BMICX
    BM_IN BMISX
    or $(BMIS_ERROR | BMIS_INTR), %al
    BM_OUT BMISX
    ret

/* Stop, clear, and point BMIDTP at the table at %esi. */
bm_arm:
    call bm_stop
    mov %esi, %eax
    lea BMIDTP(%r9), %edx
    out %eax, %dx
    ret

/* START, direction device to memory. */
bm_go:
    mov $BM_GO, %al
    BM_OUT BMICX
    ret

/* %eax = BMISX. */
bm_status:
    BM_IN BMISX
    movzbl %al, %eax
    ret

/* Wait for the end of a transfer: INTERRUPT or ERROR set, or ACTIVE clear.
   %eax = BMISX, with bit 8 set when it did not end within POLL_LIMIT reads. */
bm_wait:
    push %rcx
    mov $POLL_LIMIT, %ecx
1:  call bm_status
    test $(BMIS_INTR | BMIS_ERROR), %al
    jnz 2f
    test $BMIS_ACTIVE, %al
    jz 2f
    dec %ecx
    jnz 1b
    or $0x100, %eax
2:  pop %rcx
    ret

/* ---------------------------------------------------------------------- */
/* The drive on the channel at %r8. */

/* Wait until BSY clears (bounded); %eax = Alternate Status. */
wait_ready:
    push %rcx
    mov $POLL_LIMIT, %ecx
1:  CH_IN R_ALTSTATUS
    test $ST_BSY, %al
    jz 2f
    dec %ecx
    jnz 1b
2:  movzbl %al, %eax
    pop %rcx
    ret

/* Wait until DRQ is set with BSY clear (bounded). */
wait_drq:
    push %rcx
    mov $POLL_LIMIT, %ecx
1:  CH_IN R_ALTSTATUS
    and $(ST_BSY | ST_DRQ), %al
    cmp $ST_DRQ, %al
    je 2f
    dec %ecx
    jnz 1b
2:  pop %rcx
    ret

/* %eax = Status once BSY is clear (the read acknowledges the interrupt). */
drive_status:
    call wait_ready
    CH_IN R_STATUS
    movzbl %al, %eax
    ret

/* After a bus-master error a driver stops the engine and resets the
   drives: Device Control SRST set, then cleared (ATA8-APT 9.2), nIEN
   clear; then wait for BSY to clear. */
ide_reset:
    call bm_stop
    mov $0x04, %al
    CH_OUT R_ALTSTATUS
    mov $100, %ecx
1:  CH_IN R_ALTSTATUS
    dec %ecx
    jnz 1b
    xor %al, %al
    CH_OUT R_ALTSTATUS
    call wait_ready
    CH_IN R_STATUS
    ret

/* READ DMA (C8h), device 0: LBA %ebx (28-bit), %ecx sectors (256 as 0). */
ata_read_dma:
    mov %ebx, %eax
    shr $24, %eax
    and $0x0F, %al
    or $0xE0, %al
    CH_OUT R_DEVICE
    call wait_ready
    mov %cl, %al
    CH_OUT R_COUNT
    mov %bl, %al
    CH_OUT R_LBA_LOW
    mov %bh, %al
    CH_OUT R_LBA_MID
    mov %ebx, %eax
    shr $16, %eax
    CH_OUT R_LBA_HIGH
    mov $0xC8, %al
    CH_OUT R_STATUS
    ret

/* READ DMA EXT (25h), device 0: LBA %ebx, %ecx sectors (1-65535). The
   high bytes go first (ATA8-APT 6.2.2, HOB). */
ata_read_dma_ext:
    mov $0x40, %al
    CH_OUT R_DEVICE
    call wait_ready
    mov %ch, %al
    CH_OUT R_COUNT
    mov %ebx, %eax
    shr $24, %eax
    CH_OUT R_LBA_LOW
    xor %al, %al
    CH_OUT R_LBA_MID
    CH_OUT R_LBA_HIGH
    mov %cl, %al
    CH_OUT R_COUNT
    mov %bl, %al
    CH_OUT R_LBA_LOW
    mov %bh, %al
    CH_OUT R_LBA_MID
    mov %ebx, %eax
    shr $16, %eax
    CH_OUT R_LBA_HIGH
    mov $0x25, %al
    CH_OUT R_STATUS
    ret

/* PACKET (A0h) with the DMA feature bit, device 0; sends the 12 bytes at
   CDB once the drive asks for them. */
atapi_packet:
    mov $0xA0, %al
    CH_OUT R_DEVICE
    call wait_ready
    mov $1, %al
    CH_OUT R_FEATURES
    xor %al, %al
    CH_OUT R_LBA_MID
    mov $0x80, %al
    CH_OUT R_LBA_HIGH
    mov $0xA0, %al
    CH_OUT R_STATUS
    call wait_drq
    mov $CDB, %esi
    mov $6, %ecx
1:  mov (%rsi), %ax
    mov %r8d, %edx
    out %ax, %dx
    add $2, %rsi
    dec %ecx
    jnz 1b
    ret

/* CDB = READ(12) (A8h) of %ecx blocks from LBA %ebx (MMC-6; big-endian). */
cdb_read12:
    movq $0, CDB
    movl $0, (CDB + 8)
    movb $0xA8, CDB
    mov %ebx, %eax
    bswap %eax
    mov %eax, (CDB + 2)
    mov %ecx, %eax
    bswap %eax
    mov %eax, (CDB + 6)
    ret

/* CDB = a command with no parameters: TEST UNIT READY (00h) or READ
   CAPACITY (25h) in %al. */
cdb_plain:
    movq $0, CDB
    movl $0, (CDB + 8)
    mov %al, CDB
    ret

/* ---------------------------------------------------------------------- */
/* Disk: READ DMA of sector 0 into BUF through one region with EOT.
   %r12d = its last word, %r13d = BMISX, %r14d = Status. */
ata_sector0:
    call clear_buf
    mov $BUF, %eax
    mov $512, %edx
    call prd_one
    call bm_arm
    xor %ebx, %ebx
    mov $1, %ecx
    call ata_read_dma
    call bm_go
    call bm_wait
    mov %eax, %r13d
    call drive_status
    mov %eax, %r14d
    call bm_stop
    movzwl (BUF + 510), %r12d
    ret

/* The result of a good read (ata_sector0 or cd_block0). */
.macro CHECK_GOOD_READ prefix
    mov %r12d, %ecx
    CHECK_EQ "\prefix-boot-signature", 0xAA55
    mov %r13d, %ecx
    and $0x107, %ecx
    CHECK_EQ "\prefix-bmisx-interrupt-only", BMIS_INTR
    mov %r14d, %ecx
    and $ST_MASK, %ecx
    CHECK_EQ "\prefix-status-drdy", ST_DRDY
.endm

/* READ DMA of 8 sectors through one region at %eax of %edx bytes (or,
   entering at ata_bad_table, through the table at %esi); %r13d = BMISX at
   the end. Then the channel is reset. */
ata_bad_region:
    call prd_one
ata_bad_table:
    call bm_arm
    xor %ebx, %ebx
    mov $8, %ecx
    call ata_read_dma
    call bm_go
    call bm_wait
    mov %eax, %r13d
    call ide_reset
    ret

.macro CHECK_BM_ERROR name
    mov %r13d, %ecx
    and $(0x100 | BMIS_ERROR | BMIS_ACTIVE), %ecx
    CHECK_EQ "\name", BMIS_ERROR
.endm

/* The checks of a whole-image read into the 64 KiB buffer (%r13d = BMISX,
   %r14d = Status): a table larger than the transfer leaves ACTIVE set with
   INTERRUPT (SFF-8038i); the buffer holds the last 128 sectors. */
.macro CHECK_WHOLE_READ prefix
    mov %r13d, %ecx
    and $0x107, %ecx
    CHECK_EQ "\prefix-bmisx-active-interrupt", (BMIS_ACTIVE | BMIS_INTR)
    mov %r14d, %ecx
    and $ST_MASK, %ecx
    CHECK_EQ "\prefix-status-drdy", ST_DRDY
    mov BUF, %ecx
    CHECK_EQ "\prefix-buffer-starts-with-lba-16256", (DISK_SECTORS - 128)
    mov (BUF + 0xFE00), %ecx
    CHECK_EQ "\prefix-buffer-ends-with-lba-16383", (DISK_SECTORS - 1)
    CHECK_INTACT "\prefix-ram-intact"
.endm

disk_tests:
    PRINTLN "hostile-dma: disk (primary master)"
    call wait_ready
    call ata_sector0
    CHECK_GOOD_READ "disk-sector0-before"

    PRINTLN "hostile-dma: disk: regions and tables outside RAM"
    mov RAM_TOP, %eax
    mov $0x1000, %edx
    call ata_bad_region
    CHECK_BM_ERROR "disk-region-at-ram-top-bmisx-error"
    CHECK_INTACT "disk-region-at-ram-top-ram-intact"
    mov $0x80000000, %eax
    mov $0x1000, %edx
    call ata_bad_region
    CHECK_BM_ERROR "disk-region-in-pci-hole-bmisx-error"
    CHECK_INTACT "disk-region-in-pci-hole-ram-intact"
    mov $0xFFFF0000, %eax
    mov $0x1000, %edx
    call ata_bad_region
    CHECK_INTACT "disk-region-in-rom-rom-and-ram-intact"
    mov $0xFFFFF000, %eax
    mov $0x2000, %edx
    call ata_bad_region
    CHECK_INTACT "disk-region-across-4gib-rom-and-ram-intact"
    mov RAM_TOP, %esi
    call ata_bad_table
    CHECK_BM_ERROR "disk-table-at-ram-top-bmisx-error"
    CHECK_INTACT "disk-table-at-ram-top-ram-intact"
    mov $0xD0000000, %esi
    call ata_bad_table
    CHECK_BM_ERROR "disk-table-in-pci-hole-bmisx-error"
    CHECK_INTACT "disk-table-in-pci-hole-ram-intact"

    PRINTLN "hostile-dma: disk: READ DMA EXT of all 16384 sectors, 8192 x 64 KiB regions on one buffer, no EOT"
    call clear_buf
    mov $BUF, %eax
    xor %edx, %edx
    xor %r10d, %r10d
    call prd_page
    call bm_arm
    xor %ebx, %ebx
    mov $DISK_SECTORS, %ecx
    call ata_read_dma_ext
    call bm_go
    call bm_wait
    mov %eax, %r13d
    call drive_status
    mov %eax, %r14d
    call bm_stop
    CHECK_WHOLE_READ "disk-whole-disk"

    PRINTLN "hostile-dma: disk: READ DMA of 32 sectors through 8192 two-byte regions, no EOT"
    call clear_buf
    mov $BUF, %eax
    mov $2, %edx
    mov $2, %r10d
    call prd_page
    call bm_arm
    xor %ebx, %ebx
    mov $32, %ecx
    call ata_read_dma
    call bm_go
    call bm_wait
    mov %eax, %r13d
    call drive_status
    mov %eax, %r14d
    call bm_stop
    mov %r13d, %ecx
    and $0x107, %ecx
    CHECK_EQ "disk-two-byte-regions-bmisx-active-interrupt", (BMIS_ACTIVE | BMIS_INTR)
    mov %r14d, %ecx
    and $ST_MASK, %ecx
    CHECK_EQ "disk-two-byte-regions-status-drdy", ST_DRDY
    movzwl (BUF + 510), %ecx
    CHECK_EQ "disk-two-byte-regions-sector0-signature", 0xAA55
    mov (BUF + 31 * 512), %ecx
    CHECK_EQ "disk-two-byte-regions-sector31-in-place", 31
    CHECK_INTACT "disk-two-byte-regions-ram-intact"

    PRINTLN "hostile-dma: disk: 2048 sectors through the same table, which they outrun (undefined on hardware: only survived)"
    mov $PRD_PAGE, %esi
    call bm_arm
    xor %ebx, %ebx
    mov $2048, %ecx
    call ata_read_dma_ext
    call bm_go
    call bm_wait
    PUTS "hostile-dma: it ended with BMISX "
    call puthex_lm
    PRINTLN ""
    call ide_reset

    call ata_sector0
    CHECK_GOOD_READ "disk-sector0-after"
    ret

/* ---------------------------------------------------------------------- */
/* CD: TEST UNIT READY (takes any unit attention), then READ(12) of block
   0 into BUF through one region with EOT. %r12d = word 255 of it, %r13d =
   BMISX, %r14d = Status, %r15d = interrupt reason. */
cd_block0:
    call cd_test_unit_ready
    call clear_buf
    mov $BUF, %eax
    mov $2048, %edx
    call prd_one
    call bm_arm
    xor %ebx, %ebx
    mov $1, %ecx
    call cdb_read12
    call atapi_packet
    call bm_go
    call bm_wait
    mov %eax, %r13d
    call drive_status
    mov %eax, %r14d
    CH_IN R_COUNT
    movzbl %al, %r15d
    call bm_stop
    movzwl (BUF + 510), %r12d
    ret

cd_test_unit_ready:
    call bm_stop
    xor %al, %al
    call cdb_plain
    call atapi_packet
    call drive_status
    ret

/* TEST UNIT READY, then READ(12) of 16 blocks through one region at %eax
   of %edx bytes; %r13d = BMISX at the end. Then the channel is reset. */
cd_bad_region:
    push %rax
    push %rdx
    call cd_test_unit_ready
    pop %rdx
    pop %rax
    call prd_one
    call bm_arm
    xor %ebx, %ebx
    mov $16, %ecx
    call cdb_read12
    call atapi_packet
    call bm_go
    call bm_wait
    mov %eax, %r13d
    call ide_reset
    ret

cd_tests:
    PRINTLN "hostile-dma: CD (secondary master)"
    call wait_ready
    call cd_test_unit_ready
    call clear_buf
    mov $BUF, %eax
    mov $8, %edx
    call prd_one
    call bm_arm
    mov $0x25, %al
    call cdb_plain
    call atapi_packet
    call bm_go
    call bm_wait
    call drive_status
    call bm_stop
    mov BUF, %ecx
    bswap %ecx
    CHECK_EQ "cd-read-capacity-last-lba", (CD_BLOCKS - 1)

    call cd_block0
    CHECK_GOOD_READ "cd-block0-before"
    mov %r15d, %ecx
    CHECK_EQ "cd-block0-before-reason-io-cod", 3

    PRINTLN "hostile-dma: CD: regions outside RAM"
    mov RAM_TOP, %eax
    mov $0x1000, %edx
    call cd_bad_region
    CHECK_BM_ERROR "cd-region-at-ram-top-bmisx-error"
    CHECK_INTACT "cd-region-at-ram-top-ram-intact"
    mov $0x80000000, %eax
    mov $0x8000, %edx
    call cd_bad_region
    CHECK_BM_ERROR "cd-region-in-pci-hole-bmisx-error"
    CHECK_INTACT "cd-region-in-pci-hole-ram-intact"
    mov $0xFFFF0000, %eax
    mov $0x1000, %edx
    call cd_bad_region
    CHECK_INTACT "cd-region-in-rom-rom-and-ram-intact"

    PRINTLN "hostile-dma: CD: READ(12) of all 4096 blocks, 8192 x 64 KiB regions on one buffer, no EOT"
    call cd_test_unit_ready
    call clear_buf
    mov $BUF, %eax
    xor %edx, %edx
    xor %r10d, %r10d
    call prd_page
    call bm_arm
    xor %ebx, %ebx
    mov $CD_BLOCKS, %ecx
    call cdb_read12
    call atapi_packet
    call bm_go
    call bm_wait
    mov %eax, %r13d
    call drive_status
    mov %eax, %r14d
    call bm_stop
    CHECK_WHOLE_READ "cd-whole-disc"

    call cd_block0
    CHECK_GOOD_READ "cd-block0-after"
    ret

/* ---------------------------------------------------------------------- */
/* fw_cfg DMA. */

/* Start the descriptor at %rax: its address, big-endian, high dword to
   0x514, then low dword to 0x518. Clobbers %rbx, %rcx, %rdx. */
fw_dma_start:
    mov %rax, %rcx
    shr $32, %rcx
    bswap %ecx
    mov %eax, %ebx
    mov %ecx, %eax
    mov $FW_DMA_HIGH, %dx
    out %eax, %dx
    mov %ebx, %eax
    bswap %eax
    mov $FW_DMA_LOW, %dx
    out %eax, %dx
    ret

/* Select RAM_SIZE and read %edx bytes of it to %rcx by DMA, the descriptor
   at FW_DESC; wait (bounded) until the device is done. %ecx = control. */
fw_dma_read:
    mov $FW_DESC, %edi
    mov $((FW_KEY_RAM_SIZE << 16) | FW_CTL_SELECT | FW_CTL_READ), %eax
    bswap %eax
    mov %eax, (%rdi)
    bswap %edx
    mov %edx, 4(%rdi)
    bswap %rcx
    mov %rcx, 8(%rdi)
    mov $FW_DESC, %eax
    call fw_dma_start
    mov $100000, %edx
1:  mov FW_DESC, %ecx
    bswap %ecx
    test $~FW_CTL_ERROR, %ecx
    jz 2f
    dec %edx
    jnz 1b
2:  ret

fw_select:
    mov $FW_SELECTOR, %dx
    out %ax, %dx
    ret

/* %eax = the next byte of the selected item. */
fw_byte:
    mov $FW_DATA, %dx
    in %dx, %al
    movzbl %al, %eax
    ret

fw_cfg_tests:
    PRINTLN "hostile-dma: fw_cfg DMA"
    mov $FW_KEY_ID, %ax
    call fw_select
    call fw_byte
    and $0x02, %eax
    mov %eax, %ecx
    CHECK_EQ "fw-cfg-id-has-dma-interface", 0x02

    mov RAM_TOP, %rcx
    mov $8, %edx
    call fw_dma_read
    and $FW_CTL_ERROR, %ecx
    CHECK_EQ "fw-cfg-dma-to-ram-top-error", FW_CTL_ERROR
    movabs $0x100000000, %rcx
    mov $8, %edx
    call fw_dma_read
    and $FW_CTL_ERROR, %ecx
    CHECK_EQ "fw-cfg-dma-to-4gib-error", FW_CTL_ERROR
    movabs $0xFFFFFFFFFFFFFFF8, %rcx
    mov $16, %edx
    call fw_dma_read
    and $FW_CTL_ERROR, %ecx
    CHECK_EQ "fw-cfg-dma-across-end-of-address-space-error", FW_CTL_ERROR
    mov RAM_TOP, %rcx
    sub $4, %rcx
    mov $8, %edx
    call fw_dma_read
    and $FW_CTL_ERROR, %ecx
    CHECK_EQ "fw-cfg-dma-across-ram-top-error", FW_CTL_ERROR
    call arm_canaries               /* RAM below the top may hold 4 bytes */
    mov $0xFFFF0000, %ecx
    mov $0x1000, %edx
    call fw_dma_read
    CHECK_INTACT "fw-cfg-dma-targets-rom-and-ram-intact"

    /* Descriptors outside RAM: the device cannot read them, so nothing
       happens, not even their SELECT: the data port goes on where it was. */
    mov $FW_KEY_SIGNATURE, %ax
    call fw_select
    call fw_byte                    /* 'Q' */
    mov RAM_TOP, %rax
    call fw_dma_start
    movabs $0x100000000, %rax
    call fw_dma_start
    movabs $0xFFFFFFFFFFFFFFF8, %rax
    call fw_dma_start
    call fw_byte
    mov %eax, %ecx
    CHECK_EQ "fw-cfg-descriptors-outside-ram-change-nothing", 'E'
    CHECK_INTACT "fw-cfg-descriptors-outside-ram-ram-intact"

    /* A descriptor whose control and length are the last 8 bytes of RAM:
       unreadable as a whole, so its control gets the error bit. */
    mov RAM_TOP, %rdi
    sub $8, %rdi
    mov $((FW_KEY_RAM_SIZE << 16) | FW_CTL_SELECT | FW_CTL_READ), %eax
    bswap %eax
    mov %eax, (%rdi)
    mov $8, %eax
    bswap %eax
    mov %eax, 4(%rdi)
    mov %rdi, %rax
    call fw_dma_start
    mov (%rdi), %ecx
    bswap %ecx
    and $FW_CTL_ERROR, %ecx
    CHECK_EQ "fw-cfg-descriptor-across-ram-top-error", FW_CTL_ERROR
    call fw_byte
    mov %eax, %ecx
    CHECK_EQ "fw-cfg-descriptor-across-ram-top-keeps-selection", 'M'
    call arm_canaries

    /* Still works. */
    movq $0, FW_BUF
    mov $FW_BUF, %ecx
    mov $8, %edx
    call fw_dma_read
    CHECK_EQ "fw-cfg-dma-after-errors-control-zero", 0
    mov FW_BUF, %rax
    xor %ecx, %ecx
    cmp RAM_TOP, %rax
    sete %cl
    CHECK_EQ "fw-cfg-dma-after-errors-reads-ram-size", 1
    ret
"#,
    options(att_syntax)
);
