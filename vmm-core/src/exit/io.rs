//! Port I/O exits: IN/OUT, and INS/OUTS with or without REP.
//!
//! String I/O moves data between the port and guest memory at DS:rSI (OUTS) or
//! ES:rDI (INS), stepping by the operand size in the direction of RFLAGS.DF
//! (SDM Vol 2B, INS/OUTS; Vol 1 18.2.3). Keel does the whole repetition here,
//! up to [`MAX_STRING_ITERATIONS`] elements per exit, so a sector moved with one
//! REP INSW costs one exit; a longer repetition returns to the guest with rCX,
//! rSI and rDI updated and RIP unchanged, and the next exit continues it.

use super::{ExitAction, IoDirection, IoExit, Platform, StopReason};
use crate::vcpu::{CpuMode, Gpr, SegReg, VcpuState};

/// Elements one string I/O exit moves at most before the guest runs again.
pub const MAX_STRING_ITERATIONS: u64 = 4096;

const RFLAGS_DF: u64 = 1 << 10;
const CR0_PG: u64 = 1 << 31;

fn size_mask(size: u8) -> u64 {
    match size {
        1 => 0xff,
        2 => 0xffff,
        4 => 0xffff_ffff,
        _ => u64::MAX,
    }
}

/// Handles a port I/O exit.
pub(super) fn handle_io(
    io: &IoExit,
    vcpu: &mut impl VcpuState,
    platform: &mut impl Platform,
) -> ExitAction {
    let size = match io.size {
        1 | 2 | 4 => io.size,
        // The hardware only reports 1, 2 or 4; anything else is a decoding bug, not guest input.
        _ => {
            return ExitAction::Stop(StopReason::Unhandled {
                what: "port I/O of unknown size",
                rip: vcpu.rip(),
                info: u64::from(io.size),
            })
        }
    };
    if io.string.is_some() {
        return handle_string_io(io, size, vcpu, platform);
    }
    match io.direction {
        IoDirection::In => {
            let value = u64::from(platform.pio_read(io.port, size));
            let rax = vcpu.gpr(Gpr::Rax);
            // IN AL/AX keep the rest of RAX; IN EAX zero-extends into RAX (SDM Vol 1 3.4.1.1).
            let rax = if size == 4 {
                value & 0xffff_ffff
            } else {
                (rax & !size_mask(size)) | (value & size_mask(size))
            };
            vcpu.set_gpr(Gpr::Rax, rax);
        }
        IoDirection::Out => {
            let value = vcpu.gpr(Gpr::Rax) & size_mask(size);
            platform.pio_write(io.port, size, value as u32);
        }
    }
    vcpu.skip_instruction(io.len);
    ExitAction::Resume
}

/// Replaces the low `addr_size` bytes of `old` with `new`, as a string
/// instruction updates rSI/rDI/rCX: 16-bit updates keep the upper bits, 32-bit
/// updates zero-extend.
fn update_address_reg(old: u64, new: u64, addr_size: u8) -> u64 {
    match addr_size {
        2 => (old & !0xffff) | (new & 0xffff),
        4 => new & 0xffff_ffff,
        _ => new,
    }
}

fn handle_string_io(
    io: &IoExit,
    size: u8,
    vcpu: &mut impl VcpuState,
    platform: &mut impl Platform,
) -> ExitAction {
    let string = io.string.unwrap_or(super::StringIo {
        rep: false,
        address_size: None,
    });
    let mode = vcpu.mode();
    let addr_size = match string.address_size {
        Some(a @ (2 | 4 | 8)) => a,
        _ => match mode {
            CpuMode::Real | CpuMode::Protected { cs32: false } => 2,
            CpuMode::Protected { cs32: true } => 4,
            CpuMode::Long64 => 8,
        },
    };
    if vcpu.cr0() & CR0_PG != 0 {
        // Linear-to-physical translation needs the guest page walker (crates/x86-emul).
        return ExitAction::Stop(StopReason::Unhandled {
            what: "string port I/O with guest paging enabled",
            rip: vcpu.rip(),
            info: u64::from(io.port),
        });
    }
    let amask = size_mask(addr_size);
    let (seg, index_reg) = match io.direction {
        // OUTS reads DS:rSI (a segment override is not reported without decode assists);
        // INS writes ES:rDI, which cannot be overridden.
        IoDirection::Out => (SegReg::Ds, Gpr::Rsi),
        IoDirection::In => (SegReg::Es, Gpr::Rdi),
    };
    let base = vcpu.segment(seg).base;
    let rcx = vcpu.gpr(Gpr::Rcx);
    let total = if string.rep { rcx & amask } else { 1 };
    let count = total.min(MAX_STRING_ITERATIONS);
    let step = u64::from(size);
    let backwards = vcpu.rflags() & RFLAGS_DF != 0;
    let mut index = vcpu.gpr(index_reg);
    for _ in 0..count {
        // Paging is off: the linear address is the physical address (32 bits).
        let gpa = base.wrapping_add(index & amask) & 0xffff_ffff;
        let mut bytes = [0xffu8; 4];
        let buf = &mut bytes[..usize::from(size)];
        match io.direction {
            IoDirection::Out => {
                if let Err(e) = platform.memory().read(gpa, buf) {
                    // Memory that is not RAM reads as all-ones (open bus).
                    log::debug!("OUTS from non-RAM: {e}");
                    buf.fill(0xff);
                }
                let mut v = [0u8; 4];
                v[..buf.len()].copy_from_slice(buf);
                platform.pio_write(io.port, size, u32::from_le_bytes(v));
            }
            IoDirection::In => {
                let v = platform.pio_read(io.port, size).to_le_bytes();
                buf.copy_from_slice(&v[..usize::from(size)]);
                if let Err(e) = platform.memory().write(gpa, buf) {
                    log::debug!("INS to non-RAM dropped: {e}");
                }
            }
        }
        index = if backwards {
            index.wrapping_sub(step)
        } else {
            index.wrapping_add(step)
        };
    }
    vcpu.set_gpr(
        index_reg,
        update_address_reg(vcpu.gpr(index_reg), index, addr_size),
    );
    if string.rep {
        vcpu.set_gpr(
            Gpr::Rcx,
            update_address_reg(rcx, rcx.wrapping_sub(count), addr_size),
        );
    }
    if count == total {
        vcpu.skip_instruction(io.len);
    }
    ExitAction::Resume
}
