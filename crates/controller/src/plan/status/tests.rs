//! Status and events: Kube-OVN's phases, reasons and messages, per-instance BFD state and
//! `since`, condition timestamps, conflicts, and events on transitions only.

use k8s_openapi::jiff::Timestamp;
use serde_json::json;

use super::*;
use crate::fixtures::*;
use crate::plan::conflict::Overlap;
use crate::plan::context::resolve;
use crate::plan::tenancy::Tenancy;

fn at(second: i64) -> Time {
    Time(Timestamp::from_second(second).unwrap_or(Timestamp::UNIX_EPOCH))
}

fn ready_deployment() -> Deployment {
    from(json!({
        "metadata": {"name": "gateway1", "namespace": "default", "generation": 2},
        "spec": {"replicas": 2, "selector": {}, "template": {}},
        "status": {"observedGeneration": 2, "replicas": 2, "updatedReplicas": 2,
                   "availableReplicas": 2, "readyReplicas": 2}
    }))
}

fn gateway_with_bfd() -> VpcEgressGateway {
    let mut spec = base_spec();
    merge(&mut spec, json!({"bfd": {"enabled": true}}));
    let mut gateway = gateway(spec);
    gateway.metadata.generation = Some(3);
    gateway
}

fn snapshot_with(instances: &[(&str, &str, &str)]) -> crate::plan::snapshot::MemorySnapshot {
    let mut snapshot = cluster();
    snapshot.put_vpc(from(json!({
        "apiVersion": "kubeovn.io/v1", "kind": "Vpc", "metadata": {"name": "ovn-cluster"},
        "spec": {},
        "status": {"router": "ovn-cluster", "defaultLogicalSwitch": "ovn-default",
                   "bfdPort": {"name": "bfd@ovn-cluster", "ip": "203.0.113.254"}}
    })));
    for (pod, node, ip) in instances {
        snapshot.put_pod(instance(pod, node, ip, Some("198.51.100.11"), true));
    }
    snapshot
}

fn reasons(status: &VpcEgressGatewayStatus) -> Vec<String> {
    status
        .conditions
        .iter()
        .map(|c| format!("{}={:?}/{}", c.type_, c.status, c.reason))
        .collect()
}

#[test]
fn a_ready_gateway_is_completed_with_instances_and_bfd_states() -> Result<(), Problem> {
    let gateway = gateway_with_bfd();
    let snapshot = snapshot_with(&[
        ("gw-a", "worker1", "198.18.0.12"),
        ("gw-b", "worker2", "198.18.0.13"),
    ]);
    let resolved = resolve(&gateway, &snapshot, &Tenancy::default())?;
    let deployment = ready_deployment();
    let bfd = BTreeMap::from([(
        "198.18.0.12"
            .parse()
            .map_err(|_| Problem::VpcNotFound(String::new()))?,
        BfdState::Up,
    )]);
    let next = status(
        None,
        StatusInputs {
            gateway: &gateway,
            resolved: Ok(&resolved),
            overlaps: &[],
            deployment: Some(&deployment),
            bfd: &bfd,
            now: &at(100),
        },
    );
    assert!(next.ready);
    assert_eq!(next.phase, Phase::Completed);
    assert_eq!(
        reasons(&next),
        ["Validated=True/Validated", "Ready=True/ReconcileSuccess"]
    );
    assert!(next.conditions.iter().all(|c| c.observed_generation == 3));
    assert_eq!(next.internal_ips, ["198.18.0.12", "198.18.0.13"]);
    assert_eq!(
        next.label_selector,
        "app=vpc-egress-gateway,ovn.kubernetes.io/vpc-egress-gateway=gateway1"
    );
    let states: Vec<(String, Option<BfdState>)> = next
        .gateways
        .iter()
        .map(|g| (g.pod.clone(), g.bfd))
        .collect();
    assert_eq!(
        states,
        [
            ("gw-a".to_owned(), Some(BfdState::Up)),
            ("gw-b".to_owned(), Some(BfdState::Unknown))
        ]
    );
    assert_eq!(
        next.workload.as_ref().map(|w| w.nodes.clone()),
        Some(vec!["worker1".to_owned(), "worker2".to_owned()])
    );
    let first_events = events(None, &next);
    assert_eq!(first_events.len(), 1);
    assert_eq!(
        (first_events[0].type_, first_events[0].reason.as_str()),
        ("Normal", "ReconcileSuccess")
    );

    // The same pass again: no event, timestamps kept; a BFD change moves only that `since`.
    let bfd_later = BTreeMap::from([
        (
            "198.18.0.12"
                .parse()
                .map_err(|_| Problem::VpcNotFound(String::new()))?,
            BfdState::Up,
        ),
        (
            "198.18.0.13"
                .parse()
                .map_err(|_| Problem::VpcNotFound(String::new()))?,
            BfdState::Up,
        ),
    ]);
    let again = status(
        Some(&next),
        StatusInputs {
            gateway: &gateway,
            resolved: Ok(&resolved),
            overlaps: &[],
            deployment: Some(&deployment),
            bfd: &bfd_later,
            now: &at(200),
        },
    );
    assert!(events(Some(&next), &again).is_empty());
    assert_eq!(again.conditions, next.conditions);
    assert_eq!(again.gateways[0].since, Some(at(100)));
    assert_eq!(again.gateways[1].since, Some(at(200)));
    Ok(())
}

#[test]
fn not_ready_reasons_follow_kube_ovn() -> Result<(), Problem> {
    let gateway = gateway_with_bfd();
    let one = snapshot_with(&[("gw-a", "worker1", "198.18.0.12")]);
    let resolved = resolve(&gateway, &one, &Tenancy::default())?;
    let bfd = BTreeMap::new();
    let now = at(100);
    let inputs = |deployment| StatusInputs {
        gateway: &gateway,
        resolved: Ok(&resolved),
        overlaps: &[],
        deployment,
        bfd: &bfd,
        now: &now,
    };
    let waiting = status(None, inputs(None));
    assert_eq!(waiting.phase, Phase::Processing);
    assert!(!waiting.ready);
    let ready = waiting
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready.reason, "Processing");
    assert_eq!(ready.message, "Waiting for Deployment gateway1 to be ready");

    let deployment = ready_deployment();
    let short = status(Some(&waiting), inputs(Some(&deployment)));
    let ready = short
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready.reason, "WorkloadNetworkNotReady");
    assert_eq!(
        ready.message,
        "expected 2 networked workload pods with network default/eth1, got 1"
    );
    // Status stayed False: the transition time is kept, the update time moved.
    let before = waiting
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready.last_transition_time, before.last_transition_time);
    let short_events = events(Some(&waiting), &short);
    assert_eq!(short_events.len(), 1);
    assert_eq!(
        (short_events[0].type_, short_events[0].reason.as_str()),
        ("Warning", "WorkloadNetworkNotReady")
    );

    // A problem: Validated=False with its reason, Ready=False, no replicas, and one event each.
    let problem = Problem::VpcBfdPortNotEnabled("ovn-cluster".into());
    let broken = status(
        Some(&short),
        StatusInputs {
            gateway: &gateway,
            resolved: Err(&problem),
            overlaps: &[],
            deployment: None,
            bfd: &bfd,
            now: &at(300),
        },
    );
    assert_eq!(
        reasons(&broken),
        [
            "Validated=False/VpcBfdPortNotEnabled",
            "Ready=False/VpcBfdPortNotEnabled"
        ]
    );
    assert_eq!(broken.replicas, 0);
    let validated = broken
        .conditions
        .iter()
        .find(|c| c.type_ == "Validated")
        .cloned()
        .unwrap_or_default();
    assert_eq!(
        validated.message,
        "vpc ovn-cluster bfd port is not enabled or not ready"
    );
    assert_eq!(events(Some(&short), &broken).len(), 2);
    Ok(())
}

#[test]
fn overlaps_name_each_other_and_hold_the_newer_back() -> Result<(), Problem> {
    let gateway = gateway_with_bfd();
    let snapshot = snapshot_with(&[
        ("gw-a", "worker1", "198.18.0.12"),
        ("gw-b", "worker2", "198.18.0.13"),
    ]);
    let resolved = resolve(&gateway, &snapshot, &Tenancy::default())?;
    let deployment = ready_deployment();
    // Both sessions Up: only the overlap keeps it from Ready.
    let bfd: BTreeMap<IpAddr, BfdState> = ["198.18.0.12", "198.18.0.13"]
        .iter()
        .filter_map(|ip| ip.parse().ok())
        .map(|ip| (ip, BfdState::Up))
        .collect();
    let lost = [Overlap {
        other: "default/old".into(),
        what: "198.19.0.0/16 and 198.19.0.0/16".into(),
        wins: false,
    }];
    let next = status(
        None,
        StatusInputs {
            gateway: &gateway,
            resolved: Ok(&resolved),
            overlaps: &lost,
            deployment: Some(&deployment),
            bfd: &bfd,
            now: &at(100),
        },
    );
    assert_eq!(
        reasons(&next),
        [
            "Validated=True/Validated",
            "Conflict=True/OverlappingSources",
            "Ready=False/Conflict"
        ]
    );
    let conflict = next
        .conditions
        .iter()
        .find(|c| c.type_ == "Conflict")
        .cloned()
        .unwrap_or_default();
    assert!(
        conflict.message.contains("default/old"),
        "{}",
        conflict.message
    );
    let warnings: Vec<String> = events(None, &next)
        .into_iter()
        .filter(|e| e.type_ == "Warning")
        .map(|e| e.reason)
        .collect();
    assert_eq!(warnings, ["OverlappingSources", "Conflict"]);
    // The overlap gone: the Conflict condition goes too.
    let resolved_again = status(
        Some(&next),
        StatusInputs {
            gateway: &gateway,
            resolved: Ok(&resolved),
            overlaps: &[],
            deployment: Some(&deployment),
            bfd: &bfd,
            now: &at(200),
        },
    );
    assert_eq!(
        reasons(&resolved_again),
        ["Validated=True/Validated", "Ready=True/ReconcileSuccess"]
    );
    Ok(())
}

#[test]
fn with_bfd_on_no_instance_up_is_not_ready() -> Result<(), Problem> {
    let gateway = gateway_with_bfd();
    let snapshot = snapshot_with(&[
        ("gw-a", "worker1", "198.18.0.12"),
        ("gw-b", "worker2", "198.18.0.13"),
    ]);
    let resolved = resolve(&gateway, &snapshot, &Tenancy::default())?;
    let deployment = ready_deployment();
    let state = |a: BfdState, b: BfdState| -> BTreeMap<IpAddr, BfdState> {
        ["198.18.0.12", "198.18.0.13"]
            .iter()
            .filter_map(|ip| ip.parse().ok())
            .zip([a, b])
            .collect()
    };
    let with = |bfd: &BTreeMap<IpAddr, BfdState>, previous: Option<&VpcEgressGatewayStatus>| {
        status(
            previous,
            StatusInputs {
                gateway: &gateway,
                resolved: Ok(&resolved),
                overlaps: &[],
                deployment: Some(&deployment),
                bfd,
                now: &at(100),
            },
        )
    };
    // Pods ready, no session Up yet (or all down): the gateway carries nothing.
    let down = with(&state(BfdState::Down, BfdState::Init), None);
    assert!(!down.ready);
    assert_eq!(
        reasons(&down),
        ["Validated=True/Validated", "Ready=False/NoInstanceUp"]
    );
    let message = down
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.message.clone())
        .unwrap_or_default();
    assert!(message.contains("gw-a Down, gw-b Init"), "{message}");
    // One Up is enough: the other instance's state is in status.gateways.
    let one = with(&state(BfdState::Down, BfdState::Up), Some(&down));
    assert!(one.ready);
    assert_eq!(one.phase, Phase::Completed);
    Ok(())
}

#[test]
fn a_deployment_whose_pods_are_refused_says_why() -> Result<(), Problem> {
    let gateway = gateway_with_bfd();
    let snapshot = snapshot_with(&[]);
    let resolved = resolve(&gateway, &snapshot, &Tenancy::default())?;
    let bfd = BTreeMap::new();
    // What a ReplicaSet reports when admission refuses its Pods.
    let refused: k8s_openapi::api::apps::v1::Deployment = from(json!({
        "metadata": {"name": "gateway1", "namespace": "default", "generation": 1},
        "spec": {"replicas": 2, "selector": {}, "template": {}},
        "status": {"observedGeneration": 1, "replicas": 0, "conditions": [
            {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
             "message": "pods \"gateway1-0\" is forbidden: violates PodSecurity \"baseline:latest\""}]}
    }));
    let next = status(
        None,
        StatusInputs {
            gateway: &gateway,
            resolved: Ok(&resolved),
            overlaps: &[],
            deployment: Some(&refused),
            bfd: &bfd,
            now: &at(100),
        },
    );
    let ready = next
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready.reason, "ReplicaFailure");
    assert!(
        ready.message.starts_with(
            "Deployment gateway1 cannot create its Pods: pods \"gateway1-0\" is forbidden"
        ),
        "{}",
        ready.message
    );
    Ok(())
}

#[test]
fn a_pod_no_node_can_take_is_named_with_the_schedulers_reason() -> Result<(), Problem> {
    let gateway = gateway_with_bfd();
    let mut snapshot = snapshot_with(&[("gw-a", "worker1", "198.18.0.12")]);
    let reason = "0/3 nodes are available: 3 node(s) didn't match pod anti-affinity rules.";
    let mut pending = instance("gw-b", "", "198.18.0.13", None, false);
    pending.status = Some(from(json!({"phase": "Pending", "conditions": [
        {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
         "message": reason}]})));
    snapshot.put_pod(pending);
    let resolved = resolve(&gateway, &snapshot, &Tenancy::default())?;
    assert_eq!(resolved.instances.len(), 1);
    assert_eq!(
        resolved.unschedulable,
        [format!("pod gw-b cannot be scheduled: {reason}")]
    );
    let bfd = BTreeMap::new();
    let next = status(
        None,
        StatusInputs {
            gateway: &gateway,
            resolved: Ok(&resolved),
            overlaps: &[],
            deployment: None,
            bfd: &bfd,
            now: &at(100),
        },
    );
    let ready = next
        .conditions
        .iter()
        .find(|c| c.type_ == "Ready")
        .cloned()
        .unwrap_or_default();
    assert_eq!(ready.reason, "Unschedulable");
    assert_eq!(
        ready.message,
        format!("Deployment gateway1 is not ready: pod gw-b cannot be scheduled: {reason}")
    );
    Ok(())
}
