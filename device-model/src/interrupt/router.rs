//! The one interrupt path of the emulated PC: [`PcInterruptRouter`] owns the
//! 8259A pair, the IOAPIC and every local APIC, is the [`IrqChip`] devices'
//! [`IrqLine`](crate::IrqLine)s drive, and answers the VM loop's questions
//! (which vector to inject, is there an NMI, when does a timer expire).
//!
//! Wiring (QEMU `pc`, and the MADT Keel publishes):
//! - GSI 0-15 are the ISA IRQs. ISA IRQ n drives 8259A input n and IOAPIC
//!   pin n, except ISA IRQ 0, which drives IOAPIC pin 2 (the MADT interrupt
//!   source override). ISA IRQ 2 does not exist (the cascade); a device on
//!   GSI 2 is ignored. IOAPIC pin 0 is unconnected, as in QEMU.
//! - PCI INTx: a function's pin drives one of PIRQA-D (the PIIX3 swizzle,
//!   [`Piix3::pirq_for`](crate::pci::Piix3::pirq_for)); PIIX3 PIRQRC[A:D]
//!   (config 0x60-0x63, 82371SB 2.2.10) steer each PIRQ to an ISA IRQ or
//!   nowhere ([`PcInterruptRouter::set_pirq_route`]). The routed PIRQ is
//!   then that ISA IRQ line: 8259A input n in PIC mode, IOAPIC pin n in APIC
//!   mode. This is what the DSDT says in both modes: its `_PRT` names the
//!   link devices LNKA-LNKD (no `_PIC`-dependent table), whose `_CRS` is the
//!   route register's IRQ, and the MADT makes those IRQs level/active-high
//!   through interrupt source overrides; so an OS uses GSI = the link's
//!   IRQ. PCI lines are level-triggered and shared: a line is asserted
//!   while any function on its PIRQ asserts it, or while the ISA device on
//!   that IRQ does (wired-OR).
//! - GSI 16-23 drive IOAPIC pins 16-23 only; no PIRQ is wired to them (as
//!   on QEMU's `pc`).
//! - MSI/MSI-X: a memory write to `0xFEEx_xxxx` becomes an interrupt
//!   message to the local APICs it names (SDM Vol 3A 11.11,
//!   [`PcInterruptRouter::send_msi`]).
//! - The 8259A's INTR drives LINT0 of the BSP (vCPU 0).
//! - IOAPIC messages and IPIs reach the local APICs by destination; EOIs
//!   of level-triggered vectors are broadcast back to the IOAPIC.

use alloc::string::String;
use alloc::vec::Vec;

use guest_log::RateLimitedLog;
use log::Level;

use super::bus_adapters::RouterHandle;
use super::dual_pic::DualPic;
use super::ioapic::{IoApic, IOAPIC_PINS};
use super::lapic::x2apic::{IA32_TSC_DEADLINE, X2APIC_MSRS};
use super::lapic::{ApicMsrError, ApicMsrFault, IcrRefusal, LapicConfig, LapicOutput, LocalApic};
use super::message::{ApicMessage, DeliveryMode, Destination, DestinationMode, MsiTarget};
use crate::clock::ClockHandle;
use crate::irq::IrqChip;
use crate::pci::Pirq;

/// The ISA IRQ the MADT overrides, and the IOAPIC pin it goes to.
const ISA_TIMER_IRQ: u32 = 0;
const ISA_TIMER_PIN: usize = 2;
/// ISA IRQ 2: the cascade, not a device input.
const ISA_CASCADE_IRQ: u32 = 2;
/// GSIs 0-15 are ISA IRQs.
const ISA_IRQS: u32 = 16;
/// An MSI address names the local APICs when bits 31:20 are FEEh and
/// bits 63:32 are zero (SDM Vol 3A 11.11.1).
const MSI_ADDRESS_BASE: u64 = 0xFEE;

/// A PCI function's INTx output, wired through a PIRQ line to whatever ISA
/// IRQ the PIIX3 routes it to (see the module documentation).
#[derive(Clone)]
pub struct IntxLine {
    router: RouterHandle,
    source: usize,
}

impl IntxLine {
    /// Drives the pin (level-triggered: hold it while the function needs service).
    pub fn set_level(&self, level: bool) {
        self.router.lock().set_intx(self.source, level);
    }

    /// A new line on `pirq` of `router`.
    pub fn new(router: &RouterHandle, pirq: Pirq) -> IntxLine {
        let source = router.lock().add_intx_source(pirq);
        IntxLine {
            router: router.clone(),
            source,
        }
    }
}

/// The interrupt controllers of one VM.
pub struct PcInterruptRouter {
    pic: DualPic,
    ioapic: IoApic,
    lapics: Vec<LocalApic>,
    config: LapicConfig,
    /// Messages produced while serving one call, routed before it returns:
    /// at most one per IOAPIC pin, the capacity it is created with, so
    /// routing never allocates.
    messages: Vec<ApicMessage>,
    /// The ISA IRQ each of PIRQA-D is routed to (PIIX3 PIRQRC, `None`: not routed).
    pirq_routes: [Option<u8>; 4],
    /// The level ISA devices drive on IRQ 0-15 (before the wired-OR with PIRQs).
    isa_levels: [bool; ISA_IRQS as usize],
    /// Each INTx source: the PIRQ it drives and its level.
    intx: Vec<(Pirq, bool)>,
    /// MSI writes that do not name the local APICs: dropped and counted.
    msi_dropped: u64,
    msi_log: RateLimitedLog,
    /// The VM's name, for the log lines a guest's messages cause.
    vm: String,
    /// Messages naming no local APIC (absent APIC IDs, empty logical
    /// masks), and ICR writes the SDM calls invalid: a guest can send
    /// millions, so each cause logs a few lines in full, then summaries;
    /// each reason an ICR write is refused for is a cause of its own, so
    /// one flood of them cannot hide another.
    unrouted_log: RateLimitedLog,
    refused_logs: [RateLimitedLog; IcrRefusal::COUNT],
    /// Bit n: a message reached vCPU n's local APIC (or the 8259A raised
    /// the BSP's LINT0) since [`Self::take_woken`]: the VM loop kicks that
    /// vCPU's host CPU so it sees the event at once.
    woken: u64,
}

impl PcInterruptRouter {
    /// The controllers of a VM with `vcpus` vCPUs (at least one); vCPU `n`
    /// has initial APIC ID `n`, vCPU 0 is the BSP. All in power-on state.
    pub fn new(vcpus: u32, config: LapicConfig, clock: ClockHandle) -> Self {
        let lapics = (0..vcpus.max(1))
            .map(|id| LocalApic::new(id, id == 0, config, clock.clone()))
            .collect();
        let mut router = PcInterruptRouter {
            pic: DualPic::new(),
            ioapic: IoApic::new(),
            lapics,
            config,
            messages: Vec::with_capacity(IOAPIC_PINS),
            pirq_routes: [None; 4],
            isa_levels: [false; ISA_IRQS as usize],
            intx: Vec::new(),
            msi_dropped: 0,
            msi_log: RateLimitedLog::new(),
            vm: String::new(),
            unrouted_log: RateLimitedLog::new(),
            refused_logs: core::array::from_fn(|_| RateLimitedLog::new()),
            woken: 0,
        };
        router.update_pic_output();
        router
    }

    /// Power-on reset of every controller (the VM's reset through CF9h or
    /// the keyboard controller). Input line levels are kept: devices reset
    /// themselves and drive their lines again.
    pub fn reset(&mut self) {
        self.pic.reset();
        self.ioapic.reset();
        for lapic in &mut self.lapics {
            lapic.reset();
        }
        self.update_pic_output();
    }

    /// Names the VM in the log lines its guest's messages cause.
    pub fn set_vm_name(&mut self, name: &str) {
        self.vm = String::from(name);
    }

    pub fn pic(&self) -> &DualPic {
        &self.pic
    }

    pub fn ioapic(&self) -> &IoApic {
        &self.ioapic
    }

    pub fn lapic(&self, vcpu: u32) -> Option<&LocalApic> {
        self.lapics.get(vcpu as usize)
    }

    pub fn vcpus(&self) -> u32 {
        self.lapics.len() as u32
    }

    /// The vCPUs (bit n: vCPU n) whose local APIC received a message or
    /// whose LINT0 the 8259A raised since the last call: each may have an
    /// interrupt, NMI, INIT or Start-Up to take while running or halted
    /// on another host CPU.
    pub fn take_woken(&mut self) -> u64 {
        core::mem::take(&mut self.woken)
    }

    fn wake(&mut self, vcpu: usize) {
        if vcpu < 64 {
            self.woken |= 1 << vcpu;
        }
    }

    /// The vector the vCPU would take now if it can take an interrupt
    /// (RFLAGS.IF, no interrupt shadow: the caller's checks), without
    /// acknowledging it. ExtINT (the 8259A through LINT0, or an ExtINT
    /// message) comes first: it bypasses IRR and TPR (SDM 11.6.1). Then the
    /// highest IRR vector above PPR.
    pub fn pending_interrupt(&mut self, vcpu: u32) -> Option<u8> {
        let lapic = self.lapics.get_mut(vcpu as usize)?;
        lapic.sync_timer();
        if lapic.extint_requested() {
            return Some(
                self.pic
                    .pending_vector()
                    .unwrap_or_else(|| self.pic.spurious_vector()),
            );
        }
        lapic.pending_vector()
    }

    /// The INTA cycle for the vector [`Self::pending_interrupt`] names: moves
    /// it from IRR to ISR in the local APIC, or runs the 8259A's INTA for
    /// ExtINT. The caller injects the result.
    pub fn acknowledge(&mut self, vcpu: u32) -> Option<u8> {
        let lapic = self.lapics.get_mut(vcpu as usize)?;
        lapic.sync_timer();
        if lapic.extint_requested() {
            lapic.extint_acknowledged();
            let vector = self.pic.acknowledge();
            self.update_pic_output();
            return Some(vector);
        }
        lapic.acknowledge()
    }

    /// Whether an NMI waits for the vCPU.
    pub fn pending_nmi(&self, vcpu: u32) -> bool {
        self.lapic(vcpu).is_some_and(LocalApic::nmi_pending)
    }

    /// Takes the waiting NMI (the caller injects it).
    pub fn acknowledge_nmi(&mut self, vcpu: u32) -> bool {
        self.lapics
            .get_mut(vcpu as usize)
            .is_some_and(LocalApic::take_nmi)
    }

    /// Takes a received INIT: the VM loop puts the vCPU in its INIT state.
    pub fn take_init(&mut self, vcpu: u32) -> bool {
        self.lapics
            .get_mut(vcpu as usize)
            .is_some_and(LocalApic::take_init)
    }

    /// Takes a received Start-Up IPI's vector: the vCPU starts in real mode
    /// at `vector << 12`.
    pub fn take_sipi(&mut self, vcpu: u32) -> Option<u8> {
        self.lapics.get_mut(vcpu as usize)?.take_sipi()
    }

    /// The earliest time (clock nanoseconds) at which a local APIC timer
    /// expires into an interrupt; expiries already due are raised first.
    pub fn next_deadline_ns(&mut self) -> Option<u64> {
        self.lapics
            .iter_mut()
            .filter_map(|lapic| {
                lapic.sync_timer();
                lapic.next_deadline_ns()
            })
            .min()
    }

    fn lapic_mut(
        &mut self,
        vcpu: u32,
        msr: u32,
        written: Option<u64>,
    ) -> Result<&mut LocalApic, ApicMsrError> {
        self.lapics.get_mut(vcpu as usize).ok_or(ApicMsrError {
            msr,
            written,
            fault: ApicMsrFault::NoSuchVcpu,
        })
    }

    /// RDMSR IA32_APIC_BASE.
    pub fn apic_base(&self, vcpu: u32) -> Option<u64> {
        self.lapic(vcpu).map(LocalApic::apic_base)
    }

    /// WRMSR IA32_APIC_BASE; an error means #GP(0).
    pub fn set_apic_base(&mut self, vcpu: u32, value: u64) -> Result<(), ApicMsrError> {
        let msr = super::lapic::x2apic::IA32_APIC_BASE;
        let result = self.lapic_mut(vcpu, msr, Some(value))?.set_apic_base(value);
        if vcpu == 0 {
            // Disabling or enabling the BSP's APIC changes what LINT0 is.
            self.update_pic_output();
        }
        result
    }

    /// The error for IA32_TSC_DEADLINE when CPUID does not offer the mode.
    fn tsc_deadline_unsupported(&self, written: Option<u64>) -> Result<(), ApicMsrError> {
        if self.config.tsc_deadline {
            return Ok(());
        }
        Err(ApicMsrError {
            msr: IA32_TSC_DEADLINE,
            written,
            fault: ApicMsrFault::Reserved,
        })
    }

    /// RDMSR IA32_TSC_DEADLINE (0 outside TSC-deadline mode); #GP if CPUID
    /// does not offer the mode.
    pub fn tsc_deadline(&mut self, vcpu: u32) -> Result<u64, ApicMsrError> {
        self.tsc_deadline_unsupported(None)?;
        Ok(self
            .lapic_mut(vcpu, IA32_TSC_DEADLINE, None)?
            .tsc_deadline())
    }

    /// WRMSR IA32_TSC_DEADLINE (ignored outside TSC-deadline mode); #GP if
    /// CPUID does not offer the mode.
    pub fn set_tsc_deadline(&mut self, vcpu: u32, value: u64) -> Result<(), ApicMsrError> {
        self.tsc_deadline_unsupported(Some(value))?;
        self.lapic_mut(vcpu, IA32_TSC_DEADLINE, Some(value))?
            .set_tsc_deadline(value);
        Ok(())
    }

    /// Sets vCPU `vcpu`'s guest TSC mapping: `tsc = now_ns * tsc_hz / 1e9 +
    /// offset`.
    pub fn set_tsc_offset(&mut self, vcpu: u32, offset: u64) {
        if let Some(lapic) = self.lapics.get_mut(vcpu as usize) {
            lapic.set_tsc_offset(offset);
        }
    }

    /// RDMSR of an x2APIC register (800h-8FFh); an error means #GP(0).
    pub fn x2apic_read(&mut self, vcpu: u32, msr: u32) -> Result<u64, ApicMsrError> {
        self.lapic_mut(vcpu, msr, None)?.read_msr(msr)
    }

    /// WRMSR of an x2APIC register (800h-8FFh); an error means #GP(0).
    pub fn x2apic_write(&mut self, vcpu: u32, msr: u32, value: u64) -> Result<(), ApicMsrError> {
        let result = self
            .lapic_mut(vcpu, msr, Some(value))?
            .write_msr(msr, value);
        self.drain(vcpu as usize);
        result
    }

    /// Whether `msr` is one this router answers (IA32_APIC_BASE,
    /// IA32_TSC_DEADLINE, 800h-8FFh), for the MSR policy's dispatch.
    pub fn handles_msr(msr: u32) -> bool {
        msr == super::lapic::x2apic::IA32_APIC_BASE
            || msr == IA32_TSC_DEADLINE
            || X2APIC_MSRS.contains(&msr)
    }

    /// MOV from CR8: TPR[7:4].
    pub fn cr8(&self, vcpu: u32) -> u64 {
        self.lapic(vcpu).map_or(0, LocalApic::cr8)
    }

    /// MOV to CR8 (the caller has raised #GP for bits 63:4).
    pub fn set_cr8(&mut self, vcpu: u32, value: u64) {
        if let Some(lapic) = self.lapics.get_mut(vcpu as usize) {
            lapic.set_cr8(value);
        }
    }

    /// A one-byte read of an 8259A or ELCR port.
    pub fn pic_read(&mut self, port: u16) -> u8 {
        let value = self.pic.read_port(port);
        self.update_pic_output();
        value
    }

    /// A one-byte write of an 8259A or ELCR port.
    pub fn pic_write(&mut self, port: u16, value: u8) {
        self.pic.write_port(port, value);
        self.update_pic_output();
    }

    /// A guest read in the IOAPIC page.
    pub fn ioapic_mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        self.ioapic.mmio_read(offset, data);
    }

    /// A guest write in the IOAPIC page; an entry made deliverable delivers.
    pub fn ioapic_mmio_write(&mut self, offset: u64, data: &[u8]) {
        let mut out = core::mem::take(&mut self.messages);
        self.ioapic.mmio_write(offset, data, &mut out);
        self.route_ioapic(&mut out);
        self.messages = out;
    }

    /// A guest read in vCPU `vcpu`'s APIC page.
    pub fn lapic_mmio_read(&mut self, vcpu: u32, offset: u64, data: &mut [u8]) {
        match self.lapics.get_mut(vcpu as usize) {
            Some(lapic) => lapic.mmio_read(offset, data),
            None => data.fill(0xFF),
        }
    }

    /// A 64-bit access (`write` `None`: a read) to the register at xAPIC
    /// offset `offset` of vCPU `vcpu`'s local APIC in the layout of the
    /// APIC's current mode, for the Hyper-V APIC access MSRs (TLFS 10.3.3-
    /// 10.3.5): in xAPIC mode through the MMIO registers (the ICR's
    /// destination in bits 63:56, written before the low half, which sends),
    /// in x2APIC mode as the x2APIC MSR 800h + offset / 16 (the ICR's
    /// destination in bits 63:32; SDM 11.12.9). `None` means #GP: the APIC
    /// is disabled, or the x2APIC MSR refuses the access.
    pub fn apic_register(&mut self, vcpu: u32, offset: u64, write: Option<u64>) -> Option<u64> {
        const ICR_LOW: u64 = 0x300;
        const ICR_HIGH: u64 = 0x310;
        let lapic = self.lapic(vcpu)?;
        if lapic.x2apic_mode() {
            let msr = X2APIC_MSRS.start() + ((offset >> 4) & 0xFF) as u32;
            return match write {
                Some(value) => self.x2apic_write(vcpu, msr, value).ok().map(|()| 0),
                None => self.x2apic_read(vcpu, msr).ok(),
            };
        }
        if !lapic.mmio_active() {
            return None;
        }
        let read = |router: &mut Self, at: u64| {
            let mut data = [0u8; 4];
            router.lapic_mmio_read(vcpu, at, &mut data);
            u64::from(u32::from_le_bytes(data))
        };
        Some(match (write, offset) {
            (Some(value), ICR_LOW) => {
                let high = (value >> 32) as u32;
                self.lapic_mmio_write(vcpu, ICR_HIGH, &high.to_le_bytes());
                self.lapic_mmio_write(vcpu, ICR_LOW, &(value as u32).to_le_bytes());
                0
            }
            (Some(value), _) => {
                self.lapic_mmio_write(vcpu, offset, &(value as u32).to_le_bytes());
                0
            }
            (None, ICR_LOW) => read(self, ICR_LOW) | read(self, ICR_HIGH) << 32,
            (None, _) => read(self, offset),
        })
    }

    /// A guest write in vCPU `vcpu`'s APIC page; IPIs and EOI broadcasts it
    /// causes are routed before it returns.
    pub fn lapic_mmio_write(&mut self, vcpu: u32, offset: u64, data: &[u8]) {
        if let Some(lapic) = self.lapics.get_mut(vcpu as usize) {
            lapic.mmio_write(offset, data);
            self.drain(vcpu as usize);
            if vcpu == 0 {
                // An LVT LINT0 write can open or close the ExtINT path; the
                // level itself is unchanged, so only the edge state matters.
                self.update_pic_output();
            }
        }
    }

    /// Feeds the 8259A's INTR to the BSP's LINT0.
    fn update_pic_output(&mut self) {
        let intr = self.pic.intr();
        if let Some(bsp) = self.lapics.first_mut() {
            bsp.set_lint(0, intr);
            if intr {
                self.wake(0);
            }
        }
    }

    /// Routes what local APIC `source` asked for: IPIs to their
    /// destinations, EOI broadcasts to the IOAPIC (whose re-deliveries are
    /// routed in turn).
    fn drain(&mut self, source: usize) {
        let Some(lapic) = self.lapics.get_mut(source) else {
            return;
        };
        for output in lapic.take_outputs() {
            match output {
                LapicOutput::Ipi(msg) => self.route(Some(source), &msg),
                LapicOutput::RefusedIcr { icr, why } => self.refused_logs[why as usize].log(
                    Level::Warn,
                    format_args!(
                        "VM '{}': vCPU {source} wrote ICR {icr:#x}, which sends nothing: {} (SDM 11.6.1)",
                        self.vm,
                        why.why()
                    ),
                ),
                LapicOutput::EoiBroadcast(vector) => {
                    let mut out = core::mem::take(&mut self.messages);
                    self.ioapic.end_of_interrupt(vector, &mut out);
                    self.route_ioapic(&mut out);
                    self.messages = out;
                }
            }
        }
    }

    /// Routes the IOAPIC's messages in `out`, leaving it empty. Its 8-bit
    /// physical broadcast FFh is the x2APIC broadcast too.
    fn route_ioapic(&mut self, out: &mut Vec<ApicMessage>) {
        for mut msg in out.drain(..) {
            if msg.dest_mode == DestinationMode::Physical
                && msg.destination == Destination::Field(0xFF)
            {
                msg.destination = Destination::Field(u32::MAX);
            }
            self.route(None, &msg);
        }
    }

    /// Delivers `msg` from `source` (a local APIC, or `None` for the IOAPIC
    /// and MSIs) to the local APICs it names; lowest-priority delivery picks
    /// the one with the lowest arbitration priority (ties: the lowest vCPU
    /// index). A message that names none (an absent APIC ID, a logical
    /// mask no APIC has, a disabled APIC) is dropped, as on the APIC bus
    /// (the P6's send-accept error is gone since the Pentium 4, SDM
    /// 11.5.3), and logged rate-limited. Work per message: one pass over
    /// the VM's local APICs.
    fn route(&mut self, source: Option<usize>, msg: &ApicMessage) {
        if !self.deliver_to_named(source, msg) {
            let from = match source {
                Some(v) => alloc::format!("vCPU {v}'s IPI"),
                None => String::from("an IOAPIC or MSI message"),
            };
            let Destination::Field(dest) = msg.destination else {
                return; // a shorthand with nobody else: nothing wrong
            };
            self.unrouted_log.log(
                Level::Warn,
                format_args!(
                    "VM '{}': {from} ({:?}, vector {:#x}, {:?} destination {dest:#x}) reaches no local APIC: dropped",
                    self.vm, msg.delivery, msg.vector, msg.dest_mode
                ),
            );
        }
    }

    /// [`Self::route`]'s delivery; false if no local APIC took the message.
    fn deliver_to_named(&mut self, source: Option<usize>, msg: &ApicMessage) -> bool {
        let named = |i: usize, lapic: &LocalApic| match msg.destination {
            Destination::Field(dest) => lapic.matches(msg.dest_mode, dest),
            Destination::SelfOnly => Some(i) == source,
            Destination::AllIncludingSelf => true,
            Destination::AllExcludingSelf => Some(i) != source,
        };
        if msg.delivery == DeliveryMode::LowestPriority {
            let target = (0..self.lapics.len())
                .filter(|&i| named(i, &self.lapics[i]))
                .min_by_key(|&i| self.lapics[i].apr());
            if let Some(t) = target {
                self.lapics[t].deliver(msg);
                self.wake(t);
            }
            return target.is_some();
        }
        let mut delivered = false;
        for i in 0..self.lapics.len() {
            if named(i, &self.lapics[i]) {
                self.lapics[i].deliver(msg);
                self.wake(i);
                delivered = true;
            }
        }
        delivered
    }
}

/// PCI INTx and MSI.
impl PcInterruptRouter {
    /// A new INTx source on `pirq`, deasserted; its index for [`Self::set_intx`].
    pub fn add_intx_source(&mut self, pirq: Pirq) -> usize {
        self.intx.push((pirq, false));
        self.intx.len() - 1
    }

    /// Drives INTx source `source` (from [`Self::add_intx_source`]).
    pub fn set_intx(&mut self, source: usize, level: bool) {
        let Some(s) = self.intx.get_mut(source) else {
            return;
        };
        s.1 = level;
        let pirq = s.0;
        if let Some(irq) = self.pirq_routes[pirq as usize] {
            self.update_isa_line(irq);
        }
    }

    /// PIIX3 PIRQRC: `pirq` now goes to ISA IRQ `irq` (`None`: nowhere).
    /// Both the IRQ it left and the one it joined see their new level.
    pub fn set_pirq_route(&mut self, pirq: Pirq, irq: Option<u8>) {
        let irq = irq.filter(|&i| u32::from(i) < ISA_IRQS);
        let old = core::mem::replace(&mut self.pirq_routes[pirq as usize], irq);
        for line in [old, irq].into_iter().flatten() {
            self.update_isa_line(line);
        }
    }

    /// Whether any INTx source on `pirq` is asserted.
    pub fn pirq_level(&self, pirq: Pirq) -> bool {
        self.intx.iter().any(|&(p, level)| p == pirq && level)
    }

    /// MSI writes dropped because their address was outside `0xFEEx_xxxx`
    /// or their delivery mode is one MSI cannot use.
    pub fn msi_dropped(&self) -> u64 {
        self.msi_dropped
    }

    /// Drives ISA IRQ `irq` with the wired-OR of its ISA device and the
    /// PIRQs routed to it.
    fn update_isa_line(&mut self, irq: u8) {
        let isa = self
            .isa_levels
            .get(usize::from(irq))
            .copied()
            .unwrap_or(false);
        let pci = Pirq::ALL
            .into_iter()
            .any(|p| self.pirq_routes[p as usize] == Some(irq) && self.pirq_level(p));
        self.drive_gsi(u32::from(irq), isa || pci);
    }

    /// Drives the controller inputs of `gsi` (see the module documentation).
    fn drive_gsi(&mut self, gsi: u32, level: bool) {
        let pin = match gsi {
            ISA_CASCADE_IRQ => {
                log::debug!("interrupt router: GSI 2 is the 8259A cascade; ignored");
                return;
            }
            ISA_TIMER_IRQ => ISA_TIMER_PIN,
            g if (g as usize) < IOAPIC_PINS => g as usize,
            _ => {
                log::debug!("interrupt router: GSI {gsi} has no IOAPIC pin; ignored");
                return;
            }
        };
        if gsi < ISA_IRQS {
            self.pic.set_irq(gsi as u8, level);
            self.update_pic_output();
        }
        let mut out = core::mem::take(&mut self.messages);
        self.ioapic.set_irq(pin, level, &mut out);
        self.route_ioapic(&mut out);
        self.messages = out;
    }
}

impl IrqChip for PcInterruptRouter {
    /// Drives GSI `gsi` (see the module documentation for the wiring); an
    /// ISA IRQ is wired-OR with the PIRQs routed to it.
    fn set_irq(&mut self, gsi: u32, level: bool) {
        match self.isa_levels.get_mut(gsi as usize) {
            Some(l) => {
                *l = level;
                self.update_isa_line(gsi as u8);
            }
            None => self.drive_gsi(gsi, level),
        }
    }
}

impl MsiTarget for PcInterruptRouter {
    /// The message a PCI function's MSI write makes (SDM Vol 3A 11.11):
    /// address bits 19:12 the destination ID, bit 2 the destination mode
    /// (1 = logical), bit 3 the redirection hint (1 with logical mode:
    /// lowest priority among the destinations); data bits 7:0 the vector,
    /// 10:8 the delivery mode, 15 the trigger mode. An address outside
    /// `0xFEEx_xxxx` reaches no local APIC: it is dropped, counted and
    /// logged (rate limited); so are the delivery modes an MSI may not use
    /// (Start-Up, the reserved encoding).
    fn send_msi(&mut self, address: u64, data: u32) {
        let mut delivery = DeliveryMode::from_bits(u64::from(data));
        if address >> 20 != MSI_ADDRESS_BASE
            || matches!(delivery, DeliveryMode::StartUp | DeliveryMode::Reserved)
        {
            self.msi_dropped = self.msi_dropped.saturating_add(1);
            self.msi_log.log(
                Level::Warn,
                format_args!(
                    "MSI write of {data:#x} to {address:#x} dropped: not a local APIC message (SDM 11.11)"
                ),
            );
            return;
        }
        let logical = address & 1 << 2 != 0;
        let redirect = address & 1 << 3 != 0;
        if redirect && logical && delivery == DeliveryMode::Fixed {
            delivery = DeliveryMode::LowestPriority;
        }
        let dest = ((address >> 12) & 0xFF) as u32;
        let msg = ApicMessage {
            vector: data as u8,
            delivery,
            dest_mode: if logical {
                DestinationMode::Logical
            } else {
                DestinationMode::Physical
            },
            destination: Destination::Field(if !logical && dest == 0xFF {
                u32::MAX
            } else {
                dest
            }),
            level_triggered: data & 1 << 15 != 0,
        };
        self.route(None, &msg);
    }
}

#[cfg(test)]
mod tests;
