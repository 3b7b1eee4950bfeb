//! A logger for host tests that keeps the records made on the current
//! thread (tests run in parallel, each on its own thread).

use std::cell::RefCell;
use std::string::String;
use std::sync::Once;
use std::vec::Vec;

struct Capture;
static LOGGER: Capture = Capture;
static INSTALL: Once = Once::new();
std::thread_local! {
    static RECORDS: RefCell<Vec<(log::Level, String)>> = const { RefCell::new(Vec::new()) };
}

impl log::Log for Capture {
    fn enabled(&self, _: &log::Metadata) -> bool {
        true
    }
    fn log(&self, record: &log::Record) {
        let line = std::format!("{}", record.args());
        RECORDS.with(|r| r.borrow_mut().push((record.level(), line)));
    }
    fn flush(&self) {}
}

/// Installs the logger (once per process) and forgets this thread's records.
pub fn start() {
    INSTALL.call_once(|| {
        log::set_logger(&LOGGER).expect("no other logger in a host test");
        log::set_max_level(log::LevelFilter::Trace);
    });
    RECORDS.with(|r| r.borrow_mut().clear());
}

/// The records made on this thread since [`start`].
pub fn records() -> Vec<(log::Level, String)> {
    RECORDS.with(|r| r.borrow().clone())
}

/// How many records at `level` or above (more severe) contain `text`.
pub fn count(level: log::Level, text: &str) -> usize {
    RECORDS.with(|r| {
        r.borrow()
            .iter()
            .filter(|(l, line)| *l <= level && line.contains(text))
            .count()
    })
}
