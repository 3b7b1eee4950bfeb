//! Register-level behaviour: interrupts and nIEN, SRST signatures, absent
//! devices, decode enables, the bus-master registers, and a hostile guest
//! poking every port.

use super::*;
use crate::storage::ide::regs::{error, status};

#[test]
fn status_read_clears_the_interrupt_alt_status_does_not() {
    let mut rig = Rig::new();
    rig.outb(P + 7, 0xE7);
    assert!(rig.irq(14));
    assert_eq!(rig.inb(P_CTL), 0x50);
    assert!(rig.irq(14), "Alternate Status leaves INTRQ alone");
    assert_eq!(rig.ide.channel(ChannelId::Primary).bm.status & 0x04, 0x04);
    assert_eq!(rig.inb(P + 7), 0x50);
    assert!(!rig.irq(14));
    assert!(!rig.irq(15), "the other channel's line never moved");
}

#[test]
fn nien_masks_the_line_and_unmasking_shows_the_pending_interrupt() {
    let mut rig = Rig::new();
    rig.outb(P_CTL, 0x02);
    rig.outb(P + 7, 0xE7);
    assert!(!rig.irq(14), "nIEN set: INTRQ is not driven");
    rig.outb(P_CTL, 0x00);
    assert!(rig.irq(14), "the interrupt was still pending");
    rig.inb(P + 7);
    assert!(!rig.irq(14));
}

#[test]
fn writing_a_command_clears_a_pending_interrupt() {
    let mut rig = Rig::new();
    rig.outb(P + 7, 0xE7);
    assert!(rig.irq(14));
    rig.lba28(0, 1);
    rig.outb(P + 1, 0x03);
    rig.outb(P + 2, 0xFF);
    rig.outb(P + 7, 0xEF);
    assert!(rig.irq(14), "raised again by the new command's completion");
    assert_eq!(rig.inb(P + 7), 0x51);
}

#[test]
fn srst_leaves_ata_and_atapi_signatures() {
    let mut rig = Rig::new();
    rig.ide.attach(
        ChannelId::Primary,
        DrivePosition::Slave,
        IdeDrive::cdrom(None),
    );
    rig.lba28(0x123456, 9);
    rig.outb(P + 7, 0x20);
    rig.outb(P_CTL, 0x04);
    assert_eq!(rig.inb(P_CTL), status::BSY);
    rig.outb(P + 2, 0x77);
    rig.outb(P + 7, 0xEC);
    assert_eq!(
        rig.inb(P_CTL),
        status::BSY,
        "commands are ignored while busy"
    );
    rig.outb(P_CTL, 0x00);
    assert!(!rig.irq(14), "no interrupt after a software reset");
    let regs = |rig: &mut Rig| [2, 3, 4, 5, 6].map(|o| rig.inb(P + o));
    assert_eq!(regs(&mut rig), [0x01, 0x01, 0x00, 0x00, 0x00]);
    assert_eq!(rig.inb(P + 1), error::DIAG_PASSED);
    assert_eq!(rig.inb(P + 7), 0x50);
    assert_eq!(rig.inw(P), 0xFFFF, "the reset dropped the read");
    rig.outb(P + 6, 0xB0);
    assert_eq!(regs(&mut rig), [0x01, 0x01, 0x14, 0xEB, 0xB0]);
    assert_eq!(rig.inb(P + 7), 0x00, "ATAPI: DRDY clear after reset");
    assert_eq!(rig.inb(P + 1), error::DIAG_PASSED);
}

#[test]
fn execute_device_diagnostic_and_atapi_probing() {
    let mut rig = Rig::new();
    // IDENTIFY DEVICE to the CD aborts with the PACKET signature.
    rig.outb(S + 6, 0xA0);
    rig.outb(S + 7, 0xEC);
    assert!(rig.irq(15));
    assert_eq!(rig.inb(S + 7) & 0x01, 0x01);
    assert_eq!(rig.inb(S + 1), error::ABRT);
    assert_eq!((rig.inb(S + 4), rig.inb(S + 5)), (0x14, 0xEB));
    // DEVICE RESET: the signature, no interrupt.
    rig.outb(S + 2, 0x55);
    rig.outb(S + 7, 0x08);
    assert!(!rig.irq(15));
    assert_eq!([2, 3, 4, 5].map(|o| rig.inb(S + o)), [1, 1, 0x14, 0xEB]);
    // EXECUTE DEVICE DIAGNOSTIC: signatures and an interrupt.
    rig.lba28(0x55AA, 3);
    rig.outb(P + 7, 0x90);
    assert!(rig.irq(14));
    assert_eq!(rig.inb(P + 7), 0x50);
    assert_eq!(rig.inb(P + 1), 0x01);
    assert_eq!([2, 3, 4, 5].map(|o| rig.inb(P + o)), [1, 1, 0, 0]);
}

#[test]
fn an_absent_slave_reads_zero_status_and_ignores_commands() {
    let mut rig = Rig::new();
    rig.outb(P + 6, 0xB0);
    assert_eq!(rig.inb(P + 7), 0x00);
    assert_eq!(rig.inb(P_CTL), 0x00);
    // SeaBIOS's presence probe reads back what it wrote.
    rig.outb(P + 2, 0x55);
    rig.outb(P + 3, 0xAA);
    assert_eq!(
        (rig.inb(P + 2), rig.inb(P + 3), rig.inb(P + 6)),
        (0x55, 0xAA, 0xB0)
    );
    for cmd in [0xEC, 0x20, 0xA1, 0xE7] {
        rig.outb(P + 7, cmd);
        assert!(!rig.irq(14));
        assert_eq!(rig.inb(P + 7), 0x00);
    }
    assert_eq!(rig.ide.read_data(P, &mut [0; 512]), 0);
    // The master latched the same writes and still works.
    rig.outb(P + 6, 0xA0);
    assert_eq!(rig.inb(P + 7), 0x50);
    assert_eq!(rig.inb(P + 2), 0x55);
}

#[test]
fn an_empty_channel_floats() {
    let mut rig = Rig::bare();
    for o in 0..8 {
        assert_eq!(rig.inb(S + o), 0xFF);
    }
    assert_eq!(rig.inb(S_CTL), 0xFF);
    rig.outb(S + 7, 0xEC);
    assert!(!rig.irq(15));
    assert_eq!(rig.inb(S + 7), 0xFF);
}

#[test]
fn legacy_ports_need_io_space_and_the_idetim_decode_bit() {
    let mut rig = Rig::new();
    rig.cfg32(0x40, 0x0000_8000);
    assert_eq!(rig.inb(P + 7), 0x50);
    assert_eq!(rig.inb(S + 7), 0xFF, "secondary decode disabled");
    rig.outb(S + 7, 0xA1);
    assert!(!rig.irq(15));
    rig.cfg32(0x04, 0x4);
    assert_eq!(rig.inb(P + 7), 0xFF, "I/O space disabled");
    assert_eq!(rig.ide.bus_master_base(), None);
    rig.cfg32(0x04, 0x5);
    assert_eq!(rig.ide.bus_master_base(), Some(BM));
}

#[test]
fn config_space_identity_and_bar4_sizing() {
    let mut rig = Rig::new();
    let mut b = [0u8; 4];
    rig.ide.config_read(0, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0x7010_8086);
    rig.ide.config_read(8, &mut b);
    assert_eq!(u32::from_le_bytes(b) >> 8, 0x01_01_80);
    let mut ch = Vec::new();
    rig.ide.config_write(0x20, &[0xFF; 4], &mut ch);
    rig.ide.config_read(0x20, &mut b);
    assert_eq!(u32::from_le_bytes(b), 0xFFFF_FFF1, "16 bytes of I/O");
    rig.ide.config_read(0x3C, &mut b);
    assert_eq!(b[1], 0, "no PCI interrupt pin in compatibility mode");
    rig.ide.reset(&mut ch);
    rig.ide.config_read(0x40, &mut b);
    assert_eq!(b, [0; 4]);
}

#[test]
fn bus_master_registers() {
    let mut rig = Rig::new();
    assert_eq!(rig.inb(BM + 2), 0x20, "drive 0 DMA capable");
    rig.outl(BM + 4, 0x1234_5677);
    assert_eq!(rig.inl(BM + 4), 0x1234_5674, "bits 1:0 read zero");
    rig.outb(BM, 0xFF);
    assert_eq!(rig.inb(BM), 0x09, "only START and RWCON exist");
    assert_eq!(rig.inb(BM + 2) & 0x01, 0x01, "START sets ACTIVE");
    rig.outb(BM, 0x08);
    assert_eq!(rig.inb(BM + 2) & 0x01, 0x00, "stop clears ACTIVE");
    rig.outb(P + 7, 0xE7);
    assert_eq!(rig.inb(BM + 2), 0x24, "the IRQ edge set INTERRUPT");
    rig.outb(BM + 2, 0x60);
    assert_eq!(rig.inb(BM + 2), 0x64, "writing 0 leaves INTERRUPT");
    rig.outb(BM + 2, 0x64);
    assert_eq!(rig.inb(BM + 2), 0x60, "writing 1 clears it");
    rig.outb(BM + 2, 0x00);
    assert_eq!(rig.inb(BM + 2), 0x00, "the capable bits are the guest's");
    assert_eq!(rig.inb(BM + 0x0A), 0x20, "secondary: its CD is drive 0");
    assert_eq!(rig.inb(BM + 1), 0);
}

/// A guest writing and reading anything anywhere: no panic, and guest RAM's
/// guard bytes never change.
#[test]
fn hostile_port_traffic_never_panics_or_escapes_ram() {
    let mut rig = Rig::new();
    rig.ide.attach(
        ChannelId::Primary,
        DrivePosition::Slave,
        IdeDrive::cdrom(Some(Box::new(ReadOnly(
            RamDisk::new("s.iso", cd_image()).unwrap(),
        )))),
    );
    let ports: Vec<u16> = (0x1F0..0x1F8)
        .chain(0x170..0x178)
        .chain([0x3F6, 0x376])
        .chain(BM..BM + 16)
        .collect();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for _ in 0..200_000 {
        let r = next();
        let port = ports[(r % ports.len() as u64) as usize];
        let size = [1usize, 2, 4][(r >> 8) as usize % 3];
        let v = (r >> 16) as u32;
        // Bias values towards meaningful commands and table addresses.
        let v = match (r >> 48) % 8 {
            0 => [0x20, 0x24, 0xC8, 0x25, 0xCA, 0x35, 0xA0, 0xEC][(r >> 52) as usize % 8],
            1 => (v % (RAM as u32 + 0x100)) & !3,
            _ => v,
        };
        match (r >> 40) % 5 {
            0 | 1 => {
                let mut d = vec![0u8; size];
                rig.ide.read(u64::from(port), 0, &mut d);
            }
            2 | 3 => {
                let bytes = v.to_le_bytes();
                rig.ide.write(u64::from(port), 0, &bytes[..size]);
            }
            _ => {
                if r & 0x100 != 0 {
                    let n = (r >> 20) as usize % 70_000;
                    let mut d = vec![0u8; n];
                    rig.ide.read_data(port, &mut d);
                } else {
                    rig.ide
                        .write_data(port, &vec![0x5A; (r >> 20) as usize % 5000]);
                }
            }
        }
        if r % 7 == 0 {
            // Scatter descriptors over RAM so some walks reach its end.
            let at = (next() % RAM as u64) as usize & !7;
            let d = next().to_le_bytes();
            let end = (at + 8).min(RAM);
            let n = end - at;
            rig.poke(at, &d[..n]);
        }
        rig.run_dma();
        if r % 1000 == 0 {
            let mut ch = Vec::new();
            let off = (next() % 256) as u8 & !3;
            rig.ide
                .config_write(off, &(next() as u32).to_le_bytes(), &mut ch);
            rig.cfg32(0x20, u32::from(BM));
            rig.cfg32(0x40, 0x8000_8000);
            rig.cfg32(0x04, 0x5);
        }
    }
}
