//! Where the workspace, its target directory and Keel's artifacts are.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The bare-metal target Keel and the test guests are built for.
pub const BARE_METAL_TARGET: &str = "x86_64-unknown-none";
/// Environment variable that tells the integration tests where the ISOs are.
pub const ARTIFACTS_ENV: &str = "KEEL_ARTIFACTS";

/// The workspace this xtask belongs to.
#[derive(Debug, Clone)]
pub struct Workspace {
    /// The directory of the root `Cargo.toml`.
    pub root: PathBuf,
    /// Cargo's target directory (respects `CARGO_TARGET_DIR` and cargo config).
    pub target_dir: PathBuf,
}

impl Workspace {
    /// Finds the workspace root (the parent of this crate) and asks cargo for
    /// the target directory.
    pub fn locate() -> Result<Self, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .expect("xtask lives one level below the workspace root")
            .to_path_buf();
        let out = Command::new(cargo())
            .args(["metadata", "--format-version", "1", "--no-deps"])
            .current_dir(&root)
            .output()
            .map_err(|e| format!("cannot run cargo metadata: {e}"))?;
        if !out.status.success() {
            return Err(format!(
                "cargo metadata failed: {}",
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        let json = String::from_utf8_lossy(&out.stdout);
        let target_dir = json_string_field(&json, "target_directory")
            .ok_or("cargo metadata did not report a target_directory")?;
        Ok(Self {
            root,
            target_dir: PathBuf::from(target_dir),
        })
    }

    /// Where `cargo build --release --target x86_64-unknown-none` puts binaries.
    pub fn bare_metal_dir(&self) -> PathBuf {
        self.target_dir.join(BARE_METAL_TARGET).join("release")
    }

    /// The Keel multiboot2 ELF.
    pub fn keel_elf(&self) -> PathBuf {
        self.bare_metal_dir().join("keel")
    }

    /// The Keel ELF the ISOs ship: [`Self::keel_elf`] without its debug
    /// sections. GRUB's multiboot2 loader reads every section of the file
    /// from the CD, and the debug sections are nine tenths of it, so the
    /// full ELF slowed every boot by a second or more under QEMU TCG. The
    /// full one stays in the target directory for debuggers.
    pub fn shipped_keel_elf(&self) -> PathBuf {
        self.artifacts_dir().join("keel.elf")
    }

    /// Where ISOs and their staging directories go.
    pub fn artifacts_dir(&self) -> PathBuf {
        self.target_dir.join("keel")
    }

    /// The VM configurations the integration tests boot.
    pub fn test_vms_dir(&self) -> PathBuf {
        self.root.join("tests").join("vms")
    }
}

/// The cargo that runs us (the toolchain's own), or `cargo` from PATH.
pub fn cargo() -> std::ffi::OsString {
    std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into())
}

/// The ISO of the VM called `vm_name` inside `artifacts_dir`.
pub fn iso_path(artifacts_dir: &Path, vm_name: &str) -> PathBuf {
    artifacts_dir.join(format!("{}.iso", file_stem_for(vm_name)))
}

/// A VM name made safe as a file name: anything but `[A-Za-z0-9._-]` becomes `_`.
pub fn file_stem_for(vm_name: &str) -> String {
    let s: String = vm_name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-') {
                c
            } else {
                '_'
            }
        })
        .collect();
    if s.starts_with('.') {
        format!("_{s}")
    } else {
        s
    }
}

/// The value of the first `"key": "string"` in a JSON text (enough for cargo
/// metadata's top-level fields, which follow the large `packages` array).
fn json_string_field(json: &str, key: &str) -> Option<String> {
    let needle = format!("\"{key}\":");
    let at = json.rfind(&needle)? + needle.len();
    let rest = json[at..].trim_start().strip_prefix('"')?;
    let mut out = String::new();
    let mut chars = rest.chars();
    loop {
        match chars.next()? {
            '"' => return Some(out),
            '\\' => match chars.next()? {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'u' => {
                    let hex: String = chars.by_ref().take(4).collect();
                    out.push(char::from_u32(u32::from_str_radix(&hex, 16).ok()?)?);
                }
                c => out.push(c),
            },
            c => out.push(c),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_field() {
        let j = r#"{"packages":[{"target_directory":"no"}],"target_directory":"/a b/t\\x\"y\u0041","version":1}"#;
        assert_eq!(
            json_string_field(j, "target_directory").unwrap(),
            "/a b/t\\x\"yA"
        );
        assert_eq!(json_string_field(j, "missing"), None);
    }

    #[test]
    fn iso_names() {
        assert_eq!(
            iso_path(Path::new("/t/keel"), "selftest"),
            Path::new("/t/keel/selftest.iso")
        );
        assert_eq!(file_stem_for("my vm/1"), "my_vm_1");
        assert_eq!(file_stem_for(".."), "_..");
    }

    #[test]
    fn locates_this_workspace() {
        let ws = Workspace::locate().unwrap();
        assert!(ws.root.join("Cargo.toml").is_file());
        assert!(ws.target_dir.is_absolute());
    }
}
