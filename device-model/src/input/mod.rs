//! The PC's legacy input and system-control devices: the i8042 keyboard
//! controller with a PS/2 keyboard and mouse, and system control port A
//! (0x92), which shares the A20 gate with the controller.

pub mod a20;
pub mod i8042;
pub mod port92;
pub mod ps2_keyboard;
pub mod ps2_mouse;

pub use a20::A20Gate;
pub use i8042::I8042;
pub use port92::Port92;
pub use ps2_keyboard::Ps2Keyboard;
pub use ps2_mouse::Ps2Mouse;
