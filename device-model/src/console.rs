//! Guest console output, one prefixed line at a time.
//!
//! Keel's own serial port carries the output of every VM, so each line a guest
//! writes appears as `[<vm name>] <line>` (docs/ARCHITECTURE.md, "The machine
//! a guest sees"). The guest's bytes are untrusted: they must not be able to
//! move the cursor, clear the screen or forge another VM's prefix on the host
//! terminal, hence the escaping.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::fmt::Write;

use crate::serial::CharSink;

/// The longest run of guest bytes emitted as one line; a longer line is
/// emitted in pieces of at most this many bytes, so a guest that never sends
/// a newline cannot make Keel buffer without bound.
pub const MAX_LINE_BYTES: usize = 256;

/// Where finished lines go.
pub type LineOutput = Box<dyn FnMut(&str) + Send>;

/// A [`CharSink`] that turns a guest's byte stream into prefixed host lines.
///
/// - `\n` ends a line; `\r` is dropped, so `\r\n` is one line end;
/// - other control bytes (C0 and DEL), the C1 control characters, and bytes
///   that are not UTF-8 are shown as `\xNN`, one per byte;
/// - a line longer than [`MAX_LINE_BYTES`] bytes is emitted in pieces, never
///   splitting a UTF-8 character;
/// - [`PrefixedConsole::flush`] emits a partial line.
pub struct PrefixedConsole {
    name: String,
    line: Vec<u8>,
    /// The line being rendered, with room for the prefix and every byte of
    /// a full line escaped: allocated once, so a guest's output costs no
    /// allocation per line.
    text: String,
    output: LineOutput,
}

/// Characters one guest byte renders as at most (`\xNN`).
const MAX_RENDERED_PER_BYTE: usize = 4;

impl PrefixedConsole {
    /// A console for the VM named `vm_name`, handing each finished line to `output`.
    pub fn new(vm_name: &str, output: LineOutput) -> Self {
        PrefixedConsole {
            name: String::from(vm_name),
            line: Vec::with_capacity(MAX_LINE_BYTES),
            text: String::with_capacity(vm_name.len() + 3 + MAX_RENDERED_PER_BYTE * MAX_LINE_BYTES),
            output,
        }
    }

    /// Emits the partial line, if any (for when the VM stops mid-line).
    pub fn flush(&mut self) {
        if !self.line.is_empty() {
            self.emit(self.line.len());
        }
    }

    /// Emits the first `len` buffered bytes as one line and keeps the rest.
    fn emit(&mut self, len: usize) {
        self.text.clear();
        // Writing into a String cannot fail.
        let _ = write!(self.text, "[{}] ", self.name);
        render(&self.line[..len], &mut self.text);
        (self.output)(&self.text);
        self.line.drain(..len);
    }

    /// Emits a full buffer as a piece, keeping a trailing incomplete UTF-8
    /// character for the next piece.
    fn emit_piece(&mut self) {
        let keep = incomplete_utf8_tail(&self.line);
        self.emit(self.line.len() - keep);
    }
}

impl CharSink for PrefixedConsole {
    fn write_byte(&mut self, byte: u8) {
        match byte {
            b'\n' => self.emit(self.line.len()),
            b'\r' => {}
            _ => {
                self.line.push(byte);
                if self.line.len() >= MAX_LINE_BYTES {
                    self.emit_piece();
                }
            }
        }
    }
}

/// Appends `bytes` to `out`, escaping what a terminal would interpret.
fn render(bytes: &[u8], out: &mut String) {
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            if c.is_control() {
                let mut buf = [0u8; 4];
                for b in c.encode_utf8(&mut buf).bytes() {
                    escape(b, out);
                }
            } else {
                out.push(c);
            }
        }
        for &b in chunk.invalid() {
            escape(b, out);
        }
    }
}

fn escape(byte: u8, out: &mut String) {
    let _ = write!(out, "\\x{byte:02X}");
}

/// How many bytes at the end of `bytes` are the start of a UTF-8 character
/// still waiting for its continuation bytes (0 if none).
fn incomplete_utf8_tail(bytes: &[u8]) -> usize {
    // A UTF-8 character is at most 4 bytes, so an incomplete one is at most 3.
    let window = bytes.len().min(3);
    let tail = &bytes[bytes.len() - window..];
    let Some(lead) = tail.iter().rposition(|&b| b & 0xC0 != 0x80) else {
        return 0;
    };
    match core::str::from_utf8(&tail[lead..]) {
        Err(e) if e.valid_up_to() == 0 && e.error_len().is_none() => tail.len() - lead,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;
    use alloc::sync::Arc;
    use alloc::vec;
    use spin::Mutex;

    fn console(name: &str) -> (PrefixedConsole, Arc<Mutex<Vec<String>>>) {
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = lines.clone();
        let c = PrefixedConsole::new(
            name,
            Box::new(move |line: &str| sink.lock().push(line.to_string())),
        );
        (c, lines)
    }

    fn feed(c: &mut PrefixedConsole, bytes: &[u8]) {
        for &b in bytes {
            c.write_byte(b);
        }
    }

    fn taken(lines: &Arc<Mutex<Vec<String>>>) -> Vec<String> {
        core::mem::take(&mut *lines.lock())
    }

    #[test]
    fn newline_ends_a_prefixed_line() {
        let (mut c, lines) = console("selftest");
        feed(&mut c, b"hello\nworld\n");
        assert_eq!(taken(&lines), vec!["[selftest] hello", "[selftest] world"]);
    }

    #[test]
    fn nothing_is_emitted_before_the_line_ends() {
        let (mut c, lines) = console("vm");
        feed(&mut c, b"partial");
        assert!(taken(&lines).is_empty());
        feed(&mut c, b" line\n");
        assert_eq!(taken(&lines), vec!["[vm] partial line"]);
    }

    #[test]
    fn carriage_returns_are_dropped() {
        let (mut c, lines) = console("vm");
        feed(&mut c, b"a\r\nb\rc\r\n\r\n");
        assert_eq!(taken(&lines), vec!["[vm] a", "[vm] bc", "[vm] "]);
    }

    #[test]
    fn empty_lines_are_kept() {
        let (mut c, lines) = console("vm");
        feed(&mut c, b"\n\n");
        assert_eq!(taken(&lines), vec!["[vm] ", "[vm] "]);
    }

    #[test]
    fn control_bytes_are_escaped() {
        let (mut c, lines) = console("vm");
        feed(&mut c, b"\x1b[2Jx\ty\x00\x7f\x08\n");
        assert_eq!(taken(&lines), vec!["[vm] \\x1B[2Jx\\x09y\\x00\\x7F\\x08"]);
    }

    #[test]
    fn c1_controls_are_escaped_byte_by_byte() {
        let (mut c, lines) = console("vm");
        // U+009B is the single-character CSI.
        feed(&mut c, "a\u{9b}b\n".as_bytes());
        assert_eq!(taken(&lines), vec!["[vm] a\\xC2\\x9Bb"]);
    }

    #[test]
    fn utf8_passes_through_and_invalid_bytes_are_escaped() {
        let (mut c, lines) = console("vm");
        feed(&mut c, "grüße ✓ 🦀\n".as_bytes());
        feed(&mut c, b"bad \xff\xfe and cut \xe2\x9c ok\n");
        assert_eq!(
            taken(&lines),
            vec![
                "[vm] grüße ✓ 🦀",
                "[vm] bad \\xFF\\xFE and cut \\xE2\\x9C ok"
            ]
        );
    }

    #[test]
    fn long_lines_are_emitted_in_pieces() {
        let (mut c, lines) = console("vm");
        let long: Vec<u8> = (0..600).map(|i| b'a' + (i % 26) as u8).collect();
        feed(&mut c, &long);
        let got = taken(&lines);
        assert_eq!(got.len(), 2);
        assert_eq!(
            got[0],
            ["[vm] ", core::str::from_utf8(&long[..256]).unwrap()].concat()
        );
        assert_eq!(
            got[1],
            ["[vm] ", core::str::from_utf8(&long[256..512]).unwrap()].concat()
        );
        feed(&mut c, b"\n");
        assert_eq!(
            taken(&lines),
            vec![["[vm] ", core::str::from_utf8(&long[512..]).unwrap()].concat()]
        );
    }

    #[test]
    fn exactly_max_bytes_then_newline_gives_one_piece_and_an_empty_line() {
        let (mut c, lines) = console("vm");
        feed(&mut c, &[b'x'; MAX_LINE_BYTES]);
        feed(&mut c, b"\n");
        let got = taken(&lines);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].len(), 5 + MAX_LINE_BYTES);
        assert_eq!(got[1], "[vm] ");
    }

    #[test]
    fn long_lines_never_split_a_utf8_character() {
        let (mut c, lines) = console("vm");
        // 255 ASCII bytes then a 3-byte character straddling the 256 boundary.
        feed(&mut c, &[b'x'; 255]);
        feed(&mut c, "✓ end\n".as_bytes());
        let got = taken(&lines);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0], ["[vm] ", &"x".repeat(255)].concat());
        assert_eq!(got[1], "[vm] ✓ end");
    }

    #[test]
    fn long_runs_of_invalid_bytes_still_split() {
        let (mut c, lines) = console("vm");
        // 0xE2 alone is an incomplete lead byte; a run of them must not stall.
        feed(&mut c, &[0xE2; 600]);
        c.flush();
        let got = taken(&lines);
        let total: usize = got.iter().map(|l| l.matches("\\xE2").count()).sum();
        assert_eq!(total, 600);
        assert!(got.len() >= 3);
    }

    #[test]
    fn flush_emits_a_partial_line_once() {
        let (mut c, lines) = console("vm");
        feed(&mut c, b"no newline");
        c.flush();
        c.flush();
        assert_eq!(taken(&lines), vec!["[vm] no newline"]);
        c.flush();
        assert!(taken(&lines).is_empty());
    }

    #[test]
    fn flush_escapes_a_dangling_partial_character() {
        let (mut c, lines) = console("vm");
        feed(&mut c, b"ab\xe2\x9c");
        c.flush();
        assert_eq!(taken(&lines), vec!["[vm] ab\\xE2\\x9C"]);
    }

    #[test]
    fn incomplete_tail_detection() {
        assert_eq!(incomplete_utf8_tail(b""), 0);
        assert_eq!(incomplete_utf8_tail(b"abc"), 0);
        assert_eq!(incomplete_utf8_tail(b"a\xe2"), 1);
        assert_eq!(incomplete_utf8_tail(b"a\xe2\x9c"), 2);
        assert_eq!(incomplete_utf8_tail(b"a\xf0\x9f\xa6"), 3);
        assert_eq!(incomplete_utf8_tail("a✓".as_bytes()), 0);
        assert_eq!(incomplete_utf8_tail(b"a\xff"), 0);
        assert_eq!(incomplete_utf8_tail(b"\x80\x80\x80"), 0);
        // 0xE0 0x80 can never become a valid character.
        assert_eq!(incomplete_utf8_tail(b"a\xe0\x80"), 0);
    }
}
