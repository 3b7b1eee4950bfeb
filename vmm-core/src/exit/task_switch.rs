//! Hardware task switches, carried out for the guest.
//!
//! VMX exits on every task switch (SDM Vol 3C 25.4.2) once the CPU has checked
//! the task gate, the new TSS selector and descriptor; SVM runs them itself.
//! Thirty-two-bit guests use them for far JMP/CALL to a TSS or task gate, IRET
//! with EFLAGS.NT = 1, and interrupts through a task gate in the IDT (32-bit
//! Linux takes #DF that way). The switch follows SDM Vol 3A 7.3: the old
//! task's state goes into its TSS, the busy flags and the back link change as
//! the source says, and the new task's CR3, LDTR, segment registers, EFLAGS,
//! EIP and GPRs are loaded, with the checks and exceptions of Table 7-1.
//!
//! The TSSs and descriptor tables are reached through the guest's linear
//! addresses: the emulator's page walker translates them and the guest-memory
//! accessor reads and writes RAM. A TSS or table outside RAM stops the VM.

use super::{ExitAction, GateEvent, StopReason, TaskSwitch, TaskSwitchSource};
use crate::vcpu::{Event, Gpr, Segment, Sreg, VcpuState};
use guest_memory::GuestMemory;
use x86_emul::paging::{self, Access, AccessKind, PagingMode, WalkError};
use x86_emul::ControlRegs;

use super::guest_ram::GuestRam;

/// Physical-address width the guest's page tables are checked against, as
/// for the emulator (exit/emulate.rs).
const GUEST_MAXPHYADDR: u8 = 48;

// Exception vectors (SDM Vol 3A 6.3.1, Table 6-1).
const DOUBLE_FAULT: u8 = 8;
const INVALID_TSS: u8 = 10;
const SEGMENT_NOT_PRESENT: u8 = 11;
const STACK_FAULT: u8 = 12;
const GENERAL_PROTECTION: u8 = 13;
const PAGE_FAULT: u8 = 14;

const CR0_PE: u64 = 1 << 0;
const CR0_TS: u64 = 1 << 3;
const CR0_PG: u64 = 1 << 31;
const EFER_LMA: u64 = 1 << 10;
const RFLAGS_NT: u64 = 1 << 14;
const RFLAGS_VM: u64 = 1 << 17;
/// The RFLAGS bits software can set (SDM Vol 1 3.4.3); bit 1 always reads 1.
const RFLAGS_DEFINED: u64 = 0x003f_7fd5;
const RFLAGS_FIXED: u64 = 1 << 1;

// Descriptor type fields (SDM Vol 3A 3.4.5.1, 3.5).
const TYPE_ACCESSED: u8 = 1 << 0;
/// TSS descriptors: the busy flag. Code: readable. Data: writable.
const TYPE_BUSY_OR_RW: u8 = 1 << 1;
/// Code: conforming. Data: expand-down.
const TYPE_CONFORMING: u8 = 1 << 2;
const TYPE_CODE: u8 = 1 << 3;
const TYPE_LDT: u8 = 2;
const TYPE_TSS16_AVAILABLE: u8 = 1;
const TYPE_TSS32_AVAILABLE: u8 = 9;
/// Offset of the type byte (type, S, DPL, P) within a descriptor.
const DESCRIPTOR_ACCESS_BYTE: u64 = 5;

/// A virtual-8086 segment (SDM Vol 3A 20.1.1): base selector * 16, 64 KiB,
/// present read/write accessed data with DPL 3.
const V86_ATTR: u16 = 0xf3;

/// Where a TSS keeps each field (SDM Vol 3A 7.2.1, Figure 7-2; 7.6, Figure 7-11).
struct TssLayout {
    /// The smallest limit the TSS descriptor may have.
    min_limit: u32,
    /// Bytes per register slot (4 in a 32-bit TSS, 2 in a 16-bit one).
    width: usize,
    cr3: Option<usize>,
    eip: usize,
    eflags: usize,
    /// EAX, ECX, EDX, EBX, ESP, EBP, ESI, EDI, in that order.
    gprs: usize,
    /// ES, CS, SS, DS, then FS and GS where the TSS has them.
    segments: usize,
    segment_stride: usize,
    segment_count: usize,
    ldt: usize,
}

impl TssLayout {
    /// Bytes the switch reads (everything up to the LDT selector).
    fn size(&self) -> usize {
        self.ldt + 2
    }
}

const TSS32: TssLayout = TssLayout {
    min_limit: 0x67,
    width: 4,
    cr3: Some(0x1c),
    eip: 0x20,
    eflags: 0x24,
    gprs: 0x28,
    segments: 0x48,
    segment_stride: 4,
    segment_count: 6,
    ldt: 0x60,
};

const TSS16: TssLayout = TssLayout {
    min_limit: 0x2b,
    width: 2,
    cr3: None,
    eip: 0x0e,
    eflags: 0x10,
    gprs: 0x12,
    segments: 0x22,
    segment_stride: 2,
    segment_count: 4,
    ldt: 0x2a,
};

/// The TSS segment slots, in TSS order.
const TSS_SEGMENTS: [Sreg; 6] = [Sreg::Es, Sreg::Cs, Sreg::Ss, Sreg::Ds, Sreg::Fs, Sreg::Gs];
/// The GPRs, in TSS order: the eight legacy ones in encoding order.
const TSS_GPRS: &[Gpr] = Gpr::ALL.split_at(8).0;

/// Why a task switch did not complete.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Abort {
    /// The guest gets this exception (`cr2` for a page fault).
    Fault {
        vector: u8,
        error_code: u32,
        cr2: Option<u64>,
    },
    /// Keel cannot carry the switch out: the VM stops.
    Stop { what: &'static str, info: u64 },
}

/// The guest's linear address space, for the implicit supervisor accesses a
/// task switch makes to TSSs and descriptor tables (SDM Vol 3A 4.6).
struct Linear<'a> {
    ram: GuestRam<'a>,
    cr: ControlRegs,
}

/// At most this many bytes per access: a 32-bit TSS image.
const MAX_ACCESS: usize = 0x68;

impl Linear<'_> {
    /// The guest-physical pieces of `len` bytes at `linear`, split at 4 KiB
    /// pages, all translated before anything is read or written.
    fn pieces(&mut self, linear: u64, len: usize, write: bool) -> Result<[(u64, usize); 2], Abort> {
        let access = Access {
            kind: if write {
                AccessKind::Write
            } else {
                AccessKind::Read
            },
            cpl: 0,
            implicit_supervisor: true,
            rflags_ac: false,
        };
        let linear = linear & 0xffff_ffff;
        let first = len.min(0x1000 - (linear & 0xfff) as usize);
        let mut out = [(0, first), (0, len - first)];
        for (i, la) in [linear, (linear + first as u64) & 0xffff_ffff]
            .into_iter()
            .enumerate()
        {
            if out[i].1 == 0 {
                continue;
            }
            out[i].0 = paging::translate(&mut self.ram, &self.cr, GUEST_MAXPHYADDR, la, access)
                .map_err(|e| match e {
                    WalkError::PageFault { error_code } => Abort::Fault {
                        vector: PAGE_FAULT,
                        error_code,
                        cr2: Some(la),
                    },
                    WalkError::TableNotRam { gpa } => Abort::Stop {
                        what: "a task switch through guest page tables that point outside RAM",
                        info: gpa,
                    },
                })?;
        }
        Ok(out)
    }

    fn read(&mut self, linear: u64, buf: &mut [u8]) -> Result<(), Abort> {
        let len = buf.len().min(MAX_ACCESS);
        let mut done = 0;
        for (gpa, n) in self.pieces(linear, len, false)? {
            if n == 0 {
                continue;
            }
            self.ram
                .0
                .read(gpa, &mut buf[done..done + n])
                .map_err(|_| outside_ram(gpa))?;
            done += n;
        }
        Ok(())
    }

    fn write(&mut self, linear: u64, buf: &[u8]) -> Result<(), Abort> {
        let len = buf.len().min(MAX_ACCESS);
        let mut done = 0;
        for (gpa, n) in self.pieces(linear, len, true)? {
            if n == 0 {
                continue;
            }
            self.ram
                .0
                .write(gpa, &buf[done..done + n])
                .map_err(|_| outside_ram(gpa))?;
            done += n;
        }
        Ok(())
    }

    fn read_u64(&mut self, linear: u64) -> Result<u64, Abort> {
        let mut b = [0; 8];
        self.read(linear, &mut b)?;
        Ok(u64::from_le_bytes(b))
    }
}

fn outside_ram(gpa: u64) -> Abort {
    Abort::Stop {
        what: "a task switch whose TSS or descriptor table is not in RAM",
        info: gpa,
    }
}

/// The hidden part of a segment register loaded from `raw` (SDM Vol 3A 3.4.5,
/// Figure 3-8): base, limit scaled by G, and the attributes in
/// [`Segment::attr`]'s layout (bits 47:40 then 55:52 of the descriptor).
fn segment_from_descriptor(selector: u16, raw: u64) -> Segment {
    let base = ((raw >> 16) & 0xff_ffff) | (((raw >> 56) & 0xff) << 24);
    let mut limit = ((raw & 0xffff) | ((raw >> 32) & 0xf_0000)) as u32;
    let attr = (((raw >> 40) & 0xff) | (((raw >> 52) & 0xf) << 8)) as u16;
    if attr & (1 << 11) != 0 {
        limit = (limit << 12) | 0xfff;
    }
    Segment {
        selector,
        base,
        limit,
        attr,
    }
}

/// A null selector's segment register: unusable (SDM Vol 3A 3.4.2).
fn null_segment(selector: u16) -> Segment {
    Segment {
        selector,
        ..Segment::default()
    }
}

/// The descriptor tables a selector can name.
#[derive(Clone, Copy)]
struct Tables {
    gdtr: Segment,
    ldtr: Segment,
}

impl Tables {
    /// The linear address of `selector`'s descriptor, or `None` when it lies
    /// outside its table (or names an LDT that is not loaded).
    fn locate(&self, selector: u16) -> Option<u64> {
        let table = if selector & 4 != 0 {
            if !self.ldtr.present() {
                return None;
            }
            self.ldtr
        } else {
            self.gdtr
        };
        let index = u32::from(selector & !7);
        (index + 7 <= table.limit).then(|| table.base.wrapping_add(u64::from(index)))
    }
}

/// The error code of a fault about `selector` (SDM Vol 3A 6.13): its index and
/// TI, with EXT set while delivering an event from outside the program.
fn selector_fault(vector: u8, selector: u16, ext: u32) -> Abort {
    Abort::Fault {
        vector,
        error_code: u32::from(selector & !3) | ext,
        cr2: None,
    }
}

/// Carries out the task switch of a VMX exit (see the module doc).
pub(super) fn handle_task_switch(
    ts: &TaskSwitch,
    vcpu: &mut impl VcpuState,
    mem: &GuestMemory,
) -> ExitAction {
    let rip = vcpu.rip();
    let gate = match ts.source {
        TaskSwitchSource::IdtGate(e) => Some(e),
        _ => None,
    };
    if gate.is_some() {
        // The backend queued the interrupted event again; the switch delivers it.
        vcpu.cancel_event();
    }
    // Task switches exist only in legacy protected mode (IA-32e mode raises
    // #GP before any exit, SDM Vol 3C 25.4.2): anything else is a CPU Keel
    // does not understand.
    if vcpu.cr0() & CR0_PE == 0 || vcpu.efer() & EFER_LMA != 0 {
        return ExitAction::Stop(StopReason::Unhandled {
            what: "a task switch outside legacy protected mode",
            rip,
            info: u64::from(ts.selector),
        });
    }
    match switch(ts, gate, vcpu, mem) {
        Ok(()) => ExitAction::Resume,
        Err(Abort::Fault {
            vector,
            error_code,
            cr2,
        }) => raise(vcpu, gate, vector, error_code, cr2),
        Err(Abort::Stop { what, info }) => {
            log::error!(
                "task switch to TSS selector {:#06x} at RIP {rip:#x}: {what} ({info:#x})",
                ts.selector
            );
            ExitAction::Stop(StopReason::Unhandled { what, rip, info })
        }
    }
}

/// Injects a fault of the switch, or #DF (or a shutdown) when it happened
/// while delivering an exception that does not combine with it (SDM Vol 3A
/// 6.15, Table 6-5).
fn raise(
    vcpu: &mut impl VcpuState,
    gate: Option<GateEvent>,
    vector: u8,
    error_code: u32,
    cr2: Option<u64>,
) -> ExitAction {
    let contributory = |v: u8| matches!(v, 0 | 10..=13);
    if let Some(first) = gate.filter(|g| g.hardware_exception) {
        if first.vector == DOUBLE_FAULT {
            return ExitAction::Stop(StopReason::TripleFault { rip: vcpu.rip() });
        }
        let double = (contributory(first.vector) && contributory(vector))
            || (first.vector == PAGE_FAULT && (contributory(vector) || vector == PAGE_FAULT));
        if double {
            vcpu.inject(Event::Exception {
                vector: DOUBLE_FAULT,
                error_code: Some(0),
            });
            return ExitAction::Resume;
        }
    }
    if let Some(linear) = cr2 {
        vcpu.set_cr(2, linear);
    }
    vcpu.inject(Event::Exception {
        vector,
        error_code: Some(error_code),
    });
    ExitAction::Resume
}

/// The state a TSS holds for its task.
#[derive(Debug, Default)]
struct TaskImage {
    cr3: Option<u64>,
    eip: u64,
    eflags: u64,
    gprs: [u64; 8],
    /// ES, CS, SS, DS, FS, GS; `None` where a 16-bit TSS has no slot.
    selectors: [Option<u16>; 6],
    ldt: u16,
}

fn field(image: &[u8], off: usize, width: usize) -> u64 {
    let mut b = [0u8; 8];
    b[..width].copy_from_slice(&image[off..off + width]);
    u64::from_le_bytes(b)
}

impl TaskImage {
    fn parse(layout: &TssLayout, image: &[u8]) -> TaskImage {
        let w = layout.width;
        let mut t = TaskImage {
            cr3: layout.cr3.map(|off| field(image, off, 4)),
            eip: field(image, layout.eip, w),
            eflags: field(image, layout.eflags, w),
            ldt: field(image, layout.ldt, 2) as u16,
            ..TaskImage::default()
        };
        for (i, g) in t.gprs.iter_mut().enumerate() {
            *g = field(image, layout.gprs + i * w, w);
        }
        for (i, s) in t.selectors[..layout.segment_count].iter_mut().enumerate() {
            *s = Some(field(image, layout.segments + i * layout.segment_stride, 2) as u16);
        }
        t
    }
}

fn switch(
    ts: &TaskSwitch,
    gate: Option<GateEvent>,
    vcpu: &mut impl VcpuState,
    mem: &GuestMemory,
) -> Result<(), Abort> {
    let ext = u32::from(gate.is_some_and(|g| !g.software));
    let iret = ts.source == TaskSwitchSource::Iret;
    let links_back = matches!(
        ts.source,
        TaskSwitchSource::Call | TaskSwitchSource::IdtGate(_)
    );
    let sel = ts.selector;
    let mut lin = Linear {
        ram: GuestRam(mem),
        cr: ControlRegs {
            cr0: vcpu.cr0(),
            cr3: vcpu.cr3(),
            cr4: vcpu.cr4(),
            efer: vcpu.efer(),
        },
    };
    let gdtr = vcpu.gdtr();

    // The new TSS descriptor (SDM Vol 3A 7.3 steps 1-3, Table 7-1 lines 1-3):
    // in the GDT, available (busy for IRET), present, big enough. The CPU
    // checked this before exiting; the switch does not rely on it.
    let wrong = if iret {
        INVALID_TSS
    } else {
        GENERAL_PROTECTION
    };
    if sel & 4 != 0 || u32::from(sel & !7) + 7 > gdtr.limit {
        return Err(selector_fault(wrong, sel, ext));
    }
    let new_desc = gdtr.base.wrapping_add(u64::from(sel & !7));
    let new_tr = segment_from_descriptor(sel, lin.read_u64(new_desc)?);
    let layout = match new_tr.seg_type() & !TYPE_BUSY_OR_RW {
        TYPE_TSS32_AVAILABLE if !new_tr.s() => &TSS32,
        TYPE_TSS16_AVAILABLE if !new_tr.s() => &TSS16,
        _ => return Err(selector_fault(wrong, sel, ext)),
    };
    if (new_tr.seg_type() & TYPE_BUSY_OR_RW != 0) != iret {
        return Err(selector_fault(wrong, sel, ext));
    }
    if !new_tr.present() {
        return Err(selector_fault(SEGMENT_NOT_PRESENT, sel, ext));
    }
    if new_tr.limit < layout.min_limit {
        return Err(selector_fault(INVALID_TSS, sel, ext));
    }
    let old_tr = vcpu.segment(Sreg::Tr);
    let old_layout = if old_tr.seg_type() & 8 != 0 {
        &TSS32
    } else {
        &TSS16
    };
    if old_tr.limit < old_layout.min_limit {
        return Err(selector_fault(INVALID_TSS, old_tr.selector, ext));
    }

    // Read the new task's state: a page fault here leaves everything as it was.
    let mut image = [0u8; MAX_ACCESS];
    lin.read(new_tr.base, &mut image[..layout.size()])?;
    let new = TaskImage::parse(layout, &image);

    // Save the old task (step 7): EIP past the instruction that switched, or
    // the return address of a hardware event; EFLAGS with NT cleared by IRET.
    let instruction = gate.is_none_or(|g| g.software);
    let eip = if instruction {
        vcpu.rip().wrapping_add(u64::from(ts.len))
    } else {
        vcpu.rip()
    };
    let mut eflags = vcpu.rflags();
    if iret {
        eflags &= !RFLAGS_NT;
    }
    let w = old_layout.width;
    let start = old_layout.eip;
    let end = old_layout.segments + old_layout.segment_count * old_layout.segment_stride;
    let mut save = [0u8; MAX_ACCESS];
    lin.read(
        old_tr.base.wrapping_add(start as u64),
        &mut save[..end - start],
    )?;
    let mut put = |off: usize, width: usize, v: u64| {
        save[off - start..off - start + width].copy_from_slice(&v.to_le_bytes()[..width]);
    };
    put(old_layout.eip, w, eip);
    put(old_layout.eflags, w, eflags);
    for (i, g) in TSS_GPRS.iter().enumerate() {
        put(old_layout.gprs + i * w, w, vcpu.gpr(*g));
    }
    for (i, s) in TSS_SEGMENTS[..old_layout.segment_count].iter().enumerate() {
        put(
            old_layout.segments + i * old_layout.segment_stride,
            2,
            u64::from(vcpu.segment(*s).selector),
        );
    }
    lin.write(old_tr.base.wrapping_add(start as u64), &save[..end - start])?;

    // Busy flags and the back link (steps 5, 8, 9).
    let set_busy = |lin: &mut Linear, desc: u64, busy: bool| -> Result<(), Abort> {
        let at = desc.wrapping_add(DESCRIPTOR_ACCESS_BYTE);
        let mut b = [0u8];
        lin.read(at, &mut b)?;
        b[0] = if busy {
            b[0] | TYPE_BUSY_OR_RW
        } else {
            b[0] & !TYPE_BUSY_OR_RW
        };
        lin.write(at, &b)
    };
    if !links_back && old_tr.selector & 4 == 0 && u32::from(old_tr.selector & !7) + 7 <= gdtr.limit
    {
        set_busy(
            &mut lin,
            gdtr.base.wrapping_add(u64::from(old_tr.selector & !7)),
            false,
        )?;
    }
    let mut new_eflags = (new.eflags & RFLAGS_DEFINED) | RFLAGS_FIXED;
    if links_back {
        lin.write(new_tr.base, &old_tr.selector.to_le_bytes())?;
        new_eflags |= RFLAGS_NT;
    }
    if !iret {
        set_busy(&mut lin, new_desc, true)?;
    }

    // The switch is committed: load the new task (steps 10-12). Faults from
    // here on belong to the new task.
    vcpu.set_segment(
        Sreg::Tr,
        Segment {
            attr: new_tr.attr | u16::from(TYPE_BUSY_OR_RW),
            ..new_tr
        },
    );
    vcpu.set_cr(0, vcpu.cr0() | CR0_TS);
    let w = layout.width;
    let merge = |old: u64, v: u64| {
        if w == 4 {
            v
        } else {
            (old & !0xffff) | v
        }
    };
    for (i, g) in TSS_GPRS.iter().enumerate() {
        vcpu.set_gpr(*g, merge(vcpu.gpr(*g), new.gprs[i]));
    }
    vcpu.set_rip(new.eip);
    vcpu.set_rflags(new_eflags);
    vcpu.clear_interrupt_shadow();
    if let Some(cr3) = new.cr3.filter(|_| lin.cr.cr0 & CR0_PG != 0) {
        lin.cr.cr3 = cr3;
        let pdptes = if PagingMode::of(&lin.cr) == PagingMode::Pae {
            Some(pae_pdptes(&mut lin, cr3)?)
        } else {
            None
        };
        vcpu.load_cr3(cr3, pdptes);
    }
    load_segments(&mut lin, vcpu, gdtr, &new, ext)?;

    // An exception's error code goes on the new task's stack (SDM Vol 3A 6.12.2).
    if let Some(code) = gate.and_then(|g| g.error_code) {
        push_error_code(&mut lin, vcpu, code, layout.width, ext)?;
    }
    Ok(())
}

/// The PAE PDPTEs at `cr3`; one that is present with a reserved bit set
/// raises #GP(0) (SDM Vol 3A 4.4.1).
fn pae_pdptes(lin: &mut Linear, cr3: u64) -> Result<[u64; 4], Abort> {
    let mut pdptes = [0u64; 4];
    let reserved = 0x1e6 | !((1u64 << GUEST_MAXPHYADDR) - 1);
    let base = cr3 & 0xffff_ffe0;
    for (i, p) in pdptes.iter_mut().enumerate() {
        let gpa = base + 8 * i as u64;
        let mut b = [0u8; 8];
        lin.ram.0.read(gpa, &mut b).map_err(|_| outside_ram(gpa))?;
        *p = u64::from_le_bytes(b);
        if *p & 1 != 0 && *p & reserved != 0 {
            return Err(Abort::Fault {
                vector: GENERAL_PROTECTION,
                error_code: 0,
                cr2: None,
            });
        }
    }
    Ok(pdptes)
}

/// Loads LDTR and the segment registers of the new task with the checks of
/// SDM Vol 3A Table 7-1 (lines 5-17). LDTR is loaded first: the other
/// selectors may name it. The segment registers change only if every one
/// passes, so that a fault leaves a state the CPU can enter.
fn load_segments(
    lin: &mut Linear,
    vcpu: &mut impl VcpuState,
    gdtr: Segment,
    new: &TaskImage,
    ext: u32,
) -> Result<(), Abort> {
    let ts_fault = |s: u16| selector_fault(INVALID_TSS, s, ext);
    let ldt_sel = new.ldt;
    let ldtr = if ldt_sel & !3 == 0 {
        null_segment(ldt_sel)
    } else {
        let tables = Tables {
            gdtr,
            ldtr: null_segment(0),
        };
        let loaded = match tables.locate(ldt_sel).filter(|_| ldt_sel & 4 == 0) {
            Some(at) => {
                let d = segment_from_descriptor(ldt_sel, lin.read_u64(at)?);
                (!d.s() && d.seg_type() == TYPE_LDT && d.present()).then_some(d)
            }
            None => None,
        };
        match loaded {
            Some(d) => d,
            None => {
                vcpu.set_ldtr(null_segment(ldt_sel));
                return Err(ts_fault(ldt_sel));
            }
        }
    };
    vcpu.set_ldtr(ldtr);
    let tables = Tables { gdtr, ldtr };

    if new.eflags & RFLAGS_VM != 0 {
        // A virtual-8086 task (SDM Vol 3A 20.2.5): every selector is a paragraph.
        for (s, sel) in TSS_SEGMENTS.iter().zip(new.selectors) {
            if let Some(sel) = sel {
                vcpu.set_segment(
                    *s,
                    Segment {
                        selector: sel,
                        base: u64::from(sel) << 4,
                        limit: 0xffff,
                        attr: V86_ATTR,
                    },
                );
            }
        }
        return Ok(());
    }

    let cs_sel = new.selectors[1].unwrap_or(0);
    let cpl = (cs_sel & 3) as u8;
    let mut loaded: [Option<(Sreg, Segment, Option<u64>)>; 6] = [None; 6];
    let order = [1usize, 2, 0, 3, 4, 5];
    for i in order {
        let Some(sel) = new.selectors[i] else {
            continue;
        };
        let sreg = TSS_SEGMENTS[i];
        let null = sel & !3 == 0;
        if null && matches!(sreg, Sreg::Cs | Sreg::Ss) {
            return Err(ts_fault(sel));
        }
        if null {
            loaded[i] = Some((sreg, null_segment(sel), None));
            continue;
        }
        let Some(at) = tables.locate(sel) else {
            return Err(ts_fault(sel));
        };
        let d = segment_from_descriptor(sel, lin.read_u64(at)?);
        let t = d.seg_type();
        let rpl = (sel & 3) as u8;
        let code = t & TYPE_CODE != 0;
        let (valid, not_present) = match sreg {
            Sreg::Cs => (
                d.s()
                    && code
                    && if t & TYPE_CONFORMING != 0 {
                        d.dpl() <= cpl
                    } else {
                        d.dpl() == cpl
                    },
                SEGMENT_NOT_PRESENT,
            ),
            Sreg::Ss => (
                d.s() && !code && t & TYPE_BUSY_OR_RW != 0 && rpl == cpl && d.dpl() == cpl,
                STACK_FAULT,
            ),
            _ => (
                d.s()
                    && (!code || t & TYPE_BUSY_OR_RW != 0)
                    && ((code && t & TYPE_CONFORMING != 0) || d.dpl() >= cpl.max(rpl)),
                SEGMENT_NOT_PRESENT,
            ),
        };
        if !valid {
            return Err(ts_fault(sel));
        }
        if !d.present() {
            return Err(selector_fault(not_present, sel, ext));
        }
        let accessed_at = (t & TYPE_ACCESSED == 0).then_some(at);
        let d = Segment {
            attr: d.attr | u16::from(TYPE_ACCESSED),
            ..d
        };
        loaded[i] = Some((sreg, d, accessed_at));
    }
    for (sreg, seg, accessed_at) in loaded.into_iter().flatten() {
        if let Some(at) = accessed_at {
            // The CPU marks a descriptor accessed when it loads it (SDM Vol 3A 3.4.5.1).
            let at = at.wrapping_add(DESCRIPTOR_ACCESS_BYTE);
            let mut b = [0u8];
            lin.read(at, &mut b)?;
            lin.write(at, &[b[0] | TYPE_ACCESSED])?;
        }
        vcpu.set_segment(sreg, seg);
    }
    Ok(())
}

/// Pushes the error code of the exception that switched tasks onto the new
/// stack, in the new TSS's width (SDM Vol 3A 6.12.2, 6.13).
fn push_error_code(
    lin: &mut Linear,
    vcpu: &mut impl VcpuState,
    code: u32,
    width: usize,
    ext: u32,
) -> Result<(), Abort> {
    let ss = vcpu.segment(Sreg::Ss);
    let esp = vcpu.gpr(Gpr::Rsp);
    let mask: u64 = if ss.db() { 0xffff_ffff } else { 0xffff };
    let offset = esp.wrapping_sub(width as u64) & mask;
    let last = offset + width as u64 - 1;
    let limit = u64::from(ss.limit);
    let within = if ss.seg_type() & TYPE_CONFORMING != 0 {
        // Expand-down: valid offsets lie above the limit.
        offset > limit && last <= mask
    } else {
        last <= limit
    };
    if !within {
        return Err(Abort::Fault {
            vector: STACK_FAULT,
            error_code: ext,
            cr2: None,
        });
    }
    lin.write(ss.base.wrapping_add(offset), &code.to_le_bytes()[..width])?;
    vcpu.set_gpr(Gpr::Rsp, (esp & !mask) | offset);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::vcpu::tests::FakeVcpu;
    use guest_memory::GuestMemory;

    const GDT: u64 = 0x1000;
    const TSS_A: u64 = 0x3000;
    const TSS_B: u64 = 0x4000;
    const SEL_CODE: u16 = 0x08;
    const SEL_DATA: u16 = 0x10;
    const SEL_A: u16 = 0x18;
    const SEL_B: u16 = 0x20;
    const SEL_NOT_PRESENT: u16 = 0x28;
    const SEL_SMALL: u16 = 0x30;
    const SEL_USER_CODE: u16 = 0x38;

    /// A system descriptor (TSS) with 32-bit base, byte-granular limit, and access byte.
    fn system_descriptor(base: u64, limit: u64, access: u64) -> u64 {
        (limit & 0xffff)
            | ((base & 0xff_ffff) << 16)
            | (access << 40)
            | (((limit >> 16) & 0xf) << 48)
            | (((base >> 24) & 0xff) << 56)
    }

    fn ram() -> GuestMemory {
        let m = GuestMemory::new(0x10000);
        let gdt = [
            0,
            0x00cf_9a00_0000_ffff, // flat 32-bit code, DPL 0, not accessed
            0x00cf_9200_0000_ffff, // flat data, DPL 0, not accessed
            system_descriptor(TSS_A, 0x67, 0x8b), // busy 32-bit TSS (the current task)
            system_descriptor(TSS_B, 0x67, 0x89), // available 32-bit TSS
            system_descriptor(0x5000, 0x67, 0x09), // not present
            system_descriptor(0x6000, 0x2a, 0x89), // limit below 0x67
            0x00cf_fa00_0000_ffff, // flat 32-bit code, DPL 3
        ];
        for (i, d) in gdt.iter().enumerate() {
            m.write(GDT + 8 * i as u64, &d.to_le_bytes()).unwrap();
        }
        // Task B: EIP 0x5000, ESP 0x8000, EAX..EDI 0xb0..0xb7, flat segments.
        let put =
            |m: &GuestMemory, off: u64, v: u32| m.write(TSS_B + off, &v.to_le_bytes()).unwrap();
        put(&m, 0x20, 0x5000);
        put(&m, 0x24, 0x202);
        for i in 0..8 {
            put(&m, 0x28 + 4 * i, 0xb0 + i as u32);
        }
        put(&m, 0x38, 0x8000);
        for (i, s) in [SEL_DATA, SEL_CODE, SEL_DATA, SEL_DATA, 0, 0]
            .iter()
            .enumerate()
        {
            put(&m, 0x48 + 4 * i as u64, u32::from(*s));
        }
        m
    }

    /// Task A running flat 32-bit code at 0x1000 with TR = task A's TSS.
    fn vcpu() -> FakeVcpu {
        let mut v = FakeVcpu::protected_flat();
        v.segs[1].selector = SEL_CODE;
        for i in [0, 2, 3] {
            v.segs[i] = Segment {
                selector: SEL_DATA,
                base: 0,
                limit: 0xffff_ffff,
                attr: 0xc93,
            };
        }
        v.segs[6] = Segment {
            selector: SEL_A,
            base: TSS_A,
            limit: 0x67,
            attr: 0x8b,
        };
        v.gdtr = Segment {
            base: GDT,
            limit: 0x3f,
            ..Segment::default()
        };
        for i in 0..16 {
            v.gprs[i] = 0xa0 + i as u64;
        }
        v
    }

    fn exit(selector: u16, source: TaskSwitchSource, len: u8) -> TaskSwitch {
        TaskSwitch {
            selector,
            source,
            len,
        }
    }

    fn u32_at(m: &GuestMemory, gpa: u64) -> u32 {
        m.read_obj::<u32>(gpa).unwrap()
    }

    /// The type field of GDT entry `sel`.
    fn gdt_type(m: &GuestMemory, sel: u16) -> u8 {
        m.read_obj::<u8>(GDT + u64::from(sel) + 5).unwrap() & 0xf
    }

    fn fault(vector: u8, error_code: u32) -> Event {
        Event::Exception {
            vector,
            error_code: Some(error_code),
        }
    }

    #[test]
    fn jmp_to_a_tss_saves_the_old_task_and_loads_the_new() {
        let (mut v, m) = (vcpu(), ram());
        v.rflags = 0x246;
        let a = handle_task_switch(&exit(SEL_B, TaskSwitchSource::Jmp, 7), &mut v, &m);
        assert_eq!(a, ExitAction::Resume);
        assert!(v.injected.is_empty(), "{:?}", v.injected);
        // The old task: EIP past the JMP, EFLAGS, GPRs and selectors in its TSS.
        assert_eq!(u32_at(&m, TSS_A + 0x20), 0x1007);
        assert_eq!(u32_at(&m, TSS_A + 0x24), 0x246);
        assert_eq!(u32_at(&m, TSS_A + 0x28), 0xa0, "EAX");
        assert_eq!(u32_at(&m, TSS_A + 0x2c), 0xa1, "ECX");
        assert_eq!(u32_at(&m, TSS_A + 0x34), 0xa3, "EBX");
        assert_eq!(u32_at(&m, TSS_A + 0x38), 0xa4, "ESP");
        assert_eq!(u32_at(&m, TSS_A + 0x44), 0xa7, "EDI");
        assert_eq!(u32_at(&m, TSS_A + 0x4c), u32::from(SEL_CODE), "CS");
        assert_eq!(u32_at(&m, TSS_A + 0x50), u32::from(SEL_DATA), "SS");
        // JMP: the old TSS is no longer busy, the new one is; no back link.
        assert_eq!(gdt_type(&m, SEL_A), 9);
        assert_eq!(gdt_type(&m, SEL_B), 0xb);
        assert_eq!(u32_at(&m, TSS_B), 0);
        // The new task.
        assert_eq!((v.segs[6].selector, v.segs[6].base), (SEL_B, TSS_B));
        assert_eq!(v.segs[6].seg_type(), 0xb);
        assert_eq!(v.rip, 0x5000);
        assert_eq!(v.rflags, 0x202, "NT stays clear on JMP");
        assert_eq!(v.gprs[Gpr::Rax as usize], 0xb0);
        assert_eq!(v.gprs[Gpr::Rsp as usize], 0x8000);
        assert_eq!(v.gprs[Gpr::Rdi as usize], 0xb7);
        assert_ne!(v.cr0 & CR0_TS, 0, "CR0.TS");
        assert_eq!(v.segs[1].selector, SEL_CODE);
        assert_eq!(v.segs[1].attr, 0xc9b, "CS loaded and marked accessed");
        assert_eq!(gdt_type(&m, SEL_CODE), 0xb, "accessed in the GDT too");
        assert_eq!(v.segs[4], null_segment(0), "FS null: unusable");
        assert!(v.shadow_cleared);
    }

    #[test]
    fn call_links_back_and_iret_returns() {
        let (mut v, m) = (vcpu(), ram());
        v.rflags = 0x2;
        handle_task_switch(&exit(SEL_B, TaskSwitchSource::Call, 7), &mut v, &m);
        assert!(v.injected.is_empty(), "{:?}", v.injected);
        assert_eq!(u32_at(&m, TSS_B), u32::from(SEL_A), "back link");
        assert_eq!(v.rflags, 0x202 | RFLAGS_NT, "NT set by CALL");
        assert_eq!(gdt_type(&m, SEL_A), 0xb, "the caller stays busy");
        assert_eq!(gdt_type(&m, SEL_B), 0xb);
        assert_eq!(v.segs[6].selector, SEL_B);

        // Task B runs, changes EAX and returns with IRET (NT = 1) at 0x5010.
        v.rip = 0x5010;
        v.gprs[Gpr::Rax as usize] = 0x1234;
        handle_task_switch(&exit(SEL_A, TaskSwitchSource::Iret, 1), &mut v, &m);
        assert!(v.injected.is_empty(), "{:?}", v.injected);
        assert_eq!(v.segs[6].selector, SEL_A);
        assert_eq!(v.rip, 0x1007, "back after the CALL");
        assert_eq!(v.gprs[Gpr::Rax as usize], 0xa0);
        assert_eq!(v.rflags, 0x2);
        assert_eq!(gdt_type(&m, SEL_B), 9, "IRET frees the task it leaves");
        assert_eq!(gdt_type(&m, SEL_A), 0xb);
        assert_eq!(u32_at(&m, TSS_B + 0x20), 0x5011, "B resumes after its IRET");
        assert_eq!(u32_at(&m, TSS_B + 0x24), 0x202, "with NT clear");
        assert_eq!(u32_at(&m, TSS_B + 0x28), 0x1234);
        // IRET to a task that is not busy: #TS(selector).
        handle_task_switch(&exit(SEL_B, TaskSwitchSource::Iret, 1), &mut v, &m);
        assert_eq!(v.injected, [fault(INVALID_TSS, u32::from(SEL_B))]);
    }

    /// The descriptor checks of SDM Vol 3A Table 7-1 lines 1-3 fault in the
    /// old task: nothing changes and RIP stays on the JMP.
    #[test]
    fn bad_tss_descriptors_fault_in_the_old_task() {
        for (sel, prepare, want) in [
            (SEL_A, false, fault(GENERAL_PROTECTION, u32::from(SEL_A))),
            (SEL_B, true, fault(GENERAL_PROTECTION, u32::from(SEL_B))),
            (
                SEL_NOT_PRESENT,
                false,
                fault(SEGMENT_NOT_PRESENT, u32::from(SEL_NOT_PRESENT)),
            ),
            (SEL_SMALL, false, fault(INVALID_TSS, u32::from(SEL_SMALL))),
            (
                SEL_CODE,
                false,
                fault(GENERAL_PROTECTION, u32::from(SEL_CODE)),
            ),
            (0x40, false, fault(GENERAL_PROTECTION, 0x40)),
            (
                SEL_B | 4,
                false,
                fault(GENERAL_PROTECTION, u32::from(SEL_B | 4)),
            ),
        ] {
            let (mut v, m) = (vcpu(), ram());
            if prepare {
                // Task B busy already.
                m.write(GDT + u64::from(SEL_B) + 5, &[0x8b]).unwrap();
            }
            let before = (v.rip, v.segs, v.gprs, v.cr0);
            let a = handle_task_switch(&exit(sel, TaskSwitchSource::Jmp, 7), &mut v, &m);
            assert_eq!(a, ExitAction::Resume);
            assert_eq!(v.injected, [want], "selector {sel:#x}");
            assert_eq!(before, (v.rip, v.segs, v.gprs, v.cr0));
            assert_eq!(u32_at(&m, TSS_A + 0x20), 0, "old TSS untouched");
            assert_eq!(gdt_type(&m, SEL_A), 0xb);
        }
    }

    /// #DF through a task gate (32-bit Linux): the re-queued #DF is dropped,
    /// the old task resumes at the faulting instruction, and the error code
    /// is pushed on the new stack. Faults of the switch have EXT set.
    #[test]
    fn exception_through_a_task_gate_pushes_its_error_code() {
        let (mut v, m) = (vcpu(), ram());
        let df = GateEvent {
            vector: DOUBLE_FAULT,
            error_code: Some(0),
            hardware_exception: true,
            software: false,
        };
        v.injected.push(fault(DOUBLE_FAULT, 0));
        m.write(0x7ffc, &[0xff; 4]).unwrap();
        let a = handle_task_switch(&exit(SEL_B, TaskSwitchSource::IdtGate(df), 0), &mut v, &m);
        assert_eq!(a, ExitAction::Resume);
        assert!(v.injected.is_empty(), "delivered by the switch");
        assert_eq!(
            u32_at(&m, TSS_A + 0x20),
            0x1000,
            "returns to the faulting instruction"
        );
        assert_eq!(u32_at(&m, TSS_B), u32::from(SEL_A), "back link");
        assert_eq!(v.gprs[Gpr::Rsp as usize], 0x7ffc);
        assert_eq!(u32_at(&m, 0x7ffc), 0, "error code");
        assert_ne!(v.rflags & RFLAGS_NT, 0);

        // A not-present TSS while delivering #GP: #NP with EXT, which with
        // the #GP makes a double fault (SDM Vol 3A Table 6-5).
        let gp = GateEvent {
            vector: GENERAL_PROTECTION,
            ..df
        };
        let (mut v, m) = (vcpu(), ram());
        handle_task_switch(
            &exit(SEL_NOT_PRESENT, TaskSwitchSource::IdtGate(gp), 0),
            &mut v,
            &m,
        );
        assert_eq!(v.injected, [fault(DOUBLE_FAULT, 0)]);
        // During an external interrupt the #NP itself, with EXT.
        let irq = GateEvent {
            vector: 0x20,
            error_code: None,
            hardware_exception: false,
            software: false,
        };
        let (mut v, m) = (vcpu(), ram());
        handle_task_switch(
            &exit(SEL_NOT_PRESENT, TaskSwitchSource::IdtGate(irq), 0),
            &mut v,
            &m,
        );
        assert_eq!(
            v.injected,
            [fault(SEGMENT_NOT_PRESENT, u32::from(SEL_NOT_PRESENT) | 1)]
        );
        // And while delivering #DF: shutdown.
        let (mut v, m) = (vcpu(), ram());
        assert_eq!(
            handle_task_switch(
                &exit(SEL_SMALL, TaskSwitchSource::IdtGate(df), 0),
                &mut v,
                &m
            ),
            ExitAction::Stop(StopReason::TripleFault { rip: 0x1000 })
        );
    }

    /// Segment checks happen in the new task (Table 7-1 lines 5-17): the
    /// switch is done, the fault is raised at the new task's EIP, and the
    /// segment registers keep descriptors the CPU can enter with.
    #[test]
    fn bad_segments_fault_in_the_new_task() {
        for (slot, sel, want) in [
            (1, 0, fault(INVALID_TSS, 0)),
            (1, SEL_DATA, fault(INVALID_TSS, u32::from(SEL_DATA))),
            (
                1,
                SEL_USER_CODE,
                fault(INVALID_TSS, u32::from(SEL_USER_CODE)),
            ),
            (2, SEL_CODE, fault(INVALID_TSS, u32::from(SEL_CODE))),
            (2, 0x11, fault(INVALID_TSS, 0x10)),
            (3, 0x48, fault(INVALID_TSS, 0x48)),
        ] {
            let (mut v, m) = (vcpu(), ram());
            m.write(TSS_B + 0x48 + 4 * slot, &u32::from(sel).to_le_bytes())
                .unwrap();
            let old_segs = v.segs;
            handle_task_switch(&exit(SEL_B, TaskSwitchSource::Jmp, 7), &mut v, &m);
            assert_eq!(v.injected, [want], "slot {slot} selector {sel:#x}");
            assert_eq!(v.rip, 0x5000);
            assert_eq!(v.segs[6].selector, SEL_B);
            assert_eq!(v.segs[..6], old_segs[..6]);
        }
        // A not-present data segment (ES; SS moved to a copy at 0x40): #NP.
        let (mut v, m) = (vcpu(), ram());
        m.write(GDT + u64::from(SEL_DATA) + 5, &[0x12]).unwrap();
        m.write(GDT + 0x40, &0x00cf_9200_0000_ffffu64.to_le_bytes())
            .unwrap();
        v.gdtr.limit = 0x47;
        m.write(TSS_B + 0x50, &0x40u32.to_le_bytes()).unwrap();
        handle_task_switch(&exit(SEL_B, TaskSwitchSource::Jmp, 7), &mut v, &m);
        assert_eq!(
            v.injected,
            [fault(SEGMENT_NOT_PRESENT, u32::from(SEL_DATA))]
        );
    }

    #[test]
    fn new_cr3_and_ldt_are_loaded() {
        let (mut v, m) = (vcpu(), ram());
        v.cr0 |= CR0_PG;
        // Identity-map the first 4 MiB with one 4 MiB page (CR4.PSE) in both directories.
        v.cr[4] = 1 << 4;
        v.cr[3] = 0x9000;
        m.write(0x9000, &0x83u32.to_le_bytes()).unwrap();
        m.write(0xa000, &0x83u32.to_le_bytes()).unwrap();
        m.write(TSS_B + 0x1c, &0xa000u32.to_le_bytes()).unwrap();
        // An LDT at 0xb000 in GDT slot 8 named by the new task.
        m.write(
            GDT + 0x40,
            &system_descriptor(0xb000, 0x17, 0x82).to_le_bytes(),
        )
        .unwrap();
        v.gdtr.limit = 0x47;
        m.write(TSS_B + 0x60, &0x40u32.to_le_bytes()).unwrap();
        handle_task_switch(&exit(SEL_B, TaskSwitchSource::Jmp, 7), &mut v, &m);
        assert!(v.injected.is_empty(), "{:?}", v.injected);
        assert_eq!(v.cr[3], 0xa000);
        assert_eq!(v.pdptes, None, "not PAE");
        assert_eq!(
            (v.ldtr.selector, v.ldtr.base, v.ldtr.limit),
            (0x40, 0xb000, 0x17)
        );
        // A TSS page the guest's tables do not map: #PF in the old task.
        let (mut v, m) = (vcpu(), ram());
        v.cr0 |= CR0_PG;
        v.cr[4] = 1 << 4;
        v.cr[3] = 0x9000;
        m.write(0x9000, &0x83u32.to_le_bytes()).unwrap();
        m.write(
            GDT + u64::from(SEL_B),
            &system_descriptor(0x40_0000, 0x67, 0x89).to_le_bytes(),
        )
        .unwrap();
        handle_task_switch(&exit(SEL_B, TaskSwitchSource::Jmp, 7), &mut v, &m);
        assert_eq!(v.injected, [fault(PAGE_FAULT, 0)]);
        assert_eq!(v.cr[2], 0x40_0000);
        assert_eq!(v.rip, 0x1000);
    }

    #[test]
    fn outside_legacy_mode_or_ram_the_vm_stops() {
        let (mut v, m) = (FakeVcpu::long_mode(), ram());
        assert!(matches!(
            handle_task_switch(&exit(SEL_B, TaskSwitchSource::Jmp, 7), &mut v, &m),
            ExitAction::Stop(StopReason::Unhandled { .. })
        ));
        let (mut v, m) = (vcpu(), ram());
        m.write(
            GDT + u64::from(SEL_B),
            &system_descriptor(0xfee0_0000, 0x67, 0x89).to_le_bytes(),
        )
        .unwrap();
        assert!(matches!(
            handle_task_switch(&exit(SEL_B, TaskSwitchSource::Jmp, 7), &mut v, &m),
            ExitAction::Stop(StopReason::Unhandled {
                info: 0xfee0_0000,
                ..
            })
        ));
    }
}
