//! One reconcile pass of one gateway, driving the pure parts with the NB client and the
//! narrow outputs an adapter provides (the kube adapter: server-side apply and the events
//! recorder; the lab: its kubelet).
//!
//! A gateway whose spec or references are wrong gets its conditions and nothing else: no NB
//! write, no Deployment change. A gateway held back by an older overlapping one has its rows
//! removed, so the two never fight. Everything else: NB rows in one transaction, the
//! Deployment, then the status and the events of its transitions.

use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tracing::{info, warn};
use veg_api::names;
use veg_api::{BfdState, VpcEgressGateway, VpcEgressGatewayStatus};
use veg_ovsdb::{Atom, Client, Value};

use crate::conflict::{self, Claim};
use crate::context::{self, GatewayInputs};
use crate::nb;
use crate::ovn::{self, BfdMode};
use crate::snapshot::Snapshot;
use crate::status::{self, Event, StatusInputs};
use crate::workload;

/// What an adapter does with the pass's results.
#[allow(async_fn_in_trait)]
pub trait Outputs {
    /// Creates or updates the gateway's Deployment.
    async fn apply_deployment(&self, deployment: &Deployment) -> Result<(), String>;
    /// Writes the gateway's status (always with `phase` and `conditions`).
    async fn patch_status(
        &self,
        namespace: &str,
        name: &str,
        status: &VpcEgressGatewayStatus,
    ) -> Result<(), String>;
    /// Records an event on the gateway.
    async fn event(&self, namespace: &str, name: &str, event: &Event);
}

/// Why a pass failed (it is retried with backoff); problems of the spec are not errors.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The NB transaction failed.
    #[error("OVN NB: {0}")]
    Nb(#[from] veg_ovsdb::Error),
    /// The Deployment could not be applied.
    #[error("applying the Deployment: {0}")]
    Deployment(String),
    /// The status could not be written.
    #[error("writing the status: {0}")]
    Status(String),
}

impl ReconcileError {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReconcileError::Nb(_) => "nb",
            ReconcileError::Deployment(_) => "deployment",
            ReconcileError::Status(_) => "status",
        }
    }
}

/// What a pass did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Outcome {
    /// NB operations committed (0: the NB already held the rows).
    pub nb_operations: usize,
    /// Whether the gateway is ready.
    pub ready: bool,
    /// The reason of the Ready condition.
    pub reason: String,
}

/// The reconciler of one controller.
pub struct Reconciler<O> {
    /// The NB client (its replica is the view of OVN).
    pub nb: Client,
    /// The adapter's outputs.
    pub outputs: O,
    /// Who keeps nexthops current when BFD is on.
    pub mode: BfdMode,
    /// The gateway image when the spec names none.
    pub image: String,
    /// Every gateway's last claim (sources, selected ports), refreshed when that gateway is
    /// reconciled: an overlap check then costs one resolution, not one per gateway. A claim
    /// is stale only until its own gateway's pass, which the same trigger schedules.
    pub claims: std::sync::Mutex<BTreeMap<String, Claim>>,
}

impl<O> Reconciler<O> {
    /// A reconciler with an empty claims cache.
    pub fn new(nb: Client, outputs: O, mode: BfdMode, image: impl Into<String>) -> Self {
        Self {
            nb,
            outputs,
            mode,
            image: image.into(),
            claims: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Forgets a gateway's claim (it was deleted).
    pub fn forget(&self, key: &str) {
        if let Ok(mut claims) = self.claims.lock() {
            claims.remove(key);
        }
    }
}

/// BFD state of the NB BFD rows of a gateway, by instance address (native mode).
fn nb_bfd_states(client: &Client, key: &str) -> BTreeMap<IpAddr, BfdState> {
    let owner = ovn::external_ids(key, None);
    let replica = client.replica();
    replica
        .owned_by("BFD", &owner)
        .filter_map(|(_, row)| {
            let ip: IpAddr = row
                .get("dst_ip")
                .and_then(Value::as_atom)
                .and_then(Atom::as_str)?
                .parse()
                .ok()?;
            let status = row
                .get("status")
                .map(Value::as_set)
                .unwrap_or_default()
                .into_iter()
                .find_map(|atom| atom.as_str().map(str::to_owned));
            let state = match status.as_deref() {
                Some("up") => BfdState::Up,
                Some("down") => BfdState::Down,
                Some("init") => BfdState::Init,
                Some("admin_down") => BfdState::AdminDown,
                _ => BfdState::Unknown,
            };
            Some((ip, state))
        })
        .collect()
}

impl<O: Outputs> Reconciler<O> {
    /// Reconciles gateway `namespace/name` against `snapshot`; a gateway that is gone has its
    /// rows removed.
    pub async fn reconcile(
        &self,
        snapshot: &dyn Snapshot,
        namespace: &str,
        name: &str,
        now: &Time,
    ) -> Result<Outcome, ReconcileError> {
        let key = names::gateway_key(namespace, name);
        let Some(gateway) = snapshot
            .gateways()
            .into_iter()
            .find(|g| {
                g.metadata.namespace.as_deref() == Some(namespace)
                    && g.metadata.name.as_deref() == Some(name)
            })
            .cloned()
        else {
            self.forget(&key);
            let operations = self.cleanup(namespace, name).await?;
            return Ok(Outcome {
                nb_operations: operations,
                ..Outcome::default()
            });
        };
        if gateway.metadata.deletion_timestamp.is_some() {
            self.forget(&key);
            let operations = self.cleanup(namespace, name).await?;
            return Ok(Outcome {
                nb_operations: operations,
                ..Outcome::default()
            });
        }

        let resolved = context::resolve(&gateway, snapshot);
        let overlaps = match &resolved {
            Ok(inputs) => self.overlaps(snapshot, &gateway, inputs),
            Err(_) => Vec::new(),
        };
        let mut nb_operations = 0;
        if let Ok(inputs) = &resolved {
            if conflict::held_back(&overlaps) {
                nb_operations = nb::cleanup(&self.nb, namespace, name).await?;
                warn!(gateway = %key, ?overlaps, "held back by an older gateway with overlapping sources");
            } else {
                let desired = ovn::plan(inputs, self.mode);
                nb_operations = nb::apply(&self.nb, &desired).await?;
                let deployment = workload::render(&gateway, inputs, &self.image);
                self.outputs
                    .apply_deployment(&deployment)
                    .await
                    .map_err(ReconcileError::Deployment)?;
            }
        }
        let deployment_name = names::deployment_name(&gateway.spec.prefix, name);
        let bfd = match self.mode {
            BfdMode::Native => nb_bfd_states(&self.nb, &key),
            BfdMode::Monitor => BTreeMap::new(),
        };
        let previous = gateway.status.clone();
        let next = status::status(
            previous.as_ref(),
            StatusInputs {
                gateway: &gateway,
                resolved: resolved.as_ref(),
                overlaps: &overlaps,
                deployment: snapshot.deployment(namespace, &deployment_name),
                bfd: &bfd,
                now,
            },
        );
        if previous.as_ref() != Some(&next) {
            self.outputs
                .patch_status(namespace, name, &next)
                .await
                .map_err(ReconcileError::Status)?;
        }
        for event in status::events(previous.as_ref(), &next) {
            self.outputs.event(namespace, name, &event).await;
        }
        let ready_reason = next
            .conditions
            .iter()
            .find(|c| c.type_ == status::types::READY)
            .map(|c| c.reason.clone())
            .unwrap_or_default();
        info!(gateway = %key, nb_operations, ready = next.ready, reason = %ready_reason, "reconciled");
        Ok(Outcome {
            nb_operations,
            ready: next.ready,
            reason: ready_reason,
        })
    }

    /// Removes every NB row of a gateway (the finalizer's work).
    pub async fn cleanup(&self, namespace: &str, name: &str) -> Result<usize, ReconcileError> {
        let operations = nb::cleanup(&self.nb, namespace, name).await?;
        if operations > 0 {
            info!(gateway = %names::gateway_key(namespace, name), operations, "removed its OVN rows");
        }
        Ok(operations)
    }

    fn overlaps(
        &self,
        snapshot: &dyn Snapshot,
        gateway: &VpcEgressGateway,
        inputs: &GatewayInputs,
    ) -> Vec<conflict::Overlap> {
        let mine = Claim::of(inputs, gateway.metadata.creation_timestamp.clone());
        let Ok(mut cache) = self.claims.lock() else {
            return Vec::new();
        };
        cache.insert(mine.key.clone(), mine.clone());
        let mut claims = vec![mine];
        for other in snapshot.gateways() {
            let key = names::gateway_key(
                other.metadata.namespace.as_deref().unwrap_or_default(),
                other.metadata.name.as_deref().unwrap_or_default(),
            );
            if key == inputs.key || other.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let claim = match cache.get(&key) {
                Some(claim) => Some(claim.clone()),
                None => context::resolve(other, snapshot).ok().map(|other_inputs| {
                    let claim = Claim::of(&other_inputs, other.metadata.creation_timestamp.clone());
                    cache.insert(key.clone(), claim.clone());
                    claim
                }),
            };
            if let Some(claim) = claim.filter(|claim| claim.vpc == inputs.vpc) {
                claims.push(claim);
            }
        }
        conflict::overlaps(&claims)
            .remove(&inputs.key)
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests;
