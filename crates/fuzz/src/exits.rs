//! The exits target: `handle_exit` with random exits on a fake vCPU.
//!
//! A quarter of the seeds run the VM's Xen personality (xl.cfg
//! `xen_platform_pci`): Xen's CPUID leaves and hypercall-page MSR, and
//! VMCALL/VMMCALL exits that go through vmm-core's calling conventions to
//! device-model's hypercall dispatch over a real [`Xen`] state, with
//! hypercall numbers, sub-ops and argument blocks a hostile guest would
//! choose. Besides the target's checks (no panic, bounded heap, bounded
//! device calls per exit), each hypercall makes a bounded number of
//! guest-memory accesses, and every guest-physical map change it queues is
//! one the VMM can make ([`PhysmapLimits`]).
//!
//! The local APIC's MSRs (IA32_APIC_BASE, IA32_TSC_DEADLINE, the x2APIC
//! registers 800H-8FFH) and the Hyper-V APIC access MSRs reach a real
//! [`PcInterruptRouter`] of two local APICs, as in Keel's machine; three
//! seeds in four put vCPU 0's APIC in x2APIC mode first.

use std::sync::Arc;

use device_model::interrupt::{LapicConfig, PcInterruptRouter};
use device_model::xen::hypercall::{
    Hypercall, EVENT_CHANNEL_OP, GRANT_TABLE_OP, HVM_OP, MEMORY_OP, SCHED_OP, SET_TIMER_OP,
    VCPU_OP, XEN_VERSION,
};
use device_model::xen::{PhysmapLimits, Xen, XenPages};
use device_model::{FakeClock, MemoryMapQueue, PowerControl, PowerRequest};
use guest_memory::{GuestMemory, LinearMemory, MemoryMapChange};
use vmm_core::exit::{
    handle_exit, AccessKind, CpuidPolicy, CpuidResult, CrAccess, CrOperand, HvFeatures, HyperV,
    IoDirection, IoExit, MsrOutcome, Platform, StringIo, VmPolicy,
};
use vmm_core::vcpu::fake::FakeVcpu;
use vmm_core::{Event, ExitAction, Gpr, Segment, VmExit};
use x86_emul::rng::Rng;

use crate::{interesting, set_case, HeapWatch, CASES_PER_SEED};

/// Guest RAM behind the fake platform.
const RAM_SIZE: usize = 1 << 20;
/// Device calls one exit may make: the emulator's REP limit (1024
/// iterations per exit, `x86_emul::Limits`) times the two accesses of a
/// string move, with room to spare. More means a guest-chosen loop in the
/// exit path.
const MAX_DEVICE_CALLS_PER_EXIT: u64 = 4 * 1024;

/// Guest-memory accesses one Xen hypercall may make: a grant-table batch
/// of 16 entries reads and writes each (32), with room to spare. More
/// means a guest-chosen count reached a loop.
const MAX_XEN_ACCESSES: u64 = 64;
/// Bytes one Xen hypercall may copy (XENVER_capabilities writes 1 KiB).
const MAX_XEN_BYTES: u64 = 8 << 10;
/// The hypercall page's MSR (CPUID 0x4000_0002 EBX under Xen).
const XEN_HYPERCALL_MSR: u32 = 0x4000_0000;
/// Where a Xen seed keeps identity page tables for 64-bit hypercalls
/// (PML4, PDPT, PD: one 2 MiB page over all of RAM), below Keel's pages.
const XEN_PML4: u64 = 0xd_0000;
/// The hypercalls Keel offers with the sub-ops it implements (public/*.h),
/// and three it answers -ENOSYS for (console_io, vm_assist, physdev_op).
const XEN_CALLS: &[(u64, &[u64])] = &[
    (MEMORY_OP, &[7]),
    (SET_TIMER_OP, &[0]),
    (XEN_VERSION, &[0, 1, 3, 6, 7]),
    (GRANT_TABLE_OP, &[6, 8, 10]),
    (VCPU_OP, &[3, 5, 6, 7, 8, 9, 10, 13]),
    (SCHED_OP, &[0, 1, 2, 3]),
    (EVENT_CHANNEL_OP, &[1, 3, 4, 5, 6, 7, 8, 9]),
    (HVM_OP, &[0, 1]),
    (18, &[0]),
    (21, &[0]),
    (33, &[0]),
];

/// Xen's state behind a Xen seed's platform, with what it hands the VM loop.
struct XenState {
    xen: Xen,
    map: MemoryMapQueue,
    power: PowerControl,
    clock: Arc<FakeClock>,
    limits: PhysmapLimits,
}

/// A platform whose devices answer randomly, over random RAM; with the Xen
/// personality, hypercalls reach a real [`Xen`]; the APIC MSRs reach real
/// local APICs.
struct FuzzPlatform {
    ram: GuestMemory,
    apics: PcInterruptRouter,
    rng: Rng,
    device_calls: u64,
    cr8: u64,
    xen: Option<XenState>,
    /// Hypercalls that reached the Xen state, those it answered with 0 or
    /// more, and which numbers (below 128) it answered.
    xen_calls: u64,
    xen_answered: u64,
    xen_numbers: u128,
    /// x2APIC register MSR accesses (800H-8FFH) the local APIC model
    /// carried out, and those it refused with #GP.
    x2apic_done: u64,
    x2apic_refused: u64,
    /// Port accesses run ahead after port I/O exits (`Platform::ran_ahead`).
    ran_ahead: u64,
}

impl FuzzPlatform {
    /// Counts an x2APIC register access's outcome.
    fn count_x2apic<T, E>(&mut self, msr: u32, result: &Result<T, E>) {
        if (0x800..=0x8ff).contains(&msr) {
            match result {
                Ok(_) => self.x2apic_done += 1,
                Err(_) => self.x2apic_refused += 1,
            }
        }
    }
}

/// The hypercall's view of guest memory, counted.
struct CountedMemory<'a> {
    inner: &'a mut dyn LinearMemory,
    accesses: u64,
    bytes: u64,
}

impl LinearMemory for CountedMemory<'_> {
    fn read_linear(&mut self, la: u64, buf: &mut [u8]) -> bool {
        self.accesses += 1;
        self.bytes += buf.len() as u64;
        self.inner.read_linear(la, buf)
    }
    fn write_linear(&mut self, la: u64, data: &[u8]) -> bool {
        self.accesses += 1;
        self.bytes += data.len() as u64;
        self.inner.write_linear(la, data)
    }
}

impl Platform for FuzzPlatform {
    fn pio_read(&mut self, _port: u16, size: u8) -> u32 {
        self.device_calls += 1;
        let mask = u32::MAX >> (32 - 8 * u32::from(size.clamp(1, 4)));
        self.rng.next() as u32 & mask
    }
    fn pio_write(&mut self, _port: u16, _size: u8, _value: u32) {
        self.device_calls += 1;
    }
    // Every port I/O exit runs ahead over what follows it in random RAM.
    fn may_run_ahead(&self) -> bool {
        true
    }
    fn ran_ahead(&mut self, ports: &[u16]) {
        self.ran_ahead += ports.len() as u64;
    }
    fn mmio_read(&mut self, _gpa: u64, data: &mut [u8]) {
        self.device_calls += 1;
        for b in data {
            *b = self.rng.next() as u8;
        }
    }
    fn mmio_write(&mut self, _gpa: u64, _data: &[u8]) {
        self.device_calls += 1;
    }
    fn memory(&self) -> &GuestMemory {
        &self.ram
    }
    fn host_tsc(&self) -> u64 {
        self.rng.0
    }
    fn cr8(&mut self, _vcpu: u32) -> u64 {
        self.cr8
    }
    fn set_cr8(&mut self, _vcpu: u32, value: u64) {
        self.cr8 = value;
    }
    fn apic_register(&mut self, vcpu: u32, offset: u64, write: Option<u64>) -> Option<u64> {
        self.device_calls += 1;
        self.apics.apic_register(vcpu, offset, write)
    }
    fn msr_read(&mut self, vcpu: u32, msr: u32) -> Option<MsrOutcome> {
        if PcInterruptRouter::handles_msr(msr) {
            let value = match msr {
                IA32_APIC_BASE => self.apics.apic_base(vcpu).ok_or(()),
                IA32_TSC_DEADLINE => self.apics.tsc_deadline(vcpu).map_err(|_| ()),
                _ => self.apics.x2apic_read(vcpu, msr).map_err(|_| ()),
            };
            self.count_x2apic(msr, &value);
            return Some(value.map_or(MsrOutcome::GeneralProtection, MsrOutcome::Done));
        }
        match self.rng.below(8) {
            0 => Some(MsrOutcome::Done(self.rng.next())),
            1 => Some(MsrOutcome::GeneralProtection),
            _ => None,
        }
    }
    fn msr_write(&mut self, vcpu: u32, msr: u32, value: u64) -> Option<MsrOutcome> {
        if PcInterruptRouter::handles_msr(msr) {
            let result = match msr {
                IA32_APIC_BASE => self.apics.set_apic_base(vcpu, value),
                IA32_TSC_DEADLINE => self.apics.set_tsc_deadline(vcpu, value),
                _ => self.apics.x2apic_write(vcpu, msr, value),
            };
            self.count_x2apic(msr, &result);
            return Some(match result {
                Ok(()) => MsrOutcome::Done(0),
                Err(_) => MsrOutcome::GeneralProtection,
            });
        }
        self.msr_read(vcpu, msr).map(|o| match o {
            MsrOutcome::Done(_) => MsrOutcome::Done(0),
            gp => gp,
        })
    }
    fn xen_hypercall(
        &mut self,
        vcpu: u32,
        nr: u64,
        args: [u64; 5],
        guest_tsc: u64,
        memory: &mut dyn LinearMemory,
    ) -> i64 {
        let Some(x) = self.xen.as_mut() else {
            return -38;
        };
        self.xen_calls += 1;
        let mut counted = CountedMemory {
            inner: memory,
            accesses: 0,
            bytes: 0,
        };
        let call = Hypercall {
            vcpu,
            nr,
            args,
            guest_tsc,
        };
        let result = x.xen.hypercall(&call, &mut counted);
        assert!(
            counted.accesses <= MAX_XEN_ACCESSES && counted.bytes <= MAX_XEN_BYTES,
            "{call:?} made {} guest-memory accesses of {} bytes",
            counted.accesses,
            counted.bytes
        );
        if result >= 0 {
            self.xen_answered += 1;
            if nr < 128 {
                self.xen_numbers |= 1 << nr;
            }
        }
        result
    }
}

/// What the cases of one seed led to: the generator must reach the
/// handler's interesting paths, or the pass tests little.
#[derive(Debug, Default)]
struct Stats {
    /// Exits the emulator completed (MMIO or string I/O, RIP moved, no stop).
    emulated: u64,
    injected: u64,
    stopped: u64,
    /// Xen seeds: hypercalls that reached device-model's dispatch, those
    /// answered with 0 or more, how many distinct numbers were answered,
    /// and hypercall-page MSR writes that wrote the page.
    xen_calls: u64,
    xen_answered: u64,
    xen_numbers: u32,
    xen_page_writes: u64,
    /// x2APIC register MSR accesses the local APIC model carried out and
    /// refused.
    x2apic_done: u64,
    x2apic_refused: u64,
    /// Port accesses run ahead after port I/O exits.
    ran_ahead: u64,
}

pub(crate) fn run(rng: &mut Rng) {
    run_cases(rng);
}

fn run_cases(rng: &mut Rng) -> Stats {
    let mut stats = Stats::default();
    let mut ram = vec![0u8; RAM_SIZE];
    for chunk in ram.chunks_mut(8) {
        chunk.copy_from_slice(&rng.next().to_le_bytes());
    }
    let host_cpuid = CpuidResult {
        eax: rng.next() as u32,
        ebx: rng.next() as u32,
        ecx: rng.next() as u32,
        edx: rng.next() as u32,
    };
    let mut policy = VmPolicy::new(
        CpuidPolicy::from_host(1, |leaf, _| match leaf {
            // GenuineIntel or AuthenticAMD, so both vendors' MSR tables are fuzzed.
            0 if host_cpuid.eax & 1 == 0 => CpuidResult {
                eax: 0x20,
                ebx: 0x756e_6547,
                edx: 0x4965_6e69,
                ecx: 0x6c65_746e,
            },
            0 => CpuidResult {
                eax: 0x20,
                ebx: 0x6874_7541,
                edx: 0x6974_6e65,
                ecx: 0x444d_4163,
            },
            0x8000_0000 => CpuidResult {
                eax: leaf + 0x20,
                ..host_cpuid
            },
            _ => host_cpuid,
        }),
        rng.next(),
    );
    // A quarter of the seeds have Xen's personality; half the others
    // offer Hyper-V's enlightenments, some groups or all (never both: one
    // personality per VM).
    let xen = rng.below(4) == 0;
    if xen {
        policy = policy.with_hyperv(HyperV::xen(host_cpuid.eax & 1 != 0));
    } else if rng.below(2) == 0 {
        let bits = rng.next();
        let features = HvFeatures {
            base: true,
            freq: bits & 1 != 0,
            time_ref_count: bits & 2 != 0,
            reference_tsc: bits & 4 != 0,
        };
        let (tsc_hz, base) = (interesting(rng), rng.next());
        policy = policy.with_hyperv(HyperV::new(
            features,
            bits & 8 != 0,
            1,
            tsc_hz,
            1 << 30,
            base,
        ));
    }
    let mut vcpu = random_vcpu(rng);
    // The APICs offer what CPUID does, as in Keel's machine.
    let lapic = LapicConfig {
        x2apic: policy.cpuid.offers_x2apic(),
        tsc_deadline: false,
        ..LapicConfig::default()
    };
    let mut apics = PcInterruptRouter::new(2, lapic, FakeClock::new(rng.below(1 << 40)));
    if rng.below(4) != 0 {
        // EN and EXTD: x2APIC mode, so the x2APIC MSRs answer.
        let _ = apics.set_apic_base(0, 0xfee0_0000 | (1 << 11) | (1 << 10));
    }
    let mut platform = FuzzPlatform {
        ram: {
            let memory = GuestMemory::new(RAM_SIZE);
            memory.write(0, &ram).expect("RAM_SIZE bytes fit");
            memory
        },
        apics,
        rng: Rng(rng.next() | 1),
        device_calls: 0,
        cr8: 0,
        xen: None,
        xen_calls: 0,
        xen_answered: 0,
        xen_numbers: 0,
        x2apic_done: 0,
        x2apic_refused: 0,
        ran_ahead: 0,
    };
    if xen {
        platform.xen = Some(xen_state(rng, &platform.ram));
        // Most Xen guests write the hypercall page first.
        if rng.below(4) != 0 {
            let page = rng.below(RAM_SIZE as u64 / 0x1000) << 12;
            let _ = policy
                .hyperv
                .write(XEN_HYPERCALL_MSR, page, &vcpu, &mut platform);
        }
    } else if rng.below(4) != 0 {
        // Most Hyper-V seeds enable the hypercall page, so hypercalls get answers.
        let page = rng.below(RAM_SIZE as u64 / 0x1000) << 12;
        let _ = policy.hyperv.write(0x4000_0000, 1, &vcpu, &mut platform);
        let _ = policy
            .hyperv
            .write(0x4000_0001, page | 1, &vcpu, &mut platform);
    }
    for case in 0..CASES_PER_SEED {
        set_case(case);
        let heap = HeapWatch::start();
        // The vCPU lives on across cases, as in a VM; now and then the guest
        // changes mode or registers, and it rewrites the code at RIP.
        if rng.below(8) == 0 {
            vcpu = random_vcpu(rng);
        }
        for _ in 0..rng.below(4) {
            vcpu.gprs[rng.below(16) as usize] = interesting(rng);
        }
        plant_code(rng, &vcpu, &platform.ram);
        // Xen seeds: three exits in four are the guest's own hypercalls,
        // page writes and CPUID of Xen's leaves.
        let (exit, page_write) = if xen && rng.below(4) != 0 {
            plant_xen_exit(rng, &mut vcpu, &platform.ram)
        } else if rng.below(8) == 0 {
            (plant_port_sequence(rng, &mut vcpu, &platform.ram), None)
        } else {
            (random_exit(rng), None)
        };
        // A quarter of the MSR exits name an x2APIC register (800H-83FH),
        // with a value of random low bits now and then.
        if matches!(exit, VmExit::Rdmsr { .. } | VmExit::Wrmsr { .. }) && rng.below(4) == 0 {
            vcpu.gprs[Gpr::Rcx as usize] = 0x800 + rng.below(0x40);
            if rng.below(2) == 0 {
                vcpu.gprs[Gpr::Rax as usize] = rng.below(0x1_0000);
                vcpu.gprs[Gpr::Rdx as usize] = rng.below(4);
            }
        }
        platform.device_calls = 0;
        // Now and then the exit interrupted an event's delivery and the
        // backend re-queued it (SDM Vol 3C 27.2.4, APM 15.7.2): only a
        // nested page fault or an intercepted exception can do that.
        let during_delivery = matches!(
            exit,
            VmExit::NestedPageFault { .. } | VmExit::Exception { .. }
        );
        let mut exit = exit;
        if during_delivery && rng.below(4) == 0 {
            let event = random_event(rng);
            vcpu.injected.push(event);
            if let VmExit::NestedPageFault { during_event, .. } = &mut exit {
                *during_event = Some(event_vector(event));
            }
        }
        let queued = vcpu.injected.len();
        let rip = vcpu.rip;
        let action = handle_exit(&exit, &mut vcpu, &mut platform, &mut policy);
        let emulating = matches!(
            exit,
            VmExit::NestedPageFault { .. }
                | VmExit::Io(IoExit {
                    string: Some(_),
                    ..
                })
        );
        match action {
            ExitAction::Stop(_) => stats.stopped += 1,
            _ if emulating && vcpu.rip != rip && vcpu.injected.len() == queued => {
                stats.emulated += 1
            }
            _ => {}
        }
        stats.injected += u64::from(vcpu.injected.len() > queued);
        // One exit injects at most one event of its own; over a re-queued
        // one the backends combine the two by the double-fault rules.
        assert!(
            vcpu.injected.len() <= queued + 1,
            "{exit:?} injected {:?} in one exit",
            vcpu.injected
        );
        // A fault during event delivery is never emulated: the VM stops.
        if let VmExit::NestedPageFault {
            during_event: Some(_),
            ..
        } = exit
        {
            assert!(
                matches!(action, ExitAction::Stop(_)),
                "{exit:?} during event delivery gave {action:?}"
            );
        }
        assert!(
            platform.device_calls <= MAX_DEVICE_CALLS_PER_EXIT,
            "{exit:?} made {} device calls in one exit ({action:?})",
            platform.device_calls
        );
        if let Some(page) = page_write {
            let mut stub = [0u8; 5];
            let _ = platform.ram.read(page + 17 * 32, &mut stub);
            if vcpu.injected.len() == queued && stub == [0xb8, 17, 0, 0, 0] {
                stats.xen_page_writes += 1;
            }
        }
        if let Some(x) = platform.xen.as_mut() {
            xen_after_exit(rng, x);
        }
        // The next entry delivers what was injected.
        vcpu.injected.clear();
        heap.check("exits");
    }
    stats.xen_calls = platform.xen_calls;
    stats.xen_answered = platform.xen_answered;
    stats.xen_numbers = platform.xen_numbers.count_ones();
    stats.x2apic_done = platform.x2apic_done;
    stats.x2apic_refused = platform.x2apic_refused;
    stats.ran_ahead = platform.ran_ahead;
    stats
}

/// A Xen seed's state over `ram`: Keel's pages at the top of RAM, a
/// guest-physical width of 32 to 48 bits, the local APIC, IOAPIC and
/// firmware pages fixed, as the VMM's layout has them.
fn xen_state(rng: &mut Rng, ram: &GuestMemory) -> XenState {
    let (map, power, clock) = (
        MemoryMapQueue::new(),
        PowerControl::new(),
        FakeClock::new(rng.below(1 << 40)),
    );
    let limits = PhysmapLimits {
        gpa_limit: 1 << (32 + rng.below(17)),
        fixed: vec![
            0xfec0_0000..0xfec0_1000,
            0xfee0_0000..0xfee0_1000,
            0xffff_0000..0x1_0000_0000,
        ],
    };
    let xen = Xen::new(
        ram.clone(),
        XenPages::at_top_of(RAM_SIZE as u64),
        1,
        clock.clone(),
        interesting(rng),
        rng.next(),
        map.clone(),
        limits.clone(),
        power.clone(),
    );
    XenState {
        xen,
        map,
        power,
        clock,
        limits,
    }
}

/// What the VM loop does with a Xen VM between two exits: applies the map
/// changes (each must be one the VMM can make), acts on a reset, lets time
/// pass and fires the timers, looks for the callback vector.
fn xen_after_exit(rng: &mut Rng, x: &mut XenState) {
    for change in x.map.take() {
        let (gpa, len) = match change {
            MemoryMapChange::Map { gpa, len, .. } | MemoryMapChange::Unmap { gpa, len } => {
                (gpa, len)
            }
            other => panic!("Xen queued {other:?}"),
        };
        assert!(
            len == 0x1000 && x.limits.allows(gpa),
            "Xen queued {change:?}, which the VMM cannot make within {:?}",
            x.limits
        );
    }
    if x.power.take() == Some(PowerRequest::Reset) {
        x.xen.reset();
    }
    x.clock.advance(rng.below(20_000_000));
    x.xen.service();
    let _ = x.xen.upcall_vector(0);
    let _ = x.xen.next_deadline_ns();
}

/// A Xen guest's own exit: mostly a hypercall with a plausible number,
/// sub-op and argument block (in RAM, reachable through identity paging in
/// 64-bit mode or with paging off), sometimes a hypercall-page MSR write
/// (its page returned, to see it written) or a CPUID of Xen's leaves.
fn plant_xen_exit(rng: &mut Rng, vcpu: &mut FakeVcpu, ram: &GuestMemory) -> (VmExit, Option<u64>) {
    match rng.below(8) {
        0 => {
            let page = rng.below(RAM_SIZE as u64 / 0x1000) << 12;
            let value = if rng.below(4) == 0 {
                interesting(rng)
            } else {
                page
            };
            vcpu.gprs[Gpr::Rcx as usize] = u64::from(XEN_HYPERCALL_MSR);
            vcpu.gprs[Gpr::Rax as usize] = value & 0xffff_ffff;
            vcpu.gprs[Gpr::Rdx as usize] = value >> 32;
            return (VmExit::Wrmsr { len: 2 }, Some(value));
        }
        1 => {
            vcpu.gprs[Gpr::Rax as usize] = 0x4000_0000 + rng.below(8);
            return (VmExit::Cpuid { len: 2 }, None);
        }
        _ => {}
    }
    let mode = rng.below(4);
    if mode == 0 {
        // 64-bit mode over identity tables.
        let _ = ram.write(XEN_PML4, &(XEN_PML4 + 0x1003).to_le_bytes());
        let _ = ram.write(XEN_PML4 + 0x1000, &(XEN_PML4 + 0x2003).to_le_bytes());
        let _ = ram.write(XEN_PML4 + 0x2000, &0x83u64.to_le_bytes());
        let gprs = vcpu.gprs;
        *vcpu = FakeVcpu::long_mode();
        vcpu.gprs = gprs;
        vcpu.cr[3] = XEN_PML4;
        vcpu.cr[4] = 1 << 5;
    } else if mode == 1 {
        let gprs = vcpu.gprs;
        *vcpu = if rng.below(2) == 0 {
            FakeVcpu::protected_flat()
        } else {
            FakeVcpu::real_mode()
        };
        vcpu.gprs = gprs;
    }
    vcpu.cpl = if rng.below(8) == 0 { 3 } else { 0 };
    let (nr, sub_ops) = XEN_CALLS[rng.below(XEN_CALLS.len() as u64) as usize];
    let nr = if rng.below(8) == 0 {
        interesting(rng)
    } else {
        nr
    };
    let sub_op = match rng.below(8) {
        0 => rng.below(16),
        1 => interesting(rng),
        _ => sub_ops[rng.below(sub_ops.len() as u64) as usize],
    };
    // The argument block, laid out as Xen's structures are: a domain id,
    // a 32-bit field (a space, index, port or version), then 64-bit fields
    // (indexes, frames, values); mostly small numbers, now and then anything.
    let block = rng.below(XEN_PML4 - 64) & !7;
    let mut b = [0u8; 64];
    let domid: u16 = match rng.below(4) {
        0 => 0x7ff0,
        1 => 1,
        2 => 0,
        _ => rng.next() as u16,
    };
    b[..2].copy_from_slice(&domid.to_le_bytes());
    let small = |rng: &mut Rng| match rng.below(4) {
        0 | 1 => rng.below(4),
        2 => rng.below(64),
        _ => interesting(rng),
    };
    let field = small(rng) as u32;
    b[4..8].copy_from_slice(&field.to_le_bytes());
    for w in b[8..].chunks_exact_mut(8) {
        let v = if rng.below(4) == 0 {
            small(rng) | small(rng) << 32
        } else {
            small(rng)
        };
        w.copy_from_slice(&v.to_le_bytes());
    }
    let _ = ram.write(block, &b);
    let pick = |rng: &mut Rng, v: u64| {
        if rng.below(8) == 0 {
            interesting(rng)
        } else {
            v
        }
    };
    let cmd = sub_op;
    let (a1, a2) = match nr {
        VCPU_OP => (pick(rng, 0), pick(rng, block)),
        GRANT_TABLE_OP => {
            let count = rng.below(20);
            (pick(rng, block), pick(rng, count))
        }
        _ => (pick(rng, block), pick(rng, block)),
    };
    let args = [cmd, a1, a2, interesting(rng), interesting(rng)];
    let regs = if vcpu.efer & (1 << 10) != 0 && vcpu.segs[1].attr & 0x200 != 0 {
        [Gpr::Rdi, Gpr::Rsi, Gpr::Rdx, Gpr::R10, Gpr::R8]
    } else {
        [Gpr::Rbx, Gpr::Rcx, Gpr::Rdx, Gpr::Rsi, Gpr::Rdi]
    };
    for (r, a) in regs.into_iter().zip(args) {
        vcpu.gprs[r as usize] = a;
    }
    vcpu.gprs[Gpr::Rax as usize] = nr;
    (VmExit::Hypercall { len: 3 }, None)
}

fn random_event(rng: &mut Rng) -> Event {
    match rng.below(3) {
        0 => Event::Exception {
            vector: rng.below(32) as u8,
            error_code: (rng.below(2) == 0).then(|| rng.next() as u32),
        },
        1 => Event::ExternalInterrupt {
            vector: 32 + rng.below(224) as u8,
        },
        _ => Event::Nmi,
    }
}

/// The vector an event delivers (an NMI is vector 2).
fn event_vector(event: Event) -> u8 {
    match event {
        Event::Exception { vector, .. } | Event::ExternalInterrupt { vector } => vector,
        _ => 2,
    }
}

fn random_segment(rng: &mut Rng) -> Segment {
    Segment {
        selector: rng.next() as u16,
        base: match rng.below(3) {
            0 => 0,
            1 => rng.below(RAM_SIZE as u64),
            _ => interesting(rng),
        },
        limit: match rng.below(3) {
            0 => 0xffff,
            1 => 0xffff_ffff,
            _ => rng.next() as u32,
        },
        attr: match rng.below(4) {
            0 => 0x93,
            1 => 0xc93,
            _ => rng.next() as u16 & 0xfff,
        },
    }
}

/// A vCPU in a random mode: the three usual ones, or random control registers.
/// MSRs the MSR policy handles (vmm-core/src/exit/msr.rs), first of each range.
const MSR_TABLE: &[u32] = &[
    0x10,
    0x17,
    0x3a,
    0x3b,
    0x79,
    0x8b,
    0xc1,
    0xce,
    0xfe,
    0x179,
    0x17a,
    0x17b,
    0x186,
    0x1a0,
    0x1d9,
    0x200,
    0x250,
    0x2ff,
    0x400,
    0x40d,
    0xc000_0080,
    0xc001_0000,
    0xc001_0004,
    0xc001_0010,
    0xc001_0015,
    0xc001_001f,
    0xc001_0055,
    0xc001_0114,
    0xc001_0140,
    0xc001_0200,
    0xc001_1029,
    // Hyper-V's synthetic MSRs (vmm-core/src/exit/hyperv.rs), with viridian.
    0x4000_0000,
    0x4000_0020,
    0x4000_0022,
    0x4000_0070,
    0x4000_0072,
    // The local APIC's (device-model lapic::x2apic): IA32_APIC_BASE,
    // TSC_DEADLINE, and x2APIC ID, TPR, EOI, LDR, SVR, ISR, TMR, IRR, ESR,
    // ICR, the LVT, the timer and SELF IPI.
    IA32_APIC_BASE,
    IA32_TSC_DEADLINE,
    0x802,
    0x808,
    0x80b,
    0x80d,
    0x80f,
    0x810,
    0x818,
    0x820,
    0x828,
    0x830,
    0x832,
    0x835,
    0x838,
    0x83e,
    0x83f,
];

/// IA32_APIC_BASE and IA32_TSC_DEADLINE (SDM Vol 3A 11.4.4, 11.5.4.1).
const IA32_APIC_BASE: u32 = 0x1b;
const IA32_TSC_DEADLINE: u32 = 0x6e0;

fn random_vcpu(rng: &mut Rng) -> FakeVcpu {
    let mut v = match rng.below(4) {
        0 => FakeVcpu::real_mode(),
        1 => FakeVcpu::protected_flat(),
        2 => FakeVcpu::long_mode(),
        _ => {
            let mut v = FakeVcpu::real_mode();
            v.cr0 = interesting(rng);
            v.efer = interesting(rng);
            for s in v.segs.iter_mut() {
                *s = random_segment(rng);
            }
            v
        }
    };
    for g in v.gprs.iter_mut() {
        *g = interesting(rng);
    }
    // Half the MSR exits reach a register of the MSR table (its neighbours too).
    if rng.below(2) == 0 {
        let msr = MSR_TABLE[rng.below(MSR_TABLE.len() as u64) as usize];
        v.gprs[Gpr::Rcx as usize] = u64::from(msr) + rng.below(3);
    }
    v.rip = match rng.below(3) {
        0 => rng.below(RAM_SIZE as u64),
        1 => rng.below(0x1_0000),
        _ => interesting(rng),
    };
    v.rflags = 2 | (rng.next() & 0x3f_7fd5);
    // Now and then user code (or virtual-8086 mode): privileged exits #GP.
    v.cpl = if rng.below(4) == 0 { 3 } else { 0 };
    // CR3 in RAM (page tables of random bytes) or anywhere; CR4 random.
    v.cr[3] = if rng.below(2) == 0 {
        rng.below(RAM_SIZE as u64) & !0xfff
    } else {
        interesting(rng)
    };
    v.cr[4] = if rng.below(2) == 0 {
        1 << 5 // PAE, as long mode needs
    } else {
        interesting(rng)
    };
    if rng.below(4) == 0 {
        v.segs[rng.below(7) as usize] = random_segment(rng);
    }
    v.shadow = rng.below(8) == 0;
    v
}

/// Instructions the emulator implements (MMIO moves, string I/O), with
/// prefixes, written at the physical address CS:RIP maps to when paging is
/// off; with paging on, the bytes land wherever they land.
fn plant_code(rng: &mut Rng, vcpu: &FakeVcpu, ram: &GuestMemory) {
    const OPCODES: &[&[u8]] = &[
        &[0x88],
        &[0x89],
        &[0x8a],
        &[0x8b],
        &[0xc6],
        &[0xc7],
        &[0xa0],
        &[0xa1],
        &[0xa2],
        &[0xa3],
        &[0xa4],
        &[0xa5],
        &[0xaa],
        &[0xab],
        &[0xac],
        &[0x6c],
        &[0x6d],
        &[0x6e],
        &[0x6f],
        &[0x0f, 0xb6],
        &[0x0f, 0xb7],
        &[0xf6],
        &[0xf7],
        &[0x80],
        &[0x81],
        &[0x86],
        &[0x87],
        &[0xff],
    ];
    const PREFIXES: &[u8] = &[0xf3, 0xf2, 0x66, 0x67, 0x2e, 0x26, 0x64, 0xf0, 0x48, 0x41];
    let mut code = Vec::with_capacity(16);
    for _ in 0..rng.below(4) {
        code.push(PREFIXES[rng.below(PREFIXES.len() as u64) as usize]);
    }
    code.extend_from_slice(OPCODES[rng.below(OPCODES.len() as u64) as usize]);
    for _ in 0..rng.below(10) {
        code.push(rng.next() as u8);
    }
    let at = vcpu.segs[1].base.wrapping_add(vcpu.rip) & 0xffff_ffff;
    let _ = ram.write(at, &code);
}

/// A port I/O exit in 64-bit mode over identity-mapped RAM, with register
/// set-up, port accesses and other bytes after the exiting instruction: the
/// paths of `x86_emul::port_io_ahead`, which the exit may run ahead over.
fn plant_port_sequence(rng: &mut Rng, vcpu: &mut FakeVcpu, ram: &GuestMemory) -> VmExit {
    const ITEMS: &[&[u8]] = &[
        &[0xba, 0xfc, 0x0c, 0, 0],                   // mov $0xcfc,%edx
        &[0x83, 0xe1, 0x03],                         // and $3,%ecx
        &[0x8d, 0x91, 0xfc, 0x0c, 0, 0],             // lea 0xcfc(%rcx),%edx
        &[0x44, 0x89, 0xc0],                         // mov %r8d,%eax
        &[0x31, 0xc0],                               // xor %eax,%eax
        &[0x48, 0x05, 0, 0, 0, 0x80],                // add $-0x80000000,%rax
        &[0xe4, 0x42],                               // in $0x42,%al
        &[0xe5, 0x40],                               // in $0x40,%eax
        &[0xe6, 0x80],                               // out %al,$0x80
        &[0xe7, 0x70],                               // out %eax,$0x70
        &[0xec],                                     // in (%dx),%al
        &[0x66, 0xed],                               // in (%dx),%ax
        &[0xee],                                     // out %al,(%dx)
        &[0xef],                                     // out %eax,(%dx)
        &[0xf0],                                     // lock
        &[0x8b, 0x13],                               // mov (%rbx),%edx
        &[0xeb, 0xfe],                               // jmp .
        &[0xa8, 0x80],                               // test $0x80,%al
        &[0x3c, 0xff],                               // cmp $0xff,%al
        &[0x74, 0xfa],                               // je -6
        &[0x75, 0x02],                               // jne +2
        &[0x48, 0xc1, 0xe2, 0x20],                   // shl $0x20,%rdx
        &[0xd3, 0xe8],                               // shr %cl,%eax
        &[0x0f, 0x31],                               // rdtsc
        &[0x6c],                                     // insb
        &[0x01, 0x33],                               // add %esi,(%rbx)
        &[0x89, 0x43, 0x08],                         // mov %eax,0x8(%rbx)
        &[0x0f, 0xb6, 0x4b, 0x04],                   // movzbl 0x4(%rbx),%ecx
        &[0xff, 0x03],                               // incl (%rbx)
        &[0x8b, 0x14, 0x24],                         // mov (%rsp),%edx
        &[0xc6, 0x05, 0xf0, 0xff, 0xff, 0xff, 0x90], // movb $0x90,-16(%rip)
    ];
    // PML4 at 0xFE000 and a PDPT at 0xFF000 whose first entry maps 1 GiB.
    let _ = ram.write(0xf_e000, &(0xf_f000u64 | 7).to_le_bytes());
    let _ = ram.write(0xf_f000, &0x87u64.to_le_bytes());
    let gprs = vcpu.gprs;
    *vcpu = FakeVcpu::long_mode();
    vcpu.gprs = gprs;
    vcpu.cr[3] = 0xf_e000;
    vcpu.cr[4] = 1 << 5;
    vcpu.rip = rng.below(0xf_0000);
    // Now and then single-stepped, at CPL 3, or with a breakpoint set.
    vcpu.rflags = 2 | if rng.below(8) == 0 { 1 << 8 } else { 0 };
    vcpu.cpl = if rng.below(8) == 0 { 3 } else { 0 };
    vcpu.dr7 = if rng.below(8) == 0 {
        1 << rng.below(8)
    } else {
        0
    };
    // Memory operands reach RAM (the code itself, now and then), or not.
    for r in [Gpr::Rbx, Gpr::Rsp] {
        if rng.below(2) == 0 {
            vcpu.gprs[r as usize] = rng.below(0x10_0000);
        }
    }
    let len = 1 + rng.below(3) as u8;
    let mut code = Vec::with_capacity(64);
    for _ in 0..rng.below(12) {
        if rng.below(8) == 0 {
            code.push(rng.next() as u8);
        } else {
            code.extend_from_slice(ITEMS[rng.below(ITEMS.len() as u64) as usize]);
        }
    }
    let _ = ram.write(vcpu.rip + u64::from(len), &code);
    VmExit::Io(IoExit {
        port: 0xcf8,
        size: [1, 2, 4][rng.below(3) as usize],
        direction: if rng.below(2) == 0 {
            IoDirection::In
        } else {
            IoDirection::Out
        },
        string: None,
        len,
    })
}

fn random_len(rng: &mut Rng) -> u8 {
    match rng.below(8) {
        0 => rng.next() as u8,
        _ => 1 + rng.below(15) as u8,
    }
}

fn random_exit(rng: &mut Rng) -> VmExit {
    let len = random_len(rng);
    match rng.below(20) {
        0..=3 => VmExit::Io(IoExit {
            port: if rng.below(2) == 0 {
                rng.next() as u16
            } else {
                0xcf8 + rng.below(8) as u16
            },
            size: [1, 2, 4, 1, 2, 4, 0, 3, 8][rng.below(9) as usize],
            direction: if rng.below(2) == 0 {
                IoDirection::In
            } else {
                IoDirection::Out
            },
            string: (rng.below(2) == 0).then(|| StringIo {
                rep: rng.below(2) == 0,
                address_size: [None, Some(2), Some(4), Some(8), Some(3)][rng.below(5) as usize],
            }),
            len,
        }),
        4..=7 => VmExit::NestedPageFault {
            gpa: match rng.below(3) {
                0 => 0xfe00_0000 + rng.below(0x200_0000),
                1 => rng.below(RAM_SIZE as u64 * 2),
                _ => interesting(rng),
            },
            access: [AccessKind::Read, AccessKind::Write, AccessKind::Execute]
                [rng.below(3) as usize],
            present: rng.below(2) == 0,
            during_event: None,
        },
        8 => VmExit::Cpuid { len },
        9 => VmExit::Rdmsr { len },
        10 => VmExit::Wrmsr { len },
        11 => VmExit::Hlt { len },
        12 => VmExit::CrAccess(CrAccess {
            // The registers the backends intercept, and now and then any.
            cr: match rng.below(8) {
                0 => rng.below(16) as u8,
                _ => [0, 2, 3, 4, 8][rng.below(5) as usize],
            },
            write: rng.below(2) == 0,
            operand: match rng.below(8) {
                0 => CrOperand::Undecoded,
                1 => CrOperand::Clts,
                2 => CrOperand::Lmsw(rng.below(0x1_0000) as u16),
                _ => CrOperand::Gpr(Gpr::from_index(rng.below(16) as usize)),
            },
            len,
        }),
        13 => match rng.below(6) {
            0 => VmExit::Invd { len },
            1 => VmExit::Wbinvd { len },
            2 => VmExit::Rdpmc { len },
            3 => VmExit::Rdtsc { len },
            4 => VmExit::Rdtscp { len },
            _ => VmExit::Xsetbv { len },
        },
        14 => match rng.below(2) {
            0 => VmExit::Hypercall { len },
            _ => VmExit::UndefinedInstruction {
                name: ["VMRUN", "MONITOR", "MWAIT", "VMXON"][rng.below(4) as usize],
            },
        },
        15 => VmExit::Exception {
            vector: if rng.below(4) == 0 {
                rng.next() as u8
            } else {
                rng.below(32) as u8
            },
            error_code: (rng.below(2) == 0).then(|| rng.next() as u32),
            fault_address: (rng.below(2) == 0).then(|| interesting(rng)),
            debug_status: (rng.below(2) == 0).then(|| rng.next()),
        },
        16 => match rng.below(4) {
            0 => VmExit::Shutdown,
            1 => VmExit::ExternalInterrupt,
            2 => VmExit::NmiWindow,
            _ => VmExit::InterruptWindow,
        },
        17 => VmExit::InvalidGuestState {
            detail: interesting(rng),
        },
        18 => VmExit::Unknown {
            code: interesting(rng),
            info1: interesting(rng),
            info2: interesting(rng),
        },
        _ => VmExit::Io(IoExit {
            port: rng.next() as u16,
            size: [1, 2, 4][rng.below(3) as usize],
            direction: IoDirection::Out,
            string: Some(StringIo {
                rep: true,
                address_size: Some([2, 4, 8][rng.below(3) as usize]),
            }),
            len,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generator_reaches_emulation_injection_and_stops() {
        let mut total = Stats::default();
        for seed in 0..50 {
            let s = run_cases(&mut Rng(crate::splitmix64(seed) | 1));
            total.emulated += s.emulated;
            total.injected += s.injected;
            total.stopped += s.stopped;
        }
        std::println!("{total:?}");
        let cases = 50 * CASES_PER_SEED;
        assert!(total.emulated > cases / 100, "{total:?}");
        assert!(total.injected > cases / 20, "{total:?}");
        assert!(total.stopped > cases / 50, "{total:?}");
    }

    /// The Xen seeds reach device-model's dispatch through vmm-core's
    /// conventions, get answers for most of the hypercalls Keel offers
    /// (not only -EFAULT and -ENOSYS), and write the hypercall page.
    #[test]
    fn the_generator_reaches_xens_hypercalls_and_page() {
        let mut total = Stats::default();
        for seed in 0..50 {
            let s = run_cases(&mut Rng(crate::splitmix64(seed) | 1));
            total.xen_calls += s.xen_calls;
            total.xen_answered += s.xen_answered;
            total.xen_numbers = total.xen_numbers.max(s.xen_numbers);
            total.xen_page_writes += s.xen_page_writes;
        }
        std::println!("{total:?}");
        let cases = 50 * CASES_PER_SEED;
        assert!(total.xen_calls > cases / 40, "{total:?}");
        assert!(total.xen_answered > total.xen_calls / 5, "{total:?}");
        assert!(total.xen_numbers >= 6, "{total:?}");
        assert!(total.xen_page_writes > 0, "{total:?}");
    }

    /// Port I/O exits run ahead over the random bytes after them, and
    /// sometimes find a port access there (the per-exit bounds above hold
    /// with it).
    #[test]
    fn the_generator_reaches_port_io_run_ahead() {
        let mut total = Stats::default();
        for seed in 0..50 {
            let s = run_cases(&mut Rng(crate::splitmix64(seed) | 1));
            total.ran_ahead += s.ran_ahead;
        }
        std::println!("{total:?}");
        assert!(total.ran_ahead > 0, "{total:?}");
    }

    /// RDMSR and WRMSR exits reach the x2APIC registers of a real local
    /// APIC in x2APIC mode, which carries out some and refuses others.
    #[test]
    fn the_generator_reaches_the_x2apic_msrs() {
        let mut total = Stats::default();
        for seed in 0..50 {
            let s = run_cases(&mut Rng(crate::splitmix64(seed) | 1));
            total.x2apic_done += s.x2apic_done;
            total.x2apic_refused += s.x2apic_refused;
        }
        std::println!("{total:?}");
        assert!(total.x2apic_done > 20, "{total:?}");
        assert!(total.x2apic_refused > 50, "{total:?}");
    }
}
