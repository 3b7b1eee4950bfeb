//! A structural AML reader for the tests (no published AML interpreter
//! builds on a stable compiler): walks the namespace-defining terms the DSDT
//! uses, checks that every PkgLength matches its contents exactly, and records
//! each named object by absolute path. Method bodies are kept as bytes.

use std::collections::BTreeMap;

#[derive(Clone, Debug, PartialEq)]
pub enum Obj {
    Int(u64),
    Str(String),
    /// A name used as a value (a package element such as `LNKA`).
    Ref(String),
    Pkg(Vec<Obj>),
    Buf(Vec<u8>),
    Device,
    Scope,
    Processor {
        id: u8,
        pblk: u32,
        pblk_len: u8,
    },
    Method {
        args: u8,
        serialized: bool,
        body: Vec<u8>,
    },
    Region {
        space: u8,
        offset: u64,
        len: u64,
    },
    Field {
        region: String,
        bit_offset: u64,
        bits: u64,
    },
}

pub type Namespace = BTreeMap<String, Obj>;

struct R<'a> {
    b: &'a [u8],
    i: usize,
}

impl R<'_> {
    fn u8(&mut self) -> u8 {
        let v = self.b[self.i];
        self.i += 1;
        v
    }
    fn take(&mut self, n: usize) -> &[u8] {
        let s = &self.b[self.i..self.i + n];
        self.i += n;
        s
    }
    fn uint(&mut self, n: usize) -> u64 {
        let mut v = [0u8; 8];
        v[..n].copy_from_slice(self.take(n));
        u64::from_le_bytes(v)
    }
    /// A PkgLength; returns the end offset of the package it starts.
    fn pkg_end(&mut self) -> usize {
        let start = self.i;
        let len = self.pkg_value();
        start + len
    }
    fn pkg_value(&mut self) -> usize {
        let lead = self.u8();
        let n = usize::from(lead >> 6);
        if n == 0 {
            return usize::from(lead & 0x3F);
        }
        let mut v = usize::from(lead & 0x0F);
        for k in 0..n {
            v |= usize::from(self.u8()) << (4 + 8 * k);
        }
        v
    }
    fn seg(&mut self) -> String {
        let s = self.take(4);
        assert!(
            s.iter()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || *c == b'_'),
            "bad NameSeg {s:?}"
        );
        assert!(!s[0].is_ascii_digit(), "NameSeg starts with a digit");
        String::from_utf8(s.to_vec()).unwrap()
    }
    /// A NameString, made absolute against `scope`.
    fn name(&mut self, scope: &str) -> String {
        let mut base: Vec<String> = if scope == "\\" {
            vec![]
        } else {
            scope
                .trim_start_matches('\\')
                .split('.')
                .map(String::from)
                .collect()
        };
        if self.b[self.i] == b'\\' {
            self.i += 1;
            base.clear();
        }
        while self.b[self.i] == b'^' {
            self.i += 1;
            base.pop().expect("^ above the root");
        }
        let segs = match self.b[self.i] {
            0x00 => {
                self.i += 1;
                0
            }
            0x2E => {
                self.i += 1;
                2
            }
            0x2F => {
                self.i += 1;
                self.u8()
            }
            _ => 1,
        };
        for _ in 0..segs {
            let s = self.seg();
            base.push(s);
        }
        format!("\\{}", base.join("."))
    }
    fn data(&mut self, scope: &str) -> Obj {
        match self.u8() {
            0x00 => Obj::Int(0),
            0x01 => Obj::Int(1),
            0xFF => Obj::Int(u64::MAX),
            0x0A => Obj::Int(self.uint(1)),
            0x0B => Obj::Int(self.uint(2)),
            0x0C => Obj::Int(self.uint(4)),
            0x0E => Obj::Int(self.uint(8)),
            0x0D => {
                let end = self.b[self.i..].iter().position(|&c| c == 0).unwrap();
                let s = String::from_utf8(self.take(end).to_vec()).unwrap();
                self.i += 1;
                Obj::Str(s)
            }
            0x12 => {
                let end = self.pkg_end();
                let n = self.u8();
                let mut v = Vec::new();
                while self.i < end {
                    let c = self.b[self.i];
                    if c == b'\\'
                        || c == b'^'
                        || c == b'_'
                        || c.is_ascii_uppercase()
                        || c == 0x2E
                        || c == 0x2F
                    {
                        v.push(Obj::Ref(self.name(scope)));
                    } else {
                        v.push(self.data(scope));
                    }
                }
                assert_eq!(self.i, end, "package overran its PkgLength");
                assert_eq!(v.len(), usize::from(n), "package element count");
                Obj::Pkg(v)
            }
            0x11 => {
                let end = self.pkg_end();
                let size = match self.data(scope) {
                    Obj::Int(n) => n as usize,
                    o => panic!("buffer size {o:?}"),
                };
                assert_eq!(end - self.i, size, "buffer size matches its PkgLength");
                Obj::Buf(self.take(size).to_vec())
            }
            op => panic!("unexpected data opcode {op:#x} at {}", self.i - 1),
        }
    }
    fn term_list(&mut self, scope: &str, end: usize, ns: &mut Namespace) {
        while self.i < end {
            let op = self.u8();
            match op {
                0x08 => {
                    let n = self.name(scope);
                    let v = self.data(scope);
                    insert(ns, n, v);
                }
                0x10 => {
                    let e = self.pkg_end();
                    let n = self.name(scope);
                    ns.entry(n.clone()).or_insert(Obj::Scope);
                    self.term_list(&n, e, ns);
                }
                0x14 => {
                    let e = self.pkg_end();
                    let n = self.name(scope);
                    let flags = self.u8();
                    let body = self.take(e - self.i).to_vec();
                    insert(
                        ns,
                        n,
                        Obj::Method {
                            args: flags & 7,
                            serialized: flags & 8 != 0,
                            body,
                        },
                    );
                }
                0x5B => match self.u8() {
                    0x82 => {
                        let e = self.pkg_end();
                        let n = self.name(scope);
                        insert(ns, n.clone(), Obj::Device);
                        self.term_list(&n, e, ns);
                    }
                    0x83 => {
                        let e = self.pkg_end();
                        let n = self.name(scope);
                        let id = self.u8();
                        let pblk = self.uint(4) as u32;
                        let pblk_len = self.u8();
                        insert(ns, n.clone(), Obj::Processor { id, pblk, pblk_len });
                        self.term_list(&n, e, ns);
                    }
                    0x80 => {
                        let n = self.name(scope);
                        let space = self.u8();
                        let (Obj::Int(offset), Obj::Int(len)) =
                            (self.data(scope), self.data(scope))
                        else {
                            panic!("region bounds must be constants")
                        };
                        insert(ns, n, Obj::Region { space, offset, len });
                    }
                    0x81 => {
                        let e = self.pkg_end();
                        let region = self.name(scope);
                        let _flags = self.u8();
                        let mut bit = 0;
                        while self.i < e {
                            let n = format!("{}.{}", scope, self.seg());
                            let bits = self.pkg_value() as u64;
                            insert(
                                ns,
                                n,
                                Obj::Field {
                                    region: region.clone(),
                                    bit_offset: bit,
                                    bits,
                                },
                            );
                            bit += bits;
                        }
                    }
                    x => panic!("unexpected extended opcode 0x5B {x:#x}"),
                },
                _ => panic!("unexpected opcode {op:#x} at {}", self.i - 1),
            }
            assert!(self.i <= end, "term overran its enclosing PkgLength");
        }
        assert_eq!(self.i, end);
    }
}

fn insert(ns: &mut Namespace, n: String, v: Obj) {
    assert!(ns.insert(n.clone(), v).is_none(), "{n} defined twice");
}

/// Reads the AML of a definition block (without its header).
pub fn walk(aml: &[u8]) -> Namespace {
    let mut ns = Namespace::new();
    let mut r = R { b: aml, i: 0 };
    r.term_list("\\", aml.len(), &mut ns);
    ns
}

/// Splits a resource template into (descriptor tag, body) pairs, checking
/// lengths and that it ends with an End Tag.
pub fn resources(buf: &[u8]) -> Vec<(u8, Vec<u8>)> {
    let mut out = Vec::new();
    let mut i = 0;
    loop {
        let tag = buf[i];
        let (name, len, hdr) = if tag & 0x80 == 0 {
            (tag >> 3, usize::from(tag & 7), 1)
        } else {
            (
                tag,
                usize::from(u16::from_le_bytes([buf[i + 1], buf[i + 2]])),
                3,
            )
        };
        let body = buf[i + hdr..i + hdr + len].to_vec();
        i += hdr + len;
        if name == 0x0F {
            assert_eq!(i, buf.len(), "End Tag ends the template");
            return out;
        }
        out.push((name, body));
    }
}
