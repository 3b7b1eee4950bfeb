//! PCI configuration space through configuration mechanism #1 (PCI Local Bus
//! 3.0, 3.2.2.3.2): the address at port 0xCF8, the dword at 0xCFC. 64-bit
//! code, for the guests that scan the bus from long mode.

use core::arch::global_asm;

global_asm!(
    crate::asm_prelude!(),
    r#"
.set PCI_CONFIG_ADDRESS, 0xCF8
.set PCI_CONFIG_DATA,    0xCFC

MODE64
    .text
/* pci_write: %eax = configuration address, %ebx = value. Clobbers %eax, %dx. */
.global pci_write
pci_write:
    mov $PCI_CONFIG_ADDRESS, %dx
    out %eax, %dx
    mov $PCI_CONFIG_DATA, %dx
    mov %ebx, %eax
    out %eax, %dx
    ret

/* pci_find: %ecx = vendor/device dword (device << 16 | vendor) -> %eax =
   the configuration address of function 0 of the first device on bus 0
   (devices 0-31) with that ID, or 0. Clobbers %dx, %esi. */
.global pci_find
pci_find:
    mov $0x80000000, %esi
1:  mov %esi, %eax
    call pci_read
    cmp %ecx, %eax
    je 2f
    add $0x800, %esi
    cmp $0x80010000, %esi
    jb 1b
    xor %esi, %esi
2:  mov %esi, %eax
    ret

/* pci_read: %eax = configuration address -> %eax = value. Clobbers %dx. */
.global pci_read
pci_read:
    mov $PCI_CONFIG_ADDRESS, %dx
    out %eax, %dx
    mov $PCI_CONFIG_DATA, %dx
    in %dx, %eax
    ret
"#,
    options(att_syntax)
);
