//! The debug-exit port: a guest writes a value to stop the VM with it as status.
//!
//! Same contract as QEMU's `isa-debug-exit` with `iobase=0xf4,iosize=4`, so
//! test guests written for QEMU run unchanged (docs/ARCHITECTURE.md, "The
//! machine a guest sees"). The platform registers it at [`DebugExit::PORT`]
//! for [`DebugExit::LEN`] ports.

use crate::bus::BusDevice;
use crate::power::{PowerControl, PowerRequest};

/// The debug-exit device.
pub struct DebugExit {
    power: PowerControl,
}

impl DebugExit {
    /// The port it answers at.
    pub const PORT: u16 = 0xF4;
    /// How many ports it answers (a 4-byte OUT at `PORT` is one access).
    pub const LEN: u16 = 4;

    /// A debug-exit device that files its requests with `power`.
    pub fn new(power: PowerControl) -> Self {
        DebugExit { power }
    }
}

impl BusDevice for DebugExit {
    /// The port has no readable state, so reads return what an empty ISA
    /// port returns, all-ones: a guest probing it learns nothing it could
    /// come to depend on.
    fn read(&mut self, _base: u64, _offset: u64, data: &mut [u8]) {
        data.fill(0xFF);
    }

    /// A write of any width (and at any of its ports) asks the VM to stop
    /// with the value written, zero-extended from little endian. Only the
    /// first four bytes count: the status is 32 bits.
    fn write(&mut self, _base: u64, _offset: u64, data: &[u8]) {
        let mut bytes = [0u8; 4];
        let n = data.len().min(bytes.len());
        bytes[..n].copy_from_slice(&data[..n]);
        let status = u32::from_le_bytes(bytes);
        self.power.request(PowerRequest::DebugExit { status });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bus::Bus;
    use alloc::sync::Arc;
    use spin::Mutex;

    fn platform() -> (Bus, PowerControl) {
        let power = PowerControl::new();
        let mut bus = Bus::new();
        bus.register_pio(
            DebugExit::PORT,
            DebugExit::LEN,
            "debug-exit",
            Arc::new(Mutex::new(DebugExit::new(power.clone()))),
        )
        .unwrap();
        (bus, power)
    }

    #[test]
    fn byte_write_requests_exit_with_its_value() {
        let (mut bus, power) = platform();
        bus.pio_write(0xF4, 1, 0x0000_0042);
        assert_eq!(power.take(), Some(PowerRequest::DebugExit { status: 0x42 }));
    }

    #[test]
    fn byte_write_ignores_the_upper_bits_of_the_register() {
        let (mut bus, power) = platform();
        bus.pio_write(0xF4, 1, 0xFFFF_FF00);
        assert_eq!(power.take(), Some(PowerRequest::DebugExit { status: 0 }));
    }

    #[test]
    fn word_write_requests_exit_with_its_value() {
        let (mut bus, power) = platform();
        bus.pio_write(0xF4, 2, 0xABCD_1234);
        assert_eq!(
            power.take(),
            Some(PowerRequest::DebugExit { status: 0x1234 })
        );
    }

    #[test]
    fn dword_write_requests_exit_with_its_value() {
        let (mut bus, power) = platform();
        bus.pio_write(0xF4, 4, 0xDEAD_BEEF);
        assert_eq!(
            power.take(),
            Some(PowerRequest::DebugExit {
                status: 0xDEAD_BEEF
            })
        );
    }

    #[test]
    fn first_write_wins() {
        let (mut bus, power) = platform();
        bus.pio_write(0xF4, 1, 3);
        bus.pio_write(0xF4, 1, 4);
        assert_eq!(power.take(), Some(PowerRequest::DebugExit { status: 3 }));
    }

    #[test]
    fn reads_are_all_ones_and_request_nothing() {
        let (mut bus, power) = platform();
        assert_eq!(bus.pio_read(0xF4, 1), 0xFF);
        assert_eq!(bus.pio_read(0xF4, 2), 0xFFFF);
        assert_eq!(bus.pio_read(0xF4, 4), 0xFFFF_FFFF);
        assert_eq!(power.peek(), None);
    }

    #[test]
    fn direct_writes_of_odd_lengths_do_not_panic() {
        let power = PowerControl::new();
        let mut dev = DebugExit::new(power.clone());
        dev.write(0xF4, 0, &[]);
        assert_eq!(power.take(), Some(PowerRequest::DebugExit { status: 0 }));
        dev.write(0xF4, 0, &[1, 2, 3]);
        assert_eq!(
            power.take(),
            Some(PowerRequest::DebugExit { status: 0x03_0201 })
        );
        dev.write(0xF4, 0, &[1, 2, 3, 4, 5, 6, 7, 8]);
        assert_eq!(
            power.take(),
            Some(PowerRequest::DebugExit {
                status: 0x0403_0201
            })
        );
    }
}
