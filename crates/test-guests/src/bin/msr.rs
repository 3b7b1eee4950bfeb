//! The MSR surface of docs/MSRS.md, from long mode at CPL 0: every MSR of
//! the table that the guest's CPUID implies is read and written, with the
//! values and faults the vendor manuals give, and RDPMC is checked against
//! the performance-monitoring personality CPUID describes.
//!
//! The guest decides what to expect from CPUID alone, as the table does:
//! the vendor of leaf 0 (Intel or AMD), the display family of leaf 1, and
//! the feature bits that imply MSRs (MCE and MCA in leaf 1 EDX, TSC_ADJUST
//! in leaf 7 EBX, RDPID in leaf 7 ECX, RDTSCP in Fn8000_0001 EDX, OSVW and
//! PerfCtrExtCore in Fn8000_0001 ECX, the counters of leaf 0AH, x2APIC in
//! leaf 1 ECX: the local APIC's x2APIC mode and MSRs 800H-8FFH). So the
//! same image runs on QEMU's CPU models (SVM) and Bochs' (VMX).
//!
//! Faults are #GP(0) (SDM Vol 2B RDMSR, WRMSR, RDPMC; APM Vol 3): an MSR
//! the CPU lacks, a write with reserved bits, a write to a read-only MSR,
//! a write of anything but 0 to MCi_STATUS/ADDR/MISC (SDM Vol 3B
//! 16.3.2.2), anything but 0 or all ones to MCG_CTL and MCi_CTL.
//!
//! Protection keys (PKU, in leaf 7 ECX) are checked from the same CPUID:
//! offered, the guest sets CR4.PKE, sees OSPKE, keeps PKRU across exits and
//! XSAVE/XRSTOR, and a key whose access is disabled faults; not offered,
//! CR4.PKE raises #GP(0).
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
.set VENDOR,    0x600   /* 1 Intel, 2 AMD (or Hygon), 0 other */
.set FAMILY,    0x604   /* display family */
.set L1_EDX,    0x608
.set L7_EBX,    0x60C
.set L7_ECX,    0x610
.set E1_ECX,    0x614
.set E1_EDX,    0x618
.set PMU_GP,    0x61C   /* CPUID.0AH:EAX[15:8]: general-purpose counters */
.set VAL_LO,    0x620
.set VAL_HI,    0x624
.set MAX_LEAF,  0x628
.set L1_ECX,    0x62C
.set XCR0_OK,   0x630   /* CPUID.0DH:EAX: the components offered */
.set YMM_IN,    0x2000  /* 32 bytes: the pattern loaded into YMM1 */
.set YMM_OUT,   0x2040  /* 32 bytes: YMM1 read back */
.set XSAVE_AT,  0x3000  /* 4 KiB XSAVE area, 64-byte aligned */
.set CR4_PKE,   (1 << 22)
.set PKEY_PAGE, 0x200000 /* the 2 MiB page of PDE 1: made user-mode, key 1 */
.set PKRU_AD1,  (1 << 2) /* PKRU: access disable for key 1 (SDM Vol 3A 4.6.2) */
/* #PF of a supervisor read of a present page, PK set (SDM Vol 3A 4.7). */
.set PF_PK_READ, (14 << 16) | (1 << 5) | 1

.set NO_FAULT,  0xFFFFFFFF
.set GP0,       (13 << 16)

/* RDMSR of `msr`: %ecx = the fault result, the value in VAL_LO/VAL_HI. */
.macro DO_RDMSR msr
    mov $(\msr), %ecx
    xor %eax, %eax
    xor %edx, %edx
    EXPECT_FAULT 2
    rdmsr
    mov %eax, VAL_LO
    mov %edx, VAL_HI
    FAULT_RESULT
.endm

/* RDMSR of `msr` must not fault and give hi:lo. */
.macro RD_EQ name, msr, lo, hi
    DO_RDMSR \msr
    CHECK_EQ "\name-rd", NO_FAULT
    mov VAL_LO, %ecx
    CHECK_EQ "\name-lo", \lo
    mov VAL_HI, %ecx
    CHECK_EQ "\name-hi", \hi
.endm

/* RDMSR of `msr` must raise #GP(0). */
.macro RD_GP name, msr
    DO_RDMSR \msr
    CHECK_EQ "\name-rd-gp", GP0
.endm

/* WRMSR of hi:lo to `msr` must give `expected` (NO_FAULT or GP0). */
.macro WR name, msr, lo, hi, expected
    mov $(\msr), %ecx
    mov $(\lo), %eax
    mov $(\hi), %edx
    EXPECT_FAULT 2
    wrmsr
    FAULT_RESULT
    CHECK_EQ "\name", \expected
.endm

/* Jump to `label` unless bit `bit` of the dword at `mem` is set. */
.macro UNLESS_BIT mem, bit, label
    testl $(1 << \bit), \mem
    jz \label
.endm

/* RDPMC of counter `index` must give `expected`; a read gives 0. */
.macro RDPMC_CHECK name, index, expected
    mov $(\index), %ecx
    mov $0x1111, %eax
    mov $0x2222, %edx
    EXPECT_FAULT 2
    rdpmc
    mov %eax, VAL_LO
    mov %edx, VAL_HI
    FAULT_RESULT
    CHECK_EQ "\name", \expected
    .if \expected == NO_FAULT
    mov VAL_LO, %ecx
    or VAL_HI, %ecx
    CHECK_EQ "\name-value", 0
    .endif
.endm

MODE16
    .text
.global guest_main16
guest_main16:
    PRINTLN "msr: real mode, entering long mode"
    GOTO_PROTECTED protected

MODE32
protected:
    GOTO_LONG long

MODE64
long:
    PRINTLN "msr: long mode"
    call read_cpuid
    call common_msrs
    call x2apic_msrs
    call xsave_state
    call protection_keys
    call cr4_smep
    call invariant_tsc
    cmpl $1, VENDOR
    jne 1f
    PRINTLN "msr: GenuineIntel"
    call intel_msrs
    jmp finish
1:  cmpl $2, VENDOR
    jne 2f
    PRINTLN "msr: AuthenticAMD"
    call amd_msrs
2:  jmp finish

/* The facts the table depends on (SDM Vol 2A CPUID; APM Vol 3 CPUID). */
read_cpuid:
    xor %eax, %eax
    xor %ecx, %ecx
    cpuid
    mov %eax, MAX_LEAF
    cmp $0x756e6547, %ebx           /* "Genu" "ineI" "ntel" */
    jne 1f
    cmp $0x6c65746e, %ecx
    jne 1f
    movl $1, VENDOR
    jmp 3f
1:  cmp $0x68747541, %ebx           /* "Auth" "enti" "cAMD" */
    je 2f
    cmp $0x6f677948, %ebx           /* "Hygo" "nGen" "uine" */
    jne 3f
2:  movl $2, VENDOR
3:  mov $1, %eax
    xor %ecx, %ecx
    cpuid
    mov %edx, L1_EDX
    mov %ecx, L1_ECX
    mov %eax, %ebx
    shr $8, %ebx
    and $0xf, %ebx
    cmp $0xf, %ebx
    jne 4f
    mov %eax, %ecx
    shr $20, %ecx
    and $0xff, %ecx
    add %ecx, %ebx
4:  mov %ebx, FAMILY
    cmpl $7, MAX_LEAF
    jb 5f
    mov $7, %eax
    xor %ecx, %ecx
    cpuid
    mov %ebx, L7_EBX
    mov %ecx, L7_ECX
5:  cmpl $0xa, MAX_LEAF
    jb 6f
    cmpl $1, VENDOR
    jne 6f
    mov $0xa, %eax
    xor %ecx, %ecx
    cpuid
    shr $8, %eax
    and $0xff, %eax
    mov %eax, PMU_GP
6:  mov $0x80000000, %eax
    xor %ecx, %ecx
    cpuid
    cmp $0x80000001, %eax
    jb 7f
    mov $0x80000001, %eax
    xor %ecx, %ecx
    cpuid
    mov %ecx, E1_ECX
    mov %edx, E1_EDX
7:  ret

/* MSRs of both vendors. */
common_msrs:
    /* TSC (SDM Vol 3B 18.17): a write sets it; it then counts on, as
       RDTSC shows. (RDMSR of the TSC is not intercepted: under QEMU TCG
       it does not add the VMCB's TSC offset, so only its fault is checked.) */
    WR "tsc-wr", 0x10, 0, 1, NO_FAULT
    rdtsc
    mov %edx, %ecx
    CHECK_EQ "tsc-after-write-hi", 1
    DO_RDMSR 0x10
    CHECK_EQ "tsc-rd", NO_FAULT

    /* TSC_ADJUST exactly when CPUID.7.0:EBX[1] (SDM Vol 3B 18.17.3). */
    UNLESS_BIT L7_EBX, 1, 1f
    WR "tsc-adjust-wr", 0x3b, 0, 0, NO_FAULT
    RD_EQ "tsc-adjust", 0x3b, 0, 0
    jmp 2f
1:  RD_GP "tsc-adjust-absent", 0x3b
2:
    /* BIOS_SIGN_ID / PATCH_LEVEL: no microcode update loaded. */
    WR "bios-sign-id-wr", 0x8b, 0, 0, NO_FAULT
    RD_EQ "bios-sign-id", 0x8b, 0, 0

    /* MTRRs (SDM Vol 3A 12.11): MTRRcap read-only, 8 variable ranges,
       fixed ranges, WC; MTRRdefType bits 63:12 and 9:8 reserved. */
    RD_EQ "mtrrcap", 0xfe, 0x508, 0
    WR "mtrrcap-wr-gp", 0xfe, 0, 0, GP0
    WR "mtrr-def-type-wr", 0x2ff, 0xc06, 0, NO_FAULT
    RD_EQ "mtrr-def-type", 0x2ff, 0xc06, 0
    WR "mtrr-def-type-reserved-gp", 0x2ff, 0x1006, 0, GP0
    WR "mtrr-def-type-reserved-hi-gp", 0x2ff, 0, 1, GP0
    WR "mtrr-def-type-off", 0x2ff, 0, 0, NO_FAULT
    WR "mtrr-physbase7-wr", 0x20e, 0x80000006, 0, NO_FAULT
    RD_EQ "mtrr-physbase7", 0x20e, 0x80000006, 0
    WR "mtrr-fix64k-wr", 0x250, 0x06060606, 0x06060606, NO_FAULT
    RD_EQ "mtrr-fix64k", 0x250, 0x06060606, 0x06060606
    RD_GP "mtrr-physbase8-absent", 0x210

    /* Machine check (SDM Vol 3B 16.3). */
    UNLESS_BIT L1_EDX, 14, 1f
    RD_EQ "mcg-cap", 0x179, 0x104, 0
    WR "mcg-cap-wr-gp", 0x179, 0x104, 0, GP0
    WR "mcg-ctl-ones", 0x17b, 0xffffffff, 0xffffffff, NO_FAULT
    RD_EQ "mcg-ctl", 0x17b, 0xffffffff, 0xffffffff
    WR "mcg-ctl-other-gp", 0x17b, 1, 0, GP0
    WR "mc0-ctl-ones", 0x400, 0xffffffff, 0xffffffff, NO_FAULT
    RD_EQ "mc0-ctl", 0x400, 0xffffffff, 0xffffffff
    WR "mc0-ctl-other-gp", 0x400, 5, 0, GP0
    WR "mc0-ctl-zero", 0x400, 0, 0, NO_FAULT
    RD_EQ "mc0-status", 0x401, 0, 0
    WR "mc0-status-zero", 0x401, 0, 0, NO_FAULT
    WR "mc0-status-nonzero-gp", 0x401, 0, 0x80000000, GP0
    RD_EQ "mc3-addr", 0x40e, 0, 0
    WR "mc3-addr-nonzero-gp", 0x40e, 0x1000, 0, GP0
    RD_EQ "mc3-misc", 0x40f, 0, 0
    RD_GP "mc4-ctl-absent", 0x410
    jmp 2f
1:  RD_GP "mcg-cap-absent", 0x179
    RD_GP "mc0-ctl-absent", 0x400
2:  testl $((1 << 7) | (1 << 14)), L1_EDX
    jz 3f
    WR "mcg-status-wr", 0x17a, 0, 0, NO_FAULT
    RD_EQ "mcg-status", 0x17a, 0, 0
    WR "mcg-status-reserved-gp", 0x17a, 8, 0, GP0
    jmp 4f
3:  RD_GP "mcg-status-absent", 0x17a
4:
    /* DEBUGCTL: no LBR, no BTF. */
    WR "debugctl-wr", 0x1d9, 0, 0, NO_FAULT
    RD_EQ "debugctl", 0x1d9, 0, 0

    /* EFER: SVME is hidden with CPUID's SVM bit (APM Vol 2 3.1.7). */
    DO_RDMSR 0xc0000080
    CHECK_EQ "efer-rd", NO_FAULT
    mov VAL_LO, %ecx
    and $0x500, %ecx
    CHECK_EQ "efer-lme-lma", 0x500
    mov $0xc0000080, %ecx
    mov VAL_LO, %eax
    or $0x1000, %eax
    mov VAL_HI, %edx
    EXPECT_FAULT 2
    wrmsr
    FAULT_RESULT
    CHECK_EQ "efer-svme-gp", GP0

    /* TSC_AUX with RDTSCP or RDPID (APM Vol 2 13.2.4; SDM Vol 3B 18.17.2). */
    testl $(1 << 27), E1_EDX
    jnz 1f
    testl $(1 << 22), L7_ECX
    jnz 1f
    RD_GP "tsc-aux-absent", 0xc0000103
    WR "tsc-aux-absent-wr", 0xc0000103, 0, 0, GP0
    EXPECT_FAULT 3
    rdtscp
    FAULT_RESULT
    CHECK_EQ "rdtscp-absent-ud", (6 << 16)
    jmp 3f
1:  WR "tsc-aux-wr", 0xc0000103, 0x1234, 0, NO_FAULT
    RD_EQ "tsc-aux", 0xc0000103, 0x1234, 0
    UNLESS_BIT E1_EDX, 27, 3f
    xor %ecx, %ecx
    rdtscp
    CHECK_EQ "rdtscp-ecx-is-tsc-aux", 0x1234
3:
    /* An MSR no vendor has. */
    RD_GP "unknown", 0x0badc0de
    WR "unknown-wr", 0x0badc0de, 0, 0, GP0
    ret

/* XSAVE (SDM Vol 1 13; Vol 2C XSETBV/XGETBV/XSAVE/XRSTOR), only where
   CPUID.1:ECX.XSAVE[26] offers it: CR4.OSXSAVE shows in CPUID.1:ECX[27],
   leaf 0DH's EBX is the area size for the XCR0 now set, XSETBV of a value
   without x87 or with a component leaf 0DH does not offer raises #GP(0),
   and with AVX (CPUID.1:ECX[28]) YMM1 keeps its value across a CPUID and a
   port-I/O exit and across XSAVE / XRSTOR. */
xsave_state:
    UNLESS_BIT L1_ECX, 26, 9f
    mov %cr4, %rax
    or $((1 << 18) | (1 << 10) | (1 << 9)), %rax   /* OSXSAVE, OSXMMEXCPT, OSFXSR */
    mov %rax, %cr4
    mov $1, %eax
    cpuid
    and $(1 << 27), %ecx
    CHECK_EQ "osxsave-in-cpuid", (1 << 27)
    mov $0xd, %eax
    xor %ecx, %ecx
    cpuid
    mov %eax, XCR0_OK
    mov %ebx, %ecx
    CHECK_EQ "xsave-size-xcr0-x87", 576
    xor %ecx, %ecx
    xor %eax, %eax
    xor %edx, %edx
    EXPECT_FAULT 3
    xsetbv
    FAULT_RESULT
    CHECK_EQ "xsetbv-without-x87-gp", GP0
    xor %ecx, %ecx
    mov XCR0_OK, %eax
    or $(3 << 17), %eax     /* AMX TILECFG+TILEDATA: never offered */
    xor %edx, %edx
    EXPECT_FAULT 3
    xsetbv
    FAULT_RESULT
    CHECK_EQ "xsetbv-amx-gp", GP0
    mov $1, %ecx
    mov $1, %eax
    xor %edx, %edx
    EXPECT_FAULT 3
    xsetbv
    FAULT_RESULT
    CHECK_EQ "xsetbv-xcr1-gp", GP0
    xor %ecx, %ecx
    mov XCR0_OK, %eax
    xor %edx, %edx
    EXPECT_FAULT 3
    xsetbv
    FAULT_RESULT
    CHECK_EQ "xsetbv-offered", NO_FAULT
    xor %ecx, %ecx
    xgetbv
    xor %ecx, %ecx
    cmp XCR0_OK, %eax
    sete %cl
    CHECK_EQ "xgetbv-is-xcr0", 1
    /* EBX now covers every enabled component: it equals ECX (all offered). */
    mov $0xd, %eax
    xor %ecx, %ecx
    cpuid
    xor %eax, %eax
    cmp %ebx, %ecx
    sete %al
    mov %eax, %ecx
    CHECK_EQ "xsave-size-matches-xcr0", 1
    UNLESS_BIT L1_ECX, 28, 9f
    testl $4, XCR0_OK
    jz 9f
    /* A pattern in YMM1 across a CPUID exit and a port-I/O exit. */
    mov $YMM_IN, %rdi
    mov $0x0123456789abcdef, %rax
    mov $4, %ecx
1:  mov %rax, (%rdi)
    add $8, %rdi
    rol $8, %rax
    loop 1b
    vmovdqu YMM_IN, %ymm1
    xor %eax, %eax
    cpuid
    mov $COM1_SCR, %dx
    in %dx, %al
    vmovdqu %ymm1, YMM_OUT
    call ymm_matches
    CHECK_EQ "avx-ymm1-survives-exits", 1
    /* XSAVE with AVX in use, clobber YMM1, XRSTOR brings it back. */
    mov $XSAVE_AT, %rdi
    mov $512, %ecx
    xor %eax, %eax
    rep stosq
    mov $-1, %eax
    mov $-1, %edx
    xsave64 XSAVE_AT
    mov XSAVE_AT + 512, %ecx         /* XSTATE_BV */
    and $4, %ecx
    CHECK_EQ "xsave-avx-in-use", 4
    vpxor %ymm1, %ymm1, %ymm1
    mov $-1, %eax
    mov $-1, %edx
    xrstor64 XSAVE_AT
    vmovdqu %ymm1, YMM_OUT
    call ymm_matches
    CHECK_EQ "xrstor-restores-ymm1", 1
9:  ret

/* WRPKRU of `value` (SDM Vol 2B WRPKRU: ECX = EDX = 0). */
.macro SET_PKRU value
    xor %ecx, %ecx
    xor %edx, %edx
    mov $(\value), %eax
    wrpkru
.endm

/* %ecx = PKRU (RDPKRU: ECX = 0). */
.macro GET_PKRU
    xor %ecx, %ecx
    rdpkru
    mov %eax, %ecx
.endm

/* Protection keys for user-mode pages where CPUID.7.0:ECX.PKU[3] offers
   them (SDM Vol 3A 4.6.2, 2.5; Vol 2B RDPKRU/WRPKRU): CR4.PKE can be set and
   shows as OSPKE (ECX[4]); PKRU keeps its value across a CPUID and a
   port-I/O exit; a supervisor read of a user page whose key has access
   disabled faults #PF with PK (error code bit 5), and reads once PKRU
   allows it; with PKRU in XCR0 (component 9, Vol 1 13.5.7) XSAVE stores
   it where leaf 0DH sub-leaf 9 says and XRSTOR loads it. Without PKU,
   CR4.PKE is reserved (#GP(0)) and RDPKRU #UD. Runs after xsave_state,
   which set XCR0 to every offered component. */
protection_keys:
    UNLESS_BIT L7_ECX, 3, 8f
    mov $7, %eax
    xor %ecx, %ecx
    cpuid
    and $(1 << 4), %ecx
    CHECK_EQ "ospke-clear", 0
    mov %cr4, %rax
    or $CR4_PKE, %rax
    EXPECT_FAULT 3
    mov %rax, %cr4
    FAULT_RESULT
    CHECK_EQ "cr4-pke", NO_FAULT
    mov $7, %eax
    xor %ecx, %ecx
    cpuid
    and $(1 << 4), %ecx
    CHECK_EQ "ospke-in-cpuid", (1 << 4)
    SET_PKRU PKRU_AD1
    xor %eax, %eax
    cpuid
    mov $COM1_SCR, %dx
    in %dx, %al
    GET_PKRU
    CHECK_EQ "pkru-survives-exits", PKRU_AD1
    /* PDE 1 (2-4 MiB) becomes a user page with protection key 1
       (bits 62:59); PML4E and PDPTE 0 allow user mode (Vol 3A 4.6.1). */
    orl $4, PML4
    orl $4, PDPT
    movl $(PKEY_PAGE | 0x87), PD + 8
    movl $(1 << (59 - 32)), PD + 12
    mov %cr3, %rax
    mov %rax, %cr3
    mov $PKEY_PAGE, %rsi
    EXPECT_FAULT 2
    mov (%rsi), %eax
    FAULT_RESULT
    CHECK_EQ "pkey-access-disabled-pf", PF_PK_READ
    SET_PKRU 0
    mov $PKEY_PAGE, %rsi
    EXPECT_FAULT 2
    mov (%rsi), %eax
    FAULT_RESULT
    CHECK_EQ "pkey-access-allowed", NO_FAULT
    testl $(1 << 9), XCR0_OK
    jz 9f
    /* XSAVE of PKRU alone (EDX:EAX = 200h), PKRU cleared, XRSTOR. */
    SET_PKRU PKRU_AD1
    mov $XSAVE_AT, %rdi
    mov $512, %ecx
    xor %eax, %eax
    rep stosq
    mov $(1 << 9), %eax
    xor %edx, %edx
    xsave64 XSAVE_AT
    mov XSAVE_AT + 512, %ecx         /* XSTATE_BV */
    and $(1 << 9), %ecx
    CHECK_EQ "xsave-pkru-in-use", (1 << 9)
    mov $0xd, %eax
    mov $9, %ecx
    cpuid
    mov XSAVE_AT(%rbx), %ecx
    CHECK_EQ "xsave-pkru-value", PKRU_AD1
    SET_PKRU 0
    mov $(1 << 9), %eax
    xor %edx, %edx
    xrstor64 XSAVE_AT
    GET_PKRU
    CHECK_EQ "xrstor-restores-pkru", PKRU_AD1
    SET_PKRU 0
    jmp 9f
8:  mov %cr4, %rax
    or $CR4_PKE, %rax
    EXPECT_FAULT 3
    mov %rax, %cr4
    FAULT_RESULT
    CHECK_EQ "cr4-pke-absent-gp", GP0
    xor %ecx, %ecx
    EXPECT_FAULT 3
    rdpkru
    FAULT_RESULT
    CHECK_EQ "rdpkru-absent-ud", (6 << 16)
9:  ret

/* CR4.SMEP (bit 20) exactly when CPUID.7.0:EBX.SMEP[7] offers it (SDM
   Vol 3A 2.5: a CR4 bit of an absent feature is reserved, #GP(0)), so a
   configuration that hides SMEP on a CPU that has it hides the bit too. */
cr4_smep:
    mov %cr4, %rax
    or $(1 << 20), %rax
    EXPECT_FAULT 3
    mov %rax, %cr4
    FAULT_RESULT
    UNLESS_BIT L7_EBX, 7, 1f
    CHECK_EQ "cr4-smep", NO_FAULT
    mov %cr4, %rax
    and $~(1 << 20), %rax
    mov %rax, %cr4
    ret
1:  CHECK_EQ "cr4-smep-absent-gp", GP0
    ret

/* Fn8000_0007 (APM Vol 3 CPUID Fn8000_0007; SDM Vol 2A CPUID 80000007H):
   EDX[8] TscInvariant, the host's, and nothing else (the power-management
   and RAS interfaces are not emulated); a line says which, for the host
   test to compare with the CPU and the configuration. */
invariant_tsc:
    mov $0x80000000, %eax
    xor %ecx, %ecx
    cpuid
    cmp $0x80000007, %eax
    jb 9f
    mov $0x80000007, %eax
    xor %ecx, %ecx
    cpuid
    mov %edx, VAL_LO
    or %ebx, %eax
    or %eax, %ecx
    and $~(1 << 8), %edx
    or %edx, %ecx
    CHECK_EQ "e7-only-invariant-tsc", 0
    UNLESS_BIT VAL_LO, 8, 1f
    PRINTLN "msr: invariant TSC"
    ret
1:  PRINTLN "msr: no invariant TSC"
9:  ret

/* %ecx = 1 if the 32 bytes at YMM_OUT equal those at YMM_IN. */
ymm_matches:
    mov $YMM_IN, %rsi
    mov $YMM_OUT, %rdi
    mov $32, %ecx
    repe cmpsb
    sete %cl
    movzbl %cl, %ecx
    ret

/* Intel: SDM Vol 4 Table 2-2. */
intel_msrs:

    RD_EQ "platform-id", 0x17, 0, 0
    RD_EQ "feature-control", 0x3a, 1, 0
    WR "feature-control-locked-gp", 0x3a, 5, 0, GP0
    WR "bios-updt-trig", 0x79, 0, 0, NO_FAULT
    DO_RDMSR 0xce
    CHECK_EQ "platform-info-rd", NO_FAULT
    WR "platform-info-wr-gp", 0xce, 0, 0, GP0

    /* MISC_ENABLE: fast strings, BTS and PEBS unavailable, no PMU (bit 7). */
    RD_EQ "misc-enable", 0x1a0, 0x1801, 0
    WR "misc-enable-no-fast-strings", 0x1a0, 0x1800, 0, NO_FAULT
    RD_EQ "misc-enable-after", 0x1a0, 0x1800, 0
    WR "misc-enable-reserved-gp", 0x1a0, 0x1804, 0, GP0
    WR "misc-enable-limit-cpuid-gp", 0x1a0, 0x401801, 0, GP0
    WR "misc-enable-restore", 0x1a0, 0x1801, 0, NO_FAULT

    /* The architectural PMU exactly as leaf 0AH describes it (SDM Vol 3B
       20.2.1): with no counters every PMU MSR and RDPMC index #GP(0). */
    cmpl $0, PMU_GP
    jne 1f
    RD_GP "pmc0-absent", 0xc1
    WR "pmc0-absent-wr", 0xc1, 0, 0, GP0
    RD_GP "perfevtsel0-absent", 0x186
    RD_GP "fixed-ctr0-absent", 0x309
    RD_GP "perf-global-ctrl-absent", 0x38f
    RDPMC_CHECK "rdpmc-0-gp", 0, GP0
    RDPMC_CHECK "rdpmc-fixed0-gp", 0x40000000, GP0
    jmp 2f
1:  RD_EQ "pmc0", 0xc1, 0, 0
    RDPMC_CHECK "rdpmc-0", 0, NO_FAULT
2:
    /* AMD's MSRs are not there. */
    RD_GP "amd-vm-cr-absent", 0xc0010114
    RD_GP "amd-perfevtsel0-absent", 0xc0010000
    ret

/* The local APIC's x2APIC mode (SDM Vol 3A 11.12) when CPUID.01H:ECX[21]
   offers it: IA32_APIC_BASE's mode transitions (11.12.5), the x2APIC ID and
   the LDR derived from it (11.12.10.2), SELF IPI (11.12.11) and the 64-bit
   ICR with a 32-bit destination (11.12.9), both seen pending in IRR; the
   MSR access rules (11.12.1.2). Interrupts stay off (IF = 0): what is sent
   pends, and disabling the APIC at the end clears it (11.4.3). */
x2apic_msrs:
    UNLESS_BIT L1_ECX, 21, x2apic_hidden
    RD_EQ "apic-base", 0x1b, 0xfee00900, 0
    RD_GP "x2apic-id-in-xapic-mode", 0x802
    WR "apic-base-extd-without-en-gp", 0x1b, 0xfee00500, 0, GP0
    WR "apic-base-reserved-gp", 0x1b, 0xfee00d01, 0, GP0
    WR "apic-base-x2apic", 0x1b, 0xfee00d00, 0, NO_FAULT
    RD_EQ "apic-base-x2apic", 0x1b, 0xfee00d00, 0
    RD_EQ "x2apic-id", 0x802, 0, 0
    /* Cluster 0 (ID 31:4) in bits 31:16, bit 0 (1 << ID 3:0) in 15:0. */
    RD_EQ "x2apic-ldr", 0x80d, 1, 0
    WR "x2apic-ldr-read-only-gp", 0x80d, 1, 0, GP0
    RD_EQ "x2apic-version", 0x803, 0x50014, 0
    WR "x2apic-svr-enable", 0x80f, 0x1ff, 0, NO_FAULT
    /* Vector 61h: IRR bits 127:96 (MSR 823H), bit 1. */
    WR "x2apic-self-ipi", 0x83f, 0x61, 0, NO_FAULT
    RD_EQ "x2apic-irr-self-ipi", 0x823, 0x2, 0
    RD_GP "x2apic-self-ipi-write-only", 0x83f
    WR "x2apic-self-ipi-reserved-gp", 0x83f, 0x61, 1, GP0
    /* Fixed 62h to physical ID 0, fixed 63h to logical cluster 0 bit 0:
       both are this APIC. */
    WR "x2apic-icr-physical", 0x830, 0x62, 0, NO_FAULT
    WR "x2apic-icr-logical", 0x830, 0x863, 1, NO_FAULT
    RD_EQ "x2apic-icr", 0x830, 0x863, 1
    RD_EQ "x2apic-irr-icr", 0x823, 0xe, 0
    RD_GP "x2apic-icr-high-absent", 0x831
    WR "x2apic-eoi-nonzero-gp", 0x80b, 1, 0, GP0
    RD_GP "x2apic-eoi-write-only", 0x80b
    /* x2APIC to xAPIC is illegal; through disabled it is not. */
    WR "x2apic-to-xapic-gp", 0x1b, 0xfee00900, 0, GP0
    WR "x2apic-to-disabled", 0x1b, 0xfee00000, 0, NO_FAULT
    RD_GP "x2apic-id-disabled", 0x802
    WR "disabled-to-x2apic-gp", 0x1b, 0xfee00c00, 0, GP0
    WR "disabled-to-xapic", 0x1b, 0xfee00800, 0, NO_FAULT
    RD_EQ "apic-base-xapic-again", 0x1b, 0xfee00900, 0
    ret
x2apic_hidden:
    WR "x2apic-hidden-extd-gp", 0x1b, 0xfee00d00, 0, GP0
    ret

/* AMD: APM Vol 2 Appendix A, 13.2.1, 15.30; the family 0Fh-16h BKDGs. */
amd_msrs:
    /* Legacy counters exist on every AMD CPU; no PMU: they read 0. */
    RD_EQ "perfevtsel0", 0xc0010000, 0, 0
    WR "perfevtsel0-wr", 0xc0010000, 0x430076, 0, NO_FAULT
    RD_EQ "perfevtsel0-dropped", 0xc0010000, 0, 0
    WR "perfevtsel3-bit19-gp", 0xc0010003, 0x80000, 0, GP0
    WR "perfevtsel1-bit21-gp", 0xc0010001, 0x200000, 0, GP0
    WR "perfevtsel2-bit40-gp", 0xc0010002, 0, 0x100, GP0
    WR "perfctr0-wr", 0xc0010004, 0x1234, 0, NO_FAULT
    RD_EQ "perfctr0", 0xc0010004, 0, 0
    RD_EQ "perfctr3", 0xc0010007, 0, 0
    RDPMC_CHECK "rdpmc-0", 0, NO_FAULT
    RDPMC_CHECK "rdpmc-3", 3, NO_FAULT
    UNLESS_BIT E1_ECX, 23, 1f
    RD_EQ "perf-ctl-ext0", 0xc0010200, 0, 0
    RD_EQ "perf-ctr-ext5", 0xc001020b, 0, 0
    RDPMC_CHECK "rdpmc-5", 5, NO_FAULT
    RDPMC_CHECK "rdpmc-6-gp", 6, GP0
    jmp 2f
1:  RD_GP "perf-ctl-ext0-absent", 0xc0010200
    RDPMC_CHECK "rdpmc-4-gp", 4, GP0
2:  RDPMC_CHECK "rdpmc-fixed-gp", 0x40000000, GP0

    RD_EQ "syscfg", 0xc0010010, 0, 0
    RD_EQ "hwcr", 0xc0010015, 0, 0
    WR "hwcr-wr", 0xc0010015, 0, 0, NO_FAULT
    RD_EQ "de-cfg", 0xc0011029, 0, 0

    /* NB_CFG and Interrupt Pending: families 0Fh-16h. */
    cmpl $0xf, FAMILY
    jb 3f
    cmpl $0x16, FAMILY
    ja 3f
    RD_EQ "nb-cfg", 0xc001001f, 0, 0
    RD_EQ "int-pending", 0xc0010055, 0, 0
    WR "int-pending-wr", 0xc0010055, 0, 0, NO_FAULT
    jmp 4f
3:  RD_GP "nb-cfg-absent", 0xc001001f
4:
    /* VM_CR: LOCK and SVMDIS, SVM hidden (APM Vol 2 15.30.1). */
    RD_EQ "vm-cr", 0xc0010114, 0x18, 0
    WR "vm-cr-locked-ignored", 0xc0010114, 0x10, 0, NO_FAULT
    RD_EQ "vm-cr-after", 0xc0010114, 0x18, 0
    WR "vm-cr-reserved-gp", 0xc0010114, 0x20, 0, GP0
    RD_GP "vm-hsave-pa-absent", 0xc0010117

    /* OSVW when Fn8000_0001 ECX[9] (APM Vol 2 3.9). */
    UNLESS_BIT E1_ECX, 9, 5f
    RD_EQ "osvw-id-length", 0xc0010140, 0, 0
    RD_EQ "osvw-status", 0xc0010141, 0, 0
    jmp 6f
5:  RD_GP "osvw-absent", 0xc0010140
6:
    /* Intel's MSRs are not there. */
    RD_GP "intel-feature-control-absent", 0x3a
    RD_GP "intel-misc-enable-absent", 0x1a0
    ret
"#,
    options(att_syntax)
);
