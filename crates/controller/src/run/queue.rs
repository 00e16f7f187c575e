//! The work queue (pure): keys due now or later, each at most once, with exponential backoff
//! for failures and no retry storm. Time is passed in, so it is tested without sleeping.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// What a pass reconciles.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Key {
    /// A gateway, `namespace`, `name`.
    Gateway(String, String),
    /// A VPC's BFD port.
    Vpc(String),
}

impl Key {
    /// The key of `gateway`.
    pub fn of(gateway: &veg_api::VpcEgressGateway) -> Key {
        Key::Gateway(
            gateway.namespace_or_empty().to_owned(),
            gateway.name_or_empty().to_owned(),
        )
    }

    /// The gateway key of `<namespace>/<name>`.
    pub fn gateway(key: &str) -> Option<Key> {
        let (namespace, name) = key.split_once('/')?;
        Some(Key::Gateway(namespace.to_owned(), name.to_owned()))
    }
}

/// First retry delay after a failure.
pub const BACKOFF_START: Duration = Duration::from_millis(100);
/// Longest retry delay.
pub const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Keys and when they are due.
#[derive(Debug, Default)]
pub struct WorkQueue {
    due: BTreeMap<Key, Instant>,
    failures: BTreeMap<Key, u32>,
}

impl WorkQueue {
    /// Due now (an earlier due time is kept).
    pub fn push(&mut self, key: Key, now: Instant) {
        self.push_at(key, now);
    }

    /// Due at `at`, unless it is due earlier already.
    pub fn push_at(&mut self, key: Key, at: Instant) {
        let entry = self.due.entry(key).or_insert(at);
        if at < *entry {
            *entry = at;
        }
    }

    /// The next key due at `now`, removed from the queue.
    pub fn pop_due(&mut self, now: Instant) -> Option<Key> {
        let key = self
            .due
            .iter()
            .filter(|(_, at)| **at <= now)
            .min_by_key(|(_, at)| **at)
            .map(|(key, _)| key.clone())?;
        self.due.remove(&key);
        Some(key)
    }

    /// When the next key is due.
    pub fn next_due(&self) -> Option<Instant> {
        self.due.values().min().copied()
    }

    /// A pass of `key` failed: it is due again after a growing delay.
    pub fn failed(&mut self, key: Key, now: Instant) -> Duration {
        let failures = self.failures.entry(key.clone()).or_insert(0);
        let delay = BACKOFF_START
            .saturating_mul(2u32.saturating_pow((*failures).min(16)))
            .min(BACKOFF_MAX);
        *failures += 1;
        self.push_at(key, now + delay);
        delay
    }

    /// A pass of `key` succeeded: its backoff resets.
    pub fn succeeded(&mut self, key: &Key) {
        self.failures.remove(key);
    }

    /// Keys waiting.
    pub fn len(&self) -> usize {
        self.due.len()
    }

    /// Whether nothing waits.
    pub fn is_empty(&self) -> bool {
        self.due.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gateway(name: &str) -> Key {
        Key::Gateway("default".into(), name.into())
    }

    #[test]
    fn keys_are_due_once_and_in_time_order() {
        let now = Instant::now();
        let mut queue = WorkQueue::default();
        queue.push_at(gateway("later"), now + Duration::from_secs(5));
        queue.push(gateway("a"), now);
        queue.push(gateway("a"), now);
        queue.push(Key::Vpc("ovn-cluster".into()), now);
        assert_eq!(queue.len(), 3);
        let mut popped = Vec::new();
        while let Some(key) = queue.pop_due(now) {
            popped.push(key);
        }
        assert_eq!(popped.len(), 2, "{popped:?}");
        assert_eq!(queue.next_due(), Some(now + Duration::from_secs(5)));
        // A push for now overrides a later due time.
        queue.push(gateway("later"), now);
        assert_eq!(queue.pop_due(now), Some(gateway("later")));
        assert!(queue.is_empty());
    }

    #[test]
    fn failures_back_off_exponentially_up_to_a_cap_and_reset_on_success() {
        let now = Instant::now();
        let mut queue = WorkQueue::default();
        let delays: Vec<Duration> = (0..12).map(|_| queue.failed(gateway("a"), now)).collect();
        assert_eq!(delays[0], Duration::from_millis(100));
        assert_eq!(delays[1], Duration::from_millis(200));
        assert_eq!(delays[4], Duration::from_millis(1600));
        assert_eq!(delays[11], BACKOFF_MAX);
        queue.succeeded(&gateway("a"));
        assert_eq!(queue.failed(gateway("a"), now), Duration::from_millis(100));
        assert_eq!(Key::gateway("default/gw"), Some(gateway("gw")));
        assert_eq!(Key::gateway("nope"), None);
    }
}
