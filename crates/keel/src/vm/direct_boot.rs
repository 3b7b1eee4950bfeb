//! Direct kernel boot: a VM with `kernel =` runs Keel's BIOS shim
//! (`firmware/`), which reads the kernel, initrd, command line and ACPI
//! tables from fw_cfg files (the contract in firmware/README.md) and boots a
//! Linux bzImage or a multiboot kernel. This module makes those files.

use alloc::vec::Vec;

use device_model::fw_cfg::FwCfg;
use vm_config::VmConfig;

use super::{Images, VmError};

/// The fw_cfg files of a direct boot, over the boot modules that carry the
/// images (handed over without a copy: they live as long as Keel).
pub struct DirectBoot {
    kernel: &'static [u8],
    initrd: Option<(&'static [u8], Vec<u8>)>,
    cmdline: Option<Vec<u8>>,
    acpi: Vec<u8>,
}

impl DirectBoot {
    /// Takes the kernel and ramdisk modules `config` names and builds the ACPI
    /// container for its vCPUs and RAM. `None` when the VM has no `kernel`.
    pub fn from_config(
        config: &VmConfig,
        images: &mut Images,
    ) -> Result<Option<DirectBoot>, VmError> {
        let Some(kernel_name) = config.kernel.as_deref() else {
            return Ok(None);
        };
        let kernel = images
            .take(kernel_name)
            .ok_or_else(|| VmError::MissingImage(kernel_name.into()))?;
        let initrd = match config.ramdisk.as_deref() {
            Some(name) => {
                let bytes = images
                    .take(name)
                    .ok_or_else(|| VmError::MissingImage(name.into()))?;
                Some((&*bytes, Vec::from(name.as_bytes())))
            }
            None => None,
        };
        let ram = u64::from(config.memory_mib) << 20;
        let (pm_base, [rsdp, tables]) = acpi_gen::direct_boot::placed_tables(config.vcpus, ram)
            .map_err(|e| VmError::Config(alloc::format!("ACPI tables for direct boot: {e}")))?;
        let blobs: [(u64, &[u8]); 2] =
            [(rsdp.address, &rsdp.bytes), (tables.address, &tables.bytes)];
        let mut acpi = alloc::vec![0; keel_shim::acpi_blobs::encoded_len(&blobs)];
        keel_shim::acpi_blobs::encode(pm_base, &blobs, &mut acpi)
            .map_err(|e| VmError::Config(alloc::format!("ACPI container: {e:?}")))?;
        Ok(Some(DirectBoot {
            kernel,
            initrd,
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
        if let Some((bytes, name)) = &self.initrd {
            fw_cfg
                .add_static_file("opt/keel/initrd", bytes)
                .map_err(err)?;
            fw_cfg
                .add_file("opt/keel/initrd-cmdline", name.clone())
                .map_err(err)?;
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
            "direct boot: kernel {} KiB, initrd {} KiB",
            self.kernel.len() / 1024,
            self.initrd.as_ref().map_or(0, |i| i.0.len() / 1024)
        )
    }
}
