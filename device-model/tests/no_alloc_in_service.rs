//! Issue 11: a device never allocates in response to a guest access or a
//! service pass (docs/ARCHITECTURE.md, "Devices"). This binary counts the
//! allocations its own thread makes with a counting global allocator, and
//! drives a PC through a long IDE DMA transfer, a long READ VERIFY, the
//! timers at their fastest rates with the clock jumping an hour per pass,
//! IOAPIC deliveries, local APIC IPIs and COM1 lines: after setup, no pass
//! allocates.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::Arc;

use device_model::interrupt::lapic::LapicConfig;
use device_model::storage::ide::{ChannelId, DrivePosition, IdeDrive};
use device_model::{FakeClock, Pc, PcConfig, RamDisk};
use guest_memory::GuestMemory;

struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is passed to the system allocator unchanged; the
// counter is a const-initialised thread-local that never allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: the caller's contract is System's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: as above.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.with(|c| c.set(c.get() + 1));
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

/// Allocations `f` makes on this thread.
fn count(f: impl FnOnce()) -> u64 {
    let before = allocations();
    f();
    allocations() - before
}

const HOUR_NS: u64 = 3600 * 1_000_000_000;

struct Machine {
    pc: Pc,
    clock: Arc<FakeClock>,
    ram: GuestMemory,
}

impl Machine {
    fn new() -> Machine {
        let clock = FakeClock::new(1_000_000);
        let config = PcConfig {
            name: "vm".into(),
            vcpus: 2,
            unix_time: 1_700_000_000,
            lapic: LapicConfig::default(),
            test_device: false,
            test_device_ram: None,
            vga: None,
        };
        let ram = GuestMemory::new(0x20_0000);
        // The sink stands for Keel's serial output: it allocates nothing.
        let pc = Pc::new(&config, clock.clone(), ram.clone(), |l: &str| {
            std::hint::black_box(l);
        })
        .unwrap();
        let mut m = Machine { pc, clock, ram };
        let image: Vec<u8> = (0..8192 * 512).map(|i: usize| (i / 512) as u8).collect();
        m.pc.attach_ide(
            ChannelId::Primary,
            DrivePosition::Master,
            IdeDrive::disk(Box::new(RamDisk::new("disk.img", image).unwrap())),
        );
        m
    }

    fn out(&mut self, port: u16, size: u8, value: u32) {
        self.pc.pio_write(port, size, value);
    }

    fn mmio32(&mut self, gpa: u64, value: u32) {
        self.pc.mmio_write(gpa, &value.to_le_bytes());
    }

    fn pci_write(&mut self, device: u32, function: u32, reg: u32, size: u8, value: u32) {
        self.out(
            0xcf8,
            4,
            0x8000_0000 | (device << 11) | (function << 8) | (reg & 0xfc),
        );
        self.out(0xcfc + (reg & 3) as u16, size, value);
    }

    /// Every timer at its fastest, routed to the vCPU through the IOAPIC.
    fn program_timers(&mut self) {
        // IOAPIC pin 2 (PIT / HPET legacy IRQ 0) and pin 8 (RTC): vector 30h/38h, unmasked.
        for (pin, vector) in [(2u32, 0x30u32), (8, 0x38)] {
            self.mmio32(0xFEC0_0000, 0x10 + 2 * pin);
            self.mmio32(0xFEC0_0010, vector);
        }
        // PIT channel 0: mode 2, count 1.
        self.out(0x43, 1, 0x34);
        self.out(0x40, 1, 1);
        self.out(0x40, 1, 0);
        // RTC: 8 kHz periodic, periodic and update interrupts on.
        for (index, v) in [(0x0A, 0x23), (0x0B, 0x52)] {
            self.out(0x70, 1, index);
            self.out(0x71, 1, v);
        }
        // HPET timer 0: periodic, period 1 tick, legacy routing, enabled.
        self.mmio32(0xFED0_0100, 0x4C);
        self.mmio32(0xFED0_0108, 1);
        self.mmio32(0xFED0_0108, 1);
        self.mmio32(0xFED0_0010, 0x3);
        // Local APIC timer: periodic, divide by 1, initial count 1.
        self.mmio32(0xFEE0_03E0, 0xB);
        self.mmio32(0xFEE0_0320, 0x2_0040);
        self.mmio32(0xFEE0_0380, 1);
    }

    /// One pass of the VM loop with the clock an hour later, plus the
    /// guest's side: read the RTC's register C, send an IPI to vCPU 1,
    /// EOI, and a line on COM1.
    fn pass(&mut self) {
        self.clock.advance(HOUR_NS);
        self.pc.service();
        let _ = self.pc.next_deadline_ns();
        {
            let mut router = self.pc.router().lock();
            if router.pending_interrupt(0).is_some() {
                router.acknowledge(0);
            }
        }
        self.out(0x70, 1, 0x0C);
        let _ = self.pc.pio_read(0x71, 1);
        self.mmio32(0xFEE0_0310, 1 << 24);
        self.mmio32(0xFEE0_0300, 0x4041);
        self.mmio32(0xFEE0_00B0, 0);
        for &b in b"a line of guest output\n" {
            self.out(0x3f8, 1, u32::from(b));
        }
    }
}

#[test]
fn service_passes_timers_and_ide_transfers_never_allocate() {
    let mut m = Machine::new();
    // Firmware: IDETIM decode, BAR4 at 0xc000, I/O and bus master on.
    m.pci_write(1, 1, 0x40, 2, 0x8000);
    m.pci_write(1, 1, 0x20, 4, 0xc001);
    m.pci_write(1, 1, 0x04, 2, 0x0005);
    m.program_timers();
    // A warm-up pass: anything allocated lazily on first use is allocated now.
    m.pass();

    // Timers, interrupts and console: an hour per pass, a hundred passes.
    for i in 0..100 {
        assert_eq!(count(|| m.pass()), 0, "timer pass {i} allocated");
    }

    // Bus-master DMA: READ DMA EXT of 2048 sectors (1 MiB) into sixteen
    // 64 KiB regions, eight budgets.
    for i in 0..16u32 {
        let d = 0x1000 + 8 * u64::from(i);
        m.ram
            .write(d, &(0x10_0000 + 0x10000 * i).to_le_bytes())
            .unwrap();
        let eot = if i == 15 { 0x8000_0000u32 } else { 0 };
        m.ram.write(d + 4, &eot.to_le_bytes()).unwrap();
    }
    let start = count(|| {
        m.out(0xc004, 4, 0x1000);
        m.out(0x1f6, 1, 0x40);
        for (port, v) in [(0x1f2, 0x08), (0x1f3, 0), (0x1f4, 0), (0x1f5, 0)] {
            m.out(port, 1, v);
        }
        for port in [0x1f2, 0x1f3, 0x1f4, 0x1f5] {
            m.out(port, 1, 0);
        }
        m.out(0x1f7, 1, 0x25);
        m.out(0xc000, 1, 0x09);
    });
    assert_eq!(start, 0, "starting the DMA allocated");
    let mut passes = 0;
    while m.pc.pio_read(0xc002, 1) & 0x01 != 0 {
        assert_eq!(count(|| m.pass()), 0, "DMA pass {passes} allocated");
        passes += 1;
        assert!(passes < 16, "the DMA does not end");
    }
    assert_eq!(m.pc.pio_read(0x1f7, 1), 0x50, "the DMA completed");

    // READ VERIFY EXT of the whole disk.
    let verify = count(|| {
        for (port, v) in [(0x1f2, 0x20), (0x1f3, 0), (0x1f4, 0), (0x1f5, 0)] {
            m.out(port, 1, v);
        }
        for port in [0x1f2, 0x1f3, 0x1f4, 0x1f5] {
            m.out(port, 1, 0);
        }
        m.out(0x1f7, 1, 0x42);
    });
    assert_eq!(verify, 0, "starting READ VERIFY allocated");
    passes = 0;
    while m.pc.pio_read(0x3f6, 1) & 0x80 != 0 {
        assert_eq!(count(|| m.pass()), 0, "READ VERIFY pass {passes} allocated");
        passes += 1;
        assert!(passes < 64, "READ VERIFY does not end");
    }
    assert_eq!(m.pc.pio_read(0x1f7, 1), 0x50, "READ VERIFY completed");
}

#[test]
fn e1000_transmit_receive_and_service_never_allocate() {
    use device_model::net::e1000::{regs, E1000Config};
    use device_model::net::{Loopback, MacAddress};
    let mut m = Machine::new();
    let mac = MacAddress([0x00, 0x16, 0x3e, 1, 2, 3]);
    let bdf =
        m.pc.add_e1000(E1000Config { mac, rom: None }, Box::new(Loopback::new()))
            .unwrap();
    const BAR0: u64 = 0xfebc_0000;
    let dev = u32::from(bdf.device);
    m.pci_write(dev, 0, 0x10, 4, BAR0 as u32);
    m.pci_write(dev, 0, 0x04, 2, 0x7);
    let w = |m: &mut Machine, off: u64, v: u32| m.mmio32(BAR0 + off, v);
    // Receive ring: 32 descriptors at 0x18000, 2 KiB buffers from 0x20000.
    for i in 0..32u64 {
        m.ram
            .write_obj(0x18000 + 16 * i, 0x20000 + 0x800 * i)
            .unwrap();
    }
    w(&mut m, regs::RDBAL, 0x18000);
    w(&mut m, regs::RDLEN, 32 * 16);
    w(&mut m, regs::RDT, 31);
    w(&mut m, regs::RCTL, regs::rctl::EN | regs::rctl::BAM);
    w(&mut m, regs::IMS, regs::icr::RXT0 | regs::icr::TXDW);
    w(&mut m, regs::ITR, 100);
    w(&mut m, regs::RDTR, 10);
    // Transmit ring: 64 descriptors at 0x38000, each a broadcast frame
    // that the loopback hands back.
    let frame = [0xffu8; 60];
    m.ram.write(0x3a000, &frame).unwrap();
    for i in 0..64u64 {
        let mut d = [0u8; 16];
        d[..8].copy_from_slice(&0x3a000u64.to_le_bytes());
        d[8] = 60;
        d[11] = 0x01 | 0x08 | 0x80; // EOP, RS, IDE
        m.ram.write(0x38000 + 16 * i, &d).unwrap();
    }
    w(&mut m, regs::TDBAL, 0x38000);
    w(&mut m, regs::TDLEN, 64 * 16);
    w(&mut m, regs::TIDV, 5);
    w(&mut m, regs::TCTL, regs::tctl::EN | regs::tctl::PSP);
    m.pass();
    let mut tail = 0u32;
    let mut rx_tail = 31u32;
    for i in 0..200 {
        let n = count(|| {
            tail = (tail + 4) % 64;
            m.mmio32(BAR0 + regs::TDT, tail);
            m.pc.service();
            let _ = m.pc.next_deadline_ns();
            let mut b = [0u8; 4];
            m.pc.mmio_read(BAR0 + regs::ICR, &mut b);
            rx_tail = (rx_tail + 4) % 32;
            m.mmio32(BAR0 + regs::RDT, rx_tail);
            m.clock.advance(100_000);
            m.pc.service();
        });
        assert_eq!(n, 0, "e1000 pass {i} allocated");
    }
    let mut b = [0u8; 4];
    m.pc.mmio_read(BAR0 + 0x4074, &mut b);
    assert!(u32::from_le_bytes(b) > 100, "frames were received (GPRC)");
}

/// Keel's switch copies frames through queues allocated with its ports:
/// floods, learnt forwarding, full queues, runts, giants and table
/// replacement allocate nothing.
#[test]
fn switch_forwarding_never_allocates() {
    use device_model::net::{NetBackend, Switch, MAX_FRAME_LEN};
    let clock = FakeClock::new(1);
    let switch = Switch::new(clock.clone());
    let mut ports: Vec<_> = (0..3).map(|_| switch.add_port().unwrap()).collect();
    let mut frame = [0u8; MAX_FRAME_LEN + 1];
    let mut buf = [0u8; MAX_FRAME_LEN];
    let n = count(|| {
        for i in 0..2000u32 {
            frame[..6].copy_from_slice(if i % 3 == 0 {
                &[0xff; 6]
            } else {
                &[2, 0, 0, 0, 0, 1]
            });
            frame[6] = 2;
            frame[8..12].copy_from_slice(&i.to_be_bytes());
            let len = [60, 13, MAX_FRAME_LEN, MAX_FRAME_LEN + 1][i as usize % 4];
            ports[i as usize % 3].send(&frame[..len]);
            if i % 5 == 0 {
                for p in ports.iter_mut() {
                    let _ = p.receive(&mut buf);
                    let _ = p.frame_waiting();
                }
            }
            clock.advance(1_000_000_000);
        }
    });
    assert_eq!(n, 0, "the switch allocated {n} times while forwarding");
    assert!(ports[1].counters().dropped > 0, "the queues filled up");
}

/// Issue 16: the standard VGA's guest paths (ports, the legacy window in
/// every layout, DISPI mode sets that clear video memory, the register
/// BAR) and its text dump allocate nothing.
#[test]
fn vga_ports_window_dispi_and_text_dump_never_allocate() {
    use device_model::display::vga::VgaConfig;
    let config = PcConfig {
        name: "vm".into(),
        vcpus: 1,
        unix_time: 0,
        lapic: LapicConfig::default(),
        test_device: false,
        test_device_ram: None,
        vga: Some(VgaConfig::unmapped(None)),
    };
    let clock = FakeClock::new(0);
    let mut pc = Pc::new(&config, clock, GuestMemory::new(0x20_0000), |l: &str| {
        std::hint::black_box(l);
    })
    .unwrap();
    let vga = pc.vga().unwrap().clone();
    let n = count(|| {
        for round in 0..4u32 {
            // Sequencer memory mode and graphics mode for each layout.
            for (sr4, gr5, gr6) in [(0x02, 0x10, 0x0E), (0x06, 0x00, 0x05), (0x0E, 0x40, 0x05)] {
                pc.pio_write(0x3C4, 2, 0x0F02);
                pc.pio_write(0x3C4, 2, (sr4 << 8) | 4);
                pc.pio_write(0x3CE, 2, (gr5 << 8) | 5);
                pc.pio_write(0x3CE, 2, (gr6 << 8) | 6);
                pc.pio_write(0x3CE, 2, ((round & 3) << 8) | 5 | (gr5 << 8));
                for a in (0xA_0000..0xC_0000u64).step_by(0x1001) {
                    pc.mmio_write(a, &[0x5A, 0xA5, 0x3C, 0xC3]);
                    let mut b = [0u8; 4];
                    pc.mmio_read(a, &mut b);
                }
                let _ = pc.pio_read(0x3DA, 1);
                vga.lock().text_screen(|l| {
                    std::hint::black_box(l);
                });
            }
            // DISPI: 1024x768x32 with a clear, a bank, the mode off.
            for (i, v) in [(1, 1024), (2, 768), (3, 32), (4, 0x41), (5, 3), (4, 0)] {
                pc.pio_write(0x1CE, 2, i);
                pc.pio_write(0x1CF, 2, v);
            }
        }
    });
    assert_eq!(n, 0, "the VGA allocated {n} times");
}
