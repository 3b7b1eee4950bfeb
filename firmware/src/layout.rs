//! Where the shim keeps things in guest RAM (all below 1 MiB; see
//! `firmware/README.md`, "Memory the shim uses").

/// Identity-mapping page tables: PML4, PDPT, four page directories (4 GiB in
/// 2 MiB pages).
pub const PAGE_TABLES: u64 = 0x1000;
/// The Linux zero page (`struct boot_params`).
pub const BOOT_PARAMS: u64 = 0x7000;
/// The multiboot info area (16 KiB: the info block and everything it
/// points to, the relocation stub and its copy table) when no segment of
/// the kernel covers it.
pub const MULTIBOOT_INFO: u64 = 0x8000;
/// Size of the multiboot area.
pub const MULTIBOOT_INFO_LEN: usize = 0x4000;
/// Top of the shim's stack (it grows down to 0x10000).
pub const STACK_TOP: u64 = 0x1F000;
/// Where the shim's image runs (copied from the ROM below 4 GiB).
pub const RUN_BASE: u64 = 0x20000;
/// The shim image size.
pub const IMAGE_SIZE: u64 = 128 * 1024;
/// The fw_cfg DMA descriptor.
pub const DMA_DESCRIPTOR: u64 = 0x4F000;
/// The first part of the kernel file (bzImage setup, multiboot header search).
pub const KERNEL_HEAD: u64 = 0x50000;
/// Size of the kernel head buffer: the largest bzImage setup (64 sectors + boot sector).
pub const KERNEL_HEAD_LEN: usize = 65 * 512;
/// The Linux command line.
pub const CMDLINE: u64 = 0x5A000;
/// Room for the command line, including its NUL.
pub const CMDLINE_MAX: usize = 0x2000;
/// The end of the shim's memory (the Linux command line buffer's end). A
/// multiboot kernel's segments may cover it too: the shim copies them only
/// as its last step (`crate::multiboot::place_relocation`); an info area
/// that cannot be at [`MULTIBOOT_INFO`] goes between here and the EBDA.
pub const SHIM_END: u64 = CMDLINE + CMDLINE_MAX as u64;
/// Nothing the shim loads itself may start below this (kernels, initrds, staging).
pub const LOAD_FLOOR: u64 = 0x10_0000;
/// Where a legacy BIOS keeps its tables and where OSes scan for the RSDP.
pub const BIOS_AREA: core::ops::Range<u64> = 0xE_0000..0x10_0000;
