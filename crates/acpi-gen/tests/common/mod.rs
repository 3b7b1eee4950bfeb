//! Test support: a fake guest-physical memory the `acpi` crate maps through
//! its `AcpiHandler`, a tiny BIOS linker/loader that runs `etc/table-loader`
//! the way SeaBIOS does, and a structural AML reader.

#![allow(dead_code)]

pub mod aml_walk;

use std::collections::HashMap;
use std::ptr::NonNull;
use std::rc::Rc;

use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};

/// Guest-physical memory as a few placed blobs.
#[derive(Clone, Default)]
pub struct Memory {
    regions: Rc<Vec<(usize, Box<[u8]>)>>,
}

impl Memory {
    pub fn new(blobs: Vec<(u64, Vec<u8>)>) -> Self {
        Memory {
            regions: Rc::new(
                blobs
                    .into_iter()
                    .map(|(a, b)| (a as usize, b.into_boxed_slice()))
                    .collect(),
            ),
        }
    }

    /// The bytes at `[address, address + len)`, which must lie in one blob.
    pub fn slice(&self, address: usize, len: usize) -> &[u8] {
        for (base, bytes) in self.regions.iter() {
            if address >= *base && address + len <= base + bytes.len() {
                return &bytes[address - base..address - base + len];
            }
        }
        panic!("nothing mapped at {address:#x}+{len:#x}");
    }

    pub fn tables(&self, rsdp: u64) -> AcpiTables<Memory> {
        unsafe { AcpiTables::from_rsdp(self.clone(), rsdp as usize) }
            .expect("acpi crate accepts the tables")
    }
}

impl AcpiHandler for Memory {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let s = self.slice(physical_address, size);
        let ptr = NonNull::new(s.as_ptr() as *mut T).unwrap();
        unsafe { PhysicalMapping::new(physical_address, ptr, size, size, self.clone()) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// A file the loader allocated.
pub struct Allocated {
    pub address: u64,
    pub bytes: Vec<u8>,
    pub zone: u8,
}

fn name(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8(b[..end].to_vec()).unwrap()
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

/// Runs a linker/loader script over `files` as SeaBIOS would: HIGH files are
/// allocated downwards from `high_top`, FSEG files upwards from 0xE0000.
pub fn run_loader(
    script: &[u8],
    files: &HashMap<&str, Vec<u8>>,
    high_top: u64,
) -> HashMap<String, Allocated> {
    assert_eq!(script.len() % 128, 0, "script is whole 128-byte entries");
    let mut out: HashMap<String, Allocated> = HashMap::new();
    let mut high = high_top;
    let mut fseg = 0xE_0000u64;
    for e in script.chunks(128) {
        match u32_at(e, 0) {
            1 => {
                let file = name(&e[4..60]);
                let align = u64::from(u32_at(e, 60));
                let zone = e[64];
                let bytes = files
                    .get(file.as_str())
                    .expect("allocated file exists")
                    .clone();
                assert!(align.is_power_of_two());
                let address = match zone {
                    1 => {
                        high = (high - bytes.len() as u64) & !(align - 1);
                        high
                    }
                    2 => {
                        fseg = fseg.next_multiple_of(align);
                        let a = fseg;
                        fseg += bytes.len() as u64;
                        assert!(fseg <= 0x10_0000, "FSEG overflow");
                        a
                    }
                    z => panic!("unknown zone {z}"),
                };
                out.insert(
                    file,
                    Allocated {
                        address,
                        bytes,
                        zone,
                    },
                );
            }
            2 => {
                let dest = name(&e[4..60]);
                let src = name(&e[60..116]);
                let offset = u32_at(e, 116) as usize;
                let size = usize::from(e[120]);
                assert!([1, 2, 4, 8].contains(&size));
                let src_addr = out[&src].address;
                let d = &mut out.get_mut(&dest).expect("destination allocated").bytes;
                let mut v = [0u8; 8];
                v[..size].copy_from_slice(&d[offset..offset + size]);
                let new = u64::from_le_bytes(v).wrapping_add(src_addr).to_le_bytes();
                d[offset..offset + size].copy_from_slice(&new[..size]);
            }
            3 => {
                let file = name(&e[4..60]);
                let offset = u32_at(e, 60) as usize;
                let start = u32_at(e, 64) as usize;
                let len = u32_at(e, 68) as usize;
                let d = &mut out
                    .get_mut(&file)
                    .expect("checksummed file allocated")
                    .bytes;
                let sum = d[start..start + len]
                    .iter()
                    .fold(0u8, |s, &b| s.wrapping_add(b));
                d[offset] = d[offset].wrapping_sub(sum);
            }
            c => panic!("unknown loader command {c}"),
        }
    }
    out
}

/// Sums `bytes` mod 256.
pub fn sum(bytes: &[u8]) -> u8 {
    bytes.iter().fold(0u8, |s, &b| s.wrapping_add(b))
}
