//! Networking: the emulated network cards and the backend each one sends
//! its frames through (a port of Keel's switch, a test loopback).

pub mod backend;
pub mod e1000;
pub mod loopback;
pub mod offload;
pub mod shared;
pub mod switch;

pub use backend::{MacAddress, NetBackend, NetCounters, MAX_FRAME_LEN, MIN_FRAME_LEN};
pub use loopback::Loopback;
pub use shared::SharedNetBackend;
pub use switch::{Switch, SwitchFull, SwitchPort};
