//! Creating a VM from its configuration and running it until it stops.

mod console;
mod direct_boot;
mod machine;
mod memory_map;
mod stats;

pub use stats::VmExitStats;
mod svm;
mod vmx;

use alloc::string::String;
use alloc::vec::Vec;
use core::fmt;
use core::ops::Range;

use core::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use device_model::PowerRequest;
use guest_memory::{GuestMemory, RomAlias};
use keel::apparent_time::{ApparentTime, Dilation, ExitTiming};
use keel::frames::FrameAllocator;
use keel::reset_limit::ResetLimit;
use spin::Mutex;
use vm_config::{OnEvent, VmConfig};
use vmm_core::exit::{
    complete_hlt_in_shadow, handle_exit, CpuidBit, CpuidPolicy, CpuidReg, HvFeatures, HyperV,
    Platform, VmPolicy,
};
use vmm_core::interrupts::{deliver, halt_decision, HaltDecision, HaltState, InterruptSource};
use vmm_core::paging::{
    FlushTracker, GuestLayout, GuestPhysMap, MapError, Permissions, LARGE_PAGE_SIZE, PAGE_SIZE,
};
use vmm_core::vcpu::{Segment, Sreg};
use vmm_core::{ExitAction, StopReason, Vcpu};

use crate::cpu::Backend;
use alloc::boxed::Box;
use device_model::storage::{
    BlockBackend, ChannelId, DrivePosition, IdeDrive, RamDisk, ReadAhead, ReadOnly, SharedBackend,
};
use device_model::virtio::{Transport, VirtioBlk, VirtioBlkConfig, VirtioNet, VirtioNetConfig};
use device_model::xen::devices::{XenDisk, XenNic};
use device_model::xen::PhysmapLimits;
use direct_boot::DirectBoot;
use machine::{DeviceRegion, Machine, PlatformClock};
use vm_config::{
    DiskBackend, DiskSlot, IdeSlot, NicModel, VifSpec, PXE_E1000_ROM, VGABIOS_STDVGA_ROM,
};

use crate::host::Bridge;
use alloc::sync::Arc;
use device_model::net::e1000::E1000Config;
use device_model::net::{MacAddress, NetBackend, SharedNetBackend, SwitchPort};

const MIB: u64 = 1 << 20;
/// The firmware image ends at 1 MiB and, aliased, at 4 GiB.
const FIRMWARE_END_LOW: u64 = MIB;
const FIRMWARE_END_HIGH: u64 = 1 << 32;
const FIRMWARE_MAX: usize = 256 * 1024;
/// Guest RAM must stay below the firmware alias and the MMIO hole under 4 GiB.
const MAX_GUEST_RAM: u64 = 3 << 30;
/// The IOAPIC and local APIC pages: no run-time map change may cover them
/// (their accesses must keep reaching the device model).
const IOAPIC_PAGE: Range<u64> = 0xFEC0_0000..0xFEC0_1000;
const LAPIC_PAGE: Range<u64> = 0xFEE0_0000..0xFEE0_1000;

/// What a configuration can name: boot modules by the name the
/// configuration uses for them, and the machine's own disks and NICs
/// (`virtio0`).
pub struct Images {
    pub modules: keel::boot_modules::BootModules,
    pub host_disks: crate::host::HostDisks,
    pub host_nics: crate::host::HostNics,
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
    Platform(device_model::PcError),
    /// Turning the virtualization extensions on failed.
    Hardware(String),
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
            VmError::Platform(e) => write!(f, "setting up the emulated PC failed: {e}"),
            VmError::Hardware(m) => write!(f, "{m}"),
        }
    }
}

fn check_config(config: &VmConfig) -> Result<&str, VmError> {
    if u64::from(config.memory_mib) * MIB > MAX_GUEST_RAM {
        return Err(VmError::Config(alloc::format!(
            "memory = {}: at most {} MiB of guest RAM for now",
            config.memory_mib,
            MAX_GUEST_RAM / MIB
        )));
    }
    config.firmware_image().ok_or_else(|| {
        VmError::Config(String::from(
            "no firmware = \"...\" and no kernel = \"...\": nothing for the VM to start from",
        ))
    })
}

/// A guest-physical range backed by host memory.
pub struct GuestMapping {
    pub gpa: u64,
    pub hpa: u64,
    pub len: u64,
    pub perms: Permissions,
}

/// What every VM is built from, shared by the CPUs that build them (one at
/// a time, under a lock): the boot modules and host devices, the frame
/// allocator, and the host ranges no guest mapping may reach (Keel, boot
/// modules).
pub struct World {
    pub images: Images,
    pub frames: FrameAllocator,
    pub reserved: Vec<Range<u64>>,
}

/// How a VM ended.
pub struct Ended {
    pub stop: StopReason,
    /// The configuration's event action said `preserve`.
    pub preserved: bool,
}

/// Builds the VM described by `config` on this CPU, taking what it needs
/// from `world` under its lock, and runs its vCPU 0 to the VM's end;
/// every vCPU counts its exits in `exit_stats` (the status table reads
/// them while the VM runs). vCPU n
/// is scheduler task `tasks[n]` (`sched`): the VM is handed to `publish`
/// before vCPU 0 starts, for those tasks' [`run_ap`].
pub fn run(
    config: &VmConfig,
    world: &Mutex<Option<World>>,
    backend: Backend,
    exit_stats: &'static VmExitStats,
    tasks: &[usize],
    publish: &dyn Fn(Arc<Shared>),
) -> Result<Ended, VmError> {
    let mut guard = world.lock();
    let World {
        images,
        frames,
        reserved,
    } = guard
        .as_mut()
        .ok_or_else(|| VmError::Config(String::from("Keel's boot state is gone")))?;
    let firmware_name = check_config(config)?;
    let drives = disk_drives(config, images)?;
    let vifs = Vifs::from_config(config, images)?;
    let direct_boot = DirectBoot::from_config(config, images)?;
    // A copy: the VM reloads it on every reset, after the lock on the
    // boot modules is long released.
    let firmware: Vec<u8> = images
        .modules
        .get(firmware_name)
        .ok_or_else(|| VmError::MissingImage(String::from(firmware_name)))?
        .to_vec();
    let firmware: &[u8] = &firmware;
    if firmware.is_empty() || !firmware.len().is_multiple_of(4096) || firmware.len() > FIRMWARE_MAX
    {
        return Err(VmError::Config(alloc::format!(
            "firmware '{firmware_name}' is {} bytes; it must be a non-zero multiple of 4 KiB, at most 256 KiB",
            firmware.len()
        )));
    }
    let fw_len = firmware.len() as u64;

    let ram_bytes = u64::from(config.memory_mib) * MIB;
    let ram_pa = alloc_for_vm(frames, ram_bytes, LARGE_PAGE_SIZE, "guest RAM")?;
    // SAFETY: the frame allocator handed out [ram_pa, ram_pa + ram_bytes)
    // exclusively to this VM; it is identity-mapped RAM, never freed or
    // handed out again (Keel ends after the VM), and from here on reached
    // only through guest-memory handles (and by the guest itself). The
    // nested page tables map a chunk of it only once it is zeroed: they
    // start without the chunks `held` lists, and `Machine` zeroes each
    // before it maps it (`release_held`).
    let mut ram =
        unsafe { GuestMemory::from_raw_region_unzeroed(ram_pa as *mut u8, ram_bytes as usize) }
            .map_err(|e| VmError::Config(alloc::format!("guest RAM: {e}")))?;
    let fw_start = FIRMWARE_END_LOW - fw_len;
    ram.write(fw_start, firmware)
        .map_err(|e| VmError::Config(alloc::format!("firmware does not fit in guest RAM: {e}")))?;
    // The ROM itself: a host copy the guest cannot write, shown below 4 GiB
    // and, while the i440FX PAM segments forward reads to the bus, at the
    // top of the first MiB. RAM there holds a copy too (the shadow the
    // firmware may make writable); the emulator's guest-memory view shows
    // that copy at both places.
    let rom_pa = alloc_for_vm(frames, fw_len, PAGE_SIZE, "the firmware ROM")?;
    // SAFETY: the frame allocator handed out [rom_pa, rom_pa + fw_len)
    // exclusively to this VM, identity-mapped and never freed.
    unsafe { core::slice::from_raw_parts_mut(rom_pa as *mut u8, fw_len as usize) }
        .copy_from_slice(firmware);
    // The firmware again, read-only, below 4 GiB: in the nested page tables
    // and in the guest-memory view the emulator fetches through.
    let rom = RomAlias {
        gpa: FIRMWARE_END_HIGH - fw_len,
        ram: fw_start,
        len: fw_len,
    };
    ram.map_rom_alias(rom)
        .map_err(|e| VmError::Config(alloc::format!("firmware alias: {e}")))?;
    let held = unzeroed_chunks(&ram)?;
    let mut mappings = ram_mappings(ram_pa, ram_bytes, &held);
    mappings.push(GuestMapping {
        gpa: rom.gpa,
        hpa: rom_pa,
        len: rom.len,
        perms: Permissions::RX,
    });
    let phys_bits = crate::cpu::host_cpuid(0x8000_0008, 0).eax & 0xff;
    let (gpa_limit, fixed) = (
        1u64 << phys_bits.clamp(32, 48),
        alloc::vec![IOAPIC_PAGE, LAPIC_PAGE, rom.gpa..FIRMWARE_END_HIGH],
    );
    let layout = GuestLayout {
        ram_hpa: ram_pa,
        ram_len: ram_bytes,
        rom_hpa: rom_pa,
        rom_len: fw_len,
        gpa_limit,
        fixed: fixed.clone(),
    };
    let pool = memory_map::FramePool::new(
        frames,
        memory_map::RUNTIME_TABLE_PAGES + memory_map::first_touch_table_pages(ram_bytes),
    )?;
    let mut reserved = reserved.to_vec();
    reserved.push(0..keel::frames::LOW_MEMORY_END);

    let firmware_copy = (fw_start, firmware);
    let test_ram = if config.test_device {
        Some(test_device_ram(frames)?)
    } else {
        None
    };
    let vga = if config.stdvga {
        let rom = match &config.firmware {
            Some(_) => Some(Arc::from(
                images
                    .modules
                    .get(VGABIOS_STDVGA_ROM)
                    .ok_or_else(|| VmError::MissingImage(String::from(VGABIOS_STDVGA_ROM)))?,
            )),
            None => None,
        };
        Some((video_memory(frames)?, rom))
    } else {
        None
    };
    let mut machine = Machine::new(
        &config.name,
        ram,
        config.vcpus,
        config.test_device,
        test_ram,
        vga,
        PlatformClock {
            rtc_timeoffset: config.rtc_timeoffset,
            x2apic: cpuid_policy(config).offers_x2apic(),
        },
    )
    .map_err(VmError::Platform)?;
    if config.xen_platform_pci {
        machine
            .pc
            .add_xen(
                crate::clock::tsc_hz(),
                crate::clock::unix_time(),
                PhysmapLimits { gpa_limit, fixed },
            )
            .map_err(VmError::Platform)?;
    }
    for (channel, position, drive) in drives.ide {
        machine.pc.attach_ide(channel, position, drive);
    }
    for (vdev, disk) in drives.virtio {
        let bdf = machine
            .pc
            .add_virtio(disk, Transport::Transitional)
            .map_err(VmError::Platform)?;
        log::info!("VM '{}': virtio disk {vdev} at PCI {bdf}", config.name);
    }
    let xen_nics = vifs.attach(&config.name, config.xen_platform_pci, &mut machine)?;
    if config.xen_platform_pci {
        let (n, m) = (drives.xen.len(), xen_nics.len());
        machine
            .pc
            .add_xen_devices(&config.name, drives.xen, xen_nics)
            .map_err(VmError::Platform)?;
        log::info!("VM '{}': xenstore with {n} vbds and {m} vifs", config.name);
    }
    if let Some(direct) = &direct_boot {
        direct.install(&mut machine.pc.fw_cfg().lock())?;
        log::info!("VM '{}': {}", config.name, direct.describe());
    }
    let backend_name = match backend {
        Backend::Svm(caps) if caps.nrip_save => "SVM with nested paging and NRIP save",
        Backend::Svm(_) => "SVM with nested paging",
        Backend::Vmx(_) => "VMX with EPT, VPID and unrestricted guest",
    };
    log::info!(
        "VM '{}': {} MiB of RAM at host {:#x}, firmware '{}' ({} KiB), {backend_name}",
        config.name,
        config.memory_mib,
        ram_pa,
        firmware_name,
        fw_len / 1024,
    );
    let mut console = console::VmConsole::new(&config.name);
    machine.pc.add_com1_output(console.raw_output());
    let (stop, preserved, shared) = match backend {
        Backend::Svm(caps) => {
            let (mut vcpu, npt) = svm::create_vcpu(frames, caps, &mappings, reserved)?;
            drop(guard);
            let root = npt.root();
            let map = hold(GuestPhysMap::new(npt, pool, layout), &held)?;
            machine.set_memory_map(map).map_err(VmError::Config)?;
            let shared = Arc::new(Shared::new(
                machine,
                root,
                config,
                tasks,
                firmware_copy,
                exit_stats,
            ));
            publish(shared.clone());
            let bsp = Bsp {
                console: &mut console,
            };
            let (stop, preserved) = run_vcpu(&mut vcpu, &shared, config, Some(bsp));
            (stop, preserved, shared)
        }
        Backend::Vmx(controls) => {
            let cr4_hidden = controls.cr4_hidden(cpuid_policy(config).cr4_allowed());
            let (mut vcpu, ept) =
                vmx::create_vcpu(frames, controls, cr4_hidden, &mappings, reserved)?;
            drop(guard);
            let root = ept.root();
            let map = hold(GuestPhysMap::new(ept, pool, layout), &held)?;
            machine.set_memory_map(map).map_err(VmError::Config)?;
            let shared = Arc::new(Shared::new(
                machine,
                root,
                config,
                tasks,
                firmware_copy,
                exit_stats,
            ));
            publish(shared.clone());
            let bsp = Bsp {
                console: &mut console,
            };
            let (stop, preserved) = run_vcpu(&mut vcpu, &shared, config, Some(bsp));
            (stop, preserved, shared)
        }
    };
    // The other vCPUs' loops leave once they see the VM stopping (they
    // were kicked); bounded, so a CPU that never answers cannot hold the
    // VM's end.
    let until = crate::clock::now_ns().saturating_add(1_000_000_000);
    while shared.aps_running.load(Ordering::SeqCst) != 0 && crate::clock::now_ns() < until {
        // Some may share this CPU.
        crate::sched::yield_now();
    }
    console.last_frame(&shared.machine.lock(), &config.name);
    console.ended();
    let exits = shared.exit_stats.total().count;
    let machine = shared.machine.lock();
    if config.screen_dump {
        machine.dump_screen(&config.name);
    }
    let unclaimed = machine.pc.unclaimed();
    log::info!(
        "VM '{}': {} exits; unclaimed port reads {}, writes {}",
        config.name,
        exits,
        unclaimed.pio_reads,
        unclaimed.pio_writes
    );
    let ram = machine.ram();
    let chunk = guest_memory::ZEROING_CHUNK;
    let chunks = ram.size().div_ceil(chunk);
    let zeroed = (0..chunks).filter(|&c| ram.is_zeroed(c * chunk)).count();
    log::info!(
        "VM '{}': {zeroed} of its {chunks} chunks of RAM ({} MiB) touched, so zeroed (the rest never were)",
        config.name,
        chunk >> 20
    );
    shared.exit_stats.print(
        &config.name,
        machine.pc.bus(),
        machine.ran_ahead(),
        "at its end",
    );
    let hidden = machine.apparent_time().hidden();
    if hidden != 0 {
        log::info!(
            "VM '{}': {} ms kept out of its clocks while it calibrated its TSC (keel::apparent_time)",
            config.name,
            crate::clock::ticks_ns(hidden) / 1_000_000
        );
    }
    Ok(Ended { stop, preserved })
}

/// What the loops of one VM's vCPUs share, each loop on its own host CPU:
/// the machine behind its lock (taken for each exit's handling, never
/// while the guest runs or the CPU sleeps), the nested page tables' root,
/// and how the VM is doing (stopping, resets).
pub struct Shared {
    machine: Mutex<Machine>,
    /// nCR3 / the EPT root every vCPU's control structure names.
    root: u64,
    /// The scheduler task of each vCPU (vCPU n is `tasks[n]`).
    tasks: Vec<usize>,
    /// Why the VM ended and whether it is preserved, set once by the loop
    /// that saw it; `stopping` tells the other loops to leave.
    ended: Mutex<Option<(StopReason, bool)>>,
    stopping: AtomicBool,
    /// Machine resets so far: each loop resets its vCPU when it sees this move.
    resets: AtomicU64,
    /// The guest TSC's offset from the host's, the same on every vCPU
    /// (RESET clears the TSC, SDM Vol 3B 18.17; Linux checks that the
    /// vCPUs' TSCs agree).
    tsc_offset: AtomicU64,
    /// Each vCPU's exit counters (`stats`), summed when read.
    exit_stats: &'static VmExitStats,
    /// Where the firmware sits in guest RAM, and its bytes (reloaded on reset).
    firmware: (u64, Vec<u8>),
    reset_limit: Mutex<ResetLimit>,
    /// vCPU loops other than vCPU 0's still running.
    aps_running: AtomicUsize,
    /// The VM may hide its timer calibration's exits from its time
    /// (`keel::apparent_time`): it has no paravirtual clock.
    dilates: bool,
    /// APs out of wait-for-SIPI: while any is, vCPU 0 dilates no more.
    started_aps: AtomicUsize,
}

impl Shared {
    fn new(
        mut machine: Machine,
        root: u64,
        config: &VmConfig,
        tasks: &[usize],
        firmware: (u64, &[u8]),
        exit_stats: &'static VmExitStats,
    ) -> Self {
        let offset = 0u64.wrapping_sub(crate::clock::rdtsc());
        {
            let mut router = machine.pc.router().lock();
            for v in 0..config.vcpus {
                router.set_tsc_offset(v, offset);
            }
        }
        machine.set_current(0);
        Shared {
            machine: Mutex::new(machine),
            root,
            tasks: tasks.to_vec(),
            ended: Mutex::new(None),
            stopping: AtomicBool::new(false),
            resets: AtomicU64::new(0),
            tsc_offset: AtomicU64::new(offset),
            exit_stats,
            firmware: (firmware.0, firmware.1.to_vec()),
            reset_limit: Mutex::new(ResetLimit::new(0, crate::clock::now_ns())),
            aps_running: AtomicUsize::new(tasks.len().saturating_sub(1)),
            // Xen's and Hyper-V's clocks tell the guest the TSC's rate.
            dilates: !config.xen_platform_pci && !config.viridian.base,
            started_aps: AtomicUsize::new(0),
        }
    }

    /// The machine, for vCPU `me`'s loop. Taking it is looking at
    /// everything posted for the vCPU, so the loop's kick mark is cleared
    /// first (`sched::wake`): a post after this kicks again.
    fn lock(&self, me: u32) -> spin::MutexGuard<'_, Machine> {
        crate::sched::looking();
        let mut m = self.machine.lock();
        m.set_current(me);
        m
    }

    /// Releases the machine, then kicks the host CPUs of the other vCPUs
    /// a message reached meanwhile (an IPI, a device interrupt), so each
    /// sees it at once whether it runs the guest or sleeps in HLT.
    fn release(&self, m: spin::MutexGuard<'_, Machine>, me: u32) {
        let woken = m.pc.router().lock().take_woken() & !(1u64 << me.min(63));
        drop(m);
        self.kick(woken);
    }

    fn kick(&self, vcpus: u64) {
        for (v, &task) in self.tasks.iter().enumerate().take(64) {
            if vcpus & (1 << v) != 0 {
                crate::sched::wake(task);
            }
        }
    }

    /// The VM ends (the first reason set wins); every loop leaves.
    fn end(&self, reason: StopReason, preserve: bool) {
        let mut ended = self.ended.lock();
        if ended.is_none() {
            *ended = Some((reason, preserve));
        }
        drop(ended);
        self.stopping.store(true, Ordering::SeqCst);
        self.kick(u64::MAX);
    }

    fn outcome(&self) -> (StopReason, bool) {
        self.ended
            .lock()
            .unwrap_or((StopReason::EndedAtConsole, false))
    }
}

/// Runs vCPU `vcpu_id` (not 0) of the VM `shared` on this host CPU until
/// the VM stops: it waits for the guest's INIT / Start-Up IPIs first (SDM
/// Vol 3A 8.4.4, wait-for-SIPI).
pub fn run_ap(
    shared: &Shared,
    config: &VmConfig,
    backend: Backend,
    vcpu_id: u32,
) -> Result<(), VmError> {
    let result = match backend {
        Backend::Svm(caps) => svm::new_vcpu(caps, shared.root, vcpu_id).map(|mut vcpu| {
            run_vcpu(&mut vcpu, shared, config, None);
        }),
        Backend::Vmx(controls) => {
            let cr4_hidden = controls.cr4_hidden(cpuid_policy(config).cr4_allowed());
            vmx::new_vcpu(controls, cr4_hidden, shared.root, vcpu_id).map(|mut vcpu| {
                run_vcpu(&mut vcpu, shared, config, None);
            })
        }
    };
    if let Err(e) = &result {
        log::error!("VM '{}': vCPU {vcpu_id}: {e}", config.name);
        shared.end(
            StopReason::Unhandled {
                what: "a vCPU that could not be created",
                rip: 0,
                info: u64::from(vcpu_id),
            },
            false,
        );
    }
    shared.aps_running.fetch_sub(1, Ordering::SeqCst);
    result
}

/// The whole chunks of `ram` not zeroed yet, which the nested page tables
/// hold back until the guest (or Keel) first touches them; a short last
/// chunk is zeroed now (the tables hold whole chunks only).
fn unzeroed_chunks(ram: &GuestMemory) -> Result<Vec<u64>, VmError> {
    let chunk = guest_memory::ZEROING_CHUNK;
    let whole = ram.size() / chunk * chunk;
    if whole < ram.size() {
        ram.touch(whole, (ram.size() - whole) as usize)
            .map_err(|e| VmError::Config(alloc::format!("guest RAM: {e}")))?;
    }
    Ok((0..whole)
        .step_by(chunk as usize)
        .filter(|&gpa| !ram.is_zeroed(gpa))
        .collect())
}

/// The nested mappings of guest RAM (`ram_bytes` at host `ram_pa`, the same
/// offset at each guest-physical address) but for the chunks in `held`.
fn ram_mappings(ram_pa: u64, ram_bytes: u64, held: &[u64]) -> Vec<GuestMapping> {
    let mut mappings = Vec::new();
    let mut from = 0;
    for gap in held
        .iter()
        .map(|&g| g..g + guest_memory::ZEROING_CHUNK)
        .chain(core::iter::once(ram_bytes..ram_bytes))
    {
        if gap.start > from {
            mappings.push(GuestMapping {
                gpa: from,
                hpa: ram_pa + from,
                len: gap.start - from,
                perms: Permissions::RWX,
            });
        }
        from = gap.end;
    }
    mappings
}

/// `map` with the chunks `held` held back ([`GuestPhysMap::hold_ram`]).
fn hold<F, M>(
    mut map: GuestPhysMap<F, M>,
    held: &[u64],
) -> Result<Box<dyn vmm_core::paging::VmMemoryMap>, VmError>
where
    F: vmm_core::paging::EntryFormat + Send + 'static,
    M: vmm_core::paging::TableMemory + Send + 'static,
{
    for &gpa in held {
        map.hold_ram(gpa)
            .map_err(|e| VmError::Config(alloc::format!("guest RAM at {gpa:#x}: {e:?}")))?;
    }
    Ok(Box::new(map))
}

/// `bytes` of contiguous host frames aligned to `align` for this VM's
/// `what`, or the error that says how much was free.
fn alloc_for_vm(
    frames: &mut FrameAllocator,
    bytes: u64,
    align: u64,
    what: &'static str,
) -> Result<u64, VmError> {
    let free = frames.free_bytes();
    frames
        .alloc_contiguous(bytes, align)
        .ok_or(VmError::OutOfMemory { what, bytes, free })
}

/// The host memory behind the test device's RAM BAR
/// (`device_model::test_device`), allocated with the VM and zeroed.
fn test_device_ram(frames: &mut FrameAllocator) -> Result<DeviceRegion, VmError> {
    let len = device_model::test_device::RAM_BAR_LEN;
    let hpa = alloc_for_vm(frames, len, PAGE_SIZE, "the test device's RAM BAR")?;
    // SAFETY: the frame allocator handed out [hpa, hpa + len) exclusively
    // to this VM; it is identity-mapped RAM, never freed (Keel ends after
    // the VM), and from here on reached only through this handle and by
    // the guest through the nested page tables.
    let memory = unsafe { GuestMemory::from_raw_region(hpa as *mut u8, len as usize) }
        .map_err(|e| VmError::Config(alloc::format!("test device RAM: {e}")))?;
    memory
        .fill(0, len as usize, 0)
        .map_err(|e| VmError::Config(alloc::format!("test device RAM: {e}")))?;
    Ok(DeviceRegion { hpa, memory })
}

/// The standard VGA's video memory (`device_model::display::vga`), behind
/// its linear framebuffer BAR, allocated with the VM and zeroed.
fn video_memory(frames: &mut FrameAllocator) -> Result<DeviceRegion, VmError> {
    let len = device_model::display::vga::VRAM_SIZE;
    let hpa = alloc_for_vm(frames, len, PAGE_SIZE, "the VGA's video memory")?;
    // SAFETY: the frame allocator handed out [hpa, hpa + len) exclusively
    // to this VM; it is identity-mapped RAM, never freed (Keel ends after
    // the VM), and from here on reached only through this handle and by
    // the guest through the nested page tables.
    let memory = unsafe { GuestMemory::from_raw_region(hpa as *mut u8, len as usize) }
        .map_err(|e| VmError::Config(alloc::format!("video memory: {e}")))?;
    memory
        .fill(0, len as usize, 0)
        .map_err(|e| VmError::Config(alloc::format!("video memory: {e}")))?;
    Ok(DeviceRegion { hpa, memory })
}

/// The disks of a VM: IDE drives by slot, virtio-blk disks in vdev order.
struct Drives {
    ide: Vec<(ChannelId, DrivePosition, IdeDrive)>,
    virtio: Vec<(String, VirtioBlk)>,
    /// With `xen_platform_pci`: each IDE disk again as a Xen vbd, over the
    /// same image (the guest's unplug leaves only the vbd).
    xen: Vec<XenDisk>,
}

/// The IDE drives and virtio disks the configuration's `disk` entries
/// describe: over the boot modules that carry the images (volatile RAM
/// disks: writes last until Keel stops), or over the machine's own
/// virtio-blk disks (persistent).
fn disk_drives(config: &VmConfig, images: &mut Images) -> Result<Drives, VmError> {
    let mut drives = Drives {
        ide: Vec::new(),
        virtio: Vec::new(),
        xen: Vec::new(),
    };
    let mut virtio: Vec<(u8, String, VirtioBlk)> = Vec::new();
    for spec in config.disk_specs().map_err(VmError::Config)? {
        let (backend, kib, kind): (Box<dyn BlockBackend>, u64, &str) = match spec.backend {
            DiskBackend::Module => {
                let bytes = images
                    .modules
                    .take(&spec.target)
                    .ok_or_else(|| VmError::MissingImage(spec.target.clone()))?;
                let kib = bytes.len() as u64 / 1024;
                let disk = RamDisk::from_static(spec.target.clone(), bytes)
                    .map_err(|e| VmError::Config(alloc::format!("disk '{}': {e}", spec.target)))?;
                (Box::new(disk), kib, "volatile")
            }
            DiskBackend::HostVirtio(n) => {
                let disk = images.host_disks.take(n).map_err(VmError::Config)?;
                if spec.writable && disk.read_only() {
                    return Err(VmError::Config(alloc::format!(
                        "disk '{}': the VM config asks for rw, but the device is read-only",
                        spec.target
                    )));
                }
                let kib = disk.capacity() / 2;
                let disk = ReadAhead::new(disk, crate::host::HOST_DISK_READ_AHEAD_SECTORS);
                (Box::new(disk), kib, "persistent")
            }
        };
        let access = if spec.writable {
            alloc::format!("read-write, {kind}")
        } else {
            String::from("read-only")
        };
        let what = if spec.cdrom { "CD-ROM" } else { "disk" };
        match spec.slot {
            DiskSlot::Ide(slot) => {
                let (channel, position) = match slot {
                    IdeSlot::PrimaryMaster => (ChannelId::Primary, DrivePosition::Master),
                    IdeSlot::PrimarySlave => (ChannelId::Primary, DrivePosition::Slave),
                    IdeSlot::SecondaryMaster => (ChannelId::Secondary, DrivePosition::Master),
                    IdeSlot::SecondarySlave => (ChannelId::Secondary, DrivePosition::Slave),
                };
                log::info!(
                    "VM '{}': {what} '{}' ({kib} KiB, {access}) on IDE {channel:?} {position:?}",
                    config.name,
                    spec.target,
                );
                let backend: Box<dyn BlockBackend> = if config.xen_platform_pci && !spec.cdrom {
                    let shared = SharedBackend::new(backend);
                    // docs/misc/vbd-interface.txt: hd[a-d] are IDE majors
                    // 3 and 22, 64 minors a disk.
                    let (virtual_device, dev) = match slot {
                        IdeSlot::PrimaryMaster => (3 << 8, "hda"),
                        IdeSlot::PrimarySlave => ((3 << 8) + 64, "hdb"),
                        IdeSlot::SecondaryMaster => (22 << 8, "hdc"),
                        IdeSlot::SecondarySlave => ((22 << 8) + 64, "hdd"),
                    };
                    let vbd: Box<dyn BlockBackend> = if spec.writable {
                        Box::new(shared.clone())
                    } else {
                        Box::new(ReadOnly(shared.clone()))
                    };
                    drives.xen.push(XenDisk {
                        virtual_device,
                        dev,
                        backend: vbd,
                    });
                    Box::new(shared)
                } else {
                    backend
                };
                let drive = ide_drive(backend, spec.cdrom, spec.writable);
                drives.ide.push((channel, position, drive));
            }
            DiskSlot::Virtio { index, .. } => {
                log::info!(
                    "VM '{}': disk '{}' ({kib} KiB, {access}) as virtio-blk {}",
                    config.name,
                    spec.target,
                    spec.slot.vdev()
                );
                let blk = VirtioBlk::new(
                    VirtioBlkConfig {
                        read_only: !spec.writable,
                    },
                    backend,
                );
                virtio.push((index, spec.slot.vdev(), blk));
            }
        }
    }
    // PCI slots in vdev order, so that xvda is the first the guest scans.
    virtio.sort_by_key(|(index, _, _)| *index);
    drives.virtio = virtio
        .into_iter()
        .map(|(_, vdev, blk)| (vdev, blk))
        .collect();
    Ok(drives)
}

/// The VM's network cards before the machine exists: each `vif` entry
/// with its port on the switch whose uplink is the host NIC it names (one
/// switch per host NIC, shared by the VM's vifs on it), and the iPXE option
/// ROM (`pxe-e1000`) for the e1000s' ROM BARs when the VM boots firmware.
struct Vifs {
    ports: Vec<(VifSpec, SwitchPort)>,
    rom: Option<Arc<[u8]>>,
    bridges: Vec<Bridge>,
}

impl Vifs {
    fn from_config(config: &VmConfig, images: &mut Images) -> Result<Self, VmError> {
        let specs = config.vif_specs().map_err(VmError::Config)?;
        let e1000 = specs.iter().any(|v| v.model == NicModel::E1000);
        let rom: Option<Arc<[u8]>> = match (&config.firmware, e1000) {
            (Some(_), true) => {
                Some(Arc::from(images.modules.get(PXE_E1000_ROM).ok_or_else(
                    || VmError::MissingImage(String::from(PXE_E1000_ROM)),
                )?))
            }
            _ => None,
        };
        let mut bridges: Vec<Bridge> = Vec::new();
        let mut ports = Vec::new();
        for (i, vif) in specs.into_iter().enumerate() {
            let config_error =
                |e: &dyn fmt::Display| VmError::Config(alloc::format!("vif {i}: {e}"));
            let at = match bridges.iter().position(|b| b.name() == vif.bridge_name()) {
                Some(at) => at,
                None => {
                    let nic = images
                        .host_nics
                        .take(vif.bridge)
                        .map_err(|e| config_error(&e))?;
                    let bridge = Bridge::new(nic, Arc::new(crate::clock::HostClock))
                        .map_err(|e| config_error(&e))?;
                    bridges.push(bridge);
                    bridges.len() - 1
                }
            };
            let port = bridges[at].add_port().map_err(|e| config_error(&e))?;
            ports.push((vif, port));
        }
        Ok(Vifs {
            ports,
            rom,
            bridges,
        })
    }

    /// The NIC each vif names (an e1000 or a virtio-net) on its port; the
    /// machine pumps the host NICs from now on. With `xen_platform_pci`,
    /// each e1000's port is shared with a Xen vif (returned, for netback)
    /// that takes it over when the guest unplugs the emulated NICs.
    fn attach(self, vm: &str, xen: bool, machine: &mut Machine) -> Result<Vec<XenNic>, VmError> {
        let mut xen_nics = Vec::new();
        for (i, (vif, port)) in self.ports.into_iter().enumerate() {
            let mac = MacAddress(vif.mac);
            let bdf = match vif.model {
                NicModel::E1000 => {
                    let backend: Box<dyn NetBackend> = if xen {
                        let (emulated, pv) = SharedNetBackend::pair(Box::new(port));
                        xen_nics.push(XenNic {
                            handle: xen_nics.len() as u32,
                            mac: vif.mac,
                            backend: pv,
                        });
                        Box::new(emulated)
                    } else {
                        Box::new(port)
                    };
                    machine.pc.add_e1000(
                        E1000Config {
                            mac,
                            rom: self.rom.clone(),
                        },
                        backend,
                    )
                }
                NicModel::VirtioNet => machine.pc.add_virtio(
                    VirtioNet::new(VirtioNetConfig { mac }, Box::new(port)),
                    Transport::Transitional,
                ),
            }
            .map_err(VmError::Platform)?;
            let rom = vif.model == NicModel::E1000 && self.rom.is_some();
            log::info!(
                "VM '{vm}': vif {i}: {} MAC {mac} at PCI {bdf}, bridge {}{}",
                vif.model.name(),
                vif.bridge_name(),
                if rom { " (option ROM pxe-e1000)" } else { "" }
            );
        }
        machine.set_bridges(self.bridges);
        Ok(xen_nics)
    }
}

/// An ATA disk or ATAPI CD-ROM over `backend`, refusing writes unless `writable`.
fn ide_drive(backend: Box<dyn BlockBackend>, cdrom: bool, writable: bool) -> IdeDrive {
    match (cdrom, writable) {
        (true, _) => IdeDrive::cdrom(Some(Box::new(ReadOnly(backend)))),
        (false, true) => IdeDrive::disk(backend),
        (false, false) => IdeDrive::disk(Box::new(ReadOnly(backend))),
    }
}

/// What vCPU 0's loop has besides the others: the VM's console.
struct Bsp<'a> {
    console: &'a mut console::VmConsole,
}

/// The event action the configuration names for a VM that stopped for
/// `reason`, with its key (xl.cfg(5) "Event Actions"): a power-off is
/// `on_poweroff`; a crash (triple fault, a state Keel cannot run, a device
/// that cannot go on) is `on_crash`; the rest (debug exit, a halt nothing
/// ends, the console) simply end the VM.
fn event_action(reason: &StopReason, config: &VmConfig) -> Option<(OnEvent, &'static str)> {
    match reason {
        StopReason::PoweredOff { .. } => Some((config.on_poweroff, "on_poweroff")),
        StopReason::TripleFault { .. }
        | StopReason::ExceptionLoop { .. }
        | StopReason::InvalidGuestState { .. }
        | StopReason::EventDeliveryThroughMmio { .. }
        | StopReason::Unexplained { .. }
        | StopReason::Unhandled { .. }
        | StopReason::DeviceStop { .. } => Some((config.on_crash, "on_crash")),
        StopReason::DebugExit { .. }
        | StopReason::HaltedForever { .. }
        | StopReason::EndedAtConsole
        | StopReason::Rebooted => None,
    }
}

/// The VM's CPUID: the host's, with xl.cfg's `cpuid = "host,name=0"` bits
/// hidden before Keel's own edits (which take what depends on them too).
fn cpuid_policy(config: &VmConfig) -> CpuidPolicy {
    let hidden: Vec<CpuidBit> = config
        .cpuid_hidden
        .iter()
        .map(|f| CpuidBit {
            leaf: f.leaf,
            subleaf: f.subleaf,
            reg: [CpuidReg::Eax, CpuidReg::Ebx, CpuidReg::Ecx, CpuidReg::Edx]
                [usize::from(f.reg & 3)],
            bit: f.bit,
        })
        .collect();
    CpuidPolicy::from_host_hiding(config.vcpus, crate::cpu::host_cpuid, &hidden)
}

/// The run loop of one vCPU, the same for every backend: deliver
/// interrupts, enter, decode, handle, repeat until the VM stops; a halted
/// vCPU sleeps until an interrupt is due, an AP (vCPU n > 0) waits for its
/// Start-Up IPI. The machine is locked for each pass of handling, never
/// while the guest runs or the CPU sleeps. Returns why the VM ended and
/// whether it is preserved. Each exit is counted by kind and device with
/// its TSC cycles in the vCPU's own table (`stats`).
fn run_vcpu(
    vcpu: &mut impl Vcpu,
    shared: &Shared,
    config: &VmConfig,
    mut bsp: Option<Bsp<'_>>,
) -> (StopReason, bool) {
    let me = vcpu.vcpu_id();
    let mut clock = shared.exit_stats.clock(me);
    let policy = VmPolicy::new(cpuid_policy(config), crate::clock::tsc_hz());
    let v = config.viridian;
    let amd = policy.msr.cpu().vendor == vmm_core::exit::Vendor::Amd;
    let hyperv = if config.xen_platform_pci {
        HyperV::xen(amd)
    } else {
        HyperV::new(
            HvFeatures {
                base: v.base,
                freq: v.freq,
                time_ref_count: v.time_ref_count,
                reference_tsc: v.reference_tsc,
            },
            amd,
            config.vcpus,
            crate::clock::tsc_hz(),
            machine::APIC_TIMER_HZ,
            crate::clock::rdtsc(),
        )
    };
    let mut policy = policy.with_hyperv(hyperv);
    vcpu.offer_rdtscp(policy.cpuid.offers_rdtscp());
    // The map generation this vCPU's cached translations match.
    let mut flushed = FlushTracker::default();
    let mut resets_seen = shared.resets.load(Ordering::SeqCst);
    // The hidden time the vCPU's TSC offset already subtracts.
    let mut applied_hidden = 0;
    vcpu.set_tsc_offset(shared.tsc_offset.load(Ordering::SeqCst));
    let mut dilation = Dilation::new(crate::clock::tsc_hz(), crate::clock::rdtsc(), 0);
    let mut new_budget = false;
    // An AP starts in wait-for-SIPI (SDM Vol 3A 8.4.1).
    let mut wait_for_sipi = me != 0;
    loop {
        // The scheduler's yield point: the slice may be over. Back on the
        // CPU after another vCPU ran, this one's VMCS is current again.
        if crate::sched::yield_if_due() && !vcpu.make_current() {
            shared.end(VMCS_LOST, false);
        }
        if shared.stopping.load(Ordering::SeqCst) {
            return shared.outcome();
        }
        let resets = shared.resets.load(Ordering::SeqCst);
        if resets != resets_seen {
            // The machine was reset: the BSP starts at the reset vector,
            // the APs wait for a Start-Up IPI again.
            resets_seen = resets;
            vcpu.reset();
            vcpu.set_tsc_offset(shared.tsc_offset.load(Ordering::SeqCst));
            applied_hidden = 0;
            // A guest rebooted calibrates again: a new budget.
            new_budget = true;
            policy.hyperv.reset();
            if me != 0 && !wait_for_sipi {
                shared.started_aps.fetch_sub(1, Ordering::SeqCst);
            }
            wait_for_sipi = me != 0;
        }
        let mut m = shared.lock(me);
        if core::mem::take(&mut new_budget) {
            m.apparent_time().thaw();
            let hidden = m.apparent_time().hidden();
            dilation = Dilation::new(crate::clock::tsc_hz(), crate::clock::rdtsc(), hidden);
        }
        if let Some(b) = bsp.as_mut() {
            if let Some(reason) = b.console.poll(&mut m, shared.exit_stats, &config.name) {
                shared.release(m, me);
                shared.end(reason, false);
                continue;
            }
        }
        m.service();
        // A device that cannot serve the guest within its bounds (raised in
        // a service pass) ends the VM before the guest runs again.
        if let Some(PowerRequest::Stop { reason }) = m.pc.power.peek() {
            shared.release(m, me);
            shared.end(StopReason::DeviceStop { reason }, false);
            continue;
        }
        // Map changes the devices asked for (PAM, SMRAM, A20, BARs) and
        // dirty-log faults take effect before this vCPU runs again.
        if flushed.needs_flush(m.apply_memory_map_changes()) {
            vcpu.flush_tlb();
        }
        // INIT (SDM Vol 3A 10.6.1 / 8.4.4): the BSP restarts at the reset
        // vector, an AP waits for a Start-Up IPI; a Start-Up IPI to a vCPU
        // in wait-for-SIPI starts it in real mode at vector << 12.
        let (init, sipi) = {
            let mut router = m.pc.router().lock();
            let init = router.take_init(me);
            (init, router.take_sipi(me))
        };
        if init {
            vcpu.reset();
            vcpu.set_tsc_offset(shared.tsc_offset.load(Ordering::SeqCst));
            applied_hidden = 0;
            if me != 0 && !wait_for_sipi {
                shared.started_aps.fetch_sub(1, Ordering::SeqCst);
            }
            wait_for_sipi = me != 0;
        }
        if let (true, Some(vector)) = (wait_for_sipi, sipi) {
            start_at_sipi(vcpu, vector);
            wait_for_sipi = false;
            // Under the machine's lock: vCPU 0 hides no more from here on.
            shared.started_aps.fetch_add(1, Ordering::SeqCst);
        }
        if wait_for_sipi {
            let poll = crate::clock::now_ns().saturating_add(AP_POLL_NS);
            shared.release(m, me);
            sleep_until(vcpu, shared, poll);
            continue;
        }
        // `sti; hlt` with an interrupt waiting: the HLT completes first, as
        // on hardware (the window exit may open inside the STI shadow).
        complete_hlt_in_shadow(vcpu, &mut *m);
        deliver(vcpu, &mut *m);
        // The VM's clocks move on from a hidden exit; the TSC offset
        // follows the time hidden, RDTSC exits while the window is open.
        let tsc_exiting = dilation.entering(
            m.apparent_time(),
            crate::clock::rdtsc(),
            dilating(shared, me),
        );
        vcpu.set_tsc_exiting(tsc_exiting);
        follow_hidden_time(vcpu, m.apparent_time(), &mut applied_hidden);
        // The guest may never exit by itself (a busy loop): a host timer
        // interrupt at the next device deadline ends its run so the interrupt
        // that comes due then is delivered on time.
        // With other vCPUs on this CPU, the scheduler's deadline too: a
        // guest spinning with IF=0 still gives the CPU up at its slice's end.
        let deadline = match (m.next_deadline_host_ns(), crate::sched::preempt_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        crate::arch::lapic::arm(deadline);
        // A backend with its own copy of CR8 (SVM's V_TPR) sees the APIC's
        // TPR, and a CR8 write the guest made without exiting reaches the APIC.
        let tpr = Platform::cr8(&mut *m, me) as u8;
        vcpu.set_virtual_tpr(tpr);
        shared.release(m, me);
        clock.enter();
        let exit = vcpu.run();
        let exit_tick = crate::clock::rdtsc();
        // Where the guest was when it exited, before the handler moves RIP
        // on: the HLT or reset write a stop message names.
        let rip = vcpu.rip();
        crate::arch::lapic::take_pending_interrupts();
        let mut m = shared.lock(me);
        let device = clock.exited(&exit, exit_tick, m.pc.bus());
        if shared.dilates && me == 0 {
            let enabled = dilating(shared, me);
            let timing = if enabled {
                m.exit_timing(&exit, device)
            } else {
                ExitTiming::Other
            };
            dilation.exited(m.apparent_time(), exit_tick, timing, enabled);
            // An RDTSC being handled reads the time the VM's clocks stand at.
            follow_hidden_time(vcpu, m.apparent_time(), &mut applied_hidden);
        }
        if let Some(t) = vcpu.virtual_tpr().filter(|&t| t != tpr) {
            Platform::set_cr8(&mut *m, me, u64::from(t));
        }
        // An INIT another vCPU sent while this one ran is taken at this
        // instruction boundary (SDM Vol 3A 10.6.1; the next pass resets the
        // vCPU): the instruction that exited never happens. Carried out, it
        // would act from a local APIC the INIT already reset, e.g. send an
        // IPI with ICR high cleared to 0, the BSP.
        let mut action = if m.init_pending() {
            ExitAction::Resume
        } else {
            handle_exit(&exit, vcpu, &mut *m, &mut policy)
        };
        // Timer reads the handler ran ahead to count as the exits they saved.
        let timer_reads = m.take_timer_reads_ran_ahead();
        if timer_reads > 0 && dilating(shared, me) {
            dilation.timer_reads_ran_ahead(timer_reads);
        }
        if action == ExitAction::Halt {
            shared.release(m, me);
            action = wait_for_interrupt(vcpu, shared, rip, resets_seen, &mut bsp, config);
            m = shared.lock(me);
        }
        let mut reboot = false;
        let mut ended = match m.pc.power.take() {
            Some(PowerRequest::DebugExit { status }) => Some(StopReason::DebugExit { status }),
            Some(PowerRequest::AcpiPowerOff) => Some(StopReason::PoweredOff { via: "ACPI S5" }),
            Some(PowerRequest::GuestPowerOff) => Some(StopReason::PoweredOff {
                via: "Xen SCHEDOP_shutdown",
            }),
            Some(PowerRequest::Stop { reason }) => Some(StopReason::DeviceStop { reason }),
            Some(PowerRequest::Reset) => {
                reboot = true;
                None
            }
            None => None,
        };
        if let (None, false, ExitAction::Stop(reason)) = (&ended, reboot, action) {
            ended = Some(reason);
        }
        let event = match &ended {
            _ if reboot => Some((config.on_reboot, "on_reboot")),
            Some(reason) => event_action(reason, config),
            None => None,
        };
        let preserve = matches!(event, Some((OnEvent::Preserve, _)));
        match (event, ended) {
            (Some((OnEvent::Restart, key)), ended) => {
                // Port accesses run ahead are work that took no exit of its own.
                let work = shared.exit_stats.total().count + m.ran_ahead();
                let in_a_row = shared
                    .reset_limit
                    .lock()
                    .on_reset(work, crate::clock::now_ns());
                if let Err(in_a_row) = in_a_row {
                    shared.release(m, me);
                    shared.end(
                        StopReason::Unhandled {
                            what: "a guest that keeps resetting the machine (resets in a row)",
                            rip,
                            info: u64::from(in_a_row),
                        },
                        false,
                    );
                    continue;
                }
                match ended {
                    None => log::info!(
                        "VM '{}': the guest reset the machine; restarting from the reset vector",
                        config.name
                    ),
                    Some(reason) => log::info!(
                        "VM '{}': {reason}; {key} = \"restart\": restarting from the reset vector",
                        config.name
                    ),
                }
                // RAM keeps its contents across a reset, except the firmware,
                // which is fresh as if read from ROM again; disks keep theirs.
                let (firmware_at, firmware) = (&shared.firmware.0, &shared.firmware.1);
                if let Err(e) = m.ram().write(*firmware_at, firmware) {
                    log::error!("VM '{}': firmware reload: {e}", config.name);
                }
                m.pc.reset();
                // The guest TSC starts at 0 once the hidden time is subtracted.
                let offset = 0u64
                    .wrapping_sub(crate::clock::rdtsc())
                    .wrapping_add(m.apparent_time().hidden());
                shared.tsc_offset.store(offset, Ordering::SeqCst);
                {
                    let mut router = m.pc.router().lock();
                    for v in 0..config.vcpus {
                        router.set_tsc_offset(v, offset);
                    }
                }
                // Every loop (this one at its next pass) resets its vCPU.
                shared.resets.fetch_add(1, Ordering::SeqCst);
                drop(m);
                shared.kick(!(1u64 << me.min(63)));
                continue;
            }
            (Some(_), None) => {
                shared.release(m, me);
                shared.end(StopReason::Rebooted, preserve);
            }
            (_, Some(reason)) => {
                shared.release(m, me);
                shared.end(reason, preserve);
            }
            (None, None) => shared.release(m, me),
        }
    }
}

/// The VM's end when a vCPU's control structure cannot be made current
/// again after another vCPU ran on its CPU.
const VMCS_LOST: StopReason = StopReason::Unhandled {
    what: "a vCPU whose VMCS could not be made current again (VMPTRLD failed)",
    rip: 0,
    info: 0,
};

/// Moves the vCPU's TSC offset back by the time hidden from the VM since
/// `applied` (what the offset already subtracts), so that its TSC and the
/// VM's clock agree.
fn follow_hidden_time(vcpu: &mut impl Vcpu, time: &ApparentTime, applied: &mut u64) {
    let hidden = time.hidden();
    if hidden != *applied {
        vcpu.set_tsc_offset(
            vcpu.tsc_offset()
                .wrapping_sub(hidden.wrapping_sub(*applied)),
        );
        *applied = hidden;
    }
}

/// Whether vCPU `me` hides its timer calibration's exits from the VM's
/// time now (`keel::apparent_time`): vCPU 0 of a VM without a paravirtual
/// clock, while every AP waits for a Start-Up IPI.
fn dilating(shared: &Shared, me: u32) -> bool {
    shared.dilates && me == 0 && shared.started_aps.load(Ordering::SeqCst) == 0
}

/// The vCPU sleeps until `deadline` or a kick (`sched::sleep_until`: the
/// CPU halts, or runs another vCPU meanwhile, after which this vCPU's
/// VMCS is made current again).
fn sleep_until(vcpu: &mut impl Vcpu, shared: &Shared, deadline: u64) {
    if crate::sched::sleep_until(deadline) && !vcpu.make_current() {
        shared.end(VMCS_LOST, false);
    }
}

/// How long an AP in wait-for-SIPI, or a halted vCPU of an SMP VM that
/// only another vCPU can wake, sleeps between looks (a kick wakes it
/// earlier).
const AP_POLL_NS: u64 = 10_000_000;

/// A Start-Up IPI's effect on a vCPU in wait-for-SIPI (SDM Vol 3A 8.4.4.1,
/// 10.6.1): the INIT state, then real mode at `vector << 12`, i.e. CS
/// selector `vector << 8`, CS base `vector << 12`, IP 0.
fn start_at_sipi(vcpu: &mut impl Vcpu, vector: u8) {
    let tsc = vcpu.tsc_offset();
    vcpu.reset();
    vcpu.set_tsc_offset(tsc);
    vcpu.set_segment(
        Sreg::Cs,
        Segment {
            selector: u16::from(vector) << 8,
            base: u64::from(vector) << 12,
            ..vmm_core::reset::CODE_SEGMENT
        },
    );
    vcpu.set_rip(0);
}

/// When a halted vCPU must look again: the next device deadline; with
/// a host uplink at most [`machine::NET_POLL_NS`] from now, since a frame
/// from the wire (polled, no host interrupt) may wake it; with a console
/// port and COM1's receive interrupt armed, the next console poll, since a
/// typed key may wake it (otherwise a halt no device can end still stops
/// the VM).
fn halt_deadline(machine: &mut Machine, console: Option<&console::VmConsole>) -> Option<u64> {
    let mut deadline = machine.next_deadline_host_ns();
    if machine.has_uplink() {
        let poll = crate::clock::now_ns().saturating_add(machine::NET_POLL_NS);
        deadline = Some(deadline.map_or(poll, |d| d.min(poll)));
    }
    if let Some(poll) = console
        .and_then(|c| c.wake_deadline_ns())
        .filter(|_| machine.pc.com1_receive_interrupt_armed())
    {
        deadline = Some(deadline.map_or(poll, |d| d.min(poll)));
    }
    deadline
}

/// HLT: the vCPU sleeps until an interrupt it accepts is due (SDM Vol 3A
/// 8.10.2: HLT ends on an unmasked interrupt, NMI, INIT or reset). The host
/// CPU halts too, woken by its timer at the next device deadline or by a
/// kick from another vCPU's CPU. Returns `Resume` when the vCPU should run
/// again, or why the VM stops (`halt_decision` says which). In an SMP VM
/// another vCPU may still send an NMI or INIT, so a halt nothing else can
/// end only sleeps.
fn wait_for_interrupt(
    vcpu: &mut impl Vcpu,
    shared: &Shared,
    hlt_rip: u64,
    resets_seen: u64,
    bsp: &mut Option<Bsp<'_>>,
    config: &VmConfig,
) -> ExitAction {
    let me = vcpu.vcpu_id();
    loop {
        if shared.stopping.load(Ordering::SeqCst)
            || shared.resets.load(Ordering::SeqCst) != resets_seen
        {
            return ExitAction::Resume;
        }
        let mut m = shared.lock(me);
        if let Some(b) = bsp.as_mut() {
            if let Some(reason) = b.console.poll(&mut m, shared.exit_stats, &config.name) {
                shared.release(m, me);
                return ExitAction::Stop(reason);
            }
        }
        m.service();
        if m.init_pending() {
            shared.release(m, me);
            return ExitAction::Resume;
        }
        let state = HaltState {
            interrupts_enabled: vcpu.interrupts_enabled(),
            interrupt_pending: m.interrupt_pending(),
            nmi_pending: m.nmi_pending(),
            nmi_blocked: vcpu.nmi_blocked(),
            nmi_route: m.nmi_route(),
            power_request: m.pc.power.peek().is_some(),
            next_deadline_ns: halt_deadline(&mut m, bsp.as_ref().map(|b| &*b.console)),
        };
        shared.release(m, me);
        match halt_decision(&state) {
            HaltDecision::Resume => return ExitAction::Resume,
            HaltDecision::SleepUntil(deadline) => sleep_until(vcpu, shared, deadline),
            HaltDecision::Stop { .. } if config.vcpus > 1 => sleep_until(
                vcpu,
                shared,
                crate::clock::now_ns().saturating_add(AP_POLL_NS),
            ),
            HaltDecision::Stop { interrupts_enabled } => {
                return ExitAction::Stop(StopReason::HaltedForever {
                    rip: hlt_rip,
                    interrupts_enabled,
                })
            }
        }
    }
}
