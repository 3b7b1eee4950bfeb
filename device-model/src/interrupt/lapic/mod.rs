//! The local APIC of one vCPU (Intel SDM Vol 3A chapter 11), in xAPIC mode
//! through its 4 KiB MMIO page and in x2APIC mode through MSRs 800h-8FFh
//! ([`x2apic`]), with the timer in [`timer`].
//!
//! The APIC does not route: interrupt messages it sends (IPIs) and EOIs it
//! broadcasts go to its outbox ([`LapicOutput`]), which the router drains
//! after every call; messages for it arrive through [`LocalApic::deliver`].
//!
//! Reset state follows SDM 11.4.7.1, with one addition taken from QEMU's `pc`
//! machine: the BSP's LVT LINT0 comes out of power-on reset as ExtINT,
//! unmasked (what a BIOS programs first: virtual-wire mode), so a guest that
//! never touches the APIC receives the 8259A's interrupts.
//!
//! MMIO (xAPIC) access rules. SDM 11.4.1 defines only 32-bit loads and
//! stores aligned on 16 bytes; narrower or misaligned accesses are
//! model-specific. Keel gives:
//! - reads of any width: bytes 0-3 of each 16-byte slot are the register's,
//!   bytes 4-15 read 0; a reserved slot reads 0 and logs "illegal register
//!   address" in ESR (bit 7), as the Pentium 4 and later do;
//! - writes: only a 4-byte write at a 16-byte-aligned offset reaches the
//!   register; any other write is dropped (as KVM does);
//! - in x2APIC mode or while globally disabled the page is not the APIC's
//!   (SDM 11.12.2): reads return all-ones and writes are dropped, like
//!   unclaimed MMIO.
//!
//! Relocating the APIC base is recorded in IA32_APIC_BASE but the page stays
//! where the bus registered it.

pub mod timer;
pub mod x2apic;

use super::message::{ApicMessage, DeliveryMode, Destination, DestinationMode};
use crate::clock::ClockHandle;
use timer::{ApicTimer, TimerMode};
pub use x2apic::{ApicMsrError, ApicMsrFault};

/// The version register: version 14h, Max LVT Entry 5 (six LVT entries:
/// timer, thermal, performance counters, LINT0, LINT1, error), no EOI
/// broadcast suppression (bit 24 clear).
pub const LAPIC_VERSION: u32 = 0x0005_0014;

/// The architectural default of IA32_APIC_BASE[35:12].
pub const DEFAULT_APIC_BASE: u64 = 0xFEE0_0000;

/// IA32_APIC_BASE bits (SDM Figure 11-5).
pub mod apic_base {
    /// BSP flag.
    pub const BSP: u64 = 1 << 8;
    /// EXTD: x2APIC mode.
    pub const EXTD: u64 = 1 << 10;
    /// EN: APIC global enable.
    pub const EN: u64 = 1 << 11;
}

/// What the VM's CPU model offers; fixed for a VM's life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LapicConfig {
    /// The timer's input clock before the divider. QEMU's APIC timer runs at
    /// 1 GHz.
    pub bus_hz: u64,
    /// The guest TSC rate, for TSC-deadline mode.
    pub tsc_hz: u64,
    /// CPUID.1:ECX[21]: x2APIC mode may be enabled.
    pub x2apic: bool,
    /// CPUID.1:ECX[24]: TSC-deadline timer mode is available.
    pub tsc_deadline: bool,
    /// MAXPHYADDR: IA32_APIC_BASE bits at and above it are reserved.
    pub phys_addr_bits: u8,
}

impl LapicConfig {
    /// The timer input clock of [`LapicConfig::default`].
    pub const DEFAULT_BUS_HZ: u64 = 1_000_000_000;
}

impl Default for LapicConfig {
    fn default() -> Self {
        LapicConfig {
            bus_hz: Self::DEFAULT_BUS_HZ,
            tsc_hz: 1_000_000_000,
            x2apic: true,
            tsc_deadline: true,
            phys_addr_bits: 40,
        }
    }
}

/// The six LVT entries, in register order from 320h.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lvt {
    Timer = 0,
    Thermal = 1,
    PerfCounter = 2,
    Lint0 = 3,
    Lint1 = 4,
    Error = 5,
}

/// What a local APIC asks the router to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LapicOutput {
    /// A message from the ICR (or SELF IPI) for the local APICs it names.
    Ipi(ApicMessage),
    /// An EOI for a level-triggered vector, for the IOAPICs.
    EoiBroadcast(u8),
    /// An ICR write that sends nothing because the SDM calls it invalid;
    /// the router logs it, rate-limited per reason, naming the VM.
    RefusedIcr { icr: u64, why: IcrRefusal },
}

/// Why an ICR write sends nothing (SDM Vol 3A 11.6.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IcrRefusal {
    /// A shorthand that includes the sender with a mode other than fixed.
    SelfShorthandNotFixed,
    /// ExtINT or the reserved delivery mode.
    NotAnIcrMode,
    /// A fixed or lowest-priority vector 0-15 (ESR send illegal vector).
    IllegalVector,
}

impl IcrRefusal {
    /// How many reasons there are: the router keeps a log for each.
    pub const COUNT: usize = 3;

    /// The reason as the log line gives it.
    pub fn why(self) -> &'static str {
        match self {
            IcrRefusal::SelfShorthandNotFixed => {
                "only fixed delivery takes the self and all-including-self shorthands"
            }
            IcrRefusal::NotAnIcrMode => "ExtINT and the reserved delivery mode are not ICR modes",
            IcrRefusal::IllegalVector => "vectors 0-15 are illegal (ESR send illegal vector)",
        }
    }
}

/// Register indices: the xAPIC MMIO offset divided by 16, which is also the
/// x2APIC MSR number minus 800h (SDM Table 11-1 and Table 11-6).
mod reg {
    pub const ID: u32 = 0x02;
    pub const VERSION: u32 = 0x03;
    pub const TPR: u32 = 0x08;
    pub const APR: u32 = 0x09;
    pub const PPR: u32 = 0x0A;
    pub const EOI: u32 = 0x0B;
    pub const RRD: u32 = 0x0C;
    pub const LDR: u32 = 0x0D;
    pub const DFR: u32 = 0x0E;
    pub const SVR: u32 = 0x0F;
    pub const ISR: u32 = 0x10;
    pub const TMR: u32 = 0x18;
    pub const IRR: u32 = 0x20;
    pub const ESR: u32 = 0x28;
    pub const ICR_LOW: u32 = 0x30;
    pub const ICR_HIGH: u32 = 0x31;
    pub const LVT_TIMER: u32 = 0x32;
    pub const LVT_ERROR: u32 = 0x37;
    pub const TIMER_INITIAL: u32 = 0x38;
    pub const TIMER_CURRENT: u32 = 0x39;
    pub const TIMER_DIVIDE: u32 = 0x3E;
    pub const SELF_IPI: u32 = 0x3F;
}

/// LVT bits (SDM Figure 11-8).
mod lvt {
    pub const VECTOR: u32 = 0xFF;
    pub const TRIGGER_LEVEL: u32 = 1 << 15;
    pub const MASKED: u32 = 1 << 16;
    /// Writable bits: timer (mode bit 18 only with TSC-deadline support).
    pub const TIMER: u32 = 0x0003_00FF;
    pub const TIMER_TSC_DEADLINE: u32 = 1 << 18;
    /// Thermal and performance counter: vector, delivery mode, mask.
    pub const THERMAL_PMC: u32 = 0x0001_07FF;
    /// LINT0/1: vector, delivery mode, polarity, trigger mode, mask.
    pub const LINT: u32 = 0x0001_A7FF;
    /// Error: vector, mask.
    pub const ERROR: u32 = 0x0001_00FF;
    /// LINT0 as QEMU's `pc` resets it on the BSP: ExtINT, unmasked.
    pub const LINT0_VIRTUAL_WIRE: u32 = 0x0000_0700;
}

/// ESR bits (SDM Figure 11-9).
mod esr {
    pub const SEND_ILLEGAL_VECTOR: u32 = 1 << 5;
    pub const RECEIVE_ILLEGAL_VECTOR: u32 = 1 << 6;
    pub const ILLEGAL_REGISTER: u32 = 1 << 7;
}

/// ICR bits (SDM Figure 11-12 and 11-28).
mod icr {
    pub const DEST_LOGICAL: u64 = 1 << 11;
    pub const LEVEL_ASSERT: u64 = 1 << 14;
    pub const TRIGGER_LEVEL: u64 = 1 << 15;
    pub const SHORTHAND_SHIFT: u32 = 18;
    /// Writable low-dword bits (Delivery Status, bit 12, is read-only).
    pub const LOW_WRITABLE: u64 = 0x000C_CFFF;
}

/// SVR bits: vector, APIC software enable (8), focus checking (9).
const SVR_WRITABLE: u32 = 0x3FF;
const SVR_ENABLE: u32 = 1 << 8;

/// Why a register access is refused (the x2APIC MSR layer raises #GP; the
/// xAPIC MMIO layer logs ESR bit 7 for `Reserved` and ignores the rest).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum RegFault {
    Reserved,
    ReadOnly,
    WriteOnly,
    NonZero,
}

/// A 256-bit register (ISR, TMR, IRR) as eight 32-bit words.
type Bits256 = [u32; 8];

fn test_bit(bits: &Bits256, v: u8) -> bool {
    bits[usize::from(v >> 5)] & (1 << (v & 31)) != 0
}

fn set_bit(bits: &mut Bits256, v: u8, on: bool) {
    let word = &mut bits[usize::from(v >> 5)];
    if on {
        *word |= 1 << (v & 31);
    } else {
        *word &= !(1 << (v & 31));
    }
}

/// The highest vector set.
fn highest(bits: &Bits256) -> Option<u8> {
    (0..8).rev().find_map(|i| {
        let w = bits[i];
        (w != 0).then(|| (i as u8) * 32 + (31 - w.leading_zeros() as u8))
    })
}

/// One local APIC.
pub struct LocalApic {
    config: LapicConfig,
    clock: ClockHandle,
    bsp: bool,
    /// The initial APIC ID (CPUID), which the x2APIC ID always equals.
    initial_id: u32,
    apic_base: u64,
    /// The APIC ID; in xAPIC mode software may change its low 8 bits.
    id: u32,
    tpr: u8,
    ldr: u32,
    dfr: u32,
    svr: u32,
    isr: Bits256,
    tmr: Bits256,
    irr: Bits256,
    /// What ESR reads: the errors latched by the last ESR write.
    esr: u32,
    /// Errors seen since the last ESR write.
    esr_pending: u32,
    icr: u64,
    lvt: [u32; 6],
    timer: ApicTimer,
    /// LINT0 and LINT1 input levels.
    lint: [bool; 2],
    nmi_pending: bool,
    /// An ExtINT message (IOAPIC) awaits its INTA to the 8259A.
    extint_pending: bool,
    init_pending: bool,
    wait_for_sipi: bool,
    sipi_vector: Option<u8>,
    /// What the router has not taken yet: one register access produces at
    /// most one output and the router takes them after every access, so a
    /// few fixed slots suffice and nothing is allocated for a guest's IPI.
    outbox: [Option<LapicOutput>; OUTBOX_LEN],
}

/// Slots of a local APIC's outbox.
const OUTBOX_LEN: usize = 4;

impl LocalApic {
    /// A local APIC after power-on reset, with initial APIC ID `id`; the
    /// BSP's IA32_APIC_BASE has the BSP flag set.
    pub fn new(id: u32, bsp: bool, config: LapicConfig, clock: ClockHandle) -> Self {
        let mut apic = LocalApic {
            config,
            clock,
            bsp,
            initial_id: id,
            apic_base: 0,
            id,
            tpr: 0,
            ldr: 0,
            dfr: u32::MAX,
            svr: 0xFF,
            isr: [0; 8],
            tmr: [0; 8],
            irr: [0; 8],
            esr: 0,
            esr_pending: 0,
            icr: 0,
            lvt: [lvt::MASKED; 6],
            timer: ApicTimer::new(config.bus_hz, config.tsc_hz),
            lint: [false; 2],
            nmi_pending: false,
            extint_pending: false,
            init_pending: false,
            wait_for_sipi: false,
            sipi_vector: None,
            outbox: [None; OUTBOX_LEN],
        };
        apic.reset();
        apic
    }

    /// Power-on reset (RESET#, the VM's reset): IA32_APIC_BASE to
    /// FEE00000h with EN (and BSP) set, every register to its reset value,
    /// nothing pending; an AP waits for a Start-Up IPI.
    pub fn reset(&mut self) {
        self.apic_base = DEFAULT_APIC_BASE | apic_base::EN;
        if self.bsp {
            self.apic_base |= apic_base::BSP;
        }
        self.reset_registers();
        if self.bsp {
            self.lvt[Lvt::Lint0 as usize] = lvt::LINT0_VIRTUAL_WIRE;
        }
        self.init_pending = false;
        self.sipi_vector = None;
        self.wait_for_sipi = !self.bsp;
    }

    /// INIT (SDM 11.4.7.3): registers as after reset except the APIC ID and
    /// IA32_APIC_BASE (so the x2APIC mode too); an AP then waits for SIPI.
    fn init(&mut self) {
        let id = self.id;
        self.reset_registers();
        self.id = id;
        self.init_pending = true;
        self.sipi_vector = None;
        self.wait_for_sipi = !self.bsp;
    }

    /// The register values of SDM 11.4.7.1; the input levels are wires and
    /// stay.
    fn reset_registers(&mut self) {
        self.id = self.initial_id;
        self.tpr = 0;
        self.ldr = if self.x2apic_mode() {
            Self::x2apic_ldr(self.initial_id)
        } else {
            0
        };
        self.dfr = u32::MAX;
        self.svr = 0xFF;
        self.isr = [0; 8];
        self.tmr = [0; 8];
        self.irr = [0; 8];
        self.esr = 0;
        self.esr_pending = 0;
        self.icr = 0;
        self.lvt = [lvt::MASKED; 6];
        self.timer.reset();
        self.nmi_pending = false;
        self.extint_pending = false;
        self.outbox = [None; OUTBOX_LEN];
    }

    /// The x2APIC logical ID: cluster (ID[31:4]) in bits 31:16, one bit for
    /// ID[3:0] in bits 15:0 (SDM 11.12.10.2).
    fn x2apic_ldr(id: u32) -> u32 {
        ((id >> 4) << 16) | (1 << (id & 0xF))
    }

    /// The initial APIC ID this APIC was built with.
    pub fn initial_id(&self) -> u32 {
        self.initial_id
    }

    /// IA32_APIC_BASE[11]: the APIC is present.
    pub fn globally_enabled(&self) -> bool {
        self.apic_base & apic_base::EN != 0
    }

    /// x2APIC mode (EN and EXTD set).
    pub fn x2apic_mode(&self) -> bool {
        self.apic_base & (apic_base::EN | apic_base::EXTD) == apic_base::EN | apic_base::EXTD
    }

    /// SVR[8]: the APIC software enable.
    pub fn software_enabled(&self) -> bool {
        self.svr & SVR_ENABLE != 0
    }

    pub fn tpr(&self) -> u8 {
        self.tpr
    }

    /// CR8 reads TPR[7:4] (SDM 11.8.6).
    pub fn cr8(&self) -> u64 {
        u64::from(self.tpr >> 4)
    }

    /// MOV to CR8 sets TPR[7:4] from bits 3:0 and clears TPR[3:0]. The
    /// caller raises #GP for a value with bits 63:4 set, before calling.
    pub fn set_cr8(&mut self, value: u64) {
        self.tpr = ((value & 0xF) as u8) << 4;
    }

    /// The processor priority (SDM 11.8.3.1): TPR if its class is at least
    /// that of the highest in-service vector, else that vector's class.
    pub fn ppr(&self) -> u8 {
        let isrv = highest(&self.isr).unwrap_or(0);
        if self.tpr >> 4 >= isrv >> 4 {
            self.tpr
        } else {
            isrv & 0xF0
        }
    }

    /// The arbitration priority (SDM 11.6.2.4 for the P6 family; used here to
    /// pick the lowest-priority destination).
    pub fn apr(&self) -> u8 {
        let isrv = highest(&self.isr).unwrap_or(0);
        let irrv = highest(&self.irr).unwrap_or(0);
        if self.tpr >> 4 >= irrv >> 4 && self.tpr >> 4 > isrv >> 4 {
            self.tpr
        } else {
            (self.tpr & 0xF0).max(isrv & 0xF0).max(irrv & 0xF0)
        }
    }

    pub fn irr_set(&self, vector: u8) -> bool {
        test_bit(&self.irr, vector)
    }

    pub fn isr_set(&self, vector: u8) -> bool {
        test_bit(&self.isr, vector)
    }

    pub fn tmr_set(&self, vector: u8) -> bool {
        test_bit(&self.tmr, vector)
    }

    /// LVT entry `which` as software reads it.
    pub fn lvt(&self, which: Lvt) -> u32 {
        self.lvt[which as usize]
    }

    fn timer_mode(&self) -> TimerMode {
        TimerMode::from_lvt(self.lvt[Lvt::Timer as usize])
    }

    fn now(&self) -> u64 {
        self.clock.now_ns()
    }

    /// Turns timer expiries up to now into interrupts.
    pub fn sync_timer(&mut self) {
        let now = self.now();
        if self.timer.poll(self.timer_mode(), now) {
            self.fire_lvt(Lvt::Timer);
        }
    }

    /// When this APIC's timer next needs attention (an unmasked timer only:
    /// a masked expiry raises nothing). The caller syncs first.
    pub fn next_deadline_ns(&self) -> Option<u64> {
        if self.lvt[Lvt::Timer as usize] & lvt::MASKED != 0 {
            return None;
        }
        self.timer.next_deadline_ns(self.timer_mode())
    }

    /// Sets the guest TSC mapping for TSC-deadline mode (see
    /// [`ApicTimer::set_tsc_offset`]).
    pub fn set_tsc_offset(&mut self, offset: u64) {
        self.timer.set_tsc_offset(offset);
    }

    /// RDMSR IA32_TSC_DEADLINE (6E0h).
    pub fn tsc_deadline(&mut self) -> u64 {
        self.sync_timer();
        self.timer.tsc_deadline(self.timer_mode())
    }

    /// WRMSR IA32_TSC_DEADLINE: arms or disarms the deadline in TSC-deadline
    /// mode; ignored in the other modes (SDM 11.5.4.1).
    pub fn set_tsc_deadline(&mut self, value: u64) {
        self.sync_timer();
        self.timer.set_tsc_deadline(self.timer_mode(), value);
        self.sync_timer();
    }

    /// Logs `bits` in ESR and raises the error LVT.
    fn signal_error(&mut self, bits: u32) {
        self.esr_pending |= bits;
        let entry = self.lvt[Lvt::Error as usize];
        if entry & lvt::MASKED == 0 {
            let vector = (entry & lvt::VECTOR) as u8;
            if vector < 16 {
                self.esr_pending |= esr::RECEIVE_ILLEGAL_VECTOR;
            } else {
                set_bit(&mut self.irr, vector, true);
                set_bit(&mut self.tmr, vector, false);
            }
        }
    }

    /// Accepts a fixed interrupt into IRR; TMR records its trigger mode
    /// (SDM 11.8.4). Vectors 0-15 are illegal (ESR bit 6).
    fn accept_fixed(&mut self, vector: u8, level: bool) {
        if vector < 16 {
            self.signal_error(esr::RECEIVE_ILLEGAL_VECTOR);
            return;
        }
        set_bit(&mut self.irr, vector, true);
        set_bit(&mut self.tmr, vector, level);
    }

    /// A write to SELF IPI (SDM 11.12.11): what an ICR write of a fixed,
    /// edge-triggered IPI with the self shorthand does, without touching
    /// the ICR: vectors 0-15 set ESR's send-illegal-vector bit and send
    /// nothing; a software-disabled APIC takes no fixed interrupt.
    fn self_ipi(&mut self, vector: u8) {
        if vector < 16 {
            self.signal_error(esr::SEND_ILLEGAL_VECTOR);
        } else if self.software_enabled() {
            self.accept_fixed(vector, false);
        }
    }

    /// A local source (timer, thermal, PMC, error, or a LINT edge) fires
    /// through its LVT entry.
    fn fire_lvt(&mut self, which: Lvt) {
        let entry = self.lvt[which as usize];
        if entry & lvt::MASKED != 0 {
            return;
        }
        let vector = (entry & lvt::VECTOR) as u8;
        let mode = match which {
            Lvt::Timer | Lvt::Error => DeliveryMode::Fixed,
            _ => DeliveryMode::from_bits(entry.into()),
        };
        match mode {
            DeliveryMode::Fixed => {
                let level =
                    matches!(which, Lvt::Lint0 | Lvt::Lint1) && entry & lvt::TRIGGER_LEVEL != 0;
                self.accept_fixed(vector, level);
            }
            DeliveryMode::Nmi => self.nmi_pending = true,
            DeliveryMode::Init => self.init(),
            // ExtINT on LINT0 is level-sensitive: see `extint_requested`.
            _ => {}
        }
    }

    /// Drives LINT0 (`pin` 0) or LINT1 (1). With the APIC globally disabled
    /// they are the processor's INTR and NMI pins (SDM 11.4.3). Otherwise
    /// a rising edge fires the LVT entry, except ExtINT, which is a level.
    /// A level-triggered fixed LINT entry is taken on the rising edge only
    /// (its Remote IRR is not modelled).
    pub fn set_lint(&mut self, pin: usize, level: bool) {
        let Some(was) = self.lint.get(pin).copied() else {
            return;
        };
        self.lint[pin] = level;
        if !level || was {
            return;
        }
        if !self.globally_enabled() {
            if pin == 1 {
                self.nmi_pending = true;
            }
            return;
        }
        self.fire_lvt(if pin == 0 { Lvt::Lint0 } else { Lvt::Lint1 });
    }

    /// Whether the 8259A's INTR reaches the core through LINT0: the APIC is
    /// globally disabled (LINT0 is INTR), or LVT LINT0 is ExtINT and unmasked.
    pub fn lint0_passes_extint(&self) -> bool {
        let entry = self.lvt[Lvt::Lint0 as usize];
        !self.globally_enabled()
            || (entry & lvt::MASKED == 0
                && DeliveryMode::from_bits(entry.into()) == DeliveryMode::ExtInt)
    }

    /// Whether the core should run an INTA cycle to the 8259A: LINT0 passes
    /// ExtINT and is high, or an ExtINT message arrived. ExtINT goes to the
    /// core directly, not through IRR, so TPR does not hold it back
    /// (SDM 11.6.1).
    pub fn extint_requested(&self) -> bool {
        self.extint_pending || (self.lint[0] && self.lint0_passes_extint())
    }

    /// The INTA for ExtINT has run.
    pub fn extint_acknowledged(&mut self) {
        self.extint_pending = false;
    }

    /// The highest vector in IRR whose priority class is above the PPR's
    /// class (SDM 11.8.3.1), while the APIC is enabled; not acknowledged.
    pub fn pending_vector(&mut self) -> Option<u8> {
        self.sync_timer();
        if !self.globally_enabled() || !self.software_enabled() {
            return None;
        }
        let irrv = highest(&self.irr)?;
        (irrv >> 4 > self.ppr() >> 4).then_some(irrv)
    }

    /// The INTA cycle: the pending vector moves from IRR to ISR.
    pub fn acknowledge(&mut self) -> Option<u8> {
        let vector = self.pending_vector()?;
        set_bit(&mut self.irr, vector, false);
        set_bit(&mut self.isr, vector, true);
        Some(vector)
    }

    /// A write to EOI: clears the highest ISR bit; if its TMR bit is set the
    /// EOI is broadcast to the IOAPICs (SDM 11.8.5).
    pub fn end_of_interrupt(&mut self) {
        if let Some(vector) = highest(&self.isr) {
            set_bit(&mut self.isr, vector, false);
            if test_bit(&self.tmr, vector) {
                self.send(LapicOutput::EoiBroadcast(vector));
            }
        }
    }

    pub fn nmi_pending(&self) -> bool {
        self.nmi_pending
    }

    /// Takes the pending NMI (the vCPU is about to take it).
    pub fn take_nmi(&mut self) -> bool {
        core::mem::take(&mut self.nmi_pending)
    }

    /// Takes a received INIT (the VM loop resets the vCPU's registers).
    /// Whether an INIT waits for [`Self::take_init`].
    pub fn init_pending(&self) -> bool {
        self.init_pending
    }

    pub fn take_init(&mut self) -> bool {
        core::mem::take(&mut self.init_pending)
    }

    /// Takes a received Start-Up IPI's vector (the vCPU starts at
    /// `vector << 12` in real mode).
    pub fn take_sipi(&mut self) -> Option<u8> {
        self.sipi_vector.take()
    }

    /// Messages and EOIs for the router, oldest first.
    pub fn take_outputs(&mut self) -> impl Iterator<Item = LapicOutput> {
        core::mem::take(&mut self.outbox).into_iter().flatten()
    }

    /// Puts `output` in the outbox; with every slot taken (a caller that
    /// never drains it) the output is dropped, as a bus that is not listening
    /// would lose it.
    fn send(&mut self, output: LapicOutput) {
        match self.outbox.iter_mut().find(|s| s.is_none()) {
            Some(slot) => *slot = Some(output),
            None => log::debug!("local APIC outbox full; {output:?} dropped"),
        }
    }

    /// Whether a message's destination names this APIC (SDM 11.6.2). The
    /// shorthands are the router's to resolve.
    pub fn matches(&self, mode: DestinationMode, dest: u32) -> bool {
        if !self.globally_enabled() {
            return false;
        }
        if self.x2apic_mode() {
            if dest == u32::MAX {
                return true;
            }
            return match mode {
                DestinationMode::Physical => dest == self.id,
                DestinationMode::Logical => {
                    dest >> 16 == self.ldr >> 16 && dest & self.ldr & 0xFFFF != 0
                }
            };
        }
        let dest = dest & 0xFF;
        if dest == 0xFF {
            return true;
        }
        match mode {
            DestinationMode::Physical => dest == self.id & 0xFF,
            DestinationMode::Logical => {
                let logical = self.ldr >> 24;
                if self.dfr >> 28 == 0xF {
                    logical & dest != 0
                } else {
                    logical >> 4 == dest >> 4 && logical & dest & 0xF != 0
                }
            }
        }
    }

    /// Receives a message the router found addressed to this APIC.
    pub fn deliver(&mut self, msg: &ApicMessage) {
        if !self.globally_enabled() {
            return;
        }
        match msg.delivery {
            DeliveryMode::Fixed | DeliveryMode::LowestPriority => {
                // A software-disabled APIC takes only NMI, SMI, INIT and
                // Start-Up (SDM 11.4.7.2).
                if self.software_enabled() {
                    self.accept_fixed(msg.vector, msg.level_triggered);
                }
            }
            DeliveryMode::Nmi => self.nmi_pending = true,
            DeliveryMode::Init => self.init(),
            DeliveryMode::StartUp => {
                if self.wait_for_sipi {
                    self.wait_for_sipi = false;
                    self.sipi_vector = Some(msg.vector);
                }
            }
            DeliveryMode::ExtInt => self.extint_pending = true,
            DeliveryMode::Smi | DeliveryMode::Reserved => {
                log::debug!("lapic {}: {:?} message dropped", self.id, msg.delivery);
            }
        }
    }

    /// Reads register `index`; `x2` selects the x2APIC view.
    fn read_reg(&mut self, index: u32, x2: bool) -> Result<u64, RegFault> {
        self.sync_timer();
        let value: u32 = match index {
            reg::ID if x2 => self.id,
            reg::ID => (self.id & 0xFF) << 24,
            reg::VERSION => LAPIC_VERSION,
            reg::TPR => self.tpr.into(),
            reg::APR if !x2 => self.apr().into(),
            reg::PPR => self.ppr().into(),
            reg::EOI if x2 => return Err(RegFault::WriteOnly),
            reg::EOI | reg::RRD if !x2 => 0,
            reg::LDR => self.ldr,
            reg::DFR if !x2 => self.dfr,
            reg::SVR => self.svr,
            i if (reg::ISR..reg::ISR + 8).contains(&i) => self.isr[(i - reg::ISR) as usize],
            i if (reg::TMR..reg::TMR + 8).contains(&i) => self.tmr[(i - reg::TMR) as usize],
            i if (reg::IRR..reg::IRR + 8).contains(&i) => self.irr[(i - reg::IRR) as usize],
            reg::ESR => self.esr,
            reg::ICR_LOW if x2 => return Ok(self.icr),
            reg::ICR_LOW => self.icr as u32,
            reg::ICR_HIGH if !x2 => (self.icr >> 32) as u32,
            i if (reg::LVT_TIMER..=reg::LVT_ERROR).contains(&i) => {
                self.lvt[(i - reg::LVT_TIMER) as usize]
            }
            reg::TIMER_INITIAL => self.timer.initial_count(),
            reg::TIMER_CURRENT => self.timer.current_count(self.timer_mode(), self.now()),
            reg::TIMER_DIVIDE => self.timer.divide_config(),
            reg::SELF_IPI if x2 => return Err(RegFault::WriteOnly),
            _ => return Err(RegFault::Reserved),
        };
        Ok(value.into())
    }

    /// Writes register `index`; `x2` selects the x2APIC view (there `value`
    /// may be 64 bits wide for the ICR; the caller has checked bits 63:32 of
    /// the others).
    fn write_reg(&mut self, index: u32, value: u64, x2: bool) -> Result<(), RegFault> {
        self.sync_timer();
        let v32 = value as u32;
        match index {
            reg::ID if !x2 => self.id = v32 >> 24,
            reg::TPR => self.tpr = v32 as u8,
            reg::EOI => {
                if x2 && value != 0 {
                    return Err(RegFault::NonZero);
                }
                self.end_of_interrupt();
            }
            reg::LDR if !x2 => self.ldr = v32 & 0xFF00_0000,
            reg::DFR if !x2 => self.dfr = (v32 & 0xF000_0000) | 0x0FFF_FFFF,
            reg::SVR => self.write_svr(v32),
            reg::ESR => {
                if x2 && value != 0 {
                    return Err(RegFault::NonZero);
                }
                self.esr = core::mem::take(&mut self.esr_pending);
            }
            reg::ICR_LOW => {
                self.icr = if x2 {
                    (value & !0xFFFF_FFFF) | (value & icr::LOW_WRITABLE)
                } else {
                    (self.icr & !0xFFFF_FFFF) | (value & icr::LOW_WRITABLE)
                };
                self.send_ipi();
            }
            reg::ICR_HIGH if !x2 => {
                self.icr = (self.icr & 0xFFFF_FFFF) | (u64::from(v32 & 0xFF00_0000) << 32);
            }
            i if (reg::LVT_TIMER..=reg::LVT_ERROR).contains(&i) => {
                self.write_lvt(i - reg::LVT_TIMER, v32)
            }
            reg::TIMER_INITIAL => {
                let now = self.now();
                self.timer.write_initial(self.timer_mode(), v32, now);
            }
            reg::TIMER_DIVIDE => {
                let now = self.now();
                self.timer.write_divide_config(self.timer_mode(), v32, now);
            }
            reg::SELF_IPI if x2 => self.self_ipi(v32 as u8),
            reg::ID | reg::VERSION | reg::PPR | reg::LDR | reg::TIMER_CURRENT => {
                return Err(RegFault::ReadOnly)
            }
            i if (reg::ISR..reg::IRR + 8).contains(&i) => return Err(RegFault::ReadOnly),
            reg::APR | reg::RRD if !x2 => return Err(RegFault::ReadOnly),
            _ => return Err(RegFault::Reserved),
        }
        Ok(())
    }

    fn write_svr(&mut self, value: u32) {
        self.svr = value & SVR_WRITABLE;
        if !self.software_enabled() {
            // SDM 11.4.7.2: software disable sets every LVT mask bit.
            for entry in &mut self.lvt {
                *entry |= lvt::MASKED;
            }
        }
    }

    fn write_lvt(&mut self, index: u32, value: u32) {
        let Some(which) = [
            Lvt::Timer,
            Lvt::Thermal,
            Lvt::PerfCounter,
            Lvt::Lint0,
            Lvt::Lint1,
            Lvt::Error,
        ]
        .get(index as usize)
        .copied() else {
            return;
        };
        let writable = match which {
            Lvt::Timer if self.config.tsc_deadline => lvt::TIMER | lvt::TIMER_TSC_DEADLINE,
            Lvt::Timer => lvt::TIMER,
            Lvt::Thermal | Lvt::PerfCounter => lvt::THERMAL_PMC,
            Lvt::Lint0 | Lvt::Lint1 => lvt::LINT,
            Lvt::Error => lvt::ERROR,
        };
        let mut entry = value & writable;
        if !self.software_enabled() {
            entry |= lvt::MASKED;
        }
        let old_mode = self.timer_mode();
        self.lvt[which as usize] = entry;
        if which == Lvt::Timer {
            let now = self.now();
            self.timer.mode_changed(old_mode, self.timer_mode(), now);
        }
    }

    /// The ICR was written: decode it into a message for the router, or
    /// refuse it if the SDM calls the combination invalid (Table 11-4 note:
    /// the self and all-including-self shorthands take only fixed
    /// delivery; ExtINT and the reserved mode are not ICR modes; vectors
    /// 0-15 set ESR's send-illegal-vector bit). An INIT level de-assert
    /// does nothing since the Pentium 4 (SDM 11.6.1); guests still send it
    /// after INIT, so it is dropped without a word.
    fn send_ipi(&mut self) {
        let icr = self.icr;
        let vector = icr as u8;
        let delivery = DeliveryMode::from_bits(icr);
        let shorthand = (icr >> icr::SHORTHAND_SHIFT) & 3;
        let dest = if self.x2apic_mode() {
            (icr >> 32) as u32
        } else {
            ((icr >> 56) & 0xFF) as u32
        };
        let destination = match shorthand {
            0 => Destination::Field(dest),
            1 => Destination::SelfOnly,
            2 => Destination::AllIncludingSelf,
            _ => Destination::AllExcludingSelf,
        };
        let to_self = shorthand == 1 || shorthand == 2;
        let refused = match delivery {
            DeliveryMode::Fixed => None,
            DeliveryMode::Init if icr & icr::TRIGGER_LEVEL != 0 && icr & icr::LEVEL_ASSERT == 0 => {
                return;
            }
            DeliveryMode::LowestPriority
            | DeliveryMode::Smi
            | DeliveryMode::Nmi
            | DeliveryMode::Init
            | DeliveryMode::StartUp
                if to_self =>
            {
                Some(IcrRefusal::SelfShorthandNotFixed)
            }
            DeliveryMode::ExtInt | DeliveryMode::Reserved => Some(IcrRefusal::NotAnIcrMode),
            _ => None,
        };
        let illegal_vector =
            matches!(delivery, DeliveryMode::Fixed | DeliveryMode::LowestPriority) && vector < 16;
        let refused = match refused {
            Some(why) => Some(why),
            None if illegal_vector => {
                self.signal_error(esr::SEND_ILLEGAL_VECTOR);
                Some(IcrRefusal::IllegalVector)
            }
            None => None,
        };
        if let Some(why) = refused {
            self.send(LapicOutput::RefusedIcr { icr, why });
            return;
        }
        let dest_mode = if icr & icr::DEST_LOGICAL != 0 {
            DestinationMode::Logical
        } else {
            DestinationMode::Physical
        };
        self.send(LapicOutput::Ipi(ApicMessage {
            vector,
            delivery,
            dest_mode,
            destination,
            level_triggered: delivery == DeliveryMode::Fixed && icr & icr::TRIGGER_LEVEL != 0,
        }));
    }

    /// Whether the xAPIC page answers (globally enabled, not x2APIC).
    pub fn mmio_active(&self) -> bool {
        self.globally_enabled() && !self.x2apic_mode()
    }

    /// A guest read of `data.len()` bytes at `offset` in the APIC page (see
    /// the module documentation for widths and alignment).
    pub fn mmio_read(&mut self, offset: u64, data: &mut [u8]) {
        if !self.mmio_active() {
            data.fill(0xFF);
            return;
        }
        let mut slot_value: Option<(u64, u32)> = None;
        for (i, byte) in data.iter_mut().enumerate() {
            let at = offset.wrapping_add(i as u64) & 0xFFF;
            let slot = at >> 4;
            let in_slot = at & 0xF;
            if in_slot >= 4 {
                *byte = 0;
                continue;
            }
            let value = match slot_value {
                Some((s, v)) if s == slot => v,
                _ => {
                    let v = match self.read_reg(slot as u32, false) {
                        Ok(v) => v as u32,
                        Err(RegFault::Reserved) => {
                            self.signal_error(esr::ILLEGAL_REGISTER);
                            0
                        }
                        Err(_) => 0,
                    };
                    slot_value = Some((slot, v));
                    v
                }
            };
            *byte = (value >> (8 * in_slot)) as u8;
        }
    }

    /// A guest write of `data` at `offset` in the APIC page.
    pub fn mmio_write(&mut self, offset: u64, data: &[u8]) {
        if !self.mmio_active() {
            return;
        }
        let (&[a, b, c, d], 0) = (data, offset & 0xF) else {
            log::debug!(
                "lapic {}: {}-byte write at offset {offset:#x} is not an aligned 32-bit store; dropped",
                self.id,
                data.len()
            );
            return;
        };
        let value = u32::from_le_bytes([a, b, c, d]);
        if let Err(RegFault::Reserved) =
            self.write_reg((offset >> 4) as u32 & 0xFF, value.into(), false)
        {
            self.signal_error(esr::ILLEGAL_REGISTER);
        }
    }
}

#[cfg(test)]
mod tests;
