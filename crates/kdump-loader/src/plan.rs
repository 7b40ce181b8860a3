//! The `kexec_load` planner: from a description of the crashed-to-be machine and the images,
//! every segment the kernel is handed, the entry point, and the checks the kernel will make
//! (run here first, so a plan that cannot load is refused with its reason).
//!
//! Layout inside the crash region (the highest one when `crashkernel=X,high` and `,low` give
//! two): the kernel at the bottom (aligned to `kernel_alignment`, at or above `pref_address`,
//! `init_size` bytes), and from the top down: purgatory, boot_params + command line
//! (+ `SETUP_E820_EXT`), ELF core headers, backup copy of the first 640 KiB, initrd.

use kdump_machine::kcore::paging_levels;
use kdump_machine::{CpuNote, Kcore, MachineInfo, MemoryKind, MemoryRange, PhysRange, VmcoreinfoLocation};
use kdump_purgatory::Purgatory;
use serde::Serialize;

use crate::bootparams::{self, BootParamsInput, E820Entry};
use crate::elfcore::{self, ElfClass, PT_LOAD, PT_NOTE, Phdr};
use crate::hex::Hex;
use crate::image::{ImageError, KernelImage, XLF_CAN_BE_LOADED_ABOVE_4G};

/// Page size.
pub const PAGE: u64 = 4096;
/// `kexec_load` flag: a capture kernel for panics.
pub const KEXEC_ON_CRASH: u64 = 0x1;
/// `kexec_load` flag (Linux 6.6+, x86): the kernel may rewrite the ELF core headers on CPU
/// and memory hotplug, because the loader sized their segment for it and left it out of the
/// purgatory's digest. Newer kernels also take `KEXEC_CRASH_HOTPLUG_SUPPORT` (0x8) for the
/// same promise on x86, but only they know it: 0x4 is accepted by every kernel with crash
/// hotplug (arch/x86/kernel/crash.c `arch_crash_hotplug_support`).
pub const KEXEC_UPDATE_ELFCOREHDR: u64 = 0x4;
/// Size of the ELF64 file header the kernel writes before the program headers it counts in
/// `crash_elfcorehdr_size`.
pub const ELF64_EHDR_SIZE: u64 = 64;
/// `kexec_load` architecture field for x86_64.
pub const KEXEC_ARCH_X86_64: u64 = 62 << 16;
/// Most segments `kexec_load` takes.
pub const KEXEC_SEGMENT_MAX: usize = 16;
/// End of the backup region: the first 640 KiB.
pub const BACKUP_END: u64 = 0xa0000;
/// Minimum size of the ELF-header segment (kexec-tools pads to 16 KiB).
pub const ELFCOREHDR_MIN: u64 = 16 << 10;
/// `__START_KERNEL` without KASLR, used when /proc/kcore is unreadable.
pub const DEFAULT_KERNEL_TEXT_VADDR: u64 = 0xffff_ffff_8100_0000;
/// `PAGE_OFFSET` with 4-level paging and no KASLR, used when /proc/kcore is unreadable.
pub const DEFAULT_DIRECT_MAP_BASE: u64 = 0xffff_8880_0000_0000;

/// The kernel text mapping of the crashed kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct KernelText {
    /// Physical start (`Kernel code` in /proc/iomem).
    pub paddr: Hex,
    /// Virtual start (`_text`).
    pub vaddr: Hex,
    /// Size.
    pub size: Hex,
}

/// Everything the planner knows about the machine.
#[derive(Debug, Clone, Serialize)]
pub struct CrashMachine {
    /// Top-level memory map (RAM, ACPI, NVS, reserved, PMEM), sorted.
    pub memory_map: Vec<MemoryRange>,
    /// `Crash kernel` ranges.
    pub crash_regions: Vec<PhysRange>,
    /// Per-CPU crash-notes buffers.
    pub cpu_notes: Vec<CpuNote>,
    /// VMCOREINFO note.
    pub vmcoreinfo: Option<VmcoreinfoLocation>,
    /// Kernel text mapping.
    pub kernel_text: Option<KernelText>,
    /// Direct-map base (`PAGE_OFFSET`).
    pub direct_map_base: Hex,
    /// 4 or 5.
    pub paging_levels: u8,
    /// ACPI RSDP physical address.
    pub acpi_rsdp: Option<Hex>,
    /// Missing inputs and the fallbacks taken.
    pub warnings: Vec<String>,
}

impl CrashMachine {
    /// Combines what `kdump-sys` read. Without /proc/kcore, the kernel text and the direct map
    /// fall back to their non-KASLR defaults, with a warning.
    pub fn describe(
        info: &MachineInfo,
        memory_map: Vec<MemoryRange>,
        kcore: Option<&Kcore>,
        acpi_rsdp: Option<u64>,
    ) -> Self {
        let mut warnings = Vec::new();
        let text = kcore.and_then(|k| k.kernel_text(info.kernel_code));
        let kernel_text = match (text, info.kernel_code) {
            (Some(t), _) => Some(KernelText { paddr: Hex(t.paddr), vaddr: Hex(t.vaddr), size: Hex(t.size) }),
            (None, Some(code)) => {
                warnings.push(format!(
                    "kernel text virtual address unknown (no /proc/kcore): assuming {DEFAULT_KERNEL_TEXT_VADDR:#x}, \
                     wrong under KASLR; dump tools should rely on VMCOREINFO"
                ));
                Some(KernelText {
                    paddr: Hex(code.start),
                    vaddr: Hex(DEFAULT_KERNEL_TEXT_VADDR),
                    size: Hex(code.len().div_ceil(PAGE) * PAGE),
                })
            }
            (None, None) => {
                warnings.push("no `Kernel code` in /proc/iomem: the core headers have no kernel-text PT_LOAD".into());
                None
            }
        };
        let direct_map_base = match kcore.and_then(Kcore::direct_map_base) {
            Some(base) => base,
            None => {
                warnings.push(format!(
                    "direct-map base unknown (no /proc/kcore): assuming {DEFAULT_DIRECT_MAP_BASE:#x} (4-level, no KASLR)"
                ));
                DEFAULT_DIRECT_MAP_BASE
            }
        };
        CrashMachine {
            memory_map,
            crash_regions: info.crash_regions.clone(),
            cpu_notes: info.crash_notes.clone(),
            vmcoreinfo: info.vmcoreinfo,
            kernel_text,
            direct_map_base: Hex(direct_map_base),
            paging_levels: paging_levels(direct_map_base),
            acpi_rsdp: acpi_rsdp.map(Hex),
            warnings,
        }
    }

    fn ram(&self) -> impl Iterator<Item = PhysRange> + '_ {
        self.memory_map.iter().filter(|m| m.kind == MemoryKind::Ram).map(|m| m.range)
    }
}

/// Choices from the command line.
#[derive(Debug, Clone)]
pub struct Options {
    /// The command line decided so far (without `elfcorehdr=`).
    pub cmdline: String,
    /// `--elf32-core-headers`.
    pub elf32: bool,
    /// Copy the first 640 KiB to a backup segment (off with `--no-backup`).
    pub backup: bool,
    /// `--pass-memmap-cmdline`: `memmap=exactmap memmap=…` on the command line.
    pub memmap_cmdline: bool,
    /// `-i/--no-checks`: the purgatory does not verify the segments.
    pub skip_checks: bool,
    /// `--mem-min`/`--mem-max`: every segment lies within these bounds (inclusive);
    /// the new kernel's memory map still covers the whole load region.
    pub window: Option<PhysRange>,
    /// Crash hotplug: `Some(crash_elfcorehdr_size)` to let the kernel rewrite the ELF core
    /// headers on CPU/memory hotplug (panic loads only; `None` for kernels without it).
    pub hotplug: Option<u64>,
}

/// One `kexec_load` segment.
#[derive(Debug, Clone, Serialize)]
pub struct Segment {
    /// What it holds.
    pub name: &'static str,
    /// Physical address.
    pub mem: Hex,
    /// Size in memory.
    pub memsz: Hex,
    /// Bytes copied (the rest is zero-filled).
    pub bufsz: Hex,
    /// Contents.
    #[serde(skip)]
    pub buf: Vec<u8>,
}

impl Segment {
    /// Inclusive physical range.
    pub fn range(&self) -> Option<PhysRange> {
        PhysRange::from_start_len(self.mem.0, self.memsz.0)
    }
}

/// How the kernel may update the image on hotplug (`--hotplug`).
#[derive(Debug, Clone, Copy, Serialize)]
pub struct HotplugPlan {
    /// The flag passed to `kexec_load`.
    pub flag: &'static str,
    /// `crash_elfcorehdr_size`: program-header bytes the kernel may write.
    pub kernel_elfcorehdr_size: Hex,
    /// The elfcorehdr segment's memory: room for the ELF header and those program headers.
    pub elfcorehdr_memsz: Hex,
    /// The segment the purgatory does not verify (the kernel rewrites it after the load).
    pub unverified_segment: &'static str,
}

/// The purgatory's copy of the first 640 KiB.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Backup {
    /// Source (crashed kernel's RAM).
    pub src: Hex,
    /// Destination (the backup segment).
    pub dst: Hex,
    /// Bytes.
    pub len: Hex,
}

/// Where the kernel went.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct KernelPlacement {
    /// `bzImage` or `ELF vmlinux`.
    pub format: &'static str,
    /// Physical load address of the protected-mode part (a vmlinux: of its lowest PT_LOAD).
    pub load: Hex,
    /// 64-bit entry, where the purgatory jumps: load + 0x200 in a bzImage, `startup_64`
    /// (`e_entry` moved with the PT_LOADs) in a vmlinux.
    pub entry64: Hex,
    /// `init_size` (the memory reserved for it).
    pub init_size: Hex,
    /// `kernel_alignment`.
    pub alignment: Hex,
}

/// A complete `kexec_load` plan.
#[derive(Debug, Clone, Serialize)]
pub struct Plan {
    /// Always `kexec_load`.
    pub syscall: &'static str,
    /// `KEXEC_ON_CRASH | KEXEC_ARCH_X86_64`.
    pub flags: Hex,
    /// `kexec_load` entry: the purgatory.
    pub entry: Hex,
    /// Panic load (into the crash region) or a load for `kexec -e`.
    pub panic: bool,
    /// The region everything is in: the crash region for panic loads, else a RAM range.
    pub load_region: HexRange,
    /// The kernel.
    pub kernel: KernelPlacement,
    /// boot_params physical address (`%rsi` at the kernel entry).
    pub boot_params: Hex,
    /// The capture kernel's command line.
    pub cmdline: String,
    /// ELF core header address (`elfcorehdr=`); panic loads only.
    pub elfcorehdr: Option<Hex>,
    /// ELF class of the core headers.
    pub elf_class: ElfClass,
    /// The purgatory's backup copy.
    pub backup: Option<Backup>,
    /// Purgatory verifies the segments (false with `-i`).
    pub purgatory_checks: bool,
    /// Crash hotplug, when the kernel will update the ELF core headers itself.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hotplug: Option<HotplugPlan>,
    /// Segments, by address.
    pub segments: Vec<Segment>,
    /// The capture kernel's memory map.
    pub e820: Vec<E820Entry>,
    /// The ELF core program headers.
    pub elf_headers: Vec<Phdr>,
    /// The machine as described.
    pub machine: CrashMachine,
}

/// An inclusive physical range printed in hex.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct HexRange {
    /// First byte.
    pub start: Hex,
    /// Last byte.
    pub end: Hex,
}

/// Why no plan could be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// Image problem.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// No crash region.
    #[error("no memory is reserved for a capture kernel (/proc/iomem has no \"Crash kernel\" range)")]
    NoCrashRegion,
    /// Something does not fit.
    #[error(
        "the {what} ({size:#x} bytes) does not fit in {start:#x}-{end:#x} next to the other segments \
         (for -p: the crash region; boot with a larger crashkernel=)"
    )]
    DoesNotFit {
        /// Segment.
        what: &'static str,
        /// Its size.
        size: u64,
        /// Region start.
        start: u64,
        /// Region end.
        end: u64,
    },
    /// No RAM range can hold the kernel (normal loads).
    #[error("no System RAM range at or above {pref:#x} below 4 GiB has room for the kernel's {size:#x} bytes")]
    NoRoomForKernel {
        /// Preferred address.
        pref: u64,
        /// init_size.
        size: u64,
    },
    /// `--mem-min`/`--mem-max` leave nothing of the load region.
    #[error(
        "--mem-min/--mem-max ({min:#x}-{max:#x}) leave nothing of the load region {start:#x}-{end:#x} \
         (for -p: the crash region; see kexec --print-ckr-size and /proc/iomem)"
    )]
    EmptyWindow {
        /// `--mem-min`.
        min: u64,
        /// `--mem-max`.
        max: u64,
        /// Region start.
        start: u64,
        /// Region end.
        end: u64,
    },
    /// Kernel placement impossible.
    #[error("{0}")]
    Kernel(String),
    /// The 5-level check.
    #[error(
        "the running kernel uses 5-level paging but this kernel image does not support it (no XLF_5LEVEL): \
         boot the first kernel with no5lvl or use a newer capture kernel"
    )]
    No5Level,
    /// A kernel rule broken.
    #[error("the plan breaks a kexec_load rule: {0}")]
    Rule(String),
    /// ELF32 overflow.
    #[error(transparent)]
    Elf32(#[from] elfcore::Elf32Overflow),
    /// Purgatory patching failed.
    #[error("cannot fill the purgatory's parameters: {0}")]
    Purgatory(#[from] kdump_purgatory::Error),
    /// Command line too long once elfcorehdr= and memmap= are added.
    #[error(
        "the capture kernel's command line would be {len} bytes with elfcorehdr=/memmap= but the kernel takes {max}"
    )]
    CmdlineTooLong {
        /// Length.
        len: usize,
        /// The image's limit.
        max: usize,
    },
}

fn page_up(v: u64) -> u64 {
    v.div_ceil(PAGE) * PAGE
}

fn align_up(v: u64, a: u64) -> u64 {
    v.div_ceil(a) * a
}

/// `ranges` minus `holes` (inclusive ends), in order.
pub fn subtract(ranges: &[PhysRange], holes: &[PhysRange]) -> Vec<PhysRange> {
    let mut out = ranges.to_vec();
    for h in holes {
        out = out
            .into_iter()
            .flat_map(|r| {
                if r.end < h.start || r.start > h.end {
                    return vec![r];
                }
                let mut parts = Vec::new();
                if r.start < h.start {
                    parts.push(PhysRange { start: r.start, end: h.start - 1 });
                }
                if r.end > h.end {
                    parts.push(PhysRange { start: h.end + 1, end: r.end });
                }
                parts
            })
            .collect();
    }
    out
}

struct Allocator {
    region: PhysRange,
    /// Lowest address the top-down allocations may reach.
    floor: u64,
    /// Next allocation ends below this (exclusive).
    top: u64,
}

impl Allocator {
    fn take(&mut self, what: &'static str, size: u64, max_end: u64) -> Result<u64, PlanError> {
        let size = page_up(size.max(1));
        let end = self.top.min(max_end.saturating_add(1));
        let fail = || PlanError::DoesNotFit { what, size, start: self.region.start, end: self.region.end };
        let addr = end.checked_sub(size).ok_or_else(fail)? / PAGE * PAGE;
        if addr < self.floor {
            return Err(fail());
        }
        self.top = addr;
        Ok(addr)
    }
}

/// Makes the plan for a panic load with `kexec_load`.
pub fn plan_crash_load(
    machine: &CrashMachine,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    opts: &Options,
) -> Result<Plan, PlanError> {
    plan_load(machine, kernel, initrd, opts, true)
}

/// Makes the plan for a `kexec -c -l` load (started by `kexec -e`): the segments go into the
/// System RAM range that holds the kernel at its preferred address (below 4 GiB), the new
/// kernel gets the whole memory map, and there are no ELF core headers or backup.
pub fn plan_normal_load(
    machine: &CrashMachine,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    opts: &Options,
) -> Result<Plan, PlanError> {
    plan_load(machine, kernel, initrd, opts, false)
}

fn plan_load(
    machine: &CrashMachine,
    kernel: &[u8],
    initrd: Option<&[u8]>,
    opts: &Options,
    panic: bool,
) -> Result<Plan, PlanError> {
    let kernel_image = KernelImage::parse(kernel)?;
    let image = kernel_image.header();
    if machine.paging_levels == 5 && !image.supports_5level() {
        return Err(PlanError::No5Level);
    }
    let mut warnings = Vec::new();
    if machine.paging_levels == 5 && matches!(kernel_image, KernelImage::Vmlinux(_)) {
        // A bzImage says so in xloadflags; a vmlinux has no header, and its startup_64 keeps
        // the paging mode it is entered in.
        warnings.push(
            "the running kernel uses 5-level paging and a vmlinux cannot say whether it supports it: a kernel \
             built without CONFIG_X86_5LEVEL will not boot (use its bzImage, or boot the first kernel with no5lvl)"
                .to_string(),
        );
    }
    // boot_params takes its setup header from here; the kernel's bytes go to its load address.
    let setup = kernel_image.setup_bytes(kernel);
    let payload = kernel_image.payload(kernel);
    let align_early = u64::from(image.kernel_alignment).max(PAGE);
    let kernel_memsz_early = page_up(u64::from(image.init_size).max(payload.len() as u64));
    let region = if panic {
        machine.crash_regions.iter().max_by_key(|r| r.start).copied().ok_or(PlanError::NoCrashRegion)?
    } else {
        const FOUR_GIB: u64 = 1 << 32;
        machine
            .ram()
            .filter(|r| r.start < FOUR_GIB)
            .map(|r| PhysRange { start: r.start, end: r.end.min(FOUR_GIB - 1) })
            .find(|r| {
                let at = align_up(r.start.max(image.pref_address), align_early);
                at.checked_add(kernel_memsz_early).is_some_and(|end| end - 1 <= r.end)
            })
            .ok_or(PlanError::NoRoomForKernel { pref: image.pref_address, size: kernel_memsz_early })?
    };
    // The segments go where --mem-min/--mem-max allow; `region` stays the new kernel's memory.
    let place = match opts.window {
        None => region,
        Some(w) => {
            let (start, end) = (region.start.max(w.start), region.end.min(w.end));
            if start > end {
                return Err(PlanError::EmptyWindow { min: w.start, max: w.end, start: region.start, end: region.end });
            }
            PhysRange { start, end }
        }
    };
    let above_4g = image.xloadflags & XLF_CAN_BE_LOADED_ABOVE_4G != 0;
    let relocatable = setup.get(0x234).copied().unwrap_or(0) != 0;
    let initrd_addr_max = setup
        .get(0x22c..0x230)
        .map_or(0x37ff_ffff, |b| u64::from(u32::from_le_bytes(b.try_into().unwrap_or([0xff, 0xff, 0xff, 0x37]))));

    // Kernel at the bottom.
    let align = u64::from(image.kernel_alignment).max(PAGE);
    if !align.is_power_of_two() {
        return Err(PlanError::Kernel(format!("kernel_alignment {align:#x} is not a power of two")));
    }
    let kernel_addr = align_up(place.start.max(image.pref_address), align);
    if !relocatable && kernel_addr != image.pref_address {
        return Err(PlanError::Kernel(format!(
            "this kernel is not relocatable and must load at {:#x}, which is not where the crash region allows",
            image.pref_address
        )));
    }
    let kernel_memsz = page_up(u64::from(image.init_size).max(payload.len() as u64));
    let kernel_end = kernel_addr + kernel_memsz;
    if kernel_end - 1 > place.end {
        return Err(PlanError::DoesNotFit {
            what: "kernel (init_size at or above pref_address)",
            size: kernel_memsz,
            start: place.start,
            end: place.end,
        });
    }
    if kernel_end > 1 << 32 && !above_4g {
        return Err(PlanError::Kernel(
            "the crash region is above 4 GiB but this kernel cannot load there (no XLF_CAN_BE_LOADED_ABOVE_4G)".into(),
        ));
    }

    // Sizes known before the contents.
    let class = if opts.elf32 { ElfClass::Elf32 } else { ElfClass::Elf64 };
    let backup_src = if opts.backup && panic {
        machine
            .ram()
            .find(|r| r.start < BACKUP_END)
            .map(|r| PhysRange { start: r.start, end: r.end.min(BACKUP_END - 1) })
    } else {
        None
    };
    let mut ram_chunks = subtract(&machine.ram().collect::<Vec<_>>(), &machine.crash_regions);
    if let Some(src) = backup_src {
        ram_chunks = subtract(&ram_chunks, &[src]);
        ram_chunks.push(src);
        ram_chunks.sort();
    }
    let nr_phdrs = if !panic {
        0
    } else {
        machine.cpu_notes.len()
            + usize::from(machine.vmcoreinfo.is_some())
            + usize::from(machine.kernel_text.is_some())
            + ram_chunks.len()
    };
    let hotplug = opts.hotplug.filter(|_| panic).map(|kernel_size| HotplugPlan {
        flag: "KEXEC_UPDATE_ELFCOREHDR",
        kernel_elfcorehdr_size: Hex(kernel_size),
        // The kernel always writes ELF64 headers, whatever class the loader chose.
        elfcorehdr_memsz: Hex(page_up(ELF64_EHDR_SIZE.saturating_add(kernel_size))),
        unverified_segment: "elfcorehdr",
    });
    let elfcorehdr_size =
        page_up((class.size(nr_phdrs) as u64).max(ELFCOREHDR_MIN).max(hotplug.map_or(0, |h| h.elfcorehdr_memsz.0)));
    let cmdline_cap = usize::try_from(image.cmdline_size).unwrap_or(usize::MAX).saturating_add(1);
    let setup_data_offset = bootparams::BOOT_PARAMS_SIZE + cmdline_cap.div_ceil(16) * 16;
    let e820_bound = machine.memory_map.len() + machine.crash_regions.len() + 4;
    let setup_data_len = if e820_bound > bootparams::E820_MAX_ENTRIES_ZEROPAGE {
        bootparams::SETUP_DATA_HEADER + e820_bound * bootparams::E820_ENTRY_SIZE
    } else {
        0
    };
    let boot_params_size = (setup_data_offset + setup_data_len) as u64;
    let purgatory = Purgatory::builtin()?;
    let blob_len = kdump_purgatory::BLOB.len() as u64;

    let mut alloc = Allocator { region: place, floor: kernel_end, top: place.end + 1 };
    let purgatory_addr = alloc.take("purgatory", blob_len, place.end)?;
    let boot_params_addr = alloc.take("boot parameters", boot_params_size, place.end)?;
    let elfcorehdr_addr = if panic { Some(alloc.take("ELF core headers", elfcorehdr_size, place.end)?) } else { None };
    let backup = match backup_src {
        Some(src) => {
            let dst = alloc.take("backup of the first 640 KiB", src.len(), place.end)?;
            Some(Backup { src: Hex(src.start), dst: Hex(dst), len: Hex(src.len()) })
        }
        None => None,
    };
    let initrd_addr = match initrd {
        Some(bytes) => {
            let max_end = if above_4g { place.end } else { place.end.min(initrd_addr_max) };
            Some(alloc.take("initrd", bytes.len() as u64, max_end)?)
        }
        None => None,
    };

    // ELF core headers.
    let mut phdrs = Vec::with_capacity(nr_phdrs);
    for n in machine.cpu_notes.iter().filter(|_| panic) {
        phdrs.push(Phdr {
            p_type: PT_NOTE,
            offset: Hex(n.address),
            vaddr: Hex(0),
            paddr: Hex(n.address),
            size: Hex(n.size),
        });
    }
    if let Some(v) = machine.vmcoreinfo.filter(|_| panic) {
        phdrs.push(Phdr {
            p_type: PT_NOTE,
            offset: Hex(v.address),
            vaddr: Hex(0),
            paddr: Hex(v.address),
            size: Hex(v.size),
        });
    }
    if let Some(t) = machine.kernel_text.filter(|_| panic) {
        phdrs.push(Phdr { p_type: PT_LOAD, offset: t.paddr, vaddr: t.vaddr, paddr: t.paddr, size: t.size });
    }
    for r in ram_chunks.iter().filter(|_| panic) {
        let offset = match backup {
            Some(b) if r.start == b.src.0 => b.dst.0,
            _ => r.start,
        };
        let vaddr = machine.direct_map_base.0.wrapping_add(r.start);
        phdrs.push(Phdr {
            p_type: PT_LOAD,
            offset: Hex(offset),
            vaddr: Hex(vaddr),
            paddr: Hex(r.start),
            size: Hex(r.len()),
        });
    }
    let elf = elfcore::encode(class, &phdrs)?;

    // The new kernel's memory map: for a capture kernel, RAM below 1 MiB and the crash
    // regions minus the ELF headers and the backup copy; otherwise all RAM.
    let mut taken: Vec<PhysRange> =
        elfcorehdr_addr.map(|a| PhysRange { start: a, end: a + elfcorehdr_size - 1 }).into_iter().collect();
    if let Some(b) = backup {
        taken.push(PhysRange { start: b.dst.0, end: b.dst.0 + page_up(b.len.0) - 1 });
    }
    let mut e820 = Vec::new();
    for m in &machine.memory_map {
        if m.kind != MemoryKind::Ram || !panic {
            e820.push(E820Entry { addr: Hex(m.range.start), size: Hex(m.range.len()), kind: m.kind.e820_type() });
        } else if m.range.start < 1 << 20 {
            let low = PhysRange { start: m.range.start, end: m.range.end.min((1 << 20) - 1) };
            e820.push(E820Entry { addr: Hex(low.start), size: Hex(low.len()), kind: 1 });
        }
    }
    for r in subtract(&machine.crash_regions, &taken).into_iter().filter(|_| panic) {
        e820.push(E820Entry { addr: Hex(r.start), size: Hex(r.len()), kind: 1 });
    }
    e820.sort();

    // Command line.
    let mut cmdline = opts.cmdline.trim().to_string();
    let mut add = |word: String| {
        if !cmdline.is_empty() {
            cmdline.push(' ');
        }
        cmdline.push_str(&word);
    };
    if opts.memmap_cmdline && panic {
        add("memmap=exactmap".into());
        for e in &e820 {
            let start_k = e.addr.0.div_ceil(1024);
            let end_k = (e.addr.0 + e.size.0) / 1024;
            if end_k <= start_k || (e.kind == 1 && end_k - start_k < 100) {
                continue;
            }
            let sep = match e.kind {
                1 => '@',
                3 | 4 => '#',
                12 => '!',
                _ => '$',
            };
            add(format!("memmap={}K{sep}{start_k}K", end_k - start_k));
        }
    }
    if let Some(addr) = elfcorehdr_addr {
        add(format!("elfcorehdr={}K", addr / 1024));
    }
    let acpi_rsdp = machine.acpi_rsdp.map(|h| h.0);
    if let Some(rsdp) = acpi_rsdp
        && image.protocol < 0x020e
    {
        // boot_params.acpi_rsdp_addr is protocol 2.14+; older kernels need the parameter.
        add(format!("acpi_rsdp={rsdp:#x}"));
    }
    if cmdline.len() + 1 > cmdline_cap {
        return Err(PlanError::CmdlineTooLong { len: cmdline.len(), max: cmdline_cap - 1 });
    }

    let boot_params = bootparams::build(&BootParamsInput {
        kernel: &setup,
        kernel_addr,
        addr: boot_params_addr,
        cmdline: &cmdline,
        cmdline_offset: bootparams::BOOT_PARAMS_SIZE,
        setup_data_offset,
        initrd: initrd.zip(initrd_addr).map(|(b, a)| (a, b.len() as u64)),
        e820: &e820,
        acpi_rsdp,
    });

    let mut segments = vec![
        Segment {
            name: "kernel",
            mem: Hex(kernel_addr),
            memsz: Hex(kernel_memsz),
            bufsz: Hex(payload.len() as u64),
            buf: payload.into_owned(),
        },
        Segment {
            name: "boot_params",
            mem: Hex(boot_params_addr),
            memsz: Hex(page_up(boot_params_size)),
            bufsz: Hex(boot_params.len() as u64),
            buf: boot_params,
        },
    ];
    if let Some(addr) = elfcorehdr_addr {
        segments.push(Segment {
            name: "elfcorehdr",
            mem: Hex(addr),
            memsz: Hex(elfcorehdr_size),
            bufsz: Hex(elf.len() as u64),
            buf: elf,
        });
    }
    if let Some(b) = backup {
        segments.push(Segment {
            name: "backup",
            mem: b.dst,
            memsz: Hex(page_up(b.len.0)),
            bufsz: Hex(0),
            buf: Vec::new(),
        });
    }
    if let (Some(bytes), Some(addr)) = (initrd, initrd_addr) {
        segments.push(Segment {
            name: "initrd",
            mem: Hex(addr),
            memsz: Hex(page_up(bytes.len() as u64)),
            bufsz: Hex(bytes.len() as u64),
            buf: bytes.to_vec(),
        });
    }
    segments.sort_by_key(|s| s.mem);

    let mut flags = Purgatory::PRODUCTION_FLAGS;
    if opts.skip_checks {
        flags |= kdump_purgatory::abi::FLAG_SKIP_CHECKS;
    }
    let mut purgatory = purgatory
        .with_flags(flags)
        .with_entry(kernel_addr + kernel_image.entry_offset(), boot_params_addr)
        .with_segments(
            segments
                .iter()
                // The kernel rewrites the headers on hotplug: a digest over them would fail the crash.
                .filter(|s| !(hotplug.is_some() && s.name == "elfcorehdr"))
                .map(|s| kdump_purgatory::Segment { mem: s.mem.0, buf: &s.buf, memsz: s.memsz.0 }),
        );
    if let Some(b) = backup {
        purgatory = purgatory.with_backup(b.src.0, b.dst.0, b.len.0);
    }
    let blob = purgatory.patch()?;
    segments.push(Segment {
        name: "purgatory",
        mem: Hex(purgatory_addr),
        memsz: Hex(page_up(blob_len)),
        bufsz: Hex(blob.len() as u64),
        buf: blob,
    });
    segments.sort_by_key(|s| s.mem);

    let mut plan = Plan {
        syscall: "kexec_load",
        flags: Hex(if panic { KEXEC_ON_CRASH } else { 0 }
            | if hotplug.is_some() { KEXEC_UPDATE_ELFCOREHDR } else { 0 }
            | KEXEC_ARCH_X86_64),
        entry: Hex(purgatory_addr),
        panic,
        load_region: HexRange { start: Hex(region.start), end: Hex(region.end) },
        kernel: KernelPlacement {
            format: kernel_image.format(),
            load: Hex(kernel_addr),
            entry64: Hex(kernel_addr + kernel_image.entry_offset()),
            init_size: Hex(u64::from(image.init_size)),
            alignment: Hex(align),
        },
        boot_params: Hex(boot_params_addr),
        cmdline,
        elfcorehdr: elfcorehdr_addr.map(Hex),
        elf_class: class,
        backup,
        purgatory_checks: !opts.skip_checks,
        hotplug,
        segments,
        e820,
        elf_headers: phdrs,
        machine: machine.clone(),
    };
    plan.machine.warnings.extend(warnings);
    let total_ram: u64 = machine.ram().map(|r| r.len()).sum();
    check_rules(&plan.segments, plan.entry.0, Some(region), total_ram)?;
    if plan.hotplug.is_some() {
        check_elfcorehdr_is_findable(&plan.segments)?;
    }
    Ok(plan)
}

/// On a hotplug event the kernel takes the segment whose first bytes are `\x7fELF` as the
/// one to rewrite (kernel/crash_core.c `crash_handle_hotplug_event`, the last such segment):
/// the ELF core headers must be the only one.
fn check_elfcorehdr_is_findable(segments: &[Segment]) -> Result<(), PlanError> {
    let elf: Vec<&str> = segments.iter().filter(|s| s.buf.starts_with(b"\x7fELF")).map(|s| s.name).collect();
    if elf != ["elfcorehdr"] {
        return Err(PlanError::Rule(format!(
            "crash hotplug needs the ELF core headers to be the only segment starting with \\x7fELF \
             (the kernel finds them that way), but these do: {elf:?}; load with --no-hotplug"
        )));
    }
    Ok(())
}

/// The kernel's own checks on a segment list (kernel/kexec_core.c
/// `sanitize_segment_list`/`sanity_check_segment_list`): at most 16 segments, page-aligned
/// start and size, no overlap, `bufsz ≤ memsz`, each segment at most half of RAM, and for a
/// panic load every segment and the entry inside the crash region.
pub fn check_rules(
    segments: &[Segment],
    entry: u64,
    crash: Option<PhysRange>,
    total_ram: u64,
) -> Result<(), PlanError> {
    let rule = |s: String| Err(PlanError::Rule(s));
    if segments.len() > KEXEC_SEGMENT_MAX {
        return rule(format!("{} segments, the kernel takes at most {KEXEC_SEGMENT_MAX}", segments.len()));
    }
    for s in segments {
        if s.mem.0 % PAGE != 0 || s.memsz.0 % PAGE != 0 {
            return rule(format!("segment {} at {:#x} (+{:#x}) is not page aligned", s.name, s.mem.0, s.memsz.0));
        }
        if s.buf.len() as u64 > s.memsz.0 || s.bufsz.0 != s.buf.len() as u64 {
            return rule(format!(
                "segment {} has more bytes ({:#x}) than memory ({:#x})",
                s.name,
                s.buf.len(),
                s.memsz.0
            ));
        }
        let Some(r) = s.range() else {
            return rule(format!("segment {} at {:#x} is empty or wraps", s.name, s.mem.0));
        };
        if total_ram != 0 && s.memsz.0 > total_ram / 2 {
            return rule(format!("segment {} ({:#x} bytes) is larger than half of RAM", s.name, s.memsz.0));
        }
        if let Some(c) = crash
            && !c.contains_range(&r)
        {
            return rule(format!(
                "segment {} {:#x}-{:#x} is outside the load region {:#x}-{:#x}",
                s.name, r.start, r.end, c.start, c.end
            ));
        }
        for t in segments {
            if !std::ptr::eq(s, t)
                && let Some(q) = t.range()
                && r.start <= q.end
                && q.start <= r.end
            {
                return rule(format!("segments {} and {} overlap", s.name, t.name));
            }
        }
    }
    let total: u64 = segments.iter().map(|s| s.memsz.0).sum();
    if total_ram != 0 && total > total_ram / 2 {
        return rule(format!("the segments ({total:#x} bytes) add up to more than half of RAM"));
    }
    if let Some(c) = crash
        && !c.contains(entry)
    {
        return rule(format!("entry {entry:#x} is outside the load region {:#x}-{:#x}", c.start, c.end));
    }
    if !segments.iter().any(|s| s.range().is_some_and(|r| r.contains(entry))) {
        return rule(format!("entry {entry:#x} is in no segment"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tests::fake_bzimage;

    fn ram(start: u64, end: u64) -> MemoryRange {
        MemoryRange { range: PhysRange { start, end }, kind: MemoryKind::Ram }
    }

    fn machine(crash: PhysRange) -> CrashMachine {
        CrashMachine {
            memory_map: vec![
                ram(0x1000, 0x9fbff),
                MemoryRange { range: PhysRange { start: 0x9fc00, end: 0x9ffff }, kind: MemoryKind::Reserved },
                ram(0x10_0000, 0x3ffd_6fff),
                MemoryRange { range: PhysRange { start: 0x3ffd_7000, end: 0x3fff_ffff }, kind: MemoryKind::Acpi },
            ],
            crash_regions: vec![crash],
            cpu_notes: vec![CpuNote { cpu: 0, address: 0x3e63_9400, size: 368 }],
            vmcoreinfo: Some(VmcoreinfoLocation { address: 0x11d_e000, size: 1024 }),
            kernel_text: Some(KernelText {
                paddr: Hex(0x3300_0000),
                vaddr: Hex(0xffff_ffff_9200_0000),
                size: Hex(0x283_0000),
            }),
            direct_map_base: Hex(0xff2a_0ecc_0000_0000),
            paging_levels: 5,
            acpi_rsdp: Some(Hex(0xf59d0)),
            warnings: vec![],
        }
    }

    fn opts() -> Options {
        Options {
            cmdline: "console=ttyS0".into(),
            elf32: false,
            backup: true,
            memmap_cmdline: false,
            skip_checks: false,
            window: None,
            hotplug: None,
        }
    }

    #[test]
    fn mem_min_and_mem_max_bound_every_segment_but_not_the_capture_kernels_memory() {
        let crash = PhysRange { start: 0x2300_0000, end: 0x32ff_ffff };
        let window = PhysRange { start: 0x2800_0000, end: 0x2fff_ffff };
        let opts = Options { window: Some(window), ..opts() };
        let plan = plan_crash_load(&machine(crash), &kernel(), Some(&[7u8; 10_000]), &opts).unwrap();
        assert_eq!(plan.kernel.load.0, 0x2800_0000, "the kernel at the bottom of the window");
        for s in &plan.segments {
            assert!(window.contains_range(&s.range().unwrap()), "{} outside the window", s.name);
        }
        // The capture kernel still gets the whole crash region (minus headers and backup) as RAM.
        let ram_end = plan.e820.iter().filter(|e| e.kind == 1).map(|e| e.addr.0 + e.size.0).max().unwrap();
        assert_eq!(ram_end, crash.end + 1);

        let outside = Options { window: Some(PhysRange { start: 0x4000_0000, end: 0x5000_0000 }), ..opts.clone() };
        let err = plan_crash_load(&machine(crash), &kernel(), None, &outside).unwrap_err();
        assert!(matches!(err, PlanError::EmptyWindow { .. }), "{err}");
        let tiny = Options { window: Some(PhysRange { start: 0x2300_0000, end: 0x2310_0000 }), ..opts };
        let err = plan_crash_load(&machine(crash), &kernel(), None, &tiny).unwrap_err();
        assert!(matches!(err, PlanError::DoesNotFit { .. }), "{err}");
    }

    fn kernel() -> Vec<u8> {
        let mut k = fake_bzimage();
        k[0x234] = 1;
        k
    }

    #[test]
    fn plans_a_valid_crash_load() {
        let crash = PhysRange { start: 0x2300_0000, end: 0x32ff_ffff };
        let plan = plan_crash_load(&machine(crash), &kernel(), Some(&[7u8; 10_000]), &opts()).unwrap();
        assert_eq!(plan.flags.0, 0x3e_0001);
        assert_eq!(plan.kernel.load.0, 0x2300_0000);
        assert_eq!(plan.segments.len(), 6);
        assert!(plan.segments.iter().all(|s| crash.contains_range(&s.range().unwrap())));
        let elfcorehdr = plan.elfcorehdr.unwrap().0;
        assert!(plan.cmdline.ends_with(&format!("elfcorehdr={}K", elfcorehdr / 1024)));
        // The backup PT_LOAD reads the copy; other RAM reads itself, in the direct map.
        let backup = plan.backup.unwrap();
        let low = plan.elf_headers.iter().find(|p| p.paddr.0 == 0x1000).unwrap();
        assert_eq!(low.offset, backup.dst);
        assert_eq!(low.vaddr.0, 0xff2a_0ecc_0000_1000);
        let loads: Vec<(u64, u64)> =
            plan.elf_headers.iter().filter(|p| p.p_type == PT_LOAD).map(|p| (p.paddr.0, p.size.0)).collect();
        assert_eq!(
            loads,
            vec![(0x3300_0000, 0x283_0000), (0x1000, 0x9ec00), (0x10_0000, 0x22f0_0000), (0x3300_0000, 0xcfd_7000)]
        );
        // The capture kernel's RAM: low memory and the crash region minus headers and backup.
        let ram: Vec<(u64, u64)> =
            plan.e820.iter().filter(|e| e.kind == 1).map(|e| (e.addr.0, e.addr.0 + e.size.0)).collect();
        assert_eq!(ram[0], (0x1000, 0x9fc00));
        assert!(ram.iter().all(|&(a, z)| z <= backup.dst.0 || a >= elfcorehdr + ELFCOREHDR_MIN));
        assert!(plan.e820.iter().any(|e| e.kind == 3));
        // The purgatory segment is the entry and its parameter block holds the kernel entry.
        let purgatory = plan.segments.iter().find(|s| s.name == "purgatory").unwrap();
        assert_eq!(purgatory.mem, plan.entry);
        let needle = (plan.kernel.load.0 + 0x200).to_le_bytes();
        assert!(purgatory.buf.windows(8).any(|w| w == needle));
    }

    #[test]
    fn hotplug_sizes_the_headers_for_the_kernel_and_leaves_them_out_of_the_digest() {
        let crash = PhysRange { start: 0x2300_0000, end: 0x32ff_ffff };
        let off = plan_crash_load(&machine(crash), &kernel(), Some(&[7u8; 10_000]), &opts()).unwrap();
        let on_opts = Options { hotplug: Some(462_448), ..opts() };
        let on = plan_crash_load(&machine(crash), &kernel(), Some(&[7u8; 10_000]), &on_opts).unwrap();
        assert_eq!(off.flags.0 & KEXEC_UPDATE_ELFCOREHDR, 0);
        assert!(off.hotplug.is_none());
        assert_eq!(on.flags.0, KEXEC_ON_CRASH | KEXEC_UPDATE_ELFCOREHDR | KEXEC_ARCH_X86_64);
        let hdr = |p: &Plan| p.segments.iter().find(|s| s.name == "elfcorehdr").unwrap().clone();
        assert_eq!(hdr(&off).memsz.0, ELFCOREHDR_MIN);
        // 64-byte ELF header + 462448 bytes of program headers, rounded up to pages.
        assert_eq!(hdr(&on).memsz.0, 0x71000);
        assert_eq!(on.hotplug.unwrap().elfcorehdr_memsz.0, 0x71000);
        assert_eq!(hdr(&on).buf.len(), hdr(&off).buf.len(), "the same headers, with more room after them");
        // The capture kernel's memory map leaves the whole segment alone.
        let (a, z) = (hdr(&on).mem.0, hdr(&on).mem.0 + hdr(&on).memsz.0);
        assert!(on.e820.iter().filter(|e| e.kind == 1).all(|e| e.addr.0 + e.size.0 <= a || e.addr.0 >= z));

        // The purgatory verifies every segment but the headers when hotplug is on.
        let regions = |p: &Plan| {
            let purg = p.segments.iter().find(|s| s.name == "purgatory").unwrap();
            use core::mem::{offset_of, size_of};
            use kdump_purgatory::abi::{Params, Region};
            let at = kdump_purgatory::Purgatory::new(&purg.buf).unwrap().params_offset();
            let u64_at = |o: usize| u64::from_le_bytes(purg.buf[o..o + 8].try_into().unwrap());
            let n = u64_at(at + offset_of!(Params, nr_regions)) as usize;
            (0..n)
                .map(|i| u64_at(at + offset_of!(Params, regions) + i * size_of::<Region>() + offset_of!(Region, start)))
                .collect::<Vec<u64>>()
        };
        assert!(regions(&off).contains(&hdr(&off).mem.0));
        assert!(!regions(&on).contains(&hdr(&on).mem.0));
        assert_eq!(regions(&on).len() + 1, regions(&off).len());

        // Normal loads have no headers to update.
        let normal = plan_normal_load(&machine(crash), &kernel(), None, &on_opts).unwrap();
        assert!(normal.hotplug.is_none() && normal.flags.0 & KEXEC_UPDATE_ELFCOREHDR == 0);
    }

    #[test]
    fn hotplug_refuses_a_second_segment_that_looks_like_elf_headers() {
        let crash = PhysRange { start: 0x2300_0000, end: 0x32ff_ffff };
        let mut initrd = b"\x7fELF".to_vec();
        initrd.resize(10_000, 0);
        let on_opts = Options { hotplug: Some(4096), ..opts() };
        let err = plan_crash_load(&machine(crash), &kernel(), Some(&initrd), &on_opts).unwrap_err();
        assert!(err.to_string().contains("only segment starting with"), "{err}");
        assert!(plan_crash_load(&machine(crash), &kernel(), Some(&initrd), &opts()).is_ok());
    }

    #[test]
    fn plans_a_normal_load_over_all_ram() {
        let crash = PhysRange { start: 0x2300_0000, end: 0x32ff_ffff };
        let plan = plan_normal_load(&machine(crash), &kernel(), Some(&[7u8; 10_000]), &opts()).unwrap();
        assert_eq!(plan.flags.0, 0x3e_0000);
        assert!(!plan.panic && plan.elfcorehdr.is_none() && plan.backup.is_none() && plan.elf_headers.is_empty());
        assert_eq!(plan.kernel.load.0, 0x100_0000, "at pref_address");
        assert_eq!(plan.load_region.start.0, 0x10_0000);
        assert_eq!(plan.cmdline, "console=ttyS0");
        assert_eq!(plan.segments.len(), 4);
        let ram: Vec<u64> = plan.e820.iter().filter(|e| e.kind == 1).map(|e| e.addr.0).collect();
        assert_eq!(ram, vec![0x1000, 0x10_0000]);
    }

    #[test]
    fn refuses_what_the_kernel_would() {
        let small = PhysRange { start: 0x2300_0000, end: 0x23ff_ffff };
        let err = plan_crash_load(&machine(small), &kernel(), None, &opts()).unwrap_err();
        assert!(matches!(err, PlanError::DoesNotFit { .. }), "{err}");
        let mut no5 = kernel();
        no5[0x236] = 0x1f;
        let crash = PhysRange { start: 0x2300_0000, end: 0x32ff_ffff };
        assert_eq!(plan_crash_load(&machine(crash), &no5, None, &opts()).unwrap_err(), PlanError::No5Level);
        let mut m = machine(crash);
        m.crash_regions.clear();
        assert_eq!(plan_crash_load(&m, &kernel(), None, &opts()).unwrap_err(), PlanError::NoCrashRegion);
        let err = plan_crash_load(&machine(crash), b"\x7fELF\x02", None, &opts()).unwrap_err();
        assert!(err.to_string().contains("ELF header is cut short"), "{err}");
        let err = plan_crash_load(&machine(crash), b"070701000000", None, &opts()).unwrap_err();
        assert!(err.to_string().contains("not a kernel"), "{err}");
    }

    #[test]
    fn plans_a_vmlinux_at_a_2mib_delta_with_its_own_entry() {
        use crate::image::tests::fake_vmlinux;
        // A crash region that does not start 2 MiB-aligned: the kernel goes to the next 2 MiB.
        let crash = PhysRange { start: 0x2310_0000, end: 0x32ff_ffff };
        let vmlinux = fake_vmlinux();
        let plan = plan_crash_load(&machine(crash), &vmlinux, Some(&[7u8; 10_000]), &opts()).unwrap();
        assert_eq!(plan.kernel.format, "ELF vmlinux");
        let load = plan.kernel.load.0;
        assert_eq!(load, 0x2320_0000);
        assert_eq!(plan.kernel.entry64.0, load + 0xc40, "startup_64 moved with the PT_LOADs");
        let kernel = plan.segments.iter().find(|s| s.name == "kernel").unwrap();
        assert_eq!((kernel.memsz.0, kernel.bufsz.0), (0x40_8000, 0x40_1000), "the span, .bss zero-filled");
        assert_eq!(kernel.buf[0x20_1000], 0x12, "per-CPU data at its paddr, not its zero vaddr");
        // boot_params: the synthesised header, our loader fields, the command line.
        let bp = &plan.segments.iter().find(|s| s.name == "boot_params").unwrap().buf;
        assert_eq!(&bp[0x202..0x206], b"HdrS");
        assert_eq!(u16::from_le_bytes([bp[0x206], bp[0x207]]), 0x020f);
        assert_eq!(bp[0x210], crate::bootparams::LOADER_TYPE_KEXEC);
        let cmd_line_ptr = u64::from(u32::from_le_bytes(bp[0x228..0x22c].try_into().unwrap()));
        assert_eq!(cmd_line_ptr, plan.boot_params.0 + crate::bootparams::BOOT_PARAMS_SIZE as u64);
        // The purgatory jumps to startup_64 with rsi = boot_params.
        let purgatory = plan.segments.iter().find(|s| s.name == "purgatory").unwrap();
        assert!(purgatory.buf.windows(8).any(|w| w == (load + 0xc40).to_le_bytes()));
        // The 5-level machine gets told that a vmlinux cannot say whether it copes.
        assert!(plan.machine.warnings.iter().any(|w| w.contains("5-level")), "{:?}", plan.machine.warnings);
        let normal = plan_normal_load(&machine(crash), &vmlinux, None, &opts()).unwrap();
        assert_eq!(normal.kernel.load.0, 0x100_0000, "a normal load puts it where it was linked");
        assert_eq!(normal.kernel.entry64.0, 0x100_0c40);
    }

    fn seg(name: &'static str, mem: u64, memsz: u64, len: usize) -> Segment {
        Segment { name, mem: Hex(mem), memsz: Hex(memsz), bufsz: Hex(len as u64), buf: vec![0; len] }
    }

    #[test]
    fn kernel_rules() {
        let crash = Some(PhysRange { start: 0x10_0000, end: 0x1ff_ffff });
        let ok = [seg("a", 0x10_0000, 0x1000, 10), seg("b", 0x20_0000, 0x2000, 0x2000)];
        assert_eq!(check_rules(&ok, 0x10_0000, crash, 1 << 30), Ok(()));
        let rule = |segs: &[Segment], entry| match check_rules(segs, entry, crash, 1 << 30) {
            Err(PlanError::Rule(r)) => r,
            other => panic!("{other:?}"),
        };
        assert!(rule(&ok, 0x300_0000).contains("entry"));
        assert!(rule(&[seg("a", 0x10_0800, 0x1000, 0)], 0x10_0800).contains("page aligned"));
        assert!(rule(&[seg("a", 0x10_0000, 0x1000, 0x1001)], 0x10_0000).contains("more bytes"));
        assert!(rule(&[seg("a", 0x10_0000, 0x2000, 0), seg("b", 0x10_1000, 0x1000, 0)], 0x10_0000).contains("overlap"));
        assert!(rule(&[seg("a", 0x200_0000, 0x1000, 0)], 0x200_0000).contains("outside the load region"));
        let many: Vec<Segment> = (0..17).map(|i| seg("x", 0x10_0000 + i * 0x1000, 0x1000, 0)).collect();
        assert!(rule(&many, 0x10_0000).contains("at most 16"));
        assert!(
            matches!(check_rules(&ok, 0x10_0000, crash, 0x3000), Err(PlanError::Rule(r)) if r.contains("half of RAM"))
        );
    }

    #[test]
    fn subtract_splits_and_drops() {
        let r = |start, end| PhysRange { start, end };
        assert_eq!(subtract(&[r(0, 99)], &[r(10, 19), r(90, 200)]), vec![r(0, 9), r(20, 89)]);
        assert_eq!(subtract(&[r(10, 19)], &[r(0, 100)]), vec![]);
    }

    /// Every segment's bytes, hashed, for a bzImage and a vmlinux crash load, an ELF32 one and a
    /// normal load with more than 128 e820 entries: recorded before the layouts became structs
    /// (`bootproto`), so a layout change cannot move a byte unnoticed.
    #[test]
    fn segment_bytes_are_the_recorded_ones() {
        fn fnv(b: &[u8]) -> u64 {
            b.iter().fold(0xcbf2_9ce4_8422_2325u64, |h, &x| (h ^ u64::from(x)).wrapping_mul(0x100_0000_01b3))
        }
        let crash = PhysRange { start: 0x2300_0000, end: 0x32ff_ffff };
        let mut many = machine(crash);
        many.memory_map
            .extend((0..200u64).map(|i| ram(0x1_0000_0000 + i * 0x20_0000, 0x1_0000_0000 + i * 0x20_0000 + 0xf_ffff)));
        let initrd = [7u8; 10_000];
        let plans = [
            ("bzimage", plan_crash_load(&machine(crash), &kernel(), Some(&initrd), &opts()).unwrap()),
            (
                "vmlinux",
                plan_crash_load(&machine(crash), &crate::image::tests::fake_vmlinux(), Some(&initrd), &opts()).unwrap(),
            ),
            ("elf32", plan_crash_load(&machine(crash), &kernel(), None, &Options { elf32: true, ..opts() }).unwrap()),
            ("normal-e820-ext", plan_normal_load(&many, &kernel(), Some(&initrd), &opts()).unwrap()),
        ];
        let mut got = String::new();
        for (name, plan) in &plans {
            for s in &plan.segments {
                got.push_str(&format!("{name} {} {:016x}\n", s.name, fnv(&s.buf)));
            }
        }
        let want = concat!(
            "bzimage kernel 28c31cf8df2ec325\n",
            "bzimage initrd 3e843bfe02a637f5\n",
            "bzimage backup cbf29ce484222325\n",
            "bzimage elfcorehdr 62225ecbf549f2df\n",
            "bzimage boot_params e5107cd8ef70a98d\n",
            "bzimage purgatory e1288e70a5102814\n",
            "vmlinux kernel 45f9e3bcf6fc9065\n",
            "vmlinux initrd 3e843bfe02a637f5\n",
            "vmlinux backup cbf29ce484222325\n",
            "vmlinux elfcorehdr 62225ecbf549f2df\n",
            "vmlinux boot_params ad479520386e1477\n",
            "vmlinux purgatory e1969bf6db3f61bb\n",
            "elf32 kernel 28c31cf8df2ec325\n",
            "elf32 backup cbf29ce484222325\n",
            "elf32 elfcorehdr 6bdfc8db5779e9ab\n",
            "elf32 boot_params 733fc9a8d9638bd3\n",
            "elf32 purgatory 5f725ea65178a661\n",
            "normal-e820-ext kernel 28c31cf8df2ec325\n",
            "normal-e820-ext initrd 3e843bfe02a637f5\n",
            "normal-e820-ext boot_params a05ed4c4fa4faed1\n",
            "normal-e820-ext purgatory 5b5895a68a598b28\n",
        );
        assert_eq!(got, want);
    }
}
