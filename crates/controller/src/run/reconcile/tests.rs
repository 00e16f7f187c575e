//! Whole passes against a real `ovsdb-server` with recorded outputs: create → rows,
//! Deployment and status; Deployment ready → Completed with one event; a pass with nothing new
//! writes nothing; a bad spec → its condition and no NB write, others unaffected; an
//! overlapping newer gateway is held back; delete → every row gone.

use std::collections::BTreeSet;
use std::sync::Mutex;
use std::time::Duration;

use k8s_openapi::jiff::Timestamp;
use serde_json::json;
use veg_ovsdb::{Operation, Row, Value};

use super::*;
use crate::fixtures::*;
use crate::plan::snapshot::MemorySnapshot;
use crate::plan::status::Event;
use crate::{OutputError, Outputs};
use k8s_openapi::api::apps::v1::Deployment;
use veg_api::VpcEgressGatewayStatus;

use crate::test_server as server;

#[derive(Default)]
struct Recorder {
    deployments: Mutex<Vec<(String, i32)>>,
    last_deployment: Mutex<Option<Deployment>>,
    annotations: Mutex<Vec<(String, String)>>,
    vpc_statuses: Mutex<Vec<(String, Option<veg_api::kubeovn::BfdPortStatus>)>>,
    statuses: Mutex<Vec<(String, VpcEgressGatewayStatus)>>,
    events: Mutex<Vec<(String, String, String)>>,
}

impl Outputs for &Recorder {
    async fn apply_deployment(&self, deployment: &Deployment) -> Result<(), OutputError> {
        if let Ok(mut list) = self.deployments.lock() {
            list.push((
                deployment.metadata.name.clone().unwrap_or_default(),
                deployment
                    .spec
                    .as_ref()
                    .and_then(|s| s.replicas)
                    .unwrap_or(0),
            ));
        }
        if let Ok(mut last) = self.last_deployment.lock() {
            *last = Some(deployment.clone());
        }
        Ok(())
    }
    async fn patch_status(
        &self,
        _namespace: &str,
        name: &str,
        status: &VpcEgressGatewayStatus,
    ) -> Result<(), OutputError> {
        if let Ok(mut list) = self.statuses.lock() {
            list.push((name.to_owned(), status.clone()));
        }
        Ok(())
    }
    async fn patch_vpc_bfd_port(
        &self,
        vpc: &str,
        status: Option<&veg_api::kubeovn::BfdPortStatus>,
    ) -> Result<(), OutputError> {
        if let Ok(mut list) = self.vpc_statuses.lock() {
            list.push((vpc.to_owned(), status.cloned()));
        }
        Ok(())
    }
    async fn annotate_pod(
        &self,
        _namespace: &str,
        pod: &str,
        key: &str,
        value: &str,
    ) -> Result<(), OutputError> {
        if let Ok(mut list) = self.annotations.lock() {
            list.push((pod.to_owned(), format!("{key}={value}")));
        }
        Ok(())
    }
    async fn event(&self, _namespace: &str, name: &str, event: &Event) {
        if let Ok(mut list) = self.events.lock() {
            list.push((
                name.to_owned(),
                event.type_.to_owned(),
                event.reason.clone(),
            ));
        }
    }
}

fn at(second: i64) -> Time {
    Time(Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn policy_count(client: &Client) -> usize {
    client.replica().table("Logical_Router_Policy").count()
}

fn last_status(recorder: &Recorder, name: &str) -> Option<VpcEgressGatewayStatus> {
    recorder
        .statuses
        .lock()
        .ok()?
        .iter()
        .rev()
        .find(|(n, _)| n == name)
        .map(|(_, s)| s.clone())
}

/// The snapshot keeps what the adapter wrote (the status), as an API server would.
fn store_status(
    snapshot: &mut MemorySnapshot,
    gateway: &VpcEgressGateway,
    status: Option<VpcEgressGatewayStatus>,
) {
    let mut gateway = gateway.clone();
    gateway.status = status;
    snapshot.put_gateway(gateway);
}

#[tokio::test]
async fn a_gateway_from_create_to_delete() -> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, client) = test_nb().await?;
    let recorder = Recorder::default();
    let reconciler = Reconciler::new(client.clone(), &recorder, BfdMode::Native, "veg:test");
    let mut snapshot = cluster();
    let mut gateway1 = gateway(base_spec());
    gateway1.metadata.creation_timestamp = Some(at(10));
    snapshot.put_gateway(gateway1.clone());
    for (pod, node, ip, external) in [
        ("gw-a", "worker1", "198.18.0.12", "198.51.100.11"),
        ("gw-b", "worker2", "198.18.0.13", "198.51.100.12"),
    ] {
        snapshot.put_pod(instance(pod, node, ip, Some(external), true));
    }

    // Create: rows, the Deployment, status Processing (the Deployment is not ready yet).
    let outcome = reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(100))
        .await?;
    anyhow::ensure!(outcome.nb_operations > 0 && !outcome.ready && outcome.reason == "Processing");
    anyhow::ensure!(policy_count(&client) == 2);
    anyhow::ensure!(
        recorder
            .deployments
            .lock()
            .map(|d| d.clone())
            .unwrap_or_default()
            == [("gateway1".to_owned(), 2)]
    );
    store_status(&mut snapshot, &gateway1, last_status(&recorder, "gateway1"));

    // The Deployment becomes ready: Completed, one ReconcileSuccess event.
    snapshot.put_deployment(from(json!({
        "metadata": {"name": "gateway1", "namespace": "default", "generation": 1},
        "spec": {"replicas": 2, "selector": {}, "template": {}},
        "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
    })));
    let outcome = reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(110))
        .await?;
    anyhow::ensure!(outcome.ready && outcome.nb_operations == 0, "{outcome:?}");
    let status = last_status(&recorder, "gateway1");
    anyhow::ensure!(
        status
            .as_ref()
            .is_some_and(|s| s.phase == veg_api::Phase::Completed)
    );
    store_status(&mut snapshot, &gateway1, status);
    let writes = recorder.statuses.lock().map(|s| s.len()).unwrap_or(0);

    // Nothing new: no NB operation, no status write, no event.
    let events_before = recorder.events.lock().map(|e| e.len()).unwrap_or(0);
    let outcome = reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(120))
        .await?;
    anyhow::ensure!(outcome.nb_operations == 0 && outcome.ready);
    anyhow::ensure!(
        recorder.statuses.lock().map(|s| s.len()).unwrap_or(0) == writes,
        "status rewritten"
    );
    anyhow::ensure!(
        recorder.events.lock().map(|e| e.len()).unwrap_or(0) == events_before,
        "event repeated"
    );
    let successes = recorder
        .events
        .lock()
        .map(|e| {
            e.iter()
                .filter(|(_, _, reason)| reason == "ReconcileSuccess")
                .count()
        })
        .unwrap_or(0);
    anyhow::ensure!(successes == 1);

    // A broken gateway: its condition, no NB write; gateway1 keeps its rows.
    let mut broken_spec = base_spec();
    merge(&mut broken_spec, json!({"externalSubnet": "nope"}));
    let mut broken = gateway(broken_spec);
    broken.metadata.name = Some("broken".into());
    snapshot.put_gateway(broken);
    let outcome = reconciler
        .reconcile(&snapshot, "default", "broken", &at(130))
        .await?;
    anyhow::ensure!(
        outcome.nb_operations == 0 && outcome.reason == "SubnetNotFound",
        "{outcome:?}"
    );
    anyhow::ensure!(policy_count(&client) == 2);

    // A newer gateway with the same sources is held back: no rows of its own.
    let mut newer = gateway(base_spec());
    newer.metadata.name = Some("newer".into());
    newer.metadata.creation_timestamp = Some(at(20));
    snapshot.put_gateway(newer);
    let outcome = reconciler
        .reconcile(&snapshot, "default", "newer", &at(140))
        .await?;
    anyhow::ensure!(outcome.reason == "Conflict", "{outcome:?}");
    anyhow::ensure!(policy_count(&client) == 2, "the newer gateway wrote rows");
    // Its new claim overlaps gateway1, whose verdict may now be stale: it is rechecked.
    anyhow::ensure!(
        outcome.recheck == BTreeSet::from(["default/gateway1".to_owned()]),
        "{outcome:?}"
    );
    // gateway1's claim is unchanged: nothing to recheck.
    let outcome = reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(145))
        .await?;
    anyhow::ensure!(outcome.recheck.is_empty(), "{outcome:?}");
    let newer_status = last_status(&recorder, "newer");
    anyhow::ensure!(newer_status.is_some_and(|s| {
        s.conditions
            .iter()
            .any(|c| c.type_ == "Conflict" && c.message.contains("default/gateway1"))
    }));

    // Delete: every row of gateway1 goes.
    snapshot.remove_gateway("default", "gateway1");
    let outcome = reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(150))
        .await?;
    anyhow::ensure!(outcome.nb_operations > 0);
    anyhow::ensure!(
        policy_count(&client) == 0 && client.replica().table("Address_Set").count() == 0
    );
    // The gateway it held back goes ahead on its next pass, which the deletion asks for.
    anyhow::ensure!(
        outcome.recheck == BTreeSet::from(["default/newer".to_owned()]),
        "{outcome:?}"
    );
    Ok(())
}

/// Specs that fail validation (veg-api's rules) or reference what is not there: each gets
/// Validated=False with its reason and no NB write, and the working gateway's rows stay.
#[tokio::test]
async fn bad_specs_get_conditions_and_no_nb_write() -> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, client) = test_nb().await?;
    let recorder = Recorder::default();
    let reconciler = Reconciler::new(client.clone(), &recorder, BfdMode::Native, "veg:test");
    let mut snapshot = cluster();
    snapshot.put_gateway(gateway(base_spec()));
    snapshot.put_pod(instance(
        "gw-a",
        "worker1",
        "198.18.0.12",
        Some("198.51.100.11"),
        true,
    ));
    reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(100))
        .await?;
    let dump = |client: &Client| -> Vec<String> {
        let replica = client.replica();
        let mut rows: Vec<String> = ["Address_Set", "Port_Group", "Logical_Router_Policy", "BFD"]
            .iter()
            .flat_map(|table| {
                replica
                    .table(table)
                    .map(move |(uuid, _)| format!("{table} {uuid}"))
            })
            .collect();
        rows.sort();
        rows
    };
    let before = dump(&client);
    anyhow::ensure!(!before.is_empty());
    let cases: Vec<serde_json::Value> = vec![
        json!({"internalIPs": ["198.51.100.300"]}),
        json!({"internalIPs": ["198.18.16.11,198.18.16.12"]}),
        json!({"externalIPs": ["198.51.100.11,2001:db8::11,198.51.100.12"]}),
        json!({"externalIPs": ["198.51.100.0/24"]}),
        json!({"internalIPs": ["::ffff:198.18.16.11"]}),
        json!({"replicas": 3, "internalIPs": ["198.18.16.11", "198.18.16.12"]}),
        json!({"externalIPs": ["198.51.100.11"]}),
        json!({"replicas": 1, "internalIPs": ["198.18.16.11"], "internalIPPool": "pool1"}),
        json!({"internalIPs": ["198.18.16.11", "198.18.16.11"]}),
        json!({"policies": [{"ipBlocks": ["198.18.0.0/33"]}]}),
        json!({"policies": [{"ipBlocks": ["subnet1"]}]}),
        json!({"policies": [{"snat": true, "ipBlocks": ["2001:db8::/129"]}]}),
        json!({"policies": [], "selectors": []}),
        json!({"policies": [{"snat": true}]}),
        json!({"policies": [{"subnets": [""]}]}),
        json!({"selectors": [{"namespaceSelector": {}}]}),
        json!({"replicas": 11}),
        json!({"replicas": -1}),
        json!({"bfd": {"enabled": true, "minRX": 0}}),
        json!({"bfd": {"minTX": 3_600_001}}),
        json!({"bfd": {"multiplier": 256}}),
        json!({"bfd": {"multiplier": 0}}),
        json!({"externalSubnet": ""}),
        json!({"prefix": "Veg-"}),
        json!({"bandwidth": {"ingress": -1}}),
        json!({"bandwidth": {"egress": "1T"}}),
        json!({"nodeSelector": [{}]}),
        // References that are not there.
        json!({"vpc": "vpc9"}),
        json!({"externalSubnet": "nope"}),
        json!({"internalSubnet": "nope"}),
        json!({"policies": [{"snat": true, "subnets": ["nope"]}]}),
        json!({"bfd": {"enabled": true}}),
        json!({"replicas": 1, "internalIPPool": "pool9"}),
    ];
    anyhow::ensure!(cases.len() >= 30);
    for (index, patch) in cases.iter().enumerate() {
        let mut spec = base_spec();
        merge(&mut spec, patch.clone());
        let mut bad = gateway(spec);
        let name = format!("bad{index}");
        bad.metadata.name = Some(name.clone());
        snapshot.put_gateway(bad);
        let outcome = reconciler
            .reconcile(&snapshot, "default", &name, &at(200))
            .await?;
        anyhow::ensure!(
            outcome.nb_operations == 0 && !outcome.ready,
            "{patch}: {outcome:?}"
        );
        let status = last_status(&recorder, &name).unwrap_or_default();
        let validated = status.conditions.iter().find(|c| c.type_ == "Validated");
        anyhow::ensure!(
            validated.is_some_and(
                |c| c.status == veg_api::ConditionStatus::False && !c.message.is_empty()
            ),
            "{patch}: {:?}",
            status.conditions
        );
        anyhow::ensure!(dump(&client) == before, "{patch}: the NB changed");
        snapshot.remove_gateway("default", &name);
    }
    anyhow::ensure!(
        recorder.deployments.lock().map(|d| d.len()).unwrap_or(0) == 1,
        "a bad spec got a Deployment"
    );
    Ok(())
}

/// Scale 3 → 2: the leaving instance is out of the nexthops at once and marked for deletion;
/// the Deployment keeps 3 replicas for the drain window, then gets 2.
#[tokio::test]
async fn scale_down_drains_before_the_pod_goes() -> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, client) = test_nb().await?;
    let recorder = Recorder::default();
    let reconciler = Reconciler::new(client.clone(), &recorder, BfdMode::Native, "veg:test");
    let mut snapshot = cluster();
    let mut spec = base_spec();
    merge(&mut spec, json!({"replicas": 2}));
    snapshot.put_gateway(gateway(spec));
    for (pod, ip) in [
        ("gw-a", "198.18.0.12"),
        ("gw-b", "198.18.0.13"),
        ("gw-c", "198.18.0.14"),
    ] {
        snapshot.put_pod(instance(pod, "worker1", ip, Some("198.51.100.11"), true));
    }
    snapshot.put_deployment(from(json!({
        "metadata": {"name": "gateway1", "namespace": "default", "generation": 1},
        "spec": {"replicas": 3, "selector": {}, "template": {}},
        "status": {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3}
    })));
    let nexthops = |client: &Client| -> BTreeSet<String> {
        client
            .replica()
            .table("Logical_Router_Policy")
            .flat_map(|(_, row)| row.get("nexthops").map(Value::as_set).unwrap_or_default())
            .filter_map(|atom| atom.as_str().map(str::to_owned))
            .collect()
    };
    let first = reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(100))
        .await?;
    anyhow::ensure!(
        first.requeue_after == Some(Duration::from_secs(5)),
        "{first:?}"
    );
    anyhow::ensure!(
        nexthops(&client) == BTreeSet::from(["198.18.0.12".to_owned(), "198.18.0.13".to_owned()]),
        "the leaving instance still gets traffic: {:?}",
        nexthops(&client)
    );
    anyhow::ensure!(
        recorder
            .annotations
            .lock()
            .map(|a| a.clone())
            .unwrap_or_default()
            == [(
                "gw-c".to_owned(),
                "controller.kubernetes.io/pod-deletion-cost=-1000".to_owned()
            )]
    );
    let replicas = |recorder: &Recorder| {
        recorder
            .deployments
            .lock()
            .ok()
            .and_then(|d| d.last().map(|(_, r)| *r))
    };
    anyhow::ensure!(replicas(&recorder) == Some(3), "scaled before the window");
    let during = reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(103))
        .await?;
    anyhow::ensure!(
        during.requeue_after == Some(Duration::from_secs(2)) && replicas(&recorder) == Some(3)
    );
    let after = reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(105))
        .await?;
    anyhow::ensure!(
        after.requeue_after.is_none() && replicas(&recorder) == Some(2),
        "{after:?}"
    );
    Ok(())
}

/// A VPC's BFD port: created on the VPC's router with its HA group, status.bfdPort written
/// once; nothing on a second pass; removed (and the status cleared) when disabled.
#[tokio::test]
async fn a_vpc_bfd_port_and_its_status() -> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, client) = test_nb().await?;
    let recorder = Recorder::default();
    let reconciler = Reconciler::new(client.clone(), &recorder, BfdMode::Native, "veg:test");
    let mut snapshot = cluster();
    snapshot.put_vpc(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "ovn-cluster"},
        "spec": {"bfdPort": {"enabled": true, "ip": "203.0.113.254"}},
        "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default"}
    })));
    for node in ["worker1", "worker2"] {
        snapshot.put_node(from(json!({"metadata": {"name": node,
            "annotations": {"ovn.kubernetes.io/chassis": format!("chassis-{node}")}}})));
    }
    anyhow::ensure!(reconciler.reconcile_vpc(&snapshot, "ovn-cluster").await? > 0);
    let written = recorder
        .vpc_statuses
        .lock()
        .map(|v| v.clone())
        .unwrap_or_default();
    let expected = veg_api::kubeovn::BfdPortStatus {
        name: "bfd@ovn-cluster".into(),
        ip: "203.0.113.254".into(),
        nodes: vec!["worker1".into(), "worker2".into()],
    };
    anyhow::ensure!(
        written == [("ovn-cluster".to_owned(), Some(expected.clone()))],
        "{written:?}"
    );
    anyhow::ensure!(client.replica().table("Logical_Router_Port").count() == 1);
    anyhow::ensure!(client.replica().table("HA_Chassis").count() == 2);
    // The status is stored: a second pass changes and writes nothing.
    snapshot.put_vpc(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "ovn-cluster"},
        "spec": {"bfdPort": {"enabled": true, "ip": "203.0.113.254"}},
        "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default",
                   "bfdPort": {"name": "bfd@ovn-cluster", "ip": "203.0.113.254",
                               "nodes": ["worker1", "worker2"]}}
    })));
    anyhow::ensure!(reconciler.reconcile_vpc(&snapshot, "ovn-cluster").await? == 0);
    anyhow::ensure!(recorder.vpc_statuses.lock().map(|v| v.len()).unwrap_or(0) == 1);
    // Disabled: the port goes, the status is cleared.
    snapshot.put_vpc(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "ovn-cluster"},
        "spec": {"bfdPort": {"enabled": false}},
        "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default",
                   "bfdPort": {"name": "bfd@ovn-cluster", "ip": "203.0.113.254",
                               "nodes": ["worker1", "worker2"]}}
    })));
    reconciler.reconcile_vpc(&snapshot, "ovn-cluster").await?;
    anyhow::ensure!(client.replica().table("Logical_Router_Port").count() == 0);
    anyhow::ensure!(
        recorder
            .vpc_statuses
            .lock()
            .ok()
            .and_then(|v| v.last().cloned())
            == Some(("ovn-cluster".to_owned(), None))
    );
    Ok(())
}

/// Monitor mode: the policies carry candidates and timers, the controller leaves the nexthops
/// alone, and the status reads each instance's BFD state from what the monitor wrote.
#[tokio::test]
async fn monitor_mode_status_follows_the_monitors_nexthops() -> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, client) = test_nb().await?;
    let recorder = Recorder::default();
    let reconciler = Reconciler::new(client.clone(), &recorder, BfdMode::Monitor, "veg:test");
    let mut snapshot = cluster();
    snapshot.put_vpc(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "ovn-cluster"},
        "spec": {},
        "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default",
                   "bfdPort": {"name": "bfd@ovn-cluster", "ip": "203.0.113.254"}}
    })));
    let mut spec = base_spec();
    merge(
        &mut spec,
        json!({"bfd": {"enabled": true, "minRX": 100, "minTX": 100}}),
    );
    let gateway1 = gateway(spec);
    snapshot.put_gateway(gateway1.clone());
    snapshot.put_pod(instance(
        "gw-a",
        "worker1",
        "198.18.0.12",
        Some("198.51.100.11"),
        true,
    ));
    snapshot.put_pod(instance(
        "gw-b",
        "worker2",
        "198.18.0.13",
        Some("198.51.100.12"),
        true,
    ));
    reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(100))
        .await?;
    // What `veg monitor` does when only gw-a's session is Up.
    let reroutes: Vec<String> = client
        .replica()
        .table("Logical_Router_Policy")
        .filter(|(_, row)| {
            row.get("external_ids")
                .map(Value::as_map)
                .unwrap_or_default()
                .contains_key(&veg_ovsdb::Atom::string("veg-candidates"))
        })
        .map(|(uuid, _)| uuid.clone())
        .collect();
    anyhow::ensure!(reroutes.len() == 2, "{reroutes:?}");
    let updates: Vec<Operation> = reroutes
        .iter()
        .map(|uuid| Operation::Update {
            table: "Logical_Router_Policy".into(),
            conditions: vec![veg_ovsdb::Condition::uuid(uuid.as_str())],
            row: Row::from([("nexthops".to_owned(), Value::string_set(["198.18.0.12"]))]),
        })
        .collect();
    client.transact(&updates).await?;
    client
        .wait_for(Duration::from_secs(5), |replica| {
            replica
                .table("Logical_Router_Policy")
                .filter(|(_, row)| {
                    row.get("nexthops")
                        .map(Value::as_set)
                        .unwrap_or_default()
                        .len()
                        == 1
                })
                .count()
                == 2
        })
        .await?;
    store_status(&mut snapshot, &gateway1, last_status(&recorder, "gateway1"));
    let outcome = reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(110))
        .await?;
    anyhow::ensure!(
        outcome.nb_operations == 0,
        "the controller rewrote the monitor's nexthops"
    );
    let status = last_status(&recorder, "gateway1").unwrap_or_default();
    let states: Vec<(String, Option<BfdState>)> = status
        .gateways
        .iter()
        .map(|g| (g.pod.clone(), g.bfd))
        .collect();
    anyhow::ensure!(
        states
            == [
                ("gw-a".to_owned(), Some(BfdState::Up)),
                ("gw-b".to_owned(), Some(BfdState::Down))
            ],
        "{states:?}"
    );
    Ok(())
}

/// Two monitors, each at its own address: the gateway Pods' bfdd accepts both besides the
/// VPC's BFD address.
#[tokio::test]
async fn gateways_accept_bfd_from_every_monitor() -> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, client) = test_nb().await?;
    let recorder = Recorder::default();
    let mut reconciler = Reconciler::new(client.clone(), &recorder, BfdMode::Monitor, "veg:test");
    reconciler.monitor_addresses = vec!["198.18.0.252".parse()?, "198.18.0.253".parse()?];
    reconciler.bfd_auth_secret = Some("veg-bfd-auth".into());
    let mut snapshot = cluster();
    snapshot.put_vpc(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "ovn-cluster"},
        "spec": {},
        "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default",
                   "bfdPort": {"name": "bfd@ovn-cluster", "ip": "198.18.0.253"}}
    })));
    let mut spec = base_spec();
    merge(&mut spec, json!({"bfd": {"enabled": true}}));
    snapshot.put_gateway(gateway(spec));
    reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(100))
        .await?;
    let deployment = recorder.last_deployment.lock().ok().and_then(|d| d.clone());
    let args: Vec<String> = deployment
        .and_then(|d| d.spec)
        .and_then(|s| s.template.spec)
        .map(|p| p.containers)
        .unwrap_or_default()
        .into_iter()
        .find(|c| c.name == "bfdd")
        .and_then(|c| c.args)
        .unwrap_or_default();
    let allow = args
        .iter()
        .position(|a| a == "--allow")
        .and_then(|i| args.get(i + 1))
        .cloned()
        .unwrap_or_default();
    anyhow::ensure!(allow == "198.18.0.253,198.18.0.252", "{args:?}");
    // Keyed SHA1 (monitor mode): bfdd reads the Secret's key.
    anyhow::ensure!(
        args.windows(2)
            .any(|pair| pair[0] == "--auth-key-file" && pair[1] == "/etc/veg/bfd-auth/key"),
        "{args:?}"
    );
    Ok(())
}

/// OVN's `BFD.status` (native mode) as the instance state the status shows: each value the
/// schema allows, and a row OVN has not set yet.
#[tokio::test]
async fn ovn_bfd_status_becomes_the_instance_state() -> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, client) = test_nb().await?;
    let key = names::gateway_key("default", "gateway1");
    let owner = Value::string_map(crate::plan::ovn::external_ids(&key, None));
    let row = |ip: &str, status: Option<&str>| {
        let mut row = Row::from([
            ("logical_port".to_owned(), Value::string("bfd@ovn-cluster")),
            ("dst_ip".to_owned(), Value::string(ip)),
            ("external_ids".to_owned(), owner.clone()),
        ]);
        if let Some(status) = status {
            row.insert("status".to_owned(), Value::string(status));
        }
        Operation::Insert {
            table: "BFD".into(),
            row,
            uuid_name: None,
        }
    };
    client
        .transact(&[
            row("198.18.0.11", Some("up")),
            row("198.18.0.12", Some("down")),
            row("198.18.0.13", Some("init")),
            row("198.18.0.14", Some("admin_down")),
            row("198.18.0.15", None),
        ])
        .await?;
    client
        .wait_for(Duration::from_secs(5), |replica| {
            replica.table("BFD").count() == 5
        })
        .await?;
    let recorder = Recorder::default();
    let reconciler = Reconciler::new(client.clone(), &recorder, BfdMode::Native, "veg:test");
    let states: Vec<String> = reconciler
        .bfd_states(&key)
        .into_iter()
        .map(|(ip, state)| format!("{ip} {state:?}"))
        .collect();
    assert_eq!(
        states,
        [
            "198.18.0.11 Up",
            "198.18.0.12 Down",
            "198.18.0.13 Init",
            "198.18.0.14 AdminDown",
            "198.18.0.15 Unknown",
        ]
    );
    // Another gateway's rows are not this one's.
    assert!(
        reconciler
            .bfd_states(&names::gateway_key("default", "other"))
            .is_empty()
    );
    Ok(())
}

/// Leadership ends in the middle of a pass, while its first write waits on an API server that
/// stopped answering: the write is abandoned, the pass ends fenced, and nothing of it reaches
/// the NB afterwards (the pass's NB transaction comes after that write).
#[tokio::test]
async fn a_pass_that_loses_leadership_midway_writes_nothing_after() -> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, client) = test_nb().await?;
    let (api, state) = crate::adapters::kube::fake::server();
    let (leader, leading) = tokio::sync::watch::channel(true);
    let outputs = crate::adapters::kube::KubeOutputs::new(api, "veg-0", leading);
    let reconciler = Reconciler::new(client.clone(), outputs, BfdMode::Native, "veg:test");
    let mut snapshot = cluster();
    snapshot.put_gateway(gateway(base_spec()));
    for (pod, node, ip, external) in [
        ("gw-a", "worker1", "198.18.0.12", "198.51.100.11"),
        ("gw-b", "worker2", "198.18.0.13", "198.51.100.12"),
    ] {
        snapshot.put_pod(instance(pod, node, ip, Some(external), true));
    }
    if let Ok(mut state) = state.lock() {
        state.silent = true;
    }
    let pass = async {
        let result = tokio::time::timeout(
            Duration::from_secs(5),
            reconciler.reconcile(&snapshot, "default", "gateway1", &at(100)),
        )
        .await;
        (result, std::time::Instant::now())
    };
    // Once the pass waits on its first API write, leadership ends.
    let cut = async {
        loop {
            if state.lock().is_ok_and(|s| !s.requests.is_empty()) {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        leader.send_replace(false);
        std::time::Instant::now()
    };
    let ((result, ended), lost) = tokio::join!(pass, cut);
    let result =
        result.map_err(|_| anyhow::anyhow!("the pass still waits on the silent server"))?;
    anyhow::ensure!(
        ended >= lost,
        "the pass did not wait on the silent server: {result:?}"
    );
    anyhow::ensure!(
        result
            .as_ref()
            .is_err_and(|e| e.to_string().contains("not the leader")),
        "{result:?}"
    );
    // Give a stray write time to land, then look: the NB holds none of the gateway's rows.
    tokio::time::sleep(Duration::from_millis(300)).await;
    anyhow::ensure!(policy_count(&client) == 0, "the NB was written");
    let writes = state.lock().map(|s| s.writes().len()).unwrap_or(usize::MAX);
    anyhow::ensure!(
        writes == 1,
        "{writes} API writes, expected the one abandoned"
    );
    Ok(())
}

/// Strict tenancy: a gateway that names what its namespace may not use writes no NB row and
/// gets no Deployment; one whose permission is withdrawn loses the rows it had.
#[tokio::test]
async fn a_gateway_not_permitted_writes_nothing_and_loses_its_rows_when_permission_goes()
-> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, client) = test_nb().await?;
    let recorder = Recorder::default();
    let reconciler = Reconciler::new(client.clone(), &recorder, BfdMode::Native, "veg:test");
    let mut snapshot = cluster();
    let gateway1 = gateway(base_spec());
    snapshot.put_gateway(gateway1.clone());
    for (pod, node, ip, external) in [
        ("gw-a", "worker1", "198.18.0.12", "198.51.100.11"),
        ("gw-b", "worker2", "198.18.0.13", "198.51.100.12"),
    ] {
        snapshot.put_pod(instance(pod, node, ip, Some(external), true));
    }
    reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(100))
        .await?;
    anyhow::ensure!(policy_count(&client) == 2);
    let rows = || client.replica().table("Address_Set").count();
    let sets = rows();

    // A gateway of namespace `other` capturing everything through default's attachment:
    // refused (the first field refused is the attachment), nothing written.
    let mut intruder = gateway(json!({"replicas": 1, "externalSubnet": "macvlan1",
        "policies": [{"snat": true, "ipBlocks": ["0.0.0.0/0"]}]}));
    intruder.metadata.namespace = Some("other".into());
    intruder.metadata.name = Some("intruder".into());
    snapshot.put_gateway(intruder);
    let outcome = reconciler
        .reconcile(&snapshot, "other", "intruder", &at(110))
        .await?;
    anyhow::ensure!(
        outcome.nb_operations == 0 && outcome.reason == "NotPermitted",
        "{outcome:?}"
    );
    anyhow::ensure!(policy_count(&client) == 2 && rows() == sets);
    let status = last_status(&recorder, "intruder").unwrap_or_default();
    let validated = status.conditions.iter().find(|c| c.type_ == "Validated");
    anyhow::ensure!(
        validated.is_some_and(|c| c.reason == "NotPermitted"
            && c.message
                .starts_with("spec.externalSubnet: subnet macvlan1")),
        "{:?}",
        status.conditions
    );
    anyhow::ensure!(
        recorder.deployments.lock().map(|d| d.len()).unwrap_or(0) == 1,
        "the refused gateway got a Deployment"
    );

    // subnet1 is rebound to namespace `other`, which no longer admits default's gateways:
    // gateway1 may not steer it any more, and its rows go.
    snapshot.put_subnet(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Subnet", "metadata": {"name": "subnet1"},
        "spec": {"cidrBlock": "198.18.16.0/20,2001:db8:16::/64", "provider": "ovn",
                 "namespaces": ["other"]}
    })));
    snapshot.put_namespace(from(json!({"metadata": {"name": "other",
        "labels": {"team": "red"}}})));
    let outcome = reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(120))
        .await?;
    anyhow::ensure!(
        outcome.reason == "NotPermitted" && outcome.nb_operations > 0,
        "{outcome:?}"
    );
    anyhow::ensure!(policy_count(&client) == 0, "the rows stayed");
    let status = last_status(&recorder, "gateway1").unwrap_or_default();
    anyhow::ensure!(
        status.conditions.iter().any(|c| c.type_ == "Validated"
            && c.message
                .starts_with("spec.policies[0].subnets[0]: subnet subnet1")),
        "{:?}",
        status.conditions
    );
    Ok(())
}

/// A newer `trafficPolicy: Local` gateway (priority 29150, above the older one's 29100)
/// selecting a Pod inside the older gateway's subnet source would take the Pod over; the
/// overlap of a CIDR with a selected Pod holds it back like any other overlap.
#[tokio::test]
async fn a_newer_local_gateway_selecting_a_pod_in_an_older_gateways_cidr_is_held_back()
-> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, nb_client) = test_nb().await?;
    let recorder = Recorder::default();
    let reconciler = Reconciler::new(nb_client.clone(), &recorder, BfdMode::Native, "veg:test");
    let mut snapshot = cluster();
    // The older gateway: subnet1 only, no selectors.
    let mut older = gateway(json!({"replicas": 1, "externalSubnet": "macvlan1",
        "policies": [{"snat": true, "subnets": ["subnet1"]}]}));
    older.metadata.creation_timestamp = Some(at(10));
    snapshot.put_gateway(older);
    // A Pod of namespace default with an address in subnet1.
    snapshot.put_pod(client(
        "default",
        "web",
        "ovn-cluster",
        json!({"status": {"podIPs": [{"ip": "198.18.16.5"}]}}),
    ));
    let mut local = gateway(json!({"replicas": 1, "externalSubnet": "macvlan1",
        "trafficPolicy": "Local",
        "selectors": [{"podSelector": {"matchLabels": {"app": "client"}}}]}));
    local.metadata.name = Some("local".into());
    local.metadata.creation_timestamp = Some(at(20));
    snapshot.put_gateway(local);
    reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(100))
        .await?;
    let rows = nb_client.replica().table("Address_Set").count();
    anyhow::ensure!(rows > 0);
    let outcome = reconciler
        .reconcile(&snapshot, "default", "local", &at(110))
        .await?;
    anyhow::ensure!(
        outcome.reason == "Conflict" && outcome.nb_operations == 0,
        "{outcome:?}"
    );
    anyhow::ensure!(
        nb_client.replica().table("Address_Set").count() == rows,
        "the newer gateway wrote rows"
    );
    let status = last_status(&recorder, "local").unwrap_or_default();
    anyhow::ensure!(
        status.conditions.iter().any(|c| c.type_ == "Conflict"
            && c.message
                .contains("198.18.16.0/20 holds selected Pod address 198.18.16.5")),
        "{:?}",
        status.conditions
    );
    Ok(())
}
