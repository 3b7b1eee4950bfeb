//! Keel's own serial console (the machine's COM1) and the `log` backend.
//!
//! Every line Keel prints goes here: its log as `keel: ...`, and each guest's
//! COM1 output as `[<vm name>] ...` (device-model's `PrefixedConsole`).
//!
//! The machine's COM2, when it has one, is the interactive console
//! (`vm::console`, docs/ARCHITECTURE.md "Keel's console"): the focused VM's
//! COM1 output byte for byte, Keel's prompt, and what is typed. Without a
//! COM2, typed bytes are read from COM1 and the prompt prints there.

use core::fmt::{self, Write};
use core::sync::atomic::{AtomicU32, Ordering};
use spin::Mutex;
use uart_16550::{backend::PioBackend, Config, Uart16550};

const COM1: u16 = 0x3f8;
const COM2: u16 = 0x2f8;

static PORT: Mutex<Option<Uart16550<PioBackend>>> = Mutex::new(None);
static CONSOLE_PORT: Mutex<Option<Uart16550<PioBackend>>> = Mutex::new(None);

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

/// The UART at `base` set up for 115200 8N1, if the machine has one there
/// (its scratch register holds what is written: `check_present`).
fn open(base: u16) -> Option<Uart16550<PioBackend>> {
    // SAFETY: COM1 (0x3F8..0x3FF) and COM2 (0x2F8..0x2FF) are the PC's
    // serial ports; Keel owns them and touches them only through this
    // module, each under its lock.
    let mut uart = unsafe { Uart16550::new_port(base) }.ok()?;
    uart.init(Config::default()).ok()?;
    Some(uart)
}

/// Sets up COM1 (the log) and COM2 (the console), and installs the logger.
pub fn init() {
    // A machine without COM1 still boots; there is just no log.
    *PORT.lock() = open(COM1);
    *CONSOLE_PORT.lock() = open(COM2);
    // Only fails if a logger is set already, which is then the one to keep.
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// The CPU holding [`PORT`]'s lock (its APIC ID, from CPUID leaf 1 EBX
/// bits 31:24, SDM Vol 2A CPUID), or [`NO_OWNER`]: a fatal report on the
/// CPU that holds the lock may break it; one on another CPU waits.
static PORT_OWNER: AtomicU32 = AtomicU32::new(NO_OWNER);
const NO_OWNER: u32 = u32::MAX;

fn this_cpu() -> u32 {
    raw_cpuid::native_cpuid::cpuid_count(1, 0).ebx >> 24
}

/// Writes formatted text to the console; one call's text stays together
/// on the wire, whichever CPUs print at once.
pub fn write_fmt(args: fmt::Arguments<'_>) {
    let mut port = PORT.lock();
    PORT_OWNER.store(this_cpu(), Ordering::Relaxed);
    if let Some(uart) = port.as_mut() {
        let _ = PortWriter(uart).write_fmt(args);
    }
    PORT_OWNER.store(NO_OWNER, Ordering::Relaxed);
}

/// A byte typed into Keel's console (COM2, or COM1 without one), if one
/// has arrived (the 16550's receiver: LSR bit 0, data ready; 16550D
/// datasheet, "Line Status Register"). Never waits.
pub fn try_read_byte() -> Option<u8> {
    let mut console = CONSOLE_PORT.lock();
    match console.as_mut() {
        Some(uart) => uart.try_receive_byte().ok(),
        None => {
            drop(console);
            PORT.lock().as_mut()?.try_receive_byte().ok()
        }
    }
}

/// Whether the machine has a console port of its own (COM2).
pub fn has_console_port() -> bool {
    CONSOLE_PORT.lock().is_some()
}

/// Guest output for the terminal, byte for byte (COM2 only: on COM1 the
/// log already carries it, prefixed).
pub fn console_write_raw(bytes: &[u8]) {
    if let Some(uart) = CONSOLE_PORT.lock().as_mut() {
        uart.send_bytes_exact(bytes);
    }
}

/// Text of Keel's prompt, on the console port (COM2, or COM1 without one).
pub fn console_print(text: &str) {
    if let Some(uart) = CONSOLE_PORT.lock().as_mut() {
        uart.send_bytes_exact(text.as_bytes());
        return;
    }
    if let Some(uart) = PORT.lock().as_mut() {
        uart.send_bytes_exact(text.as_bytes());
    }
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

/// Makes sure a fault or panic report can be printed: if this CPU faulted
/// while printing (it holds the log port's lock), the lock is released;
/// a lock held by another CPU is waited for, which prints whole lines and
/// lets go. The console port's lock is never taken by the report.
pub fn break_lock_for_fatal_report() {
    if PORT.is_locked() && PORT_OWNER.load(Ordering::Relaxed) == this_cpu() {
        PORT_OWNER.store(NO_OWNER, Ordering::Relaxed);
        // SAFETY: the holder is this CPU's interrupted code, which never
        // resumes (the report ends Keel); no other CPU holds the port.
        unsafe { PORT.force_unlock() };
    }
}
