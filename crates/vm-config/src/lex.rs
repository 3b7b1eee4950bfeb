//! The xl.cfg syntax: text to a list of `KEY = VALUE` settings, types unchecked.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use crate::ConfigError;

/// A value as written.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `"..."` or `'...'`, escapes resolved.
    Str(String),
    /// A decimal or `0x` hexadecimal number.
    Num(u64),
    /// `[ v, v, ]`; lists do not nest.
    List(Vec<Value>),
}

/// One `KEY = VALUE` setting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Setting {
    /// 1-based line the key is on.
    pub line: u32,
    pub key: String,
    pub value: Value,
    /// The value as written, shortened for messages.
    pub raw: String,
    /// Where the value is written in the text, in bytes.
    pub span: core::ops::Range<usize>,
}

impl Setting {
    /// An error about this setting: `KEY = RAW: MESSAGE`.
    pub fn error(&self, message: &str) -> ConfigError {
        ConfigError::at(self.line, format!("{} = {}: {message}", self.key, self.raw))
    }
}

/// Longest value text quoted back in a message, in characters.
const RAW_MAX: usize = 40;

fn shorten(raw: &str) -> String {
    let flat: String = raw
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect();
    let mut out: String = flat.chars().take(RAW_MAX).collect();
    if flat.chars().count() > RAW_MAX {
        out.push_str("...");
    }
    out
}

/// Splits `text` into settings.
pub fn settings(text: &str) -> Result<Vec<Setting>, ConfigError> {
    let mut lx = Lexer {
        s: text,
        b: text.as_bytes(),
        i: 0,
        line: 1,
    };
    let mut out = Vec::new();
    loop {
        lx.skip_blank_lines();
        if lx.i >= lx.b.len() {
            return Ok(out);
        }
        out.push(lx.setting()?);
    }
}

struct Lexer<'a> {
    s: &'a str,
    b: &'a [u8],
    i: usize,
    line: u32,
}

fn is_ident_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_'
}

fn is_ident(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_'
}

impl Lexer<'_> {
    fn peek(&self) -> Option<u8> {
        self.b.get(self.i).copied()
    }

    fn err(&self, message: String) -> ConfigError {
        ConfigError::at(self.line, message)
    }

    /// The text from the cursor to the end of its line, for messages.
    fn rest_of_line(&self) -> String {
        let end = self.b[self.i..]
            .iter()
            .position(|&c| c == b'\n')
            .map_or(self.b.len(), |p| self.i + p);
        shorten(self.s.get(self.i..end).unwrap_or(""))
    }

    /// Skips spaces, tabs, carriage returns and a `#` comment, not the newline.
    fn skip_space(&mut self) {
        while let Some(c) = self.peek() {
            match c {
                b' ' | b'\t' | b'\r' => self.i += 1,
                b'#' => {
                    while self.peek().is_some_and(|c| c != b'\n') {
                        self.i += 1;
                    }
                }
                _ => break,
            }
        }
    }

    /// Skips space, comments, newlines and empty statements (`;`).
    fn skip_blank_lines(&mut self) {
        loop {
            self.skip_space();
            match self.peek() {
                Some(b'\n') => {
                    self.i += 1;
                    self.line += 1;
                }
                Some(b';') => self.i += 1,
                _ => return,
            }
        }
    }

    /// Skips space, comments and newlines (inside a list).
    fn skip_space_and_newlines(&mut self) {
        loop {
            self.skip_space();
            if self.peek() == Some(b'\n') {
                self.i += 1;
                self.line += 1;
            } else {
                return;
            }
        }
    }

    fn setting(&mut self) -> Result<Setting, ConfigError> {
        let line = self.line;
        let start = self.i;
        if !self.peek().is_some_and(is_ident_start) {
            return Err(self.err(format!(
                "expected a setting such as name = \"myvm\", found '{}'",
                self.rest_of_line()
            )));
        }
        while self.peek().is_some_and(is_ident) {
            self.i += 1;
        }
        let key = self.s[start..self.i].to_string();
        self.skip_space();
        if self.peek() != Some(b'=') {
            return Err(self.err(format!(
                "expected '=' after '{key}', found '{}'",
                self.rest_of_line()
            )));
        }
        self.i += 1;
        self.skip_space();
        let vstart = self.i;
        let value = self.value(&key, true)?;
        let span = vstart..self.i;
        let raw = shorten(self.s.get(span.clone()).unwrap_or(""));
        self.skip_space();
        match self.peek() {
            None | Some(b'\n') | Some(b';') => {}
            Some(_) => {
                return Err(ConfigError::at(
                    self.line,
                    format!(
                        "{key} = {raw}: unexpected '{}' after the value (one setting per line; \
                         numbers take no unit)",
                        self.rest_of_line()
                    ),
                ))
            }
        }
        Ok(Setting {
            line,
            key,
            value,
            raw,
            span,
        })
    }

    fn value(&mut self, key: &str, list_ok: bool) -> Result<Value, ConfigError> {
        match self.peek() {
            Some(q @ (b'"' | b'\'')) => self.string(key, q).map(Value::Str),
            Some(c) if c.is_ascii_digit() => self.number(key).map(Value::Num),
            Some(b'[') if list_ok => self.list(key).map(Value::List),
            Some(b'[') => Err(self.err(format!("{key} = ...: lists cannot contain lists"))),
            None | Some(b'\n') => Err(self.err(format!(
                "{key} = has no value; write a \"string\", a number or a [ list ]"
            ))),
            Some(_) => Err(self.err(format!(
                "{key} = {}: a value must be a \"string\" in quotes, a number or a [ list ]",
                self.rest_of_line()
            ))),
        }
    }

    fn string(&mut self, key: &str, quote: u8) -> Result<String, ConfigError> {
        let start = self.i;
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        let unterminated = |lx: &Self| {
            lx.err(format!(
                "{key} = {}: the string has no closing {}",
                shorten(lx.s.get(start..lx.i).unwrap_or("")),
                quote as char
            ))
        };
        loop {
            let Some(c) = self.peek() else {
                return Err(unterminated(self));
            };
            match c {
                b'\n' => return Err(unterminated(self)),
                c if c == quote => {
                    self.i += 1;
                    break;
                }
                b'\\' => {
                    self.i += 1;
                    let Some(e) = self.peek() else {
                        return Err(unterminated(self));
                    };
                    self.i += 1;
                    let byte = match e {
                        b'n' => b'\n',
                        b't' => b'\t',
                        b'r' => b'\r',
                        b'a' => 0x07,
                        b'b' => 0x08,
                        b'f' => 0x0c,
                        b'v' => 0x0b,
                        b'\\' | b'\'' | b'"' => e,
                        b'x' => self.digits(16, 2, key)?,
                        b'0'..=b'7' => {
                            self.i -= 1;
                            self.digits(8, 3, key)?
                        }
                        _ => {
                            return Err(self.err(format!(
                                "{key} = ...: unknown escape '\\{}' in a string (write \\\\ for a backslash)",
                                char::from(e).escape_default()
                            )))
                        }
                    };
                    out.push(byte);
                }
                _ => {
                    out.push(c);
                    self.i += 1;
                }
            }
        }
        String::from_utf8(out).map_err(|_| {
            self.err(format!(
                "{key} = ...: the escapes in this string do not make UTF-8 text"
            ))
        })
    }

    /// Up to `max` digits in `radix` (at least one), as one byte.
    fn digits(&mut self, radix: u32, max: usize, key: &str) -> Result<u8, ConfigError> {
        let mut v: u32 = 0;
        let mut n = 0;
        while n < max {
            let Some(d) = self.peek().and_then(|c| char::from(c).to_digit(radix)) else {
                break;
            };
            v = v * radix + d;
            self.i += 1;
            n += 1;
        }
        if n == 0 {
            return Err(self.err(format!(
                "{key} = ...: '\\x' in a string needs hex digits, as in \\x41"
            )));
        }
        u8::try_from(v).map_err(|_| {
            self.err(format!(
                "{key} = ...: the octal escape \\{v:o} is larger than one byte"
            ))
        })
    }

    fn number(&mut self, key: &str) -> Result<u64, ConfigError> {
        let start = self.i;
        let (radix, digits_start) =
            if self.b[self.i..].starts_with(b"0x") || self.b[self.i..].starts_with(b"0X") {
                (16, self.i + 2)
            } else {
                (10, self.i)
            };
        self.i = digits_start;
        while self.peek().is_some_and(is_ident) {
            self.i += 1;
        }
        let text = &self.s[start..self.i];
        let digits = &self.s[digits_start..self.i];
        let bad = |what: &str| self.err(format!("{key} = {}: {what}", shorten(text)));
        if digits.is_empty() || !digits.chars().all(|c| c.is_digit(radix)) {
            return Err(bad(
                "not a number (write decimal digits or 0x and hex digits; numbers take no unit)",
            ));
        }
        u64::from_str_radix(digits, radix).map_err(|_| bad("the number is too large"))
    }

    fn list(&mut self, key: &str) -> Result<Vec<Value>, ConfigError> {
        let open_line = self.line;
        self.i += 1;
        let mut items = Vec::new();
        loop {
            self.skip_space_and_newlines();
            match self.peek() {
                Some(b']') => {
                    self.i += 1;
                    return Ok(items);
                }
                None => {
                    return Err(ConfigError::at(
                        open_line,
                        format!("{key} = [...: the list has no closing ]"),
                    ))
                }
                _ => items.push(self.value(key, false)?),
            }
            self.skip_space_and_newlines();
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b']') => {}
                None => {
                    return Err(ConfigError::at(
                        open_line,
                        format!("{key} = [...: the list has no closing ]"),
                    ))
                }
                Some(_) => {
                    return Err(self.err(format!(
                        "{key} = [...: expected ',' or ']' between list elements, found '{}'",
                        self.rest_of_line()
                    )))
                }
            }
        }
    }
}
