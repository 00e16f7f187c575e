//! A guard against stale BFD status in native mode (pure).
//!
//! OVN keeps a `BFD` row's last status when no chassis runs its session any more (the chassis
//! of the `bfd@<vpc>` port died, or its HA_Chassis_Group emptied: ovn-org/ovn#319, #320): a
//! row that said `up` keeps saying it, northd keeps the nexthop, and traffic hashed to a dead
//! instance is lost for good. Measured in the lab: the node running the sessions and one
//! instance crashed, the port moved to another node in 2.25 s, and the dead instance's row
//! stayed `up`.
//!
//! veg cannot see the sessions (it talks to the Northbound only), so it asks Kubernetes for a
//! second opinion: an instance whose Node is not Ready while its row says the session is alive
//! (`up`, or `init`, which northd also keeps) is withdrawn by veg itself. Its policies then no
//! longer name its row; northd sets an unreferenced row `admin_down`, which ends the suspicion,
//! and the next pass names it again: a session run afresh then decides.

use std::collections::BTreeMap;
use std::net::IpAddr;

use veg_api::BfdState;

use crate::plan::context::Instance;

/// An instance veg withdraws because OVN's word on it cannot be trusted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Suspect {
    /// Its Pod.
    pub pod: String,
    /// Its node.
    pub node: String,
    /// The address whose row says alive.
    pub address: IpAddr,
    /// What the row says.
    pub state: BfdState,
}

/// A Node's Ready condition: `Some(true)` when `True`, `Some(false)` when `False` or
/// `Unknown`, `None` when it has none.
pub fn node_ready(node: &k8s_openapi::api::core::v1::Node) -> Option<bool> {
    node.status
        .as_ref()?
        .conditions
        .as_ref()?
        .iter()
        .find(|c| c.type_ == "Ready")
        .map(|c| c.status == "True")
}

/// The instances whose BFD row says alive while their node is not Ready (`node_ready`: the
/// node's Ready condition; `None` when it has none, which counts as Ready).
pub fn suspects(
    instances: &[Instance],
    bfd: &BTreeMap<IpAddr, BfdState>,
    node_ready: impl Fn(&str) -> Option<bool>,
) -> Vec<Suspect> {
    instances
        .iter()
        .filter(|instance| node_ready(&instance.node) == Some(false))
        .filter_map(|instance| {
            let (address, state) = instance.internal_ips.iter().find_map(|ip| {
                let state = *bfd.get(ip)?;
                matches!(state, BfdState::Up | BfdState::Init).then_some((*ip, state))
            })?;
            Some(Suspect {
                pod: instance.pod.clone(),
                node: instance.node.clone(),
                address,
                state,
            })
        })
        .collect()
}

impl Suspect {
    /// The event's message.
    pub fn message(&self) -> String {
        format!(
            "instance {} ({}) withdrawn by veg: its node {} is not Ready but OVN's BFD row still \
             says {:?}, a status no chassis may be refreshing (ovn-org/ovn#319); it returns \
             when OVN runs its session afresh",
            self.pod, self.address, self.node, self.state
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn instance(pod: &str, node: &str, ip: &str) -> Instance {
        Instance {
            pod: pod.into(),
            node: node.into(),
            internal_ips: ip.parse().into_iter().collect(),
            external_ips: Vec::new(),
            ready: true,
        }
    }

    #[test]
    fn only_a_live_looking_row_on_a_node_that_is_not_ready_is_suspect() {
        let instances = [
            instance("gw-0", "n1", "198.18.0.10"),
            instance("gw-1", "n2", "198.18.0.11"),
            instance("gw-2", "n3", "198.18.0.12"),
            instance("gw-3", "n4", "198.18.0.13"),
        ];
        let bfd: BTreeMap<IpAddr, BfdState> = [
            ("198.18.0.10", BfdState::Up),
            ("198.18.0.11", BfdState::Up),
            ("198.18.0.12", BfdState::Down),
            ("198.18.0.13", BfdState::Init),
        ]
        .iter()
        .filter_map(|(ip, state)| Some((ip.parse().ok()?, *state)))
        .collect();
        // n1 not Ready (row up: suspect), n2 Ready, n3 not Ready but OVN already says down,
        // n4 not Ready with the row in init (northd keeps init: suspect too).
        let ready = |node: &str| match node {
            "n1" | "n3" | "n4" => Some(false),
            "n2" => Some(true),
            _ => None,
        };
        let found: Vec<(String, BfdState)> = suspects(&instances, &bfd, ready)
            .into_iter()
            .map(|s| (s.pod, s.state))
            .collect();
        assert_eq!(
            found,
            [
                ("gw-0".to_owned(), BfdState::Up),
                ("gw-3".to_owned(), BfdState::Init)
            ]
        );
        // A node without a Ready condition (the lab's before any status) is trusted.
        assert!(suspects(&instances, &bfd, |_| None).is_empty());
        let message = suspects(&instances, &bfd, ready)[0].message();
        assert!(message.contains("gw-0 (198.18.0.10)") && message.contains("node n1"));
    }
}
