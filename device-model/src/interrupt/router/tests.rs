use super::*;
use crate::clock::FakeClock;
use crate::interrupt::message::MsiTarget;
use alloc::sync::Arc;

fn router(vcpus: u32) -> (PcInterruptRouter, Arc<FakeClock>) {
    let clock = FakeClock::new(0);
    (
        PcInterruptRouter::new(vcpus, LapicConfig::default(), clock.clone()),
        clock,
    )
}

fn lapic_write(r: &mut PcInterruptRouter, vcpu: u32, offset: u64, value: u32) {
    r.lapic_mmio_write(vcpu, offset, &value.to_le_bytes());
}

fn ioapic_write(r: &mut PcInterruptRouter, index: u8, value: u32) {
    r.ioapic_mmio_write(0x00, &[index]);
    r.ioapic_mmio_write(0x10, &value.to_le_bytes());
}

/// The 8259A pair as a BIOS programs it: vectors 08h and 70h.
fn init_pic(r: &mut PcInterruptRouter) {
    for (port, icw2, icw3) in [(0x20u16, 0x08u8, 0x04u8), (0xA0, 0x70, 0x02)] {
        r.pic_write(port, 0x11);
        r.pic_write(port + 1, icw2);
        r.pic_write(port + 1, icw3);
        r.pic_write(port + 1, 0x01);
    }
}

/// An OS in APIC mode: APIC enabled, 8259A masked.
fn apic_mode(r: &mut PcInterruptRouter) {
    init_pic(r);
    r.pic_write(0x21, 0xFF);
    r.pic_write(0xA1, 0xFF);
    for vcpu in 0..r.vcpus() {
        lapic_write(r, vcpu, 0xF0, 0x1FF);
    }
}

fn pulse(r: &mut PcInterruptRouter, gsi: u32) {
    r.set_irq(gsi, true);
    r.set_irq(gsi, false);
}

#[test]
fn the_8259a_reaches_the_bsp_through_lint0_after_reset() {
    let (mut r, _) = router(1);
    init_pic(&mut r);
    pulse(&mut r, 1);
    assert_eq!(r.pending_interrupt(0), Some(0x09));
    assert_eq!(
        r.pending_interrupt(0),
        Some(0x09),
        "pending does not acknowledge"
    );
    assert_eq!(r.acknowledge(0), Some(0x09));
    assert_eq!(r.pic().master().isr(), 0x02);
    assert_eq!(r.pending_interrupt(0), None);
    pulse(&mut r, 12);
    assert_eq!(r.pending_interrupt(0), None, "IRQ 12 waits behind IRQ 1");
    r.pic_write(0x20, 0x20);
    assert_eq!(r.acknowledge(0), Some(0x74));
}

#[test]
fn a_masked_lint0_blocks_the_8259a_and_global_disable_bypasses_the_apic() {
    let (mut r, _) = router(1);
    init_pic(&mut r);
    lapic_write(&mut r, 0, 0xF0, 0x1FF);
    lapic_write(&mut r, 0, 0x350, 0x0001_0700);
    pulse(&mut r, 3);
    assert_eq!(r.pending_interrupt(0), None);
    lapic_write(&mut r, 0, 0x350, 0x0000_0700);
    assert_eq!(r.pending_interrupt(0), Some(0x0B));
    lapic_write(&mut r, 0, 0x350, 0x0001_0700);
    // With the APIC globally disabled LINT0 is the INTR pin.
    r.set_apic_base(0, 0xFEE0_0100).unwrap();
    assert_eq!(r.pending_interrupt(0), Some(0x0B));
    assert_eq!(r.acknowledge(0), Some(0x0B));
}

#[test]
fn extint_ignores_tpr() {
    let (mut r, _) = router(1);
    init_pic(&mut r);
    lapic_write(&mut r, 0, 0xF0, 0x1FF);
    lapic_write(&mut r, 0, 0x350, 0x700);
    r.set_cr8(0, 15);
    pulse(&mut r, 4);
    assert_eq!(r.acknowledge(0), Some(0x0C));
}

#[test]
fn isa_irq0_goes_to_ioapic_pin2() {
    let (mut r, _) = router(1);
    apic_mode(&mut r);
    ioapic_write(&mut r, 0x10 + 4, 0x30); // pin 2: vector 30h, edge, dest 0
    ioapic_write(&mut r, 0x10, 0x31); // pin 0: vector 31h
    pulse(&mut r, 0);
    assert_eq!(r.pending_interrupt(0), Some(0x30));
    assert_eq!(r.pic().master().irr(), 0x01, "IRQ 0 also reaches 8259A IR0");
    // GSI 2 is the cascade, not pin 2; GSIs past 23 go nowhere.
    r.acknowledge(0);
    lapic_write(&mut r, 0, 0xB0, 0);
    pulse(&mut r, 2);
    pulse(&mut r, 24);
    pulse(&mut r, u32::MAX);
    assert_eq!(r.pending_interrupt(0), None);
}

#[test]
fn isa_and_pci_gsis_map_one_to_one() {
    let (mut r, _) = router(1);
    apic_mode(&mut r);
    for gsi in [1u8, 3, 8, 15, 16, 23] {
        ioapic_write(&mut r, 0x10 + 2 * gsi, 0x40 + u32::from(gsi));
        pulse(&mut r, gsi.into());
        assert_eq!(r.acknowledge(0), Some(0x40 + gsi), "GSI {gsi}");
        lapic_write(&mut r, 0, 0xB0, 0);
    }
}

#[test]
fn level_interrupts_round_trip_through_remote_irr_and_eoi() {
    let (mut r, _) = router(1);
    apic_mode(&mut r);
    ioapic_write(&mut r, 0x10 + 2 * 20, 0x0000_8055); // level, vector 55h
    r.set_irq(20, true);
    assert_eq!(r.acknowledge(0), Some(0x55));
    assert!(r.lapic(0).unwrap().tmr_set(0x55));
    assert_ne!(r.ioapic().entry(20).unwrap() & (1 << 14), 0);
    // The line is still asserted at EOI: delivered again.
    lapic_write(&mut r, 0, 0xB0, 0);
    assert!(r.lapic(0).unwrap().irr_set(0x55));
    assert_eq!(r.acknowledge(0), Some(0x55));
    r.set_irq(20, false);
    lapic_write(&mut r, 0, 0xB0, 0);
    assert_eq!(r.ioapic().entry(20).unwrap() & (1 << 14), 0);
    assert_eq!(r.pending_interrupt(0), None);
}

#[test]
fn ioapic_nmi_and_masking() {
    let (mut r, _) = router(1);
    apic_mode(&mut r);
    ioapic_write(&mut r, 0x10 + 2 * 5, 0x0001_0035); // masked
    pulse(&mut r, 5);
    assert_eq!(r.pending_interrupt(0), None);
    ioapic_write(&mut r, 0x10 + 2 * 6, 0x400); // NMI
    pulse(&mut r, 6);
    assert!(r.pending_nmi(0));
    assert!(r.acknowledge_nmi(0));
    assert!(!r.pending_nmi(0));
}

#[test]
fn ioapic_destinations_pick_the_lapic() {
    let (mut r, _) = router(2);
    apic_mode(&mut r);
    ioapic_write(&mut r, 0x11 + 2 * 9, 0x0100_0000); // physical 1
    ioapic_write(&mut r, 0x10 + 2 * 9, 0x49);
    pulse(&mut r, 9);
    assert_eq!(r.pending_interrupt(0), None);
    assert_eq!(r.pending_interrupt(1), Some(0x49));
    ioapic_write(&mut r, 0x11 + 2 * 10, 0xFF00_0000); // broadcast
    ioapic_write(&mut r, 0x10 + 2 * 10, 0x4A);
    pulse(&mut r, 10);
    assert_eq!(r.pending_interrupt(0), Some(0x4A));
    assert!(r.lapic(1).unwrap().irr_set(0x4A));
}

#[test]
fn lowest_priority_goes_to_the_lower_tpr() {
    let (mut r, _) = router(2);
    apic_mode(&mut r);
    for vcpu in 0..2 {
        lapic_write(&mut r, vcpu, 0xD0, 0x0100_0000 << vcpu);
    }
    r.set_cr8(0, 3);
    ioapic_write(&mut r, 0x11 + 2 * 11, 0x0300_0000);
    ioapic_write(&mut r, 0x10 + 2 * 11, 0x0000_0950); // lowest, logical
    pulse(&mut r, 11);
    assert_eq!(r.pending_interrupt(1), Some(0x50));
    assert!(!r.lapic(0).unwrap().irr_set(0x50));
}

#[test]
fn ipis_reach_their_destinations() {
    let (mut r, _) = router(2);
    apic_mode(&mut r);
    lapic_write(&mut r, 0, 0x300, 0x0004_0061); // self
    assert_eq!(r.pending_interrupt(0), Some(0x61));
    assert_eq!(r.pending_interrupt(1), None);
    lapic_write(&mut r, 0, 0x310, 0x0100_0000);
    lapic_write(&mut r, 0, 0x300, 0x0000_0062); // physical 1
    assert_eq!(r.pending_interrupt(1), Some(0x62));
    lapic_write(&mut r, 0, 0x300, 0x000C_0400); // NMI to all but self
    assert!(!r.pending_nmi(0));
    assert!(r.pending_nmi(1));
}

#[test]
fn init_and_sipi_wake_an_ap() {
    let (mut r, _) = router(2);
    apic_mode(&mut r);
    lapic_write(&mut r, 0, 0x300, 0x000C_4500); // INIT to all but self
    lapic_write(&mut r, 0, 0x300, 0x000C_4610); // SIPI vector 10h
    assert!(r.take_init(1));
    assert_eq!(r.take_sipi(1), Some(0x10));
    assert!(!r.take_init(0));
    assert_eq!(r.take_sipi(0), None);
    assert!(!r.take_init(7));
}

#[test]
fn x2apic_icr_and_eoi_through_msrs() {
    let (mut r, _) = router(2);
    apic_mode(&mut r);
    r.set_apic_base(0, 0xFEE0_0000 | (1 << 11) | (1 << 10))
        .unwrap();
    r.x2apic_write(0, 0x830, (1u64 << 32) | 0x63).unwrap();
    assert_eq!(r.pending_interrupt(1), Some(0x63));
    ioapic_write(&mut r, 0x10 + 2 * 21, 0x0000_8064);
    r.set_irq(21, true);
    assert_eq!(r.acknowledge(0), Some(0x64));
    r.set_irq(21, false);
    r.x2apic_write(0, 0x80B, 0).unwrap();
    assert_eq!(r.ioapic().entry(21).unwrap() & (1 << 14), 0);
    let err = r.x2apic_read(9, 0x802).unwrap_err();
    assert_eq!(err.fault, ApicMsrFault::NoSuchVcpu);
    assert!(PcInterruptRouter::handles_msr(0x1B));
    assert!(PcInterruptRouter::handles_msr(0x83F));
    assert!(!PcInterruptRouter::handles_msr(0x10));
}

/// The Hyper-V APIC access MSRs' view (TLFS 10.3): in xAPIC mode the ICR's
/// destination is bits 63:56 and EOI/TPR are the MMIO registers; in x2APIC
/// mode they are the x2APIC MSRs, the ICR's destination bits 63:32 (the
/// layout Linux relies on when it EOIs through HV_X64_MSR_EOI in x2APIC
/// mode); a disabled APIC refuses.
#[test]
fn synthetic_apic_registers_follow_the_apic_mode() {
    let (mut r, _) = router(2);
    apic_mode(&mut r);
    assert_eq!(
        r.apic_register(0, 0x300, Some((1u64 << 56) | 0x61)),
        Some(0)
    );
    assert_eq!(r.pending_interrupt(1), Some(0x61));
    assert_eq!(r.apic_register(0, 0x300, None), Some((1u64 << 56) | 0x61));
    assert_eq!(r.apic_register(0, 0x80, Some(0x20)), Some(0));
    assert_eq!(r.apic_register(0, 0x80, None), Some(0x20));
    assert_eq!(r.acknowledge(1), Some(0x61));
    assert_eq!(r.apic_register(1, 0xB0, Some(0)), Some(0));
    assert!(!r.lapic(1).unwrap().isr_set(0x61));

    let x2 = 0xFEE0_0000 | (1 << 11) | (1 << 10);
    r.set_apic_base(0, x2).unwrap();
    r.set_apic_base(1, x2).unwrap();
    assert_eq!(
        r.apic_register(0, 0x300, Some((1u64 << 32) | 0x62)),
        Some(0)
    );
    assert_eq!(r.pending_interrupt(1), Some(0x62));
    assert_eq!(r.apic_register(0, 0x300, None), Some((1u64 << 32) | 0x62));
    assert_eq!(r.acknowledge(1), Some(0x62));
    assert_eq!(r.apic_register(1, 0xB0, Some(0)), Some(0));
    assert!(!r.lapic(1).unwrap().isr_set(0x62));
    assert_eq!(r.apic_register(1, 0x80, Some(0x30)), Some(0));
    assert_eq!(r.x2apic_read(1, 0x808), Ok(0x30));
    assert_eq!(
        r.apic_register(1, 0xB0, Some(1)),
        None,
        "x2APIC EOI takes 0"
    );
    assert_eq!(
        r.apic_register(1, 0x310, None),
        None,
        "no ICR high in x2APIC"
    );

    r.set_apic_base(1, 0xFEE0_0000).unwrap();
    assert_eq!(r.apic_register(1, 0x80, None), None, "disabled");
    assert_eq!(r.apic_register(9, 0x80, None), None, "no such vCPU");
}

/// x2APIC logical destinations (SDM Vol 3A 11.12.10.2): cluster in bits
/// 31:16, one bit per APIC in 15:0, from LDRs derived from the x2APIC IDs;
/// a cluster nobody is in reaches nobody.
#[test]
fn x2apic_logical_cluster_ipis() {
    let (mut r, _) = router(3);
    apic_mode(&mut r);
    for vcpu in 0..3 {
        r.set_apic_base(vcpu, 0xFEE0_0000 | (1 << 11) | (1 << 10))
            .unwrap();
        assert_eq!(r.x2apic_read(vcpu, 0x80D), Ok(1 << vcpu));
    }
    // Logical, cluster 0, members 1 and 2.
    r.x2apic_write(0, 0x830, (0b110u64 << 32) | (1 << 11) | 0x70)
        .unwrap();
    assert_eq!(r.pending_interrupt(0), None);
    assert_eq!(r.pending_interrupt(1), Some(0x70));
    assert_eq!(r.pending_interrupt(2), Some(0x70));
    r.x2apic_write(0, 0x830, (0x0001_0007u64 << 32) | (1 << 11) | 0x71)
        .unwrap();
    for vcpu in 0..3 {
        assert!(!r.lapic(vcpu).unwrap().irr_set(0x71), "cluster 1 is empty");
    }
}

#[test]
fn lapic_timers_report_the_next_deadline() {
    let (mut r, clock) = router(2);
    apic_mode(&mut r);
    assert_eq!(r.next_deadline_ns(), None);
    for (vcpu, count) in [(0u32, 5_000u32), (1, 3_000)] {
        lapic_write(&mut r, vcpu, 0x3E0, 0xB);
        lapic_write(&mut r, vcpu, 0x320, 0x70);
        lapic_write(&mut r, vcpu, 0x380, count);
    }
    assert_eq!(r.next_deadline_ns(), Some(3_000));
    clock.set(3_000);
    assert_eq!(r.next_deadline_ns(), Some(5_000));
    assert_eq!(r.pending_interrupt(1), Some(0x70));
    assert_eq!(r.tsc_deadline(0), Ok(0));
}

#[test]
fn reset_returns_every_controller_to_power_on() {
    let (mut r, _) = router(1);
    apic_mode(&mut r);
    ioapic_write(&mut r, 0x10 + 2 * 4, 0x34);
    r.set_irq(4, true);
    r.reset();
    assert_eq!(r.ioapic().entry(4), Some(1 << 16));
    assert_eq!(r.pic().master().imr(), 0);
    assert_eq!(r.apic_base(0), Some(0xFEE0_0900));
    assert!(!r.lapic(0).unwrap().software_enabled());
    assert_eq!(r.pending_interrupt(0), None);
}

#[test]
fn unknown_vcpus_get_nothing() {
    let (mut r, _) = router(1);
    assert_eq!(r.pending_interrupt(1), None);
    assert_eq!(r.acknowledge(1), None);
    assert!(!r.pending_nmi(1));
    assert_eq!(r.apic_base(1), None);
    assert!(r.set_apic_base(1, 0).is_err());
    let mut data = [0u8; 4];
    r.lapic_mmio_read(1, 0x30, &mut data);
    assert_eq!(data, [0xFF; 4]);
    r.lapic_mmio_write(1, 0x300, &[0; 4]);
}

#[test]
fn msi_reaches_the_lapic_it_names() {
    let (mut r, _) = router(2);
    apic_mode(&mut r);
    // Destination APIC ID 1, physical, fixed, edge, vector 0x61.
    r.send_msi(0xFEE0_1000, 0x0061);
    assert!(r.lapic(1).unwrap().irr_set(0x61));
    assert!(!r.lapic(0).unwrap().irr_set(0x61));
    assert_eq!(r.acknowledge(1), Some(0x61));
    // Physical broadcast FFh reaches both.
    r.send_msi(0xFEEF_F000, 0x0062);
    assert!(r.lapic(0).unwrap().irr_set(0x62));
    assert!(r.lapic(1).unwrap().irr_set(0x62));
    // NMI delivery mode.
    r.send_msi(0xFEE0_0000, 0x0400);
    assert!(r.pending_nmi(0));
    assert_eq!(r.msi_dropped(), 0);
}

#[test]
fn msi_outside_the_apic_window_is_dropped_counted_and_logged() {
    log_capture::start();
    let (mut r, _) = router(1);
    apic_mode(&mut r);
    for address in [0xFED0_0000, 0x1_FEE0_0000, 0x1000, 0xFFE0_0000] {
        r.send_msi(address, 0x0063);
    }
    // Start-Up is not an MSI delivery mode.
    r.send_msi(0xFEE0_0000, 0x0663);
    assert_eq!(r.pending_interrupt(0), None);
    assert_eq!(r.msi_dropped(), 5);
    assert!(log_capture::count(log::Level::Warn, "not a local APIC message") >= 1);
}

/// SeaBIOS-style routing: PIRQA-D to IRQs 10, 10, 11, 11; the 8259A in
/// PIC mode, IRQ 10/11 level-triggered through the ELCR.
fn pic_mode_with_pirqs(r: &mut PcInterruptRouter) {
    init_pic(r);
    r.pic_write(0x4D1, 0x0C); // ELCR: IRQ 10, 11 level
    r.pic_write(0x21, 0xFB); // only the cascade
    r.pic_write(0xA1, 0xF3); // IRQ 10, 11
    for (p, irq) in Pirq::ALL.into_iter().zip([10, 10, 11, 11]) {
        r.set_pirq_route(p, Some(irq));
    }
}

#[test]
fn intx_goes_through_the_pirq_route_to_the_8259a() {
    let (mut r, _) = router(1);
    pic_mode_with_pirqs(&mut r);
    let a = r.add_intx_source(Pirq::C);
    r.set_intx(a, true);
    assert_eq!(r.acknowledge(0), Some(0x70 + 3), "IRQ 11");
    r.set_intx(a, false);
    r.pic_write(0xA0, 0x20);
    r.pic_write(0x20, 0x20);
    assert_eq!(r.pending_interrupt(0), None);
    // A disabled route leads nowhere; re-routing an asserted PIRQ moves it.
    r.set_pirq_route(Pirq::C, None);
    r.set_intx(a, true);
    assert_eq!(r.pending_interrupt(0), None);
    r.set_pirq_route(Pirq::C, Some(10));
    assert_eq!(r.acknowledge(0), Some(0x70 + 2), "IRQ 10");
}

#[test]
fn shared_pci_levels_are_wired_or() {
    let (mut r, _) = router(1);
    pic_mode_with_pirqs(&mut r);
    // Two functions on PIRQA and one on PIRQB all end at IRQ 10.
    let a1 = r.add_intx_source(Pirq::A);
    let a2 = r.add_intx_source(Pirq::A);
    let b = r.add_intx_source(Pirq::B);
    r.set_intx(a1, true);
    r.set_intx(a2, true);
    r.set_intx(b, true);
    assert_eq!(r.acknowledge(0), Some(0x72));
    r.set_intx(a1, false);
    r.set_intx(b, false);
    r.pic_write(0xA0, 0x20);
    r.pic_write(0x20, 0x20);
    // a2 still holds the line: level-triggered, raised again after EOI.
    assert_eq!(r.pending_interrupt(0), Some(0x72));
    assert!(r.pirq_level(Pirq::A) && !r.pirq_level(Pirq::B));
    r.set_intx(a2, false);
    assert_eq!(r.pending_interrupt(0), None);
}

#[test]
fn intx_in_apic_mode_reaches_the_ioapic_pin_of_the_routed_irq() {
    let (mut r, _) = router(1);
    apic_mode(&mut r);
    for (p, irq) in Pirq::ALL.into_iter().zip([10, 10, 11, 11]) {
        r.set_pirq_route(p, Some(irq));
    }
    // IOAPIC pin 11: level, active high, vector 0x5B (what the MADT's
    // override for IRQ 11 tells the OS).
    ioapic_write(&mut r, 0x10 + 2 * 11, 0x0000_805B);
    let d = r.add_intx_source(Pirq::D);
    // The ISA device on IRQ 11 (none on QEMU's pc, but the line is shared).
    r.set_irq(11, true);
    r.set_intx(d, true);
    assert_eq!(r.acknowledge(0), Some(0x5B));
    r.set_irq(11, false);
    lapic_write(&mut r, 0, 0xB0, 0);
    // The PCI function still asserts: delivered again after EOI.
    assert_eq!(r.acknowledge(0), Some(0x5B));
    r.set_intx(d, false);
    lapic_write(&mut r, 0, 0xB0, 0);
    assert_eq!(r.pending_interrupt(0), None);
    assert_eq!(
        r.ioapic().entry(11).unwrap() & (1 << 14),
        0,
        "remote IRR clear"
    );
}

/// SDM Vol 3A 11.6.2: an IPI to an APIC ID nobody has reaches no one; a
/// logical cluster destination names the APICs of that cluster whose
/// member bit is set; "all including self" reaches everyone. Each APIC
/// a message reached is reported once for the VM loop to kick.
#[test]
fn ipi_destinations_and_the_vcpus_they_wake() {
    let (mut r, _) = router(4);
    apic_mode(&mut r);
    r.take_woken();
    lapic_write(&mut r, 0, 0x310, 0x0900_0000); // physical 9: absent
    lapic_write(&mut r, 0, 0x300, 0x0000_0070);
    for vcpu in 0..4 {
        assert_eq!(r.pending_interrupt(vcpu), None);
    }
    assert_eq!(r.take_woken(), 0, "an absent APIC ID wakes no one");
    // Cluster model: DFR 0FFFFFFFh; vCPU n in cluster n/2, member bit n%2.
    for vcpu in 0..4u32 {
        lapic_write(&mut r, vcpu, 0xE0, 0x0FFF_FFFF);
        let ldr = ((vcpu / 2) << 4) | (1 << (vcpu % 2));
        lapic_write(&mut r, vcpu, 0xD0, ldr << 24);
    }
    lapic_write(&mut r, 0, 0x310, 0x1200_0000); // cluster 1, member bit 1
    lapic_write(&mut r, 0, 0x300, 0x0000_0871); // fixed, logical
    assert_eq!(r.pending_interrupt(3), Some(0x71));
    for vcpu in 0..3 {
        assert_eq!(r.pending_interrupt(vcpu), None, "vCPU {vcpu}");
    }
    assert_eq!(r.take_woken(), 1 << 3);
    lapic_write(&mut r, 1, 0x300, 0x0008_0072); // all including self
    for vcpu in 0..4 {
        assert!(r.lapic(vcpu).unwrap().irr_set(0x72), "vCPU {vcpu}");
    }
    assert_eq!(r.take_woken(), 0b1111);
    assert_eq!(r.take_woken(), 0, "taken once");
}

/// A guest flooding IPIs at APIC IDs no vCPU has, and ICR values the SDM
/// calls invalid: nothing is delivered, nothing woken, and the log gets a
/// few lines naming the VM, then summaries (guest_log), not one per IPI.
#[test]
fn a_flood_of_ipis_to_absent_apics_is_dropped_and_logged_rate_limited() {
    log_capture::start();
    let (mut r, _) = router(2);
    r.set_vm_name("flood");
    apic_mode(&mut r);
    r.take_woken();
    for i in 0..10_000u32 {
        // Physical IDs 2-254 (vCPUs 0 and 1 exist; 255 is the broadcast),
        // NMI, INIT and SIPI too.
        let id = 2 + (i % 253);
        lapic_write(&mut r, 0, 0x310, id << 24);
        let mode = [0x0000_0040, 0x0000_0400, 0x0000_4500, 0x0000_4620][(i % 4) as usize];
        lapic_write(&mut r, 0, 0x300, mode);
        // NMI to self through the shorthand: invalid.
        lapic_write(&mut r, 1, 0x300, 0x0004_0400);
    }
    assert_eq!(r.take_woken(), 0, "no one was reached");
    assert!(!r.pending_nmi(0) && !r.pending_nmi(1));
    let unrouted = log_capture::count(log::Level::Warn, "reaches no local APIC");
    let refused = log_capture::count(log::Level::Warn, "sends nothing");
    assert!((4..=4 + 14).contains(&unrouted), "{unrouted} lines");
    assert!((4..=4 + 14).contains(&refused), "{refused} lines");
    assert_eq!(
        log_capture::count(
            log::Level::Warn,
            "VM 'flood': vCPU 0's IPI (Fixed, vector 0x40, Physical destination 0x2)"
        ),
        1,
        "{:?}",
        log_capture::records()
    );
    assert_eq!(
        log_capture::count(log::Level::Warn, "VM 'flood': vCPU 1 wrote ICR 0x40400"),
        refused
    );
}

/// Each reason an ICR write is refused for is logged on its own: a flood
/// of one (vector 3, fixed) still leaves the first of another (an NMI to
/// self through the shorthand) in full.
#[test]
fn one_refused_icr_flood_does_not_hide_another_reason() {
    log_capture::start();
    let (mut r, _) = router(2);
    r.set_vm_name("reasons");
    apic_mode(&mut r);
    for _ in 0..1_000 {
        lapic_write(&mut r, 0, 0x310, 0);
        lapic_write(&mut r, 0, 0x300, 0x0000_0003);
    }
    lapic_write(&mut r, 1, 0x300, 0x0004_0400);
    assert_eq!(
        log_capture::count(
            log::Level::Warn,
            "VM 'reasons': vCPU 1 wrote ICR 0x40400, which sends nothing: only fixed delivery"
        ),
        1,
        "{:?}",
        log_capture::records()
    );
}

/// NMIs are latched once per local APIC (SDM Vol 3A 6.7.1: one pending
/// while the handler runs): two sent back to back are one NMI to take.
#[test]
fn nmis_sent_back_to_back_are_latched_once() {
    let (mut r, _) = router(2);
    apic_mode(&mut r);
    for _ in 0..2 {
        lapic_write(&mut r, 0, 0x310, 0x0100_0000);
        lapic_write(&mut r, 0, 0x300, 0x0000_0400); // NMI, physical 1
    }
    assert!(r.pending_nmi(1));
    assert!(r.acknowledge_nmi(1));
    assert!(
        !r.pending_nmi(1) && !r.acknowledge_nmi(1),
        "one latched, not two"
    );
}
