//! Keel's interactive console, as a person at a terminal uses it: the
//! runner (`keel-console-run`, what `cargo xtask run` does) runs inside a
//! pseudo-terminal that `script` (util-linux) provides; the test types into
//! it and reads what comes out. Debian boots to a shell on ttyS0
//! (tests/vms/console.cfg), the test runs a command, floods the line,
//! uses Keel's prompt behind Ctrl-], and powers the guest off from the shell.

use std::io::{Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use keel_tests::{artifacts_dir, DEFAULT_TIMEOUT_SECS};

/// The terminal: what the test types, and everything shown so far.
struct Terminal {
    child: Child,
    input: ChildStdin,
    screen: Arc<Mutex<Vec<u8>>>,
    /// Where in `screen` the next `expect` starts looking.
    seen: usize,
}

impl Terminal {
    fn start(iso: &str, log: &str) -> Terminal {
        let bin = env!("CARGO_BIN_EXE_keel-console-run");
        let command = format!("'{bin}' '{iso}' '{log}' {DEFAULT_TIMEOUT_SECS}");
        let mut child = Command::new("script")
            .args(["-q", "-e", "-f", "-c", &command, "/dev/null"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("script (util-linux) runs");
        let input = child.stdin.take().unwrap();
        let mut out = child.stdout.take().unwrap();
        let screen = Arc::new(Mutex::new(Vec::new()));
        let sink = screen.clone();
        thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    return;
                }
                sink.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        });
        Terminal {
            child,
            input,
            screen,
            seen: 0,
        }
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.screen.lock().unwrap()).into_owned()
    }

    /// Waits until `text` appears after what was already matched.
    fn expect(&mut self, text: &str, timeout: Duration) {
        let start = Instant::now();
        loop {
            let screen = self.screen.lock().unwrap().clone();
            if let Some(at) = find(&screen[self.seen..], text.as_bytes()) {
                self.seen += at + text.len();
                return;
            }
            if start.elapsed() > timeout {
                let _ = self.child.kill();
                panic!(
                    "{text:?} did not appear within {timeout:?}; the terminal showed:\n{}",
                    self.screen()
                );
            }
            thread::sleep(Duration::from_millis(50));
        }
    }

    fn type_bytes(&mut self, bytes: &[u8]) {
        self.input.write_all(bytes).unwrap();
        self.input.flush().unwrap();
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

#[test]
fn a_shell_on_the_console_through_a_pseudo_terminal() {
    let dir = artifacts_dir();
    let iso = dir.join("console.iso");
    assert!(
        iso.is_file(),
        "{} is missing: cargo xtask build",
        iso.display()
    );
    let log = std::env::temp_dir().join(format!("keel-console-{}.log", std::process::id()));
    let boot = Duration::from_secs(DEFAULT_TIMEOUT_SECS);
    let step = Duration::from_secs(60);
    let mut t = Terminal::start(&iso.to_string_lossy(), &log.to_string_lossy());

    t.expect("keel-console: shell on ttyS0", boot);
    t.expect("# ", step);
    // A command and its output, typed as a person would (CR is Enter in raw mode).
    t.type_bytes(b"echo $((6*7))XY\r");
    t.expect("42XY", step);
    // Escape sequences reach the terminal as the guest sent them.
    t.type_bytes(b"printf '\\033[1mBOLD\\033[0m\\n'\r");
    t.expect("\x1b[1mBOLD\x1b[0m", step);
    // A flood of typed input: Keel holds a fixed buffer, the shell's line
    // editor caps its line; Ctrl-U clears it, and the console still works.
    t.type_bytes(&[b'x'; 3000]);
    t.type_bytes(b"\x15echo after-flood$((1+1))\r");
    t.expect("after-flood2", step);
    // Keel's prompt behind Ctrl-].
    t.type_bytes(b"\x1d");
    t.expect("keel> ", step);
    t.type_bytes(b"list\r");
    t.expect("* 0 console running", step);
    t.type_bytes(b"switch 7\r");
    t.expect("no VM '7'", step);
    t.type_bytes(b"stats\r");
    t.expect("exit statistics so far", step);
    // An empty line returns to the guest.
    t.type_bytes(b"\r");
    t.type_bytes(b"echo back$((2+3))\r");
    t.expect("back5", step);
    t.type_bytes(b"poweroff -f\r");
    t.expect("keel-console-run: terminal restored", step);
    let status = t.child.wait().unwrap();
    let screen = t.screen();
    assert_eq!(status.code(), Some(0), "{screen}");

    // The log keeps the prefixed, escaped form.
    let log_text = std::fs::read_to_string(&log).unwrap();
    for line in [
        "[console] 42XY",
        "[console] \\x1B[1mBOLD\\x1B[0m",
        "[console] after-flood2",
        "keel: VM 'console' stopped: the guest powered the machine off (ACPI S5)",
        "keel: exit status 0",
    ] {
        assert!(
            log_text.lines().any(|l| l == line),
            "{line:?} not in the log:\n{log_text}"
        );
    }
    // The prompt's text is not guest output: it is on the terminal only.
    assert!(!log_text.contains("keel> "), "{log_text}");
    let _ = std::fs::remove_file(&log);
}
