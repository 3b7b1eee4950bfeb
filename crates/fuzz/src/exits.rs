//! The exits target: `handle_exit` with random exits on a fake vCPU.

use guest_memory::GuestMemory;
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

/// A platform whose devices answer randomly, over random RAM.
struct FuzzPlatform {
    ram: GuestMemory,
    rng: Rng,
    device_calls: u64,
    cr8: u64,
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
    fn apic_register(&mut self, _vcpu: u32, _offset: u64, _write: Option<u32>) -> Option<u32> {
        self.device_calls += 1;
        (self.rng.below(4) != 0).then(|| self.rng.next() as u32)
    }
    fn msr_read(&mut self, _vcpu: u32, _msr: u32) -> Option<MsrOutcome> {
        match self.rng.below(8) {
            0 => Some(MsrOutcome::Done(self.rng.next())),
            1 => Some(MsrOutcome::GeneralProtection),
            _ => None,
        }
    }
    fn msr_write(&mut self, vcpu: u32, msr: u32, _value: u64) -> Option<MsrOutcome> {
        self.msr_read(vcpu, msr).map(|o| match o {
            MsrOutcome::Done(_) => MsrOutcome::Done(0),
            gp => gp,
        })
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
    // Half the seeds offer Hyper-V's enlightenments, some groups or all.
    if rng.below(2) == 0 {
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
    let mut platform = FuzzPlatform {
        ram: {
            let memory = GuestMemory::new(RAM_SIZE);
            memory.write(0, &ram).expect("RAM_SIZE bytes fit");
            memory
        },
        rng: Rng(rng.next() | 1),
        device_calls: 0,
        cr8: 0,
    };
    // Most of those enable the hypercall page, so hypercalls get answers.
    if rng.below(4) != 0 {
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
        let exit = random_exit(rng);
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
        // The next entry delivers what was injected.
        vcpu.injected.clear();
        heap.check("exits");
    }
    stats
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
];

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
        13 => match rng.below(4) {
            0 => VmExit::Invd { len },
            1 => VmExit::Wbinvd { len },
            2 => VmExit::Rdpmc { len },
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
        16 => match rng.below(3) {
            0 => VmExit::Shutdown,
            1 => VmExit::ExternalInterrupt,
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
}
