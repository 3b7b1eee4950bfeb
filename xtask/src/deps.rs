//! Host tools xtask needs, and installing the missing ones on Debian.

use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};

/// A host tool and the Debian package that provides it.
#[derive(Debug, Clone, Copy)]
pub struct Tool {
    /// A program looked up on PATH, or an absolute path that must exist.
    pub needs: &'static str,
    pub package: &'static str,
}

/// What `grub-mkrescue` needs to make a BIOS-bootable ISO, and `objcopy`,
/// which drops Keel's debug sections from the copy the ISO ships.
pub const ISO_TOOLS: &[Tool] = &[
    Tool {
        needs: "grub-mkrescue",
        package: "grub-common",
    },
    Tool {
        needs: "/usr/lib/grub/i386-pc/multiboot2.mod",
        package: "grub-pc-bin",
    },
    Tool {
        needs: "xorriso",
        package: "xorriso",
    },
    Tool {
        needs: "mformat",
        package: "mtools",
    },
    Tool {
        needs: "objcopy",
        package: "binutils",
    },
];

/// The emulator for the SVM backend.
pub const QEMU: &[Tool] = &[Tool {
    needs: "qemu-system-x86_64",
    package: "qemu-system-x86",
}];

/// Debian's SeaBIOS, the legacy BIOS a VM gets with `firmware = "seabios"`.
pub const SEABIOS: &[Tool] = &[Tool {
    needs: "/usr/share/seabios/bios.bin",
    package: "seabios",
}];

/// The emulator for the VMX backend: Bochs, its BIOS and VGA BIOS.
pub const BOCHS: &[Tool] = &[
    Tool {
        needs: "bochs",
        package: "bochs",
    },
    Tool {
        needs: "/usr/share/bochs/BIOS-bochs-latest",
        package: "bochsbios",
    },
    Tool {
        needs: "/usr/share/bochs/VGABIOS-lgpl-latest",
        package: "vgabios",
    },
];

fn present(needs: &str) -> bool {
    if needs.starts_with('/') {
        return Path::new(needs).exists();
    }
    std::env::var_os("PATH").is_some_and(|path| {
        std::env::split_paths(&path).any(|dir| {
            std::fs::metadata(dir.join(needs)).is_ok_and(|m| m.is_file() && m.mode() & 0o111 != 0)
        })
    })
}

/// Whether xtask runs as root (and so may use apt-get install / update).
pub fn is_root() -> bool {
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

static APT_UPDATED: AtomicBool = AtomicBool::new(false);

/// Makes sure every tool is there. Missing ones are installed with apt-get
/// when running as root (one `apt-get update` per process); otherwise the
/// error names the packages to install.
pub fn ensure(tools: &[Tool]) -> Result<(), String> {
    let mut packages: Vec<&str> = tools
        .iter()
        .filter(|t| !present(t.needs))
        .map(|t| t.package)
        .collect();
    packages.dedup();
    if packages.is_empty() {
        return Ok(());
    }
    let list = packages.join(" ");
    let missing: Vec<String> = tools
        .iter()
        .filter(|t| !present(t.needs))
        .map(|t| format!("{} (package {})", t.needs, t.package))
        .collect();
    let how = format!("install with: sudo apt-get install --no-install-recommends {list}");
    if !is_root() {
        return Err(format!("missing {}; {how}", missing.join(", ")));
    }
    if !present("apt-get") {
        return Err(format!(
            "missing {}; there is no apt-get here, so install the equivalent of the Debian \
             packages {list} yourself",
            missing.join(", ")
        ));
    }
    let step = crate::progress::Step::new(format!("apt-get install {list}"));
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        apt(&["update"]).map_err(|e| format!("{e}\ncannot install {list}"))?;
    }
    let mut args = vec!["install", "-y", "--no-install-recommends"];
    args.extend(&packages);
    apt(&args).map_err(|e| format!("{e}\nmissing {}", missing.join(", ")))?;
    step.done(&format!("{} packages installed", packages.len()));
    let still: Vec<&str> = tools
        .iter()
        .filter(|t| !present(t.needs))
        .map(|t| t.needs)
        .collect();
    if still.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "installed {list}, but still missing {}",
            still.join(", ")
        ))
    }
}

/// `apt-get update`, once per process (root only).
pub fn apt_update() -> Result<(), String> {
    if !is_root() {
        return Err("apt-get update needs root: run `sudo apt-get update`".into());
    }
    if !APT_UPDATED.swap(true, Ordering::SeqCst) {
        let step = crate::progress::Step::new("apt-get update");
        apt(&["update"])?;
        step.done("package lists refreshed");
    }
    Ok(())
}

/// apt-get with its output kept, shown only when it fails.
fn apt(args: &[&str]) -> Result<(), String> {
    crate::progress::run_quiet(
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive"),
        "",
    )
    .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_programs_and_files() {
        assert!(present("sh"));
        assert!(present("/"));
        assert!(!present("no-such-tool-keel"));
        assert!(!present("/no/such/file"));
    }

    #[test]
    fn nothing_missing_is_ok() {
        assert!(ensure(&[Tool {
            needs: "sh",
            package: "dash"
        }])
        .is_ok());
    }
}
