//! VMCS field encodings (SDM Vol 3C, Appendix B).
//!
//! An encoding carries its own width (bits 14:13), type (bits 11:10) and
//! whether it names the high half of a 64-bit field (bit 0) (SDM 25.11.2).

/// How wide a VMCS field is (encoding bits 14:13).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldWidth {
    Bits16,
    Bits64,
    Bits32,
    /// Natural width: 64 bits on a processor that supports Intel 64.
    Natural,
}

impl FieldWidth {
    /// Bits a VMWRITE keeps (and a VMREAD returns) for a field of this width.
    pub fn mask(self) -> u64 {
        match self {
            FieldWidth::Bits16 => 0xffff,
            FieldWidth::Bits32 => 0xffff_ffff,
            FieldWidth::Bits64 | FieldWidth::Natural => u64::MAX,
        }
    }
}

/// What a VMCS field belongs to (encoding bits 11:10).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FieldType {
    Control,
    /// VM-exit information: read-only.
    ExitInformation,
    GuestState,
    HostState,
}

macro_rules! vmcs_fields {
    ($($(#[$doc:meta])* $name:ident = $enc:expr,)*) => {
        /// A VMCS field, named as in SDM Vol 3C Appendix B.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
        #[repr(u32)]
        pub enum VmcsField {
            $($(#[$doc])* $name = $enc,)*
        }

        impl VmcsField {
            /// Every field Keel names.
            pub const ALL: &'static [VmcsField] = &[$(VmcsField::$name,)*];

            /// The field's name as the SDM spells it (CamelCase).
            pub fn name(self) -> &'static str {
                match self {
                    $(VmcsField::$name => stringify!($name),)*
                }
            }
        }
    };
}

vmcs_fields! {
    // 16-bit control fields (B.1.1).
    VirtualProcessorId = 0x0000,
    // 16-bit guest-state fields (B.1.2).
    GuestEsSelector = 0x0800,
    GuestCsSelector = 0x0802,
    GuestSsSelector = 0x0804,
    GuestDsSelector = 0x0806,
    GuestFsSelector = 0x0808,
    GuestGsSelector = 0x080a,
    GuestLdtrSelector = 0x080c,
    GuestTrSelector = 0x080e,
    // 16-bit host-state fields (B.1.3).
    HostEsSelector = 0x0c00,
    HostCsSelector = 0x0c02,
    HostSsSelector = 0x0c04,
    HostDsSelector = 0x0c06,
    HostFsSelector = 0x0c08,
    HostGsSelector = 0x0c0a,
    HostTrSelector = 0x0c0c,
    // 64-bit control fields (B.2.1).
    IoBitmapA = 0x2000,
    IoBitmapB = 0x2002,
    MsrBitmap = 0x2004,
    VmExitMsrStoreAddress = 0x2006,
    VmExitMsrLoadAddress = 0x2008,
    VmEntryMsrLoadAddress = 0x200a,
    TscOffset = 0x2010,
    EptPointer = 0x201a,
    // 64-bit read-only data fields (B.2.2).
    GuestPhysicalAddress = 0x2400,
    // 64-bit guest-state fields (B.2.3).
    VmcsLinkPointer = 0x2800,
    GuestIa32Debugctl = 0x2802,
    GuestIa32Pat = 0x2804,
    GuestIa32Efer = 0x2806,
    GuestPdpte0 = 0x280a,
    GuestPdpte1 = 0x280c,
    GuestPdpte2 = 0x280e,
    GuestPdpte3 = 0x2810,
    // 64-bit host-state fields (B.2.4).
    HostIa32Pat = 0x2c00,
    HostIa32Efer = 0x2c02,
    // 32-bit control fields (B.3.1).
    PinBasedVmExecutionControls = 0x4000,
    PrimaryProcessorBasedVmExecutionControls = 0x4002,
    ExceptionBitmap = 0x4004,
    PageFaultErrorCodeMask = 0x4006,
    PageFaultErrorCodeMatch = 0x4008,
    Cr3TargetCount = 0x400a,
    VmExitControls = 0x400c,
    VmExitMsrStoreCount = 0x400e,
    VmExitMsrLoadCount = 0x4010,
    VmEntryControls = 0x4012,
    VmEntryMsrLoadCount = 0x4014,
    VmEntryInterruptionInformation = 0x4016,
    VmEntryExceptionErrorCode = 0x4018,
    VmEntryInstructionLength = 0x401a,
    TprThreshold = 0x401c,
    SecondaryProcessorBasedVmExecutionControls = 0x401e,
    // 32-bit read-only data fields (B.3.2).
    VmInstructionError = 0x4400,
    ExitReason = 0x4402,
    VmExitInterruptionInformation = 0x4404,
    VmExitInterruptionErrorCode = 0x4406,
    IdtVectoringInformation = 0x4408,
    IdtVectoringErrorCode = 0x440a,
    VmExitInstructionLength = 0x440c,
    VmExitInstructionInformation = 0x440e,
    // 32-bit guest-state fields (B.3.3).
    GuestEsLimit = 0x4800,
    GuestCsLimit = 0x4802,
    GuestSsLimit = 0x4804,
    GuestDsLimit = 0x4806,
    GuestFsLimit = 0x4808,
    GuestGsLimit = 0x480a,
    GuestLdtrLimit = 0x480c,
    GuestTrLimit = 0x480e,
    GuestGdtrLimit = 0x4810,
    GuestIdtrLimit = 0x4812,
    GuestEsAccessRights = 0x4814,
    GuestCsAccessRights = 0x4816,
    GuestSsAccessRights = 0x4818,
    GuestDsAccessRights = 0x481a,
    GuestFsAccessRights = 0x481c,
    GuestGsAccessRights = 0x481e,
    GuestLdtrAccessRights = 0x4820,
    GuestTrAccessRights = 0x4822,
    GuestInterruptibilityState = 0x4824,
    GuestActivityState = 0x4826,
    GuestSmbase = 0x4828,
    GuestIa32SysenterCs = 0x482a,
    VmxPreemptionTimerValue = 0x482e,
    // 32-bit host-state field (B.3.4).
    HostIa32SysenterCs = 0x4c00,
    // Natural-width control fields (B.4.1).
    Cr0GuestHostMask = 0x6000,
    Cr4GuestHostMask = 0x6002,
    Cr0ReadShadow = 0x6004,
    Cr4ReadShadow = 0x6006,
    // Natural-width read-only data fields (B.4.2).
    ExitQualification = 0x6400,
    GuestLinearAddress = 0x640a,
    // Natural-width guest-state fields (B.4.3).
    GuestCr0 = 0x6800,
    GuestCr3 = 0x6802,
    GuestCr4 = 0x6804,
    GuestEsBase = 0x6806,
    GuestCsBase = 0x6808,
    GuestSsBase = 0x680a,
    GuestDsBase = 0x680c,
    GuestFsBase = 0x680e,
    GuestGsBase = 0x6810,
    GuestLdtrBase = 0x6812,
    GuestTrBase = 0x6814,
    GuestGdtrBase = 0x6816,
    GuestIdtrBase = 0x6818,
    GuestDr7 = 0x681a,
    GuestRsp = 0x681c,
    GuestRip = 0x681e,
    GuestRflags = 0x6820,
    GuestPendingDebugExceptions = 0x6822,
    GuestIa32SysenterEsp = 0x6824,
    GuestIa32SysenterEip = 0x6826,
    // Natural-width host-state fields (B.4.4).
    HostCr0 = 0x6c00,
    HostCr3 = 0x6c02,
    HostCr4 = 0x6c04,
    HostFsBase = 0x6c06,
    HostGsBase = 0x6c08,
    HostTrBase = 0x6c0a,
    HostGdtrBase = 0x6c0c,
    HostIdtrBase = 0x6c0e,
    HostIa32SysenterEsp = 0x6c10,
    HostIa32SysenterEip = 0x6c12,
    HostRsp = 0x6c14,
    HostRip = 0x6c16,
}

impl VmcsField {
    /// The encoding VMREAD and VMWRITE take.
    pub fn encoding(self) -> u32 {
        self as u32
    }

    /// The field's width, from encoding bits 14:13.
    pub fn width(self) -> FieldWidth {
        width_of(self.encoding())
    }

    /// The field's type, from encoding bits 11:10.
    pub fn field_type(self) -> FieldType {
        match (self.encoding() >> 10) & 3 {
            0 => FieldType::Control,
            1 => FieldType::ExitInformation,
            2 => FieldType::GuestState,
            _ => FieldType::HostState,
        }
    }

    /// Whether VMWRITE may write it (exit-information fields are read-only
    /// unless IA32_VMX_MISC bit 29 says otherwise; Keel never writes them).
    pub fn writable(self) -> bool {
        self.field_type() != FieldType::ExitInformation
    }

    /// The field with this encoding, if Keel names it.
    pub fn from_encoding(enc: u32) -> Option<VmcsField> {
        Self::ALL.iter().copied().find(|f| f.encoding() == enc)
    }
}

/// The width of any encoding (bits 14:13); a high-half access (bit 0 set on a
/// 64-bit field) is 32 bits wide.
pub fn width_of(encoding: u32) -> FieldWidth {
    match (encoding >> 13) & 3 {
        0 => FieldWidth::Bits16,
        1 if encoding & 1 != 0 => FieldWidth::Bits32,
        1 => FieldWidth::Bits64,
        2 => FieldWidth::Bits32,
        _ => FieldWidth::Natural,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn widths_come_from_the_encoding() {
        assert_eq!(VmcsField::VirtualProcessorId.width(), FieldWidth::Bits16);
        assert_eq!(VmcsField::GuestTrSelector.width(), FieldWidth::Bits16);
        assert_eq!(VmcsField::HostTrSelector.width(), FieldWidth::Bits16);
        assert_eq!(VmcsField::EptPointer.width(), FieldWidth::Bits64);
        assert_eq!(VmcsField::GuestPhysicalAddress.width(), FieldWidth::Bits64);
        assert_eq!(VmcsField::GuestIa32Efer.width(), FieldWidth::Bits64);
        assert_eq!(VmcsField::ExitReason.width(), FieldWidth::Bits32);
        assert_eq!(VmcsField::GuestCsAccessRights.width(), FieldWidth::Bits32);
        assert_eq!(VmcsField::HostIa32SysenterCs.width(), FieldWidth::Bits32);
        assert_eq!(VmcsField::ExitQualification.width(), FieldWidth::Natural);
        assert_eq!(VmcsField::GuestRip.width(), FieldWidth::Natural);
        assert_eq!(VmcsField::HostRip.width(), FieldWidth::Natural);
        // The high half of GUEST_IA32_EFER (0x2807) is a 32-bit access.
        assert_eq!(width_of(0x2807), FieldWidth::Bits32);
        assert_eq!(FieldWidth::Bits16.mask(), 0xffff);
    }

    #[test]
    fn types_and_writability() {
        assert_eq!(
            VmcsField::VirtualProcessorId.field_type(),
            FieldType::Control
        );
        assert_eq!(
            VmcsField::ExitQualification.field_type(),
            FieldType::ExitInformation
        );
        assert_eq!(VmcsField::GuestRip.field_type(), FieldType::GuestState);
        assert_eq!(VmcsField::HostRip.field_type(), FieldType::HostState);
        assert!(!VmcsField::VmInstructionError.writable());
        assert!(VmcsField::GuestRip.writable());
    }

    #[test]
    fn every_encoding_is_unique_and_well_formed() {
        for (i, a) in VmcsField::ALL.iter().enumerate() {
            // Full-width accesses only: bit 0 clear, bit 12 and bits 31:15 reserved.
            assert_eq!(a.encoding() & 1, 0, "{}", a.name());
            assert_eq!(a.encoding() & !0x6ffe, 0, "{}", a.name());
            assert_eq!(VmcsField::from_encoding(a.encoding()), Some(*a));
            for b in &VmcsField::ALL[i + 1..] {
                assert_ne!(a.encoding(), b.encoding(), "{} and {}", a.name(), b.name());
            }
        }
        assert_eq!(VmcsField::from_encoding(0x681e), Some(VmcsField::GuestRip));
        assert_eq!(VmcsField::from_encoding(0x1234), None);
        assert_eq!(VmcsField::GuestRip.name(), "GuestRip");
    }
}
