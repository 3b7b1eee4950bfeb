//! Hostile guest, CPU state: CPUID of random leaves, RDMSR/WRMSR of MSRs no
//! vendor implements, MOV to CR0/CR4 with illegal values and XSETBV with bad
//! operands, in real mode, 32-bit protected mode and long mode.
//!
//! Every illegal action must raise what the SDM's instruction pages give
//! (Vol 2: RDMSR, WRMSR, MOV to control registers, XSETBV: #GP(0), or #UD for
//! XSETBV with CPUID.1:ECX.XSAVE = 0), every legal one must not fault, and
//! in real mode the exception arrives through the IVT with no error code
//! pushed (SDM Vol 3A 21.1.4: real-mode exceptions push FLAGS, CS, IP only;
//! Keel finding #2). `66 0f a2` and `f3 0f 32` (CPUID, RDMSR with an ignored
//! prefix) must resume after all three bytes (finding #11: a backend that
//! advanced RIP by the unprefixed length would run the last opcode byte).
//!
//! Each check's `got` is `vector << 16 | x`: x is, in real mode, the bytes
//! the CPU pushed (6 = FLAGS, CS, IP: no error code), elsewhere the error
//! code; `0xffffffff` means no fault.

#![no_std]
#![no_main]

use core::arch::global_asm;
use test_guests as _;

global_asm!(
    test_guests::asm_prelude!(),
    r#"
.set SAVED_SP,       0x520      /* u32: stack pointer before the armed instruction */
.set RM_TARGET,      0x524      /* u16: where the real-mode handler resumes */
.set RNG,            0x528      /* u32: xorshift32 state */
.set FUZZ_N,         0x52C
.set FUZZ_BAD,       0x530      /* u32: fuzz cases that did not give the expected result */
.set FUZZ_LAST,      0x534      /* u32: the last such case's input */
.set HAS_XSAVE,      0x538
.set CANARY,         0x1B0      /* u8: what `a2 b0 01` (mov %al, 0x1b0) would hit in real mode */
.set IDT32,          0x2000     /* 32 gates of 8 bytes */
.set PD32,           0xE000     /* a 32-bit page directory: one 4 MiB identity page */
.set SAVED_CR0,      0x53C
.set SAVED_CR4,      0x540

/* Save CR0 and CR4, point CR3 at PD32 (0-4 MiB identity, 4 MiB page) and
   set CR4.PSE: if a CPU enabled paging where it must fault, fetches still
   work. */
.macro PSE_SAFETY_NET m
pse_safety_net_\m:
    mov %cr0, %eax
    mov %eax, SAVED_CR0
    mov %cr4, %eax
    mov %eax, SAVED_CR4
    movl $0x83, PD32
    mov $PD32, %eax
    mov %eax, %cr3
    mov %cr4, %eax
    or $0x10, %eax
    mov %eax, %cr4
    ret
.endm

.set UNKNOWN_MSR,    0x0BADC0DE
.set MTRR_DEF_TYPE,  0x2FF
.set NO_FAULT,       0xFFFFFFFF
.set RM_GP,          (13 << 16) | 6
.set RM_UD,          (6 << 16) | 6
.set GP0,            (13 << 16)
.set UD,             (6 << 16)
.set FUZZ_CASES,     200

/* Arm the fault handler of the current mode for the next instruction, `len`
   bytes long. Writes memory only: the instruction's operands survive. */
.macro ARM len
    movl $0xFFFF, FAULT_VECTOR
    movl $0xFFFF, FAULT_ERROR
    movl $\len, FAULT_SKIP
    .if KMODE == 16
    movzwl %sp, %esp
    mov %esp, SAVED_SP
    .elseif KMODE == 32
    mov %esp, SAVED_SP
    .endif
.endm

/* Run `insn` (len bytes) armed and check the result against `expected`. */
.macro TRY name, expected, len, insn:vararg
    ARM \len
    \insn
    FAULT_RESULT
    CHECK_EQ "\name", \expected
.endm

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

/* FUZZ_CASES rounds of `body` (which leaves the fault result in %ecx and
   the case's input in FUZZ_LAST); counts results other than `expected`. */
.macro FUZZ name, expected, body:vararg
    movl $0, FUZZ_BAD
    movl $FUZZ_CASES, FUZZ_N
.Lfuzz_loop\@:
    \body
    cmp $(\expected), %ecx
    je .Lfuzz_ok\@
    incl FUZZ_BAD
.Lfuzz_ok\@:
    decl FUZZ_N
    jnz .Lfuzz_loop\@
    mov FUZZ_BAD, %ecx
    CHECK_EQ "\name", 0
.endm

/* CPUID of a random leaf (basic, hypervisor, extended, Centaur ranges or any
   32-bit value) and subleaf: never faults (SDM Vol 2A CPUID: no exceptions
   other than #UD with a LOCK prefix). */
.macro CPUID_CASE
    RAND
    mov %eax, %ecx
    RAND
    test $0x100, %eax
    jz 1f
    and $0xC000003F, %eax
1:  mov %eax, FUZZ_LAST
    ARM 2
    cpuid
    FAULT_RESULT
.endm

/* RDMSR / WRMSR of a random index in 0x10000000-0x1FFFFFFF, where no vendor
   has MSRs: #GP(0) (SDM Vol 2B RDMSR, WRMSR). */
.macro RDMSR_CASE
    RAND
    and $0x0FFFFFFF, %eax
    or $0x10000000, %eax
    mov %eax, %ecx
    mov %eax, FUZZ_LAST
    ARM 2
    rdmsr
    FAULT_RESULT
.endm
.macro WRMSR_CASE
    RAND
    and $0x0FFFFFFF, %eax
    or $0x10000000, %eax
    mov %eax, FUZZ_LAST
    RAND
    mov %eax, %ebx
    RAND
    mov %ebx, %edx
    mov FUZZ_LAST, %ecx
    ARM 2
    wrmsr
    FAULT_RESULT
.endm

/* The checks every mode runs; `m` is the name prefix, `gp`/`ud` the results
   of #GP(0) and #UD in that mode. */
.macro COMMON_CHECKS m, gp, ud, ax
    mov $UNKNOWN_MSR, %ecx
    TRY "\m-rdmsr-unknown-gp", \gp, 2, rdmsr
    mov $UNKNOWN_MSR, %ecx
    xor %eax, %eax
    xor %edx, %edx
    TRY "\m-wrmsr-unknown-gp", \gp, 2, wrmsr
    /* MSRs every x86 has: no fault. */
    mov $0x10, %ecx
    TRY "\m-rdmsr-tsc-ok", NO_FAULT, 2, rdmsr
    mov $0x1B, %ecx
    TRY "\m-rdmsr-apic-base-ok", NO_FAULT, 2, rdmsr
    mov $MTRR_DEF_TYPE, %ecx
    mov $0xC06, %eax
    xor %edx, %edx
    TRY "\m-wrmsr-mtrr-def-type-ok", NO_FAULT, 2, wrmsr

    /* CR0.NW = 1 with CD = 0: #GP(0) (SDM Vol 2B MOV to CR0). */
    mov %cr0, \ax
    and $~0x40000000, \ax
    or $0x20000000, \ax
    TRY "\m-cr0-nw-without-cd-gp", \gp, 3, mov \ax, %cr0
    /* A reserved CR4 bit (31): #GP(0). */
    mov %cr4, \ax
    bts $31, \ax
    TRY "\m-cr4-reserved-bit31-gp", \gp, 3, mov \ax, %cr4
    /* CR4.VMXE while CPUID says no VMX: the bit is reserved, #GP(0). */
    mov %cr4, \ax
    or $0x2000, \ax
    TRY "\m-cr4-vmxe-gp", \gp, 3, mov \ax, %cr4
    /* A legal CR4 write (its own value, with PCE toggled): no fault. */
    mov %cr4, \ax
    xor $0x100, \ax
    TRY "\m-cr4-pce-ok", NO_FAULT, 3, mov \ax, %cr4
    mov %cr4, \ax
    xor $0x100, \ax
    mov \ax, %cr4

    /* XSETBV (SDM Vol 2C): #UD without CPUID.1:ECX.XSAVE (then CR4.OSXSAVE
       is reserved: #GP); with it, OSXSAVE on, then #GP(0) for XCR 1, for
       x87 clear, for AVX without SSE, for a reserved high bit; XCR0 = 1 is
       legal. */
    cmpl $0, HAS_XSAVE
    jne .Lxsave\@
    mov %cr4, \ax
    or $0x40000, \ax
    TRY "\m-cr4-osxsave-unsupported-gp", \gp, 3, mov \ax, %cr4
    xor %ecx, %ecx
    mov $1, %eax
    xor %edx, %edx
    TRY "\m-xsetbv-unsupported-ud", \ud, 3, xsetbv
    jmp .Lxsave_done\@
.Lxsave\@:
    mov %cr4, \ax
    or $0x40000, \ax
    TRY "\m-cr4-osxsave-ok", NO_FAULT, 3, mov \ax, %cr4
    mov $1, %ecx
    mov $1, %eax
    xor %edx, %edx
    TRY "\m-xsetbv-xcr1-gp", \gp, 3, xsetbv
    xor %ecx, %ecx
    xor %eax, %eax
    xor %edx, %edx
    TRY "\m-xsetbv-no-x87-gp", \gp, 3, xsetbv
    xor %ecx, %ecx
    mov $5, %eax
    xor %edx, %edx
    TRY "\m-xsetbv-avx-without-sse-gp", \gp, 3, xsetbv
    xor %ecx, %ecx
    mov $1, %eax
    mov $0x80000000, %edx
    TRY "\m-xsetbv-reserved-bit63-gp", \gp, 3, xsetbv
    xor %ecx, %ecx
    mov $1, %eax
    xor %edx, %edx
    TRY "\m-xsetbv-x87-ok", NO_FAULT, 3, xsetbv
.Lxsave_done\@:

    FUZZ "\m-cpuid-random-leaves-no-fault", NO_FAULT, CPUID_CASE
    FUZZ "\m-rdmsr-random-unknown-gp", \gp, RDMSR_CASE
    FUZZ "\m-wrmsr-random-unknown-gp", \gp, WRMSR_CASE

    /* Prefixed CPUID and RDMSR resume after the whole instruction. The bytes
       after them are `b0 01` (mov $1, %al) and six NOPs. Resumed two bytes
       in, the CPU would run `a2 ...` (mov %al, moffs: in long mode a
       non-canonical address, #GP, skipped to the same place) or `32 b0 ...`
       (xor %dh, disp(%eax)) and never set AL = 1. got = AL | fault << 8. */
    movb $0xEE, CANARY
    xor %eax, %eax
    ARM 9
    .byte 0x66, 0x0F, 0xA2, 0xB0, 0x01, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90
    movzbl %al, %ebx
    FAULT_RESULT
    cmp $NO_FAULT, %ecx
    setne %cl
    movzbl %cl, %ecx
    shl $8, %ecx
    or %ebx, %ecx
    movzbl CANARY, %eax
    shl $16, %eax
    or %eax, %ecx
    CHECK_EQ "\m-cpuid-66-prefix-resumes-after", 0xEE0001
    mov $MTRR_DEF_TYPE, %ecx
    ARM 9
    .byte 0xF3, 0x0F, 0x32, 0xB0, 0x01, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90
    movzbl %al, %ebx
    FAULT_RESULT
    cmp $NO_FAULT, %ecx
    setne %cl
    movzbl %cl, %ecx
    shl $8, %ecx
    or %ebx, %ecx
    CHECK_EQ "\m-rdmsr-f3-prefix-resumes-after", 1
.endm

MODE16
    .text
.global guest_main16
guest_main16:
    PRINTLN "hostile-cpu: real mode"
    movl $0x2545F491, RNG
    /* IVT: #UD and #GP to the handlers below (segment 0xF000). */
    movw $(rm_ud - IMAGE_BASE), (6 * 4)
    movw $IMAGE_SEGMENT, (6 * 4 + 2)
    movw $(rm_gp - IMAGE_BASE), (13 * 4)
    movw $IMAGE_SEGMENT, (13 * 4 + 2)
    mov $1, %eax
    cpuid
    shr $26, %ecx
    and $1, %ecx
    mov %ecx, HAS_XSAVE

    /* CR0.PG = 1 with PE = 0 is #GP(0) (SDM Vol 2B MOV to CR0). NE is set
       in the same write so that a backend which shadows NE sees the write.
       A CPU that took it anyway would page through CR3: a 4 MiB identity
       page keeps the next fetch working so the check can say FAIL. */
    call pse_safety_net_rm
    mov %cr0, %eax
    or $0x80000020, %eax
    TRY "rm-cr0-pg-without-pe-gp", RM_GP, 3, mov %eax, %cr0
    mov SAVED_CR0, %eax
    mov %eax, %cr0
    mov SAVED_CR4, %eax
    mov %eax, %cr4

    COMMON_CHECKS rm, RM_GP, RM_UD, %eax
    GOTO_PROTECTED main32

    PSE_SAFETY_NET rm

/* Real-mode exception handlers: record the vector and how many bytes the CPU
   pushed (SAVED_SP - SP at entry), then resume `FAULT_SKIP` bytes after the
   faulting IP with the stack as it was before it. */
rm_ud:
    push $6
    jmp rm_fault
rm_gp:
    push $13
    jmp rm_fault
rm_fault:
    push %bp
    mov %sp, %bp                    /* 0(bp) = bp, 2(bp) = vector, 4(bp) = frame */
    movzwl 2(%bp), %eax
    mov %eax, FAULT_VECTOR
    mov SAVED_SP, %eax
    movzwl %bp, %ebx
    add $4, %ebx
    sub %ebx, %eax
    mov %eax, FAULT_ERROR
    cmpl $0, FAULT_SKIP
    je rm_unexpected
    mov 4(%bp), %ax                 /* IP of the faulting instruction */
    cmpl $8, FAULT_ERROR
    jne 1f
    mov 6(%bp), %ax                 /* an error code was pushed above it */
1:  add FAULT_SKIP, %ax
    mov %ax, RM_TARGET
    movl $0, FAULT_SKIP
    mov SAVED_SP, %sp
    jmp *(RM_TARGET)
rm_unexpected:
    PUTS "FAIL rm-unexpected-exception: vector "
    mov FAULT_VECTOR, %eax
    call puthex_rm
    PUTS " pushed "
    mov FAULT_ERROR, %eax
    call puthex_rm
    PRINTLN " bytes"
    mov $1, %eax
    out %eax, $DEBUG_EXIT
1:  cli
    hlt
    jmp 1b

MODE32
main32:
    PRINTLN "hostile-cpu: 32-bit protected mode"
    /* IDT32: gate v -> pm_stubs + 16 * v, 32-bit interrupt gate. */
    mov $IDT32, %edi
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $4, %eax
    add $pm_stubs, %eax
    mov %ax, (%edi)
    movw $SEL_CODE32, 2(%edi)
    movw $0x8E00, 4(%edi)
    shr $16, %eax
    mov %ax, 6(%edi)
    add $8, %edi
    inc %ecx
    cmp $32, %ecx
    jb 1b
    lidt idt32_desc

    /* CR0.PG = 1 with PE = 0 from protected mode: #GP(0); the same safety
       net as in real mode. */
    call pse_safety_net_pm
    mov %cr0, %eax
    and $~1, %eax
    or $0x80000020, %eax
    TRY "pm-cr0-pg-without-pe-gp", GP0, 3, mov %eax, %cr0
    mov SAVED_CR0, %eax
    mov %eax, %cr0
    ljmp $SEL_CODE32, $1f           /* PE may have been cleared: reload CS */
1:  mov SAVED_CR4, %eax
    mov %eax, %cr4

    COMMON_CHECKS pm, GP0, UD, %eax
    GOTO_LONG main64

    PSE_SAFETY_NET pm

    .pushsection .rodata.idt32, "a"
    .balign 8
idt32_desc:
    .word 32 * 8 - 1
    .long IDT32
    .popsection

/* One 16-byte stub per vector; those without an error code push 0. */
    .balign 16
pm_stubs:
.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .balign 16
    .if (\v == 8) | (\v == 10) | (\v == 11) | (\v == 12) | (\v == 13) | (\v == 14) | (\v == 17) | (\v == 21) | (\v == 29) | (\v == 30)
    .else
    push $0
    .endif
    push $\v
    jmp pm_fault
.endr
/* Record vector and error code; resume FAULT_SKIP bytes after the faulting
   EIP with the stack as before it. */
pm_fault:
    mov (%esp), %eax
    mov %eax, FAULT_VECTOR
    mov 4(%esp), %eax
    mov %eax, FAULT_ERROR
    mov FAULT_SKIP, %eax
    test %eax, %eax
    jz 1f
    add 8(%esp), %eax
    movl $0, FAULT_SKIP
    mov SAVED_SP, %esp
    jmp *%eax
1:  PUTS "FAIL pm-unexpected-exception: vector "
    mov FAULT_VECTOR, %eax
    call puthex_pm
    PUTS " error "
    mov FAULT_ERROR, %eax
    call puthex_pm
    PUTS " eip "
    mov 8(%esp), %eax
    call puthex_pm
    mov $10, %al
    call putc_pm
    mov $1, %eax
    out %eax, $DEBUG_EXIT
2:  cli
    hlt
    jmp 2b

MODE64
main64:
    PRINTLN "hostile-cpu: long mode"
    /* 64-bit only (SDM Vol 2B MOV to CR): bits 63:32 of CR0 and CR4 are
       reserved; clearing CR0.PG or CR4.PAE in 64-bit mode is #GP(0). */
    mov %cr0, %rax
    bts $32, %rax
    TRY "lm-cr0-bit32-gp", GP0, 3, mov %rax, %cr0
    mov %cr4, %rax
    bts $40, %rax
    TRY "lm-cr4-bit40-gp", GP0, 3, mov %rax, %cr4
    mov %cr0, %rax
    btr $31, %rax
    TRY "lm-cr0-clear-pg-gp", GP0, 3, mov %rax, %cr0
    mov %cr4, %rax
    btr $5, %rax
    TRY "lm-cr4-clear-pae-gp", GP0, 3, mov %rax, %cr4

    COMMON_CHECKS lm, GP0, UD, %rax
    jmp finish
"#,
    options(att_syntax)
);
