//! Overlapping gateways (pure): two gateways of one VPC whose sources overlap (a policy CIDR
//! with a policy CIDR, a selected Pod with a selected Pod, or a policy CIDR holding another's
//! selected Pod's address) would write policies that fight over the same packets. Both are told, naming
//! each other; the older one (creation time, then key) keeps the sources, the newer is held
//! back — deterministic, never random. Kube-OVN does not detect this at all.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

use crate::plan::context::GatewayInputs;

/// What a gateway claims in its VPC.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Claim {
    /// `<namespace>/<name>`.
    pub key: String,
    pub vpc: String,
    /// Creation time (`None` sorts last: not created yet).
    pub created: Option<Time>,
    /// Policy sources, both families.
    pub sources: BTreeSet<IpNet>,
    /// Selected Pods' ports.
    pub ports: BTreeSet<String>,
    /// Selected Pods' addresses.
    pub addresses: BTreeSet<IpAddr>,
}

impl Claim {
    /// The claim of a resolved gateway.
    pub fn of(inputs: &GatewayInputs, created: Option<Time>) -> Self {
        Self {
            key: inputs.key.clone(),
            vpc: inputs.vpc.clone(),
            created,
            sources: inputs
                .families
                .values()
                .flat_map(|family| family.sources.iter().copied())
                .collect(),
            ports: inputs.ports.clone(),
            addresses: inputs.selected_addresses.clone(),
        }
    }

    fn precedence(&self) -> (bool, Option<&Time>, &str) {
        (self.created.is_none(), self.created.as_ref(), &self.key)
    }

    fn overlaps(&self, other: &Claim) -> Option<String> {
        if self.vpc != other.vpc {
            return None;
        }
        self.sources_overlap(other)
            .or_else(|| {
                self.ports
                    .intersection(&other.ports)
                    .next()
                    .map(|port| format!("Pod port {port}"))
            })
            .or_else(|| self.cross_overlap(other))
    }

    /// A CIDR source of one holding an address of a Pod the other selects (either way).
    fn cross_overlap(&self, other: &Claim) -> Option<String> {
        let held = |cidrs: &BTreeSet<IpNet>, addresses: &BTreeSet<IpAddr>| {
            cidrs.iter().find_map(|net| {
                addresses
                    .range(net.network()..=net.broadcast())
                    .next()
                    .map(|ip| format!("{net} holds selected Pod address {ip}"))
            })
        };
        held(&self.sources, &other.addresses).or_else(|| held(&other.sources, &self.addresses))
    }

    fn sources_overlap(&self, other: &Claim) -> Option<String> {
        for mine in &self.sources {
            for theirs in &other.sources {
                if mine.contains(&theirs.network()) || theirs.contains(&mine.network()) {
                    return Some(format!("{mine} and {theirs}"));
                }
            }
        }
        None
    }

    fn overlap_with(&self, other: &Claim, what: String) -> Overlap {
        Overlap {
            other: other.key.clone(),
            what,
            wins: self.precedence() < other.precedence(),
        }
    }
}

/// Every gateway's last claim, with the selected ports indexed by port: one gateway's
/// overlaps then cost a look-up per port it selects and a CIDR comparison per gateway of its
/// VPC, not a comparison of every pair of gateways (at 1 000 gateways selecting 100 Pods
/// each, that was half a second per pass).
#[derive(Debug, Default)]
pub struct ClaimIndex {
    claims: BTreeMap<String, Claim>,
    /// Port → the gateways whose claim selects it.
    claimants: HashMap<String, BTreeSet<String>>,
}

impl ClaimIndex {
    /// Whether `key` has a claim.
    pub fn contains(&self, key: &str) -> bool {
        self.claims.contains_key(key)
    }

    /// Whether `claim` is already its gateway's claim.
    pub fn holds(&self, claim: &Claim) -> bool {
        self.claims.get(&claim.key) == Some(claim)
    }

    /// Sets a gateway's claim; only the ports that changed touch the index. Whether the claim
    /// differs from the one it replaces.
    pub fn put(&mut self, claim: Claim) -> bool {
        if self.holds(&claim) {
            return false;
        }
        let old_ports = self
            .claims
            .get(&claim.key)
            .map(|old| &old.ports)
            .cloned()
            .unwrap_or_default();
        for gone in old_ports.difference(&claim.ports) {
            self.unclaim(gone, &claim.key);
        }
        for added in claim.ports.difference(&old_ports) {
            self.claimants
                .entry(added.clone())
                .or_default()
                .insert(claim.key.clone());
        }
        self.claims.insert(claim.key.clone(), claim);
        true
    }

    /// Drops a gateway's claim (it was deleted).
    pub fn remove(&mut self, key: &str) {
        if let Some(claim) = self.claims.remove(key) {
            for port in &claim.ports {
                self.unclaim(port, key);
            }
        }
    }

    fn unclaim(&mut self, port: &str, key: &str) {
        if let Some(keys) = self.claimants.get_mut(port) {
            keys.remove(key);
            if keys.is_empty() {
                self.claimants.remove(port);
            }
        }
    }

    /// The overlaps of gateway `key` with the gateways for which `counts` holds, in key order;
    /// the same as [`overlaps`] over all of them, seen from `key`.
    pub fn overlaps_of(&self, key: &str, counts: impl Fn(&str) -> bool) -> Vec<Overlap> {
        let Some(mine) = self.claims.get(key) else {
            return Vec::new();
        };
        // The first shared port (in port order) with each other gateway.
        let mut shared: BTreeMap<&str, &str> = BTreeMap::new();
        for port in &mine.ports {
            for other in self.claimants.get(port).into_iter().flatten() {
                if other != key {
                    shared.entry(other.as_str()).or_insert(port.as_str());
                }
            }
        }
        let mut found = Vec::new();
        for (other_key, other) in &self.claims {
            if other_key == key || other.vpc != mine.vpc || !counts(other_key) {
                continue;
            }
            let what = mine
                .sources_overlap(other)
                .or_else(|| {
                    shared
                        .get(other_key.as_str())
                        .map(|port| format!("Pod port {port}"))
                })
                .or_else(|| mine.cross_overlap(other));
            if let Some(what) = what {
                found.push(mine.overlap_with(other, what));
            }
        }
        found
    }
}

/// One overlap, seen from one gateway.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Overlap {
    /// The other gateway.
    pub other: String,
    /// What overlaps.
    pub what: String,
    /// Whether this gateway keeps its sources (it is the older one).
    pub wins: bool,
}

/// Every overlap, by gateway key; a gateway that loses any overlap is held back.
pub fn overlaps(claims: &[Claim]) -> BTreeMap<String, Vec<Overlap>> {
    let mut out: BTreeMap<String, Vec<Overlap>> = BTreeMap::new();
    for (index, first) in claims.iter().enumerate() {
        for second in &claims[index + 1..] {
            let Some(what) = first.overlaps(second) else {
                continue;
            };
            out.entry(first.key.clone())
                .or_default()
                .push(first.overlap_with(second, what.clone()));
            out.entry(second.key.clone())
                .or_default()
                .push(second.overlap_with(first, what));
        }
    }
    out
}

/// Whether a gateway must not write its rows.
pub fn held_back(overlaps: &[Overlap]) -> bool {
    overlaps.iter().any(|overlap| !overlap.wins)
}

#[cfg(test)]
mod tests {
    use k8s_openapi::jiff::Timestamp;

    use super::*;

    fn claim(
        key: &str,
        vpc: &str,
        seconds: Option<i64>,
        sources: &[&str],
        ports: &[&str],
    ) -> Claim {
        Claim {
            key: key.into(),
            vpc: vpc.into(),
            created: seconds
                .and_then(|s| Timestamp::from_second(s).ok())
                .map(Time),
            sources: sources.iter().filter_map(|s| s.parse().ok()).collect(),
            ports: ports.iter().map(|p| (*p).to_owned()).collect(),
            // Port `p<n>.<ns>` has address 198.19.<n % 3>.<n + 1>.
            addresses: ports
                .iter()
                .filter_map(|p| p.strip_prefix('p')?.split_once('.')?.0.parse::<u8>().ok())
                .map(|n| IpAddr::from([198, 19, n % 3, n + 1]))
                .collect(),
        }
    }

    #[test]
    fn a_cidr_holding_another_gateways_selected_pod_overlaps() {
        // p4.team is 198.19.1.5: inside the older gateway's 198.19.1.0/24.
        let claims = [
            claim("team/selects", "ovn-cluster", Some(200), &[], &["p4.team"]),
            claim(
                "team/cidr",
                "ovn-cluster",
                Some(100),
                &["198.19.1.0/24"],
                &[],
            ),
            claim(
                "team/elsewhere",
                "ovn-cluster",
                Some(50),
                &["198.19.2.0/24"],
                &[],
            ),
        ];
        let found = overlaps(&claims);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            found["team/selects"],
            [Overlap {
                other: "team/cidr".into(),
                what: "198.19.1.0/24 holds selected Pod address 198.19.1.5".into(),
                wins: false
            }]
        );
        assert!(found["team/cidr"][0].wins);
        // The index finds it from either side.
        let mut index = ClaimIndex::default();
        for claim in &claims {
            index.put(claim.clone());
        }
        assert_eq!(
            index.overlaps_of("team/selects", |_| true),
            found["team/selects"]
        );
        assert_eq!(index.overlaps_of("team/cidr", |_| true), found["team/cidr"]);
    }

    #[test]
    fn the_older_gateway_wins_and_both_are_told() {
        let claims = [
            claim(
                "default/new",
                "ovn-cluster",
                Some(200),
                &["198.19.1.0/24"],
                &[],
            ),
            claim(
                "default/old",
                "ovn-cluster",
                Some(100),
                &["198.19.0.0/16"],
                &[],
            ),
            claim(
                "default/other-vpc",
                "vpc1",
                Some(50),
                &["198.19.0.0/16"],
                &[],
            ),
            claim(
                "default/apart",
                "ovn-cluster",
                Some(10),
                &["198.20.0.0/16"],
                &[],
            ),
        ];
        let found = overlaps(&claims);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            found["default/new"],
            [Overlap {
                other: "default/old".into(),
                what: "198.19.1.0/24 and 198.19.0.0/16".into(),
                wins: false
            }]
        );
        assert!(found["default/old"][0].wins);
        assert!(held_back(&found["default/new"]) && !held_back(&found["default/old"]));
    }

    #[test]
    fn ties_go_by_name_and_shared_pods_overlap() {
        let claims = [
            claim("default/b", "ovn-cluster", Some(100), &[], &["web.default"]),
            claim(
                "default/a",
                "ovn-cluster",
                Some(100),
                &[],
                &["web.default", "db.default"],
            ),
        ];
        let found = overlaps(&claims);
        assert!(found["default/a"][0].wins);
        assert_eq!(found["default/b"][0].what, "Pod port web.default");
        // The order of the input does not matter.
        let reversed: Vec<Claim> = claims.iter().rev().cloned().collect();
        assert!(overlaps(&reversed)["default/a"][0].wins);
    }

    mod index {
        use proptest::prelude::*;

        use super::*;

        /// Small random claims: two VPCs, sources from a few nested CIDRs, ports from a
        /// small pool, so overlaps of every kind happen.
        fn claims() -> impl Strategy<Value = Vec<Claim>> {
            let cidrs = [
                "198.19.0.0/16",
                "198.19.1.0/24",
                "198.19.2.0/24",
                "198.20.0.0/24",
            ];
            let one = (
                0..2usize,
                proptest::option::of(0..5i64),
                proptest::collection::btree_set(0..4usize, 0..2),
                proptest::collection::btree_set(0..12usize, 0..5),
            );
            proptest::collection::vec(one, 1..8).prop_map(move |raw| {
                raw.into_iter()
                    .enumerate()
                    .map(|(i, (vpc, seconds, sources, ports))| {
                        let sources: Vec<&str> = sources.iter().map(|s| cidrs[*s]).collect();
                        let ports: Vec<String> = ports.iter().map(|p| format!("p{p}.ns")).collect();
                        let ports: Vec<&str> = ports.iter().map(String::as_str).collect();
                        claim(
                            &format!("ns/g{i}"),
                            ["vpc-a", "vpc-b"][vpc],
                            seconds,
                            &sources,
                            &ports,
                        )
                    })
                    .collect()
            })
        }

        proptest! {
            /// The index answers what comparing the gateway with every other one answers (the
            /// sources named from its side), also after claims change
            /// (each gateway's claim replaced by another's ports) and one is removed.
            #[test]
            fn the_index_agrees_with_every_pair(first in claims(), second in claims()) {
                let mut index = ClaimIndex::default();
                let mut current: BTreeMap<String, Claim> = BTreeMap::new();
                // The second round re-claims the first round's keys with new contents.
                let again: Vec<Claim> = second
                    .iter()
                    .zip(&first)
                    .map(|(new, old)| Claim { key: old.key.clone(), ..new.clone() })
                    .collect();
                for claim in first.iter().chain(&again) {
                    index.put(claim.clone());
                    current.insert(claim.key.clone(), claim.clone());
                }
                if let Some(gone) = first.first().map(|c| c.key.clone()) {
                    index.remove(&gone);
                    current.remove(&gone);
                }
                for (key, mine) in &current {
                    // As the reconciler compared before the index: its own claim first.
                    let mut all = vec![mine.clone()];
                    all.extend(current.values().filter(|c| c.key != *key).cloned());
                    let got = index.overlaps_of(key, |_| true);
                    let want = overlaps(&all).remove(key).unwrap_or_default();
                    prop_assert_eq!(&got, &want, "for {}", key);
                }
                // Left out gateways do not count.
                for key in current.keys() {
                    let got = index.overlaps_of(key, |other| other != "ns/g1");
                    prop_assert!(got.iter().all(|o| o.other != "ns/g1"));
                }
            }
        }
    }
}
