//! Which module files a set of module names needs, from `modules.dep`
//! (dependencies first, each once) and `modules.builtin`.

use std::collections::{BTreeMap, BTreeSet};

/// Module names compare with `-` and `_` as the same character, as the kernel does.
pub fn normalize(name: &str) -> String {
    name.replace('-', "_")
}

/// The module name of a path in modules.dep: `kernel/fs/ext4/ext4.ko.xz` → `ext4`.
pub fn name_of(path: &str) -> String {
    let file = path.rsplit('/').next().unwrap_or(path);
    let stem = file.split(".ko").next().unwrap_or(file);
    normalize(stem)
}

/// How a module file is compressed (by its name).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// `.ko`.
    None,
    /// `.ko.xz`.
    Xz,
    /// `.ko.zst`.
    Zstd,
    /// `.ko.gz`.
    Gzip,
}

/// The compression of a module path.
pub fn compression(path: &str) -> Compression {
    if path.ends_with(".xz") {
        Compression::Xz
    } else if path.ends_with(".zst") {
        Compression::Zstd
    } else if path.ends_with(".gz") {
        Compression::Gzip
    } else {
        Compression::None
    }
}

/// A parsed `modules.dep` plus `modules.builtin`.
#[derive(Debug, Clone, Default)]
pub struct ModuleIndex {
    deps: BTreeMap<String, (String, Vec<String>)>,
    builtin: BTreeSet<String>,
}

/// The outcome of a resolution.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolution {
    /// Module files (paths relative to the modules directory), dependencies first.
    pub load: Vec<String>,
    /// Names that are built into the kernel (nothing to load).
    pub builtin: Vec<String>,
    /// Names found nowhere.
    pub missing: Vec<String>,
}

impl ModuleIndex {
    /// Parses `modules.dep` (`path: dep dep …` lines) and `modules.builtin` (one path a line).
    pub fn parse(modules_dep: &str, modules_builtin: &str) -> Self {
        let mut deps = BTreeMap::new();
        for line in modules_dep.lines() {
            let Some((path, rest)) = line.split_once(':') else { continue };
            let path = path.trim();
            if path.is_empty() {
                continue;
            }
            let list = rest.split_whitespace().map(str::to_string).collect();
            deps.insert(name_of(path), (path.to_string(), list));
        }
        let builtin = modules_builtin.lines().map(str::trim).filter(|l| !l.is_empty()).map(name_of).collect();
        Self { deps, builtin }
    }

    /// True when the module is built in.
    pub fn is_builtin(&self, name: &str) -> bool {
        self.builtin.contains(&normalize(name))
    }

    /// Resolves names to files: each module after everything it depends on.
    pub fn resolve<S: AsRef<str>>(&self, names: &[S]) -> Resolution {
        let mut out = Resolution::default();
        let mut seen = BTreeSet::new();
        for name in names {
            let name = normalize(name.as_ref());
            if let Some((path, _)) = self.deps.get(&name) {
                self.visit(path, &mut seen, &mut out.load, 0);
            } else if self.builtin.contains(&name) {
                if !out.builtin.contains(&name) {
                    out.builtin.push(name);
                }
            } else if !out.missing.contains(&name) {
                out.missing.push(name);
            }
        }
        out
    }

    fn visit(&self, path: &str, seen: &mut BTreeSet<String>, load: &mut Vec<String>, depth: usize) {
        if depth > 64 || !seen.insert(path.to_string()) {
            return;
        }
        if let Some((_, deps)) = self.deps.get(&name_of(path)) {
            for d in deps {
                self.visit(d, seen, load, depth + 1);
            }
        }
        load.push(path.to_string());
    }
}

/// The module name recorded in a `.ko`'s `.modinfo` (`name=` field), if the bytes hold one.
pub fn modinfo_name(ko: &[u8]) -> Option<String> {
    let at = ko.windows(5).position(|w| w == b"name=")?;
    let rest = &ko[at + 5..];
    let end = rest.iter().position(|&b| b == 0)?;
    std::str::from_utf8(&rest[..end]).ok().map(normalize)
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEP: &str = "\
kernel/drivers/block/virtio_blk.ko.xz: kernel/drivers/virtio/virtio_ring.ko.xz kernel/drivers/virtio/virtio.ko.xz
kernel/drivers/virtio/virtio_ring.ko.xz: kernel/drivers/virtio/virtio.ko.xz
kernel/drivers/virtio/virtio.ko.xz:
kernel/fs/xfs/xfs.ko.zst: kernel/lib/libcrc32c.ko.zst
kernel/lib/libcrc32c.ko.zst:
";
    const BUILTIN: &str = "kernel/fs/ext4/ext4.ko\nkernel/drivers/nvme/host/nvme.ko\n";

    #[test]
    fn dependencies_come_first_once() {
        let idx = ModuleIndex::parse(DEP, BUILTIN);
        let r = idx.resolve(&["virtio-blk", "xfs", "virtio_blk", "ext4", "nvme", "nosuch"]);
        assert_eq!(
            r.load,
            [
                "kernel/drivers/virtio/virtio.ko.xz",
                "kernel/drivers/virtio/virtio_ring.ko.xz",
                "kernel/drivers/block/virtio_blk.ko.xz",
                "kernel/lib/libcrc32c.ko.zst",
                "kernel/fs/xfs/xfs.ko.zst",
            ]
        );
        assert_eq!(r.builtin, ["ext4", "nvme"]);
        assert_eq!(r.missing, ["nosuch"]);
    }

    #[test]
    fn names_and_compression() {
        assert_eq!(name_of("kernel/fs/ext4/ext4.ko.xz"), "ext4");
        assert_eq!(name_of("a/b/dm-mod.ko"), "dm_mod");
        assert_eq!(compression("x.ko.zst"), Compression::Zstd);
        assert_eq!(compression("x.ko.xz"), Compression::Xz);
        assert_eq!(compression("x.ko"), Compression::None);
        assert_eq!(modinfo_name(b"\0license=GPL\0name=virtio_blk\0vermagic=6.1\0").as_deref(), Some("virtio_blk"));
    }

    #[test]
    fn cycles_terminate() {
        let idx = ModuleIndex::parse("a.ko: b.ko\nb.ko: a.ko\n", "");
        assert_eq!(idx.resolve(&["a"]).load, ["b.ko", "a.ko"]);
    }
}
