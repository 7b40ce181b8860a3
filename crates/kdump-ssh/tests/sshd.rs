//! Against a real OpenSSH sshd on 127.0.0.1 (Debian's openssh-server; scripts/deps.sh installs
//! it): a kdump-compressed file written through the WriteAt handle is byte-identical to a local
//! write, unknown and changed host keys and unauthorized user keys are refused with their
//! fixes, a server killed mid-transfer leaves `.incomplete`, and check-target reports.

use std::io::Cursor;
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use kdump_dumpfile::{Codec, KdumpConfig, KdumpReader, KdumpWriter, PhysMem, SeekSink, WriteAt};
use kdump_ssh::{Error, KnownHosts, PrivateKey, SshTarget, SshUrl, check};

const SSHD: &str = "/usr/sbin/sshd";

/// An sshd of its own: config, host key, authorized_keys, log, in a temporary directory.
struct Sshd {
    child: Child,
    port: u16,
    dir: tempfile::TempDir,
    host_key: PrivateKey,
    user_key: PrivateKey,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

fn whoami() -> String {
    let out = Command::new("id").arg("-un").output().unwrap();
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

fn write_0600(path: &Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path).unwrap();
    f.write_all(text.as_bytes()).unwrap();
}

impl Sshd {
    fn start() -> Sshd {
        Sshd::start_with("")
    }

    /// With extra sshd_config lines.
    fn start_with(extra: &str) -> Sshd {
        Sshd::spawn(extra, None)
    }

    /// With the dumps directory on a tmpfs of `bytes`, mounted in a mount namespace of sshd's
    /// own (`unshare`): the machine's mount table is not touched, and the mount goes with sshd.
    fn start_with_disk_of(bytes: u64) -> Sshd {
        Sshd::spawn("", Some(bytes))
    }

    fn spawn(extra: &str, disk: Option<u64>) -> Sshd {
        assert!(Path::new(SSHD).exists(), "{SSHD} is missing: run scripts/deps.sh (Debian package openssh-server)");
        // sshd refuses to start without its privilege separation directory.
        std::fs::create_dir_all("/run/sshd").unwrap();
        let dir = tempfile::tempdir().unwrap();
        let host_key = PrivateKey::generate("test host").unwrap();
        let user_key = PrivateKey::generate("kdump@test").unwrap();
        write_0600(&dir.path().join("host_ed25519"), &host_key.to_openssh().unwrap());
        write_0600(&dir.path().join("authorized_keys"), &format!("{}\n", user_key.authorized_keys_line()));
        std::fs::create_dir(dir.path().join("dumps")).unwrap();
        let port = free_port();
        let d = dir.path().display();
        // sshd takes the first value of a keyword: the extra lines go first.
        let config = format!(
            "{extra}Port {port}\nListenAddress 127.0.0.1\nHostKey {d}/host_ed25519\nAuthorizedKeysFile {d}/authorized_keys\n\
             PasswordAuthentication no\nKbdInteractiveAuthentication no\nUsePAM no\nPermitRootLogin prohibit-password\n\
             StrictModes no\nPidFile none\nSubsystem sftp internal-sftp\nLogLevel VERBOSE\n"
        );
        std::fs::write(dir.path().join("sshd_config"), config).unwrap();
        let log = std::fs::File::create(dir.path().join("sshd.log")).unwrap();
        let mut cmd = match disk {
            None => Command::new(SSHD),
            Some(bytes) => {
                let mut c = Command::new("unshare");
                c.args(["--mount", "--propagation", "private", "--", "sh", "-c"]);
                c.arg(format!("mount -t tmpfs -o size={bytes} kdump-test {d}/dumps && exec {SSHD} \"$@\""));
                c.arg("sh");
                c
            }
        };
        let child = cmd
            .args(["-D", "-e", "-f"])
            .arg(dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let s = Sshd { child, port, dir, host_key, user_key };
        let start = Instant::now();
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(start.elapsed() < Duration::from_secs(10), "sshd did not listen: {}", s.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        s
    }

    /// Starts sshd again after [`Sshd::kill_all`]: same port, keys and config.
    fn respawn(&mut self) {
        let log = std::fs::OpenOptions::new().append(true).open(self.dir.path().join("sshd.log")).unwrap();
        self.child = Command::new(SSHD)
            .args(["-D", "-e", "-f"])
            .arg(self.dir.path().join("sshd_config"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("sshd.log")).unwrap_or_default()
    }

    fn dumps(&self) -> PathBuf {
        self.dir.path().join("dumps")
    }

    fn known_hosts_line(&self) -> String {
        let pubkey = self.host_key.authorized_keys_line();
        let b64 = pubkey.split_whitespace().nth(1).unwrap();
        format!("[127.0.0.1]:{} ssh-ed25519 {b64}\n", self.port)
    }

    fn target_with(&self, key: PrivateKey, known_hosts: &str) -> SshTarget {
        let url = SshUrl::parse(&format!(
            "ssh://{}@127.0.0.1:{}{}",
            whoami(),
            self.port,
            self.dumps().join("crash").display()
        ))
        .unwrap();
        let mut t = SshTarget::new(url, key, KnownHosts::parse(known_hosts), "/test/known_hosts");
        t.timeout = Duration::from_secs(10);
        t
    }

    fn target(&self) -> SshTarget {
        let key = PrivateKey::from_openssh(&self.user_key.to_openssh().unwrap()).unwrap();
        self.target_with(key, &self.known_hosts_line())
    }

    /// Kills sshd and every process it forked for connections (by pid: ours only).
    fn kill_all(&mut self) {
        let mut pids = vec![self.child.id() as i32];
        let mut i = 0;
        while i < pids.len() {
            pids.extend(children(pids[i]));
            i += 1;
        }
        for pid in pids.iter().rev() {
            let _ = Command::new("kill").args(["-KILL", &pid.to_string()]).stderr(Stdio::null()).status();
        }
        let _ = self.child.wait();
    }
}

impl Drop for Sshd {
    fn drop(&mut self) {
        self.kill_all();
    }
}

fn children(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(p) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{p}/stat")) else { continue };
        // Fields after the ")" of the command name: state, ppid.
        let Some(rest) = stat.rsplit_once(')').map(|r| r.1) else { continue };
        if rest.split_whitespace().nth(1).and_then(|s| s.parse::<i32>().ok()) == Some(pid) {
            out.push(p);
        }
    }
    out
}

/// A synthetic machine's dump: `pages` pages of 4 KiB in two RAM ranges, mixed content.
fn write_dump<S: WriteAt>(sink: S, pages: u64) -> kdump_dumpfile::Result<S> {
    let ram = [16..16 + pages / 2, 100 + pages / 2..100 + pages];
    let mut cfg = KdumpConfig::new(4096, 100 + pages, ram.to_vec(), Codec::Zstd);
    cfg.vmcoreinfo = Some(b"OSRELEASE=6.1.0-test\nPAGESIZE=4096\n".to_vec());
    cfg.share_zero_pages = true;
    let mut w = KdumpWriter::new(sink, cfg)?;
    let mut x = 0x9e3779b97f4a7c15u64;
    let mut page = vec![0u8; 4096];
    for pfn in ram.into_iter().flatten() {
        match pfn % 4 {
            0 => page.fill(0),
            1 => page.iter_mut().enumerate().for_each(|(i, b)| *b = (i as u64 ^ pfn) as u8),
            _ => page.iter_mut().for_each(|b| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                *b = x as u8;
            }),
        }
        w.append_page(pfn, &page)?;
    }
    Ok(w.finish()?.0)
}

#[test]
fn a_kdump_file_written_over_sftp_is_byte_identical() {
    // Re-exchanging keys every 256 KiB: the client must follow the server's rekeys mid-write.
    let sshd = Sshd::start_with("RekeyLimit 256K\nLogLevel DEBUG1\n");
    let local = write_dump(SeekSink::new(Cursor::new(Vec::new())), 2000).unwrap().into_inner().into_inner();

    let target = sshd.target();
    let mut conn = target.connect().unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    let mut dir = conn.create_crash_dir("host-2026-12-01-06:00").unwrap();
    let file = dir.create_file("vmcore").unwrap();
    let file = write_dump(file, 2000).unwrap();
    // The writer comes back to its headers and page table: more bytes than the file's size.
    assert!(file.bytes_written() as usize > local.len());
    file.finish().unwrap();
    dir.write_file("dmesg.txt", b"[    0.000000] Linux version 6.1.0-test\n").unwrap();
    assert!(sshd.dumps().join("crash/host-2026-12-01-06:00.incomplete/vmcore").exists());
    let done = dir.complete().unwrap();
    // A crash directory of the same name, complete or not, is never written into.
    let e = conn.create_crash_dir("host-2026-12-01-06:00").unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    conn.create_crash_dir("other").unwrap();
    let e = conn.create_crash_dir("other").unwrap_err();
    assert!(e.to_string().contains("already exists"), "{e}");
    conn.close().unwrap();
    // The first exchange and at least two rekeys (about 4 MiB written, 256 KiB a key).
    let kexinits = sshd.log().matches("SSH2_MSG_KEXINIT sent").count();
    assert!(kexinits >= 3, "expected the server to rekey; its log:\n{}", sshd.log());

    let done = PathBuf::from(done);
    assert_eq!(done, sshd.dumps().join("crash/host-2026-12-01-06:00"));
    assert!(!sshd.dumps().join("crash/host-2026-12-01-06:00.incomplete").exists());
    let remote = std::fs::read(done.join("vmcore")).unwrap();
    assert!(
        remote == local,
        "remote vmcore ({} bytes) differs from the local write ({} bytes)",
        remote.len(),
        local.len()
    );
    let r = KdumpReader::open(Cursor::new(remote)).unwrap();
    assert_eq!(r.page_size(), 4096);
    assert_eq!(std::fs::read(done.join("dmesg.txt")).unwrap(), b"[    0.000000] Linux version 6.1.0-test\n");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(std::fs::metadata(done.join("vmcore")).unwrap().permissions().mode() & 0o777, 0o600);
}

#[test]
fn unknown_and_changed_host_keys_are_refused() {
    let sshd = Sshd::start();
    let fp = sshd.host_key.fingerprint();

    let key = || PrivateKey::from_openssh(&sshd.user_key.to_openssh().unwrap()).unwrap();
    let e = sshd.target_with(key(), "").connect().unwrap_err();
    assert!(matches!(e, Error::HostKeyUnknown { .. }), "{e}");
    let msg = e.to_string();
    assert!(msg.contains(&format!("[127.0.0.1]:{}", sshd.port)) && msg.contains(&fp), "{msg}");
    assert!(msg.contains(&format!("ssh-keyscan -t ed25519 -p {} 127.0.0.1", sshd.port)), "{msg}");

    // The port matters: a key pinned for port 22 does not pin this port.
    let b64 = sshd.known_hosts_line().split_whitespace().nth(2).unwrap().to_string();
    let e = sshd.target_with(key(), &format!("127.0.0.1 ssh-ed25519 {b64}\n")).connect().unwrap_err();
    assert!(matches!(e, Error::HostKeyUnknown { .. }), "{e}");

    let other = PrivateKey::generate("").unwrap().authorized_keys_line();
    let other_b64 = other.split_whitespace().nth(1).unwrap();
    let kh = format!("# pinned\n[127.0.0.1]:{} ssh-ed25519 {other_b64}\n", sshd.port);
    let e = sshd.target_with(key(), &kh).connect().unwrap_err();
    assert!(matches!(e, Error::HostKeyMismatch { line: 2, .. }), "{e}");
    assert!(e.to_string().contains(&fp) && e.to_string().contains("ssh-keygen -R"), "{e}");
    // Nothing was written.
    assert_eq!(std::fs::read_dir(sshd.dumps()).unwrap().count(), 0);
}

#[test]
fn a_name_pinned_in_known_hosts_is_reached_at_a_given_address() {
    // No resolver is asked: `.invalid` never resolves (RFC 6761).
    let sshd = Sshd::start();
    let url = format!("ssh://{}@dumps.invalid:{}{}", whoami(), sshd.port, sshd.dumps().display());
    let pinned = sshd.known_hosts_line().replace("127.0.0.1", "dumps.invalid");
    let key = PrivateKey::from_openssh(&sshd.user_key.to_openssh().unwrap()).unwrap();
    let mut target = SshTarget::new(SshUrl::parse(&url).unwrap(), key, KnownHosts::parse(&pinned), "kh");
    target.address = Some(std::net::Ipv4Addr::LOCALHOST.into());
    target.connect().unwrap_or_else(|e| panic!("{e}")).close().unwrap();
    // Pinned under the address only, the name is unknown.
    target.known_hosts = KnownHosts::parse(&sshd.known_hosts_line());
    let e = target.connect().unwrap_err();
    assert!(matches!(e, Error::HostKeyUnknown { .. }) && e.to_string().contains("[dumps.invalid]:"), "{e}");
}

#[test]
fn an_unauthorized_user_key_is_refused() {
    let sshd = Sshd::start();
    let stranger = PrivateKey::generate("stranger").unwrap();
    let fp = stranger.fingerprint();
    let e = sshd.target_with(stranger, &sshd.known_hosts_line()).connect().unwrap_err();
    assert!(matches!(e, Error::AuthRefused { .. }), "{e}");
    assert!(e.to_string().contains(&fp) && e.to_string().contains("authorized_keys"), "{e}");
}

#[test]
fn nothing_listening_is_a_connect_error() {
    let port = free_port();
    let url = SshUrl::parse(&format!("ssh://root@127.0.0.1:{port}/tmp/x")).unwrap();
    let target = SshTarget::new(url, PrivateKey::generate("").unwrap(), KnownHosts::default(), "kh");
    let e = target.connect().unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e}");
    assert!(e.to_string().contains("start sshd"), "{e}");
    // Retried as often as asked, each failure told.
    let mut told = Vec::new();
    let e = target.connect_retrying(3, Duration::from_millis(10), |n, e| told.push((n, e.to_string()))).unwrap_err();
    assert!(matches!(e, Error::Connect { .. }), "{e}");
    assert_eq!(told.iter().map(|t| t.0).collect::<Vec<_>>(), [1, 2]);
}

#[test]
fn retries_wait_for_a_server_but_not_past_a_refusal() {
    let sshd = Sshd::start();
    // A refused host key needs a person: no retry.
    let mut told = 0;
    let e =
        sshd.target_with(PrivateKey::generate("").unwrap(), "").connect_retrying(5, Duration::ZERO, |_, _| told += 1);
    assert!(matches!(e, Err(Error::HostKeyUnknown { .. })));
    assert_eq!(told, 0);
    // A server that comes up while we retry is reached.
    let target = sshd.target();
    let mut sshd = sshd;
    sshd.kill_all();
    let late = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(300));
        sshd.respawn();
        sshd
    });
    let mut told = 0;
    let conn = target.connect_retrying(200, Duration::from_millis(50), |_, _| told += 1);
    let _sshd = late.join().unwrap();
    conn.unwrap_or_else(|e| panic!("{e}")).close().unwrap();
    assert!(told >= 2, "{told} retries");
}

/// Kills the server after `after` bytes went through it.
struct KillAfter<'a, W> {
    inner: W,
    sshd: &'a mut Sshd,
    after: u64,
    sent: u64,
}

impl<W: WriteAt> WriteAt for KillAfter<'_, W> {
    fn write_at(&mut self, offset: u64, data: &[u8]) -> std::io::Result<()> {
        self.sent += data.len() as u64;
        if self.sent > self.after && self.after > 0 {
            self.sshd.kill_all();
            self.after = 0;
        }
        self.inner.write_at(offset, data)
    }
    fn flush(&mut self) -> std::io::Result<()> {
        self.inner.flush()
    }
}

#[test]
fn a_server_killed_mid_transfer_leaves_incomplete() {
    let mut sshd = Sshd::start();
    let target = sshd.target();
    let dumps = sshd.dumps();
    let mut conn = target.connect().unwrap();
    let mut dir = conn.create_crash_dir("crash1").unwrap();
    let file = dir.create_file("vmcore").unwrap();
    let e = match write_dump(KillAfter { inner: file, sshd: &mut sshd, after: 4 << 20, sent: 0 }, 20_000) {
        Ok(_) => panic!("the dump was written although sshd was killed"),
        Err(e) => e,
    };
    // The writer's io::Error carries our typed error.
    let kdump_dumpfile::Error::Io(io) = &e else { panic!("not an I/O error: {e}") };
    let inner = io.get_ref().and_then(|i| i.downcast_ref::<Error>()).unwrap_or_else(|| panic!("untyped: {io}"));
    assert!(inner.is_connection_lost(), "{inner}");
    assert!(inner.to_string().contains("writing") && inner.to_string().contains(".incomplete"), "{inner}");
    assert!(dumps.join("crash/crash1.incomplete/vmcore").exists());
    assert!(!dumps.join("crash/crash1").exists());
}

/// A proxy on 127.0.0.1 that forwards to `port` until `after` bytes went upward, then stops
/// forwarding either way but keeps both sockets open: a server (or a network) gone silent.
fn stalling_proxy(port: u16, after: u64) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let proxy = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        let (mut client, _) = listener.accept().unwrap();
        let mut server = TcpStream::connect(("127.0.0.1", port)).unwrap();
        let stalled = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (mut s2, mut c2, stalled2) = (server.try_clone().unwrap(), client.try_clone().unwrap(), stalled.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 16384];
            while let Ok(n @ 1..) = s2.read(&mut buf) {
                if stalled2.load(std::sync::atomic::Ordering::Relaxed) || c2.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
            std::thread::sleep(Duration::from_secs(60));
        });
        let (mut buf, mut sent) = ([0u8; 16384], 0u64);
        while let Ok(n @ 1..) = client.read(&mut buf) {
            sent += n as u64;
            if sent >= after {
                stalled.store(true, std::sync::atomic::Ordering::Relaxed);
                break;
            }
            if server.write_all(&buf[..n]).is_err() {
                break;
            }
        }
        // Hold the sockets open without reading: the client sees silence, not a close.
        std::thread::sleep(Duration::from_secs(60));
        drop((client, server));
    });
    proxy
}

#[test]
fn a_silent_server_costs_one_timeout_then_every_later_step_fails_at_once() {
    let sshd = Sshd::start();
    let proxy = stalling_proxy(sshd.port, 2 << 20);
    let url = SshUrl::parse(&format!("ssh://{}@127.0.0.1:{proxy}{}", whoami(), sshd.dumps().join("crash").display()))
        .unwrap();
    let line = sshd.known_hosts_line().replace(&format!(":{} ", sshd.port), &format!(":{proxy} "));
    let key = PrivateKey::from_openssh(&sshd.user_key.to_openssh().unwrap()).unwrap();
    let mut target = SshTarget::new(url, key, KnownHosts::parse(&line), "/test/known_hosts");
    target.timeout = Duration::from_secs(2);
    let mut conn = target.connect().unwrap();
    let mut dir = conn.create_crash_dir("crash1").unwrap();
    let file = dir.create_file("vmcore").unwrap();
    let start = Instant::now();
    assert!(write_dump(file, 20_000).is_err(), "the dump was written through a silent proxy");
    let first = start.elapsed();
    assert!(first < Duration::from_secs(10), "one timeout: {first:?}");
    // What a capture init does next: leave its log in the directory. It fails without waiting.
    let start = Instant::now();
    let e = dir.write_file("kdump.log", b"log").unwrap_err();
    assert!(start.elapsed() < Duration::from_millis(500), "waited {:?}", start.elapsed());
    // The first failure, again: what happened, with where it happened.
    assert!(e.is_connection_lost() && e.to_string().contains("no answer within the timeout"), "{e}");
    assert!(e.to_string().contains("lost writing ") && e.to_string().contains("/vmcore"), "{e}");
    assert!(dumps_has_no_complete(&sshd.dumps()));
}

fn dumps_has_no_complete(dumps: &Path) -> bool {
    dumps.join("crash/crash1.incomplete").is_dir() && !dumps.join("crash/crash1").exists()
}

#[test]
fn a_full_remote_disk_is_named() {
    let sshd = Sshd::start_with_disk_of(2 << 20);
    let target = sshd.target();
    let mut conn = target.connect().unwrap_or_else(|e| panic!("{e}\nsshd log:\n{}", sshd.log()));
    let space = conn.free_space().unwrap();
    assert_eq!(space.total, 2 << 20, "the dumps directory is not the 2 MiB tmpfs");
    let mut dir = conn.create_crash_dir("crash1").unwrap();
    let file = dir.create_file("vmcore").unwrap();
    let e = write_dump(file, 5000).map(|_| ()).unwrap_err();
    let kdump_dumpfile::Error::Io(io) = &e else { panic!("not an I/O error: {e}") };
    assert_eq!(io.kind(), std::io::ErrorKind::StorageFull, "{io}");
    let inner = io.get_ref().and_then(|i| i.downcast_ref::<Error>()).unwrap();
    assert!(matches!(inner, Error::DiskFull { .. }), "{inner}");
    assert!(inner.to_string().contains("free space there"), "{inner}");
    // The session is still usable: a small write into allocated space (the writer marking
    // its header incomplete) succeeds, and the directory stays incomplete.
    let mut file = dir.create_file("dmesg.txt").unwrap_or_else(|e| panic!("{e}"));
    file.write_at_typed(0, b"").unwrap();
    file.finish().unwrap();
    assert!(conn.free_space().unwrap().available < 64 << 10);
}

#[test]
fn check_target_reports_every_step() {
    let sshd = Sshd::start();
    let report = check(&sshd.target(), Some(1 << 20));
    assert!(report.ok(), "{report}");
    let text = report.to_string();
    for what in ["reachable", "host key", "authentication", "free space", "write"] {
        assert!(text.contains(what), "{text}");
    }
    // The probe file is gone; the directory was made.
    assert_eq!(std::fs::read_dir(sshd.dumps().join("crash")).unwrap().count(), 0);

    // A dump bigger than the disk, and a stranger's key.
    let report = check(&sshd.target(), Some(u64::MAX / 2));
    assert!(!report.ok());
    assert!(matches!(report.items[3].outcome, Some(Err(Error::DiskFull { .. }))), "{report}");
    assert!(matches!(report.items[4].outcome, Some(Ok(_))), "{report}");
    let stranger = sshd.target_with(PrivateKey::generate("").unwrap(), &sshd.known_hosts_line());
    let report = check(&stranger, None);
    assert!(matches!(report.items[1].outcome, Some(Ok(_))), "{report}");
    assert!(matches!(report.items[2].outcome, Some(Err(Error::AuthRefused { .. }))), "{report}");
    assert!(report.items[3].outcome.is_none() && report.items[4].outcome.is_none(), "{report}");
}

/// A server on 127.0.0.1 that accepts one connection and runs `serve` on it.
fn fake_server(serve: impl FnOnce(TcpStream) + Send + 'static) -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        if let Ok((s, _)) = l.accept() {
            serve(s);
        }
    });
    port
}

fn target_on(port: u16) -> SshTarget {
    let url = SshUrl::parse(&format!("ssh://root@127.0.0.1:{port}/tmp/x")).unwrap();
    let mut t = SshTarget::new(url, PrivateKey::generate("").unwrap(), KnownHosts::default(), "kh");
    t.timeout = Duration::from_secs(1);
    t
}

#[test]
fn a_silent_or_foreign_server_is_a_clear_error() {
    // Accepts and says nothing: bounded by the timeout.
    let port = fake_server(|s| {
        std::thread::sleep(Duration::from_secs(3));
        drop(s);
    });
    let start = Instant::now();
    let e = target_on(port).connect().unwrap_err();
    assert!(start.elapsed() < Duration::from_secs(3), "waited {:?}", start.elapsed());
    assert!(e.is_connection_lost() && e.to_string().contains("no answer"), "{e}");

    // Not an ssh server at all: a page of text and no version line.
    let port = fake_server(|mut s| {
        use std::io::{Read, Write};
        let _ = s.write_all("HTTP/1.1 400 Bad Request\r\n".repeat(100).as_bytes());
        let _ = s.read_to_end(&mut Vec::new());
    });
    let e = target_on(port).connect().unwrap_err();
    assert!(matches!(e, Error::Protocol(_)) && e.to_string().contains("is it an ssh server?"), "{e}");

    // An ssh version line, then garbage where the key exchange should be.
    let port = fake_server(|mut s| {
        use std::io::{Read, Write};
        let _ = s.write_all(b"SSH-2.0-Fake\r\n\xff\xff\xff\xff\x00\x00");
        let mut sink = [0u8; 4096];
        let _ = s.read(&mut sink);
    });
    let e = target_on(port).connect().unwrap_err();
    assert!(matches!(e, Error::Protocol(_)) && e.to_string().contains("bad length"), "{e}");
}
