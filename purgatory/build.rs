// SPDX-License-Identifier: GPL-2.0-only
//! Link the purgatory as a freestanding static PIE laid out by `purgatory.ld`.

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR");
    for arg in [
        "-nostdlib",
        "-static-pie",
        "-Wl,--no-dynamic-linker",
        "-Wl,-z,norelro",
        "-Wl,-z,noexecstack",
        "-Wl,--gc-sections",
        "-Wl,--strip-debug",
        "-Wl,--build-id=none",
        &format!("-Wl,-T,{dir}/purgatory.ld"),
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rerun-if-changed=purgatory.ld");
    println!("cargo:rerun-if-changed=build.rs");
}
