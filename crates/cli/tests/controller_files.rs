//! `veg controller --source dir:…` end to end: the product description's manifests in a
//! directory, a real `ovsdb-server` (Debian's NB schema, so `--bfd-mode auto` picks monitor),
//! the controller as a process: it writes gateway1's OVN rows, its Deployment and status;
//! a deleted manifest removes every row. Needs ovsdb-server; under CI=true a missing one fails.

use veg_testkit::ovsdb as server;

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, ensure};
use veg_ovsdb::{Atom, Client, ClientConfig, Operation, Row, Value};

const CLUSTER: &str = r#"
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
spec: {containers: [], nodeName: kube-ovn-worker}
status: {phase: Running}
---
apiVersion: v1
kind: Pod
metadata:
  name: gateway1-0
  namespace: default
  labels: {app: vpc-egress-gateway, ovn.kubernetes.io/vpc-egress-gateway: gateway1}
  annotations:
    k8s.v1.cni.cncf.io/network-status: '[{"name": "default/eth1", "ips": ["198.51.100.11"]}]'
spec: {containers: [], nodeName: kube-ovn-worker}
status:
  phase: Running
  podIPs: [{ip: 198.18.0.12}]
  conditions: [{type: Ready, status: "True"}]
"#;

struct Controller(Child);

/// Removes the test's directory, also when the test fails.
struct TempDir(std::path::PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

impl Drop for Controller {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn text(row: &Row, column: &str) -> String {
    row.get(column)
        .and_then(Value::as_atom)
        .and_then(Atom::as_str)
        .unwrap_or_default()
        .to_owned()
}

fn names(client: &Client, table: &str, column: &str) -> Vec<String> {
    let mut names: Vec<String> = client
        .replica()
        .table(table)
        .map(|(_, row)| text(row, column))
        .collect();
    names.sort();
    names
}

/// A client of `nb` seeded with what Kube-OVN would have made: NB_Global, the router and
/// the Pod's port in its switch.
async fn seeded_client(nb: &str) -> Result<Client> {
    let mut monitor = veg_ovsdb::MonitorSpec::new();
    for table in [
        "Logical_Router_Policy",
        "Address_Set",
        "Port_Group",
        "Logical_Switch_Port",
    ] {
        monitor.insert(table.to_owned(), Vec::new());
    }
    let client = Client::connect(
        ClientConfig::northbound(nb, monitor)?,
        Duration::from_secs(5),
    )
    .await?;
    client
        .transact(&[
            Operation::Insert {
                table: "NB_Global".into(),
                row: Row::new(),
                uuid_name: None,
            },
            Operation::Insert {
                table: "Logical_Switch_Port".into(),
                row: Row::from([("name".to_owned(), Value::string("web.default"))]),
                uuid_name: Some("web".into()),
            },
            Operation::Insert {
                table: "Logical_Switch".into(),
                row: Row::from([
                    ("name".to_owned(), Value::string("ovn-default")),
                    (
                        "ports".to_owned(),
                        Value::Set([Atom::NamedUuid("web".into())].into()),
                    ),
                ]),
                uuid_name: None,
            },
            Operation::Insert {
                table: "Logical_Router".into(),
                row: Row::from([("name".to_owned(), Value::string("ovn-cluster"))]),
                uuid_name: None,
            },
        ])
        .await?;

    Ok(client)
}

/// The product description's manifests (and CLUSTER) in a directory of this test (`id`), and
/// `veg controller --source dir:` on it against `nb`: the directory, the output directory, the
/// directory's guard and the controller's.
fn start_controller(
    id: &str,
    nb: &str,
) -> Result<(std::path::PathBuf, std::path::PathBuf, TempDir, Controller)> {
    let dir = std::env::temp_dir().join(format!("{id}{}-manifests", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let cleanup = TempDir(dir.clone());
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for file in ["nad.yaml", "subnets.yaml", "gateway.yaml"] {
        std::fs::copy(examples.join(file), dir.join(file))?;
    }
    std::fs::write(dir.join("cluster.yaml"), CLUSTER)?;
    let output = dir.join("out");
    let log = std::fs::File::create(dir.join("controller.log"))?;
    let controller = Controller(
        Command::new(env!("CARGO_BIN_EXE_veg"))
            .args(["controller", "--source", &format!("dir:{}", dir.display())])
            .args(["--output", &output.to_string_lossy(), "--nb", nb])
            .args([
                "--bfd-mode",
                "auto",
                "--poll-ms",
                "100",
                "--log-format",
                "json",
            ])
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()?,
    );
    Ok((dir, output, cleanup, controller))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_controller_reconciles_a_manifest_directory() -> Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let servers = server::Servers::standalone()?;
    let nb = format!("unix:{}", servers.socket(0).display());
    let client = seeded_client(&nb).await?;

    let (dir, output, _cleanup, _controller) = start_controller("vcf", &nb)?;
    let log = || std::fs::read_to_string(dir.join("controller.log")).unwrap_or_default();

    // gateway1 of the product description: its rows, as Kube-OVN names them.
    client
        .wait_for(Duration::from_secs(10), |replica| {
            replica.table("Logical_Router_Policy").count() == 2
        })
        .await
        .with_context(|| format!("no policies:\n{}", log()))?;
    ensure!(
        names(&client, "Logical_Router_Policy", "match")
            == [
                "ip4.src == $VEG.8ca38ae7da18.ipv4",
                "ip4.src == $VEG.8ca38ae7da18_ip4"
            ]
    );
    ensure!(names(&client, "Address_Set", "name") == ["VEG.8ca38ae7da18.ipv4"]);
    ensure!(names(&client, "Port_Group", "name") == ["VEG.8ca38ae7da18"]);
    ensure!(
        log().contains("\"mode\":\"Monitor\""),
        "auto on Debian's schema must pick monitor:\n{}",
        log()
    );
    // Its Deployment and status are written for the lab's kubelet.
    let deployment = output.join("deployments/default.gateway1.json");
    let status = output.join("status/default.gateway1.json");
    ensure!(
        veg_testkit::wait_until(Duration::from_secs(5), || deployment.exists()
            && status.exists()),
        "no Deployment/status under {}:\n{}",
        output.display(),
        log()
    );
    let status: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&status)?)?;
    ensure!(status["phase"] == "Processing", "{status}");

    // The manifest is deleted: every row goes.
    std::fs::remove_file(dir.join("gateway.yaml"))?;
    client
        .wait_for(Duration::from_secs(10), |replica| {
            replica.table("Logical_Router_Policy").count() == 0
                && replica.table("Address_Set").count() == 0
                && replica.table("Port_Group").count() == 0
        })
        .await
        .with_context(|| format!("rows left after the delete:\n{}", log()))?;
    Ok(())
}

/// Started before the NB (an OVN not up yet, an outage): the controller waits and says why,
/// instead of exiting after 10 s as it did, and writes gateway1's rows once the NB comes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_controller_started_before_the_nb_waits_for_it() -> Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let servers = server::Servers::standalone()?;
    servers.stop(0, false)?;
    let nb = format!("unix:{}", servers.socket(0).display());
    let (dir, _output, _cleanup, mut controller) = start_controller("vcw", &nb)?;
    let log = || std::fs::read_to_string(dir.join("controller.log")).unwrap_or_default();
    // Longer than the 10 s after which it used to give up.
    std::thread::sleep(Duration::from_secs(11));
    ensure!(
        controller.0.try_wait()?.is_none(),
        "the controller exited while the NB was down:\n{}",
        log()
    );
    ensure!(
        log().contains("the OVN Northbound database is not reachable; still trying"),
        "no word of the wait:\n{}",
        log()
    );
    servers.start(0)?;
    let client = seeded_client(&nb).await?;
    client
        .wait_for(Duration::from_secs(15), |replica| {
            replica.table("Logical_Router_Policy").count() == 2
        })
        .await
        .with_context(|| format!("no policies once the NB came:\n{}", log()))?;
    Ok(())
}
