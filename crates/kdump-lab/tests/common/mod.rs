//! Helpers shared by the lab tests: a small ELF core reader written
//! independently of the product's, so the checks do not trust the code they check.
#![allow(dead_code)]

use std::process::Command;

use kdump_machine::{MachineInfo, PhysRange};

#[derive(Debug)]
pub struct Phdr {
    pub p_type: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
}

pub fn u32_at(b: &[u8], o: usize) -> u32 {
    u32::from_le_bytes(b[o..o + 4].try_into().unwrap())
}
pub fn u64_at(b: &[u8], o: usize) -> u64 {
    u64::from_le_bytes(b[o..o + 8].try_into().unwrap())
}

pub fn program_headers(elf: &[u8]) -> Vec<Phdr> {
    assert_eq!(&elf[..4], b"\x7fELF", "not an ELF file");
    assert_eq!(elf[4], 2, "not ELF64");
    assert_eq!(u16::from_le_bytes([elf[16], elf[17]]), 4, "not ET_CORE");
    let phoff = u64_at(elf, 32) as usize;
    let phentsize = usize::from(u16::from_le_bytes([elf[54], elf[55]]));
    let phnum = usize::from(u16::from_le_bytes([elf[56], elf[57]]));
    (0..phnum)
        .map(|i| {
            let h = phoff + i * phentsize;
            Phdr {
                p_type: u32_at(elf, h),
                offset: u64_at(elf, h + 8),
                vaddr: u64_at(elf, h + 16),
                paddr: u64_at(elf, h + 24),
                filesz: u64_at(elf, h + 32),
            }
        })
        .collect()
}

/// (name, type, descriptor) of every note in a PT_NOTE segment.
pub fn notes(mut seg: &[u8]) -> Vec<(String, u32, Vec<u8>)> {
    let mut out = Vec::new();
    let pad = |n: usize| n.div_ceil(4) * 4;
    while seg.len() >= 12 {
        let (namesz, descsz, ntype) = (u32_at(seg, 0) as usize, u32_at(seg, 4) as usize, u32_at(seg, 8));
        if namesz == 0 && descsz == 0 {
            break;
        }
        let name = String::from_utf8_lossy(&seg[12..12 + namesz]).trim_end_matches('\0').to_string();
        let desc_at = 12 + pad(namesz);
        out.push((name, ntype, seg[desc_at..desc_at + descsz].to_vec()));
        seg = &seg[(desc_at + pad(descsz)).min(seg.len())..];
    }
    out
}

/// Subtracts `holes` from `ranges` (inclusive ends).
pub fn minus(ranges: &[PhysRange], holes: &[PhysRange]) -> Vec<PhysRange> {
    let mut out = ranges.to_vec();
    for h in holes {
        out = out
            .into_iter()
            .flat_map(|r| {
                let mut parts = Vec::new();
                if r.end < h.start || r.start > h.end {
                    parts.push(r);
                } else {
                    if r.start < h.start {
                        parts.push(PhysRange { start: r.start, end: h.start - 1 });
                    }
                    if r.end > h.end {
                        parts.push(PhysRange { start: h.end + 1, end: r.end });
                    }
                }
                parts
            })
            .collect();
    }
    out
}

/// Checks the notes of a capture kernel's /proc/vmcore (its first pages in
/// `head`): one merged PT_NOTE holding an NT_PRSTATUS per possible CPU of the
/// first kernel, and a VMCOREINFO note naming its release and crash time.
/// Returns the VMCOREINFO text.
pub fn check_vmcore_notes(head: &[u8], phdrs: &[Phdr], info: &MachineInfo) -> String {
    let note_seg: Vec<&Phdr> = phdrs.iter().filter(|p| p.p_type == 4).collect();
    assert_eq!(note_seg.len(), 1, "/proc/vmcore merges the notes into one PT_NOTE");
    let seg = &head[note_seg[0].offset as usize..(note_seg[0].offset + note_seg[0].filesz) as usize];
    let all = notes(seg);
    let prstatus = all.iter().filter(|(n, t, _)| n == "CORE" && *t == 1).count();
    assert_eq!(
        prstatus,
        info.possible_cpus.len(),
        "one NT_PRSTATUS per CPU: {:?}",
        all.iter().map(|n| (&n.0, n.1)).collect::<Vec<_>>()
    );
    let vmcoreinfo = all.iter().find(|(n, _, _)| n == "VMCOREINFO").expect("VMCOREINFO note");
    let text = String::from_utf8_lossy(&vmcoreinfo.2);
    assert!(text.contains(&format!("OSRELEASE={}", info.kernel_release.as_deref().unwrap())), "{text}");
    assert!(text.contains("CRASHTIME="), "{text}");
    text.into_owned()
}

/// Where the kernel text is mapped on x86_64 (`__START_KERNEL_map`).
pub const START_KERNEL_MAP: u64 = 0xffff_ffff_8000_0000;

/// The PT_LOADs of RAM (everything but the kernel-text mapping).
pub fn ram_loads(phdrs: &[Phdr]) -> Vec<&Phdr> {
    phdrs.iter().filter(|p| p.p_type == 1 && p.vaddr < START_KERNEL_MAP).collect()
}

/// The physical ranges of PT_LOADs, sorted.
pub fn phys_ranges(loads: &[&Phdr]) -> Vec<PhysRange> {
    let mut ranges: Vec<PhysRange> =
        loads.iter().map(|p| PhysRange { start: p.paddr, end: p.paddr + p.filesz - 1 }).collect();
    ranges.sort();
    ranges
}

/// `kdump info` (text and `--json`) on a dump of a sysrq crash names
/// everything, on any kernel: release, host, crash time, the panic message,
/// the crashing CPU found (not guessed) and a symbolized backtrace through
/// `sysrq_handle_crash`, from the dump alone (no vmlinux, no System.map).
/// Returns the JSON report for further checks.
pub fn check_info_names_everything(kdump: &std::path::Path, vmcore: &std::path::Path) -> serde_json::Value {
    let run = |json: bool| {
        let mut cmd = std::process::Command::new(kdump);
        cmd.arg("info");
        if json {
            cmd.arg("--json");
        }
        let out = cmd.arg(vmcore).output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
        assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).expect("kdump info prints UTF-8")
    };
    let name = vmcore.display();
    let v: serde_json::Value = serde_json::from_str(&run(true)).unwrap();
    let s = |p: &str| v.pointer(p).and_then(serde_json::Value::as_str).unwrap_or("").to_string();

    let release = s("/kernel/release");
    assert!(
        release.split('.').take(2).all(|n| !n.is_empty() && n.chars().all(|c| c.is_ascii_digit())),
        "{name}: release {release:?}"
    );
    assert!(s("/kernel/version").starts_with('#'), "{name}: version {:?}", s("/kernel/version"));
    assert_eq!(s("/kernel/machine"), "x86_64", "{name}");
    assert!(!s("/kernel/nodename").is_empty(), "{name}: no host name");
    assert!(s("/crash_time").ends_with(" UTC"), "{name}: crash time {:?}", s("/crash_time"));
    assert_eq!(s("/panic"), "sysrq triggered crash", "{name}");

    let cpu = v["crashing_cpu"].as_u64().unwrap_or_else(|| panic!("{name}: crashing CPU unknown")) as usize;
    let method = s("/crashing_cpu_found_by");
    assert!(
        ["panic_cpu", "crashing_cpu_variable", "registers_in_crash_kexec"].contains(&method.as_str()),
        "{name}: crashing CPU found by {method:?}"
    );
    assert_eq!(v["cpus"][cpu]["crashing"], true, "{name}");
    assert_ne!(v["cpus"][cpu]["pid"], 0, "{name}: the crashing CPU ran the task that wrote to sysrq-trigger");

    assert!(s("/symbols").starts_with("kallsyms tables in the dump"), "{name}: symbols from {:?}", s("/symbols"));
    let frames: Vec<String> =
        v["backtrace"].as_array().unwrap().iter().map(|f| f["symbol"].as_str().unwrap_or("").to_string()).collect();
    // The crashing CPU saved its registers in __crash_kexec: the registers agree with whatever found the CPU.
    assert!(frames.first().is_some_and(|f| f.starts_with("__crash_kexec+")), "{name}: {frames:?}");
    for wanted in ["sysrq_handle_crash", "panic"] {
        assert!(frames.iter().any(|f| f.starts_with(&format!("{wanted}+"))), "{name}: no {wanted} in {frames:?}");
    }
    assert!(v["warnings"].as_array().unwrap().is_empty(), "{name}: {}", v["warnings"]);

    let text = run(false);
    let line = |key: &str| text.lines().find(|l| l.starts_with(key)).map(|l| l[key.len()..].trim().to_string());
    assert_eq!(line("kernel:").unwrap_or_default().split(' ').next(), Some(release.as_str()), "{text}");
    assert_eq!(line("host:"), Some(s("/kernel/nodename")), "{text}");
    assert_eq!(line("panic:").as_deref(), Some("sysrq triggered crash"), "{text}");
    assert!(line("crashing CPU:").is_some_and(|l| l.starts_with(&format!("{cpu} (found by"))), "{text}");
    assert!(text.contains("(crashing)") && text.contains("sysrq_handle_crash+"), "{text}");
    v
}

/// The ELF vmlinux inside a bzImage (scripts/extract-vmlinux's job): the payload the setup
/// header points at (`payload_offset`, `payload_length`), without the 4-byte decompressed
/// size the kernel's build appends, decompressed as its magic says. Debian's kernels use
/// legacy-format lz4 (5.10, 6.1) and zstd (6.12, newest); the product's decompressor takes
/// whole files only, so this is the lab's own.
pub fn vmlinux_of(bzimage: &[u8]) -> Vec<u8> {
    let setup_sects = match bzimage[0x1f1] {
        0 => 4,
        n => usize::from(n),
    };
    let start = (setup_sects + 1) * 512 + u32_at(bzimage, 0x248) as usize;
    let len = u32_at(bzimage, 0x24c) as usize;
    let payload = &bzimage[start..start + len - 4];
    let out = if payload.starts_with(&[0x02, 0x21, 0x4c, 0x18]) {
        // Legacy lz4: the magic, then blocks of (le32 compressed size, data), each at most 8 MiB
        // decompressed; the magic may repeat between blocks.
        let mut out = Vec::new();
        let mut at = 4;
        let mut block = vec![0u8; 8 << 20];
        while at + 4 <= payload.len() {
            let size = u32_at(payload, at) as usize;
            at += 4;
            if size == 0x184c_2102 {
                continue;
            }
            let n = lz4_flex::block::decompress_into(&payload[at..at + size], &mut block).expect("lz4 block");
            out.extend_from_slice(&block[..n]);
            at += size;
        }
        out
    } else if payload.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        zstd::decode_all(payload).expect("zstd payload")
    } else if payload.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        let mut out = Vec::new();
        lzma_rs::xz_decompress(&mut &payload[..], &mut out).expect("xz payload");
        out
    } else {
        panic!("bzImage payload compressed as {:02x?}: not lz4, zstd or xz", &payload[..4.min(payload.len())]);
    };
    assert!(out.starts_with(b"\x7fELF"), "the payload is not an ELF vmlinux");
    out
}

/// Runs `cmd`; its standard output, or the test fails with its standard error.
pub fn run(cmd: &mut Command) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    out.stdout
}

/// Fails, showing the whole console, unless it holds every one of `steps`.
pub fn assert_said(console: &str, steps: &[&str]) {
    for step in steps {
        assert!(console.contains(step), "the console lacks {step:?}:\n{console}");
    }
}
