//! Gets real kernels: Debian's cloud kernels of several releases, downloaded
//! once into the cache.
//!
//! The machine's own release (bookworm) comes through its own apt state. The
//! other suites come from the same package registry: the URI of the machine's
//! configured Debian source with another suite name, in a private apt state
//! under the cache (`-o Dir::State::Lists=… -o Dir::Etc::sourcelist=…`), so
//! the host's sources and lists stay untouched.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

use crate::paths::cache_dir;
use crate::{LabError, io_err};

/// The Debian metapackage whose dependency is the kernel the lab boots.
const METAPACKAGE: &str = "linux-image-cloud-amd64";

/// The keyring that signs every Debian suite the lab uses.
const KEYRING: &str = "/usr/share/keyrings/debian-archive-keyring.gpg";

/// A Debian cloud kernel the lab can boot: the kernel matrix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum LabKernel {
    /// Debian 11's 5.10: no kallsyms keys in VMCOREINFO, no 5-level paging.
    Bullseye,
    /// Debian 12's 6.1, the machine's own release and the lab's default.
    Bookworm,
    /// Debian 13's 6.12.
    Trixie,
    /// Debian unstable: the newest kernel Debian ships.
    Sid,
}

impl LabKernel {
    /// Every kernel of the matrix, oldest first.
    pub const MATRIX: [LabKernel; 4] = [LabKernel::Bullseye, LabKernel::Bookworm, LabKernel::Trixie, LabKernel::Sid];

    /// The Debian suite the kernel comes from.
    pub fn suite(self) -> &'static str {
        match self {
            LabKernel::Bullseye => "bullseye",
            LabKernel::Bookworm => "bookworm",
            LabKernel::Trixie => "trixie",
            LabKernel::Sid => "sid",
        }
    }

    /// The suite named `name` (`bullseye`, `bookworm`, `trixie`, `sid`).
    pub fn from_suite(name: &str) -> Option<LabKernel> {
        Self::MATRIX.into_iter().find(|k| k.suite() == name)
    }

    /// A QEMU CPU model the kernel boots on with the most it supports:
    /// `max` (5-level paging, SHA extensions) except for 5.10, which cannot
    /// boot with 5-level paging offered.
    pub fn cpu_model(self) -> &'static str {
        match self {
            LabKernel::Bullseye => "Haswell-v4",
            _ => "max",
        }
    }

    /// The kernels `KDUMP_LAB_MATRIX` names (comma-separated suites, or
    /// `all`), else [`LabKernel::MATRIX`]. Lets a developer run the matrix
    /// tests on one kernel.
    pub fn matrix_from_env() -> Result<Vec<LabKernel>, LabError> {
        let Some(value) = std::env::var_os("KDUMP_LAB_MATRIX") else { return Ok(Self::MATRIX.to_vec()) };
        let value = value.to_string_lossy();
        if value == "all" {
            return Ok(Self::MATRIX.to_vec());
        }
        value
            .split(',')
            .map(|s| {
                Self::from_suite(s.trim()).ok_or_else(|| {
                    LabError::Setup(format!("KDUMP_LAB_MATRIX: unknown suite {s:?} (bullseye, bookworm, trixie, sid)"))
                })
            })
            .collect()
    }

    /// The kernel's bzImage, downloaded and unpacked once into the cache.
    /// For the default kernel, `$KDUMP_LAB_KERNEL` overrides it.
    pub fn image(self) -> Result<PathBuf, LabError> {
        if self == LabKernel::Bookworm {
            return kernel_image();
        }
        fetch(Some(self.suite()))
    }

    /// The kernel's debug vmlinux (DWARF and symbols; what `crash` and
    /// `makedumpfile -x` need), from Debian's `<kernel package>-dbg`: only
    /// the vmlinux is unpacked (about 600 MiB of the 1.7 GiB
    /// package), once, into the cache. The package is the one matching
    /// [`LabKernel::image`], so `$KDUMP_LAB_KERNEL` has none.
    pub fn debug_vmlinux(self) -> Result<PathBuf, LabError> {
        if self == LabKernel::Bookworm && std::env::var_os("KDUMP_LAB_KERNEL").is_some() {
            return Err(LabError::Setup(
                "KDUMP_LAB_KERNEL is set: the lab has no debug vmlinux for that kernel".into(),
            ));
        }
        let (_guard, _lock, cache) = lock_cache()?;
        let apt = match self {
            LabKernel::Bookworm => Apt::host(),
            _ => Apt::private(&cache, self.suite())?,
        };
        let package = format!("{}-dbg", apt.kernel_package()?);
        let dir = cache.join(&package);
        let vmlinux = dir.join("vmlinux");
        if vmlinux.is_file() {
            return Ok(vmlinux);
        }
        let staging = cache.join(format!("{package}.partial"));
        let _ = std::fs::remove_dir_all(&staging);
        std::fs::create_dir_all(&staging).map_err(io_err(&staging))?;
        let deb = apt.download(&package, &staging)?;
        run(
            Command::new("sh")
                .arg("-c")
                // boot/vmlinux-* is the file in older packages, a link to lib/modules/*/vmlinux in newer ones.
                .arg("dpkg-deb --fsys-tarfile \"$1\" | tar -x -C \"$2\" --wildcards './usr/lib/debug/*vmlinux*'")
                .args(["sh".as_ref(), deb.as_os_str(), staging.as_os_str()]),
            "dpkg-deb --fsys-tarfile | tar -x",
        )?;
        let _ = std::fs::remove_file(&deb);
        let found = std::fs::read_dir(staging.join("usr/lib/debug/boot"))
            .map_err(io_err(&staging))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinux-")))
            .ok_or_else(|| LabError::Setup(format!("{package} holds no usr/lib/debug/boot/vmlinux-*")))?;
        let found = std::fs::canonicalize(&found).map_err(io_err(&found))?;
        std::fs::rename(&found, staging.join("vmlinux")).map_err(io_err(&found))?;
        let _ = std::fs::remove_dir_all(staging.join("usr"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::rename(&staging, &dir).map_err(io_err(&dir))?;
        Ok(vmlinux)
    }
}

impl std::fmt::Display for LabKernel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.suite())
    }
}

static FETCH: Mutex<()> = Mutex::new(());

/// The bzImage the lab boots by default: `$KDUMP_LAB_KERNEL` if set, else the
/// kernel package that `linux-image-cloud-amd64` depends on in the machine's
/// own apt sources, fetched with `apt-get download` and unpacked with `dpkg -x`
/// into the cache.
pub fn kernel_image() -> Result<PathBuf, LabError> {
    if let Some(path) = std::env::var_os("KDUMP_LAB_KERNEL") {
        let path = PathBuf::from(path);
        if !path.is_file() {
            return Err(LabError::Setup(format!("KDUMP_LAB_KERNEL={} is not a file", path.display())));
        }
        return Ok(path);
    }
    fetch(None)
}

/// The download cache, locked against other threads and, by a file lock, against
/// other test processes fetching at the same time. Held until the guards drop.
fn lock_cache() -> Result<(std::sync::MutexGuard<'static, ()>, File, PathBuf), LabError> {
    let guard = FETCH.lock().unwrap_or_else(|p| p.into_inner());
    let cache = cache_dir().join("kernel");
    std::fs::create_dir_all(&cache).map_err(io_err(&cache))?;
    let lock_path = cache.join(".lock");
    let lock = File::create(&lock_path).map_err(io_err(&lock_path))?;
    lock.lock().map_err(io_err(&lock_path))?;
    Ok((guard, lock, cache))
}

/// Fetches the cloud kernel of `suite` (None: the machine's own sources).
fn fetch(suite: Option<&str>) -> Result<PathBuf, LabError> {
    let (_guard, _lock, cache) = lock_cache()?;

    let apt = match suite {
        None => Apt::host(),
        Some(suite) => Apt::private(&cache, suite)?,
    };
    let package = match apt.kernel_package() {
        Ok(p) => p,
        // Offline or no apt lists: a kernel of this suite already in the cache will do.
        Err(e) => return find_cached(&cache, suite).ok_or(e),
    };
    let unpacked = cache.join(&package);
    if let Some(image) = find_vmlinuz(&unpacked) {
        add_modules(&apt, &package, &unpacked)?;
        return Ok(image);
    }
    let staging = cache.join(format!("{package}.partial"));
    let _ = std::fs::remove_dir_all(&staging);
    apt.unpack(&package, &cache, &staging)?;
    if find_vmlinuz(&staging).is_none() {
        // Newer suites split the kernel: the image package is a stub whose
        // `linux-binary-*` dependency holds the vmlinuz.
        for dependency in apt.depends(&package)?.into_iter().filter(|d| d.starts_with("linux-binary-")) {
            apt.unpack(&dependency, &cache, &staging)?;
        }
    }
    add_modules(&apt, &package, &staging)?;
    std::fs::rename(&staging, &unpacked).map_err(io_err(&unpacked))?;
    if let Some(suite) = suite {
        let marker = unpacked.join(".suite");
        std::fs::write(&marker, suite).map_err(io_err(marker))?;
    }
    find_vmlinuz(&unpacked).ok_or_else(|| LabError::Setup(format!("{package} holds no vmlinuz")))
}

/// Newer suites split the modules out of the image too (`linux-modules-*`, with the
/// `modules.*` indexes in `linux-base-*`): they are unpacked beside the kernel once, so the
/// lab's NIC, NFS and module tests find them as in older packages. Older suites have no such
/// packages, and their image package already holds the modules.
fn add_modules(apt: &Apt, package: &str, unpacked: &Path) -> Result<(), LabError> {
    let Some(version) = package.strip_prefix("linux-image-") else { return Ok(()) };
    let marker = unpacked.join(".modules");
    if marker.exists() || !apt.depends(package)?.iter().any(|d| d.starts_with("linux-binary-")) {
        return Ok(());
    }
    let dir = unpacked.parent().unwrap_or(unpacked);
    for split in [format!("linux-base-{version}"), format!("linux-modules-{version}")] {
        apt.unpack(&split, dir, unpacked)?;
    }
    std::fs::write(&marker, b"").map_err(io_err(&marker))
}

/// makedumpfile as packaged in another Debian `suite` (e.g. sid's, which has
/// zstd and knows newer kernels' page types), runnable on this machine: the
/// package and its libraries (with that suite's libc) unpacked into the cache
/// and started through that libc's own dynamic loader. Returns a wrapper
/// script that takes makedumpfile's arguments. A test oracle and benchmark
/// reference only; the product never runs it.
pub fn foreign_makedumpfile(suite: &str) -> Result<PathBuf, LabError> {
    let (_guard, _lock, cache) = lock_cache()?;

    let root = cache_dir().join(format!("makedumpfile-{suite}"));
    let wrapper = root.join("makedumpfile");
    if wrapper.is_file() {
        return Ok(wrapper);
    }
    let apt = Apt::private(&cache, suite)?;
    // The package and two levels of its dependencies (libdw's compressors, libc's
    // libgcc); virtual packages and perl (only for its helper script) are left out.
    let mut packages = vec!["makedumpfile".to_string()];
    let mut level = packages.clone();
    for _ in 0..2 {
        let mut next = Vec::new();
        for p in &level {
            for d in apt.depends(p)? {
                if !d.starts_with('<') && !d.starts_with("perl") && !packages.contains(&d) {
                    packages.push(d.clone());
                    next.push(d);
                }
            }
        }
        level = next;
    }
    let staging = root.with_extension("partial");
    let _ = std::fs::remove_dir_all(&staging);
    for package in &packages {
        apt.unpack(package, &cache, &staging)?;
    }
    let lib = root.join("usr/lib/x86_64-linux-gnu");
    // Newer suites ship it in /usr/bin, older ones in /usr/sbin.
    let binary = ["usr/bin/makedumpfile", "usr/sbin/makedumpfile"]
        .into_iter()
        .find(|b| staging.join(b).is_file())
        .ok_or_else(|| LabError::Setup(format!("Debian {suite}'s makedumpfile package holds no makedumpfile")))?;
    let script = format!(
        "#!/bin/sh\n# makedumpfile from Debian {suite}, with its own libraries ({}).\n\
         exec {lib}/ld-linux-x86-64.so.2 --library-path {lib}:{root}/lib/x86_64-linux-gnu {root}/{binary} \"$@\"\n",
        packages.join(" "),
        lib = lib.display(),
        root = root.display(),
    );
    let staged_wrapper = staging.join("makedumpfile");
    std::fs::write(&staged_wrapper, script).map_err(io_err(&staged_wrapper))?;
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&staged_wrapper, std::fs::Permissions::from_mode(0o755))
        .map_err(io_err(&staged_wrapper))?;
    let _ = std::fs::remove_dir_all(&root);
    std::fs::rename(&staging, &root).map_err(io_err(&root))?;
    Ok(wrapper)
}

/// apt, with the machine's state or a private one for another suite.
struct Apt {
    options: Vec<String>,
}

impl Apt {
    fn host() -> Apt {
        Apt { options: Vec::new() }
    }

    /// A private apt state for `suite` under `cache/apt-<suite>`, its lists
    /// refreshed once a day.
    fn private(cache: &Path, suite: &str) -> Result<Apt, LabError> {
        let root = cache.join(format!("apt-{suite}"));
        let lists = root.join("lists");
        // Its own package cache too: apt-cache would otherwise rebuild the host's from these lists.
        let apt_cache = root.join("cache");
        for dir in [lists.join("partial"), apt_cache.join("archives/partial")] {
            std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
        }
        let uri = debian_uri()?;
        let sources = root.join("sources.list");
        let line = format!("deb [signed-by={KEYRING}] {uri} {suite} main\n");
        std::fs::write(&sources, line).map_err(io_err(&sources))?;
        let apt = Apt {
            options: [
                format!("Dir::State::Lists={}", lists.display()),
                format!("Dir::Etc::sourcelist={}", sources.display()),
                "Dir::Etc::sourceparts=-".to_string(),
                format!("Dir::Cache={}", apt_cache.display()),
                "APT::Get::List-Cleanup=0".to_string(),
            ]
            .into_iter()
            .flat_map(|o| ["-o".to_string(), o])
            .collect(),
        };
        let stamp = root.join("updated");
        let fresh = std::fs::metadata(&stamp)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().is_ok_and(|age| age.as_secs() < 86_400));
        if !fresh {
            match run(Command::new("apt-get").args(&apt.options).args(["-q", "update"]), "apt-get update") {
                Ok(()) => std::fs::write(&stamp, b"").map_err(io_err(&stamp))?,
                // Offline: the lists (or the cached kernel) from an earlier day may still serve.
                Err(e) => eprintln!("kdump-lab: {e}"),
            }
        }
        Ok(apt)
    }

    fn depends(&self, package: &str) -> Result<Vec<String>, LabError> {
        let out = Command::new("apt-cache")
            .args(&self.options)
            .args(["depends", package])
            .output()
            .map_err(|e| LabError::Setup(format!("cannot run apt-cache: {e}")))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().filter_map(|l| l.trim().strip_prefix("Depends: ")).map(str::to_string).collect())
    }

    fn kernel_package(&self) -> Result<String, LabError> {
        self.depends(METAPACKAGE)?.into_iter().find(|p| p.starts_with("linux-image-")).ok_or_else(|| {
            LabError::Setup(format!(
                "apt-cache depends {METAPACKAGE} names no kernel package (run `apt-get update`, or set KDUMP_LAB_KERNEL to a bzImage)"
            ))
        })
    }

    /// Downloads `package` into `dir` and unpacks it into `into`.
    fn unpack(&self, package: &str, dir: &Path, into: &Path) -> Result<(), LabError> {
        let deb = self.download(package, dir)?;
        run(Command::new("dpkg").arg("-x").arg(&deb).arg(into), "dpkg -x")?;
        let _ = std::fs::remove_file(&deb);
        Ok(())
    }

    /// Downloads `package` into `dir`; returns the .deb's path.
    fn download(&self, package: &str, dir: &Path) -> Result<PathBuf, LabError> {
        run(
            Command::new("apt-get").args(&self.options).arg("download").arg(package).current_dir(dir),
            "apt-get download",
        )?;
        let prefix = format!("{}_", package.replace('+', "%2b"));
        let deb = std::fs::read_dir(dir)
            .map_err(io_err(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .find(|p| {
                p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                    (n.starts_with(&prefix) || n.starts_with(&format!("{package}_"))) && n.ends_with(".deb")
                })
            })
            .ok_or_else(|| LabError::Setup(format!("apt-get download {package} left no .deb in {}", dir.display())))?;
        Ok(deb)
    }
}

/// The URI of the machine's configured Debian archive (not the security one),
/// from `/etc/apt/sources.list` or the deb822 files in `sources.list.d`.
fn debian_uri() -> Result<String, LabError> {
    let mut texts = Vec::new();
    for path in ["/etc/apt/sources.list".into(), PathBuf::from("/etc/apt/sources.list.d")] {
        if path.is_dir() {
            let mut entries: Vec<PathBuf> = std::fs::read_dir(&path)
                .map_err(io_err(&path))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sources" || x == "list"))
                .collect();
            entries.sort();
            texts.extend(entries.iter().filter_map(|p| std::fs::read_to_string(p).ok()));
        } else if let Ok(text) = std::fs::read_to_string(&path) {
            texts.push(text);
        }
    }
    texts.iter().find_map(|t| debian_uri_in(t)).ok_or_else(|| {
        LabError::Setup(
            "no Debian archive in /etc/apt/sources.list{,.d}: cannot fetch other suites' kernels \
             (set KDUMP_LAB_MATRIX=bookworm to test the machine's own kernel only)"
                .into(),
        )
    })
}

/// The first URI of a Debian archive (a path ending in `/debian`) in one
/// sources file, one-line or deb822.
fn debian_uri_in(text: &str) -> Option<String> {
    let is_archive = |uri: &str| uri.trim_end_matches('/').ends_with("/debian");
    for line in text.lines().map(str::trim) {
        if let Some(uris) = line.strip_prefix("URIs:") {
            if let Some(uri) = uris.split_whitespace().find(|u| is_archive(u)) {
                return Some(uri.trim_end_matches('/').to_string());
            }
        } else if let Some(rest) = line.strip_prefix("deb ") {
            // `deb [options] URI suite components`
            let rest = rest.trim_start();
            let rest = if rest.starts_with('[') { rest.split_once(']').map_or("", |(_, r)| r) } else { rest };
            if let Some(uri) = rest.split_whitespace().next().filter(|u| is_archive(u)) {
                return Some(uri.trim_end_matches('/').to_string());
            }
        }
    }
    None
}

/// `boot/vmlinuz-*` (older packages) or `usr/lib/modules/*/vmlinuz` (newer).
fn find_vmlinuz(unpacked: &Path) -> Option<PathBuf> {
    let in_boot = std::fs::read_dir(unpacked.join("boot"))
        .ok()
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.file_name().and_then(|n| n.to_str()).is_some_and(|n| n.starts_with("vmlinuz-")));
    in_boot.or_else(|| {
        std::fs::read_dir(unpacked.join("usr/lib/modules"))
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path().join("vmlinuz")))
            .find(|p| p.is_file())
    })
}

/// A kernel of `suite` (None: the host's) already unpacked in the cache.
fn find_cached(cache: &Path, suite: Option<&str>) -> Option<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(cache).ok()?.filter_map(|e| e.ok().map(|e| e.path())).collect();
    dirs.sort();
    dirs.iter()
        .rev()
        .filter(|d| std::fs::read_to_string(d.join(".suite")).ok().as_deref() == suite)
        .find_map(|d| find_vmlinuz(d))
}

pub(crate) fn run(cmd: &mut Command, what: &str) -> Result<(), LabError> {
    let out = cmd.output().map_err(|e| LabError::Setup(format!("cannot run {what}: {e}")))?;
    if !out.status.success() {
        return Err(LabError::Setup(format!(
            "{what} failed ({}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_debian_archive_in_deb822_and_one_line_sources() {
        let deb822 = "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: bookworm\n\n\
                      Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n";
        assert_eq!(debian_uri_in(deb822).as_deref(), Some("http://deb.debian.org/debian"));
        let security_first = "URIs: http://security.example/debian-security\nURIs: http://mirror.example/debian/\n";
        assert_eq!(debian_uri_in(security_first).as_deref(), Some("http://mirror.example/debian"));
        let one_line = "# comment\ndeb [arch=amd64 signed-by=/k.gpg] http://mirror.example/debian bookworm main\n";
        assert_eq!(debian_uri_in(one_line).as_deref(), Some("http://mirror.example/debian"));
        assert_eq!(debian_uri_in("deb https://packages.example/apt cloud main\n"), None);
    }

    #[test]
    fn matrix_suites_round_trip() {
        for k in LabKernel::MATRIX {
            assert_eq!(LabKernel::from_suite(k.suite()), Some(k));
        }
        assert_eq!(LabKernel::Bullseye.cpu_model(), "Haswell-v4");
        assert_eq!(LabKernel::Sid.cpu_model(), "max");
    }
}
