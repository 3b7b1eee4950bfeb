//! A 16550A UART, the PC's COM port (National/TI PC16550D datasheet).
//!
//! The model covers what a PC guest programs: the eight registers with the
//! divisor latch behind DLAB, the 16-byte receive FIFO with its trigger level,
//! the four prioritised interrupt sources, loopback, and the modem lines.
//!
//! Time is not modelled. Transmission is instantaneous: a byte written to THR
//! reaches the [`CharSink`] at once, so THRE and TEMT always read back set.
//! Likewise the receive FIFO's character timeout (8.6: no FIFO activity for
//! four character times) is treated as already elapsed whenever data sits
//! below the trigger level, so a guest is never left waiting for a timer that
//! does not exist.
//!
//! Each register is one byte wide. A wider access touches only the register at
//! its first byte; the remaining bytes of a read are `0xFF` (as if nothing drove
//! them) and the remaining bytes of a write are ignored.

use alloc::boxed::Box;
use alloc::collections::VecDeque;

use super::CharSink;
use crate::bus::BusDevice;

/// Register offsets from the base port (datasheet Table II, register summary).
mod reg {
    /// Receiver Buffer (read) / Transmitter Holding (write) with DLAB = 0;
    /// Divisor Latch LSB (DLL) with DLAB = 1.
    pub const RBR_THR_DLL: u64 = 0;
    /// Interrupt Enable with DLAB = 0; Divisor Latch MSB (DLM) with DLAB = 1.
    pub const IER_DLM: u64 = 1;
    /// Interrupt Identification (read) / FIFO Control (write).
    pub const IIR_FCR: u64 = 2;
    /// Line Control.
    pub const LCR: u64 = 3;
    /// Modem Control.
    pub const MCR: u64 = 4;
    /// Line Status.
    pub const LSR: u64 = 5;
    /// Modem Status.
    pub const MSR: u64 = 6;
    /// Scratch.
    pub const SCR: u64 = 7;
}

/// IER bits (8.7).
mod ier {
    /// Enable Received Data Available Interrupt (and the FIFO timeout).
    pub const ERBFI: u8 = 1 << 0;
    /// Enable Transmitter Holding Register Empty Interrupt.
    pub const ETBEI: u8 = 1 << 1;
    /// Enable Receiver Line Status Interrupt.
    pub const ELSI: u8 = 1 << 2;
    /// Enable MODEM Status Interrupt.
    pub const EDSSI: u8 = 1 << 3;
    /// Bits 7:4 are always 0.
    pub const MASK: u8 = 0x0F;
}

/// IIR values (8.6, interrupt control functions).
mod iir {
    /// Bit 0 set: no interrupt pending.
    pub const NO_INT: u8 = 0x01;
    /// Receiver Line Status: OE, PE, FE or BI. Highest priority.
    pub const RLS: u8 = 0x06;
    /// Received Data Available (or FIFO at its trigger level).
    pub const RDA: u8 = 0x04;
    /// Character Timeout Indication (FIFO mode only).
    pub const CTI: u8 = 0x0C;
    /// Transmitter Holding Register Empty.
    pub const THRE: u8 = 0x02;
    /// MODEM Status. Lowest priority.
    pub const MS: u8 = 0x00;
    /// Bits 7:6 set while FCR0 enables the FIFOs.
    pub const FIFOS_ENABLED: u8 = 0xC0;
}

/// FCR bits (8.5).
mod fcr {
    /// FIFO Enable; the other bits are only programmed while it is set.
    pub const FIFO_ENABLE: u8 = 1 << 0;
    /// RCVR FIFO Reset (self-clearing).
    pub const RCVR_FIFO_RESET: u8 = 1 << 1;
    /// RCVR Trigger, bits 7:6: 1, 4, 8 or 14 bytes.
    pub const RCVR_TRIGGER_SHIFT: u8 = 6;
}

/// LCR bits (8.1).
mod lcr {
    /// Divisor Latch Access Bit: offsets 0 and 1 become DLL and DLM.
    pub const DLAB: u8 = 1 << 7;
}

/// MCR bits (8.8).
mod mcr {
    pub const DTR: u8 = 1 << 0;
    pub const RTS: u8 = 1 << 1;
    pub const OUT1: u8 = 1 << 2;
    /// On a PC, OUT2 gates the UART's INTR onto the IRQ line.
    pub const OUT2: u8 = 1 << 3;
    /// Local loopback.
    pub const LOOP: u8 = 1 << 4;
    /// Bits 7:5 are always 0.
    pub const MASK: u8 = 0x1F;
}

/// LSR bits (8.4).
mod lsr {
    /// Data Ready.
    pub const DR: u8 = 1 << 0;
    /// Overrun Error.
    pub const OE: u8 = 1 << 1;
    /// Parity Error.
    pub const PE: u8 = 1 << 2;
    /// Framing Error.
    pub const FE: u8 = 1 << 3;
    /// Break Interrupt.
    pub const BI: u8 = 1 << 4;
    /// Transmitter Holding Register Empty.
    pub const THRE: u8 = 1 << 5;
    /// Transmitter Empty.
    pub const TEMT: u8 = 1 << 6;
    /// Error in RCVR FIFO (FIFO mode only).
    pub const RCVR_FIFO_ERROR: u8 = 1 << 7;
    /// The line status bits that raise the Receiver Line Status interrupt.
    pub const LINE_ERRORS: u8 = OE | PE | FE | BI;
}

/// MSR bits (8.9).
mod msr {
    /// Delta Clear to Send.
    pub const DCTS: u8 = 1 << 0;
    /// Delta Data Set Ready.
    pub const DDSR: u8 = 1 << 1;
    /// Trailing Edge Ring Indicator.
    pub const TERI: u8 = 1 << 2;
    /// Delta Data Carrier Detect.
    pub const DDCD: u8 = 1 << 3;
    pub const CTS: u8 = 1 << 4;
    pub const DSR: u8 = 1 << 5;
    pub const RI: u8 = 1 << 6;
    pub const DCD: u8 = 1 << 7;
    /// The four delta bits, cleared when MSR is read.
    pub const DELTAS: u8 = 0x0F;
}

/// Depth of the receive FIFO (8.5).
const RCVR_FIFO_DEPTH: usize = 16;

/// The modem inputs outside loopback: the host end of the line is a ready
/// terminal (CTS, DSR and DCD asserted, no ring), so a guest that waits for
/// carrier or clear-to-send proceeds.
const HOST_MODEM_LINES: u8 = msr::CTS | msr::DSR | msr::DCD;

/// A received character and the line errors that came with it (8.4: in FIFO
/// mode PE, FE and BI belong to the character, shown when it reaches the top).
#[derive(Debug, Clone, Copy)]
struct RxChar {
    byte: u8,
    errors: u8,
}

/// Where output goes for the instant a reset swaps the real sink out.
struct Discard;

impl CharSink for Discard {
    fn write_byte(&mut self, _byte: u8) {}
}

/// A 16550A UART.
pub struct Uart16550 {
    output: Box<dyn CharSink>,
    /// Receive FIFO; holds at most one character in 16450 (non-FIFO) mode.
    rx: VecDeque<RxChar>,
    ier: u8,
    lcr: u8,
    mcr: u8,
    scr: u8,
    dll: u8,
    dlm: u8,
    /// FCR0: FIFO mode.
    fifo_enabled: bool,
    /// Receive FIFO trigger level in bytes (FCR bits 7:6).
    rcvr_trigger: usize,
    /// OE, PE, FE and BI as latched in LSR until LSR is read.
    line_errors: u8,
    /// The THRE interrupt source (8.6: cleared by reading IIR when it is the
    /// source, or by writing THR; set when THR empties).
    thre_pending: bool,
    /// CTS, DSR, RI and DCD (bits 7:4) and the delta bits (3:0).
    msr: u8,
}

impl Uart16550 {
    /// A UART in its reset state (datasheet reset-functions table),
    /// transmitting into `output`.
    ///
    /// The divisor latch has no reset value in the datasheet; it starts at 12
    /// (9600 baud from a 1.8432 MHz clock), what PC firmware programs.
    pub fn new(output: Box<dyn CharSink>) -> Self {
        Uart16550 {
            output,
            rx: VecDeque::with_capacity(RCVR_FIFO_DEPTH),
            ier: 0,
            lcr: 0,
            mcr: 0,
            scr: 0,
            dll: 12,
            dlm: 0,
            fifo_enabled: false,
            rcvr_trigger: 1,
            line_errors: 0,
            thre_pending: false,
            msr: HOST_MODEM_LINES,
        }
    }

    /// MR (master reset): every register back to its reset value; the output
    /// stays connected. The machine's reset line drives it.
    pub fn reset(&mut self) {
        let output = core::mem::replace(&mut self.output, Box::new(Discard));
        *self = Uart16550::new(output);
    }

    /// A byte arriving on the serial input (host to guest).
    ///
    /// Returns false if the byte was lost: on overrun (the receive buffer or
    /// FIFO is full; OE is set), or in loopback, where the serial input is
    /// disconnected from the receiver (8.8).
    pub fn receive(&mut self, byte: u8) -> bool {
        if self.loopback() {
            return false;
        }
        self.push_rx(RxChar { byte, errors: 0 })
    }

    /// How many more characters the receiver takes before the next one
    /// overruns: the free places of the 16-byte FIFO in FIFO mode, of the
    /// one-byte RBR in 16450 mode (8.4, OE), none in loopback, where the
    /// serial input is disconnected (8.8). A host that only sends this many
    /// loses nothing; the guest still sees overrun when bytes come faster.
    pub fn receive_room(&self) -> usize {
        if self.loopback() {
            return 0;
        }
        self.rx_capacity().saturating_sub(self.rx.len())
    }

    /// Puts `output` where the transmitter's bytes go and returns the sink
    /// that was there (the platform adds a second listener this way).
    pub fn replace_output(&mut self, output: Box<dyn CharSink>) -> Box<dyn CharSink> {
        core::mem::replace(&mut self.output, output)
    }

    /// A break condition on the serial input: a zero character with BI
    /// (8.4). Guests use it as an attention signal (Linux's magic SysRq).
    /// Returns false if the character was lost, as for [`Self::receive`].
    pub fn receive_break(&mut self) -> bool {
        if self.loopback() {
            return false;
        }
        self.push_rx(RxChar {
            byte: 0,
            errors: lsr::BI,
        })
    }

    /// The INTR output as a PC sees it: an enabled interrupt is pending and
    /// MCR OUT2 lets it through. In loopback the modem outputs, OUT2 among
    /// them, are forced inactive (8.8), so no interrupt reaches the PIC.
    pub fn irq_pending(&self) -> bool {
        self.mcr & mcr::OUT2 != 0 && !self.loopback() && self.interrupt_id() != iir::NO_INT
    }

    /// Whether a received character would reach the PC's interrupt line:
    /// ERBFI set (8.7), OUT2 set and not in loopback (8.8). A halted guest
    /// can only be woken by typed input when this holds.
    pub fn receive_interrupt_armed(&self) -> bool {
        self.ier & ier::ERBFI != 0 && self.mcr & mcr::OUT2 != 0 && !self.loopback()
    }

    /// The baud-rate divisor in the divisor latch (8.3).
    pub fn divisor(&self) -> u16 {
        u16::from_le_bytes([self.dll, self.dlm])
    }

    fn loopback(&self) -> bool {
        self.mcr & mcr::LOOP != 0
    }

    fn dlab(&self) -> bool {
        self.lcr & lcr::DLAB != 0
    }

    fn rx_capacity(&self) -> usize {
        if self.fifo_enabled {
            RCVR_FIFO_DEPTH
        } else {
            1
        }
    }

    /// Loads a character into the receiver (8.4, OE): in FIFO mode a
    /// character arriving at a full FIFO is lost; in 16450 mode it overwrites
    /// the unread one.
    fn push_rx(&mut self, c: RxChar) -> bool {
        if self.rx.len() >= self.rx_capacity() {
            self.line_errors |= lsr::OE;
            if !self.fifo_enabled {
                self.rx.clear();
                self.rx.push_back(c);
                self.line_errors |= c.errors;
            }
            return false;
        }
        if self.rx.is_empty() {
            // The character is at the top: its errors show in LSR now.
            self.line_errors |= c.errors;
        }
        self.rx.push_back(c);
        true
    }

    fn pop_rx(&mut self) -> u8 {
        let Some(c) = self.rx.pop_front() else {
            return 0;
        };
        if let Some(next) = self.rx.front() {
            self.line_errors |= next.errors;
        }
        c.byte
    }

    /// The highest-priority pending interrupt, or `iir::NO_INT` (8.6).
    fn interrupt_id(&self) -> u8 {
        if self.ier & ier::ELSI != 0 && self.line_errors & lsr::LINE_ERRORS != 0 {
            return iir::RLS;
        }
        if self.ier & ier::ERBFI != 0 && !self.rx.is_empty() {
            if !self.fifo_enabled || self.rx.len() >= self.rcvr_trigger {
                return iir::RDA;
            }
            return iir::CTI;
        }
        if self.ier & ier::ETBEI != 0 && self.thre_pending {
            return iir::THRE;
        }
        if self.ier & ier::EDSSI != 0 && self.msr & msr::DELTAS != 0 {
            return iir::MS;
        }
        iir::NO_INT
    }

    fn read_iir(&mut self) -> u8 {
        let id = self.interrupt_id();
        if id == iir::THRE {
            self.thre_pending = false;
        }
        if self.fifo_enabled {
            id | iir::FIFOS_ENABLED
        } else {
            id
        }
    }

    fn read_lsr(&mut self) -> u8 {
        let mut value = lsr::THRE | lsr::TEMT | self.line_errors;
        if !self.rx.is_empty() {
            value |= lsr::DR;
        }
        if self.fifo_enabled && self.rx.iter().any(|c| c.errors != 0) {
            value |= lsr::RCVR_FIFO_ERROR;
        }
        self.line_errors = 0;
        value
    }

    fn read_msr(&mut self) -> u8 {
        let value = self.msr;
        self.msr &= !msr::DELTAS;
        value
    }

    /// THR write (8.6, THRE): the write clears the THRE interrupt; the byte
    /// leaves at once (to the sink, or to the receiver in loopback), so THR is
    /// empty again and the interrupt re-arms.
    fn write_thr(&mut self, byte: u8) {
        self.thre_pending = false;
        if self.loopback() {
            self.push_rx(RxChar { byte, errors: 0 });
        } else {
            self.output.write_byte(byte);
        }
        self.thre_pending = true;
    }

    /// IER write: setting ETBEI while THR is empty raises THRE (8.7).
    fn write_ier(&mut self, value: u8) {
        let value = value & ier::MASK;
        let newly_enabled = value & !self.ier;
        self.ier = value;
        if newly_enabled & ier::ETBEI != 0 {
            // THR is always empty: transmission is instantaneous.
            self.thre_pending = true;
        }
    }

    /// FCR write (8.5). Changing FCR0 clears both FIFOs; the other bits are
    /// only programmed while FCR0 is written as 1. XMIT FIFO Reset (bit 2)
    /// has nothing to discard, since the transmitter never holds data, and
    /// DMA Mode Select (bit 3) has no DMA to drive.
    fn write_fcr(&mut self, value: u8) {
        let enable = value & fcr::FIFO_ENABLE != 0;
        if enable != self.fifo_enabled {
            self.rx.clear();
            self.fifo_enabled = enable;
        }
        if !enable {
            return;
        }
        if value & fcr::RCVR_FIFO_RESET != 0 {
            self.rx.clear();
        }
        self.rcvr_trigger = match value >> fcr::RCVR_TRIGGER_SHIFT {
            0 => 1,
            1 => 4,
            2 => 8,
            _ => 14,
        };
    }

    /// MCR write (8.8). Entering or leaving loopback, or changing the
    /// outputs in loopback, changes what MSR sees and sets its delta bits.
    fn write_mcr(&mut self, value: u8) {
        self.mcr = value & mcr::MASK;
        self.update_modem_lines();
    }

    /// The modem inputs: the MCR outputs in loopback (DTR->DSR, RTS->CTS,
    /// OUT1->RI, OUT2->DCD), the host's lines otherwise (8.9).
    fn update_modem_lines(&mut self) {
        let lines = if self.loopback() {
            let m = self.mcr;
            let mut l = 0;
            if m & mcr::RTS != 0 {
                l |= msr::CTS;
            }
            if m & mcr::DTR != 0 {
                l |= msr::DSR;
            }
            if m & mcr::OUT1 != 0 {
                l |= msr::RI;
            }
            if m & mcr::OUT2 != 0 {
                l |= msr::DCD;
            }
            l
        } else {
            HOST_MODEM_LINES
        };
        let old = self.msr & !msr::DELTAS;
        let changed = old ^ lines;
        let mut deltas = self.msr & msr::DELTAS;
        if changed & msr::CTS != 0 {
            deltas |= msr::DCTS;
        }
        if changed & msr::DSR != 0 {
            deltas |= msr::DDSR;
        }
        // TERI: RI went from asserted to deasserted (the end of a ring).
        if old & msr::RI != 0 && lines & msr::RI == 0 {
            deltas |= msr::TERI;
        }
        if changed & msr::DCD != 0 {
            deltas |= msr::DDCD;
        }
        self.msr = lines | deltas;
    }

    fn read_register(&mut self, offset: u64) -> u8 {
        match offset {
            reg::RBR_THR_DLL if self.dlab() => self.dll,
            reg::RBR_THR_DLL => self.pop_rx(),
            reg::IER_DLM if self.dlab() => self.dlm,
            reg::IER_DLM => self.ier,
            reg::IIR_FCR => self.read_iir(),
            reg::LCR => self.lcr,
            reg::MCR => self.mcr,
            reg::LSR => self.read_lsr(),
            reg::MSR => self.read_msr(),
            reg::SCR => self.scr,
            _ => 0xFF,
        }
    }

    fn write_register(&mut self, offset: u64, value: u8) {
        match offset {
            reg::RBR_THR_DLL if self.dlab() => self.dll = value,
            reg::RBR_THR_DLL => self.write_thr(value),
            reg::IER_DLM if self.dlab() => self.dlm = value,
            reg::IER_DLM => self.write_ier(value),
            reg::IIR_FCR => self.write_fcr(value),
            reg::LCR => self.lcr = value,
            reg::MCR => self.write_mcr(value),
            // LSR and MSR are status registers; writes do not change them.
            reg::LSR | reg::MSR => {}
            reg::SCR => self.scr = value,
            _ => {}
        }
    }
}

impl BusDevice for Uart16550 {
    fn read(&mut self, _base: u64, offset: u64, data: &mut [u8]) {
        data.fill(0xFF);
        if let Some(first) = data.first_mut() {
            *first = self.read_register(offset);
        }
    }

    fn write(&mut self, _base: u64, offset: u64, data: &[u8]) {
        if let Some(&first) = data.first() {
            self.write_register(offset, first);
        }
    }
}

#[cfg(test)]
mod tests;
