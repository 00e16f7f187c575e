//! The whole system on one machine (veg-lab): real OVN, `veg controller` on the lab's API
//! objects, `veg monitor`, the lab's kubelet running gateway Pods (`veg gateway`, `veg bfdd`),
//! client Pods and an external host with an echo service. Kube-OVN's e2e checklist, adapted:
//! SNAT and forward-only sources, intra-VPC traffic, status, exact NB rows, scaling, IPv4 /
//! IPv6 / dual-stack, `trafficPolicy: Local`, BFD failover, all instances down, an uplink cut,
//! a controller restarted mid-way, a bad manifest, deletion. Each test runs its own lab, one
//! at a time. Needs root and the OVN/OVS packages; under CI=true a missing one fails.

mod support;

use std::collections::BTreeSet;
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use serde_json::Value as Json;
use veg_lab::probe::GapProbe;
use veg_lab::session::BfdMode;
use veg_lab::{Lab, LabOptions, OvnBuild, OvnInstall, Topology};
use veg_testkit::recorder::{TableRecorder, strings};

/// How long the lab's node controller lets a dead node keep its Ready condition: 2 s here,
/// not Kubernetes' 40 s (`--node-monitor-grace-period`), so the node tests stay short; what
/// depends on it (the stale-BFD guard) scales with it.
const NODE_GRACE: Duration = Duration::from_secs(2);

/// One lab at a time: they share the machine's two cores with BFD at 100 ms.
static ONE_LAB: Mutex<()> = Mutex::new(());

const TOOLS: [&str; 6] = [
    "/usr/sbin/ovs-vswitchd",
    "/usr/bin/ovn-controller",
    "/usr/bin/ovn-northd",
    "/usr/bin/python3",
    "/usr/sbin/ethtool",
    "/usr/bin/tcpdump",
];

/// The lab of one test: removed (and checked removed) when dropped.
struct TestLab {
    lab: Option<Lab>,
    input: PathBuf,
    state: PathBuf,
}

impl Drop for TestLab {
    fn drop(&mut self) {
        if let Some(lab) = self.lab.take() {
            lab.down();
        }
        let _ = std::fs::remove_dir_all(&self.input);
    }
}

impl std::ops::Deref for TestLab {
    type Target = Lab;
    fn deref(&self) -> &Lab {
        self.lab
            .as_ref()
            .unwrap_or_else(|| unreachable!("the lab is down"))
    }
}

impl std::ops::DerefMut for TestLab {
    fn deref_mut(&mut self) -> &mut Lab {
        self.lab
            .as_mut()
            .unwrap_or_else(|| unreachable!("the lab is down"))
    }
}

impl TestLab {
    /// A lab on Kube-OVN's OVN in native BFD mode (what users run).
    fn start(id: &str, manifests: &str, topology: &str, restart: Option<Duration>) -> Result<Self> {
        Self::start_on(OvnBuild::KubeOvn, id, manifests, topology, restart)
    }

    /// A lab on `build`, in the BFD mode its users would run (Debian: monitor).
    fn start_on(
        build: OvnBuild,
        id: &str,
        manifests: &str,
        topology: &str,
        restart: Option<Duration>,
    ) -> Result<Self> {
        Self::start_with(build, 1, id, manifests, topology, restart)
    }

    /// A lab of `chassis` nodes, each its own chassis.
    fn start_with(
        build: OvnBuild,
        chassis: usize,
        id: &str,
        manifests: &str,
        topology: &str,
        restart: Option<Duration>,
    ) -> Result<Self> {
        let input = std::env::temp_dir().join(format!("{id}-input"));
        let state = std::env::temp_dir().join(format!("{id}-veg-lab"));
        let _ = std::fs::remove_dir_all(&input);
        veg_lab::ovn::stop_dir(&state, &[]);
        std::fs::create_dir_all(&input)?;
        std::fs::write(input.join("manifests.yaml"), manifests)?;
        std::fs::write(input.join("topology.yaml"), topology)?;
        let options = LabOptions {
            state_dir: state.clone(),
            prefix: id.to_owned(),
            veg: PathBuf::from(env!("CARGO_BIN_EXE_veg")),
            manifests: vec![input.join("manifests.yaml")],
            topology: Topology::read(&input.join("topology.yaml"))?,
            restart_delay: restart,
            ovn: OvnInstall::locate(build)?,
            bfd_mode: BfdMode::default_for(build),
            chassis,
            node_grace: NODE_GRACE,
            pod_security: Default::default(),
            allowed_unsafe_sysctls: Vec::new(),
            // What ships: the controller (and monitors) from the overlay, through the kubelet.
            deploy: Some(
                PathBuf::from(env!("CARGO_MANIFEST_DIR"))
                    .join("../..")
                    .join(veg_lab::deploy::default_overlay(BfdMode::default_for(
                        build,
                    ))),
            ),
        };
        let started = Instant::now();
        let lab = Lab::up(options, &mut |stage, at| {
            eprintln!("[{:>6.2}s] {stage}", at.as_secs_f64());
        })?;
        eprintln!("lab up in {:?}", started.elapsed());
        Ok(TestLab {
            lab: Some(lab),
            input,
            state,
        })
    }

    /// Takes the lab down and checks nothing is left.
    fn finish(mut self) -> Result<()> {
        if let Some(lab) = self.lab.take() {
            lab.down();
        }
        ensure!(
            !self.state.exists(),
            "the lab left {}",
            self.state.display()
        );
        let namespaces =
            String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output()?.stdout)
                .into_owned();
        let prefix = self
            .state
            .file_name()
            .map(|n| n.to_string_lossy().replace("-veg-lab", ""))
            .unwrap_or_default();
        ensure!(
            !namespaces.lines().any(|l| l.starts_with(&prefix)),
            "namespaces left: {namespaces}"
        );
        Ok(())
    }

    fn logs(&self) -> String {
        let mut out = String::new();
        let mut files = vec![self.state.join("veg-controller.log")];
        for pod in ["veg-controller-0", "veg-monitor-0", "veg-monitor-1"] {
            for container in ["controller", "monitor"] {
                files.push(
                    self.state
                        .join("pods")
                        .join(pod)
                        .join(format!("{container}.log")),
                );
            }
        }
        for entry in std::fs::read_dir(&self.state)
            .into_iter()
            .flatten()
            .flatten()
        {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("veg-monitor")
            {
                files.push(entry.path());
            }
        }
        for entry in std::fs::read_dir(self.state.join("pods"))
            .into_iter()
            .flatten()
            .flatten()
        {
            files.push(entry.path().join("gateway.log"));
            files.push(entry.path().join("bfdd.log"));
        }
        for file in files {
            let text = std::fs::read_to_string(&file).unwrap_or_default();
            let tail: Vec<&str> = text.lines().rev().take(8).collect();
            out.push_str(&format!("--- {}\n", file.display()));
            for line in tail.iter().rev() {
                out.push_str(line);
                out.push('\n');
            }
        }
        out
    }

    fn wait(
        &mut self,
        what: &str,
        limit: Duration,
        mut done: impl FnMut(&mut Lab) -> Result<bool>,
    ) -> Result<()> {
        let deadline = Instant::now() + limit;
        loop {
            self.sync()?;
            let lab = self.lab.as_mut().context("the lab is down")?;
            if done(lab)? {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{what}: not within {limit:?}\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn nb(&self, args: &[&str]) -> Result<String> {
        Ok(self.ovn().nbctl(args)?)
    }
}

fn lock() -> std::sync::MutexGuard<'static, ()> {
    ONE_LAB
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// (match, nexthops) of the policies at `priority` on `router`.
fn policies(lab: &Lab, router: &str, priority: u32) -> Vec<(String, Vec<IpAddr>)> {
    let text = lab
        .ovn()
        .nbctl(&[
            "--format=csv",
            "--data=bare",
            "--no-headings",
            "--columns=match,nexthops,_uuid",
            "find",
            "Logical_Router_Policy",
            &format!("priority={priority}"),
        ])
        .unwrap_or_default();
    let on_router = lab
        .ovn()
        .nbctl(&[
            "--bare",
            "--columns=policies",
            "list",
            "Logical_Router",
            router,
        ])
        .unwrap_or_default();
    let mut out: Vec<(String, Vec<IpAddr>)> = text
        .lines()
        .filter_map(|line| {
            let (rest, uuid) = line.rsplit_once(',')?;
            if !on_router.contains(uuid) {
                return None;
            }
            let (matching, nexthops) = rest.rsplit_once(',')?;
            let mut hops: Vec<IpAddr> = nexthops
                .split_whitespace()
                .filter_map(|h| h.parse().ok())
                .collect();
            hops.sort();
            Some((matching.trim_matches('"').to_owned(), hops))
        })
        .collect();
    out.sort();
    out
}

/// All nexthops of the 29100 policies of the family.
/// The nexthops that carry traffic (native mode: without those whose BFD row is down).
fn nexthops(lab: &Lab, v4: bool) -> BTreeSet<IpAddr> {
    let down = lab.ovn().bfd_down().unwrap_or_default();
    policies(lab, "ovn-cluster", 29100)
        .into_iter()
        .flat_map(|(_, hops)| hops)
        .filter(|h| h.is_ipv4() == v4 && !down.contains(h))
        .collect()
}

fn ips(status: &Json, key: &str) -> Vec<IpAddr> {
    status[key]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|ip| ip.as_str())
        // Kube-OVN's format: one entry per instance, its families comma-separated.
        .flat_map(|ips| ips.split(','))
        .filter_map(|ip| ip.trim().parse().ok())
        .collect()
}

/// The gateway instances' addresses by Pod: (internal, external) of the family.
fn instance(lab: &Lab, pod: &str, v4: bool) -> Option<(IpAddr, IpAddr)> {
    let status = lab.status("default", "gateway1");
    let entry = status["gateways"]
        .as_array()?
        .iter()
        .find(|g| g["pod"] == pod)?
        .clone();
    let internal = ips(&entry, "internalIPs")
        .into_iter()
        .find(|ip| ip.is_ipv4() == v4)?;
    let external = ips(&entry, "externalIPs")
        .into_iter()
        .find(|ip| ip.is_ipv4() == v4)?;
    Some((internal, external))
}

/// Every row of the gateway's (by external_ids) in the NB, as text.
fn gateway_rows(lab: &Lab, key: &str) -> Result<String> {
    let mut out = String::new();
    for (table, columns) in [
        ("Logical_Router_Policy", "_uuid,priority,match,nexthops"),
        ("Address_Set", "_uuid,name,addresses"),
        ("Port_Group", "_uuid,name,ports"),
        ("BFD", "_uuid,logical_port,dst_ip"),
    ] {
        out += &lab.ovn().nbctl(&[
            "--bare",
            &format!("--columns={columns}"),
            "find",
            table,
            &format!("external_ids:vpc-egress-gateway=\"{key}\""),
        ])?;
    }
    Ok(out)
}

const V4_MANIFESTS: &str = r#"
apiVersion: kubeovn.io/v1
kind: Vpc
metadata: {name: ovn-cluster}
spec: {}
status: {router: ovn-cluster, defaultLogicalSwitch: ovn-default, bfdPort: {name: bfd@ovn-cluster, ip: 198.18.0.253}}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: ovn-default}
spec: {protocol: IPv4, cidrBlock: 198.18.0.0/20, gateway: 198.18.0.1, provider: ovn}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: subnet1}
# Bound to default: default's gateways may steer it (strict tenancy).
spec: {protocol: IPv4, cidrBlock: 198.18.16.0/20, gateway: 198.18.16.1, namespaces: [default]}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: macvlan1}
spec: {protocol: IPv4, cidrBlock: 198.51.100.0/24, gateway: 198.51.100.1, provider: eth1.default}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: eth1, namespace: default}
spec: {config: '{"cniVersion": "0.3.0", "type": "macvlan"}'}
---
apiVersion: kubeovn.io/v1
kind: VpcEgressGateway
metadata: {name: gateway1, namespace: default}
spec:
  replicas: 2
  externalSubnet: macvlan1
  # Instances may share a node (one-node labs; the default, Required, keeps them apart).
  podAntiAffinity: Preferred
  bfd: {enabled: true, minRX: 100, minTX: 100, multiplier: 3}
  selectors:
    - podSelector: {matchLabels: {egress: "yes"}}
  policies:
    - {snat: true, subnets: [subnet1]}
    - {snat: false, ipBlocks: [198.18.16.30]}
"#;

const V4_TOPOLOGY: &str = r#"
pods:
  - {name: web-1, subnet: ovn-default, ips: [198.18.0.21], labels: {egress: "yes"}}
  - {name: web-2, subnet: ovn-default, ips: [198.18.0.22], labels: {egress: "yes"}}
  - {name: app-1, namespace: other, subnet: subnet1, ips: [198.18.16.21]}
  - {name: app-2, namespace: other, subnet: subnet1, ips: [198.18.16.30]}
  - {name: db-1, namespace: other, subnet: ovn-default, ips: [198.18.0.31]}
"#;

fn ready(lab: &mut TestLab, instances: usize, v4: bool) -> Result<()> {
    let state = lab.state.clone();
    lab.wait(
        "the gateway's instances to be nexthops and the status Completed",
        Duration::from_secs(40),
        |lab| {
            Ok(nexthops(lab, v4).len() == instances
                && lab.status("default", "gateway1")["phase"] == "Completed"
                && bfd_rows_up(lab, v4, instances)
                && gateway_sessions_up(lab, &state))
        },
    )?;
    lab.ovn().sync()?;
    Ok(())
}

#[test]
fn snat_forward_only_intra_vpc_status_rows_scaling_and_delete() -> Result<()> {
    the_whole_walk(OvnBuild::KubeOvn, "le1")
}

/// The same on stock OVN (monitor mode).
#[test]
fn on_debian_ovn_snat_forward_only_intra_vpc_status_rows_scaling_and_delete() -> Result<()> {
    the_whole_walk(OvnBuild::Debian, "ld1")
}

fn the_whole_walk(build: OvnBuild, id: &str) -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let mut lab = TestLab::start_on(
        build,
        id,
        V4_MANIFESTS,
        V4_TOPOLOGY,
        Some(Duration::from_secs(3)),
    )?;
    ready(&mut lab, 2, true)?;

    // Status.
    let status = lab.status("default", "gateway1");
    ensure!(
        status["ready"] == true && status["phase"] == "Completed",
        "status: {status:#}"
    );
    let internal = ips(&status, "internalIPs");
    let external = ips(&status, "externalIPs");
    ensure!(
        internal.len() == 2 && external.len() == 2,
        "status IPs: {status:#}"
    );
    ensure!(
        status["workload"]["nodes"] == serde_json::json!(["lab-node"]),
        "nodes: {status:#}"
    );
    ensure!(
        status["gateways"]
            .as_array()
            .is_some_and(|g| g.len() == 2 && g.iter().all(|i| i["bfd"] == "Up")),
        "instances: {status:#}"
    );

    // Exact policy rows (Kube-OVN's names and matches) and nexthops.
    let mut sorted = internal.clone();
    sorted.sort();
    let reroute = policies(&lab, "ovn-cluster", 29100);
    let drops = policies(&lab, "ovn-cluster", 29090);
    let set = reroute
        .iter()
        .find_map(|(m, _)| {
            m.strip_prefix("ip4.src == $")
                .filter(|s| s.ends_with(".ipv4"))
        })
        .context("no address-set policy")?
        .trim_end_matches(".ipv4")
        .to_owned();
    ensure!(
        reroute
            == vec![
                (format!("ip4.src == ${set}.ipv4"), sorted.clone()),
                (format!("ip4.src == ${set}_ip4"), sorted.clone()),
            ],
        "29100 rows: {reroute:?}"
    );
    ensure!(
        drops
            == vec![
                (format!("ip4.src == ${set}.ipv4"), vec![]),
                (format!("ip4.src == ${set}_ip4"), vec![])
            ],
        "29090 rows: {drops:?}"
    );
    let sources = lab.nb(&[
        "--bare",
        "--columns=addresses",
        "find",
        "Address_Set",
        &format!("name=\"{set}.ipv4\""),
    ])?;
    let sources: BTreeSet<&str> = sources.split_whitespace().collect();
    ensure!(
        sources == BTreeSet::from(["198.18.16.0/20", "198.18.16.30/32"]),
        "policy sources: {sources:?}"
    );
    let ports = lab.nb(&[
        "--bare",
        "--columns=ports",
        "find",
        "Port_Group",
        &format!("name=\"{set}\""),
    ])?;
    let port_names: BTreeSet<String> = ports
        .split_whitespace()
        .map(|uuid| {
            lab.nb(&[
                "--bare",
                "--columns=name",
                "list",
                "Logical_Switch_Port",
                uuid,
            ])
            .unwrap_or_default()
            .trim()
            .to_owned()
        })
        .collect();
    ensure!(
        port_names == BTreeSet::from(["web-1.default".to_owned(), "web-2.default".to_owned()]),
        "port group: {port_names:?}"
    );

    // Traffic: selected and SNAT-policy sources leave as a gateway; the forward-only one keeps
    // its address (the external host routes it back through a gateway); unselected ones do not
    // leave; intra-VPC traffic is not rerouted.
    let external_ns = lab.state().external;
    support::run(
        "ip",
        &[
            "-n",
            &external_ns,
            "route",
            "add",
            "198.18.16.30/32",
            "via",
            &external[0].to_string(),
        ],
    )?;
    for pod in ["default/web-1", "default/web-2", "other/app-1"] {
        let sample = veg_lab::session::egress_sample(lab.state_dir(), &lab.state(), pod, true, 8);
        ensure!(
            sample.unanswered == 0
                && sample.seen.iter().all(|(s, (_, owner))| owner.is_some()
                    && external.iter().any(|e| e.to_string() == *s)),
            "{pod}: {}, not only the gateways' {external:?}\n{}",
            sample.describe(),
            lab.logs()
        );
        // Kube-OVN's OVN hashes ECMP on the IP source: every connection of a Pod leaves
        // through one instance (Debian's spreads them).
        ensure!(
            build != OvnBuild::KubeOvn || sample.seen.len() == 1,
            "{pod} on Kube-OVN's OVN: {}",
            sample.describe()
        );
    }
    let seen = lab.ask("other/app-2", true, Duration::from_secs(1));
    ensure!(
        seen.as_deref() == Some("198.18.16.30"),
        "forward-only source seen as {seen:?}"
    );
    let seen = lab.ask("other/db-1", true, Duration::from_millis(500));
    ensure!(
        seen.is_none(),
        "an unselected Pod reached the external host as {seen:?}"
    );
    let state = lab.state();
    let db = state.pods["other/db-1"].netns.clone();
    let mut echo = Command::new("ip")
        .args(["netns", "exec", &db, "python3"])
        .arg(lab.state_dir().join("echo.py"))
        .arg("7777")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()?;
    {
        use std::io::BufRead as _;
        let mut line = String::new();
        std::io::BufReader::new(echo.stdout.take().context("echo stdout")?).read_line(&mut line)?;
    }
    let web = state.pods["default/web-1"].netns.clone();
    let seen = veg_lab::session::ask(
        lab.state_dir(),
        &web,
        "198.18.0.31".parse()?,
        Duration::from_secs(1),
    );
    let _ = echo.kill();
    let _ = echo.wait();
    ensure!(
        seen.as_deref() == Some("198.18.0.21"),
        "web-1 → db-1 inside the VPC seen as {seen:?}"
    );

    // Scale up and down: the nexthops follow.
    veg_lab::api::scale(lab.api_dir(), "default", "gateway1", 3)?;
    ready(&mut lab, 3, true)?;
    veg_lab::api::scale(lab.api_dir(), "default", "gateway1", 1)?;
    lab.wait("one instance left", Duration::from_secs(30), |lab| {
        Ok(nexthops(lab, true).len() == 1
            && lab
                .state()
                .pods
                .keys()
                .filter(|k| k.starts_with("default/gateway1-"))
                .count()
                == 1)
    })?;

    // Delete: no row of the gateway is left, other rows stay.
    ensure!(veg_lab::api::delete(
        lab.api_dir(),
        &(
            "VpcEgressGateway".into(),
            "default".into(),
            "gateway1".into()
        )
    )?);
    lab.wait("the gateway's rows to go", Duration::from_secs(15), |lab| {
        Ok(gateway_rows(lab, "default/gateway1")?.trim().is_empty()
            && policies(lab, "ovn-cluster", 29100).is_empty()
            && policies(lab, "ovn-cluster", 29090).is_empty()
            && lab
                .state()
                .pods
                .keys()
                .all(|k| !k.starts_with("default/gateway1-")))
    })?;
    ensure!(
        policies(&lab, "ovn-cluster", 31000).len() == 2,
        "the subnets' allow policies went too"
    );
    lab.finish()
}

const DUAL_MANIFESTS: &str = r#"
apiVersion: kubeovn.io/v1
kind: Vpc
metadata: {name: ovn-cluster}
spec: {}
status: {router: ovn-cluster, defaultLogicalSwitch: ovn-default, bfdPort: {name: bfd@ovn-cluster, ip: "198.18.0.253,2001:db8:18::253"}}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: ovn-default}
spec: {protocol: Dual, cidrBlock: "198.18.0.0/20,2001:db8:18::/64", gateway: "198.18.0.1,2001:db8:18::1", provider: ovn}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: macvlan1}
spec: {protocol: Dual, cidrBlock: "198.51.100.0/24,2001:db8:100::/64", gateway: "198.51.100.1,2001:db8:100::1", provider: eth1.default}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: eth1, namespace: default}
spec: {config: '{"cniVersion": "0.3.0", "type": "macvlan"}'}
---
apiVersion: kubeovn.io/v1
kind: VpcEgressGateway
metadata: {name: gateway1, namespace: default}
spec:
  replicas: 2
  externalSubnet: macvlan1
  # Instances may share a node (one-node labs; the default, Required, keeps them apart).
  podAntiAffinity: Preferred
  bfd: {enabled: true, minRX: 100, minTX: 100, multiplier: 3}
  selectors:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}
"#;

const DUAL_TOPOLOGY: &str = r#"
pods:
  - {name: web-1, subnet: ovn-default, ips: [198.18.0.21, "2001:db8:18::21"]}
  - {name: db-1, namespace: other, subnet: ovn-default, ips: [198.18.0.31, "2001:db8:18::31"]}
"#;

#[test]
fn dual_stack_both_families_leave_through_the_gateways() -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let mut lab = TestLab::start("le2", DUAL_MANIFESTS, DUAL_TOPOLOGY, None)?;
    lab.wait("both families' nexthops", Duration::from_secs(40), |lab| {
        Ok(nexthops(lab, true).len() == 2 && nexthops(lab, false).len() == 2)
    })?;
    lab.ovn().sync()?;
    let status = lab.status("default", "gateway1");
    let external = ips(&status, "externalIPs");
    ensure!(
        external.len() == 4,
        "external IPs of both families: {status:#}"
    );
    let v6_rows = policies(&lab, "ovn-cluster", 29100);
    ensure!(
        v6_rows
            .iter()
            .filter(|(m, _)| m.starts_with("ip6.src == $"))
            .count()
            == 2
            && v6_rows
                .iter()
                .filter(|(m, _)| m.starts_with("ip4.src == $"))
                .count()
                == 2,
        "29100 rows per family: {v6_rows:?}"
    );
    for v4 in [true, false] {
        let seen: BTreeSet<String> = (0..8)
            .filter_map(|_| lab.ask("default/web-1", v4, Duration::from_secs(1)))
            .collect();
        ensure!(
            !seen.is_empty()
                && seen.iter().all(|s| external
                    .iter()
                    .any(|e| e.is_ipv4() == v4 && e.to_string() == *s)),
            "web-1 over {} seen as {seen:?}, not the gateways' {external:?}\n{}",
            if v4 { "IPv4" } else { "IPv6" },
            lab.logs()
        );
        let unselected = lab.ask("other/db-1", v4, Duration::from_millis(500));
        ensure!(unselected.is_none(), "db-1 left as {unselected:?}");
    }
    // An instance dies: both families move to the other.
    let (_, dead_v6) = instance(&lab, "gateway1-0", false).context("gateway1-0's IPv6")?;
    lab.kill("default/gateway1-0")?;
    lab.wait(
        "gateway1-0 withdrawn in both families",
        Duration::from_secs(3),
        |lab| Ok(nexthops(lab, true).len() == 1 && nexthops(lab, false).len() == 1),
    )?;
    for _ in 0..6 {
        let seen = lab.ask("default/web-1", false, Duration::from_secs(1));
        ensure!(
            seen.is_some() && seen != Some(dead_v6.to_string()),
            "after the kill web-1 over IPv6 seen as {seen:?}"
        );
    }
    lab.finish()
}

const V6_MANIFESTS: &str = r#"
apiVersion: kubeovn.io/v1
kind: Vpc
metadata: {name: ovn-cluster}
spec: {}
status: {router: ovn-cluster, defaultLogicalSwitch: ovn-default, bfdPort: {name: bfd@ovn-cluster, ip: "2001:db8:18::253"}}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: ovn-default}
spec: {protocol: IPv6, cidrBlock: "2001:db8:18::/64", gateway: "2001:db8:18::1", provider: ovn}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: macvlan1}
spec: {protocol: IPv6, cidrBlock: "2001:db8:100::/64", gateway: "2001:db8:100::1", provider: eth1.default}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: eth1, namespace: default}
spec: {config: '{"cniVersion": "0.3.0", "type": "macvlan"}'}
---
apiVersion: kubeovn.io/v1
kind: VpcEgressGateway
metadata: {name: gateway1, namespace: default}
spec:
  replicas: 2
  externalSubnet: macvlan1
  # Instances may share a node (one-node labs; the default, Required, keeps them apart).
  podAntiAffinity: Preferred
  bfd: {enabled: true, minRX: 100, minTX: 100, multiplier: 3}
  selectors:
    - namespaceSelector: {matchLabels: {kubernetes.io/metadata.name: default}}
"#;

#[test]
fn ipv6_only_leaves_through_the_gateways() -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let topology = "pods:\n  - {name: web-1, subnet: ovn-default, ips: [\"2001:db8:18::21\"]}\n";
    let mut lab = TestLab::start("le3", V6_MANIFESTS, topology, None)?;
    ready(&mut lab, 2, false)?;
    let external = ips(&lab.status("default", "gateway1"), "externalIPs");
    ensure!(
        external.len() == 2 && external.iter().all(IpAddr::is_ipv6),
        "external IPs: {external:?}"
    );
    ensure!(
        nexthops(&lab, true).is_empty(),
        "IPv4 nexthops in an IPv6-only VPC"
    );
    let seen: BTreeSet<String> = (0..8)
        .filter_map(|_| lab.ask("default/web-1", false, Duration::from_secs(1)))
        .collect();
    ensure!(
        !seen.is_empty()
            && seen
                .iter()
                .all(|s| external.iter().any(|e| e.to_string() == *s)),
        "web-1 seen as {seen:?}, not the gateways' {external:?}\n{}",
        lab.logs()
    );
    lab.finish()
}

#[test]
fn traffic_policy_local_prefers_the_same_node_instance() -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let manifests =
        V4_MANIFESTS.replace("  replicas: 2\n", "  replicas: 2\n  trafficPolicy: Local\n");
    let topology = "nodes: [node-a, node-b]\npods:\n  - {name: web-1, subnet: ovn-default, ips: [198.18.0.21], labels: {egress: \"yes\"}, node: node-b}\n  - {name: web-2, subnet: ovn-default, ips: [198.18.0.22], labels: {egress: \"yes\"}, node: node-a}\n";
    // Physically separate nodes: each its own chassis, joined by Geneve.
    let mut lab = TestLab::start_with(OvnBuild::KubeOvn, 2, "le4", &manifests, topology, None)?;
    ready(&mut lab, 2, true)?;
    // The kubelet puts replica i on node i mod 2: gateway1-1 runs on node-b, as web-1 does.
    let (local_internal, local_external) =
        instance(&lab, "gateway1-1", true).context("gateway1-1")?;
    let (_, other_external) = instance(&lab, "gateway1-0", true).context("gateway1-0")?;
    let local = policies(&lab, "ovn-cluster", 29150);
    ensure!(
        local
            .iter()
            .filter(|(m, hops)| m.starts_with("ip4.src == $node.node.b_ip4 && ")
                && hops == &vec![local_internal])
            .count()
            == 2
            && local.len() == 4,
        "no 29150 policy for node-b to {local_internal}: {local:?}"
    );
    let seen: BTreeSet<String> = (0..12)
        .filter_map(|_| lab.ask("default/web-1", true, Duration::from_secs(1)))
        .collect();
    ensure!(
        seen == BTreeSet::from([local_external.to_string()]),
        "web-1 on node-b seen as {seen:?}, not only its node's instance {local_external}; 29150: {local:?}"
    );
    // And web-2 on node-a only through node-a's (ECMP on the source alone would put both on
    // one instance half the time: the two together say the 29150 policies decide).
    let seen: BTreeSet<String> = (0..12)
        .filter_map(|_| lab.ask("default/web-2", true, Duration::from_secs(1)))
        .collect();
    ensure!(
        seen == BTreeSet::from([other_external.to_string()]),
        "web-2 on node-a seen as {seen:?}, not only its node's instance {other_external}"
    );
    lab.finish()
}

/// Kill → the instance leaves the nexthops within 1 s (the figure goes to bench/failover);
/// then all instances down → nothing reaches the external host.
#[test]
fn bfd_withdraws_a_dead_instance_and_all_down_leaks_nothing() -> Result<()> {
    dead_instances_are_withdrawn(OvnBuild::KubeOvn, "le5")
}

/// The same on stock OVN, where `veg monitor` withdraws them.
#[test]
fn on_debian_ovn_the_monitor_withdraws_a_dead_instance_and_all_down_leaks_nothing() -> Result<()> {
    dead_instances_are_withdrawn(OvnBuild::Debian, "ld5")
}

fn dead_instances_are_withdrawn(build: OvnBuild, id: &str) -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let mut lab = TestLab::start_on(build, id, V4_MANIFESTS, V4_TOPOLOGY, None)?;
    ready(&mut lab, 2, true)?;
    // web-1's UDP flow, probed every 5 ms: the instance carrying it survives, the other dies.
    let web = lab.netns("default/web-1").context("web-1's namespace")?;
    let target = *lab
        .state()
        .external_addresses
        .first()
        .context("no external host")?;
    let probe = GapProbe::start(lab.state_dir(), &web, target, Duration::from_millis(2500))?;
    let (survivor, victim) = match instance(&lab, "gateway1-0", true) {
        Some((_, external)) if external.to_string() == probe.via() => ("gateway1-0", "gateway1-1"),
        _ => ("gateway1-1", "gateway1-0"),
    };
    let (dead, dead_external) = instance(&lab, victim, true).context("the victim")?;
    let (survivor_internal, survivor_external) =
        instance(&lab, survivor, true).context("the survivor")?;
    ensure!(
        survivor_external.to_string() == probe.via(),
        "web-1's flow is seen as {}, no instance's address",
        probe.via()
    );
    // Every NB write over the window, recorded by OVS's own client: the policies (monitor
    // mode: the monitor rewrites their nexthops) and OVN's BFD rows (native mode).
    let record = |table: &str, columns: &[&str]| {
        TableRecorder::start(
            &lab.ovn().install().program("ovsdb-client"),
            &lab.ovn().nb_remote(),
            "OVN_Northbound",
            table,
            columns,
            &lab.state_dir().join(format!("{id}-{table}.jsonl")),
        )
    };
    let policy_record = record("Logical_Router_Policy", &["priority", "nexthops"])?;
    let native = !lab.ovn().rows::<veg_ovsdb::nb::Bfd>()?.is_empty();
    let bfd_record = if native {
        Some(record("BFD", &["dst_ip", "status"])?)
    } else {
        None
    };
    std::thread::sleep(Duration::from_millis(300));
    let killed = Instant::now();
    lab.kill(&format!("default/{victim}"))?;
    lab.wait(
        &format!("{victim} withdrawn"),
        Duration::from_secs(1),
        |lab| Ok(!nexthops(lab, true).contains(&dead)),
    )?;
    eprintln!("kill → nexthop withdrawn in {:?}", killed.elapsed());
    // The survivor carries on, throughout: its flow never stalls (a withdrawal of it would
    // stall the flow for at least a detection time), the NB never leaves it out of the
    // policies, and OVN never reports its BFD row down.
    let report = probe.finish()?;
    let policy_states = policy_record.stop()?;
    let bfd_states = match bfd_record {
        Some(record) => record.stop()?,
        None => Vec::new(),
    };
    ensure!(
        report.gap_ms < 150.0 && report.after.as_deref() == Some(&*survivor_external.to_string()),
        "the survivor's flow (web-1) stalled for {:.0} ms, then went through {:?}\n{}",
        report.gap_ms,
        report.after,
        lab.logs()
    );
    eprintln!(
        "survivor {survivor}: its flow's longest silence {:.1} ms; NB updates recorded: {} policy, {} BFD",
        report.gap_ms,
        policy_states.len(),
        bfd_states.len()
    );
    let survivor_hop = survivor_internal.to_string();
    let left_out: Vec<usize> = policy_states
        .iter()
        .enumerate()
        .filter(|(_, rows)| {
            !rows.values().any(|row| {
                row["priority"] == 29100 && strings(&row["nexthops"]).contains(&survivor_hop)
            })
        })
        .map(|(update, _)| update)
        .collect();
    ensure!(
        // Monitor mode withdraws by rewriting the policies: the record holds that write.
        !policy_states.is_empty() && (native || policy_states.len() >= 2) && left_out.is_empty(),
        "the NB left the survivor {survivor_hop} out of the 29100 policies at updates {left_out:?} of {}\n{}",
        policy_states.len(),
        lab.logs()
    );
    let survivor_down = bfd_states.iter().any(|rows| {
        rows.values().any(|row| {
            strings(&row["dst_ip"]) == [survivor_hop.clone()]
                && matches!(strings(&row["status"]).as_slice(), [s] if s == "down" || s == "admin_down")
        })
    });
    ensure!(
        !native || (bfd_states.len() >= 2 && !survivor_down),
        "OVN reported the survivor's BFD row down ({} updates)\n{}",
        bfd_states.len(),
        lab.logs()
    );
    for _ in 0..8 {
        let seen = lab.ask("default/web-1", true, Duration::from_secs(1));
        ensure!(
            seen.is_some() && seen != Some(dead_external.to_string()),
            "after the kill web-1 seen as {seen:?}"
        );
    }
    lab.wait(
        &format!("the status to show {victim} down"),
        Duration::from_secs(5),
        |lab| {
            Ok(lab.status("default", "gateway1")["gateways"]
                .as_array()
                .is_some_and(|g| g.iter().any(|i| i["pod"] == victim && i["bfd"] == "Down")))
        },
    )?;

    // The last instance loses BFD while its data path still works (its BFD packets dropped
    // in its namespace, both ways): withdrawn, it must carry nothing. A capture on the external network
    // first sees its traffic (the capture works), then none.
    let (_, last_external) = instance(&lab, survivor, true).context("the survivor")?;
    let clients = [
        "default/web-1",
        "default/web-2",
        "other/app-1",
        "other/app-2",
    ];
    let before = capture_external(&lab, &format!("{id}-before"), || {
        for pod in clients {
            let _ = lab.ask(pod, true, Duration::from_millis(300));
        }
    })?;
    ensure!(
        before.contains(&last_external.to_string()),
        "the capture saw nothing of the live instance {last_external}:\n{before}"
    );
    let netns = lab
        .netns(&format!("default/{survivor}"))
        .context("the survivor's namespace")?;
    let blocked = Command::new("ip")
        .args(["netns", "exec", &netns, "nft"])
        // Both ways: a peer that still heard the instance's Down packets would report the
        // change only in its next 5 s batch (OVN's pinctrl); silence is detected at once.
        .arg(
            "add table ip veg_test; \
             add chain ip veg_test input { type filter hook input priority -400; }; \
             add chain ip veg_test output { type filter hook output priority -400; }; \
             add rule ip veg_test input udp dport 3784 drop; \
             add rule ip veg_test output udp dport 3784 drop",
        )
        .status()?;
    ensure!(blocked.success(), "nft in {survivor}");
    lab.wait("no nexthop left", Duration::from_secs(2), |lab| {
        Ok(nexthops(lab, true).is_empty())
    })?;
    ensure!(
        policies(&lab, "ovn-cluster", 29090).len() == 2,
        "the drop policies must stay"
    );
    lab.ovn().sync()?;
    let mut leaked = Vec::new();
    let after = capture_external(&lab, &format!("{id}-after"), || {
        for pod in clients {
            if let Some(seen) = lab.ask(pod, true, Duration::from_millis(300)) {
                leaked.push(format!("{pod} as {seen}"));
            }
        }
    })?;
    ensure!(
        leaked.is_empty(),
        "with every instance withdrawn, clients reached the external host: {leaked:?}"
    );
    ensure!(
        after.trim().is_empty(),
        "packets reached the external network:\n{after}"
    );
    lab.finish()
}

/// Everything IP that crosses the external network's bridge while `during` runs, as
/// `tcpdump -n` prints it (started and flushed around it; `--immediate-mode` so nothing waits
/// in a buffer).
fn capture_external(lab: &Lab, name: &str, during: impl FnOnce()) -> Result<String> {
    let capture = lab.state_dir().join(format!("{name}.pcap"));
    let mut tcpdump = Command::new("ip")
        .args(["netns", "exec", &lab.state().external, "tcpdump"])
        .args(["-i", "br-ext", "-n", "-U", "--immediate-mode", "-w"])
        .arg(&capture)
        // Unicast only: the bridge's own IPv6 router solicitations are not traffic.
        .args(["ip or (ip6 and not ip6 multicast)"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    {
        use std::io::BufRead as _;
        let mut line = String::new();
        // "listening on br-ext …" once it captures.
        std::io::BufReader::new(tcpdump.stderr.take().context("tcpdump stderr")?)
            .read_line(&mut line)?;
    }
    during();
    std::thread::sleep(Duration::from_millis(200));
    let _ = Command::new("kill")
        .args(["-INT", &tcpdump.id().to_string()])
        .status();
    let _ = tcpdump.wait();
    let read = Command::new("tcpdump")
        .args(["-n", "-r"])
        .arg(&capture)
        .stderr(Stdio::null())
        .output()?;
    Ok(String::from_utf8_lossy(&read.stdout).into_owned())
}

/// Every session of every running gateway Pod's `veg bfdd` is Up. The peer may say up
/// before: the three-way handshake ends on the gateway's side, and a gateway session still in
/// Init announces the slow 1 s rate (RFC 5880 §6.8.3), so its peer would take 3 s, not 300 ms,
/// to see it die.
fn gateway_sessions_up(lab: &Lab, state: &std::path::Path) -> bool {
    lab.state()
        .pods
        .iter()
        .filter(|(_, pod)| pod.role == "gateway" && pod.state == "Running")
        .all(|(key, _)| {
            let name = key.rsplit('/').next().unwrap_or_default();
            let socket = state.join("pods").join(name).join("bfdd.sock");
            if !socket.exists() {
                // No BFD in this gateway (or not started yet: the NB rows then are not up).
                return true;
            }
            let Ok(output) = Command::new(env!("CARGO_BIN_EXE_veg"))
                .args(["bfdctl", "--socket"])
                .arg(&socket)
                .arg("status")
                .output()
            else {
                return false;
            };
            let text = String::from_utf8_lossy(&output.stdout);
            output.status.success()
                && text.lines().count() > 0
                && text.lines().all(|l| l.contains("state=Up"))
        })
}

/// Native mode: at least `instances` BFD rows of the family say `up`, not just `init` (northd
/// keeps an `init` nexthop, but a session that never came Up still runs at the 1 s slow rate,
/// so OVN would take 3 s to notice its death). Monitor mode has no BFD rows: true.
fn bfd_rows_up(lab: &Lab, v4: bool, instances: usize) -> bool {
    let rows = nb_rows(lab, &["--columns=dst_ip,status", "list", "BFD"]);
    let family: Vec<&Vec<String>> = rows
        .iter()
        .filter(|row| {
            row.first()
                .and_then(|ip| ip.parse::<IpAddr>().ok())
                .is_some_and(|ip| ip.is_ipv4() == v4)
        })
        .collect();
    family.is_empty()
        || family
            .iter()
            .filter(|row| row.get(1).is_some_and(|s| s == "up"))
            .count()
            >= instances
}

/// `--format=csv --data=bare --no-headings` rows of an `ovn-nbctl` query, split on commas.
fn nb_rows(lab: &Lab, args: &[&str]) -> Vec<Vec<String>> {
    let mut full = vec!["--format=csv", "--data=bare", "--no-headings"];
    full.extend_from_slice(args);
    lab.ovn()
        .nbctl(&full)
        .unwrap_or_default()
        .lines()
        .map(|line| line.split(',').map(str::to_owned).collect())
        .collect()
}

/// The OpenFlow select group's buckets on the chassis (one per live nexthop; no group at all
/// with a single one).
fn group_buckets(lab: &Lab) -> usize {
    let mgmt = lab.state_dir().join("br-int.mgmt");
    lab.ovn()
        .install()
        .command("ovs-ofctl")
        .args(["-O", "OpenFlow15", "dump-groups"])
        .arg(format!("unix:{}", mgmt.display()))
        .output()
        .map(|out| {
            String::from_utf8_lossy(&out.stdout)
                .matches("bucket_id")
                .count()
        })
        .unwrap_or(0)
}

/// Native mode on Kube-OVN's OVN: the controller makes `bfd@ovn-cluster` (bfd-only, on an
/// HA_Chassis_Group), BFD rows on it and the policies' `bfd_sessions`; ovn-controller runs the
/// sessions to each instance's bfdd; the gateway is Ready only with a session Up; ECMP hashes
/// on the source (one Pod, one instance); a killed instance is withdrawn by OVN alone.
#[test]
fn native_mode_ovn_runs_bfd_and_withdraws_a_dead_instance_itself() -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let mut lab = TestLab::start("ln1", V4_MANIFESTS, V4_TOPOLOGY, None)?;
    let bfd_up = |lab: &Lab| {
        nb_rows(lab, &["--columns=dst_ip,status", "list", "BFD"])
            .into_iter()
            .filter(|row| row.get(1).is_some_and(|s| s == "up"))
            .count()
    };
    // Ready no earlier than a session Up in the NB.
    lab.wait("the status Completed", Duration::from_secs(40), |lab| {
        Ok(lab.status("default", "gateway1")["phase"] == "Completed")
    })?;
    ensure!(
        bfd_up(&lab) >= 1,
        "Completed with no BFD row up: {:?}",
        nb_rows(&lab, &["--columns=dst_ip,status", "list", "BFD"])
    );
    ready(&mut lab, 2, true)?;
    lab.wait("both BFD rows up", Duration::from_secs(10), |lab| {
        Ok(bfd_up(lab) == 2)
    })?;

    // The rows: the port, its group bound to the chassis, the sessions linked from the policies.
    let port = nb_rows(
        &lab,
        &[
            "--columns=options,ha_chassis_group",
            "find",
            "Logical_Router_Port",
            "name=\"bfd@ovn-cluster\"",
        ],
    );
    ensure!(
        port.len() == 1 && port[0][0].contains("bfd-only=true") && !port[0][1].is_empty(),
        "bfd@ovn-cluster: {port:?}"
    );
    let sessions: std::collections::BTreeMap<String, (String, String)> = nb_rows(
        &lab,
        &["--columns=_uuid,dst_ip,logical_port", "list", "BFD"],
    )
    .into_iter()
    .filter_map(|row| {
        Some((
            row.first()?.clone(),
            (row.get(1)?.clone(), row.get(2)?.clone()),
        ))
    })
    .collect();
    let reroutes = nb_rows(
        &lab,
        &[
            "--columns=_uuid,nexthops,bfd_sessions",
            "find",
            "Logical_Router_Policy",
            "priority=29100",
        ],
    );
    ensure!(reroutes.len() == 2, "29100 policies: {reroutes:?}");
    for row in &reroutes {
        let hops: BTreeSet<&str> = row[1].split_whitespace().collect();
        let linked: BTreeSet<&str> = row[2]
            .split_whitespace()
            .filter_map(|uuid| sessions.get(uuid))
            .filter(|(_, port)| port == "bfd@ovn-cluster")
            .map(|(ip, _)| ip.as_str())
            .collect();
        ensure!(
            hops == linked,
            "nexthops {hops:?} but BFD sessions to {linked:?}"
        );
    }
    let sb = lab
        .ovn()
        .install()
        .command("ovn-sbctl")
        .arg(format!("--db={}", lab.ovn().sb_remote()))
        .args(["--bare", "--columns=chassis", "find", "Port_Binding"])
        .arg("logical_port=\"cr-bfd@ovn-cluster\"")
        .output()?;
    ensure!(
        !String::from_utf8_lossy(&sb.stdout).trim().is_empty(),
        "cr-bfd@ovn-cluster is bound to no chassis"
    );
    ensure!(group_buckets(&lab) == 2, "buckets: {}", group_buckets(&lab));

    // ECMP on the IP source (Kube-OVN's patch): every connection of web-1 on one instance.
    let seen: BTreeSet<String> = (0..12)
        .filter_map(|_| lab.ask("default/web-1", true, Duration::from_secs(1)))
        .collect();
    ensure!(seen.len() == 1, "web-1's connections left as {seen:?}");
    let carrier: IpAddr = seen.iter().next().context("no answer")?.parse()?;
    let victim = ["gateway1-0", "gateway1-1"]
        .into_iter()
        .find(|pod| instance(&lab, pod, true).is_some_and(|(_, external)| external == carrier))
        .context("no instance has web-1's address")?;
    let (dead, _) = instance(&lab, victim, true).context("victim")?;

    // Kill it: OVN withdraws it — its BFD row down, its bucket gone — and veg writes no policy.
    let before = nb_rows(
        &lab,
        &[
            "--columns=_uuid,nexthops,bfd_sessions",
            "find",
            "Logical_Router_Policy",
        ],
    );
    let killed = Instant::now();
    lab.kill(&format!("default/{victim}"))?;
    lab.wait("its BFD row down", Duration::from_secs(1), |lab| {
        Ok(lab.ovn().bfd_down()?.contains(&dead))
    })?;
    eprintln!("kill → BFD row down in {:?}", killed.elapsed());
    lab.wait("its bucket gone", Duration::from_secs(1), |lab| {
        Ok(group_buckets(lab) == 0)
    })?;
    for _ in 0..5 {
        let seen = lab.ask("default/web-1", true, Duration::from_secs(1));
        ensure!(
            seen.is_some() && seen != Some(carrier.to_string()),
            "after the kill web-1 seen as {seen:?}"
        );
    }
    let after = nb_rows(
        &lab,
        &[
            "--columns=_uuid,nexthops,bfd_sessions",
            "find",
            "Logical_Router_Policy",
        ],
    );
    ensure!(
        before == after,
        "veg rewrote policies:\nbefore {before:?}\nafter {after:?}"
    );
    lab.finish()
}

/// Kube-OVN native on three nodes: web-1 and web-2 on n3, gateway1-0 on n1 (where the BFD
/// port is active), gateway1-1 on n2; ready.
fn three_node_lab(id: &str) -> Result<TestLab> {
    let topology = V4_TOPOLOGY
        .replace("ips: [198.18.0.21],", "ips: [198.18.0.21], node: n3,")
        .replace("ips: [198.18.0.22],", "ips: [198.18.0.22], node: n3,")
        .replace("pods:", "nodes: [n1, n2, n3]\npods:");
    let mut lab = TestLab::start_with(
        OvnBuild::KubeOvn,
        3,
        id,
        V4_MANIFESTS,
        &topology,
        Some(Duration::from_secs(1)),
    )?;
    ready(&mut lab, 2, true)?;
    Ok(lab)
}

/// Three nodes, each its own chassis joined by Geneve: the clients on n3, an instance on n1
/// (where the BFD port is active, priority 100) and on n2. n2 crashes as a whole: its instance
/// is withdrawn by OVN's BFD, the clients leave through n1's, nothing restarts on the dead
/// node; restored, its instance comes back.
#[test]
fn a_node_crash_withdraws_its_instance_and_a_restore_brings_it_back() -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let mut lab = three_node_lab("ln2")?;
    let on = |lab: &Lab, pod: &str| lab.state().pods.get(pod).map(|p| p.node.clone());
    ensure!(
        on(&lab, "default/gateway1-0").as_deref() == Some("n1")
            && on(&lab, "default/gateway1-1").as_deref() == Some("n2")
            && on(&lab, "default/web-1").as_deref() == Some("n3"),
        "placement: {:?}",
        lab.state().pods
    );
    let (gone, gone_external) = instance(&lab, "gateway1-1", true).context("gateway1-1")?;
    let (_, kept_external) = instance(&lab, "gateway1-0", true).context("gateway1-0")?;
    let killed = Instant::now();
    lab.kill_node("n2", false)?;
    lab.wait("n2's instance withdrawn", Duration::from_secs(2), |lab| {
        Ok(!nexthops(lab, true).contains(&gone))
    })?;
    eprintln!("node kill → BFD row down in {:?}", killed.elapsed());
    for pod in ["default/web-1", "default/web-2"] {
        let seen = lab.ask(pod, true, Duration::from_secs(1));
        ensure!(
            seen.as_deref() == Some(kept_external.to_string().as_str()),
            "{pod} seen as {seen:?} with n2 down (want {kept_external}, not {gone_external})"
        );
    }
    // The kubelet does not restart Pods of a dead node.
    std::thread::sleep(Duration::from_secs(2));
    lab.sync()?;
    ensure!(
        lab.state().pods["default/gateway1-1"].state == "NodeDown"
            && !nexthops(&lab, true).contains(&gone),
        "gateway1-1 after 2 s: {:?}",
        lab.state().pods["default/gateway1-1"]
    );
    let restored = Instant::now();
    lab.kill_node("n2", true)?;
    lab.wait("n2's instance back", Duration::from_secs(15), |lab| {
        Ok(nexthops(lab, true).contains(&gone))
    })?;
    eprintln!("node restore → BFD row up in {:?}", restored.elapsed());
    ensure!(lab.state().pods["default/gateway1-1"].state == "Running");
    lab.finish()
}

/// The node running the VPC's BFD sessions (n1, where `cr-bfd@ovn-cluster` is active) dies
/// with an instance on it. OVN moves the port to n2 but keeps the dead instance's BFD row `up`
/// (ovn-org/ovn#319: nobody refreshes it), so its nexthop stays; once the node is NotReady veg
/// withdraws the instance itself, says so in an event, and the clients leave through the
/// survivor. Restored, the instance comes back.
#[test]
fn the_node_running_the_bfd_sessions_dies_and_veg_withdraws_the_stale_instance() -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let mut lab = three_node_lab("ln3")?;
    let (dead, _) = instance(&lab, "gateway1-0", true).context("gateway1-0")?;
    let (_, survivor_external) = instance(&lab, "gateway1-1", true).context("gateway1-1")?;
    ensure!(
        lab.state().pods["default/gateway1-0"].node == "n1",
        "gateway1-0 is not on n1"
    );
    let killed = Instant::now();
    lab.kill_node("n1", false)?;
    lab.wait(
        "the dead instance withdrawn",
        NODE_GRACE + Duration::from_secs(10),
        |lab| Ok(!nexthops(lab, true).contains(&dead)),
    )?;
    let withdrawn = killed.elapsed();
    eprintln!("n1 killed → gateway1-0 withdrawn in {withdrawn:?}");
    // Withdrawn by veg's guard (the row never said down in time), after the grace period.
    let events =
        std::fs::read_to_string(lab.state().decisions.join("events.jsonl")).unwrap_or_default();
    let stale = events
        .lines()
        .any(|l| l.contains("StaleBfdStatus") && l.contains("gateway1-0"));
    ensure!(
        withdrawn >= NODE_GRACE || !stale,
        "withdrawn by the guard before the node was NotReady ({withdrawn:?})"
    );
    for pod in ["default/web-1", "default/web-2"] {
        let seen = lab.ask(pod, true, Duration::from_secs(1));
        ensure!(
            seen.as_deref() == Some(survivor_external.to_string().as_str()),
            "{pod} seen as {seen:?} after n1 died (the survivor is {survivor_external}); events: {events}"
        );
    }
    ensure!(
        stale,
        "no StaleBfdStatus event for gateway1-0 (OVN itself withdrew it: the stale case was not \
         reproduced); events: {events}"
    );
    lab.kill_node("n1", true)?;
    lab.wait("gateway1-0 back", Duration::from_secs(20), |lab| {
        Ok(nexthops(lab, true).contains(&dead))
    })?;
    lab.finish()
}

/// A namespace at Pod Security level baseline: the lab's admission refuses the gateway Pods
/// (a privileged init, NET_ADMIN) as a stock cluster's would, none starts, and the gateway's
/// status says why instead of waiting forever.
#[test]
fn pods_refused_by_pod_security_show_in_the_gateway_status() -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let topology = format!(
        "namespaces:\n  default: {{pod-security.kubernetes.io/enforce: baseline}}\n{}",
        V4_TOPOLOGY.trim_start()
    );
    let mut lab = TestLab::start("lp1", V4_MANIFESTS, &topology, None)?;
    lab.wait(
        "the refusal in the status",
        Duration::from_secs(15),
        |lab| {
            Ok(lab.status("default", "gateway1")["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["reason"] == "ReplicaFailure")))
        },
    )?;
    let status = lab.status("default", "gateway1");
    let message = status["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["reason"] == "ReplicaFailure")
        .and_then(|c| c["message"].as_str())
        .unwrap_or_default()
        .to_owned();
    ensure!(
        message.contains("violates PodSecurity \"baseline:latest\"")
            && message.contains("privileged")
            && message.contains("NET_ADMIN")
            && status["ready"] != true,
        "status: {status}"
    );
    ensure!(
        !lab.state()
            .pods
            .keys()
            .any(|k| k.starts_with("default/gateway1-")),
        "a refused Pod runs: {:?}",
        lab.state().pods.keys().collect::<Vec<_>>()
    );
    lab.finish()
}

#[test]
fn an_uplink_cut_withdraws_the_instance_until_it_returns() -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let mut lab = TestLab::start("le6", V4_MANIFESTS, V4_TOPOLOGY, None)?;
    ready(&mut lab, 2, true)?;
    let (cut, _) = instance(&lab, "gateway1-0", true).context("gateway1-0")?;
    let at = Instant::now();
    lab.cut("default/gateway1-0", true, false)?;
    // The agent's uplink check (200 ms × 3) → bfdd AdminDown → the monitor withdraws it.
    lab.wait(
        "gateway1-0 withdrawn after its uplink cut",
        Duration::from_secs(3),
        |lab| Ok(!nexthops(lab, true).contains(&cut)),
    )?;
    eprintln!("uplink cut → withdrawn in {:?}", at.elapsed());
    ensure!(nexthops(&lab, true).len() == 1);
    let restored = Instant::now();
    lab.cut("default/gateway1-0", true, true)?;
    // Back after the agent's next uplink check (2 s) and the handshake; OVN reports a status
    // change driven by the peer's packets no sooner than 5 s after its previous report (the
    // withdrawal, just before): `BFD_UPDATE_TIMEOUT`, controller/pinctrl.c:7982. So 5 s + the
    // check + 1 s.
    lab.wait("gateway1-0 back", Duration::from_secs(8), |lab| {
        Ok(nexthops(lab, true).contains(&cut))
    })?;
    eprintln!("uplink restored → back in {:?}", restored.elapsed());
    lab.finish()
}

#[test]
fn a_controller_killed_mid_way_leaves_no_duplicate_rows() -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let mut lab = TestLab::start("le7", V4_MANIFESTS, V4_TOPOLOGY, None)?;
    ready(&mut lab, 2, true)?;
    let before = gateway_rows(&lab, "default/gateway1")?;
    // Restart it repeatedly while it works: scaling up, a new selector label, scaling down.
    veg_lab::api::scale(lab.api_dir(), "default", "gateway1", 3)?;
    for round in 0..5 {
        std::thread::sleep(Duration::from_millis(40 * round));
        lab.sync()?;
        lab.restart_controller()?;
    }
    ready(&mut lab, 3, true)?;
    veg_lab::api::scale(lab.api_dir(), "default", "gateway1", 2)?;
    for round in 0..5 {
        std::thread::sleep(Duration::from_millis(60 * round));
        lab.sync()?;
        lab.restart_controller()?;
    }
    lab.wait("two instances", Duration::from_secs(30), |lab| {
        Ok(nexthops(lab, true).len() == 2
            && lab
                .state()
                .pods
                .keys()
                .filter(|k| k.starts_with("default/gateway1-"))
                .count()
                == 2)
    })?;
    ready(&mut lab, 2, true)?;
    let reroute = policies(&lab, "ovn-cluster", 29100);
    let drops = policies(&lab, "ovn-cluster", 29090);
    ensure!(
        reroute.len() == 2 && drops.len() == 2,
        "duplicate or missing policies: {reroute:?} {drops:?}"
    );
    let sets = lab.nb(&[
        "--bare",
        "--columns=name",
        "find",
        "Address_Set",
        "external_ids:vpc-egress-gateway=\"default/gateway1\"",
    ])?;
    let groups = lab.nb(&[
        "--bare",
        "--columns=name",
        "find",
        "Port_Group",
        "external_ids:vpc-egress-gateway=\"default/gateway1\"",
    ])?;
    ensure!(
        sets.split_whitespace().count() == 1 && groups.split_whitespace().count() == 1,
        "sets {sets:?} groups {groups:?}"
    );
    let after = gateway_rows(&lab, "default/gateway1")?;
    ensure!(
        before.lines().count() == after.lines().count(),
        "row count changed across restarts:\nbefore:\n{before}\nafter:\n{after}"
    );
    lab.finish()
}

#[test]
fn a_bad_manifest_gets_its_condition_and_disturbs_nothing_else() -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let mut lab = TestLab::start("le8", V4_MANIFESTS, V4_TOPOLOGY, None)?;
    ready(&mut lab, 2, true)?;
    let before = gateway_rows(&lab, "default/gateway1")?;
    let bad = "apiVersion: kubeovn.io/v1\nkind: VpcEgressGateway\nmetadata: {name: broken, namespace: default}\nspec:\n  replicas: 1\n  externalSubnet: no-such-subnet\n  selectors:\n    - podSelector: {matchLabels: {app: nothing}}\n";
    veg_lab::api::apply(lab.api_dir(), bad)?;
    lab.wait(
        "the bad gateway's condition",
        Duration::from_secs(10),
        |lab| {
            Ok(lab.status("default", "broken")["conditions"]
                .as_array()
                .is_some_and(|c| {
                    c.iter()
                        .any(|c| c["status"] == "False" && c["reason"] == "SubnetNotFound")
                }))
        },
    )?;
    let status = lab.status("default", "broken");
    ensure!(
        status["ready"] != true,
        "a broken gateway is ready: {status:#}"
    );
    ensure!(
        gateway_rows(&lab, "default/broken")?.trim().is_empty(),
        "NB rows for the broken gateway"
    );
    ensure!(
        lab.state()
            .pods
            .keys()
            .all(|k| !k.starts_with("default/broken")),
        "Pods for the broken gateway"
    );
    ensure!(
        gateway_rows(&lab, "default/gateway1")? == before,
        "gateway1's rows changed"
    );
    let seen = lab.ask("default/web-1", true, Duration::from_secs(1));
    ensure!(seen.is_some(), "gateway1 stopped carrying traffic");
    lab.finish()
}

fn veg_lab(state: &std::path::Path, args: &[&str]) -> Result<(i32, String)> {
    // From the checkout, as a user runs it (the default overlay is deploy/ there).
    let output = Command::new(env!("CARGO_BIN_EXE_veg"))
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .arg("lab")
        .arg("--state")
        .arg(state)
        .args(args)
        .output()?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    Ok((output.status.code().unwrap_or(-1), text))
}

/// The `veg lab` commands, as a user runs them: up in the background, get, nb, exec, kill,
/// cut, apply, delete, scale, a second up refused, the supervisor crashing, down cleaning up.
#[test]
fn the_lab_commands_work_from_the_state_directory() -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let input = std::env::temp_dir().join("le9-input");
    let state = std::env::temp_dir().join("le9-veg-lab");
    veg_lab::ovn::stop_dir(&state, &[]);
    std::fs::create_dir_all(&input)?;
    struct Cleanup(PathBuf, PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = veg_lab(&self.1, &["down"]);
            veg_lab::ovn::stop_dir(&self.1, &[]);
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
    let _cleanup = Cleanup(input.clone(), state.clone());
    let manifests = input.join("manifests.yaml");
    let topology = input.join("topology.yaml");
    std::fs::write(&manifests, V4_MANIFESTS)?;
    std::fs::write(&topology, V4_TOPOLOGY)?;

    // Not root: refused before anything is created.
    let output = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", "--"])
        .arg(env!("CARGO_BIN_EXE_veg"))
        .args(["lab", "--state"])
        .arg(&state)
        .arg("up")
        .output()?;
    let text = String::from_utf8_lossy(&output.stderr);
    ensure!(
        output.status.code() == Some(2) && text.contains("needs root") && !state.exists(),
        "as nobody: {text}"
    );

    let manifests = manifests.to_string_lossy().into_owned();
    let topology = topology.to_string_lossy().into_owned();
    let (code, text) = veg_lab(
        &state,
        &[
            "up",
            "--ovn",
            "debian",
            "--prefix",
            "le9",
            "--manifests",
            &manifests,
            "--topology",
            &topology,
            // Longer than the default 3 s: the checks of the killed Pod below (withdrawn,
            // explained, listed) must all see it dead, and under load they took over 3 s
            // (2 of 5 runs under `stress -c 2` plus a build saw it already restarted).
            "--restart-delay-ms",
            "8000",
        ],
    )?;
    ensure!(
        code == 0 && text.contains("the lab is up"),
        "up: {code} {text}"
    );
    ensure!(
        text.contains("OVN central") && text.contains("client Pods"),
        "up shows no progress: {text}"
    );
    ensure!(
        text.contains("debian OVN (ovn-nbctl 23.03") && text.contains("monitor BFD mode"),
        "up does not say which OVN and BFD mode it runs: {text}"
    );
    let (code, text) = veg_lab(
        &state,
        &["up", "--manifests", &manifests, "--topology", &topology],
    )?;
    ensure!(
        code == 2 && text.contains("already up"),
        "second up: {code} {text}"
    );

    let (_, text) = veg_lab(&state, &["get", "veg", "-o", "wide"])?;
    ensure!(
        text.lines()
            .next()
            .is_some_and(|h| h.contains("NAME") && h.contains("EXTERNAL IPS"))
            && text.contains("gateway1")
            && text.contains("Completed"),
        "get veg: {text}"
    );
    let (_, text) = veg_lab(&state, &["get", "pods"])?;
    ensure!(
        text.contains("web-1") && text.contains("gateway1-1") && text.contains("monitor"),
        "get pods: {text}"
    );
    let (code, text) = veg_lab(&state, &["nb", "--", "lr-policy-list", "ovn-cluster"])?;
    ensure!(code == 0 && text.contains("reroute"), "nb: {text}");
    // The kubelet gives each container what a runtime would (uid, bounding set, no ambient,
    // no_new_privs): the agent NET_ADMIN and NET_RAW only, bfdd nothing.
    let lab_state = veg_lab::LabState::read(&state)?;
    let mut seen = Vec::new();
    for (name, pod) in lab_state.pods.iter().filter(|(_, p)| p.role == "gateway") {
        let pids = Command::new("ip")
            .args(["netns", "pids", &pod.netns])
            .output()?;
        for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
            let cmdline = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ");
            let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
            let field = |key: &str| {
                status
                    .lines()
                    .find_map(|l| l.strip_prefix(key))
                    .map(str::trim)
                    .unwrap_or("?")
                    .to_owned()
            };
            let role = if cmdline.contains("gateway run") {
                "agent"
            } else if cmdline.contains(" bfdd ") {
                "bfdd"
            } else {
                continue;
            };
            seen.push(format!(
                "{name} {role} CapEff={} CapAmb={} NoNewPrivs={}",
                field("CapEff:"),
                field("CapAmb:"),
                field("NoNewPrivs:")
            ));
        }
    }
    seen.sort();
    ensure!(
        seen.len() == 4
            && seen
                .iter()
                .all(|line| line.contains("CapAmb=0000000000000000")
                    && line.contains("NoNewPrivs=1")
                    && if line.contains(" agent ") {
                        line.contains("CapEff=0000000000003000")
                    } else {
                        line.contains("CapEff=0000000000000000")
                    }),
        "container privileges: {seen:#?}"
    );
    let (code, text) = veg_lab(&state, &["exec", "web-1", "--", "ip", "-br", "addr"])?;
    ensure!(code == 0 && text.contains("198.18.0.21/20"), "exec: {text}");
    let (code, text) = veg_lab(&state, &["explain", "web-1"])?;
    ensure!(
        code == 0
            && text.contains("default/web-1 leaves through gateway default/gateway1, SNATed to one of 198.51.100.10, 198.51.100.11")
            && text.contains("through its selectors")
            && text.contains("in the lab's data plane now: 8 TCP connections to 198.51.100.1: ")
            && text.contains("(default/gateway1-"),
        "explain web-1: {text}"
    );
    let (_, text) = veg_lab(&state, &["explain", "app-2"])?;
    ensure!(
        text.contains("without SNAT: the outside sees 198.18.16.30"),
        "explain app-2: {text}"
    );
    let (_, text) = veg_lab(&state, &["explain", "other/db-1"])?;
    ensure!(
        text.contains("is not selected by any gateway") && text.contains("wants other Pod labels"),
        "explain db-1: {text}"
    );
    let (code, text) = veg_lab(&state, &["kill", "db-1"])?;
    ensure!(
        code == 2 && text.contains("not a gateway Pod"),
        "kill a client: {text}"
    );

    let nexthops = |state: &std::path::Path| -> usize {
        veg_lab(
            state,
            &[
                "nb",
                "--",
                "--bare",
                "--columns=nexthops",
                "find",
                "Logical_Router_Policy",
                "priority=29100",
            ],
        )
        .map(|(_, text)| {
            text.lines()
                .map(|l| l.split_whitespace().count())
                .max()
                .unwrap_or(0)
        })
        .unwrap_or(0)
    };
    let (code, text) = veg_lab(&state, &["kill", "default/gateway1-0"])?;
    ensure!(code == 0, "kill: {text}");
    let (_, text) = veg_lab(&state, &["get", "pods"])?;
    ensure!(
        text.lines()
            .any(|l| l.contains("gateway1-0") && l.contains("Killed")),
        "get pods after kill: {text}"
    );
    ensure!(
        support::wait_until(Duration::from_secs(2), || nexthops(&state) == 1),
        "kill did not withdraw gateway1-0"
    );
    ensure!(
        support::wait_until(Duration::from_secs(3), || veg_lab(
            &state,
            &["explain", "web-1"]
        )
        .is_ok_and(|(_, t)| t.contains("gateway1-0 cannot carry it: BFD Down")
            && t.contains("SNATed to 198.51.100.11"))),
        "explain after the kill: {}",
        veg_lab(&state, &["explain", "web-1"])?.1
    );
    // The kubelet restarts it (8 s after the kill here; the wait was 3 s + 7 s before).
    ensure!(
        support::wait_until(Duration::from_secs(15), || nexthops(&state) == 2),
        "gateway1-0 was not restarted"
    );
    let (code, _) = veg_lab(&state, &["cut", "gateway1-1", "--uplink"])?;
    ensure!(
        code == 0 && support::wait_until(Duration::from_secs(3), || nexthops(&state) == 1),
        "uplink cut"
    );
    let (code, _) = veg_lab(&state, &["cut", "gateway1-1", "--uplink", "--restore"])?;
    ensure!(
        code == 0 && support::wait_until(Duration::from_secs(5), || nexthops(&state) == 2),
        "uplink restore"
    );

    let bad = input.join("bad.yaml");
    std::fs::write(
        &bad,
        "apiVersion: kubeovn.io/v1\nkind: VpcEgressGateway\nmetadata: {name: broken}\nspec: {replicas: 1, externalSubnet: nope, selectors: [{podSelector: {}}]}\n",
    )?;
    let (code, text) = veg_lab(&state, &["apply", "-f", &bad.to_string_lossy()])?;
    ensure!(
        code == 0 && text.contains("default/broken applied"),
        "apply: {text}"
    );
    ensure!(
        support::wait_until(Duration::from_secs(5), || veg_lab(&state, &["get", "veg"])
            .is_ok_and(|(_, t)| t
                .lines()
                .any(|l| l.contains("broken") && l.contains("false")))),
        "the broken gateway is not listed as not ready"
    );
    let (code, text) = veg_lab(&state, &["delete", "veg", "broken"])?;
    ensure!(code == 0 && text.contains("deleted"), "delete: {text}");
    let (code, text) = veg_lab(&state, &["delete", "veg", "broken"])?;
    ensure!(
        code == 1 && text.contains("not found"),
        "delete twice: {text}"
    );
    let (code, _) = veg_lab(&state, &["scale", "veg", "gateway1", "--replicas", "3"])?;
    ensure!(
        code == 0 && support::wait_until(Duration::from_secs(15), || nexthops(&state) == 3),
        "scale to 3"
    );

    // The supervisor crashes: down still removes everything.
    let pid = std::fs::read_to_string(state.join("serve.pid"))?;
    support::run("kill", &["-KILL", pid.trim()])?;
    let (code, text) = veg_lab(&state, &["down"])?;
    ensure!(code == 0 && text.contains("is down"), "down: {text}");
    ensure!(!state.exists(), "{} left", state.display());
    let namespaces =
        String::from_utf8_lossy(&Command::new("ip").args(["netns", "list"]).output()?.stdout)
            .into_owned();
    ensure!(
        !namespaces.lines().any(|l| l.starts_with("le9")),
        "namespaces left: {namespaces}"
    );
    let processes = String::from_utf8_lossy(
        &Command::new("pgrep")
            .args(["-af", "le9-veg-lab"])
            .output()?
            .stdout,
    )
    .into_owned();
    ensure!(processes.trim().is_empty(), "processes left: {processes}");
    let (code, text) = veg_lab(&state, &["down"])?;
    ensure!(code == 0 && text.contains("no lab"), "down twice: {text}");
    Ok(())
}

/// What a process of a Pod runs as: (uid, effective capabilities, no_new_privs, root read-only),
/// for the Pod's process whose command line has `subcommand` after the binary.
fn pod_process(lab: &Lab, pod: &str, subcommand: &str) -> Result<(u32, u64, bool, bool, String)> {
    let netns = lab
        .netns(pod)
        .with_context(|| format!("{pod}'s namespace"))?;
    let pids = Command::new("ip")
        .args(["netns", "pids", &netns])
        .output()?;
    for pid in String::from_utf8_lossy(&pids.stdout).split_whitespace() {
        let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let args: Vec<String> = cmdline
            .split(|b| *b == 0)
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        if args.get(1).map(String::as_str) != Some(subcommand) {
            continue;
        }
        let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .map(str::trim)
                .unwrap_or_default()
                .to_owned()
        };
        let uid: u32 = field("Uid:")
            .split_whitespace()
            .nth(1)
            .context("Uid")?
            .parse()?;
        let effective = u64::from_str_radix(&field("CapEff:"), 16)?;
        let mounts = std::fs::read_to_string(format!("/proc/{pid}/mountinfo"))?;
        let root_read_only = mounts.lines().any(|l| {
            let fields: Vec<&str> = l.split_whitespace().collect();
            fields.get(4) == Some(&"/") && fields.get(5).is_some_and(|o| o.starts_with("ro"))
        });
        return Ok((
            uid,
            effective,
            field("NoNewPrivs:") == "1",
            root_read_only,
            args.join(" "),
        ));
    }
    bail!("no `{subcommand}` process in {pod}")
}

/// The overlay's Deployments are what runs: the controller and both monitors as their Pods'
/// security context says (uid 65534, no capability, no_new_privs, read-only root), on the
/// lab's API; when the monitor holding the NB writer lease dies, the other takes the lease and
/// withdraws the next dead instance (one monitor alone was a single point of failure).
#[test]
fn on_debian_ovn_the_shipped_monitors_run_unprivileged_and_a_second_one_takes_over() -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let mut lab = TestLab::start_with(OvnBuild::Debian, 2, "ld9", V4_MANIFESTS, V4_TOPOLOGY, None)?;
    ready(&mut lab, 2, true)?;
    for (pod, subcommand) in [
        ("kube-system/veg-controller-0", "controller"),
        ("kube-system/veg-monitor-0", "monitor"),
        ("kube-system/veg-monitor-1", "monitor"),
    ] {
        let (uid, effective, no_new_privs, read_only, command) =
            pod_process(&lab, pod, subcommand)?;
        ensure!(
            uid == 65534 && effective == 0 && no_new_privs && read_only,
            "{pod}: uid {uid}, CapEff {effective:x}, no_new_privs {no_new_privs}, read-only \
             root {read_only}: not what its Deployment says ({command})"
        );
        if subcommand == "controller" {
            ensure!(
                command.contains("--source=dir:") && command.contains("--bfd-mode=monitor"),
                "{command}"
            );
        }
    }
    let nodes: BTreeSet<String> = ["kube-system/veg-monitor-0", "kube-system/veg-monitor-1"]
        .iter()
        .filter_map(|p| lab.state().pods.get(*p).map(|p| p.node.clone()))
        .collect();
    ensure!(nodes.len() == 2, "the monitors share a node: {nodes:?}");

    // NB_Global's `veg-monitor:ovn-cluster=<holder>/<counter>` (bare).
    let holder = |lab: &Lab| -> Result<String> {
        let global = lab
            .ovn()
            .nbctl(&["--bare", "--columns=external_ids", "list", "NB_Global"])?;
        Ok(global
            .split_whitespace()
            .find_map(|kv| kv.strip_prefix("veg-monitor:ovn-cluster="))
            .and_then(|v| v.split('/').next())
            .unwrap_or_default()
            .to_owned())
    };
    let writer = holder(&lab)?;
    ensure!(
        writer.starts_with("veg-monitor-"),
        "lease holder {writer:?}"
    );
    let standby = if writer == "veg-monitor-0" {
        "veg-monitor-1"
    } else {
        "veg-monitor-0"
    };
    lab.kill(&format!("kube-system/{writer}"))?;
    let killed = Instant::now();
    // The lease runs out after 3 s without renewal.
    lab.wait(
        "the standby to take the lease",
        Duration::from_secs(6),
        |lab| Ok(holder(lab)? == standby),
    )?;
    eprintln!("writer killed → lease taken in {:?}", killed.elapsed());
    ensure!(
        nexthops(&lab, true).len() == 2,
        "the takeover changed the nexthops: {:?}",
        policies(&lab, "ovn-cluster", 29100)
    );
    let (dead, _) = instance(&lab, "gateway1-0", true).context("gateway1-0")?;
    lab.kill("default/gateway1-0")?;
    lab.wait(
        "gateway1-0 withdrawn by the new writer",
        Duration::from_secs(1),
        |lab| Ok(!nexthops(lab, true).contains(&dead)),
    )?;
    ensure!(
        nexthops(&lab, true).len() == 1,
        "{:?}",
        policies(&lab, "ovn-cluster", 29100)
    );
    lab.finish()
}

/// The lab schedules gateway Pods as kube-scheduler would by what the controller renders: a
/// gateway of three replicas whose nodeSelector picks the zone-b nodes (n2, n3), with the
/// default required anti-affinity, runs one instance on each and its third stays Pending with
/// the scheduler's reason, which the status names; scaled to two, the Pending one goes and no
/// running instance is drained.
#[test]
fn gateway_pods_go_where_their_node_selector_and_anti_affinity_let_them() -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let manifests = V4_MANIFESTS
        .replace("  replicas: 2\n", "  replicas: 3\n")
        .replace(
            "  # Instances may share a node (one-node labs; the default, Required, keeps them apart).\n  podAntiAffinity: Preferred\n",
            "  nodeSelector:\n    - matchLabels: {zone: b}\n",
        );
    ensure!(
        manifests.contains("zone: b"),
        "the manifest was not rewritten"
    );
    let topology = V4_TOPOLOGY.replace(
        "pods:",
        "nodes: [n1, n2, n3]\nnodeLabels: {n1: {zone: a}, n2: {zone: b}, n3: {zone: b}}\npods:",
    );
    let mut lab = TestLab::start_with(OvnBuild::KubeOvn, 3, "ls1", &manifests, &topology, None)?;
    // Not Completed: one of three replicas cannot run.
    lab.wait(
        "two instances as nexthops",
        Duration::from_secs(40),
        |lab| Ok(nexthops(lab, true).len() == 2 && bfd_rows_up(lab, true, 2)),
    )?;
    // The status says why the third cannot run.
    let reason = "0/3 nodes are available: 1 node(s) didn't match Pod's node affinity/selector, \
                  2 node(s) didn't match pod anti-affinity rules.";
    let wanted =
        format!("Deployment gateway1 is not ready: pod gateway1-2 cannot be scheduled: {reason}");
    lab.wait(
        "the status to name the scheduler's reason",
        Duration::from_secs(5),
        |lab| {
            Ok(lab.status("default", "gateway1")["conditions"]
                .as_array()
                .into_iter()
                .flatten()
                .any(|c| {
                    c["type"] == "Ready"
                        && c["reason"] == "Unschedulable"
                        && c["message"] == wanted.as_str()
                }))
        },
    )?;
    let state = lab.state();
    let node = |pod: &str| state.pods.get(pod).map(|p| p.node.clone());
    ensure!(
        node("default/gateway1-0").as_deref() == Some("n2")
            && node("default/gateway1-1").as_deref() == Some("n3")
            && state
                .pods
                .get("default/gateway1-2")
                .map(|p| p.state.as_str())
                == Some("Pending"),
        "placement: {:?}",
        state.pods
    );
    let pending = veg_lab::api::find(
        lab.api_dir(),
        &("Pod".into(), "default".into(), "gateway1-2".into()),
    )?
    .map(|(_, pod)| pod)
    .context("no gateway1-2 Pod")?;
    ensure!(
        pending["status"]["phase"] == "Pending"
            && pending["status"]["conditions"][0]["message"] == reason,
        "gateway1-2: {pending}"
    );
    // Scaled to two, the Pending Pod goes first (as a ReplicaSet ranks them) and no running
    // instance is drained: both stay nexthops all along.
    veg_lab::api::scale(lab.api_dir(), "default", "gateway1", 2)?;
    let mut fewest = 2;
    lab.wait(
        "the Pending Pod gone and Completed",
        Duration::from_secs(20),
        |lab| {
            fewest = fewest.min(nexthops(lab, true).len());
            Ok(veg_lab::api::find(
                lab.api_dir(),
                &("Pod".into(), "default".into(), "gateway1-2".into()),
            )?
            .is_none()
                && lab.status("default", "gateway1")["phase"] == "Completed")
        },
    )?;
    ensure!(
        fewest == 2 && nexthops(&lab, true).len() == 2,
        "an instance was drained: {:?}",
        policies(&lab, "ovn-cluster", 29100)
    );
    let state = lab.state();
    ensure!(
        state.pods["default/gateway1-0"].node == "n2"
            && state.pods["default/gateway1-1"].node == "n3",
        "{:?}",
        state.pods
    );
    lab.finish()
}

/// Two tenants: namespace `default` (tenant A: gateway1, subnet1 and the tenant VPC vpc-a are
/// bound to it) and namespace `other` (tenant B). The external attachment lives in
/// kube-system, an admin namespace, so both may use it.
const TENANT_MANIFESTS: &str = r#"
apiVersion: kubeovn.io/v1
kind: Vpc
metadata: {name: ovn-cluster}
spec: {}
status: {router: ovn-cluster, defaultLogicalSwitch: ovn-default, bfdPort: {name: bfd@ovn-cluster, ip: 198.18.0.253}}
---
apiVersion: kubeovn.io/v1
kind: Vpc
metadata: {name: vpc-a}
spec: {namespaces: [default]}
status: {router: vpc-a}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: ovn-default}
spec: {protocol: IPv4, cidrBlock: 198.18.0.0/20, gateway: 198.18.0.1, provider: ovn}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: subnet1}
spec: {protocol: IPv4, cidrBlock: 198.18.16.0/20, gateway: 198.18.16.1, namespaces: [default]}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: macvlan1}
spec: {protocol: IPv4, cidrBlock: 198.51.100.0/24, gateway: 198.51.100.1, provider: eth1.kube-system}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: eth1, namespace: kube-system}
spec: {config: '{"cniVersion": "0.3.0", "type": "macvlan"}'}
---
apiVersion: kubeovn.io/v1
kind: VpcEgressGateway
metadata: {name: gateway1, namespace: default}
spec:
  replicas: 2
  externalSubnet: macvlan1
  podAntiAffinity: Preferred
  bfd: {enabled: true, minRX: 100, minTX: 100, multiplier: 3}
  selectors:
    - podSelector: {matchLabels: {egress: "yes"}}
  policies:
    - {snat: true, subnets: [subnet1]}
"#;

/// Tenant B's db-1 carries the label tenant A's selector matches.
const TENANT_TOPOLOGY: &str = r#"
pods:
  - {name: web-1, subnet: ovn-default, ips: [198.18.0.21], labels: {egress: "yes"}}
  - {name: web-2, subnet: ovn-default, ips: [198.18.0.22], labels: {egress: "yes"}}
  - {name: app-1, namespace: other, subnet: subnet1, ips: [198.18.16.21]}
  - {name: db-1, namespace: other, subnet: ovn-default, ips: [198.18.0.31], labels: {egress: "yes"}}
"#;

/// Tenant B tries every capture of tenant A's traffic while A's flow is probed every 5 ms:
/// its Pods, its subnet, everything (0.0.0.0/0), its VPC, its subnet as the internal one, and
/// a gateway of B selecting A's Pods by label. The refused gateways get NotPermitted naming the
/// field and no NB row and no Pod; the legitimate one carries only B's own Pod; A's rows never
/// change and its flow never stalls.
#[test]
fn one_tenant_cannot_capture_anothers_traffic() -> Result<()> {
    if !support::require("the lab e2e", &TOOLS) {
        return Ok(());
    }
    let _one = lock();
    let mut lab = TestLab::start("lt1", TENANT_MANIFESTS, TENANT_TOPOLOGY, None)?;
    ready(&mut lab, 2, true)?;
    let group = |lab: &Lab, namespace: &str, name: &str| -> Result<String> {
        Ok(lab
            .ovn()
            .nbctl(&[
                "--bare",
                "--columns=ports",
                "find",
                "Port_Group",
                &format!("name={}", veg_api::names::port_group(namespace, name)),
            ])?
            .trim()
            .to_owned())
    };
    // ovn-nbctl lists rows in hash order: compare the lines, sorted.
    let rows_of = |lab: &Lab| -> Result<Vec<String>> {
        let mut lines: Vec<String> = gateway_rows(lab, "default/gateway1")?
            .lines()
            .map(str::to_owned)
            .collect();
        lines.sort();
        Ok(lines)
    };
    let a_rows = rows_of(&lab)?;
    let a_group = group(&lab, "default", "gateway1")?;
    // A's selector matches db-1 too, which is B's: left out.
    ensure!(
        lab.state().pods.contains_key("other/db-1")
            && lab.status("default", "gateway1")["conditions"]
                .as_array()
                .is_some_and(|c| c.iter().any(|c| c["type"] == "Validated"
                    && c["message"]
                        .as_str()
                        .unwrap_or_default()
                        .contains("1 namespace(s)"))),
        "gateway1 does not say it left B's Pod out: {:#}",
        lab.status("default", "gateway1")
    );
    let a_external: BTreeSet<String> = ["gateway1-0", "gateway1-1"]
        .iter()
        .filter_map(|pod| instance(&lab, pod, true))
        .map(|(_, external)| external.to_string())
        .collect();
    let seen = lab.ask("other/db-1", true, Duration::from_millis(500));
    ensure!(
        seen.is_none(),
        "B's db-1 left through A's gateway as {seen:?}"
    );

    let web = lab.netns("default/web-1").context("web-1's namespace")?;
    let target = *lab
        .state()
        .external_addresses
        .first()
        .context("no external host")?;
    let probe = GapProbe::start(lab.state_dir(), &web, target, Duration::from_secs(12))?;
    ensure!(
        a_external.contains(probe.via()),
        "web-1 is seen as {}, not as gateway1 ({a_external:?})",
        probe.via()
    );

    let b_gateway = |name: &str, spec: &str| {
        format!(
            "apiVersion: kubeovn.io/v1\nkind: VpcEgressGateway\nmetadata: {{name: {name}, namespace: other}}\nspec:\n  replicas: 1\n  externalSubnet: macvlan1\n  podAntiAffinity: Preferred\n{spec}"
        )
    };
    let refused = [
        (
            "b-everything",
            "  policies:\n    - {snat: true, ipBlocks: [0.0.0.0/0]}\n",
            "spec.policies[0].ipBlocks[0]",
        ),
        (
            "b-subnet",
            "  policies:\n    - {snat: true, subnets: [subnet1]}\n",
            "spec.policies[0].subnets[0]",
        ),
        (
            "b-vpc",
            "  vpc: vpc-a\n  selectors:\n    - {}\n",
            "spec.vpc",
        ),
        (
            "b-internal",
            "  internalSubnet: subnet1\n  selectors:\n    - podSelector: {matchLabels: {egress: \"yes\"}}\n",
            "spec.internalSubnet",
        ),
    ];
    let mut manifests: Vec<String> = refused
        .iter()
        .map(|(name, spec, _)| b_gateway(name, spec))
        .collect();
    // Allowed: a podSelector with no namespaceSelector (every namespace, Kube-OVN's reading)
    // picks web-1, web-2 and db-1 by label; only B's own db-1 is B's to steer.
    manifests.push(b_gateway(
        "b-own",
        "  selectors:\n    - podSelector: {matchLabels: {egress: \"yes\"}}\n",
    ));
    veg_lab::api::apply(lab.api_dir(), &manifests.join("---\n"))?;

    for (name, _, field) in &refused {
        lab.wait(&format!("{name} refused"), Duration::from_secs(15), |lab| {
            Ok(lab.status("other", name)["conditions"]
                .as_array()
                .is_some_and(|c| {
                    c.iter().any(|c| {
                        c["type"] == "Validated"
                            && c["reason"] == "NotPermitted"
                            && c["message"]
                                .as_str()
                                .is_some_and(|m| m.starts_with(&format!("{field}: ")))
                    })
                }))
        })?;
    }
    lab.wait("b-own ready", Duration::from_secs(40), |lab| {
        Ok(lab.status("other", "b-own")["phase"] == "Completed")
    })?;
    let report = probe.finish()?;

    for (name, _, _) in &refused {
        ensure!(
            gateway_rows(&lab, &format!("other/{name}"))?
                .trim()
                .is_empty(),
            "NB rows for the refused {name}"
        );
        ensure!(
            lab.state()
                .pods
                .keys()
                .all(|k| !k.starts_with(&format!("other/{name}"))),
            "Pods for the refused {name}"
        );
    }
    let b_group = group(&lab, "other", "b-own")?;
    let db_port = lab.nb(&[
        "--bare",
        "--columns=_uuid",
        "find",
        "Logical_Switch_Port",
        "name=db-1.other",
    ])?;
    ensure!(
        b_group == db_port.trim(),
        "b-own's Port_Group is [{b_group}], not db-1.other's port [{}]",
        db_port.trim()
    );
    let (rows_after, group_after) = (rows_of(&lab)?, group(&lab, "default", "gateway1")?);
    ensure!(
        rows_after == a_rows && group_after == a_group,
        "tenant A's rows changed:\n{a_rows:?}\n[{a_group}]\n-- now --\n{rows_after:?}\n[{group_after}]"
    );
    let b_external: Vec<String> = ips(&lab.status("other", "b-own")["gateways"][0], "externalIPs")
        .iter()
        .map(ToString::to_string)
        .collect();
    let seen = lab.ask("other/db-1", true, Duration::from_secs(1));
    ensure!(
        seen.as_ref().is_some_and(|s| b_external.contains(s)),
        "B's db-1 is seen as {seen:?}, not as b-own ({b_external:?})"
    );
    let seen = lab.ask("default/web-1", true, Duration::from_secs(1));
    ensure!(
        seen.as_ref().is_some_and(|s| a_external.contains(s)),
        "A's web-1 is seen as {seen:?}, not as gateway1 ({a_external:?})"
    );
    ensure!(
        report.gap_ms < 150.0
            && report
                .after
                .as_deref()
                .is_some_and(|s| a_external.contains(s)),
        "A's flow stalled for {:.0} ms while B tried, then went through {:?}\n{}",
        report.gap_ms,
        report.after,
        lab.logs()
    );
    eprintln!(
        "tenant A's flow while B tried: longest silence {:.1} ms",
        report.gap_ms
    );
    lab.finish()
}
