//! Intel EPT entries (SDM Vol 3C 29.3.2, Tables 29-1 to 29-6): read, write
//! and execute bits instead of a present bit; leaves carry the memory type
//! (write-back) and large pages set bit 7.

use super::{EntryFormat, Permissions};

const R: u64 = 1 << 0;
const W: u64 = 1 << 1;
const X: u64 = 1 << 2;
/// EPT memory type in leaf bits 5:3: 6 = write-back.
const MEMORY_TYPE_WB: u64 = 6 << 3;
const LARGE: u64 = 1 << 7;
const ADDR: u64 = 0x000f_ffff_ffff_f000;
/// Large-page leaves: bits 20:12 (2 MiB) or 29:12 (1 GiB) are reserved, so the
/// address is taken from bit 21 up; the builder only maps aligned large pages.
const LARGE_ADDR: u64 = 0x000f_ffff_ffe0_0000;

/// The EPT encoding.
pub struct EptFormat;

/// The EPT pointer for tables rooted at `root_pa` (SDM 25.6.11): write-back
/// paging structures, a 4-level walk, accessed/dirty flags off.
pub fn eptp(root_pa: u64) -> u64 {
    (root_pa & ADDR) | (3 << 3) | 6
}

impl EntryFormat for EptFormat {
    fn table(table_pa: u64) -> u64 {
        (table_pa & ADDR) | R | W | X
    }

    fn leaf(hpa: u64, level: u8, perms: Permissions) -> u64 {
        let mut e = R | MEMORY_TYPE_WB;
        if perms.write {
            e |= W;
        }
        if perms.execute {
            e |= X;
        }
        if level > 1 {
            e |= LARGE | (hpa & LARGE_ADDR);
        } else {
            e |= hpa & ADDR;
        }
        e
    }

    fn is_present(entry: u64) -> bool {
        entry & (R | W | X) != 0
    }

    fn is_large(entry: u64) -> bool {
        entry & LARGE != 0
    }

    fn address(entry: u64) -> u64 {
        if entry & LARGE != 0 {
            entry & LARGE_ADDR
        } else {
            entry & ADDR
        }
    }

    fn permissions(entry: u64) -> Permissions {
        Permissions {
            write: entry & W != 0,
            execute: entry & X != 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::FakeTables;
    use super::super::{NestedPageTable, TableMemory};
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(EptFormat::table(0x1234_5000), 0x1234_5007);
        assert_eq!(
            EptFormat::leaf(0x4000_0000, 2, Permissions::RWX),
            0x4000_00b7
        );
        assert_eq!(EptFormat::leaf(0x7000, 1, Permissions::RX), 0x7035);
        assert_eq!(
            EptFormat::leaf(0x4000_0000, 3, Permissions::RWX),
            0x4000_00b7
        );
        assert_eq!(EptFormat::address(0x4000_00b7), 0x4000_0000);
        assert!(!EptFormat::permissions(EptFormat::leaf(0, 1, Permissions::RX)).write);
        assert!(EptFormat::is_present(EptFormat::leaf(
            0,
            1,
            Permissions::RX
        )));
        assert!(!EptFormat::is_present(0x7000));
        assert_eq!(eptp(0x20_0000), 0x20_001e);
    }

    #[test]
    fn the_one_builder_makes_ept_tables() {
        let mut m = FakeTables::default();
        let mut t = NestedPageTable::<EptFormat>::new(&mut m, 2, std::vec::Vec::new()).unwrap();
        t.map(&mut m, 0, 0x4000_0000, 64 << 20, Permissions::RWX)
            .unwrap();
        t.map(&mut m, 0xffff_0000, 0x400f_0000, 0x1_0000, Permissions::RX)
            .unwrap();
        assert_eq!(
            t.translate(&mut m, 0x12_3456),
            Some((0x4012_3456, Permissions::RWX))
        );
        assert_eq!(
            t.translate(&mut m, 0xffff_fff0),
            Some((0x400f_fff0, Permissions::RX))
        );
        assert_eq!(t.translate(&mut m, 64 << 20), None);
        // The root's first entry points at the PDPT with R/W/X and no memory type.
        let root = t.root();
        let e = TableMemory::table(&mut m, root)[0];
        assert_eq!(e & 0xfff, 0x7);
        assert_eq!(t.unmap(&mut m, 0x20_5000, 0x1000), Ok(true));
        assert_eq!(t.translate(&mut m, 0x20_5000), None);
        assert_eq!(
            t.translate(&mut m, 0x20_6000),
            Some((0x4020_6000, Permissions::RWX))
        );
    }
}
