//! Serial ports: the 16550A UART and the byte sink its transmitter drives.

pub mod uart16550;

use alloc::boxed::Box;

pub use uart16550::Uart16550;

/// Where a UART's transmitter puts the bytes the guest sends.
///
/// The UART knows nothing of what is on the other end of its line; the
/// platform picks the sink (a [`PrefixedConsole`](crate::PrefixedConsole),
/// a test buffer, ...).
pub trait CharSink: Send {
    /// Takes one byte the guest wrote to the transmitter.
    fn write_byte(&mut self, byte: u8);
}

/// Two sinks fed the same bytes: COM1's prefixed log and, for the VM that
/// has Keel's console, the raw stream to the terminal.
pub struct Tee(pub Box<dyn CharSink>, pub Box<dyn CharSink>);

impl CharSink for Tee {
    fn write_byte(&mut self, byte: u8) {
        self.0.write_byte(byte);
        self.1.write_byte(byte);
    }
}
