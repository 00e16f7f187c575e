//! The agent's Prometheus metrics.
//!
//! nft and interface counters are read from the kernel; they are exported as counters by
//! adding what grew since the last read (a recreated table restarts from zero).

use std::collections::BTreeMap;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// Label of per-family series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FamilyLabel {
    /// `ipv4` or `ipv6`.
    pub family: String,
}

/// Label of per-family, per-direction series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct FlowLabel {
    /// `ipv4` or `ipv6`.
    pub family: String,
    /// `egress` (masqueraded, leaving) or `ingress` (their replies).
    pub direction: String,
}

/// Label of per-interface series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct InterfaceLabel {
    /// Interface name.
    pub interface: String,
    /// `rx` or `tx`.
    pub direction: String,
}

/// Every metric of `veg gateway run`.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Checks of the kernel state.
    pub checks: Counter,
    /// Checks that found drift and repaired it.
    pub drift_repairs: Counter,
    /// Checks whose apply failed.
    pub apply_errors: Counter,
    /// 1 when the kernel holds the plan.
    pub in_sync: Gauge,
    /// Connections masqueraded.
    pub snat_connections: Family<FamilyLabel, Counter>,
    /// Packets of masqueraded connections.
    pub snat_packets: Family<FlowLabel, Counter>,
    /// Bytes of masqueraded connections.
    pub snat_bytes: Family<FlowLabel, Counter>,
    pub interface_packets: Family<InterfaceLabel, Counter>,
    pub interface_bytes: Family<InterfaceLabel, Counter>,
    /// 1 when the external gateway is reachable.
    pub uplink_up: Gauge,
    /// Uplink state changes.
    pub uplink_transitions: Counter,
    last: std::sync::Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    /// Registers everything under `veg_gateway_`.
    pub fn register(self: &std::sync::Arc<Self>, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("veg_gateway");
        registry.register("checks", "Checks of the kernel state", self.checks.clone());
        registry.register(
            "drift_repairs",
            "Checks that found the kernel different from the plan and repaired it",
            self.drift_repairs.clone(),
        );
        registry.register(
            "apply_errors",
            "Checks whose apply failed",
            self.apply_errors.clone(),
        );
        registry.register(
            "in_sync",
            "1 when the kernel holds the plan",
            self.in_sync.clone(),
        );
        registry.register(
            "snat_connections",
            "Connections masqueraded to the gateway's external address",
            self.snat_connections.clone(),
        );
        registry.register(
            "snat_packets",
            "Packets of masqueraded connections, by direction",
            self.snat_packets.clone(),
        );
        registry.register(
            "snat_bytes",
            "Bytes of masqueraded connections, by direction",
            self.snat_bytes.clone(),
        );
        registry.register(
            "interface_packets",
            "Packets through the gateway's interfaces",
            self.interface_packets.clone(),
        );
        registry.register(
            "interface_bytes",
            "Bytes through the gateway's interfaces",
            self.interface_bytes.clone(),
        );
        registry.register(
            "uplink_up",
            "1 when the external gateway answers ARP/NDP and the link has carrier",
            self.uplink_up.clone(),
        );
        registry.register(
            "uplink_transitions",
            "Uplink state changes",
            self.uplink_transitions.clone(),
        );
    }

    /// Adds to `counter` what the kernel's counter `key` grew since the last call.
    pub fn advance(&self, key: &str, counter: &Counter, value: u64) {
        let Ok(mut last) = self.last.lock() else {
            return;
        };
        let previous = last.insert(key.to_owned(), value).unwrap_or(0);
        counter.inc_by(if value >= previous {
            value - previous
        } else {
            value
        });
    }
}
