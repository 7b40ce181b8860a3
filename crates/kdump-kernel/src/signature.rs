//! A crash's signature: the same bug on many hosts gets the same one. It is a hash of the panic
//! message with its numbers and addresses taken out, and of the first few functions of the
//! crashing CPU's backtrace that are not the panic and crash machinery itself, by name only
//! (no offsets: they differ between builds of one release; no compiler suffixes such as
//! `.cold` or `.isra.0`).

use serde::Serialize;

/// Frames of the backtrace that go into the signature.
pub const SIGNATURE_FRAMES: usize = 4;

/// Functions every crash passes through on its way to the capture kernel: they say nothing
/// about which bug it was.
const MACHINERY: &[&str] = &[
    "__crash_kexec",
    "crash_kexec",
    "crash_setup_regs",
    "machine_crash_shutdown",
    "native_machine_crash_shutdown",
    "panic",
    "vpanic",
    "nmi_panic",
    "panic_smp_self_stop",
    "die",
    "__die",
    "__die_body",
    "die_addr",
    "oops_end",
    "do_trap",
    "do_error_trap",
    "dump_stack",
    "dump_stack_lvl",
    "show_stack",
    "crash_nmi_callback",
    "kdump_nmi_callback",
    "nmi_handle",
    "default_do_nmi",
    "exc_nmi",
    "asm_exc_nmi",
    // panic() prints before it crashes: its callees' return addresses stay on the stack.
    "_printk",
    "printk",
    "vprintk",
    "vprintk_emit",
    "vprintk_default",
    "console_unlock",
];

/// A crash's signature.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Signature {
    /// 16 hex digits (the start of a SHA-256 of `title`).
    pub id: String,
    /// What was hashed, readable: the normalized message, then ` | ` and the frames joined by
    /// ` < ` (callee first).
    pub title: String,
    /// The frames used.
    pub frames: Vec<String>,
}

/// The signature of a crash whose panic message is `panic` and whose crashing CPU's backtrace
/// has `symbols` (`name+0xoff/0xsize` or a bare name, innermost first; unknown addresses left
/// out by the caller). A backtrace found by scanning the stack is used as it is: on x86_64
/// only the first frame is certain, and the callers of panic are found by the scan.
pub fn signature<'a>(panic: Option<&str>, symbols: impl IntoIterator<Item = &'a str>) -> Signature {
    let message = panic.map(normalize_message).unwrap_or_else(|| "no panic message".to_string());
    let mut frames: Vec<String> = Vec::new();
    for name in symbols.into_iter().map(function_name) {
        if name.is_empty() || is_machinery(name) || frames.last().is_some_and(|last| last == name) {
            continue;
        }
        frames.push(name.to_string());
        if frames.len() == SIGNATURE_FRAMES {
            break;
        }
    }
    let title = if frames.is_empty() { message } else { format!("{message} | {}", frames.join(" < ")) };
    let digest = kdump_sha256::digest(title.as_bytes());
    let id = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    Signature { id, title, frames }
}

/// `name+0x1c/0x30` → `name`, and `name.cold` / `name.isra.0` / `name.constprop.0` → `name`.
fn function_name(symbol: &str) -> &str {
    let name = symbol.split('+').next().unwrap_or(symbol).trim().trim_start_matches("? ");
    name.split('.').next().unwrap_or(name)
}

fn is_machinery(name: &str) -> bool {
    MACHINERY.contains(&name) || name.starts_with("asm_exc_") || name.starts_with("exc_")
}

/// The message with what differs between occurrences of one bug replaced: hex numbers and
/// addresses by `X`, decimal numbers by `N`; spaces collapsed; at most 200 characters.
fn normalize_message(text: &str) -> String {
    let mut out = String::new();
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(&normalize_word(word));
    }
    out.chars().take(200).collect()
}

fn normalize_word(word: &str) -> String {
    let mut out = String::new();
    let chars: Vec<char> = word.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let hex_prefix = c == '0' && chars.get(i + 1).is_some_and(|&x| x == 'x' || x == 'X');
        if hex_prefix {
            let mut j = i + 2;
            while chars.get(j).is_some_and(char::is_ascii_hexdigit) {
                j += 1;
            }
            out.push('X');
            i = j;
        } else if c.is_ascii_hexdigit() && run_is_long_hex(&chars[i..]) {
            // An address printed without 0x (e.g. `ffffffff81234567`).
            let mut j = i;
            while chars.get(j).is_some_and(char::is_ascii_hexdigit) {
                j += 1;
            }
            out.push('X');
            i = j;
        } else if c.is_ascii_digit() {
            while chars.get(i).is_some_and(char::is_ascii_digit) {
                i += 1;
            }
            out.push('N');
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

/// At least 8 hex digits in a row with at least one digit: an address or a hash, not a word.
fn run_is_long_hex(chars: &[char]) -> bool {
    let run: Vec<char> = chars.iter().copied().take_while(char::is_ascii_hexdigit).collect();
    run.len() >= 8 && run.iter().any(char::is_ascii_digit)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_bug_on_two_builds_and_hosts_has_one_signature() {
        let a = signature(
            Some("sysrq triggered crash"),
            [
                "__crash_kexec+0x52/0x80",
                "__crash_kexec+0x52/0x80",
                "panic+0x118/0x2f4",
                "_printk+0x6c/0x87",
                "sysrq_handle_crash+0x16/0x20",
                "__handle_sysrq.cold+0x43/0x11b",
                "write_sysrq_trigger+0x24/0x40",
                "proc_reg_write+0x56/0xa0",
                "vfs_write+0xc5/0x3a0",
            ],
        );
        let b = signature(
            Some("sysrq  triggered crash"),
            [
                "crash_setup_regs+0x10/0x20",
                "panic+0x100/0x2e0",
                "sysrq_handle_crash+0x12/0x20",
                "__handle_sysrq+0x40/0x110",
                "write_sysrq_trigger+0x20/0x40",
                "proc_reg_write+0x50/0xa0",
            ],
        );
        assert_eq!(a, b);
        assert_eq!(a.frames, ["sysrq_handle_crash", "__handle_sysrq", "write_sysrq_trigger", "proc_reg_write"]);
        assert_eq!(
            a.title,
            "sysrq triggered crash | sysrq_handle_crash < __handle_sysrq < write_sysrq_trigger < proc_reg_write"
        );
        assert_eq!(a.id.len(), 16);
    }

    #[test]
    fn numbers_and_addresses_do_not_split_a_bug_but_other_words_and_frames_do() {
        let oom = |pid: &str| {
            signature(
                Some(&format!("Out of memory: compulsory panic_on_oom is enabled (pid {pid} at 0xffff888003a1c000)")),
                ["panic+0x1/0x2", "out_of_memory.cold+0x1/0x2", "__alloc_pages_slowpath.constprop.0+0x1/0x2"],
            )
        };
        assert_eq!(oom("312"), oom("77"));
        assert_eq!(oom("1").frames, ["out_of_memory", "__alloc_pages_slowpath"]);
        let other_frames = signature(Some("sysrq triggered crash"), ["sysrq_handle_crash+0x1/0x2"]);
        let other_message = signature(Some("Attempted to kill init!"), ["sysrq_handle_crash+0x1/0x2"]);
        assert_ne!(other_frames.id, other_message.id);
        assert_ne!(oom("1").id, other_frames.id);
        assert_eq!(
            normalize_message("BUG: unable to handle page fault for address: ffffc90000a3b000"),
            "BUG: unable to handle page fault for address: X"
        );
        assert_eq!(signature(None, []).title, "no panic message");
    }
}
