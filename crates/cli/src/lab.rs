//! `veg lab demo`: the product description's scenario on one machine — a real OVN, veg's
//! controller (monitor mode), `veg monitor`, the lab's kubelet running gateway Pods with
//! `veg gateway` and `veg bfdd`, client Pods, an external host — then failover, scaling and
//! deletion, with what happens printed as it happens. Everything is removed at the end, also
//! when a step fails.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::{Args, Subcommand};
use veg_lab::kubelet::{Kubelet, KubeletSubnet};
use veg_lab::{LabPod, LabSubnet, Ovn, OvnConfig};

/// `veg lab`.
#[derive(Debug, Args)]
pub struct LabArgs {
    #[command(subcommand)]
    command: LabCommand,
}

#[derive(Debug, Subcommand)]
enum LabCommand {
    /// Run the demo end to end (needs root; scripts/install-deps.sh installs the packages).
    Demo {
        /// The examples directory (its nad.yaml, subnets.yaml and lab/).
        #[arg(long, default_value = "examples")]
        examples: PathBuf,
    },
}

/// Runs a `veg lab` command.
pub fn run(args: LabArgs) -> anyhow::Result<ExitCode> {
    match args.command {
        LabCommand::Demo { examples } => demo(&examples),
    }
}

const ECHO: &str = r#"
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", 7777)); s.listen(64)
print("ready", flush=True)
while True:
    c, peer = s.accept(); c.sendall((peer[0] + "\n").encode()); c.close()
"#;

/// One TCP connection to the external host; prints the source it saw (nothing on failure).
const ASK: &str = r#"
import socket, sys
try:
    s = socket.create_connection(("198.51.100.1", 7777), timeout=float(sys.argv[1]))
    print(s.recv(100).decode().strip())
except OSError:
    pass
"#;

fn net(text: &str) -> anyhow::Result<ipnet::IpNet> {
    text.parse()
        .with_context(|| format!("{text} is not a CIDR"))
}

fn ip(text: &str) -> anyhow::Result<IpAddr> {
    text.parse()
        .with_context(|| format!("{text} is not an address"))
}

struct Demo {
    dir: PathBuf,
    children: Vec<Child>,
    started: Instant,
}

impl Drop for Demo {
    fn drop(&mut self) {
        for child in &mut self.children {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Demo {
    fn say(&self, text: &str) {
        println!("[{:>6.2}s] {text}", self.started.elapsed().as_secs_f64());
    }

    fn ask(&self, netns: &str, timeout: f64) -> Option<String> {
        let output = Command::new("ip")
            .args(["netns", "exec", netns, "python3"])
            .arg(self.dir.join("ask.py"))
            .arg(timeout.to_string())
            .output()
            .ok()?;
        let seen = String::from_utf8_lossy(&output.stdout).trim().to_owned();
        (!seen.is_empty()).then_some(seen)
    }

    fn status(&self, decisions: &Path) -> serde_json::Value {
        std::fs::read_to_string(decisions.join("status/default.gateway1.json"))
            .ok()
            .and_then(|text| serde_json::from_str(&text).ok())
            .unwrap_or_default()
    }
}

fn deployment(decisions: &Path) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(decisions.join("deployments/default.gateway1.json")).ok()?;
    serde_json::from_str(&text).ok()
}

fn wait(
    what: &str,
    limit: Duration,
    mut done: impl FnMut() -> anyhow::Result<bool>,
) -> anyhow::Result<()> {
    let deadline = Instant::now() + limit;
    loop {
        if done()? {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("{what}: not within {limit:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// The `kubectl get veg -o wide` line of the gateway's status.
fn table(status: &serde_json::Value) -> String {
    let list = |key: &str| {
        status[key]
            .as_array()
            .map(|items| {
                items
                    .iter()
                    .filter_map(|i| i.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_default()
    };
    let nodes = status["workload"]["nodes"]
        .as_array()
        .map(|n| {
            n.iter()
                .filter_map(|i| i.as_str())
                .collect::<Vec<_>>()
                .join(",")
        })
        .unwrap_or_default();
    format!(
        "NAME       VPC          REPLICAS  BFD   EXTERNAL  PHASE       READY  INTERNAL IPS                 EXTERNAL IPS                   NODES\n\
         gateway1   ovn-cluster  {:<8}  true  macvlan1  {:<10}  {:<5}  {:<27}  {:<29}  {nodes}",
        status["replicas"].as_i64().unwrap_or(0),
        status["phase"].as_str().unwrap_or("-"),
        status["ready"].as_bool().unwrap_or(false),
        list("internalIPs"),
        list("externalIPs"),
    )
}

fn demo(examples: &Path) -> anyhow::Result<ExitCode> {
    veg_lab::ovn::check_prerequisites().map_err(|error| anyhow::anyhow!("{error}"))?;
    let veg = std::env::current_exe().context("where is veg?")?;
    let id = format!("vd{}", std::process::id() % 10000);
    let dir = std::env::temp_dir().join(format!("{id}-veg-lab"));
    let mut demo = Demo {
        dir: dir.clone(),
        children: Vec::new(),
        started: Instant::now(),
    };
    demo.say(&format!("starting OVN under {}", dir.display()));
    let ovn = Ovn::start(
        &OvnConfig {
            state_dir: dir.clone(),
            prefix: id.clone(),
            chassis: "lab-node".into(),
        },
        &mut |stage, at| println!("[{:>6.2}s]   {stage}", at.as_secs_f64()),
    )?;
    let outcome = scenario(&mut demo, &ovn, &veg, examples);
    if outcome.is_err() {
        let mut logs = vec![dir.join("veg-controller.log"), dir.join("veg-monitor.log")];
        for entry in std::fs::read_dir(dir.join("pods"))
            .into_iter()
            .flatten()
            .flatten()
        {
            for name in ["gateway.log", "bfdd.log"] {
                logs.push(entry.path().join(name));
            }
        }
        for log in logs {
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            let log = log.display();
            let tail: Vec<&str> = text.lines().rev().take(15).collect();
            println!("--- last lines of {log}:");
            for line in tail.iter().rev() {
                println!("{line}");
            }
        }
    }
    demo.say("taking the lab down");
    drop(demo);
    drop(ovn);
    let leftovers = dir.exists();
    match outcome {
        Ok(()) if !leftovers => {
            println!("done: every process, namespace and file of the lab is gone");
            Ok(ExitCode::SUCCESS)
        }
        Ok(()) => bail!("{} was left behind", dir.display()),
        Err(error) => Err(error),
    }
}

fn scenario(demo: &mut Demo, ovn: &Ovn, veg: &Path, examples: &Path) -> anyhow::Result<()> {
    let dir = demo.dir.clone();
    // Kube-OVN's part: router, subnets, a join-like default route; the external network.
    ovn.add_router("ovn-cluster")?;
    let ovn_default = LabSubnet {
        name: "ovn-default".into(),
        cidrs: vec![net("198.18.0.0/20")?],
        gateways: vec![ip("198.18.0.1")?],
    };
    let subnet1 = LabSubnet {
        name: "subnet1".into(),
        cidrs: vec![net("198.18.16.0/20")?],
        gateways: vec![ip("198.18.16.1")?],
    };
    let macvlan1 = LabSubnet {
        name: "macvlan1".into(),
        cidrs: vec![net("198.51.100.0/24")?],
        gateways: vec![ip("198.51.100.1")?],
    };
    ovn.add_subnet("ovn-cluster", &ovn_default)?;
    ovn.add_subnet("ovn-cluster", &subnet1)?;
    ovn.nbctl(&["lr-route-add", "ovn-cluster", "0.0.0.0/0", "198.18.15.254"])?;
    let external = ovn.add_external(&[net("198.51.100.1/24")?])?;
    std::fs::write(dir.join("echo.py"), ECHO)?;
    std::fs::write(dir.join("ask.py"), ASK)?;
    let echo_log = dir.join("echo.log");
    demo.children.push(
        Command::new("ip")
            .args(["netns", "exec", &external, "python3"])
            .arg(dir.join("echo.py"))
            .stdout(std::fs::File::create(&echo_log)?)
            .stderr(Stdio::null())
            .spawn()?,
    );
    demo.say("OVN topology: router ovn-cluster, ovn-default 198.18.0.0/20, subnet1 198.18.16.0/20, external 198.51.100.0/24 (host .1)");

    // Client Pods.
    let clients = [
        (
            "web-1",
            "default",
            "ovn-default",
            "198.18.0.21",
            "selected by namespace: SNAT",
        ),
        (
            "web-2",
            "default",
            "ovn-default",
            "198.18.0.22",
            "selected by namespace: SNAT",
        ),
        (
            "app-1",
            "other",
            "subnet1",
            "198.18.16.21",
            "policy subnet1: SNAT",
        ),
        (
            "app-2",
            "other",
            "subnet1",
            "198.18.16.30",
            "policy ipBlock, snat: false: forwarded",
        ),
        (
            "db-1",
            "other",
            "ovn-default",
            "198.18.0.31",
            "not selected: no egress",
        ),
    ];
    let mut manifests_text = String::new();
    let mut client_ns = BTreeMap::new();
    for (index, (name, namespace, subnet, address, _)) in clients.iter().enumerate() {
        let subnet = if *subnet == "subnet1" {
            &subnet1
        } else {
            &ovn_default
        };
        let prefix = subnet.cidrs[0].prefix_len();
        let netns = ovn.add_pod(
            &subnet.name,
            &LabPod {
                name: (*name).into(),
                namespace: (*namespace).into(),
                addresses: vec![net(&format!("{address}/{prefix}"))?],
                gateways: subnet.gateways.clone(),
            },
            index,
        )?;
        client_ns.insert(*name, netns);
        manifests_text.push_str(&format!(
            "---\napiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {namespace}\n  annotations: {{ovn.kubernetes.io/allocated: \"true\", ovn.kubernetes.io/logical_router: ovn-cluster}}\nspec: {{containers: [], nodeName: lab-node}}\nstatus: {{phase: Running, podIPs: [{{ip: {address}}}]}}\n"
        ));
    }
    let monitor_ns = ovn.add_pod(
        "ovn-default",
        &LabPod {
            name: "veg-monitor".into(),
            namespace: "kube-system".into(),
            addresses: vec![net("198.18.0.253/20")?],
            gateways: vec![ip("198.18.0.1")?],
        },
        clients.len(),
    )?;
    demo.say("client Pods: web-1, web-2 (default), app-1, app-2 (other, subnet1), db-1 (other)");

    // The API objects.
    let manifests = dir.join("manifests");
    let decisions = dir.join("decisions");
    std::fs::create_dir_all(&manifests)?;
    for file in ["nad.yaml", "subnets.yaml", "lab/cluster.yaml"] {
        let target = manifests.join(file.replace('/', "-"));
        std::fs::copy(examples.join(file), &target)
            .with_context(|| format!("{}", examples.join(file).display()))?;
    }
    std::fs::write(manifests.join("clients.yaml"), manifests_text)?;
    let gateway_manifest = manifests.join("gateway.yaml");
    std::fs::copy(examples.join("lab/gateway.yaml"), &gateway_manifest)?;

    // veg: the controller (monitor mode) and the monitor.
    demo.children.push(
        Command::new(veg)
            .args([
                "controller",
                "--source",
                &format!("dir:{}", manifests.display()),
            ])
            .args([
                "--output",
                &decisions.to_string_lossy(),
                "--nb",
                &ovn.nb_remote(),
            ])
            .args([
                "--bfd-mode",
                "monitor",
                "--poll-ms",
                "100",
                "--log-format",
                "json",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("veg-controller.log"))?)
            .spawn()?,
    );
    demo.children.push(
        Command::new("ip")
            .args(["netns", "exec", &monitor_ns])
            .arg(veg)
            .args(["monitor", "--nb", &ovn.nb_remote(), "--vpc", "ovn-cluster"])
            .args(["--local", "198.18.0.253", "--holder", "lab-monitor"])
            .args([
                "--control-socket",
                &dir.join("monitor.sock").to_string_lossy(),
            ])
            .args(["--log-format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(dir.join("veg-monitor.log"))?)
            .spawn()?,
    );
    demo.say("veg controller (monitor mode) and veg monitor (198.18.0.253) started");

    // The kubelet: Deployment → gateway Pods.
    let mut kubelet = Kubelet::new(
        veg,
        &manifests,
        &dir.join("pods"),
        vec![
            KubeletSubnet {
                subnet: ovn_default.clone(),
                provider: "ovn".into(),
            },
            KubeletSubnet {
                subnet: subnet1.clone(),
                provider: "ovn".into(),
            },
            KubeletSubnet {
                subnet: macvlan1.clone(),
                provider: "eth1.default".into(),
            },
        ],
    );
    for (_, _, _, address, _) in &clients {
        kubelet.reserve(ip(address)?);
    }
    kubelet.reserve(ip("198.18.0.253")?);
    let mut applied = serde_json::Value::Null;
    let sync = |kubelet: &mut Kubelet, applied: &mut serde_json::Value| -> anyhow::Result<()> {
        if let Some(deployment) = deployment(&decisions)
            && deployment["spec"] != applied["spec"]
        {
            kubelet.apply_deployment(ovn, &deployment)?;
            *applied = deployment;
        }
        Ok(())
    };
    let nexthops = || -> usize {
        ovn.nbctl(&[
            "--bare",
            "--columns=nexthops",
            "find",
            "Logical_Router_Policy",
            "priority=29100",
        ])
        .unwrap_or_default()
        .lines()
        .map(|line| line.split_whitespace().count())
        .max()
        .unwrap_or(0)
    };
    wait(
        "gateway Pods and their BFD sessions",
        Duration::from_secs(30),
        || {
            sync(&mut kubelet, &mut applied)?;
            Ok(nexthops() == 2)
        },
    )?;
    ovn.sync()?;
    wait("the gateway's status", Duration::from_secs(10), || {
        Ok(demo.status(&decisions)["phase"] == "Completed")
    })?;
    demo.say("gateway1 is Ready (both instances' BFD sessions Up):");
    println!("{}", table(&demo.status(&decisions)));
    println!("\n$ ovn-nbctl lr-policy-list ovn-cluster");
    print!("{}", ovn.nbctl(&["lr-policy-list", "ovn-cluster"])?);

    // The forward-only source needs a way back: a return route on the external host.
    let first_external = demo.status(&decisions)["externalIPs"][0]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    let _ = Command::new("ip")
        .args([
            "-n",
            &external,
            "route",
            "add",
            "198.18.16.30/32",
            "via",
            &first_external,
        ])
        .status();

    println!();
    for (name, _, _, address, why) in &clients {
        let netns = &client_ns[name];
        let seen: std::collections::BTreeSet<String> =
            (0..6).filter_map(|_| demo.ask(netns, 0.5)).collect();
        let seen = if seen.is_empty() {
            "nothing (no egress)".to_owned()
        } else {
            seen.into_iter().collect::<Vec<_>>().join(", ")
        };
        println!("  {name:<6} {address:<13} {why:<40} → the external host sees {seen}");
    }

    // Failover: an instance crashes.
    let web = client_ns["web-1"].clone();
    let mut spread = BTreeMap::new();
    for _ in 0..20 {
        if let Some(seen) = demo.ask(&web, 0.5) {
            *spread.entry(seen).or_insert(0) += 1;
        }
    }
    println!("\n  20 connections from web-1, by gateway external address: {spread:?}");
    demo.say("gateway1-0 dies (its processes are killed and its links go down)");
    kubelet.kill_containers("gateway1-0");
    if let Some(netns) = kubelet.namespace_of("gateway1-0") {
        for link in ["eth0", "net1"] {
            let _ = Command::new("ip")
                .args(["-n", netns, "link", "set", link, "down"])
                .status();
        }
    }
    let crashed = Instant::now();
    let mut longest_gap = Duration::ZERO;
    let mut last_ok = crashed;
    while crashed.elapsed() < Duration::from_secs(3) {
        let at = Instant::now();
        if demo.ask(&web, 0.2).is_some() {
            longest_gap = longest_gap.max(at.duration_since(last_ok));
            last_ok = Instant::now();
        }
    }
    println!(
        "  longest time without a successful connection from web-1: {} ms (connection attempts time out after 200 ms)",
        longest_gap.as_millis()
    );
    println!(
        "  nexthops now: {}",
        ovn.nbctl(&[
            "--bare",
            "--columns=nexthops",
            "find",
            "Logical_Router_Policy",
            "priority=29100"
        ])?
        .lines()
        .next()
        .unwrap_or_default()
    );
    wait(
        "the status to show the crash",
        Duration::from_secs(5),
        || {
            Ok(demo.status(&decisions)["gateways"]
                .as_array()
                .is_some_and(|g| {
                    g.iter()
                        .any(|i| i["pod"] == "gateway1-0" && i["bfd"] == "Down")
                }))
        },
    )?;
    for instance in demo.status(&decisions)["gateways"]
        .as_array()
        .into_iter()
        .flatten()
    {
        println!(
            "  status: instance {} ({}) bfd {}",
            instance["pod"].as_str().unwrap_or(""),
            instance["internalIPs"][0].as_str().unwrap_or(""),
            instance["bfd"].as_str().unwrap_or("")
        );
    }

    // Restore: the Pod is recreated.
    kubelet.delete_pod(ovn, "default", "gateway1-0")?;
    applied = serde_json::Value::Null;
    wait("the recreated instance", Duration::from_secs(20), || {
        sync(&mut kubelet, &mut applied)?;
        Ok(nexthops() == 2)
    })?;
    demo.say("gateway1-0 recreated; both instances are nexthops again");

    // Scale to 3 and back to 2.
    let text = std::fs::read_to_string(&gateway_manifest)?;
    std::fs::write(
        &gateway_manifest,
        text.replace("replicas: 2", "replicas: 3"),
    )?;
    wait("three instances", Duration::from_secs(30), || {
        sync(&mut kubelet, &mut applied)?;
        Ok(nexthops() == 3)
    })?;
    demo.say("scaled to 3: three nexthops");
    std::fs::write(&gateway_manifest, text)?;
    wait("back to two instances", Duration::from_secs(30), || {
        sync(&mut kubelet, &mut applied)?;
        Ok(nexthops() == 2 && applied["spec"]["replicas"] == 2)
    })?;
    demo.say("scaled back to 2: the leaving instance left the nexthops first, then its Pod went");

    // Delete: no OVN row is left.
    std::fs::remove_file(&gateway_manifest)?;
    wait(
        "the gateway's OVN rows to go",
        Duration::from_secs(10),
        || {
            let rows = ovn.nbctl(&[
                "--bare",
                "--columns=_uuid",
                "find",
                "Logical_Router_Policy",
                "external_ids:vpc-egress-gateway=\"default/gateway1\"",
            ])? + &ovn.nbctl(&[
                "--bare",
                "--columns=_uuid",
                "find",
                "Address_Set",
                "external_ids:vpc-egress-gateway=\"default/gateway1\"",
            ])? + &ovn.nbctl(&[
                "--bare",
                "--columns=_uuid",
                "find",
                "Port_Group",
                "external_ids:vpc-egress-gateway=\"default/gateway1\"",
            ])?;
            Ok(rows.trim().is_empty())
        },
    )?;
    demo.say("gateway1 deleted: no Logical_Router_Policy, Address_Set or Port_Group of it is left");
    println!("\n$ ovn-nbctl lr-policy-list ovn-cluster");
    print!("{}", ovn.nbctl(&["lr-policy-list", "ovn-cluster"])?);
    drop(kubelet);
    Ok(())
}
