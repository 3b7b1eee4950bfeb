//! What the tables describe: the VM's size and optional devices, and the
//! fixed facts of the i440FX/PIIX platform Keel mirrors (QEMU's `-machine pc`).

use crate::Error;

/// Fixed addresses and wiring of the platform. The device model answers at
/// these places; the tables only tell the guest where they are.
pub mod pc_layout {
    /// Local APIC base (SDM Vol 3A 10.4.1), the MADT's Local Interrupt Controller Address.
    pub const LAPIC_ADDRESS: u32 = 0xFEE0_0000;
    /// I/O APIC base, where QEMU's `pc` puts it.
    pub const IOAPIC_ADDRESS: u32 = 0xFEC0_0000;
    /// I/O APIC ID (QEMU's `pc` uses 0; APIC IDs and I/O APIC IDs are separate namespaces on xAPIC systems).
    pub const IOAPIC_ID: u8 = 0;
    /// I/O APIC redirection entries; GSI base 0, so GSIs 0..=23.
    pub const IOAPIC_PINS: u32 = 24;
    /// HPET register block (IA-PC HPET spec 1.0a) and its decoded size.
    pub const HPET_ADDRESS: u32 = 0xFED0_0000;
    pub const HPET_LEN: u32 = 0x400;
    /// HPET capabilities (GCAP_ID bits 31:0) of Keel's model: REV_ID 1, NUM_TIM_CAP 2 (three
    /// comparators), COUNT_SIZE_CAP (64-bit), LEG_RT_CAP, VENDOR_ID 0x8086.
    pub const HPET_EVENT_TIMER_BLOCK_ID: u32 = 0x8086_0000 | 1 << 15 | 1 << 13 | 2 << 8 | 0x01;
    /// HPET minimum periodic tick (clock ticks), the value Intel chipsets publish.
    pub const HPET_MIN_TICK: u16 = 0x0080;
    /// ISA IRQ (and GSI) of the SCI (PIIX4 PM: `Piix4Pm::SCI_IRQ`).
    pub const SCI_IRQ: u8 = 9;
    /// GPE0 block (GPE0_STS, GPE0_EN; `Piix4Pm::GPE0_PORT`, QEMU's address) and its length.
    pub const GPE0_PORT: u16 = 0xAFE0;
    pub const GPE0_LEN: u8 = 4;
    /// `\_S5`'s SLP_TYP: QEMU's PIIX4 convention, `Piix4Pm::S5_SLP_TYP`.
    pub const S5_SLP_TYP: u8 = 0;
    /// PM I/O block offsets (PIIX4 datasheet 3.4.3; ACPI 6.5 4.8.3).
    pub const PM1_EVT_OFFSET: u16 = 0x00;
    pub const PM1_CNT_OFFSET: u16 = 0x04;
    pub const PM_TMR_OFFSET: u16 = 0x08;
    /// Where SeaBIOS puts PMBA when it installs tables from `etc/table-loader`
    /// (`Piix4Pm::SEABIOS_PMBA`): the FADT must point there for SeaBIOS guests.
    pub const PM_BASE_SEABIOS: u16 = 0x0600;
    /// SeaBIOS's default PMBA without a table loader (its `PORT_ACPI_PM_BASE`).
    pub const PM_BASE_LEGACY: u16 = 0xB000;
    /// The reset register: PIIX3 Reset Control (port 0xCF9), value 0x06 (SYS_RST | RST_CPU).
    pub const RESET_PORT: u16 = 0x0CF9;
    pub const RESET_VALUE: u8 = 0x06;
    /// CMOS index of the RTC century byte.
    pub const RTC_CENTURY: u8 = 0x32;
    /// PCI device of the PIIX3 (function 0: ISA bridge and PIRQ router) and its PIRQ route registers.
    pub const PIIX3_DEVICE: u8 = 1;
    pub const PIIX3_PIRQRC: u8 = 0x60;
    /// ISA IRQs a PIRQ link may be routed to (QEMU's `_PRS` for LNKA-D).
    pub const PIRQ_IRQS: [u8; 3] = [5, 10, 11];
    /// ISA IRQs that carry PCI INTx (and the SCI), level-triggered active-high, for which
    /// QEMU publishes identity interrupt source overrides in the MADT.
    pub const PCI_LEVEL_IRQS: [u8; 4] = [5, 9, 10, 11];
}

/// Most vCPUs: one xAPIC ID each, `0..=254`.
pub const MAX_VCPUS: u32 = 255;
/// Least RAM: the first MiB (BIOS areas) plus room for the tables.
pub const MIN_RAM: u64 = 2 << 20;
/// Most RAM: 1 TiB, well inside SMBIOS 2.8's 32-bit KiB fields and a 40-bit guest-physical space.
pub const MAX_RAM: u64 = 1 << 40;
/// From this much RAM on, QEMU's `pc` keeps only 3 GiB below 4 GiB (its gigabyte alignment).
const LOW_RAM_SPLIT: u64 = 0xE000_0000;
const LOW_RAM_MAX: u64 = 0xC000_0000;
const FOUR_GIB: u64 = 1 << 32;

/// The VM the tables describe.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MachineConfig {
    /// vCPUs, `1..=MAX_VCPUS`. vCPU `n` has APIC ID `n` and ACPI processor UID `n`.
    pub vcpus: u32,
    /// Guest RAM in bytes: a multiple of 1 MiB in `MIN_RAM..=MAX_RAM`; laid out by [`RamLayout`].
    pub ram_bytes: u64,
    /// Whether the HPET at [`pc_layout::HPET_ADDRESS`] exists (HPET table and `\_SB.PCI0.HPET`).
    pub hpet: bool,
    /// The PM I/O block base the FADT names (PM1a_EVT at `+0`, PM1a_CNT `+4`, PM timer `+8`).
    /// It must be where the firmware programs the PIIX4's PMBA: [`pc_layout::PM_BASE_SEABIOS`]
    /// for SeaBIOS with the fw_cfg tables.
    pub pm_base: u16,
    /// A 32-bit PM timer (FADT TMR_VAL_EXT); QEMU's, and Keel's default, is 24-bit.
    pub pm_timer_32bit: bool,
    /// SMBIOS type 1 UUID, in the byte order it is written in text (RFC 4122).
    pub uuid: [u8; 16],
}

impl MachineConfig {
    /// A VM with `vcpus` vCPUs and `ram_bytes` of RAM, an HPET, a 24-bit PM timer, the PM
    /// block where SeaBIOS puts it and a nil UUID.
    pub fn new(vcpus: u32, ram_bytes: u64) -> Self {
        MachineConfig {
            vcpus,
            ram_bytes,
            hpet: true,
            pm_base: pc_layout::PM_BASE_SEABIOS,
            pm_timer_32bit: false,
            uuid: [0; 16],
        }
    }

    /// Checks every limit; all builders call this first.
    pub fn validate(&self) -> Result<(), Error> {
        if self.vcpus == 0 {
            return Err(Error::NoVcpus);
        }
        if self.vcpus > MAX_VCPUS {
            return Err(Error::TooManyVcpus {
                vcpus: self.vcpus,
                max: MAX_VCPUS,
            });
        }
        if self.ram_bytes < MIN_RAM {
            return Err(Error::RamTooSmall {
                bytes: self.ram_bytes,
                min: MIN_RAM,
            });
        }
        if self.ram_bytes > MAX_RAM {
            return Err(Error::RamTooLarge {
                bytes: self.ram_bytes,
                max: MAX_RAM,
            });
        }
        if !self.ram_bytes.is_multiple_of(1 << 20) {
            return Err(Error::RamNotMibAligned {
                bytes: self.ram_bytes,
            });
        }
        if self.pm_base == 0 || !self.pm_base.is_multiple_of(64) {
            return Err(Error::BadPmBase { base: self.pm_base });
        }
        Ok(())
    }

    /// Where the RAM is (no validation; see [`MachineConfig::validate`]).
    pub fn ram_layout(&self) -> RamLayout {
        RamLayout::pc(self.ram_bytes)
    }
}

/// Guest RAM split around the 32-bit PCI hole, by QEMU `pc`'s rule: all of it below
/// 4 GiB up to 3.5 GiB; from 3.5 GiB on, 3 GiB below and the rest from 4 GiB up.
/// The hypervisor's e820 map must use the same split (it is public for that).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RamLayout {
    /// RAM at `[0, below_4g)`.
    pub below_4g: u64,
    /// RAM at `[4 GiB, 4 GiB + above_4g)`.
    pub above_4g: u64,
}

impl RamLayout {
    /// QEMU `pc`'s split of `ram_bytes`.
    pub fn pc(ram_bytes: u64) -> Self {
        let below_4g = if ram_bytes >= LOW_RAM_SPLIT {
            LOW_RAM_MAX
        } else {
            ram_bytes
        };
        RamLayout {
            below_4g,
            above_4g: ram_bytes - below_4g,
        }
    }

    /// Start of the 32-bit PCI MMIO hole (it ends below the I/O APIC).
    pub fn pci_hole_start(&self) -> u64 {
        self.below_4g
    }

    /// End (exclusive) of the RAM above 4 GiB, if there is any.
    pub fn high_end(&self) -> Option<u64> {
        (self.above_4g != 0).then(|| FOUR_GIB + self.above_4g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn limits_are_errors() {
        let ok = MachineConfig::new(1, 64 << 20);
        assert_eq!(ok.validate(), Ok(()));
        let with = |f: fn(&mut MachineConfig)| {
            let mut c = ok.clone();
            f(&mut c);
            c.validate()
        };
        assert_eq!(with(|c| c.vcpus = 0), Err(Error::NoVcpus));
        assert!(matches!(
            with(|c| c.vcpus = 256),
            Err(Error::TooManyVcpus { .. })
        ));
        assert_eq!(with(|c| c.vcpus = 255), Ok(()));
        assert!(matches!(
            with(|c| c.ram_bytes = 1 << 20),
            Err(Error::RamTooSmall { .. })
        ));
        assert!(matches!(
            with(|c| c.ram_bytes = u64::MAX),
            Err(Error::RamTooLarge { .. })
        ));
        assert!(matches!(
            with(|c| c.ram_bytes = (64 << 20) + 4096),
            Err(Error::RamNotMibAligned { .. })
        ));
        assert!(matches!(
            with(|c| c.pm_base = 0xB004),
            Err(Error::BadPmBase { .. })
        ));
        assert!(matches!(
            with(|c| c.pm_base = 0),
            Err(Error::BadPmBase { .. })
        ));
    }

    #[test]
    fn ram_split_follows_qemu_pc() {
        assert_eq!(
            RamLayout::pc(512 << 20),
            RamLayout {
                below_4g: 512 << 20,
                above_4g: 0
            }
        );
        assert_eq!(RamLayout::pc(0xDFF0_0000).above_4g, 0);
        let big = RamLayout::pc(8 << 30);
        assert_eq!(big.below_4g, 3 << 30);
        assert_eq!(big.above_4g, 5 << 30);
        assert_eq!(big.high_end(), Some(9 << 30));
    }

    #[test]
    fn hpet_block_id_matches_the_model() {
        assert_eq!(pc_layout::HPET_EVENT_TIMER_BLOCK_ID, 0x8086_A201);
    }
}
