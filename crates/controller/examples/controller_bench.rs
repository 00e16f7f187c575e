//! Controller benchmark driver (`bench/controller.sh` runs it against a fresh ovsdb-server):
//! a snapshot of PODS Pods in NAMESPACES namespaces and GATEWAYS gateways selecting them by
//! namespace label; a full resync of every gateway, then EVENTS Pod additions, each timed from
//! "Pod added to the snapshot" to "its port is in the gateway's Port_Group" in the replica
//! (trigger index → reconcile → one NB transaction → monitor update). Prints the full resync
//! time, latency median/p99, NB bytes per Pod event (the JSON of the operations sent) and the
//! process's peak RSS. Then the added Pods are deleted (until each port has left its group),
//! and namespace `big` (1000 Pods, part of the snapshot) is relabelled from gw-0's selector to
//! gw-1's (until gw-0's group holds none of its ports and gw-1's all).
//!
//! The Kubernetes writes (Deployment, status, events, finalizer) are modelled by API_DELAY_MS
//! of waiting per request (a round trip to an API server) and counted; 0 makes them free. The
//! gateways carry their finalizer already, and the statuses written are put back into the
//! snapshot, as the watch would. The port can be in its group before the pass's API writes
//! are done, so both are timed: "port in Port_Group" and "pass done".
//!   usage: controller_bench REMOTE PODS NAMESPACES GATEWAYS EVENTS [API_DELAY_MS]

use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use serde_json::{Value as Json, json};
use veg_api::names;
use veg_controller::apply::nb;
use veg_controller::plan::ovn;
use veg_controller::run::triggers::{Change, Index};
use veg_controller::{BfdMode, MemorySnapshot, OutputError, Outputs, Reconciler, Tenancy, resolve};
use veg_ovsdb::{Atom, Client, ClientConfig, Operation, Remote, Row, Value};

/// The API server: each request waits `delay` and is counted; the statuses written are kept
/// for the driver to put back into the snapshot, as the watch would.
struct ApiOutputs {
    delay: Duration,
    requests: std::cell::Cell<usize>,
    statuses: std::cell::RefCell<Vec<(String, veg_api::VpcEgressGatewayStatus)>>,
}

impl ApiOutputs {
    async fn request(&self) -> Result<(), OutputError> {
        self.requests.set(self.requests.get() + 1);
        if !self.delay.is_zero() {
            tokio::time::sleep(self.delay).await;
        }
        Ok(())
    }
}

impl Outputs for &ApiOutputs {
    async fn apply_deployment(
        &self,
        _: &k8s_openapi::api::apps::v1::Deployment,
    ) -> Result<(), OutputError> {
        self.request().await
    }
    async fn patch_status(
        &self,
        _: &str,
        name: &str,
        status: &veg_api::VpcEgressGatewayStatus,
    ) -> Result<(), OutputError> {
        self.statuses
            .borrow_mut()
            .push((name.to_owned(), status.clone()));
        self.request().await
    }
    async fn event(&self, _: &str, _: &str, _: &veg_controller::plan::status::Event) {
        let _ = self.request().await;
    }
    async fn annotate_pod(&self, _: &str, _: &str, _: &str, _: &str) -> Result<(), OutputError> {
        self.request().await
    }
    async fn patch_vpc_bfd_port(
        &self,
        _: &str,
        _: Option<&veg_api::kubeovn::BfdPortStatus>,
    ) -> Result<(), OutputError> {
        self.request().await
    }
    async fn add_finalizer(&self, _: &veg_api::VpcEgressGateway) -> Result<(), OutputError> {
        self.request().await
    }
    async fn remove_finalizer(&self, _: &veg_api::VpcEgressGateway) -> Result<(), OutputError> {
        self.request().await
    }
}

fn from<T: serde::de::DeserializeOwned>(value: Json) -> Result<T> {
    Ok(serde_json::from_value(value)?)
}

fn pod(namespace: &str, name: &str) -> Result<k8s_openapi::api::core::v1::Pod> {
    from(json!({
        "metadata": {"name": name, "namespace": namespace, "labels": {"app": "web"},
            "annotations": {"ovn.kubernetes.io/allocated": "true",
                            "ovn.kubernetes.io/logical_router": "ovn-cluster"}},
        "spec": {"containers": [], "nodeName": "worker1"},
        "status": {"phase": "Running"}
    }))
}

/// Gateway `g`'s own source block: the `g`-th /28 of 198.19.0.0/16 (4096 gateways at most),
/// so no two gateways overlap at any count.
fn ip_block(g: usize) -> Result<String> {
    anyhow::ensure!(
        g < 4096,
        "at most 4096 gateways: each gets a /28 of 198.19.0.0/16"
    );
    Ok(format!("198.19.{}.{}/28", g / 16, (g % 16) * 16))
}

/// The namespace the relabel moves, and its Pods.
const BIG: &str = "big";
const RELABEL_PODS: usize = 1000;

fn big_namespace(group: &str) -> Result<k8s_openapi::api::core::v1::Namespace> {
    from(json!({"metadata": {"name": BIG, "labels": {"group": group},
        "annotations": {names::ANNOTATION_ADMITS_GATEWAYS: "default"}}}))
}

/// The UUIDs in a Port_Group.
fn group_ports(client: &Client, group: &str) -> std::collections::BTreeSet<Atom> {
    let replica = client.replica();
    replica
        .uuids_named("Port_Group", group)
        .filter_map(|group| replica.row("Port_Group", group))
        .flat_map(|row| row.get("ports").map(Value::as_set).unwrap_or_default())
        .collect()
}

fn status_kib(field: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

fn peak_rss_kib() -> u64 {
    status_kib("VmHWM:")
}

/// The resident set now, for the progress lines (where the memory goes).
fn rss_mib() -> u64 {
    status_kib("VmRSS:") / 1024
}

fn port_uuid(client: &Client, port: &str) -> Option<String> {
    client
        .replica()
        .uuids_named("Logical_Switch_Port", port)
        .next()
        .cloned()
}

fn port_in_group(client: &Client, group: &str, uuid: &str) -> bool {
    let replica = client.replica();
    replica
        .uuids_named("Port_Group", group)
        .filter_map(|group| replica.row("Port_Group", group))
        .any(|row| {
            row.get("ports")
                .map(Value::as_set)
                .unwrap_or_default()
                .contains(&Atom::Uuid(uuid.to_owned()))
        })
}

async fn insert_ports(client: &Client, names: &[String]) -> Result<()> {
    for chunk in names.chunks(1000) {
        let mut operations = Vec::new();
        let mut refs = std::collections::BTreeSet::new();
        for (index, name) in chunk.iter().enumerate() {
            let uuid_name = format!("lsp{index}");
            operations.push(Operation::Insert {
                table: "Logical_Switch_Port".into(),
                row: Row::from([("name".to_owned(), Value::string(name.as_str()))]),
                uuid_name: Some(uuid_name.clone()),
            });
            refs.insert(Atom::NamedUuid(uuid_name));
        }
        operations.push(Operation::Mutate {
            table: "Logical_Switch".into(),
            conditions: vec![veg_ovsdb::Condition::equals(
                "name",
                Value::string("ovn-default"),
            )],
            mutations: vec![veg_ovsdb::Mutation::insert("ports", Value::Set(refs))],
        });
        client.transact(&operations).await?;
    }
    Ok(())
}

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let remote = args.next().context("REMOTE")?;
    let mut number = |what: &str| -> Result<usize> {
        Ok(args.next().with_context(|| what.to_owned())?.parse()?)
    };
    let (pods, namespaces, gateways, events) = (
        number("PODS")?,
        number("NAMESPACES")?,
        number("GATEWAYS")?,
        number("EVENTS")?,
    );
    let api_delay = Duration::from_millis(args.next().map(|d| d.parse()).transpose()?.unwrap_or(0));
    let mut monitor = nb::monitor_spec();
    monitor.insert("Logical_Switch".into(), vec!["name".into(), "ports".into()]);
    let client = Client::connect(
        ClientConfig {
            remotes: Remote::parse_list(&remote)?,
            database: "OVN_Northbound".into(),
            leader_only: true,
            probe_interval: Duration::from_secs(30),
            monitor,
            tls: None,
            max_message: veg_ovsdb::jsonrpc::MAX_MESSAGE,
        },
        Duration::from_secs(10),
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
                table: "Logical_Router".into(),
                row: Row::from([("name".to_owned(), Value::string("ovn-cluster"))]),
                uuid_name: None,
            },
            Operation::Insert {
                table: "Logical_Switch".into(),
                row: Row::from([("name".to_owned(), Value::string("ovn-default"))]),
                uuid_name: None,
            },
        ])
        .await?;

    // The snapshot.
    anyhow::ensure!(gateways >= 2, "the relabel needs two gateways");
    eprintln!(
        "==> building a snapshot: {pods} Pods (+{RELABEL_PODS} in namespace {BIG}), {namespaces} \
         namespaces, {gateways} gateways (RSS {} MiB)",
        rss_mib()
    );
    // Compact, as the kube adapter's: Pods other than gateway Pods as summaries.
    let mut snapshot = MemorySnapshot::compact();
    snapshot.put_vpc(from(json!({"apiVersion": "kubeovn.io/v1", "kind": "Vpc",
        "metadata": {"name": "ovn-cluster"}, "spec": {},
        "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default"}}))?);
    for (name, cidr, gateway, provider) in [
        ("ovn-default", "198.18.0.0/16", "198.18.0.1", "ovn"),
        (
            "macvlan1",
            "198.51.100.0/24",
            "198.51.100.1",
            "eth1.default",
        ),
    ] {
        snapshot.put_subnet(from(
            json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
            "metadata": {"name": name},
            "spec": {"cidrBlock": cidr, "gateway": gateway, "provider": provider}}),
        )?);
    }
    // Strict tenancy (the default): the gateways' ipBlocks lie in a subnet bound to their
    // namespace, and every selected namespace admits its gateways.
    snapshot.put_subnet(from(
        json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
        "metadata": {"name": "routed"},
        "spec": {"cidrBlock": "198.19.0.0/16", "provider": "ovn", "namespaces": ["default"]}}),
    )?);
    snapshot.put_nad(from(json!({"apiVersion": "k8s.cni.cncf.io/v1",
        "kind": "NetworkAttachmentDefinition",
        "metadata": {"name": "eth1", "namespace": "default"}, "spec": {"config": "{}"}}))?);
    let mut port_names = Vec::new();
    for n in 0..namespaces {
        let namespace = format!("ns-{n}");
        snapshot.put_namespace(from(json!({"metadata": {"name": namespace,
            "labels": {"group": format!("g-{}", n % gateways.max(1))},
            "annotations": {names::ANNOTATION_ADMITS_GATEWAYS: "default"}}}))?);
    }
    for p in 0..pods {
        let namespace = format!("ns-{}", p % namespaces.max(1));
        let name = format!("pod-{p}");
        port_names.push(format!("{name}.{namespace}"));
        snapshot.put_pod(pod(&namespace, &name)?);
    }
    // One namespace of RELABEL_PODS Pods, selected by gw-0 until it is relabelled to gw-1's
    // group at the end: a relabel that moves many Pods at once.
    snapshot.put_namespace(big_namespace("g-0")?);
    for p in 0..RELABEL_PODS {
        let name = format!("big-{p}");
        port_names.push(format!("{name}.{BIG}"));
        snapshot.put_pod(pod(BIG, &name)?);
    }
    for g in 0..gateways {
        let name = format!("gw-{g}");
        snapshot.put_gateway(from(json!({
            "apiVersion": "kubeovn.io/v1", "kind": "VpcEgressGateway",
            "metadata": {"name": name, "namespace": "default",
                "creationTimestamp": "2026-11-27T00:00:00Z",
                "finalizers": [names::FINALIZER]},
            "spec": {"replicas": 2, "externalSubnet": "macvlan1",
                "selectors": [{"namespaceSelector": {"matchLabels": {"group": format!("g-{g}")}}}],
                "policies": [{"snat": true, "ipBlocks": [ip_block(g)?]}]}
        }))?);
        for i in 0..2 {
            let ip = format!("198.18.{}.{}", 1 + g / 100, 10 + (g % 100) * 2 + i);
            snapshot.put_pod(from(json!({
                "metadata": {"name": format!("{name}-{i}"), "namespace": "default",
                    "labels": {"app": "vpc-egress-gateway",
                               "ovn.kubernetes.io/vpc-egress-gateway": name},
                    "annotations": {"k8s.v1.cni.cncf.io/network-status":
                        json!([{"name": "default/eth1", "ips": ["198.51.100.11"]}]).to_string()}},
                "spec": {"containers": [], "nodeName": format!("worker{i}")},
                "status": {"phase": "Running", "podIPs": [{"ip": ip}],
                    "conditions": [{"type": "Ready", "status": "True"}]}
            }))?);
        }
    }
    eprintln!(
        "==> inserting {} logical switch ports (RSS {} MiB)",
        port_names.len(),
        rss_mib()
    );
    insert_ports(&client, &port_names).await?;

    let api = ApiOutputs {
        delay: api_delay,
        requests: std::cell::Cell::new(0),
        statuses: std::cell::RefCell::new(Vec::new()),
    };
    let reconciler = Reconciler::new(client.clone(), &api, BfdMode::Native, "veg");
    let now = Time(k8s_openapi::jiff::Timestamp::now());

    // Full resync: every gateway once.
    eprintln!(
        "==> full resync of {gateways} gateways (RSS {} MiB)",
        rss_mib()
    );
    let started = Instant::now();
    for g in 0..gateways {
        let outcome = reconciler
            .reconcile(&snapshot, "default", &format!("gw-{g}"), &now)
            .await?;
        if outcome.nb_operations == 0 {
            anyhow::bail!("gw-{g} wrote nothing on the first pass: {outcome:?}");
        }
    }
    let resync = started.elapsed();
    let resync_requests = api.requests.get();
    echo_statuses(&api, &mut snapshot);

    // Pod events.
    eprintln!("==> {events} Pod additions (RSS {} MiB)", rss_mib());
    let index = Index::build(&snapshot);
    let mut latencies = Vec::new();
    let mut passes = Vec::new();
    let mut bytes = 0usize;
    for e in 0..events {
        let namespace = format!("ns-{}", e % namespaces.max(1));
        let name = format!("new-{e}");
        let port = format!("{name}.{namespace}");
        // Kube-OVN creates the port first; the Pod event follows.
        insert_ports(&client, std::slice::from_ref(&port)).await?;
        let uuid = port_uuid(&client, &port).context("the new port is not in the replica")?;
        let new_pod = pod(&namespace, &name)?;
        let started = Instant::now();
        let mut excluded = Duration::ZERO;
        snapshot.put_pod(new_pod.clone());
        let affected = index.affected(
            &snapshot,
            &Change::Pod {
                old: None,
                new: Some(&new_pod),
            },
        );
        // The bytes this event costs: the operations of its transaction (computed aside; the
        // time it takes is not counted).
        let aside = Instant::now();
        for key in &affected {
            let (ns, gw) = key.split_once('/').context("key")?;
            if let Some(gateway) = snapshot_gateway(&snapshot, ns, gw)
                && let Ok(inputs) = resolve(&gateway, &snapshot, &Tenancy::default())
            {
                let operations = nb::operations(
                    &client.replica(),
                    &client.schema(),
                    &ovn::plan(&inputs, BfdMode::Native),
                );
                bytes += operations
                    .iter()
                    .map(|op| op.to_json().to_string().len())
                    .sum::<usize>();
            }
        }
        excluded += aside.elapsed();
        let group = affected
            .iter()
            .next()
            .and_then(|key| key.split_once('/'))
            .map(|(ns, gw)| names::port_group(ns, gw))
            .context("no gateway selects the new Pod")?;
        // The passes, and the port's arrival in its group watched meanwhile.
        let passes_done = async {
            reconcile_all(&reconciler, &snapshot, &affected, &now).await?;
            Ok::<_, anyhow::Error>(Instant::now())
        };
        let in_group = async {
            client
                .wait_for(Duration::from_secs(5), |_| {
                    port_in_group(&client, &group, &uuid)
                })
                .await?;
            Ok::<_, anyhow::Error>(Instant::now())
        };
        let (passes_done, in_group) = tokio::join!(passes_done, in_group);
        echo_statuses(&api, &mut snapshot);
        latencies.push(in_group?.duration_since(started).saturating_sub(excluded));
        passes.push(
            passes_done?
                .duration_since(started)
                .saturating_sub(excluded),
        );
    }
    let event_requests = api.requests.get() - resync_requests;

    // Pod deletions: the Pods just added, each until its port has left its group.
    eprintln!("==> {events} Pod deletions");
    let mut deletions = Vec::new();
    for e in 0..events {
        let namespace = format!("ns-{}", e % namespaces.max(1));
        let name = format!("new-{e}");
        let port = format!("{name}.{namespace}");
        let uuid = port_uuid(&client, &port).context("the port is not in the replica")?;
        let old_pod = pod(&namespace, &name)?;
        let started = Instant::now();
        snapshot.remove_pod(&namespace, &name);
        let affected = index.affected(
            &snapshot,
            &Change::Pod {
                old: Some(&old_pod),
                new: None,
            },
        );
        let group = affected
            .iter()
            .next()
            .and_then(|key| key.split_once('/'))
            .map(|(ns, gw)| names::port_group(ns, gw))
            .context("no gateway selected the deleted Pod")?;
        let passes_done = async { reconcile_all(&reconciler, &snapshot, &affected, &now).await };
        let out_of_group = async {
            client
                .wait_for(Duration::from_secs(5), |_| {
                    !port_in_group(&client, &group, &uuid)
                })
                .await?;
            Ok::<_, anyhow::Error>(started.elapsed())
        };
        let (passes_done, out_of_group) = tokio::join!(passes_done, out_of_group);
        passes_done?;
        deletions.push(out_of_group?);
        echo_statuses(&api, &mut snapshot);
    }
    deletions.sort();

    // The relabel: namespace BIG moves from gw-0 to gw-1, until both groups are right.
    eprintln!("==> relabelling namespace {BIG} ({RELABEL_PODS} Pods) from gw-0 to gw-1");
    let big_ports: std::collections::BTreeSet<Atom> = (0..RELABEL_PODS)
        .filter_map(|p| port_uuid(&client, &format!("big-{p}.{BIG}")))
        .map(Atom::Uuid)
        .collect();
    let (from_group, to_group) = (
        names::port_group("default", "gw-0"),
        names::port_group("default", "gw-1"),
    );
    anyhow::ensure!(
        big_ports.len() == RELABEL_PODS && big_ports.is_subset(&group_ports(&client, &from_group)),
        "namespace {BIG}'s ports are not in gw-0's group before the relabel"
    );
    let (old_namespace, new_namespace) = (big_namespace("g-0")?, big_namespace("g-1")?);
    let started = Instant::now();
    snapshot.put_namespace(new_namespace.clone());
    let affected = index.affected(
        &snapshot,
        &Change::Namespace {
            old: Some(&old_namespace),
            new: Some(&new_namespace),
        },
    );
    reconcile_all(&reconciler, &snapshot, &affected, &now).await?;
    client
        .wait_for(Duration::from_secs(10), |_| {
            group_ports(&client, &from_group).is_disjoint(&big_ports)
                && big_ports.is_subset(&group_ports(&client, &to_group))
        })
        .await?;
    let relabel = started.elapsed();

    latencies.sort();
    passes.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 - 1.0) * q).round() as usize];
    let pass_at = |q: f64| passes[((passes.len() as f64 - 1.0) * q).round() as usize];
    println!(
        "full resync of {gateways} gateways ({pods} Pods, {namespaces} namespaces): {:.1} ms",
        resync.as_secs_f64() * 1e3
    );
    println!(
        "Pod added -> port in Port_Group over {events} events: median {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        at(1.0).as_secs_f64() * 1e3
    );
    println!(
        "Pod added -> pass done over {events} events: median {:.2} ms, p99 {:.2} ms",
        pass_at(0.5).as_secs_f64() * 1e3,
        pass_at(0.99).as_secs_f64() * 1e3
    );
    println!(
        "API requests ({} ms each): {resync_requests} in the resync, {:.1} per Pod event",
        api_delay.as_millis(),
        event_requests as f64 / events.max(1) as f64
    );
    println!(
        "Pod deleted -> port out of Port_Group over {events} events: median {:.2} ms, p99 {:.2} ms",
        deletions[((deletions.len() as f64 - 1.0) * 0.5).round() as usize].as_secs_f64() * 1e3,
        deletions[((deletions.len() as f64 - 1.0) * 0.99).round() as usize].as_secs_f64() * 1e3
    );
    println!(
        "namespace relabel moving {RELABEL_PODS} Pods between two gateways ({} passes) -> both \
         Port_Groups right: {:.1} ms",
        affected.len(),
        relabel.as_secs_f64() * 1e3
    );
    println!("NB bytes per Pod event: {}", bytes / events.max(1));
    println!("peak RSS: {} MiB", peak_rss_kib() / 1024);
    Ok(())
}

/// One pass of each affected gateway (`namespace/name` keys), in order.
async fn reconcile_all(
    reconciler: &Reconciler<&ApiOutputs>,
    snapshot: &MemorySnapshot,
    affected: &std::collections::BTreeSet<String>,
    now: &Time,
) -> Result<()> {
    for key in affected {
        let (namespace, name) = key.split_once('/').context("key")?;
        reconciler.reconcile(snapshot, namespace, name, now).await?;
    }
    Ok(())
}

/// The statuses written, back into the snapshot's gateways (the watch's echo of a write).
fn echo_statuses(api: &ApiOutputs, snapshot: &mut MemorySnapshot) {
    for (name, status) in api.statuses.borrow_mut().drain(..) {
        if let Some(mut gateway) = snapshot_gateway(snapshot, "default", &name) {
            gateway.status = Some(status);
            snapshot.put_gateway(gateway);
        }
    }
}

fn snapshot_gateway(
    snapshot: &MemorySnapshot,
    namespace: &str,
    name: &str,
) -> Option<veg_api::VpcEgressGateway> {
    use veg_controller::Snapshot as _;
    snapshot
        .gateways()
        .into_iter()
        .find(|g| {
            g.metadata.namespace.as_deref() == Some(namespace)
                && g.metadata.name.as_deref() == Some(name)
        })
        .cloned()
}
