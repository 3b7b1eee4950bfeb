//! A VM configuration to a bootable GRUB ISO: Keel, the configuration and
//! every image it names, as docs/ARCHITECTURE.md ("Boot modules") lays out.

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use vm_config::{VmConfig, Warning};

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
    "hostile-io",
    "hostile-reset",
    "hostile-reset-loop",
    "hostile-events",
    "hostile-dma",
    "pci-testdev",
    "exitbench",
];

/// Disk images built by `crates/test-disks`, usable by name in `disk` entries.
pub const TEST_DISKS: &[&str] = &["bootdisk", "dmadisk"];

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

/// Firmware from Debian packages, usable by name as `firmware = "NAME"`:
/// the name, the file the package installs, and the package's tools entry.
pub const PACKAGED_FIRMWARE: &[(&str, &str, &[crate::deps::Tool])] = &[(
    "seabios",
    "/usr/share/seabios/bios.bin",
    crate::deps::SEABIOS,
)];

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
    cfg.push_str("    module2 /boot/config config\n");
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

/// What [`build_iso`] made.
#[derive(Debug, Clone)]
pub struct Iso {
    pub path: PathBuf,
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
    if !keel.is_file() {
        return Err(format!(
            "{} does not exist; build Keel with cargo xtask build",
            keel.display()
        ));
    }
    let mut images: Vec<(&str, PathBuf)> = Vec::new();
    let mut notes = Vec::new();
    for (key, value) in vm.config.images() {
        let file = resolve_image(vm, key, value, guest_dir)?;
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
    let names = iso_names(&images);
    let modules: Vec<(String, String)> = names
        .iter()
        .zip(&images)
        .map(|(n, (value, _))| (format!("/boot/{n}"), value.to_string()))
        .collect();
    let cfg = grub_cfg(&vm.config.name, &modules)?;

    let stem = file_stem_for(&vm.config.name);
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
    copy(&vm.path, "config")?;
    for (n, (_, file)) in names.iter().zip(&images) {
        copy(file, n)?;
    }
    fs::write(boot.join("grub").join("grub.cfg"), cfg).map_err(|e| io("cannot write", &boot, e))?;

    let iso = crate::workspace::iso_path(artifacts_dir, &vm.config.name);
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
    Ok(Iso { path: iso, notes })
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
            e.contains("seabios, selftest, mmio, irq, halt, triple-fault, mmio-idt, hostile-cpu"),
            "{e}"
        );
        assert!(e.contains("firmware = \"nope\""), "{e}");
        fs::remove_dir_all(&dir).unwrap();
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
