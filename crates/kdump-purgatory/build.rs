// SPDX-License-Identifier: GPL-2.0-only
//! Builds the Rust purgatory (`<workspace>/purgatory`, a separate cargo workspace with its own
//! profiles) into `$OUT_DIR`, flattens it with `objcopy -O binary` and checks the result.
//! `src/lib.rs` embeds it with `include_bytes!`.

use std::env;
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "x86_64-unknown-linux-gnu";

fn main() {
    let manifest_dir = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let purgatory_dir = manifest_dir.join("../../purgatory");
    let sha_dir = manifest_dir.join("../kdump-sha256");

    for p in [
        purgatory_dir.join("Cargo.toml"),
        purgatory_dir.join("Cargo.lock"),
        purgatory_dir.join("build.rs"),
        purgatory_dir.join("purgatory.ld"),
        purgatory_dir.join("src"),
        sha_dir.join("Cargo.toml"),
        sha_dir.join("src"),
        manifest_dir.join("src/abi.rs"),
    ] {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    println!("cargo:rerun-if-env-changed=OBJCOPY");

    let target_dir = out_dir.join("purgatory-target");
    let cargo = env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build")
        .arg("--release")
        .arg("--offline")
        .arg("--manifest-path")
        .arg(purgatory_dir.join("Cargo.toml"))
        .arg("--target")
        .arg(TARGET)
        .arg("--target-dir")
        .arg(&target_dir)
        .current_dir(&purgatory_dir);
    // The outer build's flags, wrappers (clippy-driver, sccache), target and profile overrides
    // must not leak into the freestanding build, e.g. `RUSTFLAGS=-C target-feature=+crt-static`.
    for (key, _) in env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let keep = matches!(key, "CARGO_HOME" | "RUSTUP_HOME" | "RUSTUP_TOOLCHAIN")
            || key.starts_with("CARGO_NET_")
            || key.starts_with("CARGO_HTTP_")
            || key.starts_with("CARGO_REGISTRIES_");
        let drop = key.starts_with("CARGO_")
            || key.starts_with("RUST")
            || key.starts_with("__CARGO")
            || matches!(key, "OUT_DIR" | "TARGET" | "HOST" | "PROFILE" | "OPT_LEVEL" | "DEBUG" | "NUM_JOBS");
        if drop && !keep {
            cmd.env_remove(key);
        }
    }
    if let Some(rustc) = env::var_os("RUSTC") {
        cmd.env("RUSTC", rustc);
    }
    let out = cmd.output().expect("failed to run cargo for the purgatory");
    if !out.status.success() {
        panic!(
            "building the purgatory failed ({}):\n{}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    let elf_path = target_dir.join(TARGET).join("release").join("purgatory");
    let elf = fs::read(&elf_path).unwrap_or_else(|e| panic!("reading {}: {e}", elf_path.display()));
    check_elf(&elf);

    let bin_path = out_dir.join("purgatory.bin");
    let objcopy = env::var_os("OBJCOPY").unwrap_or_else(|| "objcopy".into());
    objcopy_binary(&objcopy, &elf_path, &bin_path);
    let blob = fs::read(&bin_path).expect("reading the flat purgatory");
    assert!(blob.len() > 24 && &blob[8..16] == b"RSPURG01", "flat purgatory has no RSPURG01 header");
}

fn objcopy_binary(objcopy: &OsStr, elf: &Path, bin: &Path) {
    let status = Command::new(objcopy)
        .arg("-O")
        .arg("binary")
        .arg(elf)
        .arg(bin)
        .status()
        .unwrap_or_else(|e| panic!("running {} (binutils objcopy; set OBJCOPY): {e}", objcopy.to_string_lossy()));
    assert!(status.success(), "objcopy -O binary failed: {status}");
}

fn u16_at(b: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(b[off..off + 2].try_into().unwrap())
}
fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}
fn u64_at(b: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(b[off..off + 8].try_into().unwrap())
}

/// Checks the invariants the flat blob relies on: linked at 0 with the entry at 0, every
/// allocated section has file contents (so blob length == memory size), and the only dynamic
/// relocations are `R_X86_64_RELATIVE` (which the entry code applies).
fn check_elf(elf: &[u8]) {
    const SHT_RELA: u32 = 4;
    const SHT_NOBITS: u32 = 8;
    const SHT_REL: u32 = 9;
    const SHF_ALLOC: u64 = 2;
    assert!(elf.len() > 64 && &elf[..4] == b"\x7fELF" && elf[4] == 2, "purgatory is not an ELF64 file");
    assert_eq!(u64_at(elf, 24), 0, "purgatory entry point must be at offset 0");
    let shoff = u64_at(elf, 40) as usize;
    let shentsize = usize::from(u16_at(elf, 58));
    let shnum = usize::from(u16_at(elf, 60));
    for i in 0..shnum {
        let sh = &elf[shoff + i * shentsize..shoff + (i + 1) * shentsize];
        let sh_type = u32_at(sh, 4);
        let flags = u64_at(sh, 8);
        let (offset, size, entsize) = (u64_at(sh, 24) as usize, u64_at(sh, 32) as usize, u64_at(sh, 56) as usize);
        assert!(
            !(sh_type == SHT_NOBITS && flags & SHF_ALLOC != 0 && size != 0),
            "purgatory has a NOBITS section; the linker script must keep all data in the file image"
        );
        assert_ne!(sh_type, SHT_REL, "purgatory has REL relocations");
        if sh_type == SHT_RELA {
            assert_eq!(entsize, 24);
            for rela in elf[offset..offset + size].chunks_exact(24) {
                let ty = u64_at(rela, 8) & 0xffff_ffff;
                assert!(ty == 0 || ty == 8, "purgatory has a relocation of type {ty}; only R_X86_64_RELATIVE works");
            }
        }
    }
}
