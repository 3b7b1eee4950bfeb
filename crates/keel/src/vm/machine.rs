//! The platform a VM's exits reach: the emulated PC, guest RAM and the clock.
//!
//! Implements the exit layer's `Platform` and the interrupt layer's
//! `InterruptSource` on top of `device_model::Pc`, so `vmm-core` never names a
//! device and the devices never name a backend.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;

use device_model::bus::AddressSpace;
use guest_log::RateLimitedLog;
use vmm_core::paging::VmMemoryMap;

use crate::host::Bridge;
use keel::apparent_time::{ApparentTime, ExitTiming};

use device_model::display::vga::VgaConfig;
use device_model::interrupt::lapic::LapicConfig;
use device_model::{DeviceRam, Pc, PcConfig, PcError};
use guest_memory::{GuestMemory, HostRegionId, MemoryMapChange};
use vmm_core::exit::MsrOutcome;
use vmm_core::interrupts::InterruptSource;
use vmm_core::VmExit;

/// How long a halted vCPU sleeps at most while its VM has a host uplink:
/// frames from the wire wait at most this long in the host NIC.
pub const NET_POLL_NS: u64 = 1_000_000;

/// IA32_APIC_BASE and IA32_TSC_DEADLINE, and the x2APIC MSR range (SDM Vol 3A 10.12.1).
const IA32_APIC_BASE: u32 = 0x1b;
const IA32_TSC_DEADLINE: u32 = 0x6e0;
const X2APIC_MSRS: core::ops::RangeInclusive<u32> = 0x800..=0x8ff;

/// The local APIC timer's input clock (the model's default), which the
/// Hyper-V APIC frequency MSR reports.
pub const APIC_TIMER_HZ: u64 = LapicConfig::DEFAULT_BUS_HZ;

/// One VM's emulated PC and its RAM, as the VM loop drives them.
pub struct Machine {
    pub pc: Pc,
    /// The exit path's handle to guest RAM; the devices that do DMA hold
    /// clones of it.
    ram: GuestMemory,
    /// The kept nested page table, set once the backend built it.
    map: Option<Box<dyn VmMemoryMap>>,
    /// The map's generation as of the machine's last change to it (the
    /// machine makes every change), so that an exit with no change to
    /// apply need not reach the map.
    map_generation: u64,
    /// RAM pages the map was last seen to map, for the emulator's accesses.
    seen: SeenPages,
    /// Map changes refused (a request for memory that is not the guest's).
    refused: RateLimitedLog,
    /// Host memory of the devices (`[hpa, hpa + len)`), to register with
    /// the nested map under the id each device was given.
    regions: Vec<(HostRegionId, u64, u64)>,
    /// The host NICs this VM's NICs reach, each with its switch.
    bridges: Vec<Bridge>,
    /// The vCPU whose loop holds the machine now (each loop sets it when
    /// it takes the VM's lock): the one whose local APIC the interrupt
    /// source answers for.
    current: u32,
    /// The time hidden from the VM while it calibrates its TSC: the
    /// devices' clock and the guest TSC both subtract it.
    time: Arc<ApparentTime>,
    /// [`Machine::is_timer`]'s bits by bus device index, and the bus's
    /// device count they were found for.
    timer_devices: (usize, u64),
    /// Port accesses carried out after an exit without exits of their own
    /// (`Platform::ran_ahead`), for the exit statistics.
    ran_ahead: u64,
    /// Of those, the timer reads of the exit being handled, for the time
    /// dilation ([`Machine::take_timer_reads_ran_ahead`]).
    timer_reads_ran_ahead: u32,
}

/// Guest RAM pages the nested map was seen to map, each with whether it
/// was writable, so that the emulator's accesses to them (the guest page
/// walk and the fetch of each emulated instruction) need not walk the nested
/// table again. Only what a later change could take away is kept: a
/// change removes or restricts a mapping only through the machine, which
/// forgets them all then (a refused or missing mapping is never kept).
#[derive(Default)]
struct SeenPages([Option<(u64, bool)>; SEEN_PAGES]);

/// Pages [`SeenPages`] keeps: a walk's tables and the code page, with room.
const SEEN_PAGES: usize = 8;

impl SeenPages {
    /// Whether page number `page` was seen mapped, and writable if `write`.
    fn allows(&self, page: u64, write: bool) -> bool {
        self.0[page as usize % SEEN_PAGES].is_some_and(|(p, w)| p == page && (w || !write))
    }

    fn insert(&mut self, page: u64, writable: bool) {
        self.0[page as usize % SEEN_PAGES] = Some((page, writable));
    }
}

/// The time and interrupt-controller options of a VM's PC.
pub struct PlatformClock {
    /// xl.cfg `rtc_timeoffset`: seconds off the machine's UTC time.
    pub rtc_timeoffset: i64,
    /// The local APICs accept x2APIC mode (IA32_APIC_BASE.EXTD, SDM Vol 3A
    /// 11.12.5): exactly when CPUID offers it.
    pub x2apic: bool,
}

/// Host memory Keel allocated for a device when it created the VM: where
/// it is, and a handle over it for the device's own accesses.
pub struct DeviceRegion {
    pub hpa: u64,
    pub memory: GuestMemory,
}

impl Machine {
    /// The PC of VM `name` over its RAM; with the test device if
    /// `test_device`, its RAM BAR over `test_ram`; with QEMU's standard
    /// VGA if `vga` gives its video memory (and its BIOS); its RTC and
    /// local APICs as `options` say.
    pub fn new(
        name: &str,
        ram: GuestMemory,
        vcpus: u32,
        test_device: bool,
        test_ram: Option<DeviceRegion>,
        vga: Option<(DeviceRegion, Option<Arc<[u8]>>)>,
        options: PlatformClock,
    ) -> Result<Self, PcError> {
        let PlatformClock {
            rtc_timeoffset,
            x2apic,
        } = options;
        // Region ids are handed out in the order `set_memory_map` registers
        // the regions, from 0.
        let mut regions = Vec::new();
        let test_device_ram = test_ram.map(|r| {
            let id = HostRegionId(regions.len() as u32);
            regions.push((id, r.hpa, r.memory.size()));
            DeviceRam {
                region: Some(id),
                memory: r.memory,
            }
        });
        let vga = vga.map(|(r, rom)| {
            let id = HostRegionId(regions.len() as u32);
            regions.push((id, r.hpa, r.memory.size()));
            VgaConfig {
                vram: DeviceRam {
                    region: Some(id),
                    memory: r.memory,
                },
                rom,
            }
        });
        let config = PcConfig {
            name: String::from(name),
            vcpus,
            // The machine's RTC as read at Keel's start, plus the time since,
            // plus the VM's offset (xl.cfg `rtc_timeoffset`, bounded by
            // vm-config to 100 years); 0 (1970) if the RTC could not be read.
            unix_time: match crate::clock::unix_time() {
                0 => 0,
                t => t.saturating_add_signed(rtc_timeoffset),
            },
            // The APIC model offers what CPUID does (exit::cpuid): x2APIC
            // unless the config hides it, never the TSC-deadline timer.
            lapic: LapicConfig {
                tsc_hz: crate::clock::tsc_hz(),
                x2apic,
                tsc_deadline: false,
                ..LapicConfig::default()
            },
            test_device,
            test_device_ram,
            vga,
        };
        let time = Arc::new(ApparentTime::new());
        let pc = Pc::new(
            &config,
            Arc::new(crate::clock::VmClock(time.clone())),
            ram.clone(),
            |line: &str| crate::println!("{line}"),
        )?;
        Ok(Machine {
            pc,
            ram,
            map: None,
            refused: RateLimitedLog::default(),
            regions,
            bridges: Vec::new(),
            map_generation: 0,
            seen: SeenPages::default(),
            current: 0,
            time,
            timer_devices: (usize::MAX, 0),
            ran_ahead: 0,
            timer_reads_ran_ahead: 0,
        })
    }

    /// Port accesses carried out after an exit in the same exit.
    pub fn ran_ahead(&self) -> u64 {
        self.ran_ahead
    }

    /// Timer accesses (as [`Machine::exit_timing`] counts them) carried out
    /// after the exit just handled, without exits of their own; cleared.
    pub fn take_timer_reads_ran_ahead(&mut self) -> u32 {
        core::mem::take(&mut self.timer_reads_ran_ahead)
    }

    /// The time hidden from this VM (`keel::apparent_time`).
    pub fn apparent_time(&self) -> &ApparentTime {
        &self.time
    }

    /// The earliest device deadline ([`Pc::next_deadline_ns`], in the VM's
    /// time) on Keel's clock, which runs ahead by the time hidden.
    pub fn next_deadline_host_ns(&mut self) -> Option<u64> {
        let hidden = crate::clock::ticks_ns(self.time.hidden());
        self.pc.next_deadline_ns().map(|d| d.saturating_add(hidden))
    }

    /// What `exit` was for the time dilation: a read or write of a timer
    /// a guest calibrates its TSC against (the PIT and port 61h, the HPET,
    /// the ACPI PM timer), an RDTSC, a host interrupt, or something else.
    /// `device` is the bus index of the device a port or MMIO exit reached
    /// ([`device_model::bus::Bus::device_at`], as the exit statistics found it).
    pub fn exit_timing(&mut self, exit: &VmExit, device: Option<u16>) -> ExitTiming {
        match *exit {
            VmExit::Io(_) | VmExit::NestedPageFault { .. } => {}
            VmExit::Rdtsc { .. } | VmExit::Rdtscp { .. } => return ExitTiming::TscRead,
            VmExit::ExternalInterrupt => return ExitTiming::HostInterrupt,
            _ => return ExitTiming::Other,
        }
        match device {
            Some(d) if self.is_timer(d) => ExitTiming::Timer,
            _ => ExitTiming::Other,
        }
    }

    /// Whether bus device `index` is one of the timers of [`Machine::exit_timing`]:
    /// by name, looked up once for each index and kept as a bit while the
    /// bus names no new device.
    fn is_timer(&mut self, index: u16) -> bool {
        const TIMERS: [&str; 4] = ["PIT", "port 0x61", "HPET", "ACPI PM timer"];
        let bus = self.pc.bus();
        let named = |i: u16| bus.device_name(i).is_some_and(|n| TIMERS.contains(&n));
        let (known, mask) = &mut self.timer_devices;
        if *known != bus.device_count() {
            *known = bus.device_count();
            *mask = (0..64u16).filter(|&i| named(i)).fold(0, |m, i| m | 1 << i);
        }
        match 1u64.checked_shl(u32::from(index)) {
            Some(bit) => *mask & bit != 0,
            None => named(index),
        }
    }

    /// Hands the machine its nested page table (before the first entry)
    /// and registers the devices' host memory with it.
    pub fn set_memory_map(&mut self, mut map: Box<dyn VmMemoryMap>) -> Result<(), String> {
        for &(id, hpa, len) in &self.regions {
            match map.add_region(hpa, len) {
                Ok(got) if got == id => {}
                other => {
                    return Err(alloc::format!(
                        "device memory {hpa:#x}+{len:#x}: registered as {other:?}, the device has {id:?}"
                    ))
                }
            }
        }
        self.map_generation = map.generation();
        self.map = Some(map);
        self.seen = SeenPages::default();
        Ok(())
    }

    /// Applies the device model's queued map changes (PAM, SMRAM, A20,
    /// RAM-backed BARs) to the nested page table; a refused one is logged
    /// and the map stays as it was. Returns the map's generation, which
    /// each vCPU compares with the one it last flushed at.
    pub fn apply_memory_map_changes(&mut self) -> u64 {
        let changes = self.pc.take_memory_map_changes();
        if changes.is_empty() {
            return self.map_generation;
        }
        let Some(map) = self.map.as_mut() else {
            return 0;
        };
        self.seen = SeenPages::default();
        for change in changes {
            // RAM still held back is zeroed and mapped first, so the change
            // applies to the map the guest would see.
            if let Err(what) = release_held_by(map.as_mut(), &self.ram, &change) {
                self.refused.log(
                    log::Level::Warn,
                    format_args!("guest-physical map change {change:?} refused: {what}"),
                );
                continue;
            }
            if let Err(e) = map.apply(&change) {
                self.refused.log(
                    log::Level::Warn,
                    format_args!("guest-physical map change {change:?} refused: {e:?}"),
                );
            }
        }
        self.map_generation = map.generation();
        self.map_generation
    }

    /// Whether a device interrupt can reach the current vCPU as an NMI: an unmasked
    /// IOAPIC redirection entry with NMI delivery (82093AA 3.2.4), or an
    /// unmasked LVT LINT0 / LINT1 entry with NMI delivery (SDM Vol 3A 11.5.1;
    /// the 8259A drives LINT0). With the local APIC globally disabled,
    /// LINT1 is the NMI pin, which nothing in this PC drives.
    pub fn nmi_route(&self) -> bool {
        use device_model::interrupt::{ioapic::IOAPIC_PINS, DeliveryMode, Lvt};
        const MASKED: u64 = 1 << 16;
        let is_nmi =
            |entry: u64| entry & MASKED == 0 && DeliveryMode::from_bits(entry) == DeliveryMode::Nmi;
        let router = self.pc.router().lock();
        let ioapic = (0..IOAPIC_PINS).any(|pin| router.ioapic().entry(pin).is_some_and(is_nmi));
        let lint = router.lapic(self.current).is_some_and(|apic| {
            apic.globally_enabled()
                && [Lvt::Lint0, Lvt::Lint1]
                    .iter()
                    .any(|&l| is_nmi(u64::from(apic.lvt(l))))
        });
        ioapic || lint
    }

    /// The host NICs behind this VM's NICs, pumped from now on.
    pub fn set_bridges(&mut self, bridges: Vec<Bridge>) {
        self.bridges = bridges;
    }

    /// Whether frames can arrive from a host NIC, so a halted vCPU must
    /// look again within [`NET_POLL_NS`].
    pub fn has_uplink(&self) -> bool {
        !self.bridges.is_empty()
    }

    /// The devices' work before each entry: a bounded batch of frames each
    /// way between the host NICs and their switches (polled: the NICs
    /// raise no host interrupts), then due interrupts, and the next piece
    /// of a DMA transfer longer than one exit's budget.
    pub fn service(&mut self) {
        for bridge in &mut self.bridges {
            bridge.pump();
        }
        self.pc.service();
    }

    /// Hands the VGA the pages of its framebuffer that the dirty log of
    /// the nested page tables saw written since the last call (they are
    /// write-protected again, and the map's generation moves so that the
    /// vCPUs flush before they run), for the display to redraw their rows.
    /// If the log cannot be read (the card's request not applied yet),
    /// the whole logged range counts as written.
    pub fn take_display_writes(&mut self) {
        let Some(vga) = self.pc.vga() else {
            return;
        };
        let mut vga = vga.lock();
        let Some(log) = vga.lfb_log() else {
            return;
        };
        let pages = self.map.as_mut().and_then(|m| m.take_dirty(log.gpa).ok());
        if let Some(map) = &self.map {
            self.map_generation = map.generation();
        }
        self.seen = SeenPages::default();
        vga.lfb_written(log, pages.as_deref());
    }

    /// Writes the VGA text screen to the log as `[name:screen] ...` lines
    /// (a note instead in a graphics mode, nothing without a card).
    pub fn dump_screen(&self, name: &str) {
        let Some(vga) = self.pc.vga() else {
            return;
        };
        let vga = vga.lock();
        if vga
            .text_screen(|line| crate::println!("[{name}:screen] {line}"))
            .is_none()
        {
            crate::println!(
                "[{name}:screen] (graphics mode {:?}: no text to show)",
                vga.screen()
            );
        }
    }

    /// Makes vCPU `vcpu` the one the interrupt source answers for.
    pub fn set_current(&mut self, vcpu: u32) {
        self.current = vcpu;
    }

    /// Whether an INIT waits for the current vCPU.
    pub fn init_pending(&self) -> bool {
        self.pc
            .router()
            .lock()
            .lapic(self.current)
            .is_some_and(|l| l.init_pending())
    }

    /// Where `gpa` falls in the current vCPU's local APIC page, if its
    /// APIC is in xAPIC mode there: each vCPU reaches its own APIC at the
    /// same address (SDM Vol 3A 11.4.1), which the bus (one device per
    /// address) cannot tell apart.
    fn local_apic_offset(&self, gpa: u64) -> Option<u64> {
        let router = self.pc.router().lock();
        let lapic = router.lapic(self.current)?;
        if !lapic.mmio_active() {
            return None;
        }
        let base = lapic.apic_base() & 0x000f_ffff_ffff_f000;
        gpa.checked_sub(base).filter(|&o| o < 0x1000)
    }

    /// Guest RAM, for loaders.
    pub fn ram(&self) -> &GuestMemory {
        &self.ram
    }
}

impl vmm_core::exit::Platform for Machine {
    fn pio_read(&mut self, port: u16, size: u8) -> u32 {
        self.pc.pio_read(port, size)
    }

    fn pio_write(&mut self, port: u16, size: u8, value: u32) {
        self.pc.pio_write(port, size, value)
    }

    // A reset, power-off or debug exit a device asked for comes first.
    fn may_run_ahead(&self) -> bool {
        self.pc.power.peek().is_none()
    }

    fn ran_ahead(&mut self, ports: &[u16]) {
        self.ran_ahead += ports.len() as u64;
        for &port in ports {
            let device = self.pc.bus().device_at(AddressSpace::Pio, port.into());
            if device.is_some_and(|d| self.is_timer(d)) {
                self.timer_reads_ran_ahead = self.timer_reads_ran_ahead.saturating_add(1);
            }
        }
    }

    fn pio_string_room(&mut self, port: u16, elem: usize, write: bool) -> usize {
        self.pc.pio_string_room(port, elem, write)
    }

    fn pio_read_string(&mut self, port: u16, elem: usize, data: &mut [u8]) -> usize {
        self.pc.pio_read_string(port, elem, data)
    }

    fn pio_write_string(&mut self, port: u16, elem: usize, data: &[u8]) -> usize {
        self.pc.pio_write_string(port, elem, data)
    }

    fn mmio_read(&mut self, gpa: u64, data: &mut [u8]) {
        if let Some(offset) = self.local_apic_offset(gpa) {
            let me = self.current;
            return self.pc.router().lock().lapic_mmio_read(me, offset, data);
        }
        self.pc.mmio_read(gpa, data)
    }

    fn mmio_write(&mut self, gpa: u64, data: &[u8]) {
        // A PAM segment that reads the ROM but writes DRAM (82441FX 3.2.18).
        if self.map.as_ref().is_some_and(|m| m.writes_to_ram(gpa)) {
            let _ = self.ram.write(gpa, data);
            return;
        }
        if let Some(offset) = self.local_apic_offset(gpa) {
            let me = self.current;
            return self.pc.router().lock().lapic_mmio_write(me, offset, data);
        }
        self.pc.mmio_write(gpa, data)
    }

    fn ram_access(&mut self, gpa: u64, write: bool) -> bool {
        if gpa >= self.ram.size() || self.map.is_none() {
            return true; // no map yet, or the ROM alias: the view's own rules
        }
        let page = gpa / vmm_core::paging::PAGE_SIZE;
        if self.seen.allows(page, write) {
            return true;
        }
        // RAM the guest has not touched yet is RAM all the same.
        if self.ram_first_touch(gpa).is_err() {
            return false;
        }
        let Some(map) = self.map.as_mut() else {
            return true;
        };
        match map.translate(gpa) {
            None => false,
            Some((_, perms)) if !write || perms.write => {
                self.seen.insert(page, perms.write);
                true
            }
            // A dirty-logged page: logged and writable again.
            Some(_) => {
                let logged = map.write_fault(gpa);
                self.map_generation = map.generation();
                self.seen = SeenPages::default();
                logged
            }
        }
    }

    fn ram_first_touch(&mut self, gpa: u64) -> Result<bool, &'static str> {
        let Some(map) = self.map.as_mut() else {
            return Ok(false);
        };
        release_held(map.as_mut(), &self.ram, gpa)
    }

    fn logged_write_fault(&mut self, gpa: u64) -> bool {
        let Some(map) = self.map.as_mut() else {
            return false;
        };
        let logged = map.write_fault(gpa);
        if logged {
            self.map_generation = map.generation();
            self.seen = SeenPages::default();
        }
        logged
    }

    fn memory(&self) -> &GuestMemory {
        &self.ram
    }

    /// The host tick the VM's TSC derives from: standing still while an
    /// exit hidden from the VM's time is handled (`keel::apparent_time`).
    fn host_tsc(&self) -> u64 {
        self.time.host_tick(crate::clock::rdtsc())
    }

    fn cr8(&mut self, vcpu: u32) -> u64 {
        self.pc.router().lock().cr8(vcpu)
    }

    fn set_cr8(&mut self, vcpu: u32, value: u64) {
        self.pc.router().lock().set_cr8(vcpu, value);
    }

    fn apic_register(&mut self, vcpu: u32, offset: u64, write: Option<u64>) -> Option<u64> {
        self.pc.router().lock().apic_register(vcpu, offset, write)
    }

    fn xen_hypercall(
        &mut self,
        vcpu: u32,
        nr: u64,
        args: [u64; 5],
        guest_tsc: u64,
        memory: &mut dyn guest_memory::LinearMemory,
    ) -> i64 {
        let Some(xen) = self.pc.xen() else {
            return -device_model::xen::hypercall::ENOSYS;
        };
        let call = device_model::xen::hypercall::Hypercall {
            vcpu,
            nr,
            args,
            guest_tsc,
        };
        // A sched_op shutdown reaches the run loop through PowerControl;
        // add_to_physmap's map changes apply before the next entry.
        xen.lock().hypercall(&call, memory)
    }

    fn msr_read(&mut self, vcpu: u32, msr: u32) -> Option<MsrOutcome> {
        let mut router = self.pc.router().lock();
        let value = match msr {
            IA32_APIC_BASE => router.apic_base(vcpu).ok_or(()),
            IA32_TSC_DEADLINE => router.tsc_deadline(vcpu).map_err(|_| ()),
            m if X2APIC_MSRS.contains(&m) => router.x2apic_read(vcpu, m).map_err(|_| ()),
            _ => return None,
        };
        Some(value.map_or(MsrOutcome::GeneralProtection, MsrOutcome::Done))
    }

    fn msr_write(&mut self, vcpu: u32, msr: u32, value: u64) -> Option<MsrOutcome> {
        let mut router = self.pc.router().lock();
        let result = match msr {
            IA32_APIC_BASE => router.set_apic_base(vcpu, value),
            IA32_TSC_DEADLINE => router.set_tsc_deadline(vcpu, value),
            m if X2APIC_MSRS.contains(&m) => router.x2apic_write(vcpu, m, value),
            _ => return None,
        };
        Some(match result {
            Ok(()) => MsrOutcome::Done(0),
            Err(e) => {
                log::debug!("{e}");
                MsrOutcome::GeneralProtection
            }
        })
    }
}

impl Machine {
    /// Xen's callback vector for the current vCPU while its upcall is pending: it
    /// is injected directly, ahead of the interrupt controllers, and
    /// neither enters the local APIC's IRR/ISR nor needs an EOI (Xen's
    /// hvm/irq.c does the same).
    fn xen_upcall(&self) -> Option<u8> {
        self.pc
            .xen()
            .and_then(|x| x.lock().upcall_vector(self.current))
    }
}

/// The current vCPU's view of the interrupt controllers (and Xen's
/// callback vector).
impl InterruptSource for Machine {
    fn interrupt_pending(&mut self) -> bool {
        let me = self.current;
        self.xen_upcall().is_some() || self.pc.router().lock().pending_interrupt(me).is_some()
    }
    fn acknowledge_interrupt(&mut self) -> Option<u8> {
        if let Some(vector) = self.xen_upcall() {
            return Some(vector);
        }
        self.pc.router().lock().acknowledge(self.current)
    }
    fn nmi_pending(&mut self) -> bool {
        self.pc.router().lock().pending_nmi(self.current)
    }
    fn acknowledge_nmi(&mut self) {
        self.pc.router().lock().acknowledge_nmi(self.current);
    }
}

/// Zeroes and maps the RAM chunk at `gpa` if the nested map holds it back
/// (`guest_memory`'s first touch); whether it did. Zeroing comes first, so
/// the guest never sees the chunk's old host memory.
fn release_held(
    map: &mut dyn VmMemoryMap,
    ram: &GuestMemory,
    gpa: u64,
) -> Result<bool, &'static str> {
    if !map.is_held(gpa) {
        return Ok(false);
    }
    let chunk = gpa - gpa % guest_memory::ZEROING_CHUNK;
    ram.touch(chunk, guest_memory::ZEROING_CHUNK as usize)
        .map_err(|_| "a held RAM chunk outside guest RAM")?;
    map.release_ram(chunk)
        .map_err(|_| "no nested page table page left to map guest RAM on its first touch")
}

/// Releases ([`release_held`]) every held RAM chunk `change` reaches, by
/// guest-physical address or as the RAM behind it.
fn release_held_by(
    map: &mut dyn VmMemoryMap,
    ram: &GuestMemory,
    change: &MemoryMapChange,
) -> Result<(), &'static str> {
    // Each round releases one chunk, so the loop ends.
    while let Some(chunk) = map.held_by(change) {
        if !release_held(map, ram, chunk)? {
            return Err("a held RAM chunk that could not be released");
        }
    }
    Ok(())
}
