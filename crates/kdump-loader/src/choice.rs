//! Which syscall loads a kernel: what the user asked for (`-s`, `-c`, `-a`), then what the
//! image and the request allow. kexec_file_load takes only a bzImage file as it is and places
//! segments itself; anything else goes to kexec_load, or is refused when `-s` insists.

use crate::image::{ImageError, KernelImage, decompress};

/// Which syscall(s) to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyscallChoice {
    /// kexec_file_load only (`-s`).
    File,
    /// kexec_load only (`-c`).
    Legacy,
    /// kexec_file_load, then kexec_load where the file loader refuses for a reason kexec_load
    /// can fix (`-a`, the default; see [`crate::errno::allows_fallback`]).
    Auto,
}

/// A kernel file as it was read: the bytes to load (decompressed when the file was
/// compressed) and the image they hold.
#[derive(Debug, Clone)]
pub struct KernelFile {
    /// The kernel's bytes (a bzImage or an ELF vmlinux).
    pub bytes: Vec<u8>,
    /// The file was compressed (gzip, zstd, xz, lzma, lz4, bzip2) and was decompressed.
    pub compressed: bool,
    /// What the bytes are.
    pub image: KernelImage,
}

impl KernelFile {
    /// Decompresses (bounded) and parses the contents of a kernel file.
    pub fn parse(raw: Vec<u8>) -> Result<Self, ImageError> {
        let decompressed = decompress(&raw)?;
        let compressed = decompressed.is_some();
        let bytes = decompressed.unwrap_or(raw);
        let image = KernelImage::parse(&bytes)?;
        Ok(Self { bytes, compressed, image })
    }

    /// Only kexec_load can load it: an ELF vmlinux, or the contents of a compressed file
    /// (kexec_file_load reads the file itself and takes only a plain bzImage). What it is, and
    /// why the file loader will not take it.
    pub fn needs_kexec_load(&self) -> Option<(&'static str, &'static str)> {
        match (&self.image, self.compressed) {
            (KernelImage::Vmlinux(_), _) => {
                Some(("an ELF vmlinux", "kexec_file_load (-s) takes only a bzImage on x86_64"))
            }
            (_, true) => Some(("compressed", "kexec_file_load (-s) takes the bzImage file itself")),
            _ => None,
        }
    }
}

/// The syscall to use, and why it is not the one asked for when it is not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chosen {
    /// The syscall(s).
    pub choice: SyscallChoice,
    /// Why `-a` became `-c`, for the user.
    pub switched: Option<String>,
}

/// Decides the syscall for loading `kernel` (named `name` in messages) when `requested`;
/// `placed` is true when the user bounds where segments go (`--mem-min`/`--mem-max`), which
/// only kexec_load allows. Refuses `-s` where it cannot work, with the fix.
pub fn choose(requested: SyscallChoice, kernel: &KernelFile, name: &str, placed: bool) -> Result<Chosen, String> {
    let (switched, refused) = if let Some((what, why)) = kernel.needs_kexec_load() {
        (
            format!("{name} is {what}: loading it with kexec_load (-c)"),
            format!("{name} is {what}: {why}; drop -s, or use -c"),
        )
    } else if placed {
        (
            "--mem-min/--mem-max given: loading with kexec_load (-c), which honours them".to_string(),
            "--mem-min/--mem-max place segments, which only kexec_load (-c) lets user space do: with \
             kexec_file_load (-s) the kernel places them; drop -s or the bounds"
                .to_string(),
        )
    } else {
        return Ok(Chosen { choice: requested, switched: None });
    };
    match requested {
        SyscallChoice::Legacy => Ok(Chosen { choice: SyscallChoice::Legacy, switched: None }),
        SyscallChoice::File => Err(refused),
        SyscallChoice::Auto => Ok(Chosen { choice: SyscallChoice::Legacy, switched: Some(switched) }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::tests::{fake_bzimage, fake_vmlinux};

    fn gzip(bytes: &[u8]) -> Vec<u8> {
        use std::io::Write;
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    }

    #[test]
    fn a_plain_bzimage_goes_where_asked() {
        let k = KernelFile::parse(fake_bzimage()).unwrap();
        assert!(!k.compressed && k.needs_kexec_load().is_none());
        for c in [SyscallChoice::File, SyscallChoice::Legacy, SyscallChoice::Auto] {
            assert_eq!(choose(c, &k, "bzImage", false), Ok(Chosen { choice: c, switched: None }));
        }
    }

    #[test]
    fn a_vmlinux_a_compressed_file_or_placed_segments_need_kexec_load() {
        let cases = [
            (KernelFile::parse(fake_vmlinux()).unwrap(), false, "ELF vmlinux"),
            (KernelFile::parse(gzip(&fake_bzimage())).unwrap(), false, "compressed"),
            (KernelFile::parse(fake_bzimage()).unwrap(), true, "--mem-min/--mem-max"),
        ];
        for (k, placed, why) in &cases {
            let auto = choose(SyscallChoice::Auto, k, "K", *placed).unwrap();
            assert_eq!(auto.choice, SyscallChoice::Legacy);
            assert!(auto.switched.as_deref().is_some_and(|s| s.contains(why)), "{auto:?}");
            let err = choose(SyscallChoice::File, k, "K", *placed).unwrap_err();
            assert!(err.contains(why) && err.contains("drop -s"), "{err}");
            assert!(err.contains("kexec_file_load (-s)"), "the refusal says why: {err}");
            assert_eq!(choose(SyscallChoice::Legacy, k, "K", *placed).unwrap().choice, SyscallChoice::Legacy);
        }
        assert!(cases[1].0.compressed && cases[1].0.bytes == fake_bzimage());
    }
}
