//! The VMRUN consistency checks a guest can make fail through Keel's own
//! exit handling (APM Vol 2 15.5.1, "Canonicalization and Consistency
//! Checks"; 15.20 for EVENTINJ), repeated in software before each VMRUN so
//! that such a state stops the VM with the field named instead of ending in
//! VMEXIT_INVALID. Pure: it reads the VMCB.

use super::vmcb::{control, save, Vmcb};

const CR0_PE: u64 = 1 << 0;
const CR0_NW: u64 = 1 << 29;
const CR0_CD: u64 = 1 << 30;
const CR0_PG: u64 = 1 << 31;
const CR4_PAE: u64 = 1 << 5;
const EFER_LME: u64 = 1 << 8;
const EFER_SVME: u64 = 1 << 12;
const EVENTINJ_VALID: u64 = 1 << 31;
/// Segment attributes (VMCB layout): L (bit 9) and D/B (bit 10).
const ATTR_L: u16 = 1 << 9;
const ATTR_DB: u16 = 1 << 10;

/// The first VMCB field that would make VMRUN fail, with the check in words.
pub fn pre_entry_check(vmcb: &Vmcb) -> Option<(&'static str, &'static str)> {
    let cr0 = vmcb.read_u64(save::CR0);
    let cr4 = vmcb.read_u64(save::CR4);
    let efer = vmcb.read_u64(save::EFER);
    if efer & EFER_SVME == 0 {
        return Some(("EFER", "has SVME clear"));
    }
    if cr0 >> 32 != 0 {
        return Some(("CR0", "has bits 63:32 set"));
    }
    if cr0 & CR0_NW != 0 && cr0 & CR0_CD == 0 {
        return Some(("CR0", "has NW set without CD"));
    }
    if cr4 >> 32 != 0 {
        return Some(("CR4", "has bits 63:32 set"));
    }
    if efer & EFER_LME != 0 && cr0 & CR0_PG != 0 {
        if cr4 & CR4_PAE == 0 {
            return Some(("CR4", "has PAE clear with EFER.LME and CR0.PG set"));
        }
        if cr0 & CR0_PE == 0 {
            return Some(("CR0", "has PE clear with EFER.LME and PG set"));
        }
        let cs = vmcb.segment(save::CS);
        if cs.attr & ATTR_L != 0 && cs.attr & ATTR_DB != 0 {
            return Some(("CS", "has both L and D set in long mode"));
        }
    }
    let inj = vmcb.read_u64(control::EVENTINJ);
    if inj & EVENTINJ_VALID != 0 {
        let (vector, kind) = (inj & 0xff, (inj >> 8) & 7);
        let why = match kind {
            0 | 4 => None,
            2 if vector == 2 => None,
            2 => Some("is an NMI with a vector other than 2"),
            3 if vector == 2 => Some("is an exception with the NMI's vector"),
            3 if vector > 31 => Some("is an exception with a vector above 31"),
            3 => None,
            _ => Some("has a reserved event type"),
        };
        if let Some(why) = why {
            return Some(("EVENTINJ", why));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vmcb() -> Vmcb {
        let mut v = Vmcb::default();
        v.write_u64(save::EFER, EFER_SVME);
        v.write_u64(save::CR0, 0x6000_0010);
        v
    }

    #[test]
    fn each_broken_field_is_named() {
        assert_eq!(pre_entry_check(&vmcb()), None);
        let cases: [(usize, u64, &str); 7] = [
            (save::EFER, 0, "EFER"),
            (save::CR0, 0x2000_0011, "CR0"),
            (save::CR0, 0x1_0000_0011, "CR0"),
            (save::CR4, 1 << 32, "CR4"),
            (control::EVENTINJ, 0x8000_0302, "EVENTINJ"),
            (control::EVENTINJ, 0x8000_0501, "EVENTINJ"),
            (control::EVENTINJ, 0x8000_0340, "EVENTINJ"),
        ];
        for (off, value, named) in cases {
            let mut v = vmcb();
            v.write_u64(off, value);
            assert_eq!(
                pre_entry_check(&v).map(|f| f.0),
                Some(named),
                "{off:#x} = {value:#x}"
            );
        }
        let mut v = vmcb();
        v.write_u64(save::EFER, EFER_SVME | EFER_LME);
        v.write_u64(save::CR0, 0x8000_0011);
        assert_eq!(pre_entry_check(&v).map(|f| f.0), Some("CR4"));
        v.write_u64(save::CR4, CR4_PAE);
        assert_eq!(pre_entry_check(&v), None);
        v.write_u64(control::EVENTINJ, 0x0000_0000_8000_0b0d);
        assert_eq!(pre_entry_check(&v), None, "#GP(0)");
    }
}
