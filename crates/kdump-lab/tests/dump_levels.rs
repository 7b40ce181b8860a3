//! Lab tests of dump levels (`kdump dump -d N`): on real vmcores of a Debian
//! 6.1 kernel with 5-level (`-cpu max`) and 4-level (`-cpu Haswell-v4`)
//! paging, the pages we keep at levels 31, 17, 2, 4, 8, 16 and 1 are exactly
//! those Debian's makedumpfile keeps on the same vmcore; and `kdump dump -d 31`
//! in the capture kernel keeps what analysis needs (the log, the panic task's stack).
//!
//! One crash per paging mode serves every level. The first kernel makes some
//! page cache (tmpfs file), anonymous memory (a shell holding a big string)
//! and a hugetlb pool (compound pages with the hugetlb destructor) first.

use std::collections::BTreeSet;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;

use kdump_dumpfile::{ElfVmcore, KdumpReader, PageState, PhysMem};
use kdump_lab::{Vm, crash_and_save_vmcore, static_tools};

mod common;
use common::run;

const LEVELS: [u32; 7] = [31, 17, 2, 4, 8, 16, 1];

/// Fills memory with every class before the crash.
const BEFORE_CRASH: &str = "\
echo 8 > /proc/sys/vm/nr_hugepages || true
cat /proc/sys/vm/nr_hugepages
mkdir -p /tmp/cache && mount -t tmpfs tmpfs /tmp/cache
dd if=/dev/urandom of=/tmp/cache/file bs=1M count=16 2>/dev/null
cat /bin/kdump > /dev/null
(x=$(head -c 12000000 /dev/zero | tr '\\0' a); echo held; sleep 1000; echo ${#x}) &
sleep 8
";

/// PFNs that have a page descriptor in a kdump-compressed file.
fn described_pfns(path: &Path) -> BTreeSet<u64> {
    let mut r = KdumpReader::open(File::open(path).unwrap()).unwrap();
    let ranges = r.ram_ranges().to_vec();
    let mut set = BTreeSet::new();
    for range in ranges {
        for pfn in range {
            if r.page_desc(pfn).unwrap().is_some() {
                set.insert(pfn);
            }
        }
    }
    set
}

/// PFNs whose contents an ELF file stores.
fn present_pfns(path: &Path) -> BTreeSet<u64> {
    let mut r = ElfVmcore::open(File::open(path).unwrap()).unwrap();
    let ranges = r.ram_ranges().to_vec();
    let mut buf = vec![0u8; r.page_size() as usize];
    let mut set = BTreeSet::new();
    for range in ranges {
        for pfn in range {
            if r.read_page(pfn, &mut buf).unwrap() == PageState::Present {
                set.insert(pfn);
            }
        }
    }
    set
}

fn diff(ours: &BTreeSet<u64>, theirs: &BTreeSet<u64>) -> (Vec<u64>, Vec<u64>) {
    (ours.difference(theirs).copied().collect(), theirs.difference(ours).copied().collect())
}

/// Dumps `vmcore` at every level with both tools and compares the page sets.
fn compare_levels(kdump: &Path, vmcore: &Path, dir: &Path) {
    let mut summary = Vec::new();
    for level in LEVELS {
        let ours = dir.join(format!("kdump-d{level}.kdump"));
        let theirs = dir.join(format!("makedumpfile-d{level}.kdump"));
        let out = Command::new(kdump)
            .args(["dump", "-l", "-f", "--message-level", "1", "-d", &level.to_string()])
            .arg(vmcore)
            .arg(&ours)
            .output()
            .unwrap();
        assert!(out.status.success(), "kdump dump -d {level}: {}", String::from_utf8_lossy(&out.stderr));
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        run(Command::new("makedumpfile").args(["-l", "-f", "-d", &level.to_string()]).arg(vmcore).arg(&theirs));
        let (a, b) = (described_pfns(&ours), described_pfns(&theirs));
        let (only_ours, only_theirs) = diff(&a, &b);
        assert!(
            only_ours.is_empty() && only_theirs.is_empty(),
            "-d {level}: {} pages only in ours (first {:x?}), {} only in makedumpfile's (first {:x?}); kdump said:\n{stderr}",
            only_ours.len(),
            &only_ours[..only_ours.len().min(16)],
            only_theirs.len(),
            &only_theirs[..only_theirs.len().min(16)]
        );
        let mut r = KdumpReader::open(File::open(&ours).unwrap()).unwrap();
        assert_eq!(r.sub_header().dump_level, level as i32, "the header records the level");
        let total: u64 = r.ram_ranges().iter().map(|x| x.end - x.start).sum();
        let _ = r.page_desc(0);
        summary.push(format!("-d {level}: {} of {total} pages, same as makedumpfile", a.len()));
    }
    eprintln!("{}", summary.join("\n"));
    // Levels that drop something drop a lot on an idle machine: free pages dominate.
    let d31 = described_pfns(&dir.join("kdump-d31.kdump")).len();
    let d0 = described_pfns(&dir.join("kdump-d1.kdump")).len();
    assert!(d31 * 3 < d0, "-d 31 keeps {d31} pages of {d0}");
    compare_exclude_vmemmap(kdump, vmcore, dir);
}

/// `-e`: every vmemmap page makedumpfile -e leaves out, ours does too (makedumpfile takes
/// runs of at least 128 left-out PFNs, we take each 4 KiB of struct pages whose 64 PFNs are
/// all left out), nothing else than -d 31 keeps is lost, and the header says -e. Not compared
/// with 5-level paging: makedumpfile's vmemmap walk (`find_vmemmap_x86_64`) reads the top
/// table as a 4-level PGD, so there it leaves out pages that hold no struct pages (seen: PFNs
/// 0x100-0x11d of a 6.1 guest); ours walks the tables as the kernel does.
fn compare_exclude_vmemmap(kdump: &Path, vmcore: &Path, dir: &Path) {
    let (ours, theirs) = (dir.join("kdump-d31-e.kdump"), dir.join("makedumpfile-d31-e.kdump"));
    run(Command::new(kdump)
        .args(["dump", "-l", "-e", "-f", "--message-level", "0", "-d", "31"])
        .arg(vmcore)
        .arg(&ours));
    let work = dir.join("makedumpfile-work");
    std::fs::create_dir_all(&work).unwrap();
    run(Command::new("makedumpfile")
        .args(["-l", "-e", "-f", "-d", "31", "--work-dir"])
        .arg(&work)
        .arg(vmcore)
        .arg(&theirs));
    let d31 = described_pfns(&dir.join("kdump-d31.kdump"));
    let (e_ours, e_theirs) = (described_pfns(&ours), described_pfns(&theirs));
    assert!(e_ours.is_subset(&d31) && e_theirs.is_subset(&d31), "-e only removes pages");
    let dropped_ours: BTreeSet<u64> = d31.difference(&e_ours).copied().collect();
    let dropped_theirs: BTreeSet<u64> = d31.difference(&e_theirs).copied().collect();
    let missed: Vec<u64> = dropped_theirs.difference(&dropped_ours).copied().collect();
    assert!(
        five_level(vmcore) || missed.is_empty(),
        "{} vmemmap pages makedumpfile -e leaves out are kept by ours: {:x?}",
        missed.len(),
        &missed[..missed.len().min(16)]
    );
    assert!(!dropped_ours.is_empty(), "-e left nothing out on an idle machine");
    let status = KdumpReader::open(File::open(&ours).unwrap()).unwrap().header().status;
    assert_ne!(status & kdump_dumpfile::codec::FLAG_EXCLUDED_VMEMMAP, 0);
    eprintln!("-e: {} vmemmap pages left out ({} by makedumpfile -e)", dropped_ours.len(), dropped_theirs.len());
}

/// `-E` and `-F` apply the same filter.
fn check_elf_and_flattened(kdump: &Path, vmcore: &Path, dir: &Path) {
    let d31 = described_pfns(&dir.join("kdump-d31.kdump"));
    // -F: rebuild with makedumpfile -R and compare.
    let flat = dir.join("kdump-d31.flat");
    let stream = run(Command::new(kdump).args(["dump", "-F", "-l", "-d", "31", "--message-level", "0"]).arg(vmcore));
    std::fs::write(&flat, stream).unwrap();
    let rebuilt = dir.join("kdump-d31-rebuilt.kdump");
    let _ = std::fs::remove_file(&rebuilt);
    let status =
        Command::new("makedumpfile").arg("-R").arg(&rebuilt).stdin(File::open(&flat).unwrap()).status().unwrap();
    assert!(status.success());
    assert_eq!(described_pfns(&rebuilt), d31, "-F -d 31 keeps the same pages");
    // -E: ELF output. makedumpfile -E writes excluded runs shorter than 256 pages
    // with their contents (it splits PT_LOADs only at 256-page gaps), and so do we:
    // compare the stored page sets of both ELF files.
    let ours = dir.join("kdump-d31.elf");
    let theirs = dir.join("makedumpfile-d31.elf");
    run(Command::new(kdump).args(["dump", "-E", "-f", "-d", "31", "--message-level", "0"]).arg(vmcore).arg(&ours));
    run(Command::new("makedumpfile").args(["-E", "-f", "-d", "31"]).arg(vmcore).arg(&theirs));
    let (a, b) = (present_pfns(&ours), present_pfns(&theirs));
    let (only_ours, only_theirs) = diff(&a, &b);
    // The one known difference is ELF layout, not filtering: makedumpfile's ELF writer
    // starts each source PT_LOAD with a zero-length run and so stores an excluded run
    // of fewer than 256 pages at the *start* of a source segment (e.g. right after the
    // crashkernel hole) with its contents; we begin the PT_LOAD at the first kept page.
    // Those pages are excluded by both tools in the kdump format (compared above).
    let source = ElfVmcore::open(File::open(vmcore).unwrap()).unwrap();
    let page = source.page_size();
    let starts: Vec<u64> = source.segments().iter().map(|s| s.paddr.div_ceil(page)).collect();
    let unexplained: Vec<u64> = only_theirs
        .iter()
        .copied()
        .filter(|&pfn| {
            let Some(&start) = starts.iter().filter(|&&st| st <= pfn).max() else { return true };
            let first_kept = a.range(start..).next().copied().unwrap_or(u64::MAX);
            let leading_short_run = pfn < first_kept && first_kept - start < 256;
            !leading_short_run || d31.contains(&pfn)
        })
        .collect();
    assert!(
        only_ours.is_empty() && unexplained.is_empty(),
        "-E -d 31: {} pages only in ours (first {:x?}), {} only in makedumpfile's not explained (first {:x?})",
        only_ours.len(),
        &only_ours[..only_ours.len().min(16)],
        unexplained.len(),
        &unexplained[..unexplained.len().min(16)]
    );
    if !only_theirs.is_empty() {
        eprintln!(
            "-E -d 31: same pages as makedumpfile but {} excluded ones it stores at the start of a source segment",
            only_theirs.len()
        );
    }
}

/// `NUMBER(pgtable_l5_enabled)` of the crashed kernel.
fn five_level(vmcore: &Path) -> bool {
    let r = ElfVmcore::open(File::open(vmcore).unwrap()).unwrap();
    let info = kdump_kernel::Vmcoreinfo::parse(r.vmcoreinfo().expect("VMCOREINFO"));
    info.number("pgtable_l5_enabled").unwrap_or(0) == 1
}

fn mem_usage(kdump: &Path, vmcore: &Path) -> String {
    let text = String::from_utf8(run(Command::new(kdump).args(["dump", "--mem-usage"]).arg(vmcore))).unwrap();
    for row in ["ZERO", "NON_PRI_CACHE", "PRI_CACHE", "USER", "FREE", "KERN_DATA", "Total pages on system"] {
        assert!(text.contains(row), "no {row} in --mem-usage:\n{text}");
    }
    text
}

fn pages_in(text: &str, row: &str) -> u64 {
    let line = text.lines().find(|l| l.starts_with(row)).unwrap_or_else(|| panic!("no {row}"));
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

#[test]
fn levels_match_makedumpfile_on_5_level_paging() {
    let vm = Vm { memory_mib: 512, crashkernel: Some("160M".into()), cpu_model: "max".into(), ..Vm::default() };
    let outcome = crash_and_save_vmcore("levels-max", vm, BEFORE_CRASH, "").expect("crash and save");
    let kdump = static_tools().unwrap().kdump;
    let vmcore = outcome.result_path("vmcore");
    assert!(five_level(&vmcore), "5-level paging expected");
    compare_levels(&kdump, &vmcore, &outcome.run_dir);
    check_elf_and_flattened(&kdump, &vmcore, &outcome.run_dir);
    let usage = mem_usage(&kdump, &vmcore);
    assert!(pages_in(&usage, "USER") >= 8 * 512, "the hugetlb pool and the shell's string are user pages:\n{usage}");
    assert!(pages_in(&usage, "NON_PRI_CACHE") >= 4096, "the 16 MiB tmpfs file is cache:\n{usage}");
    assert!(pages_in(&usage, "FREE") > 0, "{usage}");
}

#[test]
fn levels_match_makedumpfile_on_4_level_paging_and_d31_in_the_capture_kernel_keeps_log_and_stack() {
    let vm = Vm { memory_mib: 512, crashkernel: Some("160M".into()), cpu_model: "Haswell-v4".into(), ..Vm::default() };
    let in_capture = "\
kdump dmesg /proc/vmcore > /results/reference-dmesg.txt
kdump dump -l -d 31 /proc/vmcore /results/capture-d31.kdump
kdump dump --mem-usage /proc/vmcore > /results/mem-usage.txt
";
    let outcome = crash_and_save_vmcore("levels-haswell", vm, BEFORE_CRASH, in_capture).expect("crash and save");
    let kdump = static_tools().unwrap().kdump;
    let vmcore = outcome.result_path("vmcore");
    assert!(!five_level(&vmcore), "4-level paging expected");
    compare_levels(&kdump, &vmcore, &outcome.run_dir);

    // The capture kernel's own -d 31 of /proc/vmcore: the same pages as makedumpfile's on the
    // raw vmcore, a log identical to makedumpfile's, and a backtrace through the panic.
    let capture: PathBuf = outcome.result_path("capture-d31.kdump");
    let theirs = outcome.run_dir.join("makedumpfile-d31.kdump");
    assert_eq!(described_pfns(&capture), described_pfns(&theirs), "capture-kernel -d 31 vs makedumpfile -d 31");
    let reference = std::fs::read(outcome.result_path("reference-dmesg.txt")).unwrap();
    assert!(String::from_utf8_lossy(&reference).contains("sysrq triggered crash"));
    assert!(run(Command::new(&kdump).arg("dmesg").arg(&capture)) == reference, "kdump dmesg on the -d 31 dump");
    let mdf = outcome.run_dir.join("capture-d31.makedumpfile-dmesg");
    let _ = std::fs::remove_file(&mdf);
    run(Command::new("makedumpfile").arg("--dump-dmesg").arg(&capture).arg(&mdf));
    assert!(std::fs::read(&mdf).unwrap() == reference, "makedumpfile --dump-dmesg on our -d 31 dump");
    let info: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).arg(&capture))).unwrap();
    assert_eq!(info["format"]["dump_level"], 31);
    assert_eq!(info["panic"], "sysrq triggered crash");
    let frames: Vec<&str> = info["backtrace"].as_array().unwrap().iter().filter_map(|f| f["symbol"].as_str()).collect();
    for wanted in ["sysrq_handle_crash+", "panic+"] {
        assert!(
            frames.iter().any(|f| f.starts_with(wanted)),
            "no {wanted} in {frames:?}: the stack pages were dropped"
        );
    }
    let usage = outcome.read_result("mem-usage.txt").unwrap();
    assert_eq!(usage, mem_usage(&kdump, &vmcore), "--mem-usage in the capture kernel and on the host");
}

/// For development: `KDUMP_LEVELS_VMCORE=/path/vmcore cargo test -p kdump-lab --test dump_levels -- --ignored`
/// compares the levels on an existing raw vmcore without booting anything.
#[test]
#[ignore = "needs KDUMP_LEVELS_VMCORE"]
fn levels_match_makedumpfile_on_a_given_vmcore() {
    let vmcore = PathBuf::from(std::env::var("KDUMP_LEVELS_VMCORE").expect("KDUMP_LEVELS_VMCORE"));
    let kdump = static_tools().unwrap().kdump;
    let dir = std::env::temp_dir().join("kdump-levels");
    std::fs::create_dir_all(&dir).unwrap();
    compare_levels(&kdump, &vmcore, &dir);
    check_elf_and_flattened(&kdump, &vmcore, &dir);
    eprintln!("{}", mem_usage(&kdump, &vmcore));
}
