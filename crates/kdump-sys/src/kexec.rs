//! The kexec syscalls and the reboot that jumps into a loaded kernel.
//!
//! Each wrapper returns the raw errno on failure: what it means depends on the
//! request, and `kdump_kexec::errno::explain` turns it into a sentence.

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
