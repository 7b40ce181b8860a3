//! What the kernel's errno from a kexec syscall means, in a sentence a person
//! can act on. Numbers are Linux's (asm-generic/errno*.h), kept here so this
//! crate stays free of libc.

/// Operation not permitted.
pub const EPERM: i32 = 1;
/// No such file or directory.
pub const ENOENT: i32 = 2;
/// Exec format error.
pub const ENOEXEC: i32 = 8;
/// Out of memory.
pub const ENOMEM: i32 = 12;
/// Device or resource busy.
pub const EBUSY: i32 = 16;
/// Invalid argument.
pub const EINVAL: i32 = 22;
/// Text file busy.
pub const ETXTBSY: i32 = 26;
/// File too large.
pub const EFBIG: i32 = 27;
/// Function not implemented.
pub const ENOSYS: i32 = 38;
/// Package not installed (no hash algorithm for the signature).
pub const ENOPKG: i32 = 65;
/// Not a data message (malformed signature).
pub const EBADMSG: i32 = 74;
/// Accessing a corrupted shared library (bad signature data).
pub const ELIBBAD: i32 = 80;
/// Message too long (signature too large).
pub const EMSGSIZE: i32 = 90;
/// Operation not supported.
pub const EOPNOTSUPP: i32 = 95;
/// Cannot assign requested address.
pub const EADDRNOTAVAIL: i32 = 99;
/// Required key not available.
pub const ENOKEY: i32 = 126;
/// Key was rejected by service.
pub const EKEYREJECTED: i32 = 129;
/// The kernel-internal ENOTSUPP that sometimes leaks out.
pub const ENOTSUPP_KERNEL: i32 = 524;

/// Which kexec call failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Call {
    /// kexec_file_load loading an image.
    FileLoad,
    /// kexec_file_load with KEXEC_FILE_UNLOAD.
    FileUnload,
    /// kexec_load unloading.
    LegacyUnload,
    /// kexec_load loading segments.
    LegacyLoad,
}

/// Signature failures: the kernel checked the image and refused it. Falling
/// back to kexec_load would bypass that check, so it is never done.
pub fn is_signature_error(errno: i32) -> bool {
    matches!(errno, EKEYREJECTED | ENOKEY | EBADMSG | EMSGSIZE | ELIBBAD | ENOPKG)
}

/// The errno's symbolic name (`ENOEXEC`), or `errno N` for one not listed here.
pub fn name(errno: i32) -> String {
    let known = [
        (EPERM, "EPERM"),
        (ENOENT, "ENOENT"),
        (ENOEXEC, "ENOEXEC"),
        (ENOMEM, "ENOMEM"),
        (EBUSY, "EBUSY"),
        (EINVAL, "EINVAL"),
        (ETXTBSY, "ETXTBSY"),
        (EFBIG, "EFBIG"),
        (ENOSYS, "ENOSYS"),
        (ENOPKG, "ENOPKG"),
        (EBADMSG, "EBADMSG"),
        (ELIBBAD, "ELIBBAD"),
        (EMSGSIZE, "EMSGSIZE"),
        (EOPNOTSUPP, "EOPNOTSUPP"),
        (EADDRNOTAVAIL, "EADDRNOTAVAIL"),
        (ENOKEY, "ENOKEY"),
        (EKEYREJECTED, "EKEYREJECTED"),
        (ENOTSUPP_KERNEL, "ENOTSUPP"),
    ];
    known.iter().find(|(e, _)| *e == errno).map_or_else(|| format!("errno {errno}"), |(_, n)| n.to_string())
}

/// Whether `-a` may retry with kexec_load after kexec_file_load failed with
/// `errno` (the same set kexec-tools uses).
pub fn allows_fallback(errno: i32) -> bool {
    matches!(errno, ENOSYS | EINVAL | ENOEXEC | EOPNOTSUPP | ENOTSUPP_KERNEL)
}

/// A sentence naming the likely cause of `errno` and what to do about it.
pub fn explain(call: Call, panic: bool, errno: i32) -> String {
    let kind = if panic { "capture kernel" } else { "kernel" };
    match errno {
        EPERM => "not permitted: kexec needs CAP_SYS_BOOT (run as root); it is also refused once \
                  kernel.kexec_load_disabled is 1 (until reboot), and under lockdown an unsigned kernel is refused"
            .to_string(),
        e if is_signature_error(e) => format!(
            "the kernel refused the {kind}'s signature (errno {e}): this system only boots signed kernels \
             (Secure Boot, lockdown or CONFIG_KEXEC_SIG_FORCE); use a kernel signed with a key the running kernel trusts"
        ),
        ENOEXEC => format!(
            "the running kernel does not accept this {kind} image: kexec_file_load on x86_64 takes a 64-bit bzImage \
             (boot protocol 2.12+), and one built with 5-level paging support if the running kernel uses it"
        ),
        EADDRNOTAVAIL if call == Call::LegacyLoad => "a segment is not page aligned or, for -p, a segment or the \
             entry lies outside the memory reserved with crashkernel=: run with --print-plan to see the segments"
            .to_string(),
        EADDRNOTAVAIL | ENOMEM if panic => "the capture kernel and initrd do not fit in the memory reserved with \
             crashkernel=: reserve more (e.g. crashkernel=512M) or use a smaller initrd"
            .to_string(),
        ENOMEM => {
            "not enough free memory to stage the kernel and initrd; free memory or use a smaller initrd".to_string()
        }
        EADDRNOTAVAIL => {
            "a segment lies outside usable memory: the image asks for an address the machine cannot give".to_string()
        }
        EBUSY => "another kexec load or unload is running; retry when it is done".to_string(),
        EINVAL => match call {
            Call::FileUnload | Call::LegacyUnload => "the kernel rejected the unload request as invalid".to_string(),
            Call::LegacyLoad => format!(
                "the kernel rejected the {kind}'s segments as invalid (too many, overlapping, or larger than half \
                 of RAM), or the flags: run with --print-plan to see them"
            ),
            Call::FileLoad => format!(
                "the kernel rejected the {kind} as invalid: the command line may be too long or not accepted, \
                 or the image is damaged"
            ),
        },
        ENOSYS => match call {
            Call::LegacyUnload => "this kernel was built without kexec_load (CONFIG_KEXEC)".to_string(),
            _ => "this kernel was built without kexec_file_load (CONFIG_KEXEC_FILE); use -c".to_string(),
        },
        ENOENT => "a file the kernel needed was not found".to_string(),
        ETXTBSY => {
            "the kernel or initrd file is open for writing elsewhere; wait until it is fully written".to_string()
        }
        EFBIG => "the kernel or initrd file is larger than the kernel accepts".to_string(),
        other => format!("the kernel returned errno {other}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_errno_gets_its_own_sentence() {
        let generic = explain(Call::FileLoad, true, 4242);
        for e in [EADDRNOTAVAIL, EINVAL, EPERM, EBUSY, ENOEXEC, EKEYREJECTED, ENOMEM, ENOENT, ENOSYS] {
            let text = explain(Call::FileLoad, true, e);
            assert_ne!(text, generic, "errno {e}");
        }
        assert!(explain(Call::FileLoad, true, EADDRNOTAVAIL).contains("crashkernel="));
        assert!(explain(Call::FileLoad, false, EKEYREJECTED).contains("signed"));
    }

    #[test]
    fn fallback_rules_match_kexec_tools() {
        for e in [ENOSYS, EINVAL, ENOEXEC, EOPNOTSUPP] {
            assert!(allows_fallback(e));
        }
        for e in [EKEYREJECTED, ENOKEY, EBADMSG, EMSGSIZE, ELIBBAD, ENOPKG, EPERM, EADDRNOTAVAIL] {
            assert!(!allows_fallback(e), "{e}");
        }
        assert_eq!(
            (name(ENOEXEC), name(EKEYREJECTED), name(4242)),
            ("ENOEXEC".into(), "EKEYREJECTED".into(), "errno 4242".into())
        );
    }
}
