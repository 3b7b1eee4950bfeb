use super::*;

/// A chip initialized the way a PC BIOS does it: edge, cascade, 8086 mode,
/// vectors from `base`.
fn chip(base: u8) -> Pic8259 {
    let mut pic = Pic8259::new(PicRole::Master, 0xF8);
    pic.write(false, 0x11); // ICW1: IC4, cascade
    pic.write(true, base); // ICW2
    pic.write(true, 0x04); // ICW3
    pic.write(true, 0x01); // ICW4: 8086
    pic
}

fn pulse(pic: &mut Pic8259, ir: u8) {
    pic.set_input(ir, true);
    pic.set_input(ir, false);
}

#[test]
fn icw_sequence_sets_the_vector_base_and_then_a0_1_is_imr() {
    let mut pic = chip(0x20);
    assert_eq!(pic.imr(), 0, "ICW1 clears IMR");
    pic.write(true, 0xA5);
    assert_eq!(pic.read(true), 0xA5);
    pic.write(true, 0);
    pulse(&mut pic, 3);
    assert_eq!(pic.acknowledge().map(|ir| pic.vector(ir)), Some(0x23));
}

#[test]
fn single_mode_without_icw4_skips_icw3_and_icw4() {
    let mut pic = Pic8259::new(PicRole::Master, 0xF8);
    pic.write(false, 0x12); // SNGL, no IC4
    pic.write(true, 0x40); // ICW2
    pic.write(true, 0x7F); // now OCW1
    assert_eq!(pic.imr(), 0x7F);
    assert_eq!(pic.vector(7), 0x47);
}

#[test]
fn icw2_low_bits_are_the_ir_number_not_the_base() {
    let pic = chip(0x0F);
    assert_eq!(pic.vector(0), 0x08);
    assert_eq!(pic.vector(7), 0x0F);
}

#[test]
fn icw1_clears_imr_and_needs_a_new_edge() {
    let mut pic = chip(0x08);
    pic.write(true, 0xFF);
    pic.set_input(1, true);
    assert_eq!(pic.irr(), 0x02);
    // Reinitialize with IR1 still high: the edge sense circuit is reset.
    pic.write(false, 0x11);
    pic.write(true, 0x08);
    pic.write(true, 0x04);
    pic.write(true, 0x01);
    assert_eq!(pic.imr(), 0);
    assert_eq!(pic.irr(), 0);
    assert!(!pic.int_output());
    pic.set_input(1, false);
    pic.set_input(1, true);
    assert!(pic.int_output());
}

#[test]
fn edges_are_latched_until_acknowledged() {
    let mut pic = chip(0x08);
    pulse(&mut pic, 4);
    assert_eq!(pic.irr(), 0x10);
    assert_eq!(pic.acknowledge(), Some(4));
    assert_eq!(pic.irr(), 0);
    assert_eq!(pic.isr(), 0x10);
}

#[test]
fn fully_nested_priority_blocks_lower_and_admits_higher() {
    let mut pic = chip(0x08);
    pulse(&mut pic, 5);
    pulse(&mut pic, 3);
    assert_eq!(pic.acknowledge(), Some(3));
    assert!(!pic.int_output(), "IR5 waits behind IR3 in service");
    pulse(&mut pic, 1);
    assert_eq!(pic.acknowledge(), Some(1), "IR1 preempts IR3");
    assert_eq!(pic.isr(), 0x0A);
    pic.write(false, 0x20); // non-specific EOI: IR1
    assert_eq!(pic.isr(), 0x08);
    assert!(!pic.int_output());
    pic.write(false, 0x20); // IR3
    assert_eq!(pic.acknowledge(), Some(5));
}

#[test]
fn specific_eoi_clears_only_the_named_level() {
    let mut pic = chip(0x08);
    pulse(&mut pic, 6);
    pic.acknowledge();
    pulse(&mut pic, 2);
    pic.acknowledge();
    assert_eq!(pic.isr(), 0x44);
    pic.write(false, 0x60 | 6); // specific EOI IR6
    assert_eq!(pic.isr(), 0x04);
}

#[test]
fn masked_requests_wait_in_irr() {
    let mut pic = chip(0x08);
    pic.write(true, 0x01);
    pulse(&mut pic, 0);
    assert_eq!(pic.irr(), 0x01);
    assert!(!pic.int_output());
    pic.write(true, 0x00);
    assert_eq!(pic.acknowledge(), Some(0));
}

#[test]
fn rotate_on_non_specific_eoi_makes_the_served_level_lowest() {
    let mut pic = chip(0x08);
    pulse(&mut pic, 3);
    assert_eq!(pic.acknowledge(), Some(3));
    pic.write(false, 0xA0); // rotate on non-specific EOI
    pulse(&mut pic, 2);
    pulse(&mut pic, 4);
    assert_eq!(
        pic.acknowledge(),
        Some(4),
        "IR4 now has the highest priority"
    );
    pic.write(false, 0xA0);
    assert_eq!(pic.acknowledge(), Some(2));
}

#[test]
fn rotate_on_specific_eoi_and_set_priority() {
    let mut pic = chip(0x08);
    pulse(&mut pic, 6);
    pic.acknowledge();
    pic.write(false, 0xE0 | 6); // rotate on specific EOI, IR6 lowest
    assert_eq!(pic.isr(), 0);
    pulse(&mut pic, 6);
    pulse(&mut pic, 7);
    pulse(&mut pic, 0);
    assert_eq!(pic.acknowledge(), Some(7));
    pic.write(false, 0x20);
    pic.write(false, 0xC0 | 1); // set priority: IR1 lowest, IR2 highest
    pulse(&mut pic, 1);
    pulse(&mut pic, 2);
    assert_eq!(pic.acknowledge(), Some(2));
}

#[test]
fn automatic_eoi_sets_no_isr_bit_and_can_rotate() {
    let mut pic = Pic8259::new(PicRole::Master, 0xF8);
    pic.write(false, 0x11);
    pic.write(true, 0x08);
    pic.write(true, 0x04);
    pic.write(true, 0x03); // 8086, AEOI
    pulse(&mut pic, 5);
    assert_eq!(pic.acknowledge(), Some(5));
    assert_eq!(pic.isr(), 0);
    pic.write(false, 0x80); // rotate in AEOI mode (set)
    pulse(&mut pic, 2);
    assert_eq!(pic.acknowledge(), Some(2));
    pulse(&mut pic, 1);
    pulse(&mut pic, 3);
    assert_eq!(
        pic.acknowledge(),
        Some(3),
        "IR2 was made lowest, IR3 highest"
    );
    pic.write(false, 0x00); // rotate in AEOI mode (clear)
    pulse(&mut pic, 0);
    assert_eq!(
        pic.acknowledge(),
        Some(0),
        "priority stays where rotation left it"
    );
    assert_eq!(pic.acknowledge(), Some(1));
}

#[test]
fn special_mask_mode_admits_lower_levels() {
    let mut pic = chip(0x08);
    pulse(&mut pic, 3);
    pic.acknowledge();
    pulse(&mut pic, 5);
    assert!(!pic.int_output());
    pic.write(true, 0x08); // mask IR3
    assert!(!pic.int_output(), "a mask alone does not unblock");
    pic.write(false, 0x68); // OCW3: set special mask
    assert_eq!(pic.acknowledge(), Some(5));
    // A non-specific EOI skips the masked IS bit of IR3.
    pic.write(false, 0x20);
    assert_eq!(pic.isr(), 0x08);
    pic.write(false, 0x48); // OCW3: reset special mask
    pulse(&mut pic, 6);
    assert!(!pic.int_output());
}

#[test]
fn ocw3_selects_irr_or_isr_for_reads() {
    let mut pic = chip(0x08);
    pulse(&mut pic, 2);
    pulse(&mut pic, 4);
    pic.acknowledge();
    assert_eq!(pic.read(false), 0x10, "IRR after ICW1");
    pic.write(false, 0x0B);
    assert_eq!(pic.read(false), 0x04);
    pic.write(false, 0x08); // RR = 0: no change
    assert_eq!(pic.read(false), 0x04);
    pic.write(false, 0x0A);
    assert_eq!(pic.read(false), 0x10);
}

#[test]
fn poll_command_acknowledges_on_the_next_read() {
    let mut pic = chip(0x08);
    pic.write(false, 0x0C);
    assert_eq!(pic.read(false), 0x00, "nothing pending: I = 0");
    pulse(&mut pic, 6);
    pic.write(false, 0x0C);
    assert_eq!(pic.read(true), 0x86);
    assert_eq!(pic.isr(), 0x40);
    assert_eq!(pic.read(true), 0x00, "the poll is spent; IMR reads again");
}

#[test]
fn level_inputs_request_while_high() {
    let mut pic = chip(0x08);
    pic.set_elcr(0x20);
    pic.set_input(5, true);
    assert_eq!(pic.acknowledge(), Some(5));
    assert_eq!(pic.irr(), 0x20, "a level request stays in IRR");
    pic.write(false, 0x20);
    assert_eq!(
        pic.highest_request(),
        Some(5),
        "still high after EOI: again"
    );
    pic.set_input(5, false);
    assert_eq!(pic.irr(), 0);
    assert!(!pic.int_output());
}

#[test]
fn a_level_request_gone_before_inta_is_spurious() {
    let mut pic = chip(0x08);
    pic.set_elcr(0x10);
    pic.set_input(4, true);
    assert!(pic.int_output());
    pic.set_input(4, false);
    assert_eq!(pic.acknowledge(), None);
    assert_eq!(pic.isr(), 0);
}

#[test]
fn elcr_keeps_reserved_bits_clear() {
    let mut pic = Pic8259::new(PicRole::Master, 0xF8);
    pic.set_elcr(0xFF);
    assert_eq!(pic.elcr(), 0xF8);
}

#[test]
fn reset_returns_to_power_on_state() {
    let mut pic = chip(0x08);
    pic.set_elcr(0x80);
    pic.write(true, 0x0F);
    pulse(&mut pic, 6);
    pic.acknowledge();
    pic.reset();
    assert_eq!((pic.irr(), pic.isr(), pic.imr(), pic.elcr()), (0, 0, 0, 0));
    assert_eq!(pic.vector(0), 0);
}
