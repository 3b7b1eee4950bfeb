//! The Virtual Machine Control Block (AMD APM Vol 2, Appendix B).
//!
//! The VMCB is one 4 KiB page: a control area at offset 0 and the guest state
//! save area at 0x400. Keel keeps it as bytes with typed accessors at the
//! offsets the APM lists, so decoding and set-up are testable on the host.

/// Control-area field offsets (APM Vol 2, Table B-1).
pub mod control {
    pub const INTERCEPT_CR: usize = 0x000;
    pub const INTERCEPT_DR: usize = 0x004;
    pub const INTERCEPT_EXCEPTIONS: usize = 0x008;
    /// Intercept vector 3 (INTR ... SHUTDOWN).
    pub const INTERCEPT_MISC1: usize = 0x00c;
    /// Intercept vector 4 (VMRUN ... XSETBV).
    pub const INTERCEPT_MISC2: usize = 0x010;
    pub const IOPM_BASE_PA: usize = 0x040;
    pub const MSRPM_BASE_PA: usize = 0x048;
    pub const TSC_OFFSET: usize = 0x050;
    pub const GUEST_ASID: usize = 0x058;
    pub const TLB_CONTROL: usize = 0x05c;
    /// V_TPR, V_IRQ, V_INTR_PRIO, V_IGN_TPR, V_INTR_MASKING, V_INTR_VECTOR.
    pub const VINTR: usize = 0x060;
    /// Bit 0: the guest is in an interrupt shadow.
    pub const INTERRUPT_SHADOW: usize = 0x068;
    pub const EXITCODE: usize = 0x070;
    pub const EXITINFO1: usize = 0x078;
    pub const EXITINFO2: usize = 0x080;
    pub const EXITINTINFO: usize = 0x088;
    /// Bit 0: nested paging enable.
    pub const NP_ENABLE: usize = 0x090;
    pub const EVENTINJ: usize = 0x0a8;
    pub const N_CR3: usize = 0x0b0;
    pub const VMCB_CLEAN: usize = 0x0c0;
    pub const NRIP: usize = 0x0c8;
}

/// State-save-area field offsets (APM Vol 2, Table B-2).
pub mod save {
    pub const ES: usize = 0x400;
    pub const CS: usize = 0x410;
    pub const SS: usize = 0x420;
    pub const DS: usize = 0x430;
    pub const FS: usize = 0x440;
    pub const GS: usize = 0x450;
    pub const GDTR: usize = 0x460;
    pub const LDTR: usize = 0x470;
    pub const IDTR: usize = 0x480;
    pub const TR: usize = 0x490;
    pub const CPL: usize = 0x4cb;
    pub const EFER: usize = 0x4d0;
    pub const CR4: usize = 0x548;
    pub const CR3: usize = 0x550;
    pub const CR0: usize = 0x558;
    pub const DR7: usize = 0x560;
    pub const DR6: usize = 0x568;
    pub const RFLAGS: usize = 0x570;
    pub const RIP: usize = 0x578;
    pub const RSP: usize = 0x5d8;
    pub const RAX: usize = 0x5f8;
    pub const STAR: usize = 0x600;
    pub const LSTAR: usize = 0x608;
    pub const CSTAR: usize = 0x610;
    pub const SFMASK: usize = 0x618;
    pub const KERNEL_GS_BASE: usize = 0x620;
    pub const SYSENTER_CS: usize = 0x628;
    pub const SYSENTER_ESP: usize = 0x630;
    pub const SYSENTER_EIP: usize = 0x638;
    pub const CR2: usize = 0x640;
    pub const G_PAT: usize = 0x668;
}

/// A VMCB: one page-aligned 4 KiB block.
#[repr(C, align(4096))]
pub struct Vmcb {
    bytes: [u8; 4096],
}

impl Default for Vmcb {
    fn default() -> Self {
        Vmcb { bytes: [0; 4096] }
    }
}

impl Vmcb {
    fn get<const N: usize>(&self, off: usize) -> [u8; N] {
        let mut b = [0u8; N];
        b.copy_from_slice(&self.bytes[off..off + N]);
        b
    }

    pub fn read_u8(&self, off: usize) -> u8 {
        self.bytes[off]
    }
    pub fn read_u16(&self, off: usize) -> u16 {
        u16::from_le_bytes(self.get(off))
    }
    pub fn read_u32(&self, off: usize) -> u32 {
        u32::from_le_bytes(self.get(off))
    }
    pub fn read_u64(&self, off: usize) -> u64 {
        u64::from_le_bytes(self.get(off))
    }
    pub fn write_u8(&mut self, off: usize, v: u8) {
        self.bytes[off] = v;
    }
    pub fn write_u16(&mut self, off: usize, v: u16) {
        self.bytes[off..off + 2].copy_from_slice(&v.to_le_bytes());
    }
    pub fn write_u32(&mut self, off: usize, v: u32) {
        self.bytes[off..off + 4].copy_from_slice(&v.to_le_bytes());
    }
    pub fn write_u64(&mut self, off: usize, v: u64) {
        self.bytes[off..off + 8].copy_from_slice(&v.to_le_bytes());
    }

    /// A segment register in the save area (selector, attributes, limit, base).
    pub fn segment(&self, off: usize) -> crate::Segment {
        crate::Segment {
            selector: self.read_u16(off),
            attr: self.read_u16(off + 2),
            limit: self.read_u32(off + 4),
            base: self.read_u64(off + 8),
        }
    }

    pub fn set_segment(&mut self, off: usize, s: crate::Segment) {
        self.write_u16(off, s.selector);
        self.write_u16(off + 2, s.attr);
        self.write_u32(off + 4, s.limit);
        self.write_u64(off + 8, s.base);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_matches_the_apm() {
        assert_eq!(core::mem::size_of::<Vmcb>(), 4096);
        assert_eq!(core::mem::align_of::<Vmcb>(), 4096);
        let mut v = Vmcb::default();
        v.write_u64(control::EXITCODE, 0x7b);
        assert_eq!(v.read_u32(0x70), 0x7b);
        let s = crate::Segment {
            selector: 0xf000,
            attr: 0x9b,
            limit: 0xffff,
            base: 0xffff_0000,
        };
        v.set_segment(save::CS, s);
        assert_eq!(v.read_u16(0x410), 0xf000);
        assert_eq!(v.read_u16(0x412), 0x9b);
        assert_eq!(v.read_u32(0x414), 0xffff);
        assert_eq!(v.read_u64(0x418), 0xffff_0000);
        assert_eq!(v.segment(save::CS), s);
    }
}
