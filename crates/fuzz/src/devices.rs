//! The devices target: random guest accesses to every range on a real PC's bus.

use std::collections::BTreeMap;
use std::sync::Arc;

use device_model::display::vga::VgaConfig;
use device_model::interrupt::lapic::LapicConfig;
use device_model::net::e1000::E1000Config;
use device_model::net::{Loopback, MacAddress};
use device_model::storage::{ChannelId, DrivePosition, IdeDrive, RamDisk, ReadAhead, ReadOnly};
use device_model::virtio::{Transport, VirtioBlk, VirtioBlkConfig, VirtioNet, VirtioNetConfig};
use device_model::{AddressSpace, FakeClock, Pc, PcConfig, PowerRequest, RangeInfo};
use guest_memory::GuestMemory;
use x86_emul::rng::Rng;

use crate::{interesting, set_case, HeapWatch, CASES_PER_SEED};

/// Guest RAM, the DMA memory of IDE bus mastering and fw_cfg DMA.
const RAM_SIZE: usize = 4 << 20;
/// The IDE disk's and the CD's sizes.
const DISK_SIZE: usize = 256 << 10;
const CD_SIZE: usize = 256 << 10;
/// Steps (accesses and clock moves) of an ordinary case, at most.
const MAX_STEPS: u64 = 48;
/// One case in this many is a storm: a short access pattern repeated
/// [`STORM_REPEATS`] times, as a guest that loops on a few registers.
const STORM_ONE_IN: u64 = 50;
const STORM_REPEATS: u64 = 2048;
/// The most the second half of a storm may grow the heap: a repeated
/// pattern that keeps allocating is a guest-driven queue without a bound.
const STORM_SECOND_HALF_GROWTH: i64 = 256;

/// The highest port, and where MMIO devices of a PC live (the 4 GiB hole's top).
const PORT_LAST: u64 = 0xffff;
const MMIO_WINDOW: (u64, u64) = (0xfe00_0000, 0x0200_0000);

struct Machine {
    pc: Pc,
    clock: Arc<FakeClock>,
    /// Guest RAM, shared with the PC's DMA engines.
    ram: GuestMemory,
    /// The bus's ranges as of the last refresh (PCI BARs and the PM block move).
    ranges: Vec<RangeInfo>,
    /// Accesses that started in each named range: which devices the
    /// harness reached.
    hits: BTreeMap<&'static str, u64>,
}

/// One guest action.
#[derive(Debug, Clone, Copy)]
enum Access {
    PioRead {
        port: u16,
        size: u8,
    },
    PioWrite {
        port: u16,
        size: u8,
        value: u32,
    },
    MmioRead {
        addr: u64,
        size: usize,
    },
    MmioWrite {
        addr: u64,
        size: usize,
        value: u64,
    },
    /// A PCI configuration write as firmware makes it: the address to
    /// 0xCF8, the value to 0xCFC (configuration mechanism #1), so BARs and
    /// the PM block move and the ranges behind them join the bus.
    PciConfigWrite {
        address: u32,
        size: u8,
        value: u32,
    },
}

/// Configuration registers firmware programs: command (PCI 3.0 6.2.2), the
/// BARs, and the PIIX4's PMBA and PMREGMISC.
const PCI_REGISTERS: &[u32] = &[
    0x04, 0x04, 0x10, 0x14, 0x18, 0x1c, 0x20, 0x20, 0x24, 0x40, 0x80,
];
const PCI_CONFIG_ADDRESS: u16 = 0xcf8;
const PCI_CONFIG_DATA: u16 = 0xcfc;

pub(crate) fn run(rng: &mut Rng) {
    Machine::new(rng).run(rng);
}

impl Machine {
    /// The cases of one seed on this machine.
    fn run(&mut self, rng: &mut Rng) {
        let m = self;
        for case in 0..CASES_PER_SEED {
            set_case(case);
            let heap = HeapWatch::start();
            if rng.below(STORM_ONE_IN) == 0 {
                m.storm(rng);
            } else {
                for _ in 0..1 + rng.below(MAX_STEPS) {
                    m.step(rng);
                }
            }
            heap.check("devices");
        }
    }
}

fn random_bytes(rng: &mut Rng, len: usize) -> Vec<u8> {
    let mut v = vec![0u8; len];
    fill(rng, &mut v);
    v
}

/// Fills `bytes` with random bytes: one random page, rotated by a random
/// amount into each page, so megabytes of RAM cost little even in a debug build.
fn fill(rng: &mut Rng, bytes: &mut [u8]) {
    const PAGE: usize = 4096;
    if bytes.len() <= 64 {
        for b in bytes {
            *b = rng.next() as u8;
        }
        return;
    }
    let mut page = [0u8; PAGE];
    for chunk in page.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes());
    }
    for chunk in bytes.chunks_mut(PAGE) {
        let rot = rng.below(PAGE as u64) as usize;
        let (a, b) = page.split_at(rot);
        let n = chunk.len().min(b.len());
        chunk[..n].copy_from_slice(&b[..n]);
        let rest = (chunk.len() - n).min(a.len());
        chunk[n..n + rest].copy_from_slice(&a[..rest]);
    }
}

impl Machine {
    fn new(rng: &mut Rng) -> Machine {
        let clock = FakeClock::new(rng.below(1 << 50));
        let config = PcConfig {
            name: "fuzz".into(),
            vcpus: 1 + rng.below(2) as u32,
            unix_time: rng.below(1 << 34),
            lapic: LapicConfig::default(),
            test_device: true,
            test_device_ram: None,
            // The standard VGA with its video memory unmapped: the legacy
            // ports, window and DISPI through the bus, the BARs once placed;
            // a random image behind its ROM BAR.
            // 1 MiB of video memory keeps a random mode set's clear cheap;
            // the card's bounds follow the memory it has.
            vga: Some(VgaConfig {
                vram: device_model::DeviceRam {
                    region: None,
                    memory: GuestMemory::new(1 << 20),
                },
                rom: Some(Arc::from(random_bytes(rng, 4096))),
            }),
        };
        let ram = GuestMemory::new(RAM_SIZE);
        // Guest output goes nowhere: the harness checks the devices, not the console.
        let mut pc =
            Pc::new(&config, clock.clone(), ram.clone(), |_: &str| {}).expect("the PC builds");
        let disk = RamDisk::new("fuzz-disk", random_bytes(rng, DISK_SIZE)).expect("disk size");
        let cd = RamDisk::new("fuzz-cd", random_bytes(rng, CD_SIZE)).expect("CD size");
        pc.attach_ide(
            ChannelId::Primary,
            DrivePosition::Master,
            IdeDrive::disk(Box::new(disk)),
        );
        pc.attach_ide(
            ChannelId::Secondary,
            DrivePosition::Master,
            // Behind a read-ahead window, as a host disk is in Keel.
            IdeDrive::cdrom(Some(Box::new(ReadOnly(ReadAhead::new(cd, 16))))),
        );
        // The e1000 on a loopback: what it sends comes back to its receive
        // ring, so both paths run; a small option ROM behind its ROM BAR.
        let rom: Arc<[u8]> = Arc::from(random_bytes(rng, 2048));
        pc.add_e1000(
            E1000Config {
                mac: MacAddress([0x00, 0x16, 0x3e, 0, 0, 1]),
                rom: Some(rom),
            },
            Box::new(Loopback::new()),
        )
        .expect("the e1000 plugs in");
        // A virtio-blk disk (00:04.0) over a random RAM disk: rings and
        // requests in random RAM, reached through both its interfaces;
        // behind a read-ahead window that its writes must keep current.
        let vdisk = RamDisk::new("fuzz-vdisk", vec![0u8; DISK_SIZE]).expect("disk size");
        let vdisk = ReadAhead::new(vdisk, 16);
        pc.add_virtio(
            VirtioBlk::new(VirtioBlkConfig { read_only: false }, Box::new(vdisk)),
            Transport::Transitional,
        )
        .expect("the virtio disk plugs in");
        // A virtio-net NIC (00:05.0) on a loopback, like the e1000: its
        // transmit queue's frames come back to its receive queue.
        pc.add_virtio(
            VirtioNet::new(
                VirtioNetConfig {
                    mac: MacAddress([0x00, 0x16, 0x3e, 0, 0, 2]),
                },
                Box::new(Loopback::new()),
            ),
            Transport::Transitional,
        )
        .expect("the virtio NIC plugs in");
        ram.write(0, &random_bytes(rng, RAM_SIZE))
            .expect("RAM_SIZE bytes fit");
        let mut m = Machine {
            pc,
            clock,
            ram,
            ranges: Vec::new(),
            hits: BTreeMap::new(),
        };
        m.refresh_ranges();
        assert!(
            m.ranges.iter().any(|r| r.space == AddressSpace::Mmio)
                && m.ranges.iter().any(|r| r.space == AddressSpace::Pio),
            "the PC registers no ranges: {:?}",
            m.ranges
        );
        m
    }

    fn refresh_ranges(&mut self) {
        self.ranges.clear();
        self.ranges.extend(self.pc.bus().ranges());
    }

    /// One random step: mostly a guest access, sometimes time passing, the
    /// VM loop's calls, or the guest rewriting its RAM (DMA descriptors).
    fn step(&mut self, rng: &mut Rng) {
        match rng.below(100) {
            0..=79 => {
                let a = self.random_access(rng);
                self.access(a);
            }
            80..=86 => self.clock.advance(match rng.below(4) {
                0 => rng.below(1000),
                1 => rng.below(1_000_000),
                2 => rng.below(1_000_000_000),
                _ => rng.below(100_000_000_000),
            }),
            87..=90 => self.service(),
            91..=93 => {
                // The VM loop sleeps until the next deadline, then services.
                if let Some(d) = self.pc.next_deadline_ns() {
                    if rng.below(2) == 0 {
                        self.clock
                            .set(d.max(device_model::Clock::now_ns(&*self.clock)));
                    }
                }
                self.service();
            }
            94..=95 => self.acknowledge_interrupts(rng),
            96 => self.show_screen(rng),
            _ => self.scribble(rng),
        }
        self.take_power_request();
    }

    /// Keel's display (`host::display`) drawing one row of the VGA's
    /// screen, in whatever mode the random registers select, at random
    /// columns, as a scaler would pick them.
    fn show_screen(&mut self, rng: &mut Rng) {
        let Some(vga) = self.pc.vga() else {
            return;
        };
        let vga = vga.lock();
        let screen = vga.screen();
        let (w, h) = vga.screen_size(screen);
        let y = rng.below(u64::from(h.max(1)) + 2) as u32;
        let step = rng.below(4) as u32 + 1;
        let mut row = [0u32; 64];
        let start = rng.below(u64::from(w.max(1))) as u32;
        let _ = vga.render_row(screen, y, &mut row, |i| start.saturating_add(i * step));
    }

    /// A guest-visible reset, as the VM loop does on a reset request; other
    /// requests would stop the VM, here the guest simply goes on.
    fn take_power_request(&mut self) {
        if let Some(PowerRequest::Reset) = self.pc.power.take() {
            self.pc.reset();
            self.refresh_ranges();
        }
    }

    /// The vCPU taking interrupts: what `deliver` in the VM loop does.
    fn acknowledge_interrupts(&mut self, rng: &mut Rng) {
        let mut router = self.pc.router().lock();
        for _ in 0..rng.below(4) {
            let vcpu = rng.below(2) as u32;
            let _ = router.pending_interrupt(vcpu);
            let _ = router.acknowledge(vcpu);
            if router.pending_nmi(vcpu) {
                router.acknowledge_nmi(vcpu);
            }
        }
    }

    /// The guest writes its RAM: random bytes, an e1000 descriptor, or a
    /// bus-master PRD entry (a RAM address, a byte count, sometimes
    /// end-of-table) at a random place.
    fn scribble(&mut self, rng: &mut Rng) {
        let at = rng.below(RAM_SIZE as u64 - 16) as usize & !7;
        if rng.below(2) == 0 {
            let len = (1 + rng.below(64) as usize).min(RAM_SIZE - at);
            let mut bytes = vec![0u8; len];
            fill(rng, &mut bytes);
            let _ = self.ram.write(at as u64, &bytes);
        } else if rng.below(2) == 0 {
            // An e1000 descriptor (8254x SDM 3.3.3, 3.3.6-7): a RAM address,
            // a length, random command, status and offsets.
            let addr = rng.below(RAM_SIZE as u64);
            let rest = rng.next() & !0xFFFF | rng.below(0x2000);
            let _ = self.ram.write_obj(at as u64, addr);
            let _ = self.ram.write_obj(at as u64 + 8, rest);
        } else {
            let addr = rng.below(RAM_SIZE as u64) as u32;
            let count = rng.below(0x1_0000) as u16;
            let flags: u16 = if rng.below(2) == 0 { 0x8000 } else { 0 };
            let prd = u64::from(addr) | u64::from(count) << 32 | u64::from(flags) << 48;
            let _ = self.ram.write_obj(at as u64, prd);
        }
    }

    /// Pc::service: due interrupts and the next piece of a long DMA transfer.
    fn service(&mut self) {
        self.pc.service();
    }

    fn access(&mut self, a: Access) {
        let (space, addr) = match a {
            Access::PioRead { port, .. } | Access::PioWrite { port, .. } => {
                (AddressSpace::Pio, u64::from(port))
            }
            Access::MmioRead { addr, .. } | Access::MmioWrite { addr, .. } => {
                (AddressSpace::Mmio, addr)
            }
            Access::PciConfigWrite { .. } => (AddressSpace::Pio, PCI_CONFIG_DATA.into()),
        };
        if let Some(r) = self
            .ranges
            .iter()
            .find(|r| r.space == space && addr.wrapping_sub(r.base) < r.len)
        {
            *self.hits.entry(r.name).or_default() += 1;
        }
        match a {
            Access::PioRead { port, size } => {
                self.pc.pio_read(port, size);
                // REP INS served in bulk, as the emulator would ask for it.
                let elem = usize::from(size);
                let room = self.pc.pio_string_room(port, elem, false);
                assert_eq!(room % elem.max(1), 0, "bulk room {room} at port {port:#x}");
                let mut buf = [0u8; 4096];
                let want = room.min(buf.len()) / elem.max(1) * elem;
                let got = self.pc.pio_read_string(port, elem, &mut buf[..want]);
                assert!(got <= want, "bulk read of {got} bytes, {want} asked");
            }
            Access::PioWrite { port, size, value } => {
                let elem = usize::from(size);
                let room = self.pc.pio_string_room(port, elem, true);
                assert_eq!(room % elem.max(1), 0, "bulk room {room} at port {port:#x}");
                let buf = [value as u8; 4096];
                let want = room.min(buf.len()) / elem.max(1) * elem;
                let took = self.pc.pio_write_string(port, elem, &buf[..want]);
                assert!(took <= want, "bulk write of {took} bytes, {want} offered");
                self.pc.pio_write(port, size, value);
                // A write can move ranges (PCI BARs, the PM block).
                self.refresh_ranges();
            }
            Access::MmioRead { addr, size } => {
                let mut data = [0u8; 16];
                self.pc.mmio_read(addr, &mut data[..size]);
            }
            Access::MmioWrite { addr, size, value } => {
                let mut data = [0u8; 16];
                data[..8].copy_from_slice(&value.to_le_bytes());
                data[8..].copy_from_slice(&value.to_le_bytes());
                self.pc.mmio_write(addr, &data[..size]);
            }
            Access::PciConfigWrite {
                address,
                size,
                value,
            } => {
                self.pc.pio_write(PCI_CONFIG_ADDRESS, 4, address);
                let port = PCI_CONFIG_DATA + (address & 3) as u16;
                self.pc.pio_write(port, size, value);
                self.refresh_ranges();
            }
        }
    }

    /// A random access, mostly inside a registered range.
    fn random_access(&self, rng: &mut Rng) -> Access {
        if rng.below(12) == 0 {
            let reg = PCI_REGISTERS[rng.below(PCI_REGISTERS.len() as u64) as usize];
            // Devices 0-3 are drawn as the saved seeds were found with and
            // spread over the machine: the chipset (0-1), the test device
            // (2), the VGA (3); functions 2-3 of devices 3 and 2 (which have
            // none) go to the e1000 (4) and the virtio disk (5), functions
            // 1-3 of the host bridge to the virtio NIC (6), each a
            // single-function device. Device 1 function 2, and function 1
            // of devices 2 and 3, stay absent functions.
            let (dev, func) = match (rng.below(4) as u32, rng.below(4) as u32) {
                (3, 2..) => (4, 0),
                (2, 2..) => (5, 0),
                (0, 1..) => (6, 0),
                other => other,
            };
            return Access::PciConfigWrite {
                address: 0x8000_0000 | (dev << 11) | (func << 8) | reg,
                size: [1, 2, 4][rng.below(3) as usize],
                value: match rng.below(3) {
                    0 => 0x7,
                    1 => (rng.below(0x1_0000) as u32 & !0xf) | 1,
                    _ => self.random_value(rng, true, 0) as u32,
                },
            };
        }
        let write = rng.below(2) == 0;
        let pio = rng.below(3) != 0;
        let space = if pio {
            AddressSpace::Pio
        } else {
            AddressSpace::Mmio
        };
        let size = if pio {
            // The exit decoders give 1, 2 or 4; the bus must take anything.
            [1, 1, 2, 4, 4, 1, 2, 4, 0, 3][rng.below(10) as usize]
        } else {
            match rng.below(20) {
                0 => 0,
                1 => 9 + rng.below(8) as usize,
                _ => 1 + rng.below(8) as usize,
            }
        };
        let addr = self.random_address(rng, space, size.max(1) as u64);
        let value = self.random_value(rng, pio, addr);
        match (pio, write) {
            (true, false) => Access::PioRead {
                port: addr as u16,
                size: size as u8,
            },
            (true, true) => Access::PioWrite {
                port: addr as u16,
                size: size as u8,
                value: value as u32,
            },
            (false, false) => Access::MmioRead { addr, size },
            (false, true) => Access::MmioWrite { addr, size, value },
        }
    }

    fn random_address(&self, rng: &mut Rng, space: AddressSpace, size: u64) -> u64 {
        let in_space = || self.ranges.iter().filter(|r| r.space == space);
        let pick = rng.below(in_space().count() as u64) as usize;
        let r = in_space().nth(pick).expect("the space has ranges");
        match rng.below(20) {
            // Anywhere: the unclaimed default.
            0 => match space {
                AddressSpace::Pio => rng.below(PORT_LAST + 1),
                AddressSpace::Mmio => match rng.below(3) {
                    0 => rng.next(),
                    _ => MMIO_WINDOW.0 + rng.below(MMIO_WINDOW.1),
                },
            },
            // Across an edge of the range: split accesses.
            1 => r.base.wrapping_sub(rng.below(size + 1)),
            2 => r.base.wrapping_add(r.len).wrapping_sub(rng.below(size + 1)),
            // Inside, aligned to the access size most of the time.
            _ => {
                let off = rng.below(r.len);
                let off = if rng.below(4) == 0 {
                    off
                } else {
                    off & !(size.next_power_of_two() - 1)
                };
                r.base + off
            }
        }
    }

    fn random_value(&self, rng: &mut Rng, pio: bool, addr: u64) -> u64 {
        match rng.below(8) {
            // A PCI configuration address on bus 0, where the functions are.
            0 if pio && (0xcf8..0xcfc).contains(&addr) => {
                let (dev, func, reg) = (rng.below(4), rng.below(4), rng.below(256) & !3);
                0x8000_0000 | (dev << 11) | (func << 8) | reg
            }
            // A guest-physical address inside RAM (DMA tables, fw_cfg DMA).
            1 => rng.below(RAM_SIZE as u64) & !3,
            // A port: where a BAR or the PM block may move.
            2 => rng.below(PORT_LAST + 1) | 1,
            _ => interesting(rng),
        }
    }

    /// A few accesses repeated [`STORM_REPEATS`] times; the heap must stop
    /// growing by the second half.
    fn storm(&mut self, rng: &mut Rng) {
        let pattern: Vec<Access> = (0..1 + rng.below(3))
            .map(|_| self.random_access(rng))
            .collect();
        self.storm_with(rng, &pattern);
    }

    fn storm_with(&mut self, rng: &mut Rng, pattern: &[Access]) {
        let mut mid = 0;
        for i in 0..STORM_REPEATS {
            if i == STORM_REPEATS / 2 {
                mid = crate::heap::live_bytes();
            }
            for &a in pattern {
                self.access(a);
            }
            if i % 64 == 0 {
                self.clock.advance(rng.below(1_000_000));
                self.service();
            }
            self.take_power_request();
        }
        let grew = crate::heap::live_bytes() - mid;
        assert!(
            grew <= STORM_SECOND_HALF_GROWTH,
            "the heap grew by {grew} bytes over the last {} repeats of {pattern:x?}: a \
             guest-driven allocation without a bound",
            STORM_REPEATS / 2
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use device_model::BusDevice;
    use std::sync::Mutex as StdMutex;

    fn machine(seed: u64) -> (Machine, Rng) {
        let mut rng = Rng(crate::splitmix64(seed) | 1);
        (Machine::new(&mut rng), rng)
    }

    #[test]
    fn every_registered_range_is_reached() {
        let mut seen: BTreeMap<&'static str, u64> = BTreeMap::new();
        let mut names = Vec::new();
        for seed in 0..30 {
            let (mut m, mut rng) = machine(seed);
            names.extend(m.ranges.iter().map(|r| r.name));
            m.run(&mut rng);
            names.extend(m.ranges.iter().map(|r| r.name));
            for (k, v) in m.hits {
                *seen.entry(k).or_default() += v;
            }
        }
        std::println!("accesses per range: {seen:#?}");
        for n in names {
            assert!(
                seen.get(n).is_some_and(|&h| h > 0),
                "'{n}' was never accessed"
            );
        }
        // Ranges that exist only once the guest programs PCI are reached too.
        for n in [
            "PIIX3 IDE",
            "PIIX4 PM",
            "ACPI PM timer",
            "e1000",
            "virtio-blk",
            "virtio-net",
            "vga",
        ] {
            assert!(seen.contains_key(n), "'{n}' never appeared on the bus");
        }
    }

    /// A device that counts accesses and, if `leak`, keeps every byte written.
    #[derive(Default)]
    struct Probe {
        accesses: u64,
        leak: bool,
        kept: Vec<u8>,
    }

    impl BusDevice for Probe {
        fn read(&mut self, _: u64, _: u64, _: &mut [u8]) {
            self.accesses += 1;
        }
        fn write(&mut self, _: u64, _: u64, data: &[u8]) {
            self.accesses += 1;
            if self.leak {
                self.kept.extend_from_slice(data);
            }
        }
    }

    fn with_probe(m: &mut Machine, leak: bool) -> Arc<StdMutex<Probe>> {
        let probe = Arc::new(StdMutex::new(Probe {
            leak,
            ..Probe::default()
        }));
        let dev = Arc::new(spin::Mutex::new(ProbeHandle(probe.clone())));
        m.pc.bus_mut()
            .register_pio(0x9100, 4, "probe", dev.clone())
            .unwrap();
        m.pc.bus_mut()
            .register_mmio(0xfeb1_0000, 0x100, "probe MMIO", dev)
            .unwrap();
        m.refresh_ranges();
        probe
    }

    struct ProbeHandle(Arc<StdMutex<Probe>>);
    impl BusDevice for ProbeHandle {
        fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
            self.0.lock().unwrap().read(base, offset, data)
        }
        fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
            self.0.lock().unwrap().write(base, offset, data)
        }
    }

    #[test]
    fn a_device_joins_by_being_on_the_bus() {
        let (mut m, mut rng) = machine(7);
        let probe = with_probe(&mut m, false);
        m.run(&mut rng);
        let n = probe.lock().unwrap().accesses;
        assert!(n > 20, "the new device got {n} accesses");
    }

    #[test]
    #[should_panic(expected = "a guest-driven allocation without a bound")]
    fn a_storm_catches_a_queue_without_a_bound() {
        let (mut m, mut rng) = machine(8);
        with_probe(&mut m, true);
        let write = Access::PioWrite {
            port: 0x9100,
            size: 1,
            value: 0xd2,
        };
        m.storm_with(&mut rng, &[write]);
    }
}
