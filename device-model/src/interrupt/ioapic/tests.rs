use super::*;

fn write(io: &mut IoApic, index: u8, value: u32) -> Vec<ApicMessage> {
    let mut out = Vec::new();
    io.write_register(index, value, &mut out);
    out
}

fn set(io: &mut IoApic, pin: usize, level: bool) -> Vec<ApicMessage> {
    let mut out = Vec::new();
    io.set_irq(pin, level, &mut out);
    out
}

fn eoi(io: &mut IoApic, vector: u8) -> Vec<ApicMessage> {
    let mut out = Vec::new();
    io.end_of_interrupt(vector, &mut out);
    out
}

/// Programs `pin`: low dword `low`, destination `dest`.
fn program(io: &mut IoApic, pin: u8, low: u32, dest: u8) {
    write(io, 0x11 + 2 * pin, u32::from(dest) << 24);
    write(io, 0x10 + 2 * pin, low);
}

const LEVEL: u32 = 1 << 15;
const MASK: u32 = 1 << 16;
const REMOTE_IRR: u64 = 1 << 14;

#[test]
fn id_version_and_arbitration_registers() {
    let mut io = IoApic::new();
    assert_eq!(io.read_register(0x01), 0x0017_0011);
    write(&mut io, 0x00, 0xFF00_0000);
    assert_eq!(io.read_register(0x00), 0x0F00_0000, "ID is bits 27:24");
    assert_eq!(io.read_register(0x02), 0x0F00_0000, "ARB loads from ID");
    write(&mut io, 0x01, 0);
    write(&mut io, 0x02, 0);
    assert_eq!(io.read_register(0x01), 0x0017_0011);
    assert_eq!(io.read_register(0x02), 0x0F00_0000);
    assert_eq!(io.read_register(0x03), 0);
    assert_eq!(io.read_register(0x10 + 48), 0, "past the last entry");
}

#[test]
fn entries_reset_masked() {
    let mut io = IoApic::new();
    for pin in 0..IOAPIC_PINS {
        assert_eq!(io.entry(pin), Some(1 << 16));
    }
    program(&mut io, 3, 0x31, 0);
    io.reset();
    assert_eq!(io.entry(3), Some(1 << 16));
    assert!(set(&mut io, 3, true).is_empty());
}

#[test]
fn entry_fields_become_the_message() {
    let mut io = IoApic::new();
    // Vector 41h, lowest priority, logical, active low, destination 0Ch.
    program(&mut io, 5, 0x41 | (1 << 8) | (1 << 11) | (1 << 13), 0x0C);
    assert_eq!(io.read_register(0x1A), 0x0000_2941);
    assert_eq!(io.read_register(0x1B), 0x0C00_0000);
    let out = set(&mut io, 5, true);
    assert_eq!(
        out,
        [ApicMessage {
            vector: 0x41,
            delivery: DeliveryMode::LowestPriority,
            dest_mode: DestinationMode::Logical,
            destination: Destination::Field(0x0C),
            level_triggered: false,
        }]
    );
    program(&mut io, 6, 0x700, 0);
    assert_eq!(set(&mut io, 6, true)[0].delivery, DeliveryMode::ExtInt);
    program(&mut io, 7, 0x400, 0);
    assert_eq!(set(&mut io, 7, true)[0].delivery, DeliveryMode::Nmi);
}

#[test]
fn edge_entries_send_on_rising_edges_only() {
    let mut io = IoApic::new();
    program(&mut io, 4, 0x34, 0);
    assert_eq!(set(&mut io, 4, true).len(), 1);
    assert!(set(&mut io, 4, true).is_empty(), "no edge");
    assert!(set(&mut io, 4, false).is_empty());
    assert_eq!(set(&mut io, 4, true).len(), 1);
}

#[test]
fn masked_edges_are_lost() {
    let mut io = IoApic::new();
    program(&mut io, 4, 0x34 | MASK, 0);
    assert!(set(&mut io, 4, true).is_empty());
    assert!(
        write(&mut io, 0x18, 0x34).is_empty(),
        "unmasking does not replay an edge"
    );
}

#[test]
fn level_entries_hold_remote_irr_until_eoi() {
    let mut io = IoApic::new();
    program(&mut io, 9, 0x59 | LEVEL, 0);
    let out = set(&mut io, 9, true);
    assert_eq!(out.len(), 1);
    assert!(out[0].level_triggered);
    assert_ne!(io.entry(9).unwrap() & REMOTE_IRR, 0);
    // Remote IRR blocks a second message while the line stays asserted.
    assert!(set(&mut io, 9, false).is_empty());
    assert!(set(&mut io, 9, true).is_empty());
    // An EOI for another vector changes nothing.
    assert!(eoi(&mut io, 0x60).is_empty());
    assert_ne!(io.entry(9).unwrap() & REMOTE_IRR, 0);
    // The EOI for 59h: the line is still asserted, so it is sent again.
    assert_eq!(eoi(&mut io, 0x59).len(), 1);
    assert_ne!(io.entry(9).unwrap() & REMOTE_IRR, 0);
    set(&mut io, 9, false);
    assert!(eoi(&mut io, 0x59).is_empty());
    assert_eq!(io.entry(9).unwrap() & REMOTE_IRR, 0);
}

#[test]
fn unmasking_an_asserted_level_pin_sends() {
    let mut io = IoApic::new();
    program(&mut io, 16, 0x70 | LEVEL | MASK, 0);
    assert!(set(&mut io, 16, true).is_empty());
    assert_eq!(write(&mut io, 0x30, 0x70 | LEVEL).len(), 1);
}

#[test]
fn remote_irr_and_delivery_status_are_read_only() {
    let mut io = IoApic::new();
    program(&mut io, 1, 0x21 | LEVEL | (1 << 12) | (1 << 14), 0);
    assert_eq!(io.read_register(0x12), 0x21 | LEVEL);
}

#[test]
fn switching_to_edge_clears_remote_irr() {
    let mut io = IoApic::new();
    program(&mut io, 9, 0x59 | LEVEL, 0);
    set(&mut io, 9, true);
    write(&mut io, 0x22, 0x59 | MASK);
    assert_eq!(io.entry(9).unwrap() & REMOTE_IRR, 0);
    // Back to level, unmasked, line still asserted: delivered again.
    assert_eq!(write(&mut io, 0x22, 0x59 | LEVEL).len(), 1);
}

#[test]
fn destination_takes_only_bits_63_56() {
    let mut io = IoApic::new();
    write(&mut io, 0x11, 0xFFFF_FFFF);
    assert_eq!(io.read_register(0x11), 0xFF00_0000);
}

#[test]
fn mmio_window_through_ioregsel_and_iowin() {
    let mut io = IoApic::new();
    let mut out = Vec::new();
    io.mmio_write(0x00, &[0x01], &mut out);
    let mut data = [0u8; 4];
    io.mmio_read(0x10, &mut data);
    assert_eq!(u32::from_le_bytes(data), 0x0017_0011);
    io.mmio_read(0x00, &mut data[..1]);
    assert_eq!(data[0], 0x01);
    // A byte read inside IOWIN returns that byte of the register.
    io.mmio_read(0x12, &mut data[..1]);
    assert_eq!(data[0], 0x17);
    // An 8-byte read: IOWIN, then four bytes of nothing.
    let mut wide = [0xAAu8; 8];
    io.mmio_read(0x10, &mut wide);
    assert_eq!(wide, [0x11, 0, 0x17, 0, 0, 0, 0, 0]);
    let mut other = [0xAAu8; 4];
    io.mmio_read(0x20, &mut other);
    assert_eq!(other, [0; 4]);
}

#[test]
fn narrow_iowin_writes_are_dropped() {
    let mut io = IoApic::new();
    let mut out = Vec::new();
    io.mmio_write(0x00, &0x10u32.to_le_bytes(), &mut out);
    io.mmio_write(0x10, &[0x30, 0x00], &mut out);
    io.mmio_write(0x11, &[0x30, 0x00, 0x00, 0x00], &mut out);
    assert_eq!(io.entry(0), Some(1 << 16));
    io.mmio_write(0x10, &0x30u32.to_le_bytes(), &mut out);
    assert_eq!(io.entry(0), Some(0x30));
}

#[test]
fn out_of_range_pins_are_ignored() {
    let mut io = IoApic::new();
    assert!(set(&mut io, 24, true).is_empty());
    assert!(set(&mut io, usize::MAX, true).is_empty());
}
