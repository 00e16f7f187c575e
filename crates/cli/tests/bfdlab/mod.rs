//! A two-namespace BFD lab for interop tests: FRR `bfdd` (standalone, private paths, as in the
//! BFD lab notes) in one network namespace, `veg bfdd` in the other, joined by a veth pair
//! carrying 203.0.113.0/24 and 2001:db8::/64.
//!
//! Everything is named after a per-lab id; dropping the lab stops exactly the processes it
//! started (FRR by its pid file, checked against /proc cmdline) and deletes what it created,
//! also when a test fails.
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

pub use crate::support::{run, unix_now, wait_until};
use anyhow::{Context, Result, bail, ensure};
use serde_json::Value;

pub const FRR_V4: &str = "203.0.113.1";
pub const VEG_V4: &str = "203.0.113.2";
pub const FRR_V6: &str = "2001:db8::1";
pub const VEG_V6: &str = "2001:db8::2";
pub const STRANGER_V4: &str = "203.0.113.3";
const FRR_BFDD: &str = "/usr/lib/frr/bfdd";

/// One lab at a time: timing assertions must not compete for the 2 cores.
static SERIAL: Mutex<()> = Mutex::new(());
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// Whether the lab can run here (root, FRR, nft, ip, curl).
pub fn prerequisites() -> bool {
    crate::support::require(
        "BFD interop lab",
        &[
            FRR_BFDD,
            "/usr/bin/vtysh",
            "/usr/sbin/nft",
            "/usr/sbin/ip",
            "/usr/bin/curl",
        ],
    )
}

/// Which side starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VegRole {
    /// veg waits for FRR (a gateway's bfdd).
    Passive,
    /// veg starts, FRR waits (`passive-mode`; the monitor's side).
    Active,
}

pub struct Lab {
    pub id: String,
    pub dir: PathBuf,
    ns_frr: String,
    ns_veg: String,
    veg: Option<Child>,
    role: VegRole,
    /// Deleted when the lab is dropped, after its processes are stopped.
    namespaces: Vec<veg_testkit::Netns>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Lab {
    /// Creates the namespaces and the link, and starts FRR; veg is started with
    /// [`Lab::start_veg`].
    pub fn new(role: VegRole) -> Result<Lab> {
        let serial = SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = format!(
            "vb{}{}",
            std::process::id() % 10_000,
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("{id}-bfdlab"));
        let mut lab = Lab {
            ns_frr: format!("{id}-frr"),
            ns_veg: format!("{id}-veg"),
            id,
            dir,
            veg: None,
            role,
            namespaces: Vec::new(),
            _serial: serial,
        };
        lab.create()?;
        Ok(lab)
    }

    fn create(&mut self) -> Result<()> {
        std::fs::create_dir_all(&self.dir)?;
        run("chown", &["frr:frr", &self.dir.to_string_lossy()])?;
        let (a, b) = (&self.ns_frr, &self.ns_veg);
        let (va, vb) = (format!("{}a", self.id), format!("{}b", self.id));
        self.namespaces.push(veg_testkit::Netns::add(a)?);
        self.namespaces.push(veg_testkit::Netns::add(b)?);
        run(
            "ip",
            &[
                "link", "add", &va, "netns", a, "type", "veth", "peer", "name", &vb, "netns", b,
            ],
        )?;
        for (ns, link, v4, v6) in [(a, &va, FRR_V4, FRR_V6), (b, &vb, VEG_V4, VEG_V6)] {
            run("ip", &["-n", ns, "link", "set", "lo", "up"])?;
            run(
                "ip",
                &["-n", ns, "addr", "add", &format!("{v4}/24"), "dev", link],
            )?;
            run(
                "ip",
                &[
                    "-n",
                    ns,
                    "addr",
                    "add",
                    &format!("{v6}/64"),
                    "dev",
                    link,
                    "nodad",
                ],
            )?;
            run("ip", &["-n", ns, "link", "set", link, "up"])?;
        }
        run(
            "ip",
            &[
                "-n",
                a,
                "addr",
                "add",
                &format!("{STRANGER_V4}/24"),
                "dev",
                &va,
            ],
        )?;
        self.start_frr()
    }

    // ===== FRR =====

    fn frr_config(&self) -> String {
        let passive = if self.role == VegRole::Active {
            "  passive-mode\n"
        } else {
            ""
        };
        let peer = |remote: &str, local: &str| {
            format!(
                " peer {remote} local-address {local}\n  receive-interval 100\n  transmit-interval 100\n  detect-multiplier 3\n{passive} !\n"
            )
        };
        format!(
            "hostname {id}\nlog file {dir}/frr.log debugging\nlog timestamp precision 6\ndebug bfd peer\n!\nbfd\n{v4}{v6}!\n",
            id = self.id,
            dir = self.dir.display(),
            v4 = peer(VEG_V4, FRR_V4),
            v6 = peer(VEG_V6, FRR_V6),
        )
    }

    pub fn start_frr(&self) -> Result<()> {
        let config = self.dir.join("frr.conf");
        std::fs::write(&config, self.frr_config())?;
        let dir = self.dir.to_string_lossy().into_owned();
        let status = Command::new("ip")
            .args(["netns", "exec", &self.ns_frr, FRR_BFDD, "-d"])
            .args([
                "-f",
                &config.to_string_lossy(),
                "-i",
                &format!("{dir}/frr.pid"),
            ])
            .args([
                "--vty_socket",
                &dir,
                "--bfdctl",
                &format!("{dir}/frr-bfdd.sock"),
            ])
            .args(["-z", &format!("{dir}/zserv.api"), "-P", "0"])
            .env("TZ", "UTC")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()?;
        ensure!(status.success(), "FRR bfdd did not start: {status}");
        ensure!(
            wait_until(Duration::from_secs(5), || self.frr_pid().is_some()),
            "FRR bfdd wrote no pid file"
        );
        Ok(())
    }

    fn frr_pid(&self) -> Option<u32> {
        let pid: u32 = std::fs::read_to_string(self.dir.join("frr.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()?;
        // Only ever signal a process that is ours: its command line names our directory.
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
        String::from_utf8_lossy(&cmdline)
            .contains(&*self.dir.to_string_lossy())
            .then_some(pid)
    }

    pub fn stop_frr(&self) -> Result<()> {
        if let Some(pid) = self.frr_pid() {
            run("kill", &["-TERM", &pid.to_string()])?;
            ensure!(
                wait_until(Duration::from_secs(5), || !Path::new(&format!(
                    "/proc/{pid}"
                ))
                .exists()),
                "FRR bfdd {pid} did not stop"
            );
        }
        Ok(())
    }

    pub fn vtysh(&self, commands: &[&str]) -> Result<String> {
        let mut command = Command::new("ip");
        command.args([
            "netns",
            "exec",
            &self.ns_frr,
            "vtysh",
            "--vty_socket",
            &self.dir.to_string_lossy(),
        ]);
        for line in commands {
            command.args(["-c", line]);
        }
        let output = command.output()?;
        ensure!(
            output.status.success(),
            "vtysh {commands:?}: {}",
            String::from_utf8_lossy(&output.stderr)
        );
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// FRR's view of its peers (`show bfd peers json`), by peer address.
    pub fn frr_peer(&self, peer: &str) -> Result<Value> {
        let peers: Value = serde_json::from_str(&self.vtysh(&["show bfd peers json"])?)?;
        peers
            .as_array()
            .and_then(|peers| peers.iter().find(|p| p["peer"] == peer).cloned())
            .with_context(|| format!("FRR has no peer {peer}"))
    }

    /// FRR's configuration commands for one peer (e.g. `shutdown`, `transmit-interval 300`).
    pub fn frr_configure_peer(&self, peer: &str, local: &str, lines: &[&str]) -> Result<()> {
        let header = format!("peer {peer} local-address {local}");
        let mut commands = vec!["configure terminal", "bfd", &header];
        commands.extend_from_slice(lines);
        self.vtysh(&commands).map(|_| ())
    }

    /// FRR's state changes: (unix time, peer, from, to, reason).
    pub fn frr_transitions(&self) -> Vec<(f64, String, String, String, String)> {
        let text = std::fs::read_to_string(self.dir.join("frr.log")).unwrap_or_default();
        text.lines()
            .filter(|line| line.contains("state-change:"))
            .filter_map(|line| {
                let time = parse_frr_time(line.get(..26)?)?;
                let peer = line
                    .split("peer:")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .to_owned();
                let change = line.rsplit_once("] ")?.1;
                let mut words = change.split_whitespace();
                let from = words.next()?.to_owned();
                words.next();
                let to = words.next()?.to_owned();
                let reason = change
                    .split("reason:")
                    .nth(1)
                    .unwrap_or("")
                    .trim()
                    .to_owned();
                Some((time, peer, from, to, reason))
            })
            .collect()
    }

    // ===== veg =====

    pub fn veg_socket(&self) -> PathBuf {
        self.dir.join("veg.sock")
    }

    pub fn start_veg(&mut self, extra: &[&str]) -> Result<()> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.join("veg.log"))?;
        let mut command = Command::new("ip");
        command
            .args([
                "netns",
                "exec",
                &self.ns_veg,
                env!("CARGO_BIN_EXE_veg"),
                "bfdd",
            ])
            .args([
                "--min-tx-ms",
                "100",
                "--min-rx-ms",
                "100",
                "--multiplier",
                "3",
            ])
            .args(["--control-socket", &self.veg_socket().to_string_lossy()])
            .args(["--log-format", "json"]);
        match self.role {
            VegRole::Passive => command.args(["--allow", &format!("{FRR_V4},{FRR_V6}")]),
            VegRole::Active => command.args(["--peer", &format!("{FRR_V4},{FRR_V6}")]),
        };
        command.args(extra).stdout(Stdio::null()).stderr(log);
        self.veg = Some(command.spawn()?);
        ensure!(
            wait_until(Duration::from_secs(5), || self
                .veg_request(r#"{"command":"status"}"#)
                .is_ok()),
            "veg bfdd did not open its control socket"
        );
        Ok(())
    }

    /// Stops veg with SIGTERM (it says AdminDown to its peers) and waits.
    pub fn stop_veg(&mut self) -> Result<()> {
        if let Some(mut child) = self.veg.take() {
            run("kill", &["-TERM", &child.id().to_string()])?;
            let deadline = Instant::now() + Duration::from_secs(5);
            while child.try_wait()?.is_none() {
                if Instant::now() > deadline {
                    child.kill()?;
                    bail!("veg bfdd ignored SIGTERM");
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        }
        Ok(())
    }

    pub fn veg_request(&self, request: &str) -> Result<Value> {
        let mut stream = UnixStream::connect(self.veg_socket())?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        stream.write_all(request.as_bytes())?;
        stream.write_all(b"\n")?;
        let mut line = String::new();
        BufReader::new(stream).read_line(&mut line)?;
        let response: Value = serde_json::from_str(&line)?;
        ensure!(response["ok"] == true, "veg refused {request}: {response}");
        Ok(response)
    }

    /// veg's session with `peer`.
    pub fn veg_session(&self, peer: &str) -> Result<Value> {
        let status = self.veg_request(r#"{"command":"status"}"#)?;
        status["sessions"]
            .as_array()
            .and_then(|sessions| sessions.iter().find(|s| s["peer"] == peer).cloned())
            .with_context(|| format!("veg has no session with {peer}"))
    }

    pub fn veg_dropped(&self, reason: &str) -> u64 {
        self.veg_request(r#"{"command":"status"}"#)
            .ok()
            .and_then(|status| status["dropped"][reason].as_u64())
            .unwrap_or(0)
    }

    /// veg's state changes: (unix time, peer, old, new, diag).
    pub fn veg_transitions(&self) -> Vec<(f64, String, String, String, String)> {
        let text = std::fs::read_to_string(self.dir.join("veg.log")).unwrap_or_default();
        text.lines()
            .filter_map(|line| serde_json::from_str::<Value>(line).ok())
            .filter(|event| event["message"] == "bfd session state changed")
            .filter_map(|event| {
                Some((
                    parse_rfc3339(event["timestamp"].as_str()?)?,
                    event["peer"].as_str()?.to_owned(),
                    event["old_state"].as_str()?.to_owned(),
                    event["new_state"].as_str()?.to_owned(),
                    event["diag"].as_str()?.to_owned(),
                ))
            })
            .collect()
    }

    /// `curl` in veg's namespace.
    pub fn veg_http(&self, address: &str, path: &str) -> Result<String> {
        let output = Command::new("ip")
            .args([
                "netns",
                "exec",
                &self.ns_veg,
                "curl",
                "-s",
                "--max-time",
                "3",
            ])
            .arg(format!("http://{address}{path}"))
            .output()?;
        ensure!(output.status.success(), "curl {path}: {}", output.status);
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    // ===== the link =====

    /// Drops BFD in both directions inside veg's namespace; returns the unix time just before.
    /// Cuts BFD between the two sides and returns when the cut took effect, as bounds: just
    /// before the rules were handed to an `nft` already running in veg's namespace, and just
    /// after it listed them back. Starting `nft` at the moment of the cut would put a process
    /// start, slow on a loaded machine, inside the measured time.
    pub fn cut(&self) -> Result<(f64, f64)> {
        let mut nft = Command::new("ip")
            .args(["netns", "exec", &self.ns_veg, "nft", "-i"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()?;
        struct Reap(Child);
        impl Drop for Reap {
            fn drop(&mut self) {
                let _ = self.0.kill();
                let _ = self.0.wait();
            }
        }
        let mut stdin = nft.stdin.take().context("stdin")?;
        let mut stdout = BufReader::new(nft.stdout.take().context("stdout")?);
        let nft = Reap(nft);
        // Running and answering before the clock starts.
        writeln!(stdin, "add table inet vegready")?;
        writeln!(stdin, "list table inet vegready")?;
        read_through(&mut stdout, "table inet vegready")?;
        let before = unix_now();
        writeln!(
            stdin,
            "add table inet vegcut {{ chain in {{ type filter hook input priority 0; udp dport 3784 drop; }}; chain out {{ type filter hook output priority 0; udp dport 3784 drop; }}; }}"
        )?;
        writeln!(stdin, "list table inet vegcut")?;
        read_through(&mut stdout, "table inet vegcut")?;
        let after = unix_now();
        writeln!(stdin, "delete table inet vegready")?;
        drop(stdin);
        let mut nft = nft;
        ensure!(nft.0.wait()?.success(), "nft -i failed");
        Ok((before, after))
    }

    pub fn uncut(&self) -> Result<()> {
        run(
            "ip",
            &[
                "netns",
                "exec",
                &self.ns_veg,
                "nft",
                "delete",
                "table",
                "inet",
                "vegcut",
            ],
        )
    }

    /// Makes FRR's packets arrive with TTL / hop limit 254, as from a peer one routed hop away.
    pub fn frr_ttl_254(&self) -> Result<()> {
        let rules = "table inet vegttl {\n chain out { type filter hook output priority 0; udp dport 3784 ip ttl set 254; udp dport 3784 ip6 hoplimit set 254; }\n}\n";
        self.nft(&self.ns_frr, rules)
    }

    fn nft(&self, ns: &str, rules: &str) -> Result<()> {
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "-f", "-"])
            .stdin(Stdio::piped())
            .spawn()?;
        child
            .stdin
            .take()
            .context("stdin")?
            .write_all(rules.as_bytes())?;
        ensure!(child.wait()?.success(), "nft failed");
        Ok(())
    }

    /// Sends a well-formed BFD Down packet to veg from an address of FRR's namespace that no
    /// session knows.
    pub fn send_from_stranger(&self) -> Result<()> {
        let packet = veg_bfd::ControlPacket::new(veg_bfd::State::Down, 4242, 0);
        let hex: String = packet
            .encode()
            .iter()
            .map(|b| format!("\\x{b:02x}"))
            .collect();
        // python3 is part of the base image; it sends with TTL 255 from the stranger address.
        let script = format!(
            "import socket; s=socket.socket(socket.AF_INET, socket.SOCK_DGRAM); \
             s.setsockopt(socket.IPPROTO_IP, socket.IP_TTL, 255); s.bind(('{STRANGER_V4}', 49999)); \
             s.sendto(b'{hex}', ('{VEG_V4}', 3784))"
        );
        run(
            "ip",
            &["netns", "exec", &self.ns_frr, "python3", "-c", &script],
        )
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if let Some(mut child) = self.veg.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        let _ = self.stop_frr();
        if std::env::var_os("VEG_KEEP_LAB").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

// ===== helpers =====

/// `2026/11/27 02:20:49.527922` (FRR, TZ=UTC).
fn parse_frr_time(text: &str) -> Option<f64> {
    let (date, time) = text.split_once(' ')?;
    let mut date = date.split('/').map(|part| part.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    unix_time(year, month, day, time)
}

/// `2026-11-27T06:22:40.146236Z` (tracing-subscriber).
fn parse_rfc3339(text: &str) -> Option<f64> {
    let (date, time) = text.trim_end_matches('Z').split_once('T')?;
    let mut date = date.split('-').map(|part| part.parse::<i64>().ok());
    let (year, month, day) = (date.next()??, date.next()??, date.next()??);
    unix_time(year, month, day, time)
}

fn unix_time(year: i64, month: i64, day: i64, time: &str) -> Option<f64> {
    let mut parts = time.split(':');
    let hours: f64 = parts.next()?.parse().ok()?;
    let minutes: f64 = parts.next()?.parse().ok()?;
    let seconds: f64 = parts.next()?.parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days as f64 * 86_400.0 + hours * 3600.0 + minutes * 60.0 + seconds)
}

#[test]
fn timestamps_parse() {
    assert_eq!(parse_rfc3339("1970-01-02T00:00:01.5Z"), Some(86_401.5));
    assert_eq!(
        parse_frr_time("2026/11/27 02:20:49.527922").map(|t| t.floor()),
        Some(1_795_746_049.0)
    );
}

/// Reads `nft -i` output until the listing that starts with `header` has closed.
fn read_through(stdout: &mut impl BufRead, header: &str) -> Result<()> {
    let mut seen = false;
    let mut line = String::new();
    loop {
        line.clear();
        ensure!(
            stdout.read_line(&mut line)? > 0,
            "nft -i ended before listing {header}"
        );
        if line.trim_start().starts_with(header) {
            seen = true;
        } else if seen && line.trim_end() == "}" {
            return Ok(());
        }
    }
}
