//! VM configuration files in xl.cfg syntax.
//!
//! Keel reads one configuration per VM, in the syntax of Xen's xl.cfg(5): one
//! `KEY = VALUE` setting per line (or several, each ended by `;`), `#` starts a
//! comment, and a VALUE is a string (`"..."` or `'...'`, both with C-style
//! backslash escapes), a number (decimal or `0x` hex) or a list
//! `[ VALUE, VALUE, ]` that may span lines and may end with a comma.
//!
//! ```text
//! # tests/vms/selftest.cfg
//! name = "selftest"
//! memory = 64          # MiB
//! firmware = "selftest"
//! ```
//!
//! Keys Keel understands today, with their defaults:
//!
//! | key | type | default | meaning |
//! |---|---|---|---|
//! | `name` | string | required | the VM's name in logs; printable ASCII, 1-64 chars |
//! | `memory` | number | 128 | guest RAM in MiB, 2 to 1048576 (1 TiB) |
//! | `vcpus` | number | 1 | number of vCPUs, 1 to [`MAX_VCPUS`]; at most the machine's CPUs; each vCPU runs on a host CPU, shared with other VMs' vCPUs when the VMs have more vCPUs than the machine has CPUs |
//! | `cpus` | string or list | all | the host CPUs the VM may run on: `"2"`, `"0-3"`, `"0,2-3"` or `["0", "2"]` ([`parse_cpu_list`]) |
//! | `on_poweroff` | string | `"destroy"` | what follows the guest's power-off: `destroy`, `restart` or `preserve` ([`OnEvent`]) |
//! | `on_reboot` | string | `"restart"` | what follows the guest's reset |
//! | `on_crash` | string | `"destroy"` | what follows a crash (triple fault, a guest state Keel cannot run) |
//! | `firmware` | string | none | the guest image the VM starts from (reset vector) |
//! | `kernel` | string | none | a kernel for direct boot (with the BIOS shim) |
//! | `ramdisk` | string | none | an initial ramdisk for `kernel` |
//! | `cmdline` | string | none | the kernel command line |
//! | `modules` | list of strings | `[]` | multiboot modules for `kernel`, each `'image args...'`: the image's name, then the module's own command line ([`MAX_MODULES`] with `ramdisk`) |
//! | `disk` | list of strings | `[]` | disk specifications ([`DiskSpec`]), each checked, kept verbatim |
//! | `vif` | list of strings | `[]` | network cards ([`VifSpec`]: `'model=e1000,mac=...,bridge=virtio0'`), each checked, kept verbatim |
//!
//! Any other key is parsed (so its syntax must be right) and reported as a
//! [`Warning`]; setting the same key twice is an error. Parsing never panics:
//! every problem is a [`ConfigError`] with the line it was found on.
#![no_std]

extern crate alloc;

mod disk;
mod lex;
mod vif;

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;

pub use disk::{DiskBackend, DiskSlot, DiskSpec, IdeSlot, HOST_DISK_PREFIX, VOLATILE_FLAG};
pub use lex::{Setting, Value};
pub use vif::{generated_mac, NicModel, VifSpec, HOST_NIC_PREFIX};

/// Guest RAM when the configuration does not say, in MiB (as xl's default).
pub const DEFAULT_MEMORY_MIB: u32 = 128;
/// Smallest accepted `memory`, in MiB: the first MiB holds the firmware image.
pub const MIN_MEMORY_MIB: u32 = 2;
/// Largest accepted `memory`, in MiB (1 TiB).
pub const MAX_MEMORY_MIB: u32 = 1024 * 1024;
/// The most vCPUs a configuration may ask for (as many as Keel can have
/// host CPUs); Keel refuses more than the machine has, and runs one vCPU
/// per VM today.
pub const MAX_VCPUS: u32 = 64;
/// Host CPU numbers a `cpus` list may name: 0 to this minus one.
pub const MAX_HOST_CPUS: u32 = 64;

/// xl.cfg's `on_poweroff`, `on_reboot`, `on_crash` actions (xl.cfg(5),
/// "Event Actions").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnEvent {
    /// The VM ends and its host CPU is free.
    Destroy,
    /// The VM starts again from its reset state (RAM kept, firmware reloaded).
    Restart,
    /// The VM ends but is kept (listed as preserved); nothing runs it again.
    Preserve,
}

impl OnEvent {
    /// The word xl.cfg uses.
    pub fn name(self) -> &'static str {
        match self {
            OnEvent::Destroy => "destroy",
            OnEvent::Restart => "restart",
            OnEvent::Preserve => "preserve",
        }
    }
}

/// Parses a `cpus` string: comma-separated CPU numbers and `A-B` ranges
/// (xl.cfg(5) "cpus"); returns the set as a bit mask of [`MAX_HOST_CPUS`] bits.
pub fn parse_cpu_list(text: &str) -> Result<u64, String> {
    let mut mask = 0u64;
    for part in text.split(',').map(str::trim) {
        let number = |t: &str| -> Result<u32, String> {
            let n: u32 = t
                .trim()
                .parse()
                .map_err(|_| format!("'{part}' is not a CPU number or a range A-B"))?;
            if n >= MAX_HOST_CPUS {
                return Err(format!(
                    "CPU {n}: CPUs are numbered 0 to {}",
                    MAX_HOST_CPUS - 1
                ));
            }
            Ok(n)
        };
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (number(a)?, number(b)?),
            None => {
                let n = number(part)?;
                (n, n)
            }
        };
        if a > b {
            return Err(format!("'{part}': the range runs backwards"));
        }
        for n in a..=b {
            mask |= 1 << n;
        }
    }
    Ok(mask)
}
/// Longest accepted `name`, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// The most network cards a VM may have (each takes a PCI slot).
pub const MAX_VIFS: usize = 4;
/// The boot module holding the e1000's option ROM (iPXE), named in the
/// image list of a VM that boots firmware and has an e1000.
pub const PXE_E1000_ROM: &str = "pxe-e1000";
/// The boot module holding the standard VGA's BIOS (Debian's SeaBIOS VGA
/// ROM for it), named in the image list of a VM that boots firmware and
/// has the card.
pub const VGABIOS_STDVGA_ROM: &str = "vgabios-stdvga";

/// A validated VM configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// `name`: printable ASCII, shown in every log line of this VM.
    pub name: String,
    /// `memory`: guest RAM in MiB.
    pub memory_mib: u32,
    /// `vcpus`: number of virtual CPUs.
    pub vcpus: u32,
    /// `firmware`: the guest image mapped below 1 MiB and at the top of 4 GiB.
    pub firmware: Option<String>,
    /// `kernel`: a kernel image for direct boot.
    pub kernel: Option<String>,
    /// `ramdisk`: an initial ramdisk for `kernel`.
    pub ramdisk: Option<String>,
    /// `cmdline`: the kernel command line.
    pub cmdline: Option<String>,
    /// `modules`: multiboot modules after `ramdisk`, each the image's name,
    /// then optionally a space and arguments. The whole string is the
    /// module's string in the multiboot info (GRUB's `module /path args`
    /// gives the path and the arguments the same way).
    pub modules: Vec<String>,
    /// `disk`: disk specifications, verbatim; each parses as a [`DiskSpec`]
    /// and no two share an IDE slot (checked by [`parse`]).
    pub disks: Vec<String>,
    /// `vif`: network interface specifications, verbatim; each parses as a
    /// [`VifSpec`] (checked by [`parse`]).
    pub vifs: Vec<String>,
    /// `keel_testdev`: Keel's own key (not xl's): 1 adds Keel's PCI test
    /// device (`device-model/src/test_device.rs`) the test guests use; 0
    /// (default) leaves it out.
    pub test_device: bool,
    /// `viridian`: the Hyper-V enlightenments offered ([`Viridian`]); none
    /// by default.
    pub viridian: Viridian,
    /// `stdvga = 1` or `vga = "stdvga"` (xl's keys): QEMU's standard VGA
    /// with VBE. `stdvga = 0` or `vga = "none"` (the default): no display
    /// adapter, so VMs that never asked for one keep the machine they had.
    pub stdvga: bool,
    /// `keel_screen_dump`: Keel's own key: 1 writes the VGA text screen to
    /// Keel's log when the VM ends (`[name:screen] ...` lines); 0 (default) not.
    pub screen_dump: bool,
    /// `rtc_timeoffset` (xl's key): seconds added to the machine's UTC time
    /// for the VM's RTC, within ±[`MAX_RTC_TIMEOFFSET`]; 0 by default. A
    /// guest that keeps its RTC in local time (Windows) gets its zone's
    /// offset here, since Keel keeps no time zone (`localtime = 1` is refused).
    pub rtc_timeoffset: i64,
    /// `xen_platform_pci = 1` (xl.cfg(5)): the guest is offered Xen's
    /// PV-on-HVM interfaces (Xen's CPUID leaves and hypercalls, event
    /// channels, grant tables, the xen-platform-pci device; docs/XEN.md).
    /// One hypervisor personality per VM: not together with `viridian`.
    pub xen_platform_pci: bool,
    /// `cpus`: the host CPUs the VM may run on, bit N for CPU N; `None`
    /// (the default) is any CPU.
    pub cpus: Option<u64>,
    /// `on_poweroff`: what follows the guest's power-off.
    pub on_poweroff: OnEvent,
    /// `on_reboot`: what follows the guest's reset.
    pub on_reboot: OnEvent,
    /// `on_crash`: what follows a crash.
    pub on_crash: OnEvent,
    /// `cpuid = "host,name=0,..."` (xl.cfg(5) "cpuid", libxl syntax): the
    /// CPUID features hidden from the guest, from [`CPUID_FEATURES`].
    pub cpuid_hidden: Vec<CpuidFeature>,
}

/// A CPUID feature bit that `cpuid = "host,name=0"` can hide: CPUID leaf
/// `leaf`, sub-leaf `subleaf`, output register `reg` (0 EAX, 1 EBX, 2 ECX,
/// 3 EDX), bit `bit` (SDM Vol 2A CPUID; APM Vol 3 Appendix E).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CpuidFeature {
    pub name: &'static str,
    pub leaf: u32,
    pub subleaf: u32,
    pub reg: u8,
    pub bit: u8,
}

const fn feature(name: &'static str, leaf: u32, reg: u8, bit: u8) -> CpuidFeature {
    CpuidFeature {
        name,
        leaf,
        subleaf: 0,
        reg,
        bit,
    }
}

/// The names `cpuid = "host,name=0"` accepts (libxl's names for these bits).
/// Hiding one also hides what depends on it (AVX2 with AVX, every XSAVE
/// feature with XSAVE, RDPID with RDTSCP): Keel's CPUID policy does that.
pub const CPUID_FEATURES: &[CpuidFeature] = &[
    feature("pclmulqdq", 1, 2, 1),
    feature("fma", 1, 2, 12),
    feature("x2apic", 1, 2, 21),
    feature("movbe", 1, 2, 22),
    feature("popcnt", 1, 2, 23),
    feature("aes", 1, 2, 25),
    feature("xsave", 1, 2, 26),
    feature("avx", 1, 2, 28),
    feature("f16c", 1, 2, 29),
    feature("rdrand", 1, 2, 30),
    feature("bmi1", 7, 1, 3),
    feature("avx2", 7, 1, 5),
    feature("smep", 7, 1, 7),
    feature("bmi2", 7, 1, 8),
    feature("erms", 7, 1, 9),
    feature("invpcid", 7, 1, 10),
    feature("rdseed", 7, 1, 18),
    feature("adx", 7, 1, 19),
    feature("smap", 7, 1, 20),
    feature("sha", 7, 1, 29),
    feature("pku", 7, 2, 3),
    feature("rdpid", 7, 2, 22),
    feature("rdtscp", 0x8000_0001, 3, 27),
    feature("invtsc", 0x8000_0007, 3, 8),
];

/// `cpuid = "host,name=0,..."`: xl.cfg(5)'s libxl form, starting from the
/// host's CPUID with the named features hidden. Keel can only hide (a
/// feature it would have to emulate cannot be forced on), so `name=1` and
/// the other libxl values are refused, as is xend's list form.
fn cpuid_hidden(s: &Setting) -> Result<Vec<CpuidFeature>, ConfigError> {
    let names = || {
        CPUID_FEATURES
            .iter()
            .map(|f| f.name)
            .collect::<Vec<_>>()
            .join(", ")
    };
    let text = match &s.value {
        Value::Str(t) => t.as_str(),
        _ => return Err(s.error(
            "expected a string such as \"host,avx=0\" (Keel takes libxl's form, not the list form)",
        )),
    };
    let mut parts = text.split(',').map(str::trim);
    if parts.next() != Some("host") {
        return Err(s.error("the cpuid string must start with \"host\", as in \"host,avx=0\""));
    }
    let mut hidden: Vec<CpuidFeature> = Vec::new();
    for part in parts {
        let (name, value) = part.split_once('=').unwrap_or((part, ""));
        let Some(f) = CPUID_FEATURES.iter().find(|f| f.name == name.trim()) else {
            return Err(s.error(&format!(
                "unknown cpuid feature '{}' (Keel can hide: {})",
                name.trim(),
                names()
            )));
        };
        if value.trim() != "0" {
            return Err(s.error(&format!(
                "cpuid feature '{}': only '{}=0' (hide it) is supported; Keel offers what the host has and cannot force features on",
                f.name, f.name
            )));
        }
        if !hidden.contains(f) {
            hidden.push(*f);
        }
    }
    Ok(hidden)
}

/// The largest `rtc_timeoffset`, either way: 100 years, past which the
/// RTC's century no longer holds the date.
pub const MAX_RTC_TIMEOFFSET: i64 = 100 * 366 * 86_400;

/// xl.cfg's `viridian`: which groups of Hyper-V enlightenments (Hyper-V
/// Top-Level Functional Specification v6) the guest is offered. `viridian
/// = 1` is [`Viridian::DEFAULTS`]; the list form names groups as xl does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Viridian {
    /// `base`: the "Microsoft Hv" CPUID leaves, the guest OS ID, hypercall
    /// and VP index MSRs, the APIC access MSRs and relaxed timing.
    pub base: bool,
    /// `freq`: the TSC and APIC frequency MSRs.
    pub freq: bool,
    /// `time_ref_count`: the partition reference counter MSR.
    pub time_ref_count: bool,
    /// `reference_tsc`: the reference TSC page.
    pub reference_tsc: bool,
}

impl Viridian {
    /// What `viridian = 1` and the group `defaults` turn on. Xen's default
    /// set is base, freq, time_ref_count, apic_assist and crash_ctl; Keel
    /// implements neither of the last two, and adds the reference TSC page,
    /// the clock Linux and Windows prefer.
    pub const DEFAULTS: Viridian = Viridian {
        base: true,
        freq: true,
        time_ref_count: true,
        reference_tsc: true,
    };
    /// Group names xl knows that Keel does not implement.
    pub const UNIMPLEMENTED: &'static [&'static str] = &[
        "apic_assist",
        "crash_ctl",
        "stimer",
        "hcall_remote_tlb_flush",
        "hcall_ipi",
        "ex_processor_masks",
        "no_vp_limit",
        "cpu_hotplug",
        "synic",
    ];

    /// Whether any enlightenment is offered.
    pub fn enabled(&self) -> bool {
        self.base
    }
}

impl VmConfig {
    /// The images this configuration names, as `(key, value)` pairs in the order
    /// firmware, kernel, ramdisk, disks, then the e1000's option ROM
    /// ([`PXE_E1000_ROM`]) when firmware such as SeaBIOS (`firmware =`, not
    /// the BIOS shim) boots a VM with an e1000 vif. Each is loaded as a boot module whose command
    /// line is exactly `value` (docs/ARCHITECTURE.md, "Boot modules").
    pub fn images(&self) -> Vec<(&'static str, &str)> {
        let mut images: Vec<(&'static str, &str)> = self
            .firmware_image()
            .map(|f| ("firmware", f))
            .into_iter()
            .collect();
        images.extend(
            [("kernel", &self.kernel), ("ramdisk", &self.ramdisk)]
                .into_iter()
                .filter_map(|(k, v)| v.as_deref().map(|v| (k, v))),
        );
        // One boot module per image, however many modules load it.
        for m in &self.modules {
            let name = module_image(m);
            if !images.iter().any(|(_, n)| *n == name) {
                images.push(("module", name));
            }
        }
        // Disk images travel as modules too (the target, as written in the
        // entry); a malformed entry and a host disk (`phy:virtio0`) name no image.
        for d in &self.disks {
            if let Some(at) = DiskSpec::parse(d).ok().and_then(|spec| {
                if spec.backend != DiskBackend::Module {
                    return None;
                }
                d.find(spec.target.as_str())
                    .map(|at| (at, spec.target.len()))
            }) {
                images.push(("disk", &d[at.0..at.0 + at.1]));
            }
        }
        if self.firmware.is_some()
            && self
                .vif_specs()
                .is_ok_and(|v| v.iter().any(|v| v.model == NicModel::E1000))
        {
            images.push(("rom", PXE_E1000_ROM));
        }
        if self.firmware.is_some() && self.stdvga {
            images.push(("rom", VGABIOS_STDVGA_ROM));
        }
        images
    }

    /// The image the VM starts from: `firmware`, or for a VM that names only
    /// a `kernel`, Keel's BIOS shim, which boots it directly.
    pub fn firmware_image(&self) -> Option<&str> {
        match (&self.firmware, &self.kernel) {
            (Some(f), _) => Some(f),
            (None, Some(_)) => Some(BIOS_SHIM),
            (None, None) => None,
        }
    }

    /// The `disk` entries, parsed. A configuration from [`parse`] has had
    /// every entry checked; the error (naming the entry) is for one built by hand.
    pub fn disk_specs(&self) -> Result<Vec<DiskSpec>, String> {
        self.disks
            .iter()
            .map(|d| DiskSpec::parse(d).map_err(|e| alloc::format!("disk '{d}': {e}")))
            .collect()
    }
}

impl VmConfig {
    /// The `vif` entries, parsed (generated MACs from the VM's name). A
    /// configuration from [`parse`] has had every entry checked; the error
    /// (naming the entry) is for one built by hand.
    pub fn vif_specs(&self) -> Result<Vec<VifSpec>, String> {
        self.vifs
            .iter()
            .enumerate()
            .map(|(i, v)| {
                VifSpec::parse(v, &self.name, i).map_err(|e| alloc::format!("vif {i} '{v}': {e}"))
            })
            .collect()
    }
}

/// The name of Keel's BIOS shim image (`firmware/`), the default firmware of
/// a VM with `kernel =`.
pub const BIOS_SHIM: &str = "keel-shim";

/// A configuration that parsed, with what was ignored in it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Parsed {
    pub config: VmConfig,
    pub warnings: Vec<Warning>,
}

/// Something in the configuration Keel ignored (an unknown key).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Warning {
    /// 1-based line of the setting.
    pub line: u32,
    pub message: String,
}

impl fmt::Display for Warning {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: warning: {}", self.line, self.message)
    }
}

impl Warning {
    /// Displays as `FILE:LINE: warning: MESSAGE`.
    pub fn in_file<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        InFile(file, Some(self.line), "warning: ", &self.message)
    }
}

/// Why a configuration was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// 1-based line the problem is on; `None` for the file as a whole
    /// (a required key that is missing).
    pub line: Option<u32>,
    pub message: String,
}

impl ConfigError {
    fn at(line: u32, message: String) -> Self {
        Self {
            line: Some(line),
            message,
        }
    }

    /// Displays as `FILE:LINE: MESSAGE` (or `FILE: MESSAGE`).
    pub fn in_file<'a>(&'a self, file: &'a str) -> impl fmt::Display + 'a {
        InFile(file, self.line, "", &self.message)
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "line {l}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

struct InFile<'a>(&'a str, Option<u32>, &'static str, &'a str);

impl fmt::Display for InFile<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.1 {
            Some(l) => write!(f, "{}:{}: {}{}", self.0, l, self.2, self.3),
            None => write!(f, "{}: {}{}", self.0, self.2, self.3),
        }
    }
}

/// Parses a configuration held as bytes (a boot module). The bytes must be
/// UTF-8; trailing NUL bytes (padding) are ignored.
pub fn parse_bytes(bytes: &[u8]) -> Result<Parsed, ConfigError> {
    let end = bytes.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
    let bytes = &bytes[..end];
    match core::str::from_utf8(bytes) {
        Ok(text) => parse(text),
        Err(e) => {
            let good = &bytes[..e.valid_up_to()];
            let line = 1 + good.iter().filter(|&&b| b == b'\n').count();
            Err(ConfigError::at(
                line_u32(line),
                "the file is not UTF-8 text (save it as plain text)".to_string(),
            ))
        }
    }
}

/// `text` with the value of `key` replaced by the list of `items`, each a
/// quoted string; every other byte is kept, comments and line numbers
/// included (the list is written on the line its value started). A key the
/// text does not set is added on a line of its own at the end. For a tool
/// that ships a changed configuration, such as `cargo xtask` moving a disk
/// image to a host disk.
pub fn replace_list(text: &str, key: &str, items: &[String]) -> Result<String, ConfigError> {
    let mut list = String::from("[ ");
    for (n, item) in items.iter().enumerate() {
        if n > 0 {
            list.push_str(", ");
        }
        list.push('\'');
        for c in item.chars() {
            match c {
                '\\' | '\'' => {
                    list.push('\\');
                    list.push(c);
                }
                c if c.is_control() => {
                    return Err(ConfigError {
                        line: None,
                        message: format!(
                            "{key}: '{}' has a control character",
                            item.escape_default()
                        ),
                    })
                }
                c => list.push(c),
            }
        }
        list.push('\'');
    }
    list.push_str(" ]");
    let settings = lex::settings(text)?;
    Ok(match settings.iter().find(|s| s.key == key) {
        Some(s) => format!("{}{list}{}", &text[..s.span.start], &text[s.span.end..]),
        None => {
            let sep = if text.is_empty() || text.ends_with('\n') {
                ""
            } else {
                "\n"
            };
            format!("{text}{sep}{key} = {list}\n")
        }
    })
}

/// Parses and validates a configuration.
pub fn parse(text: &str) -> Result<Parsed, ConfigError> {
    let settings = lex::settings(text)?;
    build(&settings)
}

pub(crate) fn line_u32(line: usize) -> u32 {
    u32::try_from(line).unwrap_or(u32::MAX)
}

/// The keys Keel understands.
pub const KNOWN_KEYS: &[&str] = &[
    "name",
    "memory",
    "vcpus",
    "firmware",
    "kernel",
    "ramdisk",
    "cmdline",
    "modules",
    "disk",
    "vif",
    "keel_testdev",
    "viridian",
    "stdvga",
    "vga",
    "keel_screen_dump",
    "rtc_timeoffset",
    "localtime",
    "xen_platform_pci",
    "cpus",
    "on_poweroff",
    "on_reboot",
    "on_crash",
    "cpuid",
];

fn build(settings: &[Setting]) -> Result<Parsed, ConfigError> {
    let mut warnings = Vec::new();
    let mut seen: Vec<(&str, u32)> = Vec::new();
    let mut name = None;
    let mut config = VmConfig {
        name: String::new(),
        memory_mib: DEFAULT_MEMORY_MIB,
        vcpus: 1,
        firmware: None,
        kernel: None,
        ramdisk: None,
        cmdline: None,
        modules: Vec::new(),
        disks: Vec::new(),
        vifs: Vec::new(),
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
    };
    let mut vga_line: Option<(&str, u32)> = None;

    for s in settings {
        if let Some(&(_, first)) = seen.iter().find(|(k, _)| *k == s.key) {
            return Err(ConfigError::at(
                s.line,
                format!(
                    "{} is already set on line {first}; remove one of the two",
                    s.key
                ),
            ));
        }
        seen.push((&s.key, s.line));
        match s.key.as_str() {
            "name" => name = Some(name_value(s)?),
            "memory" => {
                let mib = number(s, "a number of MiB")?;
                if !(MIN_MEMORY_MIB as u64..=MAX_MEMORY_MIB as u64).contains(&mib) {
                    return Err(s.error(&format!(
                        "memory must be between {MIN_MEMORY_MIB} and {MAX_MEMORY_MIB} MiB (1 TiB)"
                    )));
                }
                config.memory_mib = mib as u32;
            }
            "vcpus" => {
                let n = number(s, "a number of vCPUs")?;
                if n == 0 {
                    return Err(s.error("a VM needs at least 1 vCPU"));
                }
                if n > u64::from(MAX_VCPUS) {
                    return Err(s.error(&format!("at most {MAX_VCPUS} vCPUs per VM")));
                }
                config.vcpus = n as u32;
            }
            "keel_testdev" => {
                config.test_device = match number(s, "0 or 1")? {
                    0 => false,
                    1 => true,
                    _ => return Err(s.error("expected 0 or 1")),
                }
            }
            "viridian" => config.viridian = viridian(s)?,
            "cpuid" => config.cpuid_hidden = cpuid_hidden(s)?,
            "rtc_timeoffset" => config.rtc_timeoffset = rtc_timeoffset(s)?,
            "localtime" => match number(s, "0 or 1")? {
                0 => {}
                1 => {
                    return Err(s.error(
                        "localtime = 1: Keel keeps no time zone (it reads the machine's RTC as UTC); \
                         use rtc_timeoffset = <seconds east of UTC> for a guest that keeps local time",
                    ))
                }
                _ => return Err(s.error("expected 0 or 1")),
            },
            "stdvga" | "vga" => {
                if let Some((other, line)) = vga_line {
                    return Err(s.error(&format!(
                        "{other} on line {line} already chose the display adapter; keep one of the two"
                    )));
                }
                vga_line = Some((s.key.as_str(), s.line));
                config.stdvga = if s.key == "stdvga" {
                    match number(s, "0 or 1")? {
                        0 => false,
                        1 => true,
                        _ => return Err(s.error("expected 0 or 1")),
                    }
                } else {
                    match string(s, "\"stdvga\" or \"none\"")? {
                        "stdvga" => true,
                        "none" => false,
                        other => {
                            return Err(s.error(&format!(
                                "vga = \"{other}\": Keel has \"stdvga\" (QEMU's standard VGA) or \"none\""
                            )))
                        }
                    }
                };
            }
            "keel_screen_dump" => {
                config.screen_dump = match number(s, "0 or 1")? {
                    0 => false,
                    1 => true,
                    _ => return Err(s.error("expected 0 or 1")),
                }
            }
            "xen_platform_pci" => {
                config.xen_platform_pci = match number(s, "0 or 1")? {
                    0 => false,
                    1 => true,
                    _ => return Err(s.error("expected 0 or 1")),
                }
            }
            "cpus" => config.cpus = Some(cpus(s)?),
            "on_poweroff" => config.on_poweroff = on_event(s)?,
            "on_reboot" => config.on_reboot = on_event(s)?,
            "on_crash" => config.on_crash = on_event(s)?,
            "firmware" => config.firmware = Some(image(s)?),
            "kernel" => config.kernel = Some(image(s)?),
            "ramdisk" => config.ramdisk = Some(image(s)?),
            "cmdline" => config.cmdline = Some(string(s, "a string")?.to_string()),
            "modules" => config.modules = module_list(s)?,
            "disk" => config.disks = disk_list(s)?,
            "vif" => config.vifs = vif_list(s)?,
            other => warnings.push(Warning {
                line: s.line,
                message: format!(
                    "unknown key '{other}' ignored (Keel understands: {})",
                    KNOWN_KEYS.join(", ")
                ),
            }),
        }
    }

    if let Some(&(_, line)) = seen.iter().find(|(k, _)| *k == "modules") {
        if config.kernel.is_none() {
            return Err(ConfigError::at(
                line,
                "modules are loaded with a kernel; add kernel = \"...\"".to_string(),
            ));
        }
        let total = config.modules.len() + usize::from(config.ramdisk.is_some());
        if total > MAX_MODULES {
            return Err(ConfigError::at(
                line,
                format!("{total} modules with the ramdisk; a kernel gets at most {MAX_MODULES}"),
            ));
        }
    }
    // Xen's leaves and Hyper-V's both want 0x4000_0000, and a guest takes
    // the first signature it finds: one personality per VM (Hyper-V for
    // Windows, Xen for Linux), as the design checklist says.
    if config.xen_platform_pci && config.viridian.enabled() {
        let line = seen
            .iter()
            .find(|(k, _)| *k == "xen_platform_pci")
            .map(|&(_, l)| l);
        return Err(ConfigError {
            line,
            message: "xen_platform_pci = 1 and viridian both give the guest a hypervisor personality; Keel offers one per VM: keep xen_platform_pci for Linux PV drivers or viridian for Windows".to_string(),
        });
    }
    config.name = name.ok_or_else(|| ConfigError {
        line: None,
        message: "the VM has no name; add a line such as name = \"myvm\"".to_string(),
    })?;
    Ok(Parsed { config, warnings })
}

fn string<'a>(s: &'a Setting, what: &str) -> Result<&'a str, ConfigError> {
    match &s.value {
        Value::Str(v) => Ok(v),
        _ => Err(s.error(&format!("expected {what} in quotes"))),
    }
}

fn number(s: &Setting, what: &str) -> Result<u64, ConfigError> {
    match &s.value {
        Value::Num(n) => Ok(*n),
        _ => Err(s.error(&format!("expected {what}"))),
    }
}

/// `rtc_timeoffset = 3600` or, for a negative offset, `rtc_timeoffset =
/// "-3600"` (xl reads the key as a long, from a number or a string).
fn rtc_timeoffset(s: &Setting) -> Result<i64, ConfigError> {
    let what = "a number of seconds (in quotes when negative: \"-3600\")";
    let v = match &s.value {
        Value::Num(n) => i64::try_from(*n).ok(),
        Value::Str(t) => t.trim().parse::<i64>().ok(),
        _ => return Err(s.error(&format!("expected {what}"))),
    };
    match v {
        Some(v) if (-MAX_RTC_TIMEOFFSET..=MAX_RTC_TIMEOFFSET).contains(&v) => Ok(v),
        Some(_) | None => Err(s.error(&format!(
            "expected {what}, at most {MAX_RTC_TIMEOFFSET} either way (100 years)"
        ))),
    }
}

fn name_value(s: &Setting) -> Result<String, ConfigError> {
    let v = string(s, "the VM's name")?;
    if v.is_empty() {
        return Err(s.error("the name must not be empty"));
    }
    if v.len() > MAX_NAME_LEN {
        return Err(s.error(&format!(
            "the name is {} bytes long; at most {MAX_NAME_LEN} are allowed",
            v.len()
        )));
    }
    if let Some(c) = v.chars().find(|c| !(c.is_ascii_graphic() || *c == ' ')) {
        return Err(s.error(&format!(
            "the name contains {c:?}; use printable ASCII characters only"
        )));
    }
    if v.starts_with(' ') || v.ends_with(' ') {
        return Err(s.error("the name must not start or end with a space"));
    }
    Ok(v.to_string())
}

fn cpus(s: &Setting) -> Result<u64, ConfigError> {
    let text = match &s.value {
        Value::Str(v) => v.clone(),
        Value::List(items) => {
            let mut parts = Vec::new();
            for item in items {
                match item {
                    Value::Str(v) => parts.push(v.clone()),
                    Value::Num(n) => parts.push(n.to_string()),
                    Value::List(_) => return Err(s.error("lists cannot contain lists")),
                }
            }
            parts.join(",")
        }
        Value::Num(n) => n.to_string(),
    };
    let mask = parse_cpu_list(&text).map_err(|e| s.error(&format!("cpus = \"{text}\": {e}")))?;
    if mask == 0 {
        return Err(s.error("cpus names no CPU"));
    }
    Ok(mask)
}

fn on_event(s: &Setting) -> Result<OnEvent, ConfigError> {
    match string(s, "\"destroy\", \"restart\" or \"preserve\"")? {
        "destroy" => Ok(OnEvent::Destroy),
        "restart" => Ok(OnEvent::Restart),
        "preserve" => Ok(OnEvent::Preserve),
        other => Err(s.error(&format!(
            "{} = \"{other}\": Keel knows destroy, restart and preserve",
            s.key
        ))),
    }
}

fn image(s: &Setting) -> Result<String, ConfigError> {
    let v = string(s, "the name of an image file")?;
    if v.is_empty() {
        return Err(s.error("the image name must not be empty"));
    }
    if v.chars().any(|c| c.is_control()) {
        return Err(s.error("the image name contains a control character"));
    }
    Ok(v.to_string())
}

/// Most multiboot modules (`ramdisk` and `modules` together): what the BIOS
/// shim passes (firmware/README.md).
pub const MAX_MODULES: usize = 16;

/// The image a `modules` entry names: its first word.
pub fn module_image(entry: &str) -> &str {
    entry.split(' ').next().unwrap_or(entry)
}

/// The `modules` list: each entry an image name (no control characters),
/// optionally followed by a space and the module's arguments.
fn module_list(s: &Setting) -> Result<Vec<String>, ConfigError> {
    let mods = string_list(s)?;
    for (i, m) in mods.iter().enumerate() {
        if module_image(m).is_empty() {
            return Err(s.error(&format!(
                "module {i} '{m}': starts with no image name (a space first?)"
            )));
        }
        if m.chars().any(|c| c.is_control()) {
            return Err(s.error(&format!("module {i}: contains a control character")));
        }
    }
    Ok(mods)
}

/// The `disk` list: every entry a [`DiskSpec`] Keel can attach, each IDE
/// slot and virtio disk used once, so that a typo is reported with its file and line before
/// anything is built or booted.
fn disk_list(s: &Setting) -> Result<Vec<String>, ConfigError> {
    let disks = string_list(s)?;
    let mut used: Vec<(DiskSlot, &str)> = Vec::new();
    for d in &disks {
        let spec =
            DiskSpec::parse(d).map_err(|e| ConfigError::at(s.line, format!("disk '{d}': {e}")))?;
        if let Some((_, other)) = used.iter().find(|(slot, _)| slot.same_device(spec.slot)) {
            return Err(ConfigError::at(
                s.line,
                format!(
                    "disk '{d}': {} is already taken by disk '{other}'; give each disk its own \
                     virtual device",
                    spec.slot.vdev()
                ),
            ));
        }
        used.push((spec.slot, d));
    }
    Ok(disks)
}

/// The `vif` list: every entry a [`VifSpec`], at most [`MAX_VIFS`], no
/// station address twice, so that a typo is reported with its file and line.
fn vif_list(s: &Setting) -> Result<Vec<String>, ConfigError> {
    let vifs = string_list(s)?;
    if vifs.len() > MAX_VIFS {
        return Err(s.error(&format!(
            "{} network cards; a VM has at most {MAX_VIFS}",
            vifs.len()
        )));
    }
    let mut macs: Vec<[u8; 6]> = Vec::new();
    for (i, v) in vifs.iter().enumerate() {
        // The name is not known yet (it may come later in the file): the
        // generated MACs differ per index whatever the name is.
        let spec = VifSpec::parse(v, "", i)
            .map_err(|e| ConfigError::at(s.line, format!("vif {i} '{v}': {e}")))?;
        if macs.contains(&spec.mac) {
            return Err(ConfigError::at(
                s.line,
                format!("vif {i} '{v}': another vif has the same mac; give each its own"),
            ));
        }
        macs.push(spec.mac);
    }
    Ok(vifs)
}

/// `viridian = 0 | 1` or a list of group names (xl.cfg(5), "viridian"):
/// `defaults`, `base`, `freq`, `time_ref_count`, `reference_tsc`, and
/// `!name` to take one away again. A group xl knows but Keel does not
/// implement is refused by name; the other groups need `base`.
fn viridian(s: &Setting) -> Result<Viridian, ConfigError> {
    if let Value::Num(n) = s.value {
        return match n {
            0 => Ok(Viridian::default()),
            1 => Ok(Viridian::DEFAULTS),
            _ => Err(s.error("expected 0, 1 or a list of groups such as [ 'base', 'freq' ]")),
        };
    }
    let mut v = Viridian::default();
    for group in string_list(s)? {
        let (on, name) = match group.strip_prefix('!') {
            Some(name) => (false, name),
            None => (true, group.as_str()),
        };
        match name {
            "defaults" if on => v = Viridian::DEFAULTS,
            "base" => v.base = on,
            "freq" => v.freq = on,
            "time_ref_count" => v.time_ref_count = on,
            "reference_tsc" => v.reference_tsc = on,
            n if Viridian::UNIMPLEMENTED.contains(&n) => {
                return Err(s.error(&format!(
                    "viridian group '{n}' is not implemented by Keel (it has: defaults, base, freq, time_ref_count, reference_tsc)"
                )))
            }
            n => {
                return Err(s.error(&format!(
                    "unknown viridian group '{n}' (Keel has: defaults, base, freq, time_ref_count, reference_tsc)"
                )))
            }
        }
    }
    if !v.base && (v.freq || v.time_ref_count || v.reference_tsc) {
        return Err(
            s.error("the viridian groups freq, time_ref_count and reference_tsc need 'base'")
        );
    }
    Ok(v)
}

fn string_list(s: &Setting) -> Result<Vec<String>, ConfigError> {
    let items = match &s.value {
        Value::List(items) => items,
        _ => return Err(s.error(&format!("expected a list, such as {} = [ '...' ]", s.key))),
    };
    items
        .iter()
        .map(|v| match v {
            Value::Str(v) => Ok(v.clone()),
            _ => Err(s.error("every element of this list must be a string in quotes")),
        })
        .collect()
}

#[cfg(test)]
mod tests;
