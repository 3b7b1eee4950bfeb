//! From the reset vector to Rust, and from Rust to the kernel.
//!
//! Reset: real mode, CS.base = 0xFFFF0000, IP = 0xFFF0 (SDM Vol 3A 9.1.4),
//! the last 16 bytes of the image as mapped below 4 GiB. A near jump keeps
//! that CS base, so `.early` runs from the ROM: it loads a flat GDT, enters
//! 32-bit protected mode (SDM Vol 3A 9.9.1), copies the image to RAM at
//! RUN_BASE (where it is linked), zeroes .bss and continues there: identity
//! page tables for the low 4 GiB in 2 MiB pages, CR4.PAE, EFER.LME, CR0.PG,
//! a far jump to the 64-bit code segment (SDM Vol 3A 9.8.5), then
//! `shim_main`.
//!
//! The one GDT: 0x08 flat 32-bit code, 0x10 flat 64-bit code (the Linux
//! boot protocol's __BOOT_CS), 0x18 flat data (__BOOT_DS).

use core::arch::global_asm;

global_asm!(
    r#"
.set RUN_BASE,   0x20000
.set ROM_DELTA,  0xFFFC0000     /* ROM address - link address */
.set RM_DELTA,   0x30000        /* link address - real-mode IP */
.set STACK_TOP,  0x1F000
.set PML4,       0x1000
.set PDPT,       0x2000
.set PD,         0x3000         /* four page directories: 0x3000-0x6FFF */
.set SEL_CODE32, 0x08
.set SEL_CODE64, 0x10
.set SEL_DATA,   0x18

    .pushsection .reset, "ax"
    .code16
.global reset_vector
reset_vector:
    jmp rm_entry
    .popsection

    .pushsection .early, "ax"
    .code16
rm_entry:
    cli
    cld
    lgdtl %cs:(rom_gdt_desc - RM_DELTA)
    mov %cr0, %eax
    or $0x1, %eax                   /* CR0.PE */
    mov %eax, %cr0
    ljmpl $SEL_CODE32, $(pm_rom + ROM_DELTA)

    .code32
pm_rom:
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    /* The whole image, ROM -> RAM. */
    mov $(RUN_BASE + ROM_DELTA), %esi
    mov $RUN_BASE, %edi
    mov $(0x20000 / 4), %ecx
    rep movsl
    mov $__bss_start, %edi
    mov $__bss_end, %ecx
    sub %edi, %ecx
    shr $2, %ecx
    xor %eax, %eax
    rep stosl
    mov $pm_ram, %eax
    jmp *%eax

    .balign 8
/* The accessed bit (type bit 0) is set in every descriptor: the first far
   jump reads this GDT from the ROM, and a CPU that had to set the bit would
   write to the ROM (SDM Vol 3A 3.4.5.1), which a hypervisor maps read-only. */
gdt:
    .quad 0
    .quad 0x00CF9B000000FFFF        /* 0x08: 32-bit code, base 0, limit 4 GiB */
    .quad 0x00AF9B000000FFFF        /* 0x10: 64-bit code (L = 1) */
    .quad 0x00CF93000000FFFF        /* 0x18: data, base 0, limit 4 GiB */
gdt_end:
rom_gdt_desc:
    .word gdt_end - gdt - 1
    .long gdt + ROM_DELTA
    .balign 8
.global shim_gdt_desc
shim_gdt_desc:
    .word gdt_end - gdt - 1
    .quad gdt
    .popsection

    .text
    .code32
pm_ram:
    mov $STACK_TOP, %esp
    /* Six zeroed pages: PML4, PDPT, four page directories. */
    mov $PML4, %edi
    mov $(6 * 4096 / 4), %ecx
    xor %eax, %eax
    rep stosl
    movl $(PDPT | 0x3), PML4
    mov $PDPT, %edi
    mov $(PD | 0x3), %eax
    mov $4, %ecx
1:  mov %eax, (%edi)
    add $4096, %eax
    add $8, %edi
    dec %ecx
    jnz 1b
    /* 2048 2 MiB pages (PS | RW | P): 0 .. 4 GiB. */
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
    or $0x100, %eax                 /* LME */
    wrmsr
    mov %cr0, %eax
    or $0x80000000, %eax            /* PG */
    mov %eax, %cr0
    ljmp $SEL_CODE64, $lm_entry

    .code64
lm_entry:
    lgdt shim_gdt_desc(%rip)
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov $STACK_TOP, %rsp
    xor %ebp, %ebp
    call shim_main
3:  cli
    hlt
    jmp 3b

/* enter_linux(entry: rdi, boot_params: rsi): the 64-bit boot protocol. CS is
   already __BOOT_CS (0x10); DS, ES, SS become __BOOT_DS (0x18). */
.global enter_linux
enter_linux:
    cli
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ebp, %ebp
    xor %ebx, %ebx
    jmp *%rdi

/* enter_relocation_stub(stub: edi, table: esi): long mode -> 32-bit
   protected mode with paging off (Multiboot 0.6.96, 3.2), then the
   relocation stub, which the shim copied into the multiboot info area,
   with ESI = its copy table. Runs identity-mapped. */
.global enter_relocation_stub
enter_relocation_stub:
    cli
    lea 4f(%rip), %rax
    push $SEL_CODE32
    push %rax
    lretq
    .code32
4:  mov %cr0, %eax
    and $0x7FFFFFFF, %eax           /* PG off: leaves long mode */
    mov %eax, %cr0
    mov $0xC0000080, %ecx
    rdmsr
    and $0xFFFFFEFF, %eax           /* LME off */
    wrmsr
    mov %cr4, %eax
    and $0xFFFFFFDF, %eax           /* PAE off */
    mov %eax, %cr4
    xor %eax, %eax
    mov %eax, %cr3
    mov $SEL_DATA, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %fs
    mov %ax, %gs
    mov %ax, %ss
    jmp *%edi

/* The relocation stub: position-independent 32-bit code that the shim
   copies into the multiboot info area (keel_shim::multiboot::
   build_relocation) and runs last, from there, with paging off and ESI =
   its copy table: a segment count, the entry, the info block, then per
   segment source, destination, file size, memory size. It copies each
   segment's bytes from the staged image, zeroes its bss and enters the
   kernel with EAX = 0x2BADB002 and EBX = the info block. It needs no
   stack, and nothing it overwrites (the shim's page tables, stack, image,
   GDT) is used after the copy starts: the segment registers keep their
   loaded descriptors (the specification leaves GDTR to the kernel). */
.global relocation_stub_start
relocation_stub_start:
    cld
    mov %esi, %ebp
    mov (%ebp), %edx                /* segments left */
    lea 12(%ebp), %ebx              /* the first segment's row */
5:  test %edx, %edx
    jz 6f
    mov (%ebx), %esi
    mov 4(%ebx), %edi
    mov 8(%ebx), %ecx
    mov %ecx, %eax
    shr $2, %ecx
    rep movsl
    mov %eax, %ecx
    and $3, %ecx
    rep movsb
    mov 12(%ebx), %ecx              /* bss: memsz - filesz, from EDI on */
    sub 8(%ebx), %ecx
    mov %ecx, %esi
    xor %eax, %eax
    shr $2, %ecx
    rep stosl
    mov %esi, %ecx
    and $3, %ecx
    rep stosb
    add $16, %ebx
    dec %edx
    jmp 5b
6:  mov 4(%ebp), %ecx
    mov 8(%ebp), %ebx
    mov $0x2BADB002, %eax
    jmp *%ecx
.global relocation_stub_end
relocation_stub_end:
    .code64
"#,
    options(att_syntax)
);

extern "C" {
    /// Jumps to a Linux kernel's 64-bit entry with RSI = the zero page.
    pub fn enter_linux(entry: u64, boot_params: u64) -> !;
    /// Leaves long mode for 32-bit protected mode with paging off and
    /// jumps to the relocation stub at `stub` (copied there from
    /// [`relocation_stub`]) with ESI = its copy table.
    pub fn enter_relocation_stub(stub: u32, table: u32) -> !;
    static relocation_stub_start: u8;
    static relocation_stub_end: u8;
}

/// The relocation stub's code, which the shim copies into the multiboot
/// info area (`keel_shim::multiboot::build_relocation`).
pub fn relocation_stub() -> &'static [u8] {
    let start = core::ptr::addr_of!(relocation_stub_start);
    let end = core::ptr::addr_of!(relocation_stub_end);
    // SAFETY: the two labels delimit the stub's bytes in the image's
    // .text, which is mapped and never written.
    unsafe { core::slice::from_raw_parts(start, end as usize - start as usize) }
}
