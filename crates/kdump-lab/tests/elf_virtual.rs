//! The paper's first open item: "vmalloced memory regions can not be directly analyzed because
//! kernel virtual addresses for these regions have not been filled in ELF headers". `kdump dump
//! -E` walks the crashed kernel's page tables and gives every mapped kernel range a PT_LOAD,
//! so plain `gdb -c` reads module data, vmalloc'd memory and per-CPU areas; on the kernel's own
//! /proc/vmcore the same reads fail. The bytes are checked against what /proc/kcore showed in
//! the running kernel just before the crash.
//!
//! The guest boots with `percpu_alloc=page`: the per-CPU areas are then mapped page by page in
//! the vmalloc space (with the default allocator they sit in the direct map, which /proc/vmcore
//! already describes). A module that loads without hardware (`dummy`) stands for any module.

mod nic;

use std::path::Path;
use std::process::Command;

use kdump_lab::{LOAD_CAPTURE_KERNEL, LabKernel, Scenario, Vm, static_tools};
use nic::{decompressed, find_module, modules_dir};

/// Prints the 4 KiB page of /proc/kcore holding kernel virtual address `$1` into file `$2`, found
/// through kcore's program headers (busybox `od` reads them: type, offset, vaddr, paddr, filesz).
const KCORE_PAGE: &str = r#"kcore_page() {
  want=$(( $1 & ~4095 )); out=$2
  n=$(od -An -tu2 -j56 -N2 /proc/kcore | tr -d ' ')
  i=0
  while [ "$i" -lt "$n" ]; do
    set -- $(od -An -tx8 -j$((64 + i * 56)) -N56 /proc/kcore)
    start=$((0x$3)); size=$((0x$5)); delta=$(( want - start ))
    if [ "$size" -gt 0 ] && [ "$delta" -ge 0 ] && [ "$delta" -lt "$size" ]; then
      dd if=/proc/kcore of="$out" iflag=skip_bytes skip=$(( 0x$2 + delta )) bs=4096 count=1 2>/dev/null
      return 0
    fi
    i=$((i + 1))
  done
  return 1
}
sym() { awk -v s="$1" '$3 == s { print "0x" $1; exit }' /proc/kallsyms; }
"#;

fn per_kernel(kernel: LabKernel) {
    let ko = find_module(&modules_dir(kernel).join("kernel"), "dummy").expect("dummy.ko in the kernel package");
    let first = format!(
        r#"{KCORE_PAGE}
insmod /lab/dummy.ko
cp /proc/modules /results/modules
# Real addresses in /proc/vmallocinfo (%pK hashes them under kptr_restrict=0).
echo 1 > /proc/sys/kernel/kptr_restrict
cp /proc/vmallocinfo /results/vmallocinfo
# (a) the module's memory, (b) the vmalloc'd area holding its text, (c) CPU 1's this_cpu_off
base=$(awk '$1 == "dummy" {{ print $6 }}' /proc/modules)
echo "$base" > /results/module-base
kcore_page "$base" /results/kcore-module-text
offsets=$(sym __per_cpu_offset)
kcore_page $((offsets + 8)) /results/kcore-per-cpu-offset
cpu1=$(od -An -tx8 -j$(( (offsets + 8) & 4095 )) -N8 /results/kcore-per-cpu-offset | tr -d ' ')
var=$(( $(sym this_cpu_off) + 0x$cpu1 ))
printf '%x %x %x\n' "$offsets" "0x$cpu1" "$var" > /results/per-cpu
kcore_page "$var" /results/kcore-this-cpu-off
printf '%x\n' "$(sym modules)" > /results/modules-symbol
sync
echo c > /proc/sysrq-trigger
"#
    );
    // 768 MiB: with 512, a randomized kernel location can leave no 256 MiB window for crashkernel.
    let vm = Vm {
        memory_mib: 768,
        cpus: 2,
        extra_cmdline: "percpu_alloc=page".into(),
        results_disk_mib: 768 + 128,
        ..Vm::on(kernel)
    };
    let outcome = Scenario::new(&format!("elf-virtual-{kernel}"), &format!("{LOAD_CAPTURE_KERNEL}{first}"))
        .capture("cp /proc/vmcore /results/vmcore\n")
        .file("lab/dummy.ko", decompressed(&ko), 0o644)
        .vm(vm)
        .run()
        .expect("scenario");
    check(kernel, &outcome.results, &outcome.run_dir);
    let _ = std::fs::remove_file(outcome.results.join("vmcore"));
}

fn hex(s: &str) -> u64 {
    u64::from_str_radix(s.trim().trim_start_matches("0x"), 16).unwrap_or_else(|_| panic!("not hex: {s:?}"))
}

/// What plain `gdb -c core` prints for the command `x/FORMAT ADDR`, or its complaint when it
/// cannot read the address.
fn gdb_x(core: &Path, format: &str, addr: u64) -> Result<String, String> {
    let out = Command::new("gdb")
        .args(["-nx", "-batch", "-c"])
        .arg(core)
        .args(["-ex", &format!("x/{format} {addr:#x}")])
        .output()
        .expect("gdb runs");
    let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    if text.contains("Cannot access memory") { Err(text) } else { Ok(text) }
}

/// gdb's `x` of `len` bytes at `addr` in `core`: the bytes, or gdb's complaint.
fn gdb_bytes(core: &Path, addr: u64, len: usize) -> Result<Vec<u8>, String> {
    let text = gdb_x(core, &format!("{len}xb"), addr)?;
    let bytes: Vec<u8> = text
        .lines()
        .filter_map(|l| l.split_once(':'))
        .flat_map(|(_, rest)| rest.split_whitespace().map(|b| u8::from_str_radix(b.trim_start_matches("0x"), 16)))
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{e}: {text}"))?;
    if bytes.len() == len { Ok(bytes) } else { Err(text) }
}

/// gdb's `x/s` at `addr` in `core`: the string, or gdb's complaint.
fn gdb_string(core: &Path, addr: u64) -> Result<String, String> {
    let text = gdb_x(core, "s", addr)?;
    match text.split_once('"') {
        Some((_, rest)) => Ok(rest.rsplit_once('"').map(|(s, _)| s.to_string()).unwrap_or_default()),
        None => Err(text),
    }
}

fn check(kernel: LabKernel, results: &Path, run_dir: &Path) {
    let kdump = static_tools().unwrap().kdump;
    let vmcore = results.join("vmcore");
    let ours = run_dir.join("virtual.elf");
    let _ = std::fs::remove_file(&ours);
    let out = Command::new(&kdump).args(["dump", "-E", "-d", "31"]).arg(&vmcore).arg(&ours).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{kernel}: kdump dump -E: {stderr}");
    assert!(stderr.contains("give kernel virtual ranges"), "{kernel}: {stderr}");
    let read = |name: &str| std::fs::read_to_string(results.join(name)).unwrap();

    // (a) struct module, from the module list: `modules` (kernel data) → the newest module's
    // `list` (at offset 8 of struct module, after `state`); `name` follows at offset 24.
    let modules = hex(&read("modules-symbol"));
    let first = u64::from_le_bytes(gdb_bytes(&ours, modules, 8).unwrap().try_into().unwrap());
    let newest = read("modules").lines().next().unwrap().split_whitespace().next().unwrap().to_string();
    assert_eq!(newest, "dummy", "{kernel}: insmod'ed last");
    assert_eq!(gdb_string(&ours, first - 8 + 24).as_deref(), Ok("dummy"), "{kernel}: struct module name");
    let on_vmcore = gdb_bytes(&vmcore, modules, 8).expect("the kernel's data is in /proc/vmcore");
    assert_eq!(u64::from_le_bytes(on_vmcore.try_into().unwrap()), first);
    assert!(gdb_string(&vmcore, first + 16).is_err(), "{kernel}: /proc/vmcore has no module memory");

    // (b) the vmalloc'd area that holds the module's text, as /proc/vmallocinfo listed it.
    let base = hex(&read("module-base"));
    let area = read("vmallocinfo")
        .lines()
        .find_map(|l| {
            let (range, _) = l.split_once(' ')?;
            let (s, e) = range.split_once('-')?;
            let (s, e) = (hex(s), hex(e));
            (s <= base && base < e).then_some((s, e))
        })
        .unwrap_or_else(|| panic!("{kernel}: no vmallocinfo area holds {base:#x}"));
    let page = base & !4095;
    let kcore = std::fs::read(results.join("kcore-module-text")).unwrap();
    assert_eq!(kcore.len(), 4096, "{kernel}: kcore page read");
    assert_eq!(gdb_bytes(&ours, page, 4096).unwrap(), kcore, "{kernel}: vmalloc area {area:x?}");
    assert!(gdb_bytes(&vmcore, page, 16).is_err(), "{kernel}: /proc/vmcore has no vmalloc memory");

    // (c) CPU 1's this_cpu_off holds CPU 1's per-CPU offset; its address is in the vmalloc space.
    let per_cpu = read("per-cpu");
    let [_, offset1, var] = per_cpu.split_whitespace().map(hex).collect::<Vec<_>>()[..] else { panic!("{per_cpu}") };
    let kcore = std::fs::read(results.join("kcore-this-cpu-off")).unwrap();
    let at = (var & 4095) as usize;
    let before = &kcore[at..at + 8];
    assert_eq!(u64::from_le_bytes(before.try_into().unwrap()), offset1, "{kernel}: kcore shows this_cpu_off");
    assert_eq!(gdb_bytes(&ours, var, 8).unwrap(), before, "{kernel}: CPU 1's this_cpu_off at {var:#x}");
    assert!(gdb_bytes(&vmcore, var, 8).is_err(), "{kernel}: /proc/vmcore has no per-CPU area at {var:#x}");

    // The file is still a dump for the other tools: makedumpfile reads it, and so do we.
    let dmesg = |f: &Path| {
        let o = Command::new(&kdump).arg("dmesg").arg(f).output().unwrap();
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        o.stdout
    };
    assert_eq!(dmesg(&ours), dmesg(&vmcore), "{kernel}: the log");
    let theirs = run_dir.join("virtual.makedumpfile-dmesg");
    let _ = std::fs::remove_file(&theirs);
    let st = Command::new("makedumpfile").arg("--dump-dmesg").arg(&ours).arg(&theirs).output().unwrap();
    assert!(st.status.success(), "{kernel}: makedumpfile: {}", String::from_utf8_lossy(&st.stdout));
    let _ = std::fs::remove_file(&ours);
}

/// Every kernel of the matrix.
macro_rules! with_module {
    ($($name:ident: $kernel:expr;)*) => {$(
        #[test]
        fn $name() {
            if kdump_lab::in_matrix($kernel) {
                per_kernel($kernel);
            }
        }
    )*};
}

with_module! {
    gdb_reads_module_vmalloc_and_per_cpu_memory_bullseye: LabKernel::Bullseye;
    gdb_reads_module_vmalloc_and_per_cpu_memory_bookworm: LabKernel::Bookworm;
    gdb_reads_module_vmalloc_and_per_cpu_memory_trixie: LabKernel::Trixie;
    gdb_reads_module_vmalloc_and_per_cpu_memory_sid: LabKernel::Sid;
}
