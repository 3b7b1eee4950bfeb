use super::*;

/// The pair as a BIOS leaves it: master at 08h, slave at 70h, edge, normal EOI.
fn bios_pic() -> DualPic {
    bios_pic_icw4(0x01)
}

fn bios_pic_icw4(icw4: u8) -> DualPic {
    let mut pic = DualPic::new();
    for (port, icw2, icw3) in [(0x20u16, 0x08u8, 0x04u8), (0xA0, 0x70, 0x02)] {
        pic.write_port(port, 0x11);
        pic.write_port(port + 1, icw2);
        pic.write_port(port + 1, icw3);
        pic.write_port(port + 1, icw4);
    }
    pic
}

fn pulse(pic: &mut DualPic, irq: u8) {
    pic.set_irq(irq, true);
    pic.set_irq(irq, false);
}

#[test]
fn master_irq_returns_its_vector() {
    let mut pic = bios_pic();
    pulse(&mut pic, 1);
    assert!(pic.intr());
    assert_eq!(pic.pending_vector(), Some(0x09));
    assert_eq!(pic.acknowledge(), 0x09);
    assert!(!pic.intr());
    assert_eq!(pic.master().isr(), 0x02);
}

#[test]
fn slave_irq_cascades_through_master_ir2() {
    let mut pic = bios_pic();
    pulse(&mut pic, 10);
    assert!(pic.intr());
    assert_eq!(pic.pending_vector(), Some(0x72));
    assert_eq!(pic.acknowledge(), 0x72);
    assert_eq!(pic.master().isr(), 0x04);
    assert_eq!(pic.slave().isr(), 0x04);
    // A second slave IRQ waits for both EOIs (fully nested mode).
    pulse(&mut pic, 9);
    assert!(!pic.intr());
    pic.write_port(0xA0, 0x20);
    assert!(!pic.intr(), "master IR2 is still in service");
    pic.write_port(0x20, 0x20);
    assert_eq!(pic.acknowledge(), 0x71);
}

#[test]
fn special_fully_nested_mode_lets_a_higher_slave_irq_through() {
    let mut pic = bios_pic_icw4(0x11); // 8086, SFNM on both
    pulse(&mut pic, 12);
    assert_eq!(pic.acknowledge(), 0x74);
    pulse(&mut pic, 9);
    assert_eq!(pic.pending_vector(), Some(0x71));
    assert_eq!(pic.acknowledge(), 0x71);
    pulse(&mut pic, 13);
    assert!(!pic.intr(), "lower than IRQ 12 in service on the slave");
}

#[test]
fn nothing_to_acknowledge_is_spurious_irq7() {
    let mut pic = bios_pic();
    assert_eq!(pic.pending_vector(), None);
    assert_eq!(pic.acknowledge(), 0x0F);
    assert_eq!(pic.master().isr(), 0);
}

#[test]
fn a_slave_request_gone_before_inta_takes_the_cascade_request_with_it() {
    let mut pic = bios_pic();
    pic.write_port(0x4D1, 0x04); // IRQ 10 level
    pic.set_irq(10, true);
    assert!(pic.intr());
    pic.set_irq(10, false);
    assert!(
        !pic.intr(),
        "the slave's INT fell, so master IR2 no longer requests"
    );
    assert_eq!(pic.master().irr(), 0);
    assert_eq!(
        pic.acknowledge(),
        0x0F,
        "an INTA now is the master's spurious IRQ 7"
    );
    assert_eq!(pic.master().isr(), 0);
}

#[test]
fn elcr_reserved_bits_read_zero() {
    let mut pic = DualPic::new();
    pic.write_port(0x4D0, 0xFF);
    pic.write_port(0x4D1, 0xFF);
    assert_eq!(pic.read_port(0x4D0), 0xF8);
    assert_eq!(pic.read_port(0x4D1), 0xDE);
}

#[test]
fn irq0_stays_edge_triggered_whatever_elcr_says() {
    let mut pic = bios_pic();
    pic.write_port(0x4D0, 0xFF);
    pic.set_irq(0, true);
    assert_eq!(pic.acknowledge(), 0x08);
    pic.write_port(0x20, 0x20);
    assert!(
        !pic.intr(),
        "still high, but an edge input needs a new edge"
    );
}

#[test]
fn level_irq_reasserts_after_eoi_while_high() {
    let mut pic = bios_pic();
    pic.write_port(0x4D1, 0x08); // IRQ 11 level
    pic.set_irq(11, true);
    assert_eq!(pic.acknowledge(), 0x73);
    pic.write_port(0xA0, 0x20);
    pic.write_port(0x20, 0x20);
    assert_eq!(pic.acknowledge(), 0x73, "still asserted after the EOIs");
    // The handler quiets the device, then EOIs: nothing more.
    pic.set_irq(11, false);
    pic.write_port(0xA0, 0x20);
    pic.write_port(0x20, 0x20);
    assert!(!pic.intr());
}

#[test]
fn ports_read_imr_irr_isr() {
    let mut pic = bios_pic();
    pic.write_port(0x21, 0xB8);
    pic.write_port(0xA1, 0x8E);
    assert_eq!(pic.read_port(0x21), 0xB8);
    assert_eq!(pic.read_port(0xA1), 0x8E);
    pulse(&mut pic, 0);
    assert_eq!(pic.read_port(0x20), 0x01);
    pic.acknowledge();
    pic.write_port(0x20, 0x0B);
    assert_eq!(pic.read_port(0x20), 0x01);
    assert_eq!(pic.read_port(0x22), 0xFF);
}

#[test]
fn irq2_is_not_an_input() {
    let mut pic = bios_pic();
    pic.set_irq(2, true);
    pic.set_irq(16, true);
    assert!(!pic.intr());
}

#[test]
fn reset_clears_programming_and_elcr() {
    let mut pic = bios_pic();
    pic.write_port(0x4D0, 0x20);
    pic.write_port(0x21, 0xFF);
    pic.reset();
    assert_eq!(pic.read_port(0x4D0), 0);
    assert_eq!(pic.read_port(0x21), 0);
    assert_eq!(pic.spurious_vector(), 0x07);
}
