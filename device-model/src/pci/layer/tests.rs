use super::*;
use crate::pci::config_space::{command, ConfigSpace};
use crate::pci::device::{ConfigPort, PciDevice};
use crate::pci::{BarKind, PciBus, PciFunction};
use alloc::vec;

const MIB: u64 = 1 << 20;

/// A device with an I/O BAR, a 32-bit and a 64-bit memory BAR and a ROM;
/// it records the BAR accesses it sees.
struct Dev {
    cs: ConfigSpace,
    seen: Vec<(u8, u64, bool)>,
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
        "test"
    }
    fn bar_read(&mut self, bar: u8, offset: u64, data: &mut [u8]) {
        self.seen.push((bar, offset, false));
        data.fill(bar);
    }
    fn bar_write(&mut self, bar: u8, offset: u64, _data: &[u8]) {
        self.seen.push((bar, offset, true));
    }
    fn rom_image(&self) -> Option<Arc<[u8]>> {
        let mut image = vec![0u8; 0x600];
        image[0] = 0x55;
        image[1] = 0xAA;
        Some(Arc::from(image))
    }
}

struct Fixture {
    bus: Bus,
    pci: PciBus,
    layer: PciLayer,
    dev: Arc<Mutex<Dev>>,
    bdf: Bdf,
}

struct Other;
impl BusDevice for Other {
    fn read(&mut self, _: u64, _: u64, data: &mut [u8]) {
        data.fill(0x77);
    }
    fn write(&mut self, _: u64, _: u64, _: &[u8]) {}
}

fn fixture() -> Fixture {
    let mut cs = ConfigSpace::new(0x1234, 0x11, 0, 0xFF_00_00, 0);
    cs.add_bar(0, BarKind::Io, 32).unwrap();
    cs.add_bar(
        1,
        BarKind::Mem32 {
            prefetchable: false,
        },
        0x1000,
    )
    .unwrap();
    cs.add_bar(2, BarKind::Mem64 { prefetchable: true }, 0x4000)
        .unwrap();
    cs.set_rom(0x800).unwrap();
    let dev = Arc::new(Mutex::new(Dev {
        cs,
        seen: Vec::new(),
    }));
    let mut bus = Bus::new();
    let other: DeviceHandle = Arc::new(Mutex::new(Other));
    bus.register_mmio(0xFEB0_0000, 0x1000, "other", other.clone())
        .unwrap();
    bus.register_pio(0x40, 4, "PIT", other).unwrap();
    let bdf = Bdf::new(0, 3, 0).unwrap();
    let handle: PciDeviceHandle = dev.clone();
    let mut pci = PciBus::new();
    pci.add(
        bdf,
        "test",
        Arc::new(Mutex::new(ConfigPort(handle.clone()))),
    )
    .unwrap();
    let mut layer = PciLayer::new(64 * MIB, 0, MemoryMapQueue::new());
    layer.insert(bdf, handle);
    Fixture {
        bus,
        pci,
        layer,
        dev,
        bdf,
    }
}

impl Fixture {
    fn cfg(&mut self, off: u8, v: u32) {
        self.pci.config_write(self.bdf, off, &v.to_le_bytes());
        for e in self.pci.take_events() {
            assert!(self.layer.apply(&mut self.bus, &e), "{e:?}");
        }
        self.layer.retry_refused(&mut self.bus);
    }
    fn cfg_read(&mut self, off: u8) -> u32 {
        let mut b = [0u8; 4];
        self.pci.config_read(self.bdf, off, &mut b);
        u32::from_le_bytes(b)
    }
    fn mmio8(&mut self, a: u64) -> u8 {
        let mut b = [0u8];
        self.bus.mmio_read(a, &mut b);
        b[0]
    }
}

#[test]
fn bars_size_then_decode_only_with_the_command_enables() {
    let mut f = fixture();
    for (off, expect) in [
        (0x10, 0xFFFF_FFE1),
        (0x14, 0xFFFF_F000),
        (0x18, 0xFFFF_C00C),
        (0x1C, 0xFFFF_FFFF),
        (0x30, 0xFFFF_F801),
    ] {
        f.cfg(off, 0xFFFF_FFFF);
        assert_eq!(f.cfg_read(off), expect, "{off:#x}");
    }
    f.cfg(0x10, 0xC000);
    f.cfg(0x14, 0xFE00_0000);
    f.cfg(0x18, 0xFE01_0000);
    f.cfg(0x1C, 0);
    assert_eq!(f.bus.pio_read(0xC004, 1), 0xFF, "I/O decode off");
    assert_eq!(f.mmio8(0xFE00_0010), 0xFF, "memory decode off");
    f.cfg(0x04, u32::from(command::IO_SPACE | command::MEMORY_SPACE));
    assert_eq!(f.bus.pio_read(0xC004, 1), 0);
    assert_eq!(f.mmio8(0xFE00_0010), 1);
    assert_eq!(f.mmio8(0xFE01_3FFF), 2);
    f.bus.mmio_write(0xFE00_0FFC, &[0; 4]);
    assert_eq!(
        f.dev.lock().seen,
        vec![
            (0, 4, false),
            (1, 0x10, false),
            (2, 0x3FFF, false),
            (1, 0xFFC, true)
        ],
        "BAR accesses arrive with the offset inside the BAR"
    );
    f.cfg(0x04, u32::from(command::IO_SPACE));
    assert_eq!(f.mmio8(0xFE00_0010), 0xFF, "memory decode toggled off");
    assert_eq!(f.bus.pio_read(0xC004, 1), 0);
}

#[test]
fn a_bar_moves_and_its_old_place_goes_quiet() {
    let mut f = fixture();
    f.cfg(0x04, u32::from(command::MEMORY_SPACE));
    f.cfg(0x14, 0xFE00_0000);
    assert_eq!(f.mmio8(0xFE00_0000), 1);
    f.cfg(0x14, 0xFE20_0000);
    assert_eq!(f.mmio8(0xFE00_0000), 0xFF);
    assert_eq!(f.mmio8(0xFE20_0000), 1);
    assert_eq!(f.layer.refused(), 0);
}

#[test]
fn a_64_bit_bar_decodes_above_4_gib_from_both_halves() {
    let mut f = fixture();
    f.cfg(0x04, u32::from(command::MEMORY_SPACE));
    f.cfg(0x18, 0x0100_0000);
    assert_eq!(f.mmio8(0x0100_0000), 0xFF, "inside RAM: refused");
    f.cfg(0x1C, 0x8);
    assert_eq!(f.mmio8(0x8_0100_0000), 2);
    assert_eq!(f.mmio8(0x0100_0000), 0xFF);
}

#[test]
fn bars_over_ram_the_apics_or_another_device_are_not_decoded() {
    log_capture::start();
    let mut f = fixture();
    f.cfg(0x04, u32::from(command::MEMORY_SPACE | command::IO_SPACE));
    for (addr, what) in [
        (0x10_0000, "RAM"),
        (0xFEE0_0000, "local APIC"),
        (0xFEC0_0000, "IOAPIC"),
        (0xFEB0_0000, "other device"),
    ] {
        f.cfg(0x14, addr);
        assert_ne!(f.mmio8(addr as u64), 1, "{what}");
    }
    assert_eq!(
        f.mmio8(0xFEB0_0000),
        0x77,
        "the other device keeps its range"
    );
    f.cfg(0x10, 0x40);
    assert_eq!(f.bus.pio_read(0x40, 1), 0x77, "the PIT keeps its ports");
    assert_eq!(f.layer.refused(), 5);
    assert!(log_capture::count(log::Level::Warn, "not decoded while they overlap") >= 1);
}

#[test]
fn a_bar_over_another_bar_decodes_once_the_other_moves_away() {
    let mut f = fixture();
    f.cfg(0x04, u32::from(command::MEMORY_SPACE));
    f.cfg(0x14, 0xFE00_0000);
    f.cfg(0x18, 0xFE00_0000);
    assert_eq!(f.mmio8(0xFE00_0000), 1, "BAR1 was first");
    assert_eq!(f.layer.refused(), 1);
    f.cfg(0x14, 0xFE10_0000);
    assert_eq!(f.mmio8(0xFE10_0000), 1);
    assert_eq!(f.mmio8(0xFE00_0000), 2, "BAR2 decodes now");
    // Moving BAR2 away must not take BAR1 off the bus, nor the reverse.
    f.cfg(0x18, 0xFE20_0000);
    assert_eq!(f.mmio8(0xFE10_0000), 1);
    assert_eq!(f.mmio8(0xFE00_0000), 0xFF);
}

#[test]
fn the_rom_serves_its_image_then_erased_bytes_read_only() {
    let mut f = fixture();
    f.cfg(0x30, 0xFE40_0000);
    f.cfg(0x04, u32::from(command::MEMORY_SPACE));
    assert_eq!(f.mmio8(0xFE40_0000), 0xFF, "enable bit clear");
    f.cfg(0x30, 0xFE40_0001);
    assert_eq!(f.mmio8(0xFE40_0000), 0x55);
    assert_eq!(f.mmio8(0xFE40_0001), 0xAA);
    assert_eq!(f.mmio8(0xFE40_05FF), 0);
    let mut b = [0u8; 4];
    f.bus.mmio_read(0xFE40_05FE, &mut b);
    assert_eq!(b, [0, 0, 0xFF, 0xFF], "past the image: erased ROM");
    f.bus.mmio_write(0xFE40_0000, &[0]);
    assert_eq!(f.mmio8(0xFE40_0000), 0x55, "read-only");
    f.cfg(0x04, 0);
    assert_eq!(f.mmio8(0xFE40_0000), 0xFF, "memory decode off");
}

#[test]
fn a_reset_takes_every_region_off_the_bus() {
    let mut f = fixture();
    f.cfg(0x04, u32::from(command::MEMORY_SPACE));
    f.cfg(0x14, 0xFE00_0000);
    f.pci.reset();
    for e in f.pci.take_events() {
        f.layer.apply(&mut f.bus, &e);
    }
    assert_eq!(f.mmio8(0xFE00_0000), 0xFF);
}
