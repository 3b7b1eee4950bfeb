//! A VM configuration to a bootable GRUB ISO: Keel, the configuration and
//! every image it names, as docs/ARCHITECTURE.md ("Boot modules") lays out.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use vm_config::{DiskBackend, DiskSpec, VmConfig, Warning};

use crate::workspace::file_stem_for;

/// Guests built by `crates/test-guests`, usable by name as `firmware = "NAME"`.
pub const TEST_GUESTS: &[&str] = &[
    "selftest",
    "mmio",
    "irq",
    "halt",
    "triple-fault",
    "mmio-idt",
    "hostile-cpu",
    "msr",
    "hostile-io",
    "hostile-reset",
    "hostile-reset-loop",
    "hostile-spin",
    "hostile-events",
    "hostile-dma",
    "hostile-net",
    "hostile-debug",
    "hostile-smp",
    "pci-testdev",
    "exitbench",
    "vbe",
    "xen-hypercall",
];

/// Disk images built by `crates/test-disks`, usable by name in `disk` entries.
pub const TEST_DISKS: &[&str] = &["bootdisk", "dmadisk", crate::screen_disk::IMAGE];

/// Largest firmware image Keel maps, in bytes (docs/ARCHITECTURE.md).
pub const FIRMWARE_MAX: u64 = 256 * 1024;

/// A VM configuration file, parsed.
#[derive(Debug, Clone)]
pub struct VmFile {
    pub path: PathBuf,
    pub config: VmConfig,
    pub warnings: Vec<Warning>,
}

impl VmFile {
    /// Reads and parses `path`; errors read `PATH:LINE: MESSAGE`.
    pub fn load(path: &Path) -> Result<Self, String> {
        let bytes =
            fs::read(path).map_err(|e| format!("cannot read VM config {}: {e}", path.display()))?;
        let shown = path.display().to_string();
        let parsed = vm_config::parse_bytes(&bytes).map_err(|e| e.in_file(&shown).to_string())?;
        Ok(Self {
            path: path.to_path_buf(),
            config: parsed.config,
            warnings: parsed.warnings,
        })
    }

    /// The warnings as `PATH:LINE: warning: MESSAGE` lines.
    pub fn warning_lines(&self) -> Vec<String> {
        let shown = self.path.display().to_string();
        self.warnings
            .iter()
            .map(|w| w.in_file(&shown).to_string())
            .collect()
    }

    fn dir(&self) -> &Path {
        match self.path.parent() {
            Some(p) if !p.as_os_str().is_empty() => p,
            _ => Path::new("."),
        }
    }
}

/// Firmware from Debian packages, usable by name as `firmware = "NAME"`
/// (and the VGA BIOS a `stdvga` VM's firmware runs, named in its image
/// list): the name, the file the package installs, and the package's tools entry.
pub const PACKAGED_FIRMWARE: &[(&str, &str, &[crate::deps::Tool])] = &[
    (
        "seabios",
        "/usr/share/seabios/bios.bin",
        crate::deps::SEABIOS,
    ),
    (
        vm_config::VGABIOS_STDVGA_ROM,
        "/usr/share/seabios/vgabios-stdvga.bin",
        crate::deps::SEABIOS,
    ),
];

/// The file an image value names: a file relative to the configuration's
/// directory, else packaged firmware (installed on demand), else a built-in
/// test guest in `guest_dir`.
pub fn resolve_image(
    vm: &VmFile,
    key: &str,
    value: &str,
    guest_dir: &Path,
) -> Result<PathBuf, String> {
    let local = vm.dir().join(value);
    if local.is_file() {
        return Ok(local);
    }
    if let Some(&(_, file, tools)) = PACKAGED_FIRMWARE.iter().find(|(name, _, _)| *name == value) {
        crate::deps::ensure(tools)?;
        return Ok(PathBuf::from(file));
    }
    if let Some(found) = crate::guest_assets::resolve(value, guest_dir) {
        return found.map_err(|e| format!("{}: {key} = \"{value}\": {e}", vm.path.display()));
    }
    if TEST_GUESTS.contains(&value) || TEST_DISKS.contains(&value) {
        let built = guest_dir.join(value);
        if built.is_file() {
            return Ok(built);
        }
        return Err(format!(
            "{}: {key} = \"{value}\" names the test guest {value}, but {} does not exist; \
             build it with cargo xtask build",
            vm.path.display(),
            built.display()
        ));
    }
    Err(format!(
        "{}: {key} = \"{value}\": there is no file {} and it is not a built-in test guest \
         (choose one of: {}, {}, {}, or give a path relative to the config's directory)",
        vm.path.display(),
        local.display(),
        PACKAGED_FIRMWARE
            .iter()
            .map(|f| f.0)
            .collect::<Vec<_>>()
            .join(", "),
        TEST_GUESTS.join(", "),
        crate::guest_assets::NAMES.join(", ")
    ))
}

/// Refuses, before anything is built, an image that is neither a file next to
/// the configuration nor a test guest name.
pub fn check_images(vm: &VmFile) -> Result<(), String> {
    for (key, value) in vm.config.images() {
        if crate::guest_assets::BUILT.contains(&value) {
            continue;
        }
        if !TEST_GUESTS.contains(&value) && !TEST_DISKS.contains(&value) {
            resolve_image(vm, key, value, Path::new("/nonexistent"))?;
        }
    }
    Ok(())
}

/// Sector size of the raw images a disk entry names, in bytes.
pub const SECTOR_BYTES: u64 = 512;

/// A writable image file in a VM config's `disk` list that xtask attaches
/// to the machine as a virtio-blk disk, so that the guest's writes land in
/// the file (docs/ARCHITECTURE.md, "Disk files").
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileDisk {
    /// The entry as written in the config.
    pub entry: String,
    /// What Keel reads in its place: `phy:virtioN,VDEV,w`.
    pub shipped: String,
    /// The image file.
    pub file: PathBuf,
    /// N of `virtioN`: the machine's N-th virtio-blk disk.
    pub index: u32,
}

/// How a VM config's disks reach the machine's virtio-blk disks: the
/// config's own `phy:virtioN` entries name `virtio0` to `virtio{first - 1}`
/// (given with `--host-disk`), then come the [`FileDisk`]s, in the order of
/// their entries.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HostDiskPlan {
    /// One past the highest `phy:virtioN` the config names itself (0 if none).
    pub first: u32,
    pub files: Vec<FileDisk>,
}

impl HostDiskPlan {
    /// The machine's virtio-blk disks in order: the `--host-disk` files for
    /// the config's own `phy:` entries, then the disk files. Refuses a count
    /// of `--host-disk` files that would move a disk file onto the index a
    /// `phy:` entry names.
    pub fn attach(&self, given: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
        if !self.files.is_empty() && given.len() != self.first as usize {
            let names = match self.first {
                0 => "no phy:virtioN disk".to_string(),
                1 => "phy:virtio0".to_string(),
                n => format!("phy:virtio0 to phy:virtio{}", n - 1),
            };
            return Err(format!(
                "the VM config names {names}, so its disk file {} goes on virtio{}; give \
                 exactly {} --host-disk (got {})",
                self.files[0].file.display(),
                self.first,
                self.first,
                given.len()
            ));
        }
        let mut out = given.to_vec();
        out.extend(self.files.iter().map(|f| f.file.clone()));
        Ok(out)
    }
}

/// Which `disk` entries of `vm` are writable image files (a file next to
/// the config, not a built-in image name, not `volatile`, not read-only),
/// each checked: it exists, is a whole number of 512-byte sectors, and the
/// host lets it be written. Read-only images and built-in images stay boot
/// modules in Keel's RAM.
pub fn host_disk_plan(vm: &VmFile) -> Result<HostDiskPlan, String> {
    let specs = vm
        .config
        .disk_specs()
        .map_err(|e| format!("{}: {e}", vm.path.display()))?;
    let first = specs
        .iter()
        .filter_map(|s| match s.backend {
            DiskBackend::HostVirtio(n) => Some(n + 1),
            DiskBackend::Module => None,
        })
        .max()
        .unwrap_or(0);
    let mut plan = HostDiskPlan {
        first,
        files: Vec::new(),
    };
    for (entry, spec) in vm.config.disks.iter().zip(&specs) {
        if spec.backend != DiskBackend::Module || !spec.writable || spec.volatile {
            continue;
        }
        let file = vm.dir().join(&spec.target);
        let built_in = crate::guest_assets::NAMES.contains(&spec.target.as_str())
            || TEST_DISKS.contains(&spec.target.as_str());
        if built_in && !file.exists() {
            continue;
        }
        check_disk_file(vm, entry, &file)?;
        if let Some(other) = vm.config.disks.iter().zip(&specs).find(|(e, s)| {
            *e != entry && s.backend == DiskBackend::Module && s.target == spec.target
        }) {
            return Err(format!(
                "{}: disk '{entry}' and disk '{}' name the same file; a writable disk file \
                 backs one drive",
                vm.path.display(),
                other.0
            ));
        }
        let index = first + plan.files.len() as u32;
        plan.files.push(FileDisk {
            entry: entry.clone(),
            shipped: spec.on_host_disk(index),
            file,
            index,
        });
    }
    Ok(plan)
}

/// A writable disk file must exist, hold whole sectors and be writable.
fn check_disk_file(vm: &VmFile, entry: &str, file: &Path) -> Result<(), String> {
    let at = || format!("{}: disk '{entry}'", vm.path.display());
    let meta = fs::metadata(file).map_err(|e| {
        format!(
            "{}: cannot use the disk file {} ({e}); give an existing raw image, or a built-in \
             image name ({})",
            at(),
            file.display(),
            crate::guest_assets::NAMES
                .iter()
                .chain(TEST_DISKS)
                .copied()
                .collect::<Vec<_>>()
                .join(", ")
        )
    })?;
    if !meta.is_file() {
        return Err(format!("{}: {} is not a file", at(), file.display()));
    }
    let len = meta.len();
    if len == 0 || len % SECTOR_BYTES != 0 {
        return Err(format!(
            "{}: {} is {len} bytes, not a whole number of {SECTOR_BYTES}-byte sectors (at least \
             one); a raw disk image is, e.g. truncate -s 64M {}",
            at(),
            file.display(),
            file.display()
        ));
    }
    // The mode bits too: root may open a file the owner marked read-only.
    let writable =
        !meta.permissions().readonly() && fs::OpenOptions::new().write(true).open(file).is_ok();
    if !writable {
        return Err(format!(
            "{}: {} is read-only on the host, but the entry asks for rw; make the file \
             writable, give access r, or add '{}' to keep the guest's writes in RAM only",
            at(),
            file.display(),
            vm_config::VOLATILE_FLAG
        ));
    }
    Ok(())
}

/// The config text Keel gets: `vm`'s file, with each disk file's entry
/// replaced by its `phy:virtioN` entry (every other byte kept, so line
/// numbers in Keel's messages match the user's file).
pub fn shipped_config(vm: &VmFile, plan: &HostDiskPlan) -> Result<Vec<u8>, String> {
    let bytes =
        fs::read(&vm.path).map_err(|e| format!("cannot read {}: {e}", vm.path.display()))?;
    if plan.files.is_empty() {
        return Ok(bytes);
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| format!("{}: the file is not UTF-8 text", vm.path.display()))?;
    let items: Vec<String> = vm
        .config
        .disks
        .iter()
        .map(|d| {
            plan.files
                .iter()
                .find(|f| &f.entry == d)
                .map_or_else(|| d.clone(), |f| f.shipped.clone())
        })
        .collect();
    vm_config::replace_list(&text, "disk", &items)
        .map(String::into_bytes)
        .map_err(|e| e.in_file(&vm.path.display().to_string()).to_string())
}

/// `s` as one word of a GRUB command line: bare when it only has safe
/// characters, else in single quotes (which GRUB takes literally).
fn grub_word(s: &str) -> Result<String, String> {
    let safe = |c: char| c.is_ascii_alphanumeric() || "._-/+,:=@".contains(c);
    if !s.is_empty() && s.chars().all(safe) {
        Ok(s.to_string())
    } else if s.contains('\'') || s.chars().any(|c| c.is_control()) {
        Err(format!(
            "'{}' cannot be written on a GRUB command line (quotes or control characters)",
            s.escape_default()
        ))
    } else {
        Ok(format!("'{s}'"))
    }
}

/// The grub.cfg that boots Keel at once with the configuration and the
/// `(file in the ISO, module command line)` images as multiboot2 modules.
pub fn grub_cfg(vm_name: &str, images: &[(String, String)]) -> Result<String, String> {
    grub_cfg_for(vm_name, &["/boot/config".to_string()], images)
}

/// The grub.cfg of a boot with several VMs: each of `configs` (files in
/// the ISO) is a module named `config`, in order, then the images.
pub fn grub_cfg_for(
    vm_name: &str,
    configs: &[String],
    images: &[(String, String)],
) -> Result<String, String> {
    let mut cfg = String::from(
        "# Generated by cargo xtask build. Boots Keel at once; GRUB talks on COM1 as well\n\
         # as the screen, so a serial console sees it and the menu never waits.\n\
         set timeout=0\n\
         set default=0\n\
         serial --unit=0 --speed=115200\n\
         terminal_input serial console\n\
         terminal_output serial console\n",
    );
    let title: String = vm_name.chars().filter(|&c| c != '\'').collect();
    cfg.push_str(&format!("menuentry 'Keel: {title}' {{\n"));
    cfg.push_str("    multiboot2 /boot/keel\n");
    for c in configs {
        cfg.push_str(&format!("    module2 {} config\n", grub_word(c)?));
    }
    // --nounzip: images reach Keel as the files are (GRUB would otherwise
    // decompress a gzip file, and a gzip kernel would never reach the shim's
    // own decompressor).
    for (file, cmdline) in images {
        cfg.push_str(&format!(
            "    module2 --nounzip {} {}\n",
            grub_word(file)?,
            grub_word(cmdline)?
        ));
    }
    cfg.push_str("}\n");
    Ok(cfg)
}

/// File names under `/boot` for the images: their own names made safe,
/// never `keel`, `config` or `grub`, never twice the same.
fn iso_names(images: &[(&str, PathBuf)]) -> Vec<String> {
    let mut taken: Vec<String> = vec!["keel".into(), "config".into(), "grub".into()];
    taken.extend((1..=64).map(|n| format!("config-{n}")));
    let mut out = Vec::new();
    for (_, file) in images {
        let base = file
            .file_name()
            .map(|n| file_stem_for(&n.to_string_lossy()))
            .unwrap_or_else(|| "image".into());
        let mut name = base.clone();
        let mut n = 2;
        while taken.contains(&name) {
            name = format!("{base}-{n}");
            n += 1;
        }
        taken.push(name.clone());
        out.push(name);
    }
    out
}

/// The file in an ISO's staging directory (`<stem>.d`, next to the ISO)
/// that lists the boot modules, one per line: the file under the staging
/// directory, a tab, the module's name; configurations first.
const MODULE_LIST: &str = "modules.txt";

fn module_list(modules: &[(String, String)]) -> Result<String, String> {
    let mut out = String::new();
    for (file, name) in modules {
        if name.contains(['\t', '\n']) || file.contains(['\t', '\n']) {
            return Err(format!(
                "module '{name}' ({file}): a tab or a line break in it"
            ));
        }
        out.push_str(&format!("{}\t{name}\n", file.trim_start_matches('/')));
    }
    Ok(out)
}

/// Keel and its boot modules as QEMU's `-kernel` loads a multiboot kernel
/// (Multiboot 0.6.96): the files staged for an ISO, loaded into memory by
/// QEMU itself instead of read by GRUB from the CD through the firmware.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Multiboot {
    pub kernel: PathBuf,
    /// Each module's file and name (the name Keel knows it by).
    pub modules: Vec<(PathBuf, String)>,
}

impl Multiboot {
    /// The staged files of the ISO at `iso` (made by [`build_iso_of`]).
    pub fn of_iso(iso: &Path) -> Result<Self, String> {
        let staging = iso.with_extension("d");
        let list_file = staging.join(MODULE_LIST);
        let text = fs::read_to_string(&list_file).map_err(|e| {
            format!(
                "cannot read {}: {e}; build the ISO again with cargo xtask build",
                list_file.display()
            )
        })?;
        let mut modules = Vec::new();
        for line in text.lines() {
            let (file, name) = line
                .split_once('\t')
                .ok_or_else(|| format!("{}: a line without a tab", list_file.display()))?;
            modules.push((staging.join(file), name.to_string()));
        }
        let mb = Multiboot {
            kernel: staging.join("boot").join("keel"),
            modules,
        };
        // QEMU ends a module's file name at its first space.
        if let Some(p) = std::iter::once(&mb.kernel)
            .chain(mb.modules.iter().map(|(f, _)| f))
            .find(|p| p.to_string_lossy().contains(' '))
        {
            return Err(format!(
                "{}: QEMU's -initrd cannot take a file whose path has a space",
                p.display()
            ));
        }
        Ok(mb)
    }

    /// `-kernel KEEL -initrd "FILE NAME,..."`: QEMU passes each module's
    /// "FILE NAME" as its command line, and Keel names it by NAME; commas
    /// are doubled, as in every QEMU option value.
    pub fn qemu_args(&self) -> Vec<std::ffi::OsString> {
        let initrd = self
            .modules
            .iter()
            .map(|(f, name)| format!("{} {name}", f.to_string_lossy()).replace(',', ",,"))
            .collect::<Vec<_>>()
            .join(",");
        vec![
            "-kernel".into(),
            self.kernel.clone().into_os_string(),
            "-initrd".into(),
            initrd.into(),
        ]
    }
}

/// Checks that the ELF file `elf` (Keel as linked) is what its multiboot
/// header's address fields say it is: every loaded segment's bytes lie in
/// the file at the same distance from their address (`crates/keel/linker.ld`),
/// so a loader that copies the file from the header on, as QEMU's `-kernel`
/// does, puts each byte where the ELF headers would.
pub fn check_multiboot_layout(elf: &[u8]) -> Result<(), String> {
    let u16_at = |at: usize| {
        elf.get(at..at + 2)
            .map(|b| u16::from_le_bytes([b[0], b[1]]))
    };
    let u64_at = |at: usize| {
        elf.get(at..at + 8)
            .map(|b| u64::from_le_bytes(b.try_into().expect("eight bytes")))
    };
    if elf.get(0..5) != Some(&b"\x7fELF\x02"[..]) {
        return Err("not a 64-bit ELF file".into());
    }
    let phoff = u64_at(0x20).ok_or("no program header offset")? as usize;
    let phentsize = usize::from(u16_at(0x36).ok_or("no program header size")?);
    let phnum = usize::from(u16_at(0x38).ok_or("no program header count")?);
    let mut distance = None;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let kind = elf
            .get(at..at + 4)
            .ok_or("a program header past the file's end")?;
        let (offset, vaddr, filesz) = (
            u64_at(at + 8).ok_or("a short program header")?,
            u64_at(at + 16).ok_or("a short program header")?,
            u64_at(at + 32).ok_or("a short program header")?,
        );
        // PT_LOAD (1) with bytes in the file; the BSS has none.
        if kind != [1, 0, 0, 0] || filesz == 0 {
            continue;
        }
        let d = vaddr.wrapping_sub(offset);
        if *distance.get_or_insert(d) != d {
            return Err(format!(
                "the segment at {vaddr:#x} lies at file offset {offset:#x}, out of step with \
                 the segments before it: a multiboot loader would put its bytes elsewhere \
                 (crates/keel/linker.ld)"
            ));
        }
    }
    distance.ok_or("no loaded segment")?;
    // Multiboot 0.6.96, 3.1.1: the header lies 32-bit aligned within the
    // file's first 8192 bytes.
    let magic = 0x1bad_b002u32.to_le_bytes();
    let head = &elf[..elf.len().min(8192)];
    if !head.chunks_exact(4).any(|w| w == magic) {
        return Err("no multiboot header in the first 8 KiB (crates/keel/src/arch/boot.rs)".into());
    }
    Ok(())
}

/// What [`build_iso`] made.
#[derive(Debug, Clone)]
pub struct Iso {
    pub path: PathBuf,
    /// The disk files the machine must carry as virtio-blk disks.
    pub host_disks: HostDiskPlan,
    /// Things worth telling the user (odd image sizes).
    pub notes: Vec<String>,
}

/// Makes `artifacts_dir/<vm name>.iso` for `vm`, with `keel` as the kernel and
/// test guests taken from `guest_dir`.
pub fn build_iso(
    vm: &VmFile,
    keel: &Path,
    guest_dir: &Path,
    artifacts_dir: &Path,
) -> Result<Iso, String> {
    build_iso_of(std::slice::from_ref(vm), keel, guest_dir, artifacts_dir)
}

/// The name of the ISO (and its log) that boots `vms` together: their
/// names joined with `+`.
pub fn boot_name(vms: &[VmFile]) -> String {
    vms.iter()
        .map(|v| v.config.name.as_str())
        .collect::<Vec<_>>()
        .join("+")
}

/// Makes one ISO that boots every VM of `vms` at once (one `config`
/// module each, in order; their images once each), named [`boot_name`].
/// Writable disk files (attached as the machine's virtio-blk disks) are
/// for a boot with one VM only.
pub fn build_iso_of(
    vms: &[VmFile],
    keel: &Path,
    guest_dir: &Path,
    artifacts_dir: &Path,
) -> Result<Iso, String> {
    if !keel.is_file() {
        return Err(format!(
            "{} does not exist; build Keel with cargo xtask build",
            keel.display()
        ));
    }
    let name = boot_name(vms);
    let mut plans = Vec::new();
    for vm in vms {
        let plan = host_disk_plan(vm)?;
        if vms.len() > 1 {
            if let Some(f) = plan.files.first() {
                return Err(format!(
                    "{}: disk '{}' is a writable disk file, which xtask attaches as the machine's \
                     virtio-blk disk; that works for a boot with one VM only (add '{}' to run it \
                     from Keel's RAM)",
                    vm.path.display(),
                    f.entry,
                    vm_config::VOLATILE_FLAG
                ));
            }
        }
        plans.push(plan);
    }
    let mut images: Vec<(&str, PathBuf)> = Vec::new();
    let mut notes = Vec::new();
    for (vm, plan) in vms.iter().zip(&plans) {
        for f in &plan.files {
            notes.push(format!(
                "disk '{}': {} goes to the machine as virtio-blk disk virtio{} ('{}'); the \
                 guest's writes stay in the file",
                f.entry,
                f.file.display(),
                f.index,
                f.shipped
            ));
        }
        for (key, value) in vm.config.images() {
            let moved = |f: &FileDisk| DiskSpec::parse(&f.entry).is_ok_and(|s| s.target == value);
            if key == "disk" && plan.files.iter().any(moved) {
                continue;
            }
            let file = resolve_image(vm, key, value, guest_dir)?;
            // A disk entry takes its module for good (Keel's RAM disk is the
            // module's memory), so each entry ships its own copy, in the
            // order of the entries; other images are shared.
            let shared = key != "disk";
            if let Some((_, other)) = images.iter().find(|(v, _)| shared && *v == value) {
                if *other != file {
                    return Err(format!(
                        "two VMs name image '{value}' for different files ({} and {}); one boot \
                         carries one image of each name",
                        other.display(),
                        file.display()
                    ));
                }
                continue;
            }
            if key == "firmware" {
                let len = fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
                if len == 0 || len % 4096 != 0 || len > FIRMWARE_MAX {
                    notes.push(format!(
                        "warning: firmware {} is {len} bytes; Keel expects a multiple of 4 KiB, \
                         at most 256 KiB (docs/ARCHITECTURE.md)",
                        file.display()
                    ));
                }
            }
            images.push((value, file));
        }
    }
    let names = iso_names(&images);
    let modules: Vec<(String, String)> = names
        .iter()
        .zip(&images)
        .map(|(n, (value, _))| (format!("/boot/{n}"), value.to_string()))
        .collect();
    let configs: Vec<String> = if vms.len() == 1 {
        vec!["/boot/config".to_string()]
    } else {
        (1..=vms.len())
            .map(|n| format!("/boot/config-{n}"))
            .collect()
    };
    let cfg = grub_cfg_for(&name, &configs, &modules)?;

    let stem = file_stem_for(&name);
    let staging = artifacts_dir.join(format!("{stem}.d"));
    let io = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(|e| io("cannot clear", &staging, e))?;
    }
    let boot = staging.join("boot");
    fs::create_dir_all(boot.join("grub")).map_err(|e| io("cannot create", &boot, e))?;
    let copy = |from: &Path, to: &str| {
        fs::copy(from, boot.join(to))
            .map(drop)
            .map_err(|e| io("cannot copy", from, e))
    };
    copy(keel, "keel")?;
    for ((vm, plan), config) in vms.iter().zip(&plans).zip(&configs) {
        let file = staging.join(config.trim_start_matches('/'));
        fs::write(&file, shipped_config(vm, plan)?).map_err(|e| io("cannot write", &file, e))?;
    }
    for (n, (_, file)) in names.iter().zip(&images) {
        copy(file, n)?;
    }
    fs::write(boot.join("grub").join("grub.cfg"), cfg).map_err(|e| io("cannot write", &boot, e))?;
    let list: Vec<(String, String)> = configs
        .iter()
        .map(|c| (c.clone(), "config".to_string()))
        .chain(modules.iter().cloned())
        .collect();
    let list_file = staging.join(MODULE_LIST);
    fs::write(&list_file, module_list(&list)?).map_err(|e| io("cannot write", &list_file, e))?;

    let iso = crate::workspace::iso_path(artifacts_dir, &name);
    let out = Command::new("grub-mkrescue")
        .arg("-o")
        .arg(&iso)
        .arg(&staging)
        .output()
        .map_err(|e| format!("cannot run grub-mkrescue: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "grub-mkrescue failed ({}) making {}:\n{}",
            out.status,
            iso.display(),
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(Iso {
        path: iso,
        host_disks: plans.swap_remove(0),
        notes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm(path: &str, text: &str) -> VmFile {
        let p = vm_config::parse(text).unwrap();
        VmFile {
            path: PathBuf::from(path),
            config: p.config,
            warnings: p.warnings,
        }
    }

    /// A 64-bit ELF header with the given (offset, vaddr, filesz) PT_LOAD
    /// segments.
    fn elf_with(segments: &[(u64, u64, u64)]) -> Vec<u8> {
        let mut e = vec![0u8; 0x40 + 0x38 * segments.len()];
        e[..5].copy_from_slice(b"\x7fELF\x02");
        e[0x20..0x28].copy_from_slice(&0x40u64.to_le_bytes());
        e[0x36..0x38].copy_from_slice(&0x38u16.to_le_bytes());
        e[0x38..0x3a].copy_from_slice(&(segments.len() as u16).to_le_bytes());
        for (i, &(offset, vaddr, filesz)) in segments.iter().enumerate() {
            let at = 0x40 + 0x38 * i;
            e[at] = 1;
            e[at + 8..at + 16].copy_from_slice(&offset.to_le_bytes());
            e[at + 16..at + 24].copy_from_slice(&vaddr.to_le_bytes());
            e[at + 32..at + 40].copy_from_slice(&filesz.to_le_bytes());
        }
        e
    }

    #[test]
    fn multiboot_layout_wants_segments_in_step() {
        let good = elf_with(&[
            (0x1000, 0x20_0000, 0x13_1345),
            (0x13_3000, 0x33_2000, 0x2_d660),
            (0x0, 0x36_2000, 0),
        ]);
        let e = check_multiboot_layout(&good).unwrap_err();
        assert!(e.contains("no multiboot header"), "{e}");
        let mut good = good;
        good.resize(0x1020, 0);
        good[0x1000..0x1004].copy_from_slice(&0x1bad_b002u32.to_le_bytes());
        assert_eq!(check_multiboot_layout(&good), Ok(()));
        let bad = elf_with(&[(0x1000, 0x20_0000, 0x100), (0x2000, 0x40_0000, 0x100)]);
        let e = check_multiboot_layout(&bad).unwrap_err();
        assert!(e.contains("0x400000") && e.contains("linker.ld"), "{e}");
        assert!(check_multiboot_layout(b"\x7fELF\x01").is_err());
        assert!(check_multiboot_layout(&elf_with(&[])).is_err());
    }

    #[test]
    fn multiboot_modules_from_the_staged_list() {
        let dir = std::env::temp_dir().join(format!("keel-mb-{}", std::process::id()));
        let staging = dir.join("vm.d");
        fs::create_dir_all(&staging).unwrap();
        let list = module_list(&[
            ("/boot/config".into(), "config".into()),
            ("/boot/disk".into(), "disk,1.img".into()),
        ])
        .unwrap();
        assert_eq!(list, "boot/config\tconfig\nboot/disk\tdisk,1.img\n");
        fs::write(staging.join(MODULE_LIST), &list).unwrap();
        let mb = Multiboot::of_iso(&dir.join("vm.iso")).unwrap();
        assert_eq!(mb.kernel, staging.join("boot/keel"));
        let args: Vec<_> = mb
            .qemu_args()
            .into_iter()
            .map(|a| a.into_string().unwrap())
            .collect();
        let d = staging.to_string_lossy().replace(',', ",,");
        assert_eq!(args[2], "-initrd");
        assert_eq!(
            args[3],
            format!("{d}/boot/config config,{d}/boot/disk disk,,1.img"),
            "commas doubled, modules joined with one"
        );
        assert!(module_list(&[("/boot/a".into(), "a\tb".into())]).is_err());
        let e = Multiboot::of_iso(&dir.join("other.iso")).unwrap_err();
        assert!(e.contains("build the ISO again"), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn grub_cfg_boots_keel_with_config_and_images() {
        let cfg = grub_cfg("selftest", &[("/boot/selftest".into(), "selftest".into())]).unwrap();
        assert!(cfg.contains("set timeout=0\nset default=0\n"));
        assert!(cfg.contains("serial --unit=0"));
        assert!(cfg.contains(
            "    multiboot2 /boot/keel\n    module2 /boot/config config\n    \
             module2 --nounzip /boot/selftest selftest\n}\n"
        ));
    }

    #[test]
    fn odd_module_names_are_quoted_or_refused() {
        let cfg = grub_cfg("v", &[("/boot/a_b".into(), "a b".into())]).unwrap();
        assert!(cfg.contains("module2 --nounzip /boot/a_b 'a b'\n"));
        assert!(grub_cfg("v", &[("/boot/a".into(), "it's".into())]).is_err());
        assert!(grub_cfg("it's", &[]).unwrap().contains("'Keel: its'"));
    }

    #[test]
    fn image_names_in_the_iso_do_not_collide() {
        let names = iso_names(&[
            ("a", PathBuf::from("x/keel")),
            ("b", PathBuf::from("y/g.bin")),
            ("c", PathBuf::from("z/g.bin")),
        ]);
        assert_eq!(names, ["keel-2", "g.bin", "g.bin-2"]);
    }

    #[test]
    fn images_resolve_to_local_files_then_test_guests() {
        let dir = std::env::temp_dir().join(format!("xtask-resolve-{}", std::process::id()));
        let guests = dir.join("guests");
        fs::create_dir_all(&guests).unwrap();
        fs::write(dir.join("mine.bin"), [0u8; 4096]).unwrap();
        fs::write(guests.join("halt"), [0u8; 4096]).unwrap();
        let cfg = dir.join("vm.cfg");
        let v = vm(cfg.to_str().unwrap(), "name='v'\nfirmware='mine.bin'");
        assert_eq!(
            resolve_image(&v, "firmware", "mine.bin", &guests).unwrap(),
            dir.join("mine.bin")
        );
        assert_eq!(
            resolve_image(&v, "firmware", "halt", &guests).unwrap(),
            guests.join("halt")
        );
        let e = resolve_image(&v, "firmware", "selftest", &guests).unwrap_err();
        assert!(e.contains("cargo xtask build"), "{e}");
        assert!(check_images(&v).is_ok());
        let nope = vm(cfg.to_str().unwrap(), "name='v'\nfirmware='nope'");
        assert_eq!(
            check_images(&nope).unwrap_err(),
            resolve_image(&nope, "firmware", "nope", &guests).unwrap_err()
        );
        let e = resolve_image(&v, "firmware", "nope", &guests).unwrap_err();
        assert!(
            e.contains("seabios, vgabios-stdvga, selftest, mmio, irq, halt, triple-fault, mmio-idt, hostile-cpu"),
            "{e}"
        );
        assert!(e.contains("firmware = \"nope\""), "{e}");
        fs::remove_dir_all(&dir).unwrap();
    }

    /// A directory with a VM config and its disk files, removed at the end.
    struct Dir(PathBuf);

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn disk_dir(tag: &str) -> Dir {
        let dir = std::env::temp_dir().join(format!("xtask-disks-{tag}-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join("disk.img"), vec![0u8; 64 * 1024]).unwrap();
        fs::write(dir.join("cd.iso"), vec![0u8; 4096]).unwrap();
        Dir(dir)
    }

    fn vm_at(dir: &Path, text: &str) -> VmFile {
        let path = dir.join("vm.cfg");
        fs::write(&path, text).unwrap();
        VmFile::load(&path).unwrap()
    }

    #[test]
    fn a_writable_disk_file_moves_to_the_next_virtio_disk() {
        let d = disk_dir("move");
        let text = "name = 'v'\n# the disks\ndisk = [ 'disk.img,raw,hda,rw',\n  'cd.iso,raw,hdc:cdrom,r' ]\nmemory = 64\n";
        let v = vm_at(&d.0, text);
        let plan = host_disk_plan(&v).unwrap();
        assert_eq!(
            plan,
            HostDiskPlan {
                first: 0,
                files: vec![FileDisk {
                    entry: "disk.img,raw,hda,rw".into(),
                    shipped: "phy:virtio0,hda,w".into(),
                    file: d.0.join("disk.img"),
                    index: 0,
                }],
            }
        );
        let shipped = String::from_utf8(shipped_config(&v, &plan).unwrap()).unwrap();
        assert_eq!(
            shipped,
            "name = 'v'\n# the disks\ndisk = [ 'phy:virtio0,hda,w', 'cd.iso,raw,hdc:cdrom,r' ]\nmemory = 64\n"
        );
        // Keel reads it as the first host disk; the CD stays an image.
        let keel = vm_config::parse(&shipped).unwrap().config;
        let specs = keel.disk_specs().unwrap();
        assert_eq!(specs[0].backend, DiskBackend::HostVirtio(0));
        assert!(specs[0].writable);
        assert_eq!(keel.images(), [("disk", "cd.iso")]);
        assert_eq!(plan.attach(&[]).unwrap(), [d.0.join("disk.img")]);
        assert!(plan.attach(&[PathBuf::from("x.img")]).is_err());
    }

    #[test]
    fn disk_files_come_after_the_configs_own_host_disks() {
        let d = disk_dir("after");
        fs::write(d.0.join("b.img"), vec![0u8; 512]).unwrap();
        let v = vm_at(
            &d.0,
            "name='v'\ndisk=['disk.img,raw,hda,rw','phy:virtio1,hdb,w','target=b.img,vdev=hdd']",
        );
        let plan = host_disk_plan(&v).unwrap();
        assert_eq!(plan.first, 2);
        let shipped: Vec<_> = plan.files.iter().map(|f| f.shipped.as_str()).collect();
        assert_eq!(shipped, ["phy:virtio2,hda,w", "phy:virtio3,hdd,w"]);
        let given = [PathBuf::from("h0.img"), PathBuf::from("h1.img")];
        assert_eq!(
            plan.attach(&given).unwrap(),
            [
                given[0].clone(),
                given[1].clone(),
                d.0.join("disk.img"),
                d.0.join("b.img")
            ]
        );
        let e = plan.attach(&given[..1]).unwrap_err();
        assert!(
            e.contains("phy:virtio0 to phy:virtio1") && e.contains("exactly 2 --host-disk"),
            "{e}"
        );
    }

    #[test]
    fn volatile_read_only_and_built_in_images_stay_in_ram() {
        let d = disk_dir("ram");
        let v = vm_at(
            &d.0,
            "name='v'\ndisk=['disk.img,raw,hda,rw,volatile','cd.iso,raw,hdb,r',\
             'debian-disk,raw,hdc,rw','bootdisk,raw,hdd,rw']",
        );
        let plan = host_disk_plan(&v).unwrap();
        assert_eq!(plan, HostDiskPlan::default());
        assert_eq!(
            shipped_config(&v, &plan).unwrap(),
            fs::read(&v.path).unwrap()
        );
        assert_eq!(plan.attach(&[]).unwrap(), Vec::<PathBuf>::new());
    }

    #[test]
    fn bad_disk_files_are_refused_before_anything_boots() {
        let d = disk_dir("bad");
        let e = host_disk_plan(&vm_at(&d.0, "name='v'\ndisk=['gone.img,raw,hda,rw']")).unwrap_err();
        assert!(e.contains("disk 'gone.img,raw,hda,rw'"), "{e}");
        assert!(e.contains("cannot use the disk file"), "{e}");

        fs::write(d.0.join("odd.img"), vec![0u8; 1000]).unwrap();
        let e = host_disk_plan(&vm_at(&d.0, "name='v'\ndisk=['odd.img,raw,hda,rw']")).unwrap_err();
        assert!(
            e.contains("is 1000 bytes, not a whole number of 512-byte sectors"),
            "{e}"
        );
        fs::write(d.0.join("empty.img"), []).unwrap();
        assert!(host_disk_plan(&vm_at(&d.0, "name='v'\ndisk=['empty.img,raw,hda,rw']")).is_err());

        let ro = d.0.join("ro.img");
        fs::write(&ro, vec![7u8; 4096]).unwrap();
        let mut perms = fs::metadata(&ro).unwrap().permissions();
        perms.set_readonly(true);
        fs::set_permissions(&ro, perms).unwrap();
        let e = host_disk_plan(&vm_at(&d.0, "name='v'\ndisk=['ro.img,raw,hda,rw']")).unwrap_err();
        assert!(e.contains("read-only on the host"), "{e}");
        // Read-only on the host is fine for a read-only entry (a boot module).
        let v = vm_at(&d.0, "name='v'\ndisk=['ro.img,raw,hda,r']");
        assert!(host_disk_plan(&v).unwrap().files.is_empty());
        assert_eq!(fs::read(&ro).unwrap(), vec![7u8; 4096]);

        let e = host_disk_plan(&vm_at(
            &d.0,
            "name='v'\ndisk=['disk.img,raw,hda,rw','disk.img,raw,hdb,r']",
        ))
        .unwrap_err();
        assert!(e.contains("name the same file"), "{e}");
    }

    #[test]
    fn load_reports_file_and_line() {
        let dir = std::env::temp_dir().join(format!("xtask-load-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let p = dir.join("bad.cfg");
        fs::write(&p, "name = 'x'\nmemory = \"lots\"\nfoo = 1\n").unwrap();
        let e = VmFile::load(&p).unwrap_err();
        assert_eq!(
            e,
            format!(
                "{}:2: memory = \"lots\": expected a number of MiB",
                p.display()
            )
        );
        fs::write(&p, "name = 'x'\nfoo = 1\n").unwrap();
        let v = VmFile::load(&p).unwrap();
        assert!(v.warning_lines()[0]
            .starts_with(&format!("{}:2: warning: unknown key 'foo'", p.display())));
        fs::remove_dir_all(&dir).unwrap();
    }
}
