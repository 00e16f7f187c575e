//! The writer lease as this monitor sees it (pure: the caller passes the time). See the crate
//! doc for the protocol.

use std::time::{Duration, Instant};

/// The `NB_Global.external_ids` key of a router's lease.
pub fn lease_key(router: &str) -> String {
    format!("veg-monitor:{router}")
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

    /// Records the value in the NB; a new value restarts the silence measured by this clock.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lease_is_renewed_by_its_holder_and_taken_over_when_silent() {
        let start = Instant::now();
        let timeout = Duration::from_secs(3);
        let mut a = Lease::new("a", start);
        let mut b = Lease::new("b", start);
        // Nobody holds it: both would try; the guarded write lets one win (here a).
        assert_eq!(a.next_value(start, timeout), Some("a/1".to_owned()));
        a.observe(Some("a/1".into()), start);
        b.observe(Some("a/1".into()), start);
        assert!(a.held() && !b.held());
        // a renews; b sees the bumps and stays standby.
        let later = start + Duration::from_secs(2);
        assert_eq!(a.next_value(later, timeout), Some("a/2".to_owned()));
        b.observe(Some("a/2".into()), later);
        assert_eq!(b.next_value(later + Duration::from_secs(2), timeout), None);
        // a goes silent: after the timeout by b's own clock, b takes over.
        let silent = later + timeout;
        assert_eq!(b.next_value(silent, timeout), Some("b/3".to_owned()));
        b.observe(Some("b/3".into()), silent);
        assert!(b.held());
        // a comes back: it sees b's value and no longer holds the lease.
        a.observe(Some("b/3".into()), silent);
        assert!(!a.held());
        assert_eq!(a.next_value(silent, timeout), None);
    }
}
