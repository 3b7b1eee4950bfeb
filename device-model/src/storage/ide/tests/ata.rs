//! ATA command set through the ports: IDENTIFY, PIO reads and writes in
//! every addressing mode, multiple mode, malformed commands.

use super::*;
use crate::storage::ide::regs::{error, status};

fn words(b: &[u8]) -> Vec<u16> {
    b.chunks(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect()
}

fn string(w: &[u16]) -> alloc::string::String {
    w.iter()
        .flat_map(|v| [(v >> 8) as u8 as char, *v as u8 as char])
        .collect::<alloc::string::String>()
        .trim_end()
        .into()
}

fn identify(rig: &mut Rig) -> Vec<u16> {
    rig.outb(P + 6, 0xA0);
    rig.outb(P + 7, 0xEC);
    assert!(rig.irq(14), "IDENTIFY raises INTRQ when its block is ready");
    assert_eq!(rig.inb(P + 7), status::DRDY | status::DSC | status::DRQ);
    assert!(!rig.irq(14), "the status read clears it");
    let b = rig.pio_read(P, 512);
    assert_eq!(rig.inb(P_CTL), status::DRDY | status::DSC);
    assert!(
        !rig.irq(14),
        "no interrupt after the last block of PIO data-in"
    );
    assert_eq!(b.iter().fold(0u8, |s, &x| s.wrapping_add(x)), 0, "checksum");
    words(&b)
}

#[test]
fn identify_device_contents_and_checksum() {
    let mut rig = Rig::new();
    let w = identify(&mut rig);
    assert_eq!(w[0], 0x0040);
    assert_eq!((w[1], w[3], w[6]), (4, 16, 63), "default CHS");
    assert_eq!((w[54], w[55], w[56]), (4, 16, 63));
    assert_eq!(u32::from(w[57]) | u32::from(w[58]) << 16, 4 * 16 * 63);
    assert_eq!(string(&w[10..20]), "shared.img");
    assert_eq!(string(&w[23..27]), "KEEL0.1");
    assert_eq!(string(&w[27..47]), "Keel ATA disk");
    assert_eq!(w[47], 0x8010, "up to 16 sectors per multiple block");
    assert_eq!(w[59], 0x0110, "multiple mode 16 is set");
    assert_ne!(w[49] & 0x0300, 0, "LBA and DMA supported");
    assert_eq!(u32::from(w[60]) | u32::from(w[61]) << 16, 4096);
    assert_eq!(w[63] & 0x07, 0x07, "MWDMA 0-2 supported");
    assert_eq!(w[63] & 0x0400, 0x0400, "MWDMA 2 selected");
    assert_eq!(w[64], 0x0003);
    assert_eq!(
        w[83] & 0x3400,
        0x3400,
        "48-bit, FLUSH CACHE, FLUSH CACHE EXT"
    );
    assert_eq!(w[86] & 0x3400, 0x3400);
    assert_eq!(w[88] & 0x3F, 0x3F, "UDMA 0-5 supported");
    let lba48 = (0..4).fold(0u64, |a, i| a | u64::from(w[100 + i]) << (16 * i));
    assert_eq!(lba48, 4096);
    assert_eq!(w[255] & 0xFF, 0xA5);
}

#[test]
fn lba28_pio_read_interrupts_per_block() {
    let mut rig = Rig::new();
    rig.lba28(100, 2);
    rig.outb(P + 7, 0x20);
    for lba in 100..102 {
        assert!(rig.irq(14), "INTRQ for the block of LBA {lba}");
        assert_eq!(rig.inb(P + 7), 0x58);
        // Word accesses, as a plain IN AX, DX loop would do.
        let b: Vec<u8> = (0..256).flat_map(|_| rig.inw(P).to_le_bytes()).collect();
        assert_eq!(b, expected(lba, 1));
    }
    assert!(!rig.irq(14));
    assert_eq!(rig.inb(P + 7), 0x50);
    assert_eq!(
        rig.inw(P),
        0xFFFF,
        "no block open: the Data register floats"
    );
}

#[test]
fn lba48_pio_write_then_read_back() {
    let mut rig = Rig::new();
    let data: Vec<u8> = (0..1024).map(|i| (i * 13) as u8).collect();
    rig.lba48(0xF00, 2);
    rig.outb(P + 7, 0x34);
    assert!(
        !rig.irq(14),
        "PIO data-out: no interrupt before the first block"
    );
    assert_eq!(rig.inb(P_CTL), 0x58);
    assert_eq!(rig.ide.write_data(P, &data[..512]), 512);
    assert!(rig.irq(14), "interrupt after an intermediate block");
    assert_eq!(rig.inb(P + 7), 0x58);
    // The second block with 32-bit accesses.
    for c in data[512..].chunks(4) {
        rig.outl(P, u32::from_le_bytes([c[0], c[1], c[2], c[3]]));
    }
    assert!(rig.irq(14), "interrupt after the last block");
    assert_eq!(rig.inb(P + 7), 0x50);
    assert_eq!(&rig.disk.bytes()[0xF00 * 512..0xF02 * 512], &data[..]);

    rig.lba48(0xF00, 2);
    rig.outb(P + 7, 0x24);
    let mut got = rig.pio_read(P, 512);
    got.extend(rig.pio_read(P, 512));
    assert_eq!(got, data);
}

#[test]
fn lba48_registers_read_back_with_hob() {
    let mut rig = Rig::new();
    rig.lba48(0x0C0B_0D00_EF12, 0x0102);
    assert_eq!(rig.inb(P + 3), 0x12);
    rig.outb(P_CTL, 0x80);
    assert_eq!(rig.inb(P + 2), 0x01);
    assert_eq!(rig.inb(P + 3), 0x0D);
    assert_eq!(rig.inb(P + 4), 0x0B);
    rig.outb(P + 1, 0);
    assert_eq!(rig.inb(P + 3), 0x12, "a command block write clears HOB");
}

#[test]
fn chs_read_uses_the_current_translation() {
    let mut rig = Rig::new();
    // Cylinder 1, head 2, sector 3 of 16 heads x 63 sectors.
    rig.outb(P + 2, 1);
    rig.outb(P + 3, 3);
    rig.outb(P + 4, 1);
    rig.outb(P + 5, 0);
    rig.outb(P + 6, 0xA2);
    rig.outb(P + 7, 0x20);
    assert_eq!(rig.inb(P + 7), 0x58);
    assert_eq!(rig.pio_read(P, 512), expected((16 + 2) * 63 + 2, 1));

    // INITIALIZE DEVICE PARAMETERS: 4 heads, 32 sectors per track.
    rig.outb(P + 2, 32);
    rig.outb(P + 6, 0xA3);
    rig.outb(P + 7, 0x91);
    assert_eq!(rig.inb(P + 7), 0x50);
    let w = identify(&mut rig);
    assert_eq!((w[54], w[55], w[56]), (32, 4, 32));
    rig.outb(P + 2, 1);
    rig.outb(P + 3, 1);
    rig.outb(P + 4, 2);
    rig.outb(P + 6, 0xA1);
    rig.outb(P + 7, 0x20);
    assert_eq!(rig.pio_read(P, 512), expected((2 * 4 + 1) * 32, 1));

    // Sector 0 does not exist in CHS.
    rig.outb(P + 3, 0);
    rig.outb(P + 7, 0x20);
    assert_eq!(rig.inb(P + 7), 0x51);
    assert_eq!(rig.inb(P + 1), error::IDNF);
}

#[test]
fn multiple_mode_blocks_and_settings() {
    let mut rig = Rig::new();
    rig.outb(P + 2, 4);
    rig.outb(P + 7, 0xC6);
    assert_eq!(rig.inb(P + 7), 0x50);
    assert_eq!(identify(&mut rig)[59], 0x0104);
    rig.lba28(20, 6);
    rig.outb(P + 7, 0xC4);
    assert!(rig.irq(14));
    rig.inb(P + 7);
    assert_eq!(
        rig.pio_read(P, 2048),
        expected(20, 4),
        "one call, one 4-sector block"
    );
    assert!(rig.irq(14), "interrupt for the second block");
    rig.inb(P + 7);
    let mut rest = vec![0; 2048];
    assert_eq!(
        rig.ide.read_data(P, &mut rest),
        1024,
        "the last block has 2 sectors"
    );
    assert_eq!(&rest[..1024], &expected(24, 2)[..]);
    assert_eq!(rig.inb(P + 7), 0x50);

    // WRITE MULTIPLE EXT of 5 sectors in blocks of 4 and 1.
    rig.lba48(200, 5);
    rig.outb(P + 7, 0x39);
    assert_eq!(rig.ide.write_data(P, &[0x11; 4096]), 2048);
    assert!(rig.irq(14));
    rig.inb(P + 7);
    assert_eq!(rig.ide.write_data(P, &[0x22; 4096]), 512);
    assert_eq!(rig.inb(P + 7), 0x50);
    let disk = rig.disk.bytes();
    assert!(disk[200 * 512..204 * 512].iter().all(|&b| b == 0x11));
    assert!(disk[204 * 512..205 * 512].iter().all(|&b| b == 0x22));

    for bad in [3u8, 32, 0xFF] {
        rig.outb(P + 2, bad);
        rig.outb(P + 7, 0xC6);
        assert_eq!(rig.inb(P + 7), 0x51, "SET MULTIPLE MODE {bad}");
        assert_eq!(rig.inb(P + 1), error::ABRT);
    }
    // Count 0 disables multiple mode; READ MULTIPLE then aborts.
    rig.outb(P + 2, 0);
    rig.outb(P + 7, 0xC6);
    assert_eq!(rig.inb(P + 7), 0x50);
    rig.lba28(0, 1);
    rig.outb(P + 7, 0xC4);
    assert!(rig.irq(14));
    assert_eq!(rig.inb(P + 7), 0x51);
    assert_eq!(rig.inb(P + 1), error::ABRT);
}

#[test]
fn out_of_range_lbas_fail_with_idnf_and_an_interrupt() {
    let mut rig = Rig::new();
    // The last sector is fine, one more is not.
    rig.lba28(4095, 1);
    rig.outb(P + 7, 0x20);
    assert_eq!(rig.inb(P + 7), 0x58);
    assert_eq!(rig.pio_read(P, 512), expected(4095, 1));
    for (cmd, count) in [(0x20u8, 2u8), (0x30, 2), (0xC8, 2), (0x40, 2), (0xC4, 2)] {
        rig.lba28(4095, count);
        rig.outb(P + 7, cmd);
        assert!(rig.irq(14), "command {cmd:#x}");
        assert_eq!(rig.inb(P + 7), 0x51, "command {cmd:#x}");
        assert_eq!(rig.inb(P + 1), error::IDNF);
        assert_eq!(rig.inb(P + 3), 0xFF, "the failing LBA is reported");
        assert_eq!(rig.inb(P + 4), 0x0F);
    }
    rig.lba28(4096, 1);
    rig.outb(P + 7, 0x70);
    assert_eq!(rig.inb(P + 7), 0x51, "SEEK past the end");
    assert_eq!(rig.inb(P + 1), error::IDNF);
    // Count 0 means 256 sectors in 28-bit commands, 65536 in 48-bit ones.
    rig.lba28(4000, 0);
    rig.outb(P + 7, 0x20);
    assert_eq!(rig.inb(P + 7), 0x51);
    rig.lba48(1 << 40, 1);
    rig.outb(P + 7, 0x25);
    assert_eq!(rig.inb(P + 7), 0x51);
    assert_eq!(rig.inb(P + 1), error::IDNF);
    rig.outb(P_CTL, 0x80);
    assert_eq!(rig.inb(P + 5), 0x01, "HOB LBA high of the failing LBA");
    rig.outb(P_CTL, 0);
    assert_eq!(rig.inb(P + 5), 0x00);
    rig.lba48(0, 0);
    rig.outb(P + 7, 0x24);
    assert_eq!(rig.inb(P + 7), 0x51, "65536 sectors do not fit in 4096");
}

#[test]
fn unknown_and_wrong_device_commands_abort() {
    let mut rig = Rig::new();
    for cmd in [0x00u8, 0xFF, 0x08, 0xA0, 0xA1, 0xB0, 0x50] {
        rig.outb(P + 7, cmd);
        assert!(rig.irq(14), "{cmd:#x}");
        assert_eq!(rig.inb(P + 7), 0x51, "{cmd:#x}");
        assert_eq!(rig.inb(P + 1), error::ABRT, "{cmd:#x}");
    }
    // A command the device accepts clears the error.
    rig.outb(P + 7, 0xE7);
    assert_eq!(rig.inb(P + 7), 0x50);
    assert_eq!(rig.inb(P + 1), 0);
}

#[test]
fn a_read_only_disk_refuses_writes() {
    let mut rig = Rig::bare();
    let ro = ReadOnly(RamDisk::new("ro.img", disk_image()).unwrap());
    rig.ide.attach(
        ChannelId::Primary,
        DrivePosition::Master,
        IdeDrive::disk(Box::new(ro)),
    );
    for cmd in [0x30u8, 0xCA] {
        rig.lba28(1, 1);
        rig.outb(P + 7, cmd);
        assert_eq!(rig.inb(P + 7), 0x51);
        assert_eq!(rig.inb(P + 1), error::ABRT);
    }
}

#[test]
fn set_features_power_modes_verify_and_flush() {
    let mut rig = Rig::new();
    let feature = |rig: &mut Rig, f: u8, count: u8| {
        rig.outb(P + 1, f);
        rig.outb(P + 2, count);
        rig.outb(P + 7, 0xEF);
        rig.inb(P + 7)
    };
    assert_eq!(feature(&mut rig, 0x03, 0x45), 0x50, "UDMA 5");
    let w = identify(&mut rig);
    assert_eq!(w[88] & 0xFF00, 0x2000);
    assert_eq!(w[63] & 0xFF00, 0);
    assert_eq!(feature(&mut rig, 0x03, 0x0C), 0x50, "PIO 4");
    assert_eq!(feature(&mut rig, 0x03, 0x46), 0x51, "UDMA 6 is not offered");
    assert_eq!(feature(&mut rig, 0x03, 0x23), 0x51);
    assert_eq!(feature(&mut rig, 0x82, 0), 0x50, "write cache off");
    assert_eq!(identify(&mut rig)[85] & 0x20, 0);
    assert_eq!(feature(&mut rig, 0x02, 0), 0x50);
    assert_eq!(identify(&mut rig)[85] & 0x20, 0x20);
    assert_eq!(feature(&mut rig, 0x99, 0), 0x51);

    rig.outb(P + 7, 0xE0);
    assert_eq!(rig.inb(P + 7), 0x50);
    rig.outb(P + 7, 0xE5);
    assert_eq!(rig.inb(P + 7), 0x50);
    assert_eq!(rig.inb(P + 2), 0x00, "standby");
    rig.outb(P + 7, 0xE3);
    rig.outb(P + 7, 0xE5);
    assert_eq!(rig.inb(P + 2), 0xFF, "idle");
    rig.outb(P + 7, 0xE2);
    rig.lba28(0, 1);
    rig.outb(P + 7, 0x20);
    rig.pio_read(P, 512);
    rig.outb(P + 7, 0xE5);
    assert_eq!(rig.inb(P + 2), 0xFF, "a media access wakes the disk");

    rig.lba28(4000, 96);
    rig.outb(P + 7, 0x40);
    assert!(rig.irq(14));
    assert_eq!(rig.inb(P + 7), 0x50, "READ VERIFY moves no data");
    rig.lba48(4000, 97);
    rig.outb(P + 7, 0x42);
    assert_eq!(rig.inb(P + 7), 0x51);
    rig.outb(P + 7, 0xEA);
    assert_eq!(rig.inb(P + 7), 0x50);
}

#[test]
fn a_new_command_abandons_an_open_transfer() {
    let mut rig = Rig::new();
    rig.lba28(0, 4);
    rig.outb(P + 7, 0x20);
    rig.pio_read(P, 100);
    rig.outb(P + 7, 0xEC);
    rig.inb(P + 7);
    let w = words(&rig.pio_read(P, 512));
    assert_eq!(w[0], 0x0040);
    assert_eq!(rig.inb(P + 7), 0x50);
}

/// A backend that counts the sectors read through it.
struct CountingReads {
    disk: Shared,
    sectors: Arc<Mutex<u64>>,
}

impl BlockBackend for CountingReads {
    fn name(&self) -> &str {
        self.disk.name()
    }
    fn capacity(&self) -> u64 {
        self.disk.capacity()
    }
    fn read_only(&self) -> bool {
        false
    }
    fn read_sectors(&mut self, lba: u64, buf: &mut [u8]) -> Result<(), BlockError> {
        *self.sectors.lock() += (buf.len() / 512) as u64;
        self.disk.read_sectors(lba, buf)
    }
    fn write_sectors(&mut self, lba: u64, buf: &[u8]) -> Result<(), BlockError> {
        self.disk.write_sectors(lba, buf)
    }
    fn flush(&mut self) -> Result<(), BlockError> {
        Ok(())
    }
}

/// Issue 11: READ VERIFY of the whole disk reads at most one exit's budget
/// per call (the command write, then each later call of the platform),
/// keeps the device busy without an interrupt meanwhile, and completes
/// with one interrupt after the last sector.
#[test]
fn a_long_read_verify_continues_over_later_calls() {
    use crate::storage::ide::bmdma::DMA_BUDGET;
    let budget = (DMA_BUDGET / 512) as u64;
    let sectors = Arc::new(Mutex::new(0u64));
    let mut rig = Rig::bare();
    rig.ide.attach(
        ChannelId::Primary,
        DrivePosition::Master,
        IdeDrive::disk(Box::new(CountingReads {
            disk: Shared::new("t.img", disk_image()),
            sectors: sectors.clone(),
        })),
    );
    rig.lba48(0, DISK_SECTORS as u16);
    rig.outb(P + 7, 0x42);
    assert!(
        *sectors.lock() <= budget,
        "one exit's budget at the command"
    );
    assert!(rig.ide.work_pending());
    assert!(!rig.irq(14), "no interrupt before the end");
    assert_eq!(rig.inb(P_CTL) & 0x88, 0x80, "BSY, no DRQ");
    let mut calls = 0;
    while rig.ide.work_pending() {
        let before = *sectors.lock();
        assert!(rig.ide.run_pending_work());
        assert!(*sectors.lock() - before <= budget);
        calls += 1;
        assert!(calls <= DISK_SECTORS / budget, "too many calls");
    }
    assert_eq!(*sectors.lock(), DISK_SECTORS);
    assert!(rig.irq(14));
    assert_eq!(rig.inb(P + 7), 0x50);
}

/// `REP INSW`/`OUTSW` served in bulk (BusDevice::string_room and friends):
/// a call moves at most the rest of the open DRQ block, in the order word
/// accesses would, and the device goes on to the next block after it.
#[test]
fn string_io_moves_whole_drq_blocks_in_one_call() {
    let mut rig = Rig::new();
    let dev: &mut dyn BusDevice = &mut rig.ide;
    assert_eq!(
        dev.string_room(u64::from(P), 0, 2, false),
        0,
        "no block open"
    );
    rig.lba28(100, 2);
    rig.outb(P + 7, 0x20);
    for lba in 100..102 {
        assert!(rig.irq(14), "INTRQ for the block of LBA {lba}");
        assert_eq!(rig.inb(P + 7), 0x58);
        let dev: &mut dyn BusDevice = &mut rig.ide;
        assert_eq!(dev.string_room(u64::from(P), 0, 2, false), 512);
        assert_eq!(dev.string_room(u64::from(P), 0, 2, true), 0);
        assert_eq!(
            dev.string_room(u64::from(P + 1), 0, 2, false),
            0,
            "not the Data port"
        );
        let mut b = vec![0u8; 1024];
        // A guest buffer longer than the block: only the block moves.
        assert_eq!(dev.read_string(u64::from(P), 0, 2, &mut b), 512);
        assert_eq!(&b[..512], &expected(lba, 1)[..]);
    }
    assert_eq!(rig.inb(P + 7), 0x50);

    let data: Vec<u8> = (0..1024).map(|i| (i * 7) as u8).collect();
    rig.lba28(200, 2);
    rig.outb(P + 7, 0x30);
    let dev: &mut dyn BusDevice = &mut rig.ide;
    assert_eq!(dev.string_room(u64::from(P), 0, 4, true), 512);
    assert_eq!(dev.write_string(u64::from(P), 0, 4, &data), 512);
    assert_eq!(dev.write_string(u64::from(P), 0, 4, &data[512..]), 512);
    assert_eq!(rig.inb(P + 7), 0x50);
    assert_eq!(&rig.disk.bytes()[200 * 512..202 * 512], &data[..]);
}
