//! The AMD SVM backend (AMD64 APM Vol 2, chapter 15).

mod decode;
mod diagnose;
mod exit_code;
pub mod hw;
mod intercepts;
mod nmi;
mod permission_maps;
mod vcpu;
pub mod vmcb;

pub use decode::decode_exit;
pub use diagnose::pre_entry_check;
pub use exit_code::SvmExitCode;
pub use intercepts::{InterceptMisc1, InterceptMisc2};
pub use permission_maps::{IoPermissionMap, MsrPermissionMap};
pub use vcpu::{SvmVcpu, SvmVcpuConfig};
pub use vmcb::Vmcb;
