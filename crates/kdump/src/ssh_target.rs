//! The ssh target on the running machine: `kdump check-target`, and what `kdump setup` checks
//! and copies into the capture initramfs. The client is `kdump-ssh`; the config's rules are in
//! `kdump-service`; this file reads the two files and prints.

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use kdump_service::SshDestination;
use kdump_service::initramfs::SshFiles;
use kdump_ssh::{KnownHosts, PrivateKey, SshTarget, host_name};

/// How long the running machine's check waits for the server: a server that is down must not
/// hold `kdump setup` at boot for long.
const CHECK_TIMEOUT: Duration = Duration::from_secs(5);

/// The target built from texts (the key's and known_hosts'), refusing what cannot work: a key
/// that is not an unencrypted ed25519 one, or no ssh-ed25519 host key pinned for the server.
/// `key_name` and `known_hosts_name` are the files, for messages.
pub fn target_from_texts(
    ssh: &SshDestination,
    key_text: &str,
    key_name: &str,
    known_hosts_text: &str,
    known_hosts_name: &str,
) -> anyhow::Result<SshTarget> {
    let key = PrivateKey::from_openssh(key_text).with_context(|| {
        format!("target.ssh_key {key_name} is not a usable key (make one with: kdump ssh-key --out {key_name})")
    })?;
    let known_hosts = KnownHosts::parse(known_hosts_text);
    let name = host_name(&ssh.url.host, ssh.url.port);
    if !known_hosts.pinned(&name).iter().any(|(t, _)| t == kdump_ssh::ED25519) {
        let scan = if ssh.url.port == 22 {
            format!("ssh-keyscan -t ed25519 {}", ssh.address)
        } else {
            format!("ssh-keyscan -t ed25519 -p {} {}", ssh.url.port, ssh.address)
        };
        bail!(
            "{known_hosts_name} pins no ssh-ed25519 host key for {name}: the capture kernel cannot ask whether to trust \
             the server, so it would refuse it. Check the key on the server (ssh-keygen -lf \
             /etc/ssh/ssh_host_ed25519_key.pub), then add it: {scan} >> {known_hosts_name}{}",
            if name.starts_with('[') || ssh.url.host == ssh.address.to_string() {
                String::new()
            } else {
                format!(" (and write the url's name {name} in place of the address on that line)")
            }
        );
    }
    let mut target = SshTarget::new(ssh.url.clone(), key, known_hosts, known_hosts_name);
    target.address = Some(IpAddr::V4(ssh.address));
    Ok(target)
}

/// Reads the key and known_hosts named by the config.
pub fn load(ssh: &SshDestination) -> anyhow::Result<(SshTarget, SshFiles)> {
    let key = std::fs::read_to_string(&ssh.key_file).with_context(|| {
        format!("cannot read target.ssh_key {} (make one with: kdump ssh-key --out {0})", ssh.key_file)
    })?;
    let known_hosts = std::fs::read_to_string(&ssh.known_hosts_file).with_context(|| {
        format!(
            "cannot read target.known_hosts {} (it must pin the server's host key: ssh-keyscan -t ed25519 {} >> {0})",
            ssh.known_hosts_file, ssh.address
        )
    })?;
    let target = target_from_texts(ssh, &key, &ssh.key_file, &known_hosts, &ssh.known_hosts_file)?;
    Ok((target, SshFiles { key, known_hosts }))
}

/// What `kdump setup` does for an ssh target: the files for the initramfs, and report lines.
/// Refuses a missing key or host key, and a server that answers but refuses us; only warns
/// when the server cannot be reached now (it may be down while this machine boots).
pub fn for_setup(ssh: &SshDestination, report: &mut Vec<String>) -> anyhow::Result<SshFiles> {
    let (mut target, files) = load(ssh)?;
    report.push(format!(
        "target: {ssh}, key {} ({}), host key pinned in {}",
        ssh.key_file,
        target.key.fingerprint(),
        ssh.known_hosts_file
    ));
    target.timeout = CHECK_TIMEOUT;
    let checked = kdump_ssh::check(&target, None);
    let first_problem = checked.items.iter().find(|i| !matches!(i.outcome, Some(Ok(_))));
    match first_problem {
        None => report.push("target: check-target passed (reachable, host key, login, free space, write)".into()),
        Some(item) if item.what == "reachable" => {
            let why = match &item.outcome {
                Some(Err(e)) => e.to_string(),
                _ => "not checked".into(),
            };
            report.push(format!(
                "target: WARNING: cannot reach the server from here now ({why}); the capture kernel will try; \
                 run kdump check-target once it is up"
            ));
        }
        Some(_) => bail!("the ssh target fails its check (kdump check-target):\n{checked}"),
    }
    Ok(files)
}

/// `kdump check-target`: every step from this machine; an error when one fails.
pub fn check_target(ssh: &SshDestination) -> anyhow::Result<()> {
    let (target, _) = load(ssh)?;
    let report = kdump_ssh::check(&target, None);
    print!("{report}");
    if !report.ok() {
        bail!("the ssh target {ssh} is not ready: fix the PROBLEM lines above");
    }
    Ok(())
}

/// The files as they are in the capture initramfs.
pub fn from_initramfs(ssh: &SshDestination, root: &Path) -> anyhow::Result<SshTarget> {
    use kdump_service::initramfs::{KNOWN_HOSTS, SSH_KEY};
    let key_path = root.join(SSH_KEY);
    let kh_path = root.join(KNOWN_HOSTS);
    let key = std::fs::read_to_string(&key_path)
        .with_context(|| format!("cannot read {} (kdump setup puts target.ssh_key there)", key_path.display()))?;
    let known_hosts = std::fs::read_to_string(&kh_path)
        .with_context(|| format!("cannot read {} (kdump setup puts target.known_hosts there)", kh_path.display()))?;
    target_from_texts(
        ssh,
        &key,
        &format!("{} (a copy of {})", key_path.display(), ssh.key_file),
        &known_hosts,
        &format!("{} (a copy of {})", kh_path.display(), ssh.known_hosts_file),
    )
}

#[cfg(test)]
mod tests {
    use kdump_service::{Config, Destination};

    use super::*;

    fn destination(url: &str, address: &str) -> SshDestination {
        let text = format!(
            "[target]\nurl = \"{url}\"\naddress = \"{address}\"\n[network]\ninterface = \"52:54:00:12:34:56\"\ndhcp = true\n"
        );
        match Config::parse(&text).unwrap().destination().unwrap() {
            Destination::Ssh(s) => s,
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_host_key_must_be_pinned_under_the_name_the_client_looks_up() {
        let key = PrivateKey::generate("t").unwrap();
        let host = PrivateKey::generate("host").unwrap();
        let key_text = key.to_openssh().unwrap();
        let host_line = host.authorized_keys_line();
        let ssh = destination("ssh://k@10.0.2.100:2222/d", "");
        // Pinned for port 22 only: not this server.
        let err = target_from_texts(&ssh, &key_text, "id", &format!("10.0.2.100 {host_line}\n"), "kh").unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("pins no ssh-ed25519 host key for [10.0.2.100]:2222"), "{msg}");
        assert!(msg.contains("ssh-keyscan -t ed25519 -p 2222 10.0.2.100 >> kh"), "{msg}");
        let t = target_from_texts(&ssh, &key_text, "id", &format!("[10.0.2.100]:2222 {host_line}\n"), "kh").unwrap();
        assert_eq!(t.address, Some("10.0.2.100".parse().unwrap()));
        // A name: pinned under the name, reached at the address.
        let ssh = destination("ssh://k@backup.example/d", "192.0.2.7");
        let err = target_from_texts(&ssh, &key_text, "id", "", "kh").unwrap_err().to_string();
        assert!(err.contains("write the url's name backup.example"), "{err}");
        assert!(target_from_texts(&ssh, &key_text, "id", &format!("backup.example {host_line}\n"), "kh").is_ok());
        // Not a key.
        let err = target_from_texts(&ssh, "junk", "/root/id", "", "kh").unwrap_err();
        assert!(format!("{err:#}").contains("kdump ssh-key --out /root/id"), "{err:#}");
    }
}
