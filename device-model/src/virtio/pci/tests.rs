//! The PCI transport against virtio 1.2 4.1 and 3.1, through a PC's
//! configuration mechanism and BARs.

use super::super::blk::{blk_status, req};
use super::super::test_driver::*;
use super::*;

#[test]
fn identity_bars_and_capabilities_are_those_of_4_1() {
    let mut d = machine(64, false, Transport::Transitional);
    assert_eq!(d.cfg_read(0x00, 2), 0x1AF4);
    assert_eq!(d.cfg_read(0x02, 2), 0x1001, "transitional block device");
    assert_eq!(
        d.cfg_read(0x08, 1),
        0,
        "revision 0 for a transitional device"
    );
    assert_eq!(d.cfg_read(0x2E, 2), 2, "subsystem ID = virtio device ID");
    let mut found = vec![];
    let mut at = d.cfg_read(0x34, 1);
    while at != 0 {
        if d.cfg_read(at, 1) == u32::from(cap::ID_VENDOR) {
            let kind = d.cfg_read(at + 3, 1) as u8;
            let bar = d.cfg_read(at + 4, 1) as u8;
            let offset = d.cfg_read(at + 8, 4);
            found.push((kind, bar, offset));
            if kind == cap::NOTIFY_CFG {
                assert_eq!(d.cfg_read(at + 16, 4), NOTIFY_OFF_MULTIPLIER);
            }
        }
        at = d.cfg_read(at + 1, 1);
    }
    for kind in [
        cap::COMMON_CFG,
        cap::NOTIFY_CFG,
        cap::ISR_CFG,
        cap::DEVICE_CFG,
        cap::PCI_CFG,
    ] {
        assert!(found.iter().any(|f| f.0 == kind), "capability type {kind}");
    }
    assert!(found.contains(&(cap::COMMON_CFG, MODERN_BAR, COMMON_CFG as u32)));
    assert_eq!(d.common_read(common::NUM_QUEUES, 2), 1);
    let m = machine(64, false, Transport::Modern);
    let mut m = m;
    assert_eq!(m.cfg_read(0x02, 2), 0x1042, "modern block device");
    assert_eq!(m.cfg_read(0x08, 1), 1);
    assert_eq!(m.cfg_read(0x10, 4), 0, "no legacy I/O BAR");
}

#[test]
fn features_offered_are_accepted_others_refuse_features_ok() {
    let mut d = machine(64, false, Transport::Modern);
    let offered = d.device_features();
    for f in [
        feature::VERSION_1,
        feature::RING_INDIRECT_DESC,
        feature::RING_EVENT_IDX,
    ] {
        assert_ne!(offered & f, 0, "{f:#x} offered");
    }
    assert!(d.negotiate(feature::VERSION_1 | feature::RING_EVENT_IDX));
    // A bit never offered: FEATURES_OK reads back clear (3.1.1 step 6).
    assert!(!d.negotiate(feature::VERSION_1 | 1 << 40));
    // The modern interface without VERSION_1.
    assert!(!d.negotiate(feature::RING_EVENT_IDX));
    // Driver features are frozen once FEATURES_OK is set.
    assert!(d.negotiate(feature::VERSION_1));
    d.common_write(common::DRIVER_FEATURE_SELECT, 4, 0);
    d.common_write(common::DRIVER_FEATURE, 4, 1 << 20);
    assert_eq!(d.common_read(common::DRIVER_FEATURE, 4), 0);
}

#[test]
fn a_reset_returns_status_features_and_queues_to_zero() {
    let mut d = machine(64, false, Transport::Modern);
    d.start(feature::RING_EVENT_IDX);
    assert_eq!(d.common_read(common::QUEUE_ENABLE, 2), 1);
    d.common_write(common::DEVICE_STATUS, 1, 0);
    assert_eq!(d.status(), 0);
    assert_eq!(d.common_read(common::QUEUE_ENABLE, 2), 0);
    assert_eq!(d.common_read(common::QUEUE_DESC, 8), 0);
    assert_eq!(d.common_read(common::QUEUE_SIZE, 2), u64::from(QSIZE));
    d.common_write(common::DRIVER_FEATURE_SELECT, 4, 1);
    assert_eq!(d.common_read(common::DRIVER_FEATURE, 4), 0);
    // A queue that does not exist reads size 0 (4.1.4.3.2).
    d.common_write(common::QUEUE_SELECT, 2, 5);
    assert_eq!(d.common_read(common::QUEUE_SIZE, 2), 0);
}

#[test]
fn completions_signal_the_queues_msix_vector() {
    let mut d = machine(64, false, Transport::Modern);
    d.enable_msix();
    d.start(0);
    let (head, data, st) = d.request(0, req::IN, 3, 1, 512, false);
    d.offer(head);
    d.notify();
    assert_eq!(d.used(), [(u32::from(head), 513)]);
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::OK);
    assert_eq!(
        d.ram.read_obj::<u8>(data + 100).unwrap(),
        3,
        "sector 3's bytes"
    );
    assert_eq!(d.take_interrupt(), Some(MSI_VECTOR_QUEUE));
    assert_eq!(d.take_interrupt(), None);
    assert_eq!(d.isr(), 0, "with MSI-X, ISR is not used");
}

#[test]
fn without_msix_the_isr_drives_inta_until_read() {
    let mut d = machine(64, false, Transport::Modern);
    d.start(0);
    let (head, _, _) = d.request(0, req::IN, 0, 1, 512, false);
    d.offer(head);
    d.notify();
    assert_eq!(d.used().len(), 1);
    assert_ne!(
        d.cfg_read(0x06, 2) & 0x8,
        0,
        "PCI status: interrupt pending"
    );
    assert_eq!(d.isr(), 1, "queue interrupt");
    assert_eq!(d.cfg_read(0x06, 2) & 0x8, 0, "reading ISR deasserts INTx");
    assert_eq!(d.isr(), 0);
}

#[test]
fn a_msix_vector_the_table_lacks_reads_back_no_vector() {
    let mut d = machine(64, false, Transport::Modern);
    d.common_write(common::QUEUE_SELECT, 2, 0);
    d.common_write(common::QUEUE_MSIX_VECTOR, 2, 7);
    assert_eq!(d.common_read(common::QUEUE_MSIX_VECTOR, 2), 0xFFFF);
    d.common_write(common::CONFIG_MSIX_VECTOR, 2, 1);
    assert_eq!(d.common_read(common::CONFIG_MSIX_VECTOR, 2), 1);
}

#[test]
fn a_malformed_ring_sets_needs_reset_with_a_config_interrupt_and_reset_recovers() {
    let mut d = machine(64, false, Transport::Modern);
    d.enable_msix();
    d.start(0);
    d.common_write(common::CONFIG_MSIX_VECTOR, 2, 1);
    // A chain that loops on itself.
    d.desc(DESC, 0, BUFS, 16, super::super::queue::VIRTQ_DESC_F_NEXT, 0);
    d.offer(0);
    d.notify();
    assert_ne!(d.status() & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(d.take_interrupt(), Some(MSI_VECTOR_CONFIG));
    assert!(d.used().is_empty());
    // Further notifications do nothing and interrupt no more.
    d.notify();
    assert_eq!(d.take_interrupt(), None);
    // A reset and a new setup work again.
    d.avail_idx = 0;
    d.used_seen = 0;
    d.ram.fill(AVAIL, 0x1000, 0).unwrap();
    d.ram.fill(USED, 0x1000, 0).unwrap();
    d.start(0);
    d.common_write(common::CONFIG_MSIX_VECTOR, 2, 1);
    assert_eq!(d.status() & status::DEVICE_NEEDS_RESET, 0);
    let (head, _, st) = d.request(0, req::IN, 1, 1, 512, false);
    d.offer(head);
    d.notify();
    assert_eq!(d.used().len(), 1);
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::OK);
}

#[test]
fn a_queue_size_that_is_not_a_power_of_2_is_not_enabled() {
    let mut d = machine(64, false, Transport::Modern);
    assert!(d.negotiate(feature::VERSION_1));
    d.setup_queue(100, 0);
    assert_eq!(d.common_read(common::QUEUE_ENABLE, 2), 0);
    assert_ne!(d.status() & status::DEVICE_NEEDS_RESET, 0);
    assert_eq!(
        d.isr() & 2,
        2,
        "configuration change, through ISR without MSI-X"
    );
}

#[test]
fn rings_outside_ram_are_not_enabled() {
    let mut d = machine(64, false, Transport::Modern);
    assert!(d.negotiate(feature::VERSION_1));
    d.common_write(common::QUEUE_DEVICE, 8, (RAM as u64) - 8);
    d.common_write(common::QUEUE_DESC, 8, DESC);
    d.common_write(common::QUEUE_DRIVER, 8, AVAIL);
    d.common_write(common::QUEUE_ENABLE, 2, 1);
    assert_eq!(d.common_read(common::QUEUE_ENABLE, 2), 0);
    assert_ne!(d.status() & status::DEVICE_NEEDS_RESET, 0);
}

#[test]
fn notifications_for_queues_never_set_up_do_nothing() {
    let mut d = machine(64, false, Transport::Modern);
    // Before any setup, for queue 0 and for queues that do not exist.
    d.notify();
    d.write(MODERN + NOTIFY_CFG + 4 * 9, 2, 9);
    d.write(MODERN + NOTIFY_CFG + 0xFFC, 4, 0xFFFF);
    assert_eq!(d.status(), 0);
    assert_eq!(d.ram.read_obj::<u16>(USED + 2).unwrap(), 0);
    // Set up but before DRIVER_OK: the buffers wait, then are taken.
    assert!(d.negotiate(feature::VERSION_1));
    d.common_write(common::QUEUE_DESC, 8, DESC);
    d.common_write(common::QUEUE_DRIVER, 8, AVAIL);
    d.common_write(common::QUEUE_DEVICE, 8, USED);
    d.common_write(common::QUEUE_ENABLE, 2, 1);
    let (head, _, _) = d.request(0, req::IN, 0, 1, 512, false);
    d.offer(head);
    d.notify();
    assert!(d.used().is_empty(), "not before DRIVER_OK (3.1.1)");
    let s = d.status() | status::DRIVER_OK;
    d.common_write(common::DEVICE_STATUS, 1, u64::from(s));
    assert!(d.pc.next_deadline_ns() == Some(0));
    d.pc.service();
    assert_eq!(d.used().len(), 1);
}

#[test]
fn the_legacy_interface_sets_up_a_queue_by_pfn_and_completes_requests() {
    let mut d = machine(64, false, Transport::Transitional);
    let io = |r: u64| LEGACY + r as u16;
    d.pc.pio_write(io(legacy::DEVICE_STATUS), 1, 0);
    d.pc.pio_write(io(legacy::DEVICE_STATUS), 1, 3);
    let host = d.pc.pio_read(io(legacy::HOST_FEATURES), 4);
    assert_eq!(
        u64::from(host) & feature::RING_INDIRECT_DESC,
        feature::RING_INDIRECT_DESC
    );
    d.pc.pio_write(io(legacy::GUEST_FEATURES), 4, 0);
    d.pc.pio_write(io(legacy::QUEUE_SELECT), 2, 0);
    assert_eq!(d.pc.pio_read(io(legacy::QUEUE_SIZE), 2), u32::from(QSIZE));
    d.pc.pio_write(io(legacy::QUEUE_ADDRESS), 4, (DESC >> 12) as u32);
    d.pc.pio_write(io(legacy::DEVICE_STATUS), 1, 7);
    // Device configuration at 0x14 without MSI-X: the capacity.
    assert_eq!(d.pc.pio_read(io(legacy::DEVICE_CFG), 4), 64);
    // The legacy layout: avail right after 256 descriptors, used on the next page.
    let avail = DESC + 16 * 256;
    let used = (avail + 6 + 2 * 256 + 4095) & !4095;
    let (head, data, st) = d.request(0, req::IN, 9, 1, 512, false);
    d.ram.write_obj(avail + 4, head).unwrap();
    d.ram.write_obj(avail + 2, 1u16).unwrap();
    d.legacy_notify();
    assert_eq!(d.ram.read_obj::<u16>(used + 2).unwrap(), 1);
    assert_eq!(d.ram.read_obj::<u8>(st).unwrap(), blk_status::OK);
    assert_eq!(d.ram.read_obj::<u8>(data).unwrap(), 9);
    assert_eq!(d.pc.pio_read(io(legacy::ISR_STATUS), 1), 1);
    assert_eq!(d.pc.pio_read(io(legacy::ISR_STATUS), 1), 0, "read to clear");
}

#[test]
fn the_pci_cfg_capability_reaches_the_registers() {
    let mut d = machine(64, false, Transport::Modern);
    let mut at = d.cfg_read(0x34, 1);
    while !(d.cfg_read(at, 1) == u32::from(cap::ID_VENDOR)
        && d.cfg_read(at + 3, 1) == u32::from(cap::PCI_CFG))
    {
        at = d.cfg_read(at + 1, 1);
    }
    d.cfg_write(at + 4, 1, u32::from(MODERN_BAR));
    d.cfg_write(at + 8, 4, (DEVICE_CFG) as u32);
    d.cfg_write(at + 12, 4, 4);
    assert_eq!(d.cfg_read(at + 16, 4), 64, "capacity, low dword");
}
