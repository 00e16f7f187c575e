//! The whole system on one machine: real OVN (veg-lab), `veg controller` on a manifest
//! directory, the lab's kubelet turning its Deployment into a gateway Pod that runs
//! `veg gateway init|run` — and a client Pod selected by the gateway reaching the external
//! host, which sees the gateway's external address. Needs root and the OVN/OVS packages;
//! under CI=true a missing one fails.

use std::net::IpAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use veg_lab::kubelet::{Kubelet, KubeletSubnet};
use veg_lab::{LabPod, LabSubnet, Ovn, OvnConfig};

const MANIFESTS: &str = r#"
apiVersion: kubeovn.io/v1
kind: Vpc
metadata: {name: ovn-cluster}
spec: {}
status: {router: ovn-cluster, defaultLogicalSwitch: ovn-default}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: ovn-default}
spec: {cidrBlock: 198.18.0.0/16, gateway: 198.18.0.1, provider: ovn}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: macvlan1}
spec: {cidrBlock: 198.51.100.0/24, gateway: 198.51.100.1, provider: eth1.default}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: eth1, namespace: default}
spec: {config: '{"cniVersion": "0.3.0", "type": "macvlan"}'}
---
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {kubernetes.io/metadata.name: default}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
  annotations: {ovn.kubernetes.io/allocated: "true", ovn.kubernetes.io/logical_router: ovn-cluster}
spec: {containers: [], nodeName: lab-node}
status: {phase: Running, podIPs: [{ip: 198.18.0.20}]}
---
apiVersion: kubeovn.io/v1
kind: VpcEgressGateway
metadata: {name: gateway1, namespace: default}
spec:
  replicas: 1
  externalSubnet: macvlan1
  selectors:
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: default}
"#;

const ECHO: &str = r#"
import socket, sys, threading
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("0.0.0.0", int(sys.argv[1]))); s.listen(16)
print("ready", flush=True)
while True:
    c, peer = s.accept(); c.sendall((peer[0] + "\n").encode()); c.close()
"#;

const ASK: &str = r#"
import socket, sys
for attempt in range(30):
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=1)
        print(s.recv(100).decode().strip()); break
    except OSError:
        continue
"#;

struct Guard(Vec<Child>);

impl Drop for Guard {
    fn drop(&mut self) {
        for child in &mut self.0 {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn net(text: &str) -> ipnet::IpNet {
    text.parse()
        .unwrap_or_else(|_| ipnet::IpNet::from(IpAddr::from([0, 0, 0, 0])))
}

fn ip(text: &str) -> IpAddr {
    text.parse().unwrap_or(IpAddr::from([0, 0, 0, 0]))
}

fn deployments(dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_dir(dir.join("deployments"))
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter(|e| e.path().extension().is_some_and(|x| x == "json"))
                .filter_map(|e| serde_json::from_str(&std::fs::read_to_string(e.path()).ok()?).ok())
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_selected_pod_leaves_through_the_gateway_snat() -> Result<()> {
    match veg_lab::ovn::check_prerequisites() {
        Ok(()) => {}
        Err(error) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("the lab cannot run under CI: {error}")
        }
        Err(error) => {
            eprintln!("skipped: {error}");
            return Ok(());
        }
    }
    let id = format!("ve{}", std::process::id() % 10000);
    let dir = std::env::temp_dir().join(format!("{id}-lab"));
    let started = Instant::now();
    let ovn = Ovn::start(
        &OvnConfig {
            state_dir: dir.clone(),
            prefix: id.clone(),
            chassis: format!("{id}-chassis"),
        },
        &mut |_, _| {},
    )?;
    // Kube-OVN's part: the router, the subnet, a join-like default route, the external network.
    ovn.add_router("ovn-cluster")?;
    let internal = LabSubnet {
        name: "ovn-default".into(),
        cidrs: vec![net("198.18.0.0/16")],
        gateways: vec![ip("198.18.0.1")],
    };
    ovn.add_subnet("ovn-cluster", &internal)?;
    ovn.nbctl(&["lr-route-add", "ovn-cluster", "0.0.0.0/0", "198.18.255.254"])?;
    let external_ns = ovn.add_external(&[net("198.51.100.1/24")])?;
    let web = ovn.add_pod(
        "ovn-default",
        &LabPod {
            name: "web".into(),
            namespace: "default".into(),
            addresses: vec![net("198.18.0.20/16")],
            gateways: vec![ip("198.18.0.1")],
        },
        0,
    )?;
    let manifests = dir.join("manifests");
    let output = dir.join("decisions");
    std::fs::create_dir_all(&manifests)?;
    std::fs::write(manifests.join("cluster.yaml"), MANIFESTS)?;
    std::fs::write(dir.join("echo.py"), ECHO)?;
    std::fs::write(dir.join("ask.py"), ASK)?;

    let mut guard = Guard(Vec::new());
    let echo_log = dir.join("echo.log");
    guard.0.push(
        Command::new("ip")
            .args(["netns", "exec", &external_ns, "python3"])
            .arg(dir.join("echo.py"))
            .arg("7777")
            .stdout(std::fs::File::create(&echo_log)?)
            .stderr(Stdio::null())
            .spawn()?,
    );
    let controller_log = dir.join("veg-controller.log");
    guard.0.push(
        Command::new(env!("CARGO_BIN_EXE_veg"))
            .args([
                "controller",
                "--source",
                &format!("dir:{}", manifests.display()),
            ])
            .args([
                "--output",
                &output.to_string_lossy(),
                "--nb",
                &ovn.nb_remote(),
            ])
            .args([
                "--bfd-mode",
                "auto",
                "--poll-ms",
                "100",
                "--log-format",
                "json",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&controller_log)?)
            .spawn()?,
    );
    let log = || std::fs::read_to_string(&controller_log).unwrap_or_default();

    // The kubelet: the controller's Deployment becomes a gateway Pod.
    let mut kubelet = Kubelet::new(
        Path::new(env!("CARGO_BIN_EXE_veg")),
        &manifests,
        &dir.join("pods"),
        vec![
            KubeletSubnet {
                subnet: internal.clone(),
                provider: "ovn".into(),
            },
            KubeletSubnet {
                subnet: LabSubnet {
                    name: "macvlan1".into(),
                    cidrs: vec![net("198.51.100.0/24")],
                    gateways: vec![ip("198.51.100.1")],
                },
                provider: "eth1.default".into(),
            },
        ],
    );
    kubelet.reserve(ip("198.18.0.20"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let deployment = loop {
        if let Some(deployment) = deployments(&output).into_iter().next() {
            break deployment;
        }
        ensure!(
            Instant::now() < deadline,
            "no Deployment from the controller:\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    kubelet
        .apply_deployment(&ovn, &deployment)
        .context("the kubelet could not start the gateway Pod")?;
    let gateway_ns = kubelet
        .namespace_of("gateway1-0")
        .context("no gateway Pod")?
        .to_owned();

    // The controller sees the Pod and points the reroute at it.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let policies = ovn.nbctl(&["lr-policy-list", "ovn-cluster"])?;
        if policies.contains("reroute") {
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no reroute policy:\n{policies}\n{}",
            log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ovn.sync()?;
    eprintln!(
        "lab, controller, gateway Pod ready in {:?}",
        started.elapsed()
    );

    let output = Command::new("ip")
        .args(["netns", "exec", &web, "python3"])
        .arg(dir.join("ask.py"))
        .args(["198.51.100.1", "7777"])
        .output()?;
    let seen = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    let gateway_addresses = Command::new("ip")
        .args(["-n", &gateway_ns, "-4", "-o", "addr", "show", "dev", "net1"])
        .output()?;
    let gateway_addresses = String::from_utf8_lossy(&gateway_addresses.stdout).to_string();
    ensure!(
        !seen.is_empty() && gateway_addresses.contains(&format!("{seen}/")),
        "web → external host seen as {seen:?}, not the gateway's external address ({gateway_addresses}); policies:\n{}",
        ovn.nbctl(&["lr-policy-list", "ovn-cluster"])
            .unwrap_or_default()
    );
    eprintln!("the external host saw {seen} (the gateway's net1)");
    drop(guard);
    drop(kubelet);
    drop(ovn);
    ensure!(!dir.exists(), "the lab left {}", dir.display());
    Ok(())
}

const BFD_MANIFESTS: &str = r#"
apiVersion: kubeovn.io/v1
kind: Vpc
metadata: {name: ovn-cluster}
spec: {}
status:
  router: ovn-cluster
  defaultLogicalSwitch: ovn-default
  bfdPort: {name: bfd@ovn-cluster, ip: 198.18.0.253}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: ovn-default}
spec: {cidrBlock: 198.18.0.0/16, gateway: 198.18.0.1, provider: ovn}
---
apiVersion: kubeovn.io/v1
kind: Subnet
metadata: {name: macvlan1}
spec: {cidrBlock: 198.51.100.0/24, gateway: 198.51.100.1, provider: eth1.default}
---
apiVersion: k8s.cni.cncf.io/v1
kind: NetworkAttachmentDefinition
metadata: {name: eth1, namespace: default}
spec: {config: '{"cniVersion": "0.3.0", "type": "macvlan"}'}
---
apiVersion: v1
kind: Namespace
metadata: {name: default, labels: {kubernetes.io/metadata.name: default}}
---
apiVersion: v1
kind: Pod
metadata:
  name: web
  namespace: default
  annotations: {ovn.kubernetes.io/allocated: "true", ovn.kubernetes.io/logical_router: ovn-cluster}
spec: {containers: [], nodeName: lab-node}
status: {phase: Running, podIPs: [{ip: 198.18.0.20}]}
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
    - namespaceSelector:
        matchLabels: {kubernetes.io/metadata.name: default}
"#;

fn ask(web: &str, dir: &Path) -> Option<String> {
    let output = Command::new("ip")
        .args(["netns", "exec", web, "python3"])
        .arg(dir.join("ask1.py"))
        .args(["198.51.100.1", "7777"])
        .output()
        .ok()?;
    let seen = String::from_utf8_lossy(&output.stdout).trim().to_owned();
    (!seen.is_empty()).then_some(seen)
}

/// Monitor mode end to end: two BFD-enabled instances, `veg monitor` on the gateways' switch
/// at the VPC's BFD address; both instances become nexthops once their sessions are Up; one
/// instance crashes → the monitor removes it and the client's traffic keeps leaving through
/// the other.
#[test]
fn a_crashed_instance_is_withdrawn_by_the_monitor() -> Result<()> {
    match veg_lab::ovn::check_prerequisites() {
        Ok(()) => {}
        Err(error) if std::env::var("CI").is_ok_and(|ci| ci == "true") => {
            panic!("the lab cannot run under CI: {error}")
        }
        Err(error) => {
            eprintln!("skipped: {error}");
            return Ok(());
        }
    }
    let id = format!("vf{}", std::process::id() % 10000);
    let dir = std::env::temp_dir().join(format!("{id}-lab"));
    let ovn = Ovn::start(
        &OvnConfig {
            state_dir: dir.clone(),
            prefix: id.clone(),
            chassis: format!("{id}-chassis"),
        },
        &mut |_, _| {},
    )?;
    ovn.add_router("ovn-cluster")?;
    let internal = LabSubnet {
        name: "ovn-default".into(),
        cidrs: vec![net("198.18.0.0/16")],
        gateways: vec![ip("198.18.0.1")],
    };
    ovn.add_subnet("ovn-cluster", &internal)?;
    ovn.nbctl(&["lr-route-add", "ovn-cluster", "0.0.0.0/0", "198.18.255.254"])?;
    let external_ns = ovn.add_external(&[net("198.51.100.1/24")])?;
    let pod = |name: &str, namespace: &str, address: &str, index: usize| {
        ovn.add_pod(
            "ovn-default",
            &LabPod {
                name: name.into(),
                namespace: namespace.into(),
                addresses: vec![net(address)],
                gateways: vec![ip("198.18.0.1")],
            },
            index,
        )
    };
    let web = pod("web", "default", "198.18.0.20/16", 0)?;
    let monitor_ns = pod("veg-monitor", "kube-system", "198.18.0.253/16", 1)?;
    let manifests = dir.join("manifests");
    let output = dir.join("decisions");
    std::fs::create_dir_all(&manifests)?;
    std::fs::write(manifests.join("cluster.yaml"), BFD_MANIFESTS)?;
    std::fs::write(dir.join("echo.py"), ECHO)?;
    std::fs::write(
        dir.join("ask1.py"),
        "import socket, sys\ntry:\n    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=0.3)\n    print(s.recv(100).decode().strip())\nexcept OSError:\n    pass\n",
    )?;

    let mut guard = Guard(Vec::new());
    let echo_log = dir.join("echo.log");
    guard.0.push(
        Command::new("ip")
            .args(["netns", "exec", &external_ns, "python3"])
            .arg(dir.join("echo.py"))
            .arg("7777")
            .stdout(std::fs::File::create(&echo_log)?)
            .stderr(Stdio::null())
            .spawn()?,
    );
    let controller_log = dir.join("veg-controller.log");
    guard.0.push(
        Command::new(env!("CARGO_BIN_EXE_veg"))
            .args([
                "controller",
                "--source",
                &format!("dir:{}", manifests.display()),
            ])
            .args([
                "--output",
                &output.to_string_lossy(),
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
            .stderr(std::fs::File::create(&controller_log)?)
            .spawn()?,
    );
    let monitor_log = dir.join("veg-monitor.log");
    guard.0.push(
        Command::new("ip")
            .args(["netns", "exec", &monitor_ns, env!("CARGO_BIN_EXE_veg")])
            .args(["monitor", "--nb", &ovn.nb_remote(), "--vpc", "ovn-cluster"])
            .args(["--local", "198.18.0.253", "--holder", "lab"])
            .args([
                "--control-socket",
                &dir.join("monitor.sock").to_string_lossy(),
            ])
            .args(["--log-format", "json"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&monitor_log)?)
            .spawn()?,
    );
    let logs = || {
        format!(
            "controller:\n{}\nmonitor:\n{}",
            std::fs::read_to_string(&controller_log).unwrap_or_default(),
            std::fs::read_to_string(&monitor_log).unwrap_or_default()
        )
    };
    let mut kubelet = Kubelet::new(
        Path::new(env!("CARGO_BIN_EXE_veg")),
        &manifests,
        &dir.join("pods"),
        vec![
            KubeletSubnet {
                subnet: internal.clone(),
                provider: "ovn".into(),
            },
            KubeletSubnet {
                subnet: LabSubnet {
                    name: "macvlan1".into(),
                    cidrs: vec![net("198.51.100.0/24")],
                    gateways: vec![ip("198.51.100.1")],
                },
                provider: "eth1.default".into(),
            },
        ],
    );
    kubelet.reserve(ip("198.18.0.20"));
    kubelet.reserve(ip("198.18.0.253"));
    let deadline = Instant::now() + Duration::from_secs(20);
    let deployment = loop {
        if let Some(deployment) = deployments(&output).into_iter().next() {
            break deployment;
        }
        ensure!(Instant::now() < deadline, "no Deployment:\n{}", logs());
        std::thread::sleep(Duration::from_millis(50));
    };
    kubelet.apply_deployment(&ovn, &deployment)?;

    // Both instances join the nexthops once their sessions are Up.
    let nexthops = || -> Vec<String> {
        ovn.nbctl(&[
            "--bare",
            "--columns=nexthops",
            "find",
            "Logical_Router_Policy",
            "priority=29100",
        ])
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .map(str::to_owned)
        .collect()
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while !(nexthops().len() == 2
        && nexthops()
            .iter()
            .all(|hops| hops.split_whitespace().count() == 2))
    {
        ensure!(
            Instant::now() < deadline,
            "nexthops {:?}\n{}",
            nexthops(),
            logs()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    ovn.sync()?;
    let gateway_external = |pod: &str| -> String {
        let ns = kubelet.namespace_of(pod).unwrap_or_default().to_owned();
        let out = Command::new("ip")
            .args(["-n", &ns, "-4", "-o", "addr", "show", "dev", "net1"])
            .output();
        out.map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .split_whitespace()
                .nth(3)
                .unwrap_or("")
                .split('/')
                .next()
                .unwrap_or("")
                .to_owned()
        })
        .unwrap_or_default()
    };
    let (first, second) = (
        gateway_external("gateway1-0"),
        gateway_external("gateway1-1"),
    );
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        if let Some(address) = ask(&web, &dir) {
            seen.insert(address);
        }
    }
    ensure!(
        !seen.is_empty() && seen.iter().all(|a| *a == first || *a == second),
        "seen {seen:?}, gateways {first} {second}\n{}",
        logs()
    );
    eprintln!("before the crash the external host saw {seen:?}");

    // gateway1-0 crashes.
    kubelet.kill_containers("gateway1-0");
    let crashed = Instant::now();
    let deadline = crashed + Duration::from_secs(5);
    let mut consecutive = 0;
    let mut last_failure = crashed;
    while consecutive < 10 {
        ensure!(
            Instant::now() < deadline,
            "traffic did not settle on the survivor\n{}",
            logs()
        );
        match ask(&web, &dir) {
            Some(address) if address == second => consecutive += 1,
            _ => {
                consecutive = 0;
                last_failure = Instant::now();
            }
        }
    }
    eprintln!(
        "after the crash: traffic only through the survivor {:?} after the crash (last miss at {:?})",
        crashed.elapsed(),
        last_failure.duration_since(crashed)
    );
    ensure!(
        nexthops()
            .iter()
            .all(|hops| hops.split_whitespace().count() == 1),
        "{:?}",
        nexthops()
    );
    drop(guard);
    drop(kubelet);
    drop(ovn);
    ensure!(!dir.exists(), "the lab left {}", dir.display());
    Ok(())
}
