//! Creating a VM from its configuration and running it until it stops.

mod platform;

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use device_model::PowerRequest;
use guest_memory::GuestRam;
use keel::frames::FrameAllocator;
use vm_config::VmConfig;
use vmm_core::exit::{handle_exit, CpuidPolicy, MsrPolicy, VmPolicy};
use vmm_core::paging::{
    MapError, NestedPageTable, NptFormat, Permissions, TableMemory, LARGE_PAGE_SIZE,
};
use vmm_core::svm::{self, IoPermissionMap, MsrPermissionMap, SvmVcpu, SvmVcpuConfig, Vmcb};
use vmm_core::{ExitAction, StopReason, VcpuState};

use crate::cpu::SvmCaps;
use platform::Machine;

const MIB: u64 = 1 << 20;
/// The firmware image ends at 1 MiB and, aliased, at 4 GiB.
const FIRMWARE_END_LOW: u64 = MIB;
const FIRMWARE_END_HIGH: u64 = 1 << 32;
const FIRMWARE_MAX: usize = 256 * 1024;
/// Guest RAM must stay below the firmware alias and the MMIO hole under 4 GiB.
const MAX_GUEST_RAM: u64 = 3 << 30;

/// MSRs whose guest values live in the VMCB (loaded by VMRUN / VMLOAD), so the
/// guest may access them without an exit (APM Vol 2, 15.5.1, 15.11).
const PASS_THROUGH_MSRS: &[u32] = &[
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
    0x277,       // PAT (G_PAT with nested paging)
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    0xc000_0100, // FS_BASE
    0xc000_0101, // GS_BASE
    0xc000_0102, // KERNEL_GS_BASE
];
/// TSC: reads are native (zero offset), writes go to the MSR policy.
const MSR_TSC: u32 = 0x10;

/// Boot modules by the name the configuration uses for them.
pub struct Images {
    pub modules: Vec<(String, &'static [u8])>,
}

impl Images {
    fn get(&self, name: &str) -> Option<&'static [u8]> {
        self.modules.iter().find(|(n, _)| n == name).map(|m| m.1)
    }
}

/// Why a VM could not be created.
#[derive(Debug)]
pub enum VmError {
    Config(String),
    MissingImage(String),
    OutOfMemory {
        what: &'static str,
        bytes: u64,
        free: u64,
    },
    Map(MapError),
    Bus(device_model::BusError),
}

impl fmt::Display for VmError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VmError::Config(m) => write!(f, "{m}"),
            VmError::MissingImage(n) => write!(
                f,
                "the configuration names image '{n}', but no boot module has that name (GRUB: module2 /boot/<file> {n})"
            ),
            VmError::OutOfMemory { what, bytes, free } => {
                write!(f, "not enough host memory for {what}: need {} KiB, {} KiB free", bytes / 1024, free / 1024)
            }
            VmError::Map(e) => write!(f, "building the nested page tables failed: {e:?}"),
            VmError::Bus(e) => write!(f, "setting up the device bus failed: {e}"),
        }
    }
}

/// Nested page-table pages come straight from the frame allocator.
struct FrameTables<'a>(&'a mut FrameAllocator);

impl TableMemory for FrameTables<'_> {
    fn alloc_table(&mut self) -> Option<u64> {
        let pa = self.0.alloc_frame()?;
        self.table(pa).fill(0);
        Some(pa)
    }

    fn table(&mut self, pa: u64) -> &mut [u64; 512] {
        // SAFETY: `pa` is a frame this allocator handed to the nested page
        // table, identity-mapped, page-aligned and used for nothing else.
        unsafe { &mut *(pa as *mut [u64; 512]) }
    }
}

fn identity(va: usize) -> u64 {
    va as u64
}

fn check_config(config: &VmConfig) -> Result<&str, VmError> {
    if config.vcpus != 1 {
        return Err(VmError::Config(alloc::format!(
            "vcpus = {}: this Keel runs one vCPU per VM",
            config.vcpus
        )));
    }
    if config.kernel.is_some() {
        return Err(VmError::Config(String::from(
            "kernel = ...: direct kernel boot needs the BIOS shim, which Keel does not have yet",
        )));
    }
    if u64::from(config.memory_mib) * MIB > MAX_GUEST_RAM {
        return Err(VmError::Config(alloc::format!(
            "memory = {}: at most {} MiB of guest RAM for now",
            config.memory_mib,
            MAX_GUEST_RAM / MIB
        )));
    }
    config.firmware.as_deref().ok_or_else(|| {
        VmError::Config(String::from(
            "no firmware = \"...\": the image the VM starts from",
        ))
    })
}

/// Builds the VM described by `config` and runs it to its end. `reserved` are
/// host ranges no guest mapping may reach (Keel, boot modules).
pub fn run(
    config: &VmConfig,
    images: &Images,
    frames: &mut FrameAllocator,
    caps: SvmCaps,
    reserved: &[Range<u64>],
) -> Result<StopReason, VmError> {
    let firmware_name = check_config(config)?;
    let firmware = images
        .get(firmware_name)
        .ok_or_else(|| VmError::MissingImage(String::from(firmware_name)))?;
    if firmware.is_empty() || firmware.len() % 4096 != 0 || firmware.len() > FIRMWARE_MAX {
        return Err(VmError::Config(alloc::format!(
            "firmware '{firmware_name}' is {} bytes; it must be a non-zero multiple of 4 KiB, at most 256 KiB",
            firmware.len()
        )));
    }
    let fw_len = firmware.len() as u64;

    let ram_bytes = u64::from(config.memory_mib) * MIB;
    let free = frames.free_bytes();
    let ram_pa =
        frames
            .alloc_contiguous(ram_bytes, LARGE_PAGE_SIZE)
            .ok_or(VmError::OutOfMemory {
                what: "guest RAM",
                bytes: ram_bytes,
                free,
            })?;
    // SAFETY: the frame allocator handed out [ram_pa, ram_pa + ram_bytes)
    // exclusively to this VM; it is identity-mapped RAM and never freed
    // while the slice lives (Keel ends after the VM).
    let ram_bytes_slice =
        unsafe { core::slice::from_raw_parts_mut(ram_pa as *mut u8, ram_bytes as usize) };
    ram_bytes_slice.fill(0);
    let mut ram = GuestRam::new(ram_bytes_slice);
    let fw_start = (FIRMWARE_END_LOW - fw_len) as usize;
    ram.as_mut_slice()[fw_start..fw_start + firmware.len()].copy_from_slice(firmware);

    let mut tables = FrameTables(frames);
    let mut reserved = reserved.to_vec();
    reserved.push(0..keel::frames::LOW_MEMORY_END);
    let largest = if caps.huge_pages { 3 } else { 2 };
    let mut npt =
        NestedPageTable::<NptFormat>::new(&mut tables, largest, reserved).map_err(VmError::Map)?;
    npt.map(&mut tables, 0, ram_pa, ram_bytes, Permissions::RWX)
        .map_err(VmError::Map)?;
    npt.map(
        &mut tables,
        FIRMWARE_END_HIGH - fw_len,
        ram_pa + fw_start as u64,
        fw_len,
        Permissions::RX,
    )
    .map_err(VmError::Map)?;

    let iopm = Box::new(IoPermissionMap::intercept_all());
    let mut msrpm = Box::new(MsrPermissionMap::intercept_all());
    for &msr in PASS_THROUGH_MSRS {
        msrpm.pass_through(msr);
    }
    msrpm.pass_through_reads(MSR_TSC);

    // The host save area must outlive SVM being on, which is the rest of Keel's run.
    let hsave: &'static Vmcb = Box::leak(Box::<Vmcb>::default());
    // SAFETY: SVM was detected with SVMDIS clear (cpu::detect), and the host
    // save page is leaked, so nothing else will ever use it.
    unsafe { svm::hw::enable(identity(hsave as *const Vmcb as usize)) };

    let signature = crate::cpu::host_cpuid(1, 0).eax;
    let mut vcpu = SvmVcpu::new(
        SvmVcpuConfig {
            vcpu_id: 0,
            asid: 1,
            iopm_pa: identity(&*iopm as *const IoPermissionMap as usize),
            msrpm_pa: identity(&*msrpm as *const MsrPermissionMap as usize),
            ncr3: npt.root(),
            nrip_save: caps.nrip_save,
            cpu_signature: signature,
        },
        identity,
    );
    let mut policy = VmPolicy {
        cpuid: CpuidPolicy::from_host(1, crate::cpu::host_cpuid),
        msr: MsrPolicy::new(0),
    };
    let mut machine = Machine::new(&config.name, ram).map_err(VmError::Bus)?;

    log::info!(
        "VM '{}': {} MiB of RAM at host {:#x}, firmware '{}' ({} KiB), SVM with nested paging{}",
        config.name,
        config.memory_mib,
        ram_pa,
        firmware_name,
        fw_len / 1024,
        if caps.nrip_save { ", NRIP save" } else { "" }
    );
    let mut exits: u64 = 0;
    let stop = loop {
        let rip = vcpu.rip();
        // SAFETY: SVM is enabled on this CPU; the VMCB points at the IOPM,
        // MSRPM and nested page tables above, which live until this function
        // returns, and the nested tables map only this VM's RAM and firmware.
        let exit = unsafe { svm::hw::run(&mut vcpu) };
        exits += 1;
        let action = handle_exit(&exit, &mut vcpu, &mut machine, &mut policy);
        if let Some(PowerRequest::DebugExit { status }) = machine.power.take() {
            break StopReason::DebugExit { status };
        }
        match action {
            ExitAction::Resume => {}
            // No device of this platform raises interrupts yet, so a halted
            // vCPU could never wake up.
            ExitAction::Halt => {
                break StopReason::HaltedForever {
                    rip,
                    interrupts_enabled: vcpu.interrupts_enabled(),
                };
            }
            ExitAction::Stop(reason) => break reason,
        }
    };
    let unclaimed = machine.unclaimed();
    log::info!(
        "VM '{}': {} exits; unclaimed port reads {}, writes {}",
        config.name,
        exits,
        unclaimed.pio_reads,
        unclaimed.pio_writes
    );
    Ok(stop)
}
