//! The README's demo command (`scripts/demo.sh` runs `kdump-lab demo`): the
//! whole cycle, from `kdump setup` to the crash report, must keep working.

use std::process::Command;

#[test]
fn readme_demo_runs_the_whole_cycle_and_prints_the_crash_report() {
    let out = Command::new(env!("CARGO_BIN_EXE_kdump-lab")).arg("demo").output().expect("run kdump-lab demo");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "demo failed:\n{stdout}\n{stderr}");
    for wanted in
        ["panic:       sysrq triggered crash", "(crashing)", "sysrq_handle_crash+", "Saved by the capture kernel"]
    {
        assert!(stdout.contains(wanted), "the demo output lacks {wanted:?}:\n{stdout}");
    }
}
