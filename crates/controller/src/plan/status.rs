//! The status users read, and the events its transitions deserve (pure).
//!
//! Conditions follow Kube-OVN's semantics: `lastUpdateTime` moves when status, reason, message
//! or observedGeneration change, `lastTransitionTime` only when the status does; `phase` and
//! `conditions` are always present (the schema requires them). Events are emitted on
//! transitions only, never on every pass.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use veg_api::names;
use veg_api::{
    BfdState, Condition, ConditionStatus, GatewayInstance, Phase, VpcEgressGateway,
    VpcEgressGatewayStatus, Workload,
};

use crate::plan::conflict::{Overlap, held_back};
use crate::plan::context::{GatewayInputs, Problem};

/// Condition types.
pub mod types {
    /// The spec and its references are usable.
    pub const VALIDATED: &str = "Validated";
    /// Every instance is up and the rows are written.
    pub const READY: &str = "Ready";
    /// Another gateway of the VPC claims the same sources.
    pub const CONFLICT: &str = "Conflict";
}

/// What the status is computed from.
#[derive(Clone, Copy, Debug)]
pub struct StatusInputs<'a> {
    pub gateway: &'a VpcEgressGateway,
    /// Its resolution.
    pub resolved: Result<&'a GatewayInputs, &'a Problem>,
    /// Its overlaps with other gateways.
    pub overlaps: &'a [Overlap],
    /// Its Deployment, as the cluster reports it.
    pub deployment: Option<&'a Deployment>,
    /// BFD state by instance address (native: NB BFD status; monitor: the monitor's view).
    pub bfd: &'a BTreeMap<IpAddr, BfdState>,
    pub now: &'a Time,
}

/// Kube-OVN's `DeploymentIsReady`.
/// Why the Deployment's ReplicaSet cannot create Pods (its `ReplicaFailure` condition, e.g.
/// Pod Security admission refusing them), if it says.
pub fn replica_failure(deployment: &Deployment) -> Option<String> {
    deployment
        .status
        .as_ref()?
        .conditions
        .iter()
        .flatten()
        .find(|c| c.type_ == "ReplicaFailure" && c.status == "True")
        .map(|c| c.message.clone().unwrap_or_default())
}

pub fn deployment_ready(deployment: &Deployment) -> bool {
    let generation = deployment.metadata.generation.unwrap_or(0);
    let Some(status) = &deployment.status else {
        return false;
    };
    let wanted = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    let deadline_exceeded = status.conditions.iter().flatten().any(|c| {
        c.type_ == "Progressing" && c.reason.as_deref() == Some("ProgressDeadlineExceeded")
    });
    let updated = status.updated_replicas.unwrap_or(0);
    generation <= status.observed_generation.unwrap_or(0)
        && !deadline_exceeded
        && updated >= wanted
        && status.replicas.unwrap_or(0) <= updated
        && status.available_replicas.unwrap_or(0) >= updated
}

fn condition(type_: &str, status: ConditionStatus, reason: &str, message: String) -> Condition {
    Condition {
        type_: type_.to_owned(),
        status,
        reason: reason.to_owned(),
        message,
        ..Condition::default()
    }
}

/// Sets `new` into `conditions` with Kube-OVN's timestamp rules.
fn set_condition(conditions: &mut Vec<Condition>, mut new: Condition, generation: i64, now: &Time) {
    new.observed_generation = generation;
    match conditions.iter_mut().find(|c| c.type_ == new.type_) {
        Some(old) => {
            let changed = old.status != new.status
                || old.reason != new.reason
                || old.message != new.message
                || old.observed_generation != new.observed_generation;
            new.last_transition_time = if old.status == new.status {
                old.last_transition_time.clone()
            } else {
                Some(now.clone())
            };
            new.last_update_time = if changed {
                Some(now.clone())
            } else {
                old.last_update_time.clone()
            };
            *old = new;
        }
        None => {
            new.last_transition_time = Some(now.clone());
            new.last_update_time = Some(now.clone());
            conditions.push(new);
        }
    }
}

/// The new status, given the previous one.
pub fn status(
    previous: Option<&VpcEgressGatewayStatus>,
    inputs: StatusInputs<'_>,
) -> VpcEgressGatewayStatus {
    let gateway = inputs.gateway;
    let spec = &gateway.spec;
    let name = gateway.metadata.name.clone().unwrap_or_default();
    let generation = gateway.metadata.generation.unwrap_or(0);
    let now = inputs.now;
    let mut conditions = previous.map(|s| s.conditions.clone()).unwrap_or_default();
    let mut next = VpcEgressGatewayStatus {
        replicas: spec.replicas,
        label_selector: names::label_selector(&name),
        ..VpcEgressGatewayStatus::default()
    };

    let ready = match inputs.resolved {
        Err(problem) => {
            next.replicas = 0;
            let message = problem.to_string();
            set_condition(
                &mut conditions,
                condition(
                    types::VALIDATED,
                    ConditionStatus::False,
                    problem.reason(),
                    message.clone(),
                ),
                generation,
                now,
            );
            Err((problem.reason().to_owned(), message))
        }
        Ok(resolved) => {
            // Not a refusal: another tenant's labels must not be able to stop this gateway.
            let message = match resolved.excluded_namespaces {
                0 => String::new(),
                count => format!(
                    "the selectors also match Pods in {count} namespace(s) that do not admit this \
                     gateway; those Pods are not steered (a namespace admits it with the \
                     annotation {}={})",
                    names::ANNOTATION_ADMITS_GATEWAYS,
                    gateway.metadata.namespace.as_deref().unwrap_or_default()
                ),
            };
            set_condition(
                &mut conditions,
                condition(
                    types::VALIDATED,
                    ConditionStatus::True,
                    "Validated",
                    message,
                ),
                generation,
                now,
            );
            instances(&mut next, resolved, inputs.bfd, previous, now, spec);
            let deployment_name = names::deployment_name(&spec.prefix, &name);
            if held_back(inputs.overlaps) {
                Err((
                    "Conflict".to_owned(),
                    "held back by an older gateway with overlapping sources".to_owned(),
                ))
            } else if let Some(failure) = inputs.deployment.and_then(replica_failure) {
                // Not a wait: nothing starts until the cause is fixed.
                Err((
                    "ReplicaFailure".to_owned(),
                    format!("Deployment {deployment_name} cannot create its Pods: {failure}"),
                ))
            } else if !resolved.unschedulable.is_empty() {
                // A wait that may never end by itself: say what the scheduler said.
                Err((
                    "Unschedulable".to_owned(),
                    format!(
                        "Deployment {deployment_name} is not ready: {}",
                        resolved.unschedulable.join("; ")
                    ),
                ))
            } else if !inputs.deployment.is_some_and(deployment_ready) {
                Err((
                    "Processing".to_owned(),
                    format!("Waiting for Deployment {deployment_name} to be ready"),
                ))
            } else {
                let mut messages = resolved.messages.clone();
                let counted = resolved.instances.len();
                if i32::try_from(counted).unwrap_or(i32::MAX) != spec.replicas {
                    messages.push(format!(
                        "expected {} networked workload pods with network {}, got {counted}",
                        spec.replicas, resolved.workload.attachment
                    ));
                }
                if !messages.is_empty() {
                    Err(("WorkloadNetworkNotReady".to_owned(), messages.join("; ")))
                } else if let Some(message) = no_instance_up(&next) {
                    Err(("NoInstanceUp".to_owned(), message))
                } else {
                    Ok(())
                }
            }
        }
    };
    if inputs.overlaps.is_empty() {
        conditions.retain(|c| c.type_ != types::CONFLICT);
    } else {
        let message = inputs
            .overlaps
            .iter()
            .map(|o| {
                let side = if o.wins {
                    "this gateway is older and keeps them"
                } else {
                    "the other is older and keeps them"
                };
                format!("sources overlap with {} ({}; {side})", o.other, o.what)
            })
            .collect::<Vec<_>>()
            .join("; ");
        set_condition(
            &mut conditions,
            condition(
                types::CONFLICT,
                ConditionStatus::True,
                "OverlappingSources",
                message,
            ),
            generation,
            now,
        );
    }
    match ready {
        Ok(()) => {
            next.ready = true;
            next.phase = Phase::Completed;
            set_condition(
                &mut conditions,
                condition(
                    types::READY,
                    ConditionStatus::True,
                    "ReconcileSuccess",
                    String::new(),
                ),
                generation,
                now,
            );
        }
        Err((reason, message)) => {
            next.phase = Phase::Processing;
            set_condition(
                &mut conditions,
                condition(types::READY, ConditionStatus::False, &reason, message),
                generation,
                now,
            );
        }
    }
    next.conditions = conditions;
    next
}

/// With BFD on, a gateway none of whose instances has its session Up carries nothing (the
/// 29090 drop catches its sources): not Ready, whatever its Pods say.
fn no_instance_up(next: &VpcEgressGatewayStatus) -> Option<String> {
    let states: Vec<BfdState> = next.gateways.iter().filter_map(|g| g.bfd).collect();
    if states.is_empty() || states.contains(&BfdState::Up) {
        return None;
    }
    Some(format!(
        "no instance's BFD session is Up ({} of {}: {}); its sources are dropped until one is",
        states.len(),
        next.gateways.len(),
        next.gateways
            .iter()
            .map(|g| format!("{} {:?}", g.pod, g.bfd.unwrap_or(BfdState::Unknown)))
            .collect::<Vec<_>>()
            .join(", ")
    ))
}

fn instances(
    next: &mut VpcEgressGatewayStatus,
    resolved: &GatewayInputs,
    bfd: &BTreeMap<IpAddr, BfdState>,
    previous: Option<&VpcEgressGatewayStatus>,
    now: &Time,
    spec: &veg_api::VpcEgressGatewaySpec,
) {
    let join = |ips: &[IpAddr]| {
        ips.iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(",")
    };
    let mut nodes: Vec<String> = Vec::new();
    for instance in &resolved.instances {
        next.internal_ips.push(join(&instance.internal_ips));
        next.external_ips.push(join(&instance.external_ips));
        nodes.push(instance.node.clone());
        let state = resolved.bfd.as_ref().map(|_| {
            instance
                .internal_ips
                .iter()
                .find_map(|ip| bfd.get(ip).copied())
                .unwrap_or(BfdState::Unknown)
        });
        let before = previous.and_then(|p| p.gateways.iter().find(|g| g.pod == instance.pod));
        let since = match before {
            Some(before) if before.bfd == state => before.since.clone(),
            _ => Some(now.clone()),
        };
        next.gateways.push(GatewayInstance {
            pod: instance.pod.clone(),
            node: instance.node.clone(),
            internal_ips: instance
                .internal_ips
                .iter()
                .map(ToString::to_string)
                .collect(),
            external_ips: instance
                .external_ips
                .iter()
                .map(ToString::to_string)
                .collect(),
            bfd: state,
            since,
        });
    }
    nodes.sort();
    nodes.dedup();
    next.workload = Some(Workload {
        api_version: "apps/v1".into(),
        kind: "Deployment".into(),
        name: names::deployment_name(&spec.prefix, &resolved.name),
        nodes,
    });
}

/// An event to record on the gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event {
    /// `Normal` or `Warning`.
    pub type_: &'static str,
    pub reason: String,
    pub message: String,
}

/// The events for the change from `previous` to `next`: one per condition that changed
/// status or reason (a pass that changes nothing emits nothing).
pub fn events(
    previous: Option<&VpcEgressGatewayStatus>,
    next: &VpcEgressGatewayStatus,
) -> Vec<Event> {
    let mut out = Vec::new();
    for condition in &next.conditions {
        let before =
            previous.and_then(|p| p.conditions.iter().find(|c| c.type_ == condition.type_));
        let changed =
            before.is_none_or(|b| b.status != condition.status || b.reason != condition.reason);
        if !changed {
            continue;
        }
        let good = match condition.type_.as_str() {
            types::CONFLICT => false,
            _ => condition.status == ConditionStatus::True,
        };
        // A first Validated=True is not news; its failure is.
        if condition.type_ == types::VALIDATED && good {
            continue;
        }
        out.push(Event {
            type_: if good { "Normal" } else { "Warning" },
            reason: condition.reason.clone(),
            message: if condition.message.is_empty() {
                format!("{} is {:?}", condition.type_, condition.status)
            } else {
                condition.message.clone()
            },
        });
    }
    out
}

#[cfg(test)]
mod tests;
