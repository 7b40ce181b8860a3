//! Lab test of `kdump dump --split` in the capture kernel: on /proc/vmcore of a real crash
//! (Debian's 6.1), three parts at level 31 next to a single-file dump at level 31; on the
//! host, Debian's makedumpfile joins the parts (`--reassemble`) into a file with the single
//! dump's pages, byte for byte per page, and so does ours; `kdump dmesg` and `kdump info` read
//! the parts as one dump. On the host we also join makedumpfile's own split of the raw vmcore,
//! and time a split dump against a single one on the same vmcore. Debian's `crash`, given the
//! kernel's debug vmlinux, opens the three parts as one dump: the panic, the backtrace, the log.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use kdump_dumpfile::{KdumpReader, PageState, PhysMem};
use kdump_lab::{LabKernel, Vm, crash_and_save_vmcore, static_tools};

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

fn open(p: &Path) -> KdumpReader<File> {
    KdumpReader::open(File::open(p).unwrap()).unwrap_or_else(|e| panic!("{}: {e}", p.display()))
}

/// Every page a dump file has: its state and, when present, its contents' hash.
fn pages(p: &Path) -> BTreeMap<u64, (PageState, u64)> {
    let mut r = open(p);
    let mut buf = vec![0u8; r.page_size() as usize];
    let mut out = BTreeMap::new();
    for range in r.ram_ranges().to_vec() {
        for pfn in range {
            let st = r.read_page(pfn, &mut buf).unwrap();
            if st != PageState::Excluded {
                out.insert(pfn, (st, fnv(&buf)));
            }
        }
    }
    out
}

fn fnv(b: &[u8]) -> u64 {
    b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x0100_0000_01b3))
}

/// `/proc/uptime`'s first number, written by the guest.
fn uptime(outcome: &kdump_lab::Outcome, name: &str) -> f64 {
    outcome.read_result(name).unwrap().split_whitespace().next().unwrap().parse().unwrap()
}

fn reassemble_with_makedumpfile(parts: &[PathBuf], out: &Path) {
    let _ = std::fs::remove_file(out);
    run(Command::new("makedumpfile").arg("--reassemble").args(parts).arg(out));
}

/// What Debian's `crash` prints for `commands` on `dumps` (one file, or the parts of a split
/// set) with the crashed kernel's debug `vmlinux`.
fn crash(vmlinux: &Path, dumps: &[PathBuf], commands: &str) -> String {
    let mut child = Command::new("crash")
        .args(["-s", "--no_scroll"])
        .arg(vmlinux)
        .args(dumps)
        .env("HOME", dumps[0].parent().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run crash (Debian's crash package)");
    child.stdin.take().unwrap().write_all(format!("{commands}\nexit\n").as_bytes()).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "crash failed ({}): {text}{}", out.status, String::from_utf8_lossy(&out.stderr));
    text
}

#[test]
fn a_split_dump_in_the_capture_kernel_joins_into_the_single_file_dump() {
    let vm = Vm { memory_mib: 512, crashkernel: Some("160M".into()), cpu_model: "Haswell-v4".into(), ..Vm::default() };
    let in_capture = "\
kdump dmesg /proc/vmcore > /results/reference-dmesg.txt
cat /proc/uptime > /results/t0
kdump dump -l -d 31 --message-level 1 /proc/vmcore /results/one
cat /proc/uptime > /results/t1
kdump dump --split -l -d 31 --message-level 1 /proc/vmcore /results/s1 /results/s2 /results/s3 2> /results/split.err
cat /proc/uptime > /results/t2
cat /results/split.err
ls -l /results
";
    let outcome = crash_and_save_vmcore("split", vm, "", in_capture).expect("crash and save");
    let kdump = static_tools().unwrap().kdump;
    let one = outcome.result_path("one");
    let parts: Vec<PathBuf> = (1..=3).map(|i| outcome.result_path(&format!("s{i}"))).collect();
    let (t0, t1, t2) = (uptime(&outcome, "t0"), uptime(&outcome, "t1"), uptime(&outcome, "t2"));
    eprintln!("capture kernel (1 CPU, TCG): single -l -d 31 {:.2} s, --split into 3 {:.2} s", t1 - t0, t2 - t1);
    eprintln!("{}", outcome.read_result("split.err").unwrap());

    // The parts: makedumpfile's split headers, ranges that cover the machine, the pages
    // shared out about evenly.
    let want = pages(&one);
    let max = open(&one).max_pfn();
    let mut next = 0;
    let mut shares = Vec::new();
    for p in &parts {
        let r = open(p);
        let sub = r.sub_header();
        assert_eq!((sub.split, sub.start_pfn_64, sub.max_mapnr_64), (1, next, max), "{}", p.display());
        assert!(sub.start_pfn_64.is_multiple_of(64), "{}: crash needs parts on 64-page words", p.display());
        assert!(!r.is_incomplete());
        shares.push(r.descriptor_count());
        next = sub.end_pfn_64;
    }
    assert_eq!(next, max);
    assert_eq!(shares.iter().sum::<u64>(), open(&one).dumpable_pages(), "every page in one part: {shares:?}");
    let (lo, hi) = (*shares.iter().min().unwrap(), *shares.iter().max().unwrap());
    // Boundaries on 64-page multiples, each within 32 pages of an even cut.
    assert!(hi - lo <= 129, "balanced by pages: {shares:?}");

    // makedumpfile joins them into a file with the single dump's pages.
    let joined = outcome.run_dir.join("joined-by-makedumpfile");
    reassemble_with_makedumpfile(&parts, &joined);
    let theirs = pages(&joined);
    assert_eq!(
        theirs.len(),
        want.len(),
        "makedumpfile's join has {} pages, the single dump {}",
        theirs.len(),
        want.len()
    );
    assert!(theirs == want, "makedumpfile's join of our parts differs from our single-file dump");
    let ours = outcome.run_dir.join("joined-by-kdump");
    let _ = std::fs::remove_file(&ours);
    run(Command::new(&kdump).args(["dump", "--reassemble"]).args(parts.iter().rev()).arg(&ours));
    assert!(pages(&ours) == want, "our join differs from the single-file dump");

    // Readers take the parts as one dump: the log of the crashed kernel, its panic.
    let reference = std::fs::read(outcome.result_path("reference-dmesg.txt")).unwrap();
    assert!(String::from_utf8_lossy(&reference).contains("sysrq triggered crash"));
    assert!(run(Command::new(&kdump).arg("dmesg").args(&parts)) == reference, "kdump dmesg on the parts");
    let mdf_dmesg = outcome.run_dir.join("joined.dmesg");
    let _ = std::fs::remove_file(&mdf_dmesg);
    run(Command::new("makedumpfile").arg("--dump-dmesg").arg(&joined).arg(&mdf_dmesg));
    assert!(std::fs::read(&mdf_dmesg).unwrap() == reference, "makedumpfile --dump-dmesg on its join of our parts");
    let info: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).args(&parts))).unwrap();
    assert_eq!(info["panic"], "sysrq triggered crash");
    assert_eq!(info["format"]["split"]["files"], 3);
    let frames: Vec<&str> = info["backtrace"].as_array().unwrap().iter().filter_map(|f| f["symbol"].as_str()).collect();
    assert!(frames.iter().any(|f| f.starts_with("sysrq_handle_crash+")), "backtrace {frames:?}");

    // crash, with the kernel's debug vmlinux, opens the three parts as one dump.
    let vmlinux = LabKernel::Bookworm.debug_vmlinux().expect("the kernel's debug vmlinux");
    let said = crash(&vmlinux, &parts, "sys\nbt");
    eprintln!("crash on the split set:\n{}", said.lines().take(40).collect::<Vec<_>>().join("\n"));
    assert!(said.contains("DUMPFILES:"), "crash takes them as a split set: {said}");
    for part in &parts {
        assert!(said.contains(&part.display().to_string()), "crash lists {}: {said}", part.display());
    }
    assert!(said.contains("PANIC: \"Kernel panic - not syncing: sysrq triggered crash\""), "crash's panic: {said}");
    assert!(said.contains("] sysrq_handle_crash at "), "crash's backtrace: {said}");
    // Its log of the crashed kernel is the one read in the capture kernel, line for line.
    let log = crash(&vmlinux, &parts, "log");
    assert!(log.contains(&*String::from_utf8_lossy(&reference)), "crash's log differs from /proc/vmcore's: {log}");

    // On the host: makedumpfile's own split of the raw vmcore, joined by us, is its single
    // dump; and the time of a split dump against a single one (2 CPUs here).
    let vmcore = outcome.result_path("vmcore");
    let dir = &outcome.run_dir;
    let mdf_one = dir.join("mdf-one");
    let mdf_parts: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("mdf-s{i}"))).collect();
    for p in mdf_parts.iter().chain([&mdf_one]) {
        let _ = std::fs::remove_file(p);
    }
    run(Command::new("makedumpfile").args(["-l", "-d", "31"]).arg(&vmcore).arg(&mdf_one));
    run(Command::new("makedumpfile")
        .args(["--split", "-l", "-d", "31", "--splitblock-size", "4096"])
        .arg(&vmcore)
        .args(&mdf_parts));
    let mdf_joined = dir.join("mdf-joined-by-kdump");
    let _ = std::fs::remove_file(&mdf_joined);
    run(Command::new(&kdump).args(["dump", "--reassemble"]).args(&mdf_parts).arg(&mdf_joined));
    assert!(pages(&mdf_joined) == pages(&mdf_one), "our join of makedumpfile's parts differs from its single dump");
    assert!(
        run(Command::new(&kdump).arg("dmesg").args(&mdf_parts)) == reference,
        "kdump dmesg on makedumpfile's parts"
    );

    let host_one = dir.join("host-one");
    let host_parts: Vec<PathBuf> = (1..=3).map(|i| dir.join(format!("host-s{i}"))).collect();
    let started = Instant::now();
    run(Command::new(&kdump)
        .args(["dump", "-f", "-l", "-d", "31", "--message-level", "0"])
        .arg(&vmcore)
        .arg(&host_one));
    let single = started.elapsed();
    let started = Instant::now();
    run(Command::new(&kdump)
        .args(["dump", "-f", "--split", "-l", "-d", "31", "--message-level", "0"])
        .arg(&vmcore)
        .args(&host_parts));
    let split = started.elapsed();
    eprintln!(
        "host (2 CPUs): single -l -d 31 {:.2} s, --split into 3 {:.2} s",
        single.as_secs_f64(),
        split.as_secs_f64()
    );
    assert!(pages(&host_one) == want, "the host's single dump of the saved vmcore is the capture kernel's");
}
