//! Host networking for QEMU runs: the machine's virtio-net NIC on QEMU's
//! restricted user network, and the small HTTP server on the loopback that
//! the guests reach through a `guestfwd` rule.
//!
//! Guest traffic never leaves the machine: the user network always has
//! `restrict=on`, so the guest reaches only QEMU's own DHCP and TFTP servers
//! and the `guestfwd` rules, each of which ends at a port on 127.0.0.1.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddrV4, TcpListener, TcpStream};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

/// The address QEMU's DHCP server leases first on its user network
/// (10.0.2.0/24, the host as 10.0.2.2): what a single guest gets.
pub const GUEST_LEASE: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 15);
/// The user network's gateway (QEMU itself, also its TFTP server).
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 2);
/// Where the guests find the test HTTP server: a `guestfwd` address on the
/// user network, forwarded to the server's loopback port.
pub const HTTP_GUEST_ADDR: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::new(10, 0, 2, 100), 80);
/// The test file's name on the HTTP server and its size: several MiB, so a
/// download runs through the receive ring many times over.
pub const TEST_FILE: &str = "keel-net.bin";
pub const TEST_FILE_LEN: usize = 6 << 20;

/// One `guestfwd` rule: TCP connections of the guest to `guest` reach
/// `127.0.0.1:host_port`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GuestFwd {
    pub guest: SocketAddrV4,
    pub host_port: u16,
}

impl std::str::FromStr for GuestFwd {
    type Err = String;
    /// `ADDR:PORT=HOSTPORT`, as `--guestfwd` takes it.
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || {
            format!(
                "--guestfwd {s}: expected GUESTADDR:PORT=HOSTPORT (for example \
                 10.0.2.100:80=8080), the host side always being 127.0.0.1"
            )
        };
        let (guest, host) = s.split_once('=').ok_or_else(bad)?;
        let guest: SocketAddrV4 = guest.parse().map_err(|_| bad())?;
        let host_port: u16 = host.parse().map_err(|_| bad())?;
        if host_port == 0 || guest.port() == 0 {
            return Err(bad());
        }
        Ok(GuestFwd { guest, host_port })
    }
}

/// QEMU's user network for a run: a TFTP root, the file its DHCP server
/// names as the boot file, and `guestfwd` rules.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostNet {
    pub tftp: Option<PathBuf>,
    pub bootfile: Option<String>,
    pub guestfwds: Vec<GuestFwd>,
}

impl HostNet {
    /// The options of a `-netdev user` or `-nic user` after its id or
    /// model: `restrict=on` always, then the TFTP root, the boot file and the
    /// `guestfwd` rules (QEMU's `tcp:ADDR:PORT-tcp:127.0.0.1:HOSTPORT`).
    pub fn user_options(&self) -> String {
        // QEMU option values double their commas.
        let q = |s: &str| s.replace(',', ",,");
        let mut o = String::from("restrict=on");
        if let Some(t) = &self.tftp {
            o.push_str(&format!(",tftp={}", q(&t.to_string_lossy())));
        }
        if let Some(b) = &self.bootfile {
            o.push_str(&format!(",bootfile={}", q(b)));
        }
        for f in &self.guestfwds {
            o.push_str(&format!(
                ",guestfwd=tcp:{}-tcp:127.0.0.1:{}",
                f.guest, f.host_port
            ));
        }
        o
    }

    /// The `-netdev` and `-device` arguments of the machine's virtio-net
    /// NIC (`virtio0` to a VM's `vif`).
    pub fn qemu_args(&self) -> [String; 4] {
        [
            "-netdev".into(),
            format!("user,id=hostnet0,{}", self.user_options()),
            "-device".into(),
            "virtio-net-pci,netdev=hostnet0".into(),
        ]
    }
}

/// Byte `i` of the test files: a counter-based pseudo-random stream
/// (SplitMix64's output function over `i / 8`), the same on every run and
/// cheap to make at any offset.
pub fn payload(len: usize) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    let mut word = 0u64;
    while out.len() < len {
        let mut z = word.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        out.extend_from_slice(&(z ^ (z >> 31)).to_le_bytes());
        word += 1;
    }
    out.truncate(len);
    out
}

/// The SHA-256 of `data` as lowercase hex, from coreutils' `sha256sum`.
pub fn sha256_hex(data: &[u8]) -> Result<String, String> {
    use std::process::{Command, Stdio};
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot run sha256sum: {e}"))?;
    let mut stdin = child.stdin.take().expect("piped");
    let data = data.to_vec();
    let writer = thread::spawn(move || stdin.write_all(&data));
    let out = child
        .wait_with_output()
        .map_err(|e| format!("sha256sum failed: {e}"))?;
    writer
        .join()
        .map_err(|_| "the sha256sum writer thread panicked".to_string())?
        .map_err(|e| format!("cannot feed sha256sum: {e}"))?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .filter(|h| out.status.success() && h.len() == 64)
        .map(str::to_string)
        .ok_or_else(|| format!("sha256sum failed ({})", out.status))
}

/// Connections the server takes before it stops accepting: QEMU opens one
/// per `guestfwd` rule when it starts; a few more leave room for a person
/// trying the server with a browser, never an unbounded number.
pub const MAX_CONNECTIONS: usize = 16;
/// Bytes of request head the server reads before it answers 431.
pub const MAX_REQUEST_HEAD: usize = 8 * 1024;
/// How long one blocked write may take before the connection is dropped
/// (the guest stopped reading).
const WRITE_TIMEOUT: Duration = Duration::from_secs(60);
/// How often the server looks at its stop flag while it waits.
const POLL: Duration = Duration::from_millis(50);

/// What the server did, for the test's verdict and the bench.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServeLog {
    /// `(path, status, body bytes sent)` per request answered.
    pub requests: Vec<(String, u16, u64)>,
}

/// A GET-only HTTP/1.0 server on 127.0.0.1 (an ephemeral port) serving
/// fixed files from memory, one connection at a time on one thread; every
/// connection closes after one response. Dropping it stops the thread.
pub struct HttpServer {
    port: u16,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<ServeLog>>,
}

impl HttpServer {
    /// Starts serving `files` (`(name, contents)`, reached as `/name`).
    pub fn start(files: Vec<(String, Arc<[u8]>)>) -> Result<HttpServer, String> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
            .map_err(|e| format!("cannot listen on 127.0.0.1: {e}"))?;
        let port = listener
            .local_addr()
            .map_err(|e| format!("cannot read the server's port: {e}"))?
            .port();
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("cannot make the listener non-blocking: {e}"))?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("keel-http".into())
            .spawn(move || serve(&listener, &files, &flag))
            .map_err(|e| format!("cannot start the HTTP server thread: {e}"))?;
        Ok(HttpServer {
            port,
            stop,
            thread: Some(thread),
        })
    }

    /// The server's port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The `guestfwd` rule that takes the guest's connections to
    /// [`HTTP_GUEST_ADDR`] to this server.
    pub fn guestfwd(&self) -> GuestFwd {
        GuestFwd {
            guest: HTTP_GUEST_ADDR,
            host_port: self.port,
        }
    }

    /// Stops the server and returns what it served.
    pub fn stop(mut self) -> ServeLog {
        self.stop.store(true, Ordering::SeqCst);
        self.thread
            .take()
            .and_then(|t| t.join().ok())
            .unwrap_or_default()
    }
}

impl Drop for HttpServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn serve(listener: &TcpListener, files: &[(String, Arc<[u8]>)], stop: &AtomicBool) -> ServeLog {
    let mut log = ServeLog::default();
    let mut connections = 0;
    while !stop.load(Ordering::SeqCst) && connections < MAX_CONNECTIONS {
        match listener.accept() {
            Ok((stream, _)) => {
                connections += 1;
                if let Some(entry) = answer(stream, files, stop) {
                    log.requests.push(entry);
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => thread::sleep(POLL),
            Err(_) => thread::sleep(POLL),
        }
    }
    log
}

/// Reads one request head and answers it; `None` when the peer went away
/// (or the server was stopped) before a whole head arrived.
fn answer(
    mut stream: TcpStream,
    files: &[(String, Arc<[u8]>)],
    stop: &AtomicBool,
) -> Option<(String, u16, u64)> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(POLL)).ok()?;
    stream.set_write_timeout(Some(WRITE_TIMEOUT)).ok()?;
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    // A guest reached through guestfwd connects when QEMU starts and sends
    // its request only once it has booted: wait as long as the run lasts.
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && !head.windows(2).any(|w| w == b"\n\n") {
        if head.len() >= MAX_REQUEST_HEAD {
            return respond(&mut stream, "-", 431, b"request head too large\n");
        }
        match stream.read(&mut buf) {
            Ok(0) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if stop.load(Ordering::SeqCst) {
                    return None;
                }
            }
            Err(_) => return None,
        }
    }
    let text = String::from_utf8_lossy(&head);
    let mut words = text.lines().next().unwrap_or("").split_whitespace();
    let (method, target) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method != "GET" {
        return respond(&mut stream, target, 405, b"only GET\n");
    }
    let name = target.strip_prefix('/').unwrap_or(target);
    match files.iter().find(|(n, _)| n == name) {
        Some((_, body)) => respond(&mut stream, target, 200, body),
        None => respond(&mut stream, target, 404, b"no such file\n"),
    }
}

fn respond(
    stream: &mut TcpStream,
    target: &str,
    status: u16,
    body: &[u8],
) -> Option<(String, u16, u64)> {
    let reason = match status {
        200 => "OK",
        404 => "Not Found",
        405 => "Method Not Allowed",
        _ => "Request Header Fields Too Large",
    };
    let head = format!(
        "HTTP/1.0 {status} {reason}\r\nContent-Type: application/octet-stream\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    let sent = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body))
        .and_then(|()| stream.flush());
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let bytes = if sent.is_ok() { body.len() as u64 } else { 0 };
    Some((target.to_string(), status, bytes))
}

/// The test HTTP server with the test file ([`TEST_FILE`], [`payload`] of
/// [`TEST_FILE_LEN`] bytes) and `extra` files.
pub fn test_server(extra: Vec<(String, Arc<[u8]>)>) -> Result<HttpServer, String> {
    let mut files = vec![(TEST_FILE.to_string(), Arc::from(payload(TEST_FILE_LEN)))];
    files.extend(extra);
    HttpServer::start(files)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Instant;

    fn get(port: u16, request: &str) -> Vec<u8> {
        let mut s = TcpStream::connect((Ipv4Addr::LOCALHOST, port)).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        s.write_all(request.as_bytes()).unwrap();
        let mut out = Vec::new();
        s.read_to_end(&mut out).unwrap();
        out
    }

    #[test]
    fn netdev_is_restricted_with_tftp_bootfile_and_guestfwd() {
        let net = HostNet {
            tftp: Some(PathBuf::from("/t/tf,tp")),
            bootfile: Some("boot.ipxe".into()),
            guestfwds: vec!["10.0.2.100:80=4567".parse().unwrap()],
        };
        assert_eq!(
            net.qemu_args().join(" "),
            "-netdev user,id=hostnet0,restrict=on,tftp=/t/tf,,tp,bootfile=boot.ipxe,\
             guestfwd=tcp:10.0.2.100:80-tcp:127.0.0.1:4567 -device virtio-net-pci,netdev=hostnet0"
        );
        assert_eq!(HostNet::default().user_options(), "restrict=on");
    }

    #[test]
    fn guestfwd_syntax() {
        let f: GuestFwd = "10.0.2.100:80=8080".parse().unwrap();
        assert_eq!(f.guest, HTTP_GUEST_ADDR);
        assert_eq!(f.host_port, 8080);
        for bad in [
            "10.0.2.100:80",
            "10.0.2.100=80",
            "host:80=1",
            "10.0.2.100:80=0",
            "10.0.2.100:80=70000",
        ] {
            assert!(bad.parse::<GuestFwd>().is_err(), "{bad}");
        }
    }

    #[test]
    fn payload_is_deterministic_and_not_constant() {
        let a = payload(1000);
        assert_eq!(a, payload(1000));
        assert_eq!(&payload(16)[..], &a[..16]);
        assert_eq!(a.len(), 1000);
        // SplitMix64 of 0: its first output word is 0xE220A8397B1DCDAF.
        assert_eq!(&a[..8], &0xE220_A839_7B1D_CDAFu64.to_le_bytes());
        let distinct: std::collections::BTreeSet<u8> = a.iter().copied().collect();
        assert!(distinct.len() > 200);
    }

    #[test]
    fn sha256_of_abc() {
        // FIPS 180-4 example: SHA-256("abc").
        assert_eq!(
            sha256_hex(b"abc").unwrap(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn server_answers_get_404_and_refuses_other_methods() {
        let body: Arc<[u8]> = Arc::from(payload(100_000));
        let server = HttpServer::start(vec![("f.bin".into(), body.clone())]).unwrap();
        let port = server.port();
        let r = get(port, "GET /f.bin HTTP/1.0\r\nHost: x\r\n\r\n");
        let split = r.windows(4).position(|w| w == b"\r\n\r\n").unwrap();
        let head = String::from_utf8_lossy(&r[..split]);
        assert!(head.starts_with("HTTP/1.0 200 OK\r\n"), "{head}");
        assert!(head.contains("Content-Length: 100000"), "{head}");
        assert_eq!(&r[split + 4..], &body[..]);
        let r = get(port, "GET /nothing HTTP/1.0\r\n\r\n");
        assert!(r.starts_with(b"HTTP/1.0 404 "));
        let r = get(port, "POST /f.bin HTTP/1.0\r\n\r\n");
        assert!(r.starts_with(b"HTTP/1.0 405 "));
        // A head that never ends: all of it read, then refused.
        let huge = format!("GET /{}", "a".repeat(MAX_REQUEST_HEAD - 5));
        let r = get(port, &huge);
        assert!(r.starts_with(b"HTTP/1.0 431 "));
        let log = server.stop();
        assert_eq!(log.requests[0], ("/f.bin".to_string(), 200, 100_000));
        assert_eq!(log.requests.len(), 4);
    }

    #[test]
    fn a_silent_connection_does_not_keep_the_server_from_stopping() {
        let server = HttpServer::start(vec![]).unwrap();
        let _idle = TcpStream::connect((Ipv4Addr::LOCALHOST, server.port())).unwrap();
        thread::sleep(Duration::from_millis(200));
        let started = Instant::now();
        assert!(server.stop().requests.is_empty());
        assert!(started.elapsed() < Duration::from_secs(2));
    }
}
