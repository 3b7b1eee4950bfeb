//! Bootable test disk images for Keel's IDE controller and the firmware's
//! disk services. Each bin links into a flat disk image (see `disk.ld`).
#![no_std]

/// The images never run Rust code that could panic; this only satisfies `no_std`.
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {
        core::hint::spin_loop();
    }
}
