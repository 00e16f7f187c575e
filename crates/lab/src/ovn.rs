//! A real single-host OVN under one state directory (`ovn-lab.md` in the shared reference has
//! the traps): NB and SB databases with `ovn-northd`; a chassis made of an OVS `ovsdb-server`,
//! `ovs-vswitchd` running inside the lab's host namespace (so its taps never appear in the root
//! namespace), `br-int` with the netdev datapath, and `ovn-controller` (given its run
//! directory through `OVN_RUNDIR`: 23.03 has no `--unixctl`). Nothing uses the system's
//! `/var/run/openvswitch` or services.
//!
//! Every daemon is started with a pidfile under the state directory and stopped by that pid
//! after checking its command line names the directory; `stop` works from the directory alone,
//! so a crashed lab can be cleaned up.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use tracing::{info, warn};

pub use crate::chassis::Chassis;
use crate::chassis::{NODE_DAEMONS, UNDERLAY_MTU, start_daemon, underlay_address};
use crate::command::{ip, run};
use crate::error::LabError;
use crate::install::OvnInstall;

/// Where and how the lab runs.
#[derive(Clone, Debug)]
pub struct OvnConfig {
    /// The private state directory (created; removed by `stop`).
    pub state_dir: PathBuf,
    /// Prefix of every network namespace the lab creates.
    pub prefix: String,
    /// The chassis, one per node (`system-id`s; at least one). With more than one, each runs in
    /// its own namespace with its own OVS, joined to the others by Geneve over an underlay.
    pub chassis: Vec<String>,
    /// The OVN build to run.
    pub install: OvnInstall,
}

/// The daemons, in start order (stopped in reverse).
const DAEMONS: [(&str, &str); 6] = [
    ("nb", "ovsdb-server"),
    ("sb", "ovsdb-server"),
    ("northd", "ovn-northd"),
    ("ovs", "ovsdb-server"),
    ("vswitchd", "ovs-vswitchd"),
    ("controller", "ovn-controller"),
];

/// The file listing the namespaces the lab created.
const NAMESPACES: &str = "namespaces";

/// What the lab needs of the OVN build, with the Debian package of each.
const OVN_PROGRAMS: [(&str, &str); 8] = [
    ("ovsdb-server", "openvswitch-common"),
    ("ovsdb-tool", "openvswitch-common"),
    ("ovs-vsctl", "openvswitch-common"),
    ("ovs-vswitchd", "openvswitch-switch"),
    ("ovn-northd", "ovn-central"),
    ("ovn-nbctl", "ovn-central"),
    ("ovn-sbctl", "ovn-central"),
    ("ovn-controller", "ovn-host"),
];

/// What else the lab needs.
const PROGRAMS: [(&str, &str); 3] = [
    ("ip", "iproute2"),
    ("ethtool", "ethtool"),
    ("python3", "python3"),
];

/// A running OVN.
#[derive(Debug)]
pub struct Ovn {
    dir: PathBuf,
    prefix: String,
    host: String,
    chassis: Vec<Chassis>,
    install: OvnInstall,
    stopped: bool,
}

fn find(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|path| std::env::split_paths(&path).any(|dir| dir.join(program).is_file()))
        || ["/usr/sbin", "/sbin"]
            .iter()
            .any(|dir| Path::new(dir).join(program).is_file())
}

/// Refuses cleanly when the lab cannot run here with `install`.
pub fn check_prerequisites(install: &OvnInstall) -> Result<(), LabError> {
    let uid = std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix("Uid:"))
        .and_then(|rest| rest.split_whitespace().nth(1).map(str::to_owned))
        .unwrap_or_default();
    if uid != "0" {
        return Err(LabError::NotRoot);
    }
    for (program, package) in PROGRAMS {
        if !find(program) {
            return Err(LabError::Missing { program, package });
        }
    }
    for (program, package) in OVN_PROGRAMS {
        if !install.has(program) {
            return Err(match &install.prefix {
                None => LabError::Missing { program, package },
                Some(prefix) => LabError::Step {
                    step: format!("finding {program} in {}", prefix.display()),
                    detail: "the build is incomplete: run scripts/build-kube-ovn-ovn.sh".into(),
                },
            });
        }
    }
    Ok(())
}

fn wait(
    what: &'static str,
    log: PathBuf,
    limit: Duration,
    mut ready: impl FnMut() -> bool,
) -> Result<(), LabError> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if ready() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Err(LabError::Timeout {
        what,
        seconds: limit.as_secs(),
        log,
    })
}

impl Ovn {
    /// Starts everything; on failure, stops what was started and removes the directory.
    pub fn start(
        config: &OvnConfig,
        progress: &mut dyn FnMut(&str, Duration),
    ) -> Result<Ovn, LabError> {
        check_prerequisites(&config.install)?;
        // `--detach` reparents the daemons; as their subreaper this process reaps them when
        // they stop, so no zombie is left behind.
        let _ = nix::sys::prctl::set_child_subreaper(true);
        let mut ovn = Ovn {
            dir: config.state_dir.clone(),
            prefix: config.prefix.clone(),
            host: format!("{}host", config.prefix),
            chassis: Vec::new(),
            install: config.install.clone(),
            stopped: false,
        };
        match ovn.bring_up(config, progress) {
            Ok(()) => Ok(ovn),
            Err(error) => {
                ovn.stop();
                Err(error)
            }
        }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// `unix:` remote of the Northbound database.
    pub fn nb_remote(&self) -> String {
        format!("unix:{}", self.path("nb.sock").display())
    }

    /// The NB as Pods reach it: a socket any user may connect to, as any Pod of a cluster
    /// reaches Kube-OVN's `ovn-nb` service (`nb.sock` is root's, mode 0770).
    pub fn pods_nb_remote(&self) -> String {
        format!("unix:{}", self.path("nb-pods.sock").display())
    }

    /// `unix:` remote of the Southbound database.
    pub fn sb_remote(&self) -> String {
        format!("unix:{}", self.path("sb.sock").display())
    }

    /// The network namespace `ovs-vswitchd` and `ovn-controller` run in.
    pub fn host_namespace(&self) -> &str {
        &self.host
    }

    /// The prefix of the lab's namespaces and interfaces.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The state directory.
    pub fn state_dir(&self) -> &Path {
        &self.dir
    }

    /// Its chassis, in order (the first runs in [`Ovn::host_namespace`]).
    pub fn chassis(&self) -> &[Chassis] {
        &self.chassis
    }

    /// The chassis named `name`.
    pub fn chassis_named(&self, name: &str) -> Result<&Chassis, LabError> {
        self.chassis
            .iter()
            .find(|c| c.name == name)
            .ok_or_else(|| LabError::Step {
                step: format!("finding chassis {name}"),
                detail: format!(
                    "the lab's chassis are {}",
                    self.chassis
                        .iter()
                        .map(|c| c.name.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            })
    }

    /// The OVN build it runs.
    pub fn install(&self) -> &OvnInstall {
        &self.install
    }

    fn daemon(
        &self,
        name: &str,
        program: &str,
        extra: &[String],
        namespace: Option<&str>,
    ) -> Result<(), LabError> {
        start_daemon(&self.install, &self.dir, name, program, extra, namespace)
    }

    fn bring_up(
        &mut self,
        config: &OvnConfig,
        progress: &mut dyn FnMut(&str, Duration),
    ) -> Result<(), LabError> {
        let started = Instant::now();
        std::fs::create_dir_all(&self.dir).map_err(|error| LabError::Step {
            step: format!("creating {}", self.dir.display()),
            detail: error.to_string(),
        })?;
        let dir = self.dir.display().to_string();
        // Central: the databases and northd.
        for (name, schema) in [("nb", "ovn-nb"), ("sb", "ovn-sb")] {
            run(
                &format!("creating the {name} database"),
                self.install
                    .command("ovsdb-tool")
                    .args(["create", &format!("{dir}/{name}.db")])
                    .arg(self.install.schema(schema)),
            )?;
        }
        for name in ["nb", "sb"] {
            let mut args = vec![
                format!("--remote=punix:{dir}/{name}.sock"),
                format!("--unixctl={dir}/{name}.ctl"),
                format!("{dir}/{name}.db"),
            ];
            if name == "nb" {
                args.push(format!("--remote=punix:{dir}/nb-pods.sock"));
            }
            self.daemon(name, "ovsdb-server", &args, None)?;
        }
        // Detached, the server has bound its sockets.
        std::fs::set_permissions(
            self.path("nb-pods.sock"),
            std::os::unix::fs::PermissionsExt::from_mode(0o777),
        )
        .map_err(|error| LabError::Step {
            step: "opening the NB to Pods".into(),
            detail: error.to_string(),
        })?;
        self.daemon(
            "northd",
            "ovn-northd",
            &[
                format!("--ovnnb-db={}", self.nb_remote()),
                format!("--ovnsb-db={}", self.sb_remote()),
                format!("--unixctl={dir}/northd.ctl"),
            ],
            None,
        )?;
        progress("OVN central (NB, SB, northd)", started.elapsed());

        // The chassis: each with its OVS in its own namespace, then ovn-controller.
        if config.chassis.is_empty() {
            return Err(LabError::Step {
                step: "planning the chassis".into(),
                detail: "no chassis".into(),
            });
        }
        let several = config.chassis.len() > 1;
        if several {
            let underlay = self.underlay_namespace();
            self.create_namespace(&underlay)?;
            crate::command::ip(&["-n", &underlay, "link", "add", "br0", "type", "bridge"])?;
            crate::command::ip(&["-n", &underlay, "link", "set", "br0", "mtu", UNDERLAY_MTU])?;
            crate::command::ip(&["-n", &underlay, "link", "set", "br0", "up"])?;
        }
        for (index, name) in config.chassis.iter().enumerate() {
            let chassis = Chassis {
                name: name.clone(),
                index,
                namespace: if index == 0 {
                    self.host.clone()
                } else {
                    format!("{}n{index}", self.prefix)
                },
                dir: if index == 0 {
                    self.dir.clone()
                } else {
                    self.dir.join(format!("node{index}"))
                },
                tunnel: several.then(|| underlay_address(index)),
            };
            self.create_namespace(&chassis.namespace)?;
            if several {
                self.wire_underlay(&chassis)?;
            }
            chassis.create(&self.install, &self.sb_remote())?;
            chassis.start(&self.install)?;
            self.chassis.push(chassis);
        }
        if several {
            self.warm_tunnels();
        }
        progress(
            &format!(
                "OVN chassis: {} (OVS netdev, ovn-controller{})",
                config.chassis.join(", "),
                if several {
                    ", Geneve over an underlay"
                } else {
                    ""
                }
            ),
            started.elapsed(),
        );

        let sb = self.sb_remote();
        let install = self.install.clone();
        let names = config.chassis.clone();
        wait(
            "the chassis in the Southbound database",
            self.path("controller.log"),
            Duration::from_secs(15),
            || {
                install
                    .command("ovn-sbctl")
                    .args([
                        &format!("--db={sb}"),
                        "--bare",
                        "--columns=name",
                        "list",
                        "Chassis",
                    ])
                    .output()
                    .is_ok_and(|out| {
                        let text = String::from_utf8_lossy(&out.stdout).into_owned();
                        names.iter().all(|n| text.lines().any(|l| l.trim() == n))
                    })
            },
        )?;
        progress("chassis registered", started.elapsed());
        info!(dir = %dir, took_ms = started.elapsed().as_millis() as u64, "OVN up");
        Ok(())
    }

    /// The namespace of the underlay bridge (several nodes).
    fn underlay_namespace(&self) -> String {
        format!("{}ul", self.prefix)
    }

    /// The chassis's underlay leg: a veth from the underlay bridge to `ul0` in its namespace,
    /// which its br-phy owns (so the kernel must not answer ARP or ND on it).
    fn wire_underlay(&self, chassis: &Chassis) -> Result<(), LabError> {
        let underlay = self.underlay_namespace();
        let port = format!("{}u{}", self.prefix, chassis.index);
        ip(&[
            "-n",
            &underlay,
            "link",
            "add",
            &port,
            "mtu",
            UNDERLAY_MTU,
            "type",
            "veth",
            "peer",
            "name",
            "ul0",
            "mtu",
            UNDERLAY_MTU,
            "netns",
            &chassis.namespace,
        ])?;
        ip(&["-n", &underlay, "link", "set", &port, "master", "br0", "up"])?;
        ip(&["-n", &chassis.namespace, "link", "set", "ul0", "arp", "off"])?;
        run(
            "disabling IPv6 on ul0",
            Command::new("ip").args([
                "netns",
                "exec",
                &chassis.namespace,
                "sysctl",
                "-qw",
                "net.ipv6.conf.ul0.disable_ipv6=1",
            ]),
        )?;
        ip(&["-n", &chassis.namespace, "link", "set", "ul0", "up"])
    }

    /// Teaches every node's vswitchd its peers' tunnel MACs: it learns them only from ARP
    /// replies, so the kernel asks (its neighbours flushed), else the first packet to each peer
    /// is lost.
    fn warm_tunnels(&self) {
        for chassis in &self.chassis {
            let _ = Command::new("ip")
                .args(["-n", &chassis.namespace, "neigh", "flush", "dev", "br-phy"])
                .status();
            for peer in self.chassis.iter().filter(|c| c.index != chassis.index) {
                if let Some(address) = peer.tunnel {
                    let _ = Command::new("ip")
                        .args(["netns", "exec", &chassis.namespace, "ping", "-c1", "-W1"])
                        .arg(address.to_string())
                        .stdout(std::process::Stdio::null())
                        .stderr(std::process::Stdio::null())
                        .status();
                }
            }
        }
    }

    /// Crashes node `name`'s chassis (vswitchd and ovn-controller SIGKILLed).
    pub fn kill_chassis(&self, name: &str) -> Result<(), LabError> {
        self.chassis_named(name)?.kill();
        Ok(())
    }

    /// Starts node `name`'s chassis again (what of it is not running), tunnels warmed.
    pub fn restore_chassis(&self, name: &str) -> Result<(), LabError> {
        let chassis = self.chassis_named(name)?;
        if !chassis.running() {
            chassis.start(&self.install)?;
        }
        if self.chassis.len() > 1 {
            self.warm_tunnels();
        }
        Ok(())
    }

    /// Creates a network namespace (lo up) and records it, so `stop` deletes it even after a
    /// crash.
    pub fn create_namespace(&self, name: &str) -> Result<(), LabError> {
        use std::io::Write as _;
        run(
            &format!("creating namespace {name}"),
            Command::new("ip").args(["netns", "add", name]),
        )?;
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(NAMESPACES))
            .map_err(|error| LabError::Step {
                step: "recording a namespace".into(),
                detail: error.to_string(),
            })?;
        let _ = writeln!(file, "{name}");
        run(
            "lo up",
            Command::new("ip").args(["-n", name, "link", "set", "lo", "up"]),
        )?;
        Ok(())
    }

    /// Stops every daemon this lab started and removes its namespaces and directory.
    pub fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        stop_dir(&self.dir, std::slice::from_ref(&self.host));
    }
}

impl Drop for Ovn {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Whether `pid` runs (an exited daemon may stay a zombie until init reaps it: `--detach`
/// reparents it).
pub fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| {
            let state = stat
                .rsplit_once(')')?
                .1
                .split_whitespace()
                .next()?
                .to_owned();
            Some(state != "Z" && state != "X")
        })
        .unwrap_or(false)
}

/// Sends SIGTERM to `pid` (gone already: nothing to do).
pub fn terminate(pid: u32) {
    send(pid, nix::sys::signal::Signal::SIGTERM);
}

/// Sends SIGKILL to `pid` (gone already: nothing to do).
pub fn kill(pid: u32) {
    send(pid, nix::sys::signal::Signal::SIGKILL);
}

fn send(pid: u32, signal: nix::sys::signal::Signal) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(raw), signal);
    }
}

/// Reaps `pid` if it is our exited child (we are the subreaper of detached daemons we
/// started); never blocks.
fn reap(pid: u32) {
    if let Ok(raw) = i32::try_from(pid) {
        let _ = nix::sys::wait::waitpid(
            nix::unistd::Pid::from_raw(raw),
            Some(nix::sys::wait::WaitPidFlag::WNOHANG),
        );
    }
}

/// The file listing the pids of the lab's other processes (veg, the echo service).
const CHILDREN: &str = "children";

/// Records a process the lab started, so [`stop_dir`] stops it even after a crash.
pub fn record_child(dir: &Path, pid: u32) {
    use std::io::Write as _;
    if let Ok(mut file) = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join(CHILDREN))
    {
        let _ = writeln!(file, "{pid}");
    }
}

/// Stops the daemons whose pidfiles are in `dir` and the processes recorded there (only
/// processes whose command line names `dir`), deletes `namespaces`, and removes `dir`. Safe to
/// run after a crash.
pub fn stop_dir(dir: &Path, namespaces: &[String]) {
    let marker = dir.display().to_string();
    let children = std::fs::read_to_string(dir.join(CHILDREN)).unwrap_or_default();
    for pid in children
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
    {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if alive(pid) && String::from_utf8_lossy(&cmdline).contains(&marker) {
            kill(pid);
            reap(pid);
        }
    }
    // The other nodes' daemons first, then the first node's and the central ones.
    let mut node_dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path())
        .filter(|path| {
            path.is_dir()
                && path
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with("node"))
        })
        .collect();
    node_dirs.sort();
    for node_dir in &node_dirs {
        stop_pidfiles(
            node_dir,
            &marker,
            NODE_DAEMONS.iter().rev().map(|(n, _)| *n),
        );
    }
    stop_pidfiles(dir, &marker, DAEMONS.iter().rev().map(|(n, _)| *n));
    let recorded = std::fs::read_to_string(dir.join(NAMESPACES)).unwrap_or_default();
    let recorded = recorded
        .lines()
        .map(str::trim)
        .filter(|line| !line.is_empty())
        .map(str::to_owned);
    let all: std::collections::BTreeSet<String> =
        namespaces.iter().cloned().chain(recorded).collect();
    for namespace in all {
        let _ = Command::new("ip")
            .args(["netns", "del", &namespace])
            .stderr(std::process::Stdio::null())
            .status();
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Stops the daemons `names` of `dir` by their pidfiles (only processes whose command line
/// names `marker`): SIGTERM, then SIGKILL after 5 s.
fn stop_pidfiles<'a>(dir: &Path, marker: &str, names: impl Iterator<Item = &'a str>) {
    for name in names {
        let pidfile = dir.join(format!("{name}.pid"));
        let Ok(text) = std::fs::read_to_string(&pidfile) else {
            continue;
        };
        let Ok(pid) = text.trim().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if !String::from_utf8_lossy(&cmdline).contains(marker) {
            continue; // not ours (a reused pid)
        }
        terminate(pid);
        let deadline = Instant::now() + Duration::from_secs(5);
        while alive(pid) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        if alive(pid) {
            warn!(pid, name, "did not stop on SIGTERM; killing");
            kill(pid);
        }
        reap(pid);
        let deadline = Instant::now() + Duration::from_secs(1);
        while Path::new(&format!("/proc/{pid}")).exists() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(5));
            reap(pid);
        }
    }
}
