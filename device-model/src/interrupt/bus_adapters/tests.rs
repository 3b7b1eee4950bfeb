use super::*;
use crate::clock::FakeClock;
use crate::interrupt::LapicConfig;
use crate::irq::{IrqChip, IrqChipHandle, IrqLine};

fn platform() -> (Bus, RouterHandle) {
    let router: RouterHandle = Arc::new(Mutex::new(PcInterruptRouter::new(
        1,
        LapicConfig::default(),
        FakeClock::new(0),
    )));
    let mut bus = Bus::new();
    register_interrupt_controllers(&mut bus, &router).unwrap();
    (bus, router)
}

fn init_pic(bus: &mut Bus) {
    for (port, icw2, icw3) in [(0x20u16, 0x08u32, 0x04u32), (0xA0, 0x70, 0x02)] {
        bus.pio_write(port, 1, 0x11);
        bus.pio_write(port + 1, 1, icw2);
        bus.pio_write(port + 1, 1, icw3);
        bus.pio_write(port + 1, 1, 0x01);
    }
}

#[test]
fn pic_and_elcr_on_ports() {
    let (mut bus, _) = platform();
    init_pic(&mut bus);
    bus.pio_write(0x21, 1, 0xFB);
    bus.pio_write(0xA1, 1, 0xFF);
    assert_eq!(bus.pio_read(0x21, 1), 0xFB);
    assert_eq!(bus.pio_read(0xA1, 1), 0xFF);
    // A word read at 20h is two byte cycles: IRR, then IMR.
    assert_eq!(bus.pio_read(0x20, 2), 0xFB00);
    bus.pio_write(0x4D0, 2, 0xFFFF);
    assert_eq!(bus.pio_read(0x4D0, 2), 0xDEF8);
}

#[test]
fn ioapic_on_mmio() {
    let (mut bus, _) = platform();
    bus.mmio_write(0xFEC0_0000, &[0x01, 0, 0, 0]);
    let mut data = [0u8; 4];
    bus.mmio_read(0xFEC0_0010, &mut data);
    assert_eq!(u32::from_le_bytes(data), 0x0017_0011);
}

#[test]
fn lapic_on_mmio() {
    let (mut bus, router) = platform();
    let mut data = [0u8; 4];
    bus.mmio_read(0xFEE0_0030, &mut data);
    assert_eq!(u32::from_le_bytes(data), 0x0005_0014);
    bus.mmio_write(0xFEE0_0080, &0x40u32.to_le_bytes());
    assert_eq!(router.lock().cr8(0), 4);
}

/// A device that raises its interrupt from inside a bus access, as a
/// device whose register write completes a command does.
struct Raiser {
    line: IrqLine,
}

impl BusDevice for Raiser {
    fn read(&mut self, _: u64, _: u64, _: &mut [u8]) {}
    fn write(&mut self, _: u64, _: u64, _: &[u8]) {
        self.line.pulse();
    }
}

#[test]
fn a_bus_access_that_raises_an_irq_does_not_deadlock() {
    let (mut bus, router) = platform();
    let chip: IrqChipHandle = router.clone();
    bus.register_pio(
        0x60,
        1,
        "raiser",
        Arc::new(Mutex::new(Raiser {
            line: IrqLine::new(chip, 1),
        })),
    )
    .unwrap();
    init_pic(&mut bus);
    bus.pio_write(0x60, 1, 0);
    assert_eq!(router.lock().acknowledge(0), Some(0x09));
}

/// A small xorshift, so the sweep is the same on every run.
fn next(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

#[test]
fn arbitrary_guest_accesses_never_panic() {
    let (mut bus, router) = platform();
    let mut seed = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..20_000 {
        let r = next(&mut seed);
        let len = [1usize, 2, 4, 8][(r & 3) as usize];
        let value = next(&mut seed).to_le_bytes();
        let (base, span) = match (r >> 2) % 3 {
            0 => (0xFEE0_0000u64, 0x1000u64),
            1 => (0xFEC0_0000, 0x1000),
            _ => {
                let port = [0x20u16, 0x21, 0xA0, 0xA1, 0x4D0, 0x4D1][((r >> 4) % 6) as usize];
                if r & (1 << 40) != 0 {
                    bus.pio_write(
                        port,
                        (len.min(4)) as u8,
                        u32::from_le_bytes([value[0], value[1], value[2], value[3]]),
                    );
                } else {
                    bus.pio_read(port, (len.min(4)) as u8);
                }
                continue;
            }
        };
        let addr = base + (r >> 8) % span;
        if r & (1 << 40) != 0 {
            bus.mmio_write(addr, &value[..len]);
        } else {
            let mut data = [0u8; 8];
            bus.mmio_read(addr, &mut data[..len]);
        }
        let mut router = router.lock();
        router.set_irq((r >> 48) as u32 % 26, r & (1 << 41) != 0);
        router.pending_interrupt(0);
        if r & (1 << 42) != 0 {
            router.acknowledge(0);
        }
    }
}
