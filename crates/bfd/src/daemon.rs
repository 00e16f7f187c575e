//! The BFD daemon: one task owns every session and runs the loop below; the control socket
//! and the HTTP listener are tasks that talk to it through a channel or shared atomics.
//!
//! ```text
//!  control socket ──(Request, oneshot)──►┐
//!  UDP 3784 (v4, v6) ──── datagrams ────►│  loop: Sessions::receive / poll
//!  timer heap ─────────── next wakeup ──►│        → Network::send, logs, metrics
//!  shutdown ─────────────────────────────┘        → AdminDown to every peer on exit
//! ```

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::registry::Registry;
use rand::Rng;
use tokio::sync::mpsc;
use veg_daemon::Task;
use veg_daemon::http::{self, Endpoint, Health};

use crate::control::{self, AdminDiag, Command, Request, Response, Timers};
use crate::error::Error;
use crate::metrics::{Metrics, PeerLabels, ReasonLabels, TransitionLabels};
use crate::network::{Datagram, Network};
use crate::packet::Diag;
use crate::session::{Role, SessionConfig};
use crate::sessions::{Event, Outgoing, Sessions};

/// How the daemon starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DaemonConfig {
    /// Sessions to run from the start (active or passive).
    pub sessions: Vec<SessionConfig>,
    /// Peers that may open a passive session, with its settings.
    pub allowed: Vec<SessionConfig>,
    /// Timers for sessions added or allowed later without their own.
    pub default_timers: Timers,
    /// Control socket path.
    pub control_socket: Option<PathBuf>,
    /// Address of the `/metrics`, `/livez`, `/readyz` listener.
    pub http: Option<SocketAddr>,
    /// Open the IPv4 socket.
    pub ipv4: bool,
    /// Open the IPv6 socket.
    pub ipv6: bool,
    /// Where to send every session state change, for an in-process user (`veg monitor`).
    pub events: EventSink,
    /// Keyed SHA1 for sessions added or allowed later (the static ones carry their own).
    pub auth: Option<crate::session::AuthKey>,
}

/// An optional channel of session state changes (compared equal whatever it holds).
#[derive(Clone, Debug, Default)]
pub struct EventSink(pub Option<tokio::sync::mpsc::UnboundedSender<Event>>);

impl PartialEq for EventSink {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for EventSink {}

/// Largest datagram read; a BFD packet is at most 52 bytes.
const RECEIVE_BUFFER: usize = 1500;
/// The loop turns at least this often, to keep `/livez` fresh.
const IDLE_WAKEUP: Duration = Duration::from_secs(1);

/// Runs the daemon until `shutdown` completes; then every session goes AdminDown (diag 7)
/// once, so peers withdraw this system at once instead of timing out.
pub async fn run(
    config: DaemonConfig,
    metrics: Arc<Metrics>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), Error> {
    let started = Instant::now();
    let mut sessions = Sessions::new(|| rand::rng().random::<u32>());
    for session in &config.sessions {
        sessions
            .add(session.clone(), started)
            .map_err(|error| Error::Config {
                reason: error.to_string(),
            })?;
    }
    for template in &config.allowed {
        sessions.allow(template.clone());
    }
    let needs_v6 = config
        .sessions
        .iter()
        .chain(&config.allowed)
        .any(|session| session.peer.is_ipv6());
    let network = Network::bind(config.ipv4, config.ipv6, needs_v6)?;

    let health = Arc::new(Health::default());
    let mut registry = Registry::default();
    metrics.register(&mut registry);
    let (command_tx, mut command_rx) = mpsc::channel::<Command>(64);
    let mut tasks = Vec::new();
    if let Some(path) = &config.control_socket {
        // Bound here so a bad path fails start-up, not a task later.
        let listener = control::bind(path)?;
        let (path, commands) = (path.clone(), command_tx.clone());
        tasks.push(Task::spawn(async move {
            control::serve(listener, &path, commands).await;
        }));
    }
    if let Some(address) = config.http {
        let listener = http::bind(address).await?;
        let endpoint = Endpoint::new(registry, health.clone(), "not ready");
        tasks.push(Task::spawn(http::serve(listener, Arc::new(endpoint))));
    }
    drop(command_tx);

    let mut state = Loop {
        sessions,
        network,
        metrics,
        defaults: config.default_timers,
        auth: config.auth.clone(),
        last_send_warning: None,
        dropped: std::collections::BTreeMap::new(),
        peer_counters: HashMap::new(),
        events: config.events.0.clone(),
    };
    state.refresh_gauges();
    health.set_ready(true);
    tracing::info!(
        sessions = config.sessions.len(),
        allowed = config.allowed.len(),
        control_socket = ?config.control_socket,
        http = ?config.http,
        "bfd daemon started"
    );

    tokio::pin!(shutdown);
    let mut buffer = [0u8; RECEIVE_BUFFER];
    loop {
        health.beat();
        state.poll();
        if state.sessions.has_urgent() {
            continue;
        }
        let wakeup = state
            .sessions
            .next_wakeup()
            .unwrap_or_else(|| Instant::now() + IDLE_WAKEUP)
            .min(Instant::now() + IDLE_WAKEUP);
        tokio::select! {
            () = &mut shutdown => break,
            datagram = state.network.recv(&mut buffer) => match datagram {
                Ok(datagram) => state.on_datagram(&buffer[..datagram.len], &datagram),
                Err(error) => return Err(Error::Receive { error }),
            },
            Some((request, respond)) = command_rx.recv() => {
                let response = state.on_request(request);
                let _ = respond.send(response);
            }
            () = tokio::time::sleep_until(wakeup.into()) => {}
        }
    }

    health.set_ready(false);
    let events = state
        .sessions
        .set_admin_down_all(Some(Diag::AdministrativelyDown), Instant::now());
    state.on_events(&events);
    state.poll();
    drop(tasks);
    if let Some(path) = &config.control_socket {
        let _ = std::fs::remove_file(path);
    }
    tracing::info!("bfd daemon stopped");
    Ok(())
}

/// The state the loop owns.
struct Loop {
    sessions: Sessions,
    network: Network,
    metrics: Arc<Metrics>,
    defaults: Timers,
    /// Keyed SHA1 of sessions made by control requests.
    auth: Option<crate::session::AuthKey>,
    last_send_warning: Option<Instant>,
    /// Drops by reason, for the status response (the metrics keep the same counts).
    dropped: std::collections::BTreeMap<String, u64>,
    /// Per-peer counter handles, so a packet costs a lookup rather than a label allocation.
    peer_counters: HashMap<IpAddr, PeerCounters>,
    /// The in-process listener of state changes, if any.
    events: Option<tokio::sync::mpsc::UnboundedSender<Event>>,
}

/// The per-peer counters of one peer (clones share the registered counters).
struct PeerCounters {
    received: Counter,
    sent: Counter,
}

impl Loop {
    /// Runs due timers and sends what is due.
    fn poll(&mut self) {
        let mut outgoing = Vec::new();
        let mut rng = rand::rng();
        let mut jitter = || rng.random::<f64>();
        let events = self
            .sessions
            .poll(Instant::now(), &mut jitter, &mut outgoing);
        self.on_events(&events);
        for packet in &outgoing {
            self.send(packet);
        }
    }

    fn send(&mut self, packet: &Outgoing) {
        match self.network.send(packet) {
            Ok(()) => {
                self.metrics.packets_sent.inc();
                self.peer_counters(packet.peer).sent.inc();
            }
            Err(error) => {
                self.metrics.send_errors.inc();
                let now = Instant::now();
                if self
                    .last_send_warning
                    .is_none_or(|last| now.duration_since(last) > Duration::from_secs(5))
                {
                    self.last_send_warning = Some(now);
                    tracing::warn!(peer = %packet.peer, error = %error, "bfd packet not sent");
                }
            }
        }
    }

    fn on_datagram(&mut self, bytes: &[u8], datagram: &Datagram) {
        let (source, ttl) = (datagram.source, datagram.ttl);
        self.metrics.packets_received.inc();
        match self
            .sessions
            .receive(bytes, source, datagram.destination, ttl, Instant::now())
        {
            Ok(event) => {
                self.peer_counters(source).received.inc();
                if let Some(event) = event {
                    self.on_events(&[event]);
                }
            }
            Err(reason) => {
                tracing::trace!(peer = %source, ttl, reason = %reason, "bfd packet dropped");
                *self
                    .dropped
                    .entry(reason.metric_label().to_owned())
                    .or_default() += 1;
                self.metrics
                    .packets_dropped
                    .get_or_create(&ReasonLabels {
                        reason: reason.metric_label(),
                    })
                    .inc();
            }
        }
    }

    fn peer_counters(&mut self, peer: IpAddr) -> &PeerCounters {
        let metrics = &self.metrics;
        self.peer_counters.entry(peer).or_insert_with(|| {
            let labels = PeerLabels {
                peer: peer.to_string(),
            };
            PeerCounters {
                received: metrics.peer_packets_received.get_or_create(&labels).clone(),
                sent: metrics.peer_packets_sent.get_or_create(&labels).clone(),
            }
        })
    }

    fn on_events(&mut self, events: &[Event]) {
        if events.is_empty() {
            return;
        }
        for event in events {
            if let Some(sink) = &self.events {
                let _ = sink.send(*event);
            }
            let transition = event.transition;
            tracing::info!(
                peer = %event.peer,
                local_discr = event.local_discr,
                old_state = transition.old.as_str(),
                new_state = transition.new.as_str(),
                diag = transition.diag.as_str(),
                "bfd session state changed"
            );
            self.metrics
                .transitions
                .get_or_create(&TransitionLabels {
                    from: transition.old.as_str(),
                    to: transition.new.as_str(),
                    diag: transition.diag.as_str(),
                })
                .inc();
            if transition.diag == Diag::ControlDetectionTimeExpired {
                self.metrics.detections.inc();
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map(|elapsed| elapsed.as_secs_f64())
                    .unwrap_or(0.0);
                self.metrics.last_detection_seconds.set(now);
            }
        }
        self.refresh_gauges();
    }

    fn refresh_gauges(&self) {
        self.metrics
            .set_session_counts(self.sessions.state_counts());
    }

    fn on_request(&mut self, request: Request) -> Response {
        let now = Instant::now();
        let outcome = match request {
            Request::Status {} => {
                return Response::Status {
                    ok: true,
                    sessions: self.sessions.status(now),
                    allowed: self.sessions.allowed_peers(),
                    dropped: self.dropped.clone(),
                };
            }
            Request::Add {
                peer,
                local,
                role,
                timers,
                min_ttl,
            } => {
                let config =
                    self.session_config(peer, local, role.unwrap_or(Role::Active), timers, min_ttl);
                let added = self.sessions.add(config, now).map(|_| Vec::new());
                self.refresh_gauges();
                added
            }
            Request::Remove { peer } => {
                let removed = self.sessions.remove(peer).map(|()| Vec::new());
                self.refresh_gauges();
                removed
            }
            Request::Reset { peer } => self
                .sessions
                .update(Some(peer), |session| session.reset(now)),
            Request::Allow { peer, min_ttl } => {
                let template = self.session_config(peer, None, Role::Passive, None, min_ttl);
                self.sessions.allow(template);
                Ok(Vec::new())
            }
            Request::Block { peer } => {
                self.sessions.block(peer);
                self.refresh_gauges();
                Ok(Vec::new())
            }
            Request::AdminDown { peer, diag } => {
                let diag = match diag {
                    Some(AdminDiag::PathDown) => Diag::PathDown,
                    Some(AdminDiag::AdminDown) | None => Diag::AdministrativelyDown,
                };
                match peer {
                    None => Ok(self.sessions.set_admin_down_all(Some(diag), now)),
                    Some(_) => self
                        .sessions
                        .update(peer, |session| session.set_admin_down(diag, now)),
                }
            }
            Request::AdminUp { peer } => match peer {
                None => Ok(self.sessions.set_admin_down_all(None, now)),
                Some(_) => self
                    .sessions
                    .update(peer, |session| session.set_admin_up(now)),
            },
            Request::SetTimers { peer, timers } => {
                let (tx, rx) = (ms(timers.min_tx_ms), ms(timers.min_rx_ms));
                self.sessions.update_allowed(peer, |template| {
                    template.desired_min_tx = tx;
                    template.required_min_rx = rx;
                    template.detect_mult = timers.multiplier;
                });
                if peer.is_none() {
                    self.defaults = timers;
                }
                let updated = self.sessions.update(peer, |session| {
                    session.set_timers(tx, rx, timers.multiplier);
                    None
                });
                // With no session yet, updating the defaults is a success.
                if peer.is_none() {
                    Ok(Vec::new())
                } else {
                    updated
                }
            }
            Request::SetMinTtl { peer, min_ttl } => {
                self.sessions
                    .update_allowed(Some(peer), |template| template.min_ttl = min_ttl);
                self.sessions.update(Some(peer), |session| {
                    session.set_min_ttl(min_ttl);
                    None
                })
            }
        };
        match outcome {
            Ok(events) => {
                let changed = events.len();
                self.on_events(&events);
                Response::done(changed)
            }
            Err(error) => Response::failed(error),
        }
    }

    fn session_config(
        &self,
        peer: IpAddr,
        local: Option<IpAddr>,
        role: Role,
        timers: Option<Timers>,
        min_ttl: Option<u8>,
    ) -> SessionConfig {
        let timers = timers.unwrap_or(self.defaults);
        SessionConfig {
            peer,
            local,
            role,
            desired_min_tx: ms(timers.min_tx_ms),
            required_min_rx: ms(timers.min_rx_ms),
            detect_mult: timers.multiplier,
            min_ttl: min_ttl.unwrap_or(255),
            auth: self.auth.clone(),
            silent_path_down: false,
        }
    }
}

fn ms(value: u32) -> Duration {
    Duration::from_millis(u64::from(value))
}
