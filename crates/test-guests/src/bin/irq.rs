//! Interrupt delivery and timer rates on the PC a VM sees (QEMU's `pc`
//! layout, `device-model/src/pc`), checked from long mode with the guest's own
//! 256-gate IDT:
//!
//! - 8259A pair + 8254 PIT channel 0 (mode 2, ~1 kHz) on IRQ 0;
//! - MC146818A periodic interrupt on IRQ 8 through the slave 8259A, and
//!   register C (reading it clears the flags);
//! - local APIC timer, periodic and one-shot;
//! - IOAPIC routing (PIT on pin 2, RTC on pin 8) with local-APIC EOI, and a
//!   level-triggered entry: one delivery until EOI, Remote IRR set until then;
//! - an NMI sent to itself through the ICR; then two more sent back to
//!   back from inside the NMI handler, which must run one after the other
//!   (never nested: NMIs stay blocked until the handler's IRET) and only
//!   twice in all (one NMI is latched while the handler runs);
//! - `sti; hlt` wakes on the PIT;
//! - last, machine resets through port 0xCF9 and the keyboard controller
//!   (0xFE to port 0x64), each seen by the reset vector running again with a
//!   marker kept in RAM (the devices are rebuilt on reset; RAM is not).
//!
//! Rates are counted over windows timed by the ACPI PM timer (3.579545 MHz,
//! 24 bits, at PMBA + 8 once the guest sets PMBA at PCI 00:01.3 reg 0x40).
//! A correct emulation keeps the count of periodic interrupts over a window
//! within one period of the nominal count when the guest keeps up; a slow
//! emulator may lose or bunch a few (Keel's PIT and RTC catch up to a backlog
//! of 50 edges). The windows are 200 ms of 1 kHz / 256 Hz ticks, and the
//! checks accept 90 % to 110 % of the nominal count: wide enough for a few
//! ticks landing on either side of a window edge and for catch-up bursts,
//! narrow enough to catch a wrong divider, a rate select off by one (x2), a
//! timer on the wrong clock, or ticks dropped wholesale.
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
/* RAM of this guest (clear of the shared state, IDT64, stack, page tables). */
.set RESET_MARKER,   0x600      /* u32: which reset round the next boot is in */
.set SAVED_PASS,     0x604      /* u32: PASS_COUNT across a reset (reset.rs clears it) */
.set SAVED_FAIL,     0x608
.set UNEXPECTED,     0x610      /* u32: interrupts on vectors nobody expects */
.set UNEXPECTED_VEC, 0x614      /* u32: the last such vector */
.set STALLED,        0x618      /* u32: PM ticks of the last pm_wait spent in stalls */
.set ELAPSED,        0x61C      /* u32: PM ticks the last pm_wait took */
.set WARM_STALLED,   0x620      /* u32: STALLED of the warm-up before a rate window */
.set NMI_DEPTH,      0x624      /* u32: NMI handlers running now (the nesting check) */
.set NMI_MAX_DEPTH,  0x628      /* u32: the most that ever ran at once */
.set NMI_CALLS,      0x62C      /* u32: NMI handler calls */
.set IDT_IRQ,        0x2000     /* 256 gates of 16 bytes */
.set VEC_COUNT,      0x3000     /* u32 per vector: handler calls */
.set VEC_ACTION,     0x3400     /* u8 per vector: what the handler does (ACT_*) */

.set MAGIC_CF9,      0x39464352 /* "RCF9" */
.set MAGIC_KBC,      0x43424B52 /* "RKBC" */

/* What the common handler does for a vector after counting it. */
.set ACT_UNEXPECTED, 0
.set ACT_PIC_EOI,    1          /* non-specific EOI to the master 8259A */
.set ACT_PIC_RTC,    2          /* read RTC register C, EOI slave and master */
.set ACT_LAPIC_EOI,  3
.set ACT_LAPIC_RTC,  4          /* read RTC register C, local APIC EOI */
.set ACT_COUNT,      5          /* count only: no EOI */

/* Vectors. */
.set VEC_NMI,        2
.set VEC_PIC_BASE,   0x20       /* master IRQ 0-7 -> 0x20-0x27 */
.set VEC_SLAVE_BASE, 0x28       /* slave IRQ 8-15 -> 0x28-0x2F */
.set VEC_PIT,        0x20
.set VEC_RTC,        0x28
.set VEC_LAPIC_PER,  0x40
.set VEC_LAPIC_ONE,  0x41
.set VEC_IOAPIC_PIT, 0x50
.set VEC_IOAPIC_RTC, 0x51
.set VEC_IOAPIC_LVL, 0x52
.set VEC_SPURIOUS,   0xFF

/* 8259A, 8254, MC146818A. */
.set PIC1_CMD,       0x20
.set PIC1_DATA,      0x21
.set PIC2_CMD,       0xA0
.set PIC2_DATA,      0xA1
.set PIT_CH0,        0x40
.set PIT_MODE,       0x43
.set PIT_DIVISOR_1K, 1193       /* 1193182 Hz / 1193 = 1000.15 Hz */
.set CMOS_INDEX,     0x70
.set CMOS_DATA,      0x71
.set RTC_A_256HZ,    0x28       /* DV = 010 (32.768 kHz), RS = 8: 256 Hz */
.set RTC_A_64HZ,     0x2A       /* RS = 10: 64 Hz */
.set RTC_B_PIE,      0x40

/* PCI configuration mechanism #1; PIIX4 PM is 00:01.3. */
.set PCI_ADDR,       0xCF8
.set PCI_DATA,       0xCFC
.set PIIX4_PM_CFG,   0x80000B00 /* enable | bus 0 | dev 1 | fn 3 */
.set PMBA_VALUE,     0x600      /* where SeaBIOS puts it on QEMU's pc */
.set PM_TMR,         PMBA_VALUE + 8
.set PM_HZ,          3579545
.set PM_MS,          3580       /* PM ticks per millisecond (3579.545) */
.set STALL_TICKS,    2 * PM_MS  /* a gap between two PM-timer reads this long is a stall */

/* Local APIC and IOAPIC (xAPIC MMIO; reach them through a register: an
   absolute disp32 above 2 GiB would be sign-extended in long mode). */
.set LAPIC,          0xFEE00000
.set LAPIC_ID,       0x20
.set LAPIC_TPR,      0x80
.set LAPIC_EOI,      0xB0
.set LAPIC_SVR,      0xF0
.set LAPIC_ICR_LO,   0x300
.set LAPIC_ICR_HI,   0x310
.set LAPIC_LVT_TMR,  0x320
.set LAPIC_LVT_LINT0, 0x350
.set LAPIC_LVT_LINT1, 0x360
.set LAPIC_TMR_INIT, 0x380
.set LAPIC_TMR_CUR,  0x390
.set LAPIC_TMR_DIV,  0x3E0
.set LVT_MASKED,     0x10000
.set LVT_PERIODIC,   0x20000
.set LAPIC_1K_COUNT, 62500      /* 1 GHz / 16 / 62500 = 1 kHz */
.set IOAPIC,         0xFEC00000
.set IOAPIC_WIN,     0x10
.set IOREDTBL,       0x10       /* entry n: low dword 0x10 + 2n, high 0x11 + 2n */
.set RTE_MASKED,     0x10000
.set RTE_LEVEL,      0x8000
.set RTE_REMOTE_IRR, 0x4000

/* A check that %ecx lies in [lo, hi]; prints the value either way. */
.macro CHECK_RANGE name, lo, hi
    STRING .Lrange_\@, "\name"
    mov $.Lrange_\@, %esi
    mov $(\lo), %ebx
    mov $(\hi), %edi
    call check_range
    mov $10, %al
    call putc_lm
.endm

/* Write CMOS register \reg with %al. */
.macro CMOS_WRITE reg
    push %rax
    mov $\reg, %al
    out %al, $CMOS_INDEX
    pop %rax
    out %al, $CMOS_DATA
.endm
/* %al = CMOS register \reg. */
.macro CMOS_READ reg
    mov $\reg, %al
    out %al, $CMOS_INDEX
    in $CMOS_DATA, %al
.endm

/* Zero the handler count of \vec. */
.macro ZERO_COUNT vec
    movl $0, (VEC_COUNT + 4 * \vec)
.endm

/* 10 ms of warm-up, then %ecx = the handler calls of vector \vec during
   \ms milliseconds of PM-timer time (interrupts as the caller left them). */
.macro RATE_WINDOW vec, ms
    mov $(VEC_COUNT + 4 * \vec), %edi
    mov $(\ms * PM_MS), %ecx
    call rate_window
.endm

/* Check the count RATE_WINDOW left in %ecx against \hz (see check_rate). */
.macro CHECK_RATE name, hz
    STRING .Lrate_\@, "\name"
    mov $.Lrate_\@, %esi
    mov $(\hz), %ebx
    call check_rate
.endm

/* Wait \ms milliseconds of PM-timer time. */
.macro WAIT_MS ms
    mov $(\ms * PM_MS), %ecx
    call pm_wait
.endm

MODE16
    .text
.global guest_main16
guest_main16:
    /* After a reset the marker says which round this boot is. */
    mov RESET_MARKER, %eax
    cmp $MAGIC_CF9, %eax
    je after_cf9_reset
    cmp $MAGIC_KBC, %eax
    je after_kbc_reset
    PRINTLN "irq: real mode, entering long mode"
    GOTO_PROTECTED protected

after_cf9_reset:
    mov SAVED_PASS, %eax
    mov %eax, PASS_COUNT
    mov SAVED_FAIL, %eax
    mov %eax, FAIL_COUNT
    PRINTLN "irq: back at the reset vector after the 0xCF9 reset"
    mov RESET_MARKER, %ecx
    CHECK_EQ "reset-cf9", MAGIC_CF9
    /* Second round: the keyboard controller's pulse-reset command. */
    mov PASS_COUNT, %eax
    mov %eax, SAVED_PASS
    mov FAIL_COUNT, %eax
    mov %eax, SAVED_FAIL
    movl $MAGIC_KBC, RESET_MARKER
    PRINTLN "irq: resetting through the keyboard controller (0xFE to port 0x64)"
    mov $0xFE, %al
    out %al, $0x64
    /* Still here: give it a moment, then report. */
    mov $0x1000000, %ecx
1:  dec %ecx
    jnz 1b
    movl $0, RESET_MARKER
    mov $0, %ecx
    CHECK_EQ "reset-kbc", MAGIC_KBC
    GOTO_PROTECTED protected_finish

after_kbc_reset:
    mov SAVED_PASS, %eax
    mov %eax, PASS_COUNT
    mov SAVED_FAIL, %eax
    mov %eax, FAIL_COUNT
    PRINTLN "irq: back at the reset vector after the keyboard-controller reset"
    mov RESET_MARKER, %ecx
    movl $0, RESET_MARKER
    CHECK_EQ "reset-kbc", MAGIC_KBC
    GOTO_PROTECTED protected_finish

MODE32
protected:
    GOTO_LONG long
protected_finish:
    GOTO_LONG long_finish

MODE64
long_finish:
    jmp finish

long:
    PRINTLN "irq: long mode"
    call setup_idt
    call pm_timer_setup
    call lapic_virtual_wire

    /* The PM timer runs: two reads 1000 loop iterations apart differ. */
    mov $PM_TMR, %dx
    in %dx, %eax
    mov %eax, %r12d
    mov $1000, %ecx
1:  pause
    dec %ecx
    jnz 1b
    in %dx, %eax
    xor %ecx, %ecx
    cmp %eax, %r12d
    setne %cl
    CHECK_EQ "pm-timer-runs", 1

    call test_pic_pit
    call test_rtc_regc
    call test_pic_rtc
    call test_lapic_timer
    call test_ioapic
    call test_nmi

    /* Interrupts on vectors nobody programmed: got = count << 8 | last vector. */
    mov UNEXPECTED, %ecx
    shl $8, %ecx
    or UNEXPECTED_VEC, %ecx
    CHECK_EQ "no-unexpected-interrupts", 0

    /* Last: reset the machine; the reset vector continues (guest_main16). */
    cli
    mov PASS_COUNT, %eax
    mov %eax, SAVED_PASS
    mov FAIL_COUNT, %eax
    mov %eax, SAVED_FAIL
    movl $MAGIC_CF9, RESET_MARKER
    PRINTLN "irq: resetting through port 0xCF9 (0x02, then 0x06)"
    mov $0xCF9, %dx
    mov $0x02, %al
    out %al, %dx
    mov $0x06, %al
    out %al, %dx
    WAIT_MS 100
    movl $0, RESET_MARKER
    xor %ecx, %ecx
    CHECK_EQ "reset-cf9", MAGIC_CF9
    jmp finish

/* ---------------------------------------------------------------------- */
/* 1. 8259A + PIT on IRQ 0. */
test_pic_pit:
    cli
    call pic_init
    mov $0xFE, %al                  /* only IRQ 0 */
    out %al, $PIC1_DATA
    mov $0xFF, %al
    out %al, $PIC2_DATA
    call pit_1khz
    sti
    RATE_WINDOW VEC_PIT, 200
    cli
    CHECK_RATE "pic-pit-rate-1khz", 1000
    mov $0xFF, %al
    out %al, $PIC1_DATA
    call pit_stop
    ret

/* 2a. RTC register C: the periodic flag and IRQF are set after a period,
   and reading C clears them. 64 Hz, PIE on, IRQ 8 masked everywhere. */
test_rtc_regc:
    cli
    mov $0xFF, %al
    out %al, $PIC1_DATA
    out %al, $PIC2_DATA
    mov $RTC_A_64HZ, %al
    CMOS_WRITE 0x0A
    CMOS_READ 0x0B
    or $RTC_B_PIE, %al
    CMOS_WRITE 0x0B
    CMOS_READ 0x0C                  /* start clean */
    /* Two reads back to back, checked afterwards: printing takes long
       enough on a slow emulator for the next period to come due. The
       next period may still come due between the two reads (a period
       boundary right after the first, or the host not running the vCPU
       for a period, as on a CPU shared with another VM): a second read
       with the flags set is taken again, up to three times. */
    mov $3, %r9d
1:  WAIT_MS 20                      /* > one 15.6 ms period */
    CMOS_READ 0x0C
    movzbl %al, %r12d
    CMOS_READ 0x0C
    movzbl %al, %r13d
    test $0xC0, %r13d
    jz 2f
    dec %r9d
    jz 2f
    PRINTLN "irq: a period came due between the two register C reads; reading again"
    jmp 1b
2:  mov %r12d, %ecx
    and $0xC0, %ecx
    CHECK_EQ "rtc-regc-pf-irqf-set", 0xC0
    mov %r13d, %ecx
    and $0xC0, %ecx
    CHECK_EQ "rtc-regc-read-clears", 0
    ret

/* 2b. RTC periodic interrupt at 256 Hz on IRQ 8 through the slave 8259A. */
test_pic_rtc:
    cli
    mov $RTC_A_256HZ, %al
    CMOS_WRITE 0x0A
    CMOS_READ 0x0B
    or $RTC_B_PIE, %al
    CMOS_WRITE 0x0B
    CMOS_READ 0x0C
    mov $0xFB, %al                  /* IRQ 2 (cascade) */
    out %al, $PIC1_DATA
    mov $0xFE, %al                  /* IRQ 8 */
    out %al, $PIC2_DATA
    sti
    RATE_WINDOW VEC_RTC, 200
    cli
    CHECK_RATE "pic-rtc-rate-256hz", 256
    call rtc_pie_off
    mov $0xFF, %al
    out %al, $PIC1_DATA
    out %al, $PIC2_DATA
    ret

/* 3. Local APIC timer: periodic at 1 kHz, then one-shot. */
test_lapic_timer:
    cli
    mov $LAPIC, %r15d
    movl $0x3, LAPIC_TMR_DIV(%r15)                 /* divide by 16 */
    movl $(LVT_PERIODIC | VEC_LAPIC_PER), LAPIC_LVT_TMR(%r15)
    movl $LAPIC_1K_COUNT, LAPIC_TMR_INIT(%r15)
    sti
    RATE_WINDOW VEC_LAPIC_PER, 200
    cli
    CHECK_RATE "lapic-timer-periodic-rate-1khz", 1000
    mov $LAPIC, %r15d
    movl $(LVT_MASKED | VEC_LAPIC_PER), LAPIC_LVT_TMR(%r15)
    movl $0, LAPIC_TMR_INIT(%r15)

    /* One-shot, 1 ms: fires once, then the current count stays 0. */
    ZERO_COUNT VEC_LAPIC_ONE
    movl $VEC_LAPIC_ONE, LAPIC_LVT_TMR(%r15)
    movl $LAPIC_1K_COUNT, LAPIC_TMR_INIT(%r15)
    sti
    WAIT_MS 30
    cli
    mov (VEC_COUNT + 4 * VEC_LAPIC_ONE), %ecx
    CHECK_EQ "lapic-timer-oneshot-fires-once", 1
    mov $LAPIC, %r15d
    mov LAPIC_TMR_CUR(%r15), %ecx
    CHECK_EQ "lapic-timer-oneshot-count-zero", 0
    mov $LAPIC, %r15d
    movl $(LVT_MASKED | VEC_LAPIC_ONE), LAPIC_LVT_TMR(%r15)
    ret

/* 4. IOAPIC: the PIT on pin 2 and the RTC on pin 8, 8259As masked. */
test_ioapic:
    cli
    mov $0xFF, %al
    out %al, $PIC1_DATA
    out %al, $PIC2_DATA

    /* Version register: 24 redirection entries (max index 23). */
    mov $1, %eax
    call ioapic_read
    shr $16, %eax
    movzbl %al, %ecx
    CHECK_EQ "ioapic-max-redirection-entry", 23

    /* PIT: pin 2, edge, active high, fixed, physical destination APIC 0. */
    mov $(IOREDTBL + 2 * 2 + 1), %eax
    xor %edx, %edx
    call ioapic_write
    mov $(IOREDTBL + 2 * 2), %eax
    mov $VEC_IOAPIC_PIT, %edx
    call ioapic_write
    call pit_1khz
    sti
    RATE_WINDOW VEC_IOAPIC_PIT, 200
    CHECK_RATE "ioapic-pit-pin2-rate-1khz", 1000

    /* 6. HLT wakes on the PIT: 20 times sti; hlt, each wait ends with the
       handler having run, and together they span ~20 ms of PM time. A
       wait of 3 ms or more is a stall (the host did not run the vCPU; on
       a CPU shared with another VM a wake-up legitimately waits up to
       about 2 ms): the upper bound allows for the stalls, and a run that
       stalled for half its time is taken again, up to three times. */
    mov $3, %r9d
hlt_try:
    cli
    mov (VEC_COUNT + 4 * VEC_IOAPIC_PIT), %r12d
    mov $PM_TMR, %dx
    in %dx, %eax
    and $0xFFFFFF, %eax
    mov %eax, %r13d                 /* start */
    mov %eax, %r10d                 /* previous reading */
    xor %r11d, %r11d                /* stalled PM ticks */
    mov $20, %r14d
1:  sti
    hlt
    cli
    in %dx, %eax
    and $0xFFFFFF, %eax
    mov %eax, %ecx
    sub %r10d, %ecx
    and $0xFFFFFF, %ecx
    mov %eax, %r10d
    cmp $(3 * PM_MS), %ecx
    jb 2f
    add %ecx, %r11d
2:  dec %r14d
    jnz 1b
    mov %r10d, %eax
    sub %r13d, %eax
    and $0xFFFFFF, %eax
    mov %eax, %r13d                 /* total */
    mov %r11d, %eax
    add %eax, %eax
    cmp %r13d, %eax
    jb 3f
    dec %r9d
    jz 3f
    PRINTLN "irq: the host stalled the vCPU for half the HLT wake-ups; measuring again"
    jmp hlt_try
3:  mov (VEC_COUNT + 4 * VEC_IOAPIC_PIT), %ecx
    sub %r12d, %ecx
    CHECK_GE "hlt-wakes-on-pit", 20
    STRING .Lhlt_ticks, "hlt-20-ticks-pm-ticks"
    mov $.Lhlt_ticks, %esi
    mov $(15 * PM_MS), %ebx
    mov $(50 * PM_MS), %edi
    add %r11d, %edi
    mov %r13d, %ecx
    call check_range
    PUTS " (stalled "
    mov %r11d, %eax
    call putdec_lm
    PRINTLN " PM ticks)"
    mov $(IOREDTBL + 2 * 2), %eax
    mov $(RTE_MASKED | VEC_IOAPIC_PIT), %edx
    call ioapic_write
    call pit_stop

    /* RTC: pin 8, edge, 256 Hz, register C read and EOI in the handler. */
    mov $(IOREDTBL + 2 * 8 + 1), %eax
    xor %edx, %edx
    call ioapic_write
    mov $(IOREDTBL + 2 * 8), %eax
    mov $VEC_IOAPIC_RTC, %edx
    call ioapic_write
    mov $RTC_A_256HZ, %al
    CMOS_WRITE 0x0A
    CMOS_READ 0x0B
    or $RTC_B_PIE, %al
    CMOS_WRITE 0x0B
    CMOS_READ 0x0C
    sti
    RATE_WINDOW VEC_IOAPIC_RTC, 200
    cli
    CHECK_RATE "ioapic-rtc-pin8-rate-256hz", 256
    call rtc_pie_off

    /* Level-triggered, active high: the handler neither EOIs nor reads C, so
       the IRQ stays asserted and Remote IRR set: exactly one delivery. */
    mov $(IOREDTBL + 2 * 8), %eax
    mov $(RTE_LEVEL | VEC_IOAPIC_LVL), %edx
    call ioapic_write
    ZERO_COUNT VEC_IOAPIC_LVL
    CMOS_READ 0x0B
    or $RTC_B_PIE, %al
    CMOS_WRITE 0x0B
    sti
    WAIT_MS 30
    cli
    mov (VEC_COUNT + 4 * VEC_IOAPIC_LVL), %ecx
    CHECK_EQ "ioapic-level-delivers-once", 1
    mov $(IOREDTBL + 2 * 8), %eax
    call ioapic_read
    mov %eax, %ecx
    shr $14, %ecx
    and $1, %ecx
    CHECK_EQ "ioapic-level-remote-irr-before-eoi", 1
    /* Stop new flags, read C (the line drops), then EOI: Remote IRR clears
       and nothing is delivered again. */
    call rtc_pie_off
    mov $LAPIC, %r15d
    movl $0, LAPIC_EOI(%r15)
    mov $(IOREDTBL + 2 * 8), %eax
    call ioapic_read
    mov %eax, %ecx
    shr $14, %ecx
    and $1, %ecx
    CHECK_EQ "ioapic-level-remote-irr-after-eoi", 0
    sti
    WAIT_MS 5
    cli
    mov (VEC_COUNT + 4 * VEC_IOAPIC_LVL), %ecx
    CHECK_EQ "ioapic-level-quiet-after-eoi", 1
    /* Assert again: one more delivery. */
    CMOS_READ 0x0B
    or $RTC_B_PIE, %al
    CMOS_WRITE 0x0B
    sti
    WAIT_MS 30
    cli
    mov (VEC_COUNT + 4 * VEC_IOAPIC_LVL), %ecx
    CHECK_EQ "ioapic-level-delivers-again", 2
    call rtc_pie_off
    mov $LAPIC, %r15d
    movl $0, LAPIC_EOI(%r15)
    mov $(IOREDTBL + 2 * 8), %eax
    mov $(RTE_MASKED | VEC_IOAPIC_LVL), %edx
    call ioapic_write
    ret

/* 5. NMI: the ICR sends an NMI to this APIC's own ID (no shorthand: the SDM,
   table "Valid Combinations for the ... xAPIC ICR", lists NMI with the self
   shorthand as invalid). */
test_nmi:
    cli
    mov $LAPIC, %r15d
    mov LAPIC_ID(%r15), %eax        /* APIC ID in bits 31:24 */
    and $0xFF000000, %eax
    mov %eax, LAPIC_ICR_HI(%r15)
    movl $0x4400, LAPIC_ICR_LO(%r15)  /* level assert, physical, NMI */
    mov $1000, %ecx
1:  pause
    dec %ecx
    jnz 1b
    mov (VEC_COUNT + 4 * VEC_NMI), %ecx
    CHECK_EQ "nmi-self-ipi-reaches-vector-2", 1

    /* NMI blocking (SDM Vol 3A 6.7.1): the handler of the next NMI sends
       two more back to back and waits, exiting 200 times (PM-timer reads)
       on the way; blocked until its IRET, they must come after it, and the
       CPU latches one: two handler calls in all, never two at once. */
    movl $0, NMI_DEPTH
    movl $0, NMI_MAX_DEPTH
    movl $0, NMI_CALLS
    mov $(IDT_IRQ + 16 * VEC_NMI), %edi
    mov $nmi_nesting_handler, %eax
    mov %ax, (%rdi)
    shr $16, %eax
    mov %ax, 6(%rdi)
    call nmi_to_self
    WAIT_MS 20
    mov NMI_MAX_DEPTH, %ecx
    CHECK_EQ "nmi-handler-never-nested", 1
    mov NMI_CALLS, %ecx
    CHECK_EQ "nmi-two-sent-in-handler-one-latched", 2
    ret

/* NMI to this APIC's own ID through the ICR, once the previous one left
   (delivery status idle). Clobbers %eax, %r15. */
nmi_to_self:
    mov $LAPIC, %r15d
1:  testl $0x1000, LAPIC_ICR_LO(%r15)
    jnz 1b
    mov LAPIC_ID(%r15), %eax
    and $0xFF000000, %eax
    mov %eax, LAPIC_ICR_HI(%r15)
    movl $0x4400, LAPIC_ICR_LO(%r15)
    ret

/* The nesting check's NMI handler: counts calls and the depth; the first
   call sends two NMIs to itself and reads the PM timer 200 times. */
nmi_nesting_handler:
    push %rax
    push %rcx
    push %rdx
    push %r15
    incl NMI_DEPTH
    mov NMI_DEPTH, %eax
    cmp NMI_MAX_DEPTH, %eax
    jbe 1f
    mov %eax, NMI_MAX_DEPTH
1:  incl NMI_CALLS
    cmpl $1, NMI_CALLS
    jne 3f
    call nmi_to_self
    call nmi_to_self
    mov $PM_TMR, %dx
    mov $200, %ecx
2:  in %dx, %eax
    dec %ecx
    jnz 2b
3:  decl NMI_DEPTH
    pop %r15
    pop %rdx
    pop %rcx
    pop %rax
    iretq

/* ---------------------------------------------------------------------- */
/* Helpers. */

/* What PC firmware does before it hands over (MP spec 3.6.2.2, virtual wire
   mode): software-enable the local APIC (all LVTs come out of reset masked,
   SDM Vol 3A 11.4.7.1) with spurious vector 0xFF, TPR 0, LINT0 ExtINT so the
   8259A's INTR reaches the core, LINT1 NMI. QEMU's pc leaves LINT0 masked
   when started without SeaBIOS; Keel resets it to ExtINT. */
lapic_virtual_wire:
    mov $LAPIC, %r15d
    movl $(0x100 | VEC_SPURIOUS), LAPIC_SVR(%r15)
    movl $0, LAPIC_TPR(%r15)
    movl $0x700, LAPIC_LVT_LINT0(%r15)
    movl $0x400, LAPIC_LVT_LINT1(%r15)
    ret

/* Both 8259As: vectors 0x20/0x28 (VEC_SLAVE_BASE is VEC_PIC_BASE + 8),
   everything masked. */
pic_init:
    PIC_INIT_MASKED VEC_PIC_BASE
    ret

/* PIT channel 0: mode 2 (rate generator), lobyte/hibyte, ~1 kHz. */
pit_1khz:
    mov $0x34, %al
    out %al, $PIT_MODE
    mov $(PIT_DIVISOR_1K & 0xFF), %al
    out %al, $PIT_CH0
    mov $(PIT_DIVISOR_1K >> 8), %al
    out %al, $PIT_CH0
    ret

/* PIT channel 0: mode 0 with the longest count; one last edge after 55 ms
   and then quiet. */
pit_stop:
    mov $0x30, %al
    out %al, $PIT_MODE
    xor %al, %al
    out %al, $PIT_CH0
    out %al, $PIT_CH0
    ret

/* PIE off in RTC register B, then read C (drops IRQ 8). */
rtc_pie_off:
    CMOS_READ 0x0B
    and $~RTC_B_PIE, %al
    CMOS_WRITE 0x0B
    CMOS_READ 0x0C
    ret

/* IOAPIC register %eax -> %eax. Clobbers %rdx. */
ioapic_read:
    mov $IOAPIC, %edx
    mov %eax, (%rdx)
    mov IOAPIC_WIN(%rdx), %eax
    ret
/* IOAPIC register %eax <- %edx. Clobbers %rax. */
ioapic_write:
    push %rcx
    mov $IOAPIC, %ecx
    mov %eax, (%rcx)
    mov %edx, IOAPIC_WIN(%rcx)
    pop %rcx
    ret

/* PMBA = 0x600 (PIIX4 function 3, reg 0x40), then PMIOSE (reg 0x80 bit 0). */
pm_timer_setup:
    mov $PCI_ADDR, %dx
    mov $(PIIX4_PM_CFG | 0x40), %eax
    out %eax, %dx
    mov $PCI_DATA, %dx
    mov $(PMBA_VALUE | 1), %eax
    out %eax, %dx
    mov $PCI_ADDR, %dx
    mov $(PIIX4_PM_CFG | 0x80), %eax
    out %eax, %dx
    mov $PCI_DATA, %dx
    mov $1, %al
    out %al, %dx
    ret

/* Wait until %ecx PM-timer ticks have passed; %eax = ELAPSED = ticks that
   did. The 24-bit counter wraps every 4.7 s: each step adds the difference
   mod 2^24. STALLED sums the steps of STALL_TICKS or more: time the vCPU did
   not run (a busy host descheduled the emulator), as seen from a loop whose
   steps otherwise take microseconds. Clobbers %eax. */
pm_wait:
    push %rbx
    push %rdx
    push %rsi
    push %rdi
    movl $0, STALLED
    mov $PM_TMR, %dx
    in %dx, %eax
    and $0xFFFFFF, %eax
    mov %eax, %ebx                  /* previous reading */
    xor %esi, %esi                  /* elapsed */
1:  in %dx, %eax
    and $0xFFFFFF, %eax
    mov %eax, %edi
    sub %ebx, %eax
    and $0xFFFFFF, %eax
    add %eax, %esi
    cmp $STALL_TICKS, %eax
    jb 2f
    add %eax, STALLED
2:  mov %edi, %ebx
    cmp %ecx, %esi
    jb 1b
    mov %esi, %eax
    mov %esi, ELAPSED
    pop %rdi
    pop %rsi
    pop %rdx
    pop %rbx
    ret

/* 10 ms of warm-up (its stalls in WARM_STALLED), then %ecx = how much the
   u32 at (%rdi) grew while %ecx PM ticks passed. A window that stalled for
   half its length or more says little about the rate: it is taken again, up
   to three times in all. */
rate_window:
    push %r9
    mov $3, %r9d
1:  push %rcx
    mov $(10 * PM_MS), %ecx
    call pm_wait
    mov STALLED, %eax
    mov %eax, WARM_STALLED
    pop %rcx
    mov (%rdi), %r8d
    call pm_wait
    mov STALLED, %eax
    add %eax, %eax
    cmp ELAPSED, %eax
    jb 2f
    dec %r9d
    jz 2f
    PRINTLN "irq: the host stalled the vCPU for half the window; measuring again"
    jmp 1b
2:  mov (%rdi), %eax
    sub %r8d, %eax
    mov %eax, %ecx
    pop %r9
    ret

/* In: %esi = name, %ebx = nominal rate in Hz, %ecx = count over the last
   rate_window. PASS if
     count >= 90 % of the nominal count over the window minus its stalls, and
     count <= 110 % of the nominal count over the window plus the warm-up's
             stalls (a timer that catches up on lost ticks may deliver those
             inside the window),
   The line shows the stalls: on a host so busy that every window stalled
   for half its length (rate_window tries three), the lower bound is weak.
   A timer that drops ticks while the vCPU is descheduled (QEMU's and Keel's
   local APIC timer, the RTC: the interrupt is latched once) passes as long as
   it keeps the rate while the vCPU runs. Clobbers %eax, %ebx, %edx, %esi,
   %edi, %r10. */
check_rate:
    mov %ebx, %r10d
    mov ELAPSED, %eax
    sub STALLED, %eax
    imul %r10, %rax
    imul $9, %rax
    xor %edx, %edx
    mov $(PM_HZ * 10), %ebx
    div %rbx
    mov %eax, %edi                  /* lo, for now */
    mov ELAPSED, %eax
    add WARM_STALLED, %eax
    imul %r10, %rax
    imul $11, %rax
    add $(PM_HZ * 10 - 1), %rax
    xor %edx, %edx
    div %rbx
    mov %edi, %ebx                  /* lo */
    mov %eax, %edi                  /* hi */
    call check_range
    PUTS " ("
    mov ELAPSED, %eax
    xor %edx, %edx
    mov $PM_MS, %ebx
    div %ebx
    call putdec_lm
    PUTS " ms, stalled "
    mov STALLED, %eax
    xor %edx, %edx
    div %ebx
    call putdec_lm
    PUTS " ms in the window, "
    mov WARM_STALLED, %eax
    xor %edx, %edx
    div %ebx
    call putdec_lm
    PRINTLN " ms before it)"
    ret

/* In: %esi = name, %ebx = lo, %edi = hi, %ecx = got. PASS if lo <= got <= hi.
   Prints the line without its newline. Clobbers %eax, %esi. */
check_range:
    mov %esi, %eax
    cmp %ebx, %ecx
    jb 1f
    cmp %edi, %ecx
    ja 1f
    incl PASS_COUNT
    PUTS "PASS "
    mov %eax, %esi
    call puts_lm
    PUTS ": "
    mov %ecx, %eax
    call putdec_lm
    PUTS " in ["
    jmp 2f
1:  incl FAIL_COUNT
    PUTS "FAIL "
    mov %eax, %esi
    call puts_lm
    PUTS ": got "
    mov %ecx, %eax
    call putdec_lm
    PUTS ", expected in ["
2:  mov %ebx, %eax
    call putdec_lm
    PUTS ", "
    mov %edi, %eax
    call putdec_lm
    PUTS "]"
    ret

/* IDT_IRQ: gates 0-31 as the shared IDT64 has them (unexpected exceptions end
   the run), gate 2 (NMI) and 32-255 to irq_stubs; counts and actions cleared. */
setup_idt:
    mov $IDT64, %esi
    mov $IDT_IRQ, %edi
    mov $(32 * 16 / 8), %ecx
    rep movsq
    mov $VEC_COUNT, %edi
    xor %eax, %eax
    mov $(256 + 256 / 4), %ecx      /* counts and actions */
    rep stosl
    movl $0, UNEXPECTED
    movl $0, UNEXPECTED_VEC
    mov $VEC_NMI, %ecx
    call set_gate
    mov $32, %ecx
1:  call set_gate
    inc %ecx
    cmp $256, %ecx
    jb 1b
    movb $ACT_COUNT, (VEC_ACTION + VEC_NMI)
    movb $ACT_PIC_EOI, (VEC_ACTION + VEC_PIT)
    movb $ACT_COUNT, (VEC_ACTION + VEC_PIC_BASE + 7)     /* spurious IRQ 7 */
    movb $ACT_PIC_RTC, (VEC_ACTION + VEC_RTC)
    movb $ACT_PIC_EOI, (VEC_ACTION + VEC_SLAVE_BASE + 7) /* spurious IRQ 15 */
    movb $ACT_LAPIC_EOI, (VEC_ACTION + VEC_LAPIC_PER)
    movb $ACT_LAPIC_EOI, (VEC_ACTION + VEC_LAPIC_ONE)
    movb $ACT_LAPIC_EOI, (VEC_ACTION + VEC_IOAPIC_PIT)
    movb $ACT_LAPIC_RTC, (VEC_ACTION + VEC_IOAPIC_RTC)
    movb $ACT_COUNT, (VEC_ACTION + VEC_IOAPIC_LVL)
    movb $ACT_COUNT, (VEC_ACTION + VEC_SPURIOUS)
    lidt idt_irq_desc(%rip)
    ret

/* Gate %ecx -> irq_stubs + 16 * %ecx: 64-bit interrupt gate, DPL 0. */
set_gate:
    mov %ecx, %edi
    shl $4, %edi
    add $IDT_IRQ, %edi
    mov %ecx, %eax
    shl $4, %eax
    add $irq_stubs, %eax
    IDT_GATE
    ret

    .pushsection .rodata.idt_irq, "a"
    .balign 8
idt_irq_desc:
    .word 256 * 16 - 1
    .quad IDT_IRQ
    .popsection

/* One 16-byte stub per vector: push the vector, go to irq_common. None of
   the vectors routed here has an error code. */
    .balign 16
irq_stubs:
    .set vec, 0
    .rept 256
    .balign 16
    pushq $vec
    jmp irq_common
    .set vec, vec + 1
    .endr

/* Count the call, then do what VEC_ACTION says for the vector. */
irq_common:
    push %rax
    push %rcx
    push %rdx
    mov 24(%rsp), %ecx
    incl VEC_COUNT(, %rcx, 4)
    movzbl VEC_ACTION(%rcx), %eax
    cmp $ACT_PIC_EOI, %al
    je 1f
    cmp $ACT_PIC_RTC, %al
    je 2f
    cmp $ACT_LAPIC_EOI, %al
    je 3f
    cmp $ACT_LAPIC_RTC, %al
    je 4f
    cmp $ACT_COUNT, %al
    je 9f
    incl UNEXPECTED
    mov %ecx, UNEXPECTED_VEC
    jmp 9f
1:  mov $0x20, %al
    out %al, $PIC1_CMD
    jmp 9f
2:  mov $0x0C, %al
    out %al, $CMOS_INDEX
    in $CMOS_DATA, %al
    mov $0x20, %al
    out %al, $PIC2_CMD
    out %al, $PIC1_CMD
    jmp 9f
4:  mov $0x0C, %al
    out %al, $CMOS_INDEX
    in $CMOS_DATA, %al
3:  mov $(LAPIC + LAPIC_EOI), %eax
    movl $0, (%rax)
9:  pop %rdx
    pop %rcx
    pop %rax
    add $8, %rsp
    iretq
"#,
    options(att_syntax)
);
