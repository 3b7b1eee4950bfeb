//! Fixed ACPI Description Table (ACPI 6.5 5.2.9), revision 6, for the PIIX4
//! PM function: a full (not hardware-reduced) ACPI platform.
//!
//! SMI_CMD is 0: Keel has no SMM and the PIIX4 model sets SCI_EN at reset, so
//! the machine is always in ACPI mode (5.2.9: "zero ... the system does not
//! support a legacy mode"). The power button is the fixed-feature one
//! (PWR_BUTTON clear; PWRBTN_STS in PM1); there is no sleep button.

use alloc::vec::Vec;

use super::{header, seal, Gas};
use crate::config::pc_layout;
use crate::MachineConfig;

pub const FADT_LEN: usize = 276;
const REVISION: u8 = 6;
const MINOR_REVISION: u8 = 5;

/// Field offsets (table 5.9).
pub const FIRMWARE_CTRL: usize = 36;
pub const DSDT: usize = 40;
const SCI_INT: usize = 46;
const SMI_CMD: usize = 48;
const PM1A_EVT_BLK: usize = 56;
const PM1A_CNT_BLK: usize = 64;
const PM_TMR_BLK: usize = 76;
const GPE0_BLK: usize = 80;
const PM1_EVT_LEN: usize = 88;
const PM1_CNT_LEN: usize = 89;
const PM_TMR_LEN: usize = 91;
const GPE0_BLK_LEN: usize = 92;
const P_LVL2_LAT: usize = 96;
const P_LVL3_LAT: usize = 98;
const CENTURY: usize = 108;
const IAPC_BOOT_ARCH: usize = 109;
const FLAGS: usize = 112;
const RESET_REG: usize = 116;
const RESET_VALUE: usize = 128;
const MINOR_VERSION: usize = 131;
pub const X_DSDT: usize = 140;
const X_PM1A_EVT_BLK: usize = 148;
const X_PM1A_CNT_BLK: usize = 172;
const X_PM_TMR_BLK: usize = 208;
const X_GPE0_BLK: usize = 220;

/// Fixed feature flags (table 5.10).
pub mod flags {
    pub const WBINVD: u32 = 1 << 0;
    pub const PROC_C1: u32 = 1 << 2;
    pub const PWR_BUTTON: u32 = 1 << 4;
    pub const SLP_BUTTON: u32 = 1 << 5;
    pub const FIX_RTC: u32 = 1 << 6;
    pub const TMR_VAL_EXT: u32 = 1 << 8;
    pub const RESET_REG_SUP: u32 = 1 << 10;
    pub const USE_PLATFORM_CLOCK: u32 = 1 << 15;
    pub const HW_REDUCED_ACPI: u32 = 1 << 20;
}

/// IA-PC boot architecture flags (table 5.11): LEGACY_DEVICES (ISA devices
/// the OS must find through ACPI, not probing) and 8042.
pub const IAPC_LEGACY_DEVICES: u16 = 1 << 0;
pub const IAPC_8042: u16 = 1 << 1;

/// C2/C3 latencies above these limits mean "not supported".
const NO_C2: u16 = 101;
const NO_C3: u16 = 1001;

pub fn fadt(cfg: &MachineConfig) -> Vec<u8> {
    let mut t = header(b"FACP", REVISION);
    t.resize(FADT_LEN, 0);
    let put16 =
        |t: &mut Vec<u8>, at: usize, v: u16| t[at..at + 2].copy_from_slice(&v.to_le_bytes());
    let put32 =
        |t: &mut Vec<u8>, at: usize, v: u32| t[at..at + 4].copy_from_slice(&v.to_le_bytes());
    let put_gas = |t: &mut Vec<u8>, at: usize, g: Gas| t[at..at + 12].copy_from_slice(&g.bytes());

    let pm1a_evt = cfg.pm_base + pc_layout::PM1_EVT_OFFSET;
    let pm1a_cnt = cfg.pm_base + pc_layout::PM1_CNT_OFFSET;
    let pm_tmr = cfg.pm_base + pc_layout::PM_TMR_OFFSET;

    // Preferred_PM_Profile (45) stays 0, unspecified, as QEMU's.
    put16(&mut t, SCI_INT, u16::from(pc_layout::SCI_IRQ));
    put32(&mut t, SMI_CMD, 0);
    put32(&mut t, PM1A_EVT_BLK, u32::from(pm1a_evt));
    put32(&mut t, PM1A_CNT_BLK, u32::from(pm1a_cnt));
    put32(&mut t, PM_TMR_BLK, u32::from(pm_tmr));
    put32(&mut t, GPE0_BLK, u32::from(pc_layout::GPE0_PORT));
    t[PM1_EVT_LEN] = 4;
    t[PM1_CNT_LEN] = 2;
    t[PM_TMR_LEN] = 4;
    t[GPE0_BLK_LEN] = pc_layout::GPE0_LEN;
    put16(&mut t, P_LVL2_LAT, NO_C2);
    put16(&mut t, P_LVL3_LAT, NO_C3);
    t[CENTURY] = pc_layout::RTC_CENTURY;
    put16(&mut t, IAPC_BOOT_ARCH, IAPC_LEGACY_DEVICES | IAPC_8042);
    let mut f = flags::WBINVD
        | flags::PROC_C1
        | flags::SLP_BUTTON
        | flags::FIX_RTC
        | flags::RESET_REG_SUP
        | flags::USE_PLATFORM_CLOCK;
    if cfg.pm_timer_32bit {
        f |= flags::TMR_VAL_EXT;
    }
    put32(&mut t, FLAGS, f);
    put_gas(
        &mut t,
        RESET_REG,
        Gas::io(pc_layout::RESET_PORT, 8, Gas::ACCESS_BYTE),
    );
    t[RESET_VALUE] = pc_layout::RESET_VALUE;
    t[MINOR_VERSION] = MINOR_REVISION;
    // X_FIRMWARE_CTRL stays 0: FIRMWARE_CTRL is set (5.2.9 allows only one of them).
    put_gas(
        &mut t,
        X_PM1A_EVT_BLK,
        Gas::io(pm1a_evt, 32, Gas::ACCESS_WORD),
    );
    put_gas(
        &mut t,
        X_PM1A_CNT_BLK,
        Gas::io(pm1a_cnt, 16, Gas::ACCESS_WORD),
    );
    put_gas(&mut t, X_PM_TMR_BLK, Gas::io(pm_tmr, 32, Gas::ACCESS_DWORD));
    put_gas(
        &mut t,
        X_GPE0_BLK,
        Gas::io(
            pc_layout::GPE0_PORT,
            pc_layout::GPE0_LEN * 8,
            Gas::ACCESS_BYTE,
        ),
    );
    seal(&mut t);
    t
}
