//! Serial ports: the 16550A UART and the byte sink its transmitter drives.

pub mod uart16550;

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
