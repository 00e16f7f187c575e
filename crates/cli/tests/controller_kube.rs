//! `veg controller --source kube` end to end, as a process: a fake API server
//! (`data/fake-apiserver.py`: objects, lists, watches, conflicts) behind a kubeconfig, a real
//! `ovsdb-server` NB. The controller takes the Lease, lists the cluster, adds the finalizer,
//! writes gateway1's rows, applies its Deployment and status, records an event, serves
//! `/metrics`, `/readyz` and `PUT /log-level`; a deletion removes the rows and then the
//! finalizer (the object goes); SIGTERM gives the Lease up. Needs python3 and ovsdb-server;
//! under CI=true a missing one fails.

use veg_testkit::ovsdb as server;
mod support;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use veg_ovsdb::{Client, ClientConfig};

const GATEWAY: &str = "/apis/kubeovn.io/v1/namespaces/default/vpc-egress-gateways/gateway1";
const LEASE: &str = "/apis/coordination.k8s.io/v1/namespaces/kube-system/leases/veg-controller";

struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        if std::env::var_os("VEG_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

fn objects() -> Value {
    json!({
        GATEWAY: {"apiVersion": "kubeovn.io/v1", "kind": "VpcEgressGateway",
            "metadata": {"name": "gateway1", "namespace": "default", "uid": "u-1",
                "creationTimestamp": "2026-11-27T00:00:00Z"},
            "spec": {"replicas": 1, "externalSubnet": "macvlan1",
                "selectors": [{"namespaceSelector": {"matchLabels": {"kubernetes.io/metadata.name": "default"}}}]}},
        "/apis/kubeovn.io/v1/vpcs/ovn-cluster": {"apiVersion": "kubeovn.io/v1", "kind": "Vpc",
            "metadata": {"name": "ovn-cluster"}, "spec": {},
            "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default"}},
        "/apis/kubeovn.io/v1/subnets/ovn-default": {"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
            "metadata": {"name": "ovn-default"}, "spec": {"cidrBlock": "198.18.0.0/16", "gateway": "198.18.0.1", "provider": "ovn"}},
        "/apis/kubeovn.io/v1/subnets/macvlan1": {"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
            "metadata": {"name": "macvlan1"}, "spec": {"cidrBlock": "198.51.100.0/24", "gateway": "198.51.100.1", "provider": "eth1.default"}},
        "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/eth1": {
            "apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
            "metadata": {"name": "eth1", "namespace": "default"}, "spec": {"config": "{}"}},
        "/api/v1/namespaces/default": {"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "default", "labels": {"kubernetes.io/metadata.name": "default"}}},
        "/api/v1/nodes/worker1": {"apiVersion": "v1", "kind": "Node", "metadata": {"name": "worker1"}},
        "/api/v1/namespaces/default/pods/web": {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default",
                "annotations": {"ovn.kubernetes.io/allocated": "true", "ovn.kubernetes.io/logical_router": "ovn-cluster"}},
            "spec": {"containers": [], "nodeName": "worker1"},
            "status": {"phase": "Running", "podIPs": [{"ip": "198.18.0.40"}]}},
        "/api/v1/namespaces/default/pods/gateway1-0": {"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "gateway1-0", "namespace": "default",
                "labels": {"app": "vpc-egress-gateway", "ovn.kubernetes.io/vpc-egress-gateway": "gateway1"},
                "annotations": {"k8s.v1.cni.cncf.io/network-status": "[{\"name\": \"default/eth1\", \"ips\": [\"198.51.100.11\"]}]"}},
            "spec": {"containers": [], "nodeName": "worker1"},
            "status": {"phase": "Running", "podIPs": [{"ip": "198.18.0.12"}],
                "conditions": [{"type": "Ready", "status": "True"}]}}
    })
}

fn http(address: &str, method: &str, path: &str, body: &str) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect(address)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nhost: x\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )?;
    let mut text = String::new();
    stream.read_to_string(&mut text)?;
    let code = text
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    Ok((code, text))
}

fn requests(log: &Path) -> Vec<Value> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect()
}

fn wait(what: &str, limit: Duration, mut done: impl FnMut() -> Result<bool>) -> Result<()> {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if done()? {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    anyhow::bail!("{what}: not within {limit:?}")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_runs_against_an_api_server() -> Result<()> {
    if !server::prerequisites() || !support::require("the kube-mode e2e", &["/usr/bin/python3"]) {
        return Ok(());
    }
    let servers = server::Servers::standalone()?;
    servers.seed_nb(0, "ovn-cluster", &[])?;
    let nb = format!("unix:{}", servers.socket(0).display());
    let mut monitor = veg_ovsdb::MonitorSpec::new();
    monitor.insert("Logical_Router_Policy".to_owned(), Vec::new());
    let client = Client::connect(
        ClientConfig::northbound(&nb, monitor)?,
        Duration::from_secs(5),
    )
    .await?;

    let dir = std::env::temp_dir().join(format!("vck{}-kube", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let _cleanup = TempDir(dir.clone());
    eprintln!("dir {}", dir.display());
    std::fs::write(dir.join("objects.json"), objects().to_string())?;
    let log = dir.join("requests.jsonl");
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/fake-apiserver.py");
    let mut api = Command::new("python3")
        .arg(&script)
        .arg(dir.join("objects.json"))
        .arg(&log)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    BufReader::new(api.stdout.take().context("api stdout")?).read_line(&mut line)?;
    let _api = Process(api);
    let port: u16 = line
        .trim()
        .strip_prefix("ready ")
        .context("no port")?
        .parse()?;
    let api = format!("http://127.0.0.1:{port}");
    std::fs::write(
        dir.join("kubeconfig"),
        format!(
            "apiVersion: v1\nkind: Config\nclusters: [{{name: fake, cluster: {{server: \"{api}\"}}}}]\n\
             users: [{{name: fake, user: {{}}}}]\ncontexts: [{{name: fake, context: {{cluster: fake, user: fake}}}}]\n\
             current-context: fake\n"
        ),
    )?;
    let metrics = {
        let probe = std::net::TcpListener::bind("127.0.0.1:0")?;
        probe.local_addr()?.to_string()
    };
    servers.stop(0, false)?;
    let controller = Command::new(env!("CARGO_BIN_EXE_veg"))
        .args([
            "controller",
            "--source",
            "kube",
            "--nb",
            &nb,
            "--bfd-mode",
            "monitor",
        ])
        .args([
            "--metrics-address",
            &metrics,
            "--identity",
            "veg-controller-test",
        ])
        .args(["--lease-namespace", "kube-system", "--log-format", "json"])
        .env("KUBECONFIG", dir.join("kubeconfig"))
        .env_remove("VEG_SOURCE")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("controller.log"))?)
        .spawn()?;
    let mut controller = Process(controller);
    let logs = || std::fs::read_to_string(dir.join("controller.log")).unwrap_or_default();

    // The NB is down at start (stopped above): the controller serves, live and not ready,
    // and waits.
    wait(
        "/livez while the NB is down",
        Duration::from_secs(10),
        || Ok(http(&metrics, "GET", "/livez", "").is_ok_and(|(code, _)| code == 200)),
    )
    .with_context(logs)?;
    let (code, body) = http(&metrics, "GET", "/readyz", "")?;
    ensure!(
        code == 503 && body.contains("OVN Northbound"),
        "/readyz with the NB down: {code} {body}"
    );
    servers.start(0)?;

    // Lease, list, finalizer, rows, Deployment, status, event.
    let policies = || client.replica().table("Logical_Router_Policy").count();
    wait(
        "gateway1's reroute policies",
        Duration::from_secs(20),
        || Ok(policies() == 2),
    )
    .with_context(logs)?;
    wait("status and event", Duration::from_secs(10), || {
        let sent = requests(&log);
        Ok(sent
            .iter()
            .any(|r| r["path"] == format!("{GATEWAY}/status"))
            && sent.iter().any(|r| {
                r["method"] == "POST" && r["path"].as_str().is_some_and(|p| p.ends_with("/events"))
            }))
    })
    .with_context(logs)?;
    let sent = requests(&log);
    let position = |pred: &dyn Fn(&Value) -> bool| sent.iter().position(pred);
    let lease = position(&|r| {
        r["path"].as_str().is_some_and(|p| p.contains("/leases")) && r["method"] != "GET"
    });
    let finalizer = position(&|r| r["method"] == "PATCH" && r["path"] == GATEWAY);
    let deployment = position(&|r| {
        r["method"] == "PATCH"
            && r["path"] == "/apis/apps/v1/namespaces/default/deployments/gateway1"
    });
    let status = position(&|r| r["path"] == format!("{GATEWAY}/status"));
    ensure!(
        lease.is_some() && finalizer.is_some() && deployment.is_some() && status.is_some(),
        "{lease:?} {finalizer:?} {deployment:?} {status:?}"
    );
    ensure!(
        lease < finalizer && finalizer < deployment && deployment < status,
        "order: {lease:?} {finalizer:?} {deployment:?} {status:?}"
    );
    let status_body = &sent[status.unwrap_or_default()]["body"];
    ensure!(
        status_body["status"]["phase"].is_string()
            && status_body["status"]["conditions"].is_array(),
        "{status_body}"
    );
    ensure!(
        sent.iter().any(|r| r["path"] == "/api/v1/namespaces"
            && r["query"]
                .as_str()
                .is_some_and(|q| q.contains("watch=true"))),
        "namespaces are watched"
    );

    // The endpoint.
    // The pass is counted once it ends (its event is its last request).
    wait("the pass counted", Duration::from_secs(5), || {
        let (code, text) = http(&metrics, "GET", "/metrics", "")?;
        Ok(code == 200
            && text.contains("veg_controller_leader 1")
            && text.contains("veg_controller_reconciles_total{outcome=\"ok\"")
            && text.contains("veg_controller_gateways{phase="))
    })
    .with_context(|| {
        http(&metrics, "GET", "/metrics", "")
            .map(|r| r.1)
            .unwrap_or_default()
    })?;
    ensure!(http(&metrics, "GET", "/readyz", "")?.0 == 200);
    ensure!(http(&metrics, "PUT", "/log-level", "debug")?.0 == 200);
    ensure!(http(&metrics, "PUT", "/log-level", "nonsense[")?.0 == 400);

    // Delete: rows first, then the finalizer, then the object is gone.
    let (code, _) = http(
        &format!("127.0.0.1:{port}"),
        "POST",
        &format!("/control/delete?path={GATEWAY}"),
        "",
    )?;
    ensure!(code == 200);
    wait("rows gone", Duration::from_secs(15), || Ok(policies() == 0)).with_context(logs)?;
    wait("the object gone", Duration::from_secs(10), || {
        Ok(http(&format!("127.0.0.1:{port}"), "GET", GATEWAY, "")?.0 == 404)
    })
    .with_context(logs)?;

    // SIGTERM: the Lease is given up.
    support::run("kill", &["-TERM", &controller.0.id().to_string()])?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while controller.0.try_wait()?.is_none() {
        ensure!(
            Instant::now() < deadline,
            "the controller did not stop on SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let (_, lease) = http(&format!("127.0.0.1:{port}"), "GET", LEASE, "")?;
    let body = lease.split("\r\n\r\n").nth(1).unwrap_or_default();
    let lease: Value = serde_json::from_str(body).unwrap_or_default();
    ensure!(
        lease["spec"]["leaseTransitions"].is_number()
            && lease["spec"]
                .get("holderIdentity")
                .is_none_or(Value::is_null),
        "lease after SIGTERM: {lease}"
    );
    Ok(())
}
