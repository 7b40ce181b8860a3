//! `kdump ssh-key`: the key it writes is one OpenSSH reads (ssh-keygen is the oracle), private,
//! and never overwritten.

use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn kdump(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_kdump")).args(args).output().unwrap()
}

#[test]
fn ssh_key_writes_a_key_openssh_reads() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("sub/kdump_id_ed25519");
    let out = kdump(&["ssh-key", "--out", key.to_str().unwrap(), "--comment", "root@crashy"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let line = String::from_utf8(out.stdout).unwrap();
    assert!(
        line.starts_with("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5") && line.trim_end().ends_with(" root@crashy"),
        "{line}"
    );
    let public = dir.path().join("sub/kdump_id_ed25519.pub");
    assert_eq!(std::fs::read_to_string(&public).unwrap(), line);
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(std::fs::metadata(dir.path().join("sub")).unwrap().permissions().mode() & 0o777, 0o700);

    // OpenSSH derives the same public key from our private key file.
    let derived =
        Command::new("ssh-keygen").arg("-y").arg("-f").arg(&key).output().expect("ssh-keygen (openssh-client)");
    assert!(derived.status.success(), "{}", String::from_utf8_lossy(&derived.stderr));
    let derived = String::from_utf8(derived.stdout).unwrap();
    let fields = |s: &str| s.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
    assert_eq!(fields(&derived), fields(&line));

    // A second run refuses to replace the key.
    let again = kdump(&["ssh-key", "--out", key.to_str().unwrap()]);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("must not exist"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );
}
