//! The controller's metrics (prometheus-client, no global registry): reconciles by outcome and
//! error reason, reconcile and NB transaction latency, gateways by phase, each instance's BFD
//! state, and whether this replica leads.

use std::collections::BTreeMap;
use std::sync::Mutex;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use veg_api::VpcEgressGatewayStatus;

/// `outcome` = ok | error, `reason` = the error's label (empty when ok).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReconcileLabels {
    /// ok or error.
    pub outcome: String,
    /// nb, deployment, status, finalizer, or empty.
    pub reason: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PhaseLabels {
    /// The gateway phase.
    pub phase: String,
}

/// One instance's BFD state (value 1 for the current state).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InstanceLabels {
    /// `<namespace>/<name>` of the gateway.
    pub gateway: String,
    /// The instance's Pod.
    pub pod: String,
    /// Up, Down, AdminDown, Init, Unknown, or none (BFD off).
    pub state: String,
}

/// Everything the controller counts.
#[derive(Debug)]
pub struct Metrics {
    /// Passes by outcome and reason.
    pub reconciles: Family<ReconcileLabels, Counter>,
    /// Pass latency, seconds.
    pub reconcile_seconds: Histogram,
    /// NB transaction latency, seconds (passes that wrote).
    pub nb_transaction_seconds: Histogram,
    /// Gateways by phase.
    pub gateways: Family<PhaseLabels, Gauge>,
    /// Instances by BFD state.
    pub instances: Family<InstanceLabels, Gauge>,
    /// 1 while this replica holds the lease (or runs alone).
    pub leader: Gauge,
    /// Instances withdrawn by veg because OVN's BFD status looked stale (native mode).
    pub stale_bfd_withdrawals: Counter,
    phases: Mutex<BTreeMap<String, String>>,
    states: Mutex<BTreeMap<String, Vec<InstanceLabels>>>,
}

impl Default for Metrics {
    fn default() -> Self {
        Self {
            reconciles: Family::default(),
            reconcile_seconds: Histogram::new(exponential_buckets(0.001, 2.0, 14)),
            nb_transaction_seconds: Histogram::new(exponential_buckets(0.0005, 2.0, 14)),
            gateways: Family::default(),
            instances: Family::default(),
            leader: Gauge::default(),
            stale_bfd_withdrawals: Counter::default(),
            phases: Mutex::default(),
            states: Mutex::default(),
        }
    }
}

impl Metrics {
    /// Registers every metric under `veg_controller_`.
    pub fn register(&self, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("veg_controller");
        registry.register(
            "reconciles",
            "Reconcile passes by outcome and error reason",
            self.reconciles.clone(),
        );
        registry.register(
            "reconcile_seconds",
            "Reconcile pass latency",
            self.reconcile_seconds.clone(),
        );
        registry.register(
            "nb_transaction_seconds",
            "OVN NB transaction latency",
            self.nb_transaction_seconds.clone(),
        );
        registry.register("gateways", "Gateways by phase", self.gateways.clone());
        registry.register(
            "instance_bfd",
            "Gateway instances by BFD state (1 = current)",
            self.instances.clone(),
        );
        registry.register(
            "stale_bfd_withdrawals",
            "Gateway instances withdrawn by veg because OVN's BFD row said alive while their node was not Ready",
            self.stale_bfd_withdrawals.clone(),
        );
        registry.register(
            "leader",
            "Whether this replica writes (holds the lease)",
            self.leader.clone(),
        );
    }

    /// Counts a pass.
    pub fn pass(&self, seconds: f64, error: Option<&str>) {
        self.reconcile_seconds.observe(seconds);
        self.reconciles
            .get_or_create(&ReconcileLabels {
                outcome: if error.is_some() { "error" } else { "ok" }.into(),
                reason: error.unwrap_or_default().into(),
            })
            .inc();
    }

    /// Records a gateway's status (its phase and instances); `None` when it is gone.
    pub fn gateway(&self, key: &str, status: Option<&VpcEgressGatewayStatus>) {
        if let Ok(mut phases) = self.phases.lock() {
            match status {
                Some(status) => {
                    phases.insert(key.to_owned(), format!("{:?}", status.phase));
                }
                None => {
                    phases.remove(key);
                }
            }
            let mut counts: BTreeMap<&str, i64> = BTreeMap::new();
            for phase in phases.values() {
                *counts.entry(phase).or_default() += 1;
            }
            self.gateways.clear();
            for (phase, count) in counts {
                self.gateways
                    .get_or_create(&PhaseLabels {
                        phase: phase.to_owned(),
                    })
                    .set(count);
            }
        }
        if let Ok(mut states) = self.states.lock() {
            for old in states.remove(key).unwrap_or_default() {
                self.instances.remove(&old);
            }
            let current: Vec<InstanceLabels> = status
                .into_iter()
                .flat_map(|s| s.gateways.iter())
                .map(|instance| InstanceLabels {
                    gateway: key.to_owned(),
                    pod: instance.pod.clone(),
                    state: instance
                        .bfd
                        .map_or_else(|| "none".to_owned(), |s| format!("{s:?}")),
                })
                .collect();
            for labels in &current {
                self.instances.get_or_create(labels).set(1);
            }
            if !current.is_empty() {
                states.insert(key.to_owned(), current);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::from;

    #[test]
    fn phases_and_instances_follow_the_statuses() {
        let metrics = Metrics::default();
        let mut registry = Registry::default();
        metrics.register(&mut registry);
        let status: VpcEgressGatewayStatus = from(serde_json::json!({"phase": "Completed",
            "gateways": [{"pod": "g-0", "bfd": "Up"}, {"pod": "g-1", "bfd": "Down"}]}));
        metrics.gateway("default/g", Some(&status));
        metrics.gateway("default/h", Some(&status));
        metrics.pass(0.004, None);
        metrics.pass(0.002, Some("nb"));
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        assert!(
            text.contains("veg_controller_gateways{phase=\"Completed\"} 2"),
            "{text}"
        );
        assert!(
            text.contains(
                "veg_controller_instance_bfd{gateway=\"default/g\",pod=\"g-1\",state=\"Down\"} 1"
            ),
            "{text}"
        );
        assert!(
            text.contains("veg_controller_reconciles_total{outcome=\"error\",reason=\"nb\"} 1"),
            "{text}"
        );
        metrics.gateway("default/g", None);
        let mut text = String::new();
        let _ = prometheus_client::encoding::text::encode(&mut text, &registry);
        assert!(
            text.contains("veg_controller_gateways{phase=\"Completed\"} 1"),
            "{text}"
        );
        assert!(
            !text.contains("gateway=\"default/g\""),
            "a deleted gateway's instances go: {text}"
        );
    }
}
