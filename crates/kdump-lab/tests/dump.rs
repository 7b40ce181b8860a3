//! Lab tests of `kdump dump` in the capture kernel: every codec on
//! /proc/vmcore, the flattened stream, and a full disk.

use std::path::Path;
use std::process::Command;

use kdump_lab::{LOAD_CAPTURE_KERNEL, Scenario, Vm, static_tools};

mod common;
use common::run;

fn makedumpfile_dmesg(dump: &Path) -> Vec<u8> {
    let out = dump.with_extension("makedumpfile-dmesg");
    let _ = std::fs::remove_file(&out);
    run(Command::new("makedumpfile").arg("--dump-dmesg").arg(dump).arg(&out));
    std::fs::read(&out).unwrap()
}

#[test]
fn capture_kernel_saves_every_codec_readable_by_us_and_makedumpfile() {
    let first = format!("{LOAD_CAPTURE_KERNEL}sync\necho c > /proc/sysrq-trigger\n");
    let capture = "\
kdump dmesg /proc/vmcore > /results/reference-dmesg.txt
for c in c l p z none; do
  opt=-$c; [ $c = none ] && opt=
  kdump dump $opt -d 1 /proc/vmcore /results/vmcore-$c.kdump
done
kdump dump -F -z -d 1 /proc/vmcore > /results/vmcore-z.flat
kdump dump -E -d 1 /proc/vmcore /results/vmcore.elf
# The same binary answers to makedumpfile's name, as distribution scripts call it.
ln -s /bin/kdump /bin/makedumpfile
makedumpfile -l -d 1 --message-level 1 /proc/vmcore /results/vmcore-as-makedumpfile.kdump
ls -l /results
";
    // A small machine keeps six dumps under TCG quick.
    let vm = Vm { memory_mib: 512, crashkernel: Some("160M".into()), results_disk_mib: 1024, ..Vm::default() };
    let outcome = Scenario::new("dump-codecs", &first).capture(capture).vm(vm).run().expect("scenario");
    let kdump = static_tools().unwrap().kdump;
    let reference = outcome.read_result("reference-dmesg.txt").unwrap().into_bytes();
    assert!(String::from_utf8_lossy(&reference).contains("sysrq triggered crash"));
    assert!(outcome.console.contains("Copying data: [100.0 %]"), "progress is shown on the console");

    for codec in ["c", "l", "p", "z", "none", "as-makedumpfile"] {
        let dump = outcome.result_path(&format!("vmcore-{codec}.kdump"));
        let codec = if codec == "as-makedumpfile" { "l" } else { codec };
        let ours = run(Command::new(&kdump).arg("dmesg").arg(&dump));
        assert!(ours == reference, "kdump dmesg on the -{codec} dump differs");
        // Debian's makedumpfile has zlib and lzo only.
        if ["c", "l", "none"].contains(&codec) {
            assert!(makedumpfile_dmesg(&dump) == reference, "makedumpfile --dump-dmesg on our -{codec} dump differs");
        }
        let info: serde_json::Value =
            serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).arg(&dump))).unwrap();
        assert_eq!(info["format"]["dump_level"], 1);
        assert_eq!(info["format"]["complete"], true);
        assert_eq!(info["panic"], "sysrq triggered crash");
        let cpu = info["crashing_cpu"].as_u64().expect("crashing CPU known") as usize;
        assert_eq!(info["cpus"][cpu]["crashing"], true);
        let frames: Vec<&str> =
            info["backtrace"].as_array().unwrap().iter().filter_map(|f| f["symbol"].as_str()).collect();
        for wanted in ["sysrq_handle_crash+", "panic+"] {
            assert!(frames.iter().any(|f| f.starts_with(wanted)), "-{codec}: no {wanted} in {frames:?}");
        }
    }

    // -E: gdb opens our ELF and reads kernel memory by virtual address.
    let elf = outcome.result_path("vmcore.elf");
    assert!(run(Command::new(&kdump).arg("dmesg").arg(&elf)) == reference);
    let parsed = kdump_dumpfile::ElfVmcore::open(std::fs::File::open(&elf).unwrap()).unwrap();
    let info = kdump_kernel::Vmcoreinfo::parse(kdump_dumpfile::PhysMem::vmcoreinfo(&parsed).unwrap());
    let release_at = info.symbol("init_uts_ns").unwrap() + info.offset("uts_namespace.name").unwrap() + 2 * 65;
    let gdb =
        run(Command::new("gdb").args(["-nx", "-batch", "-c"]).arg(&elf).arg("-ex").arg(format!("x/s {release_at:#x}")));
    let gdb = String::from_utf8_lossy(&gdb);
    assert!(gdb.contains(&format!("\"{}\"", info.osrelease().unwrap())), "gdb read: {gdb}");

    // -F: makedumpfile -R rebuilds our stream into a file we read identically.
    let flat = outcome.result_path("vmcore-z.flat");
    let rebuilt = outcome.run_dir.join("rebuilt-by-makedumpfile.kdump");
    let _ = std::fs::remove_file(&rebuilt);
    let stdin = std::fs::File::open(&flat).unwrap();
    let status = Command::new("makedumpfile").arg("-R").arg(&rebuilt).stdin(stdin).status().unwrap();
    assert!(status.success());
    assert!(run(Command::new(&kdump).arg("dmesg").arg(&rebuilt)) == reference);
    assert!(run(Command::new(&kdump).arg("dmesg").arg(&flat)) == reference, "the stream is readable in place too");
    let ours_z = std::fs::read(outcome.result_path("vmcore-z.kdump")).unwrap();
    let rebuilt_bytes = std::fs::read(&rebuilt).unwrap();
    // Same pages, same header fields but the timestamp: compare sizes and the data after the headers.
    assert_eq!(ours_z.len(), rebuilt_bytes.len());
    assert!(
        ours_z[8192..] == rebuilt_bytes[8192..],
        "rebuilt stream differs from the direct -z dump beyond the headers"
    );
}

#[test]
fn a_full_disk_leaves_a_dump_marked_incomplete_and_says_why() {
    let first = format!("{LOAD_CAPTURE_KERNEL}sync\necho c > /proc/sysrq-trigger\n");
    let capture = "\
mkdir /small && mount -t tmpfs -o size=24m tmpfs /small
set +e
kdump dump -z -d 1 --message-level 1 /proc/vmcore /small/vmcore 2> /results/enospc.err
echo $? > /results/enospc.rc
set -e
cat /results/enospc.err
ls -l /small
[ ! -e /small/vmcore ]
cp /small/vmcore.incomplete /results/vmcore.incomplete
";
    let vm = Vm { memory_mib: 512, crashkernel: Some("160M".into()), results_disk_mib: 256, ..Vm::default() };
    let outcome = Scenario::new("dump-enospc", &first).capture(capture).vm(vm).run().expect("scenario");
    assert_eq!(outcome.read_result("enospc.rc").unwrap().trim(), "1");
    let err = outcome.read_result("enospc.err").unwrap();
    assert!(err.contains("INCOMPLETE") && err.contains("No space left on device"), "{err}");
    assert!(err.contains("/small/vmcore.incomplete"), "the message names the partial file: {err}");

    // Readers know it is incomplete and still read what is there.
    let kdump = static_tools().unwrap().kdump;
    let partial = outcome.result_path("vmcore.incomplete");
    let info: serde_json::Value =
        serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).arg(&partial))).unwrap();
    assert_eq!(info["format"]["complete"], false, "{info:#}");
    assert!(
        info["warnings"].as_array().unwrap().iter().any(|w| w.as_str().unwrap().contains("incomplete")),
        "{info:#}"
    );
}

/// The `core_collector` lines of kdump-utils (its default, the ssh/raw default, documentation
/// examples) and of Debian's kdump-tools (its default `MAKEDUMP_ARGS` with the `-F` its
/// kdump-config adds), run unchanged in the capture kernel through the `makedumpfile` name,
/// with the pipes and redirections those scripts use, and the default as kdump-utils' kdump.sh
/// runs it on a capture kernel with several CPUs (`--num-threads=$(nproc)` appended), and its
/// howto's parallel example, `makedumpfile -c --num-threads N`, at level 0 (the whole of RAM
/// through zlib).
const CORE_COLLECTOR_LINES: &[(&str, &str)] = &[
    ("cc-utils-default", "makedumpfile -l --message-level 7 -d 31 /proc/vmcore /results/cc-utils-default"),
    (
        "cc-utils-threads",
        "makedumpfile -l --message-level 7 -d 31 --num-threads=2 /proc/vmcore /results/cc-utils-threads",
    ),
    (
        "cc-utils-flat",
        "makedumpfile -F -l --message-level 7 -d 31 /proc/vmcore | dd of=/results/cc-utils-flat.flat bs=1M",
    ),
    ("cc-utils-rebuild", "makedumpfile -R /results/cc-utils-rebuild < /results/cc-utils-flat.flat"),
    ("cc-utils-zlib", "makedumpfile -c --message-level 7 -d 31 /proc/vmcore /results/cc-utils-zlib"),
    ("cc-utils-dmesg", "makedumpfile --dump-dmesg /proc/vmcore /results/cc-utils-dmesg"),
    ("cc-utils-howto", "makedumpfile -c --num-threads 2 /proc/vmcore /results/cc-utils-howto"),
    ("cc-tools-default", "makedumpfile -F -c -d 31 /proc/vmcore > /results/cc-tools-default.flat"),
    ("cc-tools-doc", "makedumpfile -c -d 31 -F /proc/vmcore > /results/cc-tools-doc.flat"),
];

#[test]
fn distribution_core_collector_lines_run_unchanged_through_the_makedumpfile_name() {
    let first = format!("{LOAD_CAPTURE_KERNEL}sync\necho c > /proc/sysrq-trigger\n");
    let mut capture =
        String::from("ln -s /bin/kdump /bin/makedumpfile\nkdump dmesg /proc/vmcore > /results/reference-dmesg.txt\n");
    for (name, line) in CORE_COLLECTOR_LINES {
        capture.push_str(&format!("{line}\necho \"{name} rc=$?\" >> /results/rc.txt\n"));
    }
    let vm = Vm { memory_mib: 512, crashkernel: Some("160M".into()), results_disk_mib: 1024, ..Vm::default() };
    let outcome = Scenario::new("core-collector-lines", &first).capture(&capture).vm(vm).run().expect("scenario");
    let rcs = outcome.read_result("rc.txt").unwrap();
    for (name, line) in CORE_COLLECTOR_LINES {
        assert!(rcs.contains(&format!("{name} rc=0")), "`{line}` failed: {rcs}\n{}", outcome.console);
    }
    let kdump = static_tools().unwrap().kdump;
    let reference = outcome.read_result("reference-dmesg.txt").unwrap().into_bytes();
    assert!(outcome.read_result("cc-utils-dmesg").unwrap().into_bytes() == reference, "--dump-dmesg");
    // The flattened streams: Debian's makedumpfile rebuilds them on the host.
    for flat in ["cc-utils-flat", "cc-tools-default", "cc-tools-doc"] {
        let rebuilt = outcome.run_dir.join(format!("{flat}.rebuilt"));
        let _ = std::fs::remove_file(&rebuilt);
        let stdin = std::fs::File::open(outcome.result_path(&format!("{flat}.flat"))).unwrap();
        let status = Command::new("makedumpfile").arg("-R").arg(&rebuilt).stdin(stdin).status().unwrap();
        assert!(status.success(), "makedumpfile -R {flat}");
    }
    let dumps = [
        (outcome.result_path("cc-utils-default"), 31),
        (outcome.result_path("cc-utils-threads"), 31),
        (outcome.result_path("cc-utils-rebuild"), 31),
        (outcome.result_path("cc-utils-zlib"), 31),
        (outcome.result_path("cc-utils-howto"), 0),
        (outcome.run_dir.join("cc-utils-flat.rebuilt"), 31),
        (outcome.run_dir.join("cc-tools-default.rebuilt"), 31),
        (outcome.run_dir.join("cc-tools-doc.rebuilt"), 31),
    ];
    for (dump, level) in &dumps {
        let info: serde_json::Value =
            serde_json::from_slice(&run(Command::new(&kdump).args(["info", "--json"]).arg(dump))).unwrap();
        assert_eq!(info["format"]["complete"], true, "{}: {info:#}", dump.display());
        assert_eq!(info["format"]["dump_level"], *level, "{}", dump.display());
        assert_eq!(info["panic"], "sysrq triggered crash", "{}", dump.display());
        // Debian's makedumpfile reads each (zlib and lzo are the codecs it has).
        assert!(makedumpfile_dmesg(dump) == reference, "makedumpfile --dump-dmesg on {}", dump.display());
    }
}
