//! The new kernel's command line, decided the way kexec-tools does it, plus
//! capture-kernel defaults for panic loads.

/// Words a capture kernel boots better with, added to panic loads unless the
/// user already chose them: `irqpoll` (devices left mid-interrupt by the
/// crashed kernel), `nr_cpus=1` (less memory, no SMP bring-up of CPUs that
/// may be wedged), `reset_devices` (drivers reset hardware before use).
pub const CAPTURE_DEFAULTS: [&str; 3] = ["irqpoll", "nr_cpus=1", "reset_devices"];

/// Room the kernel keeps for the `elfcorehdr=0x… ` it prefixes to a capture
/// kernel's command line (MAX_ELFCOREHDR_STR_LEN in arch/x86/kernel/kexec-bzimage64.c).
pub const ELFCOREHDR_RESERVE: usize = 30;

/// What the user asked for.
#[derive(Debug, Clone, Default)]
pub struct CmdlineRequest {
    /// The running kernel's command line, when `--reuse-cmdline` was given.
    pub reuse: Option<String>,
    /// `--append` / `--command-line` values, in order.
    pub append: Vec<String>,
    /// A panic (capture) load.
    pub panic: bool,
    /// Add [`CAPTURE_DEFAULTS`] to panic loads.
    pub capture_defaults: bool,
}

/// A command line that the kernel would refuse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CmdlineError {
    /// Too long for the image.
    #[error(
        "the command line is {len} bytes but this kernel takes at most {max}{}: shorten --append",
        if *.panic { " (less the 30 the kernel keeps for elfcorehdr= on panic loads)" } else { "" }
    )]
    TooLong {
        /// Bytes, without the terminating NUL.
        len: usize,
        /// The image's limit.
        max: usize,
        /// A panic load (where the kernel keeps room for elfcorehdr=).
        panic: bool,
    },
    /// A NUL byte, which would cut the line short.
    #[error("the command line contains a NUL byte")]
    Nul,
}

/// Splits a kernel command line into words, keeping `"quoted values"` whole,
/// as the kernel's own parser (lib/cmdline.c `next_arg`) does.
pub fn split_words(line: &str) -> Vec<&str> {
    let mut words = Vec::new();
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && bytes[i].is_ascii_whitespace() {
            i += 1;
        }
        let start = i;
        let mut quoted = false;
        while i < bytes.len() && (quoted || !bytes[i].is_ascii_whitespace()) {
            if bytes[i] == b'"' {
                quoted = !quoted;
            }
            i += 1;
        }
        if i > start {
            words.push(&line[start..i]);
        }
    }
    words
}

/// The parameter name of a word (`root=/dev/sda` → `root`).
fn param_name(word: &str) -> &str {
    word.split_once('=').map_or(word, |(name, _)| name)
}

/// Removes every `name` and `name=…` word.
pub fn remove_parameter(line: &str, name: &str) -> String {
    split_words(line).into_iter().filter(|w| param_name(w) != name).collect::<Vec<_>>().join(" ")
}

/// Builds the command line: the reused one (without `BOOT_IMAGE=`, and for
/// panic loads without `crashkernel=`), then the appended text, then capture
/// defaults the user did not set. `max` is the image's `cmdline_size`.
pub fn build(request: &CmdlineRequest, max: usize) -> Result<String, CmdlineError> {
    let mut words: Vec<String> = Vec::new();
    if let Some(current) = &request.reuse {
        let mut line = remove_parameter(current, "BOOT_IMAGE");
        if request.panic {
            line = remove_parameter(&line, "crashkernel");
        }
        words.extend(split_words(&line).into_iter().map(str::to_string));
    }
    for text in &request.append {
        words.extend(split_words(text).into_iter().map(str::to_string));
    }
    if request.panic && request.capture_defaults {
        let has = |name: &str| words.iter().any(|w| param_name(w) == name);
        let mut extra = Vec::new();
        for default in CAPTURE_DEFAULTS {
            let name = param_name(default);
            let chosen = has(name) || (name == "nr_cpus" && has("maxcpus"));
            if !chosen {
                extra.push(default.to_string());
            }
        }
        words.extend(extra);
    }
    let line = words.join(" ");
    if line.contains('\0') {
        return Err(CmdlineError::Nul);
    }
    let limit = if request.panic { max.saturating_sub(ELFCOREHDR_RESERVE + 1) } else { max };
    if line.len() > limit {
        return Err(CmdlineError::TooLong { len: line.len(), max, panic: request.panic });
    }
    Ok(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_keep_quotes() {
        assert_eq!(split_words(" a  b=\"x y\" c\n"), vec!["a", "b=\"x y\"", "c"]);
        assert_eq!(split_words(""), Vec::<&str>::new());
    }

    #[test]
    fn reuse_strips_boot_image_and_crashkernel_for_panic() {
        let req = CmdlineRequest {
            reuse: Some("BOOT_IMAGE=/vmlinuz root=/dev/vda1 crashkernel=256M quiet\n".into()),
            append: vec!["console=ttyS0".into()],
            panic: true,
            capture_defaults: true,
        };
        assert_eq!(build(&req, 2047).unwrap(), "root=/dev/vda1 quiet console=ttyS0 irqpoll nr_cpus=1 reset_devices");
        let plain = CmdlineRequest { panic: false, ..req };
        assert_eq!(build(&plain, 2047).unwrap(), "root=/dev/vda1 crashkernel=256M quiet console=ttyS0");
    }

    #[test]
    fn user_choices_win_over_defaults() {
        let req = CmdlineRequest {
            append: vec!["maxcpus=2 irqpoll".into()],
            panic: true,
            capture_defaults: true,
            ..Default::default()
        };
        assert_eq!(build(&req, 2047).unwrap(), "maxcpus=2 irqpoll reset_devices");
        let off = CmdlineRequest { capture_defaults: false, ..req };
        assert_eq!(build(&off, 2047).unwrap(), "maxcpus=2 irqpoll");
    }

    #[test]
    fn length_limits() {
        let long = "x".repeat(2020);
        let req = CmdlineRequest { append: vec![long.clone()], ..Default::default() };
        assert!(build(&req, 2047).is_ok());
        let panic = CmdlineRequest { append: vec![long], panic: true, ..Default::default() };
        let err = build(&panic, 2047).unwrap_err();
        assert!(err.to_string().contains("elfcorehdr"), "{err}");
        let nul = CmdlineRequest { append: vec!["a\0b".into()], ..Default::default() };
        assert_eq!(build(&nul, 2047), Err(CmdlineError::Nul));
    }
}
