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

/// virtio-blk: notifications, chains (direct and indirect), reads and
/// writes of several passes, batched completions and MSI-X allocate nothing.
#[test]
fn virtio_blk_requests_and_service_never_allocate() {
    use device_model::virtio::{Transport, VirtioBlk, VirtioBlkConfig};
    use device_model::Clock;
    let mut m = Machine::new();
    let disk = RamDisk::new("vdisk", vec![0u8; 8 << 20]).unwrap();
    let blk = VirtioBlk::new(VirtioBlkConfig { read_only: false }, Box::new(disk));
    let bdf = m.pc.add_virtio(blk, Transport::Transitional).unwrap();
    const BAR4: u64 = 0xfe00_0000;
    const BAR1: u64 = 0xfe01_0000;
    let dev = u32::from(bdf.device);
    m.pci_write(dev, 0, 0x14, 4, BAR1 as u32);
    m.pci_write(dev, 0, 0x20, 4, BAR4 as u32);
    m.pci_write(dev, 0, 0x04, 2, 0x7);
    // MSI-X entry 0 to the local APIC, then enabled (capability at 0x40).
    m.mmio32(0xfee0_00f0, 0x1ff);
    m.mmio32(BAR1, 0xfee0_0000);
    m.mmio32(BAR1 + 8, 0x51);
    m.mmio32(BAR1 + 12, 0);
    m.pci_write(dev, 0, 0x40, 4, 0x8000_0000 | 0x11);
    let common = |m: &mut Machine, off: u64, bytes: &[u8]| m.pc.mmio_write(BAR4 + off, bytes);
    common(&mut m, 0x14, &[0]);
    common(&mut m, 0x14, &[3]);
    common(&mut m, 0x08, &1u32.to_le_bytes());
    common(&mut m, 0x0C, &1u32.to_le_bytes()); // VERSION_1
    common(&mut m, 0x08, &0u32.to_le_bytes());
    common(&mut m, 0x0C, &(3u32 << 28).to_le_bytes()); // INDIRECT, EVENT_IDX
    common(&mut m, 0x14, &[11]);
    common(&mut m, 0x16, &0u16.to_le_bytes());
    common(&mut m, 0x1A, &0u16.to_le_bytes());
    common(&mut m, 0x20, &0x1_0000u64.to_le_bytes());
    common(&mut m, 0x28, &0x1_1000u64.to_le_bytes());
    common(&mut m, 0x30, &0x1_2000u64.to_le_bytes());
    common(&mut m, 0x1C, &1u16.to_le_bytes());
    common(&mut m, 0x14, &[15]);
    // Two requests through indirect tables: a write and a read of 254
    // segments of 4 KiB each (1016 KiB, two passes) (header, data, status).
    for (slot, kind) in [(0u64, 1u32), (1, 0)] {
        let table = 0x2_0000 + slot * 0x1000;
        let header = 0x3_0000 + slot * 0x100;
        m.ram.write_obj(header, kind).unwrap();
        m.ram.write_obj(header + 8, 64u64).unwrap();
        let put = |i: u64, addr: u64, len: u32, flags: u16| {
            m.ram.write_obj(table + 16 * i, addr).unwrap();
            m.ram.write_obj(table + 16 * i + 8, len).unwrap();
            m.ram.write_obj(table + 16 * i + 12, flags).unwrap();
            m.ram
                .write_obj(table + 16 * i + 14, (i + 1) as u16)
                .unwrap();
        };
        let w = if kind == 0 { 2 } else { 0 };
        put(0, header, 16, 1);
        for s in 0..254 {
            put(1 + s, 0x10_0000 + s * 4096, 4096, 1 | w);
        }
        put(255, header + 16, 1, 2);
        m.ram.write_obj(0x1_0000 + 16 * slot, table).unwrap();
        m.ram
            .write_obj(0x1_0000 + 16 * slot + 8, 256u32 * 16)
            .unwrap();
        m.ram.write_obj(0x1_0000 + 16 * slot + 12, 4u16).unwrap();
    }
    m.pass();
    let mut idx = 0u16;
    for i in 0..50 {
        let n = count(|| {
            for head in [0u16, 1] {
                m.ram
                    .write_obj(0x1_1004 + 2 * u64::from(idx % 256), head)
                    .unwrap();
                idx = idx.wrapping_add(1);
            }
            m.ram.write_obj(0x1_1002, idx).unwrap();
            m.pc.mmio_write(BAR4 + 0x3000, &0u16.to_le_bytes());
            while m
                .pc
                .next_deadline_ns()
                .is_some_and(|t| t <= m.clock.now_ns())
            {
                m.pc.service();
            }
            let _ = m.pc.router().lock().acknowledge(0);
            m.mmio32(0xfee0_00b0, 0);
        });
        assert_eq!(n, 0, "virtio-blk pass {i} allocated");
        let used: u16 = m.ram.read_obj(0x1_2002).unwrap();
        assert_eq!(used, idx, "every request completed");
    }
}

/// virtio-net: transmit notifications (plain frames, a completed checksum,
/// a TSO packet cut into segments), frames through the loopback into
/// mergeable receive buffers, reposting, batched completions and MSI-X
/// allocate nothing.
#[test]
fn virtio_net_transmit_receive_and_service_never_allocate() {
    use device_model::net::{Loopback, MacAddress};
    use device_model::virtio::{Transport, VirtioNet, VirtioNetConfig};
    use device_model::Clock;
    let mut m = Machine::new();
    let nic = VirtioNet::new(
        VirtioNetConfig {
            mac: MacAddress([0x52, 0x54, 0, 0, 0, 1]),
        },
        Box::new(Loopback::new()),
    );
    let bdf = m.pc.add_virtio(nic, Transport::Transitional).unwrap();
    const BAR4: u64 = 0xfe00_0000;
    const BAR1: u64 = 0xfe01_0000;
    let dev = u32::from(bdf.device);
    m.pci_write(dev, 0, 0x14, 4, BAR1 as u32);
    m.pci_write(dev, 0, 0x20, 4, BAR4 as u32);
    m.pci_write(dev, 0, 0x04, 2, 0x7);
    m.mmio32(0xfee0_00f0, 0x1ff);
    for e in 0..3u64 {
        m.mmio32(BAR1 + 16 * e, 0xfee0_0000);
        m.mmio32(BAR1 + 16 * e + 8, 0x51);
        m.mmio32(BAR1 + 16 * e + 12, 0);
    }
    m.pci_write(dev, 0, 0x40, 4, 0x8000_0000 | 0x11);
    let common = |m: &mut Machine, off: u64, bytes: &[u8]| m.pc.mmio_write(BAR4 + off, bytes);
    common(&mut m, 0x14, &[0]);
    common(&mut m, 0x14, &[3]);
    common(&mut m, 0x08, &1u32.to_le_bytes());
    common(&mut m, 0x0C, &1u32.to_le_bytes()); // VERSION_1
    common(&mut m, 0x08, &0u32.to_le_bytes());
    // CSUM, HOST_TSO4, MRG_RXBUF, INDIRECT, EVENT_IDX.
    let f: u32 = 1 | 1 << 11 | 1 << 15 | 3 << 28;
    common(&mut m, 0x0C, &f.to_le_bytes());
    common(&mut m, 0x14, &[11]);
    // Queue q's rings at 0x1_0000 + 0x4000 * q.
    for q in 0..2u16 {
        let base = 0x1_0000 + 0x4000 * u64::from(q);
        common(&mut m, 0x16, &q.to_le_bytes());
        common(&mut m, 0x1A, &q.to_le_bytes());
        common(&mut m, 0x20, &base.to_le_bytes());
        common(&mut m, 0x28, &(base + 0x1000).to_le_bytes());
        common(&mut m, 0x30, &(base + 0x2000).to_le_bytes());
        common(&mut m, 0x1C, &1u16.to_le_bytes());
    }
    common(&mut m, 0x14, &[15]);
    // Receive descriptors 0..64: 1000-byte buffers (frames span two).
    for i in 0..64u64 {
        m.ram
            .write_obj(0x1_0000 + 16 * i, 0x10_0000 + 0x1000 * i)
            .unwrap();
        m.ram.write_obj(0x1_0000 + 16 * i + 8, 1000u32).unwrap();
        m.ram.write_obj(0x1_0000 + 16 * i + 12, 2u16).unwrap();
    }
    // Transmit: descriptor 0 a plain 1000-byte frame, 1 a TCP/IPv4 frame
    // with NEEDS_CSUM, 2 a 4000-byte TSO packet (three segments), each one
    // buffer holding the 12-byte header and the frame.
    let mut packet = vec![0u8; 12 + 54 + 4000];
    packet[12..18].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 1]);
    packet[18..24].copy_from_slice(&[0x52, 0x54, 0, 0, 0, 2]);
    packet[24..26].copy_from_slice(&[0x08, 0x00]);
    packet[26] = 0x45;
    packet[35] = 6;
    packet[12 + 34 + 12] = 5 << 4;
    for (i, (flags, gso, len)) in [(0u8, 0u8, 1000usize), (1, 0, 600), (1, 1, 4054)]
        .into_iter()
        .enumerate()
    {
        let mut p = packet[..12 + len].to_vec();
        p[0] = flags;
        p[1] = gso;
        p[4..6].copy_from_slice(&1448u16.to_le_bytes());
        p[6..8].copy_from_slice(&34u16.to_le_bytes());
        p[8..10].copy_from_slice(&16u16.to_le_bytes());
        let at = 0x18_0000 + 0x2000 * i as u64;
        m.ram.write(at, &p).unwrap();
        let d = 0x1_4000 + 16 * i as u64;
        m.ram.write_obj(d, at).unwrap();
        m.ram.write_obj(d + 8, p.len() as u32).unwrap();
        m.ram.write_obj(d + 12, 0u16).unwrap();
    }
    m.pass();
    let (mut rx_idx, mut tx_idx) = (0u16, 0u16);
    for i in 0..50 {
        let n = count(|| {
            // Repost the receive buffers the last round used.
            while rx_idx.wrapping_sub(m.ram.read_obj::<u16>(0x1_2002).unwrap()) < 32 {
                m.ram
                    .write_obj(0x1_1004 + 2 * u64::from(rx_idx % 256), rx_idx % 64)
                    .unwrap();
                rx_idx = rx_idx.wrapping_add(1);
            }
            m.ram.write_obj(0x1_1002, rx_idx).unwrap();
            m.pc.mmio_write(BAR4 + 0x3000, &0u16.to_le_bytes());
            for head in 0..3u16 {
                m.ram
                    .write_obj(0x1_5004 + 2 * u64::from(tx_idx % 256), head)
                    .unwrap();
                tx_idx = tx_idx.wrapping_add(1);
            }
            m.ram.write_obj(0x1_5002, tx_idx).unwrap();
            m.pc.mmio_write(BAR4 + 0x3004, &1u16.to_le_bytes());
            m.clock.advance(1_000_000);
            while m
                .pc
                .next_deadline_ns()
                .is_some_and(|t| t <= m.clock.now_ns())
            {
                m.pc.service();
            }
            while m.pc.router().lock().acknowledge(0).is_some() {
                m.mmio32(0xfee0_00b0, 0);
            }
        });
        assert_eq!(n, 0, "virtio-net pass {i} allocated");
        let used: u16 = m.ram.read_obj(0x1_6002).unwrap();
        assert_eq!(used, tx_idx, "every transmit chain completed");
    }
    let received: u16 = m.ram.read_obj(0x1_2002).unwrap();
    assert!(
        received > 100,
        "frames were received: {received} buffers used"
    );
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
