//! Golden tests of `kexec -c -p --print-plan` on captured and synthesised machines
//! (tests/fixtures/machines/*): the whole kexec_load plan — segments, entry, e820 map, ELF
//! core headers, command line — is compared with tests/fixtures/plans/<machine>[-variant].json.
//! `UPDATE_GOLDEN=1 cargo test -p kexec --test print_plan` rewrites them (review the diff).

use std::path::{Path, PathBuf};
use std::process::Command;

mod common;
use common::fake_bzimage;

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn run(machine: &str, extra: &[&str]) -> std::process::Output {
    run_as("-p", machine, extra)
}

fn run_as(kind: &str, machine: &str, extra: &[&str]) -> std::process::Output {
    let dir = tempfile::tempdir().unwrap();
    let kernel = dir.path().join("bzImage");
    let initrd = dir.path().join("initrd");
    std::fs::write(&kernel, fake_bzimage(3 << 20)).unwrap();
    std::fs::write(&initrd, vec![0x5a; 5 << 20]).unwrap();
    let sysroot = workspace().join("tests/fixtures/machines").join(machine);
    Command::new(env!("CARGO_BIN_EXE_kexec"))
        .args(["-c", kind, "--print-plan", "--append", "console=ttyS0"])
        .args(extra)
        .arg("--sysroot")
        .arg(&sysroot)
        .arg("--initrd")
        .arg(&initrd)
        .arg(&kernel)
        .output()
        .unwrap()
}

/// The plan as JSON, with the purgatory blob's own length (which changes with its code) masked.
fn plan(machine: &str, extra: &[&str]) -> serde_json::Value {
    plan_as("-p", machine, extra)
}

fn plan_as(kind: &str, machine: &str, extra: &[&str]) -> serde_json::Value {
    let out = run_as(kind, machine, extra);
    assert!(out.status.success(), "{machine}: {}", String::from_utf8_lossy(&out.stderr));
    let mut v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    for seg in v["segments"].as_array_mut().unwrap() {
        if seg["name"] == "purgatory" {
            seg["bufsz"] = "<purgatory blob length>".into();
        }
    }
    v
}

fn golden(name: &str, v: &serde_json::Value) {
    let path = workspace().join("tests/fixtures/plans").join(format!("{name}.json"));
    let text = serde_json::to_string_pretty(v).unwrap() + "\n";
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        std::fs::write(&path, &text).unwrap();
    }
    let want =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e} (run with UPDATE_GOLDEN=1)", path.display()));
    assert!(
        text == want,
        "{name}: plan differs from {}; rerun with UPDATE_GOLDEN=1 and review:\n{text}",
        path.display()
    );
}

fn hex(v: &serde_json::Value) -> u64 {
    u64::from_str_radix(v.as_str().unwrap().trim_start_matches("0x"), 16).unwrap()
}

/// Invariants every plan must keep, checked independently of the golden text.
fn check(v: &serde_json::Value) {
    let region = (hex(&v["load_region"]["start"]), hex(&v["load_region"]["end"]));
    let segs = v["segments"].as_array().unwrap();
    assert!(segs.len() <= 16);
    let mut ranges = Vec::new();
    for s in segs {
        let (mem, memsz) = (hex(&s["mem"]), hex(&s["memsz"]));
        assert_eq!(mem % 4096, 0, "{s}");
        assert_eq!(memsz % 4096, 0, "{s}");
        assert!(mem >= region.0 && mem + memsz - 1 <= region.1, "{s} outside the crash region");
        ranges.push((mem, mem + memsz));
    }
    ranges.sort();
    assert!(ranges.windows(2).all(|w| w[0].1 <= w[1].0), "overlap: {ranges:x?}");
    let entry = hex(&v["entry"]);
    let purgatory = segs.iter().find(|s| s["name"] == "purgatory").unwrap();
    assert_eq!(entry, hex(&purgatory["mem"]));
    if v["kernel"]["format"] == "bzImage" {
        assert_eq!(hex(&v["kernel"]["entry64"]), hex(&v["kernel"]["load"]) + 0x200);
    }
    if v["panic"] == false {
        assert!(v["elfcorehdr"].is_null() && v["backup"].is_null());
        return;
    }
    let elfcorehdr = hex(&v["elfcorehdr"]);
    assert!(v["cmdline"].as_str().unwrap().contains(&format!("elfcorehdr={}K", elfcorehdr / 1024)));
    // No e820 RAM entry covers the ELF headers or the backup copy.
    let e820 = v["e820"].as_array().unwrap();
    for e in e820.iter().filter(|e| e["type"] == 1) {
        let (a, z) = (hex(&e["addr"]), hex(&e["addr"]) + hex(&e["size"]));
        assert!(!(a..z).contains(&elfcorehdr), "{e} covers elfcorehdr");
        if let Some(dst) = v["backup"]["dst"].as_str() {
            let dst = u64::from_str_radix(dst.trim_start_matches("0x"), 16).unwrap();
            assert!(!(a..z).contains(&dst), "{e} covers the backup copy");
        }
    }
}

#[test]
fn qemu_5level_capture() {
    let v = plan("qemu-1g-2cpu-crash256m-la57", &[]);
    check(&v);
    assert_eq!(v["machine"]["paging_levels"], 5);
    assert!(v["machine"]["warnings"].as_array().unwrap().is_empty());
    golden("qemu-1g-2cpu-crash256m-la57", &v);
}

#[test]
fn qemu_4level_capture_and_variants() {
    let v = plan("qemu-1g-2cpu-crash256m-4level", &[]);
    check(&v);
    assert_eq!(v["machine"]["paging_levels"], 4);
    golden("qemu-1g-2cpu-crash256m-4level", &v);

    let v = plan("qemu-1g-2cpu-crash256m-4level", &["--pass-memmap-cmdline", "--no-backup", "-i"]);
    check(&v);
    assert!(v["backup"].is_null() && v["purgatory_checks"] == false);
    let cmdline = v["cmdline"].as_str().unwrap();
    assert!(cmdline.contains("memmap=exactmap memmap="), "{cmdline}");
    golden("qemu-1g-2cpu-crash256m-4level-memmap-nobackup", &v);

    let v = plan("qemu-1g-2cpu-crash256m-4level", &["--elf32-core-headers"]);
    check(&v);
    assert_eq!(v["elf_class"], "Elf32");

    // kexec -c -l: a kernel for kexec -e, placed in RAM at pref_address, with all of RAM.
    let v = plan_as("-l", "qemu-1g-2cpu-crash256m-4level", &[]);
    check(&v);
    assert_eq!(v["flags"], "0x3e0000");
    assert_eq!(v["kernel"]["load"], "0x1000000");
    assert!(!v["cmdline"].as_str().unwrap().contains("elfcorehdr"));
    golden("qemu-1g-2cpu-crash256m-4level-normal-load", &v);
}

/// `--mem-min`/`--mem-max` bound every segment; the capture kernel's memory map is unchanged.
#[test]
fn mem_min_and_mem_max_bound_the_segments() {
    let whole = plan("qemu-1g-2cpu-crash256m-4level", &[]);
    let region = (hex(&whole["load_region"]["start"]), hex(&whole["load_region"]["end"]));
    let (min, max) = (region.0 + (64 << 20), region.0 + (192 << 20) - 1);
    let v = plan("qemu-1g-2cpu-crash256m-4level", &["--mem-min", &format!("{min:#x}"), "--mem-max", &max.to_string()]);
    check(&v);
    for s in v["segments"].as_array().unwrap() {
        let (mem, memsz) = (hex(&s["mem"]), hex(&s["memsz"]));
        assert!(min <= mem && mem + memsz - 1 <= max, "{s} outside {min:#x}-{max:#x}");
    }
    assert_eq!(hex(&v["kernel"]["load"]), min, "the kernel at the bottom of the window");
    // The capture kernel still gets the whole crash region as RAM (less headers and backup).
    let ram: Vec<(u64, u64)> = v["e820"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["type"] == 1)
        .map(|e| (hex(&e["addr"]), hex(&e["addr"]) + hex(&e["size"])))
        .collect();
    assert!(ram.iter().any(|&(start, _)| start == region.0), "{ram:x?}");
    assert!(ram.iter().any(|&(_, end)| end == region.1 + 1), "{ram:x?}");

    // Bounds outside the crash region, or reversed, are refused with the reason.
    let out = run("qemu-1g-2cpu-crash256m-4level", &["--mem-max", "0x100000"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("leave nothing of the load region"), "{err}");
    let out = run("qemu-1g-2cpu-crash256m-4level", &["--mem-min", "0x2000", "--mem-max", "0x1000"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is above --mem-max"));
    let out = run("qemu-1g-2cpu-crash256m-4level", &["--mem-min", "lots"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("is not an address"));
}

#[test]
fn crash_region_high_and_low() {
    let v = plan("synth-8g-4cpu-crash-high-low", &[]);
    check(&v);
    // Everything goes into the high region; both are RAM for the capture kernel.
    assert!(hex(&v["load_region"]["start"]) > 1 << 32);
    let e820 = v["e820"].as_array().unwrap();
    assert!(e820.iter().any(|e| e["type"] == 1 && hex(&e["addr"]) == 0x0b00_0000));
    // Kernel and initrd above 4 GiB (ext_ramdisk_image), PT_LOADs skip both crash regions.
    assert!(hex(&v["kernel"]["load"]) > 1 << 32);
    let loads: Vec<(u64, u64)> = v["elf_headers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["type"] == "PT_LOAD")
        .map(|p| (hex(&p["paddr"]), hex(&p["size"])))
        .collect();
    assert!(loads.iter().all(|&(p, s)| p + s <= 0x0b00_0000 || p >= 0x1300_0000));
    golden("synth-8g-4cpu-crash-high-low", &v);

    let out = run("synth-8g-4cpu-crash-high-low", &["--elf32-core-headers"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("ELF32 core headers cannot describe"));
}

#[test]
fn more_than_128_e820_entries_offline_cpus_and_no_kcore() {
    let v = plan("synth-4g-e820-200-offline-cpus-nokcore", &[]);
    check(&v);
    assert!(v["e820"].as_array().unwrap().len() > 128);
    // One PT_NOTE per present CPU (4 of 8 possible; 2 of them offline) + VMCOREINFO.
    let notes = v["elf_headers"].as_array().unwrap().iter().filter(|p| p["type"] == "PT_NOTE").count();
    assert_eq!(notes, 5);
    // No /proc/kcore: defaults, with warnings.
    let warnings = v["machine"]["warnings"].to_string();
    assert!(warnings.contains("kcore"), "{warnings}");
    assert_eq!(v["machine"]["acpi_rsdp"], "0x3fbfa014");
    golden("synth-4g-e820-200-offline-cpus-nokcore", &v);

    // memmap= for 200+ ranges does not fit the command line: refused, not truncated.
    let out = run("synth-4g-e820-200-offline-cpus-nokcore", &["--pass-memmap-cmdline"]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("command line would be"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn gzip_and_zstd_kernels_plan_like_the_bzimage() {
    use std::io::Write as _;
    let want = plan("qemu-1g-2cpu-crash256m-4level", &[]);
    let dir = tempfile::tempdir().unwrap();
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&fake_bzimage(3 << 20)).unwrap();
    let zst = zstd::encode_all(fake_bzimage(3 << 20).as_slice(), 1).unwrap();
    let initrd = dir.path().join("initrd");
    std::fs::write(&initrd, vec![0x5a; 5 << 20]).unwrap();
    for (name, bytes) in [("bzImage.gz", gz.finish().unwrap()), ("bzImage.zst", zst)] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_kexec"))
            .args(["-c", "-p", "--print-plan", "--append", "console=ttyS0", "--sysroot"])
            .arg(workspace().join("tests/fixtures/machines/qemu-1g-2cpu-crash256m-4level"))
            .arg("--initrd")
            .arg(&initrd)
            .arg(&path)
            .output()
            .unwrap();
        assert!(out.status.success(), "{name}: {}", String::from_utf8_lossy(&out.stderr));
        let mut got: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
        for seg in got["segments"].as_array_mut().unwrap() {
            if seg["name"] == "purgatory" {
                seg["bufsz"] = "<purgatory blob length>".into();
            }
        }
        assert_eq!(got, want, "{name}");
    }
}

#[test]
fn unsupported_images_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    for (name, bytes, needle) in [
        (
            "vmlinux",
            b"\x7fELF\x02\x01\x01".to_vec(),
            "not an x86_64 vmlinux kexec can load: the ELF header is cut short",
        ),
        ("broken.gz", vec![0x1f, 0x8b, 8, 0], "cannot decompress"),
        ("kernel.xz", vec![0xfd, b'7', b'z', b'X', b'Z', 0, 0], "cannot decompress the Xz-compressed kernel"),
    ] {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_kexec"))
            .args(["-c", "-p", "--print-plan", "--sysroot"])
            .arg(workspace().join("tests/fixtures/machines/qemu-1g-2cpu-crash256m-4level"))
            .arg(&path)
            .output()
            .unwrap();
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(needle), "{name}: {err}");
    }
}

/// A vmlinux as the kernel links it: text at 16 MiB (`startup_64` at 0x1000c40), data at
/// 18 MiB, a zero-based per-CPU segment after it and init + .bss at 20 MiB.
fn fake_vmlinux() -> Vec<u8> {
    const LOADS: [(u64, u64, u64, u64, u64); 4] = [
        (0x1000, 0xffff_ffff_8100_0000, 0x100_0000, 0x10_0000, 0x10_0000),
        (0x10_1000, 0xffff_ffff_8120_0000, 0x120_0000, 0x1000, 0x1000),
        (0x10_2000, 0, 0x120_1000, 0x1000, 0x1000),
        (0x10_3000, 0xffff_ffff_8140_0000, 0x140_0000, 0x1000, 0x20_0000),
    ];
    let mut b = vec![0u8; 0x10_4000];
    b[..7].copy_from_slice(b"\x7fELF\x02\x01\x01");
    b[16..18].copy_from_slice(&2u16.to_le_bytes());
    b[18..20].copy_from_slice(&62u16.to_le_bytes());
    b[24..32].copy_from_slice(&0x100_0c40u64.to_le_bytes());
    b[32..40].copy_from_slice(&64u64.to_le_bytes());
    b[54..56].copy_from_slice(&56u16.to_le_bytes());
    b[56..58].copy_from_slice(&(LOADS.len() as u16).to_le_bytes());
    for (i, (offset, vaddr, paddr, filesz, memsz)) in LOADS.into_iter().enumerate() {
        let at = 64 + i * 56;
        b[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
        for (field, v) in [(8, offset), (16, vaddr), (24, paddr), (32, filesz), (40, memsz)] {
            b[at + field..at + field + 8].copy_from_slice(&v.to_le_bytes());
        }
    }
    b
}

#[test]
fn elf_vmlinux_plans_at_its_paddrs_and_file_load_refuses_it() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("vmlinux");
    std::fs::write(&path, fake_vmlinux()).unwrap();
    let machine = workspace().join("tests/fixtures/machines/qemu-1g-2cpu-crash256m-4level");
    let kexec = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_kexec")).args(args).arg("--sysroot").arg(&machine).arg(&path).output().unwrap()
    };
    let out = kexec(&["-c", "-p", "--print-plan", "--append", "console=ttyS0"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    check(&v);
    assert_eq!(v["kernel"]["format"], "ELF vmlinux");
    let load = hex(&v["kernel"]["load"]);
    assert_eq!(load % (2 << 20), 0, "a 2 MiB delta from the linked address");
    assert_eq!(hex(&v["kernel"]["entry64"]), load + 0xc40, "startup_64, not load + 0x200");
    let kernel = v["segments"].as_array().unwrap().iter().find(|s| s["name"] == "kernel").unwrap();
    assert_eq!((hex(&kernel["memsz"]), hex(&kernel["bufsz"])), (0x60_0000, 0x40_1000));

    // kexec_file_load takes no vmlinux: -s refuses, -a (the default) goes on with kexec_load.
    let out = kexec(&["-s", "-p", "--dry-run"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("ELF vmlinux: kexec_file_load (-s) takes only a bzImage"), "{err}");
    let out = kexec(&["-p", "--dry-run"]);
    let (stdout, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{err}");
    assert!(err.contains("loading it with kexec_load (-c)"), "{err}");
    assert!(stdout.contains("syscall:  kexec_load"), "{stdout}");
}

/// Crash hotplug: on by default where the kernel has it (the crash_hotplug and
/// crash_elfcorehdr_size files), off with --no-hotplug, and only a warning where it has not.
#[test]
fn hotplug_on_where_the_kernel_supports_it() {
    let v = plan("qemu-1g-2cpu-crash256m-4level-hotplug", &[]);
    check(&v);
    assert_eq!(v["flags"], "0x3e0005", "KEXEC_ON_CRASH | KEXEC_UPDATE_ELFCOREHDR | KEXEC_ARCH_X86_64");
    assert_eq!(v["hotplug"]["flag"], "KEXEC_UPDATE_ELFCOREHDR");
    let size = std::fs::read_to_string(
        workspace()
            .join("tests/fixtures/machines/qemu-1g-2cpu-crash256m-4level-hotplug/sys/kernel/crash_elfcorehdr_size"),
    )
    .unwrap();
    let size: u64 = size.trim().parse().unwrap();
    let hdr = v["segments"].as_array().unwrap().iter().find(|s| s["name"] == "elfcorehdr").unwrap();
    assert!(hex(&hdr["memsz"]) >= 64 + size, "{hdr}: room for the kernel's {size} bytes of program headers");
    assert_eq!(hex(&hdr["memsz"]), hex(&v["hotplug"]["elfcorehdr_memsz"]));
    golden("qemu-1g-2cpu-crash256m-4level-hotplug", &v);

    // --no-hotplug: exactly the plan of the same machine without crash hotplug.
    let off = plan("qemu-1g-2cpu-crash256m-4level-hotplug", &["--no-hotplug"]);
    assert_eq!(off, plan("qemu-1g-2cpu-crash256m-4level", &[]));
    assert!(off.get("hotplug").is_none());

    // --hotplug where the kernel cannot: a warning, and the plan without it.
    let out = run("qemu-1g-2cpu-crash256m-4level", &["--hotplug"]);
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot update a loaded capture kernel"));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["flags"], "0x3e0001");
}

/// kexec-tools' options without a meaning here are accepted with a note; those that cannot
/// work are refused with the reason, before anything is read or loaded.
#[test]
fn kexec_tools_options_are_accepted_or_refused_with_a_reason() {
    let out = run("qemu-1g-2cpu-crash256m-4level", &["--console-serial", "--serial", "ttyS0", "--elf64-core-headers"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("our purgatory prints nothing"));
    for (option, needle) in [
        (&["--reuse-initrd"][..], "pass the file with --initrd"),
        (&["--load-preserve-context"][..], "kexec jump"),
        (&["--load-jump-back-helper"][..], "kexec jump"),
        (&["--entry", "0x1000000"][..], "--entry is not supported"),
        (&["--real-mode"][..], "--real-mode is not supported"),
    ] {
        let out = run("qemu-1g-2cpu-crash256m-4level", option);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(needle), "{option:?}: {err}");
    }
}
