//! Lab test of makedumpfile's `-x VMLINUX` and `-g VMCOREINFO` with Debian's debug vmlinux of
//! the lab's kernels (6.1, and the newest, sid's), against that kernel's own VMCOREINFO, read
//! from /proc/vmcore after a real crash:
//! - `kdump dump -g FILE -x VMLINUX` writes every key the kernel wrote that a vmlinux can tell,
//!   with the kernel's values (symbols less KERNELOFFSET); the run-time ones are left out;
//! - on 6.1, where Debian's makedumpfile `-g` writes the same key, the values agree, except
//!   its `LENGTH(node_data)` (it reads the `extern` declaration's unbounded array, where the
//!   kernel's value is MAX_NUMNODES);
//! - `kdump dump -x VMLINUX` takes the matching vmlinux, and refuses another kernel's file
//!   and a file that is no vmlinux, with the cause.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::{Command, Output};

use kdump_lab::{LabKernel, Vm, crash_and_save_vmcore, static_tools};

/// Keys whose values exist only in the running kernel, or are preprocessor constants.
const RUN_TIME: &[&str] = &[
    "SYMBOL(mem_section)",
    "LENGTH(mem_section)",
    "NUMBER(SECTION_SIZE_BITS)",
    "NUMBER(MAX_PHYSMEM_BITS)",
    "NUMBER(phys_base)",
    "NUMBER(VMALLOC_START)",
    "SYMBOL(vmemmap)",
    "NUMBER(pgtable_l5_enabled)",
    "NUMBER(KERNEL_IMAGE_SIZE)",
    "NUMBER(sme_mask)",
    "KERNELOFFSET",
    "CRASHTIME",
];

/// Preprocessor constants before 6.12, `enum pagetype` enumerators (in DWARF) since.
const PAGE_TYPES: &[&str] = &[
    "NUMBER(PAGE_BUDDY_MAPCOUNT_VALUE)",
    "NUMBER(PAGE_OFFLINE_MAPCOUNT_VALUE)",
    "NUMBER(PAGE_HUGETLB_MAPCOUNT_VALUE)",
    "NUMBER(PAGE_SLAB_MAPCOUNT_VALUE)",
    "NUMBER(PAGE_UNACCEPTED_MAPCOUNT_VALUE)",
];

fn keys(text: &str) -> BTreeMap<String, String> {
    text.lines().filter_map(|l| l.split_once('=')).map(|(k, v)| (k.to_string(), v.trim().to_string())).collect()
}

fn kdump(args: &[&std::ffi::OsStr]) -> Output {
    Command::new(static_tools().unwrap().kdump).args(args).output().expect("run kdump")
}

#[test]
fn vmcoreinfo_from_the_debug_vmlinux_is_the_kernels_own_bookworm() {
    if kdump_lab::in_matrix(LabKernel::Bookworm) {
        per_kernel(LabKernel::Bookworm);
    }
}

#[test]
fn vmcoreinfo_from_the_debug_vmlinux_is_the_kernels_own_sid() {
    if kdump_lab::in_matrix(LabKernel::Sid) {
        per_kernel(LabKernel::Sid);
    }
}

fn per_kernel(kernel: LabKernel) {
    let vm = Vm { memory_mib: 512, crashkernel: Some("160M".into()), ..Vm::on(kernel) };
    let outcome = crash_and_save_vmcore(&format!("vmlinux-{kernel}"), vm, "", "").expect("crash and save");
    let vmcore = outcome.result_path("vmcore");
    let vmlinux = kernel.debug_vmlinux().expect("the kernel's debug vmlinux");
    let dir = &outcome.run_dir;

    let source = kdump_collector::source::open(&vmcore).unwrap();
    let theirs = keys(&String::from_utf8_lossy(source.vmcoreinfo_raw().expect("the kernel's VMCOREINFO")));
    drop(source);
    let kaslr = u64::from_str_radix(&theirs["KERNELOFFSET"], 16).unwrap();

    let ours_path = dir.join("vmcoreinfo-from-vmlinux");
    let _ = std::fs::remove_file(&ours_path);
    let out = kdump(&["dump".as_ref(), "-g".as_ref(), ours_path.as_os_str(), "-x".as_ref(), vmlinux.as_os_str()]);
    assert!(out.status.success(), "kdump dump -g -x: {}", String::from_utf8_lossy(&out.stderr));
    let ours = keys(&std::fs::read_to_string(&ours_path).unwrap());

    // Every key the kernel wrote: ours has it, with the kernel's value, or it is a run-time one.
    let mut compared = 0;
    for (key, value) in &theirs {
        if RUN_TIME.contains(&key.as_str()) {
            assert!(!ours.contains_key(key), "{kernel}: {key} is known only at run time, yet written: {}", ours[key]);
            continue;
        }
        if PAGE_TYPES.contains(&key.as_str()) && !ours.contains_key(key) {
            assert_eq!(
                kernel,
                LabKernel::Bookworm,
                "{key}={value}: {kernel} has `enum pagetype`, yet it is not written"
            );
            continue;
        }
        let mine =
            ours.get(key).unwrap_or_else(|| panic!("{kernel}: {key}={value} is in the kernel's VMCOREINFO, not ours"));
        if key.starts_with("SYMBOL(") {
            let address = u64::from_str_radix(value, 16).unwrap() - kaslr;
            assert_eq!(
                mine,
                &format!("{address:x}"),
                "{kernel}: {key}: the kernel's {value} less KERNELOFFSET {kaslr:x}"
            );
        } else {
            assert_eq!(mine, value, "{kernel}: {key}");
        }
        compared += 1;
    }
    assert!(compared >= 90, "{kernel}: only {compared} keys compared");
    eprintln!("{kernel}: {compared} keys as the kernel wrote them; {} keys in all", ours.len());
    if kernel != LabKernel::Bookworm {
        return;
    }

    // Debian's makedumpfile -g on the same file.
    let mdf_path = dir.join("vmcoreinfo-by-makedumpfile");
    let _ = std::fs::remove_file(&mdf_path);
    let out = Command::new("makedumpfile").arg("-g").arg(&mdf_path).arg("-x").arg(&vmlinux).output().unwrap();
    assert!(out.status.success(), "makedumpfile -g: {}", String::from_utf8_lossy(&out.stderr));
    let mdf = keys(&std::fs::read_to_string(&mdf_path).unwrap());
    let mut shared = 0;
    for (key, value) in &mdf {
        match ours.get(key) {
            Some(_) if key == "LENGTH(node_data)" => assert_eq!(ours[key], theirs[key], "the kernel's MAX_NUMNODES"),
            Some(mine) => {
                assert_eq!(mine, value, "{key}: makedumpfile -g says {value}");
                shared += 1;
            }
            None => {}
        }
    }
    assert!(shared >= 60, "only {shared} keys shared with makedumpfile -g");

    // -x with a dump: the matching vmlinux is taken; the dump's own VMCOREINFO is what is read.
    let saved = dir.join("saved-with-x");
    let _ = std::fs::remove_file(&saved);
    let out = kdump(&[
        "dump".as_ref(),
        "-l".as_ref(),
        "-d".as_ref(),
        "31".as_ref(),
        "-x".as_ref(),
        vmlinux.as_os_str(),
        vmcore.as_os_str(),
        saved.as_os_str(),
    ]);
    assert!(out.status.success(), "kdump dump -x: {}", String::from_utf8_lossy(&out.stderr));
    let info = kdump(&["info".as_ref(), saved.as_os_str()]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("sysrq triggered crash"));

    // Another kernel's file (an ELF with another build ID) and a file that is no vmlinux.
    let other = dir.join("not-this-kernel");
    let refused = |vmlinux: &Path, want: &str| {
        let out = kdump(&["dump".as_ref(), "-x".as_ref(), vmlinux.as_os_str(), vmcore.as_os_str(), other.as_os_str()]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && err.contains(want), "-x {}: {err}", vmlinux.display());
        assert!(!other.exists(), "nothing written");
    };
    refused(&static_tools().unwrap().kexec, "another kernel");
    let image = LabKernel::Bookworm.image().unwrap();
    let out = kdump(&["dump".as_ref(), "-g".as_ref(), other.as_os_str(), "-x".as_ref(), image.as_os_str()]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && err.contains("not an x86_64 ELF vmlinux"), "-g -x vmlinuz: {err}");
    assert!(!other.exists(), "nothing written");
}
