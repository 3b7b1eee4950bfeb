use super::dma::{CTL_ERROR, CTL_READ, CTL_SELECT, CTL_SKIP, CTL_WRITE};
use super::*;
use crate::bus::Bus;
use crate::timer::TimerDevice;
use alloc::sync::Arc;
use alloc::vec;
use guest_memory::GuestMemory;
use spin::Mutex;

const RAM: usize = 0x10000;
const PLATFORM_RAM: usize = 0x10_0000;
const DESC: u64 = 0x1000;
const BUF: u64 = 0x2000;

/// The device on a bus, over RAM large enough for a DMA request longer
/// than one call's budget.
fn platform() -> (Bus, Arc<Mutex<FwCfg>>, GuestMemory) {
    let ram = GuestMemory::new(PLATFORM_RAM);
    let fw = Arc::new(Mutex::new(FwCfg::new(2, 4, ram.clone())));
    let mut bus = Bus::new();
    bus.register_pio(FwCfg::PORT, FwCfg::LEN, "fw_cfg", fw.clone())
        .unwrap();
    (bus, fw, ram)
}

fn read_item(bus: &mut Bus, key: u16, len: usize) -> Vec<u8> {
    bus.pio_write(0x510, 2, u32::from(key));
    (0..len).map(|_| bus.pio_read(0x511, 1) as u8).collect()
}

fn desc(ram: &GuestMemory, at: u64, control: u32, length: u32, address: u64) {
    let mut d = [0u8; 16];
    d[0..4].copy_from_slice(&control.to_be_bytes());
    d[4..8].copy_from_slice(&length.to_be_bytes());
    d[8..16].copy_from_slice(&address.to_be_bytes());
    ram.write(at, &d).unwrap();
}

fn control(ram: &GuestMemory, at: u64) -> u32 {
    u32::from_be(ram.read_obj::<u32>(at).unwrap())
}

fn bytes<const N: usize>(ram: &GuestMemory, at: u64) -> [u8; N] {
    let mut b = [0u8; N];
    ram.read(at, &mut b).unwrap();
    b
}

fn snapshot(ram: &GuestMemory) -> Vec<u8> {
    let mut all = vec![0u8; ram.size() as usize];
    ram.read(0, &mut all).unwrap();
    all
}

fn select(key: u16) -> u32 {
    u32::from(key) << 16 | CTL_SELECT
}

#[test]
fn signature_and_id_through_the_ports() {
    let (mut bus, _, _) = platform();
    assert_eq!(read_item(&mut bus, key::SIGNATURE, 4), b"QEMU");
    assert_eq!(read_item(&mut bus, key::ID, 4), [3, 0, 0, 0]);
}

#[test]
fn cpu_counts_and_legacy_items() {
    let (mut bus, _, _) = platform();
    assert_eq!(read_item(&mut bus, key::NB_CPUS, 2), [2, 0]);
    assert_eq!(read_item(&mut bus, key::MAX_CPUS, 2), [4, 0]);
    assert_eq!(
        read_item(&mut bus, key::RAM_SIZE, 8),
        (PLATFORM_RAM as u64).to_le_bytes()
    );
    assert_eq!(read_item(&mut bus, key::NUMA, 8), [0; 8]);
    assert_eq!(read_item(&mut bus, key::IRQ0_OVERRIDE, 4), [1, 0, 0, 0]);
    assert_eq!(read_item(&mut bus, key::E820_TABLE, 4), [0; 4]);
}

#[test]
fn reads_past_the_end_and_of_missing_items_return_zero() {
    let (mut bus, _, _) = platform();
    assert_eq!(read_item(&mut bus, key::SIGNATURE, 7), b"QEMU\0\0\0");
    assert_eq!(read_item(&mut bus, 0x1234, 3), [0, 0, 0]);
    // Re-selecting starts over.
    assert_eq!(read_item(&mut bus, key::SIGNATURE, 2), b"QE");
    assert_eq!(read_item(&mut bus, key::SIGNATURE, 2), b"QE");
    // The write-channel bit names the same item.
    assert_eq!(
        read_item(&mut bus, key::SIGNATURE | key::WRITE_CHANNEL, 4),
        b"QEMU"
    );
}

#[test]
fn only_a_word_write_selects() {
    let (mut bus, _, _) = platform();
    read_item(&mut bus, key::ID, 0);
    bus.pio_write(0x510, 1, 0);
    bus.pio_write(0x511, 1, 0);
    assert_eq!(bus.pio_read(0x511, 1), 3, "still the ID item");
}

#[test]
fn word_reads_at_the_data_port_stream_two_bytes() {
    let (mut bus, _, _) = platform();
    bus.pio_write(0x510, 2, 0);
    assert_eq!(
        bus.pio_read(0x510, 2),
        u32::from(u16::from_le_bytes(*b"QE"))
    );
    assert_eq!(bus.pio_read(0x511, 1), u32::from(b'M'));
}

#[test]
fn dma_signature_reads() {
    let (mut bus, _, _) = platform();
    assert_eq!(bus.pio_read(0x514, 4), 0x5145_4D55);
    assert_eq!(bus.pio_read(0x518, 4), 0x2043_4647);
}

#[test]
fn file_directory_layout() {
    let (mut bus, fw, _) = platform();
    let k1 = fw.lock().add_file("etc/one", vec![1; 10]).unwrap();
    let k2 = fw.lock().add_file("bootorder-x", vec![2; 300]).unwrap();
    assert_eq!((k1, k2), (0x20, 0x21));
    let dir = read_item(&mut bus, key::FILE_DIR, 4 + 2 * 64 + 4);
    assert_eq!(dir[0..4], 2u32.to_be_bytes());
    let e = &dir[4..68];
    assert_eq!(e[0..4], 10u32.to_be_bytes());
    assert_eq!(e[4..6], 0x20u16.to_be_bytes());
    assert_eq!(e[6..8], [0, 0]);
    assert_eq!(&e[8..15], b"etc/one");
    assert!(e[15..64].iter().all(|&b| b == 0));
    let e = &dir[68..132];
    assert_eq!(e[0..4], 300u32.to_be_bytes());
    assert_eq!(e[4..6], 0x21u16.to_be_bytes());
    assert_eq!(&e[8..19], b"bootorder-x");
    assert_eq!(dir[132..], [0; 4], "past the end");
    assert_eq!(read_item(&mut bus, 0x21, 2), [2, 2]);
}

#[test]
fn set_file_data_keeps_the_key_and_updates_the_directory() {
    let (mut bus, fw, _) = platform();
    fw.lock().add_acpi_slots().unwrap();
    let key = fw.lock().file_key(file::ACPI_TABLES).unwrap();
    fw.lock()
        .set_file_data(file::ACPI_TABLES, vec![7; 40])
        .unwrap();
    assert_eq!(fw.lock().file_key(file::ACPI_TABLES), Some(key));
    let dir = read_item(&mut bus, key::FILE_DIR, 4 + 3 * 64);
    assert_eq!(dir[0..4], 3u32.to_be_bytes());
    let e = &dir[4 + 64..4 + 128];
    assert_eq!(
        &e[8..8 + file::ACPI_TABLES.len()],
        file::ACPI_TABLES.as_bytes()
    );
    assert_eq!(e[0..4], 40u32.to_be_bytes());
    assert_eq!(
        fw.lock().set_file_data("nope", vec![]),
        Err(FwCfgError::NoSuchFile {
            name: "nope".into()
        })
    );
}

#[test]
fn bad_file_names_and_duplicates_are_errors() {
    let mut fw = FwCfg::new(1, 1, GuestMemory::new(0));
    assert!(matches!(
        fw.add_file("", vec![]),
        Err(FwCfgError::BadName { .. })
    ));
    assert!(matches!(
        fw.add_file("a\0b", vec![]),
        Err(FwCfgError::BadName { .. })
    ));
    let long = "x".repeat(56);
    assert!(matches!(
        fw.add_file(&long, vec![]),
        Err(FwCfgError::BadName { .. })
    ));
    fw.add_file(&long[..55], vec![]).unwrap();
    fw.add_file("a", vec![]).unwrap();
    assert_eq!(
        fw.add_file("a", vec![]),
        Err(FwCfgError::Duplicate { name: "a".into() })
    );
}

#[test]
fn bootorder_is_newline_separated_and_nul_terminated() {
    let mut fw = FwCfg::new(1, 1, GuestMemory::new(0));
    fw.add_bootorder(&[
        "/pci@i0cf8/ide@1,1/drive@0/disk@0",
        "/rom@genroms/linuxboot.bin",
    ])
    .unwrap();
    assert_eq!(
        fw.file(file::BOOTORDER).unwrap(),
        b"/pci@i0cf8/ide@1,1/drive@0/disk@0\n/rom@genroms/linuxboot.bin\0"
    );
}

#[test]
fn dma_select_and_read() {
    let ram = GuestMemory::new(RAM);
    let mut fw = FwCfg::new(1, 1, ram.clone());
    let key = fw.add_file("etc/data", (0..100u8).collect()).unwrap();
    ram.fill(0, RAM, 0xAA).unwrap();
    desc(&ram, DESC, select(key) | CTL_READ, 10, BUF);
    fw.dma(DESC);
    assert_eq!(control(&ram, DESC), 0);
    let mut got = [0u8; 11];
    ram.read(BUF, &mut got).unwrap();
    assert_eq!(got[..10], (0..10).collect::<Vec<u8>>()[..]);
    assert_eq!(got[10], 0xAA, "nothing past the buffer");
    // A READ without SELECT continues where the last one stopped.
    desc(&ram, DESC, CTL_READ, 2, BUF);
    fw.dma(DESC);
    assert_eq!(bytes::<2>(&ram, BUF), [10, 11]);
}

#[test]
fn dma_skip_then_read_and_zero_fill_past_the_end() {
    let ram = GuestMemory::new(RAM);
    let mut fw = FwCfg::new(1, 1, ram.clone());
    let key = fw.add_file("etc/data", (0..100u8).collect()).unwrap();
    ram.fill(0, RAM, 0xAA).unwrap();
    desc(&ram, DESC, select(key) | CTL_SKIP, 95, 0);
    fw.dma(DESC);
    assert_eq!(control(&ram, DESC), 0);
    desc(&ram, DESC, CTL_READ, 1000, BUF);
    fw.dma(DESC);
    assert_eq!(control(&ram, DESC), 0);
    let mut got = vec![0u8; 1001];
    ram.read(BUF, &mut got).unwrap();
    assert_eq!(got[..5], [95, 96, 97, 98, 99]);
    assert!(got[5..1000].iter().all(|&b| b == 0));
    assert_eq!(got[1000], 0xAA);
    // Skipping past the end stops at the end.
    desc(&ram, DESC, select(key) | CTL_SKIP, 5000, 0);
    fw.dma(DESC);
    desc(&ram, DESC, CTL_READ, 1, BUF);
    fw.dma(DESC);
    assert_eq!(bytes::<1>(&ram, BUF), [0]);
}

#[test]
fn dma_select_alone_sets_the_data_port_item() {
    let ram = GuestMemory::new(RAM);
    let mut fw = FwCfg::new(1, 1, ram.clone());
    desc(&ram, DESC, select(key::SIGNATURE), 0, 0);
    fw.dma(DESC);
    let mut b = [0u8; 4];
    fw.read(0x510, 1, &mut b[..1]);
    fw.read(0x510, 1, &mut b[1..2]);
    assert_eq!(&b[..2], b"QE");
}

#[test]
fn dma_write_needs_a_writable_item_and_must_fit() {
    let ram = GuestMemory::new(RAM);
    let mut fw = FwCfg::new(1, 1, ram.clone());
    let ro = fw.add_file("etc/ro", vec![0; 8]).unwrap();
    let rw = fw.add_writable_file("etc/rw", vec![0; 8]).unwrap();
    ram.write(BUF, &[1, 2, 3, 4, 5, 6, 7, 8, 9]).unwrap();
    desc(&ram, DESC, select(ro) | CTL_WRITE, 4, BUF);
    fw.dma(DESC);
    assert_eq!(control(&ram, DESC), CTL_ERROR);
    assert_eq!(fw.file("etc/ro").unwrap(), [0; 8]);
    desc(&ram, DESC, select(rw) | CTL_WRITE, 4, BUF);
    fw.dma(DESC);
    assert_eq!(control(&ram, DESC), 0);
    assert_eq!(fw.file("etc/rw").unwrap(), [1, 2, 3, 4, 0, 0, 0, 0]);
    // Continues at offset 4; 5 more bytes do not fit.
    desc(&ram, DESC, CTL_WRITE, 5, BUF);
    fw.dma(DESC);
    assert_eq!(control(&ram, DESC), CTL_ERROR);
    assert_eq!(fw.file("etc/rw").unwrap(), [1, 2, 3, 4, 0, 0, 0, 0]);
    // Nothing selected that exists.
    desc(&ram, DESC, select(0x3000) | CTL_WRITE, 1, BUF);
    fw.dma(DESC);
    assert_eq!(control(&ram, DESC), CTL_ERROR);
}

#[test]
fn dma_buffer_outside_ram_fails_without_touching_anything() {
    let ram = GuestMemory::new(RAM);
    let mut fw = FwCfg::new(1, 1, ram.clone());
    let key = fw.add_writable_file("etc/rw", vec![9; 64]).unwrap();
    ram.fill(0, RAM, 0x55).unwrap();
    for (ctl, addr, len) in [
        (CTL_READ, RAM as u64 - 4, 8u32),
        (CTL_READ, u64::MAX - 2, 8),
        (CTL_READ, 0x1_0000_0000, 1),
        (CTL_WRITE, RAM as u64 - 4, 8),
        (CTL_READ, BUF, u32::MAX),
    ] {
        desc(&ram, DESC, select(key) | ctl, len, addr);
        let before = snapshot(&ram);
        fw.dma(DESC);
        assert_eq!(control(&ram, DESC), CTL_ERROR, "{ctl:#x} at {addr:#x}");
        let after = snapshot(&ram);
        let changed: Vec<usize> = (0..RAM).filter(|&i| before[i] != after[i]).collect();
        assert!(
            changed
                .iter()
                .all(|&i| (DESC as usize..DESC as usize + 4).contains(&i)),
            "only the control field changes: {changed:?}"
        );
    }
    assert_eq!(fw.file("etc/rw").unwrap(), [9; 64]);
    // The failed transfers did not move the position.
    desc(&ram, DESC, CTL_READ, 2, BUF);
    fw.dma(DESC);
    assert_eq!(bytes::<2>(&ram, BUF), [9, 9]);
}

#[test]
fn dma_descriptor_outside_ram_touches_nothing() {
    let ram = GuestMemory::new(RAM);
    let mut fw = FwCfg::new(1, 1, ram.clone());
    ram.fill(0, RAM, 0x55).unwrap();
    for at in [RAM as u64, RAM as u64 + 0x1000, u64::MAX - 3, u64::MAX] {
        fw.dma(at);
    }
    assert!(snapshot(&ram).iter().all(|&b| b == 0x55));
    // A descriptor straddling the end: its control field is in RAM and says ERROR.
    let at = RAM as u64 - 8;
    fw.dma(at);
    assert_eq!(control(&ram, at), CTL_ERROR);
    assert_eq!(bytes::<4>(&ram, at + 4), [0x55; 4]);
}

/// The OUT to 0x518 runs the request inside the port write: the data and
/// the control field are there before the guest's next instruction.
#[test]
fn dma_through_the_ports_runs_in_the_write() {
    let (mut bus, fw, ram) = platform();
    let key = fw.lock().add_file("etc/data", vec![0x42; 4]).unwrap();
    desc(&ram, DESC, select(key) | CTL_READ, 4, BUF);
    // The guest writes cpu_to_be32(high), then cpu_to_be32(low).
    bus.pio_write(0x514, 4, 0u32.swap_bytes());
    assert_eq!(control(&ram, DESC), select(key) | CTL_READ);
    bus.pio_write(0x518, 4, (DESC as u32).swap_bytes());
    assert_eq!(control(&ram, DESC), 0);
    assert_eq!(bytes::<4>(&ram, BUF), [0x42; 4]);
    assert!(!fw.lock().dma_pending());
    assert!(
        !fw.lock().run_pending_dma(),
        "nothing left for the service hook"
    );
    // A high dword is part of the address: out of RAM, nothing happens.
    desc(&ram, DESC, select(key) | CTL_READ, 4, BUF);
    bus.pio_write(0x514, 4, 1u32.swap_bytes());
    bus.pio_write(0x518, 4, (DESC as u32).swap_bytes());
    assert_eq!(control(&ram, DESC), select(key) | CTL_READ);
}

#[test]
fn reset_clears_selection_and_dma_in_progress() {
    let (mut bus, fw, ram) = platform();
    let long = 4 * super::dma::DMA_BUDGET;
    let key = fw
        .lock()
        .add_file("etc/big", vec![1; long as usize])
        .unwrap();
    desc(&ram, DESC, select(key) | CTL_READ, long, BUF);
    bus.pio_write(0x518, 4, (DESC as u32).swap_bytes());
    assert!(fw.lock().dma_pending(), "longer than one write's budget");
    bus.pio_write(0x510, 2, u32::from(key::ID));
    fw.lock().reset();
    assert!(!fw.lock().dma_pending());
    assert_eq!(fw.lock().next_deadline_ns(), None);
    assert_eq!(bus.pio_read(0x511, 1), u32::from(b'Q'));
}

fn e820(ram: u64) -> Vec<u8> {
    e820::build(&RamLayout::qemu_pc(ram))
}

fn entry(addr: u64, len: u64) -> [u8; 20] {
    E820Entry {
        addr,
        len,
        kind: E820Type::Ram,
    }
    .to_bytes()
}

#[test]
fn e820_for_64_mib() {
    let e = e820(64 << 20);
    assert_eq!(e, entry(0, 0x400_0000));
    assert_eq!(
        e,
        [0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 4, 0, 0, 0, 0, 1, 0, 0, 0]
    );
}

#[test]
fn e820_for_3_5_gib_splits_at_3_gib() {
    let l = RamLayout::qemu_pc(0xE000_0000);
    assert_eq!(
        l,
        RamLayout {
            below_4g: 0xC000_0000,
            above_4g: 0x2000_0000
        }
    );
    let e = e820::build(&l);
    assert_eq!(e.len(), 40);
    assert_eq!(e[..20], entry(0, 0xC000_0000));
    assert_eq!(e[20..], entry(0x1_0000_0000, 0x2000_0000));
    // Just under the threshold everything stays below 4 GiB.
    assert_eq!(e820(0xDFF0_0000), entry(0, 0xDFF0_0000));
}

#[test]
fn e820_for_6_gib() {
    let e = e820(6 << 30);
    assert_eq!(e[..20], entry(0, 0xC000_0000));
    assert_eq!(e[20..], entry(0x1_0000_0000, 0xC000_0000));
    assert_eq!(RamLayout::qemu_pc(6 << 30).total(), 6 << 30);
}

#[test]
fn e820_file_is_readable_by_the_guest() {
    let (mut bus, fw, _) = platform();
    let key = fw.lock().add_e820(&RamLayout::qemu_pc(64 << 20)).unwrap();
    assert_eq!(read_item(&mut bus, key, 20), entry(0, 64 << 20));
}

#[test]
fn static_files_read_like_owned_ones_and_refuse_dma_writes() {
    static KERNEL: [u8; 6] = *b"bzImg!";
    let (mut bus, fw, ram) = platform();
    let key = fw
        .lock()
        .add_static_file("opt/keel/kernel", &KERNEL)
        .unwrap();
    assert_eq!(read_item(&mut bus, key, 8), b"bzImg!\0\0");
    assert_eq!(fw.lock().file("opt/keel/kernel"), Some(&KERNEL[..]));
    // A DMA write to it fails: static files are read-only.
    ram.write(0x1100, b"XX").unwrap();
    desc(&ram, 0x1000, select(key) | CTL_WRITE, 2, 0x1100);
    fw.lock().dma(0x1000);
    assert_ne!(control(&ram, 0x1000) & CTL_ERROR, 0);
    assert_eq!(fw.lock().file("opt/keel/kernel"), Some(&KERNEL[..]));
}

/// Issue 11, finding 13: a DMA read whose length the guest chose moves at
/// most [`dma::DMA_BUDGET`] bytes per call; the control field stays set
/// until the last piece, and the data arrive in order.
#[test]
fn a_dma_read_longer_than_the_budget_goes_on_over_later_calls() {
    use super::dma::DMA_BUDGET;
    let len = 3 * 128 * 1024 + 100;
    let ram = GuestMemory::new(BUF as usize + len + 16);
    ram.fill(0, ram.size() as usize, 0xAA).unwrap();
    let mut fw = FwCfg::new(1, 1, ram.clone());
    let data: Vec<u8> = (0..len - 1000).map(|i| (i % 251) as u8).collect();
    let key = fw.add_file("etc/big", data.clone()).unwrap();
    let buf = BUF;
    desc(&ram, DESC, select(key) | CTL_READ, len as u32, buf);
    fw.dma(DESC);
    let mut calls = 1;
    while fw.dma_pending() {
        assert_ne!(control(&ram, DESC), 0, "still in progress");
        let mut probe = [0u8; 1];
        let next = buf + (calls * DMA_BUDGET) as u64;
        ram.read(next, &mut probe).unwrap();
        assert_eq!(probe[0], 0xAA, "nothing past this call's budget yet");
        fw.run_pending_dma();
        calls += 1;
    }
    assert_eq!(calls, 4);
    assert_eq!(control(&ram, DESC), 0);
    let mut got = vec![0u8; len];
    ram.read(buf, &mut got).unwrap();
    assert!(got[..data.len()] == data[..]);
    assert!(
        got[data.len()..].iter().all(|&b| b == 0),
        "zeros past the item"
    );
}
