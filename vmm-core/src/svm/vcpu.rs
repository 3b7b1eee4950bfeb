//! One SVM vCPU: its VMCB, the host state save page and the guest GPRs that
//! the VMCB does not hold.

use alloc::boxed::Box;

use super::decode::{decode_exit, ExitFeatures};
use super::intercepts::{InterceptCr, InterceptMisc1, InterceptMisc2};
use super::nmi::{ExitSeen, ExitState, ExitVerdict, NmiTracker};
use super::permission_maps::{IoPermissionMap, MsrPermissionMap};
use super::vmcb::{control, save, Vmcb};
use crate::event;
use crate::exit::VmExit;
use crate::fpu::GuestFpu;
use crate::vcpu::{Event, Gpr, GuestGprs, Segment, Sreg, VcpuState};

/// What a vCPU is set up with.
#[derive(Debug, Clone, Copy)]
pub struct SvmVcpuConfig {
    pub vcpu_id: u32,
    /// Address-space ID for the guest's TLB entries; never 0 (the host's).
    pub asid: u32,
    /// Host-physical address of the nested page table root.
    pub ncr3: u64,
    /// The CPU fills NRIP on instruction intercepts (CPUID Fn8000_000A EDX[3]).
    pub nrip_save: bool,
    /// The CPU names the GPR of an intercepted MOV CRn in EXITINFO1 (decode
    /// assists, CPUID Fn8000_000A EDX[7]).
    pub decode_assists: bool,
    /// TLB_CONTROL may flush just this guest's ASID (CPUID Fn8000_000A EDX[6]).
    pub flush_by_asid: bool,
    /// Processor signature (CPUID 1 EAX) that RESET leaves in EDX.
    pub cpu_signature: u32,
}

/// EFER.SVME: must be set in the guest's EFER for VMRUN (APM Vol 2, 15.5.1).
pub(crate) const EFER_SVME: u64 = 1 << 12;
const V_INTR_MASKING: u64 = 1 << 24;
/// VINTR fields used for interrupt-window exits: V_IRQ, V_INTR_PRIO = 15, V_IGN_TPR.
const V_IRQ_WINDOW: u64 = (1 << 8) | (0xf << 16) | (1 << 20);
/// `VmExit::InvalidGuestState` detail: Keel's own check found a guest state
/// VMRUN would refuse ([`super::pre_entry_check`]); the guest was not entered.
pub const DETAIL_PRE_ENTRY_CHECK: u64 = 1 << 62;
/// The exception intercept bits (APM Vol 2 15.12): #DB and #AC, whose
/// recursive delivery would otherwise hold the CPU (`exit::exception`).
const INTERCEPTED_EXCEPTIONS: u32 =
    (1 << crate::exit::exception_vectors::DB) | (1 << crate::exit::exception_vectors::AC);
/// EVENTINJ valid (APM Vol 2, 15.20).
const EVENTINJ_VALID: u64 = 1 << 31;
const CR0_PE: u64 = 1 << 0;
const CR0_PG: u64 = 1 << 31;
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// TLB_CONTROL (APM Vol 2 15.16.1, Table 15-9): 1 flushes every ASID's
/// entries on the next VMRUN; 3 only this guest's (needs FlushByAsid).
const TLB_FLUSH_ALL: u8 = 1;
const TLB_FLUSH_GUEST: u8 = 3;

/// An SVM virtual CPU.
pub struct SvmVcpu {
    pub(crate) vmcb: Box<Vmcb>,
    pub(crate) gprs: GuestGprs,
    pub(crate) vmcb_pa: u64,
    pub(crate) host_save_pa: u64,
    /// An exception arose while #DF was being delivered: the next run
    /// returns a shutdown instead of entering (APM Vol 2 8.2.9).
    pub(crate) shutdown_pending: bool,
    /// x87/SSE/AVX registers, XCR0 and TSC_AUX, which VMRUN and #VMEXIT do
    /// not switch ([`crate::fpu`]); XSETBV is intercepted so XCR0 lands here.
    pub(crate) fpu: GuestFpu,
    /// NMI blocking, which SVM leaves to Keel (`svm::nmi`).
    nmi: NmiTracker,
    /// The guest's CPUID offers RDTSCP, and RDTSC/RDTSCP exit (`set_tsc_exiting`).
    rdtscp_offered: bool,
    tsc_exiting: bool,
    config: SvmVcpuConfig,
    _pages: OwnedPages,
}

/// Pages the CPU reads by physical address (the host save page, and the
/// permission maps the VMCB points at), owned by the vCPU so they live as long.
#[allow(dead_code)] // only the CPU reads them, by physical address
struct OwnedPages {
    host_save: Box<Vmcb>,
    iopm: Box<IoPermissionMap>,
    msrpm: Box<MsrPermissionMap>,
}

impl SvmVcpu {
    /// A vCPU in the architectural RESET state, running with the given I/O
    /// and MSR permission maps. `phys` translates a Keel virtual address to a
    /// host-physical one (identity in Keel).
    ///
    /// # Safety
    /// Before [`Vcpu::run`](crate::Vcpu::run) is called, SVM must be enabled on
    /// the CPU that runs it ([`super::hw::enable`]), and `config.ncr3` must
    /// point at nested page tables that stay valid for the vCPU's life and map
    /// only memory that belongs to this guest; the host's page tables must
    /// have no user or global pages (Keel's CR4.SMEP, SMAP and PGE follow the
    /// guest's, [`super::hw`]).
    pub unsafe fn new(
        config: SvmVcpuConfig,
        iopm: Box<IoPermissionMap>,
        msrpm: Box<MsrPermissionMap>,
        phys: impl Fn(usize) -> u64,
    ) -> Self {
        let vmcb = Box::<Vmcb>::default();
        let host_save = Box::<Vmcb>::default();
        let vmcb_pa = phys(&*vmcb as *const Vmcb as usize);
        let host_save_pa = phys(&*host_save as *const Vmcb as usize);
        let iopm_pa = phys(&*iopm as *const IoPermissionMap as usize);
        let msrpm_pa = phys(&*msrpm as *const MsrPermissionMap as usize);
        let mut v = SvmVcpu {
            vmcb,
            gprs: GuestGprs::default(),
            vmcb_pa,
            host_save_pa,
            shutdown_pending: false,
            rdtscp_offered: false,
            tsc_exiting: false,
            fpu: GuestFpu::default(),
            nmi: NmiTracker::default(),
            config,
            _pages: OwnedPages {
                host_save,
                iopm,
                msrpm,
            },
        };
        v.vmcb.write_u64(control::IOPM_BASE_PA, iopm_pa);
        v.vmcb.write_u64(control::MSRPM_BASE_PA, msrpm_pa);
        v.setup_control();
        v.reset();
        v
    }

    fn setup_control(&mut self) {
        let c = &self.config;
        let misc1 = InterceptMisc1::INTR
            | InterceptMisc1::NMI
            | InterceptMisc1::CPUID
            | InterceptMisc1::RDPMC
            | InterceptMisc1::INVD
            | InterceptMisc1::HLT
            | InterceptMisc1::INVLPGA
            | InterceptMisc1::IOIO_PROT
            | InterceptMisc1::MSR_PROT
            | InterceptMisc1::SHUTDOWN;
        let misc2 = InterceptMisc2::VMRUN
            | InterceptMisc2::VMMCALL
            | InterceptMisc2::VMLOAD
            | InterceptMisc2::VMSAVE
            | InterceptMisc2::STGI
            | InterceptMisc2::CLGI
            | InterceptMisc2::SKINIT
            | InterceptMisc2::XSETBV
            | InterceptMisc2::RDTSCP
            | InterceptMisc2::WBINVD
            | InterceptMisc2::MONITOR
            | InterceptMisc2::MWAIT
            | InterceptMisc2::MWAIT_CONDITIONAL;
        // CR0 and CR4 writes only (a handful at boot), so that Keel checks
        // the value (`exit::cr`): not every CPU raises #GP for an illegal one
        // (QEMU TCG does not), and VMRUN refuses it afterwards. CR8 stays on
        // V_TPR; CR3 and reads are not intercepted.
        let cr = InterceptCr::CR0_WRITE | InterceptCr::CR4_WRITE;
        let v = &mut self.vmcb;
        v.write_u32(control::INTERCEPT_CR, cr.bits());
        v.write_u32(control::INTERCEPT_EXCEPTIONS, INTERCEPTED_EXCEPTIONS);
        v.write_u32(control::INTERCEPT_MISC1, misc1.bits());
        v.write_u32(control::INTERCEPT_MISC2, misc2.bits());
        v.write_u32(control::GUEST_ASID, c.asid.max(1));
        v.write_u64(control::NP_ENABLE, 1);
        v.write_u64(control::N_CR3, c.ncr3);
        // Physical interrupts stay the host's business while the guest runs.
        v.write_u64(control::VINTR, V_INTR_MASKING);
        v.write_u8(control::TLB_CONTROL, TLB_FLUSH_ALL);
    }

    /// Lets RDTSCP run without an exit when the guest's CPUID offers it (Keel
    /// loads the guest's TSC_AUX, [`crate::fpu`]); otherwise the intercept
    /// stays and the exit raises #UD, as on a CPU without RDTSCP.
    pub fn offer_rdtscp(&mut self, offered: bool) {
        let mut misc2 =
            InterceptMisc2::from_bits_retain(self.vmcb.read_u32(control::INTERCEPT_MISC2));
        self.rdtscp_offered = offered;
        misc2.set(InterceptMisc2::RDTSCP, !offered || self.tsc_exiting);
        self.vmcb.write_u32(control::INTERCEPT_MISC2, misc2.bits());
    }

    /// RDTSC and RDTSCP exit while `on`; RDTSCP also while CPUID hides it.
    pub fn set_tsc_exiting(&mut self, on: bool) {
        if on == self.tsc_exiting {
            return;
        }
        self.tsc_exiting = on;
        let mut misc1 =
            InterceptMisc1::from_bits_retain(self.vmcb.read_u32(control::INTERCEPT_MISC1));
        misc1.set(InterceptMisc1::RDTSC, on);
        self.vmcb.write_u32(control::INTERCEPT_MISC1, misc1.bits());
        let mut misc2 =
            InterceptMisc2::from_bits_retain(self.vmcb.read_u32(control::INTERCEPT_MISC2));
        misc2.set(InterceptMisc2::RDTSCP, !self.rdtscp_offered || on);
        self.vmcb.write_u32(control::INTERCEPT_MISC2, misc2.bits());
    }

    /// Loads the RESET state (APM Vol 2, 14.1.3, Table 14-1): real mode at
    /// F000:FFF0 with CS.base = FFFF0000.
    pub fn reset(&mut self) {
        use crate::reset;
        let v = &mut self.vmcb;
        for off in [save::ES, save::SS, save::DS, save::FS, save::GS] {
            v.set_segment(off, reset::DATA_SEGMENT);
        }
        v.set_segment(save::CS, reset::CODE_SEGMENT);
        v.set_segment(save::GDTR, reset::DESCRIPTOR_TABLE);
        v.set_segment(save::IDTR, reset::DESCRIPTOR_TABLE);
        v.set_segment(save::LDTR, reset::LDTR);
        v.set_segment(save::TR, reset::TR);
        v.write_u8(save::CPL, 0);
        v.write_u64(save::EFER, EFER_SVME);
        v.write_u64(save::CR0, reset::CR0);
        v.write_u64(save::CR2, 0);
        v.write_u64(save::CR3, 0);
        v.write_u64(save::CR4, 0);
        v.write_u64(save::DR6, reset::DR6);
        v.write_u64(save::DR7, reset::DR7);
        v.write_u64(save::RFLAGS, reset::RFLAGS);
        v.write_u64(save::RIP, reset::RIP);
        v.write_u64(save::RSP, 0);
        v.write_u64(save::RAX, 0);
        v.write_u64(save::G_PAT, reset::PAT);
        v.write_u64(control::EVENTINJ, 0);
        v.write_u64(control::INTERRUPT_SHADOW, 0);
        self.shutdown_pending = false;
        // INIT and RESET leave nothing blocked (KVM does the same for INIT).
        self.nmi.reset();
        self.sync_iret_intercept();
        // XCR0 = 1, x87/SSE/AVX initialized (APM Vol 2 Table 14-1).
        self.fpu.reset();
        self.gprs = reset::gprs(self.config.cpu_signature);
    }

    /// The VMCB, for diagnostics.
    pub fn vmcb(&self) -> &Vmcb {
        &self.vmcb
    }

    /// Decodes the exit that the last VMRUN ended with.
    pub fn exit(&self) -> VmExit {
        let features = ExitFeatures {
            nrip_save: self.config.nrip_save,
            decode_assists: self.config.decode_assists,
        };
        decode_exit(&self.vmcb, features)
    }

    /// Called after each #VMEXIT: a requested flush has happened, and an event
    /// whose delivery the exit interrupted (EXITINTINFO, APM Vol 2 15.7.2) is
    /// queued again. Software interrupts and #BP/#OF are not: the guest's RIP
    /// still points at the INTn / INT3 / INTO instruction, which runs again
    /// (SVM reports no instruction length to re-inject them with).
    pub(crate) fn after_exit(&mut self) {
        let interrupted = event::from_svm(self.vmcb.read_u64(control::EXITINTINFO));
        match interrupted {
            None | Some(Event::SoftwareInterrupt { .. } | Event::SoftwareException { .. }) => {}
            Some(e) => self.write_event(e),
        }
        self.vmcb.write_u8(control::TLB_CONTROL, 0);
        // Keel never uses VMCB clean bits: every field is reloaded on VMRUN.
        self.vmcb.write_u32(control::VMCB_CLEAN, 0);
    }

    /// Writes `e` into EVENTINJ by the rules of [`event::svm_eventinj`] for
    /// the guest's current CR0.PE. A software event's return address is past
    /// its instruction: RIP (and NRIP, which a CPU with NRIP save pushes for
    /// injected software interrupts) move there first.
    fn write_event(&mut self, e: Event) {
        if e == Event::Nmi {
            self.nmi.nmi_injected();
            self.sync_iret_intercept();
        }
        let x = event::svm_eventinj(e, self.cr0() & CR0_PE != 0);
        if let Some(len) = x.instruction_len {
            self.skip_instruction(len);
            let rip = self.rip();
            self.vmcb.write_u64(control::NRIP, rip);
        }
        self.vmcb.write_u64(control::EVENTINJ, x.eventinj());
    }

    /// The IRET intercept is on exactly while an NMI handler runs.
    fn sync_iret_intercept(&mut self) {
        let mut misc1 =
            InterceptMisc1::from_bits_retain(self.vmcb.read_u32(control::INTERCEPT_MISC1));
        misc1.set(InterceptMisc1::IRET, self.nmi.wants_iret_intercept());
        self.vmcb.write_u32(control::INTERCEPT_MISC1, misc1.bits());
    }

    fn nmi_state(&self) -> ExitState {
        ExitState {
            rip: self.vmcb.read_u64(save::RIP),
            rflags: self.vmcb.read_u64(save::RFLAGS),
            dr6: self.vmcb.read_u64(save::DR6),
        }
    }

    /// After an exit: NMI blocking follows the IRET and the single step
    /// (`svm::nmi`); Keel's own single-step #DB becomes the NMI window.
    pub(crate) fn track_nmi(&mut self, exit: VmExit) -> VmExit {
        let code = self.vmcb.read_u64(control::EXITCODE);
        let seen = match exit {
            VmExit::Exception { vector: 1, .. } => ExitSeen::DebugException,
            VmExit::NmiWindow if code == super::SvmExitCode::Iret as u64 => ExitSeen::Iret,
            _ => ExitSeen::Other,
        };
        let (s, verdict) = self.nmi.after_exit(seen, self.nmi_state());
        self.vmcb.write_u64(save::RFLAGS, s.rflags);
        self.vmcb.write_u64(save::DR6, s.dr6);
        self.sync_iret_intercept();
        match verdict {
            ExitVerdict::AsDecoded => exit,
            ExitVerdict::NmiWindow => VmExit::NmiWindow,
        }
    }

    /// Takes a shutdown that event combination left (an exception while
    /// delivering #DF): the run loop then stops as for a triple fault.
    pub(crate) fn take_shutdown(&mut self) -> bool {
        core::mem::take(&mut self.shutdown_pending)
    }
}

impl crate::Vcpu for SvmVcpu {
    fn run(&mut self) -> VmExit {
        if self.take_shutdown() {
            return VmExit::Shutdown;
        }
        // A guest state VMRUN would refuse stops the VM here, with the
        // field named, rather than as VMEXIT_INVALID.
        if let Some((field, why)) = super::pre_entry_check(&self.vmcb) {
            log::error!("not entering the guest: the VMCB field {field} {why}");
            return VmExit::InvalidGuestState {
                detail: DETAIL_PRE_ENTRY_CHECK,
            };
        }
        // SAFETY: the contract of `SvmVcpu::new` (SVM enabled, nested tables
        // valid and confined to this guest); the permission maps are owned by
        // `self`.
        let exit = unsafe { super::hw::run(self) };
        self.track_nmi(exit)
    }

    fn reset(&mut self) {
        SvmVcpu::reset(self)
    }

    /// This guest's ASID is flushed on the next VMRUN (or every ASID on a
    /// CPU without FlushByAsid).
    fn flush_tlb(&mut self) {
        let kind = if self.config.flush_by_asid {
            TLB_FLUSH_GUEST
        } else {
            TLB_FLUSH_ALL
        };
        self.vmcb.write_u8(control::TLB_CONTROL, kind);
    }
}

fn seg_offset(seg: Sreg) -> usize {
    match seg {
        Sreg::Es => save::ES,
        Sreg::Cs => save::CS,
        Sreg::Ss => save::SS,
        Sreg::Ds => save::DS,
        Sreg::Fs => save::FS,
        Sreg::Gs => save::GS,
        Sreg::Tr => save::TR,
    }
}

impl VcpuState for SvmVcpu {
    fn set_xcr0(&mut self, xcr0: u64) {
        self.fpu.xcr0 = xcr0;
    }
    fn xcr0(&self) -> u64 {
        self.fpu.xcr0
    }
    fn tsc_aux(&self) -> u32 {
        self.fpu.tsc_aux
    }
    fn set_tsc_aux(&mut self, value: u32) {
        self.fpu.tsc_aux = value;
    }
    fn offer_rdtscp(&mut self, offered: bool) {
        SvmVcpu::offer_rdtscp(self, offered);
    }
    fn set_tsc_exiting(&mut self, on: bool) {
        SvmVcpu::set_tsc_exiting(self, on);
    }
    fn vcpu_id(&self) -> u32 {
        self.config.vcpu_id
    }

    fn gpr(&self, reg: Gpr) -> u64 {
        match reg {
            Gpr::Rax => self.vmcb.read_u64(save::RAX),
            Gpr::Rsp => self.vmcb.read_u64(save::RSP),
            other => self.gprs.get(other).unwrap_or(0),
        }
    }

    fn set_gpr(&mut self, reg: Gpr, value: u64) {
        match reg {
            Gpr::Rax => self.vmcb.write_u64(save::RAX, value),
            Gpr::Rsp => self.vmcb.write_u64(save::RSP, value),
            other => {
                self.gprs.set(other, value);
            }
        }
    }

    fn rip(&self) -> u64 {
        self.vmcb.read_u64(save::RIP)
    }
    fn set_rip(&mut self, rip: u64) {
        self.vmcb.write_u64(save::RIP, rip);
    }
    fn rflags(&self) -> u64 {
        self.vmcb.read_u64(save::RFLAGS)
    }
    fn set_rflags(&mut self, rflags: u64) {
        self.vmcb.write_u64(save::RFLAGS, rflags);
    }
    fn cr0(&self) -> u64 {
        self.vmcb.read_u64(save::CR0)
    }
    fn cr3(&self) -> u64 {
        self.vmcb.read_u64(save::CR3)
    }
    fn cr4(&self) -> u64 {
        self.vmcb.read_u64(save::CR4)
    }
    /// A MOV to CRn the handler completes. Done by Keel instead of the CPU,
    /// it also does what the CPU would: a CR0.PG change with EFER.LME set
    /// activates or deactivates long mode (APM Vol 2 14.6.1), and a CR0 or
    /// CR4 write flushes the guest's TLB entries (their paging bits change
    /// translations; APM Vol 2 5.5.3).
    fn set_cr(&mut self, cr: u8, value: u64) {
        match cr {
            0 => {
                self.vmcb.write_u64(save::CR0, value);
                let efer = self.vmcb.read_u64(save::EFER);
                let lma = if value & CR0_PG != 0 && efer & EFER_LME != 0 {
                    EFER_LMA
                } else {
                    0
                };
                self.vmcb.write_u64(save::EFER, (efer & !EFER_LMA) | lma);
                crate::vcpu::Vcpu::flush_tlb(self);
            }
            2 => self.vmcb.write_u64(save::CR2, value),
            3 => self.vmcb.write_u64(save::CR3, value),
            4 => {
                self.vmcb.write_u64(save::CR4, value);
                crate::vcpu::Vcpu::flush_tlb(self);
            }
            _ => {}
        }
    }
    fn efer(&self) -> u64 {
        self.vmcb.read_u64(save::EFER) & !EFER_SVME
    }
    fn set_efer(&mut self, efer: u64) {
        self.vmcb.write_u64(save::EFER, efer | EFER_SVME);
    }
    fn segment(&self, seg: Sreg) -> Segment {
        self.vmcb.segment(seg_offset(seg))
    }
    fn cpl(&self) -> u8 {
        self.vmcb.read_u8(save::CPL)
    }
    /// Queues `new`, combined with an event already queued by the
    /// double-fault rules (see [`event::combine`]).
    fn inject(&mut self, new: Event) {
        let queued = event::from_svm(self.vmcb.read_u64(control::EVENTINJ));
        match event::combine(queued, new) {
            event::Combined::Deliver(e) if Some(e) == queued => {}
            event::Combined::Deliver(e) => self.write_event(e),
            event::Combined::Shutdown => {
                self.vmcb.write_u64(control::EVENTINJ, 0);
                self.shutdown_pending = true;
            }
        }
    }
    fn clear_interrupt_shadow(&mut self) {
        self.vmcb.write_u64(control::INTERRUPT_SHADOW, 0);
    }
    /// The #DB intercept comes after the CPU wrote the VMCB's DR6, so only
    /// DR7.GD is left to clear for a general-detect #DB.
    fn debug_exception(&mut self, _status: Option<u64>) {
        if self.vmcb.read_u64(save::DR6) & crate::exit::DR6_BD != 0 {
            let dr7 = self.vmcb.read_u64(save::DR7);
            self.vmcb.write_u64(save::DR7, dr7 & !crate::exit::DR7_GD);
        }
    }
    fn dr7(&self) -> u64 {
        self.vmcb.read_u64(save::DR7)
    }
    fn interrupt_shadow(&self) -> bool {
        self.vmcb.read_u64(control::INTERRUPT_SHADOW) & 1 != 0
    }
    fn event_pending(&self) -> bool {
        self.vmcb.read_u64(control::EVENTINJ) & EVENTINJ_VALID != 0
    }
    fn tsc_offset(&self) -> u64 {
        self.vmcb.read_u64(control::TSC_OFFSET)
    }
    fn set_tsc_offset(&mut self, offset: u64) {
        self.vmcb.write_u64(control::TSC_OFFSET, offset);
    }
    fn virtual_tpr(&self) -> Option<u8> {
        Some((self.vmcb.read_u64(control::VINTR) & 0xf) as u8)
    }
    fn set_virtual_tpr(&mut self, tpr: u8) {
        let vintr = self.vmcb.read_u64(control::VINTR) & !0xff;
        self.vmcb
            .write_u64(control::VINTR, vintr | u64::from(tpr & 0xf));
    }
    /// A virtual interrupt (V_IRQ) with the VINTR intercept: the CPU exits
    /// instead of delivering it once the guest can take interrupts (APM Vol 2 15.21.4).
    fn set_interrupt_window_exiting(&mut self, on: bool) {
        let vintr = self.vmcb.read_u64(control::VINTR) & !V_IRQ_WINDOW;
        let misc1 = InterceptMisc1::from_bits_retain(self.vmcb.read_u32(control::INTERCEPT_MISC1));
        let (vintr, misc1) = if on {
            (vintr | V_IRQ_WINDOW, misc1 | InterceptMisc1::VINTR)
        } else {
            (vintr, misc1 - InterceptMisc1::VINTR)
        };
        self.vmcb.write_u64(control::VINTR, vintr);
        self.vmcb.write_u32(control::INTERCEPT_MISC1, misc1.bits());
    }
    fn nmi_blocked(&self) -> bool {
        self.nmi.blocked()
    }
    /// In the handler the IRET intercept comes first; at the intercepted
    /// IRET or in a shadow, a single step (`svm::nmi`); with an event being
    /// injected, the next exit.
    fn set_nmi_window_exiting(&mut self, on: bool) {
        let on = on && !self.event_pending();
        let rflags = self.nmi.window(on, self.nmi_state());
        self.vmcb.write_u64(save::RFLAGS, rflags);
    }
    fn set_segment(&mut self, seg: Sreg, s: Segment) {
        self.vmcb.set_segment(seg_offset(seg), s);
        if seg == Sreg::Ss {
            self.vmcb.write_u8(save::CPL, s.dpl());
        }
    }
    fn ldtr(&self) -> Segment {
        self.vmcb.segment(save::LDTR)
    }
    fn set_ldtr(&mut self, s: Segment) {
        self.vmcb.set_segment(save::LDTR, s);
    }
    fn gdtr(&self) -> Segment {
        let g = self.vmcb.segment(save::GDTR);
        Segment {
            base: g.base,
            limit: g.limit,
            ..Segment::default()
        }
    }
    fn cancel_event(&mut self) {
        self.vmcb.write_u64(control::EVENTINJ, 0);
    }
    fn load_cr3(&mut self, cr3: u64, _pae_pdptes: Option<[u64; 4]>) {
        // Under nested paging the CPU reads the PAE PDPTEs from memory (APM Vol 2 15.25).
        self.vmcb.write_u64(save::CR3, cr3);
        crate::Vcpu::flush_tlb(self);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::CpuMode;

    fn maps_new(config: SvmVcpuConfig) -> SvmVcpu {
        let iopm = Box::new(IoPermissionMap::intercept_all());
        let msrpm = Box::new(MsrPermissionMap::intercept_all());
        // SAFETY: host tests never run the vCPU.
        unsafe { SvmVcpu::new(config, iopm, msrpm, |va| va as u64) }
    }

    fn vcpu() -> SvmVcpu {
        let config = SvmVcpuConfig {
            vcpu_id: 0,
            asid: 1,
            ncr3: 0x20_0000,
            nrip_save: false,
            decode_assists: false,
            flush_by_asid: false,
            cpu_signature: 0x00a2_0f10,
        };
        maps_new(config)
    }

    #[test]
    fn reset_state_is_architectural() {
        let v = vcpu();
        assert_eq!(v.mode(), CpuMode::Real);
        assert_eq!(v.rip(), 0xfff0);
        let cs = v.segment(Sreg::Cs);
        assert_eq!(
            (cs.selector, cs.base, cs.limit),
            (0xf000, 0xffff_0000, 0xffff)
        );
        assert_eq!(v.gpr(Gpr::Rdx), 0x00a2_0f10);
        assert_eq!(v.efer(), 0, "SVME is hidden from the guest");
        assert_eq!(v.vmcb.read_u64(save::EFER), EFER_SVME, "but VMRUN needs it");
        assert_eq!(v.cr0(), 0x6000_0010);
        assert_eq!(v.rflags(), 2);
    }

    #[test]
    fn control_area_setup() {
        let v = vcpu();
        let m1 = InterceptMisc1::from_bits_retain(v.vmcb.read_u32(control::INTERCEPT_MISC1));
        let m2 = InterceptMisc2::from_bits_retain(v.vmcb.read_u32(control::INTERCEPT_MISC2));
        assert!(m1.contains(
            InterceptMisc1::IOIO_PROT
                | InterceptMisc1::MSR_PROT
                | InterceptMisc1::SHUTDOWN
                | InterceptMisc1::CPUID
                | InterceptMisc1::HLT
        ));
        assert!(
            m2.contains(InterceptMisc2::VMRUN),
            "VMRUN fails unless VMRUN is intercepted"
        );
        assert_eq!(
            v.vmcb.read_u32(control::INTERCEPT_CR),
            (InterceptCr::CR0_WRITE | InterceptCr::CR4_WRITE).bits(),
            "CR0 and CR4 writes only: no reads, no CR3, no CR8"
        );
        assert_eq!(v.vmcb.read_u32(control::INTERCEPT_CR), 0x0011_0000);
        assert_eq!(v.vmcb.read_u32(control::GUEST_ASID), 1);
        assert_eq!(v.vmcb.read_u64(control::NP_ENABLE), 1);
        assert_eq!(v.vmcb.read_u64(control::N_CR3), 0x20_0000);
        assert_eq!(
            v.vmcb.read_u64(control::IOPM_BASE_PA),
            &*v._pages.iopm as *const _ as u64
        );
        assert_eq!(
            v.vmcb.read_u64(control::MSRPM_BASE_PA),
            &*v._pages.msrpm as *const _ as u64
        );
        assert_eq!(v.vmcb_pa, &*v.vmcb as *const Vmcb as u64);
    }

    /// The handler's MOV to CR0 does what the CPU's would: CR0.PG with
    /// EFER.LME sets EFER.LMA (and clearing it clears LMA), and a CR0 or CR4
    /// write flushes the guest's TLB entries.
    #[test]
    fn cr_writes_track_long_mode_and_flush() {
        let mut v = vcpu();
        v.vmcb.write_u8(control::TLB_CONTROL, 0);
        v.set_efer(EFER_LME);
        v.set_cr(4, 1 << 5);
        assert_eq!(v.vmcb.read_u8(control::TLB_CONTROL), TLB_FLUSH_ALL);
        v.vmcb.write_u8(control::TLB_CONTROL, 0);
        v.set_cr(0, 0x8000_0011);
        assert_eq!(v.cr0(), 0x8000_0011);
        assert_eq!(v.efer(), EFER_LME | EFER_LMA);
        assert_eq!(v.vmcb.read_u64(save::EFER), EFER_LME | EFER_LMA | EFER_SVME);
        assert_eq!(v.vmcb.read_u8(control::TLB_CONTROL), TLB_FLUSH_ALL);
        v.set_cr(0, 0x11);
        assert_eq!(v.efer(), EFER_LME, "paging off leaves long mode");
        v.set_efer(0);
        v.set_cr(0, 0x8000_0011);
        assert_eq!(v.efer(), 0, "no LMA without LME");
    }

    #[test]
    fn asid_zero_is_never_used() {
        let config = SvmVcpuConfig {
            vcpu_id: 0,
            asid: 0,
            ncr3: 0,
            nrip_save: false,
            decode_assists: false,
            flush_by_asid: false,
            cpu_signature: 0,
        };
        assert_eq!(maps_new(config).vmcb.read_u32(control::GUEST_ASID), 1);
    }

    #[test]
    fn registers_round_trip() {
        let mut v = vcpu();
        for i in 0..16u8 {
            let r = Gpr::from_index(usize::from(i));
            v.set_gpr(r, 0x1000 + u64::from(i));
        }
        for i in 0..16u8 {
            assert_eq!(
                v.gpr(Gpr::from_index(usize::from(i))),
                0x1000 + u64::from(i)
            );
        }
        assert_eq!(v.vmcb.read_u64(save::RAX), 0x1000);
        assert_eq!(v.vmcb.read_u64(save::RSP), 0x1004);
        v.set_efer(1 << 8);
        assert_eq!(v.vmcb.read_u64(save::EFER), (1 << 8) | EFER_SVME);
    }

    #[test]
    fn interrupt_window_and_shadow() {
        let mut v = vcpu();
        v.set_interrupt_window_exiting(true);
        assert_eq!(
            v.vmcb.read_u64(control::VINTR),
            V_INTR_MASKING | V_IRQ_WINDOW
        );
        let m1 = InterceptMisc1::from_bits_retain(v.vmcb.read_u32(control::INTERCEPT_MISC1));
        assert!(m1.contains(InterceptMisc1::VINTR | InterceptMisc1::IOIO_PROT));
        v.set_interrupt_window_exiting(false);
        assert_eq!(v.vmcb.read_u64(control::VINTR), V_INTR_MASKING);
        let m1 = InterceptMisc1::from_bits_retain(v.vmcb.read_u32(control::INTERCEPT_MISC1));
        assert!(!m1.contains(InterceptMisc1::VINTR) && m1.contains(InterceptMisc1::IOIO_PROT));
        v.vmcb.write_u64(control::INTERRUPT_SHADOW, 1);
        assert!(v.interrupt_shadow());
        v.clear_interrupt_shadow();
        assert!(!v.interrupt_shadow());
    }

    /// SVM has no NMI blocking to read: an injected NMI turns the IRET
    /// intercept on, the IRET's exit is followed by a single step over it,
    /// and the #DB after it is the NMI window (`svm::nmi`).
    #[test]
    fn nmi_blocking_follows_the_iret_intercept_and_the_step() {
        let mut v = vcpu();
        v.set_cr(0, 0x11);
        let misc1 = |v: &SvmVcpu| {
            InterceptMisc1::from_bits_retain(v.vmcb.read_u32(control::INTERCEPT_MISC1))
        };
        let exit = |v: &mut SvmVcpu, code: u64, rip: u64, decoded: VmExit| {
            v.vmcb.write_u64(control::EVENTINJ, 0);
            v.vmcb.write_u64(control::EXITCODE, code);
            v.vmcb.write_u64(save::RIP, rip);
            v.track_nmi(decoded)
        };
        assert!(!v.nmi_blocked() && !misc1(&v).contains(InterceptMisc1::IRET));
        v.inject(Event::Nmi);
        assert!(v.nmi_blocked() && misc1(&v).contains(InterceptMisc1::IRET));
        // The handler's ICR write (an NPF): still blocked, the NMI that
        // came waits for the IRET's exit.
        let npf = VmExit::Unknown {
            code: 0x400,
            info1: 0,
            info2: 0,
        };
        assert_eq!(exit(&mut v, 0x400, 0x2000, npf), npf);
        v.set_nmi_window_exiting(true);
        assert_eq!(v.rflags() & super::super::nmi::RFLAGS_TF, 0);
        // The IRET intercept, before the IRET ran.
        assert_eq!(
            exit(&mut v, 0x74, 0x2010, VmExit::NmiWindow),
            VmExit::NmiWindow
        );
        assert!(v.nmi_blocked() && !misc1(&v).contains(InterceptMisc1::IRET));
        // No step while an event goes in: its pushed RFLAGS would carry TF.
        v.inject(Event::GP0);
        v.set_nmi_window_exiting(true);
        assert_eq!(v.rflags() & super::super::nmi::RFLAGS_TF, 0);
        v.cancel_event();
        v.set_nmi_window_exiting(true);
        assert_ne!(v.rflags() & super::super::nmi::RFLAGS_TF, 0, "one step");
        // The step's #DB after the IRET: the window.
        v.vmcb
            .write_u64(save::DR6, 0xffff_0ff0 | super::super::nmi::DR6_BS);
        v.vmcb.write_u64(save::RFLAGS, 0x202);
        let db = VmExit::Exception {
            vector: 1,
            error_code: None,
            fault_address: None,
            debug_status: None,
        };
        assert_eq!(exit(&mut v, 0x41, 0x3000, db), VmExit::NmiWindow);
        assert!(!v.nmi_blocked());
        assert_eq!(v.vmcb.read_u64(save::DR6), 0xffff_0ff0);
        assert_eq!(v.rflags(), 0x202);
        // A reset (INIT) forgets a handler that never returned.
        v.inject(Event::Nmi);
        v.reset();
        assert!(!v.nmi_blocked() && !misc1(&v).contains(InterceptMisc1::IRET));
    }

    #[test]
    fn virtual_tpr_is_the_low_byte_of_vintr() {
        let mut v = vcpu();
        v.set_virtual_tpr(0x1c);
        assert_eq!(v.virtual_tpr(), Some(0xc));
        assert_eq!(v.vmcb.read_u64(control::VINTR), V_INTR_MASKING | 0xc);
    }

    #[test]
    fn interrupted_events_are_queued_again() {
        let mut v = vcpu();
        v.set_cr(0, 0x11);
        // An external interrupt 0x30 whose delivery hit a nested page fault.
        v.vmcb.write_u64(control::EXITINTINFO, 0x8000_0030);
        v.after_exit();
        assert!(v.event_pending());
        assert_eq!(v.vmcb.read_u64(control::EVENTINJ), 0x8000_0030);
        // #GP with its error code.
        v.vmcb.write_u64(control::EVENTINJ, 0);
        v.vmcb
            .write_u64(control::EXITINTINFO, 0x0000_1234_8000_0b0d);
        v.after_exit();
        assert_eq!(v.vmcb.read_u64(control::EVENTINJ), 0x0000_1234_8000_0b0d);
        // INT 0x80 and INT3 run again from the instruction instead.
        for info in [0x8000_0480u64, 0x8000_0303] {
            v.vmcb.write_u64(control::EVENTINJ, 0);
            v.vmcb.write_u64(control::EXITINTINFO, info);
            v.after_exit();
            assert!(!v.event_pending(), "{info:#x}");
        }
    }

    /// #DB and #AC are intercepted (CVE-2015-8104, CVE-2015-5307); the CPU
    /// wrote DR6 already, a general-detect #DB clears DR7.GD (SDM Vol 3A 17.2.4).
    #[test]
    fn debug_and_alignment_check_are_intercepted() {
        let mut v = vcpu();
        assert_eq!(
            v.vmcb.read_u32(control::INTERCEPT_EXCEPTIONS),
            (1 << 1) | (1 << 17)
        );
        v.vmcb.write_u64(save::DR7, 0x2401);
        v.vmcb.write_u64(save::DR6, 0xffff_4ff0);
        v.debug_exception(None);
        assert_eq!(v.vmcb.read_u64(save::DR7), 0x2401);
        v.vmcb.write_u64(save::DR6, 0xffff_2ff0);
        v.debug_exception(None);
        assert_eq!(v.vmcb.read_u64(save::DR7), 0x0401);
    }

    #[test]
    fn event_injection_encoding() {
        let mut v = vcpu();
        let exit = |v: &mut SvmVcpu| v.vmcb.write_u64(control::EVENTINJ, 0);
        // Finding #2 on SVM: real mode pushes no error code.
        v.inject(Event::GP0);
        assert_eq!(v.vmcb.read_u64(control::EVENTINJ), 0x8000_030d);
        exit(&mut v);
        v.set_cr(0, 0x11);
        v.inject(Event::GP0);
        assert_eq!(v.vmcb.read_u64(control::EVENTINJ), 0x0000_0000_8000_0b0d);
        exit(&mut v);
        v.inject(Event::Exception {
            vector: 14,
            error_code: Some(2),
        });
        assert_eq!(v.vmcb.read_u64(control::EVENTINJ), 0x0000_0002_8000_0b0e);
        exit(&mut v);
        v.inject(Event::UD);
        assert_eq!(v.vmcb.read_u64(control::EVENTINJ), 0x8000_0306);
        exit(&mut v);
        v.inject(Event::ExternalInterrupt { vector: 0x30 });
        assert_eq!(v.vmcb.read_u64(control::EVENTINJ), 0x8000_0030);
        exit(&mut v);
        v.inject(Event::Nmi);
        assert_eq!(v.vmcb.read_u64(control::EVENTINJ), 0x8000_0202);
        // A software interrupt returns past its instruction.
        exit(&mut v);
        v.inject(Event::SoftwareInterrupt {
            vector: 0x80,
            len: 2,
        });
        assert_eq!(v.vmcb.read_u64(control::EVENTINJ), 0x8000_0480);
        assert_eq!(v.rip(), 0xfff2);
        assert_eq!(v.vmcb.read_u64(control::NRIP), 0xfff2);
    }

    #[test]
    fn injections_over_a_queued_event_follow_the_double_fault_rules() {
        let mut v = vcpu();
        v.set_cr(0, 0x11);
        v.vmcb
            .write_u64(control::EXITINTINFO, 0x0000_0002_8000_0b0e);
        v.after_exit();
        v.inject(Event::GP0);
        assert_eq!(v.vmcb.read_u64(control::EVENTINJ), 0x0000_0000_8000_0b08);
        assert!(!v.take_shutdown());
        v.inject(Event::Exception {
            vector: 14,
            error_code: Some(0),
        });
        assert!(!v.event_pending());
        assert!(v.take_shutdown(), "the next run is a triple fault");
    }
}
