//! Hostile guest, resets: 20 machine resets through port 0xCF9 over the
//! VM's life, each after real work (a line on COM1 and a thousand port
//! reads), must all restart the vCPU at the reset vector: Keel stops only a
//! guest that keeps resetting without progress (docs/ARCHITECTURE.md
//! "Reset"; Keel finding #10 stopped it at the 17th reset over its life).
//!
//! RAM keeps its contents across a reset, so the boot count lives at
//! `BOOTS` under a magic marker. After the last boot: one check, the
//! summary and a debug-exit of 0.

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
.set MARKER,         0x600      /* u32: MAGIC once the first boot ran */
.set BOOTS,          0x604      /* u32: boots so far */
.set MAGIC,          0x54534552 /* "REST" */
.set ROUNDS,         20

MODE16
    .text
.global guest_main16
guest_main16:
    cmpl $MAGIC, MARKER
    je 1f
    movl $MAGIC, MARKER
    movl $0, BOOTS
1:  incl BOOTS
    PUTS "hostile-reset: boot "
    mov BOOTS, %eax
    call puthex_rm
    mov $10, %al
    call putc_rm
    cmpl $ROUNDS, BOOTS
    ja done
    /* Progress: a thousand reads of port 0x61 (each one an exit). */
    mov $1000, %cx
2:  in $0x61, %al
    dec %cx
    jnz 2b
    /* Hard reset through the PIIX reset control register: SYS_RST, then
       RST_CPU (82371SB datasheet, "Reset Control Register"). */
    mov $0xCF9, %dx
    mov $0x02, %al
    out %al, %dx
    mov $0x06, %al
    out %al, %dx
    PRINTLN "FAIL reset-cf9: still running after the reset request"
    mov $1, %eax
    out %eax, $DEBUG_EXIT
3:  cli
    hlt
    jmp 3b

done:
    GOTO_PROTECTED main32
MODE32
main32:
    GOTO_LONG main64
MODE64
main64:
    mov BOOTS, %ecx
    CHECK_EQ "reset-20-times-with-progress-keeps-running", (ROUNDS + 1)
    jmp finish
"#,
    options(att_syntax)
);
