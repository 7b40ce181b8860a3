//! The capture initramfs: the static `kdump` as `/init`, the config, and the
//! modules the target needs, in load order. Reproducible: same inputs, same bytes.

use kdump_cpio::Archive;

/// Where the capture init finds its module list (one file name a line, in load order).
pub const MODULE_LIST: &str = "etc/kdump-modules";
/// Where the modules go.
pub const MODULE_DIR: &str = "lib/modules";
/// The running kernel's symbols (zstd), for the capture init's `info.json`.
pub const KALLSYMS: &str = "etc/kdump-kallsyms.zst";

/// The ssh target's user key in the capture initramfs (0600).
pub const SSH_KEY: &str = "etc/kdump-ssh-key";
/// The ssh target's known_hosts in the capture initramfs (0600).
pub const KNOWN_HOSTS: &str = "etc/kdump-known-hosts";

/// What an ssh target needs in the image: the texts of the key and of known_hosts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SshFiles {
    /// The OpenSSH private key.
    pub key: String,
    /// The known_hosts lines.
    pub known_hosts: String,
}

/// The S3 target's key pair file in the capture initramfs (0600).
pub const S3_CREDENTIALS: &str = "etc/kdump-s3-credentials";
/// The S3 endpoint's private CA in the capture initramfs, when the config names one.
pub const S3_CA: &str = "etc/kdump-s3-ca.pem";

/// What an S3 target needs in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Files {
    /// The credentials file's text (access key id, secret).
    pub credentials: String,
    /// The private CA's PEM, when the config names one.
    pub ca: Option<Vec<u8>>,
}

/// The files a server target needs in the image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TargetFiles {
    /// An ssh server's.
    Ssh(SshFiles),
    /// An S3 bucket's.
    S3(S3Files),
}

/// A module for the image: its name and its uncompressed `.ko` bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModuleFile {
    /// Module name (`virtio_blk`).
    pub name: String,
    /// Uncompressed ELF object.
    pub data: Vec<u8>,
}

/// The image and a description of what it holds.
#[derive(Debug, Clone)]
pub struct Initramfs {
    /// The newc cpio bytes.
    pub bytes: Vec<u8>,
    /// `path  size` lines, for the setup report.
    pub contents: Vec<(String, u64)>,
}

/// Builds the capture initramfs; `kallsyms` is the [`KALLSYMS`] file, when the running kernel's symbols could be saved.
pub fn build(
    kdump_binary: &[u8],
    config_toml: &str,
    modules: &[ModuleFile],
    kallsyms: Option<&[u8]>,
    targets: &[TargetFiles],
) -> Result<Initramfs, kdump_cpio::Error> {
    let mut a = Archive::new();
    let mut contents = Vec::new();
    for dir in ["dev", "proc", "sys", "mnt", "tmp", "etc", MODULE_DIR] {
        a.add_dir(dir, 0o755)?;
    }
    // The kernel opens /dev/console for init before devtmpfs is mounted.
    a.add_char_device("dev/console", 0o600, 5, 1)?;
    a.add_char_device("dev/null", 0o666, 1, 3)?;
    a.add_file("init", 0o755, kdump_binary.to_vec())?;
    contents.push(("/init (kdump)".to_string(), kdump_binary.len() as u64));
    a.add_file("etc/kdump.toml", 0o644, config_toml.as_bytes().to_vec())?;
    contents.push(("/etc/kdump.toml".to_string(), config_toml.len() as u64));
    let mut list = String::new();
    for (i, m) in modules.iter().enumerate() {
        let file = format!("{i:02}-{}.ko", m.name);
        a.add_file(format!("{MODULE_DIR}/{file}"), 0o644, m.data.clone())?;
        contents.push((format!("/{MODULE_DIR}/{file}"), m.data.len() as u64));
        list.push_str(&file);
        list.push('\n');
    }
    a.add_file(MODULE_LIST, 0o644, list)?;
    if let Some(symbols) = kallsyms {
        a.add_file(KALLSYMS, 0o644, symbols.to_vec())?;
        contents.push((format!("/{KALLSYMS}"), symbols.len() as u64));
    }
    // Only root reads keys, in the image as on disk.
    let mut private: Vec<(&str, &[u8])> = Vec::new();
    for target in targets {
        match target {
            TargetFiles::Ssh(ssh) => {
                private.extend([(SSH_KEY, ssh.key.as_bytes()), (KNOWN_HOSTS, ssh.known_hosts.as_bytes())])
            }
            TargetFiles::S3(s3) => {
                private.push((S3_CREDENTIALS, s3.credentials.as_bytes()));
                private.extend(s3.ca.as_deref().map(|ca| (S3_CA, ca)));
            }
        }
    }
    // One copy of each file: targets of one kind share their keys (`Config::validate`).
    let mut seen = std::collections::BTreeSet::new();
    private.retain(|(path, _)| seen.insert(*path));
    for (path, bytes) in private {
        a.add_file(path, 0o600, bytes.to_vec())?;
        contents.push((format!("/{path}"), bytes.len() as u64));
    }
    Ok(Initramfs { bytes: a.encode()?, contents })
}

/// Parses the module list written by [`build`].
pub fn module_list(text: &str) -> Vec<String> {
    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.contains('/')).map(str::to_string).collect()
}

/// True for a 64-bit little-endian ELF executable without a `PT_INTERP`
/// program header: it needs no dynamic loader, so it can be `/init`.
pub fn is_static_elf(bytes: &[u8]) -> bool {
    const PT_INTERP: u32 = 3;
    if bytes.len() < 64 || &bytes[..4] != b"\x7fELF" || bytes[4] != 2 || bytes[5] != 1 {
        return false;
    }
    let u16_at = |o: usize| u16::from_le_bytes([bytes[o], bytes[o + 1]]);
    let mut phoff = [0u8; 8];
    phoff.copy_from_slice(&bytes[32..40]);
    let Ok(phoff) = usize::try_from(u64::from_le_bytes(phoff)) else { return false };
    let (phentsize, phnum) = (usize::from(u16_at(54)), usize::from(u16_at(56)));
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        bytes.get(at..at + 4).is_some_and(|t| u32::from_le_bytes([t[0], t[1], t[2], t[3]]) != PT_INTERP)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reproducible_with_modules_in_order() {
        let mods = vec![
            ModuleFile { name: "virtio".into(), data: vec![1; 10] },
            ModuleFile { name: "virtio_blk".into(), data: vec![2; 20] },
        ];
        let a = build(b"\x7fELF-binary", "[target]\ndevice = \"/dev/vda\"\n", &mods, None, &[]).unwrap();
        let b = build(b"\x7fELF-binary", "[target]\ndevice = \"/dev/vda\"\n", &mods, None, &[]).unwrap();
        assert_eq!(a.bytes, b.bytes);
        let text = String::from_utf8_lossy(&a.bytes);
        for name in
            ["init", "etc/kdump.toml", "lib/modules/00-virtio.ko", "lib/modules/01-virtio_blk.ko", "dev/console"]
        {
            assert!(text.contains(name), "{name} missing");
        }
        assert_eq!(module_list("00-virtio.ko\n01-virtio_blk.ko\n"), ["00-virtio.ko", "01-virtio_blk.ko"]);
        assert_eq!(a.contents.len(), 4);
        assert!(!text.contains(KALLSYMS));
        let c = build(b"\x7fELF-binary", "", &mods, Some(b"symbols"), &[]).unwrap();
        assert!(String::from_utf8_lossy(&c.bytes).contains(KALLSYMS));
        assert_eq!(c.contents.last(), Some(&(format!("/{KALLSYMS}"), 7)));
        assert!(!String::from_utf8_lossy(&c.bytes).contains(SSH_KEY));
    }

    #[test]
    fn server_keys_are_private() {
        let s3 = TargetFiles::S3(S3Files { credentials: "id\nsecret\n".into(), ca: Some(b"PEM".to_vec()) });
        let img = build(b"\x7fELF-binary", "", &[], None, &[s3]).unwrap();
        let text = String::from_utf8_lossy(&img.bytes);
        for name in [S3_CREDENTIALS, S3_CA] {
            let at = text.find(&format!("{name}\0")).unwrap_or_else(|| panic!("{name} missing"));
            assert_eq!(&text[at - 110..at][14..22], "00008180", "{name}: regular file 0600");
        }
        assert_eq!(
            img.contents[img.contents.len() - 2..],
            [(format!("/{S3_CREDENTIALS}"), 10), (format!("/{S3_CA}"), 3)]
        );

        let ssh = SshFiles { key: "KEY".into(), known_hosts: "10.0.2.100 ssh-ed25519 AAAA\n".into() };
        let img = build(b"\x7fELF-binary", "", &[], None, &[TargetFiles::Ssh(ssh)]).unwrap();
        let text = String::from_utf8_lossy(&img.bytes);
        for name in [SSH_KEY, KNOWN_HOSTS] {
            // newc: 8 hex digits each for magic, ino, mode…; the mode of the entry before its name.
            let at = text.find(&format!("{name}\0")).unwrap_or_else(|| panic!("{name} missing"));
            let header = &text[at - 110..at];
            assert_eq!(&header[14..22], "00008180", "{name}: regular file 0600");
        }
        assert_eq!(
            img.contents[img.contents.len() - 2..],
            [(format!("/{SSH_KEY}"), 3), (format!("/{KNOWN_HOSTS}"), 28)]
        );
    }

    #[test]
    fn static_elf_check() {
        assert!(!is_static_elf(b"#!/bin/sh\n"));
        let sh = std::fs::read("/bin/sh").unwrap_or_default();
        if !sh.is_empty() {
            assert!(!is_static_elf(&sh), "/bin/sh is dynamically linked on Debian");
        }
    }
}
