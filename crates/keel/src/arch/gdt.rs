//! Keel's GDT and TSS (SDM Vol 3A 3.5.1, 8.7): a 64-bit code segment, a data
//! segment, and a TSS whose first interrupt stack serves double faults, so a
//! stack overflow still reaches the fault report. The TSS also gives the CPU a
//! valid TR, which VMX requires of the host state.

use x86_64::instructions::segmentation::{Segment, CS, DS, ES, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// IST index (1-based in the IDT gate, 0-based in the TSS) for double faults.
pub const DOUBLE_FAULT_IST: u16 = 1;
const IST_STACK_SIZE: usize = 16 * 1024;

/// Builds this CPU's own GDT, TSS and double-fault stack (each CPU needs
/// its own TSS: a TSS descriptor is marked busy when loaded, and the IST
/// stack must not be shared by two CPUs faulting at once), loads the GDT,
/// reloads every segment register and loads TR. Called once per CPU; the
/// structures live for the rest of Keel's run.
pub fn init() {
    let stack: &'static mut [u8] = alloc::vec![0u8; IST_STACK_SIZE].leak();
    let stack_top = (stack.as_ptr() as u64 + IST_STACK_SIZE as u64) & !0xf;
    let mut tss = TaskStateSegment::new();
    tss.interrupt_stack_table[usize::from(DOUBLE_FAULT_IST - 1)] = VirtAddr::new(stack_top);
    let tss: &'static TaskStateSegment = alloc::boxed::Box::leak(alloc::boxed::Box::new(tss));
    let mut gdt = GlobalDescriptorTable::new();
    let code = gdt.append(Descriptor::kernel_code_segment());
    let data = gdt.append(Descriptor::kernel_data_segment());
    let tss_sel = gdt.append(Descriptor::tss_segment(tss));
    let gdt: &'static GlobalDescriptorTable = alloc::boxed::Box::leak(alloc::boxed::Box::new(gdt));
    gdt.load();
    // SAFETY: the selectors index descriptors of the GDT just loaded, which is
    // 'static; the TSS descriptor points at this CPU's 'static TSS, loaded
    // by no other CPU.
    unsafe {
        CS::set_reg(code);
        DS::set_reg(data);
        ES::set_reg(data);
        SS::set_reg(data);
        load_tss(tss_sel);
    }
}
