//! Demultiplexing, GTSM, allowed/blocked peers and the shared timer heap.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::*;

use crate::session::{Role, SessionConfig};

const MS: Duration = Duration::from_millis(1);
const A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 2));
const STRANGER: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 99));
const B6: IpAddr = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 2));

fn config(peer: IpAddr, role: Role) -> SessionConfig {
    SessionConfig {
        peer,
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

fn counter(start: u32) -> impl FnMut() -> u32 + Send {
    let mut next = start;
    move || {
        next = next.wrapping_add(1);
        next
    }
}

fn down_packet(my_discr: u32, your_discr: u32) -> Vec<u8> {
    ControlPacket::new(State::Down, my_discr, your_discr).encode()
}

/// Two daemons' worth of sessions, `a` (active towards B) and `b` (passive, allowing A),
/// exchanging packets 1 ms at a time.
struct Net {
    now: Instant,
    a: Sessions,
    b: Sessions,
    a_ttl: u8,
    cut: bool,
}

impl Net {
    fn new() -> Self {
        let now = Instant::now();
        let mut a = Sessions::new(counter(100));
        let mut b = Sessions::new(counter(200));
        assert!(a.add(config(B, Role::Active), now).is_ok());
        b.allow(config(A, Role::Passive));
        Net {
            now,
            a,
            b,
            a_ttl: 255,
            cut: false,
        }
    }

    fn step(&mut self) {
        let mut jitter = || 0.5;
        for _ in 0..8 {
            let mut from_a = Vec::new();
            let mut from_b = Vec::new();
            self.a.poll(self.now, &mut jitter, &mut from_a);
            self.b.poll(self.now, &mut jitter, &mut from_b);
            if from_a.is_empty() && from_b.is_empty() {
                break;
            }
            if self.cut {
                continue;
            }
            for packet in from_a {
                let _ = self.b.receive(&packet.bytes, A, None, self.a_ttl, self.now);
            }
            for packet in from_b {
                let _ = self.a.receive(&packet.bytes, B, None, 255, self.now);
            }
        }
    }

    fn run_until(&mut self, limit: Duration, done: impl Fn(&Net) -> bool) -> bool {
        let end = self.now + limit;
        while self.now < end {
            self.step();
            if done(self) {
                return true;
            }
            self.now += MS;
        }
        false
    }

    fn state(sessions: &Sessions) -> Option<State> {
        sessions.status(Instant::now()).first().map(|s| s.state)
    }

    fn both_up(&self) -> bool {
        Net::state(&self.a) == Some(State::Up) && Net::state(&self.b) == Some(State::Up)
    }
}

#[test]
fn an_allowed_peer_opens_a_passive_session_and_comes_up() {
    let mut net = Net::new();
    assert!(net.b.is_empty());
    assert!(net.run_until(3000 * MS, Net::both_up));
    let b = net.b.status(net.now);
    assert_eq!((b.len(), b[0].peer, b[0].role), (1, A, Role::Passive));
    let a = net.a.status(net.now);
    assert_eq!(a[0].remote_discr, b[0].local_discr);
    assert_eq!(b[0].remote_discr, a[0].local_discr);
}

#[test]
fn strangers_and_blocked_peers_are_dropped() {
    let now = Instant::now();
    let mut sessions = Sessions::new(counter(1));
    sessions.allow(config(A, Role::Passive));
    assert_eq!(
        sessions.receive(&down_packet(5, 0), STRANGER, None, 255, now),
        Err(DropReason::UnknownPeer { peer: STRANGER })
    );
    sessions.block(A);
    assert_eq!(
        sessions.receive(&down_packet(5, 0), A, None, 255, now),
        Err(DropReason::Blocked { peer: A })
    );
    assert!(sessions.is_empty());
    assert_eq!(
        DropReason::UnknownPeer { peer: STRANGER }.metric_label(),
        "unknown_peer"
    );
}

#[test]
fn gtsm_drops_ttl_254_unless_the_peer_allows_it() {
    let now = Instant::now();
    let mut sessions = Sessions::new(counter(1));
    sessions.allow(config(A, Role::Passive));
    assert_eq!(
        sessions.receive(&down_packet(5, 0), A, None, 254, now),
        Err(DropReason::Ttl {
            ttl: 254,
            min_ttl: 255
        })
    );
    assert!(
        sessions.is_empty(),
        "a dropped packet must not open a session"
    );
    let mut routed = config(A, Role::Passive);
    routed.min_ttl = 254;
    sessions.allow(routed);
    assert!(matches!(
        sessions.receive(&down_packet(5, 0), A, None, 254, now),
        Ok(Some(_))
    ));
    assert_eq!(
        sessions
            .receive(&down_packet(5, 0), A, None, 253, now)
            .map(|_| ()),
        Err(DropReason::Ttl {
            ttl: 253,
            min_ttl: 254
        })
    );
}

#[test]
fn ttl_254_keeps_a_session_from_coming_up() {
    let mut net = Net::new();
    net.a_ttl = 254;
    assert!(!net.run_until(3000 * MS, Net::both_up));
    assert!(net.b.is_empty());
}

#[test]
fn malformed_packets_are_dropped_with_their_reason() {
    let now = Instant::now();
    let mut sessions = Sessions::new(counter(1));
    sessions.allow(config(A, Role::Passive));
    let mut bytes = down_packet(5, 0);
    bytes[2] = 0;
    assert_eq!(
        sessions.receive(&bytes, A, None, 255, now),
        Err(DropReason::Decode(DecodeError::ZeroDetectMult))
    );
    assert_eq!(
        DropReason::Decode(DecodeError::ZeroDetectMult).metric_label(),
        "zero_detect_mult"
    );
}

#[test]
fn your_discriminator_selects_the_session_and_must_match_the_peer() {
    let now = Instant::now();
    let mut sessions = Sessions::new(counter(1));
    let to_a = sessions.add(config(A, Role::Passive), now).expect("added");
    let _to_b = sessions.add(config(B, Role::Passive), now).expect("added");
    // B sending with A's session discriminator.
    assert_eq!(
        sessions.receive(&down_packet(7, to_a), B, None, 255, now),
        Err(DropReason::PeerMismatch { your_discr: to_a })
    );
    assert!(
        sessions
            .receive(&down_packet(7, to_a), A, None, 255, now)
            .is_ok()
    );
    assert_eq!(
        sessions.add(config(A, Role::Active), now),
        Err(CommandError::Exists { peer: A })
    );
}

#[test]
fn recovers_when_the_peer_keeps_a_stale_discriminator() {
    // Kube-OVN #6787: b's daemon restarts with new discriminators; a keeps sending the old
    // one. b must drop those packets, learn a's discriminator from them, answer, and both
    // must come back Up without anyone restarting anything.
    let mut net = Net::new();
    assert!(net.run_until(3000 * MS, Net::both_up));
    let old_b_discr = net.b.status(net.now)[0].local_discr;
    net.b = Sessions::new(counter(500));
    net.b.allow(config(A, Role::Passive));
    let mut stale_seen = false;
    // One packet from a with the old discriminator shows the drop reason.
    let mut out = Vec::new();
    let mut jitter = || 0.5;
    for _ in 0..200 {
        net.now += MS;
        net.a.poll(net.now, &mut jitter, &mut out);
        if let Some(packet) = out.pop() {
            let result = net.b.receive(&packet.bytes, A, None, 255, net.now);
            stale_seen = result
                == Err(DropReason::StaleDiscr {
                    your_discr: old_b_discr,
                });
            break;
        }
    }
    assert!(
        stale_seen,
        "the first packet from a should carry the old discriminator"
    );
    assert!(net.run_until(5000 * MS, Net::both_up), "no recovery");
    assert_ne!(net.b.status(net.now)[0].local_discr, old_b_discr);
}

#[test]
fn admin_down_of_all_sessions_and_back() {
    let mut net = Net::new();
    assert!(net.run_until(3000 * MS, Net::both_up));
    let events = net
        .a
        .update(None, |s| s.set_admin_down(Diag::PathDown, Instant::now()))
        .expect("ok");
    assert_eq!(events.len(), 1);
    assert!(net.a.has_urgent());
    net.step();
    assert_eq!(Net::state(&net.b), Some(State::Down));
    let _ = net.a.update(None, |s| s.set_admin_up(Instant::now()));
    assert!(net.run_until(5000 * MS, Net::both_up));
}

#[test]
fn detection_through_the_shared_timer_heap() {
    let mut net = Net::new();
    assert!(net.run_until(3000 * MS, Net::both_up));
    net.run_until(500 * MS, |_| false);
    let cut = net.now;
    net.cut = true;
    assert!(net.run_until(1000 * MS, |n| Net::state(&n.a) == Some(State::Down)));
    let detected = net.now - cut;
    assert!((200 * MS..=301 * MS).contains(&detected), "{detected:?}");
}

/// A deterministic uniform sample in [0, 1) (an LCG), as the daemon's RNG would give.
fn lcg(seed: u64) -> impl FnMut() -> f64 {
    let mut state = seed;
    move || {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (state >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[test]
fn a_thousand_sessions_keep_their_rhythm() {
    // One heap drives all sessions: once Up, every session must send every 75–100 ms.
    let now = Instant::now();
    let mut a = Sessions::new(counter(10_000));
    let mut b = Sessions::new(counter(20_000));
    for index in 0..1000u16 {
        let peer_of_a = IpAddr::V6(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 1, index));
        let mut active = config(peer_of_a, Role::Active);
        active.local = Some(B6);
        assert!(a.add(active, now).is_ok());
        b.allow(config(peer_of_a, Role::Passive));
    }
    let mut clock = now;
    let mut jitter_a = lcg(1);
    let mut jitter_b = lcg(2);
    let mut sent: HashMap<IpAddr, Vec<Instant>> = HashMap::new();
    for _ in 0..4000 {
        for _ in 0..4 {
            let mut from_a = Vec::new();
            let mut from_b = Vec::new();
            a.poll(clock, &mut jitter_a, &mut from_a);
            b.poll(clock, &mut jitter_b, &mut from_b);
            if from_a.is_empty() && from_b.is_empty() {
                break;
            }
            for packet in &from_a {
                sent.entry(packet.peer).or_default().push(clock);
                let _ = b.receive(&packet.bytes, packet.peer, None, 255, clock);
            }
            // b's packets reach a as if from the address they were sent to.
            for packet in &from_b {
                let _ = a.receive(&packet.bytes, packet.peer, None, 255, clock);
            }
        }
        clock += MS;
    }
    let status = a.status(clock);
    assert_eq!(
        status
            .iter()
            .filter(|s| s.state == State::Up && !s.polling)
            .count(),
        1000
    );
    let steady = now + 3000 * MS;
    let mut gaps = 0;
    for times in sent.values() {
        let recent: Vec<&Instant> = times.iter().filter(|at| **at >= steady).collect();
        for pair in recent.windows(2) {
            let gap = *pair[1] - *pair[0];
            assert!((75 * MS..=100 * MS).contains(&gap), "gap {gap:?}");
            gaps += 1;
        }
    }
    assert!(gaps >= 1000 * 9, "only {gaps} gaps measured");
}

#[test]
fn a_passive_session_answers_from_the_address_its_peer_sent_to() {
    let now = Instant::now();
    let mut sessions = Sessions::new(counter(1));
    sessions.allow(config(A, Role::Passive));
    let ours = IpAddr::V4(Ipv4Addr::new(198, 51, 100, 77));
    assert!(
        sessions
            .receive(&down_packet(5, 0), A, Some(ours), 255, now)
            .is_ok()
    );
    let mut out = Vec::new();
    let mut jitter = || 0.5;
    sessions.poll(now, &mut jitter, &mut out);
    assert_eq!(out.len(), 1);
    assert_eq!((out[0].peer, out[0].local), (A, Some(ours)));
}

/// A blind spoofer (it knows the peer's address, not the discriminators) sends Down with Your
/// Discriminator zero: an Up session stays Up. The peer's own Down (its My Discriminator, as
/// after its detection timer expired) or one naming our session still takes it Down.
#[test]
fn a_blind_spoofed_down_does_not_drop_an_up_session() {
    let mut net = Net::new();
    assert!(net.run_until(3000 * MS, Net::both_up));
    let b = net.b.status(net.now)[0].clone();
    // Spoofed as A, at TTL 255 (on the link): guessed My Discriminators, Your Discriminator 0.
    // (My Discriminator 0 is malformed and dropped before this rule.)
    for guess in [1u32, 12345, b.local_discr.wrapping_add(7)] {
        let dropped = net.b.receive(&down_packet(guess, 0), A, None, 255, net.now);
        assert_eq!(
            dropped.err().map(|e| e.metric_label()),
            Some("unverified_down"),
            "guess {guess}"
        );
    }
    let admin_down = ControlPacket::new(State::AdminDown, 999, 0).encode();
    assert!(net.b.receive(&admin_down, A, None, 255, net.now).is_err());
    assert_eq!(Net::state(&net.b), Some(State::Up));
    // The peer's own Down (its discriminator) is believed.
    let event = net
        .b
        .receive(&down_packet(b.remote_discr, 0), A, None, 255, net.now);
    assert!(
        matches!(event, Ok(Some(ref e)) if e.transition.new == State::Down),
        "{event:?}"
    );
}

/// Naming our session (Your Discriminator) is verification too.
#[test]
fn a_down_naming_our_session_is_believed() {
    let mut net = Net::new();
    assert!(net.run_until(3000 * MS, Net::both_up));
    let b = net.b.status(net.now)[0].clone();
    let event = net.b.receive(
        &down_packet(b.remote_discr, b.local_discr),
        A,
        None,
        255,
        net.now,
    );
    assert!(
        matches!(event, Ok(Some(ref e)) if e.transition.new == State::Down),
        "{event:?}"
    );
}

/// A spoofer sending Down (Your Discriminator zero, its own My Discriminators) from the peer's
/// address 20 times a second, from the start: the sessions still come Up (the spoofed
/// discriminator must not replace the peer's while the session comes up) and stay Up.
#[test]
fn a_spoofed_down_flood_does_not_keep_a_session_from_coming_up() {
    let mut net = Net::new();
    let mut spoofed = 0u32;
    let end = net.now + 6000 * MS;
    let mut up_at = None;
    let mut flaps = 0u32;
    while net.now < end {
        net.step();
        if (net.now - (end - 6000 * MS)).as_millis().is_multiple_of(50) {
            spoofed = spoofed.wrapping_add(7919);
            let _ = net
                .b
                .receive(&down_packet(spoofed | 1, 0), A, None, 255, net.now);
        }
        if net.both_up() && up_at.is_none() {
            up_at = Some(net.now);
        }
        if up_at.is_some() && Net::state(&net.b) != Some(State::Up) {
            flaps += 1;
        }
        net.now += MS;
    }
    assert!(up_at.is_some(), "never came up under the flood");
    assert_eq!(flaps, 0, "the flood knocked the Up session down");
}

/// While a passive session comes up (Init, the peer's discriminator learnt from its Down), a
/// spoofed Down with another My Discriminator does not replace it.
#[test]
fn a_spoofed_down_does_not_replace_the_peers_discriminator_while_coming_up() {
    let now = Instant::now();
    let mut b = Sessions::new(counter(200));
    b.allow(config(A, Role::Passive));
    let opened = b.receive(&down_packet(500, 0), A, None, 255, now);
    assert!(
        matches!(opened, Ok(Some(ref e)) if e.transition.new == State::Init),
        "{opened:?}"
    );
    let spoofed = b.receive(&down_packet(777, 0), A, None, 255, now + MS);
    assert_eq!(
        spoofed.err().map(|e| e.metric_label()),
        Some("unverified_down")
    );
    let status = b.status(now + MS);
    assert_eq!(
        (status[0].state, status[0].remote_discr),
        (State::Init, 500)
    );
}
