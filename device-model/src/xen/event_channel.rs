//! Event channels, 2-level ABI (public/event_channel.h, public/xen.h):
//! the port table Keel keeps and the pending/mask bits it sets in the
//! guest's shared-info page.
//!
//! Raising a port (Xen's evtchn_2l_set_pending): set its bit in
//! `evtchn_pending`; if it was clear and the port is not masked, set the
//! port's word in the vCPU's `evtchn_pending_sel`; if that was clear, set
//! `evtchn_upcall_pending`. Unmasking re-checks a pending port the same
//! way. The upcall itself is the callback vector ([`super::Xen`]).

use guest_memory::GuestMemory;

use super::shared_info::{EVTCHN_MASK, EVTCHN_PENDING, PENDING_SEL, UPCALL_PENDING};
use super::{DomId, EvtchnPort, BACKEND_DOMID};

/// Ports of the 2-level ABI on x86-64: 64 words of 64 bits.
pub const NR_PORTS: u32 = 4096;
/// Virtual IRQs (public/xen.h NR_VIRQS).
pub const NR_VIRQS: u32 = 24;
/// VIRQ_TIMER: the vCPU's timer (public/xen.h).
pub const VIRQ_TIMER: u32 = 0;

/// EVTCHNSTAT_* (public/event_channel.h).
pub const STAT_CLOSED: u32 = 0;
pub const STAT_UNBOUND: u32 = 1;
pub const STAT_INTERDOMAIN: u32 = 2;
pub const STAT_VIRQ: u32 = 4;
pub const STAT_IPI: u32 = 5;

/// What a guest port is bound to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Binding {
    Free,
    /// alloc_unbound: waiting for `remote` (Keel as [`BACKEND_DOMID`]) to bind.
    Unbound {
        remote: DomId,
    },
    /// Connected to a Keel backend (xenstore, blkback, netback).
    Interdomain,
    Virq(u32),
    Ipi,
}

/// Why an event-channel operation failed, as Xen's errno.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EvtchnError {
    /// -EINVAL: port out of range, closed, or the wrong kind.
    Invalid,
    /// -ENOSPC: every port is in use.
    NoSpace,
    /// -EEXIST: the VIRQ is already bound.
    Exists,
    /// -ENOENT: no such vCPU.
    NoVcpu,
}

impl EvtchnError {
    pub fn errno(self) -> i64 {
        match self {
            EvtchnError::Invalid => -super::hypercall::EINVAL,
            EvtchnError::NoSpace => -super::hypercall::ENOSPC,
            EvtchnError::Exists => -super::hypercall::EEXIST,
            EvtchnError::NoVcpu => -super::hypercall::ENOENT,
        }
    }
}

/// The guest's ports and where their bits live.
pub struct EventChannels {
    /// Indexed by port; allocated once with the VM.
    ports: alloc::vec::Vec<(Binding, u32)>,
    virqs: [Option<u32>; NR_VIRQS as usize],
    /// Ports the guest sent on toward Keel (EVTCHNOP_send on an
    /// interdomain port), one bit per port, for the backends to take.
    kicks: [u64; (NR_PORTS / 64) as usize],
    vcpus: u32,
}

impl EventChannels {
    pub fn new(vcpus: u32) -> Self {
        EventChannels {
            ports: alloc::vec![(Binding::Free, 0); NR_PORTS as usize],
            virqs: [None; NR_VIRQS as usize],
            kicks: [0; (NR_PORTS / 64) as usize],
            vcpus: vcpus.max(1),
        }
    }

    /// Every port closed (a machine reset).
    pub fn reset(&mut self) {
        self.ports.fill((Binding::Free, 0));
        self.virqs = [None; NR_VIRQS as usize];
        self.kicks = [0; (NR_PORTS / 64) as usize];
    }

    fn slot(&self, port: u32) -> Result<(Binding, u32), EvtchnError> {
        if port == 0 {
            return Err(EvtchnError::Invalid);
        }
        self.ports
            .get(port as usize)
            .copied()
            .ok_or(EvtchnError::Invalid)
    }

    fn alloc(&mut self, binding: Binding, vcpu: u32) -> Result<u32, EvtchnError> {
        let port = (1..NR_PORTS)
            .find(|&p| self.ports[p as usize].0 == Binding::Free)
            .ok_or(EvtchnError::NoSpace)?;
        self.ports[port as usize] = (binding, vcpu);
        Ok(port)
    }

    /// What `port` is bound to and on which vCPU.
    pub fn binding(&self, port: u32) -> Option<(Binding, u32)> {
        self.slot(port).ok()
    }

    /// The vCPU whose `vcpu_info` `port` notifies, for any port of the
    /// 2-level ABI: port 0 (reserved, never raised) and closed ports
    /// included, as EVTCHNOP_unmask takes them all.
    pub fn notify_vcpu(&self, port: u32) -> Result<u32, EvtchnError> {
        if port == 0 {
            return Ok(0);
        }
        self.slot(port).map(|(_, vcpu)| vcpu)
    }

    /// EVTCHNOP_alloc_unbound for `remote`.
    pub fn alloc_unbound(&mut self, remote: DomId) -> Result<u32, EvtchnError> {
        self.alloc(Binding::Unbound { remote }, 0)
    }

    /// A port Keel binds at creation (the xenstore's): interdomain from
    /// the start, as xenstored's channel is for a new domain.
    pub fn alloc_interdomain(&mut self) -> Result<u32, EvtchnError> {
        self.alloc(Binding::Interdomain, 0)
    }

    /// A backend binds the guest's unbound `port` (the frontend's
    /// `event-channel` key): it must be unbound for [`BACKEND_DOMID`].
    pub fn bind_backend(&mut self, port: u32) -> Result<(), EvtchnError> {
        match self.slot(port)? {
            (Binding::Unbound { remote }, vcpu) if remote == BACKEND_DOMID => {
                self.ports[port as usize] = (Binding::Interdomain, vcpu);
                Ok(())
            }
            _ => Err(EvtchnError::Invalid),
        }
    }

    /// EVTCHNOP_bind_virq.
    pub fn bind_virq(&mut self, virq: u32, vcpu: u32) -> Result<u32, EvtchnError> {
        if virq >= NR_VIRQS {
            return Err(EvtchnError::Invalid);
        }
        if vcpu >= self.vcpus {
            return Err(EvtchnError::NoVcpu);
        }
        if self.virqs[virq as usize].is_some() {
            return Err(EvtchnError::Exists);
        }
        let port = self.alloc(Binding::Virq(virq), vcpu)?;
        self.virqs[virq as usize] = Some(port);
        Ok(port)
    }

    /// EVTCHNOP_bind_ipi.
    pub fn bind_ipi(&mut self, vcpu: u32) -> Result<u32, EvtchnError> {
        if vcpu >= self.vcpus {
            return Err(EvtchnError::NoVcpu);
        }
        self.alloc(Binding::Ipi, vcpu)
    }

    /// EVTCHNOP_close: a port that is already closed is -EINVAL (Xen's
    /// evtchn_close of ECS_FREE).
    pub fn close(&mut self, port: u32) -> Result<(), EvtchnError> {
        match self.slot(port)? {
            (Binding::Free, _) => return Err(EvtchnError::Invalid),
            (Binding::Virq(v), _) => self.virqs[v as usize] = None,
            _ => {}
        }
        self.ports[port as usize] = (Binding::Free, 0);
        self.kicks[(port / 64) as usize] &= !(1 << (port % 64));
        Ok(())
    }

    /// EVTCHNOP_bind_vcpu: only VIRQs (global ones) and interdomain ports move.
    pub fn bind_vcpu(&mut self, port: u32, vcpu: u32) -> Result<(), EvtchnError> {
        if vcpu >= self.vcpus {
            return Err(EvtchnError::NoVcpu);
        }
        match self.slot(port)? {
            (Binding::Free, _) | (Binding::Ipi, _) => Err(EvtchnError::Invalid),
            (b, _) => {
                self.ports[port as usize] = (b, vcpu);
                Ok(())
            }
        }
    }

    /// EVTCHNOP_status: (status, vcpu, the union's first word). Port 0 is
    /// a port Xen reserves: closed.
    pub fn status(&self, port: u32) -> Result<(u32, u32, u32), EvtchnError> {
        if port == 0 {
            return Ok((STAT_CLOSED, 0, 0));
        }
        let (b, vcpu) = self.slot(port)?;
        Ok(match b {
            Binding::Free => (STAT_CLOSED, 0, 0),
            Binding::Unbound { remote } => (STAT_UNBOUND, vcpu, u32::from(remote)),
            Binding::Interdomain => (STAT_INTERDOMAIN, vcpu, u32::from(BACKEND_DOMID)),
            Binding::Virq(v) => (STAT_VIRQ, vcpu, v),
            Binding::Ipi => (STAT_IPI, vcpu, 0),
        })
    }

    /// The port VIRQ `virq` is bound to, and its vCPU.
    pub fn virq_port(&self, virq: u32) -> Option<(u32, u32)> {
        let port = (*self.virqs.get(virq as usize)?)?;
        Some((port, self.ports[port as usize].1))
    }

    /// EVTCHNOP_send from the guest: an IPI port is raised on its vCPU
    /// (returned), an interdomain one is handed to Keel's backend.
    pub fn send(&mut self, port: u32) -> Result<Option<u32>, EvtchnError> {
        match self.slot(port)? {
            (Binding::Ipi, vcpu) => Ok(Some(vcpu)),
            (Binding::Interdomain, _) => {
                self.kicks[(port / 64) as usize] |= 1 << (port % 64);
                Ok(None)
            }
            // Sending on an unbound port is allowed and goes nowhere.
            (Binding::Unbound { .. }, _) => Ok(None),
            _ => Err(EvtchnError::Invalid),
        }
    }

    /// Whether the guest sent on `port` since the last call (the backend's
    /// notification), clearing it.
    pub fn take_kick(&mut self, port: EvtchnPort) -> bool {
        let p = port.0;
        if p >= NR_PORTS {
            return false;
        }
        let (w, bit) = ((p / 64) as usize, 1u64 << (p % 64));
        let was = self.kicks[w] & bit != 0;
        self.kicks[w] &= !bit;
        was
    }
}

fn read_u64(m: &GuestMemory, gpa: u64) -> u64 {
    let mut b = [0u8; 8];
    let _ = m.read(gpa, &mut b);
    u64::from_le_bytes(b)
}

fn write_u64(m: &GuestMemory, gpa: u64, v: u64) {
    let _ = m.write(gpa, &v.to_le_bytes());
}

/// Sets `bit` in the u64 at `gpa`; returns whether it was already set.
fn test_and_set(m: &GuestMemory, gpa: u64, bit: u32) -> bool {
    let v = read_u64(m, gpa);
    write_u64(m, gpa, v | (1 << bit));
    v & (1 << bit) != 0
}

/// Marks `port` pending in the shared-info page at `shared_info`, and the
/// upcall in the `vcpu_info` at `vcpu_info` as the 2-level ABI says.
/// Returns whether `evtchn_upcall_pending` went from 0 to 1 (the vCPU needs
/// a kick). `port` below [`NR_PORTS`].
pub fn set_pending(m: &GuestMemory, shared_info: u64, vcpu_info: u64, port: u32) -> bool {
    let (word, bit) = (port / 64, port % 64);
    if test_and_set(m, shared_info + EVTCHN_PENDING + 8 * u64::from(word), bit) {
        return false;
    }
    if read_u64(m, shared_info + EVTCHN_MASK + 8 * u64::from(word)) & (1 << bit) != 0 {
        return false;
    }
    mark_word(m, vcpu_info, word)
}

fn mark_word(m: &GuestMemory, vcpu_info: u64, word: u32) -> bool {
    if test_and_set(m, vcpu_info + PENDING_SEL, word) {
        return false;
    }
    let mut up = [0u8];
    let _ = m.read(vcpu_info + UPCALL_PENDING, &mut up);
    let _ = m.write(vcpu_info + UPCALL_PENDING, &[1]);
    up[0] == 0
}

/// EVTCHNOP_unmask: clears the mask bit; a port still pending then upcalls
/// as if just raised. Returns whether the upcall went from 0 to 1.
pub fn unmask(m: &GuestMemory, shared_info: u64, vcpu_info: u64, port: u32) -> bool {
    let (word, bit) = (port / 64, port % 64);
    let mask_at = shared_info + EVTCHN_MASK + 8 * u64::from(word);
    let mask = read_u64(m, mask_at);
    write_u64(m, mask_at, mask & !(1 << bit));
    let pending = read_u64(m, shared_info + EVTCHN_PENDING + 8 * u64::from(word));
    mask & (1 << bit) != 0 && pending & (1 << bit) != 0 && mark_word(m, vcpu_info, word)
}

/// Whether the `vcpu_info` at `vcpu_info` has `evtchn_upcall_pending` set.
pub fn upcall_pending(m: &GuestMemory, vcpu_info: u64) -> bool {
    let mut up = [0u8];
    m.read(vcpu_info + UPCALL_PENDING, &mut up).is_ok() && up[0] != 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SI: u64 = 0x1000;
    const VI: u64 = SI;

    #[test]
    fn pending_sets_word_and_upcall_once() {
        let m = GuestMemory::new(0x2000);
        assert!(set_pending(&m, SI, VI, 70));
        assert_eq!(read_u64(&m, SI + EVTCHN_PENDING + 8), 1 << 6);
        assert_eq!(read_u64(&m, VI + PENDING_SEL), 1 << 1);
        assert!(upcall_pending(&m, VI));
        // Already pending: nothing new.
        assert!(!set_pending(&m, SI, VI, 70));
        // Another port in the same word: sel already set, no new upcall.
        assert!(!set_pending(&m, SI, VI, 71));
        // Guest cleared upcall_pending and pending_sel but not the port bit:
        // a new port in another word upcalls again.
        m.write(VI, &[0]).unwrap();
        write_u64(&m, VI + PENDING_SEL, 0);
        assert!(set_pending(&m, SI, VI, 3));
        assert_eq!(read_u64(&m, VI + PENDING_SEL), 1);
    }

    #[test]
    fn masked_port_waits_for_unmask() {
        let m = GuestMemory::new(0x2000);
        write_u64(&m, SI + EVTCHN_MASK, 1 << 5);
        assert!(!set_pending(&m, SI, VI, 5));
        assert_eq!(
            read_u64(&m, SI + EVTCHN_PENDING),
            1 << 5,
            "pending still recorded"
        );
        assert!(!upcall_pending(&m, VI));
        assert!(unmask(&m, SI, VI, 5));
        assert_eq!(read_u64(&m, SI + EVTCHN_MASK), 0);
        assert!(upcall_pending(&m, VI));
        // Unmasking a port that is not pending upcalls nothing.
        m.write(VI, &[0]).unwrap();
        write_u64(&m, VI + PENDING_SEL, 0);
        write_u64(&m, SI + EVTCHN_MASK + 8, 1);
        assert!(!unmask(&m, SI, VI, 64));
        assert!(!upcall_pending(&m, VI));
    }

    #[test]
    fn port_table_binds_and_refuses() {
        let mut e = EventChannels::new(1);
        let p = e.bind_virq(VIRQ_TIMER, 0).unwrap();
        assert_eq!(p, 1);
        assert_eq!(e.bind_virq(VIRQ_TIMER, 0), Err(EvtchnError::Exists));
        assert_eq!(e.bind_virq(NR_VIRQS, 0), Err(EvtchnError::Invalid));
        assert_eq!(e.bind_virq(1, 1), Err(EvtchnError::NoVcpu));
        assert_eq!(e.virq_port(VIRQ_TIMER), Some((1, 0)));
        let ipi = e.bind_ipi(0).unwrap();
        assert_eq!(e.send(ipi), Ok(Some(0)));
        let u = e.alloc_unbound(BACKEND_DOMID).unwrap();
        assert_eq!(e.status(u), Ok((STAT_UNBOUND, 0, 0)));
        assert_eq!(e.send(u), Ok(None));
        e.bind_backend(u).unwrap();
        assert_eq!(e.status(u).unwrap().0, STAT_INTERDOMAIN);
        assert_eq!(e.send(u), Ok(None));
        assert!(e.take_kick(EvtchnPort(u)));
        assert!(!e.take_kick(EvtchnPort(u)));
        e.close(p).unwrap();
        assert_eq!(e.virq_port(VIRQ_TIMER), None);
        assert_eq!(e.status(p), Ok((STAT_CLOSED, 0, 0)));
        assert_eq!(e.send(p), Err(EvtchnError::Invalid));
        // Xen's evtchn_close of a free port: -EINVAL.
        assert_eq!(e.close(p), Err(EvtchnError::Invalid), "closed twice");
        for bad in [0, NR_PORTS, u32::MAX] {
            assert_eq!(e.close(bad), Err(EvtchnError::Invalid));
            assert_eq!(e.send(bad), Err(EvtchnError::Invalid));
        }
        for bad in [NR_PORTS, u32::MAX] {
            assert_eq!(e.status(bad), Err(EvtchnError::Invalid));
            assert_eq!(e.notify_vcpu(bad), Err(EvtchnError::Invalid));
        }
        // Port 0 is reserved, not out of range: closed, and unmask takes it.
        assert_eq!(e.status(0), Ok((STAT_CLOSED, 0, 0)));
        assert_eq!(e.notify_vcpu(0), Ok(0));
        assert!(!e.take_kick(EvtchnPort(u32::MAX)));
        // A backend may only bind a port unbound for domain 0.
        let other = e.alloc_unbound(7).unwrap();
        assert_eq!(e.bind_backend(other), Err(EvtchnError::Invalid));
    }

    #[test]
    fn ports_run_out_with_enospc() {
        let mut e = EventChannels::new(1);
        for _ in 1..NR_PORTS {
            e.bind_ipi(0).unwrap();
        }
        assert_eq!(e.bind_ipi(0), Err(EvtchnError::NoSpace));
        assert_eq!(EvtchnError::NoSpace.errno(), -28);
    }
}
