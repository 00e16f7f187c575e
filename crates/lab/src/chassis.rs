//! One node of the lab as OVN sees it: a chassis in its own network namespace, with its own
//! OVS `ovsdb-server`, `ovs-vswitchd` (netdev datapath) and `ovn-controller`, its files under
//! its own directory. With several nodes they are joined by Geneve over an underlay: a Linux
//! bridge in its own namespace, one veth per node owned by the node's `br-phy`, the tunnel
//! address on `br-phy`'s tap (shared reference `multi-node-ovn-lab.md` has the traps, §3 and §5).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::command::{ip, run};
use crate::error::LabError;
use crate::install::OvnInstall;

/// The underlay's MTU: room for Geneve's 58 bytes around the Pods' 1500.
pub const UNDERLAY_MTU: &str = "1600";

/// Node `index`'s tunnel address on the underlay (198.18.250.0/24).
pub fn underlay_address(index: usize) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, 250, u8::try_from(index + 1).unwrap_or(u8::MAX))
}

/// A node's chassis.
#[derive(Clone, Debug)]
pub struct Chassis {
    /// Its `system-id`, the node's name.
    pub name: String,
    /// Its position (0: the first, in the lab's host namespace).
    pub index: usize,
    /// The network namespace its vswitchd, ovn-controller and Pod ports live in.
    pub namespace: String,
    /// Its pid, log, database and socket files.
    pub dir: PathBuf,
    /// Its tunnel address (several nodes only; one node tunnels nowhere).
    pub tunnel: Option<Ipv4Addr>,
}

/// The node daemons, in start order (stopped in reverse).
pub const NODE_DAEMONS: [(&str, &str); 3] = [
    ("ovs", "ovsdb-server"),
    ("vswitchd", "ovs-vswitchd"),
    ("controller", "ovn-controller"),
];

/// Starts `program` detached with its pidfile and log under `dir`, its run directories there
/// too, inside `namespace` when given.
pub(crate) fn start_daemon(
    install: &OvnInstall,
    dir: &Path,
    name: &str,
    program: &str,
    extra: &[String],
    namespace: Option<&str>,
) -> Result<(), LabError> {
    let mut command = match namespace {
        Some(ns) => {
            let mut command = Command::new("ip");
            command
                .args(["netns", "exec", ns])
                .arg(install.program(program));
            command
        }
        None => install.command(program),
    };
    command
        .args(extra)
        .arg("--detach")
        .arg("--no-chdir")
        .arg("-vconsole:off")
        .arg(format!(
            "--pidfile={}",
            dir.join(format!("{name}.pid")).display()
        ))
        .arg(format!(
            "--log-file={}",
            dir.join(format!("{name}.log")).display()
        ))
        .env("OVS_RUNDIR", dir)
        .env("OVS_DBDIR", dir)
        .env("OVS_LOGDIR", dir)
        .env("OVN_RUNDIR", dir)
        .env("OVN_DBDIR", dir)
        .env("OVN_LOGDIR", dir);
    run(&format!("starting {name} ({program})"), &mut command).map(|_| ())
}

impl Chassis {
    /// `unix:` remote of its OVS database.
    pub fn ovs_remote(&self) -> String {
        format!("unix:{}", self.dir.join("ovs.sock").display())
    }

    /// `ovs-vsctl ARGS` against its OVS database.
    pub fn vsctl(&self, install: &OvnInstall, args: &[&str]) -> Result<String, LabError> {
        let mut command = install.command("ovs-vsctl");
        command
            .arg(format!("--db={}", self.ovs_remote()))
            .args(args);
        run(&format!("ovs-vsctl {}", args.join(" ")), &mut command)
    }

    /// Its OVS database, bridges and OVN settings (its OVS server started).
    pub(crate) fn create(&self, install: &OvnInstall, sb_remote: &str) -> Result<(), LabError> {
        std::fs::create_dir_all(&self.dir).map_err(|error| LabError::Step {
            step: format!("creating {}", self.dir.display()),
            detail: error.to_string(),
        })?;
        let db = self.dir.join("ovs.db");
        run(
            &format!("creating the OVS database of {}", self.name),
            install
                .command("ovsdb-tool")
                .arg("create")
                .arg(&db)
                .arg(install.schema("vswitch")),
        )?;
        self.start_database(install)?;
        self.vsctl(install, &["--no-wait", "init"])?;
        let encap = self
            .tunnel
            .map_or_else(|| "127.0.0.1".to_owned(), |a| a.to_string());
        self.vsctl(
            install,
            &[
                "--no-wait",
                "set",
                "open_vswitch",
                ".",
                &format!("external_ids:system-id={}", self.name),
                &format!("external_ids:hostname={}", self.name),
                &format!("external_ids:ovn-remote={sb_remote}"),
                "external_ids:ovn-encap-type=geneve",
                &format!("external_ids:ovn-encap-ip={encap}"),
                "external_ids:ovn-bridge-datapath-type=netdev",
                // What Kube-OVN's ovs-ovn DaemonSet sets (charts/kube-ovn/values.yaml). The SB
                // probe also wakes ovn-controller's main loop at least every 10 s: a BFD
                // session created with nothing else happening afterwards stays admin_down (and
                // silent) until the next wakeup (pinctrl.c bfd_monitor_run: a new entry does
                // not notify the pinctrl thread).
                "external_ids:ovn-remote-probe-interval=10000",
                "external_ids:ovn-openflow-probe-interval=180",
                // Idle datapath flows go after 500 ms, not 10 s: in this userspace datapath a
                // flow cached before a nexthop change kept steering a reused address pair to
                // the old instance for over a second (measured by bench/failover).
                "other_config:max-idle=500",
            ],
        )?;
        self.vsctl(
            install,
            &[
                "--no-wait",
                "add-br",
                "br-int",
                "--",
                "set",
                "bridge",
                "br-int",
                "datapath_type=netdev",
                "fail_mode=secure",
                "other_config:disable-in-band=true",
            ],
        )?;
        if self.tunnel.is_some() {
            // The tunnel endpoint: br-phy owns the underlay veth; a fixed MAC survives
            // vswitchd restarts, so the peers' neighbour entries stay valid.
            self.vsctl(
                install,
                &[
                    "--no-wait",
                    "add-br",
                    "br-phy",
                    "--",
                    "set",
                    "bridge",
                    "br-phy",
                    "datapath_type=netdev",
                    "fail_mode=standalone",
                    &format!("other_config:hwaddr=0a:00:c6:12:fa:{:02x}", self.index + 1),
                    "--",
                    "add-port",
                    "br-phy",
                    "ul0",
                ],
            )?;
        }
        Ok(())
    }

    fn start_database(&self, install: &OvnInstall) -> Result<(), LabError> {
        let dir = self.dir.display().to_string();
        start_daemon(
            install,
            &self.dir,
            "ovs",
            "ovsdb-server",
            &[
                format!("--remote=punix:{dir}/ovs.sock"),
                format!("--unixctl={dir}/ovs.ctl"),
                format!("{dir}/ovs.db"),
            ],
            None,
        )
    }

    /// Starts its vswitchd and ovn-controller (the tunnel address re-added: it lives on a tap
    /// that dies with vswitchd).
    pub(crate) fn start(&self, install: &OvnInstall) -> Result<(), LabError> {
        let dir = self.dir.display().to_string();
        start_daemon(
            install,
            &self.dir,
            "vswitchd",
            "ovs-vswitchd",
            &[
                self.ovs_remote(),
                "--disable-system".into(),
                format!("--unixctl={dir}/vswitchd.ctl"),
            ],
            Some(&self.namespace),
        )?;
        if let Some(address) = self.tunnel {
            let deadline = Instant::now() + Duration::from_secs(5);
            while !Command::new("ip")
                .args(["-n", &self.namespace, "link", "show", "br-phy"])
                .output()
                .is_ok_and(|out| out.status.success())
            {
                if Instant::now() > deadline {
                    return Err(LabError::Step {
                        step: format!("waiting for br-phy on {}", self.name),
                        detail: "vswitchd created no br-phy tap within 5 s".into(),
                    });
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            ip(&[
                "-n",
                &self.namespace,
                "addr",
                "replace",
                &format!("{address}/24"),
                "dev",
                "br-phy",
            ])?;
            ip(&["-n", &self.namespace, "link", "set", "br-phy", "up"])?;
        }
        // 23.03 has no --unixctl; its control socket is then OVN_RUNDIR/ovn-controller.<pid>.ctl.
        let mut extra = vec![self.ovs_remote()];
        if install.build == crate::install::OvnBuild::KubeOvn {
            extra.push(format!("--unixctl={dir}/controller.ctl"));
        }
        start_daemon(
            install,
            &self.dir,
            "controller",
            "ovn-controller",
            &extra,
            Some(&self.namespace),
        )
    }

    /// Crashes it: SIGKILL to vswitchd and ovn-controller (its database, Pod veths and flows'
    /// owner gone, as on a node that died).
    pub(crate) fn kill(&self) {
        for name in ["controller", "vswitchd"] {
            if let Some(pid) = read_pid(&self.dir.join(format!("{name}.pid"))) {
                crate::ovn::kill(pid);
            }
        }
    }

    /// Whether its vswitchd runs.
    pub fn running(&self) -> bool {
        read_pid(&self.dir.join("vswitchd.pid")).is_some_and(crate::ovn::alive)
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}
