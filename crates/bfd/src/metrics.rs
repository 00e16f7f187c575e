//! Prometheus metrics of the BFD daemon. The registry is owned by the caller (no globals), so
//! tests read the values back.

use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::packet::State;

/// Label: a session state.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StateLabels {
    /// `AdminDown`, `Down`, `Init` or `Up`.
    pub state: &'static str,
}

/// Labels: a state change.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransitionLabels {
    /// State before.
    pub from: &'static str,
    /// State after.
    pub to: &'static str,
    /// Diagnostic after.
    pub diag: &'static str,
}

/// Label: why a packet was dropped (a bounded set, `DropReason::metric_label`).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    pub reason: &'static str,
}

/// Label: a configured or allowed peer (bounded by configuration).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PeerLabels {
    /// The peer's address.
    pub peer: String,
}

/// The daemon's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    /// Sessions by state.
    pub sessions: Family<StateLabels, Gauge>,
    /// State changes.
    pub transitions: Family<TransitionLabels, Counter>,
    /// Datagrams received (before any check).
    pub packets_received: Counter,
    pub packets_sent: Counter,
    /// Packets that could not be sent.
    pub send_errors: Counter,
    /// Packets dropped, by reason.
    pub packets_dropped: Family<ReasonLabels, Counter>,
    /// Packets accepted per peer.
    pub peer_packets_received: Family<PeerLabels, Counter>,
    /// Packets sent per peer.
    pub peer_packets_sent: Family<PeerLabels, Counter>,
    /// Sessions that went down because the detection time expired.
    pub detections: Counter,
    /// Unix time of the last detection, seconds.
    pub last_detection_seconds: Gauge<f64, AtomicU64>,
}

impl Metrics {
    /// Registers every metric under the `veg_bfd` prefix.
    pub fn register(self: &std::sync::Arc<Self>, registry: &mut Registry) {
        let registry = registry.sub_registry_with_prefix("veg_bfd");
        registry.register("sessions", "BFD sessions by state", self.sessions.clone());
        registry.register(
            "state_transitions",
            "BFD session state changes",
            self.transitions.clone(),
        );
        registry.register(
            "packets_received",
            "BFD datagrams received",
            self.packets_received.clone(),
        );
        registry.register(
            "packets_sent",
            "BFD packets sent",
            self.packets_sent.clone(),
        );
        registry.register(
            "send_errors",
            "BFD packets that could not be sent",
            self.send_errors.clone(),
        );
        registry.register(
            "packets_dropped",
            "BFD packets dropped, by reason",
            self.packets_dropped.clone(),
        );
        registry.register(
            "peer_packets_received",
            "BFD packets accepted, by peer",
            self.peer_packets_received.clone(),
        );
        registry.register(
            "peer_packets_sent",
            "BFD packets sent, by peer",
            self.peer_packets_sent.clone(),
        );
        registry.register(
            "detections",
            "BFD sessions timed out (detection time expired)",
            self.detections.clone(),
        );
        registry.register(
            "last_detection_timestamp_seconds",
            "Unix time of the last detection-time expiry",
            self.last_detection_seconds.clone(),
        );
    }

    /// Sets the per-state gauges from counts.
    pub fn set_session_counts(&self, counts: [(State, i64); 4]) {
        for (state, count) in counts {
            self.sessions
                .get_or_create(&StateLabels {
                    state: state.as_str(),
                })
                .set(count);
        }
    }
}
