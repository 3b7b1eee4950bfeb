use super::*;
use crate::clock::{Clock, FakeClock};
use alloc::string::ToString;
use guest_memory::GuestMemory;
use std::sync::Mutex as StdMutex;

/// The fixture's RAM: 64 MiB, as the CMOS and e820 tests expect.
const MIB: u64 = 1 << 20;
const RAM_SIZE: usize = 64 << 20;

struct Fixture {
    pc: Pc,
    clock: Arc<FakeClock>,
    lines: Arc<StdMutex<Vec<String>>>,
    ram: GuestMemory,
}

fn fixture() -> Fixture {
    let clock = FakeClock::new(1_000_000);
    let lines = Arc::new(StdMutex::new(Vec::new()));
    let sink = lines.clone();
    let config = PcConfig {
        name: "vm".into(),
        vcpus: 1,
        unix_time: 1_700_000_000,
        lapic: LapicConfig::default(),
        test_device: false,
        test_device_ram: None,
        vga: None,
    };
    let ram = GuestMemory::new(RAM_SIZE);
    let pc = Pc::new(&config, clock.clone(), ram.clone(), move |l: &str| {
        sink.lock().unwrap().push(l.to_string())
    })
    .unwrap();
    Fixture {
        pc,
        clock,
        lines,
        ram,
    }
}

impl Fixture {
    fn out(&mut self, port: u16, size: u8, value: u32) {
        self.pc.pio_write(port, size, value);
    }
    fn pci_write(&mut self, device: u32, function: u32, reg: u32, size: u8, value: u32) {
        self.out(
            0xcf8,
            4,
            0x8000_0000 | (device << 11) | (function << 8) | (reg & 0xfc),
        );
        self.out(0xcfc + (reg & 3) as u16, size, value);
    }
}

#[test]
fn pit_interrupt_reaches_the_vcpu_through_the_pic() {
    let mut f = fixture();
    // 8259A master: ICW1 (edge, cascade, ICW4), ICW2 base 0x08, ICW3, ICW4 (8086); unmask IRQ 0.
    for (port, v) in [
        (0x20, 0x11),
        (0x21, 0x08),
        (0x21, 0x04),
        (0x21, 0x01),
        (0x21, 0xfe),
    ] {
        f.out(port, 1, v);
    }
    assert_eq!(f.pc.router().lock().pending_interrupt(0), None);
    // PIT channel 0, mode 2, 100 Hz.
    f.out(0x43, 1, 0x34);
    f.out(0x40, 1, 11_932 & 0xff);
    f.out(0x40, 1, 11_932 >> 8);
    let deadline = f.pc.next_deadline_ns().expect("the PIT is running");
    assert!(
        deadline > f.clock.now_ns() && deadline <= f.clock.now_ns() + 10_001_000,
        "{deadline}"
    );
    f.clock.set(deadline);
    f.pc.service();
    let mut router = f.pc.router().lock();
    assert_eq!(
        router.pending_interrupt(0),
        Some(0x08),
        "IRQ 0 as vector 0x08 through ExtINT"
    );
    assert_eq!(router.acknowledge(0), Some(0x08));
    assert_eq!(router.pending_interrupt(0), None);
}

/// The deadlines `service` and `next_deadline_ns` keep between exits
/// (`TimerSlot`): a due timer is serviced with no guest access in between,
/// a write that reprograms it is seen at once, and reads of other devices
/// (PCI configuration, COM1) keep the PIT's edges on time.
#[test]
fn cached_deadlines_follow_time_writes_and_reads() {
    let mut f = fixture();
    for (port, v) in [
        (0x20, 0x11),
        (0x21, 0x08),
        (0x21, 0x04),
        (0x21, 0x01),
        (0x21, 0xfe),
    ] {
        f.out(port, 1, v);
    }
    // PIT channel 0, mode 2, 100 Hz.
    f.out(0x43, 1, 0x34);
    f.out(0x40, 1, 11_932 & 0xff);
    f.out(0x40, 1, 11_932 >> 8);
    let first = f.pc.next_deadline_ns().expect("the PIT is running");
    f.pc.service();
    assert_eq!(f.pc.next_deadline_ns(), Some(first), "nothing changed");
    // Reads of other devices in between: the edge still comes on time.
    f.out(0xcf8, 4, 0x8000_0000);
    assert_eq!(f.pc.pio_read(0xcfc, 4), 0x1237_8086, "i440FX");
    f.pc.pio_read(0x3fd, 1);
    f.pc.service();
    assert_eq!(f.pc.router().lock().pending_interrupt(0), None, "not yet");
    f.clock.set(first);
    f.pc.service();
    assert_eq!(f.pc.router().lock().acknowledge(0), Some(0x08));
    let second = f.pc.next_deadline_ns().expect("periodic");
    assert!(second > first, "the next edge: {second} after {first}");
    // Reprogrammed to 1 kHz: the next deadline moves up at once.
    f.out(0x43, 1, 0x34);
    f.out(0x40, 1, 1_193 & 0xff);
    f.out(0x40, 1, 1_193 >> 8);
    let now = f.clock.now_ns();
    let third = f.pc.next_deadline_ns().expect("periodic");
    assert!(third <= now + 1_001_000, "{third} vs now {now}");
}

#[test]
fn com1_and_firmware_console_lines_are_prefixed() {
    let mut f = fixture();
    for b in b"hi\n" {
        f.out(0x3f8, 1, u32::from(*b));
    }
    for b in b"POST\n" {
        f.out(0x402, 1, u32::from(*b));
    }
    assert_eq!(f.pc.pio_read(0x402, 1), 0xe9);
    assert_eq!(*f.lines.lock().unwrap(), ["[vm] hi", "[vm:bios] POST"]);
}

#[test]
fn fw_cfg_signature_and_e820() {
    let mut f = fixture();
    f.out(0x510, 2, 0x0000);
    let sig: Vec<u8> = (0..4).map(|_| f.pc.pio_read(0x511, 1) as u8).collect();
    assert_eq!(sig, b"QEMU");
    let fw = f.pc.fw_cfg().lock();
    assert!(fw.file("etc/e820").is_some_and(|e| e.len() == 20));
    for file in [
        "etc/acpi/rsdp",
        "etc/acpi/tables",
        "etc/table-loader",
        "etc/smbios/smbios-anchor",
        "etc/smbios/smbios-tables",
    ] {
        assert!(fw.file(file).is_some_and(|b| !b.is_empty()), "{file}");
    }
    assert_eq!(&fw.file("etc/acpi/rsdp").unwrap()[..8], b"RSD PTR ");
}

#[test]
fn pm_block_follows_pmba_and_the_pm_timer_counts() {
    let mut f = fixture();
    assert_eq!(
        f.pc.pio_read(0x608, 4),
        0xffff_ffff,
        "nothing decodes before firmware sets PMBA"
    );
    f.pci_write(1, 3, 0x40, 4, 0x601); // PMBA = 0x600 (I/O)
    f.pci_write(1, 3, 0x80, 1, 0x01); // PMREGMISC: PM I/O enable
    let t0 = f.pc.pio_read(0x608, 4);
    f.clock.advance(1_000_000); // 1 ms = 3579.545 ticks
    let t1 = f.pc.pio_read(0x608, 4);
    assert!(
        (3579..=3580).contains(&(t1.wrapping_sub(t0) & 0xff_ffff)),
        "{t0} {t1}"
    );
    // Moving the block moves the timer too.
    f.pci_write(1, 3, 0x40, 4, 0xb001);
    assert_eq!(f.pc.pio_read(0x608, 4), 0xffff_ffff);
    assert_ne!(f.pc.pio_read(0xb008, 4), 0xffff_ffff);
}

/// Finding #7 of issue 11: PMBA over the PIT (0x40) with the block
/// enabled must leave the PIT (and everything else at 0x40-0x7F) on the bus.
#[test]
fn pm_block_over_the_pit_leaves_the_pit_decoding() {
    let mut f = fixture();
    f.pci_write(1, 3, 0x80, 1, 0x01); // PMREGMISC: PM I/O enable
    for pmba in [0x41, 0x40 | 0x601, 0x41] {
        f.pci_write(1, 3, 0x40, 4, pmba);
        // PIT counter 0: mode 2, lobyte/hibyte, then latch and read it.
        f.out(0x43, 1, 0x34);
        f.out(0x40, 1, 0x34);
        f.out(0x40, 1, 0x12);
        f.out(0x43, 1, 0x00);
        let lo = f.pc.pio_read(0x40, 1);
        let hi = f.pc.pio_read(0x40, 1);
        assert_ne!((hi << 8) | lo, 0xffff, "PIT gone after PMBA {pmba:#x}");
        assert_ne!(f.pc.pio_read(0x64, 1), 0xff, "i8042 status gone");
    }
    // The block still moves to a free place afterwards.
    f.pci_write(1, 3, 0x40, 4, 0xb001);
    assert_ne!(f.pc.pio_read(0xb008, 4), 0xffff_ffff);
}

/// Finding #12 of issue 11: PM and bus-master blocks put over other devices
/// again and again are logged a few times, then summarised.
#[test]
fn repeated_bad_placements_are_logged_a_bounded_number_of_times() {
    log_capture::start();
    let mut f = fixture();
    f.pci_write(1, 3, 0x80, 1, 0x01);
    f.pci_write(1, 1, 0x04, 2, 0x0005);
    for _ in 0..20_000 {
        f.pci_write(1, 3, 0x40, 4, 0x41);
        f.pci_write(1, 3, 0x40, 4, 0x601);
        f.pci_write(1, 1, 0x20, 4, 0x61);
        f.pci_write(1, 1, 0x20, 4, 0xc001);
    }
    // One rate limit per cause: the PM block (the platform's) and the
    // IDE BAR (the PCI layer's).
    for cause in ["the PIIX4 PM block", "'PIIX3 IDE': guest placed BAR4"] {
        let lines = log_capture::count(log::Level::Warn, cause);
        assert!((2..=30).contains(&lines), "{cause}: {lines} lines");
    }
}

/// The IDE bus-master block (BAR4, 16 ports) placed over the PIT is not
/// decoded, and moving it away again must not unregister the PIT.
#[test]
fn ide_bus_master_over_the_pit_leaves_the_pit_decoding() {
    let mut f = fixture();
    f.pci_write(1, 1, 0x04, 2, 0x0005);
    for bar in [0x41, 0xc001, 0x41, 0x61] {
        f.pci_write(1, 1, 0x20, 4, bar);
        f.out(0x43, 1, 0x34);
        f.out(0x40, 1, 0x34);
        f.out(0x40, 1, 0x12);
        f.out(0x43, 1, 0x00);
        let lo = f.pc.pio_read(0x40, 1);
        let hi = f.pc.pio_read(0x40, 1);
        assert_ne!((hi << 8) | lo, 0xffff, "PIT gone after BAR4 {bar:#x}");
    }
    f.pci_write(1, 1, 0x20, 4, 0xc001);
    assert_ne!(f.pc.pio_read(0xc002, 1), 0xff, "BAR4 decodes at 0xc000");
}

#[test]
fn reset_through_cf9_and_the_keyboard_controller() {
    let mut f = fixture();
    f.out(0xcf9, 1, 0x06);
    assert_eq!(f.pc.power.take(), Some(PowerRequest::Reset));
    f.out(0x64, 1, 0xfe);
    assert_eq!(f.pc.power.take(), Some(PowerRequest::Reset));
    f.out(0xf4, 4, 7);
    assert_eq!(
        f.pc.power.take(),
        Some(PowerRequest::DebugExit { status: 7 })
    );
}

#[test]
fn rtc_reads_the_time_and_cmos_holds_the_memory_size() {
    let mut f = fixture();
    f.out(0x70, 1, 0x34);
    let above_16m = f.pc.pio_read(0x71, 1) | (f.pc.pio_read(0x71, 1) << 8);
    f.out(0x70, 1, 0x35);
    let hi = f.pc.pio_read(0x71, 1);
    assert_eq!(
        (above_16m & 0xff) | (hi << 8),
        ((64 - 16) * MIB / 0x10000) as u32
    );
    f.out(0x70, 1, 0x09); // year
    assert_ne!(f.pc.pio_read(0x71, 1), 0xff);
}

#[test]
fn ide_disk_reads_by_pio_and_dma_after_firmware_style_setup() {
    use crate::storage::ide::{ChannelId, DrivePosition, IdeDrive};
    use crate::storage::RamDisk;
    let mut f = fixture();
    let mut image = vec![0u8; 4 * 512];
    image[512..516].copy_from_slice(b"LBA1");
    f.pc.attach_ide(
        ChannelId::Primary,
        DrivePosition::Master,
        IdeDrive::disk(Box::new(RamDisk::new("disk.img", image).unwrap())),
    );
    // Firmware: IDETIM decode enable for both channels, BAR4 = 0xc000, I/O + bus master.
    f.pci_write(1, 1, 0x40, 2, 0x8000);
    f.pci_write(1, 1, 0x42, 2, 0x8000);
    f.pci_write(1, 1, 0x20, 4, 0xc001);
    f.pci_write(1, 1, 0x04, 2, 0x0005);
    // PIO: READ SECTORS, LBA 1, one sector.
    f.out(0x1f6, 1, 0xe0);
    f.out(0x1f2, 1, 1);
    f.out(0x1f3, 1, 1);
    f.out(0x1f4, 1, 0);
    f.out(0x1f5, 1, 0);
    f.out(0x1f7, 1, 0x20);
    assert_eq!(f.pc.pio_read(0x1f7, 1) & 0x08, 0x08, "DRQ");
    let w0 = f.pc.pio_read(0x1f0, 2);
    let w1 = f.pc.pio_read(0x1f0, 2);
    assert_eq!(
        (w0, w1),
        (
            u32::from(u16::from_le_bytes(*b"LB")),
            u32::from(u16::from_le_bytes(*b"A1"))
        )
    );
    // DMA: a PRD at 0x1000 pointing at 0x2000 for 512 bytes, READ DMA of LBA 1.
    f.ram.write(0x1000, &0x2000u32.to_le_bytes()).unwrap();
    f.ram
        .write(0x1004, &(512u32 | 0x8000_0000).to_le_bytes())
        .unwrap();
    f.out(0xc004, 4, 0x1000);
    f.out(0x1f2, 1, 1);
    f.out(0x1f3, 1, 1);
    f.out(0x1f7, 1, 0xc8);
    f.out(0xc000, 1, 0x09); // start, device to memory
    assert_eq!(
        f.ram.read_obj::<u32>(0x2000).unwrap(),
        u32::from_le_bytes(*b"LBA1")
    );
    assert_eq!(
        f.pc.pio_read(0xc002, 1) & 0x04,
        0x04,
        "bus-master interrupt status"
    );
    // The machine reset leaves the disk contents but not the controller state.
    f.pc.reset();
    assert_eq!(f.pc.pio_read(0xc002, 1), 0xff, "BAR4 unmapped after reset");
}

/// Issue 11, finding 13: a bus-master transfer longer than one exit's
/// budget starts in the port write, goes on in `Pc::service` (the VM loop
/// calls it before every entry), and keeps a deadline of "now" until it is
/// done, so a vCPU halted waiting for the interrupt is not put to sleep.
#[test]
fn a_long_ide_dma_goes_on_in_service() {
    use crate::storage::ide::{ChannelId, DrivePosition, IdeDrive};
    use crate::storage::RamDisk;
    let mut f = fixture();
    use crate::storage::ide::bmdma::DMA_BUDGET;
    // Four budgets in 64 KiB regions from 0x10000.
    let total = 4 * DMA_BUDGET;
    let regions = total / 0x10000;
    let sectors = (total / 512) as u16;
    let image: Vec<u8> = (0..total).map(|i: usize| ((i / 512) ^ i) as u8).collect();
    f.pc.attach_ide(
        ChannelId::Primary,
        DrivePosition::Master,
        IdeDrive::disk(Box::new(RamDisk::new("disk.img", image.clone()).unwrap())),
    );
    f.pci_write(1, 1, 0x40, 2, 0x8000);
    f.pci_write(1, 1, 0x20, 4, 0xc001);
    f.pci_write(1, 1, 0x04, 2, 0x0005);
    for i in 0..regions as u32 {
        let d = 0x1000 + 8 * u64::from(i);
        f.ram.write(d, &(0x10000 * (i + 1)).to_le_bytes()).unwrap();
        let eot = if i as usize + 1 == regions {
            0x8000_0000u32
        } else {
            0
        };
        f.ram.write(d + 4, &eot.to_le_bytes()).unwrap();
    }
    f.out(0xc004, 4, 0x1000);
    // READ DMA EXT of `sectors` from LBA 0: the count's high byte, then low.
    f.out(0x1f6, 1, 0x40);
    let [low, high] = sectors.to_le_bytes();
    for (port, v) in [(0x1f2, high), (0x1f3, 0), (0x1f4, 0), (0x1f5, 0)] {
        f.out(port, 1, u32::from(v));
    }
    for (port, v) in [(0x1f2, low), (0x1f3, 0), (0x1f4, 0), (0x1f5, 0)] {
        f.out(port, 1, u32::from(v));
    }
    f.out(0x1f7, 1, 0x25);
    f.out(0xc000, 1, 0x09);
    let mut passes = 1;
    while f.pc.pio_read(0xc002, 1) & 0x01 != 0 {
        assert!(f
            .pc
            .next_deadline_ns()
            .is_some_and(|d| d <= f.clock.now_ns()));
        f.pc.service();
        passes += 1;
        assert!(passes <= 4, "more passes than budgets");
    }
    assert_eq!(passes, 4);
    let mut got = vec![0u8; total];
    f.ram.read(0x10000, &mut got).unwrap();
    assert!(got == image[..], "the data arrived in order");
    assert_eq!(
        f.pc.pio_read(0xc002, 1) & 0x07,
        0x04,
        "INTERRUPT at the end"
    );
    assert_eq!(f.pc.pio_read(0x1f7, 1), 0x50);
}

/// Issue 11: PCI events the bus could not queue (its capacity is fixed)
/// stop the VM with a reason instead of leaving a BAR move undone.
#[test]
fn lost_pci_events_stop_the_vm() {
    let mut f = fixture();
    assert_eq!(f.pc.power.peek(), None);
    {
        let mut pci = f.pc.pci.lock();
        let bus = pci.bus_mut();
        bus.config_write(Piix3Ide::BDF, 0x20, &0xc001u32.to_le_bytes());
        // I/O decode on and off: BAR4 appears and disappears each time.
        for i in 0..crate::pci::root::EVENT_CAPACITY + 1 {
            bus.config_write(Piix3Ide::BDF, 0x04, &[u8::from(i & 1 == 0)]);
        }
    }
    f.pc.apply_pci_events();
    assert!(matches!(
        f.pc.power.peek(),
        Some(PowerRequest::Stop { reason }) if reason.contains("PCI event queue")
    ));
}

/// A device that copies guest memory to guest memory when its doorbell is
/// rung by an MMIO write, the way a NIC's tail register or a virtio queue
/// notify starts DMA: it gets the guest-memory handle when it is created.
struct DoorbellDma {
    mem: GuestMemory,
    src: u64,
    dst: u64,
    status: u32,
}

impl DoorbellDma {
    const BASE: u64 = 0xfeb1_0000;
    const SRC: u64 = 0x0;
    const DST: u64 = 0x8;
    /// Write: copy this many bytes (at most 4 KiB) from SRC to DST.
    const DOORBELL: u64 = 0x10;
    /// Read: 0 done, 1 refused (a range outside RAM, or too long).
    const STATUS: u64 = 0x14;
    const MAX: usize = 4096;
}

impl crate::bus::BusDevice for DoorbellDma {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        if offset == Self::STATUS && data.len() == 4 {
            data.copy_from_slice(&self.status.to_le_bytes());
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        let mut v = [0u8; 8];
        v[..data.len().min(8)].copy_from_slice(&data[..data.len().min(8)]);
        let v = u64::from_le_bytes(v);
        match offset {
            Self::SRC => self.src = v,
            Self::DST => self.dst = v,
            Self::DOORBELL => {
                let len = v as usize;
                let mut buf = [0u8; Self::MAX];
                let done = len <= Self::MAX
                    && self.mem.read(self.src, &mut buf[..len]).is_ok()
                    && self.mem.write(self.dst, &buf[..len]).is_ok();
                self.status = u32::from(!done);
            }
            _ => {}
        }
    }
}

/// Must-have 1 of issue 10: an MMIO write can start DMA. The device does
/// the copy inside `Pc::mmio_write`, through its own guest-memory handle,
/// with no platform code that knows it; a range outside RAM is refused.
#[test]
fn dma_started_by_an_mmio_write_is_done_when_the_write_returns() {
    let mut f = fixture();
    let dev = Arc::new(Mutex::new(DoorbellDma {
        mem: f.ram.clone(),
        src: 0,
        dst: 0,
        status: 0xff,
    }));
    f.pc.bus_mut()
        .register_mmio(DoorbellDma::BASE, 0x1000, "doorbell DMA", dev)
        .unwrap();
    f.ram.write(0x3000, b"copied by a device").unwrap();
    let reg = |r: u64| DoorbellDma::BASE + r;
    f.pc.mmio_write(reg(DoorbellDma::SRC), &0x3000u64.to_le_bytes());
    f.pc.mmio_write(reg(DoorbellDma::DST), &0x5001u64.to_le_bytes());
    f.pc.mmio_write(reg(DoorbellDma::DOORBELL), &18u32.to_le_bytes());
    let mut got = [0u8; 18];
    f.ram.read(0x5001, &mut got).unwrap();
    assert_eq!(&got, b"copied by a device");
    let mut status = [0u8; 4];
    f.pc.mmio_read(reg(DoorbellDma::STATUS), &mut status);
    assert_eq!(u32::from_le_bytes(status), 0);
    // A destination running past the end of RAM: refused, RAM untouched.
    let end = RAM_SIZE as u64;
    f.pc.mmio_write(reg(DoorbellDma::DST), &(end - 4).to_le_bytes());
    f.pc.mmio_write(reg(DoorbellDma::DOORBELL), &18u32.to_le_bytes());
    f.pc.mmio_read(reg(DoorbellDma::STATUS), &mut status);
    assert_eq!(u32::from_le_bytes(status), 1);
    assert_eq!(f.ram.read_obj::<u32>(end - 4).unwrap(), 0);
    f.pc.mmio_write(reg(DoorbellDma::DST), &u64::MAX.to_le_bytes());
    f.pc.mmio_write(reg(DoorbellDma::DOORBELL), &1u32.to_le_bytes());
    f.pc.mmio_read(reg(DoorbellDma::STATUS), &mut status);
    assert_eq!(u32::from_le_bytes(status), 1);
}

mod pci_layer {
    use super::*;
    use crate::pci::config_space::ConfigSpace;
    use crate::pci::{BarKind, MsixCap, PciDevice, PciFunction};

    /// A function with a 4 KiB BAR holding an MSI-X table (2 entries) and
    /// its PBA, and INTA#.
    struct Dev {
        cs: ConfigSpace,
        msix: MsixCap,
        wiring: Option<PciWiring>,
    }

    impl Dev {
        fn new() -> Arc<Mutex<Dev>> {
            let mut cs = ConfigSpace::new(0x1234, 0x0001, 0, 0xFF_00_00, 0);
            cs.add_bar(
                0,
                BarKind::Mem32 {
                    prefetchable: false,
                },
                0x1000,
            )
            .unwrap();
            cs.set_interrupt_pin(1);
            let msix = MsixCap::add(&mut cs, 2, 0, 0, 0, 0x800).unwrap();
            Arc::new(Mutex::new(Dev {
                cs,
                msix,
                wiring: None,
            }))
        }
    }

    impl PciFunction for Dev {
        fn config_read(&mut self, offset: u8, data: &mut [u8]) {
            self.cs.read(offset, data)
        }
        fn config_write(&mut self, offset: u8, data: &[u8], changes: &mut Vec<ConfigChange>) {
            self.cs.write(offset, data, changes)
        }
        fn reset(&mut self, changes: &mut Vec<ConfigChange>) {
            self.cs.reset(changes)
        }
    }

    impl PciDevice for Dev {
        fn name(&self) -> &'static str {
            "msix test"
        }
        fn bar_read(&mut self, _: u8, _: u64, _: &mut [u8]) {}
        fn bar_write(&mut self, _: u8, _: u64, _: &[u8]) {}
        fn msix(&mut self) -> Option<(&mut MsixCap, &mut ConfigSpace)> {
            Some((&mut self.msix, &mut self.cs))
        }
        fn plugged(&mut self, wiring: PciWiring) {
            self.wiring = Some(wiring);
        }
    }

    #[test]
    fn add_pci_takes_the_first_free_slot_or_the_one_asked_for() {
        let mut f = fixture();
        let first = f.pc.add_pci(Dev::new(), None).unwrap();
        assert_eq!(first, bdf(2, 0));
        assert_eq!(f.pc.add_pci(Dev::new(), None).unwrap(), bdf(3, 0));
        assert_eq!(
            f.pc.add_pci(Dev::new(), Some(bdf(9, 0))).unwrap(),
            bdf(9, 0)
        );
        assert!(matches!(
            f.pc.add_pci(Dev::new(), Some(bdf(9, 0))),
            Err(PciBusError::Occupied { .. })
        ));
        f.out(0xcf8, 4, 0x8000_0000 | 9 << 11);
        assert_eq!(f.pc.pio_read(0xcfc, 4), 0x0001_1234);
    }

    #[test]
    fn msix_through_the_bar_reaches_the_lapic_and_pends_while_masked() {
        let mut f = fixture();
        let dev = Dev::new();
        let at = f.pc.add_pci(dev.clone(), None).unwrap();
        let d = u32::from(at.device);
        let cap = u32::from(dev.lock().msix.offset());
        f.pci_write(d, 0, 0x10, 4, 0xFE00_0000);
        f.pci_write(d, 0, 0x04, 2, 0x0006);
        f.pci_write(d, 0, cap, 4, 0x8000_0000); // MSI-X enable
                                                // Software enables the local APIC and programs entry 1.
        f.pc.mmio_write(0xFEE0_00F0, &0x1FFu32.to_le_bytes());
        f.pc.mmio_write(0xFE00_0010, &0xFEE0_0000u32.to_le_bytes());
        f.pc.mmio_write(0xFE00_0018, &0x0045u32.to_le_bytes());
        assert!(dev.lock().msix.notify(1), "entry 1 is masked: pending");
        let mut pba = [0u8; 8];
        f.pc.mmio_read(0xFE00_0800, &mut pba);
        assert_eq!(pba[0], 0b10);
        assert_eq!(f.pc.router().lock().pending_interrupt(0), None);
        f.pc.mmio_write(0xFE00_001C, &0u32.to_le_bytes()); // unmask
        assert_eq!(f.pc.router().lock().pending_interrupt(0), Some(0x45));
        f.pc.mmio_read(0xFE00_0800, &mut pba);
        assert_eq!(pba[0], 0);
    }

    /// The guest programs PIRQRC through the PIIX3's config space; the
    /// device's INTA# in slot 2 is PIRQB (the swizzle the DSDT's `_PRT`
    /// publishes) and reaches IRQ 11 at the 8259A.
    #[test]
    fn intx_follows_the_piix3_pirq_registers() {
        let mut f = fixture();
        let dev = Dev::new();
        f.pc.add_pci(dev.clone(), None).unwrap();
        for (port, v) in [
            (0x20, 0x11),
            (0x21, 0x08),
            (0x21, 0x04),
            (0x21, 0x01),
            (0xa0, 0x11),
            (0xa1, 0x70),
            (0xa1, 0x02),
            (0xa1, 0x01),
            (0x21, 0xfb),
            (0xa1, 0xf7),
            (0x4d1, 0x08),
        ] {
            f.out(port, 1, v);
        }
        // Only PIRQB goes to IRQ 11 (unmasked); PIRQA to the masked IRQ 10.
        f.pci_write(1, 0, 0x60, 4, 0x0b0b_0b0a);
        let line = dev.lock().wiring.as_ref().unwrap().intx.clone().unwrap();
        line.set_level(true);
        assert_eq!(f.pc.router().lock().acknowledge(0), Some(0x73));
        line.set_level(false);
        // PIRQB disabled (bit 7): the line leads nowhere.
        f.pci_write(1, 0, 0x61, 1, 0x80);
        f.out(0xa0, 1, 0x20);
        f.out(0x20, 1, 0x20);
        line.set_level(true);
        assert_eq!(f.pc.router().lock().pending_interrupt(0), None);
    }
}

#[test]
fn the_chipset_map_starts_at_power_on_and_follows_pam_smram_and_a20() {
    use guest_memory::{Backing, MemoryMapChange as C, Writes};
    let mut f = fixture();
    let power_on = f.pc.take_memory_map_changes();
    assert_eq!(power_on.len(), 14, "13 PAM segments and SMRAM");
    assert!(power_on[..13].iter().all(|c| matches!(
        c,
        C::Map {
            backing: Backing::BiosRom,
            writes: Writes::Dropped,
            ..
        }
    )));
    assert_eq!(
        power_on[13],
        C::Unmap {
            gpa: 0xA0000,
            len: 0x20000
        }
    );
    assert!(f.pc.take_memory_map_changes().is_empty());
    // SeaBIOS: 0xF0000 read/write (PAM0 = 0x30), then read-only (0x10).
    f.pci_write(0, 0, 0x59, 1, 0x30);
    let ram = Backing::Ram { offset: 0xF0000 };
    let f_seg = |writes| C::Map {
        gpa: 0xF0000,
        len: 0x10000,
        backing: ram,
        writes,
    };
    assert_eq!(f.pc.take_memory_map_changes(), [f_seg(Writes::Allowed)]);
    f.pci_write(0, 0, 0x59, 1, 0x10);
    assert_eq!(f.pc.take_memory_map_changes(), [f_seg(Writes::Dropped)]);
    // The keel-shim's self-copy: read ROM, write RAM.
    f.pci_write(0, 0, 0x5F, 1, 0x22);
    let c = f.pc.take_memory_map_changes();
    assert_eq!(c.len(), 2);
    assert!(c.iter().all(|c| matches!(
        c,
        C::Map {
            backing: Backing::BiosRom,
            writes: Writes::ToRam,
            ..
        }
    )));
    // SMRAM opened (G_SMRAME | D_OPEN): RAM; closed: the bus again.
    f.pci_write(0, 0, 0x72, 1, 0x4A);
    assert!(matches!(
        f.pc.take_memory_map_changes()[..],
        [C::Map {
            gpa: 0xA0000,
            backing: Backing::Ram { offset: 0xA0000 },
            ..
        }]
    ));
    f.pci_write(0, 0, 0x72, 1, 0x0A);
    assert!(matches!(
        f.pc.take_memory_map_changes()[..],
        [C::Unmap { gpa: 0xA0000, .. }]
    ));
    // A20 off through the keyboard controller (command 0xDD): the HMA wraps to 0.
    f.out(0x64, 1, 0xDD);
    assert!(!f.pc.a20_enabled());
    assert!(matches!(
        f.pc.take_memory_map_changes()[..],
        [C::Map {
            gpa: 0x10_0000,
            backing: Backing::Ram { offset: 0 },
            ..
        }]
    ));
    assert!(f.pc.take_memory_map_changes().is_empty());
    // Reset: PAM back to the ROM, A20 on again.
    f.pc.reset();
    let c = f.pc.take_memory_map_changes();
    assert!(c.contains(&C::Map {
        gpa: 0xF0000,
        len: 0x10000,
        backing: Backing::BiosRom,
        writes: Writes::Dropped
    }));
    assert!(c.contains(&C::Map {
        gpa: 0x10_0000,
        len: 0x1_0000,
        backing: Backing::Ram { offset: 0x10_0000 },
        writes: Writes::Allowed
    }));
}

#[test]
fn an_e1000_joins_the_bus_by_name_is_serviced_and_reset_with_the_machine() {
    use crate::net::e1000::{regs, E1000Config};
    use crate::net::{Loopback, MacAddress};
    let mut f = fixture();
    let mac = MacAddress([0x00, 0x16, 0x3e, 0xaa, 0xbb, 0xcc]);
    let bdf =
        f.pc.add_e1000(E1000Config { mac, rom: None }, Box::new(Loopback::new()))
            .unwrap();
    assert_eq!(
        (bdf.bus, bdf.device, bdf.function),
        (0, 2, 0),
        "the first free slot"
    );
    // Firmware: BAR0, BAR1, memory, I/O and bus master on.
    const BAR0: u64 = 0xfebc_0000;
    f.pci_write(2, 0, 0x10, 4, BAR0 as u32);
    f.pci_write(2, 0, 0x14, 4, 0xc041);
    f.pci_write(2, 0, 0x04, 2, 0x7);
    let names: Vec<_> = f.pc.bus().ranges().filter(|r| r.name == "e1000").collect();
    assert_eq!(
        names.len(),
        2,
        "BAR0 and BAR1 on the bus by name: {names:?}"
    );
    let r32 = |f: &mut Fixture, off: u64| {
        let mut b = [0u8; 4];
        f.pc.mmio_read(BAR0 + off, &mut b);
        u32::from_le_bytes(b)
    };
    let w32 = |f: &mut Fixture, off: u64, v: u32| f.pc.mmio_write(BAR0 + off, &v.to_le_bytes());
    assert_eq!(r32(&mut f, regs::RAL0), 0xaa3e_1600);
    // A receive ring at 1 MiB, buffers from 2 MiB; a transmit ring at 3 MiB.
    for i in 0..8u64 {
        f.ram.write_obj(MIB + 16 * i, 2 * MIB + 0x800 * i).unwrap();
    }
    w32(&mut f, regs::RDBAL, MIB as u32);
    w32(&mut f, regs::RDLEN, 128);
    w32(&mut f, regs::RDT, 7);
    w32(
        &mut f,
        regs::RCTL,
        regs::rctl::EN | regs::rctl::BAM | regs::rctl::SECRC,
    );
    let frame: Vec<u8> = (0..64u8).map(|i| if i < 6 { 0xff } else { i }).collect();
    f.ram.write(4 * MIB, &frame).unwrap();
    let mut d = [0u8; 16];
    d[..8].copy_from_slice(&(4 * MIB).to_le_bytes());
    d[8] = 64;
    d[11] = 0x01 | 0x08; // EOP, RS
    f.ram.write(3 * MIB, &d).unwrap();
    w32(&mut f, regs::TDBAL, (3 * MIB) as u32);
    w32(&mut f, regs::TDLEN, 128);
    w32(&mut f, regs::TCTL, regs::tctl::EN);
    w32(&mut f, regs::IMS, regs::icr::RXT0);
    w32(&mut f, regs::TDT, 1);
    // The frame looped back waits for the service pass.
    let now = f.clock.now_ns();
    assert_eq!(f.pc.next_deadline_ns(), Some(now));
    f.pc.service();
    assert_eq!(r32(&mut f, regs::RDH), 1);
    let mut got = [0u8; 64];
    f.ram.read(2 * MIB, &mut got).unwrap();
    assert_eq!(got[..], frame[..]);
    assert_eq!(r32(&mut f, regs::ICR) & regs::icr::RXT0, regs::icr::RXT0);
    // The machine reset puts the NIC back to its power-on state.
    f.pc.reset();
    f.pci_write(2, 0, 0x10, 4, BAR0 as u32);
    f.pci_write(2, 0, 0x04, 2, 0x7);
    assert_eq!(r32(&mut f, regs::RCTL), 0);
    assert_eq!(r32(&mut f, regs::IMS), 0);
    assert_eq!(r32(&mut f, regs::RDLEN), 0);
}
