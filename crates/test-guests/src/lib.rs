//! Code shared by the test guests: reset entry, serial output, mode switches and
//! test bookkeeping.
//!
//! Each guest is a bin of this crate that links into a flat 64 KiB image (see
//! `link.ld`). The library owns the path from the reset vector to the guest: it
//! sets up real mode and COM1, then jumps to the bin's `guest_main16`. From there a
//! guest climbs as far as it needs with `GOTO_PROTECTED` and `GOTO_LONG`, prints with
//! `PRINTLN`, and records tests with `CHECK_EQ`/`CHECK_GE` (`CHECK_EQ64` for
//! 64-bit values in long mode); a self-test ends with a jump to `finish`, which
//! prints the summary and writes the debug-exit port.
//!
//! Everything runs from the read-only image, so all mutable state lives in RAM at
//! the fixed addresses named in [`asm_prelude!`].

#![no_std]

mod canary;
mod modes;
mod pci;
mod report;
mod reset;
mod serial;

/// Assembler definitions every `global_asm!` block of the guests starts with:
/// the memory layout, port numbers and the macros guest code is written in.
///
/// Macros of one assembler module are not visible in another, so each block
/// includes the prelude; a guard keeps it from being defined twice when rustc puts
/// several blocks into one module.
///
/// Guest code declares its CPU mode with `MODE16`/`MODE32`/`MODE64` (instead of a
/// bare `.codeNN`), so that the macros pick the routine for that mode and, in real
/// mode, address the image through `CS = 0xF000` (offsets `sym - IMAGE_BASE`).
#[macro_export]
macro_rules! asm_prelude {
    () => {
        r#"
.ifndef KEEL_GUEST_PRELUDE
.set KEEL_GUEST_PRELUDE, 1

/* Where the image sits: [IMAGE_BASE, IMAGE_BASE + 64 KiB), CS = 0xF000 in real mode. */
.set IMAGE_BASE,     0xF0000
.set IMAGE_SEGMENT,  0xF000

/* RAM the guests use (zero-filled at start, per docs/ARCHITECTURE.md). */
.set PASS_COUNT,     0x500      /* u32: tests passed */
.set FAIL_COUNT,     0x504      /* u32: tests failed */
.set FAULT_VECTOR,   0x508      /* u32: vector of the last exception taken in long mode */
.set FAULT_ERROR,    0x50C      /* u32: its error code (0 for vectors without one) */
.set FAULT_SKIP,     0x510      /* u32: bytes to skip over a faulting instruction; 0 = unexpected */
.set IDT64,          0x1000     /* 32 gates of 16 bytes */
.set STACK_TOP,      0x7000     /* stack grows down from here, in every mode */
.set PML4,           0x8000
.set PDPT,           0x9000
.set PD,             0xA000     /* four page directories, 0xA000-0xDFFF: 4 GiB in 2 MiB pages */

/* GDT selectors (modes.rs). */
.set SEL_CODE32,     0x08
.set SEL_DATA,       0x10
.set SEL_CODE64,     0x18

/* COM1, a 16550A (ports RBR/THR, IER, FCR, LCR, MCR, LSR, MSR, SCR). */
.set COM1,           0x3F8
.set COM1_IER,       0x3F9
.set COM1_FCR,       0x3FA
.set COM1_LCR,       0x3FB
.set COM1_MCR,       0x3FC
.set COM1_LSR,       0x3FD
.set COM1_SCR,       0x3FF
.set LSR_THRE,       0x20
.set LSR_TEMT,       0x40

/* Debug exit (QEMU isa-debug-exit, Keel's debug-exit device). */
.set DEBUG_EXIT,     0xF4

/* Select the CPU mode of the code that follows. */
.macro MODE16
    .code16
    .set KMODE, 16
.endm
.macro MODE32
    .code32
    .set KMODE, 32
.endm
.macro MODE64
    .code64
    .set KMODE, 64
.endm

/* Long mode: write a 64-bit interrupt gate, DPL 0, through SEL_CODE64 to the
   handler at %eax, in the 16 bytes at (%rdi) (SDM Vol 3A 6.14.1). Clobbers %eax. */
.macro IDT_GATE
    mov %ax, (%rdi)
    movw $SEL_CODE64, 2(%rdi)
    movw $0x8E00, 4(%rdi)
    shr $16, %eax
    mov %ax, 6(%rdi)
    movq $0, 8(%rdi)
.endm

/* Both 8259As initialized (ICW1-ICW4: edge, cascade with the slave on IRQ 2,
   vectors `base` to `base` + 15, 8086 mode) and all their lines masked.
   Clobbers %al. */
.macro PIC_INIT_MASKED base
    mov $0x11, %al
    out %al, $0x20
    out %al, $0xA0
    mov $(\base), %al
    out %al, $0x21
    mov $(\base + 8), %al
    out %al, $0xA1
    mov $0x04, %al
    out %al, $0x21
    mov $0x02, %al
    out %al, $0xA1
    mov $0x01, %al
    out %al, $0x21
    out %al, $0xA1
    mov $0xFF, %al
    out %al, $0x21
    out %al, $0xA1
.endm

/* Call the variant of a shared routine for the current mode (name_rm/_pm/_lm). */
.macro KCALL name
    .if KMODE == 16
        call \name\()_rm
    .elseif KMODE == 32
        call \name\()_pm
    .else
        call \name\()_lm
    .endif
.endm

/* reg (default %esi) = address of sym in the image as the current mode reaches
   it through %cs. */
.macro IMAGE_PTR sym, reg=%esi
    .if KMODE == 16
        mov $(\sym - IMAGE_BASE), \reg
    .else
        mov $\sym, \reg
    .endif
.endm

/* Put a NUL-terminated string in the image; \label names it. */
.macro STRING label, text
    .pushsection .rodata.guest_strings, "a"
\label:
    .ascii "\text"
    .byte 0
    .popsection
.endm

/* Print text on COM1 (PUTS), or text and a newline (PRINTLN). Clobbers %esi. */
.macro PUTS text
    STRING .Lputs_\@, "\text"
    IMAGE_PTR .Lputs_\@
    KCALL puts
.endm
.macro PRINTLN text
    STRING .Lputs_\@, "\text"
    IMAGE_PTR .Lputs_\@
    KCALL putsln
.endm

/* Record test `name`: PASS if %ecx == expected (CHECK_EQ) or %ecx >= expected,
   unsigned (CHECK_GE); FAIL prints both values. Clobbers %eax, %ebx, %esi, %edi. */
.macro CHECK_EQ name, expected
    STRING .Lcheck_\@, "\name"
    IMAGE_PTR .Lcheck_\@
    mov $(\expected), %ebx
    KCALL check_eq
.endm
.macro CHECK_GE name, minimum
    STRING .Lcheck_\@, "\name"
    IMAGE_PTR .Lcheck_\@
    mov $(\minimum), %ebx
    KCALL check_ge
.endm

/* Long mode only: record test `name`: PASS if %rcx == expected, all 64 bits
   (an immediate is sign-extended, as a negative errno in RAX is); FAIL prints
   both. Clobbers %eax, %rbx, %esi. */
.macro CHECK_EQ64 name, expected
    STRING .Lcheck_\@, "\name"
    IMAGE_PTR .Lcheck_\@
    mov $(\expected), %rbx
    call check_eq64_lm
.endm

/* Leave real mode for 32-bit protected mode and continue at `label` (flat
   segments, stack reset to STACK_TOP). */
.macro GOTO_PROTECTED label
    mov $\label, %ebx
    jmp enter_protected_mode
.endm

/* Leave protected mode for long mode (identity map of the low 4 GiB, 64-bit IDT
   for vectors 0-31) and continue at `label`. */
.macro GOTO_LONG label
    mov $\label, %ebx
    jmp enter_long_mode
.endm

/* An AP (started by the BSP's INIT-SIPI-SIPI, in real mode with the stack it
   chose) enters long mode on the GDT and page tables the BSP's GOTO_LONG
   built, and continues at `label` with the 64-bit IDT for vectors 0-31. It
   rebuilds nothing the BSP is using. */
.macro GOTO_LONG_AP label
    mov $\label, %ebx
    jmp enter_long_mode_ap
.endm

/* Long mode only: the next instruction, `len` bytes long, is expected to fault.
   The exception handler records vector and error code and skips it. */
.macro EXPECT_FAULT len
    movl $0xFFFF, FAULT_VECTOR
    movl $0xFFFF, FAULT_ERROR
    movl $\len, FAULT_SKIP
.endm

/* Long mode only: %ecx = vector << 16 | error code of the fault EXPECT_FAULT
   announced, 0xFFFFFFFF if none was taken. Disarms the skip. */
.macro FAULT_RESULT
    movl $0, FAULT_SKIP
    mov FAULT_VECTOR, %ecx
    shl $16, %ecx
    movzwl FAULT_ERROR, %eax
    or %eax, %ecx
.endm

.endif
"#
    };
}

/// The guests never unwind and hold no Rust code that could panic; this only
/// satisfies `no_std`.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
