//! Xen hypercalls an HVM guest makes (public/xen.h numbers), over the
//! [`Xen`] state. The exit layer (vmm-core, exit/xen.rs) decodes the
//! calling convention, refuses CPL > 0 with -EPERM and hands the number and
//! five arguments here; pointers in the arguments are guest linear
//! addresses, read and written through [`LinearMemory`].
//!
//! Results are Xen's: 0 or a value, or a negative errno; -ENOSYS for every
//! hypercall and sub-op Keel does not offer.

use guest_memory::LinearMemory;

use super::event_channel::{self, EvtchnError};
use super::grant_table::MAX_GRANT_FRAMES;
use super::shared_info::{self, TimeInfo, PAGE_SIZE, RUNSTATE_INFO_SIZE, VCPU_INFO_SIZE};
use super::{Xen, BACKEND_DOMID, GUEST_DOMID};
use crate::power::PowerRequest;

// errno values Xen returns (public/errno.h).
pub const EPERM: i64 = 1;
pub const ENOENT: i64 = 2;
pub const EFAULT: i64 = 14;
pub const EEXIST: i64 = 17;
pub const EINVAL: i64 = 22;
pub const ENOSPC: i64 = 28;
pub const ENOSYS: i64 = 38;
pub const ETIME: i64 = 62;

// Hypercall numbers (public/xen.h __HYPERVISOR_*).
pub const MEMORY_OP: u64 = 12;
pub const SET_TIMER_OP: u64 = 15;
pub const XEN_VERSION: u64 = 17;
pub const CONSOLE_IO: u64 = 18;
pub const GRANT_TABLE_OP: u64 = 20;
pub const VM_ASSIST: u64 = 21;
pub const VCPU_OP: u64 = 24;
pub const SCHED_OP: u64 = 29;
pub const EVENT_CHANNEL_OP: u64 = 32;
pub const PHYSDEV_OP: u64 = 33;
pub const HVM_OP: u64 = 34;
/// Stubs in the hypercall page (one per number).
pub const HYPERCALL_PAGE_STUBS: u64 = 128;

/// The version Keel reports (CPUID base+1 and XENVER_version).
pub const XEN_MAJOR: u32 = 4;
pub const XEN_MINOR: u32 = 17;

// XENVER_* (public/version.h).
const XENVER_VERSION: u64 = 0;
const XENVER_EXTRAVERSION: u64 = 1;
const XENVER_CAPABILITIES: u64 = 3;
const XENVER_GET_FEATURES: u64 = 6;
const XENVER_PAGESIZE: u64 = 7;
// XENFEAT_* (public/features.h).
pub const XENFEAT_WRITABLE_PAGE_TABLES: u32 = 0;
pub const XENFEAT_AUTO_TRANSLATED_PHYSMAP: u32 = 2;
pub const XENFEAT_HVM_CALLBACK_VECTOR: u32 = 8;
pub const XENFEAT_HVM_SAFE_PVCLOCK: u32 = 9;
/// Submap 0 of XENVER_get_features (not hvm_pirqs: no PIRQs offered).
pub const FEATURES: u32 = (1 << XENFEAT_WRITABLE_PAGE_TABLES)
    | (1 << XENFEAT_AUTO_TRANSLATED_PHYSMAP)
    | (1 << XENFEAT_HVM_CALLBACK_VECTOR)
    | (1 << XENFEAT_HVM_SAFE_PVCLOCK);

// memory_op (public/memory.h).
const XENMEM_ADD_TO_PHYSMAP: u64 = 7;
const MEMOP_CMD_MASK: u64 = 0x3f;
const XENMAPSPACE_SHARED_INFO: u32 = 0;
const XENMAPSPACE_GRANT_TABLE: u32 = 1;
/// `idx` bit of XENMAPSPACE_grant_table asking for a v2 status frame.
const XENMAPIDX_GRANT_TABLE_STATUS: u64 = 1 << 31;
/// DOMID_SELF (public/xen.h).
pub const DOMID_SELF: u16 = 0x7ff0;

// hvm_op (public/hvm/hvm_op.h, params.h).
const HVMOP_SET_PARAM: u64 = 0;
const HVMOP_GET_PARAM: u64 = 1;
pub const HVM_PARAM_CALLBACK_IRQ: u32 = 0;
pub const HVM_PARAM_STORE_PFN: u32 = 1;
pub const HVM_PARAM_STORE_EVTCHN: u32 = 2;
pub const HVM_PARAM_CONSOLE_PFN: u32 = 17;
pub const HVM_PARAM_CONSOLE_EVTCHN: u32 = 18;
/// Parameters 0..HVM_NR_PARAMS exist (Xen 4.17); an index past them is -EINVAL.
pub const HVM_NR_PARAMS: u32 = 39;
/// What a guest may read of itself (x86 hvm_allow_get_param): the callback
/// IRQ, VM86_TSS(_SIZED), ACPI_IOPORTS_LOCATION, VM_GENERATION_ID_ADDR, the
/// store and console pages and ports, ALTP2M, X87_FIP_WIDTH. The rest is
/// the toolstack's: -EPERM.
const HVM_PARAMS_GUEST_READS: [u32; 11] = [0, 15, 37, 19, 34, 1, 2, 17, 18, 35, 36];
/// What a guest may set of itself (x86 hvm_allow_set_param); the rest is
/// -EPERM.
const HVM_PARAMS_GUEST_SETS: [u32; 8] = [0, 15, 37, 19, 34, 2, 18, 36];
/// Deprecated parameters, -EINVAL either way: PAE_ENABLED, DM_DOMAIN, the
/// MEMORY_EVENT_* ones, NESTEDHVM, BUFIOREQ_EVTCHN.
const HVM_PARAMS_DEPRECATED: [u32; 10] = [4, 13, 20, 21, 22, 23, 24, 25, 26, 30];

// vcpu_op (public/vcpu.h).
const VCPUOP_IS_UP: u64 = 3;
const VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA: u64 = 5;
const VCPUOP_SET_PERIODIC_TIMER: u64 = 6;
const VCPUOP_STOP_PERIODIC_TIMER: u64 = 7;
const VCPUOP_SET_SINGLESHOT_TIMER: u64 = 8;
const VCPUOP_STOP_SINGLESHOT_TIMER: u64 = 9;
const VCPUOP_REGISTER_VCPU_INFO: u64 = 10;
const VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA: u64 = 13;
const VCPU_SSHOTTMR_FUTURE: u32 = 1;

// event_channel_op (public/event_channel.h).
const EVTCHNOP_BIND_VIRQ: u64 = 1;
const EVTCHNOP_CLOSE: u64 = 3;
const EVTCHNOP_SEND: u64 = 4;
const EVTCHNOP_STATUS: u64 = 5;
const EVTCHNOP_ALLOC_UNBOUND: u64 = 6;
const EVTCHNOP_BIND_IPI: u64 = 7;
const EVTCHNOP_BIND_VCPU: u64 = 8;
const EVTCHNOP_UNMASK: u64 = 9;
const EVTCHNOP_RESET: u64 = 10;

// sched_op (public/sched.h).
const SCHEDOP_YIELD: u64 = 0;
const SCHEDOP_BLOCK: u64 = 1;
const SCHEDOP_SHUTDOWN: u64 = 2;
const SCHEDOP_POLL: u64 = 3;
pub const SHUTDOWN_POWEROFF: u32 = 0;
pub const SHUTDOWN_REBOOT: u32 = 1;
pub const SHUTDOWN_CRASH: u32 = 3;
pub const SHUTDOWN_WATCHDOG: u32 = 4;

// grant_table_op (public/grant_table.h).
const GNTTABOP_QUERY_SIZE: u64 = 6;
const GNTTABOP_SET_VERSION: u64 = 8;
const GNTTABOP_GET_VERSION: u64 = 10;
/// Entries of a batched grant-table op handled per call.
const MAX_GNTTAB_BATCH: u64 = 16;

/// One hypercall as the exit layer decoded it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hypercall {
    pub vcpu: u32,
    pub nr: u64,
    pub args: [u64; 5],
    /// The guest's TSC at the exit (the PV clock's timestamp).
    pub guest_tsc: u64,
}

type Res = Result<i64, i64>;

fn rd<const N: usize>(mem: &mut dyn LinearMemory, la: u64) -> Result<[u8; N], i64> {
    let mut b = [0u8; N];
    if mem.read_linear(la, &mut b) {
        Ok(b)
    } else {
        Err(-EFAULT)
    }
}

fn wr(mem: &mut dyn LinearMemory, la: u64, data: &[u8]) -> Result<(), i64> {
    if mem.write_linear(la, data) {
        Ok(())
    } else {
        Err(-EFAULT)
    }
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes([b[at], b[at + 1]])
}
fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut x = [0u8; 8];
    x.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(x)
}

fn evtchn(r: Result<u32, EvtchnError>) -> Result<u32, i64> {
    r.map_err(EvtchnError::errno)
}

impl Xen {
    /// Runs hypercall `call`; the value for the guest's RAX.
    pub fn hypercall(&mut self, call: &Hypercall, mem: &mut dyn LinearMemory) -> i64 {
        let [a0, a1, a2, _, _] = call.args;
        let r = match call.nr {
            XEN_VERSION => self.xen_version(a0, a1, mem),
            MEMORY_OP => self.memory_op(call, a0, a1, mem),
            HVM_OP => self.hvm_op(a0, a1, mem),
            VCPU_OP => self.vcpu_op(call, a0, a1, a2, mem),
            EVENT_CHANNEL_OP => self.event_channel_op(a0, a1, mem),
            SCHED_OP => self.sched_op(a0, a1, mem),
            GRANT_TABLE_OP => self.grant_table_op(a0, a1, a2, mem),
            SET_TIMER_OP => {
                self.set_singleshot(call.vcpu, a0);
                Ok(0)
            }
            nr => {
                if nr >= HYPERCALL_PAGE_STUBS || !matches!(nr, PHYSDEV_OP | CONSOLE_IO | VM_ASSIST)
                {
                    self.log(format_args!("Xen hypercall {nr} is not offered: -ENOSYS"));
                }
                Err(-ENOSYS)
            }
        };
        r.unwrap_or_else(|e| e)
    }

    fn xen_version(&mut self, cmd: u64, arg: u64, mem: &mut dyn LinearMemory) -> Res {
        match cmd {
            XENVER_VERSION => Ok(i64::from((XEN_MAJOR << 16) | XEN_MINOR)),
            XENVER_EXTRAVERSION => {
                let mut s = [0u8; 16];
                s[..6].copy_from_slice(b".0-kee");
                s[6] = b'l';
                wr(mem, arg, &s).map(|_| 0)
            }
            XENVER_CAPABILITIES => {
                let mut s = [0u8; 1024];
                let caps = b"hvm-3.0-x86_32 hvm-3.0-x86_32p hvm-3.0-x86_64";
                s[..caps.len()].copy_from_slice(caps);
                wr(mem, arg, &s).map(|_| 0)
            }
            XENVER_GET_FEATURES => {
                // struct xen_feature_info { u32 submap_idx; u32 submap; }
                let b: [u8; 8] = rd(mem, arg)?;
                let submap = if u32_at(&b, 0) == 0 { FEATURES } else { 0 };
                wr(mem, arg.wrapping_add(4), &submap.to_le_bytes()).map(|_| 0)
            }
            XENVER_PAGESIZE => Ok(PAGE_SIZE as i64),
            _ => Err(-ENOSYS),
        }
    }

    fn memory_op(
        &mut self,
        call: &Hypercall,
        cmd: u64,
        arg: u64,
        mem: &mut dyn LinearMemory,
    ) -> Res {
        if cmd & MEMOP_CMD_MASK != XENMEM_ADD_TO_PHYSMAP {
            return Err(-ENOSYS);
        }
        // struct xen_add_to_physmap { domid_t domid; u16 size; u32 space;
        // xen_ulong_t idx; xen_pfn_t gpfn; }
        let b: [u8; 24] = rd(mem, arg)?;
        let domid = u16_at(&b, 0);
        if domid != DOMID_SELF && domid != GUEST_DOMID {
            return Err(-ESRCH_OR_PERM);
        }
        let (space, idx, gpfn) = (u32_at(&b, 4), u64_at(&b, 8), u64_at(&b, 16));
        let gpa = gpfn.checked_mul(PAGE_SIZE).ok_or(-EINVAL)?;
        // Past the address width or where the VMM never remaps: -EINVAL,
        // as Xen's p2m answers a frame past its width. Keel's own pages
        // cannot be moved over themselves either.
        if !self.limits.allows(gpa) || (gpa < self.pages.end() && self.pages.base <= gpa) {
            return Err(-EINVAL);
        }
        match space {
            XENMAPSPACE_SHARED_INFO if idx == 0 => {
                if let Some(old) = self.shared_info_at.replace(gpa) {
                    self.restore(old);
                }
                self.place(gpa, self.pages.shared_info());
                // Each vCPU's slot carries the PV clock from the start
                // (Xen keeps vcpu_info.time current; Linux reads it for the
                // TSC rate before it registers a vcpu_info of its own and
                // divides by tsc_to_system_mul). The TSC's rate is constant,
                // so one record stays valid.
                let t = self.time_info(call.guest_tsc);
                for v in 0..self.vcpus {
                    let slot = self.pages.shared_info() + u64::from(v) * VCPU_INFO_SIZE;
                    shared_info::write_time_info(&self.memory, slot + shared_info::VCPU_TIME, &t);
                }
                Ok(0)
            }
            XENMAPSPACE_GRANT_TABLE
                if idx & XENMAPIDX_GRANT_TABLE_STATUS == 0 && idx < u64::from(MAX_GRANT_FRAMES) =>
            {
                if let Some(old) = self.grant_at[idx as usize].replace(gpa) {
                    self.restore(old);
                }
                self.place(gpa, self.pages.grant_frame(idx as u32));
                Ok(0)
            }
            _ => Err(-EINVAL),
        }
    }

    fn hvm_op(&mut self, cmd: u64, arg: u64, mem: &mut dyn LinearMemory) -> Res {
        if cmd != HVMOP_SET_PARAM && cmd != HVMOP_GET_PARAM {
            return Err(-ENOSYS);
        }
        // struct xen_hvm_param { domid_t domid; u16 pad; u32 index; u64 value; }
        let b: [u8; 16] = rd(mem, arg)?;
        let (domid, index, value) = (u16_at(&b, 0), u32_at(&b, 4), u64_at(&b, 8));
        // Xen's order: the index, then the domain, then what the guest
        // may do with the parameter (x86 hvm_allow_{get,set}_param).
        if index >= HVM_NR_PARAMS {
            return Err(-EINVAL);
        }
        if domid != DOMID_SELF && domid != GUEST_DOMID {
            return Err(-ESRCH_OR_PERM);
        }
        if HVM_PARAMS_DEPRECATED.contains(&index) {
            return Err(-EINVAL);
        }
        if cmd == HVMOP_SET_PARAM {
            return match index {
                HVM_PARAM_CALLBACK_IRQ => {
                    self.callback_via = value;
                    Ok(0)
                }
                // The guest may set these on Xen; Keel does not offer them.
                _ if HVM_PARAMS_GUEST_SETS.contains(&index) => Err(-ENOSYS),
                _ => Err(-EPERM),
            };
        }
        let v = match index {
            HVM_PARAM_CALLBACK_IRQ => self.callback_via,
            HVM_PARAM_STORE_PFN => self.pages.store() / PAGE_SIZE,
            HVM_PARAM_STORE_EVTCHN => u64::from(self.store_evtchn),
            HVM_PARAM_CONSOLE_PFN => self.pages.console() / PAGE_SIZE,
            HVM_PARAM_CONSOLE_EVTCHN => u64::from(self.console_evtchn),
            // Readable, never set by anyone: 0, as on Xen.
            _ if HVM_PARAMS_GUEST_READS.contains(&index) => 0,
            _ => return Err(-EPERM),
        };
        wr(mem, arg.wrapping_add(8), &v.to_le_bytes()).map(|_| 0)
    }

    fn time_info(&self, guest_tsc: u64) -> TimeInfo {
        TimeInfo {
            tsc_timestamp: guest_tsc,
            system_time: self.system_time(),
            scale: self.scale,
        }
    }

    fn set_singleshot(&mut self, vcpu: u32, system_ns: u64) {
        if let Some(t) = self.singleshot.get_mut(vcpu as usize) {
            *t = (system_ns != 0).then(|| self.boot_ns.saturating_add(system_ns));
        }
    }

    fn vcpu_op(
        &mut self,
        call: &Hypercall,
        cmd: u64,
        vcpu: u64,
        arg: u64,
        mem: &mut dyn LinearMemory,
    ) -> Res {
        if vcpu >= u64::from(self.vcpus) {
            return Err(-ENOENT);
        }
        let v = vcpu as usize;
        match cmd {
            VCPUOP_IS_UP => Ok(1),
            VCPUOP_REGISTER_VCPU_INFO => {
                // struct vcpu_register_vcpu_info { u64 mfn; u32 offset; u32 rsvd; }
                let b: [u8; 16] = rd(mem, arg)?;
                let (gfn, offset) = (u64_at(&b, 0), u64::from(u32_at(&b, 8)));
                let gpa = gfn.checked_mul(PAGE_SIZE).ok_or(-EINVAL)?;
                if offset + VCPU_INFO_SIZE > PAGE_SIZE
                    || gpa >= self.pages.base
                    || self.vcpu_info[v].is_some()
                {
                    return Err(-EINVAL);
                }
                let _ = self.memory.fill(gpa + offset, VCPU_INFO_SIZE as usize, 0);
                self.vcpu_info[v] = Some(gpa + offset);
                let t = self.time_info(call.guest_tsc);
                shared_info::write_time_info(
                    &self.memory,
                    gpa + offset + shared_info::VCPU_TIME,
                    &t,
                );
                Ok(0)
            }
            VCPUOP_REGISTER_RUNSTATE_MEMORY_AREA => {
                let b: [u8; 8] = rd(mem, arg)?;
                let la = u64_at(&b, 0);
                if la != 0 {
                    // RUNSTATE_running since system time 0; no steal.
                    let mut r = [0u8; RUNSTATE_INFO_SIZE];
                    r[16..24].copy_from_slice(&self.system_time().to_le_bytes());
                    wr(mem, la, &r)?;
                }
                Ok(0)
            }
            VCPUOP_REGISTER_VCPU_TIME_MEMORY_AREA => {
                let b: [u8; 8] = rd(mem, arg)?;
                let la = u64_at(&b, 0);
                if la != 0 {
                    let t = self.time_info(call.guest_tsc);
                    let mut rec = [0u8; shared_info::VCPU_TIME_INFO_SIZE];
                    rec[0..4].copy_from_slice(&2u32.to_le_bytes());
                    rec[8..16].copy_from_slice(&t.tsc_timestamp.to_le_bytes());
                    rec[16..24].copy_from_slice(&t.system_time.to_le_bytes());
                    rec[24..28].copy_from_slice(&t.scale.mul.to_le_bytes());
                    rec[28] = t.scale.shift as u8;
                    rec[29] = shared_info::PVCLOCK_TSC_STABLE;
                    wr(mem, la, &rec)?;
                }
                Ok(0)
            }
            VCPUOP_SET_PERIODIC_TIMER => {
                let b: [u8; 8] = rd(mem, arg)?;
                let period = u64_at(&b, 0);
                // Xen's floor: 1 ms.
                if period < 1_000_000 {
                    return Err(-EINVAL);
                }
                self.periodic[v] = Some((self.clock.now_ns().saturating_add(period), period));
                Ok(0)
            }
            VCPUOP_STOP_PERIODIC_TIMER => {
                self.periodic[v] = None;
                Ok(0)
            }
            VCPUOP_SET_SINGLESHOT_TIMER => {
                // struct vcpu_set_singleshot_timer { u64 timeout_abs_ns; u32 flags; }
                let b: [u8; 16] = rd(mem, arg)?;
                let (timeout, flags) = (u64_at(&b, 0), u32_at(&b, 8));
                if flags & VCPU_SSHOTTMR_FUTURE != 0 && timeout < self.system_time() {
                    return Err(-ETIME);
                }
                self.singleshot[v] = Some(self.boot_ns.saturating_add(timeout));
                Ok(0)
            }
            VCPUOP_STOP_SINGLESHOT_TIMER => {
                self.singleshot[v] = None;
                Ok(0)
            }
            _ => Err(-ENOSYS),
        }
    }

    fn event_channel_op(&mut self, cmd: u64, arg: u64, mem: &mut dyn LinearMemory) -> Res {
        let si = self.pages.shared_info();
        match cmd {
            EVTCHNOP_BIND_VIRQ => {
                let b: [u8; 12] = rd(mem, arg)?;
                let port = evtchn(self.events.bind_virq(u32_at(&b, 0), u32_at(&b, 4)))?;
                wr(mem, arg.wrapping_add(8), &port.to_le_bytes()).map(|_| 0)
            }
            EVTCHNOP_BIND_IPI => {
                let b: [u8; 8] = rd(mem, arg)?;
                let port = evtchn(self.events.bind_ipi(u32_at(&b, 0)))?;
                wr(mem, arg.wrapping_add(4), &port.to_le_bytes()).map(|_| 0)
            }
            EVTCHNOP_ALLOC_UNBOUND => {
                // struct evtchn_alloc_unbound { domid_t dom, remote_dom; u32 port; }
                let b: [u8; 8] = rd(mem, arg)?;
                let (dom, remote) = (u16_at(&b, 0), u16_at(&b, 2));
                if dom != DOMID_SELF && dom != GUEST_DOMID {
                    return Err(-ESRCH_OR_PERM);
                }
                let remote = if remote == DOMID_SELF {
                    GUEST_DOMID
                } else {
                    remote
                };
                let port = evtchn(self.events.alloc_unbound(remote))?;
                wr(mem, arg.wrapping_add(4), &port.to_le_bytes()).map(|_| 0)
            }
            EVTCHNOP_CLOSE => {
                let b: [u8; 4] = rd(mem, arg)?;
                evtchn(self.events.close(u32_at(&b, 0)).map(|_| 0)).map(i64::from)
            }
            EVTCHNOP_SEND => {
                let b: [u8; 4] = rd(mem, arg)?;
                let port = u32_at(&b, 0);
                match self.events.send(port) {
                    Ok(Some(_ipi_vcpu)) => {
                        self.raise(port);
                        Ok(0)
                    }
                    Ok(None) => Ok(0),
                    Err(e) => Err(e.errno()),
                }
            }
            EVTCHNOP_STATUS => {
                // struct evtchn_status { domid_t dom; u32 port; OUT u32
                // status; OUT u32 vcpu; union {...} u; }
                let b: [u8; 8] = rd(mem, arg)?;
                let dom = u16_at(&b, 0);
                if dom != DOMID_SELF && dom != GUEST_DOMID {
                    return Err(-ESRCH_OR_PERM);
                }
                let (status, v, u) = self
                    .events
                    .status(u32_at(&b, 4))
                    .map_err(EvtchnError::errno)?;
                let mut out = [0u8; 16];
                out[0..4].copy_from_slice(&status.to_le_bytes());
                out[4..8].copy_from_slice(&v.to_le_bytes());
                out[8..12].copy_from_slice(&u.to_le_bytes());
                if status == event_channel::STAT_INTERDOMAIN {
                    // {domid_t dom; u32 port}: Keel's end has the same number.
                    out[8..12].copy_from_slice(&u32::from(BACKEND_DOMID).to_le_bytes());
                    out[12..16].copy_from_slice(&u32_at(&b, 4).to_le_bytes());
                }
                wr(mem, arg.wrapping_add(8), &out).map(|_| 0)
            }
            EVTCHNOP_BIND_VCPU => {
                let b: [u8; 8] = rd(mem, arg)?;
                evtchn(
                    self.events
                        .bind_vcpu(u32_at(&b, 0), u32_at(&b, 4))
                        .map(|_| 0),
                )
                .map(i64::from)
            }
            EVTCHNOP_UNMASK => {
                let b: [u8; 4] = rd(mem, arg)?;
                let port = u32_at(&b, 0);
                let pv = evtchn(self.events.notify_vcpu(port))?;
                event_channel::unmask(&self.memory, si, self.vcpu_info_gpa(pv), port);
                Ok(0)
            }
            EVTCHNOP_RESET => Err(-ENOSYS),
            // FIFO ABI (init_control, expand_array, set_priority) and the
            // rest: Linux falls back to 2-level.
            _ => Err(-ENOSYS),
        }
    }

    fn sched_op(&mut self, cmd: u64, arg: u64, mem: &mut dyn LinearMemory) -> Res {
        match cmd {
            // One vCPU per host CPU: nothing to yield to. Poll may wake
            // spuriously (public/sched.h), so it returns at once.
            SCHEDOP_YIELD | SCHEDOP_BLOCK | SCHEDOP_POLL => Ok(0),
            SCHEDOP_SHUTDOWN => {
                let b: [u8; 4] = rd(mem, arg)?;
                let request = match u32_at(&b, 0) {
                    SHUTDOWN_POWEROFF => PowerRequest::GuestPowerOff,
                    SHUTDOWN_REBOOT => PowerRequest::Reset,
                    SHUTDOWN_CRASH => PowerRequest::Stop {
                        reason: "the guest crashed (Xen SCHEDOP_shutdown, SHUTDOWN_crash)",
                    },
                    SHUTDOWN_WATCHDOG => PowerRequest::Stop {
                        reason:
                            "the guest's watchdog fired (Xen SCHEDOP_shutdown, SHUTDOWN_watchdog)",
                    },
                    // suspend, soft_reset: not offered.
                    2 | 5 => return Err(-ENOSYS),
                    _ => return Err(-EINVAL),
                };
                self.power.request(request);
                Ok(0)
            }
            _ => Err(-ENOSYS),
        }
    }

    fn grant_table_op(
        &mut self,
        cmd: u64,
        arg: u64,
        count: u64,
        mem: &mut dyn LinearMemory,
    ) -> Res {
        let size = match cmd {
            GNTTABOP_QUERY_SIZE => 16,
            GNTTABOP_SET_VERSION | GNTTABOP_GET_VERSION => 8,
            _ => return Err(-ENOSYS),
        };
        for i in 0..count.min(MAX_GNTTAB_BATCH) {
            let at = arg.wrapping_add(i * size);
            match cmd {
                GNTTABOP_QUERY_SIZE => {
                    // {domid_t dom; OUT u32 nr_frames, max_nr_frames; OUT i16 status}
                    let nr = self.grant_at.iter().filter(|g| g.is_some()).count() as u32;
                    let mut out = [0u8; 10];
                    out[0..4].copy_from_slice(&nr.max(1).to_le_bytes());
                    out[4..8].copy_from_slice(&MAX_GRANT_FRAMES.to_le_bytes());
                    wr(mem, at.wrapping_add(4), &out)?;
                }
                GNTTABOP_SET_VERSION => {
                    let b: [u8; 4] = rd(mem, at)?;
                    // Version 1 only; the version in force is written back.
                    // Xen with v2 disabled answers a request for 2 as if
                    // set_version did not exist (-ENOSYS), anything else
                    // but 1 with -EINVAL (gnttab_set_version).
                    wr(mem, at, &1u32.to_le_bytes())?;
                    match u32_at(&b, 0) {
                        1 => {}
                        2 => return Err(-ENOSYS),
                        _ => return Err(-EINVAL),
                    }
                }
                _ => wr(mem, at.wrapping_add(4), &1u32.to_le_bytes())?,
            }
        }
        Ok(0)
    }
}

/// -ESRCH: a domain id other than the caller's own.
const ESRCH_OR_PERM: i64 = 3;

#[cfg(test)]
mod tests;
