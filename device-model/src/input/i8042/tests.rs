use super::*;
use crate::timer::testutil::{lines, Recorder};
use alloc::sync::Arc;
use spin::Mutex;
use std::vec::Vec;

struct Rig {
    kbc: I8042,
    rec: Arc<Mutex<Recorder>>,
    power: PowerControl,
    a20: A20Gate,
}

fn rig() -> Rig {
    let (rec, mut l) = lines(&[1, 12]);
    let irq12 = l.pop().unwrap();
    let irq1 = l.pop().unwrap();
    let power = PowerControl::new();
    let a20 = A20Gate::new();
    let kbc = I8042::new(irq1, irq12, power.clone(), a20.clone());
    Rig {
        kbc,
        rec,
        power,
        a20,
    }
}

impl Rig {
    fn cmd(&mut self, c: u8) {
        self.kbc.write(0x64, 0, &[c]);
    }
    fn data(&mut self, d: u8) {
        self.kbc.write(0x60, 0, &[d]);
    }
    fn status(&mut self) -> u8 {
        let mut b = [0];
        self.kbc.read(0x64, 0, &mut b);
        b[0]
    }
    /// Reads every byte the controller offers, as a polling driver does.
    fn drain(&mut self) -> Vec<u8> {
        let mut v = Vec::new();
        while self.status() & 1 != 0 {
            let mut b = [0];
            self.kbc.read(0x60, 0, &mut b);
            v.push(b[0]);
        }
        v
    }
    fn level(&self, gsi: u32) -> bool {
        self.rec.lock().level(gsi)
    }
}

#[test]
fn self_test_and_interface_tests() {
    let mut r = rig();
    assert_eq!(r.status() & 0x04, 0, "SYS clear at power-on");
    r.cmd(0xAA);
    assert_eq!(r.status() & 0x0D, 0x0D, "OBF, SYS, A2");
    assert_eq!(r.drain(), [0x55]);
    r.cmd(0xAB);
    assert_eq!(r.drain(), [0x00]);
    r.cmd(0xA9);
    assert_eq!(r.drain(), [0x00]);
    assert_eq!(r.status() & 0x10, 0x10, "not inhibited");
}

#[test]
fn command_byte_read_and_write() {
    let mut r = rig();
    r.cmd(0x20);
    assert_eq!(r.drain(), [0x03]);
    r.cmd(0x60);
    r.data(0x65);
    assert_eq!(r.status() & 0x08, 0, "data write clears A2");
    r.cmd(0x20);
    assert_eq!(r.drain(), [0x65]);
    assert_eq!(r.status() & 0x04, 0x04, "SYS from command byte bit 2");
    // Other RAM bytes.
    r.cmd(0x65);
    r.data(0x5A);
    r.cmd(0x25);
    assert_eq!(r.drain(), [0x5A]);
}

#[test]
fn disable_and_enable_keyboard_and_aux() {
    let mut r = rig();
    r.cmd(0xAD);
    r.cmd(0xA7);
    r.cmd(0x20);
    assert_eq!(r.drain(), [0x33]);
    // With the keyboard disabled its replies wait.
    r.data(0xF2);
    assert_eq!(r.drain(), Vec::<u8>::new());
    r.cmd(0xAE);
    assert_eq!(r.drain(), [0xFA, 0xAB, 0x83]);
    r.cmd(0xA8);
    r.cmd(0x20);
    assert_eq!(r.drain(), [0x03]);
}

#[test]
fn keyboard_commands_through_the_data_port_raise_irq1() {
    let mut r = rig();
    r.data(0xFF);
    assert!(r.level(1));
    let mut b = [0];
    r.kbc.read(0x60, 0, &mut b);
    assert_eq!(b[0], 0xFA);
    assert!(r.level(1), "next byte loaded, IRQ 1 again");
    r.kbc.read(0x60, 0, &mut b);
    assert_eq!(b[0], 0xAA);
    assert!(!r.level(1));
    assert_eq!(r.rec.lock().rising(1), 2);
    r.kbc.read(0x60, 0, &mut b);
    assert_eq!(b[0], 0xAA, "empty buffer repeats the last byte");
    for (cmd, reply) in [
        (&[0xF2][..], &[0xFA, 0xAB, 0x83][..]),
        (&[0xF5], &[0xFA]),
        (&[0xF4], &[0xFA]),
        (&[0xED, 0x02], &[0xFA, 0xFA]),
        (&[0xF0, 0x02], &[0xFA, 0xFA]),
        (&[0xEE], &[0xEE]),
        (&[0xF3, 0x00], &[0xFA, 0xFA]),
        (&[0x01], &[0xFE]),
    ] {
        for &c in cmd {
            r.data(c);
        }
        assert_eq!(r.drain(), reply, "command {cmd:x?}");
    }
    assert_eq!(r.kbc.keyboard().leds(), 2);
}

#[test]
fn irq1_only_when_enabled_in_the_command_byte() {
    let mut r = rig();
    r.cmd(0x60);
    r.data(0x00);
    r.data(0xF4);
    assert!(!r.level(1));
    assert_eq!(r.drain(), [0xFA]);
}

#[test]
fn aux_commands_go_through_d4_and_raise_irq12() {
    let mut r = rig();
    r.cmd(0xD4);
    r.data(0xFF);
    assert!(r.level(12));
    assert_eq!(r.status() & 0x21, 0x21, "OBF with AUXB");
    assert_eq!(r.drain(), [0xFA, 0xAA, 0x00]);
    assert!(!r.level(12));
    r.cmd(0xD4);
    r.data(0xF2);
    assert_eq!(r.drain(), [0xFA, 0x00]);
    r.cmd(0xD4);
    r.data(0xF4);
    assert_eq!(r.drain(), [0xFA]);
    assert!(r.kbc.mouse().reporting());
    assert!(!r.kbc.keyboard().has_data());
}

#[test]
fn output_port_a20_and_reset() {
    let mut r = rig();
    assert!(r.kbc.a20_enabled());
    r.cmd(0xD0);
    assert_eq!(r.drain()[0] & 0x03, 0x03);
    r.cmd(0xD1);
    r.data(0x01); // A20 off, reset line high
    assert!(!r.a20.enabled() && !r.kbc.a20_enabled());
    assert_eq!(r.power.take(), None);
    r.cmd(0xD0);
    assert_eq!(r.drain()[0] & 0x03, 0x01);
    r.cmd(0xD1);
    r.data(0x03);
    assert!(r.a20.enabled());
    r.cmd(0xD1);
    r.data(0x02); // reset line low
    assert_eq!(r.power.take(), Some(PowerRequest::Reset));
    r.cmd(0xDD);
    assert!(!r.a20.enabled());
    r.cmd(0xDF);
    assert!(r.a20.enabled());
}

#[test]
fn pulse_commands_reset_when_bit0_is_pulsed() {
    let mut r = rig();
    r.cmd(0xFF);
    assert_eq!(r.power.take(), None, "0xFF pulses nothing");
    r.cmd(0xFE);
    assert_eq!(r.power.take(), Some(PowerRequest::Reset));
    r.cmd(0xF0);
    assert_eq!(r.power.take(), Some(PowerRequest::Reset));
}

#[test]
fn write_keyboard_and_aux_output_buffer() {
    let mut r = rig();
    r.cmd(0xD2);
    r.data(0x1C);
    assert_eq!(r.status() & 0x21, 0x01);
    assert_eq!(r.drain(), [0x1C]);
    r.cmd(0xD3);
    r.data(0x08);
    assert_eq!(r.status() & 0x21, 0x21);
    assert!(r.level(12));
    assert_eq!(r.drain(), [0x08]);
}

#[test]
fn reset_restores_power_on_state() {
    let mut r = rig();
    r.cmd(0xD1);
    r.data(0x01);
    r.cmd(0xAD);
    r.data(0xF2);
    r.kbc.reset();
    assert!(r.a20.enabled());
    assert_eq!(r.status() & 0x01, 0);
    assert!(!r.level(1));
    r.cmd(0x20);
    assert_eq!(r.drain(), [0x03]);
}

#[test]
fn any_byte_on_any_port_never_panics() {
    let mut r = rig();
    for base in [0x60u64, 0x64, 0x61] {
        for v in 0..=255u8 {
            for off in [0u64, 1, u64::MAX] {
                r.kbc.write(base, off, &[v, v]);
                let mut b = [0u8; 4];
                r.kbc.read(base, off, &mut b);
                if off != 0 {
                    assert_eq!(b, [0xFF; 4]);
                }
            }
            r.kbc.write(0x64, 0, &[v]);
            r.kbc.write(0x60, 0, &[!v]);
            r.kbc.write(0x64, 0, &[0xD4]);
            r.kbc.write(0x60, 0, &[v]);
            r.drain();
        }
    }
    r.kbc.write(0x60, 0, &[]);
}

/// Finding #1 of issue 11: 0xD2/0xD3 written again and again without a
/// read must not grow anything; the controller holds its one-byte output
/// buffer and at most one pending reply, the newest.
#[test]
fn write_output_buffer_flood_is_bounded() {
    let mut r = rig();
    for i in 0..1_000_000u32 {
        r.cmd(if i % 2 == 0 { 0xD2 } else { 0xD3 });
        r.data(i as u8);
        r.cmd(0x20);
    }
    let got = r.drain();
    assert!(got.len() <= 2, "{} bytes queued", got.len());
    assert_eq!(got, [0x00, 0x03], "first byte, then the newest reply");
}

/// Keyboard replies queue in its 16-byte buffer while the guest never reads.
#[test]
fn keyboard_reply_flood_is_bounded() {
    let mut r = rig();
    for _ in 0..100_000 {
        r.data(0xF2);
    }
    assert!(r.drain().len() <= 1 + 16);
}
