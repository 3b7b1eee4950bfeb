//! The shared-info page and the per-vCPU `vcpu_info`, as Xen's public/xen.h
//! lays them out for x86-64, and the PV clock in `vcpu_time_info`.
//!
//! Keel keeps the shared-info page in a page of guest RAM it reserved
//! ([`super::XenPages`]) and shows it wherever the guest's
//! XENMEM_add_to_physmap asks; the device model reads and writes it through
//! the one guest-memory accessor.

use guest_memory::GuestMemory;

/// Bytes of one page.
pub const PAGE_SIZE: u64 = 4096;
/// `vcpu_info` slots in the shared-info page (public/xen.h XEN_LEGACY_MAX_VCPUS).
pub const LEGACY_MAX_VCPUS: u32 = 32;
/// Size of one `vcpu_info`.
pub const VCPU_INFO_SIZE: u64 = 64;
/// `shared_info.evtchn_pending[64]`: one bit per port.
pub const EVTCHN_PENDING: u64 = 2048;
/// `shared_info.evtchn_mask[64]`.
pub const EVTCHN_MASK: u64 = 2560;
/// `shared_info.wc_version`, `wc_sec`, `wc_nsec`, `wc_sec_hi`.
pub const WC_VERSION: u64 = 3072;
pub const WC_SEC: u64 = 3076;
pub const WC_NSEC: u64 = 3080;
pub const WC_SEC_HI: u64 = 3084;

/// `vcpu_info.evtchn_upcall_pending` (u8).
pub const UPCALL_PENDING: u64 = 0;
/// `vcpu_info.evtchn_upcall_mask` (u8).
pub const UPCALL_MASK: u64 = 1;
/// `vcpu_info.evtchn_pending_sel` (u64: one bit per word of `evtchn_pending`).
pub const PENDING_SEL: u64 = 8;
/// `vcpu_info.time`: a `vcpu_time_info`.
pub const VCPU_TIME: u64 = 32;
/// Size of `vcpu_time_info`.
pub const VCPU_TIME_INFO_SIZE: usize = 32;
/// `vcpu_time_info.flags`: the TSC is stable across vCPUs
/// (XEN_PVCLOCK_TSC_STABLE_BIT, public/xen.h).
pub const PVCLOCK_TSC_STABLE: u8 = 1 << 0;

/// Size of `vcpu_runstate_info` (public/vcpu.h): `int state`, u64
/// `state_entry_time`, u64 `time[4]`.
pub const RUNSTATE_INFO_SIZE: usize = 48;

/// The scale of the PV clock: system time in ns advances by
/// `((tsc_delta << shift) * mul) >> 32` (a negative shift shifts right),
/// public/xen.h `vcpu_time_info`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TscScale {
    pub mul: u32,
    pub shift: i8,
}

impl TscScale {
    /// The scale for a TSC of `tsc_hz` (at least 1 Hz): the largest
    /// multiplier below 2^32 with the shift that makes it fit, so that
    /// precision is kept.
    pub fn for_hz(tsc_hz: u64) -> TscScale {
        let hz = u128::from(tsc_hz.max(1));
        let mut shift: i32 = 0;
        // mul = 10^9 * 2^32 / (hz * 2^shift)
        let mul = |shift: i32| -> u128 {
            let num = 1_000_000_000u128 << 32;
            if shift >= 0 {
                num / (hz << shift)
            } else {
                (num << (-shift)) / hz
            }
        };
        while mul(shift) >= 1 << 32 && shift < 31 {
            shift += 1;
        }
        while mul(shift) < 1 << 31 && shift > -31 {
            shift -= 1;
        }
        TscScale {
            mul: mul(shift).min(u128::from(u32::MAX)) as u32,
            shift: shift as i8,
        }
    }

    /// Nanoseconds for `delta` TSC ticks, as the guest computes them.
    pub fn ticks_to_ns(self, delta: u64) -> u64 {
        let d = if self.shift >= 0 {
            delta << self.shift
        } else {
            delta >> -self.shift
        };
        ((u128::from(d) * u128::from(self.mul)) >> 32) as u64
    }
}

/// One `vcpu_time_info` record: the guest's system time is
/// `system_time + scale(tsc - tsc_timestamp)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeInfo {
    pub tsc_timestamp: u64,
    pub system_time: u64,
    pub scale: TscScale,
}

/// Writes `info` at `gpa` with the version protocol (public/xen.h): the
/// version goes odd before the fields change and even after, so a guest
/// reading between the two sees an odd version and reads again.
pub fn write_time_info(memory: &GuestMemory, gpa: u64, info: &TimeInfo) -> bool {
    let mut version = [0u8; 4];
    if memory.read(gpa, &mut version).is_err() {
        return false;
    }
    let v = u32::from_le_bytes(version);
    let odd = v.wrapping_add(1) | 1;
    let mut b = [0u8; VCPU_TIME_INFO_SIZE];
    b[0..4].copy_from_slice(&odd.to_le_bytes());
    b[8..16].copy_from_slice(&info.tsc_timestamp.to_le_bytes());
    b[16..24].copy_from_slice(&info.system_time.to_le_bytes());
    b[24..28].copy_from_slice(&info.scale.mul.to_le_bytes());
    b[28] = info.scale.shift as u8;
    b[29] = PVCLOCK_TSC_STABLE;
    memory.write(gpa, &b).is_ok()
        && memory
            .write(gpa, &odd.wrapping_add(1).to_le_bytes())
            .is_ok()
}

/// Writes the wall clock of system time 0 (`wc_*`, public/xen.h) with
/// the same version protocol.
pub fn write_wallclock(memory: &GuestMemory, shared_info: u64, unix_sec: u64) {
    let mut version = [0u8; 4];
    let _ = memory.read(shared_info + WC_VERSION, &mut version);
    let odd = u32::from_le_bytes(version).wrapping_add(1) | 1;
    let _ = memory.write(shared_info + WC_VERSION, &odd.to_le_bytes());
    let _ = memory.write(shared_info + WC_SEC, &(unix_sec as u32).to_le_bytes());
    let _ = memory.write(shared_info + WC_NSEC, &0u32.to_le_bytes());
    let _ = memory.write(
        shared_info + WC_SEC_HI,
        &((unix_sec >> 32) as u32).to_le_bytes(),
    );
    let _ = memory.write(shared_info + WC_VERSION, &odd.wrapping_add(1).to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scale_turns_a_second_of_ticks_into_a_second() {
        for hz in [
            1_000_000u64,
            100_000_000,
            2_999_999_999,
            3_700_000_000,
            10_000_000_000,
        ] {
            let s = TscScale::for_hz(hz);
            let ns = s.ticks_to_ns(hz);
            assert!(ns.abs_diff(1_000_000_000) < 10, "{hz} Hz: {ns} ns {s:?}");
            assert!(s.mul >= 1 << 31, "{hz} Hz: mul {s:?} keeps precision");
        }
    }

    #[test]
    fn time_info_layout_and_even_version() {
        let m = GuestMemory::new(0x2000);
        let info = TimeInfo {
            tsc_timestamp: 0x1122_3344_5566_7788,
            system_time: 42,
            scale: TscScale {
                mul: 0x8000_0000,
                shift: -1,
            },
        };
        assert!(write_time_info(&m, 0x1000 + VCPU_TIME, &info));
        let mut b = [0u8; 32];
        m.read(0x1000 + VCPU_TIME, &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 2);
        assert_eq!(
            u64::from_le_bytes(b[8..16].try_into().unwrap()),
            info.tsc_timestamp
        );
        assert_eq!(u64::from_le_bytes(b[16..24].try_into().unwrap()), 42);
        assert_eq!(
            u32::from_le_bytes(b[24..28].try_into().unwrap()),
            0x8000_0000
        );
        assert_eq!(b[28] as i8, -1);
        assert!(write_time_info(&m, 0x1000 + VCPU_TIME, &info));
        m.read(0x1000 + VCPU_TIME, &mut b).unwrap();
        assert_eq!(u32::from_le_bytes(b[0..4].try_into().unwrap()), 4);
        assert!(!write_time_info(&m, 0x2000, &info), "outside RAM");
    }
}
