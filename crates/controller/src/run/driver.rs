//! The controller loop both adapters run: changes from a source (kube watches, the lab's
//! manifests and kubelet) become keys through the trigger index; keys are reconciled one at a
//! time from the work queue, failures retried with backoff, drain windows honoured.

use std::collections::BTreeMap;
use std::time::Instant;

use k8s_openapi::api::core::v1::{Namespace, Node, Pod};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tracing::{debug, warn};
use veg_api::names;

use crate::plan::bfd_port;
use crate::plan::snapshot::Snapshot;
use crate::run::outputs::Outputs;
use crate::run::queue::{Key, WorkQueue};
use crate::run::reconcile::{ReconcileError, Reconciler};
use crate::run::triggers::{Change, Index};

/// A change an adapter saw, already applied to its snapshot.
#[derive(Clone, Debug)]
pub enum Update {
    /// Reconcile everything (start-up, a relist).
    Resync,
    /// A gateway was created, changed or deleted.
    Gateway { namespace: String, name: String },
    /// A gateway's Deployment changed (its readiness).
    Deployment { namespace: String, name: String },
    /// A Pod changed.
    Pod {
        /// Before.
        old: Option<Box<Pod>>,
        /// After.
        new: Option<Box<Pod>>,
    },
    /// A Namespace changed.
    Namespace {
        /// Before.
        old: Option<Box<Namespace>>,
        /// After.
        new: Option<Box<Namespace>>,
    },
    /// A Node changed.
    Node {
        /// Before.
        old: Option<Box<Node>>,
        /// After.
        new: Option<Box<Node>>,
    },
    /// A Subnet changed.
    Subnet(String),
    /// An IPPool changed.
    IPPool(String),
    /// A Vpc changed.
    Vpc(String),
    /// A NetworkAttachmentDefinition changed.
    Nad { namespace: String, name: String },
}

/// Whether a Node's update can change a plan: its labels (BFD port node selectors),
/// annotations (chassis, node port) or Ready status (the stale-BFD guard), not a heartbeat.
pub fn node_update_matters(
    old: &k8s_openapi::api::core::v1::Node,
    new: &k8s_openapi::api::core::v1::Node,
) -> bool {
    use crate::plan::stale::node_ready;
    old.metadata.labels != new.metadata.labels
        || old.metadata.annotations != new.metadata.annotations
        || node_ready(old) != node_ready(new)
}

/// Where the loop's inputs come from.
#[allow(async_fn_in_trait)]
pub trait Source {
    /// The snapshot as of the last update returned.
    fn snapshot(&self) -> &dyn Snapshot;
    /// The next change (applied to the snapshot first), or `None` when the source ends.
    async fn next(&mut self) -> Option<Update>;
}

/// The keys an update affects.
pub fn keys(index: &Index, snapshot: &dyn Snapshot, update: &Update) -> Vec<Key> {
    let gateways = |change: Change<'_>| -> Vec<Key> {
        index
            .affected(snapshot, &change)
            .iter()
            .filter_map(|key| Key::gateway(key))
            .collect()
    };
    match update {
        Update::Resync => snapshot
            .gateways()
            .into_iter()
            .map(Key::of)
            .chain(
                snapshot
                    .vpcs()
                    .iter()
                    .filter_map(|vpc| vpc.metadata.name.clone().map(Key::Vpc)),
            )
            .collect(),
        Update::Gateway { namespace, name } => vec![Key::Gateway(namespace.clone(), name.clone())],
        Update::Deployment { namespace, name } => snapshot
            .gateways()
            .iter()
            .filter(|g| {
                g.metadata.namespace.as_deref() == Some(namespace.as_str())
                    && names::deployment_name(
                        &g.spec.prefix,
                        g.metadata.name.as_deref().unwrap_or_default(),
                    ) == *name
            })
            .map(|g| {
                Key::Gateway(
                    namespace.clone(),
                    g.metadata.name.clone().unwrap_or_default(),
                )
            })
            .collect(),
        Update::Pod { old, new } => gateways(Change::Pod {
            old: old.as_deref(),
            new: new.as_deref(),
        }),
        Update::Namespace { old, new } => gateways(Change::Namespace {
            old: old.as_deref(),
            new: new.as_deref(),
        }),
        Update::Node { old, new } => {
            // Heartbeats (a Ready condition's times) change a Node every few seconds in a
            // cluster; only labels, annotations and the Ready status matter here.
            if let (Some(old), Some(new)) = (old.as_deref(), new.as_deref())
                && !node_update_matters(old, new)
            {
                return Vec::new();
            }
            let name = new
                .as_deref()
                .or(old.as_deref())
                .and_then(|node| node.metadata.name.clone())
                .unwrap_or_default();
            let mut keys = gateways(Change::Node(&name));
            let vpcs = snapshot.vpcs();
            for node in old.iter().chain(new.iter()) {
                keys.extend(
                    bfd_port::affected_by_node(&vpcs, node)
                        .into_iter()
                        .map(Key::Vpc),
                );
            }
            keys
        }
        Update::Subnet(name) => gateways(Change::Subnet(name)),
        Update::IPPool(name) => gateways(Change::IPPool(name)),
        Update::Vpc(name) => {
            let mut keys = gateways(Change::Vpc(name));
            keys.push(Key::Vpc(name.clone()));
            keys
        }
        Update::Nad { namespace, name } => gateways(Change::Nad { namespace, name }),
    }
}

/// How often an idle loop still turns (and calls `heartbeat`).
pub const IDLE_TURN: std::time::Duration = std::time::Duration::from_secs(1);

/// Runs until the source ends (then finishes the work due) or `shutdown` resolves. Every turn
/// of the loop — at least every [`IDLE_TURN`] when idle — calls `heartbeat`, so a pass that
/// never returns shows as a loop that stopped (`/livez`).
pub async fn run<S: Source, O: Outputs>(
    reconciler: &Reconciler<O>,
    source: &mut S,
    now: impl Fn() -> Time,
    heartbeat: impl Fn(),
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut queue = WorkQueue::default();
    let mut index = Index::build(source.snapshot());
    let mut known = gateway_keys(source.snapshot());
    for key in keys(&index, source.snapshot(), &Update::Resync) {
        queue.push(key, Instant::now());
    }
    let mut source_open = true;
    // BFD state changes in the NB (the monitor's writes, OVN's BFD status) make statuses stale.
    let mut nb_changes = reconciler.nb.subscribe();
    let mut bfd_seen: BTreeMap<Key, BTreeMap<std::net::IpAddr, veg_api::BfdState>> =
        BTreeMap::new();
    tokio::pin!(shutdown);
    loop {
        heartbeat();
        // Work that is due first: a burst of updates then costs one pass per key.
        if let Some(key) = queue.pop_due(Instant::now()) {
            pass(reconciler, source.snapshot(), &mut queue, key, &now).await;
            continue;
        }
        if !source_open && queue.next_due().is_none() {
            return;
        }
        let wakeup = queue.next_due();
        tokio::select! {
            () = &mut shutdown => return,
            update = source.next(), if source_open => match update {
                Some(update) => {
                    if matches!(update, Update::Gateway { .. } | Update::Subnet(_) | Update::Vpc(_) | Update::Resync) {
                        index = Index::build(source.snapshot());
                        // A gateway gone from the snapshot still needs its cleanup pass.
                        let current = gateway_keys(source.snapshot());
                        for gone in known.difference(&current) {
                            queue.push(gone.clone(), Instant::now());
                        }
                        known = current;
                    }
                    let found = keys(&index, source.snapshot(), &update);
                    debug!(?update, keys = ?found, "update");
                    for key in found {
                        queue.push(key, Instant::now());
                    }
                }
                None => source_open = false,
            },
            changed = nb_changes.changed() => {
                if changed.is_ok() {
                    // Only gateways with BFD have a BFD state to follow.
                    for gateway in source.snapshot().gateways().into_iter().filter(|g| g.spec.bfd.enabled) {
                        let key = Key::of(gateway);
                        let states = reconciler.bfd_states(&gateway.key());
                        // The first sight is a baseline, not a change (a gateway's own first
                        // pass writes the NB; that must not cut its backoff short).
                        match bfd_seen.insert(key.clone(), states.clone()) {
                            Some(before) if before != states => queue.push(key, Instant::now()),
                            _ => {}
                        }
                    }
                }
            }
            () = async {
                match wakeup {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending::<()>().await,
                }
            } => {}
            () = tokio::time::sleep(IDLE_TURN) => {}
        }
    }
}

fn gateway_keys(snapshot: &dyn Snapshot) -> std::collections::BTreeSet<Key> {
    snapshot.gateways().into_iter().map(Key::of).collect()
}

async fn pass<O: Outputs>(
    reconciler: &Reconciler<O>,
    snapshot: &dyn Snapshot,
    queue: &mut WorkQueue,
    key: Key,
    now: &impl Fn() -> Time,
) {
    let started = Instant::now();
    let outcome = match &key {
        Key::Gateway(namespace, name) => reconciler
            .reconcile(snapshot, namespace, name, &now())
            .await
            .map(|outcome| {
                for other in &outcome.recheck {
                    if let Some((namespace, name)) = other.split_once('/') {
                        queue.push(
                            Key::Gateway(namespace.to_owned(), name.to_owned()),
                            Instant::now(),
                        );
                    }
                }
                outcome.requeue_after
            }),
        Key::Vpc(name) => reconciler.reconcile_vpc(snapshot, name).await.map(|_| None),
    };
    reconciler.metrics.pass(
        started.elapsed().as_secs_f64(),
        outcome.as_ref().err().map(ReconcileError::metric_label),
    );
    match outcome {
        Ok(requeue_after) => {
            queue.succeeded(&key);
            if let Some(after) = requeue_after {
                queue.push_at(key, Instant::now() + after);
            }
        }
        Err(error) => {
            let delay = queue.failed(key.clone(), Instant::now());
            warn!(?key, %error, reason = error.metric_label(), class = error.class().label(),
                retry_in_ms = delay.as_millis() as u64, "reconcile failed");
        }
    }
}

#[cfg(test)]
mod tests;
