//! What the monitor keeps (pure): the policies of a router that carry candidates, the BFD
//! sessions they need, and the nexthop writes a set of Up sessions asks for.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use veg_api::names::{EXTERNAL_ID_CANDIDATES, EXTERNAL_ID_MONITOR_TIMERS, MonitorTimers};
use veg_ovsdb::Replica;
use veg_ovsdb::nb::{LogicalRouter, LogicalRouterPolicy};

/// One policy the monitor keeps.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Watched {
    /// The gateway instances the controller lists for it.
    pub candidates: BTreeSet<IpAddr>,
    /// The BFD timers for them.
    pub timers: MonitorTimers,
    /// Its nexthops now.
    pub nexthops: BTreeSet<String>,
}

/// The policies of `router` that carry candidates, by UUID. A policy with unreadable timers
/// is skipped (the controller writes them; a hand-edited row must not stop the monitor).
pub fn watched(replica: &Replica, router: &str) -> BTreeMap<String, Watched> {
    let Some(router) = replica.named::<LogicalRouter>(router) else {
        return BTreeMap::new();
    };
    let mut out = BTreeMap::new();
    for uuid in &router.policies.0 {
        let Some(policy) = replica.get::<LogicalRouterPolicy>(uuid) else {
            continue;
        };
        let ids = &policy.external_ids;
        let (Some(candidates), Some(timers)) = (
            ids.get(EXTERNAL_ID_CANDIDATES),
            ids.get(EXTERNAL_ID_MONITOR_TIMERS),
        ) else {
            continue;
        };
        let Some(timers) = MonitorTimers::decode(timers) else {
            continue;
        };
        let candidates = veg_api::names::decode_candidates(candidates)
            .into_iter()
            .collect();
        out.insert(
            policy.uuid,
            Watched {
                candidates,
                timers,
                nexthops: policy.nexthops,
            },
        );
    }
    out
}

/// The sessions the policies need: every candidate, with the fastest timers asked for it.
pub fn wanted_sessions(watched: &BTreeMap<String, Watched>) -> BTreeMap<IpAddr, MonitorTimers> {
    let mut out: BTreeMap<IpAddr, MonitorTimers> = BTreeMap::new();
    for policy in watched.values() {
        for candidate in &policy.candidates {
            out.entry(*candidate)
                .and_modify(|timers| *timers = (*timers).min(policy.timers))
                .or_insert(policy.timers);
        }
    }
    out
}

/// The nexthop writes that make every policy point at its Up candidates. A candidate in
/// `unjudged` (its session not yet given the time to come up, e.g. just after this monitor
/// started or took over) stays as the policy has it: withdrawing it before its session could
/// say anything would blackhole a healthy instance.
pub fn nexthop_updates(
    watched: &BTreeMap<String, Watched>,
    up: &BTreeSet<IpAddr>,
    unjudged: &BTreeSet<IpAddr>,
) -> Vec<(String, BTreeSet<String>)> {
    watched
        .iter()
        .filter_map(|(uuid, policy)| {
            let want: BTreeSet<String> = policy
                .candidates
                .iter()
                .map(|candidate| (candidate, candidate.to_string()))
                .filter(|(candidate, hop)| {
                    up.contains(*candidate)
                        || (unjudged.contains(*candidate) && policy.nexthops.contains(hop))
                })
                .map(|(_, hop)| hop)
                .collect();
            (want != policy.nexthops).then(|| (uuid.clone(), want))
        })
        .collect()
}

#[cfg(test)]
mod tests {
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
        let none = nexthop_updates(&watched, &BTreeSet::new(), &BTreeSet::new());
        assert_eq!(none, [("p2".to_owned(), BTreeSet::new())]);
        // .13 Up: both point at it only.
        let up = BTreeSet::from([ip("198.18.0.13")]);
        let writes = nexthop_updates(&watched, &up, &BTreeSet::new());
        assert_eq!(writes.len(), 2);
        assert!(
            writes
                .iter()
                .all(|(_, hops)| *hops == BTreeSet::from(["198.18.0.13".to_owned()]))
        );
        // A non-candidate Up changes nothing.
        let stranger = BTreeSet::from([ip("198.18.0.12"), ip("198.18.0.99")]);
        assert_eq!(
            nexthop_updates(&watched, &stranger, &BTreeSet::new()),
            [("p1".to_owned(), BTreeSet::from(["198.18.0.12".to_owned()]))]
        );
        // A session not judged yet: p2's nexthop .12 stays while nothing is Up, and is not
        // added to p1 where it is not one.
        let unjudged = BTreeSet::from([ip("198.18.0.12")]);
        assert!(nexthop_updates(&watched, &BTreeSet::new(), &unjudged).is_empty());
        // Judged and still not Up: withdrawn.
        assert_eq!(
            nexthop_updates(&watched, &BTreeSet::new(), &BTreeSet::new()),
            [("p2".to_owned(), BTreeSet::new())]
        );
    }
}
