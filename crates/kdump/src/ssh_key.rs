//! `kdump ssh-key`: a key for the ssh target, and the line to authorize on the server.

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use kdump_ssh::PrivateKey;

/// Where `kdump ssh-key` writes by default (and what `target.ssh_key` names).
pub const DEFAULT_KEY: &str = "/root/.ssh/kdump_id_ed25519";

/// Arguments of `kdump ssh-key`.
#[derive(Debug, clap::Args)]
pub struct SshKeyArgs {
    /// The private key file to create (0600; FILE.pub gets the public line). Never overwritten.
    #[arg(long, value_name = "FILE", default_value = DEFAULT_KEY)]
    out: PathBuf,
    /// Comment at the end of the public line.
    #[arg(long, default_value = "kdump")]
    comment: String,
}

fn create(path: &Path, text: &str) -> Result<()> {
    let mut f = kdump_sys::file::create_private(path)
        .with_context(|| format!("cannot create {} (it must not exist yet)", path.display()))?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).with_context(|| format!("writing {}", path.display()))
}

/// Creates the key pair and prints the `authorized_keys` line.
pub fn run(args: &SshKeyArgs) -> Result<()> {
    if let Some(dir) = args.out.parent().filter(|d| !d.as_os_str().is_empty() && !d.exists()) {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .with_context(|| format!("cannot create {}", dir.display()))?;
    }
    let key = PrivateKey::generate(&args.comment)?;
    let line = key.authorized_keys_line();
    let mut public = args.out.clone().into_os_string();
    public.push(".pub");
    create(&args.out, &key.to_openssh()?)?;
    create(Path::new(&public), &format!("{line}\n"))?;
    eprintln!("kdump: wrote {} ({}) and {}", args.out.display(), key.fingerprint(), Path::new(&public).display());
    eprintln!("kdump: append this line to ~USER/.ssh/authorized_keys on the dump server:");
    println!("{line}");
    Ok(())
}
