//! Lab test: dumps QEMU takes of a running guest (`dump-guest-memory`, ELF and `-z`
//! kdump-zlib) carry no VMCOREINFO note; `kdump` finds the kernel's own in memory and
//! reads them like the vmcore of the same machine's crash a moment later.

use std::path::Path;
use std::process::{Command, Output};

mod common;

use kdump_lab::{LOAD_CAPTURE_KERNEL, MonitorStep, Scenario, Vm, static_tools};

const HOST: &str = "qemudump-lab";
const MARKER: &str = "qemudump: the host dumps this machine now";
/// Printed by the guest (stdout, on the console) after the marker is in the log.
const TAKE_DUMPS: &str = "QEMUDUMP-TAKE-DUMPS";

fn run(cmd: &mut Command) -> Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out
}

fn info_json(kdump: &Path, dump: &Path) -> serde_json::Value {
    serde_json::from_slice(&run(Command::new(kdump).args(["info", "--json"]).arg(dump)).stdout).unwrap()
}

/// The names of the ELF notes of an ELF core file, read with the tests' own parser
/// (`common`); the notes come first in the file, so only its start is read.
fn elf_note_names(path: &Path) -> Vec<String> {
    use std::io::Read;
    let mut head = vec![0u8; 1 << 20];
    let n = std::fs::File::open(path).unwrap().read(&mut head).unwrap();
    let head = &head[..n];
    common::program_headers(head)
        .iter()
        .filter(|p| p.p_type == 4) // PT_NOTE
        .flat_map(|p| common::notes(&head[p.offset as usize..(p.offset + p.filesz) as usize]))
        .map(|(name, _, _)| name)
        .collect()
}

/// Boots `vm` with the capture kernel loaded, has QEMU dump the running guest after it
/// logged a marker (ELF and kdump-zlib), then crashes it; checks that `kdump dmesg`,
/// `kdump info` and `kdump dump -d 31` read both QEMU dumps consistently with the
/// capture kernel's /proc/vmcore of the crash. `name` names the run directory.
pub fn qemu_dumps_read_like_the_vmcore(name: &str, vm: Vm) {
    let first = format!(
        "hostname {HOST}\n{LOAD_CAPTURE_KERNEL}exec 3</dev/ttyS1\necho '{MARKER}' > /dev/kmsg\necho {TAKE_DUMPS}\n\
         read -r reply <&3\n[ \"$reply\" = done ]\necho c > /proc/sysrq-trigger\n"
    );
    let capture = "\
kdump dmesg /proc/vmcore > /results/vmcore-dmesg.txt
kdump info --json /proc/vmcore > /results/vmcore-info.json
";
    let step = MonitorStep::new(
        TAKE_DUMPS,
        &["dump-guest-memory {run}/qemu.elf", "dump-guest-memory -z {run}/qemu.kdump-zlib"],
    );
    let outcome = Scenario::new(name, &first).capture(capture).monitor(step).vm(vm).run().expect("lab run");
    let kdump = static_tools().unwrap().kdump;
    let dir = &outcome.run_dir;
    let elf = dir.join("qemu.elf");
    let zlib = dir.join("qemu.kdump-zlib");

    // What makes these dumps hard: no VMCOREINFO note, only QEMU's CPU notes.
    let notes = elf_note_names(&elf);
    assert!(notes.iter().any(|n| n == "CORE") && notes.iter().any(|n| n == "QEMU"), "{notes:?}");
    assert!(!notes.iter().any(|n| n == "VMCOREINFO"), "QEMU wrote a VMCOREINFO note: {notes:?}");
    let zlib_magic = std::fs::read(&zlib).unwrap()[..12].to_vec();
    assert!(zlib_magic == b"makedumpfile" || zlib_magic.starts_with(b"KDUMP   "), "{zlib_magic:?}");

    let vmcore_log = std::fs::read(outcome.result_path("vmcore-dmesg.txt")).unwrap();
    let vmcore_info: serde_json::Value =
        serde_json::from_str(&outcome.read_result("vmcore-info.json").unwrap()).unwrap();
    assert_eq!(vmcore_info["kernel"]["nodename"], HOST);

    let mut elf_log = Vec::new();
    for dump in [&elf, &zlib] {
        let out = run(Command::new(&kdump).arg("dmesg").arg(dump));
        let log = out.stdout;
        let text = String::from_utf8_lossy(&log);
        assert!(
            String::from_utf8_lossy(&out.stderr).contains("VMCOREINFO found in memory at 0x"),
            "{}: {}",
            dump.display(),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            text.lines().last().is_some_and(|l| l.ends_with(MARKER)),
            "{}: ends {:?}",
            dump.display(),
            text.lines().last()
        );
        assert!(vmcore_log.starts_with(&log), "{}: its log is not a prefix of the vmcore's", dump.display());
        let after = String::from_utf8_lossy(&vmcore_log[log.len()..]);
        assert!(after.contains("sysrq: Trigger a crash"), "the vmcore's log after the QEMU dump's: {after}");

        let info = info_json(&kdump, dump);
        assert_eq!(info["kernel"]["release"], vmcore_info["kernel"]["release"], "{}", dump.display());
        assert_eq!(info["kernel"]["version"], vmcore_info["kernel"]["version"], "{}", dump.display());
        assert_eq!(info["kernel"]["nodename"], HOST, "{}", dump.display());
        assert!(info["vmcoreinfo_found_at"].as_str().is_some_and(|a| a.starts_with("0x")), "{info:#}");
        let text = String::from_utf8(run(Command::new(&kdump).arg("info").arg(dump)).stdout).unwrap();
        assert!(text.contains("VMCOREINFO:  found in memory at 0x"), "{text}");
        if dump == &elf {
            elf_log = log;
        }
    }

    // Dump level 31 filters the QEMU ELF dump and writes the found note into its header:
    // Debian's makedumpfile reads the log from it like ours from the QEMU dump.
    let filtered = dir.join("qemu-d31.kdump");
    let _ = std::fs::remove_file(&filtered);
    let out = run(Command::new(&kdump).args(["dump", "-c", "-d", "31"]).arg(&elf).arg(&filtered));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("dump level 31 left out") && !stderr.contains("applied as"), "{stderr}");
    let info = info_json(&kdump, &filtered);
    assert_eq!(info["format"]["dump_level"], 31, "{info:#}");
    assert!(info.get("vmcoreinfo_found_at").is_none(), "the filtered dump carries the note: {info:#}");
    assert_eq!(run(Command::new(&kdump).arg("dmesg").arg(&filtered)).stdout, elf_log);
    let theirs = dir.join("qemu-d31.makedumpfile-dmesg");
    let _ = std::fs::remove_file(&theirs);
    run(Command::new("makedumpfile").arg("--dump-dmesg").arg(&filtered).arg(&theirs));
    assert_eq!(std::fs::read(&theirs).unwrap(), elf_log, "makedumpfile's log of our -d 31 output differs");
    // The same as ELF (-E): the note is written there too.
    let filtered_elf = dir.join("qemu-d31.elf");
    let _ = std::fs::remove_file(&filtered_elf);
    run(Command::new(&kdump).args(["dump", "-E", "-d", "31"]).arg(&elf).arg(&filtered_elf));
    assert!(elf_note_names(&filtered_elf).iter().any(|n| n == "VMCOREINFO"));
    let theirs_elf = dir.join("qemu-d31-elf.makedumpfile-dmesg");
    let _ = std::fs::remove_file(&theirs_elf);
    run(Command::new("makedumpfile").arg("--dump-dmesg").arg(&filtered_elf).arg(&theirs_elf));
    assert_eq!(std::fs::read(&theirs_elf).unwrap(), elf_log, "makedumpfile's log of our -E -d 31 output differs");
    let kept = std::fs::metadata(&filtered).unwrap().len();
    let whole = std::fs::metadata(&elf).unwrap().len();
    assert!(kept < whole / 2, "-d 31 kept {kept} of {whole} bytes");

    // The ELF dump is the size of the guest's RAM: keep the run directory small.
    let _ = std::fs::remove_file(&elf);
}

kdump_lab::kernel_matrix! {
    fn qemu_dump_guest_memory_without_vmcoreinfo_note(kernel) {
        qemu_dumps_read_like_the_vmcore(&format!("qemu-dump-{kernel}"), Vm::on(kernel));
    }
}
