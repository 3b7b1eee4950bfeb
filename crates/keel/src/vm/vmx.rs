//! Setting up a VM on the VMX backend: EPT (the same builder and frame-backed
//! tables as NPT), the MSR and I/O bitmaps, the VMCS and the vCPU.

use alloc::boxed::Box;
use alloc::format;
use alloc::vec::Vec;
use core::ops::Range;

use keel::frames::FrameAllocator;
use vmm_core::paging::{eptp, EptFormat, NestedPageTable};
use vmm_core::vmx::hw::{self, HwVmcs, VmxRegion};
use vmm_core::vmx::{ExitControls, IoBitmaps, MsrBitmap, VmxControls, VmxVcpu, VmxVcpuConfig};

use super::svm::FrameTables;
use super::{GuestMapping, VmError};

/// MSRs the guest may access without an exit. SYSENTER_*, FS/GS base (and PAT
/// when the PAT load/save controls are on) are switched through the VMCS guest
/// state (SDM 25.4, 26.3.2.1, 27.3.1). STAR, LSTAR, CSTAR, SFMASK and
/// KERNEL_GS_BASE are not switched: the guest's values stay in the CPU, which
/// is harmless because Keel never executes SYSCALL, SYSRET or SWAPGS.
const PASS_THROUGH_MSRS: &[u32] = &[
    0x174,       // SYSENTER_CS
    0x175,       // SYSENTER_ESP
    0x176,       // SYSENTER_EIP
    0xc000_0081, // STAR
    0xc000_0082, // LSTAR
    0xc000_0083, // CSTAR
    0xc000_0084, // SFMASK
    0xc000_0100, // FS_BASE
    0xc000_0101, // GS_BASE
    0xc000_0102, // KERNEL_GS_BASE
];
const MSR_PAT: u32 = 0x277;
/// TSC: reads are native (zero offset), writes go to the MSR policy.
const MSR_TSC: u32 = 0x10;

fn identity(va: usize) -> u64 {
    va as u64
}

/// Maps `mappings` in fresh EPT tables, loads a VMCS on this CPU (VMX is
/// on already: `cpu::enable_this_cpu`) and
/// creates vCPU 0 in its reset state; returns it and the tables, which the
/// VM keeps for changes while it runs. No mapping may reach `reserved`.
/// `cr4_hidden`: the CR4 bits the VM's CPUID hides ([`VmxVcpuConfig::cr4_hidden`]).
pub fn create_vcpu(
    frames: &mut FrameAllocator,
    controls: VmxControls,
    cr4_hidden: u64,
    mappings: &[GuestMapping],
    reserved: Vec<Range<u64>>,
) -> Result<(VmxVcpu<HwVmcs>, NestedPageTable<EptFormat>), VmError> {
    let mut tables = FrameTables(frames);
    let largest = if controls.caps.ept_1g_pages() { 3 } else { 2 };
    let ranges = mappings.iter().map(|m| (m.gpa, m.hpa, m.len, m.perms));
    let ept = NestedPageTable::<EptFormat>::with_mappings(&mut tables, largest, reserved, ranges)
        .map_err(VmError::Map)?;
    let vcpu = new_vcpu(controls, cr4_hidden, ept.root(), 0)?;
    Ok((vcpu, ept))
}

/// vCPU `vcpu_id` of a VM whose EPT tables are rooted at `root`, in its
/// reset state, with a VPID of its own and its VMCS current on this host
/// CPU, the one that runs it (VMX is on there: `cpu::enable_this_cpu`);
/// the CR4 bits `cr4_hidden` exit when set ([`VmxVcpuConfig::cr4_hidden`]).
pub fn new_vcpu(
    controls: VmxControls,
    cr4_hidden: u64,
    root: u64,
    vcpu_id: u32,
) -> Result<VmxVcpu<HwVmcs>, VmError> {
    let io = Box::new(IoBitmaps::intercept_all());
    let mut msr = Box::new(MsrBitmap::intercept_all());
    for &m in PASS_THROUGH_MSRS {
        msr.pass_through(m);
    }
    if controls
        .exit
        .contains(ExitControls::SAVE_IA32_PAT | ExitControls::LOAD_IA32_PAT)
    {
        msr.pass_through(MSR_PAT);
    }
    msr.pass_through_reads(MSR_TSC);

    // One VPID per vCPU (SDM Vol 3C 28.1), never reused while Keel runs.
    let vpid = crate::cpu::allocate_tag(1 << 16).ok_or_else(|| {
        VmError::Hardware(alloc::string::String::from("no VPID left for this vCPU"))
    })?;
    // SAFETY: VMX is on on this CPU (`cpu::enable_this_cpu`); the region carries the revision identifier.
    let vmcs = unsafe { HwVmcs::load(VmxRegion::new(&controls.caps), identity) }.map_err(|e| {
        VmError::Hardware(format!("loading the VMCS (VMCLEAR/VMPTRLD) failed: {e}"))
    })?;

    let config = VmxVcpuConfig {
        vcpu_id,
        vpid: vpid as u16,
        eptp: eptp(root),
        controls,
        cpu_signature: crate::cpu::host_cpuid(1, 0).eax,
        cr4_hidden,
    };
    // SAFETY: VMX is on and the VMCS current on this CPU (above), and the EPT
    // tables map only this VM's memory (RAM, firmware, device regions:
    // `GuestPhysMap` refuses anything else) and are never freed (Keel ends
    // with the VM).
    Ok(unsafe { VmxVcpu::new(config, io, msr, vmcs, &hw::host_state(), identity) })
}
