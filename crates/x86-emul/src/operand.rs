//! Operands: registers by iced-x86 name, effective-address computation for ModR/M and
//! moffs forms (SDM Vol 2A 2.1.5), immediates, and read/modify/write of a destination.

use iced_x86::{Instruction, OpKind, Register};

use crate::access::{Ctx, Pieces};
use crate::cpu::{Cpu, Gpr, Sreg};
use crate::error::{Error, Exception};
use crate::flags::mask;
use crate::memory::Memory;
use crate::paging::AccessKind;

/// A general-purpose register as an instruction names it: the 64-bit register, the
/// width, and whether it is one of AH/CH/DH/BH.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct RegRef {
    pub gpr: Gpr,
    pub size: usize,
    pub high8: bool,
}

pub(crate) fn reg_ref(r: Register) -> Option<RegRef> {
    if !r.is_gpr() {
        return None;
    }
    if r.is_gpr8() {
        let n = r as usize - Register::AL as usize;
        return Some(match n {
            0..=3 => RegRef {
                gpr: Gpr::from_index(n),
                size: 1,
                high8: false,
            },
            4..=7 => RegRef {
                gpr: Gpr::from_index(n - 4),
                size: 1,
                high8: true,
            },
            _ => RegRef {
                gpr: Gpr::from_index(n - 4),
                size: 1,
                high8: false,
            },
        });
    }
    let n = r.full_register() as usize - Register::RAX as usize;
    Some(RegRef {
        gpr: Gpr::from_index(n),
        size: r.size(),
        high8: false,
    })
}

pub(crate) fn sreg_of(r: Register) -> Option<Sreg> {
    Some(match r {
        Register::ES => Sreg::Es,
        Register::CS => Sreg::Cs,
        Register::SS => Sreg::Ss,
        Register::DS => Sreg::Ds,
        Register::FS => Sreg::Fs,
        Register::GS => Sreg::Gs,
        _ => return None,
    })
}

/// A memory operand after effective-address computation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MemRef {
    pub sreg: Sreg,
    /// Effective address, truncated to the address size.
    pub offset: u64,
    /// Address size in bytes.
    pub addr_size: usize,
}

/// Where an operand lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Loc {
    Reg(RegRef),
    Mem(MemRef),
    Imm(u64),
}

/// A destination resolved for read/modify/write: the value was read, the write goes
/// to the same place without translating again.
pub(crate) enum Dest {
    Reg(RegRef),
    Mem(Pieces),
}

impl<C: Cpu, M: Memory> Ctx<'_, C, M> {
    pub fn get_reg(&self, r: RegRef) -> u64 {
        let v = self.cpu.gpr(r.gpr);
        if r.high8 {
            (v >> 8) & 0xFF
        } else {
            v & mask(r.size)
        }
    }

    /// Write a register as the instruction would: 32-bit writes zero the upper half,
    /// 8- and 16-bit writes keep the rest (SDM Vol 1 3.4.1.1).
    pub fn set_reg(&mut self, r: RegRef, value: u64) {
        let old = self.cpu.gpr(r.gpr);
        let new = match (r.size, r.high8) {
            (1, true) => (old & !0xFF00) | ((value & 0xFF) << 8),
            (4, _) => value & 0xFFFF_FFFF,
            (8, _) => value,
            (s, _) => (old & !mask(s)) | (value & mask(s)),
        };
        self.cpu.set_gpr(r.gpr, new);
    }

    pub fn gpr_sized(&self, gpr: Gpr, size: usize) -> u64 {
        self.cpu.gpr(gpr) & mask(size)
    }

    pub fn set_gpr_sized(&mut self, gpr: Gpr, size: usize, value: u64) {
        self.set_reg(
            RegRef {
                gpr,
                size,
                high8: false,
            },
            value,
        );
    }

    /// Effective address of a `OpKind::Memory` operand.
    pub fn mem_ref(&self, insn: &Instruction) -> Result<MemRef, Error> {
        let base = insn.memory_base();
        let index = insn.memory_index();
        let addr_size = if base != Register::None && base != Register::RIP && base != Register::EIP
        {
            base.size()
        } else if index != Register::None {
            index.size()
        } else if base == Register::RIP {
            8
        } else if base == Register::EIP {
            4
        } else if insn.memory_displ_size() >= 2 {
            insn.memory_displ_size() as usize
        } else {
            (self.mode.code_bits(&self.cpu.segment(Sreg::Cs)) / 8) as usize
        };
        let mut ea = insn.memory_displacement64();
        if base != Register::None && base != Register::RIP && base != Register::EIP {
            let r = reg_ref(base).ok_or(Exception::InvalidOpcode)?;
            ea = ea.wrapping_add(self.get_reg(r));
        }
        if index != Register::None {
            let r = reg_ref(index).ok_or(Exception::InvalidOpcode)?;
            ea = ea.wrapping_add(
                self.get_reg(r)
                    .wrapping_mul(u64::from(insn.memory_index_scale())),
            );
        }
        let sreg = sreg_of(insn.memory_segment()).ok_or(Exception::InvalidOpcode)?;
        Ok(MemRef {
            sreg,
            offset: ea & mask(addr_size),
            addr_size,
        })
    }

    /// Where operand `i` lives.
    pub fn loc(&self, insn: &Instruction, i: u32) -> Result<Loc, Error> {
        Ok(match insn.op_kind(i) {
            OpKind::Register => {
                Loc::Reg(reg_ref(insn.op_register(i)).ok_or(Exception::InvalidOpcode)?)
            }
            OpKind::Memory => Loc::Mem(self.mem_ref(insn)?),
            OpKind::Immediate8
            | OpKind::Immediate16
            | OpKind::Immediate32
            | OpKind::Immediate64
            | OpKind::Immediate8to16
            | OpKind::Immediate8to32
            | OpKind::Immediate8to64
            | OpKind::Immediate32to64 => Loc::Imm(insn.immediate(i)),
            _ => return Err(Exception::InvalidOpcode.into()),
        })
    }

    /// Read `size` bytes from a location.
    pub fn read_loc(&mut self, loc: Loc, size: usize) -> Result<u64, Error> {
        match loc {
            Loc::Reg(r) => Ok(self.get_reg(r)),
            Loc::Mem(m) => self.read_mem(m.sreg, m.offset, size),
            Loc::Imm(v) => Ok(v & mask(size)),
        }
    }

    /// Write `size` bytes to a location.
    pub fn write_loc(&mut self, loc: Loc, size: usize, value: u64) -> Result<(), Error> {
        match loc {
            Loc::Reg(r) => {
                self.set_reg(r, value);
                Ok(())
            }
            Loc::Mem(m) => self.write_mem(m.sreg, m.offset, size, value),
            Loc::Imm(_) => Err(Exception::InvalidOpcode.into()),
        }
    }

    /// Resolve a destination for writing (checks and translation first), then read it.
    pub fn read_dest(&mut self, loc: Loc, size: usize) -> Result<(Dest, u64), Error> {
        match loc {
            Loc::Reg(r) => Ok((Dest::Reg(r), self.get_reg(r))),
            Loc::Mem(m) => {
                let p = self.resolve(m.sreg, m.offset, size, AccessKind::Write)?;
                let v = self.read_value(&p)?;
                Ok((Dest::Mem(p), v))
            }
            Loc::Imm(_) => Err(Exception::InvalidOpcode.into()),
        }
    }

    pub fn write_dest(&mut self, dest: &Dest, value: u64) -> Result<(), Error> {
        match dest {
            Dest::Reg(r) => {
                self.set_reg(*r, value);
                Ok(())
            }
            Dest::Mem(p) => self.write_value(p, value),
        }
    }
}

/// Operand size of operand `i` in bytes: a register's width, or the memory operand's.
pub(crate) fn op_size(insn: &Instruction, i: u32) -> usize {
    match insn.op_kind(i) {
        OpKind::Register => insn.op_register(i).size(),
        _ => insn.memory_size().size(),
    }
}
