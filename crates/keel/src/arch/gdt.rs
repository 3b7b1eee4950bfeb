//! Keel's GDT and TSS (SDM Vol 3A 3.5.1, 8.7): a 64-bit code segment, a data
//! segment, and a TSS whose first interrupt stack serves double faults, so a
//! stack overflow still reaches the fault report. The TSS also gives the CPU a
//! valid TR, which VMX requires of the host state.

use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST index (1-based in the IDT gate, 0-based in the TSS) for double faults.
pub const DOUBLE_FAULT_IST: u16 = 1;
const IST_STACK_SIZE: usize = 16 * 1024;

#[repr(align(16))]
#[allow(dead_code)] // only reached through a raw pointer
struct IstStack([u8; IST_STACK_SIZE]);
static mut DOUBLE_FAULT_STACK: IstStack = IstStack([0; IST_STACK_SIZE]);

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

struct Selectors {
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

/// Loads the GDT, reloads every segment register and loads TR.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        let stack = core::ptr::addr_of!(DOUBLE_FAULT_STACK) as u64;
        tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST - 1)] =
            VirtAddr::new(stack + IST_STACK_SIZE as u64);
        tss
    });
    let (gdt, sel) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        (gdt, Selectors { code, data, tss })
    });
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, which is
    // 'static; the TSS descriptor points at the 'static TSS.
    unsafe {
        CS::set_reg(sel.code);
        DS::set_reg(sel.data);
        ES::set_reg(sel.data);
        SS::set_reg(sel.data);
        load_tss(sel.tss);
    }
}
