//! Links the shim (`shim.ld`), the multiboot test kernel (`mbtest.ld`) and
//! the bench's bzImage (`bzbench.ld`) into flat binary images.
//!
//! The link arguments only make sense for the bare-metal target; on the host
//! the bins are empty stubs and the library is what gets tested.

use std::env;

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=shim.ld");
    println!("cargo:rerun-if-changed=mbtest.ld");
    println!("cargo:rerun-if-changed=bzbench.ld");
    if env::var("TARGET").as_deref() != Ok("x86_64-unknown-none") {
        return;
    }
    let dir = env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bin=keel-shim=-T{dir}/shim.ld");
    println!("cargo:rustc-link-arg-bin=keel-mbtest=-T{dir}/mbtest.ld");
    println!("cargo:rustc-link-arg-bin=keel-bzbench=-T{dir}/bzbench.ld");
    println!("cargo:rustc-link-arg-bins=--oformat=binary");
    // The code is position-independent, but the images run at fixed addresses:
    // resolve every absolute pointer at link time (a flat image has no loader).
    println!("cargo:rustc-link-arg-bins=--no-pie");
}
