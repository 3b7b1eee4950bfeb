//! Links each disk image with `disk.ld` into a flat image that starts with its
//! boot sector (the BIOS loads sector 0 at 0000:7C00).

fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed=disk.ld");
    if std::env::var("TARGET").as_deref() != Ok("x86_64-unknown-none") {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-T{dir}/disk.ld");
    println!("cargo:rustc-link-arg-bins=--oformat=binary");
}
