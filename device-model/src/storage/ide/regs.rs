//! The ATA register file of one device (ATA8-APT 6 "I/O register
//! descriptions", ATA8-ACS 6 "Normal and error outputs").
//!
//! The command block registers at `base + 1 ..= base + 7` and the control
//! block register at the control port. Features, Count and the three LBA
//! registers are two bytes deep: a write pushes the previous value into the
//! "high order byte" (HOB) half, which a read with the HOB bit of Device
//! Control set returns (ATA8-APT 6.2.2), so a 48-bit command's upper bytes
//! are the values written first.

/// Offsets in the command block (ATA8-APT table 9).
pub mod reg {
    pub const DATA: u8 = 0;
    /// Error (read) / Features (write).
    pub const ERROR_FEATURES: u8 = 1;
    /// Count; for PACKET devices also the interrupt reason on reads.
    pub const COUNT: u8 = 2;
    pub const LBA_LOW: u8 = 3;
    /// LBA Mid; for PACKET devices the byte count low.
    pub const LBA_MID: u8 = 4;
    /// LBA High; for PACKET devices the byte count high.
    pub const LBA_HIGH: u8 = 5;
    pub const DEVICE: u8 = 6;
    /// Status (read) / Command (write).
    pub const STATUS_COMMAND: u8 = 7;
}

/// Status register bits (ATA8-ACS 6.2.11; ATA8-APT 6.2.13).
pub mod status {
    pub const BSY: u8 = 0x80;
    pub const DRDY: u8 = 0x40;
    /// Device fault.
    pub const DF: u8 = 0x20;
    /// Device seek complete (obsolete, still set by most disks when ready);
    /// SERV on PACKET devices, which Keel leaves clear.
    pub const DSC: u8 = 0x10;
    pub const DRQ: u8 = 0x08;
    /// ERR; CHK on PACKET devices.
    pub const ERR: u8 = 0x01;
}

/// Error register bits (ATA8-ACS 6.2.3). For PACKET devices bits 7:4 hold
/// the sense key (MMC-6 7.4.3 via ATA8-APT).
pub mod error {
    pub const ICRC: u8 = 0x80;
    /// Uncorrectable data error.
    pub const UNC: u8 = 0x40;
    /// ID (address) not found.
    pub const IDNF: u8 = 0x10;
    /// Command aborted.
    pub const ABRT: u8 = 0x04;
    /// Diagnostic code "device 0 passed, device 1 passed or not present"
    /// (ATA8-ACS table 30), left in the Error register by every reset.
    pub const DIAG_PASSED: u8 = 0x01;
}

/// Device Control register bits (ATA8-APT 6.2.6).
pub mod control {
    /// Reads of the command block return the previously written bytes.
    pub const HOB: u8 = 0x80;
    /// Software reset of both devices on the channel.
    pub const SRST: u8 = 0x04;
    /// INTRQ disabled (tri-stated).
    pub const NIEN: u8 = 0x02;
}

/// Device register bits (ATA8-APT 6.2.7).
pub mod device {
    /// LBA addressing (clear: CHS).
    pub const LBA: u8 = 0x40;
    /// Device 1 selected.
    pub const DEV: u8 = 0x10;
}

/// Interrupt reason in the Count register of a PACKET device (ATA8-APT 6.2.4).
pub mod reason {
    /// Command (1) or data (0).
    pub const COD: u8 = 0x01;
    /// Transfer to the host (1) or to the device (0).
    pub const IO: u8 = 0x02;
}

/// One register with its HOB half.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct HobReg {
    pub cur: u8,
    pub prev: u8,
}

impl HobReg {
    /// A host write: the current byte becomes the previous one.
    pub fn write(&mut self, v: u8) {
        self.prev = self.cur;
        self.cur = v;
    }

    /// Both halves set by the device.
    pub fn set(&mut self, cur: u8, prev: u8) {
        self.cur = cur;
        self.prev = prev;
    }

    pub fn read(&self, hob: bool) -> u8 {
        if hob {
            self.prev
        } else {
            self.cur
        }
    }
}

/// The registers one device holds (each device on a channel latches every
/// command block write; only the selected one answers reads).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TaskFile {
    pub features: HobReg,
    pub count: HobReg,
    pub lba_low: HobReg,
    pub lba_mid: HobReg,
    pub lba_high: HobReg,
    pub device: u8,
    pub status: u8,
    pub error: u8,
}

impl TaskFile {
    /// The 28-bit LBA of a command (ATA8-ACS 6.1: Device bits 3:0 are LBA 27:24).
    pub fn lba28(&self) -> u64 {
        u64::from(self.device & 0x0F) << 24
            | u64::from(self.lba_high.cur) << 16
            | u64::from(self.lba_mid.cur) << 8
            | u64::from(self.lba_low.cur)
    }

    /// The 48-bit LBA of an EXT command.
    pub fn lba48(&self) -> u64 {
        u64::from(self.lba_high.prev) << 40
            | u64::from(self.lba_mid.prev) << 32
            | u64::from(self.lba_low.prev) << 24
            | u64::from(self.lba_high.cur) << 16
            | u64::from(self.lba_mid.cur) << 8
            | u64::from(self.lba_low.cur)
    }

    /// Sector count of a 28-bit command: 0 means 256.
    pub fn count28(&self) -> u32 {
        match self.count.cur {
            0 => 256,
            n => u32::from(n),
        }
    }

    /// Sector count of an EXT command: 0 means 65536.
    pub fn count48(&self) -> u32 {
        match u32::from(self.count.prev) << 8 | u32::from(self.count.cur) {
            0 => 65536,
            n => n,
        }
    }

    /// Reports `lba` as the address of an error (ATA8-ACS 6.3 error outputs).
    pub fn set_lba(&mut self, lba: u64, ext: bool) {
        let b = lba.to_le_bytes();
        if ext {
            self.lba_low.set(b[0], b[3]);
            self.lba_mid.set(b[1], b[4]);
            self.lba_high.set(b[2], b[5]);
        } else {
            self.lba_low.cur = b[0];
            self.lba_mid.cur = b[1];
            self.lba_high.cur = b[2];
            self.device = (self.device & 0xF0) | (b[3] & 0x0F);
        }
    }

    /// The byte count limit / byte count of a PACKET transfer (LBA Mid/High).
    pub fn byte_count(&self) -> u16 {
        u16::from(self.lba_high.cur) << 8 | u16::from(self.lba_mid.cur)
    }

    pub fn set_byte_count(&mut self, n: u16) {
        let [lo, hi] = n.to_le_bytes();
        self.lba_mid.cur = lo;
        self.lba_high.cur = hi;
    }

    /// The signature a reset or diagnostic leaves (ATA8-ACS 9.12 table 184):
    /// Count 01h, LBA Low 01h, LBA Mid/High `00h 00h` (ATA) or `14h EBh`
    /// (PACKET); Device 00h.
    pub fn set_signature(&mut self, packet: bool) {
        self.count.set(0x01, 0);
        self.lba_low.set(0x01, 0);
        let (mid, high) = if packet { (0x14, 0xEB) } else { (0, 0) };
        self.lba_mid.set(mid, 0);
        self.lba_high.set(high, 0);
        self.device = 0;
    }
}
