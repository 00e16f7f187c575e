//! Flap dampening (pure, time passed in): an instance whose session keeps going Down is held
//! out of the nexthops for a while after it comes back Up, the hold doubling with each new
//! burst of flaps, so a flapping instance does not move its Pods' traffic back and forth (each
//! move resets their connections) and a spoofer cannot make it flap at will.
//!
//! The rule: a session that went Down `flaps` times within `window` is held down from its
//! next Up for `hold`, then 2×, 4×… up to `max_hold` as such bursts repeat. A peer quiet (no
//! Down) for `max_hold` starts over.

use std::collections::{BTreeMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// The dampening settings.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DampeningConfig {
    /// Downs within `window` that make a burst.
    pub flaps: usize,
    pub window: Duration,
    /// The first hold; each burst after it doubles it.
    pub hold: Duration,
    pub max_hold: Duration,
}

impl Default for DampeningConfig {
    fn default() -> Self {
        Self {
            flaps: 4,
            window: Duration::from_secs(10),
            hold: Duration::from_secs(5),
            max_hold: Duration::from_secs(300),
        }
    }
}

#[derive(Debug, Default)]
struct History {
    downs: VecDeque<Instant>,
    last_down: Option<Instant>,
    /// Bursts so far (0: not dampened).
    bursts: u32,
    held_until: Option<Instant>,
}

/// What a Down did to a peer, for logs and metrics.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Not (yet) a burst.
    Counted,
    /// A burst: held down until this time, the `bursts`th time.
    HeldDown { until: Instant, bursts: u32 },
}

/// Every peer's flap history.
#[derive(Debug, Default)]
pub struct Dampening {
    config: DampeningConfig,
    peers: BTreeMap<IpAddr, History>,
}

impl Dampening {
    pub fn new(config: DampeningConfig) -> Self {
        Self {
            config,
            peers: BTreeMap::new(),
        }
    }

    /// `peer`'s session went Down at `now`.
    pub fn down(&mut self, peer: IpAddr, now: Instant) -> Verdict {
        let config = self.config;
        let history = self.peers.entry(peer).or_default();
        if history
            .last_down
            .is_some_and(|last| now.saturating_duration_since(last) >= config.max_hold)
        {
            // Quiet long enough: forgiven.
            *history = History::default();
        }
        history.last_down = Some(now);
        history.downs.push_back(now);
        while history
            .downs
            .front()
            .is_some_and(|first| now.saturating_duration_since(*first) > config.window)
        {
            history.downs.pop_front();
        }
        if history.downs.len() < config.flaps.max(1) {
            return Verdict::Counted;
        }
        history.downs.clear();
        history.bursts += 1;
        let factor = 1u32.checked_shl(history.bursts - 1).unwrap_or(u32::MAX);
        let hold = config
            .hold
            .checked_mul(factor)
            .unwrap_or(config.max_hold)
            .min(config.max_hold);
        let until = now + hold;
        history.held_until = Some(until);
        Verdict::HeldDown {
            until,
            bursts: history.bursts,
        }
    }

    /// Whether an Up `peer` may carry traffic at `now`.
    pub fn usable(&self, peer: IpAddr, now: Instant) -> bool {
        self.peers
            .get(&peer)
            .and_then(|history| history.held_until)
            .is_none_or(|until| now >= until)
    }

    /// The next end of a hold after `now`, when one is running.
    pub fn next_release(&self, now: Instant) -> Option<Instant> {
        self.peers
            .values()
            .filter_map(|history| history.held_until)
            .filter(|until| *until > now)
            .min()
    }

    /// Forgets a peer that is no longer a candidate.
    pub fn forget(&mut self, peer: IpAddr) {
        self.peers.remove(&peer);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn peer() -> IpAddr {
        IpAddr::from([198, 18, 0, 12])
    }

    #[test]
    fn a_burst_holds_the_peer_down_and_repeated_bursts_double_the_hold() {
        let mut dampening = Dampening::new(DampeningConfig {
            flaps: 3,
            window: 30 * S,
            ..DampeningConfig::default()
        });
        let start = Instant::now();
        assert_eq!(dampening.down(peer(), start), Verdict::Counted);
        assert_eq!(dampening.down(peer(), start + S), Verdict::Counted);
        assert!(dampening.usable(peer(), start + 2 * S));
        let third = start + 2 * S;
        assert_eq!(
            dampening.down(peer(), third),
            Verdict::HeldDown {
                until: third + 5 * S,
                bursts: 1
            }
        );
        assert!(!dampening.usable(peer(), third + 4 * S));
        assert!(dampening.usable(peer(), third + 5 * S));
        assert_eq!(dampening.next_release(third), Some(third + 5 * S));
        assert_eq!(dampening.next_release(third + 5 * S), None);
        // The next burst: 10 s, then 20 s.
        let next = third + 6 * S;
        for offset in 0..2 {
            assert_eq!(dampening.down(peer(), next + offset * S), Verdict::Counted);
        }
        assert_eq!(
            dampening.down(peer(), next + 2 * S),
            Verdict::HeldDown {
                until: next + 12 * S,
                bursts: 2
            }
        );
        let after = next + 20 * S;
        for offset in 0..2 {
            dampening.down(peer(), after + offset * S);
        }
        assert_eq!(
            dampening.down(peer(), after + 2 * S),
            Verdict::HeldDown {
                until: after + 22 * S,
                bursts: 3
            }
        );
        // Another peer is not touched.
        assert!(dampening.usable(IpAddr::from([198, 18, 0, 13]), after + 3 * S));
    }

    #[test]
    fn downs_spread_wider_than_the_window_are_not_a_burst_and_quiet_peers_start_over() {
        let config = DampeningConfig {
            flaps: 3,
            window: 30 * S,
            ..DampeningConfig::default()
        };
        let mut dampening = Dampening::new(config);
        let start = Instant::now();
        for n in 0..10 {
            assert_eq!(
                dampening.down(peer(), start + n * 16 * S),
                Verdict::Counted,
                "down {n}"
            );
        }
        // Held once, then quiet for max_hold: the next burst is the first again (5 s).
        let burst = start + 1000 * S;
        for offset in 0..3 {
            dampening.down(peer(), burst + offset * S);
        }
        let later = burst + 2 * S + config.max_hold;
        for offset in 0..2 {
            dampening.down(peer(), later + offset * S);
        }
        assert_eq!(
            dampening.down(peer(), later + 2 * S),
            Verdict::HeldDown {
                until: later + 7 * S,
                bursts: 1
            }
        );
    }

    #[test]
    fn the_hold_stops_growing_at_its_maximum() {
        let config = DampeningConfig {
            flaps: 3,
            window: 30 * S,
            max_hold: 12 * S,
            ..DampeningConfig::default()
        };
        let mut dampening = Dampening::new(config);
        let mut now = Instant::now();
        // Bursts of three Downs, 1 s apart: holds of 5, 10, then 12 s (not 20, 40…).
        let mut holds = Vec::new();
        while holds.len() < 5 {
            if let Verdict::HeldDown { until, .. } = dampening.down(peer(), now) {
                holds.push(until.saturating_duration_since(now));
            }
            now += S;
        }
        assert_eq!(holds, [5 * S, 10 * S, 12 * S, 12 * S, 12 * S]);
    }
}
