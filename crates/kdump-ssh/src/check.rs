//! `kdump check-target` for an ssh target: each step that a dump needs, tried in order from
//! this machine, each problem with its fix.

use crate::error::Error;
use crate::transport::Transport;
use crate::{Connection, SshTarget, channel};

/// One step of the check.
#[derive(Debug)]
pub struct CheckItem {
    /// What was checked ("reachable", "host key", "authentication", "free space", "write").
    pub what: &'static str,
    /// `Ok(detail)` or the problem (its message names cause and fix); `None` when skipped
    /// because an earlier step failed.
    pub outcome: Option<Result<String, Error>>,
}

/// Every step's outcome.
#[derive(Debug)]
pub struct CheckReport {
    /// The target checked.
    pub target: String,
    /// The steps, in order.
    pub items: Vec<CheckItem>,
}

impl CheckReport {
    /// Whether every step passed.
    pub fn ok(&self) -> bool {
        self.items.iter().all(|i| matches!(i.outcome, Some(Ok(_))))
    }
}

impl std::fmt::Display for CheckReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "{}", self.target)?;
        for i in &self.items {
            match &i.outcome {
                Some(Ok(d)) => writeln!(f, "  ok      {:<15} {d}", i.what)?,
                Some(Err(e)) => writeln!(f, "  PROBLEM {:<15} {e}", i.what)?,
                None => writeln!(f, "  skipped {:<15} (an earlier step failed)", i.what)?,
            }
        }
        Ok(())
    }
}

const STEPS: [&str; 5] = ["reachable", "host key", "authentication", "free space", "write"];

/// Checks the target. `needed` is the space a dump will take (an estimate), if known.
pub fn check(target: &SshTarget, needed: Option<u64>) -> CheckReport {
    let mut items: Vec<CheckItem> = STEPS.iter().map(|&what| CheckItem { what, outcome: None }).collect();
    let mut run = || -> Result<(), ()> {
        let mut step = 0;
        let mut record = |items: &mut Vec<CheckItem>, r: Result<String, Error>| {
            let failed = r.is_err();
            items[step].outcome = Some(r);
            step += 1;
            if failed { Err(()) } else { Ok(()) }
        };
        let stream = target.tcp();
        let stream = match stream {
            Ok(s) => {
                record(&mut items, Ok(format!("{}:{} answers", target.url.host, target.url.port)))?;
                s
            }
            Err(e) => return record(&mut items, Err(e)),
        };
        let mut t = match Transport::handshake(Box::new(stream), &target.url.host).and_then(|t| {
            target.verify_host_key(t.host_key())?;
            Ok(t)
        }) {
            Ok(t) => {
                record(
                    &mut items,
                    Ok(format!("{} pinned in {}", crate::fingerprint(t.host_key()), target.known_hosts_path)),
                )?;
                t
            }
            Err(e) => return record(&mut items, Err(e)),
        };
        let mut conn: Connection = match channel::authenticate(&mut t, &target.url.user, &target.key)
            .and_then(|()| target.session_after_auth(t))
        {
            Ok(c) => {
                record(&mut items, Ok(format!("{} accepted key {}", target.url.user, target.key.fingerprint())))?;
                c
            }
            Err(e) => return record(&mut items, Err(e)),
        };
        let space = conn.free_space().and_then(|s| match needed {
            Some(n) if s.available < n => Err(Error::DiskFull {
                host: target.url.host.clone(),
                op: "check free space",
                path: target.url.path.clone(),
                available: s.available,
            }),
            Some(n) => Ok(format!("{} MiB free, a dump needs about {} MiB", s.available >> 20, n.div_ceil(1 << 20))),
            None => Ok(format!("{} MiB free of {} MiB", s.available >> 20, s.total >> 20)),
        });
        // A full disk does not stop the write check: both are worth knowing.
        let _ = record(&mut items, space);
        let write = conn.probe_write().map(|()| format!("created and removed a file in {}", target.url.path));
        let _ = conn.close();
        record(&mut items, write)
    };
    let _ = run();
    CheckReport { target: target.url.to_string(), items }
}
