//! A small AML encoder (ACPI 6.5 chapter 20, "ACPI Machine Language
//! Specification") and ACPI resource descriptors (6.4): just the terms Keel's
//! DSDT uses. Each function returns the encoded bytes of one term, so a table
//! is built by nesting calls, the way ASL nests.
//!
//! Package lengths are limited to 2^28 bytes by the format; the DSDT builder
//! checks the whole table against that (a larger body cannot occur inside a
//! smaller table), so the encoders here do not fail.

use alloc::vec::Vec;

const ZERO_OP: u8 = 0x00;
const ONE_OP: u8 = 0x01;
const NAME_OP: u8 = 0x08;
const BYTE_PREFIX: u8 = 0x0A;
const WORD_PREFIX: u8 = 0x0B;
const DWORD_PREFIX: u8 = 0x0C;
const STRING_PREFIX: u8 = 0x0D;
const QWORD_PREFIX: u8 = 0x0E;
const SCOPE_OP: u8 = 0x10;
const BUFFER_OP: u8 = 0x11;
const PACKAGE_OP: u8 = 0x12;
const METHOD_OP: u8 = 0x14;
const DUAL_NAME_PREFIX: u8 = 0x2E;
const MULTI_NAME_PREFIX: u8 = 0x2F;
const EXT_OP_PREFIX: u8 = 0x5B;
const OP_REGION_OP: u8 = 0x80;
const FIELD_OP: u8 = 0x81;
const DEVICE_OP: u8 = 0x82;
const PROCESSOR_OP: u8 = 0x83;
const LOCAL0_OP: u8 = 0x60;
const ARG0_OP: u8 = 0x68;
const STORE_OP: u8 = 0x70;
const AND_OP: u8 = 0x7B;
const OR_OP: u8 = 0x7D;
const CREATE_DWORD_FIELD_OP: u8 = 0x8A;
const LLESS_OP: u8 = 0x95;
const IF_OP: u8 = 0xA0;
const ELSE_OP: u8 = 0xA1;
const RETURN_OP: u8 = 0xA4;

/// Region spaces (ACPI 6.5 5.5.2.4).
#[derive(Clone, Copy, Debug)]
#[repr(u8)]
pub enum RegionSpace {
    SystemIo = 0x01,
    PciConfig = 0x02,
}

/// PkgLength (20.2.4): the length of `body` plus the encoding itself.
fn pkg_length(body_len: usize) -> Vec<u8> {
    let total = if body_len + 1 < 0x40 {
        body_len + 1
    } else if body_len + 2 < 1 << 12 {
        body_len + 2
    } else if body_len + 3 < 1 << 20 {
        body_len + 3
    } else {
        body_len + 4
    };
    pkg_value(total)
}

/// The PkgLength encoding of the value `v` (also a NamedField's bit count, 20.2.5.2).
fn pkg_value(v: usize) -> Vec<u8> {
    if v < 0x40 {
        return [v as u8].into();
    }
    let n = if v < 1 << 12 {
        2
    } else if v < 1 << 20 {
        3
    } else {
        4
    };
    let mut out = Vec::with_capacity(n);
    out.push(((n - 1) << 6) as u8 | (v & 0x0F) as u8);
    for i in 1..n {
        out.push((v >> (4 + 8 * (i - 1))) as u8);
    }
    out
}

/// `op`, a PkgLength, then `body`.
fn with_pkg(op: &[u8], body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(op.len() + body.len() + 4);
    out.extend_from_slice(op);
    out.extend_from_slice(&pkg_length(body.len()));
    out.extend_from_slice(body);
    out
}

fn name_seg(seg: &str, out: &mut Vec<u8>) {
    let b = seg.as_bytes();
    for i in 0..4 {
        out.push(b.get(i).copied().unwrap_or(b'_'));
    }
}

/// A NameString (20.2.2) from ASL-like text: `\_SB.PCI0`, `^LNKA`, `_HID`.
/// Segments shorter than four characters are padded with `_`.
pub fn name_string(path: &str) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = path;
    if let Some(r) = rest.strip_prefix('\\') {
        out.push(b'\\');
        rest = r;
    }
    while let Some(r) = rest.strip_prefix('^') {
        out.push(b'^');
        rest = r;
    }
    let segs: Vec<&str> = rest.split('.').filter(|s| !s.is_empty()).collect();
    match segs.len() {
        0 => out.push(ZERO_OP),
        1 => {}
        2 => out.push(DUAL_NAME_PREFIX),
        n => {
            out.push(MULTI_NAME_PREFIX);
            out.push(n as u8);
        }
    }
    for s in segs {
        name_seg(s, &mut out);
    }
    out
}

/// The shortest integer encoding of `v` (ZeroOp, OneOp, Byte/Word/DWord/QWordConst).
pub fn int(v: u64) -> Vec<u8> {
    match v {
        0 => [ZERO_OP].into(),
        1 => [ONE_OP].into(),
        2..=0xFF => [BYTE_PREFIX, v as u8].into(),
        0x100..=0xFFFF => {
            let mut o = alloc::vec![WORD_PREFIX];
            o.extend_from_slice(&(v as u16).to_le_bytes());
            o
        }
        0x1_0000..=0xFFFF_FFFF => {
            let mut o = alloc::vec![DWORD_PREFIX];
            o.extend_from_slice(&(v as u32).to_le_bytes());
            o
        }
        _ => {
            let mut o = alloc::vec![QWORD_PREFIX];
            o.extend_from_slice(&v.to_le_bytes());
            o
        }
    }
}

/// A String constant; `s` must be ASCII without NUL (callers pass literals).
pub fn string(s: &str) -> Vec<u8> {
    let mut o = alloc::vec![STRING_PREFIX];
    o.extend(s.bytes().filter(|&b| b != 0 && b < 0x80));
    o.push(0);
    o
}

/// The 32-bit compressed EISA ID of a 7-character PNP ID such as `PNP0A03`
/// (ACPI 6.5 6.1.5; ASL `EISAID`). Characters outside `A-Z`/hex encode as 0.
pub fn eisa_id(id: &str) -> u32 {
    let b = id.as_bytes();
    let at = |i: usize| b.get(i).copied().unwrap_or(b'0');
    let letter = |c: u8| u32::from(c.wrapping_sub(b'@') & 0x1F);
    let hex = |c: u8| u32::from((c as char).to_digit(16).unwrap_or(0) as u8);
    let vendor = letter(at(0)) << 10 | letter(at(1)) << 5 | letter(at(2));
    let product = hex(at(3)) << 12 | hex(at(4)) << 8 | hex(at(5)) << 4 | hex(at(6));
    // Stored big-endian: vendor word then product word, each byte-swapped.
    let bytes = [
        (vendor >> 8) as u8,
        vendor as u8,
        (product >> 8) as u8,
        product as u8,
    ];
    u32::from_le_bytes(bytes)
}

/// `Name(path, value)`.
pub fn name(path: &str, value: &[u8]) -> Vec<u8> {
    let mut o = alloc::vec![NAME_OP];
    o.extend(name_string(path));
    o.extend_from_slice(value);
    o
}

/// `Scope(path) { body }`.
pub fn scope(path: &str, body: &[u8]) -> Vec<u8> {
    let mut b = name_string(path);
    b.extend_from_slice(body);
    with_pkg(&[SCOPE_OP], &b)
}

/// `Device(path) { body }`.
pub fn device(path: &str, body: &[u8]) -> Vec<u8> {
    let mut b = name_string(path);
    b.extend_from_slice(body);
    with_pkg(&[EXT_OP_PREFIX, DEVICE_OP], &b)
}

/// `Processor(path, id, pblk_address, pblk_len) { body }` (deprecated in ACPI 6.4, still
/// understood by every OS; see the DSDT module for why Keel uses it).
pub fn processor(path: &str, id: u8, pblk_address: u32, pblk_len: u8, body: &[u8]) -> Vec<u8> {
    let mut b = name_string(path);
    b.push(id);
    b.extend_from_slice(&pblk_address.to_le_bytes());
    b.push(pblk_len);
    b.extend_from_slice(body);
    with_pkg(&[EXT_OP_PREFIX, PROCESSOR_OP], &b)
}

/// `Method(path, args, Serialized/NotSerialized) { body }`.
pub fn method(path: &str, args: u8, serialized: bool, body: &[u8]) -> Vec<u8> {
    let mut b = name_string(path);
    b.push(args & 7 | u8::from(serialized) << 3);
    b.extend_from_slice(body);
    with_pkg(&[METHOD_OP], &b)
}

/// `Package() { elements }` (at most 255 elements; callers stay below).
pub fn package(elements: &[Vec<u8>]) -> Vec<u8> {
    let mut b = alloc::vec![elements.len().min(0xFF) as u8];
    for e in elements {
        b.extend_from_slice(e);
    }
    with_pkg(&[PACKAGE_OP], &b)
}

/// `Buffer() { bytes }`.
pub fn buffer(bytes: &[u8]) -> Vec<u8> {
    let mut b = int(bytes.len() as u64);
    b.extend_from_slice(bytes);
    with_pkg(&[BUFFER_OP], &b)
}

/// `OperationRegion(path, space, offset, len)`.
pub fn op_region(path: &str, space: RegionSpace, offset: u64, len: u64) -> Vec<u8> {
    let mut o = alloc::vec![EXT_OP_PREFIX, OP_REGION_OP];
    o.extend(name_string(path));
    o.push(space as u8);
    o.extend(int(offset));
    o.extend(int(len));
    o
}

/// `Field(region, ByteAcc, NoLock, Preserve) { name, bits, ... }`.
pub fn field_byte_acc(region: &str, fields: &[(&str, u32)]) -> Vec<u8> {
    const BYTE_ACC: u8 = 1;
    let mut b = name_string(region);
    b.push(BYTE_ACC);
    for &(n, bits) in fields {
        name_seg(n, &mut b);
        // A NamedField's length is a PkgLength-encoded bit count (20.2.5.2).
        b.extend(pkg_value(bits as usize));
    }
    with_pkg(&[EXT_OP_PREFIX, FIELD_OP], &b)
}

/// `ArgN`.
pub fn arg(n: u8) -> Vec<u8> {
    [ARG0_OP + (n & 7)].into()
}

/// `LocalN`.
pub fn local(n: u8) -> Vec<u8> {
    [LOCAL0_OP + (n & 7)].into()
}

/// A reference to a named object (a NameString used as a term).
pub fn path(p: &str) -> Vec<u8> {
    name_string(p)
}

/// A method call: the method's name followed by its arguments.
pub fn call(method: &str, args: &[Vec<u8>]) -> Vec<u8> {
    let mut o = name_string(method);
    for a in args {
        o.extend_from_slice(a);
    }
    o
}

/// `Return(value)`.
pub fn ret(value: &[u8]) -> Vec<u8> {
    let mut o = alloc::vec![RETURN_OP];
    o.extend_from_slice(value);
    o
}

/// `Store(value, target)`.
pub fn store(value: &[u8], target: &[u8]) -> Vec<u8> {
    let mut o = alloc::vec![STORE_OP];
    o.extend_from_slice(value);
    o.extend_from_slice(target);
    o
}

fn binary(op: u8, a: &[u8], b: &[u8], target: Option<&[u8]>) -> Vec<u8> {
    let mut o = alloc::vec![op];
    o.extend_from_slice(a);
    o.extend_from_slice(b);
    match target {
        Some(t) => o.extend_from_slice(t),
        None => o.push(ZERO_OP),
    }
    o
}

/// `And(a, b[, target])`.
pub fn and(a: &[u8], b: &[u8], target: Option<&[u8]>) -> Vec<u8> {
    binary(AND_OP, a, b, target)
}

/// `Or(a, b[, target])`.
pub fn or(a: &[u8], b: &[u8], target: Option<&[u8]>) -> Vec<u8> {
    binary(OR_OP, a, b, target)
}

/// `LLess(a, b)`.
pub fn lless(a: &[u8], b: &[u8]) -> Vec<u8> {
    let mut o = alloc::vec![LLESS_OP];
    o.extend_from_slice(a);
    o.extend_from_slice(b);
    o
}

/// `If(predicate) { body }`.
pub fn if_(predicate: &[u8], body: &[u8]) -> Vec<u8> {
    let mut b = predicate.to_vec();
    b.extend_from_slice(body);
    with_pkg(&[IF_OP], &b)
}

/// `Else { body }` (directly after an `If`).
pub fn else_(body: &[u8]) -> Vec<u8> {
    with_pkg(&[ELSE_OP], body)
}

/// `CreateDWordField(source, byte_index, name)`.
pub fn create_dword_field(source: &[u8], byte_index: u64, name: &str) -> Vec<u8> {
    let mut o = alloc::vec![CREATE_DWORD_FIELD_OP];
    o.extend_from_slice(source);
    o.extend(int(byte_index));
    o.extend(name_string(name));
    o
}

/// Concatenates terms (a TermList).
pub fn terms(list: &[Vec<u8>]) -> Vec<u8> {
    list.concat()
}

/// Resource descriptors (ACPI 6.5 6.4), collected into a `ResourceTemplate()` buffer.
#[derive(Default)]
pub struct Resources {
    bytes: Vec<u8>,
}

/// Extended Interrupt flags (6.4.3.6).
const INT_CONSUMER: u8 = 1 << 0;
const INT_SHARED: u8 = 1 << 3;
/// Address space descriptor general flags (6.4.3.5): MinFixed | MaxFixed, producer, positive decode.
const ADDR_MIN_MAX_FIXED: u8 = 0x0C;

impl Resources {
    pub fn new() -> Self {
        Self::default()
    }

    /// `IO(Decode16, base, base, align, len)`: a fixed 16-bit-decoded port range.
    pub fn io(mut self, base: u16, align: u8, len: u8) -> Self {
        self.bytes.extend([0x47, 0x01]);
        self.bytes.extend(base.to_le_bytes());
        self.bytes.extend(base.to_le_bytes());
        self.bytes.extend([align, len]);
        self
    }

    /// `IRQNoFlags() { irq }`: edge, active-high, exclusive ISA IRQ.
    pub fn irq_no_flags(mut self, irq: u8) -> Self {
        self.bytes.push(0x22);
        self.bytes
            .extend((1u16.checked_shl(u32::from(irq)).unwrap_or(0)).to_le_bytes());
        self
    }

    /// `Memory32Fixed(ReadWrite|ReadOnly, base, len)`.
    pub fn memory32_fixed(mut self, writable: bool, base: u32, len: u32) -> Self {
        self.bytes.extend([0x86, 0x09, 0x00, u8::from(writable)]);
        self.bytes.extend(base.to_le_bytes());
        self.bytes.extend(len.to_le_bytes());
        self
    }

    fn word_address(mut self, kind: u8, type_flags: u8, min: u16, max: u16) -> Self {
        self.bytes
            .extend([0x88, 0x0D, 0x00, kind, ADDR_MIN_MAX_FIXED, type_flags]);
        let len = max.wrapping_sub(min).wrapping_add(1);
        for v in [0, min, max, 0, len] {
            self.bytes.extend(v.to_le_bytes());
        }
        self
    }

    /// `WordBusNumber(ResourceProducer, MinFixed, MaxFixed, PosDecode, 0, min, max, 0, n)`.
    pub fn word_bus_number(self, min: u16, max: u16) -> Self {
        self.word_address(2, 0, min, max)
    }

    /// `WordIO(ResourceProducer, MinFixed, MaxFixed, PosDecode, EntireRange, 0, min, max, 0, n)`.
    pub fn word_io(self, min: u16, max: u16) -> Self {
        self.word_address(1, 0x03, min, max)
    }

    /// `DWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite, 0, min, max, 0, n)`.
    pub fn dword_memory(mut self, min: u32, max: u32) -> Self {
        const CACHEABLE_RW: u8 = 0x03;
        self.bytes
            .extend([0x87, 0x17, 0x00, 0, ADDR_MIN_MAX_FIXED, CACHEABLE_RW]);
        let len = max.wrapping_sub(min).wrapping_add(1);
        for v in [0, min, max, 0, len] {
            self.bytes.extend(v.to_le_bytes());
        }
        self
    }

    /// `QWordMemory(ResourceProducer, PosDecode, MinFixed, MaxFixed, Cacheable, ReadWrite, 0, min, max, 0, n)`.
    pub fn qword_memory(mut self, min: u64, max: u64) -> Self {
        const CACHEABLE_RW: u8 = 0x03;
        self.bytes
            .extend([0x8A, 0x2B, 0x00, 0, ADDR_MIN_MAX_FIXED, CACHEABLE_RW]);
        let len = max.wrapping_sub(min).wrapping_add(1);
        for v in [0, min, max, 0, len] {
            self.bytes.extend(v.to_le_bytes());
        }
        self
    }

    /// `Interrupt(ResourceConsumer, Level, ActiveHigh, Shared) { irqs }`.
    pub fn interrupt_level_high_shared(mut self, irqs: &[u32]) -> Self {
        let n = irqs.len().min(0xFF);
        let len = (2 + 4 * n) as u16;
        self.bytes.push(0x89);
        self.bytes.extend(len.to_le_bytes());
        self.bytes.extend([INT_CONSUMER | INT_SHARED, n as u8]);
        for irq in &irqs[..n] {
            self.bytes.extend(irq.to_le_bytes());
        }
        self
    }

    /// The descriptors and an End Tag (checksum 0: "treated as correct"), as a `Buffer`.
    pub fn template(mut self) -> Vec<u8> {
        self.bytes.extend([0x79, 0x00]);
        buffer(&self.bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkg_length_encodings() {
        assert_eq!(pkg_length(0), [1]);
        assert_eq!(pkg_length(62), [63]);
        // 63 bytes of body: 65 in total, two bytes.
        assert_eq!(pkg_length(63), [0x41, 0x04]);
        assert_eq!(pkg_length(4093), [0x4F, 0xFF]);
        // 4094 + 2 no longer fits 12 bits: three bytes, 4097 in total.
        assert_eq!(pkg_length(4094), [0x81, 0x00, 0x01]);
        assert_eq!(pkg_length((1 << 20) - 4), [0x8F, 0xFF, 0xFF]);
        assert_eq!(pkg_length((1 << 20) - 3), [0xC1, 0x00, 0x00, 0x01]);
    }

    #[test]
    fn name_strings() {
        assert_eq!(name_string("_HID"), b"_HID");
        assert_eq!(name_string("RTC"), b"RTC_");
        assert_eq!(name_string("\\_S5"), b"\\_S5_");
        assert_eq!(name_string("\\_SB.PCI0"), b"\\\x2E_SB_PCI0");
        assert_eq!(
            name_string("\\_SB.PCI0.ISA.PRQ0"),
            b"\\\x2F\x04_SB_PCI0ISA_PRQ0"
        );
        assert_eq!(name_string("^LNKA"), b"^LNKA");
    }

    #[test]
    fn eisa_ids() {
        // The encodings iasl gives for EISAID("PNP0A03") and EISAID("PNP0C0F").
        assert_eq!(eisa_id("PNP0A03"), 0x030A_D041);
        assert_eq!(eisa_id("PNP0C0F"), 0x0F0C_D041);
    }

    #[test]
    fn integers_are_shortest() {
        assert_eq!(int(0), [0]);
        assert_eq!(int(1), [1]);
        assert_eq!(int(0x80), [0x0A, 0x80]);
        assert_eq!(int(0x0CF8), [0x0B, 0xF8, 0x0C]);
        assert_eq!(int(0xFEC0_0000), [0x0C, 0, 0, 0xC0, 0xFE]);
        assert_eq!(int(1 << 32).len(), 9);
    }

    #[test]
    fn field_lengths_are_bit_counts() {
        let f = field_byte_acc("P40C", &[("PRQ0", 8)]);
        // FieldOp, PkgLength, name, flags, PRQ0, 8.
        assert_eq!(
            f,
            [0x5B, 0x81, 0x0B, b'P', b'4', b'0', b'C', 0x01, b'P', b'R', b'Q', b'0', 8]
        );
    }
}
