//! QEMU's monitor during a run: when the guest prints a marker on its console, the host
//! runs monitor commands (e.g. `dump-guest-memory`) through QMP, then tells the guest it
//! may go on by writing to the guest's second serial port (`/dev/ttyS1`).
//!
//! Guest side, in a scenario script:
//!
//! ```sh
//! exec 3</dev/ttyS1              # open before the marker: the reply cannot be missed
//! echo take-the-dump             # the marker the step waits for
//! read -r reply <&3              # blocks until the host has run the commands
//! ```

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::{LabError, io_err};

/// One step: when the console shows `when_console_shows`, run `commands` (HMP command
/// lines, through QMP's `human-monitor-command`), then write `reply` to `/dev/ttyS1`.
/// `{run}` in a command is replaced by the run directory (where the dumps should go:
/// [`crate::Outcome::run_dir`]).
#[derive(Debug, Clone)]
pub struct MonitorStep {
    /// Console text that starts the step (searched after the previous step's marker).
    pub when_console_shows: String,
    /// HMP command lines, run in order; any output is taken as an error (the commands a
    /// lab needs, like `dump-guest-memory`, print nothing when they succeed).
    pub commands: Vec<String>,
    /// Written to the guest's `/dev/ttyS1` once the commands are done (e.g. `"done\n"`).
    pub reply: String,
}

impl MonitorStep {
    /// A step that runs `commands` when the console shows `marker`, then replies `done`.
    pub fn new(marker: &str, commands: &[&str]) -> Self {
        Self {
            when_console_shows: marker.to_string(),
            commands: commands.iter().map(|c| c.to_string()).collect(),
            reply: "done\n".to_string(),
        }
    }
}

/// Longest unix socket path (`sun_path` is 108 bytes with its NUL).
const MAX_SOCKET_PATH: usize = 107;

/// How long one monitor command may take (a compressed dump of a big guest under TCG).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(600);

/// The monitor side of one run.
pub(crate) struct Session {
    steps: Vec<MonitorStep>,
    run_dir: PathBuf,
    qmp_path: PathBuf,
    signal_path: PathBuf,
    /// Steps done so far.
    done: usize,
    /// Console offset after the last step's marker.
    searched_from: usize,
    qmp: Option<BufReader<UnixStream>>,
    /// Kept open for the whole run: QEMU might drop bytes of a client that hung up
    /// before the guest's UART took them.
    serial: Option<UnixStream>,
    log: String,
}

impl Session {
    pub(crate) fn new(steps: &[MonitorStep], run_dir: &Path) -> Result<Self, LabError> {
        let qmp_path = run_dir.join("qmp.sock");
        let signal_path = run_dir.join("ttyS1.sock");
        if !steps.is_empty() && signal_path.as_os_str().len().max(qmp_path.as_os_str().len()) > MAX_SOCKET_PATH {
            return Err(LabError::Setup(format!(
                "the monitor sockets' path {} is longer than a unix socket allows ({MAX_SOCKET_PATH} bytes): \
                 use a shorter scenario name or KDUMP_LAB_CACHE/target directory",
                qmp_path.display()
            )));
        }
        Ok(Self {
            steps: steps.to_vec(),
            run_dir: run_dir.to_path_buf(),
            qmp_path,
            signal_path,
            done: 0,
            searched_from: 0,
            qmp: None,
            serial: None,
            log: String::new(),
        })
    }

    /// QEMU arguments: a QMP socket and the guest's second serial port, both unix
    /// sockets QEMU listens on (`wait=off`: the guest boots before the host connects).
    pub(crate) fn qemu_args(&self) -> Vec<String> {
        if self.steps.is_empty() {
            return Vec::new();
        }
        vec![
            "-qmp".into(),
            format!("unix:{},server=on,wait=off", self.qmp_path.display()),
            "-serial".into(),
            format!("unix:{},server=on,wait=off", self.signal_path.display()),
        ]
    }

    /// Runs the next step if the console log at `console_path` now shows its marker.
    pub(crate) fn poll(&mut self, console_path: &Path) -> Result<(), LabError> {
        if self.done == self.steps.len() {
            return Ok(());
        }
        let console = std::fs::read(console_path).unwrap_or_default();
        self.poll_text(&console)
    }

    fn poll_text(&mut self, console: &[u8]) -> Result<(), LabError> {
        let Some(step) = self.steps.get(self.done).cloned() else { return Ok(()) };
        let marker = step.when_console_shows.as_bytes();
        let rest = console.get(self.searched_from..).unwrap_or_default();
        let Some(at) = rest.windows(marker.len().max(1)).position(|w| w == marker) else {
            return Ok(());
        };
        self.searched_from += at + step.when_console_shows.len();
        for command in &step.commands {
            let command = command.replace("{run}", &self.run_dir.display().to_string());
            let output = self.hmp(&command)?;
            self.log.push_str(&format!("(qemu) {command}\n{output}"));
            if !output.trim().is_empty() {
                return Err(LabError::Setup(format!("QEMU monitor command `{command}` failed: {}", output.trim())));
            }
        }
        if self.serial.is_none() {
            self.serial = Some(UnixStream::connect(&self.signal_path).map_err(io_err(&self.signal_path))?);
        }
        if let Some(serial) = self.serial.as_mut() {
            serial.write_all(step.reply.as_bytes()).map_err(io_err(&self.signal_path))?;
        }
        self.done += 1;
        Ok(())
    }

    /// Markers of the steps that never ran (empty when all did).
    pub(crate) fn not_run(&self) -> Vec<String> {
        self.steps[self.done..].iter().map(|s| s.when_console_shows.clone()).collect()
    }

    /// What the monitor was asked and answered, for `monitor.log` in the run directory.
    pub(crate) fn transcript(&self) -> &str {
        &self.log
    }

    fn connect(&mut self) -> Result<&mut BufReader<UnixStream>, LabError> {
        if self.qmp.is_none() {
            let stream = UnixStream::connect(&self.qmp_path).map_err(io_err(&self.qmp_path))?;
            stream.set_read_timeout(Some(COMMAND_TIMEOUT)).map_err(io_err(&self.qmp_path))?;
            let mut qmp = BufReader::new(stream);
            read_reply(&mut qmp, "QMP")?; // the greeting
            send(&mut qmp, &serde_json::json!({ "execute": "qmp_capabilities" }))?;
            read_reply(&mut qmp, "return")?;
            self.qmp = Some(qmp);
        }
        self.qmp.as_mut().ok_or_else(|| LabError::Setup("QMP connection lost".into()))
    }

    /// Runs one HMP command line and returns what it printed.
    fn hmp(&mut self, command: &str) -> Result<String, LabError> {
        let qmp = self.connect()?;
        send(
            qmp,
            &serde_json::json!({ "execute": "human-monitor-command", "arguments": { "command-line": command } }),
        )?;
        let reply = read_reply(qmp, "return")?;
        Ok(reply["return"].as_str().unwrap_or_default().to_string())
    }
}

fn send(qmp: &mut BufReader<UnixStream>, message: &serde_json::Value) -> Result<(), LabError> {
    let mut line = message.to_string();
    line.push('\n');
    qmp.get_mut().write_all(line.as_bytes()).map_err(|e| LabError::Setup(format!("QMP write failed: {e}")))
}

/// Reads QMP messages until one has `key`, skipping events; a QMP `error` is an error.
fn read_reply(qmp: &mut BufReader<UnixStream>, key: &str) -> Result<serde_json::Value, LabError> {
    loop {
        let mut line = String::new();
        let n = qmp.read_line(&mut line).map_err(|e| LabError::Setup(format!("QMP read failed: {e}")))?;
        if n == 0 {
            return Err(LabError::Setup("QEMU closed the QMP socket".into()));
        }
        let message: serde_json::Value =
            serde_json::from_str(&line).map_err(|e| LabError::Setup(format!("QMP sent {line:?}: {e}")))?;
        if let Some(error) = message.get("error") {
            return Err(LabError::Setup(format!("QMP error: {error}")));
        }
        if message.get(key).is_some() {
            return Ok(message);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_fire_in_order_on_their_markers() {
        let dir = std::env::temp_dir().join(format!("kdump-lab-monitor-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let listener = std::os::unix::net::UnixListener::bind(dir.join("ttyS1.sock")).unwrap();
        // Steps without commands need no QMP: only the reply is written.
        let steps = vec![
            MonitorStep { when_console_shows: "first".into(), commands: vec![], reply: "one\n".into() },
            MonitorStep { when_console_shows: "second".into(), commands: vec![], reply: "two\n".into() },
        ];
        let mut s = Session::new(&steps, &dir).unwrap();
        assert_eq!(s.qemu_args().len(), 4);
        s.poll_text(b"boot... second").unwrap();
        assert_eq!(s.not_run().len(), 2, "the second marker before the first does not count");
        s.poll_text(b"boot... second first").unwrap();
        let (mut guest, _) = listener.accept().unwrap();
        assert_eq!(s.not_run(), vec!["second".to_string()]);
        s.poll_text(b"boot... second first").unwrap();
        assert_eq!(s.not_run().len(), 1, "a marker is looked for after the previous one");
        s.poll_text(b"boot... second first then second").unwrap();
        assert!(s.not_run().is_empty());
        let mut got = [0u8; 8];
        std::io::Read::read_exact(&mut guest, &mut got).unwrap();
        assert_eq!(&got, b"one\ntwo\n");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
