//! Direct kernel boot: a VM with `kernel =` runs Keel's BIOS shim
//! (`firmware/`), which reads the kernel, initrd, command line and ACPI
//! tables from fw_cfg files (the contract in firmware/README.md) and boots a
//! Linux bzImage or a multiboot kernel. This module makes those files.

use alloc::string::String;
use alloc::vec::Vec;

use device_model::fw_cfg::FwCfg;
use vm_config::VmConfig;

use super::{Images, VmError};

/// The fw_cfg files of a direct boot, over the boot modules that carry the
/// images (handed over without a copy: they live as long as Keel).
pub struct DirectBoot {
    kernel: &'static [u8],
    kernel_name: Vec<u8>,
    /// The initrd (module 0) and the multiboot modules after it, each with
    /// its string (`ramdisk`'s name, or a `modules` entry whole).
    modules: Vec<(&'static [u8], Vec<u8>)>,
    cmdline: Option<Vec<u8>>,
    acpi: Vec<u8>,
}

impl DirectBoot {
    /// Borrows the kernel and ramdisk modules `config` names (read-only,
    /// shared with any other VM that names them) and builds the ACPI
    /// container for its vCPUs and RAM. `None` when the VM has no `kernel`.
    pub fn from_config(
        config: &VmConfig,
        images: &mut Images,
    ) -> Result<Option<DirectBoot>, VmError> {
        let Some(kernel_name) = config.kernel.as_deref() else {
            return Ok(None);
        };
        // Shared, read-only: another VM of this boot may boot the same
        // kernel and initrd (GRUB loaded each image once).
        let kernel = images
            .modules
            .share(kernel_name)
            .ok_or_else(|| VmError::MissingImage(kernel_name.into()))?;
        // `ramdisk` first, then `modules`; an image several modules name
        // is one boot module, shared.
        let mut modules = Vec::new();
        let entries = config
            .ramdisk
            .iter()
            .map(|r| (r.as_str(), r.as_str()))
            .chain(
                config
                    .modules
                    .iter()
                    .map(|m| (vm_config::module_image(m), m.as_str())),
            );
        for (name, string) in entries {
            let bytes = images
                .modules
                .share(name)
                .ok_or_else(|| VmError::MissingImage(name.into()))?;
            modules.push((bytes, Vec::from(string.as_bytes())));
        }
        let ram = u64::from(config.memory_mib) << 20;
        // The ACPI tables and the SMBIOS entry point and table, placed.
        // Xen's pages (device_model::xen::XenPages) take the last pages
        // of low RAM: the tables go below them.
        let top = if config.xen_platform_pci {
            let low = device_model::fw_cfg::e820::RamLayout::qemu_pc(ram).below_4g;
            device_model::xen::XenPages::at_top_of(low).base
        } else {
            u64::MAX
        };
        let (pm_base, placed) = acpi_gen::direct_boot::placed_tables_below(config.vcpus, ram, top)
            .map_err(|e| VmError::Config(alloc::format!("ACPI tables for direct boot: {e}")))?;
        let blobs = placed.each_ref().map(|b| (b.address, b.bytes.as_slice()));
        let mut acpi = alloc::vec![0; keel_shim::acpi_blobs::encoded_len(&blobs)];
        keel_shim::acpi_blobs::encode(pm_base, &blobs, &mut acpi)
            .map_err(|e| VmError::Config(alloc::format!("ACPI container: {e:?}")))?;
        Ok(Some(DirectBoot {
            kernel,
            kernel_name: Vec::from(kernel_name.as_bytes()),
            modules,
            cmdline: config.cmdline.as_deref().map(|c| Vec::from(c.as_bytes())),
            acpi,
        }))
    }

    /// Adds the files to the VM's fw_cfg.
    pub fn install(&self, fw_cfg: &mut FwCfg) -> Result<(), VmError> {
        let err = |e| VmError::Config(alloc::format!("fw_cfg: {e:?}"));
        fw_cfg
            .add_static_file("opt/keel/kernel", self.kernel)
            .map_err(err)?;
        fw_cfg
            .add_file("opt/keel/kernel-name", self.kernel_name.clone())
            .map_err(err)?;
        for (i, (bytes, string)) in self.modules.iter().enumerate() {
            let (file, cmdline) = if i == 0 {
                (
                    String::from("opt/keel/initrd"),
                    String::from("opt/keel/initrd-cmdline"),
                )
            } else {
                (
                    alloc::format!("opt/keel/module{i}"),
                    alloc::format!("opt/keel/module{i}-cmdline"),
                )
            };
            fw_cfg.add_static_file(&file, bytes).map_err(err)?;
            fw_cfg.add_file(&cmdline, string.clone()).map_err(err)?;
        }
        if let Some(c) = &self.cmdline {
            fw_cfg
                .add_file("opt/keel/cmdline", c.clone())
                .map_err(err)?;
        }
        fw_cfg
            .add_file("opt/keel/acpi", self.acpi.clone())
            .map_err(err)?;
        Ok(())
    }

    /// For the VM's start-up log line.
    pub fn describe(&self) -> alloc::string::String {
        alloc::format!(
            "direct boot: kernel {} KiB, {} modules {} KiB",
            self.kernel.len() / 1024,
            self.modules.len(),
            self.modules.iter().map(|m| m.0.len()).sum::<usize>() / 1024
        )
    }
}
