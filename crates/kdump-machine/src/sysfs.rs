//! Values of single sysfs files, each with the kernel's own formatting quirks.

use crate::ParseError;
use crate::machine::{Lockdown, VmcoreinfoLocation};

fn parse_hex(what: &'static str, text: &str) -> Result<u64, ParseError> {
    let t = text.trim();
    let digits = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")).unwrap_or(t);
    u64::from_str_radix(digits, 16).map_err(|_| ParseError::Value {
        what,
        expected: "a hex number",
        text: text.to_string(),
    })
}

fn parse_dec(what: &'static str, text: &str) -> Result<u64, ParseError> {
    text.trim().parse().map_err(|_| ParseError::Value { what, expected: "a decimal number", text: text.to_string() })
}

/// `/sys/kernel/vmcoreinfo`: `"<paddr> <size>"`, both hex. The kernel prints
/// the address with `%pa`, so a `0x` prefix is accepted.
pub fn parse_vmcoreinfo(text: &str) -> Result<VmcoreinfoLocation, ParseError> {
    let what = "/sys/kernel/vmcoreinfo";
    let mut fields = text.split_whitespace();
    let (Some(address), Some(size), None) = (fields.next(), fields.next(), fields.next()) else {
        return Err(ParseError::Value { what, expected: "`<hex address> <hex size>`", text: text.to_string() });
    };
    Ok(VmcoreinfoLocation { address: parse_hex(what, address)?, size: parse_hex(what, size)? })
}

/// `cpuN/crash_notes`: the physical address, hex (`%llx`, no prefix).
pub fn parse_crash_notes_address(text: &str) -> Result<u64, ParseError> {
    parse_hex("crash_notes", text)
}

/// `cpuN/crash_notes_size`: decimal bytes.
pub fn parse_crash_notes_size(text: &str) -> Result<u64, ParseError> {
    parse_dec("crash_notes_size", text)
}

/// A decimal sysfs number such as `kexec_crash_size`.
pub fn parse_decimal(what: &'static str, text: &str) -> Result<u64, ParseError> {
    parse_dec(what, text)
}

/// A `0`/`1` sysfs flag such as `kexec_crash_loaded`.
pub fn parse_flag(what: &'static str, text: &str) -> Result<bool, ParseError> {
    match text.trim() {
        "0" => Ok(false),
        "1" => Ok(true),
        _ => Err(ParseError::Value { what, expected: "0 or 1", text: text.to_string() }),
    }
}

/// `/sys/kernel/security/lockdown`: the active mode is the bracketed word,
/// e.g. `[none] integrity confidentiality`.
pub fn parse_lockdown(text: &str) -> Result<Lockdown, ParseError> {
    let active = text
        .split_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .ok_or_else(|| ParseError::Value {
            what: "/sys/kernel/security/lockdown",
            expected: "a bracketed mode such as `[none]`",
            text: text.to_string(),
        })?;
    match active {
        "none" => Ok(Lockdown::None),
        "integrity" => Ok(Lockdown::Integrity),
        "confidentiality" => Ok(Lockdown::Confidentiality),
        _ => Err(ParseError::Value {
            what: "/sys/kernel/security/lockdown",
            expected: "none, integrity or confidentiality",
            text: text.to_string(),
        }),
    }
}

/// CAP_SYS_BOOT, the capability kexec needs.
pub const CAP_SYS_BOOT: u32 = 22;

/// The effective capability mask (`CapEff:`) from `/proc/<pid>/status`.
pub fn parse_effective_capabilities(status: &str) -> Result<u64, ParseError> {
    let line = status.lines().find_map(|l| l.strip_prefix("CapEff:")).ok_or_else(|| ParseError::Value {
        what: "/proc/self/status",
        expected: "a CapEff: line",
        text: String::new(),
    })?;
    parse_hex("/proc/self/status CapEff", line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn vmcoreinfo_with_and_without_prefix() {
        let want = VmcoreinfoLocation { address: 0x1_2345_6000, size: 0x1000 };
        assert_eq!(parse_vmcoreinfo("123456000 1000\n").unwrap(), want);
        assert_eq!(parse_vmcoreinfo("0x0000000123456000 1000\n").unwrap(), want);
        assert!(parse_vmcoreinfo("123456000\n").is_err());
        assert!(parse_vmcoreinfo("1 2 3").is_err());
        assert!(parse_vmcoreinfo("xyz 10").is_err());
    }

    #[test]
    fn notes_flags_and_lockdown() {
        assert_eq!(parse_crash_notes_address("3fc1b2c8\n").unwrap(), 0x3fc1_b2c8);
        assert_eq!(parse_crash_notes_size("432\n").unwrap(), 432);
        assert!(parse_flag("x", "1\n").unwrap());
        assert!(parse_flag("x", "2").is_err());
        assert_eq!(parse_lockdown("[none] integrity confidentiality\n").unwrap(), Lockdown::None);
        assert_eq!(parse_lockdown("none integrity [confidentiality]\n").unwrap(), Lockdown::Confidentiality);
        assert!(parse_lockdown("none integrity").is_err());
        let caps = parse_effective_capabilities("Name:\tsh\nCapEff:\t000001ffffffffff\n").unwrap();
        assert_ne!(caps & (1 << CAP_SYS_BOOT), 0);
        assert_eq!(parse_effective_capabilities("CapEff:\t0000000000000000\n").unwrap(), 0);
        assert!(parse_effective_capabilities("Name: x\n").is_err());
    }
}
