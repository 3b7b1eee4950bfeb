//! What every device on an IDE channel has, whatever its command set: its
//! register file, its INTRQ output, the DRQ data block a PIO command moves
//! through the Data register, and the DMA request a DMA command raises
//! (ATA8-APT 6 and 11 "Protocols": PIO data-in, PIO data-out, DMA).
//!
//! [`Drive`] dispatches to the command set: [`AtaDisk`] or [`AtapiCdrom`].

use alloc::vec::Vec;

use super::ata::AtaDisk;
use super::atapi::AtapiCdrom;
use super::bmdma::{DmaFault, PrdWalker};
use super::regs::{error, status, TaskFile};

/// Direction of a data transfer, as the host sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    /// Device to host (a read).
    In,
    /// Host to device (a write).
    Out,
}

/// Bytes of a device's data buffer: the largest DRQ block (an ATAPI byte
/// count limit of FFFEh) and the largest piece a DMA transfer or READ
/// VERIFY moves between the backend and guest memory at a time (64 KiB).
pub const DATA_BUF_BYTES: usize = 64 * 1024;

/// The state every device keeps, independent of its command set.
#[derive(Debug, Clone, Default)]
pub struct DeviceCore {
    pub tf: TaskFile,
    /// The device wants to interrupt (INTRQ is driven while selected and nIEN clear).
    pub intrq: bool,
    /// The current DRQ data block, or the bounce buffer of a DMA transfer.
    /// Its [`DATA_BUF_BYTES`] are allocated once, when a drive is plugged
    /// in; no guest command grows it (issue 11: no allocation in response
    /// to a guest access).
    pub buf: Vec<u8>,
    /// Next byte of `buf` the host moves.
    pub pos: usize,
    /// A PIO DRQ block is open in this direction.
    pub pio: Option<Dir>,
    /// A DMA command waits for (or is being served by) the bus master.
    pub dma: Option<Dir>,
}

impl DeviceCore {
    /// The state of a device just plugged in, with its data buffer.
    pub fn new() -> Self {
        DeviceCore {
            buf: Vec::with_capacity(DATA_BUF_BYTES),
            ..DeviceCore::default()
        }
    }

    /// Back to the power-on state, keeping the data buffer.
    pub fn reset(&mut self) {
        let mut buf = core::mem::take(&mut self.buf);
        buf.clear();
        *self = DeviceCore {
            buf,
            ..DeviceCore::default()
        };
    }

    /// The first `len` bytes of the data buffer, zeroed, for the device to
    /// fill: at most the buffer's capacity, so this never allocates (a
    /// device that asks for more than [`DATA_BUF_BYTES`] gets less).
    pub fn data(&mut self, len: usize) -> &mut [u8] {
        let len = len.min(self.buf.capacity());
        self.buf.clear();
        self.buf.resize(len, 0);
        &mut self.buf
    }

    /// Opens a DRQ block of `len` bytes the host will write.
    pub fn open_pio_out(&mut self, len: usize, ready: u8) {
        self.data(len);
        self.pos = 0;
        self.pio = Some(Dir::Out);
        self.tf.status = ready | status::DRQ;
    }

    /// Opens a DRQ block for the host to read: the bytes the last
    /// [`DeviceCore::data`] handed out.
    pub fn open_pio_in(&mut self, ready: u8) {
        self.pos = 0;
        self.pio = Some(Dir::In);
        self.tf.status = ready | status::DRQ;
    }

    /// Raises the DMA request for a command moving data in `dir`.
    pub fn request_dma(&mut self, dir: Dir, ready: u8) {
        self.pio = None;
        self.dma = Some(dir);
        self.tf.status = ready | status::DRQ;
    }

    /// Ends any data phase.
    pub fn end_transfer(&mut self) {
        self.pio = None;
        self.dma = None;
        self.buf.clear();
        self.pos = 0;
    }

    /// Completes the command: `ready` status, no error, an interrupt.
    pub fn complete(&mut self, ready: u8) {
        self.end_transfer();
        self.tf.status = ready;
        self.tf.error = 0;
        self.intrq = true;
    }

    /// Fails the command with `err` in the Error register and an interrupt.
    pub fn fail(&mut self, ready: u8, err: u8) {
        self.end_transfer();
        self.tf.status = ready | status::ERR;
        self.tf.error = err;
        self.intrq = true;
    }

    /// Aborts the command (ABRT).
    pub fn abort(&mut self, ready: u8) {
        self.fail(ready, error::ABRT);
    }

    /// The bytes of the open DRQ block not moved yet.
    pub fn block_left(&self) -> usize {
        self.buf.len().saturating_sub(self.pos)
    }
}

/// How a DMA command's walk ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DmaEnd {
    /// The device finished its command (successfully or with its own error).
    Finished,
    /// The bus master could not move the data.
    Fault(DmaFault),
    /// The walk's budget ran out with data left: the command goes on at
    /// the next call, from where it stopped.
    Paused,
}

/// A device plugged into an IDE channel.
pub enum Drive {
    Ata(AtaDisk),
    Atapi(AtapiCdrom),
}

impl Drive {
    /// Whether the device implements the PACKET feature set.
    pub fn is_packet(&self) -> bool {
        matches!(self, Drive::Atapi(_))
    }

    /// Executes a command written to the Command register.
    pub fn command(&mut self, cmd: u8, core: &mut DeviceCore) {
        match self {
            Drive::Ata(d) => d.command(cmd, core),
            Drive::Atapi(d) => d.command(cmd, core),
        }
    }

    /// The host has moved the whole open DRQ block.
    pub fn pio_block_done(&mut self, core: &mut DeviceCore) {
        match self {
            Drive::Ata(d) => d.pio_block_done(core),
            Drive::Atapi(d) => d.pio_block_done(core),
        }
    }

    /// Serves the pending DMA command through `walker`.
    pub fn dma(&mut self, core: &mut DeviceCore, walker: &mut PrdWalker<'_>) -> DmaEnd {
        match self {
            Drive::Ata(d) => d.dma(core, walker),
            Drive::Atapi(d) => d.dma(core, walker),
        }
    }

    /// Whether a command is still executing without the host's help.
    pub fn executing(&self) -> bool {
        match self {
            Drive::Ata(d) => d.executing(),
            Drive::Atapi(_) => false,
        }
    }

    /// Moves an executing command on by one call's budget.
    pub fn continue_command(&mut self, core: &mut DeviceCore) {
        if let Drive::Ata(d) = self {
            d.continue_command(core);
        }
    }

    /// The bus master failed: the command ends aborted.
    pub fn dma_aborted(&mut self, core: &mut DeviceCore) {
        match self {
            Drive::Ata(d) => d.dma_aborted(core),
            Drive::Atapi(d) => d.dma_aborted(core),
        }
    }

    /// The state after a software reset (SRST, DEVICE RESET) or EXECUTE
    /// DEVICE DIAGNOSTIC: no command, the signature, diagnostic code 01h.
    pub fn signature_reset(&mut self, core: &mut DeviceCore) {
        core.end_transfer();
        core.intrq = false;
        core.tf.set_signature(self.is_packet());
        core.tf.error = error::DIAG_PASSED;
        match self {
            Drive::Ata(d) => {
                d.cancel();
                core.tf.status = status::DRDY | status::DSC;
            }
            Drive::Atapi(d) => {
                d.cancel();
                // ATA8-ACS 9.12: a PACKET device clears DRDY after a reset.
                core.tf.status = 0;
            }
        }
    }

    /// Power-on (hardware) reset: settings back to defaults, then as SRST.
    pub fn reset(&mut self, core: &mut DeviceCore) {
        match self {
            Drive::Ata(d) => d.reset(),
            Drive::Atapi(d) => d.reset(),
        }
        self.signature_reset(core);
    }
}
