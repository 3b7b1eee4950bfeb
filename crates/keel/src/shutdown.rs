//! How Keel ends a run: the final status line, then the emulators' exit ports.

use x86_64::instructions::port::Port;

/// Status when Keel itself faulted or panicked (docs/ARCHITECTURE.md).
pub const KEEL_FAULT_STATUS: u8 = 127;
/// Status when this machine cannot run guests at all, or Keel was booted wrongly.
pub const NO_VIRTUALIZATION_STATUS: u8 = 122;

/// QEMU's `isa-debug-exit` device, when present.
const QEMU_DEBUG_EXIT_PORT: u16 = 0xf4;
/// Bochs ends the simulation when "Shutdown" is written here.
const BOCHS_SHUTDOWN_PORT: u16 = 0x8900;

/// Prints `keel: exit status N`, ends the emulator (QEMU or Bochs) if there is
/// one, and otherwise halts the machine.
pub fn finish(status: u8) -> ! {
    crate::println!("keel: exit status {status}");
    // SAFETY: writes to ports that are either an emulator's exit device or,
    // on real hardware, unused ISA ports; Keel stops right after.
    unsafe {
        Port::<u32>::new(QEMU_DEBUG_EXIT_PORT).write(u32::from(status));
        let mut bochs = Port::<u8>::new(BOCHS_SHUTDOWN_PORT);
        for b in b"Shutdown" {
            bochs.write(*b);
        }
    }
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
