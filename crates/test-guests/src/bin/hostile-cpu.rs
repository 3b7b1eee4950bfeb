//! Hostile guest, CPU state: CPUID of random leaves, RDMSR/WRMSR of MSRs no
//! vendor implements, MOV to CR0/CR4 with illegal values and XSETBV with bad
//! operands, in every CPU mode: real mode, 32-bit protected mode, 16-bit
//! protected mode (CS.D = 0), virtual-8086 mode, CPL 3 in protected mode,
//! 64-bit mode, compatibility mode (CS.L = 0, CS.D = 1) and CPL 3 in 64-bit
//! mode.
//!
//! Every illegal action must raise what the SDM's instruction pages give
//! (Vol 2: RDMSR, WRMSR, MOV to control registers, XSETBV: #GP(0), or #UD for
//! XSETBV with CPUID.1:ECX.XSAVE = 0), every legal one must not fault, and
//! in real mode the exception arrives through the IVT with no error code
//! pushed (SDM Vol 3A 21.1.4: real-mode exceptions push FLAGS, CS, IP only;
//! Keel finding #2). At CPL 3 and in virtual-8086 mode (which runs at CPL 3,
//! SDM Vol 3A 20.2) RDMSR, WRMSR, MOV to and from CR0/CR4 and XSETBV are
//! #GP(0) whatever their operands, as their pages say; CPUID is not
//! privileged. `66 0f a2` and `f3 0f 32` (CPUID, RDMSR with an ignored
//! prefix) must resume after all three bytes (finding #11: a backend that
//! advanced RIP by the unprefixed length would run the last opcode byte),
//! and a prefixed RDMSR that faults must fault with RIP on the prefix.
//!
//! Each check's `got` is `vector << 16 | x`: x is, in real mode, the bytes
//! the CPU pushed (6 = FLAGS, CS, IP: no error code), elsewhere the error
//! code; `0xffffffff` means no fault.
//!
//! Protected-mode exceptions, from any of its sub-modes, go through 32-bit
//! interrupt gates to one CPL-0 handler that records vector and error code
//! and returns with IRET past the instruction; the TSS gives it its stack
//! when the fault comes from CPL 3 or virtual-8086 mode (SDM Vol 3A 6.12.1,
//! 20.3.1.1). Long-mode exceptions, from 64-bit or compatibility mode, go
//! through the library's 64-bit IDT. A sub-mode at CPL 3 ends with `HLT`
//! after naming where to continue (`LEAVE_TO`): the #GP(0) it raises takes
//! the handler there, at CPL 0.

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
.set LEAVE_TARGET,   0x544      /* u32: where a #GP(0) from HLT continues at CPL 0; 0 = none */
.set LM_GP_STUB,     0x548      /* u64: the library's 64-bit #GP stub */
.set GDT_RAM,        0x2100     /* the GDT below, copied to RAM: LTR writes the busy bit */
.set TSS,            0x2200     /* 104 bytes, then the I/O permission bitmap */
.set TSS_IOMAP,      0x68
.set TSS_IOMAP_END,  0x80       /* bitmap bytes: ports 0-0x3FF */
.set TSS_LIMIT,      TSS_IOMAP + TSS_IOMAP_END  /* the last byte, 0xFF, ends the bitmap */
.set USER_STACK,     0x6000     /* CPL 3 and virtual-8086 stack; CPL 0 keeps STACK_TOP */

/* Selectors of GDT_RAM past the library's three (which keep their values). */
.set SEL_CODE16,     0x20       /* 16-bit code (D = 0), base IMAGE_BASE, limit 64 KiB */
.set SEL_UCODE32,    0x28 | 3
.set SEL_UDATA,      0x30 | 3
.set SEL_UCODE64,    0x38 | 3
.set SEL_TSS32,      0x40
.set SEL_TSS64,      0x48       /* 16 bytes */
.set EFLAGS_VM,      0x20000

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

/* Prefixed CPUID resumes after the whole instruction. The bytes after it
   are `b0 01` (mov $1, %al) and six NOPs. Resumed two bytes in, the CPU
   would run `a2 ...` (mov %al, moffs: in long mode a non-canonical address,
   #GP, skipped to the same place; elsewhere a write to CANARY or above)
   and never set AL = 1. got = CANARY << 16 | fault << 8 | AL. */
.macro PREFIXED_CPUID m
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
.endm

/* Prefixed RDMSR of a legal MSR at CPL 0 likewise (resumed two bytes in:
   `32 b0 ...`, xor %dh, disp(%eax)). got = fault << 8 | AL. */
.macro PREFIXED_RDMSR_OK m
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

/* Prefixed RDMSR where it is privileged: #GP(0) with RIP on the prefix, so
   that skipping the three bytes runs `mov $1, %al` (SDM Vol 3A 6.5: a fault
   reports the instruction's first byte). got = (vector << 16 | error) << 8
   | AL. */
.macro PREFIXED_RDMSR_GP m
    mov $MTRR_DEF_TYPE, %ecx
    xor %eax, %eax
    ARM 3
    .byte 0xF3, 0x0F, 0x32, 0xB0, 0x01, 0x90, 0x90, 0x90, 0x90, 0x90, 0x90
    movzbl %al, %ebx
    FAULT_RESULT
    shl $8, %ecx
    or %ebx, %ecx
    CHECK_EQ "\m-rdmsr-f3-prefix-gp-on-prefix", (GP0 << 8) | 1
.endm

/* The checks of a mode at CPL 3 (virtual-8086 mode included): everything
   CPL 0 may do is #GP(0) (SDM Vol 2B RDMSR, WRMSR, MOV to/from control
   registers: "If the current privilege level is not 0", and in
   virtual-8086 mode "cannot be executed"; Vol 2C XSETBV: "must be executed
   at privilege level 0 or in real-address mode"), tried with operands that
   are legal at CPL 0 (CR0/CR4 as CPL 0 left them in SAVED_CR0/SAVED_CR4,
   XCR0 = 1), so that only the privilege check can fail them. Without
   CPUID.1:ECX.XSAVE, XSETBV is #UD in every mode. `ax` is the register
   MOV CR takes in this mode. */
.macro PRIV_CHECKS m, ax
    mov $UNKNOWN_MSR, %ecx
    TRY "\m-rdmsr-unknown-gp", GP0, 2, rdmsr
    mov $0x10, %ecx
    TRY "\m-rdmsr-tsc-gp", GP0, 2, rdmsr
    mov $MTRR_DEF_TYPE, %ecx
    mov $0xC06, %eax
    xor %edx, %edx
    TRY "\m-wrmsr-mtrr-def-type-gp", GP0, 2, wrmsr
    TRY "\m-mov-from-cr0-gp", GP0, 3, mov %cr0, \ax
    TRY "\m-mov-from-cr4-gp", GP0, 3, mov %cr4, \ax
    mov SAVED_CR0, %eax
    TRY "\m-mov-to-cr0-gp", GP0, 3, mov \ax, %cr0
    mov SAVED_CR4, %eax
    TRY "\m-mov-to-cr4-gp", GP0, 3, mov \ax, %cr4
    cmpl $0, HAS_XSAVE
    jne .Lpriv_xsave\@
    xor %ecx, %ecx
    mov $1, %eax
    xor %edx, %edx
    TRY "\m-xsetbv-unsupported-ud", UD, 3, xsetbv
    jmp .Lpriv_xsave_done\@
.Lpriv_xsave\@:
    /* CPL 0 set CR4.OSXSAVE: XGETBV is not privileged (Vol 2C XGETBV). */
    xor %ecx, %ecx
    TRY "\m-xgetbv-ok", NO_FAULT, 3, xgetbv
    xor %ecx, %ecx
    mov $1, %eax
    xor %edx, %edx
    TRY "\m-xsetbv-gp", GP0, 3, xsetbv
.Lpriv_xsave_done\@:
    FUZZ "\m-cpuid-random-leaves-no-fault", NO_FAULT, CPUID_CASE
    FUZZ "\m-rdmsr-random-unknown-gp", GP0, RDMSR_CASE
    FUZZ "\m-wrmsr-random-unknown-gp", GP0, WRMSR_CASE
    PREFIXED_CPUID \m
    PREFIXED_RDMSR_GP \m
.endm

/* Leave a CPL-3 sub-mode: HLT raises #GP(0), whose handler continues at
   `label` at CPL 0 with the stack at STACK_TOP. */
.macro LEAVE_TO label
    movl $\label, LEAVE_TARGET
    hlt
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

    PREFIXED_CPUID \m
    PREFIXED_RDMSR_OK \m
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

    /* GDT_RAM: the library's selectors, the sub-modes' segments and the
       TSSs. The TSS: ESP0/SS0 for faults from CPL 3 and virtual-8086 mode,
       and an I/O permission bitmap that lets both reach COM1 and the
       debug-exit port (SDM Vol 1 19.5.2, Vol 3A 20.2.8.1: in virtual-8086 mode
       the bitmap decides whatever IOPL is). */
    mov $gdt_template, %esi
    mov $GDT_RAM, %edi
    mov $((gdt_template_end - gdt_template) / 4), %ecx
    rep movsl
    lgdt gdt_ram_desc
    mov $TSS, %edi
    mov $((TSS_LIMIT + 4) / 4), %ecx
    xor %eax, %eax
    rep stosl
    movl $STACK_TOP, TSS + 4        /* ESP0 */
    movl $SEL_DATA, TSS + 8         /* SS0 */
    movw $TSS_IOMAP, TSS + 0x66     /* I/O map base */
    movb $0xFF, TSS + TSS_LIMIT
    mov $SEL_TSS32, %ax
    ltr %ax

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
    ljmp $SEL_CODE16, $(main_p16 - IMAGE_BASE)

    PSE_SAFETY_NET pm

/* Virtual-8086 mode: IRET to CS = 0xF000 with EFLAGS.VM = 1, IOPL 0 (SDM
   Vol 3A 20.2.5), all data segments 0, the stack at 0:USER_STACK. */
after_p16:
    mov %cr0, %eax
    mov %eax, SAVED_CR0
    mov %cr4, %eax
    mov %eax, SAVED_CR4
    pushl $0                        /* GS */
    pushl $0                        /* FS */
    pushl $0                        /* DS */
    pushl $0                        /* ES */
    pushl $0                        /* SS */
    pushl $USER_STACK               /* ESP */
    pushl $(EFLAGS_VM | 0x2)
    pushl $IMAGE_SEGMENT            /* CS */
    pushl $(main_v86 - IMAGE_BASE)  /* EIP */
    iretl

/* CPL 3 in 32-bit protected mode: IRET to a DPL-3 code segment. DS and ES
   are reloaded there: IRET to CPL 3 nulls those of DPL 0 (SDM Vol 2A IRET). */
after_v86:
    pushl $SEL_UDATA                /* SS */
    pushl $USER_STACK               /* ESP */
    pushl $0x2                      /* EFLAGS: IOPL 0, IF 0 */
    pushl $SEL_UCODE32
    pushl $main_pm_cpl3
    iretl
main_pm_cpl3:
    mov $SEL_UDATA, %ax
    mov %ax, %ds
    mov %ax, %es
    PRINTLN "hostile-cpu: CPL 3 in 32-bit protected mode"
    mov %cs, %ecx
    and $3, %ecx
    CHECK_EQ "pm-cpl3-cs-rpl-3", 3
    PRIV_CHECKS pm-cpl3, %eax
    LEAVE_TO after_pm_cpl3
after_pm_cpl3:
    GOTO_LONG main64

    .pushsection .rodata.gdt_template, "a"
    .balign 8
gdt_template:
    .quad 0
    .quad 0x00CF9B000000FFFF        /* SEL_CODE32 */
    .quad 0x00CF93000000FFFF        /* SEL_DATA */
    .quad 0x00AF9B000000FFFF        /* SEL_CODE64 */
    .quad 0x00009B0F0000FFFF        /* SEL_CODE16: base 0xF0000, limit 0xFFFF, D = 0, G = 0 */
    .quad 0x00CFFB000000FFFF        /* SEL_UCODE32: DPL 3 */
    .quad 0x00CFF3000000FFFF        /* SEL_UDATA: DPL 3 */
    .quad 0x00AFFB000000FFFF        /* SEL_UCODE64: DPL 3, L = 1 */
    /* SEL_TSS32: base TSS, limit TSS_LIMIT, type 9 (32-bit available TSS;
       in IA-32e mode the same type is a 64-bit TSS, SDM Vol 3A 3.5). */
    .quad 0x0000890000000000 | (TSS << 16) | TSS_LIMIT
    /* SEL_TSS64: the same TSS, 16-byte descriptor, base 63:32 = 0. */
    .quad 0x0000890000000000 | (TSS << 16) | TSS_LIMIT
    .quad 0
gdt_template_end:
gdt_ram_desc:
    .word gdt_template_end - gdt_template - 1
    .long GDT_RAM
    .popsection

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
   EIP by IRET, which also returns to CPL 3 or virtual-8086 mode (SDM Vol 2A
   IRET). DS is saved and set: from virtual-8086 mode it arrives null (SDM
   Vol 3A 20.3.1.1), from CPL 3 it is the DPL-3 segment IRET must keep.
   An unannounced #GP with LEAVE_TARGET set is a LEAVE_TO. */
pm_fault:
    push %ds
    push %eax
    mov $SEL_DATA, %ax
    mov %ax, %ds
    /* 0 eax, 4 ds, 8 vector, 12 error code, 16 eip, 20 cs, 24 eflags,
       then esp, ss from CPL 3 and es, ds, fs, gs from virtual-8086 mode. */
    mov 8(%esp), %eax
    mov %eax, FAULT_VECTOR
    mov 12(%esp), %eax
    mov %eax, FAULT_ERROR
    mov FAULT_SKIP, %eax
    test %eax, %eax
    jz 1f
    add %eax, 16(%esp)
    movl $0, FAULT_SKIP
    pop %eax
    pop %ds
    add $8, %esp
    iretl
1:  mov $SEL_DATA, %ax
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    cmpl $13, FAULT_VECTOR
    jne 2f
    mov LEAVE_TARGET, %eax
    test %eax, %eax
    jz 2f
    movl $0, LEAVE_TARGET
    mov $STACK_TOP, %esp
    jmp *%eax
2:  PUTS "FAIL pm-unexpected-exception: vector "
    mov FAULT_VECTOR, %eax
    call puthex_pm
    PUTS " error "
    mov FAULT_ERROR, %eax
    call puthex_pm
    PUTS " cs "
    mov 20(%esp), %eax
    call puthex_pm
    PUTS " eip "
    mov 16(%esp), %eax
    call puthex_pm
    mov $10, %al
    call putc_pm
    mov $1, %eax
    out %eax, $DEBUG_EXIT
3:  cli
    hlt
    jmp 3b

/* 16-bit protected mode: CS = SEL_CODE16 (D = 0, base IMAGE_BASE), so the
   real-mode routines and IMAGE_PTR offsets serve; DS and SS stay flat (SS.B
   = 1: the stack is addressed through ESP). Faults arrive through IDT32. */
MODE16
main_p16:
    PRINTLN "hostile-cpu: 16-bit protected mode"
    /* The mode itself: CS = SEL_CODE16 and a PUSH without prefix moves the
       stack by 2 (CS.D = 0, SDM Vol 3A 3.4.5). got = CS << 16 | bytes. */
    mov %esp, %ebx
    push $0
    mov %ebx, %ecx
    sub %esp, %ecx
    mov %ebx, %esp
    mov %cs, %ax
    movzwl %ax, %eax
    shl $16, %eax
    or %eax, %ecx
    CHECK_EQ "p16-cs-d0-push-2-bytes", (SEL_CODE16 << 16) | 2
    call pse_safety_net_rm
    mov %cr0, %eax
    and $~1, %eax
    or $0x80000020, %eax
    TRY "p16-cr0-pg-without-pe-gp", GP0, 3, mov %eax, %cr0
    mov SAVED_CR0, %eax
    mov %eax, %cr0
    ljmp $SEL_CODE16, $(1f - IMAGE_BASE)  /* PE may have been cleared: reload CS */
1:  mov SAVED_CR4, %eax
    mov %eax, %cr4
    COMMON_CHECKS p16, GP0, UD, %eax
    ljmpl $SEL_CODE32, $after_p16

/* Virtual-8086 mode, CPL 3: the real-mode routines again, at CS = 0xF000. */
main_v86:
    PRINTLN "hostile-cpu: virtual-8086 mode"
    /* The mode itself: CR0.PE = 1 (SMSW is not privileged) while CS holds
       a segment, not a selector. got = PE << 16 | CS. */
    smsw %ax
    and $1, %eax
    shl $16, %eax
    mov %cs, %cx
    movzwl %cx, %ecx
    or %eax, %ecx
    CHECK_EQ "v86-pe-with-segment-cs", 0x1F000
    PRIV_CHECKS v86, %eax
    LEAVE_TO after_v86

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

    /* Compatibility mode: a far return to SEL_CODE32 (L = 0, D = 1) while
       IA32_EFER.LMA = 1 (SDM Vol 3A 5.2.1). Faults still go through the
       64-bit IDT. */
    pushq $SEL_CODE32
    pushq $main_cm
    lretq
after_cm:
    mov $SEL_DATA, %eax
    mov %eax, %ss

    /* CPL 3 in 64-bit mode: the identity map gets the U/S bit on the path
       to the first 2 MiB (SDM Vol 3A 4.6.1), TR a 64-bit TSS with RSP0,
       and IDT64's #GP gate our stub, which handles LEAVE_TO and passes
       every other #GP to the library's. */
    orq $4, PML4
    orq $4, PDPT
    orq $4, PD
    mov %cr3, %rax
    mov %rax, %cr3
    movl $0, TSS + 8                /* RSP0 bits 63:32 */
    mov $SEL_TSS64, %eax
    ltr %ax
    movzwl IDT64 + 13 * 16, %eax
    movzwl IDT64 + 13 * 16 + 6, %ecx
    shl $16, %ecx
    or %ecx, %eax
    mov %rax, LM_GP_STUB
    mov $lm_gp, %eax
    mov %ax, IDT64 + 13 * 16
    shr $16, %eax
    mov %ax, IDT64 + 13 * 16 + 6
    mov %cr0, %rax
    mov %eax, SAVED_CR0
    mov %cr4, %rax
    mov %eax, SAVED_CR4
    pushq $SEL_UDATA                /* SS */
    pushq $USER_STACK               /* RSP */
    pushq $0x2                      /* RFLAGS: IOPL 0, IF 0 */
    pushq $SEL_UCODE64
    pushq $main_lm_cpl3
    iretq
main_lm_cpl3:
    PRINTLN "hostile-cpu: CPL 3 in 64-bit mode"
    mov %cs, %ecx
    and $3, %ecx
    CHECK_EQ "lm-cpl3-cs-rpl-3", 3
    PRIV_CHECKS lm-cpl3, %rax
    LEAVE_TO after_lm_cpl3
after_lm_cpl3:
    jmp finish

/* IDT64 vector 13: LEAVE_TO, or the library's handler. */
lm_gp:
    cmpl $0, FAULT_SKIP
    jne 1f
    mov LEAVE_TARGET, %eax
    test %eax, %eax
    jz 1f
    movl $0, LEAVE_TARGET
    mov $SEL_DATA, %ecx
    mov %ecx, %ss
    mov $STACK_TOP, %esp
    jmp *%rax
1:  jmp *LM_GP_STUB

MODE32
main_cm:
    PRINTLN "hostile-cpu: compatibility mode"
    /* The mode itself: CS = SEL_CODE32 with IA32_EFER.LMA (bit 10) set.
       got = CS << 16 | LMA. */
    mov $0xC0000080, %ecx
    rdmsr
    shr $10, %eax
    and $1, %eax
    mov %cs, %cx
    movzwl %cx, %ecx
    shl $16, %ecx
    or %eax, %ecx
    CHECK_EQ "cm-cs-code32-efer-lma", (SEL_CODE32 << 16) | 1
    /* Compatibility mode (SDM Vol 2B MOV to CR, Vol 3A 4.1.2): clearing
       CR4.PAE would leave IA-32e mode, #GP(0); PG without PE, #GP(0). */
    mov %cr4, %eax
    btr $5, %eax
    TRY "cm-cr4-clear-pae-gp", GP0, 3, mov %eax, %cr4
    mov %cr0, %eax
    btr $0, %eax
    TRY "cm-cr0-pg-without-pe-gp", GP0, 3, mov %eax, %cr0
    COMMON_CHECKS cm, GP0, UD, %eax
    ljmp $SEL_CODE64, $after_cm
"#,
    options(att_syntax)
);
