//! Hostile guest, port and MMIO storms over every device of the PC
//! (`device-model/src/pc/mod.rs`), then checks that the devices still work.
//!
//! 1. Port storm: pseudo-random IN/OUT of 8/16/32 bits with random values on
//!    the registers of the 8259As and ELCR, PIT and port 0x61, i8042 and port
//!    0x92, RTC/CMOS, COM1 (not THR), PCI configuration (random registers of
//!    00:00.0, 00:01.x), IDE (no drive), fw_cfg selector/data and unclaimed
//!    ports. Left out: what ends the run by design (debug-exit 0xF4, reset
//!    control 0xCF9, i8042 pulse/output-port commands, port 0x92 bit 0) and
//!    fw_cfg DMA (hostile-dma's concern). Writes are bytes except where a
//!    wider one stays inside one device (a word at 0xCF8 would reach 0xCF9).
//! 2. i8042 0xD2 flood: 16384 times "write to output buffer" without reading.
//!    The 8042 has a one-byte output buffer; afterwards the self-test command
//!    0xAA must be answered with 0x55 within a few reads (Keel finding #1:
//!    the reply queue grew without bound until the heap was gone).
//! 3. PMBA at 0x40 with PM I/O on, then moved to 0x600: the PIT at 0x40 must
//!    still count (finding #7: the clean-up took the PIT off the bus).
//! 4. MMIO storm: random reads and writes of 1/2/4/8 bytes on the IOAPIC,
//!    HPET, local APIC (not the ICR; LVTs kept masked), Keel's test device
//!    (`keel_testdev = 1`) and unclaimed MMIO; interrupts off, IOAPIC entries
//!    kept masked and HPET FSB delivery off, so the storm raises no events.
//! 5. Sanity: the PIT counts, the RTC answers (register D has VRT), COM1's
//!    scratch register and this output still work.

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
.set RNG,            0x600
.set STORM_OPS,      6000
.set FLOOD_PAIRS,    16384      /* far past any bounded queue; seconds under TCG */
.set SELFTEST_READS, 32

.set PCI_ADDR,       0xCF8
.set PCI_DATA,       0xCFC
.set PIIX4_PM_CFG,   0x80000B00 /* 00:01.3 */

/* %eax = next xorshift32 value. Clobbers %edx. */
.macro RAND
    mov RNG, %eax
    mov %eax, %edx
    shl $13, %edx
    xor %edx, %eax
    mov %eax, %edx
    shr $17, %edx
    xor %edx, %eax
    mov %eax, %edx
    shl $5, %edx
    xor %edx, %eax
    mov %eax, RNG
.endm

    .pushsection .rodata.storm_ports, "a"
    .balign 2
storm_ports:
    .word 0x20, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1          /* 8259A pair, ELCR */
    .word 0x40, 0x41, 0x42, 0x43, 0x61                  /* PIT, port 0x61 */
    .word 0x60, 0x64, 0x92                              /* i8042, port 0x92 */
    .word 0x70, 0x71                                    /* RTC/CMOS */
    .word 0x3F9, 0x3FA, 0x3FB, 0x3FC, 0x3FD, 0x3FE, 0x3FF /* COM1 but THR */
    .word 0xCF8, 0xCFC, 0xCFD, 0xCFE, 0xCFF, 0xCFA      /* PCI config */
    .word 0x1F0, 0x1F1, 0x1F2, 0x1F3, 0x1F4, 0x1F5, 0x1F6, 0x1F7, 0x3F6
    .word 0x170, 0x171, 0x172, 0x173, 0x174, 0x175, 0x176, 0x177, 0x376
    .word 0x510, 0x511                                  /* fw_cfg selector, data */
    .word 0x2F0, 0x80, 0x600, 0x608, 0xC000             /* unclaimed (no PMBA yet) */
storm_ports_end:
    .popsection
.set STORM_PORT_COUNT, (storm_ports_end - storm_ports) / 2

    .pushsection .rodata.storm_mmio, "a"
    .balign 8
storm_mmio:                     /* base, length (power of two) */
    .quad 0xFEC00000, 0x20      /* IOAPIC index and window */
    .quad 0xFED00000, 0x400     /* HPET */
    .quad 0xFEE00000, 0x400     /* local APIC */
    .quad 0xFEB00000, 0x1000    /* Keel's test device */
    .quad 0xFEBF0000, 0x1000    /* unclaimed */
    .quad 0xD0000000, 0x1000    /* unclaimed, PCI hole */
storm_mmio_end:
    .popsection

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
    PRINTLN "hostile-io: long mode, interrupts off"
    movl $0x6C8E9CF5, RNG
    /* NMIs the storm might raise are counted, not fatal: gate 2 -> nmi_stub. */
    mov $nmi_stub, %eax
    mov %ax, (IDT64 + 2 * 16)
    shr $16, %eax
    mov %ax, (IDT64 + 2 * 16 + 6)

    call port_storm
    call uart_reinit
    PRINTLN "hostile-io: port storm done"
    call i8042_flood
    call pmba_over_pit
    call mmio_storm
    PRINTLN "hostile-io: MMIO storm done"
    call sanity
    jmp finish

nmi_stub:
    iretq

/* ---------------------------------------------------------------------- */
port_storm:
    mov $STORM_OPS, %r12d
1:  RAND
    mov %eax, %r13d                 /* value */
    RAND
    mov %eax, %r14d                 /* selector bits */
    xor %edx, %edx
    mov $STORM_PORT_COUNT, %ecx
    div %ecx
    movzwl storm_ports(, %rdx, 2), %edx
    mov %r13d, %eax
    /* Keep away from what ends the run by design. */
    cmp $0x64, %dx                  /* i8042: no 0xD1 (output port), no 0xF0-0xFF (pulse) */
    jne 2f
    cmp $0xD1, %al
    je 9f
    cmp $0xF0, %al
    jae 9f
2:  cmp $0x92, %dx                  /* port 0x92: no fast reset, A20 stays on */
    jne 3f
    and $0xFE, %al
    or $0x02, %al
3:  cmp $0xCF8, %dx                 /* PCI address: bus 0, devices 0 and 1 only */
    jne 4f
    and $0x0001FFFC, %eax
    or $0x80000000, %eax
    /* Never the PIIX3's PAM/SMRAM or the PM block's registers beyond the
       ones a storm may touch freely: the storm picks the register, the
       values go through 0xCFC..0xCFF. */
4:  bt $0, %r14d                    /* even: write, odd: read */
    jc 6f
    /* Writes wider than a byte only where they stay inside one device:
       the PCI address (32-bit), the data window, the IDE data ports; a
       word at 0xCF8 would reach the reset control at 0xCF9. */
    cmp $0xCF8, %dx
    je 55f
    cmp $0xCFC, %dx
    je 45f
    cmp $0x1F0, %dx
    je 45f
    cmp $0x170, %dx
    je 45f
    out %al, %dx
    jmp 9f
45: bt $1, %r14d
    jc 5f
    out %al, %dx
    jmp 9f
5:  bt $2, %r14d
    jc 55f
    out %ax, %dx
    jmp 9f
55: out %eax, %dx
    jmp 9f
6:  bt $1, %r14d
    jc 7f
    in %dx, %al
    jmp 9f
7:  in %dx, %eax
9:  dec %r12d
    jnz 1b
    /* Undo what would disturb the rest: PM I/O and IDE decoding off. */
    mov $PCI_ADDR, %dx
    mov $(PIIX4_PM_CFG | 0x80), %eax
    out %eax, %dx
    mov $PCI_DATA, %dx
    xor %eax, %eax
    out %eax, %dx
    ret

/* COM1 as reset.rs leaves it (the storm wrote LCR, IER, FCR, MCR). */
uart_reinit:
    mov $COM1_LCR, %dx
    mov $0x80, %al
    out %al, %dx
    mov $COM1, %dx
    mov $0x01, %al
    out %al, %dx
    mov $COM1_IER, %dx
    xor %al, %al
    out %al, %dx
    mov $COM1_LCR, %dx
    mov $0x03, %al
    out %al, %dx
    mov $COM1_FCR, %dx
    mov $0x07, %al
    out %al, %dx
    mov $COM1_MCR, %dx
    mov $0x03, %al
    out %al, %dx
    ret

/* ---------------------------------------------------------------------- */
/* Wait until the i8042 input buffer is empty (status bit 1). */
kbc_wait_write:
    push %rcx
    mov $100000, %ecx
1:  in $0x64, %al
    test $0x02, %al
    jz 2f
    dec %ecx
    jnz 1b
2:  pop %rcx
    ret

i8042_flood:
    /* Drain whatever the storm left: at most 64 bytes (bounded here). */
    mov $64, %ecx
1:  in $0x64, %al
    test $0x01, %al
    jz 2f
    in $0x60, %al
    dec %ecx
    jnz 1b
2:  mov $FLOOD_PAIRS, %r12d
3:  mov $0xD2, %al                  /* write keyboard output buffer */
    out %al, $0x64
    mov %r12b, %al
    out %al, $0x60
    dec %r12d
    jnz 3b
    PRINTLN "hostile-io: 16384 x 0xD2 sent, none read"
    call kbc_wait_write
    mov $0xAA, %al                  /* controller self-test */
    out %al, $0x64
    /* got = reads it took to see 0x55 (OBF set), 0xffffffff if none. */
    mov $0xFFFFFFFF, %r13d
    xor %r12d, %r12d
4:  in $0x64, %al
    test $0x01, %al
    jz 5f
    inc %r12d
    in $0x60, %al
    cmp $0x55, %al
    jne 6f
    mov %r12d, %r13d
    jmp 7f
5:  pause
6:  cmp $SELFTEST_READS, %r12d
    jb 4b
7:  mov %r13d, %ecx
    inc %ecx                        /* reads + 1; 0 = not within 32 reads */
    CHECK_GE "i8042-selftest-after-d2-flood-within-32-reads", 2
    /* And the controller is not backed up: the next command gets its own
       reply (read command byte 0x20: one byte, OBF set). */
    call kbc_wait_write
    mov $0x20, %al
    out %al, $0x64
    mov $1000, %ecx
8:  in $0x64, %al
    test $0x01, %al
    jnz 81f
    dec %ecx
    jnz 8b
81: in $0x60, %al
    in $0x64, %al
    and $0x01, %eax                 /* OBF after the one reply: must be clear */
    mov %eax, %ecx
    CHECK_EQ "i8042-one-reply-per-command", 0
    ret

/* ---------------------------------------------------------------------- */
/* PMBA (00:01.3 reg 0x40) = 0x40 with PMIOSE (reg 0x80 bit 0) on, then
   PMBA = 0x600: the PIT must count afterwards. */
pmba_over_pit:
    mov $0x40, %esi
    call set_pmba
    mov $PCI_ADDR, %dx
    mov $(PIIX4_PM_CFG | 0x80), %eax
    out %eax, %dx
    mov $PCI_DATA, %dx
    mov $1, %al
    out %al, %dx
    mov $0x600, %esi
    call set_pmba
    call pit_counts
    CHECK_EQ "pit-counts-after-pmba-visited-0x40", 1
    /* The PM timer answers at its new place. */
    mov $0x608, %dx
    in %dx, %eax
    mov %eax, %r12d
    mov $2000, %ecx
1:  in $0x61, %al
    dec %ecx
    jnz 1b
    mov $0x608, %dx
    in %dx, %eax
    xor %ecx, %ecx
    cmp %eax, %r12d
    setne %cl
    CHECK_EQ "pm-timer-runs-at-0x608", 1
    ret

set_pmba:
    mov $PCI_ADDR, %dx
    mov $(PIIX4_PM_CFG | 0x40), %eax
    out %eax, %dx
    mov $PCI_DATA, %dx
    mov %esi, %eax
    or $1, %eax
    out %eax, %dx
    ret

/* %ecx = 1 if PIT channel 0 (mode 2, count 65536) counts: two latched reads
   with 2000 port reads between them differ; else 0. */
pit_counts:
    mov $0x34, %al
    out %al, $0x43
    xor %al, %al
    out %al, $0x40
    out %al, $0x40
    xor %al, %al                    /* latch channel 0 */
    out %al, $0x43
    in $0x40, %al
    mov %al, %bl
    in $0x40, %al
    mov %al, %bh
    mov $2000, %ecx
1:  in $0x61, %al
    dec %ecx
    jnz 1b
    xor %al, %al
    out %al, $0x43
    in $0x40, %al
    mov %al, %cl
    in $0x40, %al
    mov %al, %ch
    /* Counting means the two latched values differ; a port nothing
       decodes reads FFFFh both times. One read of FFFFh alone is a count
       a tick after the load: with Keel's timer reads costing the guest a
       microsecond (crates/keel/src/apparent_time.rs), as on hardware. */
    cmp %bx, %cx
    je 2f
    mov $1, %ecx
    ret
2:  xor %ecx, %ecx
    ret

/* ---------------------------------------------------------------------- */
mmio_storm:
    mov $STORM_OPS, %r12d
1:  RAND
    mov %eax, %r13d                 /* value, low */
    RAND
    mov %eax, %r14d                 /* selector */
    RAND
    mov %eax, %r15d                 /* offset */
    mov %r14d, %eax
    xor %edx, %edx
    mov $((storm_mmio_end - storm_mmio) / 16), %ecx
    div %ecx
    shl $4, %edx
    mov storm_mmio(%rdx), %rdi      /* base */
    mov (storm_mmio + 8)(%rdx), %rcx
    dec %rcx
    and %rcx, %r15                  /* offset within the region */
    /* Local APIC: no ICR (0x300, 0x310), LVTs (0x320-0x370) stay masked. */
    cmp $0xFEE00000, %edi
    jne 2f
    and $~0xF, %r15d
    mov %r15d, %eax
    and $0x3E0, %eax
    cmp $0x300, %eax
    je 9f
    cmp $0x320, %r15d
    jb 3f
    cmp $0x370, %r15d
    ja 3f
    bts $16, %r13d
    jmp 3f
2:  cmp $0xFEC00000, %edi           /* IOAPIC: redirection entries masked */
    jne 25f
    and $~0xF, %r15d
    bts $16, %r13d
    bts $5, %r14d                   /* whole dwords, so the mask bit lands */
    btr $6, %r14d
    jmp 3f
25: cmp $0xFED00000, %edi           /* HPET: no FSB delivery */
    jne 3f
    and $~7, %r15d
    btr $14, %r13d
    bts $5, %r14d                   /* 4 or 8 bytes, so bit 14 stays clear */
3:  add %r15, %rdi
    mov %r13d, %eax
    bt $0, %r14d
    jc 6f
    /* write of 1, 2, 4 or 8 bytes */
    bt $5, %r14d
    jc 4f
    bt $6, %r14d
    jc 35f
    mov %al, (%rdi)
    jmp 9f
35: mov %ax, (%rdi)
    jmp 9f
4:  bt $6, %r14d
    jc 45f
    mov %eax, (%rdi)
    jmp 9f
45: mov %r13, %rax
    shl $32, %rax
    or %r13, %rax
    mov %rax, (%rdi)
    jmp 9f
6:  bt $5, %r14d
    jc 7f
    movzbl (%rdi), %eax
    jmp 9f
7:  mov (%rdi), %rax
9:  dec %r12d
    jnz 1b
    /* Quiet again: HPET off, IOAPIC entries masked (they are), local APIC
       LVTs masked (they are). */
    mov $0xFED00010, %edi
    movl $0, (%rdi)
    ret

/* ---------------------------------------------------------------------- */
sanity:
    call pit_counts
    CHECK_EQ "pit-counts-after-storms", 1
    /* RTC register D: VRT (bit 7) set, the rest zero (MC146818A). */
    mov $0x0D, %al
    out %al, $0x70
    in $0x71, %al
    movzbl %al, %ecx
    CHECK_EQ "rtc-register-d-vrt", 0x80
    /* COM1 scratch register keeps a value. */
    mov $COM1_SCR, %dx
    mov $0x5A, %al
    out %al, %dx
    in %dx, %al
    movzbl %al, %ecx
    CHECK_EQ "com1-scratch-after-storms", 0x5A
    PRINTLN "hostile-io: COM1 still prints"
    ret
"#,
    options(att_syntax)
);
