//! Switching a host CPU between stacks: each vCPU loop of the scheduler
//! (`sched`) runs on a stack of its own and gives the CPU back at its
//! yield points. A switch saves the callee-saved registers (System V
//! AMD64 ABI 3.2.1: RBX, RBP, R12-R15) and RSP of the one side and loads
//! the other's; Keel runs with interrupts off and uses no x87/SSE state
//! (soft-float target), so nothing else belongs to a context.

use alloc::vec::Vec;
use core::sync::atomic::AtomicU64;

core::arch::global_asm!(
    ".global keel_switch_stack",
    "keel_switch_stack:",
    "push rbp",
    "push rbx",
    "push r12",
    "push r13",
    "push r14",
    "push r15",
    "mov [rdi], rsp",
    "mov rsp, rsi",
    "pop r15",
    "pop r14",
    "pop r13",
    "pop r12",
    "pop rbx",
    "pop rbp",
    "ret",
);

extern "C" {
    fn keel_switch_stack(save: *mut u64, to: u64);
}

/// A fresh stack of `size` bytes whose first switch-in starts `start`;
/// returns the stack (to keep alive while it is used) and its saved RSP.
pub fn new_context(size: usize, start: extern "C" fn() -> !) -> (Vec<u8>, u64) {
    let mut stack = alloc::vec![0u8; size];
    let top = (stack.as_mut_ptr() as u64 + size as u64) & !0xf;
    // From the top: a zero return address for `start` (it never returns),
    // `start` for the switch's RET, six zero callee-saved registers. After
    // the RET, RSP is 8 below a 16-byte boundary, as at any function entry.
    let rsp = top - 8 * 8;
    let words = [0u64, 0, 0, 0, 0, 0, start as usize as u64, 0];
    let base = (rsp - stack.as_ptr() as u64) as usize;
    for (k, w) in words.iter().enumerate() {
        stack[base + 8 * k..base + 8 * k + 8].copy_from_slice(&w.to_le_bytes());
    }
    (stack, rsp)
}

/// Saves this context's RSP in `save` and continues the context saved in
/// `to`; returns when another switch names `save`'s context again.
pub fn switch(save: &AtomicU64, to: u64) {
    // SAFETY: `to` is an RSP saved by this function or made by
    // `new_context`, on a stack that is still alive (`sched` frees a stack
    // only after its task ended and switched away for good); the callee-
    // saved registers are restored by the assembly, the others are
    // clobbered as for any extern "C" call.
    // `save` is an atomic word that outlives the switch.
    unsafe { keel_switch_stack(save.as_ptr(), to) };
}
