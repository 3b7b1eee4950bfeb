//! The terminal side of Keel's console (docs/ARCHITECTURE.md, "Keel's
//! console"): the emulated machine's COM2 is a Unix socket that QEMU
//! serves; xtask copies the socket to stdout byte for byte and stdin to the
//! socket, with the terminal in raw mode while stdin is one.
//!
//! Raw mode is set and restored by `stty` in a guard process that holds
//! the saved settings and waits for its stdin pipe from xtask to close:
//! that happens on every way xtask ends (a normal end, a timeout, a panic,
//! a signal), so the terminal is always given back. Raw mode clears ISIG:
//! Ctrl-C goes to the guest, as with `xl console`; Ctrl-] opens Keel's prompt.

use std::io::{self, BufRead, BufReader, IsTerminal, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

/// How long QEMU may take to create the console socket.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(20);

/// The QEMU arguments that make COM2 a console socket at `path`: QEMU
/// listens and waits for xtask before the machine starts, so no byte of
/// the console is lost. COM1 stays the log (`-serial stdio`, given first).
pub fn qemu_args(path: &Path) -> Vec<String> {
    vec![
        "-chardev".into(),
        format!(
            "socket,id=keelconsole,path={},server=on,wait=on",
            path.to_string_lossy().replace(',', ",,")
        ),
        "-serial".into(),
        "chardev:keelconsole".into(),
    ]
}

static SOCKETS: AtomicU32 = AtomicU32::new(0);

/// A fresh path for a console socket under the system temp dir.
pub fn socket_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "keel-console-{}-{}.sock",
        std::process::id(),
        SOCKETS.fetch_add(1, Ordering::SeqCst)
    ))
}

/// The console of a running emulator: the terminal in raw mode (if stdin
/// is one) and the copying threads.
pub struct Attached {
    guard: Option<Child>,
    output: Option<thread::JoinHandle<()>>,
    path: PathBuf,
}

impl Attached {
    /// Connects to the console socket at `path` that `emulator` serves,
    /// puts the terminal in raw mode and starts copying both ways.
    pub fn connect(path: &Path, emulator: &mut Child) -> Result<Attached, String> {
        let start = Instant::now();
        let stream = loop {
            match UnixStream::connect(path) {
                Ok(s) => break s,
                Err(e) => {
                    if matches!(emulator.try_wait(), Ok(Some(_)))
                        || start.elapsed() > CONNECT_TIMEOUT
                    {
                        return Err(format!(
                            "cannot connect to the emulator's console socket {}: {e}",
                            path.display()
                        ));
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            }
        };
        let guard = if io::stdin().is_terminal() {
            Some(raw_mode()?)
        } else {
            None
        };
        let mut from_guest = stream
            .try_clone()
            .map_err(|e| format!("console socket: {e}"))?;
        let output = thread::spawn(move || {
            let mut buf = [0u8; 4096];
            let out = io::stdout();
            loop {
                match from_guest.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        let mut o = out.lock();
                        if o.write_all(&buf[..n]).and_then(|()| o.flush()).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        // Not joined: it waits in a read of stdin until xtask ends.
        let mut to_guest = stream;
        thread::spawn(move || {
            let mut buf = [0u8; 256];
            let mut input = io::stdin().lock();
            loop {
                match input.read(&mut buf) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => {
                        if to_guest.write_all(&buf[..n]).is_err() {
                            return;
                        }
                    }
                }
            }
        });
        Ok(Attached {
            guard,
            output: Some(output),
            path: path.to_path_buf(),
        })
    }

    /// Whether the terminal is in raw mode (lines printed need `\r\n`).
    pub fn raw(&self) -> bool {
        self.guard.is_some()
    }

    /// The emulator ended: the last console bytes are printed and the
    /// terminal is restored.
    pub fn finish(mut self) {
        if let Some(t) = self.output.take() {
            let _ = t.join();
        }
        self.restore();
    }

    fn restore(&mut self) {
        if let Some(mut guard) = self.guard.take() {
            // Closing its stdin tells the guard to restore the settings.
            drop(guard.stdin.take());
            let _ = guard.wait();
        }
        let _ = std::fs::remove_file(&self.path);
    }
}

impl Drop for Attached {
    fn drop(&mut self) {
        self.restore();
    }
}

/// The guard: saves the terminal's settings, sets raw mode, says `ready`,
/// and restores the settings when its stdin ends. It ignores the signals a
/// terminal sends its process group, so it outlives an interrupted xtask.
const GUARD_SCRIPT: &str = "trap '' INT QUIT TERM HUP
saved=$(stty -g </dev/tty) || exit 1
stty raw -echo </dev/tty || exit 1
echo ready
cat >/dev/null
stty \"$saved\" </dev/tty
";

fn raw_mode() -> Result<Child, String> {
    let mut guard = Command::new("sh")
        .arg("-c")
        .arg(GUARD_SCRIPT)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .map_err(|e| format!("cannot run sh for stty: {e}"))?;
    let mut line = String::new();
    if let Some(out) = guard.stdout.take() {
        let _ = BufReader::new(out).read_line(&mut line);
    }
    if line.trim() != "ready" {
        let _ = guard.wait();
        return Err("stty could not put the terminal in raw mode".into());
    }
    Ok(guard)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_serves_com2_on_the_socket_and_waits_for_xtask() {
        let a = qemu_args(Path::new("/t/a,b.sock"));
        assert_eq!(
            a,
            [
                "-chardev",
                "socket,id=keelconsole,path=/t/a,,b.sock,server=on,wait=on",
                "-serial",
                "chardev:keelconsole"
            ]
        );
    }
}
