//! A UDP flow from a Pod to the external host's echo service, probed every 5 ms: which
//! instance carries it (the source the host sees) and the longest silence while it ran. The
//! demo's failover gap, and the e2e's check that a surviving instance's flows never stall.

use std::io::{BufRead, BufReader, Lines};
use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::Duration;

use crate::LabError;
use crate::session::ECHO_PORT;

/// `argv`: host, port, seconds. Prints `via <source>` at the first reply, then one JSON line:
/// the longest silence between two replies and the source after it.
const GAP_PROBE: &str = r#"
import socket, sys, time, json
family = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(family, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2]))); s.settimeout(0.005)
start = time.time(); last = None; gap = 0.0; first = None; after = None
while time.time() - start < float(sys.argv[3]):
    try:
        s.send(b"probe")
    except OSError:
        pass
    deadline = time.time() + 0.005
    while time.time() < deadline:
        try:
            seen = s.recv(200).split()[0].decode()
        except OSError:
            break
        now = time.time()
        if first is None:
            first = seen; print("via " + seen, flush=True)
        if last is not None and now - last > gap:
            gap = now - last; after = seen
        last = now
print(json.dumps({"gap_ms": gap * 1000, "after": after}), flush=True)
"#;

/// What a finished probe saw.
#[derive(Clone, Debug, PartialEq, serde::Deserialize)]
pub struct GapReport {
    /// The longest silence between two replies, in milliseconds.
    pub gap_ms: f64,
    /// The source the external host saw after that silence.
    pub after: Option<String>,
}

/// A running probe; dropping it stops the probe.
pub struct GapProbe {
    child: Child,
    lines: Lines<BufReader<ChildStdout>>,
    via: String,
}

impl GapProbe {
    /// Starts the probe in `netns` towards `target`'s echo service for `length`, and returns
    /// once the first reply named the source the external host sees.
    pub fn start(
        state_dir: &Path,
        netns: &str,
        target: IpAddr,
        length: Duration,
    ) -> Result<GapProbe, LabError> {
        let step = |detail: String| LabError::Step {
            step: format!("probing a UDP flow from {netns} to {target}"),
            detail,
        };
        let script = state_dir.join("gap-probe.py");
        std::fs::write(&script, GAP_PROBE).map_err(|e| step(e.to_string()))?;
        let mut child = Command::new("ip")
            .args(["netns", "exec", netns, "python3"])
            .arg(&script)
            .args([
                target.to_string(),
                ECHO_PORT.to_string(),
                length.as_secs_f64().to_string(),
            ])
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| step(e.to_string()))?;
        let Some(stdout) = child.stdout.take() else {
            let _ = child.kill();
            let _ = child.wait();
            return Err(step("no output".to_owned()));
        };
        let mut probe = GapProbe {
            child,
            lines: BufReader::new(stdout).lines(),
            via: String::new(),
        };
        let first = probe
            .lines
            .next()
            .transpose()
            .map_err(|e| step(e.to_string()))?;
        match first.as_deref().and_then(|line| line.strip_prefix("via ")) {
            Some(via) => probe.via = via.to_owned(),
            None => return Err(step(format!("no reply: {first:?}"))),
        }
        Ok(probe)
    }

    /// The source the external host saw first.
    pub fn via(&self) -> &str {
        &self.via
    }

    /// Waits for the probe's end and returns what it saw.
    pub fn finish(mut self) -> Result<GapReport, LabError> {
        let step = |detail: String| LabError::Step {
            step: "reading the UDP flow probe's report".to_owned(),
            detail,
        };
        let line = self
            .lines
            .next()
            .transpose()
            .map_err(|e| step(e.to_string()))?
            .unwrap_or_default();
        let _ = self.child.wait();
        serde_json::from_str(&line).map_err(|e| step(format!("{e}: {line:?}")))
    }
}

impl Drop for GapProbe {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}
