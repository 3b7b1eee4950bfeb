//! The multiboot headers and the 32-bit entry point.
//!
//! GRUB enters `_start` in 32-bit protected mode with paging off, EAX holding
//! the multiboot2 magic and EBX the physical address of the boot information
//! (Multiboot2 spec 3.3). A multiboot (version 1) loader such as QEMU's
//! `-kernel` enters it the same way with its own magic and information
//! (Multiboot 0.6.96, 3.2): Keel's ELF image is 64-bit, which such loaders
//! do not read, so the version 1 header carries the address fields (flag
//! 16) that say where the file's bytes go. The code builds boot page tables that identity-map
//! the first 4 GiB with 2 MiB pages, enables long mode and calls `keel_main`
//! with (magic, boot information address). `arch::paging` then replaces these
//! tables with ones sized from the memory map.

core::arch::global_asm!(
    r#"
    /* Multiboot 0.6.96, 3.1: magic, flags (bit 0 modules page-aligned,
       bit 1 memory map wanted, bit 16 address fields valid), checksum,
       then header, load, load end, BSS end and entry addresses. The file
       from this header back to the image's start is loaded at __keel_start
       (the linker keeps file offsets and addresses in step). */
    .section .multiboot_header, "a"
    .balign 4
mb1_header:
    .long 0x1badb002
    .long 0x00010003
    .long -(0x1badb002 + 0x00010003)
    .long mb1_header
    .long __keel_start
    .long __keel_load_end
    .long __keel_end
    .long _start

    .section .multiboot2_header, "a"
    .balign 8
mb2_header_start:
    .long 0xe85250d6
    .long 0
    .long mb2_header_end - mb2_header_start
    .long -(0xe85250d6 + (mb2_header_end - mb2_header_start))
    .short 0
    .short 0
    .long 8
mb2_header_end:

    .section .text.boot, "ax"
    .code32
    .global _start
_start:
    cli
    cld
    movl $boot_stack_top, %esp
    movl %eax, %edi
    movl %ebx, %esi

    /* PML4[0] -> PDPT; PDPT[0..4] -> 4 page directories of 2 MiB pages */
    movl $boot_pdpt, %eax
    orl $0x3, %eax
    movl %eax, boot_pml4
    movl $boot_pdpt, %ebx
    movl $boot_pd, %eax
    orl $0x3, %eax
    movl $4, %ecx
1:  movl %eax, (%ebx)
    addl $0x1000, %eax
    addl $8, %ebx
    loop 1b
    movl $boot_pd, %ebx
    movl $0x83, %eax
    xorl %edx, %edx
    movl $2048, %ecx
2:  movl %eax, (%ebx)
    movl %edx, 4(%ebx)
    addl $0x200000, %eax
    adcl $0, %edx
    addl $8, %ebx
    loop 2b

    movl %cr4, %eax
    orl $0x20, %eax                 /* CR4.PAE */
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    rdmsr
    orl $0x100, %eax                /* EFER.LME */
    wrmsr
    movl %cr0, %eax
    andl $0x9fffffff, %eax          /* clear CD and NW: GRUB may leave caching off */
    orl $0x80010001, %eax           /* PG, WP, PE */
    movl %eax, %cr0
    lgdt boot_gdt_ptr
    ljmp $0x08, $boot_long_mode

    .code64
boot_long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq $boot_stack_top, %rsp
    movl %edi, %edi
    movl %esi, %esi
    call keel_main
3:  cli
    hlt
    jmp 3b

    /* An application processor arrives here from the trampoline, in long
       mode on the boot page tables, with the stack the BSP chose (arch::smp). */
ap_long_mode:
    movw $0x10, %ax
    movw %ax, %ds
    movw %ax, %es
    movw %ax, %ss
    xorw %ax, %ax
    movw %ax, %fs
    movw %ax, %gs
    movq keel_ap_stack_top(%rip), %rsp
    call keel_ap_main
4:  cli
    hlt
    jmp 4b

    /* The AP trampoline, copied to a page below 1 MiB whose number is the
       SIPI vector: the AP starts in real mode at CS = page << 8, IP = 0
       (SDM Vol 3A 8.4.4.1). It turns on PAE, the boot page tables, LME,
       PE and PG at once, and jumps to 64-bit code in Keel's image. Only
       offsets from its start are used in real mode. */
    .section .text.ap_trampoline, "ax"
    .code16
    .global keel_ap_trampoline
    .global keel_ap_trampoline_end
keel_ap_trampoline:
    cli
    cld
    movw %cs, %ax
    movw %ax, %ds
    lgdtl (ap_gdt_ptr - keel_ap_trampoline)
    movl %cr4, %eax
    orl $0x20, %eax
    movl %eax, %cr4
    movl $boot_pml4, %eax
    movl %eax, %cr3
    movl $0xc0000080, %ecx
    rdmsr
    orl $0x100, %eax
    wrmsr
    movl %cr0, %eax
    andl $0x9fffffff, %eax
    orl $0x80010001, %eax
    movl %eax, %cr0
    ljmpl $0x08, $ap_long_mode
    .balign 8
ap_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt
keel_ap_trampoline_end:
    .code64

    .section .rodata.boot, "a"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data */
boot_gdt_end:
boot_gdt_ptr:
    .short boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .bss.boot, "aw", @nobits
    .balign 4096
boot_pml4:
    .skip 4096
boot_pdpt:
    .skip 4096
boot_pd:
    .skip 4096 * 4
    .global boot_stack_top
boot_stack:
    .skip 65536
boot_stack_top:
    .previous
"#,
    options(att_syntax)
);
