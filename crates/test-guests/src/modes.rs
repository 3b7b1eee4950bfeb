//! Mode switches: real mode -> 32-bit protected mode -> long mode.
//!
//! Both are entered by a jump with the continuation address in %ebx (the guest's
//! `GOTO_PROTECTED`/`GOTO_LONG`); they reset the stack to `STACK_TOP`, as no
//! frame can be returned to across a mode change.
//!
//! - Protected mode: a flat GDT, CR0.PE, a far jump (SDM Vol 3A 9.9.1).
//! - Long mode: PAE page tables identity-mapping the low 4 GiB with 2 MiB pages,
//!   CR4.PAE, CR3, EFER.LME by WRMSR, CR0.PG, a far jump to a 64-bit code segment
//!   (SDM Vol 3A 9.8.5), then a 64-bit IDT for the exceptions 0-31.
//! - An AP's way from its Start-Up IPI to long mode (`GOTO_LONG_AP`): the same
//!   steps on the BSP's page tables and IDT, keeping the AP's own stack.

use core::arch::global_asm;

global_asm!(
    crate::asm_prelude!(),
    r#"
    .pushsection .rodata.gdt, "a"
    .balign 8
/* The GDT lives in the ROM (the i440FX PAM segments forward 0xF0000 to it
   at power-on), so every descriptor has its accessed bit set already: a CPU
   that had to set it would write to ROM (SDM Vol 3A 3.4.5.1). */
gdt:
    .quad 0                         /* null */
    .quad 0x00CF9B000000FFFF        /* SEL_CODE32: base 0, limit 4 GiB, 32-bit, execute/read, accessed */
    .quad 0x00CF93000000FFFF        /* SEL_DATA:   base 0, limit 4 GiB, read/write, accessed */
    .quad 0x00AF9B000000FFFF        /* SEL_CODE64: L = 1, accessed */
gdt_end:
gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt
    .balign 8
idt64_desc:
    .word 32 * 16 - 1
    .quad IDT64
    .popsection

MODE16
    .text
.global enter_protected_mode
enter_protected_mode:
    cli
    lgdtl %cs:(gdt_desc - IMAGE_BASE)
    mov %cr0, %eax
    or $0x1, %eax                   /* CR0.PE */
    mov %eax, %cr0
    ljmpl $SEL_CODE32, $pm_entry

MODE32
pm_entry:
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov $STACK_TOP, %esp
    jmp *%ebx

.global enter_long_mode
enter_long_mode:
    cli
    /* Six zeroed pages: PML4, PDPT, four page directories. */
    mov $PML4, %edi
    mov $(6 * 4096 / 4), %ecx
    xor %eax, %eax
    rep stosl
    movl $(PDPT | 0x3), PML4        /* present, writable */
    mov $PDPT, %edi
    mov $(PD | 0x3), %eax
    mov $4, %ecx
1:  mov %eax, (%edi)
    add $4096, %eax
    add $8, %edi
    dec %ecx
    jnz 1b
    /* 2048 PDEs of 2 MiB pages (PS | writable | present): 0 .. 4 GiB. */
    mov $PD, %edi
    mov $0x83, %eax
    mov $2048, %ecx
2:  mov %eax, (%edi)
    add $0x200000, %eax
    add $8, %edi
    dec %ecx
    jnz 2b
    mov %cr4, %eax
    or $0x20, %eax                  /* CR4.PAE */
    mov %eax, %cr4
    mov $PML4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx           /* IA32_EFER */
    rdmsr
    or $0x100, %eax                 /* EFER.LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax            /* CR0.PG; with LME set this activates long mode */
    mov %eax, %cr0
    ljmp $SEL_CODE64, $lm_entry

MODE64
lm_entry:
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov $STACK_TOP, %esp
    /* IDT64: vector v -> exception_stubs + 16 * v, 64-bit interrupt gate, DPL 0. */
    mov $IDT64, %edi
    xor %ecx, %ecx
1:  mov %ecx, %eax
    shl $4, %eax
    add $exception_stubs, %eax
    IDT_GATE
    add $16, %rdi
    inc %ecx
    cmp $32, %ecx
    jb 1b
    lidt idt64_desc(%rip)
    mov %ebx, %ebx                  /* upper halves are undefined after the switch */
    jmp *%rbx

MODE16
.global enter_long_mode_ap
enter_long_mode_ap:
    cli
    lgdtl %cs:(gdt_desc - IMAGE_BASE)
    mov %cr0, %eax
    or $0x1, %eax                   /* CR0.PE */
    mov %eax, %cr0
    ljmpl $SEL_CODE32, $ap_pm_entry

MODE32
ap_pm_entry:
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    mov %cr4, %eax
    or $0x20, %eax                  /* CR4.PAE */
    mov %eax, %cr4
    mov $PML4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx           /* IA32_EFER */
    rdmsr
    or $0x100, %eax                 /* EFER.LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax            /* CR0.PG */
    mov %eax, %cr0
    ljmp $SEL_CODE64, $ap_lm_entry

MODE64
ap_lm_entry:
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    lidt idt64_desc(%rip)
    mov %ebx, %ebx
    jmp *%rbx

/* One 16-byte stub per exception. Those without an error code push a 0 so that
   every frame looks alike: vector, error code, RIP, CS, RFLAGS, RSP, SS. */
    .balign 16
exception_stubs:
.irp v, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
    .balign 16
    /* SDM Vol 3A 6.13: #DF, #TS, #NP, #SS, #GP, #PF, #AC, #CP, #VC, #SX push one. */
    .if (\v == 8) | (\v == 10) | (\v == 11) | (\v == 12) | (\v == 13) | (\v == 14) | (\v == 17) | (\v == 21) | (\v == 29) | (\v == 30)
    .else
    push $0
    .endif
    push $\v
    jmp exception_common
.endr

/* Record vector and error code. If the guest announced the fault (EXPECT_FAULT),
   skip the faulting instruction and return; otherwise report and finish. */
exception_common:
    push %rax
    mov 8(%rsp), %rax
    mov %eax, FAULT_VECTOR
    mov 16(%rsp), %rax
    mov %eax, FAULT_ERROR
    mov FAULT_SKIP, %eax
    test %eax, %eax
    jz 1f
    movl $0, FAULT_SKIP
    add %rax, 24(%rsp)              /* RIP of the faulting instruction */
    pop %rax
    add $16, %rsp
    iretq
1:  incl FAIL_COUNT
    PUTS "FAIL lm-unexpected-exception: vector "
    mov FAULT_VECTOR, %eax
    call puthex_lm
    PUTS " error "
    mov FAULT_ERROR, %eax
    call puthex_lm
    PUTS " rip "
    mov 24(%rsp), %rax
    call puthex_lm
    mov $10, %al
    call putc_lm
    jmp finish
"#,
    options(att_syntax)
);
