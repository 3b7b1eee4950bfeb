//! Guest page walker: linear to guest-physical translation with the protection checks
//! and accessed/dirty updates of SDM Vol 3A chapter 4 (APM Vol 2 chapter 5).
//!
//! Paging-structure entries are read and written through [`PhysMemory`], so the caller
//! decides what guest RAM is. Every walk starts from CR3 (there is no TLB), and the
//! PAE PDPTEs are read from memory rather than from PDPTE registers loaded at the
//! last CR3 write.

use crate::cpu::bits::*;
use crate::cpu::ControlRegs;
use crate::memory::PhysMemory;

/// Page-fault error code bits (SDM Vol 3A 4.7).
pub mod pfec {
    /// The fault was a protection violation on a present page (0: not present).
    pub const P: u32 = 1 << 0;
    /// The access was a write.
    pub const W: u32 = 1 << 1;
    /// The access was a user-mode access.
    pub const U: u32 = 1 << 2;
    /// A reserved bit was set in a paging-structure entry.
    pub const RSVD: u32 = 1 << 3;
    /// The access was an instruction fetch (reported only with NX or SMEP enabled).
    pub const ID: u32 = 1 << 4;
}

const PTE_P: u64 = 1 << 0;
const PTE_RW: u64 = 1 << 1;
const PTE_US: u64 = 1 << 2;
const PTE_A: u64 = 1 << 5;
const PTE_D: u64 = 1 << 6;
const PTE_PS: u64 = 1 << 7;
const PTE_XD: u64 = 1 << 63;

/// What an access does with the byte it reaches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    Read,
    Write,
    Fetch,
}

/// One access to check: its kind and the privilege it is made with (SDM Vol 3A 4.6).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Access {
    pub kind: AccessKind,
    /// CPL at the time of the access.
    pub cpl: u8,
    /// An implicit supervisor-mode access (descriptor tables, TSS) regardless of CPL.
    pub implicit_supervisor: bool,
    /// RFLAGS.AC, which lets explicit supervisor data accesses reach user pages under SMAP.
    pub rflags_ac: bool,
}

impl Access {
    fn user_mode(&self) -> bool {
        self.cpl == 3 && !self.implicit_supervisor
    }
}

/// Why a walk did not produce a physical address.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WalkError {
    /// The access faults; the error code follows SDM Vol 3A 4.7.
    PageFault { error_code: u32 },
    /// A paging-structure entry is not in guest RAM.
    TableNotRam { gpa: u64 },
}

/// The paging mode CR0, CR4 and EFER select (SDM Vol 3A 4.1.1, Table 4-1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagingMode {
    None,
    Bits32,
    Pae,
    Level4,
    Level5,
}

impl PagingMode {
    pub fn of(cr: &ControlRegs) -> PagingMode {
        if cr.cr0 & CR0_PG == 0 {
            PagingMode::None
        } else if cr.cr4 & CR4_PAE == 0 {
            PagingMode::Bits32
        } else if cr.efer & EFER_LMA == 0 {
            PagingMode::Pae
        } else if cr.cr4 & CR4_LA57 != 0 {
            PagingMode::Level5
        } else {
            PagingMode::Level4
        }
    }
}

/// One paging-structure entry the walk used, for the accessed/dirty update.
#[derive(Clone, Copy, Default)]
struct Used {
    gpa: u64,
    value: u64,
    size: usize,
    /// PAE PDPTEs have no accessed flag.
    has_a: bool,
}

struct Walk {
    used: [Used; 5],
    n: usize,
    rw: bool,
    us: bool,
    xd: bool,
}

/// Translate `linear` for `access` under the paging state `cr`, setting accessed and
/// (for writes) dirty flags once the access is allowed.
pub fn translate<P: PhysMemory + ?Sized>(
    mem: &mut P,
    cr: &ControlRegs,
    max_phys_addr_bits: u8,
    linear: u64,
    access: Access,
) -> Result<u64, WalkError> {
    let mode = PagingMode::of(cr);
    let maxphy = max_phys_addr_bits.clamp(32, 52) as u32;
    // Bits MAXPHYADDR..=51 of an entry are reserved.
    let high_rsvd = ((1u64 << 52) - 1) & !((1u64 << maxphy) - 1);
    let addr_mask = ((1u64 << maxphy) - 1) & !0xFFF;
    let nxe = cr.efer & EFER_NXE != 0;
    let fault_base = {
        let mut e = 0;
        if access.kind == AccessKind::Write {
            e |= pfec::W;
        }
        if access.user_mode() {
            e |= pfec::U;
        }
        let reports_fetch = cr.cr4 & CR4_SMEP != 0
            || (nxe && !matches!(mode, PagingMode::None | PagingMode::Bits32));
        if access.kind == AccessKind::Fetch && reports_fetch {
            e |= pfec::ID;
        }
        e
    };
    let fault = |extra: u32| WalkError::PageFault {
        error_code: fault_base | extra,
    };

    let mut walk = Walk {
        used: [Used::default(); 5],
        n: 0,
        rw: true,
        us: true,
        xd: false,
    };
    let read = |mem: &mut P, gpa: u64, size: usize| -> Result<u64, WalkError> {
        let mut b = [0u8; 8];
        mem.read_phys(gpa, &mut b[..size])
            .map_err(|_| WalkError::TableNotRam { gpa })?;
        Ok(u64::from_le_bytes(b))
    };

    let (gpa, leaf) = match mode {
        PagingMode::None => return Ok(linear & 0xFFFF_FFFF),
        PagingMode::Bits32 => {
            let linear = linear & 0xFFFF_FFFF;
            let pde_gpa = (cr.cr3 & 0xFFFF_F000) + ((linear >> 22) & 0x3FF) * 4;
            let pde = read(mem, pde_gpa, 4)?;
            if pde & PTE_P == 0 {
                return Err(fault(0));
            }
            walk.note(pde_gpa, pde, 4, true, false);
            if pde & PTE_PS != 0 && cr.cr4 & CR4_PSE != 0 {
                // 4 MiB page: PDE bits 20:13 are physical address bits 39:32 (PSE-36).
                let hi_bits = (maxphy - 32).min(8);
                let rsvd = (1u64 << 21) | (((0xFFu64 >> hi_bits) << hi_bits) << 13);
                if pde & rsvd != 0 {
                    return Err(fault(pfec::P | pfec::RSVD));
                }
                let base = (pde & 0xFFC0_0000) | (((pde >> 13) & 0xFF) << 32);
                (base | (linear & 0x3F_FFFF), walk.n - 1)
            } else {
                let pte_gpa = (pde & 0xFFFF_F000) + ((linear >> 12) & 0x3FF) * 4;
                let pte = read(mem, pte_gpa, 4)?;
                if pte & PTE_P == 0 {
                    return Err(fault(0));
                }
                walk.note(pte_gpa, pte, 4, true, false);
                ((pte & 0xFFFF_F000) | (linear & 0xFFF), walk.n - 1)
            }
        }
        PagingMode::Pae | PagingMode::Level4 | PagingMode::Level5 => {
            let (mut table, top) = match mode {
                PagingMode::Pae => {
                    let linear = linear & 0xFFFF_FFFF;
                    let pdpte_gpa = (cr.cr3 & 0xFFFF_FFE0) + ((linear >> 30) & 3) * 8;
                    let pdpte = read(mem, pdpte_gpa, 8)?;
                    if pdpte & PTE_P == 0 {
                        return Err(fault(0));
                    }
                    // Bits 2:1, 8:5 and 63:MAXPHYADDR are reserved (SDM Vol 3A 4.4.1).
                    let rsvd = 0x1E6 | high_rsvd | (0xFFFu64 << 52);
                    if pdpte & rsvd != 0 {
                        return Err(fault(pfec::P | pfec::RSVD));
                    }
                    walk.used[0] = Used {
                        gpa: pdpte_gpa,
                        value: pdpte,
                        size: 8,
                        has_a: false,
                    };
                    walk.n = 1;
                    (pdpte & addr_mask, 2)
                }
                PagingMode::Level4 => (cr.cr3 & addr_mask, 4),
                _ => (cr.cr3 & addr_mask, 5),
            };
            let mut level = top;
            loop {
                let shift = 12 + 9 * (level - 1);
                let gpa = table + ((linear >> shift) & 0x1FF) * 8;
                let e = read(mem, gpa, 8)?;
                if e & PTE_P == 0 {
                    return Err(fault(0));
                }
                let mut rsvd = high_rsvd | if nxe { 0 } else { PTE_XD };
                let large = e & PTE_PS != 0;
                match level {
                    4 | 5 => rsvd |= PTE_PS,
                    3 if large => rsvd |= 0x3FFF_E000,
                    2 if large => rsvd |= 0x1F_E000,
                    _ => {}
                }
                if e & rsvd != 0 {
                    return Err(fault(pfec::P | pfec::RSVD));
                }
                walk.note(gpa, e, 8, true, nxe);
                if level == 1 || (large && level <= 3) {
                    let page_mask = (1u64 << shift) - 1;
                    break (
                        (e & addr_mask & !page_mask) | (linear & page_mask),
                        walk.n - 1,
                    );
                }
                table = e & addr_mask;
                level -= 1;
            }
        }
    };

    // Access rights (SDM Vol 3A 4.6.1).
    let write = access.kind == AccessKind::Write;
    let fetch = access.kind == AccessKind::Fetch;
    let denied = if access.user_mode() {
        !walk.us || (write && !walk.rw) || (fetch && walk.xd)
    } else if fetch {
        walk.xd || (walk.us && cr.cr4 & CR4_SMEP != 0)
    } else {
        let smap = walk.us
            && cr.cr4 & CR4_SMAP != 0
            && (access.implicit_supervisor || access.cpl == 3 || !access.rflags_ac);
        smap || (write && !walk.rw && cr.cr0 & CR0_WP != 0)
    };
    if denied {
        return Err(fault(pfec::P));
    }

    // Accessed flags on every entry used, dirty on the leaf of a write (SDM Vol 3A 4.8).
    for (i, u) in walk.used[..walk.n].iter().enumerate() {
        let mut v = u.value;
        if u.has_a {
            v |= PTE_A;
        }
        if i == leaf && write {
            v |= PTE_D;
        }
        if v != u.value {
            let bytes = v.to_le_bytes();
            mem.write_phys(u.gpa, &bytes[..u.size])
                .map_err(|_| WalkError::TableNotRam { gpa: u.gpa })?;
        }
    }
    Ok(gpa)
}

impl Walk {
    fn note(&mut self, gpa: u64, value: u64, size: usize, has_a: bool, nxe: bool) {
        self.rw &= value & PTE_RW != 0;
        self.us &= value & PTE_US != 0;
        self.xd |= nxe && value & PTE_XD != 0;
        self.used[self.n] = Used {
            gpa,
            value,
            size,
            has_a,
        };
        self.n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::FakeMemory;

    const RO: u64 = PTE_P | PTE_US;
    const RW: u64 = PTE_P | PTE_RW | PTE_US;

    fn cr4level() -> ControlRegs {
        ControlRegs {
            cr0: CR0_PE | CR0_PG | CR0_WP,
            cr3: 0x1000,
            cr4: CR4_PAE,
            efer: EFER_LMA | EFER_NXE,
        }
    }

    fn acc(kind: AccessKind, cpl: u8) -> Access {
        Access {
            kind,
            cpl,
            implicit_supervisor: false,
            rflags_ac: false,
        }
    }

    /// PML4 at 0x1000, PDPT at 0x2000, PD at 0x3000, PT at 0x4000, mapping
    /// linear 0x40_0000 + i*4K.
    fn four_level(mem: &mut FakeMemory, leaf: u64) {
        mem.write_u64(0x1000, 0x2000 | RW);
        mem.write_u64(0x2000, 0x3000 | RW);
        mem.write_u64(0x3000 + 2 * 8, 0x4000 | RW);
        mem.write_u64(0x4000, 0x8000 | leaf);
    }

    #[test]
    fn paging_off_is_identity_truncated_to_32_bits() {
        let mut mem = FakeMemory::new(0x10000);
        let cr = ControlRegs::default();
        assert_eq!(
            translate(&mut mem, &cr, 40, 0x1_2345_6789, acc(AccessKind::Read, 0)),
            Ok(0x2345_6789)
        );
    }

    #[test]
    fn four_level_sets_accessed_and_dirty() {
        let mut mem = FakeMemory::new(0x10000);
        four_level(&mut mem, RW);
        let cr = cr4level();
        assert_eq!(
            translate(&mut mem, &cr, 40, 0x40_0123, acc(AccessKind::Read, 3)),
            Ok(0x8123)
        );
        assert_eq!(mem.read_u64(0x4000), 0x8000 | RW | PTE_A);
        assert_eq!(mem.read_u64(0x1000) & PTE_A, PTE_A);
        translate(&mut mem, &cr, 40, 0x40_0123, acc(AccessKind::Write, 3)).unwrap();
        assert_eq!(mem.read_u64(0x4000), 0x8000 | RW | PTE_A | PTE_D);
    }

    #[test]
    fn not_present_and_protection_error_codes() {
        let mut mem = FakeMemory::new(0x10000);
        four_level(&mut mem, RO);
        let cr = cr4level();
        let pf = |e| Err(WalkError::PageFault { error_code: e });
        assert_eq!(
            translate(&mut mem, &cr, 40, 0x50_0000, acc(AccessKind::Read, 3)),
            pf(pfec::U)
        );
        assert_eq!(
            translate(&mut mem, &cr, 40, 0x40_0000, acc(AccessKind::Write, 3)),
            pf(pfec::P | pfec::W | pfec::U)
        );
        // Supervisor write to a read-only page: only with CR0.WP.
        assert_eq!(
            translate(&mut mem, &cr, 40, 0x40_0000, acc(AccessKind::Write, 0)),
            pf(pfec::P | pfec::W)
        );
        // A write that faults leaves the dirty flag clear.
        assert_eq!(mem.read_u64(0x4000) & PTE_D, 0);
        let mut nowp = cr;
        nowp.cr0 &= !CR0_WP;
        assert_eq!(
            translate(&mut mem, &nowp, 40, 0x40_0000, acc(AccessKind::Write, 0)),
            Ok(0x8000)
        );
    }

    #[test]
    fn nx_smep_smap() {
        let mut mem = FakeMemory::new(0x10000);
        four_level(&mut mem, RW | PTE_XD);
        let mut cr = cr4level();
        let pf = |e| Err(WalkError::PageFault { error_code: e });
        assert_eq!(
            translate(&mut mem, &cr, 40, 0x40_0000, acc(AccessKind::Fetch, 3)),
            pf(pfec::P | pfec::U | pfec::ID)
        );
        four_level(&mut mem, RW);
        cr.cr4 |= CR4_SMEP | CR4_SMAP;
        assert_eq!(
            translate(&mut mem, &cr, 40, 0x40_0000, acc(AccessKind::Fetch, 0)),
            pf(pfec::P | pfec::ID)
        );
        assert_eq!(
            translate(&mut mem, &cr, 40, 0x40_0000, acc(AccessKind::Read, 0)),
            pf(pfec::P)
        );
        let mut with_ac = acc(AccessKind::Read, 0);
        with_ac.rflags_ac = true;
        assert_eq!(translate(&mut mem, &cr, 40, 0x40_0000, with_ac), Ok(0x8000));
        with_ac.implicit_supervisor = true;
        assert_eq!(
            translate(&mut mem, &cr, 40, 0x40_0000, with_ac),
            pf(pfec::P)
        );
    }

    #[test]
    fn reserved_bits() {
        let mut mem = FakeMemory::new(0x10000);
        four_level(&mut mem, RW);
        let mut cr = cr4level();
        let pf = |e| Err(WalkError::PageFault { error_code: e });
        // Physical address bit above MAXPHYADDR = 40.
        mem.write_u64(0x4000, 0x8000 | RW | (1 << 45));
        assert_eq!(
            translate(&mut mem, &cr, 40, 0x40_0000, acc(AccessKind::Read, 0)),
            pf(pfec::P | pfec::RSVD)
        );
        assert_eq!(
            translate(&mut mem, &cr, 46, 0x40_0000, acc(AccessKind::Read, 0)),
            Ok(0x2000_0000_8000)
        );
        // XD with EFER.NXE clear, PS in a PML4E.
        mem.write_u64(0x4000, 0x8000 | RW | PTE_XD);
        cr.efer &= !EFER_NXE;
        assert_eq!(
            translate(&mut mem, &cr, 40, 0x40_0000, acc(AccessKind::Write, 3)),
            pf(pfec::P | pfec::RSVD | pfec::W | pfec::U)
        );
        mem.write_u64(0x1000, 0x2000 | RW | PTE_PS);
        assert_eq!(
            translate(&mut mem, &cr, 40, 0x40_0000, acc(AccessKind::Read, 0)),
            pf(pfec::P | pfec::RSVD)
        );
    }

    #[test]
    fn large_pages() {
        let mut mem = FakeMemory::new(0x10000);
        let cr = cr4level();
        mem.write_u64(0x1000, 0x2000 | RW);
        mem.write_u64(0x2000, 0x4000_0000 | RW | PTE_PS); // 1 GiB
        mem.write_u64(0x2008, 0x3000 | RW);
        mem.write_u64(0x3000, 0x20_0000 | RW | PTE_PS); // 2 MiB at 1 GiB
        assert_eq!(
            translate(&mut mem, &cr, 40, 0x1234_5678, acc(AccessKind::Read, 0)),
            Ok(0x5234_5678)
        );
        assert_eq!(
            translate(&mut mem, &cr, 40, 0x4012_3456, acc(AccessKind::Write, 0)),
            Ok(0x32_3456)
        );
        assert_eq!(mem.read_u64(0x3000) & (PTE_A | PTE_D), PTE_A | PTE_D);
        mem.write_u64(0x3000, 0x20_0000 | RW | PTE_PS | 0x2000);
        assert!(translate(&mut mem, &cr, 40, 0x4012_3456, acc(AccessKind::Read, 0)).is_err());
    }

    #[test]
    fn bits32_with_pse_and_pae() {
        let mut mem = FakeMemory::new(0x10000);
        let mut cr = ControlRegs {
            cr0: CR0_PE | CR0_PG,
            cr3: 0x1000,
            cr4: CR4_PSE,
            efer: 0,
        };
        mem.write_u32(0x1000 + 4, 0x2000 | RW as u32);
        mem.write_u32(0x2000 + 4 * 3, 0x9000 | RW as u32);
        mem.write_u32(
            0x1000 + 4 * 2,
            0x0040_0000 | (RW | PTE_PS) as u32 | (1 << 13),
        );
        assert_eq!(
            translate(&mut mem, &cr, 36, 0x0040_3010, acc(AccessKind::Read, 3)),
            Ok(0x9010)
        );
        assert_eq!(mem.read_u32(0x2000 + 12) & PTE_A as u32, PTE_A as u32);
        assert_eq!(
            translate(&mut mem, &cr, 36, 0x0081_0000, acc(AccessKind::Read, 0)),
            Ok(0x1_0041_0000)
        );
        // PSE-36 bit above MAXPHYADDR = 32 is reserved.
        assert!(translate(&mut mem, &cr, 32, 0x0081_0000, acc(AccessKind::Read, 0)).is_err());
        // Fetch faults do not report I/D without NX or SMEP.
        assert_eq!(
            translate(&mut mem, &cr, 36, 0x0C00_0000, acc(AccessKind::Fetch, 0)),
            Err(WalkError::PageFault { error_code: 0 })
        );

        // PAE: PDPT at 0x1000 (4 entries), PD at 0x3000, PT at 0x4000.
        let mut mem = FakeMemory::new(0x10000);
        cr.cr4 = CR4_PAE;
        mem.write_u64(0x1000 + 8, 0x3000 | PTE_P);
        mem.write_u64(0x3000, 0x4000 | RW);
        mem.write_u64(0x4000 + 8, 0x7000 | RW);
        assert_eq!(
            translate(&mut mem, &cr, 36, 0x4000_1abc, acc(AccessKind::Write, 3)),
            Ok(0x7abc)
        );
        assert_eq!(
            mem.read_u64(0x1008),
            0x3000 | PTE_P,
            "PDPTE has no accessed flag"
        );
        mem.write_u64(0x1000 + 8, 0x3000 | PTE_P | PTE_RW);
        assert_eq!(
            translate(&mut mem, &cr, 36, 0x4000_1abc, acc(AccessKind::Read, 3)),
            Err(WalkError::PageFault {
                error_code: pfec::P | pfec::RSVD | pfec::U
            })
        );
    }

    #[test]
    fn five_level() {
        let mut mem = FakeMemory::new(0x10000);
        let mut cr = cr4level();
        cr.cr4 |= CR4_LA57;
        mem.write_u64(0x1000 + 8, 0x5000 | RW); // PML5 index 1: bit 48
        mem.write_u64(0x5000, 0x2000 | RW);
        mem.write_u64(0x2000, 0x3000 | RW);
        mem.write_u64(0x3000, 0x4000 | RW);
        mem.write_u64(0x4000, 0x8000 | RW);
        assert_eq!(
            translate(&mut mem, &cr, 40, 1 << 48 | 0x10, acc(AccessKind::Read, 0)),
            Ok(0x8010)
        );
    }

    #[test]
    fn table_outside_ram() {
        let mut mem = FakeMemory::new(0x10000);
        mem.write_u64(0x1000, 0x10_0000 | RW);
        assert_eq!(
            translate(&mut mem, &cr4level(), 40, 0, acc(AccessKind::Read, 0)),
            Err(WalkError::TableNotRam { gpa: 0x10_0000 })
        );
    }
}
