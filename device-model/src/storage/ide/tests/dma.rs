//! Bus-master DMA: single and multi-descriptor tables, both orderings of
//! command and START, and hostile tables that must never touch memory
//! outside guest RAM.

use super::*;
use crate::storage::ide::regs::error;

const TABLE: usize = 0x1000;

fn read_dma(rig: &mut Rig, lba: u32, count: u8) {
    rig.lba28(lba, count);
    rig.outb(P + 7, 0xC8);
}

#[test]
fn read_dma_single_prd() {
    let mut rig = Rig::new();
    rig.prds(TABLE, &[(0x2000, 1024, true)]);
    read_dma(&mut rig, 10, 2);
    assert_eq!(rig.inb(P_CTL), 0x58, "DRQ while the DMA request waits");
    assert!(!rig.ide.dma_pending(), "bus master not started yet");
    // The START write moves the transfer before it returns.
    rig.bm_start(0, TABLE as u32, true);
    assert!(!rig.ide.dma_pending());
    assert_eq!(&rig.ram()[0x2000..0x2400], &expected(10, 2)[..]);
    assert!(rig.irq(14), "interrupt at completion");
    assert_eq!(
        rig.inb(BM + 2) & 0x07,
        0x04,
        "INTERRUPT, not ACTIVE: exact fit"
    );
    assert_eq!(rig.inb(P + 7), 0x50);
    assert!(!rig.run_dma(), "nothing left to do");
}

#[test]
fn read_dma_ext_multi_prd_with_start_before_command() {
    let mut rig = Rig::new();
    rig.prds(
        TABLE,
        &[
            (0x8000, 512, false),
            (0x3000, 256, false),
            (0x20000, 768, true),
        ],
    );
    rig.bm_start(0, TABLE as u32, true);
    assert!(!rig.ide.dma_pending(), "no command yet");
    rig.lba48(300, 3);
    // The command write completes the set and moves the transfer.
    rig.outb(P + 7, 0x25);
    assert!(!rig.ide.dma_pending());
    let want = expected(300, 3);
    assert_eq!(&rig.ram()[0x8000..0x8200], &want[..512]);
    assert_eq!(&rig.ram()[0x3000..0x3100], &want[512..768]);
    assert_eq!(&rig.ram()[0x20000..0x20300], &want[768..]);
    assert_eq!(rig.inb(BM + 2) & 0x07, 0x04);
    assert_eq!(rig.inb(P + 7), 0x50);
}

#[test]
fn write_dma_multi_prd() {
    let mut rig = Rig::new();
    let data: Vec<u8> = (0..0x400).map(|i| (i * 3) as u8).collect();
    rig.poke(0x4000, &data);
    rig.poke(0x9000, &[0xEE; 0x200]);
    rig.prds(TABLE, &[(0x4000, 1024, false), (0x9000, 512, true)]);
    rig.lba28(50, 3);
    rig.outb(P + 7, 0xCA);
    rig.bm_start(0, TABLE as u32, false);
    rig.run_dma();
    assert_eq!(rig.inb(P + 7), 0x50);
    let disk = rig.disk.bytes();
    assert_eq!(&disk[50 * 512..51 * 512 + 512], &rig.ram()[0x4000..0x4400]);
    assert!(disk[52 * 512..53 * 512].iter().all(|&b| b == 0xEE));
}

#[test]
fn a_table_larger_than_the_transfer_leaves_active_set() {
    let mut rig = Rig::new();
    rig.prds(TABLE, &[(0x2000, 4096, true)]);
    read_dma(&mut rig, 0, 1);
    rig.bm_start(0, TABLE as u32, true);
    rig.run_dma();
    assert_eq!(rig.inb(BM + 2) & 0x07, 0x05, "ACTIVE and INTERRUPT");
    assert_eq!(rig.inb(P + 7), 0x50);
    rig.outb(BM, 0x08);
    assert_eq!(rig.inb(BM + 2) & 0x01, 0, "the driver stops the engine");
}

#[test]
fn a_64k_region_is_a_zero_byte_count() {
    let mut rig = Rig::new();
    rig.prds(TABLE, &[(0x10000, 0, true)]);
    read_dma(&mut rig, 1000, 128);
    rig.bm_start(0, TABLE as u32, true);
    rig.run_dma();
    assert_eq!(&rig.ram()[0x10000..0x20000], &expected(1000, 128)[..]);
    assert_eq!(rig.inb(BM + 2) & 0x07, 0x04);
}

#[test]
fn dma_waits_for_pci_bus_mastering() {
    let mut rig = Rig::new();
    rig.cfg32(0x04, 0x1);
    rig.prds(TABLE, &[(0x2000, 512, true)]);
    read_dma(&mut rig, 0, 1);
    rig.bm_start(0, TABLE as u32, true);
    assert!(!rig.ide.dma_pending());
    assert!(!rig.run_dma());
    assert!(rig.ram()[0x2000..0x2200].iter().all(|&b| b == 0));
    // The configuration write that enables bus mastering moves it.
    rig.cfg32(0x04, 0x5);
    assert!(!rig.ide.dma_pending());
    assert_eq!(&rig.ram()[0x2000..0x2200], &expected(0, 1)[..]);
}

/// Checks the aborted-transfer outcome.
fn assert_aborted(rig: &mut Rig) {
    assert!(rig.irq(14), "the aborted command interrupts");
    let bm = rig.inb(BM + 2);
    assert_eq!(bm & 0x07, 0x06, "ERROR and INTERRUPT, not ACTIVE: {bm:#x}");
    assert_eq!(rig.inb(P + 7), 0x51);
    assert_eq!(rig.inb(P + 1), error::ABRT);
}

#[test]
fn a_region_past_guest_ram_aborts_without_writing_outside() {
    let mut rig = Rig::new();
    let end = RAM as u32;
    rig.prds(TABLE, &[(0x2000, 512, false), (end - 0x100, 512, true)]);
    read_dma(&mut rig, 7, 2);
    rig.bm_start(0, TABLE as u32, true);
    rig.run_dma();
    assert_eq!(
        &rig.ram()[0x2000..0x2200],
        &expected(7, 1)[..],
        "the first region moved"
    );
    assert!(rig.ram()[RAM - 0x100..].iter().all(|&b| b == 0));
    assert_aborted(&mut rig);
    // The same for a write from past the end, and a region far outside.
    for base in [end - 2, end, 0xFFFF_0000] {
        rig.outb(BM + 2, 0x06);
        rig.prds(TABLE, &[(base, 0, true)]);
        rig.lba28(7, 2);
        rig.outb(P + 7, 0xCA);
        rig.bm_start(0, TABLE as u32, false);
        rig.run_dma();
        assert_aborted(&mut rig);
    }
    assert_eq!(rig.disk.bytes()[7 * 512..9 * 512], expected(7, 2)[..]);
}

#[test]
fn a_table_outside_guest_ram_aborts() {
    let mut rig = Rig::new();
    for table in [RAM as u32, RAM as u32 - 4, 0xFFFF_FFF8] {
        rig.outb(BM + 2, 0x06);
        read_dma(&mut rig, 0, 1);
        rig.bm_start(0, table, true);
        rig.run_dma();
        assert_aborted(&mut rig);
    }
}

#[test]
fn a_table_without_eot_running_off_ram_aborts() {
    let mut rig = Rig::new();
    // The walk wraps to the start of the table's 64 KiB page, where the
    // next descriptor points past the end of RAM.
    let table = RAM - 16;
    rig.prds(table, &[(0x2000, 512, false), (0x3000, 512, false)]);
    rig.prds(RAM - 0x10000, &[(RAM as u32 - 0x80, 512, false)]);
    read_dma(&mut rig, 0, 3);
    rig.bm_start(0, table as u32, true);
    rig.run_dma();
    assert_eq!(&rig.ram()[0x2000..0x2200], &expected(0, 1)[..]);
    assert_eq!(&rig.ram()[0x3000..0x3200], &expected(1, 1)[..]);
    assert!(rig.ram()[RAM - 0x80..RAM - 16].iter().all(|&b| b == 0));
    assert_aborted(&mut rig);
}

#[test]
fn a_table_without_eot_wraps_in_its_64k_page() {
    let mut rig = Rig::new();
    // Two descriptors at the top of the page at 0x30000, one at its start.
    rig.prds(0x3FFF0, &[(0x2000, 512, false), (0x2200, 512, false)]);
    rig.prds(0x30000, &[(0x2400, 512, true)]);
    read_dma(&mut rig, 40, 3);
    rig.bm_start(0, 0x3FFF0, true);
    rig.run_dma();
    assert_eq!(&rig.ram()[0x2000..0x2600], &expected(40, 3)[..]);
    assert_eq!(rig.inb(P + 7), 0x50);
}

#[test]
fn a_table_shorter_than_the_transfer_aborts() {
    let mut rig = Rig::new();
    rig.prds(TABLE, &[(0x2000, 512, true)]);
    read_dma(&mut rig, 0, 2);
    rig.bm_start(0, TABLE as u32, true);
    rig.run_dma();
    assert_eq!(&rig.ram()[0x2000..0x2200], &expected(0, 1)[..]);
    assert!(rig.ram()[0x2200..0x2400].iter().all(|&b| b == 0));
    assert_aborted(&mut rig);
}

#[test]
fn pio_commands_never_reach_the_bus_master() {
    let mut rig = Rig::new();
    rig.prds(TABLE, &[(0x2000, 512, true)]);
    rig.bm_start(0, TABLE as u32, true);
    rig.lba28(0, 1);
    rig.outb(P + 7, 0x20);
    assert!(!rig.ide.dma_pending());
    assert!(rig.ram()[0x2000..0x2200].iter().all(|&b| b == 0));
}

/// Issue 11, finding 13: a transfer longer than one exit's budget moves at
/// most [`DMA_BUDGET`] bytes per call and completes over later calls with
/// the right data; the interrupt comes only at the end.
#[test]
fn a_transfer_longer_than_the_budget_continues_over_later_calls() {
    use crate::storage::ide::bmdma::DMA_BUDGET;
    let mut rig = Rig::new();
    // One budget and 64 KiB more, into 64 KiB regions from 0x10000.
    let (sectors, end) = one_budget_and_a_region(&mut rig);
    rig.lba48(100, sectors);
    rig.outb(P + 7, 0x25);
    // The START write moves exactly one budget, the service hook the rest.
    rig.bm_start(0, TABLE as u32, true);
    let want = expected(100, u64::from(sectors));
    let ram = rig.ram();
    assert_eq!(&ram[0x10000..0x10000 + DMA_BUDGET], &want[..DMA_BUDGET]);
    assert!(ram[0x10000 + DMA_BUDGET..end].iter().all(|&b| b == 0));
    assert!(rig.ide.dma_pending(), "data left: the transfer goes on");
    assert!(!rig.irq(14), "no interrupt before the end");
    assert_eq!(rig.inb(BM + 2) & 0x07, 0x01, "ACTIVE while in progress");
    assert!(rig.run_dma());
    assert!(!rig.ide.dma_pending());
    assert_eq!(&rig.ram()[0x10000..end], &want[..]);
    assert!(rig.irq(14));
    assert_eq!(rig.inb(BM + 2) & 0x07, 0x04, "exact fit: INTERRUPT only");
    assert_eq!(rig.inb(P + 7), 0x50);
}

/// A table of 64 KiB regions from 0x10000 for one DMA budget and one
/// region more, the last with EOT: the sectors that fill it, and where
/// its last region ends.
fn one_budget_and_a_region(rig: &mut Rig) -> (u16, usize) {
    use crate::storage::ide::bmdma::DMA_BUDGET;
    let regions = DMA_BUDGET / 0x10000 + 1;
    let prds: Vec<(u32, u16, bool)> = (0..regions)
        .map(|i| (0x10000 * (i as u32 + 1), 0, i + 1 == regions))
        .collect();
    rig.prds(TABLE, &prds);
    ((regions * 128) as u16, 0x10000 * (regions + 1))
}

/// Stopping the bus master mid-transfer loses its place (SFF-8038i); a
/// restart walks the table from its start for the data still to come.
#[test]
fn a_stop_mid_transfer_restarts_the_table() {
    use crate::storage::ide::bmdma::DMA_BUDGET;
    let mut rig = Rig::new();
    let (sectors, _) = one_budget_and_a_region(&mut rig);
    rig.lba48(100, sectors);
    rig.outb(P + 7, 0x25);
    // START moves one budget; the driver stops the engine before the rest.
    rig.bm_start(0, TABLE as u32, true);
    assert!(rig.ide.dma_pending());
    rig.outb(BM, 0x08);
    assert!(!rig.ide.dma_pending(), "stopped");
    rig.bm_start(0, TABLE as u32, true);
    rig.run_dma();
    let moved = (DMA_BUDGET / 512) as u64;
    assert_eq!(
        &rig.ram()[0x10000..0x20000],
        &expected(100 + moved, 128)[..]
    );
    assert_eq!(rig.inb(P + 7), 0x50);
}
