//! Differentiated System Description Table: the AML namespace of the
//! i440FX/PIIX board (ACPI 6.5 5.2.11.1), laid out as QEMU's `pc` DSDT:
//!
//! ```text
//! \_S5                     Package { S5_SLP_TYP, S5_SLP_TYP, 0, 0 }
//! \_SB.PCI0                PNP0A03 root bridge: _CRS (bus 0-255, I/O 0-0xCF7 and
//!                          0xD00-0xFFFF, VGA window, 32-bit hole from the top of
//!                          low RAM up to the IOAPIC), _PRT (slots 1-31 through LNKA-D,
//!                          PIRQ[(slot - 1 + pin) mod 4])
//! \_SB.PCI0.ISA            PIIX3 function 0, with the PIRQ route registers
//!                          (PRQ0-PRQ3 = config 0x60-0x63) and the ISA devices:
//!                          RTC PNP0B00, PIC PNP0000, TMR PNP0100, KBD PNP0303,
//!                          MOU PNP0F13, COM1 PNP0501
//! \_SB.PCI0.HPET           PNP0103 (when configured)
//! \_SB.LNKA-LNKD           PNP0C0F PCI interrupt links over PRQ0-PRQ3
//! \_SB.CPxx                one Processor() per vCPU
//! ```
//!
//! Processors are `Processor()` objects, not `Device(ACPI0007)`: every OS Keel
//! targets (old Windows included, and SeaBIOS's own DSDT scan) understands
//! them, and Keel has no CPU hot-plug that would need the device form. Their
//! ProcessorID is the MADT's ACPI processor UID (= APIC ID = vCPU index).
//!
//! The power button is the fixed-feature one (FADT), so there is no PNP0C0C device.

use alloc::format;
use alloc::vec::Vec;

use super::{header, seal, HEADER_LEN};
use crate::aml::{self, Resources};
use crate::config::pc_layout;
use crate::{Error, MachineConfig};

/// DSDT revision 2: 64-bit AML integers.
const REVISION: u8 = 2;
/// Largest body a PkgLength can describe.
const MAX_AML: usize = (1 << 28) - 1;
const PCI_HOLE_END: u32 = pc_layout::IOAPIC_ADDRESS - 1;
/// The PCI link devices and the PIIX3 route register each drives.
const LINKS: [(&str, &str); 4] = [
    ("LNKA", "PRQ0"),
    ("LNKB", "PRQ1"),
    ("LNKC", "PRQ2"),
    ("LNKD", "PRQ3"),
];
/// IRQROUTEEN# in a PIRQ route register: set = the PIRQ is not routed.
const PIRQ_DISABLE: u64 = 0x80;
/// Byte offset of the first interrupt number in an Extended Interrupt descriptor.
const EXT_IRQ_NUMBER: u64 = 5;

pub fn dsdt(cfg: &MachineConfig) -> Result<Vec<u8>, Error> {
    let mut t = header(b"DSDT", REVISION);
    let s5 = u64::from(pc_layout::S5_SLP_TYP);
    t.extend(aml::name(
        "\\_S5",
        &aml::package(&[aml::int(s5), aml::int(s5), aml::int(0), aml::int(0)]),
    ));
    let mut sb = Vec::new();
    sb.extend(pci0(cfg));
    sb.extend(links());
    for cpu in 0..cfg.vcpus.min(crate::MAX_VCPUS) as u8 {
        sb.extend(aml::processor(&format!("CP{cpu:02X}"), cpu, 0, 0, &[]));
    }
    t.extend(aml::scope("\\_SB", &sb));
    if t.len() - HEADER_LEN > MAX_AML {
        return Err(Error::TooLarge {
            what: "the DSDT",
            len: t.len(),
            max: MAX_AML,
        });
    }
    seal(&mut t);
    Ok(t)
}

fn hid(id: &str) -> Vec<u8> {
    aml::name("_HID", &aml::int(u64::from(aml::eisa_id(id))))
}

fn pci0(cfg: &MachineConfig) -> Vec<u8> {
    let ram = cfg.ram_layout();
    let hole_start = ram.pci_hole_start() as u32;
    let crs = Resources::new()
        .word_bus_number(0x00, 0xFF)
        .io(0x0CF8, 1, 8)
        .word_io(0x0000, 0x0CF7)
        .word_io(0x0D00, 0xFFFF)
        .dword_memory(0x000A_0000, 0x000B_FFFF)
        .dword_memory(hole_start, PCI_HOLE_END);
    let mut body = aml::terms(&[
        hid("PNP0A03"),
        aml::name("_ADR", &aml::int(0)),
        aml::name("_UID", &aml::int(0)),
        aml::name("_CRS", &crs.template()),
        aml::name("_PRT", &prt()),
        isa(),
    ]);
    if cfg.hpet {
        body.extend(aml::device(
            "HPET",
            &aml::terms(&[
                hid("PNP0103"),
                aml::name("_UID", &aml::int(0)),
                aml::name(
                    "_CRS",
                    &Resources::new()
                        .memory32_fixed(false, pc_layout::HPET_ADDRESS, pc_layout::HPET_LEN)
                        .template(),
                ),
            ]),
        ));
    }
    aml::device("PCI0", &body)
}

/// `_PRT`: INTA-INTD of slots 1-31 (function wildcard 0xFFFF) to the link
/// devices, rotated per slot as the PIIX3 board wires them:
/// PIRQ[(slot - 1 + pin) mod 4] for pin 0 = INTA, the rotation of
/// device-model's `Piix3::pirq_for` and of the interrupt lines SeaBIOS
/// programs. The same table serves PIC and APIC mode: a link's `_CRS` is
/// the ISA IRQ its route register selects, and the interrupt router drives
/// that IRQ's 8259A input and IOAPIC pin alike.
fn prt() -> Vec<u8> {
    let mut entries = Vec::new();
    for slot in 1u64..32 {
        for pin in 0u64..4 {
            let (link, _) = LINKS[((slot + 3 + pin) % 4) as usize];
            entries.push(aml::package(&[
                aml::int(slot << 16 | 0xFFFF),
                aml::int(pin),
                aml::path(link),
                aml::int(0),
            ]));
        }
    }
    aml::package(&entries)
}

fn isa_device(name: &str, pnp: &str, uid: Option<u64>, crs: Resources) -> Vec<u8> {
    let mut body = hid(pnp);
    if let Some(uid) = uid {
        body.extend(aml::name("_UID", &aml::int(uid)));
    }
    body.extend(aml::name("_CRS", &crs.template()));
    aml::device(name, &body)
}

/// The PIIX3's function 0: route registers and the legacy ISA devices.
fn isa() -> Vec<u8> {
    let route_regs: Vec<(&str, u32)> = LINKS.iter().map(|&(_, reg)| (reg, 8)).collect();
    aml::device(
        "ISA",
        &aml::terms(&[
            aml::name("_ADR", &aml::int(u64::from(pc_layout::PIIX3_DEVICE) << 16)),
            aml::op_region(
                "P40C",
                aml::RegionSpace::PciConfig,
                u64::from(pc_layout::PIIX3_PIRQRC),
                4,
            ),
            aml::field_byte_acc("P40C", &route_regs),
            isa_device(
                "RTC",
                "PNP0B00",
                None,
                Resources::new().io(0x70, 1, 2).irq_no_flags(8),
            ),
            isa_device(
                "PIC",
                "PNP0000",
                None,
                Resources::new()
                    .io(0x20, 1, 2)
                    .io(0xA0, 1, 2)
                    .irq_no_flags(2),
            ),
            isa_device(
                "TMR",
                "PNP0100",
                None,
                Resources::new().io(0x40, 1, 4).irq_no_flags(0),
            ),
            isa_device(
                "KBD",
                "PNP0303",
                None,
                Resources::new()
                    .io(0x60, 1, 1)
                    .io(0x64, 1, 1)
                    .irq_no_flags(1),
            ),
            isa_device("MOU", "PNP0F13", None, Resources::new().irq_no_flags(12)),
            isa_device(
                "COM1",
                "PNP0501",
                Some(1),
                Resources::new().io(0x3F8, 1, 8).irq_no_flags(4),
            ),
        ]),
    )
}

/// `\_SB.IQCR(route)`: a link's current resource from its route register value;
/// then LNKA-LNKD (PNP0C0F) with _STA/_PRS/_CRS/_SRS/_DIS over PRQ0-PRQ3.
fn links() -> Vec<u8> {
    let irqs: Vec<u32> = pc_layout::PIRQ_IRQS.iter().map(|&i| u32::from(i)).collect();
    let mut out = aml::method(
        "IQCR",
        1,
        true,
        &aml::terms(&[
            aml::name(
                "PRR0",
                &Resources::new()
                    .interrupt_level_high_shared(&[0])
                    .template(),
            ),
            aml::create_dword_field(&aml::path("PRR0"), EXT_IRQ_NUMBER, "PRRI"),
            aml::if_(
                &aml::lless(&aml::arg(0), &aml::int(PIRQ_DISABLE)),
                &aml::store(
                    &aml::and(&aml::arg(0), &aml::int(0x0F), None),
                    &aml::path("PRRI"),
                ),
            ),
            aml::ret(&aml::path("PRR0")),
        ]),
    );
    for (uid, (link, reg)) in LINKS.iter().enumerate() {
        let reg = format!("\\_SB.PCI0.ISA.{reg}");
        out.extend(aml::device(
            link,
            &aml::terms(&[
                hid("PNP0C0F"),
                aml::name("_UID", &aml::int(uid as u64 + 1)),
                aml::name(
                    "_PRS",
                    &Resources::new()
                        .interrupt_level_high_shared(&irqs)
                        .template(),
                ),
                // Present and enabled (0x0B) while routed, present and disabled (0x09) otherwise.
                aml::method(
                    "_STA",
                    0,
                    false,
                    &aml::terms(&[
                        aml::if_(
                            &aml::and(&aml::path(&reg), &aml::int(PIRQ_DISABLE), None),
                            &aml::ret(&aml::int(0x09)),
                        ),
                        aml::ret(&aml::int(0x0B)),
                    ]),
                ),
                aml::method(
                    "_DIS",
                    0,
                    false,
                    &aml::or(
                        &aml::path(&reg),
                        &aml::int(PIRQ_DISABLE),
                        Some(&aml::path(&reg)),
                    ),
                ),
                aml::method(
                    "_CRS",
                    0,
                    false,
                    &aml::ret(&aml::call("\\_SB.IQCR", &[aml::path(&reg)])),
                ),
                aml::method(
                    "_SRS",
                    1,
                    false,
                    &aml::terms(&[
                        aml::create_dword_field(&aml::arg(0), EXT_IRQ_NUMBER, "PRRI"),
                        aml::store(&aml::path("PRRI"), &aml::path(&reg)),
                    ]),
                ),
            ]),
        ));
    }
    out
}
