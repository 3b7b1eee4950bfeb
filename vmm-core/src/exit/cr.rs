//! The #GP(0) checks of MOV to CR0, CR3 and CR4 (SDM Vol 2B MOV—Move
//! to/from Control Registers; SDM Vol 3A 2.5; APM Vol 2 3.1), for the
//! accesses a backend intercepts: the CPU checks only privilege before the
//! exit, so Keel checks the value, and a value the CPU could not run with
//! raises #GP in the guest instead of being written (and failing the next
//! entry). Pure: the state and the guest's CPUID come in as values.

use super::CpuidResult;

// CR0 (SDM Vol 3A 2.5).
const CR0_PE: u64 = 1 << 0;
const CR0_ET: u64 = 1 << 4;
const CR0_WP: u64 = 1 << 16;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
/// PE, MP, EM, TS, ET, NE, WP, AM, NW, CD, PG: the rest of CR0[31:0] is
/// reserved; writes to it are ignored (bits 63:32 raise #GP).
const CR0_DEFINED: u64 = 0xe005_003f;
// CR4 (SDM Vol 3A 2.5).
const CR4_PAE: u64 = 1 << 5;
const CR4_PCE: u64 = 1 << 8;
const CR4_LA57: u64 = 1 << 12;
const CR4_PCIDE: u64 = 1 << 17;
const CR4_CET: u64 = 1 << 23;
// EFER.
const EFER_LME: u64 = 1 << 8;
const EFER_LMA: u64 = 1 << 10;
/// CR3 bit 63 with CR4.PCIDE = 1: do not flush this PCID's translations;
/// not stored (SDM Vol 3A 4.10.4.1).
const CR3_NO_FLUSH: u64 = 1 << 63;

/// The guest's state a MOV to CR is checked against.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CrContext {
    pub cr0: u64,
    pub cr3: u64,
    pub cr4: u64,
    pub efer: u64,
    /// The guest runs 64-bit code: the operand is 64 bits wide; otherwise
    /// the CPU uses its low 32 bits.
    pub long64: bool,
    /// The CR4 bits the guest's CPUID offers ([`cr4_allowed`]).
    pub cr4_allowed: u64,
    /// MAXPHYADDR as the guest's CPUID reports it (leaf 8000_0008H EAX[7:0]).
    pub max_phys_bits: u8,
}

/// MOV to CR raises #GP(0): nothing is written and RIP stays on the instruction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GeneralProtection;

/// The CR4 bits a guest may set, from the CPUID leaves it sees: 1 (`leaf1`),
/// 7.0 (`leaf7`) and 7.1 (`leaf7_1`) (SDM Vol 3A 2.5, each bit with the
/// feature flag that enumerates it). PCE needs no flag.
pub fn cr4_allowed(leaf1: CpuidResult, leaf7: CpuidResult, leaf7_1: CpuidResult) -> u64 {
    let flag = |reg: u32, bit: u32| reg & (1 << bit) != 0;
    let (d1, c1) = (leaf1.edx, leaf1.ecx);
    let (b7, c7, d7, a71) = (leaf7.ebx, leaf7.ecx, leaf7.edx, leaf7_1.eax);
    [
        (0, flag(d1, 1)),    // VME
        (1, flag(d1, 1)),    // PVI
        (2, flag(d1, 4)),    // TSD
        (3, flag(d1, 2)),    // DE
        (4, flag(d1, 3)),    // PSE
        (5, flag(d1, 6)),    // PAE
        (6, flag(d1, 7)),    // MCE
        (7, flag(d1, 13)),   // PGE
        (9, flag(d1, 24)),   // OSFXSR
        (10, flag(d1, 25)),  // OSXMMEXCPT
        (11, flag(c7, 2)),   // UMIP
        (12, flag(c7, 16)),  // LA57
        (13, flag(c1, 5)),   // VMXE
        (14, flag(c1, 6)),   // SMXE
        (16, flag(b7, 0)),   // FSGSBASE
        (17, flag(c1, 17)),  // PCIDE
        (18, flag(c1, 26)),  // OSXSAVE
        (19, flag(c7, 23)),  // KL
        (20, flag(b7, 7)),   // SMEP
        (21, flag(b7, 20)),  // SMAP
        (22, flag(c7, 3)),   // PKE
        (23, flag(c7, 7)),   // CET
        (24, flag(c7, 31)),  // PKS
        (25, flag(d7, 5)),   // UINTR
        (27, flag(a71, 6)),  // LASS
        (28, flag(a71, 26)), // LAM_SUP
    ]
    .iter()
    .filter(|&&(_, offered)| offered)
    .fold(CR4_PCE, |bits, &(bit, _)| bits | (1 << bit))
}

/// The value MOV to CR`cr` loads, or #GP(0) (SDM Vol 2B MOV CRn, "Protected
/// Mode Exceptions" and "64-Bit Mode Exceptions"; Vol 3A 2.5, 4.10.1, 9.8.5):
/// - CR0: bits 63:32 set; PG without PE; NW without CD; PG cleared in 64-bit
///   mode or while CR4.PCIDE = 1; PG set with EFER.LME = 1 and CR4.PAE = 0;
///   WP cleared while CR4.CET = 1. ET reads as 1 and reserved bits as 0.
/// - CR3: in 64-bit mode, bits at or above MAXPHYADDR (bit 63 is the PCID
///   no-flush hint when CR4.PCIDE = 1, and is not stored).
/// - CR4: a bit the guest's CPUID does not offer, or reserved; PAE cleared,
///   or LA57 changed, in IA-32e mode; PCIDE set outside IA-32e mode or with
///   CR3[11:0] not 0; CET set while CR0.WP = 0.
pub fn mov_to_cr(cr: u8, value: u64, ctx: &CrContext) -> Result<u64, GeneralProtection> {
    let value = if ctx.long64 {
        value
    } else {
        value & 0xffff_ffff
    };
    let fault = |bad: bool| if bad { Err(GeneralProtection) } else { Ok(()) };
    let long_mode = ctx.efer & EFER_LMA != 0;
    match cr {
        0 => {
            fault(value >> 32 != 0)?;
            let v = (value & CR0_DEFINED) | CR0_ET;
            let (pg, pe) = (v & CR0_PG != 0, v & CR0_PE != 0);
            fault(pg && !pe)?;
            fault(v & CR0_NW != 0 && v & CR0_CD == 0)?;
            fault(!pg && (ctx.long64 || ctx.cr4 & CR4_PCIDE != 0))?;
            let enabling_paging = pg && ctx.cr0 & CR0_PG == 0;
            fault(enabling_paging && ctx.efer & EFER_LME != 0 && ctx.cr4 & CR4_PAE == 0)?;
            fault(v & CR0_WP == 0 && ctx.cr4 & CR4_CET != 0)?;
            Ok(v)
        }
        3 if ctx.long64 => {
            let v = if ctx.cr4 & CR4_PCIDE != 0 {
                value & !CR3_NO_FLUSH
            } else {
                value
            };
            let bits = u32::from(ctx.max_phys_bits.clamp(32, 63));
            fault(v >> bits != 0)?;
            Ok(v)
        }
        4 => {
            fault(value & !ctx.cr4_allowed != 0)?;
            fault(long_mode && value & CR4_PAE == 0)?;
            fault(long_mode && (value ^ ctx.cr4) & CR4_LA57 != 0)?;
            let setting_pcide = value & CR4_PCIDE != 0 && ctx.cr4 & CR4_PCIDE == 0;
            fault(setting_pcide && (!long_mode || ctx.cr3 & 0xfff != 0))?;
            fault(value & CR4_CET != 0 && ctx.cr0 & CR0_WP == 0)?;
            Ok(value)
        }
        _ => Ok(value),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PAE: u64 = CR4_PAE;
    const LONG: u64 = EFER_LME | EFER_LMA;

    fn all_features() -> u64 {
        let all = CpuidResult {
            eax: u32::MAX,
            ebx: u32::MAX,
            ecx: u32::MAX,
            edx: u32::MAX,
        };
        cr4_allowed(all, all, all)
    }

    fn protected() -> CrContext {
        CrContext {
            cr0: 0x11,
            cr3: 0,
            cr4: 0,
            efer: 0,
            long64: false,
            cr4_allowed: all_features(),
            max_phys_bits: 39,
        }
    }

    fn long64() -> CrContext {
        CrContext {
            cr0: 0x8001_0011,
            cr4: PAE,
            efer: LONG,
            long64: true,
            ..protected()
        }
    }

    /// Finding #6: these were written and failed the next VM entry.
    #[test]
    fn invalid_cr0_values_raise_gp() {
        let real = CrContext {
            cr0: 0x10,
            ..protected()
        };
        assert_eq!(
            mov_to_cr(0, 0x8000_0010, &real),
            Err(GeneralProtection),
            "PG without PE"
        );
        assert_eq!(
            mov_to_cr(0, 0x2000_0011, &real),
            Err(GeneralProtection),
            "NW without CD"
        );
        assert_eq!(
            mov_to_cr(0, 0x1_0000_0011, &long64()),
            Err(GeneralProtection),
            "bits 63:32"
        );
        assert_eq!(
            mov_to_cr(0, 0x11, &long64()),
            Err(GeneralProtection),
            "PG cleared in 64-bit mode"
        );
        let lme = CrContext {
            efer: EFER_LME,
            ..protected()
        };
        assert_eq!(
            mov_to_cr(0, 0x8000_0011, &lme),
            Err(GeneralProtection),
            "long mode without PAE"
        );
        let cet = CrContext {
            cr4: PAE | CR4_CET,
            ..long64()
        };
        assert_eq!(
            mov_to_cr(0, 0x8000_0011, &cet),
            Err(GeneralProtection),
            "WP cleared with CET"
        );
    }

    #[test]
    fn valid_cr0_values_load_as_the_cpu_would() {
        assert_eq!(
            mov_to_cr(0, 0x6000_0010, &protected()),
            Ok(0x6000_0010),
            "CD and NW"
        );
        assert_eq!(mov_to_cr(0, 0x1, &protected()), Ok(0x11), "ET reads as 1");
        assert_eq!(
            mov_to_cr(0, 0x0000_ff31, &protected()),
            Ok(0x31),
            "reserved bits ignored"
        );
        // Outside 64-bit mode only the low 32 bits of the register count.
        assert_eq!(mov_to_cr(0, 0xffff_ffff_0000_0011, &protected()), Ok(0x11));
        let lme = CrContext {
            efer: EFER_LME,
            cr4: PAE,
            ..protected()
        };
        assert_eq!(
            mov_to_cr(0, 0x8000_0011, &lme),
            Ok(0x8000_0011),
            "activates long mode"
        );
        // Compatibility mode may leave long mode by clearing PG.
        let compat = CrContext {
            long64: false,
            ..long64()
        };
        assert_eq!(mov_to_cr(0, 0x11, &compat), Ok(0x11));
        let pcid = CrContext {
            cr4: PAE | CR4_PCIDE,
            ..compat
        };
        assert_eq!(
            mov_to_cr(0, 0x11, &pcid),
            Err(GeneralProtection),
            "not with PCIDE"
        );
    }

    #[test]
    fn cr4_bits_the_guest_cannot_have_raise_gp() {
        let only_pae = CrContext {
            cr4_allowed: cr4_allowed(
                CpuidResult {
                    edx: 1 << 6,
                    ..Default::default()
                },
                CpuidResult::default(),
                CpuidResult::default(),
            ),
            ..protected()
        };
        assert_eq!(only_pae.cr4_allowed, PAE | CR4_PCE);
        assert_eq!(mov_to_cr(4, PAE, &only_pae), Ok(PAE));
        assert_eq!(
            mov_to_cr(4, 1 << 13, &only_pae),
            Err(GeneralProtection),
            "VMXE hidden"
        );
        assert_eq!(
            mov_to_cr(4, 1 << 15, &protected()),
            Err(GeneralProtection),
            "reserved"
        );
        assert_eq!(
            mov_to_cr(4, 1 << 32 | PAE, &long64()),
            Err(GeneralProtection),
            "63:32"
        );
        assert_eq!(
            mov_to_cr(4, 0, &long64()),
            Err(GeneralProtection),
            "PAE cleared in long mode"
        );
        assert_eq!(
            mov_to_cr(4, PAE | CR4_LA57, &long64()),
            Err(GeneralProtection),
            "LA57 changed in long mode"
        );
        assert_eq!(
            mov_to_cr(4, PAE | CR4_PCIDE, &protected()),
            Err(GeneralProtection),
            "PCIDE outside IA-32e mode"
        );
        let dirty_cr3 = CrContext {
            cr3: 0x1005,
            ..long64()
        };
        assert_eq!(
            mov_to_cr(4, PAE | CR4_PCIDE, &dirty_cr3),
            Err(GeneralProtection)
        );
        assert_eq!(
            mov_to_cr(4, PAE | CR4_PCIDE, &long64()),
            Ok(PAE | CR4_PCIDE)
        );
        let no_wp = CrContext {
            cr0: 0x8000_0011,
            ..long64()
        };
        assert_eq!(mov_to_cr(4, PAE | CR4_CET, &no_wp), Err(GeneralProtection));
    }

    #[test]
    fn cr3_above_maxphyaddr_raises_gp_in_64_bit_mode() {
        assert_eq!(mov_to_cr(3, 1 << 39, &long64()), Err(GeneralProtection));
        assert_eq!(
            mov_to_cr(3, (1 << 39) - 4096, &long64()),
            Ok((1 << 39) - 4096)
        );
        assert_eq!(mov_to_cr(3, 1 << 63, &long64()), Err(GeneralProtection));
        let pcid = CrContext {
            cr4: PAE | CR4_PCIDE,
            ..long64()
        };
        assert_eq!(
            mov_to_cr(3, (1 << 63) | 0x5003, &pcid),
            Ok(0x5003),
            "no-flush hint"
        );
        assert_eq!(
            mov_to_cr(3, 0xffff_ffff_0000_1000, &protected()),
            Ok(0x1000)
        );
    }
}
