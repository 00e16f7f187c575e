//! `kubectl veg status|explain` against lab-style cluster snapshots served by a fake kubectl
//! (a script answering `kubectl get … -o json` from files): selected, forward-only, unselected,
//! conflicting and no-instance-up Pods, a missing CRD, the status table, and the binary
//! installed as `kubectl-veg`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use anyhow::{Result, ensure};
use serde_json::{Value, json};

struct Cluster {
    dir: PathBuf,
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

const FAKE_KUBECTL: &str = r#"#!/bin/sh
# get RESOURCE -A -o json | get RESOURCE NAME -n NS -o json
dir=$(dirname "$0")
if [ "$3" = "-A" ]; then file="$dir/$2.json"; else file="$dir/$2-$5-$3.json"; fi
if [ -f "$file" ]; then cat "$file"; exit 0; fi
echo "error: the server doesn't have a resource type \"$2\"" >&2
exit 1
"#;

fn list(items: Vec<Value>) -> Value {
    json!({"apiVersion": "v1", "kind": "List", "items": items})
}

fn gateway(name: &str, created: &str, spec: Value, instances: Value) -> Value {
    json!({"apiVersion": "kubeovn.io/v1", "kind": "VpcEgressGateway",
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
        "spec": spec,
        "status": {"ready": true, "phase": "Completed", "replicas": 2,
            // A message with a terminal escape (clear the screen): the plugin shows it, escaped.
            "conditions": [{"type": "Ready", "status": "True", "reason": "ReconcileSuccess",
                "message": "fine\u{1b}[2J", "lastTransitionTime": "2026-11-27T10:00:00Z"}],
            "gateways": instances}})
}

fn instances(states: [&str; 2]) -> Value {
    json!([
        {"pod": "gateway1-0", "node": "lab-node", "internalIPs": ["198.18.0.10"],
         "externalIPs": ["198.51.100.10"], "bfd": states[0], "since": "2026-11-27T10:00:00Z"},
        {"pod": "gateway1-1", "node": "lab-node", "internalIPs": ["198.18.0.11"],
         "externalIPs": ["198.51.100.11"], "bfd": states[1], "since": "2026-11-27T10:00:00Z"}
    ])
}

fn pod(namespace: &str, name: &str, ip: &str, labels: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": labels,
            "annotations": {"ovn.kubernetes.io/allocated": "true",
                "ovn.kubernetes.io/logical_router": "ovn-cluster"}},
        "spec": {"containers": [], "nodeName": "lab-node"},
        "status": {"phase": "Running", "podIPs": [{"ip": ip}]}})
}

/// The lab's cluster: gateway1 (BFD, selects `egress=yes` Pods, SNATs subnet1, forwards
/// 198.18.16.30), optionally a newer overlapping gateway2.
fn cluster(id: &str, states: [&str; 2], with_gateway2: bool) -> Result<Cluster> {
    let dir = std::env::temp_dir().join(format!("{id}-kubectl-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let kubectl = dir.join("kubectl");
    std::fs::write(&kubectl, FAKE_KUBECTL)?;
    Command::new("chmod").arg("+x").arg(&kubectl).status()?;
    let spec = json!({"replicas": 2, "externalSubnet": "macvlan1",
        "bfd": {"enabled": true, "minRX": 100, "minTX": 100, "multiplier": 3},
        "selectors": [{"podSelector": {"matchLabels": {"egress": "yes"}}}],
        "policies": [{"snat": true, "subnets": ["subnet1"]}, {"snat": false, "ipBlocks": ["198.18.16.30"]}]});
    let gateway1 = gateway("gateway1", "2026-11-01T00:00:00Z", spec, instances(states));
    let mut gateways = vec![gateway1.clone()];
    if with_gateway2 {
        gateways.push(gateway(
            "gateway2",
            "2026-11-20T00:00:00Z",
            json!({"replicas": 1, "externalSubnet": "macvlan1",
                "selectors": [{"podSelector": {"matchLabels": {"tier": "front"}}}]}),
            json!([]),
        ));
    }
    let files = [
        ("vpc-egress-gateways.kubeovn.io", list(gateways)),
        (
            "vpcs.kubeovn.io",
            list(vec![json!({"apiVersion": "kubeovn.io/v1", "kind": "Vpc",
            "metadata": {"name": "ovn-cluster"}, "spec": {},
            "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default",
                "bfdPort": {"name": "bfd@ovn-cluster", "ip": "198.18.0.253"}}})]),
        ),
        (
            "subnets.kubeovn.io",
            list(
                [
                    ("ovn-default", "198.18.0.0/20", "ovn", json!([])),
                    // Bound to default: its gateways may steer it (strict tenancy).
                    ("subnet1", "198.18.16.0/20", "ovn", json!(["default"])),
                    ("macvlan1", "198.51.100.0/24", "eth1.default", json!([])),
                ]
                .iter()
                .map(|(name, cidr, provider, namespaces)| {
                    json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": name},
                    "spec": {"cidrBlock": cidr, "provider": provider, "namespaces": namespaces}})
                })
                .collect(),
            ),
        ),
        (
            "network-attachment-definitions.k8s.cni.cncf.io",
            list(vec![json!({"apiVersion": "k8s.cni.cncf.io/v1",
            "kind": "NetworkAttachmentDefinition", "metadata": {"name": "eth1", "namespace": "default"},
            "spec": {"config": "{}"}})]),
        ),
        (
            "namespaces",
            list(vec![
                json!({"metadata": {"name": "default", "labels": {"kubernetes.io/metadata.name": "default"}}}),
                json!({"metadata": {"name": "other", "labels": {"kubernetes.io/metadata.name": "other"}}}),
            ]),
        ),
        (
            "nodes",
            list(vec![json!({"metadata": {"name": "lab-node"}})]),
        ),
        (
            "pods",
            list(vec![
                pod("default", "web-1", "198.18.0.21", json!({"egress": "yes", "tier": "front"})),
                pod("default", "web-2", "198.18.0.22", json!({"tier": "front"})),
                pod("other", "app-1", "198.18.16.21", json!({})),
                pod("other", "app-2", "198.18.16.30", json!({})),
                pod("other", "db-1", "198.18.0.31", json!({"app": "db"})),
            ]),
        ),
        // ippools.kubeovn.io is missing: that CRD is not installed.
        ("vpc-egress-gateways.kubeovn.io-default-gateway1", gateway1),
    ];
    for (name, value) in files {
        std::fs::write(dir.join(format!("{name}.json")), value.to_string())?;
    }
    Ok(Cluster { dir })
}

fn plugin(cluster: &Cluster, args: &[&str]) -> Result<Output> {
    Ok(Command::new(env!("CARGO_BIN_EXE_veg"))
        .arg("kubectl-plugin")
        .arg("--kubectl")
        .arg(cluster.dir.join("kubectl"))
        .args(args)
        .output()?)
}

fn out(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

#[test]
fn explain_selected_forwarded_and_unselected_pods() -> Result<()> {
    let cluster = cluster("kp1", ["Up", "Up"], false)?;
    let output = plugin(&cluster, &["explain", "web-1"])?;
    let text = out(&output);
    ensure!(
        output.status.success()
            && text.starts_with("default/web-1 leaves through gateway default/gateway1, SNATed to one of 198.51.100.10, 198.51.100.11")
            && text.contains("instances that can carry it: gateway1-0 (BFD Up), gateway1-1 (BFD Up)")
            && text.contains("through its selectors"),
        "{text}"
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    ensure!(
        stderr.contains("ippools.kubeovn.io"),
        "a missing CRD is mentioned: {stderr}"
    );
    let text = out(&plugin(&cluster, &["explain", "other/app-1"])?);
    ensure!(
        text.contains("198.18.16.21 in 198.18.16.0/20") && text.contains("SNATed"),
        "{text}"
    );
    let text = out(&plugin(&cluster, &["explain", "-n", "other", "app-2"])?);
    ensure!(
        text.contains("without SNAT: the outside sees 198.18.16.30"),
        "{text}"
    );
    let text = out(&plugin(&cluster, &["explain", "other/db-1"])?);
    ensure!(
        text.starts_with("other/db-1 is not selected by any gateway")
            && text.contains("selector 1 wants other Pod labels (the Pod has app=db)")
            && text.contains("no policy covers 198.18.0.31"),
        "{text}"
    );
    let output = plugin(&cluster, &["explain", "nobody"])?;
    ensure!(!output.status.success() && out(&output).contains("no such Pod"));
    Ok(())
}

#[test]
fn explain_conflicting_gateways_and_no_instance_up() -> Result<()> {
    let cluster = cluster("kp2", ["Up", "Up"], true)?;
    let text = out(&plugin(&cluster, &["explain", "web-1"])?);
    ensure!(
        text.contains("leaves through gateway default/gateway1")
            && text.contains("gateway default/gateway2 selects it too but is held back"),
        "{text}"
    );
    let text = out(&plugin(&cluster, &["explain", "web-2"])?);
    ensure!(
        text.contains("selected by gateway default/gateway2 only, which is held back by the older default/gateway1"),
        "{text}"
    );
    drop(cluster);

    let down = self::cluster("kp3", ["Down", "AdminDown"], false)?;
    let text = out(&plugin(&down, &["explain", "web-1"])?);
    ensure!(
        text.contains("no instance can carry it now: its traffic to the outside is dropped")
            && text.contains("gateway1-0 cannot carry it: BFD Down")
            && text.contains("gateway1-1 cannot carry it: BFD AdminDown"),
        "{text}"
    );
    Ok(())
}

#[test]
fn status_shows_every_instance_and_the_plugin_name_works() -> Result<()> {
    let cluster = cluster("kp4", ["Up", "Down"], false)?;
    let output = plugin(&cluster, &["status", "gateway1"])?;
    let text = out(&output);
    ensure!(
        output.status.success()
            && text.starts_with("gateway default/gateway1: phase Completed, ready true, 2 replica(s), VPC ovn-cluster, external subnet macvlan1, BFD on (100 ms × 3)")
            && text.contains("Ready=True ReconcileSuccess")
            && text.lines().any(|l| l.contains("gateway1-1") && l.contains("198.51.100.11") && l.contains("Down")),
        "{text}"
    );
    ensure!(
        !text.contains('\u{1b}') && text.contains("fine\\u{1b}[2J"),
        "the escape reached the terminal: {text:?}"
    );
    let output = plugin(&cluster, &["status", "missing"])?;
    ensure!(!output.status.success(), "a missing gateway fails");

    // Installed as kubectl-veg (kubectl runs `kubectl-veg ARGS` for `kubectl veg ARGS`).
    let link: PathBuf = cluster.dir.join("kubectl-veg");
    std::os::unix::fs::symlink(Path::new(env!("CARGO_BIN_EXE_veg")), &link)?;
    let output = Command::new(&link)
        .args(["explain", "web-1", "--kubectl"])
        .arg(cluster.dir.join("kubectl"))
        .output()?;
    ensure!(
        out(&output).contains("leaves through gateway default/gateway1"),
        "{}",
        out(&output)
    );
    Ok(())
}
