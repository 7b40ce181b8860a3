//! Man pages and shell completions come from the same definitions as the options: every
//! subcommand has a page that documents its options, and bash completes the subcommands.

use std::process::Command;

fn kdump(args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_kdump")).args(args).output().unwrap();
    assert!(out.status.success(), "kdump {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn every_subcommand_has_a_man_page_with_its_options() {
    let dir = tempfile::tempdir().unwrap();
    kdump(&["man", "--out", dir.path().to_str().unwrap()]);
    let page = |name: &str| std::fs::read_to_string(dir.path().join(format!("{name}.1"))).unwrap_or_default();
    let top = page("kdump");
    assert!(top.contains(".TH kdump 1"), "{top}");
    for sub in ["dump", "dmesg", "info", "setup", "status", "fleet", "fleet-list", "ssh-key"] {
        let p = page(&format!("kdump-{sub}"));
        assert!(p.contains(&format!(".TH kdump-{sub} 1")), "kdump-{sub}.1 is missing or has no title");
    }
    // makedumpfile's options are documented where a drop-in user looks for them.
    let dump = page("kdump-dump");
    for opt in ["dump\\-level", "num\\-threads", "message\\-level", "\\-F", "\\-R"] {
        assert!(dump.contains(opt), "kdump-dump.1 does not document {opt}");
    }
}

#[test]
fn bash_completes_the_subcommands_and_their_options() {
    let script = kdump(&["completions", "bash"]);
    assert!(script.contains("complete -F _kdump"), "{script}");
    for word in ["dump", "fleet", "setup", "--dump-level", "--num-threads"] {
        assert!(script.contains(word), "completion script lacks {word}");
    }
    assert!(kdump(&["completions", "zsh"]).contains("#compdef kdump"));
}
