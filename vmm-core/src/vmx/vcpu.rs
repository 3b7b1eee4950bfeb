//! One VMX vCPU: its VMCS (reached through [`Vmcs`]), the guest GPRs the CPU
//! does not keep in the VMCS, and the bitmaps the VMCS points at.
//!
//! Generic over the VMCS access so that set-up, register access and event
//! injection run in host tests on a map of field encodings; Keel uses
//! [`super::hw::HwVmcs`] (VMREAD / VMWRITE).

use alloc::boxed::Box;

use super::bitmaps::{IoBitmaps, MsrBitmap};
use super::controls::{EntryControls, PrimaryProcessorBased, SecondaryProcessorBased, VmxControls};
use super::decode::{decode_exit, VmcsRead};
use super::instruction_error::VmxInstructionError;
use super::vmcs_field::VmcsField as F;
use crate::event;
use crate::exit::VmExit;
use crate::fpu::GuestFpu;
use crate::vcpu::{Event, Gpr, GuestGprs, Segment, Sreg, VcpuState};

/// Write access to the current VMCS.
pub trait Vmcs: VmcsRead {
    /// Writes `value` to `field`. A failure is kept until [`Vmcs::take_error`].
    fn write(&mut self, field: F, value: u64);
    /// The first VMWRITE that failed since the last call, if any.
    fn take_error(&mut self) -> Option<(F, VmxInstructionError)>;
}

/// The host state VM exits load (SDM 25.5, 27.5): Keel's own, read once.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HostState {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub cs: u16,
    pub ss: u16,
    pub ds: u16,
    pub es: u16,
    pub fs: u16,
    pub gs: u16,
    pub tr: u16,
    pub fs_base: u64,
    pub gs_base: u64,
    pub tr_base: u64,
    pub gdtr_base: u64,
    pub idtr_base: u64,
    pub efer: u64,
    pub pat: u64,
}

/// What one VMX vCPU is set up with.
#[derive(Debug, Clone, Copy)]
pub struct VmxVcpuConfig {
    /// Index of the vCPU within its VM.
    pub vcpu_id: u32,
    /// The VPID tagging this guest's TLB entries (never 0, which is the host's).
    pub vpid: u16,
    /// The EPT pointer (EPT root table with memory type and walk length).
    pub eptp: u64,
    pub controls: VmxControls,
    /// Processor signature (CPUID 1 EAX) that RESET leaves in EDX.
    pub cpu_signature: u32,
    /// CR4 bits the processor has but the VM's CPUID hides
    /// ([`VmxControls::cr4_hidden`]): in the CR4 guest/host mask besides
    /// the fixed bits, so that setting one exits and raises #GP(0).
    pub cr4_hidden: u64,
}

// CR0, CR4, EFER and RFLAGS bits.
const CR0_PG: u64 = 1 << 31;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
const CR0_PE: u64 = 1 << 0;
/// VM-entry interruption information: valid (SDM 25.8.3, Table 25-17).
const ENTRY_INTR_VALID: u64 = 1 << 31;
/// Interruptibility state: blocking by STI (bit 0) and by MOV SS (bit 1) (SDM 25.4.2).
const BLOCKING_BY_STI_OR_MOV_SS: u64 = 0b11;
const BLOCKING_BY_MOV_SS: u64 = 0b10;
/// Interruptibility state bit 3: blocking by NMI; with virtual NMIs,
/// virtual-NMI blocking (SDM 25.4.2, Table 25-3).
const BLOCKING_BY_NMI: u64 = 1 << 3;
/// VM-exit interruption information bit 12 and EPT-violation exit
/// qualification bit 12: the exit came from a fault in an IRET that had
/// unblocked NMIs (SDM 28.2.3).
const NMI_UNBLOCKING_DUE_TO_IRET: u64 = 1 << 12;
/// IDT-vectoring / interruption information: valid (31), type (10:8), NMI = 2.
const INFO_VALID: u64 = 1 << 31;
const INFO_TYPE_NMI: u64 = 2 << 8;
const INFO_TYPE_MASK: u64 = 7 << 8;
/// #DF, whose exit leaves bit 12 undefined (SDM 28.2.3).
const DOUBLE_FAULT: u64 = 8;
/// Segment access rights: the segment is unusable (bit 16).
const AR_UNUSABLE: u64 = 1 << 16;

/// A VMX virtual CPU.
pub struct VmxVcpu<V: Vmcs> {
    pub(crate) vmcs: V,
    pub(crate) gprs: GuestGprs,
    /// VMRESUME instead of VMLAUNCH: the VMCS has been launched.
    pub(crate) launched: bool,
    /// CR2 to load before the next entry (VMX does not switch CR2).
    pub(crate) pending_cr2: Option<u64>,
    /// INVEPT before the next entry (after EPT changes; once at start).
    pub(crate) flush_pending: bool,
    /// x87/SSE/AVX registers, XCR0 and TSC_AUX, which VM entry and exit do
    /// not switch ([`crate::fpu`]); every guest XSETBV exits (SDM Vol 3C
    /// 26.1.2) and lands here.
    pub(crate) fpu: GuestFpu,
    /// The exit-qualification bits of a #DB to merge into DR6 before the
    /// next entry: VMX neither writes DR6 on a #DB exit nor switches it
    /// (SDM Vol 3C 27.1).
    pub(crate) pending_debug_status: Option<u64>,
    /// An exception arose while #DF was being delivered: the next run
    /// returns a shutdown instead of entering (SDM Vol 3A 6.15).
    pub(crate) shutdown_pending: bool,
    /// The last exit was the NMI window: the CPU found an NMI deliverable
    /// there, even inside an STI shadow ([`VcpuState::nmi_shadow`]).
    nmi_window_exit: bool,
    config: VmxVcpuConfig,
    _pages: OwnedPages,
}

/// Pages the CPU reads by physical address, owned by the vCPU so they live as long.
#[allow(dead_code)] // only the CPU reads them, by physical address
struct OwnedPages {
    io: Box<IoBitmaps>,
    msr: Box<MsrBitmap>,
}

/// Access rights in the VMCS layout (SDM 25.4.1, Table 25-2) from the
/// packed 12-bit layout of [`Segment::attr`].
pub fn access_rights_from_attrs(attrs: u16) -> u64 {
    let a = u64::from(attrs);
    let ar = (a & 0xff) | ((a & 0xf00) << 4);
    if a & 0x80 == 0 && a & 0x1f == 0 {
        AR_UNUSABLE
    } else {
        ar
    }
}

/// [`Segment::attr`] from VMCS access rights; an unusable segment reads as not present.
pub fn attrs_from_access_rights(ar: u64) -> u16 {
    let attrs = ((ar & 0xff) | ((ar >> 4) & 0xf00)) as u16;
    if ar & AR_UNUSABLE != 0 {
        attrs & !0x80
    } else {
        attrs
    }
}

fn segment_fields(seg: Sreg) -> (F, F, F, F) {
    match seg {
        Sreg::Es => (
            F::GuestEsSelector,
            F::GuestEsBase,
            F::GuestEsLimit,
            F::GuestEsAccessRights,
        ),
        Sreg::Cs => (
            F::GuestCsSelector,
            F::GuestCsBase,
            F::GuestCsLimit,
            F::GuestCsAccessRights,
        ),
        Sreg::Ss => (
            F::GuestSsSelector,
            F::GuestSsBase,
            F::GuestSsLimit,
            F::GuestSsAccessRights,
        ),
        Sreg::Ds => (
            F::GuestDsSelector,
            F::GuestDsBase,
            F::GuestDsLimit,
            F::GuestDsAccessRights,
        ),
        Sreg::Fs => (
            F::GuestFsSelector,
            F::GuestFsBase,
            F::GuestFsLimit,
            F::GuestFsAccessRights,
        ),
        Sreg::Gs => (
            F::GuestGsSelector,
            F::GuestGsBase,
            F::GuestGsLimit,
            F::GuestGsAccessRights,
        ),
        Sreg::Tr => (
            F::GuestTrSelector,
            F::GuestTrBase,
            F::GuestTrLimit,
            F::GuestTrAccessRights,
        ),
    }
}

impl<V: Vmcs> VmxVcpu<V> {
    /// A vCPU in the architectural RESET state on the VMCS `vmcs` (which must
    /// be current), with the given bitmaps and host state. `phys` translates
    /// a Keel virtual address to a host-physical one.
    ///
    /// # Safety
    /// Before [`crate::Vcpu::run`] is called, VMX must be on and `vmcs`
    /// current on the CPU that runs it, and `config.eptp` must point at EPT
    /// tables that stay valid for the vCPU's life and map only memory that
    /// belongs to this guest.
    pub unsafe fn new(
        config: VmxVcpuConfig,
        io: Box<IoBitmaps>,
        msr: Box<MsrBitmap>,
        vmcs: V,
        host: &HostState,
        phys: impl Fn(usize) -> u64,
    ) -> Self {
        let io_pa = phys(&*io as *const IoBitmaps as usize);
        let msr_pa = phys(&*msr as *const MsrBitmap as usize);
        let mut v = VmxVcpu {
            vmcs,
            gprs: GuestGprs::default(),
            launched: false,
            pending_cr2: None,
            flush_pending: true,
            fpu: GuestFpu::default(),
            pending_debug_status: None,
            shutdown_pending: false,
            nmi_window_exit: false,
            config,
            _pages: OwnedPages { io, msr },
        };
        v.vmcs.write(F::IoBitmapA, io_pa);
        v.vmcs
            .write(F::IoBitmapB, io_pa + super::bitmaps::IO_BITMAP_B_OFFSET);
        v.vmcs.write(F::MsrBitmap, msr_pa);
        v.setup_controls();
        v.set_host_state(host);
        v.reset();
        v
    }

    fn setup_controls(&mut self) {
        let c = self.config.controls;
        let cr4_mask = self.cr4_guest_host_mask();
        let w = &mut self.vmcs;
        w.write(F::PinBasedVmExecutionControls, u64::from(c.pin.bits()));
        w.write(
            F::PrimaryProcessorBasedVmExecutionControls,
            u64::from(c.primary.bits()),
        );
        w.write(
            F::SecondaryProcessorBasedVmExecutionControls,
            u64::from(c.secondary.bits()),
        );
        w.write(F::VmExitControls, u64::from(c.exit.bits()));
        w.write(F::VmEntryControls, u64::from(c.entry.bits()));
        // #DB and #AC exit (SDM Vol 3C 25.6.3): their recursive delivery
        // would otherwise hold the CPU (`exit::exception`).
        w.write(
            F::ExceptionBitmap,
            (1 << crate::exit::exception_vectors::DB) | (1 << crate::exit::exception_vectors::AC),
        );
        for f in [
            F::PageFaultErrorCodeMask,
            F::PageFaultErrorCodeMatch,
            F::Cr3TargetCount,
            F::VmExitMsrStoreCount,
            F::VmExitMsrLoadCount,
            F::VmEntryMsrLoadCount,
            F::VmEntryInterruptionInformation,
            F::TscOffset,
        ] {
            w.write(f, 0);
        }
        if c.secondary.contains(SecondaryProcessorBased::ENABLE_VPID) {
            w.write(F::VirtualProcessorId, u64::from(self.config.vpid.max(1)));
        }
        w.write(F::EptPointer, self.config.eptp);
        // No shadow VMCS (SDM 25.4.2): all ones.
        w.write(F::VmcsLinkPointer, u64::MAX);
        w.write(F::Cr0GuestHostMask, c.cr0_guest_host_mask());
        w.write(F::Cr4GuestHostMask, cr4_mask);
    }

    /// Writes the host state every VM exit loads.
    pub fn set_host_state(&mut self, h: &HostState) {
        let w = &mut self.vmcs;
        w.write(F::HostCr0, h.cr0);
        w.write(F::HostCr3, h.cr3);
        w.write(F::HostCr4, h.cr4);
        // Selector RPL and TI must be 0 (SDM 26.2.3).
        for (f, s) in [
            (F::HostCsSelector, h.cs),
            (F::HostSsSelector, h.ss),
            (F::HostDsSelector, h.ds),
            (F::HostEsSelector, h.es),
            (F::HostFsSelector, h.fs),
            (F::HostGsSelector, h.gs),
            (F::HostTrSelector, h.tr),
        ] {
            w.write(f, u64::from(s & !7));
        }
        w.write(F::HostFsBase, h.fs_base);
        w.write(F::HostGsBase, h.gs_base);
        w.write(F::HostTrBase, h.tr_base);
        w.write(F::HostGdtrBase, h.gdtr_base);
        w.write(F::HostIdtrBase, h.idtr_base);
        w.write(F::HostIa32Efer, h.efer);
        w.write(F::HostIa32Pat, h.pat);
        w.write(F::HostIa32SysenterCs, 0);
        w.write(F::HostIa32SysenterEsp, 0);
        w.write(F::HostIa32SysenterEip, 0);
    }

    /// Loads the RESET state (SDM Vol 3A 9.1.1, Table 9-1): real mode at
    /// F000:FFF0 with CS.base = FFFF0000. Unrestricted guest runs it natively.
    pub fn reset(&mut self) {
        use crate::reset;
        for s in [Sreg::Es, Sreg::Ss, Sreg::Ds, Sreg::Fs, Sreg::Gs] {
            self.set_segment(s, reset::DATA_SEGMENT);
        }
        self.set_segment(Sreg::Cs, reset::CODE_SEGMENT);
        let w = &mut self.vmcs;
        w.write(F::GuestLdtrSelector, 0);
        w.write(F::GuestLdtrBase, 0);
        w.write(F::GuestLdtrLimit, u64::from(reset::LDTR.limit));
        w.write(F::GuestLdtrAccessRights, u64::from(reset::LDTR.attr));
        w.write(F::GuestTrSelector, 0);
        w.write(F::GuestTrBase, 0);
        w.write(F::GuestTrLimit, u64::from(reset::TR.limit));
        // A busy TSS: VM entry accepts no other type for TR (SDM 26.3.1.2).
        w.write(F::GuestTrAccessRights, u64::from(reset::TR.attr));
        w.write(F::GuestGdtrBase, 0);
        w.write(F::GuestGdtrLimit, u64::from(reset::DESCRIPTOR_TABLE.limit));
        w.write(F::GuestIdtrBase, 0);
        w.write(F::GuestIdtrLimit, u64::from(reset::DESCRIPTOR_TABLE.limit));
        w.write(F::GuestDr7, reset::DR7);
        w.write(F::GuestRsp, 0);
        w.write(F::GuestRip, reset::RIP);
        w.write(F::GuestRflags, reset::RFLAGS);
        w.write(F::GuestPendingDebugExceptions, 0);
        w.write(F::GuestInterruptibilityState, 0);
        w.write(F::GuestActivityState, 0);
        w.write(F::GuestIa32Debugctl, 0);
        w.write(F::GuestIa32Pat, reset::PAT);
        w.write(F::GuestIa32SysenterCs, 0);
        w.write(F::GuestIa32SysenterEsp, 0);
        w.write(F::GuestIa32SysenterEip, 0);
        w.write(F::VmEntryInterruptionInformation, 0);
        w.write(F::GuestCr3, 0);
        self.set_efer(0);
        self.set_cr(0, reset::CR0);
        self.set_cr(4, 0);
        self.pending_cr2 = Some(0);
        // XCR0 = 1, x87/SSE/AVX initialized (SDM Vol 3A 9.1.1, Table 9-1).
        self.fpu.reset();
        self.pending_debug_status = None;
        self.shutdown_pending = false;
        self.gprs = reset::gprs(self.config.cpu_signature);
    }

    fn set_segment(&mut self, seg: Sreg, s: Segment) {
        let (sel, base, limit, ar) = segment_fields(seg);
        self.vmcs.write(sel, u64::from(s.selector));
        self.vmcs.write(base, s.base);
        self.vmcs.write(limit, u64::from(s.limit));
        self.vmcs.write(ar, access_rights_from_attrs(s.attr));
    }

    /// The VMCS access, for diagnostics.
    pub fn vmcs(&self) -> &V {
        &self.vmcs
    }

    /// The controls this vCPU runs with.
    pub fn controls(&self) -> &VmxControls {
        &self.config.controls
    }

    /// Decodes the exit that the last VM entry ended with.
    pub fn exit(&self) -> VmExit {
        decode_exit(&self.vmcs, self.config.controls.ins_outs_info)
    }

    /// Called after each VM exit: an event whose delivery the exit
    /// interrupted (IDT-vectoring information, SDM 28.2.4) is queued again
    /// with its type, error code and, for INTn, INT3, INTO and ICEBP, the
    /// length of the instruction, which the exit reported in the VM-exit
    /// instruction-length field (SDM 27.2.4) and VM entry needs to push the
    /// return address past it (SDM 26.6.1.3).
    pub(crate) fn after_exit(&mut self) {
        use super::exit_reason::ExitReason as R;
        self.nmi_window_exit =
            R::from_basic(self.vmcs.read(F::ExitReason) as u16) == Some(R::NmiWindow);
        self.restore_nmi_blocking();
        let info = self.vmcs.read(F::IdtVectoringInformation) as u32;
        if info & (ENTRY_INTR_VALID as u32) == 0 {
            return;
        }
        let code = self.vmcs.read(F::IdtVectoringErrorCode) as u32;
        let len = self.vmcs.read(F::VmExitInstructionLength) as u8;
        if let Some(event) = event::from_vmx(info, code, len) {
            self.write_event(event);
        }
    }

    /// Virtual-NMI blocking across an exit (SDM Vol 3C 28.2.3, 31.7.1.2):
    /// an NMI whose delivery the exit interrupted left the blocking it set
    /// in effect, but is injected again, and VM entry refuses to inject an
    /// NMI under blocking by NMI (26.3.1.5): cleared. A fault (or EPT
    /// violation) inside an IRET that had unblocked NMIs cleared the
    /// blocking though the IRET will run again: set again.
    fn restore_nmi_blocking(&mut self) {
        let vectoring = self.vmcs.read(F::IdtVectoringInformation);
        let state = self.vmcs.read(F::GuestInterruptibilityState);
        let state = if vectoring & INFO_VALID != 0 {
            if vectoring & INFO_TYPE_MASK == INFO_TYPE_NMI {
                state & !BLOCKING_BY_NMI
            } else {
                state
            }
        } else {
            use super::exit_reason::ExitReason as R;
            let reason = R::from_basic(self.vmcs.read(F::ExitReason) as u16);
            let unblocked_by_iret = match reason {
                Some(R::ExceptionOrNmi) => {
                    let info = self.vmcs.read(F::VmExitInterruptionInformation);
                    info & INFO_VALID != 0
                        && info & 0xff != DOUBLE_FAULT
                        && info & NMI_UNBLOCKING_DUE_TO_IRET != 0
                }
                Some(R::EptViolation) => {
                    self.vmcs.read(F::ExitQualification) & NMI_UNBLOCKING_DUE_TO_IRET != 0
                }
                _ => false,
            };
            if unblocked_by_iret {
                state | BLOCKING_BY_NMI
            } else {
                state
            }
        };
        if state != self.vmcs.read(F::GuestInterruptibilityState) {
            self.vmcs.write(F::GuestInterruptibilityState, state);
        }
    }

    /// The event in the VM-entry interruption-information field, if one is queued.
    fn queued_event(&self) -> Option<Event> {
        event::from_vmx(
            self.vmcs.read(F::VmEntryInterruptionInformation) as u32,
            self.vmcs.read(F::VmEntryExceptionErrorCode) as u32,
            self.vmcs.read(F::VmEntryInstructionLength) as u8,
        )
    }

    /// Writes `event` into the VM-entry event-injection fields by the rules
    /// of [`event::vmx_entry`] for the guest's current CR0.PE.
    fn write_event(&mut self, e: Event) {
        let protected = self.vmcs.read(F::GuestCr0) & CR0_PE != 0;
        let x = event::vmx_entry(e, protected);
        if let Some(code) = x.error_code {
            self.vmcs
                .write(F::VmEntryExceptionErrorCode, u64::from(code));
        }
        if let Some(len) = x.instruction_len {
            self.vmcs.write(F::VmEntryInstructionLength, u64::from(len));
        }
        self.vmcs
            .write(F::VmEntryInterruptionInformation, u64::from(x.info));
    }

    /// Sets or clears one primary processor-based control (the two window
    /// exits); written only when it changes.
    fn set_primary(&mut self, bit: PrimaryProcessorBased, on: bool) {
        let old = self.config.controls.primary;
        self.config.controls.primary.set(bit, on);
        if self.config.controls.primary != old {
            self.vmcs.write(
                F::PrimaryProcessorBasedVmExecutionControls,
                u64::from(self.config.controls.primary.bits()),
            );
        }
    }

    /// Takes a shutdown that event combination left (an exception while
    /// delivering #DF): the run loop then stops as for a triple fault.
    pub(crate) fn take_shutdown(&mut self) -> bool {
        core::mem::take(&mut self.shutdown_pending)
    }

    /// The entry controls for the guest's current EFER: IA-32e mode guest
    /// equals EFER.LMA (SDM 26.2.4, 26.3.1.1).
    pub(crate) fn sync_entry_controls(&mut self) {
        let mut entry = self.config.controls.entry;
        if self.vmcs.read(F::GuestIa32Efer) & EFER_LMA != 0 {
            entry |= EntryControls::IA32E_MODE_GUEST;
        }
        self.vmcs.write(F::VmEntryControls, u64::from(entry.bits()));
    }

    /// The CR4 bits Keel owns: the processor's fixed bits and the hidden ones.
    fn cr4_guest_host_mask(&self) -> u64 {
        self.config.controls.cr4_guest_host_mask() | self.config.cr4_hidden
    }

    fn guest_view(&self, real: F, shadow: F, mask: u64) -> u64 {
        (self.vmcs.read(real) & !mask) | (self.vmcs.read(shadow) & mask)
    }
}

impl<V: Vmcs> VcpuState for VmxVcpu<V> {
    fn vcpu_id(&self) -> u32 {
        self.config.vcpu_id
    }

    fn gpr(&self, reg: Gpr) -> u64 {
        match reg {
            Gpr::Rsp => self.vmcs.read(F::GuestRsp),
            other => self.gprs.get(other).unwrap_or(0),
        }
    }

    fn set_gpr(&mut self, reg: Gpr, value: u64) {
        if !self.gprs.set(reg, value) {
            self.vmcs.write(F::GuestRsp, value);
        }
    }

    fn rip(&self) -> u64 {
        self.vmcs.read(F::GuestRip)
    }
    fn set_rip(&mut self, rip: u64) {
        self.vmcs.write(F::GuestRip, rip);
    }
    fn rflags(&self) -> u64 {
        self.vmcs.read(F::GuestRflags)
    }
    fn set_rflags(&mut self, rflags: u64) {
        self.vmcs.write(F::GuestRflags, rflags);
    }

    /// CR0 as the guest reads it: owned bits from GUEST_CR0, masked bits from the shadow.
    fn cr0(&self) -> u64 {
        self.guest_view(
            F::GuestCr0,
            F::Cr0ReadShadow,
            self.config.controls.cr0_guest_host_mask(),
        )
    }
    fn cr3(&self) -> u64 {
        self.vmcs.read(F::GuestCr3)
    }
    fn cr4(&self) -> u64 {
        self.guest_view(F::GuestCr4, F::Cr4ReadShadow, self.cr4_guest_host_mask())
    }

    /// A MOV to CRn: the guest's value goes to the read shadow, the value the
    /// CPU runs with keeps the fixed bits (NE, VMXE). A CR0.PG change with
    /// EFER.LME set activates or deactivates long mode (SDM Vol 3A 9.8.5).
    fn set_cr(&mut self, cr: u8, value: u64) {
        let c = self.config.controls;
        match cr {
            0 => {
                let value = value & 0xffff_ffff;
                let real = (value | c.guest_cr0_must_be_one) & !c.guest_cr0_must_be_zero;
                self.vmcs.write(F::Cr0ReadShadow, value);
                self.vmcs.write(F::GuestCr0, real);
                let efer = self.vmcs.read(F::GuestIa32Efer);
                let lma = if value & CR0_PG != 0 && efer & EFER_LME != 0 {
                    EFER_LMA
                } else {
                    0
                };
                self.vmcs.write(F::GuestIa32Efer, (efer & !EFER_LMA) | lma);
                self.sync_entry_controls();
            }
            2 => self.pending_cr2 = Some(value),
            3 => self.vmcs.write(F::GuestCr3, value),
            4 => {
                let real = (value | c.guest_cr4_must_be_one) & !c.guest_cr4_must_be_zero;
                self.vmcs.write(F::Cr4ReadShadow, value);
                self.vmcs.write(F::GuestCr4, real);
            }
            _ => {}
        }
    }

    fn efer(&self) -> u64 {
        self.vmcs.read(F::GuestIa32Efer)
    }
    fn set_efer(&mut self, efer: u64) {
        self.vmcs.write(F::GuestIa32Efer, efer);
        self.sync_entry_controls();
    }

    fn segment(&self, seg: Sreg) -> Segment {
        let (sel, base, limit, ar) = segment_fields(seg);
        Segment {
            selector: self.vmcs.read(sel) as u16,
            base: self.vmcs.read(base),
            limit: self.vmcs.read(limit) as u32,
            attr: attrs_from_access_rights(self.vmcs.read(ar)),
        }
    }

    /// CPL is SS.DPL in the VMCS guest state (SDM 26.3.1.2).
    fn cpl(&self) -> u8 {
        ((self.vmcs.read(F::GuestSsAccessRights) >> 5) & 3) as u8
    }

    /// Queues `event`, combined with an event already queued by the
    /// double-fault rules (see [`event::combine`]).
    fn inject(&mut self, new: Event) {
        let queued = self.queued_event();
        match event::combine(queued, new) {
            event::Combined::Deliver(e) if Some(e) == queued => {}
            event::Combined::Deliver(e) => self.write_event(e),
            event::Combined::Shutdown => {
                self.vmcs.write(F::VmEntryInterruptionInformation, 0);
                self.shutdown_pending = true;
            }
        }
    }

    /// Drops blocking by STI and by MOV SS from the interruptibility state.
    fn clear_interrupt_shadow(&mut self) {
        let s = self.vmcs.read(F::GuestInterruptibilityState);
        if s & BLOCKING_BY_STI_OR_MOV_SS != 0 {
            self.vmcs.write(
                F::GuestInterruptibilityState,
                s & !BLOCKING_BY_STI_OR_MOV_SS,
            );
        }
    }

    fn dr7(&self) -> u64 {
        self.vmcs.read(F::GuestDr7)
    }

    fn interrupt_shadow(&self) -> bool {
        self.vmcs.read(F::GuestInterruptibilityState) & BLOCKING_BY_STI_OR_MOV_SS != 0
    }

    /// The VM-entry interruption information is valid (VM exits clear it, SDM 27.2.3).
    fn tsc_offset(&self) -> u64 {
        self.vmcs.read(F::TscOffset)
    }
    fn set_tsc_offset(&mut self, offset: u64) {
        self.vmcs.write(F::TscOffset, offset);
    }
    fn event_pending(&self) -> bool {
        self.vmcs.read(F::VmEntryInterruptionInformation) & ENTRY_INTR_VALID != 0
    }

    /// Interrupt-window exiting (SDM 25.6.2): an exit at the start of any
    /// instruction at which RFLAGS.IF = 1 and nothing blocks interrupts.
    fn set_interrupt_window_exiting(&mut self, on: bool) {
        self.set_primary(PrimaryProcessorBased::INTERRUPT_WINDOW_EXITING, on);
    }
    /// Virtual-NMI blocking (virtual NMIs are on, `controls`).
    fn nmi_blocked(&self) -> bool {
        self.vmcs.read(F::GuestInterruptibilityState) & BLOCKING_BY_NMI != 0
    }
    /// NMI-window exiting (SDM 25.6.2, 26.7.6): an exit before any
    /// instruction at which there is no virtual-NMI blocking and no
    /// blocking by MOV SS.
    fn set_nmi_window_exiting(&mut self, on: bool) {
        self.set_primary(PrimaryProcessorBased::NMI_WINDOW_EXITING, on);
    }
    /// Blocking by MOV SS forbids injecting an NMI (SDM 26.3.1.5); some
    /// processors refuse it under blocking by STI too, and those do not
    /// take the NMI-window exit inside an STI shadow (SDM 26.7.6), so the
    /// STI shadow holds an NMI back except right after that exit (where a
    /// processor that exits there takes the NMI).
    fn nmi_shadow(&self) -> bool {
        let state = self.vmcs.read(F::GuestInterruptibilityState);
        state & BLOCKING_BY_MOV_SS != 0
            || (state & BLOCKING_BY_STI_OR_MOV_SS != 0 && !self.nmi_window_exit)
    }
    fn set_xcr0(&mut self, xcr0: u64) {
        self.fpu.xcr0 = xcr0;
    }
    fn xcr0(&self) -> u64 {
        self.fpu.xcr0
    }
    fn offer_rdtscp(&mut self, offered: bool) {
        let on = offered && self.config.controls.rdtscp_allowed();
        self.config
            .controls
            .secondary
            .set(SecondaryProcessorBased::ENABLE_RDTSCP, on);
        let bits = u64::from(self.config.controls.secondary.bits());
        self.vmcs
            .write(F::SecondaryProcessorBasedVmExecutionControls, bits);
    }
    fn set_tsc_exiting(&mut self, on: bool) {
        // With "enable RDTSCP" set, RDTSCP exits under RDTSC exiting too
        // (SDM Vol 3C 26.1.3).
        self.set_primary(PrimaryProcessorBased::RDTSC_EXITING, on);
    }
    fn tsc_aux(&self) -> u32 {
        self.fpu.tsc_aux
    }
    fn set_tsc_aux(&mut self, v: u32) {
        self.fpu.tsc_aux = v;
    }
    fn set_segment(&mut self, seg: Sreg, s: Segment) {
        VmxVcpu::set_segment(self, seg, s);
    }
    fn ldtr(&self) -> Segment {
        Segment {
            selector: self.vmcs.read(F::GuestLdtrSelector) as u16,
            base: self.vmcs.read(F::GuestLdtrBase),
            limit: self.vmcs.read(F::GuestLdtrLimit) as u32,
            attr: attrs_from_access_rights(self.vmcs.read(F::GuestLdtrAccessRights)),
        }
    }
    fn set_ldtr(&mut self, s: Segment) {
        self.vmcs.write(F::GuestLdtrSelector, u64::from(s.selector));
        self.vmcs.write(F::GuestLdtrBase, s.base);
        self.vmcs.write(F::GuestLdtrLimit, u64::from(s.limit));
        self.vmcs
            .write(F::GuestLdtrAccessRights, access_rights_from_attrs(s.attr));
    }
    fn gdtr(&self) -> Segment {
        Segment {
            selector: 0,
            base: self.vmcs.read(F::GuestGdtrBase),
            limit: self.vmcs.read(F::GuestGdtrLimit) as u32,
            attr: 0,
        }
    }
    fn cancel_event(&mut self) {
        self.vmcs.write(F::VmEntryInterruptionInformation, 0);
    }
    /// DR6 is written before the next entry (the hardware register is the
    /// guest's: VMX does not switch it); DR7 is in the VMCS.
    fn debug_exception(&mut self, status: Option<u64>) {
        let Some(status) = status else { return };
        self.pending_debug_status = Some(status);
        if status & crate::exit::DR6_BD != 0 {
            let dr7 = self.vmcs.read(F::GuestDr7);
            self.vmcs.write(F::GuestDr7, dr7 & !crate::exit::DR7_GD);
        }
    }
    fn load_cr3(&mut self, cr3: u64, pae_pdptes: Option<[u64; 4]>) {
        self.vmcs.write(F::GuestCr3, cr3);
        if let Some(pdptes) = pae_pdptes {
            for (f, v) in [
                F::GuestPdpte0,
                F::GuestPdpte1,
                F::GuestPdpte2,
                F::GuestPdpte3,
            ]
            .into_iter()
            .zip(pdptes)
            {
                self.vmcs.write(f, v);
            }
        }
        // INVEPT drops the guest's combined mappings (SDM Vol 3C 29.4.3.1).
        self.flush_pending = true;
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::vcpu::CpuMode;
    use crate::vmx::controls::tests::skylake_x;
    use crate::vmx::decode::tests::FakeVmcs;

    impl Vmcs for FakeVmcs {
        fn write(&mut self, field: F, value: u64) {
            self.set(field, value);
        }
        fn take_error(&mut self) -> Option<(F, VmxInstructionError)> {
            None
        }
    }

    pub fn vcpu() -> VmxVcpu<FakeVmcs> {
        vcpu_hiding_cr4(0)
    }

    /// [`vcpu`] for a VM whose CPUID hides the CR4 bits `cr4_hidden`.
    fn vcpu_hiding_cr4(cr4_hidden: u64) -> VmxVcpu<FakeVmcs> {
        let config = VmxVcpuConfig {
            vcpu_id: 0,
            vpid: 1,
            eptp: 0x20_001e,
            controls: VmxControls::new(&skylake_x()).unwrap(),
            cpu_signature: 0x0005_0654,
            cr4_hidden,
        };
        let host = HostState {
            cr0: 0x8001_0031,
            cr4: 0x2020,
            tr: 0x18,
            cs: 0x8,
            ss: 0x10,
            tr_base: 0x1234_5000,
            ..Default::default()
        };
        // SAFETY: host tests never run the vCPU.
        unsafe {
            VmxVcpu::new(
                config,
                Box::new(IoBitmaps::intercept_all()),
                Box::new(MsrBitmap::intercept_all()),
                FakeVmcs::default(),
                &host,
                |va| va as u64,
            )
        }
    }

    fn read(v: &VmxVcpu<FakeVmcs>, f: F) -> u64 {
        v.vmcs.read(f)
    }

    #[test]
    fn reset_state_is_architectural() {
        let v = vcpu();
        assert_eq!(v.mode(), CpuMode::Real);
        assert_eq!(v.rip(), 0xfff0);
        let cs = v.segment(Sreg::Cs);
        assert_eq!(
            (cs.selector, cs.base, cs.limit, cs.attr),
            (0xf000, 0xffff_0000, 0xffff, 0x9b)
        );
        assert_eq!(read(&v, F::GuestCsAccessRights), 0x9b);
        assert_eq!(v.gpr(Gpr::Rdx), 0x0005_0654);
        assert_eq!(v.rflags(), 2);
        assert_eq!(v.efer(), 0);
        assert_eq!(v.cr0(), 0x6000_0010, "the guest sees the RESET value");
        assert_eq!(read(&v, F::GuestCr0), 0x6000_0030, "the CPU runs with NE");
        assert_eq!(v.cr4(), 0, "VMXE is hidden");
        assert_eq!(read(&v, F::GuestCr4), 0x2000);
        assert_eq!(v.cpl(), 0);
        assert_eq!(read(&v, F::VmcsLinkPointer), u64::MAX);
        assert_eq!(read(&v, F::GuestTrAccessRights), 0x8b);
    }

    #[test]
    fn controls_bitmaps_and_host_state_are_written() {
        let v = vcpu();
        let c = v.config.controls;
        assert_eq!(
            read(&v, F::SecondaryProcessorBasedVmExecutionControls),
            u64::from(c.secondary.bits())
        );
        assert_eq!(read(&v, F::EptPointer), 0x20_001e);
        assert_eq!(read(&v, F::VirtualProcessorId), 1);
        assert_eq!(read(&v, F::IoBitmapA), &*v._pages.io as *const _ as u64);
        assert_eq!(
            read(&v, F::IoBitmapB),
            &*v._pages.io as *const _ as u64 + 4096
        );
        assert_eq!(read(&v, F::MsrBitmap), &*v._pages.msr as *const _ as u64);
        assert_eq!(read(&v, F::HostTrSelector), 0x18);
        assert_eq!(read(&v, F::HostTrBase), 0x1234_5000);
        assert_eq!(read(&v, F::HostCr0), 0x8001_0031);
        assert_eq!(read(&v, F::Cr0GuestHostMask) & 0x20, 0x20);
        assert_eq!(read(&v, F::Cr4GuestHostMask) & 0x2000, 0x2000);
        assert_eq!(
            read(&v, F::VmEntryControls) & u64::from(EntryControls::IA32E_MODE_GUEST.bits()),
            0
        );
    }

    /// A CR4 bit the CPU has but the VM's CPUID hides (SMEP here) is Keel's
    /// in the guest/host mask, so a MOV to CR4 setting it exits; the guest
    /// reads it from the read shadow.
    #[test]
    fn hidden_cr4_bits_are_owned_by_keel() {
        const SMEP: u64 = 1 << 20;
        assert_eq!(read(&vcpu(), F::Cr4GuestHostMask) & SMEP, 0);
        let mut v = vcpu_hiding_cr4(SMEP);
        assert_eq!(read(&v, F::Cr4GuestHostMask) & SMEP, SMEP);
        v.vmcs.write(F::GuestCr4, 0x2000 | SMEP);
        v.vmcs.write(F::Cr4ReadShadow, 0);
        assert_eq!(v.cr4() & SMEP, 0, "the guest's view is the shadow's");
    }

    #[test]
    fn cr0_writes_keep_ne_and_track_long_mode() {
        let mut v = vcpu();
        v.set_cr(4, 0x20);
        assert_eq!(v.cr4(), 0x20);
        assert_eq!(read(&v, F::GuestCr4), 0x2020);
        v.set_efer(EFER_LME);
        v.set_cr(0, 0x8000_0011);
        assert_eq!(v.cr0(), 0x8000_0011);
        assert_eq!(read(&v, F::GuestCr0), 0x8000_0031);
        assert_eq!(v.efer(), EFER_LME | EFER_LMA);
        let ia32e = u64::from(EntryControls::IA32E_MODE_GUEST.bits());
        assert_eq!(read(&v, F::VmEntryControls) & ia32e, ia32e);
        v.set_cr(0, 0x11);
        assert_eq!(v.efer(), EFER_LME);
        assert_eq!(read(&v, F::VmEntryControls) & ia32e, 0);
        // A guest that sets NE itself sees it.
        v.set_cr(0, 0x31);
        assert_eq!(v.cr0(), 0x31);
        v.set_cr(2, 0xdead_b000);
        assert_eq!(v.pending_cr2, Some(0xdead_b000));
    }

    /// VMX does not switch XCR0: a guest XSETBV the handler accepted is
    /// kept for the next entry, and RESET puts back XCR0 = 1 (SDM Vol 3A
    /// Table 9-1).
    #[test]
    fn xcr0_is_kept_for_the_next_entry() {
        let mut v = vcpu();
        v.set_xcr0(0x7);
        assert_eq!(VcpuState::xcr0(&v), 0x7);
        v.reset();
        assert_eq!(VcpuState::xcr0(&v), 1);
    }

    /// #DB and #AC exit (CVE-2015-8104, CVE-2015-5307); a #DB's status is
    /// merged into DR6 before the next entry, and a general-detect #DB
    /// clears DR7.GD (SDM Vol 3A 17.2.4).
    #[test]
    fn debug_and_alignment_check_exit_and_db_updates_dr6_and_dr7() {
        let mut v = vcpu();
        assert_eq!(read(&v, F::ExceptionBitmap), (1 << 1) | (1 << 17));
        v.vmcs.write(F::GuestDr7, 0x2401);
        v.debug_exception(Some(1 << 14));
        assert_eq!(v.pending_debug_status, Some(1 << 14));
        assert_eq!(read(&v, F::GuestDr7), 0x2401, "GD stays for a single step");
        v.debug_exception(Some(crate::exit::DR6_BD));
        assert_eq!(
            read(&v, F::GuestDr7),
            0x0401,
            "GD clears for general detect"
        );
        v.reset();
        assert_eq!(v.pending_debug_status, None);
    }

    #[test]
    fn registers_round_trip() {
        let mut v = vcpu();
        for i in 0..16u8 {
            v.set_gpr(Gpr::from_index(usize::from(i)), 0x1000 + u64::from(i));
        }
        for i in 0..16u8 {
            assert_eq!(
                v.gpr(Gpr::from_index(usize::from(i))),
                0x1000 + u64::from(i)
            );
        }
        assert_eq!(read(&v, F::GuestRsp), 0x1004);
        assert_eq!(v.gprs.rax, 0x1000);
    }

    /// Drops whatever event is queued, as a VM exit does (SDM 27.2.3).
    fn exit(v: &mut VmxVcpu<FakeVmcs>) {
        v.vmcs.set(F::VmEntryInterruptionInformation, 0);
    }

    #[test]
    fn event_injection_encoding() {
        let mut v = vcpu();
        v.set_cr(0, 0x11);
        v.inject(Event::GP0);
        assert_eq!(read(&v, F::VmEntryInterruptionInformation), 0x8000_0b0d);
        assert_eq!(read(&v, F::VmEntryExceptionErrorCode), 0);
        exit(&mut v);
        v.inject(Event::Exception {
            vector: 14,
            error_code: Some(2),
        });
        assert_eq!(read(&v, F::VmEntryInterruptionInformation), 0x8000_0b0e);
        assert_eq!(read(&v, F::VmEntryExceptionErrorCode), 2);
        exit(&mut v);
        v.inject(Event::UD);
        assert_eq!(read(&v, F::VmEntryInterruptionInformation), 0x8000_0306);
        exit(&mut v);
        v.inject(Event::ExternalInterrupt { vector: 0x30 });
        assert_eq!(read(&v, F::VmEntryInterruptionInformation), 0x8000_0030);
        exit(&mut v);
        v.inject(Event::Nmi);
        assert_eq!(read(&v, F::VmEntryInterruptionInformation), 0x8000_0202);
    }

    /// Finding #2: RDMSR of an unknown MSR in real mode raised #GP with an
    /// error code, which VM entry refuses with CR0.PE = 0 (SDM 26.2.1.3).
    #[test]
    fn real_mode_exceptions_carry_no_error_code() {
        let mut v = vcpu();
        assert_eq!(v.mode(), CpuMode::Real);
        v.inject(Event::GP0);
        assert_eq!(read(&v, F::VmEntryInterruptionInformation), 0x8000_030d);
        assert_eq!(offending_event_field(&v), None);
    }

    fn offending_event_field(v: &VmxVcpu<FakeVmcs>) -> Option<F> {
        crate::vmx::diagnose::pre_entry_check(v.vmcs(), v.controls()).map(|f| f.0)
    }

    /// An exception raised while the re-queued one is delivered combines
    /// with it (SDM Vol 3A 6.15); one raised while delivering #DF shuts down.
    #[test]
    fn injections_over_a_queued_event_follow_the_double_fault_rules() {
        let mut v = vcpu();
        v.set_cr(0, 0x11);
        v.inject(Event::Exception {
            vector: 14,
            error_code: Some(2),
        });
        v.inject(Event::GP0);
        assert_eq!(read(&v, F::VmEntryInterruptionInformation), 0x8000_0b08);
        assert_eq!(read(&v, F::VmEntryExceptionErrorCode), 0);
        assert!(!v.take_shutdown());
        v.inject(Event::UD);
        assert!(!v.event_pending());
        assert!(v.take_shutdown(), "the next run is a triple fault");
        assert!(!v.take_shutdown());
    }

    #[test]
    fn interrupt_shadow_is_cleared_after_a_skipped_hlt() {
        let mut v = vcpu();
        v.vmcs.set(F::GuestInterruptibilityState, 0b1001);
        v.vmcs.set(F::VmExitInstructionLength, 1);
        v.skip_instruction(1);
        assert_eq!(
            read(&v, F::GuestInterruptibilityState),
            0b1000,
            "NMI blocking stays"
        );
        assert_eq!(v.rip(), 0xfff1);
    }

    #[test]
    fn interrupt_window_and_shadow() {
        let mut v = vcpu();
        let base = read(&v, F::PrimaryProcessorBasedVmExecutionControls);
        let window = u64::from(PrimaryProcessorBased::INTERRUPT_WINDOW_EXITING.bits());
        v.set_interrupt_window_exiting(true);
        assert_eq!(
            read(&v, F::PrimaryProcessorBasedVmExecutionControls),
            base | window
        );
        v.set_interrupt_window_exiting(false);
        assert_eq!(read(&v, F::PrimaryProcessorBasedVmExecutionControls), base);
        v.vmcs.set(F::GuestInterruptibilityState, 1);
        assert!(v.interrupt_shadow());
        v.clear_interrupt_shadow();
        assert!(!v.interrupt_shadow());
        assert!(!v.event_pending());
        v.inject(Event::Nmi);
        assert!(v.event_pending());
    }

    #[test]
    fn interrupted_events_are_queued_again() {
        let mut v = vcpu();
        v.set_cr(0, 0x11);
        // External interrupt 0x34 whose delivery hit an EPT violation.
        v.vmcs.set(F::IdtVectoringInformation, 0x8000_0034);
        v.after_exit();
        assert_eq!(read(&v, F::VmEntryInterruptionInformation), 0x8000_0034);
        // #GP with its error code.
        exit(&mut v);
        v.vmcs
            .set(F::IdtVectoringInformation, 0x8000_0b0d)
            .set(F::IdtVectoringErrorCode, 0x1234);
        v.after_exit();
        assert_eq!(read(&v, F::VmEntryInterruptionInformation), 0x8000_0b0d);
        assert_eq!(read(&v, F::VmEntryExceptionErrorCode), 0x1234);
    }

    /// Finding #15: ICEBP (type 5) was queued again without the instruction
    /// length VM entry needs (SDM 26.2.1.3, 26.6.1.3); INTn and INT3 come
    /// back with theirs too.
    #[test]
    fn interrupted_software_events_keep_type_and_length() {
        let mut v = vcpu();
        for (info, len) in [(0x8000_0501u64, 1u64), (0x8000_0480, 2), (0x8000_0603, 1)] {
            exit(&mut v);
            v.vmcs
                .set(F::IdtVectoringInformation, info)
                .set(F::VmExitInstructionLength, len);
            v.vmcs.set(F::VmEntryInstructionLength, 0);
            v.after_exit();
            assert_eq!(read(&v, F::VmEntryInterruptionInformation), info);
            assert_eq!(read(&v, F::VmEntryInstructionLength), len, "{info:#x}");
            assert_eq!(offending_event_field(&v), None);
        }
    }

    /// Virtual NMIs (SDM Vol 3C 25.3, 26.7.6, 28.2.3): blocking by NMI is
    /// the guest's, the NMI window is an exit control beside the
    /// interrupt window, and an exit keeps the blocking as the next entry
    /// needs it.
    #[test]
    fn nmi_blocking_window_and_the_exits_that_change_them() {
        let mut v = vcpu();
        let base = read(&v, F::PrimaryProcessorBasedVmExecutionControls);
        let irq = u64::from(PrimaryProcessorBased::INTERRUPT_WINDOW_EXITING.bits());
        let nmi = u64::from(PrimaryProcessorBased::NMI_WINDOW_EXITING.bits());
        v.set_nmi_window_exiting(true);
        v.set_interrupt_window_exiting(true);
        assert_eq!(
            read(&v, F::PrimaryProcessorBasedVmExecutionControls),
            base | irq | nmi
        );
        v.set_interrupt_window_exiting(false);
        assert_eq!(
            read(&v, F::PrimaryProcessorBasedVmExecutionControls),
            base | nmi,
            "one window does not close the other"
        );
        v.set_nmi_window_exiting(false);
        assert_eq!(read(&v, F::PrimaryProcessorBasedVmExecutionControls), base);
        // Blocking by NMI, MOV SS and STI hold an NMI back; STI not at the
        // NMI-window exit (the CPU found the NMI deliverable there).
        v.vmcs.set(F::GuestInterruptibilityState, BLOCKING_BY_NMI);
        assert!(v.nmi_blocked() && !v.nmi_shadow());
        v.vmcs.set(F::GuestInterruptibilityState, 1);
        assert!(!v.nmi_blocked() && v.nmi_shadow() && v.interrupt_shadow());
        v.vmcs.set(F::ExitReason, 8);
        v.after_exit();
        assert!(!v.nmi_shadow(), "at the NMI-window exit");
        v.vmcs
            .set(F::GuestInterruptibilityState, BLOCKING_BY_MOV_SS);
        assert!(v.nmi_shadow(), "never under MOV SS");
        v.vmcs.set(F::ExitReason, 0);
        v.after_exit();
        // An exit while an injected NMI was being delivered: the blocking
        // it set is cleared, the NMI is queued again (26.3.1.5 would refuse
        // it otherwise).
        exit(&mut v);
        v.vmcs
            .set(F::GuestInterruptibilityState, BLOCKING_BY_NMI)
            .set(F::IdtVectoringInformation, 0x8000_0202);
        v.after_exit();
        assert_eq!(read(&v, F::VmEntryInterruptionInformation), 0x8000_0202);
        assert!(!v.nmi_blocked());
        assert_eq!(offending_event_field(&v), None);
        // An EPT violation inside an IRET that unblocked NMIs: blocked again.
        exit(&mut v);
        v.vmcs
            .set(F::IdtVectoringInformation, 0)
            .set(F::ExitReason, 48)
            .set(F::ExitQualification, NMI_UNBLOCKING_DUE_TO_IRET | 2)
            .set(F::GuestInterruptibilityState, 0);
        v.after_exit();
        assert!(v.nmi_blocked());
        // A #AC (exception exit) inside such an IRET: the same; a #DF never.
        for (info, blocked) in [
            (0x8000_1b11u64, true),
            (0x8000_1b08, false),
            (0x8000_0b11, false),
        ] {
            exit(&mut v);
            v.vmcs
                .set(F::ExitReason, 0)
                .set(F::VmExitInterruptionInformation, info)
                .set(F::GuestInterruptibilityState, 0);
            v.after_exit();
            assert_eq!(v.nmi_blocked(), blocked, "{info:#x}");
        }
    }

    #[test]
    fn access_rights_conversion() {
        assert_eq!(access_rights_from_attrs(0xa9b), 0xa09b);
        assert_eq!(attrs_from_access_rights(0xa09b), 0xa9b);
        assert_eq!(access_rights_from_attrs(0xc93), 0xc093);
        assert_eq!(access_rights_from_attrs(0), AR_UNUSABLE);
        assert_eq!(attrs_from_access_rights(AR_UNUSABLE | 0x93), 0x13);
    }
}
