//! Session behaviour on a fake clock: every RFC 5880 transition, Poll/Final, timer changes,
//! detection, AdminDown, authentication and the peer quirks of the lab notes.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use super::*;

const MS: Duration = Duration::from_millis(1);

fn config(peer: u8, role: Role) -> SessionConfig {
    SessionConfig {
        peer: IpAddr::V4(Ipv4Addr::new(198, 51, 100, peer)),
        local: None,
        role,
        desired_min_tx: 100 * MS,
        required_min_rx: 100 * MS,
        detect_mult: 3,
        min_ttl: 255,
        auth: None,
        silent_path_down: false,
    }
}

/// Two sessions wired back to back, stepped 1 ms at a time, with a cable that can be cut in
/// either direction.
struct Pair {
    now: Instant,
    start: Instant,
    a: Session,
    b: Session,
    a_to_b: bool,
    b_to_a: bool,
    /// Every packet sent, with the time and the sender (`'a'`/`'b'`).
    wire: Vec<(Duration, char, ControlPacket)>,
    /// Every transition, with the time and the side.
    transitions: Vec<(Duration, char, Transition)>,
    jitter: f64,
}

impl Pair {
    fn new(a: SessionConfig, b: SessionConfig) -> Self {
        let now = Instant::now();
        Pair {
            now,
            start: now,
            a: Session::new(a, 0x0a0a_0a0a, 1, now),
            b: Session::new(b, 0x0b0b_0b0b, 1, now),
            a_to_b: true,
            b_to_a: true,
            wire: Vec::new(),
            transitions: Vec::new(),
            jitter: 0.5,
        }
    }

    fn elapsed(&self) -> Duration {
        self.now - self.start
    }

    /// Delivers everything due now, repeatedly, until both sides are quiet.
    fn settle(&mut self) {
        for _ in 0..16 {
            let mut sent = false;
            for side in ['a', 'b'] {
                let (from, to, open) = match side {
                    'a' => (&mut self.a, &mut self.b, self.a_to_b),
                    _ => (&mut self.b, &mut self.a, self.b_to_a),
                };
                if let Some(transition) = from.on_timer(self.now) {
                    self.transitions
                        .push((self.now - self.start, side, transition));
                }
                let Some(bytes) = from.poll_transmit(self.now, self.jitter) else {
                    continue;
                };
                sent = true;
                let packet = ControlPacket::decode(&bytes).expect("our own packets decode");
                self.wire
                    .push((self.now - self.start, side, packet.clone()));
                if open && let Ok(Some(transition)) = to.receive(&packet, &bytes, self.now) {
                    let other = if side == 'a' { 'b' } else { 'a' };
                    self.transitions
                        .push((self.now - self.start, other, transition));
                }
            }
            if !sent {
                return;
            }
        }
        panic!("the sessions kept talking without time passing");
    }

    fn run(&mut self, duration: Duration) {
        let end = self.now + duration;
        self.settle();
        while self.now < end {
            self.now += MS;
            self.settle();
        }
    }

    fn run_until(&mut self, limit: Duration, done: impl Fn(&Pair) -> bool) -> bool {
        let end = self.now + limit;
        self.settle();
        while self.now < end {
            if done(self) {
                return true;
            }
            self.now += MS;
            self.settle();
        }
        done(self)
    }

    fn both_up(&self) -> bool {
        self.a.state() == State::Up && self.b.state() == State::Up
    }

    fn sent_by(&self, side: char, since: Duration) -> Vec<&(Duration, char, ControlPacket)> {
        self.wire
            .iter()
            .filter(|(at, s, _)| *s == side && *at >= since)
            .collect()
    }
}

fn up_pair() -> Pair {
    let mut pair = Pair::new(config(2, Role::Active), config(1, Role::Passive));
    assert!(pair.run_until(5000 * MS, Pair::both_up), "never came Up");
    // Let both Poll Sequences (1 s → 100 ms) finish.
    pair.run(500 * MS);
    assert!(
        !pair.a.polling && !pair.b.polling,
        "poll sequences did not finish"
    );
    pair
}

#[test]
fn active_sends_down_at_once_then_at_the_slow_rate() {
    let mut pair = Pair::new(config(2, Role::Active), config(1, Role::Passive));
    pair.b_to_a = false;
    pair.a_to_b = false;
    pair.run(3000 * MS);
    let sent = pair.sent_by('a', Duration::ZERO);
    assert_eq!(
        sent[0].0,
        Duration::ZERO,
        "the first packet goes out at once"
    );
    assert!(
        sent.iter()
            .all(|(_, _, p)| p.state == State::Down && p.your_discr == 0)
    );
    // §6.8.3: at least 1 s while not Up, less up to 25 % jitter.
    assert!(
        sent.iter()
            .all(|(_, _, p)| p.desired_min_tx_us == 1_000_000)
    );
    for gap in sent.windows(2).map(|w| w[1].0 - w[0].0) {
        assert!((750 * MS..=1000 * MS).contains(&gap), "gap {gap:?}");
    }
    assert!(
        pair.sent_by('b', Duration::ZERO).is_empty(),
        "passive b must wait for a packet"
    );
}

#[test]
fn three_way_handshake_then_poll_to_the_fast_timers() {
    let mut pair = Pair::new(config(2, Role::Active), config(1, Role::Passive));
    assert!(pair.run_until(2000 * MS, Pair::both_up));
    let states = |side| {
        pair.transitions
            .iter()
            .filter(|(_, s, _)| *s == side)
            .map(|(_, _, t)| (t.old, t.new))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        states('b'),
        [(State::Down, State::Init), (State::Init, State::Up)]
    );
    assert_eq!(states('a'), [(State::Down, State::Up)]);
    pair.run(1000 * MS);
    // Once Up both advertise 100 ms; each Poll was answered by a Final, never both bits.
    for side in ['a', 'b'] {
        let sent = pair.sent_by(side, Duration::ZERO);
        assert!(sent.iter().all(|(_, _, p)| !(p.poll && p.final_)));
        assert!(sent.iter().any(|(_, _, p)| p.poll), "{side} never polled");
        assert!(
            sent.iter().any(|(_, _, p)| p.final_),
            "{side} never answered a poll"
        );
    }
    let late = pair.sent_by('a', pair.elapsed() - 500 * MS);
    assert!(
        late.iter()
            .all(|(_, _, p)| p.state == State::Up && p.desired_min_tx_us == 100_000)
    );
    for gap in late.windows(2).map(|w| w[1].0 - w[0].0) {
        assert!((75 * MS..=100 * MS).contains(&gap), "gap {gap:?}");
    }
    assert_eq!(pair.a.status(pair.now).detection_time_us, 300_000);
}

#[test]
fn a_poll_is_answered_with_a_final_at_once() {
    let mut pair = up_pair();
    let t = pair.elapsed();
    pair.b.set_timers(300 * MS, 300 * MS, 3);
    pair.settle();
    let from_b = pair.sent_by('b', t);
    let from_a = pair.sent_by('a', t);
    assert!(from_b[0].2.poll && from_b[0].2.desired_min_tx_us == 300_000);
    assert_eq!(from_a[0].0, t, "the Final goes out in the same instant");
    assert!(from_a[0].2.final_ && !from_a[0].2.poll);
}

#[test]
fn slower_tx_takes_effect_only_after_the_final() {
    let mut pair = up_pair();
    pair.a_to_b = false; // b never sees a's poll, so never answers
    pair.b_to_a = true;
    pair.a.set_timers(300 * MS, 100 * MS, 3);
    let t = pair.elapsed();
    // Shorter than b's 300 ms detection time: b, hearing nothing, would take a down after.
    pair.run(220 * MS);
    // Still transmitting at the old 100 ms rate, with P set on every packet.
    let sent = pair.sent_by('a', t);
    assert!(sent.len() >= 3, "{} packets", sent.len());
    assert!(
        sent.iter()
            .all(|(_, _, p)| p.poll && p.desired_min_tx_us == 300_000)
    );
    for gap in sent.windows(2).map(|w| w[1].0 - w[0].0) {
        assert!(gap <= 100 * MS, "gap {gap:?} before the Final");
    }
    assert!(pair.a.polling);
}

#[test]
fn timer_renegotiation_completes_and_detection_follows() {
    let mut pair = up_pair();
    pair.b.set_timers(300 * MS, 300 * MS, 3);
    pair.run(1000 * MS);
    assert!(!pair.b.polling);
    assert!(pair.both_up());
    // a now sees b's 300 ms: detection 3 × 300 ms; b detects at 3 × max(300, 100).
    assert_eq!(pair.a.status(pair.now).detection_time_us, 900_000);
    assert_eq!(pair.b.status(pair.now).detection_time_us, 900_000);
    let t = pair.elapsed();
    pair.run(1000 * MS);
    for gap in pair.sent_by('a', t).windows(2).map(|w| w[1].0 - w[0].0) {
        assert!(
            (225 * MS..=300 * MS).contains(&gap),
            "a must slow to b's 300 ms RequiredMinRx: {gap:?}"
        );
    }
    // Back to 100 ms.
    pair.b.set_timers(100 * MS, 100 * MS, 3);
    pair.run(1000 * MS);
    assert!(pair.both_up() && !pair.b.polling);
    assert_eq!(pair.a.status(pair.now).detection_time_us, 300_000);
    let downs: Vec<_> = pair
        .transitions
        .iter()
        .filter(|(_, _, t)| t.old == State::Up)
        .collect();
    assert!(downs.is_empty(), "renegotiation flapped: {downs:?}");
}

#[test]
fn detects_a_silent_peer_after_the_detection_time() {
    let mut pair = up_pair();
    pair.b_to_a = false;
    let cut = pair.elapsed();
    let last_from_b = pair
        .sent_by('b', Duration::ZERO)
        .last()
        .map(|(at, _, _)| *at);
    assert!(pair.run_until(1000 * MS, |p| p.a.state() == State::Down));
    let (at, _, transition) = *pair
        .transitions
        .iter()
        .rev()
        .find(|(_, side, _)| *side == 'a')
        .expect("a transition");
    assert_eq!(transition.diag, Diag::ControlDetectionTimeExpired);
    // Exactly 3 × 100 ms after the last packet heard, so 200–300 ms after the cut.
    assert_eq!(Some(at - 300 * MS), last_from_b.filter(|last| *last <= cut));
    assert!(
        (200 * MS..=300 * MS).contains(&(at - cut)),
        "{:?}",
        at - cut
    );
}

#[test]
fn keeps_the_remote_discriminator_for_one_more_detection_time() {
    let mut pair = up_pair();
    pair.b_to_a = false;
    assert!(pair.run_until(1000 * MS, |p| p.a.state() == State::Down));
    let down_at = pair.elapsed();
    let first_down = pair.sent_by('a', down_at)[0].2.clone();
    assert_eq!(first_down.state, State::Down);
    assert_eq!(
        first_down.your_discr, 0x0b0b_0b0b,
        "the Down must reach a peer that drops YD=0"
    );
    pair.run(400 * MS);
    assert_eq!(
        pair.a.status(pair.now).remote_discr,
        0,
        "zeroed after another detection time"
    );
}

#[test]
fn neighbor_down_and_admin_down_with_diag_zero() {
    // b going AdminDown (whatever diag) takes a Down with diag 3.
    let mut pair = up_pair();
    pair.b.set_admin_down(Diag::None, pair.now);
    pair.settle();
    assert_eq!(pair.a.state(), State::Down);
    assert_eq!(
        pair.a.status(pair.now).diag,
        Diag::NeighborSignaledSessionDown
    );
    // While AdminDown, b discards what it receives and keeps saying AdminDown.
    pair.run(2500 * MS);
    assert_eq!(pair.b.state(), State::AdminDown);
    assert_eq!(pair.a.state(), State::Down);
    assert!(pair.b.status(pair.now).counters.rx_rejected > 0);
    // Back up.
    pair.b.set_admin_up(pair.now);
    assert!(pair.run_until(5000 * MS, Pair::both_up));
}

#[test]
fn admin_down_reaches_the_peer_immediately() {
    let mut pair = up_pair();
    let t = pair.elapsed();
    pair.a.set_admin_down(Diag::PathDown, pair.now);
    pair.settle();
    let first = &pair.sent_by('a', t)[0];
    assert_eq!(first.0, t);
    assert_eq!(
        (first.2.state, first.2.diag),
        (State::AdminDown, Diag::PathDown)
    );
    assert_eq!(pair.b.state(), State::Down);
}

#[test]
fn a_silent_path_down_sends_nothing_and_the_peer_detects_it() {
    let mut pair = up_pair();
    pair.a.config.silent_path_down = true;
    let t = pair.elapsed();
    pair.a.set_admin_down(Diag::PathDown, pair.now);
    pair.run(1000 * MS);
    // Not one packet from a after the Path Down: b's detection timer ends the session.
    assert!(
        pair.sent_by('a', t).is_empty(),
        "{:?}",
        pair.sent_by('a', t)
    );
    let down = pair
        .transitions
        .iter()
        .find(|(_, side, tr)| *side == 'b' && tr.new == State::Down)
        .map(|(at, _, tr)| (*at - t, tr.diag));
    assert!(
        matches!(down, Some((after, Diag::ControlDetectionTimeExpired)) if after <= 310 * MS),
        "{down:?}"
    );
    // An administrative stop still says AdminDown (only a Path Down is silent).
    let mut pair = up_pair();
    pair.a.config.silent_path_down = true;
    let t = pair.elapsed();
    pair.a.set_admin_down(Diag::AdministrativelyDown, pair.now);
    pair.settle();
    assert_eq!(pair.sent_by('a', t)[0].2.state, State::AdminDown);
    // Back up: it speaks again.
    let mut pair = up_pair();
    pair.a.config.silent_path_down = true;
    pair.a.set_admin_down(Diag::PathDown, pair.now);
    pair.run(500 * MS);
    pair.a.set_admin_up(pair.now);
    assert!(pair.run_until(5000 * MS, Pair::both_up));
}

#[test]
fn up_receiving_down_goes_down_with_diag_3() {
    let mut pair = up_pair();
    // b restarts: a fresh session with a new discriminator that only knows Down.
    pair.b = Session::new(config(1, Role::Passive), 0x0c0c_0c0c, 1, pair.now);
    pair.b.heard = true;
    pair.b.send_now = true;
    pair.settle();
    let down = pair
        .transitions
        .iter()
        .find(|(_, s, t)| *s == 'a' && t.new == State::Down);
    assert_eq!(
        down.map(|(_, _, t)| t.diag),
        Some(Diag::NeighborSignaledSessionDown)
    );
    assert!(
        pair.run_until(3000 * MS, Pair::both_up),
        "no recovery after the peer restarted"
    );
    assert_eq!(pair.a.status(pair.now).remote_discr, 0x0c0c_0c0c);
}

#[test]
fn lower_remote_min_rx_pulls_the_next_transmission_forward() {
    let now = Instant::now();
    let mut session = Session::new(config(2, Role::Active), 7, 1, now);
    let mut remote = ControlPacket::new(State::Down, 9, 0);
    let _ = session.poll_transmit(now, 1.0);
    // Up at the slow rate: the next slot is a second away.
    remote.state = State::Init;
    remote.your_discr = 7;
    let _ = session.receive(&remote, &remote.encode(), now);
    let _ = session.poll_transmit(now, 0.99);
    assert!(
        session
            .next_deadline()
            .is_some_and(|at| at > now + 700 * MS)
    );
    // FRR polls to 100 ms: our next packet must come within 100 ms, not in a second.
    remote.state = State::Up;
    remote.poll = true;
    remote.desired_min_tx_us = 100_000;
    remote.required_min_rx_us = 100_000;
    let t = now + 10 * MS;
    let _ = session.receive(&remote, &remote.encode(), t);
    let answer = session
        .poll_transmit(t, 0.5)
        .map(|b| ControlPacket::decode(&b));
    assert!(matches!(
        answer,
        Some(Ok(ControlPacket { final_: true, .. }))
    ));
    let next = session.next_deadline().expect("a deadline");
    assert!(
        next <= t + 100 * MS,
        "next transmission {:?} after the poll",
        next - t
    );
}

#[test]
fn a_late_peer_within_its_detection_time_stays_up() {
    let mut pair = up_pair();
    // b advertises 100 ms × 3 but sends only every 250 ms (jitter pushed to the limit).
    pair.b_to_a = false;
    let mut flaps = 0;
    for _ in 0..20 {
        pair.run(249 * MS);
        pair.b.send_now = true;
        pair.b_to_a = true;
        pair.settle();
        pair.b_to_a = false;
        pair.now += MS;
        if pair.a.state() != State::Up {
            flaps += 1;
        }
    }
    assert_eq!(flaps, 0);
}

#[test]
fn identical_discriminators_on_both_sides_work() {
    let now = Instant::now();
    let mut pair = Pair::new(config(2, Role::Active), config(1, Role::Active));
    pair.a = Session::new(config(2, Role::Active), 42, 1, now);
    pair.b = Session::new(config(1, Role::Active), 42, 1, now);
    assert!(pair.run_until(3000 * MS, Pair::both_up));
    pair.run(2000 * MS);
    assert!(pair.both_up());
}

#[test]
fn demand_mode_is_rejected() {
    let now = Instant::now();
    let mut session = Session::new(config(2, Role::Passive), 7, 1, now);
    let packet = ControlPacket {
        demand: true,
        ..ControlPacket::new(State::Down, 9, 0)
    };
    assert_eq!(
        session.receive(&packet, &packet.encode(), now),
        Err(Reject::DemandMode)
    );
    assert_eq!(
        session.poll_transmit(now, 0.5),
        None,
        "a passive session stays silent"
    );
}

fn with_key(mut config: SessionConfig, key: &[u8], meticulous: bool) -> SessionConfig {
    config.auth = Some(AuthKey {
        key_id: 1,
        key: key.to_vec(),
        meticulous,
    });
    config
}

#[test]
fn keyed_sha1_sessions_come_up() {
    for meticulous in [false, true] {
        let mut pair = Pair::new(
            with_key(config(2, Role::Active), b"secret", meticulous),
            with_key(config(1, Role::Passive), b"secret", meticulous),
        );
        assert!(
            pair.run_until(3000 * MS, Pair::both_up),
            "meticulous={meticulous}"
        );
        pair.run(1000 * MS);
        assert!(pair.both_up());
        assert_eq!(pair.a.status(pair.now).counters.rx_rejected, 0);
    }
}

#[test]
fn authentication_failures_are_typed() {
    let now = Instant::now();
    let mut sender = Session::new(
        with_key(config(2, Role::Active), b"secret", true),
        9,
        100,
        now,
    );
    let bytes = sender.poll_transmit(now, 0.5).expect("a packet");
    let packet = ControlPacket::decode(&bytes).expect("decodes");

    let mut wrong_key = Session::new(
        with_key(config(1, Role::Passive), b"other", true),
        7,
        1,
        now,
    );
    assert_eq!(
        wrong_key.receive(&packet, &bytes, now),
        Err(Reject::AuthFailed)
    );
    let mut plain = Session::new(config(1, Role::Passive), 7, 1, now);
    assert_eq!(
        plain.receive(&packet, &bytes, now),
        Err(Reject::AuthUnexpected)
    );
    let mut keyed = Session::new(
        with_key(config(1, Role::Passive), b"secret", false),
        7,
        1,
        now,
    );
    assert_eq!(
        keyed.receive(&packet, &bytes, now),
        Err(Reject::AuthMismatch)
    );

    let mut receiver = Session::new(
        with_key(config(1, Role::Passive), b"secret", true),
        7,
        1,
        now,
    );
    assert_eq!(
        receiver.receive(&packet, &bytes, now),
        Ok(Some(Transition {
            old: State::Down,
            new: State::Init,
            diag: Diag::None
        }))
    );
    // A replay of the same sequence number fails the meticulous window.
    assert_eq!(
        receiver.receive(&packet, &bytes, now),
        Err(Reject::AuthSequence)
    );
    let unsigned = ControlPacket {
        auth: None,
        ..packet.clone()
    };
    assert_eq!(
        receiver.receive(&unsigned, &unsigned.encode(), now),
        Err(Reject::AuthMissing)
    );
}

#[test]
fn a_stale_discriminator_teaches_the_peer_and_recovers() {
    // b still knows a's old discriminator after a restarted; a drops b's packets (the lookup
    // fails) but learns b's discriminator from them, answers, and both come back Up.
    let mut pair = up_pair();
    let now = pair.now;
    pair.a = Session::new(config(2, Role::Passive), 0x0d0d_0d0d, 1, now);
    let stale = ControlPacket {
        desired_min_tx_us: 100_000,
        required_min_rx_us: 100_000,
        ..ControlPacket::new(State::Up, 0x0b0b_0b0b, 0x0a0a_0a0a)
    };
    pair.a.learn_stale_peer(&stale, now);
    assert!(
        pair.run_until(3000 * MS, Pair::both_up),
        "a={:?} b={:?}",
        pair.a.state(),
        pair.b.state()
    );
    assert_eq!(pair.b.status(pair.now).remote_discr, 0x0d0d_0d0d);
}
