//! Lab test of dump levels against an independent oracle: the crashed kernel's
//! own `/proc/kpageflags` and `/proc/kpagecount`, written just before the crash
//! (see `kdump_lab::oracle`). A workload first fills memory with every class:
//! page cache (tmpfs, and an ext4 file with buffer heads), anonymous memory in
//! transparent huge pages and multi-size THP (large anon folios), hugetlbfs
//! pages (a used file and a free pool), slab (dentries and inodes), zero pages
//! and free memory. Then, for every level, the pages `kdump dump -d N` keeps
//! are compared with those the kernel's flags say the level keeps; zero pages
//! (level bit 1) are decided from the raw vmcore's contents.
//!
//! `levels_agree_with_kpageflags(name, vm)` runs on whatever kernel the lab boots
//! (`KDUMP_LAB_KERNEL`); the `#[test]` runs it on the default kernel.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::path::Path;
use std::process::Command;

use kdump_dumpfile::{ElfVmcore, KdumpReader, PageState, PhysMem};
use kdump_lab::oracle::{Disagreement, LevelReport, PageFlagsSnapshot, compare_level};
use kdump_lab::{Vm, crash_and_save_vmcore, static_tools};

mod common;
use common::run;

const LEVELS: [u32; 7] = [31, 17, 2, 4, 8, 16, 1];

/// Pages the dump may drop that the snapshot says the level keeps, beyond the
/// snapshot's own page cache: what the `sync` and the crash change in the last instant.
const MAX_UNEXPLAINED_DROPS: usize = 16;

/// Pages the dump may keep that the snapshot says the level drops (state changed after
/// the snapshot: pages freed to per-CPU lists or allocated, folios taken off the LRU).
const MAX_KEPT_DROPPABLE: usize = 512;

/// Fills memory with every page class, then snapshots /proc/kpagecount and
/// /proc/kpageflags onto the results disk right before the crash.
pub const WORKLOAD: &str = r#"
echo always > /sys/kernel/mm/transparent_hugepage/enabled || true
for f in /sys/kernel/mm/transparent_hugepage/hugepages-*kB/enabled; do
  if [ -e "$f" ]; then echo always > "$f" || true; fi
done
echo 8 > /proc/sys/vm/nr_hugepages || true
mkdir -p /mnt/huge
mount -t hugetlbfs none /mnt/huge && { fallocate -l 4M /mnt/huge/held || true; }
mkdir -p /tmp/cache && mount -t tmpfs tmpfs /tmp/cache
dd if=/dev/urandom of=/tmp/cache/random bs=1M count=16 2>/dev/null
head -c 4000000 /dev/zero > /tmp/cache/zeros
dd if=/dev/urandom of=/results/ext4-file bs=1M count=8 2>/dev/null
sync
cat /results/ext4-file > /dev/null
mkdir -p /tmp/cache/slab
seq 1 3000 | sed 's|^|/tmp/cache/slab/d|' | xargs mkdir
(x=$(head -c 12000000 /dev/zero | tr '\0' a); : > /tmp/x-held; sleep 1000; echo ${#x}) &
(y=$(head -c 1000000 /dev/urandom | od -An -tx1); : > /tmp/y-held; sleep 1000; echo ${#y}) &
# The snapshot must see settled memory: wait until both strings are built and their pipelines gone.
while [ ! -e /tmp/x-held ] || [ ! -e /tmp/y-held ]; do sleep 1; done
sleep 3
grep -E 'MemFree|AnonHugePages|HugePages_Total|HugePages_Free|Slab|^Cached|Shmem:' /proc/meminfo || true
cat /proc/kpagecount > /results/kpagecount
cat /proc/kpageflags > /results/kpageflags
"#;

/// PFNs whose contents a kdump-compressed file stores: those with a page
/// descriptor, minus the zero pages of level bit 1, which all share one stored
/// zero page (the only data offset that more than one descriptor names).
fn kept_pfns(path: &Path) -> BTreeSet<u64> {
    let mut r = KdumpReader::open(File::open(path).unwrap()).unwrap();
    let ranges = r.ram_ranges().to_vec();
    let mut offsets = std::collections::HashMap::new();
    for pfn in ranges.into_iter().flatten() {
        if let Some(d) = r.page_desc(pfn).unwrap() {
            offsets.entry(d.offset).or_insert_with(Vec::new).push(pfn);
        }
    }
    offsets.into_values().filter(|pfns| pfns.len() == 1).flatten().collect()
}

/// The raw vmcore's RAM ranges, its all-zero pages, and the hash of every page's contents.
struct RawVmcore {
    ram: Vec<std::ops::Range<u64>>,
    zero: HashSet<u64>,
    pages: std::collections::HashMap<u64, Vec<u8>>,
}

fn read_raw(vmcore: &Path) -> RawVmcore {
    let mut r = ElfVmcore::open(File::open(vmcore).unwrap()).unwrap();
    let ram = r.ram_ranges().to_vec();
    let mut buf = vec![0u8; r.page_size() as usize];
    let mut zero = HashSet::new();
    for pfn in ram.iter().cloned().flatten() {
        if r.read_page(pfn, &mut buf).unwrap() == PageState::Present && buf.iter().all(|&b| b == 0) {
            zero.insert(pfn);
        }
    }
    RawVmcore { ram, zero, pages: Default::default() }
}

/// The contents of `pfn` in the raw vmcore.
fn page_of(vmcore: &Path, pfn: u64) -> Vec<u8> {
    let mut r = ElfVmcore::open(File::open(vmcore).unwrap()).unwrap();
    let mut buf = vec![0u8; r.page_size() as usize];
    r.read_page(pfn, &mut buf).unwrap();
    buf
}

/// Crashes `vm` running [`WORKLOAD`] and checks every level of `kdump dump` against
/// the kernel's page flags. Returns the per-level reports.
pub fn levels_agree_with_kpageflags(name: &str, vm: Vm) -> Vec<LevelReport> {
    let outcome = crash_and_save_vmcore(name, vm, WORKLOAD, "").expect("crash and save");
    check_levels(&outcome.results, &outcome.run_dir)
}

/// Checks every level on what a [`WORKLOAD`] run left in `results` (vmcore,
/// kpageflags, kpagecount), writing the dumps to `work`.
fn check_levels(results: &Path, work: &Path) -> Vec<LevelReport> {
    let kdump = static_tools().unwrap().kdump;
    let vmcore = results.join("vmcore");
    let flags_file = std::fs::read(results.join("kpageflags")).unwrap();
    let count_file = std::fs::read(results.join("kpagecount")).unwrap();
    let snapshot = PageFlagsSnapshot::parse(&flags_file, &count_file).unwrap();
    let classes = snapshot.classes();
    let mut raw = read_raw(&vmcore);
    let last_ram = raw.ram.iter().map(|r| r.end).max().unwrap();
    assert!(snapshot.len() >= last_ram, "kpageflags covers {} PFNs, RAM ends at {last_ram}", snapshot.len());
    let census = snapshot.census(&classes, &raw.ram);
    eprintln!("oracle census: {census:?}");
    for (class, min) in [
        (kdump_lab::oracle::OracleClass::Cache, 4096),
        (kdump_lab::oracle::OracleClass::User, 8 * 512),
        (kdump_lab::oracle::OracleClass::Free, 4096),
    ] {
        assert!(
            census.get(&class).copied().unwrap_or(0) >= min,
            "the workload made too few {class:?} pages: {census:?}"
        );
    }
    // The snapshot files' own page cache: 4 KiB blocks of the files as written.
    let snapshot_blocks: HashSet<&[u8]> = flags_file.chunks(4096).chain(count_file.chunks(4096)).collect();

    let mut reports = Vec::new();
    let mut failures = Vec::new();
    for level in LEVELS {
        let out = work.join(format!("kdump-d{level}.kdump"));
        let stderr = run(Command::new(&kdump)
            .args(["dump", "-l", "-f", "--message-level", "1", "-d", &level.to_string()])
            .arg(&vmcore)
            .arg(&out));
        let kept = kept_pfns(&out);
        let report = compare_level(&snapshot, &classes, level, &raw.ram, &|pfn| kept.contains(&pfn), &|pfn| {
            raw.zero.contains(&pfn)
        });
        eprintln!("{}", report.summary());
        // The snapshot files' own page cache was written after the snapshot: pages the
        // oracle saw free (or anything) that hold a block of those files are explained.
        let mut own = |list: &[Disagreement]| -> (u64, Vec<Disagreement>) {
            let mut own_cache = 0;
            let mut rest = Vec::new();
            for d in list {
                let page = raw.pages.entry(d.pfn).or_insert_with(|| page_of(&vmcore, d.pfn));
                if snapshot_blocks.contains(page.as_slice()) {
                    own_cache += 1;
                } else {
                    rest.push(d.clone());
                }
            }
            (own_cache, rest)
        };
        let (own_dropped, rest) = own(&report.dropped_but_kept);
        // A page with no flags and no references that is not in the buddy allocator was
        // free on a per-CPU list at the snapshot: both tools keep it, but the next instant
        // may allocate it (the sync, the crash) or merge it into the buddy allocator.
        let (pcp, unexplained): (Vec<Disagreement>, Vec<Disagreement>) =
            rest.into_iter().partition(|d| d.flags == 0 && d.count == Some(0));
        if !pcp.is_empty() {
            eprintln!("        {} dropped pages were free on per-CPU lists at the snapshot", pcp.len());
        }
        let (own_kept, kept_rest) = own(&report.kept_but_droppable);
        if own_dropped + own_kept > 0 {
            eprintln!(
                "        snapshot files' own page cache: {own_dropped} of the dropped, {own_kept} of the kept pages"
            );
        }
        for d in unexplained.iter().take(12) {
            eprintln!(
                "        dropped pfn {:#x}: oracle {} flags {:#x} count {:?}",
                d.pfn,
                d.class.name(),
                d.flags,
                d.count
            );
        }
        if unexplained.len() > MAX_UNEXPLAINED_DROPS {
            failures.push(format!(
                "-d {level}: {} pages dropped that the kernel's flags say the level keeps; kdump said:\n{}",
                unexplained.len(),
                String::from_utf8_lossy(&stderr)
            ));
        }
        if kept_rest.len() > MAX_KEPT_DROPPABLE {
            failures.push(format!(
                "-d {level}: {} pages kept that the kernel's flags say the level drops",
                kept_rest.len()
            ));
        }
        reports.push(report);
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    reports
}

kdump_lab::kernel_matrix! {
    /// Every kernel on 4-level paging (5.10 boots only so); 512 MiB guests.
    fn levels_agree_with_kpageflags_on_every_kernel(kernel) {
        let vm = Vm {
            memory_mib: 512,
            crashkernel: Some("160M".into()),
            cpu_model: "Haswell-v4".into(),
            ..Vm::on(kernel)
        };
        levels_agree_with_kpageflags(&format!("kpageflags-{kernel}"), vm);
    }
}

/// For development: `KDUMP_KPAGEFLAGS_RESULTS=target/lab-runs/<run>/results cargo test -p kdump-lab
/// --test levels_kpageflags -- --ignored` checks the levels on a finished run without booting.
#[test]
#[ignore = "needs KDUMP_KPAGEFLAGS_RESULTS"]
fn levels_agree_with_kpageflags_on_given_results() {
    let results =
        std::path::PathBuf::from(std::env::var("KDUMP_KPAGEFLAGS_RESULTS").expect("KDUMP_KPAGEFLAGS_RESULTS"));
    let work = std::env::temp_dir().join("kdump-kpageflags");
    std::fs::create_dir_all(&work).unwrap();
    check_levels(&results, &work);
}
