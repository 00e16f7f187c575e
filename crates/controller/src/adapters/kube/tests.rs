//! The Kubernetes adapter against a mocked API server (tower-test) and a real NB
//! (`ovsdb-server`): create → finalizer, Deployment, status (exact bodies); Deployment ready →
//! Completed; delete → NB cleanup, then the finalizer goes; a bad spec → its condition and no
//! Deployment; a Pod label change → only the affected gateway; every request the adapter sent
//! is granted by the RBAC table.

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};
use tokio::sync::watch;
use veg_api::VpcEgressGateway;

use super::KubeOutputs;
use super::fake::{self, Recorded};
use super::rbac;
use super::source::{KubeSource, Object, Observed};
use crate::fixtures::{base_spec, cluster, from, gateway, instance, test_nb};
use crate::plan::ovn::BfdMode;
use crate::run::driver::{Update, keys};
use crate::run::queue::Key;
use crate::run::reconcile::Reconciler;
use crate::run::triggers::Index;
use crate::test_server as server;

const GATEWAY_PATH: &str = "/apis/kubeovn.io/v1/namespaces/default/vpc-egress-gateways/gateway1";

fn at(second: i64) -> Time {
    Time(Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn stored(gateway: &VpcEgressGateway) -> Value {
    let mut value = serde_json::to_value(gateway).unwrap_or_default();
    value["apiVersion"] = json!("kubeovn.io/v1");
    value["kind"] = json!("VpcEgressGateway");
    value
}

/// The gateway as the API server returns it (uid, resourceVersion), and in the mock.
fn created(state: &std::sync::Mutex<fake::State>, spec: Value) -> VpcEgressGateway {
    let mut g = gateway(spec);
    g.metadata.uid = Some("0b6f1c1e-0000-4000-8000-000000000001".into());
    g.metadata.resource_version = Some("7".into());
    g.metadata.creation_timestamp = Some(at(10));
    if let Ok(mut state) = state.lock() {
        state.objects.insert(GATEWAY_PATH.into(), stored(&g));
    }
    g
}

fn writes(state: &std::sync::Mutex<fake::State>) -> Vec<Recorded> {
    state.lock().map(|s| s.writes()).unwrap_or_default()
}

fn clear(state: &std::sync::Mutex<fake::State>) {
    if let Ok(mut state) = state.lock() {
        state.requests.clear();
    }
}

fn all_granted(state: &std::sync::Mutex<fake::State>) -> anyhow::Result<()> {
    for request in state.lock().map(|s| s.requests.clone()).unwrap_or_default() {
        let Some((group, resource, verb)) =
            rbac::permission(&request.method, &request.path, &request.query)
        else {
            anyhow::bail!("not a resource request: {request:?}");
        };
        anyhow::ensure!(
            rbac::granted_request(&request.method, &request.path, &request.query),
            "{verb} {group}/{resource} is not in the RBAC table ({request:?})"
        );
    }
    Ok(())
}

#[tokio::test]
async fn create_ready_delete_with_the_finalizer() -> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, nb) = test_nb().await?;
    let (client, state) = fake::server();
    let (_leader, leading) = watch::channel(true);
    let reconciler = Reconciler::new(
        nb.clone(),
        KubeOutputs::new(client, "veg-controller-0", leading),
        BfdMode::Native,
        "veg:test",
    );
    let mut snapshot = cluster();
    let gateway1 = created(&state, base_spec());
    snapshot.put_gateway(gateway1.clone());
    for (pod, node, ip, external) in [
        ("gw-a", "worker1", "198.18.0.12", "198.51.100.11"),
        ("gw-b", "worker2", "198.18.0.13", "198.51.100.12"),
    ] {
        snapshot.put_pod(instance(pod, node, ip, Some(external), true));
    }

    // Create: the finalizer first (guarded by the version the pass saw), then the NB rows,
    // the Deployment by server-side apply, the status by server-side apply, one event.
    reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(100))
        .await?;
    let sent = writes(&state);
    let summary: Vec<(String, String)> = sent
        .iter()
        .map(|r| (r.method.clone(), r.path.clone()))
        .collect();
    anyhow::ensure!(
        summary
            == [
                ("PATCH".to_owned(), GATEWAY_PATH.to_owned()),
                (
                    "PATCH".to_owned(),
                    "/apis/apps/v1/namespaces/default/deployments/gateway1".to_owned()
                ),
                ("PATCH".to_owned(), format!("{GATEWAY_PATH}/status")),
                (
                    "POST".to_owned(),
                    "/apis/events.k8s.io/v1/namespaces/default/events".to_owned()
                ),
            ],
        "{summary:#?}"
    );
    anyhow::ensure!(
        sent[0].body
            == json!({"metadata": {"finalizers": ["kubeovn.io/kube-ovn-controller"], "resourceVersion": "7"}}),
        "finalizer patch: {}",
        sent[0].body
    );
    anyhow::ensure!(
        sent[1].query.contains("fieldManager=veg-controller")
            && sent[1].query.contains("force=true")
    );
    anyhow::ensure!(
        sent[1].body["apiVersion"] == "apps/v1"
            && sent[1].body["kind"] == "Deployment"
            && sent[1].body["spec"]["replicas"] == 2
            && sent[1].body["metadata"]["ownerReferences"][0]["kind"] == "VpcEgressGateway",
        "deployment: {}",
        sent[1].body
    );
    let expected_status = json!({
        "apiVersion": "kubeovn.io/v1",
        "kind": "VpcEgressGateway",
        "status": {
            "replicas": 2,
            "labelSelector": "app=vpc-egress-gateway,ovn.kubernetes.io/vpc-egress-gateway=gateway1",
            "ready": false,
            "phase": "Processing",
            "internalIPs": ["198.18.0.12", "198.18.0.13"],
            "externalIPs": ["198.51.100.11", "198.51.100.12"],
            "conditions": [
                {"type": "Validated", "status": "True", "reason": "Validated",
                 "observedGeneration": 0, "lastUpdateTime": "1970-01-01T00:01:40Z",
                 "lastTransitionTime": "1970-01-01T00:01:40Z"},
                {"type": "Ready", "status": "False", "reason": "Processing",
                 "message": "Waiting for Deployment gateway1 to be ready",
                 "observedGeneration": 0, "lastUpdateTime": "1970-01-01T00:01:40Z",
                 "lastTransitionTime": "1970-01-01T00:01:40Z"}
            ],
            "workload": {"apiVersion": "apps/v1", "kind": "Deployment", "name": "gateway1",
                         "nodes": ["worker1", "worker2"]},
            "gateways": [
                {"pod": "gw-a", "node": "worker1", "internalIPs": ["198.18.0.12"],
                 "externalIPs": ["198.51.100.11"], "since": "1970-01-01T00:01:40Z"},
                {"pod": "gw-b", "node": "worker2", "internalIPs": ["198.18.0.13"],
                 "externalIPs": ["198.51.100.12"], "since": "1970-01-01T00:01:40Z"}
            ]
        }
    });
    anyhow::ensure!(
        sent[2].body == expected_status,
        "status body:\n{}\nexpected:\n{expected_status:#}",
        serde_json::to_string_pretty(&sent[2].body)?
    );
    anyhow::ensure!(
        sent[3].body["reason"] == "Processing"
            && sent[3].body["regarding"]["name"] == "gateway1"
            && sent[3].body["reportingController"] == "veg-controller",
        "event: {}",
        sent[3].body
    );
    anyhow::ensure!(nb.replica().table("Logical_Router_Policy").count() == 2);

    // The API server now has the finalizer and the status; the Deployment becomes ready.
    let mut seen: VpcEgressGateway = from(
        state
            .lock()
            .map(|s| s.objects[GATEWAY_PATH].clone())
            .unwrap_or_default(),
    );
    anyhow::ensure!(crate::run::reconcile::has_finalizer(&seen));
    snapshot.put_gateway(seen.clone());
    snapshot.put_deployment(from(json!({
        "metadata": {"name": "gateway1", "namespace": "default", "generation": 1},
        "spec": {"replicas": 2, "selector": {}, "template": {}},
        "status": {"observedGeneration": 1, "replicas": 2, "updatedReplicas": 2, "availableReplicas": 2}
    })));
    clear(&state);
    reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(110))
        .await?;
    let sent = writes(&state);
    let status = sent
        .iter()
        .find(|r| r.path.ends_with("/status"))
        .map(|r| r.body["status"].clone())
        .unwrap_or_default();
    anyhow::ensure!(
        status["phase"] == "Completed" && status["ready"] == true,
        "after ready: {status}"
    );
    anyhow::ensure!(
        !sent.iter().any(|r| r.path == GATEWAY_PATH),
        "the finalizer is not added twice"
    );

    // Delete: the API server sets deletionTimestamp; rows go first, then the finalizer.
    seen = from(
        state
            .lock()
            .map(|s| s.objects[GATEWAY_PATH].clone())
            .unwrap_or_default(),
    );
    seen.metadata.deletion_timestamp = Some(at(120));
    snapshot.put_gateway(seen.clone());
    clear(&state);
    reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(120))
        .await?;
    anyhow::ensure!(
        nb.replica().table("Logical_Router_Policy").count() == 0
            && nb.replica().table("Address_Set").count() == 0,
        "rows left after delete"
    );
    let sent = writes(&state);
    anyhow::ensure!(
        sent.len() == 1
            && sent[0].method == "PATCH"
            && sent[0].path == GATEWAY_PATH
            && sent[0].body["metadata"]["finalizers"] == json!([])
            && sent[0].body["metadata"]["resourceVersion"]
                == seen.metadata.resource_version.clone().unwrap_or_default(),
        "finalizer removal: {sent:#?}"
    );
    all_granted(&state)
}

#[tokio::test]
async fn a_bad_spec_gets_its_condition_and_no_deployment() -> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, nb) = test_nb().await?;
    let (client, state) = fake::server();
    let (_leader, leading) = watch::channel(true);
    let reconciler = Reconciler::new(
        nb.clone(),
        KubeOutputs::new(client, "veg-controller-0", leading),
        BfdMode::Native,
        "veg:test",
    );
    let mut snapshot = cluster();
    let mut spec = base_spec();
    spec["externalSubnet"] = json!("missing");
    snapshot.put_gateway(created(&state, spec));
    reconciler
        .reconcile(&snapshot, "default", "gateway1", &at(100))
        .await?;
    let sent = writes(&state);
    anyhow::ensure!(
        !sent.iter().any(|r| r.path.contains("/deployments/")),
        "a Deployment for a bad spec: {sent:#?}"
    );
    let status = sent
        .iter()
        .find(|r| r.path.ends_with("/status"))
        .map(|r| r.body["status"].clone())
        .unwrap_or_default();
    anyhow::ensure!(
        status["conditions"].as_array().is_some_and(|c| c
            .iter()
            .any(|c| c["status"] == "False" && c["reason"] == "SubnetNotFound")),
        "status: {status}"
    );
    anyhow::ensure!(nb.replica().table("Logical_Router_Policy").count() == 0);
    all_granted(&state)
}

#[tokio::test]
async fn a_standby_writes_nothing() -> anyhow::Result<()> {
    if !server::prerequisites() {
        return Ok(());
    }
    let (_servers, nb) = test_nb().await?;
    let (client, state) = fake::server();
    let (_leader, standby) = watch::channel(false);
    let reconciler = Reconciler::new(
        nb.clone(),
        KubeOutputs::new(client, "veg-controller-1", standby),
        BfdMode::Native,
        "veg:test",
    );
    // A new gateway, and one that already carries the finalizer (the pass then gets past it).
    for finalized in [false, true] {
        let mut snapshot = cluster();
        let mut gateway = created(&state, base_spec());
        if finalized {
            gateway.metadata.finalizers = Some(vec![veg_api::names::FINALIZER.to_owned()]);
        }
        snapshot.put_gateway(gateway);
        let outcome = reconciler
            .reconcile(&snapshot, "default", "gateway1", &at(100))
            .await;
        anyhow::ensure!(
            outcome.is_err(),
            "a standby's pass must fail before writing (finalized: {finalized})"
        );
        anyhow::ensure!(writes(&state).is_empty(), "{:#?}", writes(&state));
        // Nor the NB: checked in the NB itself.
        let rows: usize = ["Logical_Router_Policy", "Address_Set", "Port_Group", "BFD"]
            .iter()
            .map(|table| nb.replica().table(table).count())
            .sum();
        anyhow::ensure!(
            rows == 0,
            "a standby wrote {rows} NB rows (finalized: {finalized})"
        );
    }
    Ok(())
}

#[test]
fn a_pod_label_change_reconciles_only_the_gateway_it_affects() -> anyhow::Result<()> {
    let mut snapshot = cluster();
    let mut blue = gateway(json!({"replicas": 1, "externalSubnet": "macvlan1",
        "selectors": [{"podSelector": {"matchLabels": {"team": "blue"}}}]}));
    blue.metadata.name = Some("blue".into());
    let mut red = gateway(json!({"replicas": 1, "externalSubnet": "macvlan1",
        "selectors": [{"podSelector": {"matchLabels": {"team": "red"}}}]}));
    red.metadata.name = Some("red".into());
    snapshot.put_gateway(blue);
    snapshot.put_gateway(red);
    let pod = crate::fixtures::client(
        "default",
        "web",
        "ovn-cluster",
        json!({"status": {"podIPs": [{"ip": "198.18.0.40"}]}}),
    );
    snapshot.put_pod(pod.clone());
    let mut source = KubeSource::with_snapshot(snapshot);
    let index = Index::build(source.snapshot_ref());
    let mut relabelled = pod;
    relabelled.metadata.labels = Some([("team".to_owned(), "blue".to_owned())].into());
    let update = source
        .apply(Observed::Apply(Object::Pod(Box::new(relabelled))))
        .ok_or_else(|| anyhow::anyhow!("no update"))?;
    anyhow::ensure!(matches!(
        update,
        Update::Pod {
            old: Some(_),
            new: Some(_)
        }
    ));
    let found = keys(&index, source.snapshot_ref(), &update);
    anyhow::ensure!(
        found == vec![Key::Gateway("default".into(), "blue".into())],
        "{found:?}"
    );
    Ok(())
}

/// In the compact snapshot the kube adapter keeps, a client Pod is only a summary: when it
/// moves from one gateway's selector to another's, the watch event's `old` (rebuilt from the
/// summary) still names the gateway it leaves, so both are reconciled.
#[test]
fn a_pod_moving_between_gateways_in_a_compact_snapshot_reconciles_both() -> anyhow::Result<()> {
    let mut snapshot =
        crate::fixtures::cluster_in(crate::plan::snapshot::MemorySnapshot::compact());
    for team in ["blue", "red"] {
        let mut gateway = gateway(json!({"replicas": 1, "externalSubnet": "macvlan1",
            "selectors": [{"podSelector": {"matchLabels": {"team": team}}}]}));
        gateway.metadata.name = Some(team.into());
        snapshot.put_gateway(gateway);
    }
    let pod = crate::fixtures::client(
        "default",
        "web",
        "ovn-cluster",
        json!({"metadata": {"labels": {"team": "red"}}}),
    );
    snapshot.put_pod(pod.clone());
    anyhow::ensure!(
        crate::plan::snapshot::Snapshot::pods_in(&snapshot, "default").is_empty(),
        "the client Pod is kept whole"
    );
    let mut source = KubeSource::with_snapshot(snapshot);
    let index = Index::build(source.snapshot_ref());
    let mut relabelled = pod;
    relabelled.metadata.labels = Some([("team".to_owned(), "blue".to_owned())].into());
    let update = source
        .apply(Observed::Apply(Object::Pod(Box::new(relabelled))))
        .ok_or_else(|| anyhow::anyhow!("no update"))?;
    let mut found = keys(&index, source.snapshot_ref(), &update);
    found.sort();
    anyhow::ensure!(
        found
            == vec![
                Key::Gateway("default".into(), "blue".into()),
                Key::Gateway("default".into(), "red".into())
            ],
        "{found:?}"
    );
    Ok(())
}

#[tokio::test]
async fn the_source_lists_every_kind_through_the_api_with_granted_calls() -> anyhow::Result<()> {
    let (client, state) = fake::server();
    if let Ok(mut state) = state.lock() {
        let mut put = |path: &str, object: Value| {
            state.objects.insert(path.to_owned(), object);
        };
        let mut g = stored(&gateway(base_spec()));
        g["spec"]["vpc"] = json!("");
        put(GATEWAY_PATH, g);
        put(
            "/apis/kubeovn.io/v1/vpcs/ovn-cluster",
            json!({"apiVersion": "kubeovn.io/v1", "kind": "Vpc",
            "metadata": {"name": "ovn-cluster"}, "spec": {}, "status": {"router": "ovn-cluster"}}),
        );
        put(
            "/apis/kubeovn.io/v1/subnets/macvlan1",
            json!({"apiVersion": "kubeovn.io/v1", "kind": "Subnet",
            "metadata": {"name": "macvlan1"}, "spec": {"cidrBlock": "198.51.100.0/24", "provider": "eth1.default"}}),
        );
        put(
            "/apis/k8s.cni.cncf.io/v1/namespaces/default/network-attachment-definitions/eth1",
            json!({"apiVersion": "k8s.cni.cncf.io/v1", "kind": "NetworkAttachmentDefinition",
                "metadata": {"name": "eth1", "namespace": "default"}, "spec": {"config": "{}"}}),
        );
        put(
            "/api/v1/namespaces/default",
            json!({"apiVersion": "v1", "kind": "Namespace",
            "metadata": {"name": "default", "labels": {"team": "blue"}}, "spec": {"finalizers": ["kubernetes"]}}),
        );
        put(
            "/api/v1/nodes/worker1",
            json!({"apiVersion": "v1", "kind": "Node",
            "metadata": {"name": "worker1", "annotations": {"ovn.kubernetes.io/port_name": "node-worker1"}},
            "status": {"capacity": {"cpu": "4"}}}),
        );
        put(
            "/api/v1/namespaces/default/pods/web",
            json!({"apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": "web", "namespace": "default"}, "spec": {"containers": []},
            "status": {"podIPs": [{"ip": "198.18.0.40"}]}}),
        );
        put(
            "/apis/apps/v1/namespaces/default/deployments/gateway1",
            json!({"apiVersion": "apps/v1",
            "kind": "Deployment", "metadata": {"name": "gateway1", "namespace": "default",
            "labels": {"app": "vpc-egress-gateway"}}, "spec": {"selector": {}, "template": {}}}),
        );
        put(
            "/apis/apps/v1/namespaces/default/deployments/unrelated",
            json!({"apiVersion": "apps/v1",
            "kind": "Deployment", "metadata": {"name": "unrelated", "namespace": "default"},
            "spec": {"selector": {}, "template": {}}}),
        );
    }
    let source = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        KubeSource::start(client, "vpc-a"),
    )
    .await
    .map_err(|_| anyhow::anyhow!("the source did not list every kind within 10 s"))?;
    let snapshot = source.snapshot_ref();
    let gateways = snapshot.gateways();
    anyhow::ensure!(
        gateways.len() == 1 && gateways[0].spec.vpc == "vpc-a",
        "the default VPC fills spec.vpc"
    );
    anyhow::ensure!(snapshot.vpc("ovn-cluster").is_some() && snapshot.subnet("macvlan1").is_some());
    anyhow::ensure!(snapshot.nad("default", "eth1").is_some());
    // Compact: every Pod summarised, none of these kept whole (no gateway Pod among them).
    anyhow::ensure!(
        snapshot.pod_summaries_in("default").len() == 1 && snapshot.pods_in("default").is_empty()
    );
    anyhow::ensure!(snapshot.deployment("default", "gateway1").is_some());
    anyhow::ensure!(
        snapshot.deployment("default", "unrelated").is_none(),
        "only the gateways' Deployments"
    );
    let namespace = snapshot
        .namespaces()
        .into_iter()
        .next()
        .cloned()
        .unwrap_or_default();
    anyhow::ensure!(
        namespace
            .metadata
            .labels
            .unwrap_or_default()
            .get("team")
            .map(String::as_str)
            == Some("blue")
            && namespace.spec.is_none(),
        "namespaces are metadata only"
    );
    let node = snapshot.node("worker1").cloned().unwrap_or_default();
    anyhow::ensure!(
        node.status.is_none() && node.metadata.annotations.is_some(),
        "nodes are metadata only"
    );
    drop(source);
    all_granted(&state)?;
    let verbs: std::collections::BTreeSet<String> = state
        .lock()
        .map(|s| {
            s.requests
                .iter()
                .filter_map(|r| rbac::permission(&r.method, &r.path, &r.query))
                .map(|p| p.2)
                .collect()
        })
        .unwrap_or_default();
    anyhow::ensure!(verbs.contains("list"), "{verbs:?}");
    Ok(())
}
