//! The monitor's decisions: which policies it watches, which sessions they need, which
//! nexthop writes a set of Up sessions asks for, and the writer lease.

use serde_json::json;
use veg_ovsdb::Schema;

use super::*;

fn ip(text: &str) -> IpAddr {
    text.parse()
        .unwrap_or(IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED))
}

/// A router with two monitored policies (one gateway, two matches) and one foreign policy.
fn replica() -> Replica {
    let schema = Schema::default();
    let mut replica = Replica::default();
    replica.apply(
        &schema,
        &json!({
            "Logical_Router": {"r1": {"insert": {"name": "ovn-cluster",
                "policies": ["set", [["uuid", "p1"], ["uuid", "p2"], ["uuid", "p3"]]]}}},
            "Logical_Router_Policy": {
                "p1": {"insert": {"nexthops": ["set", []], "external_ids": ["map", [
                    ["veg-candidates", "198.18.0.12,198.18.0.13"], ["veg-bfd", "100/100/3"]]]}},
                "p2": {"insert": {"nexthops": "198.18.0.12", "external_ids": ["map", [
                    ["veg-candidates", "198.18.0.12,198.18.0.13"], ["veg-bfd", "300/300/3"]]]}},
                "p3": {"insert": {"nexthops": "203.0.113.9", "external_ids": ["map", [["vendor", "x"]]]}}
            }
        }),
    );
    replica
}

#[test]
fn candidates_sessions_and_writes() {
    let watched = watched(&replica(), "ovn-cluster");
    assert_eq!(watched.keys().collect::<Vec<_>>(), ["p1", "p2"]);
    assert!(super::watched(&replica(), "vpc9").is_empty());
    // The fastest timers asked for a candidate win.
    let sessions = wanted_sessions(&watched);
    assert_eq!(
        sessions.get(&ip("198.18.0.13")).map(MonitorTimers::encode),
        Some("100/100/3".to_owned())
    );
    // Nothing Up: p2 loses its nexthop, p1 (already empty) is left alone.
    let none = nexthop_updates(&watched, &BTreeSet::new());
    assert_eq!(none, [("p2".to_owned(), BTreeSet::new())]);
    // .13 Up: both point at it only.
    let up = BTreeSet::from([ip("198.18.0.13")]);
    let writes = nexthop_updates(&watched, &up);
    assert_eq!(writes.len(), 2);
    assert!(
        writes
            .iter()
            .all(|(_, hops)| *hops == BTreeSet::from(["198.18.0.13".to_owned()]))
    );
    // A non-candidate Up changes nothing.
    let stranger = BTreeSet::from([ip("198.18.0.12"), ip("198.18.0.99")]);
    assert_eq!(
        nexthop_updates(&watched, &stranger),
        [("p1".to_owned(), BTreeSet::from(["198.18.0.12".to_owned()]))]
    );
}

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
