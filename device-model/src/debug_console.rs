//! QEMU's ISA debug console (`isa-debugcon`) at port `0x402`: SeaBIOS
//! writes its debug log there, one byte per OUT, once it has seen the
//! presence value `0xE9` read back from the port.
//!
//! The bytes go to a [`CharSink`]; the platform gives it a
//! [`PrefixedConsole`](crate::PrefixedConsole) named `<vm>:bios`, so the
//! firmware's log appears in Keel's log as `[<vm>:bios] <line>`, apart from
//! the guest's COM1 output (`[<vm>] <line>`).

use alloc::boxed::Box;

use crate::bus::BusDevice;
use crate::serial::CharSink;

/// The debug console device.
pub struct DebugConsole {
    sink: Box<dyn CharSink>,
}

impl DebugConsole {
    /// The port it answers at (QEMU's `pc` machine and SeaBIOS's `CONFIG_DEBUG_IO`).
    pub const PORT: u16 = 0x402;
    pub const LEN: u16 = 1;
    /// What reads return: SeaBIOS only logs here after reading this back.
    pub const PRESENCE: u8 = 0xE9;

    /// A console that hands each byte the guest writes to `sink`.
    pub fn new(sink: Box<dyn CharSink>) -> Self {
        DebugConsole { sink }
    }

    /// The device has no state of its own; a partial line stays with the sink.
    pub fn reset(&mut self) {}
}

impl BusDevice for DebugConsole {
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(Self::PRESENCE);
    }

    /// Only the low byte of a write is a character, as on QEMU.
    fn write(&mut self, _base: u64, _offset: u64, data: &[u8]) {
        if let Some(&b) = data.first() {
            self.sink.write_byte(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Bus;
    use crate::console::PrefixedConsole;
    use alloc::string::{String, ToString};
    use alloc::sync::Arc;
    use alloc::vec::Vec;
    use spin::Mutex;

    fn platform() -> (Bus, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let out = lines.clone();
        let console = PrefixedConsole::new(
            "vm:bios",
            Box::new(move |l: &str| out.lock().push(l.to_string())),
        );
        let dev = Arc::new(Mutex::new(DebugConsole::new(Box::new(console))));
        let mut bus = Bus::new();
        bus.register_pio(DebugConsole::PORT, DebugConsole::LEN, "debugcon", dev)
            .unwrap();
        (bus, lines)
    }

    #[test]
    fn reads_return_the_presence_value() {
        let (mut bus, _) = platform();
        assert_eq!(bus.pio_read(0x402, 1), 0xE9);
    }

    #[test]
    fn bytes_become_prefixed_lines() {
        let (mut bus, lines) = platform();
        for &b in b"SeaBIOS (version 1.16)\nRam Size=0x04000000\n" {
            bus.pio_write(0x402, 1, u32::from(b));
        }
        assert_eq!(
            *lines.lock(),
            [
                "[vm:bios] SeaBIOS (version 1.16)",
                "[vm:bios] Ram Size=0x04000000"
            ]
        );
    }

    #[test]
    fn a_wide_write_sends_only_its_low_byte() {
        let (mut bus, lines) = platform();
        bus.pio_write(0x402, 2, 0x4241);
        bus.pio_write(0x402, 1, u32::from(b'\n'));
        assert_eq!(*lines.lock(), ["[vm:bios] A"]);
        let mut dev =
            DebugConsole::new(Box::new(PrefixedConsole::new("x", Box::new(|_: &str| {}))));
        dev.write(0x402, 0, &[]);
        dev.reset();
    }
}
