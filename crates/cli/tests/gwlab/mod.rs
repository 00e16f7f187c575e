//! A five-namespace lab for the gateway agent:
//!
//! ```text
//!  pod 198.19.0.10 ─┐                                   ┌ net1 198.51.100.11 ── ext 198.51.100.1
//!  2001:db8:19::10  ├─ rtr (the VPC router: default ── gw                        2001:db8:100::1
//!  fwd 198.20.0.10 ─┘   via the gateway) ── eth0 198.18.0.12         (echo service; return routes
//!  2001:db8:20::10        198.18.0.1          2001:db8:18::12         to the forward-only sources)
//! ```
//!
//! `pod` is a SNAT source, `fwd` a forward-only source. The gateway starts as a Pod would: its
//! default route via the VPC router. The agent runs as `nobody` with only CAP_NET_ADMIN and
//! CAP_NET_RAW (`setpriv`). Everything is named after a per-lab id; dropping the lab stops the
//! processes it started (by pid) and deletes the namespaces and the temp dir, also on failure.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use serde_json::Value;

use crate::support::{run, wait_until};

pub const GW_EXTERNAL_V4: &str = "198.51.100.11";
pub const GW_EXTERNAL_V6: &str = "2001:db8:100::11";
pub const EXT_V4: &str = "198.51.100.1";
pub const EXT_V6: &str = "2001:db8:100::1";
pub const POD_V4: &str = "198.19.0.10";
pub const POD_V6: &str = "2001:db8:19::10";
pub const FWD_V4: &str = "198.20.0.10";
pub const FWD_V6: &str = "2001:db8:20::10";
pub const ECHO_PORT: &str = "7777";

/// The agent's inputs for this topology (both families, SNAT for `pod`, forward-only `fwd`).
pub const AGENT_ARGS: &[&str] = &[
    "--internal-gateway",
    "198.18.0.1,2001:db8:18::1",
    "--external-gateway",
    "198.51.100.1,2001:db8:100::1",
    "--source",
    "198.19.0.0/24,198.20.0.0/24,2001:db8:19::/64,2001:db8:20::/64",
    "--forward-only",
    "198.20.0.0/24,2001:db8:20::/64",
    "--bfd-peer",
    "198.18.0.1",
];

/// Only CAP_NET_ADMIN and CAP_NET_RAW, as user and group `nobody`.
const UNPRIVILEGED: &[&str] = &[
    "setpriv",
    "--reuid=65534",
    "--regid=65534",
    "--clear-groups",
    "--inh-caps=-all,+net_admin,+net_raw",
    "--ambient-caps=-all,+net_admin,+net_raw",
    "--bounding-set=-all,+net_admin,+net_raw",
];

/// `AGENT_ARGS` with some flags' values replaced (or added).
pub fn agent_args(overrides: &[(&str, &str)]) -> Vec<String> {
    let mut args: Vec<String> = Vec::new();
    for pair in AGENT_ARGS.chunks(2) {
        let value = overrides
            .iter()
            .find(|(flag, _)| *flag == pair[0])
            .map_or(pair[1], |(_, value)| *value);
        args.extend([pair[0].to_owned(), value.to_owned()]);
    }
    for (flag, value) in overrides {
        if !AGENT_ARGS.contains(flag) {
            args.extend([(*flag).to_owned(), (*value).to_owned()]);
        }
    }
    args
}

static SERIAL: Mutex<()> = Mutex::new(());
static NEXT_LAB: AtomicU32 = AtomicU32::new(0);

/// Whether the lab can run here.
pub fn prerequisites() -> bool {
    crate::support::require(
        "gateway lab",
        &[
            "/usr/sbin/ip",
            "/usr/sbin/nft",
            "/usr/bin/python3",
            "/usr/bin/setpriv",
            "/usr/bin/curl",
        ],
    )
}

pub struct Lab {
    pub id: String,
    pub dir: PathBuf,
    veg: PathBuf,
    /// Deleted when the lab is dropped, after its processes are stopped.
    namespaces: Vec<veg_testkit::Netns>,
    children: Vec<Child>,
    _serial: std::sync::MutexGuard<'static, ()>,
}

impl Lab {
    /// Builds the topology and starts the echo service.
    pub fn new() -> Result<Lab> {
        let serial = SERIAL
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let id = format!(
            "vg{}{}",
            std::process::id() % 1000,
            NEXT_LAB.fetch_add(1, Ordering::Relaxed)
        );
        let dir = std::env::temp_dir().join(format!("{id}-gwlab"));
        let mut lab = Lab {
            id,
            veg: dir.join("veg"),
            dir,
            namespaces: Vec::new(),
            children: Vec::new(),
            _serial: serial,
        };
        // The agent runs as nobody: it must be able to reach its binary and the sockets.
        std::fs::create_dir_all(&lab.dir)?;
        std::fs::set_permissions(&lab.dir, std::fs::Permissions::from_mode(0o755))?;
        std::fs::copy(env!("CARGO_BIN_EXE_veg"), &lab.veg)?;
        std::fs::set_permissions(&lab.veg, std::fs::Permissions::from_mode(0o755))?;
        veg_testkit::probe::write_scripts(&lab.dir)?;
        let run_dir = lab.dir.join("run");
        std::fs::create_dir_all(&run_dir)?;
        std::fs::set_permissions(&run_dir, std::fs::Permissions::from_mode(0o777))?;
        lab.build().context("building the topology")?;
        lab.start_echo()?;
        Ok(lab)
    }

    pub fn ns(&self, role: &str) -> String {
        format!("{}{role}", self.id)
    }

    fn build(&mut self) -> Result<()> {
        for role in ["pod", "fwd", "rtr", "gw", "ext"] {
            let ns = self.ns(role);
            self.namespaces.push(veg_testkit::Netns::add(&ns)?);
            run("ip", &["-n", &ns, "link", "set", "lo", "up"])?;
            // No duplicate address detection: a tentative link-local address delays the
            // first Neighbor Solicitations by a second on every hop.
            for key in ["default", "all"] {
                let sysctl = format!("net.ipv6.conf.{key}.accept_dad=0");
                run("ip", &["netns", "exec", &ns, "sysctl", "-qw", &sysctl])?;
            }
        }
        let (rtr, gw, ext) = (self.ns("rtr"), self.ns("gw"), self.ns("ext"));
        let id = self.id.clone();
        let links = [
            ("pod", "eth0", "rtr", format!("{id}p")),
            ("fwd", "eth0", "rtr", format!("{id}f")),
            ("gw", "eth0", "rtr", format!("{id}g")),
            ("gw", "net1", "ext", "eth0".to_owned()),
        ];
        for (a, a_name, b, b_name) in &links {
            run(
                "ip",
                &[
                    "link",
                    "add",
                    a_name,
                    "netns",
                    &self.ns(a),
                    "type",
                    "veth",
                    "peer",
                    "name",
                    b_name,
                    "netns",
                    &self.ns(b),
                ],
            )?;
        }
        let addresses = [
            (
                "pod",
                "eth0".to_owned(),
                ["198.19.0.10/24", "2001:db8:19::10/64"],
            ),
            (
                "fwd",
                "eth0".to_owned(),
                ["198.20.0.10/24", "2001:db8:20::10/64"],
            ),
            (
                "rtr",
                format!("{id}p"),
                ["198.19.0.1/24", "2001:db8:19::1/64"],
            ),
            (
                "rtr",
                format!("{id}f"),
                ["198.20.0.1/24", "2001:db8:20::1/64"],
            ),
            (
                "rtr",
                format!("{id}g"),
                ["198.18.0.1/24", "2001:db8:18::1/64"],
            ),
            (
                "gw",
                "eth0".to_owned(),
                ["198.18.0.12/24", "2001:db8:18::12/64"],
            ),
            (
                "gw",
                "net1".to_owned(),
                ["198.51.100.11/24", "2001:db8:100::11/64"],
            ),
            (
                "ext",
                "eth0".to_owned(),
                ["198.51.100.1/24", "2001:db8:100::1/64"],
            ),
        ];
        for (role, device, [v4, v6]) in &addresses {
            let ns = self.ns(role);
            run("ip", &["-n", &ns, "addr", "add", v4, "dev", device])?;
            run(
                "ip",
                &["-n", &ns, "addr", "add", v6, "dev", device, "nodad"],
            )?;
            run("ip", &["-n", &ns, "link", "set", device, "up"])?;
        }
        let routes: [(&str, &[&str]); 10] = [
            ("pod", &["route", "add", "default", "via", "198.19.0.1"]),
            (
                "pod",
                &["-6", "route", "add", "default", "via", "2001:db8:19::1"],
            ),
            ("fwd", &["route", "add", "default", "via", "198.20.0.1"]),
            (
                "fwd",
                &["-6", "route", "add", "default", "via", "2001:db8:20::1"],
            ),
            // What the OVN reroute policy does: everything else to the gateway.
            ("rtr", &["route", "add", "default", "via", "198.18.0.12"]),
            (
                "rtr",
                &["-6", "route", "add", "default", "via", "2001:db8:18::12"],
            ),
            // A Pod's own default route, which the agent replaces.
            ("gw", &["route", "add", "default", "via", "198.18.0.1"]),
            (
                "gw",
                &["-6", "route", "add", "default", "via", "2001:db8:18::1"],
            ),
            // The external host routes the forward-only sources back to the gateway.
            (
                "ext",
                &["route", "add", "198.20.0.0/24", "via", GW_EXTERNAL_V4],
            ),
            (
                "ext",
                &[
                    "-6",
                    "route",
                    "add",
                    "2001:db8:20::/64",
                    "via",
                    GW_EXTERNAL_V6,
                ],
            ),
        ];
        for (role, args) in routes {
            let ns = self.ns(role);
            let mut full = vec!["-n", ns.as_str()];
            full.extend_from_slice(args);
            run("ip", &full)?;
        }
        for sysctl in ["net.ipv4.ip_forward=1", "net.ipv6.conf.all.forwarding=1"] {
            run("ip", &["netns", "exec", &rtr, "sysctl", "-qw", sysctl])?;
        }
        let _ = (gw, ext);
        Ok(())
    }

    fn start_echo(&mut self) -> Result<()> {
        let log = self.dir.join("echo.log");
        let script = self.dir.join("echo.py");
        self.spawn_logged(
            "ext",
            false,
            &["python3", &script.to_string_lossy(), ECHO_PORT, "tagged"],
            &log,
        )?;
        ensure!(
            wait_until(Duration::from_secs(5), || std::fs::read_to_string(&log)
                .is_ok_and(|text| text.contains("ready"))),
            "the echo service did not start: {}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        Ok(())
    }

    fn command<S: AsRef<std::ffi::OsStr>>(
        &self,
        role: &str,
        unprivileged: bool,
        args: &[S],
    ) -> Command {
        let mut command = Command::new("ip");
        command.args(["netns", "exec", &self.ns(role)]);
        if unprivileged {
            command.args(UNPRIVILEGED);
        }
        command.args(args);
        command
    }

    /// Starts a long-running process in a namespace, output to `log`; returns its pid.
    pub fn spawn_logged<S: AsRef<std::ffi::OsStr>>(
        &mut self,
        role: &str,
        unprivileged: bool,
        args: &[S],
        log: &std::path::Path,
    ) -> Result<u32> {
        let file = std::fs::File::create(log)?;
        let child = self
            .command(role, unprivileged, args)
            .stdin(Stdio::null())
            .stdout(file.try_clone()?)
            .stderr(file)
            .spawn()?;
        let pid = child.id();
        self.children.push(child);
        Ok(pid)
    }

    /// Stops one process started by the lab.
    pub fn stop(&mut self, pid: u32) -> Result<()> {
        if let Some(position) = self.children.iter().position(|c| c.id() == pid) {
            let mut child = self.children.remove(position);
            let _ = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status();
            let stopped = wait_until(Duration::from_secs(5), || {
                child.try_wait().ok().flatten().is_some()
            });
            if !stopped {
                let _ = child.kill();
            }
            let _ = child.wait();
            ensure!(stopped, "process {pid} ignored SIGTERM");
        }
        Ok(())
    }

    /// `veg ARGS` in the gateway namespace (unprivileged or as root).
    pub fn veg(&self, unprivileged: bool, args: &[&str]) -> Result<Output> {
        let veg = self.veg.to_string_lossy().into_owned();
        let mut full = vec![veg.as_str()];
        full.extend_from_slice(args);
        Ok(self.command("gw", unprivileged, &full).output()?)
    }

    /// `veg gateway init` with `AGENT_ARGS` under `wrapper` (e.g. a `setpriv` giving the
    /// process what a container runtime would).
    pub fn init_under(&self, wrapper: &[&str]) -> Result<Output> {
        let veg = self.veg.to_string_lossy().into_owned();
        let mut full: Vec<&str> = wrapper.to_vec();
        full.extend([veg.as_str(), "gateway", "init"]);
        full.extend(AGENT_ARGS);
        Ok(self.command("gw", false, &full).output()?)
    }

    /// `veg gateway init` as the unprivileged agent with `agent_args(overrides)`.
    pub fn init(&self, overrides: &[(&str, &str)]) -> Result<Output> {
        let mut args = vec!["gateway".to_owned(), "init".to_owned()];
        args.extend(agent_args(overrides));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        self.veg(true, &args)
    }

    /// Whether `veg gateway show` with `AGENT_ARGS` reports the kernel in sync.
    pub fn in_sync(&self) -> bool {
        let mut args = vec!["gateway", "show"];
        args.extend_from_slice(AGENT_ARGS);
        self.veg(false, &args).is_ok_and(|output| {
            String::from_utf8_lossy(&output.stdout).contains("# in sync with the plan")
        })
    }

    /// A request from `role` to the echo service at `host`; the source it saw.
    pub fn ask(&self, role: &str, proto: &str, host: &str) -> Result<String> {
        let script = self.dir.join("ask.py");
        let output = self
            .command(
                role,
                false,
                &["python3", &script.to_string_lossy(), proto, host, ECHO_PORT],
            )
            .output()?;
        ensure!(
            output.status.success(),
            "{proto} from {role} to {host}: {}",
            String::from_utf8_lossy(&output.stderr).trim()
        );
        let text = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        text.strip_prefix(&format!("{proto} "))
            .map(str::to_owned)
            .with_context(|| format!("unexpected answer {text:?}"))
    }

    /// Everything the agent owns or touches, for before/after comparisons.
    pub fn snapshot(&self) -> Result<String> {
        let gw = self.ns("gw");
        let mut text = String::new();
        for args in [
            vec!["-n", gw.as_str(), "-4", "rule"],
            vec!["-n", gw.as_str(), "-6", "rule"],
            vec!["-n", gw.as_str(), "-4", "route", "show", "table", "all"],
            vec!["-n", gw.as_str(), "-6", "route", "show", "table", "all"],
        ] {
            let output = Command::new("ip").args(&args).output()?;
            text.push_str(&String::from_utf8_lossy(&output.stdout));
        }
        let output = self
            .command("gw", false, &["nft", "list", "ruleset"])
            .output()?;
        text.push_str(&String::from_utf8_lossy(&output.stdout));
        for key in [
            "net.ipv4.ip_forward",
            "net.ipv6.conf.all.forwarding",
            "net.ipv4.conf.all.rp_filter",
            "net.ipv4.conf.eth0.rp_filter",
        ] {
            let output = self.command("gw", false, &["sysctl", key]).output()?;
            text.push_str(&String::from_utf8_lossy(&output.stdout));
        }
        Ok(text)
    }

    /// Runs `ip ARGS` in a namespace.
    pub fn ip(&self, role: &str, args: &[&str]) -> Result<()> {
        let ns = self.ns(role);
        let mut full = vec!["-n", ns.as_str()];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs a command in a namespace as root.
    pub fn exec(&self, role: &str, args: &[&str]) -> Result<()> {
        let output = self.command(role, false, args).output()?;
        ensure!(
            output.status.success(),
            "{}: {}",
            args.join(" "),
            String::from_utf8_lossy(&output.stderr).trim()
        );
        Ok(())
    }

    /// GET `path` on an HTTP listener inside the gateway namespace.
    pub fn http_get(&self, address: &str, path: &str) -> Result<String> {
        let url = format!("http://{address}{path}");
        let output = self
            .command("gw", false, &["curl", "-sf", "--max-time", "2", &url])
            .output()?;
        ensure!(output.status.success(), "GET {url} failed");
        Ok(String::from_utf8_lossy(&output.stdout).into_owned())
    }

    /// One JSON request on a `veg bfdd` control socket.
    pub fn bfd_request(&self, socket: &std::path::Path, request: &str) -> Result<Value> {
        let mut stream = UnixStream::connect(socket)?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(request.as_bytes())?;
        stream.write_all(b"\n")?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(serde_json::from_str(answer.lines().next().unwrap_or(""))?)
    }

    /// The (state, diag) of the only session of a `veg bfdd`.
    pub fn bfd_session(&self, socket: &std::path::Path) -> Option<(String, String)> {
        let status = self.bfd_request(socket, r#"{"command":"status"}"#).ok()?;
        let session = status["sessions"].as_array()?.first()?.clone();
        Some((
            session["state"].as_str()?.to_owned(),
            session["diag"].as_str()?.to_owned(),
        ))
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = Command::new("kill")
                .args(["-TERM", &child.id().to_string()])
                .status();
        }
        for child in &mut self.children {
            let stopped = wait_until(Duration::from_secs(3), || {
                child.try_wait().ok().flatten().is_some()
            });
            if !stopped {
                let _ = child.kill();
                let _ = child.wait();
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
