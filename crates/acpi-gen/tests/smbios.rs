//! SMBIOS read back with a small parser: entry point checksums and fields,
//! every structure's length and string set, and the counts per type.

use acpi_gen::{smbios, Error, MachineConfig, SmbiosTables};

struct Structure {
    kind: u8,
    handle: u16,
    formatted: Vec<u8>,
    strings: Vec<String>,
}

impl Structure {
    fn u16(&self, at: usize) -> u16 {
        u16::from_le_bytes([self.formatted[at], self.formatted[at + 1]])
    }
    fn u32(&self, at: usize) -> u32 {
        u32::from_le_bytes(self.formatted[at..at + 4].try_into().unwrap())
    }
    fn string(&self, at: usize) -> &str {
        let n = usize::from(self.formatted[at]);
        assert!(
            n >= 1 && n <= self.strings.len(),
            "string {n} of type {}",
            self.kind
        );
        &self.strings[n - 1]
    }
}

fn parse(tables: &[u8]) -> Vec<Structure> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < tables.len() {
        let len = usize::from(tables[i + 1]);
        assert!(len >= 4);
        let formatted = tables[i..i + len].to_vec();
        let mut j = i + len;
        let mut strings = Vec::new();
        if tables[j] == 0 {
            assert_eq!(tables[j + 1], 0, "an empty string set is two NULs");
            j += 2;
        } else {
            loop {
                let end = j + tables[j..].iter().position(|&c| c == 0).unwrap();
                strings.push(String::from_utf8(tables[j..end].to_vec()).unwrap());
                j = end + 1;
                if tables[j] == 0 {
                    j += 1;
                    break;
                }
            }
        }
        out.push(Structure {
            kind: formatted[0],
            handle: u16::from_le_bytes([formatted[2], formatted[3]]),
            formatted,
            strings,
        });
        i = j;
    }
    assert_eq!(i, tables.len());
    out
}

fn sum(b: &[u8]) -> u8 {
    b.iter().fold(0u8, |s, &x| s.wrapping_add(x))
}

fn check(cfg: &MachineConfig) {
    let t = SmbiosTables::build(cfg).unwrap();
    let files = t.fw_cfg();
    assert_eq!(
        files.anchor.len(),
        31,
        "SeaBIOS takes only the 2.1 entry point"
    );
    let ep = t.place(0x000F_1000).unwrap();
    for e in [&files.anchor[..], &ep[..]] {
        assert_eq!(&e[..4], b"_SM_");
        assert_eq!(sum(e), 0, "entry point checksum");
        assert_eq!(sum(&e[0x10..]), 0, "intermediate checksum");
        assert_eq!(&e[0x10..0x15], b"_DMI_");
        assert_eq!((e[5], e[6], e[7], e[0x1E]), (0x1F, 2, 8, 0x28));
        assert_eq!(
            usize::from(u16::from_le_bytes([e[0x16], e[0x17]])),
            files.tables.len()
        );
    }
    assert_eq!(
        u32::from_le_bytes(ep[0x18..0x1C].try_into().unwrap()),
        0xF1000
    );
    assert_eq!(&files.anchor[0x18..0x1C], [0; 4]);

    let list = parse(&files.tables);
    assert_eq!(
        usize::from(u16::from_le_bytes([ep[0x1C], ep[0x1D]])),
        list.len()
    );
    let max = list
        .iter()
        .map(|s| {
            s.formatted.len()
                + s.strings.iter().map(|x| x.len() + 1).sum::<usize>()
                + 1
                + usize::from(s.strings.is_empty())
        })
        .max()
        .unwrap();
    assert_eq!(usize::from(u16::from_le_bytes([ep[8], ep[9]])), max);
    let mut handles: Vec<u16> = list.iter().map(|s| s.handle).collect();
    handles.sort();
    handles.dedup();
    assert_eq!(handles.len(), list.len(), "unique handles");

    let of = |k: u8| list.iter().filter(move |s| s.kind == k);
    assert_eq!(list.last().unwrap().kind, 127);
    for (k, n, len) in [
        (0, 1, 0x18),
        (1, 1, 0x1B),
        (3, 1, 0x16),
        (16, 1, 0x17),
        (32, 1, 0x0B),
        (127, 1, 4),
    ] {
        assert_eq!(of(k).count(), n, "type {k}");
        assert_eq!(
            of(k).next().unwrap().formatted.len(),
            len,
            "type {k} length"
        );
    }
    let t0 = of(0).next().unwrap();
    assert_eq!(t0.string(4), "Keel");
    let t1 = of(1).next().unwrap();
    assert_eq!(t1.string(5), "Keel Virtual Machine");
    let mut uuid = cfg.uuid;
    uuid[0..4].reverse();
    uuid[4..6].reverse();
    uuid[6..8].reverse();
    assert_eq!(t1.formatted[8..24], uuid);
    let cpus: Vec<_> = of(4).collect();
    assert_eq!(cpus.len() as u32, cfg.vcpus);
    for (i, c) in cpus.iter().enumerate() {
        assert_eq!(c.formatted.len(), 0x2A);
        assert_eq!(c.string(4), format!("CPU {i}"));
        assert_eq!(c.formatted[0x18], 0x41, "populated, enabled");
    }

    // Memory: the devices add up to the RAM, the array and ranges agree.
    let array = of(16).next().unwrap();
    assert_eq!(u64::from(array.u32(7)), cfg.ram_bytes >> 10);
    let dimms: Vec<_> = of(17).collect();
    assert_eq!(usize::from(array.u16(0x0D)), dimms.len());
    let mut total_mib = 0u64;
    for d in &dimms {
        assert_eq!(d.formatted.len(), 0x28);
        assert_eq!(d.u16(4), array.handle);
        total_mib += match d.u16(0x0C) {
            0x7FFF => u64::from(d.u32(0x1C)),
            n => u64::from(n),
        };
    }
    assert_eq!(total_mib << 20, cfg.ram_bytes);
    let ram = cfg.ram_layout();
    let ranges: Vec<(u64, u64)> = of(19)
        .map(|r| {
            assert_eq!(r.u16(0x0C), array.handle);
            (u64::from(r.u32(4)) << 10, (u64::from(r.u32(8)) + 1) << 10)
        })
        .collect();
    let mut want = vec![(0, ram.below_4g)];
    if let Some(end) = ram.high_end() {
        want.push((1 << 32, end));
    }
    assert_eq!(ranges, want);
}

#[test]
fn tables_parse_back() {
    let mut cfg = MachineConfig::new(1, 128 << 20);
    cfg.uuid = *b"\x12\x34\x56\x78\x9a\xbc\xde\xf0\x01\x23\x45\x67\x89\xab\xcd\xef";
    check(&cfg);
    check(&MachineConfig::new(4, 40 << 30));
    check(&MachineConfig::new(acpi_gen::MAX_VCPUS, acpi_gen::MAX_RAM));
}

#[test]
fn errors_not_panics() {
    assert_eq!(
        SmbiosTables::build(&MachineConfig::new(0, 1 << 30)),
        Err(Error::NoVcpus)
    );
    let t = SmbiosTables::build(&MachineConfig::new(1, 1 << 30)).unwrap();
    assert!(matches!(
        t.place(1 << 32),
        Err(Error::BadSmbiosAddress { .. })
    ));
    assert!(matches!(
        t.place(u64::MAX),
        Err(Error::BadSmbiosAddress { .. })
    ));
    assert_eq!(smbios::ANCHOR_FILE, "etc/smbios/smbios-anchor");
    assert_eq!(smbios::TABLES_FILE, "etc/smbios/smbios-tables");
}
