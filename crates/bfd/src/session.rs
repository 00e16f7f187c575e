//! One BFD session as a sans-I/O object (RFC 5880 §6.8): received packets and the clock go in;
//! packets to send, state transitions and the next deadline come out. Nothing here touches a
//! socket or reads the clock, so every behaviour is testable with a fake clock.
//!
//! Peer quirks handled here (see the BFD lab notes):
//! - after a timeout the remote discriminator is kept for one more detection time, so a peer
//!   that ignores `Your Discriminator = 0` while Up (FRR) still accepts our Down at once;
//! - a peer that lowers its RequiredMinRx pulls our next transmission forward, or a peer that
//!   polls from 1 s to 100 ms times out before our old 1 s slot comes (a flap seen in the lab);
//! - AdminDown is honoured whatever its diag; identical discriminators on both sides are fine,
//!   since nothing compares the local and remote values;
//! - a packet carrying a discriminator we no longer have (we restarted, the peer did not —
//!   Kube-OVN #6787) teaches us the peer's discriminator, so we answer and the peer resyncs.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::fsm;
use crate::packet::{Auth, ControlPacket, Diag, State, verify_sha1};

/// Which side starts (RFC 5880 §6.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum Role {
    /// Sends from the start.
    Active,
    /// "MUST NOT begin sending BFD packets for a particular session until it has received a
    /// BFD packet for that session."
    Passive,
}

/// A keyed SHA1 key (RFC 5880 §6.7.4).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuthKey {
    /// Key ID sent and expected.
    pub key_id: u8,
    /// The secret, up to 20 bytes.
    pub key: Vec<u8>,
    /// Meticulous: the sequence number grows with every packet.
    pub meticulous: bool,
}

/// What a session is asked to do.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionConfig {
    /// The remote system.
    pub peer: IpAddr,
    /// Our address towards it (sent from; `None` lets routing pick).
    pub local: Option<IpAddr>,
    /// Active or passive.
    pub role: Role,
    /// bfd.DesiredMinTxInterval while Up.
    pub desired_min_tx: Duration,
    /// bfd.RequiredMinRxInterval.
    pub required_min_rx: Duration,
    /// bfd.DetectMult.
    pub detect_mult: u8,
    /// Lowest TTL/hop limit accepted (GTSM, RFC 5881 §5): 255, or 254 for a peer one routed
    /// hop away (OVN routes its BFD packets).
    pub min_ttl: u8,
    /// Keyed SHA1 authentication, when configured.
    pub auth: Option<AuthKey>,
    /// Signal a Path Down (diag 5: the gateway lost its uplink) by silence rather than by
    /// AdminDown packets. OVN's ovn-controller reports a peer's AdminDown only in its next 5 s
    /// batch when another status change came before, but a detection timeout at once; the
    /// peer then withdraws this system within its detection time, always.
    pub silent_path_down: bool,
}

/// Why a session discarded a packet that decoded fine (RFC 5880 §6.8.6, session checks).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Reject {
    /// "If bfd.SessionState is AdminDown: Discard the packet."
    #[error("session is administratively down")]
    LocalAdminDown,
    /// The A bit is clear but authentication is configured.
    #[error("authentication expected but absent")]
    AuthMissing,
    /// The A bit is set but no authentication is configured.
    #[error("authentication present but not configured")]
    AuthUnexpected,
    /// Another auth type, or another key ID, than configured.
    #[error("authentication type or key id differs from the configuration")]
    AuthMismatch,
    /// The hash does not verify.
    #[error("authentication hash does not verify")]
    AuthFailed,
    /// The sequence number is outside the accepted window.
    #[error("authentication sequence number out of window")]
    AuthSequence,
    /// Demand mode is not supported; the peer asked for it.
    #[error("demand mode requested; not supported")]
    DemandMode,
}

/// A change of session state, for logs, metrics and status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Transition {
    /// State before.
    pub old: State,
    /// State after.
    pub new: State,
    /// bfd.LocalDiag after the change.
    pub diag: Diag,
}

/// Per-session counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Counters {
    /// Packets accepted.
    pub rx: u64,
    /// Packets sent.
    pub tx: u64,
    /// Packets this session discarded.
    pub rx_rejected: u64,
    /// Times the session came Up.
    pub up: u64,
    /// Times it left Up.
    pub down: u64,
}

/// A session's state as the control socket reports it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SessionStatus {
    /// bfd.LocalDiscr, also the session id.
    pub local_discr: u32,
    /// bfd.RemoteDiscr.
    pub remote_discr: u32,
    pub peer: IpAddr,
    /// Our address, when set.
    pub local: Option<IpAddr>,
    /// Active or passive.
    pub role: Role,
    /// bfd.SessionState.
    pub state: State,
    /// bfd.RemoteSessionState.
    pub remote_state: State,
    /// bfd.LocalDiag.
    pub diag: Diag,
    /// Diag in the peer's last packet.
    pub remote_diag: Diag,
    /// Desired Min TX we advertise, µs.
    pub desired_min_tx_us: u32,
    /// Required Min RX we advertise, µs.
    pub required_min_rx_us: u32,
    /// bfd.DetectMult.
    pub detect_mult: u8,
    /// The peer's Desired Min TX, µs.
    pub remote_desired_min_tx_us: u32,
    /// bfd.RemoteMinRxInterval, µs.
    pub remote_min_rx_us: u32,
    /// The peer's Detect Mult.
    pub remote_detect_mult: u8,
    /// Our detection time, µs.
    pub detection_time_us: u64,
    /// Whether a Poll Sequence of ours is in progress.
    pub polling: bool,
    /// Lowest TTL accepted.
    pub min_ttl: u8,
    /// Milliseconds since the last state change.
    pub since_ms: u64,
    pub counters: Counters,
}

/// One session.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    local_discr: u32,
    state: State,
    remote_state: State,
    remote_discr: u32,
    local_diag: Diag,
    remote_diag: Diag,
    remote_min_rx_us: u32,
    remote_desired_min_tx_us: u32,
    remote_detect_mult: u8,
    /// A packet from the peer has been seen (a passive session may then send).
    heard: bool,
    /// The values in our packets.
    advertised_tx_us: u32,
    advertised_rx_us: u32,
    /// The values in force: they follow the advertised ones at once when that is safe, and
    /// after the Poll Sequence otherwise (§6.8.3).
    active_tx_us: u32,
    active_rx_us: u32,
    polling: bool,
    send_final: bool,
    send_now: bool,
    next_tx: Option<Instant>,
    detect_deadline: Option<Instant>,
    xmit_auth_seq: u32,
    rcv_auth_seq: Option<u32>,
    last_change: Instant,
    counters: Counters,
}

// ===== impl Session =====

impl Session {
    /// A new session in Down. `xmit_auth_seq` seeds the authentication sequence (random in
    /// production, RFC 5880 §6.8.1).
    pub fn new(config: SessionConfig, local_discr: u32, xmit_auth_seq: u32, now: Instant) -> Self {
        let advertised_tx_us = slow(micros(config.desired_min_tx));
        let advertised_rx_us = micros(config.required_min_rx);
        let active = config.role == Role::Active;
        Session {
            local_discr,
            state: State::Down,
            remote_state: State::Down,
            remote_discr: 0,
            local_diag: Diag::None,
            remote_diag: Diag::None,
            // §6.8.1: "This variable MUST be initialized to 1."
            remote_min_rx_us: 1,
            remote_desired_min_tx_us: 0,
            remote_detect_mult: 0,
            heard: false,
            advertised_tx_us,
            advertised_rx_us,
            active_tx_us: advertised_tx_us,
            active_rx_us: advertised_rx_us,
            polling: false,
            send_final: false,
            send_now: active,
            next_tx: None,
            detect_deadline: None,
            xmit_auth_seq,
            rcv_auth_seq: None,
            last_change: now,
            counters: Counters::default(),
            config,
        }
    }

    /// bfd.LocalDiscr.
    pub fn local_discr(&self) -> u32 {
        self.local_discr
    }

    /// bfd.SessionState.
    pub fn remote_discr(&self) -> u32 {
        self.remote_discr
    }

    /// bfd.SessionState.
    pub fn state(&self) -> State {
        self.state
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Handles a packet addressed to this session (found by Your Discriminator, or by peer
    /// address when that is zero). `raw` is the packet's bytes, for authentication.
    pub fn receive(
        &mut self,
        packet: &ControlPacket,
        raw: &[u8],
        now: Instant,
    ) -> Result<Option<Transition>, Reject> {
        let outcome = self.accept(packet, raw, now);
        match outcome {
            Ok(_) => self.counters.rx += 1,
            Err(_) => self.counters.rx_rejected += 1,
        }
        outcome
    }

    fn accept(
        &mut self,
        packet: &ControlPacket,
        raw: &[u8],
        now: Instant,
    ) -> Result<Option<Transition>, Reject> {
        self.check_auth(packet, raw)?;
        if packet.demand {
            return Err(Reject::DemandMode);
        }
        if self.state == State::AdminDown {
            return Err(Reject::LocalAdminDown);
        }
        let was_silent = !self.heard;
        self.heard = true;
        // "Set bfd.RemoteDiscr to the value of My Discriminator. Set bfd.RemoteState to the
        // value of the State (Sta) field. ... Set bfd.RemoteMinRxInterval to the value of
        // Required Min RX Interval."
        self.remote_discr = packet.my_discr;
        self.remote_state = packet.state;
        self.remote_diag = packet.diag;
        self.remote_desired_min_tx_us = packet.desired_min_tx_us;
        self.remote_detect_mult = packet.detect_mult;
        let old_interval = self.tx_interval();
        self.remote_min_rx_us = packet.required_min_rx_us;

        // "If the Final (F) bit is set and the local system is sending Poll packets, the Poll
        // Sequence MUST be terminated."
        if packet.final_ && self.polling {
            self.polling = false;
            self.active_tx_us = self.advertised_tx_us;
            self.active_rx_us = self.advertised_rx_us;
        }
        self.pull_in_next_tx(old_interval, was_silent, now);
        self.detect_deadline = Some(now + self.detection_time());

        let transition = fsm::on_receive(self.state, packet.state)
            .map(|(new, diag)| self.set_state(new, diag, now));
        // "If the Poll (P) bit is set, send a BFD Control packet to the remote system with the
        // Poll (P) bit clear, and the Final (F) bit set."
        if packet.poll {
            self.send_final = true;
            self.send_now = true;
        }
        Ok(transition)
    }

    /// A packet from this session's peer carried a Your Discriminator we do not have: the
    /// peer still knows an old session of ours (Kube-OVN #6787). Learn its discriminator and
    /// answer, so it accepts our packets, drops to Down and resyncs. The packet itself is not
    /// accepted (RFC 5880 §6.8.6) and refreshes no timer.
    pub fn learn_stale_peer(&mut self, packet: &ControlPacket, now: Instant) {
        self.counters.rx_rejected += 1;
        if self.state == State::AdminDown || self.remote_discr == packet.my_discr {
            return;
        }
        self.remote_discr = packet.my_discr;
        self.heard = true;
        if self.next_tx.is_none() {
            self.next_tx = Some(now);
        }
    }

    /// Runs the detection timer; a transition when the session timed out.
    pub fn on_timer(&mut self, now: Instant) -> Option<Transition> {
        let deadline = self.detect_deadline?;
        if now < deadline {
            return None;
        }
        match self.state {
            // "If a period of a Detection Time passes without the receipt of a valid,
            // authenticated BFD packet from the remote system ... the session has gone down"
            State::Init | State::Up => {
                // The remote discriminator outlives the timeout by one detection time: a peer
                // that drops `Your Discriminator = 0` while Up would ignore our Down otherwise.
                self.detect_deadline = Some(now + self.detection_time());
                Some(self.set_state(State::Down, Diag::ControlDetectionTimeExpired, now))
            }
            // §6.8.1: bfd.RemoteDiscr "MUST be reset to zero if a period of a Detection Time
            // passes without the receipt of a valid, authenticated BFD packet".
            State::Down | State::AdminDown => {
                self.detect_deadline = None;
                self.remote_discr = 0;
                self.remote_state = State::Down;
                self.rcv_auth_seq = None;
                None
            }
        }
    }

    /// The packet to send now, if one is due; schedules the next. `unit` is a uniform sample
    /// in [0, 1) for the jitter.
    pub fn poll_transmit(&mut self, now: Instant, unit: f64) -> Option<Vec<u8>> {
        if !self.may_transmit() {
            self.send_now = false;
            self.send_final = false;
            return None;
        }
        let due = self.send_now || self.next_tx.is_some_and(|at| at <= now);
        if !due {
            return None;
        }
        let packet = self.build_packet();
        self.send_now = false;
        self.send_final = false;
        self.next_tx = self
            .tx_interval()
            .map(|interval| now + fsm::jittered(interval, self.config.detect_mult, unit));
        self.counters.tx += 1;
        Some(self.encode(&packet))
    }

    /// The next instant `on_timer` or `poll_transmit` has work. A packet that must go out at
    /// once is signalled by [`Session::wants_to_send_now`] instead.
    pub fn next_deadline(&self) -> Option<Instant> {
        let tx = self.next_tx.filter(|_| self.may_transmit());
        match (tx, self.detect_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether a packet should go out immediately (a state change, a Final to send).
    pub fn wants_to_send_now(&self) -> bool {
        self.send_now && self.may_transmit()
    }

    /// Administratively disables the session (RFC 5880 §6.8.16), e.g. diag 5 Path Down when
    /// the gateway lost its uplink.
    pub fn set_admin_down(&mut self, diag: Diag, now: Instant) -> Option<Transition> {
        if self.state == State::AdminDown {
            return None;
        }
        self.detect_deadline = None;
        Some(self.set_state(State::AdminDown, diag, now))
    }

    /// Re-enables an administratively down session: it starts again from Down.
    pub fn set_admin_up(&mut self, now: Instant) -> Option<Transition> {
        if self.state != State::AdminDown {
            return None;
        }
        Some(self.set_state(State::Down, Diag::None, now))
    }

    /// Changes the timers live; a Poll Sequence announces them when Up (§6.8.3).
    pub fn set_timers(
        &mut self,
        desired_min_tx: Duration,
        required_min_rx: Duration,
        detect_mult: u8,
    ) {
        self.config.desired_min_tx = desired_min_tx;
        self.config.required_min_rx = required_min_rx;
        self.config.detect_mult = detect_mult.max(1);
        self.update_advertised();
    }

    /// Sets the lowest TTL accepted from the peer.
    pub fn set_min_ttl(&mut self, min_ttl: u8) {
        self.config.min_ttl = min_ttl;
    }

    /// Starts over from Down, forgetting the peer.
    pub fn reset(&mut self, now: Instant) -> Option<Transition> {
        self.remote_discr = 0;
        self.remote_state = State::Down;
        self.rcv_auth_seq = None;
        self.detect_deadline = None;
        self.heard = false;
        self.remote_min_rx_us = 1;
        self.send_now = self.config.role == Role::Active;
        (self.state != State::Down).then(|| self.set_state(State::Down, Diag::None, now))
    }

    /// The status as reported on the control socket.
    pub fn status(&self, now: Instant) -> SessionStatus {
        SessionStatus {
            local_discr: self.local_discr,
            remote_discr: self.remote_discr,
            peer: self.config.peer,
            local: self.config.local,
            role: self.config.role,
            state: self.state,
            remote_state: self.remote_state,
            diag: self.local_diag,
            remote_diag: self.remote_diag,
            desired_min_tx_us: self.advertised_tx_us,
            required_min_rx_us: self.advertised_rx_us,
            detect_mult: self.config.detect_mult,
            remote_desired_min_tx_us: self.remote_desired_min_tx_us,
            remote_min_rx_us: self.remote_min_rx_us,
            remote_detect_mult: self.remote_detect_mult,
            detection_time_us: u64::try_from(self.detection_time().as_micros()).unwrap_or(u64::MAX),
            polling: self.polling,
            min_ttl: self.config.min_ttl,
            since_ms: u64::try_from(now.saturating_duration_since(self.last_change).as_millis())
                .unwrap_or(u64::MAX),
            counters: self.counters,
        }
    }

    // ===== internals =====

    fn set_state(&mut self, new: State, diag: Diag, now: Instant) -> Transition {
        let old = self.state;
        self.state = new;
        self.local_diag = diag;
        self.last_change = now;
        if new == State::Up {
            self.counters.up += 1;
        } else if old == State::Up {
            self.counters.down += 1;
            self.polling = false;
        }
        self.update_advertised();
        // Tell the peer at once; waiting for the next slot only slows convergence.
        self.send_now = true;
        Transition { old, new, diag }
    }

    /// Recomputes the advertised intervals: at least 1 s while not Up (§6.8.3), the
    /// configured ones when Up, announced with a Poll Sequence.
    fn update_advertised(&mut self) {
        let configured_tx = micros(self.config.desired_min_tx);
        let tx = if self.state == State::Up {
            configured_tx
        } else {
            slow(configured_tx)
        };
        let rx = micros(self.config.required_min_rx);
        if tx == self.advertised_tx_us && rx == self.advertised_rx_us {
            return;
        }
        self.advertised_tx_us = tx;
        self.advertised_rx_us = rx;
        if self.state == State::Up {
            // "If bfd.DesiredMinTxInterval is increased and bfd.SessionState is Up, the
            // actual transmission interval used MUST NOT change until the Poll Sequence
            // described above has terminated." Likewise a lower RequiredMinRx keeps the old
            // detection time until then. The safe directions apply at once.
            self.active_tx_us = self.active_tx_us.min(tx);
            self.active_rx_us = self.active_rx_us.max(rx);
            self.polling = true;
            self.send_now = true;
        } else {
            self.active_tx_us = tx;
            self.active_rx_us = rx;
        }
    }

    /// When the peer now wants packets sooner than our next slot, move the slot forward; a
    /// passive session that just heard its peer answers at once.
    fn pull_in_next_tx(&mut self, old_interval: Option<Duration>, was_silent: bool, now: Instant) {
        if was_silent || self.next_tx.is_none() {
            self.next_tx = Some(now);
            return;
        }
        if let (Some(old), Some(new)) = (old_interval, self.tx_interval())
            && new < old
            && let Some(next) = self.next_tx
            && next > now + new
        {
            self.next_tx = Some(now + fsm::jittered(new, self.config.detect_mult, 0.0));
        }
    }

    fn may_transmit(&self) -> bool {
        let silenced = self.config.silent_path_down
            && self.state == State::AdminDown
            && self.local_diag == Diag::PathDown;
        !silenced && (self.config.role == Role::Active || self.heard)
    }

    fn tx_interval(&self) -> Option<Duration> {
        fsm::tx_interval(self.active_tx_us, self.remote_min_rx_us)
    }

    fn detection_time(&self) -> Duration {
        let mult = if self.remote_detect_mult == 0 {
            self.config.detect_mult
        } else {
            self.remote_detect_mult
        };
        fsm::detection_time(mult, self.active_rx_us, self.remote_desired_min_tx_us)
    }

    fn build_packet(&self) -> ControlPacket {
        ControlPacket {
            diag: self.local_diag,
            state: self.state,
            // "A BFD Control packet MUST NOT have both the Poll (P) and Final (F) bits set."
            poll: self.polling && !self.send_final,
            final_: self.send_final,
            control_plane_independent: false,
            demand: false,
            detect_mult: self.config.detect_mult,
            my_discr: self.local_discr,
            your_discr: self.remote_discr,
            desired_min_tx_us: self.advertised_tx_us,
            required_min_rx_us: self.advertised_rx_us,
            // No Echo function: "zero ... the transmitting system does not support the
            // receipt of BFD Echo packets".
            required_min_echo_rx_us: 0,
            auth: None,
        }
    }

    fn encode(&mut self, packet: &ControlPacket) -> Vec<u8> {
        match &self.config.auth {
            None => packet.encode(),
            Some(key) => {
                // Sequence numbers advance with every packet, which both keyed variants allow.
                self.xmit_auth_seq = self.xmit_auth_seq.wrapping_add(1);
                packet.encode_sha1(key.meticulous, key.key_id, self.xmit_auth_seq, &key.key)
            }
        }
    }

    /// §6.8.6: "If the A bit is set and no authentication is in use (bfd.AuthType is zero),
    /// the packet MUST be discarded. If the A bit is clear and authentication is in use, the
    /// packet MUST be discarded. If the A bit is set and authentication is in use, the packet
    /// MUST be authenticated under the rules of section 6.7".
    fn check_auth(&mut self, packet: &ControlPacket, raw: &[u8]) -> Result<(), Reject> {
        let (key, auth) = match (&self.config.auth, &packet.auth) {
            (None, None) => return Ok(()),
            (None, Some(_)) => return Err(Reject::AuthUnexpected),
            (Some(_), None) => return Err(Reject::AuthMissing),
            (Some(key), Some(auth)) => (key, auth),
        };
        let Auth::Sha1 {
            meticulous,
            key_id,
            sequence,
            ..
        } = auth
        else {
            return Err(Reject::AuthMismatch);
        };
        if *meticulous != key.meticulous || *key_id != key.key_id {
            return Err(Reject::AuthMismatch);
        }
        if !verify_sha1(raw, &key.key) {
            return Err(Reject::AuthFailed);
        }
        // §6.7.4: the sequence must lie in [bfd.RcvAuthSeq (+1 if meticulous),
        // bfd.RcvAuthSeq + 3 * Detect Mult], modulo 2^32.
        if let Some(last) = self.rcv_auth_seq {
            let window = 3 * u32::from(packet.detect_mult);
            let ahead = sequence.wrapping_sub(last);
            let lowest = u32::from(key.meticulous);
            if ahead < lowest || ahead > window {
                return Err(Reject::AuthSequence);
            }
        }
        self.rcv_auth_seq = Some(*sequence);
        Ok(())
    }
}

impl Reject {
    /// A bounded label for the drop counter.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Reject::LocalAdminDown => "local_admin_down",
            Reject::AuthMissing => "auth_missing",
            Reject::AuthUnexpected => "auth_unexpected",
            Reject::AuthMismatch => "auth_mismatch",
            Reject::AuthFailed => "auth_failed",
            Reject::AuthSequence => "auth_sequence",
            Reject::DemandMode => "demand_mode",
        }
    }
}

fn micros(duration: Duration) -> u32 {
    u32::try_from(duration.as_micros()).unwrap_or(u32::MAX)
}

fn slow(tx_us: u32) -> u32 {
    tx_us.max(micros(fsm::SLOW_TX))
}

#[cfg(test)]
mod tests;
