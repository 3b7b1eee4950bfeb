//! Setting up a VM on the SVM backend: nested page tables, permission maps,
//! and the vCPU.

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec::Vec;
use core::ops::Range;

use keel::frames::FrameAllocator;
use vmm_core::paging::{NestedPageTable, NptFormat, TableMemory};

/// The nested page table a VM keeps (`paging::GuestPhysMap`).
pub type Npt = NestedPageTable<NptFormat>;
use vmm_core::svm::{IoPermissionMap, MsrPermissionMap, SvmVcpu, SvmVcpuConfig};

use super::{GuestMapping, VmError};
use crate::cpu::SvmCaps;

/// MSRs whose guest values live in the VMCB (loaded by VMRUN / VMLOAD), so the
/// guest may access them without an exit (APM Vol 2, 15.5.1, 15.11).
const PASS_THROUGH_MSRS: &[u32] = &[
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
    0x277,       // PAT (G_PAT with nested paging)
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    0xc000_0100, // FS_BASE
    0xc000_0101, // GS_BASE
    0xc000_0102, // KERNEL_GS_BASE
];
/// TSC: reads are native (zero offset), writes go to the MSR policy.
const MSR_TSC: u32 = 0x10;

/// Nested page-table pages come straight from the frame allocator.
pub(super) struct FrameTables<'a>(pub &'a mut FrameAllocator);

impl TableMemory for FrameTables<'_> {
    fn alloc_table(&mut self) -> Option<u64> {
        let pa = self.0.alloc_frame()?;
        self.table(pa).fill(0);
        Some(pa)
    }

    fn table(&mut self, pa: u64) -> &mut [u64; 512] {
        super::memory_map::frame_table(pa)
    }
}

fn identity(va: usize) -> u64 {
    va as u64
}

/// Maps `mappings` in fresh nested page tables and creates vCPU 0 in its
/// reset state with an ASID of its own (SVM is on already on this CPU:
/// `cpu::enable_this_cpu`); returns it and the tables, which the VM keeps
/// for changes while it runs. No mapping may reach `reserved`.
pub fn create_vcpu(
    frames: &mut FrameAllocator,
    caps: SvmCaps,
    mappings: &[GuestMapping],
    reserved: Vec<Range<u64>>,
) -> Result<(SvmVcpu, Npt), VmError> {
    let mut tables = FrameTables(frames);
    let largest = if caps.huge_pages { 3 } else { 2 };
    let ranges = mappings.iter().map(|m| (m.gpa, m.hpa, m.len, m.perms));
    let npt = NestedPageTable::<NptFormat>::with_mappings(&mut tables, largest, reserved, ranges)
        .map_err(VmError::Map)?;
    let vcpu = new_vcpu(caps, npt.root(), 0)?;
    Ok((vcpu, npt))
}

/// vCPU `vcpu_id` of a VM whose nested page tables are rooted at `ncr3`,
/// in its reset state, with an ASID of its own; built on the host CPU that
/// runs it (SVM is on there: `cpu::enable_this_cpu`).
pub fn new_vcpu(caps: SvmCaps, ncr3: u64, vcpu_id: u32) -> Result<SvmVcpu, VmError> {
    let iopm = Box::new(IoPermissionMap::intercept_all());
    let mut msrpm = Box::new(MsrPermissionMap::intercept_all());
    for &msr in PASS_THROUGH_MSRS {
        msrpm.pass_through(msr);
    }
    msrpm.pass_through_reads(MSR_TSC);

    let asid = crate::cpu::allocate_tag(crate::cpu::svm_asid_count()).ok_or_else(|| {
        VmError::Hardware(String::from(
            "no SVM ASID left for this vCPU (CPUID Fn8000_000A EBX): Keel hands each vCPU its own",
        ))
    })?;
    let config = SvmVcpuConfig {
        vcpu_id,
        asid,
        ncr3,
        nrip_save: caps.nrip_save,
        decode_assists: caps.decode_assists,
        flush_by_asid: caps.flush_by_asid,
        cpu_signature: crate::cpu::host_cpuid(1, 0).eax,
    };
    // SAFETY: SVM is enabled on this CPU (`cpu::enable_this_cpu` at its start), and the nested tables map only
    // this VM's memory (RAM, firmware, device regions: `GuestPhysMap`
    // refuses anything else) and are never freed (Keel ends with the VM);
    // Keel's own page tables (`memory::paging`) have no user or global pages.
    Ok(unsafe { SvmVcpu::new(config, iopm, msrpm, identity) })
}
