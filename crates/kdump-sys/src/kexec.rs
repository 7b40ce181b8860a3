//! The kexec syscalls and the reboot that jumps into a loaded kernel.
//!
//! Each wrapper returns the raw errno on failure: what it means depends on the
//! request, and `kdump_loader::errno::explain` turns it into a sentence.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::AsRawFd;

/// `kexec_file_load` flag: unload instead of load.
pub const KEXEC_FILE_UNLOAD: u64 = 0x1;
/// `kexec_file_load` flag: the image is a capture kernel for panics.
pub const KEXEC_FILE_ON_CRASH: u64 = 0x2;
/// `kexec_file_load` flag: there is no initramfs (the initrd fd is ignored).
pub const KEXEC_FILE_NO_INITRAMFS: u64 = 0x4;

/// `kexec_load` flag: the image is a capture kernel for panics.
pub const KEXEC_ON_CRASH: u64 = 0x1;
/// `kexec_load` architecture field for x86_64 (EM_X86_64 << 16).
pub const KEXEC_ARCH_X86_64: u64 = 62 << 16;

/// `reboot(2)` command that starts the loaded kexec kernel.
const LINUX_REBOOT_CMD_KEXEC: libc::c_int = 0x4558_4543;

fn errno() -> i32 {
    std::io::Error::last_os_error().raw_os_error().unwrap_or(libc::EIO)
}

/// `kexec_file_load(kernel, initrd, cmdline, flags)`. `cmdline` is passed with
/// its terminating NUL, as the kernel requires.
pub fn kexec_file_load(kernel: &File, initrd: Option<&File>, cmdline: &CStr, flags: u64) -> Result<(), i32> {
    let (initrd_fd, flags) = match initrd {
        Some(f) => (f.as_raw_fd(), flags),
        None => (-1, flags | KEXEC_FILE_NO_INITRAMFS),
    };
    let bytes = cmdline.to_bytes_with_nul();
    // SAFETY: the fds are open for the whole call (borrowed Files), and
    // `bytes` points at `bytes.len()` readable bytes ending in NUL that
    // outlive the call. The kernel only reads from these arguments.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            libc::c_long::from(kernel.as_raw_fd()),
            libc::c_long::from(initrd_fd),
            bytes.len(),
            bytes.as_ptr(),
            flags,
        )
    };
    if rc == 0 { Ok(()) } else { Err(errno()) }
}

/// Unloads through `kexec_file_load(-1, -1, 0, NULL, UNLOAD [| ON_CRASH])`.
pub fn kexec_file_unload(panic: bool) -> Result<(), i32> {
    let flags = KEXEC_FILE_UNLOAD | if panic { KEXEC_FILE_ON_CRASH } else { 0 };
    // SAFETY: no pointers are passed (NULL command line of length 0) and the
    // fds are -1, which the kernel ignores for an unload.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_kexec_file_load,
            -1 as libc::c_long,
            -1 as libc::c_long,
            0usize,
            std::ptr::null::<u8>(),
            flags,
        )
    };
    if rc == 0 { Ok(()) } else { Err(errno()) }
}

/// Most segments `kexec_load` accepts (KEXEC_SEGMENT_MAX).
pub const KEXEC_SEGMENT_MAX: usize = 16;

/// One `kexec_load` segment: `buf` is copied to physical `mem`, zero-filled up to `memsz`.
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    /// Contents (`bufsz` = its length).
    pub buf: &'a [u8],
    /// Physical destination (page aligned).
    pub mem: u64,
    /// Size in memory (page aligned, ≥ `buf.len()`).
    pub memsz: u64,
}

/// `struct kexec_segment` of include/uapi/linux/kexec.h.
#[repr(C)]
struct RawSegment {
    buf: *const u8,
    bufsz: usize,
    mem: usize,
    memsz: usize,
}

/// `kexec_load(entry, nr_segments, segments, flags)`. `flags` carries the architecture
/// (`KEXEC_ARCH_X86_64`) and e.g. `KEXEC_ON_CRASH`. The buffers are borrowed for the whole
/// call; the kernel copies them before returning.
pub fn kexec_load(entry: u64, segments: &[Segment<'_>], flags: u64) -> Result<(), i32> {
    if segments.len() > KEXEC_SEGMENT_MAX {
        return Err(libc::EINVAL);
    }
    let mut raw = Vec::with_capacity(segments.len());
    for s in segments {
        let (Ok(mem), Ok(memsz)) = (usize::try_from(s.mem), usize::try_from(s.memsz)) else {
            return Err(libc::EINVAL);
        };
        raw.push(RawSegment { buf: s.buf.as_ptr(), bufsz: s.buf.len(), mem, memsz });
    }
    // SAFETY: `raw` holds `raw.len()` valid kexec_segment structs whose `buf` pointers point at
    // `bufsz` readable bytes borrowed from `segments`, which outlive the call; the kernel only
    // reads them (and copies the buffers) during the call.
    let rc = unsafe { libc::syscall(libc::SYS_kexec_load, entry, raw.len(), raw.as_ptr(), flags) };
    if rc == 0 { Ok(()) } else { Err(errno()) }
}

/// Unloads through `kexec_load(0, 0, NULL, flags)`.
pub fn kexec_load_unload(panic: bool) -> Result<(), i32> {
    let flags = KEXEC_ARCH_X86_64 | if panic { KEXEC_ON_CRASH } else { 0 };
    // SAFETY: zero segments and a NULL segment array: the kernel reads nothing.
    let rc = unsafe { libc::syscall(libc::SYS_kexec_load, 0usize, 0usize, std::ptr::null::<u8>(), flags) };
    if rc == 0 { Ok(()) } else { Err(errno()) }
}

/// Flushes every filesystem (`sync(2)`).
pub fn sync_filesystems() {
    // SAFETY: sync takes no arguments and cannot fail.
    unsafe { libc::sync() };
}

/// Reboots into the loaded kexec kernel. Returns only on failure, with the errno.
pub fn reboot_into_loaded_kernel() -> i32 {
    // SAFETY: reboot with LINUX_REBOOT_CMD_KEXEC takes no pointer argument.
    unsafe { libc::reboot(LINUX_REBOOT_CMD_KEXEC) };
    errno()
}

/// Takes every network interface but `lo` down (clears IFF_UP), as kexec-tools
/// does before `-e`, so NICs stop DMA before the new kernel starts. Returns
/// the interfaces taken down.
pub fn take_interfaces_down() -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    let dir = match std::fs::read_dir("/sys/class/net") {
        Ok(d) => d,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(names),
        Err(e) => return Err(e),
    };
    // SAFETY: plain socket(2) call; the fd is owned by `sock` below.
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd was just returned by socket() and is not owned elsewhere.
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    for entry in dir {
        let name = entry?.file_name().to_string_lossy().into_owned();
        if name == "lo" || name.len() >= libc::IFNAMSIZ {
            continue;
        }
        // SAFETY: ifreq is plain old data; all-zero is a valid value.
        let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
        for (dst, src) in req.ifr_name.iter_mut().zip(name.bytes()) {
            *dst = src as libc::c_char;
        }
        // SAFETY: SIOCGIFFLAGS reads ifr_name and writes ifr_flags inside `req`, which lives across the call.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut req) } < 0 {
            continue;
        }
        // SAFETY: the union member ifru_flags is the one SIOCGIFFLAGS filled.
        let flags = unsafe { req.ifr_ifru.ifru_flags };
        if flags & libc::IFF_UP as libc::c_short == 0 {
            continue;
        }
        req.ifr_ifru.ifru_flags = flags & !(libc::IFF_UP as libc::c_short);
        // SAFETY: SIOCSIFFLAGS reads `req`, which lives across the call.
        if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &req) } == 0 {
            names.push(name);
        }
    }
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn more_than_16_segments_never_reach_the_kernel() {
        let buf = [0u8; 1];
        let segs: Vec<Segment<'_>> =
            (0..17u64).map(|i| Segment { buf: &buf, mem: 0x100_0000 + i * 0x1000, memsz: 0x1000 }).collect();
        // Refused before the syscall (a test must never really call kexec_load).
        assert_eq!(kexec_load(0x100_0000, &segs, KEXEC_ARCH_X86_64 | KEXEC_ON_CRASH), Err(libc::EINVAL));
    }
}
