//! The ATAPI CD-ROM on the secondary channel: IDENTIFY PACKET DEVICE,
//! READ(10)/(12) in PIO (with byte count limits) and DMA, sense data,
//! media change, and the layouts of the MMC replies.

use super::*;
use crate::storage::ide::regs::{error, reason};

/// Sends `cdb` to the secondary master with byte count limit `limit`.
fn packet(rig: &mut Rig, cdb: &[u8], limit: u16, dma: bool) {
    let mut p = [0u8; 12];
    p[..cdb.len()].copy_from_slice(cdb);
    rig.outb(S + 6, 0xA0);
    rig.outb(S + 1, u8::from(dma));
    rig.outb(S + 4, limit as u8);
    rig.outb(S + 5, (limit >> 8) as u8);
    rig.outb(S + 7, 0xA0);
    assert!(!rig.irq(15), "no interrupt before the command packet");
    assert_eq!(rig.inb(S_CTL), 0x48, "DRQ for the packet");
    assert_eq!(rig.inb(S + 2), reason::COD);
    assert_eq!(rig.ide.write_data(S, &p), 12);
}

/// Reads every DRQ block of a PIO data-in command; returns the data and
/// the size of each block.
fn data_in(rig: &mut Rig) -> (Vec<u8>, Vec<usize>) {
    let (mut data, mut blocks) = (Vec::new(), Vec::new());
    while rig.inb(S_CTL) & 0x08 != 0 {
        assert!(rig.irq(15), "an interrupt announces each block");
        assert_eq!(rig.inb(S + 2), reason::IO);
        rig.inb(S + 7);
        let n = usize::from(rig.inb(S + 4)) | usize::from(rig.inb(S + 5)) << 8;
        let mut b = vec![0; n];
        assert_eq!(rig.ide.read_data(S, &mut b), n);
        data.extend(b);
        blocks.push(n);
    }
    (data, blocks)
}

/// Expects a successful completion.
fn done(rig: &mut Rig) {
    assert!(rig.irq(15), "completion interrupt");
    assert_eq!(rig.inb(S + 2), reason::IO | reason::COD);
    assert_eq!(rig.inb(S + 7), 0x40);
}

/// Expects CHECK CONDITION with `key` and returns the sense bytes.
fn check(rig: &mut Rig, key: u8) -> [u8; 3] {
    assert!(rig.irq(15));
    assert_eq!(rig.inb(S + 2), reason::IO | reason::COD);
    assert_eq!(rig.inb(S + 7), 0x41);
    assert_eq!(rig.inb(S + 1) >> 4, key);
    packet(rig, &[0x03, 0, 0, 0, 18], 0xFFFE, false);
    let (s, _) = data_in(rig);
    done(rig);
    [s[2], s[12], s[13]]
}

fn cmd(rig: &mut Rig, cdb: &[u8]) -> Vec<u8> {
    packet(rig, cdb, 0xFFFE, false);
    let (d, _) = data_in(rig);
    done(rig);
    d
}

#[test]
fn identify_packet_device() {
    let mut rig = Rig::new();
    rig.outb(S + 6, 0xA0);
    rig.outb(S + 7, 0xA1);
    assert!(rig.irq(15));
    rig.inb(S + 7);
    let b = rig.pio_read(S, 512);
    assert_eq!(u16::from_le_bytes([b[0], b[1]]), 0x85C0);
    assert_eq!(b[510], 0xA5);
    assert_eq!(b.iter().fold(0u8, |s, &x| s.wrapping_add(x)), 0);
    assert_eq!(&b[54..62], b"eKleA AT", "model, byte-swapped");
    assert_eq!(rig.inb(S + 7), 0x40);
}

#[test]
fn read10_pio_blocks_follow_the_byte_count_limit() {
    let mut rig = Rig::new();
    packet(&mut rig, &[0x28, 0, 0, 0, 0, 2, 0, 0, 3], 0x1000, false);
    let (d, blocks) = data_in(&mut rig);
    assert_eq!(blocks, [4096, 2048]);
    assert_eq!(d, cd_expected(2, 3));
    done(&mut rig);

    // A limit below a block: even-sized pieces.
    packet(&mut rig, &[0x28, 0, 0, 0, 0, 5, 0, 0, 1], 1001, false);
    let (d, blocks) = data_in(&mut rig);
    assert_eq!(blocks, [1000, 1000, 48]);
    assert_eq!(d, cd_expected(5, 1));
    done(&mut rig);

    // READ(12) of the last block; zero blocks moves nothing.
    assert_eq!(
        cmd(&mut rig, &[0xA8, 0, 0, 0, 0, 63, 0, 0, 0, 1]),
        cd_expected(63, 1)
    );
    assert!(cmd(&mut rig, &[0x28, 0, 0, 0, 0, 63, 0, 0, 0]).is_empty());
}

#[test]
fn read10_dma() {
    let mut rig = Rig::new();
    rig.prds(0x1000, &[(0x8000, 2048, false), (0x4000, 4096, true)]);
    rig.bm_start(8, 0x1000, true);
    // The packet's last bytes start the transfer, which moves at once.
    packet(&mut rig, &[0x28, 0, 0, 0, 0, 10, 0, 0, 3], 0, true);
    assert!(!rig.ide.dma_pending());
    let want = cd_expected(10, 3);
    assert_eq!(&rig.ram()[0x8000..0x8800], &want[..2048]);
    assert_eq!(&rig.ram()[0x4000..0x5000], &want[2048..]);
    assert_eq!(rig.inb(BM + 0x0A) & 0x07, 0x04);
    done(&mut rig);

    // A table outside RAM: CHECK CONDITION, ABORTED COMMAND, bus master error.
    rig.outb(BM + 0x0A, 0x06);
    rig.bm_start(8, RAM as u32, true);
    packet(&mut rig, &[0x28, 0, 0, 0, 0, 10, 0, 0, 1], 0, true);
    rig.run_dma();
    assert_eq!(rig.inb(BM + 0x0A) & 0x07, 0x06);
    assert_eq!(check(&mut rig, 0x0B), [0x0B, 0, 0]);
}

#[test]
fn request_sense_reports_the_last_error_once() {
    let mut rig = Rig::new();
    packet(&mut rig, &[0x28, 0, 0, 0, 0, 63, 0, 0, 2], 0xFFFE, false);
    assert_eq!(check(&mut rig, 5), [5, 0x21, 0], "LBA out of range");
    assert_eq!(&cmd(&mut rig, &[0x03, 0, 0, 0, 18])[..3], &[0x70, 0, 0]);
    // Unsupported command: ILLEGAL REQUEST, INVALID COMMAND OPERATION CODE, ABRT.
    packet(&mut rig, &[0xFF], 0xFFFE, false);
    assert!(rig.irq(15));
    assert_eq!(rig.inb(S + 1), 0x50 | error::ABRT);
    assert_eq!(check(&mut rig, 5), [5, 0x20, 0]);
    // A command that works clears the sense.
    packet(
        &mut rig,
        &[0x5A, 0, 0x05, 0, 0, 0, 0, 0, 0xFF],
        0xFFFE,
        false,
    );
    assert_eq!(
        check(&mut rig, 5),
        [5, 0x24, 0],
        "mode page 05h is not offered"
    );
    packet(&mut rig, &[0x00], 0xFFFE, false);
    done(&mut rig);
    assert_eq!(cmd(&mut rig, &[0x03, 0, 0, 0, 18])[2], 0);
    // The allocation length truncates.
    assert_eq!(cmd(&mut rig, &[0x03, 0, 0, 0, 8]).len(), 8);
}

#[test]
fn read_toc_layouts() {
    let mut rig = Rig::new();
    let lba = cmd(&mut rig, &[0x43, 0, 0, 0, 0, 0, 0, 0, 0xFF]);
    assert_eq!(
        lba,
        [0, 0x12, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0, 0, 0x14, 0xAA, 0, 0, 0, 0, 64]
    );
    let msf = cmd(&mut rig, &[0x43, 2, 0, 0, 0, 0, 0, 0, 0xFF]);
    assert_eq!(&msf[8..12], &[0, 0, 2, 0], "track 1 at 00:02:00");
    assert_eq!(&msf[16..20], &[0, 0, 2, 64], "lead-out at 64 + 150 frames");
    let out = cmd(&mut rig, &[0x43, 0, 0, 0, 0, 0, 0xAA, 0, 0xFF]);
    assert_eq!(out, [0, 0x0A, 1, 1, 0, 0x14, 0xAA, 0, 0, 0, 0, 64]);
    let session = cmd(&mut rig, &[0x43, 0, 1, 0, 0, 0, 0, 0, 0xFF]);
    assert_eq!(session, [0, 0x0A, 1, 1, 0, 0x14, 1, 0, 0, 0, 0, 0]);
    assert_eq!(cmd(&mut rig, &[0x43, 0, 0, 0, 0, 0, 0, 0, 4]).len(), 4);
    packet(&mut rig, &[0x43, 0, 0, 0, 0, 0, 2, 0, 0xFF], 0xFFFE, false);
    assert_eq!(check(&mut rig, 5), [5, 0x24, 0]);
}

#[test]
fn inquiry_capacity_mode_sense_configuration() {
    let mut rig = Rig::new();
    let inq = cmd(&mut rig, &[0x12, 0, 0, 0, 36]);
    assert_eq!(&inq[..2], &[0x05, 0x80]);
    assert_eq!(&inq[16..28], b"Keel DVD-ROM");
    assert_eq!(cmd(&mut rig, &[0x25]), [0, 0, 0, 63, 0, 0, 8, 0]);
    let caps = cmd(&mut rig, &[0x5A, 0, 0x2A, 0, 0, 0, 0, 0, 0xFF]);
    assert_eq!(caps.len(), 30);
    assert_eq!(&caps[..2], &[0, 28]);
    assert_eq!(&caps[8..10], &[0x2A, 0x14]);
    let all = cmd(&mut rig, &[0x5A, 0, 0x3F, 0, 0, 0, 0, 0, 0xFF]);
    assert_eq!(all.len(), 8 + 12 + 22);
    packet(
        &mut rig,
        &[0x5A, 0, 0xEA, 0, 0, 0, 0, 0, 0xFF],
        0xFFFE,
        false,
    );
    assert_eq!(check(&mut rig, 5), [5, 0x39, 0], "saved values");
    let conf = cmd(&mut rig, &[0x46, 0, 0, 0, 0, 0, 0, 0x01, 0]);
    assert_eq!(&conf[6..8], &[0x00, 0x08], "current profile: CD-ROM");
    assert_eq!(&conf[8..12], &[0, 0, 0x03, 8], "profile list first");
    let core = cmd(&mut rig, &[0x46, 2, 0, 1, 0, 0, 0, 0, 0xFF]);
    assert_eq!(&core[8..16], &[0, 1, 0x0B, 8, 0, 0, 0, 2], "core: ATAPI");
    assert_eq!(core.len(), 20);
}

#[test]
fn medium_change_unit_attention_and_events() {
    let mut rig = Rig::new();
    packet(&mut rig, &[0x00], 0xFFFE, false);
    done(&mut rig);
    let cd = rig
        .ide
        .channel_mut(ChannelId::Secondary)
        .cdrom_mut(DrivePosition::Master);
    let iso = cd.unwrap().eject_medium().unwrap();
    packet(&mut rig, &[0x00], 0xFFFE, false);
    assert_eq!(check(&mut rig, 2), [2, 0x3A, 0], "no medium");
    let ev = cmd(&mut rig, &[0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8]);
    assert_eq!(ev, [0, 6, 4, 0x10, 3, 0, 0, 0], "MediaRemoval, tray empty");
    let cd = rig
        .ide
        .channel_mut(ChannelId::Secondary)
        .cdrom_mut(DrivePosition::Master);
    cd.unwrap().insert_medium(iso);
    // INQUIRY and GET EVENT STATUS NOTIFICATION pass the unit attention.
    cmd(&mut rig, &[0x12, 0, 0, 0, 36]);
    let ev = cmd(&mut rig, &[0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8]);
    assert_eq!(ev, [0, 6, 4, 0x10, 2, 2, 0, 0], "NewMedia, present");
    let ev = cmd(&mut rig, &[0x4A, 1, 0, 0, 0x10, 0, 0, 0, 8]);
    assert_eq!(ev[4], 0, "the event is reported once");
    packet(&mut rig, &[0x00], 0xFFFE, false);
    assert_eq!(check(&mut rig, 6), [6, 0x28, 0], "unit attention");
    packet(&mut rig, &[0x00], 0xFFFE, false);
    done(&mut rig);
    packet(&mut rig, &[0x4A, 0, 0, 0, 0x10, 0, 0, 0, 8], 0xFFFE, false);
    assert_eq!(
        check(&mut rig, 5),
        [5, 0x24, 0],
        "asynchronous events are not offered"
    );
}

#[test]
fn locked_tray_refuses_eject() {
    let mut rig = Rig::new();
    packet(&mut rig, &[0x1E, 0, 0, 0, 1], 0xFFFE, false);
    done(&mut rig);
    packet(&mut rig, &[0x1B, 0, 0, 0, 2], 0xFFFE, false);
    assert_eq!(check(&mut rig, 5), [5, 0x53, 2]);
    packet(&mut rig, &[0x1E, 0, 0, 0, 0], 0xFFFE, false);
    done(&mut rig);
    packet(&mut rig, &[0x1B, 0, 0, 0, 2], 0xFFFE, false);
    done(&mut rig);
    let cd = rig
        .ide
        .channel_mut(ChannelId::Secondary)
        .cdrom_mut(DrivePosition::Master);
    assert!(!cd.unwrap().has_medium());
}

#[test]
fn ata_commands_for_a_packet_device() {
    let mut rig = Rig::new();
    rig.outb(S + 6, 0xA0);
    for (c, st) in [
        (0xE5u8, 0x40u8),
        (0xE1, 0x40),
        (0xE7, 0x40),
        (0x24, 0x41),
        (0xC8, 0x41),
    ] {
        rig.outb(S + 7, c);
        assert!(rig.irq(15), "{c:#x}");
        assert_eq!(rig.inb(S + 7), st, "{c:#x}");
    }
    rig.outb(S + 1, 0x03);
    rig.outb(S + 2, 0x22);
    rig.outb(S + 7, 0xEF);
    assert_eq!(rig.inb(S + 7), 0x40);
}

/// A CD of `blocks` blocks on the secondary master.
fn big_cd(rig: &mut Rig, blocks: u64) {
    let image = (0..blocks)
        .flat_map(|lba| (0..2048).map(move |i| cd_pattern(lba, i)))
        .collect();
    let cd = ReadOnly(RamDisk::new("big.iso", image).unwrap());
    rig.ide.attach(
        ChannelId::Secondary,
        DrivePosition::Master,
        IdeDrive::cdrom(Some(Box::new(cd))),
    );
}

/// Fills the 64 KiB page at `page` with descriptors, none with EOT, each
/// for the 64 KiB region at `region`; `bad` descriptors from `bad_at` on
/// point past guest RAM.
fn endless_table(rig: &mut Rig, page: usize, region: u32, bad_at: Option<usize>) {
    let prds: Vec<_> = (0..0x10000 / 8)
        .map(|i| match bad_at {
            Some(b) if i >= b => (RAM as u32, 0, false),
            _ => (region, 0, false),
        })
        .collect();
    rig.prds(page, &prds);
}

/// Issue 11, finding 13: READ(12) of a whole disc through a table without
/// EOT takes one budget per call, ends with the device's command (the
/// table, larger than the transfer, leaves ACTIVE set as SFF-8038i says),
/// and never runs away.
#[test]
fn read12_of_a_whole_disc_through_a_table_without_eot_is_bounded_per_call() {
    use crate::storage::ide::bmdma::DMA_BUDGET;
    let mut rig = Rig::new();
    // Four budgets of 2 KiB blocks; the CDB's transfer length says as many.
    let blocks = (4 * DMA_BUDGET / 2048) as u64;
    big_cd(&mut rig, blocks);
    endless_table(&mut rig, 0, 0x10000, None);
    rig.inb(S + 7);
    rig.bm_start(8, 0, true);
    let [_, _, hi, lo] = (blocks as u32).to_be_bytes();
    packet(&mut rig, &[0xA8, 0, 0, 0, 0, 0, 0, 0, hi, lo], 0, true);
    // The packet write moved the first budget.
    let mut calls = 1;
    while rig.ide.dma_pending() {
        calls += 1;
        assert!(calls <= 4, "more passes than budgets");
        rig.run_dma();
    }
    assert_eq!(calls, 4, "four budgets in {DMA_BUDGET}-byte passes");
    done(&mut rig);
    assert_eq!(
        &rig.ram()[0x10000..0x20000],
        &cd_expected(blocks - 32, 32)[..]
    );
    assert_eq!(rig.inb(BM + 8 + 2) & 0x07, 0x05, "ACTIVE and INTERRUPT");
}

/// A hostile table (no EOT, then descriptors past guest RAM) ends the
/// command with the bus master's ERROR and CHECK CONDITION, after a bounded
/// number of passes, without touching memory outside RAM.
#[test]
fn a_hostile_table_without_eot_ends_in_an_error_not_a_loop() {
    let mut rig = Rig::new();
    big_cd(&mut rig, 256);
    endless_table(&mut rig, 0, 0x10000, Some(5));
    rig.inb(S + 7);
    rig.bm_start(8, 0, true);
    packet(&mut rig, &[0xA8, 0, 0, 0, 0, 0, 0, 0, 1, 0], 0, true);
    let mut calls = 0;
    while rig.ide.dma_pending() {
        calls += 1;
        assert!(calls <= 4);
        rig.run_dma();
    }
    assert_eq!(
        rig.inb(BM + 8 + 2) & 0x07,
        0x06,
        "ERROR and INTERRUPT, not ACTIVE"
    );
    check(
        &mut rig,
        crate::storage::ide::mmc::Sense::ABORTED_COMMAND.key,
    );
}
