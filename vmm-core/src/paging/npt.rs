//! AMD nested page table entries: the long-mode page-table format (APM Vol 2,
//! 5.3.3 and 15.25.5). Every nested access counts as a user access, so U/S is
//! set at every level; NX clears execute.

use super::{EntryFormat, Permissions};

const P: u64 = 1 << 0;
const RW: u64 = 1 << 1;
const US: u64 = 1 << 2;
const PS: u64 = 1 << 7;
const NX: u64 = 1 << 63;
const ADDR: u64 = 0x000f_ffff_ffff_f000;
/// Large-page entries keep PAT in bit 12; the frame address starts above it.
const LARGE_ADDR: u64 = 0x000f_ffff_ffe0_0000;

/// The NPT encoding.
pub struct NptFormat;

impl EntryFormat for NptFormat {
    fn table(table_pa: u64) -> u64 {
        (table_pa & ADDR) | P | RW | US
    }

    fn leaf(hpa: u64, level: u8, perms: Permissions) -> u64 {
        let mut e = P | US;
        if perms.write {
            e |= RW;
        }
        if !perms.execute {
            e |= NX;
        }
        if level > 1 {
            e |= PS | (hpa & LARGE_ADDR);
        } else {
            e |= hpa & ADDR;
        }
        e
    }

    fn is_present(entry: u64) -> bool {
        entry & P != 0
    }

    fn is_large(entry: u64) -> bool {
        entry & PS != 0
    }

    fn address(entry: u64) -> u64 {
        if entry & PS != 0 {
            entry & LARGE_ADDR
        } else {
            entry & ADDR
        }
    }

    fn permissions(entry: u64) -> Permissions {
        Permissions {
            write: entry & RW != 0,
            execute: entry & NX == 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodings() {
        assert_eq!(NptFormat::table(0x1234_5000), 0x1234_5007);
        assert_eq!(
            NptFormat::leaf(0x4000_0000, 2, Permissions::RWX),
            0x4000_0087
        );
        assert_eq!(NptFormat::leaf(0x7000, 1, Permissions::RX), 0x7005);
        assert_eq!(
            NptFormat::leaf(
                0x7000,
                1,
                Permissions {
                    write: true,
                    execute: false
                }
            ),
            0x8000_0000_0000_7007
        );
        assert_eq!(NptFormat::address(0x4000_0087), 0x4000_0000);
        assert!(!NptFormat::permissions(NptFormat::leaf(0, 1, Permissions::RX)).write);
    }
}
