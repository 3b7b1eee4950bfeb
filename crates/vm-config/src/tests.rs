extern crate std;

use super::*;
use alloc::string::ToString;
use alloc::vec;
use std::panic;

fn ok(text: &str) -> Parsed {
    parse(text).unwrap_or_else(|e| panic!("{text:?} was refused: {e}"))
}

fn err(text: &str) -> String {
    match parse(text) {
        Ok(p) => panic!("{text:?} was accepted: {p:?}"),
        Err(e) => e.in_file("vm.cfg").to_string(),
    }
}

#[test]
fn minimal_config_gets_defaults() {
    let p = ok("name = \"selftest\"\n");
    assert_eq!(
        p.config,
        VmConfig {
            name: "selftest".into(),
            memory_mib: DEFAULT_MEMORY_MIB,
            vcpus: 1,
            firmware: None,
            kernel: None,
            ramdisk: None,
            cmdline: None,
            modules: Vec::new(),
            disks: vec![],
            vifs: vec![],
            test_device: false,
            viridian: Viridian::default(),
            stdvga: false,
            screen_dump: false,
            rtc_timeoffset: 0,
            cpuid_hidden: Vec::new(),
            xen_platform_pci: false,
            cpus: None,
            on_poweroff: OnEvent::Destroy,
            on_reboot: OnEvent::Restart,
            on_crash: OnEvent::Destroy,
        }
    );
    assert!(p.warnings.is_empty());
}

#[test]
fn keel_test_device_key() {
    assert!(ok("name = \"t\"\nkeel_testdev = 1\n").config.test_device);
    assert!(!ok("name = \"t\"\nkeel_testdev = 0\n").config.test_device);
    let e = err("name = \"t\"\nkeel_testdev = 2\n");
    assert!(e.contains("vm.cfg:2") && e.contains("0 or 1"), "{e}");
}

#[test]
fn the_display_adapter_keys() {
    let cfg = |extra: &str| ok(&format!("name = \"t\"\nfirmware = \"seabios\"\n{extra}")).config;
    assert!(!cfg("").stdvga, "no VGA unless asked for");
    assert!(cfg("stdvga = 1\n").stdvga);
    assert!(cfg("vga = \"stdvga\"\n").stdvga);
    assert!(!cfg("vga = \"none\"\n").stdvga);
    assert!(!cfg("stdvga = 0\n").stdvga);
    let e = err("name = \"t\"\nvga = \"cirrus\"\n");
    assert!(e.contains("vm.cfg:2") && e.contains("stdvga"), "{e}");
    let e = err("name = \"t\"\nstdvga = 1\nvga = \"none\"\n");
    assert!(e.contains("vm.cfg:3") && e.contains("line 2"), "{e}");
    assert!(cfg("keel_screen_dump = 1\n").screen_dump);
    assert!(err("name = \"t\"\nkeel_screen_dump = 3\n").contains("0 or 1"));
    // The VGA BIOS travels with firmware; a direct-boot guest needs none.
    assert_eq!(
        cfg("vga = \"stdvga\"\n").images(),
        vec![("firmware", "seabios"), ("rom", VGABIOS_STDVGA_ROM)]
    );
    let direct = ok("name = \"t\"\nkernel = \"k\"\nstdvga = 1\n").config;
    assert!(!direct.images().contains(&("rom", VGABIOS_STDVGA_ROM)));
}

#[test]
fn every_known_key() {
    let p = ok(r#"
# a full example
name = 'web-1'          # trailing comment
memory = 0x200
vcpus=1;
firmware = "selftest"; kernel = "vmlinuz"
ramdisk = "initrd.img"
cmdline = "console=ttyS0 quiet"
disk = [ 'phy:virtio0,hda,w',
         "file:data.img,hdb,r", ]
vif = [ ]
"#);
    let c = p.config;
    assert_eq!(c.name, "web-1");
    assert_eq!(c.memory_mib, 512);
    assert_eq!(c.vcpus, 1);
    assert_eq!(c.firmware.as_deref(), Some("selftest"));
    assert_eq!(c.kernel.as_deref(), Some("vmlinuz"));
    assert_eq!(c.ramdisk.as_deref(), Some("initrd.img"));
    assert_eq!(c.cmdline.as_deref(), Some("console=ttyS0 quiet"));
    assert_eq!(c.disks, vec!["phy:virtio0,hda,w", "file:data.img,hdb,r"]);
    assert!(c.vifs.is_empty());
    assert_eq!(
        c.images(),
        vec![
            ("firmware", "selftest"),
            ("kernel", "vmlinuz"),
            ("ramdisk", "initrd.img"),
            ("disk", "data.img")
        ]
    );
}

#[test]
fn escapes_in_strings() {
    let p = ok(r#"name = "a\"b\\c\x41\101"
cmdline = 'it\'s	tab'"#);
    assert_eq!(p.config.name, "a\"b\\cAA");
    assert_eq!(p.config.cmdline.as_deref(), Some("it's\ttab"));
}

#[test]
fn crlf_line_endings_and_no_final_newline() {
    let p = ok("name = \"x\"\r\nmemory = 64\r\n\r\nvcpus = 1");
    assert_eq!(p.config.memory_mib, 64);
    assert_eq!(p.config.vcpus, 1);
}

#[test]
fn unknown_keys_are_warnings_with_lines() {
    let p = ok("name = \"x\"\n\nboot = \"c\"\non_watchdog = 'destroy'\n");
    assert_eq!(p.warnings.len(), 2);
    assert_eq!(p.warnings[0].line, 3);
    assert!(p.warnings[0].message.contains("'boot'"));
    assert_eq!(
        p.warnings[1].in_file("vm.cfg").to_string(),
        "vm.cfg:4: warning: unknown key 'on_watchdog' ignored (Keel understands: name, memory, \
         vcpus, firmware, kernel, ramdisk, cmdline, modules, disk, vif, keel_testdev, viridian, stdvga, \
         vga, keel_screen_dump, rtc_timeoffset, localtime, xen_platform_pci, cpus, on_poweroff, \
         on_reboot, on_crash, cpuid)"
    );
}

/// xl.cfg(5) `cpuid = "host,name=0,..."`: the host's CPUID with the named
/// features hidden; unknown names, values other than 0 and strings not
/// starting with `host` are errors that say what Keel takes.
#[test]
fn cpuid_host_with_hidden_features() {
    assert!(ok("name = \"t\"\n").config.cpuid_hidden.is_empty());
    assert!(ok("name = \"t\"\ncpuid = \"host\"\n")
        .config
        .cpuid_hidden
        .is_empty());
    let h = ok("name = \"t\"\ncpuid = \"host,avx=0, smap=0,rdtscp=0,avx=0\"\n")
        .config
        .cpuid_hidden;
    let got: Vec<_> = h.iter().map(|f| (f.name, f.leaf, f.reg, f.bit)).collect();
    // CPUID.1:ECX[28] AVX, CPUID.7.0:EBX[20] SMAP, Fn8000_0001 EDX[27] RDTSCP.
    assert_eq!(
        got,
        [
            ("avx", 1, 2, 28),
            ("smap", 7, 1, 20),
            ("rdtscp", 0x8000_0001, 3, 27)
        ]
    );
    let e = err("name = \"t\"\ncpuid = \"host,avx512f=0\"\n");
    assert!(e.contains("unknown cpuid feature 'avx512f'"), "{e}");
    assert!(e.contains("xsave, avx, f16c"), "{e}");
    let e = err("name = \"t\"\ncpuid = \"host,avx=1\"\n");
    assert!(e.contains("only 'avx=0'"), "{e}");
    let e = err("name = \"t\"\ncpuid = \"avx=0\"\n");
    assert!(e.contains("must start with \"host\""), "{e}");
    let e = err("name = \"t\"\ncpuid = [ \"1:ecx=xxxx\" ]\n");
    assert!(e.contains("libxl's form"), "{e}");
    assert!(err("name = \"t\"\ncpuid = \"host,smep\"\n").contains("only 'smep=0'"));
}

/// `pku=0` and `invtsc=0` name CPUID.7.0:ECX[3] PKU and Fn8000_0007
/// EDX[8] TscInvariant.
#[test]
fn cpuid_pku_and_invtsc() {
    let h = ok("name = \"t\"\ncpuid = \"host,pku=0,invtsc=0\"\n")
        .config
        .cpuid_hidden;
    let got: Vec<_> = h
        .iter()
        .map(|f| (f.name, f.leaf, f.subleaf, f.reg, f.bit))
        .collect();
    assert_eq!(got, [("pku", 7, 0, 2, 3), ("invtsc", 0x8000_0007, 0, 3, 8)]);
}

#[test]
fn type_errors_quote_the_setting() {
    assert_eq!(
        err("name = \"x\"\n\nmemory = \"lots\"\n"),
        "vm.cfg:3: memory = \"lots\": expected a number of MiB"
    );
    assert_eq!(
        err("name = 5"),
        "vm.cfg:1: name = 5: expected the VM's name in quotes"
    );
    assert_eq!(
        err("name='x'\ndisk = 'a.img'"),
        "vm.cfg:2: disk = 'a.img': expected a list, such as disk = [ '...' ]"
    );
    assert_eq!(
        err("name='x'\nvif = [ 1 ]"),
        "vm.cfg:2: vif = [ 1 ]: every element of this list must be a string in quotes"
    );
}

#[test]
fn range_checks() {
    assert!(err("name='x'\nmemory = 1").contains("between 2 and 1048576 MiB"));
    assert!(err("name='x'\nmemory = 1048577").contains("between 2 and 1048576 MiB"));
    assert_eq!(ok("name='x'\nmemory = 2").config.memory_mib, 2);
    assert_eq!(ok("name='x'\nmemory = 1048576").config.memory_mib, 1 << 20);
    assert!(err("name='x'\nvcpus = 0").contains("at least 1 vCPU"));
    // More vCPUs than the machine has is Keel's check (it knows the
    // machine); past MAX_VCPUS no machine Keel runs on has enough.
    assert_eq!(ok("name='x'\nvcpus = 2").config.vcpus, 2);
    let e = err("name='x'\nvcpus = 65");
    assert!(e.contains(":2") && e.contains("at most 64 vCPUs"), "{e}");
    assert!(err("name='x'\nvcpus = 4294967296").contains("at most 64 vCPUs"));
    assert!(err("name='x'\nmemory = 99999999999999999999999").contains("too large"));
}

#[test]
fn name_rules() {
    assert!(err("memory = 64").starts_with("vm.cfg: the VM has no name"));
    assert!(err("name = ''").contains("must not be empty"));
    assert!(err("name = 'a\\tb'").contains("printable ASCII"));
    assert!(err("name = 'caf\u{e9}'").contains("printable ASCII"));
    assert!(err("name = ' x'").contains("start or end with a space"));
    assert!(err(&alloc::format!("name = '{}'", "n".repeat(65))).contains("at most 64"));
    assert_eq!(ok("name = 'my vm (1)'").config.name, "my vm (1)");
}

#[test]
fn syntax_errors_name_the_line() {
    assert_eq!(
        err("name = 'x'\nmemory = 512M\n"),
        "vm.cfg:2: memory = 512M: not a number (write decimal digits or 0x and hex digits; \
         numbers take no unit)"
    );
    assert!(err("name = 'x'\nmemory 64").starts_with("vm.cfg:2: expected '=' after 'memory'"));
    assert!(err("name = 'x'\nmemory = lots").starts_with("vm.cfg:2: memory = lots: a value must"));
    assert!(err("name = 'x\n").contains("no closing '"));
    assert!(err("name = \"x").contains("no closing \""));
    assert!(err("name = 'x'\ndisk = [ 'a',\n 'b'\n")
        .starts_with("vm.cfg:2: disk = [...: the list has no closing ]"));
    assert!(err("name = 'x'\ndisk = [ 'a' 'b' ]").contains("expected ',' or ']'"));
    assert!(err("name = 'x'\ndisk = [ [ 'a' ] ]").contains("cannot contain lists"));
    assert!(err("name = 'x' 'y'").contains("unexpected"));
    assert!(err("name = 'x'\n= 3").starts_with("vm.cfg:2: expected a setting"));
    assert!(err("name = 'x'\nmemory =\n").contains("has no value"));
    assert!(err("name = '\\q'").contains("unknown escape"));
    assert!(err("name = '\\xzz'").contains("hex digits"));
    assert!(err("name = '\\777'").contains("larger than one byte"));
    assert!(err("name = '\\xff'").contains("UTF-8"));
}

#[test]
fn duplicate_keys_are_errors() {
    assert_eq!(
        err("name = 'a'\nmemory = 64\nmemory = 128\n"),
        "vm.cfg:3: memory is already set on line 2; remove one of the two"
    );
}

#[test]
fn bytes_must_be_utf8_but_trailing_nuls_are_padding() {
    assert_eq!(parse_bytes(b"name = 'x'\n\0\0\0").unwrap().config.name, "x");
    let e = parse_bytes(b"name = 'x'\n# \xff\n").unwrap_err();
    assert_eq!(e.line, Some(2));
    assert!(e.message.contains("UTF-8"));
    assert_eq!(parse_bytes(b"").unwrap_err().line, None);
}

#[test]
fn long_values_are_shortened_in_messages() {
    let text = alloc::format!("name = 'x'\nmemory = '{}'", "y".repeat(500));
    let e = err(&text);
    assert!(e.len() < 150, "{e}");
    assert!(e.contains("..."));
}

// Random and mutated configurations: the config target of crates/fuzz.

#[test]
fn a_kernel_without_firmware_boots_through_the_bios_shim() {
    let c = ok("name = \"l\"\nkernel = \"vmlinuz\"\nramdisk = \"initrd\"\n").config;
    assert_eq!(c.firmware_image(), Some(BIOS_SHIM));
    assert_eq!(
        c.images(),
        vec![
            ("firmware", "keel-shim"),
            ("kernel", "vmlinuz"),
            ("ramdisk", "initrd")
        ]
    );
    let c = ok("name = \"l\"\nfirmware = \"seabios\"\nkernel = \"vmlinuz\"\n").config;
    assert_eq!(c.firmware_image(), Some("seabios"));
    assert_eq!(ok("name = \"l\"\n").config.firmware_image(), None);
}

#[test]
fn host_disks_are_not_images() {
    let c = ok("name = 'h'\nfirmware = 'seabios'\n\
                disk = [ 'phy:virtio0,hda,w', 'boot.img,raw,hdb,rw',\n\
                'target=virtio1,vdev=hdc,access=r,backendtype=phy' ]\n")
    .config;
    assert_eq!(
        c.images(),
        vec![("firmware", "seabios"), ("disk", "boot.img")]
    );
    let specs = c.disk_specs().unwrap();
    assert_eq!(
        specs.iter().map(|s| s.backend).collect::<Vec<_>>(),
        [
            DiskBackend::HostVirtio(0),
            DiskBackend::Module,
            DiskBackend::HostVirtio(1)
        ]
    );
}

#[test]
fn disk_entries_are_checked_where_they_are_written() {
    // Finding #9 of issue 11: a virtual device Keel cannot attach used to
    // pass here and be refused only at boot, without file or line.
    assert_eq!(
        err("name = 'd'\n\ndisk = [ 'x,raw,hdz,rw' ]\n"),
        "vm.cfg:3: disk 'x,raw,hdz,rw': virtual device 'hdz': Keel emulates IDE, use hda, \
         hdb, hdc or hdd (or specification=virtio with xvda, vda, ...)"
    );
    let e = err("name = 'd'\ndisk = [ 'a.img,raw,hda,rw',\n  'b.img,qcow2,hdb,rw' ]\n");
    assert!(
        e.starts_with("vm.cfg:2: disk 'b.img,qcow2,hdb,rw': format 'qcow2'"),
        "{e}"
    );
    assert!(err("name = 'd'\ndisk = [ 'x,raw,xvda,rw' ]").starts_with("vm.cfg:2: "));
    assert!(err("name = 'd'\ndisk = [ 'phy:sda,hda,w' ]").starts_with("vm.cfg:2: "));
    // Two disks on one slot: the second would silently replace the first.
    assert_eq!(
        err("name = 'd'\ndisk = [ 'a.img,raw,hdc,rw', 'b.iso,raw,hdc:cdrom,r' ]"),
        "vm.cfg:2: disk 'b.iso,raw,hdc:cdrom,r': hdc is already taken by disk \
         'a.img,raw,hdc,rw'; give each disk its own virtual device"
    );
    let c = ok(
        "name = 'd'\ndisk = [ 'a,raw,hda,rw', 'b,raw,hdb,rw', 'c,raw,hdc:cdrom,r', \
                'd,raw,hdd,r' ]",
    )
    .config;
    let slots: Vec<DiskSlot> = c.disk_specs().unwrap().iter().map(|d| d.slot).collect();
    assert_eq!(slots, IdeSlot::ALL.map(DiskSlot::Ide));
}

#[test]
fn vif_entries_are_parsed_and_checked_where_they_are_written() {
    let c = ok(
        "vif = [ 'model=e1000,mac=00:16:3e:0a:bc:ff,bridge=virtio1', 'type=ioemu' ]\n\
                name = 'net'\n",
    )
    .config;
    let specs = c.vif_specs().unwrap();
    assert_eq!(specs.len(), 2);
    assert_eq!(specs[0].mac, [0x00, 0x16, 0x3e, 0x0a, 0xbc, 0xff]);
    assert_eq!(specs[0].bridge, 1);
    // The second has no mac: generated from the VM's name, whatever the
    // order of the keys in the file.
    assert_eq!(specs[1].mac, generated_mac("net", 1));
    assert_eq!((specs[1].model, specs[1].bridge), (NicModel::E1000, 0));

    assert_eq!(
        err("name = 'n'\n\nvif = [ 'bridge=br0' ]\n"),
        "vm.cfg:3: vif 0 'bridge=br0': bridge 'br0': Keel bridges to the machine's \
         virtio-net NICs, named virtio0, virtio1, ... in PCI scan order"
    );
    let e = err("name = 'n'\nvif = [ '', 'model=rtl8139' ]\n");
    assert!(
        e.starts_with("vm.cfg:2: vif 1 'model=rtl8139': ") && e.contains("virtio-net"),
        "{e}"
    );
    // The issue's example: a virtio-net NIC on the first host NIC's switch.
    let c = ok("name = 'n'\nvif = [ 'model=virtio-net,bridge=virtio0', 'model=virtio-net-pci' ]\n")
        .config;
    let specs = c.vif_specs().unwrap();
    assert_eq!((specs[0].model, specs[0].bridge), (NicModel::VirtioNet, 0));
    assert_eq!(specs[1].model, NicModel::VirtioNet);
    let e = err("name = 'n'\nvif = [ 'mac=02:00:00:00:00:01', 'mac=02:00:00:00:00:01' ]\n");
    assert!(e.contains("vif 1") && e.contains("same mac"), "{e}");
    let e = err("name = 'n'\nvif = [ '', '', '', '', '' ]\n");
    assert!(e.contains("at most 4"), "{e}");
    assert!(err("name = 'n'\nvif = [ 'bridge=virtio0,colour=red' ]").contains("'colour='"));
}

#[test]
fn an_e1000_under_firmware_names_its_option_rom() {
    let c = ok("name = 'p'\nfirmware = 'seabios'\nvif = [ 'mac=02:00:00:00:00:01' ]\n").config;
    assert_eq!(
        c.images(),
        vec![("firmware", "seabios"), ("rom", PXE_E1000_ROM)]
    );
    assert_eq!(PXE_E1000_ROM, "pxe-e1000");
    // The BIOS shim boots the kernel itself: no option ROM runs.
    let c = ok("name = 'p'\nkernel = 'vmlinuz'\nvif = [ '' ]\n").config;
    assert_eq!(
        c.images(),
        vec![("firmware", BIOS_SHIM), ("kernel", "vmlinuz")]
    );
    // No vif, no ROM.
    let c = ok("name = 'p'\nfirmware = 'seabios'\n").config;
    assert_eq!(c.images(), vec![("firmware", "seabios")]);
}

#[test]
fn a_list_is_replaced_in_place_and_the_rest_kept() {
    let text = "# my VM\nname = 'v'\ndisk = [ 'disk.img,raw,hda,rw',  # the disk\n  \"cd.iso,raw,hdc:cdrom,r\" ]\nmemory = 64 # MiB\n";
    let items = [
        "phy:virtio1,hda,w".to_string(),
        "cd.iso,raw,hdc:cdrom,r".to_string(),
    ];
    let out = crate::replace_list(text, "disk", &items).unwrap();
    assert_eq!(
        out,
        "# my VM\nname = 'v'\ndisk = [ 'phy:virtio1,hda,w', 'cd.iso,raw,hdc:cdrom,r' ]\nmemory = 64 # MiB\n"
    );
    let p = ok(&out);
    assert_eq!(p.config.disks, items);
    assert_eq!(p.config.memory_mib, 64);
    // Quotes and backslashes survive the round trip.
    let odd = ["it's\\x,raw,hda,rw".to_string()];
    let out = crate::replace_list("name='v'\ndisk=[]", "disk", &odd).unwrap();
    assert_eq!(ok(&out).config.disks, odd);
    // A key the text does not set is added.
    let out = crate::replace_list("name='v'", "disk", &items[..1]).unwrap();
    assert_eq!(out, "name='v'\ndisk = [ 'phy:virtio1,hda,w' ]\n");
    assert!(crate::replace_list("name='v'", "disk", &["a\nb".to_string()]).is_err());
    assert!(crate::replace_list("name=", "disk", &items).is_err());
}

#[test]
fn modules_each_with_its_own_command_line() {
    let c = ok("name = \"mb\"\nkernel = \"k\"\nramdisk = \"r\"\n\
                modules = [ 'a.bin x=1 y', 'b.bin', 'a.bin second' ]\n")
    .config;
    assert_eq!(c.modules, ["a.bin x=1 y", "b.bin", "a.bin second"]);
    // One boot module per image, in order after the kernel and ramdisk.
    assert_eq!(
        c.images(),
        [
            ("firmware", "keel-shim"),
            ("kernel", "k"),
            ("ramdisk", "r"),
            ("module", "a.bin"),
            ("module", "b.bin")
        ]
    );
    assert_eq!(module_image("a.bin x=1"), "a.bin");
}

#[test]
fn bad_module_lists() {
    for (text, why) in [
        ("name = \"m\"\nmodules = [ 'a' ]\n", "with a kernel"),
        (
            "name = \"m\"\nkernel = \"k\"\nmodules = [ ' a' ]\n",
            "no image name",
        ),
        (
            "name = \"m\"\nkernel = \"k\"\nmodules = [ 'a\\tb' ]\n",
            "control character",
        ),
        ("name = \"m\"\nkernel = \"k\"\nmodules = 'a'\n", "list"),
    ] {
        let e = parse(text).unwrap_err();
        assert!(e.message.contains(why), "{text}: {}", e.message);
        assert!(e.line.is_some(), "{text}");
    }
    let seventeen: Vec<String> = (0..17).map(|i| format!("'m{i}'")).collect();
    let text = format!(
        "name = \"m\"\nkernel = \"k\"\nmodules = [ {} ]\n",
        seventeen.join(", ")
    );
    let e = parse(&text).unwrap_err();
    assert!(e.message.contains("at most 16"), "{}", e.message);
    let sixteen = format!(
        "name = \"m\"\nkernel = \"k\"\nramdisk = \"r\"\nmodules = [ {} ]\n",
        seventeen[..16].join(", ")
    );
    assert!(parse(&sixteen).is_err());
    let fifteen = format!(
        "name = \"m\"\nkernel = \"k\"\nramdisk = \"r\"\nmodules = [ {} ]\n",
        seventeen[..15].join(", ")
    );
    assert_eq!(parse(&fifteen).unwrap().config.modules.len(), 15);
}

#[test]
fn viridian_number_and_groups() {
    assert!(!ok("name = \"t\"\n").config.viridian.enabled());
    assert_eq!(
        ok("name = \"t\"\nviridian = 0\n").config.viridian,
        Viridian::default()
    );
    assert_eq!(
        ok("name = \"t\"\nviridian = 1\n").config.viridian,
        Viridian::DEFAULTS
    );
    let v = ok("name = \"t\"\nviridian = [ 'base', 'freq' ]\n")
        .config
        .viridian;
    assert_eq!(
        v,
        Viridian {
            base: true,
            freq: true,
            time_ref_count: false,
            reference_tsc: false,
        }
    );
    let v = ok("name = \"t\"\nviridian = [ 'defaults', '!reference_tsc' ]\n")
        .config
        .viridian;
    assert!(v.base && v.freq && v.time_ref_count && !v.reference_tsc);
}

#[test]
fn viridian_refuses_what_keel_lacks() {
    let e = err("name = \"t\"\nviridian = [ 'base', 'stimer' ]\n");
    assert!(
        e.contains("vm.cfg:2") && e.contains("'stimer' is not implemented"),
        "{e}"
    );
    let e = err("name = \"t\"\nviridian = [ 'base', 'turbo' ]\n");
    assert!(e.contains("unknown viridian group 'turbo'"), "{e}");
    let e = err("name = \"t\"\nviridian = [ 'freq' ]\n");
    assert!(e.contains("need 'base'"), "{e}");
    let e = err("name = \"t\"\nviridian = 2\n");
    assert!(e.contains("expected 0, 1"), "{e}");
    let e = err("name = \"t\"\nviridian = [ 3 ]\n");
    assert!(e.contains("string in quotes"), "{e}");
}

#[test]
fn rtc_timeoffset_takes_seconds_either_way_and_localtime_is_refused() {
    assert_eq!(ok("name = \"t\"\n").config.rtc_timeoffset, 0);
    assert_eq!(
        ok("name = \"t\"\nrtc_timeoffset = 3600\n")
            .config
            .rtc_timeoffset,
        3600
    );
    assert_eq!(
        ok("name = \"t\"\nrtc_timeoffset = \"-86400\"\n")
            .config
            .rtc_timeoffset,
        -86400
    );
    assert_eq!(ok("name = \"t\"\nlocaltime = 0\n").config.rtc_timeoffset, 0);
    for (text, needle) in [
        (
            "rtc_timeoffset = \"soon\"\n",
            "expected a number of seconds",
        ),
        ("rtc_timeoffset = 9999999999\n", "100 years"),
        ("rtc_timeoffset = \"-9999999999\"\n", "100 years"),
        ("rtc_timeoffset = [ 1 ]\n", "expected a number of seconds"),
        ("localtime = 1\n", "use rtc_timeoffset"),
        ("localtime = 2\n", "expected 0 or 1"),
    ] {
        let e = parse(&format!("name = \"t\"\n{text}")).unwrap_err();
        assert_eq!(e.line, Some(2), "{text}");
        assert!(e.message.contains(needle), "{text}: {}", e.message);
    }
}

#[test]
fn xen_platform_pci_key() {
    assert!(!ok("name = \"t\"\n").config.xen_platform_pci);
    assert!(
        ok("name = \"t\"\nxen_platform_pci = 1\n")
            .config
            .xen_platform_pci
    );
    assert!(
        !ok("name = \"t\"\nxen_platform_pci = 0\n")
            .config
            .xen_platform_pci
    );
    assert!(err("name = \"t\"\nxen_platform_pci = 2\n").contains("expected 0 or 1"));
}

#[test]
fn xen_and_viridian_are_one_personality() {
    let e = err("name = \"t\"\nviridian = 1\nxen_platform_pci = 1\n");
    assert!(e.contains("vm.cfg:3") && e.contains("one per VM"), "{e}");
}

#[test]
fn cpus_and_event_actions() {
    let c =
        ok("name='x'\ncpus = \"0,2-3\"\non_crash = 'preserve'\non_poweroff = \"restart\"").config;
    assert_eq!(c.cpus, Some(0b1101));
    assert_eq!(c.on_crash, OnEvent::Preserve);
    assert_eq!(c.on_poweroff, OnEvent::Restart);
    // xl's defaults (xl.cfg(5) "Event Actions").
    let d = ok("name='x'").config;
    assert_eq!(
        (d.on_poweroff, d.on_reboot, d.on_crash),
        (OnEvent::Destroy, OnEvent::Restart, OnEvent::Destroy)
    );
    assert_eq!(d.cpus, None);
    assert_eq!(
        ok("name='x'\ncpus = [\"1\", \"3\"]").config.cpus,
        Some(0b1010)
    );
    assert!(err("name='x'\ncpus = \"3-1\"").contains("backwards"));
    assert!(err("name='x'\ncpus = \"64\"").contains("0 to 63"));
    assert!(err("name='x'\ncpus = \"a\"").contains("not a CPU number"));
    assert!(
        err("name='x'\non_crash = 'coredump-destroy'").contains("destroy, restart and preserve")
    );
}
