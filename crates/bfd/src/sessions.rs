//! All sessions of a daemon: demultiplexing received packets (RFC 5880 §6.8.6 discriminator
//! lookup, RFC 5881 GTSM), allowed and blocked peers, and one timer heap for every session.
//! Still sans-I/O: bytes, addresses and instants in; packets and transitions out.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet};
use std::net::IpAddr;
use std::time::Instant;

use crate::packet::{ControlPacket, DecodeError, Diag, State};
use crate::session::{Reject, Role, Session, SessionConfig, SessionStatus, Transition};

/// Why a received packet was dropped before or by its session.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum DropReason {
    /// From an address with no session and not allowed.
    #[error("packet from {peer}, which is neither configured nor allowed")]
    UnknownPeer {
        /// Source address.
        peer: IpAddr,
    },
    /// From a blocked address.
    #[error("packet from blocked peer {peer}")]
    Blocked {
        /// Source address.
        peer: IpAddr,
    },
    /// TTL or hop limit below the peer's minimum (RFC 5881 §5, GTSM).
    #[error("TTL {ttl} below the minimum {min_ttl}")]
    Ttl {
        /// Received TTL.
        ttl: u8,
        /// Minimum for the peer.
        min_ttl: u8,
    },
    /// Not a valid Control packet.
    #[error("malformed packet: {0}")]
    Decode(DecodeError),
    /// Your Discriminator names a session of another peer.
    #[error("your discriminator {your_discr} belongs to another peer")]
    PeerMismatch {
        /// Your Discriminator.
        your_discr: u32,
    },
    /// Your Discriminator names no session (the peer knows an older one); the peer's session
    /// learnt its discriminator to resync.
    #[error("your discriminator {your_discr} names no session")]
    StaleDiscr {
        /// Your Discriminator.
        your_discr: u32,
    },
    /// A Down or AdminDown for an Up (or Init) session that neither names it (Your
    /// Discriminator zero) nor comes from the peer's session (its My Discriminator is not the
    /// one learnt): what a blind spoofer sends. A peer that restarted sends it too; its session
    /// then goes Down at the detection time instead of at once.
    #[error("unverified {state:?} from {peer} for an Up session")]
    UnverifiedDown {
        /// Source address.
        peer: IpAddr,
        /// The state it claims.
        state: State,
    },
    /// The session discarded it.
    #[error("{0}")]
    Session(Reject),
}

/// A packet for the network.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Outgoing {
    /// Destination (port 3784).
    pub peer: IpAddr,
    /// Source address, when the session has one.
    pub local: Option<IpAddr>,
    /// The packet.
    pub bytes: Vec<u8>,
}

/// Something that happened to a session, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Event {
    /// bfd.LocalDiscr of the session.
    pub local_discr: u32,
    pub peer: IpAddr,
    /// The change.
    pub transition: Transition,
}

/// Errors of configuration commands.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum CommandError {
    /// A session for that peer exists already.
    #[error("a session with {peer} exists already")]
    Exists { peer: IpAddr },
    /// No session for that peer.
    #[error("no session with {peer}")]
    NoSession { peer: IpAddr },
}

/// The sessions and their timers.
pub struct Sessions {
    sessions: HashMap<u32, Session>,
    by_peer: HashMap<IpAddr, u32>,
    /// Peers that may open a passive session, with its settings.
    allowed: HashMap<IpAddr, SessionConfig>,
    blocked: HashSet<IpAddr>,
    /// Deadlines, lazily invalidated: an entry counts only if it equals `scheduled`.
    timers: BinaryHeap<Reverse<(Instant, u32)>>,
    scheduled: HashMap<u32, Instant>,
    /// Sessions with a packet to send at once.
    urgent: Vec<u32>,
    /// AdminDown for every session, including those opened later (uplink fate sharing must
    /// also cover a passive session that appears while the uplink is down).
    admin_down_all: Option<Diag>,
    /// Source of discriminators and authentication sequence seeds.
    next_random: Box<dyn FnMut() -> u32 + Send>,
}

// ===== impl Sessions =====

impl std::fmt::Debug for Sessions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sessions")
            .field("sessions", &self.sessions.len())
            .field("allowed", &self.allowed.len())
            .field("blocked", &self.blocked.len())
            .finish_non_exhaustive()
    }
}

impl Sessions {
    /// No sessions. `random` yields discriminators and sequence seeds.
    pub fn new(random: impl FnMut() -> u32 + Send + 'static) -> Self {
        Sessions {
            sessions: HashMap::new(),
            by_peer: HashMap::new(),
            allowed: HashMap::new(),
            blocked: HashSet::new(),
            timers: BinaryHeap::new(),
            scheduled: HashMap::new(),
            urgent: Vec::new(),
            admin_down_all: None,
            next_random: Box::new(random),
        }
    }

    /// Adds a session; returns its discriminator.
    pub fn add(&mut self, config: SessionConfig, now: Instant) -> Result<u32, CommandError> {
        if self.by_peer.contains_key(&config.peer) {
            return Err(CommandError::Exists { peer: config.peer });
        }
        self.blocked.remove(&config.peer);
        let local_discr = self.fresh_discr();
        let seed = (self.next_random)();
        let peer = config.peer;
        let mut session = Session::new(config, local_discr, seed, now);
        if let Some(diag) = self.admin_down_all {
            let _ = session.set_admin_down(diag, now);
        }
        self.sessions.insert(local_discr, session);
        self.by_peer.insert(peer, local_discr);
        self.touch(local_discr);
        Ok(local_discr)
    }

    /// Lets `template.peer` open a passive session with these settings when its first packet
    /// arrives.
    pub fn allow(&mut self, mut template: SessionConfig) {
        template.role = Role::Passive;
        self.blocked.remove(&template.peer);
        self.allowed.insert(template.peer, template);
    }

    /// Drops the peer's session and every later packet from it.
    pub fn block(&mut self, peer: IpAddr) {
        self.allowed.remove(&peer);
        let _ = self.remove(peer);
        self.blocked.insert(peer);
    }

    /// Removes the peer's session (an allowed peer may open a new one).
    pub fn remove(&mut self, peer: IpAddr) -> Result<(), CommandError> {
        let local_discr = self
            .by_peer
            .remove(&peer)
            .ok_or(CommandError::NoSession { peer })?;
        self.sessions.remove(&local_discr);
        self.scheduled.remove(&local_discr);
        Ok(())
    }

    /// Runs `change` on the peer's session, or on all sessions when `peer` is `None`.
    pub fn update(
        &mut self,
        peer: Option<IpAddr>,
        mut change: impl FnMut(&mut Session) -> Option<Transition>,
    ) -> Result<Vec<Event>, CommandError> {
        let targets: Vec<u32> = match peer {
            Some(peer) => vec![
                *self
                    .by_peer
                    .get(&peer)
                    .ok_or(CommandError::NoSession { peer })?,
            ],
            None => self.sessions.keys().copied().collect(),
        };
        let mut events = Vec::new();
        for local_discr in targets {
            if let Some(session) = self.sessions.get_mut(&local_discr) {
                if let Some(transition) = change(session) {
                    events.push(Event {
                        local_discr,
                        peer: session.config().peer,
                        transition,
                    });
                }
                self.touch(local_discr);
            }
        }
        Ok(events)
    }

    /// Puts every session, present and future, AdminDown with `diag`; `None` lifts it.
    pub fn set_admin_down_all(&mut self, diag: Option<Diag>, now: Instant) -> Vec<Event> {
        self.admin_down_all = diag;
        let result = match diag {
            Some(diag) => self.update(None, |session| session.set_admin_down(diag, now)),
            None => self.update(None, |session| session.set_admin_up(now)),
        };
        result.unwrap_or_default()
    }

    /// Sessions per state, for the gauge.
    pub fn state_counts(&self) -> [(State, i64); 4] {
        let mut counts = [
            (State::AdminDown, 0),
            (State::Down, 0),
            (State::Init, 0),
            (State::Up, 0),
        ];
        for session in self.sessions.values() {
            if let Some(entry) = counts
                .iter_mut()
                .find(|(state, _)| *state == session.state())
            {
                entry.1 += 1;
            }
        }
        counts
    }

    /// Changes the template of an allowed peer too, so a later session gets the same timers.
    pub fn update_allowed(
        &mut self,
        peer: Option<IpAddr>,
        mut change: impl FnMut(&mut SessionConfig),
    ) {
        for (address, template) in &mut self.allowed {
            if peer.is_none_or(|peer| peer == *address) {
                change(template);
            }
        }
    }

    /// Handles a received datagram from `source` to `destination` (when known) with
    /// TTL/hop limit `ttl`.
    pub fn receive(
        &mut self,
        bytes: &[u8],
        source: IpAddr,
        destination: Option<IpAddr>,
        ttl: u8,
        now: Instant,
    ) -> Result<Option<Event>, DropReason> {
        if self.blocked.contains(&source) {
            return Err(DropReason::Blocked { peer: source });
        }
        let min_ttl = match self.by_peer.get(&source) {
            Some(local_discr) => self.sessions[local_discr].config().min_ttl,
            None => match self.allowed.get(&source) {
                Some(template) => template.min_ttl,
                None => return Err(DropReason::UnknownPeer { peer: source }),
            },
        };
        // RFC 5881 §5: "received with a TTL or Hop Limit value of 255" (or the lower bound
        // configured for a peer behind a router).
        if ttl < min_ttl {
            return Err(DropReason::Ttl { ttl, min_ttl });
        }
        let packet = ControlPacket::decode(bytes).map_err(DropReason::Decode)?;
        let local_discr = self.demultiplex(&packet, source, destination, now)?;
        let Some(session) = self.sessions.get_mut(&local_discr) else {
            return Err(DropReason::UnknownPeer { peer: source });
        };
        // Also while coming up (Init, the peer's discriminator learnt): a spoofed Down would
        // replace it, and our answers, naming the spoofer's, would be dropped by the peer.
        if packet.your_discr == 0
            && matches!(packet.state, State::Down | State::AdminDown)
            && (session.state() == State::Up
                || (session.state() == State::Init && session.remote_discr() != 0))
            && packet.my_discr != session.remote_discr()
        {
            return Err(DropReason::UnverifiedDown {
                peer: source,
                state: packet.state,
            });
        }
        let outcome = session.receive(&packet, bytes, now);
        self.touch(local_discr);
        let transition = outcome.map_err(DropReason::Session)?;
        Ok(transition.map(|transition| Event {
            local_discr,
            peer: source,
            transition,
        }))
    }

    /// §6.8.6: "If the Your Discriminator field is nonzero, it MUST be used to select the
    /// session with which this BFD packet is associated. If no session is found, the packet
    /// MUST be discarded. If the Your Discriminator field is zero, the session MUST be selected
    /// based on some combination of other fields" — here the source address.
    fn demultiplex(
        &mut self,
        packet: &ControlPacket,
        source: IpAddr,
        destination: Option<IpAddr>,
        now: Instant,
    ) -> Result<u32, DropReason> {
        if packet.your_discr != 0 {
            if let Some(session) = self.sessions.get(&packet.your_discr) {
                return if session.config().peer == source {
                    Ok(packet.your_discr)
                } else {
                    Err(DropReason::PeerMismatch {
                        your_discr: packet.your_discr,
                    })
                };
            }
            let local_discr = match self.by_peer.get(&source) {
                Some(local_discr) => *local_discr,
                None => self.open_allowed(source, destination, now)?,
            };
            if let Some(session) = self.sessions.get_mut(&local_discr) {
                session.learn_stale_peer(packet, now);
            }
            self.touch(local_discr);
            return Err(DropReason::StaleDiscr {
                your_discr: packet.your_discr,
            });
        }
        match self.by_peer.get(&source) {
            Some(local_discr) => Ok(*local_discr),
            None => self.open_allowed(source, destination, now),
        }
    }

    /// Opens the passive session of an allowed peer; it answers from the address the peer
    /// sent to, which is the one the peer expects (FRR matches on it).
    fn open_allowed(
        &mut self,
        source: IpAddr,
        destination: Option<IpAddr>,
        now: Instant,
    ) -> Result<u32, DropReason> {
        let mut template = self
            .allowed
            .get(&source)
            .cloned()
            .ok_or(DropReason::UnknownPeer { peer: source })?;
        template.local = template.local.or(destination);
        self.add(template, now)
            .map_err(|_| DropReason::UnknownPeer { peer: source })
    }

    /// Runs every due timer and transmission: packets go to `out`, transitions are returned.
    pub fn poll(
        &mut self,
        now: Instant,
        jitter: &mut dyn FnMut() -> f64,
        out: &mut Vec<Outgoing>,
    ) -> Vec<Event> {
        let mut due: Vec<u32> = std::mem::take(&mut self.urgent);
        while let Some(Reverse((at, local_discr))) = self.timers.peek().copied() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.scheduled.get(&local_discr) == Some(&at) {
                self.scheduled.remove(&local_discr);
                due.push(local_discr);
            }
        }
        due.sort_unstable();
        due.dedup();
        let mut events = Vec::new();
        for local_discr in due {
            let Some(session) = self.sessions.get_mut(&local_discr) else {
                continue;
            };
            if let Some(transition) = session.on_timer(now) {
                events.push(Event {
                    local_discr,
                    peer: session.config().peer,
                    transition,
                });
            }
            if let Some(bytes) = session.poll_transmit(now, jitter()) {
                out.push(Outgoing {
                    peer: session.config().peer,
                    local: session.config().local,
                    bytes,
                });
            }
            self.schedule(local_discr);
        }
        events
    }

    /// The next instant [`Sessions::poll`] has timed work, if any; when
    /// [`Sessions::has_urgent`] is true, poll at once instead.
    pub fn next_wakeup(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, local_discr))) = self.timers.peek().copied() {
            if self.scheduled.get(&local_discr) == Some(&at) {
                return Some(at);
            }
            self.timers.pop();
        }
        None
    }

    /// Whether a packet is waiting to go out at once.
    pub fn has_urgent(&self) -> bool {
        !self.urgent.is_empty()
    }

    /// Status of every session, by discriminator.
    pub fn status(&self, now: Instant) -> Vec<SessionStatus> {
        let mut all: Vec<SessionStatus> = self.sessions.values().map(|s| s.status(now)).collect();
        all.sort_by_key(|status| status.local_discr);
        all
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.sessions.len()
    }

    /// Whether there are no sessions.
    pub fn is_empty(&self) -> bool {
        self.sessions.is_empty()
    }

    pub fn allowed_peers(&self) -> Vec<IpAddr> {
        let mut peers: Vec<IpAddr> = self.allowed.keys().copied().collect();
        peers.sort();
        peers
    }

    // ===== internals =====

    /// Re-arms a session's timer after anything touched it.
    fn touch(&mut self, local_discr: u32) {
        let urgent = self
            .sessions
            .get(&local_discr)
            .is_some_and(Session::wants_to_send_now);
        if urgent {
            self.urgent.push(local_discr);
        } else {
            self.schedule(local_discr);
        }
    }

    fn schedule(&mut self, local_discr: u32) {
        let Some(deadline) = self
            .sessions
            .get(&local_discr)
            .and_then(Session::next_deadline)
        else {
            self.scheduled.remove(&local_discr);
            return;
        };
        if self.scheduled.get(&local_discr) != Some(&deadline) {
            self.scheduled.insert(local_discr, deadline);
            self.timers.push(Reverse((deadline, local_discr)));
        }
    }

    fn fresh_discr(&mut self) -> u32 {
        loop {
            let candidate = (self.next_random)();
            if candidate != 0 && !self.sessions.contains_key(&candidate) {
                return candidate;
            }
        }
    }
}

impl DropReason {
    /// A bounded label for the drop counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            DropReason::UnknownPeer { .. } => "unknown_peer",
            DropReason::Blocked { .. } => "blocked",
            DropReason::Ttl { .. } => "ttl",
            DropReason::Decode(error) => error.metric_label(),
            DropReason::PeerMismatch { .. } => "peer_mismatch",
            DropReason::StaleDiscr { .. } => "stale_discr",
            DropReason::UnverifiedDown { .. } => "unverified_down",
            DropReason::Session(reject) => reject.metric_label(),
        }
    }
}

#[cfg(test)]
mod tests;
