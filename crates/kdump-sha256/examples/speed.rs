// SPDX-License-Identifier: GPL-2.0-only
//! Throughput of each SHA-256 backend this CPU runs, over the 60 MiB a panic load of
//! Debian's kernel and an 8 MiB initrd makes the purgatory verify (docs/PERFORMANCE.md).
//!
//! `cargo run --release -p kdump-sha256 --example speed [MIB] [RUNS]`

use std::time::{Duration, Instant};

use kdump_sha256::{Backend, Sha256};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mib: usize = args.first().map_or(60, |a| a.parse().expect("MIB: a number"));
    let runs: usize = args.get(1).map_or(7, |a| a.parse().expect("RUNS: a number"));
    // Contents do not change SHA-256's speed; pseudo-random bytes keep it honest anyway.
    let mut x = 0x2545_f491_4f6c_dd1du64;
    let data: Vec<u8> = (0..mib << 20)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();

    let mut results = Vec::new();
    let mut digests = Vec::new();
    for backend in [Backend::Portable, Backend::ShaNi] {
        let Some(fresh) = Sha256::with_backend(backend) else {
            println!("{:>8}: not supported by this CPU", backend.name());
            continue;
        };
        let mut times: Vec<Duration> = (0..runs)
            .map(|_| {
                let t = Instant::now();
                let mut h = fresh.clone();
                h.update(&data);
                digests.push(std::hint::black_box(h.finalize()));
                t.elapsed()
            })
            .collect();
        times.sort();
        let median = times[runs / 2];
        let mb_s = data.len() as f64 / median.as_secs_f64() / 1e6;
        println!(
            "{:>8}: {mib} MiB in {:.1} ms (median of {runs}, min {:.1} ms) = {mb_s:.0} MB/s",
            backend.name(),
            median.as_secs_f64() * 1e3,
            times[0].as_secs_f64() * 1e3
        );
        results.push((backend, median));
    }
    assert!(digests.windows(2).all(|w| w[0] == w[1]), "the backends disagree");
    if let [(_, portable), (_, sha_ni)] = results[..] {
        println!("sha-ni is {:.1}x the portable code", portable.as_secs_f64() / sha_ni.as_secs_f64());
    }
}
