//! One reconcile pass of one gateway, driving the pure parts with the NB client and the
//! narrow outputs an adapter provides (the kube adapter: server-side apply and the events
//! recorder; the lab: its kubelet).
//!
//! A gateway whose spec or references are wrong gets its conditions and nothing else: no NB
//! write, no Deployment change. A gateway held back by an older overlapping one has its rows
//! removed, so the two never fight. Everything else: NB rows in one transaction, the
//! Deployment, then the status and the events of its transitions.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::IpAddr;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tracing::{info, warn};
use veg_api::names;
use veg_api::{BfdState, VpcEgressGateway};
use veg_ovsdb::Client;
use veg_ovsdb::NbRow;
use veg_ovsdb::nb::{Bfd, LogicalRouterPolicy};

use crate::apply;
use crate::apply::nb;
use crate::error::ErrorClass;
use crate::plan::bfd_port;
use crate::plan::conflict::{self, Claim, ClaimIndex};
use crate::plan::context::{self, GatewayInputs};
use crate::plan::drain;
use crate::plan::ovn::{self, BfdMode};
use crate::plan::snapshot::Snapshot;
use crate::plan::stale::{self, Suspect};
use crate::plan::status::{self, StatusInputs};
use crate::plan::tenancy::Tenancy;
use crate::plan::workload;
use crate::run::outputs::{OutputError, Outputs};

/// Whether a gateway carries the controller's finalizer.
pub fn has_finalizer(gateway: &VpcEgressGateway) -> bool {
    gateway
        .metadata
        .finalizers
        .iter()
        .flatten()
        .any(|f| f == names::FINALIZER)
}

/// Why a pass failed (it is retried with backoff); problems of the spec are not errors.
#[derive(Debug, thiserror::Error)]
pub enum ReconcileError {
    /// The NB transaction failed.
    #[error("OVN NB: {0}")]
    Nb(veg_ovsdb::Error),
    /// The Deployment (or a leaving Pod's deletion cost) could not be written.
    #[error("applying the Deployment: {0}")]
    Deployment(OutputError),
    /// The status could not be written.
    #[error("writing the status: {0}")]
    Status(OutputError),
    /// The finalizer could not be added or removed.
    #[error("the finalizer: {0}")]
    Finalizer(OutputError),
    /// This replica may not write the NB now (it is not, or no longer, the leader).
    #[error("not writing the NB: {0}")]
    Fenced(OutputError),
    /// A row the gateway's rows would be named like belongs to another gateway (the names
    /// carry 48 bits of a hash of the key): nothing is written, the other's row stays.
    #[error("{table} {name} belongs to gateway {owner}; nothing written (rename this gateway)")]
    NameTaken {
        table: String,
        name: String,
        owner: String,
    },
}

// The cause is printed in the message, not chained as `source`: `{:#}` would print it twice.
impl From<veg_ovsdb::Error> for ReconcileError {
    fn from(error: veg_ovsdb::Error) -> Self {
        ReconcileError::Nb(error)
    }
}

impl ReconcileError {
    /// A short label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            ReconcileError::Nb(_) => "nb",
            ReconcileError::Deployment(_) => "deployment",
            ReconcileError::Status(_) => "status",
            ReconcileError::Finalizer(_) => "finalizer",
            ReconcileError::Fenced(_) => "fenced",
            ReconcileError::NameTaken { .. } => "name_taken",
        }
    }

    /// How the loop should handle it.
    pub fn class(&self) -> ErrorClass {
        match self {
            ReconcileError::Nb(error) => nb_class(error),
            ReconcileError::Deployment(error)
            | ReconcileError::Status(error)
            | ReconcileError::Finalizer(error)
            | ReconcileError::Fenced(error) => error.class(),
            ReconcileError::NameTaken { .. } => ErrorClass::Invalid,
        }
    }
}

/// An NB error's class: a failed transaction lost a race with another writer (the next pass
/// diffs against the new rows); a lost connection or leader may come back; the rest needs
/// an operator.
fn nb_class(error: &veg_ovsdb::Error) -> ErrorClass {
    match error {
        error if error.is_transient() => ErrorClass::Transient,
        veg_ovsdb::Error::Transaction { .. } => ErrorClass::Conflict,
        _ => ErrorClass::Fatal,
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
    /// Come back after this long (a drain window runs).
    pub requeue_after: Option<std::time::Duration>,
    /// Gateways whose overlaps this pass changed (its claim changed, and they overlap it now
    /// or did before): their last verdict may be stale, so they are reconciled again.
    pub recheck: std::collections::BTreeSet<String>,
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
    /// Monitor mode: the addresses of every `veg monitor` of the VPCs (two may run, each at
    /// its own address); gateway Pods accept BFD from them besides the VPC's BFD address.
    pub monitor_addresses: Vec<IpAddr>,
    /// What each gateway's namespace may steer (strict unless the operator opens it).
    pub tenancy: Tenancy,
    /// Monitor mode: the Secret, in each gateway's namespace, whose `key` its bfdd and the
    /// monitors authenticate BFD with (keyed SHA1).
    pub bfd_auth_secret: Option<String>,
    /// Every gateway's last claim (sources, selected ports), refreshed when that gateway is
    /// reconciled: an overlap check then costs one resolution, not one per gateway. A claim
    /// is stale only until its own gateway's pass, which the same trigger schedules.
    pub claims: std::sync::Mutex<ClaimIndex>,
    /// How long a leaving instance is out of the nexthops before its Pod is removed.
    pub drain_window: std::time::Duration,
    /// When each running scale-down started.
    pub drains: std::sync::Mutex<BTreeMap<String, k8s_openapi::jiff::Timestamp>>,
    /// What the passes count.
    pub metrics: std::sync::Arc<crate::run::metrics::Metrics>,
    /// Native mode: the instances each gateway withdrew on its last pass because OVN's BFD
    /// status may be stale (an event and a count when one joins).
    pub suspects: std::sync::Mutex<BTreeMap<String, std::collections::BTreeSet<String>>>,
}

impl<O> Reconciler<O> {
    /// A reconciler with an empty claims cache.
    pub fn new(nb: Client, outputs: O, mode: BfdMode, image: impl Into<String>) -> Self {
        Self {
            nb,
            outputs,
            mode,
            image: image.into(),
            monitor_addresses: Vec::new(),
            tenancy: Tenancy::default(),
            bfd_auth_secret: None,
            claims: std::sync::Mutex::new(ClaimIndex::default()),
            drain_window: drain::DEFAULT_WINDOW,
            drains: std::sync::Mutex::new(BTreeMap::new()),
            metrics: std::sync::Arc::default(),
            suspects: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// Forgets a gateway's claim (it was deleted).
    pub fn forget(&self, key: &str) {
        if let Ok(mut claims) = self.claims.lock() {
            claims.remove(key);
        }
        if let Ok(mut suspects) = self.suspects.lock() {
            suspects.remove(key);
        }
        self.metrics.gateway(key, None);
    }
}

/// BFD state as the monitor leaves it in the NB (monitor mode): a candidate in a reroute
/// policy's nexthops has its session Up; a candidate left out is Down.
fn monitor_bfd_states(client: &Client, key: &str) -> BTreeMap<IpAddr, BfdState> {
    let owner = ovn::external_ids(key, None);
    let replica = client.replica();
    let mut states = BTreeMap::new();
    for (uuid, row) in replica.owned_by(LogicalRouterPolicy::TABLE, &owner) {
        let policy = LogicalRouterPolicy::from_row(uuid, row);
        let Some(candidates) = policy
            .external_ids
            .get(veg_api::names::EXTERNAL_ID_CANDIDATES)
        else {
            continue;
        };
        let hops = &policy.nexthops;
        for ip in veg_api::names::decode_candidates(candidates) {
            let up = hops.contains(&ip.to_string());
            let state = states.entry(ip).or_insert(BfdState::Down);
            if up {
                *state = BfdState::Up;
            }
        }
    }
    states
}

/// BFD state of the NB BFD rows of a gateway, by instance address (native mode).
fn nb_bfd_states(client: &Client, key: &str) -> BTreeMap<IpAddr, BfdState> {
    let owner = ovn::external_ids(key, None);
    let replica = client.replica();
    replica
        .owned_by(Bfd::TABLE, &owner)
        .filter_map(|(uuid, row)| {
            let ip: IpAddr = Bfd::from_row(uuid, row).dst_ip.parse().ok()?;
            let status = veg_ovsdb::nb::bfd_status(row);
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
            // The gateways it held back may go ahead now.
            let recheck = self.unclaim(&key);
            self.forget(&key);
            let operations = self.cleanup(namespace, name).await?;
            return Ok(Outcome {
                nb_operations: operations,
                recheck,
                ..Outcome::default()
            });
        };
        if gateway.metadata.deletion_timestamp.is_some() {
            let recheck = self.unclaim(&key);
            self.forget(&key);
            let operations = self.cleanup(namespace, name).await?;
            // Only once every row is gone may the API server delete the object.
            if has_finalizer(&gateway) {
                self.outputs
                    .remove_finalizer(&gateway)
                    .await
                    .map_err(ReconcileError::Finalizer)?;
            }
            return Ok(Outcome {
                nb_operations: operations,
                recheck,
                ..Outcome::default()
            });
        }
        // Before anything is written for it: a deletion must wait for the cleanup.
        if !has_finalizer(&gateway) {
            self.outputs
                .add_finalizer(&gateway)
                .await
                .map_err(ReconcileError::Finalizer)?;
        }

        let resolved = context::resolve(&gateway, snapshot, &self.tenancy);
        let (overlaps, recheck) = match &resolved {
            Ok(inputs) => self.overlaps(snapshot, &gateway, inputs),
            Err(_) => (Vec::new(), self.unclaim(&key)),
        };
        let mut nb_operations = 0;
        let mut requeue_after = None;
        let deployment_name = names::deployment_name(&gateway.spec.prefix, name);
        if let Err(problem @ context::Problem::NotPermitted(_)) = &resolved {
            // Permission can be withdrawn (an annotation removed, a subnet rebound): what the
            // gateway steered until now goes, unlike a missing reference, which keeps the
            // last rows.
            self.may_write()?;
            nb_operations = nb::cleanup(&self.nb, namespace, name).await?;
            warn!(gateway = %key, %problem, nb_operations, "not permitted: nothing is steered");
        }
        if let Ok(inputs) = &resolved {
            if conflict::held_back(&overlaps) {
                self.may_write()?;
                nb_operations = nb::cleanup(&self.nb, namespace, name).await?;
                warn!(gateway = %key, ?overlaps, "held back by an older gateway with overlapping sources");
            } else {
                let current = snapshot
                    .deployment(namespace, &deployment_name)
                    .and_then(|d| d.spec.as_ref()?.replicas);
                let drain = self.drain_step(&key, current, gateway.spec.replicas, inputs, now);
                for pod in &drain.leaving {
                    self.outputs
                        .annotate_pod(namespace, pod, drain::DELETION_COST, drain::LEAVING_COST)
                        .await
                        .map_err(ReconcileError::Deployment)?;
                }
                // Native mode: instances OVN may be wrong about (their node not Ready, their
                // BFD row alive) are withdrawn by veg itself.
                let suspects = match self.mode {
                    BfdMode::Native => {
                        stale::suspects(&inputs.instances, &self.bfd_states(&key), |node| {
                            node_ready(snapshot, node)
                        })
                    }
                    BfdMode::Monitor => Vec::new(),
                };
                self.report_suspects(namespace, name, &key, &suspects).await;
                let mut withdrawn = drain.leaving.clone();
                withdrawn.extend(suspects.iter().map(|s| s.pod.clone()));
                let desired = ovn::plan(&without_instances(inputs, &withdrawn), self.mode);
                if let Some((table, name, owner)) = nb::taken_names(&self.nb.replica(), &desired)
                    .into_iter()
                    .next()
                {
                    return Err(ReconcileError::NameTaken { table, name, owner });
                }
                let started = std::time::Instant::now();
                self.may_write()?;
                nb_operations = nb::apply(&self.nb, &desired).await?;
                if nb_operations > 0 {
                    self.metrics
                        .nb_transaction_seconds
                        .observe(started.elapsed().as_secs_f64());
                }
                let mut deployment =
                    workload::render(&gateway, &self.with_monitors(inputs), &self.image);
                if let Some(spec) = deployment.spec.as_mut() {
                    spec.replicas = Some(drain.replicas);
                }
                self.outputs
                    .apply_deployment(&deployment)
                    .await
                    .map_err(ReconcileError::Deployment)?;
                requeue_after = drain.requeue_after;
            }
        }
        let bfd = self.bfd_states(&key);
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
        self.metrics.gateway(&key, Some(&next));
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
            requeue_after,
            recheck,
        })
    }

    /// The inputs as this mode renders them: native, the BFD peers are router ports (routed
    /// through the internal gateway); monitor (BFD on), every `veg monitor` is among the BFD
    /// peers, so gateway Pods accept their sessions; the inputs themselves otherwise.
    fn with_monitors<'a>(&self, inputs: &'a GatewayInputs) -> Cow<'a, GatewayInputs> {
        if self.mode == BfdMode::Native && inputs.bfd.is_some() {
            let mut rendered = inputs.clone();
            rendered.workload.bfd_routed = true;
            return Cow::Owned(rendered);
        }
        let known = |address: &IpAddr| inputs.workload.bfd_ips.contains(address);
        if self.mode != BfdMode::Monitor
            || inputs.bfd.is_none()
            || (self.monitor_addresses.iter().all(known) && self.bfd_auth_secret.is_none())
        {
            return Cow::Borrowed(inputs);
        }
        let mut rendered = inputs.clone();
        rendered.workload.bfd_auth_secret = self.bfd_auth_secret.clone();
        for address in &self.monitor_addresses {
            if !rendered.workload.bfd_ips.contains(address) {
                rendered.workload.bfd_ips.push(*address);
            }
        }
        Cow::Owned(rendered)
    }

    /// The BFD state of a gateway's instances as the NB shows it (native: BFD rows; monitor:
    /// the monitor's nexthops). A change means the status is stale.
    pub fn bfd_states(&self, key: &str) -> BTreeMap<IpAddr, BfdState> {
        match self.mode {
            BfdMode::Native => nb_bfd_states(&self.nb, key),
            BfdMode::Monitor => monitor_bfd_states(&self.nb, key),
        }
    }

    /// Reconciles a VPC's BFD port (its LRP and HA_Chassis_Group), then `status.bfdPort`.
    pub async fn reconcile_vpc(
        &self,
        snapshot: &dyn Snapshot,
        vpc_name: &str,
    ) -> Result<usize, ReconcileError> {
        let Some(vpc) = snapshot.vpc(vpc_name) else {
            return Ok(0);
        };
        let plan = bfd_port::plan(vpc, &snapshot.nodes());
        if let Some(plan) = &plan {
            if !plan.missing_chassis.is_empty() {
                warn!(vpc = %vpc_name, nodes = ?plan.missing_chassis,
                    "chosen nodes without the ovn.kubernetes.io/chassis annotation are left out");
            }
            if plan.nodes.is_empty() {
                warn!(vpc = %vpc_name, "no node for the BFD port: its HA_Chassis_Group is empty");
            }
        }
        let operations = apply::bfd_port::operations(
            &self.nb.replica(),
            &self.nb.schema(),
            vpc_name,
            plan.as_ref(),
        );
        self.may_write()?;
        let count = nb::commit(&self.nb, operations).await?;
        let wanted = plan.map(|plan| veg_api::kubeovn::BfdPortStatus {
            name: plan.port,
            ip: plan.networks.join(","),
            nodes: plan.nodes,
        });
        let current = vpc.status.as_ref().and_then(|s| s.bfd_port.clone());
        if current != wanted {
            self.outputs
                .patch_vpc_bfd_port(vpc_name, wanted.as_ref())
                .await
                .map_err(ReconcileError::Status)?;
        }
        Ok(count)
    }

    /// Says so (a Warning event, a log line, a count) when an instance joins the gateway's
    /// suspects, and once when it leaves them.
    async fn report_suspects(&self, namespace: &str, name: &str, key: &str, found: &[Suspect]) {
        let now: std::collections::BTreeSet<String> = found.iter().map(|s| s.pod.clone()).collect();
        let before = {
            let Ok(mut suspects) = self.suspects.lock() else {
                return;
            };
            if now.is_empty() {
                suspects.remove(key).unwrap_or_default()
            } else {
                suspects
                    .insert(key.to_owned(), now.clone())
                    .unwrap_or_default()
            }
        };
        for suspect in found.iter().filter(|s| !before.contains(&s.pod)) {
            let message = suspect.message();
            warn!(gateway = %key, pod = %suspect.pod, node = %suspect.node,
                address = %suspect.address, "stale BFD status: instance withdrawn by veg");
            self.metrics.stale_bfd_withdrawals.inc();
            self.outputs
                .event(
                    namespace,
                    name,
                    &status::Event {
                        type_: "Warning",
                        reason: "StaleBfdStatus".into(),
                        message,
                    },
                )
                .await;
        }
        for pod in before.difference(&now) {
            info!(gateway = %key, %pod, "no longer suspect: OVN's BFD status decides again");
        }
    }

    /// One scaling step, remembering when a scale-down started.
    fn drain_step(
        &self,
        key: &str,
        current: Option<i32>,
        wanted: i32,
        inputs: &GatewayInputs,
        now: &Time,
    ) -> drain::Drain {
        // Only this method takes the lock and it cannot panic while holding it.
        let mut drains = self
            .drains
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let step = drain::decide(
            current,
            wanted,
            &inputs.instances,
            drains.get(key).copied(),
            now.0,
            self.drain_window,
        );
        match step.started {
            Some(started) => {
                if !drains.contains_key(key) {
                    info!(gateway = %key, leaving = ?step.leaving, window_ms = self.drain_window.as_millis() as u64,
                        "scaling down: leaving instances are out of the nexthops first");
                }
                drains.insert(key.to_owned(), started);
            }
            None => {
                drains.remove(key);
            }
        }
        step
    }

    /// Whether the adapter lets this replica write now.
    fn may_write(&self) -> Result<(), ReconcileError> {
        self.outputs.may_write().map_err(ReconcileError::Fenced)
    }

    /// Removes every NB row of a gateway (the finalizer's work).
    pub async fn cleanup(&self, namespace: &str, name: &str) -> Result<usize, ReconcileError> {
        self.may_write()?;
        let operations = nb::cleanup(&self.nb, namespace, name).await?;
        if operations > 0 {
            info!(gateway = %names::gateway_key(namespace, name), operations, "removed its OVN rows");
        }
        Ok(operations)
    }

    /// A gateway that resolves no more claims nothing: the gateways it overlapped are told.
    fn unclaim(&self, key: &str) -> std::collections::BTreeSet<String> {
        let Ok(mut cache) = self.claims.lock() else {
            return std::collections::BTreeSet::new();
        };
        let before = cache.overlaps_of(key, |_| true);
        cache.remove(key);
        before.into_iter().map(|overlap| overlap.other).collect()
    }

    /// This gateway's overlaps, and the gateways to reconcile again because its claim changed.
    fn overlaps(
        &self,
        snapshot: &dyn Snapshot,
        gateway: &VpcEgressGateway,
        inputs: &GatewayInputs,
    ) -> (Vec<conflict::Overlap>, std::collections::BTreeSet<String>) {
        let Ok(mut cache) = self.claims.lock() else {
            return Default::default();
        };
        let claim = Claim::of(inputs, gateway.metadata.creation_timestamp.clone());
        // The overlaps of the old claim matter only when it changes (most passes it does not).
        let changed = !cache.holds(&claim);
        let before = if changed {
            cache.overlaps_of(&inputs.key, |_| true)
        } else {
            Vec::new()
        };
        cache.put(claim);
        // The gateways that count: every other one not being deleted; one never reconciled
        // yet is resolved once for its claim.
        let mut counted = std::collections::HashSet::new();
        for other in snapshot.gateways() {
            if other.metadata.deletion_timestamp.is_some() {
                continue;
            }
            let key = other.key();
            if key != inputs.key
                && !cache.contains(&key)
                && let Ok(other_inputs) = context::resolve(other, snapshot, &self.tenancy)
            {
                cache.put(Claim::of(
                    &other_inputs,
                    other.metadata.creation_timestamp.clone(),
                ));
            }
            counted.insert(key);
        }
        let now = cache.overlaps_of(&inputs.key, |key| counted.contains(key));
        let recheck = if changed {
            before
                .iter()
                .chain(&now)
                .map(|overlap| overlap.other.clone())
                .filter(|key| counted.contains(key))
                .collect()
        } else {
            std::collections::BTreeSet::new()
        };
        (now, recheck)
    }
}

/// The inputs without some instances' nexthops (they are leaving); no copy when none is.
/// A node's Ready condition: `Some(true)` when True, `Some(false)` when False or Unknown (or the
/// node is gone), `None` when it has none.
fn node_ready(snapshot: &dyn Snapshot, node: &str) -> Option<bool> {
    snapshot.node(node).map_or(Some(false), stale::node_ready)
}

fn without_instances<'a>(
    inputs: &'a GatewayInputs,
    leaving: &std::collections::BTreeSet<String>,
) -> Cow<'a, GatewayInputs> {
    if leaving.is_empty() {
        return Cow::Borrowed(inputs);
    }
    let mut planned = inputs.clone();
    let gone: std::collections::BTreeSet<IpAddr> = inputs
        .instances
        .iter()
        .filter(|instance| leaving.contains(&instance.pod))
        .flat_map(|instance| instance.internal_ips.iter().copied())
        .collect();
    for family in planned.families.values_mut() {
        for hops in family.nexthops.values_mut() {
            hops.retain(|hop| !gone.contains(hop));
        }
        family.nexthops.retain(|_, hops| !hops.is_empty());
    }
    Cow::Owned(planned)
}

#[cfg(test)]
mod tests;
