//! The PC a Keel VM sees, put together: QEMU's i440FX/PIIX `-machine pc`
//! layout, so that firmware and operating systems that know it (SeaBIOS,
//! Linux, Windows) work unchanged.
//!
//! | what | where | interrupt |
//! |---|---|---|
//! | 8259A pair, ELCR | ports 0x20, 0xA0, 0x4D0 | |
//! | IOAPIC | 0xFEC00000 | |
//! | local APIC (vCPU 0) | 0xFEE00000 | |
//! | 8254 PIT, port 0x61 | 0x40-0x43, 0x61 | IRQ 0 (IOAPIC pin 2) |
//! | i8042 keyboard controller, port 0x92 | 0x60, 0x64, 0x92 | IRQ 1, 12 |
//! | MC146818A RTC/CMOS | 0x70-0x71 | IRQ 8 |
//! | 16550A COM1 | 0x3F8-0x3FF | IRQ 4 |
//! | HPET | 0xFED00000 | IRQ 0/8 (legacy replacement), GSI 2 |
//! | PCI configuration mechanism #1, reset control | 0xCF8-0xCFF | |
//! | 00:00.0 i440FX host bridge | PCI | |
//! | 00:01.0 PIIX3 ISA bridge (PIRQ routing) | PCI | |
//! | 00:01.1 PIIX3 IDE (legacy mode), bus-master DMA | 0x1F0, 0x3F6, 0x170, 0x376; BAR4 | IRQ 14, 15 |
//! | 00:01.3 PIIX4 power management, PM timer | PCI, PMBA (set by firmware) | SCI: IRQ 9 |
//! | fw_cfg | 0x510-0x51B | |
//! | QEMU debug console | 0x402 | |
//! | debug exit (isa-debug-exit) | 0xF4 | |
//! | Keel's PCI test device (`keel_testdev = 1`), `test_device.rs` | 00:02.0, BAR0 at power-on 0xFEB00000 | MSI-X, INTA# |
//! | QEMU standard VGA (`stdvga = 1`), `display/vga` | ports 0x3B0-0x3DF, 0x1CE-0x1CF, 0xA0000-0xBFFFF; next free slot: BAR0 16 MiB LFB (RAM BAR), BAR2 4 KiB registers, ROM BAR with the VGA BIOS | |
//! | Intel 82540EM NIC per `vif` ([`Pc::add_e1000`]), `net/e1000` | next free slot; BAR0 128 KiB memory, BAR1 64-byte I/O, ROM BAR with iPXE | INTA# |
//! | virtio-blk per `specification=virtio` disk ([`Pc::add_virtio`]), `virtio/` | next free slot; BAR0 legacy I/O, BAR1 MSI-X, BAR4 16 KiB modern registers | MSI-X, INTA# |
//!
//! [`Pc`] owns the bus and the handles the VM loop needs. Each device gets
//! what it needs when it is created (guest memory for those that do DMA,
//! its interrupt lines, the clock) and does its own work inside its
//! register accesses: a port or MMIO write is a plain bus call, after which
//! the platform applies only machine-wide changes (PCI ranges that moved,
//! a reset through 0xCF9). [`Pc::service`] runs every device's due work
//! (timers, the rest of a long DMA transfer) before each entry, and the
//! interrupt router answers the loop's interrupt questions.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;

use spin::Mutex;

use crate::bus::{device_identity, AddressSpace, Bus, BusError, DeviceHandle, Reached};
use crate::clock::ClockHandle;
use crate::console::PrefixedConsole;
use crate::debug_console::DebugConsole;
use crate::debug_exit::DebugExit;
use crate::fw_cfg::{e820::RamLayout, FwCfg, FwCfgError};
use crate::input::{A20Gate, Port92, I8042};
use crate::interrupt::lapic::LapicConfig;
use crate::interrupt::message::MsiSender;
use crate::interrupt::router::IntxLine;
use crate::interrupt::{register_interrupt_controllers, PcInterruptRouter, RouterHandle};
use crate::irq::{IrqChipHandle, IrqLine};
use crate::memory_map::{self, MemoryMapQueue};
use crate::pci::device::ConfigPort;
use crate::pci::{
    Bdf, ConfigChange, I440fx, IntxPin, PciBus, PciBusError, PciConfigIo, PciDeviceHandle,
    PciEvent, PciFunction, PciLayer, PciWiring, Piix3, Piix4Pm, RegionId,
};
use crate::power::{PowerControl, PowerRequest};
use crate::serial::{CharSink, Tee, Uart16550};

/// Where COM1's output goes for the instant its sinks are rearranged.
struct NoOutput;

impl CharSink for NoOutput {
    fn write_byte(&mut self, _byte: u8) {}
}
use crate::display::vga::{self, Vga, VgaConfig};
use crate::storage::ide::{ChannelId, DrivePosition, IdeDrive, Piix3Ide};
use crate::test_device::{DeviceRam, TestDevice};
use crate::timer::pm_timer::PmTimerWidth;
use crate::timer::{
    BootDevice, CmosLayout, Hpet, HpetIrqs, LegacyReplacement, Pit, PmTimer, Port61, Rtc,
    TimerDevice,
};
use guest_log::RateLimitedLog;
use guest_memory::{GuestMemory, MemoryMapChange};
use log::Level;

/// ISA IRQ lines of the PC devices (the router maps IRQ 0 to IOAPIC pin 2).
mod isa_irq {
    pub const PIT: u32 = 0;
    pub const KEYBOARD: u32 = 1;
    pub const COM1: u32 = 4;
    pub const RTC: u32 = 8;
    pub const MOUSE: u32 = 12;
    /// The HPET's routable interrupt on QEMU's pc machine.
    pub const HPET_ROUTE: u32 = 2;
}

const COM1_BASE: u16 = 0x3f8;
const COM1_LEN: u16 = 8;
const PIT_BASE: u16 = 0x40;
const PIT_LEN: u16 = 4;
const PORT61: u16 = 0x61;
const RTC_BASE: u16 = 0x70;
const RTC_LEN: u16 = 2;
const PCI_CONFIG_BASE: u16 = 0xcf8;
const PCI_CONFIG_LEN: u16 = 8;

/// What the VM is built from.
#[derive(Clone)]
pub struct PcConfig {
    /// The VM's name: its COM1 lines are shown as `[name] ...`, firmware
    /// debug output as `[name:bios] ...`.
    pub name: String,
    pub vcpus: u32,
    /// Wall-clock time the RTC starts from, in seconds since the Unix epoch.
    pub unix_time: u64,
    /// Local APIC timer and feature parameters.
    pub lapic: LapicConfig,
    /// Adds Keel's PCI test device (`test_device.rs`).
    pub test_device: bool,
    /// The host memory behind the test device's RAM BAR, mapped into the
    /// guest by region id; `None`: memory of the device's own that every
    /// access exits to (host tests, fuzzing).
    pub test_device_ram: Option<DeviceRam>,
    /// Adds QEMU's standard VGA (`display/vga`) with this video memory and
    /// BIOS; `None`: no display adapter.
    pub vga: Option<VgaConfig>,
}

/// Why a PC could not be put together (a bug in the layout, never guest input).
#[derive(Debug)]
pub enum PcError {
    /// The VM's size is outside what the firmware tables can describe.
    Tables(acpi_gen::Error),
    Bus(BusError),
    Pci(PciBusError),
    FwCfg(FwCfgError),
}

impl fmt::Display for PcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PcError::Tables(e) => write!(f, "firmware tables: {e}"),
            PcError::Bus(e) => write!(f, "device layout: {e}"),
            PcError::Pci(e) => write!(f, "PCI layout: {e:?}"),
            PcError::FwCfg(e) => write!(f, "fw_cfg: {e:?}"),
        }
    }
}

impl From<BusError> for PcError {
    fn from(e: BusError) -> Self {
        PcError::Bus(e)
    }
}
impl From<PciBusError> for PcError {
    fn from(e: PciBusError) -> Self {
        PcError::Pci(e)
    }
}
impl From<FwCfgError> for PcError {
    fn from(e: FwCfgError) -> Self {
        PcError::FwCfg(e)
    }
}

/// Where the PIIX4 power-management I/O block currently decodes.
struct PmBlock {
    function: Arc<Mutex<Piix4Pm>>,
    timer: Arc<Mutex<PmTimer>>,
    base: Option<u16>,
    /// The port ranges this block registered (by start), the only ones it
    /// may unregister.
    registered: [Option<u16>; 3],
}

/// The whole emulated PC of one VM.
pub struct Pc {
    bus: Bus,
    /// Where devices ask for the VM to stop or reset.
    pub power: PowerControl,
    router: RouterHandle,
    /// Devices with work due at a time ([`Pc::service`]): the timers, and
    /// the DMA engines while a transfer longer than one exit's budget goes on.
    timers: Vec<TimerSlot>,
    /// Devices whose writes reach no timer or DMA engine (the serial port,
    /// the debug console, the interrupt controllers), by [`device_identity`]:
    /// a write to them keeps every cached deadline ([`Pc::touched`]).
    quiet_writes: Vec<usize>,
    pci: Arc<Mutex<PciConfigIo>>,
    pm: PmBlock,
    fw_cfg: Arc<Mutex<FwCfg>>,
    com1: Arc<Mutex<Uart16550>>,
    com1_irq: IrqLine,
    /// The level [`Pc::service`] last drove COM1's line to.
    com1_level: bool,
    a20: A20Gate,
    /// Whether the guest-physical map shows the A20 gate enabled (the last
    /// state [`Pc::take_memory_map_changes`] asked for).
    a20_mapped: bool,
    /// Changes to the guest-physical map the VM loop applies before the next entry.
    memory_map: MemoryMapQueue,
    ide: Arc<Mutex<Piix3Ide>>,
    /// BARs and ROMs of the devices plugged in with [`Pc::add_pci`].
    pci_layer: PciLayer,
    /// The machine's reset line: one entry per device that has state to reset.
    resets: Vec<Box<dyn Fn() + Send>>,
    /// Where PCI events are taken to be acted on, allocated once.
    pci_events: Vec<PciEvent>,
    /// The clock devices plugged in after `Pc::new` are timed by.
    clock: ClockHandle,
    /// Guest RAM, for the DMA of devices plugged in after `Pc::new`.
    memory: GuestMemory,
    /// The display adapter, if the VM has one.
    vga: Option<Arc<Mutex<Vga>>>,
    /// Xen's PV-on-HVM state ([`Pc::add_xen`]) and the unplug requests
    /// of its platform device.
    xen: Option<(
        Arc<Mutex<crate::xen::Xen>>,
        crate::xen::platform_pci::UnplugRequests,
    )>,
    /// The xenstore and the backends ([`Pc::add_xen_devices`]).
    xen_devices: Option<Arc<Mutex<crate::xen::devices::XenDevices>>>,
    /// The e1000s ([`Pc::add_e1000`]): the NICs Xen's unplug takes off the bus.
    emulated_nics: Vec<(Bdf, PciDeviceHandle)>,
    logs: PcLogs,
}

/// The rate limits of the log lines the platform itself writes for a guest
/// action (issue 11: per VM and cause).
#[derive(Default)]
struct PcLogs {
    /// The PM block placed over another device.
    placement: RateLimitedLog,
    /// Resets through 0xCF9.
    cf9_reset: RateLimitedLog,
}

/// A reset action for a shared device.
macro_rules! resetter {
    ($dev:expr) => {{
        let d = $dev.clone();
        Box::new(move || d.lock().reset()) as Box<dyn Fn() + Send>
    }};
}

impl Pc {
    /// Builds the PC over the guest's RAM, `memory` (its size is the
    /// VM's RAM size; devices that do DMA keep a clone). `console` receives
    /// every finished line of guest output (COM1 and the firmware debug
    /// console), already prefixed.
    pub fn new(
        config: &PcConfig,
        clock: ClockHandle,
        memory: GuestMemory,
        console: impl Fn(&str) + Clone + Send + 'static,
    ) -> Result<Pc, PcError> {
        let ram_size = memory.size();
        let power = PowerControl::new();
        let mut bus = Bus::new();
        let mut router = PcInterruptRouter::new(config.vcpus.max(1), config.lapic, clock.clone());
        router.set_vm_name(&config.name);
        let router: RouterHandle = Arc::new(Mutex::new(router));
        let chip: IrqChipHandle = router.clone();
        let line = |gsi: u32| IrqLine::new(chip.clone(), gsi);
        register_interrupt_controllers(&mut bus, &router)?;

        // COM1.
        let out = console.clone();
        let com1_console = PrefixedConsole::new(&config.name, Box::new(move |l: &str| out(l)));
        let com1 = Arc::new(Mutex::new(Uart16550::new(Box::new(com1_console))));
        bus.register_pio(COM1_BASE, COM1_LEN, "COM1", com1.clone())?;

        // Timers.
        let legacy = LegacyReplacement::new();
        let pit = Arc::new(Mutex::new(Pit::new(clock.clone(), line(isa_irq::PIT))));
        pit.lock().set_legacy_replacement(legacy.clone());
        bus.register_pio(PIT_BASE, PIT_LEN, "PIT", pit.clone())?;
        let port61 = Arc::new(Mutex::new(Port61::new(clock.clone(), pit.clone())));
        bus.register_pio(PORT61, 1, "port 0x61", port61.clone())?;
        let layout = CmosLayout::pc(
            ram_size,
            config.vcpus,
            &[BootDevice::HardDisk, BootDevice::Cdrom],
        );
        let rtc = Arc::new(Mutex::new(Rtc::new(
            clock.clone(),
            line(isa_irq::RTC),
            config.unix_time,
            &layout,
        )));
        rtc.lock().set_legacy_replacement(legacy.clone());
        bus.register_pio(RTC_BASE, RTC_LEN, "RTC/CMOS", rtc.clone())?;
        let hpet_irqs = HpetIrqs {
            legacy_irq0: line(isa_irq::PIT),
            legacy_irq8: line(isa_irq::RTC),
            routes: vec![line(isa_irq::HPET_ROUTE)],
        };
        let hpet = Arc::new(Mutex::new(Hpet::new(clock.clone(), hpet_irqs, legacy)));
        bus.register_mmio(Hpet::BASE, Hpet::LEN, "HPET", hpet.clone())?;
        let pm_timer = Arc::new(Mutex::new(PmTimer::new(
            clock.clone(),
            PmTimerWidth::Bits24,
        )));

        // Keyboard controller and A20.
        let a20 = A20Gate::new();
        let i8042 = Arc::new(Mutex::new(I8042::new(
            line(isa_irq::KEYBOARD),
            line(isa_irq::MOUSE),
            power.clone(),
            a20.clone(),
        )));
        bus.register_pio(I8042::DATA_PORT, 1, "i8042 data", i8042.clone())?;
        bus.register_pio(I8042::COMMAND_PORT, 1, "i8042 command", i8042.clone())?;
        let port92 = Arc::new(Mutex::new(Port92::new(a20.clone(), power.clone())));
        bus.register_pio(Port92::PORT, Port92::LEN, "port 0x92", port92.clone())?;

        // PCI: host bridge, ISA bridge, power management.
        let pm_function = Arc::new(Mutex::new(Piix4Pm::new(
            line(Piix4Pm::SCI_IRQ),
            power.clone(),
            Piix4Pm::S5_SLP_TYP,
        )));
        let mut pci_bus = PciBus::new();
        pci_bus.add(
            bdf(0, 0),
            "i440FX host bridge",
            Arc::new(Mutex::new(I440fx::new())),
        )?;
        pci_bus.add(
            bdf(1, 0),
            "PIIX3 ISA bridge",
            Arc::new(Mutex::new(Piix3::new())),
        )?;
        let ide = Arc::new(Mutex::new(Piix3Ide::new(
            memory.clone(),
            line(Piix3Ide::PRIMARY_IRQ),
            line(Piix3Ide::SECONDARY_IRQ),
        )));
        for (base, len, name) in Piix3Ide::LEGACY_RANGES {
            bus.register_pio(base, len, name, ide.clone())?;
        }
        pci_bus.add(bdf(1, 3), "PIIX4 power management", pm_function.clone())?;
        let pci = Arc::new(Mutex::new(PciConfigIo::new(pci_bus)));
        bus.register_pio(
            PCI_CONFIG_BASE,
            PCI_CONFIG_LEN,
            "PCI configuration",
            pci.clone(),
        )?;
        bus.register_pio(
            Piix4Pm::GPE0_PORT,
            Piix4Pm::GPE0_LEN,
            "PIIX4 GPE0",
            pm_function.clone(),
        )?;
        bus.register_pio(
            Piix4Pm::APM_PORT,
            Piix4Pm::APM_LEN,
            "PIIX4 APM",
            pm_function.clone(),
        )?;

        // Firmware interfaces.
        let vcpus = u16::try_from(config.vcpus).unwrap_or(u16::MAX);
        let mut fw_cfg = FwCfg::new(vcpus, vcpus, memory.clone());
        fw_cfg.add_e820(&RamLayout::qemu_pc(ram_size))?;
        // ACPI and SMBIOS for this machine, handed to firmware the way QEMU
        // does (SeaBIOS runs the table loader and installs them).
        let tables = acpi_gen::MachineConfig::new(config.vcpus.max(1), ram_size);
        let acpi = acpi_gen::AcpiTables::build(&tables)
            .map_err(PcError::Tables)?
            .fw_cfg();
        for (name, bytes) in acpi.files() {
            fw_cfg.add_file(name, bytes.to_vec())?;
        }
        let smbios = acpi_gen::SmbiosTables::build(&tables)
            .map_err(PcError::Tables)?
            .fw_cfg();
        fw_cfg.add_file("etc/smbios/smbios-anchor", smbios.anchor)?;
        fw_cfg.add_file("etc/smbios/smbios-tables", smbios.tables)?;
        let fw_cfg = Arc::new(Mutex::new(fw_cfg));
        bus.register_pio(FwCfg::PORT, FwCfg::LEN, "fw_cfg", fw_cfg.clone())?;
        let bios_name = alloc::format!("{}:bios", config.name);
        let out = console;
        let bios_console = PrefixedConsole::new(&bios_name, Box::new(move |l: &str| out(l)));
        let debug_console: DeviceHandle =
            Arc::new(Mutex::new(DebugConsole::new(Box::new(bios_console))));
        bus.register_pio(
            DebugConsole::PORT,
            DebugConsole::LEN,
            "debug console",
            debug_console,
        )?;
        let debug_exit: DeviceHandle = Arc::new(Mutex::new(DebugExit::new(power.clone())));
        bus.register_pio(DebugExit::PORT, DebugExit::LEN, "debug exit", debug_exit)?;

        let resets = vec![
            resetter!(router),
            resetter!(pit),
            resetter!(port61),
            resetter!(rtc),
            resetter!(hpet),
            resetter!(pm_timer),
            resetter!(i8042),
            resetter!(port92),
            resetter!(com1),
            resetter!(fw_cfg),
            // PCI functions (host bridge, PIIX3, IDE, PM) through the bus.
            resetter!(pci),
        ];
        let built_in: [Arc<Mutex<dyn TimerDevice + Send>>; 6] = [
            pit,
            rtc,
            hpet,
            pm_timer.clone(),
            ide.clone(),
            fw_cfg.clone(),
        ];
        let timers = built_in.into_iter().map(TimerSlot::cached).collect();
        let memory_map = MemoryMapQueue::new();
        let quiet_at = [
            (AddressSpace::Pio, u64::from(COM1_BASE)),
            (AddressSpace::Pio, u64::from(DebugConsole::PORT)),
            (AddressSpace::Mmio, crate::interrupt::IoApic::MMIO_BASE),
            (
                AddressSpace::Mmio,
                crate::interrupt::lapic::DEFAULT_APIC_BASE,
            ),
        ]
        .into_iter()
        .chain(
            crate::interrupt::PicPorts::RANGES
                .iter()
                .map(|&(port, _)| (AddressSpace::Pio, u64::from(port))),
        );
        let quiet_writes = quiet_at
            .filter_map(|(space, addr)| match bus.reached(space, addr, 1) {
                Reached::One(id) => Some(id),
                _ => None,
            })
            .collect();
        let mut pc = Pc {
            quiet_writes,
            bus,
            power,
            router,
            timers,
            pci,
            pm: PmBlock {
                function: pm_function,
                timer: pm_timer,
                base: None,
                registered: [None; 3],
            },
            fw_cfg,
            com1,
            com1_irq: line(isa_irq::COM1),
            com1_level: false,
            a20,
            a20_mapped: true,
            memory_map: memory_map.clone(),
            ide: ide.clone(),
            pci_layer: {
                let ram = RamLayout::qemu_pc(ram_size);
                PciLayer::new(ram.below_4g, ram.above_4g, memory_map)
            },
            resets,
            pci_events: Vec::with_capacity(crate::pci::root::EVENT_CAPACITY),
            clock,
            memory: memory.clone(),
            vga: None,
            xen: None,
            xen_devices: None,
            emulated_nics: Vec::new(),
            logs: PcLogs::default(),
        };
        pc.add_pci(ide, Some(Piix3Ide::BDF))?;
        if config.test_device {
            let ram = config
                .test_device_ram
                .clone()
                .unwrap_or_else(DeviceRam::unmapped);
            pc.add_pci(Arc::new(Mutex::new(TestDevice::new(memory, ram))), None)?;
        }
        if let Some(vga_config) = &config.vga {
            pc.add_vga(vga_config.clone())?;
        }
        // Power-on state of the PCI functions (the PM block may already decode).
        pc.apply_pci_events();
        // The chipset's power-on map: every PAM segment forwarded to the
        // ROM, the SMRAM window to the bus (the VMM starts from plain RAM).
        for segment in I440fx::new().pam_segments() {
            pc.memory_map.push(memory_map::pam_change(segment));
        }
        pc.memory_map.push(memory_map::smram_change(false));
        Ok(pc)
    }

    /// Plugs `device` in at `bdf`, or at function 0 of the first free slot
    /// from 00:02.0 on, and returns where. The PCI layer then handles its
    /// BARs, ROM, MSI/MSI-X and INTx pin (see docs/ARCHITECTURE.md, "How a
    /// PCI device is added"); the device receives its [`PciWiring`].
    pub fn add_pci(
        &mut self,
        device: PciDeviceHandle,
        bdf: Option<Bdf>,
    ) -> Result<Bdf, PciBusError> {
        /// Slots 0 and 1 are the host bridge and the PIIX3.
        const FIRST_FREE_SLOT: u8 = 2;
        let bdf = {
            let mut pci = self.pci.lock();
            let bus = pci.bus_mut();
            let bdf = match bdf {
                Some(b) => b,
                None => bus
                    .free_slot(FIRST_FREE_SLOT)
                    .ok_or(PciBusError::NoFreeSlot)?,
            };
            let name = device.lock().name();
            bus.add(bdf, name, Arc::new(Mutex::new(ConfigPort(device.clone()))))?;
            bdf
        };
        let mut pin = [0u8];
        device
            .lock()
            .config_read(crate::pci::config_space::reg::INTERRUPT_PIN, &mut pin);
        let intx = IntxPin::from_register(pin[0])
            .map(|p| IntxLine::new(&self.router, Piix3::pirq_for(bdf.device, p)));
        let sender = MsiSender::new(self.router.clone());
        {
            let mut dev = device.lock();
            if let Some((msi, _)) = dev.msi() {
                msi.connect(sender.clone());
            }
            if let Some((msix, _)) = dev.msix() {
                msix.connect(sender);
            }
            dev.plugged(PciWiring { bdf, intx });
        }
        // A function whose power-on state already decodes a region (a BAR
        // with a power-on address and memory decode on) is placed now: the
        // reset of a fresh function reports exactly those.
        let mut changes = Vec::new();
        ConfigPort(device.clone()).reset(&mut changes);
        self.pci_layer.insert(bdf, device);
        for change in changes {
            self.pci_layer
                .apply(&mut self.bus, &PciEvent { bdf, change });
        }
        self.apply_pci_events();
        Ok(bdf)
    }

    /// Plugs QEMU's standard VGA into the next free slot: its legacy
    /// ports and window on the bus, its BARs and ROM through the PCI layer.
    fn add_vga(&mut self, config: VgaConfig) -> Result<Bdf, PcError> {
        let mut vga = Vga::new(config);
        // The dirty log of its mapped framebuffer, for Keel's display.
        vga.set_memory_map(self.memory_map.clone());
        let card = Arc::new(Mutex::new(vga));
        let legacy: DeviceHandle = card.clone();
        self.bus
            .register_pio(vga::VGA_PORTS.0, vga::VGA_PORTS.1, "vga", legacy.clone())?;
        self.bus.register_pio(
            vga::DISPI_PORTS.0,
            vga::DISPI_PORTS.1,
            "vga",
            legacy.clone(),
        )?;
        self.bus
            .register_mmio(vga::LEGACY_WINDOW.0, vga::LEGACY_WINDOW.1, "vga", legacy)?;
        let bdf = self.add_pci(card.clone(), None)?;
        self.vga = Some(card);
        Ok(bdf)
    }

    /// Offers Xen's PV-on-HVM interfaces (xl.cfg `xen_platform_pci`): Keel's
    /// Xen pages are taken from the top of RAM below 4 GiB and reserved in
    /// the E820 map, the xen-platform-pci device joins the next free slot
    /// and the unplug ports 0x10-0x13 the bus. `tsc_hz` is the guest TSC's
    /// rate (the PV clock's scale); `limits` are where the VMM's nested
    /// tables can show Keel's pages. Returns the state the exit layer's
    /// hypercalls, the xenstore and the backends share.
    pub fn add_xen(
        &mut self,
        tsc_hz: u64,
        unix_time: u64,
        limits: crate::xen::PhysmapLimits,
    ) -> Result<Arc<Mutex<crate::xen::Xen>>, PcError> {
        use crate::fw_cfg::e820::{E820Entry, E820Type, FOUR_GIB};
        use crate::xen::platform_pci::{
            UnplugPorts, UnplugRequests, XenPlatformPci, UNPLUG_LEN, UNPLUG_PORT,
        };
        use crate::xen::{Xen, XenPages};
        let ram = RamLayout::qemu_pc(self.memory.size());
        let pages = XenPages::at_top_of(ram.below_4g);
        let mut e820 = alloc::vec![
            E820Entry {
                addr: 0,
                len: pages.base,
                kind: E820Type::Ram
            },
            E820Entry {
                addr: pages.base,
                len: XenPages::LEN,
                kind: E820Type::Reserved
            },
        ];
        if ram.above_4g > 0 {
            e820.push(E820Entry {
                addr: FOUR_GIB,
                len: ram.above_4g,
                kind: E820Type::Ram,
            });
        }
        let bytes = e820.iter().flat_map(|e| e.to_bytes()).collect();
        self.fw_cfg.lock().set_file_data("etc/e820", bytes)?;
        let xen = Arc::new(Mutex::new(Xen::new(
            self.memory.clone(),
            pages,
            1,
            self.clock.clone(),
            tsc_hz,
            unix_time,
            self.memory_map.clone(),
            limits,
            self.power.clone(),
        )));
        let requests = UnplugRequests::default();
        let ports: DeviceHandle = Arc::new(Mutex::new(UnplugPorts::new(requests.clone())));
        self.bus
            .register_pio(UNPLUG_PORT, UNPLUG_LEN, "xen unplug", ports)?;
        self.add_pci(Arc::new(Mutex::new(XenPlatformPci::new())), None)?;
        let x = xen.clone();
        self.resets.push(Box::new(move || x.lock().reset()));
        self.xen = Some((xen.clone(), requests));
        Ok(xen)
    }

    /// Xen's toolstack and backend domain for this VM (after
    /// [`Pc::add_xen`]): the xenstore with the domain's tree, `disks` as
    /// vbds served by blkback and `nics` as vifs served by netback.
    /// [`Pc::service`] then serves the store and the rings; a machine reset
    /// starts them over.
    pub fn add_xen_devices(
        &mut self,
        name: &str,
        disks: alloc::vec::Vec<crate::xen::devices::XenDisk>,
        nics: alloc::vec::Vec<crate::xen::devices::XenNic>,
    ) -> Result<(), PcError> {
        let Some((xen, _)) = &self.xen else {
            return Ok(());
        };
        let devices = crate::xen::devices::XenDevices::new(
            &xen.lock(),
            self.memory.clone(),
            name,
            self.memory.size() / 1024,
            disks,
            nics,
        );
        let devices = Arc::new(Mutex::new(devices));
        // After Xen's own reset (pushed by add_xen, so run before this).
        let (d, x) = (devices.clone(), xen.clone());
        self.resets
            .push(Box::new(move || d.lock().reset(&x.lock())));
        self.xen_devices = Some(devices);
        Ok(())
    }

    /// Xen's state, when the VM has it.
    pub fn xen(&self) -> Option<&Arc<Mutex<crate::xen::Xen>>> {
        self.xen.as_ref().map(|(x, _)| x)
    }

    /// Carries out the guest's emulated-device unplug (Xen's
    /// docs/misc/hvm-emulated-unplug): IDE disks go; the e1000s leave the
    /// PCI bus (their slots read as empty, their BARs decode nothing, their
    /// INTx is lowered) and their vifs take over their switch ports. The
    /// unplug lasts until the VM is destroyed, as on Xen.
    fn apply_unplug(&mut self) {
        use crate::xen::platform_pci::{UNPLUG_ALL_DISKS, UNPLUG_ALL_NICS, UNPLUG_AUX_IDE_DISKS};
        let Some((_, requests)) = &self.xen else {
            return;
        };
        let mask = requests.take();
        if mask & (UNPLUG_ALL_DISKS | UNPLUG_AUX_IDE_DISKS) != 0 {
            let n = self.ide.lock().unplug_disks(mask & UNPLUG_ALL_DISKS == 0);
            log::info!(
                "xen-platform-pci: the guest unplugged the emulated disks ({n} IDE disks removed)"
            );
        }
        if mask & UNPLUG_ALL_NICS != 0 {
            let n = self.unplug_nics();
            log::info!(
                "xen-platform-pci: the guest unplugged the emulated NICs ({n} e1000s removed)"
            );
        }
    }

    /// Takes every e1000 off the PCI bus and hands its port to its vif.
    fn unplug_nics(&mut self) -> usize {
        let nics = core::mem::take(&mut self.emulated_nics);
        let n = nics.len();
        for (bdf, dev) in nics {
            // Quiesce it as a reset does (INTx low, no DMA), then forget it.
            let mut changes = Vec::new();
            dev.lock().reset(&mut changes);
            self.pci.lock().bus_mut().remove(bdf);
            self.pci_layer.remove(&mut self.bus, bdf);
            let id = device_identity(&dev);
            self.timers.retain(|t| t.id != id);
        }
        if let Some(devices) = &self.xen_devices {
            devices.lock().nics_unplugged();
        }
        n
    }

    /// The display adapter, if the VM has one (its screen: text dump, render).
    pub fn vga(&self) -> Option<&Arc<Mutex<Vga>>> {
        self.vga.as_ref()
    }

    /// The PCI layer (BAR placements refused for overlaps).
    pub fn pci_layer(&self) -> &PciLayer {
        &self.pci_layer
    }

    /// Plugs an Intel 82540EM (`net::e1000`) into the next free PCI slot,
    /// sending and receiving its frames through `backend`. [`Pc::service`]
    /// then moves its received frames, the rest of long transmit rings and
    /// its interrupt timers; a machine reset resets it.
    pub fn add_e1000(
        &mut self,
        config: crate::net::e1000::E1000Config,
        backend: alloc::boxed::Box<dyn crate::net::NetBackend>,
    ) -> Result<Bdf, PcError> {
        let nic = Arc::new(Mutex::new(crate::net::e1000::E1000::new(
            config,
            self.memory.clone(),
            self.clock.clone(),
            backend,
        )));
        let bdf = self.add_pci(nic.clone(), None)?;
        // The PCI bus resets its functions (this one included) on a
        // machine reset; the service list is the only other place it joins.
        self.timers.push(TimerSlot::always(nic.clone()));
        self.emulated_nics.push((bdf, nic));
        Ok(bdf)
    }

    /// Plugs a virtio device of type `device` (`virtio::VirtioBlk`, ...)
    /// into the next free PCI slot over the virtio PCI transport.
    /// [`Pc::service`] then continues the work a queue notification left
    /// over; a machine reset resets it.
    pub fn add_virtio<D: crate::virtio::VirtioDevice + 'static>(
        &mut self,
        device: D,
        transport: crate::virtio::Transport,
    ) -> Result<Bdf, PcError> {
        let dev = Arc::new(Mutex::new(crate::virtio::VirtioPci::new(
            device,
            transport,
            self.memory.clone(),
            self.clock.clone(),
        )));
        let bdf = self.add_pci(dev.clone(), None)?;
        self.timers.push(TimerSlot::always(dev));
        Ok(bdf)
    }

    /// Plugs a disk or CD-ROM into the IDE controller (before the VM runs).
    pub fn attach_ide(&mut self, channel: ChannelId, position: DrivePosition, drive: IdeDrive) {
        self.ide.lock().attach(channel, position, drive);
    }

    /// The machine's reset (0xCF9, the keyboard controller, port 0x92): every
    /// device goes back to its power-on state; disks keep their contents.
    pub fn reset(&mut self) {
        for reset in &self.resets {
            reset();
        }
        for t in &mut self.timers {
            t.stale = true;
        }
        self.apply_pci_events();
        self.com1_irq.set_level(false);
        self.com1_level = false;
    }

    /// The bus, read-only: its ranges (the fuzz harness drives each) and
    /// its device names and indexes (the exit statistics).
    pub fn bus(&self) -> &Bus {
        &self.bus
    }

    /// The raw bus, for host harnesses that plug in a probe device. A
    /// device of the machine joins through [`Pc::new`] or [`Pc::add_pci`].
    #[cfg(any(test, feature = "testutil"))]
    pub fn bus_mut(&mut self) -> &mut Bus {
        &mut self.bus
    }

    /// Accesses that reached no device.
    pub fn unclaimed(&self) -> crate::bus::UnclaimedStats {
        self.bus.unclaimed()
    }

    /// The interrupt controllers.
    pub fn router(&self) -> &RouterHandle {
        &self.router
    }

    /// The fw_cfg device, to add firmware files (ACPI tables, SMBIOS) before the VM runs.
    pub fn fw_cfg(&self) -> &Arc<Mutex<FwCfg>> {
        &self.fw_cfg
    }

    /// Whether the A20 line is enabled (i8042 output port or port 0x92).
    pub fn a20_enabled(&self) -> bool {
        self.a20.enabled()
    }

    /// The changes to the guest-physical map asked for since the last call
    /// (PAM, SMRAM, the A20 gate, RAM-backed BARs), oldest first. The VM
    /// loop applies them to the nested page tables before any vCPU enters
    /// the guest again.
    pub fn take_memory_map_changes(&mut self) -> Vec<MemoryMapChange> {
        let a20 = self.a20_enabled();
        if a20 != self.a20_mapped {
            self.a20_mapped = a20;
            self.memory_map.push(memory_map::a20_change(a20));
        }
        self.memory_map.take()
    }

    /// Where a device queues its own map changes (a RAM-backed BAR:
    /// [`MemoryMapQueue::ram_bar_moved`]).
    pub fn memory_map_queue(&self) -> &MemoryMapQueue {
        &self.memory_map
    }

    /// A port read.
    pub fn pio_read(&mut self, port: u16, size: u8) -> u32 {
        self.touched(AddressSpace::Pio, port.into(), size.into(), false);
        self.bus.pio_read(port, size)
    }

    /// A port write: the device that decodes it does what it starts (DMA
    /// included) before this returns; then the machine-wide changes.
    pub fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        self.touched(AddressSpace::Pio, port.into(), size.into(), true);
        self.bus.pio_write(port, size, value);
        self.after_write();
    }

    /// Bytes `port` moves in one bulk string I/O call now ([`Bus::pio_string_room`]).
    pub fn pio_string_room(&mut self, port: u16, elem: usize, write: bool) -> usize {
        self.bus.pio_string_room(port, elem, write)
    }

    /// `REP INS` in bulk ([`Bus::pio_read_string`]).
    pub fn pio_read_string(&mut self, port: u16, elem: usize, data: &mut [u8]) -> usize {
        self.touched(AddressSpace::Pio, port.into(), elem, false);
        self.bus.pio_read_string(port, elem, data)
    }

    /// `REP OUTS` in bulk ([`Bus::pio_write_string`]); like [`Pc::pio_write`].
    pub fn pio_write_string(&mut self, port: u16, elem: usize, data: &[u8]) -> usize {
        self.touched(AddressSpace::Pio, port.into(), elem, true);
        let n = self.bus.pio_write_string(port, elem, data);
        self.after_write();
        n
    }

    /// An MMIO read at a guest-physical address that is not RAM.
    pub fn mmio_read(&mut self, gpa: u64, data: &mut [u8]) {
        self.touched(AddressSpace::Mmio, gpa, data.len(), false);
        self.bus.mmio_read(gpa, data)
    }

    /// An MMIO write at a guest-physical address that is not RAM; like
    /// [`Pc::pio_write`].
    pub fn mmio_write(&mut self, gpa: u64, data: &[u8]) {
        self.touched(AddressSpace::Mmio, gpa, data.len(), true);
        self.bus.mmio_write(gpa, data);
        self.after_write();
    }

    /// What any write may have changed for the whole machine, whichever
    /// device took it: PCI ranges that moved (the devices queue them on the
    /// PCI bus) and a reset requested through 0xCF9.
    fn after_write(&mut self) {
        self.apply_pci_events();
        self.apply_unplug();
        if let Some(kind) = self.pci.lock().take_reset_request() {
            self.logs.cf9_reset.log(
                Level::Info,
                format_args!("guest reset the machine through port 0xCF9 ({kind:?})"),
            );
            self.power.request(PowerRequest::Reset);
        }
    }

    /// Moves device ranges as the PCI functions report: BARs and ROMs of
    /// the devices plugged in with [`Pc::add_pci`] through the PCI layer,
    /// the PM block here; PIRQ routes to the interrupt router.
    fn apply_pci_events(&mut self) {
        let mut events = core::mem::take(&mut self.pci_events);
        let dropped = {
            let mut pci = self.pci.lock();
            pci.bus_mut().take_events_into(&mut events);
            pci.bus_mut().take_dropped()
        };
        if dropped > 0 {
            self.power.request(PowerRequest::Stop {
                reason: "the PCI event queue overflowed; a BAR or PM block move was lost",
            });
        }
        for &e in &events {
            if self.pci_layer.apply(&mut self.bus, &e) {
                continue;
            }
            match e.change {
                ConfigChange::Region {
                    id: RegionId::PmIo,
                    new,
                    ..
                } => {
                    self.move_pm_block(new.and_then(|b| u16::try_from(b).ok()));
                }
                ConfigChange::Region {
                    id,
                    space,
                    old,
                    new,
                    ..
                } => {
                    log::debug!(
                        "PCI {:?}: {id:?} in {space} moved {old:?} -> {new:?}, nothing decodes it",
                        e.bdf
                    );
                }
                ConfigChange::Pam(segment) => self.memory_map.push(memory_map::pam_change(segment)),
                ConfigChange::Smram { open } => {
                    self.memory_map.push(memory_map::smram_change(open))
                }
                ConfigChange::PirqRoute { pirq, irq } => {
                    self.router.lock().set_pirq_route(pirq, irq);
                }
            }
        }
        if !events.is_empty() {
            self.pci_layer.retry_refused(&mut self.bus);
        }
        self.pci_events = events;
    }

    /// Moves the PM block to `new`. Only the ports this block registered
    /// are ever unregistered: a guest that puts PMBA over another device
    /// (0x40, the PIT) must not take that device off the bus.
    fn move_pm_block(&mut self, new: Option<u16>) {
        for start in self.pm.registered.iter_mut().filter_map(Option::take) {
            self.bus.unregister(AddressSpace::Pio, start.into());
        }
        self.pm.base = None;
        let Some(base) = new else { return };
        let [(a, a_len), (b, b_len)] = Piix4Pm::pm_io_ranges(base);
        let function: DeviceHandle = self.pm.function.clone();
        let timer: DeviceHandle = self.pm.timer.clone();
        let ranges = [
            (a, a_len, "PIIX4 PM", function.clone()),
            (b, b_len, "PIIX4 PM", function),
            (
                base.saturating_add(PmTimer::OFFSET),
                PmTimer::LEN,
                "ACPI PM timer",
                timer,
            ),
        ];
        let mut ok = true;
        for (slot, (start, len, name, dev)) in self.pm.registered.iter_mut().zip(ranges) {
            if self.bus.register_pio(start, len, name, dev).is_ok() {
                *slot = Some(start);
            } else {
                ok = false;
            }
        }
        if ok {
            self.pm.base = Some(base);
            return;
        }
        // The guest put the block over another device: real hardware would
        // decode both and collide; Keel keeps the other device and says so.
        for start in self.pm.registered.iter_mut().filter_map(Option::take) {
            self.bus.unregister(AddressSpace::Pio, start.into());
        }
        self.logs.placement.log(Level::Warn, format_args!("guest placed the PIIX4 PM block at {base:#x}, over another device's ports: the block is not decoded"));
    }

    /// Runs every device's due work: interrupts of timers, COM1 and the PM
    /// timer's overflow status, and the next piece of a DMA transfer longer
    /// than one exit's budget (each engine bounds its own, see
    /// docs/SECURITY.md). Call before each entry into the guest.
    pub fn service(&mut self) {
        let now = self.clock.now_ns();
        for t in &mut self.timers {
            if t.needs_service(now) {
                t.dev.lock().service();
                t.stale = true;
            }
        }
        let pm_timer = &mut self.timers[PM_TIMER_SLOT];
        if pm_timer.needs_service(now) {
            pm_timer.stale = true;
            if self.pm.timer.lock().take_msb_toggles() > 0 {
                self.pm.function.lock().pm_timer_carry();
            }
        }
        let level = self.com1.lock().irq_pending();
        // A line that stays low needs no call into the interrupt router.
        if level || self.com1_level {
            self.com1_irq.set_level(level);
        }
        self.com1_level = level;
        if let Some((xen, _)) = &self.xen {
            let mut xen = xen.lock();
            xen.service();
            if let Some(devices) = &self.xen_devices {
                devices.lock().service(&mut xen);
            }
        }
    }

    /// Characters typed for this VM: each goes to COM1's serial input
    /// while its receiver has room (`Uart16550::receive_room`). Returns how
    /// many of `bytes` were taken; the caller keeps the rest. The interrupt
    /// follows at the next [`Pc::service`].
    pub fn com1_type(&mut self, bytes: &[u8]) -> usize {
        let mut com1 = self.com1.lock();
        let n = bytes.len().min(com1.receive_room());
        for &b in &bytes[..n] {
            com1.receive(b);
        }
        n
    }

    /// Whether a typed character could raise COM1's interrupt now.
    pub fn com1_receive_interrupt_armed(&self) -> bool {
        self.com1.lock().receive_interrupt_armed()
    }

    /// Sends COM1's output to `raw` as well, byte for byte as the guest
    /// wrote it (the console stream), besides the prefixed log.
    pub fn add_com1_output(&mut self, raw: Box<dyn CharSink>) {
        let mut com1 = self.com1.lock();
        let log = com1.replace_output(Box::new(NoOutput));
        com1.replace_output(Box::new(Tee(log, raw)));
    }

    /// The earliest time a device needs [`Pc::service`] again, if any (at
    /// or before now while a DMA transfer has data left to move).
    pub fn next_deadline_ns(&mut self) -> Option<u64> {
        let timers = self.timers.iter_mut().filter_map(TimerSlot::deadline_ns);
        let earliest = timers.min();
        let apic = self.router.lock().next_deadline_ns();
        let xen = self
            .xen
            .as_ref()
            .and_then(|(x, _)| x.lock().next_deadline_ns());
        // A store or ring pass left work: due now.
        let pv = self
            .xen_devices
            .as_ref()
            .filter(|d| d.lock().needs_service())
            .map(|_| self.clock.now_ns());
        earliest.into_iter().chain(apic).chain(xen).chain(pv).min()
    }

    /// A guest access may have changed what the devices it reached will do
    /// and when: their cached deadlines are recomputed before the next
    /// entry. A write may reach further than its device (a BAR or PM block
    /// that moves, a DMA it starts, the HPET's legacy replacement that
    /// silences the PIT and RTC), so it forgets every deadline, unless its
    /// device is one of [`Pc::quiet_writes`]; a read forgets only its own
    /// device's.
    fn touched(&mut self, space: AddressSpace, addr: u64, len: usize, write: bool) {
        // CONFIG_ADDRESS (a dword at 0CF8h, PCI Local Bus 3.2.2.3.2) only
        // latches which register the next data access reaches.
        if write && space == AddressSpace::Pio && addr == u64::from(PCI_CONFIG_BASE) && len == 4 {
            return;
        }
        let reached = self.bus.reached(space, addr, len);
        let all = match reached {
            Reached::Nothing => return,
            Reached::One(id) if write && self.quiet_writes.contains(&id) => return,
            Reached::One(_) => write,
            Reached::Several => true,
        };
        for t in &mut self.timers {
            if all || reached == Reached::One(t.id) {
                t.stale = true;
            }
        }
    }
}

/// Where the PM timer sits in [`Pc::timers`] (the order `Pc::new` builds).
const PM_TIMER_SLOT: usize = 3;

/// A device on the service list with its last deadline. Before each entry
/// the platform asks every device when it next has work
/// ([`TimerDevice::next_deadline_ns`]) and lets it do its due work
/// ([`TimerDevice::service`]); both read the clock and take the device's
/// lock. A built-in device's answer changes only through the guest's
/// accesses to it (its registers), through its own service pass, or with
/// time reaching it, so it is kept until one of those happens (a
/// device's service does nothing before its deadline: each raises its
/// interrupts and moves its DMA only then). Devices with host-side input
/// (NICs, virtio) are asked every time.
struct TimerSlot {
    dev: Arc<Mutex<dyn TimerDevice + Send>>,
    /// [`device_identity`] of `dev`, as the bus reports what an access reached.
    id: usize,
    /// Whether `due` may be kept between guest accesses.
    cacheable: bool,
    /// The deadline last reported.
    due: Option<u64>,
    /// `due` must be asked again (and the device serviced).
    stale: bool,
}

impl TimerSlot {
    fn cached(dev: Arc<Mutex<dyn TimerDevice + Send>>) -> Self {
        TimerSlot {
            id: device_identity(&dev),
            dev,
            cacheable: true,
            due: None,
            stale: true,
        }
    }

    fn always(dev: Arc<Mutex<dyn TimerDevice + Send>>) -> Self {
        TimerSlot {
            cacheable: false,
            ..TimerSlot::cached(dev)
        }
    }

    fn needs_service(&self, now: u64) -> bool {
        !self.cacheable || self.stale || self.due.is_some_and(|d| d <= now)
    }

    fn deadline_ns(&mut self) -> Option<u64> {
        if !self.cacheable || self.stale {
            self.due = self.dev.lock().next_deadline_ns();
            self.stale = false;
        }
        self.due
    }
}

fn bdf(device: u8, function: u8) -> Bdf {
    Bdf {
        bus: 0,
        device,
        function,
    }
}

#[cfg(test)]
mod tests;
