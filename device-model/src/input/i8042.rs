//! The i8042 keyboard controller (IBM PS/2 Hardware Interface Technical
//! Reference, "Keyboard and Auxiliary Device Controller"; Intel 8042 /
//! compatible keyboard controller as on every PC since the AT).
//!
//! Ports: 0x60 data (read the output buffer, write a byte for the keyboard
//! or a command's parameter) and 0x64 (read status, write a controller
//! command). The platform registers the same device at both, one port each;
//! the access's `base` tells them apart. Ports are one byte wide: a wider
//! access acts on its first byte and reads all-ones above it.
//!
//! The keyboard ([`Ps2Keyboard`]) raises ISA IRQ 1 and the mouse
//! ([`Ps2Mouse`]) on the auxiliary port ISA IRQ 12, each while its byte sits
//! in the output buffer and the command byte enables its interrupt. The
//! controller's output port carries the system reset line (bit 0, active
//! low) and the A20 gate (bit 1, see [`A20Gate`]); driving the reset line
//! low asks the VM loop for [`PowerRequest::Reset`].
//!
//! Not modelled: key and mouse input from the host, scan-code translation
//! (command byte bit 6 is stored; the keyboard's identify bytes therefore
//! read 0xAB 0x83 even with translation on), and the password commands.

use super::{A20Gate, Ps2Keyboard, Ps2Mouse};
use crate::irq::IrqLine;
use crate::power::{PowerControl, PowerRequest};
use crate::BusDevice;

/// Status register bits (port 0x64 read).
mod status {
    /// Output buffer full.
    pub const OBF: u8 = 1 << 0;
    /// System flag: set by a passed self-test or command byte bit 2.
    pub const SYS: u8 = 1 << 2;
    /// Last write was a command (port 0x64) rather than data.
    pub const A2: u8 = 1 << 3;
    /// Keyboard not inhibited (keylock off).
    pub const INH: u8 = 1 << 4;
    /// The output buffer holds a byte from the auxiliary device.
    pub const AUXB: u8 = 1 << 5;
}

/// Command byte bits (controller RAM byte 0).
mod cmd {
    pub const KBD_INT: u8 = 1 << 0;
    pub const AUX_INT: u8 = 1 << 1;
    pub const SYS: u8 = 1 << 2;
    pub const KBD_DISABLE: u8 = 1 << 4;
    pub const AUX_DISABLE: u8 = 1 << 5;
}

/// Output port bits.
mod outport {
    /// System reset, active low.
    pub const RESET: u8 = 1 << 0;
    pub const A20: u8 = 1 << 1;
    pub const KBD_OBF: u8 = 1 << 4;
    pub const AUX_OBF: u8 = 1 << 5;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    Keyboard,
    Aux,
}

/// The keyboard controller with its two devices.
pub struct I8042 {
    kbd: Ps2Keyboard,
    mouse: Ps2Mouse,
    irq1: IrqLine,
    irq12: IrqLine,
    power: PowerControl,
    a20: A20Gate,
    /// Controller RAM; byte 0 is the command byte.
    ram: [u8; 32],
    sys: bool,
    a2: bool,
    /// Output port bits other than reset and A20 (which live elsewhere).
    out_port: u8,
    /// A command waiting for its parameter on port 0x60.
    pending: Option<u8>,
    /// A controller reply (or 0xD2/0xD3 byte) waiting for the output buffer
    /// to empty. The 8042 has a one-byte output buffer and its firmware
    /// holds one reply while it waits; a command that arrives meanwhile
    /// waits in the one-byte input buffer, where a later write overwrites
    /// it, so a newer reply replaces this one and the total never exceeds
    /// two bytes however long the guest writes without reading.
    reply: Option<(u8, Source)>,
    buffer: Option<(u8, Source)>,
    last: u8,
    irq1_level: bool,
    irq12_level: bool,
}

impl I8042 {
    pub const DATA_PORT: u16 = 0x60;
    pub const COMMAND_PORT: u16 = 0x64;
    /// Power-on command byte: both interrupts enabled (QEMU's `pc` value;
    /// firmware writes its own).
    const COMMAND_BYTE: u8 = cmd::KBD_INT | cmd::AUX_INT;

    pub fn new(irq1: IrqLine, irq12: IrqLine, power: PowerControl, a20: A20Gate) -> Self {
        let mut ram = [0u8; 32];
        ram[0] = Self::COMMAND_BYTE;
        I8042 {
            kbd: Ps2Keyboard::new(),
            mouse: Ps2Mouse::new(),
            irq1,
            irq12,
            power,
            a20,
            ram,
            sys: false,
            a2: false,
            out_port: 0,
            pending: None,
            reply: None,
            buffer: None,
            last: 0,
            irq1_level: false,
            irq12_level: false,
        }
    }

    /// The power-on state; A20 (controller input) enabled, lines low.
    pub fn reset(&mut self) {
        self.kbd.reset();
        self.mouse.reset();
        self.ram = [0; 32];
        self.ram[0] = Self::COMMAND_BYTE;
        self.sys = false;
        self.a2 = false;
        self.out_port = 0;
        self.pending = None;
        self.reply = None;
        self.buffer = None;
        self.last = 0;
        self.a20.set_kbc(true);
        self.update_irqs();
    }

    /// The keyboard, for the platform (LED state, future key input).
    pub fn keyboard(&self) -> &Ps2Keyboard {
        &self.kbd
    }

    /// The mouse on the auxiliary port.
    pub fn mouse(&self) -> &Ps2Mouse {
        &self.mouse
    }

    /// Whether A20 is enabled (either input of the shared gate).
    pub fn a20_enabled(&self) -> bool {
        self.a20.enabled()
    }

    fn command_byte(&self) -> u8 {
        self.ram[0]
    }

    fn reply(&mut self, b: u8) {
        self.queue_reply(b, Source::Keyboard);
    }

    /// Hands a controller-generated byte to the output buffer, or holds it
    /// as the one pending reply (the `reply` field).
    fn queue_reply(&mut self, b: u8, src: Source) {
        self.reply = Some((b, src));
        self.refill();
    }

    /// Moves the next byte into an empty output buffer and updates IRQs.
    fn refill(&mut self) {
        if self.buffer.is_none() {
            let c = self.command_byte();
            self.buffer = self.reply.take().or_else(|| {
                if c & cmd::KBD_DISABLE == 0 {
                    if let Some(b) = self.kbd.read() {
                        return Some((b, Source::Keyboard));
                    }
                }
                if c & cmd::AUX_DISABLE == 0 {
                    if let Some(b) = self.mouse.read() {
                        return Some((b, Source::Aux));
                    }
                }
                None
            });
        }
        self.update_irqs();
    }

    fn update_irqs(&mut self) {
        let c = self.command_byte();
        let src = self.buffer.map(|(_, s)| s);
        let irq1 = src == Some(Source::Keyboard) && c & cmd::KBD_INT != 0;
        let irq12 = src == Some(Source::Aux) && c & cmd::AUX_INT != 0;
        if irq1 != self.irq1_level {
            self.irq1_level = irq1;
            self.irq1.set_level(irq1);
        }
        if irq12 != self.irq12_level {
            self.irq12_level = irq12;
            self.irq12.set_level(irq12);
        }
    }

    fn status(&self) -> u8 {
        let mut s = status::INH;
        if let Some((_, src)) = self.buffer {
            s |= status::OBF;
            if src == Source::Aux {
                s |= status::AUXB;
            }
        }
        if self.sys {
            s |= status::SYS;
        }
        if self.a2 {
            s |= status::A2;
        }
        s
    }

    fn output_port(&self) -> u8 {
        let mut v = (self.out_port & !0x33) | outport::RESET;
        if self.a20.kbc() {
            v |= outport::A20;
        }
        match self.buffer {
            Some((_, Source::Keyboard)) => v |= outport::KBD_OBF,
            Some((_, Source::Aux)) => v |= outport::AUX_OBF,
            None => {}
        }
        v
    }

    fn write_output_port(&mut self, v: u8) {
        self.out_port = v;
        self.a20.set_kbc(v & outport::A20 != 0);
        if v & outport::RESET == 0 {
            self.power.request(PowerRequest::Reset);
        }
    }

    fn read_data(&mut self) -> u8 {
        if let Some((b, _)) = self.buffer.take() {
            self.last = b;
            // OBF drops before the next byte loads, so each byte is a new
            // edge for the edge-triggered PIC inputs.
            self.update_irqs();
            self.refill();
        }
        // An empty buffer reads the last byte again.
        self.last
    }

    fn write_data(&mut self, b: u8) {
        self.a2 = false;
        match self.pending.take() {
            Some(c @ 0x60..=0x7F) => {
                self.ram[usize::from(c & 0x1F)] = b;
                if c == 0x60 {
                    self.sys = b & cmd::SYS != 0;
                }
            }
            Some(0xD1) => self.write_output_port(b),
            Some(0xD2) => self.queue_reply(b, Source::Keyboard),
            Some(0xD3) => self.queue_reply(b, Source::Aux),
            Some(0xD4) => self.mouse.write(b),
            _ => self.kbd.write(b),
        }
        self.refill();
    }

    fn write_command(&mut self, c: u8) {
        self.a2 = true;
        self.pending = None;
        match c {
            0x20..=0x3F => {
                let v = self.ram[usize::from(c & 0x1F)];
                self.reply(v);
            }
            0x60..=0x7F | 0xD1..=0xD4 => self.pending = Some(c),
            0xA7 => self.ram[0] |= cmd::AUX_DISABLE,
            0xA8 => self.ram[0] &= !cmd::AUX_DISABLE,
            // Interface tests: 0x00 = no error.
            0xA9 | 0xAB => self.reply(0x00),
            // Self-test: 0x55 = passed; sets the system flag.
            0xAA => {
                self.sys = true;
                self.reply(0x55);
            }
            0xAD => self.ram[0] |= cmd::KBD_DISABLE,
            0xAE => self.ram[0] &= !cmd::KBD_DISABLE,
            0xD0 => {
                let v = self.output_port();
                self.reply(v);
            }
            0xDD => self.a20.set_kbc(false),
            0xDF => self.a20.set_kbc(true),
            // Read test inputs: both clock and data low.
            0xE0 => self.reply(0x00),
            // Pulse output port bits 3:0 low for those bits clear in the
            // command; bit 0 is the reset line (0xFE pulses only it).
            0xF0..=0xFF if c & outport::RESET == 0 => {
                self.power.request(PowerRequest::Reset);
            }
            _ => {}
        }
        self.refill();
    }
}

impl BusDevice for I8042 {
    fn read(&mut self, base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0xFF);
        let Some(first) = data.first_mut().filter(|_| offset == 0) else {
            return;
        };
        *first = match base {
            b if b == u64::from(Self::DATA_PORT) => self.read_data(),
            b if b == u64::from(Self::COMMAND_PORT) => self.status(),
            _ => 0xFF,
        };
    }

    fn write(&mut self, base: u64, offset: u64, data: &[u8]) {
        let (0, Some(&v)) = (offset, data.first()) else {
            return;
        };
        match base {
            b if b == u64::from(Self::DATA_PORT) => self.write_data(v),
            b if b == u64::from(Self::COMMAND_PORT) => self.write_command(v),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
