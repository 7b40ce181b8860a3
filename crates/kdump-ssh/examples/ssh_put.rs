//! Measures the ssh target's throughput: writes SIZE MiB through [`kdump_ssh::RemoteFile`] into
//! a new crash directory and prints MB/s.
//!
//! `cargo run --release -p kdump-ssh --example ssh_put -- ssh://root@127.0.0.1:2222/tmp/d KEY KNOWN_HOSTS 200`

use std::time::Instant;

use kdump_dumpfile::WriteAt;
use kdump_ssh::{KnownHosts, PrivateKey, SshTarget, SshUrl};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [url, key, known_hosts, mib] = &args[..] else {
        return Err("usage: ssh_put URL KEY KNOWN_HOSTS SIZE_MIB".into());
    };
    let target = SshTarget::new(
        SshUrl::parse(url)?,
        PrivateKey::from_openssh(&std::fs::read_to_string(key)?)?,
        KnownHosts::parse(&std::fs::read_to_string(known_hosts)?),
        known_hosts,
    );
    let size = mib.parse::<u64>()? << 20;
    let start = Instant::now();
    let mut conn = target.connect()?;
    let connected = start.elapsed();
    let name = format!("put-{}", std::process::id());
    let mut dir = conn.create_crash_dir(&name)?;
    let mut file = dir.create_file("vmcore")?;
    // Incompressible-looking data: nothing on the path compresses anyway.
    let mut block = vec![0u8; 1 << 20];
    let mut x = 0x2545f4914f6cdd1du64;
    for b in block.iter_mut() {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        *b = x as u8;
    }
    let t = Instant::now();
    let mut off = 0;
    while off < size {
        file.write_at(off, &block)?;
        off += block.len() as u64;
    }
    file.flush()?;
    file.finish()?;
    let secs = t.elapsed().as_secs_f64();
    let path = dir.complete()?;
    conn.close()?;
    println!(
        "connected in {:.0} ms; {} MiB in {secs:.2} s = {:.1} MB/s ({:.1} MiB/s) to {path}",
        connected.as_secs_f64() * 1000.0,
        size >> 20,
        size as f64 / secs / 1e6,
        size as f64 / secs / (1 << 20) as f64
    );
    if let Some(rss) = std::fs::read_to_string("/proc/self/status")?.lines().find(|l| l.starts_with("VmHWM")) {
        println!("peak RSS: {}", rss.trim_start_matches("VmHWM:").trim());
    }
    Ok(())
}
