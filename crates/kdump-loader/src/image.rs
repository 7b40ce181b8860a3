//! Kernel images: recognise a bzImage and read the boot-protocol header.
//!
//! Offsets are those of the x86 boot protocol (Documentation/arch/x86/boot.rst).

use core::mem::{offset_of, size_of};

use zerocopy::{FromZeros, IntoBytes};

use crate::bootproto::{SETUP_HEADER_OFFSET, SetupHeader, setup_header_of};
use kdump_elf::{
    EI_CLASS, EI_DATA, ELF64_PHDR_SIZE, ELFCLASS64, ELFDATA2LSB, EM_X86_64, ET_EXEC, Elf64Ehdr, Elf64Phdr, PT_LOAD,
    ReadBytes,
};
use serde::Serialize;

/// A `.lzma` header has no magic: properties byte (lc+lp*9+pb*45 < 225), a dictionary
/// size, and an unpacked size that is either known or all ones. `xz --format=lzma` writes
/// properties 0x5d and an unknown size; accept what the properties say is valid and a
/// dictionary of at most 1.5 GiB, so random bytes are rarely taken for lzma.
fn is_lzma_alone(bytes: &[u8]) -> bool {
    let Some(head) = bytes.get(..13) else { return false };
    let dict = u32::from_le_bytes([head[1], head[2], head[3], head[4]]);
    let size = u64::from_le_bytes([head[5], head[6], head[7], head[8], head[9], head[10], head[11], head[12]]);
    head[0] < 225 && (4096..=3 << 29).contains(&dict) && (size == u64::MAX || size <= MAX_DECOMPRESSED)
}

/// What a file looks like, for messages when it is not a usable bzImage.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum ImageKind {
    /// An x86 bzImage.
    BzImage,
    /// An ELF file (e.g. an uncompressed `vmlinux`).
    Elf,
    /// gzip-compressed data.
    Gzip,
    /// zstd-compressed data.
    Zstd,
    /// xz-compressed data.
    Xz,
    /// Legacy `.lzma` (LZMA-alone) data.
    Lzma,
    /// lz4 frames (what the `lz4` command writes).
    Lz4,
    /// bzip2-compressed data.
    Bzip2,
    /// A cpio archive (an initramfs given as the kernel by mistake).
    Cpio,
    /// Nothing recognised.
    Unknown,
}

impl ImageKind {
    /// Guesses the kind from the first bytes.
    pub fn sniff(bytes: &[u8]) -> Self {
        let starts = |m: &[u8]| bytes.starts_with(m);
        if bytes.len() >= 0x206 && bytes[0x1fe..0x200] == [0x55, 0xaa] && &bytes[0x202..0x206] == b"HdrS" {
            ImageKind::BzImage
        } else if starts(b"\x7fELF") {
            ImageKind::Elf
        } else if starts(&[0x1f, 0x8b]) {
            ImageKind::Gzip
        } else if starts(&[0x28, 0xb5, 0x2f, 0xfd]) {
            ImageKind::Zstd
        } else if starts(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
            ImageKind::Xz
        } else if starts(&[0x04, 0x22, 0x4d, 0x18]) {
            ImageKind::Lz4
        } else if bytes.len() >= 4 && starts(b"BZh") && (b'1'..=b'9').contains(&bytes[3]) {
            ImageKind::Bzip2
        } else if starts(b"070701") || starts(b"070702") {
            ImageKind::Cpio
        } else if is_lzma_alone(bytes) {
            ImageKind::Lzma
        } else {
            ImageKind::Unknown
        }
    }
}

/// Why an image cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ImageError {
    /// Not a bzImage at all.
    #[error("{}", not_a_kernel_message(*.0))]
    NotBzImage(ImageKind),
    /// A bzImage too old for kexec_file_load.
    #[error("boot protocol {major}.{minor:02} is too old: kexec_file_load needs 2.12 or newer (Linux 3.8+)")]
    ProtocolTooOld {
        /// Major version.
        major: u8,
        /// Minor version.
        minor: u8,
    },
    /// No 64-bit entry point.
    #[error("this bzImage has no 64-bit entry point (XLF_KERNEL_64): it is a 32-bit kernel")]
    No64BitEntry,
    /// The setup header points outside the file.
    #[error("the bzImage is truncated or corrupt: {0}")]
    Corrupt(&'static str),
    /// An ELF file that is not a loadable x86_64 vmlinux.
    #[error("this ELF file is not an x86_64 vmlinux kexec can load: {0}")]
    BadVmlinux(String),
    /// A compressed kernel that could not be decompressed.
    #[error("cannot decompress the {kind:?}-compressed kernel: {reason}")]
    Decompress {
        /// The compression.
        kind: ImageKind,
        /// Why.
        reason: String,
    },
}

/// Largest kernel a compressed image may expand to (guards against decompression bombs).
pub const MAX_DECOMPRESSED: u64 = 512 << 20;

/// Decompresses a whole compressed file (a kernel, as kexec-tools accepts for any image
/// type, or a kernel module): gzip, zstd, xz, lzma, lz4 (frame format) or bzip2, recognised
/// by its magic; `Ok(None)` when `bytes` is not compressed. Output beyond
/// [`MAX_DECOMPRESSED`] is refused as it is produced, so a decompression bomb costs at most
/// that much memory.
pub fn decompress(bytes: &[u8]) -> Result<Option<Vec<u8>>, ImageError> {
    decompress_within(bytes, MAX_DECOMPRESSED)
}

fn decompress_within(bytes: &[u8], limit: u64) -> Result<Option<Vec<u8>>, ImageError> {
    use std::io::Read as _;
    let kind = ImageKind::sniff(bytes);
    let fail = |reason: String| ImageError::Decompress { kind, reason };
    let too_big = || fail(format!("it expands to more than {} MiB", limit.div_ceil(1 << 20)));
    let mut out = Vec::new();
    let read_bounded = |mut reader: Box<dyn std::io::Read + '_>, out: &mut Vec<u8>| {
        reader.by_ref().take(limit + 1).read_to_end(out).map(|_| ()).map_err(|e| e.to_string())
    };
    let result = match kind {
        ImageKind::Gzip => read_bounded(Box::new(flate2::read::MultiGzDecoder::new(bytes)), &mut out),
        ImageKind::Zstd => match zstd::stream::read::Decoder::new(bytes) {
            Ok(decoder) => read_bounded(Box::new(decoder), &mut out),
            Err(e) => Err(e.to_string()),
        },
        ImageKind::Lz4 => read_bounded(Box::new(lz4_flex::frame::FrameDecoder::new(bytes)), &mut out),
        ImageKind::Bzip2 => read_bounded(Box::new(bzip2::read::MultiBzDecoder::new(bytes)), &mut out),
        ImageKind::Xz | ImageKind::Lzma => {
            // liblzma's own limit bounds the dictionary (xz allows 1.5 GiB); take() bounds the output.
            let memlimit = MAX_DECOMPRESSED;
            let stream = if kind == ImageKind::Xz {
                liblzma::stream::Stream::new_stream_decoder(memlimit, liblzma::stream::CONCATENATED)
            } else {
                liblzma::stream::Stream::new_lzma_decoder(memlimit)
            };
            match stream {
                Ok(stream) => read_bounded(Box::new(liblzma::read::XzDecoder::new_stream(bytes, stream)), &mut out),
                Err(e) => Err(e.to_string()),
            }
        }
        _ => return Ok(None),
    };
    result.map_err(fail)?;
    if out.len() as u64 > limit {
        return Err(too_big());
    }
    Ok(Some(out))
}

fn not_a_kernel_message(kind: ImageKind) -> String {
    match kind {
        ImageKind::Elf => "this is an ELF file (an uncompressed vmlinux?), not a bzImage: kexec_file_load takes \
                           the compressed bzImage from /boot (vmlinuz-*); kexec -c loads a vmlinux"
            .to_string(),
        ImageKind::Gzip | ImageKind::Zstd | ImageKind::Xz | ImageKind::Lzma | ImageKind::Lz4 | ImageKind::Bzip2 => {
            format!("this is {kind:?}-compressed data, not a bzImage: decompress it, or give the vmlinuz-* from /boot")
        }
        ImageKind::Cpio => "this is a cpio archive (an initramfs?), not a kernel: give it with --initrd".to_string(),
        _ => "this is not a Linux kernel image: expected an x86 bzImage (boot sector signature 0xAA55 and \"HdrS\")"
            .to_string(),
    }
}

/// Load-relevant fields of a bzImage's setup header.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BzImage {
    /// Boot protocol version, e.g. 0x020f.
    pub protocol: u16,
    /// Sectors of real-mode setup code (0 means 4).
    pub setup_sects: u8,
    /// `loadflags` (bit 0: loaded high).
    pub loadflags: u8,
    /// `xloadflags` (bit 0: 64-bit entry, bit 1: may load above 4 GiB, bit 5: 5-level paging).
    pub xloadflags: u16,
    /// Required physical alignment of the kernel.
    pub kernel_alignment: u32,
    /// Preferred load address.
    pub pref_address: u64,
    /// Memory the kernel needs from its load address until it has set itself up.
    pub init_size: u32,
    /// Longest command line the kernel takes (excluding the NUL).
    pub cmdline_size: u32,
    /// The version string embedded in the image, if it points somewhere sane.
    pub version: Option<String>,
}

/// xloadflags bit: the kernel has a 64-bit entry point at +0x200.
pub const XLF_KERNEL_64: u16 = 1 << 0;
/// xloadflags bit: the kernel and its data may sit above 4 GiB.
pub const XLF_CAN_BE_LOADED_ABOVE_4G: u16 = 1 << 1;
/// xloadflags bit: the kernel supports 5-level paging.
pub const XLF_5LEVEL: u16 = 1 << 5;

impl BzImage {
    /// Parses the setup header of a bzImage.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let kind = ImageKind::sniff(bytes);
        if kind != ImageKind::BzImage {
            return Err(ImageError::NotBzImage(kind));
        }
        let (hdr, held) = setup_header_of(bytes);
        // sniff() saw "HdrS", so the version field is there.
        let protocol = hdr.version.get();
        let [minor, major] = protocol.to_le_bytes();
        if protocol < 0x020c {
            return Err(ImageError::ProtocolTooOld { major, minor });
        }
        // Protocol 2.12 headers end after init_size; later fields may be cut off only in a
        // file too short to hold a kernel anyway.
        if held < offset_of!(SetupHeader, init_size) + size_of::<u32>() {
            return Err(ImageError::Corrupt("setup header is cut short"));
        }
        let version_at = usize::from(hdr.kernel_version.get());
        let image = BzImage {
            protocol,
            setup_sects: hdr.setup_sects,
            loadflags: hdr.loadflags,
            xloadflags: hdr.xloadflags.get(),
            kernel_alignment: hdr.kernel_alignment.get(),
            pref_address: hdr.pref_address.get(),
            init_size: hdr.init_size.get(),
            cmdline_size: hdr.cmdline_size.get(),
            version: (version_at != 0).then(|| version_string(bytes, version_at + 0x200)).flatten(),
        };
        if image.xloadflags & XLF_KERNEL_64 == 0 {
            return Err(ImageError::No64BitEntry);
        }
        let setup_len = (usize::from(image.setup_sects.max(4)) + 1) * 512;
        if bytes.len() <= setup_len {
            return Err(ImageError::Corrupt("no protected-mode kernel after the setup code"));
        }
        Ok(image)
    }

    /// True when the kernel can run with 5-level paging enabled.
    pub fn supports_5level(&self) -> bool {
        self.xloadflags & XLF_5LEVEL != 0
    }

    /// Boot protocol as `major.minor`.
    pub fn protocol_string(&self) -> String {
        let [minor, major] = self.protocol.to_le_bytes();
        format!("{major}.{minor:02}")
    }
}

/// Alignment of the physical load offset of an ELF vmlinux: `startup_64` rebuilds its
/// page tables for the load delta with 2 MiB pages and halts if the delta is not a
/// multiple of that.
pub const VMLINUX_ALIGN: u64 = 2 << 20;
/// Largest span of a vmlinux's PT_LOADs (`KERNEL_IMAGE_SIZE` is at most 1 GiB).
pub const VMLINUX_MAX_SPAN: u64 = 1 << 30;
/// `COMMAND_LINE_SIZE` of x86, less the NUL: what a vmlinux takes (it has no setup header to say).
pub const VMLINUX_CMDLINE_SIZE: u32 = 2047;

/// One PT_LOAD of a vmlinux, by its physical address.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct VmlinuxLoad {
    /// Offset of its bytes in the file.
    pub offset: u64,
    /// Physical address it is linked for.
    pub paddr: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes in memory (the rest zero: .bss).
    pub memsz: u64,
}

/// An uncompressed x86_64 kernel (`vmlinux`, ET_EXEC): what the bzImage's decompressor
/// would have placed, and where it starts. It is physically relocatable as a whole
/// (`startup_64` fixes its page tables for the load delta), so it loads at its linked
/// physical addresses shifted by one [`VMLINUX_ALIGN`]-aligned delta.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Vmlinux {
    /// `e_entry`: the physical address of `startup_64`.
    pub entry: u64,
    /// Lowest physical address of the PT_LOADs.
    pub base: u64,
    /// From `base` to the end of the highest PT_LOAD in memory: the memory the kernel needs.
    pub span: u64,
    /// The PT_LOADs, by physical address.
    pub loads: Vec<VmlinuxLoad>,
    /// `Linux version …` found in the image, if any.
    pub version: Option<String>,
}

impl Vmlinux {
    /// Parses the ELF headers; any inconsistency is an error, never a panic.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        let bad = |why: String| ImageError::BadVmlinux(why);
        if ImageKind::sniff(bytes) != ImageKind::Elf {
            return Err(ImageError::NotBzImage(ImageKind::sniff(bytes)));
        }
        let short = || bad("the ELF header is cut short".into());
        let (ehdr, _) = Elf64Ehdr::read_from_prefix(bytes).map_err(|_| short())?;
        if ehdr.e_ident[EI_CLASS] != ELFCLASS64 {
            return Err(bad("it is a 32-bit ELF file (ELFCLASS32): a 64-bit x86 kernel is needed".into()));
        }
        if ehdr.e_ident[EI_DATA] != ELFDATA2LSB {
            return Err(bad("it is big-endian".into()));
        }
        let machine = ehdr.e_machine.get();
        if machine != EM_X86_64 {
            return Err(bad(format!("e_machine is {machine}, not x86_64 (62)")));
        }
        let kind = ehdr.e_type.get();
        if kind != ET_EXEC {
            return Err(bad(format!(
                "e_type is {kind}, not ET_EXEC (2): a module, core file or shared object is not a kernel"
            )));
        }
        let entry = ehdr.e_entry.get();
        let phoff = ehdr.e_phoff.get();
        let phentsize = ehdr.e_phentsize.get();
        if usize::from(phentsize) != ELF64_PHDR_SIZE {
            return Err(bad(format!("e_phentsize is {phentsize}, not 56")));
        }
        let mut loads = Vec::new();
        let mut entry_vaddr = None;
        for i in 0..u64::from(ehdr.e_phnum.get()) {
            let header = phoff
                .checked_add(i * ELF64_PHDR_SIZE as u64)
                .and_then(|a| usize::try_from(a).ok())
                .and_then(|a| bytes.get(a..))
                .and_then(|rest| Elf64Phdr::read_from_prefix(rest).ok())
                .ok_or_else(|| bad(format!("program header {i} lies outside the file")))?
                .0;
            if header.p_type.get() != PT_LOAD {
                continue;
            }
            let load = VmlinuxLoad {
                offset: header.p_offset.get(),
                paddr: header.p_paddr.get(),
                filesz: header.p_filesz.get(),
                memsz: header.p_memsz.get(),
            };
            if load.memsz == 0 {
                continue;
            }
            if load.filesz > load.memsz {
                return Err(bad(format!("PT_LOAD {i} has more bytes in the file than in memory")));
            }
            if load.offset.checked_add(load.filesz).is_none_or(|end| end > bytes.len() as u64) {
                return Err(bad(format!("PT_LOAD {i} lies past the end of the file (truncated?)")));
            }
            if load.paddr.checked_add(load.memsz).is_none() {
                return Err(bad(format!("PT_LOAD {i} wraps around the address space")));
            }
            if load.paddr <= entry && entry < load.paddr + load.memsz {
                entry_vaddr = Some(header.p_vaddr.get());
            }
            loads.push(load);
        }
        loads.sort_by_key(|l| l.paddr);
        let (Some(first), Some(end)) = (loads.first(), loads.iter().map(|l| l.paddr + l.memsz).max()) else {
            return Err(bad("it has no PT_LOAD segment".into()));
        };
        let base = first.paddr;
        if base % VMLINUX_ALIGN != 0 {
            return Err(bad(format!(
                "its lowest PT_LOAD is at physical {base:#x}, not a multiple of 2 MiB: startup_64 can only run \
                 2 MiB-aligned"
            )));
        }
        let span = end - base;
        if span > VMLINUX_MAX_SPAN {
            return Err(bad(format!(
                "its PT_LOADs span {span:#x} bytes of physical memory (from {base:#x}): more than a kernel image \
                 (1 GiB); is p_paddr filled in?"
            )));
        }
        let Some(entry_vaddr) = entry_vaddr else {
            return Err(bad(format!(
                "the entry point {entry:#x} is in no PT_LOAD's physical range: not a vmlinux (e_entry is \
                 startup_64's physical address in one)"
            )));
        };
        // A program's code is linked where it runs, in the lower half; a kernel's text in
        // the upper half (0xffffffff81000000), loaded at a physical address (e_entry).
        if entry_vaddr < KERNEL_HALF {
            return Err(bad(format!(
                "its code is linked at {entry_vaddr:#x}, in user space: a program, not a Linux kernel (whose text \
                 is linked in the upper half, at 0xffffffff81000000 on x86_64)"
            )));
        }
        let version = find_version(bytes);
        Ok(Vmlinux { entry, base, span, loads, version })
    }

    /// The setup header a bzImage of this kernel would carry, as far as the kernel reads
    /// it from boot_params: protocol 2.15 (so `acpi_rsdp_addr` and the `ext_*` fields
    /// count), loaded high, a 64-bit relocatable kernel that may sit above 4 GiB. Bytes
    /// 0x1f1.. of a zero page, with the jump at 0x200 saying where the header ends.
    pub fn setup_header(&self) -> Vec<u8> {
        let mut hdr = SetupHeader::new_zeroed();
        hdr.boot_flag = 0xaa55.into();
        hdr.jump = u16::from_le_bytes([0xeb, (SYNTHETIC_HEADER_END - 0x202) as u8]).into();
        hdr.header = *b"HdrS";
        hdr.version = SYNTHETIC_PROTOCOL.into();
        hdr.loadflags = LOADED_HIGH;
        hdr.initrd_addr_max = u32::MAX.into();
        hdr.kernel_alignment = (VMLINUX_ALIGN as u32).into();
        hdr.relocatable_kernel = 1;
        hdr.xloadflags = (XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G).into();
        hdr.cmdline_size = VMLINUX_CMDLINE_SIZE.into();
        hdr.pref_address = self.base.into();
        hdr.init_size = u32::try_from(self.span).unwrap_or(u32::MAX).into();
        let mut b = vec![0u8; SYNTHETIC_HEADER_END];
        b[SETUP_HEADER_OFFSET..].copy_from_slice(&hdr.as_bytes()[..SYNTHETIC_HEADER_END - SETUP_HEADER_OFFSET]);
        b
    }

    /// The same fields as a parsed header, for the checks shared with bzImages. 5-level
    /// support cannot be read from a vmlinux: it is reported as present, and the planner
    /// warns on 5-level machines.
    pub fn header(&self) -> BzImage {
        BzImage {
            protocol: SYNTHETIC_PROTOCOL,
            setup_sects: 0,
            loadflags: LOADED_HIGH,
            xloadflags: XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G | XLF_5LEVEL,
            kernel_alignment: VMLINUX_ALIGN as u32,
            pref_address: self.base,
            init_size: u32::try_from(self.span).unwrap_or(u32::MAX),
            cmdline_size: VMLINUX_CMDLINE_SIZE,
            version: self.version.clone(),
        }
    }

    /// The kernel's bytes as one buffer from `base`: every PT_LOAD's file bytes at its
    /// offset from `base`, zeros between and after (the rest of `span` is .bss).
    pub fn image(&self, bytes: &[u8]) -> Vec<u8> {
        let filled = self.loads.iter().map(|l| l.paddr - self.base + l.filesz).max().unwrap_or(0);
        let mut out = vec![0u8; usize::try_from(filled).unwrap_or(0)];
        for l in &self.loads {
            // Bounds were checked in parse().
            let (Ok(src), Ok(dst), Ok(len)) =
                (usize::try_from(l.offset), usize::try_from(l.paddr - self.base), usize::try_from(l.filesz))
            else {
                continue;
            };
            if let (Some(from), Some(to)) = (bytes.get(src..src + len), out.get_mut(dst..dst + len)) {
                to.copy_from_slice(from);
            }
        }
        out
    }
}

/// Protocol version written into a vmlinux's synthesised setup header.
pub const SYNTHETIC_PROTOCOL: u16 = 0x020f;
/// End of the synthesised setup header (`pref_address`, `init_size` included).
const SYNTHETIC_HEADER_END: usize = 0x268;
/// loadflags bit: the protected-mode code is loaded at 0x100000 or above.
const LOADED_HIGH: u8 = 1;

/// The kernel's banner, `Linux version X (…`, reduced to X.
fn find_version(bytes: &[u8]) -> Option<String> {
    const BANNER: &[u8] = b"Linux version ";
    let at = bytes.windows(BANNER.len()).position(|w| w == BANNER)? + BANNER.len();
    let tail = bytes.get(at..at + 128.min(bytes.len() - at))?;
    let end = tail.iter().position(|&b| b == b' ' || b == 0 || b == b'\n')?;
    let text = std::str::from_utf8(&tail[..end]).ok()?;
    (!text.is_empty() && text.chars().all(|c| c.is_ascii_graphic())).then(|| text.to_string())
}

/// A kernel `kexec -c` can load.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KernelImage {
    /// A bzImage.
    BzImage(BzImage),
    /// An ELF vmlinux.
    Vmlinux(Vmlinux),
}

impl KernelImage {
    /// A bzImage or, for an ELF file, a vmlinux.
    pub fn parse(bytes: &[u8]) -> Result<Self, ImageError> {
        match ImageKind::sniff(bytes) {
            ImageKind::Elf => Vmlinux::parse(bytes).map(KernelImage::Vmlinux),
            _ => BzImage::parse(bytes).map(KernelImage::BzImage),
        }
    }

    /// The setup-header fields (synthesised for a vmlinux).
    pub fn header(&self) -> BzImage {
        match self {
            KernelImage::BzImage(b) => b.clone(),
            KernelImage::Vmlinux(v) => v.header(),
        }
    }

    /// `bzImage` or `ELF vmlinux`, for messages and plans.
    pub fn format(&self) -> &'static str {
        match self {
            KernelImage::BzImage(_) => "bzImage",
            KernelImage::Vmlinux(_) => "ELF vmlinux",
        }
    }

    /// Bytes from offset 0 whose setup header (0x1f1 up to the end its jump at 0x200 gives)
    /// goes into boot_params: the bzImage itself, or the header synthesised for a vmlinux.
    pub fn setup_bytes<'a>(&self, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match self {
            KernelImage::BzImage(_) => std::borrow::Cow::Borrowed(bytes),
            KernelImage::Vmlinux(v) => std::borrow::Cow::Owned(v.setup_header()),
        }
    }

    /// What is copied to the kernel's load address: a bzImage's protected-mode part (after
    /// the setup sectors), or a vmlinux's PT_LOADs laid out from their lowest address.
    pub fn payload<'a>(&self, bytes: &'a [u8]) -> std::borrow::Cow<'a, [u8]> {
        match self {
            KernelImage::BzImage(b) => {
                let setup_len = (usize::from(b.setup_sects.max(4)) + 1) * 512;
                std::borrow::Cow::Borrowed(bytes.get(setup_len..).unwrap_or_default())
            }
            KernelImage::Vmlinux(v) => std::borrow::Cow::Owned(v.image(bytes)),
        }
    }

    /// Offset of the 64-bit entry from the load address: 0x200 in a bzImage (its
    /// decompressor's `startup_64`), `e_entry` less the lowest PT_LOAD in a vmlinux (the
    /// kernel's own `startup_64`). Both take boot_params in `%rsi`.
    pub fn entry_offset(&self) -> u64 {
        match self {
            KernelImage::BzImage(_) => BZIMAGE_ENTRY64_OFFSET,
            KernelImage::Vmlinux(v) => v.entry - v.base,
        }
    }
}

/// Where the kernel half of x86_64's address space begins.
const KERNEL_HALF: u64 = 0xffff_8000_0000_0000;

/// Offset of the 64-bit entry point in a bzImage's protected-mode part.
pub const BZIMAGE_ENTRY64_OFFSET: u64 = 0x200;

fn version_string(bytes: &[u8], at: usize) -> Option<String> {
    let tail = bytes.get(at..)?;
    let end = tail.iter().take(256).position(|&b| b == 0)?;
    let text = std::str::from_utf8(&tail[..end]).ok()?;
    text.chars().all(|c| !c.is_control()).then(|| text.to_string())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A minimal header with the fields a 6.1 cloud kernel has.
    pub(crate) fn fake_bzimage() -> Vec<u8> {
        let mut b = vec![0u8; 0x4000];
        b[0x1f1] = 27;
        b[0x1fe] = 0x55;
        b[0x1ff] = 0xaa;
        b[0x202..0x206].copy_from_slice(b"HdrS");
        b[0x206..0x208].copy_from_slice(&0x020fu16.to_le_bytes());
        b[0x20e..0x210].copy_from_slice(&0x0100u16.to_le_bytes());
        b[0x300..0x30b].copy_from_slice(b"6.1.0-test\0");
        b[0x211] = 1;
        b[0x230..0x234].copy_from_slice(&0x20_0000u32.to_le_bytes());
        b[0x236..0x238].copy_from_slice(&0x7fu16.to_le_bytes());
        b[0x238..0x23c].copy_from_slice(&2047u32.to_le_bytes());
        b[0x258..0x260].copy_from_slice(&0x100_0000u64.to_le_bytes());
        b[0x260..0x264].copy_from_slice(&0x337_8000u32.to_le_bytes());
        b
    }

    /// An x86_64 vmlinux as the kernel links it: text at 16 MiB with `startup_64` 0xc40 in,
    /// data above, a zero-based per-CPU segment (vaddr 0, paddr after data) and
    /// init + .bss (memsz past filesz), plus a PT_NOTE.
    pub(crate) fn fake_vmlinux() -> Vec<u8> {
        const LOADS: [(u64, u64, u64, u64, u64); 4] = [
            // (offset, vaddr, paddr, filesz, memsz)
            (0x1000, 0xffff_ffff_8100_0000, 0x100_0000, 0x3000, 0x3000),
            (0x4000, 0xffff_ffff_8120_0000, 0x120_0000, 0x1000, 0x1000),
            (0x5000, 0, 0x120_1000, 0x1000, 0x1000),
            (0x6000, 0xffff_ffff_8140_0000, 0x140_0000, 0x1000, 0x8000),
        ];
        let mut b = vec![0u8; 0x7000];
        b[..4].copy_from_slice(b"\x7fELF");
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&2u16.to_le_bytes());
        b[18..20].copy_from_slice(&62u16.to_le_bytes());
        b[24..32].copy_from_slice(&0x100_0c40u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&(LOADS.len() as u16 + 1).to_le_bytes());
        for (i, (offset, vaddr, paddr, filesz, memsz)) in LOADS.into_iter().enumerate() {
            let at = 64 + i * 56;
            b[at..at + 4].copy_from_slice(&1u32.to_le_bytes());
            for (field, v) in [(8, offset), (16, vaddr), (24, paddr), (32, filesz), (40, memsz)] {
                b[at + field..at + field + 8].copy_from_slice(&v.to_le_bytes());
            }
            // Each segment's bytes say which it is.
            b[offset as usize..(offset + filesz) as usize].fill(0x10 + i as u8);
        }
        let note = 64 + LOADS.len() * 56;
        b[note..note + 4].copy_from_slice(&4u32.to_le_bytes());
        b[0x1100..0x1127].copy_from_slice(b"Linux version 6.12.0-test (gcc) #1 SMP\0");
        b
    }

    #[test]
    fn parses_a_vmlinux() {
        let bytes = fake_vmlinux();
        let v = Vmlinux::parse(&bytes).unwrap();
        assert_eq!((v.entry, v.base, v.span), (0x100_0c40, 0x100_0000, 0x40_8000));
        assert_eq!(v.loads.len(), 4);
        assert_eq!(v.version.as_deref(), Some("6.12.0-test"));
        let image = v.image(&bytes);
        assert_eq!(image.len(), 0x40_1000, "file bytes up to the last PT_LOAD's filesz; .bss is memsz");
        assert_eq!((image[0], image[0x2fff], image[0x3000]), (0x10, 0x10, 0));
        assert_eq!((image[0x20_0000], image[0x20_1000], image[0x40_0fff]), (0x11, 0x12, 0x13));
        let k = KernelImage::parse(&bytes).unwrap();
        assert_eq!((k.format(), k.entry_offset(), k.payload(&bytes).len()), ("ELF vmlinux", 0xc40, 0x40_1000));
        let header = k.header();
        assert_eq!((header.init_size, header.pref_address, header.kernel_alignment), (0x40_8000, 0x100_0000, 2 << 20));
        // The synthesised setup header reads back as a bzImage's would.
        let mut zero_page = k.setup_bytes(&bytes).into_owned();
        zero_page.resize(0x1000, 0xff);
        let parsed = BzImage::parse(&zero_page).unwrap();
        assert_eq!(parsed.protocol, SYNTHETIC_PROTOCOL);
        assert_eq!(parsed.xloadflags, XLF_KERNEL_64 | XLF_CAN_BE_LOADED_ABOVE_4G);
        assert_eq!((parsed.init_size, parsed.pref_address, parsed.cmdline_size), (0x40_8000, 0x100_0000, 2047));
        assert_eq!(zero_page[0x234], 1, "relocatable");
        assert_eq!(crate::bootparams::setup_header_end(&zero_page), 0x268);
    }

    #[test]
    fn refuses_what_is_not_a_loadable_vmlinux() {
        let good = fake_vmlinux();
        let with = |at: usize, v: &[u8]| {
            let mut b = good.clone();
            b[at..at + v.len()].copy_from_slice(v);
            b
        };
        let why = |b: &[u8]| Vmlinux::parse(b).unwrap_err().to_string();
        assert!(why(&with(4, &[1])).contains("32-bit"));
        assert!(why(&with(18, &183u16.to_le_bytes())).contains("not x86_64"));
        assert!(why(&with(16, &1u16.to_le_bytes())).contains("ET_EXEC"));
        assert!(why(&with(24, &0x9000_0000u64.to_le_bytes())).contains("entry point"));
        assert!(why(&with(64 + 24, &0x100_1000u64.to_le_bytes())).contains("2 MiB"));
        assert!(why(&with(64 + 24, &0x8000_0000_0000u64.to_le_bytes())).contains("span"));
        assert!(why(&with(64 + 32, &0x10_0000u64.to_le_bytes())).contains("more bytes in the file"));
        assert!(why(&good[..0x6800]).contains("past the end"));
        assert!(why(&with(56, &2000u16.to_le_bytes())).contains("outside the file"));
        // A static program: ET_EXEC, entry and code linked at the same low address.
        assert!(why(&with(64 + 16, &0x100_0000u64.to_le_bytes())).contains("a program, not a Linux kernel"));
        for len in 0..0x200 {
            let _ = Vmlinux::parse(&good[..len]);
        }
    }

    #[test]
    fn parses_a_header() {
        let image = BzImage::parse(&fake_bzimage()).unwrap();
        assert_eq!(image.protocol_string(), "2.15");
        assert_eq!(image.init_size, 0x337_8000);
        assert_eq!(image.kernel_alignment, 0x20_0000);
        assert_eq!(image.cmdline_size, 2047);
        assert!(image.supports_5level());
        assert_eq!(image.version.as_deref(), Some("6.1.0-test"));
    }

    #[test]
    fn explains_what_is_not_a_kernel() {
        let err = BzImage::parse(b"\x7fELF\x02\x01").unwrap_err();
        assert!(err.to_string().contains("vmlinux"), "{err}");
        let err = BzImage::parse(b"070701000000").unwrap_err();
        assert!(err.to_string().contains("--initrd"), "{err}");
        assert!(matches!(BzImage::parse(b"hello"), Err(ImageError::NotBzImage(ImageKind::Unknown))));
        assert!(matches!(BzImage::parse(&[]), Err(ImageError::NotBzImage(ImageKind::Unknown))));
    }

    #[test]
    fn refuses_old_32bit_and_truncated() {
        let mut old = fake_bzimage();
        old[0x206..0x208].copy_from_slice(&0x020au16.to_le_bytes());
        assert!(matches!(BzImage::parse(&old), Err(ImageError::ProtocolTooOld { major: 2, minor: 10 })));
        let mut x32 = fake_bzimage();
        x32[0x236] = 0;
        assert_eq!(BzImage::parse(&x32), Err(ImageError::No64BitEntry));
        let short = &fake_bzimage()[..0x210];
        assert!(matches!(BzImage::parse(short), Err(ImageError::Corrupt(_))));
    }

    #[test]
    fn decompresses_every_format() {
        use std::io::Write as _;
        let plain = fake_bzimage();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        gz.write_all(&plain).unwrap();
        let gz = gz.finish().unwrap();
        let zst = zstd::encode_all(plain.as_slice(), 1).unwrap();
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut plain.as_slice(), &mut xz).unwrap();
        let mut lzma = Vec::new();
        lzma_rs::lzma_compress(&mut plain.as_slice(), &mut lzma).unwrap();
        let mut lz4 = lz4_flex::frame::FrameEncoder::new(Vec::new());
        lz4.write_all(&plain).unwrap();
        let lz4 = lz4.finish().unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&plain).unwrap();
        let bz = bz.finish().unwrap();
        let cases = [
            (ImageKind::Gzip, gz),
            (ImageKind::Zstd, zst),
            (ImageKind::Xz, xz),
            (ImageKind::Lzma, lzma),
            (ImageKind::Lz4, lz4),
            (ImageKind::Bzip2, bz),
        ];
        for (kind, packed) in &cases {
            assert_eq!(ImageKind::sniff(packed), *kind);
            assert_eq!(decompress(packed).unwrap().as_deref(), Some(plain.as_slice()), "{kind:?}");
            let cut = &packed[..packed.len() / 2];
            assert!(matches!(decompress(cut), Err(ImageError::Decompress { .. })), "{kind:?} cut short");
            for len in 0..packed.len().min(64) {
                let _ = decompress(&packed[..len]);
            }
        }
        assert_eq!(decompress(&plain).unwrap(), None);
        assert_eq!(decompress(b"\x7fELF\x02\x01\x01").unwrap(), None);
    }

    #[test]
    fn decompression_stops_at_the_limit() {
        use std::io::Write as _;
        let zeros = vec![0u8; 3 << 20];
        let mut xz = Vec::new();
        lzma_rs::xz_compress(&mut zeros.as_slice(), &mut xz).unwrap();
        let mut lzma = Vec::new();
        lzma_rs::lzma_compress(&mut zeros.as_slice(), &mut lzma).unwrap();
        let mut lz4 = lz4_flex::frame::FrameEncoder::new(Vec::new());
        lz4.write_all(&zeros).unwrap();
        let mut bz = bzip2::write::BzEncoder::new(Vec::new(), bzip2::Compression::fast());
        bz.write_all(&zeros).unwrap();
        for packed in
            [zstd::encode_all(zeros.as_slice(), 1).unwrap(), xz, lzma, lz4.finish().unwrap(), bz.finish().unwrap()]
        {
            let kind = ImageKind::sniff(&packed);
            assert_eq!(decompress_within(&packed, 3 << 20).unwrap().map(|v| v.len()), Some(3 << 20), "{kind:?}");
            let err = decompress_within(&packed, 2 << 20).unwrap_err();
            assert!(err.to_string().contains("more than 2 MiB"), "{kind:?}: {err}");
        }
    }

    #[test]
    fn never_panics_on_any_prefix() {
        let full = fake_bzimage();
        for len in 0..full.len() {
            let _ = BzImage::parse(&full[..len]);
        }
    }
}
