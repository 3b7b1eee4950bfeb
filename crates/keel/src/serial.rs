//! Keel's own serial console (the machine's COM1) and the `log` backend.
//!
//! Every line Keel prints goes here: its log as `keel: ...`, and each guest's
//! COM1 output as `[<vm name>] ...` (see `vm::console`). Keel reads one
//! thing from it: a key typed while a VM runs (`vm::stats`: `s` prints the
//! exit statistics).

use core::fmt::{self, Write};
use spin::Mutex;
use uart_16550::{backend::PioBackend, Config, Uart16550};

const COM1: u16 = 0x3f8;

static PORT: Mutex<Option<Uart16550<PioBackend>>> = Mutex::new(None);

struct PortWriter<'a>(&'a mut Uart16550<PioBackend>);

impl Write for PortWriter<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        for b in s.bytes() {
            if b == b'\n' {
                self.0.send_bytes_exact(b"\r");
            }
            self.0.send_bytes_exact(&[b]);
        }
        Ok(())
    }
}

/// Sets up COM1 (115200 8N1) and installs the logger.
pub fn init() {
    // SAFETY: COM1 at 0x3F8..0x3FF is the machine's first serial port; Keel
    // owns it and only touches it through this module, under the lock.
    let port = unsafe { Uart16550::new_port(COM1) };
    if let Ok(mut uart) = port {
        // A machine without COM1 still boots; there is just no console.
        if uart.init(Config::default()).is_ok() {
            *PORT.lock() = Some(uart);
        }
    }
    // Only fails if a logger is set already, which is then the one to keep.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Writes formatted text to the console.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    if let Some(uart) = PORT.lock().as_mut() {
        let _ = PortWriter(uart).write_fmt(args);
    }
}

/// A byte typed into Keel's console, if one has arrived (the 16550's
/// receiver: LSR bit 0, data ready; 16550D datasheet, "Line Status
/// Register"). Never waits.
pub fn try_read_byte() -> Option<u8> {
    PORT.lock().as_mut()?.try_receive_byte().ok()
}

/// Prints a line on Keel's console.
#[macro_export]
macro_rules! println {
    ($($arg:tt)*) => {
        $crate::serial::write_fmt(format_args!("{}\n", format_args!($($arg)*)))
    };
}

struct Logger;
static LOGGER: Logger = Logger;

impl log::Log for Logger {
    fn enabled(&self, metadata: &log::Metadata<'_>) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        match record.level() {
            log::Level::Info => write_fmt(format_args!("keel: {}\n", record.args())),
            level => write_fmt(format_args!(
                "keel: {}: {}\n",
                level_name(level),
                record.args()
            )),
        }
    }

    fn flush(&self) {}
}

fn level_name(level: log::Level) -> &'static str {
    match level {
        log::Level::Error => "error",
        log::Level::Warn => "warning",
        log::Level::Info => "info",
        log::Level::Debug => "debug",
        log::Level::Trace => "trace",
    }
}

/// Releases the console lock from a fault or panic path so the report can be
/// printed even if the fault happened while the lock was held.
pub fn break_lock_for_fatal_report() {
    if PORT.is_locked() {
        // SAFETY: Keel runs on one CPU with interrupts off; the holder of the
        // lock is the code that faulted, which never resumes.
        unsafe { PORT.force_unlock() };
    }
}
