//! Lab tests of `kdump dump` in the capture kernel: every codec on
//! /proc/vmcore, the flattened stream, and a full disk.

use std::path::Path;
use std::process::Command;

use kdump_lab::{LOAD_CAPTURE_KERNEL, Scenario, Vm, static_tools};

fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

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
