//! The ACPI tables read back by independent parsers: the `acpi` crate for the
//! static tables (after a SeaBIOS-like loader ran `etc/table-loader`, and after
//! direct placement) and the `aml` crate's interpreter for the DSDT.

mod common;

use std::collections::HashMap;

use acpi::address::AddressSpace;
use acpi::fadt::Fadt;
use acpi::madt::{Madt, MadtEntry};
use acpi::{AcpiTables as Parsed, HpetInfo};
use acpi_gen::{fw_cfg, pc_layout, AcpiTables, Error, MachineConfig};
use common::aml_walk::{resources, walk, Namespace, Obj};
use common::{run_loader, sum, Memory};

fn configs() -> Vec<MachineConfig> {
    let mut small = MachineConfig::new(1, 128 << 20);
    small.uuid = [0x11; 16];
    let mut big = MachineConfig::new(4, 8 << 30);
    big.hpet = false;
    big.pm_timer_32bit = true;
    big.pm_base = pc_layout::PM_BASE_LEGACY;
    let max = MachineConfig::new(acpi_gen::MAX_VCPUS, 3584 << 20);
    vec![small, big, max]
}

/// Runs the loader script; returns the memory and the RSDP's address.
fn load(tables: &AcpiTables, high_top: u64) -> (Memory, u64, HashMap<String, common::Allocated>) {
    let files = tables.fw_cfg();
    let map: HashMap<&str, Vec<u8>> = files
        .files()
        .iter()
        .map(|(n, b)| (*n, b.to_vec()))
        .collect();
    let loaded = run_loader(&files.table_loader, &map, high_top);
    assert_eq!(
        loaded.len(),
        2,
        "the script allocates the tables and the RSDP"
    );
    let rsdp = &loaded[fw_cfg::ACPI_RSDP_FILE];
    let blob = &loaded[fw_cfg::ACPI_TABLES_FILE];
    assert_eq!(rsdp.zone, fw_cfg::ZONE_FSEG);
    assert_eq!(blob.zone, fw_cfg::ZONE_HIGH);
    assert_eq!(rsdp.address % 16, 0);
    assert_eq!(blob.address % 64, 0);
    let mem = Memory::new(vec![
        (rsdp.address, rsdp.bytes.clone()),
        (blob.address, blob.bytes.clone()),
    ]);
    let at = rsdp.address;
    (mem, at, loaded)
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
}

/// A whole table at `address`: signature, length from its header, checksum.
fn table<'a>(mem: &'a Memory, address: u64, signature: &[u8; 4]) -> &'a [u8] {
    let head = mem.slice(address as usize, 36);
    assert_eq!(&head[..4], signature);
    let t = mem.slice(address as usize, u32_at(head, 4) as usize);
    assert_eq!(sum(t), 0, "{} checksum", String::from_utf8_lossy(signature));
    t
}

/// Everything the tables must say about `cfg`, read from guest memory.
fn check(mem: &Memory, rsdp_address: u64, cfg: &MachineConfig) {
    // RSDP: both checksums, revision 2, length 36.
    let rsdp = mem.slice(rsdp_address as usize, 36);
    assert_eq!(&rsdp[..8], b"RSD PTR ");
    assert_eq!(sum(&rsdp[..20]), 0);
    assert_eq!(sum(rsdp), 0);
    assert_eq!(rsdp[15], 2);
    assert_eq!(u32_at(rsdp, 20), 36);

    // RSDT and XSDT list the same tables.
    let rsdt = table(mem, u64::from(u32_at(rsdp, 16)), b"RSDT");
    let xsdt = table(mem, u64_at(rsdp, 24), b"XSDT");
    let r: Vec<u64> = rsdt[36..]
        .chunks(4)
        .map(|c| u64::from(u32_at(c, 0)))
        .collect();
    let x: Vec<u64> = xsdt[36..].chunks(8).map(|c| u64_at(c, 0)).collect();
    assert_eq!(r, x);
    let sigs: Vec<[u8; 4]> = x
        .iter()
        .map(|&a| mem.slice(a as usize, 4).try_into().unwrap())
        .collect();
    let mut want: Vec<[u8; 4]> = vec![*b"FACP", *b"APIC"];
    if cfg.hpet {
        want.push(*b"HPET");
    }
    want.push(*b"WAET");
    assert_eq!(sigs, want);
    for (&a, s) in x.iter().zip(&sigs) {
        table(mem, a, s);
    }

    let parsed: Parsed<Memory> = mem.tables(rsdp_address);
    assert_eq!(parsed.revision(), 2);
    assert_eq!(parsed.headers().count(), want.len());

    // FADT.
    let fadt = parsed.find_table::<Fadt>().unwrap();
    let fadt_raw = table(mem, x[0], b"FACP");
    assert_eq!(fadt_raw.len(), 276);
    assert_eq!(fadt_raw[8], 6, "FADT revision");
    assert_eq!({ fadt.sci_interrupt }, 9);
    assert_eq!({ fadt.smi_cmd_port }, 0);
    assert_eq!({ fadt.century }, 0x32);
    let facs = fadt.facs_address().unwrap();
    assert_eq!(facs % 64, 0, "FACS 64-byte aligned");
    assert_eq!(u32_at(fadt_raw, 36) as usize, facs, "FIRMWARE_CTRL");
    assert_eq!(
        u64_at(fadt_raw, 132),
        0,
        "X_FIRMWARE_CTRL unused when FIRMWARE_CTRL is set"
    );
    let facs_raw = mem.slice(facs, 64);
    assert_eq!(&facs_raw[..4], b"FACS");
    assert_eq!(u32_at(facs_raw, 4), 64);
    let dsdt = fadt.dsdt_address().unwrap();
    assert_eq!(u32_at(fadt_raw, 40) as usize, dsdt);
    assert_eq!(u64_at(fadt_raw, 140) as usize, dsdt);
    let io = |g: acpi::address::GenericAddress, port: u16, bits: u8| {
        assert_eq!(g.address_space, AddressSpace::SystemIo);
        assert_eq!(g.address, u64::from(port));
        assert_eq!(g.bit_width, bits);
    };
    io(fadt.pm1a_event_block().unwrap(), cfg.pm_base, 32);
    io(fadt.pm1a_control_block().unwrap(), cfg.pm_base + 4, 16);
    io(fadt.pm_timer_block().unwrap().unwrap(), cfg.pm_base + 8, 32);
    io(fadt.gpe0_block().unwrap().unwrap(), 0xAFE0, 32);
    assert!(fadt.pm1b_event_block().unwrap().is_none());
    io(fadt.reset_register().unwrap(), 0xCF9, 8);
    assert_eq!({ fadt.reset_value }, 6);
    let flags = { fadt.flags };
    assert!(flags.supports_system_reset_via_fadt());
    assert!(!flags.system_is_hw_reduced_acpi());
    assert!(flags.supports_equivalent_to_wbinvd());
    assert!(flags.all_procs_support_c1_power_state());
    assert!(
        !flags.power_button_is_control_method(),
        "fixed power button"
    );
    assert!(
        flags.sleep_button_is_control_method(),
        "no fixed sleep button"
    );
    assert_eq!(flags.pm_timer_is_32_bit(), cfg.pm_timer_32bit);
    let boot = { fadt.iapc_boot_arch };
    assert!(boot.legacy_devices_are_accessible());
    assert!(boot.motherboard_implements_8042());
    drop(fadt);

    // MADT.
    let madt = parsed.find_table::<Madt>().unwrap();
    assert_eq!({ madt.get().local_apic_address }, 0xFEE0_0000);
    assert!(madt.get().supports_8259());
    let mut lapics = Vec::new();
    let mut ioapics = Vec::new();
    let mut isos = Vec::new();
    let mut nmis = Vec::new();
    for e in madt.get().entries() {
        match e {
            MadtEntry::LocalApic(l) => lapics.push((l.processor_id, l.apic_id, { l.flags })),
            MadtEntry::IoApic(i) => ioapics.push((i.io_apic_id, { i.io_apic_address }, {
                i.global_system_interrupt_base
            })),
            MadtEntry::InterruptSourceOverride(o) => {
                isos.push((o.bus, o.irq, { o.global_system_interrupt }, { o.flags }))
            }
            MadtEntry::LocalApicNmi(n) => nmis.push((n.processor_id, { n.flags }, n.nmi_line)),
            other => panic!("unexpected MADT entry {other:?}"),
        }
    }
    let want_lapics: Vec<(u8, u8, u32)> = (0..cfg.vcpus).map(|i| (i as u8, i as u8, 1)).collect();
    assert_eq!(lapics, want_lapics);
    assert_eq!(ioapics, [(0, 0xFEC0_0000, 0)]);
    assert_eq!(
        isos,
        [
            (0, 0, 2, 0),
            (0, 5, 5, 0xD),
            (0, 9, 9, 0xD),
            (0, 10, 10, 0xD),
            (0, 11, 11, 0xD)
        ]
    );
    assert_eq!(nmis, [(0xFF, 0, 1)]);
    drop(madt);

    // HPET.
    match HpetInfo::new(&parsed) {
        Ok(h) => {
            assert!(cfg.hpet);
            assert_eq!(h.event_timer_block_id, 0x8086_A201);
            assert_eq!(h.base_address, 0xFED0_0000);
            assert_eq!(h.clock_tick_unit, 0x80);
            assert_eq!(h.hardware_rev(), 1);
            assert_eq!(h.num_comparators(), 3);
            assert!(h.main_counter_is_64bits());
            assert!(h.legacy_irq_capable());
            assert_eq!(h.pci_vendor_id(), 0x8086);
        }
        Err(e) => assert!(!cfg.hpet, "HPET table missing: {e:?}"),
    }

    // DSDT.
    let aml_table = parsed.dsdt().unwrap();
    assert_eq!(aml_table.address - 36, dsdt);
    let dsdt_raw = table(mem, dsdt as u64, b"DSDT");
    assert_eq!(dsdt_raw[8], 2, "DSDT revision 2: 64-bit integers");
    check_dsdt(&dsdt_raw[36..], cfg);
}

/// `\_SB.PCI0.ISA.RTC` -> `\_SB_.PCI0.ISA_.RTC_` (the walker's spelling).
fn p(path: &str) -> String {
    let segs: Vec<String> = path
        .trim_start_matches('\\')
        .split('.')
        .map(|s| format!("{s:_<4}"))
        .collect();
    format!("\\{}", segs.join("."))
}

fn crs(ns: &Namespace, device: &str) -> Vec<(u8, Vec<u8>)> {
    match &ns[&p(&format!("{device}._CRS"))] {
        Obj::Buf(b) => resources(b),
        o => panic!("{device}._CRS is {o:?}"),
    }
}

/// Small IO descriptor (tag 8) for a fixed range, and IRQ (tag 4) masks.
fn io(base: u16, len: u8) -> (u8, Vec<u8>) {
    let b = base.to_le_bytes();
    (8, vec![1, b[0], b[1], b[0], b[1], 1, len])
}

fn irq(n: u8) -> (u8, Vec<u8>) {
    (4, (1u16 << n).to_le_bytes().to_vec())
}

fn check_dsdt(aml: &[u8], cfg: &MachineConfig) {
    let ns = walk(aml);
    let s5 = Obj::Int(u64::from(pc_layout::S5_SLP_TYP));
    assert_eq!(
        ns[&p("\\_S5")],
        Obj::Pkg(vec![s5.clone(), s5, Obj::Int(0), Obj::Int(0)])
    );

    let eisa = |id: &str| Obj::Int(u64::from(acpi_gen::aml::eisa_id(id)));
    for (dev, id) in [
        ("\\_SB.PCI0", "PNP0A03"),
        ("\\_SB.PCI0.ISA.RTC", "PNP0B00"),
        ("\\_SB.PCI0.ISA.PIC", "PNP0000"),
        ("\\_SB.PCI0.ISA.TMR", "PNP0100"),
        ("\\_SB.PCI0.ISA.KBD", "PNP0303"),
        ("\\_SB.PCI0.ISA.MOU", "PNP0F13"),
        ("\\_SB.PCI0.ISA.COM1", "PNP0501"),
        ("\\_SB.LNKA", "PNP0C0F"),
        ("\\_SB.LNKB", "PNP0C0F"),
        ("\\_SB.LNKC", "PNP0C0F"),
        ("\\_SB.LNKD", "PNP0C0F"),
    ] {
        assert_eq!(ns[&p(dev)], Obj::Device, "{dev}");
        assert_eq!(ns[&p(&format!("{dev}._HID"))], eisa(id), "{dev}");
    }
    assert_eq!(crs(&ns, "\\_SB.PCI0.ISA.RTC"), [io(0x70, 2), irq(8)]);
    assert_eq!(
        crs(&ns, "\\_SB.PCI0.ISA.PIC"),
        [io(0x20, 2), io(0xA0, 2), irq(2)]
    );
    assert_eq!(crs(&ns, "\\_SB.PCI0.ISA.TMR"), [io(0x40, 4), irq(0)]);
    assert_eq!(
        crs(&ns, "\\_SB.PCI0.ISA.KBD"),
        [io(0x60, 1), io(0x64, 1), irq(1)]
    );
    assert_eq!(crs(&ns, "\\_SB.PCI0.ISA.MOU"), [irq(12)]);
    assert_eq!(crs(&ns, "\\_SB.PCI0.ISA.COM1"), [io(0x3F8, 8), irq(4)]);
    assert_eq!(ns[&p("\\_SB.PCI0.ISA._ADR")], Obj::Int(0x0001_0000));

    // The root bridge's windows.
    let win = crs(&ns, "\\_SB.PCI0");
    let word = |kind: u8, min: u16, max: u16| {
        let mut b = vec![kind, 0x0C, if kind == 1 { 3 } else { 0 }];
        for v in [0, min, max, 0, max - min + 1] {
            b.extend(v.to_le_bytes());
        }
        (0x88u8, b)
    };
    let dword = |min: u32, max: u32| {
        let mut b = vec![0, 0x0C, 3];
        for v in [0, min, max, 0, max - min + 1] {
            b.extend(v.to_le_bytes());
        }
        (0x87u8, b)
    };
    let hole = cfg.ram_layout().below_4g as u32;
    assert_eq!(
        win,
        [
            word(2, 0, 0xFF),
            io(0xCF8, 8),
            word(1, 0, 0xCF7),
            word(1, 0xD00, 0xFFFF),
            dword(0xA_0000, 0xB_FFFF),
            dword(hole, 0xFEBF_FFFF),
        ]
    );

    // HPET device when configured.
    assert_eq!(ns.contains_key(&p("\\_SB.PCI0.HPET")), cfg.hpet);
    if cfg.hpet {
        assert_eq!(ns[&p("\\_SB.PCI0.HPET._HID")], eisa("PNP0103"));
        let mut m = vec![0u8];
        m.extend(0xFED0_0000u32.to_le_bytes());
        m.extend(0x400u32.to_le_bytes());
        assert_eq!(crs(&ns, "\\_SB.PCI0.HPET"), [(0x86, m)]);
    }

    // One Processor per vCPU, ID = MADT processor UID.
    let cpus: Vec<u8> = ns
        .values()
        .filter_map(|o| match o {
            Obj::Processor { id, .. } => Some(*id),
            _ => None,
        })
        .collect();
    assert_eq!(cpus, (0..cfg.vcpus).map(|i| i as u8).collect::<Vec<_>>());

    // PIRQ route registers: PIIX3 (00:01.0) config 0x60-0x63, a byte each.
    assert_eq!(
        ns[&p("\\_SB.PCI0.ISA.P40C")],
        Obj::Region {
            space: 2,
            offset: 0x60,
            len: 4
        }
    );
    for (i, f) in ["PRQ0", "PRQ1", "PRQ2", "PRQ3"].iter().enumerate() {
        assert_eq!(
            ns[&p(&format!("\\_SB.PCI0.ISA.{f}"))],
            Obj::Field {
                region: p("\\_SB.PCI0.ISA.P40C"),
                bit_offset: 8 * i as u64,
                bits: 8
            }
        );
    }

    // Links: _PRS {5, 10, 11} level, active-high, shared; the methods.
    for l in ["LNKA", "LNKB", "LNKC", "LNKD"] {
        let prs = match &ns[&p(&format!("\\_SB.{l}._PRS"))] {
            Obj::Buf(b) => resources(b),
            o => panic!("{o:?}"),
        };
        let mut want = vec![0x09u8, 3];
        for i in [5u32, 10, 11] {
            want.extend(i.to_le_bytes());
        }
        assert_eq!(prs, [(0x89, want)]);
        for (m, args) in [("_STA", 0), ("_CRS", 0), ("_SRS", 1), ("_DIS", 0)] {
            match &ns[&p(&format!("\\_SB.{l}.{m}"))] {
                Obj::Method { args: a, .. } => assert_eq!(*a, args, "{l}.{m}"),
                o => panic!("{l}.{m}: {o:?}"),
            }
        }
    }

    // _PRT: slots 1-31, INTA-INTD, rotated over LNKA-LNKD, which resolve in \_SB.
    // The rotation is the board's (the PIIX3 model's and SeaBIOS's):
    // PIRQ[(slot - 1 + pin) mod 4], pin 0 = INTA; so slot 1 INTA is LNKA,
    // slot 2 INTA is LNKB, slot 3 INTD is LNKB.
    let Obj::Pkg(prt) = &ns[&p("\\_SB.PCI0._PRT")] else {
        panic!("_PRT is not a package")
    };
    assert_eq!(prt.len(), 31 * 4);
    let links = ["LNKA", "LNKB", "LNKC", "LNKD"];
    let link_of = |slot: u64, pin: u64| match &prt[((slot - 1) * 4 + pin) as usize] {
        Obj::Pkg(e) => e[2].clone(),
        o => panic!("{o:?}"),
    };
    for (slot, pin, link) in [
        (1, 0, "LNKA"),
        (2, 0, "LNKB"),
        (3, 3, "LNKB"),
        (4, 1, "LNKA"),
    ] {
        assert_eq!(
            link_of(slot, pin),
            Obj::Ref(p(&format!("\\_SB.PCI0.{link}"))),
            "slot {slot} pin {pin}"
        );
    }
    for (k, e) in prt.iter().enumerate() {
        let slot = k as u64 / 4 + 1;
        let pin = k as u64 % 4;
        let link = links[((slot + 3 + pin) % 4) as usize];
        assert_eq!(
            *e,
            Obj::Pkg(vec![
                Obj::Int(slot << 16 | 0xFFFF),
                Obj::Int(pin),
                Obj::Ref(p(&format!("\\_SB.PCI0.{link}"))),
                Obj::Int(0)
            ])
        );
        assert!(!ns.contains_key(&p(&format!("\\_SB.PCI0.{link}"))));
        assert_eq!(
            ns[&p(&format!("\\_SB.{link}"))],
            Obj::Device,
            "found by the upward search"
        );
    }
}

#[test]
fn seabios_loader_installs_parseable_tables() {
    for cfg in configs() {
        let tables = AcpiTables::build(&cfg).unwrap();
        let (mem, rsdp, _) = load(&tables, cfg.ram_layout().below_4g);
        check(&mem, rsdp, &cfg);
    }
}

#[test]
fn direct_placement_equals_the_loader_result() {
    for cfg in configs() {
        let tables = AcpiTables::build(&cfg).unwrap();
        let (_, _, loaded) = load(&tables, 0x0800_0000);
        let rsdp = &loaded[fw_cfg::ACPI_RSDP_FILE];
        let blob = &loaded[fw_cfg::ACPI_TABLES_FILE];
        let [r, t] = tables.place(blob.address, rsdp.address).unwrap();
        assert_eq!((r.address, &r.bytes), (rsdp.address, &rsdp.bytes));
        assert_eq!((t.address, &t.bytes), (blob.address, &blob.bytes));

        let [r, t] = tables.place(0x0010_0000, 0xF_5A00).unwrap();
        let mem = Memory::new(vec![(r.address, r.bytes), (t.address, t.bytes)]);
        check(&mem, 0xF_5A00, &cfg);
    }
}

#[test]
fn unplaced_files_are_consistent_at_zero() {
    let tables = AcpiTables::build(&MachineConfig::new(2, 256 << 20)).unwrap();
    let files = tables.fw_cfg();
    assert_eq!(files.table_loader.len() % 128, 0);
    assert_eq!(
        &files.tables[..4],
        b"FACS",
        "FACS leads the blob (64-byte aligned)"
    );
    assert_eq!(sum(&files.rsdp), 0);
    for c in tables.checksummed() {
        assert_eq!(sum(&files.tables[c.start..c.start + c.len]), 0);
    }
}

#[test]
fn bad_placements_are_errors() {
    let tables = AcpiTables::build(&MachineConfig::new(1, 64 << 20)).unwrap();
    let len = tables.tables_len() as u64;
    for rsdp in [0xF_5A08, 0xD_FFF0, 0x10_0000, 0xF_FFF0, u64::MAX - 15] {
        assert!(matches!(
            tables.place(0x10_0000, rsdp),
            Err(Error::BadRsdpAddress { .. })
        ));
    }
    for base in [
        0x10_0020,
        (1 << 32) - len + 64,
        1 << 32,
        u64::MAX - 63,
        0xF_0000,
    ] {
        assert!(
            matches!(
                tables.place(base, 0xF_0000),
                Err(Error::BadTablesAddress { .. })
            ),
            "{base:#x}"
        );
    }
    assert!(tables
        .place((1 << 32) - len.next_multiple_of(64), 0xF_0000)
        .is_ok());
}

#[test]
fn bad_configurations_are_errors() {
    assert_eq!(
        AcpiTables::build(&MachineConfig::new(0, 64 << 20)).unwrap_err(),
        Error::NoVcpus
    );
    assert!(AcpiTables::build(&MachineConfig::new(u32::MAX, 64 << 20)).is_err());
    assert!(AcpiTables::build(&MachineConfig::new(1, 0)).is_err());
    assert!(AcpiTables::build(&MachineConfig::new(1, u64::MAX)).is_err());
    let msg = Error::TooManyVcpus {
        vcpus: 300,
        max: 255,
    }
    .to_string();
    assert!(msg.contains("300") && msg.contains("255"), "{msg}");
}
