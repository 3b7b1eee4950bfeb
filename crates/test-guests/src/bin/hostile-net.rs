//! Hostile guest, network: Keel's e1000 (82540EM, 8086:100E) driven with
//! rings and registers no driver would write, from long mode without
//! firmware. The VM has one `vif` on the machine's virtio-net NIC, which
//! the test harness puts on QEMU's restricted user network.
//!
//! The guest finds the NIC on bus 0, sizes and places BAR0 (128 KiB of
//! registers) and BAR1 (the 64-byte I/O window), enables I/O, memory and
//! bus mastering, and keeps every interrupt masked until the last step
//! (IF stays clear throughout: it polls). After each step it checks that
//! the VM is alive and the device answers sanely: STATUS has FD and LU,
//! RAL0 still holds the station address, configuration space still has
//! the IDs, and no byte changed outside the buffers (canaries below the top
//! of RAM, around the rings, the real-mode IVT; the firmware ROM at
//! 0xFFFF0000 still equals its copy at 0xF0000).
//!
//! Register behaviour from the 8254x SDM, section 13: TDLEN/RDLEN keep
//! bits 19:7 (13.4.28, 13.4.40), TDT/RDT bits 15:0, ITR/RDTR/RADV/TIDV/
//! TADV bits 15:0; CTRL.RST resets every register but PCI configuration,
//! reloads RAL0/RAH0 from the EEPROM and clears itself (13.4.1); the
//! statistics clear when read (13.7). Descriptor layouts from 3.2.3
//! (receive), 3.3.3 (legacy transmit), 3.3.6 (context), 3.3.7 (data).
//!
//! The steps:
//! - a transmit ring at the top of RAM and one ending at 2^64, TDT far
//!   ahead; TDT past the ring: TDH stays inside the ring, nothing is sent;
//! - the largest ring (TDLEN 0xFFF80: 65528 descriptors) with TDT = TDH - 1,
//!   every descriptor RS without EOP, a 64 MiB chain: TDH only moves
//!   forward while the guest reads it, TDT set to a TDH it read stops the
//!   walk there, the descriptors get DD, the chain (past the 16288-byte
//!   maximum, 3.3.3) ends with an EOP descriptor and is not sent;
//! - a TSO context whose header length is past the packet: nothing sent,
//!   TSCTFC counts it; checksum offsets past a plain packet: processed;
//! - a receive ring of length 0, of a length not a multiple of 128, head
//!   and tail beyond the ring, while an ARP reply arrives: nothing is
//!   written; made whole, the ring receives the reply that waited;
//! - receive buffers outside RAM (its top, the ROM, the PCI hole, the end
//!   of the 64-bit space) for four ARP replies: the descriptors are
//!   written back, no byte lands anywhere;
//! - IOADDR at offsets past the registers, IODATA and the reserved I/O
//!   offsets, byte accesses: then IODATA still reaches STATUS;
//! - CTRL.RST while the largest ring is being walked: the transmit ring
//!   registers read 0, the walk stops;
//! - ITR, RDTR, RADV, TIDV, TADV all-ones: 0xFFFF read back;
//! - last, with every cause unmasked: one good frame (an ARP request for
//!   10.0.2.2, QEMU's gateway) with RS: TDH reaches TDT, DD, ICR.TXDW, GPTC
//!   1; QEMU's ARP reply arrives in the first receive descriptor (at least
//!   the 64-byte minimum frame with the FCS), and RDTR.FPD gives RXT0.
//!
//! Frames only go out where the guest expects nothing back but ARP
//! replies: ARP requests are the only frames QEMU's user network answers
//! here, which makes each receive step deterministic; the frames of the
//! transmit steps use a local experimental EtherType (0x88B5) to an
//! address nobody has, and none of them is expected to go out anyway.

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
/* Variables (RAM, below the stack). */
.set RAM_TOP,        0x600      /* u64: guest RAM size from fw_cfg */
.set CFG,            0x608      /* u32: configuration address of the NIC */
.set MAC_LO,         0x60C      /* u32: RAL0 as read at start */
.set MAC_HI,         0x610      /* u32: RAH0 bits 15:0 */
.set LAST,           0x614      /* u32: scratch of the ring walk */
.set DISTINCT,       0x618
.set BACKWARDS,      0x61C
.set OUTSIDE,        0x620

/* Memory the tests use. */
.set TX_RING,        0x200000   /* 256 descriptors */
.set RX_RING,        0x201000   /* 8 descriptors */
.set FRAME_ARP,      0x202000
.set FRAME_JUNK,     0x202100
.set RX_BUFS,        0x210000   /* 8 x 2 KiB */
.set CHAIN_BUF,      0x220000
.set BIG_RING,       0x400000   /* 65528 descriptors, 1 MiB - 128 */
.set BIG_DESCS,      65528
.set CANARY_LEN,     0x10000
.set LOW_CANARY_LEN, 0x500

/* PCI. */
.set PCI_ADDR,       0xCF8
.set PCI_DATA,       0xCFC
.set ID_PAIR,        0x100E8086
.set CFG_COMMAND,    0x04
.set CFG_BAR0,       0x10
.set CFG_BAR1,       0x14
.set BAR0_AT,        0xFEA00000
.set IO_AT,          0xC000

/* BAR0 registers (8254x SDM table 13-2). */
.set CTRL,           0x0000
.set STATUS,         0x0008
.set ICR,            0x00C0
.set ITR,            0x00C4
.set IMS,            0x00D0
.set IMC,            0x00D8
.set RCTL,           0x0100
.set TCTL,           0x0400
.set RDBAL,          0x2800
.set RDBAH,          0x2804
.set RDLEN,          0x2808
.set RDH,            0x2810
.set RDT,            0x2818
.set RDTR,           0x2820
.set RADV,           0x282C
.set TDBAL,          0x3800
.set TDBAH,          0x3804
.set TDLEN,          0x3808
.set TDH,            0x3810
.set TDT,            0x3818
.set TIDV,           0x3820
.set TADV,           0x382C
.set GPTC,           0x4080
.set TSCTFC,         0x40FC
.set RAL0,           0x5400
.set RAH0,           0x5404

/* Bits. */
.set CTRL_RST,       0x04000000
.set ICR_TXDW,       0x01
.set ICR_RXT0,       0x80
.set RCTL_EN,        0x02
.set TCTL_ON,        0x000400FA /* EN, PSP, CT 0x0F, COLD 0x40 */
.set RDTR_FPD,       0x80000000
.set CMD_EOP,        0x01
.set CMD_IFCS,       0x02
.set CMD_RS,         0x08
.set STA_DD,         0x01
.set STA_EOP,        0x02

.set POLL,           2000000

/* %ecx = BAR0 register \off. */
.macro RD off
    mov \off(%r13), %ecx
.endm
/* BAR0 register \off = \val. */
.macro WR off, val
    movl $(\val), \off(%r13)
.endm
.macro CHECK_REG name, off, expected
    RD \off
    CHECK_EQ "\name", \expected
.endm
/* The VM runs and the device answers sanely. */
.macro ALIVE name
    call alive
    CHECK_EQ "\name-device-answers", 0x107
.endm
/* No canary changed, the ROM kept its bytes. */
.macro CHECK_INTACT name
    call mem_damage
    CHECK_EQ "\name-ram-and-rom-intact", 0
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
    PRINTLN "hostile-net: long mode, interrupts off"
    call read_ram_size
    mov RAM_TOP, %rcx
    CHECK_GE "fw-cfg-ram-size-at-least-16-mib", 0x1000000
    call nic_setup
    test %r13, %r13
    jz finish
    call arm_canaries
    call build_frames
    ALIVE "setup"

    call tx_outside_ram
    call tx_largest_ring
    call tx_offload_contexts
    call rx_bad_rings
    call rx_buffers_outside_ram
    call io_window
    call reset_mid_transfer
    call huge_timers
    call good_frame
    jmp finish

/* ---------------------------------------------------------------------- */
read_ram_size:
    mov $0x0003, %ax                /* fw_cfg RAM_SIZE, 8 bytes */
    mov $0x510, %dx
    out %ax, %dx
    mov $0x511, %dx
    xor %ecx, %ecx
1:  in %dx, %al
    mov %al, RAM_TOP(%rcx)
    inc %ecx
    cmp $8, %ecx
    jb 1b
    ret

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

/* Finds the NIC (bus 0, devices 0-31), sizes and places BAR0 and BAR1,
   enables decoding and bus mastering; %r13 = BAR0, or 0 if not found. */
nic_setup:
    xor %r13d, %r13d
    mov $ID_PAIR, %ecx
    call pci_find
    mov %eax, %r14d
    mov %r14d, CFG
    xor %ecx, %ecx
    test %r14d, %r14d
    setnz %cl
    CHECK_EQ "e1000-found-on-bus-0", 1
    cmpl $0, CFG
    je 9f
    CFG_WRITE CFG_BAR0, 0xFFFFFFFF
    CFG_READ CFG_BAR0
    mov %eax, %ecx
    CHECK_EQ "bar0-sizes-as-128k-mem32", 0xFFFE0000
    CFG_WRITE CFG_BAR1, 0xFFFFFFFF
    CFG_READ CFG_BAR1
    movzwl %ax, %ecx
    CHECK_EQ "bar1-sizes-as-64-byte-io", 0xFFC1
    CFG_WRITE CFG_BAR0, BAR0_AT
    CFG_WRITE CFG_BAR1, IO_AT
    CFG_WRITE CFG_COMMAND, 0x7      /* I/O, memory, bus master */
    mov $BAR0_AT, %r13d
    RD STATUS
    and $3, %ecx
    CHECK_EQ "status-full-duplex-link-up", 3
    mov RAL0(%r13), %eax
    mov %eax, MAC_LO
    mov RAH0(%r13), %ecx
    movzwl %cx, %eax
    mov %eax, MAC_HI
    shr $31, %ecx
    CHECK_EQ "rah0-address-valid-from-eeprom", 1
    RD ICR                          /* clear every cause */
    WR IMC, 0xFFFFFFFF
9:  ret

/* %ecx = 0x107 when the device answers sanely: STATUS FD and LU (bits
   0-1), RAL0 is the station address (bit 2), configuration space has the
   IDs (bit 8). */
alive:
    xor %ecx, %ecx
    mov STATUS(%r13), %eax
    and $3, %eax
    or %eax, %ecx
    mov RAL0(%r13), %eax
    cmp MAC_LO, %eax
    jne 1f
    or $4, %ecx
1:  mov CFG, %eax
    call pci_read
    cmp $ID_PAIR, %eax
    jne 2f
    or $0x100, %ecx
2:  ret

/* ---------------------------------------------------------------------- */
/* Canaries: canary_fill / canary_count (the library, canary.rs). */

/* %edx += qwords of the 4 KiB of ROM at %rsi that differ from its copy at %rdi. */
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

.macro CANARIES op
    mov RAM_TOP, %rdi
    sub $CANARY_LEN, %rdi
    mov $CANARY_LEN, %ecx
    call \op
    mov $(TX_RING - CANARY_LEN), %edi
    mov $CANARY_LEN, %ecx
    call \op
    mov $(BIG_RING - CANARY_LEN), %edi
    mov $CANARY_LEN, %ecx
    call \op
    mov $(BIG_RING + 0x100000), %edi
    mov $CANARY_LEN, %ecx
    call \op
    xor %edi, %edi
    mov $LOW_CANARY_LEN, %ecx
    call \op
.endm

arm_canaries:
    CANARIES canary_fill
    ret

/* %ecx = damaged qwords. */
mem_damage:
    xor %edx, %edx
    CANARIES canary_count
    mov $0xFFFF0000, %esi
    mov $IMAGE_BASE, %edi
    call rom_count
    mov $0xFFFFF000, %esi
    mov $(IMAGE_BASE + 0xF000), %edi
    call rom_count
    mov %edx, %ecx
    ret

/* ---------------------------------------------------------------------- */
/* The frames: an ARP request from 10.0.2.15 for 10.0.2.2 (RFC 826), and
   60 bytes of EtherType 0x88B5 to 02:00:00:00:00:01. */
build_frames:
    mov $FRAME_ARP, %edi
    xor %eax, %eax
    mov $64, %ecx
    rep stosq                       /* both frames zeroed */
    mov $FRAME_ARP, %edi
    movl $0xFFFFFFFF, (%rdi)
    movw $0xFFFF, 4(%rdi)
    mov MAC_LO, %eax
    mov %eax, 6(%rdi)
    mov %eax, 22(%rdi)
    mov MAC_HI, %eax
    mov %ax, 10(%rdi)
    mov %ax, 26(%rdi)
    movw $0x0608, 12(%rdi)          /* EtherType 0x0806 */
    movl $0x00080100, 14(%rdi)      /* hardware 1, protocol 0x0800 */
    movl $0x01000406, 18(%rdi)      /* lengths 6 and 4, request */
    movl $0x0F02000A, 28(%rdi)      /* 10.0.2.15 */
    movl $0x0202000A, 38(%rdi)      /* 10.0.2.2 */
    mov $FRAME_JUNK, %edi
    movl $0x00000002, (%rdi)
    movw $0x0100, 4(%rdi)
    mov MAC_LO, %eax
    mov %eax, 6(%rdi)
    mov MAC_HI, %eax
    mov %ax, 10(%rdi)
    movw $0xB588, 12(%rdi)          /* EtherType 0x88B5 */
    ret

/* ---------------------------------------------------------------------- */
/* Transmit. */

/* Ring at %rax (64-bit), TDLEN %ecx; TDH = TDT = 0, TCTL on. */
tx_setup:
    WR TCTL, 0
    mov %eax, TDBAL(%r13)
    shr $32, %rax
    mov %eax, TDBAH(%r13)
    mov %ecx, TDLEN(%r13)
    WR TDH, 0
    WR TDT, 0
    WR TCTL, TCTL_ON
    ret

/* A legacy descriptor at %rdi: buffer %rax, length %edx, command %ecx
   (in bits 31:24). */
legacy_desc:
    mov %rax, (%rdi)
    movzwl %dx, %edx
    or %ecx, %edx
    mov %edx, 8(%rdi)
    movl $0, 12(%rdi)
    ret

/* Wait (bounded) until TDH == TDT; %ecx = TDH. */
tx_wait:
    mov $POLL, %edx
1:  mov TDH(%r13), %ecx
    cmp TDT(%r13), %ecx
    je 2f
    dec %edx
    jnz 1b
2:  ret

/* Send %edx bytes at %rax through the 256-descriptor ring at TX_RING with
   EOP, IFCS and RS, and wait; %ecx = TDH, %r14d = the descriptor's index. */
tx_send:
    mov TDT(%r13), %r14d
    mov %r14d, %edi
    shl $4, %edi
    add $TX_RING, %edi
    mov $((CMD_EOP | CMD_IFCS | CMD_RS) << 24), %ecx
    call legacy_desc
    lea 1(%r14), %eax
    and $255, %eax
    mov %eax, TDT(%r13)
    call tx_wait
    ret

/* %ecx = 1 if TDH is inside a ring of %ebx descriptors, else 0. */
tdh_inside:
    mov TDH(%r13), %eax
    xor %ecx, %ecx
    cmp %ebx, %eax
    setb %cl
    ret

/* Reads TDH 2000 times, waiting for it to reach TDT. */
tx_settle:
    mov $2000, %r8d
1:  mov TDH(%r13), %eax
    cmp TDT(%r13), %eax
    je 2f
    dec %r8d
    jnz 1b
2:  ret

tx_outside_ram:
    PRINTLN "hostile-net: transmit rings outside RAM, TDT far ahead"
    RD GPTC                         /* clear */
    mov RAM_TOP, %rax
    mov $4096, %ecx
    call tx_setup
    WR TDT, 200
    call tx_settle
    mov $256, %ebx
    call tdh_inside
    CHECK_EQ "tx-ring-at-ram-top-tdh-inside-ring", 1
    CHECK_REG "tx-ring-at-ram-top-tdt-reads-back", TDT, 200
    CHECK_REG "tx-ring-at-ram-top-tdlen-reads-back", TDLEN, 4096
    CHECK_REG "tx-ring-at-ram-top-nothing-sent", GPTC, 0
    ALIVE "tx-ring-at-ram-top"

    movabs $0xFFFFFFFFFFFFFF00, %rax
    mov $4096, %ecx
    call tx_setup
    WR TDT, 255
    call tx_settle
    mov $256, %ebx
    call tdh_inside
    CHECK_EQ "tx-ring-at-end-of-address-space-tdh-inside-ring", 1
    CHECK_REG "tx-ring-at-end-of-address-space-tdbah-reads-back", TDBAH, 0xFFFFFFFF
    CHECK_REG "tx-ring-at-end-of-address-space-nothing-sent", GPTC, 0
    ALIVE "tx-ring-at-end-of-address-space"

    /* TDT past an 8-descriptor ring in RAM, whose descriptors would send
       the junk frame. */
    mov $TX_RING, %edi
    mov $8, %r8d
1:  mov $FRAME_JUNK, %eax
    mov $60, %edx
    mov $((CMD_EOP | CMD_IFCS | CMD_RS) << 24), %ecx
    call legacy_desc
    add $16, %rdi
    dec %r8d
    jnz 1b
    mov $TX_RING, %eax
    mov $128, %ecx
    call tx_setup
    WR TDT, 0x12345678
    CHECK_REG "tdt-keeps-bits-15-0", TDT, 0x5678
    call tx_settle
    CHECK_REG "tdt-past-the-ring-tdh-stays", TDH, 0
    CHECK_REG "tdt-past-the-ring-nothing-sent", GPTC, 0
    ALIVE "tdt-past-the-ring"
    CHECK_INTACT "tx-outside-ram"
    ret

/* The largest ring: 65528 descriptors of 1 KiB each with RS, no EOP. */
fill_big_ring:
    mov $BIG_RING, %edi
    mov $BIG_DESCS, %ecx
1:  movq $CHAIN_BUF, (%rdi)
    movl $((CMD_RS << 24) | 1024), 8(%rdi)
    movl $0, 12(%rdi)
    add $16, %rdi
    dec %ecx
    jnz 1b
    ret

/* %eax = how far TDH is from where the walk started (descriptor 1). */
.macro WALKED
    mov TDH(%r13), %eax
    cmp $BIG_DESCS, %eax
    jb 1f
    incl OUTSIDE
1:  dec %eax
    jns 2f
    mov $(BIG_DESCS - 1), %eax
2:
.endm

tx_largest_ring:
    PRINTLN "hostile-net: the largest transmit ring, TDT = TDH - 1, one chain without EOP"
    call fill_big_ring
    RD GPTC
    mov $BIG_RING, %eax
    mov $0xFFFFFFFF, %ecx
    call tx_setup
    CHECK_REG "tdlen-all-ones-reads-0xfff80", TDLEN, 0xFFF80
    WR TCTL, 0
    WR TDH, 1
    WR TDT, 1
    WR TCTL, TCTL_ON
    movl $0, LAST
    movl $0, DISTINCT
    movl $0, BACKWARDS
    movl $0, OUTSIDE
    WR TDT, 0
    /* Watch TDH 200 times: it only moves forward, never leaves the ring. */
    mov $200, %r8d
3:  WALKED
    cmp LAST, %eax
    je 5f
    jae 4f
    incl BACKWARDS
4:  incl DISTINCT
    mov %eax, LAST
5:  dec %r8d
    jnz 3b
    PUTS "hostile-net: TDH took "
    mov DISTINCT, %eax
    call putdec_lm
    PRINTLN " values in 200 reads"
    mov BACKWARDS, %ecx
    CHECK_EQ "largest-ring-tdh-only-moves-forward", 0
    mov OUTSIDE, %ecx
    CHECK_EQ "largest-ring-tdh-stays-inside", 0
    /* TDT = a TDH just read: the walk ends there (after going round once
       more if it had moved on). */
    mov TDH(%r13), %eax
    mov %eax, TDT(%r13)
    call tx_wait
    mov TDT(%r13), %eax
    xor %ecx, %ecx
    mov $1000, %r8d
6:  cmp TDH(%r13), %eax
    je 7f
    inc %ecx
7:  dec %r8d
    jnz 6b
    CHECK_EQ "largest-ring-tdh-stops-at-tdt", 0
    movzbl (BIG_RING + 16 + 12), %ecx
    and $STA_DD, %ecx
    CHECK_EQ "largest-ring-rs-descriptor-gets-dd", STA_DD
    CHECK_REG "largest-ring-chain-without-eop-not-sent", GPTC, 0
    /* One EOP descriptor at TDT ends the chain: longer than 16288 bytes,
       it is not sent. */
    mov TDT(%r13), %r14d
    mov %r14d, %edi
    shl $4, %edi
    add $BIG_RING, %edi
    mov $CHAIN_BUF, %eax
    mov $64, %edx
    mov $((CMD_EOP | CMD_IFCS | CMD_RS) << 24), %ecx
    call legacy_desc
    lea 1(%r14), %eax
    cmp $BIG_DESCS, %eax
    jb 8f
    xor %eax, %eax
8:  mov %eax, TDT(%r13)
    call tx_wait
    mov TDT(%r13), %eax
    cmp %eax, %ecx
    sete %cl
    movzbl %cl, %ecx
    CHECK_EQ "chain-past-maximum-eop-processed", 1
    CHECK_REG "chain-past-maximum-not-sent", GPTC, 0
    ALIVE "largest-ring"
    CHECK_INTACT "largest-ring"
    ret

/* A TSO context whose header is longer than the packet, then checksum
   offsets past a plain packet (8254x SDM 3.3.6, 3.3.7). */
tx_offload_contexts:
    PRINTLN "hostile-net: TSO context with offsets past the packet"
    RD GPTC
    RD TSCTFC
    mov $TX_RING, %eax
    mov $4096, %ecx
    call tx_setup
    mov $TX_RING, %edi
    /* IPCSS 14, IPCSO 24, IPCSE 33, TUCSS 200, TUCSO 216, TUCSE 0;
       PAYLEN 100, TUCMD DEXT TSE IP TCP; HDRLEN 250, MSS 100. */
    movabs $0x0000D8C80021180E, %rax
    mov %rax, (%rdi)
    movl $0x27000064, 8(%rdi)
    movl $0x0064FA00, 12(%rdi)
    /* Data: 100 bytes, DTYP 1, DCMD DEXT TSE RS IFCS EOP, POPTS IXSM TXSM. */
    movq $FRAME_JUNK, 16(%rdi)
    movl $0x2F100064, 24(%rdi)
    movl $0x00000300, 28(%rdi)
    WR TDT, 2
    call tx_wait
    xor %eax, %eax
    cmp $2, %ecx
    sete %al
    mov %eax, %ecx
    CHECK_EQ "tso-past-packet-descriptors-processed", 1
    movzbl (TX_RING + 16 + 12), %ecx
    and $STA_DD, %ecx
    CHECK_EQ "tso-past-packet-data-descriptor-dd", STA_DD
    CHECK_REG "tso-past-packet-not-sent", GPTC, 0
    CHECK_REG "tso-past-packet-tsctfc-counts-it", TSCTFC, 1
    ALIVE "tso-past-packet"

    /* A plain (non-TSO) packet of 60 bytes with IP and TCP checksum
       insertion at offsets 250 and 252, past its end. */
    mov $(TX_RING + 32), %edi
    movabs $0x0000FCFA00FAFA0E, %rax  /* IPCSS 14, IPCSO 250, IPCSE 250, TUCSS 250, TUCSO 252 */
    mov %rax, (%rdi)
    movl $0x23000000, 8(%rdi)       /* TUCMD DEXT IP TCP */
    movl $0, 12(%rdi)
    movq $FRAME_JUNK, 16(%rdi)
    movl $0x2B10003C, 24(%rdi)      /* 60 bytes, DTYP 1, DEXT RS IFCS EOP */
    movl $0x00000300, 28(%rdi)
    WR TDT, 4
    call tx_wait
    xor %eax, %eax
    cmp $4, %ecx
    sete %al
    mov %eax, %ecx
    CHECK_EQ "checksum-offsets-past-packet-descriptors-processed", 1
    movzbl (TX_RING + 48 + 12), %ecx
    and $STA_DD, %ecx
    CHECK_EQ "checksum-offsets-past-packet-dd", STA_DD
    ALIVE "checksum-offsets-past-packet"
    ret

/* ---------------------------------------------------------------------- */
/* Receive. */

/* RX_RING: 8 cleared descriptors, buffer i at RX_BUFS + 2 KiB * i. */
rx_fill_good:
    mov $RX_RING, %edi
    mov $RX_BUFS, %eax
    mov $8, %ecx
1:  mov %rax, (%rdi)
    movq $0, 8(%rdi)
    add $16, %rdi
    add $2048, %eax
    dec %ecx
    jnz 1b
    ret

/* RCTL off, the ring at RX_RING with RDLEN %ecx, RDH = RDT = 0. */
rx_setup:
    WR RCTL, 0
    WR RDBAL, RX_RING
    WR RDBAH, 0
    mov %ecx, RDLEN(%r13)
    WR RDH, 0
    WR RDT, 0
    ret

/* Wait (bounded) until RDH == %ebx; %ecx = RDH. */
rx_wait:
    mov $POLL, %edx
1:  mov RDH(%r13), %ecx
    cmp %ebx, %ecx
    je 2f
    dec %edx
    jnz 1b
2:  ret

/* Send the ARP request. */
send_arp:
    mov $TX_RING, %eax
    mov $4096, %ecx
    cmpl $TX_RING, TDBAL(%r13)
    jne 1f
    cmpl $4096, TDLEN(%r13)
    je 2f
1:  call tx_setup
2:  mov $FRAME_ARP, %eax
    mov $42, %edx
    call tx_send
    ret

/* %ecx = 0xF when descriptor %edi of RX_RING holds QEMU's ARP reply to
   us: EtherType 0x0806 (bit 0), opcode 2 (bit 1), from 10.0.2.2 (bit 2),
   to our address (bit 3). */
arp_reply_bits:
    shl $4, %edi
    add $RX_RING, %edi
    mov (%rdi), %rsi
    xor %ecx, %ecx
    cmpw $0x0608, 12(%rsi)
    jne 1f
    or $1, %ecx
1:  cmpw $0x0200, 20(%rsi)
    jne 2f
    or $2, %ecx
2:  cmpl $0x0202000A, 28(%rsi)
    jne 3f
    or $4, %ecx
3:  mov MAC_LO, %eax
    cmp %eax, 32(%rsi)
    jne 4f
    or $8, %ecx
4:  ret

/* Spin through 20000 reads of RDH (time for a reply to come). */
rx_linger:
    mov $20000, %r8d
1:  mov RDH(%r13), %eax
    dec %r8d
    jnz 1b
    ret

rx_bad_rings:
    PRINTLN "hostile-net: receive rings of length 0, not a multiple of 128, head and tail beyond"
    call rx_fill_good
    xor %ecx, %ecx
    call rx_setup
    WR RDT, 5
    WR RCTL, RCTL_EN
    call send_arp
    call rx_linger
    CHECK_REG "rdlen-0-rdh-stays", RDH, 0
    CHECK_REG "rdlen-0-reads-0", RDLEN, 0
    ALIVE "rdlen-0"
    WR RDLEN, 0x7F
    call rx_linger
    CHECK_REG "rdlen-0x7f-reads-0", RDLEN, 0
    CHECK_REG "rdlen-0x7f-rdh-stays", RDH, 0
    /* RDT first past any ring these lengths make. */
    WR RDT, 1000
    WR RDLEN, 0x1050
    CHECK_REG "rdlen-0x1050-reads-0x1000", RDLEN, 0x1000
    call rx_linger
    CHECK_REG "rdt-past-the-ring-reads-back", RDT, 1000
    CHECK_REG "rdt-past-the-ring-rdh-stays", RDH, 0
    WR RDLEN, 128
    WR RDH, 50
    WR RDT, 3
    call rx_linger
    CHECK_REG "rdh-past-the-ring-reads-back", RDH, 50
    ALIVE "rx-head-tail-beyond"
    /* Nothing was written into the ring while it was unusable. */
    mov $RX_RING, %edi
    xor %ecx, %ecx
    mov $8, %edx
1:  or 8(%rdi), %rcx
    add $16, %rdi
    dec %edx
    jnz 1b
    CHECK_EQ "unusable-ring-descriptors-untouched", 0
    /* Made whole (receiver still on: a receiver turned off drops what
       waits), the ring takes the reply that waited. */
    WR RDH, 0
    mov $1, %ebx
    call rx_wait
    CHECK_EQ "whole-ring-receives-the-waiting-reply", 1
    WR RDT, 7
    xor %edi, %edi
    call arp_reply_bits
    CHECK_EQ "waiting-reply-is-the-arp-reply", 0xF
    movzbl (RX_RING + 12), %ecx
    and $(STA_DD | STA_EOP), %ecx
    CHECK_EQ "waiting-reply-status-dd-eop", (STA_DD | STA_EOP)
    movzwl (RX_RING + 8), %ecx
    CHECK_GE "waiting-reply-length-at-least-64-with-fcs", 64
    CHECK_INTACT "rx-bad-rings"
    ret

rx_buffers_outside_ram:
    PRINTLN "hostile-net: receive buffers outside RAM while replies arrive"
    call rx_fill_good
    mov $128, %ecx
    call rx_setup
    mov RAM_TOP, %rax
    mov %rax, RX_RING
    mov $0xFFFF0000, %eax
    mov %rax, (RX_RING + 16)
    mov $0xE0000000, %eax
    mov %rax, (RX_RING + 32)
    movabs $0xFFFFFFFFFFFFF800, %rax
    mov %rax, (RX_RING + 48)
    WR RDT, 4
    WR RCTL, RCTL_EN
    mov $4, %r15d
1:  call send_arp
    dec %r15d
    jnz 1b
    mov $4, %ebx
    call rx_wait
    CHECK_EQ "outside-buffers-four-replies-written-back", 4
    mov $RX_RING, %edi
    mov $(STA_DD | STA_EOP), %ecx
    mov $4, %edx
2:  and 12(%rdi), %cl
    add $16, %rdi
    dec %edx
    jnz 2b
    movzbl %cl, %ecx
    CHECK_EQ "outside-buffers-descriptors-dd-eop", (STA_DD | STA_EOP)
    ALIVE "outside-buffers"
    CHECK_INTACT "outside-buffers"
    ret

/* ---------------------------------------------------------------------- */
/* The I/O window (8254x SDM 13.2.2): IOADDR at offset 0, IODATA at 4. */
.macro IOADDR_SET value
    mov $IO_AT, %dx
    mov $\value, %eax
    out %eax, %dx
.endm

io_window:
    PRINTLN "hostile-net: IOADDR/IODATA with out-of-range offsets"
    IOADDR_SET 0x8
    mov $(IO_AT + 4), %dx
    in %dx, %eax
    mov %eax, %ecx
    and $3, %ecx
    CHECK_EQ "iodata-reads-status", 3
    IOADDR_SET 0x7FFFFFFC
    mov $IO_AT, %dx
    in %dx, %eax
    mov %eax, %ecx
    CHECK_EQ "ioaddr-holds-0x7ffffffc", 0x7FFFFFFC
    mov $(IO_AT + 4), %dx
    in %dx, %eax
    IOADDR_SET 0x1FFFC
    mov $(IO_AT + 4), %dx
    in %dx, %eax
    xor %eax, %eax
    out %eax, %dx
    IOADDR_SET 0x20000
    mov $(IO_AT + 4), %dx
    in %dx, %eax
    IOADDR_SET 0x5403               /* unaligned, into RAL0 */
    mov $(IO_AT + 4), %dx
    in %dx, %eax
    mov $(IO_AT + 6), %dx
    in %dx, %ax
    mov $(IO_AT + 7), %dx
    in %dx, %al
    mov $(IO_AT + 1), %dx
    in %dx, %al
    /* The reserved offsets 8-63: reads and writes. */
    mov $(IO_AT + 8), %dx
1:  in %dx, %eax
    xor %eax, %eax
    out %eax, %dx
    out %al, %dx
    add $4, %dx
    cmp $(IO_AT + 64), %dx
    jb 1b
    IOADDR_SET 0x8
    mov $(IO_AT + 4), %dx
    in %dx, %eax
    mov %eax, %ecx
    and $3, %ecx
    CHECK_EQ "iodata-still-reads-status", 3
    ALIVE "io-window"
    ret

/* ---------------------------------------------------------------------- */
reset_mid_transfer:
    PRINTLN "hostile-net: CTRL.RST while the largest ring is walked"
    WR RCTL, 0
    mov $BIG_RING, %eax
    mov $0xFFF80, %ecx
    call tx_setup
    WR TDT, (BIG_DESCS - 1)
    RD TDH
    WR CTRL, CTRL_RST
    mov $1000, %ecx                 /* > 1 us before the next access (13.4.1) */
1:  pause
    dec %ecx
    jnz 1b
    RD CTRL
    and $CTRL_RST, %ecx
    CHECK_EQ "ctrl-rst-self-clears", 0
    mov TDH(%r13), %ecx
    or TDT(%r13), %ecx
    or TDLEN(%r13), %ecx
    CHECK_EQ "ctrl-rst-clears-tdh-tdt-tdlen", 0
    RD TCTL
    and $2, %ecx
    CHECK_EQ "ctrl-rst-clears-tctl-en", 0
    CHECK_REG "ctrl-rst-clears-rctl", RCTL, 0
    call tx_settle
    CHECK_REG "ctrl-rst-walk-stopped", TDH, 0
    ALIVE "ctrl-rst"
    CHECK_INTACT "ctrl-rst"
    ret

huge_timers:
    PRINTLN "hostile-net: ITR, RDTR, RADV, TIDV, TADV all-ones"
    WR ITR, 0xFFFFFFFF
    WR RDTR, 0xFFFFFFFF
    WR RADV, 0xFFFFFFFF
    WR TIDV, 0xFFFFFFFF
    WR TADV, 0xFFFFFFFF
    CHECK_REG "itr-keeps-bits-15-0", ITR, 0xFFFF
    CHECK_REG "rdtr-keeps-bits-15-0", RDTR, 0xFFFF
    CHECK_REG "radv-keeps-bits-15-0", RADV, 0xFFFF
    CHECK_REG "tidv-keeps-bits-15-0", TIDV, 0xFFFF
    CHECK_REG "tadv-keeps-bits-15-0", TADV, 0xFFFF
    ALIVE "huge-timers"
    ret

/* ---------------------------------------------------------------------- */
good_frame:
    PRINTLN "hostile-net: one good frame, every cause unmasked"
    call rx_fill_good
    mov $128, %ecx
    call rx_setup
    WR RDT, 7
    WR RCTL, RCTL_EN
    RD ICR
    RD GPTC
    WR IMS, 0xFFFFFFFF
    mov $TX_RING, %eax
    mov $4096, %ecx
    call tx_setup
    call send_arp
    CHECK_EQ "good-frame-tdh-reaches-tdt", 1
    movzbl (TX_RING + 12), %ecx
    and $STA_DD, %ecx
    CHECK_EQ "good-frame-descriptor-dd", STA_DD
    RD ICR
    and $ICR_TXDW, %ecx
    CHECK_EQ "good-frame-icr-txdw", ICR_TXDW
    CHECK_REG "good-frame-gptc-1", GPTC, 1
    mov $1, %ebx
    call rx_wait
    CHECK_EQ "good-frame-reply-received", 1
    xor %edi, %edi
    call arp_reply_bits
    CHECK_EQ "good-frame-reply-is-the-arp-reply", 0xF
    movzwl (RX_RING + 8), %ecx
    CHECK_GE "good-frame-reply-length-at-least-64-with-fcs", 64
    WR RDTR, (RDTR_FPD | 0xFFFF)
    RD ICR
    and $ICR_RXT0, %ecx
    CHECK_EQ "good-frame-rdtr-fpd-gives-rxt0", ICR_RXT0
    WR IMC, 0xFFFFFFFF
    ALIVE "good-frame"
    CHECK_INTACT "good-frame"
    ret
"#,
    options(att_syntax)
);
