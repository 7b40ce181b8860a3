//! The one `kexec_load` path: `kexec -c`, `kexec -a` after kexec_file_load refused, and
//! `kdump setup`'s fallback all come here. Reads what the planner needs, plans (pure, in
//! `kdump-loader`), hands the segments to the kernel and checks that sysfs agrees.

use kdump_loader::errno::{Call, explain};
use kdump_loader::plan::{CrashMachine, Options, Plan, PlanError, plan_crash_load, plan_normal_load};
use kdump_machine::MachineInfo;

use crate::{SysError, SysRoot, collect_loader_inputs, kexec};

/// What to load with `kexec_load`.
#[derive(Debug, Clone)]
pub struct LegacyLoad<'a> {
    /// The kernel: a bzImage or an ELF vmlinux, already decompressed.
    pub kernel: &'a [u8],
    /// The initrd's bytes.
    pub initrd: Option<&'a [u8]>,
    /// Command line and the `kexec -c` choices.
    pub options: Options,
    /// A capture kernel for panics (`KEXEC_ON_CRASH`), else a kernel for `kexec -e`.
    pub panic: bool,
}

/// Why a `kexec_load` did not happen.
#[derive(Debug, thiserror::Error)]
pub enum LegacyError {
    /// The memory map or /proc/kcore could not be read.
    #[error("cannot read the memory map for kexec_load")]
    Inputs(#[source] SysError),
    /// No plan: the image, the crash region or a kernel rule.
    #[error(transparent)]
    Plan(#[from] PlanError),
    /// The kernel said no.
    #[error("kexec_load refused the {what}: {}", explain(Call::LegacyLoad, *.panic, *.errno))]
    Refused {
        /// "kernel" or "capture kernel".
        what: &'static str,
        /// A panic load.
        panic: bool,
        /// The errno.
        errno: i32,
    },
    /// The kernel said yes but sysfs does not show it.
    #[error("kexec_load succeeded but {flag} does not read 1: the {what} is not loaded")]
    NotLoaded {
        /// "kernel" or "capture kernel".
        what: &'static str,
        /// The sysfs flag read.
        flag: &'static str,
    },
}

fn what(panic: bool) -> &'static str {
    if panic { "capture kernel" } else { "kernel" }
}

/// Reads the memory map, /proc/kcore's headers and the ACPI RSDP, and plans the load. The
/// plan's `machine.warnings` say what was missing and the fallbacks taken.
pub fn plan_kexec_load(root: &SysRoot, info: &MachineInfo, load: &LegacyLoad<'_>) -> Result<Plan, LegacyError> {
    let inputs = collect_loader_inputs(root).map_err(LegacyError::Inputs)?;
    let mut machine = CrashMachine::describe(info, inputs.memory_map, inputs.kcore.as_ref(), inputs.acpi_rsdp);
    machine.warnings.splice(0..0, inputs.warnings);
    let plan = if load.panic {
        plan_crash_load(&machine, load.kernel, load.initrd, &load.options)
    } else {
        plan_normal_load(&machine, load.kernel, load.initrd, &load.options)
    }?;
    Ok(plan)
}

/// Hands `plan` to `kexec_load` and checks `/sys/kernel/kexec_{crash_,}loaded`.
pub fn load_plan(root: &SysRoot, plan: &Plan) -> Result<(), LegacyError> {
    let segments: Vec<kexec::Segment<'_>> =
        plan.segments.iter().map(|s| kexec::Segment { buf: &s.buf, mem: s.mem.0, memsz: s.memsz.0 }).collect();
    kexec::kexec_load(plan.entry.0, &segments, plan.flags.0).map_err(|errno| LegacyError::Refused {
        what: what(plan.panic),
        panic: plan.panic,
        errno,
    })?;
    let flag = if plan.panic { "/sys/kernel/kexec_crash_loaded" } else { "/sys/kernel/kexec_loaded" };
    if !crate::kexec_loaded(root, plan.panic).unwrap_or(false) {
        return Err(LegacyError::NotLoaded { what: what(plan.panic), flag });
    }
    Ok(())
}

/// Why an unload failed: the call that failed last, and the kexec_file_load error before a
/// fallback to kexec_load.
#[derive(Debug, thiserror::Error)]
#[error("{}{}", explain(*.call, *.panic, *.errno), .first.map(|e| format!(" (kexec_file_load failed first: {})", explain(Call::FileUnload, *.panic, e))).unwrap_or_default())]
pub struct UnloadError {
    /// The call whose error this is.
    pub call: Call,
    /// The errno.
    pub errno: i32,
    /// A panic (capture) kernel.
    pub panic: bool,
    /// kexec_file_load's errno when kexec_load was tried after it.
    pub first: Option<i32>,
}

/// Unloads the (capture) kernel as kexec-tools' `-u` does by default: kexec_file_load's
/// unload, and kexec_load's where the file call cannot do it (`errno::allows_fallback`: a
/// kernel without kexec_file_load, or an image loaded by kexec_load on kernels that refuse
/// to unload it through the other call). Errors name the call that made them.
pub fn unload_any(panic: bool) -> Result<(), UnloadError> {
    match kexec::kexec_file_unload(panic) {
        Ok(()) => Ok(()),
        Err(errno) if kdump_loader::errno::allows_fallback(errno) => kexec::kexec_load_unload(panic)
            .map_err(|e| UnloadError { call: Call::LegacyUnload, errno: e, panic, first: Some(errno) }),
        Err(errno) => Err(UnloadError { call: Call::FileUnload, errno, panic, first: None }),
    }
}

#[cfg(test)]
mod unload_tests {
    use super::*;

    #[test]
    fn an_unload_error_names_the_call_that_failed() {
        let legacy =
            UnloadError { call: Call::LegacyUnload, errno: libc::EPERM, panic: true, first: Some(libc::ENOSYS) };
        let text = legacy.to_string();
        assert!(text.contains("kexec_file_load failed first"), "{text}");
        assert!(text.contains("CAP_SYS_BOOT"), "{text}");
        let file = UnloadError { call: Call::FileUnload, errno: libc::EPERM, panic: true, first: None };
        assert!(!file.to_string().contains("failed first"));
    }
}
