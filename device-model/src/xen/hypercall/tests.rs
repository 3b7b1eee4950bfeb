//! Each hypercall against the numbers and errors of Xen's public headers.

use alloc::sync::Arc;

use guest_memory::{GuestMemory, LinearMemory};

use super::*;
use crate::clock::FakeClock;
use crate::memory_map::MemoryMapQueue;
use crate::power::PowerControl;
use crate::xen::event_channel::{NR_PORTS, VIRQ_TIMER};
use crate::xen::shared_info::{EVTCHN_MASK, EVTCHN_PENDING, PENDING_SEL};
use crate::xen::{EventSender, EvtchnPort, PhysmapLimits, XenPages};
use guest_memory::{Backing, MemoryMapChange};

const RAM: u64 = 0x100_0000;
const ARG: u64 = 0x8000;
/// A 40-bit guest-physical address space.
const GPA_LIMIT: u64 = 1 << 40;
/// The local APIC page, which the VMM never remaps.
const LAPIC_PAGE: core::ops::Range<u64> = 0xfee0_0000..0xfee0_1000;

/// Paging off: linear = physical.
struct Flat(GuestMemory);
impl LinearMemory for Flat {
    fn read_linear(&mut self, la: u64, buf: &mut [u8]) -> bool {
        self.0.read(la, buf).is_ok()
    }
    fn write_linear(&mut self, la: u64, data: &[u8]) -> bool {
        self.0.write(la, data).is_ok()
    }
}

struct T {
    xen: Xen,
    mem: Flat,
    clock: Arc<FakeClock>,
    map: MemoryMapQueue,
    power: PowerControl,
}

fn setup() -> T {
    let m = GuestMemory::new(RAM as usize);
    let clock = FakeClock::new(1_000);
    let map = MemoryMapQueue::new();
    let power = PowerControl::new();
    let xen = Xen::new(
        m.clone(),
        XenPages::at_top_of(RAM),
        1,
        clock.clone(),
        2_000_000_000,
        1_700_000_000,
        map.clone(),
        PhysmapLimits {
            gpa_limit: GPA_LIMIT,
            fixed: alloc::vec![LAPIC_PAGE],
        },
        power.clone(),
    );
    T {
        xen,
        mem: Flat(m),
        clock,
        map,
        power,
    }
}

impl T {
    fn call(&mut self, nr: u64, args: [u64; 5]) -> i64 {
        let c = Hypercall {
            vcpu: 0,
            nr,
            args,
            guest_tsc: 12345,
        };
        self.xen.hypercall(&c, &mut self.mem)
    }
    fn put(&self, at: u64, b: &[u8]) {
        self.mem.0.write(at, b).unwrap();
    }
    fn u32(&self, at: u64) -> u32 {
        let mut b = [0u8; 4];
        self.mem.0.read(at, &mut b).unwrap();
        u32::from_le_bytes(b)
    }
    fn u64(&self, at: u64) -> u64 {
        let mut b = [0u8; 8];
        self.mem.0.read(at, &mut b).unwrap();
        u64::from_le_bytes(b)
    }
    fn op(&mut self, nr: u64, cmd: u64, arg: &[u8]) -> i64 {
        self.put(ARG, arg);
        self.call(nr, [cmd, ARG, 0, 0, 0])
    }
    fn vop(&mut self, cmd: u64, arg: &[u8]) -> i64 {
        self.put(ARG, arg);
        self.call(VCPU_OP, [cmd, 0, ARG, 0, 0])
    }
    fn evtchn(&mut self, cmd: u64, arg: &[u8]) -> i64 {
        self.op(EVENT_CHANNEL_OP, cmd, arg)
    }
    fn si(&self) -> u64 {
        self.xen.pages().shared_info()
    }
}

fn le(words: &[u32]) -> alloc::vec::Vec<u8> {
    words.iter().flat_map(|w| w.to_le_bytes()).collect()
}

#[test]
fn unknown_hypercalls_and_subops_are_enosys() {
    let mut t = setup();
    for nr in [0, PHYSDEV_OP, CONSOLE_IO, VM_ASSIST, 127, 128, u64::MAX] {
        assert_eq!(t.call(nr, [0; 5]), -38, "hypercall {nr}");
    }
    assert_eq!(t.call(XEN_VERSION, [99, 0, 0, 0, 0]), -ENOSYS);
    assert_eq!(t.call(MEMORY_OP, [0, 0, 0, 0, 0]), -ENOSYS);
    assert_eq!(t.call(HVM_OP, [9, 0, 0, 0, 0]), -ENOSYS, "pagetable_dying");
    assert_eq!(t.call(VCPU_OP, [0, 0, 0, 0, 0]), -ENOSYS);
    for fifo in [11, 12, 13] {
        assert_eq!(t.call(EVENT_CHANNEL_OP, [fifo, ARG, 0, 0, 0]), -ENOSYS);
    }
    assert_eq!(t.call(SCHED_OP, [7, ARG, 0, 0, 0]), -ENOSYS);
    assert_eq!(
        t.call(GRANT_TABLE_OP, [2, ARG, 1, 0, 0]),
        -ENOSYS,
        "setup_table"
    );
}

#[test]
fn xen_version_and_features() {
    let mut t = setup();
    assert_eq!(t.call(XEN_VERSION, [0, 0, 0, 0, 0]), (4 << 16) | 17);
    assert_eq!(t.call(XEN_VERSION, [7, 0, 0, 0, 0]), 4096);
    assert_eq!(t.op(XEN_VERSION, 6, &le(&[0, 0])), 0);
    let f = t.u32(ARG + 4);
    for bit in [0, 2, 8, 9] {
        assert_ne!(f & (1 << bit), 0, "feature {bit}");
    }
    assert_eq!(f & (1 << 10), 0, "no hvm_pirqs");
    assert_eq!(t.op(XEN_VERSION, 6, &le(&[1, 0xdead])), 0);
    assert_eq!(t.u32(ARG + 4), 0, "submap 1 is empty");
    assert_eq!(t.call(XEN_VERSION, [1, ARG, 0, 0, 0]), 0);
    assert_eq!(t.call(XEN_VERSION, [6, RAM, 0, 0, 0]), -EFAULT);
}

fn physmap(domid: u16, space: u32, idx: u64, gpfn: u64) -> alloc::vec::Vec<u8> {
    let mut b = alloc::vec::Vec::new();
    b.extend_from_slice(&domid.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&space.to_le_bytes());
    b.extend_from_slice(&idx.to_le_bytes());
    b.extend_from_slice(&gpfn.to_le_bytes());
    b
}

/// public/xen.h: `vcpu_info.time` in shared info is the PV clock Xen keeps
/// current; Linux reads it (dividing by `tsc_to_system_mul`) for the TSC
/// rate before it registers a vcpu_info of its own, so a zero record is a
/// divide error in early boot (seen with Debian 12's kernel).
#[test]
fn shared_info_slots_carry_the_pv_clock_once_placed() {
    let mut t = setup();
    let slot_time = t.xen.pages().shared_info() + crate::xen::shared_info::VCPU_TIME;
    assert_eq!(t.u32(slot_time + 24), 0, "zeroed before placement");
    assert_eq!(t.op(MEMORY_OP, 7, &physmap(DOMID_SELF, 0, 0, 1)), 0);
    let mul = t.u32(slot_time + 24);
    assert_ne!(mul, 0, "tsc_to_system_mul");
    assert_eq!(
        t.u32(slot_time) % 2,
        0,
        "an even version: a complete record"
    );
    let mut tsc = [0u8; 8];
    t.mem.0.read(slot_time + 8, &mut tsc).unwrap();
    assert_eq!(
        u64::from_le_bytes(tsc),
        12345,
        "tsc_timestamp is the caller's TSC"
    );
}

#[test]
fn add_to_physmap_maps_shared_info_and_grant_frames() {
    let mut t = setup();
    assert_eq!(t.op(MEMORY_OP, 7, &physmap(DOMID_SELF, 0, 0, 1)), 0);
    let pages = t.xen.pages();
    assert_eq!(
        t.map.take(),
        [MemoryMapChange::Map {
            gpa: 0x1000,
            len: 4096,
            backing: Backing::Ram {
                offset: pages.shared_info()
            },
            writes: guest_memory::Writes::Allowed,
        }]
    );
    // Grant frame 2 in the platform device's BAR1 (above RAM).
    assert_eq!(t.op(MEMORY_OP, 7, &physmap(DOMID_SELF, 1, 2, 0xf0000)), 0);
    assert_eq!(
        t.map.take(),
        [MemoryMapChange::Map {
            gpa: 0xf000_0000,
            len: 4096,
            backing: Backing::Ram {
                offset: pages.grant_frame(2)
            },
            writes: guest_memory::Writes::Allowed,
        }]
    );
    // Bad inputs: other domain, v2 status frame, frame past the table,
    // unknown space, over Keel's own pages, unreadable argument.
    assert_eq!(t.op(MEMORY_OP, 7, &physmap(5, 0, 0, 1)), -3);
    assert_eq!(
        t.op(MEMORY_OP, 7, &physmap(DOMID_SELF, 1, 1 << 31, 0x100)),
        -EINVAL
    );
    assert_eq!(
        t.op(MEMORY_OP, 7, &physmap(DOMID_SELF, 1, 32, 0x100)),
        -EINVAL
    );
    assert_eq!(
        t.op(MEMORY_OP, 7, &physmap(DOMID_SELF, 9, 0, 0x100)),
        -EINVAL
    );
    assert_eq!(
        t.op(MEMORY_OP, 7, &physmap(DOMID_SELF, 0, 0, pages.base / 4096)),
        -EINVAL
    );
    assert_eq!(
        t.op(MEMORY_OP, 7, &physmap(DOMID_SELF, 0, 0, u64::MAX)),
        -EINVAL
    );
    assert_eq!(t.call(MEMORY_OP, [7, RAM - 4, 0, 0, 0]), -EFAULT);
    assert!(t.map.take().is_empty());
    // A reset gives the RAM page back and takes the grant frame off.
    t.xen.reset();
    let back = t.map.take();
    assert!(back.contains(&MemoryMapChange::Map {
        gpa: 0x1000,
        len: 4096,
        backing: Backing::Ram { offset: 0x1000 },
        writes: guest_memory::Writes::Allowed,
    }));
    assert!(back.contains(&MemoryMapChange::Unmap {
        gpa: 0xf000_0000,
        len: 4096
    }));
}

fn param(domid: u16, index: u32, value: u64) -> alloc::vec::Vec<u8> {
    let mut b = alloc::vec::Vec::new();
    b.extend_from_slice(&domid.to_le_bytes());
    b.extend_from_slice(&0u16.to_le_bytes());
    b.extend_from_slice(&index.to_le_bytes());
    b.extend_from_slice(&value.to_le_bytes());
    b
}

#[test]
fn hvm_params_give_store_and_console_and_take_the_callback_vector() {
    let mut t = setup();
    let (store_gfn, store_port) = t.xen.store();
    assert_eq!(
        t.op(HVM_OP, 1, &param(DOMID_SELF, HVM_PARAM_STORE_PFN, 0)),
        0
    );
    assert_eq!(t.u64(ARG + 8), store_gfn);
    assert_ne!(store_gfn, 0);
    assert_eq!(store_gfn * 4096, t.xen.pages().store());
    assert_eq!(
        t.op(HVM_OP, 1, &param(DOMID_SELF, HVM_PARAM_STORE_EVTCHN, 0)),
        0
    );
    assert_eq!(t.u64(ARG + 8), u64::from(store_port.0));
    assert_ne!(store_port.0, 0);
    assert_eq!(
        t.op(HVM_OP, 1, &param(DOMID_SELF, HVM_PARAM_CONSOLE_PFN, 0)),
        0
    );
    assert_eq!(t.u64(ARG + 8) * 4096, t.xen.pages().console());
    assert_eq!(
        t.op(HVM_OP, 1, &param(DOMID_SELF, HVM_PARAM_CONSOLE_EVTCHN, 0)),
        0
    );
    assert_ne!(t.u64(ARG + 8), u64::from(store_port.0));
    assert_eq!(t.op(HVM_OP, 1, &param(DOMID_SELF, 999, 0)), -EINVAL);
    assert_eq!(t.op(HVM_OP, 1, &param(4, HVM_PARAM_STORE_PFN, 0)), -3);
    // The callback vector: nothing until upcall_pending.
    let via = (2u64 << 56) | 0xf3;
    assert_eq!(
        t.op(HVM_OP, 0, &param(DOMID_SELF, HVM_PARAM_CALLBACK_IRQ, via)),
        0
    );
    assert_eq!(t.xen.upcall_vector(0), None);
    t.put(t.si(), &[1]);
    assert_eq!(t.xen.upcall_vector(0), Some(0xf3));
    assert_eq!(
        t.xen.upcall_vector(0),
        Some(0xf3),
        "level: again until cleared"
    );
    t.put(t.si(), &[0]);
    assert_eq!(t.xen.upcall_vector(0), None);
    // A GSI callback (type 0) is not vector delivery.
    assert_eq!(
        t.op(HVM_OP, 0, &param(DOMID_SELF, HVM_PARAM_CALLBACK_IRQ, 5)),
        0
    );
    t.put(t.si(), &[1]);
    assert_eq!(t.xen.upcall_vector(0), None);
}

#[test]
fn event_channel_ops_and_delivery() {
    let mut t = setup();
    t.op(
        HVM_OP,
        0,
        &param(DOMID_SELF, HVM_PARAM_CALLBACK_IRQ, (2 << 56) | 0xf3),
    );
    // bind_virq {virq, vcpu, OUT port}
    assert_eq!(t.evtchn(1, &le(&[VIRQ_TIMER, 0, 0])), 0);
    let timer = t.u32(ARG + 8);
    assert!(timer > 0);
    assert_eq!(t.evtchn(1, &le(&[VIRQ_TIMER, 0, 0])), -EEXIST);
    assert_eq!(t.evtchn(1, &le(&[1, 3, 0])), -ENOENT, "no vCPU 3");
    // bind_ipi {vcpu, OUT port}
    assert_eq!(t.evtchn(7, &le(&[0, 0])), 0);
    let ipi = t.u32(ARG + 4);
    // Unmask the IPI and send on it: pending, sel, upcall.
    assert_eq!(t.evtchn(9, &le(&[ipi])), 0);
    assert_eq!(t.evtchn(4, &le(&[ipi])), 0);
    let si = t.si();
    assert_ne!(t.u64(si + EVTCHN_PENDING) & (1 << ipi), 0);
    assert_ne!(t.u64(si + PENDING_SEL) & 1, 0);
    assert_eq!(t.xen.upcall_vector(0), Some(0xf3));
    // status {dom, port, OUT status, vcpu, ...}
    assert_eq!(t.evtchn(5, &le(&[u32::from(DOMID_SELF), ipi])), 0);
    assert_eq!(t.u32(ARG + 8), 5, "EVTCHNSTAT_ipi");
    // alloc_unbound {dom, remote_dom, OUT port} for domain 0.
    assert_eq!(t.evtchn(6, &le(&[u32::from(DOMID_SELF), 0])), 0);
    let unbound = t.u32(ARG + 4);
    assert_eq!(t.evtchn(5, &le(&[u32::from(DOMID_SELF), unbound])), 0);
    assert_eq!(t.u32(ARG + 8), 1, "EVTCHNSTAT_unbound");
    // The backend binds it, the guest sends: Keel sees the kick.
    assert!(t.xen.bind_backend(EvtchnPort(unbound)));
    assert_eq!(t.evtchn(4, &le(&[unbound])), 0);
    assert!(t.xen.take_kick(EvtchnPort(unbound)));
    // The backend notifies: masked (all ports start masked) until unmask.
    t.xen.notify(EvtchnPort(unbound));
    let word = u64::from(unbound / 64) * 8;
    assert_ne!(t.u64(si + EVTCHN_PENDING + word) & (1 << (unbound % 64)), 0);
    assert_ne!(t.u64(si + EVTCHN_MASK + word) & (1 << (unbound % 64)), 0);
    // bind_vcpu, close; bad ports.
    assert_eq!(t.evtchn(8, &le(&[unbound, 0])), 0);
    assert_eq!(
        t.evtchn(8, &le(&[ipi, 0])),
        -EINVAL,
        "IPIs stay on their vCPU"
    );
    assert_eq!(t.evtchn(3, &le(&[unbound])), 0);
    assert_eq!(t.evtchn(4, &le(&[unbound])), -EINVAL, "closed");
    t.xen.notify(EvtchnPort(unbound)); // ignored, no panic
    assert_eq!(t.evtchn(3, &le(&[unbound])), -EINVAL, "closed twice");
    for bad in [0, NR_PORTS, u32::MAX] {
        assert_eq!(t.evtchn(3, &le(&[bad])), -EINVAL);
        assert_eq!(t.evtchn(4, &le(&[bad])), -EINVAL);
        t.xen.notify(EvtchnPort(bad));
    }
    for bad in [NR_PORTS, u32::MAX] {
        assert_eq!(t.evtchn(9, &le(&[bad])), -EINVAL);
        assert_eq!(t.evtchn(5, &le(&[u32::from(DOMID_SELF), bad])), -EINVAL);
    }
    // Port 0 is Xen's reserved port: status says closed, unmask clears
    // its mask bit (evtchn_status, evtchn_unmask take every valid port).
    assert_eq!(t.evtchn(5, &le(&[u32::from(DOMID_SELF), 0])), 0);
    assert_eq!(t.u32(ARG + 8), 0, "EVTCHNSTAT_closed");
    assert_eq!(t.evtchn(9, &le(&[0])), 0);
    assert_eq!(t.u64(si + EVTCHN_MASK) & 1, 0);
    assert_eq!(t.call(EVENT_CHANNEL_OP, [4, RAM, 0, 0, 0]), -EFAULT);
}

#[test]
fn timers_raise_virq_timer() {
    let mut t = setup();
    t.evtchn(1, &le(&[VIRQ_TIMER, 0, 0]));
    let port = t.u32(ARG + 8);
    t.evtchn(9, &le(&[port]));
    let si = t.si();
    // Single-shot at system time 5 ms.
    let mut arg = 5_000_000u64.to_le_bytes().to_vec();
    arg.extend_from_slice(&le(&[1, 0]));
    assert_eq!(t.vop(8, &arg), 0);
    assert_eq!(t.xen.next_deadline_ns(), Some(1_000 + 5_000_000));
    t.clock.advance(4_000_000);
    t.xen.service();
    assert_eq!(t.u64(si + EVTCHN_PENDING) & (1 << port), 0);
    t.clock.advance(1_000_000);
    t.xen.service();
    assert_ne!(t.u64(si + EVTCHN_PENDING) & (1 << port), 0);
    assert_eq!(t.xen.next_deadline_ns(), None);
    // In the past with VCPU_SSHOTTMR_future: -ETIME; without: fires next service.
    let mut past = 1u64.to_le_bytes().to_vec();
    past.extend_from_slice(&le(&[1, 0]));
    assert_eq!(t.vop(8, &past), -ETIME);
    let mut past = 1u64.to_le_bytes().to_vec();
    past.extend_from_slice(&le(&[0, 0]));
    assert_eq!(t.vop(8, &past), 0);
    assert_eq!(t.vop(9, &[]), 0);
    assert_eq!(t.xen.next_deadline_ns(), None);
    // Periodic, 10 ms; below 1 ms refused.
    assert_eq!(t.vop(6, &10_000_000u64.to_le_bytes()), 0);
    assert!(t.xen.next_deadline_ns().is_some());
    assert_eq!(t.vop(6, &1000u64.to_le_bytes()), -EINVAL);
    assert_eq!(t.vop(7, &[]), 0);
    assert_eq!(t.xen.next_deadline_ns(), None);
    // set_timer_op: absolute system time, 0 cancels.
    assert_eq!(t.call(SET_TIMER_OP, [50_000_000, 0, 0, 0, 0]), 0);
    assert!(t.xen.next_deadline_ns().is_some());
    assert_eq!(t.call(SET_TIMER_OP, [0, 0, 0, 0, 0]), 0);
    assert_eq!(t.xen.next_deadline_ns(), None);
    // No such vCPU.
    assert_eq!(t.call(VCPU_OP, [8, 1, ARG, 0, 0]), -ENOENT);
}

#[test]
fn vcpu_info_runstate_and_time_areas() {
    let mut t = setup();
    // register_vcpu_info {mfn, offset, rsvd}
    let mut arg = 0x20u64.to_le_bytes().to_vec();
    arg.extend_from_slice(&le(&[0x40, 0]));
    t.put(ARG, &arg);
    assert_eq!(t.call(VCPU_OP, [10, 0, ARG, 0, 0]), 0);
    let vi = 0x20 * 4096 + 0x40;
    assert_eq!(t.u32(vi + 32) & 1, 0, "time version even");
    assert_eq!(t.u64(vi + 40), 12345, "tsc_timestamp");
    assert_eq!(t.call(VCPU_OP, [10, 0, ARG, 0, 0]), -EINVAL, "only once");
    // Events now go to the registered vcpu_info.
    t.evtchn(7, &le(&[0, 0]));
    let ipi = t.u32(ARG + 4);
    t.evtchn(9, &le(&[ipi]));
    t.evtchn(4, &le(&[ipi]));
    assert_eq!(t.u64(vi + PENDING_SEL), 1);
    // Offset past the page.
    let mut t = setup();
    let mut arg = 0x20u64.to_le_bytes().to_vec();
    arg.extend_from_slice(&le(&[4040, 0]));
    t.put(ARG, &arg);
    assert_eq!(t.call(VCPU_OP, [10, 0, ARG, 0, 0]), -EINVAL);
    // Runstate and time areas at linear addresses.
    t.put(ARG, &0x9000u64.to_le_bytes());
    assert_eq!(t.call(VCPU_OP, [5, 0, ARG, 0, 0]), 0);
    assert_eq!(t.u32(0x9000), 0, "RUNSTATE_running");
    assert_eq!(t.call(VCPU_OP, [13, 0, ARG, 0, 0]), 0);
    assert_eq!(t.u32(0x9000), 2);
    assert_eq!(t.u64(0x9008), 12345);
    t.put(ARG, &RAM.to_le_bytes());
    assert_eq!(t.call(VCPU_OP, [5, 0, ARG, 0, 0]), -EFAULT);
}

#[test]
fn sched_op_shutdown_goes_through_power_control() {
    for (reason, want) in [
        (0u32, Some(PowerRequest::GuestPowerOff)),
        (1, Some(PowerRequest::Reset)),
        (
            3,
            Some(PowerRequest::Stop {
                reason: "the guest crashed (Xen SCHEDOP_shutdown, SHUTDOWN_crash)",
            }),
        ),
    ] {
        let mut t = setup();
        assert_eq!(t.op(SCHED_OP, 2, &le(&[reason])), 0);
        assert_eq!(t.power.take(), want);
    }
    let mut t = setup();
    assert_eq!(t.op(SCHED_OP, 2, &le(&[2])), -ENOSYS, "suspend");
    assert_eq!(t.op(SCHED_OP, 2, &le(&[77])), -EINVAL);
    assert_eq!(t.power.take(), None);
    assert_eq!(t.call(SCHED_OP, [0, 0, 0, 0, 0]), 0, "yield");
    assert_eq!(t.call(SCHED_OP, [3, ARG, 0, 0, 0]), 0, "poll");
}

#[test]
fn grant_table_ops_v1_only() {
    let mut t = setup();
    // query_size {dom, OUT nr_frames, max_nr_frames, status}
    t.put(
        ARG,
        &[
            0xf0, 0x7f, 0, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
        ],
    );
    assert_eq!(t.call(GRANT_TABLE_OP, [6, ARG, 1, 0, 0]), 0);
    assert_eq!(t.u32(ARG + 4), 1);
    assert_eq!(t.u32(ARG + 8), 32);
    assert_eq!(t.u32(ARG + 12) & 0xffff, 0, "GNTST_okay");
    // set_version 1 ok, 2 refused; get_version says 1.
    t.put(ARG, &le(&[1]));
    assert_eq!(t.call(GRANT_TABLE_OP, [8, ARG, 1, 0, 0]), 0);
    // Xen with v2 disabled: 2 is -ENOSYS, other versions -EINVAL; the
    // version in force is written back either way (gnttab_set_version).
    t.put(ARG, &le(&[2]));
    assert_eq!(t.call(GRANT_TABLE_OP, [8, ARG, 1, 0, 0]), -ENOSYS);
    assert_eq!(t.u32(ARG), 1);
    for v in [0, 3, u32::MAX] {
        t.put(ARG, &le(&[v]));
        assert_eq!(t.call(GRANT_TABLE_OP, [8, ARG, 1, 0, 0]), -EINVAL);
        assert_eq!(t.u32(ARG), 1);
    }
    t.put(ARG, &le(&[0x7ff0, 0]));
    assert_eq!(t.call(GRANT_TABLE_OP, [10, ARG, 1, 0, 0]), 0);
    assert_eq!(t.u32(ARG + 4), 1);
    assert_eq!(t.call(GRANT_TABLE_OP, [6, RAM, 1, 0, 0]), -EFAULT);
    // A huge count is bounded (16 entries, all inside RAM here).
    assert_eq!(t.call(GRANT_TABLE_OP, [10, ARG, u64::MAX, 0, 0]), 0);
}

/// Xen's x86 hvm_allow_get_param / hvm_allow_set_param and hvmop_*_param:
/// an index past HVM_NR_PARAMS is -EINVAL before the domain is looked at,
/// another domain -ESRCH, a deprecated parameter -EINVAL, one the guest
/// may not touch -EPERM (Keel answered -EINVAL for all of them).
#[test]
fn hvm_params_follow_xens_guest_permissions() {
    let mut t = setup();
    for cmd in [0, 1] {
        assert_eq!(t.op(HVM_OP, cmd, &param(DOMID_SELF, 39, 0)), -EINVAL);
        assert_eq!(t.op(HVM_OP, cmd, &param(5, 39, 0)), -EINVAL, "index first");
        assert_eq!(t.op(HVM_OP, cmd, &param(5, 1, 0)), -3, "-ESRCH");
        assert_eq!(t.op(HVM_OP, cmd, &param(DOMID_SELF, 4, 0)), -EINVAL);
        assert_eq!(t.op(HVM_OP, cmd, &param(DOMID_SELF, 30, 0)), -EINVAL);
        // IDENT_PT, ACPI_S_STATE, VIRIDIAN: the toolstack's.
        for index in [12, 14, 9] {
            assert_eq!(t.op(HVM_OP, cmd, &param(DOMID_SELF, index, 1)), -EPERM);
        }
    }
    // Readable, not settable: the store and console pages.
    for index in [HVM_PARAM_STORE_PFN, HVM_PARAM_CONSOLE_PFN] {
        assert_eq!(t.op(HVM_OP, 0, &param(DOMID_SELF, index, 0x10)), -EPERM);
        assert_eq!(t.op(HVM_OP, 1, &param(DOMID_SELF, index, 0)), 0);
        assert_ne!(t.u64(ARG + 8), 0x10);
    }
    // Readable and settable on Xen, not offered by Keel: reads 0, sets -ENOSYS.
    t.put(ARG, &param(DOMID_SELF, 36, 0xdead));
    assert_eq!(t.call(HVM_OP, [1, ARG, 0, 0, 0]), 0);
    assert_eq!(t.u64(ARG + 8), 0, "X87_FIP_WIDTH never set");
    assert_eq!(t.op(HVM_OP, 0, &param(DOMID_SELF, 36, 8)), -ENOSYS);
    assert_eq!(
        t.op(HVM_OP, 0, &param(DOMID_SELF, HVM_PARAM_STORE_EVTCHN, 9)),
        -ENOSYS
    );
}

/// add_to_physmap where the VMM cannot show a page (past the address
/// width, over the local APIC, at the last gpfn there is): -EINVAL as Xen's
/// p2m answers a frame past its width, and no map change. Keel answered 0
/// and queued a change the VMM then refused, so the guest lost its shared
/// info; at the last gpfn, `gpa + 4096` overflowed (a panic in a debug
/// build).
#[test]
fn add_to_physmap_refuses_frames_the_vmm_cannot_map() {
    let mut t = setup();
    assert_eq!(t.op(MEMORY_OP, 7, &physmap(DOMID_SELF, 0, 0, 0x10)), 0);
    t.map.take();
    for gpfn in [
        GPA_LIMIT / 4096,
        GPA_LIMIT / 4096 + 7,
        0xfee00,
        0x000f_ffff_ffff_ffff,
    ] {
        for (space, idx) in [(0, 0), (1, 3)] {
            assert_eq!(
                t.op(MEMORY_OP, 7, &physmap(DOMID_SELF, space, idx, gpfn)),
                -EINVAL,
                "space {space} at gpfn {gpfn:#x}"
            );
        }
    }
    assert!(t.map.take().is_empty(), "nothing moved");
    // The last page below the limit is fine.
    assert_eq!(
        t.op(
            MEMORY_OP,
            7,
            &physmap(DOMID_SELF, 1, 0, GPA_LIMIT / 4096 - 1)
        ),
        0
    );
    assert_eq!(t.map.take().len(), 1);
    // register_vcpu_info at the last gpfn: -EINVAL, no overflow.
    let mut arg = 0x000f_ffff_ffff_ffffu64.to_le_bytes().to_vec();
    arg.extend_from_slice(&le(&[0, 0]));
    assert_eq!(t.vop(10, &arg), -EINVAL);
}

/// Guest memory that answers at every linear address (reads give 0xff),
/// so the hypercalls reach the offsets they add to the guest's pointers.
struct AnyAddress;
impl LinearMemory for AnyAddress {
    fn read_linear(&mut self, _la: u64, buf: &mut [u8]) -> bool {
        buf.fill(0xff);
        true
    }
    fn write_linear(&mut self, _la: u64, _data: &[u8]) -> bool {
        true
    }
}

/// Pointers at the top of the address space: the offsets into the
/// argument wrap as the guest's own accesses would, with no overflow (a
/// panic in a debug build: `arg + 4` in xen_version, hvm_op,
/// event_channel_op and grant_table_op).
#[test]
fn pointers_at_the_top_of_the_address_space_wrap() {
    let mut t = setup();
    for nr in [
        MEMORY_OP,
        XEN_VERSION,
        GRANT_TABLE_OP,
        VCPU_OP,
        SCHED_OP,
        EVENT_CHANNEL_OP,
        HVM_OP,
    ] {
        for cmd in 0..16 {
            for arg in [u64::MAX, u64::MAX - 3, u64::MAX - 7, u64::MAX - 15] {
                let c = Hypercall {
                    vcpu: 0,
                    nr,
                    args: [cmd, arg, arg, u64::MAX, u64::MAX],
                    guest_tsc: 1,
                };
                let r = t.xen.hypercall(&c, &mut AnyAddress);
                assert!(r <= (4 << 16) | 17, "{nr} {cmd} {arg:#x}: {r}");
            }
        }
    }
}
