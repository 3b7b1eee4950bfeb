use super::*;
use alloc::sync::Arc;
use alloc::vec;
use alloc::vec::Vec;
use spin::Mutex;

const RBR: u64 = 0;
const THR: u64 = 0;
const DLL: u64 = 0;
const IER: u64 = 1;
const DLM: u64 = 1;
const IIR: u64 = 2;
const FCR: u64 = 2;
const LCR: u64 = 3;
const MCR: u64 = 4;
const LSR: u64 = 5;
const MSR: u64 = 6;
const SCR: u64 = 7;

const BASE: u64 = 0x3F8;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl CharSink for Captured {
    fn write_byte(&mut self, byte: u8) {
        self.0.lock().push(byte);
    }
}

impl Captured {
    fn bytes(&self) -> Vec<u8> {
        self.0.lock().clone()
    }
}

fn uart() -> (Uart16550, Captured) {
    let out = Captured::default();
    (Uart16550::new(Box::new(out.clone())), out)
}

fn rd(u: &mut Uart16550, offset: u64) -> u8 {
    let mut b = [0u8; 1];
    u.read(BASE, offset, &mut b);
    b[0]
}

fn wr(u: &mut Uart16550, offset: u64, value: u8) {
    u.write(BASE, offset, &[value]);
}

#[test]
fn reset_state_matches_the_datasheet() {
    let (mut u, _) = uart();
    assert_eq!(rd(&mut u, IER), 0);
    assert_eq!(rd(&mut u, IIR), 0x01);
    assert_eq!(rd(&mut u, LCR), 0);
    assert_eq!(rd(&mut u, MCR), 0);
    assert_eq!(rd(&mut u, LSR), 0x60);
    // Host lines: CTS, DSR, DCD asserted; no deltas.
    assert_eq!(rd(&mut u, MSR), 0xB0);
    assert!(!u.irq_pending());
}

#[test]
fn thr_write_goes_to_the_sink_and_transmitter_reads_empty() {
    let (mut u, out) = uart();
    for &b in b"Hi\n" {
        wr(&mut u, THR, b);
        assert_eq!(rd(&mut u, LSR) & 0x60, 0x60, "THRE and TEMT after {b:#x}");
    }
    assert_eq!(out.bytes(), b"Hi\n");
}

#[test]
fn rbr_returns_received_bytes_and_dr_follows() {
    let (mut u, _) = uart();
    assert!(u.receive(b'x'));
    assert_eq!(rd(&mut u, LSR) & 0x01, 0x01);
    assert_eq!(rd(&mut u, RBR), b'x');
    assert_eq!(rd(&mut u, LSR) & 0x01, 0);
}

#[test]
fn ier_keeps_only_the_four_enable_bits() {
    let (mut u, _) = uart();
    wr(&mut u, IER, 0xFF);
    assert_eq!(rd(&mut u, IER), 0x0F);
    wr(&mut u, IER, 0x05);
    assert_eq!(rd(&mut u, IER), 0x05);
}

#[test]
fn dlab_switches_offsets_0_and_1_to_the_divisor_latch() {
    let (mut u, out) = uart();
    assert_eq!(u.divisor(), 12);
    wr(&mut u, IER, 0x03);
    wr(&mut u, LCR, 0x83);
    assert_eq!(rd(&mut u, LCR), 0x83);
    wr(&mut u, DLL, 0x01);
    wr(&mut u, DLM, 0x02);
    assert_eq!(rd(&mut u, DLL), 0x01);
    assert_eq!(rd(&mut u, DLM), 0x02);
    assert_eq!(u.divisor(), 0x0201);
    // Nothing was transmitted and IER was untouched.
    assert!(out.bytes().is_empty());
    wr(&mut u, LCR, 0x03);
    assert_eq!(rd(&mut u, IER), 0x03);
    assert_eq!(u.divisor(), 0x0201);
    // DLAB clear again: offset 0 is THR / RBR.
    wr(&mut u, THR, b'a');
    assert_eq!(out.bytes(), b"a");
    u.receive(b'b');
    assert_eq!(rd(&mut u, RBR), b'b');
}

#[test]
fn dlab_read_of_offset_0_does_not_consume_received_data() {
    let (mut u, _) = uart();
    u.receive(b'q');
    wr(&mut u, LCR, 0x80);
    assert_eq!(rd(&mut u, DLL), 12);
    wr(&mut u, LCR, 0x00);
    assert_eq!(rd(&mut u, RBR), b'q');
}

#[test]
fn scratch_register_holds_any_value() {
    let (mut u, _) = uart();
    for v in [0x00, 0x55, 0xAA, 0xFF] {
        wr(&mut u, SCR, v);
        assert_eq!(rd(&mut u, SCR), v);
    }
}

#[test]
fn lcr_holds_all_eight_bits() {
    let (mut u, _) = uart();
    wr(&mut u, LCR, 0x7F);
    assert_eq!(rd(&mut u, LCR), 0x7F);
}

#[test]
fn mcr_keeps_five_bits() {
    let (mut u, _) = uart();
    wr(&mut u, MCR, 0xFF);
    assert_eq!(rd(&mut u, MCR), 0x1F);
}

#[test]
fn lsr_and_msr_writes_are_ignored() {
    let (mut u, _) = uart();
    wr(&mut u, LSR, 0x00);
    wr(&mut u, MSR, 0x00);
    assert_eq!(rd(&mut u, LSR), 0x60);
    assert_eq!(rd(&mut u, MSR), 0xB0);
}

#[test]
fn fcr_enables_fifos_and_iir_shows_it() {
    let (mut u, _) = uart();
    wr(&mut u, FCR, 0x01);
    assert_eq!(rd(&mut u, IIR), 0xC1);
    wr(&mut u, FCR, 0x00);
    assert_eq!(rd(&mut u, IIR), 0x01);
}

#[test]
fn fifo_holds_sixteen_bytes_then_overruns() {
    let (mut u, _) = uart();
    wr(&mut u, FCR, 0x07);
    for i in 0..16u8 {
        assert!(u.receive(i), "byte {i}");
    }
    assert!(!u.receive(99));
    let lsr = rd(&mut u, LSR);
    assert_eq!(lsr & 0x03, 0x03, "DR and OE: {lsr:#x}");
    // OE is cleared by the read; the overrun byte was lost.
    assert_eq!(rd(&mut u, LSR) & 0x02, 0);
    let got: Vec<u8> = (0..16).map(|_| rd(&mut u, RBR)).collect();
    assert_eq!(got, (0..16).collect::<Vec<u8>>());
    assert_eq!(rd(&mut u, LSR) & 0x01, 0);
}

#[test]
fn non_fifo_mode_holds_one_byte_and_overrun_overwrites_it() {
    let (mut u, _) = uart();
    assert!(u.receive(1));
    assert!(!u.receive(2));
    assert_eq!(rd(&mut u, LSR) & 0x03, 0x03);
    assert_eq!(rd(&mut u, RBR), 2);
    assert_eq!(rd(&mut u, LSR) & 0x03, 0x00);
}

#[test]
fn rcvr_fifo_reset_discards_received_data() {
    let (mut u, _) = uart();
    wr(&mut u, FCR, 0x01);
    u.receive(1);
    u.receive(2);
    wr(&mut u, FCR, 0x03);
    assert_eq!(rd(&mut u, LSR) & 0x01, 0);
    // FIFO mode stays on after the self-clearing reset bit.
    assert_eq!(rd(&mut u, IIR) & 0xC0, 0xC0);
}

#[test]
fn changing_fifo_enable_clears_the_fifo() {
    let (mut u, _) = uart();
    wr(&mut u, FCR, 0x01);
    u.receive(1);
    wr(&mut u, FCR, 0x00);
    assert_eq!(rd(&mut u, LSR) & 0x01, 0);
    u.receive(2);
    wr(&mut u, FCR, 0x01);
    assert_eq!(rd(&mut u, LSR) & 0x01, 0);
    // Rewriting FCR0 = 1 without a reset bit keeps the data.
    u.receive(3);
    wr(&mut u, FCR, 0x01);
    assert_eq!(rd(&mut u, RBR), 3);
}

#[test]
fn fcr_bits_other_than_enable_need_fcr0_set() {
    let (mut u, _) = uart();
    wr(&mut u, FCR, 0x01);
    wr(&mut u, IER, 0x01);
    // Trigger 4 is ignored because FCR0 is 0 in this write: it disables FIFOs.
    wr(&mut u, FCR, 0x40);
    assert_eq!(rd(&mut u, IIR), 0x01);
    u.receive(1);
    // 16450 mode: one byte is Received Data Available, no FIFO bits.
    assert_eq!(rd(&mut u, IIR), 0x04);
}

#[test]
fn receive_trigger_level_selects_rda_or_timeout() {
    for (fcr_value, level) in [(0x01u8, 1usize), (0x41, 4), (0x81, 8), (0xC1, 14)] {
        let (mut u, _) = uart();
        wr(&mut u, FCR, fcr_value);
        wr(&mut u, IER, 0x01);
        for i in 0..level {
            assert_eq!(
                rd(&mut u, IIR),
                if i == 0 { 0xC1 } else { 0xCC },
                "level {level}, {i} bytes"
            );
            u.receive(i as u8);
        }
        assert_eq!(rd(&mut u, IIR), 0xC4, "level {level} reached");
        // Reading one byte drops below the trigger: timeout indication.
        rd(&mut u, RBR);
        let expect = if level == 1 { 0xC1 } else { 0xCC };
        assert_eq!(rd(&mut u, IIR), expect, "level {level} after a read");
    }
}

#[test]
fn received_data_interrupt_needs_erbfi_and_clears_on_read() {
    let (mut u, _) = uart();
    wr(&mut u, MCR, 0x08);
    u.receive(b'k');
    assert_eq!(rd(&mut u, IIR), 0x01);
    assert!(!u.irq_pending());
    wr(&mut u, IER, 0x01);
    assert_eq!(rd(&mut u, IIR), 0x04);
    assert!(u.irq_pending());
    rd(&mut u, RBR);
    assert_eq!(rd(&mut u, IIR), 0x01);
    assert!(!u.irq_pending());
}

#[test]
fn irq_output_is_gated_by_out2() {
    let (mut u, _) = uart();
    wr(&mut u, IER, 0x01);
    u.receive(1);
    assert!(!u.irq_pending());
    wr(&mut u, MCR, 0x08);
    assert!(u.irq_pending());
    wr(&mut u, MCR, 0x03);
    assert!(!u.irq_pending());
}

#[test]
fn thre_interrupt_rules() {
    let (mut u, _) = uart();
    wr(&mut u, MCR, 0x08);
    // ETBEI newly set while THR is empty: THRE pending.
    wr(&mut u, IER, 0x02);
    assert!(u.irq_pending());
    // Reading IIR with THRE as the source clears it.
    assert_eq!(rd(&mut u, IIR), 0x02);
    assert_eq!(rd(&mut u, IIR), 0x01);
    assert!(!u.irq_pending());
    // Rewriting IER with ETBEI already set does not re-arm it.
    wr(&mut u, IER, 0x02);
    assert_eq!(rd(&mut u, IIR), 0x01);
    // Clearing and setting ETBEI does.
    wr(&mut u, IER, 0x00);
    wr(&mut u, IER, 0x02);
    assert_eq!(rd(&mut u, IIR), 0x02);
    // A THR write clears it and the instant transmission re-arms it.
    wr(&mut u, THR, b'z');
    assert!(u.irq_pending());
    assert_eq!(rd(&mut u, IIR), 0x02);
    assert_eq!(rd(&mut u, IIR), 0x01);
}

#[test]
fn thre_is_not_cleared_by_an_iir_read_that_reports_a_higher_source() {
    let (mut u, _) = uart();
    wr(&mut u, IER, 0x03);
    u.receive(7);
    assert_eq!(rd(&mut u, IIR), 0x04);
    rd(&mut u, RBR);
    // THRE was pending behind RDA and is still there.
    assert_eq!(rd(&mut u, IIR), 0x02);
    assert_eq!(rd(&mut u, IIR), 0x01);
}

#[test]
fn thre_pending_without_etbei_does_not_interrupt() {
    let (mut u, _) = uart();
    wr(&mut u, THR, b'a');
    assert_eq!(rd(&mut u, IIR), 0x01);
}

#[test]
fn interrupt_priority_order() {
    let (mut u, _) = uart();
    wr(&mut u, FCR, 0x01);
    // All four sources pending: line status (overrun in 16450 mode below),
    // received data, THRE, modem status (a loopback change).
    wr(&mut u, MCR, 0x10);
    wr(&mut u, MCR, 0x00);
    wr(&mut u, FCR, 0x00);
    u.receive(1);
    u.receive(2);
    wr(&mut u, IER, 0x0F);
    assert_eq!(rd(&mut u, IIR), 0x06, "receiver line status first");
    rd(&mut u, LSR);
    assert_eq!(rd(&mut u, IIR), 0x04, "then received data");
    rd(&mut u, RBR);
    assert_eq!(rd(&mut u, IIR), 0x02, "then THRE");
    assert_eq!(rd(&mut u, IIR), 0x00, "then modem status");
    rd(&mut u, MSR);
    assert_eq!(rd(&mut u, IIR), 0x01, "then nothing");
}

#[test]
fn line_status_interrupt_needs_elsi() {
    let (mut u, _) = uart();
    u.receive(1);
    u.receive(2);
    wr(&mut u, IER, 0x01);
    assert_eq!(rd(&mut u, IIR), 0x04);
    wr(&mut u, IER, 0x05);
    assert_eq!(rd(&mut u, IIR), 0x06);
}

#[test]
fn break_sets_bi_and_the_fifo_error_bit() {
    let (mut u, _) = uart();
    wr(&mut u, FCR, 0x01);
    wr(&mut u, IER, 0x04);
    u.receive(b'a');
    assert!(u.receive_break());
    u.receive(b'b');
    // The break character is not at the top yet: no BI, but bit 7 is set.
    let lsr = rd(&mut u, LSR);
    assert_eq!(lsr & 0x10, 0);
    assert_eq!(lsr & 0x80, 0x80);
    assert_eq!(rd(&mut u, IIR), 0xC1);
    assert_eq!(rd(&mut u, RBR), b'a');
    // Now it is: BI shows and raises Receiver Line Status.
    assert_eq!(rd(&mut u, IIR), 0xC6);
    assert_eq!(rd(&mut u, LSR), 0x80 | 0x60 | 0x10 | 0x01);
    assert_eq!(rd(&mut u, IIR), 0xC1);
    assert_eq!(rd(&mut u, RBR), 0);
    // No error left in the FIFO.
    assert_eq!(rd(&mut u, LSR), 0x60 | 0x01);
    assert_eq!(rd(&mut u, RBR), b'b');
}

#[test]
fn fifo_error_bit_is_zero_in_16450_mode() {
    let (mut u, _) = uart();
    u.receive_break();
    assert_eq!(rd(&mut u, LSR), 0x60 | 0x10 | 0x01);
}

#[test]
fn loopback_sends_thr_to_the_receiver_not_the_sink() {
    let (mut u, out) = uart();
    wr(&mut u, MCR, 0x10);
    wr(&mut u, THR, 0x5A);
    assert!(out.bytes().is_empty());
    assert_eq!(rd(&mut u, LSR) & 0x61, 0x61);
    assert_eq!(rd(&mut u, RBR), 0x5A);
    // The serial input is disconnected in loopback.
    assert!(!u.receive(1));
    assert_eq!(rd(&mut u, LSR) & 0x01, 0);
    wr(&mut u, MCR, 0x00);
    wr(&mut u, THR, 0x5B);
    assert_eq!(out.bytes(), vec![0x5B]);
}

#[test]
fn loopback_overrun_sets_oe() {
    let (mut u, _) = uart();
    wr(&mut u, MCR, 0x10);
    wr(&mut u, THR, 1);
    wr(&mut u, THR, 2);
    assert_eq!(rd(&mut u, LSR) & 0x03, 0x03);
    assert_eq!(rd(&mut u, RBR), 2);
}

#[test]
fn loopback_reflects_mcr_outputs_into_msr() {
    let (mut u, _) = uart();
    wr(&mut u, MCR, 0x10);
    // Entering loopback with all outputs off: CTS, DSR, DCD drop.
    assert_eq!(rd(&mut u, MSR), 0x01 | 0x02 | 0x08);
    assert_eq!(rd(&mut u, MSR), 0x00);
    // RTS -> CTS, DTR -> DSR, OUT1 -> RI, OUT2 -> DCD.
    for (out, line) in [(0x02u8, 0x10u8), (0x01, 0x20), (0x04, 0x40), (0x08, 0x80)] {
        wr(&mut u, MCR, 0x10 | out);
        assert_eq!(rd(&mut u, MSR) & 0xF0, line, "MCR {out:#x}");
        wr(&mut u, MCR, 0x10);
        rd(&mut u, MSR);
    }
    // The classic probe: LOOP | OUT2 | RTS reads back DCD | CTS.
    wr(&mut u, MCR, 0x1A);
    assert_eq!(rd(&mut u, MSR) & 0xF0, 0x90);
}

#[test]
fn msr_delta_bits_set_on_change_and_clear_on_read() {
    let (mut u, _) = uart();
    wr(&mut u, MCR, 0x1F);
    // From the host lines (CTS DSR DCD) to all four: only RI rose.
    assert_eq!(rd(&mut u, MSR), 0xF0);
    wr(&mut u, MCR, 0x10 | 0x04);
    // CTS, DSR, DCD fell; RI stayed.
    assert_eq!(rd(&mut u, MSR), 0x40 | 0x01 | 0x02 | 0x08);
    assert_eq!(rd(&mut u, MSR), 0x40);
    // RI falling is the trailing edge: TERI.
    wr(&mut u, MCR, 0x10);
    assert_eq!(rd(&mut u, MSR), 0x04);
    // RI rising is not.
    wr(&mut u, MCR, 0x14);
    assert_eq!(rd(&mut u, MSR), 0x40);
    // Leaving loopback restores the host lines.
    wr(&mut u, MCR, 0x00);
    assert_eq!(rd(&mut u, MSR), 0xB0 | 0x01 | 0x02 | 0x04 | 0x08);
    assert_eq!(rd(&mut u, MSR), 0xB0);
}

#[test]
fn modem_status_interrupt_needs_edssi_and_clears_on_msr_read() {
    let (mut u, _) = uart();
    wr(&mut u, MCR, 0x10);
    assert_eq!(rd(&mut u, IIR), 0x01);
    wr(&mut u, IER, 0x08);
    assert_eq!(rd(&mut u, IIR), 0x00);
    rd(&mut u, MSR);
    assert_eq!(rd(&mut u, IIR), 0x01);
}

#[test]
fn loopback_forces_out2_inactive_so_no_irq_leaves_the_chip() {
    let (mut u, _) = uart();
    wr(&mut u, IER, 0x02);
    wr(&mut u, MCR, 0x18);
    // The interrupt is identified internally ...
    assert_eq!(rd(&mut u, IIR), 0x02);
    wr(&mut u, THR, 0);
    // ... but INTR does not reach the PC's IRQ line.
    assert!(!u.irq_pending());
    wr(&mut u, MCR, 0x08);
    assert!(u.irq_pending());
}

#[test]
fn wide_accesses_touch_the_first_register_only() {
    let (mut u, out) = uart();
    let mut data = [0u8; 4];
    u.read(BASE, LSR, &mut data);
    assert_eq!(data, [0x60, 0xFF, 0xFF, 0xFF]);
    u.write(BASE, THR, b"AB");
    assert_eq!(out.bytes(), b"A");
    // The second byte did not reach IER.
    assert_eq!(rd(&mut u, IER), 0);
}

#[test]
fn odd_offsets_and_empty_accesses_do_not_panic() {
    let (mut u, out) = uart();
    let mut data = [0u8; 2];
    u.read(BASE, 8, &mut data);
    assert_eq!(data, [0xFF, 0xFF]);
    u.read(BASE, u64::MAX, &mut data);
    assert_eq!(data, [0xFF, 0xFF]);
    u.write(BASE, 8, &[1]);
    u.write(BASE, u64::MAX, &[1]);
    u.read(BASE, 0, &mut []);
    u.write(BASE, 0, &[]);
    assert!(out.bytes().is_empty());
}

#[test]
fn reading_an_empty_rbr_returns_zero_without_changing_state() {
    let (mut u, _) = uart();
    assert_eq!(rd(&mut u, RBR), 0);
    assert_eq!(rd(&mut u, LSR), 0x60);
}

#[test]
fn every_register_value_is_safe() {
    let (mut u, _) = uart();
    for offset in 0..8 {
        for value in 0..=255u8 {
            wr(&mut u, offset, value);
            rd(&mut u, offset);
            u.receive(value);
        }
    }
}

#[test]
fn works_through_the_bus() {
    use crate::bus::Bus;
    let (u, out) = uart();
    let u = Arc::new(Mutex::new(u));
    let mut bus = Bus::new();
    bus.register_pio(0x3F8, 8, "com1", u.clone()).unwrap();
    bus.pio_write(0x3F8, 1, u32::from(b'!'));
    assert_eq!(out.bytes(), b"!");
    assert_eq!(bus.pio_read(0x3FD, 1), 0x60);
    u.lock().receive(b'?');
    assert_eq!(bus.pio_read(0x3F8, 1), u32::from(b'?'));
    // A 2-byte read of LSR: the register, then an undriven byte.
    assert_eq!(bus.pio_read(0x3FD, 2), 0xFF60);
}

#[test]
fn master_reset_restores_reset_values_and_keeps_the_output() {
    let (mut u, out) = uart();
    wr(&mut u, 3, 0x83); // DLAB
    wr(&mut u, 0, 1);
    wr(&mut u, 3, 0x03);
    wr(&mut u, 7, 0x5a);
    wr(&mut u, 1, 0x0f);
    u.reset();
    assert_eq!(rd(&mut u, 7), 0, "scratch");
    assert_eq!(rd(&mut u, 1), 0, "IER");
    assert_eq!(u.divisor(), 12);
    wr(&mut u, 0, b'x');
    assert_eq!(out.bytes(), b"x");
}

#[test]
fn receive_room_is_what_fits_before_an_overrun() {
    let (mut u, _) = uart();
    // 16450 mode: RBR holds one character.
    assert_eq!(u.receive_room(), 1);
    u.receive(1);
    assert_eq!(u.receive_room(), 0);
    // FIFO mode (the FCR0 change clears the receiver): 16 places.
    wr(&mut u, FCR, 0x07);
    assert_eq!(u.receive_room(), 16);
    for i in 0..10u8 {
        u.receive(i);
    }
    assert_eq!(u.receive_room(), 6);
    for i in 0..6u8 {
        assert!(u.receive(i));
    }
    assert_eq!(u.receive_room(), 0);
    // The 17th byte overruns: lost, OE set, DR still set (8.4).
    assert!(!u.receive(0xEE));
    assert_eq!(rd(&mut u, LSR) & 0x03, 0x03);
    rd(&mut u, RBR);
    assert_eq!(u.receive_room(), 1);
    // Loopback disconnects the serial input: nothing is taken.
    wr(&mut u, MCR, 0x10);
    assert_eq!(u.receive_room(), 0);
    assert!(!u.receive(1));
}

#[test]
fn overrun_raises_the_line_status_interrupt_above_received_data() {
    let (mut u, _) = uart();
    wr(&mut u, FCR, 0x81); // FIFO, trigger 8
    wr(&mut u, IER, 0x05); // ERBFI | ELSI
    wr(&mut u, MCR, 0x08); // OUT2
    for i in 0..17u8 {
        u.receive(i);
    }
    assert!(u.irq_pending());
    assert_eq!(rd(&mut u, IIR), 0xC6, "receiver line status (OE) first");
    assert_eq!(rd(&mut u, LSR) & 0x02, 0x02, "OE");
    assert_eq!(rd(&mut u, IIR), 0xC4, "then data at the trigger level");
    // Drain to below the trigger: the timeout indication until empty.
    for _ in 0..9 {
        rd(&mut u, RBR);
    }
    assert_eq!(rd(&mut u, IIR), 0xCC, "7 bytes below trigger 8: timeout");
    for _ in 0..7 {
        rd(&mut u, RBR);
    }
    assert_eq!(rd(&mut u, IIR), 0xC1, "empty: nothing pending");
    assert!(!u.irq_pending());
}

#[test]
fn the_output_can_be_replaced_and_the_old_one_is_returned() {
    let (mut u, first) = uart();
    wr(&mut u, THR, b'a');
    let second = Captured::default();
    let old = u.replace_output(Box::new(second.clone()));
    wr(&mut u, THR, b'b');
    assert_eq!(first.bytes(), b"a");
    assert_eq!(second.bytes(), b"b");
    u.replace_output(Box::new(crate::serial::Tee(old, Box::new(second.clone()))));
    wr(&mut u, THR, b'c');
    assert_eq!(first.bytes(), b"ac");
    assert_eq!(second.bytes(), b"bc");
}

#[test]
fn receive_interrupt_is_armed_by_erbfi_and_out2_outside_loopback() {
    let (mut u, _) = uart();
    assert!(!u.receive_interrupt_armed());
    wr(&mut u, IER, 0x01);
    assert!(!u.receive_interrupt_armed(), "OUT2 gates INTR");
    wr(&mut u, MCR, 0x08);
    assert!(u.receive_interrupt_armed());
    wr(&mut u, MCR, 0x18);
    assert!(!u.receive_interrupt_armed(), "loopback");
}
