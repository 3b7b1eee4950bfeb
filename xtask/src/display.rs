//! The emulated machine's display (README, "The screen"): QEMU's standard
//! VGA, which Keel drives to show the focused VM's screen, seen through
//! QEMU's VNC server (`--display vnc`) or saved when a VM ends
//! (`--screenshot FILE`) with the `screendump` command of QEMU's QMP
//! monitor (QEMU 7.2 writes PNG itself: `format: png`).
//!
//! Without either, the machine has no display adapter (`-vga none`), so
//! Keel draws nothing and ends without holding a last frame.

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// The text of Keel's log line when the focused VM ended and its last
/// frame is on the machine's display (`crates/keel/src/vm/console.rs`).
pub const LAST_FRAME_LINE: &str = "its last frame is on the screen";

/// VNC display numbers tried: ports 5900 + N.
const VNC_DISPLAYS: std::ops::Range<u16> = 0..100;

/// How long a QMP command may take.
const QMP_TIMEOUT: Duration = Duration::from_secs(20);

/// What the machine's display should do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DisplayOptions {
    /// Serve the display at VNC display N on 127.0.0.1.
    pub vnc: Option<u16>,
    /// Save the display to this file when a VM ends (PNG, or PPM when
    /// the name ends in `.ppm`).
    pub screenshot: Option<PathBuf>,
}

impl DisplayOptions {
    /// Whether the machine needs its display adapter.
    pub fn wanted(&self) -> bool {
        self.vnc.is_some() || self.screenshot.is_some()
    }

    /// QEMU's arguments: given after `runner::qemu_command`'s
    /// `-vga none -display none`, they win (QEMU takes the last of each).
    pub fn qemu_args(&self, qmp: Option<&Path>) -> Vec<String> {
        let mut args = Vec::new();
        if !self.wanted() {
            return args;
        }
        args.extend(["-vga".into(), "std".into()]);
        if let Some(n) = self.vnc {
            args.extend(["-display".into(), format!("vnc=127.0.0.1:{n}")]);
        }
        if let Some(path) = qmp {
            args.extend([
                "-qmp".into(),
                format!(
                    "unix:{},server=on,wait=off",
                    path.to_string_lossy().replace(',', ",,")
                ),
            ]);
        }
        args
    }
}

/// The first VNC display number whose port is free on 127.0.0.1.
pub fn free_vnc_display() -> Option<u16> {
    VNC_DISPLAYS
        .into_iter()
        .find(|n| TcpListener::bind(("127.0.0.1", 5900 + n)).is_ok())
}

static QMP_SOCKETS: AtomicU32 = AtomicU32::new(0);

/// A fresh path for a QMP socket under the system temp dir.
pub fn qmp_socket_path() -> PathBuf {
    std::env::temp_dir().join(format!(
        "keel-qmp-{}-{}.sock",
        std::process::id(),
        QMP_SOCKETS.fetch_add(1, Ordering::SeqCst)
    ))
}

/// The screendump format for `file`: PPM for `.ppm`, else PNG.
pub fn format_of(file: &Path) -> &'static str {
    match file.extension().and_then(|e| e.to_str()) {
        Some(e) if e.eq_ignore_ascii_case("ppm") => "ppm",
        _ => "png",
    }
}

/// A JSON string literal of `s`.
fn json_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Pauses the machine, saves its display to `file` and lets it go on,
/// through QEMU's QMP socket at `qmp`.
pub fn screendump(qmp: &Path, file: &Path) -> Result<(), String> {
    let stream =
        UnixStream::connect(qmp).map_err(|e| format!("QMP socket {}: {e}", qmp.display()))?;
    stream
        .set_read_timeout(Some(QMP_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut reader = BufReader::new(stream);
    // The greeting, then one reply per command (events in between skipped).
    let reply = |reader: &mut BufReader<UnixStream>| -> Result<String, String> {
        loop {
            let mut line = String::new();
            if reader.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
                return Err("QMP closed".into());
            }
            if line.contains("\"return\"") || line.contains("\"error\"") || line.contains("\"QMP\"")
            {
                return Ok(line);
            }
        }
    };
    reply(&mut reader)?;
    let file_name = file.to_string_lossy();
    let commands = [
        r#"{"execute":"qmp_capabilities"}"#.to_string(),
        r#"{"execute":"stop"}"#.to_string(),
        format!(
            r#"{{"execute":"screendump","arguments":{{"filename":{},"format":"{}"}}}}"#,
            json_string(&file_name),
            format_of(file)
        ),
        r#"{"execute":"cont"}"#.to_string(),
    ];
    let mut failed = None;
    for c in &commands {
        writeln!(writer, "{c}").map_err(|e| e.to_string())?;
        let r = reply(&mut reader)?;
        if r.contains("\"error\"") && failed.is_none() {
            failed = Some(format!("{c}: {}", r.trim()));
        }
    }
    failed.map_or(Ok(()), Err)
}

/// A binary PPM (P6, maxval 255) as width, height and RGB bytes.
pub fn parse_ppm(bytes: &[u8]) -> Option<(u32, u32, &[u8])> {
    let mut fields = Vec::new();
    let mut i = 0;
    while fields.len() < 4 {
        while bytes.get(i)?.is_ascii_whitespace() {
            i += 1;
        }
        if bytes[i] == b'#' {
            while *bytes.get(i)? != b'\n' {
                i += 1;
            }
            continue;
        }
        let start = i;
        while !bytes.get(i)?.is_ascii_whitespace() {
            i += 1;
        }
        fields.push(std::str::from_utf8(&bytes[start..i]).ok()?);
    }
    if fields[0] != "P6" || fields[3] != "255" {
        return None;
    }
    let (w, h): (u32, u32) = (fields[1].parse().ok()?, fields[2].parse().ok()?);
    let data = bytes.get(i + 1..)?;
    let len = (w as usize).checked_mul(h as usize)?.checked_mul(3)?;
    Some((w, h, data.get(..len)?))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_display_adds_nothing_and_a_screenshot_needs_only_the_adapter_and_qmp() {
        assert!(DisplayOptions::default().qemu_args(None).is_empty());
        let shot = DisplayOptions {
            vnc: None,
            screenshot: Some("s.png".into()),
        };
        assert_eq!(
            shot.qemu_args(Some(Path::new("/t/q,1.sock"))).join(" "),
            "-vga std -qmp unix:/t/q,,1.sock,server=on,wait=off"
        );
        let vnc = DisplayOptions {
            vnc: Some(3),
            screenshot: None,
        };
        assert_eq!(
            vnc.qemu_args(None).join(" "),
            "-vga std -display vnc=127.0.0.1:3"
        );
    }

    #[test]
    fn the_format_follows_the_file_name() {
        assert_eq!(format_of(Path::new("a/b.png")), "png");
        assert_eq!(format_of(Path::new("b.PPM")), "ppm");
        assert_eq!(format_of(Path::new("shot")), "png");
        assert_eq!(json_string("a\"b\\c"), r#""a\"b\\c""#);
    }

    #[test]
    fn ppm_headers_with_comments_parse_and_short_files_do_not() {
        let mut p = b"P6\n# QEMU\n2 1\n255\n".to_vec();
        p.extend_from_slice(&[1, 2, 3, 4, 5, 6]);
        let (w, h, rgb) = parse_ppm(&p).unwrap();
        assert_eq!((w, h, rgb), (2, 1, &[1u8, 2, 3, 4, 5, 6][..]));
        assert!(parse_ppm(&p[..p.len() - 1]).is_none(), "a pixel short");
        assert!(parse_ppm(b"P5\n1 1\n255\n\0").is_none(), "greyscale");
    }
}
