//! `kdump check-target` against OpenSSH's sshd on 127.0.0.1 (Debian's openssh-server; keys made
//! by `kdump ssh-key` and ssh-keygen): exit 0 with every step ok; a wrong pinned host key, a
//! missing known_hosts entry and a server that is down are each reported with their fix.

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

const SSHD: &str = "/usr/sbin/sshd";

fn kdump(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_kdump")).args(args).output().unwrap()
}

fn text(o: &Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

struct Sshd(Child);

impl Drop for Sshd {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn keygen(path: &Path) -> String {
    let out = Command::new("ssh-keygen").args(["-q", "-t", "ed25519", "-N", "", "-f"]).arg(path).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read_to_string(path.with_extension("pub")).unwrap()
}

fn start_sshd(dir: &Path, port: u16) -> Sshd {
    std::fs::create_dir_all("/run/sshd").unwrap();
    let d = dir.display();
    std::fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n\
             StrictModes no\nPidFile none\nSubsystem sftp internal-sftp\n"
        ),
    )
    .unwrap();
    let child = Command::new(SSHD)
        .args(["-D", "-e", "-f"])
        .arg(dir.join("sshd_config"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10), "sshd did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    Sshd(child)
}

#[test]
fn check_target_passes_and_names_each_problem() {
    assert!(Path::new(SSHD).exists(), "{SSHD} is missing: run scripts/deps.sh (Debian package openssh-server)");
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let host_public = keygen(&d.join("host_ed25519"));
    let key = d.join("kdump_id_ed25519");
    let out = kdump(&["ssh-key", "--out", key.to_str().unwrap()]);
    assert!(out.status.success(), "{}", text(&out));
    std::fs::write(d.join("authorized_keys"), &out.stdout).unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let user = String::from_utf8(Command::new("id").arg("-un").output().unwrap().stdout).unwrap();
    let b64 = host_public.split_whitespace().nth(1).unwrap().to_string();
    let config = |known_hosts: &str| {
        let kh = d.join("known_hosts");
        std::fs::write(&kh, known_hosts).unwrap();
        let cfg = d.join("kdump.toml");
        std::fs::write(
            &cfg,
            format!(
                "[target]\nurl = \"ssh://{}@127.0.0.1:{port}{}/crash\"\nssh_key = \"{}\"\nknown_hosts = \"{}\"\n\
                 [network]\ninterface = \"52:54:00:12:34:56\"\ndhcp = true\n",
                user.trim(),
                d.join("dumps").display(),
                key.display(),
                kh.display()
            ),
        )
        .unwrap();
        cfg.to_str().unwrap().to_string()
    };

    // The server is down: not reachable, the rest skipped, exit 1.
    let cfg = config(&format!("[127.0.0.1]:{port} ssh-ed25519 {b64}\n"));
    let down = kdump(&["check-target", "--config", &cfg]);
    assert!(!down.status.success());
    assert!(text(&down).contains("PROBLEM reachable") && text(&down).contains("skipped host key"), "{}", text(&down));

    let _sshd = start_sshd(d, port);
    let ok = kdump(&["check-target", "--config", &cfg]);
    assert!(ok.status.success(), "{}", text(&ok));
    for step in
        ["ok      reachable", "ok      host key", "ok      authentication", "ok      free space", "ok      write"]
    {
        assert!(text(&ok).contains(step), "{step}: {}", text(&ok));
    }

    // Another key pinned for the server: refused, with the fix.
    let other = keygen(&d.join("other_ed25519"));
    let other_b64 = other.split_whitespace().nth(1).unwrap();
    let cfg = config(&format!("[127.0.0.1]:{port} ssh-ed25519 {other_b64}\n"));
    let wrong = kdump(&["check-target", "--config", &cfg]);
    assert!(!wrong.status.success());
    assert!(
        text(&wrong).contains("PROBLEM host key") && text(&wrong).contains("HOST KEY MISMATCH"),
        "{}",
        text(&wrong)
    );

    // Pinned for port 22 only: refused before connecting, saying how to pin it.
    let cfg = config(&format!("127.0.0.1 ssh-ed25519 {b64}\n"));
    let unpinned = kdump(&["check-target", "--config", &cfg]);
    assert!(!unpinned.status.success());
    assert!(
        text(&unpinned).contains(&format!("pins no ssh-ed25519 host key for [127.0.0.1]:{port}"))
            && text(&unpinned).contains(&format!("ssh-keyscan -t ed25519 -p {port} 127.0.0.1")),
        "{}",
        text(&unpinned)
    );
}
