//! `veg monitor`: BFD-driven nexthops for stock OVN (monitor mode).
//!
//! The controller publishes, on each BFD-enabled reroute policy, the candidate nexthops
//! (`veg-candidates`) and the timers (`veg-bfd`). The monitor, with a leg in the VPC, runs an
//! active BFD session to every candidate and — in the same task that sees a session change —
//! writes each policy's `nexthops` = its candidates whose session is Up, in one transaction.
//! A new candidate joins only once Up; with none Up the reroutes are empty and the 29090 drop
//! applies.
//!
//! Two monitors may serve one VPC. Both run every session; only the holder of the writer
//! lease writes. The lease is a key of `NB_Global.external_ids`
//! (`veg-monitor:<router>` = `<holder>/<counter>`): the holder bumps the counter every
//! `renew`; a standby that sees no bump for `timeout` (by its own clock, so no clock sync is
//! needed) takes over with a write guarded by `wait` on the value it saw, so only one standby
//! wins. Every nexthop write carries the same guard, so a deposed writer's write fails
//! (fencing). The NB is used rather than a Kubernetes Lease because the monitor already holds
//! an NB connection, needs no API-server access (it runs the same in the lab), and the guard
//! makes the lease and the writes one atomic decision.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{info, warn};
use veg_bfd::control::{self, Request, Response, Timers};
use veg_bfd::{DaemonConfig, EventSink, Role, State};
use veg_ovsdb::nb::{Uuids, column};
use veg_ovsdb::{
    Atom, Client, ClientConfig, Condition, MonitorSpec, Operation, Replica, Row, Value,
};

use crate::ovn::{CANDIDATES, MONITOR_TIMERS, MonitorTimers};

// ===== the pure part =====

/// One policy the monitor keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    /// Candidates.
    pub candidates: BTreeSet<IpAddr>,
    /// BFD timers for them.
    pub timers: MonitorTimers,
    /// Its nexthops now.
    pub nexthops: BTreeSet<String>,
}

/// The policies of `router` that carry candidates, by UUID.
pub fn watched(replica: &Replica, router: &str) -> BTreeMap<String, Watched> {
    let Some((_, router_row)) = replica
        .table("Logical_Router")
        .find(|(_, row)| column::<String>(row, "name") == router)
    else {
        return BTreeMap::new();
    };
    let policies: Uuids = column(router_row, "policies");
    let mut out = BTreeMap::new();
    for uuid in &policies.0 {
        let Some(row) = replica.row("Logical_Router_Policy", uuid) else {
            continue;
        };
        let ids: BTreeMap<String, String> = column(row, "external_ids");
        let (Some(candidates), Some(timers)) = (ids.get(CANDIDATES), ids.get(MONITOR_TIMERS))
        else {
            continue;
        };
        let Some(timers) = MonitorTimers::decode(timers) else {
            continue;
        };
        let candidates = candidates
            .split(',')
            .filter_map(|ip| ip.trim().parse().ok())
            .collect();
        let nexthops = column(row, "nexthops");
        out.insert(
            uuid.to_owned(),
            Watched {
                candidates,
                timers,
                nexthops,
            },
        );
    }
    out
}

/// The sessions the policies need: every candidate, with the fastest timers asked for it.
pub fn wanted_sessions(watched: &BTreeMap<String, Watched>) -> BTreeMap<IpAddr, MonitorTimers> {
    let mut out: BTreeMap<IpAddr, MonitorTimers> = BTreeMap::new();
    for policy in watched.values() {
        for candidate in &policy.candidates {
            out.entry(*candidate)
                .and_modify(|timers| *timers = (*timers).min(policy.timers))
                .or_insert(policy.timers);
        }
    }
    out
}

/// The nexthop writes that make every policy point at its Up candidates.
pub fn nexthop_updates(
    watched: &BTreeMap<String, Watched>,
    up: &BTreeSet<IpAddr>,
) -> Vec<(String, BTreeSet<String>)> {
    watched
        .iter()
        .filter_map(|(uuid, policy)| {
            let want: BTreeSet<String> = policy
                .candidates
                .intersection(up)
                .map(ToString::to_string)
                .collect();
            (want != policy.nexthops).then(|| (uuid.clone(), want))
        })
        .collect()
}

/// The writer lease as this monitor sees it.
#[derive(Clone, Debug)]
pub struct Lease {
    me: String,
    value: Option<String>,
    changed: Instant,
}

impl Lease {
    /// A lease seen for the first time now.
    pub fn new(me: &str, now: Instant) -> Self {
        Self {
            me: me.to_owned(),
            value: None,
            changed: now,
        }
    }

    /// Records the value in the NB.
    pub fn observe(&mut self, value: Option<String>, now: Instant) {
        if value != self.value {
            self.value = value;
            self.changed = now;
        }
    }

    fn parts(&self) -> (Option<&str>, u64) {
        let Some(value) = &self.value else {
            return (None, 0);
        };
        let (holder, counter) = value.rsplit_once('/').unwrap_or((value.as_str(), "0"));
        (Some(holder), counter.parse().unwrap_or(0))
    }

    /// Whether this monitor holds the lease.
    pub fn held(&self) -> bool {
        self.parts().0 == Some(self.me.as_str())
    }

    /// The value to write now: a renewal when held, a takeover when the holder has been
    /// silent for `timeout` (or there is none), else nothing.
    pub fn next_value(&self, now: Instant, timeout: Duration) -> Option<String> {
        let (holder, counter) = self.parts();
        let stale = now.duration_since(self.changed) >= timeout;
        (holder.is_none() || self.held() || stale).then(|| format!("{}/{}", self.me, counter + 1))
    }

    /// The value seen (what a guarded write must still find).
    pub fn seen(&self) -> Option<&str> {
        self.value.as_deref()
    }
}

// ===== the process =====

/// How `veg monitor` runs.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// NB connection (its monitor spec is set here).
    pub nb: ClientConfig,
    /// The VPC's router.
    pub router: String,
    /// This monitor's addresses in the VPC, one per family.
    pub locals: Vec<IpAddr>,
    /// Identity for the lease.
    pub holder: String,
    /// The private control socket of the embedded BFD daemon.
    pub control_socket: PathBuf,
    /// Lease renewal period.
    pub renew: Duration,
    /// A lease not renewed for this long is taken over.
    pub timeout: Duration,
    /// `/metrics`, `/livez`, `/readyz` of the BFD daemon.
    pub http: Option<std::net::SocketAddr>,
}

/// Why the monitor stopped.
#[derive(Debug, thiserror::Error)]
pub enum MonitorError {
    /// The NB.
    #[error("OVN NB: {0}")]
    Nb(#[from] veg_ovsdb::Error),
    /// The BFD daemon.
    #[error("BFD daemon: {0}")]
    Bfd(String),
}

/// The lease key for a router.
pub fn lease_key(router: &str) -> String {
    format!("veg-monitor:{router}")
}

/// The tables the monitor reads.
pub fn monitor_spec() -> MonitorSpec {
    MonitorSpec::from([
        ("NB_Global".to_owned(), vec!["external_ids".to_owned()]),
        (
            "Logical_Router".to_owned(),
            vec!["name".to_owned(), "policies".to_owned()],
        ),
        (
            "Logical_Router_Policy".to_owned(),
            vec!["nexthops".to_owned(), "external_ids".to_owned()],
        ),
    ])
}

struct Monitor {
    config: MonitorConfig,
    nb: Client,
    sessions: BTreeMap<IpAddr, MonitorTimers>,
    up: BTreeSet<IpAddr>,
    lease: Lease,
    /// When the oldest change not yet written was seen (for the logged reaction time).
    pending_since: Option<Instant>,
}

/// Runs until `shutdown` resolves.
pub async fn run(
    mut config: MonitorConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), MonitorError> {
    config.nb.monitor = monitor_spec();
    let nb = Client::connect(config.nb.clone(), Duration::from_secs(10)).await?;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let daemon_config = DaemonConfig {
        sessions: Vec::new(),
        allowed: Vec::new(),
        default_timers: Timers {
            min_tx_ms: 1000,
            min_rx_ms: 1000,
            multiplier: 3,
        },
        control_socket: Some(config.control_socket.clone()),
        http: config.http,
        ipv4: true,
        ipv6: config.locals.iter().any(IpAddr::is_ipv6),
        events: EventSink(Some(events_tx)),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let metrics = Arc::new(veg_bfd::metrics::Metrics::default());
    let daemon = tokio::spawn(veg_bfd::run(daemon_config, metrics, async {
        let _ = stop_rx.await;
    }));
    // The control socket is bound at start-up; wait for it.
    for _ in 0..100 {
        if config.control_socket.exists() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let mut monitor = Monitor {
        lease: Lease::new(&config.holder, Instant::now()),
        config,
        nb,
        sessions: BTreeMap::new(),
        up: BTreeSet::new(),
        pending_since: None,
    };
    let mut changes = monitor.nb.subscribe();
    let mut renew = tokio::time::interval(monitor.config.renew);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    info!(router = %monitor.config.router, holder = %monitor.config.holder, "monitor started");
    let outcome = loop {
        tokio::select! {
            () = &mut shutdown => break Ok(()),
            changed = changes.changed() => {
                if changed.is_err() {
                    break Err(MonitorError::Bfd("NB client stopped".into()));
                }
                monitor.observe_lease();
                monitor.sync_sessions().await;
                monitor.pending_since.get_or_insert_with(Instant::now);
                monitor.write().await;
            }
            Some(event) = events.recv() => {
                let peer = event.peer;
                let now_up = event.transition.new == State::Up;
                let changed = if now_up { monitor.up.insert(peer) } else { monitor.up.remove(&peer) };
                if changed {
                    info!(%peer, old = event.transition.old.as_str(), new = event.transition.new.as_str(),
                        diag = event.transition.diag.as_str(), "gateway session changed");
                    monitor.pending_since.get_or_insert_with(Instant::now);
                    monitor.write().await;
                }
            }
            _ = renew.tick() => {
                monitor.observe_lease();
                monitor.renew_lease().await;
                monitor.write().await;
            }
        }
    };
    let _ = stop_tx.send(());
    let _ = daemon.await;
    outcome
}

impl Monitor {
    fn observe_lease(&mut self) {
        let key = lease_key(&self.config.router);
        let value = self
            .nb
            .replica()
            .table("NB_Global")
            .next()
            .and_then(|(_, row)| {
                column::<BTreeMap<String, String>>(row, "external_ids").remove(&key)
            });
        self.lease.observe(value, Instant::now());
    }

    /// The `wait` that proves the lease is still as seen, and the current NB_Global row.
    fn lease_guard(&self) -> Option<(Operation, String)> {
        let replica = self.nb.replica();
        let (uuid, row) = replica.table("NB_Global").next()?;
        let external_ids = row
            .get("external_ids")
            .cloned()
            .unwrap_or(Value::Map(BTreeMap::new()));
        Some((
            Operation::Wait {
                table: "NB_Global".into(),
                conditions: vec![Condition::uuid(uuid.as_str())],
                columns: vec!["external_ids".into()],
                until: "==",
                rows: vec![Row::from([("external_ids".to_owned(), external_ids)])],
            },
            uuid.clone(),
        ))
    }

    async fn renew_lease(&mut self) {
        let Some(value) = self.lease.next_value(Instant::now(), self.config.timeout) else {
            return;
        };
        let Some((guard, uuid)) = self.lease_guard() else {
            return;
        };
        let key = lease_key(&self.config.router);
        let was_held = self.lease.held();
        let operations = [
            guard,
            Operation::Mutate {
                table: "NB_Global".into(),
                conditions: vec![Condition::uuid(uuid.as_str())],
                mutations: vec![
                    veg_ovsdb::Mutation::delete(
                        "external_ids",
                        Value::Set([Atom::string(key.as_str())].into()),
                    ),
                    veg_ovsdb::Mutation::insert(
                        "external_ids",
                        Value::string_map([(key.as_str(), value.as_str())]),
                    ),
                ],
            },
        ];
        match self.nb.transact(&operations).await {
            Ok(_) => {
                self.lease.observe(Some(value), Instant::now());
                if !was_held {
                    info!(holder = %self.config.holder, "took the writer lease");
                    self.pending_since.get_or_insert_with(Instant::now);
                }
            }
            Err(error) => {
                if was_held {
                    warn!(%error, "lease renewal failed; another monitor may have taken over");
                }
            }
        }
    }

    async fn sync_sessions(&mut self) {
        let wanted = wanted_sessions(&watched(&self.nb.replica(), &self.config.router));
        let socket = self.config.control_socket.clone();
        for (peer, timers) in &wanted {
            if self.sessions.get(peer) == Some(timers) {
                continue;
            }
            let local = self
                .config
                .locals
                .iter()
                .copied()
                .find(|l| l.is_ipv4() == peer.is_ipv4());
            let bfd_timers = Timers {
                min_tx_ms: timers.min_tx_ms,
                min_rx_ms: timers.min_rx_ms,
                multiplier: timers.multiplier,
            };
            let request = if self.sessions.contains_key(peer) {
                Request::SetTimers {
                    peer: Some(*peer),
                    timers: bfd_timers,
                }
            } else {
                Request::Add {
                    peer: *peer,
                    local,
                    role: Some(Role::Active),
                    timers: Some(bfd_timers),
                    min_ttl: None,
                }
            };
            match control::request(&socket, &request).await {
                Ok(Response::Failed { error, .. }) => {
                    warn!(%peer, %error, "BFD session request refused")
                }
                Ok(_) => {
                    info!(%peer, timers = %timers.encode(), "BFD session to a candidate");
                    self.sessions.insert(*peer, *timers);
                }
                Err(error) => warn!(%peer, %error, "BFD daemon unreachable"),
            }
        }
        let gone: Vec<IpAddr> = self
            .sessions
            .keys()
            .filter(|p| !wanted.contains_key(p))
            .copied()
            .collect();
        for peer in gone {
            if control::request(&socket, &Request::Remove { peer })
                .await
                .is_ok()
            {
                self.sessions.remove(&peer);
                self.up.remove(&peer);
                info!(%peer, "no longer a candidate");
            }
        }
    }

    async fn write(&mut self) {
        if !self.lease.held() {
            return;
        }
        let updates = nexthop_updates(&watched(&self.nb.replica(), &self.config.router), &self.up);
        if updates.is_empty() {
            self.pending_since = None;
            return;
        }
        let Some((guard, _)) = self.lease_guard() else {
            return;
        };
        let mut operations = vec![guard];
        for (uuid, nexthops) in &updates {
            operations.push(Operation::Update {
                table: "Logical_Router_Policy".into(),
                conditions: vec![Condition::uuid(uuid.as_str())],
                row: Row::from([("nexthops".to_owned(), Value::string_set(nexthops))]),
            });
        }
        let since = self.pending_since.unwrap_or_else(Instant::now);
        match self.nb.transact(&operations).await {
            Ok(_) => {
                let written: Vec<String> = updates
                    .iter()
                    .map(|(uuid, hops)| {
                        format!(
                            "{}→[{}]",
                            &uuid[..8.min(uuid.len())],
                            hops.iter().cloned().collect::<Vec<_>>().join(",")
                        )
                    })
                    .collect();
                info!(policies = ?written, took_ms = since.elapsed().as_secs_f64() * 1e3, "nexthops written");
                self.pending_since = None;
            }
            Err(error) => {
                warn!(%error, "nexthop write failed (lease lost, or a concurrent change); will retry")
            }
        }
    }
}

#[cfg(test)]
mod tests;
