//! Overlapping gateways (pure): two gateways of one VPC whose sources overlap (a policy CIDR
//! or a selected Pod) would write equal-priority policies that fight. Both are told, naming
//! each other; the older one (creation time, then key) keeps the sources, the newer is held
//! back — deterministic, never random. Kube-OVN does not detect this at all.

use std::collections::{BTreeMap, BTreeSet};

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
        }
    }

    fn precedence(&self) -> (bool, Option<&Time>, &str) {
        (self.created.is_none(), self.created.as_ref(), &self.key)
    }

    fn overlaps(&self, other: &Claim) -> Option<String> {
        if self.vpc != other.vpc {
            return None;
        }
        for mine in &self.sources {
            for theirs in &other.sources {
                if mine.contains(&theirs.network()) || theirs.contains(&mine.network()) {
                    return Some(format!("{mine} and {theirs}"));
                }
            }
        }
        self.ports
            .intersection(&other.ports)
            .next()
            .map(|port| format!("Pod port {port}"))
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
            let first_wins = first.precedence() < second.precedence();
            out.entry(first.key.clone()).or_default().push(Overlap {
                other: second.key.clone(),
                what: what.clone(),
                wins: first_wins,
            });
            out.entry(second.key.clone()).or_default().push(Overlap {
                other: first.key.clone(),
                what,
                wins: !first_wins,
            });
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
        }
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
}
