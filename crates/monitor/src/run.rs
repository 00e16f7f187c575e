//! The `veg monitor` process: one NB client, an embedded BFD daemon with its sessions driven
//! over the control socket, and one loop that owns the Up set and the lease.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{info, warn};
use veg_api::names::MonitorTimers;
use veg_bfd::control::{self, Request, Response, Timers};
use veg_bfd::{DaemonConfig, EventSink, Role, State};
use veg_ovsdb::nb::{self, LogicalRouter, LogicalRouterPolicy, NbGlobal};
use veg_ovsdb::{
    Atom, Client, ClientConfig, Condition, MonitorSpec, Mutation, NbRow, Operation, Row, Value,
};

use crate::error::MonitorError;
use crate::lease::{Lease, lease_key};
use crate::policies::{nexthop_updates, wanted_sessions, watched};

/// How `veg monitor` runs.
#[derive(Clone, Debug)]
pub struct MonitorConfig {
    /// NB connection (its monitor spec is set by [`run`]).
    pub nb: ClientConfig,
    /// The VPC's router.
    pub router: String,
    /// This monitor's addresses in the VPC, one per family.
    pub locals: Vec<IpAddr>,
    /// Identity in the lease.
    pub holder: String,
    /// The private control socket of the embedded BFD daemon.
    pub control_socket: PathBuf,
    /// Lease renewal period.
    pub renew: Duration,
    /// A lease not renewed for this long is taken over.
    pub timeout: Duration,
    /// `/metrics`, `/livez`, `/readyz` of the BFD daemon.
    pub http: Option<std::net::SocketAddr>,
    /// When a flapping instance is held out of the nexthops.
    pub dampening: crate::dampening::DampeningConfig,
    /// Keyed SHA1 for every session (the gateways' bfdd must hold the same key).
    pub auth: Option<veg_bfd::AuthKey>,
}

/// The tables and columns the monitor reads.
pub fn monitor_spec() -> MonitorSpec {
    MonitorSpec::from([
        nb::watch::<NbGlobal>(&["external_ids"]),
        nb::watch::<LogicalRouter>(&["name", "policies"]),
        nb::watch::<LogicalRouterPolicy>(&["nexthops", "external_ids"]),
    ])
}

/// How long a new session gets to come Up before its peer counts as down: the detection time
/// at the slow rate a session starts with (1 s × 3), so a live peer is Up well within it.
const FIRST_VERDICT: Duration = Duration::from_secs(3);

struct Monitor {
    config: MonitorConfig,
    nb: Client,
    sessions: BTreeMap<IpAddr, MonitorTimers>,
    up: BTreeSet<IpAddr>,
    /// Sessions that have not been Up yet, with when they were added: until
    /// [`FIRST_VERDICT`] has passed, their peers' nexthops are left as they are.
    unjudged: BTreeMap<IpAddr, Instant>,
    lease: Lease,
    /// When the oldest change not yet written was seen (for the logged reaction time).
    pending_since: Option<Instant>,
    /// Flapping instances held out of the nexthops.
    dampening: crate::dampening::Dampening,
}

/// Runs until `shutdown` resolves.
pub async fn run(
    mut config: MonitorConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), MonitorError> {
    config.nb.monitor = monitor_spec();
    tokio::pin!(shutdown);
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
        auth: config.auth.clone(),
    };
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let metrics = Arc::new(veg_bfd::metrics::Metrics::default());
    let mut daemon = tokio::spawn(veg_bfd::run(daemon_config, metrics, async {
        let _ = stop_rx.await;
    }));
    // The control socket is bound at start-up; wait for it.
    for _ in 0..100 {
        if config.control_socket.exists() || daemon.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // The daemon serves /livez meanwhile: a monitor started before the NB, or during an
    // outage, waits and says why instead of exiting (and writes nothing until it can read).
    let connect = Client::connect_patiently(
        config.nb.clone(),
        Duration::from_secs(5),
        |waited, error| {
            warn!(
                waited_s = waited.as_secs(),
                error = error.as_deref().unwrap_or("no answer yet"),
                "the OVN Northbound database is not reachable; still trying"
            );
        },
    );
    let nb = tokio::select! {
        nb = connect => match nb {
            Ok(nb) => nb,
            Err(error) => {
                let _ = stop_tx.send(());
                let _ = daemon.await;
                return Err(error.into());
            }
        },
        () = &mut shutdown => {
            let _ = stop_tx.send(());
            let _ = daemon.await;
            return Ok(());
        }
    };
    let dampening = config.dampening;
    let mut monitor = Monitor {
        lease: Lease::new(&config.holder, Instant::now()),
        config,
        nb,
        sessions: BTreeMap::new(),
        up: BTreeSet::new(),
        unjudged: BTreeMap::new(),
        pending_since: None,
        dampening: crate::dampening::Dampening::new(dampening),
    };
    let mut changes = monitor.nb.subscribe();
    let mut renew = tokio::time::interval(monitor.config.renew);
    renew.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    info!(router = %monitor.config.router, holder = %monitor.config.holder, "monitor started");
    let outcome = loop {
        // A held-down instance joins the nexthops again when its hold ends.
        let release = monitor.dampening.next_release(Instant::now());
        tokio::select! {
            () = async {
                match release {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            } => {
                monitor.pending_since.get_or_insert_with(Instant::now);
                monitor.write().await;
            }
            () = &mut shutdown => {
                // The standby takes over at its next renewal, not after a lease timeout.
                monitor.release_lease().await;
                break Ok(());
            }
            ended = &mut daemon => {
                // The daemon stops only when told to; ending early is a failure to report.
                break Err(match ended {
                    Ok(Err(error)) => MonitorError::Bfd(error),
                    _ => MonitorError::BfdStopped,
                });
            }
            changed = changes.changed() => {
                if changed.is_err() {
                    break Err(MonitorError::NbClosed);
                }
                monitor.observe_lease();
                monitor.sync_sessions().await;
                monitor.pending_since.get_or_insert_with(Instant::now);
                monitor.write().await;
            }
            Some(event) = events.recv() => {
                let peer = event.peer;
                let now_up = event.transition.new == State::Up;
                if now_up {
                    monitor.unjudged.remove(&peer);
                }
                let changed = if now_up { monitor.up.insert(peer) } else { monitor.up.remove(&peer) };
                if event.transition.old == State::Up && !now_up
                    && let crate::dampening::Verdict::HeldDown { until, bursts } =
                        monitor.dampening.down(peer, Instant::now())
                {
                    warn!(%peer, bursts, held_s = until.saturating_duration_since(Instant::now()).as_secs_f64(),
                        "instance flapping: held out of the nexthops after it comes back Up");
                }
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
    if !daemon.is_finished() {
        let _ = daemon.await;
    }
    outcome
}

impl Monitor {
    fn observe_lease(&mut self) {
        let key = lease_key(&self.config.router);
        let value = self
            .nb
            .replica()
            .rows::<NbGlobal>()
            .next()
            .and_then(|mut global| global.external_ids.remove(&key));
        self.lease.observe(value, Instant::now());
    }

    /// The `wait` that the NB_Global row `uuid` carries `value` under this monitor's key (and
    /// nothing else of the row: other writers' keys may change freely).
    fn key_holds(&self, uuid: &str, value: &str) -> Operation {
        let key = lease_key(&self.config.router);
        Operation::Wait {
            table: NbGlobal::TABLE.into(),
            conditions: vec![
                Condition::uuid(uuid),
                Condition::includes("external_ids", Value::string_map([(key.as_str(), value)])),
            ],
            columns: vec!["_uuid".into()],
            until: "==",
            rows: vec![Row::from([("_uuid".to_owned(), Value::uuid(uuid))])],
        }
    }

    /// The `wait` that proves the lease is still what this monitor last saw (not what its
    /// replica holds now: a writer frozen while another took over wakes with a replica that
    /// already has the new lease but a lease view that says it still writes), and the UUID of
    /// the NB_Global row; `None` when no lease was seen (nothing to prove).
    fn lease_guard(&self) -> Option<(Operation, String)> {
        let global = self.nb.replica().rows::<NbGlobal>().next()?;
        let seen = self.lease.seen()?;
        Some((self.key_holds(&global.uuid, seen), global.uuid))
    }

    async fn renew_lease(&mut self) {
        let Some(value) = self.lease.next_value(Instant::now(), self.config.timeout) else {
            return;
        };
        let Some(global) = self.nb.replica().rows::<NbGlobal>().next() else {
            return;
        };
        let uuid = global.uuid;
        let key = lease_key(&self.config.router);
        let was_held = self.lease.held();
        let insert = Mutation::insert(
            "external_ids",
            Value::string_map([(key.as_str(), value.as_str())]),
        );
        let operations = match self.lease.seen() {
            // Renewal or takeover of a seen value: it must still be there, then it is replaced.
            Some(seen) => vec![
                self.key_holds(&uuid, seen),
                Operation::Mutate {
                    table: NbGlobal::TABLE.into(),
                    conditions: vec![Condition::uuid(uuid.as_str())],
                    mutations: vec![
                        Mutation::delete(
                            "external_ids",
                            Value::Set([Atom::string(key.as_str())].into()),
                        ),
                        insert,
                    ],
                },
            ],
            // No lease seen: a map insert adds the key only when it is absent, and the wait
            // after it fails the transaction when another monitor's value was there first.
            None => vec![
                Operation::Mutate {
                    table: NbGlobal::TABLE.into(),
                    conditions: vec![Condition::uuid(uuid.as_str())],
                    mutations: vec![insert],
                },
                self.key_holds(&uuid, &value),
            ],
        };
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

    /// Gives the lease up (SIGTERM): deletes the key if it still holds this monitor's value.
    async fn release_lease(&mut self) {
        if !self.lease.held() {
            return;
        }
        let Some((guard, uuid)) = self.lease_guard() else {
            return;
        };
        let key = lease_key(&self.config.router);
        let operations = [
            guard,
            Operation::Mutate {
                table: NbGlobal::TABLE.into(),
                conditions: vec![Condition::uuid(uuid.as_str())],
                mutations: vec![Mutation::delete(
                    "external_ids",
                    Value::Set([Atom::string(key.as_str())].into()),
                )],
            },
        ];
        match self.nb.transact(&operations).await {
            Ok(_) => info!(holder = %self.config.holder, "released the writer lease"),
            Err(error) => warn!(%error, "could not release the writer lease; it times out instead"),
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
                    if !self.sessions.contains_key(peer) {
                        self.unjudged.insert(*peer, Instant::now());
                    }
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
                self.unjudged.remove(&peer);
                self.dampening.forget(peer);
                info!(%peer, "no longer a candidate");
            }
        }
    }

    async fn write(&mut self) {
        if !self.lease.held() {
            return;
        }
        self.unjudged
            .retain(|_, added| added.elapsed() < FIRST_VERDICT);
        let watched = watched(&self.nb.replica(), &self.config.router);
        // Not judged yet: sessions younger than FIRST_VERDICT, and candidates with no session
        // yet at all (the first lease tick can come before the first NB update is read).
        let unjudged: BTreeSet<IpAddr> = self
            .unjudged
            .keys()
            .copied()
            .chain(
                watched
                    .values()
                    .flat_map(|policy| policy.candidates.iter().copied())
                    .filter(|candidate| !self.sessions.contains_key(candidate)),
            )
            .collect();
        let now = Instant::now();
        let usable: BTreeSet<IpAddr> = self
            .up
            .iter()
            .copied()
            .filter(|peer| self.dampening.usable(*peer, now))
            .collect();
        let updates = nexthop_updates(&watched, &usable, &unjudged);
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
                table: LogicalRouterPolicy::TABLE.into(),
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
