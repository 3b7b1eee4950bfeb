//! A multiboot v1 test kernel for the shim (and any multiboot loader): it
//! checks what the loader hands over and reports on COM1, one `PASS name` or
//! `FAIL name` line per check, then `N passed, M failed`, and writes 0 (all
//! passed) or 1 to the debug-exit port 0xF4.
//!
//! What it expects, fixed here and in xtask (`xtask/src/guest_assets.rs`):
//! - EAX = 0x2BADB002, info flags with memory, cmdline, mods and mmap;
//! - a command line whose arguments after the first word (the kernel's
//!   name: GRUB puts the kernel's path there, iPXE its URL) are `ram=256`
//!   (one module), `ram=256 mods=3` (three modules) or `ram=256 resident`
//!   (one module, from a loader such as iPXE that stays resident in low
//!   memory: the base-memory size, the IVT and the reserved low ranges are
//!   then the loader's, not checked), `ram=256 vga` (one module; the VBE
//!   and framebuffer fields) or `ram=256 low` (one module, from the file
//!   xtask's `mbtest_low` makes: a second segment at 0x7000 whose bytes,
//!   bss and the info block's place it checks, and the command line's first
//!   word `keel-mbtest-low`);
//! - a memory map whose available RAM adds up to between 255 and 256 MiB
//!   (a 256 MiB VM less the holes below 1 MiB), with an entry covering 1 MiB,
//!   and the low map SeaBIOS gives: RAM from 0 to the EBDA at 0x9FC00, the
//!   EBDA and the BIOS area 0xF0000 reserved;
//! - the modules of the table below, in order, page-aligned: module `k` has
//!   `len` bytes, byte `i` being `((i * 0x9E3779B1) >> 24) ^ (k * 0x55)`, and
//!   a string `path args` (as GRUB passes `module /boot/name args`) whose
//!   path's last component is `name` and whose rest is `args`:
//!
//!   | k | name | args | len |
//!   |---|---|---|---|
//!   | 0 | `keel-mbtest-module` | | 65659 |
//!   | 1 | `keel-mbtest-module2` | `second module=2` | 4097 |
//!   | 2 | `keel-mbtest-module3` | `third --last` | 123457 |
//!
//! - the PC state a BIOS leaves (the values SeaBIOS leaves on a PC with
//!   640 KiB of base memory): BDA COM1 at 0x3F8, the equipment word's serial
//!   port count (bits 9-11) matching the BDA's ports and its FPU bit, 639 KiB
//!   at 0x413, the EBDA segment 0x9FC0 at 0x40E and the EBDA's size byte
//!   making up 640 KiB; every IVT vector pointing into 0xF0000-0xFFFFF at
//!   a handler with an IRET (0xCF) in its first 32 bytes; the RSDP found by
//!   the ACPI spec's search (5.2.5.1: the EBDA's first KiB, then
//!   0xE0000-0xFFFFF, 16-byte boundaries) with valid checksums and an RSDT;
//!   the SMBIOS entry point found in 0xF0000-0xFFFFF (DSP0134 5.2.1) with
//!   valid checksums and a structure table starting with type 0;
//! - PCI bus 0 as SeaBIOS leaves it (`keel_shim::pci`): at least 3 BARs
//!   (the IDE's bus-master BAR4, the test device's BAR0 and BAR2 with
//!   `keel_testdev = 1`), each I/O BAR in `0xC000-0xFFFF` and each memory
//!   BAR in `0x80000000-0xFEBFFFFF` (a 256 MiB VM's PCI hole), naturally
//!   aligned, none overlapping another of its kind; I/O and memory decode
//!   on where the function has such BARs; every function with an
//!   interrupt pin having the line `[10, 10, 11, 11][(slot - 1 + pin - 1)
//!   mod 4]` (9 for the PIIX4 PM function); the PIIX3's PIRQ routes
//!   `0x0B0B0A0A`; IRQs 10 and 11 level-triggered in the ELCR.
//!
//! 32-bit code in an x86_64-unknown-none crate (`.code32`), linked flat at
//! 2 MiB by `mbtest.ld`; xtask wraps it into an ELF32 file.

#![cfg_attr(target_os = "none", no_std, no_main)]

#[cfg(not(target_os = "none"))]
fn main() {
    eprintln!("keel-mbtest is a multiboot kernel: build it for x86_64-unknown-none");
}

#[cfg(target_os = "none")]
#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}

#[cfg(target_os = "none")]
core::arch::global_asm!(
    r#"
.set MB_MAGIC,     0x1BADB002
.set MB_FLAGS,     0x00000007          /* page-aligned modules, memory info, video mode */
.set PASS_COUNT,   0x500
.set FAIL_COUNT,   0x504
.set INFO,         0x508
.set NMODS,        0x50C
.set MOD,          0x510
.set FOUND,        0x514
.set EXPECT,       0x518
.set END,          0x51C
.set PCI_VARS,     0x520
.set PDEV,         0x520               /* 0x80000000 | dev << 11 | func << 8 */
.set PCMD,         0x524
.set PNEED,        0x528               /* bit 0: has I/O BARs, bit 1: memory */
.set PBAR,         0x52C
.set PVAL,         0x530
.set PSIZED,       0x534
.set PNBARS,       0x538
.set PBAD_PLACE,   0x53C
.set PBAD_DECODE,  0x540
.set PBAD_LINE,    0x544
.set PPINS,        0x548
.set POVERLAP,     0x54C
.set PCI_VARS_END, 0x550
.set RESIDENT,     0x550               /* 1: a loader stays resident in low memory */
.set VGA,          0x554               /* 1: the VM has QEMU's standard VGA */
.set LOW,          0x558               /* 1: the file has xtask's low segment */
.set LOW_AT,       0x7000              /* the low segment (xtask's mbtest_low) */
.set LOW_FILESZ,   0x1A000
.set LOW_END,      0x28000             /* its bss's end */
.set BARTAB,       0x1000              /* base, end, kind (1 I/O, 2 memory) */
.set BARTAB_MAX,   128
.set STACK_TOP,    0x7000
.set COM1,         0x3F8
.set MIB,          0x100000

    .pushsection .multiboot, "a"
    .long MB_MAGIC
    .long MB_FLAGS
    .long -(MB_MAGIC + MB_FLAGS)
    .long 0, 0, 0, 0, 0                 /* a.out fields (flag 16 clear: unused) */
    .long 0, 1024, 768, 32              /* a linear mode, 1024x768x32 */
    .popsection

.macro STR label, text
    .pushsection .rodata.mbtest, "a"
\label: .asciz "\text"
    .popsection
.endm

/* Record check `name`: PASS if %ecx == \expected (EQ) / %ecx >= (GE). */
.macro CHECK kind, name, expected
    STR .Lname\@, "\name"
    mov $.Lname\@, %esi
    mov $(\expected), %ebx
    call check_\kind
.endm

/* The same, the expected value read from memory. */
.macro CHECKM kind, name, expected
    STR .Lname\@, "\name"
    mov $.Lname\@, %esi
    mov \expected, %ebx
    call check_\kind
.endm

/* The checks of module k (the table in the file's doc comment). */
.macro MODULE k, name, args, len, xor
    STR .Lmn\@, "\name"
    STR .Lma\@, "\args"
    mov INFO, %edi
    mov 24(%edi), %edi
    add $(\k * 16), %edi
    mov %edi, MOD
    mov 4(%edi), %ecx
    sub (%edi), %ecx
    CHECK eq, "module\k-size", \len
    mov MOD, %edi
    mov (%edi), %ecx
    and $0xFFF, %ecx
    CHECK eq, "module\k-page-aligned", 0
    mov MOD, %edi
    mov 8(%edi), %edi
    mov $.Lmn\@, %esi
    mov $.Lma\@, %edx
    call module_string
    CHECK eq, "module\k-string", 0
    mov MOD, %edi
    mov (%edi), %esi
    xor %ecx, %ecx
    xor %ebp, %ebp
1:  cmp $\len, %ecx
    jae 3f
    imul $0x9E3779B1, %ecx, %eax
    shr $24, %eax
    xor $\xor, %al
    cmp (%esi,%ecx), %al
    je 2f
    inc %ebp
2:  inc %ecx
    jmp 1b
3:  mov %ebp, %ecx
    CHECK eq, "module\k-bytes", 0
.endm

    .pushsection .mbentry, "ax"
    .code32
.global mbtest_entry
mbtest_entry:
    cli
    mov $STACK_TOP, %esp
    mov %ebx, INFO
    movl $0, PASS_COUNT
    movl $0, FAIL_COUNT
    mov %eax, %ecx
    push %ecx
    call uart_init
    STR .Lhello, "mbtest: multiboot test kernel running"
    mov $.Lhello, %esi
    call putsln
    pop %ecx
    CHECK eq, "multiboot-magic", 0x2BADB002
    jmp main
    .popsection

    .text
    .code32
/* The video fields (Multiboot 0.6.96, 3.3): with `vga` on the command
   line, flags 11 and 12 and the 1024x768x32 direct-colour mode the header
   asks for, set on the card (its DISPI registers read back) and its
   framebuffer writable; without, neither flag. */
video_checks:
    mov INFO, %edi
    mov (%edi), %ecx
    and $0x1800, %ecx
    cmpl $0, VGA
    jne 1f
    CHECK eq, "no-vga-no-video-fields", 0
    ret
1:  CHECK eq, "info-flags-vbe-and-framebuffer", 0x1800
    mov INFO, %edi
    movzbl 109(%edi), %ecx
    CHECK eq, "framebuffer-type-rgb", 1
    mov INFO, %edi
    movzbl 108(%edi), %ecx
    CHECK eq, "framebuffer-bpp-32", 32
    mov INFO, %edi
    mov 100(%edi), %ecx
    CHECK eq, "framebuffer-width-1024", 1024
    mov INFO, %edi
    mov 104(%edi), %ecx
    CHECK eq, "framebuffer-height-768", 768
    mov INFO, %edi
    mov 96(%edi), %ecx
    CHECK eq, "framebuffer-pitch-4096", 4096
    mov INFO, %edi
    mov 110(%edi), %ecx                 /* red pos, size, green pos, size */
    CHECK eq, "framebuffer-red-16-8-green-8-8", 0x08080810
    mov INFO, %edi
    movzwl 114(%edi), %ecx              /* blue pos, size */
    CHECK eq, "framebuffer-blue-0-8", 0x0800
    mov INFO, %edi
    mov 92(%edi), %ecx
    CHECK eq, "framebuffer-below-4g", 0
    mov INFO, %edi
    mov 88(%edi), %ecx
    and $0xFFFFFF, %ecx
    CHECK eq, "framebuffer-16m-aligned-bar", 0
    mov INFO, %edi
    mov 88(%edi), %ecx
    CHECK ge, "framebuffer-in-the-pci-hole", 0x80000000
    mov INFO, %edi
    movzwl 80(%edi), %ecx
    CHECK eq, "vbe-mode-0x118", 0x118
    mov INFO, %edi
    mov 72(%edi), %edi
    mov (%edi), %ecx
    CHECK eq, "vbe-control-info-signature", 0x41534556
    mov INFO, %edi
    mov 76(%edi), %edi
    mov 40(%edi), %ecx
    mov INFO, %edi
    sub 88(%edi), %ecx
    CHECK eq, "vbe-mode-info-physbaseptr-is-the-framebuffer", 0
    /* The card is in the mode: DISPI XRES (1), ENABLE (4). */
    mov $0x1CE, %dx
    mov $1, %ax
    out %ax, %dx
    mov $0x1CF, %dx
    in %dx, %ax
    movzwl %ax, %ecx
    CHECK eq, "dispi-xres-1024", 1024
    mov $0x1CE, %dx
    mov $4, %ax
    out %ax, %dx
    mov $0x1CF, %dx
    in %dx, %ax
    movzwl %ax, %ecx
    CHECK eq, "dispi-enabled-with-lfb", 0x41
    /* The last pixel of the framebuffer holds what is written. */
    mov INFO, %edi
    mov 88(%edi), %edi
    movl $0x00C0FFEE, (4096 * 767 + 4 * 1023)(%edi)
    mov (4096 * 767 + 4 * 1023)(%edi), %ecx
    CHECK eq, "framebuffer-last-pixel-writable", 0x00C0FFEE
    ret

/* A segment below the shim's end (`low` on the command line, xtask's
   mbtest_low): its file bytes at LOW_AT (module 3's pattern, XOR 0xFF),
   over the shim's stack and part of its image; its bss, over more of the
   shim's image, zeroed up to LOW_END; the info block and the command line,
   modules and map it points to outside the segment; the command line's
   first word the kernel's name. */
low_checks:
    cmpl $0, LOW
    jne 1f
    ret
1:  xor %ecx, %ecx
    xor %ebp, %ebp                      /* bytes that differ */
2:  cmp $LOW_FILESZ, %ecx
    jae 4f
    imul $0x9E3779B1, %ecx, %eax
    shr $24, %eax
    xor $0xFF, %al
    cmp LOW_AT(%ecx), %al
    je 3f
    inc %ebp
3:  inc %ecx
    jmp 2b
4:  mov %ebp, %ecx
    CHECK eq, "low-segment-bytes", 0
    mov $(LOW_AT + LOW_FILESZ), %edi
    xor %ebp, %ebp                      /* bss bytes not zero */
5:  cmp $LOW_END, %edi
    jae 7f
    cmpb $0, (%edi)
    je 6f
    inc %ebp
6:  inc %edi
    jmp 5b
7:  mov %ebp, %ecx
    CHECK eq, "low-segment-bss-zeroed", 0
    xor %ebp, %ebp                      /* pointers into the segment */
    mov INFO, %eax
    call count_if_low
    mov INFO, %edi
    mov 16(%edi), %eax                  /* cmdline */
    call count_if_low
    mov 24(%edi), %eax                  /* mods_addr */
    call count_if_low
    mov 48(%edi), %eax                  /* mmap_addr */
    call count_if_low
    mov %ebp, %ecx
    CHECK eq, "info-clear-of-low-segment", 0
    STR .Llowname, "keel-mbtest-low"
    STR .Llowargs, "ram=256 low"
    mov INFO, %edi
    mov 16(%edi), %edi
    mov $.Llowname, %esi
    mov $.Llowargs, %edx
    call module_string
    CHECK eq, "cmdline-argv0-is-the-kernel", 0
    ret

/* count_if_low: %ebp + 1 if %eax lies in [LOW_AT, LOW_END). */
count_if_low:
    cmp $LOW_AT, %eax
    jb 1f
    cmp $LOW_END, %eax
    jae 1f
    inc %ebp
1:  ret

main:
    mov INFO, %edi
    mov (%edi), %ecx
    and $0x4D, %ecx                     /* memory, cmdline, mods, mmap */
    CHECK eq, "info-flags", 0x4D

    /* Command line: the arguments after the kernel's name, which say how
       many modules to expect. */
    movl $1, NMODS
    movl $0, RESIDENT
    movl $0, VGA
    movl $0, LOW
    mov INFO, %edi
    mov 16(%edi), %edi
    call skip_word
    STR .Lcmd, "ram=256"
    mov $.Lcmd, %esi
    call strcmp
    test %ecx, %ecx
    jz 1f
    STR .Lcmdr, "ram=256 resident"
    mov $.Lcmdr, %esi
    call strcmp
    test %ecx, %ecx
    jnz 2f
    movl $1, RESIDENT
    jmp 1f
2:  STR .Lcmdv, "ram=256 vga"
    mov $.Lcmdv, %esi
    push %edi
    call strcmp
    pop %edi
    test %ecx, %ecx
    jnz 2f
    movl $1, VGA
    jmp 1f
2:  STR .Lcmdl, "ram=256 low"
    mov $.Lcmdl, %esi
    push %edi
    call strcmp
    pop %edi
    test %ecx, %ecx
    jnz 2f
    movl $1, LOW
    jmp 1f
2:  movl $3, NMODS
    STR .Lcmd3, "ram=256 mods=3"
    mov $.Lcmd3, %esi
    call strcmp
1:  CHECK eq, "cmdline", 0
    call video_checks
    call low_checks

    mov INFO, %edi
    mov 4(%edi), %ecx
    CHECK ge, "mem-lower", 600

    /* Memory map: sum type-1 lengths (low dwords; a 256 MiB VM fits), and
       find an available entry with base <= 1 MiB < base + length. */
    mov INFO, %edi
    mov 44(%edi), %edx                  /* mmap_length */
    mov 48(%edi), %edi                  /* mmap_addr */
    add %edi, %edx                      /* end */
    xor %ecx, %ecx                      /* sum */
    xor %ebp, %ebp                      /* covers 1 MiB */
1:  cmp %edx, %edi
    jae 3f
    cmpl $1, 20(%edi)                   /* type */
    jne 2f
    cmpl $0, 8(%edi)                    /* base high */
    jne 2f
    add 12(%edi), %ecx                  /* length low */
    mov 4(%edi), %eax
    cmp $MIB, %eax
    ja 2f
    add 12(%edi), %eax
    cmp $MIB, %eax
    jbe 2f
    mov $1, %ebp
2:  add (%edi), %edi                    /* size field excludes itself */
    add $4, %edi
    jmp 1b
3:  push %ecx
    CHECK ge, "mmap-ram-at-least-255MiB", 255 * MIB
    pop %eax
    mov $(256 * MIB), %ecx
    sub %eax, %ecx                      /* 256 MiB - sum: must not wrap */
    CHECK ge, "mmap-ram-at-most-256MiB", 0
    cmp $(256 * MIB), %eax
    jbe 4f
    STR .Lover, "FAIL mmap: more available RAM than the VM has"
    mov $.Lover, %esi
    call putsln
    incl FAIL_COUNT
4:  mov %ebp, %ecx
    CHECK eq, "mmap-covers-1MiB", 1

    /* The modules. */
    mov INFO, %edi
    mov 20(%edi), %ecx
    CHECKM eq, "mods-count", NMODS
    mov INFO, %edi
    mov 20(%edi), %eax
    cmp NMODS, %eax
    jne bios
    MODULE 0, "keel-mbtest-module", "", 65659, 0x00
    cmpl $3, NMODS
    jne bios
    MODULE 1, "keel-mbtest-module2", "second module=2", 4097, 0x55
    MODULE 2, "keel-mbtest-module3", "third --last", 123457, 0xAA

    /* The BIOS data area and the EBDA. */
bios:
    movzwl 0x400, %ecx
    CHECK eq, "bda-com1", 0x3F8
    xor %eax, %eax                      /* serial ports in the BDA */
    xor %edx, %edx
1:  cmpw $0, 0x400(,%edx,2)
    je 2f
    inc %eax
2:  inc %edx
    cmp $4, %edx
    jb 1b
    shl $9, %eax
    or $2, %eax                         /* the FPU bit */
    mov %eax, EXPECT
    movzwl 0x410, %ecx
    and $0x0E02, %ecx
    CHECKM eq, "bda-equipment-serial-fpu", EXPECT
    /* A loader that stays resident (iPXE) takes base memory, hooks
       vectors and hands over its own map of usable memory: what follows
       until the RSDP describes the BIOS alone. */
    cmpl $0, RESIDENT
    jne 5f
    movzwl 0x413, %ecx
    CHECK eq, "bda-base-memory-639KiB", 639
    movzwl 0x40E, %ecx
    CHECK eq, "bda-ebda-segment", 0x9FC0
    movzwl 0x40E, %edi
    shl $4, %edi
    movzbl (%edi), %ecx
    movzwl 0x413, %eax
    add %eax, %ecx
    CHECK eq, "ebda-size-makes-640KiB", 640

    /* The IVT: every vector into the BIOS area, at an IRET. */
    xor %edx, %edx                      /* vector */
    xor %ebp, %ebp                      /* bad ones */
1:  movzwl 2(,%edx,4), %edi
    shl $4, %edi
    movzwl (,%edx,4), %eax
    add %eax, %edi
    cmp $0xF0000, %edi
    jb 3f
    cmp $0x100000, %edi
    jae 3f
    mov $32, %ecx
2:  cmpb $0xCF, (%edi)
    je 4f
    inc %edi
    dec %ecx
    jnz 2b
3:  inc %ebp
4:  inc %edx
    cmp $256, %edx
    jb 1b
    mov %ebp, %ecx
    CHECK eq, "ivt-handlers-in-bios-area-with-iret", 0
5:

    /* The RSDP: the EBDA's first KiB, then 0xE0000-0xFFFFF. */
    movzwl 0x40E, %edi
    shl $4, %edi
    lea 1024(%edi), %edx
    mov $0x20445352, %eax               /* "RSD " */
    mov $0x20525450, %ebx               /* "PTR " */
    call scan
    test %edi, %edi
    jnz 1f
    mov $0xE0000, %edi
    mov $0x100000, %edx
    mov $0x20445352, %eax
    mov $0x20525450, %ebx
    call scan
1:  mov %edi, FOUND
    xor %ecx, %ecx
    test %edi, %edi
    setnz %cl
    CHECK eq, "rsdp-found", 1
    mov FOUND, %edi
    test %edi, %edi
    jz smbios
    mov $20, %ecx
    call sum8
    CHECK eq, "rsdp-checksum", 0
    mov FOUND, %edi
    xor %ecx, %ecx
    cmpb $2, 15(%edi)                   /* revision 2+: the extended one */
    jb 2f
    mov 20(%edi), %ecx
    call sum8
2:  CHECK eq, "rsdp-extended-checksum", 0
    mov FOUND, %edi
    mov 16(%edi), %edi
    mov (%edi), %ecx
    CHECK eq, "rsdp-points-at-rsdt", 0x54445352  /* "RSDT" */

    /* SMBIOS: "_SM_" on a 16-byte boundary in 0xF0000-0xFFFFF. */
smbios:
    mov $0xF0000, %edi
    mov $0x100000, %edx
    mov $0x5F4D535F, %eax               /* "_SM_" */
    xor %ebx, %ebx
    call scan
    mov %edi, FOUND
    xor %ecx, %ecx
    test %edi, %edi
    setnz %cl
    CHECK eq, "smbios-entry-found", 1
    mov FOUND, %edi
    test %edi, %edi
    jz lowmap
    movzbl 5(%edi), %ecx
    call sum8
    CHECK eq, "smbios-entry-checksum", 0
    mov FOUND, %edi
    add $16, %edi
    mov $15, %ecx
    call sum8
    cmpl $0x494D445F, (%edi)            /* "_DMI" */
    je 1f
    or $0x100, %ecx
1:  CHECK eq, "smbios-dmi-anchor-and-checksum", 0
    mov FOUND, %edi
    mov 0x18(%edi), %edi
    movzbl (%edi), %ecx
    CHECK eq, "smbios-type0-first", 0

    /* The low memory map as SeaBIOS gives it. */
lowmap:
    xor %eax, %eax
    call mmap_at
    mov %edx, END
    CHECK eq, "mmap-ram-at-0", 1
    mov END, %ecx
    CHECK eq, "mmap-ram-up-to-ebda", 0x9FC00
    cmpl $0, RESIDENT
    jne pci
    mov $0x9FC00, %eax
    call mmap_at
    CHECK eq, "mmap-ebda-reserved", 2
    mov $0xF0000, %eax
    call mmap_at
    CHECK eq, "mmap-bios-area-reserved", 2

    /* PCI bus 0 as SeaBIOS leaves it: every function's BARs (sized with
       decode off, PCI Local Bus 6.2.5.1) placed in their window, aligned,
       disjoint; decode on for the kinds it has; each interrupt line from
       its pin through the _PRT swizzle; the PIIX3's PIRQ routes; the ELCR. */
pci:
    mov $PCI_VARS, %edi
    mov $(PCI_VARS_END - PCI_VARS), %ecx
    xor %al, %al
    rep stosb
    movl $0x80000000, PDEV
pci_fn:
    xor %ecx, %ecx
    call cfg_read
    cmp $0xFFFF, %ax
    je pci_next
    mov $0x0C, %ecx
    call cfg_read
    test $0x007F0000, %eax
    jnz pci_irq                         /* not header type 0: no BARs */
    mov $4, %ecx
    call cfg_read
    mov %eax, PCMD
    and $0xFFFC, %eax
    mov $4, %ecx
    call cfg_write
    movl $0, PNEED
    movl $0x10, PBAR
pci_bar:
    mov PBAR, %ecx
    call cfg_read
    mov %eax, PVAL
    mov $-1, %eax
    mov PBAR, %ecx
    call cfg_write
    mov PBAR, %ecx
    call cfg_read
    mov %eax, PSIZED
    mov PVAL, %eax
    mov PBAR, %ecx
    call cfg_write
    mov PSIZED, %ebx
    testl $1, PVAL
    jz pci_mem
    and $0xFFFC, %ebx                   /* I/O: 16 address bits */
    mov %ebx, %eax
    neg %eax
    and %ebx, %eax                      /* size: the lowest address bit */
    jz pci_bar_next
    orl $1, PNEED
    mov PVAL, %esi
    and $0xFFFC, %esi
    mov $0xC000, %edi
    mov $0x10000, %ebp
    mov $1, %edx
    jmp pci_record
pci_mem:
    and $0xFFFFFFF0, %ebx
    mov %ebx, %eax
    neg %eax
    and %ebx, %eax
    jz pci_bar_next
    orl $2, PNEED
    mov PVAL, %esi
    and $0xFFFFFFF0, %esi
    mov $0x80000000, %edi               /* the hole's floor with 256 MiB */
    mov $0xFEC00000, %ebp               /* the IO-APIC */
    mov $2, %edx
    mov PVAL, %ecx
    and $6, %ecx
    cmp $4, %ecx
    jne pci_record
    push %eax                           /* 64-bit: placed below 4 GiB */
    addl $4, PBAR
    mov PBAR, %ecx
    call cfg_read
    test %eax, %eax
    jz 1f
    incl PBAD_PLACE
1:  pop %eax
    mov $2, %edx
    mov $0x80000000, %edi
    mov $0xFEC00000, %ebp
    mov PVAL, %esi
    and $0xFFFFFFF0, %esi
pci_record:                             /* base %esi, size %eax, window [%edi, %ebp), kind %edx */
    cmp %edi, %esi
    jb 1f
    mov %esi, %ecx
    add %eax, %ecx
    jc 1f
    cmp %ebp, %ecx
    ja 1f
    lea -1(%eax), %ecx
    test %esi, %ecx
    jz 2f
1:  incl PBAD_PLACE
2:  mov PNBARS, %ecx
    cmp $BARTAB_MAX, %ecx
    jae pci_bar_next
    imul $12, %ecx
    mov %esi, BARTAB(%ecx)
    add %esi, %eax
    mov %eax, BARTAB+4(%ecx)
    mov %edx, BARTAB+8(%ecx)
    incl PNBARS
pci_bar_next:
    addl $4, PBAR
    cmpl $0x28, PBAR
    jb pci_bar
    mov PCMD, %eax
    and $0xFFFF, %eax
    mov $4, %ecx
    call cfg_write
    mov PNEED, %eax
    mov PCMD, %ecx
    and %eax, %ecx
    cmp %eax, %ecx
    je pci_irq
    incl PBAD_DECODE
pci_irq:
    mov $0x3C, %ecx
    call cfg_read
    movzbl %ah, %ecx                    /* pin, 1 = INTA# */
    test %ecx, %ecx
    jz pci_next
    incl PPINS
    movzbl %al, %ebx                    /* line */
    mov PDEV, %eax
    shr $11, %eax
    and $31, %eax
    add %ecx, %eax
    add $2, %eax
    and $3, %eax                        /* PIRQ (slot - 1 + pin - 1) mod 4 */
    movzbl pirq_irqs(%eax), %eax
    mov %eax, PVAL
    xor %ecx, %ecx
    call cfg_read
    cmp $0x71138086, %eax               /* PIIX4 PM: the SCI, IRQ 9 */
    jne 1f
    movl $9, PVAL
1:  cmp PVAL, %ebx
    je pci_next
    incl PBAD_LINE
pci_next:
    addl $0x100, PDEV
    cmpl $0x80010000, PDEV
    jb pci_fn

    /* Overlaps between BARs of one kind. */
    xor %esi, %esi
1:  mov PNBARS, %eax
    imul $12, %eax
    cmp %eax, %esi
    jae 5f
    lea 12(%esi), %edi
2:  cmp %eax, %edi
    jae 4f
    mov BARTAB+8(%esi), %ecx
    cmp BARTAB+8(%edi), %ecx
    jne 3f
    mov BARTAB(%esi), %ecx
    cmp BARTAB+4(%edi), %ecx
    jae 3f
    mov BARTAB(%edi), %ecx
    cmp BARTAB+4(%esi), %ecx
    jae 3f
    incl POVERLAP
3:  add $12, %edi
    jmp 2b
4:  add $12, %esi
    jmp 1b
5:  mov PNBARS, %ecx
    CHECK ge, "pci-bars-found", 3
    mov PBAD_PLACE, %ecx
    CHECK eq, "pci-bars-placed-in-window-aligned", 0
    mov POVERLAP, %ecx
    CHECK eq, "pci-bars-disjoint", 0
    mov PBAD_DECODE, %ecx
    CHECK eq, "pci-decode-enabled", 0
    mov PPINS, %ecx
    CHECK ge, "pci-interrupt-pins-seen", 1
    mov PBAD_LINE, %ecx
    CHECK eq, "pci-interrupt-lines", 0
    movl $0x80000800, PDEV              /* 00:01.0, the PIIX3 */
    mov $0x60, %ecx
    call cfg_read
    mov %eax, %ecx
    CHECK eq, "pci-pirq-routes-10-10-11-11", 0x0B0B0A0A
    xor %eax, %eax
    mov $0x4D1, %dx
    in %dx, %al
    and $0x0C, %eax
    mov %eax, %ecx
    CHECK eq, "elcr-irq10-11-level", 0x0C

finish:
    mov PASS_COUNT, %eax
    call putdec
    STR .Lp, " passed, "
    mov $.Lp, %esi
    call puts
    mov FAIL_COUNT, %eax
    call putdec
    STR .Lf, " failed"
    mov $.Lf, %esi
    call putsln
    xor %eax, %eax
    cmpl $0, FAIL_COUNT
    setne %al
    out %eax, $0xF4
8:  cli
    hlt
    jmp 8b

/* strcmp(%esi, %edi) -> %ecx = 0 if equal, 1 if not. */
/* skip_word: %edi past the first word of a string and the spaces after
   it (at its NUL if it has one word). */
skip_word:
1:  mov (%edi), %al
    test %al, %al
    jz 3f
    cmp $' ', %al
    je 2f
    inc %edi
    jmp 1b
2:  cmpb $' ', (%edi)
    jne 3f
    inc %edi
    jmp 2b
3:  ret

/* last_component: %edi to the character after the last '/' of a string
   (unchanged if it has none). */
last_component:
    mov %edi, %edx
1:  mov (%edx), %al
    test %al, %al
    jz 3f
    inc %edx
    cmp $'/', %al
    jne 1b
    mov %edx, %edi
    jmp 1b
3:  ret

/* module_string: %ecx = 0 if the string at %edi is `path args` with the
   path's last component the string at %esi and the rest (after one space)
   the string at %edx, or `path` alone and %edx empty; else 1. */
module_string:
    push %edi
    push %esi
    mov %edi, %ebx                      /* the last component */
1:  mov (%edi), %al
    test %al, %al
    jz 2f
    cmp $' ', %al
    je 2f
    inc %edi
    cmp $'/', %al
    jne 1b
    mov %edi, %ebx
    jmp 1b
2:  cmp %edi, %ebx                      /* [%ebx, %edi) against the name */
    je 3f
    mov (%ebx), %al
    cmp (%esi), %al
    jne 8f
    inc %ebx
    inc %esi
    jmp 2b
3:  cmpb $0, (%esi)
    jne 8f
    cmpb $' ', (%edi)
    jne 4f
    inc %edi
4:  mov %edx, %esi
    call strcmp
    jmp 9f
8:  mov $1, %ecx
9:  pop %esi
    pop %edi
    ret

/* scan: the first 16-byte boundary in [%edi, %edx) holding dword %eax (and
   dword %ebx after it unless %ebx is 0), in %edi; 0 if none. */
scan:
1:  cmp %edx, %edi
    jae 3f
    cmp %eax, (%edi)
    jne 2f
    test %ebx, %ebx
    jz 4f
    cmp %ebx, 4(%edi)
    je 4f
2:  add $16, %edi
    jmp 1b
3:  xor %edi, %edi
4:  ret

/* sum8: %ecx = the byte sum (mod 256) of %ecx bytes at %edi. */
sum8:
    push %edi
    push %eax
    xor %eax, %eax
1:  test %ecx, %ecx
    jz 2f
    add (%edi), %al
    inc %edi
    dec %ecx
    jmp 1b
2:  movzbl %al, %ecx
    pop %eax
    pop %edi
    ret

/* mmap_at: the type of the multiboot mmap entry covering address %eax in
   %ecx (0 if none) and that entry's end in %edx (0xFFFFFFFF past 4 GiB). */
mmap_at:
    push %edi
    push %esi
    mov INFO, %edi
    mov 44(%edi), %esi
    mov 48(%edi), %edi
    add %edi, %esi
    xor %ecx, %ecx
1:  cmp %esi, %edi
    jae 5f
    cmpl $0, 8(%edi)                    /* base high */
    jne 4f
    cmp 4(%edi), %eax
    jb 4f
    mov 4(%edi), %edx
    add 12(%edi), %edx
    jc 2f
    cmpl $0, 16(%edi)                   /* length high */
    je 3f
2:  mov $0xFFFFFFFF, %edx
3:  cmp %edx, %eax
    jae 4f
    mov 20(%edi), %ecx
    jmp 5f
4:  add (%edi), %edi
    add $4, %edi
    jmp 1b
5:  pop %esi
    pop %edi
    ret

strcmp:
    push %esi
    push %edi
1:  mov (%esi), %al
    cmp (%edi), %al
    jne 2f
    test %al, %al
    jz 3f
    inc %esi
    inc %edi
    jmp 1b
2:  mov $1, %ecx
    jmp 4f
3:  xor %ecx, %ecx
4:  pop %edi
    pop %esi
    ret

/* cfg_read: config dword %ecx of the function at PDEV -> %eax.
   cfg_write: %eax to it. Both clobber %edx. */
cfg_read:
    push %eax
    mov PDEV, %eax
    or %ecx, %eax
    mov $0xCF8, %dx
    out %eax, %dx
    pop %eax
    mov $0xCFC, %dx
    in %dx, %eax
    ret
cfg_write:
    push %eax
    mov PDEV, %eax
    or %ecx, %eax
    mov $0xCF8, %dx
    out %eax, %dx
    pop %eax
    mov $0xCFC, %dx
    out %eax, %dx
    ret

    .pushsection .rodata.mbtest, "a"
pirq_irqs: .byte 10, 10, 11, 11
    .popsection

/* check_eq / check_ge: name %esi, value %ecx, expected %ebx. */
check_eq:
    cmp %ebx, %ecx
    je check_pass
    jmp check_fail
check_ge:
    cmp %ebx, %ecx
    jae check_pass
check_fail:
    incl FAIL_COUNT
    push %esi
    STR .Lfail, "FAIL "
    mov $.Lfail, %esi
    call puts
    pop %esi
    call puts
    STR .Lgot, ": got "
    mov $.Lgot, %esi
    call puts
    mov %ecx, %eax
    call puthex
    STR .Lexp, ", expected "
    mov $.Lexp, %esi
    call puts
    mov %ebx, %eax
    call puthex
    STR .Lnl, ""
    mov $.Lnl, %esi
    call putsln
    ret
check_pass:
    incl PASS_COUNT
    push %esi
    STR .Lpass, "PASS "
    mov $.Lpass, %esi
    call puts
    pop %esi
    call putsln
    ret

uart_init:
    mov $(COM1 + 1), %dx
    xor %al, %al
    out %al, %dx
    mov $(COM1 + 3), %dx
    mov $0x80, %al
    out %al, %dx
    mov $COM1, %dx
    mov $1, %al
    out %al, %dx
    mov $(COM1 + 1), %dx
    xor %al, %al
    out %al, %dx
    mov $(COM1 + 3), %dx
    mov $3, %al
    out %al, %dx
    mov $(COM1 + 2), %dx
    mov $7, %al
    out %al, %dx
    ret

/* putc %al; preserves registers. */
putc:
    push %edx
    push %eax
    mov $(COM1 + 5), %dx
1:  in %dx, %al
    test $0x20, %al
    jz 1b
    pop %eax
    mov $COM1, %dx
    out %al, %dx
    pop %edx
    ret

/* puts: NUL-terminated string at %esi. */
puts:
    push %esi
    push %eax
1:  mov (%esi), %al
    test %al, %al
    jz 2f
    call putc
    inc %esi
    jmp 1b
2:  pop %eax
    pop %esi
    ret

putsln:
    call puts
    push %eax
    mov $10, %al
    call putc
    pop %eax
    ret

/* puthex: %eax as 0x and 8 digits. */
puthex:
    push %eax
    push %ecx
    push %edx
    mov %eax, %edx
    mov $'0', %al
    call putc
    mov $'x', %al
    call putc
    mov $8, %ecx
1:  rol $4, %edx
    mov %dl, %al
    and $0xF, %al
    add $'0', %al
    cmp $'9', %al
    jbe 2f
    add $('a' - '9' - 1), %al
2:  call putc
    dec %ecx
    jnz 1b
    pop %edx
    pop %ecx
    pop %eax
    ret

/* putdec: %eax in decimal. */
putdec:
    push %eax
    push %ecx
    push %edx
    push %ebx
    mov $10, %ebx
    xor %ecx, %ecx
1:  xor %edx, %edx
    div %ebx
    push %edx
    inc %ecx
    test %eax, %eax
    jnz 1b
2:  pop %eax
    add $'0', %al
    call putc
    dec %ecx
    jnz 2b
    pop %ebx
    pop %edx
    pop %ecx
    pop %eax
    ret
"#,
    options(att_syntax)
);
