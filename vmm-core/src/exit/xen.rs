//! Xen's HVM personality at the exit layer (xl.cfg `xen_platform_pci`):
//! the CPUID leaves at 0x4000_0000, the hypercall-page MSR, and the
//! VMCALL/VMMCALL calling conventions. What the hypercalls do is the
//! platform's ([`Platform::xen_hypercall`], device-model/src/xen).
//!
//! Sources of fact: Xen's public/arch-x86/cpuid.h (leaves), public/xen.h
//! (numbers, the register conventions), and its hypercall-page layout
//! (32-byte stubs `mov eax, nr; vmcall|vmmcall; ret`, the iret stub `ud2`).

use guest_memory::{GuestMemory, LinearMemory};
use x86_emul::paging::{self, Access, AccessKind};
use x86_emul::ControlRegs;

use super::guest_ram::GuestRam;

use super::cpuid::CpuidResult;
use super::handler::Platform;
use crate::vcpu::{CpuMode, Gpr, VcpuState};

/// Where Xen's leaves start.
pub const XEN_CPUID_BASE: u32 = 0x4000_0000;
/// The hypercall-page MSR CPUID base+2 names.
pub const XEN_HYPERCALL_MSR: u32 = 0x4000_0000;
/// "XenVMMXenVMM".
const SIGNATURE: &[u8; 12] = b"XenVMMXenVMM";
/// Version in CPUID base+1 (device-model's XEN_MAJOR.XEN_MINOR).
const VERSION: u32 = (4 << 16) | 17;
/// base+4 EAX: vCPU id (bit 3) and domain id (bit 4) present.
const XEN_HVM_CPUID_VCPU_ID_PRESENT: u32 = 1 << 3;
const XEN_HVM_CPUID_DOMID_PRESENT: u32 = 1 << 4;
/// The guest's domain id (device-model xen::GUEST_DOMID).
const GUEST_DOMID: u32 = 1;
/// Stub size and the iret stub (public/xen.h __HYPERVISOR_iret).
const STUB_SIZE: usize = 32;
const IRET_STUB: usize = 23;
/// -EPERM.
const EPERM: u64 = (-1i64) as u64;
/// Keel runs its guests with this MAXPHYADDR for walks (as task switches).
const GUEST_MAXPHYADDR: u8 = 48;

/// The Xen leaves: (leaf, result) for base..=base+5 on vCPU `vcpu`.
pub fn cpuid_leaves() -> [(u32, CpuidResult); 6] {
    let w = |i: usize| {
        u32::from_le_bytes([
            SIGNATURE[i],
            SIGNATURE[i + 1],
            SIGNATURE[i + 2],
            SIGNATURE[i + 3],
        ])
    };
    let b = XEN_CPUID_BASE;
    [
        (
            b,
            CpuidResult {
                eax: b + 4,
                ebx: w(0),
                ecx: w(4),
                edx: w(8),
            },
        ),
        (
            b + 1,
            CpuidResult {
                eax: VERSION,
                ..Default::default()
            },
        ),
        // One hypercall page, at the MSR named here.
        (
            b + 2,
            CpuidResult {
                eax: 1,
                ebx: XEN_HYPERCALL_MSR,
                ..Default::default()
            },
        ),
        (b + 3, CpuidResult::default()),
        // EBX (vCPU id) is 0 for Keel's one vCPU; ECX the domain id.
        (
            b + 4,
            CpuidResult {
                eax: XEN_HVM_CPUID_VCPU_ID_PRESENT | XEN_HVM_CPUID_DOMID_PRESENT,
                ebx: 0,
                ecx: GUEST_DOMID,
                edx: 0,
            },
        ),
        // Leaf base+5 zero: grant table v1 only.
        (b + 5, CpuidResult::default()),
    ]
}

/// The hypercall page: 128 stubs `mov eax, nr; vmcall|vmmcall; ret`,
/// stub 23 (iret) `ud2`, the rest of each stub int3.
pub fn hypercall_page(amd: bool) -> [u8; 4096] {
    let mut page = [0xccu8; 4096];
    for (nr, stub) in page.chunks_exact_mut(STUB_SIZE).enumerate() {
        if nr == IRET_STUB {
            stub[..2].copy_from_slice(&[0x0f, 0x0b]);
            continue;
        }
        stub[0] = 0xb8;
        stub[1..5].copy_from_slice(&(nr as u32).to_le_bytes());
        stub[5..8].copy_from_slice(if amd {
            &[0x0f, 0x01, 0xd9]
        } else {
            &[0x0f, 0x01, 0xc1]
        });
        stub[8] = 0xc3;
    }
    page
}

/// WRMSR of the hypercall MSR: bits 63:12 the page's GPA, bits 11:0 the
/// page index (Keel has one page: index 0). `false`: #GP.
pub fn write_hypercall_msr(value: u64, amd: bool, memory: &GuestMemory) -> bool {
    if value & 0xfff != 0 {
        return false;
    }
    memory.write(value, &hypercall_page(amd)).is_ok()
}

/// The calling vCPU's linear addresses (supervisor accesses: the call
/// comes from CPL 0), each access split at page boundaries.
struct Linear<'a> {
    ram: GuestRam<'a>,
    cr: ControlRegs,
    mask: u64,
}

impl Linear<'_> {
    fn each(
        &mut self,
        la: u64,
        len: usize,
        write: bool,
        mut f: impl FnMut(&GuestMemory, u64, usize, usize) -> bool,
    ) -> bool {
        let access = Access {
            kind: if write {
                AccessKind::Write
            } else {
                AccessKind::Read
            },
            cpl: 0,
            implicit_supervisor: false,
            rflags_ac: true,
        };
        let mut done = 0;
        while done < len {
            let at = la.wrapping_add(done as u64) & self.mask;
            let n = (len - done).min(0x1000 - (at & 0xfff) as usize);
            let Ok(gpa) = paging::translate(&mut self.ram, &self.cr, GUEST_MAXPHYADDR, at, access)
            else {
                return false;
            };
            if !f(self.ram.0, gpa, done, n) {
                return false;
            }
            done += n;
        }
        true
    }
}

impl LinearMemory for Linear<'_> {
    fn read_linear(&mut self, la: u64, buf: &mut [u8]) -> bool {
        let len = buf.len();
        self.each(la, len, false, |m, gpa, at, n| {
            m.read(gpa, &mut buf[at..at + n]).is_ok()
        })
    }
    fn write_linear(&mut self, la: u64, data: &[u8]) -> bool {
        self.each(la, data.len(), true, |m, gpa, at, n| {
            m.write(gpa, &data[at..at + n]).is_ok()
        })
    }
}

/// A VMCALL/VMMCALL under the Xen personality, as Xen's hvm_hypercall
/// takes it: at CPL > 0 (virtual-8086 mode included) RAX = -EPERM; in
/// 64-bit mode the number is all of RAX and the arguments RDI, RSI, RDX,
/// R10, R8; in every other mode, real mode included, the number is EAX and
/// the arguments EBX, ECX, EDX, ESI, EDI. The result goes to RAX.
pub fn hypercall(vcpu: &mut impl VcpuState, platform: &mut impl Platform, len: u8) {
    let long = vcpu.mode() == CpuMode::Long64;
    if vcpu.cpl() != 0 {
        vcpu.set_gpr(Gpr::Rax, if long { EPERM } else { EPERM & 0xffff_ffff });
        vcpu.skip_instruction(len);
        return;
    }
    let regs = if long {
        [Gpr::Rdi, Gpr::Rsi, Gpr::Rdx, Gpr::R10, Gpr::R8]
    } else {
        [Gpr::Rbx, Gpr::Rcx, Gpr::Rdx, Gpr::Rsi, Gpr::Rdi]
    };
    let mask = if long { u64::MAX } else { 0xffff_ffff };
    let args = regs.map(|r| vcpu.gpr(r) & mask);
    let nr = vcpu.gpr(Gpr::Rax) & mask;
    let guest_tsc = platform.host_tsc().wrapping_add(vcpu.tsc_offset());
    let cr = ControlRegs {
        cr0: vcpu.cr0(),
        cr3: vcpu.cr3(),
        cr4: vcpu.cr4(),
        efer: vcpu.efer(),
    };
    let memory = platform.memory().clone();
    let mut linear = Linear {
        ram: GuestRam(&memory),
        cr,
        mask,
    };
    let result = platform.xen_hypercall(vcpu.vcpu_id(), nr, args, guest_tsc, &mut linear);
    vcpu.set_gpr(Gpr::Rax, result as u64 & mask);
    vcpu.skip_instruction(len);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit::handler::tests::FakePlatform;
    use crate::vcpu::tests::FakeVcpu;

    /// Xen's hvm_hypercall: in 64-bit mode the number is all of RAX (one
    /// with its upper half set is no hypercall Xen has: Keel took EAX and
    /// ran xen_version for 0x1_0000_0011) and the arguments RDI, RSI, RDX,
    /// R10, R8; in every other mode EAX and EBX, ECX, EDX, ESI, EDI, real
    /// mode included (Keel raised #UD there); at CPL 3 RAX is -EPERM.
    #[test]
    fn calling_conventions_by_mode() {
        let mut p = FakePlatform::new();
        let run = |v: &mut FakeVcpu, p: &mut FakePlatform| {
            let rip = v.rip;
            hypercall(v, p, 3);
            assert!(v.injected.is_empty(), "{:?}", v.injected);
            assert_eq!(v.rip, rip + 3);
            v.gprs[Gpr::Rax as usize]
        };
        let mut v = FakeVcpu::long_mode();
        v.gprs[Gpr::Rax as usize] = 0x1_0000_0011;
        for (r, value) in [Gpr::Rdi, Gpr::Rsi, Gpr::Rdx, Gpr::R10, Gpr::R8]
            .into_iter()
            .zip(1u64 << 40..)
        {
            v.gprs[r as usize] = value;
        }
        assert_eq!(run(&mut v, &mut p), (-38i64) as u64);
        let args = core::array::from_fn(|i| (1u64 << 40) + i as u64);
        assert_eq!(p.xen_calls.pop(), Some((0, 0x1_0000_0011, args)));

        for mut v in [FakeVcpu::protected_flat(), FakeVcpu::real_mode()] {
            v.gprs[Gpr::Rax as usize] = 0xdead_0000_0000_0011;
            for (i, r) in [Gpr::Rbx, Gpr::Rcx, Gpr::Rdx, Gpr::Rsi, Gpr::Rdi]
                .into_iter()
                .enumerate()
            {
                v.gprs[r as usize] = 0xffff_ffff_0000_0000 | i as u64;
            }
            assert_eq!(run(&mut v, &mut p), 0xffff_ffda);
            assert_eq!(p.xen_calls.pop(), Some((0, 0x11, [0, 1, 2, 3, 4])));
        }

        // CPL 3 (virtual-8086 mode runs there too): -EPERM, no call.
        let mut v = FakeVcpu::long_mode();
        v.cpl = 3;
        assert_eq!(run(&mut v, &mut p), u64::MAX);
        let mut v86 = FakeVcpu::protected_flat();
        v86.rflags |= 1 << 17;
        v86.cpl = 3;
        assert_eq!(run(&mut v86, &mut p), 0xffff_ffff);
        assert!(p.xen_calls.is_empty());
    }

    #[test]
    fn leaves_name_xen_and_the_msr() {
        let l = cpuid_leaves();
        assert_eq!(l[0].0, 0x4000_0000);
        assert!(l[0].1.eax >= 0x4000_0002);
        let mut sig = [0u8; 12];
        sig[..4].copy_from_slice(&l[0].1.ebx.to_le_bytes());
        sig[4..8].copy_from_slice(&l[0].1.ecx.to_le_bytes());
        sig[8..].copy_from_slice(&l[0].1.edx.to_le_bytes());
        assert_eq!(&sig, b"XenVMMXenVMM");
        assert_eq!(l[1].1.eax, 0x0004_0011);
        assert_eq!((l[2].1.eax, l[2].1.ebx), (1, 0x4000_0000));
        assert_eq!(l[4].1.eax & (1 << 6), 0, "no per-vCPU upcall vector");
        assert_eq!(l[4].1.ecx, 1, "domid");
    }

    #[test]
    fn hypercall_page_stubs() {
        for (amd, op) in [(false, [0x0f, 0x01, 0xc1]), (true, [0x0f, 0x01, 0xd9])] {
            let p = hypercall_page(amd);
            let s = &p[17 * 32..18 * 32];
            assert_eq!(&s[..9], &[0xb8, 17, 0, 0, 0, op[0], op[1], op[2], 0xc3]);
            assert_eq!(&p[23 * 32..23 * 32 + 2], &[0x0f, 0x0b], "iret: ud2");
        }
        let m = GuestMemory::new(0x3000);
        assert!(!write_hypercall_msr(0x1001, false, &m), "offset bits: #GP");
        assert!(!write_hypercall_msr(0x3000, false, &m), "outside RAM: #GP");
        assert!(write_hypercall_msr(0x1000, true, &m));
        let mut b = [0u8; 1];
        m.read(0x1000, &mut b).unwrap();
        assert_eq!(b[0], 0xb8);
    }
}
