//! Writes the seeds of the `ssh_handshake` fuzz target into DIR (scripts/fuzz.sh runs this).

fn main() -> std::io::Result<()> {
    let dir = std::env::args().nth(1).expect("usage: ssh_fuzz_seeds DIR");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(format!("{dir}/openssh-like"), kdump_ssh::fuzzing::server_transcript())
}
