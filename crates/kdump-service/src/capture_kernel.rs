//! What `kdump setup` can tell about a capture kernel of another release before
//! a crash depends on it: its release (from the image) and, from its build
//! configuration, whether it can read the crashed kernel's memory at all.
//! Problems are warnings, never refusals: the configuration file may be missing
//! or stale, and the user may know better.

/// The release a kernel image names in its version string (`6.12.57+deb13-cloud-amd64 (…) #1 SMP …`).
pub fn release_of(version: &str) -> Option<&str> {
    version.split_whitespace().next().filter(|r| !r.is_empty())
}

/// The build options a capture kernel needs, with what goes wrong without each.
const NEEDED: [(&str, &str); 2] = [
    ("CONFIG_CRASH_DUMP", "it cannot boot as a capture kernel (no elfcorehdr= support)"),
    ("CONFIG_PROC_VMCORE", "it has no /proc/vmcore: there is nothing to save after a crash"),
];

/// Warnings for a capture kernel whose `/boot/config-<release>` text is `config`:
/// each needed option that is not built in (`=y`).
pub fn config_warnings(release: &str, config: &str) -> Vec<String> {
    NEEDED
        .iter()
        .filter(|(option, _)| !config.lines().any(|l| l.trim() == format!("{option}=y")))
        .map(|(option, why)| format!("the capture kernel {release} is built without {option}: {why}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_and_config_checks() {
        assert_eq!(
            release_of("6.12.57+deb13-cloud-amd64 (debian-kernel@lists.debian.org) #1 SMP PREEMPT_DYNAMIC"),
            Some("6.12.57+deb13-cloud-amd64")
        );
        assert_eq!(release_of("  "), None);
        let good = "# comment\nCONFIG_CRASH_DUMP=y\nCONFIG_PROC_VMCORE=y\nCONFIG_NVME_CORE=y\n";
        assert!(config_warnings("6.1.0", good).is_empty());
        let bad = "CONFIG_CRASH_DUMP=y\n# CONFIG_PROC_VMCORE is not set\n";
        let w = config_warnings("6.1.0", bad);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("CONFIG_PROC_VMCORE") && w[0].contains("/proc/vmcore"), "{w:?}");
        // A module (=m) is not enough: the capture kernel reads its memory before any module loads.
        assert_eq!(config_warnings("6.1.0", "CONFIG_CRASH_DUMP=m\nCONFIG_PROC_VMCORE=m\n").len(), 2);
    }
}
