//! VM-instruction error numbers (SDM Vol 3C 31.4, Table 31-1).

/// The SDM's description of VM-instruction error `n`, if it defines one.
pub fn instruction_error_name(n: u32) -> Option<&'static str> {
    Some(match n {
        1 => "VMCALL executed in VMX root operation",
        2 => "VMCLEAR with invalid physical address",
        3 => "VMCLEAR with VMXON pointer",
        4 => "VMLAUNCH with non-clear VMCS",
        5 => "VMRESUME with non-launched VMCS",
        6 => "VMRESUME after VMXOFF",
        7 => "VM entry with invalid control field(s)",
        8 => "VM entry with invalid host-state field(s)",
        9 => "VMPTRLD with invalid physical address",
        10 => "VMPTRLD with VMXON pointer",
        11 => "VMPTRLD with incorrect VMCS revision identifier",
        12 => "VMREAD/VMWRITE from/to unsupported VMCS component",
        13 => "VMWRITE to read-only VMCS component",
        15 => "VMXON executed in VMX root operation",
        16 => "VM entry with invalid executive-VMCS pointer",
        17 => "VM entry with non-launched executive VMCS",
        18 => "VM entry with executive-VMCS pointer not VMXON pointer",
        19 => "VMCALL with non-clear VMCS",
        20 => "VMCALL with invalid VM-exit control fields",
        22 => "VMCALL with incorrect MSEG revision identifier",
        23 => "VMXOFF under dual-monitor treatment of SMIs and SMM",
        24 => "VMCALL with invalid SMM-monitor features",
        25 => "VM entry with invalid VM-execution control fields in executive VMCS",
        26 => "VM entry with events blocked by MOV SS",
        28 => "invalid operand to INVEPT/INVVPID",
        _ => return None,
    })
}

/// How a VMX instruction failed (SDM 31.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VmxInstructionError {
    /// VMfailInvalid (CF=1): there is no current VMCS to hold an error number.
    FailInvalid,
    /// VMfailValid (ZF=1) with the VM-instruction error number.
    FailValid(u32),
}

impl core::fmt::Display for VmxInstructionError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match *self {
            VmxInstructionError::FailInvalid => {
                write!(f, "VMfailInvalid (no current VMCS, or the operand is not a valid VMXON/VMCS region)")
            }
            VmxInstructionError::FailValid(n) => match instruction_error_name(n) {
                Some(name) => write!(f, "VM-instruction error {n}: {name}"),
                None => write!(f, "VM-instruction error {n} (not defined by the SDM)"),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_display() {
        assert_eq!(
            instruction_error_name(7),
            Some("VM entry with invalid control field(s)")
        );
        assert_eq!(instruction_error_name(14), None);
        assert_eq!(instruction_error_name(0), None);
        assert_eq!(
            alloc::format!("{}", VmxInstructionError::FailValid(8)),
            "VM-instruction error 8: VM entry with invalid host-state field(s)"
        );
        assert!(alloc::format!("{}", VmxInstructionError::FailValid(99)).contains("99"));
        assert!(alloc::format!("{}", VmxInstructionError::FailInvalid).contains("VMfailInvalid"));
    }
}
