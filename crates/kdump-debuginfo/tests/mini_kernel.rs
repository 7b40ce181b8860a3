//! `fixtures/mini_kernel.c`, a few of the kernel's types laid out as 6.1 has them, built by gcc
//! with DWARF: every key read from it, through anonymous unions, typedefs, `extern` arrays and
//! enums; the same file without DWARF, and cut short anywhere, is an error, never a panic.

use std::path::{Path, PathBuf};
use std::process::Command;

use kdump_debuginfo::{Error, build_id, identity, vmcoreinfo};

fn build(dir: &Path) -> PathBuf {
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/mini_kernel.c");
    let out = dir.join("mini");
    let status = Command::new("gcc")
        .args(["-g", "-O0", "-nostdlib", "-static", "-no-pie", "-Wl,--build-id", "-o"])
        .arg(&out)
        .arg(&source)
        .status()
        .expect("gcc (Debian: apt-get install gcc) builds the test's small vmlinux");
    assert!(status.success());
    out
}

#[test]
fn reads_every_key_a_small_debug_kernel_has() {
    let dir = tempfile::tempdir().unwrap();
    let data = std::fs::read(build(dir.path())).unwrap();
    let text = vmcoreinfo(&data).unwrap();
    let value = |key: &str| {
        text.lines().find_map(|l| l.strip_prefix(key)?.strip_prefix('=')).unwrap_or_else(|| panic!("{key}: {text}"))
    };
    assert_eq!(value("OSRELEASE"), "6.1.0-mini");
    assert_eq!(value("PAGESIZE"), "4096");
    assert_eq!(value("BUILD-ID"), build_id(&data).unwrap());
    assert_eq!(value("BUILD-ID").len(), 40);
    for (key, want) in [
        ("SIZE(page)", "64"),
        ("OFFSET(page.flags)", "0"),
        // In anonymous structures inside anonymous unions.
        ("OFFSET(page.lru)", "8"),
        ("OFFSET(page.mapping)", "24"),
        ("OFFSET(page.private)", "40"),
        ("OFFSET(page.compound_head)", "8"),
        ("OFFSET(page.compound_order)", "17"),
        ("OFFSET(page._mapcount)", "48"),
        ("OFFSET(page._refcount)", "52"),
        // A typedef of an anonymous structure.
        ("SIZE(nodemask_t)", "128"),
        ("SIZE(free_area)", "88"),
        ("LENGTH(zone.free_area)", "11"),
        ("LENGTH(free_area.free_list)", "5"),
        ("OFFSET(zone.free_area)", "8"),
        ("OFFSET(pglist_data.node_id)", "3908"),
        // Declared `extern ... node_data[]`, defined with its length.
        ("LENGTH(node_data)", "64"),
        ("NUMBER(PG_lru)", "4"),
        ("NUMBER(PG_head_mask)", "65536"),
        ("NUMBER(N_ONLINE)", "1"),
        ("OFFSET(uts_namespace.name)", "0"),
        // `PGTY_x << 24` as the kernel's int: 0xf0000000.
        ("NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)", "-268435456"),
        ("NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)", "-201326592"),
    ] {
        assert_eq!(value(key), want, "{key}");
    }
    // The macros of x86_64: swapper_pg_dir is init_top_pgt; node_online_map is node_states[N_ONLINE].
    assert_eq!(value("SYMBOL(swapper_pg_dir)"), value("SYMBOL(init_top_pgt)"));
    let states = u64::from_str_radix(value("SYMBOL(node_states)"), 16).unwrap();
    assert_eq!(u64::from_str_radix(value("SYMBOL(node_online_map)"), 16).unwrap(), states + 128);
    // What the file does not have is not written.
    for absent in ["SYMBOL(prb)", "OFFSET(vmap_area.list)", "SYMBOL(mem_section)", "KERNELOFFSET"] {
        assert!(!text.contains(absent), "{absent}: {text}");
    }
    assert_eq!(identity(&data).unwrap(), ("6.1.0-mini".to_string(), build_id(&data)));
}

#[test]
fn a_file_without_dwarf_or_cut_short_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let full = build(dir.path());
    let stripped = dir.path().join("stripped");
    let status = Command::new("objcopy").arg("--strip-debug").arg(&full).arg(&stripped).status().unwrap();
    assert!(status.success());
    let err = vmcoreinfo(&std::fs::read(&stripped).unwrap()).unwrap_err();
    assert!(matches!(err, Error::NoDebugInfo), "{err}");
    assert!(err.to_string().contains("-dbg"), "names the fix: {err}");

    let data = std::fs::read(&full).unwrap();
    for len in (0..data.len()).step_by(97) {
        let _ = vmcoreinfo(&data[..len]);
    }
    let mut flipped = data.clone();
    for i in (0..flipped.len()).step_by(61) {
        flipped[i] ^= 0x5a;
        let _ = vmcoreinfo(&flipped);
        flipped[i] ^= 0x5a;
    }
}
