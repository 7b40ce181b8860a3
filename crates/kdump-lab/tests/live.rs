//! A dump of the running kernel, without a crash (the paper's "non-disruptive dumping"):
//! `kdump dump /proc/kcore` in a lab guest while a workload runs. The dump is filtered like
//! a crash dump, carries the kernel's log up to the moment it was taken, and says it is live.

use std::process::Command;

use kdump_dumpfile::notes::parse_notes;
use kdump_dumpfile::{ElfVmcore, KdumpReader, PhysMem};
use kdump_lab::{LabKernel, Scenario, Vm, static_tools};

/// A log line without its `[   12.345678] ` timestamp: makedumpfile's format indents the
/// continuation lines of a record where busybox `dmesg` repeats the timestamp.
fn text(line: &str) -> &str {
    match line.strip_prefix('[').and_then(|l| l.split_once("] ")) {
        Some((_, rest)) => rest.trim_start(),
        None => line.trim_start(),
    }
}

kdump_lab::kernel_matrix! {
    fn live_dump_of_the_running_kernel_from_proc_kcore(kernel) {
        live_dump(kernel);
    }
}

fn live_dump(kernel: LabKernel) {
    let first = "\
uname -r > /results/release
mkdir -p /work && mount -t tmpfs tmpfs /work
dd if=/dev/urandom of=/work/random bs=1M count=32 2>/dev/null
(while :; do cat /work/random > /dev/null; done) &
kdump dump -z -d 31 /proc/kcore /results/live.kdump 2> /results/live.err
kdump dump -E -d 31 /proc/kcore /results/live.elf 2> /results/live-elf.err
kill %1
dmesg > /results/dmesg-after.txt
";
    let vm = Vm { memory_mib: 512, crashkernel: None, results_disk_mib: 1024, ..Vm::on(kernel) };
    let outcome = Scenario::new(&format!("live-kcore-{kernel}"), first).vm(vm).run().expect("scenario");
    let err = outcome.read_result("live.err").unwrap();
    assert!(err.contains("a live dump of the running kernel"), "{kernel}: {err}");
    assert!(err.contains("dump level 31 left out") && err.contains("free"), "filtered like a crash dump: {err}");
    let live = outcome.result_path("live.kdump");
    let r = KdumpReader::open(std::fs::File::open(&live).unwrap()).unwrap();
    assert!(!r.is_incomplete() && r.dumpable_pages() > 1000, "{} pages", r.dumpable_pages());

    let kdump = static_tools().unwrap().kdump;
    let run = |args: &[&str]| {
        let out = Command::new(&kdump).args(args).arg(&live).output().unwrap();
        assert!(out.status.success(), "kdump {args:?}: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    };
    // The log as it was when the dump was taken: the guest's own dmesg afterwards starts with it.
    let ours = run(&["dmesg"]);
    let after = outcome.read_result("dmesg-after.txt").unwrap();
    let ours: Vec<&str> = ours.lines().map(text).collect();
    let theirs: Vec<&str> = after.lines().map(text).collect();
    assert!(ours.len() > 100 && ours.len() <= theirs.len(), "{} lines vs {}", ours.len(), theirs.len());
    assert!(ours == theirs[..ours.len()], "the live dump's log is not the start of the guest's dmesg");

    let info: serde_json::Value = serde_json::from_str(&run(&["info", "--json"])).unwrap();
    assert_eq!(info["kernel"]["release"].as_str(), Some(outcome.read_result("release").unwrap().trim()));
    assert!(info["live_dump_time"].as_str().is_some_and(|t| t.starts_with("20")), "{info:#}");
    assert!(info["panic"].is_null() && info["crashing_cpu"].is_null(), "no panic in a live dump: {info:#}");
    let text_report = run(&["info"]);
    assert!(text_report.contains("live dump:   of the running kernel"), "{text_report}");

    // crash's live-dump convention: a "SNAP" NT_TASKSTRUCT note with the dumping task's address,
    // in both formats; in the ELF dump (direct map addressed) that task_struct holds "kdump".
    let snap_task = |notes: &[u8]| {
        let n = parse_notes(notes, true)
            .map_while(Result::ok)
            .find(|n| n.name == b"SNAP" && n.ntype == 4)
            .unwrap_or_else(|| panic!("{kernel}: no SNAP note"));
        u64::from_le_bytes(n.desc[..8].try_into().unwrap())
    };
    let task = snap_task(PhysMem::notes(&r));
    assert!(task >> 63 == 1 && task % 64 == 0, "{kernel}: task address {task:#x}");
    assert_eq!(info["live_dump_task"].as_str(), Some(format!("{task:#x}").as_str()), "{info:#}");
    assert!(text_report.contains(&format!("taken by:    the task at {task:#x}")), "{text_report}");
    let elf_err = outcome.read_result("live-elf.err").unwrap();
    assert!(elf_err.contains("a live dump of the running kernel"), "{kernel}: {elf_err}");
    let elf_path = outcome.result_path("live.elf");
    let elf = ElfVmcore::open(std::fs::File::open(&elf_path).unwrap()).unwrap();
    let elf_task = snap_task(PhysMem::notes(&elf));
    assert!(elf_task >> 63 == 1, "{kernel}: ELF task {elf_task:#x}");
    let seg = elf
        .segments()
        .iter()
        .find(|s| s.vaddr <= elf_task && elf_task + 0x3000 <= s.vaddr + s.filesz)
        .unwrap_or_else(|| panic!("{kernel}: no PT_LOAD holds the task at {elf_task:#x}"));
    let bytes = std::fs::read(&elf_path).unwrap();
    let at = (seg.offset + elf_task - seg.vaddr) as usize;
    let task_struct = &bytes[at..at + 0x3000];
    assert!(task_struct.windows(6).any(|w| w == b"kdump\0"), "{kernel}: the SNAP task is not the kdump process");
}
