use super::x2apic::ApicMsrFault;
use super::*;
use crate::clock::FakeClock;
use alloc::string::ToString;
use alloc::sync::Arc;
use alloc::vec::Vec;

fn apic_with(config: LapicConfig) -> (LocalApic, Arc<FakeClock>) {
    let clock = FakeClock::new(1_000);
    (LocalApic::new(0, true, config, clock.clone()), clock)
}

fn apic() -> (LocalApic, Arc<FakeClock>) {
    apic_with(LapicConfig::default())
}

fn rd(apic: &mut LocalApic, offset: u64) -> u32 {
    let mut data = [0u8; 4];
    apic.mmio_read(offset, &mut data);
    u32::from_le_bytes(data)
}

fn wr(apic: &mut LocalApic, offset: u64, value: u32) {
    apic.mmio_write(offset, &value.to_le_bytes());
}

/// Software-enabled with spurious vector FFh.
fn enabled() -> (LocalApic, Arc<FakeClock>) {
    let (mut a, c) = apic();
    wr(&mut a, 0xF0, 0x1FF);
    (a, c)
}

fn fixed(vector: u8, level: bool) -> ApicMessage {
    ApicMessage {
        vector,
        delivery: DeliveryMode::Fixed,
        dest_mode: DestinationMode::Physical,
        destination: Destination::Field(0),
        level_triggered: level,
    }
}

fn ipis(apic: &mut LocalApic) -> Vec<ApicMessage> {
    apic.take_outputs()
        .filter_map(|o| match o {
            LapicOutput::Ipi(m) => Some(m),
            LapicOutput::EoiBroadcast(_) | LapicOutput::RefusedIcr { .. } => None,
        })
        .collect()
}

#[test]
fn power_on_state() {
    let (mut a, _) = apic();
    assert_eq!(a.apic_base(), 0xFEE0_0900);
    assert_eq!(rd(&mut a, 0x20), 0);
    assert_eq!(rd(&mut a, 0x30), 0x0005_0014);
    assert_eq!(rd(&mut a, 0xE0), 0xFFFF_FFFF);
    assert_eq!(rd(&mut a, 0xF0), 0xFF);
    assert_eq!(rd(&mut a, 0x320), 1 << 16);
    assert_eq!(rd(&mut a, 0x350), 0x700, "BSP LINT0: virtual wire");
    assert_eq!(rd(&mut a, 0x360), 1 << 16);
    let ap = LocalApic::new(3, false, LapicConfig::default(), FakeClock::new(0));
    assert_eq!(ap.apic_base(), 0xFEE0_0800);
    assert_eq!(ap.lvt(Lvt::Lint0), 1 << 16);
}

#[test]
fn irr_isr_movement_and_eoi() {
    let (mut a, _) = enabled();
    a.deliver(&fixed(0x31, false));
    assert!(a.irr_set(0x31));
    assert_eq!(rd(&mut a, 0x200 + 0x10), 1 << 17, "IRR word 1, bit 17");
    assert_eq!(a.pending_vector(), Some(0x31));
    assert!(a.irr_set(0x31), "pending_vector does not acknowledge");
    assert_eq!(a.acknowledge(), Some(0x31));
    assert!(!a.irr_set(0x31));
    assert!(a.isr_set(0x31));
    assert_eq!(rd(&mut a, 0x110), 1 << 17);
    assert_eq!(rd(&mut a, 0xA0), 0x30, "PPR = ISR class");
    wr(&mut a, 0xB0, 0);
    assert!(!a.isr_set(0x31));
    assert_eq!(rd(&mut a, 0xA0), 0);
    assert!(a.take_outputs().next().is_none(), "edge: no EOI broadcast");
}

#[test]
fn priority_classes_nest() {
    let (mut a, _) = enabled();
    a.deliver(&fixed(0x40, false));
    assert_eq!(a.acknowledge(), Some(0x40));
    a.deliver(&fixed(0x4F, false));
    assert_eq!(a.pending_vector(), None, "same class as the one in service");
    a.deliver(&fixed(0x80, false));
    assert_eq!(a.acknowledge(), Some(0x80));
    a.end_of_interrupt();
    assert!(!a.isr_set(0x80), "EOI clears the highest in-service vector");
    assert!(a.isr_set(0x40));
    a.end_of_interrupt();
    assert_eq!(a.acknowledge(), Some(0x4F));
}

#[test]
fn tpr_and_ppr() {
    let (mut a, _) = enabled();
    wr(&mut a, 0x80, 0x5A);
    assert_eq!(rd(&mut a, 0x80), 0x5A);
    assert_eq!(
        rd(&mut a, 0xA0),
        0x5A,
        "PPR = TPR when nothing is in service"
    );
    a.deliver(&fixed(0x55, false));
    assert_eq!(a.pending_vector(), None, "class 5 is not above PPR class 5");
    a.deliver(&fixed(0x61, false));
    assert_eq!(a.acknowledge(), Some(0x61));
    assert_eq!(rd(&mut a, 0xA0), 0x60);
    assert_eq!(
        rd(&mut a, 0x90),
        0x60,
        "APR: the highest of TPR, ISRV, IRRV classes"
    );
    a.end_of_interrupt();
    wr(&mut a, 0x80, 0x00);
    assert_eq!(a.acknowledge(), Some(0x55));
}

#[test]
fn cr8_is_tpr_bits_7_4() {
    let (mut a, _) = enabled();
    a.set_cr8(0x9);
    assert_eq!(rd(&mut a, 0x80), 0x90);
    wr(&mut a, 0x80, 0x7F);
    assert_eq!(a.cr8(), 7);
}

#[test]
fn level_interrupts_set_tmr_and_broadcast_their_eoi() {
    let (mut a, _) = enabled();
    a.deliver(&fixed(0x70, true));
    assert!(a.tmr_set(0x70));
    assert_eq!(rd(&mut a, 0x180 + 0x30), 1 << 16);
    a.acknowledge();
    wr(&mut a, 0xB0, 0);
    assert_eq!(
        a.take_outputs().collect::<Vec<_>>(),
        [LapicOutput::EoiBroadcast(0x70)]
    );
    a.deliver(&fixed(0x70, false));
    assert!(!a.tmr_set(0x70), "an edge acceptance clears TMR");
}

#[test]
fn esr_reads_what_the_last_write_latched() {
    let (mut a, _) = enabled();
    a.deliver(&fixed(0x05, false));
    assert!(!a.irr_set(0x05));
    assert_eq!(rd(&mut a, 0x280), 0, "not latched before a write");
    wr(&mut a, 0x280, 0);
    assert_eq!(rd(&mut a, 0x280), 1 << 6, "receive illegal vector");
    wr(&mut a, 0x280, 0);
    assert_eq!(rd(&mut a, 0x280), 0, "the write cleared it");
}

#[test]
fn errors_raise_the_error_lvt() {
    let (mut a, _) = enabled();
    wr(&mut a, 0x370, 0xFE);
    wr(&mut a, 0x300, 0x0000_0003); // fixed IPI with vector 3
    assert!(ipis(&mut a).is_empty());
    wr(&mut a, 0x280, 0);
    assert_eq!(rd(&mut a, 0x280), 1 << 5, "send illegal vector");
    assert_eq!(a.pending_vector(), Some(0xFE));
}

#[test]
fn reserved_registers_log_an_illegal_register_address() {
    let (mut a, _) = enabled();
    assert_eq!(rd(&mut a, 0x40), 0);
    wr(&mut a, 0x2F0, 0x10); // LVT CMCI: not with Max LVT 5
    wr(&mut a, 0x280, 0);
    assert_eq!(rd(&mut a, 0x280), 1 << 7);
}

#[test]
fn software_disable_masks_lvts_and_refuses_fixed_interrupts() {
    let (mut a, _) = enabled();
    wr(&mut a, 0x320, 0x40);
    wr(&mut a, 0xF0, 0xFF);
    assert!(!a.software_enabled());
    assert_eq!(rd(&mut a, 0x320), 0x0001_0040);
    wr(&mut a, 0x320, 0x40);
    assert_eq!(
        rd(&mut a, 0x320),
        0x0001_0040,
        "cannot unmask while disabled"
    );
    a.deliver(&fixed(0x40, false));
    assert!(!a.irr_set(0x40));
    a.deliver(&ApicMessage {
        delivery: DeliveryMode::Nmi,
        ..fixed(0, false)
    });
    assert!(a.nmi_pending());
    assert!(a.take_nmi());
    assert!(!a.nmi_pending());
}

#[test]
fn svr_keeps_bits_9_0_only() {
    let (mut a, _) = apic();
    wr(&mut a, 0xF0, 0xFFFF_FFFF);
    assert_eq!(rd(&mut a, 0xF0), 0x3FF);
}

#[test]
fn physical_and_logical_destinations() {
    let (mut a, _) = enabled();
    assert!(a.matches(DestinationMode::Physical, 0));
    assert!(!a.matches(DestinationMode::Physical, 1));
    assert!(a.matches(DestinationMode::Physical, 0xFF));
    wr(&mut a, 0x20, 0x0500_0000);
    assert!(a.matches(DestinationMode::Physical, 5));
    // Flat model: LDR bitmap.
    wr(&mut a, 0xD0, 0x0400_0000);
    assert_eq!(rd(&mut a, 0xD0), 0x0400_0000);
    assert!(a.matches(DestinationMode::Logical, 0x06));
    assert!(!a.matches(DestinationMode::Logical, 0x01));
    // Cluster model: cluster 2, member bit 1.
    wr(&mut a, 0xE0, 0x0000_0000);
    assert_eq!(rd(&mut a, 0xE0), 0x0FFF_FFFF);
    wr(&mut a, 0xD0, 0x2200_0000);
    assert!(a.matches(DestinationMode::Logical, 0x23));
    assert!(!a.matches(DestinationMode::Logical, 0x13));
    assert!(!a.matches(DestinationMode::Logical, 0x21));
}

#[test]
fn icr_sends_what_a_router_needs() {
    let (mut a, _) = enabled();
    wr(&mut a, 0x310, 0x0100_0000);
    assert!(ipis(&mut a).is_empty(), "writing ICR high sends nothing");
    wr(&mut a, 0x300, 0x0000_4500); // INIT, assert, physical 1
    wr(&mut a, 0x300, 0x0000_4608); // SIPI vector 08h
    wr(&mut a, 0x300, 0x000C_0031); // fixed 31h to all but self
    wr(&mut a, 0x300, 0x0004_0032); // fixed 32h to self
    let sent = ipis(&mut a);
    assert_eq!(sent.len(), 4);
    assert_eq!(sent[0].delivery, DeliveryMode::Init);
    assert_eq!(sent[0].destination, Destination::Field(1));
    assert_eq!(
        (sent[1].delivery, sent[1].vector),
        (DeliveryMode::StartUp, 0x08)
    );
    assert_eq!(sent[2].destination, Destination::AllExcludingSelf);
    assert_eq!(sent[3].destination, Destination::SelfOnly);
    assert_eq!(rd(&mut a, 0x300) & (1 << 12), 0, "delivery status idle");
    assert_eq!(rd(&mut a, 0x310), 0x0100_0000);
}

#[test]
fn invalid_icr_combinations_send_nothing() {
    let (mut a, _) = enabled();
    wr(&mut a, 0x300, 0x0004_4500); // INIT to self
    wr(&mut a, 0x300, 0x0008_0400); // NMI to all including self
    wr(&mut a, 0x300, 0x0000_8500); // INIT level de-assert
    wr(&mut a, 0x300, 0x0000_0700); // ExtINT is not an ICR mode
    wr(&mut a, 0x300, 0x0000_0003); // fixed, vector 3
    let refused: Vec<u64> = a
        .take_outputs()
        .map(|o| match o {
            LapicOutput::RefusedIcr { icr, .. } => icr,
            other => panic!("{other:?} sent"),
        })
        .collect();
    // The de-assert is dropped without a word: guests send it after INIT.
    assert_eq!(refused, [0x4_4500, 0x8_0400, 0x700, 0x3]);
    assert_eq!(rd(&mut a, 0x280), 0, "ESR latches on its next write");
    wr(&mut a, 0x280, 0);
    assert_eq!(rd(&mut a, 0x280), 1 << 5, "send illegal vector");
}

#[test]
fn init_resets_registers_but_keeps_id_and_base() {
    let (mut a, _) = enabled();
    wr(&mut a, 0x20, 0x0200_0000);
    wr(&mut a, 0x80, 0x30);
    a.deliver(&ApicMessage {
        delivery: DeliveryMode::Init,
        ..fixed(0, false)
    });
    assert!(a.take_init());
    assert_eq!(rd(&mut a, 0x20), 0x0200_0000);
    assert_eq!(rd(&mut a, 0x80), 0);
    assert_eq!(rd(&mut a, 0xF0), 0xFF);
    assert_eq!(a.apic_base(), 0xFEE0_0900);
}

#[test]
fn an_ap_takes_sipi_only_after_init() {
    let mut ap = LocalApic::new(1, false, LapicConfig::default(), FakeClock::new(0));
    let sipi = ApicMessage {
        delivery: DeliveryMode::StartUp,
        ..fixed(0x9A, false)
    };
    ap.deliver(&sipi);
    assert_eq!(ap.take_sipi(), Some(0x9A), "waiting for SIPI since reset");
    ap.deliver(&sipi);
    assert_eq!(ap.take_sipi(), None, "a second SIPI is ignored");
    ap.deliver(&ApicMessage {
        delivery: DeliveryMode::Init,
        ..fixed(0, false)
    });
    ap.deliver(&sipi);
    assert_eq!(ap.take_sipi(), Some(0x9A));
}

#[test]
fn mmio_widths_and_alignment() {
    let (mut a, _) = enabled();
    let mut b = [0u8; 1];
    a.mmio_read(0x30, &mut b);
    assert_eq!(b[0], 0x14);
    a.mmio_read(0x32, &mut b);
    assert_eq!(b[0], 0x05);
    a.mmio_read(0x34, &mut b);
    assert_eq!(b[0], 0, "bytes 4-15 of a slot read 0");
    let mut q = [0xAAu8; 8];
    a.mmio_read(0x30, &mut q);
    assert_eq!(u64::from_le_bytes(q), 0x0005_0014);
    // Straddling two slots: bytes 0x3C-0x3F are 0, 0x40-0x43 reserved.
    a.mmio_read(0x3C, &mut q);
    assert_eq!(u64::from_le_bytes(q), 0);
    // Only aligned 32-bit stores reach a register.
    a.mmio_write(0x80, &[0x20, 0]);
    a.mmio_write(0x81, &[0x20, 0, 0, 0]);
    a.mmio_write(0x80, &0x20u64.to_le_bytes());
    assert_eq!(rd(&mut a, 0x80), 0);
    // The whole page, every width, never panics.
    for offset in 0..0x1000u64 {
        for len in [1usize, 2, 3, 4, 8] {
            let mut data = [0u8; 8];
            a.mmio_read(offset, &mut data[..len]);
        }
    }
    a.mmio_read(u64::MAX, &mut q);
}

#[test]
fn read_only_registers_ignore_xapic_writes() {
    let (mut a, _) = enabled();
    for offset in [0x30u64, 0xA0, 0x100, 0x180, 0x200, 0x390] {
        let before = rd(&mut a, offset);
        wr(&mut a, offset, 0xFFFF_FFFF);
        assert_eq!(rd(&mut a, offset), before, "offset {offset:#x}");
    }
}

fn timer(apic: &mut LocalApic, lvt: u32, divide: u32, initial: u32) {
    wr(apic, 0x3E0, divide);
    wr(apic, 0x320, lvt);
    wr(apic, 0x380, initial);
}

#[test]
fn divide_configuration_encodings() {
    let (mut a, _) = enabled();
    for (dcr, div) in [
        (0x0, 2),
        (0x1, 4),
        (0x2, 8),
        (0x3, 16),
        (0x8, 32),
        (0x9, 64),
        (0xA, 128),
        (0xB, 1),
    ] {
        wr(&mut a, 0x3E0, dcr);
        assert_eq!(a.timer.divisor(), div, "DCR {dcr:#x}");
    }
    wr(&mut a, 0x3E0, 0xFFFF_FFFF);
    assert_eq!(rd(&mut a, 0x3E0), 0xB);
}

#[test]
fn one_shot_timer_counts_down_once() {
    let (mut a, clock) = enabled();
    // 1 GHz bus, divide by 2: one tick per 2 ns.
    timer(&mut a, 0x40, 0x0, 1000);
    assert_eq!(rd(&mut a, 0x390), 1000);
    assert_eq!(a.next_deadline_ns(), Some(1_000 + 2_000));
    clock.advance(600);
    assert_eq!(rd(&mut a, 0x390), 700);
    assert_eq!(a.pending_vector(), None);
    clock.advance(1_400);
    assert_eq!(a.pending_vector(), Some(0x40));
    assert_eq!(rd(&mut a, 0x390), 0);
    assert_eq!(a.next_deadline_ns(), None);
    a.acknowledge();
    a.end_of_interrupt();
    clock.advance(1_000_000);
    assert_eq!(a.pending_vector(), None, "one-shot fires once");
    assert_eq!(rd(&mut a, 0x380), 1000, "initial count reads back");
}

#[test]
fn periodic_timer_reloads() {
    let (mut a, clock) = enabled();
    timer(&mut a, 0x0002_0041, 0xB, 100); // periodic, divide by 1: 100 ns period
    clock.advance(99);
    assert_eq!(a.pending_vector(), None);
    assert_eq!(rd(&mut a, 0x390), 1);
    clock.advance(1);
    assert_eq!(a.acknowledge(), Some(0x41));
    assert_eq!(rd(&mut a, 0x390), 100);
    assert_eq!(a.next_deadline_ns(), Some(1_000 + 200));
    a.end_of_interrupt();
    clock.advance(350); // expiries at 200 and 300 and 400 merge in IRR
    assert_eq!(a.acknowledge(), Some(0x41));
    a.end_of_interrupt();
    assert_eq!(a.pending_vector(), None);
    assert_eq!(rd(&mut a, 0x390), 50);
    assert_eq!(a.next_deadline_ns(), Some(1_000 + 500));
    wr(&mut a, 0x380, 0);
    assert_eq!(a.next_deadline_ns(), None, "initial count 0 stops it");
}

#[test]
fn divide_change_keeps_the_count() {
    let (mut a, clock) = enabled();
    timer(&mut a, 0x42, 0xB, 1000);
    clock.advance(400);
    wr(&mut a, 0x3E0, 0x1); // divide by 4
    assert_eq!(rd(&mut a, 0x390), 600);
    clock.advance(400);
    assert_eq!(rd(&mut a, 0x390), 500);
    assert_eq!(a.next_deadline_ns(), Some(1_000 + 800 + 2_000));
}

#[test]
fn masked_timer_counts_but_raises_nothing() {
    let (mut a, clock) = enabled();
    timer(&mut a, 0x0001_0043, 0xB, 10);
    assert_eq!(a.next_deadline_ns(), None);
    clock.advance(100);
    assert_eq!(a.pending_vector(), None);
    assert_eq!(rd(&mut a, 0x390), 0);
}

#[test]
fn tsc_deadline_mode() {
    let config = LapicConfig {
        tsc_hz: 2_000_000_000,
        ..LapicConfig::default()
    };
    let (mut a, clock) = apic_with(config);
    wr(&mut a, 0xF0, 0x1FF);
    a.set_tsc_deadline(5_000);
    assert_eq!(a.tsc_deadline(), 0, "ignored outside TSC-deadline mode");
    wr(&mut a, 0x320, 0x0004_0044);
    wr(&mut a, 0x380, 10);
    assert_eq!(rd(&mut a, 0x380), 0, "initial count ignored");
    assert_eq!(rd(&mut a, 0x390), 0);
    // Clock at 1000 ns = TSC 2000; deadline TSC 5000 = 2500 ns.
    a.set_tsc_deadline(5_000);
    assert_eq!(a.tsc_deadline(), 5_000);
    assert_eq!(a.next_deadline_ns(), Some(2_500));
    clock.set(2_499);
    assert_eq!(a.pending_vector(), None);
    clock.set(2_500);
    assert_eq!(a.pending_vector(), Some(0x44));
    assert_eq!(a.tsc_deadline(), 0, "disarmed once it fired");
    assert_eq!(a.next_deadline_ns(), None);
    a.acknowledge();
    a.end_of_interrupt();
    // A deadline already passed fires at once; 0 disarms.
    a.set_tsc_offset(1 << 40);
    a.set_tsc_deadline(100);
    assert_eq!(a.acknowledge(), Some(0x44));
    a.set_tsc_deadline((1 << 40) + 1_000_000);
    a.set_tsc_deadline(0);
    assert_eq!(a.next_deadline_ns(), None);
}

#[test]
fn leaving_or_entering_tsc_deadline_mode_disarms() {
    let (mut a, clock) = enabled();
    timer(&mut a, 0x45, 0xB, 1000);
    wr(&mut a, 0x320, 0x0004_0045);
    assert_eq!(a.next_deadline_ns(), None);
    a.set_tsc_deadline(1_000_000);
    wr(&mut a, 0x320, 0x45);
    assert_eq!(a.next_deadline_ns(), None);
    clock.advance(10_000_000);
    assert_eq!(a.pending_vector(), None);
}

#[test]
fn tsc_deadline_bit_needs_the_feature() {
    let (mut a, _) = apic_with(LapicConfig {
        tsc_deadline: false,
        ..LapicConfig::default()
    });
    wr(&mut a, 0xF0, 0x1FF);
    wr(&mut a, 0x320, 0x0006_0046);
    assert_eq!(rd(&mut a, 0x320), 0x0002_0046);
}

fn x2(a: &mut LocalApic) {
    a.set_apic_base(0xFEE0_0000 | apic_base::EN | apic_base::EXTD)
        .unwrap();
}

#[test]
fn apic_base_transitions() {
    let (mut a, _) = apic();
    let en = 0xFEE0_0000 | apic_base::EN;
    let fault = |r: Result<(), ApicMsrError>| r.unwrap_err().fault;
    assert_eq!(fault(a.set_apic_base(en | 1)), ApicMsrFault::ReservedBits);
    assert_eq!(
        fault(a.set_apic_base(en | (1 << 40))),
        ApicMsrFault::ReservedBits
    );
    assert_eq!(
        fault(a.set_apic_base(0xFEE0_0000 | apic_base::EXTD)),
        ApicMsrFault::InvalidTransition
    );
    x2(&mut a);
    assert!(a.x2apic_mode());
    assert_eq!(
        a.apic_base() & apic_base::BSP,
        apic_base::BSP,
        "BSP flag kept"
    );
    assert_eq!(fault(a.set_apic_base(en)), ApicMsrFault::InvalidTransition);
    a.set_apic_base(0xFEE0_0000).unwrap();
    assert!(!a.globally_enabled());
    assert_eq!(
        fault(a.set_apic_base(en | apic_base::EXTD)),
        ApicMsrFault::InvalidTransition,
        "disabled to x2APIC must go through xAPIC"
    );
    a.set_apic_base(en).unwrap();
    a.set_apic_base(0xFED0_0000 | apic_base::EN).unwrap();
    assert_eq!(a.apic_base(), 0xFED0_0900);
    let (mut no_x2, _) = apic_with(LapicConfig {
        x2apic: false,
        ..LapicConfig::default()
    });
    assert_eq!(
        fault(no_x2.set_apic_base(en | apic_base::EXTD)),
        ApicMsrFault::X2apicUnsupported
    );
}

#[test]
fn global_disable_resets_the_registers_and_hides_the_page() {
    let (mut a, _) = enabled();
    wr(&mut a, 0x80, 0x40);
    a.set_apic_base(0xFEE0_0000).unwrap();
    let mut data = [0u8; 4];
    a.mmio_read(0x30, &mut data);
    assert_eq!(data, [0xFF; 4]);
    a.set_apic_base(0xFEE0_0800).unwrap();
    assert_eq!(rd(&mut a, 0x80), 0);
    assert_eq!(rd(&mut a, 0xF0), 0xFF);
}

#[test]
fn x2apic_registers_through_msrs() {
    let mut a = LocalApic::new(0x23, false, LapicConfig::default(), FakeClock::new(0));
    wr(&mut a, 0x20, 0x0700_0000);
    x2(&mut a);
    assert_eq!(
        a.read_msr(0x802),
        Ok(0x23),
        "the x2APIC ID is the initial ID"
    );
    assert_eq!(a.read_msr(0x80D), Ok(0x0002_0008), "cluster 2, bit 3");
    assert_eq!(a.read_msr(0x803), Ok(0x0005_0014));
    a.write_msr(0x80F, 0x1FF).unwrap();
    a.write_msr(0x808, 0x20).unwrap();
    assert_eq!(a.read_msr(0x808), Ok(0x20));
    assert_eq!(a.read_msr(0x80A), Ok(0x20));
    // SELF IPI.
    a.write_msr(0x83F, 0x61).unwrap();
    assert!(a.irr_set(0x61));
    assert_eq!(a.read_msr(0x820 + 3), Ok(1 << 1));
    assert_eq!(a.acknowledge(), Some(0x61));
    a.write_msr(0x80B, 0).unwrap();
    assert!(!a.isr_set(0x61));
    // The ICR is one 64-bit register with a 32-bit destination.
    a.write_msr(0x830, (0x1234_5678u64 << 32) | 0x4FE).unwrap();
    assert_eq!(a.read_msr(0x830), Ok((0x1234_5678u64 << 32) | 0x4FE));
    let sent = ipis(&mut a);
    assert_eq!(sent[0].delivery, DeliveryMode::Nmi);
    assert_eq!(sent[0].destination, Destination::Field(0x1234_5678));
    // The xAPIC page is gone.
    let mut data = [0u8; 4];
    a.mmio_read(0x20, &mut data);
    assert_eq!(data, [0xFF; 4]);
}

#[test]
fn x2apic_access_rules_raise_gp() {
    let (mut a, _) = apic();
    let fault = |r: Result<u64, ApicMsrError>| r.unwrap_err().fault;
    let wfault = |r: Result<(), ApicMsrError>| r.unwrap_err().fault;
    assert_eq!(fault(a.read_msr(0x802)), ApicMsrFault::NotX2apicMode);
    x2(&mut a);
    assert_eq!(fault(a.read_msr(0x80B)), ApicMsrFault::WriteOnly, "EOI");
    assert_eq!(
        fault(a.read_msr(0x83F)),
        ApicMsrFault::WriteOnly,
        "SELF IPI"
    );
    assert_eq!(fault(a.read_msr(0x809)), ApicMsrFault::Reserved, "no APR");
    assert_eq!(fault(a.read_msr(0x80E)), ApicMsrFault::Reserved, "no DFR");
    assert_eq!(
        fault(a.read_msr(0x831)),
        ApicMsrFault::Reserved,
        "no ICR high"
    );
    assert_eq!(fault(a.read_msr(0x82F)), ApicMsrFault::Reserved, "no CMCI");
    assert_eq!(fault(a.read_msr(0x8FF)), ApicMsrFault::Reserved);
    assert_eq!(fault(a.read_msr(0x900)), ApicMsrFault::Reserved);
    assert_eq!(wfault(a.write_msr(0x802, 1)), ApicMsrFault::ReadOnly, "ID");
    assert_eq!(wfault(a.write_msr(0x80D, 1)), ApicMsrFault::ReadOnly, "LDR");
    assert_eq!(wfault(a.write_msr(0x803, 0)), ApicMsrFault::ReadOnly);
    assert_eq!(wfault(a.write_msr(0x810, 0)), ApicMsrFault::ReadOnly);
    assert_eq!(wfault(a.write_msr(0x839, 0)), ApicMsrFault::ReadOnly);
    assert_eq!(wfault(a.write_msr(0x80B, 1)), ApicMsrFault::NonZero);
    assert_eq!(wfault(a.write_msr(0x828, 1)), ApicMsrFault::NonZero);
    assert_eq!(
        wfault(a.write_msr(0x808, 1 << 32)),
        ApicMsrFault::ReservedBits
    );
    assert!(a.write_msr(0x828, 0).is_ok());
    let msg = a.read_msr(0x80B).unwrap_err().to_string();
    assert_eq!(
        msg,
        "RDMSR 0x80b (x2APIC EOI) raises #GP(0): the register is write-only"
    );
}

/// SELF IPI (SDM 11.12.11) acts as a fixed, edge-triggered ICR IPI to
/// self: vectors 0-15 set ESR's send-illegal-vector bit, a software-disabled
/// APIC takes nothing, bits 31:8 are reserved (#GP), the ICR is untouched.
#[test]
fn x2apic_self_ipi_follows_the_icr_rules() {
    let (mut a, _) = apic();
    x2(&mut a);
    a.write_msr(0x83F, 0x40).unwrap();
    assert!(!a.irr_set(0x40), "software-disabled");
    a.write_msr(0x80F, 0x1FF).unwrap();
    a.write_msr(0x83F, 0x0F).unwrap();
    a.write_msr(0x828, 0).unwrap();
    assert_eq!(a.read_msr(0x828), Ok(1 << 5), "send illegal vector");
    assert_eq!(
        a.write_msr(0x83F, 0x141).unwrap_err().fault,
        ApicMsrFault::ReservedBits
    );
    assert!(!a.irr_set(0x41));
    a.write_msr(0x83F, 0x41).unwrap();
    assert!(a.irr_set(0x41) && !a.tmr_set(0x41));
    assert_eq!(a.read_msr(0x830), Ok(0), "the ICR is not written");
    assert!(ipis(&mut a).is_empty(), "nothing goes to the router");
}

/// INIT in x2APIC mode (SDM 11.4.7.3): the registers reset, but
/// IA32_APIC_BASE (so x2APIC mode), the x2APIC ID and the LDR derived from
/// it stay; global disable then clears the mode and the LDR.
#[test]
fn init_keeps_x2apic_mode_and_its_ldr() {
    let mut a = LocalApic::new(0x15, false, LapicConfig::default(), FakeClock::new(0));
    x2(&mut a);
    a.write_msr(0x80F, 0x1FF).unwrap();
    a.write_msr(0x808, 0x30).unwrap();
    a.deliver(&ApicMessage {
        delivery: DeliveryMode::Init,
        ..fixed(0, false)
    });
    assert!(a.x2apic_mode());
    assert_eq!(a.read_msr(0x802), Ok(0x15));
    assert_eq!(a.read_msr(0x80D), Ok(0x0001_0020), "cluster 1, bit 5");
    assert_eq!(a.read_msr(0x808), Ok(0), "TPR reset");
    assert_eq!(a.read_msr(0x80F), Ok(0xFF), "SVR reset");
    a.set_apic_base(0xFEE0_0000).unwrap();
    a.set_apic_base(0xFEE0_0000 | apic_base::EN).unwrap();
    assert!(!a.x2apic_mode());
    assert_eq!(rd(&mut a, 0xD0), 0, "xAPIC LDR after reset");
    assert_eq!(rd(&mut a, 0x20), 0x15 << 24);
}

#[test]
fn x2apic_logical_and_physical_matching() {
    let mut a = LocalApic::new(0x12, false, LapicConfig::default(), FakeClock::new(0));
    x2(&mut a);
    assert!(a.matches(DestinationMode::Physical, 0x12));
    assert!(!a.matches(DestinationMode::Physical, 0x13));
    assert!(a.matches(DestinationMode::Physical, u32::MAX));
    assert!(a.matches(DestinationMode::Logical, 0x0001_0004));
    assert!(!a.matches(DestinationMode::Logical, 0x0002_0004));
    assert!(!a.matches(DestinationMode::Logical, 0x0001_0008));
}

#[test]
fn lint_pins_follow_their_lvt() {
    let (mut a, _) = enabled();
    wr(&mut a, 0x360, 0x400); // LINT1: NMI
    a.set_lint(1, true);
    assert!(a.take_nmi());
    a.set_lint(1, true);
    assert!(!a.nmi_pending(), "edge only");
    wr(&mut a, 0x350, 0x0000_0051); // LINT0: fixed 51h
    a.set_lint(0, false);
    a.set_lint(0, true);
    assert!(a.irr_set(0x51));
    wr(&mut a, 0x350, 0x700);
    assert!(a.extint_requested());
    wr(&mut a, 0x350, 0x0001_0700);
    assert!(!a.extint_requested(), "masked");
    a.set_lint(7, true);
}
